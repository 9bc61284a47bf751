//! Harness for the real-client compatibility tests.
//!
//! Owns three things the tests in `tests/` share:
//! - [`Broker`]: one `rockshard broker` child process with its own temporary data
//!   directory and free loopback ports, started with the embedded NameServer. It is
//!   ready once it printed its `ready:` line; it is killed by pid when dropped, also
//!   while a test panics (then its data directory and log are kept and their paths
//!   printed).
//! - [`Clients`]: the runtime the `rocketmq-client-rust` client requires (a
//!   `RuntimeOwner`, a `ClientRuntime`, a no-op telemetry handle); a test body runs on
//!   it under a time limit.
//! - [`Recorder`] and listeners: what each consumer received, with enough detail
//!   (member, queue, offset, reconsume count, time) for the tests to check counts,
//!   duplicates, order, retries and timing.
//!
//! Invariants: every wait here is bounded in time and in iterations; nothing talks to
//! anything but 127.0.0.1; the broker process is always killed by its own pid.
//!
//! Threads: [`Broker`] runs on the test thread plus two log-draining threads per broker;
//! listeners run on the client runtime's worker threads, so [`Recorder`] is behind a
//! mutex.
//!
//! Deliberately not here: any knowledge of the broker's internals. The tests see the
//! broker only through its command line, its `ready:` line, and the RocketMQ protocol
//! as the real client speaks it.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientConfig, ClientResult, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, ConsumeOrderlyContext, ConsumeOrderlyStatus, MessageListenerConcurrently,
    MessageListenerOrderly,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_observability::TelemetryRuntimeGuard;
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

/// Shards every test broker runs: two, so every topic spans two "brokers" in the route
/// (`<name>-s0`, `<name>-s1`) and the client's cross-broker paths are exercised.
pub const SHARDS: u16 = 2;

/// How long a broker may take from spawn to its `ready:` line. Start-up is recovery of
/// an empty directory plus one registration per shard; 30 s leaves room for a loaded
/// 2-core machine.
pub const BROKER_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one `rockshard admin` invocation may take before it is killed.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a running admin command is checked for exit.
const ADMIN_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Attempts at finding a block of free consecutive loopback ports before giving up.
const PORT_SEARCH_ATTEMPTS_MAX: usize = 200;

/// Poll period of every "wait until" loop: short against the waits' deadlines, long
/// enough not to burn a core.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Lines of the broker log shown in a failure message.
const LOG_TAIL_LINES: usize = 60;

/// Ports handed out by this process, so two tests running at once never pick the same
/// ones between "found free" and "bound by the broker".
static PORTS_TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// Serializes the tests of one binary: each starts its own broker, and on a 2-core
/// machine two brokers plus two client runtimes at once distort the timing checks
/// (delay window, long-poll wake-ups) without testing anything more.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the process-wide test lock; a test that panicked while holding it does not
/// fail the others.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Installs a log subscriber for the client's `tracing` events when `RUST_LOG` is set,
/// once per process. Without `RUST_LOG` the client stays silent. The broker child
/// inherits `RUST_LOG` too, so e.g. `RUST_LOG=rocketmq_client_rust=info,rockshard=debug`
/// logs both sides (the broker's part lands in its log file).
pub fn init_client_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    });
}

/// A name unique to this process and call, for topics and groups: a rerun never meets
/// state (for example broadcasting consumers' local offset files) of an earlier run.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000)
        .unwrap_or(0);
    format!("{prefix}_{}_{nanos}_{n}", std::process::id())
}

/// The broker binary: `ROCKSHARD_BIN`, else `<repo>/target/debug/rockshard`.
pub fn broker_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ROCKSHARD_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "ROCKSHARD_BIN={} does not name a file; build the broker with `cargo build -p rockshard` \
             in the repository root, or point ROCKSHARD_BIN at a built `rockshard` binary",
            path.display()
        );
        return path;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/rockshard");
    assert!(
        path.is_file(),
        "no broker binary at {}: build it with `cargo build -p rockshard` in the repository root, \
         or set ROCKSHARD_BIN to a built `rockshard` binary",
        path.display()
    );
    path
}

