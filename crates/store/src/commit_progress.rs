//! [`CommitProgress`]: which of the committer's transactions have answered callers before
//! committing, and which have finished, so that a read can wait until everything already
//! answered is on disk.
//!
//! The committer answers a replicated batch as soon as it is applied, before its transaction
//! commits (see [`crate::committer`]). Operator reads run on a connection of their own, which
//! sees committed transactions only; without waiting, a caller that published and then asked
//! for the message's history could be told it does not exist yet.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// Transactions are numbered from 1 by the committer, in the order it runs them.
pub struct CommitProgress {
    /// The newest transaction that has answered a caller.
    answered: AtomicU64,
    /// The newest transaction that has committed or failed.
    finished: watch::Sender<u64>,
}

impl Default for CommitProgress {
    fn default() -> CommitProgress {
        CommitProgress {
            answered: AtomicU64::new(0),
            finished: watch::Sender::new(0),
        }
    }
}

impl CommitProgress {
    /// Transaction `number` is about to answer a caller before it commits.
    pub fn answering(&self, number: u64) {
        self.answered.fetch_max(number, Ordering::AcqRel);
    }

    /// Transaction `number` has committed, or failed and been rolled back (readers then see
    /// the store without it, which is all there is).
    pub fn finished(&self, number: u64) {
        self.finished.send_replace(number);
    }

    /// Waits until every transaction that had answered a caller when this was called has
    /// finished. Returns at once when none is pending.
    pub async fn settled(&self) {
        let answered = self.answered.load(Ordering::Acquire);
        let mut finished = self.finished.subscribe();
        // The sender lives as long as `self`; `wait_for` only fails once it is gone.
        let _ = finished.wait_for(|finished| *finished >= answered).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::CommitProgress;

    #[tokio::test]
    async fn a_read_waits_for_the_transaction_that_answered_early() {
        let progress = Arc::new(CommitProgress::default());
        progress.settled().await;
        progress.answering(1);
        let waiting = tokio::spawn({
            let progress = progress.clone();
            async move { progress.settled().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the read went ahead of the commit");
        progress.finished(1);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the read goes ahead once the transaction finished")
            .expect("the waiting task");
    }

    #[tokio::test]
    async fn a_read_goes_ahead_once_every_answering_transaction_finished() {
        let progress = CommitProgress::default();
        for number in 1..=3 {
            progress.answering(number);
            progress.finished(number);
            tokio::time::timeout(Duration::from_secs(5), progress.settled())
                .await
                .expect("nothing is pending");
        }
    }
}
