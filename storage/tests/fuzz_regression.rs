//! The fuzz targets' properties in the everyday `cargo test`, without libFuzzer: the
//! entry points in `rockshard_storage::testing::fuzzing` run over a few thousand seeded
//! pseudo-random inputs and mutations of valid ones (records from the real encoder, store
//! images written by the real store on a SimDisk, crashed and cleanly closed).
//!
//! What it proves: the stored-record decoder never panics and re-encodes what it accepts
//! to the same bytes; recovery never panics on damaged CommitLog, ConsumeQueue and
//! checkpoint files, a second recovery agrees with the first, and the read-only recovery
//! of `store inspect` changes nothing and agrees with them. Mutating *valid* images
//! matters: random bytes almost never get past a record's magic, so only mutations reach
//! the scan, the ConsumeQueue cut and replay.
//!
//! Deterministic: a fixed-seed xorshift generator, so a failure names its iteration and
//! reproduces. Setting `ROCKSHARD_FUZZ_SEED_DIR=<dir>` also writes the valid inputs to
//! `<dir>/record_decode/` and `<dir>/recovery/` as a starting corpus for `cargo fuzz`.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::Path;

use common::*;
use rockshard_net::stored::{self, RecordFields};
use rockshard_storage::testing::fuzzing::{self, FLAG_NO_CHECKPOINT, FLAG_REPAIR_RECORDS, FLAG_VALID_CHECKPOINT};
use rockshard_storage::testing::SimDisk;
use rockshard_storage::{FlushMode, Store, TopicConfig};

/// Inputs per property: enough to hit every mutation kind on every seed image many
/// times, few enough to keep this test a few seconds in a debug build.
const RANDOM_INPUTS: usize = 1_000;
const MUTATED_INPUTS: usize = 3_000;

/// xorshift64*: tiny, seeded, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Damages `input` the ways disks and crashes do, plus the ways fuzzers do: flipped bits,
/// interesting integers over length fields, cuts, zeroed runs, duplicated runs.
fn mutate(rng: &mut Rng, input: &[u8], protect_prefix: usize) -> Vec<u8> {
    let mut v = input.to_vec();
    const INTERESTING: [u32; 9] = [0, 1, 7, 8, 91, 0x7FFF, 0x8000, 0x7FFF_FFFF, 0xFFFF_FFFF];
    for _ in 0..1 + rng.below(4) {
        if v.len() <= protect_prefix {
            break;
        }
        let span = v.len() - protect_prefix;
        let at = protect_prefix + rng.below(span);
        match rng.below(6) {
            0 => v[at] ^= 1 << rng.below(8),
            1 => v[at] = rng.next() as u8,
            2 if at + 4 <= v.len() => {
                let x = INTERESTING[rng.below(INTERESTING.len())];
                v[at..at + 4].copy_from_slice(&x.to_be_bytes());
            }
            3 => v.truncate(at),
            4 => {
                let end = (at + 1 + rng.below(600)).min(v.len());
                v[at..end].fill(0);
            }
            _ => {
                let end = (at + 1 + rng.below(200)).min(v.len());
                let run = v[at..end].to_vec();
                let to = protect_prefix + rng.below(span);
                let to_end = (to + run.len()).min(v.len());
                v[to..to_end].copy_from_slice(&run[..to_end - to]);
            }
        }
    }
    v
}

/// Runs one input; on a panic, saves the input under the target's tmp directory so the
/// failure can be replayed (`cargo fuzz run <target> <file>`) and names the iteration.
fn check(kind: &str, i: usize, input: &[u8], property: fn(&[u8])) {
    if std::panic::catch_unwind(|| property(input)).is_err() {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{kind}-failure-{i}"));
        let _ = std::fs::write(&path, input);
        panic!("{kind}: input {i} panicked; saved to {}", path.display());
    }
}

fn write_seeds(kind: &str, inputs: &[Vec<u8>]) {
    let Some(dir) = std::env::var_os("ROCKSHARD_FUZZ_SEED_DIR") else { return };
    let dir = Path::new(&dir).join(kind);
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    for (i, input) in inputs.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), input).expect("write a seed");
    }
}

