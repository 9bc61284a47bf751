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

/// CommitLog writes the writer keeps handed off at once. Writes run on another thread
/// (see `GlommioFile::write_at`), one after another, so a second write queued behind the
/// first keeps that thread copying while the executor encodes the next batch; a few more
/// cover the executor's completion handling. Bounded so that a failed write abandons at
/// most this many chunks.
pub const WRITES_IN_FLIGHT_MAX: usize = 4;

/// When nothing is in flight, a pending chunk at least twice this size is written as two
/// writes (cut at a record boundary near its middle), so the kernel copies the second
/// half while the answers for the first go out and new appends are encoded. Below it a
/// second write's fixed cost (a hand-off to another thread) outweighs the overlap.
pub const WRITE_SPLIT_MIN_BYTES: usize = 64 << 10;

/// The preparer keeps the CommitLog this far past the appended end initialized: blocks
/// written with zeros and fdatasynced, so a `sync` append's fdatasync finds written
/// extents and need not also write out their unwritten-to-written conversion (a journal
/// commit on journaled ext4, the extent blocks on the development machine's journal-less
/// ext4): half the latency there (BENCHMARKS.md). At 500 MB/s of sync appends this is
/// 64 ms of lead.
pub const PREPARE_AHEAD_BYTES: u64 = 32 << 20;

/// The largest preparer step: one O_DIRECT write of zeros and one fdatasync, taken once
/// well ahead of the data. Large enough that the metadata update each step costs is
/// spread over many sync appends.
pub const PREPARE_STEP_BYTES: u64 = 4 << 20;

/// The smallest preparer step, taken close to the data, and the gap it leaves when it
/// finds itself behind: small, so a writer that catches up waits for at most a fraction
/// of a millisecond, and so a fresh segment is prepared from near its start.
pub const PREPARE_STEP_MIN_BYTES: u64 = 256 << 10;

/// The preparer only works while `sync` appends arrive: zeros cost disk bandwidth that
/// `async` appends (flushed every 64 MiB, one metadata update per flush) would rather
/// have. This is how long after the last `sync` append it keeps going.
pub const PREPARE_SYNC_RECENT_MS: i64 = 2_000;

/// Prepared ranges start and end on page boundaries of the segment file: O_DIRECT zeros
/// cover whole blocks only, so an unaligned step boundary would leave a block between
/// two steps unprepared.
pub const PREPARE_ALIGN_BYTES: u64 = 4096;

/// The preparer works only while group commits are smaller than this on average
/// (a moving mean over about the last eight). Its zeros cost as many bytes of disk
/// bandwidth as the data they precede, and what they save is one metadata block per
/// flush: worth it for small groups, whose flushes are latency-bound (sync with 16
/// writers, 18 KiB groups: +21% with it), not for large ones, which are bound by
/// bandwidth (256 writers, 284 KiB groups: 5-15% faster without it). Measured in
/// BENCHMARKS.md, storage engine, sitting F; the break-even lies near where writing
/// the group's bytes costs about what a 4 KiB metadata write does in a flush.
pub const PREPARE_GROUP_MAX_BYTES: u64 = 64 << 10;

/// `sync` appends in a row (no pause past PREPARE_SYNC_RECENT_MS) before the preparer
/// starts: one now and then gains little from it, and its first step's fdatasync would
/// only compete with theirs.
pub const PREPARE_SYNC_STREAK_MIN: u32 = 64;

/// A group commit is one O_DSYNC write only when no append that skips the flush (an
/// `async` topic's, or one sent with WAIT=false) came for this long. Such an append
/// arriving while that write runs is answered only after it, device flush included,
/// since writes complete in order: one wait for a mixed shard when its traffic changes,
/// not one per group commit, because the next group commits are written and then
/// fdatasynced, which answers writes before the flush.
pub const DURABLE_WRITE_QUIET_MS: i64 = 1_000;

/// After a failed preparer step (a disk error), wait this long before the next attempt.
pub const PREPARE_RETRY_MS: u64 = 1_000;

/// Cold (O_DIRECT) sequential reads go through read-ahead windows of this size: fio on
/// the development disk reads 1 MiB blocks at 2.4× the rate of 36 KiB blocks (one pull of
/// 32 records), and each I/O costs a VM exit for the doorbell.
pub const COLD_WINDOW_BYTES: u64 = 1 << 20;

/// Windows read ahead of a sequential cold reader, beyond the one it is reading: enough
/// to keep several reads in flight so the device streams (fio's limit figure keeps 8
/// reads of 1 MiB in flight).
pub const COLD_READ_AHEAD_WINDOWS: u64 = 8;

