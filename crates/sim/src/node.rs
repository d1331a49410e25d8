//! One simulated node: the real store (inline execution) and the real replica, on the
//! simulated network, behind the front door of [`crate::wire`]. Turmoil runs this as a
//! host's software: a crash drops everything it holds, a bounce runs it again on the same
//! data directory, like a process restarted after kill -9.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tandem_cluster::replica::Environment;
use tandem_cluster::{Member, Replica, ReplicaSettings, Role};
use tandem_core::Command;
use tandem_core::error::Error;
use tandem_store::reader::InstanceQuery;
use tandem_store::{Execution, Store, StoreHandle};
use turmoil::net::{TcpListener, TcpStream};

use crate::network::{SimListener, SimTransport};
use crate::wire::{CLIENT_PORT, Executed, Inventory, RAFT_PORT, Request, Response, node_name};
use tandem_cluster::codec::{read_frame, write_frame};

/// How often the active applies `Command::Tick` (lease expiry, due retries).
const TICK_INTERVAL: Duration = Duration::from_millis(500);
/// Snapshots are taken often (on the entry count alone, whatever the store's size) and
/// little log is kept behind them, so that a node that was down or cut off for a second or
/// two catches up from a snapshot, not from the log.
const SNAPSHOT_EVERY_ENTRIES: u64 = 200;
const SNAPSHOT_MIN_LOG_PERCENT: u64 = 0;
const LOG_ENTRIES_KEPT_BEHIND_SNAPSHOT: u64 = 20;
/// Instances listed per page of an inventory.
const INVENTORY_PAGE: usize = 1_000;
/// Failover records an inventory carries at most.
const FAILOVERS_LISTED: usize = 1_000;

/// What a node needs to (re)start.
#[derive(Clone, Debug)]
pub struct NodePlan {
    pub node_id: u64,
    pub node_count: u64,
    pub data_dir: PathBuf,
}

pub fn member(node_id: u64) -> Member {
    let name = node_name(node_id);
    Member {
        raft_address: format!("{name}:{RAFT_PORT}"),
        grpc_address: format!("{name}:{CLIENT_PORT}"),
        http_address: String::new(),
    }
}

/// The node's software: runs until the simulation crashes it.
pub async fn run(plan: NodePlan) -> turmoil::Result {
    let store = Store::open_with(&plan.data_dir, Execution::Inline)?;
    let handle = store.handle();
    let mut settings = ReplicaSettings::new(plan.node_id, member(plan.node_id));
    settings.snapshot_every_entries = SNAPSHOT_EVERY_ENTRIES;
    settings.snapshot_min_log_percent = SNAPSHOT_MIN_LOG_PERCENT;
    settings.log_entries_kept_behind_snapshot = LOG_ENTRIES_KEPT_BEHIND_SNAPSHOT;
    let environment = Environment {
        listener: Box::new(SimListener(
            TcpListener::bind(("0.0.0.0", RAFT_PORT)).await?,
        )),
        transport: Arc::new(SimTransport),
        execution: Execution::Inline,
        clocks_are_read: false,
    };
    let replica =
        Rc::new(Replica::start_in(environment, settings, &plan.data_dir, handle.clone()).await?);
    if plan.node_id == 1 && !replica.is_initialized().await? {
        let members: BTreeMap<u64, Member> = (1..=plan.node_count)
            .map(|node_id| (node_id, member(node_id)))
            .collect();
        replica.initialize(members).await?;
    }
    tokio::task::spawn_local(tick_while_active(replica.clone()));
    let front_door = TcpListener::bind(("0.0.0.0", CLIENT_PORT)).await?;
    loop {
        let (stream, _client) = front_door.accept().await?;
        tokio::task::spawn_local(serve_client(stream, replica.clone(), handle.clone()));
    }
}

async fn tick_while_active(replica: Rc<Replica>) {
    loop {
        tokio::time::sleep(TICK_INTERVAL).await;
        if replica.is_active() {
            let _ = replica.execute(Command::Tick).await;
        }
    }
}

/// Answers one client's requests in turn until it hangs up.
async fn serve_client(mut stream: TcpStream, replica: Rc<Replica>, store: StoreHandle) {
    while let Ok(Some(request)) = read_frame::<_, Request>(&mut stream).await {
        let response = match request {
            Request::Execute(command) => Response::Executed(execute(&replica, command).await),
            Request::Inventory => Response::Inventory(inventory(&replica, &store).await),
        };
        if write_frame(&mut stream, &response).await.is_err() {
            return;
        }
    }
}

async fn execute(replica: &Replica, command: Command) -> Result<Executed, Error> {
    let acknowledged = replica.execute(command).await?;
    Ok(Executed {
        outcome: acknowledged.outcome,
        term: acknowledged.term,
        log_index: acknowledged.log_index,
        node_id: replica.node_id(),
    })
}

/// The node's stored message ids and failover history.
async fn inventory(replica: &Replica, store: &StoreHandle) -> Result<Inventory, Error> {
    let status = replica.status();
    let mut message_ids = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .instances(InstanceQuery {
                host: None,
                state: None,
                after,
                limit: INVENTORY_PAGE,
            })
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        message_ids.extend(page.into_iter().map(|instance| instance.message_id.0));
    }
    let failovers = replica
        .failover_history(FAILOVERS_LISTED)
        .await?
        .into_iter()
        .map(|record| (record.term, record.at_ms))
        .collect();
    Ok(Inventory {
        node_id: replica.node_id(),
        active: status.role == Role::Active,
        term: status.term,
        last_log_index: status.last_log_index,
        applied_index: status.applied_index,
        message_ids,
        failovers,
    })
}