/// Back-to-back records covering the format's variants: IPv4 and IPv6 hosts, V1 and V2
/// (long) topics, empty and large bodies, properties, and a BLANK at the end.
fn valid_record_streams() -> Vec<Vec<u8>> {
    let long_topic = "L".repeat(300);
    let v6: std::net::SocketAddr = "[2001:db8::7]:10911".parse().unwrap();
    let mut streams = Vec::new();
    for variant in 0..6usize {
        let mut out = Vec::new();
        for i in 0..4usize {
            let b = body(i + variant * 10, [0, 1, 17, 300, 4000][(i + variant) % 5]);
            let topic = if variant % 3 == 2 { long_topic.as_str() } else { "TopicA" };
            let mut f: RecordFields<'_> = fields(topic, i as i32, &b, b"TAGS\x01a\x02KEYS\x01k1\x02");
            if variant % 2 == 1 {
                f.born_host = v6;
            }
            if variant == 3 {
                f.store_host = v6;
                f.sys_flag = stored::sys_flag::TRANSACTION_PREPARED;
            }
            let at = out.len() as i64;
            stored::encode(&f, i as i64, at, &mut out).unwrap();
        }
        if variant % 2 == 0 {
            stored::encode_blank(64, &mut out);
        }
        streams.push(out);
    }
    streams
}

#[test]
fn record_decode_survives_random_and_mutated_streams() {
    let streams = valid_record_streams();
    for s in &streams {
        fuzzing::decode_records(s);
    }
    write_seeds("record_decode", &streams);
    let mut rng = Rng(0x5EED_0001);
    for i in 0..RANDOM_INPUTS {
        let len = rng.below(400);
        let input = rng.bytes(len);
        check("record_decode-random", i, &input, fuzzing::decode_records);
    }
    for i in 0..MUTATED_INPUTS {
        let input = mutate(&mut rng, &streams[i % streams.len()], 0);
        check("record_decode-mutated", i, &input, fuzzing::decode_records);
    }
}

/// Store images written by the real store: records in 3 queues over several 4 KiB
/// segments, with ConsumeQueue files and checkpoints, left by a crash (no close, some
/// data never synced) and by a clean close. Each becomes one input per queue id.
fn valid_store_images() -> Vec<Vec<u8>> {
    let mut images = Vec::new();
    for clean in [false, true] {
        let disk = SimDisk::new();
        let config = fuzzing::fuzz_config();
        run({
            let disk = disk.clone();
            let mut config = config.clone();
            // Timers stay quiet; the test decides when data is synced.
            config.flush_interval_ms = 3_600_000;
            config.checkpoint_interval_ms = 3_600_000;
            config.retention_hours = 0;
            async move {
                let store = Store::open_on(disk, config).await.unwrap();
                store.upsert_topic(TopicConfig::new(fuzzing::FUZZ_TOPIC, 4, FlushMode::Async)).await.unwrap();
                for i in 0..60usize {
                    let b = body(i, 10 + (i * 37) % 500);
                    let w = store
                        .append(&[fields(fuzzing::FUZZ_TOPIC, (i % 3) as i32, &b, b"TAGS\x01t\x02")], true)
                        .unwrap();
                    w.await.unwrap();
                    // A checkpoint part-way, so recovery starts mid-log.
                    if i == 35 {
                        store.sync_now().await.unwrap();
                    }
                }
                if clean {
                    store.close().await.unwrap();
                }
            }
        });
        if !clean {
            disk.power_loss();
        }
        let root = Path::new(fuzzing::FUZZ_ROOT);
        let mut commitlog = Vec::new();
        for base in (0..fuzzing::FUZZ_SEGMENTS_MAX as u64).map(|i| i * fuzzing::FUZZ_SEGMENT_BYTES) {
            let path = root.join("commitlog").join(rockshard_storage::commitlog::segment_name(base));
            let Some(seg) = disk.contents(&path) else { break };
            commitlog.extend_from_slice(&seg);
        }
        assert!(commitlog.len() > 2 * fuzzing::FUZZ_SEGMENT_BYTES as usize, "the image spans several segments");
        let checkpoint = disk.contents(&root.join("checkpoint")).unwrap_or_default();
        for queue_id in 0..3u8 {
            let dir = rockshard_storage::layout::queue_dir(&config.dir, fuzzing::FUZZ_TOPIC, i32::from(queue_id));
            let mut cq = Vec::new();
            for first in (0..fuzzing::FUZZ_CQ_FILES_MAX as u64).map(|i| i * fuzzing::FUZZ_CQ_FILE_ENTRIES) {
                let Some(file) = disk.contents(&dir.join(rockshard_storage::consume_queue::file_name(first))) else {
                    break;
                };
                cq.extend_from_slice(&file);
            }
            images.push(fuzzing::recovery_input(queue_id, &cq, &checkpoint, &commitlog));
        }
    }
    images
}

