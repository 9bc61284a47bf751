//! Delayed messages as operations of one shard: RocketMQ's 18 delay levels (1 s … 2 h),
//! parked on `SCHEDULE_TOPIC_XXXX` and moved to their real topic when due. The consumer
//! retry schedule (CONSUMER_SEND_MSG_BACK) travels the same path.
//!
//! How a delayed message travels: [`Shard::append`] parks a message whose DELAY property
//! is above 0 on SCHEDULE_TOPIC_XXXX, queue `level - 1`, adding REAL_TOPIC / REAL_QID.
//! The store writes the delivery time (store time + the level's delay) into the tag-hash
//! slot of that ConsumeQueue entry (`state::delay_rules::tags_code_of`). A pass
//! ([`Shard::deliver_due`]) reads each level's queue in order from the level's delivered
//! offset; a message whose time has come is appended again, through [`Shard::append`], to
//! REAL_TOPIC / REAL_QID with DELAY removed — REAL_TOPIC / REAL_QID stay, as RocketMQ's
//! `ScheduleMessageService` leaves them — and the level's offset moves past it.
//!
//! Invariants:
//! - A level's offset moves past a message only once its re-append is confirmed as its
//!   target topic's flush mode promises (written for `async`, fdatasynced for `sync`), or
//!   once the message is found undeliverable for good (no REAL_TOPIC, a record the store
//!   refuses as such). A failure leaves the offset where it was, so the message is tried
//!   again: delivery is at least once, never at most once.
//! - `delayOffset.json` never holds an offset whose re-appended record is not yet
//!   covered by a CommitLog flush (the rule is `state::delay`'s): periodic saves save the
//!   progress the flusher has caught up with; [`Scheduler::persist`] at shutdown forces
//!   a flush first. A crash, even a power loss, re-delivers; it never loses.
//! - Within one level delivery times ascend with queue offsets (one delay, ascending
//!   store times), so the first undelivered entry is the next one due. Should the wall
//!   clock step back, a later entry may be due before the head; it waits behind it and is
//!   delivered late, never early (RocketMQ behaves the same).
//!
//! Threading: the progress lives in the shard and is touched only on the shard's
//! executor, by the delivery task (`tasks::schedule`, which decides when a pass runs and
//! when it saves), by a follower adopting its leader's progress, and by
//! [`Scheduler::persist`] at shutdown; a semaphore lets one pass or save work at a time.
//! The progress is borrowed only inside synchronous closures, never across the reads
//! and appends of a pass.
//!
//! Deliberately not here: RocketMQ 5's arbitrary-time timer messages (`TIMER_*`
//! properties, the timer wheel); changing the 18 levels (RocketMQ's default
//! `messageDelayLevel`, fixed in `state::delay_rules::DELAY_LEVELS_MS`); the progress table and the
//! parked-message rules (`state::delay`); answering GET_ALL_DELAY_OFFSET (its handler
//! asks [`Shard::delay_offsets_json`]).

use crate::broker::state::delay_rules::SCHEDULE_TOPIC;
use bytes::Bytes;
use glommio::sync::Semaphore;
use rockshard_net::stored::{self, Record};
use rockshard_storage::{QueueOffset, StorageError, Store};
use tracing::{error, warn};

use super::append::{Outgoing, Stored};
use super::Shard;
use crate::broker::now_ms;
use crate::broker::state::delay::{
    delivery_properties, due_ms, real_destination, to_json, DelayOffsetFile, DelayProgress, Level, DELAY_OFFSET_FILE,
    LEVELS,
};
use crate::broker::state::StateCell;
use crate::limits::{
    SCHEDULE_BATCH_BYTES_MAX, SCHEDULE_BATCH_MESSAGES_MAX, SCHEDULE_LEVEL_BATCHES_PER_PASS_MAX,
    SCHEDULE_RETRY_BACKOFF_MS,
};
use crate::{Error, Result};

