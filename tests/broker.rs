//! The broker process as a whole: what survives `kill -9` and a clean stop, and long
//! polling, over raw sockets against a real `rockshard broker`.
//!
//! - Every send answered SUCCESS on a `sync` topic is there after `kill -9` and restart,
//!   byte for byte, at the queue offset the answer gave. (`kill -9` keeps the page cache,
//!   so this proves the broker's recovery path end to end; that `sync` survives power
//!   loss is proven on the storage layer's power-cutting disk, `storage/tests/power_loss.rs`.)
//! - SIGTERM: a pull held by long polling is answered before the process exits, the exit
//!   status is 0, and committed consumer offsets and topics are there after a restart.
//! - A held pull is answered as soon as a message arrives in its queue.
//!
//! Each test starts its own broker through `common::Broker` (killed by pid when the test
//! ends); every wait is bounded.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{create_topic, create_topic_with, max_offset, pull, req, send_message, Broker, Conn};
use rockshard_net::code::{request, response};
use rockshard_net::headers::{
    CommandHeader, QueryConsumerOffsetRequestHeader, SendMessageResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use rockshard_net::stored::{self, Record};

/// Messages sent before the crash: enough to span several writes and group commits.
const MESSAGES: usize = 400;
/// Far above how long a clean stop takes; a stop slower than this is a failure.
const STOP_WITHIN: Duration = Duration::from_secs(20);

/// All stored records of a queue from offset 0, by pulling (bounded by `max` pulls).
fn read_queue(conn: &mut Conn, topic: &str, queue_id: i32, max_pulls: usize) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    for _ in 0..max_pulls {
        let a = conn.call(pull(topic, queue_id, offset, 0));
        if a.code != response::SUCCESS {
            break;
        }
        let mut body = &a.body[..];
        while !body.is_empty() {
            let (record, len) = match stored::decode(body) {
                Ok(Some(Record::Message(m))) => (m, m.header.total_size as usize),
                other => panic!("pull body does not decode: {other:?}"),
            };
            out.push((record.header.queue_offset, record.body.to_vec()));
            body = &body[len..];
        }
        offset = a.ext_fields.get("nextBeginOffset").and_then(|o| o.parse().ok()).expect("nextBeginOffset");
    }
    out
}

/// What the SUCCESS answers of one queue said: (queue offset, body) per message.
type Acked = Vec<(i64, Vec<u8>)>;

#[test]
fn sync_sends_answered_success_survive_kill_9() {
    let mut broker = Broker::start();
    let mut conns = [broker.connect(0), broker.connect(1)];
    create_topic_with(&mut conns[0], "Durable", 4, Some("sync"));

    // Two queues per shard; remember what each SUCCESS said.
    let mut acked: HashMap<(u16, i32), Acked> = HashMap::new();
    for i in 0..MESSAGES {
        let shard = (i % 2) as u16;
        let queue = ((i / 2) % 2) as i32;
        let body = format!("durable-{i:05}-").repeat(1 + i % 7).into_bytes();
        let answer = conns[shard as usize].call(send_message("Durable", queue, body.clone(), ""));
        assert_eq!(answer.code, response::SUCCESS, "send {i}: {answer:?}");
        let h: SendMessageResponseHeader = answer.ext_header().expect("send answer header");
        acked.entry((shard, queue)).or_default().push((h.queue_offset, body));
    }
    drop(conns);

    broker.kill9_and_restart();

    for ((shard, queue), sent) in &acked {
        let mut conn = broker.connect(*shard);
        let stored = read_queue(&mut conn, "Durable", *queue, MESSAGES);
        assert!(
            stored.len() >= sent.len(),
            "shard {shard} queue {queue}: {} stored, {} acked",
            stored.len(),
            sent.len()
        );
        for (offset, body) in sent {
            let found = stored.iter().find(|(o, _)| o == offset);
            assert_eq!(found.map(|(_, b)| b), Some(body), "shard {shard} queue {queue} offset {offset}");
        }
    }
}

#[test]
fn a_held_pull_is_answered_when_a_message_arrives() {
    let broker = Broker::start();
    let mut setup = broker.connect(0);
    create_topic(&mut setup, "Waiting", 2);
    let mut puller = broker.connect(0);
    let before = max_offset(&mut setup, "Waiting", 0);

    // Held for up to 20 s; the message sent below must end the wait long before.
    let opaque = puller.send(pull("Waiting", 0, before, 20_000));
    std::thread::sleep(Duration::from_millis(300));
    let sent_at = Instant::now();
    let answer = setup.call(send_message("Waiting", 0, &b"wake up"[..], ""));
    assert_eq!(answer.code, response::SUCCESS);
    let held = puller.read_frame().expect("the held pull is answered");
    let waited = sent_at.elapsed();
    assert_eq!(held.opaque, opaque);
    assert_eq!(held.code, response::SUCCESS, "{held:?}");
    assert!(held.body.windows(7).any(|w| w == b"wake up"));
    // Far below the 20 s hold: the arrival woke the pull (generous for a loaded CI box).
    assert!(waited < Duration::from_secs(10), "the pull was answered only after {waited:?}");
}

