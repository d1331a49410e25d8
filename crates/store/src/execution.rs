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