/// How the delayed-message task stores a message: [`Shard::append`] in the broker, a
/// plain store append in tests of this module.
pub type Sink<'a> = &'a dyn Fn(&Outgoing<'_>) -> Result<Stored>;

/// What one pass over the levels found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    /// Messages re-appended (confirmed) in this pass.
    pub delivered: usize,
    /// The earliest time a level has something to do again, if one waits on a time.
    pub wake_at_ms: Option<i64>,
    /// A level stopped with due messages left (batch bound or shutdown): pass again now.
    pub more: bool,
}

impl Pass {
    fn wake_at(&mut self, at_ms: i64) {
        self.wake_at_ms = Some(self.wake_at_ms.map_or(at_ms, |t| t.min(at_ms)));
    }
}

/// Errors that will not go away by trying again: the store refuses this record as such.
fn permanent(e: &Error) -> bool {
    matches!(
        e,
        Error::Storage(
            StorageError::InvalidArgument(_) | StorageError::MessageTooLarge { .. } | StorageError::Message(_)
        )
    )
}

enum BatchEnd {
    /// Every record of the batch was delivered (or dropped as undeliverable).
    Drained,
    /// The record at the level's offset is due at this time.
    NotDue(i64),
    /// A re-append failed; try again after a back-off.
    Failed,
}

/// The delayed-message state of one shard, and the passes that deliver it.
pub struct Scheduler {
    progress: StateCell<DelayProgress>,
    /// One delivery pass or save at a time (the task's and the shutdown's).
    busy: Semaphore,
}

impl Scheduler {
    /// Loads each level's delivered offset. An offset past the end of its queue (the
    /// queue lost a torn tail at recovery) is pulled back to the end, so messages parked
    /// from now on are not skipped.
    pub async fn load(store: &Store) -> Result<Scheduler> {
        let mut saved = [0u64; LEVELS];
        if let Some(bytes) = store.load_config_file(DELAY_OFFSET_FILE).await? {
            let file = DelayOffsetFile::from_json(&bytes)
                .map_err(|e| Error::Config { key: format!("config/{DELAY_OFFSET_FILE}"), detail: e.to_string() })?;
            let ignored;
            (saved, ignored) = file.offsets();
            for (level, offset) in ignored {
                warn!(level, offset, "{DELAY_OFFSET_FILE}: ignoring a delay level outside 1..={LEVELS}");
            }
        }
        let mut ends = [0u64; LEVELS];
        for (i, end) in ends.iter_mut().enumerate() {
            *end = store.queue_offsets(SCHEDULE_TOPIC, i as i32).map_or(0, |(_, max)| max.0);
            if saved[i] > *end {
                warn!(
                    level = i + 1,
                    saved = saved[i],
                    end = *end,
                    "delay queue ends before its saved offset; resuming at its end"
                );
            }
        }
        Ok(Scheduler { progress: StateCell::new(DelayProgress::resume(saved, ends)), busy: Semaphore::new(1) })
    }

    /// Each level's next undelivered offset (index 0 = level 1).
    pub fn offsets(&self) -> [u64; LEVELS] {
        self.progress.read(DelayProgress::offsets)
    }

    /// Takes a replicated group leader's progress (a follower applying its snapshot), so
    /// that after a failover the new leader resumes where the old one was.
    pub fn adopt(&self, offsets: [u64; LEVELS]) {
        self.progress.write(|p| p.adopt(offsets));
    }

    /// The progress in `delayOffset.json`'s form, for GET_ALL_DELAY_OFFSET (45).
    pub fn offsets_json(&self) -> Vec<u8> {
        to_json(&self.offsets())
    }

    /// Saves the progress made so far, flushing the CommitLog first if the latest
    /// re-appends are not yet durable (shutdown calls this just before closing the store).
    pub async fn persist(&self, store: &Store) -> Result<()> {
        let _one = self.busy.acquire_permit(1).await.map_err(|e| Error::Usage(format!("delay progress: {e}")))?;
        let Some((offsets, end)) = self.progress.read(DelayProgress::unsaved) else { return Ok(()) };
        if store.commitlog_positions().1 .0 < end {
            store.sync_now().await?;
        }
        self.save(store, offsets).await
    }

    async fn save(&self, store: &Store, offsets: [u64; LEVELS]) -> Result<()> {
        store.save_config_file(DELAY_OFFSET_FILE, to_json(&offsets)).await?;
        self.progress.write(|p| p.saved(offsets));
        Ok(())
    }

