//! Two small read caches of one store: cold CommitLog windows and ConsumeQueue blocks.
//!
//! - [`ColdCache`]: aligned windows of CommitLog bytes (at most [`COLD_WINDOW_BYTES`],
//!   never crossing a segment end) read with O_DIRECT for consumers that lag behind the
//!   hot window. A sequential cold reader finds its next records already read (the
//!   store reads [`COLD_READ_AHEAD_WINDOWS`] ahead), so one pull costs no I/O of its own
//!   and the device sees a few large reads in flight instead of one small one at a time.
//! - [`CqCache`]: blocks of decoded ConsumeQueue entries read from ConsumeQueue files,
//!   so a sequential reader reads its ConsumeQueue once per block, not once per pull.
//!
//! Why caching is safe: both hold only bytes that never change once readable. CommitLog
//! bytes below `written` are never rewritten (appends only add; a failed write rolls
//! back only what was never written), and a window is cut at the `written` end of the
//! moment it was read, so a window never holds bytes that were not yet written. Entries
//! below a queue's `file_end` are persisted and never rewritten while the store is open.
//! Retention may delete what a cached window or block came from; readers check the
//! store's minimum offsets before they use either, as they would before a disk read.
//! A truncate ([`crate::Store::truncate`]) is the one thing that rewrites bytes below
//! `written` and entries below `file_end`: it drops every window and block reaching past
//! its cut before new data can land there, and readers that were mid-read when it ran
//! notice it and read again.
//!
//! Both are bounded ([`COLD_WINDOWS_MAX`], [`CQ_CACHE_BLOCKS_MAX`]) and evict the least
//! recently used entry. A window being read cannot be evicted; when every slot is being
//! read, a reader reads without the cache.
//!
//! Runs on the store's shard; state only. The store issues the reads, never holding a
//! borrow of a cache across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::consume_queue::CqEntry;
use crate::error::StorageError;
#[allow(unused_imports)] // Named in the docs above.
use crate::limits::{COLD_READ_AHEAD_WINDOWS, COLD_WINDOWS_MAX, COLD_WINDOW_BYTES, CQ_CACHE_BLOCKS_MAX};

/// One cold window: the CommitLog bytes `[start, end)`, being read or read.
pub struct Window {
    pub start: u64,
    pub end: u64,
    state: RefCell<WindowState>,
    last_use: Cell<u64>,
}

enum WindowState {
    Loading(Vec<Waker>),
    Ready(Bytes),
    Failed(StorageError),
}

impl Window {
    /// Whether the bytes of `[from, to)` lie inside this window.
    pub fn covers(&self, from: u64, to: u64) -> bool {
        self.start <= from && to <= self.end
    }

    pub fn is_loading(&self) -> bool {
        matches!(*self.state.borrow(), WindowState::Loading(_))
    }

    pub fn is_failed(&self) -> bool {
        matches!(*self.state.borrow(), WindowState::Failed(_))
    }

    /// Ends the read: wakes everyone waiting for the window.
    pub fn finish(&self, result: Result<Bytes, StorageError>) {
        let new = match result {
            Ok(b) => {
                assert_eq!(b.len() as u64, self.end - self.start, "a window read returns the whole window");
                WindowState::Ready(b)
            }
            Err(e) => WindowState::Failed(e),
        };
        let old = self.state.replace(new);
        if let WindowState::Loading(wakers) = old {
            for w in wakers {
                w.wake();
            }
        }
    }

    /// Resolves to the window's bytes once read.
    pub fn bytes(self: &Rc<Self>) -> WindowBytes {
        WindowBytes { window: self.clone() }
    }
}

pub struct WindowBytes {
    window: Rc<Window>,
}

