//! The store of one shard: its CommitLog, its ConsumeQueues and its topic table, and the
//! tasks that write, flush, checkpoint and clean them.
//!
//! Lives on the shard's glommio executor and is not `Send`: every state change happens
//! there, and other shards talk to it through the broker's channels. Clones of a
//! [`Store`] are handles to the same store; the background tasks stop when the last
//! handle is dropped (a crash, as far as the disk can tell) or after [`Store::close`]
//! (a clean shutdown: everything written, flushed and checkpointed).
//!
//! Tasks, each sleeping on a [`Notify`] or a timer, never spinning:
//! - writer: hands pending chunks to the kernel in order, up to [`WRITES_IN_FLIGHT_MAX`]
//!   at once; as each completes in order, publishes their ConsumeQueue entries and
//!   answers `async` appends. A chunk `sync` appends wait on, with everything before it
//!   durable and no `async` traffic about, goes out as one O_DSYNC write that answers
//!   them itself (`Inner::durable_group_commit`).
//! - flusher: fdatasyncs the written range when a `sync` append waits, when too many
//!   bytes are dirty, or every flush interval; answers `sync` appends. Appends that arrive
//!   while an fdatasync runs are covered by the next one (group commit), and their writes
//!   run while it does.
//! - preparer: while `sync` appends arrive in small group commits, writes zeros ahead of
//!   the appended end and creates the next segment before it is needed (see
//!   `commitlog.rs`).
//! - sweeper: answers `sync` appends that waited past the flush timeout with an error.
//! - maintenance: persists ConsumeQueue tails, writes the checkpoint, applies retention,
//!   saves the topic table again when its last save failed, and reports how often a
//!   repeated failure recurred once it stops (`RepeatedLogs`).
//!
//! Reads: hot data through the page cache; cold data (older than the hot window) with
//! O_DIRECT, through read-ahead windows when a pull is sequential enough, and
//! ConsumeQueue entries through a small block cache (`read_cache.rs`).
//!
//! Invariant: no `RefCell` borrow is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use glommio::Task;
use rockshard_net::stored::{self, RecordFields, HEADER_SIZE_MAX_BYTES};

use crate::checkpoint::Checkpoint;
use crate::commitlog::{segment_name, CommitLog, Dispatch, Waiter};
use crate::config::StoreConfig;
use crate::config_file::ConfigFiles;
use crate::consume_queue::{self, new_queue, ConsumeQueue, CqEntry, EntrySource, QueueInfo, ENTRY_BYTES};
use crate::disk::{read_exact, Disk, DiskFile, GlommioDisk, OpenMode};
use crate::error::{Result, StorageError};
use crate::layout::{commitlog_dir, config_dir};
use crate::limits::*;
use crate::logs::RateLimited;
use crate::offset::{PhysicalOffset, QueueOffset};
use crate::read_cache::{ColdCache, CqBlock, CqCache, Window};
use crate::record::{dispatchable, tag_code, valid_properties, valid_queue_id, valid_topic};
use crate::recovery::{self, RecoveryReport};
use crate::sync::{completion, Completion, Notify};
use crate::topics::{load_topics, FlushMode, TopicConfig, TopicTable, TOPICS_FILE};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Where one appended record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedRecord {
    pub physical_offset: PhysicalOffset,
    /// Queue offset of the record; 0 for records not indexed (transaction halves).
    pub queue_offset: QueueOffset,
    pub size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    pub records: Vec<AppendedRecord>,
    pub store_timestamp_ms: i64,
}

/// An append in progress. Its offsets are known at once ([`AppendWait::result`]);
/// awaiting it gives the answer: written (`async`) or flushed (`sync`), or why not.
pub struct AppendWait {
    result: Option<AppendResult>,
    done: Completion<Result<()>>,
}

impl AppendWait {
    pub fn result(&self) -> &AppendResult {
        self.result.as_ref().expect("AppendWait polled after completion")
    }
}

impl Future for AppendWait {
    type Output = Result<AppendResult>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.done).poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(self.result.take().expect("completed once"))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// How a read against a ConsumeQueue went (RocketMQ's `GetMessageStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetStatus {
    Found,
    /// Entries were examined but none matched the filter.
    NoMatchedMessage,
    /// The entries point at CommitLog data retention already deleted.
    MessageWasRemoving,
    /// The queue does not exist.
    NoMatchedLogicQueue,
    /// The queue exists but holds nothing.
    NoMessageInQueue,
    /// Below the queue's min offset: the data moved away (retention).
    OffsetTooSmall,
    /// Exactly at the end: nothing new yet (a pull may wait).
    OffsetOverflowOne,
    /// Past the end.
    OffsetOverflowBadly,
}

#[derive(Debug, Clone)]
pub struct GetResult {
    pub status: GetStatus,
    /// Where the next read should start.
    pub next_begin_offset: QueueOffset,
    pub min_offset: QueueOffset,
    pub max_offset: QueueOffset,
    /// Whole stored records, in queue order: a pull-response body is their concatenation.
    pub messages: Vec<Bytes>,
}

/// Which side of a timestamp an offset search lands on (RocketMQ's `BoundaryType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    /// The first message stored at or after the time.
    Lower,
    /// The last message stored at or before the time.
    Upper,
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub appended_records: u64,
    pub writes: u64,
    pub flushes: u64,
    pub hot_reads: u64,
    pub cold_reads: u64,
    pub checkpoints: u64,
    pub segments_deleted: u64,
}

type ArrivalListener = Box<dyn Fn(&str, i32, QueueOffset)>;

/// Where an append's store timestamps come from.
#[derive(Clone, Copy)]
enum Stamp {
    /// The clock, once per batch.
    Now,
    /// Each record's own field (replication).
    Keep,
}

/// A published ConsumeQueue entry whose record lies past the visible limit.
#[derive(Debug, Clone, Copy)]
struct Unseen {
    end: PhysicalOffset,
    slot: usize,
    offset: QueueOffset,
}

/// How many recent truncates readers can tell apart; a read that overlapped more than
/// this many assumes the worst and reads again.
const TRUNCATE_HISTORY: usize = 64;

/// How often a read that raced a truncate is retried before it answers "nothing yet".
const READ_RETRIES_AFTER_TRUNCATE: usize = 3;

/// A queue of the store, shared by the store's tasks and readers.
type QueueRef<F> = Rc<RefCell<ConsumeQueue<F>>>;

struct Queues<F> {
    /// Topic, then queue id, to the slot in `list`: two lookups that need no owned key,
    /// so finding a record's queue allocates nothing.
    index: HashMap<String, HashMap<i32, usize>>,
    /// Only grows: a queue's slot never changes.
    list: Vec<Rc<RefCell<ConsumeQueue<F>>>>,
}

impl<F> Queues<F> {
    fn new(list: Vec<ConsumeQueue<F>>) -> Self {
        let mut q = Queues { index: HashMap::new(), list: Vec::with_capacity(list.len()) };
        for queue in list {
            q.push(queue);
        }
        q
    }

    fn find(&self, topic: &str, queue_id: i32) -> Option<usize> {
        self.index.get(topic).and_then(|ids| ids.get(&queue_id)).copied()
    }

    fn push(&mut self, queue: ConsumeQueue<F>) -> usize {
        let i = self.list.len();
        self.index.entry(queue.topic.clone()).or_default().insert(queue.queue_id, i);
        self.list.push(Rc::new(RefCell::new(queue)));
        i
    }
}

struct Inner<D: Disk> {
    config: StoreConfig,
    disk: D,
    log: RefCell<CommitLog<D::File>>,
    queues: RefCell<Queues<D::File>>,
    topics: RefCell<TopicTable>,
    /// Orders the saves of `config/` files: one at a time per file, newest snapshot wins.
    config_files: ConfigFiles,
    checkpoint: Cell<Checkpoint>,
    checkpoint_file: D::File,
    writer_wake: Notify,
    flusher_wake: Notify,
    maintenance_wake: Notify,
    preparer_wake: Notify,
    /// One segment creation at a time: the writer and the preparer may both want the
    /// next one.
    segment_lock: glommio::sync::Semaphore,
    /// Store time of the latest `sync` append that waits for its flush, and how many
    /// came without a pause longer than PREPARE_SYNC_RECENT_MS: the preparer works only
    /// during a steady stream of them.
    last_sync_append_ms: Cell<i64>,
    /// Moving mean of the bytes each group commit made durable (PREPARE_GROUP_MAX_BYTES).
    group_bytes_mean: Cell<u64>,
    /// When an append that does not wait for a flush last came (DURABLE_WRITE_QUIET_MS).
    last_unflushed_append_ms: Cell<i64>,
    sync_streak: Cell<u32>,
    cold: RefCell<ColdCache>,
    cq_cache: RefCell<CqCache>,
    /// One checkpoint at a time: two would persist the same ConsumeQueue tail twice.
    /// Retention, a truncate and moving entries back from files take it too: each
    /// changes what the ConsumeQueue files hold.
    checkpoint_lock: glommio::sync::Semaphore,
    /// One fdatasync pass at a time, and none while a truncate cuts the log.
    flush_lock: glommio::sync::Semaphore,
    closing: Cell<bool>,
    stats: Cell<StoreStats>,
    arrival: RefCell<Option<ArrivalListener>>,
    recovery: RecoveryReport,
    /// Replication: readers see only records ending at or before this; `None`: every
    /// written record.
    visible_limit: Cell<Option<PhysicalOffset>>,
    /// Published entries not yet visible, in CommitLog order (always empty without a
    /// limit).
    unseen: RefCell<VecDeque<Unseen>>,
    /// The lowest visible end since the running checkpoint began (`u64::MAX`: none
    /// lowered it): a checkpoint never claims entries a lowering kept out of the files.
    visible_low: Cell<u64>,
    /// A truncate runs: appends are refused, the writer and the preparer stay idle.
    truncating: Cell<bool>,
    /// Truncates so far, and (count after it, cut) of the last [`TRUNCATE_HISTORY`].
    truncations: Cell<u64>,
    cuts: RefCell<VecDeque<(u64, PhysicalOffset)>>,
    /// Writes in flight plus the writer's own awaits (creating a segment, zeroing).
    writer_busy: Cell<usize>,
    /// The writer went idle (nothing pending, nothing in flight).
    writer_idle: Notify,
    /// The preparer finished a step.
    prepared_wake: Notify,
    repeated: RepeatedLogs,
}

const WRITE_FAILED: &str = "CommitLog write failed; abandoning unwritten appends";
const FLUSH_FAILED: &str = "CommitLog flush failed; the store is fenced";
const SEGMENT_AHEAD_FAILED: &str = "could not create the next segment ahead; the writer will";
const BLOCKS_AHEAD_FAILED: &str = "could not prepare CommitLog blocks ahead";
const RELOAD_FAILED: &str = "could not move ConsumeQueue entries past the visible limit back to memory";
const CHECKPOINT_FAILED: &str = "checkpoint failed; will retry";
const RETENTION_FAILED: &str = "retention failed; will retry";

/// The lines the store's retry loops log while their cause lasts — a full disk fails
/// every append, a fenced store every flush — each logged in full the first time and
/// then as a count at most once per `log_repeat_interval_ms` (`logs.rs`), so a disk-full
/// episode is a handful of lines rather than one per rejected send.
struct RepeatedLogs {
    write_failed: RateLimited,
    flush_failed: RateLimited,
    segment_ahead_failed: RateLimited,
    blocks_ahead_failed: RateLimited,
    reload_failed: RateLimited,
    checkpoint_failed: RateLimited,
    retention_failed: RateLimited,
}

impl RepeatedLogs {
    fn new(interval_ms: u64) -> Self {
        let limited = || RateLimited::new(Duration::from_millis(interval_ms));
        RepeatedLogs {
            write_failed: limited(),
            flush_failed: limited(),
            segment_ahead_failed: limited(),
            blocks_ahead_failed: limited(),
            reload_failed: limited(),
            checkpoint_failed: limited(),
            retention_failed: limited(),
        }
    }

    /// Logs the count of every burst that has stopped (nothing since its last line for an
    /// interval), which no later occurrence would carry. The maintenance task calls this.
    fn report_quiet(&self, now: Instant) {
        let all = [
            (&self.write_failed, WRITE_FAILED, true),
            (&self.flush_failed, FLUSH_FAILED, true),
            (&self.segment_ahead_failed, SEGMENT_AHEAD_FAILED, false),
            (&self.blocks_ahead_failed, BLOCKS_AHEAD_FAILED, false),
            (&self.reload_failed, RELOAD_FAILED, true),
            (&self.checkpoint_failed, CHECKPOINT_FAILED, true),
            (&self.retention_failed, RETENTION_FAILED, true),
        ];
        for (limited, message, is_error) in all {
            if let Some(held) = limited.take_quiet(now) {
                if is_error {
                    tracing::error!("{message}{held}");
                } else {
                    tracing::warn!("{message}{held}");
                }
            }
        }
    }
}

