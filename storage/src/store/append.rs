//! Appending: checks a batch, assigns its queue and physical offsets, encodes its
//! records into write chunks and queues their answers (see the header of `mod.rs`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use rockshard_net::stored::{self, RecordFields};

use crate::commitlog::{Dispatch, Waiter};
use crate::consume_queue::{new_queue, CqEntry};
use crate::disk::Disk;
use crate::error::{Result, StorageError};
use crate::limits::*;
use crate::offset::{PhysicalOffset, QueueOffset};
use crate::record::{dispatchable, tag_code, valid_properties, valid_queue_id, valid_topic};
use crate::sync::{completion, Completion};
use crate::topics::FlushMode;

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

    pub(super) fn append_stamped(
        &self,
        records: &[RecordFields<'_>],
        wait_store: bool,
        stamp: Stamp,
    ) -> Result<AppendWait> {
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

    pub(super) fn queue_index(&self, topic: &str, queue_id: i32) -> usize {
        if let Some(i) = self.inner.queues.borrow().find(topic, queue_id) {
            return i;
        }
        let q = new_queue(&self.inner.config, topic, queue_id);
        self.inner.queues.borrow_mut().push(q)
    }
}
