//! The CommitLog of one shard: its segments, its three positions, the bytes appended but
//! not yet written, and the appends waiting to be answered.
//!
//! ```text
//!  commitlog/00000000000000000000   segment 0: [0, S)
//!  commitlog/00000000001073741824   segment 1: [S, 2S)          S = segment size
//!
//!  | record | record | ... | record | BLANK |   a record never straddles two segments:
//!                                             when it would not fit (with 8 bytes to
//!                                             spare for a BLANK), the rest of the
//!                                             segment becomes a BLANK and the record
//!                                             starts the next segment.
//! ```
//!
//! Positions: flushed ≤ written ≤ appended ([`Positions`]). Appended bytes wait in
//! `pending` as chunks (each inside one segment, each at most
//! [`WRITE_CHUNK_MAX_BYTES`]) until the writer task hands them to the kernel in order;
//! many appends that arrive together thus become one write.
//!
//! Several chunks may be in the kernel at once ([`WRITES_IN_FLIGHT_MAX`]); they may
//! complete in any order, but `written` moves only over a chunk whose predecessors all
//! completed, so it never passes a hole. After a failed write, the writes behind it are
//! waited for, everything past `written` is abandoned, and the bytes those writes may
//! have left are zeroed before the next write, so recovery never finds an abandoned
//! record past the end.
//!
//! Waiters are kept in append order, so their end offsets ascend: completing "everything
//! up to X" pops from the front. `async` appends wait for written, `sync` appends for
//! flushed.
//!
//! Prepared ranges: while `sync` appends arrive, the store's preparer writes zeros (and
//! fdatasyncs them) ahead of the data, so the data's fdatasyncs overwrite written blocks
//! instead of converting unwritten extents. The preparer only chooses ranges at or past
//! `high_water` (the end of everything ever appended, which unlike `appended` never
//! rolls back), marks the range in `preparing` in the same step, and every CommitLog
//! write overlapping `preparing` waits for it: zeros never land on data.
//!
//! This type is state and arithmetic only; the store's tasks do the I/O and never hold a
//! borrow of it across an `.await`.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use rockshard_net::stored::{encode_blank, BLANK_SIZE_MIN_BYTES};

use crate::consume_queue::CqEntry;
use crate::error::StorageError;
#[allow(unused_imports)] // WRITES_IN_FLIGHT_MAX is named in the docs above.
use crate::limits::{WRITES_IN_FLIGHT_MAX, WRITE_CHUNK_MAX_BYTES};
use crate::offset::{PhysicalOffset, Positions, QueueOffset};
use rockshard_local::Completer;

/// The file name of the segment starting at `base`: 20 zero-padded digits, as RocketMQ.
pub fn segment_name(base: u64) -> String {
    format!("{base:020}")
}

pub fn parse_segment_name(name: &str) -> Option<u64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// A ConsumeQueue entry to publish once its record is written.
pub struct Dispatch {
    pub queue: usize,
    pub offset: QueueOffset,
    pub entry: CqEntry,
}

/// Appended bytes inside one segment, not yet written.
pub struct Chunk {
    pub start: PhysicalOffset,
    pub data: Vec<u8>,
    pub dispatch: Vec<Dispatch>,
}

impl Chunk {
    pub fn end(&self) -> PhysicalOffset {
        self.start.plus(self.data.len() as u64)
    }
}

pub struct Waiter {
    pub end: PhysicalOffset,
    /// Only `sync` waiters time out; the store's sweeper sets this at its first tick
    /// after the append, so appending reads no monotonic clock.
    pub deadline: Option<Instant>,
    pub done: Completer<Result<(), StorageError>>,
}

pub struct CommitLog<F> {
    pub dir: PathBuf,
    pub segment_size: u64,
    /// Segment files by base offset. Contiguous: each base is the previous + size.
    pub segments: BTreeMap<u64, Rc<F>>,
    /// The first byte still stored (retention moves it forward a segment at a time).
    pub min: PhysicalOffset,
    pub pos: Positions,
    pub pending: VecDeque<Chunk>,
    pub pending_bytes: usize,
    pub write_waiters: VecDeque<Waiter>,
    pub flush_waiters: VecDeque<Waiter>,
    /// Set after a failed fdatasync: appends are refused until the store is reopened.
    pub fenced: Option<StorageError>,
    /// The end of everything ever appended; `appended` rolls back after a failed write,
    /// this does not. Past it no write has ever gone.
    pub high_water: PhysicalOffset,
    /// The preparer's cursor: ranges below it were prepared or skipped.
    pub prepared_to: PhysicalOffset,
    /// The range the preparer is writing zeros into; writes overlapping it wait.
    pub preparing: Option<(PhysicalOffset, PhysicalOffset)>,
    /// The segment after the last one in `segments`, created ahead by the preparer.
    pub next_segment: Option<(u64, Rc<F>)>,
    /// Size of the last chunk taken for writing: the capacity new chunks start with.
    last_chunk_bytes: usize,
}

