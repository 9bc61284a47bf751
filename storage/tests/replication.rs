//! What replication asks of the store: identical bytes from identical records
//! (`append_replicated`), readers held to a visible limit (`set_visible_limit`), and a
//! truncate that neither a reopen nor a power loss undoes (`truncate`).
//!
//! Runs on a glommio executor per test, mostly on [`SimDisk`] (which can lose power);
//! the race of reads with truncates runs on the real disk, where reads take time.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use rockshard_net::stored::{self, Record, RecordFields};
use rockshard_storage::testing::SimDisk;
use rockshard_storage::{
    Boundary, FlushMode, GetStatus, PhysicalOffset, QueueOffset, StorageError, Store, StoreConfig, TopicConfig,
};

const DIR: &str = "/data";
/// Small segments, so a few dozen records roll over several of them (BLANKs included).
const SEGMENT: u64 = 4096;

fn config() -> StoreConfig {
    small_config(DIR, SEGMENT)
}

/// Record `i`: queue `i % 3` of topic "R", a body that names it, a store time that is not
/// the clock's (so a kept stamp is told apart from a fresh one).
fn record(i: usize, body: &[u8]) -> RecordFields<'_> {
    let mut f = fields("R", (i % 3) as i32, body, b"TAGS\x01t\x02");
    f.store_timestamp_ms = 1_600_000_000_000 + (i as i64) * 1_000;
    f
}

fn bodies(range: std::ops::Range<usize>, tag: &str) -> Vec<Vec<u8>> {
    range.map(|i| format!("{tag}-{i:04}-{}", "x".repeat(50 + (i * 37) % 300)).into_bytes()).collect()
}

/// Appends `records` one batch of `batch` at a time (replicated), each awaited; returns
/// where each record went.
async fn put<D: rockshard_storage::Disk>(store: &Store<D>, records: &[RecordFields<'_>], batch: usize) -> Vec<u64> {
    let mut at = Vec::new();
    for chunk in records.chunks(batch) {
        let r = store.append_replicated(chunk, true).unwrap().await.unwrap();
        at.extend(r.records.iter().map(|r| r.physical_offset.0));
    }
    at
}

fn commitlog_files(disk: &SimDisk) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(DIR).join("commitlog");
    disk.files().into_iter().filter(|p| p.starts_with(&dir)).map(|p| (p.clone(), disk.contents(&p).unwrap())).collect()
}

/// Every queue's (topic, id, min, max) and every readable body, in order.
async fn answers(store: &Store<SimDisk>) -> Vec<(String, i32, u64, u64, Vec<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut infos = store.queue_infos();
    infos.sort_by(|a, b| (&a.topic, a.queue_id).cmp(&(&b.topic, b.queue_id)));
    for i in infos {
        let b = read_bodies(store, &i.topic, i.queue_id).await;
        out.push((i.topic, i.queue_id, i.min_offset.0, i.max_offset.0, b));
    }
    out
}

#[test]
fn replicated_appends_make_byte_identical_commitlogs_blanks_included() {
    run(async {
        let bs = bodies(0..60, "r");
        let recs: Vec<_> = bs.iter().enumerate().map(|(i, b)| record(i, b)).collect();
        let mut logs = Vec::new();
        // Different batchings of the same records: the bytes must not depend on them.
        for batch in [1, 7] {
            let disk = SimDisk::new();
            let store = Store::open_on(disk.clone(), config()).await.unwrap();
            let at = put(&store, &recs, batch).await;
            // Each record kept its own stamp.
            for (i, &p) in at.iter().enumerate() {
                let m = store.read_message(PhysicalOffset(p)).await.unwrap();
                let h = stored::decode_header(&m).unwrap().unwrap();
                assert_eq!(h.store_timestamp_ms, recs[i].store_timestamp_ms);
            }
            store.close().await.unwrap();
            logs.push(commitlog_files(&disk));
        }
        assert!(logs[0].len() >= 3, "the records span several segments: {}", logs[0].len());
        let blanks = logs[0]
            .iter()
            .filter(|(_, bytes)| {
                // The last record of a full segment is a BLANK: scan to it.
                let mut at = 0;
                while let Ok(Some(r)) = stored::decode(&bytes[at..]) {
                    match r {
                        Record::Blank { .. } => return true,
                        Record::Message(v) => at += v.header.total_size as usize,
                    }
                }
                false
            })
            .count();
        assert!(blanks >= 2, "segment rolls left BLANKs: {blanks}");
        assert_eq!(logs[0].len(), logs[1].len());
        for ((pa, a), (pb, b)) in logs[0].iter().zip(&logs[1]) {
            assert_eq!(pa, pb);
            assert!(a == b, "{} differs between the two stores", pa.display());
        }

        // Plain `append` stamps the clock instead.
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        let r = store.append(&recs[..1], true).unwrap().await.unwrap();
        assert_ne!(r.store_timestamp_ms, recs[0].store_timestamp_ms);
    });
}

