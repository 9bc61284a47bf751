//! Real-client compatibility: the crates.io `rocketmq-client-rust` 1.0 client against a
//! `rockshard broker` process (2 shards, embedded NameServer) started per test.
//!
//! Each test owns one broker and one client runtime, and takes the process-wide
//! [`serial`] lock so brokers never run side by side on the small test machine (the
//! delay and long-poll timing checks would otherwise measure the machine, not the
//! broker). Every wait is bounded; every assertion message says what was expected and
//! what arrived, and where the broker log is.
//!
//! The scenarios are the issue's list, one test each:
//! clustering with 10,000 messages sent four ways and a lite-pull re-read from offset 0,
//! broadcasting, orderly consumption, tag filtering, a restart that resumes from the
//! committed offset, retry → DLQ, a level-2 delayed message, and sync/async flush
//! topics; and the client's create-topic path with auto-create off (issue 12).
//!
//! Deliberately not here: anything that looks inside the broker. What is checked is
//! what a RocketMQ user of this client sees.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientError, ClientRuntime, ConsumeConcurrentlyStatus, DefaultLitePullConsumer, DefaultMQProducer,
    DefaultMQPushConsumer, MQPushConsumer, SendResult, SendStatus,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;
use rockshard_compat::{
    client_config, describe_missing, message_body, serial, unique, wait_until, Broker, Clients, Delivery,
    OrderlyRecordingListener, Recorder, RecordingListener, CONSUME_THREADS_MAX, SHARDS,
};

/// Queues of every test topic, across the broker (rockshard spreads them over shards).
const TOPIC_QUEUES: u32 = 8;

/// The topic whose route tells a client where it may create topics.
const AUTO_CREATE_KEY: &str = "TBW102";

/// How long a freshly created topic may take to show up in the NameServer route.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(35);

/// How often a route wait asks the NameServer again.
const ROUTE_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Send timeout handed to the client, in milliseconds.
const SEND_TIMEOUT_MS: u64 = 10_000;

/// One lite-pull poll waits at most this long for messages.
const POLL_TIMEOUT_MS: u64 = 500;

/// How long the broker may hold a lite-pull consumer's pull (`suspendTimeoutMillis`).
const LITE_SUSPEND_MS: u64 = 2_000;

/// Upper bound on polls in one [`poll_until`], beside its deadline.
const POLLS_MAX: usize = 1_000_000;

/// How long a consumer may keep working on in-flight messages when shut down.
const CONSUMER_SHUTDOWN_AWAIT_MS: u64 = 3_000;

// ---------------------------------------------------------------------------------------
// Helpers shared by the tests.

async fn start_producer(rt: Arc<ClientRuntime>, broker: &Broker, instance: &str) -> DefaultMQProducer {
    let mut producer = DefaultMQProducer::builder(rt)
        .client_config(client_config(broker.namesrv_addr(), instance))
        .producer_group(unique("compat_pg"))
        .name_server_addr(broker.namesrv_addr().to_string())
        .send_msg_timeout(SEND_TIMEOUT_MS as u32)
        .build();
    producer.start().await.expect("producer start");
    producer
}

/// Waits until the NameServer routes `topic` to every shard; returns its queues, sorted.
async fn wait_for_route(producer: &mut DefaultMQProducer, broker: &Broker, topic: &str) -> Vec<MessageQueue> {
    wait_for_route_on(producer, broker, topic, |brokers| brokers.len() == usize::from(SHARDS)).await
}

/// Waits until the NameServer route of `topic` names a set of brokers `accept` likes;
/// returns the topic's queues, sorted.
async fn wait_for_route_on(
    producer: &mut DefaultMQProducer,
    broker: &Broker,
    topic: &str,
    accept: impl Fn(&BTreeSet<String>) -> bool,
) -> Vec<MessageQueue> {
    let deadline = Instant::now() + ROUTE_TIMEOUT;
    // Each round sleeps ROUTE_POLL_INTERVAL, so this count outlasts the deadline.
    let rounds_max = ROUTE_TIMEOUT.as_millis() / ROUTE_POLL_INTERVAL.as_millis() + 10;
    for round in 0.. {
        assert!(round < rounds_max, "route wait ran {rounds_max} rounds");
        let last = match producer.fetch_publish_message_queues(topic).await {
            Ok(mut queues) => {
                let brokers: BTreeSet<String> = queues.iter().map(|q| q.broker_name().to_string()).collect();
                if accept(&brokers) {
                    queues.sort_by(|a, b| (a.broker_name(), a.queue_id()).cmp(&(b.broker_name(), b.queue_id())));
                    return queues;
                }
                format!("route has brokers {brokers:?}")
            }
            Err(e) => format!("route lookup failed: {e}"),
        };
        assert!(
            Instant::now() < deadline,
            "topic {topic} not routed as expected within {ROUTE_TIMEOUT:?}: {last}; broker log {}:\n{}",
            broker.log_path().display(),
            broker.log_tail()
        );
        tokio::time::sleep(ROUTE_POLL_INTERVAL).await;
    }
    unreachable!("the loop above returns or panics")
}

/// Creates `topic` the way a RocketMQ application does, through the client
/// (UPDATE_AND_CREATE_TOPIC to every broker in the route of `TBW102`), and waits until
/// it is routable. The flush-mode test uses the admin command instead.
async fn create_topic(producer: &mut DefaultMQProducer, broker: &Broker, topic: &str) -> Vec<MessageQueue> {
    producer
        .create_topic(AUTO_CREATE_KEY, topic, TOPIC_QUEUES as i32, HashMap::new())
        .await
        .unwrap_or_else(|e| panic!("create topic {topic} through the client: {e}; {}", log_hint(broker)));
    let queues = wait_for_route(producer, broker, topic).await;
    println!("topic {topic}: {} queues over {SHARDS} shards", queues.len());
    queues
}

/// Creates `topic` with `rockshard admin topic create --flush <flush>` and waits until
/// it is routable.
async fn create_topic_with_admin(
    producer: &mut DefaultMQProducer,
    broker: &Broker,
    topic: &str,
    flush: &str,
) -> Vec<MessageQueue> {
    broker.create_topic(topic, TOPIC_QUEUES, flush);
    let queues = wait_for_route(producer, broker, topic).await;
    println!("topic {topic} (flush {flush}): {} queues over {SHARDS} shards", queues.len());
    queues
}

fn message(topic: &str, tag: &str, prefix: &str, index: u64) -> Message {
    Message::builder()
        .topic(topic)
        .tags(tag)
        .key(format!("{prefix}-k{index}"))
        .body(message_body(prefix, index))
        .build_unchecked()
}

fn assert_send_ok(result: &SendResult, what: &str) {
    assert_eq!(result.send_status, SendStatus::SendOk, "{what}: {result:?}");
}