#[test]
fn sigterm_answers_held_pulls_and_keeps_offsets_and_topics() {
    let mut broker = Broker::start();
    let mut conn = broker.connect(1);
    create_topic_with(&mut conn, "Kept", 2, Some("sync"));
    for i in 0..10 {
        let a = conn.call(send_message("Kept", 0, format!("m{i}").into_bytes(), ""));
        assert_eq!(a.code, response::SUCCESS);
    }
    let commit = UpdateConsumerOffsetRequestHeader {
        consumer_group: "KeptGroup".into(),
        topic: "Kept".into(),
        queue_id: 0,
        commit_offset: 7,
    };
    let a = conn.call(req(request::UPDATE_CONSUMER_OFFSET, commit.to_ext_fields()));
    assert_eq!(a.code, response::SUCCESS, "{a:?}");

    let mut held = broker.connect(1);
    let opaque = held.send(pull("Kept", 0, 10, 20_000));
    std::thread::sleep(Duration::from_millis(300));
    let code = broker.terminate(STOP_WITHIN);
    assert_eq!(code, Some(0), "exit status after SIGTERM; log:\n{}", broker.log());
    let answer = held.read_frame().expect("the held pull was answered before the broker stopped");
    assert_eq!((answer.opaque, answer.code), (opaque, response::PULL_NOT_FOUND));
    assert!(broker.log().contains("unregistered"), "shards unregister on a clean stop:\n{}", broker.log());

    broker.restart();
    let mut conn = broker.connect(1);
    let query = QueryConsumerOffsetRequestHeader {
        consumer_group: "KeptGroup".into(),
        topic: "Kept".into(),
        queue_id: 0,
        set_zero_if_not_found: None,
    };
    let a = conn.call(req(request::QUERY_CONSUMER_OFFSET, query.to_ext_fields()));
    assert_eq!((a.code, a.ext_fields.get("offset")), (response::SUCCESS, Some("7")), "{a:?}");
    assert_eq!(max_offset(&mut conn, "Kept", 0), 10);
    let (code, stdout, stderr) = broker.admin(&["topic", "list", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("\"Kept\"") && stdout.contains("sync"), "{stdout}");
}

#[test]
fn a_second_broker_on_a_port_in_use_fails_clearly() {
    let broker = Broker::start();
    let other = tempfile::tempdir().expect("temp dir");
    let ns = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let ns_port = ns.local_addr().expect("address").port();
    drop(ns);
    let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_rockshard"))
        .arg("broker")
        .arg("--data-dir")
        .arg(other.path())
        .args(["--shards", "2", "--pin-cores", "false", "--port", &broker.port.to_string()])
        .args(["--namesrv-listen", &format!("127.0.0.1:{ns_port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn a second broker");
    let deadline = Instant::now() + STOP_WITHIN;
    let status = loop {
        if let Ok(Some(status)) = second.try_wait() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = second.kill();
            let _ = second.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = status.expect("the second broker exits instead of sharing the port");
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().expect("stderr"), &mut stderr).expect("stderr");
    assert!(stderr.contains("Address already in use") && stderr.contains("listen on"), "{stderr}");
    // The first broker still serves.
    let mut conn = broker.connect(0);
    create_topic(&mut conn, "StillHere", 2);
}

#[test]
fn a_groups_retry_topic_is_on_every_shard_after_its_first_heartbeat() {
    use rockshard_net::body::{self, ConsumerData, HeartbeatData, TopicRouteData};
    use rockshard_net::command::ExtFields;
    use rockshard_net::headers::GetRouteInfoRequestHeader;

    let broker = Broker::start();
    let heartbeat = HeartbeatData {
        client_id: "127.0.0.1@retry#1".into(),
        consumer_data_set: vec![ConsumerData { group_name: "Retriers".into(), ..Default::default() }],
        ..Default::default()
    };
    // Only shard 0 hears the heartbeat.
    let answer = broker
        .connect(0)
        .call(req(request::HEART_BEAT, ExtFields::new()).with_body(body::to_json(&heartbeat).expect("json")));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let mut namesrv = Conn::connect(&broker.namesrv_addr());
    let route_brokers = |namesrv: &mut Conn| {
        let h = GetRouteInfoRequestHeader { topic: "%RETRY%Retriers".into(), accept_standard_json_only: Some(true) };
        let a = namesrv.call(req(request::GET_ROUTEINFO_BY_TOPIC, h.to_ext_fields()));
        if a.code != response::SUCCESS {
            return Vec::new();
        }
        let route: TopicRouteData = body::from_json(&a.body).expect("route body");
        let mut names: Vec<String> = route.queue_datas.iter().map(|q| q.broker_name.clone()).collect();
        names.sort();
        names
    };
    let mut seen = Vec::new();
    let found = common::eventually(Duration::from_secs(10), || {
        seen = route_brokers(&mut namesrv);
        seen == ["broker-a-s0", "broker-a-s1"]
    });
    assert!(found, "route of the retry topic: {seen:?}");
}

/// Issue 12, item 5: many consumer groups heartbeating for the first time at once, on
/// both shards. Each heartbeat creates the group's retry topic on every shard, so the
/// topic table of each shard is saved many times concurrently (by its own heartbeats and
/// by the other shard's requests). Every heartbeat is answered SUCCESS, every retry topic
/// is on every shard once the answers are in, and all of them survive `kill -9`.
#[test]
fn concurrent_new_groups_get_their_retry_topics_on_every_shard_and_keep_them_after_kill_9() {
    use rockshard_net::body::{self, ConsumerData, HeartbeatData, TopicConfigSerializeWrapper};
    use rockshard_net::command::ExtFields;

    /// Groups heartbeating at once, half on each shard.
    const GROUPS: usize = 32;
    let mut broker = Broker::start();
    let group = |i: usize| format!("Crowd{i}");
    let mut conns: Vec<Conn> = (0..GROUPS).map(|i| broker.connect((i % 2) as u16)).collect();
    // Every heartbeat is sent before any answer is read, so all are in flight together.
    let opaques: Vec<i32> = conns
        .iter_mut()
        .enumerate()
        .map(|(i, conn)| {
            let heartbeat = HeartbeatData {
                client_id: format!("127.0.0.1@crowd#{i}"),
                consumer_data_set: vec![ConsumerData { group_name: group(i), ..Default::default() }],
                ..Default::default()
            };
            conn.send(req(request::HEART_BEAT, ExtFields::new()).with_body(body::to_json(&heartbeat).expect("json")))
        })
        .collect();
    for (i, (conn, opaque)) in conns.iter_mut().zip(opaques).enumerate() {
        let answer = (0..=common::SERVER_REQUESTS_SKIPPED_MAX)
            .find_map(|_| conn.read_frame().filter(|f| f.is_response()))
            .unwrap_or_else(|| panic!("no answer to the heartbeat of {}", group(i)));
        assert_eq!(answer.opaque, opaque);
        assert_eq!(answer.code, response::SUCCESS, "heartbeat of {}: {:?}", group(i), answer.remark);
    }

    let missing = |broker: &Broker| -> Vec<String> {
        let mut missing = Vec::new();
        for shard in 0..broker.shards {
            let answer = broker.connect(shard).call(req(request::GET_ALL_TOPIC_CONFIG, ExtFields::new()));
            assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
            let configs: TopicConfigSerializeWrapper = body::from_json(&answer.body).expect("topic configs");
            for i in 0..GROUPS {
                let retry = format!("%RETRY%{}", group(i));
                if !configs.topic_config_table.contains_key(&retry) {
                    missing.push(format!("{retry} on shard {shard}"));
                }
            }
        }
        missing
    };
    assert_eq!(missing(&broker), Vec::<String>::new(), "answered SUCCESS, so on every shard already");
    broker.kill9_and_restart();
    assert_eq!(missing(&broker), Vec::<String>::new(), "saved before the answers, so kept after kill -9");
}

/// The README's first command runs the broker with its default `./data`: a relative
/// data directory must work (glommio opens directories relative to fd -1, not the
/// working directory, so the broker makes the path absolute first).
#[test]
fn the_default_relative_data_directory_works() {
    use std::io::BufRead;
    let cwd = tempfile::tempdir().expect("temp dir");
    let port = {
        let a = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        let b = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        (a.local_addr().expect("addr").port(), b.local_addr().expect("addr").port())
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rockshard"))
        .current_dir(cwd.path())
        .args(["broker", "--shards", "1", "--pin-cores", "false", "--port", &port.0.to_string()])
        .args(["--namesrv-listen", &format!("127.0.0.1:{}", port.1)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn broker");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = rx.recv_timeout(common::READY_TIMEOUT).map(|l| l.starts_with("ready:"));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ready, Ok(true), "the broker did not get ready with ./data");
    assert!(cwd.path().join("data/shard-0/commitlog").is_dir());
}