#[test]
fn readers_see_only_what_the_visible_limit_lets_through() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        let heard: Rc<RefCell<Vec<(String, i32, u64)>>> = Rc::default();
        let h = heard.clone();
        store.set_arrival_listener(move |t, q, max| h.borrow_mut().push((t.to_string(), q, max.0)));

        // Nothing visible yet: a limit at the current end.
        store.set_visible_limit(Some(PhysicalOffset(0)));
        let bs = bodies(0..12, "v");
        let recs: Vec<_> = bs.iter().map(|b| record(0, b)).collect(); // all on queue 0
        let at = put(&store, &recs, 4).await;
        let ends: Vec<u64> = at.iter().zip(&recs).map(|(&p, r)| p + stored::encoded_len(r).unwrap() as u64).collect();
        assert!(heard.borrow().is_empty(), "nothing became visible");
        assert_eq!(store.queue_offsets("R", 0), Some((QueueOffset(0), QueueOffset(0))));
        let got = store.get_messages("R", 0, QueueOffset(0), 32, 1 << 20, None).await.unwrap();
        assert_eq!(got.status, GetStatus::NoMessageInQueue);
        assert_eq!(store.earliest_store_time("R", 0).await.unwrap(), None);
        assert!(store.read_message(PhysicalOffset(at[0])).await.is_err());
        assert_eq!(store.queue_infos()[0].max_offset, QueueOffset(0));

        // Up to the end of record 4: five visible, the listener told once, with 5.
        store.set_visible_limit(Some(PhysicalOffset(ends[4])));
        assert_eq!(*heard.borrow(), vec![("R".to_string(), 0, 5)]);
        assert_eq!(store.queue_offsets("R", 0), Some((QueueOffset(0), QueueOffset(5))));
        let got = store.get_messages("R", 0, QueueOffset(0), 32, 1 << 20, None).await.unwrap();
        assert_eq!((got.status, got.messages.len(), got.next_begin_offset), (GetStatus::Found, 5, QueueOffset(5)));
        let got = store.get_messages("R", 0, QueueOffset(5), 32, 1 << 20, None).await.unwrap();
        assert_eq!(got.status, GetStatus::OffsetOverflowOne, "the visible end answers 'nothing new yet'");
        assert!(store.read_message(PhysicalOffset(at[4])).await.is_ok());
        assert!(store.read_message(PhysicalOffset(at[5])).await.is_err(), "record 5 is past the limit");
        let last = store.offset_by_time("R", 0, i64::MAX, Boundary::Upper).await.unwrap();
        assert_eq!(last, QueueOffset(4));
        let first_after = store.offset_by_time("R", 0, i64::MAX, Boundary::Lower).await.unwrap();
        assert_eq!(first_after, QueueOffset(5));
        assert_eq!(store.earliest_store_time("R", 0).await.unwrap(), Some(recs[0].store_timestamp_ms));

        // A limit between records shows only the records wholly below it.
        store.set_visible_limit(Some(PhysicalOffset(ends[6] + 10)));
        assert_eq!(store.queue_offsets("R", 0).unwrap().1, QueueOffset(7));
        // The limit past everything written: all 12, and records written later show as
        // they are written.
        store.set_visible_limit(Some(PhysicalOffset(u64::MAX / 2)));
        assert_eq!(store.queue_offsets("R", 0).unwrap().1, QueueOffset(12));
        let b = b"later".to_vec();
        store.append_replicated(&[record(0, &b)], true).unwrap().await.unwrap();
        assert_eq!(store.queue_offsets("R", 0).unwrap().1, QueueOffset(13));
        let maxes: Vec<u64> = heard.borrow().iter().map(|h| h.2).collect();
        assert_eq!(maxes, vec![5, 7, 12, 13], "once per step, in order");
        // No limit: as before.
        store.set_visible_limit(None);
        assert_eq!(read_bodies(&store, "R", 0).await.len(), 13);
    });
}

