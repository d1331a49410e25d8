//! [`RecentEntries`]: the Raft log's newest entries in memory, so that the reads that follow
//! an append (replication to the passives, then the state machine's apply once the entry is
//! committed) do not go back to the file and decode what was just encoded.
//!
//! An entry is held from its append until the writer has it in the file (unflushed: readers
//! must find it here), and after that while the flushed entries fit in a byte budget (their
//! encoded size); the oldest flushed entries are dropped first. Truncations and purges remove
//! entries here before they change the file. Every entry held is also in the file once
//! flushed, so dropping one only sends a later read to the file.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use openraft::entry::RaftEntry;

use crate::types::{Entry, LogId};

/// Flushed entries kept in memory by default, in encoded bytes (with three replicas on one
/// machine, three times this). Enough for several seconds of entries at full load, which is
/// how far behind the state machine and an in-sync passive run.
pub const DEFAULT_BUDGET_BYTES: usize = 64 * 1024 * 1024;

pub struct RecentEntries {
    inner: Mutex<Held>,
}

struct Held {
    entries: BTreeMap<u64, HeldEntry>,
    /// Encoded bytes of the flushed entries held.
    flushed_bytes: usize,
    budget_bytes: usize,
}

struct HeldEntry {
    entry: Entry,
    /// Its encoded size once the writer has it in the file; `None` while unflushed.
    flushed_bytes: Option<usize>,
}

impl Default for RecentEntries {
    fn default() -> RecentEntries {
        RecentEntries::with_budget(DEFAULT_BUDGET_BYTES)
    }
}

impl RecentEntries {
    pub fn with_budget(budget_bytes: usize) -> RecentEntries {
        RecentEntries {
            inner: Mutex::new(Held {
                entries: BTreeMap::new(),
                flushed_bytes: 0,
                budget_bytes,
            }),
        }
    }

    /// Holds `entries`, unflushed, replacing any held at the same indexes.
    pub fn appended(&self, entries: &[Entry]) {
        let mut held = self.lock();
        for entry in entries {
            let replaced = held.entries.insert(
                entry.index(),
                HeldEntry {
                    entry: entry.clone(),
                    flushed_bytes: None,
                },
            );
            held.forget_bytes(replaced);
        }
    }

    /// The writer has `entries` (with these encoded sizes) in the file: they count against the
    /// budget from now on, unless a later append replaced them.
    pub fn flushed(&self, entries: &[Entry], encoded_bytes: &[usize]) {
        let mut held = self.lock();
        for (entry, &bytes) in entries.iter().zip(encoded_bytes) {
            if let Some(waiting) = held.entries.get_mut(&entry.index())
                && waiting.flushed_bytes.is_none()
                && waiting.entry.log_id() == entry.log_id()
            {
                waiting.flushed_bytes = Some(bytes);
                held.flushed_bytes += bytes;
            }
        }
        held.drop_oldest_flushed_over_budget();
    }

    /// The writer failed to store `entries` (which stops the node): readers must not find
    /// them, unless a later append replaced them.
    pub fn failed(&self, entries: &[Entry]) {
        let mut held = self.lock();
        for entry in entries {
            if held
                .entries
                .get(&entry.index())
                .is_some_and(|waiting| waiting.entry.log_id() == entry.log_id())
            {
                let removed = held.entries.remove(&entry.index());
                held.forget_bytes(removed);
            }
        }
    }

    /// Drops every entry from `first_index` on (a truncation).
    pub fn remove_from(&self, first_index: u64) {
        let mut held = self.lock();
        let removed = held.entries.split_off(&first_index);
        removed
            .into_values()
            .for_each(|entry| held.forget_bytes(Some(entry)));
    }

    /// Drops every entry up to `last_index` (a purge).
    pub fn remove_up_to(&self, last_index: u64) {
        let mut held = self.lock();
        let kept = held.entries.split_off(&(last_index + 1));
        let removed = std::mem::replace(&mut held.entries, kept);
        removed
            .into_values()
            .for_each(|entry| held.forget_bytes(Some(entry)));
    }

    /// Copies of the entries held in `first_index..=last_index`, by index.
    pub fn range(&self, first_index: u64, last_index: u64) -> BTreeMap<u64, Entry> {
        self.lock()
            .entries
            .range(first_index..=last_index)
            .map(|(index, held)| (*index, held.entry.clone()))
            .collect()
    }

    /// The newest entry held (flushed or not).
    pub fn last_log_id(&self) -> Option<LogId> {
        self.lock()
            .entries
            .values()
            .next_back()
            .map(|held| held.entry.log_id())
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Held {
    fn forget_bytes(&mut self, removed: Option<HeldEntry>) {
        if let Some(bytes) = removed.and_then(|removed| removed.flushed_bytes) {
            self.flushed_bytes -= bytes;
        }
    }

    /// Drops flushed entries from the oldest until the rest fit the budget; stops at an
    /// unflushed one (the writer flushes in index order, so none is older than a flushed one
    /// for long).
    fn drop_oldest_flushed_over_budget(&mut self) {
        while self.flushed_bytes > self.budget_bytes {
            let Some(oldest) = self.entries.first_entry() else {
                return;
            };
            if oldest.get().flushed_bytes.is_none() {
                return;
            }
            let removed = oldest.remove();
            self.forget_bytes(Some(removed));
        }
    }
}
