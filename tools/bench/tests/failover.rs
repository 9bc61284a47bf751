//! `rockshard-bench` across a leader failover: a 3-node replicated group (standalone
//! NameServer + three `rockshard broker --group` processes, from the root crate's harness
//! `tests/common/cluster.rs`, included by path: it is self-contained), the tool running at
//! a fixed open-loop rate, and the leader `kill -9`ed part-way through.
//!
//! What must hold, for `produce` and for `e2e` (producers and consumers at once): the run
//! goes on to its end and exits 0; each side's errors fall inside the outage (none before
//! the kill, none in the closing seconds); after the outage every second acknowledges
//! sends (and delivers messages) again, through the new leader that the NameServer's
//! route names, and the failed-over shard stores new messages; for e2e, every
//! acknowledged message is delivered. Before the tool re-read routes it kept sending to
//! the dead address until the run ended.
//!
//! The produce test runs two shards per node and kills shard 0's leader: the tool must
//! keep sending to shard 1 meanwhile, and come back to shard 0 once it has a master again
//! (nothing fails any more by then, so only its own polling can notice). The e2e test
//! runs one shard, so that every queue goes through the outage.
//!
//! Bounded: a few seconds of load at a modest rate; every wait has a deadline and a round
//! cap; the cluster guard stops every process by pid, the bench guard kills the tool.
//! One group at a time (the harness's lock): two at once would measure the machine.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

#[path = "../../../tests/common/cluster.rs"]
mod cluster;
mod common;

use std::time::{Duration, Instant};

use cluster::{Cluster, Options};
use common::{float, number, BenchProcess};
use serde_json::Value;

/// Per-second lines the tool prints before the kill: the run is under way and healthy.
const SECONDS_BEFORE_KILL: usize = 3;
/// The whole run; long enough for the outage and several seconds after it.
const RUN_SECONDS: u64 = 15;
/// Longest the errors may go on after the kill: an election (1–2 s with the broker's
/// default Raft timing, kept because a shorter one risks spurious elections on a loaded
/// 2-core machine), the new leader's registration, the tool's route re-read, and slack.
/// The failover bound is 10 s.
const OUTAGE_MAX_S: f64 = 8.0;
/// Error-free seconds with acknowledged sends the run must end with.
const RECOVERED_SECONDS_MIN: usize = 2;
/// How long the tool may take from start to its first per-second lines (setup creates the
/// topic and waits for the route).
const FIRST_SECONDS_WITHIN: Duration = Duration::from_secs(60);
/// How long a started group may take to elect its first leader.
const FIRST_LEADER_WITHIN: Duration = Duration::from_secs(30);
/// How long after the kill another node must report itself leader.
const NEW_LEADER_WITHIN: Duration = Duration::from_secs(10);
/// Open-loop rate: enough sends per second to see the outage, little CPU.
const RATE: &str = "400";
/// Queues of the test topic, for the whole broker (spread over its shards).
const QUEUES: u16 = 4;
/// Messages shard 0's new leader must store after the failover: far more than the sends
/// in flight at the kill (at most connections × inflight = 16) that the new leader may
/// still apply, far fewer than the thousand or so the rest of the run sends there.
const STORED_AFTER_FAILOVER_MIN: u64 = 100;
/// RocketMQ's GET_MAX_OFFSET.
const GET_MAX_OFFSET: i32 = 30;

/// Per-second lines printed so far (`   3.00s  produce ...`).
fn second_lines(output: &str) -> usize {
    output
        .lines()
        .filter(|l| l.trim_start().split_once("s  produce").is_some_and(|(t, _)| t.parse::<f64>().is_ok()))
        .count()
}

/// Messages stored in `topic`'s queues 0..`queues` of the shard at `addr`: the sum of
/// their max offsets.
fn stored_messages(addr: &str, topic: &str, queues: u16) -> u64 {
    (0..queues)
        .map(|q| {
            let ext = [("topic", topic.to_string()), ("queueId", q.to_string())];
            let a = cluster::call_json(addr, GET_MAX_OFFSET, &ext, &[], cluster::STATUS_TIMEOUT)
                .unwrap_or_else(|e| panic!("GET_MAX_OFFSET {topic}:{q} at {addr}: {e}"));
            assert_eq!(a.code, 0, "GET_MAX_OFFSET {topic}:{q} at {addr}: {a:?}");
            let offset = a.ext.get("offset").and_then(Value::as_str).and_then(|o| o.parse::<u64>().ok());
            offset.unwrap_or_else(|| panic!("GET_MAX_OFFSET {topic}:{q} at {addr}: no offset in {a:?}"))
        })
        .sum()
}

