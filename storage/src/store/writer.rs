//! The writer task: hands the CommitLog's pending chunks to the kernel in order, up to
//! [`WRITES_IN_FLIGHT_MAX`] at once; as each completes, in order, it moves the written
//! position, publishes the chunk's ConsumeQueue entries (through `visibility.rs`) and
//! answers the `async` appends it covers. A chunk `sync` appends wait on, with
//! everything before it durable and no `async` traffic about, goes out as one O_DSYNC
//! write that answers them itself (`flusher.rs`, `Inner::durable_group_commit`). After a
//! failed write it fails everything unwritten and zeros what the abandoned writes may
//! have left past `written` before it writes again.
//!
//! Owns [`WriterState`]: how busy the writer is (written only here; a truncate waits
//! until it is idle) and its wake-up (anyone may wake it: new appends, the preparer's
//! progress, a truncate's end, `close`). Writes to the shared CommitLog (written
//! position, pending chunks and bytes, write waiters, and the flushed position of an
//! O_DSYNC group) and to the queues (publishing, or abandoning what was not written).
//!
//! Invariants: writes complete in CommitLog order (`written` never passes a write that
//! has not completed, nor one that failed); no write starts in a range the preparer is
//! zeroing; a segment is created only with nothing in flight, so a creation failure fails
//! exactly the appends from that chunk on. No `RefCell` borrow is held across an
//! `.await`.
//!
//! Runs as one task on the store's executor, from the open to `close` (which waits for
//! it to drain) or the last handle's drop. Deliberately not here: fdatasyncs (the
//! flusher), zeros ahead of the data (the preparer), timing out `sync` appends (the
//! sweeper).

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

use glommio::Task;

use crate::commitlog::{CommitLog, Dispatch};
use crate::disk::{Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::limits::*;
use crate::offset::PhysicalOffset;
use rockshard_local::{Notified, Notify};

use super::repeated::WRITE_FAILED;
use super::Inner;

/// The writer's state others see.
#[derive(Default)]
pub(super) struct WriterState {
    /// Wakes the writer: new appends, the preparer's progress, a truncate's end, close.
    pub(super) wake: Notify,
    /// Writes in flight plus the writer's own awaits (creating a segment, zeroing).
    busy: Cell<usize>,
    /// The writer went idle (nothing pending, nothing in flight).
    idle: Notify,
}

impl WriterState {
    /// Whether a write is in flight or the writer awaits its own I/O.
    pub(super) fn is_busy(&self) -> bool {
        self.busy.get() != 0
    }

    /// Resolves when the writer next goes idle (at once if it did since the last call).
    pub(super) fn went_idle(&self) -> Notified<'_> {
        self.idle.notified()
    }
}

/// A chunk handed to the kernel, not yet known written.
struct InFlightWrite {
    start: PhysicalOffset,
    len: usize,
    dispatch: Vec<Dispatch>,
    task: Task<Result<()>>,
    /// The write makes its own range durable (see `Inner::durable_group_commit`).
    durable: bool,
}

/// What stops the writer from handing the next pending chunk to the kernel now.
enum Blocked {
    /// Nothing pending.
    Idle,
    /// The chunk's segment must be created first: done only with nothing in flight, so
    /// a creation failure fails exactly the appends from that chunk on.
    NeedsSegment,
    /// The chunk overlaps the range the preparer is zeroing.
    Preparing,
}

/// The writer task's own state between its steps.
struct Writer<D: Disk> {
    inner: Rc<Inner<D>>,
    in_flight: VecDeque<InFlightWrite>,
    /// Bytes past `written` that abandoned writes may have reached, still to be zeroed.
    abandoned: Option<(PhysicalOffset, PhysicalOffset)>,
    truncations_seen: u64,
}

pub(super) async fn writer_loop<D: Disk>(inner: Rc<Inner<D>>) {
    let truncations_seen = inner.truncation.count();
    let mut writer = Writer { inner, in_flight: VecDeque::new(), abandoned: None, truncations_seen };
    writer.run().await;
}

