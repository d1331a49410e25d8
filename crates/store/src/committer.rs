//! Group commit: one thread owns the write connection and the state machine. It takes every
//! command waiting in its queue (bounded), applies them in one transaction, commits with one
//! fsync, and only then answers each caller. A storage failure rolls the batch back,
//! reloads the machine from disk and answers every caller "unavailable": nothing is
//! acknowledged that is not on disk.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, TransactionBehavior};
use tandem_core::error::{Error, Result};
use tandem_core::limits;
use tandem_core::{Command, MessageBox, Outcome};
use tokio::sync::{mpsc, oneshot};

use crate::catalog::{Catalog, CatalogCell};
use crate::loader::load_machine;
use crate::metrics::StoreMetrics;
use crate::sqlite_tables::SqliteTables;

pub enum Request {
    Execute {
        command: Command,
        reply: oneshot::Sender<Result<Outcome>>,
    },
    Stop,
}

pub struct Committer {
    pub connection: Connection,
    pub machine: MessageBox,
    pub catalog: Arc<CatalogCell>,
    pub metrics: Arc<StoreMetrics>,
}

struct Batch {
    commands: Vec<Command>,
    replies: Vec<oneshot::Sender<Result<Outcome>>>,
    stop: bool,
}

impl Committer {
    pub fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        loop {
            let Some(first) = requests.blocking_recv() else {
                return;
            };
            let batch = gather(first, &mut requests);
            if !batch.commands.is_empty() {
                self.commit(batch.commands, batch.replies);
            }
            if batch.stop {
                return;
            }
        }
    }

    fn commit(&mut self, commands: Vec<Command>, replies: Vec<oneshot::Sender<Result<Outcome>>>) {
        let started = Instant::now();
        let command_count = commands.len();
        let catalog_changed = commands.iter().any(changes_catalog);
        match self.apply_and_commit(commands) {
            Ok(outcomes) => {
                self.metrics.record_commit(command_count, started.elapsed());
                let unchanged =
                    (!catalog_changed).then(|| self.catalog.current().subscriptions.clone());
                self.catalog
                    .publish(Catalog::from_machine(&self.machine, unchanged));
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(failure) => {
                self.metrics.record_storage_failure();
                eprintln!("tandem: storage failure, batch rolled back: {failure}");
                self.reload();
                let error = Error::unavailable(format!(
                    "the node could not write to its store ({failure}); nothing was \
                     acknowledged, retrying is safe"
                ));
                for reply in replies {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }

    fn apply_and_commit(
        &mut self,
        commands: Vec<Command>,
    ) -> rusqlite::Result<Vec<Result<Outcome>>> {
        let now_ms = wall_clock_ms();
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut tables = SqliteTables::new(&transaction);
        let outcomes: Vec<Result<Outcome>> = commands
            .into_iter()
            .map(|command| self.machine.apply(&mut tables, command, now_ms))
            .collect();
        self.machine.flush(&mut tables);
        if let Some(failure) = tables.take_failure() {
            return Err(failure);
        }
        transaction.commit()?;
        Ok(outcomes)
    }

    /// After a failed batch the in-memory machine may hold changes that never reached disk.
    fn reload(&mut self) {
        match load_machine(&self.connection) {
            Ok(machine) => {
                self.machine = machine;
                self.catalog
                    .publish(Catalog::from_machine(&self.machine, None));
            }
            Err(error) => {
                eprintln!(
                    "tandem: cannot reload the state machine after a storage failure: {error}"
                );
                std::process::abort();
            }
        }
    }
}

fn gather(first: Request, requests: &mut mpsc::Receiver<Request>) -> Batch {
    let mut batch = Batch {
        commands: Vec::new(),
        replies: Vec::new(),
        stop: false,
    };
    let mut messages = 0;
    let mut next = Some(first);
    while let Some(request) = next.take() {
        match request {
            Request::Stop => {
                batch.stop = true;
                break;
            }
            Request::Execute { command, reply } => {
                messages += message_weight(&command);
                batch.commands.push(command);
                batch.replies.push(reply);
            }
        }
        if batch.commands.len() >= limits::MAX_COMMANDS_PER_COMMIT
            || messages >= limits::MAX_MESSAGES_PER_COMMIT
        {
            break;
        }
        next = requests.try_recv().ok();
    }
    batch
}

fn message_weight(command: &Command) -> usize {
    match command {
        Command::Publish { messages, .. } => messages.len().max(1),
        Command::Lease { max_messages, .. } => *max_messages as usize,
        _ => 1,
    }
}

fn changes_catalog(command: &Command) -> bool {
    matches!(
        command,
        Command::CreateSubscription { .. }
            | Command::DeleteSubscription { .. }
            | Command::CreateHost { .. }
    )
}

/// The active's clock, stamped into every batch. The machine never lets time run backwards.
pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}
