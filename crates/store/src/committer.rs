//! Group commit: one committer owns the write connection and the state machine. It takes
//! every batch waiting in its queue (bounded), applies them in one transaction and commits.
//! A storage failure rolls the transaction back, reloads the machine from disk and answers
//! every caller not yet answered with the failure.
//!
//! A transaction of replicated batches stays open for up to [`COMMIT_LINGER`], applying
//! the batches that arrive meanwhile, before it commits (its callers are answered as each
//! batch is applied, below). Small transactions in quick succession, as calls of one
//! message make them, each rewrote the same pages (the tails of the tables and indexes, the
//! host's counters) into the WAL: at calls of 1, 16 clients, three replicas, lingering cut
//! the bytes each node wrote per delivered message by about 40 %.
//!
//! When a caller is answered depends on where its batch comes from:
//! - A batch from a replicated log is answered as soon as it is applied, before the
//!   transaction commits. Its log entry is already fsynced on a majority, and applying is
//!   deterministic, so its outcome is the one every replica reaches, and the one this node
//!   reaches again by replaying the log should the transaction fail (the committer then
//!   halts, below). Answering early lets the caller's next request travel while the
//!   committer applies the rest of the transaction and commits it, instead of the committer
//!   waiting for requests after every commit. A batch during which a statement failed is not
//!   answered early: it gets the failure.
//! - A batch applied outside any log (tools and tests that use a store on its own) is
//!   answered once its transaction has committed: the store is all it has.
//!
//! Before answering early, the committer publishes the catalog as the batch left it, and
//! operator reads wait for the transactions that answered early to finish
//! ([`crate::commit_progress`]): a caller never reads a state older than its answer.
//!
//! Batches from a replicated log must be applied in log order, none skipped. After a failed
//! transaction that carried a log position, the committer therefore halts: it refuses every
//! later batch, and the node applies nothing more until it is restarted (it then replays
//! the log from the last position it committed).
//!
//! The committer is an OS thread ([`Committer::run`], [`Execution::Threads`]) or a tokio task
//! on the runtime that opened the store ([`Committer::run_inline`], [`Execution::Inline`]);
//! both run the same rounds (`Committer::serve`) and differ only in how they wait for the
//! first request of a round.
//!
//! The committer also installs snapshots received from another replica, so that no batch is
//! applied halfway through an install.
//!
//! [`Execution::Threads`]: crate::Execution::Threads
//! [`Execution::Inline`]: crate::Execution::Inline

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};
use tandem_core::error::Result;
use tandem_core::limits;
use tandem_core::{Command, MessageBox, Outcome};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;
use crate::batch::Batch;
use crate::catalog::{Catalog, CatalogCell};
use crate::checkpointer::Checkpointer;
use crate::commit_progress::CommitProgress;
use crate::loader::load_machine;
use crate::metrics::StoreMetrics;
use crate::position::PositionCell;
use crate::sqlite_tables::SqliteTables;
use crate::{schema, snapshot};

/// How long a transaction of replicated batches stays open for more at most, counted from
/// its start. Its callers are answered before it commits, so only reads, which wait for the
/// transactions that answered (see [`crate::commit_progress`]), wait for it.
pub const COMMIT_LINGER: Duration = Duration::from_millis(5);

/// What applying one batch answered: one result per command, or the storage failure that
/// kept the whole transaction from committing.
pub type BatchResult = std::result::Result<Vec<Result<Outcome>>, StoreError>;

pub enum Request {
    Apply {
        batch: Batch,
        reply: oneshot::Sender<BatchResult>,
    },
    InstallSnapshot {
        path: PathBuf,
        reply: oneshot::Sender<std::result::Result<(), StoreError>>,
    },
    Stop,
}

pub struct Committer {
    pub connection: Connection,
    pub machine: MessageBox,
    pub catalog: Arc<CatalogCell>,
    pub position: Arc<PositionCell>,
    pub metrics: Arc<StoreMetrics>,
    /// Why the committer halted: a failed transaction carried a replicated log position.
    pub halted: Option<String>,
    /// Checkpoints the WAL off the commit path ([`crate::Execution::Threads`] only).
    pub checkpointer: Option<Checkpointer>,
    /// Whether this connection's automatic checkpoint (the backstop) is on; it is off while
    /// the checkpointer's [`crate::checkpointer::BackstopHold`] holds.
    pub backstop_on: bool,
    /// Which transactions answered early and which have finished, for readers.
    pub progress: CommitProgress,
    /// The number of the last transaction begun (they are numbered from 1).
    pub transactions: u64,
}