/// A run that lived through a leader kill.
struct Failover {
    cluster: Cluster,
    /// The node that leads shard 0 after the kill.
    new_leader: usize,
    /// End (in seconds from the run's start) of the second the kill happened in.
    kill_second_end: f64,
    /// Messages shard 0's new leader stored once the route named it master.
    stored_at_failover: u64,
    report: Value,
}

/// Starts a group of `shards` shards per node, runs the bench with `workload` + `args` on
/// topic `topic`, kills the leader of shard 0 once [`SECONDS_BEFORE_KILL`] seconds are
/// printed, and waits for the run's end.
fn run_across_a_leader_kill(workload: &str, topic: &str, shards: u16, args: &[&str]) -> Failover {
    let mut opts = Options::new(common::broker_bin(), 3).args(&["--segment-size-bytes", &(16u64 << 20).to_string()]);
    opts.shards = shards;
    let mut cluster = Cluster::start(opts);
    cluster.leader(0, FIRST_LEADER_WITHIN).unwrap_or_else(|e| panic!("first leader: {e}"));
    let namesrv = cluster.namesrv_addr();
    let work = tempfile::tempdir().expect("temp dir");
    let duration = format!("{RUN_SECONDS}s");
    let queues = QUEUES.to_string();
    let mut argv = vec![
        workload,
        "--namesrv",
        &namesrv,
        "--topic",
        topic,
        "--queues",
        &queues,
        "--duration",
        &duration,
        "--rate",
        RATE,
        "--size",
        "256",
        "--connections",
        "2",
        "--inflight",
        "8",
        "--threads",
        "1",
        "--timeout",
        "3s",
    ];
    argv.extend_from_slice(args);
    let mut run = BenchProcess::spawn(work.path(), workload, &argv);
    let started = run.wait_output(FIRST_SECONDS_WITHIN, |out| second_lines(out) >= SECONDS_BEFORE_KILL);
    assert!(started, "no {SECONDS_BEFORE_KILL} per-second lines:\n{}", run.output());

    // Whoever leads now (the topic's creation went through it).
    let (old, old_view) = cluster.leader(0, Duration::from_secs(5)).unwrap_or_else(|e| panic!("leader: {e}"));
    let killed_during = second_lines(&run.output()) + 1;
    cluster.kill9(old);
    let killed_at = Instant::now();
    let (new_leader, new_view) = cluster
        .leader_where(0, NEW_LEADER_WITHIN, |i, v| i != old && v.term > old_view.term)
        .unwrap_or_else(|e| panic!("no new leader after killing n{}: {e}", old + 1));
    println!(
        "killed leader n{} (term {}) during second {killed_during}; n{} leads term {} after {:?}",
        old + 1,
        old_view.term,
        new_leader + 1,
        new_view.term,
        killed_at.elapsed()
    );
    let new_addr = cluster.shard_addr(new_leader, 0);
    cluster
        .wait_route_master(topic, "g1-s0", &new_addr, NEW_LEADER_WITHIN)
        .unwrap_or_else(|e| panic!("the NameServer did not follow the new leader: {e}"));
    let stored_at_failover = stored_messages(&new_addr, topic, QUEUES / shards);

    let result = run.finish();
    println!("{}", result.output);
    assert!(result.status.success(), "the run did not complete:\n{}", result.output);
    let report = result.report.expect("report");

    Failover { cluster, new_leader, kill_second_end: killed_during as f64, stored_at_failover, report }
}

impl Failover {
    /// The sends after the outage went to shard 0's new leader: the NameServer's route
    /// names it master, the report lists it among the brokers the run's routes named, and
    /// it stored messages after the failover.
    fn assert_route_followed(&self, topic: &str) {
        let new_addr = self.cluster.shard_addr(self.new_leader, 0);
        let route = self.cluster.route(topic).unwrap_or_else(|e| panic!("route: {e}"));
        let master = route.get("g1-s0").and_then(|ids| ids.get(&0));
        assert_eq!(master, Some(&new_addr), "route after the failover: {route:?}");
        let brokers = &self.report["brokers"];
        assert!(
            brokers.as_array().is_some_and(|b| b.iter().any(|a| a.as_str() == Some(new_addr.as_str()))),
            "the report names the new leader {new_addr}: {brokers}"
        );
        let stored = stored_messages(&new_addr, topic, QUEUES / self.cluster.opts.shards);
        assert!(
            stored >= self.stored_at_failover + STORED_AFTER_FAILOVER_MIN,
            "shard 0's new leader stored {} messages after the failover ({} then, {stored} at the end)",
            stored - self.stored_at_failover,
            self.stored_at_failover
        );
        println!("shard 0's new leader stored {} messages after the failover", stored - self.stored_at_failover);
    }
}

