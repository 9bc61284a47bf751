//! The store on the real disk (GlommioDisk: buffered files and O_DIRECT over io_uring),
//! where SimDisk cannot say anything: alignment, the page cache, the kernel's coherence
//! between buffered writes and direct reads.
//!
//! What it proves:
//! - Hot reads (page cache) and cold reads (O_DIRECT, which needs aligned buffers and
//!   offsets the store must arrange) return identical bytes, equal to the segment files
//!   read with std: whole records at unaligned starts, arbitrary ranges, ranges ending at
//!   a segment's end, and ranges on both sides of (and across) the hot/cold boundary.
//!   `stats()` shows which path each read took, so the comparison is not hot vs hot.
//! - `get_messages` served cold returns the same bytes as served hot.
//! - Writes through the O_DSYNC descriptor (group commits) and the buffered one meet in
//!   the page cache and on the disk.
//! - A clean close and reopen loses nothing, and recovery scans nothing (`scanned_bytes`
//!   is 0): the final checkpoint covers the whole log.
//!
//! The store lives under `CARGO_TARGET_TMPDIR` (the real disk; tmpfs refuses O_DIRECT).
//! Single executor, one store open at a time: each phase closes the store before the
//! next opens it with another hot window.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::*;
use rockshard_net::stored::{self, Record};
use rockshard_storage::commitlog::segment_name;
use rockshard_storage::{PhysicalOffset, QueueOffset, Store, StoreConfig};

const TOPIC: &str = "RD";
const QUEUES: i32 = 3;
/// Small segments, so 800 records fill about 20 of them and many reads sit near a
/// boundary.
const SEGMENT_BYTES: u64 = 64 * 1024;
const RECORDS: usize = 800;
/// Bodies of 1 to 3000 bytes: record sizes of every residue, so record starts fall on
/// every alignment an O_DIRECT read has to fix up.
const BODY_MAX: u64 = 3_000;
/// Random ranges checked per phase.
const RANGES: usize = 400;