    /// Saves whatever progress the CommitLog flush already covers, without forcing one.
    async fn save_flushed(&self, store: &Store) -> Result<()> {
        let flushed = store.commitlog_positions().1 .0;
        match self.progress.write(|p| p.to_save(flushed)) {
            Some(offsets) => self.save(store, offsets).await,
            None => Ok(()),
        }
    }

    /// One pass over the 18 levels at time `now_ms`: delivers what is due through `sink`,
    /// then, if `save` is set, saves the progress the flush covers. `stop` is asked between
    /// batches so shutdown does not wait for a long backlog.
    pub async fn run_once(
        &self,
        store: &Store,
        now_ms: i64,
        stop: &dyn Fn() -> bool,
        sink: Sink<'_>,
        save: bool,
    ) -> Pass {
        let Ok(_one) = self.busy.acquire_permit(1).await else { return Pass::default() };
        let mut pass = Pass::default();
        for level in 0..LEVELS {
            self.deliver_level(store, level, now_ms, stop, sink, &mut pass).await;
        }
        if save {
            if let Err(e) = self.save_flushed(store).await {
                warn!(error = %e, "saving delay progress failed; trying again later");
            }
        }
        pass
    }

    async fn deliver_level(
        &self,
        store: &Store,
        level: usize,
        now_ms: i64,
        stop: &dyn Fn() -> bool,
        sink: Sink<'_>,
        pass: &mut Pass,
    ) {
        let queue_id = level as i32;
        for _ in 0..SCHEDULE_LEVEL_BATCHES_PER_PASS_MAX {
            if stop() {
                return;
            }
            let Some((min, max)) = store.queue_offsets(SCHEDULE_TOPIC, queue_id) else { return };
            let Level { next, not_before_ms } = self.progress.read(|p| p.level(level));
            // Retention may have removed the head of the queue; nothing can be read there.
            let next = next.clamp(min.0, max.0);
            self.progress.write(|p| p.advance(level, next));
            if next == max.0 {
                return;
            }
            if let Some(at) = not_before_ms.filter(|at| *at > now_ms) {
                pass.wake_at(at);
                return;
            }
            let got = match store
                .get_messages(
                    SCHEDULE_TOPIC,
                    queue_id,
                    QueueOffset(next),
                    SCHEDULE_BATCH_MESSAGES_MAX,
                    SCHEDULE_BATCH_BYTES_MAX,
                    None,
                )
                .await
            {
                Ok(got) => got,
                Err(e) => {
                    warn!(level = level + 1, offset = next, error = %e, "reading the delay queue failed");
                    self.back_off(level, now_ms, pass);
                    return;
                }
            };
            if got.messages.is_empty() {
                // Entries whose records retention removed: step past them.
                if got.next_begin_offset.0 > next {
                    self.progress.write(|p| p.advance(level, got.next_begin_offset.0));
                    continue;
                }
                return;
            }
            match self.deliver_batch(level, &got.messages, now_ms, sink, pass).await {
                BatchEnd::Drained => continue,
                BatchEnd::NotDue(at) => {
                    self.progress.write(|p| p.wait_until(level, at));
                    pass.wake_at(at);
                    return;
                }
                BatchEnd::Failed => {
                    self.back_off(level, now_ms, pass);
                    return;
                }
            }
        }
        pass.more = true;
    }

    fn back_off(&self, level: usize, now_ms: i64, pass: &mut Pass) {
        let at = now_ms + SCHEDULE_RETRY_BACKOFF_MS as i64;
        self.progress.write(|p| p.wait_until(level, at));
        pass.wake_at(at);
    }

