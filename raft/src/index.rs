//! The Raft index of one shard: Raft index i -> (term, CommitLog range, flags), one
//! fixed-size entry per Raft entry, in the file `<raft dir>/index`.
//!
//! ```text
//!  offset  size  field   notes (all integers big-endian)
//!  0       8     TERM    Raft term of the entry
//!  8       8     START   CommitLog offset where the entry's bytes begin (any BLANK
//!                        filler the store put before its first record included)
//!  16      8     END     CommitLog offset just past its last record (END == START:
//!                        an empty entry, e.g. a new leader's no-op)
//!  24      4     FLAGS   bit 0: the entry holds records (END > START); others zero
//!  28      4     CRC     CRC32 (IEEE) of the entry's Raft index (u64 BE), then bytes 0..28
//! ```
//! Entry i (the first Raft index is 1) sits at byte (i - 1) × 32.
//!
//! Owns: the index file and the bytes of entries appended but not yet written.
//! Invariants:
//! - Entries are contiguous: START of entry i equals END of entry i - 1, because every
//!   byte the replica appends to the CommitLog belongs to exactly one entry.
//! - Recovery keeps the entries before the first bad one (short, CRC mismatch, unknown
//!   flags, not contiguous) and cuts the file there, so a torn tail never resurfaces.
//! - [`IndexFile::truncate`] shortens the file and fdatasyncs before returning: entries
//!   past the cut are gone for good, and the CRC covering the index means a stale entry
//!   can never be read at another position.
//! - [`IndexFile::flush_to`] is a group commit: one write of every pending entry, one
//!   fdatasync, for however many callers wait.
//!
//! Thread: the shard's executor. Deliberately not here: what an entry's bytes mean
//! (the CommitLog side, `data.rs`), reconciliation with the CommitLog (`replica.rs`).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use glommio::sync::Semaphore;
use rockshard_storage::disk::OpenMode;
use rockshard_storage::{Disk, DiskFile};

use crate::error::{Error, Result};
use crate::limits::INDEX_ENTRY_BYTES;

const FLAG_HAS_RECORDS: u32 = 1;
const FLAGS_KNOWN: u32 = FLAG_HAS_RECORDS;
const CRC_AT: usize = 28;
const _: () = assert!(CRC_AT + 4 == INDEX_ENTRY_BYTES);

/// Index entries read from disk per read at open: large enough to read a big index in
/// few round trips, small enough not to double the memory of the entries kept.
const INDEX_READ_CHUNK_BYTES: usize = 1 << 20;
const _: () = assert!(INDEX_READ_CHUNK_BYTES.is_multiple_of(INDEX_ENTRY_BYTES));

/// A byte range of the CommitLog: [start, end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    pub fn len(&self) -> u64 {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// What the index knows of one Raft entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub term: u64,
    pub span: Span,
}

fn crc_of(index: u64, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_be_bytes());
    h.update(body);
    h.finalize()
}

