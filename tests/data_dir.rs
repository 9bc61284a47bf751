//! One owner per data directory (issue 12): a broker holds an exclusive lock on its
//! `--data-dir` for as long as it runs, and `rockshard store inspect` never writes.
//!
//! - A second broker on the same directory exits at once, non-zero, naming the directory
//!   and the first broker's pid, while the first keeps serving. After the first is killed
//!   with `kill -9`, a new broker starts on the directory: the lock died with the process.
//! - `store inspect` pointed at a live broker's directories while it answers `sync`
//!   sends refuses, naming the broker's pid; every acknowledged message stays readable,
//!   also after a `kill -9` and a restart (the issue lost hundreds of them this way).
//! - `store inspect` of a crashed broker's shard directory prints the state the broker
//!   recovers on restart and changes no byte: every file and directory is hashed (bytes,
//!   size, mtime) before and after. One run is on a read-only bind mount made in a
//!   private mount namespace of the inspect process (nothing outlives it), where any
//!   open for writing fails; where mounting is not allowed, on a copy made read-only
//!   with chmod (root ignores that, so there the hashes are what catch a write).
//! - A replicated node's shard directory: refused while the node runs (followers too);
//!   after a `kill -9`, read with every acknowledged message counted and no byte changed,
//!   its `raft/` directory included.
//! - `store inspect --help` says that it reads only and never repairs.
//!
//! Brokers run through `common::Broker` or `common::cluster::Cluster` (killed by pid on
//! drop); every other process is waited for with a deadline and killed by pid past it.
//! Every loop is bounded.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::hash::Hasher;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{self, Cluster, Options};
use common::{create_topic_with, eventually, free_ports, max_offset, pull, send_message, Broker, Conn};
use rockshard_net::code::response;
use rockshard_net::headers::SendMessageResponseHeader;
use rockshard_net::stored::{self, Record};

/// How long a refused broker or inspect may take to exit. Both check a lock and quit,
/// which takes milliseconds; the rest is room for a machine busy building.
const EXIT_WITHIN: Duration = Duration::from_secs(10);
/// How long an inspect that is allowed to read may take (a debug build scanning a few
/// hundred KiB).
const INSPECT_WITHIN: Duration = Duration::from_secs(60);
/// Small segments, so the stores below span several of them (BLANK fillers, segments
/// created ahead) in a few hundred messages.
const SEGMENT_BYTES: &str = "65536";
/// Messages sent before the crash in the inspect-after-crash test.
const MESSAGES: usize = 600;
/// Upper bound on the sends of the live-inspect test's sender thread.
const LIVE_SENDS_MAX: usize = 20_000;
/// Messages sent to the replicated group (each waits for a majority).
const REPLICATED_MESSAGES: usize = 120;
/// How long a started group may take to elect its first leader.
const FIRST_LEADER_WITHIN: Duration = Duration::from_secs(30);
/// Pulls per queue when reading a queue back: far more than its messages need.
const PULLS_MAX: usize = 2_000;

/// Acknowledged sends by (shard, queue id): (queue offset the answer gave, body).
type Acked = HashMap<(u16, i32), Vec<(i64, Vec<u8>)>>;

/// The outcome of a process run with a deadline.
struct Ran {
    /// The exit code; `None` when it had to be killed at the deadline (or died by a signal).
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `cmd` to its end, or kills it by pid after `within`.
fn run_bounded(mut cmd: Command, within: Duration) -> Ran {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    // Readers on threads, so a chatty process cannot block on a full pipe; they end
    // when the process does.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout pipe")));
    let err = drain(Box::new(child.stderr.take().expect("stderr pipe")));
    let deadline = started + within;
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                // Past the deadline: SIGKILL by pid (Child::kill), then reap.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let took = started.elapsed();
    Ran { code, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default(), took }
}

/// `rockshard broker` on `data_dir` with ports of its own.
fn other_broker(data_dir: &Path) -> Command {
    let (port, namesrv_port) = free_ports();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rockshard"));
    cmd.arg("broker")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--shards", "2", "--pin-cores", "false", "--listen-ip", "127.0.0.1"])
        .args(["--port", &port.to_string()])
        .args(["--namesrv-listen", &format!("127.0.0.1:{namesrv_port}")]);
    cmd
}

/// `rockshard store inspect --dir <dir>` with the tests' segment size.
fn inspect(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rockshard"));
    cmd.args(["store", "inspect", "--segment-size", SEGMENT_BYTES]).arg("--dir").arg(dir);
    cmd
}

/// Every entry under `root`: for a file its size, a hash of its bytes and its mtime; for
/// a directory its mtime (which changes when an entry is created, removed or renamed).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, u64, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let meta = std::fs::metadata(&dir).expect("stat a directory");
        out.insert(dir.clone(), (0, 0, meta.mtime(), meta.mtime_nsec()));
        for entry in std::fs::read_dir(&dir).expect("list a directory") {
            let path = entry.expect("directory entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("stat an entry");
            if meta.is_dir() {
                todo.push(path);
                continue;
            }
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            let mut file = std::fs::File::open(&path).expect("open a file to hash it");
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = file.read(&mut buf).expect("read a file to hash it");
                if n == 0 {
                    break;
                }
                hasher.write(&buf[..n]);
            }
            out.insert(path, (meta.len(), hasher.finish(), meta.mtime(), meta.mtime_nsec()));
        }
    }
    out
}

