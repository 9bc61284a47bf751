//! What a broker's log holds while things go wrong (issue 12, item 7): a NameServer that
//! is down, sends that keep failing on a store that cannot write, a replicated node
//! stopped cleanly, and a peer that dies. Each test starts real processes on loopback and
//! reads their log files.
//!
//! The broker processes here are started by this file's own [`Proc`], not `common::Broker`:
//! they run with settings that helper does not give (no embedded NameServer, a file size
//! limit), and a broker without its NameServer never prints `ready:`, which that helper
//! waits for. Every process is stopped by its pid when its guard drops, also when a test
//! panics; every wait is bounded in time.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::cluster::{self, Cluster, Options};
use common::{eventually, send_message, Conn};
use rockshard_net::code::response;

/// How long a broker may take to start serving (a debug build on a busy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A child process whose stderr (the log) goes to a file and whose stdout lines arrive
/// on a channel; killed by pid when dropped.
struct Proc {
    child: Child,
    log: PathBuf,
    stdout: mpsc::Receiver<String>,
}

impl Proc {
    /// Starts `rockshard <args>` logging at INFO into `log`. `limit_file_bytes` caps the
    /// size of every file the process writes (RLIMIT_FSIZE), so writes past it fail with
    /// EFBIG, as they would on a full disk with ENOSPC.
    fn spawn(args: &[&str], log: &Path, limit_file_bytes: Option<u64>) -> Proc {
        let stderr = std::fs::File::create(log).expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rockshard"));
        cmd.args(args).env("RUST_LOG", "info").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(stderr));
        if let Some(limit) = limit_file_bytes {
            // SAFETY: runs in the forked child before exec, and calls only setrlimit(2) and
            // signal(2), both async-signal-safe. SIGXFSZ is ignored so that a write past
            // the limit fails with EFBIG instead of killing the process; an ignored signal
            // stays ignored across exec.
            unsafe {
                cmd.pre_exec(move || {
                    let rl = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn rockshard");
        let out = child.stdout.take().expect("stdout pipe");
        let (tx, stdout) = mpsc::channel();
        // Reads stdout so waits for a line can time out; ends with the process.
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc { child, log: log.to_path_buf(), stdout }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Log lines holding every one of `needles`.
    fn lines(&self, needles: &[&str]) -> Vec<String> {
        self.log().lines().filter(|l| needles.iter().all(|n| l.contains(n))).map(str::to_owned).collect()
    }

    /// Waits (bounded) for a stdout line starting with `prefix`.
    fn wait_stdout(&self, prefix: &str, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            match self.stdout.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(_) => continue,
                Err(e) => return Err(format!("no `{prefix}` line within {within:?} ({e}); log:\n{}", self.log())),
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGKILL by pid (Child::kill) of our own child, then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `count` consecutive loopback ports that are free now (a broker's shards use base + i).
fn free_ports(count: u16) -> u16 {
    for _ in 0..100 {
        let Ok(first) = TcpListener::bind("127.0.0.1:0") else { continue };
        let Ok(base) = first.local_addr().map(|a| a.port()) else { continue };
        let rest: Vec<_> =
            (1..count).filter_map(|i| TcpListener::bind(("127.0.0.1", base.checked_add(i)?)).ok()).collect();
        if rest.len() == usize::from(count - 1) {
            return base;
        }
    }
    panic!("no {count} consecutive free ports on 127.0.0.1 after 100 tries");
}

/// `rockshard broker` arguments for `shards` shards on `port`.., data in `dir`.
fn broker_args(dir: &Path, port: u16, shards: u16) -> Vec<String> {
    let data = dir.join("data").to_string_lossy().into_owned();
    ["broker", "--data-dir", &data, "--pin-cores", "false", "--listen-ip", "127.0.0.1"]
        .iter()
        .map(|s| s.to_string())
        .chain(["--shards".into(), shards.to_string(), "--port".into(), port.to_string()])
        .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Issue 12: with its NameServer down a broker logged `registration failed; will retry`
/// every 200 ms per shard. It now backs off (200 ms, doubling, up to the register
/// interval), and still registers promptly once the NameServer is up.
#[test]
fn a_nameserver_that_is_down_is_retried_with_backoff_and_registered_with_once_up() {
    /// How long the NameServer stays down. At a fixed 200 ms that is 20 attempts per
    /// shard; backing off from 200 ms by doubling, 5 (at 0, 0.2, 0.6, 1.4 and 3 s).
    const DOWN: Duration = Duration::from_secs(4);
    /// Most failures one shard may log meanwhile: the backed-off 5 and one for a slow
    /// start of the clock.
    const FAILURES_MAX: usize = 6;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_ports(2);
    // Nothing listens there until the NameServer starts below.
    let namesrv = format!("127.0.0.1:{}", free_ports(1));
    let mut args = broker_args(dir.path(), port, 2);
    args.extend(["--embedded-namesrv", "false", "--namesrv-addr", &namesrv].map(String::from));
    let broker = Proc::spawn(&strs(&args), &dir.path().join("broker.log"), None);
    assert!(
        eventually(START_TIMEOUT, || broker.lines(&["shard serving"]).len() == 2),
        "the broker did not serve; log:\n{}",
        broker.log()
    );
    sleep(DOWN);
    for shard in 0..2 {
        let failures = broker.lines(&["registration failed", &format!("shard={shard}")]).len();
        assert!(
            (1..=FAILURES_MAX).contains(&failures),
            "shard {shard} logged {failures} failed registrations in {DOWN:?} (want 1..={FAILURES_MAX}); log:\n{}",
            broker.log()
        );
    }

    // The NameServer comes up: every shard registers within the backed-off delay (the
    // next attempt is due about 6 s after the first), well inside the bound below.
    let up = Instant::now();
    let ns_log = dir.path().join("namesrv.log");
    let _ns = Proc::spawn(&["namesrv", "--listen", &namesrv], &ns_log, None);
    let ready = broker.wait_stdout("ready:", Duration::from_secs(20));
    assert!(ready.is_ok(), "{}", ready.unwrap_err());
    println!("registered {:?} after the NameServer was started", up.elapsed());
    assert_eq!(broker.lines(&["registered with NameServer"]).len(), 2, "log:\n{}", broker.log());
}

/// Issue 12: a store that cannot write (a full disk) logged an ERROR for every rejected
/// send. Here every file the broker writes is capped at 1 MiB and its segments are
/// 4 MiB, so creating the first segment fails and so does every send; the log holds the
/// first failure in full and then the count of the others, not one line per send.
#[test]
fn sends_that_keep_failing_log_one_full_error_then_a_count() {
    const SENDS: usize = 50;
    /// The store's interval (`LOG_REPEAT_INTERVAL_MS`, 10 s) plus its maintenance period
    /// and a loaded machine's slack.
    const COUNT_WITHIN: Duration = Duration::from_secs(30);
    const WRITE_FAILED: &str = "CommitLog write failed";
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_ports(1);
    let mut args = broker_args(dir.path(), port, 1);
    let ns_listen = format!("127.0.0.1:{}", free_ports(1));
    args.extend(["--namesrv-listen", &ns_listen, "--segment-size-bytes", "4194304"].map(String::from));
    let broker = Proc::spawn(&strs(&args), &dir.path().join("broker.log"), Some(1 << 20));
    if let Err(e) = broker.wait_stdout("ready:", START_TIMEOUT) {
        panic!("{e}");
    }
    let mut conn = Conn::connect(&format!("127.0.0.1:{port}"));
    for i in 0..SENDS {
        let answer = conn.call(send_message("TopicLogs", 0, format!("message {i}"), ""));
        assert_eq!(answer.code, response::SYSTEM_ERROR, "send {i} should fail: {answer:?}");
    }
    let lines = broker.lines(&[WRITE_FAILED]);
    assert_eq!(lines.len(), 1, "{SENDS} failed sends logged:\n{}", lines.join("\n"));
    assert!(lines[0].contains("ERROR") && lines[0].contains("File too large"), "the first in full: {}", lines[0]);
    let count = format!("({} more like this in the last", SENDS - 1);
    assert!(
        eventually(COUNT_WITHIN, || broker.lines(&[WRITE_FAILED, &count]).len() == 1),
        "no `{count}` line within {COUNT_WITHIN:?}; log:\n{}",
        broker.log()
    );
    assert_eq!(broker.lines(&[WRITE_FAILED]).len(), 2, "log:\n{}", broker.log());
    // The broker is still up and answers.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
}

/// Lines of `path` holding every one of `needles`.
fn lines_of(path: &Path, needles: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter(|l| needles.iter().all(|n| l.contains(n))).map(str::to_owned).collect()
}

/// Issue 12: a clean SIGTERM of a replicated node logged `ERROR raft replica stopped ...
/// closed` — a normal stop is INFO, once per shard. And a node whose peer died logged
/// nothing until roles changed: a link going down is a WARN naming the peer, once.
#[test]
fn a_replicated_node_stops_at_info_and_a_dead_peer_is_a_warn_naming_it() {
    /// Time for a survivor to notice: the dead peer's connection closes at once (the
    /// kernel resets it); a loaded machine gets a generous margin.
    const NOTICE_WITHIN: Duration = Duration::from_secs(10);
    /// How long the survivor keeps failing to reach the dead peer (it campaigns and
    /// retries every 200 ms) while the test checks that it warns only once.
    const STILL_DOWN: Duration = Duration::from_secs(3);
    let _serial = cluster::serial();
    let mut cluster = Cluster::start(Options::new(env!("CARGO_BIN_EXE_rockshard"), 3));
    let (leader, _) = cluster.leader(0, Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}"));
    let [stopped, survivor] = {
        let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
        [others[0], others[1]]
    };

    // A clean stop of a follower.
    let status = cluster.stop(stopped);
    assert!(status.is_some_and(|s| s.success()), "{} did not exit cleanly: {status:?}", cluster.nodes[stopped].name);
    let log = cluster.nodes[stopped].logs.last().expect("a log").clone();
    let errors = lines_of(&log, &["ERROR"]);
    assert!(errors.is_empty(), "a clean stop logged errors:\n{}", errors.join("\n"));
    let closed = lines_of(&log, &["raft replica closed"]);
    assert_eq!(closed.len(), 1, "one line per shard (1):\n{}", closed.join("\n"));
    assert!(closed[0].contains(" INFO "), "{}", closed[0]);

    // The leader dies; the survivor, its follower, says so naming it.
    let dead = cluster.nodes[leader].name.clone();
    let survivor_log = cluster.nodes[survivor].logs.last().expect("a log").clone();
    let peer = format!("peer={dead}");
    assert!(lines_of(&survivor_log, &["raft link down", &peer]).is_empty(), "{dead} is still up");
    cluster.kill9(leader);
    let warned = eventually(NOTICE_WITHIN, || !lines_of(&survivor_log, &["raft link down", &peer]).is_empty());
    assert!(warned, "no WARN naming {dead} within {NOTICE_WITHIN:?}; log:\n{}", cluster::tail(&survivor_log, 40));
    sleep(STILL_DOWN);
    let down = lines_of(&survivor_log, &["raft link down", &peer]);
    assert_eq!(down.len(), 1, "one WARN per down transition:\n{}", down.join("\n"));
    assert!(down[0].contains(" WARN "), "{}", down[0]);
}
