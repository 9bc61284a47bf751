//! The store's throughput mechanisms keep its promises: several CommitLog writes in
//! flight, the preparer writing zeros ahead of `sync` appends, cold read-ahead windows and
//! the ConsumeQueue block cache. On SimDisk, whose scripted writes complete out of order
//! and whose preparations zero their range at start and end (so a store that let data
//! and zeros meet would lose the data here).
//!
//! What it proves:
//! - A failed write among several in flight: appends before it succeed, it and every
//!   append after it fail (even those whose own write succeeded), `written` stops at the
//!   failure, offsets are reused without a gap, and the abandoned bytes are zeroed so a
//!   reopen cannot bring them back.
//! - The preparer never zeros data: many `sync` writers with slow preparations keep every
//!   acknowledged record through power loss; failing preparations fail no append; a
//!   store without a stream of `sync` appends, or whose group commits are large,
//!   prepares nothing.
//! - Cold windows return exactly what hot reads return, including records straddling
//!   windows and segment ends, pulls spread thinly over the log, and data appended after
//!   a window was cut at the written end; read-ahead makes far fewer disk reads than pulls.
//! - The ConsumeQueue block cache sees entries persisted after it cached a block.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use rockshard_storage::testing::{SimDisk, SimWrite};
use rockshard_storage::{FlushMode, GetStatus, StorageError, Store, StoreConfig, TopicConfig};

const DIR: &str = "/data";

fn segment_path(base: u64) -> PathBuf {
    PathBuf::from(format!("{DIR}/commitlog/{base:020}"))
}

/// Enough 1 KiB appends to make one chunk the writer splits into two writes.
const SPLIT_RECORDS: usize = 200;

fn one_mib_segments() -> StoreConfig {
    small_config(DIR, 1 << 20)
}

#[test]
fn a_failed_second_write_keeps_the_first_and_abandons_the_rest() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), one_mib_segments()).await.unwrap();
        let bodies: Vec<Vec<u8>> = (0..SPLIT_RECORDS).map(|i| body(i, 1000)).collect();
        // The first write is slow and succeeds; the second fails at once, before it.
        disk.script_writes([
            SimWrite { delay: Some(Duration::from_millis(30)), fail: false },
            SimWrite { delay: None, fail: true },
        ]);
        let waits: Vec<_> = bodies.iter().map(|b| store.append(&[fields("T", 0, b, b"")], true).unwrap()).collect();
        let mut results = Vec::new();
        for w in waits {
            results.push(w.await);
        }
        assert_eq!(disk.scripted_writes_left(), 0, "the chunk went out as two writes");
        let ok = results.iter().take_while(|r| r.is_ok()).count();
        assert!(ok > 0 && ok < SPLIT_RECORDS, "{ok} of {SPLIT_RECORDS} succeeded");
        for r in &results[ok..] {
            assert!(matches!(r, Err(StorageError::Io { op: "write", .. })), "{r:?}");
        }
        let last_ok = results[ok - 1].as_ref().unwrap().records[0];
        let (_, _, written, appended) = store.commitlog_positions();
        let first_end = last_ok.physical_offset.0 + u64::from(last_ok.size);
        assert_eq!((written.0, appended.0), (first_end, first_end), "nothing past the failure counts");
        assert_eq!(store.queue_offsets("T", 0).unwrap().1, q(ok as u64));

        // The next append takes the next offset: no gap, no reuse confusion.
        let next = body(9999, 1000);
        let r = store.append(&[fields("T", 0, &next, b"")], true).unwrap().await.unwrap();
        assert_eq!(r.records[0].queue_offset, q(ok as u64));
        let mut expected: Vec<Vec<u8>> = bodies[..ok].to_vec();
        expected.push(next);
        assert_eq!(read_bodies(&store, "T", 0).await, expected);
        drop(store);
        let store = Store::open_on(disk.clone(), one_mib_segments()).await.unwrap();
        assert_eq!(read_bodies(&store, "T", 0).await, expected, "a reopen finds exactly the same records");
    });
}

