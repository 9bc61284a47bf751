//! Truncate: cutting the CommitLog and the ConsumeQueues back to a record boundary,
//! durably (replication removes a follower's entries the leader does not have), and
//! telling readers which of their reads a cut overlapped.
//!
//! Owns [`Truncation`]: whether a truncate runs (appends, the writer, the flusher and
//! the preparer hold still meanwhile) and the count and cuts of recent truncates
//! (readers compare counts before and after a read, [`Truncation::cut_since`]). Only a
//! truncate writes them. A truncate takes the maintenance, segment and flush locks, so
//! nothing else changes the files under it; it cuts the shared CommitLog, the queues and
//! every part's cached or pending view of what it removes (`cold.rs`, `read.rs`,
//! `visibility.rs`).
//!
//! Invariants: when `truncate(from)` returns, no record at or past `from` is readable,
//! and none can come back: the checkpoint (lowered to at most `from`) and the zeroed
//! CommitLog past `from` are durable first. A read that a truncate overlapped is read
//! again (or fails with `Truncated`) rather than return cut bytes; a truncate that fails
//! half way fences the store. No `RefCell` borrow is held across an `.await`.
//!
//! Runs on the store's executor, in the caller's task. Deliberately not here: where to
//! cut (the raft crate decides).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

use rockshard_net::stored::{self, HEADER_SIZE_MAX_BYTES};

use crate::commitlog::CommitLog;
use crate::consume_queue::ENTRY_BYTES;
use crate::disk::{read_exact, Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::layout::commitlog_dir;
use crate::offset::{PhysicalOffset, QueueOffset};

use super::{Inner, QueueRef, Store};

/// How many recent truncates readers can tell apart; a read that overlapped more than
/// this many assumes the worst and reads again.
const TRUNCATE_HISTORY: usize = 64;

/// What readers and the other parts know of truncates.
pub(super) struct Truncation {
    /// A truncate runs: appends are refused, the writer and the preparer stay idle.
    running: Cell<bool>,
    /// Truncates so far, and (count after it, cut) of the last [`TRUNCATE_HISTORY`].
    count: Cell<u64>,
    cuts: RefCell<VecDeque<(u64, PhysicalOffset)>>,
}

impl Truncation {
    pub(super) fn new() -> Self {
        Truncation { running: Cell::new(false), count: Cell::new(0), cuts: RefCell::new(VecDeque::new()) }
    }

    /// Whether a truncate runs now.
    pub(super) fn running(&self) -> bool {
        self.running.get()
    }

    /// How many truncates cut so far: a reader notes it before a read.
    pub(super) fn count(&self) -> u64 {
        self.count.get()
    }

    /// The lowest cut of the truncates after the `since`-th, if any (zero when too many
    /// ran to tell): a read that began before them may hold bytes they cut.
    pub(super) fn cut_since(&self, since: u64) -> Option<PhysicalOffset> {
        if self.count.get() == since {
            return None;
        }
        let cuts = self.cuts.borrow();
        if cuts.front().is_none_or(|&(n, _)| n > since + 1) {
            return Some(PhysicalOffset::ZERO);
        }
        cuts.iter().filter(|&&(n, _)| n > since).map(|&(_, cut)| cut).min()
    }

    /// Counts a cut at `from`, remembering the last TRUNCATE_HISTORY.
    fn note_cut(&self, from: PhysicalOffset) {
        let n = self.count.get() + 1;
        self.count.set(n);
        let mut cuts = self.cuts.borrow_mut();
        cuts.push_back((n, from));
        if cuts.len() > TRUNCATE_HISTORY {
            cuts.pop_front();
        }
    }
}

/// Ends a truncate however it ends: appends and the writer resume.
struct TruncateGuard<'a, D: Disk>(&'a Rc<Inner<D>>);

impl<D: Disk> Drop for TruncateGuard<'_, D> {
    fn drop(&mut self) {
        self.0.truncation.running.set(false);
        self.0.writer.wake.notify();
        self.0.flusher.wake.notify();
    }
}

impl<D: Disk> Store<D> {
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
        let _checkpoints = inner.maintenance.exclusive().await?;
        inner.truncation.running.set(true);
        let _resume = TruncateGuard(inner);
        inner.writer.wake.notify();
        // Let everything appended be written (appends are refused now): the cut then
        // deals with bytes on disk only, and every waiter before it keeps its answer.
        while !inner.log.borrow().pending.is_empty() || inner.writer.is_busy() {
            inner.writer.went_idle().await;
        }
        while inner.log.borrow().preparing.is_some() {
            inner.preparer.stepped().await;
        }
        let _segments = inner.segments.exclusive().await?;
        let _flushes = inner.flusher.exclusive().await?;
        // A failed write may have abandoned what was appended meanwhile.
        inner.check_truncate_range(from)?;
        let written = inner.log.borrow().pos.written();
        if from < written {
            inner.check_record_boundary(from).await?;
        }
        inner.cut(from).await
    }
}

impl<D: Disk> Inner<D> {
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
            self.cold.drop_from(from.0);
            self.visibility.forget_from(from);
            let queues = self.queues.borrow();
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
                    self.entry_cache.drop_from(slot, end.0);
                }
            }
            in_files
        };
        self.truncation.note_cut(from);
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
        if self.maintenance.checkpoint().commitlog > from {
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
            self.entry_cache.drop_from(*slot, end.0);
            for (file, len) in shorten {
                file.truncate(len).await.map_err(|e| StorageError::io("truncate", file.path(), len, e))?;
            }
            for path in &doomed {
                self.disk.remove_file(path).await.map_err(|e| StorageError::io("remove", path, 0, e))?;
            }
        }
        Ok(())
    }
}