#[derive(Default)]
struct Tasks {
    writer: RefCell<Option<Task<()>>>,
    others: RefCell<Vec<Task<()>>>,
}

/// A shard's store. Cheap to clone; all clones are the same store.
pub struct Store<D: Disk = GlommioDisk> {
    inner: Rc<Inner<D>>,
    tasks: Rc<Tasks>,
}

impl<D: Disk> Clone for Store<D> {
    fn clone(&self) -> Self {
        Store { inner: self.inner.clone(), tasks: self.tasks.clone() }
    }
}

impl Store<GlommioDisk> {
    /// Opens (recovering if needed) the store in `config.dir` on the real disk.
    pub async fn open(config: StoreConfig) -> Result<Self> {
        Self::open_on(GlommioDisk, config).await
    }
}

impl<D: Disk> Store<D> {
    /// Opens the store on `disk`, recovering whatever a crash left, and starts its tasks.
    /// Must run on a glommio executor.
    pub async fn open_on(disk: D, config: StoreConfig) -> Result<Self> {
        config.validate()?;
        let rec = recovery::recover(&disk, &config).await?;
        tracing::info!(dir = %config.dir.display(), report = ?rec.report, "store opened");
        let topics = load_topics(&disk, &config.dir).await?;
        let queues = Queues::new(rec.queues);
        let log = CommitLog::new(commitlog_dir(&config.dir), config.segment_size_bytes, rec.segments, rec.min, rec.end);
        let inner = Rc::new(Inner {
            disk,
            log: RefCell::new(log),
            queues: RefCell::new(queues),
            topics: RefCell::new(topics),
            config_files: ConfigFiles::default(),
            checkpoint: Cell::new(rec.checkpoint),
            checkpoint_file: rec.checkpoint_file,
            writer_wake: Notify::default(),
            flusher_wake: Notify::default(),
            maintenance_wake: Notify::default(),
            preparer_wake: Notify::default(),
            segment_lock: glommio::sync::Semaphore::new(1),
            last_sync_append_ms: Cell::new(i64::MIN),
            last_unflushed_append_ms: Cell::new(i64::MIN),
            group_bytes_mean: Cell::new(0),
            sync_streak: Cell::new(0),
            cold: RefCell::new(ColdCache::default()),
            cq_cache: RefCell::new(CqCache::default()),
            checkpoint_lock: glommio::sync::Semaphore::new(1),
            flush_lock: glommio::sync::Semaphore::new(1),
            closing: Cell::new(false),
            stats: Cell::new(StoreStats::default()),
            arrival: RefCell::new(None),
            recovery: rec.report,
            visible_limit: Cell::new(None),
            unseen: RefCell::new(VecDeque::new()),
            visible_low: Cell::new(u64::MAX),
            truncating: Cell::new(false),
            truncations: Cell::new(0),
            cuts: RefCell::new(VecDeque::new()),
            writer_busy: Cell::new(0),
            writer_idle: Notify::default(),
            prepared_wake: Notify::default(),
            repeated: RepeatedLogs::new(config.log_repeat_interval_ms),
            config,
        });
        // Persist the replayed ConsumeQueue entries and move the checkpoint to the
        // recovered end now, so a crash right after start does not rescan the same tail.
        inner.checkpoint().await?;
        let tasks = Rc::new(Tasks::default());
        *tasks.writer.borrow_mut() = Some(glommio::spawn_local(writer_loop(inner.clone())));
        tasks.others.borrow_mut().extend([
            glommio::spawn_local(flusher_loop(inner.clone())),
            glommio::spawn_local(sweeper_loop(inner.clone())),
            glommio::spawn_local(maintenance_loop(inner.clone())),
            glommio::spawn_local(preparer_loop(inner.clone())),
        ]);
        Ok(Store { inner, tasks })
    }

    pub fn config(&self) -> &StoreConfig {
        &self.inner.config
    }

    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    pub fn stats(&self) -> StoreStats {
        self.inner.stats.get()
    }

    /// Calls `listener(topic, queue_id, new max offset)` whenever new entries of a queue
    /// become readable, so long-polling pulls can be answered at once.
    pub fn set_arrival_listener(&self, listener: impl Fn(&str, i32, QueueOffset) + 'static) {
        *self.inner.arrival.borrow_mut() = Some(Box::new(listener));
    }

    // ---- topics -------------------------------------------------------------------

    pub fn topic(&self, name: &str) -> Option<TopicConfig> {
        self.inner.topics.borrow().get(name).cloned()
    }

    pub fn topics(&self) -> Vec<TopicConfig> {
        self.inner.topics.borrow().iter().cloned().collect()
    }

    /// Creates or replaces a topic's configuration (its flush mode applies to the next
    /// append) and persists the table.
    pub async fn upsert_topic(&self, config: TopicConfig) -> Result<()> {
        if config.name.is_empty() {
            return Err(StorageError::InvalidArgument("topic name is empty".into()));
        }
        self.inner.topics.borrow_mut().upsert(config);
        self.save_topics().await
    }

    /// Removes a topic's configuration. Its stored records stay until retention; its
    /// ConsumeQueues stay readable by offset.
    pub async fn remove_topic(&self, name: &str) -> Result<Option<TopicConfig>> {
        let removed = self.inner.topics.borrow_mut().remove(name);
        self.save_topics().await?;
        Ok(removed)
    }

    async fn save_topics(&self) -> Result<()> {
        self.inner.save_topics().await
    }

    /// Whether the topic table in memory has changes `config/topics.json` does not hold
    /// yet: a save is under way, or the last one failed (the maintenance task and the
    /// next topic change try again; [`Store::persist_topics`] does now).
    pub fn topics_unsaved(&self) -> bool {
        self.inner.config_files.unsaved(TOPICS_FILE)
    }

    /// Saves the topic table if it has unsaved changes (see [`Store::topics_unsaved`]).
    pub async fn persist_topics(&self) -> Result<()> {
        if self.topics_unsaved() {
            self.save_topics().await?;
        }
        Ok(())
    }

    /// Replaces `config/<name>` atomically (old or new contents survive any crash):
    /// for the broker's own small state files (consumer offsets, delay progress). Saves
    /// of one file are serialised and the newest call's bytes win (`config_file.rs`); a
    /// failed attempt is retried before the error is returned.
    pub async fn save_config_file(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let dir = config_dir(&self.inner.config.dir);
        self.inner.config_files.save(&self.inner.disk, &dir, name, bytes).await
    }

    /// Reads `config/<name>`, or `None` when it was never saved.
    pub async fn load_config_file(&self, name: &str) -> Result<Option<Bytes>> {
        let path = config_dir(&self.inner.config.dir).join(name);
        if !self.inner.disk.exists(&path).await {
            return Ok(None);
        }
        let disk = &self.inner.disk;
        let file = disk.open(&path, OpenMode::Existing).await.map_err(|e| StorageError::io("open", &path, 0, e))?;
        let len = file.size().await.map_err(|e| StorageError::io("stat", &path, 0, e))?;
        let bytes =
            read_exact(&file, 0, len as usize, false).await.map_err(|e| StorageError::io("read", &path, 0, e))?;
        Ok(Some(bytes))
    }

    pub fn flush_mode(&self, topic: &str) -> FlushMode {
        self.inner.topics.borrow().get(topic).map_or(self.inner.config.default_flush, |t| t.flush)
    }

    // ---- appending ----------------------------------------------------------------

