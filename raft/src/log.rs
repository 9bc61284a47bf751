//! The Raft log as raft-rs sees it (`raft::Storage`), kept in memory: the term of every
//! entry, what the data side holds for each (its CommitLog span), and the data of recent
//! entries in a bounded cache. Older data is read back from the CommitLog on demand:
//! raft-rs gets `LogTemporarilyUnavailable`, the replica's fetcher reads the range, and
//! `RawNode::on_entries_fetched` makes raft-rs ask again (raft-rs 0.7's async fetch).
//!
//! Owns: [`LogMem`], shared (`Rc<RefCell<_>>`) by the raft-rs storage handle
//! [`RaftLog`], the replica's driver, persister and fetcher.
//!
//! Invariants:
//! - `terms` is raft-rs's view: entries raft-rs handed over (possibly not yet durable)
//!   are here before `advance_append_async`, as raft-rs requires; a divergent suffix is
//!   replaced here at once.
//! - `stored` is the data side's view, as the index file records it: the persister
//!   appends to it in order and cuts it before replacing a suffix. It may lag `terms`
//!   (entries not yet persisted) and, for a moment, hold entries `terms` has replaced.
//! - The cache holds a contiguous suffix `[cache_first, last]` and every entry not yet
//!   applied or not yet on the data side, so the committed entries raft-rs asks for at
//!   apply time (a context that cannot wait) are always there.
//! - The first index is 1 and stays 1: no compaction, no snapshots (a documented gap).
//!
//! Thread: the shard's executor. No borrow of `LogMem` is held across an `.await` or
//! while raft-rs runs (raft-rs calls back into [`RaftLog`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;
use raft::eraftpb::{ConfState, Entry, HardState};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::index::{IndexEntry, Span};
use crate::limits::{FETCH_BYTES_MAX, FETCH_REQUESTS_MAX};

/// An async read raft-rs is waiting for: entries [low, high) for a follower.
pub struct FetchRequest {
    pub low: u64,
    pub high: u64,
    pub max_size: u64,
    pub context: GetEntriesContext,
}

pub struct LogMem {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    /// Term of entry i at i - 1.
    terms: Vec<u64>,
    /// Data-side entries, entry i at i - 1.
    stored: Vec<IndexEntry>,
    cache: VecDeque<Bytes>,
    cache_first: u64,
    cache_bytes: usize,
    cache_limit: usize,
    applied: u64,
    /// Entries read back for lagging followers: index -> (term, data).
    fetched: BTreeMap<u64, (u64, Bytes)>,
    fetched_bytes: usize,
    pub fetch_requests: VecDeque<FetchRequest>,
    /// Counters for tests and status.
    pub cache_misses: u64,
}

fn entry(index: u64, term: u64, data: Bytes) -> Entry {
    Entry { index, term, data, ..Default::default() }
}

impl LogMem {
    /// A log holding `stored` (recovered from the index) whose entries after `applied`
    /// have their data in `unapplied` (in order).
    pub fn new(
        hard_state: HardState,
        voters: &[u64],
        stored: Vec<IndexEntry>,
        applied: u64,
        unapplied: Vec<Bytes>,
        cache_limit: usize,
    ) -> Self {
        assert_eq!(applied + unapplied.len() as u64, stored.len() as u64, "every unapplied entry's data is loaded");
        let conf_state = ConfState { voters: voters.to_vec(), ..Default::default() };
        let cache_bytes = unapplied.iter().map(Bytes::len).sum();
        LogMem {
            hard_state,
            conf_state,
            terms: stored.iter().map(|e| e.term).collect(),
            stored,
            cache: unapplied.into(),
            cache_first: applied + 1,
            cache_bytes,
            cache_limit,
            applied,
            fetched: BTreeMap::new(),
            fetched_bytes: 0,
            fetch_requests: VecDeque::new(),
            cache_misses: 0,
        }
    }

    pub fn last_index(&self) -> u64 {
        self.terms.len() as u64
    }

    pub fn term_of(&self, index: u64) -> Option<u64> {
        if index == 0 {
            return Some(0);
        }
        self.terms.get(index as usize - 1).copied()
    }

