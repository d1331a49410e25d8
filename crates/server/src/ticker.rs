//! The maintenance ticker: on the active, applies `Command::Tick` every `tick_interval_ms`
//! so that expired leases return to their queues, due retries become ready, and old dedupe
//! entries and tracking events go; and brings the replicated settings in line with this
//! node's configuration. Each tick does a bounded amount of each kind of work; a tick that
//! reached a bound is followed at once by another (up to [`MAX_TICKS_PER_INTERVAL`]), so
//! that maintenance keeps up with sustained load and works off a backlog quickly. Passive
//! nodes skip: the ticks reach them through the log. Quiet on empty ticks; a failure is
//! logged once until ticks succeed again.

use std::time::Duration;

use tandem_core::{Command, Outcome};
use tokio::time::MissedTickBehavior;

use crate::state::SharedState;

/// Ticks applied one after another at most per interval while each reaches a bound. With
/// the default interval (200 ms) and bound (2,000 per kind of work), up to 500,000 dedupe
/// entries, expired leases or tracking events a second; one tick per interval would manage
/// 10,000 a second, fewer than a node completes under load.
pub const MAX_TICKS_PER_INTERVAL: usize = 50;

/// Runs until shutdown begins. Wake-ups for released work are signalled by `execute`.
pub async fn run_ticker(state: SharedState, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_failure: Option<String> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = state.shutdown_begun() => return,
        }
        if !state.replica.is_active() {
            continue;
        }
        match tick(&state).await {
            Ok(_) => {
                if last_failure.take().is_some() {
                    eprintln!("tandem: ticks succeed again");
                }
            }
            Err(error) => {
                let message = error.to_string();
                if last_failure.as_deref() != Some(message.as_str()) {
                    eprintln!("tandem: tick failed: {message}");
                    last_failure = Some(message);
                }
            }
        }
    }
}

/// Applies the configured settings if the replicated ones differ (a new active, or a
/// restarted one with a changed configuration), then ticks until a tick reaches no bound.
/// Each tick is its own command, so client commands are applied between them.
async fn tick(state: &SharedState) -> tandem_core::error::Result<()> {
    let configured = state.config.settings();
    if state.store.catalog().state.settings != configured {
        state.execute(Command::Configure(configured)).await?;
    }
    for _ in 0..MAX_TICKS_PER_INTERVAL {
        let outcome = state.execute(Command::Tick).await?;
        let backlog = matches!(outcome, Outcome::Ticked(report) if report.reached_a_bound());
        if !backlog || !state.replica.is_active() {
            break;
        }
    }
    Ok(())
}
