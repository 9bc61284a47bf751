//! The data side of the Raft log on the shard's [`Store`]: an entry's data is a batch of
//! stored-format records (QUEUEOFFSET / PHYSICALOFFSET placeholders), persisted with
//! `Store::append_replicated`, which assigns this node's offsets but keeps every
//! record's store timestamp and host, so logs that agree up to an entry hold identical
//! CommitLog bytes for it, BLANK filler included (same segment size everywhere).
//!
//! The only file of this crate that touches the store's replication API
//! (`append_replicated`, `set_visible_limit`, `truncate`); everything else talks to
//! [`LogData`], so the replica is tested on [`crate::MemLog`] too.
//!
//! Invariants: an entry's span starts at the store's appended end before its records
//! (any BLANK the store put at a segment's end included) and ends after them, so spans
//! are contiguous; reading a span back and dropping BLANK records gives the entry's
//! records again (with this node's offsets in the placeholders, which every appender
//! overwrites anyway). Nothing else may append to a replicated store.
//!
//! Thread: the shard's executor.

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use rockshard_net::stored::{self, Record, RecordFields, BLANK_SIZE_MIN_BYTES};
use rockshard_storage::record::{valid_properties, valid_topic};
use rockshard_storage::{Disk, FlushMode, GlommioDisk, PhysicalOffset, Store};

use crate::data::{Appended, LocalBoxFuture, LogData};
use crate::error::{Error, Result};
use crate::index::Span;
use crate::replica::{Clock, Hooks, Replica, ReplicaConfig, Transport};

pub struct StoreData<D: Disk = GlommioDisk> {
    store: Rc<Store<D>>,
}

impl<D: Disk> StoreData<D> {
    pub fn new(store: Rc<Store<D>>) -> Self {
        StoreData { store }
    }

    fn appended_end(&self) -> u64 {
        self.store.commitlog_positions().3 .0
    }

    /// Reads `[start, end)` of the CommitLog, which may cross segment ends (an entry's
    /// BLANK filler and the records after it live in two segments).
    async fn read_range(&self, start: u64, end: u64) -> Result<Bytes> {
        let seg = self.store.config().segment_size_bytes;
        let mut pieces = Vec::new();
        let mut at = start;
        while at < end {
            let piece_end = end.min((at / seg + 1) * seg);
            pieces.push(self.store.read_log(PhysicalOffset(at), (piece_end - at) as usize).await?);
            at = piece_end;
        }
        Ok(match pieces.len() {
            0 => Bytes::new(),
            1 => pieces.pop().expect("one piece"),
            _ => {
                let mut all = BytesMut::with_capacity((end - start) as usize);
                for p in pieces {
                    all.extend_from_slice(&p);
                }
                all.freeze()
            }
        })
    }
}

/// The records of one entry's data, checked as the store will check them.
fn records_of(data: &[u8], segment_size: u64) -> Result<Vec<RecordFields<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let rec = stored::decode(&data[at..]).map_err(|e| Error::decode("entry record", e.to_string()))?;
        let Some(Record::Message(m)) = rec else {
            return Err(Error::decode("entry record", format!("no whole message record at byte {at}")));
        };
        if !valid_topic(m.topic) || m.header.queue_id < 0 || !valid_properties(m.properties) {
            return Err(Error::decode("entry record", format!("record at byte {at}: bad topic, queue or properties")));
        }
        let len = m.header.total_size as usize;
        if (len + BLANK_SIZE_MIN_BYTES) as u64 > segment_size {
            return Err(Error::decode("entry record", format!("record of {len} bytes does not fit a segment")));
        }
        out.push(RecordFields {
            topic: m.topic,
            queue_id: m.header.queue_id,
            flag: m.header.flag,
            sys_flag: m.header.sys_flag,
            born_timestamp_ms: m.header.born_timestamp_ms,
            born_host: m.header.born_host,
            store_timestamp_ms: m.header.store_timestamp_ms,
            store_host: m.header.store_host,
            reconsume_times: m.header.reconsume_times,
            prepared_transaction_offset: m.header.prepared_transaction_offset,
            body: m.body,
            properties: m.properties,
        });
        at += len;
    }
    Ok(out)
}

/// The entry's records from CommitLog bytes: BLANK records dropped, zero-copy when
/// there is none.
fn strip_blanks(bytes: Bytes) -> Result<Bytes> {
    let mut keep: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = match stored::decode(&bytes[at..]).map_err(|e| Error::decode("CommitLog record", e.to_string()))? {
            Some(Record::Message(m)) => {
                let len = m.header.total_size as usize;
                match keep.last_mut() {
                    Some((_, end)) if *end == at => *end = at + len,
                    _ => keep.push((at, at + len)),
                }
                len
            }
            Some(Record::Blank { total_size }) => total_size as usize,
            None => return Err(Error::decode("CommitLog record", format!("truncated record at byte {at}"))),
        };
        at += len;
    }
    if at != bytes.len() {
        return Err(Error::decode("CommitLog record", "records run past the entry's end"));
    }
    Ok(match keep.as_slice() {
        [] => Bytes::new(),
        [(s, e)] => bytes.slice(*s..*e),
        many => {
            let mut out = BytesMut::with_capacity(many.iter().map(|(s, e)| e - s).sum());
            for (s, e) in many {
                out.extend_from_slice(&bytes[*s..*e]);
            }
            out.freeze()
        }
    })
}

