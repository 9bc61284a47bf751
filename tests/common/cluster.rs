//! A replicated broker group on loopback for tests: one standalone NameServer process,
//! N `rockshard broker` processes of one group (`--group/--node/--peers`), and optionally
//! a fault proxy between every ordered pair of nodes.
//!
//! What it owns:
//! - [`Cluster`]: the processes, their temporary data directories and their log files.
//!   Nodes are started, killed (`kill -9`), stopped (SIGTERM) and restarted by index, always
//!   by their own pid. Dropping the cluster SIGTERMs every process, waits (bounded) and
//!   `kill -9`s any survivor; when the test is panicking the data directory is kept and
//!   every log path (with its tail) is printed.
//! - [`Proxy`]: when enabled, node A's `--peers` entry for node B names a loopback port
//!   of a forwarder thread that relays to B's real port (one per shard: base + i). So all
//!   Raft traffic A→B flows through proxy (A,B), and B→A through (B,A). Clients and the
//!   NameServer still reach every node directly. [`Cluster::block`] cuts a pair both ways:
//!   live relayed connections are shut down, new ones are accepted and closed at once,
//!   until [`Cluster::heal`].
//! - RAFT_STATUS (request code 30002) polling: [`Cluster::status`], [`Cluster::leader`],
//!   [`Cluster::wait_converged`]. Field names of the status JSON are read leniently
//!   (camelCase or snake_case) so a rename on the broker side does not break the harness.
//!
//! Invariants: only 127.0.0.1 is used; every wait is bounded in time and in iterations;
//! ports come from 20000..32000 (below Linux's ephemeral range, so an outgoing connection
//! never squats on a node's port while it is down) and are never handed out twice by one
//! test process.
//!
//! Threads: the test thread drives everything; two drain threads per process copy its
//! stdout/stderr into its log file (and forward stdout lines to find `ready:`); each proxy
//! runs one accept thread per shard and two pump threads per relayed connection.
//!
//! Deliberately self-contained (std, serde_json, tempfile only, with its own minimal
//! JSON-header remoting frame codec): the real-client compat crate (tests/compat) includes
//! this same file with `#[path]`, and that crate does not depend on rockshard's crates.
//! It does not know broker internals beyond the command line, the `ready:` line and the
//! RAFT_STATUS answer.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a broker may take from spawn to `ready:` (debug build, recovery of its store,
/// opening its Raft files and registering; a loaded 2-core machine is slow).
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the NameServer may take to accept connections.
const NAMESRV_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a SIGTERMed process may take to exit before it is `kill -9`ed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Connect and answer timeout of one RAFT_STATUS request: a live shard answers in
/// milliseconds; a node that does not answer in this long counts as down for that poll.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between polls in every wait loop here.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Restart attempts of one node: a port of the previous incarnation may linger briefly.
const START_ATTEMPTS: usize = 3;
/// Lowest and one past the highest port handed out (below the ephemeral range 32768+).
const PORT_RANGE: (u16, u16) = (20_000, 32_000);
/// Tries at finding a free block of consecutive ports.
const PORT_SEARCH_ATTEMPTS_MAX: usize = 500;
/// Lines of each log shown when a test fails.
const LOG_TAIL_LINES: usize = 40;
/// A proxy's connect timeout to its target: loopback connects are instant or refused.
const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Read timeout of a proxy pump and accept poll period: how quickly the threads notice a
/// stop. Short against every wait in the tests.
const PROXY_POLL: Duration = Duration::from_millis(20);
/// Longest a relayed write may block: a live node reads its socket continuously.
const PROXY_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Relay buffer per direction.
const PROXY_BUFFER_BYTES: usize = 64 * 1024;
/// Largest answer frame the mini codec accepts (a status answer is a few hundred bytes).
const FRAME_MAX_BYTES: usize = 64 * 1024 * 1024;

/// RAFT_STATUS: a shard's Raft view as JSON.
pub const RAFT_STATUS: i32 = 30_002;
/// RocketMQ's GET_ROUTEINFO_BY_TOPIC (NameServer).
const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
/// How long one `rockshard admin` run may take (it asks each node with a 5 s timeout).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

