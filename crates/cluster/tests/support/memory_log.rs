//! An in-memory Raft log for tests that need a running `openraft::Raft` but not durability.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

use openraft::OptionalSend;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use tandem_cluster::types::{Entry, LogId, TypeConfig, Vote};

/// Clones share one log, so the log reader sees what the storage wrote.
#[derive(Clone, Debug, Default)]
pub struct MemoryLog {
    state: Arc<Mutex<LogData>>,
}

#[derive(Debug, Default)]
struct LogData {
    vote: Option<Vote>,
    committed: Option<LogId>,
    last_purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
}

impl MemoryLog {
    fn data(&self) -> std::sync::MutexGuard<'_, LogData> {
        self.state.lock().expect("log lock poisoned")
    }
}

impl RaftLogReader<TypeConfig> for MemoryLog {
    async fn try_get_log_entries<Range>(&mut self, range: Range) -> io::Result<Vec<Entry>>
    where
        Range: RangeBounds<u64> + Clone + Debug + OptionalSend,
    {
        Ok(self
            .data()
            .entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(self.data().vote)
    }
}

impl RaftLogStorage<TypeConfig> for MemoryLog {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let data = self.data();
        let last_log_id = data
            .entries
            .values()
            .next_back()
            .map(|entry| entry.log_id)
            .or(data.last_purged);
        Ok(LogState {
            last_purged_log_id: data.last_purged,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        self.data().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        self.data().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.data().committed)
    }

    async fn append<Entries>(
        &mut self,
        entries: Entries,
        callback: IOFlushed<TypeConfig>,
    ) -> io::Result<()>
    where
        Entries: IntoIterator<Item = Entry> + OptionalSend,
        Entries::IntoIter: OptionalSend,
    {
        {
            let mut data = self.data();
            for entry in entries {
                data.entries.insert(entry.log_id.index, entry);
            }
        }
        callback.io_completed(Ok(()));
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let first_removed = last_log_id.map_or(0, |log_id| log_id.index + 1);
        self.data().entries.split_off(&first_removed);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let mut data = self.data();
        data.entries = data.entries.split_off(&(log_id.index + 1));
        data.last_purged = Some(log_id);
        Ok(())
    }
}
