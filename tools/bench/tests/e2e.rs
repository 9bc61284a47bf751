//! `rockshard-bench` against a real `rockshard broker` process: produce, consume and e2e
//! runs whose JSON reports must agree with each other and with what was asked.
//!
//! The broker binary is `$ROCKSHARD_BIN` when set, else `rockshard` next to this crate's
//! own binary (see `common::broker_bin`).
//!
//! Everything runs on 127.0.0.1 with ports found free just before; every process is
//! killed by pid when its guard drops (also when a test panics), and every wait is
//! bounded.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{bench, broker_bin, float, number};

/// How long the broker may take to print `ready:`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Start attempts: a port found free can be taken by someone else before the broker binds it.
const START_ATTEMPTS: usize = 3;

/// Two consecutive free ports (the broker's two shards) and one for its NameServer.
fn free_ports() -> (u16, u16) {
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

/// A running broker, killed when dropped.
struct Broker {
    child: Child,
    dir: tempfile::TempDir,
    namesrv: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Broker {
    fn start() -> Broker {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Broker::try_start() {
                Ok(b) => return b,
                Err(e) => last = e,
            }
        }
        panic!("broker did not start in {START_ATTEMPTS} attempts; last: {last}");
    }

    fn try_start() -> Result<Broker, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let (port, ns_port) = free_ports();
        let log = std::fs::File::create(dir.path().join("broker.log")).map_err(|e| format!("log: {e}"))?;
        let mut child = Command::new(broker_bin())
            .arg("broker")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--shards", "2", "--pin-cores", "false", "--listen-ip", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--namesrv-listen", &format!("127.0.0.1:{ns_port}")])
            // Small segments: the test writes little, and preallocating 1 GiB twice is slow.
            .args(["--segment-size-bytes", &(64 << 20).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", broker_bin().display()))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, rx) = mpsc::channel::<String>();
        // Reads stdout so the wait for `ready:` can time out; ends with the process.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let broker = Broker { child, dir, namesrv: format!("127.0.0.1:{ns_port}") };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("ready:") => return Ok(broker),
                Ok(_) => {}
                Err(_) => return Err(format!("no `ready:` line; log:\n{}", broker.log())),
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }
}

#[test]
fn produce_then_consume_counts_agree_and_e2e_delivers_what_it_sends() {
    let broker = Broker::start();
    let work = tempfile::tempdir().expect("temp dir");
    let ns = broker.namesrv.as_str();

    // Produce exactly 2000 messages (batches of 4, binary headers), then read them back.
    let produce = bench(
        work.path(),
        "produce",
        &[
            "produce",
            "--namesrv",
            ns,
            "--topic",
            "BenchE2e",
            "--count",
            "2000",
            "--duration",
            "20s",
            "--size",
            "100",
            "--batch",
            "4",
            "--connections",
            "2",
            "--inflight",
            "4",
            "--threads",
            "1",
            "--header",
            "rocketmq",
            "--flush",
            "sync",
            "--tag",
            "TagA",
            "--keys",
        ],
    );
    assert!(produce.status.success(), "produce failed:\n{}\nbroker log:\n{}", produce.output, broker.log());
    let p = produce.report.expect("produce report");
    assert_eq!(p["ended_by"], "count", "{p}");
    assert_eq!(number(&p, &["produce", "messages"]), 2000, "{p}");
    assert_eq!(number(&p, &["produce", "requests"]), 500, "{p}");
    assert_eq!(number(&p, &["produce", "bytes"]), 200_000);
    assert_eq!(number(&p, &["produce", "errors_total"]), 0, "{p}");
    assert_eq!(number(&p, &["produce", "latency_us", "count"]), 500);
    assert!(p["consume"].is_null());

    let consume = bench(
        work.path(),
        "consume",
        &[
            "consume",
            "--namesrv",
            ns,
            "--topic",
            "BenchE2e",
            "--no-create",
            "--from",
            "earliest",
            "--count",
            "2000",
            "--duration",
            "20s",
            "--connections",
            "2",
            "--threads",
            "1",
            "--tag",
            "TagA",
        ],
    );
    assert!(consume.status.success(), "consume failed:\n{}\nbroker log:\n{}", consume.output, broker.log());
    let c = consume.report.expect("consume report");
    assert_eq!(c["ended_by"], "count", "{c}");
    assert_eq!(number(&c, &["consume", "messages"]), 2000, "every message produced, once: {c}");
    assert_eq!(number(&c, &["consume", "bytes"]), 200_000);
    assert_eq!(number(&c, &["consume", "errors_total"]), 0, "{c}");

    // Both at once for two seconds: everything acknowledged is delivered, each with a latency.
    let e2e = bench(
        work.path(),
        "e2e",
        &[
            "e2e",
            "--namesrv",
            ns,
            "--topic",
            "BenchE2eLive",
            "--duration",
            "2s",
            "--size",
            "64",
            "--rate",
            "2000",
            "--connections",
            "2",
            "--inflight",
            "8",
            "--threads",
            "2",
            "--drain",
            "10s",
        ],
    );
    assert!(e2e.status.success(), "e2e failed:\n{}\nbroker log:\n{}", e2e.output, broker.log());
    let e = e2e.report.expect("e2e report");
    let sent = number(&e, &["produce", "messages"]);
    assert!(sent > 1000, "an open-loop rate of 2000/s for 2 s sent only {sent}: {e}");
    assert_eq!(number(&e, &["consume", "messages"]), sent, "{e}");
    assert_eq!(number(&e, &["e2e_latency_us", "count"]), sent);
    assert_eq!(e["ended_by"], "duration", "{e}");
    assert!(e["seconds"].as_array().is_some_and(|s| s.len() >= 2), "per-second lines: {e}");
    assert!(e2e.output.contains("e2e p50"), "per-second lines printed:\n{}", e2e.output);
}

