//! Process crash test on the real disk: every append the store acknowledged for a `sync`
//! topic survives a `kill -9` of the process, three times over.
//!
//! The test re-runs its own test binary as a child (`ROCKSHARD_KILL9_CHILD=<dir>`). The
//! child opens a store on the real disk (GlommioDisk, io_uring) in `<dir>`, makes its
//! topic `sync`, and appends from several concurrent tasks, printing one line per
//! *acknowledged* append: `ACK <queue_id> <queue_offset> <physical_offset> <seed>`. The
//! body is generated from the seed, so the parent can check bytes without the child
//! telling it more. After a seeded number of acknowledgements the parent SIGKILLs the
//! child, reads the acknowledgements still in the pipe (they were given before the kill),
//! opens the store itself and checks that every acknowledged record is there, at its
//! queue offset and physical offset, with its exact body; and that every record it
//! finds at all is intact. It repeats with a new child on the recovered store, so
//! recovery of an already recovered (and never cleanly closed) store is covered too.
//!
//! Why a process and not SimDisk: `kill -9` leaves the page cache to the kernel, so this
//! checks the real io_uring write and fdatasync path and the real recovery of files with
//! preallocated, partly written segments; SimDisk tests cover power loss.
//!
//! Bounds: the child stops after `CHILD_RECORDS_MAX` records or `CHILD_RUN_MAX`; the
//! parent waits at most `ACK_WAIT_MAX` per round and always kills and reaps the child
//! (a guard does it on every path, panics included).
//! The store runs on a directory under `CARGO_TARGET_TMPDIR`: on the real disk, where
//! O_DIRECT works (tmpfs refuses it).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use rockshard_net::stored::{self, Record};
use rockshard_storage::{FlushMode, GetStatus, QueueOffset, RecoveryReport, Store, StoreConfig, TopicConfig};

/// This test's name: the child runs exactly it.
const TEST_NAME: &str = "acknowledged_sync_appends_survive_kill9_three_times";
/// Set in the child's environment: the store directory. Its presence makes the test the
/// writer instead of the orchestrator.
const CHILD_ENV: &str = "ROCKSHARD_KILL9_CHILD";
/// The round number, so seeds (and so bodies) differ between rounds.
const ROUND_ENV: &str = "ROCKSHARD_KILL9_ROUND";

const TOPIC: &str = "KILL9";
const QUEUES: i32 = 3;
/// Two tasks per queue, so queue offsets are handed out to interleaved appends and
/// fdatasyncs are group-committed across tasks, as with real producers.
const WRITER_TASKS: u64 = 6;
const ROUNDS: u64 = 3;
/// Small segments so several roll within a round, and small ConsumeQueue files for the
/// same reason; a crash then lands near boundaries often.
const SEGMENT_BYTES: u64 = 1 << 20;
const CQ_FILE_ENTRIES: u64 = 1_000;
/// Bodies are 8 (the seed) to 8 + BODY_EXTRA_MAX bytes.
const BODY_EXTRA_MAX: u64 = 6_000;

/// The child's own bounds, should the parent never kill it.
const CHILD_RECORDS_MAX: u64 = 200_000;
const CHILD_RUN_MAX: Duration = Duration::from_secs(60);
/// Acknowledgements the parent waits for before the kill: seeded, between these.
const ACKS_BEFORE_KILL_MIN: u64 = 1_500;
const ACKS_BEFORE_KILL_SPREAD: u64 = 2_500;
/// How long the parent waits for those acknowledgements (the child writes thousands a
/// second; this only catches a hung child).
const ACK_WAIT_MAX: Duration = Duration::from_secs(90);