#[test]
fn records_become_visible_in_commitlog_order_across_queues() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        let heard: Rc<RefCell<Vec<(i32, u64)>>> = Rc::default();
        let h = heard.clone();
        store.set_arrival_listener(move |_, q, max| h.borrow_mut().push((q, max.0)));
        store.set_visible_limit(Some(PhysicalOffset(0)));
        let bs = bodies(0..9, "o");
        let recs: Vec<_> = bs.iter().enumerate().map(|(i, b)| record(i, b)).collect();
        put(&store, &recs, 9).await;
        let (_, _, written, _) = store.commitlog_positions();
        store.set_visible_limit(Some(written));
        // Queues 0,1,2,0,1,2,...: each record is its own run.
        let expected: Vec<(i32, u64)> = (0..9i32).map(|i| (i % 3, (i / 3 + 1) as u64)).collect();
        assert_eq!(*heard.borrow(), expected);
        store.set_visible_limit(Some(written));
        assert_eq!(heard.borrow().len(), 9, "never twice");
    });
}

#[test]
fn a_limit_below_entries_already_in_files_hides_them_and_the_files_stay_right() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        let bs = bodies(0..30, "f");
        let recs: Vec<_> = bs.iter().enumerate().map(|(i, b)| record(i, b)).collect();
        let at = put(&store, &recs, 5).await;
        store.sync_now().await.unwrap(); // ConsumeQueue entries in files, checkpoint at the end
        drop(store); // a crash: the open below replays nothing, the entries are in files

        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        // The replica's usual first step: only what is known committed is visible.
        store.set_visible_limit(Some(PhysicalOffset(at[15])));
        // Reads never show a hidden record, even before the counts are fixed.
        for q in 0..3 {
            for b in read_bodies(&store, "R", q).await {
                let i: usize = String::from_utf8_lossy(&b[2..6]).parse().unwrap();
                assert!(i < 15, "record {i} is past the limit");
            }
        }
        // The counts are fixed in the background, promptly.
        let want = |q: i32| (0..15).filter(|i| i % 3 == q as usize).count() as u64;
        for _ in 0..200 {
            if (0..3).all(|q| store.queue_offsets("R", q).unwrap().1 .0 == want(q)) {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        for q in 0..3 {
            assert_eq!(store.queue_offsets("R", q).unwrap().1 .0, want(q));
            let got = store.get_messages("R", q, QueueOffset(want(q)), 32, 1 << 20, None).await.unwrap();
            assert_eq!(got.status, GetStatus::OffsetOverflowOne);
        }
        // A checkpoint now persists nothing hidden and stays at the limit.
        store.sync_now().await.unwrap();
        // Raising the limit again shows everything; a reopen after a crash still has it.
        store.set_visible_limit(Some(PhysicalOffset(u64::MAX / 2)));
        let all = |store: Store<SimDisk>| async move {
            let mut n = 0;
            for q in 0..3 {
                n += read_bodies(&store, "R", q).await.len();
            }
            n
        };
        assert_eq!(all(store.clone()).await, 30);
        store.sync_now().await.unwrap();
        drop(store);
        disk.power_loss();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        assert_eq!(all(store.clone()).await, 30);
    });
}

