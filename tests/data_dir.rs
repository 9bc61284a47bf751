//! One owner per data directory (issue 12): a broker holds an exclusive lock on its
//! `--data-dir` for as long as it runs.
//!
//! - A second broker on the same directory exits at once, non-zero, naming the directory
//!   and the first broker's pid, while the first keeps serving. After the first is killed
//!   with `kill -9`, a new broker starts on the directory: the lock died with the process.
//!
//! Brokers run through `common::Broker` (killed by pid on drop); every other process is
//! waited for with a deadline and killed by pid past it. Every loop is bounded.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{create_topic_with, free_ports, pull, send_message, Broker, Conn};
use rockshard_net::code::response;
use rockshard_net::headers::SendMessageResponseHeader;
use rockshard_net::stored::{self, Record};

/// How long a refused broker may take to exit. It checks a lock and quits,
/// which takes milliseconds; the rest is room for a machine busy building.
const EXIT_WITHIN: Duration = Duration::from_secs(10);
/// Pulls per queue when reading a queue back: far more than its messages need.
const PULLS_MAX: usize = 2_000;

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
