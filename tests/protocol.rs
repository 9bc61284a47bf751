//! Protocol robustness over raw sockets, against a real `rockshard broker` process.
//!
//! What the issue asks, one test each: an unknown request code is answered
//! REQUEST_CODE_NOT_SUPPORTED and the connection stays up; a malformed or oversized
//! frame closes that connection (and is logged) while every other connection keeps
//! working; a message over the size limit gets MESSAGE_ILLEGAL and nothing is stored; a
//! missing topic with auto-create off is TOPIC_NOT_EXIST naming the topic; a client
//! that disconnects mid-request leaves the broker serving, and a fully sent message is
//! stored whole; a oneway request gets no answer. Then the admin queries' answers, and
//! the `rockshard admin` command line against the same kind of broker. Last, issue 12:
//! the routes Apache clients expect (item 6): the cluster-name, broker-name,
//! SELF_TEST_TOPIC and TBW102 topics, and a client's createTopic through them with
//! auto-create off; a C++ client's heartbeat and pull (ordinals, numbers as strings, a
//! garbage `codeSet`) join its group and filter by tag, and a rejected request is logged
//! at WARN (item 4).
//!
//! Each test starts its own broker (two shards, embedded NameServer, fresh temporary
//! directory) through `common::Broker`, which kills it by pid when the test ends or
//! panics. Every wait is bounded.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::time::Duration;

use common::{
    create_topic, eventually, max_offset, pull, req, send_message, Broker, Conn, SERVER_REQUESTS_SKIPPED_MAX,
};
use rockshard_net::body::{
    self, ConsumeFromWhere, ConsumeStats, ConsumeType, ConsumerConnection, ConsumerData, ConsumerListBody,
    HeartbeatData, KVTable, MessageModel, ResetOffsetBody, SubscriptionData, TopicStatsTable,
};
use rockshard_net::code::{flag, request, response};
use rockshard_net::command::ExtFields;
use rockshard_net::frame::encode_frame_to_vec;
use rockshard_net::headers::{
    CommandHeader, ConsumerGroupRequestHeader, CreateTopicRequestHeader, GetConsumeStatsRequestHeader,
    GetRouteInfoRequestHeader, QueryConsumerOffsetRequestHeader, QueryMessageRequestHeader, ResetOffsetRequestHeader,
    SendMessageResponseHeader, TopicRequestHeader, UpdateConsumerOffsetRequestHeader, ViewMessageRequestHeader,
};
use rockshard_net::properties::java_string_hash;
use rockshard_net::stored::{self, Record};
use rockshard_net::SerializeType;

/// How long the broker may take to close a connection that sent a bad frame.
const CLOSE_WITHIN: Duration = Duration::from_secs(5);
/// The broker's message size limit (RocketMQ's default, 4 MiB).
const MESSAGE_SIZE_MAX: usize = 4 * 1024 * 1024;

fn runtime_info_ok(conn: &mut Conn, expected_shard: &str) {
    let answer = conn.call(req(request::GET_BROKER_RUNTIME_INFO, ExtFields::new()));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let kv: KVTable = body::from_json(&answer.body).expect("KVTable body");
    assert_eq!(kv.table.get("brokerName").map(String::as_str), Some(expected_shard));
    assert_eq!(kv.table.get("brokerVersionDesc").map(String::as_str), Some("V5_3_3"));
}

