//! Failover with the real client: the crates.io `rocketmq-client-rust` 1.0 producer, with
//! its normal retries, sends to a sync-flush topic of a 3-node replicated group while the
//! test `kill -9`s the leader; afterwards a lite-pull consumer reads the topic from the
//! first offset and every message that got SEND_OK must be there.
//!
//! The group (standalone NameServer + 3 `rockshard broker --group/--node/--peers`
//! processes) comes from the root crate's harness, tests/common/cluster.rs, included
//! here by path: it is self-contained (std, serde_json, tempfile) for that reason.
//!
//! What is measured and printed: the time from `kill -9` to a node reporting itself
//! leader of a newer term (must be within 10 s), the time until the client's sends
//! succeed again (its route refresh cannot be set below the client's minimum of 10 s, so
//! this includes up to one refresh period), the client's failures by kind, and the
//! duplicates the consumer saw (a send retried after an answer that was not SEND_OK
//! may be stored twice; that is allowed, a loss is not).
//!
//! Bounded everywhere: the test body has a time limit, every loop a deadline and an
//! iteration cap; every process is killed by pid (the cluster guard), also on panic.

// The file allows dead code itself: not every test uses every part of the harness.
#[path = "../../common/cluster.rs"]
mod cluster;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{Cluster, Options};
use rocketmq_client_rust::{DefaultLitePullConsumer, DefaultMQProducer, SendStatus};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_single::Message;
use rockshard_compat::{broker_binary, client_config, describe_missing, message_body, unique, Clients, Recorder};

/// The issue's failover bound.
const NEW_LEADER_WITHIN: Duration = Duration::from_secs(10);
/// Acknowledged sends before the kill, and after it, before the test stops sending.
const BEFORE_KILL: u64 = 300;
const AFTER_KILL: u64 = 300;
/// Client send timeout: above the group's replication timeout (5 s by default).
const SEND_TIMEOUT_MS: u64 = 8_000;
/// The client's minimum route refresh period (its config validation refuses less).
const ROUTE_POLL_MS: u32 = 10_000;
/// How long after the kill the client may take to be acknowledged again: election
/// (< 10 s), re-registration, one route refresh period, and slack for a loaded machine.
const RESUME_WITHIN: Duration = Duration::from_secs(45);
/// Queues of the test topic.
const QUEUES: u32 = 4;
/// A lite-pull poll's wait, and the broker-side hold of its pulls.
const POLL_TIMEOUT_MS: u64 = 500;
const LITE_SUSPEND_MS: u64 = 2_000;
/// Upper bound on polls while reading back (beside the deadline).
const POLLS_MAX: usize = 100_000;

fn producer(rt: Arc<rocketmq_client_rust::ClientRuntime>, namesrv: &str) -> DefaultMQProducer {
    let mut config = client_config(namesrv, &unique("repl_prod"));
    config.set_poll_name_server_interval(ROUTE_POLL_MS);
    DefaultMQProducer::builder(rt)
        .client_config(config)
        .producer_group(unique("repl_pg"))
        .name_server_addr(namesrv.to_string())
        .send_msg_timeout(SEND_TIMEOUT_MS as u32)
        .build()
}

fn lite_consumer(rt: Arc<rocketmq_client_rust::ClientRuntime>, namesrv: &str) -> DefaultLitePullConsumer {
    DefaultLitePullConsumer::builder(rt)
        .name_server_addr(namesrv.to_string())
        .client_ip("127.0.0.1")
        .instance_name(unique("repl_lite"))
        .consumer_group(unique("repl_cg"))
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .pull_batch_size(32)
        .broker_suspend_max_time_millis(LITE_SUSPEND_MS)
        .consumer_timeout_millis_when_suspend(LITE_SUSPEND_MS + 5_000)
        .build()
        .expect("lite pull consumer build")
}

/// Where a SEND_OK said its message went: (broker name, queue, queue offset), by index.
type Stored = (String, i32, i64);

/// What the kill thread found.
#[derive(Default)]
struct Failover {
    killed_at: Option<Instant>,
    /// SEND_OKs counted just before the kill.
    acked_before: u64,
    /// The node killed (the leader at that moment).
    killed: Option<usize>,
    new_leader: Option<(usize, u64, Duration)>,
    error: Option<String>,
}

