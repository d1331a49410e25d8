//! [`Replica`]: one node's membership in a replica set. It opens the Raft log, wraps the
//! store as the state machine, serves replication on its own port, and offers the node what
//! it needs: execute a command through the log, the status, and membership operations
//! (initialize, join, remove, switchover).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::storage::RaftLogStorage;
use tandem_core::error::{Error, ErrorCode, Result};
use tandem_core::{Command, Outcome, limits};
use tandem_store::{Execution, StoreHandle};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::failover::{self, FastElection, elect_when_the_active_is_gone, record_failovers};
use crate::hand_over::{HandOverCause, HandOverNote, HandOverWatch, hand_over_while_unconfirmed};
use crate::log_store::LogStore;
use crate::network::{
    LeaderContact, Listener, NetworkFactory, TcpPeerListener, TcpTransport, Transport, serve,
};
use crate::proposer::{
    Acknowledged, Pending, ProposerTimeouts, not_active, run_proposer, unconfirmed_active,
};
use crate::replica_set_time::ReplicaSetTime;
use crate::snapshot_policy::take_snapshots_when_due;
use crate::state_machine::StateMachine;
use crate::status::{ReplicaStatus, Role};
use crate::types::{FailoverRecord, Member, NodeId, Raft};
use crate::{ClusterError, ReplicaSettings};

/// The directory of the Raft log inside a node's data directory.
pub const LOG_DIRECTORY: &str = "raft";
/// The directory of snapshots inside a node's data directory.
pub const SNAPSHOT_DIRECTORY: &str = "snapshots";

/// What a replica runs on: its replication network, both directions, and where the Raft
/// log's work runs. A node uses TCP and threads ([`Environment::tcp`]); the deterministic
/// simulation gives its simulated network and runs the log inline.
pub struct Environment {
    /// Where peers' replication connections arrive.
    pub listener: Box<dyn Listener>,
    /// How this node dials its peers.
    pub transport: Arc<dyn Transport>,
    pub execution: Execution,
    /// Whether the server reads the other voters' clocks (its member probe), so that the
    /// active stamps the replica set's time (`replica_set_time`); the simulation does not.
    pub clocks_are_read: bool,
}

impl Environment {
    pub fn tcp(listener: TcpListener) -> Environment {
        Environment {
            listener: Box::new(TcpPeerListener(listener)),
            transport: Arc::new(TcpTransport),
            execution: Execution::Threads,
            clocks_are_read: true,
        }
    }
}

pub struct Replica {
    raft: Raft,
    settings: ReplicaSettings,
    store: StoreHandle,
    proposals: mpsc::Sender<Pending>,
    time: Arc<ReplicaSetTime>,
    /// Why this node last handed its role over, sent with the hand-over.
    hand_over_note: Arc<HandOverNote>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    server: Mutex<Option<JoinHandle<std::io::Result<()>>>>,
}

impl Replica {
    /// Starts replication for the node whose store is `store`, serving peers on `listener`.
    pub async fn start(
        settings: ReplicaSettings,
        data_dir: &Path,
        store: StoreHandle,
        listener: TcpListener,
    ) -> std::result::Result<Replica, ClusterError> {
        Replica::start_in(Environment::tcp(listener), settings, data_dir, store).await
    }

