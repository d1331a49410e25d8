//! Every limit and default of the MessageBox, named in one place.

/// Largest message body accepted by default (4 MiB).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;
/// Hard ceiling for the configurable body limit (64 MiB).
pub const MAX_BODY_BYTES_CEILING: u64 = 64 * 1024 * 1024;
/// A retried publish with the same message id within this window is stored once.
pub const DEFAULT_DEDUPE_WINDOW_MS: u64 = 10 * 60 * 1000;
/// How long a lease hides a message from other host instances by default.
pub const DEFAULT_LEASE_DURATION_MS: u64 = 30_000;
/// Shortest and longest lease a host instance may ask for.
pub const MIN_LEASE_DURATION_MS: u64 = 100;
pub const MAX_LEASE_DURATION_MS: u64 = 24 * 60 * 60 * 1000;
/// Retries after the first delivery before a message instance is suspended.
pub const DEFAULT_RETRY_COUNT: u32 = 3;
pub const MAX_RETRY_COUNT: u32 = 1000;
/// Wait before a failed message instance is offered again.
pub const DEFAULT_RETRY_INTERVAL_MS: u64 = 5 * 60 * 1000;
/// Exponential backoff never waits longer than this.
pub const MAX_RETRY_INTERVAL_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Past this many messages in the store, publish is refused as throttled.
pub const DEFAULT_THROTTLE_MESSAGE_COUNT: u64 = 10_000_000;
/// The retry-after hint given with a throttled refusal.
pub const THROTTLE_RETRY_AFTER_MS: u64 = 1000;
/// While the room a node's data directory has left (free space on its filesystem, less what
/// the next snapshot of the store will write) is below this, the active refuses publishes
/// as throttled.
pub const DEFAULT_MIN_FREE_DISK_BYTES: u64 = 1 << 30;
/// A due snapshot waits until the disk has this much free beyond the snapshot itself, for
/// the writes that go on while it is written.
pub const SNAPSHOT_SPARE_BYTES: u64 = 64 << 20;
/// How often a node measures the room its data directory has left: often enough that a
/// node publishing at full speed overshoots the floor by tens of megabytes at most.
pub const DISK_ROOM_SAMPLE_INTERVAL_MS: u64 = 250;
/// How often every node asks each other voter for its clock and its room on disk.
pub const MEMBER_PROBE_INTERVAL_MS: u64 = 250;
/// A node whose clock is further than this from the replica set's time (the median of the
/// voters' clocks) says so in its log; its entries are stamped with the replica set's time
/// all the same.
pub const CLOCK_OFFSET_WARNING_MS: u64 = 1_000;
/// How long the active's proposer waits for the clocks of a majority of the voters before
/// it stamps an entry with what it knows (four probe rounds; see `replica_set_time`).
pub const CLOCK_READINGS_WAIT_MS: u64 = 4 * MEMBER_PROBE_INTERVAL_MS;
/// Tracking events older than this may be purged by retention.
pub const DEFAULT_TRACKING_RETENTION_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Subscription priorities: 1 is the highest, 10 the lowest.
pub const HIGHEST_PRIORITY: u8 = 1;
pub const LOWEST_PRIORITY: u8 = 10;
pub const DEFAULT_PRIORITY: u8 = 5;

/// Names of hosts, subscriptions and host instances.
pub const MAX_NAME_BYTES: usize = 128;
/// Message ids chosen by publishers.
pub const MAX_MESSAGE_ID_BYTES: usize = 256;
/// Context property names and string values.
pub const MAX_PROPERTY_NAME_BYTES: usize = 256;
pub const MAX_PROPERTY_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_PROPERTIES_PER_MESSAGE: usize = 256;
/// Free-text reasons (fail, terminate).
pub const MAX_REASON_BYTES: usize = 4096;

/// Messages in one publish batch, and messages in one lease.
pub const MAX_PUBLISH_BATCH: usize = 1000;
pub const MAX_LEASE_BATCH: u32 = 1000;
/// Body bytes one lease hands out at most (it always hands out at least one message), so that
/// a batch of large messages cannot build an unbounded response.
pub const MAX_LEASE_BYTES: usize = 16 * 1024 * 1024;
/// Subscriptions in one message box.
pub const MAX_SUBSCRIPTIONS: usize = 100_000;

/// Work one maintenance tick does at most per kind (expired leases, due retries,
/// dedupe entries), so that no single command runs unbounded.
pub const MAX_SWEEP_PER_TICK: usize = 2000;
/// Tracking events one purge command removes at most.
pub const MAX_TRACKING_PURGE_PER_COMMAND: usize = 10_000;
/// Rows one listing query returns at most, and by default.
pub const MAX_LIST_ROWS: usize = 1000;
pub const DEFAULT_LIST_LIMIT: usize = 100;

