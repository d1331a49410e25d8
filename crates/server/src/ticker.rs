//! The maintenance ticker: on the active, applies `Command::Tick` every `tick_interval_ms`
//! so that expired leases return to their queues and due retries become ready, and brings
//! the replicated settings in line with this node's configuration. Passive nodes skip: the
//! ticks reach them through the log. Quiet on empty ticks; a failure is logged once until
//! ticks succeed again.

use std::time::Duration;

use tandem_core::Command;
use tokio::time::MissedTickBehavior;

use crate::state::SharedState;

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
/// restarted one with a changed configuration), then ticks.
async fn tick(state: &SharedState) -> tandem_core::error::Result<()> {
    let configured = state.config.settings();
    if state.store.catalog().state.settings != configured {
        state.execute(Command::Configure(configured)).await?;
    }
    state.execute(Command::Tick).await.map(|_| ())
}
