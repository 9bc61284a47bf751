//! Maintenance: the checkpoint (persisting ConsumeQueue tails, then recording how far
//! recovery may skip) and retention (deleting whole segments, oldest first, with the
//! ConsumeQueue ranges that point into them), and the task that runs them: every
//! checkpoint interval or when a queue's tail grows large, retention every check
//! interval; it also retries a failed save of the topic table and reports how often a
//! repeated failure recurred once it stops (`repeated.rs`).
//!
//! Owns [`Maintenance`]: the checkpoint and its file (written only by
//! [`Inner::write_checkpoint`]: the checkpoint, and a truncate lowering it), its wake-up
//! (the writer and visibility wake it when a tail is full) and the lock that lets one
//! of checkpoint, retention, truncate or moving entries back from files change the
//! ConsumeQueue files at a time. Writes the queues' files and counters (persisted,
//! min), the CommitLog's segments and min (retention), and the `checkpoints` and
//! `segments_deleted` counters.
//!
//! Invariants: a checkpoint is written only after the CommitLog is fdatasynced up to it
//! and every ConsumeQueue entry below it is written and fdatasynced; it never passes the
//! visible end, nor the lowest visible end since it began. Retention never deletes the
//! segment being written, nor one the checkpoint has not passed. No `RefCell` borrow is
//! held across an `.await`.
//!
//! Runs as one task on the store's executor, and in `close`, `sync_now` and
//! `apply_retention`. Deliberately not here: the checkpoint's format (`checkpoint.rs`)
//! and recovery's use of it (`recovery.rs`).

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use glommio::sync::{Permit, Semaphore};

use crate::checkpoint::Checkpoint;
use crate::consume_queue::{self, CqEntry, EntrySource, ENTRY_BYTES};
use crate::disk::{read_exact, Disk, DiskFile, OpenMode};
use crate::error::{Result, StorageError};
use crate::layout::commitlog_dir;
use crate::offset::{PhysicalOffset, QueueOffset};
use rockshard_local::Notify;

use super::repeated::{CHECKPOINT_FAILED, RETENTION_FAILED};
use super::{Inner, QueueRef};

/// The checkpoint and what orders changes to the ConsumeQueue files.
pub(super) struct Maintenance<F> {
    /// Wakes the maintenance task: a queue's in-memory tail grew large.
    pub(super) wake: Notify,
    /// One checkpoint at a time: two would persist the same ConsumeQueue tail twice.
    /// Retention, a truncate and moving entries back from files take it too: each
    /// changes what the ConsumeQueue files hold.
    lock: Semaphore,
    checkpoint: Cell<Checkpoint>,
    file: F,
}

impl<F> Maintenance<F> {
    /// The state of a store whose checkpoint file `file` holds `checkpoint`.
    pub(super) fn new(checkpoint: Checkpoint, file: F) -> Self {
        Maintenance { wake: Notify::default(), lock: Semaphore::new(1), checkpoint: Cell::new(checkpoint), file }
    }

    /// Waits until nothing else changes the ConsumeQueue files, and keeps them out while
    /// the permit lives.
    pub(super) async fn exclusive(&self) -> Result<Permit<'_>> {
        self.lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)
    }

    /// The checkpoint last written.
    pub(super) fn checkpoint(&self) -> Checkpoint {
        self.checkpoint.get()
    }
}

pub(super) async fn maintenance_loop<D: Disk>(inner: Rc<Inner<D>>) {
    let interval = Duration::from_millis(inner.config.checkpoint_interval_ms);
    let retention_every = Duration::from_millis(inner.config.retention_check_interval_ms);
    let mut last_retention = Instant::now();
    loop {
        futures_lite::future::or(inner.maintenance.wake.notified(), glommio::timer::sleep(interval)).await;
        inner.repeated.report_quiet(Instant::now());
        if let Err(e) = inner.checkpoint().await {
            if let Some(held) = inner.repeated.checkpoint_failed.allow(Instant::now()) {
                tracing::error!(error = %e, "{CHECKPOINT_FAILED}{held}");
            }
            continue;
        }
        // A topic change whose save failed (its caller was told) is saved here once the
        // disk works again, so it does not wait for the next change to reach the disk.
        if inner.topics_unsaved() {
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
    /// Persists every ConsumeQueue tail, fdatasyncs the files written, then records the
    /// flushed CommitLog offset as the new checkpoint.
    pub(super) async fn checkpoint(&self) -> Result<()> {
        // sync_now and close may call this while the maintenance task is inside it.
        let _only_one = self.maintenance.exclusive().await?;
        // Only visible entries reach the files, so the checkpoint stays at or below the
        // visible end, and below any lower one a lowering of the limit set meanwhile.
        self.visibility.begin_checkpoint();
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
        let target = target.min(self.visibility.lowest_since_checkpoint());
        let current = self.maintenance.checkpoint();
        if target == current.commitlog && current.sequence > 0 {
            return Ok(());
        }
        self.write_checkpoint(target).await
    }

    /// Writes and fdatasyncs the next checkpoint slot with `target`.
    pub(super) async fn write_checkpoint(&self, target: PhysicalOffset) -> Result<()> {
        let m = &self.maintenance;
        let current = m.checkpoint.get();
        let next = Checkpoint { sequence: current.sequence + 1, commitlog: target };
        let path = m.file.path().clone();
        m.file
            .write_at(next.encode(), next.slot_pos())
            .await
            .map_err(|e| StorageError::io("write", &path, next.slot_pos(), e))?;
        m.file.sync_data().await.map_err(|e| StorageError::io("fdatasync", &path, 0, e))?;
        m.checkpoint.set(next);
        self.count(|s| s.checkpoints += 1);
        Ok(())
    }

    /// The ConsumeQueue file starting at entry `file_first` (created if new) and the byte
    /// position of the queue's `file_end` in it.
    async fn cq_file(&self, q: &QueueRef<D::File>, file_first: u64) -> Result<(Rc<D::File>, u64)> {
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
    pub(super) async fn apply_retention(&self) -> Result<u64> {
        let _only_one = self.maintenance.exclusive().await?;
        let deleted = self.delete_old_segments().await?;
        if deleted == 0 {
            return Ok(0);
        }
        let cl_dir = commitlog_dir(&self.config.dir);
        self.disk.sync_dir(&cl_dir).await.map_err(|e| StorageError::io("sync directory", &cl_dir, 0, e))?;
        self.count(|s| s.segments_deleted += deleted);
        self.trim_queues().await?;
        Ok(deleted)
    }

    /// Deletes segments, oldest first, while the oldest is past a retention limit and
    /// neither the last one nor one the checkpoint has not passed. Returns how many.
    async fn delete_old_segments(&self) -> Result<u64> {
        let size = self.config.segment_size_bytes;
        let max_age =
            (self.config.retention_hours > 0).then(|| Duration::from_secs(self.config.retention_hours * 3600));
        let mut deleted = 0;
        loop {
            let candidate = {
                let log = self.log.borrow();
                let checkpoint = self.maintenance.checkpoint().commitlog;
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
        Ok(deleted)
    }

    /// Moves each queue's min offset past the entries whose records retention deleted,
    /// and removes the ConsumeQueue files wholly below it (never a queue's last file).
    async fn trim_queues(&self) -> Result<()> {
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
        Ok(())
    }
}