    /// Appends records. Offsets are assigned and the bytes encoded before this returns;
    /// the returned [`AppendWait`] resolves when the records are written (`async`
    /// topics, or `wait_store` false) or flushed (`sync` topics). The store timestamp of
    /// every record is set here; the other fields are stored as given.
    pub fn append(&self, records: &[RecordFields<'_>], wait_store: bool) -> Result<AppendWait> {
        self.append_stamped(records, wait_store, Stamp::Now)
    }

    /// [`Self::append`] that keeps every record's `store_timestamp_ms` (replication: every
    /// node stores an entry's records with the leader's stamp, so their CommitLogs are
    /// byte-identical). Queue and physical offsets are assigned here, as by `append`. The
    /// result's `store_timestamp_ms` is the first record's.
    pub fn append_replicated(&self, records: &[RecordFields<'_>], wait_store: bool) -> Result<AppendWait> {
        self.append_stamped(records, wait_store, Stamp::Keep)
    }

    fn append_stamped(&self, records: &[RecordFields<'_>], wait_store: bool, stamp: Stamp) -> Result<AppendWait> {
        let inner = &self.inner;
        if inner.closing.get() {
            return Err(StorageError::Closed);
        }
        let mut log = inner.log.borrow_mut();
        if let Some(e) = &log.fenced {
            return Err(e.clone());
        }
        if inner.truncating.get() {
            return Err(StorageError::Truncated { offset: log.pos.appended().0 });
        }
        // Check everything before changing anything: a rejected batch leaves no trace.
        let now = now_ms();
        let stamp_of = |r: &RecordFields<'_>| match stamp {
            Stamp::Now => now,
            Stamp::Keep => r.store_timestamp_ms,
        };
        let store_timestamp_ms = records.first().map_or(now, stamp_of);
        // Two passes over the records rather than a list of checked ones: a batch is
        // usually one record, and the list was one of its three allocations. The second
        // pass recomputes each length and topic (arithmetic and a short UTF-8 check).
        let mut total = 0usize;
        let mut sync = false;
        let mut last_topic: Option<&[u8]> = None;
        for r in records {
            if !valid_topic(r.topic) || !valid_queue_id(r.queue_id) {
                return Err(StorageError::InvalidArgument(format!(
                    "topic {:?} queue {}: a record needs a topic of [%|a-zA-Z0-9_-] and a queue id >= 0",
                    String::from_utf8_lossy(r.topic),
                    r.queue_id
                )));
            }
            if !valid_properties(r.properties) {
                return Err(StorageError::InvalidArgument("message properties contain a NUL byte".into()));
            }
            let topic = std::str::from_utf8(r.topic).expect("valid topics are ASCII");
            let len = stored::encoded_len(r)?;
            if !log.fits(len) {
                return Err(StorageError::MessageTooLarge { size: len, segment_size: log.segment_size });
            }
            // A batch is usually one topic: look its flush mode up once.
            if !sync && last_topic != Some(r.topic) {
                sync = self.flush_mode(topic) == FlushMode::Sync;
            }
            last_topic = Some(r.topic);
            total += len;
        }
        if log.pending_bytes + total > PENDING_WRITE_MAX_BYTES {
            return Err(StorageError::Busy { pending_bytes: log.pending_bytes, limit_bytes: PENDING_WRITE_MAX_BYTES });
        }

        let mut appended = Vec::with_capacity(records.len());
        for r in records {
            let topic = std::str::from_utf8(r.topic).expect("checked above");
            let len = stored::encoded_len(r).expect("checked above");
            let index = if dispatchable(r.sys_flag) { Some(self.queue_index(topic, r.queue_id)) } else { None };
            let queue_offset = match index {
                Some(i) => self.inner.queues.borrow().list[i].borrow_mut().assign(),
                None => QueueOffset(0),
            };
            let (at, chunk) = log.reserve(len);
            let store_timestamp_ms = stamp_of(r);
            let fields = RecordFields { store_timestamp_ms, ..*r };
            stored::encode(&fields, queue_offset.0 as i64, at.0 as i64, &mut chunk.data)
                .expect("encoded_len accepted these fields");
            if let Some(queue) = index {
                let entry = CqEntry {
                    physical_offset: at,
                    size: len as u32,
                    tags_code: tag_code(inner.config.tag_code_rule, r.topic, r.properties, store_timestamp_ms),
                };
                chunk.dispatch.push(Dispatch { queue, offset: queue_offset, entry });
            }
            appended.push(AppendedRecord { physical_offset: at, queue_offset, size: len as u32 });
        }
        let (done, wait) = completion();
        let end = log.pos.appended();
        let mut wake_preparer = false;
        if sync && wait_store {
            // No deadline yet: the sweeper gives one at its next tick (see sweeper_loop),
            // which saves a clock read per append.
            log.flush_waiters.push_back(Waiter { end, deadline: None, done });
            wake_preparer = log.preparing.is_none() && log.prepared_to.0 < end.0 + PREPARE_AHEAD_BYTES / 2;
            // The clock, not the records' stamps: replicated ones may be old.
            if now.saturating_sub(inner.last_sync_append_ms.get()) > PREPARE_SYNC_RECENT_MS {
                inner.sync_streak.set(0);
            }
            inner.sync_streak.set(inner.sync_streak.get().saturating_add(1));
            inner.last_sync_append_ms.set(now);
        } else {
            log.write_waiters.push_back(Waiter { end, deadline: None, done });
            inner.last_unflushed_append_ms.set(now);
        }
        drop(log);
        let mut stats = inner.stats.get();
        stats.appended_records += records.len() as u64;
        inner.stats.set(stats);
        inner.writer_wake.notify();
        if wake_preparer {
            inner.preparer_wake.notify();
        }
        Ok(AppendWait { result: Some(AppendResult { records: appended, store_timestamp_ms }), done: wait })
    }

    fn queue_index(&self, topic: &str, queue_id: i32) -> usize {
        if let Some(i) = self.inner.queues.borrow().find(topic, queue_id) {
            return i;
        }
        let q = new_queue(&self.inner.config, topic, queue_id);
        self.inner.queues.borrow_mut().push(q)
    }

    /// A queue and its slot in the queue list.
    fn queue_slot(&self, topic: &str, queue_id: i32) -> Option<(usize, QueueRef<D::File>)> {
        let queues = self.inner.queues.borrow();
        queues.find(topic, queue_id).map(|i| (i, queues.list[i].clone()))
    }

    fn queue(&self, topic: &str, queue_id: i32) -> Option<Rc<RefCell<ConsumeQueue<D::File>>>> {
        self.queue_slot(topic, queue_id).map(|(_, q)| q)
    }

    // ---- reading ------------------------------------------------------------------

    /// CommitLog positions: (min, flushed, written, appended).
    pub fn commitlog_positions(&self) -> (PhysicalOffset, PhysicalOffset, PhysicalOffset, PhysicalOffset) {
        let log = self.inner.log.borrow();
        (log.min, log.pos.flushed(), log.pos.written(), log.pos.appended())
    }

    /// Reads `len` CommitLog bytes at `at`: through the page cache inside the hot window,
    /// with O_DIRECT below it.
    ///
    /// Raw access up to the *written* end, past any visible limit: replication reads
    /// entries back with it, committed or not. A truncate that cuts into the range while
    /// the read runs makes it fail with [`StorageError::Truncated`].
    pub async fn read_log(&self, at: PhysicalOffset, len: usize) -> Result<Bytes> {
        let since = self.inner.truncations.get();
        let bytes = self.read_log_once(at, len).await?;
        match self.inner.cut_since(since) {
            Some(cut) if at.0 + len as u64 > cut.0 => Err(StorageError::Truncated { offset: cut.0 }),
            _ => Ok(bytes),
        }
    }

    async fn read_log_once(&self, at: PhysicalOffset, len: usize) -> Result<Bytes> {
        let (file, pos, direct) = {
            let log = self.inner.log.borrow();
            let written = log.pos.written();
            if at < log.min || at.0 + len as u64 > written.0 {
                return Err(StorageError::InvalidArgument(format!(
                    "CommitLog range [{at}, {}) is outside the stored [{}, {written})",
                    at.0 + len as u64,
                    log.min
                )));
            }
            let base = log.segment_base(at);
            if at.0 + len as u64 > base + log.segment_size {
                return Err(StorageError::InvalidArgument(format!(
                    "CommitLog range [{at}, {}) crosses the end of its segment; records never do",
                    at.0 + len as u64
                )));
            }
            let Some(file) = log.segments.get(&base).cloned() else {
                return Err(StorageError::InvalidArgument(format!("no segment holds offset {at}")));
            };
            let direct = at.0 < written.0.saturating_sub(self.inner.config.hot_window_bytes);
            (file, at.0 - base, direct)
        };
        let mut stats = self.inner.stats.get();
        if direct {
            stats.cold_reads += 1;
        } else {
            stats.hot_reads += 1;
        }
        self.inner.stats.set(stats);
        read_exact(&*file, pos, len, direct).await.map_err(|e| StorageError::io("read", file.path(), at.0, e))
    }

    /// Reads the whole record at `at` (a message id names one of these). Records past
    /// the visible end are not found.
    pub async fn read_message(&self, at: PhysicalOffset) -> Result<Bytes> {
        let visible = self.inner.visible_end();
        let not_found = || StorageError::InvalidArgument(format!("no record at offset {at}"));
        if at >= visible {
            return Err(not_found());
        }
        let peek = (HEADER_SIZE_MAX_BYTES as u64).min(visible.0 - at.0) as usize;
        let head = self.read_log(at, peek).await?;
        let header = stored::decode_header(&head)?.ok_or_else(not_found)?;
        if header.physical_offset != at.0 as i64 {
            return Err(StorageError::InvalidArgument(format!("no record starts at offset {at}")));
        }
        if at.0 + u64::from(header.total_size) > self.inner.visible_end().0 {
            return Err(not_found());
        }
        self.read_log(at, header.total_size as usize).await
    }

    async fn entries(
        &self,
        q: &Rc<RefCell<ConsumeQueue<D::File>>>,
        from: QueueOffset,
        max: u64,
    ) -> Result<Vec<CqEntry>> {
        let source = q.borrow().locate(from, max);
        match source {
            EntrySource::Empty => Ok(Vec::new()),
            EntrySource::Memory(entries) => Ok(entries),
            EntrySource::File { file, pos, count } => {
                let bytes = file
                    .read_at(pos, count as usize * ENTRY_BYTES)
                    .await
                    .map_err(|e| StorageError::io("read", file.path(), pos, e))?;
                Ok(CqEntry::decode_all(&bytes))
            }
        }
    }

    /// Reads up to `max_messages` records (and about `max_bytes`, but always at least
    /// one) of a queue from `offset`, skipping entries `filter` rejects by tag hash. Only
    /// visible records: at the visible end this answers "nothing new yet"
    /// ([`GetStatus::OffsetOverflowOne`]). A read that a truncate overlapped is read
    /// again, so it never returns a cut record.
    pub async fn get_messages(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
        max_messages: u32,
        max_bytes: usize,
        filter: Option<&dyn Fn(i64) -> bool>,
    ) -> Result<GetResult> {
        let mut since = self.inner.truncations.get();
        for _ in 0..READ_RETRIES_AFTER_TRUNCATE {
            let got = self.get_messages_once(topic, queue_id, offset, max_messages, max_bytes, filter).await;
            // Whatever a read that a truncate overlapped found (records, or an error
            // about a range that moved), it may be stale: read again.
            if self.inner.cut_since(since).is_none() {
                return got;
            }
            since = self.inner.truncations.get();
        }
        Err(StorageError::Truncated { offset: self.inner.log.borrow().pos.written().0 })
    }

    async fn get_messages_once(
        &self,
        topic: &str,
        queue_id: i32,
        offset: QueueOffset,
        max_messages: u32,
        max_bytes: usize,
        filter: Option<&dyn Fn(i64) -> bool>,
    ) -> Result<GetResult> {
        let Some((slot, q)) = self.queue_slot(topic, queue_id) else {
            return Ok(GetResult {
                status: GetStatus::NoMatchedLogicQueue,
                next_begin_offset: QueueOffset(0),
                min_offset: QueueOffset(0),
                max_offset: QueueOffset(0),
                messages: Vec::new(),
            });
        };
        let (min, max) = {
            let q = q.borrow();
            (q.min, q.visible)
        };
        let answer = |status, next| GetResult {
            status,
            next_begin_offset: next,
            min_offset: min,
            max_offset: max,
            messages: Vec::new(),
        };
        if max.0 == 0 {
            return Ok(answer(GetStatus::NoMessageInQueue, QueueOffset(0)));
        }
        if offset < min {
            return Ok(answer(GetStatus::OffsetTooSmall, min));
        }
        if offset == max {
            return Ok(answer(GetStatus::OffsetOverflowOne, offset));
        }
        if offset > max {
            return Ok(answer(GetStatus::OffsetOverflowBadly, max));
        }

        // Pick the entries: examine at most GET_ENTRIES_MAX, keep what passes the filter
        // until enough messages or bytes.
        let log_min = self.inner.log.borrow().min;
        // Counts may briefly include entries past the visible end (a lowered limit, a
        // truncate under way): each entry is checked, one comparison.
        let vis_end = self.inner.visible_end();
        let mut invisible = false;
        let mut wanted: Vec<CqEntry> = Vec::new();
        let mut next = offset;
        let mut bytes = 0usize;
        let mut removed = 0usize;
        let limit = QueueOffset(offset.0 + GET_ENTRIES_MAX);
        'scan: while next < max && next < limit {
            let (block, range) = self.scan_entries(slot, &q, next, (limit.0 - next.0).min(max.0 - next.0)).await?;
            if range.is_empty() {
                break;
            }
            for &e in &block[range] {
                if wanted.len() >= max_messages as usize || (!wanted.is_empty() && bytes + e.size as usize > max_bytes)
                {
                    break 'scan;
                }
                if e.end() > vis_end {
                    invisible = true;
                    break 'scan;
                }
                next = next.next();
                if e.physical_offset < log_min {
                    removed += 1;
                    continue;
                }
                if filter.is_some_and(|f| !f(e.tags_code)) {
                    continue;
                }
                bytes += e.size as usize;
                wanted.push(e);
            }
        }

        let messages = if self.use_cold_windows(&wanted) {
            self.read_cold_windowed(&wanted).await?
        } else {
            self.read_runs(&wanted).await?
        };
        if messages.is_empty() && removed == 0 && invisible && next == offset {
            return Ok(GetResult {
                status: GetStatus::OffsetOverflowOne,
                next_begin_offset: offset,
                min_offset: min,
                max_offset: offset,
                messages,
            });
        }
        let status = if !messages.is_empty() {
            GetStatus::Found
        } else if removed > 0 {
            GetStatus::MessageWasRemoving
        } else {
            GetStatus::NoMatchedMessage
        };
        Ok(GetResult { status, next_begin_offset: next, min_offset: min, max_offset: max, messages })
    }

    /// Up to `max` entries of queue `slot` from `from`, as a block and the range of it
    /// that holds them. Entries in files come through the ConsumeQueue block cache.
    async fn scan_entries(
        &self,
        slot: usize,
        q: &Rc<RefCell<ConsumeQueue<D::File>>>,
        from: QueueOffset,
        max: u64,
    ) -> Result<(Rc<[CqEntry]>, std::ops::Range<usize>)> {
        let source = q.borrow().locate(from, max);
        let file = match source {
            EntrySource::Empty => return Ok((Rc::from(Vec::new()), 0..0)),
            EntrySource::Memory(entries) => {
                let n = entries.len();
                return Ok((Rc::from(entries), 0..n));
            }
            EntrySource::File { file, .. } => file,
        };
        // The aligned block of the file holding `from`, cut at the file's persisted end.
        let (block_first, block_end, file_first) = {
            let q = q.borrow();
            let file_first = q.file_start_of(from.0);
            let block_first = file_first + (from.0 - file_first) / CQ_CACHE_BLOCK_ENTRIES * CQ_CACHE_BLOCK_ENTRIES;
            let block_end =
                (block_first + CQ_CACHE_BLOCK_ENTRIES).min(file_first + q.entries_per_file).min(q.file_end.0);
            (block_first, block_end, file_first)
        };
        let cached = self.inner.cq_cache.borrow_mut().get(slot, block_first, from.0);
        let block = match cached {
            Some(b) => b,
            None => {
                let since = self.inner.truncations.get();
                let pos = (block_first - file_first) * ENTRY_BYTES as u64;
                let bytes = file
                    .read_at(pos, (block_end - block_first) as usize * ENTRY_BYTES)
                    .await
                    .map_err(|e| StorageError::io("read", file.path(), pos, e))?;
                let block = CqBlock { first: block_first, entries: Rc::from(CqEntry::decode_all(&bytes)) };
                // A block read across a truncate may hold entries it cut: never cache it
                // (the caller reads again).
                if self.inner.truncations.get() == since {
                    self.inner.cq_cache.borrow_mut().insert(slot, block.clone());
                }
                block
            }
        };
        let start = ((from.0 - block.first) as usize).min(block.entries.len());
        let end = (start as u64 + max).min(block.entries.len() as u64) as usize;
        Ok((block.entries, start..end))
    }

    /// Whether a pull's records are read through cold windows: they start below the hot
    /// window, and fill enough of the CommitLog span they lie in.
    fn use_cold_windows(&self, wanted: &[CqEntry]) -> bool {
        let (Some(first), Some(last)) = (wanted.first(), wanted.last()) else { return false };
        let written = self.inner.log.borrow().pos.written();
        if first.physical_offset.0 >= written.0.saturating_sub(self.inner.config.hot_window_bytes) {
            return false;
        }
        let span = (last.physical_offset.0 + u64::from(last.size)).saturating_sub(first.physical_offset.0);
        let bytes: u64 = wanted.iter().map(|e| u64::from(e.size)).sum();
        span <= bytes * COLD_WINDOW_SPAN_PER_BYTE_MAX
    }

    /// Reads the records of `wanted` (in CommitLog order) through cold windows: each is a
    /// slice of a window unless it straddles two, and the windows after the last one
    /// used are read ahead.
    async fn read_cold_windowed(&self, wanted: &[CqEntry]) -> Result<Vec<Bytes>> {
        let mut messages = Vec::with_capacity(wanted.len());
        let mut current: Option<(Rc<Window>, Bytes)> = None;
        for e in wanted {
            let (from, to) = (e.physical_offset.0, e.physical_offset.0 + u64::from(e.size));
            if let Some((w, bytes)) = &current {
                if w.covers(from, to) {
                    messages.push(bytes.slice((from - w.start) as usize..(to - w.start) as usize));
                    continue;
                }
            }
            let (w, bytes) = self.cold_window(from).await?;
            if w.covers(from, to) {
                messages.push(bytes.slice((from - w.start) as usize..(to - w.start) as usize));
                current = Some((w, bytes));
                continue;
            }
            // The record runs on into the next window(s): copy it together.
            let mut record = Vec::with_capacity(e.size as usize);
            let (mut w, mut bytes) = (w, bytes);
            let mut at = from;
            loop {
                let upto = to.min(w.end);
                record.extend_from_slice(&bytes[(at - w.start) as usize..(upto - w.start) as usize]);
                at = upto;
                if at == to {
                    break;
                }
                (w, bytes) = self.cold_window(at).await?;
            }
            messages.push(Bytes::from(record));
            current = Some((w, bytes));
        }
        Ok(messages)
    }

    /// The cold window holding CommitLog offset `at` (which must be written), read if
    /// needed; also starts reading the windows after it.
    async fn cold_window(&self, at: u64) -> Result<(Rc<Window>, Bytes)> {
        let (written, size) = (self.inner.log.borrow().pos.written().0, self.inner.config.segment_size_bytes);
        let geometry = |start: u64| {
            let base = start - start % size;
            let aligned = start - start % COLD_WINDOW_BYTES;
            let from = aligned.max(base);
            (from, (aligned + COLD_WINDOW_BYTES).min(base + size))
        };
        let (start, nominal_end) = geometry(at);
        let cached = self.inner.cold.borrow_mut().get(start);
        // A window cut at an older written end may not reach `at`; a failed one is
        // read again.
        let window = match cached {
            Some(w) if w.end > at && !w.is_failed() => w,
            _ => self.read_window(start, nominal_end.min(written), true)?.expect("demand reads always start"),
        };
        // Read ahead: the next windows, as far as the written end.
        let mut next = window.end;
        for _ in 0..COLD_READ_AHEAD_WINDOWS {
            if window.end < nominal_end || next >= written {
                break;
            }
            let (start, end) = geometry(next);
            let present = self.inner.cold.borrow_mut().get(start).is_some_and(|w| !w.is_failed());
            // Read-ahead is an optimization: any trouble there is the demand read's to find.
            if !present && !matches!(self.read_window(start, end.min(written), false), Ok(Some(_))) {
                break;
            }
            next = end;
        }
        let bytes = window.bytes().await?;
        Ok((window, bytes))
    }

    /// Starts reading the cold window `[start, end)` with O_DIRECT. A demand read that
    /// finds the cache full of windows being read still reads, uncached; a read-ahead
    /// gives up (`None`).
    fn read_window(&self, start: u64, end: u64, demand: bool) -> Result<Option<Rc<Window>>> {
        let (file, pos) = {
            let log = self.inner.log.borrow();
            let base = log.segment_base(PhysicalOffset(start));
            match log.segments.get(&base) {
                Some(f) => (f.clone(), start - base),
                None => return Err(StorageError::InvalidArgument(format!("no segment holds offset {start}"))),
            }
        };
        let window = match self.inner.cold.borrow_mut().insert(start, end) {
            Some(w) => w,
            None if demand => ColdCache::uncached(start, end),
            None => return Ok(None),
        };
        let mut stats = self.inner.stats.get();
        stats.cold_reads += 1;
        self.inner.stats.set(stats);
        let w = window.clone();
        let inner = Rc::downgrade(&self.inner);
        glommio::spawn_local(async move {
            let result = read_exact(&*file, pos, (w.end - w.start) as usize, true)
                .await
                .map_err(|e| StorageError::io("read", file.path(), w.start, e));
            if result.is_err() {
                if let Some(inner) = inner.upgrade() {
                    inner.cold.borrow_mut().remove(&w);
                }
            }
            w.finish(result);
        })
        .detach();
        Ok(Some(window))
    }

    /// Reads the records of `wanted` in one I/O per contiguous run.
    async fn read_runs(&self, wanted: &[CqEntry]) -> Result<Vec<Bytes>> {
        let mut messages = Vec::with_capacity(wanted.len());
        let mut i = 0;
        while i < wanted.len() {
            let start = wanted[i].physical_offset;
            let mut end = start.plus(u64::from(wanted[i].size));
            let mut j = i + 1;
            while j < wanted.len()
                && wanted[j].physical_offset == end
                && (end.0 - start.0) as usize + wanted[j].size as usize <= READ_RUN_MAX_BYTES
            {
                end = end.plus(u64::from(wanted[j].size));
                j += 1;
            }
            let run = self.read_log(start, (end.0 - start.0) as usize).await?;
            let mut at = 0usize;
            for e in &wanted[i..j] {
                messages.push(run.slice(at..at + e.size as usize));
                at += e.size as usize;
            }
            i = j;
        }
        Ok(messages)
    }

    /// Min and max offsets of a queue; `None` if it does not exist.
    pub fn queue_offsets(&self, topic: &str, queue_id: i32) -> Option<(QueueOffset, QueueOffset)> {
        self.queue(topic, queue_id).map(|q| {
            let q = q.borrow();
            (q.min, q.visible)
        })
    }

    /// Every queue with its min and max offset.
    pub fn queue_infos(&self) -> Vec<QueueInfo> {
        let queues = self.inner.queues.borrow();
        queues.list.iter().map(|q| q.borrow().info()).collect()
    }

    async fn entry_at(&self, q: &Rc<RefCell<ConsumeQueue<D::File>>>, at: QueueOffset) -> Result<Option<CqEntry>> {
        Ok(self.entries(q, at, 1).await?.into_iter().next())
    }

    async fn store_time_of(&self, e: &CqEntry) -> Result<i64> {
        let head = self.read_log(e.physical_offset, (e.size as usize).min(HEADER_SIZE_MAX_BYTES)).await?;
        let h = stored::decode_header(&head)?
            .ok_or_else(|| StorageError::InvalidArgument(format!("short record at {}", e.physical_offset)))?;
        Ok(h.store_timestamp_ms)
    }

    /// The store time of a queue's oldest readable message, if any.
    pub async fn earliest_store_time(&self, topic: &str, queue_id: i32) -> Result<Option<i64>> {
        let Some(q) = self.queue(topic, queue_id) else { return Ok(None) };
        let (min, visible) = {
            let q = q.borrow();
            (q.min, q.visible)
        };
        if min >= visible {
            return Ok(None);
        }
        match self.entry_at(&q, min).await? {
            Some(e) if e.end() <= self.inner.visible_end() => Ok(Some(self.store_time_of(&e).await?)),
            _ => Ok(None),
        }
    }

    /// The queue offset for a store time, by binary search over the ConsumeQueue (store
    /// times ascend with queue offsets within a shard).
    pub async fn offset_by_time(
        &self,
        topic: &str,
        queue_id: i32,
        time_ms: i64,
        boundary: Boundary,
    ) -> Result<QueueOffset> {
        let Some(q) = self.queue(topic, queue_id) else { return Ok(QueueOffset(0)) };
        let (min, max) = {
            let q = q.borrow();
            (q.min, q.visible)
        };
        // Lower: first offset whose time >= t. Upper: last offset whose time <= t, found
        // as (first offset whose time > t) - 1.
        let (mut lo, mut hi) = (min.0, max.0);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let Some(e) = self.entry_at(&q, QueueOffset(mid)).await? else { break };
            let t = self.store_time_of(&e).await?;
            let before = match boundary {
                Boundary::Lower => t < time_ms,
                Boundary::Upper => t <= time_ms,
            };
            if before {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(match boundary {
            Boundary::Lower => QueueOffset(lo),
            Boundary::Upper => QueueOffset(lo.saturating_sub(1).max(min.0)),
        })
    }

    // ---- lifecycle ----------------------------------------------------------------

    /// Shuts down cleanly: refuses new appends, writes and flushes everything pending,
    /// answers every waiter, persists the ConsumeQueues and writes a final checkpoint.
    pub async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.closing.replace(true) {
            return Ok(());
        }
        inner.writer_wake.notify();
        let writer = self.tasks.writer.borrow_mut().take();
        if let Some(writer) = writer {
            writer.await;
        }
        inner.flush_written().await?;
        inner.checkpoint().await?;
        if inner.config_files.unsaved(TOPICS_FILE) {
            inner.save_topics().await?;
        }
        for task in self.tasks.others.borrow_mut().drain(..) {
            drop(task);
        }
        Ok(())
    }

    /// Forces an fdatasync of everything written and a checkpoint now.
    pub async fn sync_now(&self) -> Result<()> {
        self.inner.flush_written().await?;
        self.inner.checkpoint().await
    }

    /// Applies retention now rather than at the next interval.
    pub async fn apply_retention(&self) -> Result<u64> {
        self.inner.apply_retention().await
    }

    // ---- replication --------------------------------------------------------------

    /// `None` (the default): every written record is readable. `Some(l)`: a record is
    /// readable only once it ends at or before `l` (and is written: the visible end is
    /// min(l, written)); `get_messages`, `queue_offsets`, `queue_infos`, `offset_by_time`,
    /// `earliest_store_time` and `read_message` see nothing past it. While a limit is
    /// set, the arrival listener fires as records become visible (once each, in order)
    /// rather than when they are written.
    ///
    /// Raising the limit costs a comparison when nothing waits to become visible. Lowering
    /// it recounts every queue; queues whose files hold entries past the new end have
    /// them moved back to memory in the background (their counts lag meanwhile, reads
    /// never show such entries).
    pub fn set_visible_limit(&self, limit: Option<PhysicalOffset>) {
        let inner = &self.inner;
        let before = inner.visible_end();
        inner.visible_limit.set(limit);
        let after = inner.visible_end();
        if after >= before {
            inner.advance_visible(after);
        } else {
            inner.visible_low.set(inner.visible_low.get().min(after.0));
            inner.recompute_visibility();
        }
    }

    /// The visible limit set by [`Self::set_visible_limit`].
    pub fn visible_limit(&self) -> Option<PhysicalOffset> {
        self.inner.visible_limit.get()
    }

    /// Removes every record at or after `from`, which must be a record boundary (the
    /// start of a record or of a BLANK, or the end) at or above the CommitLog's min.
    ///
    /// Appends are refused ([`StorageError::Truncated`]) while it runs. It waits for
    /// everything appended to be written (and for the preparer's step and any fdatasync
    /// under way), fails the appends waiting past `from` with `Truncated`, cuts the
    /// ConsumeQueues (memory and files) and their counters back, drops cached reads past
    /// `from`, moves the CommitLog positions back (appended = written = `from`, flushed
    /// = min(flushed, `from`)), lowers the checkpoint to `from` if it lay past it, then
    /// zeros the CommitLog from `from` to the end of its segment, deletes the segments
    /// after it and fdatasyncs, all before returning: neither a reopen nor a power loss
    /// brings the cut records back. Appends continue at `from`. A failure after the cut
    /// began fences the store (reopen to recover).
    pub async fn truncate(&self, from: PhysicalOffset) -> Result<()> {
        let inner = &self.inner;
        if inner.closing.get() {
            return Err(StorageError::Closed);
        }
        inner.check_truncate_range(from)?;
        let _checkpoints = inner.checkpoint_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        inner.truncating.set(true);
        let _resume = TruncateGuard(inner);
        inner.writer_wake.notify();
        // Let everything appended be written (appends are refused now): the cut then
        // deals with bytes on disk only, and every waiter before it keeps its answer.
        while !(inner.log.borrow().pending.is_empty() && inner.writer_busy.get() == 0) {
            inner.writer_idle.notified().await;
        }
        while inner.log.borrow().preparing.is_some() {
            inner.prepared_wake.notified().await;
        }
        let _segments = inner.segment_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        let _flushes = inner.flush_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        // A failed write may have abandoned what was appended meanwhile.
        inner.check_truncate_range(from)?;
        let written = inner.log.borrow().pos.written();
        if from < written {
            inner.check_record_boundary(from).await?;
        }
        inner.cut(from).await
    }
}

/// Ends a truncate however it ends: appends and the writer resume.
struct TruncateGuard<'a, D: Disk>(&'a Rc<Inner<D>>);