/// A clustering or broadcasting push consumer with the settings every test shares;
/// the caller subscribes, registers a listener and starts it.
fn push_consumer(
    rt: Arc<ClientRuntime>,
    broker: &Broker,
    group: &str,
    instance: &str,
    model: MessageModel,
) -> DefaultMQPushConsumer {
    DefaultMQPushConsumer::builder(rt)
        .client_config(client_config(broker.namesrv_addr(), instance))
        .name_server_addr(broker.namesrv_addr().to_string())
        .consumer_group(group.to_string())
        .message_model(model)
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .await_termination_millis_when_shutdown(CONSUMER_SHUTDOWN_AWAIT_MS)
        .consume_thread_min(CONSUME_THREADS_MAX)
        .consume_thread_max(CONSUME_THREADS_MAX)
        .build()
}

async fn start_recording_consumer(
    rt: Arc<ClientRuntime>,
    broker: &Broker,
    group: &str,
    instance: &str,
    model: MessageModel,
    subscriptions: &[(&str, &str)],
    member: usize,
    recorder: &Arc<Recorder>,
) -> DefaultMQPushConsumer {
    let mut consumer = push_consumer(rt, broker, group, instance, model);
    for (topic, expression) in subscriptions {
        consumer.subscribe(*topic, *expression).await.expect("subscribe");
    }
    consumer.register_message_listener_concurrently(RecordingListener {
        member,
        recorder: Arc::clone(recorder),
        status: ConsumeConcurrentlyStatus::ConsumeSuccess,
    });
    consumer.start().await.expect("push consumer start");
    consumer
}

fn lite_pull_consumer(rt: Arc<ClientRuntime>, broker: &Broker, group: &str, instance: &str) -> DefaultLitePullConsumer {
    DefaultLitePullConsumer::builder(rt)
        .name_server_addr(broker.namesrv_addr().to_string())
        .client_ip("127.0.0.1")
        .instance_name(instance.to_string())
        .consumer_group(group.to_string())
        .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
        .pull_batch_size(32)
        // A long poll in flight holds the consumer's shutdown until the broker answers it;
        // a short hold keeps each shutdown to about this long instead of the default 20 s.
        .broker_suspend_max_time_millis(LITE_SUSPEND_MS)
        .consumer_timeout_millis_when_suspend(LITE_SUSPEND_MS + 5_000)
        .build()
        .expect("lite pull consumer build")
}

/// Polls `consumer` into `recorder` (as `member`) until `done` holds or `limit` passed.
async fn poll_until(
    consumer: &DefaultLitePullConsumer,
    recorder: &Recorder,
    member: usize,
    limit: Duration,
    done: impl Fn(&Recorder) -> bool,
) -> bool {
    let started = Instant::now();
    let deadline = started + limit;
    let (mut polls, mut empty, mut largest) = (0usize, 0usize, 0usize);
    // Bounded by the deadline, and by a count no real run gets near.
    for _ in 0..POLLS_MAX {
        if done(recorder) || Instant::now() >= deadline {
            break;
        }
        let msgs = consumer.poll_with_timeout(POLL_TIMEOUT_MS).await;
        polls += 1;
        if msgs.is_empty() {
            empty += 1;
        }
        largest = largest.max(msgs.len());
        for msg in msgs {
            let queue_topic = msg.topic().to_string();
            recorder.record_message(member, &queue_topic, &msg);
        }
    }
    println!("lite pull: {polls} polls ({empty} empty, largest {largest} messages) in {:?}", started.elapsed());
    done(recorder)
}

/// Removes the local offset files a broadcasting consumer leaves under
/// `$HOME/.rocketmq_offsets/<clientId>`; best effort.
fn remove_local_offsets(instances: &[&str]) {
    let Some(home) = std::env::var_os("HOME") else { return };
    for instance in instances {
        let dir = std::path::Path::new(&home).join(".rocketmq_offsets").join(format!("127.0.0.1@{instance}"));
        let _ = std::fs::remove_dir_all(dir);
    }
}

type QueueKey = (String, i32);

fn by_queue(deliveries: &[Delivery]) -> BTreeMap<QueueKey, Vec<Delivery>> {
    let mut map: BTreeMap<QueueKey, Vec<Delivery>> = BTreeMap::new();
    for d in deliveries {
        map.entry(d.queue()).or_default().push(d.clone());
    }
    map
}

fn log_hint(broker: &Broker) -> String {
    format!("broker log {}", broker.log_path().display())
}

// ---------------------------------------------------------------------------------------
// 1. Clustering: 10,000 messages sent sync, async, oneway and in batches, consumed by a
//    two-member push group; then a lite-pull consumer re-reads the topic from offset 0.

const MAIN_TOTAL: u64 = 10_000;
const MAIN_PER_MODE: u64 = MAIN_TOTAL / 4;
const MAIN_BATCH_SIZE: u64 = 100;
/// Async sends in flight at once: the client has no bound of its own by default.
const ASYNC_WINDOW: u64 = 256;