/// Commands, and published messages, the store's committer puts in one transaction at most.
pub const MAX_COMMANDS_PER_COMMIT: usize = 4096;
pub const MAX_MESSAGES_PER_COMMIT: usize = 8192;
/// Requests waiting for the committer at most; callers wait for room beyond that.
pub const COMMIT_QUEUE_CAPACITY: usize = 16_384;

/// The longest a lease call may wait for work, and how often a waiting lease re-checks its
/// queue even without a wake-up.
pub const MAX_LEASE_WAIT_MS: u64 = 60_000;
pub const LEASE_RECHECK_INTERVAL_MS: u64 = 250;
/// Leased messages a lease stream buffers for a slow reader.
pub const LEASE_STREAM_BUFFER: usize = 16;
/// The slowest maintenance tick a node may be configured with.
pub const MAX_TICK_INTERVAL_MS: u64 = 60_000;
/// How long in-flight requests may run on after a node's shutdown begins.
pub const SHUTDOWN_GRACE_MS: u64 = 5_000;

/// Replication (the cluster layer).
///
/// Commands waiting for the active's proposer at most; callers wait for room beyond that.
pub const PROPOSAL_QUEUE_CAPACITY: usize = 16_384;
/// Log entries the active has proposed and not yet seen committed, at most.
pub const MAX_PROPOSALS_IN_FLIGHT: usize = 16;
/// AppendEntries a pipelined replication session keeps unanswered at most: enough to keep
/// the link busy while the passive writes and fsyncs, few enough that a passive catching up
/// holds a few requests (each up to `max_payload_entries` entries) in memory, not hundreds.
pub const MAX_APPEND_ENTRIES_IN_FLIGHT: usize = 4;
/// Writes waiting for the Raft log's writer thread at most; `append` waits for room beyond.
pub const RAFT_LOG_WRITE_QUEUE_CAPACITY: usize = 4096;
/// Entry bytes the Raft log's writer deletes at most in one step of a purge (at least one
/// entry), between the appends it serves. Deleting an entry reads every page of it (SQLite
/// follows its overflow chain to free the pages): a purge of gigabytes done at once held up
/// every append for seconds.
pub const RAFT_LOG_PURGE_STEP_BYTES: u64 = 4 * 1024 * 1024;
/// Entries the Raft log's writer deletes at most in one step of a purge.
pub const RAFT_LOG_PURGE_STEP_ENTRIES: u64 = 1024;
/// Committed entries the state machine takes from openraft before asking the store to apply
/// them (they share transactions).
pub const MAX_ENTRIES_PER_APPLY: usize = 256;
/// Inbound replication connections one node keeps open at most; more are closed at once.
/// A peer opens a few (replication, heartbeats, snapshots, elections), so this leaves room
/// for large replica sets and for connections a restarting peer has not closed yet.
pub const MAX_INBOUND_REPLICATION_CONNECTIONS: usize = 256;
/// The largest replication frame a node sends or accepts. Entries carry at most
/// `MAX_MESSAGES_PER_COMMIT` messages of at most the body limit each, and replication sends
/// few entries per frame.
pub const MAX_REPLICATION_FRAME_BYTES: usize = 512 * 1024 * 1024;
/// Snapshot bytes read from the file, or from the socket, per step.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// Host instances (the host layer).
///
/// Deliveries one host instance runs at once, across its send ports.
pub const HOST_MAX_DELIVERIES_IN_FLIGHT: usize = 32;
/// Messages one lease call of a host instance asks for at most.
pub const HOST_LEASE_BATCH: usize = 16;
/// How long a host instance's lease call waits for work before asking again.
pub const HOST_LEASE_WAIT_MS: u64 = 1_000;
/// The pause after a host instance's call failed for good, before it asks again.
pub const HOST_ERROR_PAUSE_MS: u64 = 1_000;
/// Files one pass of a FILE receive location claims at most.
pub const HOST_FILE_PICKUP_BATCH: usize = 64;
/// How long an HTTP receive request waits for the durable acknowledgement (through an
/// election) before it is answered 503 with Retry-After.
pub const HOST_HTTP_RECEIVE_DEADLINE_MS: u64 = 5_000;
/// How long one call of a host instance to a node may take before the node counts as
/// silent (paused, cut off) and the call moves on to another node.
pub const HOST_CALL_TIMEOUT_MS: u64 = 5_000;
/// How long a stopping host instance waits for its deliveries under way to be settled
/// (during an outage they cannot be); the rest are delivered again after their leases.
pub const HOST_STOP_GRACE_MS: u64 = 10_000;
/// How long an HTTP send may take, connection and answer included.
pub const HTTP_SEND_TIMEOUT_MS: u64 = 30_000;