/// A caller waiting for its batch's outcomes; `None` once answered early.
type Reply = Option<oneshot::Sender<BatchResult>>;

/// What one committed transaction left to do after its commit.
struct Committed {
    /// The log position it saved (the last batch's that carried one).
    position: Option<Vec<u8>>,
    /// Whether the subscriptions may have changed since the catalog was last published.
    subscriptions_changed: bool,
}

/// Batches gathered for one transaction, and what ended the gathering.
struct Gathered {
    batches: Vec<Batch>,
    replies: Vec<oneshot::Sender<BatchResult>>,
    then: Option<Request>,
}

/// One transaction under way: its callers, the outcomes still to send after the commit,
/// and what it holds.
struct Round {
    /// One per batch, in order.
    replies: Vec<Reply>,
    /// One per batch applied, in order (empty for a batch answered early).
    outcomes: Vec<Vec<Result<Outcome>>>,
    batches: usize,
    /// Batches that carried a replicated log position.
    replicated_batches: usize,
    commands: usize,
    messages: usize,
    /// The request that ended the round, to serve once it has committed.
    then: Option<Request>,
}

impl Round {
    fn new(replies: Vec<oneshot::Sender<BatchResult>>, then: Option<Request>) -> Round {
        Round {
            outcomes: Vec::with_capacity(replies.len()),
            replies: replies.into_iter().map(Some).collect(),
            batches: 0,
            replicated_batches: 0,
            commands: 0,
            messages: 0,
            then,
        }
    }

    /// The round's next batch, counted: the next of those `gathered`, else, while the round
    /// may linger, one that comes by [`COMMIT_LINGER`] after it `began`. `None` ends it.
    fn next_batch(
        &mut self,
        gathered: &mut VecDeque<Batch>,
        queue: &mut dyn Queue,
        began: Instant,
        failed: bool,
    ) -> Option<Batch> {
        let batch = match gathered.pop_front() {
            Some(batch) => batch,
            None if self.may_linger(began, failed) => match queue.next_until(began + COMMIT_LINGER)
            {
                Some(Request::Apply { batch, reply }) => {
                    self.replies.push(Some(reply));
                    batch
                }
                other => {
                    self.then = other;
                    return None;
                }
            },
            None => return None,
        };
        self.batches += 1;
        self.replicated_batches += usize::from(batch.position.is_some());
        self.commands += batch.commands.len();
        self.messages += batch.message_weight();
        Some(batch)
    }

    /// Whether the transaction may stay open for more: it holds only replicated batches,
    /// none has failed, it is below the limits, and it began less than [`COMMIT_LINGER`] ago.
    fn may_linger(&self, began: Instant, failed: bool) -> bool {
        self.then.is_none()
            && !failed
            && self.replicated_batches == self.batches
            && self.commands < limits::MAX_COMMANDS_PER_COMMIT
            && self.messages < limits::MAX_MESSAGES_PER_COMMIT
            && began.elapsed() < COMMIT_LINGER
    }
}

/// The committer's queue as a round reads it.
trait Queue {
    /// The next request if one is waiting.
    fn waiting(&mut self) -> Option<Request>;
    /// The next request, waited for until `deadline` at most.
    fn next_until(&mut self, deadline: Instant) -> Option<Request>;
}

/// The committer thread's queue: it blocks for a request, with a timer of its own.
struct ThreadQueue<'a> {
    requests: &'a mut mpsc::Receiver<Request>,
    timers: &'a tokio::runtime::Runtime,
}

impl Queue for ThreadQueue<'_> {
    fn waiting(&mut self) -> Option<Request> {
        self.requests.try_recv().ok()
    }

    fn next_until(&mut self, deadline: Instant) -> Option<Request> {
        let wait = deadline.saturating_duration_since(Instant::now());
        let requests = &mut *self.requests;
        self.timers
            .block_on(async { tokio::time::timeout(wait, requests.recv()).await })
            .ok()
            .flatten()
    }
}

/// The inline committer's queue: it never blocks its runtime's thread to wait for one.
struct InlineQueue<'a>(&'a mut mpsc::Receiver<Request>);

impl Queue for InlineQueue<'_> {
    fn waiting(&mut self) -> Option<Request> {
        self.0.try_recv().ok()
    }

    fn next_until(&mut self, _deadline: Instant) -> Option<Request> {
        self.waiting()
    }
}