/// The smallest capacity a chunk starts with.
const CHUNK_CAPACITY_MIN_BYTES: usize = 64 << 10;

impl<F> CommitLog<F> {
    pub fn new(
        dir: PathBuf,
        segment_size: u64,
        segments: BTreeMap<u64, Rc<F>>,
        min: PhysicalOffset,
        end: PhysicalOffset,
    ) -> Self {
        CommitLog {
            dir,
            segment_size,
            segments,
            min,
            pos: Positions::at(end),
            pending: VecDeque::new(),
            pending_bytes: 0,
            write_waiters: VecDeque::new(),
            flush_waiters: VecDeque::new(),
            fenced: None,
            high_water: end,
            prepared_to: end,
            preparing: None,
            next_segment: None,
            last_chunk_bytes: 0,
        }
    }

    /// Whether `[from, to)` overlaps the range being prepared.
    pub fn overlaps_preparing(&self, from: PhysicalOffset, to: PhysicalOffset) -> bool {
        self.preparing.is_some_and(|(s, e)| from < e && s < to)
    }

    /// Takes the next pending chunk to write. With `split`, a chunk of at least twice
    /// [`crate::limits::WRITE_SPLIT_MIN_BYTES`] is cut at the record boundary nearest
    /// past its middle, and only the first part is taken; the rest stays first in line.
    pub fn pop_write(&mut self, split: bool) -> Option<Chunk> {
        let mut chunk = self.pending.pop_front()?;
        self.last_chunk_bytes = chunk.data.len();
        if split && chunk.data.len() >= 2 * crate::limits::WRITE_SPLIT_MIN_BYTES {
            let middle = chunk.start.plus(chunk.data.len() as u64 / 2);
            // Dispatched records mark record boundaries; a chunk of only undispatched
            // records (transaction halves) is not split.
            if let Some(i) = chunk.dispatch.iter().position(|d| d.entry.physical_offset >= middle) {
                let at = chunk.dispatch[i].entry.physical_offset;
                if at > chunk.start {
                    let data = chunk.data.split_off((at.0 - chunk.start.0) as usize);
                    let dispatch = chunk.dispatch.split_off(i);
                    self.pending.push_front(Chunk { start: at, data, dispatch });
                }
            }
        }
        Some(chunk)
    }

    pub fn segment_base(&self, offset: PhysicalOffset) -> u64 {
        offset.0 - offset.0 % self.segment_size
    }

    /// Whether a record of `len` bytes fits a segment at all.
    pub fn fits(&self, len: usize) -> bool {
        (len + BLANK_SIZE_MIN_BYTES) as u64 <= self.segment_size
    }

    /// The chunk that bytes appended at `at` go into: the last pending one if it ends at
    /// `at`, lies in the same segment and has room, else a new one.
    fn chunk_at(&mut self, at: PhysicalOffset, len: usize) -> &mut Chunk {
        let base = self.segment_base(at);
        let extend = self.pending.back().is_some_and(|c| {
            c.end() == at && self.segment_base(c.start) == base && c.data.len() + len <= WRITE_CHUNK_MAX_BYTES
        });
        if !extend {
            // As large as the last chunk written, so a chunk of a steady stream fills
            // without growing (each doubling copies everything so far).
            let capacity =
                self.last_chunk_bytes.next_power_of_two().clamp(CHUNK_CAPACITY_MIN_BYTES, WRITE_CHUNK_MAX_BYTES);
            self.pending.push_back(Chunk {
                start: at,
                data: Vec::with_capacity(capacity.max(len)),
                dispatch: Vec::new(),
            });
        }
        self.pending.back_mut().expect("a chunk was just ensured")
    }

    /// Reserves room for a record of `len` bytes (which [`Self::fits`]) and returns its
    /// offset and the chunk to encode it into. Pads the current segment with a BLANK
    /// first when the record would not leave room for one.
    pub fn reserve(&mut self, len: usize) -> (PhysicalOffset, &mut Chunk) {
        assert!(self.fits(len));
        let mut at = self.pos.appended();
        let segment_end = self.segment_base(at) + self.segment_size;
        if at.0 + (len + BLANK_SIZE_MIN_BYTES) as u64 > segment_end {
            let blank = (segment_end - at.0) as usize;
            let chunk = self.chunk_at(at, blank);
            encode_blank(blank, &mut chunk.data);
            self.pending_bytes += blank;
            at = PhysicalOffset(segment_end);
            self.pos.append_to(at);
        }
        self.pos.append_to(at.plus(len as u64));
        self.high_water = self.high_water.max(self.pos.appended());
        self.pending_bytes += len;
        (at, self.chunk_at(at, len))
    }

