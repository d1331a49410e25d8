//! Where storage work runs: [`Execution`] is chosen when a store (or the cluster's Raft log)
//! is opened, and decides whether its writer owns an OS thread and whether reads and snapshot
//! writes go to tokio's blocking pool, or whether all of it runs on the calling runtime's
//! thread. The store and the Raft log each keep the choice next to the work it governs.

/// Where storage work runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Execution {
    /// Production: the committer (and the Raft log's writer) each own an OS thread; reads and
    /// snapshot writes run on tokio's blocking pool.
    #[default]
    Threads,
    /// Every storage operation runs on the calling tokio runtime's thread, in the order it is
    /// asked for: the committer and the log writer become tokio tasks on the current runtime,
    /// and blocking sections run in place. For a single-threaded deterministic simulation; it
    /// blocks the runtime while SQLite works.
    Inline,
}

impl Execution {
    /// Runs blocking `work` where this execution puts it: on tokio's blocking pool
    /// ([`Execution::Threads`]) or in place ([`Execution::Inline`]). Fails only when the
    /// blocking pool loses the work (it panicked, or the runtime is shutting down).
    pub async fn run_blocking<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> std::io::Result<T> {
        match self {
            Execution::Threads => tokio::task::spawn_blocking(work)
                .await
                .map_err(|error| std::io::Error::other(format!("blocking task failed: {error}"))),
            Execution::Inline => Ok(work()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_of_work(execution: Execution) -> std::thread::ThreadId {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(execution.run_blocking(|| std::thread::current().id()))
            .unwrap()
    }

    #[test]
    fn inline_work_runs_on_the_calling_thread_and_threaded_work_does_not() {
        let caller = std::thread::current().id();
        assert_eq!(thread_of_work(Execution::Inline), caller);
        assert_ne!(thread_of_work(Execution::Threads), caller);
    }
}
