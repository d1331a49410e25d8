//! [`WorkSignal`]: wakes long-polling leases when a command may have made work ready
//! (a publish that created instances, an abandon, a retry, a resume, a tick that expired
//! leases). One signal for every host: a woken lease that finds nothing simply waits again.

use tokio::sync::watch;

/// A counter that goes up whenever work may have become ready.
pub struct WorkSignal {
    generation: watch::Sender<u64>,
}

/// One waiter's view of the signal.
pub type WorkWatcher = watch::Receiver<u64>;

impl Default for WorkSignal {
    fn default() -> WorkSignal {
        WorkSignal {
            generation: watch::Sender::new(0),
        }
    }
}

impl WorkSignal {
    /// Wakes every waiter.
    pub fn notify(&self) {
        self.generation
            .send_modify(|generation| *generation = generation.wrapping_add(1));
    }

    /// Subscribe before checking for work, so that no notification is missed.
    pub fn watch(&self) -> WorkWatcher {
        self.generation.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_notification_wakes_a_watcher() {
        let signal = WorkSignal::default();
        let mut watcher = signal.watch();
        signal.notify();
        let woken = tokio::time::timeout(std::time::Duration::from_secs(1), watcher.changed());
        assert!(woken.await.is_ok());
    }
}