    /// Re-appends the due records of one batch (all issued first, so they share writes),
    /// then confirms them in order, moving the level's offset past each confirmed one.
    async fn deliver_batch(
        &self,
        level: usize,
        records: &[Bytes],
        now_ms: i64,
        sink: Sink<'_>,
        pass: &mut Pass,
    ) -> BatchEnd {
        let mut issued: Vec<(u64, Option<Stored>)> = Vec::with_capacity(records.len());
        let mut end = BatchEnd::Drained;
        for bytes in records {
            let view = match stored::decode(bytes) {
                Ok(Some(Record::Message(view))) => view,
                other => {
                    // The store served something that is not a whole record: a storage
                    // bug, not a message to drop. Hold the level and say so loudly.
                    error!(level = level + 1, ?other, "delay queue entry is not a readable record; holding this level");
                    end = BatchEnd::Failed;
                    break;
                }
            };
            let due = due_ms(&view);
            if due > now_ms {
                end = BatchEnd::NotDue(due);
                break;
            }
            let after = view.header.queue_offset as u64 + 1;
            let Some((topic, queue_id)) = real_destination(view.properties) else {
                warn!(level = level + 1, offset = after - 1, "delayed message has no REAL_TOPIC/REAL_QID; dropping it");
                issued.push((after, None));
                continue;
            };
            let props = delivery_properties(view.properties);
            let out = Outgoing {
                topic,
                queue_id,
                body: view.body,
                flag: view.header.flag,
                properties: &props,
                sys_flag: view.header.sys_flag,
                born_timestamp_ms: view.header.born_timestamp_ms,
                born_host: view.header.born_host,
                reconsume_times: view.header.reconsume_times,
                prepared_transaction_offset: view.header.prepared_transaction_offset,
            };
            match sink(&out) {
                Ok(wait) => issued.push((after, Some(wait))),
                Err(e) if permanent(&e) => {
                    warn!(level = level + 1, offset = after - 1, topic, error = %e, "delayed message cannot be stored; dropping it");
                    issued.push((after, None));
                }
                Err(e) => {
                    warn!(level = level + 1, offset = after - 1, topic, error = %e, "delivering a delayed message failed; will retry");
                    end = BatchEnd::Failed;
                    break;
                }
            }
        }
        for (after, wait) in issued {
            if let Some(wait) = wait {
                let record_end = match wait.await {
                    Ok(placed) => placed.records.last().map_or(0, |r| r.physical_offset.0 + u64::from(r.size)),
                    Err(e) => {
                        // Later appends of this batch may be stored too; they are delivered
                        // again after the retry (at least once).
                        warn!(level = level + 1, offset = after - 1, error = %e, "delayed message not confirmed; will retry");
                        return BatchEnd::Failed;
                    }
                };
                self.progress.write(|p| p.delivered(record_end));
                pass.delivered += 1;
            }
            self.progress.write(|p| p.advance(level, after));
        }
        end
    }
}

impl Shard {
    /// One delivery pass of the delayed messages due now, each re-appended through
    /// [`Shard::append`]; with `save`, then saves the progress the flush covers. Stops
    /// between batches once the shard is shutting down.
    pub async fn deliver_due(&self, save: bool) -> Pass {
        let stop = || self.shutdown.is_set();
        let sink = |m: &Outgoing<'_>| self.append(std::slice::from_ref(m), true);
        self.schedule.run_once(&self.store, now_ms(), &stop, &sink, save).await
    }

    /// Saves the delayed-delivery progress, flushing first if needed.
    pub async fn persist_delay_progress(&self) -> Result<()> {
        self.schedule.persist(&self.store).await
    }

    /// Each delay level's next undelivered offset (index 0 = level 1).
    pub fn delay_offsets(&self) -> [u64; LEVELS] {
        self.schedule.offsets()
    }

    /// The progress in `delayOffset.json`'s form, for GET_ALL_DELAY_OFFSET (45).
    pub fn delay_offsets_json(&self) -> Vec<u8> {
        self.schedule.offsets_json()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use rockshard_net::properties::{self, keys};
    use rockshard_net::stored::RecordFields;
    use rockshard_storage::{GetStatus, StoreConfig};

    use super::*;

    fn run<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
        glommio::LocalExecutorBuilder::default().make().expect("glommio executor").run(f)
    }

    fn host() -> SocketAddr {
        "127.0.0.1:10911".parse().unwrap()
    }

