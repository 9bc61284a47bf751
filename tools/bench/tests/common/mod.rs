//! What the load tool's integration tests share: where the broker binary is, and a
//! `rockshard-bench` child process that runs with `--json`, can be watched while it runs
//! (its output goes to a file) and is killed by its pid if a test drops it early.
//!
//! Invariants: every wait is bounded in time and in rounds; a [`BenchProcess`] never
//! outlives its guard (Drop kills and reaps it, also when a test panics).
//!
//! Runs on the test thread. Deliberately not here: starting brokers (`e2e.rs` has a
//! single broker; replicated groups come from the root crate's `tests/common/cluster.rs`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Longest any single bench run here may take (runs are limited to seconds by their own
/// options; this only guards against a hang).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(90);
/// Pause between looks at a running bench process or its output.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The `rockshard` binary: `$ROCKSHARD_BIN` when set, else `rockshard` next to this
/// crate's own binary (cargo puts every workspace binary in `<target>/<profile>/`;
/// `cargo test --workspace` builds it, `cargo build -p rockshard --bin rockshard` does it
/// alone).
pub fn broker_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ROCKSHARD_BIN") {
        return path.into();
    }
    let sibling = Path::new(env!("CARGO_BIN_EXE_rockshard-bench")).with_file_name("rockshard");
    assert!(
        sibling.exists(),
        "no broker binary at {}: run `cargo build -p rockshard --bin rockshard` (cargo test --workspace does), or set \
         ROCKSHARD_BIN",
        sibling.display()
    );
    sibling
}

/// A finished bench run.
pub struct Run {
    pub status: ExitStatus,
    /// stdout and stderr, interleaved as written.
    pub output: String,
    /// The `--json` report, if the run wrote one.
    pub report: Option<serde_json::Value>,
}

/// A running `rockshard-bench`, killed by its pid when dropped before it finished.
pub struct BenchProcess {
    child: Option<Child>,
    args: Vec<String>,
    out_path: PathBuf,
    json_path: PathBuf,
}

impl BenchProcess {
    /// Starts the bench with `args` plus `--json <dir>/<name>.json`; its output goes to
    /// `<dir>/<name>.out`.
    pub fn spawn(dir: &Path, name: &str, args: &[&str]) -> BenchProcess {
        let json_path = dir.join(format!("{name}.json"));
        let out_path = dir.join(format!("{name}.out"));
        let out = std::fs::File::create(&out_path).expect("output file");
        let err = out.try_clone().expect("output file");
        let child = Command::new(env!("CARGO_BIN_EXE_rockshard-bench"))
            .args(args)
            .arg("--json")
            .arg(&json_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("spawn rockshard-bench");
        BenchProcess { child: Some(child), args: args.iter().map(|a| a.to_string()).collect(), out_path, json_path }
    }

    /// What the process has written so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.out_path).unwrap_or_default()
    }

    /// Waits (bounded by `within`) until `check` holds for the output so far; false if
    /// it never did or the process ended first.
    pub fn wait_output(&mut self, within: Duration, check: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + within;
        let rounds = within.as_millis() / POLL_INTERVAL.as_millis() + 2;
        for _ in 0..rounds {
            if check(&self.output()) {
                return true;
            }
            let exited = match self.child.as_mut() {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => true,
            };
            if exited || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        check(&self.output())
    }

    /// Waits for the run to end (bounded by [`RUN_TIMEOUT`], past which it is killed and
    /// the test fails) and collects its output and report.
    pub fn finish(mut self) -> Run {
        let mut child = self.child.take().expect("finished once");
        let deadline = Instant::now() + RUN_TIMEOUT;
        let rounds = RUN_TIMEOUT.as_millis() / POLL_INTERVAL.as_millis() + 2;
        let mut status = None;
        for _ in 0..rounds {
            if let Some(s) = child.try_wait().expect("wait for rockshard-bench") {
                status = Some(s);
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rockshard-bench {:?} ran past {RUN_TIMEOUT:?}; output:\n{}", self.args, self.output());
        };
        let report = std::fs::read(&self.json_path)
            .ok()
            .map(|bytes| serde_json::from_slice(&bytes).expect("the report is JSON"));
        Run { status, output: self.output(), report }
    }
}

impl Drop for BenchProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the bench with `args` (plus `--json`) to its end, bounded by [`RUN_TIMEOUT`].
pub fn bench(dir: &Path, name: &str, args: &[&str]) -> Run {
    BenchProcess::spawn(dir, name, args).finish()
}

/// The unsigned number at `path` in `v`; panics with the whole value if it is not one.
pub fn number(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut at = v;
    for key in path {
        at = &at[*key];
    }
    at.as_u64().unwrap_or_else(|| panic!("{path:?} is not a number in {v}"))
}

/// The float at `path` in `v`.
pub fn float(v: &serde_json::Value, path: &[&str]) -> f64 {
    let mut at = v;
    for key in path {
        at = &at[*key];
    }
    at.as_f64().unwrap_or_else(|| panic!("{path:?} is not a number in {v}"))
}
