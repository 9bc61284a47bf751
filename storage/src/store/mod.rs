//! The store of one shard: its CommitLog, its ConsumeQueues and its topic table, and the
//! tasks that write, flush, checkpoint and clean them. This module holds the [`Store`]
//! handle (open, close, the shared state); each of its parts has one job and a file:
//!
//! | part             | job                                                            | owns              |
//! | ---------------- | -------------------------------------------------------------- | ----------------- |
//! | `append.rs`      | check a batch, assign offsets, encode write chunks, queue answers | `traffic`      |
//! | `read.rs`        | raw and record reads, `get_messages`, offsets, search by time  | `entry_cache`     |
//! | `cold.rs`        | O_DIRECT read-ahead windows for reads below the hot window     | `cold`            |
//! | `writer.rs`      | writer task: chunks to the kernel in order, publish, answer    | `writer`          |
//! | `flusher.rs`     | flusher and sweeper tasks: group commit, O_DSYNC, fence, timeouts | `flusher`      |
//! | `preparer.rs`    | preparer task: zeros and the next segment ahead of `sync` data | `preparer`        |
//! | `segments.rs`    | creating segment files, on demand or ahead                     | `segments`        |
//! | `visibility.rs`  | replication's visible limit, publishing entries, arrivals      | `visibility`      |
//! | `truncate.rs`    | cutting the log and queues back, durably; reads it overlapped  | `truncation`      |
//! | `maintenance.rs` | maintenance task: checkpoint, retention                        | `maintenance`     |
//! | `topic_table.rs` | topic table and the owner's `config/` files                    | `config_state`    |
//! | `repeated.rs`    | the rate-limited log lines of the retry loops                  | `repeated`        |
//!
//! Each part's state is a struct of its own inside `Inner`, defined in the part's
//! file with private fields, so only that part writes them; others read them through
//! the methods it offers, and each part's header says who does. Shared by several parts,
//! each change keeping the invariants written on its type: the CommitLog (`log`,
//! `commitlog.rs`: positions, pending chunks, waiters, segments), the ConsumeQueues
//! (`queues`, `consume_queue.rs`), the counters (`stats`, each part bumps its own), the
//! arrival listener (set through the API, called by `visibility.rs`) and `closing`
//! (set once by [`Store::close`]). Set at open and only read: `config`, `disk`,
//! `recovery`.
//!
//! Lives on the shard's glommio executor and is not `Send`: every state change happens
//! there, and other shards talk to it through the broker's channels. Clones of a
//! [`Store`] are handles to the same store; the background tasks stop when the last
//! handle is dropped (a crash, as far as the disk can tell) or after [`Store::close`]
//! (a clean shutdown: everything written, flushed and checkpointed). Tasks (writer,
//! flusher, sweeper, preparer, maintenance) each sleep on a `Notify` (`sync.rs`) or a timer, never
//! spinning.
//!
//! Invariants (the crate's header lists the durability ones): CommitLog positions keep
//! flushed ≤ written ≤ appended, checked in release builds; no `RefCell` borrow is held
//! across an `.await`. Deliberately not here: recovery (`recovery.rs`, run by
//! [`Store::open_on`] before any part starts), the record rules (`record.rs`), and any
//! broker policy.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use glommio::Task;

use crate::commitlog::CommitLog;
use crate::config::StoreConfig;
use crate::consume_queue::ConsumeQueue;
use crate::disk::{Disk, GlommioDisk};
use crate::error::Result;
use crate::layout::commitlog_dir;
use crate::offset::QueueOffset;
use crate::recovery::{self, RecoveryReport};
use crate::topics::load_topics;

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

use append::Traffic;
use cold::ColdReads;
use flusher::{flusher_loop, sweeper_loop, FlusherState};
use maintenance::{maintenance_loop, Maintenance};
use preparer::{preparer_loop, PreparerState};
use read::EntryCache;
use repeated::RepeatedLogs;
use segments::Segments;
use topic_table::ConfigState;
use truncate::Truncation;
use visibility::Visibility;
use writer::{writer_loop, WriterState};

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

/// Every ConsumeQueue of the store, by slot. The append path adds queues; the writer,
/// visibility, truncate and maintenance change a queue's counters and files (each under
/// the rules in `consume_queue.rs`); readers read them.
struct Queues<F> {
    /// Topic, then queue id, to the slot in `list`: two lookups that need no owned key,
    /// so finding a record's queue allocates nothing.
    index: HashMap<String, HashMap<i32, usize>>,
    /// Only grows: a queue's slot never changes.
    list: Vec<QueueRef<F>>,
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

/// The store's state, shared by its handles and its tasks. See the module header for
/// who writes what.
struct Inner<D: Disk> {
    // Set at open, then only read.
    config: StoreConfig,
    disk: D,
    recovery: RecoveryReport,

    // Shared: several parts change these, each keeping the invariants of its type.
    log: RefCell<CommitLog<D::File>>,
    queues: RefCell<Queues<D::File>>,
    /// Set once, by `close`: appends are refused, the tasks wind down.
    closing: Cell<bool>,
    /// Counters; each part bumps its own (see [`Inner::count`]).
    stats: Cell<StoreStats>,
    /// Set through the API; called as entries become visible (`visibility.rs`).
    arrival: RefCell<Option<ArrivalListener>>,
    /// The rate-limited log lines, one per retry loop.
    repeated: RepeatedLogs,

    // One per part, written only by its part.
    traffic: Traffic,
    entry_cache: EntryCache,
    cold: ColdReads,
    writer: WriterState,
    flusher: FlusherState,
    preparer: PreparerState,
    segments: Segments,
    visibility: Visibility,
    truncation: Truncation,
    maintenance: Maintenance<D::File>,
    config_state: ConfigState,
}

impl<D: Disk> Inner<D> {
    /// Bumps counters: each part its own.
    fn count(&self, bump: impl FnOnce(&mut StoreStats)) {
        let mut stats = self.stats.get();
        bump(&mut stats);
        self.stats.set(stats);
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
            recovery: rec.report,
            log: RefCell::new(log),
            queues: RefCell::new(queues),
            closing: Cell::new(false),
            stats: Cell::new(StoreStats::default()),
            arrival: RefCell::new(None),
            repeated: RepeatedLogs::new(config.log_repeat_interval_ms),
            traffic: Traffic::new(),
            entry_cache: EntryCache::default(),
            cold: ColdReads::default(),
            writer: WriterState::default(),
            flusher: FlusherState::new(),
            preparer: PreparerState::default(),
            segments: Segments::new(),
            visibility: Visibility::new(),
            truncation: Truncation::new(),
            maintenance: Maintenance::new(rec.checkpoint, rec.checkpoint_file),
            config_state: ConfigState::new(topics),
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

    pub(super) fn queue(&self, topic: &str, queue_id: i32) -> Option<QueueRef<D::File>> {
        self.queue_slot(topic, queue_id).map(|(_, q)| q)
    }

    /// Shuts down cleanly: refuses new appends, writes and flushes everything pending,
    /// answers every waiter, persists the ConsumeQueues and writes a final checkpoint.
    pub async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.closing.replace(true) {
            return Ok(());
        }
        inner.writer.wake.notify();
        let writer = self.tasks.writer.borrow_mut().take();
        if let Some(writer) = writer {
            writer.await;
        }
        inner.flush_written().await?;
        inner.checkpoint().await?;
        if inner.topics_unsaved() {
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
