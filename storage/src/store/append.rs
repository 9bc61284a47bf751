//! Appending: checks a batch against the record rules (`record.rs`), assigns its queue
//! and physical offsets, encodes its records into the CommitLog's pending write chunks
//! with their ConsumeQueue entries (tag codes from the config's rule), and queues their
//! answers for the writer (`async`) or the flusher (`sync`). `append_replicated` is the
//! same path keeping each record's store time.
//!
//! Owns [`Traffic`], the pattern of recent appends, written only here; the preparer
//! reads whether `sync` appends stream in ([`Traffic::steady_sync`]), the flusher
//! whether appends that skip the flush have stopped ([`Traffic::unflushed_quiet`]).
//! Writes to the shared CommitLog (reserving bytes, queueing waiters), to the queues
//! (assigning offsets, creating a queue on its first record) and to `stats`.
//!
//! Invariants: a batch is checked whole before anything changes, so a rejected batch
//! leaves no trace; the pending bytes stay within `PENDING_WRITE_MAX_BYTES`; offsets and
//! bytes are assigned in one borrow of the CommitLog, so records of concurrent appends
//! never interleave. Nothing here awaits: the caller awaits the returned [`AppendWait`].
//!
//! Runs on the store's executor, in the appending task. Deliberately not here: writing
//! (the writer task), flushing (the flusher) and any broker policy (the tag-code rule is
//! the owner's).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use rockshard_net::stored::{self, RecordFields};

use crate::commitlog::{CommitLog, Dispatch, Waiter};
use crate::consume_queue::{new_queue, CqEntry};
use crate::disk::Disk;
use crate::error::{Result, StorageError};
use crate::limits::*;
use crate::offset::{PhysicalOffset, QueueOffset};
use crate::record::{dispatchable, tag_code, valid_properties, valid_queue_id, valid_topic};
use crate::topics::FlushMode;
use rockshard_local::{completion, Completer, Completion};

use super::{now_ms, Store};

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

/// Where an append's store timestamps come from.
#[derive(Clone, Copy)]
pub(super) enum Stamp {
    /// The clock, once per batch.
    Now,
    /// Each record's own field (replication).
    Keep,
}

impl Stamp {
    fn of(self, r: &RecordFields<'_>, now_ms: i64) -> i64 {
        match self {
            Stamp::Now => now_ms,
            Stamp::Keep => r.store_timestamp_ms,
        }
    }
}

/// The pattern of recent appends, by the clock (not the records' stamps: replicated ones
/// may be old). Written only by the append path.
pub(super) struct Traffic {
    /// When the latest `sync` append that waits for its flush came, and how many came
    /// without a pause longer than PREPARE_SYNC_RECENT_MS: the preparer works only
    /// during a steady stream of them.
    last_sync_append_ms: Cell<i64>,
    sync_streak: Cell<u32>,
    /// When an append that does not wait for a flush last came (DURABLE_WRITE_QUIET_MS).
    last_unflushed_append_ms: Cell<i64>,
}

impl Traffic {
    pub(super) fn new() -> Self {
        Traffic {
            last_sync_append_ms: Cell::new(i64::MIN),
            sync_streak: Cell::new(0),
            last_unflushed_append_ms: Cell::new(i64::MIN),
        }
    }

    fn note_sync_append(&self, now_ms: i64) {
        if now_ms.saturating_sub(self.last_sync_append_ms.get()) > PREPARE_SYNC_RECENT_MS {
            self.sync_streak.set(0);
        }
        self.sync_streak.set(self.sync_streak.get().saturating_add(1));
        self.last_sync_append_ms.set(now_ms);
    }

    fn note_unflushed_append(&self, now_ms: i64) {
        self.last_unflushed_append_ms.set(now_ms);
    }

    /// Whether `sync` appends arrive in a steady stream (PREPARE_SYNC_STREAK_MIN of them,
    /// the latest within PREPARE_SYNC_RECENT_MS): the preparer's cue. Reads the clock
    /// only when the streak is long enough.
    pub(super) fn steady_sync(&self) -> bool {
        self.sync_streak.get() >= PREPARE_SYNC_STREAK_MIN
            && now_ms().saturating_sub(self.last_sync_append_ms.get()) <= PREPARE_SYNC_RECENT_MS
    }

