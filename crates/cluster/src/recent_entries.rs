//! [`RecentEntries`]: the Raft log's newest entries in memory, so that the reads that follow
//! an append (replication to the passives, then the state machine's apply once the entry is
//! committed) do not go back to the file and decode what was just encoded.
//!
//! An entry is held from its append until the writer has it in the file (unflushed: readers
//! must find it here), and after that while the flushed entries fit in a byte budget (the
//! memory they take, as [`memory_bytes`] estimates it); the oldest flushed entries are
//! dropped first. Truncations and purges remove entries here before they change the file.
//! Every entry held is also in the file once flushed, so dropping one only sends a later read
//! to the file.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use openraft::EntryPayload;
use openraft::entry::RaftEntry;
use tandem_core::Command;

use crate::types::{Entry, LogId, Proposal};

/// Flushed entries kept in memory by default, in bytes of memory (with three replicas on one
/// machine, three times this). Enough for several seconds of entries at full load, which is
/// how far behind the state machine and an in-sync passive run.
pub const DEFAULT_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// The memory an entry of `encoded_bytes` takes once decoded, as the budget counts it: its
/// encoded size (the bodies, texts and numbers it carries) plus the fixed size of the entry
/// and of each of its commands. Small commands take far more room decoded than encoded: a
/// hundred completions encode in about 1,500 bytes and take about 12,000. Counted by encoded
/// size alone, a budget full of them (a backlog being drained) took several times the budget.
pub fn memory_bytes(entry: &Entry, encoded_bytes: usize) -> usize {
    let commands = match &entry.payload {
        EntryPayload::Normal(Proposal::Commands { commands, .. }) => commands.len(),
        _ => 0,
    };
    encoded_bytes + size_of::<Entry>() + commands * size_of::<Command>()
}

pub struct RecentEntries {
    inner: Mutex<Held>,
}

struct Held {
    entries: BTreeMap<u64, HeldEntry>,
    /// The memory of the flushed entries held ([`memory_bytes`]).
    flushed_bytes: usize,
    budget_bytes: usize,
}

struct HeldEntry {
    entry: Entry,
    /// Its memory ([`memory_bytes`]) once the writer has it in the file; `None` while
    /// unflushed.
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
                let memory = memory_bytes(&waiting.entry, bytes);
                waiting.flushed_bytes = Some(memory);
                held.flushed_bytes += memory;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::codec::encode;
    use crate::types::log_id;

    /// An entry of a hundred completions: small commands, a few bytes each encoded.
    fn completions(index: u64) -> Entry {
        let commands = (0..100)
            .map(|instance| Command::Complete { instance, token: 7 })
            .collect();
        Entry::new_normal(
            log_id(1, 1, index),
            Proposal::Commands {
                timestamp_ms: 1_700_000_000_000,
                commands: Arc::new(commands),
            },
        )
    }

    #[test]
    fn the_budget_counts_what_small_commands_take_in_memory_not_their_encoded_size() {
        let entries: Vec<Entry> = (0..10).map(completions).collect();
        let encoded: Vec<usize> = entries
            .iter()
            .map(|entry| encode(entry).expect("encode").len())
            .collect();
        let one_entry_memory = memory_bytes(&entries[0], encoded[0]);
        assert!(
            one_entry_memory > 5 * encoded[0],
            "{one_entry_memory} bytes in memory, {} encoded",
            encoded[0]
        );
        // All ten fit this budget by their encoded size; by their memory, two do.
        let recent = RecentEntries::with_budget(2 * one_entry_memory);
        assert!(encoded.iter().sum::<usize>() < 2 * one_entry_memory);
        recent.appended(&entries);
        recent.flushed(&entries, &encoded);
        let held: Vec<u64> = recent.range(0, 9).into_keys().collect();
        assert_eq!(held, [8, 9]);
    }
}