#[test]
fn a_failed_first_write_fails_the_second_too_and_its_bytes_are_zeroed() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), one_mib_segments()).await.unwrap();
        let kept = body(0, 1000);
        store.append(&[fields("T", 0, &kept, b"")], true).unwrap().await.unwrap();
        let bodies: Vec<Vec<u8>> = (1..=SPLIT_RECORDS).map(|i| body(i, 1000)).collect();
        // The first write fails late; the second succeeds at once, changing the file.
        disk.script_writes([
            SimWrite { delay: Some(Duration::from_millis(30)), fail: true },
            SimWrite { delay: None, fail: false },
        ]);
        let waits: Vec<_> = bodies.iter().map(|b| store.append(&[fields("T", 0, b, b"")], true).unwrap()).collect();
        for w in waits {
            assert!(w.await.is_err(), "no append at or after a failed write succeeds");
        }
        assert_eq!(disk.scripted_writes_left(), 0);
        let (_, _, written, _) = store.commitlog_positions();
        assert_eq!(store.queue_offsets("T", 0).unwrap().1, q(1));

        // The retry of the same records lands exactly where the abandoned ones were.
        let retry = body(1, 1000);
        let r = store.append(&[fields("T", 0, &retry, b"")], true).unwrap().await.unwrap();
        assert_eq!((r.records[0].physical_offset, r.records[0].queue_offset), (written, q(1)));
        let (_, _, end, _) = store.commitlog_positions();
        // Whatever the succeeded second write left past the end is zeros again, so a
        // recovery cannot read the abandoned records as if they followed the retry.
        let image = disk.contents(&segment_path(0)).unwrap();
        assert!(image[end.0 as usize..].iter().all(|&b| b == 0), "abandoned bytes remain past the end");
        drop(store);
        let store = Store::open_on(disk.clone(), one_mib_segments()).await.unwrap();
        assert_eq!(read_bodies(&store, "T", 0).await, vec![kept, retry]);
    });
}

type Acks = Rc<RefCell<Vec<(i32, u64, Vec<u8>)>>>;

/// `writers` tasks, each appending `per_writer` records to `topic` one at a time and
/// recording what was acknowledged.
async fn sync_writers(store: &Store<SimDisk>, topic: &'static str, writers: usize, per_writer: usize) -> Acks {
    let acks: Acks = Rc::default();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (store, acks) = (store.clone(), acks.clone());
            glommio::spawn_local(async move {
                for i in 0..per_writer {
                    let b = body(w * 100_000 + i, 300 + (i * 37 + w * 11) % 900);
                    let queue = (w % 4) as i32;
                    let r = store.append(&[fields(topic, queue, &b, b"")], true).unwrap().await.unwrap();
                    acks.borrow_mut().push((queue, r.records[0].queue_offset.0, b));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    acks
}

async fn assert_acked_present(store: &Store<SimDisk>, topic: &str, acks: &Acks) {
    for queue in 0..4 {
        let bodies = read_bodies(store, topic, queue).await;
        for (q, offset, b) in acks.borrow().iter().filter(|(q, ..)| *q == queue) {
            assert_eq!(bodies.get(*offset as usize), Some(b), "queue {q} offset {offset}");
        }
    }
}

/// 64 KiB segments, so a run crosses many and the preparer creates segments ahead.
fn prepared_config() -> StoreConfig {
    small_config(DIR, 64 << 10)
}

#[test]
fn slow_preparations_never_zero_acknowledged_sync_records() {
    run(async {
        let disk = SimDisk::new();
        disk.set_prepare_delay(Some(Duration::from_millis(3)));
        let store = Store::open_on(disk.clone(), prepared_config()).await.unwrap();
        store.upsert_topic(TopicConfig::new("S", 4, FlushMode::Sync)).await.unwrap();
        let acks = sync_writers(&store, "S", 16, 40).await;
        assert_eq!(acks.borrow().len(), 640);
        let stats = disk.stats();
        assert!(stats.prepares > 10, "the preparer ran: {stats:?}");
        assert_acked_present(&store, "S", &acks).await;
        drop(store);
        disk.power_loss();
        let store = Store::open_on(disk.clone(), prepared_config()).await.unwrap();
        assert_acked_present(&store, "S", &acks).await;
        // And the recovered store goes on appending.
        let b = body(1, 100);
        store.append(&[fields("S", 0, &b, b"")], true).unwrap().await.unwrap();
    });
}

#[test]
fn prepared_ranges_follow_each_other_on_page_boundaries() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), small_config(DIR, 4 << 20)).await.unwrap();
        store.upsert_topic(TopicConfig::new("S", 4, FlushMode::Sync)).await.unwrap();
        sync_writers(&store, "S", 8, 200).await;
        let ranges = disk.prepared_ranges(&segment_path(0));
        assert!(ranges.len() >= 3, "{ranges:?}");
        for pair in ranges.windows(2) {
            // A step may also start further on (the preparer fell behind and skipped
            // ahead), but never leaves a sliver between itself and the previous one.
            assert!(pair[1].0 == pair[0].1 || pair[1].0 > pair[0].1 + 4096, "{pair:?}");
        }
        for &(start, end) in &ranges[1..] {
            assert_eq!(start % 4096, 0, "{start}");
            assert!(end % 4096 == 0 || end == 4 << 20, "{end}");
        }
    });
}

