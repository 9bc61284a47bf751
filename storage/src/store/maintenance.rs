//! The maintenance task: ConsumeQueue persistence, the checkpoint, retention and
//! retried saves of the topic table.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use crate::checkpoint::Checkpoint;
use crate::consume_queue::{self, ConsumeQueue, CqEntry, EntrySource, ENTRY_BYTES};
use crate::disk::{read_exact, Disk, DiskFile, OpenMode};
use crate::error::{Result, StorageError};
use crate::layout::commitlog_dir;
use crate::offset::{PhysicalOffset, QueueOffset};
use crate::topics::TOPICS_FILE;

use super::repeated::{CHECKPOINT_FAILED, RETENTION_FAILED};
use super::Inner;

pub(super) async fn maintenance_loop<D: Disk>(inner: Rc<Inner<D>>) {
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
    /// Persists every ConsumeQueue tail, fdatasyncs the files written, then records the
    /// flushed CommitLog offset as the new checkpoint.
    pub(super) async fn checkpoint(&self) -> Result<()> {
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
    pub(super) async fn write_checkpoint(&self, target: PhysicalOffset) -> Result<()> {
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
    pub(super) async fn cq_file(
        &self,
        q: &Rc<RefCell<ConsumeQueue<D::File>>>,
        file_first: u64,
    ) -> Result<(Rc<D::File>, u64)> {
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
