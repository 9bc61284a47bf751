//! The ConsumeQueue of one MessageQueue: an index from logical queue offset to the
//! CommitLog record, as fixed 20-byte entries in files of a fixed entry count.
//!
//! ```text
//!  entry n lives at byte (n - first entry of its file) × 20 of its file
//!  offset  size  field
//!  0       8     CommitLog physical offset of the record (i64, big-endian)
//!  8       4     record size in bytes (i32)
//!  12      8     tag code (i64): Java hashCode of TAGS, 0 without tags, unless the
//!                store owner's rule (`record::TagCodeRule`) says otherwise; the
//!                broker's puts a delayed message's delivery time (ms) there
//! ```
//!
//! Files live in `consumequeue/<topic>/<queueId>/` and are named, like RocketMQ's, by
//! the byte offset of their first entry (entry index × 20) as 20 zero-padded digits.
//!
//! Offsets kept, in this order: `min` ≤ `file_end` ≤ `visible` ≤ `published` ≤ `assigned`.
//! - `assigned`: the next queue offset an append will give out.
//! - `published`: entries whose records the CommitLog has written.
//! - `visible`: entries readers see: all published ones, unless the store has a visible
//!   limit (replication), then those whose records end at or before it.
//! - `file_end`: entries written to the files; `[file_end, published)` live in `tail`.
//!   Only visible entries are written to files, so while a limit is set every invisible
//!   entry is in memory. (Right after the limit is lowered below entries already in
//!   files, `file_end` may exceed the true visible count until the store has moved those
//!   entries back into `tail`; `persisted_end` tells the store when that is needed.)
//! - `min`: the first entry whose record retention has not deleted.
//!
//! Runs on the shard that owns the store. The async work (file reads, persisting the
//! tail) lives in the store, and recovery in `recovery.rs`; neither holds a borrow of a
//! queue across an `.await`. This type is the state and the pure arithmetic, and
//! [`new_queue`] creates an empty one where the config says its files go (both the
//! append path and recovery use it).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use crate::config::StoreConfig;
use crate::layout;
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
    /// The CommitLog offset just past the record.
    pub fn end(&self) -> PhysicalOffset {
        self.physical_offset.plus(u64::from(self.size))
    }

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

/// Min and max offset of one queue, as readers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    pub topic: String,
    pub queue_id: i32,
    pub min_offset: QueueOffset,
    pub max_offset: QueueOffset,
}