fn config(dir: &Path, hot_window_bytes: u64) -> StoreConfig {
    let mut c = small_config(dir.to_str().expect("a UTF-8 temp path"), SEGMENT_BYTES);
    c.hot_window_bytes = hot_window_bytes;
    c
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One appended record as the test knows it.
#[derive(Clone)]
struct Written {
    queue_id: i32,
    queue_offset: QueueOffset,
    at: PhysicalOffset,
    size: u32,
    body: Vec<u8>,
}

/// `[at, at + len)`, inside one segment.
#[derive(Clone, Copy, Debug)]
struct Range {
    at: u64,
    len: usize,
}

/// Ranges in `[0, written)`: random ones inside a segment, and ones ending at a
/// segment's last byte. (Ranges crossing into the next segment: see
/// `cold_reads_do_not_run_past_the_end_of_a_file` below.)
fn ranges(rng: &mut Rng, written: u64) -> Vec<Range> {
    let mut inside = Vec::new();
    for _ in 0..RANGES {
        let at = rng.below(written);
        let seg_end = (at / SEGMENT_BYTES + 1) * SEGMENT_BYTES;
        let room = seg_end.min(written) - at;
        let len = 1 + rng.below(room.min(20_000)) as usize;
        inside.push(Range { at, len });
    }
    for seg_end in (SEGMENT_BYTES..written).step_by(SEGMENT_BYTES as usize).take(8) {
        let back = 1 + rng.below(3_000);
        inside.push(Range { at: seg_end - back, len: back as usize });
    }
    inside
}

/// The CommitLog as the files hold it, read with std (no store code involved).
fn log_image(dir: &Path, written: u64) -> Vec<u8> {
    let mut image = Vec::new();
    for base in (0..written).step_by(SEGMENT_BYTES as usize) {
        let seg = std::fs::read(dir.join("commitlog").join(segment_name(base))).expect("segment file");
        assert_eq!(seg.len() as u64, SEGMENT_BYTES, "segments are preallocated to their size");
        image.extend_from_slice(&seg);
    }
    image.truncate(written as usize);
    image
}

/// Every record of every queue via `get_messages`, in queue order.
async fn all_messages(store: &Store, queue_id: i32) -> Vec<Bytes> {
    let (min, max) = store.queue_offsets(TOPIC, queue_id).expect("queue exists");
    let mut out = Vec::new();
    let mut at = min;
    for _ in 0..=(max.0 - min.0) {
        if at >= max {
            break;
        }
        let got = store.get_messages(TOPIC, queue_id, at, 32, 256 * 1024, None).await.expect("get_messages");
        assert_eq!(got.status, rockshard_storage::GetStatus::Found);
        out.extend(got.messages);
        at = got.next_begin_offset;
    }
    assert_eq!(at, max);
    out
}

#[test]
fn hot_and_cold_reads_agree_and_clean_reopen_loses_nothing() {
    let root = tempfile::Builder::new()
        .prefix("real-disk-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a directory on the real disk");
    let dir = root.path().to_path_buf();
    run(async move {
        let mut rng = Rng(0x0D15_EA5E);

        // Phase 1: write on a store whose hot window covers everything, and read it all
        // back hot before anything is flushed (page-cache reads of written data).
        let store = Store::open(config(&dir, u64::MAX)).await.expect("open");
        let mut written: Vec<Written> = Vec::new();
        for i in 0..RECORDS {
            let queue_id = (i % QUEUES as usize) as i32;
            let b = body(i, 1 + rng.below(BODY_MAX) as usize);
            let props: &[u8] = if i % 2 == 0 { b"TAGS\x01even\x02" } else { b"" };
            let r = store.append(&[fields(TOPIC, queue_id, &b, props)], true).expect("append").await.expect("written");
            let rec = r.records[0];
            written.push(Written {
                queue_id,
                queue_offset: rec.queue_offset,
                at: rec.physical_offset,
                size: rec.size,
                body: b,
            });
        }
        let (_, _, end, _) = store.commitlog_positions();
        assert!(end.0 > 10 * SEGMENT_BYTES, "the records span many segments");
        let unaligned = written.iter().filter(|w| w.at.0 % 512 != 0).count();
        assert!(unaligned > RECORDS * 9 / 10, "record starts are mostly unaligned: {unaligned}");
        let inside = ranges(&mut rng, end.0);

        let mut hot_records = Vec::new();
        for w in &written {
            hot_records.push(store.read_message(w.at).await.expect("hot read_message"));
        }
        let mut hot_ranges = Vec::new();
        for r in &inside {
            hot_ranges.push(store.read_log(PhysicalOffset(r.at), r.len).await.expect("hot read_log"));
        }
        let mut hot_messages = Vec::new();
        for q in 0..QUEUES {
            hot_messages.push(all_messages(&store, q).await);
        }
        let s = store.stats();
        assert_eq!(s.cold_reads, 0, "a window covering the log makes every read hot: {s:?}");
        assert!(s.hot_reads > 0);
        store.close().await.expect("clean close");
        drop(store);

        // The truth: the files as std reads them. The hot reads above must match them,
        // and every record must sit where the store said, holding its body.
        let image = log_image(&dir, end.0);
        let slice = |at: u64, len: usize| &image[at as usize..at as usize + len];
        for (w, hot) in written.iter().zip(&hot_records) {
            assert_eq!(&hot[..], slice(w.at.0, w.size as usize), "hot record at {} vs the file", w.at);
            let Ok(Some(Record::Message(v))) = stored::decode(hot) else { panic!("a record at {}", w.at) };
            assert_eq!(v.body, &w.body[..]);
            assert_eq!((v.header.queue_id, v.header.queue_offset as u64), (w.queue_id, w.queue_offset.0));
        }
        for (r, hot) in inside.iter().zip(&hot_ranges) {
            assert_eq!(&hot[..], slice(r.at, r.len), "hot range {r:?} vs the file");
        }

        // Phase 2: reopen with no hot window: every read is O_DIRECT.
        let store = Store::open(config(&dir, 0)).await.expect("reopen cold");
        assert_eq!(store.recovery_report().scanned_bytes, 0, "{:?}", store.recovery_report());
        assert_eq!(store.commitlog_positions().2, end, "the log ends where it did");
        for (w, hot) in written.iter().zip(&hot_records) {
            let before = store.stats().cold_reads;
            let cold = store.read_message(w.at).await.expect("cold read_message");
            assert!(store.stats().cold_reads > before, "read_message at {} went cold", w.at);
            assert_eq!(cold, hot, "record at {} (offset mod 512 = {})", w.at, w.at.0 % 512);
        }
        for (r, hot) in inside.iter().zip(&hot_ranges) {
            let cold = store.read_log(PhysicalOffset(r.at), r.len).await.expect("cold read_log");
            assert_eq!(&cold, hot, "cold range {r:?}");
        }
        for q in 0..QUEUES {
            let cold = all_messages(&store, q).await;
            assert_eq!(cold, hot_messages[q as usize], "queue {q}: get_messages cold vs hot");
        }
        let s = store.stats();
        assert_eq!(s.hot_reads, 0, "a zero window makes every read cold: {s:?}");
        store.close().await.expect("clean close");
        drop(store);

        // Phase 3: a window ending mid-log. Reads starting below the boundary go cold,
        // at or above it hot; ranges straddling it must read the same either way.
        let hot_window = end.0 / 2 + 777;
        let boundary = end.0 - hot_window;
        let store = Store::open(config(&dir, hot_window)).await.expect("reopen with a window");
        assert_eq!(store.recovery_report().scanned_bytes, 0, "{:?}", store.recovery_report());
        let seg_end = (boundary / SEGMENT_BYTES + 1) * SEGMENT_BYTES;
        let straddle_from = boundary.saturating_sub(1_000).max(seg_end - SEGMENT_BYTES);
        let straddle = Range { at: straddle_from, len: (seg_end.min(boundary + 1_000) - straddle_from) as usize };
        for (r, expect_cold) in [
            (straddle, true),
            (Range { at: boundary - 1, len: 2 }, true),
            (Range { at: boundary, len: 1 }, false),
            (Range { at: boundary, len: (seg_end - boundary) as usize }, false),
        ] {
            let before = store.stats();
            let got = store.read_log(PhysicalOffset(r.at), r.len).await.expect("read across the hot boundary");
            let after = store.stats();
            assert_eq!(&got[..], slice(r.at, r.len), "range {r:?} around the hot boundary {boundary}");
            let went_cold = after.cold_reads > before.cold_reads;
            assert_eq!(went_cold, expect_cold, "range {r:?} against boundary {boundary}: {after:?}");
        }
        for r in &inside {
            let got = store.read_log(PhysicalOffset(r.at), r.len).await.expect("read_log");
            assert_eq!(&got[..], slice(r.at, r.len), "range {r:?} with the boundary at {boundary}");
        }
        for q in 0..QUEUES {
            assert_eq!(all_messages(&store, q).await, hot_messages[q as usize], "queue {q}: mixed hot and cold");
        }
        let s = store.stats();
        assert!(s.hot_reads > 0 && s.cold_reads > 0, "both paths were used: {s:?}");
        store.close().await.expect("clean close");
        drop(store);

        // Phase 4: a plain reopen after the clean closes: nothing lost, nothing scanned.
        let store = Store::open(config(&dir, u64::MAX)).await.expect("reopen");
        assert_eq!(store.recovery_report().scanned_bytes, 0, "{:?}", store.recovery_report());
        for q in 0..QUEUES {
            let expected: Vec<Vec<u8>> = written.iter().filter(|w| w.queue_id == q).map(|w| w.body.clone()).collect();
            assert_eq!(store.queue_offsets(TOPIC, q), Some((QueueOffset(0), QueueOffset(expected.len() as u64))));
            assert!(read_bodies(&store, TOPIC, q).await == expected, "queue {q} after reopen");
        }
        store.close().await.expect("clean close");
    });
}

#[test]
fn cold_reads_do_not_run_past_the_end_of_a_file() {
    // The Disk contract (storage/src/disk/mod.rs): read_at and read_direct return
    // identical bytes for the same range, and fewer bytes only at the end of the file.
    // Through the store this shows as read_log of a range that crosses a segment's end:
    // refused hot (UnexpectedEof), but served cold with bytes that are not in the log.
    use rockshard_storage::disk::{Disk, DiskFile, OpenMode};
    use rockshard_storage::GlommioDisk;
    let root = tempfile::Builder::new()
        .prefix("real-disk-eof-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a directory on the real disk");
    let path = root.path().join("file");
    run(async move {
        let file = GlommioDisk.open(&path, OpenMode::Create).await.expect("create");
        file.write_at(vec![7u8; 10_000], 0).await.expect("write");
        file.sync_data().await.expect("sync");
        for (pos, len) in [(9_990u64, 100usize), (9_000, 4_096), (8_192, 2_000), (9_999, 1)] {
            let buffered = file.read_at(pos, len).await.expect("buffered read");
            let direct = file.read_direct(pos, len).await.expect("direct read");
            assert_eq!(buffered.len() as u64, (10_000 - pos).min(len as u64), "buffered read of {len} at {pos}");
            assert_eq!(
                direct.len(),
                buffered.len(),
                "direct read of {len} at {pos} in a 10000-byte file returned {} bytes",
                direct.len()
            );
            assert_eq!(direct, buffered);
        }

        // The same through the store: a range across the end of segment 0, served cold.
        let dir = root.path().join("store");
        let store = Store::open(config(&dir, u64::MAX)).await.expect("open");
        for i in 0..120 {
            let b = body(i, 1 + (i * 97) % 1_500);
            store.append(&[fields(TOPIC, 0, &b, b"")], true).expect("append").await.expect("written");
        }
        let (_, _, end, _) = store.commitlog_positions();
        assert!(end.0 > SEGMENT_BYTES + 3_000, "past the first segment");
        let range = Range { at: SEGMENT_BYTES - 10, len: 20 };
        let hot = store.read_log(PhysicalOffset(range.at), range.len).await;
        store.close().await.expect("close");
        drop(store);
        let image = log_image(&dir, end.0);
        let store = Store::open(config(&dir, 0)).await.expect("reopen cold");
        let cold = store.read_log(PhysicalOffset(range.at), range.len).await;
        store.close().await.expect("close");
        if let Ok(cold) = &cold {
            assert_eq!(&cold[..], &image[range.at as usize..][..range.len], "cold read across a segment end");
        }
        assert_eq!(hot.is_ok(), cold.is_ok(), "hot {hot:?} vs cold {cold:?}");
    });
}

#[test]
fn o_dsync_writes_land_where_buffered_and_direct_reads_and_std_see_them() {
    // write_at_durable goes through a second descriptor opened O_DSYNC: its bytes must
    // meet the buffered descriptor's in the page cache, at unaligned offsets, on both
    // sides of a page boundary, and be what O_DIRECT reads (from the disk) return.
    use rockshard_storage::disk::{Disk, DiskFile, OpenMode};
    use rockshard_storage::GlommioDisk;
    let root = tempfile::Builder::new()
        .prefix("real-disk-dsync-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a directory on the real disk");
    let path = root.path().join("file");
    let path2 = path.clone();
    let expected = run(async move {
        let file = GlommioDisk.open(&path2, OpenMode::Create).await.expect("create");
        file.allocate(64 << 10).await.expect("allocate");
        let mut expected = vec![0u8; 64 << 10];
        let mut at = 0usize;
        for (i, len) in [1_000usize, 3_097, 4_096, 77, 9_000, 5_555].into_iter().enumerate() {
            let bytes: Vec<u8> = (0..len).map(|j| (i * 31 + j) as u8).collect();
            expected[at..at + len].copy_from_slice(&bytes);
            if i % 2 == 0 {
                file.write_at_durable(bytes, at as u64).await.expect("O_DSYNC write");
            } else {
                file.write_at(bytes, at as u64).await.expect("buffered write");
            }
            at += len;
        }
        let buffered = file.read_at(0, at).await.expect("buffered read");
        let direct = file.read_direct(0, at).await.expect("direct read");
        assert_eq!(&buffered[..], &expected[..at]);
        assert_eq!(&direct[..], &expected[..at]);
        expected
    });
    let on_disk = std::fs::read(&path).expect("std read");
    assert_eq!(on_disk, expected);
}

#[test]
fn sync_appends_over_blocks_prepared_with_o_direct_zeros_read_back_intact() {
    // The preparer writes zeros with O_DIRECT ahead of buffered data writes to the same
    // files. If it ever wrote over a page holding data (or the page cache kept a stale
    // page of zeros over data), records would read back wrong here, or recovery would
    // cut the log short.
    use rockshard_storage::{FlushMode, TopicConfig};
    let root = tempfile::Builder::new()
        .prefix("real-disk-prepared-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a directory on the real disk");
    let dir = root.path().join("store");
    run(async move {
        let store = Store::open(config(&dir, u64::MAX)).await.expect("open");
        store.upsert_topic(TopicConfig::new(TOPIC, QUEUES as u32, FlushMode::Sync)).await.expect("sync topic");
        const WRITERS: usize = 8;
        const PER_WRITER: usize = 120;
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                glommio::spawn_local(async move {
                    let mut mine = Vec::new();
                    for i in 0..PER_WRITER {
                        let b = body(w * 10_000 + i, 1 + (i * 131 + w * 17) % 2_000);
                        let q = (w % QUEUES as usize) as i32;
                        let r = store.append(&[fields(TOPIC, q, &b, b"")], true).expect("append").await.expect("sync");
                        mine.push((q, r.records[0].queue_offset, b));
                    }
                    mine
                })
            })
            .collect();
        let mut acked = Vec::new();
        for t in tasks {
            acked.extend(t.await);
        }
        let check = |bodies: &[Vec<Vec<u8>>]| {
            for (q, offset, b) in &acked {
                assert!(bodies[*q as usize].get(offset.0 as usize) == Some(b), "queue {q} offset {offset}");
            }
        };
        let mut bodies = Vec::new();
        for q in 0..QUEUES {
            bodies.push(read_bodies(&store, TOPIC, q).await);
        }
        check(&bodies);
        // The preparer creates the segment after the last in use ahead of need.
        let (_, _, end, _) = store.commitlog_positions();
        let next = dir.join("commitlog").join(segment_name(end.0 - end.0 % SEGMENT_BYTES + SEGMENT_BYTES));
        for _ in 0..500 {
            if next.exists() {
                break;
            }
            glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(next.exists(), "no segment was created ahead");
        store.close().await.expect("clean close");
        drop(store);
        // Past the end, the files hold zeros only: prepared blocks and untouched ones.
        let last = std::fs::read(dir.join("commitlog").join(segment_name(end.0 - end.0 % SEGMENT_BYTES))).unwrap();
        assert!(last[(end.0 % SEGMENT_BYTES) as usize..].iter().all(|&b| b == 0));
        let store = Store::open(config(&dir, 0)).await.expect("reopen");
        assert_eq!(store.recovery_report().scanned_bytes, 0);
        let mut bodies = Vec::new();
        for q in 0..QUEUES {
            bodies.push(read_bodies(&store, TOPIC, q).await);
        }
        check(&bodies);
        store.close().await.expect("close");
    });
}

#[test]
fn a_store_opens_in_a_relative_directory() {
    // glommio opens directories (for their fsync) with openat(-1, path), which refuses a
    // relative path; the store resolves it first, so `--data-dir data` works as given.
    let root = tempfile::Builder::new()
        .prefix("real-disk-relative-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a directory on the real disk");
    let cwd = std::env::current_dir().expect("cwd");
    // From the working directory up to `/`, then down to the store: relative, whatever
    // the working directory is.
    let mut relative = std::path::PathBuf::new();
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.push(root.path().join("store").strip_prefix("/").expect("an absolute temp path"));
    assert!(relative.is_relative());
    run(async move {
        let store = Store::open(config(&relative, u64::MAX)).await.expect("open in a relative directory");
        let b = body(1, 100);
        store.append(&[fields(TOPIC, 0, &b, b"")], true).expect("append").await.expect("written");
        store.close().await.expect("close");
        let store = Store::open(config(&relative, u64::MAX)).await.expect("reopen");
        assert_eq!(read_bodies(&store, TOPIC, 0).await, vec![b]);
        store.close().await.expect("close");
    });
}