impl<D: Disk> LogData for StoreData<D> {
    fn end(&self) -> u64 {
        self.appended_end()
    }

    fn validate(&self, data: &[u8]) -> Result<()> {
        records_of(data, self.store.config().segment_size_bytes).map(|_| ())
    }

    fn append(&self, data: &[u8]) -> Result<Appended> {
        let records = records_of(data, self.store.config().segment_size_bytes)?;
        // A batch is usually one topic: look its flush mode up once per run of a topic.
        let mut sync = false;
        let mut last_topic: &[u8] = &[];
        for r in &records {
            if r.topic != last_topic {
                last_topic = r.topic;
                let topic = std::str::from_utf8(r.topic).expect("records_of checked the topic");
                sync |= self.store.flush_mode(topic) == FlushMode::Sync;
            }
        }
        let start = self.appended_end();
        let wait = self.store.append_replicated(&records, true)?;
        let end = self.appended_end();
        let result = wait.result().clone();
        let durable: LocalBoxFuture<Result<()>> = Box::pin(async move { wait.await.map(|_| ()).map_err(Error::from) });
        Ok(Appended { span: Span { start, end }, result, durable, sync })
    }

    async fn read_entries(&self, spans: &[Span]) -> Result<Vec<Bytes>> {
        let (Some(first), Some(last)) = (spans.first(), spans.last()) else { return Ok(Vec::new()) };
        let all = self.read_range(first.start, last.end).await?;
        spans
            .iter()
            .map(|s| strip_blanks(all.slice((s.start - first.start) as usize..(s.end - first.start) as usize)))
            .collect()
    }

    async fn truncate(&self, from: u64) -> Result<()> {
        Ok(self.store.truncate(PhysicalOffset(from)).await?)
    }

    fn set_visible_limit(&self, limit: Option<u64>) {
        self.store.set_visible_limit(limit.map(PhysicalOffset));
    }
}

impl<D: Disk> Replica<D, StoreData<D>> {
    /// Opens the replica of a shard over its store (see [`Replica::open_with`]); ticks
    /// come from a timer.
    pub async fn open(
        cfg: ReplicaConfig,
        store: Rc<Store<D>>,
        disk: D,
        transport: Rc<dyn Transport>,
        hooks: Rc<dyn Hooks>,
    ) -> Result<Self> {
        Self::open_with(cfg, StoreData::new(store), disk, transport, hooks, Clock::Timer).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &[u8], body: &[u8], out: &mut Vec<u8>) {
        let fields = RecordFields {
            topic,
            queue_id: 0,
            flag: 0,
            sys_flag: 0,
            born_timestamp_ms: 1,
            born_host: "127.0.0.1:1".parse().unwrap(),
            store_timestamp_ms: 2,
            store_host: "127.0.0.1:2".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            properties: b"",
        };
        stored::encode(&fields, 0, 0, out).unwrap();
    }

    #[test]
    fn blanks_are_stripped_and_records_kept() {
        let mut a = Vec::new();
        record(b"T", b"one", &mut a);
        let mut b = Vec::new();
        record(b"T", b"two", &mut b);
        let mut log = a.clone();
        stored::encode_blank(64, &mut log);
        log.extend_from_slice(&b);
        let got = strip_blanks(Bytes::from(log)).unwrap();
        assert_eq!(got.as_ref(), [a.clone(), b.clone()].concat().as_slice());
        // Without a BLANK the same bytes come back.
        let both = Bytes::from([a.clone(), b].concat());
        assert_eq!(strip_blanks(both.clone()).unwrap(), both);
        // Garbage is an error, not a silent drop.
        assert!(strip_blanks(Bytes::from_static(&[1, 2, 3, 4, 5, 6, 7, 8, 9])).is_err());
    }

    #[test]
    fn entry_data_must_be_whole_valid_records() {
        let mut a = Vec::new();
        record(b"Topic", b"x", &mut a);
        assert_eq!(records_of(&a, 1 << 20).unwrap().len(), 1);
        assert!(records_of(&a[..a.len() - 1], 1 << 20).is_err());
        let mut blank = Vec::new();
        stored::encode_blank(16, &mut blank);
        assert!(records_of(&blank, 1 << 20).is_err());
        let mut bad_topic = Vec::new();
        record(b"bad topic", b"x", &mut bad_topic);
        assert!(records_of(&bad_topic, 1 << 20).is_err());
        assert!(records_of(&a, 64).is_err(), "a record larger than a segment");
    }
}