/// The entries whose snapshot differs, for an assertion message.
fn changed(
    before: &BTreeMap<PathBuf, (u64, u64, i64, i64)>,
    after: &BTreeMap<PathBuf, (u64, u64, i64, i64)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, b) in before {
        match after.get(path) {
            None => out.push(format!("removed {}", path.display())),
            Some(a) if a != b => out.push(format!("changed {} {b:?} -> {a:?}", path.display())),
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("created {}", path.display()));
    }
    out
}

/// Every stored record of a queue from offset 0, by pulling: (queue offset, body).
fn read_queue(conn: &mut Conn, topic: &str, queue_id: i32) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    for _ in 0..PULLS_MAX {
        let a = conn.call(pull(topic, queue_id, offset, 0));
        if a.code != response::SUCCESS {
            break;
        }
        let mut body = &a.body[..];
        while !body.is_empty() {
            let (record, len) = match stored::decode(body) {
                Ok(Some(Record::Message(m))) => (m, m.header.total_size as usize),
                other => panic!("{topic}:{queue_id} at {offset}: the pull body does not decode: {other:?}"),
            };
            assert!(record.body_crc_matches(), "{topic}:{queue_id}: a served record fails its CRC");
            out.push((record.header.queue_offset, record.body.to_vec()));
            body = &body[len..];
        }
        offset = a.ext_fields.get("nextBeginOffset").and_then(|o| o.parse().ok()).expect("nextBeginOffset");
    }
    out
}

/// Sends `body` and returns the queue offset the SUCCESS answer gave.
fn send_acked(conn: &mut Conn, topic: &str, queue_id: i32, body: &[u8]) -> i64 {
    let answer = conn.call(send_message(topic, queue_id, body.to_vec(), ""));
    assert_eq!(answer.code, response::SUCCESS, "send to {topic}:{queue_id}: {answer:?}");
    let h: SendMessageResponseHeader = answer.ext_header().expect("send answer header");
    h.queue_offset
}

/// Asserts that every acknowledged (queue offset, body) of each (shard, queue) is
/// readable from the broker at that offset, byte for byte.
fn assert_all_readable(broker: &Broker, topic: &str, acked: &Acked) {
    for ((shard, queue), sent) in acked {
        let mut conn = broker.connect(*shard);
        let stored: HashMap<i64, Vec<u8>> = read_queue(&mut conn, topic, *queue).into_iter().collect();
        let lost: Vec<i64> = sent.iter().filter(|(o, b)| stored.get(o) != Some(b)).map(|(o, _)| *o).collect();
        assert!(
            lost.is_empty(),
            "shard {shard} queue {queue}: {} of {} acknowledged messages are gone or differ, offsets {:?}",
            lost.len(),
            sent.len(),
            &lost[..lost.len().min(20)]
        );
    }
}

