//! [`CommitProgress`] and [`CommitWatch`]: which of the committer's transactions have
//! answered callers before committing, and which have finished, so that a read can wait
//! until everything already answered is on disk.
//!
//! The committer answers a replicated batch as soon as it is applied, before its transaction
//! commits (see [`crate::committer`]). Operator reads run on a connection of their own, which
//! sees committed transactions only; without waiting, a caller that published and then asked
//! for the message's history could be told it does not exist yet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// The committer's side. Transactions are numbered from 1, in the order it runs them.
pub struct CommitProgress {
    /// The newest transaction that has answered a caller.
    answered: Arc<AtomicU64>,
    /// The newest transaction that has committed or failed.
    finished: watch::Sender<u64>,
}

/// The readers' side: cheap to clone.
#[derive(Clone)]
pub struct CommitWatch {
    answered: Arc<AtomicU64>,
    finished: watch::Receiver<u64>,
}

/// A committer's progress and the watch its readers wait on.
pub fn commit_progress() -> (CommitProgress, CommitWatch) {
    let answered = Arc::new(AtomicU64::new(0));
    let (finished, finished_watch) = watch::channel(0);
    let watch = CommitWatch {
        answered: answered.clone(),
        finished: finished_watch,
    };
    (CommitProgress { answered, finished }, watch)
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
}

impl CommitWatch {
    /// Waits until every transaction that had answered a caller when this was called has
    /// finished, or the committer has stopped. Returns at once when none is pending.
    pub async fn settled(&self) {
        let answered = self.answered.load(Ordering::Acquire);
        let mut finished = self.finished.clone();
        // Fails only once the committer is gone: nothing is left to wait for.
        let _ = finished.wait_for(|finished| *finished >= answered).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::commit_progress;

    /// How long a test waits for what must happen at once.
    const PROMPTLY: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn a_read_waits_for_the_transaction_that_answered_early() {
        let (progress, watch) = commit_progress();
        tokio::time::timeout(PROMPTLY, watch.settled())
            .await
            .expect("nothing is pending");
        progress.answering(1);
        let waiting = tokio::spawn({
            let watch = watch.clone();
            async move { watch.settled().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "the read went ahead of the commit");
        progress.finished(1);
        tokio::time::timeout(PROMPTLY, waiting)
            .await
            .expect("the read goes ahead once the transaction finished")
            .expect("the waiting task");
    }

    #[tokio::test]
    async fn a_read_goes_ahead_once_every_answering_transaction_finished() {
        let (progress, watch) = commit_progress();
        for number in 1..=3 {
            progress.answering(number);
            progress.finished(number);
            tokio::time::timeout(PROMPTLY, watch.settled())
                .await
                .expect("nothing is pending");
        }
    }

    #[tokio::test]
    async fn a_read_goes_ahead_once_the_committer_is_gone() {
        let (progress, watch) = commit_progress();
        progress.answering(1);
        drop(progress);
        tokio::time::timeout(PROMPTLY, watch.settled())
            .await
            .expect("nothing is left to wait for");
    }
}