impl<D: Disk> Writer<D> {
    async fn run(&mut self) {
        loop {
            if self.truncations_seen != self.inner.truncation.count() {
                // A truncate zeroed everything from its cut (never above `written`) to the
                // end of the segment and deleted the segments after it: abandoned bytes too.
                self.truncations_seen = self.inner.truncation.count();
                self.abandoned = None;
            }
            let blocked = self.issue().await;
            self.inner.writer.busy.set(self.in_flight.len());
            if self.in_flight.is_empty() {
                // A truncate waits for this.
                self.inner.writer.idle.notify();
                match blocked {
                    Some(Blocked::Idle) if self.inner.closing.get() => {
                        if self.abandoned.is_some() {
                            tracing::error!(
                                "closing with abandoned CommitLog bytes not zeroed; recovery may find them"
                            );
                        }
                        return;
                    }
                    // New appends and the preparer's progress both wake the writer.
                    _ => self.inner.writer.wake.notified().await,
                }
                continue;
            }
            let Some(result) = self.wait_front(&blocked).await else { continue };
            self.complete_front(result).await;
        }
    }

    /// Hands chunks to the kernel while there is room; says what stopped it (`None`:
    /// the in-flight limit).
    async fn issue(&mut self) -> Option<Blocked> {
        loop {
            let inner = &self.inner;
            inner.writer.busy.set(self.in_flight.len());
            if self.in_flight.len() >= WRITES_IN_FLIGHT_MAX {
                return None;
            }
            if inner.truncation.running() && inner.log.borrow().pending.is_empty() {
                // Drained for a truncate: touch nothing until it is done.
                return Some(Blocked::Idle);
            }
            if let Some(blocked) = self.zero_abandoned().await {
                return Some(blocked);
            }
            let inner = &self.inner;
            let peek = inner.log.borrow().pending.front().map(|c| (c.start, c.end()));
            let Some((start, end)) = peek else { return Some(Blocked::Idle) };
            if inner.log.borrow().overlaps_preparing(start, end) {
                return Some(Blocked::Preparing);
            }
            let file = match inner.open_segment(start) {
                Some(f) => f,
                None if !self.in_flight.is_empty() => return Some(Blocked::NeedsSegment),
                None => {
                    inner.writer.busy.set(1);
                    let created = inner.create_segment(start).await;
                    inner.writer.busy.set(0);
                    if let Err(e) = created {
                        inner.on_write_failed(e);
                    }
                    // Look again: the pending chunks may have changed meanwhile.
                    continue;
                }
            };
            self.start_write(file);
        }
    }

    /// Before any new write, with nothing in flight: zeros what abandoned writes may
    /// have left past `written`, as new records will stop short of where abandoned ones
    /// may lie, and recovery must find zeros there, not them. `Some`: the writer must
    /// stop (the range is being prepared, or zeroing failed).
    async fn zero_abandoned(&mut self) -> Option<Blocked> {
        let (Some((from, to)), true) = (self.abandoned, self.in_flight.is_empty()) else { return None };
        let inner = &self.inner;
        if inner.log.borrow().overlaps_preparing(from, to) {
            return Some(Blocked::Preparing);
        }
        inner.writer.busy.set(1);
        let zeroed = inner.zero_log_range(from, to).await;
        inner.writer.busy.set(0);
        if let Err(e) = zeroed {
            // The bytes are still there: fail what waits, retry at the next append.
            inner.on_write_failed(e);
            return Some(Blocked::Idle);
        }
        self.abandoned = None;
        None
    }

    /// Hands the next pending chunk, whose segment is `file`, to the kernel.
    fn start_write(&mut self, file: Rc<D::File>) {
        let inner = &self.inner;
        // Split only with nothing in flight: the two halves then overlap the copy
        // into the page cache with the executor's work (see WRITE_SPLIT_MIN_BYTES).
        // Not while `sync` appends wait: the flusher would start an fdatasync after
        // the first half, and the second half's appends would wait for the next one.
        // That pipelines the writers in two groups, which pays only while an
        // fdatasync is shorter than the executor's work on a batch; on a disk with
        // slow flushes it halves the records each one serves.
        let split = self.in_flight.is_empty() && inner.log.borrow().flush_waiters.is_empty();
        let chunk = inner.log.borrow_mut().pop_write(split).expect("peeked above");
        let pos = chunk.start.0 - inner.log.borrow().segment_base(chunk.start);
        let (start, len) = (chunk.start, chunk.data.len());
        // A write `sync` appends wait on takes the shortest way; others may be handed
        // to another thread so the executor keeps encoding (DiskFile docs).
        let background = inner.log.borrow().flush_waiters.is_empty();
        let durable = !background && inner.durable_group_commit(start);
        let data = chunk.data;
        let task = glommio::spawn_local(async move {
            let (op, written) = if durable {
                ("O_DSYNC write", file.write_at_durable(data, pos).await)
            } else if background {
                ("write", file.write_at_in_background(data, pos).await)
            } else {
                ("write", file.write_at(data, pos).await)
            };
            written.map_err(|e| StorageError::io(op, file.path(), start.0, e))
        });
        self.in_flight.push_back(InFlightWrite { start, len, dispatch: chunk.dispatch, task, durable });
    }

