//! Visibility: which written records readers see. Without a limit, every written
//! record; with replication's visible limit, only records ending at or before it. Also
//! publishing a written chunk's ConsumeQueue entries (called by the writer), and moving
//! file entries past a lowered limit back into memory.
//!
//! Owns [`Visibility`]: the limit (written only by `set_visible_limit`), the published
//! entries not yet visible (`unseen`: pushed by publishing, drained as the limit rises,
//! rebuilt on a recount, cut by a truncate through [`Visibility::forget_from`]), and the
//! lowest visible end since the running checkpoint began (read by the checkpoint,
//! `maintenance.rs`). Writes each queue's visible count, and calls the arrival listener.
//!
//! Invariants: with a limit, no reader sees a record that ends past min(limit, written);
//! only visible ConsumeQueue entries reach the files, and the checkpoint never passes
//! the visible end. The arrival listener hears of each record once it is visible, once,
//! in order. No `RefCell` borrow is held across an `.await`.
//!
//! Runs on the store's executor: in the caller's task (`set_visible_limit`), the
//! writer's (publishing), and a background task per queue being reloaded. Deliberately
//! not here: which limit to set (replication, in the raft crate and the broker).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::commitlog::Dispatch;
use crate::consume_queue::{CqEntry, EntrySource, ENTRY_BYTES};
use crate::disk::{read_exact, Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::limits::*;
use crate::offset::{PhysicalOffset, QueueOffset};

use super::repeated::RELOAD_FAILED;
use super::{Inner, QueueRef, Store};

/// A published ConsumeQueue entry whose record lies past the visible limit.
#[derive(Debug, Clone, Copy)]
struct Unseen {
    end: PhysicalOffset,
    slot: usize,
    offset: QueueOffset,
}

/// What readers may see.
pub(super) struct Visibility {
    /// Replication: readers see only records ending at or before this; `None`: every
    /// written record.
    limit: Cell<Option<PhysicalOffset>>,
    /// Published entries not yet visible, in CommitLog order (always empty without a
    /// limit).
    unseen: RefCell<VecDeque<Unseen>>,
    /// The lowest visible end since the running checkpoint began (`u64::MAX`: none
    /// lowered it): a checkpoint never claims entries a lowering kept out of the files.
    low: Cell<u64>,
}

impl Visibility {
    pub(super) fn new() -> Self {
        Visibility { limit: Cell::new(None), unseen: RefCell::new(VecDeque::new()), low: Cell::new(u64::MAX) }
    }

    /// Forgets the unseen entries of records reaching past `from`: a truncate cut them.
    pub(super) fn forget_from(&self, from: PhysicalOffset) {
        self.unseen.borrow_mut().retain(|u| u.end <= from);
    }

    /// A checkpoint begins: from now on, note the lowest visible end.
    pub(super) fn begin_checkpoint(&self) {
        self.low.set(u64::MAX);
    }

    /// The lowest visible end a lowering of the limit set since the running checkpoint
    /// began (`u64::MAX`: none).
    pub(super) fn lowest_since_checkpoint(&self) -> PhysicalOffset {
        PhysicalOffset(self.low.get())
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

impl<D: Disk> Store<D> {
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
        inner.visibility.limit.set(limit);
        let after = inner.visible_end();
        if after >= before {
            inner.advance_visible(after);
        } else {
            let low = &inner.visibility.low;
            low.set(low.get().min(after.0));
            inner.recompute_visibility();
        }
    }

    /// The visible limit set by [`Self::set_visible_limit`].
    pub fn visible_limit(&self) -> Option<PhysicalOffset> {
        self.inner.visibility.limit.get()
    }
}

impl<D: Disk> Inner<D> {
    /// The end of what readers may see: the written end, or the visible limit below it.
    pub(super) fn visible_end(&self) -> PhysicalOffset {
        let written = self.log.borrow().pos.written();
        match self.visibility.limit.get() {
            Some(limit) if limit < written => limit,
            _ => written,
        }
    }

    /// Publishes the ConsumeQueue entries of a written chunk: without a limit (or with
    /// one past these records) each becomes visible now; otherwise it waits in `unseen`
    /// behind any record already waiting there. Tells the arrival listener once per run
    /// of one queue's visible records. Returns whether a queue's in-memory tail grew past
    /// CONSUME_QUEUE_TAIL_ENTRIES_MAX (time to persist it).
    pub(super) fn publish(&self, dispatch: &[Dispatch]) -> bool {
        let mut tail_full = false;
        let vis_end = self.visible_end();
        let queues = self.queues.borrow();
        let arrival = self.arrival.borrow();
        let mut unseen = self.visibility.unseen.borrow_mut();
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
        tail_full
    }

    /// Makes the entries of `unseen` that end at or before `vis_end` visible, in order,
    /// and tells the arrival listener.
    fn advance_visible(&self, vis_end: PhysicalOffset) {
        let mut unseen = self.visibility.unseen.borrow_mut();
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
            self.maintenance.wake.notify();
        }
    }

    /// Sets every queue's visible count afresh for the current visible end and rebuilds
    /// `unseen`: after the limit went down, a truncate, or entries moved back from the
    /// files. A queue whose files hold entries past the visible end counts only its
    /// files until those entries are moved back into memory (started here); readers
    /// check each entry against the visible end meanwhile.
    pub(super) fn recompute_visibility(self: &Rc<Self>) {
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
        *self.visibility.unseen.borrow_mut() = unseen.into();
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
        let _one = self.maintenance.exclusive().await?;
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
    pub(super) async fn first_file_entry(
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
}