#[test]
fn torn_power_loss_after_prepared_appends_keeps_every_acknowledged_record() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), prepared_config()).await.unwrap();
        store.upsert_topic(TopicConfig::new("S", 4, FlushMode::Sync)).await.unwrap();
        let acks = sync_writers(&store, "S", 8, 60).await;
        assert!(disk.stats().prepares > 0);
        drop(store);
        disk.power_loss_torn(7);
        let store = Store::open_on(disk.clone(), prepared_config()).await.unwrap();
        assert_acked_present(&store, "S", &acks).await;
    });
}

#[test]
fn failing_preparations_fail_no_append() {
    run(async {
        let disk = SimDisk::new();
        disk.fail_next_prepares(1_000);
        let store = Store::open_on(disk.clone(), prepared_config()).await.unwrap();
        store.upsert_topic(TopicConfig::new("S", 4, FlushMode::Sync)).await.unwrap();
        let acks = sync_writers(&store, "S", 8, 30).await;
        assert_eq!(acks.borrow().len(), 240);
        let stats = disk.stats();
        assert!(stats.failed_prepares > 0 && stats.prepares == 0, "the preparer tried and failed: {stats:?}");
        assert_acked_present(&store, "S", &acks).await;
    });
}

#[test]
fn async_appends_and_a_lone_sync_append_prepare_nothing() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), prepared_config()).await.unwrap();
        for i in 0..300 {
            let b = body(i, 500);
            store.append(&[fields("A", 0, &b, b"")], true).unwrap().await.unwrap();
        }
        // A lone `sync` append is no stream of them: not worth preparing for.
        store.upsert_topic(TopicConfig::new("S", 1, FlushMode::Sync)).await.unwrap();
        let b = body(1, 500);
        store.append(&[fields("S", 0, &b, b"")], true).unwrap().await.unwrap();
        glommio::timer::sleep(Duration::from_millis(150)).await;
        assert_eq!(disk.stats().prepares, 0);
        // Only the segments in use exist: none was created ahead.
        let (_, _, written, _) = store.commitlog_positions();
        let segments = disk.files().iter().filter(|p| p.starts_with(format!("{DIR}/commitlog"))).count() as u64;
        assert_eq!(segments, written.0.div_ceil(64 << 10));
    });
}

/// Large group commits are bound by disk bandwidth, which the preparer's zeros would
/// halve: once the groups grow past PREPARE_GROUP_MAX_BYTES, it stops.
#[test]
fn large_group_commits_stop_the_preparer() {
    run(async {
        let disk = SimDisk::new();
        // Each group commit takes a while, so about 128 appends (about 100 KiB) gather
        // behind it; each preparation takes longer, so the preparer cannot finish its
        // work ahead (two segments) while the groups are still small.
        disk.set_sync_delay(Some(Duration::from_millis(1)));
        disk.set_prepare_delay(Some(Duration::from_millis(20)));
        let store = Store::open_on(disk.clone(), small_config(DIR, 8 << 20)).await.unwrap();
        store.upsert_topic(TopicConfig::new("S", 4, FlushMode::Sync)).await.unwrap();
        sync_writers(&store, "S", 128, 10).await;
        // Let a preparation under way finish.
        glommio::timer::sleep(Duration::from_millis(50)).await;
        let (flushes, prepares) = (store.stats().flushes, disk.stats().prepares);
        assert!(flushes < 1280 / 32, "appends were grouped: {flushes} group commits");
        let acks = sync_writers(&store, "S", 128, 40).await;
        assert_eq!(disk.stats().prepares, prepares, "the preparer went on with large groups");
        assert_acked_present(&store, "S", &acks).await;

        // Small groups again (one writer): it starts again.
        disk.set_sync_delay(None);
        sync_writers(&store, "S", 1, 100).await;
        glommio::timer::sleep(Duration::from_millis(100)).await;
        assert!(disk.stats().prepares > prepares, "the preparer did not resume for small groups");
    });
}

/// Segments of 2.5 windows: windows are cut at segment ends, and records of many sizes
/// straddle window boundaries inside a segment.
const COLD_SEGMENT: u64 = (5 << 20) / 2;

