//! `inspect`: a store directory read without changing a byte, finding exactly what the
//! store's own (repairing) recovery leaves.
//!
//! One written store is damaged in the ways a crash or a disk leaves it: a tail past the
//! checkpoint, a torn record, a flipped byte with valid records and whole segments after
//! it, garbage at the end of a ConsumeQueue file, a newest segment left short, a segment
//! created ahead and never written, a ConsumeQueue file after a gap, nothing at all. For
//! each, on two forks of the same `SimDisk`: `inspect` on one must leave every file's
//! bytes (live and durable images), every name and every directory as they were, and
//! make no write, sync or preparation (files it opens are read-only, so a write it should
//! not make fails instead); `Store::open_on` on the other must recover the same report,
//! CommitLog bounds, ConsumeQueue offsets and topic table.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use rockshard_storage::disk::OpenMode;
use rockshard_storage::testing::{SimDisk, SimStats};
use rockshard_storage::{
    inspect, Disk, DiskFile, FlushMode, Inspection, PhysicalOffset, QueueInfo, ScanStop, Store, StoreConfig,
    TopicConfig,
};

const DIR: &str = "/data";
const SEGMENT: u64 = 4096;
/// Records written: several segments' worth at 60..560 bytes each.
const RECORDS: usize = 48;
/// Records covered by the checkpoint; the rest lie in the rescanned tail.
const CHECKPOINTED: usize = 20;

fn config() -> StoreConfig {
    small_config(DIR, SEGMENT)
}

fn segment_path(base: u64) -> PathBuf {
    PathBuf::from(format!("{DIR}/commitlog/{base:020}"))
}

fn cq_path(topic: &str, queue: i32, first_entry: u64) -> PathBuf {
    PathBuf::from(format!("{DIR}/consumequeue/{topic}/{queue}/{:020}", first_entry * 20))
}

/// A store with a topic table, two queues, a checkpoint after `CHECKPOINTED` records and
/// a tail after it, then a crash (dropped, not closed). Returns the disk and where each
/// record went.
async fn written() -> (SimDisk, Vec<PhysicalOffset>, PhysicalOffset) {
    let disk = SimDisk::new();
    let store = Store::open_on(disk.clone(), config()).await.expect("open");
    store.upsert_topic(TopicConfig::new("T", 2, FlushMode::Sync)).await.expect("topic");
    let mut at = Vec::new();
    for i in 0..RECORDS {
        if i == CHECKPOINTED {
            store.sync_now().await.expect("checkpoint");
        }
        let b = body(i, 60 + (i * 53) % 500);
        let r = store.append(&[fields("T", (i % 2) as i32, &b, b"TAGS\x01x\x02")], true).unwrap().await.unwrap();
        at.push(r.records[0].physical_offset);
    }
    let end = store.commitlog_positions().2;
    drop(store);
    assert!(end.0 > 3 * SEGMENT, "the store spans several segments");
    (disk, at, end)
}

/// Every live file with its live and durable bytes, for before/after comparisons.
fn image(disk: &SimDisk) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    disk.files().into_iter().map(|p| (p.clone(), disk.contents(&p))).collect()
}

/// Runs `inspect` on a fork and `Store::open_on` on another, and checks both agree and
/// that `inspect` changed nothing. Returns what `inspect` found.
async fn agree(disk: &SimDisk, what: &str) -> Inspection {
    let looked = disk.fork();
    let before = image(&looked);
    let dirs_before = [
        looked.exists(Path::new(DIR)).await,
        looked.exists(&PathBuf::from(format!("{DIR}/commitlog"))).await,
        looked.exists(&PathBuf::from(format!("{DIR}/consumequeue"))).await,
        looked.exists(&PathBuf::from(format!("{DIR}/config"))).await,
    ];
    let found = inspect(&looked, &config()).await.unwrap_or_else(|e| panic!("{what}: inspect failed: {e}"));
    assert_eq!(image(&looked), before, "{what}: inspect changed a file's bytes or names");
    let dirs_after = [
        looked.exists(Path::new(DIR)).await,
        looked.exists(&PathBuf::from(format!("{DIR}/commitlog"))).await,
        looked.exists(&PathBuf::from(format!("{DIR}/consumequeue"))).await,
        looked.exists(&PathBuf::from(format!("{DIR}/config"))).await,
    ];
    assert_eq!(dirs_after, dirs_before, "{what}: inspect created a directory");
    let stats = looked.stats();
    assert_eq!(
        (stats.writes, stats.syncs, stats.durable_writes, stats.prepares),
        (0, 0, 0, 0),
        "{what}: inspect wrote or synced: {stats:?}"
    );
    // The durable images and names are unchanged too: a power loss now leaves the same
    // disk as one on an untouched fork.
    let untouched = disk.fork();
    untouched.power_loss();
    looked.power_loss();
    assert_eq!(image(&looked), image(&untouched), "{what}: inspect changed what survives a power loss");

    let opened = disk.fork();
    let store = Store::open_on(opened.clone(), config()).await.unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    assert_eq!(&found.report, store.recovery_report(), "{what}: scan report");
    let (min, _, written, _) = store.commitlog_positions();
    assert_eq!((found.min, found.end), (min, written), "{what}: CommitLog bounds");
    let mut queues: Vec<QueueInfo> = store.queue_infos();
    queues.sort_by(|a, b| (&a.topic, a.queue_id).cmp(&(&b.topic, b.queue_id)));
    assert_eq!(found.queues, queues, "{what}: ConsumeQueue offsets");
    assert_eq!(found.topics, store.topics(), "{what}: topic table");
    let kept: Vec<u64> = opened
        .files()
        .iter()
        .filter_map(|p| p.strip_prefix(format!("{DIR}/commitlog")).ok().and_then(|n| n.to_str()?.parse().ok()))
        .collect();
    assert_eq!(found.segments, kept, "{what}: the segments recovery keeps");
    drop(store);
    found
}