impl<D: Disk> Drop for TruncateGuard<'_, D> {
    fn drop(&mut self) {
        self.0.truncating.set(false);
        self.0.writer_wake.notify();
        self.0.flusher_wake.notify();
    }
}

// ---- background tasks -----------------------------------------------------------------

/// A chunk handed to the kernel, not yet known written.
struct InFlightWrite {
    start: PhysicalOffset,
    len: usize,
    dispatch: Vec<Dispatch>,
    task: Task<Result<()>>,
    /// The write makes its own range durable (see `Inner::durable_group_commit`).
    durable: bool,
}

/// What stops the writer from handing the next pending chunk to the kernel now.
enum Blocked {
    /// Nothing pending.
    Idle,
    /// The chunk's segment must be created first: done only with nothing in flight, so
    /// a creation failure fails exactly the appends from that chunk on.
    NeedsSegment,
    /// The chunk overlaps the range the preparer is zeroing.
    Preparing,
}

async fn writer_loop<D: Disk>(inner: Rc<Inner<D>>) {
    let mut in_flight: VecDeque<InFlightWrite> = VecDeque::new();
    // Bytes past `written` that abandoned writes may have reached, still to be zeroed.
    let mut abandoned: Option<(PhysicalOffset, PhysicalOffset)> = None;
    let mut truncations_seen = inner.truncations.get();
    loop {
        if truncations_seen != inner.truncations.get() {
            // A truncate zeroed everything from its cut (never above `written`) to the
            // end of the segment and deleted the segments after it: abandoned bytes too.
            truncations_seen = inner.truncations.get();
            abandoned = None;
        }
        // Hand chunks to the kernel while there is room.
        let blocked = loop {
            inner.writer_busy.set(in_flight.len());
            if in_flight.len() >= WRITES_IN_FLIGHT_MAX {
                break None;
            }
            if inner.truncating.get() && inner.log.borrow().pending.is_empty() {
                // Drained for a truncate: touch nothing until it is done.
                break Some(Blocked::Idle);
            }
            if let (Some((from, to)), true) = (abandoned, in_flight.is_empty()) {
                // Before any new write: new records will stop short of where abandoned
                // ones may lie, and recovery must find zeros there, not them.
                if inner.log.borrow().overlaps_preparing(from, to) {
                    break Some(Blocked::Preparing);
                }
                inner.writer_busy.set(1);
                let zeroed = inner.zero_log_range(from, to).await;
                inner.writer_busy.set(0);
                if let Err(e) = zeroed {
                    // The bytes are still there: fail what waits, retry at the next append.
                    inner.on_write_failed(e);
                    break Some(Blocked::Idle);
                }
                abandoned = None;
            }
            let peek = inner.log.borrow().pending.front().map(|c| (c.start, c.end()));
            let Some((start, end)) = peek else { break Some(Blocked::Idle) };
            if inner.log.borrow().overlaps_preparing(start, end) {
                break Some(Blocked::Preparing);
            }
            let file = match inner.open_segment(start) {
                Some(f) => f,
                None if !in_flight.is_empty() => break Some(Blocked::NeedsSegment),
                None => {
                    inner.writer_busy.set(1);
                    let created = inner.create_segment(start).await;
                    inner.writer_busy.set(0);
                    if let Err(e) = created {
                        inner.on_write_failed(e);
                    }
                    // Look again: the pending chunks may have changed meanwhile.
                    continue;
                }
            };
            // Split only with nothing in flight: the two halves then overlap the copy
            // into the page cache with the executor's work (see WRITE_SPLIT_MIN_BYTES).
            // Not while `sync` appends wait: the flusher would start an fdatasync after
            // the first half, and the second half's appends would wait for the next one.
            // That pipelines the writers in two groups, which pays only while an
            // fdatasync is shorter than the executor's work on a batch; on a disk with
            // slow flushes it halves the records each one serves.
            let split = in_flight.is_empty() && inner.log.borrow().flush_waiters.is_empty();
            let chunk = inner.log.borrow_mut().pop_write(split).expect("peeked above");
            let pos = chunk.start.0 - inner.log.borrow().segment_base(chunk.start);
            let (start, len) = (chunk.start, chunk.data.len());
            // A write `sync` appends wait on takes the shortest way; others may be handed
            // to another thread so the executor keeps encoding (DiskFile docs).
            let background = inner.log.borrow().flush_waiters.is_empty();
            let durable = !background && inner.durable_group_commit(start);
            let data = chunk.data;
            let task = glommio::spawn_local(async move {
                let (op, written) = if durable {
                    ("O_DSYNC write", file.write_at_durable(data, pos).await)
                } else if background {
                    ("write", file.write_at_in_background(data, pos).await)
                } else {
                    ("write", file.write_at(data, pos).await)
                };
                written.map_err(|e| StorageError::io(op, file.path(), start.0, e))
            });
            in_flight.push_back(InFlightWrite { start, len, dispatch: chunk.dispatch, task, durable });
        };
        inner.writer_busy.set(in_flight.len());

        let Some(front) = in_flight.front_mut() else {
            // A truncate waits for this.
            inner.writer_idle.notify();
            match blocked {
                Some(Blocked::Idle) if inner.closing.get() => {
                    if abandoned.is_some() {
                        tracing::error!("closing with abandoned CommitLog bytes not zeroed; recovery may find them");
                    }
                    return;
                }
                // New appends and the preparer's progress both wake the writer.
                _ => inner.writer_wake.notified().await,
            }
            continue;
        };
        // Wait for the oldest write; with room for more, also for new appends.
        let result = if blocked.is_some() && !matches!(blocked, Some(Blocked::NeedsSegment)) {
            let finished = async { Some((&mut front.task).await) };
            let woken = async {
                inner.writer_wake.notified().await;
                None
            };
            match futures_lite::future::or(finished, woken).await {
                Some(r) => r,
                None => continue,
            }
        } else {
            (&mut front.task).await
        };
        let done = in_flight.pop_front().expect("front exists");
        inner.writer_busy.set(in_flight.len() + 1);
        match result {
            Ok(()) => inner.on_written(done.start, done.len, done.dispatch, done.durable),
            Err(e) => {
                // A failed `write_at_durable` needs no fence, though its sync half may be
                // what failed: everything before it was durable when it was issued, and
                // its own range is abandoned like any failed write's (zeroed before the
                // next write, never answered), so no acknowledged byte depends on pages
                // the failure may have left clean but unwritten.
                //
                // Nothing past the failure may count as written, even writes that
                // succeed: wait for them, then abandon all of it.
                let mut issued_end = done.start.plus(done.len as u64);
                for w in in_flight.drain(..) {
                    let _ = w.task.await;
                    issued_end = issued_end.max(w.start.plus(w.len as u64));
                }
                inner.on_write_failed(e);
                let written = inner.log.borrow().pos.written();
                if issued_end > written {
                    abandoned = Some((written, issued_end));
                }
            }
        }
        inner.writer_busy.set(in_flight.len());
    }
}

