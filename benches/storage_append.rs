//! Append throughput of 1 KiB records through `Store` on the real disk (`GlommioDisk`).
//!
//! Why: the issue sets targets relative to what the disk itself can do (see
//! BENCHMARKS.md): an `async` topic should reach at least 60% of fio's buffered
//! sequential write bandwidth, and a `sync` topic with 256 concurrent writers at least
//! half of the `async` figure, which only group commit (many appends per fdatasync)
//! makes possible.
//!
//! What one sample measures, from the first append to the last answer:
//! - `append_async/window/N`: one task keeps N appends in flight (it appends until N are
//!   outstanding, then awaits the oldest), so the store batches them into one write.
//!   The sample ends with one append to a `sync` topic, inside the timed region: its
//!   answer means an fdatasync of everything written has completed, so the figure is
//!   "bytes written through the page cache and on the disk at the end", the same thing
//!   fio's buffered write with `--end_fsync=1` measures. Without it a short sample would
//!   measure copies into a 23 GiB page cache, not the disk.
//! - `append_sync/writers/N`: N tasks, each appending one record and awaiting its
//!   fdatasync-covered answer in a loop (a producer with one request outstanding).
//!
//! Each sample opens a fresh store in a fresh directory and removes it afterwards
//! (outside the timed region), so samples do not inherit each other's dirty pages or
//! fill the disk. Throughput is counted in stored bytes (the CommitLog record, body plus
//! about 100 bytes of header), because the figures are compared with disk bandwidth.
//!
//! Runs on one unpinned glommio executor per group, created once; criterion drives it
//! through `LocalExecutor::run` inside `iter_custom`.

mod common;

use std::cell::Cell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use common::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rockshard_storage::{FlushMode, Store, StoreStats, TopicConfig};

/// In-flight appends of the async bench: the brief's range is 64 to 256; 256 is the
/// headline figure, 64 shows how much a smaller batch costs.
const ASYNC_WINDOWS: [usize; 2] = [64, 256];

/// Concurrent writers of the sync bench: one (no group commit possible), a handful, and
/// the 256 the target names.
const SYNC_WRITERS: [usize; 3] = [1, 16, 256];

/// Opens a fresh store with one topic of `flush` mode, runs `work(store, iters)` timed,
/// then drops the store and removes its directory untimed. The store's counters are
/// added to `totals`, so the bench can say how well appends were batched.
///
/// The store is dropped rather than closed: a close would persist ConsumeQueues and
/// checkpoint for nothing, since the directory is deleted next. Dropping is a crash as
/// far as the disk can tell, which is harmless here.
async fn timed_on_fresh_store<F, Fut>(
    label: &str,
    flush: FlushMode,
    iters: u64,
    totals: &Cell<StoreStats>,
    work: F,
) -> Duration
where
    F: FnOnce(Store, u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = fresh_dir(label);
    let store = Store::open(bench_config(&dir)).await.expect("open the bench store");
    store.upsert_topic(TopicConfig::new(label, QUEUES, flush)).await.expect("create the bench topic");
    store.upsert_topic(TopicConfig::new(FLUSH_TOPIC, 1, FlushMode::Sync)).await.expect("create the flush topic");
    let start = Instant::now();
    work(store.clone(), iters).await;
    let elapsed = start.elapsed();
    let (mut sum, stats) = (totals.get(), store.stats());
    sum.appended_records += stats.appended_records;
    sum.writes += stats.writes;
    sum.flushes += stats.flushes;
    totals.set(sum);
    drop(store);
    remove_dir(&dir);
    elapsed
}

/// A `sync` topic whose one append ends an async sample: its answer means an fdatasync
/// covering every byte written before it has completed. `Store::sync_now` would say
/// the same but also persists ConsumeQueues and checkpoints, which is not append work.
const FLUSH_TOPIC: &str = "bench-flush";

async fn flush_everything(store: &Store) {
    let body = [b'f'; BODY_BYTES];
    let wait = store.append(&[record(FLUSH_TOPIC, 0, &body)], true).expect("append the flush record");
    wait.await.expect("the flush record's fdatasync");
}

fn append_async(c: &mut Criterion) {
    let ex = executor();
    let topic = "bench-async";
    let mut group = c.benchmark_group("append_async");
    group.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    group.throughput(Throughput::Bytes(stored_bytes(topic)));
    let totals = Cell::new(StoreStats::default());
    for window in ASYNC_WINDOWS {
        group.bench_function(BenchmarkId::new("window", window), |b| {
            b.iter_custom(|iters| {
                ex.run(timed_on_fresh_store(topic, FlushMode::Async, iters, &totals, |store, iters| async move {
                    let body = [b'x'; BODY_BYTES];
                    let mut in_flight = VecDeque::with_capacity(window);
                    for i in 0..iters {
                        let r = record(topic, (i % u64::from(QUEUES)) as i32, &body);
                        in_flight.push_back(store.append(&[r], true).expect("append"));
                        if in_flight.len() >= window {
                            in_flight.pop_front().expect("non-empty").await.expect("async append");
                        }
                    }
                    for w in in_flight {
                        w.await.expect("async append");
                    }
                    // The disk must have the bytes too; see the header.
                    flush_everything(&store).await;
                }))
            })
        });
        report_batching(&format!("append_async/window/{window}"), &totals);
    }
    group.finish();
}

fn append_sync(c: &mut Criterion) {
    let ex = executor();
    let topic = "bench-sync";
    let mut group = c.benchmark_group("append_sync");
    group.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    group.throughput(Throughput::Bytes(stored_bytes(topic)));
    let totals = Cell::new(StoreStats::default());
    for writers in SYNC_WRITERS {
        group.bench_function(BenchmarkId::new("writers", writers), |b| {
            b.iter_custom(|iters| {
                ex.run(timed_on_fresh_store(topic, FlushMode::Sync, iters, &totals, |store, iters| async move {
                    // Split the iterations over the writers; the first `extra` take one more.
                    let (each, extra) = (iters / writers as u64, iters % writers as u64);
                    let tasks: Vec<_> = (0..writers as u64)
                        .map(|w| {
                            let store = store.clone();
                            let count = each + u64::from(w < extra);
                            glommio::spawn_local(async move {
                                let body = [b'x'; BODY_BYTES];
                                let queue = (w % u64::from(QUEUES)) as i32;
                                for _ in 0..count {
                                    let wait = store.append(&[record(topic, queue, &body)], true).expect("append");
                                    wait.await.expect("sync append");
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await;
                    }
                }))
            })
        });
        report_batching(&format!("append_sync/writers/{writers}"), &totals);
    }
    group.finish();
}

/// Prints how many records one write and one fdatasync carried, over every sample of
/// one bench: the evidence that batching and group commit happen (or do not).
fn report_batching(name: &str, totals: &Cell<StoreStats>) {
    let t = totals.take();
    if t.appended_records == 0 {
        // The bench was filtered out on the command line.
        return;
    }
    let per = |n: u64| t.appended_records as f64 / n.max(1) as f64;
    eprintln!(
        "{name}: {} records, {:.1} records per write, {:.1} records per fdatasync",
        t.appended_records,
        per(t.writes),
        per(t.flushes)
    );
}

criterion_group!(benches, append_async, append_sync);
criterion_main!(benches);