#[test]
fn unusable_setups_fail_with_a_reason_and_no_report() {
    // Nobody listens on a port we just freed.
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let work = tempfile::tempdir().expect("temp dir");
    let addr = format!("127.0.0.1:{port}");
    let run = bench(work.path(), "nons", &["produce", "--namesrv", &addr, "--duration", "1s", "--timeout", "1s"]);
    assert_eq!(run.status.code(), Some(1), "{}", run.output);
    assert!(run.output.contains(&addr), "the error names the NameServer: {}", run.output);
    assert!(run.report.is_none());
    let bad = bench(work.path(), "bad", &["produce", "--batch", "0"]);
    assert_eq!(bad.status.code(), Some(2), "{}", bad.output);
    assert!(bad.output.contains("--batch"), "{}", bad.output);
}

#[test]
fn warmup_seconds_run_but_are_left_out_of_the_summary_and_the_report() {
    let broker = Broker::start();
    let work = tempfile::tempdir().expect("temp dir");
    // Open loop at 500 msg/s: two seconds of warm-up, then two measured seconds. The whole
    // run sends about 2000 messages; the report may hold only the measured 1000 or so.
    let run = bench(
        work.path(),
        "warmup",
        &[
            "produce",
            "--namesrv",
            &broker.namesrv,
            "--topic",
            "BenchWarmup",
            "--warmup",
            "2",
            "--duration",
            "2s",
            "--rate",
            "500",
            "--size",
            "64",
            "--connections",
            "1",
            "--inflight",
            "8",
            "--threads",
            "1",
        ],
    );
    assert!(run.status.success(), "warm-up run failed:\n{}\nbroker log:\n{}", run.output, broker.log());
    let r = run.report.expect("report");
    assert_eq!(float(&r, &["warmup_s"]), 2.0, "{r}");
    assert_eq!(float(&r, &["config", "warmup"]), 2.0, "{r}");
    let measured = number(&r, &["produce", "messages"]);
    assert!(
        (500..=1500).contains(&measured),
        "500 msg/s for 2 measured seconds, but the report counts {measured}: {r}"
    );
    assert!(float(&r, &["produce", "active_s"]) < 3.0, "active time excludes the warm-up: {r}");
    assert!(float(&r, &["elapsed_s"]) < 3.5, "elapsed time excludes the warm-up: {r}");
    assert_eq!(number(&r, &["produce", "latency_us", "count"]), number(&r, &["produce", "requests"]));

    // The report's seconds are the measured ones only, and add up to the summary's count.
    let seconds = r["seconds"].as_array().expect("seconds");
    assert!(!seconds.is_empty(), "{r}");
    for s in seconds {
        assert!(float(s, &["elapsed_s"]) > 2.0, "a warm-up second is in the report: {s}");
    }
    let summed: f64 = seconds.iter().map(|s| float(s, &["produce", "msgs_per_s"]) * float(s, &["interval_s"])).sum();
    assert!((summed - measured as f64).abs() <= 2.0, "seconds add up to {summed}, the summary says {measured}: {r}");

    // The warm-up still ran, and the per-second lines show it as such.
    let warmup_lines: Vec<&str> = run.output.lines().filter(|l| l.ends_with("(warm-up)")).collect();
    assert_eq!(warmup_lines.len(), 2, "two warm-up lines expected:\n{}", run.output);
    assert!(warmup_lines.iter().all(|l| !l.contains(" 0 msg/s")), "the warm-up sends:\n{}", run.output);
    assert!(run.output.contains("after a 2 s warm-up"), "the summary names the warm-up:\n{}", run.output);
}
