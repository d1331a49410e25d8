//! [`new_message_id`]: idempotency keys for publishes, unique without a uuid crate. Shared by
//! the client (ids it reuses across retries) and the server (ids for publishes that bring none);
//! [`uuid_text`] writes 128 bits the same way (the benchmark's random ids).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static MESSAGE_ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new message id, formatted like a UUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
///
/// The first 64 bits are the wall clock in nanoseconds (so ids roughly sort by time); the
/// last 64 bits hash the clock, the process id and a process-wide counter with a freshly
/// seeded [`RandomState`], so that ids differ across processes, threads and calls.
pub fn new_message_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    let counter = MESSAGE_ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.write_u64(counter);
    uuid_text(nanos as u64, hasher.finish())
}

/// 128 bits, `high` first, formatted like a UUID (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`).
pub fn uuid_text(high: u64, low: u64) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_look_like_uuids() {
        let id = new_message_id();
        let groups: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(groups, vec![8, 4, 4, 4, 12], "{id}");
        assert!(id.chars().all(|character| character == '-'
            || character.is_ascii_digit()
            || ('a'..='f').contains(&character)));
    }

    #[test]
    fn ids_do_not_repeat() {
        let ids: HashSet<String> = (0..10_000).map(|_| new_message_id()).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
