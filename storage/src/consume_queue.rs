//! The ConsumeQueue of one MessageQueue: an index from logical queue offset to the
//! CommitLog record, as fixed 20-byte entries in files of a fixed entry count.
//!
//! ```text
//!  entry n lives at byte (n - first entry of its file) × 20 of its file
//!  offset  size  field
//!  0       8     CommitLog physical offset of the record (i64, big-endian)
//!  8       4     record size in bytes (i32)
//!  12      8     tag hash (i64): Java hashCode of TAGS, 0 without tags; for the delay
//!                topic the delivery time in ms
//! ```
//!
//! Files live in `consumequeue/<topic>/<queueId>/` and are named, like RocketMQ's, by
//! the byte offset of their first entry (entry index × 20) as 20 zero-padded digits.
//!
//! Offsets kept, in this order: `min` ≤ `file_end` ≤ `published` ≤ `assigned`.
//! - `assigned`: the next queue offset an append will give out.
//! - `published`: entries whose records the CommitLog has written; readers see these.
//! - `file_end`: entries written to the files; `[file_end, published)` live in `tail`.
//! - `min`: the first entry whose record retention has not deleted.
//!
//! Runs on the shard that owns the store. The async work (file reads, persisting the
//! tail, recovery) lives in the store, which never holds a borrow of a queue across an
//! `.await`; this type is the state and the pure arithmetic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use crate::offset::{PhysicalOffset, QueueOffset};

/// Bytes per ConsumeQueue entry: 8 + 4 + 8.
pub const ENTRY_BYTES: usize = 20;
const _: () = assert!(8 + 4 + 8 == ENTRY_BYTES);

/// One ConsumeQueue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    pub physical_offset: PhysicalOffset,
    pub size: u32,
    pub tags_code: i64,
}

impl CqEntry {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.physical_offset.0 as i64).to_be_bytes());
        out.extend_from_slice(&(self.size as i32).to_be_bytes());
        out.extend_from_slice(&self.tags_code.to_be_bytes());
    }

    /// Decodes one entry from exactly [`ENTRY_BYTES`] bytes.
    pub fn decode(b: &[u8; ENTRY_BYTES]) -> Self {
        let phys = i64::from_be_bytes(b[0..8].try_into().expect("8 bytes"));
        let size = i32::from_be_bytes(b[8..12].try_into().expect("4 bytes"));
        let tags_code = i64::from_be_bytes(b[12..20].try_into().expect("8 bytes"));
        CqEntry { physical_offset: PhysicalOffset(phys.max(0) as u64), size: size.max(0) as u32, tags_code }
    }

    /// Decodes back-to-back entries; a trailing partial entry is ignored.
    pub fn decode_all(bytes: &[u8]) -> Vec<CqEntry> {
        bytes
            .chunks_exact(ENTRY_BYTES)
            .map(|c| CqEntry::decode(c.try_into().expect("chunks_exact gives whole entries")))
            .collect()
    }

    /// Whether this could be a real entry rather than zeros or garbage left by a crash.
    pub fn is_plausible(&self) -> bool {
        self.size as usize >= rockshard_net::stored::RECORD_SIZE_MIN_BYTES
            && self.size as usize <= rockshard_net::stored::RECORD_SIZE_MAX_BYTES
    }
}

/// The file name of the file whose first entry is `first_entry`.
pub fn file_name(first_entry: u64) -> String {
    format!("{:020}", first_entry * ENTRY_BYTES as u64)
}

/// The first entry of a file name, if the name is one of ours.
pub fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let bytes: u64 = name.parse().ok()?;
    bytes.is_multiple_of(ENTRY_BYTES as u64).then_some(bytes / ENTRY_BYTES as u64)
}

/// Where the entries a read asks for are.
pub enum EntrySource<F> {
    /// Already in memory (the unpersisted tail).
    Memory(Vec<CqEntry>),
    /// In `file`, `count` entries starting at byte `pos`.
    File { file: Rc<F>, pos: u64, count: u64 },
    /// Nothing to read at that offset.
    Empty,
}

pub struct ConsumeQueue<F> {
    pub topic: String,
    pub queue_id: i32,
    pub dir: PathBuf,
    pub entries_per_file: u64,
    /// Files by their first entry index.
    pub files: BTreeMap<u64, Rc<F>>,
    pub min: QueueOffset,
    pub file_end: QueueOffset,
    pub published: QueueOffset,
    pub assigned: QueueOffset,
    pub tail: Vec<CqEntry>,
}

impl<F> ConsumeQueue<F> {
    /// A queue whose files hold `[min, file_end)`.
    pub fn new(
        topic: String,
        queue_id: i32,
        dir: PathBuf,
        entries_per_file: u64,
        files: BTreeMap<u64, Rc<F>>,
        min: QueueOffset,
        file_end: QueueOffset,
    ) -> Self {
        assert!(min <= file_end);
        ConsumeQueue {
            topic,
            queue_id,
            dir,
            entries_per_file,
            files,
            min,
            file_end,
            published: file_end,
            assigned: file_end,
            tail: Vec::new(),
        }
    }

    /// Hands out the next queue offset to a record being appended.
    pub fn assign(&mut self) -> QueueOffset {
        let q = self.assigned;
        self.assigned = q.next();
        q
    }

