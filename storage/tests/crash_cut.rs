//! Crash recovery against damaged files: a CommitLog cut at every interesting byte
//! (inside a record's header, its body, a BLANK filler, on boundaries) and single flipped
//! bytes. After each, recovery must keep every record before the damage intact, serve
//! nothing after it, rebuild the ConsumeQueues to match, and leave a store that takes new
//! appends at the right offsets and reopens to the same state.
//!
//! Undetectable by design (as in RocketMQ): a flip in header fields no check covers
//! (FLAG, timestamps, hosts), since BODYCRC covers only the body.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::cell::RefCell;
use std::path::PathBuf;

use common::*;
use rockshard_net::properties;
use rockshard_net::stored::FIXED_PREFIX_V4_BYTES;
use rockshard_storage::testing::SimDisk;
use rockshard_storage::{AppendedRecord, GetStatus, PhysicalOffset, QueueOffset, ScanStop, Store, StoreConfig};

const DIR: &str = "/data";
const SEGMENT: u64 = 4096;

fn config() -> StoreConfig {
    small_config(DIR, SEGMENT)
}

#[derive(Clone)]
struct Written {
    queue: i32,
    at: AppendedRecord,
    body: Vec<u8>,
}

struct Layout {
    disk: SimDisk,
    records: Vec<Written>,
    /// BLANK fillers: (start, length).
    blanks: Vec<(u64, u64)>,
    checkpoint: PhysicalOffset,
    end: PhysicalOffset,
}

fn segment_path(base: u64) -> PathBuf {
    PathBuf::from(format!("{DIR}/commitlog/{base:020}"))
}

/// Writes records of varied sizes to two queues across several segments. With
/// `checkpoint_after`, the first that many records are checkpointed (their ConsumeQueue
/// entries persisted) and only the rest are exposed to damage.
async fn build(checkpoint_after: Option<usize>) -> Layout {
    let disk = SimDisk::new();
    let store = Store::open_on(disk.clone(), config()).await.unwrap();
    let mut records = Vec::new();
    let mut checkpoint = PhysicalOffset(0);
    for i in 0..36 {
        if Some(i) == checkpoint_after {
            store.sync_now().await.unwrap();
            checkpoint = store.commitlog_positions().1;
        }
        let b = body(i, 60 + (i * 37) % 500);
        let queue = (i % 2) as i32;
        let r = store.append(&[fields("T", queue, &b, b"TAGS\x01x\x02")], true).unwrap().await.unwrap();
        records.push(Written { queue, at: r.records[0], body: b });
    }
    let end = store.commitlog_positions().2;
    drop(store); // A crash: the checkpoint stays where it was.
    let mut blanks = Vec::new();
    for pair in records.windows(2) {
        let prev_end = pair[0].at.physical_offset.0 + u64::from(pair[0].at.size);
        if pair[1].at.physical_offset.0 != prev_end {
            assert_eq!(pair[1].at.physical_offset.0 % SEGMENT, 0, "a gap is a BLANK up to a segment start");
            blanks.push((prev_end, pair[1].at.physical_offset.0 - prev_end));
        }
    }
    assert!(blanks.len() >= 2, "the layout must exercise BLANK fillers");
    Layout { disk, records, blanks, checkpoint, end }
}

/// Zeros the CommitLog from `at` to the end of everything written.
fn cut(disk: &SimDisk, at: u64, end: u64) {
    let mut base = at - at % SEGMENT;
    while base < end {
        let from = at.max(base);
        let to = (base + SEGMENT).min(end.div_ceil(SEGMENT) * SEGMENT);
        disk.corrupt(&segment_path(base), (from - base) as usize, &vec![0; (to - from) as usize]);
        base += SEGMENT;
    }
}

fn flip(disk: &SimDisk, at: u64) {
    let base = at - at % SEGMENT;
    let path = segment_path(base);
    let byte = disk.contents(&path).unwrap()[(at - base) as usize];
    disk.corrupt(&path, (at - base) as usize, &[byte ^ 0x01]);
}

/// Opens the damaged store and checks that exactly `survivors` are served, then that it
/// takes new appends at the right offsets and reopens identically.
async fn check(disk: SimDisk, survivors: &[Written], what: &str) {
    let store = Store::open_on(disk.clone(), config()).await.unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
    for queue in 0..2 {
        let expected: Vec<&Vec<u8>> = survivors.iter().filter(|w| w.queue == queue).map(|w| &w.body).collect();
        let got = read_bodies(&store, "T", queue).await;
        assert_eq!(got.len(), expected.len(), "{what}: queue {queue} record count");
        if let Some(i) = got.iter().zip(&expected).position(|(g, e)| g != *e) {
            panic!("{what}: queue {queue} record {i} differs from what was written");
        }
        let max = store.queue_offsets("T", queue).map_or(0, |(_, max)| max.0);
        assert_eq!(max as usize, expected.len(), "{what}: queue {queue} max offset");
    }
    let b = body(777_777, 123);
    let r = store.append(&[fields("T", 0, &b, b"")], true).unwrap().await.unwrap();
    let q0 = survivors.iter().filter(|w| w.queue == 0).count() as u64;
    assert_eq!(r.records[0].queue_offset.0, q0, "{what}: next offset after recovery");
    drop(store);
    let store = Store::open_on(disk, config()).await.unwrap();
    let got = read_bodies(&store, "T", 0).await;
    assert_eq!(got.len() as u64, q0 + 1, "{what}: reopen after the new append");
    assert_eq!(got.last(), Some(&b), "{what}: the new append survived a second recovery");
}

