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
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use glommio::Task;

use crate::checkpoint::Checkpoint;
use crate::commitlog::CommitLog;
use crate::config::StoreConfig;
use crate::config_file::ConfigFiles;
use crate::consume_queue::ConsumeQueue;
use crate::disk::{Disk, GlommioDisk};
use crate::error::Result;
use crate::layout::commitlog_dir;
use crate::offset::{PhysicalOffset, QueueOffset};
use crate::read_cache::{ColdCache, CqCache};
use crate::recovery::{self, RecoveryReport};
use crate::sync::Notify;
use crate::topics::{load_topics, TopicTable, TOPICS_FILE};

mod append;
mod cold;
mod flusher;
mod maintenance;
mod preparer;
mod read;
mod repeated;
mod segments;
mod topic_table;
mod truncate;
mod visibility;
mod writer;

pub use append::{AppendResult, AppendWait, AppendedRecord};
pub use read::{Boundary, GetResult, GetStatus};

use flusher::{flusher_loop, sweeper_loop};
use maintenance::maintenance_loop;
use preparer::preparer_loop;
use repeated::RepeatedLogs;
use visibility::Unseen;
use writer::writer_loop;

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
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

    /// A queue and its slot in the queue list.
    pub(super) fn queue_slot(&self, topic: &str, queue_id: i32) -> Option<(usize, QueueRef<D::File>)> {
        let queues = self.inner.queues.borrow();
        queues.find(topic, queue_id).map(|i| (i, queues.list[i].clone()))
    }

    pub(super) fn queue(&self, topic: &str, queue_id: i32) -> Option<Rc<RefCell<ConsumeQueue<D::File>>>> {
        self.queue_slot(topic, queue_id).map(|(_, q)| q)
    }

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
}
