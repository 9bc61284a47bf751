//! Command line of `rockshard-bench` and its validation into a [`Config`].
//!
//! Owns: every option, its default, and the checks that refuse a run that could not mean
//! what it says (a batch over the broker's message size, a rate for a consume-only run,
//! a flush mode for a topic the tool will not create, ...). Validation is pure, so it is
//! unit-tested without a broker.
//!
//! Invariant: a [`Config`] always describes a run that ends by itself: it has a duration
//! limit even when only a count was asked for ([`COUNT_RUN_DURATION_MAX_S`]).
//!
//! Runs on the main thread before any executor starts. Deliberately not here: what the
//! workloads do with the settings.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Serialize;

use crate::limits::{
    BATCH_BODY_MAX_BYTES, BATCH_MAX, CONNECTIONS_MAX, COUNT_RUN_DURATION_MAX_S, DURATION_DEFAULT_S, INFLIGHT_MAX,
    QUEUES_MAX, TAG_LEN_MAX_BYTES, THREADS_MAX, WARMUP_MAX_S,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Send messages.
    Produce,
    /// Pull messages with long polling.
    Consume,
    /// Produce and consume at once; latency from each message's born timestamp to its delivery.
    E2e,
}

impl Workload {
    pub fn produces(self) -> bool {
        matches!(self, Workload::Produce | Workload::E2e)
    }
    pub fn consumes(self) -> bool {
        matches!(self, Workload::Consume | Workload::E2e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushMode {
    Async,
    Sync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The queue's smallest readable offset.
    Earliest,
    /// The queue's end: only messages produced after the consumer started.
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderEncoding {
    /// JSON headers (the RocketMQ default).
    Json,
    /// The ROCKETMQ binary header encoding.
    Rocketmq,
}

impl HeaderEncoding {
    pub fn serialize_type(self) -> rockshard_net::SerializeType {
        match self {
            HeaderEncoding::Json => rockshard_net::SerializeType::Json,
            HeaderEncoding::Rocketmq => rockshard_net::SerializeType::RocketMq,
        }
    }
}

/// Load tool for RocketMQ-protocol brokers: finds brokers through a NameServer, produces
/// and/or consumes, prints one line per second and a final report with HDR percentiles.
#[derive(Debug, Clone, Parser)]
#[command(name = "rockshard-bench", version)]
pub struct Args {
    /// produce, consume, or e2e (both at once).
    #[arg(value_enum)]
    pub workload: Workload,
    /// NameServer address(es), `host:port`, several separated by `;` (the first that answers is used).
    #[arg(long, default_value = "127.0.0.1:9876")]
    pub namesrv: String,
    #[arg(long, default_value = "BenchTopic")]
    pub topic: String,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Messages per send request; above 1, sends are SEND_BATCH_MESSAGE.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Producer clients (each with one connection per master broker).
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Consumer clients (default: --connections).
    #[arg(long)]
    pub consumers: Option<usize>,
    /// Send requests in flight per producer client.
    #[arg(long, default_value_t = 32)]
    pub inflight: usize,
    /// Target rate in messages per second for all producers together, open loop (sends are
    /// scheduled, latency counts from the scheduled time). Absent: as fast as possible.
    #[arg(long)]
    pub rate: Option<u64>,
    /// How long to run, e.g. 30s, 500ms, 2m. Default 10s, or up to 300s with --count.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after this many messages (produced, or consumed for the consume workload).
    #[arg(long)]
    pub count: Option<u64>,
    /// Whole seconds at the start that run like the rest but are left out of the summary
    /// and the JSON report (as OpenMessaging Benchmark's warm-up), e.g. 5 or 5s. They
    /// come before --duration; their per-second lines are printed, marked warm-up.
    #[arg(long, value_parser = parse_warmup, default_value = "0")]
    pub warmup: Duration,
    /// Tag set on every message (TAGS property); consumers subscribe to it.
    #[arg(long)]
    pub tag: Option<String>,
    /// Give every message a unique key (KEYS property).
    #[arg(long)]
    pub keys: bool,
    /// Flush mode of the topic the tool creates (sent as the attribute `+flush.mode=...`).
    /// Absent: the broker's default, and no attribute is sent.
    #[arg(long, value_enum)]
    pub flush: Option<FlushMode>,
    /// Read and write queues of the topic the tool creates (a Rockshard broker spreads them over its shards).
    #[arg(long, default_value_t = 8)]
    pub queues: u32,
    /// Use the topic as it is; do not send UPDATE_AND_CREATE_TOPIC.
    #[arg(long)]
    pub no_create: bool,
    /// Create the topic on this cluster's brokers only (default: every cluster's).
    #[arg(long)]
    pub cluster: Option<String>,
    #[arg(long, default_value = "rockshard-bench-producer")]
    pub producer_group: String,
    /// Consumer group (default: a new one per run, so --from decides where consumers start).
    #[arg(long)]
    pub group: Option<String>,
    /// Where consumers start when their group has no committed offset.
    #[arg(long, value_enum, default_value = "latest")]
    pub from: StartFrom,
    /// Header encoding of every request.
    #[arg(long, value_enum, default_value = "json")]
    pub header: HeaderEncoding,
    /// glommio executors (threads); connections are spread over them. Default: number of cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timeout of each send and each admin request, e.g. 3s.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub timeout: Duration,
    /// e2e and consume: how long consumers go on after the producers stop, to collect what is
    /// still on its way.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub drain: Duration,
    /// Write the whole report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// A validated run description.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub workload: Workload,
    pub namesrv: Vec<String>,
    pub topic: String,
    pub size_bytes: usize,
    pub batch: usize,
    pub producers: usize,
    pub consumers: usize,
    pub inflight: usize,
    /// Messages per second for all producers; `None`: closed loop, as fast as possible.
    pub rate: Option<u64>,
    /// The run's time limit (always set).
    #[serde(serialize_with = "serialize_secs")]
    pub duration: Duration,
    /// Whether `duration` was asked for (else it is only the safety limit of a count run).
    pub duration_given: bool,
    /// Run before `duration`, measured by nobody: whole seconds, zero for none.
    #[serde(serialize_with = "serialize_secs")]
    pub warmup: Duration,
    pub count: Option<u64>,
    pub tag: Option<String>,
    pub keys: bool,
    pub flush: Option<FlushMode>,
    pub queues: u32,
    pub create_topic: bool,
    pub cluster: Option<String>,
    pub producer_group: String,
    pub group: String,
    pub from: StartFrom,
    pub header: HeaderEncoding,
    pub threads: usize,
    #[serde(serialize_with = "serialize_secs")]
    pub timeout: Duration,
    #[serde(serialize_with = "serialize_secs")]
    pub drain: Duration,
    #[serde(skip)]
    pub json: Option<PathBuf>,
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Parses `250ms`, `10s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use ms, s, m or h)")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("`{text}` must be more than zero"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

/// Parses --warmup: `0` for none, else a duration of whole seconds up to
/// [`WARMUP_MAX_S`] (the per-second lines then split into warm-up and measured ones).
pub fn parse_warmup(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let number = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if number.parse::<f64>().is_ok_and(|v| v == 0.0) {
        return Ok(Duration::ZERO);
    }
    let d = parse_duration(text)?;
    if d.subsec_nanos() != 0 {
        return Err(format!("`{text}`: give whole seconds (per-second lines start on them)"));
    }
    if d.as_secs() > WARMUP_MAX_S {
        return Err(format!("`{text}`: at most {WARMUP_MAX_S} s"));
    }
    Ok(d)
}

/// Topic names RocketMQ accepts: `[A-Za-z0-9_|%-]`, at most 127 bytes.
fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 127
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'%'))
}

impl Args {
    /// Checks the options against each other and fills in derived defaults. `cores` is the
    /// default thread count; `run_id` makes the default consumer group unique.
    pub fn validate(self, cores: usize, run_id: &str) -> Result<Config, String> {
        let w = self.workload;
        let namesrv: Vec<String> =
            self.namesrv.split(';').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        if namesrv.is_empty() {
            return Err("--namesrv: give at least one host:port".into());
        }
        if !valid_topic(&self.topic) {
            return Err(format!("--topic `{}`: use 1 to 127 of A-Z a-z 0-9 _ - | %", self.topic));
        }
        if self.size == 0 || self.size > BATCH_BODY_MAX_BYTES {
            return Err(format!("--size {}: must be 1 to {BATCH_BODY_MAX_BYTES} bytes", self.size));
        }
        if self.batch == 0 || self.batch > BATCH_MAX {
            return Err(format!("--batch {}: must be 1 to {BATCH_MAX}", self.batch));
        }
        // A batch travels as one message body, which brokers cap at 4 MiB (with each item's
        // framing and properties on top of the payload).
        let batch_estimate = self.batch.saturating_mul(self.size.saturating_add(crate::limits::ITEM_OVERHEAD_BYTES));
        if self.batch > 1 && batch_estimate > BATCH_BODY_MAX_BYTES {
            return Err(format!(
                "--batch {} × --size {}: a batch body of about {batch_estimate} bytes is over the broker limit of \
                 {BATCH_BODY_MAX_BYTES}",
                self.batch, self.size
            ));
        }
        if self.connections == 0 || self.connections > CONNECTIONS_MAX {
            return Err(format!("--connections {}: must be 1 to {CONNECTIONS_MAX}", self.connections));
        }
        let consumers = self.consumers.unwrap_or(self.connections);
        if consumers == 0 || consumers > CONNECTIONS_MAX {
            return Err(format!("--consumers {consumers}: must be 1 to {CONNECTIONS_MAX}"));
        }
        if self.inflight == 0 || self.inflight > INFLIGHT_MAX {
            return Err(format!("--inflight {}: must be 1 to {INFLIGHT_MAX}", self.inflight));
        }
        match self.rate {
            Some(_) if !w.produces() => return Err("--rate: the consume workload does not send".into()),
            Some(0) => return Err("--rate 0: give a positive rate, or leave it out for no limit".into()),
            _ => {}
        }
        if self.count == Some(0) {
            return Err("--count 0: give a positive count, or leave it out".into());
        }
        if !self.warmup.is_zero() && self.count.is_some() {
            return Err(
                "--warmup goes with --duration, not --count: a count run measures from its first message".into()
            );
        }
        if self.no_create && self.flush.is_some() {
            return Err("--flush applies to the topic the tool creates; it cannot go with --no-create".into());
        }
        if self.no_create && self.cluster.is_some() {
            return Err("--cluster chooses where the topic is created; it cannot go with --no-create".into());
        }
        if self.queues == 0 || self.queues > QUEUES_MAX {
            return Err(format!("--queues {}: must be 1 to {QUEUES_MAX}", self.queues));
        }
        if let Some(tag) = &self.tag {
            if tag.is_empty() || tag.contains("||") || tag == "*" || tag.bytes().any(|b| b < 0x20) {
                return Err(format!("--tag `{tag}`: one tag, not an expression"));
            }
            // Every message carries it in its properties, which are capped at 32 KiB.
            if tag.len() > TAG_LEN_MAX_BYTES {
                return Err(format!("--tag: at most {TAG_LEN_MAX_BYTES} bytes"));
            }
        }
        let threads = self.threads.unwrap_or(cores).max(1);
        if threads > THREADS_MAX {
            return Err(format!("--threads {threads}: must be 1 to {THREADS_MAX}"));
        }
        let duration = self.duration.unwrap_or(match self.count {
            Some(_) => Duration::from_secs(COUNT_RUN_DURATION_MAX_S),
            None => Duration::from_secs(DURATION_DEFAULT_S),
        });
        let group = self.group.unwrap_or_else(|| format!("rockshard-bench-{run_id}"));
        if !valid_topic(&group) || !valid_topic(&self.producer_group) {
            return Err("--group / --producer-group: use 1 to 127 of A-Z a-z 0-9 _ - | %".into());
        }
        Ok(Config {
            workload: w,
            namesrv,
            topic: self.topic,
            size_bytes: self.size,
            batch: self.batch,
            producers: if w.produces() { self.connections } else { 0 },
            consumers: if w.consumes() { consumers } else { 0 },
            inflight: self.inflight,
            rate: self.rate,
            duration,
            duration_given: self.duration.is_some(),
            warmup: self.warmup,
            count: self.count,
            tag: self.tag,
            keys: self.keys,
            flush: self.flush,
            queues: self.queues,
            create_topic: !self.no_create,
            cluster: self.cluster,
            producer_group: self.producer_group,
            group,
            from: self.from,
            header: self.header,
            threads,
            timeout: self.timeout,
            drain: self.drain,
            json: self.json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, String> {
        let argv = std::iter::once("rockshard-bench").chain(args.iter().copied());
        let parsed = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        parsed.validate(2, "run1")
    }

    fn refused(args: &[&str], mentioning: &str) {
        match config(args) {
            Ok(c) => panic!("{args:?} was accepted: {c:?}"),
            Err(e) => assert!(e.contains(mentioning), "{args:?}: error `{e}` does not mention `{mentioning}`"),
        }
    }

    #[test]
    fn defaults_describe_a_ten_second_closed_loop_run() {
        let c = config(&["produce"]).expect("valid");
        assert_eq!(c.duration, Duration::from_secs(10));
        assert!(!c.duration_given);
        assert_eq!((c.producers, c.consumers, c.inflight, c.batch, c.size_bytes), (4, 0, 32, 1, 1024));
        assert_eq!(c.rate, None);
        assert_eq!(c.threads, 2);
        assert_eq!(c.namesrv, ["127.0.0.1:9876"]);
        assert_eq!(c.group, "rockshard-bench-run1");
        assert_eq!(c.warmup, Duration::ZERO, "no warm-up unless asked");
        assert!(c.create_topic);
        assert_eq!(c.header, HeaderEncoding::Json);
        let e2e = config(&["e2e", "--connections", "3"]).expect("valid");
        assert_eq!((e2e.producers, e2e.consumers), (3, 3));
        let consume = config(&["consume", "--consumers", "5"]).expect("valid");
        assert_eq!((consume.producers, consume.consumers), (0, 5));
    }

    #[test]
    fn every_run_has_a_time_limit() {
        let counted = config(&["produce", "--count", "1000"]).expect("valid");
        assert_eq!(counted.duration, Duration::from_secs(COUNT_RUN_DURATION_MAX_S));
        let both = config(&["produce", "--count", "1000", "--duration", "2s"]).expect("valid");
        assert_eq!(both.duration, Duration::from_secs(2));
        assert!(both.duration_given);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn warmup_is_whole_seconds_before_the_duration() {
        assert_eq!(parse_warmup("0"), Ok(Duration::ZERO));
        assert_eq!(parse_warmup("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_warmup("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_warmup("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_warmup("2000ms"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_warmup("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_warmup("1.5s").is_err_and(|e| e.contains("whole seconds")));
        assert!(parse_warmup("500ms").is_err());
        assert!(parse_warmup("2h").is_err_and(|e| e.contains("at most")));
        assert!(parse_warmup("x").is_err());
        let c = config(&["produce", "--warmup", "3", "--duration", "10s"]).expect("valid");
        assert_eq!((c.warmup, c.duration), (Duration::from_secs(3), Duration::from_secs(10)));
        refused(&["produce", "--warmup", "3", "--count", "100"], "--count");
        config(&["produce", "--warmup", "0", "--count", "100"]).expect("no warm-up goes with a count");
        refused(&["produce", "--warmup", "1.5"], "whole seconds");
    }

    #[test]
    fn contradictory_or_impossible_options_are_refused() {
        refused(&["produce", "--size", "0"], "--size");
        refused(&["produce", "--size", "5000000"], "--size");
        refused(&["produce", "--batch", "0"], "--batch");
        refused(&["produce", "--batch", "2000"], "--batch");
        refused(&["produce", "--batch", "1000", "--size", "8192"], "over the broker limit");
        refused(&["produce", "--connections", "0"], "--connections");
        refused(&["produce", "--inflight", "0"], "--inflight");
        refused(&["produce", "--inflight", "100000"], "--inflight");
        refused(&["consume", "--rate", "1000"], "--rate");
        refused(&["produce", "--rate", "0"], "--rate");
        refused(&["produce", "--count", "0"], "--count");
        refused(&["produce", "--no-create", "--flush", "sync"], "--no-create");
        refused(&["produce", "--no-create", "--cluster", "c"], "--no-create");
        refused(&["produce", "--queues", "0"], "--queues");
        refused(&["produce", "--topic", "bad topic"], "--topic");
        refused(&["produce", "--topic", ""], "--topic");
        refused(&["produce", "--tag", "a||b"], "--tag");
        refused(&["produce", "--tag", &"t".repeat(TAG_LEN_MAX_BYTES + 1)], "--tag");
        refused(&["produce", "--threads", "100000"], "--threads");
        refused(&["produce", "--namesrv", ";"], "--namesrv");
        refused(&["produce", "--group", "g g"], "--group");
        refused(&["produce", "--duration", "0s"], "more than zero");
        refused(&["produce", "--header", "xml"], "xml");
        refused(&["fly"], "fly");
    }

    #[test]
    fn sensible_combinations_are_accepted() {
        let c = config(&[
            "e2e",
            "--namesrv",
            "127.0.0.1:9876;127.0.0.1:9877",
            "--batch",
            "32",
            "--size",
            "100",
            "--rate",
            "50000",
            "--flush",
            "sync",
            "--header",
            "rocketmq",
            "--tag",
            "TagA",
            "--keys",
            "--from",
            "earliest",
            "--threads",
            "1",
        ])
        .expect("valid");
        assert_eq!(c.namesrv.len(), 2);
        assert_eq!(c.rate, Some(50_000));
        assert_eq!(c.flush, Some(FlushMode::Sync));
        assert_eq!(c.header.serialize_type(), rockshard_net::SerializeType::RocketMq);
        assert_eq!(c.from, StartFrom::Earliest);
        assert_eq!(c.threads, 1);
        assert_eq!(c.tag.as_deref(), Some("TagA"));
        config(&["produce", "--no-create"]).expect("valid");
    }
}
