//! Cold reads: a pull whose records lie below the hot window (and fill enough of the
//! span they lie in) reads them with O_DIRECT through aligned windows (`read_cache.rs`),
//! reading the windows after it ahead, so a lagging consumer neither evicts what live
//! consumers read nor pays one small O_DIRECT read per record.
//!
//! Owns [`ColdReads`], the cache of windows, which only this part fills (and empties of
//! windows whose read failed); a truncate drops the windows it cut
//! ([`ColdReads::drop_from`]). Reads the CommitLog's positions and segments; bumps the
//! `cold_reads` counter.
//!
//! Invariants: a window never reaches past the written end it was cut at, nor across a
//! segment's end; a failed window is read again, never served. A window's read runs in
//! a detached task that holds only a weak handle to the store. No `RefCell` borrow is
//! held across an `.await`.
//!
//! Runs on the store's executor, in the pulling task. Deliberately not here: deciding
//! which entries a pull takes (`read.rs`) and page-cache reads.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;

use crate::consume_queue::CqEntry;
use crate::disk::{read_exact, Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::limits::*;
use crate::offset::PhysicalOffset;
use crate::read_cache::{ColdCache, Window};

use super::Store;

/// The windows of cold reads, cached and in flight.
#[derive(Default)]
pub(super) struct ColdReads {
    windows: RefCell<ColdCache>,
}

impl ColdReads {
    /// Forgets every window reaching past `from`: a truncate cut what it holds there.
    pub(super) fn drop_from(&self, from: u64) {
        self.windows.borrow_mut().drop_from(from);
    }
}

impl<D: Disk> Store<D> {
    /// Whether a pull's records are read through cold windows: they start below the hot
    /// window, and fill enough of the CommitLog span they lie in.
    pub(super) fn use_cold_windows(&self, wanted: &[CqEntry]) -> bool {
        let (Some(first), Some(last)) = (wanted.first(), wanted.last()) else { return false };
        let written = self.inner.log.borrow().pos.written();
        if first.physical_offset.0 >= written.0.saturating_sub(self.inner.config.hot_window_bytes) {
            return false;
        }
        let span = (last.physical_offset.0 + u64::from(last.size)).saturating_sub(first.physical_offset.0);
        let bytes: u64 = wanted.iter().map(|e| u64::from(e.size)).sum();
        span <= bytes * COLD_WINDOW_SPAN_PER_BYTE_MAX
    }

    /// Reads the records of `wanted` (in CommitLog order) through cold windows: each is a
    /// slice of a window unless it straddles two, and the windows after the last one
    /// used are read ahead.
    pub(super) async fn read_cold_windowed(&self, wanted: &[CqEntry]) -> Result<Vec<Bytes>> {
        let mut messages = Vec::with_capacity(wanted.len());
        let mut current: Option<(Rc<Window>, Bytes)> = None;
        for e in wanted {
            let (from, to) = (e.physical_offset.0, e.physical_offset.0 + u64::from(e.size));
            if let Some((w, bytes)) = &current {
                if w.covers(from, to) {
                    messages.push(bytes.slice((from - w.start) as usize..(to - w.start) as usize));
                    continue;
                }
            }
            let (w, bytes) = self.cold_window(from).await?;
            if w.covers(from, to) {
                messages.push(bytes.slice((from - w.start) as usize..(to - w.start) as usize));
                current = Some((w, bytes));
                continue;
            }
            // The record runs on into the next window(s): copy it together.
            let mut record = Vec::with_capacity(e.size as usize);
            let (mut w, mut bytes) = (w, bytes);
            let mut at = from;
            loop {
                let upto = to.min(w.end);
                record.extend_from_slice(&bytes[(at - w.start) as usize..(upto - w.start) as usize]);
                at = upto;
                if at == to {
                    break;
                }
                (w, bytes) = self.cold_window(at).await?;
            }
            messages.push(Bytes::from(record));
            current = Some((w, bytes));
        }
        Ok(messages)
    }

    /// The cold window holding CommitLog offset `at` (which must be written), read if
    /// needed; also starts reading the windows after it.
    async fn cold_window(&self, at: u64) -> Result<(Rc<Window>, Bytes)> {
        let (written, size) = (self.inner.log.borrow().pos.written().0, self.inner.config.segment_size_bytes);
        let geometry = |start: u64| {
            let base = start - start % size;
            let aligned = start - start % COLD_WINDOW_BYTES;
            let from = aligned.max(base);
            (from, (aligned + COLD_WINDOW_BYTES).min(base + size))
        };
        let (start, nominal_end) = geometry(at);
        let cached = self.inner.cold.windows.borrow_mut().get(start);
        // A window cut at an older written end may not reach `at`; a failed one is
        // read again.
        let window = match cached {
            Some(w) if w.end > at && !w.is_failed() => w,
            _ => self.read_window(start, nominal_end.min(written), true)?.expect("demand reads always start"),
        };
        // Read ahead: the next windows, as far as the written end.
        let mut next = window.end;
        for _ in 0..COLD_READ_AHEAD_WINDOWS {
            if window.end < nominal_end || next >= written {
                break;
            }
            let (start, end) = geometry(next);
            let present = self.inner.cold.windows.borrow_mut().get(start).is_some_and(|w| !w.is_failed());
            // Read-ahead is an optimization: any trouble there is the demand read's to find.
            if !present && !matches!(self.read_window(start, end.min(written), false), Ok(Some(_))) {
                break;
            }
            next = end;
        }
        let bytes = window.bytes().await?;
        Ok((window, bytes))
    }

    /// Starts reading the cold window `[start, end)` with O_DIRECT. A demand read that
    /// finds the cache full of windows being read still reads, uncached; a read-ahead
    /// gives up (`None`).
    fn read_window(&self, start: u64, end: u64, demand: bool) -> Result<Option<Rc<Window>>> {
        let (file, pos) = {
            let log = self.inner.log.borrow();
            let base = log.segment_base(PhysicalOffset(start));
            match log.segments.get(&base) {
                Some(f) => (f.clone(), start - base),
                None => return Err(StorageError::InvalidArgument(format!("no segment holds offset {start}"))),
            }
        };
        let window = match self.inner.cold.windows.borrow_mut().insert(start, end) {
            Some(w) => w,
            None if demand => ColdCache::uncached(start, end),
            None => return Ok(None),
        };
        self.inner.count(|s| s.cold_reads += 1);
        let w = window.clone();
        let inner = Rc::downgrade(&self.inner);
        glommio::spawn_local(async move {
            let result = read_exact(&*file, pos, (w.end - w.start) as usize, true)
                .await
                .map_err(|e| StorageError::io("read", file.path(), w.start, e));
            if result.is_err() {
                if let Some(inner) = inner.upgrade() {
                    inner.cold.windows.borrow_mut().remove(&w);
                }
            }
            w.finish(result);
        })
        .detach();
        Ok(Some(window))
    }
}