fn cold_config(hot_window_bytes: u64) -> StoreConfig {
    let mut c = small_config(DIR, COLD_SEGMENT);
    c.hot_window_bytes = hot_window_bytes;
    c.cq_file_entries = 3000;
    c
}

/// Every message of a queue, as stored bytes, pulling `per_pull` at a time.
async fn all_messages(store: &Store<SimDisk>, topic: &str, queue_id: i32, per_pull: u32) -> (Vec<bytes::Bytes>, u64) {
    let mut out = Vec::new();
    let mut pulls = 0;
    let Some((mut at, _)) = store.queue_offsets(topic, queue_id) else { return (out, 0) };
    for _ in 0..100_000 {
        let got = store.get_messages(topic, queue_id, at, per_pull, 1 << 20, None).await.unwrap();
        pulls += 1;
        if got.status != GetStatus::Found {
            break;
        }
        out.extend(got.messages);
        at = got.next_begin_offset;
    }
    (out, pulls)
}

#[test]
fn cold_windows_return_what_hot_reads_return() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), cold_config(u64::MAX)).await.unwrap();
        // Queue 0 dense (most records), queue 1 sparse: one record in forty.
        let mut last = None;
        for i in 0..12_000usize {
            let b = body(i, 50 + (i * 7919) % 1500);
            let queue = if i % 40 == 0 { 1 } else { 0 };
            last = Some(store.append(&[fields("C", queue, &b, b"TAGS\x01t\x02")], true).unwrap());
        }
        // Answers come in order: the last one means every record is written.
        last.unwrap().await.unwrap();
        store.sync_now().await.unwrap();
        let (hot0, _) = all_messages(&store, "C", 0, 32).await;
        let (hot1, _) = all_messages(&store, "C", 1, 32).await;
        store.close().await.unwrap();
        assert!(hot0.len() > 11_000);

        let store = Store::open_on(disk.clone(), cold_config(0)).await.unwrap();
        let before = disk.stats();
        let (cold0, pulls) = all_messages(&store, "C", 0, 32).await;
        let direct_reads = disk.stats().direct_reads - before.direct_reads;
        assert_eq!(cold0, hot0);
        assert_eq!(store.stats().hot_reads, 0, "every read was cold");
        // About 11 MB in 1 MiB windows: a dozen reads, not one per pull.
        assert!(direct_reads < pulls / 10, "{direct_reads} direct reads for {pulls} pulls");
        let (cold1, _) = all_messages(&store, "C", 1, 32).await;
        assert_eq!(cold1, hot1, "thin pulls read their own records");
        // Odd pull sizes move window boundaries relative to pulls.
        assert_eq!(all_messages(&store, "C", 0, 7).await.0, hot0);
    });
}

#[test]
fn a_cold_window_cut_at_the_written_end_is_not_served_past_it() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), cold_config(0)).await.unwrap();
        let mut bodies = Vec::new();
        for round in 0..4 {
            for i in 0..50 {
                let b = body(round * 1000 + i, 700);
                store.append(&[fields("W", 0, &b, b"")], true).unwrap().await.unwrap();
                bodies.push(b);
            }
            // Read everything cold, so the last window is cut at the written end; the
            // next round appends into that window's range.
            assert_eq!(read_bodies(&store, "W", 0).await, bodies);
        }
    });
}

#[test]
fn the_consume_queue_block_cache_sees_entries_persisted_later() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), small_config(DIR, 1 << 20)).await.unwrap();
        let mut bodies = Vec::new();
        let mut append = |n: usize| {
            let store = store.clone();
            let start = bodies.len();
            let new: Vec<Vec<u8>> = (start..start + n).map(|i| body(i, 100)).collect();
            bodies.extend(new.iter().cloned());
            async move {
                for b in &new {
                    store.append(&[fields("Q", 0, b, b"")], true).unwrap().await.unwrap();
                }
                // Persists the ConsumeQueue tail: later reads come from its files.
                store.sync_now().await.unwrap();
            }
        };
        append(100).await;
        // Caches the block holding entries 64..100 (files of 64 entries).
        let got = store.get_messages("Q", 0, q(90), 32, 1 << 20, None).await.unwrap();
        assert_eq!(got.messages.len(), 10);
        append(20).await;
        let got = store.get_messages("Q", 0, q(95), 32, 1 << 20, None).await.unwrap();
        assert_eq!(got.messages.len(), 25, "entries 95..120, past the block cached at 100");
        assert_eq!(got.next_begin_offset, q(120));
        assert_eq!(read_bodies(&store, "Q", 0).await, bodies);
    });
}