#[test]
fn a_second_broker_on_the_same_data_dir_exits_at_once_and_a_kill_9_leaves_no_stale_lock() {
    let mut broker = Broker::start();
    let data_dir = broker.data_dir();
    let mut conn = broker.connect(0);
    create_topic_with(&mut conn, "Owned", 2, Some("sync"));
    let first_offset = send_acked(&mut conn, "Owned", 0, b"before the second broker");

    let first_pid = broker.pid();
    let second = run_bounded(other_broker(&data_dir), EXIT_WITHIN);
    assert!(
        second.code.is_some_and(|c| c != 0),
        "a second broker on {} must exit non-zero at once; exit {:?} after {:?}\nstdout:\n{}\nstderr:\n{}",
        data_dir.display(),
        second.code,
        second.took,
        second.stdout,
        second.stderr
    );
    assert!(
        second.stderr.contains(&data_dir.display().to_string()) && second.stderr.contains(&format!("pid {first_pid}")),
        "the refusal names the directory and the holder's pid {first_pid}:\n{}",
        second.stderr
    );
    assert!(!second.stdout.contains("ready:"), "the refused broker must not report ready:\n{}", second.stdout);

    // The first broker kept serving, and its data is untouched.
    let second_offset = send_acked(&mut conn, "Owned", 0, b"after the second broker");
    assert_eq!(second_offset, first_offset + 1);
    let bodies: Vec<Vec<u8>> = read_queue(&mut conn, "Owned", 0).into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, [b"before the second broker".to_vec(), b"after the second broker".to_vec()]);
    drop(conn);

    // kill -9 cannot release anything itself: the kernel drops the lock with the process,
    // so a new broker on the same directory starts (`restart` waits for its `ready:`).
    broker.kill9_and_restart();
    let new_pid = broker.pid();
    assert_ne!(new_pid, first_pid);
    let mut conn = broker.connect(0);
    assert_eq!(read_queue(&mut conn, "Owned", 0).len(), 2, "both messages survive the kill and restart");

    // And the new broker holds the lock in turn.
    let third = run_bounded(other_broker(&data_dir), EXIT_WITHIN);
    assert!(third.code.is_some_and(|c| c != 0), "exit {:?}:\n{}", third.code, third.stderr);
    assert!(third.stderr.contains(&format!("pid {new_pid}")), "names the new holder {new_pid}:\n{}", third.stderr);
}

#[test]
fn store_inspect_refuses_a_live_brokers_directory_and_every_acknowledged_send_stays_readable() {
    let mut broker = Broker::start_with(&["--segment-size-bytes", SEGMENT_BYTES]);
    let data_dir = broker.data_dir();
    let mut setup = broker.connect(0);
    create_topic_with(&mut setup, "Live", 4, Some("sync"));
    drop(setup);

    // One sender per shard, sync sends without pause, each keeping what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let acked_count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for shard in 0..2u16 {
        let mut conn = broker.connect(shard);
        let (stop, acked_count) = (stop.clone(), acked_count.clone());
        senders.push(std::thread::spawn(move || {
            let mut acked: Vec<(i32, i64, Vec<u8>)> = Vec::new();
            for i in 0..LIVE_SENDS_MAX {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let queue = (i % 2) as i32;
                let body = format!("live-{shard}-{i:06}-").repeat(1 + i % 9).into_bytes();
                let offset = send_acked(&mut conn, "Live", queue, &body);
                acked.push((queue, offset, body));
                acked_count.fetch_add(1, Ordering::SeqCst);
            }
            acked
        }));
    }
    assert!(eventually(Duration::from_secs(30), || acked_count.load(Ordering::SeqCst) >= 200), "the senders got going");

    // Inspect the shard directories (and the data directory itself) while sends land.
    let pid = broker.pid();
    let targets = [data_dir.join("shard-0"), data_dir.join("shard-1"), data_dir.clone()];
    for round in 0..3 {
        for dir in &targets {
            let ran = run_bounded(inspect(dir), EXIT_WITHIN);
            assert!(
                ran.code.is_some_and(|c| c != 0),
                "round {round}: inspect of the live {} must refuse; exit {:?}\nstdout:\n{}\nstderr:\n{}",
                dir.display(),
                ran.code,
                ran.stdout,
                ran.stderr
            );
            assert!(
                ran.stderr.contains(&data_dir.display().to_string()) && ran.stderr.contains(&format!("pid {pid}")),
                "the refusal names the locked directory and the broker's pid {pid}:\n{}",
                ran.stderr
            );
            assert!(ran.stdout.is_empty(), "a refused inspect prints no state:\n{}", ran.stdout);
        }
    }
    let before_stop = acked_count.load(Ordering::SeqCst);
    assert!(
        eventually(Duration::from_secs(30), || acked_count.load(Ordering::SeqCst) > before_stop),
        "the broker still answers sends after the inspects"
    );
    stop.store(true, Ordering::SeqCst);
    let mut acked = Acked::new();
    for (shard, sender) in senders.into_iter().enumerate() {
        for (queue, offset, body) in sender.join().expect("sender thread") {
            acked.entry((shard as u16, queue)).or_default().push((offset, body));
        }
    }

    assert_all_readable(&broker, "Live", &acked);
    broker.kill9_and_restart();
    assert_all_readable(&broker, "Live", &acked);
}

