//! Named limits and defaults of the store, unit last. Each says why it has its value.

/// CommitLog segment size: RocketMQ's 1 GiB, so segment file names line up with a
/// RocketMQ store of the same data. Tests use much smaller segments.
pub const SEGMENT_SIZE_DEFAULT_BYTES: u64 = 1 << 30;

/// The smallest segment a store will open: room for a handful of small records plus the
/// BLANK filler, so the roll-over logic is exercised by tests without degenerate cases.
pub const SEGMENT_SIZE_MIN_BYTES: u64 = 4096;

/// Entries per ConsumeQueue file: RocketMQ's 300,000 (a 6,000,000-byte file).
pub const CONSUME_QUEUE_FILE_ENTRIES_DEFAULT: u64 = 300_000;

/// Background flush period of `async` topics (RocketMQ's `flushIntervalCommitLog`).
pub const FLUSH_INTERVAL_DEFAULT_MS: u64 = 500;

/// An `async` topic's dirty bytes past this wake the flusher early, so a burst does not
/// leave gigabytes at the mercy of the page cache until the next tick.
pub const FLUSH_DIRTY_DEFAULT_BYTES: u64 = 64 << 20;

/// How long a `sync` append may wait for its fdatasync before it is answered with a
/// timeout (RocketMQ's `syncFlushTimeout`).
pub const SYNC_FLUSH_TIMEOUT_DEFAULT_MS: u64 = 5_000;

/// How often ConsumeQueue tails are persisted and the recovery checkpoint advances. This
/// bounds the CommitLog bytes recovery must rescan after a crash.
pub const CHECKPOINT_INTERVAL_DEFAULT_MS: u64 = 1_000;

/// Reads of data younger than this (counted back from the written end of the CommitLog)
/// go through the page cache; older reads use O_DIRECT so a lagging consumer does not
/// evict what live consumers read. RocketMQ's `accessMessageInMemoryMaxRatio` is 40% of
/// RAM; we default to a fixed 1 GiB and let the broker set it from the machine.
pub const HOT_WINDOW_DEFAULT_BYTES: u64 = 1 << 30;

/// How often retention looks for segments to delete (RocketMQ's `cleanResourceInterval`).
pub const RETENTION_CHECK_INTERVAL_DEFAULT_MS: u64 = 10_000;

/// RocketMQ's `fileReservedTime` default: 72 hours.
pub const RETENTION_DEFAULT_HOURS: u64 = 72;

/// Bytes appended but not yet handed to the kernel, per CommitLog. Past this an append is
/// refused as busy: the disk is not keeping up, and queueing more would only add latency
/// and memory until a crash loses it all.
pub const PENDING_WRITE_MAX_BYTES: usize = 256 << 20;

/// The writer hands the kernel at most this much per write, so one write's latency stays
/// bounded and the next batch can start filling while it runs. It must hold the largest
/// record plus a BLANK.
pub const WRITE_CHUNK_MAX_BYTES: usize = 8 << 20;

/// Recovery reads the CommitLog tail in pieces of this size.
pub const RECOVERY_READ_BYTES: usize = 8 << 20;

/// Per-queue in-memory ConsumeQueue entries (written to the CommitLog but not yet to the
/// ConsumeQueue file) past which persisting them is started early.
pub const CONSUME_QUEUE_TAIL_ENTRIES_MAX: usize = 64 * 1024;

/// ConsumeQueue entries one `get_messages` examines at most (RocketMQ reads 16,000 bytes
/// of ConsumeQueue per pull: 800 entries), so a pull through a heavily filtered queue
/// still answers promptly.
pub const GET_ENTRIES_MAX: u64 = 800;

/// Contiguous records are read from the CommitLog in one I/O of at most this size.
pub const READ_RUN_MAX_BYTES: usize = 1 << 20;
