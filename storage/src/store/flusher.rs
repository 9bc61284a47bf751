//! Durability: the flusher task and group commit, the sweeper task, the choice of an
//! O_DSYNC write for a group commit, and the fence after a failed fdatasync.
//!
//! - flusher: fdatasyncs the written range when a `sync` append waits, when too many
//!   bytes are dirty (the writer wakes it), or every flush interval; answers `sync`
//!   appends. Appends that arrive while an fdatasync runs are covered by the next one
//!   (group commit), and their writes run while it does.
//! - sweeper: answers `sync` appends that waited past the flush timeout with an error.
//!
//! Owns [`FlusherState`]: its wake-up, the lock that lets one fdatasync pass run at a
//! time (a truncate takes it too), and the moving mean of group-commit sizes, which
//! only group commits update (an fdatasync here, an O_DSYNC write completing in the
//! writer) and the preparer reads ([`FlusherState::small_groups`]). Writes to the
//! shared CommitLog: the flushed position, the flush waiters, the fence.
//!
//! Invariants: flushed ≤ written, and a `sync` append is answered only once an
//! fdatasync (or its own O_DSYNC write) covering it completed; never success after a
//! timeout. After a failed fdatasync the store is fenced: the kernel may have dropped
//! dirty pages, so nothing unflushed can be trusted until a reopen's recovery. No
//! fdatasync starts while a truncate runs. No `RefCell` borrow is held across an
//! `.await`.
//!
//! Runs as two tasks on the store's executor, and in `close` and `sync_now`.
//! Deliberately not here: writing (the writer) and the checkpoint (maintenance).

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::sync::{Permit, Semaphore};

use crate::commitlog::CommitLog;
use crate::disk::{Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::limits::*;
use crate::offset::PhysicalOffset;
use rockshard_local::Notify;

use super::repeated::FLUSH_FAILED;
use super::Inner;

/// The flusher's state others see.
pub(super) struct FlusherState {
    /// Wakes the flusher: a `sync` append's write completed, too many bytes are dirty,
    /// a truncate ended.
    pub(super) wake: Notify,
    /// One fdatasync pass at a time, and none while a truncate cuts the log.
    lock: Semaphore,
    /// Moving mean of the bytes each group commit made durable (PREPARE_GROUP_MAX_BYTES).
    group_bytes_mean: Cell<u64>,
}

impl FlusherState {
    pub(super) fn new() -> Self {
        FlusherState { wake: Notify::default(), lock: Semaphore::new(1), group_bytes_mean: Cell::new(0) }
    }

    /// Waits until no fdatasync pass runs, and keeps new ones out while the permit lives.
    pub(super) async fn exclusive(&self) -> Result<Permit<'_>> {
        self.lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)
    }

    /// Counts a group commit of `bytes` into the moving mean the preparer goes by.
    pub(super) fn note_group_commit(&self, bytes: u64) {
        let mean = self.group_bytes_mean.get();
        self.group_bytes_mean.set(mean - mean / 8 + bytes / 8);
    }

    /// Whether group commits are small on average: the preparer's zeros ahead pay only
    /// then (PREPARE_GROUP_MAX_BYTES).
    pub(super) fn small_groups(&self) -> bool {
        self.group_bytes_mean.get() < PREPARE_GROUP_MAX_BYTES
    }
}

pub(super) async fn flusher_loop<D: Disk>(inner: Rc<Inner<D>>) {
    let interval = Duration::from_millis(inner.config.flush_interval_ms);
    loop {
        if !inner.flush_is_urgent() {
            futures_lite::future::or(inner.flusher.wake.notified(), glommio::timer::sleep(interval)).await;
        }
        if inner.truncation.running() {
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
        log.fenced.is_none() && log.pos.flushed() == start && self.traffic.unflushed_quiet()
    }

    fn flush_is_urgent(&self) -> bool {
        let log = self.log.borrow();
        !self.truncation.running()
            && log.fenced.is_none()
            && log.flush_waiters.front().is_some_and(|w| w.end <= log.pos.written())
    }

    /// fdatasyncs everything written so far and answers the `sync` appends it covers.
    pub(super) async fn flush_written(&self) -> Result<()> {
        let _one = self.flusher.exclusive().await?;
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
                self.flusher.note_group_commit(target.0 - log.pos.flushed().0);
            }
            log.pos.flush_to(target);
        }
        CommitLog::<D::File>::complete_upto(&mut log.flush_waiters, target);
        drop(log);
        self.count(|s| s.flushes += 1);
        Ok(())
    }
}