/// Cold windows cached per store (1 MiB each). A lagging consumer needs its current
/// window plus the read-ahead; this serves a few of them at once without thrashing,
/// and it is memory no other reader loses, unlike the page cache O_DIRECT protects.
pub const COLD_WINDOWS_MAX: usize = 24;

/// A pull is served through cold windows only if its records fill at least this share
/// (1/n) of the CommitLog span they lie in. A consumer of one queue among many reads
/// records spread thinly over the log, and reading whole windows for it would read many
/// times the bytes it needs; such pulls read their records' own ranges instead.
pub const COLD_WINDOW_SPAN_PER_BYTE_MAX: u64 = 8;

/// ConsumeQueue entries read from a file at once and kept for the next pulls (20 KiB,
/// 32 pulls of 32 messages), so a sequential reader does not make a round trip to the
/// ConsumeQueue file before each CommitLog read.
pub const CQ_CACHE_BLOCK_ENTRIES: u64 = 1024;

/// ConsumeQueue blocks cached per store (24 KiB each decoded: 6 MiB).
pub const CQ_CACHE_BLOCKS_MAX: usize = 256;

/// After failing to move ConsumeQueue entries past a lowered visible limit back into
/// memory (a disk error), wait this long before the next attempt: the queue's readers are
/// safe meanwhile (each entry is checked against the limit), only its counts lag.
pub const RELOAD_RETRY_MS: u64 = 100;

/// Attempts one save of a `config/` file makes before it reports failure. A second try
/// rides out a transient error (an EIO the device retried, an interrupted rename); a
/// disk that fails three times in a row is not coming back within a request's lifetime,
/// and the caller (a topic request, a heartbeat) has to be answered.
pub const CONFIG_SAVE_ATTEMPTS: u32 = 3;

/// Pause before the first retry of a failed `config/` save, doubled before each further
/// one: long enough for a momentary condition to clear, short against a client's 3 s
/// request timeout even after every attempt (10 + 20 ms plus the writes themselves).
pub const CONFIG_SAVE_RETRY_DELAY_MS: u64 = 10;

/// A repeating log line (every append failing on a full disk) is shown in full once, then
/// as a count at most this often (`logs::RateLimited`). Ten seconds shrinks a flood of
/// thousands of lines a second to a handful a minute, and still tells an operator tailing
/// the log within moments that the trouble goes on.
pub const LOG_REPEAT_INTERVAL_MS: u64 = 10_000;

// Relations between the limits above that their comments state, checked when the crate
// compiles rather than left to prose.
const _: () = {
    use rockshard_net::stored::{BLANK_SIZE_MIN_BYTES, RECORD_SIZE_MAX_BYTES};
    assert!(WRITE_CHUNK_MAX_BYTES <= PENDING_WRITE_MAX_BYTES, "a write chunk fits the pending-write limit");
    assert!(
        WRITE_CHUNK_MAX_BYTES >= RECORD_SIZE_MAX_BYTES + BLANK_SIZE_MIN_BYTES,
        "a write chunk holds the largest record plus a BLANK"
    );
    assert!(2 * WRITE_SPLIT_MIN_BYTES <= WRITE_CHUNK_MAX_BYTES, "a chunk large enough to split fits a chunk");
    assert!(RECOVERY_READ_BYTES >= RECORD_SIZE_MAX_BYTES, "one recovery read holds the largest record");
    assert!(SEGMENT_SIZE_MIN_BYTES as usize > BLANK_SIZE_MIN_BYTES, "a segment holds more than a BLANK");
    assert!(
        PREPARE_STEP_MIN_BYTES <= PREPARE_STEP_BYTES && PREPARE_STEP_BYTES <= PREPARE_AHEAD_BYTES,
        "preparer steps grow from the smallest to the largest, within the lead"
    );
    assert!(
        PREPARE_STEP_MIN_BYTES.is_multiple_of(PREPARE_ALIGN_BYTES)
            && PREPARE_STEP_BYTES.is_multiple_of(PREPARE_ALIGN_BYTES),
        "preparer steps end on page boundaries (O_DIRECT zeros cover whole blocks)"
    );
    assert!(COLD_WINDOWS_MAX as u64 > COLD_READ_AHEAD_WINDOWS + 1, "the cache holds a reader's window and read-ahead");
    assert!(CONFIG_SAVE_ATTEMPTS >= 1, "a save is attempted at least once");
};