impl Committer {
    /// The committer thread: blocks on its queue, round after round, until a
    /// [`Request::Stop`] or until every sender is gone. A runtime of its own times its waits
    /// for a lingering transaction; without one, it stops at once (and every caller is told
    /// that the store has stopped).
    pub fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let timers = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(timers) => timers,
            Err(error) => {
                eprintln!("tandem: the store's committer cannot start its timer: {error}");
                return;
            }
        };
        while let Some(first) = requests.blocking_recv() {
            let mut queue = ThreadQueue {
                requests: &mut requests,
                timers: &timers,
            };
            if self.serve(first, &mut queue).is_break() {
                return;
            }
        }
    }

    /// The committer as a task on the current runtime: the same rounds as [`Committer::run`],
    /// awaiting the queue instead of blocking on it. Besides a [`Request::Stop`] and the end of
    /// every sender, it stops when `stop` fires or its sender is dropped while no request is
    /// waiting (requests already queued are served first). Dropping the task (its runtime is
    /// dropped) drops the connection.
    pub async fn run_inline(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        mut stop: oneshot::Receiver<()>,
    ) {
        loop {
            let first = tokio::select! {
                biased;
                request = requests.recv() => request,
                _ = &mut stop => None,
            };
            let Some(first) = first else {
                return;
            };
            if self
                .serve(first, &mut InlineQueue(&mut requests))
                .is_break()
            {
                return;
            }
        }
    }

    /// One round: `first` and every batch waiting behind it (up to the limits) in one
    /// transaction, with those that come while it lingers, then the request that ended the
    /// round. Breaks on [`Request::Stop`].
    fn serve(&mut self, first: Request, queue: &mut dyn Queue) -> ControlFlow<()> {
        let gathered = gather(first, queue);
        let then = if gathered.batches.is_empty() {
            gathered.then
        } else {
            self.commit(gathered, queue)
        };
        match then {
            Some(Request::Stop) => return ControlFlow::Break(()),
            Some(Request::InstallSnapshot { path, reply }) => {
                let _ = reply.send(self.install_snapshot(path));
            }
            Some(Request::Apply { .. }) | None => {}
        }
        ControlFlow::Continue(())
    }

    /// Turns this connection's backstop checkpoint off while the checkpointer's hold says
    /// so, and on again after (between transactions).
    fn follow_backstop_hold(&mut self) {
        let Some(checkpointer) = &self.checkpointer else {
            return;
        };
        let wanted = !checkpointer.hold().holds();
        if wanted == self.backstop_on {
            return;
        }
        let pages = if wanted {
            schema::WAL_AUTOCHECKPOINT_PAGES
        } else {
            0
        };
        if self
            .connection
            .pragma_update(None, "wal_autocheckpoint", pages)
            .is_ok()
        {
            self.backstop_on = wanted;
        }
    }

    /// Applies the gathered batches, and those that come while the transaction lingers, in
    /// one transaction and commits it; returns the request that ended the round.
    fn commit(&mut self, gathered: Gathered, queue: &mut dyn Queue) -> Option<Request> {
        if let Some(reason) = &self.halted {
            let refusal = format!(
                "the store halted after a replicated batch failed to commit ({reason}); \
                 nothing more is applied until the node restarts"
            );
            for reply in gathered.replies {
                let _ = reply.send(Err(StoreError::Failed(refusal.clone())));
            }
            return gathered.then;
        }
        let started = Instant::now();
        let mut round = Round::new(gathered.replies, gathered.then);
        self.transactions += 1;
        self.follow_backstop_hold();
        let committed = self.apply_and_commit(gathered.batches, &mut round, queue);
        let Round {
            replies,
            outcomes,
            replicated_batches,
            commands,
            then,
            ..
        } = round;
        match committed {
            Ok(Committed {
                position,
                subscriptions_changed,
            }) => {
                self.metrics.record_commit(commands, started.elapsed());
                if let Some(checkpointer) = &self.checkpointer {
                    checkpointer.nudge();
                }
                if position.is_some() {
                    self.position.set(position);
                }
                // Batches answered early published the catalog as they left it.
                if replies.iter().any(Option::is_some) {
                    publish_catalog(&self.catalog, &self.machine, subscriptions_changed);
                }
                self.progress.finished(self.transactions);
                for (reply, outcomes) in replies.into_iter().zip(outcomes) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(outcomes));
                    }
                }
            }
            Err(failure) => {
                self.metrics.record_storage_failure();
                eprintln!("tandem: storage failure, batch rolled back: {failure}");
                if replicated_batches > 0 {
                    eprintln!(
                        "tandem: the store halts: it would otherwise apply later log entries \
                         without the ones that failed; restart the node to replay them"
                    );
                    self.halted = Some(failure.to_string());
                }
                self.reload();
                self.progress.finished(self.transactions);
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(StoreError::Failed(failure.to_string())));
                }
            }
        }
        then
    }

    /// Applies `batches` in one transaction, then, while the round may linger, the batches
    /// that come meanwhile, and commits. A replicated batch's caller is answered as soon as
    /// the batch is applied (its reply taken); the outcomes of the others go to the round's
    /// `outcomes`, in order (empty for a batch answered early).
    fn apply_and_commit(
        &mut self,
        batches: Vec<Batch>,
        round: &mut Round,
        queue: &mut dyn Queue,
    ) -> rusqlite::Result<Committed> {
        let began = Instant::now();
        let transaction = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut tables = SqliteTables::new(&transaction);
        let mut last_position = None;
        let mut subscriptions_changed = false;
        let mut batches = VecDeque::from(batches);
        while let Some(batch) = round.next_batch(&mut batches, queue, began, tables.failed()) {
            let reply = &mut round.replies[round.batches - 1];
            let timestamp_ms = batch.timestamp_ms;
            subscriptions_changed |= batch.commands.iter().any(changes_catalog);
            let batch_outcomes: Vec<Result<Outcome>> = batch
                .commands
                .into_iter()
                .map(|command| self.machine.apply(&mut tables, command, timestamp_ms))
                .collect();
            if let Some(event) = &batch.event {
                tables.save_cluster_event(event);
            }
            let replicated = batch.position.is_some();
            if replicated {
                last_position = batch.position;
            }
            if replicated && !tables.failed() {
                publish_catalog(&self.catalog, &self.machine, subscriptions_changed);
                subscriptions_changed = false;
                self.progress.answering(self.transactions);
                if let Some(reply) = reply.take() {
                    let _ = reply.send(Ok(batch_outcomes));
                }
                round.outcomes.push(Vec::new());
            } else {
                round.outcomes.push(batch_outcomes);
            }
        }
        self.machine.flush(&mut tables);
        if let Some(position) = &last_position {
            tables.save_position(position);
        }
        if let Some(failure) = tables.take_failure() {
            return Err(failure);
        }
        // Its statements go back to the connection's cache before the commit.
        drop(tables);
        transaction.commit()?;
        Ok(Committed {
            position: last_position,
            subscriptions_changed,
        })
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

    /// Checks the whole snapshot before it replaces anything: a refused snapshot leaves the
    /// store as it was.
    fn install_snapshot(&mut self, path: PathBuf) -> std::result::Result<(), StoreError> {
        let snapshot = snapshot::check(&path)?;
        snapshot::restore(&snapshot, &mut self.connection)?;
        self.machine = snapshot.machine;
        self.position.set(snapshot.position);
        self.catalog
            .publish(Catalog::from_machine(&self.machine, None));
        Ok(())
    }
}

