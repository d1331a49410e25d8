//! Unique message ids for publishes that bring none: time, process id, a counter and a
//! little randomness, so that ids from different nodes and restarts never collide.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static NEXT_SEQUENCE: AtomicU64 = AtomicU64::new(0);

/// A new id such as `18c2f1a9b3e0d000-3f2a-7-9b1c44e2d0a17f3e`.
pub fn generate_message_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or(0);
    let sequence = NEXT_SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let process = std::process::id();
    format!(
        "{nanos:x}-{process:x}-{sequence:x}-{:016x}",
        random_u64(nanos ^ sequence)
    )
}

/// Randomness without a crate: `RandomState` is seeded from the operating system.
fn random_u64(salt: u64) -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(salt);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_valid() {
        let ids: std::collections::BTreeSet<String> =
            (0..1000).map(|_| generate_message_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            assert!(tandem_core::validate::message_id(id).is_ok(), "{id}");
        }
    }
}
