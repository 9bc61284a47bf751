//! CommitLog segment files: finding the open one holding an offset, creating one when
//! the writer needs it or ahead of need for the preparer, fully allocated and with its
//! name durable before use.
//!
//! Owns [`Segments`], the lock that lets one segment creation run at a time (the
//! writer and the preparer may both want the next one; a truncate takes it too).
//! Writes to the shared CommitLog: its map of open segments and `next_segment`, the
//! one created ahead.
//!
//! Invariants: a segment in use is allocated to the full segment size (a short one
//! would trip recovery, so a failed allocation removes the file); only the segment right
//! after the last in use is created ahead. No `RefCell` borrow is held across an
//! `.await`.
//!
//! Runs on the store's executor, in the writer's or the preparer's task. Deliberately
//! not here: deleting segments (retention in `maintenance.rs`, `truncate.rs`).

use std::path::PathBuf;
use std::rc::Rc;

use glommio::sync::{Permit, Semaphore};

use crate::commitlog::segment_name;
use crate::disk::{Disk, DiskFile, OpenMode};
use crate::error::{Result, StorageError};
use crate::layout::commitlog_dir;
use crate::offset::PhysicalOffset;

use super::Inner;

/// The lock of segment creation.
pub(super) struct Segments {
    /// One segment creation at a time: the writer and the preparer may both want the
    /// next one.
    lock: Semaphore,
}

impl Segments {
    pub(super) fn new() -> Self {
        Segments { lock: Semaphore::new(1) }
    }

    /// Waits until no segment is being created, and keeps creations out while the permit
    /// lives.
    pub(super) async fn exclusive(&self) -> Result<Permit<'_>> {
        self.lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)
    }
}

impl<D: Disk> Inner<D> {
    pub(super) fn segment_path(&self, base: u64) -> PathBuf {
        commitlog_dir(&self.config.dir).join(segment_name(base))
    }

    /// The open segment holding `at`: one in use, or the one the preparer created
    /// ahead, which this puts in use.
    pub(super) fn open_segment(&self, at: PhysicalOffset) -> Option<Rc<D::File>> {
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
    pub(super) async fn create_segment(&self, at: PhysicalOffset) -> Result<Rc<D::File>> {
        let _one = self.segments.exclusive().await?;
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

    /// Creates the segment at `base` ahead of need, for the writer to take.
    pub(super) async fn create_next_segment(&self, base: u64) -> Result<()> {
        let _one = self.segments.exclusive().await?;
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
}