    /// Entries raft-rs handed over in a Ready. Returns the first index replaced, if the
    /// entries overwrite a suffix.
    pub fn append_unstable(&mut self, entries: &[Entry]) -> Option<u64> {
        let first = entries.first()?.index;
        let last = self.last_index();
        assert!(first >= 1 && first <= last + 1, "entries at {first} do not follow the log ending at {last}");
        let replaced = (first <= last).then_some(first);
        if replaced.is_some() {
            assert!(first > self.applied, "raft-rs replaces only unapplied entries ({first} <= {})", self.applied);
            assert!(first >= self.cache_first, "every unapplied entry is cached");
            self.terms.truncate(first as usize - 1);
            while self.cache_first + self.cache.len() as u64 > first {
                let gone = self.cache.pop_back().expect("cache holds the suffix");
                self.cache_bytes -= gone.len();
            }
            self.drop_fetched_from(first);
        }
        for e in entries {
            self.terms.push(e.term);
            self.cache_bytes += e.data.len();
            self.cache.push_back(e.data.clone());
        }
        replaced
    }

    fn drop_fetched_from(&mut self, from: u64) {
        let gone = self.fetched.split_off(&from);
        self.fetched_bytes -= gone.values().map(|(_, d)| d.len()).sum::<usize>();
    }

    // ---- the data side's view -----------------------------------------------------

    pub fn stored_len(&self) -> u64 {
        self.stored.len() as u64
    }

    pub fn stored(&self, index: u64) -> Option<IndexEntry> {
        index.checked_sub(1).and_then(|i| self.stored.get(i as usize)).copied()
    }

    /// The persister appended entry `index` to the data side.
    pub fn push_stored(&mut self, index: u64, e: IndexEntry) {
        assert_eq!(index, self.stored.len() as u64 + 1, "stored entries are appended in order");
        if let Some(p) = self.stored.last() {
            assert_eq!(p.span.end, e.span.start, "stored entries are contiguous");
        }
        self.stored.push(e);
        self.evict();
    }

    /// The persister cut the data side at entry `from`.
    pub fn truncate_stored(&mut self, from: u64) {
        self.stored.truncate(from as usize - 1);
    }

    /// The span of entry `index` if the data side holds that very entry (same term).
    pub fn span_of(&self, index: u64) -> Option<Span> {
        let s = self.stored(index)?;
        (self.term_of(index) == Some(s.term)).then_some(s.span)
    }

    // ---- cache --------------------------------------------------------------------

    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn set_applied(&mut self, applied: u64) {
        assert!(applied >= self.applied, "applied moves forward");
        self.applied = applied;
        self.evict();
    }

    /// Drops the oldest cached data while over the limit, never an entry that is not yet
    /// applied or not yet on the data side (nobody could read it back).
    fn evict(&mut self) {
        let stored = self.stored.len() as u64;
        while self.cache_bytes > self.cache_limit && self.cache_first <= self.applied.min(stored) {
            let Some(d) = self.cache.pop_front() else { break };
            self.cache_bytes -= d.len();
            self.cache_first += 1;
        }
    }

    pub fn cached_range(&self) -> (u64, u64) {
        (self.cache_first, self.cache_first + self.cache.len() as u64)
    }

    /// Data read back for a fetch; kept only if the entry is still the one raft-rs has.
    pub fn insert_fetched(&mut self, index: u64, term: u64, data: Bytes) {
        if self.term_of(index) != Some(term) {
            return;
        }
        // Fetched data serves the follower that asked and any other behind it; past
        // the bound the oldest goes first (it is the least likely to be asked again).
        let bound = FETCH_BYTES_MAX as usize * FETCH_REQUESTS_MAX;
        while self.fetched_bytes + data.len() > bound {
            let Some((_, (_, d))) = self.fetched.pop_first() else { break };
            self.fetched_bytes -= d.len();
        }
        self.fetched_bytes += data.len();
        if let Some((_, old)) = self.fetched.insert(index, (term, data)) {
            self.fetched_bytes -= old.len();
        }
    }

    /// Data of entry `index` if cached or fetched (no I/O).
    pub fn data_of(&self, index: u64) -> Option<Bytes> {
        if index >= self.cache_first {
            return self.cache.get((index - self.cache_first) as usize).cloned();
        }
        match self.fetched.get(&index) {
            Some((term, d)) if self.term_of(index) == Some(*term) => Some(d.clone()),
            _ => None,
        }
    }