/// Runs inspect of `data_dir/<shard>` with `data_dir` mounted read-only in a private mount
/// namespace. `None` when this machine does not allow that (no `unshare`, no privilege).
fn inspect_on_read_only_mount(data_dir: &Path, shard: &str) -> Option<Ran> {
    // Exit 97: the mount failed; 98: the mount is there but still writable. Either way
    // the caller falls back; neither creates anything in the directory.
    let script = r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" || exit 97
if [ -w "$1" ]; then exit 98; fi
exec "$2" store inspect --segment-size "$3" --dir "$1/$4""#;
    let private_namespace = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !private_namespace.is_ok_and(|s| s.success()) {
        eprintln!("no private mount namespace here (`unshare --mount` failed): falling back to chmod");
        return None;
    }
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(data_dir)
        .arg(env!("CARGO_BIN_EXE_rockshard"))
        .arg(SEGMENT_BYTES)
        .arg(shard);
    let ran = run_bounded(cmd, INSPECT_WITHIN);
    if matches!(ran.code, Some(97) | Some(98)) {
        eprintln!("no read-only bind mount here (exit {:?}): {}; falling back to chmod", ran.code, ran.stderr);
        return None;
    }
    Some(ran)
}

/// Makes every file and directory under `root` read-only (or writable again).
fn set_read_only(root: &Path, read_only: bool) {
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        let mode = match (meta.is_dir(), read_only) {
            (true, true) => 0o555,
            (true, false) => 0o755,
            (false, true) => 0o444,
            (false, false) => 0o644,
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&path).expect("list").map(|e| e.expect("entry").path()));
        }
    }
}

/// The `queue <topic>:<id> min <m> max <n>` lines of an inspect output, as id -> (min, max).
fn queue_lines(stdout: &str, topic: &str) -> BTreeMap<i32, (i64, i64)> {
    let prefix = format!("queue {topic}:");
    let mut out = BTreeMap::new();
    for rest in stdout.lines().filter_map(|l| l.strip_prefix(&prefix)) {
        let parts: Vec<&str> = rest.split_whitespace().collect();
        assert!(parts.len() == 5 && parts[1] == "min" && parts[3] == "max", "queue line {rest:?}");
        let number = |s: &str| s.parse::<i64>().unwrap_or_else(|e| panic!("{s:?} in {rest:?}: {e}"));
        out.insert(number(parts[0]) as i32, (number(parts[2]), number(parts[4])));
    }
    out
}

#[test]
fn store_inspect_of_a_crashed_brokers_directory_prints_its_state_and_changes_no_byte() {
    let mut broker = Broker::start_with(&["--segment-size-bytes", SEGMENT_BYTES]);
    let data_dir = broker.data_dir();
    let mut conns = [broker.connect(0), broker.connect(1)];
    create_topic_with(&mut conns[0], "Inspected", 4, Some("sync"));
    let mut acked = Acked::new();
    for i in 0..MESSAGES {
        let shard = (i % 2) as u16;
        let queue = ((i / 2) % 2) as i32;
        let body = format!("inspected-{i:05}-").repeat(1 + i % 23).into_bytes();
        let offset = send_acked(&mut conns[shard as usize], "Inspected", queue, &body);
        acked.entry((shard, queue)).or_default().push((offset, body));
    }
    drop(conns);
    // A crash: ConsumeQueue entries still in memory, no final checkpoint, segments created
    // ahead: everything a repairing recovery would write to.
    broker.kill9();

    let before = snapshot(&data_dir);
    let mut outputs = Vec::new();
    for shard in 0..2u16 {
        let ran = run_bounded(inspect(&data_dir.join(format!("shard-{shard}"))), INSPECT_WITHIN);
        assert_eq!(ran.code, Some(0), "inspect of shard-{shard}:\n{}\n{}", ran.stdout, ran.stderr);
        let queues = queue_lines(&ran.stdout, "Inspected");
        for queue in 0..2 {
            let sent = acked[&(shard, queue)].len() as i64;
            assert_eq!(queues.get(&queue), Some(&(0, sent)), "shard-{shard} queue {queue}:\n{}", ran.stdout);
        }
        assert!(
            ran.stdout.lines().any(|l| l.starts_with("topic Inspected:") && l.contains("flush sync")),
            "the topic table is printed:\n{}",
            ran.stdout
        );
        outputs.push(ran.stdout);
    }
    let diff = changed(&before, &snapshot(&data_dir));
    assert!(diff.is_empty(), "store inspect changed the directory:\n{}", diff.join("\n"));

    // Again where nothing can be written.
    match inspect_on_read_only_mount(&data_dir, "shard-1") {
        Some(ran) => {
            eprintln!("inspect ran on a read-only bind mount");
            assert_eq!(ran.code, Some(0), "inspect on a read-only mount:\n{}\n{}", ran.stdout, ran.stderr);
            assert_eq!(ran.stdout, outputs[1], "the same state as read from the writable directory");
        }
        None => {
            set_read_only(&data_dir, true);
            let ran = run_bounded(inspect(&data_dir.join("shard-1")), INSPECT_WITHIN);
            set_read_only(&data_dir, false);
            assert_eq!(ran.code, Some(0), "inspect of a read-only copy:\n{}\n{}", ran.stdout, ran.stderr);
            assert_eq!(ran.stdout, outputs[1]);
        }
    }
    let diff = changed(&before, &snapshot(&data_dir));
    assert!(diff.is_empty(), "store inspect changed the directory:\n{}", diff.join("\n"));

    // What inspect printed is what the broker recovers, and nothing was lost to it.
    broker.restart();
    for ((shard, queue), sent) in &acked {
        let mut conn = broker.connect(*shard);
        assert_eq!(max_offset(&mut conn, "Inspected", *queue), sent.len() as i64);
    }
    assert_all_readable(&broker, "Inspected", &acked);
}

