//! Shared pieces of the root crate's integration tests: a broker process guard and a
//! raw-socket remoting client built on the `rockshard-net` codec.
//!
//! [`Broker`] starts `rockshard broker` (two shards, embedded NameServer, all on
//! 127.0.0.1, data in a fresh temporary directory), waits — bounded — for its `ready:`
//! line, and kills the process by pid when dropped, also when a test panics. Its stderr
//! goes to a file in the temporary directory so a failing test can show the log.
//!
//! [`Conn`] is deliberately dumb: a blocking `std::net::TcpStream` with read timeouts,
//! writing whatever bytes a test gives it, so tests can send malformed frames, half
//! frames, and oneway requests, and see exactly what comes back (or that nothing does).
//!
//! Every wait here is bounded in time; nothing retries forever.

#![allow(dead_code)]

pub mod cluster;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rockshard_net::code::{pull_sys_flag, request, response};
use rockshard_net::command::ExtFields;
use rockshard_net::frame::{decode_payload, encode_frame_to_vec};
use rockshard_net::headers::{
    CommandHeader, CreateTopicRequestHeader, GetMaxOffsetRequestHeader, PullMessageRequestHeader,
    SendMessageRequestHeader,
};
use rockshard_net::RemotingCommand;

/// How long a broker may take to print `ready:` (a debug build opening two stores and
/// registering with its NameServer takes well under a second; CI machines are slow).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Start attempts: a free port found by binding port 0 can be taken by another test
/// before the broker binds it, so a failed start is retried on new ports.
const START_ATTEMPTS: usize = 3;
/// Broker-initiated requests `Conn::call` skips while waiting for its answer.
pub const SERVER_REQUESTS_SKIPPED_MAX: usize = 16;
/// Default read timeout of a test connection: far above any answer's latency here.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `rockshard broker` process.
pub struct Broker {
    child: Child,
    extra: Vec<String>,
    pub dir: tempfile::TempDir,
    /// Port of shard 0; shard i listens on `port + i`.
    pub port: u16,
    pub shards: u16,
    pub namesrv_port: u16,
    log: PathBuf,
}

/// Two consecutive free ports (shards 0 and 1) and one more for the NameServer.
pub fn free_ports() -> (u16, u16) {
    for _ in 0..100 {
        let Ok(a) = TcpListener::bind("127.0.0.1:0") else { continue };
        let Ok(port) = a.local_addr().map(|a| a.port()) else { continue };
        if port == u16::MAX {
            continue;
        }
        let Ok(b) = TcpListener::bind(("127.0.0.1", port + 1)) else { continue };
        let Ok(ns) = TcpListener::bind("127.0.0.1:0") else { continue };
        let Ok(ns_port) = ns.local_addr().map(|a| a.port()) else { continue };
        drop((a, b, ns));
        return (port, ns_port);
    }
    panic!("no two consecutive free ports on 127.0.0.1 after 100 tries");
}

impl Broker {
    /// A two-shard broker with default settings.
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// A two-shard broker with extra `rockshard broker` flags.
    pub fn start_with(extra: &[&str]) -> Broker {
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match Broker::try_start(extra) {
                Ok(b) => return b,
                Err(e) => last_error = e,
            }
        }
        panic!("broker did not start in {START_ATTEMPTS} attempts; last: {last_error}");
    }

    fn try_start(extra: &[&str]) -> Result<Broker, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let (port, namesrv_port) = free_ports();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, rx, log) = spawn(&dir, port, namesrv_port, &extra)?;
        let broker = Broker { child, extra, dir, port, shards: 2, namesrv_port, log };
        broker.wait_ready(rx)
    }

    /// Kills the process with SIGKILL (no flush, no checkpoint) and starts it again on
    /// the same data directory and ports.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.restart();
    }

    /// Kills the process with SIGKILL (by pid) and reaps it, leaving the data directory
    /// as a crash leaves it; `restart` starts it again.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The running process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The broker's `--data-dir` (shard `i` lives in `shard-<i>` under it).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Kills the process with SIGKILL and starts it again at once, once: no retry, so a
    /// start that fails because the dead process still holds something is seen.
    pub fn kill9_and_restart_once(&mut self) -> Result<(), String> {
        self.kill9();
        let (child, rx, log) = spawn(&self.dir, self.port, self.namesrv_port, &self.extra)?;
        self.child = child;
        self.log = log;
        wait_for_ready(&rx, &self.log)
    }

    /// The broker's resident memory (VmRSS of /proc/<pid>/status), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("proc status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
        let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value");
        kib * 1024
    }

    /// Sends SIGTERM and waits (bounded) for the process to exit; returns its exit code.
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Starts the broker again on the same directory and ports (after it stopped).
    pub fn restart(&mut self) {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match spawn(&self.dir, self.port, self.namesrv_port, &self.extra) {
                Ok((child, rx, log)) => {
                    self.child = child;
                    self.log = log;
                    match wait_for_ready(&rx, &self.log) {
                        Ok(()) => return,
                        Err(e) => last = e,
                    }
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                }
                Err(e) => last = e,
            }
            // The old process's ports may take a moment to be free again.
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("broker did not restart: {last}");
    }

    fn wait_ready(self, rx: mpsc::Receiver<String>) -> Result<Broker, String> {
        wait_for_ready(&rx, &self.log).map(|()| self)
    }
}