/// Finds `count` consecutive free loopback ports: bind port 0 to get a candidate from
/// the kernel, then check the ports after it by binding them too. The listeners are
/// closed before returning; [`PORTS_TAKEN`] keeps this process from reusing them.
pub fn free_ports(count: u16) -> u16 {
    assert!(count >= 1);
    for _ in 0..PORT_SEARCH_ATTEMPTS_MAX {
        let Ok(first) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = first.local_addr() else { continue };
        let base = addr.port();
        if u32::from(base) + u32::from(count) > u32::from(u16::MAX) {
            continue;
        }
        let mut held = vec![first];
        let mut all_free = true;
        for port in base + 1..base + count {
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(listener) => held.push(listener),
                Err(_) => {
                    all_free = false;
                    break;
                }
            }
        }
        if !all_free {
            continue;
        }
        let mut taken = PORTS_TAKEN.lock().unwrap_or_else(|p| p.into_inner());
        if (base..base + count).any(|p| taken.contains(&p)) {
            continue;
        }
        taken.extend(base..base + count);
        return base;
    }
    panic!("found no {count} consecutive free loopback ports in {PORT_SEARCH_ATTEMPTS_MAX} attempts");
}

/// A running `rockshard broker` with its embedded NameServer.
pub struct Broker {
    child: Child,
    /// `Some` until drop; kept on disk (and printed) if the test panicked.
    data_dir: Option<tempfile::TempDir>,
    log_path: PathBuf,
    namesrv_addr: String,
    base_port: u16,
    ready_line: String,
}

impl Broker {
    /// Starts a broker with [`SHARDS`] shards and default settings (auto-create on).
    pub fn start() -> Broker {
        Broker::start_with(&[])
    }