#[test]
fn clustering_10k_messages_four_send_modes_two_members_then_lite_pull_from_zero() {
    let _serial = serial();
    let broker = Broker::start();
    let clients = Clients::new("clustering");
    let rt = clients.runtime();
    clients.run(Duration::from_secs(300), async {
        let topic = unique("compat_main");
        let group = unique("compat_main_cg");
        let mut producer = start_producer(rt.clone(), &broker, &unique("prod")).await;
        create_topic(&mut producer, &broker, &topic).await;
        let recorder = Recorder::new();
        let subs = [(topic.as_str(), "*")];
        let c1_name = unique("c1");
        let c2_name = unique("c2");
        let mut c1 =
            start_recording_consumer(rt.clone(), &broker, &group, &c1_name, MessageModel::Clustering, &subs, 1, &recorder)
                .await;

        // Where each message was stored, from the send results: (broker, queue, offset).
        let stored: Arc<Mutex<HashMap<u64, (String, i32, i64)>>> = Arc::default();
        let started = Instant::now();

        // Sync: indexes [0, 2500).
        for i in 0..MAIN_PER_MODE {
            let result = producer
                .send_with_timeout(message(&topic, "main", "m", i), SEND_TIMEOUT_MS)
                .await
                .unwrap_or_else(|e| panic!("sync send {i}: {e}; {}", log_hint(&broker)))
                .expect("a sync send returns its result");
            assert_send_ok(&result, "sync send");
            let mq = result.message_queue.as_ref().expect("send result names its queue");
            stored.lock().unwrap().insert(
                i,
                (mq.broker_name().to_string(), mq.queue_id(), result.queue_offset as i64),
            );
        }
        println!("sync: {MAIN_PER_MODE} sent in {:?}", started.elapsed());

        // The second member joins mid-stream: the group rebalances while messages flow,
        // which is where RocketMQ allows duplicates.
        let mut c2 =
            start_recording_consumer(rt.clone(), &broker, &group, &c2_name, MessageModel::Clustering, &subs, 2, &recorder)
                .await;

        // Async: indexes [2500, 5000), at most ASYNC_WINDOW unanswered at a time.
        let async_ok = Arc::new(AtomicU64::new(0));
        let async_failed = Arc::new(AtomicU64::new(0));
        let async_errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let t = Instant::now();
        for i in MAIN_PER_MODE..2 * MAIN_PER_MODE {
            let issued = i - MAIN_PER_MODE;
            let window_ok = wait_until(Duration::from_secs(30), || {
                issued - (async_ok.load(Ordering::SeqCst) + async_failed.load(Ordering::SeqCst)) < ASYNC_WINDOW
            })
            .await;
            assert!(window_ok, "async sends stopped completing at {issued}; {}", log_hint(&broker));
            let (ok, failed, errors, stored) = (async_ok.clone(), async_failed.clone(), async_errors.clone(), stored.clone());
            producer
                .send_with_callback_timeout(
                    message(&topic, "main", "m", i),
                    move |result: Option<&SendResult>, error: Option<&ClientError>| match (result, error) {
                        (Some(r), None) if r.send_status == SendStatus::SendOk => {
                            if let Some(mq) = r.message_queue.as_ref() {
                                stored.lock().unwrap().insert(
                                    i,
                                    (mq.broker_name().to_string(), mq.queue_id(), r.queue_offset as i64),
                                );
                            }
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        other => {
                            errors.lock().unwrap().push(format!("async send {i}: {other:?}"));
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    },
                    SEND_TIMEOUT_MS,
                )
                .await
                .unwrap_or_else(|e| panic!("async send {i} not issued: {e}"));
        }
        let all_answered = wait_until(Duration::from_secs(60), || {
            async_ok.load(Ordering::SeqCst) + async_failed.load(Ordering::SeqCst) == MAIN_PER_MODE
        })
        .await;
        assert!(
            all_answered,
            "async: only {} of {MAIN_PER_MODE} callbacks ran; {}",
            async_ok.load(Ordering::SeqCst) + async_failed.load(Ordering::SeqCst),
            log_hint(&broker)
        );
        assert_eq!(
            async_failed.load(Ordering::SeqCst),
            0,
            "async send failures: {:?}",
            async_errors.lock().unwrap().iter().take(10).collect::<Vec<_>>()
        );
        println!("async: {MAIN_PER_MODE} sent and acknowledged in {:?}", t.elapsed());

        // Oneway: indexes [5000, 7500); no answer, the consumers are the only witness.
        let t = Instant::now();
        for i in 2 * MAIN_PER_MODE..3 * MAIN_PER_MODE {
            producer
                .send_oneway(message(&topic, "main", "m", i))
                .await
                .unwrap_or_else(|e| panic!("oneway send {i}: {e}"));
        }
        println!("oneway: {MAIN_PER_MODE} sent in {:?}", t.elapsed());

        // Batches: indexes [7500, 10000) in batches of 100; a batch lands in one queue at
        // consecutive offsets starting at the result's queue offset.
        let t = Instant::now();
        let mut first = 3 * MAIN_PER_MODE;
        while first < MAIN_TOTAL {
            let last = (first + MAIN_BATCH_SIZE).min(MAIN_TOTAL);
            let batch: Vec<Message> = (first..last).map(|i| message(&topic, "main", "m", i)).collect();
            let result = producer
                .send_batch_with_timeout(batch, SEND_TIMEOUT_MS)
                .await
                .unwrap_or_else(|e| panic!("batch send [{first}, {last}): {e}; {}", log_hint(&broker)));
            assert_send_ok(&result, "batch send");
            let mq = result.message_queue.as_ref().expect("batch result names its queue");
            let mut stored = stored.lock().unwrap();
            for (n, i) in (first..last).enumerate() {
                stored.insert(
                    i,
                    (mq.broker_name().to_string(), mq.queue_id(), result.queue_offset as i64 + n as i64),
                );
            }
            first = last;
        }
        println!("batch: {MAIN_PER_MODE} sent in {:?}", t.elapsed());

        let complete = wait_until(Duration::from_secs(120), || recorder.distinct_indexes().len() as u64 >= MAIN_TOTAL).await;
        let consumed_in = started.elapsed();
        c1.shutdown().await;
        c2.shutdown().await;

        let deliveries = recorder.snapshot();
        let got = recorder.distinct_indexes();
        let m1 = recorder.distinct_indexes_of(1).len();
        let m2 = recorder.distinct_indexes_of(2).len();
        let duplicates = recorder.duplicate_count();
        println!(
            "clustering: {} deliveries, {} distinct of {MAIN_TOTAL}, member1 {m1}, member2 {m2}, duplicates {duplicates}, in {consumed_in:?}",
            deliveries.len(),
            got.len()
        );
        assert!(
            complete,
            "clustering group did not receive every message: {}; {}",
            describe_missing(0..MAIN_TOTAL, &got),
            log_hint(&broker)
        );
        assert!(got.iter().all(|i| *i < MAIN_TOTAL), "unexpected indexes received");
        assert!(m1 > 0 && m2 > 0, "both members must consume after the rebalance: member1 {m1}, member2 {m2}");

        // The listener always succeeds, so nothing may come through the retry topic.
        let retried: Vec<&Delivery> = deliveries.iter().filter(|d| d.queue_topic != topic).collect();
        assert!(
            retried.is_empty(),
            "{} deliveries came from another queue topic although the listener never failed, first: {:?}",
            retried.len(),
            retried.first()
        );

        // Every message arrived where its send result said it was stored.
        let stored = stored.lock().unwrap();
        assert_eq!(stored.len() as u64, 3 * MAIN_PER_MODE, "send results recorded for sync, async and batch");
        for d in &deliveries {
            let index = d.index.expect("main bodies carry an index");
            assert_eq!(d.topic, topic, "message {index} topic");
            assert_eq!(d.tags.as_deref(), Some("main"), "message {index} tag");
            if let Some((b, q, o)) = stored.get(&index) {
                assert_eq!(
                    (&d.broker_name, d.queue_id, d.queue_offset),
                    (b, *q, *o),
                    "message {index} consumed from a different (broker, queue, offset) than its send result said"
                );
            }
        }

        // Duplicates: only where a rebalance allows them, i.e. a message of a queue that was
        // handed over from member 1 to member 2, consumed once by each (in either order:
        // the new owner may start from the last commit before the old one lets go). The
        // same member never sees a message twice.
        let mut per_index: HashMap<u64, Vec<&Delivery>> = HashMap::new();
        for d in &deliveries {
            per_index.entry(d.index.unwrap_or(u64::MAX)).or_default().push(d);
        }
        let queues_of = |member: usize| -> HashSet<QueueKey> {
            deliveries.iter().filter(|d| d.member == member).map(|d| d.queue()).collect()
        };
        let moved: HashSet<QueueKey> = queues_of(1).intersection(&queues_of(2)).cloned().collect();
        let mut duplicated_on: BTreeMap<QueueKey, usize> = BTreeMap::new();
        for (index, ds) in &per_index {
            if ds.len() < 2 {
                continue;
            }
            let mut members: Vec<usize> = ds.iter().map(|d| d.member).collect();
            members.sort_unstable();
            assert_eq!(
                members,
                vec![1, 2],
                "message {index} delivered {} times to members {members:?}: a duplicate outside a rebalance hand-over",
                ds.len()
            );
            assert!(moved.contains(&ds[0].queue()), "message {index} duplicated on a queue that did not move");
            *duplicated_on.entry(ds[0].queue()).or_default() += 1;
        }
        println!(
            "clustering: {duplicates} duplicates, each once per member, all on queues both members pulled around the rebalance: {duplicated_on:?}"
        );

        // Lite pull, fresh group: the same topic from offset 0, every message exactly once,
        // each queue read in order starting at 0.
        let pull_recorder = Recorder::new();
        let lite = lite_pull_consumer(rt.clone(), &broker, &unique("compat_lite"), &unique("lite"));
        lite.subscribe_with_expression(&topic, "*").await.expect("lite pull subscribe");
        lite.start().await.expect("lite pull start");
        let t = Instant::now();
        let pulled_all = poll_until(&lite, &pull_recorder, 3, Duration::from_secs(90), |r| {
            r.distinct_indexes().len() as u64 >= MAIN_TOTAL
        })
        .await;
        let t_shutdown = Instant::now();
        lite.shutdown().await;
        println!("lite pull: shutdown took {:?}", t_shutdown.elapsed());
        let pulled = pull_recorder.snapshot();
        let pulled_distinct = pull_recorder.distinct_indexes();
        println!(
            "lite pull: {} messages, {} distinct, duplicates {}, in {:?}",
            pulled.len(),
            pulled_distinct.len(),
            pull_recorder.duplicate_count(),
            t.elapsed()
        );
        assert!(
            pulled_all,
            "lite pull consumer did not read every message: {}; {}",
            describe_missing(0..MAIN_TOTAL, &pulled_distinct),
            log_hint(&broker)
        );
        assert_eq!(pull_recorder.duplicate_count(), 0, "a single lite-pull consumer without rebalance saw duplicates");
        for (queue, ds) in by_queue(&pulled) {
            let offsets: Vec<i64> = ds.iter().map(|d| d.queue_offset).collect();
            let expected: Vec<i64> = (0..offsets.len() as i64).collect();
            assert_eq!(offsets, expected, "lite pull on {queue:?} must read offsets 0, 1, 2, ... in order");
        }
    });
}

// ---------------------------------------------------------------------------------------
// 2. Broadcasting: every member receives every message.

#[test]
fn broadcasting_delivers_every_message_to_each_member() {
    const COUNT: u64 = 1_000;
    let _serial = serial();
    let broker = Broker::start();
    let clients = Clients::new("broadcast");
    let rt = clients.runtime();
    let instances = [unique("b1"), unique("b2")];
    clients.run(Duration::from_secs(180), async {
        let topic = unique("compat_bcast");
        let group = unique("compat_bcast_cg");
        let mut producer = start_producer(rt.clone(), &broker, &unique("prod")).await;
        create_topic(&mut producer, &broker, &topic).await;
        let recorder = Recorder::new();
        let subs = [(topic.as_str(), "*")];
        let mut b1 = start_recording_consumer(
            rt.clone(),
            &broker,
            &group,
            &instances[0],
            MessageModel::Broadcasting,
            &subs,
            1,
            &recorder,
        )
        .await;
        let mut b2 = start_recording_consumer(
            rt.clone(),
            &broker,
            &group,
            &instances[1],
            MessageModel::Broadcasting,
            &subs,
            2,
            &recorder,
        )
        .await;
        for i in 0..COUNT {
            let result = producer
                .send_with_timeout(message(&topic, "b", "b", i), SEND_TIMEOUT_MS)
                .await
                .unwrap_or_else(|e| panic!("send {i}: {e}"))
                .expect("sync send result");
            assert_send_ok(&result, "send");
        }
        let complete = wait_until(Duration::from_secs(60), || {
            recorder.distinct_indexes_of(1).len() as u64 >= COUNT
                && recorder.distinct_indexes_of(2).len() as u64 >= COUNT
        })
        .await;
        b1.shutdown().await;
        b2.shutdown().await;
        let deliveries = recorder.snapshot();
        for member in [1, 2] {
            let got = recorder.distinct_indexes_of(member);
            let total = deliveries.iter().filter(|d| d.member == member).count();
            println!(
                "broadcasting member {member}: {total} deliveries, {} distinct of {COUNT}, duplicates {}",
                got.len(),
                total - got.len()
            );
            assert!(
                complete || got.len() as u64 == COUNT,
                "broadcasting member {member} missed messages: {}; {}",
                describe_missing(0..COUNT, &got),
                log_hint(&broker)
            );
            assert_eq!(got.len() as u64, COUNT, "member {member}");
            // No rebalance moves queues between broadcasting members, so no duplicate is allowed.
            assert_eq!(total, got.len(), "broadcasting member {member} received duplicates");
        }
    });
    remove_local_offsets(&[&instances[0], &instances[1]]);
}

// ---------------------------------------------------------------------------------------
// 3. Ordered messages: a queue selector pins each order key to one queue; an orderly
//    listener sees each key's messages in send order.

#[test]
fn orderly_listener_sees_each_selector_queue_in_order() {
    const KEYS: u64 = 8;
    const PER_KEY: u64 = 60;
    let _serial = serial();
    let broker = Broker::start();
    let clients = Clients::new("orderly");
    let rt = clients.runtime();
    clients.run(Duration::from_secs(180), async {
        let topic = unique("compat_order");
        let group = unique("compat_order_cg");
        let mut producer = start_producer(rt.clone(), &broker, &unique("prod")).await;
        create_topic(&mut producer, &broker, &topic).await;

        let recorder = Recorder::new();
        let mut consumer = push_consumer(rt.clone(), &broker, &group, &unique("o1"), MessageModel::Clustering);
        consumer.subscribe(topic.as_str(), "*").await.expect("subscribe");
        consumer
            .register_message_listener_orderly(OrderlyRecordingListener { member: 1, recorder: Arc::clone(&recorder) });
        consumer.start().await.expect("orderly consumer start");

        // index = key * 1000 + seq; sends interleave the keys.
        let mut key_queue: HashMap<u64, QueueKey> = HashMap::new();
        for seq in 0..PER_KEY {
            for key in 0..KEYS {
                let index = key * 1000 + seq;
                let result = producer
                    .send_with_selector_timeout(
                        message(&topic, "order", "o", index),
                        |mqs: &[MessageQueue], _msg: &Message, key: &u64| {
                            Some(mqs[(*key as usize) % mqs.len()].clone())
                        },
                        key,
                        SEND_TIMEOUT_MS,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("selector send {index}: {e}"))
                    .expect("sync selector send result");
                assert_send_ok(&result, "selector send");
                let mq = result.message_queue.as_ref().expect("queue in result");
                let q = (mq.broker_name().to_string(), mq.queue_id());
                let pinned = key_queue.entry(key).or_insert_with(|| q.clone());
                assert_eq!(*pinned, q, "the selector must pin key {key} to one queue");
            }
        }
        let total = KEYS * PER_KEY;
        let complete = wait_until(Duration::from_secs(60), || recorder.distinct_indexes().len() as u64 >= total).await;
        consumer.shutdown().await;
        let deliveries = recorder.snapshot();
        let got = recorder.distinct_indexes();
        println!("orderly: {} deliveries, {} distinct of {total}", deliveries.len(), got.len());
        let expected: Vec<u64> = (0..KEYS).flat_map(|k| (0..PER_KEY).map(move |s| k * 1000 + s)).collect();
        assert!(
            complete,
            "orderly consumer missed messages: {}; {}",
            describe_missing(expected.iter().copied(), &got),
            log_hint(&broker)
        );
        // One consumer, no rebalance: exactly once, and per key exactly the send order.
        assert_eq!(deliveries.len() as u64, total, "orderly consumer received duplicates");
        for key in 0..KEYS {
            let seqs: Vec<u64> =
                deliveries.iter().filter_map(|d| d.index).filter(|i| i / 1000 == key).map(|i| i % 1000).collect();
            let in_order: Vec<u64> = (0..PER_KEY).collect();
            assert_eq!(seqs, in_order, "key {key}: messages out of send order");
            for d in deliveries.iter().filter(|d| d.index.map(|i| i / 1000) == Some(key)) {
                assert_eq!(Some(&d.queue()), key_queue.get(&key), "key {key} consumed from another queue");
            }
        }
        for (queue, ds) in by_queue(&deliveries) {
            let offsets: Vec<i64> = ds.iter().map(|d| d.queue_offset).collect();
            assert!(
                offsets.windows(2).all(|w| w[1] == w[0] + 1),
                "queue {queue:?}: offsets not consumed one after another: {offsets:?}"
            );
        }
    });
}

// ---------------------------------------------------------------------------------------
// 4. Tag filtering: a group subscribed to "TagA || TagC" gets exactly those; a group
//    subscribed to "TagB" gets exactly the rest.

#[test]
fn tag_subscription_delivers_only_matching_tags() {
    const COUNT: u64 = 300;
    const TAGS: [&str; 3] = ["TagA", "TagB", "TagC"];
    let _serial = serial();
    let broker = Broker::start();
    let clients = Clients::new("tags");
    let rt = clients.runtime();
    clients.run(Duration::from_secs(180), async {
        let topic = unique("compat_tags");
        let mut producer = start_producer(rt.clone(), &broker, &unique("prod")).await;
        create_topic(&mut producer, &broker, &topic).await;
        let ac = Recorder::new();
        let b = Recorder::new();
        let mut c_ac = start_recording_consumer(
            rt.clone(),
            &broker,
            &unique("compat_tags_ac"),
            &unique("tac"),
            MessageModel::Clustering,
            &[(topic.as_str(), "TagA || TagC")],
            1,
            &ac,
        )
        .await;
        let mut c_b = start_recording_consumer(
            rt.clone(),
            &broker,
            &unique("compat_tags_b"),
            &unique("tb"),
            MessageModel::Clustering,
            &[(topic.as_str(), "TagB")],
            2,
            &b,
        )
        .await;
        for i in 0..COUNT {
            let tag = TAGS[(i % 3) as usize];
            let result = producer
                .send_with_timeout(message(&topic, tag, "t", i), SEND_TIMEOUT_MS)
                .await
                .unwrap_or_else(|e| panic!("send {i}: {e}"))
                .expect("sync send result");
            assert_send_ok(&result, "send");
        }
        let want_ac: BTreeSet<u64> = (0..COUNT).filter(|i| i % 3 != 1).collect();
        let want_b: BTreeSet<u64> = (0..COUNT).filter(|i| i % 3 == 1).collect();
        let complete = wait_until(Duration::from_secs(60), || {
            ac.distinct_indexes().len() >= want_ac.len() && b.distinct_indexes().len() >= want_b.len()
        })
        .await;
        // Anything that should not arrive has had the same time, and then some.
        tokio::time::sleep(Duration::from_secs(2)).await;
        c_ac.shutdown().await;
        c_b.shutdown().await;
        let got_ac: BTreeSet<u64> = ac.distinct_indexes().into_iter().collect();
        let got_b: BTreeSet<u64> = b.distinct_indexes().into_iter().collect();
        println!(
            "tags: 'TagA || TagC' group got {} ({} deliveries), 'TagB' group got {} ({} deliveries)",
            got_ac.len(),
            ac.len(),
            got_b.len(),
            b.len()
        );
        assert!(complete, "tag groups did not receive their messages in time; {}", log_hint(&broker));
        assert_eq!(got_ac, want_ac, "'TagA || TagC' group");
        assert_eq!(got_b, want_b, "'TagB' group");
        for d in ac.snapshot() {
            assert!(matches!(d.tags.as_deref(), Some("TagA") | Some("TagC")), "{d:?}");
        }
        for d in b.snapshot() {
            assert_eq!(d.tags.as_deref(), Some("TagB"), "{d:?}");
        }
    });
}

// ---------------------------------------------------------------------------------------
// 5. Restart mid-stream: a consumer stopped while messages keep arriving, then started
//    again in the same group, resumes exactly at the offsets it committed.

#[test]
fn consumer_restarted_mid_stream_resumes_from_committed_offset() {
    const COUNT: u64 = 2_000;
    /// The first consumer is stopped once it has this many messages.
    const STOP_AFTER: usize = 600;
    /// The producer does not send past this index until the second consumer is up, so
    /// some messages are produced while no consumer runs and some after the restart.
    const HOLD_AT: u64 = 1_500;
    let _serial = serial();
    let broker = Broker::start();
    let clients = Clients::new("restart");
    let rt = clients.runtime();
    clients.run(Duration::from_secs(240), async {
        let topic = unique("compat_restart");
        let group = unique("compat_restart_cg");
        let mut producer = start_producer(rt.clone(), &broker, &unique("prod")).await;
        let queues = create_topic(&mut producer, &broker, &topic).await;
        let recorder = Recorder::new();
        let subs = [(topic.as_str(), "*")];
        let second_up = AtomicBool::new(false);
        let producer_done = AtomicBool::new(false);

        let mut a =
            start_recording_consumer(rt.clone(), &broker, &group, &unique("ra"), MessageModel::Clustering, &subs, 1, &recorder)
                .await;

        let produce = async {
            for i in 0..COUNT {
                if i == HOLD_AT {
                    let up = wait_until(Duration::from_secs(90), || second_up.load(Ordering::SeqCst)).await;
                    assert!(up, "second consumer never came up");
                }
                let result = producer
                    .send_with_timeout(message(&topic, "r", "r", i), SEND_TIMEOUT_MS)
                    .await
                    .unwrap_or_else(|e| panic!("send {i}: {e}"))
                    .expect("sync send result");
                assert_send_ok(&result, "send");
                // A steady stream rather than a burst, so the restart lands in the middle.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            producer_done.store(true, Ordering::SeqCst);
        };

        let control = async {
            let enough = wait_until(Duration::from_secs(60), || recorder.len() >= STOP_AFTER).await;
            assert!(enough, "first consumer got only {} messages; {}", recorder.len(), log_hint(&broker));
            assert!(!producer_done.load(Ordering::SeqCst), "the producer must still be sending at the restart");
            a.shutdown().await;
            let first_run = recorder.snapshot();

            // What the broker holds as committed for the group, read through a client of the
            // same group that consumes nothing.
            let probe = lite_pull_consumer(rt.clone(), &broker, &group, &unique("probe"));
            probe.start().await.expect("probe start");
            let mut committed: BTreeMap<QueueKey, i64> = BTreeMap::new();
            for mq in &queues {
                let offset = probe.committed(mq).await.unwrap_or_else(|e| panic!("committed({mq:?}): {e}"));
                committed.insert((mq.broker_name().to_string(), mq.queue_id()), offset);
            }
            probe.shutdown().await;
            println!("restart: first consumer stopped after {} messages; committed {committed:?}", first_run.len());

            let b = start_recording_consumer(
                rt.clone(),
                &broker,
                &group,
                &unique("rb"),
                MessageModel::Clustering,
                &subs,
                2,
                &recorder,
            )
            .await;
            second_up.store(true, Ordering::SeqCst);
            (first_run, committed, b)
        };

        let ((), (first_run, committed, mut b)) = tokio::join!(produce, control);
        let complete = wait_until(Duration::from_secs(60), || recorder.distinct_indexes().len() as u64 >= COUNT).await;
        b.shutdown().await;

        let deliveries = recorder.snapshot();
        let got = recorder.distinct_indexes();
        let a_set = recorder.distinct_indexes_of(1);
        let b_set = recorder.distinct_indexes_of(2);
        let both = a_set.intersection(&b_set).count();
        println!(
            "restart: first run {} distinct, second run {} distinct, redelivered after restart {both}, total distinct {} of {COUNT}",
            a_set.len(),
            b_set.len(),
            got.len()
        );
        assert!(
            complete,
            "messages lost across the restart: {}; {}",
            describe_missing(0..COUNT, &got),
            log_hint(&broker)
        );

        // The listener always succeeds, so every delivery comes from the topic's own queues.
        let retried = deliveries.iter().filter(|d| d.queue_topic != topic).count();
        assert_eq!(retried, 0, "deliveries through the retry topic although the listener never failed");

        let a_by_queue = by_queue(&first_run);
        let b_by_queue = by_queue(&deliveries.iter().filter(|d| d.member == 2).cloned().collect::<Vec<_>>());
        for (queue, &c) in &committed {
            let a_offsets: BTreeSet<i64> = a_by_queue
                .get(queue)
                .map(|ds| ds.iter().map(|d| d.queue_offset).collect())
                .unwrap_or_default();
            // The contiguous prefix 0..k the first consumer finished: its commit must cover it.
            let prefix = (0..).take_while(|o| a_offsets.contains(o)).count() as i64;
            let a_max_next = a_offsets.iter().next_back().map_or(0, |m| m + 1);
            assert!(
                c >= prefix,
                "queue {queue:?}: committed offset {c} is behind what the first consumer finished (0..{prefix}); {}",
                log_hint(&broker)
            );
            assert!(
                c <= a_max_next,
                "queue {queue:?}: committed offset {c} is past anything the first consumer saw ({a_max_next})"
            );
            let resume = c.max(0);
            let b_min = b_by_queue.get(queue).and_then(|ds| ds.iter().map(|d| d.queue_offset).min());
            assert_eq!(
                b_min,
                Some(resume),
                "queue {queue:?}: the restarted consumer must resume at the committed offset {c}; {}",
                log_hint(&broker)
            );
            // Exactly the first run's messages at or past the commit come again.
            let redelivered: BTreeSet<i64> = b_by_queue
                .get(queue)
                .map(|ds| ds.iter().map(|d| d.queue_offset).filter(|o| a_offsets.contains(o)).collect())
                .unwrap_or_default();
            let past_commit: BTreeSet<i64> = a_offsets.iter().copied().filter(|o| *o >= resume).collect();
            assert_eq!(redelivered, past_commit, "queue {queue:?}: redelivered offsets");
        }
    });
}

// ---------------------------------------------------------------------------------------
// 6. Retry and DLQ: a listener that always answers "reconsume later" sees each message
//    again through %RETRY%<group> (reconsumeTimes 1, 2, after the broker's 10 s and 30 s
//    back-off) and the message then lands in %DLQ%<group>.

#[test]
fn reconsume_later_retries_through_retry_topic_then_lands_in_dlq() {
    const COUNT: u64 = 2;
    const MAX_RECONSUME: i32 = 2;
    let _serial = serial();
    let broker = Broker::start();
    let clients = Clients::new("retry");
    let rt = clients.runtime();
    clients.run(Duration::from_secs(200), async {
        let topic = unique("compat_retry");
        let group = unique("compat_retry_cg");
        let retry_topic = format!("%RETRY%{group}");
        let dlq_topic = format!("%DLQ%{group}");
        let mut producer = start_producer(rt.clone(), &broker, &unique("prod")).await;
        create_topic(&mut producer, &broker, &topic).await;

        // Each shard creates the group's retry topic when the group's first heartbeat
        // reaches it (RocketMQ creates it per broker the same way). A starting client
        // heartbeats the shards one after the other, and its first scheduled route refresh
        // (10 ms after start) can fall between the two: it then learns the retry queue of
        // one shard only and the next refresh is 30 s later, so a retry stored on the other
        // shard waits up to 50 s (seen: first retry after 40 s). That is the client's
        // start-up race, not back-off timing, so a first member of the group creates the
        // retry topics and leaves, and the consumer under test starts with the full route.
        let warm_recorder = Recorder::new();
        let mut warm = start_recording_consumer(
            rt.clone(),
            &broker,
            &group,
            &unique("rt_warm"),
            MessageModel::Clustering,
            &[(topic.as_str(), "*")],
            0,
            &warm_recorder,
        )
        .await;
        wait_for_route(&mut producer, &broker, &retry_topic).await;
        warm.shutdown().await;
        assert!(warm_recorder.is_empty(), "nothing was sent yet");

        let recorder = Recorder::new();
        let mut consumer = DefaultMQPushConsumer::builder(rt.clone())
            .client_config(client_config(broker.namesrv_addr(), &unique("rt")))
            .name_server_addr(broker.namesrv_addr().to_string())
            .consumer_group(group.clone())
            .message_model(MessageModel::Clustering)
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .max_reconsume_times(MAX_RECONSUME)
            .await_termination_millis_when_shutdown(CONSUMER_SHUTDOWN_AWAIT_MS)
            .build();
        consumer.subscribe(topic.as_str(), "*").await.expect("subscribe");
        consumer.register_message_listener_concurrently(RecordingListener {
            member: 1,
            recorder: Arc::clone(&recorder),
            status: ConsumeConcurrentlyStatus::ReconsumeLater,
        });
        consumer.start().await.expect("consumer start");

        let mut origin_shards = BTreeSet::new();
        for i in 0..COUNT {
            let result = producer
                .send_with_timeout(message(&topic, "retry", "x", i), SEND_TIMEOUT_MS)
                .await
                .unwrap_or_else(|e| panic!("send {i}: {e}"))
                .expect("sync send result");
            assert_send_ok(&result, "send");
            let mq = result.message_queue.as_ref().expect("queue in result");
            origin_shards.insert(mq.broker_name().to_string());
        }
        let expected = COUNT as usize * (MAX_RECONSUME as usize + 1);
        // 10 s + 30 s of broker back-off, plus pull latency.
        let all_tries = wait_until(Duration::from_secs(90), || recorder.len() >= expected).await;

        // The DLQ is created by the broker on the last send-back; read it from the start.
        // Send-back goes to the shard that stores the message, so each shard that holds an
        // original has the DLQ (RocketMQ creates it per broker), and no other does.
        let dlq_queues = wait_for_route_on(&mut producer, &broker, &dlq_topic, |b| *b == origin_shards).await;
        println!("dlq {dlq_topic}: {} queue(s)", dlq_queues.len());
        let dlq_recorder = Recorder::new();
        let dlq_reader = lite_pull_consumer(rt.clone(), &broker, &unique("compat_dlq_reader"), &unique("dlq"));
        dlq_reader.subscribe_with_expression(&dlq_topic, "*").await.expect("subscribe to the DLQ");
        dlq_reader.start().await.expect("dlq reader start");
        let in_dlq = poll_until(&dlq_reader, &dlq_recorder, 9, Duration::from_secs(45), |r| {
            r.distinct_indexes().len() as u64 >= COUNT
        })
        .await;
        dlq_reader.shutdown().await;
        // Give a wrongly scheduled fourth try a moment to show up before counting.
        tokio::time::sleep(Duration::from_secs(2)).await;
        consumer.shutdown().await;

        let deliveries = recorder.snapshot();
        for d in &deliveries {
            println!(
                "retry: message {:?} try {} from queue topic {} ({}#{}) at +{:?}",
                d.index,
                d.reconsume_times,
                d.queue_topic,
                d.broker_name,
                d.queue_id,
                d.received_at.duration_since(deliveries[0].received_at)
            );
        }
        assert!(
            all_tries,
            "expected {expected} deliveries ({COUNT} messages x {} tries), got {}; {}",
            MAX_RECONSUME + 1,
            deliveries.len(),
            log_hint(&broker)
        );
        assert_eq!(deliveries.len(), expected, "no try beyond maxReconsumeTimes");
        for i in 0..COUNT {
            let tries: Vec<&Delivery> = deliveries.iter().filter(|d| d.index == Some(i)).collect();
            let times: Vec<i32> = tries.iter().map(|d| d.reconsume_times).collect();
            assert_eq!(times, (0..=MAX_RECONSUME).collect::<Vec<_>>(), "message {i}: reconsume counts");
            assert_eq!(tries[0].queue_topic, topic, "message {i}: first try from the topic itself");
            for t in &tries[1..] {
                assert_eq!(t.queue_topic, retry_topic, "message {i}: later tries come through the retry topic");
                assert_eq!(t.topic, topic, "message {i}: the client restores the original topic on retries");
            }
            // The broker's back-off for delayLevel 0 is level 3 + reconsumeTimes: 10 s, then 30 s.
            let gap1 = tries[1].received_at.duration_since(tries[0].received_at);
            let gap2 = tries[2].received_at.duration_since(tries[1].received_at);
            println!("retry: message {i} gaps {gap1:?}, {gap2:?}");
            assert!(
                gap1 >= Duration::from_millis(9_900) && gap1 <= Duration::from_secs(20),
                "message {i}: first retry after {gap1:?}, expected about 10 s"
            );
            assert!(
                gap2 >= Duration::from_millis(29_900) && gap2 <= Duration::from_secs(45),
                "message {i}: second retry after {gap2:?}, expected about 30 s"
            );
        }

        let dlq = dlq_recorder.snapshot();
        println!(
            "dlq: {} message(s): {:?}",
            dlq.len(),
            dlq.iter().map(|d| (d.index, d.reconsume_times)).collect::<Vec<_>>()
        );
        assert!(in_dlq, "messages not found in {dlq_topic}; {}", log_hint(&broker));
        let dlq_indexes: BTreeSet<u64> = dlq.iter().filter_map(|d| d.index).collect();
        assert_eq!(dlq_indexes, (0..COUNT).collect::<BTreeSet<_>>(), "DLQ content");
        assert_eq!(dlq.len() as u64, COUNT, "each message lands in the DLQ once");
        for d in &dlq {
            assert_eq!(d.tags.as_deref(), Some("retry"), "DLQ message keeps its tag: {d:?}");
            // Like every send-back record, the dead letter counts the failed try.
            assert_eq!(d.reconsume_times, MAX_RECONSUME + 1, "DLQ record's reconsume count: {d:?}");
        }
    });
}

// ---------------------------------------------------------------------------------------
// 7. Delay level 2 (5 s): delivered no earlier than 5 s after the send and no later than
//    1.5 s after that (1 s from the issue, plus the client's pull scheduling).

#[test]
fn delay_level_2_message_arrives_after_five_seconds() {
    const DELAYED: u64 = 3;
    const DELAY: Duration = Duration::from_secs(5);
    const LATE_SLACK: Duration = Duration::from_millis(1_500);
    let _serial = serial();
    let broker = Broker::start();
    let clients = Clients::new("delay");
    let rt = clients.runtime();
    clients.run(Duration::from_secs(120), async {
        let topic = unique("compat_delay");
        let group = unique("compat_delay_cg");
        let mut producer = start_producer(rt.clone(), &broker, &unique("prod")).await;
        let queues = create_topic(&mut producer, &broker, &topic).await;
        let recorder = Recorder::new();
        let mut consumer = start_recording_consumer(
            rt.clone(),
            &broker,
            &group,
            &unique("d1"),
            MessageModel::Clustering,
            &[(topic.as_str(), "*")],
            1,
            &recorder,
        )
        .await;

        // Warm-up: one message per queue, all consumed, so every queue has a pull in
        // flight (long polling) before the delayed messages are sent.
        let warm_base = 1_000_000;
        for (n, mq) in queues.iter().enumerate() {
            let result = producer
                .send_to_queue_with_timeout(
                    message(&topic, "warm", "w", warm_base + n as u64),
                    mq.clone(),
                    SEND_TIMEOUT_MS,
                )
                .await
                .unwrap_or_else(|e| panic!("warm-up send to {mq:?}: {e}"))
                .expect("sync send result");
            assert_send_ok(&result, "warm-up send");
        }
        let warm = wait_until(Duration::from_secs(30), || recorder.len() >= queues.len()).await;
        assert!(warm, "warm-up messages not consumed; {}", log_hint(&broker));
        tokio::time::sleep(Duration::from_millis(500)).await;

        let mut sent_at: HashMap<u64, Instant> = HashMap::new();
        for i in 0..DELAYED {
            let msg = Message::builder()
                .topic(topic.as_str())
                .tags("delayed")
                .key(format!("d-k{i}"))
                .body(message_body("d", i))
                .delay_level(2)
                .build_unchecked();
            let t = Instant::now();
            let result = producer
                .send_with_timeout(msg, SEND_TIMEOUT_MS)
                .await
                .unwrap_or_else(|e| panic!("delayed send {i}: {e}"))
                .expect("sync send result");
            assert_send_ok(&result, "delayed send");
            sent_at.insert(i, t);
        }
        let arrived = wait_until(Duration::from_secs(20), || {
            recorder.snapshot().iter().filter(|d| d.index.is_some_and(|i| i < DELAYED)).count() as u64 >= DELAYED
        })
        .await;
        consumer.shutdown().await;
        let deliveries: Vec<Delivery> =
            recorder.snapshot().into_iter().filter(|d| d.index.is_some_and(|i| i < DELAYED)).collect();
        assert!(arrived, "delayed messages not delivered within 20 s: got {}; {}", deliveries.len(), log_hint(&broker));
        assert_eq!(deliveries.len() as u64, DELAYED, "each delayed message exactly once");
        for d in &deliveries {
            let i = d.index.expect("index");
            let waited = d.received_at.duration_since(sent_at[&i]);
            println!(
                "delay: message {i} delivered {} ms after the send started (store - born = {} ms, tag {:?})",
                waited.as_millis(),
                d.store_timestamp_ms - d.born_timestamp_ms,
                d.tags
            );
            assert_eq!(d.topic, topic, "delivered on the real topic");
            assert!(waited >= DELAY, "message {i} arrived after {waited:?}, before its 5 s delay");
            assert!(
                waited <= DELAY + LATE_SLACK,
                "message {i} arrived after {waited:?}, later than 5 s + {LATE_SLACK:?}; {}",
                log_hint(&broker)
            );
        }
    });
}

// ---------------------------------------------------------------------------------------
// 8. Flush modes: a topic created with `sync` flush and one with `async` both take sends
//    (every one SEND_OK, none FLUSH_DISK_TIMEOUT) and deliver them.

#[test]
fn sync_and_async_flush_topics_both_work() {
    const COUNT: u64 = 200;
    let _serial = serial();
    let broker = Broker::start();
    let clients = Clients::new("flush");
    let rt = clients.runtime();
    clients.run(Duration::from_secs(180), async {
        let sync_topic = unique("compat_flush_sync");
        let async_topic = unique("compat_flush_async");
        let mut producer = start_producer(rt.clone(), &broker, &unique("prod")).await;
        create_topic_with_admin(&mut producer, &broker, &sync_topic, "sync").await;
        create_topic_with_admin(&mut producer, &broker, &async_topic, "async").await;
        // The broker keeps each topic's mode: the NameServer's topic list (fed by the
        // shards' registrations) reports it.
        let listing = broker.admin(&["topic", "list"], &["--json"]);
        let listing: serde_json::Value =
            serde_json::from_str(&listing).unwrap_or_else(|e| panic!("admin topic list --json: {e}: {listing}"));
        let flush_of = |name: &str| -> Option<String> {
            listing["topics"]
                .as_array()?
                .iter()
                .find(|t| t["topic"] == name)
                .and_then(|t| t["flush"].as_str().map(str::to_string))
        };
        assert_eq!(flush_of(&sync_topic).as_deref(), Some("sync"), "flush mode of {sync_topic}: {listing}");
        assert_eq!(flush_of(&async_topic).as_deref(), Some("async"), "flush mode of {async_topic}: {listing}");

        let recorder = Recorder::new();
        let mut consumer = start_recording_consumer(
            rt.clone(),
            &broker,
            &unique("compat_flush_cg"),
            &unique("f1"),
            MessageModel::Clustering,
            &[(sync_topic.as_str(), "*"), (async_topic.as_str(), "*")],
            1,
            &recorder,
        )
        .await;
        for (base, topic) in [(0, &sync_topic), (COUNT, &async_topic)] {
            let t = Instant::now();
            for i in base..base + COUNT {
                let result = producer
                    .send_with_timeout(message(topic, "f", "f", i), SEND_TIMEOUT_MS)
                    .await
                    .unwrap_or_else(|e| panic!("send {i} to {topic}: {e}; {}", log_hint(&broker)))
                    .expect("sync send result");
                assert_send_ok(&result, topic);
            }
            println!("flush: {COUNT} sync sends to {topic} in {:?}", t.elapsed());
        }
        let complete =
            wait_until(Duration::from_secs(60), || recorder.distinct_indexes().len() as u64 >= 2 * COUNT).await;
        consumer.shutdown().await;
        let got = recorder.distinct_indexes();
        assert!(complete, "flush topics: {}; {}", describe_missing(0..2 * COUNT, &got), log_hint(&broker));
        for d in recorder.snapshot() {
            let i = d.index.expect("index");
            let want = if i < COUNT { &sync_topic } else { &async_topic };
            assert_eq!(&d.topic, want, "message {i} on the wrong topic");
        }
        assert_eq!(recorder.duplicate_count(), 0, "one consumer, no rebalance: no duplicates");
    });
}

/// Issue 12, item 6: with auto-create off, the client's own create-topic path works,
/// keyed by TBW102 or by the cluster name (it looks up the key topic's route and sends
/// UPDATE_AND_CREATE_TOPIC to every master in it), and a send to a topic made either
/// way is SEND_OK.
#[test]
fn create_topic_through_the_client_with_auto_create_off() {
    let _serial = serial();
    let broker = Broker::start_with(&["--auto-create-topic", "false"]);
    let clients = Clients::new("create");
    let rt = clients.runtime();
    clients.run(Duration::from_secs(120), async {
        let mut producer = start_producer(rt.clone(), &broker, &unique("prod")).await;
        for key in [AUTO_CREATE_KEY, "DefaultCluster"] {
            let topic = unique("compat_made");
            producer
                .create_topic(key, &topic, TOPIC_QUEUES as i32, HashMap::new())
                .await
                .unwrap_or_else(|e| panic!("create {topic} keyed by {key}: {e}; {}", log_hint(&broker)));
            let queues = wait_for_route(&mut producer, &broker, &topic).await;
            assert_eq!(queues.len(), TOPIC_QUEUES as usize, "{topic} keyed by {key}: {queues:?}");
            let result = producer
                .send_with_timeout(message(&topic, "t", "made", 0), SEND_TIMEOUT_MS)
                .await
                .unwrap_or_else(|e| panic!("send to {topic}: {e}; {}", log_hint(&broker)))
                .expect("sync send result");
            assert_send_ok(&result, "send to a topic the client created");
        }
        // Auto-create is still off: a send to a topic nobody created fails.
        let unknown = unique("compat_never_made");
        let refused = producer.send_with_timeout(message(&unknown, "t", "x", 0), SEND_TIMEOUT_MS).await;
        assert!(refused.is_err(), "a send to {unknown} with auto-create off: {refused:?}");
        producer.shutdown().await;
    });
}
