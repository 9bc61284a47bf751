//! Every bound and default of the raft crate, with the reason for its value.
//!
//! Thread: constants only.

/// Bytes of one Raft index entry on disk (see `index.rs` for the layout): four fields
/// and a CRC, a power of two so entries never straddle a sector.
pub const INDEX_ENTRY_BYTES: usize = 32;

/// Distance between the two hard-state slots: one sector each, so a torn write of one
/// slot can never touch the other.
pub const HARD_STATE_SLOT_STRIDE_BYTES: usize = 512;

/// Voters a group may have. RocketMQ groups run 3 or 5 nodes; 9 leaves room and keeps a
/// hard-state slot far below one sector.
pub const VOTERS_MAX: usize = 9;

/// A commit-only hard-state change is written (and fdatasynced) at most every this many
/// entries: the commit index need not be durable for safety (raft relearns it), it only
/// bounds how many entries a restart applies again, so it is not worth an fdatasync on
/// every commit. Term and vote changes are always written and synced at once.
pub const COMMIT_PERSIST_EVERY_ENTRIES: u64 = 256;

/// Proposals waiting to be applied on one replica. About 1 s of sends at high load; past
/// it the broker answers busy instead of growing memory.
pub const PROPOSALS_PENDING_MAX: usize = 65_536;

/// Uncommitted bytes a leader accepts (raft-rs `max_uncommitted_size`): bounds the tail an
/// old leader may have to load into its entry cache at restart, and memory while a
/// majority is unreachable.
pub const UNCOMMITTED_MAX_BYTES: u64 = 64 << 20;

/// Committed entry bytes handed to the applier per Ready, so one Ready after a long
/// outage does not hold the executor for long.
pub const COMMITTED_PER_READY_MAX_BYTES: u64 = 16 << 20;

/// A fetch of old entries for a lagging follower reads at most this many bytes of
/// CommitLog at once (raft-rs asks for at most `max_entries_bytes_per_msg` anyway).
pub const FETCH_BYTES_MAX: u64 = 4 << 20;

/// Fetch requests remembered at once: one per follower is the most raft-rs makes.
pub const FETCH_REQUESTS_MAX: usize = VOTERS_MAX;

/// A persist the store refused as busy is retried after this long.
pub const PERSIST_BUSY_RETRY_MS: u64 = 2;

/// Messages in one wire frame, and bytes of one encoded message: a frame over these is
/// refused instead of allocated. 64 MiB covers `max_entries_bytes_per_msg` with room.
pub const WIRE_MESSAGES_MAX: usize = 4096;
pub const WIRE_MESSAGE_MAX_BYTES: usize = 64 << 20;

// Defaults of `ReplicaConfig` (REPLICATION.md).
pub const TICK_DEFAULT_MS: u64 = 100;
/// 10 ticks = 1 s; raft-rs randomises the timeout in [e, 2e).
pub const ELECTION_TICKS_DEFAULT: usize = 10;
pub const HEARTBEAT_TICKS_DEFAULT: usize = 2;
/// AppendEntries in flight per follower (pipelining depth).
pub const MAX_INFLIGHT_MSGS_DEFAULT: usize = 64;
pub const MAX_ENTRIES_BYTES_PER_MSG_DEFAULT: u64 = 1 << 20;
pub const PROPOSE_TIMEOUT_DEFAULT_MS: u64 = 5_000;
/// Recent entry data kept for followers; entries not yet applied are kept regardless.
pub const ENTRY_CACHE_DEFAULT_BYTES: usize = 64 << 20;

/// Longest the Raft index goes without an fdatasync while only `async`-topic entries
/// arrive: the store's own background flush interval, so a power loss takes at most
/// about as much of the index as of the records it points to.
pub const INDEX_SYNC_INTERVAL_MS: u64 = 500;

/// Most bytes of proposals gathered into one entry: large enough that a burst of 1 KiB
/// sends becomes one entry (a few hundred records), small enough that one entry is a
/// fraction of `MAX_ENTRIES_BYTES_PER_MSG_DEFAULT` and pipelines with the next.
pub const PROPOSAL_BATCH_MAX_BYTES: usize = 256 << 10;