static PORTS_TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the process-wide lock: one cluster at a time on a 2-core machine (three brokers
/// each is already a lot; two clusters at once would measure the machine, not the
/// failover). A test that panicked while holding it does not fail the others.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// A seed for whatever a test randomises: `ROCKSHARD_TEST_SEED` if set, else the clock.
pub fn seed() -> u64 {
    if let Some(s) = std::env::var("ROCKSHARD_TEST_SEED").ok().and_then(|s| s.parse().ok()) {
        return s;
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
}

/// A small deterministic generator (xorshift64*), enough for ports and message fillers.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// `count` consecutive free ports in [`PORT_RANGE`], checked by binding them.
fn free_ports(rng: &mut Rng, count: u16) -> Result<u16, String> {
    for _ in 0..PORT_SEARCH_ATTEMPTS_MAX {
        let base = PORT_RANGE.0 + rng.below(u64::from(PORT_RANGE.1 - PORT_RANGE.0 - count)) as u16;
        let mut taken = PORTS_TAKEN.lock().unwrap_or_else(|p| p.into_inner());
        if (base..base + count).any(|p| taken.contains(&p)) {
            continue;
        }
        let held: Vec<TcpListener> =
            (base..base + count).filter_map(|p| TcpListener::bind(("127.0.0.1", p)).ok()).collect();
        if held.len() != usize::from(count) {
            continue;
        }
        taken.extend(base..base + count);
        return Ok(base);
    }
    Err(format!("no {count} consecutive free ports in {PORT_RANGE:?} after {PORT_SEARCH_ATTEMPTS_MAX} tries"))
}

/// `count` consecutive ports bound now (a proxy keeps its listeners, so nothing can take
/// them between choosing and using).
fn bind_ports(rng: &mut Rng, count: u16) -> Result<(u16, Vec<TcpListener>), String> {
    for _ in 0..PORT_SEARCH_ATTEMPTS_MAX {
        let base = free_ports(rng, count)?;
        let held: Vec<TcpListener> =
            (base..base + count).filter_map(|p| TcpListener::bind(("127.0.0.1", p)).ok()).collect();
        if held.len() == usize::from(count) {
            return Ok((base, held));
        }
    }
    Err(format!("could not bind {count} consecutive ports"))
}

// ---- processes ---------------------------------------------------------------------------

/// A child process with its log file; stdout lines are forwarded while someone listens.
struct Proc {
    child: Child,
    log: PathBuf,
    lines: mpsc::Receiver<String>,
}

fn spawn_logged(mut cmd: Command, log: &Path) -> Result<Proc, String> {
    let file = std::fs::File::create(log).map_err(|e| format!("create {}: {e}", log.display()))?;
    let file = Arc::new(Mutex::new(file));
    if let Ok(mut f) = file.lock() {
        let _ = writeln!(f, "# {cmd:?}");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    let mut child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().ok_or("no stdout pipe")?;
    let err = child.stderr.take().ok_or("no stderr pipe")?;
    drain(out, file.clone(), Some(tx));
    drain(err, file, None);
    Ok(Proc { child, log: log.to_path_buf(), lines: rx })
}

/// Copies a pipe into the log until the process closes it (it exited or was killed).
fn drain<R: Read + Send + 'static>(r: R, log: Arc<Mutex<std::fs::File>>, forward: Option<mpsc::Sender<String>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut f) = log.lock() {
                let _ = writeln!(f, "{line}");
            }
            if let Some(tx) = &forward {
                let _ = tx.send(line);
            }
        }
    });
}

