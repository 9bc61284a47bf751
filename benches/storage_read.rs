//! Sequential read throughput through `Store::get_messages`, hot (page cache) against
//! cold (O_DIRECT), on the real disk.
//!
//! Why: a consumer that has fallen behind reads old data with O_DIRECT so it does not
//! evict what live consumers read from the page cache (`hot_window_bytes`). The issue's
//! target: a cold sequential read reaches at least 60% of fio's O_DIRECT sequential read
//! bandwidth. The hot figure shows what the page cache path costs for comparison.
//!
//! Setup, untimed and once per bench: 256 MiB of 1 KiB records are appended to one
//! queue and flushed, and the store is dropped. Each bench reopens the same directory
//! (the checkpoint makes reopening a no-op scan) with `hot_window_bytes` at u64::MAX
//! (hot: every read through the page cache) or 0 (cold: every read O_DIRECT). One
//! iteration is one `get_messages` call for 32 messages, as a RocketMQ pull asks for by
//! default; the reader walks the queue in order and starts over at its end. Throughput
//! is counted in stored bytes read.
//!
//! A single reader with one call outstanding: this is what one pull of one consumer
//! does, and it is the figure a lagging consumer sees.

mod common;

use std::cell::Cell;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rockshard_storage::{FlushMode, GetStatus, QueueOffset, Store, TopicConfig};

/// Data written before reading: several times what one cold sample reads, so the reader
/// wraps rarely, and small enough to write in a few seconds.
const DATA_BYTES: u64 = 256 << 20;

/// Messages per `get_messages` call: RocketMQ's default `pullBatchSize`.
const PULL_MESSAGES: u32 = 32;

const TOPIC: &str = "bench-read";

/// Appends `DATA_BYTES` of records to queue 0 of `TOPIC` in `dir`, flushes them, and
/// closes the store, so each bench reopens it with nothing to recover and its
/// ConsumeQueue in files (a lagging consumer's situation).
async fn fill(dir: &Path) {
    let store = Store::open(bench_config(dir)).await.expect("open the bench store");
    store.upsert_topic(TopicConfig::new(TOPIC, 1, FlushMode::Async)).await.expect("create the bench topic");
    let body = [b'r'; BODY_BYTES];
    let records = DATA_BYTES / stored_bytes(TOPIC);
    // Batches of 256 appends in flight, as the async append bench does.
    let mut batch = Vec::with_capacity(256);
    for _ in 0..records {
        batch.push(store.append(&[record(TOPIC, 0, &body)], true).expect("append"));
        if batch.len() == 256 {
            for w in batch.drain(..) {
                w.await.expect("append");
            }
        }
    }
    for w in batch.drain(..) {
        w.await.expect("append");
    }
    // An append to a `sync` topic is answered after an fdatasync of everything written.
    store.upsert_topic(TopicConfig::new("bench-flush", 1, FlushMode::Sync)).await.expect("create the flush topic");
    store.append(&[record("bench-flush", 0, &body)], true).expect("append").await.expect("flush");
    store.close().await.expect("close the bench store");
}

/// Reads `calls` pulls of `PULL_MESSAGES` from `*cursor` on, wrapping at the end.
async fn read_pulls(store: &Store, cursor: &Cell<QueueOffset>, calls: u64) {
    for _ in 0..calls {
        let got = store.get_messages(TOPIC, 0, cursor.get(), PULL_MESSAGES, 1 << 20, None).await.expect("get_messages");
        match got.status {
            GetStatus::Found => cursor.set(got.next_begin_offset),
            // At the end: start over (counted as an iteration; one in thousands).
            _ => cursor.set(got.min_offset),
        }
        std::hint::black_box(&got.messages);
    }
}

fn read(c: &mut Criterion) {
    let ex = executor();
    let dir = fresh_dir("read");
    ex.run(fill(&dir));

    let mut group = c.benchmark_group("read_sequential");
    group.sample_size(10).measurement_time(Duration::from_secs(6)).warm_up_time(Duration::from_secs(2));
    group.throughput(Throughput::Bytes(u64::from(PULL_MESSAGES) * stored_bytes(TOPIC)));
    for (name, hot_window_bytes) in [("hot_page_cache", u64::MAX), ("cold_o_direct", 0)] {
        let mut config = bench_config(&dir);
        config.hot_window_bytes = hot_window_bytes;
        let store = ex.run(Store::open(config)).expect("reopen the bench store");
        let cursor = Rc::new(Cell::new(QueueOffset(0)));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                ex.run(async {
                    let start = Instant::now();
                    read_pulls(&store, &cursor, iters).await;
                    start.elapsed()
                })
            })
        });
        let stats = store.stats();
        eprintln!("{name}: hot reads {}, cold reads {}", stats.hot_reads, stats.cold_reads);
        ex.run(async move { store.close().await.expect("close the bench store") });
    }
    group.finish();
    remove_dir(&dir);
}

criterion_group!(benches, read);
criterion_main!(benches);