fn config(dir: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.segment_size_bytes = SEGMENT_BYTES;
    c.cq_file_entries = CQ_FILE_ENTRIES;
    // Keep everything: the parent checks every acknowledged record.
    c.retention_hours = 0;
    // A child lives about a second; frequent checkpoints make recovery start from one
    // written mid-run (ConsumeQueues persisted part-way) rather than from the last open.
    c.checkpoint_interval_ms = 50;
    c
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// The body of the record with `seed`: the seed itself (so any record found can be
/// checked), then pseudo-random bytes of a pseudo-random length.
fn body_for(seed: u64) -> Vec<u8> {
    let mut state = xorshift(seed | 1);
    let len = 8 + (state % (BODY_EXTRA_MAX + 1)) as usize;
    let mut b = seed.to_be_bytes().to_vec();
    while b.len() < len {
        state = xorshift(state);
        b.extend_from_slice(&state.to_le_bytes());
    }
    b.truncate(len);
    b
}

fn seed_of(round: u64, task: u64, i: u64) -> u64 {
    (round << 48) | (task << 40) | i
}

#[test]
fn acknowledged_sync_appends_survive_kill9_three_times() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let round = std::env::var(ROUND_ENV).ok().and_then(|r| r.parse().ok()).expect("round number");
        child_writer(PathBuf::from(dir), round);
        return;
    }
    let root = tempfile::Builder::new()
        .prefix("kill9-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("a directory on the real disk");
    let store_dir = root.path().join("store");
    let mut acked: BTreeMap<(i32, u64), Ack> = BTreeMap::new();
    let mut rng = 0x6B69_6C6C_3921u64;
    for round in 0..ROUNDS {
        rng = xorshift(rng);
        let kill_after = ACKS_BEFORE_KILL_MIN + rng % ACKS_BEFORE_KILL_SPREAD;
        let log = root.path().join(format!("child-{round}.log"));
        let round_acks = run_child_and_kill(&store_dir, round, kill_after, &log, &mut acked);
        let (found, report) = verify(&store_dir, &acked);
        eprintln!(
            "round {round}: killed after {kill_after} acks, {round_acks} acknowledged in the round, \
             {} in all rounds, {found} records found; recovery: {report:?}",
            acked.len()
        );
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ack {
    physical_offset: u64,
    seed: u64,
}

fn parse_ack(line: &str) -> Option<(i32, u64, Ack)> {
    let mut it = line.strip_prefix("ACK ")?.split(' ');
    let queue_id = it.next()?.parse().ok()?;
    let queue_offset = it.next()?.parse().ok()?;
    let physical_offset = it.next()?.parse().ok()?;
    let seed = it.next()?.parse().ok()?;
    Some((queue_id, queue_offset, Ack { physical_offset, seed }))
}

/// Kills and reaps the child when dropped, so no path (a failed assertion included)
/// leaves a writer running against the directory.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn kill_and_wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("the child is still ours");
        // SIGKILL: the point of the test. An error means it already exited; wait tells how.
        let _ = child.kill();
        child.wait().expect("reap the child")
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn child_log(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Runs one writer child until `kill_after` acknowledgements, SIGKILLs it, and adds
/// every acknowledgement it printed to `acked`. Returns how many it printed.
fn run_child_and_kill(
    store_dir: &Path,
    round: u64,
    kill_after: u64,
    log: &Path,
    acked: &mut BTreeMap<(i32, u64), Ack>,
) -> u64 {
    let exe = std::env::current_exe().expect("the test binary's path");
    let stderr = std::fs::File::create(log).expect("child log file");
    let child = Command::new(exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, store_dir)
        .env(ROUND_ENV, round.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn the writer child");
    let mut guard = ChildGuard(Some(child));
    let stdout = guard.0.as_mut().and_then(|c| c.stdout.take()).expect("piped stdout");
    // A thread reads the pipe so the parent can wait with a deadline on a channel rather
    // than block on a read that a hung child would never end.
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let add = |line: &str, acked: &mut BTreeMap<(i32, u64), Ack>| -> bool {
        let Some((queue_id, queue_offset, ack)) = parse_ack(line) else { return false };
        if let Some(before) = acked.insert((queue_id, queue_offset), ack) {
            panic!("queue {queue_id} offset {queue_offset} acknowledged twice: {before:?} and then {ack:?}");
        }
        true
    };
    let deadline = Instant::now() + ACK_WAIT_MAX;
    let mut count = 0u64;
    while count < kill_after {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => count += u64::from(add(&line, acked)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("round {round}: {count} acks in {ACK_WAIT_MAX:?}; child log:\n{}", child_log(log))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = guard.kill_and_wait();
                panic!("round {round}: child exited ({status}) after {count} acks; child log:\n{}", child_log(log))
            }
        }
    }
    let status = guard.kill_and_wait();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "round {round}: the child died of SIGKILL, not {status}");
    // Acknowledgements still in the pipe were given before the kill: they count too. The
    // child is dead, so the pipe reaches its end and the reader thread finishes.
    for line in rx.iter().take(CHILD_RECORDS_MAX as usize) {
        count += u64::from(add(&line, acked));
    }
    reader.join().expect("the pipe reader finished");
    count
}

/// Opens the store left by the kill and checks it. Returns the number of records found
/// and what recovery reported.
fn verify(store_dir: &Path, acked: &BTreeMap<(i32, u64), Ack>) -> (usize, RecoveryReport) {
    let dir = store_dir.to_path_buf();
    let acked = acked.clone();
    run(async move {
        // Dropped at the end without `close`: the next child recovers a crashed store
        // again rather than a cleanly closed one.
        let store = Store::open(config(&dir)).await.expect("the killed store opens");
        let report = store.recovery_report().clone();
        let mut found: BTreeMap<(i32, u64), Ack> = BTreeMap::new();
        for queue_id in 0..QUEUES {
            let Some((min, max)) = store.queue_offsets(TOPIC, queue_id) else { continue };
            assert_eq!(min, QueueOffset(0), "nothing is deleted (retention is off)");
            let mut at = min;
            // Each read returns at least one record, so max - min reads suffice.
            for _ in 0..=(max.0 - min.0) {
                if at >= max {
                    break;
                }
                let got = store.get_messages(TOPIC, queue_id, at, 64, 4 << 20, None).await.expect("get_messages");
                assert_eq!(got.status, GetStatus::Found, "queue {queue_id} offset {at:?} below max {max:?}");
                for (k, m) in got.messages.iter().enumerate() {
                    let Ok(Some(Record::Message(v))) = stored::decode(m) else {
                        panic!("queue {queue_id}: offset {} is not a record", at.0 + k as u64)
                    };
                    assert!(v.body_crc_matches(), "queue {queue_id} offset {}: body CRC", at.0 + k as u64);
                    assert_eq!(v.header.queue_offset as u64, at.0 + k as u64, "queue {queue_id}: queue offset");
                    assert_eq!(v.header.queue_id, queue_id);
                    let seed = u64::from_be_bytes(v.body[..8].try_into().expect("bodies start with their seed"));
                    assert!(v.body == body_for(seed).as_slice(), "queue {queue_id}: body of seed {seed:#x} differs");
                    let ack = Ack { physical_offset: v.header.physical_offset as u64, seed };
                    found.insert((queue_id, at.0 + k as u64), ack);
                }
                at = got.next_begin_offset;
            }
            assert_eq!(at, max, "queue {queue_id} read to its end");
        }
        for (&(queue_id, queue_offset), ack) in &acked {
            assert_eq!(
                found.get(&(queue_id, queue_offset)),
                Some(ack),
                "acknowledged record lost or changed: queue {queue_id} offset {queue_offset}; recovery: {report:?}"
            );
        }
        assert!(acked.len() <= found.len(), "{} acknowledged, {} found", acked.len(), found.len());
        (found.len(), report)
    })
}

/// The child: append from several tasks until killed (or bounded out), printing each
/// acknowledgement as soon as the store gives it.
fn child_writer(dir: PathBuf, round: u64) {
    run(async move {
        let store = Store::open(config(&dir)).await.expect("child: open the store");
        store.upsert_topic(TopicConfig::new(TOPIC, QUEUES as u32, FlushMode::Sync)).await.expect("child: topic");
        let deadline = Instant::now() + CHILD_RUN_MAX;
        let out = Rc::new(std::io::stdout());
        let tasks: Vec<_> = (0..WRITER_TASKS)
            .map(|task| {
                let store = store.clone();
                let out = out.clone();
                glommio::spawn_local(async move {
                    let queue_id = (task % QUEUES as u64) as i32;
                    for i in 0..CHILD_RECORDS_MAX / WRITER_TASKS {
                        if Instant::now() >= deadline {
                            return;
                        }
                        let seed = seed_of(round, task, i);
                        let b = body_for(seed);
                        let wait = match store.append(&[fields(TOPIC, queue_id, &b, b"")], true) {
                            Ok(w) => w,
                            Err(e) => fail(&format!("append refused: {e}")),
                        };
                        let promised = wait.result().records[0];
                        let done = match wait.await {
                            Ok(r) => r.records[0],
                            Err(e) => fail(&format!("append failed: {e}")),
                        };
                        assert_eq!(promised, done, "the offsets given at append are the ones acknowledged");
                        // stdout is line-buffered to a pipe; flush anyway so an ACK never
                        // waits in a buffer while the next append runs.
                        let mut o = out.lock();
                        let line =
                            format!("ACK {queue_id} {} {} {seed}\n", done.queue_offset.0, done.physical_offset.0);
                        if o.write_all(line.as_bytes()).and_then(|()| o.flush()).is_err() {
                            return; // The parent is gone.
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
    });
}

/// Ends the child at once with a message: the parent sees an early exit and shows the log.
fn fail(msg: &str) -> ! {
    eprintln!("kill9 child: {msg}");
    std::process::exit(3);
}