    /// The record for `offset` has been written to the CommitLog: readers may see it.
    /// Entries are published in the order they were assigned.
    pub fn publish(&mut self, offset: QueueOffset, entry: CqEntry) {
        assert_eq!(offset, self.published, "{}:{} entries publish in order", self.topic, self.queue_id);
        assert!(offset < self.assigned);
        self.tail.push(entry);
        self.published = offset.next();
    }

    /// A write failed: offsets given out but not published are given back.
    pub fn abandon_unpublished(&mut self) {
        self.assigned = self.published;
    }

    /// Appends an entry during recovery (assigned and published at once).
    pub fn recover_entry(&mut self, entry: CqEntry) {
        let q = self.assign();
        self.publish(q, entry);
    }

    /// Where to find up to `max` entries from `from` (never across a file boundary).
    pub fn locate(&self, from: QueueOffset, max: u64) -> EntrySource<F> {
        if from < self.min || from >= self.published || max == 0 {
            return EntrySource::Empty;
        }
        if from >= self.file_end {
            let start = (from.0 - self.file_end.0) as usize;
            let end = (start as u64 + max).min(self.published.0 - self.file_end.0) as usize;
            return EntrySource::Memory(self.tail[start..end].to_vec());
        }
        let Some((&first, file)) = self.files.range(..=from.0).next_back() else { return EntrySource::Empty };
        let file_last = first + self.entries_per_file;
        let count = max.min(self.file_end.0 - from.0).min(file_last - from.0);
        EntrySource::File { file: file.clone(), pos: (from.0 - first) * ENTRY_BYTES as u64, count }
    }

    /// The first file index of the file that holds `entry`.
    pub fn file_start_of(&self, entry: u64) -> u64 {
        entry - entry % self.entries_per_file
    }

    /// Tail entries to persist next: at most up to the end of `file_end`'s file.
    pub fn next_persist_batch(&self) -> Option<(u64, Vec<u8>)> {
        if self.tail.is_empty() {
            return None;
        }
        let file_start = self.file_start_of(self.file_end.0);
        let room = (file_start + self.entries_per_file - self.file_end.0) as usize;
        let n = room.min(self.tail.len());
        let mut bytes = Vec::with_capacity(n * ENTRY_BYTES);
        for e in &self.tail[..n] {
            e.encode(&mut bytes);
        }
        Some((file_start, bytes))
    }

    /// `n` tail entries reached their file.
    pub fn persisted(&mut self, n: usize) {
        self.tail.drain(..n);
        self.file_end = QueueOffset(self.file_end.0 + n as u64);
        assert!(self.file_end <= self.published);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_golden_bytes() {
        let e = CqEntry { physical_offset: PhysicalOffset(0x0102_0304_0506_0708), size: 190, tags_code: -1 };
        let mut out = Vec::new();
        e.encode(&mut out);
        assert_eq!(
            out,
            [
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // physical offset
                0x00, 0x00, 0x00, 0xbe, // size 190
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // tag hash -1
            ]
        );
        assert_eq!(CqEntry::decode(out.as_slice().try_into().unwrap()), e);
    }

    #[test]
    fn file_names_are_byte_offsets_like_rocketmq() {
        assert_eq!(file_name(0), "00000000000000000000");
        assert_eq!(file_name(300_000), "00000000000006000000");
        assert_eq!(parse_file_name("00000000000006000000"), Some(300_000));
        assert_eq!(parse_file_name("00000000000000000007"), None);
        assert_eq!(parse_file_name("checkpoint"), None);
    }

    fn entry(phys: u64) -> CqEntry {
        CqEntry { physical_offset: PhysicalOffset(phys), size: 100, tags_code: 0 }
    }

    #[test]
    fn tail_reads_come_from_memory_and_persist_in_file_sized_batches() {
        let mut q: ConsumeQueue<()> =
            ConsumeQueue::new("T".into(), 0, PathBuf::new(), 4, BTreeMap::new(), QueueOffset(0), QueueOffset(0));
        for i in 0..6 {
            let off = q.assign();
            q.publish(off, entry(i * 100));
        }
        let EntrySource::Memory(got) = q.locate(QueueOffset(1), 3) else { panic!() };
        assert_eq!(got, vec![entry(100), entry(200), entry(300)]);
        let (file, bytes) = q.next_persist_batch().unwrap();
        assert_eq!((file, bytes.len()), (0, 4 * ENTRY_BYTES));
        q.persisted(4);
        let (file, bytes) = q.next_persist_batch().unwrap();
        assert_eq!((file, bytes.len()), (4, 2 * ENTRY_BYTES));
        assert!(matches!(q.locate(QueueOffset(6), 1), EntrySource::Empty));
    }

    #[test]
    fn abandoning_gives_back_unpublished_offsets() {
        let mut q: ConsumeQueue<()> =
            ConsumeQueue::new("T".into(), 0, PathBuf::new(), 4, BTreeMap::new(), QueueOffset(0), QueueOffset(0));
        let a = q.assign();
        q.publish(a, entry(0));
        q.assign();
        q.assign();
        q.abandon_unpublished();
        assert_eq!(q.assign(), QueueOffset(1));
    }
}