/// The kept + new records appended to a fresh store, for comparison.
async fn reference(recs: &[RecordFields<'_>]) -> (SimDisk, Store<SimDisk>) {
    let disk = SimDisk::new();
    let store = Store::open_on(disk.clone(), config()).await.unwrap();
    put(&store, recs, 3).await;
    store.close().await.unwrap();
    let store = Store::open_on(disk.clone(), config()).await.unwrap();
    (disk, store)
}

async fn truncate_then_compare(cut: usize, total: usize, sync_before: bool) {
    let old = bodies(0..total, "o");
    let new = bodies(0..8, "n");
    let old_recs: Vec<_> = old.iter().enumerate().map(|(i, b)| record(i, b)).collect();
    let new_recs: Vec<_> = new.iter().enumerate().map(|(i, b)| record(i + 1, b)).collect();

    let disk = SimDisk::new();
    let store = Store::open_on(disk.clone(), config()).await.unwrap();
    let at = put(&store, &old_recs, 3).await;
    if sync_before {
        store.sync_now().await.unwrap(); // the cut records' entries are in files, the checkpoint past the cut
    }
    let cut_at = at.get(cut).copied().unwrap_or(store.commitlog_positions().3 .0);
    store.truncate(PhysicalOffset(cut_at)).await.unwrap();
    let (_, flushed, written, appended) = store.commitlog_positions();
    assert_eq!((written.0, appended.0), (cut_at, cut_at));
    assert!(flushed.0 <= cut_at);
    let new_at = put(&store, &new_recs, 3).await;
    assert!(new_at[0] == cut_at || new_at[0] % SEGMENT == 0, "appends continue at the cut");
    store.close().await.unwrap();
    let store = Store::open_on(disk.clone(), config()).await.unwrap();

    let mut kept: Vec<_> = old_recs[..cut].to_vec();
    kept.extend_from_slice(&new_recs);
    let (ref_disk, ref_store) = reference(&kept).await;
    let (a, b) = (commitlog_files(&disk), commitlog_files(&ref_disk));
    assert_eq!(a.iter().map(|f| &f.0).collect::<Vec<_>>(), b.iter().map(|f| &f.0).collect::<Vec<_>>());
    for ((p, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{} differs from the store that never had the cut records", p.display());
    }
    assert_eq!(answers(&store).await, answers(&ref_store).await);
}

#[test]
fn truncate_then_append_then_reopen_equals_a_store_that_never_had_the_cut_records() {
    run(async {
        truncate_then_compare(12, 20, false).await;
        truncate_then_compare(12, 20, true).await;
        truncate_then_compare(0, 20, true).await;
        truncate_then_compare(20, 20, true).await;
    });
}

#[test]
fn truncate_across_segment_boundaries() {
    run(async {
        // 80 records fill several 4 KiB segments; cut in the first one.
        truncate_then_compare(3, 80, true).await;
        truncate_then_compare(40, 80, false).await;
    });
}

#[test]
fn truncate_at_a_blank_and_at_a_segment_start() {
    run(async {
        let bs = bodies(0..40, "b");
        let recs: Vec<_> = bs.iter().enumerate().map(|(i, b)| record(i, b)).collect();
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        let at = put(&store, &recs, 1).await;
        // The first record of the second segment; the BLANK before it starts where the
        // record before it ends.
        let i = at.iter().position(|&p| p >= SEGMENT).unwrap();
        let blank_start = at[i - 1] + stored::encoded_len(&recs[i - 1]).unwrap() as u64;
        assert!(blank_start < SEGMENT, "a BLANK lies before the segment start");
        // Not a boundary: refused, nothing changed.
        let err = store.truncate(PhysicalOffset(at[i - 1] + 1)).await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidArgument(_)), "{err}");
        assert!(matches!(store.truncate(PhysicalOffset(1 << 40)).await, Err(StorageError::InvalidArgument(_))));
        store.truncate(PhysicalOffset(SEGMENT)).await.unwrap();
        store.truncate(PhysicalOffset(blank_start)).await.unwrap();
        let n: usize = [0, 1, 2].iter().map(|&q| store.queue_offsets("R", q).unwrap().1 .0 as usize).sum();
        assert_eq!(n, i);
        drop(store);
        disk.power_loss();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        assert_eq!(store.recovery_report().end, PhysicalOffset(blank_start));
    });
}

