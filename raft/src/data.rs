//! The data side of the Raft log: where an entry's bytes live. In the broker that is the
//! shard's CommitLog (`store_data.rs`); in tests and the simulation it is [`MemLog`].
//!
//! The replica's persister is the only writer: it appends entries in Raft index order,
//! truncates a divergent suffix before appending the entries that replace it, and reads
//! old entries back for followers that lag. Places are assigned when `append` returns
//! (so the index file can record them at once); durability comes later, through the
//! returned future, so several entries can be on their way to disk together.
//!
//! Thread: the shard's executor. Deliberately not here: terms and indices (the index
//! file and `log.rs`), and what the bytes mean beyond what `validate` checks.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use rockshard_storage::{AppendResult, AppendedRecord, PhysicalOffset, QueueOffset};

use crate::error::{Error, Result};
use crate::index::Span;
use rockshard_local::oneshot;

pub type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// One entry's data, appended: where it went, the places of its records (what a
/// proposal resolves with) and a future that resolves once it is durable as the data
/// side promises (for the CommitLog: per the flush mode of its topics).
pub struct Appended {
    pub span: Span,
    pub result: AppendResult,
    pub durable: LocalBoxFuture<Result<()>>,
    /// Whether `durable` means an fdatasync (a `sync`-flush topic's records): the index
    /// entry is then synced too before the entry counts as persisted.
    pub sync: bool,
}

#[allow(async_fn_in_trait)] // One data side per shard, never `dyn`, never `Send`.
pub trait LogData: 'static {
    /// Where the next append's bytes begin (at open: the end recovery found).
    fn end(&self) -> u64;
    /// Whether `append` would accept `data`. A proposal is checked before it enters the
    /// log: an entry that no node can persist would stop every replica of the group.
    fn validate(&self, data: &[u8]) -> Result<()>;
    /// Appends one non-empty entry's data at `end()`.
    fn append(&self, data: &[u8]) -> Result<Appended>;
    /// Reads back the data of contiguous entries (each span starts where the previous
    /// ends), exactly as it was appended, less any filler the data side added.
    async fn read_entries(&self, spans: &[Span]) -> Result<Vec<Bytes>>;
    /// Removes everything from `from` (an entry's start) on, durably, before returning;
    /// appends still waiting past it fail.
    async fn truncate(&self, from: u64) -> Result<()>;
    /// Readers see data up to `limit` only (`None`: everything).
    fn set_visible_limit(&self, limit: Option<u64>);
}

/// The data side in memory, for tests and the simulation. Bytes are readable at once;
/// they become durable when the test says ([`MemLog::make_durable`], or at once with
/// [`MemLog::set_auto_durable`]), and [`MemLog::lose_unsynced`] drops what was not,
/// as a power loss would.
#[derive(Clone, Default)]
pub struct MemLog {
    inner: Rc<RefCell<MemState>>,
}

#[derive(Default)]
struct MemState {
    bytes: Vec<u8>,
    durable_len: usize,
    auto_durable: bool,
    /// Appends waiting to be durable: their end and whom to tell.
    waiting: Vec<(usize, oneshot::Sender<Result<()>>)>,
    visible: Option<u64>,
}

impl MemLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends are durable as soon as they are made.
    pub fn set_auto_durable(&self, on: bool) {
        self.inner.borrow_mut().auto_durable = on;
        if on {
            self.make_durable();
        }
    }

    /// Everything appended so far becomes durable; its waiters are told.
    pub fn make_durable(&self) {
        let waiting = {
            let mut s = self.inner.borrow_mut();
            s.durable_len = s.bytes.len();
            std::mem::take(&mut s.waiting)
        };
        for (_, tx) in waiting {
            tx.send(Ok(()));
        }
    }

    /// A power loss: bytes never made durable vanish; their waiters never hear back.
    pub fn lose_unsynced(&self) {
        let mut s = self.inner.borrow_mut();
        let keep = s.durable_len;
        s.bytes.truncate(keep);
        s.waiting.clear();
    }

    /// Appends waiting to become durable.
    pub fn waiting(&self) -> usize {
        self.inner.borrow().waiting.len()
    }

    pub fn contents(&self) -> Vec<u8> {
        self.inner.borrow().bytes.clone()
    }

    pub fn visible_limit(&self) -> Option<u64> {
        self.inner.borrow().visible
    }
}

impl LogData for MemLog {
    fn end(&self) -> u64 {
        self.inner.borrow().bytes.len() as u64
    }

    fn validate(&self, _data: &[u8]) -> Result<()> {
        Ok(())
    }

    fn append(&self, data: &[u8]) -> Result<Appended> {
        let mut s = self.inner.borrow_mut();
        let start = s.bytes.len();
        s.bytes.extend_from_slice(data);
        let end = s.bytes.len();
        let result = AppendResult {
            records: vec![AppendedRecord {
                physical_offset: PhysicalOffset(start as u64),
                queue_offset: QueueOffset(0),
                size: data.len() as u32,
            }],
            store_timestamp_ms: 0,
        };
        let durable: LocalBoxFuture<Result<()>> = if s.auto_durable {
            s.durable_len = end;
            Box::pin(async { Ok(()) })
        } else {
            let (tx, rx) = oneshot::channel();
            s.waiting.push((end, tx));
            Box::pin(async move { rx.await.unwrap_or_else(|| Err(Error::Stopped("data side lost power".into()))) })
        };
        Ok(Appended { span: Span { start: start as u64, end: end as u64 }, result, durable, sync: true })
    }

    async fn read_entries(&self, spans: &[Span]) -> Result<Vec<Bytes>> {
        let s = self.inner.borrow();
        spans
            .iter()
            .map(|sp| {
                s.bytes
                    .get(sp.start as usize..sp.end as usize)
                    .map(Bytes::copy_from_slice)
                    .ok_or_else(|| Error::decode("entry range", format!("{sp:?} past the end {}", s.bytes.len())))
            })
            .collect()
    }

    async fn truncate(&self, from: u64) -> Result<()> {
        let failed = {
            let mut s = self.inner.borrow_mut();
            let from = from as usize;
            assert!(from <= s.bytes.len(), "truncate past the end");
            s.bytes.truncate(from);
            s.durable_len = s.durable_len.min(from);
            let (gone, kept): (Vec<_>, Vec<_>) =
                std::mem::take(&mut s.waiting).into_iter().partition(|(e, _)| *e > from);
            s.waiting = kept;
            gone
        };
        for (_, tx) in failed {
            tx.send(Err(Error::Dropped("data truncated")));
        }
        Ok(())
    }

    fn set_visible_limit(&self, limit: Option<u64>) {
        self.inner.borrow_mut().visible = limit;
    }
}