/// Sends SIGTERM to one pid (std has no signal API; kill(1) targets exactly that pid).
fn sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits (bounded) for `child` to exit.
fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    let rounds = within.as_millis() / POLL_INTERVAL.as_millis() + 2;
    for _ in 0..rounds {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    child.try_wait().ok().flatten()
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(no log: {e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- the cluster ---------------------------------------------------------------------------

/// How to build a cluster.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `rockshard` binary.
    pub bin: PathBuf,
    pub nodes: usize,
    pub shards: u16,
    /// Route every node pair's Raft traffic through a [`Proxy`].
    pub proxies: bool,
    /// Extra `rockshard broker` flags for every node (Raft timing, segment size, ...).
    pub broker_args: Vec<String>,
    /// Seed for port choice (printed on failure).
    pub seed: u64,
}

impl Options {
    pub fn new(bin: impl Into<PathBuf>, nodes: usize) -> Options {
        Options { bin: bin.into(), nodes, shards: 1, proxies: false, broker_args: Vec::new(), seed: seed() }
    }
    pub fn args(mut self, args: &[&str]) -> Options {
        self.broker_args.extend(args.iter().map(|s| s.to_string()));
        self
    }
    pub fn proxies(mut self, on: bool) -> Options {
        self.proxies = on;
        self
    }
}

/// One broker node of the group.
pub struct Node {
    /// `n1`, `n2`, ... (Raft id = index + 1).
    pub name: String,
    /// Shard 0's port; shard i listens on port + i.
    pub port: u16,
    pub data_dir: PathBuf,
    args: Vec<String>,
    proc: Option<Proc>,
    /// Every log file this node wrote, one per start.
    pub logs: Vec<PathBuf>,
}

pub struct Cluster {
    pub opts: Options,
    dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    namesrv: Option<Proc>,
    pub namesrv_port: u16,
    pub nodes: Vec<Node>,
    proxies: HashMap<(usize, usize), Proxy>,
}

impl Cluster {
    /// Starts the NameServer and every node, waits (bounded) for each `ready:` line.
    pub fn start(opts: Options) -> Cluster {
        match Cluster::try_start(opts.clone()) {
            Ok(c) => c,
            Err(e) => panic!("cluster did not start (seed {}): {e}", opts.seed),
        }
    }

    fn try_start(opts: Options) -> Result<Cluster, String> {
        let mut rng = Rng::new(opts.seed);
        let dir = tempfile::Builder::new().prefix("rockshard-cluster-").tempdir().map_err(|e| e.to_string())?;
        let root = dir.path().to_path_buf();
        let namesrv_port = free_ports(&mut rng, 1)?;
        let mut ports = Vec::new();
        for _ in 0..opts.nodes {
            ports.push(free_ports(&mut rng, opts.shards)?);
        }
        // proxies[(a, b)]: where a reaches b.
        let mut proxies = HashMap::new();
        if opts.proxies {
            for a in 0..opts.nodes {
                for (b, target) in ports.iter().enumerate() {
                    if a != b {
                        let (base, listeners) = bind_ports(&mut rng, opts.shards)?;
                        proxies.insert((a, b), Proxy::start(a, b, base, listeners, *target));
                    }
                }
            }
        }
        let mut nodes = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let peers: Vec<String> = (0..opts.nodes)
                .map(|j| {
                    let p = if i == j || !opts.proxies { ports[j] } else { proxies[&(i, j)].base };
                    format!("n{}=127.0.0.1:{p}", j + 1)
                })
                .collect();
            let data_dir = root.join(format!("n{}", i + 1)).join("data");
            std::fs::create_dir_all(&data_dir).map_err(|e| e.to_string())?;
            let mut args: Vec<String> = [
                "broker",
                "--data-dir",
                &data_dir.to_string_lossy(),
                "--port",
                &port.to_string(),
                "--listen-ip",
                "127.0.0.1",
                "--shards",
                &opts.shards.to_string(),
                "--pin-cores",
                "false",
                "--embedded-namesrv",
                "false",
                "--namesrv-addr",
                &format!("127.0.0.1:{namesrv_port}"),
                "--group",
                "g1",
                "--node",
                &format!("n{}", i + 1),
                "--peers",
                &peers.join(","),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(opts.broker_args.iter().cloned());
            nodes.push(Node { name: format!("n{}", i + 1), port: *port, data_dir, args, proc: None, logs: Vec::new() });
        }
        let mut cluster = Cluster { opts, dir: Some(dir), root, namesrv: None, namesrv_port, nodes, proxies };
        cluster.start_namesrv()?;
        // Spawn every node before waiting for any: a node may wait for its peers to start.
        for i in 0..cluster.nodes.len() {
            cluster.spawn_node(i)?;
        }
        for i in 0..cluster.nodes.len() {
            cluster.wait_ready(i)?;
        }
        println!("{}", cluster.describe());
        Ok(cluster)
    }

    fn start_namesrv(&mut self) -> Result<(), String> {
        let log = self.root.join("namesrv.log");
        let mut cmd = Command::new(&self.opts.bin);
        cmd.args(["namesrv", "--listen", &format!("127.0.0.1:{}", self.namesrv_port)]);
        // Expire a dead broker's registration quickly (nodes register every second, below).
        cmd.args(["--scan-interval-ms", "500", "--broker-expiry-ms", "5000"]);
        let mut p = spawn_logged(cmd, &log)?;
        let addr: SocketAddr = format!("127.0.0.1:{}", self.namesrv_port).parse().map_err(|_| "addr")?;
        let deadline = Instant::now() + NAMESRV_READY_TIMEOUT;
        let rounds = NAMESRV_READY_TIMEOUT.as_millis() / POLL_INTERVAL.as_millis() + 2;
        for _ in 0..rounds {
            if TcpStream::connect_timeout(&addr, STATUS_TIMEOUT).is_ok() {
                self.namesrv = Some(p);
                return Ok(());
            }
            if let Ok(Some(s)) = p.child.try_wait() {
                return Err(format!("namesrv exited with {s}; log {}:\n{}", log.display(), tail(&log, LOG_TAIL_LINES)));
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        let _ = p.child.kill();
        let _ = p.child.wait();
        Err(format!("namesrv did not listen within {NAMESRV_READY_TIMEOUT:?}; log {}", log.display()))
    }

    fn spawn_node(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let log = node.data_dir.parent().unwrap_or(&node.data_dir).join(format!("broker-{}.log", node.logs.len()));
        let mut cmd = Command::new(&self.opts.bin);
        cmd.args(&node.args);
        // Routes follow leadership quickly: re-register every second (the NameServer drops a
        // node after four missed registrations).
        if !node.args.iter().any(|a| a == "--register-interval-ms") {
            cmd.args(["--register-interval-ms", "1000"]);
        }
        node.proc = Some(spawn_logged(cmd, &log)?);
        node.logs.push(log);
        Ok(())
    }

    fn wait_ready(&mut self, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i];
        let Some(p) = node.proc.as_mut() else { return Err(format!("{} is not running", node.name)) };
        let deadline = Instant::now() + READY_TIMEOUT;
        let rounds = READY_TIMEOUT.as_millis() / POLL_INTERVAL.as_millis() + 2;
        for _ in 0..rounds {
            match p.lines.recv_timeout(POLL_INTERVAL) {
                Ok(line) if line.starts_with("ready:") => return Ok(()),
                Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(POLL_INTERVAL),
            }
            if let Ok(Some(s)) = p.child.try_wait() {
                return Err(format!(
                    "{} exited with {s} before `ready:`; log {}:\n{}",
                    node.name,
                    p.log.display(),
                    tail(&p.log, LOG_TAIL_LINES)
                ));
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(format!("{} printed no `ready:` within {READY_TIMEOUT:?}; log {}", node.name, p.log.display()))
    }

    /// Starts node `i` again on its data directory and ports (after a kill or stop).
    pub fn start_node(&mut self, i: usize) {
        assert!(!self.is_running(i), "{} is still running", self.nodes[i].name);
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match self.spawn_node(i).and_then(|()| self.wait_ready(i)) {
                Ok(()) => return,
                Err(e) => last = e,
            }
            if let Some(mut p) = self.nodes[i].proc.take() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!("{} did not restart (seed {}): {last}", self.nodes[i].name, self.opts.seed);
    }

    /// The pid of node `i`'s process, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].proc.as_ref().map(|p| p.child.id())
    }

    /// `kill -9` node `i` (by its pid) and reaps it.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }

    /// SIGTERM node `i` and waits (bounded) for it to exit; `kill -9` if it does not.
    /// Returns the exit status if it exited by itself.
    pub fn stop(&mut self, i: usize) -> Option<ExitStatus> {
        let mut p = self.nodes[i].proc.take()?;
        sigterm(p.child.id());
        let status = wait_exit(&mut p.child, STOP_TIMEOUT);
        if status.is_none() {
            eprintln!("{} ignored SIGTERM for {STOP_TIMEOUT:?}; kill -9", self.nodes[i].name);
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        status
    }

    /// SIGTERM every running node at once, then waits for each (bounded); returns the
    /// nodes that did not exit cleanly with their status (`None` = had to be killed).
    pub fn stop_all(&mut self) -> Vec<(String, Option<ExitStatus>)> {
        for n in &self.nodes {
            if let Some(p) = &n.proc {
                sigterm(p.child.id());
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut bad = Vec::new();
        for n in &mut self.nodes {
            let Some(mut p) = n.proc.take() else { continue };
            let status = wait_exit(&mut p.child, deadline.saturating_duration_since(Instant::now()));
            if status.is_none() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
            if !status.is_some_and(|s| s.success()) {
                bad.push((n.name.clone(), status));
            }
        }
        bad
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i].proc.as_mut().is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    pub fn shard_addr(&self, i: usize, shard: u16) -> String {
        format!("127.0.0.1:{}", self.nodes[i].port + shard)
    }

    pub fn namesrv_addr(&self) -> String {
        format!("127.0.0.1:{}", self.namesrv_port)
    }

    /// `<data-dir>/shard-<shard>` of node `i`.
    pub fn shard_dir(&self, i: usize, shard: u16) -> PathBuf {
        self.nodes[i].data_dir.join(format!("shard-{shard}"))
    }

    /// Seed, ports, directories and log paths: printed at start and on failure.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "cluster: seed {} root {} namesrv 127.0.0.1:{} (log {})",
            self.opts.seed,
            self.root.display(),
            self.namesrv_port,
            self.root.join("namesrv.log").display()
        );
        for n in &self.nodes {
            s.push_str(&format!(
                "\n  {} port {} data {} logs {:?}",
                n.name,
                n.port,
                n.data_dir.display(),
                n.logs.iter().map(|l| l.display().to_string()).collect::<Vec<_>>()
            ));
        }
        let mut pairs: Vec<_> = self.proxies.iter().collect();
        pairs.sort_by_key(|(k, _)| **k);
        for ((a, b), p) in pairs {
            s.push_str(&format!(
                "\n  proxy n{}->n{} at {} ({} bytes relayed, blocked {})",
                a + 1,
                b + 1,
                p.base,
                p.state.relayed.load(Ordering::Relaxed),
                p.state.inner.lock().map(|i| i.blocked).unwrap_or(false)
            ));
        }
        s
    }

    /// The last lines of every log, for a failure message.
    pub fn log_tails(&self) -> String {
        let mut s = String::new();
        for n in &self.nodes {
            for l in &n.logs {
                s.push_str(&format!("\n---- {} {}\n{}", n.name, l.display(), tail(l, LOG_TAIL_LINES)));
            }
        }
        s
    }

    /// Runs `rockshard admin --namesrv <ours> <args>` (bounded); its stdout if it exits 0.
    pub fn admin(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(&self.opts.bin);
        cmd.arg("admin").args(["--namesrv", &self.namesrv_addr(), "--timeout-ms", "5000"]).args(args);
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let log = self.root.join(format!("admin-{}.log", RUNS.fetch_add(1, Ordering::Relaxed)));
        let mut p = spawn_logged(cmd, &log)?;
        let status = wait_exit(&mut p.child, ADMIN_TIMEOUT);
        if status.is_none() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        // The stdout drain thread ends with the process: collect until it hangs up.
        let mut out = Vec::new();
        let deadline = Instant::now() + STATUS_TIMEOUT;
        loop {
            match p.lines.recv_timeout(POLL_INTERVAL) {
                Ok(line) => out.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        match status {
            Some(s) if s.success() => Ok(out.join("\n")),
            other => Err(format!("admin {args:?} ended with {other:?}; output:\n{}", tail(&log, LOG_TAIL_LINES))),
        }
    }

    /// brokerName -> (brokerId -> address) of `topic`'s route at the NameServer.
    pub fn route(&self, topic: &str) -> Result<BTreeMap<String, BTreeMap<i64, String>>, String> {
        let ext = [("topic", topic.to_string()), ("acceptStandardJsonOnly", "true".to_string())];
        let a = call_json(&self.namesrv_addr(), GET_ROUTEINFO_BY_TOPIC, &ext, &[], STATUS_TIMEOUT)?;
        if a.code != 0 {
            return Err(format!("route of {topic}: code {} {:?}", a.code, a.remark));
        }
        let v: Value = serde_json::from_slice(&a.body).map_err(|e| format!("route body: {e}"))?;
        let mut out = BTreeMap::new();
        for b in v.get("brokerDatas").and_then(Value::as_array).into_iter().flatten() {
            let name = b.get("brokerName").and_then(Value::as_str).unwrap_or_default().to_string();
            let mut addrs = BTreeMap::new();
            for (id, addr) in b.get("brokerAddrs").and_then(Value::as_object).into_iter().flatten() {
                let id: i64 = id.parse().map_err(|_| format!("brokerId {id}"))?;
                addrs.insert(id, addr.as_str().unwrap_or_default().to_string());
            }
            out.insert(name, addrs);
        }
        Ok(out)
    }

    /// Waits until `topic`'s route names `addr` as the master (brokerId 0) of
    /// `broker_name`; returns how long that took.
    pub fn wait_route_master(
        &self,
        topic: &str,
        broker_name: &str,
        addr: &str,
        within: Duration,
    ) -> Result<Duration, String> {
        let started = Instant::now();
        let rounds = within.as_millis() / POLL_INTERVAL.as_millis() + 2;
        let mut last = Err(String::from("not asked"));
        for _ in 0..rounds {
            last = self.route(topic);
            if let Ok(r) = &last {
                if r.get(broker_name).and_then(|a| a.get(&0)).is_some_and(|a| a == addr) {
                    return Ok(started.elapsed());
                }
            }
            if started.elapsed() >= within {
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Err(format!("the route of {topic} never named {addr} master of {broker_name} within {within:?}: {last:?}"))
    }

    // ---- faults ----

    /// Cuts Raft traffic between nodes `a` and `b`, both directions.
    pub fn block(&self, a: usize, b: usize) {
        for k in [(a, b), (b, a)] {
            self.proxies.get(&k).unwrap_or_else(|| panic!("no proxy {k:?}: start with proxies on")).block();
        }
    }

    pub fn heal(&self, a: usize, b: usize) {
        for k in [(a, b), (b, a)] {
            self.proxies.get(&k).unwrap_or_else(|| panic!("no proxy {k:?}: start with proxies on")).heal();
        }
    }

    /// Cuts node `a` from every other node.
    pub fn isolate(&self, a: usize) {
        for b in 0..self.nodes.len() {
            if b != a {
                self.block(a, b);
            }
        }
    }

    pub fn heal_all(&self) {
        for p in self.proxies.values() {
            p.heal();
        }
    }

    /// Bytes relayed from `a` to `b` so far.
    pub fn relayed(&self, a: usize, b: usize) -> u64 {
        self.proxies.get(&(a, b)).map_or(0, |p| p.state.relayed.load(Ordering::Relaxed))
    }

    // ---- Raft status ----

    /// RAFT_STATUS of node `i`'s shard; an error if it is down or does not answer.
    pub fn status(&self, i: usize, shard: u16) -> Result<RaftView, String> {
        status_at(&self.shard_addr(i, shard))
    }

    /// Every node's address of `shard`, for threads that look for the leader themselves.
    pub fn shard_addrs(&self, shard: u16) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.shard_addr(i, shard)).collect()
    }

    /// Every node's status (`Err` for a node down or not answering).
    pub fn statuses(&self, shard: u16) -> Vec<Result<RaftView, String>> {
        (0..self.nodes.len()).map(|i| self.status(i, shard)).collect()
    }

    /// The node that says it leads `shard` (the highest term among those that say so),
    /// polled until one does or `within` passed.
    pub fn leader(&self, shard: u16, within: Duration) -> Result<(usize, RaftView), String> {
        self.leader_where(shard, within, |_, _| true)
    }

    /// Like [`Cluster::leader`], but only a leader `accept(node, view)` likes counts.
    pub fn leader_where(
        &self,
        shard: u16,
        within: Duration,
        accept: impl Fn(usize, &RaftView) -> bool,
    ) -> Result<(usize, RaftView), String> {
        let deadline = Instant::now() + within;
        let rounds = within.as_millis() / POLL_INTERVAL.as_millis() + 2;
        let mut last = Vec::new();
        for _ in 0..rounds {
            last = self.statuses(shard);
            let best = last
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().ok().map(|v| (i, v)))
                .filter(|(i, v)| v.is_leader() && accept(*i, v))
                .max_by_key(|(_, v)| v.term);
            if let Some((i, v)) = best {
                return Ok((i, v.clone()));
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Err(format!("no leader of shard {shard} within {within:?}; last statuses: {}", show(&last)))
    }

    /// Waits until every running node agrees on the leader and term, every log is applied
    /// up to its end and all ends are equal (the leader's progress shows every follower
    /// matched), i.e. nothing is in flight. Returns the views.
    pub fn wait_converged(&mut self, shard: u16, within: Duration) -> Result<Vec<RaftView>, String> {
        let deadline = Instant::now() + within;
        let rounds = within.as_millis() / POLL_INTERVAL.as_millis() + 2;
        let running: Vec<usize> = (0..self.nodes.len()).filter(|i| self.is_running(*i)).collect();
        let mut why = String::new();
        for _ in 0..rounds {
            let views: Vec<Result<RaftView, String>> = running.iter().map(|i| self.status(*i, shard)).collect();
            match converged(&views) {
                Ok(()) => return Ok(views.into_iter().map(|v| v.expect("checked")).collect()),
                Err(e) => why = format!("{e}; statuses: {}", show(&views)),
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Err(format!("shard {shard} did not converge within {within:?}: {why}"))
    }
}

/// RAFT_STATUS of the shard listening at `addr`.
pub fn status_at(addr: &str) -> Result<RaftView, String> {
    let answer = call_json(addr, RAFT_STATUS, &[], &[], STATUS_TIMEOUT)?;
    if answer.code != 0 {
        return Err(format!("RAFT_STATUS at {addr} answered code {} ({:?})", answer.code, answer.remark));
    }
    let v: Value = serde_json::from_slice(&answer.body).map_err(|e| format!("status body from {addr}: {e}"))?;
    RaftView::parse(v)
}

/// Index into `addrs` of the shard that says it leads (highest term among those that
/// do), polled until one does or `within` passed.
pub fn leader_among(addrs: &[String], within: Duration) -> Result<usize, String> {
    let deadline = Instant::now() + within;
    let rounds = within.as_millis() / POLL_INTERVAL.as_millis() + 2;
    let mut last = Vec::new();
    for _ in 0..rounds {
        last = addrs.iter().map(|a| status_at(a)).collect::<Vec<_>>();
        let best = last
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().ok().map(|v| (i, v)))
            .filter(|(_, v)| v.is_leader())
            .max_by_key(|(_, v)| v.term);
        if let Some((i, _)) = best {
            return Ok(i);
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Err(format!("no leader among {addrs:?} within {within:?}; last statuses: {}", show(&last)))
}

fn converged(views: &[Result<RaftView, String>]) -> Result<(), String> {
    let mut ok = Vec::new();
    for v in views {
        ok.push(v.as_ref().map_err(|e| format!("a node did not answer: {e}"))?);
    }
    let first = ok.first().ok_or("no running node")?;
    let leader = first.leader.ok_or("no leader known")?;
    for v in &ok {
        if v.leader != Some(leader) || v.term != first.term {
            return Err(format!("node {} sees leader {:?} term {}", v.node_id, v.leader, v.term));
        }
        if v.commit != first.commit {
            return Err(format!("commit differs: node {} {} vs {}", v.node_id, v.commit, first.commit));
        }
        if let Some(last) = v.last_index {
            if last != v.commit {
                return Err(format!("node {} last index {last} != commit {}", v.node_id, v.commit));
            }
        }
        if let Some(applied) = v.applied {
            if applied != v.commit {
                return Err(format!("node {} applied {applied} != commit {}", v.node_id, v.commit));
            }
        }
    }
    let lv = ok.iter().find(|v| v.node_id == leader).ok_or("the leader is not among the running nodes")?;
    for v in &ok {
        if v.node_id == leader {
            continue;
        }
        if let Some((_, matched)) = lv.progress.iter().find(|(id, _)| *id == v.node_id) {
            if *matched != lv.commit {
                return Err(format!("leader sees node {} matched {matched} of {}", v.node_id, lv.commit));
            }
        }
    }
    Ok(())
}

fn show(views: &[Result<RaftView, String>]) -> String {
    views
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Ok(v) => format!("\n  n{}: {}", i + 1, v.raw.get("status").unwrap_or(&v.raw)),
            Err(e) => format!("\n  n{}: {e}", i + 1),
        })
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let not_clean = self.stop_all();
        if !not_clean.is_empty() {
            eprintln!("nodes that did not exit cleanly on SIGTERM: {not_clean:?}");
        }
        if let Some(mut p) = self.namesrv.take() {
            sigterm(p.child.id());
            if wait_exit(&mut p.child, STOP_TIMEOUT).is_none() {
                let _ = p.child.kill();
                let _ = p.child.wait();
            }
        }
        for p in self.proxies.values_mut() {
            p.stop();
        }
        if panicking {
            eprintln!("test failed; {}{}", self.describe(), self.log_tails());
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("cluster data and logs kept in {}", kept.display());
            }
        }
    }
}

// ---- Raft status view --------------------------------------------------------------------

/// What the tests need from a RAFT_STATUS answer, read leniently.
#[derive(Clone, Debug)]
pub struct RaftView {
    pub node_id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub commit: u64,
    pub applied: Option<u64>,
    pub last_index: Option<u64>,
    pub role: Option<String>,
    /// (follower id, matched index) as the leader sees it.
    pub progress: Vec<(u64, u64)>,
    pub raw: Value,
}

/// The first of `names` present in `v`.
fn field<'a>(v: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| v.get(*n).filter(|x| !x.is_null()))
}

fn num(v: &Value, names: &[&str]) -> Option<u64> {
    field(v, names).and_then(|x| x.as_u64().or_else(|| x.as_str().and_then(|s| s.parse().ok())))
}

impl RaftView {
    pub fn parse(raw: Value) -> Result<RaftView, String> {
        let s = raw.get("status").ok_or_else(|| format!("no `status` in {raw}"))?;
        let node_id = num(&raw, &["nodeId", "node_id"]).or_else(|| num(s, &["id", "nodeId"])).ok_or("no node id")?;
        let leader = num(s, &["leader", "leaderId", "leader_id"]).filter(|l| *l != 0);
        let term = num(s, &["term"]).ok_or_else(|| format!("no term in {s}"))?;
        let commit = num(s, &["commit", "commitIndex", "commit_index"]).ok_or_else(|| format!("no commit in {s}"))?;
        let applied = num(s, &["applied", "appliedIndex", "applied_index"]);
        let last_index = num(s, &["lastIndex", "last_index"]);
        let role = field(s, &["role", "state", "raftState", "raft_state"]).map(|r| match r {
            Value::String(x) => x.clone(),
            other => other.to_string(),
        });
        let mut progress = Vec::new();
        if let Some(Value::Array(ps)) = field(s, &["progress", "peers", "followers"]) {
            for p in ps {
                if let (Some(id), Some(m)) = (num(p, &["id", "nodeId"]), num(p, &["matched", "match", "matchIndex"])) {
                    progress.push((id, m));
                }
            }
        }
        Ok(RaftView { node_id, leader, term, commit, applied, last_index, role, progress, raw })
    }

    /// Whether this node says it leads: its role when given, else leader == itself.
    pub fn is_leader(&self) -> bool {
        match &self.role {
            Some(r) => r.eq_ignore_ascii_case("leader"),
            None => self.leader == Some(self.node_id),
        }
    }
}

// ---- a minimal remoting client (JSON headers) -----------------------------------------------

/// One answer frame, decoded.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: i64,
    pub remark: Option<String>,
    pub ext: serde_json::Map<String, Value>,
    pub body: Vec<u8>,
}

/// Sends one JSON-header request on a fresh connection and reads its answer (bounded by
/// `timeout` for the connect and for the answer). Requests the server sends meanwhile
/// are skipped (bounded).
pub fn call_json(
    addr: &str,
    code: i32,
    ext: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
) -> Result<Answer, String> {
    let sa: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let _ = s.set_nodelay(true);
    let mut fields = serde_json::Map::new();
    for (k, v) in ext {
        fields.insert(k.to_string(), Value::String(v.clone()));
    }
    let opaque = 7;
    let header = serde_json::json!({
        "code": code, "language": "RUST", "version": 500, "opaque": opaque, "flag": 0,
        "extFields": fields, "serializeTypeCurrentRPC": "JSON",
    });
    let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let mut frame = Vec::with_capacity(8 + header.len() + body.len());
    frame.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);
    s.write_all(&frame).map_err(|e| format!("write to {addr}: {e}"))?;
    let deadline = Instant::now() + timeout;
    // A few server-initiated requests at most could come first on a fresh connection.
    for _ in 0..8 {
        let mut len = [0u8; 8];
        s.read_exact(&mut len).map_err(|e| format!("read from {addr}: {e}"))?;
        let total = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let mark = u32::from_be_bytes([len[4], len[5], len[6], len[7]]);
        let hlen = (mark & 0x00FF_FFFF) as usize;
        if total > FRAME_MAX_BYTES || hlen + 4 > total {
            return Err(format!("bad frame from {addr}: length {total}, header {hlen}"));
        }
        if mark >> 24 != 0 {
            return Err(format!("{addr} answered a JSON request with serialize type {}", mark >> 24));
        }
        let mut rest = vec![0u8; total - 4];
        s.read_exact(&mut rest).map_err(|e| format!("read from {addr}: {e}"))?;
        let h: Value = serde_json::from_slice(&rest[..hlen]).map_err(|e| format!("answer header: {e}"))?;
        let is_response = h.get("flag").and_then(Value::as_i64).unwrap_or(0) & 1 == 1;
        if !is_response || h.get("opaque").and_then(Value::as_i64) != Some(opaque) {
            if Instant::now() >= deadline {
                break;
            }
            continue;
        }
        return Ok(Answer {
            code: h.get("code").and_then(Value::as_i64).unwrap_or(-1),
            remark: h.get("remark").and_then(Value::as_str).map(str::to_string),
            ext: h.get("extFields").and_then(Value::as_object).cloned().unwrap_or_default(),
            body: rest[hlen..].to_vec(),
        });
    }
    Err(format!("no answer to request code {code} from {addr}"))
}

/// UPDATE_AND_CREATE_TOPIC (code 17) with `queues` read/write queues and a flush mode,
/// sent to one shard (the leader's, in a replicated group).
pub fn create_topic(addr: &str, topic: &str, queues: u32, flush: &str) -> Result<(), String> {
    let ext = [
        ("topic", topic.to_string()),
        ("defaultTopic", "TBW102".to_string()),
        ("readQueueNums", queues.to_string()),
        ("writeQueueNums", queues.to_string()),
        ("perm", "6".to_string()),
        ("topicFilterType", "SINGLE_TAG".to_string()),
        ("topicSysFlag", "0".to_string()),
        ("order", "false".to_string()),
        ("attributes", format!("+flush.mode={flush}")),
    ];
    let a = call_json(addr, 17, &ext, &[], Duration::from_secs(10))?;
    if a.code != 0 {
        return Err(format!("creating {topic} on {addr}: code {} {:?}", a.code, a.remark));
    }
    Ok(())
}

// ---- the fault proxy -----------------------------------------------------------------------

struct ProxyInner {
    blocked: bool,
    next_id: u64,
    /// Relayed connections by id: (inbound, outbound) clones, to shut down on block.
    live: HashMap<u64, (TcpStream, TcpStream)>,
}

struct ProxyState {
    inner: Mutex<ProxyInner>,
    stop: AtomicBool,
    relayed: AtomicU64,
}

impl ProxyState {
    fn lock(&self) -> MutexGuard<'_, ProxyInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Relays loopback connections from `base + i` to `target + i`, for one ordered node pair.
pub struct Proxy {
    pub from: usize,
    pub to: usize,
    pub base: u16,
    state: Arc<ProxyState>,
    threads: Vec<JoinHandle<()>>,
}

impl Proxy {
    fn start(from: usize, to: usize, base: u16, listeners: Vec<TcpListener>, target: u16) -> Proxy {
        let state = Arc::new(ProxyState {
            inner: Mutex::new(ProxyInner { blocked: false, next_id: 0, live: HashMap::new() }),
            stop: AtomicBool::new(false),
            relayed: AtomicU64::new(0),
        });
        let mut threads = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let state = state.clone();
            let target: SocketAddr = SocketAddr::from(([127, 0, 0, 1], target + i as u16));
            threads.push(std::thread::spawn(move || accept_loop(l, target, state)));
        }
        Proxy { from, to, base, state, threads }
    }

    /// Shuts every relayed connection and closes new ones until [`Proxy::heal`]. Once this
    /// returns, no byte written after it crosses the proxy.
    pub fn block(&self) {
        let mut inner = self.state.lock();
        inner.blocked = true;
        for (_, (a, b)) in inner.live.drain() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.state.lock().blocked = false;
    }

    fn stop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.block();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, state: Arc<ProxyState>) {
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    while !state.stop.load(Ordering::SeqCst) {
        let inbound = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(PROXY_POLL);
                continue;
            }
            Err(_) => {
                std::thread::sleep(PROXY_POLL);
                continue;
            }
        };
        if state.lock().blocked {
            let _ = inbound.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(outbound) = TcpStream::connect_timeout(&target, PROXY_CONNECT_TIMEOUT) else {
            let _ = inbound.shutdown(Shutdown::Both);
            continue;
        };
        let _ = inbound.set_nonblocking(false);
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let clones = (inbound.try_clone(), outbound.try_clone(), inbound.try_clone(), outbound.try_clone());
        let (Ok(in2), Ok(out2), Ok(in3), Ok(out3)) = clones else { continue };
        // Registered under the same lock `block` takes: a block either sees this
        // connection and shuts it, or happened before and this one is closed here.
        let id = {
            let mut inner = state.lock();
            if inner.blocked {
                let _ = inbound.shutdown(Shutdown::Both);
                let _ = outbound.shutdown(Shutdown::Both);
                continue;
            }
            inner.next_id += 1;
            let id = inner.next_id;
            inner.live.insert(id, (in3, out3));
            id
        };
        let (s1, s2) = (state.clone(), state.clone());
        std::thread::spawn(move || pump(inbound, out2, id, s1));
        std::thread::spawn(move || pump(outbound, in2, id, s2));
    }
}

/// Copies `from` to `to` until either side ends, the proxy is blocked or stopped.
fn pump(mut from: TcpStream, mut to: TcpStream, id: u64, state: Arc<ProxyState>) {
    let _ = from.set_read_timeout(Some(PROXY_POLL));
    // A receiver that stops reading must not hold the lock (and so `block`) for long.
    let _ = to.set_write_timeout(Some(PROXY_WRITE_TIMEOUT));
    let mut buf = vec![0u8; PROXY_BUFFER_BYTES];
    loop {
        if state.stop.load(Ordering::SeqCst) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Checked under the lock so nothing read before a block is written after it.
                let inner = state.lock();
                if inner.blocked || !inner.live.contains_key(&id) {
                    break;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                drop(inner);
                state.relayed.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    state.lock().live.remove(&id);
}