    /// Starts a broker with extra command-line arguments appended.
    pub fn start_with(extra_args: &[&str]) -> Broker {
        let binary = broker_binary();
        let data_dir =
            tempfile::Builder::new().prefix("rockshard-compat-").tempdir().expect("create a temporary data directory");
        let log_path = data_dir.path().join("broker.log");
        let base_port = free_ports(SHARDS);
        let namesrv_port = free_ports(1);
        let namesrv_addr = format!("127.0.0.1:{namesrv_port}");
        let store_dir = data_dir.path().join("data");

        let mut command = Command::new(&binary);
        command
            .arg("broker")
            .arg("--data-dir")
            .arg(&store_dir)
            .arg("--shards")
            .arg(SHARDS.to_string())
            .arg("--listen-ip")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(base_port.to_string())
            .arg("--namesrv-listen")
            .arg(&namesrv_addr)
            // The test shares two cores with the client runtime and other work.
            .arg("--pin-cores")
            .arg("false")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let command_line = format!("{command:?}");
        let mut child = command.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));

        // Both pipes are drained into one log file for the broker's whole life, so it
        // can never block on a full pipe; stdout lines are also forwarded to find the
        // `ready:` line.
        let log = Arc::new(Mutex::new(File::create(&log_path).expect("create the broker log file")));
        if let Ok(mut file) = log.lock() {
            let _ = writeln!(file, "# {command_line}");
        }
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        spawn_log_drain(stdout, Arc::clone(&log), Some(ready_tx));
        spawn_log_drain(stderr, Arc::clone(&log), None);

        let mut broker =
            Broker { child, data_dir: Some(data_dir), log_path, namesrv_addr, base_port, ready_line: String::new() };
        let deadline = Instant::now() + BROKER_READY_TIMEOUT;
        // Each round waits at most POLL_INTERVAL, so this count outlasts the deadline.
        let rounds_max = BROKER_READY_TIMEOUT.as_millis() / POLL_INTERVAL.as_millis() + 10;
        for round in 0.. {
            assert!(round < rounds_max, "broker readiness loop ran {rounds_max} rounds");
            match ready_rx.recv_timeout(POLL_INTERVAL) {
                Ok(line) if line.starts_with("ready:") => {
                    broker.ready_line = line;
                    break;
                }
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is exiting. Give it a moment to be reaped.
                    std::thread::sleep(POLL_INTERVAL);
                    let status = broker.child.try_wait().ok().flatten();
                    panic!(
                        "broker closed its stdout before printing `ready:` (exit status {status:?}); log {}:\n{}",
                        broker.log_path.display(),
                        broker.log_tail()
                    );
                }
            }
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!(
                    "broker exited with {status} before printing `ready:`; log {}:\n{}",
                    broker.log_path.display(),
                    broker.log_tail()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "broker printed no `ready:` line within {BROKER_READY_TIMEOUT:?}; log {}:\n{}",
                    broker.log_path.display(),
                    broker.log_tail()
                );
            }
        }
        println!("broker up: {} (log {})", broker.ready_line, broker.log_path.display());
        broker
    }

    /// The embedded NameServer's address, `127.0.0.1:port`.
    pub fn namesrv_addr(&self) -> &str {
        &self.namesrv_addr
    }

    /// Shard 0's port; shard i listens on `base_port + i`.
    pub fn base_port(&self) -> u16 {
        self.base_port
    }

    /// The broker's `ready:` line.
    pub fn ready_line(&self) -> &str {
        &self.ready_line
    }

    /// Where the broker's stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last lines of the broker log, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines[start..].join("\n")
    }

    /// Runs `rockshard admin <args...>` against this broker's NameServer: the
    /// `--namesrv ADDR` option is inserted after the subcommand words given in
    /// `subcommand` (e.g. `["topic", "create"]`). Returns stdout; panics with the
    /// output when the command fails or exceeds [`ADMIN_TIMEOUT`].
    pub fn admin(&self, subcommand: &[&str], args: &[&str]) -> String {
        let binary = broker_binary();
        let mut command = Command::new(&binary);
        command
            .arg("admin")
            .args(subcommand)
            .arg("--namesrv")
            .arg(&self.namesrv_addr)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let command_line = format!("{command:?}");
        let mut child = command.spawn().unwrap_or_else(|e| panic!("spawn {command_line}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let out_reader = std::thread::spawn(move || read_all(stdout));
        let err_reader = std::thread::spawn(move || read_all(stderr));
        let deadline = Instant::now() + ADMIN_TIMEOUT;
        let mut status = None;
        // Each round sleeps ADMIN_POLL_INTERVAL, so this count outlasts the deadline.
        let rounds_max = ADMIN_TIMEOUT.as_millis() / ADMIN_POLL_INTERVAL.as_millis() + 10;
        for _ in 0..rounds_max {
            if let Ok(Some(exit)) = child.try_wait() {
                status = Some(exit);
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(ADMIN_POLL_INTERVAL);
        }
        if status.is_none() {
            // Still running: kill it by its own pid and reap it.
            let _ = child.kill();
            let _ = child.wait();
        }
        let out = out_reader.join().unwrap_or_default();
        let err = err_reader.join().unwrap_or_default();
        match status {
            Some(status) if status.success() => out,
            Some(status) => panic!(
                "{command_line} failed with {status}\nstdout:\n{out}\nstderr:\n{err}\nbroker log {}:\n{}",
                self.log_path.display(),
                self.log_tail()
            ),
            None => panic!("{command_line} did not finish within {ADMIN_TIMEOUT:?}\nstdout:\n{out}\nstderr:\n{err}"),
        }
    }

    /// Creates `topic` with `queues` queues and the given flush mode (`sync`/`async`)
    /// with the admin command.
    pub fn create_topic(&self, topic: &str, queues: u32, flush: &str) -> String {
        let out =
            self.admin(&["topic", "create"], &["--topic", topic, "--queues", &queues.to_string(), "--flush", flush]);
        println!("created topic {topic} (queues {queues}, flush {flush}): {}", out.trim());
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Child::kill sends SIGKILL to this child's own pid; wait reaps it so no zombie
        // is left. After SIGKILL the wait returns promptly.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = self.data_dir.take() {
            if std::thread::panicking() {
                let kept = dir.keep();
                eprintln!(
                    "test failed: broker data kept in {}, broker log {}",
                    kept.display(),
                    self.log_path.display()
                );
            }
        }
    }
}

fn spawn_log_drain<R: Read + Send + 'static>(stream: R, log: Arc<Mutex<File>>, forward: Option<mpsc::Sender<String>>) {
    std::thread::spawn(move || {
        // Ends when the broker closes the stream (it exited or was killed).
        let reader = BufReader::new(stream);
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if let Ok(mut file) = log.lock() {
                let _ = writeln!(file, "{line}");
            }
            if let Some(tx) = &forward {
                let _ = tx.send(line);
            }
        }
    });
}