impl Future for WindowBytes {
    type Output = Result<Bytes, StorageError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.window.state.borrow_mut();
        match &mut *state {
            WindowState::Ready(b) => Poll::Ready(Ok(b.clone())),
            WindowState::Failed(e) => Poll::Ready(Err(e.clone())),
            WindowState::Loading(wakers) => {
                if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// Cold windows by start offset.
#[derive(Default)]
pub struct ColdCache {
    windows: HashMap<u64, Rc<Window>>,
    clock: u64,
}

impl ColdCache {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The window starting at `start`, if cached (read or being read); marks it used.
    pub fn get(&mut self, start: u64) -> Option<Rc<Window>> {
        let now = self.tick();
        let w = self.windows.get(&start)?;
        w.last_use.set(now);
        Some(w.clone())
    }

    /// Adds a window `[start, end)` to be read, replacing any cached one at `start`
    /// (a shorter one, cut at an earlier written end). Evicts the least recently used
    /// read window when full; returns `None` if every slot is being read.
    pub fn insert(&mut self, start: u64, end: u64) -> Option<Rc<Window>> {
        self.windows.remove(&start);
        if self.windows.len() >= COLD_WINDOWS_MAX {
            let victim = self.windows.values().filter(|w| !w.is_loading()).min_by_key(|w| w.last_use.get())?.start;
            self.windows.remove(&victim);
        }
        let now = self.tick();
        let w = Rc::new(Window {
            start,
            end,
            state: RefCell::new(WindowState::Loading(Vec::new())),
            last_use: Cell::new(now),
        });
        self.windows.insert(start, w.clone());
        Some(w)
    }

    /// A window to be read outside the cache (every slot is being read).
    pub fn uncached(start: u64, end: u64) -> Rc<Window> {
        Rc::new(Window { start, end, state: RefCell::new(WindowState::Loading(Vec::new())), last_use: Cell::new(0) })
    }

    /// Forgets `window` (a failed read), unless another has replaced it meanwhile.
    pub fn remove(&mut self, window: &Rc<Window>) {
        if self.windows.get(&window.start).is_some_and(|w| Rc::ptr_eq(w, window)) {
            self.windows.remove(&window.start);
        }
    }

    /// Forgets every window holding bytes at or past `from` (a truncate cut them).
    pub fn drop_from(&mut self, from: u64) {
        self.windows.retain(|_, w| w.end <= from);
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

/// A block of ConsumeQueue entries: entry `first + i` is `entries[i]`.
#[derive(Clone)]
pub struct CqBlock {
    pub first: u64,
    pub entries: Rc<[CqEntry]>,
}

/// ConsumeQueue blocks by (queue, first entry). A queue is named by its slot in the
/// store's queue list, which only grows, so the number never changes meaning.
#[derive(Default)]
pub struct CqCache {
    blocks: HashMap<(usize, u64), (CqBlock, u64)>,
    clock: u64,
}

impl CqCache {
    /// The cached block of `queue` starting at `first`, if it holds entry `want`.
    pub fn get(&mut self, queue: usize, first: u64, want: u64) -> Option<CqBlock> {
        self.clock += 1;
        let now = self.clock;
        let (block, used) = self.blocks.get_mut(&(queue, first))?;
        if want >= block.first + block.entries.len() as u64 {
            // Read while the queue's file held fewer entries; the caller reads it again.
            return None;
        }
        *used = now;
        Some(block.clone())
    }

    /// Forgets the blocks of `queue` holding entries at or past `from` (a truncate cut
    /// them; the offsets will name other records).
    pub fn drop_from(&mut self, queue: usize, from: u64) {
        self.blocks.retain(|&(q, _), (b, _)| q != queue || b.first + (b.entries.len() as u64) <= from);
    }

    pub fn insert(&mut self, queue: usize, block: CqBlock) {
        self.clock += 1;
        if self.blocks.len() >= CQ_CACHE_BLOCKS_MAX && !self.blocks.contains_key(&(queue, block.first)) {
            if let Some(&victim) = self.blocks.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k) {
                self.blocks.remove(&victim);
            }
        }
        self.blocks.insert((queue, block.first), (block, self.clock));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offset::PhysicalOffset;

    #[test]
    fn a_full_cold_cache_evicts_the_least_recently_used_read_window_never_a_loading_one() {
        let mut c = ColdCache::default();
        let size = COLD_WINDOW_BYTES;
        let mut ws = Vec::new();
        for i in 0..COLD_WINDOWS_MAX as u64 {
            ws.push(c.insert(i * size, (i + 1) * size).unwrap());
        }
        // Every slot is being read: no room, and nothing was evicted.
        assert!(c.insert(1000 * size, 1001 * size).is_none());
        assert_eq!(c.len(), COLD_WINDOWS_MAX);
        for w in &ws {
            w.finish(Ok(Bytes::from(vec![0; size as usize])));
        }
        c.get(0); // window 0 is now the most recently used; window 1 the least.
        c.insert(1000 * size, 1001 * size).unwrap();
        assert!(c.get(0).is_some());
        assert!(c.get(size).is_none(), "window 1 was evicted");
    }

    #[test]
    fn waiters_see_the_window_once_read_and_failures_too() {
        futures_lite::future::block_on(async {
            let mut c = ColdCache::default();
            let w = c.insert(0, 4).unwrap();
            let wait = w.bytes();
            w.finish(Ok(Bytes::from_static(b"abcd")));
            assert_eq!(wait.await.unwrap(), Bytes::from_static(b"abcd"));
            let f = c.insert(8, 12).unwrap();
            f.finish(Err(StorageError::Closed));
            assert!(f.bytes().await.is_err());
            c.remove(&f);
            assert!(c.get(8).is_none());
        });
    }

    #[test]
    fn a_cq_block_read_before_more_entries_were_persisted_is_a_miss_past_its_end() {
        let mut c = CqCache::default();
        let e = CqEntry { physical_offset: PhysicalOffset(0), size: 100, tags_code: 0 };
        c.insert(3, CqBlock { first: 1024, entries: vec![e; 10].into() });
        assert!(c.get(3, 1024, 1033).is_some());
        assert!(c.get(3, 1024, 1034).is_none());
        assert!(c.get(4, 1024, 1024).is_none(), "blocks are per queue");
    }
}