#[test]
fn inspect_finds_what_recovery_leaves_and_changes_nothing() {
    run(async {
        let (disk, at, end) = written().await;
        let last_segment = end.0 - end.0 % SEGMENT;

        let found = agree(&disk, "crash with a tail past the checkpoint").await;
        assert_eq!(found.end, end);
        assert_eq!(found.report.records_replayed as usize, RECORDS - CHECKPOINTED);
        assert_eq!(found.queues.iter().map(|q| q.max_offset.0).sum::<u64>() as usize, RECORDS);
        assert!(found.checkpoint.is_some());

        // A torn record: zeros from the middle of record 40 on.
        let torn = disk.fork();
        let cut_at = at[40].0 + 30;
        let base = cut_at - cut_at % SEGMENT;
        torn.corrupt(&segment_path(base), (cut_at - base) as usize, &vec![0; (SEGMENT - (cut_at - base)) as usize]);
        let found = agree(&torn, "torn record").await;
        assert_eq!(found.end, at[40]);

        // A flipped body byte in record 25, with valid records and segments after it.
        let flipped = disk.fork();
        let p = at[25].0 + 90;
        let base = p - p % SEGMENT;
        let byte = flipped.contents(&segment_path(base)).unwrap()[(p - base) as usize];
        flipped.corrupt(&segment_path(base), (p - base) as usize, &[byte ^ 0x10]);
        let found = agree(&flipped, "flipped byte").await;
        assert!(matches!(found.report.stop, ScanStop::Torn { at: t, .. } if t == at[25]), "{:?}", found.report);
        assert!(*found.segments.last().unwrap() < last_segment, "later segments are left out");

        // Garbage past the checkpointed entries of a ConsumeQueue file.
        let garbage = disk.fork();
        let cq = cq_path("T", 0, 0);
        let len = garbage.contents(&cq).map_or(0, |c| c.len());
        garbage.corrupt(&cq, len, &[0xab; 60]);
        agree(&garbage, "ConsumeQueue garbage").await;

        // The newest segment left short: what follows the end (or a record's middle)
        // was never allocated.
        for (past_end, expected_end) in [(7i64, end), (0, end), (-9, at[RECORDS - 1])] {
            let short = disk.fork();
            short.cut(&segment_path(last_segment), ((end.0 - last_segment) as i64 + past_end) as usize);
            let found = agree(&short, &format!("newest segment cut {past_end} bytes from the end")).await;
            assert_eq!(found.end, expected_end);
        }

        // A segment created ahead of need and never written.
        let ahead = disk.fork();
        let f = ahead.open(&segment_path(last_segment + SEGMENT), OpenMode::Create).await.unwrap();
        f.allocate(SEGMENT).await.unwrap();
        let found = agree(&ahead, "segment created ahead").await;
        assert_eq!(*found.segments.last().unwrap(), last_segment);

        // A ConsumeQueue file after a gap (entries 128.. with 64 per file, none for 64..).
        let gap = disk.fork();
        let f = gap.open(&cq_path("T", 1, 128), OpenMode::Create).await.unwrap();
        f.write_at(vec![0x11; 40], 0).await.unwrap();
        agree(&gap, "ConsumeQueue file after a gap").await;

        // A clean stop.
        let clean = disk.fork();
        Store::open_on(clean.clone(), config()).await.unwrap().close().await.unwrap();
        let found = agree(&clean, "clean stop").await;
        assert_eq!((found.report.records_replayed, found.report.stop.clone()), (0, ScanStop::CleanEnd));
    });
}

#[test]
fn inspect_of_an_empty_or_missing_directory_creates_nothing() {
    run(async {
        let found = agree(&SimDisk::new(), "nothing at all").await;
        assert_eq!((found.min, found.end, found.checkpoint), (PhysicalOffset(0), PhysicalOffset(0), None));
        assert!(found.queues.is_empty() && found.topics.is_empty() && found.segments.is_empty());
    });
}

#[test]
fn a_read_only_file_refuses_every_change() {
    run(async {
        let disk = SimDisk::new();
        disk.create_dir_all(Path::new(DIR)).await.unwrap();
        let path = PathBuf::from(format!("{DIR}/f"));
        disk.open(&path, OpenMode::Create).await.unwrap().write_at(b"kept".to_vec(), 0).await.unwrap();
        let f = disk.open(&path, OpenMode::ReadOnly).await.unwrap();
        let ebadf = |r: std::io::Result<()>| r.err().and_then(|e| e.raw_os_error()) == Some(libc::EBADF);
        assert!(ebadf(f.write_at(b"lost".to_vec(), 0).await));
        assert!(ebadf(f.write_at_durable(b"lost".to_vec(), 0).await));
        assert!(ebadf(f.allocate(4096).await));
        assert!(ebadf(f.zero_range(0, 4).await));
        assert!(ebadf(f.truncate(0).await));
        assert!(ebadf(f.prepare_range(0, 4096).await));
        assert_eq!(&f.read_at(0, 4).await.unwrap()[..], b"kept");
        assert_eq!(disk.contents(&path).as_deref(), Some(&b"kept"[..]));
        assert!(disk.open(&PathBuf::from(format!("{DIR}/new")), OpenMode::ReadOnly).await.is_err());
        assert_eq!(disk.stats(), SimStats { writes: 1, buffered_reads: 1, ..SimStats::default() });
    });
}