async fn flusher_loop<D: Disk>(inner: Rc<Inner<D>>) {
    let interval = Duration::from_millis(inner.config.flush_interval_ms);
    loop {
        if !inner.flush_is_urgent() {
            futures_lite::future::or(inner.flusher_wake.notified(), glommio::timer::sleep(interval)).await;
        }
        if inner.truncating.get() {
            // No new fdatasync while a truncate runs (it waits for one under way): the
            // appends it cuts are answered by it, not flushed first. It wakes us.
            continue;
        }
        if let Err(e) = inner.flush_written().await {
            if let Some(held) = inner.repeated.flush_failed.allow(Instant::now()) {
                tracing::error!(error = %e, "{FLUSH_FAILED}{held}");
            }
        }
    }
}

/// The preparer's next piece of work.
enum PrepareStep<F> {
    Idle,
    /// Create the segment at this base (the one after the last in use) ahead of need.
    CreateNext(u64),
    /// Write zeros into `[from, to)` of `file`, the segment starting at `base`.
    Zero {
        file: Rc<F>,
        base: u64,
        from: PhysicalOffset,
        to: PhysicalOffset,
    },
}

async fn preparer_loop<D: Disk>(inner: Rc<Inner<D>>) {
    /// Without a wake-up, look again this often (a wake-up normally comes first).
    const IDLE_CHECK: Duration = Duration::from_millis(100);
    let retry = Duration::from_millis(PREPARE_RETRY_MS);
    loop {
        let step = inner.plan_prepare();
        match step {
            PrepareStep::Idle => {
                futures_lite::future::or(inner.preparer_wake.notified(), glommio::timer::sleep(IDLE_CHECK)).await;
            }
            PrepareStep::CreateNext(base) => {
                if let Err(e) = inner.create_next_segment(base).await {
                    if let Some(held) = inner.repeated.segment_ahead_failed.allow(Instant::now()) {
                        tracing::warn!(error = %e, "{SEGMENT_AHEAD_FAILED}{held}");
                    }
                    glommio::timer::sleep(retry).await;
                }
            }
            PrepareStep::Zero { file, base, from, to } => {
                let result = file.prepare_range(from.0 - base, to.0 - from.0).await;
                {
                    let mut log = inner.log.borrow_mut();
                    log.preparing = None;
                    if result.is_ok() {
                        log.prepared_to = log.prepared_to.max(to);
                    }
                }
                inner.writer_wake.notify();
                inner.prepared_wake.notify();
                if let Err(e) = result {
                    if let Some(held) = inner.repeated.blocks_ahead_failed.allow(Instant::now()) {
                        tracing::warn!(error = %e, from = from.0, to = to.0, "{BLOCKS_AHEAD_FAILED}{held}");
                    }
                    glommio::timer::sleep(retry).await;
                }
            }
        }
    }
}

/// Fails `sync` appends that waited longer than the flush timeout. Appends carry no
/// deadline when they arrive (a clock read per append showed in the profile): each tick
/// first fails the expired, then gives every waiter that has none the deadline
/// now + timeout. A waiter gets its deadline at the first tick after it arrived, so it
/// never fails early, and at most two periods (a fiftieth of the timeout, at most 200 ms)
/// late. Waiters are in append order, so the unstamped ones are the last ones and their
/// deadlines ascend.
async fn sweeper_loop<D: Disk>(inner: Rc<Inner<D>>) {
    let timeout_ms = inner.config.sync_flush_timeout_ms;
    let timeout = Duration::from_millis(timeout_ms);
    let period = Duration::from_millis((timeout_ms / 100).clamp(1, 100));
    loop {
        glommio::timer::sleep(period).await;
        let now = Instant::now();
        let mut log = inner.log.borrow_mut();
        while log.flush_waiters.front().is_some_and(|w| w.deadline.is_some_and(|d| d <= now)) {
            let w = log.flush_waiters.pop_front().expect("front exists");
            w.done.complete(Err(StorageError::FlushTimeout { offset: w.end.0, timeout_ms }));
        }
        for w in log.flush_waiters.iter_mut().rev().take_while(|w| w.deadline.is_none()) {
            w.deadline = Some(now + timeout);
        }
    }
}

/// Moves a queue's file entries past the visible end back into memory; retries (the
/// queue's readers meanwhile see only its files, and check every entry) until it works or
/// the store is gone.
async fn reload_invisible<D: Disk>(inner: std::rc::Weak<Inner<D>>, slot: usize) {
    let retry = Duration::from_millis(RELOAD_RETRY_MS);
    loop {
        let Some(strong) = inner.upgrade() else { return };
        if strong.closing.get() {
            return;
        }
        let result = strong.move_back_invisible(slot).await;
        strong.queues.borrow().list[slot].borrow_mut().reloading = false;
        match result {
            Ok(()) => {
                strong.recompute_visibility();
                return;
            }
            Err(e) => {
                if let Some(held) = strong.repeated.reload_failed.allow(Instant::now()) {
                    tracing::error!(error = %e, "{RELOAD_FAILED}{held}");
                }
                strong.queues.borrow().list[slot].borrow_mut().reloading = true;
                drop(strong);
                glommio::timer::sleep(retry).await;
            }
        }
    }
}

async fn maintenance_loop<D: Disk>(inner: Rc<Inner<D>>) {
    let interval = Duration::from_millis(inner.config.checkpoint_interval_ms);
    let retention_every = Duration::from_millis(inner.config.retention_check_interval_ms);
    let mut last_retention = Instant::now();
    loop {
        futures_lite::future::or(inner.maintenance_wake.notified(), glommio::timer::sleep(interval)).await;
        inner.repeated.report_quiet(Instant::now());
        if let Err(e) = inner.checkpoint().await {
            if let Some(held) = inner.repeated.checkpoint_failed.allow(Instant::now()) {
                tracing::error!(error = %e, "{CHECKPOINT_FAILED}{held}");
            }
            continue;
        }
        // A topic change whose save failed (its caller was told) is saved here once the
        // disk works again, so it does not wait for the next change to reach the disk.
        if inner.config_files.unsaved(TOPICS_FILE) {
            if let Err(e) = inner.save_topics().await {
                tracing::error!(error = %e, "saving the topic table failed; will retry");
            }
        }
        if last_retention.elapsed() >= retention_every {
            last_retention = Instant::now();
            if let Err(e) = inner.apply_retention().await {
                if let Some(held) = inner.repeated.retention_failed.allow(Instant::now()) {
                    tracing::error!(error = %e, "{RETENTION_FAILED}{held}");
                }
            }
        }
    }
}