    /// [`Replica::start`] on the network `environment` gives.
    pub async fn start_in(
        environment: Environment,
        settings: ReplicaSettings,
        data_dir: &Path,
        store: StoreHandle,
    ) -> std::result::Result<Replica, ClusterError> {
        let mut log_store =
            LogStore::open_with(&data_dir.join(LOG_DIRECTORY), environment.execution)
                .map_err(|error| ClusterError::Storage(format!("raft log: {error}")))?;
        let (log_growth, log_reader) = (log_store.growth(), log_store.get_log_reader().await);
        let snapshot_directory = data_dir.join(SNAPSHOT_DIRECTORY);
        let state_machine = StateMachine::open(store.clone(), snapshot_directory.clone())
            .map_err(|error| ClusterError::Storage(format!("state machine: {error}")))?;
        let config = settings.raft_config()?;
        let recorded_term = last_recorded_term(&store).await?;
        let hand_over_note = HandOverNote::new();
        let network = NetworkFactory::new(
            settings.peer_routes.clone(),
            environment.transport,
            environment.execution,
        )
        .with_hand_over_note(hand_over_note.clone());
        let raft = Raft::new(
            settings.node_id,
            Arc::new(config),
            network.clone(),
            log_store,
            state_machine,
        )
        .await
        .map_err(|error| ClusterError::Raft(error.to_string()))?;
        let (stop, stopped) = watch::channel(false);
        let contact = LeaderContact::new();
        let fast_election = Arc::new(FastElection::default());
        let time = Arc::new(if environment.clocks_are_read {
            ReplicaSetTime::with_clock_readings()
        } else {
            ReplicaSetTime::without_clock_readings()
        });
        let (proposals, pending) = mpsc::channel(limits::PROPOSAL_QUEUE_CAPACITY);
        let timeouts = ProposerTimeouts {
            write_timeout: Duration::from_millis(settings.write_timeout_ms),
            unconfirmed_grace: settings.unconfirmed_grace(),
        };
        let server = tokio::spawn(serve(
            environment.listener,
            raft.clone(),
            snapshot_directory,
            contact.clone(),
            Duration::from_millis(settings.heartbeat_interval_ms),
            environment.execution,
            wait_for_stop(stopped.clone()),
        ));
        let mut tasks = vec![
            tokio::spawn(run_proposer(raft.clone(), pending, time.clone(), timeouts)),
            tokio::spawn(record_failovers(
                raft.clone(),
                contact.clone(),
                fast_election.clone(),
                time.clone(),
                recorded_term,
                stopped.clone(),
            )),
            tokio::spawn(elect_when_the_active_is_gone(
                raft.clone(),
                network,
                contact,
                fast_election,
                settings.heartbeat_interval_ms,
                stopped.clone(),
            )),
            tokio::spawn(take_snapshots_when_due(
                raft.clone(),
                log_growth,
                log_reader,
                store.clone(),
                settings.snapshot_rule(),
                stopped.clone(),
            )),
        ];
        if settings.hand_over_after_ms > 0 {
            tasks.push(tokio::spawn(hand_over_while_unconfirmed(
                raft.clone(),
                hand_over_note.clone(),
                HandOverWatch::new(
                    settings.unconfirmed_grace(),
                    Duration::from_millis(settings.hand_over_after_ms),
                ),
                Duration::from_millis(settings.heartbeat_interval_ms),
                stopped,
            )));
        }
        Ok(Replica {
            raft,
            settings,
            store,
            proposals,
            time,
            hand_over_note,
            stop,
            tasks: Mutex::new(tasks),
            server: Mutex::new(Some(server)),
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.settings.node_id
    }

    pub fn member(&self) -> &Member {
        &self.settings.member
    }

    /// The replica set's time as this node knows it: what it stamps into entries while it
    /// is the active, and what the member probe feeds with the other voters' clocks.
    pub fn time(&self) -> &ReplicaSetTime {
        &self.time
    }

    /// Replicates `command` to a majority and applies it; the answer names the term that
    /// acknowledged it. On a passive node the error redirects to the active.
    pub async fn execute(&self, command: Command) -> Result<Acknowledged> {
        if !self.raft.is_leader() {
            return Err(self.not_active());
        }
        let (reply, answer) = oneshot::channel();
        self.proposals
            .send(Pending { command, reply })
            .await
            .map_err(|_| Error::unavailable("the node is shutting down"))?;
        answer
            .await
            .map_err(|_| Error::unavailable("the node is shutting down"))?
    }

    /// [`Replica::execute`] without the acknowledgement details.
    pub async fn execute_outcome(&self, command: Command) -> Result<Outcome> {
        self.execute(command)
            .await
            .map(|acknowledged| acknowledged.outcome)
    }

    pub fn status(&self) -> ReplicaStatus {
        let mut status = ReplicaStatus::of(&self.raft);
        status.applied_index = crate::state_machine::committed_index(&self.store);
        status
    }

    /// Waits until replication stops on its own (its store failed, or it panicked) and says
    /// why. Never returns while replication runs, nor after [`Replica::shutdown`] stopped it.
    pub async fn stopped_by_failure(&self) -> String {
        use openraft::async_runtime::WatchReceiver;
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state
                && !matches!(fatal, openraft::errors::Fatal::Stopped)
            {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// True once this node has formed or joined a replica set (its log says so).
    pub async fn is_initialized(&self) -> Result<bool> {
        self.raft
            .is_initialized()
            .await
            .map_err(|error| Error::unavailable(format!("replication stopped: {error}")))
    }

    pub fn is_active(&self) -> bool {
        self.raft.is_leader()
    }

    /// Makes this node the first member of a new replica set with `members` as its voters
    /// (this node among them). Refused once the node belongs to a replica set.
    pub async fn initialize(&self, members: BTreeMap<NodeId, Member>) -> Result<()> {
        if !members.contains_key(&self.settings.node_id) {
            return Err(Error::invalid(format!(
                "the members must include this node ({})",
                self.settings.node_id
            )));
        }
        self.raft.initialize(members).await.map_err(|error| {
            Error::new(
                ErrorCode::AlreadyExists,
                format!("cannot initialize the replica set: {error}"),
            )
        })
    }

    /// On the active: adds a node as a learner, waits until it has caught up, then makes it
    /// a voter.
    pub async fn add_member(&self, node_id: NodeId, member: Member) -> Result<()> {
        self.require_active()?;
        self.raft
            .add_learner(node_id, member, true)
            .await
            .map_err(|error| membership_error("add the node as a learner", error))?;
        let voters = BTreeSet::from([node_id]);
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(voters), false)
            .await
            .map_err(|error| membership_error("make the node a voter", error))?;
        Ok(())
    }

    /// On the active: removes a node from the voters and the members.
    pub async fn remove_member(&self, node_id: NodeId) -> Result<()> {
        self.require_active()?;
        let status = self.status();
        if !status
            .members
            .iter()
            .any(|member| member.node_id == node_id)
        {
            return Err(Error::not_found(format!(
                "node {node_id} is not a member of this replica set"
            )));
        }
        self.raft
            .change_membership(
                ChangeMembers::RemoveVoters(BTreeSet::from([node_id])),
                false,
            )
            .await
            .map_err(|error| membership_error("remove the node", error))?;
        Ok(())
    }

    /// On the active: hands the active role to `to` (or the most up-to-date passive) and
    /// returns the chosen node.
    pub async fn switchover(&self, to: Option<NodeId>) -> Result<NodeId> {
        self.require_active()?;
        let status = self.status();
        let target = match to {
            Some(node_id) => {
                let candidate = status
                    .members
                    .iter()
                    .find(|member| member.node_id == node_id)
                    .ok_or_else(|| Error::not_found(format!("node {node_id} is not a member")))?;
                if !candidate.voter {
                    return Err(Error::invalid(format!(
                        "node {node_id} is not a voter and cannot become the active"
                    )));
                }
                node_id
            }
            None => status
                .members
                .iter()
                .filter(|member| member.voter && member.node_id != self.settings.node_id)
                .min_by_key(|member| member.lag.unwrap_or(u64::MAX))
                .map(|member| member.node_id)
                .ok_or_else(|| {
                    Error::invalid("there is no other voter to hand the active role to")
                })?,
        };
        if target == self.settings.node_id {
            return Ok(target);
        }
        self.hand_over_note.set(HandOverCause::Requested);
        self.raft
            .trigger()
            .transfer_leader(target)
            .await
            .map_err(|error| Error::unavailable(format!("switchover failed: {error}")))?;
        Ok(target)
    }

    /// Waits up to `timeout` for a known active; returns its id.
    pub async fn wait_for_active(&self, timeout: Duration) -> Option<NodeId> {
        self.raft
            .wait(Some(timeout))
            .metrics(
                |metrics| metrics.current_leader.is_some(),
                "an active is known",
            )
            .await
            .ok()
            .and_then(|metrics| metrics.current_leader)
    }

    /// The failover history, oldest first (at most `limit` of the latest).
    pub async fn failover_history(&self, limit: usize) -> Result<Vec<FailoverRecord>> {
        let events = self.store.cluster_events(limit).await?;
        Ok(events
            .iter()
            .filter_map(|event| failover::from_json(&event.record))
            .collect())
    }

    /// Stops replication: the Raft core, the proposer and the peer server.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        let _ = self.raft.shutdown().await;
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        let server = lock(&self.server).take();
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        if let Some(server) = server {
            server.abort();
            let _ = server.await;
        }
    }

    fn require_active(&self) -> Result<()> {
        if self.raft.is_leader() {
            Ok(())
        } else {
            Err(self.not_active())
        }
    }

    fn not_active(&self) -> Error {
        let status = self.status();
        if status.role == Role::Active {
            return unconfirmed_active(self.settings.node_id, status.term);
        }
        not_active(
            self.settings.node_id,
            status.active,
            status.active_member().cloned(),
        )
    }
}

async fn last_recorded_term(store: &StoreHandle) -> std::result::Result<u64, ClusterError> {
    let events = store
        .cluster_events(1)
        .await
        .map_err(|error| ClusterError::Storage(format!("failover history: {error}")))?;
    Ok(events
        .last()
        .and_then(|event| failover::from_json(&event.record))
        .map(|record| record.term)
        .unwrap_or(0))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn membership_error(action: &str, error: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("cannot {action}: {error}"))
}

async fn wait_for_stop(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