#[test]
fn unknown_request_codes_are_refused_and_the_connection_stays_up() {
    let broker = Broker::start();
    let mut conn = broker.connect(0);

    let answer = conn.call(req(9999, ExtFields::new()));
    assert_eq!(answer.code, response::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(answer.remark.as_deref(), Some(" request type 9999 not supported"));
    assert_eq!(answer.serialize_type, SerializeType::Json);

    // The same in a ROCKETMQ binary header: answered in that encoding.
    let answer = conn.call(req(777, ExtFields::new()).with_serialize_type(SerializeType::RocketMq));
    assert_eq!(answer.code, response::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(answer.serialize_type, SerializeType::RocketMq);
    assert_eq!(answer.remark.as_deref(), Some(" request type 777 not supported"));

    // Known RocketMQ codes we do not serve get the same clear answer.
    for code in [request::UPDATE_BROKER_CONFIG, request::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP, 200_050] {
        let answer = conn.call(req(code, ExtFields::new()));
        assert_eq!(answer.code, response::REQUEST_CODE_NOT_SUPPORTED, "code {code}: {answer:?}");
        assert!(answer.remark.as_deref().unwrap_or("").contains(&code.to_string()));
    }

    // And the connection still serves real requests.
    runtime_info_ok(&mut conn, &broker.shard_name(0));
    runtime_info_ok(&mut broker.connect(1), &broker.shard_name(1));
}

/// Bytes that are not a frame the broker can accept, and why.
fn malformed_frames() -> Vec<(&'static str, Vec<u8>)> {
    let json_frame = |header: &[u8]| {
        let mut f = Vec::new();
        f.extend_from_slice(&(4 + header.len() as u32).to_be_bytes());
        f.extend_from_slice(&(header.len() as u32).to_be_bytes());
        f.extend_from_slice(header);
        f
    };
    vec![
        ("header length beyond the frame", [&8u32.to_be_bytes()[..], &100u32.to_be_bytes(), b"{}{}"].concat()),
        ("header that is not JSON", json_frame(b"{\"code\":12,\"language\":")),
        ("JSON header with a code that is not a number", json_frame(br#"{"code":"ten","flag":0,"opaque":1}"#)),
        ("negative frame length", vec![0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]),
        ("frame length over 16 MiB", [&(16u32 * 1024 * 1024).to_be_bytes()[..], &[0u8; 8]].concat()),
        ("frame length with no room for the header length", [&2u32.to_be_bytes()[..], b"xx"].concat()),
        ("unknown header serialize type", [&6u32.to_be_bytes()[..], &[7, 0, 0, 2], b"{}"].concat()),
        ("truncated binary header", [&9u32.to_be_bytes()[..], &[1, 0, 0, 5], &[0, 10, 0, 1, 0xDF]].concat()),
    ]
}

#[test]
fn malformed_and_oversized_frames_close_only_their_connection() {
    let broker = Broker::start();
    // Opened before the bad ones and used after each: other connections never notice.
    let mut bystander = broker.connect(0);
    runtime_info_ok(&mut bystander, &broker.shard_name(0));
    for (what, bytes) in malformed_frames() {
        let mut bad = broker.connect(0);
        bad.write_raw(&bytes);
        if let Err(e) = bad.closed_within(CLOSE_WITHIN) {
            panic!("{what}: {e}\nbroker log:\n{}", broker.log());
        }
        runtime_info_ok(&mut bystander, &broker.shard_name(0));
        runtime_info_ok(&mut broker.connect(0), &broker.shard_name(0));
    }
    // A bad frame after good requests on the same connection: answered first, then closed.
    let mut mixed = broker.connect(1);
    runtime_info_ok(&mut mixed, &broker.shard_name(1));
    mixed.write_raw(&malformed_frames()[0].1);
    mixed.closed_within(CLOSE_WITHIN).expect("closed after the bad frame");
    runtime_info_ok(&mut broker.connect(1), &broker.shard_name(1));
    let mut broker = broker;
    assert!(broker.is_running(), "the broker died");
    assert!(
        eventually(CLOSE_WITHIN, || broker.log().contains("malformed")),
        "bad frames are logged; log:\n{}",
        broker.log()
    );
}

#[test]
fn an_oversized_message_is_refused_and_nothing_is_stored() {
    let broker = Broker::start();
    let mut conn = broker.connect(0);
    create_topic(&mut conn, "Big", 2);
    let answer = conn.call(send_message("Big", 0, &b"small"[..], ""));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    assert_eq!(max_offset(&mut conn, "Big", 0), 1);

    let answer = conn.call(send_message("Big", 0, vec![b'x'; MESSAGE_SIZE_MAX + 1], ""));
    assert_eq!(answer.code, response::MESSAGE_ILLEGAL, "{answer:?}");
    let remark = answer.remark.clone().unwrap_or_default();
    assert!(!remark.trim().is_empty(), "the refusal says why: {answer:?}");
    assert_eq!(max_offset(&mut conn, "Big", 0), 1, "nothing stored");

    // Properties longer than the stored format's i16 length.
    let long = format!("KEYS\u{1}{}\u{2}", "k".repeat(40_000));
    let answer = conn.call(send_message("Big", 0, &b"body"[..], &long));
    assert_eq!(answer.code, response::MESSAGE_ILLEGAL, "{answer:?}");
    assert_eq!(max_offset(&mut conn, "Big", 0), 1, "nothing stored");

    // The connection and the queue still work.
    let answer = conn.call(send_message("Big", 0, &b"after"[..], ""));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    assert_eq!(max_offset(&mut conn, "Big", 0), 2);
}

#[test]
fn a_missing_topic_with_auto_create_off_is_topic_not_exist() {
    let broker = Broker::start_with(&["--auto-create-topic", "false"]);
    let mut conn = broker.connect(0);
    let names_topic = |answer: &rockshard_net::RemotingCommand| {
        assert_eq!(answer.code, response::TOPIC_NOT_EXIST, "{answer:?}");
        let remark = answer.remark.as_deref().unwrap_or("");
        assert!(remark.contains("NoSuchTopic"), "remark names the topic: {remark:?}");
    };
    names_topic(&conn.call(send_message("NoSuchTopic", 0, &b"hello"[..], "")));
    names_topic(&conn.call(pull("NoSuchTopic", 0, 0, 0)));
    let stats = TopicRequestHeader { topic: "NoSuchTopic".into() };
    names_topic(&conn.call(req(request::GET_TOPIC_STATS_INFO, stats.to_ext_fields())));
    // Nothing was created on the way.
    let answer = conn.call(req(request::GET_ALL_TOPIC_CONFIG, ExtFields::new()));
    let configs: body::TopicConfigSerializeWrapper = body::from_json(&answer.body).expect("topic configs");
    assert!(!configs.topic_config_table.contains_key("NoSuchTopic"));
    // TBW102 stays, as the key of clients' createTopic, but is no auto-create template:
    // it lacks the inherit permission (the send above created nothing either way).
    let key = configs.topic_config_table.get("TBW102").expect("TBW102, the createTopic key");
    assert_eq!(key.perm, 6, "read and write, no inherit: {key:?}");

    let (code, _, stderr) = broker.admin(&["topic", "status", "--topic", "NoSuchTopic"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("NoSuchTopic") && stderr.contains("does not exist"), "{stderr}");
}

#[test]
fn a_client_that_disconnects_mid_request_does_not_disturb_the_broker() {
    let broker = Broker::start();
    let mut conn = broker.connect(0);
    create_topic(&mut conn, "Cut", 2);

    // Half a frame, then gone.
    let frame = encode_frame_to_vec(&send_message("Cut", 0, vec![b'h'; 1000], "")).expect("encodes");
    let mut half = broker.connect(0);
    half.write_raw(&frame[..frame.len() / 2]);
    half.close();

    // A whole send, then gone before the answer.
    let body: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut whole = broker.connect(0);
    whole.send(send_message("Cut", 0, body.clone(), "TAGS\u{1}whole\u{2}"));
    whole.close();

    // A long poll, then gone while it waits.
    let mut waiting = broker.connect(1);
    waiting.send(pull("Cut", 0, 0, 5_000));
    waiting.close();

    assert!(eventually(Duration::from_secs(10), || max_offset(&mut conn, "Cut", 0) == 1), "the whole send is stored");
    assert_eq!(max_offset(&mut conn, "Cut", 0), 1, "the half frame stored nothing");
    let answer = conn.call(pull("Cut", 0, 0, 0));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let Ok(Some(Record::Message(view))) = stored::decode(&answer.body) else { panic!("one stored record: {answer:?}") };
    assert_eq!(view.body, &body[..], "stored whole");
    assert!(view.body_crc_matches());
    assert_eq!(view.topic, b"Cut");
    assert_eq!(view.header.total_size as usize, answer.body.len(), "exactly one record");

    // Shard 1 is still fine after its waiting pull's client left.
    runtime_info_ok(&mut broker.connect(1), &broker.shard_name(1));
}

#[test]
fn oneway_requests_get_no_answer() {
    let broker = Broker::start();
    let mut conn = broker.connect(0);
    create_topic(&mut conn, "Quiet", 2);
    let oneway = |mut cmd: rockshard_net::RemotingCommand| {
        cmd.flag |= flag::ONEWAY;
        cmd
    };
    conn.send(oneway(req(9999, ExtFields::new())));
    conn.send(oneway(req(request::GET_BROKER_RUNTIME_INFO, ExtFields::new())));
    let commit = UpdateConsumerOffsetRequestHeader {
        consumer_group: "G".into(),
        topic: "Quiet".into(),
        queue_id: 0,
        commit_offset: 0,
    };
    conn.send(oneway(req(request::UPDATE_CONSUMER_OFFSET, commit.to_ext_fields())));
    // The first frame back answers this request, not the oneway ones before it.
    let opaque = conn.send(req(request::GET_BROKER_RUNTIME_INFO, ExtFields::new()));
    let answer = conn.read_frame().expect("an answer");
    assert_eq!(answer.opaque, opaque, "a oneway request was answered: {answer:?}");
    conn.stream.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    assert!(conn.read_frame().is_none(), "nothing else arrives");
}

#[test]
fn admin_queries_answer_clearly() {
    let broker = Broker::start();
    let mut conn = broker.connect(0);
    create_topic(&mut conn, "Q", 4);

    // A missing required header field: INVALID_PARAMETER naming it.
    let answer = conn.call(req(request::GET_TOPIC_STATS_INFO, ExtFields::new()));
    assert_eq!(answer.code, response::INVALID_PARAMETER, "{answer:?}");
    assert!(answer.remark.as_deref().unwrap_or("").contains("topic"), "{answer:?}");

    // QUERY_MESSAGE: no key index, so not found, with the fields clients require.
    let query = QueryMessageRequestHeader {
        topic: "Q".into(),
        key: "k1".into(),
        max_num: 32,
        begin_timestamp_ms: 0,
        end_timestamp_ms: i64::MAX,
    };
    let answer = conn.call(req(request::QUERY_MESSAGE, query.to_ext_fields()));
    assert_eq!(answer.code, response::QUERY_NOT_FOUND, "{answer:?}");
    assert!(answer.ext_fields.get("indexLastUpdateTimestamp").is_some());
    assert!(answer.ext_fields.get("indexLastUpdatePhyoffset").is_some());

    // VIEW_MESSAGE_BY_ID: found at the offset the send's msgId names; not found elsewhere.
    let sent = conn.call(send_message("Q", 1, &b"look me up"[..], "KEYS\u{1}k1\u{2}"));
    assert_eq!(sent.code, response::SUCCESS, "{sent:?}");
    let sent: SendMessageResponseHeader = sent.ext_header().expect("send answer header");
    let (host, offset) = rockshard_net::msgid::decode(&sent.msg_id).expect("offset msgId");
    assert_eq!(host.to_string(), broker.shard_addr(0));
    let view = ViewMessageRequestHeader { offset, topic: None };
    let answer = conn.call(req(request::VIEW_MESSAGE_BY_ID, view.to_ext_fields()));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let Ok(Some(Record::Message(m))) = stored::decode(&answer.body) else { panic!("a record: {answer:?}") };
    assert_eq!((m.body, m.header.queue_id, m.header.physical_offset), (&b"look me up"[..], 1, offset));
    for bad in [offset + 1, -5, 1 << 40] {
        let view = ViewMessageRequestHeader { offset: bad, topic: None };
        let answer = conn.call(req(request::VIEW_MESSAGE_BY_ID, view.to_ext_fields()));
        assert_eq!(answer.code, response::SYSTEM_ERROR, "offset {bad}: {answer:?}");
        assert!(answer.remark.as_deref().unwrap_or("").contains("can not find message"), "{answer:?}");
    }

    // GET_TOPIC_STATS_INFO: this shard's two queues, one message in queue 1.
    let stats = TopicRequestHeader { topic: "Q".into() };
    let answer = conn.call(req(request::GET_TOPIC_STATS_INFO, stats.to_ext_fields()));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let table = TopicStatsTable::decode(&answer.body).expect("stats body");
    let queues: Vec<(String, i32, i64, i64)> = table
        .offset_table
        .iter()
        .map(|(mq, o)| (mq.broker_name.clone(), mq.queue_id, o.min_offset, o.max_offset))
        .collect();
    assert_eq!(queues, [("broker-a-s0".into(), 0, 0, 0), ("broker-a-s0".into(), 1, 0, 1)]);
    assert!(table.offset_table.values().nth(1).is_some_and(|o| o.last_update_timestamp > 0));

    // Consume stats and reset by time, for a group that committed offset 1 on queue 1.
    let commit = UpdateConsumerOffsetRequestHeader {
        consumer_group: "G".into(),
        topic: "Q".into(),
        queue_id: 1,
        commit_offset: 1,
    };
    assert_eq!(conn.call(req(request::UPDATE_CONSUMER_OFFSET, commit.to_ext_fields())).code, response::SUCCESS);
    let consume = |conn: &mut Conn| {
        let h = GetConsumeStatsRequestHeader { consumer_group: "G".into(), topic: None };
        let answer = conn.call(req(request::GET_CONSUME_STATS, h.to_ext_fields()));
        assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
        ConsumeStats::decode(&answer.body).expect("consume stats body")
    };
    let stats = consume(&mut conn);
    let q1 = stats.offset_table.iter().find(|(mq, _)| mq.queue_id == 1).map(|(_, o)| *o).expect("queue 1");
    assert_eq!((q1.broker_offset, q1.consumer_offset), (1, 1));
    assert!(q1.last_timestamp > 0, "the consumed message's store time");

    let reset = ResetOffsetRequestHeader {
        topic: "Q".into(),
        group: "G".into(),
        queue_id: None,
        offset: None,
        timestamp_ms: 0,
        is_force: true,
    };
    let answer = conn.call(req(request::INVOKE_BROKER_TO_RESET_OFFSET, reset.to_ext_fields()));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let body = ResetOffsetBody::decode(&answer.body).expect("reset body");
    assert_eq!(body.offset_table.values().copied().collect::<Vec<_>>(), [0, 0]);
    let q1 =
        consume(&mut conn).offset_table.into_iter().find(|(mq, _)| mq.queue_id == 1).map(|(_, o)| o).expect("queue 1");
    assert_eq!((q1.broker_offset, q1.consumer_offset), (1, 0), "lag is back to one message");

    // The unknown group's stats are empty, not an error; a missing topic is.
    let h = GetConsumeStatsRequestHeader { consumer_group: "Nobody".into(), topic: None };
    let answer = conn.call(req(request::GET_CONSUME_STATS, h.to_ext_fields()));
    assert_eq!(answer.code, response::SUCCESS);
    assert!(ConsumeStats::decode(&answer.body).expect("body").offset_table.is_empty());
    let h = GetConsumeStatsRequestHeader { consumer_group: "G".into(), topic: Some("Nope".into()) };
    assert_eq!(conn.call(req(request::GET_CONSUME_STATS, h.to_ext_fields())).code, response::TOPIC_NOT_EXIST);

    // DELETE_TOPIC_IN_BROKER on shard 0 removes the topic from shard 1 too.
    let del = TopicRequestHeader { topic: "Q".into() };
    assert_eq!(conn.call(req(request::DELETE_TOPIC_IN_BROKER, del.to_ext_fields())).code, response::SUCCESS);
    let mut other = broker.connect(1);
    let gone = eventually(Duration::from_secs(5), || {
        let answer = other.call(req(request::GET_ALL_TOPIC_CONFIG, ExtFields::new()));
        let configs: body::TopicConfigSerializeWrapper = body::from_json(&answer.body).expect("topic configs");
        !configs.topic_config_table.contains_key("Q")
    });
    assert!(gone, "topic Q still on shard 1");
    let system = TopicRequestHeader { topic: "SCHEDULE_TOPIC_XXXX".into() };
    assert_eq!(
        conn.call(req(request::DELETE_TOPIC_IN_BROKER, system.to_ext_fields())).code,
        response::INVALID_PARAMETER
    );
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn admin_cli_manages_topics() {
    let broker = Broker::start();
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = broker.admin(args);
        assert_eq!(code, 0, "rockshard admin {args:?} failed: {stderr}\nbroker log:\n{}", broker.log());
        stdout
    };
    let out = ok(&["topic", "create", "--topic", "Orders", "--queues", "4", "--flush", "sync"]);
    assert!(out.contains("created topic `Orders`"), "{out}");
    assert!(out.contains("flush sync"), "{out}");

    let (code, _, stderr) = broker.admin(&["topic", "create", "--topic", "Orders", "--queues", "4"]);
    assert_eq!(code, 2, "creating twice is refused: {stderr}");
    assert!(stderr.contains("already exists"), "{stderr}");

    let list = json(&ok(&["topic", "list", "--json"]));
    let orders = list["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|t| t["topic"] == "Orders")
        .cloned()
        .expect("Orders listed");
    assert_eq!((orders["writeQueues"].as_i64(), orders["flush"].as_str()), (Some(4), Some("sync")), "{orders}");
    let text = ok(&["topic", "list"]);
    assert!(text.lines().next().is_some_and(|h| h.starts_with("TOPIC")), "{text}");

    // Two messages on shard 0 queue 0, one on shard 1 queue 1.
    let mut shards = [broker.connect(0), broker.connect(1)];
    for (shard, qid, text) in [(0, 0, "one"), (0, 0, "two"), (1, 1, "three")] {
        let answer = shards[shard].call(send_message("Orders", qid, text.as_bytes().to_vec(), ""));
        assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    }
    let status = json(&ok(&["topic", "status", "--topic", "Orders", "--json"]));
    assert_eq!(status["messages"].as_i64(), Some(3), "{status}");
    let queues = status["queues"].as_array().expect("queues");
    assert_eq!(queues.len(), 4, "{status}");
    let max_of = |broker_name: &str, qid: i64| {
        queues
            .iter()
            .find(|q| q["brokerName"] == broker_name && q["queueId"] == qid)
            .and_then(|q| q["maxOffset"].as_i64())
    };
    assert_eq!(
        (max_of("broker-a-s0", 0), max_of("broker-a-s0", 1), max_of("broker-a-s1", 1)),
        (Some(2), Some(0), Some(1))
    );
    let text = ok(&["topic", "status", "--topic", "Orders"]);
    assert!(text.contains("MIN OFFSET") && text.contains("broker-a-s1") && text.contains("3 messages"), "{text}");

    let route = ok(&["topic", "route", "--topic", "Orders"]);
    assert!(route.contains("broker-a-s0") && route.contains(&broker.shard_addr(1)), "{route}");
    let cluster = ok(&["cluster", "list"]);
    assert!(
        cluster.contains("DefaultCluster") && cluster.contains("broker-a-s1") && cluster.contains("V5_3_3"),
        "{cluster}"
    );

    let out = ok(&["topic", "update", "--topic", "Orders", "--flush", "async"]);
    assert!(out.contains("updated topic `Orders`") && out.contains("flush async"), "{out}");
    let list = json(&ok(&["topic", "list", "--json"]));
    let orders =
        list["topics"].as_array().expect("topics").iter().find(|t| t["topic"] == "Orders").cloned().expect("Orders");
    assert_eq!(
        (orders["writeQueues"].as_i64(), orders["flush"].as_str()),
        (Some(4), Some("async")),
        "queues kept: {orders}"
    );

    ok(&["topic", "delete", "--topic", "Orders"]);
    let (code, _, stderr) = broker.admin(&["topic", "route", "--topic", "Orders"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("Orders"), "{stderr}");
    let (code, _, stderr) = broker.admin(&["topic", "update", "--topic", "Orders", "--queues", "2"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn admin_cli_shows_consumer_progress_resets_offsets_and_views_messages() {
    let broker = Broker::start();
    let ok = |args: &[&str]| {
        let (code, stdout, stderr) = broker.admin(args);
        assert_eq!(code, 0, "rockshard admin {args:?} failed: {stderr}\nbroker log:\n{}", broker.log());
        stdout
    };
    ok(&["topic", "create", "--topic", "Pay", "--queues", "2"]);
    let mut s0 = broker.connect(0);
    let mut ids = Vec::new();
    for text in ["a", "b", "c"] {
        let answer = s0.call(send_message("Pay", 0, text.as_bytes().to_vec(), "TAGS\u{1}t1\u{2}KEYS\u{1}order-7\u{2}"));
        assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
        ids.push(answer.ext_header::<SendMessageResponseHeader>().expect("send header").msg_id);
    }
    let commit = UpdateConsumerOffsetRequestHeader {
        consumer_group: "G".into(),
        topic: "Pay".into(),
        queue_id: 0,
        commit_offset: 1,
    };
    assert_eq!(s0.call(req(request::UPDATE_CONSUMER_OFFSET, commit.to_ext_fields())).code, response::SUCCESS);

    let progress = json(&ok(&["consumer", "progress", "--group", "G", "--json"]));
    assert_eq!(progress["totalLag"].as_i64(), Some(2), "{progress}");
    let text = ok(&["consumer", "progress", "--group", "G", "--topic", "Pay"]);
    assert!(text.contains("LAG") && text.contains("total lag: 2"), "{text}");
    let (code, _, stderr) = broker.admin(&["consumer", "progress", "--group", "Nobody"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("Nobody"), "{stderr}");

    let reset =
        json(&ok(&["consumer", "reset-offset", "--group", "G", "--topic", "Pay", "--timestamp", "0", "--json"]));
    assert!(reset["queues"].as_array().expect("queues").iter().all(|q| q["offset"] == 0), "{reset}");
    let progress = json(&ok(&["consumer", "progress", "--group", "G", "--topic", "Pay", "--json"]));
    assert_eq!(progress["totalLag"].as_i64(), Some(3), "{progress}");
    ok(&["consumer", "reset-offset", "--group", "G", "--topic", "Pay", "--timestamp", "2100-01-01T00:00:00Z"]);
    let progress = json(&ok(&["consumer", "progress", "--group", "G", "--topic", "Pay", "--json"]));
    assert_eq!(progress["totalLag"].as_i64(), Some(0), "{progress}");
    let (code, _, stderr) =
        broker.admin(&["consumer", "reset-offset", "--group", "G", "--topic", "Pay", "--timestamp", "soon"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("timestamp"), "{stderr}");

    let view = ok(&["message", "view", "--id", &ids[1]]);
    assert!(view.contains("Pay") && view.contains("order-7") && view.contains("body:\nb"), "{view}");
    let view = json(&ok(&["message", "view", "--id", &ids[2], "--json"]));
    assert_eq!((view["bodyText"].as_str(), view["queueOffset"].as_i64()), (Some("c"), Some(2)), "{view}");
    let (code, _, stderr) = broker.admin(&["message", "view", "--id", "not-an-id"]);
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn consumer_connections_show_heartbeating_clients() {
    let broker = Broker::start();
    let mut s0 = broker.connect(0);
    create_topic(&mut s0, "Feed", 2);
    let heartbeat = HeartbeatData {
        client_id: "127.0.0.1@test#1".into(),
        consumer_data_set: vec![ConsumerData {
            group_name: "Readers".into(),
            subscription_data_set: vec![SubscriptionData {
                topic: "Feed".into(),
                sub_string: "TagA || TagB".into(),
                tags_set: vec!["TagA".into(), "TagB".into()],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let answer =
        s0.call(req(request::HEART_BEAT, ExtFields::new()).with_body(body::to_json(&heartbeat).expect("json")));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");

    let group = ConsumerGroupRequestHeader { consumer_group: "Readers".into() };
    let answer = s0.call(req(request::GET_CONSUMER_CONNECTION_LIST, group.to_ext_fields()));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let connections: ConsumerConnection = body::from_json(&answer.body).expect("ConsumerConnection body");
    assert_eq!(connections.connection_set.len(), 1);
    let c = &connections.connection_set[0];
    assert_eq!((c.client_id.as_str(), c.language.as_str()), ("127.0.0.1@test#1", "RUST"));
    assert_eq!(c.client_addr, s0.stream.local_addr().expect("local addr").to_string());
    assert_eq!(connections.subscription_table["Feed"].sub_string, "TagA || TagB");
    // Shard 1 never heard from the client.
    let answer = broker.connect(1).call(req(request::GET_CONSUMER_CONNECTION_LIST, group.to_ext_fields()));
    assert_eq!(answer.code, response::CONSUMER_NOT_ONLINE, "{answer:?}");
    assert!(answer.remark.as_deref().unwrap_or("").contains("Readers"), "{answer:?}");

    let (code, stdout, stderr) = broker.admin(&["consumer", "connections", "--group", "Readers"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("127.0.0.1@test#1") && stdout.contains("broker-a-s0"), "{stdout}");
    assert!(stdout.contains("subscribes Feed: TagA || TagB") && stdout.contains("CLUSTERING"), "{stdout}");
    let (code, _, stderr) = broker.admin(&["consumer", "connections", "--group", "Nobody"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not online"), "{stderr}");

    // An offset reset reaches the running consumer (RESET_CONSUMER_CLIENT_OFFSET, oneway),
    // so it does not commit its in-memory offsets over the reset.
    let reset = ResetOffsetRequestHeader {
        topic: "Feed".into(),
        group: "Readers".into(),
        queue_id: None,
        offset: None,
        timestamp_ms: 0,
        is_force: true,
    };
    let answer = broker.connect(0).call(req(request::INVOKE_BROKER_TO_RESET_OFFSET, reset.to_ext_fields()));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let notice = (0..SERVER_REQUESTS_SKIPPED_MAX)
        .filter_map(|_| s0.read_frame())
        .find(|f| f.code == request::RESET_CONSUMER_CLIENT_OFFSET)
        .expect("the consumer is told about the reset");
    assert!(notice.is_oneway() && !notice.is_response(), "{notice:?}");
    assert_eq!((notice.ext_fields.get("topic"), notice.ext_fields.get("group")), (Some("Feed"), Some("Readers")));
    let body = ResetOffsetBody::decode(&notice.body).expect("reset body");
    assert_eq!(body.offset_table.len(), 1, "the one queue of Feed on shard 0: {body:?}");
    drop(s0);
}

/// GET_ROUTEINFO_BY_TOPIC to the broker's NameServer: the route, or `None` when the
/// NameServer answers anything but SUCCESS.
fn route(broker: &Broker, topic: &str) -> Option<body::TopicRouteData> {
    use rockshard_net::headers::GetRouteInfoRequestHeader;
    let h = GetRouteInfoRequestHeader { topic: topic.into(), accept_standard_json_only: Some(true) };
    let answer = Conn::connect(&broker.namesrv_addr()).call(req(request::GET_ROUTEINFO_BY_TOPIC, h.to_ext_fields()));
    (answer.code == response::SUCCESS).then(|| body::from_json(&answer.body).expect("route body"))
}

/// The broker names a topic's route lists, sorted ([] without a route).
fn route_brokers(broker: &Broker, topic: &str) -> Vec<String> {
    let mut names: Vec<String> =
        route(broker, topic).map(|r| r.broker_datas.into_iter().map(|b| b.broker_name).collect()).unwrap_or_default();
    names.sort();
    names
}

/// Issue 12, item 6: the topics an Apache broker registers for itself are routable — the
/// cluster name, the broker names (each shard's registered name, and the process's
/// name, which every shard of the process serves), SELF_TEST_TOPIC and TBW102 — so
/// RocketMQ tools and clients that key on them find this broker.
#[test]
fn the_cluster_broker_and_self_test_topics_are_routed_as_apache_routes_them() {
    let broker = Broker::start();
    let both = [broker.shard_name(0), broker.shard_name(1)];
    let expected: [(&str, Vec<String>); 6] = [
        ("DefaultCluster", both.to_vec()),
        ("broker-a", both.to_vec()),
        ("broker-a-s0", vec![broker.shard_name(0)]),
        ("broker-a-s1", vec![broker.shard_name(1)]),
        ("SELF_TEST_TOPIC", both.to_vec()),
        ("TBW102", both.to_vec()),
    ];
    for (topic, brokers) in &expected {
        let mut seen = Vec::new();
        let routed = eventually(Duration::from_secs(10), || {
            seen = route_brokers(&broker, topic);
            seen == *brokers
        });
        assert!(routed, "route of {topic}: {seen:?}, expected {brokers:?}; log:\n{}", broker.log());
    }
    // The broker-name topic of a shard has one queue there, readable and writable, as
    // Apache's has on its broker.
    let r = route(&broker, "broker-a-s1").expect("route");
    let q: Vec<(&str, i32, i32, i32)> =
        r.queue_datas.iter().map(|q| (q.broker_name.as_str(), q.read_queue_nums, q.write_queue_nums, q.perm)).collect();
    assert_eq!(q, [("broker-a-s1", 1, 1, 7)]);

    // They are the broker's own: a client can neither redefine nor delete them
    // (Apache: "conflict with system topic").
    let mut conn = broker.connect(0);
    for topic in ["DefaultCluster", "broker-a", "broker-a-s1", "SELF_TEST_TOPIC", "TBW102"] {
        let header = CreateTopicRequestHeader {
            topic: topic.into(),
            default_topic: "TBW102".into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            perm: 6,
            topic_filter_type: "SINGLE_TAG".into(),
            order: false,
            topic_sys_flag: None,
            attributes: None,
            force: None,
        };
        let answer = conn.call(req(request::UPDATE_AND_CREATE_TOPIC, header.to_ext_fields()));
        assert_eq!(answer.code, response::INVALID_PARAMETER, "creating {topic}: {answer:?}");
        assert!(answer.remark.as_deref().unwrap_or("").contains("system topic"), "{answer:?}");
        let del = TopicRequestHeader { topic: topic.into() };
        let answer = conn.call(req(request::DELETE_TOPIC_IN_BROKER, del.to_ext_fields()));
        assert_eq!(answer.code, response::INVALID_PARAMETER, "deleting {topic}: {answer:?}");
    }
    // Sends to SELF_TEST_TOPIC are the broker's (Apache forbids clients them).
    let answer = conn.call(send_message("SELF_TEST_TOPIC", 0, &b"x"[..], ""));
    assert_eq!(answer.code, response::NO_PERMISSION, "{answer:?}");

    // `topic list` shows what users created, not these (as rocketmq-dashboard hides them);
    // `--system` shows them too.
    create_topic(&mut conn, "Mine", 2);
    let (code, stdout, stderr) = broker.admin(&["topic", "list", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let list = json(&stdout);
    let names: Vec<&str> =
        list["topics"].as_array().expect("topics").iter().filter_map(|t| t["topic"].as_str()).collect();
    assert_eq!(names, ["Mine"], "{stdout}");
    let (code, stdout, stderr) = broker.admin(&["topic", "list", "--system", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let list = json(&stdout);
    let names: Vec<&str> =
        list["topics"].as_array().expect("topics").iter().filter_map(|t| t["topic"].as_str()).collect();
    for topic in
        ["DefaultCluster", "broker-a", "broker-a-s0", "SELF_TEST_TOPIC", "TBW102", "SCHEDULE_TOPIC_XXXX", "Mine"]
    {
        assert!(names.contains(&topic), "{topic} in {names:?}");
    }
}

/// Issue 12, item 6: with auto-create off, a client creates a topic the way
/// `MQAdminImpl.createTopic(key, topic, queues)` does — the route of the key topic
/// (TBW102 or the cluster name), then UPDATE_AND_CREATE_TOPIC to the master of every
/// broker in it — and can then send to it.
#[test]
fn with_auto_create_off_a_client_creates_topics_through_the_key_topics_route() {
    let broker = Broker::start_with(&["--auto-create-topic", "false"]);
    for key in ["TBW102", "DefaultCluster"] {
        let mut key_route = None;
        let routed = eventually(Duration::from_secs(10), || {
            key_route = route(&broker, key);
            key_route.is_some()
        });
        assert!(routed, "no route for the key topic {key}; log:\n{}", broker.log());
        let key_route = key_route.expect("checked above");
        let topic = format!("MadeWith{key}");
        let mut masters = 0;
        for b in &key_route.broker_datas {
            let Some(addr) = b.broker_addrs.get(&0) else { continue };
            masters += 1;
            let header = CreateTopicRequestHeader {
                topic: topic.clone(),
                default_topic: key.into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: 6,
                topic_filter_type: "SINGLE_TAG".into(),
                order: false,
                topic_sys_flag: Some(0),
                attributes: None,
                force: Some(false),
            };
            let answer = Conn::connect(addr).call(req(request::UPDATE_AND_CREATE_TOPIC, header.to_ext_fields()));
            assert_eq!(answer.code, response::SUCCESS, "creating {topic} on {}: {answer:?}", b.broker_name);
        }
        assert_eq!(masters, 2, "both shards are masters in the route of {key}");
        // Queue counts are the broker's total (README): 4 in all, 2 per shard.
        let mut writable = 0;
        let created = eventually(Duration::from_secs(10), || {
            writable = route(&broker, &topic).map_or(0, |r| r.queue_datas.iter().map(|q| q.write_queue_nums).sum());
            writable == 4
        });
        assert!(created, "{topic}: {writable} write queues routed");
        let answer = broker.connect(1).call(send_message(&topic, 1, &b"hello"[..], ""));
        assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    }
    // Auto-create stays off: a send naming an unknown topic is still refused.
    let answer = broker.connect(0).call(send_message("NeverMade", 0, &b"x"[..], ""));
    assert_eq!(answer.code, response::TOPIC_NOT_EXIST, "{answer:?}");
}

/// The C++ client's push-consumer heartbeat exactly as captured on the wire (issue 12):
/// enums as ordinals, `subVersion` as a string, `codeSet` filled with `atoi(tag)`.
const CPP_HEARTBEAT: &str = concat!(
    r#"{"clientID":"15219-127.0.0.1@DEFAULT","consumerDataSet":[{"consumeFromWhere":0,"consumeType":1,"#,
    r#""groupName":"CID-smoke2","messageModel":1,"subscriptionDataSet":[{"subString":"*","#,
    r#""subVersion":"1796412029214","topic":"%RETRY%CID-smoke2"},{"codeSet":[0,0],"subString":"TA || TB","#,
    r#""subVersion":"1796412029214","tagsSet":["TA","TB"],"topic":"SmokeT"}]}]}"#
);

/// A request frame as the C++ client writes one (`RemotingCommand::Encode`): a jsoncpp
/// `FastWriter` header (keys sorted, language CPP, `int` ext members as JSON numbers, the
/// empty credential keys every request carries, a trailing newline) and `body`.
fn cpp_frame(code: i32, opaque: i32, ext_members: &str, body: &[u8]) -> Vec<u8> {
    let header = format!(
        "{{\"code\":{code},\"extFields\":{{\"AccessKey\":\"\",\"ONSChannelKey\":\"\",\"Signature\":\"\"{ext_members}}},\
         \"flag\":0,\"language\":\"CPP\",\"opaque\":{opaque},\"remark\":\"\",\"version\":317}}\n"
    );
    let mut frame = Vec::new();
    frame.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(header.as_bytes());
    frame.extend_from_slice(body);
    frame
}

/// The answer to the request with `opaque`, skipping what the broker sends meanwhile
/// (NOTIFY_CONSUMER_IDS_CHANGED after a heartbeat); bounded.
fn answer_to(conn: &mut Conn, opaque: i32) -> rockshard_net::RemotingCommand {
    (0..=SERVER_REQUESTS_SKIPPED_MAX)
        .filter_map(|_| conn.read_frame())
        .find(|f| f.is_response())
        .filter(|f| f.opaque == opaque)
        .unwrap_or_else(|| panic!("no answer with opaque {opaque}"))
}

#[test]
fn a_cpp_push_consumer_joins_its_group_and_pulls_by_tag() {
    let broker = Broker::start();
    let mut s0 = broker.connect(0);
    create_topic(&mut s0, "SmokeT", 2);
    for (i, tag) in ["TA", "TC", "TB", "TD"].into_iter().enumerate() {
        let answer = s0.call(send_message("SmokeT", 0, format!("m{i}-{tag}"), &format!("TAGS\u{1}{tag}\u{2}")));
        assert_eq!(answer.code, response::SUCCESS, "send {tag}: {answer:?}");
    }

    s0.write_raw(&cpp_frame(request::HEART_BEAT, 77, "", CPP_HEARTBEAT.as_bytes()));
    let answer = answer_to(&mut s0, 77);
    assert_eq!(answer.code, response::SUCCESS, "the C++ heartbeat is accepted: {answer:?}");

    // The group has the member, so a rebalance gives it the queues.
    let group = ConsumerGroupRequestHeader { consumer_group: "CID-smoke2".into() };
    let answer = s0.call(req(request::GET_CONSUMER_LIST_BY_GROUP, group.to_ext_fields()));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let members: ConsumerListBody = body::from_json(&answer.body).expect("ConsumerListBody");
    assert_eq!(members.consumer_id_list, ["15219-127.0.0.1@DEFAULT"]);

    // Ordinals mapped to Java's constants; tag codes are the broker's, not the client's.
    let answer = s0.call(req(request::GET_CONSUMER_CONNECTION_LIST, group.to_ext_fields()));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let connection: ConsumerConnection = body::from_json(&answer.body).expect("ConsumerConnection");
    assert_eq!(connection.connection_set[0].language, "CPP");
    assert_eq!(connection.consume_type, ConsumeType::ConsumePassively);
    assert_eq!(connection.message_model, MessageModel::Clustering);
    assert_eq!(connection.consume_from_where, ConsumeFromWhere::ConsumeFromLastOffset);
    let sub = &connection.subscription_table["SmokeT"];
    assert_eq!(sub.tags_set, ["TA", "TB"]);
    assert_eq!(sub.code_set, [java_string_hash("TA"), java_string_hash("TB")], "not the client's [0, 0]");
    assert!(connection.subscription_table["%RETRY%CID-smoke2"].code_set.is_empty());

    // A pull as the C++ push consumer sends it: no subscription in the pull (it comes
    // from the heartbeat), 64-bit members as strings.
    let pull_members = concat!(
        r#","commitOffset":"0","consumerGroup":"CID-smoke2","maxMsgNums":32,"queueId":0,"queueOffset":"0","#,
        r#""subVersion":"1796412029214","suspendTimeoutMillis":"1000","sysFlag":2,"topic":"SmokeT""#
    );
    s0.write_raw(&cpp_frame(request::PULL_MESSAGE, 78, pull_members, b""));
    let answer = answer_to(&mut s0, 78);
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let mut delivered = Vec::new();
    let mut records = &answer.body[..];
    while !records.is_empty() {
        let Ok(Some(Record::Message(m))) = stored::decode(records) else { panic!("a record: {answer:?}") };
        delivered.push(String::from_utf8_lossy(m.body).into_owned());
        records = &records[m.header.total_size as usize..];
    }
    assert_eq!(delivered, ["m0-TA", "m2-TB"], "only the subscribed tags");
    assert_eq!(answer.ext_fields.get("nextBeginOffset"), Some("4"), "past the filtered-out TD too");
}

/// The broker's log so far, once it holds a line containing every one of `needles`
/// (bounded wait: the log is written by another process).
fn log_line_with(broker: &Broker, needles: &[&str]) -> String {
    let mut found = None;
    eventually(Duration::from_secs(5), || {
        found = broker.log().lines().find(|l| needles.iter().all(|n| l.contains(n))).map(str::to_owned);
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no log line with {needles:?}; log:\n{}", broker.log()))
}

#[test]
fn rejected_requests_are_logged_at_warn_with_code_remark_and_peer() {
    let broker = Broker::start();
    let mut s0 = broker.connect(0);
    let peer = s0.stream.local_addr().expect("local addr").to_string();

    // Expected non-errors first: a consumer without a committed offset, a pull of an
    // empty queue. Neither may reach the log as a rejection.
    create_topic(&mut s0, "Calm", 2);
    let query = QueryConsumerOffsetRequestHeader {
        consumer_group: "Fresh".into(),
        topic: "Calm".into(),
        queue_id: 0,
        set_zero_if_not_found: Some(false),
    };
    let answer = s0.call(req(request::QUERY_CONSUMER_OFFSET, query.to_ext_fields()));
    assert_eq!(answer.code, response::QUERY_NOT_FOUND, "{answer:?}");
    assert_eq!(s0.call(pull("Calm", 0, 0, 0)).code, response::PULL_NOT_FOUND);

    // A heartbeat body that is no JSON: refused, and the broker log says so.
    let answer = s0.call(req(request::HEART_BEAT, ExtFields::new()).with_body(&b"{\"clientID\":"[..]));
    assert_eq!(answer.code, response::SYSTEM_ERROR, "{answer:?}");
    let remark = answer.remark.clone().expect("a remark");
    let line = log_line_with(&broker, &["request rejected", &peer, "request_code=34"]);
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("SYSTEM_ERROR") && line.contains(&remark), "{line}");
    assert!(line.contains("language=RUST"), "{line}");
    // Also a oneway request, whose sender never sees an answer.
    let mut oneway = req(request::UPDATE_CONSUMER_OFFSET, ExtFields::new());
    oneway.flag |= flag::ONEWAY;
    s0.send(oneway);
    log_line_with(&broker, &["request rejected", &peer, "request_code=15", "INVALID_PARAMETER"]);

    // The NameServer too: a route lookup without its topic is refused; one of a missing
    // topic is a normal answer (clients probe routes) and is not logged.
    let mut ns = Conn::connect(&broker.namesrv_addr());
    let ns_peer = ns.stream.local_addr().expect("local addr").to_string();
    let missing = GetRouteInfoRequestHeader { topic: "NoSuchTopic".into(), accept_standard_json_only: None };
    assert_eq!(ns.call(req(request::GET_ROUTEINFO_BY_TOPIC, missing.to_ext_fields())).code, response::TOPIC_NOT_EXIST);
    let answer = ns.call(req(request::GET_ROUTEINFO_BY_TOPIC, ExtFields::new()));
    assert_eq!(answer.code, response::SYSTEM_ERROR, "{answer:?}");
    log_line_with(&broker, &["request rejected", &ns_peer, "request_code=105", "topic"]);

    let log = broker.log();
    let rejections: Vec<&str> = log.lines().filter(|l| l.contains("request rejected")).collect();
    assert!(
        rejections.iter().all(|l| !l.contains("request_code=14 ") && !l.contains("request_code=11 ")),
        "expected answers logged as rejections: {rejections:#?}"
    );
    assert_eq!(rejections.len(), 3, "one line per rejected request: {rejections:#?}");
}