    /// Waits for the oldest write; with room for more, also for new appends (`None`:
    /// woken before the write completed).
    async fn wait_front(&mut self, blocked: &Option<Blocked>) -> Option<Result<()>> {
        let inner = &self.inner;
        let front = self.in_flight.front_mut().expect("the caller saw a write in flight");
        if blocked.is_some() && !matches!(blocked, Some(Blocked::NeedsSegment)) {
            let finished = async { Some((&mut front.task).await) };
            let woken = async {
                inner.writer.wake.notified().await;
                None
            };
            futures_lite::future::or(finished, woken).await
        } else {
            Some((&mut front.task).await)
        }
    }

    /// Takes the oldest write, which completed with `result`.
    async fn complete_front(&mut self, result: Result<()>) {
        let done = self.in_flight.pop_front().expect("front exists");
        self.inner.writer.busy.set(self.in_flight.len() + 1);
        match result {
            Ok(()) => self.inner.on_written(done.start, done.len, done.dispatch, done.durable),
            Err(e) => {
                // A failed `write_at_durable` needs no fence, though its sync half may be
                // what failed: everything before it was durable when it was issued, and
                // its own range is abandoned like any failed write's (zeroed before the
                // next write, never answered), so no acknowledged byte depends on pages
                // the failure may have left clean but unwritten.
                //
                // Nothing past the failure may count as written, even writes that
                // succeed: wait for them, then abandon all of it.
                let mut issued_end = done.start.plus(done.len as u64);
                for w in self.in_flight.drain(..) {
                    let _ = w.task.await;
                    issued_end = issued_end.max(w.start.plus(w.len as u64));
                }
                self.inner.on_write_failed(e);
                let written = self.inner.log.borrow().pos.written();
                if issued_end > written {
                    self.abandoned = Some((written, issued_end));
                }
            }
        }
        self.inner.writer.busy.set(self.in_flight.len());
    }
}

impl<D: Disk> Inner<D> {
    /// Writes zeros over `[from, to)` of the CommitLog (through the page cache, like
    /// the data they replace), segment by segment.
    async fn zero_log_range(&self, from: PhysicalOffset, to: PhysicalOffset) -> Result<()> {
        /// Zeros per write: the range is at most a few chunks long.
        const ZEROS_PER_WRITE_BYTES: u64 = 1 << 20;
        let mut at = from;
        while at < to {
            let (base, file) = {
                let log = self.log.borrow();
                let base = log.segment_base(at);
                (base, log.segments.get(&base).cloned())
            };
            let segment_end = base + self.config.segment_size_bytes;
            let n = (to.0.min(segment_end) - at.0).min(ZEROS_PER_WRITE_BYTES);
            // A segment never opened holds nothing to zero.
            if let Some(file) = file {
                file.write_at(vec![0; n as usize], at.0 - base)
                    .await
                    .map_err(|e| StorageError::io("write", file.path(), at.0, e))?;
            }
            at = at.plus(n);
        }
        Ok(())
    }

    /// A write of `[start, start + len)` completed; `durable`: it made its range durable
    /// itself (see [`Self::durable_group_commit`]).
    fn on_written(&self, start: PhysicalOffset, len: usize, dispatch: Vec<Dispatch>, durable: bool) {
        let end = start.plus(len as u64);
        let (wake_flusher, flushed) = {
            let mut log = self.log.borrow_mut();
            assert_eq!(log.pos.written(), start, "writes complete in order");
            log.pos.write_to(end);
            log.pending_bytes -= len;
            CommitLog::<D::File>::complete_upto(&mut log.write_waiters, end);
            // Everything before `start` was durable when the write was issued (and
            // `flushed` never moves back but in a truncate, which drains writes first).
            // A store fenced meanwhile answers no one: its waiters failed when it was.
            let flushed = durable && log.fenced.is_none() && log.pos.flushed() == start;
            if flushed {
                log.pos.flush_to(end);
                self.flusher.note_group_commit(len as u64);
            }
            let flush_due = log.flush_waiters.front().is_some_and(|w| w.end <= end)
                || end.0 - log.pos.flushed().0 >= self.config.flush_dirty_bytes;
            (flush_due && !flushed, flushed)
        };
        self.count(|s| {
            s.writes += 1;
            if flushed {
                s.flushes += 1;
            }
        });
        let tail_full = self.publish(&dispatch);
        if flushed {
            // After the records are published, as a flush that completes later would be.
            CommitLog::<D::File>::complete_upto(&mut self.log.borrow_mut().flush_waiters, end);
        }
        if wake_flusher {
            self.flusher.wake.notify();
        }
        if tail_full {
            self.maintenance.wake.notify();
        }
    }

