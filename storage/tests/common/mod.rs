//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;

use rockshard_net::stored::{Record, RecordFields};
use rockshard_storage::{GetStatus, QueueOffset, Store, StoreConfig};

/// Runs `f` on a fresh glommio executor (the store needs one for its tasks).
pub fn run<T: 'static>(f: impl Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::default().make().expect("glommio executor").run(f)
}

pub fn born() -> SocketAddr {
    "127.0.0.1:50000".parse().unwrap()
}

pub fn store_host() -> SocketAddr {
    "127.0.0.1:10911".parse().unwrap()
}

pub fn fields<'a>(topic: &'a str, queue_id: i32, body: &'a [u8], properties: &'a [u8]) -> RecordFields<'a> {
    RecordFields {
        topic: topic.as_bytes(),
        queue_id,
        flag: 0,
        sys_flag: 0,
        born_timestamp_ms: 1_700_000_000_000,
        born_host: born(),
        store_timestamp_ms: 0,
        store_host: store_host(),
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        properties,
    }
}

/// A config for tests: small segments, timers that never fire on their own during a
/// test (so crashes happen where the test says), unless the test changes them.
pub fn small_config(dir: &str, segment: u64) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.segment_size_bytes = segment;
    c.cq_file_entries = 64;
    c.flush_interval_ms = 3_600_000;
    c.checkpoint_interval_ms = 3_600_000;
    c.retention_check_interval_ms = 3_600_000;
    c.retention_hours = 0;
    c
}

/// Every body readable from a queue, from its min offset, in order.
pub async fn read_bodies<D: rockshard_storage::Disk>(store: &Store<D>, topic: &str, queue_id: i32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Some((min, _)) = store.queue_offsets(topic, queue_id) else { return out };
    let mut at = min;
    for _ in 0..1_000_000 {
        let got = store.get_messages(topic, queue_id, at, 32, 1 << 20, None).await.expect("get_messages");
        if got.status != GetStatus::Found {
            break;
        }
        for m in &got.messages {
            let Ok(Some(Record::Message(v))) = rockshard_net::stored::decode(m) else { panic!("bad record served") };
            assert!(v.body_crc_matches());
            out.push(v.body.to_vec());
        }
        at = got.next_begin_offset;
    }
    out
}

pub fn body(i: usize, len: usize) -> Vec<u8> {
    let mut b = format!("message-{i:08}-").into_bytes();
    b.resize(len.max(b.len()), b'a' + (i % 26) as u8);
    b
}

pub fn q(n: u64) -> QueueOffset {
    QueueOffset(n)
}