    /// Completes every waiter of `queue` whose end is at or before `upto`.
    pub fn complete_upto(queue: &mut VecDeque<Waiter>, upto: PhysicalOffset) {
        while queue.front().is_some_and(|w| w.end <= upto) {
            let w = queue.pop_front().expect("front exists");
            w.done.complete(Ok(()));
        }
    }

    /// Fails every waiter of `queue` whose end is past `after`.
    pub fn fail_after(queue: &mut VecDeque<Waiter>, after: PhysicalOffset, err: &StorageError) {
        let keep = queue.iter().take_while(|w| w.end <= after).count();
        for w in queue.drain(keep..) {
            w.done.complete(Err(err.clone()));
        }
    }

    /// Segments that may hold bytes in `[from, to)`.
    pub fn segments_between(&self, from: PhysicalOffset, to: PhysicalOffset) -> Vec<Rc<F>> {
        if to <= from {
            return Vec::new();
        }
        let first = self.segment_base(from);
        self.segments.range(first..to.0).map(|(_, f)| f.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rockshard_net::stored::{decode, Record};

    fn log(segment: u64) -> CommitLog<()> {
        CommitLog::new(PathBuf::new(), segment, BTreeMap::new(), PhysicalOffset(0), PhysicalOffset(0))
    }

    #[test]
    fn segment_names_are_twenty_digits() {
        assert_eq!(segment_name(1 << 30), "00000000001073741824");
        assert_eq!(parse_segment_name("00000000001073741824"), Some(1 << 30));
        assert_eq!(parse_segment_name("1073741824"), None);
    }

    #[test]
    fn a_record_that_would_not_leave_room_for_a_blank_rolls_to_the_next_segment() {
        let mut l = log(100);
        let (at, c) = l.reserve(50);
        c.data.extend_from_slice(&[1; 50]);
        assert_eq!(at, PhysicalOffset(0));
        // 50 + 45 = 95 would leave 5 bytes: less than a BLANK needs.
        let (at, c) = l.reserve(45);
        c.data.extend_from_slice(&[2; 45]);
        assert_eq!(at, PhysicalOffset(100));
        assert_eq!(l.pos.appended(), PhysicalOffset(145));
        assert_eq!(l.pending.len(), 2, "one chunk per segment");
        let first = &l.pending[0];
        assert_eq!(first.data.len(), 100);
        assert_eq!(decode(&first.data[50..]).unwrap(), Some(Record::Blank { total_size: 50 }));
        assert_eq!(l.pending_bytes, 145);
    }

    #[test]
    fn a_large_chunk_splits_at_a_record_boundary_near_its_middle() {
        use crate::consume_queue::CqEntry;
        let mut l = log(1 << 30);
        let record = 1000usize;
        let n = 2 * crate::limits::WRITE_SPLIT_MIN_BYTES / record + 2;
        for i in 0..n {
            let (at, c) = l.reserve(record);
            c.data.extend_from_slice(&vec![i as u8; record]);
            let entry = CqEntry { physical_offset: at, size: record as u32, tags_code: 0 };
            c.dispatch.push(Dispatch { queue: 0, offset: QueueOffset(i as u64), entry });
        }
        let first = l.pop_write(true).unwrap();
        let rest = l.pending.front().unwrap();
        assert_eq!(first.end(), rest.start, "the parts are contiguous");
        assert_eq!(first.data.len() % record, 0, "cut at a record boundary");
        assert!(first.data.len() >= n * record / 2 && first.data.len() < n * record / 2 + record);
        assert_eq!(first.dispatch.len() + rest.dispatch.len(), n);
        assert!(first.dispatch.iter().all(|d| d.entry.physical_offset < rest.start));
        assert_eq!(rest.dispatch[0].entry.physical_offset, rest.start);
        assert_eq!(rest.data[0], first.dispatch.len() as u8);
        // Not split when asked not to, or when small.
        let whole = l.pop_write(false).unwrap();
        assert_eq!(whole.end(), l.pos.appended());
        assert!(l.pop_write(true).is_none());
    }

    #[test]
    fn high_water_does_not_roll_back_with_appended() {
        let mut l = log(1000);
        l.reserve(100);
        l.pos.abandon_unwritten();
        assert_eq!((l.pos.appended(), l.high_water), (PhysicalOffset(0), PhysicalOffset(100)));
        l.reserve(50);
        assert_eq!(l.high_water, PhysicalOffset(100));
    }

    #[test]
    fn a_record_that_leaves_exactly_a_blank_stays() {
        let mut l = log(100);
        let (at, c) = l.reserve(92);
        c.data.extend_from_slice(&[1; 92]);
        assert_eq!(at, PhysicalOffset(0));
        let (at, _) = l.reserve(10);
        assert_eq!(at, PhysicalOffset(100));
        assert!(!l.fits(93));
    }
}
