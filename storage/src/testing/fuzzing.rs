//! Fuzz entry points: the whole logic of the `storage/fuzz` targets, kept here so the
//! same code also runs in the everyday `cargo test` (`tests/fuzz_regression.rs`) over
//! seeded pseudo-random and mutated-valid inputs, without libFuzzer.
//!
//! Two properties are checked, both "arbitrary bytes never panic":
//! - [`decode_records`]: the stored-record decoder on a byte stream (a segment, a
//!   pull-response body), and every record it accepts re-encodes to the same bytes.
//! - [`recover_arbitrary`]: recovery of a store whose CommitLog, ConsumeQueue and
//!   checkpoint files hold arbitrary bytes. It must end in `Ok` or a clean `Err`, never a
//!   panic, and a second recovery of what the first left must agree with it. The
//!   read-only recovery `store inspect` uses must, on the same image, change no byte and
//!   find what the repairing one does (or fail where it fails).
//!
//! Runs on any thread, without glommio: recovery on a [`SimDisk`] never awaits anything
//! that needs a reactor, so `futures_lite::future::block_on` drives it.
//! Deliberately not here: anything the store needs at run time. Nothing in the store
//! calls this module, and it is compiled only with the `testing` feature (or for the
//! crate's own tests): the fuzz crate and `tests/fuzz_regression.rs` enable it.

use std::path::{Path, PathBuf};

use rockshard_net::limits::TOPIC_V1_LEN_MAX_BYTES;
use rockshard_net::stored::{self, Record, RecordFields, MAGIC_V2};

use crate::checkpoint::{self, Checkpoint};
use crate::config::StoreConfig;
use crate::consume_queue::{self, ENTRY_BYTES};
use crate::disk::{Disk, DiskFile, OpenMode};
use crate::layout;
use crate::offset::PhysicalOffset;
use crate::recovery;
use crate::testing::SimDisk;

/// Where the fuzzed store lives on its [`SimDisk`].
pub const FUZZ_ROOT: &str = "/fuzz";
/// The topic whose ConsumeQueue image an input carries.
pub const FUZZ_TOPIC: &str = "T";
/// Small segments, so one input can span several and reach the segment-boundary code.
pub const FUZZ_SEGMENT_BYTES: u64 = 4096;
/// Small ConsumeQueue files (16 × 20 = 320 bytes), for the same reason.
pub const FUZZ_CQ_FILE_ENTRIES: u64 = 16;
/// At most this many segments are built from one input: 32 KiB of CommitLog is plenty to
/// cross boundaries and keeps each run fast.
pub const FUZZ_SEGMENTS_MAX: usize = 8;
/// At most this many ConsumeQueue files (1024 entries).
pub const FUZZ_CQ_FILES_MAX: usize = 64;
/// Records examined per [`decode_records`] call. Each step advances at least 8 bytes, so
/// the input length bounds the loop already; this names the bound.
pub const DECODE_RECORDS_MAX: usize = 1 << 20;

/// Input flag: the ConsumeQueue belongs to queue `flags & FLAG_QUEUE_ID_MASK`.
pub const FLAG_QUEUE_ID_MASK: u8 = 0x03;
/// Input flag: the checkpoint image's first 8 bytes (big-endian) are a CommitLog offset to
/// wrap in a *valid* checkpoint, so fuzzing reaches scans that start mid-log (a random
/// image almost never passes the checkpoint's CRC).
pub const FLAG_VALID_CHECKPOINT: u8 = 0x04;
/// Input flag: before the CommitLog image is placed, the body CRC and PHYSICALOFFSET of
/// every record that decodes are set right, so fuzzing gets past those two checks and
/// reaches ConsumeQueue replay.
pub const FLAG_REPAIR_RECORDS: u8 = 0x08;
/// Input flag: no checkpoint file at all (a store that crashed before its first one).
pub const FLAG_NO_CHECKPOINT: u8 = 0x10;

/// The config every fuzzed recovery uses.
pub fn fuzz_config() -> StoreConfig {
    let mut c = StoreConfig::new(FUZZ_ROOT);
    c.segment_size_bytes = FUZZ_SEGMENT_BYTES;
    c.cq_file_entries = FUZZ_CQ_FILE_ENTRIES;
    c
}

