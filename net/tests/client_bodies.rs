//! Golden decode tests: JSON bodies exactly as real RocketMQ clients write them.
//!
//! Owns one test per client family and body: the C++ client (rocketmq-client-cpp, which
//! the Python, Go 1.x cgo, Node and PHP bindings wrap; jsoncpp's `FastWriter`, keys
//! sorted, a trailing newline, enums as C++ ordinals, 64-bit numbers as strings), the
//! Go client (rocketmq-client-go v2; struct member order, `codeSet` as strings, enum
//! names, nanosecond `subVersion`) and the Java client (fastjson, members in alphabetical
//! order, enum names). Each body was built from that client's source (named beside it)
//! or captured on the wire; each test asserts the decoded fields, enum values mapped by
//! Java ordinal to the right variant.
//!
//! Also here: the lenient rules themselves (what Java's fastjson accepts: enums by name
//! or ordinal, numbers and booleans as strings, null members, unknown members), checked
//! on every body type the broker and the NameServer decode, and the errors for values
//! that no reading makes sense of.
//!
//! Deliberately not here: encoding (the golden encode tests sit beside the encoders in
//! `body.rs`; leniency never changes what we write).

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::collections::BTreeMap;

use rockshard_net::body::{
    from_json, to_json, CheckClientRequestBody, ConsumeFromWhere, ConsumeType, DataVersion, HeartbeatData,
    LockBatchRequestBody, MessageModel, MessageQueue, QueueData, RegisterBrokerBody, SubscriptionData,
    TopicConfigSerializeWrapper, TopicRouteData, UnlockBatchRequestBody,
};
use rockshard_net::Error;

/// The C++ client's push-consumer heartbeat, captured on the wire (issue 12): the body a
/// Java-compatible broker must accept. `consumeFromWhere` 0, `consumeType` 1 and
/// `messageModel` 1 are ordinals; `subVersion` is a string; `codeSet` holds `atoi(tag)`.
const CPP_CONSUMER_HEARTBEAT: &str = concat!(
    r#"{"clientID":"15219-127.0.0.1@DEFAULT","consumerDataSet":[{"consumeFromWhere":0,"consumeType":1,"#,
    r#""groupName":"CID-smoke2","messageModel":1,"subscriptionDataSet":[{"subString":"*","#,
    r#""subVersion":"1796412029214","topic":"%RETRY%CID-smoke2"},{"codeSet":[0,0],"subString":"TA || TB","#,
    r#""subVersion":"1796412029214","tagsSet":["TA","TB"],"topic":"SmokeT"}]}]}"#
);

fn mq(broker: &str, queue_id: i32, topic: &str) -> MessageQueue {
    MessageQueue { broker_name: broker.into(), queue_id, topic: topic.into() }
}

#[test]
fn cpp_push_consumer_heartbeat_from_the_wire_decodes() {
    let hb: HeartbeatData = from_json(CPP_CONSUMER_HEARTBEAT.as_bytes()).expect("the C++ heartbeat decodes");
    assert_eq!(hb.client_id, "15219-127.0.0.1@DEFAULT");
    assert!(hb.producer_data_set.is_empty());
    assert_eq!((hb.heartbeat_fingerprint, hb.without_sub), (0, false));
    let [c] = &hb.consumer_data_set[..] else { panic!("one consumer group: {hb:?}") };
    assert_eq!(c.group_name, "CID-smoke2");
    assert_eq!(c.consume_from_where, ConsumeFromWhere::ConsumeFromLastOffset);
    assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
    assert_eq!(c.message_model, MessageModel::Clustering);
    assert!(!c.unit_mode);
    let [retry, tagged] = &c.subscription_data_set[..] else { panic!("two subscriptions: {c:?}") };
    assert_eq!((retry.topic.as_str(), retry.sub_string.as_str()), ("%RETRY%CID-smoke2", "*"));
    assert_eq!(retry.sub_version, 1_796_412_029_214);
    assert_eq!(retry.expression_type, "TAG", "absent means TAG");
    assert!(retry.tags_set.is_empty() && retry.code_set.is_empty());
    assert_eq!((tagged.topic.as_str(), tagged.sub_string.as_str()), ("SmokeT", "TA || TB"));
    assert_eq!(tagged.sub_version, 1_796_412_029_214);
    assert_eq!(tagged.tags_set, ["TA", "TB"]);
    // Decoded as sent; the broker computes its own codes from the tags (`groups`).
    assert_eq!(tagged.code_set, [0, 0]);
}