#[test]
fn a_power_loss_right_after_truncate_returns_does_not_bring_cut_records_back() {
    for (seed, sync_before) in [(0u64, true), (1, false), (2, true), (3, true)] {
        run(async move {
            let disk = SimDisk::new();
            let store = Store::open_on(disk.clone(), config()).await.unwrap();
            store.upsert_topic(TopicConfig::new("R", 3, FlushMode::Sync)).await.unwrap();
            let bs = bodies(0..50, "p");
            let recs: Vec<_> = bs.iter().enumerate().map(|(i, b)| record(i, b)).collect();
            let at = put(&store, &recs, 2).await; // every record flushed (sync topic)
            if sync_before {
                store.sync_now().await.unwrap();
            }
            let cut = 17;
            store.truncate(PhysicalOffset(at[cut])).await.unwrap();
            drop(store);
            if seed == 0 {
                disk.power_loss();
            } else {
                disk.power_loss_torn(seed);
            }
            let store = Store::open_on(disk.clone(), config()).await.unwrap();
            assert_eq!(store.recovery_report().end, PhysicalOffset(at[cut]), "seed {seed}");
            let mut got = Vec::new();
            for q in 0..3 {
                got.extend(read_bodies(&store, "R", q).await);
            }
            got.sort();
            let mut want = bs[..cut].to_vec();
            want.sort();
            assert_eq!(got, want, "seed {seed}: exactly the kept records");
            // And the store goes on from there.
            let b = b"after".to_vec();
            let r = store.append_replicated(&[record(0, &b)], true).unwrap().await.unwrap();
            assert_eq!(r.records[0].physical_offset, PhysicalOffset(at[cut]));
        });
    }
}

/// Each append's answer, once it came: Ok or the error's text.
type Outcomes = Rc<RefCell<Vec<Option<Result<(), String>>>>>;

#[test]
fn truncate_fails_the_waiters_past_the_cut_and_answers_the_others() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        store.upsert_topic(TopicConfig::new("R", 3, FlushMode::Sync)).await.unwrap();
        // Slow fdatasyncs. A first append's flush starts at once and covers only it; the
        // others wait for the next flush when the truncate starts, and it comes first.
        disk.set_sync_delay(Some(Duration::from_millis(30)));
        let bs = bodies(0..10, "w");
        let mut waits = vec![store.append_replicated(&[record(0, &bs[0])], true).unwrap()];
        glommio::timer::sleep(Duration::from_millis(5)).await;
        waits.extend(
            bs.iter().enumerate().skip(1).map(|(i, b)| store.append_replicated(&[record(i, b)], true).unwrap()),
        );
        let at: Vec<u64> = waits.iter().map(|w| w.result().records[0].physical_offset.0).collect();
        let outcomes: Outcomes = Rc::new(RefCell::new(vec![None; 10]));
        let mut tasks = Vec::new();
        for (i, w) in waits.into_iter().enumerate() {
            let outcomes = outcomes.clone();
            tasks.push(glommio::spawn_local(async move {
                outcomes.borrow_mut()[i] = Some(w.await.map(|_| ()).map_err(|e| e.to_string()));
            }));
        }
        let truncated = store.truncate(PhysicalOffset(at[6]));
        // Appends are refused while it runs.
        let b = b"during".to_vec();
        let during = glommio::spawn_local({
            let store = store.clone();
            async move {
                glommio::timer::sleep(Duration::from_millis(1)).await;
                store.append_replicated(&[record(0, &b)], true).err()
            }
        });
        truncated.await.unwrap();
        assert!(matches!(during.await, Some(StorageError::Truncated { .. })));
        disk.set_sync_delay(None);
        for t in tasks {
            t.await;
        }
        let answered = outcomes.borrow().clone();
        for (i, o) in answered.iter().enumerate() {
            let o = o.as_ref().expect("answered");
            if i < 6 {
                assert!(o.is_ok(), "record {i} before the cut: {o:?}");
            } else {
                assert!(o.as_ref().is_err_and(|e| e.contains("truncated")), "record {i} past the cut: {o:?}");
            }
        }
        // Appends work again.
        let b = b"after".to_vec();
        store.append_replicated(&[record(0, &b)], true).unwrap().await.unwrap();
    });
}