fn wait_for_ready(rx: &mpsc::Receiver<String>, log: &PathBuf) -> Result<(), String> {
    let read_log = || std::fs::read_to_string(log).unwrap_or_else(|e| format!("(no log: {e})"));
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("ready:") => return Ok(()),
            Ok(_) => continue,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("no `ready:` line within {READY_TIMEOUT:?}; log:\n{}", read_log()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("broker exited before `ready:`; log:\n{}", read_log()))
            }
        }
    }
}

/// Starts `rockshard broker` on `dir`; its stdout lines arrive on the receiver, its log
/// (stderr) goes to a file named after the start so restarts keep earlier logs.
fn spawn(
    dir: &tempfile::TempDir,
    port: u16,
    namesrv_port: u16,
    extra: &[String],
) -> Result<(Child, mpsc::Receiver<String>, PathBuf), String> {
    {
        let starts = std::fs::read_dir(dir.path()).map(|d| d.count()).unwrap_or(0);
        let log = dir.path().join(format!("broker-{starts}.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("log file: {e}"))?;
        let data = dir.path().join("data");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rockshard"));
        cmd.arg("broker")
            .arg("--data-dir")
            .arg(&data)
            .args(["--shards", "2", "--pin-cores", "false", "--listen-ip", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--namesrv-listen", &format!("127.0.0.1:{namesrv_port}")])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = cmd.spawn().map_err(|e| format!("spawn rockshard broker: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        // A thread reads stdout so the wait for `ready:` can time out; it ends with the process.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok((child, rx, log))
    }
}

impl Broker {
    /// `127.0.0.1:<port of shard i>`.
    pub fn shard_addr(&self, shard: u16) -> String {
        format!("127.0.0.1:{}", self.port + shard)
    }

    pub fn namesrv_addr(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    /// The broker name shard `i` registers as.
    pub fn shard_name(&self, shard: u16) -> String {
        format!("broker-a-s{shard}")
    }

    /// A connection to shard `i`.
    pub fn connect(&self, shard: u16) -> Conn {
        Conn::connect(&self.shard_addr(shard))
    }

    /// Whatever the broker logged so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|e| format!("(no log: {e})"))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs `rockshard admin --namesrv <ours> <args>`; returns (exit code, stdout, stderr).
    pub fn admin(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_rockshard"))
            .arg("admin")
            .args(["--namesrv", &self.namesrv_addr(), "--timeout-ms", "10000"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run rockshard admin");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // SIGKILL by pid (Child::kill); the process is ours and nothing else holds it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking test connection speaking raw frames.
pub struct Conn {
    pub stream: TcpStream,
    next_opaque: i32,
}

impl Conn {
    pub fn connect(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Conn { stream, next_opaque: 1000 }
    }

    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends `cmd` with a fresh opaque; returns the opaque.
    pub fn send(&mut self, mut cmd: RemotingCommand) -> i32 {
        self.next_opaque += 1;
        cmd.opaque = self.next_opaque;
        let frame = encode_frame_to_vec(&cmd).expect("encodes");
        self.write_raw(&frame);
        cmd.opaque
    }

    /// Reads one frame; `None` if nothing arrived within the read timeout.
    pub fn read_frame(&mut self) -> Option<RemotingCommand> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return None,
            Err(e) => panic!("reading a frame: {e}"),
        }
        let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stream.read_exact(&mut payload).expect("frame payload");
        Some(decode_payload(Bytes::from(payload)).expect("the broker's frame decodes"))
    }

    /// Sends `cmd` and returns the answer with its opaque. Requests the broker sends us
    /// meanwhile (NOTIFY_CONSUMER_IDS_CHANGED after a heartbeat) are skipped, at most
    /// [`SERVER_REQUESTS_SKIPPED_MAX`] of them; answers to other requests arriving first
    /// would be a test bug: these tests keep one request in flight.
    pub fn call(&mut self, cmd: RemotingCommand) -> RemotingCommand {
        let code = cmd.code;
        let opaque = self.send(cmd);
        for _ in 0..=SERVER_REQUESTS_SKIPPED_MAX {
            let frame = self
                .read_frame()
                .unwrap_or_else(|| panic!("no answer to request code {code} within {ANSWER_TIMEOUT:?}"));
            if !frame.is_response() {
                continue;
            }
            assert_eq!(frame.opaque, opaque, "answer to another request: {frame:?}");
            return frame;
        }
        panic!("more than {SERVER_REQUESTS_SKIPPED_MAX} broker requests and no answer to request code {code}");
    }

    /// Waits (bounded) for the broker to close this connection: a read returns end of
    /// stream or a reset. An error says what happened instead.
    pub fn closed_within(&mut self, within: Duration) -> Result<(), String> {
        self.stream.set_read_timeout(Some(within)).expect("read timeout");
        let mut buf = [0u8; 64];
        match self.stream.read(&mut buf) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("expected the connection closed, got {n} bytes: {:?}", &buf[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => Ok(()),
            Err(e) => Err(format!("expected the connection closed within {within:?}, got: {e}")),
        }
    }

    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// A request as the Rust client sends it (JSON header, language RUST).
pub fn req(code: i32, ext: ExtFields) -> RemotingCommand {
    RemotingCommand::new_request(code, ext)
}

/// SEND_MESSAGE (V1 keys, as the Rust client sends) of `body` to `topic`/`queue_id`.
pub fn send_message(topic: &str, queue_id: i32, body: impl Into<Bytes>, properties: &str) -> RemotingCommand {
    let header = SendMessageRequestHeader {
        producer_group: "PG".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        sys_flag: 0,
        born_timestamp_ms: 1_700_000_000_000,
        flag: 0,
        properties: Some(properties.into()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        max_reconsume_times: None,
        batch: Some(false),
        broker_name: None,
    };
    req(request::SEND_MESSAGE, header.to_ext_fields()).with_body(body.into())
}

/// UPDATE_AND_CREATE_TOPIC with `queues` in all (spread over the shards).
pub fn create_topic(conn: &mut Conn, topic: &str, queues: i32) {
    create_topic_with(conn, topic, queues, None)
}

/// UPDATE_AND_CREATE_TOPIC with a flush mode (`sync` / `async`) as RocketMQ attribute.
pub fn create_topic_with(conn: &mut Conn, topic: &str, queues: i32, flush: Option<&str>) {
    let header = CreateTopicRequestHeader {
        topic: topic.into(),
        default_topic: "TBW102".into(),
        read_queue_nums: queues,
        write_queue_nums: queues,
        perm: 6,
        topic_filter_type: "SINGLE_TAG".into(),
        order: false,
        topic_sys_flag: None,
        attributes: flush.map(|f| format!("+flush.mode={f}")),
        force: None,
    };
    let answer = conn.call(req(request::UPDATE_AND_CREATE_TOPIC, header.to_ext_fields()));
    assert_eq!(answer.code, response::SUCCESS, "creating {topic}: {answer:?}");
}

/// A pull of one queue with the subscription in the header (no heartbeat needed).
pub fn pull(topic: &str, queue_id: i32, offset: i64, suspend_ms: i64) -> rockshard_net::RemotingCommand {
    let mut sys_flag = pull_sys_flag::SUBSCRIPTION;
    if suspend_ms > 0 {
        sys_flag |= pull_sys_flag::SUSPEND;
    }
    let header = PullMessageRequestHeader {
        consumer_group: "CG".into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset,
        max_msg_nums: 32,
        sys_flag,
        commit_offset: 0,
        suspend_timeout_millis: suspend_ms,
        subscription: Some("*".into()),
        sub_version: 0,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
        request_source: None,
        proxy_froward_client_id: None,
    };
    req(request::PULL_MESSAGE, header.to_ext_fields())
}

/// GET_MAX_OFFSET of a queue; panics unless answered SUCCESS with an offset.
pub fn max_offset(conn: &mut Conn, topic: &str, queue_id: i32) -> i64 {
    let header = GetMaxOffsetRequestHeader { topic: topic.into(), queue_id, committed: None };
    let answer = conn.call(req(request::GET_MAX_OFFSET, header.to_ext_fields()));
    assert_eq!(answer.code, 0, "GET_MAX_OFFSET {topic}:{queue_id}: {answer:?}");
    answer.ext_fields.get("offset").and_then(|o| o.parse().ok()).expect("offset field")
}

/// Polls until `check` is true or `within` passed (bounded; 20 ms between tries).
pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