    /// A write failed: abandons everything not yet written (pending chunks, unpublished
    /// queue offsets) and fails the appends waiting past `written`.
    fn on_write_failed(&self, err: StorageError) {
        if let Some(held) = self.repeated.write_failed.allow(Instant::now()) {
            tracing::error!(error = %err, "{WRITE_FAILED}{held}");
        }
        let mut log = self.log.borrow_mut();
        log.pending.clear();
        log.pending_bytes = 0;
        log.pos.abandon_unwritten();
        let written = log.pos.written();
        CommitLog::<D::File>::fail_after(&mut log.write_waiters, written, &err);
        CommitLog::<D::File>::fail_after(&mut log.flush_waiters, written, &err);
        for q in &self.queues.borrow().list {
            q.borrow_mut().abandon_unpublished();
        }
    }
}

#[cfg(test)]
mod tests {
    use rockshard_net::stored::{self, RecordFields};

    use crate::config::StoreConfig;
    use crate::error::{Result, StorageError};
    use crate::offset::QueueOffset;
    use crate::store::{AppendResult, Store};
    use crate::testing::SimDisk;
    use crate::topics::{FlushMode, TopicConfig};

    fn record<'a>(topic: &'a str, body: &'a [u8]) -> RecordFields<'a> {
        let host: std::net::SocketAddr = "127.0.0.1:10911".parse().unwrap();
        RecordFields {
            topic: topic.as_bytes(),
            queue_id: 0,
            flag: 0,
            sys_flag: 0,
            born_timestamp_ms: 1_700_000_000_000,
            born_host: host,
            store_timestamp_ms: 0,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            properties: b"",
        }
    }

    /// `count` sync appends made in one tick (so one group commit), awaited together.
    async fn group(store: &Store<SimDisk>, first: u8, count: u8) -> Vec<Result<AppendResult>> {
        let waits: Vec<_> =
            (first..first + count).map(|i| store.append(&[record("S", &[i; 300])], true).unwrap()).collect();
        let mut out = Vec::new();
        for w in waits {
            out.push(w.await);
        }
        out
    }

    async fn bodies(store: &Store<SimDisk>) -> Vec<u8> {
        let got = store.get_messages("S", 0, QueueOffset(0), 1000, usize::MAX, None).await.unwrap();
        got.messages
            .iter()
            .map(|m| match stored::decode(m).unwrap() {
                Some(stored::Record::Message(r)) => r.body[0],
                other => panic!("not a message: {other:?}"),
            })
            .collect()
    }

    /// When a group commit's write fails, the whole group fails, nothing of it is served
    /// or recovered, its queue offsets are reused, and the next group is written and
    /// synced as usual.
    #[test]
    fn a_failed_group_commit_write_fails_its_group_and_the_next_group_succeeds() {
        glommio::LocalExecutorBuilder::default().make().unwrap().run(async {
            let disk = SimDisk::new();
            let mut config = StoreConfig::new("/sim/group-write");
            config.segment_size_bytes = 1 << 20;
            let store = Store::open_on(disk.clone(), config.clone()).await.unwrap();
            store.upsert_topic(TopicConfig::new("S", 1, FlushMode::Sync)).await.unwrap();
            assert!(group(&store, 0, 8).await.iter().all(|r| r.is_ok()));
            disk.fail_next_writes(1);
            for r in group(&store, 8, 8).await {
                assert!(matches!(r, Err(StorageError::Io { op: "O_DSYNC write", .. })), "{r:?}");
            }
            let next = group(&store, 16, 8).await;
            let offsets: Vec<u64> = next.iter().map(|r| r.as_ref().unwrap().records[0].queue_offset.0).collect();
            assert_eq!(offsets, (8..16).collect::<Vec<_>>(), "the failed group's offsets are reused");
            let expected: Vec<u8> = (0..8).chain(16..24).collect();
            assert_eq!(bodies(&store).await, expected);

            drop(store);
            disk.power_loss();
            let store = Store::open_on(disk.clone(), config).await.unwrap();
            assert_eq!(bodies(&store).await, expected, "every acknowledged record survives, nothing else");
        });
    }
}