    /// A store whose flusher and checkpointer never run on their own, so a test decides
    /// what is flushed.
    fn config(dir: &std::path::Path) -> StoreConfig {
        let mut c = StoreConfig::new(dir);
        c.segment_size_bytes = 1 << 20;
        c.flush_interval_ms = 3_600_000;
        c.checkpoint_interval_ms = 3_600_000;
        c.retention_check_interval_ms = 3_600_000;
        c.retention_hours = 0;
        c
    }

    /// What `Shard::append` does for these tests' messages, minus the shard: a plain
    /// append (no message here carries DELAY, so nothing is parked again).
    fn store_sink(store: &Store) -> impl Fn(&Outgoing<'_>) -> Result<Stored> + '_ {
        move |m: &Outgoing<'_>| {
            let f = RecordFields {
                topic: m.topic.as_bytes(),
                queue_id: m.queue_id,
                flag: m.flag,
                sys_flag: m.sys_flag,
                born_timestamp_ms: m.born_timestamp_ms,
                born_host: m.born_host,
                store_timestamp_ms: 0,
                store_host: host(),
                reconsume_times: m.reconsume_times,
                prepared_transaction_offset: m.prepared_transaction_offset,
                body: m.body,
                properties: m.properties,
            };
            Ok(Stored::Local(store.append(&[f], true)?))
        }
    }

    /// Parks `body` for `topic`/`queue` at `level` the way `Shard::append` does; returns
    /// the parked record's store time.
    async fn park(store: &Store, topic: &str, queue: i32, level: u32, body: &[u8]) -> i64 {
        let level_text = level.to_string();
        let queue_text = queue.to_string();
        let props = properties::encode([
            (keys::TAGS, "TagA"),
            (keys::DELAY, level_text.as_str()),
            (keys::REAL_TOPIC, topic),
            (keys::REAL_QID, queue_text.as_str()),
        ]);
        let f = RecordFields {
            topic: SCHEDULE_TOPIC.as_bytes(),
            queue_id: level as i32 - 1,
            flag: 7,
            sys_flag: 0,
            born_timestamp_ms: 1_700_000_000_000,
            born_host: "127.0.0.1:50000".parse().unwrap(),
            store_timestamp_ms: 0,
            store_host: host(),
            reconsume_times: 2,
            prepared_transaction_offset: 0,
            body,
            properties: &props,
        };
        let wait = store.append(&[f], true).expect("append");
        wait.await.expect("written").store_timestamp_ms
    }

    async fn bodies(store: &Store, topic: &str, queue: i32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut at = QueueOffset(0);
        for _ in 0..1_000 {
            let got = store.get_messages(topic, queue, at, 1000, 1 << 20, None).await.expect("read");
            if got.status != GetStatus::Found {
                break;
            }
            for m in &got.messages {
                let Ok(Some(Record::Message(v))) = stored::decode(m) else { panic!("bad record") };
                out.push(v.body.to_vec());
            }
            at = got.next_begin_offset;
        }
        out
    }

    fn never() -> bool {
        false
    }

    #[test]
    fn messages_go_out_at_their_time_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let store = Store::open(config(&path)).await.unwrap();
            let sched = Scheduler::load(&store).await.unwrap();
            let sink = store_sink(&store);
            // Two at level 1 (1 s), one at level 2 (5 s).
            let t1 = park(&store, "orders", 3, 1, b"one").await;
            let t2 = park(&store, "orders", 3, 1, b"two").await;
            let t3 = park(&store, "orders", 1, 2, b"five").await;

            // Just before the first is due: nothing moves, and the pass says when to look.
            let pass = sched.run_once(&store, t1 + 999, &never, &sink, false).await;
            assert_eq!(pass.delivered, 0);
            assert_eq!(pass.wake_at_ms, Some(t1 + 1_000));
            assert!(bodies(&store, "orders", 3).await.is_empty());

            // At the first's time: it goes; the second waits for its own time.
            let pass = sched.run_once(&store, t1 + 1_000, &never, &sink, false).await;
            if t2 > t1 {
                assert_eq!(pass.delivered, 1);
                assert_eq!(bodies(&store, "orders", 3).await, [b"one".to_vec()]);
                assert_eq!(pass.wake_at_ms, Some(t2 + 1_000));
                sched.run_once(&store, t2 + 1_000, &never, &sink, false).await;
            }
            assert_eq!(bodies(&store, "orders", 3).await, [b"one".to_vec(), b"two".to_vec()]);
            assert_eq!(sched.offsets()[0], 2);
            assert!(bodies(&store, "orders", 1).await.is_empty(), "level 2 is not due yet");