fn interesting_cuts(layout: &Layout) -> Vec<(u64, String)> {
    let mut cuts = Vec::new();
    for (i, w) in layout.records.iter().enumerate() {
        let (p, size) = (w.at.physical_offset.0, u64::from(w.at.size));
        for d in [0, 1, 4, 8, 12, 20, 28, 40, FIXED_PREFIX_V4_BYTES as u64, 88, size / 2, size - 1] {
            cuts.push((p + d, format!("record {i} + {d}")));
        }
    }
    for (i, &(b, len)) in layout.blanks.iter().enumerate() {
        for d in [0, 4, 7, 8, len / 2, len - 1] {
            cuts.push((b + d, format!("blank {i} + {d}")));
        }
    }
    cuts.push((layout.end.0, "the end".into()));
    cuts.retain(|(c, _)| *c >= layout.checkpoint.0);
    cuts
}

fn run_cuts(checkpoint_after: Option<usize>) {
    run(async move {
        let layout = build(checkpoint_after).await;
        let cuts = interesting_cuts(&layout);
        assert!(cuts.len() > 100);
        for (at, what) in cuts {
            let disk = layout.disk.fork();
            cut(&disk, at, layout.end.0);
            let survivors: Vec<Written> = layout
                .records
                .iter()
                .filter(|w| w.at.physical_offset.0 + u64::from(w.at.size) <= at)
                .cloned()
                .collect();
            check(disk, &survivors, &format!("cut at {at} ({what})")).await;
        }
    });
}

#[test]
fn a_cut_anywhere_keeps_every_record_before_it_and_nothing_after() {
    run_cuts(None);
}

#[test]
fn a_cut_after_a_checkpoint_rebuilds_only_what_followed_it() {
    run_cuts(Some(15));
}

#[test]
fn a_flipped_byte_ends_the_log_at_its_record() {
    run(async {
        let layout = build(Some(10)).await;
        let mut checked = 0;
        for (i, w) in layout.records.iter().enumerate().skip(10) {
            let p = w.at.physical_offset.0;
            // TOTALSIZE, MAGICCODE, QUEUEOFFSET, PHYSICALOFFSET, body: each has a check.
            for (field, d) in [("size", 3), ("magic", 5), ("queue offset", 27), ("physical offset", 35), ("body", 90)] {
                let disk = layout.disk.fork();
                flip(&disk, p + d);
                let survivors: Vec<Written> =
                    layout.records.iter().filter(|r| r.at.physical_offset.0 < p).cloned().collect();
                let what = format!("record {i}: flipped {field}");
                {
                    let store = Store::open_on(disk.clone(), config()).await.unwrap();
                    assert!(
                        matches!(store.recovery_report().stop, ScanStop::Torn { at, .. } if at.0 == p),
                        "{what}: {:?}",
                        store.recovery_report()
                    );
                }
                check(disk, &survivors, &what).await;
                checked += 1;
            }
        }
        assert!(checked >= 100);
    });
}

/// A stand-in for a store owner's tag-code rule (the broker's is RocketMQ's delay topic):
/// a record of topic `Timed` with a `WHEN` property gets store time + WHEN as its code.
fn timed_rule(topic: &[u8], props: &[u8], store_timestamp_ms: i64) -> Option<i64> {
    if topic != b"Timed" {
        return None;
    }
    let when = properties::get(props, "WHEN")?.parse::<i64>().ok()?;
    Some(store_timestamp_ms + when)
}

/// The tag code of every entry of queue 0 of `topic`, in order, as a pull's filter sees it.
async fn tag_codes(store: &Store<SimDisk>, topic: &str) -> Vec<i64> {
    let seen = RefCell::new(Vec::new());
    let filter = |code: i64| {
        seen.borrow_mut().push(code);
        true
    };
    let got = store.get_messages(topic, 0, QueueOffset(0), 100, usize::MAX, Some(&filter)).await.unwrap();
    assert_eq!(got.status, GetStatus::Found);
    seen.into_inner()
}

/// The config's tag-code rule decides the codes at append, and recovery, replaying the
/// records past the checkpoint, rebuilds exactly those codes; records the rule passes
/// over keep their tag hash.
#[test]
fn recovery_rebuilds_the_tag_codes_the_rule_gave_at_append() {
    run(async {
        let disk = SimDisk::new();
        let mut config = config();
        config.tag_code_rule = timed_rule;
        let store = Store::open_on(disk.clone(), config.clone()).await.unwrap();
        let mut timed = Vec::new();
        for i in 0..10 {
            let props = format!("TAGS\x01t{i}\x02WHEN\x01{}", 1_000 * i);
            let b = body(i, 100);
            let r = store.append(&[fields("Timed", 0, &b, props.as_bytes())], true).unwrap().await.unwrap();
            timed.push(r.store_timestamp_ms + 1_000 * i as i64);
        }
        let plain_props: &[u8] = b"TAGS\x01t1\x02WHEN\x015";
        store.append(&[fields("Plain", 0, b"plain", plain_props)], true).unwrap().await.unwrap();
        let plain = vec![properties::tags_code(plain_props)];
        assert_ne!(plain, vec![0]);
        assert_eq!(tag_codes(&store, "Timed").await, timed);
        assert_eq!(tag_codes(&store, "Plain").await, plain);

        drop(store); // A crash: the checkpoint stays at the open's, before every record.
        let store = Store::open_on(disk.clone(), config.clone()).await.unwrap();
        assert_eq!(store.recovery_report().records_replayed, 11, "every entry is rebuilt");
        assert_eq!(tag_codes(&store, "Timed").await, timed);
        assert_eq!(tag_codes(&store, "Plain").await, plain);
    });
}