#[test]
fn recovery_survives_random_and_mutated_store_images() {
    let images = valid_store_images();
    for image in &images {
        fuzzing::recover_arbitrary(image);
    }
    write_seeds("recovery", &images);
    let mut rng = Rng(0x5EED_0002);
    for i in 0..RANDOM_INPUTS / 4 {
        let len = rng.below(12_000);
        let input = rng.bytes(len);
        check("recovery-random", i, &input, fuzzing::recover_arbitrary);
    }
    let flag_choices = [0, FLAG_VALID_CHECKPOINT, FLAG_REPAIR_RECORDS, FLAG_NO_CHECKPOINT];
    for i in 0..MUTATED_INPUTS {
        let mut input = images[i % images.len()].clone();
        // Keep the 5-byte layout header mostly intact (so the mutation lands in a file
        // image) but vary the flags, which change how the images are placed.
        input[0] = (input[0] & 0x03) | flag_choices[rng.below(flag_choices.len())];
        let input = mutate(&mut rng, &input, 5);
        check("recovery-mutated", i, &input, fuzzing::recover_arbitrary);
    }
}

#[test]
fn recovery_input_layout_round_trips_a_clean_store() {
    // The layout's own check: a cleanly closed image must recover without scanning and
    // with every record, or the mutation tests above start from nothing.
    let images = valid_store_images();
    let disk = fuzzing::disk_from_input(&images[3]);
    let report = futures_lite::future::block_on(rockshard_storage::recovery::recover(&disk, &fuzzing::fuzz_config()))
        .map(|r| r.report)
        .expect("a clean image recovers");
    assert_eq!(report.scanned_bytes, 0, "{report:?}");
    assert!(report.end.0 > 2 * fuzzing::FUZZ_SEGMENT_BYTES, "{report:?}");
}

#[test]
fn a_rejected_record_leaves_no_queue_behind() {
    // A cleanly closed image, then one record past its end whose QUEUEID and QUEUEOFFSET
    // are damaged to 127 and 5 (neither is covered by the body CRC, so only the
    // queue-offset check can catch it). Recovery cuts the log there; it must not invent queue 127.
    let images = valid_store_images();
    let clean = &images[3];
    let header = 5
        + usize::from(u16::from_be_bytes([clean[1], clean[2]]))
        + usize::from(u16::from_be_bytes([clean[3], clean[4]]));
    let mut log = clean[header..].to_vec();
    let end = {
        let disk = fuzzing::disk_from_input(clean);
        let rec = futures_lite::future::block_on(rockshard_storage::recovery::recover(&disk, &fuzzing::fuzz_config()))
            .expect("a clean image recovers");
        rec.report.end.0 as usize
    };
    // Append a copy of the first record at the end, with its position fixed and its queue
    // id damaged, and no checkpoint so the scan starts at 0 and reaches it.
    let Ok(Some(stored::Record::Message(first))) = stored::decode(&log) else { panic!("a record at 0") };
    let size = first.header.total_size as usize;
    assert!(end + size + 8 <= log.len(), "room in the last segment for one more record");
    let mut copy = log[..size].to_vec();
    copy[12..16].copy_from_slice(&127i32.to_be_bytes());
    // Queue 127 has no entries, so offset 5 cannot be right.
    copy[20..28].copy_from_slice(&5i64.to_be_bytes());
    copy[28..36].copy_from_slice(&(end as i64).to_be_bytes());
    log[end..end + size].copy_from_slice(&copy);
    let cq_len = usize::from(u16::from_be_bytes([clean[1], clean[2]]));
    let input = fuzzing::recovery_input(FLAG_NO_CHECKPOINT, &clean[5..5 + cq_len], &[], &log);
    let disk = fuzzing::disk_from_input(&input);
    let rec = futures_lite::future::block_on(rockshard_storage::recovery::recover(&disk, &fuzzing::fuzz_config()));
    if let Ok(rec) = rec {
        assert_eq!(rec.report.end.0 as usize, end, "the damaged record ends the log: {:?}", rec.report);
        let phantom: Vec<_> = rec.queues.iter().filter(|q| q.queue_id == 127).map(|q| q.published).collect();
        assert!(phantom.is_empty(), "recovery left queue T:127 with {phantom:?} entries for a record it cut off");
    }
}