#[test]
fn real_client_keeps_every_send_ok_message_across_a_leader_kill9() {
    let _serial = cluster::serial();
    let opts = Options::new(broker_binary(), 3).args(&["--segment-size-bytes", &(16u64 << 20).to_string()]);
    let cluster = Arc::new(Mutex::new(Cluster::start(opts)));
    let (first_leader, first_term, namesrv) = {
        let c = cluster.lock().unwrap();
        let (leader, view) = c.leader(0, Duration::from_secs(30)).unwrap_or_else(|e| panic!("first leader: {e}"));
        (leader, view.term, c.namesrv_addr())
    };
    let topic = unique("repl_compat");
    {
        let c = cluster.lock().unwrap();
        cluster::create_topic(&c.shard_addr(first_leader, 0), &topic, QUEUES, "sync").unwrap_or_else(|e| panic!("{e}"));
    }
    println!("leader n{} term {first_term}; topic {topic} (sync flush)", first_leader + 1);

    let acked_total = Arc::new(AtomicU64::new(0));
    let failover = Arc::new(Mutex::new(Failover::default()));
    // Kills the leader once BEFORE_KILL sends were acknowledged, then times the election.
    let killer = {
        let (cluster, acked_total, failover) = (cluster.clone(), acked_total.clone(), failover.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while acked_total.load(Ordering::SeqCst) < BEFORE_KILL {
                if Instant::now() >= deadline {
                    failover.lock().unwrap().error =
                        Some(format!("only {} sends acknowledged", acked_total.load(Ordering::SeqCst)));
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let mut c = cluster.lock().unwrap_or_else(|p| p.into_inner());
            // Whoever leads now (leadership could have moved since the topic was created).
            let (old, old_term) = match c.leader(0, Duration::from_secs(5)) {
                Ok((i, v)) => (i, v.term),
                Err(e) => {
                    failover.lock().unwrap().error = Some(e);
                    return;
                }
            };
            let acked_before = acked_total.load(Ordering::SeqCst);
            c.kill9(old);
            let killed_at = Instant::now();
            {
                let mut f = failover.lock().unwrap();
                f.killed_at = Some(killed_at);
                f.acked_before = acked_before;
                f.killed = Some(old);
            }
            let found = c.leader_where(0, NEW_LEADER_WITHIN, |i, v| i != old && v.term > old_term);
            let mut f = failover.lock().unwrap();
            match found {
                Ok((i, v)) => f.new_leader = Some((i, v.term, killed_at.elapsed())),
                Err(e) => f.error = Some(e),
            }
        })
    };

    let clients = Clients::new("replication");
    let rt = clients.runtime();
    let acked: Arc<Mutex<BTreeMap<u64, Stored>>> = Arc::default();
    let failures: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let first_ok_after_kill: Arc<Mutex<Option<Duration>>> = Arc::default();
    // SEND_OKs that arrived after the kill.
    let acked_after = AtomicU64::new(0);
    let outcome = clients.run(Duration::from_secs(400), async {
        let mut p = producer(rt.clone(), &namesrv);
        p.start().await.expect("producer start");
        // The route must name the group's shard before sending.
        let mut routed = false;
        for _ in 0..300 {
            if p.fetch_publish_message_queues(&topic).await.is_ok_and(|q| !q.is_empty()) {
                routed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(routed, "topic {topic} never routed");

        let next = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        let sender = |_: usize| async {
            // Bounded by the deadline checks below and this cap.
            for _ in 0..1_000_000u64 {
                if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(300) {
                    break;
                }
                let killed_at = failover.lock().unwrap().killed_at;
                if let Some(k) = killed_at {
                    if acked_after.load(Ordering::SeqCst) >= AFTER_KILL
                        || k.elapsed() > RESUME_WITHIN + Duration::from_secs(30)
                    {
                        stop.store(true, Ordering::SeqCst);
                        break;
                    }
                }
                if failover.lock().unwrap().error.is_some() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let msg = Message::builder()
                    .topic(topic.as_str())
                    .tags("r")
                    .key(format!("r-k{i}"))
                    .body(message_body("r", i))
                    .build_unchecked();
                match p.send_with_timeout(msg, SEND_TIMEOUT_MS).await {
                    Ok(Some(r)) if r.send_status == SendStatus::SendOk => {
                        let mq = r.message_queue.as_ref().expect("a SEND_OK result names its queue");
                        acked
                            .lock()
                            .unwrap()
                            .insert(i, (mq.broker_name().to_string(), mq.queue_id(), r.queue_offset as i64));
                        acked_total.fetch_add(1, Ordering::SeqCst);
                        if let Some(k) = failover.lock().unwrap().killed_at {
                            first_ok_after_kill.lock().unwrap().get_or_insert(k.elapsed());
                            acked_after.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok(Some(r)) => *failures.lock().unwrap().entry(format!("{:?}", r.send_status)).or_default() += 1,
                    Ok(None) => *failures.lock().unwrap().entry("no result".into()).or_default() += 1,
                    Err(e) => {
                        let kind: String = e.to_string().chars().take(80).collect();
                        *failures.lock().unwrap().entry(kind).or_default() += 1;
                        // What a client application does after a failed send: try again soon.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        };
        // Four senders: several sends are in flight when the leader dies.
        tokio::join!(sender(0), sender(1), sender(2), sender(3));
        let sent = next.load(Ordering::SeqCst);
        p.shutdown().await;

        // Read everything back with a fresh lite-pull consumer from the first offset.
        let recorder = Recorder::new();
        let consumer = lite_consumer(rt.clone(), &namesrv);
        consumer.subscribe_with_expression(&topic, "*").await.expect("subscribe");
        consumer.start().await.expect("lite pull start");
        let want: HashSet<u64> = acked.lock().unwrap().keys().copied().collect();
        let deadline = Instant::now() + Duration::from_secs(90);
        for _ in 0..POLLS_MAX {
            let got = recorder.distinct_indexes();
            if want.iter().all(|i| got.contains(i)) || Instant::now() >= deadline {
                break;
            }
            for msg in consumer.poll_with_timeout(POLL_TIMEOUT_MS).await {
                let queue_topic = msg.topic().to_string();
                recorder.record_message(1, &queue_topic, &msg);
            }
        }
        consumer.shutdown().await;
        (sent, want, recorder, acked_after.load(Ordering::SeqCst))
    });
    killer.join().expect("kill thread");

    let (sent, want, recorder, after_count) = outcome;
    let f = failover.lock().unwrap();
    let failures = failures.lock().unwrap();
    let got = recorder.distinct_indexes();
    println!(
        "sent {sent} messages, {} SEND_OK; failures {failures:?}; consumed {} distinct ({} deliveries, duplicates {})",
        want.len(),
        got.len(),
        recorder.len(),
        recorder.duplicate_count()
    );
    if let Some(e) = &f.error {
        panic!("failover: {e}");
    }
    let (new, term, took) = f.new_leader.expect("the kill thread ran");
    println!(
        "kill -9 n{}: n{} leads (term {term}) after {took:?}; first SEND_OK after the kill at {:?}",
        f.killed.map_or(0, |k| k + 1),
        new + 1,
        first_ok_after_kill.lock().unwrap()
    );
    assert!(took <= NEW_LEADER_WITHIN, "new leader after {took:?}");
    let after = first_ok_after_kill.lock().unwrap().expect("no SEND_OK at all after the leader was killed");
    assert!(after <= RESUME_WITHIN, "the client's first SEND_OK after the kill came {after:?} later");
    assert!(
        after_count >= AFTER_KILL,
        "only {after_count} SEND_OKs in {:?} after the kill ({} before it)",
        RESUME_WITHIN + Duration::from_secs(30),
        f.acked_before
    );
    let missing: Vec<u64> = want.iter().copied().filter(|i| !got.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "SEND_OK messages not consumed: {}; e.g. {:?}",
        describe_missing(want.iter().copied(), &got),
        missing.iter().take(5).map(|i| acked.lock().unwrap().get(i).cloned()).collect::<Vec<_>>()
    );
    assert!(got.iter().all(|i| *i < sent), "consumed an index never sent");
}
