//! `sync` means durable: proved on a disk that loses power.
//!
//! A `kill -9` keeps the page cache and so proves only crash recovery. These tests use
//! [`SimDisk`], which on power loss drops every write not covered by an fdatasync (and,
//! in the torn variant, keeps a random half of the unsynced sectors, as a disk that
//! reorders writes may). Every record acknowledged under `sync` must survive, intact and
//! at its offset; nothing that is served after recovery may be garbage; and the group
//! commit must serve many waiters with one fdatasync.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::*;
use rockshard_storage::testing::SimDisk;
use rockshard_storage::{FlushMode, StorageError, Store, StoreConfig, TopicConfig};

const DIR: &str = "/data";

fn config() -> StoreConfig {
    small_config(DIR, 16 * 1024)
}

/// (queue id, queue offset, body) of each acknowledged record.
type Acks = Rc<RefCell<Vec<(i32, u64, Vec<u8>)>>>;

/// `writers` tasks each append `per_writer` records to `topic` one at a time and record
/// what was acknowledged. Returns when all are done.
async fn write_concurrently(store: &Store<SimDisk>, topic: &'static str, writers: usize, per_writer: usize) -> Acks {
    let acks: Acks = Rc::default();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        let acks = acks.clone();
        tasks.push(glommio::spawn_local(async move {
            for i in 0..per_writer {
                let seed = w * 10_000 + i;
                let b = body(seed, 50 + seed % 300);
                let queue = (w % 4) as i32;
                let r = store.append(&[fields(topic, queue, &b, b"")], true).unwrap().await.unwrap();
                acks.borrow_mut().push((queue, r.records[0].queue_offset.0, b));
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    acks
}

async fn assert_all_present(store: &Store<SimDisk>, topic: &str, acks: &[(i32, u64, Vec<u8>)]) {
    for queue in 0..4 {
        let bodies = read_bodies(store, topic, queue).await;
        for (q, off, b) in acks.iter().filter(|a| a.0 == queue) {
            assert_eq!(bodies.get(*off as usize), Some(b), "queue {q} offset {off} lost or changed");
        }
    }
}

#[test]
fn every_sync_acknowledged_record_survives_power_loss() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        store.upsert_topic(TopicConfig::new("S", 4, FlushMode::Sync)).await.unwrap();
        let acks = write_concurrently(&store, "S", 16, 40).await;
        assert_eq!(acks.borrow().len(), 640);
        drop(store);
        disk.power_loss();

        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        let acks = acks.borrow().clone();
        assert_all_present(&store, "S", &acks).await;
        assert_eq!(store.topic("S").unwrap().flush, FlushMode::Sync, "topic config is durable too");
    });
}

#[test]
fn every_sync_acknowledged_record_survives_a_torn_power_loss() {
    for seed in 1..=12u64 {
        run(async move {
            let disk = SimDisk::new();
            let store = Store::open_on(disk.clone(), config()).await.unwrap();
            store.upsert_topic(TopicConfig::new("S", 4, FlushMode::Sync)).await.unwrap();
            let acks = write_concurrently(&store, "S", 8, 25).await;
            // Unacknowledged async traffic in flight when the power goes.
            for i in 0..50 {
                let b = body(900_000 + i, 200);
                // Appended, never awaited: in flight when the power goes.
                drop(store.append(&[fields("A", 0, &b, b"")], true).unwrap());
            }
            drop(store);
            disk.power_loss_torn(seed);

            let store = Store::open_on(disk.clone(), config()).await.unwrap();
            let acks = acks.borrow().clone();
            assert_all_present(&store, "S", &acks).await;
            // Whatever survived of "A" is a valid prefix (read_bodies checks every CRC).
            let a = read_bodies(&store, "A", 0).await;
            for (i, b) in a.iter().enumerate() {
                assert_eq!(b, &body(900_000 + i, 200), "seed {seed}: A[{i}] is not what was written");
            }
        });
    }
}

#[test]
fn async_records_may_vanish_but_the_store_stays_consistent() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        for i in 0..100 {
            let b = body(i, 100);
            store.append(&[fields("A", 0, &b, b"")], true).unwrap().await.unwrap();
        }
        store.sync_now().await.unwrap();
        for i in 100..200 {
            let b = body(i, 100);
            store.append(&[fields("A", 0, &b, b"")], true).unwrap().await.unwrap();
        }
        drop(store);
        disk.power_loss();

        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        let bodies = read_bodies(&store, "A", 0).await;
        assert_eq!(bodies.len(), 100, "exactly the flushed records survive");
        // Offsets continue where the surviving data ends: no gap, no reuse confusion.
        let b = body(12345, 10);
        let r = store.append(&[fields("A", 0, &b, b"")], true).unwrap().await.unwrap();
        assert_eq!(r.records[0].queue_offset.0, 100);
    });
}

