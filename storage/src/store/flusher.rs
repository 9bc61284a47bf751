//! The flusher and the sweeper: fdatasyncs and group commit, the O_DSYNC decision,
//! fencing after a failed sync, and timing out `sync` appends.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::commitlog::CommitLog;
use crate::disk::{Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::limits::*;
use crate::offset::PhysicalOffset;

use super::repeated::FLUSH_FAILED;
use super::{now_ms, Inner};

pub(super) async fn flusher_loop<D: Disk>(inner: Rc<Inner<D>>) {
    let interval = Duration::from_millis(inner.config.flush_interval_ms);
    loop {
        if !inner.flush_is_urgent() {
            futures_lite::future::or(inner.flusher_wake.notified(), glommio::timer::sleep(interval)).await;
        }
        if inner.truncating.get() {
            // No new fdatasync while a truncate runs (it waits for one under way): the
            // appends it cuts are answered by it, not flushed first. It wakes us.
            continue;
        }
        if let Err(e) = inner.flush_written().await {
            if let Some(held) = inner.repeated.flush_failed.allow(Instant::now()) {
                tracing::error!(error = %e, "{FLUSH_FAILED}{held}");
            }
        }
    }
}

/// Fails `sync` appends that waited longer than the flush timeout. Appends carry no
/// deadline when they arrive (a clock read per append showed in the profile): each tick
/// first fails the expired, then gives every waiter that has none the deadline
/// now + timeout. A waiter gets its deadline at the first tick after it arrived, so it
/// never fails early, and at most two periods (a fiftieth of the timeout, at most 200 ms)
/// late. Waiters are in append order, so the unstamped ones are the last ones and their
/// deadlines ascend.
pub(super) async fn sweeper_loop<D: Disk>(inner: Rc<Inner<D>>) {
    let timeout_ms = inner.config.sync_flush_timeout_ms;
    let timeout = Duration::from_millis(timeout_ms);
    let period = Duration::from_millis((timeout_ms / 100).clamp(1, 100));
    loop {
        glommio::timer::sleep(period).await;
        let now = Instant::now();
        let mut log = inner.log.borrow_mut();
        while log.flush_waiters.front().is_some_and(|w| w.deadline.is_some_and(|d| d <= now)) {
            let w = log.flush_waiters.pop_front().expect("front exists");
            w.done.complete(Err(StorageError::FlushTimeout { offset: w.end.0, timeout_ms }));
        }
        for w in log.flush_waiters.iter_mut().rev().take_while(|w| w.deadline.is_none()) {
            w.deadline = Some(now + timeout);
        }
    }
}

impl<D: Disk> Inner<D> {
    /// Counts a group commit of `bytes` into the moving mean the preparer goes by.
    pub(super) fn note_group_commit(&self, bytes: u64) {
        let mean = self.group_bytes_mean.get();
        self.group_bytes_mean.set(mean - mean / 8 + bytes / 8);
    }

    /// Refuses every append from now until the store reopens (recovery then finds what
    /// the disk really holds): after a failed fdatasync or a truncate that failed half
    /// way, what the page cache shows may not be what survives.
    pub(super) fn fence(&self, err: &StorageError) {
        let mut log = self.log.borrow_mut();
        if log.fenced.is_none() {
            log.fenced = Some(StorageError::Fenced(std::sync::Arc::new(err.clone())));
        }
    }

    /// Whether the chunk at `start`, which `sync` appends wait on, is written with
    /// [`DiskFile::write_at_durable`]: when everything before it is durable already, so
    /// that making its own range durable answers its appends, and no fdatasync need
    /// follow (a write then an fdatasync costs two trips through the kernel's workers
    /// and back, one operation costs one). Otherwise (`async` records written before it
    /// and not yet flushed, or writes still in flight) the flusher's fdatasync answers
    /// it, as it covers those too. Nor while appends that skip the flush come
    /// (DURABLE_WRITE_QUIET_MS): they would wait for the device flush too.
    pub(super) fn durable_group_commit(&self, start: PhysicalOffset) -> bool {
        let log = self.log.borrow();
        log.fenced.is_none()
            && log.pos.flushed() == start
            && now_ms().saturating_sub(self.last_unflushed_append_ms.get()) > DURABLE_WRITE_QUIET_MS
    }

    pub(super) fn flush_is_urgent(&self) -> bool {
        let log = self.log.borrow();
        !self.truncating.get()
            && log.fenced.is_none()
            && log.flush_waiters.front().is_some_and(|w| w.end <= log.pos.written())
    }

    /// fdatasyncs everything written so far and answers the `sync` appends it covers.
    pub(super) async fn flush_written(&self) -> Result<()> {
        let _one = self.flush_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        let (target, files, group) = {
            let log = self.log.borrow();
            if let Some(e) = &log.fenced {
                return Err(e.clone());
            }
            let target = log.pos.written();
            // A group commit, rather than a flush of async appends only.
            let group = log.flush_waiters.front().is_some_and(|w| w.end <= target);
            (target, log.segments_between(log.pos.flushed(), target), group)
        };
        if files.is_empty() {
            return Ok(());
        }
        for f in &files {
            if let Err(e) = f.sync_data().await {
                let err = StorageError::io("fdatasync", f.path(), target.0, e);
                let mut log = self.log.borrow_mut();
                let flushed = log.pos.flushed();
                CommitLog::<D::File>::fail_after(&mut log.flush_waiters, flushed, &err);
                drop(log);
                self.fence(&err);
                return Err(err);
            }
        }
        let mut log = self.log.borrow_mut();
        if target > log.pos.flushed() {
            if group {
                self.note_group_commit(target.0 - log.pos.flushed().0);
            }
            log.pos.flush_to(target);
        }
        CommitLog::<D::File>::complete_upto(&mut log.flush_waiters, target);
        drop(log);
        let mut stats = self.stats.get();
        stats.flushes += 1;
        self.stats.set(stats);
        Ok(())
    }
}