impl<D: Disk> Inner<D> {
    /// Saves a snapshot of the topic table, taken now (see `config_file.rs`).
    async fn save_topics(&self) -> Result<()> {
        let json = self.topics.borrow().to_json();
        self.config_files.save(&self.disk, &config_dir(&self.config.dir), TOPICS_FILE, json).await
    }

    fn segment_path(&self, base: u64) -> PathBuf {
        commitlog_dir(&self.config.dir).join(segment_name(base))
    }

    /// The open segment holding `at`: one in use, or the one the preparer created
    /// ahead, which this puts in use.
    fn open_segment(&self, at: PhysicalOffset) -> Option<Rc<D::File>> {
        let mut log = self.log.borrow_mut();
        let base = log.segment_base(at);
        if let Some(f) = log.segments.get(&base) {
            return Some(f.clone());
        }
        let (next_base, _) = log.next_segment.as_ref()?;
        if *next_base != base {
            return None;
        }
        let (_, f) = log.next_segment.take().expect("checked above");
        log.segments.insert(base, f.clone());
        Some(f)
    }

    /// Creates (and fully allocates) the segment holding `at` and puts it in use.
    async fn create_segment(&self, at: PhysicalOffset) -> Result<Rc<D::File>> {
        let _one = self.segment_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        // The preparer may have created it while this waited for the lock.
        if let Some(f) = self.open_segment(at) {
            return Ok(f);
        }
        let base = self.log.borrow().segment_base(at);
        let f = Rc::new(self.new_segment_file(base).await?);
        self.log.borrow_mut().segments.insert(base, f.clone());
        Ok(f)
    }

    /// Creates the file of the segment at `base`, fully allocated, its name durable.
    async fn new_segment_file(&self, base: u64) -> Result<D::File> {
        let path = self.segment_path(base);
        let f = self.disk.open(&path, OpenMode::Create).await.map_err(StorageError::at("create", &path, base))?;
        if let Err(e) = f.allocate(self.config.segment_size_bytes).await {
            // Do not leave a short segment behind for recovery to trip over.
            let _ = self.disk.remove_file(&path).await;
            return Err(StorageError::io("allocate", &path, base, e));
        }
        let dir = commitlog_dir(&self.config.dir);
        self.disk.sync_dir(&dir).await.map_err(StorageError::at("sync directory", &dir, 0))?;
        Ok(f)
    }

    /// Writes zeros over `[from, to)` of the CommitLog (through the page cache, like
    /// the data they replace), segment by segment.
    async fn zero_log_range(&self, from: PhysicalOffset, to: PhysicalOffset) -> Result<()> {
        /// Zeros per write: the range is at most a few chunks long.
        const ZEROS_PER_WRITE_BYTES: u64 = 1 << 20;
        let mut at = from;
        while at < to {
            let (base, file) = {
                let log = self.log.borrow();
                let base = log.segment_base(at);
                (base, log.segments.get(&base).cloned())
            };
            let segment_end = base + self.config.segment_size_bytes;
            let n = (to.0.min(segment_end) - at.0).min(ZEROS_PER_WRITE_BYTES);
            // A segment never opened holds nothing to zero.
            if let Some(file) = file {
                file.write_at(vec![0; n as usize], at.0 - base)
                    .await
                    .map_err(|e| StorageError::io("write", file.path(), at.0, e))?;
            }
            at = at.plus(n);
        }
        Ok(())
    }

    /// A write of `[start, start + len)` completed; `durable`: it made its range durable
    /// itself (see [`Self::durable_group_commit`]).
    fn on_written(&self, start: PhysicalOffset, len: usize, dispatch: Vec<Dispatch>, durable: bool) {
        let end = start.plus(len as u64);
        let mut stats = self.stats.get();
        stats.writes += 1;
        let (wake_flusher, tail_full, flushed) = {
            let mut log = self.log.borrow_mut();
            assert_eq!(log.pos.written(), start, "writes complete in order");
            log.pos.write_to(end);
            log.pending_bytes -= len;
            CommitLog::<D::File>::complete_upto(&mut log.write_waiters, end);
            // Everything before `start` was durable when the write was issued (and
            // `flushed` never moves back but in a truncate, which drains writes first).
            // A store fenced meanwhile answers no one: its waiters failed when it was.
            let flushed = durable && log.fenced.is_none() && log.pos.flushed() == start;
            if flushed {
                log.pos.flush_to(end);
                stats.flushes += 1;
                self.note_group_commit(len as u64);
            }
            let flush_due = log.flush_waiters.front().is_some_and(|w| w.end <= end)
                || end.0 - log.pos.flushed().0 >= self.config.flush_dirty_bytes;
            (flush_due && !flushed, false, flushed)
        };
        self.stats.set(stats);
        let mut tail_full = tail_full;
        {
            // Without a limit (or with one past these records) each becomes visible now;
            // otherwise it waits in `unseen` behind any record already waiting there.
            let vis_end = self.visible_end();
            let queues = self.queues.borrow();
            let arrival = self.arrival.borrow();
            let mut unseen = self.unseen.borrow_mut();
            for (i, d) in dispatch.iter().enumerate() {
                let end = d.entry.end();
                let mut q = queues.list[d.queue].borrow_mut();
                q.publish(d.offset, d.entry);
                if !unseen.is_empty() || end > vis_end {
                    unseen.push_back(Unseen { end, slot: d.queue, offset: d.offset });
                    continue;
                }
                q.visible = q.published;
                tail_full |= (q.visible.0 - q.file_end.0) as usize >= CONSUME_QUEUE_TAIL_ENTRIES_MAX;
                drop(q);
                // Once per run of one queue's records, with the run's last offset.
                let run_ends = dispatch.get(i + 1).is_none_or(|n| n.queue != d.queue || n.entry.end() > vis_end);
                if let (Some(listener), true) = (arrival.as_ref(), run_ends) {
                    let q = queues.list[d.queue].borrow();
                    listener(&q.topic, q.queue_id, q.visible);
                }
            }
        }
        if flushed {
            // After the records are published, as a flush that completes later would be.
            CommitLog::<D::File>::complete_upto(&mut self.log.borrow_mut().flush_waiters, end);
        }
        if wake_flusher {
            self.flusher_wake.notify();
        }
        if tail_full {
            self.maintenance_wake.notify();
        }
    }

    fn check_truncate_range(&self, from: PhysicalOffset) -> Result<()> {
        let log = self.log.borrow();
        if let Some(e) = &log.fenced {
            return Err(e.clone());
        }
        if from < log.min || from > log.pos.appended() {
            return Err(StorageError::InvalidArgument(format!(
                "truncate at {from}: outside the stored CommitLog [{}, {}]",
                log.min,
                log.pos.appended()
            )));
        }
        Ok(())
    }

    /// Whether a record or a BLANK starts at `at` (below `written`): a truncate must cut
    /// between records, or recovery would later find half of one.
    async fn check_record_boundary(&self, at: PhysicalOffset) -> Result<()> {
        let (file, base, written) = {
            let log = self.log.borrow();
            let base = log.segment_base(at);
            (log.segments.get(&base).cloned(), base, log.pos.written())
        };
        let bad = |why: &str| Err(StorageError::InvalidArgument(format!("truncate at {at}: {why}")));
        let Some(file) = file else { return bad("no segment holds it") };
        let segment_end = base + self.config.segment_size_bytes;
        let len = (HEADER_SIZE_MAX_BYTES as u64).min(written.0.min(segment_end) - at.0) as usize;
        let head = read_exact(&*file, at.0 - base, len, false)
            .await
            .map_err(|e| StorageError::io("read", file.path(), at.0, e))?;
        match stored::decode(&head) {
            Ok(Some(stored::Record::Blank { total_size })) if at.0 + u64::from(total_size) == segment_end => Ok(()),
            _ => match stored::decode_header(&head) {
                Ok(Some(h)) if h.physical_offset == at.0 as i64 => Ok(()),
                _ => bad("not the start of a record"),
            },
        }
    }

    /// The cut of a truncate, with everything appended written and nothing running that
    /// writes the CommitLog or the ConsumeQueue files.
    async fn cut(self: &Rc<Self>, from: PhysicalOffset) -> Result<()> {
        let err = StorageError::Truncated { offset: from.0 };
        // 1. In memory, at once: positions, waiters, queue tails, caches. Readers from
        //    here on see nothing past `from` (they check entries against the visible end).
        let in_files: Vec<(usize, QueueRef<D::File>)> = {
            let mut log = self.log.borrow_mut();
            log.pos.truncate_to(from);
            CommitLog::<D::File>::fail_after(&mut log.write_waiters, from, &err);
            CommitLog::<D::File>::fail_after(&mut log.flush_waiters, from, &err);
            drop(log);
            self.cold.borrow_mut().drop_from(from.0);
            self.unseen.borrow_mut().retain(|u| u.end <= from);
            let queues = self.queues.borrow();
            let mut cq_cache = self.cq_cache.borrow_mut();
            let mut in_files = Vec::new();
            for (slot, rc) in queues.list.iter().enumerate() {
                let mut q = rc.borrow_mut();
                if q.persisted_end > from {
                    in_files.push((slot, rc.clone()));
                    continue;
                }
                let keep = q.tail.partition_point(|e| e.physical_offset < from);
                let end = QueueOffset(q.file_end.0 + keep as u64);
                if end < q.published {
                    q.cut_tail(end);
                    cq_cache.drop_from(slot, end.0);
                }
            }
            in_files
        };
        let n = self.truncations.get() + 1;
        self.truncations.set(n);
        {
            let mut cuts = self.cuts.borrow_mut();
            cuts.push_back((n, from));
            if cuts.len() > TRUNCATE_HISTORY {
                cuts.pop_front();
            }
        }
        let durable = self.cut_on_disk(from, &in_files).await;
        self.recompute_visibility();
        if let Err(e) = durable {
            tracing::error!(error = %e, at = from.0, "truncate failed half way; the store is fenced");
            self.fence(&e);
            return Err(e);
        }
        Ok(())
    }

    /// The durable part of a cut: checkpoint, CommitLog, then the ConsumeQueue files.
    async fn cut_on_disk(&self, from: PhysicalOffset, in_files: &[(usize, QueueRef<D::File>)]) -> Result<()> {
        // 2. The checkpoint first: recovery starting past the cut would take the zeros
        //    there for data's end and keep ConsumeQueue entries of cut records.
        if self.checkpoint.get().commitlog > from {
            self.write_checkpoint(from).await?;
        }
        // 3. The CommitLog: zeros from the cut to its segment's end, no later segments.
        let size = self.config.segment_size_bytes;
        let base = from.0 - from.0 % size;
        let (this, later) = {
            let mut log = self.log.borrow_mut();
            let later: Vec<(u64, Rc<D::File>)> = log.segments.split_off(&(base + 1)).into_iter().collect();
            let mut later = later;
            // A segment created ahead is kept only where it still is the next one.
            if let Some((b, f)) = log.next_segment.take() {
                if b == base + size && log.segments.contains_key(&base) {
                    log.next_segment = Some((b, f));
                } else {
                    later.push((b, f));
                }
            }
            (log.segments.get(&base).cloned(), later)
        };
        if let Some(file) = this {
            file.zero_range(from.0 - base, base + size - from.0)
                .await
                .map_err(|e| StorageError::io("zero", file.path(), from.0, e))?;
            file.sync_data().await.map_err(|e| StorageError::io("fdatasync", file.path(), from.0, e))?;
        }
        for (b, _) in &later {
            let path = self.segment_path(*b);
            self.disk.remove_file(&path).await.map_err(|e| StorageError::io("remove", &path, *b, e))?;
        }
        if !later.is_empty() {
            let dir = commitlog_dir(&self.config.dir);
            self.disk.sync_dir(&dir).await.map_err(|e| StorageError::io("sync directory", &dir, 0, e))?;
        }
        // 4. ConsumeQueue files holding entries of cut records. Their durability does not
        //    matter: recovery cuts every queue back to the checkpoint, now at most `from`.
        for (slot, q) in in_files {
            let (end, before) = self.first_file_entry(q, |e| e.physical_offset >= from).await?;
            let (doomed, shorten) = {
                let mut q = q.borrow_mut();
                q.unpersist(end, None, before.map_or(PhysicalOffset::ZERO, |e| e.end()));
                let first_file = q.files.keys().next().copied();
                let per_file = q.entries_per_file;
                let gone: Vec<u64> = q.files.keys().copied().filter(|&f| Some(f) != first_file && f >= end.0).collect();
                let doomed: Vec<PathBuf> =
                    gone.iter().filter_map(|f| q.files.remove(f).map(|file| file.path().clone())).collect();
                let shorten: Vec<(Rc<D::File>, u64)> = q
                    .files
                    .iter()
                    .filter(|&(&f, _)| f + per_file > end.0)
                    .map(|(&f, file)| (file.clone(), (end.0.saturating_sub(f)) * ENTRY_BYTES as u64))
                    .collect();
                (doomed, shorten)
            };
            self.cq_cache.borrow_mut().drop_from(*slot, end.0);
            for (file, len) in shorten {
                file.truncate(len).await.map_err(|e| StorageError::io("truncate", file.path(), len, e))?;
            }
            for path in &doomed {
                self.disk.remove_file(path).await.map_err(|e| StorageError::io("remove", path, 0, e))?;
            }
        }
        Ok(())
    }

