//! Retention deletes whole segments, oldest first, by size or age; never the segment
//! being written and never data the checkpoint has not passed. ConsumeQueue min offsets
//! follow, and a read below them gets "offset moved" with where to resume, not garbage.
//! Also: offset lookups by store time, for consumers that reset by time.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use common::*;
use rockshard_storage::testing::SimDisk;
use rockshard_storage::{Boundary, GetStatus, Store, StoreConfig};

const DIR: &str = "/data";
const SEGMENT: u64 = 4096;

fn config() -> StoreConfig {
    small_config(DIR, SEGMENT)
}

async fn fill(store: &Store<SimDisk>, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for i in 0..n {
        let b = body(i, 200);
        store.append(&[fields("T", 0, &b, b"")], true).unwrap().await.unwrap();
        out.push(b);
    }
    out
}

#[test]
fn retention_by_bytes_deletes_the_oldest_segments_and_moves_min_offsets() {
    run(async {
        let disk = SimDisk::new();
        let mut c = config();
        c.retention_bytes = Some(3 * SEGMENT);
        let store = Store::open_on(disk.clone(), c.clone()).await.unwrap();
        let all = fill(&store, 200).await; // about 50 KB: a dozen segments
                                           // Nothing goes before the checkpoint has passed it.
        assert_eq!(store.apply_retention().await.unwrap(), 0);
        store.sync_now().await.unwrap();
        let deleted = store.apply_retention().await.unwrap();
        assert!(deleted >= 8, "deleted {deleted}");
        let (min_phys, ..) = store.commitlog_positions();
        assert_eq!(min_phys.0 % SEGMENT, 0);
        let segments = disk.files().into_iter().filter(|p| p.starts_with(format!("{DIR}/commitlog"))).count();
        assert!(segments <= 3, "{segments} segments left");

        let (min, max) = store.queue_offsets("T", 0).unwrap();
        assert!(min.0 > 0 && max.0 == 200);
        let r = store.get_messages("T", 0, q(0), 32, 1 << 20, None).await.unwrap();
        assert_eq!((r.status, r.next_begin_offset), (GetStatus::OffsetTooSmall, min));
        // From the new min everything left is intact.
        assert_eq!(read_bodies(&store, "T", 0).await, all[min.0 as usize..].to_vec());
        store.close().await.unwrap();

        // The moved min survives a restart.
        let store = Store::open_on(disk.clone(), c).await.unwrap();
        assert_eq!(store.queue_offsets("T", 0).unwrap(), (min, max));
        assert_eq!(read_bodies(&store, "T", 0).await, all[min.0 as usize..].to_vec());
    });
}

#[test]
fn retention_by_age_spares_young_segments_and_the_active_one() {
    run(async {
        let disk = SimDisk::new();
        let mut c = config();
        c.retention_hours = 1;
        let store = Store::open_on(disk.clone(), c).await.unwrap();
        fill(&store, 100).await;
        store.sync_now().await.unwrap();
        let mut segments: Vec<PathBuf> =
            disk.files().into_iter().filter(|p| p.starts_with(format!("{DIR}/commitlog"))).collect();
        segments.sort();
        assert!(segments.len() >= 4);
        // Age everything, even the active segment: it must survive anyway.
        let old = SystemTime::now() - Duration::from_secs(2 * 3600);
        for p in &segments {
            disk.set_modified(p, old);
        }
        // ... except the third: retention stops at the first young segment (oldest first).
        disk.set_modified(&segments[2], SystemTime::now());
        assert_eq!(store.apply_retention().await.unwrap(), 2);
        let left = disk.files().into_iter().filter(|p| p.starts_with(format!("{DIR}/commitlog"))).count();
        assert_eq!(left, segments.len() - 2);
        // Appends go on.
        let b = body(5000, 200);
        let r = store.append(&[fields("T", 0, &b, b"")], true).unwrap().await.unwrap();
        assert_eq!(r.records[0].queue_offset.0, 100);
    });
}

#[test]
fn retention_never_deletes_the_segment_being_written() {
    run(async {
        let disk = SimDisk::new();
        let mut c = config();
        c.retention_bytes = Some(1);
        let store = Store::open_on(disk.clone(), c).await.unwrap();
        fill(&store, 100).await;
        store.sync_now().await.unwrap();
        store.apply_retention().await.unwrap();
        let left = disk.files().into_iter().filter(|p| p.starts_with(format!("{DIR}/commitlog"))).count();
        assert_eq!(left, 1);
        let (min, max) = store.queue_offsets("T", 0).unwrap();
        let r = store.get_messages("T", 0, min, 32, 1 << 20, None).await.unwrap();
        assert_eq!(r.status, GetStatus::Found);
        assert_eq!(r.next_begin_offset, max.min(rockshard_storage::QueueOffset(min.0 + r.messages.len() as u64)));
    });
}

#[test]
fn offsets_by_store_time_and_the_earliest_store_time() {
    run(async {
        let disk = SimDisk::new();
        let store = Store::open_on(disk.clone(), config()).await.unwrap();
        assert_eq!(store.earliest_store_time("T", 0).await.unwrap(), None);
        let mut times = Vec::new();
        for batch in 0..4 {
            let mut t = 0;
            for i in 0..5 {
                let b = body(batch * 10 + i, 100);
                t = store.append(&[fields("T", 0, &b, b"")], true).unwrap().await.unwrap().store_timestamp_ms;
            }
            times.push(t);
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        // Batch k holds offsets 5k..5k+4, all stored at about times[k].
        assert_eq!(store.earliest_store_time("T", 0).await.unwrap().map(|t| t <= times[0]), Some(true));
        for (k, &t) in times.iter().enumerate() {
            let lower = store.offset_by_time("T", 0, t, Boundary::Lower).await.unwrap();
            let upper = store.offset_by_time("T", 0, t, Boundary::Upper).await.unwrap();
            // Batches are 5 ms apart, so the earlier batch is strictly before t and the
            // next strictly after: the last of batch k is exactly the upper bound, and the
            // lower bound lies inside batch k.
            let k = k as u64;
            assert!((5 * k..=5 * k + 4).contains(&lower.0), "lower {lower} for batch {k}");
            assert_eq!(upper.0, 5 * k + 4, "upper for batch {k}");
        }
        assert_eq!(store.offset_by_time("T", 0, 0, Boundary::Lower).await.unwrap(), q(0));
        assert_eq!(store.offset_by_time("T", 0, i64::MAX, Boundary::Lower).await.unwrap(), q(20));
        assert_eq!(store.offset_by_time("T", 0, i64::MAX, Boundary::Upper).await.unwrap(), q(19));
    });
}