/// The C++ enums (`include/ConsumeType.h`) are declared in Java's order, so the ordinals
/// it writes are Java's: check every one against RocketMQ's declarations
/// (`ConsumeFromWhere.java` keeps three deprecated members in the middle).
#[test]
fn cpp_ordinals_map_to_the_java_constants() {
    let with = |from_where: u32, consume_type: u32, model: u32| {
        let body = CPP_CONSUMER_HEARTBEAT
            .replace(r#""consumeFromWhere":0"#, &format!(r#""consumeFromWhere":{from_where}"#))
            .replace(r#""consumeType":1"#, &format!(r#""consumeType":{consume_type}"#))
            .replace(r#""messageModel":1"#, &format!(r#""messageModel":{model}"#));
        let hb: HeartbeatData = from_json(body.as_bytes()).expect("decodes");
        let c = &hb.consumer_data_set[0];
        (c.consume_from_where, c.consume_type, c.message_model)
    };
    use ConsumeFromWhere as W;
    let java_order = [
        W::ConsumeFromLastOffset,
        W::ConsumeFromLastOffsetAndFromMinWhenBootFirst,
        W::ConsumeFromMinOffset,
        W::ConsumeFromMaxOffset,
        W::ConsumeFromFirstOffset,
        W::ConsumeFromTimestamp,
    ];
    for (ordinal, expected) in java_order.into_iter().enumerate() {
        assert_eq!(with(ordinal as u32, 1, 1).0, expected, "ConsumeFromWhere ordinal {ordinal}");
    }
    assert_eq!(with(0, 0, 1).1, ConsumeType::ConsumeActively);
    assert_eq!(with(0, 1, 1).1, ConsumeType::ConsumePassively);
    assert_eq!(with(0, 2, 1).1, ConsumeType::ConsumePop);
    assert_eq!(with(0, 1, 0).2, MessageModel::Broadcasting);
    assert_eq!(with(0, 1, 1).2, MessageModel::Clustering);
    // An ordinal past the last constant is a kind a newer client added: Unknown, as an
    // unknown name is, rather than failing the whole heartbeat.
    assert_eq!(with(6, 3, 2), (W::Unknown, ConsumeType::Unknown, MessageModel::Unknown));
}

/// `HeartbeatData::Encode` for a client with only a producer: no `consumerDataSet` at
/// all, and `FastWriter`'s trailing newline.
#[test]
fn cpp_producer_heartbeat_decodes() {
    let body = "{\"clientID\":\"15219-127.0.0.1@DEFAULT\",\"producerDataSet\":[{\"groupName\":\"PG-smoke\"}]}\n";
    let hb: HeartbeatData = from_json(body.as_bytes()).expect("decodes");
    assert_eq!(hb.client_id, "15219-127.0.0.1@DEFAULT");
    assert_eq!(hb.producer_data_set.len(), 1);
    assert_eq!(hb.producer_data_set[0].group_name, "PG-smoke");
    assert!(hb.consumer_data_set.is_empty());
}

/// `LockBatchRequestBody::Encode` / `UnlockBatchRequestBody::Encode` (src/protocol/
/// LockBatchBody.cpp): no `onlyThisBroker`, keys sorted, a trailing newline.
#[test]
fn cpp_lock_and_unlock_bodies_decode() {
    let body = concat!(
        r#"{"clientId":"15219-127.0.0.1@DEFAULT","consumerGroup":"CID-smoke2","mqSet":["#,
        r#"{"brokerName":"broker-a-s0","queueId":0,"topic":"SmokeT"},"#,
        r#"{"brokerName":"broker-a-s0","queueId":3,"topic":"SmokeT"}]}"#,
        "\n"
    );
    let expected = LockBatchRequestBody {
        client_id: "15219-127.0.0.1@DEFAULT".into(),
        consumer_group: "CID-smoke2".into(),
        mq_set: vec![mq("broker-a-s0", 0, "SmokeT"), mq("broker-a-s0", 3, "SmokeT")],
        only_this_broker: false,
    };
    assert_eq!(from_json::<LockBatchRequestBody>(body.as_bytes()), Ok(expected.clone()));
    assert_eq!(from_json::<UnlockBatchRequestBody>(body.as_bytes()), Ok(expected));
}

/// `heartbeatData.encode` (internal/model.go): Go struct member order, `consumeType` /
/// `messageModel` / `consumeFromWhere` as names (`strings.ToUpper` of "Clustering"),
/// `codeSet` as a set of strings (`strconv.Itoa` of the hash), `subVersion` in
/// nanoseconds (`time.Now().UnixNano()`), empty sets as `[]`.
#[test]
fn go_heartbeat_with_producer_and_consumer_decodes() {
    let body = concat!(
        r#"{"clientID":"192.168.0.2@4711","producerDataSet":[{"groupName":"PG"}],"#,
        r#""consumerDataSet":[{"groupName":"CG","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","#,
        r#""consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","subscriptionDataSet":["#,
        r#"{"classFilterMode":false,"topic":"TopicTest","subString":"TagA || TagB","tagsSet":["TagA","TagB"],"#,
        r#""codeSet":["2598919","2598920"],"subVersion":1700000000123456789,"expressionType":"TAG"},"#,
        r#"{"classFilterMode":false,"topic":"%RETRY%CG","subString":"*","tagsSet":[],"codeSet":[],"#,
        r#""subVersion":1700000000123456789,"expressionType":"TAG"}],"unitMode":false}]}"#
    );
    let hb: HeartbeatData = from_json(body.as_bytes()).expect("the Go heartbeat decodes");
    assert_eq!(hb.client_id, "192.168.0.2@4711");
    assert_eq!(hb.producer_data_set[0].group_name, "PG");
    let c = &hb.consumer_data_set[0];
    assert_eq!(c.group_name, "CG");
    assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
    assert_eq!(c.message_model, MessageModel::Clustering);
    assert_eq!(c.consume_from_where, ConsumeFromWhere::ConsumeFromFirstOffset);
    let sub = &c.subscription_data_set[0];
    assert_eq!(sub.tags_set, ["TagA", "TagB"]);
    assert_eq!(sub.code_set, [2_598_919, 2_598_920]);
    assert_eq!(sub.sub_version, 1_700_000_000_123_456_789);
    assert_eq!(c.subscription_data_set[1].topic, "%RETRY%CG");
}

/// Go's `MessageModel.String()` is "BroadCasting"; the heartbeat upper-cases it, but
/// fastjson matches enum names case-insensitively too, and so do we. A pull consumer
/// with no subscription yet marshals a nil slice as `null`.
#[test]
fn go_pull_consumer_heartbeat_with_mixed_case_and_null_members_decodes() {
    let body = concat!(
        r#"{"clientID":"192.168.0.2@4711","producerDataSet":[],"consumerDataSet":[{"groupName":"LPG","#,
        r#""consumeType":"CONSUME_ACTIVELY","messageModel":"BroadCasting","consumeFromWhere":"UNKNOWN","#,
        r#""subscriptionDataSet":null,"unitMode":false}]}"#
    );
    let hb: HeartbeatData = from_json(body.as_bytes()).expect("decodes");
    let c = &hb.consumer_data_set[0];
    assert_eq!(c.consume_type, ConsumeType::ConsumeActively);
    assert_eq!(c.message_model, MessageModel::Broadcasting);
    assert_eq!(c.consume_from_where, ConsumeFromWhere::Unknown);
    assert!(c.subscription_data_set.is_empty());
}

/// `lockBatchRequestBody` (consumer/consumer.go): member order consumerGroup, clientId,
/// mqSet; no `onlyThisBroker`.
#[test]
fn go_lock_body_decodes() {
    let body = concat!(
        r#"{"consumerGroup":"CG","clientId":"192.168.0.2@4711","#,
        r#""mqSet":[{"topic":"TopicTest","brokerName":"broker-a-s1","queueId":2}]}"#
    );
    let lock: LockBatchRequestBody = from_json(body.as_bytes()).expect("decodes");
    assert_eq!(lock.consumer_group, "CG");
    assert_eq!(lock.client_id, "192.168.0.2@4711");
    assert_eq!(lock.mq_set, [mq("broker-a-s1", 2, "TopicTest")]);
    assert!(!lock.only_this_broker);
}

/// `HeartbeatData` through fastjson (Java client 5.x): members in alphabetical order,
/// enum names, heartbeat V2's fingerprint.
#[test]
fn java_heartbeat_v2_decodes() {
    let body = concat!(
        r#"{"clientID":"192.168.0.2@12345#98765","consumerDataSet":[{"consumeFromWhere":"CONSUME_FROM_TIMESTAMP","#,
        r#""consumeType":"CONSUME_PASSIVELY","groupName":"CG","messageModel":"BROADCASTING","#,
        r#""subscriptionDataSet":[{"classFilterMode":false,"codeSet":[2598919],"expressionType":"TAG","#,
        r#""subString":"TagA","subVersion":1700000000000,"tagsSet":["TagA"],"topic":"T"}],"unitMode":false}],"#,
        r#""heartbeatFingerprint":-1534542433,"producerDataSet":[{"groupName":"CLIENT_INNER_PRODUCER"}],"#,
        r#""withoutSub":true}"#
    );
    let hb: HeartbeatData = from_json(body.as_bytes()).expect("decodes");
    assert_eq!((hb.heartbeat_fingerprint, hb.without_sub), (-1_534_542_433, true));
    let c = &hb.consumer_data_set[0];
    assert_eq!(c.consume_from_where, ConsumeFromWhere::ConsumeFromTimestamp);
    assert_eq!(c.message_model, MessageModel::Broadcasting);
    assert_eq!(c.subscription_data_set[0].code_set, [2_598_919]);
    assert_eq!(hb.producer_data_set[0].group_name, "CLIENT_INNER_PRODUCER");
}

/// `LockBatchRequestBody` / `UnlockBatchRequestBody` through fastjson.
#[test]
fn java_lock_and_unlock_bodies_decode() {
    let body = concat!(
        r#"{"clientId":"192.168.0.2@12345#98765","consumerGroup":"CG","#,
        r#""mqSet":[{"brokerName":"broker-a-s0","queueId":1,"topic":"T"}],"onlyThisBroker":true}"#
    );
    let lock: LockBatchRequestBody = from_json(body.as_bytes()).expect("decodes");
    assert!(lock.only_this_broker);
    assert_eq!(lock.mq_set, [mq("broker-a-s0", 1, "T")]);
    let unlock: UnlockBatchRequestBody = from_json(body.as_bytes()).expect("decodes");
    assert_eq!(unlock, lock);
}

/// What fastjson accepts beyond plain JSON types, on the bodies the broker decodes:
/// numbers and booleans as strings, booleans as 0/1, enum names in any case, enum
/// ordinals given as strings, null for any member, unknown members.
#[test]
fn broker_bodies_accept_fastjsons_lenient_forms() {
    let hb: HeartbeatData = from_json(
        br#"{"clientID":"c","heartbeatFingerprint":"-7","withoutSub":"TRUE","producerDataSet":null,
            "consumerDataSet":[{"groupName":"G","consumeType":"consume_actively","messageModel":"0",
              "consumeFromWhere":"4","unitMode":1,"subscriptionDataSet":[{"topic":"T","subString":null,
              "tagsSet":null,"codeSet":null,"subVersion":null,"classFilterMode":"false","expressionType":null,
              "filterClassSource":"ignored"}],"somethingNew":{"a":[1,2]}}]}"#,
    )
    .expect("decodes");
    assert_eq!((hb.heartbeat_fingerprint, hb.without_sub), (-7, true));
    assert!(hb.producer_data_set.is_empty());
    let c = &hb.consumer_data_set[0];
    assert_eq!(c.consume_type, ConsumeType::ConsumeActively);
    assert_eq!(c.message_model, MessageModel::Broadcasting);
    assert_eq!(c.consume_from_where, ConsumeFromWhere::ConsumeFromFirstOffset);
    assert!(c.unit_mode);
    let sub = &c.subscription_data_set[0];
    assert_eq!(
        *sub,
        SubscriptionData { topic: "T".into(), expression_type: String::new(), ..Default::default() },
        "nulls take the member's zero value, as in Java"
    );

    let lock: LockBatchRequestBody = from_json(
        br#"{"clientId":"c","consumerGroup":"G","onlyThisBroker":"true","mqSet":[{"brokerName":"b","queueId":"3","topic":"T"}]}"#,
    )
    .expect("decodes");
    assert!(lock.only_this_broker);
    assert_eq!(lock.mq_set, [mq("b", 3, "T")]);

    let check: CheckClientRequestBody = from_json(
        br#"{"clientId":"c","group":"G","namespace":null,"subscriptionData":{"topic":"T","subVersion":"12","expressionType":"SQL92","subString":"a > 1"}}"#,
    )
    .expect("decodes");
    assert_eq!(check.namespace, None);
    let sub = check.subscription_data.expect("present");
    assert_eq!((sub.sub_version, sub.expression_type.as_str()), (12, "SQL92"));
}

/// The same rules on what the NameServer decodes: REGISTER_BROKER's body (and the older
/// bare wrapper), REGISTER_TOPIC_IN_NAMESRV's route, QUERY_DATA_VERSION's version. Java's
/// `TopicFilterType` is an enum too: an ordinal becomes its name.
#[test]
fn namesrv_bodies_accept_fastjsons_lenient_forms() {
    let body: RegisterBrokerBody = from_json(
        br#"{"filterServerList":null,"topicConfigSerializeWrapper":{
            "dataVersion":{"counter":"3","stateVersion":null,"timestamp":"1700000000000"},
            "mappingDataVersion":null,
            "topicConfigTable":{"T":{"attributes":{"+message.type":"NORMAL","n":5},"order":"false","perm":"6",
              "readQueueNums":4.0,"topicFilterType":1,"topicName":"T","topicSysFlag":null,"writeQueueNums":"4"}},
            "topicQueueMappingDetailMap":null,"topicQueueMappingInfoMap":{}}}"#,
    )
    .expect("decodes");
    let w = &body.topic_config_serialize_wrapper;
    assert_eq!(w.data_version, DataVersion { counter: 3, state_version: 0, timestamp: 1_700_000_000_000 });
    assert_eq!(w.mapping_data_version, DataVersion::default());
    let t = &w.topic_config_table["T"];
    assert_eq!((t.perm, t.read_queue_nums, t.write_queue_nums, t.topic_sys_flag, t.order), (6, 4, 4, 0, false));
    assert_eq!(t.topic_filter_type, "MULTI_TAG");
    assert_eq!(t.attributes, BTreeMap::from([("+message.type".into(), "NORMAL".into()), ("n".into(), "5".into())]));

    let wrapper: TopicConfigSerializeWrapper = from_json(
        br#"{"dataVersion":{"counter":1,"timestamp":2},"topicConfigTable":{"T":{"topicName":"T","topicFilterType":"single_tag"}}}"#,
    )
    .expect("decodes");
    assert_eq!(wrapper.topic_config_table["T"].topic_filter_type, "SINGLE_TAG");
    assert_eq!(wrapper.topic_config_table["T"].read_queue_nums, 16, "absent members keep Java's defaults");

    let route: TopicRouteData = from_json(
        br#"{"brokerDatas":null,"queueDatas":[{"brokerName":"b","perm":"6","readQueueNums":"2","writeQueueNums":2,"topicSysFlag":null}],"filterServerTable":null}"#,
    )
    .expect("decodes");
    assert_eq!(
        route.queue_datas,
        [QueueData { broker_name: "b".into(), perm: 6, read_queue_nums: 2, topic_sys_flag: 0, write_queue_nums: 2 }]
    );
    assert!(route.broker_datas.is_empty());

    let version: DataVersion = from_json(br#"{"counter":"9","stateVersion":"0","timestamp":17}"#).expect("decodes");
    assert_eq!(version, DataVersion { counter: 9, state_version: 0, timestamp: 17 });
}

/// Values no reading makes sense of are refused with the body and the value named (and
/// serde_json's line and column), never truncated or guessed.
#[test]
fn nonsense_values_are_refused_clearly() {
    let refused = |body: &[u8]| match from_json::<LockBatchRequestBody>(body) {
        Err(Error::BodyJson { body: "LockBatchRequestBody", detail }) => detail,
        other => panic!("expected a LockBatchRequestBody error, got {other:?}"),
    };
    let detail = refused(br#"{"mqSet":[{"queueId":"three"}]}"#);
    assert!(detail.contains("three"), "{detail}");
    let detail = refused(br#"{"mqSet":[{"queueId":1.5}]}"#);
    assert!(detail.contains("1.5"), "{detail}");
    let detail = refused(br#"{"mqSet":[{"queueId":4294967296}]}"#);
    assert!(detail.contains("4294967296"), "{detail}");
    let detail = refused(br#"{"onlyThisBroker":"maybe"}"#);
    assert!(detail.contains("maybe"), "{detail}");
    let detail = refused(br#"{"clientId":{"a":1}}"#);
    assert!(detail.contains("string"), "{detail}");
    assert!(from_json::<HeartbeatData>(br#"{"consumerDataSet":[{"consumeType":true}]}"#).is_err());
    assert!(from_json::<HeartbeatData>(br#"{"consumerDataSet":[{"messageModel":-1}]}"#).is_err());
}

/// Leniency is for reading only: what we write for a decoded lenient body is the plain
/// form Java writes.
#[test]
fn a_lenient_body_re_encodes_in_javas_form() {
    let hb: HeartbeatData = from_json(CPP_CONSUMER_HEARTBEAT.as_bytes()).expect("decodes");
    let text = String::from_utf8(to_json(&hb).expect("encodes")).expect("utf8");
    assert!(text.contains(r#""consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY""#));
    assert!(text.contains(r#""messageModel":"CLUSTERING""#) && text.contains(r#""subVersion":1796412029214"#));
    assert_eq!(from_json::<HeartbeatData>(text.as_bytes()), Ok(hb));
}