    /// The end of what readers may see: the written end, or the visible limit below it.
    fn visible_end(&self) -> PhysicalOffset {
        let written = self.log.borrow().pos.written();
        match self.visible_limit.get() {
            Some(limit) if limit < written => limit,
            _ => written,
        }
    }

    /// Makes the entries of `unseen` that end at or before `vis_end` visible, in order,
    /// and tells the arrival listener.
    fn advance_visible(&self, vis_end: PhysicalOffset) {
        let mut unseen = self.unseen.borrow_mut();
        if unseen.front().is_none_or(|u| u.end > vis_end) {
            return;
        }
        let queues = self.queues.borrow();
        let arrival = self.arrival.borrow();
        let mut tail_full = false;
        while let Some(u) = unseen.front().copied().filter(|u| u.end <= vis_end) {
            unseen.pop_front();
            {
                let mut q = queues.list[u.slot].borrow_mut();
                q.visible = q.visible.max(u.offset.next());
                tail_full |= (q.visible.0 - q.file_end.0) as usize >= CONSUME_QUEUE_TAIL_ENTRIES_MAX;
            }
            let run_ends = unseen.front().is_none_or(|n| n.slot != u.slot || n.end > vis_end);
            if let (Some(listener), true) = (arrival.as_ref(), run_ends) {
                let q = queues.list[u.slot].borrow();
                listener(&q.topic, q.queue_id, q.visible);
            }
        }
        if tail_full {
            self.maintenance_wake.notify();
        }
    }

    /// Sets every queue's visible count afresh for the current visible end and rebuilds
    /// `unseen`: after the limit went down, a truncate, or entries moved back from the
    /// files. A queue whose files hold entries past the visible end counts only its
    /// files until those entries are moved back into memory (started here); readers
    /// check each entry against the visible end meanwhile.
    fn recompute_visibility(self: &Rc<Self>) {
        let vis_end = self.visible_end();
        let mut reload = Vec::new();
        let mut grew = Vec::new();
        let mut unseen = Vec::new();
        {
            let queues = self.queues.borrow();
            for (slot, q) in queues.list.iter().enumerate() {
                let mut q = q.borrow_mut();
                // Entries ascend in the CommitLog: the visible ones are a prefix.
                let n = q.tail.partition_point(|e| e.end() <= vis_end);
                let visible = if q.persisted_end > vis_end {
                    if !q.reloading {
                        q.reloading = true;
                        reload.push(slot);
                    }
                    q.file_end
                } else {
                    QueueOffset(q.file_end.0 + n as u64)
                };
                let file_end = q.file_end.0;
                unseen.extend(q.tail.iter().enumerate().skip(n).map(|(i, e)| Unseen {
                    end: e.end(),
                    slot,
                    offset: QueueOffset(file_end + i as u64),
                }));
                if visible > q.visible {
                    grew.push(slot);
                }
                q.visible = visible;
            }
        }
        unseen.sort_unstable_by_key(|u| u.end);
        *self.unseen.borrow_mut() = unseen.into();
        if let Some(listener) = self.arrival.borrow().as_ref() {
            let queues = self.queues.borrow();
            for slot in grew {
                let q = queues.list[slot].borrow();
                listener(&q.topic, q.queue_id, q.visible);
            }
        }
        for slot in reload {
            glommio::spawn_local(reload_invisible(Rc::downgrade(self), slot)).detach();
        }
    }

    /// Moves the entries of queue `slot` that its files hold past the visible end back
    /// into memory, so that only visible entries count as persisted again.
    async fn move_back_invisible(&self, slot: usize) -> Result<()> {
        let _one = self.checkpoint_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        let q = self.queues.borrow().list[slot].clone();
        let vis_end = self.visible_end();
        if q.borrow().persisted_end <= vis_end {
            return Ok(());
        }
        let (first, before) = self.first_file_entry(&q, |e| e.end() > vis_end).await?;
        let moved = self.file_entries(&q, first).await?;
        q.borrow_mut().unpersist(first, Some(moved), before.map_or(PhysicalOffset::ZERO, |e| e.end()));
        Ok(())
    }