#[test]
fn reads_racing_truncates_never_return_cut_records() {
    run(async move {
        let disk = SimDisk::new();
        let mut cfg = small_config(DIR, 64 * 1024);
        // Entries go to ConsumeQueue files (and their block cache) as well as memory.
        cfg.checkpoint_interval_ms = 2;
        let store = Store::open_on(disk.clone(), cfg).await.unwrap();
        // Slow reads that see the bytes as of their end: a truncate and the appends after
        // it run while a read is under way.
        disk.set_read_delay(Some(Duration::from_micros(700)));
        // Record k of generation g on queue 0: body "g<g>-k<k>-", sized by g so that a new
        // generation's records never line up with the old ones (a stale entry then points
        // into the middle of a record). A cut at offset c replaces every k >= c.
        let cut_done: Rc<RefCell<Vec<(u32, u64)>>> = Rc::default();
        let mut at: Vec<u64> = Vec::new();
        let append = |store: &Store<SimDisk>, from: usize, to: usize, g: u32| {
            let bodies: Vec<Vec<u8>> = (from..to)
                .map(|k| format!("g{g}-k{k}-{}", "y".repeat(100 + 29 * g as usize % 200)).into_bytes())
                .collect();
            let recs: Vec<_> = bodies.iter().map(|b| fields("Q", 0, b, b"")).collect();
            store.append_replicated(&recs, false).unwrap()
        };
        let r = append(&store, 0, 200, 0).await.unwrap();
        at.extend(r.records.iter().map(|r| r.physical_offset.0));

        let stop = Rc::new(Cell::new(false));
        let retried = Rc::new(Cell::new(0u32));
        let mut readers = Vec::new();
        for reader in 0..8u64 {
            let (store, stop, cut_done, retried) = (store.clone(), stop.clone(), cut_done.clone(), retried.clone());
            readers.push(glommio::spawn_local(async move {
                let mut reads = 0u32;
                let mut offset = reader * 13;
                for _ in 0..100_000 {
                    if stop.get() {
                        break;
                    }
                    let started_after = cut_done.borrow().clone();
                    let got = match store.get_messages("Q", 0, QueueOffset(offset), 16, 1 << 20, None).await {
                        Ok(g) => g,
                        Err(StorageError::Truncated { .. }) => {
                            retried.set(retried.get() + 1);
                            continue;
                        }
                        Err(e) => panic!("{e}"),
                    };
                    for (i, m) in got.messages.iter().enumerate() {
                        let k = offset + i as u64;
                        let Ok(Some(Record::Message(v))) = stored::decode(m) else { panic!("not a record at {k}") };
                        assert!(v.body_crc_matches());
                        assert_eq!(v.header.queue_offset, k as i64, "the record of another offset");
                        let body = String::from_utf8_lossy(v.body);
                        let (g, kk) = body.split_once('-').unwrap();
                        let g: u32 = g[1..].parse().unwrap();
                        assert_eq!(kk.split('-').next().unwrap(), format!("k{k}"));
                        // A truncate that returned before this read began cut this
                        // generation at k or below: its record must not come back.
                        for &(cut_gen, cut_at) in &started_after {
                            assert!(!(g < cut_gen && k >= cut_at), "record g{g}-k{k} was cut at {cut_at}");
                        }
                    }
                    reads += 1;
                    if got.messages.is_empty() {
                        offset = reader * 13;
                        // An answer without I/O does not yield: let the truncates run.
                        glommio::timer::sleep(Duration::from_micros(200)).await;
                    } else {
                        offset = (offset + 7) % 200;
                    }
                }
                reads
            }));
        }
        let mut count = 200usize;
        for round in 1..=40u32 {
            glommio::timer::sleep(Duration::from_millis(1)).await;
            let cut = 100 + (round as usize * 37) % 90;
            store.truncate(PhysicalOffset(at[cut])).await.unwrap();
            at.truncate(cut);
            cut_done.borrow_mut().push((round, cut as u64));
            let r = append(&store, cut, count.max(cut + 20), round).await.unwrap();
            at.extend(r.records.iter().map(|r| r.physical_offset.0));
            count = at.len();
        }
        stop.set(true);
        let mut total = 0;
        for r in readers {
            total += r.await;
        }
        assert!(total > 200, "the readers read while truncates ran: {total}");
        assert!(retried.get() > 0 || total > 0);
        store.close().await.unwrap();
    });
}
