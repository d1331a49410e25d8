//! An in-memory state machine for tests of replication: it remembers the timestamp of every
//! `Proposal::Commands` it applied, and writes its snapshots as files, as the real one does.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::type_config::alias::SnapshotOf;
use openraft::{EntryPayload, OptionalSend};
use serde::{Deserialize, Serialize};
use tandem_cluster::codec::{decode, encode};
use tandem_cluster::types::{
    LogId, Proposal, ProposalResult, SnapshotFile, SnapshotMeta, StoredMembership, TypeConfig,
};

/// Clones share one state, so a test can look at what the Raft node applied.
#[derive(Clone, Debug)]
pub struct MemoryStateMachine {
    state: Arc<Mutex<MachineState>>,
    snapshot_directory: PathBuf,
}

#[derive(Debug, Default)]
struct MachineState {
    applied: AppliedState,
    current_snapshot: Option<SnapshotMeta>,
    snapshots_built: u64,
}

/// What a snapshot file holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AppliedState {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    timestamps_ms: Vec<i64>,
}

impl MemoryStateMachine {
    pub fn new(snapshot_directory: PathBuf) -> Self {
        Self {
            state: Arc::default(),
            snapshot_directory,
        }
    }

    /// The `timestamp_ms` of every `Proposal::Commands` applied, in log order.
    pub fn applied_timestamps_ms(&self) -> Vec<i64> {
        self.lock().applied.timestamps_ms.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MachineState> {
        self.state.lock().expect("state machine lock poisoned")
    }

    fn current_snapshot_path(&self) -> PathBuf {
        self.snapshot_directory.join("current.snapshot")
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MemoryStateMachine {
    type SnapshotData = SnapshotFile;

    async fn build_snapshot(&mut self) -> io::Result<SnapshotOf<TypeConfig, SnapshotFile>> {
        let (applied, sequence) = {
            let mut state = self.lock();
            state.snapshots_built += 1;
            (state.applied.clone(), state.snapshots_built)
        };
        let building = self.snapshot_directory.join(format!("building-{sequence}"));
        tokio::fs::write(&building, encode(&applied)?).await?;
        tokio::fs::rename(&building, self.current_snapshot_path()).await?;
        let meta = SnapshotMeta {
            last_log_id: applied.last_applied,
            last_membership: applied.membership,
        };
        self.lock().current_snapshot = Some(meta.clone());
        Ok(Snapshot {
            meta,
            snapshot: SnapshotFile {
                path: self.current_snapshot_path(),
            },
        })
    }
}

impl RaftStateMachine<TypeConfig> for MemoryStateMachine {
    type SnapshotData = SnapshotFile;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let state = self.lock();
        Ok((state.applied.last_applied, state.applied.membership.clone()))
    }

    async fn apply<Entries>(&mut self, mut entries: Entries) -> io::Result<()>
    where
        Entries: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            {
                let mut state = self.lock();
                state.applied.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Normal(Proposal::Commands { timestamp_ms, .. }) => {
                        state.applied.timestamps_ms.push(timestamp_ms);
                    }
                    EntryPayload::Normal(Proposal::Failover(_)) => {}
                    EntryPayload::Membership(membership) => {
                        state.applied.membership =
                            StoredMembership::new(Some(entry.log_id), membership);
                    }
                }
            }
            if let Some(responder) = responder {
                responder.send(ProposalResult::default());
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotFile,
    ) -> io::Result<()> {
        let applied: AppliedState = decode(&tokio::fs::read(&snapshot.path).await?)?;
        // Takes the received file, as the real state machine must.
        tokio::fs::rename(&snapshot.path, self.current_snapshot_path()).await?;
        let mut state = self.lock();
        state.applied = applied;
        state.current_snapshot = Some(meta.clone());
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> io::Result<Option<SnapshotOf<TypeConfig, SnapshotFile>>> {
        let meta = self.lock().current_snapshot.clone();
        Ok(meta.map(|meta| Snapshot {
            meta,
            snapshot: SnapshotFile {
                path: self.current_snapshot_path(),
            },
        }))
    }
}