/// Publishes the catalog as `machine` has it now; its subscriptions are copied again only if
/// they may have `changed`.
fn publish_catalog(catalog: &CatalogCell, machine: &MessageBox, changed: bool) {
    let unchanged = (!changed).then(|| catalog.current().subscriptions.clone());
    catalog.publish(Catalog::from_machine(machine, unchanged));
}

fn gather(first: Request, queue: &mut dyn Queue) -> Gathered {
    let mut gathered = Gathered {
        batches: Vec::new(),
        replies: Vec::new(),
        then: None,
    };
    let mut commands = 0;
    let mut messages = 0;
    let mut next = Some(first);
    while let Some(request) = next.take() {
        let Request::Apply { batch, reply } = request else {
            gathered.then = Some(request);
            break;
        };
        commands += batch.commands.len();
        messages += batch.message_weight();
        gathered.batches.push(batch);
        gathered.replies.push(reply);
        if commands >= limits::MAX_COMMANDS_PER_COMMIT
            || messages >= limits::MAX_MESSAGES_PER_COMMIT
        {
            break;
        }
        next = queue.waiting();
    }
    gathered
}

fn changes_catalog(command: &Command) -> bool {
    matches!(
        command,
        Command::CreateSubscription { .. }
            | Command::ReplaceSubscription { .. }
            | Command::DeleteSubscription { .. }
            | Command::CreateHost { .. }
    )
}