/// Appends entry `index` to `out` (exactly [`INDEX_ENTRY_BYTES`] bytes).
pub fn encode(index: u64, e: &IndexEntry, out: &mut Vec<u8>) {
    let start = out.len();
    let flags = if e.span.is_empty() { 0 } else { FLAG_HAS_RECORDS };
    out.extend_from_slice(&e.term.to_be_bytes());
    out.extend_from_slice(&e.span.start.to_be_bytes());
    out.extend_from_slice(&e.span.end.to_be_bytes());
    out.extend_from_slice(&flags.to_be_bytes());
    let crc = crc_of(index, &out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
    debug_assert_eq!(out.len() - start, INDEX_ENTRY_BYTES);
}

/// Decodes entry `index` from `buf` (at least [`INDEX_ENTRY_BYTES`] long); `None` when it
/// is not a valid entry (torn, zeroed, written for another index, unknown flags).
pub fn decode(index: u64, buf: &[u8]) -> Option<IndexEntry> {
    let buf = buf.get(..INDEX_ENTRY_BYTES)?;
    let u64_at = |at: usize| u64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
    let u32_at = |at: usize| u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
    if crc_of(index, &buf[..CRC_AT]) != u32_at(CRC_AT) {
        return None;
    }
    let (term, start, end, flags) = (u64_at(0), u64_at(8), u64_at(16), u32_at(24));
    if flags & !FLAGS_KNOWN != 0 || start > end || (flags & FLAG_HAS_RECORDS != 0) != (end > start) || term == 0 {
        return None;
    }
    Some(IndexEntry { term, span: Span { start, end } })
}

fn position(index: u64) -> u64 {
    (index - 1) * INDEX_ENTRY_BYTES as u64
}

struct State {
    /// Last index appended (written or pending).
    last_index: u64,
    /// Encoded entries not yet handed to the file, starting at `pending_from`.
    pending: Vec<u8>,
    pending_from: u64,
    /// Every entry up to this one is written and fdatasynced.
    synced_index: u64,
}

/// The index file of one shard.
pub struct IndexFile<F: DiskFile> {
    file: F,
    path: PathBuf,
    state: RefCell<State>,
    /// One write-and-sync (or truncation) at a time: the pending bytes are taken as one
    /// range, and a truncation must not race a write past its cut.
    lock: Semaphore,
}

impl<F: DiskFile> IndexFile<F> {
    /// Opens (creating it if needed) the index at `path` and returns it with the entries
    /// recovered: every entry before the first bad one. The file is cut after them.
    pub async fn open<D: Disk<File = F>>(disk: &D, path: &Path) -> Result<(Self, Vec<IndexEntry>)> {
        let created = !disk.exists(path).await;
        let file = disk.open(path, OpenMode::Create).await.map_err(Error::at("open", path, 0))?;
        if created {
            // The file must survive a power loss as soon as entries are synced into it.
            if let Some(dir) = path.parent() {
                disk.sync_dir(dir).await.map_err(Error::at("sync dir of", path, 0))?;
            }
        }
        let size = file.size().await.map_err(Error::at("stat", path, 0))?;
        let mut entries: Vec<IndexEntry> = Vec::new();
        let mut at = 0u64;
        'read: while at < size {
            let want = (size - at).min(INDEX_READ_CHUNK_BYTES as u64) as usize;
            let chunk = file.read_at(at, want).await.map_err(Error::at("read", path, at))?;
            if chunk.is_empty() {
                break;
            }
            for raw in chunk.chunks(INDEX_ENTRY_BYTES) {
                let index = entries.len() as u64 + 1;
                let Some(e) = decode(index, raw) else { break 'read };
                let expected_start = entries.last().map_or(e.span.start, |p| p.span.end);
                if e.span.start != expected_start || entries.last().is_some_and(|p| p.term > e.term) {
                    break 'read;
                }
                entries.push(e);
            }
            at += chunk.len() as u64;
        }
        let good = entries.len() as u64 * INDEX_ENTRY_BYTES as u64;
        if size > good {
            tracing::warn!(path = %path.display(), entries = entries.len(), cut_bytes = size - good, "raft index: cut after the last good entry");
            file.truncate(good).await.map_err(Error::at("truncate", path, good))?;
            file.sync_data().await.map_err(Error::at("fdatasync", path, good))?;
        }
        let last = entries.len() as u64;
        let state = State { last_index: last, pending: Vec::new(), pending_from: last + 1, synced_index: last };
        Ok((IndexFile { file, path: path.to_path_buf(), state: RefCell::new(state), lock: Semaphore::new(1) }, entries))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn last_index(&self) -> u64 {
        self.state.borrow().last_index
    }

    pub fn synced_index(&self) -> u64 {
        self.state.borrow().synced_index
    }

    /// Adds entry `index` (which must follow the last one) to the pending bytes.
    pub fn append(&self, index: u64, e: &IndexEntry) {
        let mut st = self.state.borrow_mut();
        assert_eq!(index, st.last_index + 1, "index entries are appended in order");
        encode(index, e, &mut st.pending);
        st.last_index = index;
    }

    /// Writes every pending entry (in one write) and, with `sync`, makes every entry up to
    /// `index` durable (fdatasync): callers that arrive while a sync runs share the next.
    /// Without `sync` the entries reach the page cache only, as the CommitLog bytes of
    /// `async` topics do; a power loss may then take both, and reconciliation at open
    /// cuts whichever of the two got further.
    pub async fn flush_to(&self, index: u64, sync: bool) -> Result<()> {
        if self.state.borrow().synced_index >= index {
            return Ok(());
        }
        if !sync && self.state.borrow().pending_from > index {
            return Ok(());
        }
        let _guard = self.lock.acquire_permit(1).await.map_err(|_| Error::Stopped("index file closed".into()))?;
        let (buf, from, upto) = {
            let mut st = self.state.borrow_mut();
            if st.synced_index >= index || (!sync && st.pending_from > index) {
                return Ok(());
            }
            let from = st.pending_from;
            st.pending_from = st.last_index + 1;
            (std::mem::take(&mut st.pending), from, st.last_index)
        };
        let pos = position(from);
        if !buf.is_empty() {
            self.file.write_at(buf, pos).await.map_err(Error::at("write", &self.path, pos))?;
        }
        if sync {
            self.file.sync_data().await.map_err(Error::at("fdatasync", &self.path, pos))?;
            let mut st = self.state.borrow_mut();
            st.synced_index = st.synced_index.max(upto.min(st.last_index));
        }
        Ok(())
    }

    /// Removes every entry from `from` on, durably, before returning.
    pub async fn truncate(&self, from: u64) -> Result<()> {
        let _guard = self.lock.acquire_permit(1).await.map_err(|_| Error::Stopped("index file closed".into()))?;
        {
            let mut st = self.state.borrow_mut();
            if from > st.last_index {
                return Ok(());
            }
            if from >= st.pending_from {
                let keep = position(from) - position(st.pending_from);
                st.pending.truncate(keep as usize);
            } else {
                st.pending.clear();
                st.pending_from = from;
            }
            st.last_index = from - 1;
            st.synced_index = st.synced_index.min(from - 1);
        }
        let len = position(from);
        self.file.truncate(len).await.map_err(Error::at("truncate", &self.path, len))?;
        self.file.sync_data().await.map_err(Error::at("fdatasync", &self.path, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rockshard_storage::testing::SimDisk;

    #[test]
    fn golden_bytes() {
        let mut out = Vec::new();
        encode(3, &IndexEntry { term: 2, span: Span { start: 0x1000, end: 0x10be } }, &mut out);
        let mut expected = vec![
            0, 0, 0, 0, 0, 0, 0, 2, // term
            0, 0, 0, 0, 0, 0, 0x10, 0x00, // start
            0, 0, 0, 0, 0, 0, 0x10, 0xbe, // end
            0, 0, 0, 1, // flags: has records
        ];
        let crc = crc32fast::hash(&[&3u64.to_be_bytes()[..], &expected[..]].concat());
        expected.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(out, expected);
        assert_eq!(decode(3, &out), Some(IndexEntry { term: 2, span: Span { start: 0x1000, end: 0x10be } }));
        // The same bytes at another index, a flipped bit, or a zeroed entry are not entries.
        assert_eq!(decode(4, &out), None);
        let mut flipped = out.clone();
        flipped[9] ^= 1;
        assert_eq!(decode(3, &flipped), None);
        assert_eq!(decode(1, &[0u8; INDEX_ENTRY_BYTES]), None);
    }

    #[test]
    fn empty_entry_has_no_record_flag() {
        let mut out = Vec::new();
        encode(1, &IndexEntry { term: 1, span: Span { start: 7, end: 7 } }, &mut out);
        assert_eq!(&out[24..28], &[0, 0, 0, 0]);
        assert!(decode(1, &out).is_some());
    }

    #[test]
    fn recovery_keeps_synced_entries_and_stops_at_a_torn_one() {
        crate::test_util::run(|| async {
            let disk = SimDisk::new();
            disk.create_dir_all(Path::new("/r")).await.unwrap();
            let path = Path::new("/r/index");
            let (idx, entries) = IndexFile::open(&disk, path).await.unwrap();
            assert!(entries.is_empty());
            let mut end = 0;
            for i in 1..=5u64 {
                let e = IndexEntry { term: 1 + i / 3, span: Span { start: end, end: end + i * 10 } };
                end = e.span.end;
                idx.append(i, &e);
            }
            idx.flush_to(5, true).await.unwrap();
            idx.append(6, &IndexEntry { term: 3, span: Span { start: end, end: end + 1 } });
            idx.flush_to(6, true).await.unwrap();
            // Tear entry 5: recovery keeps 1..=4 and cuts the file there.
            disk.corrupt(path, 4 * INDEX_ENTRY_BYTES + 3, &[0xff]);
            drop(idx);
            let (idx, entries) = IndexFile::open(&disk, path).await.unwrap();
            assert_eq!(entries.len(), 4);
            assert_eq!(entries[3].span.end, 100);
            assert_eq!(idx.last_index(), 4);
            assert_eq!(disk.contents(path).unwrap().len(), 4 * INDEX_ENTRY_BYTES);
        });
    }

    #[test]
    fn unsynced_entries_are_lost_and_truncation_is_durable() {
        crate::test_util::run(|| async {
            let disk = SimDisk::new();
            disk.create_dir_all(Path::new("/r")).await.unwrap();
            let path = Path::new("/r/index");
            let (idx, _) = IndexFile::open(&disk, path).await.unwrap();
            for i in 1..=4u64 {
                idx.append(i, &IndexEntry { term: 1, span: Span { start: i - 1, end: i } });
            }
            idx.flush_to(4, true).await.unwrap();
            idx.truncate(3).await.unwrap();
            idx.append(3, &IndexEntry { term: 2, span: Span { start: 2, end: 2 } });
            // Entry 3 (term 2) is only pending: a power loss keeps entries 1..=2.
            disk.power_loss();
            drop(idx);
            let (_, entries) = IndexFile::open(&disk, path).await.unwrap();
            assert_eq!(entries.len(), 2);
            assert!(entries.iter().all(|e| e.term == 1));
        });
    }
}
