//! The report: the per-second lines, the final summary people read, and the same figures
//! as JSON for machines (`--json FILE`).
//!
//! JSON shape (all latencies in microseconds, rates per second of the side's active time,
//! MB = 10^6 bytes of message bodies):
//!
//! ```text
//! { tool, version, command_line[], machine{cores, kernel, cpu}, config{...}, brokers[],
//!   started_at_unix_ms, warmup_s, elapsed_s, ended_by,
//!   produce|null: { messages, bytes, requests, active_s, msgs_per_s, mb_per_s,
//!                   latency_us{count,min,mean,p50,p90,p99,p99_9,p99_99,max},
//!                   errors_total, errors{"SYSTEM_BUSY (2)": n, "timeout": n, ...} },
//!   consume|null: same (latency = pull round trip of pulls that delivered),
//!   e2e_latency_us|null: {count,...,max}   (born timestamp → delivery; ms resolution),
//!   seconds: [ { elapsed_s, interval_s, produce|null{msgs_per_s, mb_per_s, p50_us, p99_us, errors},
//!                consume|null{...}, e2e_p50_us|null, e2e_p99_us|null } ] }
//! ```
//!
//! Warm-up: with `--warmup W` (`warmup_s`), the first W seconds are in none of the
//! figures: not in `produce`/`consume`/`e2e_latency_us`, not in `seconds` (whose
//! `elapsed_s` still count from the run's start, `started_at_unix_ms`), and `elapsed_s`
//! and `active_s` are measured from the end of the warm-up. The summary's first line
//! says so. `brokers` lists every address the run's routes named (a failover adds the
//! new master's).
//!
//! Pure: built from merged [`Snapshot`]s and times the caller measured.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::{Config, Workload};
use crate::stats::{Side, Snapshot};