/// Checks one side (`produce` or `consume`) of the report's seconds: no error before the
/// kill's second, errors only within [`OUTAGE_MAX_S`] after it, then at least
/// [`RECOVERED_SECONDS_MIN`] whole seconds, each with messages. Returns the end of the
/// last second with errors.
fn check_recovery(report: &Value, side: &str, kill_second_end: f64) -> f64 {
    // (second's end, messages per second, errors) of the whole seconds.
    let per_second: Vec<(f64, f64, u64)> = report["seconds"]
        .as_array()
        .expect("seconds")
        .iter()
        .filter(|s| float(s, &["interval_s"]) == 1.0)
        .map(|s| (float(s, &["elapsed_s"]), float(s, &[side, "msgs_per_s"]), number(s, &[side, "errors"])))
        .collect();
    let table: String = per_second
        .iter()
        .map(|(end, msgs, errors)| format!("\n  {end:>5} s {msgs:>6} msg/s {errors:>4} err"))
        .collect();
    assert!(per_second.len() as u64 >= RUN_SECONDS - 1, "{side}: seconds missing:{table}");
    for (end, msgs, errors) in &per_second {
        if *end < kill_second_end {
            assert_eq!(*errors, 0, "{side}: errors in second {end}, before the kill:{table}");
            assert!(*msgs > 0.0, "{side}: no message in second {end}, before the kill:{table}");
        }
    }
    let outage_end = per_second.iter().filter(|(_, _, e)| *e > 0).map(|(end, _, _)| *end).fold(0.0, f64::max);
    assert!(
        outage_end <= kill_second_end + OUTAGE_MAX_S,
        "{side}: errors went on until second {outage_end}, the kill was in second {kill_second_end}:{table}"
    );
    let recovered: Vec<&(f64, f64, u64)> =
        per_second.iter().filter(|(end, _, _)| *end > outage_end.max(kill_second_end)).collect();
    assert!(
        recovered.len() >= RECOVERED_SECONDS_MIN,
        "{side}: only {} whole seconds after the outage (last error in second {outage_end}):{table}",
        recovered.len()
    );
    for (end, msgs, _) in &recovered {
        assert!(*msgs > 0.0, "{side}: second {end}, after the outage, had no message:{table}");
    }
    println!(
        "{side}: {} errors ({}), all in seconds {kill_second_end}..={outage_end}",
        number(report, &[side, "errors_total"]),
        report[side]["errors"]
    );
    outage_end
}

#[test]
fn produce_follows_the_new_leader_after_a_leader_kill9() {
    let _serial = cluster::serial();
    let f = run_across_a_leader_kill("produce", "BenchFailover", 2, &[]);
    let outage_end = check_recovery(&f.report, "produce", f.kill_second_end);
    assert!(outage_end > 0.0, "a leader kill -9 cost no send at all, which cannot be: {}", f.report["seconds"]);
    f.assert_route_followed("BenchFailover");
}

#[test]
fn e2e_consumers_follow_the_new_leader_and_receive_every_acknowledged_message() {
    let _serial = cluster::serial();
    let f = run_across_a_leader_kill("e2e", "BenchFailoverE2e", 1, &["--drain", "20s"]);
    check_recovery(&f.report, "produce", f.kill_second_end);
    let consume_outage_end = check_recovery(&f.report, "consume", f.kill_second_end);
    assert!(consume_outage_end > 0.0, "the consumers' pulls to the killed leader cannot all have survived it");
    // Acknowledged means committed by a majority, so the new leader has every one, at the
    // same queue offsets. More may arrive: sends in flight at the kill may have been
    // committed without their answer getting back.
    let (sent, received) = (number(&f.report, &["produce", "messages"]), number(&f.report, &["consume", "messages"]));
    assert!(received >= sent, "{sent} messages acknowledged, {received} delivered");
    assert_eq!(f.report["ended_by"], "duration", "the consumers caught up before the drain ran out");
    f.assert_route_followed("BenchFailoverE2e");
}