/// Fuzz entry point: decodes `data` as back-to-back stored records, the way recovery
/// walks a segment, until the decoder wants more bytes or reports an error. Every message
/// it accepts must re-encode, from its decoded fields, to exactly its input bytes
/// whenever those fields can round-trip (see [`round_trips`]).
///
/// Panics on a violated property; never otherwise.
pub fn decode_records(data: &[u8]) {
    let mut at = 0usize;
    for _ in 0..DECODE_RECORDS_MAX {
        let rest = &data[at..];
        let total = match stored::decode(rest) {
            Ok(Some(Record::Blank { total_size })) => total_size as usize,
            Ok(Some(Record::Message(view))) => {
                let total = view.header.total_size as usize;
                let original = &rest[..total];
                check_reencode(original, &view);
                total
            }
            Ok(None) | Err(_) => return,
        };
        // A BLANK's TOTALSIZE may run past the input; decode only promised it is >= 8.
        assert!(total >= stored::BLANK_SIZE_MIN_BYTES, "decode accepted a record of {total} bytes");
        match at.checked_add(total) {
            Some(next) if next <= data.len() => at = next,
            _ => return,
        }
    }
}

/// Whether `view`'s decoded fields determine `original` exactly. Four things do not
/// round-trip by design: the body CRC (encode computes it), the topic-length width
/// (encode picks V1 for topics of up to 127 bytes, so a V2 record with a short topic comes
/// back as V1), the port (decode keeps an i32 port modulo 2^16), and the IPv6 bits of
/// SYSFLAG (encode derives them from the addresses).
fn round_trips(original: &[u8], view: &stored::MessageView<'_>) -> bool {
    let h = &view.header;
    let v2 = h.magic == MAGIC_V2;
    if !view.body_crc_matches() || v2 != (view.topic.len() > TOPIC_V1_LEN_MAX_BYTES) {
        return false;
    }
    let born_v6 = h.sys_flag & stored::sys_flag::BORN_HOST_V6 != 0;
    let store_v6 = h.sys_flag & stored::sys_flag::STORE_HOST_V6 != 0;
    if born_v6 != h.born_host.is_ipv6() || store_v6 != h.store_host.is_ipv6() {
        return false;
    }
    // Ports: BORNHOST starts at byte 48, STOREHOST after it and an 8-byte timestamp.
    let born_port_at = 48 + if born_v6 { 16 } else { 4 };
    let store_port_at = born_port_at + 4 + 8 + if store_v6 { 16 } else { 4 };
    let port_fits = |at: usize| {
        original
            .get(at..at + 4)
            .map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")))
            .is_some_and(|p| (0..=i32::from(u16::MAX)).contains(&p))
    };
    port_fits(born_port_at) && port_fits(store_port_at)
}

fn check_reencode(original: &[u8], view: &stored::MessageView<'_>) {
    let h = &view.header;
    let fields = RecordFields {
        topic: view.topic,
        queue_id: h.queue_id,
        flag: h.flag,
        sys_flag: h.sys_flag,
        born_timestamp_ms: h.born_timestamp_ms,
        born_host: h.born_host,
        store_timestamp_ms: h.store_timestamp_ms,
        store_host: h.store_host,
        reconsume_times: h.reconsume_times,
        prepared_transaction_offset: h.prepared_transaction_offset,
        body: view.body,
        properties: view.properties,
    };
    let mut again = Vec::new();
    // Whatever decode accepted, encode must accept too: decode already bounds every
    // length by what encode allows (TOTALSIZE ≤ RECORD_SIZE_MAX_BYTES, i16 lengths).
    let len = stored::encode(&fields, h.queue_offset, h.physical_offset, &mut again)
        .unwrap_or_else(|e| panic!("a decoded record does not encode: {e}"));
    assert_eq!(len, again.len());
    // The re-encoded record must decode to the same fields in any case: encode → decode
    // is the codec's promise, and normalising (CRC, port, V1/V2) must not change values.
    let Ok(Some(Record::Message(back))) = stored::decode(&again) else {
        panic!("a re-encoded record does not decode");
    };
    assert_eq!((back.body, back.topic, back.properties), (view.body, view.topic, view.properties));
    assert_eq!(back.header.queue_offset, h.queue_offset);
    assert_eq!(back.header.physical_offset, h.physical_offset);
    assert_eq!(back.header.born_host, h.born_host);
    assert_eq!(back.header.store_host, h.store_host);
    if round_trips(original, view) {
        assert_eq!(original.len(), len, "re-encoded length differs");
        assert!(again == original, "a record that round-trips re-encoded to different bytes");
    }
}

