//! The wall clock the active stamps into log entries and failover records. A node reads the
//! system clock; a deterministic simulation, which runs every node on one thread, replaces it
//! on that thread with [`simulate_wall_clock_on_this_thread`] so that a run repeats exactly.
//! Durations (timeouts, unavailability windows) use `tokio::time::Instant`, which follows a
//! simulation's paused clock by itself. A drill can set this node's clock off by a fixed
//! amount ([`set_clock_off_for_drills`]) to rehearse a machine whose clock is wrong.

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, Ordering};

thread_local! {
    static SIMULATED_WALL_CLOCK: Cell<Option<fn() -> i64>> = const { Cell::new(None) };
}

/// Added to the system clock by [`wall_clock_ms`]: 0 unless a drill set it.
static DRILL_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// From now on, this process's wall clock reads `offset_ms` off the system clock (positive:
/// ahead), as a machine's would whose clock is wrong (`tandem node start
/// --drill-clock-offset-ms`).
pub fn set_clock_off_for_drills(offset_ms: i64) {
    DRILL_OFFSET_MS.store(offset_ms, Ordering::Relaxed);
}

/// From now on, [`wall_clock_ms`] on this thread answers `clock()`.
pub fn simulate_wall_clock_on_this_thread(clock: fn() -> i64) {
    SIMULATED_WALL_CLOCK.with(|simulated| simulated.set(Some(clock)));
}

/// The time in ms since the epoch: the system clock (off by a drill's offset), or this
/// thread's simulated one.
pub fn wall_clock_ms() -> i64 {
    match SIMULATED_WALL_CLOCK.with(Cell::get) {
        Some(clock) => clock(),
        None => system_clock_ms().saturating_add(DRILL_OFFSET_MS.load(Ordering::Relaxed)),
    }
}

fn system_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_clock_replaces_the_system_clock_on_its_thread_only() {
        let system_now = wall_clock_ms();
        assert!(system_now > 1_600_000_000_000);
        let from_another_thread = std::thread::spawn(|| {
            simulate_wall_clock_on_this_thread(|| 42);
            wall_clock_ms()
        })
        .join()
        .unwrap();
        assert_eq!(from_another_thread, 42);
        assert!(wall_clock_ms() >= system_now);
    }
}