fn read_all<R: Read>(mut stream: R) -> String {
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// The runtime the client needs, owned by one test.
pub struct Clients {
    owner: Option<RuntimeOwner>,
    runtime: Arc<ClientRuntime>,
    _telemetry: TelemetryRuntimeGuard,
}

/// Worker threads of the client runtime: the client's background tasks (pull, rebalance,
/// heartbeats, consume pools) are async, so a few threads suffice on this machine.
const CLIENT_WORKER_THREADS: usize = 4;

/// Blocking threads of the client runtime: enough for [`CLIENT_LANE_CONCURRENCY`] on
/// two lanes.
const CLIENT_BLOCKING_THREADS: usize = 96;

/// Consume threads of each push consumer the tests start (the client's default is 64,
/// more than this machine's two cores can use).
pub const CONSUME_THREADS_MAX: u32 = 16;

/// Listener calls running at once: room for two consumers at [`CONSUME_THREADS_MAX`]
/// each, plus a third (the restart test's probe) starting.
const CLIENT_LANE_CONCURRENCY: usize = 40;

/// Listener calls waiting for a thread: far more than the consumers ever have in flight.
const CLIENT_LANE_QUEUE_DEPTH: usize = 4_096;

/// How long the client runtime may take to shut down after a test body.
const CLIENT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(15);

impl Clients {
    pub fn new(name: &str) -> Clients {
        init_client_logs();
        let mut config = RuntimeConfig {
            worker_threads: CLIENT_WORKER_THREADS,
            thread_name: format!("compat-{name}"),
            max_blocking_threads: CLIENT_BLOCKING_THREADS,
            ..RuntimeConfig::default()
        };
        // The client runs every listener call on the metadata-io blocking lane. Sized for
        // 2 cores by default (4 running, 16 queued), that lane rejects calls when two busy
        // consumers exceed it ("runtime.capacity.exhausted"), and the client then treats
        // the unrun listener as failed and sends the message to the retry topic. The tests
        // size the lane for their consumers (see [`CONSUME_THREADS_MAX`]) so that never
        // happens.
        let lanes = &mut config.blocking_lane_policies;
        for lane in [&mut lanes.metadata_io, &mut lanes.storage_io] {
            lane.max_concurrency = CLIENT_LANE_CONCURRENCY;
            lane.max_queue_depth = CLIENT_LANE_QUEUE_DEPTH;
        }
        let owner = RuntimeOwner::plan(config)
            .expect("a valid client runtime configuration")
            .build()
            .expect("build the client runtime");
        let telemetry = TelemetryRuntimeGuard::noop();
        let runtime = ClientRuntime::try_new(
            owner.root_context().component("compat-client"),
            ClientRuntimeConfig::default(),
            telemetry.handle(),
        )
        .expect("create the client runtime");
        Clients { owner: Some(owner), runtime, _telemetry: telemetry }
    }

    pub fn runtime(&self) -> Arc<ClientRuntime> {
        Arc::clone(&self.runtime)
    }

    /// Runs `body` on the client runtime; panics if it takes longer than `limit`.
    pub fn run<F: Future>(&self, limit: Duration, body: F) -> F::Output {
        let owner = self.owner.as_ref().expect("runtime owner present until drop");
        // The timer must be created inside the runtime, hence the async block.
        match owner.block_on(async move { tokio::time::timeout(limit, body).await }) {
            Ok(output) => output,
            Err(_) => panic!("test body did not finish within {limit:?}"),
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        let Some(owner) = self.owner.take() else { return };
        if !std::thread::panicking() {
            let runtime = Arc::clone(&self.runtime);
            let report = owner
                .block_on(async move { tokio::time::timeout(CLIENT_SHUTDOWN_TIMEOUT, runtime.shutdown()).await.ok() });
            match report {
                Some(report) if !report.is_healthy() => {
                    eprintln!("client runtime shutdown report: {}", report.to_json())
                }
                Some(_) => {}
                None => eprintln!("client runtime did not shut down within {CLIENT_SHUTDOWN_TIMEOUT:?}"),
            }
        }
        // Never blocks: tasks still running are cancelled in the background.
        let _ = owner.shutdown_background();
    }
}

/// A client configuration on loopback with an explicit instance name. Two consumers of
/// one group in one process need different instance names, or they share one client id
/// and the group sees a single member.
pub fn client_config(namesrv_addr: &str, instance_name: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set_namesrv_addr(namesrv_addr.into());
    config.set_instance_name(instance_name.into());
    config.set_client_ip("127.0.0.1".into());
    config
}

/// Body of test message `index`: `"<prefix>#<index>"`; [`message_index`] reads it back.
pub fn message_body(prefix: &str, index: u64) -> Vec<u8> {
    format!("{prefix}#{index}").into_bytes()
}

/// The index encoded by [`message_body`], if the body has that form.
pub fn message_index(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let (_, index) = text.rsplit_once('#')?;
    index.parse().ok()
}

/// One delivery of one message to one consumer.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Which consumer (the test's numbering).
    pub member: usize,
    /// From the body, see [`message_index`]; `None` for foreign bodies.
    pub index: Option<u64>,
    /// The message's topic as the listener sees it (retries show the original topic).
    pub topic: String,
    /// The queue the message was pulled from (for retries: `%RETRY%<group>`).
    pub queue_topic: String,
    pub broker_name: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub reconsume_times: i32,
    pub tags: Option<String>,
    pub born_timestamp_ms: i64,
    pub store_timestamp_ms: i64,
    pub properties: BTreeMap<String, String>,
    pub received_at: Instant,
}

impl Delivery {
    fn from_message(member: usize, queue_topic: &str, msg: &MessageExt) -> Delivery {
        let body = msg.body().unwrap_or_default();
        Delivery {
            member,
            index: message_index(&body),
            topic: msg.topic().to_string(),
            queue_topic: queue_topic.to_string(),
            broker_name: msg.broker_name().to_string(),
            queue_id: msg.queue_id(),
            queue_offset: msg.queue_offset(),
            reconsume_times: msg.reconsume_times(),
            tags: msg.get_tags().map(|t| t.to_string()),
            born_timestamp_ms: msg.born_timestamp(),
            store_timestamp_ms: msg.store_timestamp(),
            properties: msg.properties().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            received_at: Instant::now(),
        }
    }

    /// `(brokerName, queueId)` of the queue the message came from.
    pub fn queue(&self) -> (String, i32) {
        (self.broker_name.clone(), self.queue_id)
    }
}

/// Everything the consumers of one test received, in arrival order.
#[derive(Default)]
pub struct Recorder {
    deliveries: Mutex<Vec<Delivery>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    pub fn record(&self, delivery: Delivery) {
        self.lock().push(delivery);
    }

    pub fn record_message(&self, member: usize, queue_topic: &str, msg: &MessageExt) {
        self.record(Delivery::from_message(member, queue_topic, msg));
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Delivery>> {
        self.deliveries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of all deliveries so far.
    pub fn snapshot(&self) -> Vec<Delivery> {
        self.lock().clone()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Distinct message indexes received (by any member).
    pub fn distinct_indexes(&self) -> HashSet<u64> {
        self.lock().iter().filter_map(|d| d.index).collect()
    }

    /// Distinct message indexes received by `member`.
    pub fn distinct_indexes_of(&self, member: usize) -> HashSet<u64> {
        self.lock().iter().filter(|d| d.member == member).filter_map(|d| d.index).collect()
    }

    /// Deliveries beyond the first of each index (over all members).
    pub fn duplicate_count(&self) -> usize {
        let deliveries = self.lock();
        let with_index = deliveries.iter().filter(|d| d.index.is_some()).count();
        let distinct: HashSet<u64> = deliveries.iter().filter_map(|d| d.index).collect();
        with_index - distinct.len()
    }
}

/// Concurrent listener that records each message and answers a fixed status.
pub struct RecordingListener {
    pub member: usize,
    pub recorder: Arc<Recorder>,
    pub status: ConsumeConcurrentlyStatus,
}

impl MessageListenerConcurrently for RecordingListener {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let queue_topic = context.get_message_queue().topic().to_string();
        for msg in msgs {
            self.recorder.record_message(self.member, &queue_topic, msg);
        }
        Ok(self.status)
    }
}

/// Orderly listener that records each message and answers success.
pub struct OrderlyRecordingListener {
    pub member: usize,
    pub recorder: Arc<Recorder>,
}

impl MessageListenerOrderly for OrderlyRecordingListener {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        context: &mut ConsumeOrderlyContext,
    ) -> ClientResult<ConsumeOrderlyStatus> {
        let queue_topic = context.get_message_queue().topic().to_string();
        for msg in msgs {
            self.recorder.record_message(self.member, &queue_topic, msg);
        }
        Ok(ConsumeOrderlyStatus::Success)
    }
}

/// Polls `condition` every [`POLL_INTERVAL`] until it holds or `limit` passed; returns
/// whether it held. Bounded by time and, through the interval, by iteration count.
pub async fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    let iterations_max = (limit.as_millis() / POLL_INTERVAL.as_millis()).max(1) + 1;
    for _ in 0..iterations_max {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    condition()
}

/// Renders a list of missing indexes briefly for an assertion message.
pub fn describe_missing(expected: impl IntoIterator<Item = u64>, got: &HashSet<u64>) -> String {
    let missing: Vec<u64> = expected.into_iter().filter(|i| !got.contains(i)).collect();
    let shown: Vec<String> = missing.iter().take(20).map(|i| i.to_string()).collect();
    format!("{} missing (first: {}{})", missing.len(), shown.join(", "), if missing.len() > 20 { ", ..." } else { "" })
}