const MB: f64 = 1_000_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    /// The time limit passed.
    Duration,
    /// The message count was reached (and, for e2e, everything sent was consumed).
    Count,
    /// Ctrl-C or SIGTERM.
    Interrupt,
    /// e2e: the consumers had not caught up with the producers when --drain ran out.
    DrainTimeout,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub p99_99: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles { count: 0, min: 0, mean: 0.0, p50: 0, p90: 0, p99: 0, p99_9: 0, p99_99: 0, max: 0 };
        }
        Percentiles {
            count: h.len(),
            min: h.min(),
            mean: (h.mean() * 10.0).round() / 10.0,
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            p99_99: h.value_at_quantile(0.9999),
            max: h.max(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    pub messages: u64,
    pub bytes: u64,
    pub requests: u64,
    /// Seconds from the start until this side's last request finished.
    pub active_s: f64,
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub latency_us: Percentiles,
    pub errors_total: u64,
    pub errors: BTreeMap<String, u64>,
}

impl SideReport {
    pub fn of(side: &Side, active_s: f64) -> SideReport {
        let per_s = |n: f64| if active_s > 0.0 { round2(n / active_s) } else { 0.0 };
        SideReport {
            messages: side.messages,
            bytes: side.bytes,
            requests: side.requests,
            active_s: round3(active_s),
            msgs_per_s: per_s(side.messages as f64),
            mb_per_s: per_s(side.bytes as f64 / MB),
            latency_us: Percentiles::of(&side.latency),
            errors_total: side.failures_total(),
            errors: side.failures.iter().map(|(f, n)| (f.to_string(), *n)).collect(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SecondSide {
    pub msgs_per_s: f64,
    pub mb_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecondReport {
    /// Seconds from the start to the end of this interval.
    pub elapsed_s: f64,
    /// Length of the interval (1 except for the last, partial one).
    pub interval_s: f64,
    pub produce: Option<SecondSide>,
    pub consume: Option<SecondSide>,
    pub e2e_p50_us: Option<u64>,
    pub e2e_p99_us: Option<u64>,
    /// A second of the warm-up: printed, never reported.
    #[serde(skip)]
    pub warmup: bool,
}

impl SecondReport {
    /// Marks the line as a warm-up second (or not).
    pub fn in_warmup(self, warmup: bool) -> SecondReport {
        SecondReport { warmup, ..self }
    }

    pub fn of(workload: Workload, snap: &Snapshot, elapsed_s: f64, interval_s: f64) -> SecondReport {
        let side = |s: &Side| {
            let per_s = |n: f64| if interval_s > 0.0 { round2(n / interval_s) } else { 0.0 };
            SecondSide {
                msgs_per_s: per_s(s.messages as f64),
                mb_per_s: per_s(s.bytes as f64 / MB),
                p50_us: quantile(&s.latency, 0.5),
                p99_us: quantile(&s.latency, 0.99),
                errors: s.failures_total(),
            }
        };
        let e2e = snap.e2e.as_ref().filter(|_| workload == Workload::E2e);
        SecondReport {
            elapsed_s: round3(elapsed_s),
            interval_s: round3(interval_s),
            produce: workload.produces().then(|| side(&snap.produce)),
            consume: workload.consumes().then(|| side(&snap.consume)),
            e2e_p50_us: e2e.map(|h| quantile(h, 0.5)),
            e2e_p99_us: e2e.map(|h| quantile(h, 0.99)),
            warmup: false,
        }
    }

    /// The line printed while running.
    pub fn line(&self) -> String {
        let mut out = format!("{:>8.2}s", self.elapsed_s);
        let side = |out: &mut String, name: &str, s: &SecondSide, latency: &str| {
            let _ = write!(
                out,
                "  {name} {:>9} msg/s {:>8.1} MB/s {latency} p50 {} p99 {} err {}",
                group_digits(s.msgs_per_s.round() as u64),
                s.mb_per_s,
                ms(s.p50_us),
                ms(s.p99_us),
                s.errors
            );
        };
        if let Some(p) = &self.produce {
            side(&mut out, "produce", p, "send");
        }
        if let Some(c) = &self.consume {
            match (self.e2e_p50_us, self.e2e_p99_us) {
                (Some(p50), Some(p99)) => {
                    let _ = write!(
                        out,
                        "  consume {:>9} msg/s {:>8.1} MB/s e2e p50 {} p99 {} err {}",
                        group_digits(c.msgs_per_s.round() as u64),
                        c.mb_per_s,
                        ms(p50),
                        ms(p99),
                        c.errors
                    );
                }
                _ => side(&mut out, "consume", c, "pull"),
            }
        }
        if self.warmup {
            out.push_str("  (warm-up)");
        }
        out
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub kernel: String,
    pub cpu: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|rest| rest.split_once(':')).map(|(_, v)| v.trim()))
            .unwrap_or("")
            .to_owned();
        Machine { cores, kernel, cpu }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub command_line: Vec<String>,
    pub machine: Machine,
    pub config: Config,
    /// Broker addresses the run's routes named: where it sent and pulled.
    pub brokers: Vec<String>,
    pub started_at_unix_ms: u64,
    /// Seconds at the start left out of every figure here.
    pub warmup_s: f64,
    /// Seconds from the end of the warm-up to the end of the run.
    pub elapsed_s: f64,
    pub ended_by: EndedBy,
    pub produce: Option<SideReport>,
    pub consume: Option<SideReport>,
    pub e2e_latency_us: Option<Percentiles>,
    pub seconds: Vec<SecondReport>,
}

/// What the run measured, as the caller hands it over (all of it after the warm-up).
pub struct Outcome {
    pub total: Snapshot,
    pub elapsed_s: f64,
    pub produce_active_s: f64,
    pub consume_active_s: f64,
    pub ended_by: EndedBy,
    pub seconds: Vec<SecondReport>,
    pub brokers: Vec<String>,
}

impl Report {
    pub fn build(config: &Config, command_line: Vec<String>, started_at_unix_ms: u64, outcome: Outcome) -> Report {
        let w = config.workload;
        Report {
            tool: "rockshard-bench",
            version: env!("CARGO_PKG_VERSION"),
            command_line,
            machine: Machine::describe(),
            config: config.clone(),
            brokers: outcome.brokers,
            started_at_unix_ms,
            warmup_s: config.warmup.as_secs_f64(),
            elapsed_s: round3(outcome.elapsed_s),
            ended_by: outcome.ended_by,
            produce: w.produces().then(|| SideReport::of(&outcome.total.produce, outcome.produce_active_s)),
            consume: w.consumes().then(|| SideReport::of(&outcome.total.consume, outcome.consume_active_s)),
            e2e_latency_us: (w == Workload::E2e).then(|| match &outcome.total.e2e {
                Some(h) => Percentiles::of(h),
                None => Percentiles::of(&crate::stats::new_histogram()),
            }),
            seconds: outcome.seconds,
        }
    }

    /// The summary printed at the end.
    pub fn summary(&self) -> String {
        let c = &self.config;
        let mut out = String::new();
        let mut setup = format!("topic {}", c.topic);
        if c.workload.produces() {
            let rate = c
                .rate
                .map_or("unlimited (closed loop)".to_owned(), |r| format!("{} msg/s (open loop)", group_digits(r)));
            let _ = write!(
                setup,
                ", {} B messages, batch {}, {} producers × {} in flight, rate {rate}",
                c.size_bytes, c.batch, c.producers, c.inflight
            );
        }
        if c.workload.consumes() {
            let _ = write!(setup, ", {} consumers from {}", c.consumers, name_of(&c.from));
        }
        let measured = if self.warmup_s > 0.0 {
            format!("{:.1} s measured after a {} s warm-up (not counted)", self.elapsed_s, self.warmup_s)
        } else {
            format!("{:.1} s", self.elapsed_s)
        };
        let _ = writeln!(
            out,
            "\nrockshard-bench {}: {measured}, ended by {}; {setup}, header {}, {} threads",
            name_of(&c.workload),
            name_of(&self.ended_by),
            name_of(&c.header),
            c.threads
        );
        let side = |out: &mut String, name: &str, s: &SideReport, latency: &str| {
            let _ = writeln!(
                out,
                "{name}: {} msgs, {} requests in {:.2} s: {} msg/s, {:.1} MB/s",
                group_digits(s.messages),
                group_digits(s.requests),
                s.active_s,
                group_digits(s.msgs_per_s.round() as u64),
                s.mb_per_s
            );
            let _ = writeln!(out, "  {latency}: {}", percentile_line(&s.latency_us));
            if s.errors.is_empty() {
                let _ = writeln!(out, "  errors: none");
            } else {
                let list: Vec<String> = s.errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
                let _ = writeln!(out, "  errors: {} ({})", s.errors_total, list.join(", "));
            }
        };
        if let Some(p) = &self.produce {
            side(&mut out, "produce", p, "send latency");
        }
        if let Some(cs) = &self.consume {
            side(&mut out, "consume", cs, "pull latency (pulls that delivered)");
        }
        if let Some(e2e) = &self.e2e_latency_us {
            let _ = writeln!(out, "e2e latency (born timestamp → delivery, ms resolution): {}", percentile_line(e2e));
        }
        out
    }
}

/// The name a value has in the JSON report (`e2e`, `drain_timeout`, `rocketmq`).
fn name_of<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

fn percentile_line(p: &Percentiles) -> String {
    if p.count == 0 {
        return "no samples".to_owned();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  p99.99 {}  max {}  ({} samples)",
        ms(p.p50),
        ms(p.p90),
        ms(p.p99),
        ms(p.p99_9),
        ms(p.p99_99),
        ms(p.max),
        group_digits(p.count)
    )
}

fn quantile(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

/// Microseconds shown as milliseconds with three decimals.
fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// 1234567 → "1,234,567".
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::args::Args;
    use crate::stats::{Failure, Stats};

    fn config(workload: &str) -> Config {
        Args::try_parse_from(["rockshard-bench", workload]).expect("parses").validate(2, "t").expect("valid")
    }

    fn measured() -> Snapshot {
        let mut s = Stats::default();
        for i in 1..=1000u64 {
            s.sent(2, 2048, Duration::from_micros(i));
        }
        s.produce_failed(Failure::Code(2));
        s.produce_failed(Failure::Code(2));
        s.produce_failed(Failure::Timeout);
        s.pulled(1500, 1_536_000, Duration::from_micros(800));
        for i in 1..=1500u64 {
            s.delivered(1000 * (i % 7 + 1));
        }
        s.total
    }

    #[test]
    fn json_report_has_every_documented_member_with_consistent_figures() {
        let cfg = config("e2e");
        let snap = measured();
        let second = SecondReport::of(cfg.workload, &snap, 1.0, 1.0);
        let outcome = Outcome {
            total: snap,
            elapsed_s: 2.5,
            produce_active_s: 2.0,
            consume_active_s: 2.5,
            ended_by: EndedBy::Count,
            seconds: vec![second],
            brokers: vec!["127.0.0.1:1".into()],
        };
        let report = Report::build(&cfg, vec!["rockshard-bench".into(), "e2e".into()], 7, outcome);
        let json: serde_json::Value = serde_json::to_value(&report).expect("serializes");
        for key in [
            "tool",
            "version",
            "command_line",
            "machine",
            "config",
            "brokers",
            "started_at_unix_ms",
            "warmup_s",
            "elapsed_s",
            "ended_by",
            "produce",
            "consume",
            "e2e_latency_us",
            "seconds",
        ] {
            assert!(json.get(key).is_some(), "missing `{key}` in {json}");
        }
        assert_eq!(json["ended_by"], "count");
        assert_eq!(json["config"]["workload"], "e2e");
        assert_eq!(json["config"]["header"], "json");
        let p = &json["produce"];
        assert_eq!(p["messages"], 2000);
        assert_eq!(p["requests"], 1000);
        assert_eq!(p["msgs_per_s"], 1000.0, "2000 messages over 2 s of producing");
        assert_eq!(p["mb_per_s"], 1.02, "2,048,000 bytes over 2 s");
        assert_eq!(p["errors_total"], 3);
        assert_eq!(p["errors"]["SYSTEM_BUSY (2)"], 2);
        assert_eq!(p["errors"]["timeout"], 1);
        let lat = &p["latency_us"];
        for key in ["count", "min", "mean", "p50", "p90", "p99", "p99_9", "p99_99", "max"] {
            assert!(lat.get(key).is_some(), "latency lacks `{key}`");
        }
        assert_eq!(lat["count"], 1000);
        // Uniform 1..=1000 µs: the median is 500 within the histogram's precision.
        let p50 = lat["p50"].as_u64().expect("number");
        assert!((499..=501).contains(&p50), "p50 {p50}");
        assert!(lat["p99"].as_u64() >= lat["p90"].as_u64());
        assert_eq!(lat["max"], 1000);
        assert_eq!(json["consume"]["messages"], 1500);
        assert_eq!(json["consume"]["msgs_per_s"], 600.0);
        assert_eq!(json["e2e_latency_us"]["count"], 1500);
        let s = &json["seconds"][0];
        assert_eq!(s["produce"]["msgs_per_s"], 2000.0);
        assert!(s["e2e_p99_us"].as_u64().expect("e2e second") >= 7000);
    }

    #[test]
    fn a_warmup_is_named_in_the_summary_and_the_report() {
        let cfg = Args::try_parse_from(["rockshard-bench", "produce", "--warmup", "5", "--duration", "10s"])
            .expect("parses")
            .validate(2, "t")
            .expect("valid");
        let outcome = Outcome {
            total: measured(),
            elapsed_s: 10.0,
            produce_active_s: 10.0,
            consume_active_s: 0.0,
            ended_by: EndedBy::Duration,
            seconds: Vec::new(),
            brokers: Vec::new(),
        };
        let report = Report::build(&cfg, Vec::new(), 0, outcome);
        assert!(
            report
                .summary()
                .contains("rockshard-bench produce: 10.0 s measured after a 5 s warm-up (not counted), ended by"),
            "{}",
            report.summary()
        );
        let json = serde_json::to_value(&report).expect("serializes");
        assert_eq!(json["warmup_s"], 5.0);
        assert_eq!(json["config"]["warmup"], 5.0);
        assert_eq!(json["produce"]["msgs_per_s"], 200.0, "2000 messages over the 10 measured seconds");
    }

    #[test]
    fn sides_a_workload_does_not_run_are_null() {
        let cfg = config("produce");
        let outcome = Outcome {
            total: measured(),
            elapsed_s: 1.0,
            produce_active_s: 1.0,
            consume_active_s: 0.0,
            ended_by: EndedBy::Duration,
            seconds: Vec::new(),
            brokers: Vec::new(),
        };
        let json = serde_json::to_value(Report::build(&cfg, Vec::new(), 0, outcome)).expect("serializes");
        assert!(json["consume"].is_null());
        assert!(json["e2e_latency_us"].is_null());
        assert!(json["produce"].is_object());
    }

    #[test]
    fn lines_and_summary_show_rates_latency_and_errors() {
        let cfg = config("e2e");
        let snap = measured();
        let line = SecondReport::of(cfg.workload, &snap, 3.0, 1.0).line();
        assert!(line.contains("3.00s"), "{line}");
        assert!(line.contains("2,000 msg/s"), "{line}");
        assert!(line.contains("e2e p50"), "{line}");
        assert!(line.contains("err 3"), "{line}");
        let outcome = Outcome {
            total: snap,
            elapsed_s: 1.0,
            produce_active_s: 1.0,
            consume_active_s: 1.0,
            ended_by: EndedBy::Duration,
            seconds: Vec::new(),
            brokers: Vec::new(),
        };
        let summary = Report::build(&cfg, Vec::new(), 0, outcome).summary();
        assert!(summary.contains("SYSTEM_BUSY (2): 2"), "{summary}");
        assert!(summary.contains("p99.99"), "{summary}");
        assert!(summary.contains("e2e latency"), "{summary}");
        assert!(summary.contains("rockshard-bench e2e: 1.0 s, ended by duration;"), "{summary}");
        assert!(!line.contains("warm-up"), "{line}");
        let warm = SecondReport::of(cfg.workload, &measured(), 1.0, 1.0).in_warmup(true);
        assert!(warm.line().ends_with("(warm-up)"), "{}", warm.line());
        assert!(serde_json::to_value(&warm).expect("serializes").get("warmup").is_none(), "warm-up is not a figure");
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1_234_567), "1,234,567");
    }
}
