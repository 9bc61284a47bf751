//! The preparer task: while `sync` appends arrive in small group commits, writes zeros
//! ahead of the appended end (so the fdatasyncs of group commits have no allocation
//! state to commit) and creates the next segment before it is needed (see
//! `commitlog.rs` and `DiskFile::prepare_range`).
//!
//! Owns [`PreparerState`]: its wake-up (the append path wakes it when a `sync` append
//! comes close to the prepared end) and the notification that a step finished (a
//! truncate waits for one under way). Writes to the shared CommitLog only what it
//! prepares: `prepared_to` and the range `preparing`. Reads the append traffic
//! (`append.rs`) and the size of group commits (`flusher.rs`) to decide whether to work.
//!
//! Invariants: zeros never land on bytes any append has reached: a prepared range lies
//! past the CommitLog's high-water mark, and it is marked `preparing` in the same borrow
//! that chose it, so no write starts in it unnoticed (the writer waits). Idle while the
//! store closes, while a truncate runs, and without steady `sync` traffic.
//!
//! Runs as one task on the store's executor. Deliberately not here: the segment
//! creation itself (`segments.rs`), and any write of data.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::disk::{Disk, DiskFile};
use crate::limits::*;
use crate::offset::PhysicalOffset;
use rockshard_local::{Notified, Notify};

use super::repeated::{BLOCKS_AHEAD_FAILED, SEGMENT_AHEAD_FAILED};
use super::Inner;

/// The preparer's state others see.
#[derive(Default)]
pub(super) struct PreparerState {
    /// Wakes the preparer: a `sync` append came close to the prepared end.
    pub(super) wake: Notify,
    /// The preparer finished a step.
    stepped: Notify,
}

impl PreparerState {
    /// Resolves when the preparer next finishes a step (at once if it did since the last
    /// call).
    pub(super) fn stepped(&self) -> Notified<'_> {
        self.stepped.notified()
    }
}

/// The preparer's next piece of work.
enum PrepareStep<F> {
    Idle,
    /// Create the segment at this base (the one after the last in use) ahead of need.
    CreateNext(u64),
    /// Write zeros into `[from, to)` of `file`, the segment starting at `base`.
    Zero {
        file: Rc<F>,
        base: u64,
        from: PhysicalOffset,
        to: PhysicalOffset,
    },
}

pub(super) async fn preparer_loop<D: Disk>(inner: Rc<Inner<D>>) {
    /// Without a wake-up, look again this often (a wake-up normally comes first).
    const IDLE_CHECK: Duration = Duration::from_millis(100);
    let retry = Duration::from_millis(PREPARE_RETRY_MS);
    loop {
        let step = inner.plan_prepare();
        match step {
            PrepareStep::Idle => {
                futures_lite::future::or(inner.preparer.wake.notified(), glommio::timer::sleep(IDLE_CHECK)).await;
            }
            PrepareStep::CreateNext(base) => {
                if let Err(e) = inner.create_next_segment(base).await {
                    if let Some(held) = inner.repeated.segment_ahead_failed.allow(Instant::now()) {
                        tracing::warn!(error = %e, "{SEGMENT_AHEAD_FAILED}{held}");
                    }
                    glommio::timer::sleep(retry).await;
                }
            }
            PrepareStep::Zero { file, base, from, to } => {
                let result = file.prepare_range(from.0 - base, to.0 - from.0).await;
                {
                    let mut log = inner.log.borrow_mut();
                    log.preparing = None;
                    if result.is_ok() {
                        log.prepared_to = log.prepared_to.max(to);
                    }
                }
                inner.writer.wake.notify();
                inner.preparer.stepped.notify();
                if let Err(e) = result {
                    if let Some(held) = inner.repeated.blocks_ahead_failed.allow(Instant::now()) {
                        tracing::warn!(error = %e, from = from.0, to = to.0, "{BLOCKS_AHEAD_FAILED}{held}");
                    }
                    glommio::timer::sleep(retry).await;
                }
            }
        }
    }
}

impl<D: Disk> Inner<D> {
    /// Decides the preparer's next step and, for a zeroing step, marks its range as
    /// being prepared in the same borrow, so no write can start in it unnoticed.
    fn plan_prepare(&self) -> PrepareStep<D::File> {
        let sync_traffic = self.traffic.steady_sync();
        let small_groups = self.flusher.small_groups();
        if self.closing.get() || self.truncation.running() || !sync_traffic || !small_groups {
            return PrepareStep::Idle;
        }
        let mut log = self.log.borrow_mut();
        if log.fenced.is_some() || log.preparing.is_some() {
            return PrepareStep::Idle;
        }
        let size = log.segment_size;
        // Small (test) segments take small steps, so they are prepared too.
        let step_min = PREPARE_STEP_MIN_BYTES.min(size / 4).max(1);
        if log.prepared_to < log.high_water {
            // Behind the data (or just started): skip a little ahead rather than race the
            // writer for the range it is about to write.
            let skip_to = log.high_water.0 + step_min;
            let base = log.segment_base(PhysicalOffset(skip_to));
            log.prepared_to =
                PhysicalOffset(base + (skip_to - base).div_ceil(PREPARE_ALIGN_BYTES) * PREPARE_ALIGN_BYTES);
        }
        let from = log.prepared_to;
        let appended = log.pos.appended().0;
        if from.0 >= appended + PREPARE_AHEAD_BYTES {
            return PrepareStep::Idle;
        }
        // Small steps while close to the data (the writer may reach the range soon and
        // would wait for it), large ones once well ahead (each step costs an fdatasync).
        let step =
            ((from.0 - appended.min(from.0)) / 2).clamp(step_min, PREPARE_STEP_BYTES.max(step_min)).min(size / 2);
        let base = log.segment_base(from);
        let file = match (log.segments.get(&base), &log.next_segment) {
            (Some(f), _) => f.clone(),
            (None, Some((b, f))) if *b == base => f.clone(),
            (None, _) => {
                // Only the segment right after the last in use is created ahead.
                let next = log.segments.keys().next_back().map_or(log.segment_base(log.pos.appended()), |b| b + size);
                return if base == next && log.next_segment.is_none() {
                    PrepareStep::CreateNext(base)
                } else {
                    PrepareStep::Idle
                };
            }
        };
        // End on a page boundary of the file (or at the segment's end), so the next step
        // starts where this one's last whole block ended and no block between is skipped.
        let mut to = (from.0 + step).min(base + size);
        if to < base + size {
            to = base + (to - base) / PREPARE_ALIGN_BYTES * PREPARE_ALIGN_BYTES;
        }
        if to <= from.0 {
            // Less than a page left before a boundary: nothing to prepare in it.
            log.prepared_to = PhysicalOffset(from.0 + step);
            return PrepareStep::Idle;
        }
        let to = PhysicalOffset(to);
        assert!(from >= log.high_water && from < to, "a prepared range lies past all data");
        log.preparing = Some((from, to));
        PrepareStep::Zero { file, base, from, to }
    }
}