    /// Whether no append that skips the flush came for DURABLE_WRITE_QUIET_MS (reads the
    /// clock): the flusher's condition for an O_DSYNC group commit.
    pub(super) fn unflushed_quiet(&self) -> bool {
        now_ms().saturating_sub(self.last_unflushed_append_ms.get()) > DURABLE_WRITE_QUIET_MS
    }
}

impl<D: Disk> Store<D> {
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
        if inner.truncation.running() {
            return Err(StorageError::Truncated { offset: log.pos.appended().0 });
        }
        // Check everything before changing anything: a rejected batch leaves no trace.
        let now = now_ms();
        let store_timestamp_ms = records.first().map_or(now, |r| stamp.of(r, now));
        let sync = self.check_batch(&log, records)?;
        let appended = self.encode_batch(&mut log, records, stamp, now);
        let (done, wait) = completion();
        let wake_preparer = self.queue_answer(&mut log, done, sync && wait_store, now);
        drop(log);
        inner.count(|s| s.appended_records += records.len() as u64);
        inner.writer.wake.notify();
        if wake_preparer {
            inner.preparer.wake.notify();
        }
        Ok(AppendWait { result: Some(AppendResult { records: appended, store_timestamp_ms }), done: wait })
    }

    /// Checks every record of a batch against the record rules and the CommitLog's room;
    /// returns whether any of its topics is `sync`.
    fn check_batch(&self, log: &CommitLog<D::File>, records: &[RecordFields<'_>]) -> Result<bool> {
        // Two passes over the records rather than a list of checked ones: a batch is
        // usually one record, and the list was one of its three allocations. The second
        // pass (`encode_batch`) recomputes each length and topic (arithmetic and a short
        // UTF-8 check).
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
        Ok(sync)
    }

    /// Assigns each record of a checked batch its offsets and encodes it into the
    /// CommitLog's pending chunks, with its ConsumeQueue entry to publish once written.
    fn encode_batch(
        &self,
        log: &mut CommitLog<D::File>,
        records: &[RecordFields<'_>],
        stamp: Stamp,
        now: i64,
    ) -> Vec<AppendedRecord> {
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
            let store_timestamp_ms = stamp.of(r, now);
            let fields = RecordFields { store_timestamp_ms, ..*r };
            stored::encode(&fields, queue_offset.0 as i64, at.0 as i64, &mut chunk.data)
                .expect("encoded_len accepted these fields");
            if let Some(queue) = index {
                let rule = self.inner.config.tag_code_rule;
                let entry = CqEntry {
                    physical_offset: at,
                    size: len as u32,
                    tags_code: tag_code(rule, r.topic, r.properties, store_timestamp_ms),
                };
                chunk.dispatch.push(Dispatch { queue, offset: queue_offset, entry });
            }
            appended.push(AppendedRecord { physical_offset: at, queue_offset, size: len as u32 });
        }
        appended
    }

    /// Queues the batch's answer behind everything appended: for the flusher when it
    /// waits for a flush, else for the writer. Returns whether the preparer should wake.
    fn queue_answer(&self, log: &mut CommitLog<D::File>, done: Completer<Result<()>>, flush: bool, now: i64) -> bool {
        let end = log.pos.appended();
        if flush {
            // No deadline yet: the sweeper gives one at its next tick (see sweeper_loop),
            // which saves a clock read per append.
            log.flush_waiters.push_back(Waiter { end, deadline: None, done });
            self.inner.traffic.note_sync_append(now);
            log.preparing.is_none() && log.prepared_to.0 < end.0 + PREPARE_AHEAD_BYTES / 2
        } else {
            log.write_waiters.push_back(Waiter { end, deadline: None, done });
            self.inner.traffic.note_unflushed_append(now);
            false
        }
    }

    /// The slot of a queue, created (empty, files to come) on its first record.
    fn queue_index(&self, topic: &str, queue_id: i32) -> usize {
        if let Some(i) = self.inner.queues.borrow().find(topic, queue_id) {
            return i;
        }
        let q = new_queue(&self.inner.config, topic, queue_id);
        self.inner.queues.borrow_mut().push(q)
    }
}