            let pass = sched.run_once(&store, t3 + 5_000, &never, &sink, false).await;
            assert_eq!(pass.delivered, 1);
            assert_eq!(pass.wake_at_ms, None, "nothing left waiting");
            assert_eq!(bodies(&store, "orders", 1).await, [b"five".to_vec()]);

            // The delivered copy: same body, flag, born info, reconsume count, TAGS hash
            // in its queue; DELAY gone, REAL_TOPIC/REAL_QID kept (RocketMQ does).
            let got = store.get_messages("orders", 1, QueueOffset(0), 1, 1 << 20, None).await.unwrap();
            let Ok(Some(Record::Message(v))) = stored::decode(&got.messages[0]) else { panic!() };
            assert_eq!((v.header.flag, v.header.reconsume_times), (7, 2));
            assert_eq!(v.header.born_timestamp_ms, 1_700_000_000_000);
            assert_eq!(properties::get(v.properties, keys::DELAY), None);
            assert_eq!(properties::get(v.properties, keys::REAL_TOPIC), Some("orders"));
            assert_eq!(properties::get(v.properties, keys::TAGS), Some("TagA"));
            let matching = store
                .get_messages(
                    "orders",
                    1,
                    QueueOffset(0),
                    1,
                    1 << 20,
                    Some(&|code| code == properties::tags_code(v.properties)),
                )
                .await
                .unwrap();
            assert_eq!(matching.messages.len(), 1, "the queue entry carries the TAGS hash, not a time");
            store.close().await.unwrap();
        });
    }

    #[test]
    fn a_restart_delivers_overdue_messages_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            // Before the restart: two parked, one delivered and its progress saved.
            let store = Store::open(config(&path)).await.unwrap();
            let sched = Scheduler::load(&store).await.unwrap();
            let t1 = park(&store, "orders", 0, 1, b"early").await;
            sched.run_once(&store, t1 + 1_000, &never, &store_sink(&store), false).await;
            assert_eq!(sched.offsets()[0], 1);
            park(&store, "orders", 0, 3, b"late").await;
            sched.persist(&store).await.unwrap();
            store.close().await.unwrap();

            // After: the saved offset holds, so the delivered one is not sent again, and
            // the overdue one goes out on the first pass.
            let store = Store::open(config(&path)).await.unwrap();
            let sched = Scheduler::load(&store).await.unwrap();
            assert_eq!(sched.offsets()[0], 1);
            assert_eq!(sched.offsets()[2], 0);
            let pass = sched.run_once(&store, now_ms() + 10_000, &never, &store_sink(&store), false).await;
            assert_eq!(pass.delivered, 1);
            assert_eq!(bodies(&store, "orders", 0).await, [b"early".to_vec(), b"late".to_vec()]);
            store.close().await.unwrap();
        });
    }

    #[test]
    fn progress_is_saved_only_once_the_flush_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let store = Store::open(config(&path)).await.unwrap();
            let sched = Scheduler::load(&store).await.unwrap();
            let t = park(&store, "orders", 0, 1, b"m").await;
            store.sync_now().await.unwrap();
            // Delivered to an async topic: written, not flushed (the flusher is off).
            let pass = sched.run_once(&store, t + 1_000, &never, &store_sink(&store), true).await;
            assert_eq!(pass.delivered, 1);
            assert_eq!(store.load_config_file(DELAY_OFFSET_FILE).await.unwrap(), None, "not flushed, not saved");
            // A later periodic save, still unflushed: still nothing.
            sched.run_once(&store, t + 1_000, &never, &store_sink(&store), true).await;
            assert_eq!(store.load_config_file(DELAY_OFFSET_FILE).await.unwrap(), None);
            // Once the flush covers the re-append, the next periodic save writes it.
            store.sync_now().await.unwrap();
            sched.run_once(&store, t + 1_000, &never, &store_sink(&store), true).await;
            let saved = store.load_config_file(DELAY_OFFSET_FILE).await.unwrap().expect("saved");
            let file = DelayOffsetFile::from_json(&saved).unwrap();
            assert_eq!(file.offset_table[&1], 1);

            // persist() at shutdown forces the flush rather than waiting for it.
            let t = park(&store, "orders", 0, 1, b"n").await;
            sched.run_once(&store, t + 1_000, &never, &store_sink(&store), false).await;
            let (_, flushed, _, appended) = store.commitlog_positions();
            assert!(flushed < appended);
            sched.persist(&store).await.unwrap();
            let (_, flushed, _, appended) = store.commitlog_positions();
            assert_eq!(flushed, appended);
            let saved = store.load_config_file(DELAY_OFFSET_FILE).await.unwrap().expect("saved");
            let file = DelayOffsetFile::from_json(&saved).unwrap();
            assert_eq!(file.offset_table[&1], 2);
            store.close().await.unwrap();
        });
    }

    #[test]
    fn undeliverable_messages_are_skipped_and_failures_retried() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let store = Store::open(config(&path)).await.unwrap();
            let sched = Scheduler::load(&store).await.unwrap();
            // A parked record without REAL_TOPIC cannot be delivered: it is passed over.
            let props = properties::encode([(keys::DELAY, "1")]);
            let f = RecordFields {
                topic: SCHEDULE_TOPIC.as_bytes(),
                queue_id: 0,
                flag: 0,
                sys_flag: 0,
                born_timestamp_ms: 0,
                born_host: host(),
                store_timestamp_ms: 0,
                store_host: host(),
                reconsume_times: 0,
                prepared_transaction_offset: 0,
                body: b"lost",
                properties: &props,
            };
            let t = store.append(&[f], true).unwrap().await.unwrap().store_timestamp_ms;
            park(&store, "orders", 0, 1, b"ok").await;

            // A sink that fails as a busy store would: nothing advances, the level backs off.
            let busy = |_: &Outgoing<'_>| -> Result<Stored> {
                Err(StorageError::Busy { pending_bytes: 1, limit_bytes: 1 }.into())
            };
            let pass = sched.run_once(&store, t + 5_000, &never, &busy, false).await;
            assert_eq!(pass.delivered, 0);
            assert_eq!(sched.offsets()[0], 1, "the undeliverable one is passed, the failed one is not");
            assert_eq!(pass.wake_at_ms, Some(t + 5_000 + SCHEDULE_RETRY_BACKOFF_MS as i64));
            // Within the back-off nothing is tried; after it, the message goes.
            let pass = sched.run_once(&store, t + 5_001, &never, &store_sink(&store), false).await;
            assert_eq!(pass.delivered, 0);
            let pass = sched
                .run_once(&store, t + 5_000 + SCHEDULE_RETRY_BACKOFF_MS as i64, &never, &store_sink(&store), false)
                .await;
            assert_eq!(pass.delivered, 1);
            assert_eq!(bodies(&store, "orders", 0).await, [b"ok".to_vec()]);
            store.close().await.unwrap();
        });
    }

    #[test]
    fn a_backlog_is_delivered_in_bounded_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let store = Store::open(config(&path)).await.unwrap();
            let sched = Scheduler::load(&store).await.unwrap();
            let per_pass = SCHEDULE_BATCH_MESSAGES_MAX as usize * SCHEDULE_LEVEL_BATCHES_PER_PASS_MAX;
            let total = per_pass + 10;
            let mut last = 0;
            for i in 0..total {
                last = park(&store, "orders", 0, 1, format!("m{i}").as_bytes()).await;
            }
            let now = last + 1_000;
            let pass = sched.run_once(&store, now, &never, &store_sink(&store), false).await;
            assert_eq!((pass.delivered, pass.more), (per_pass, true));
            let pass = sched.run_once(&store, now, &never, &store_sink(&store), false).await;
            assert_eq!((pass.delivered, pass.more), (10, false));
            let got = bodies(&store, "orders", 0).await;
            assert_eq!(got.len(), total);
            assert_eq!(got[total - 1], format!("m{}", total - 1).into_bytes());
            store.close().await.unwrap();
        });
    }
}