/// Builds a [`recover_arbitrary`] input from its parts (the inverse of its parsing), for
/// tests that start from a valid store image and for seeding a fuzz corpus.
///
/// ```text
///  offset  size  field
///  0       1     flags: FLAG_QUEUE_ID_MASK | FLAG_VALID_CHECKPOINT | FLAG_REPAIR_RECORDS
///                | FLAG_NO_CHECKPOINT
///  1       2     c = ConsumeQueue image length (u16 BE)
///  3       2     k = checkpoint image length (u16 BE)
///  5       c     ConsumeQueue image, cut into files of FUZZ_CQ_FILE_ENTRIES entries
///  5+c     k     checkpoint image (or, with FLAG_VALID_CHECKPOINT, a u64 BE offset)
///  5+c+k   rest  CommitLog image, cut into segments of FUZZ_SEGMENT_BYTES
/// ```
/// Lengths past the end of the input are cut to what is there, so every byte string is
/// a valid input.
pub fn recovery_input(flags: u8, consume_queue: &[u8], checkpoint: &[u8], commitlog: &[u8]) -> Vec<u8> {
    let c = consume_queue.len().min(u16::MAX as usize);
    let k = checkpoint.len().min(u16::MAX as usize);
    let mut out = Vec::with_capacity(5 + c + k + commitlog.len());
    out.push(flags);
    out.extend_from_slice(&(c as u16).to_be_bytes());
    out.extend_from_slice(&(k as u16).to_be_bytes());
    out.extend_from_slice(&consume_queue[..c]);
    out.extend_from_slice(&checkpoint[..k]);
    out.extend_from_slice(commitlog);
    out
}

struct Parts<'a> {
    flags: u8,
    consume_queue: &'a [u8],
    checkpoint: &'a [u8],
    commitlog: &'a [u8],
}

fn split(data: &[u8]) -> Parts<'_> {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let flags = byte(0);
    let c = u16::from_be_bytes([byte(1), byte(2)]) as usize;
    let k = u16::from_be_bytes([byte(3), byte(4)]) as usize;
    let rest = data.get(5..).unwrap_or(&[]);
    let (consume_queue, rest) = rest.split_at(c.min(rest.len()));
    let (checkpoint, commitlog) = rest.split_at(k.min(rest.len()));
    Parts { flags, consume_queue, checkpoint, commitlog }
}

/// Sets the body CRC and PHYSICALOFFSET of every record that decodes, walking the image
/// as recovery would (BLANKs skip to their end), so fuzzed records pass recovery's
/// integrity checks and exercise what comes after them. `base` is the segment's first
/// CommitLog offset (PHYSICALOFFSET is absolute).
fn repair_records(image: &mut [u8], base: u64) {
    let mut at = 0usize;
    for _ in 0..DECODE_RECORDS_MAX {
        let (total, crc) = match stored::decode(&image[at..]) {
            Ok(Some(Record::Blank { total_size })) => (total_size as usize, None),
            Ok(Some(Record::Message(v))) => (v.header.total_size as usize, Some(stored::body_crc(v.body))),
            Ok(None) | Err(_) => return,
        };
        if let Some(crc) = crc {
            image[at + 8..at + 12].copy_from_slice(&crc.to_be_bytes());
            image[at + 28..at + 36].copy_from_slice(&((base + at as u64) as i64).to_be_bytes());
        }
        match at.checked_add(total) {
            Some(next) if next < image.len() => at = next,
            _ => return,
        }
    }
}

async fn put_file(disk: &SimDisk, path: &Path, bytes: &[u8]) {
    let dir = path.parent().expect("fuzz paths have a parent");
    disk.create_dir_all(dir).await.expect("SimDisk creates directories");
    let f = disk.open(path, OpenMode::Create).await.expect("SimDisk creates files");
    f.write_at(bytes.to_vec(), 0).await.expect("SimDisk has no capacity limit here");
    f.sync_data().await.expect("SimDisk syncs");
    disk.sync_dir(dir).await.expect("SimDisk syncs directories");
}

/// Places the store image `data` describes (see [`recovery_input`]) on a fresh SimDisk.
pub fn disk_from_input(data: &[u8]) -> SimDisk {
    let parts = split(data);
    let config = fuzz_config();
    let disk = SimDisk::new();
    futures_lite::future::block_on(async {
        let root = PathBuf::from(FUZZ_ROOT);
        // The CommitLog: consecutive segments from offset 0; the last may be short, as a
        // crash during allocation leaves it.
        let mut log = parts.commitlog.to_vec();
        log.truncate(FUZZ_SEGMENT_BYTES as usize * FUZZ_SEGMENTS_MAX);
        if parts.flags & FLAG_REPAIR_RECORDS != 0 {
            for (i, seg) in log.chunks_mut(FUZZ_SEGMENT_BYTES as usize).enumerate() {
                repair_records(seg, i as u64 * FUZZ_SEGMENT_BYTES);
            }
        }
        disk.create_dir_all(&layout::commitlog_dir(&root)).await.expect("SimDisk creates directories");
        for (i, seg) in log.chunks(FUZZ_SEGMENT_BYTES as usize).enumerate() {
            let name = crate::commitlog::segment_name(i as u64 * FUZZ_SEGMENT_BYTES);
            put_file(&disk, &layout::commitlog_dir(&root).join(name), seg).await;
        }
        // One ConsumeQueue, cut into its files.
        let queue_id = i32::from(parts.flags & FLAG_QUEUE_ID_MASK);
        let dir = layout::queue_dir(&config.dir, FUZZ_TOPIC, queue_id);
        let file_bytes = FUZZ_CQ_FILE_ENTRIES as usize * ENTRY_BYTES;
        for (i, image) in parts.consume_queue.chunks(file_bytes).take(FUZZ_CQ_FILES_MAX).enumerate() {
            let name = consume_queue::file_name(i as u64 * FUZZ_CQ_FILE_ENTRIES);
            put_file(&disk, &dir.join(name), image).await;
        }
        if parts.flags & FLAG_NO_CHECKPOINT == 0 {
            let image = if parts.flags & FLAG_VALID_CHECKPOINT != 0 {
                let mut offset = [0u8; 8];
                let n = parts.checkpoint.len().min(8);
                offset[..n].copy_from_slice(&parts.checkpoint[..n]);
                let cp = Checkpoint { sequence: 1, commitlog: PhysicalOffset(u64::from_be_bytes(offset)) };
                let mut file = vec![0u8; 2 * checkpoint::SLOT_STRIDE_BYTES as usize];
                file[cp.slot_pos() as usize..][..checkpoint::SLOT_BYTES].copy_from_slice(&cp.encode());
                file
            } else {
                parts.checkpoint.to_vec()
            };
            put_file(&disk, &root.join(checkpoint::FILE_NAME), &image).await;
        }
    });
    disk
}

