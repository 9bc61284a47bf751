//! Helpers shared by the storage benches: where their stores live on disk, the record
//! they append, the store configuration, and the glommio executor they run on.
//!
//! Every bench store lives on the real disk, in a fresh directory under
//! `CARGO_TARGET_TMPDIR` (`target/tmp`, which is on the same filesystem as the
//! repository), because `/tmp` may be tmpfs and a tmpfs figure says nothing about the
//! disk. `ROCKSHARD_BENCH_DIR` points them elsewhere, e.g. at another disk. Directories
//! are removed when the bench is done with them.
//!
//! Not here: any assertion on timing. Benches measure; they never fail on a figure.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rockshard_net::stored::{self, RecordFields};
use rockshard_storage::StoreConfig;

/// The body of every appended record: 1 KiB, the size the targets are set for.
pub const BODY_BYTES: usize = 1024;

/// Queues per bench topic. Records go round-robin over them, as a producer's default
/// queue selector does, so ConsumeQueue dispatch is spread as it would be in a broker.
pub const QUEUES: u32 = 4;

/// Segment size of bench stores: a quarter of the 1 GiB default, so a sample of a few
/// hundred megabytes crosses a segment roll (create + fallocate + directory sync) now
/// and then, as a long run does, without filling the disk with preallocated gigabytes.
pub const SEGMENT_BYTES: u64 = 256 << 20;

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty directory for one bench store. The caller removes it.
pub fn fresh_dir(label: &str) -> PathBuf {
    let root = std::env::var_os("ROCKSHARD_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir = root.join(format!("rockshard-bench-{label}-{}-{n}", std::process::id()));
    // A directory left by a crashed earlier run with the same pid would be recovered
    // instead of starting empty; start clean.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the bench directory");
    dir
}

pub fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        eprintln!("warning: could not remove bench directory {}: {e}", dir.display());
    }
}

/// The store configuration of the benches: defaults (flush interval, dirty-bytes flush
/// threshold, checkpoint interval), except the segment size, and no age retention so a
/// bench never deletes its own data.
pub fn bench_config(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.segment_size_bytes = SEGMENT_BYTES;
    c.retention_hours = 0;
    c
}

/// The producer's and the broker's addresses, built without parsing: an early profile
/// showed parsing them per record at about 2% of the bench's own CPU time.
const BORN_HOST: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 50000));
const STORE_HOST: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 10911));

/// One record of `topic`, queue `queue_id`, with a 1 KiB body and a TAGS property, as a
/// RocketMQ producer would send it.
pub fn record<'a>(topic: &'a str, queue_id: i32, body: &'a [u8]) -> RecordFields<'a> {
    RecordFields {
        topic: topic.as_bytes(),
        queue_id,
        flag: 0,
        sys_flag: 0,
        born_timestamp_ms: 1_700_000_000_000,
        born_host: BORN_HOST,
        store_timestamp_ms: 0,
        store_host: STORE_HOST,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body,
        properties: b"TAGS\x01bench\x02",
    }
}

/// The bytes one record takes in the CommitLog. Throughput is counted in these, not in
/// body bytes, because the figures are compared with what the disk can move.
pub fn stored_bytes(topic: &str) -> u64 {
    let body = [0u8; BODY_BYTES];
    stored::encoded_len(&record(topic, 0, &body)).expect("a bench record encodes") as u64
}

/// One executor per bench group, reused by every `iter_custom` call through
/// `LocalExecutor::run`. It is not pinned: the machine is small and shared, and pinning
/// onto a core another process is busy on would measure that process.
pub fn executor() -> glommio::LocalExecutor {
    glommio::LocalExecutorBuilder::default().make().expect("a glommio executor")
}