#[test]
fn group_commit_serves_many_waiters_with_one_fdatasync() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        store.upsert_topic(TopicConfig::new("S", 4, FlushMode::Sync)).await.unwrap();
        // A group commit is an fdatasync, or a write that is durable by itself (O_DSYNC).
        let syncs = |disk: &SimDisk| disk.stats().syncs + disk.stats().durable_writes;
        let before = syncs(&disk);
        let bodies: Vec<Vec<u8>> = (0..256).map(|i| body(i, 100)).collect();
        let waits: Vec<_> = bodies.iter().map(|b| store.append(&[fields("S", 0, b, b"")], true).unwrap()).collect();
        for w in waits {
            w.await.unwrap();
        }
        let syncs_taken = syncs(&disk) - before;
        assert!((1..=4).contains(&syncs_taken), "256 concurrent sync appends took {syncs_taken} fdatasyncs");

        // Writers that each wait for their own sync, with a slow disk: appends that arrive
        // while one fdatasync runs share the next one.
        disk.set_sync_delay(Some(Duration::from_millis(2)));
        let before = syncs(&disk);
        let acks = write_concurrently(&store, "S", 16, 10).await;
        let syncs = syncs(&disk) - before;
        assert_eq!(acks.borrow().len(), 160);
        assert!(syncs < 160 / 4, "160 sync appends from 16 writers took {syncs} fdatasyncs");
    });
}

/// With only `sync` traffic, every group commit finds the log durable up to its start,
/// so each is one O_DSYNC write and no fdatasync runs; power loss right after keeps
/// every acknowledged record. Async records written after it, never flushed, may go:
/// the O_DSYNC write made its own range durable, not the file.
#[test]
fn a_group_commit_after_a_durable_past_is_one_o_dsync_write() {
    run(async {
        let disk = SimDisk::new();
        // One segment: where a group spans two, its second chunk is issued while the
        // first is in flight, and is written then fdatasynced.
        let config = small_config(DIR, 1 << 20);
        let store = Store::open_on(disk.clone(), config.clone()).await.unwrap();
        store.upsert_topic(TopicConfig::new("S", 4, FlushMode::Sync)).await.unwrap();
        let (before, flushes_before) = (disk.stats(), store.stats().flushes);
        let acks = write_concurrently(&store, "S", 8, 20).await;
        let durable_writes = disk.stats().durable_writes - before.durable_writes;
        assert!(durable_writes > 0);
        assert_eq!(durable_writes, store.stats().flushes - flushes_before, "every group commit was an O_DSYNC write");
        for i in 0..5 {
            let b = body(700_000 + i, 100);
            store.append(&[fields("A", 0, &b, b"")], true).unwrap().await.unwrap();
        }
        drop(store);
        disk.power_loss();

        let store = Store::open_on(disk.clone(), config).await.unwrap();
        let acks = acks.borrow().clone();
        assert_all_present(&store, "S", &acks).await;
        assert!(read_bodies(&store, "A", 0).await.is_empty(), "unflushed async records are not durable");
    });
}

/// A store whose `sync` appends time out after 50 ms, with a `sync` topic "S".
async fn sync_store_with_50ms_timeout() -> (SimDisk, Store<SimDisk>) {
    let disk = SimDisk::new();
    let mut c = config();
    c.sync_flush_timeout_ms = 50;
    let store = Store::open_on(disk.clone(), c).await.unwrap();
    store.upsert_topic(TopicConfig::new("S", 1, FlushMode::Sync)).await.unwrap();
    (disk, store)
}

#[test]
fn a_sync_append_that_waits_too_long_gets_a_timeout_not_success() {
    run(async {
        let (disk, store) = sync_store_with_50ms_timeout().await;
        // An append not waiting for its flush: with such traffic about, group commits are
        // written, then fdatasynced (see the next test for the other way).
        let a = body(0, 100);
        store.append(&[fields("S", 0, &a, b"")], false).unwrap().await.unwrap();
        disk.set_sync_delay(Some(Duration::from_millis(400)));
        let b = body(1, 100);
        let err = store.append(&[fields("S", 0, &b, b"")], true).unwrap().await.unwrap_err();
        assert!(matches!(err, StorageError::FlushTimeout { timeout_ms: 50, .. }), "{err}");
        // The record was written (and is readable) even though its flush was late.
        assert_eq!(read_bodies(&store, "S", 0).await, vec![a.clone(), b.clone()]);
        // With WAIT=false a sync topic's append is answered once written.
        let w = store.append(&[fields("S", 0, &b, b"")], false).unwrap();
        let started = std::time::Instant::now();
        w.await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(400), "did not wait for the slow flush");
    });
}