    fn entries(
        &mut self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
        ctx: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let last = self.last_index();
        assert!(high <= last + 1, "entries [{low}, {high}) past the last index {last}");
        if low < 1 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        let max = max_size.unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut size = 0u64;
        for index in low..high {
            let Some(data) = self.data_of(index) else {
                if !out.is_empty() {
                    break; // Hand over what is here; raft-rs asks for the rest later.
                }
                self.cache_misses += 1;
                if ctx.can_async() {
                    if self.fetch_requests.len() < FETCH_REQUESTS_MAX {
                        self.fetch_requests.push_back(FetchRequest { low, high, max_size: max, context: ctx });
                    }
                    return Err(raft::Error::Store(StorageError::LogTemporarilyUnavailable));
                }
                // Unapplied entries are never evicted, so only raft-rs asking for old
                // applied entries in a context that cannot wait lands here.
                return Err(raft::Error::Store(StorageError::Unavailable));
            };
            let e = entry(index, self.term_of(index).expect("index <= last"), data);
            size += u64::from(protobuf::Message::compute_size(&e));
            if !out.is_empty() && size > max {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }
}

/// raft-rs's handle on [`LogMem`].
#[derive(Clone)]
pub struct RaftLog {
    pub mem: Rc<RefCell<LogMem>>,
}

impl Storage for RaftLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let m = self.mem.borrow();
        Ok(RaftState { hard_state: m.hard_state.clone(), conf_state: m.conf_state.clone() })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.borrow_mut().entries(low, high, max_size.into(), context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.borrow().term_of(idx).ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.mem.borrow().last_index())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<raft::eraftpb::Snapshot> {
        // The log is never compacted, so raft-rs never needs one.
        Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ie(term: u64, start: u64, end: u64) -> IndexEntry {
        IndexEntry { term, span: Span { start, end } }
    }

    fn mem(limit: usize) -> LogMem {
        LogMem::new(HardState::default(), &[1, 2, 3], vec![], 0, vec![], limit)
    }

    #[test]
    fn misses_after_eviction_ask_for_an_async_fetch() {
        let mut m = mem(10);
        let ents: Vec<Entry> = (1..=4).map(|i| entry(i, 1, Bytes::from(vec![i as u8; 8]))).collect();
        assert_eq!(m.append_unstable(&ents), None);
        for i in 1..=4 {
            m.push_stored(i, ie(1, (i - 1) * 8, i * 8));
        }
        // Nothing applied: nothing may be evicted although 32 bytes exceed the limit.
        assert_eq!(m.cached_range(), (1, 5));
        m.set_applied(3);
        assert_eq!(m.cached_range(), (4, 5));
        let log = RaftLog { mem: Rc::new(RefCell::new(m)) };
        let got = log.entries(4, 5, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(got[0].data.as_ref(), &[4u8; 8]);
        let err = log.entries(2, 5, None, GetEntriesContext::empty(true)).unwrap_err();
        assert_eq!(err, raft::Error::Store(StorageError::LogTemporarilyUnavailable));
        let req = log.mem.borrow_mut().fetch_requests.pop_front().unwrap();
        assert_eq!((req.low, req.high), (2, 5));
        // The fetch brings entry 2 and 3 back; a stale term is ignored.
        log.mem.borrow_mut().insert_fetched(2, 1, Bytes::from(vec![2u8; 8]));
        log.mem.borrow_mut().insert_fetched(3, 9, Bytes::from(vec![0u8; 8]));
        let got = log.entries(2, 5, None, GetEntriesContext::empty(true)).unwrap();
        assert_eq!(got.len(), 1, "stops at the first entry still missing");
        assert_eq!(got[0].index, 2);
    }

    #[test]
    fn a_replaced_suffix_goes_from_terms_and_cache() {
        let mut m = mem(1 << 20);
        let ents: Vec<Entry> = (1..=3).map(|i| entry(i, 1, Bytes::from(vec![i as u8]))).collect();
        m.append_unstable(&ents);
        let newer = vec![entry(2, 2, Bytes::from_static(b"x"))];
        assert_eq!(m.append_unstable(&newer), Some(2));
        assert_eq!(m.last_index(), 2);
        assert_eq!(m.term_of(2), Some(2));
        assert_eq!(m.data_of(2).unwrap().as_ref(), b"x");
        assert_eq!(m.data_of(3), None);
    }

    #[test]
    fn span_is_known_only_for_the_entry_raft_has() {
        let mut m = mem(1 << 20);
        m.append_unstable(&[entry(1, 1, Bytes::from_static(b"ab"))]);
        m.push_stored(1, ie(1, 0, 2));
        assert_eq!(m.span_of(1), Some(Span { start: 0, end: 2 }));
        m.append_unstable(&[entry(1, 2, Bytes::from_static(b"c"))]);
        assert_eq!(m.span_of(1), None);
    }
}