/// A new, empty queue of the store configured by `config`: no files yet, offsets from 0.
/// The append path creates one for a record of a queue it has not seen; recovery, for a
/// replayed record of such a queue.
pub fn new_queue<F>(config: &StoreConfig, topic: &str, queue_id: i32) -> ConsumeQueue<F> {
    ConsumeQueue::new(
        topic.to_string(),
        queue_id,
        layout::queue_dir(&config.dir, topic, queue_id),
        config.cq_file_entries,
        BTreeMap::new(),
        QueueOffset(0),
        QueueOffset(0),
    )
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
    pub visible: QueueOffset,
    pub published: QueueOffset,
    pub assigned: QueueOffset,
    pub tail: Vec<CqEntry>,
    /// The end of the record of the last entry in the files (zero when none is known).
    pub persisted_end: PhysicalOffset,
    /// The store is moving file entries past its visible end back into `tail`.
    pub reloading: bool,
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
            visible: file_end,
            published: file_end,
            assigned: file_end,
            tail: Vec::new(),
            persisted_end: PhysicalOffset::ZERO,
            reloading: false,
        }
    }

    /// Its min and max offset as readers see them (the max is the visible count).
    pub fn info(&self) -> QueueInfo {
        QueueInfo { topic: self.topic.clone(), queue_id: self.queue_id, min_offset: self.min, max_offset: self.visible }
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

    /// Appends an entry during recovery (assigned, published and visible at once).
    pub fn recover_entry(&mut self, entry: CqEntry) {
        let q = self.assign();
        self.publish(q, entry);
        self.visible = self.published;
    }

    /// Removes the entries from `end` on, all of which are in `tail` (`end` ≥
    /// `file_end`): a truncate of the CommitLog. Nothing is being appended meanwhile.
    pub fn cut_tail(&mut self, end: QueueOffset) {
        assert!(end >= self.file_end && end <= self.published, "a tail cut stays inside the tail");
        self.tail.truncate((end.0 - self.file_end.0) as usize);
        self.published = end;
        self.assigned = end;
        self.visible = self.visible.min(end);
    }

    /// Entries `[end, file_end)` of the files are no longer counted as persisted: they go
    /// back to the front of `tail` (`moved_back`), or are dropped (`None`, a truncate).
    /// `last_end` is the record end of entry `end - 1` (zero if unknown or none).
    pub fn unpersist(&mut self, end: QueueOffset, moved_back: Option<Vec<CqEntry>>, last_end: PhysicalOffset) {
        assert!(end >= self.min && end <= self.file_end);
        match moved_back {
            Some(entries) => {
                assert_eq!(entries.len() as u64, self.file_end.0 - end.0, "every unpersisted entry moves back");
                self.tail.splice(0..0, entries);
            }
            None => {
                self.tail.clear();
                self.published = end;
                self.assigned = end;
            }
        }
        self.file_end = end;
        self.visible = self.visible.min(self.published);
        self.persisted_end = last_end;
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

    /// Tail entries to persist next: at most up to the end of `file_end`'s file, and only
    /// visible ones.
    pub fn next_persist_batch(&self) -> Option<(u64, Vec<u8>)> {
        let ready = (self.visible.0.saturating_sub(self.file_end.0) as usize).min(self.tail.len());
        if ready == 0 {
            return None;
        }
        let file_start = self.file_start_of(self.file_end.0);
        let room = (file_start + self.entries_per_file - self.file_end.0) as usize;
        let n = room.min(ready);
        let mut bytes = Vec::with_capacity(n * ENTRY_BYTES);
        for e in &self.tail[..n] {
            e.encode(&mut bytes);
        }
        Some((file_start, bytes))
    }

    /// `n` tail entries reached their file.
    pub fn persisted(&mut self, n: usize) {
        if let Some(last) = n.checked_sub(1).and_then(|i| self.tail.get(i)) {
            self.persisted_end = last.end();
        }
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
        assert!(q.next_persist_batch().is_none(), "only visible entries are persisted");
        q.visible = QueueOffset(5);
        let EntrySource::Memory(got) = q.locate(QueueOffset(1), 3) else { panic!() };
        assert_eq!(got, vec![entry(100), entry(200), entry(300)]);
        let (file, bytes) = q.next_persist_batch().unwrap();
        assert_eq!((file, bytes.len()), (0, 4 * ENTRY_BYTES));
        q.persisted(4);
        assert_eq!(q.persisted_end, PhysicalOffset(400));
        let (file, bytes) = q.next_persist_batch().unwrap();
        assert_eq!((file, bytes.len()), (4, ENTRY_BYTES));
        assert!(matches!(q.locate(QueueOffset(6), 1), EntrySource::Empty));
    }

    #[test]
    fn cuts_and_unpersisting_keep_the_offsets_in_order() {
        let mut q: ConsumeQueue<()> =
            ConsumeQueue::new("T".into(), 0, PathBuf::new(), 4, BTreeMap::new(), QueueOffset(0), QueueOffset(0));
        for i in 0..6 {
            let off = q.assign();
            q.publish(off, entry(i * 100));
        }
        q.visible = QueueOffset(6);
        q.persisted(4);
        // Entries 2 and 3 go back to memory; reads of them then come from there.
        q.unpersist(QueueOffset(2), Some(vec![entry(200), entry(300)]), PhysicalOffset(200));
        assert_eq!((q.file_end, q.tail.len(), q.persisted_end), (QueueOffset(2), 4, PhysicalOffset(200)));
        let EntrySource::Memory(got) = q.locate(QueueOffset(2), 2) else { panic!() };
        assert_eq!(got, vec![entry(200), entry(300)]);
        q.cut_tail(QueueOffset(3));
        assert_eq!((q.visible, q.published, q.assigned), (QueueOffset(3), QueueOffset(3), QueueOffset(3)));
        q.unpersist(QueueOffset(1), None, PhysicalOffset(100));
        assert_eq!((q.file_end, q.visible, q.published, q.assign()), (at(1), at(1), at(1), at(1)));
    }

    fn at(n: u64) -> QueueOffset {
        QueueOffset(n)
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