/// The same stall when the group commit is one O_DSYNC write: a timeout, never success,
/// and the record (written by the write that stalled) readable once the disk answers.
#[test]
fn a_stalled_o_dsync_group_commit_times_out_not_succeeds() {
    run(async {
        let (disk, store) = sync_store_with_50ms_timeout().await;
        disk.set_sync_delay(Some(Duration::from_millis(300)));
        let b = body(1, 100);
        let err = store.append(&[fields("S", 0, &b, b"")], true).unwrap().await.unwrap_err();
        assert!(matches!(err, StorageError::FlushTimeout { timeout_ms: 50, .. }), "{err}");
        assert_eq!(disk.stats().durable_writes, 0, "the O_DSYNC write is still under way");
        disk.set_sync_delay(None);
        // Bounded: the stalled write completes 300 ms after it began.
        for _ in 0..100 {
            if disk.stats().durable_writes == 1 {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(disk.stats().durable_writes, 1);
        assert_eq!(read_bodies(&store, "S", 0).await, vec![b.clone()]);
        drop(store);
        disk.power_loss();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        assert_eq!(read_bodies(&store, "S", 0).await, vec![b], "the stalled write did complete, durably");
    });
}

#[test]
fn changing_a_topic_to_sync_at_run_time_makes_its_next_appends_durable() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        store.upsert_topic(TopicConfig::new("T", 1, FlushMode::Async)).await.unwrap();
        let mut expected = Vec::new();
        for i in 0..10 {
            let b = body(i, 100);
            store.append(&[fields("T", 0, &b, b"")], true).unwrap().await.unwrap();
            expected.push(b);
        }
        store.upsert_topic(TopicConfig::new("T", 1, FlushMode::Sync)).await.unwrap();
        assert_eq!(store.flush_mode("T"), FlushMode::Sync);
        for i in 10..20 {
            let b = body(i, 100);
            store.append(&[fields("T", 0, &b, b"")], true).unwrap().await.unwrap();
            expected.push(b);
        }
        drop(store);
        disk.power_loss();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        // The sync appends' fdatasync covered the async ones before them too.
        assert_eq!(read_bodies(&store, "T", 0).await, expected);
    });
}

#[test]
fn recovery_scans_only_what_came_after_the_checkpoint() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        for i in 0..2000 {
            let b = body(i, 200);
            store.append(&[fields("A", (i % 4) as i32, &b, b"")], true).unwrap().await.unwrap();
        }
        store.sync_now().await.unwrap();
        let (_, checkpointed, _, _) = store.commitlog_positions();
        for i in 2000..2010 {
            let b = body(i, 200);
            store.append(&[fields("A", (i % 4) as i32, &b, b"")], true).unwrap().await.unwrap();
        }
        let (_, _, written, _) = store.commitlog_positions();
        drop(store); // A crash: no close, no final checkpoint. The page cache survives.

        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        let report = store.recovery_report().clone();
        assert_eq!(report.checkpoint, checkpointed);
        assert_eq!(report.end, written);
        assert_eq!(report.scanned_bytes, written.0 - checkpointed.0, "{report:?}");
        assert_eq!(report.records_replayed, 10);
        let total: usize = read_bodies(&store, "A", 0).await.len()
            + read_bodies(&store, "A", 1).await.len()
            + read_bodies(&store, "A", 2).await.len()
            + read_bodies(&store, "A", 3).await.len();
        assert_eq!(total, 2010);
    });
}

#[test]
fn concurrent_checkpoints_run_one_at_a_time() {
    // Found by the benches: sync_now racing the maintenance task's checkpoint persisted
    // the same ConsumeQueue tail twice and panicked.
    run(async {
        let disk = SimDisk::new();
        disk.set_sync_delay(Some(Duration::from_millis(1)));
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        for i in 0..200 {
            let b = body(i, 100);
            store.append(&[fields("A", 0, &b, b"")], true).unwrap().await.unwrap();
        }
        let (a, b) = (store.clone(), store.clone());
        let t1 = glommio::spawn_local(async move { a.sync_now().await });
        let t2 = glommio::spawn_local(async move { b.sync_now().await });
        t1.await.unwrap();
        t2.await.unwrap();
        store.close().await.unwrap();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        assert_eq!(read_bodies(&store, "A", 0).await.len(), 200);
    });
}
