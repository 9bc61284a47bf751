//! Reads: raw CommitLog ranges (`read_log`, for replication), whole records
//! (`read_message`), a queue's messages (`get_messages`, a pull), queue offsets and the
//! search by store time. Hot data is read through the page cache; a pull's records below
//! the hot window go through `cold.rs`.
//!
//! Owns [`EntryCache`], the cache of ConsumeQueue file blocks (`read_cache.rs`), which
//! only reads fill; a truncate drops what it cut ([`EntryCache::drop_from`]). Reads
//! nothing else's fields but through their owners: the visible end (`visibility.rs`)
//! and the truncate count and cuts (`truncate.rs`); bumps its own `stats` counters.
//!
//! Invariants: a read never returns a record ending past the visible end, nor bytes a
//! truncate overlapping it may have cut (it reads again, or fails with `Truncated`); a
//! block read across a truncate is never cached. No `RefCell` borrow is held across an
//! `.await`.
//!
//! Runs on the store's executor, in the reading task. Deliberately not here: O_DIRECT
//! windows (`cold.rs`), and any decision about what a consumer should read next (the
//! broker).

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use rockshard_net::stored::{self, HEADER_SIZE_MAX_BYTES};

use crate::consume_queue::{CqEntry, EntrySource, QueueInfo, ENTRY_BYTES};
use crate::disk::{read_exact, Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::limits::*;
use crate::offset::{PhysicalOffset, QueueOffset};
use crate::read_cache::{CqBlock, CqCache};

use super::{QueueRef, Store};

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

/// How often a read that raced a truncate is retried before it answers "nothing yet".
const READ_RETRIES_AFTER_TRUNCATE: usize = 3;

/// Blocks of ConsumeQueue files recently read, by queue slot. Filled only by reads.
#[derive(Default)]
pub(super) struct EntryCache {
    blocks: RefCell<CqCache>,
}

impl EntryCache {
    /// Forgets the cached entries of queue `slot` from entry `from` on: a truncate cut
    /// them.
    pub(super) fn drop_from(&self, slot: usize, from: u64) {
        self.blocks.borrow_mut().drop_from(slot, from);
    }
}

/// The entries a pull takes, and what it passed over.
struct Picked {
    wanted: Vec<CqEntry>,
    /// Where the next read starts.
    next: QueueOffset,
    /// Entries passed over because retention deleted their records.
    removed: usize,
    /// The scan stopped at an entry past the visible end.
    invisible: bool,
}

impl<D: Disk> Store<D> {
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
        let since = self.inner.truncation.count();
        let bytes = self.read_log_once(at, len).await?;
        match self.inner.truncation.cut_since(since) {
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
        self.inner.count(|s| {
            if direct {
                s.cold_reads += 1;
            } else {
                s.hot_reads += 1;
            }
        });
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

    async fn entries(&self, q: &QueueRef<D::File>, from: QueueOffset, max: u64) -> Result<Vec<CqEntry>> {
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
        let mut since = self.inner.truncation.count();
        for _ in 0..READ_RETRIES_AFTER_TRUNCATE {
            let got = self.get_messages_once(topic, queue_id, offset, max_messages, max_bytes, filter).await;
            // Whatever a read that a truncate overlapped found (records, or an error
            // about a range that moved), it may be stale: read again.
            if self.inner.truncation.cut_since(since).is_none() {
                return got;
            }
            since = self.inner.truncation.count();
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

        let Picked { wanted, next, removed, invisible } =
            self.pick_entries(slot, &q, offset, max, max_messages, max_bytes, filter).await?;
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

    /// Picks a pull's entries of queue `slot` from `offset` (below `max`): examines at
    /// most GET_ENTRIES_MAX, keeps what passes the filter until enough messages or bytes,
    /// and stops at the first entry past the visible end.
    #[allow(clippy::too_many_arguments)] // The pull's own parameters, passed on as they came.
    async fn pick_entries(
        &self,
        slot: usize,
        q: &QueueRef<D::File>,
        offset: QueueOffset,
        max: QueueOffset,
        max_messages: u32,
        max_bytes: usize,
        filter: Option<&dyn Fn(i64) -> bool>,
    ) -> Result<Picked> {
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
            let (block, range) = self.scan_entries(slot, q, next, (limit.0 - next.0).min(max.0 - next.0)).await?;
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

        Ok(Picked { wanted, next, removed, invisible })
    }

    /// Up to `max` entries of queue `slot` from `from`, as a block and the range of it
    /// that holds them. Entries in files come through the ConsumeQueue block cache.
    async fn scan_entries(
        &self,
        slot: usize,
        q: &QueueRef<D::File>,
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
        let cached = self.inner.entry_cache.blocks.borrow_mut().get(slot, block_first, from.0);
        let block = match cached {
            Some(b) => b,
            None => {
                let since = self.inner.truncation.count();
                let pos = (block_first - file_first) * ENTRY_BYTES as u64;
                let bytes = file
                    .read_at(pos, (block_end - block_first) as usize * ENTRY_BYTES)
                    .await
                    .map_err(|e| StorageError::io("read", file.path(), pos, e))?;
                let block = CqBlock { first: block_first, entries: Rc::from(CqEntry::decode_all(&bytes)) };
                // A block read across a truncate may hold entries it cut: never cache it
                // (the caller reads again).
                if self.inner.truncation.count() == since {
                    self.inner.entry_cache.blocks.borrow_mut().insert(slot, block.clone());
                }
                block
            }
        };
        let start = ((from.0 - block.first) as usize).min(block.entries.len());
        let end = (start as u64 + max).min(block.entries.len() as u64) as usize;
        Ok((block.entries, start..end))
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

    async fn entry_at(&self, q: &QueueRef<D::File>, at: QueueOffset) -> Result<Option<CqEntry>> {
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
}