    /// The first entry in queue `q`'s files (from its min) that satisfies `past` (false
    /// for a prefix, true after it), and the entry before it if that is readable.
    async fn first_file_entry(
        &self,
        q: &QueueRef<D::File>,
        past: impl Fn(&CqEntry) -> bool,
    ) -> Result<(QueueOffset, Option<CqEntry>)> {
        let (min, file_end) = {
            let q = q.borrow();
            (q.min, q.file_end)
        };
        let (mut lo, mut hi) = (min.0, file_end.0);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.file_entry(q, mid).await? {
                Some(e) if !past(&e) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let before = match lo.checked_sub(1).filter(|&b| b >= min.0) {
            Some(b) => self.file_entry(q, b).await?,
            None => None,
        };
        Ok((QueueOffset(lo), before))
    }

    /// Entry `at` of queue `q`'s files, read past any cache.
    async fn file_entry(&self, q: &QueueRef<D::File>, at: u64) -> Result<Option<CqEntry>> {
        let source = q.borrow().locate(QueueOffset(at), 1);
        Ok(match source {
            EntrySource::File { file, pos, .. } => {
                let b = read_exact(&*file, pos, ENTRY_BYTES, false)
                    .await
                    .map_err(|e| StorageError::io("read", file.path(), pos, e))?;
                Some(CqEntry::decode(b[..].try_into().expect("one entry")))
            }
            EntrySource::Memory(v) => v.first().copied(),
            EntrySource::Empty => None,
        })
    }

    /// Every entry of queue `q`'s files from `from` to its `file_end`.
    async fn file_entries(&self, q: &QueueRef<D::File>, from: QueueOffset) -> Result<Vec<CqEntry>> {
        let mut out = Vec::new();
        let mut at = from;
        loop {
            let source = {
                let q = q.borrow();
                if at >= q.file_end {
                    break;
                }
                q.locate(at, q.file_end.0 - at.0)
            };
            let EntrySource::File { file, pos, count } = source else { break };
            let bytes = read_exact(&*file, pos, count as usize * ENTRY_BYTES, false)
                .await
                .map_err(|e| StorageError::io("read", file.path(), pos, e))?;
            out.extend(CqEntry::decode_all(&bytes));
            at = QueueOffset(at.0 + count);
        }
        Ok(out)
    }

    /// The lowest cut of the truncates after the `since`-th, if any (zero when too many
    /// ran to tell): a read that began before them may hold bytes they cut.
    fn cut_since(&self, since: u64) -> Option<PhysicalOffset> {
        if self.truncations.get() == since {
            return None;
        }
        let cuts = self.cuts.borrow();
        if cuts.front().is_none_or(|&(n, _)| n > since + 1) {
            return Some(PhysicalOffset::ZERO);
        }
        cuts.iter().filter(|&&(n, _)| n > since).map(|&(_, cut)| cut).min()
    }

    /// Decides the preparer's next step and, for a zeroing step, marks its range as
    /// being prepared in the same borrow, so no write can start in it unnoticed.
    fn plan_prepare(&self) -> PrepareStep<D::File> {
        let sync_traffic = self.sync_streak.get() >= PREPARE_SYNC_STREAK_MIN
            && now_ms().saturating_sub(self.last_sync_append_ms.get()) <= PREPARE_SYNC_RECENT_MS;
        let small_groups = self.group_bytes_mean.get() < PREPARE_GROUP_MAX_BYTES;
        if self.closing.get() || self.truncating.get() || !sync_traffic || !small_groups {
            return PrepareStep::Idle;
        }
        let mut log = self.log.borrow_mut();
        if log.fenced.is_some() || log.preparing.is_some() {
            return PrepareStep::Idle;
        }
        let size = log.segment_size;
        // Small (test) segments take small steps, so they are prepared too.
        let step_min = PREPARE_STEP_MIN_BYTES.min(size / 4).max(1);
        if log.prepared_to < log.high_water {
            // Behind the data (or just started): skip a little ahead rather than race the
            // writer for the range it is about to write.
            let skip_to = log.high_water.0 + step_min;
            let base = log.segment_base(PhysicalOffset(skip_to));
            log.prepared_to =
                PhysicalOffset(base + (skip_to - base).div_ceil(PREPARE_ALIGN_BYTES) * PREPARE_ALIGN_BYTES);
        }
        let from = log.prepared_to;
        let appended = log.pos.appended().0;
        if from.0 >= appended + PREPARE_AHEAD_BYTES {
            return PrepareStep::Idle;
        }
        // Small steps while close to the data (the writer may reach the range soon and
        // would wait for it), large ones once well ahead (each step costs an fdatasync).
        let step =
            ((from.0 - appended.min(from.0)) / 2).clamp(step_min, PREPARE_STEP_BYTES.max(step_min)).min(size / 2);
        let base = log.segment_base(from);
        let file = match (log.segments.get(&base), &log.next_segment) {
            (Some(f), _) => f.clone(),
            (None, Some((b, f))) if *b == base => f.clone(),
            (None, _) => {
                // Only the segment right after the last in use is created ahead.
                let next = log.segments.keys().next_back().map_or(log.segment_base(log.pos.appended()), |b| b + size);
                return if base == next && log.next_segment.is_none() {
                    PrepareStep::CreateNext(base)
                } else {
                    PrepareStep::Idle
                };
            }
        };
        // End on a page boundary of the file (or at the segment's end), so the next step
        // starts where this one's last whole block ended and no block between is skipped.
        let mut to = (from.0 + step).min(base + size);
        if to < base + size {
            to = base + (to - base) / PREPARE_ALIGN_BYTES * PREPARE_ALIGN_BYTES;
        }
        if to <= from.0 {
            // Less than a page left before a boundary: nothing to prepare in it.
            log.prepared_to = PhysicalOffset(from.0 + step);
            return PrepareStep::Idle;
        }
        let to = PhysicalOffset(to);
        assert!(from >= log.high_water && from < to, "a prepared range lies past all data");
        log.preparing = Some((from, to));
        PrepareStep::Zero { file, base, from, to }
    }

    /// Creates the segment at `base` ahead of need, for the writer to take.
    async fn create_next_segment(&self, base: u64) -> Result<()> {
        let _one = self.segment_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        {
            let log = self.log.borrow();
            if log.segments.contains_key(&base) || log.next_segment.is_some() {
                return Ok(());
            }
        }
        let f = Rc::new(self.new_segment_file(base).await?);
        let mut log = self.log.borrow_mut();
        if log.segments.contains_key(&base) {
            // Cannot happen under the lock; keep the one in use.
            return Ok(());
        }
        log.next_segment = Some((base, f));
        Ok(())
    }

    /// Counts a group commit of `bytes` into the moving mean the preparer goes by.
    fn note_group_commit(&self, bytes: u64) {
        let mean = self.group_bytes_mean.get();
        self.group_bytes_mean.set(mean - mean / 8 + bytes / 8);
    }

    /// Refuses every append from now until the store reopens (recovery then finds what
    /// the disk really holds): after a failed fdatasync or a truncate that failed half
    /// way, what the page cache shows may not be what survives.
    fn fence(&self, err: &StorageError) {
        let mut log = self.log.borrow_mut();
        if log.fenced.is_none() {
            log.fenced = Some(StorageError::Fenced(std::sync::Arc::new(err.clone())));
        }
    }

    /// Whether the chunk at `start`, which `sync` appends wait on, is written with
    /// [`DiskFile::write_at_durable`]: when everything before it is durable already, so
    /// that making its own range durable answers its appends, and no fdatasync need
    /// follow (a write then an fdatasync costs two trips through the kernel's workers
    /// and back, one operation costs one). Otherwise (`async` records written before it
    /// and not yet flushed, or writes still in flight) the flusher's fdatasync answers
    /// it, as it covers those too. Nor while appends that skip the flush come
    /// (DURABLE_WRITE_QUIET_MS): they would wait for the device flush too.
    fn durable_group_commit(&self, start: PhysicalOffset) -> bool {
        let log = self.log.borrow();
        log.fenced.is_none()
            && log.pos.flushed() == start
            && now_ms().saturating_sub(self.last_unflushed_append_ms.get()) > DURABLE_WRITE_QUIET_MS
    }

    fn on_write_failed(&self, err: StorageError) {
        if let Some(held) = self.repeated.write_failed.allow(Instant::now()) {
            tracing::error!(error = %err, "{WRITE_FAILED}{held}");
        }
        let mut log = self.log.borrow_mut();
        log.pending.clear();
        log.pending_bytes = 0;
        log.pos.abandon_unwritten();
        let written = log.pos.written();
        CommitLog::<D::File>::fail_after(&mut log.write_waiters, written, &err);
        CommitLog::<D::File>::fail_after(&mut log.flush_waiters, written, &err);
        for q in &self.queues.borrow().list {
            q.borrow_mut().abandon_unpublished();
        }
    }

    fn flush_is_urgent(&self) -> bool {
        let log = self.log.borrow();
        !self.truncating.get()
            && log.fenced.is_none()
            && log.flush_waiters.front().is_some_and(|w| w.end <= log.pos.written())
    }

    /// fdatasyncs everything written so far and answers the `sync` appends it covers.
    async fn flush_written(&self) -> Result<()> {
        let _one = self.flush_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        let (target, files, group) = {
            let log = self.log.borrow();
            if let Some(e) = &log.fenced {
                return Err(e.clone());
            }
            let target = log.pos.written();
            // A group commit, rather than a flush of async appends only.
            let group = log.flush_waiters.front().is_some_and(|w| w.end <= target);
            (target, log.segments_between(log.pos.flushed(), target), group)
        };
        if files.is_empty() {
            return Ok(());
        }
        for f in &files {
            if let Err(e) = f.sync_data().await {
                let err = StorageError::io("fdatasync", f.path(), target.0, e);
                let mut log = self.log.borrow_mut();
                let flushed = log.pos.flushed();
                CommitLog::<D::File>::fail_after(&mut log.flush_waiters, flushed, &err);
                drop(log);
                self.fence(&err);
                return Err(err);
            }
        }
        let mut log = self.log.borrow_mut();
        if target > log.pos.flushed() {
            if group {
                self.note_group_commit(target.0 - log.pos.flushed().0);
            }
            log.pos.flush_to(target);
        }
        CommitLog::<D::File>::complete_upto(&mut log.flush_waiters, target);
        drop(log);
        let mut stats = self.stats.get();
        stats.flushes += 1;
        self.stats.set(stats);
        Ok(())
    }

    /// Persists every ConsumeQueue tail, fdatasyncs the files written, then records the
    /// flushed CommitLog offset as the new checkpoint.
    async fn checkpoint(&self) -> Result<()> {
        // sync_now and close may call this while the maintenance task is inside it.
        let _only_one = self.checkpoint_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        // Only visible entries reach the files, so the checkpoint stays at or below the
        // visible end, and below any lower one a lowering of the limit set meanwhile.
        self.visible_low.set(u64::MAX);
        let target = self.log.borrow().pos.flushed().min(self.visible_end());
        let queues: Vec<_> = self.queues.borrow().list.clone();
        let mut dirty = Vec::new();
        for q in &queues {
            loop {
                let batch = q.borrow().next_persist_batch();
                let Some((file_first, bytes)) = batch else { break };
                let n = bytes.len() / ENTRY_BYTES;
                let (file, pos) = self.cq_file(q, file_first).await?;
                file.write_at(bytes, pos).await.map_err(|e| StorageError::io("write", file.path(), pos, e))?;
                q.borrow_mut().persisted(n);
                if !dirty.iter().any(|d: &Rc<D::File>| Rc::ptr_eq(d, &file)) {
                    dirty.push(file);
                }
            }
        }
        for f in &dirty {
            f.sync_data().await.map_err(|e| StorageError::io("fdatasync", f.path(), 0, e))?;
        }
        let target = target.min(PhysicalOffset(self.visible_low.get()));
        let current = self.checkpoint.get();
        if target == current.commitlog && current.sequence > 0 {
            return Ok(());
        }
        self.write_checkpoint(target).await
    }

    /// Writes and fdatasyncs the next checkpoint slot with `target`.
    async fn write_checkpoint(&self, target: PhysicalOffset) -> Result<()> {
        let current = self.checkpoint.get();
        let next = Checkpoint { sequence: current.sequence + 1, commitlog: target };
        let path = self.checkpoint_file.path().clone();
        self.checkpoint_file
            .write_at(next.encode(), next.slot_pos())
            .await
            .map_err(|e| StorageError::io("write", &path, next.slot_pos(), e))?;
        self.checkpoint_file.sync_data().await.map_err(|e| StorageError::io("fdatasync", &path, 0, e))?;
        self.checkpoint.set(next);
        let mut stats = self.stats.get();
        stats.checkpoints += 1;
        self.stats.set(stats);
        Ok(())
    }

    /// The ConsumeQueue file starting at entry `file_first` (created if new) and the byte
    /// position of the queue's `file_end` in it.
    async fn cq_file(&self, q: &Rc<RefCell<ConsumeQueue<D::File>>>, file_first: u64) -> Result<(Rc<D::File>, u64)> {
        let (existing, dir, pos) = {
            let q = q.borrow();
            (q.files.get(&file_first).cloned(), q.dir.clone(), (q.file_end.0 - file_first) * ENTRY_BYTES as u64)
        };
        if let Some(f) = existing {
            return Ok((f, pos));
        }
        let path = dir.join(consume_queue::file_name(file_first));
        let io = |op| StorageError::at(op, &path, 0);
        let new_dir = !self.disk.exists(&dir).await;
        if new_dir {
            self.disk.create_dir_all(&dir).await.map_err(io("create directory"))?;
        }
        let f = Rc::new(self.disk.open(&path, OpenMode::Create).await.map_err(io("create"))?);
        self.disk.sync_dir(&dir).await.map_err(io("sync directory"))?;
        if new_dir {
            // The queue's and the topic's directory entries must be durable too.
            for parent in dir.ancestors().skip(1).take(2) {
                self.disk.sync_dir(parent).await.map_err(io("sync directory"))?;
            }
        }
        q.borrow_mut().files.insert(file_first, f.clone());
        Ok((f, pos))
    }

    /// Deletes the oldest segments past the retention limits (never the one being
    /// written, never one the checkpoint has not passed), then moves each queue's min
    /// offset past the deleted data and drops ConsumeQueue files wholly below it.
    /// Returns the number of segments deleted.
    async fn apply_retention(&self) -> Result<u64> {
        let _only_one = self.checkpoint_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        let size = self.config.segment_size_bytes;
        let max_age =
            (self.config.retention_hours > 0).then(|| Duration::from_secs(self.config.retention_hours * 3600));
        let mut deleted = 0;
        loop {
            let candidate = {
                let log = self.log.borrow();
                let checkpoint = self.checkpoint.get().commitlog;
                match log.segments.iter().next() {
                    Some((&base, _)) if log.segments.len() > 1 && base + size <= checkpoint.0 => {
                        Some((base, log.segments.len() as u64 * size))
                    }
                    _ => None,
                }
            };
            let Some((base, total)) = candidate else { break };
            let path = self.segment_path(base);
            let too_big = self.config.retention_bytes.is_some_and(|max| total > max);
            let too_old = match max_age {
                Some(age) => {
                    let modified =
                        self.disk.modified(&path).await.map_err(|e| StorageError::io("stat", &path, base, e))?;
                    SystemTime::now().duration_since(modified).is_ok_and(|d| d > age)
                }
                None => false,
            };
            if !(too_big || too_old) {
                break;
            }
            {
                let mut log = self.log.borrow_mut();
                log.segments.remove(&base);
                log.min = PhysicalOffset(base + size);
            }
            tracing::info!(segment = %path.display(), too_big, too_old, "retention deletes a segment");
            self.disk.remove_file(&path).await.map_err(|e| StorageError::io("remove", &path, base, e))?;
            deleted += 1;
        }
        if deleted == 0 {
            return Ok(0);
        }
        let cl_dir = commitlog_dir(&self.config.dir);
        self.disk.sync_dir(&cl_dir).await.map_err(|e| StorageError::io("sync directory", &cl_dir, 0, e))?;
        let mut stats = self.stats.get();
        stats.segments_deleted += deleted;
        self.stats.set(stats);

        let log_min = self.log.borrow().min;
        let queues: Vec<_> = self.queues.borrow().list.clone();
        for q in &queues {
            // Binary search for the first entry still pointing at stored data.
            let (mut lo, mut hi) = {
                let q = q.borrow();
                (q.min.0, q.published.0)
            };
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let source = q.borrow().locate(QueueOffset(mid), 1);
                let e = match source {
                    EntrySource::Memory(v) => v.first().copied(),
                    EntrySource::File { file, pos, .. } => {
                        let b = read_exact(&*file, pos, ENTRY_BYTES, false)
                            .await
                            .map_err(|e| StorageError::io("read", file.path(), pos, e))?;
                        Some(CqEntry::decode(b[..].try_into().expect("one entry")))
                    }
                    EntrySource::Empty => None,
                };
                match e {
                    Some(e) if e.physical_offset < log_min => lo = mid + 1,
                    _ => hi = mid,
                }
            }
            let doomed: Vec<(u64, PathBuf)> = {
                let mut q = q.borrow_mut();
                q.min = QueueOffset(lo);
                let last = q.files.keys().next_back().copied();
                let per_file = q.entries_per_file;
                let gone: Vec<u64> =
                    q.files.keys().copied().filter(|f| Some(*f) != last && f + per_file <= lo).collect();
                gone.into_iter().filter_map(|f| q.files.remove(&f).map(|file| (f, file.path().clone()))).collect()
            };
            for (_, path) in &doomed {
                self.disk.remove_file(path).await.map_err(|e| StorageError::io("remove", path, 0, e))?;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::SimDisk;

    fn record<'a>(topic: &'a str, body: &'a [u8]) -> RecordFields<'a> {
        let host: std::net::SocketAddr = "127.0.0.1:10911".parse().unwrap();
        RecordFields {
            topic: topic.as_bytes(),
            queue_id: 0,
            flag: 0,
            sys_flag: 0,
            born_timestamp_ms: 1_700_000_000_000,
            born_host: host,
            store_timestamp_ms: 0,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            properties: b"",
        }
    }

    /// `count` sync appends made in one tick (so one group commit), awaited together.
    async fn group(store: &Store<SimDisk>, first: u8, count: u8) -> Vec<Result<AppendResult>> {
        let waits: Vec<_> =
            (first..first + count).map(|i| store.append(&[record("S", &[i; 300])], true).unwrap()).collect();
        let mut out = Vec::new();
        for w in waits {
            out.push(w.await);
        }
        out
    }

    async fn bodies(store: &Store<SimDisk>) -> Vec<u8> {
        let got = store.get_messages("S", 0, QueueOffset(0), 1000, usize::MAX, None).await.unwrap();
        got.messages
            .iter()
            .map(|m| match stored::decode(m).unwrap() {
                Some(stored::Record::Message(r)) => r.body[0],
                other => panic!("not a message: {other:?}"),
            })
            .collect()
    }

    /// When a group commit's write fails, the whole group fails, nothing of it is served
    /// or recovered, its queue offsets are reused, and the next group is written and
    /// synced as usual.
    #[test]
    fn a_failed_group_commit_write_fails_its_group_and_the_next_group_succeeds() {
        glommio::LocalExecutorBuilder::default().make().unwrap().run(async {
            let disk = SimDisk::new();
            let mut config = StoreConfig::new("/sim/group-write");
            config.segment_size_bytes = 1 << 20;
            let store = Store::open_on(disk.clone(), config.clone()).await.unwrap();
            store.upsert_topic(TopicConfig::new("S", 1, FlushMode::Sync)).await.unwrap();
            assert!(group(&store, 0, 8).await.iter().all(|r| r.is_ok()));
            disk.fail_next_writes(1);
            for r in group(&store, 8, 8).await {
                assert!(matches!(r, Err(StorageError::Io { op: "O_DSYNC write", .. })), "{r:?}");
            }
            let next = group(&store, 16, 8).await;
            let offsets: Vec<u64> = next.iter().map(|r| r.as_ref().unwrap().records[0].queue_offset.0).collect();
            assert_eq!(offsets, (8..16).collect::<Vec<_>>(), "the failed group's offsets are reused");
            let expected: Vec<u8> = (0..8).chain(16..24).collect();
            assert_eq!(bodies(&store).await, expected);

            drop(store);
            disk.power_loss();
            let store = Store::open_on(disk.clone(), config).await.unwrap();
            assert_eq!(bodies(&store).await, expected, "every acknowledged record survives, nothing else");
        });
    }
}
