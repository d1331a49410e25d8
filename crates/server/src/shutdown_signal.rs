//! [`ShutdownSignals`]: SIGINT and SIGTERM, installed before the node reports ready so that
//! a signal sent right after the ready line is never lost (nor kills the process outright).

use crate::ServerError;

pub struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Installs the handlers now; [`ShutdownSignals::wait`] then sees any later signal.
    #[cfg(unix)]
    pub fn install() -> Result<ShutdownSignals, ServerError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt()).map_err(ServerError::Signal)?,
            terminate: signal(SignalKind::terminate()).map_err(ServerError::Signal)?,
        })
    }

    #[cfg(not(unix))]
    pub fn install() -> Result<ShutdownSignals, ServerError> {
        Ok(ShutdownSignals {})
    }

    /// Resolves at the first SIGINT or SIGTERM.
    #[cfg(unix)]
    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }

    #[cfg(not(unix))]
    pub async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