#[test]
fn store_inspect_of_a_replicated_node_refuses_while_it_runs_and_leaves_its_raft_dir_alone() {
    let _serial = cluster::serial();
    let mut cluster =
        Cluster::start(Options::new(env!("CARGO_BIN_EXE_rockshard"), 3).args(&["--segment-size-bytes", SEGMENT_BYTES]));
    let (leader, _) = cluster.leader(0, FIRST_LEADER_WITHIN).expect("a first leader");
    cluster::create_topic(&cluster.shard_addr(leader, 0), "Replicated", 2, "sync").expect("create the topic");
    let mut conn = Conn::connect(&cluster.shard_addr(leader, 0));
    for i in 0..REPLICATED_MESSAGES {
        let body = format!("replicated-{i:05}-").repeat(1 + i % 13).into_bytes();
        send_acked(&mut conn, "Replicated", (i % 2) as i32, &body);
    }
    drop(conn);

    // Every node owns its directory while it runs, followers included.
    for i in 0..3 {
        let pid = cluster.pid(i).expect("node running");
        let ran = run_bounded(inspect(&cluster.shard_dir(i, 0)), EXIT_WITHIN);
        assert!(ran.code.is_some_and(|c| c != 0), "inspect of live n{}: {:?}\n{}", i + 1, ran.code, ran.stdout);
        assert!(ran.stderr.contains(&format!("pid {pid}")), "names n{}'s pid {pid}:\n{}", i + 1, ran.stderr);
    }

    for i in 0..3 {
        cluster.kill9(i);
    }
    let data_dir = cluster.nodes[leader].data_dir.clone();
    assert!(data_dir.join("shard-0/raft").is_dir(), "a replicated shard keeps its Raft files in raft/");
    let before = snapshot(&data_dir);
    let ran = run_bounded(inspect(&cluster.shard_dir(leader, 0)), INSPECT_WITHIN);
    assert_eq!(ran.code, Some(0), "inspect of the stopped leader:\n{}\n{}", ran.stdout, ran.stderr);
    let stored: i64 = queue_lines(&ran.stdout, "Replicated").values().map(|(_, max)| max).sum();
    assert_eq!(
        stored, REPLICATED_MESSAGES as i64,
        "every acknowledged message is in the leader's queues:\n{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("raft:"), "says the node is replicated:\n{}", ran.stdout);
    let diff = changed(&before, &snapshot(&data_dir));
    assert!(diff.is_empty(), "store inspect changed the node's directory:\n{}", diff.join("\n"));
}

#[test]
fn store_inspect_help_says_it_reads_and_never_repairs() {
    let ran = run_bounded(
        {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_rockshard"));
            cmd.args(["store", "inspect", "--help"]);
            cmd
        },
        EXIT_WITHIN,
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    for words in ["never repairs", "read-only", "Refuses", "lock"] {
        assert!(ran.stdout.contains(words), "`store inspect --help` should say {words:?}:\n{}", ran.stdout);
    }
}