/// What one recovery found, compared across two recoveries of the same disk.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    end: PhysicalOffset,
    segments: Vec<u64>,
    queues: Vec<(String, i32, u64, u64)>,
}

async fn recover_once(disk: &SimDisk) -> crate::Result<(Outcome, recovery::RecoveryReport)> {
    let rec = recovery::recover(disk, &fuzz_config()).await?;
    Ok((outcome(&rec.report, rec.end, &rec.segments, &rec.queues), rec.report))
}

/// [`recover_once`] without writing: what `store inspect` finds.
async fn read_only_once(disk: &SimDisk) -> crate::Result<(Outcome, recovery::RecoveryReport)> {
    let found = recovery::recover_read_only(disk, &fuzz_config()).await?;
    Ok((outcome(&found.report, found.end, &found.segments, &found.queues), found.report))
}

/// Checks a recovery's result is coherent and sums it up.
fn outcome<F>(
    r: &recovery::RecoveryReport,
    end: PhysicalOffset,
    segments: &std::collections::BTreeMap<u64, std::rc::Rc<F>>,
    queues: &[crate::consume_queue::ConsumeQueue<F>],
) -> Outcome {
    assert!(r.checkpoint <= r.end, "recovery ended before its start: {r:?}");
    assert_eq!(r.scanned_bytes, r.end.0 - r.checkpoint.0, "{r:?}");
    let segments: Vec<u64> = segments.keys().copied().collect();
    for pair in segments.windows(2) {
        assert_eq!(pair[0] + FUZZ_SEGMENT_BYTES, pair[1], "recovery kept non-contiguous segments");
    }
    if let Some(&last) = segments.last() {
        assert!(end.0 <= last + FUZZ_SEGMENT_BYTES, "end {end} lies past the last segment {last}");
    }
    let queues = queues
        .iter()
        .map(|q| {
            assert!(q.min <= q.file_end && q.file_end <= q.published, "queue offsets out of order");
            // Every entry replayed from the scan points below the recovered end.
            for e in &q.tail {
                assert!(e.physical_offset < end, "an entry points past the recovered end");
            }
            (q.topic.clone(), q.queue_id, q.min.0, q.published.0)
        })
        .collect();
    Outcome { end, segments, queues }
}

/// Fuzz entry point: recovery over the store image `data` describes (see
/// [`recovery_input`]) must not panic. When it succeeds, its report must be coherent and
/// a second recovery of the disk it left must find the same end, segments and queues:
/// recovery promises it removes everything past the end it chose.
pub fn recover_arbitrary(data: &[u8]) {
    let disk = disk_from_input(data);
    futures_lite::future::block_on(async {
        let looked = disk.fork();
        let image = |d: &SimDisk| d.files().into_iter().map(|p| (d.contents(&p), p)).collect::<Vec<_>>();
        let before = image(&looked);
        let read_only = read_only_once(&looked).await;
        assert!(image(&looked) == before, "the read-only recovery changed the disk");
        let first = recover_once(&disk).await;
        match (&read_only, &first) {
            // The report too: the same scan, stopped at the same place for the same reason.
            (Ok(a), Ok(b)) => assert_eq!(a, b, "the read-only recovery disagrees with the repairing one"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("read-only recovery gave {a:?}, the repairing one {b:?}"),
        }
        let Ok((first, _)) = first else { return };
        match recover_once(&disk).await {
            Ok((second, _)) => assert_eq!(first, second, "a second recovery disagrees with the first"),
            Err(e) => panic!("recovery succeeded, then failed on what it left: {e}"),
        }
    });
}
