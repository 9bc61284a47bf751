//! Request-level tests of [`NameServer`]: commands in, commands out, time chosen by the
//! test. The route table's own rules are tested in `routes.rs`.

use std::collections::BTreeMap;

use bytes::BytesMut;
use rockshard_net::body::{ClusterInfo, TopicConfig};
use rockshard_net::code::{perm, LanguageCode};
use rockshard_net::{decode_frame, encode_frame, SerializeType};

use super::*;

const CLUSTER: &str = "DefaultCluster";

fn request(code: i32, ext: &[(&str, &str)]) -> RemotingCommand {
    RemotingCommand::new_request(code, ext.iter().copied().collect()).with_opaque(77)
}

fn wrapper(counter: i64, topics: &[(&str, i32, i32)]) -> TopicConfigSerializeWrapper {
    TopicConfigSerializeWrapper {
        data_version: DataVersion { counter, state_version: 0, timestamp: 1_700_000_000_000 },
        topic_config_table: topics
            .iter()
            .map(|(name, queues, perm)| {
                let config = TopicConfig {
                    topic_name: (*name).to_owned(),
                    read_queue_nums: *queues,
                    write_queue_nums: *queues,
                    perm: *perm,
                    ..TopicConfig::default()
                };
                ((*name).to_owned(), config)
            })
            .collect(),
        ..Default::default()
    }
}

fn register_request(name: &str, addr: &str, id: i64, topics: TopicConfigSerializeWrapper) -> RemotingCommand {
    let header = RegisterBrokerRequestHeader {
        broker_name: name.into(),
        broker_addr: addr.into(),
        cluster_name: CLUSTER.into(),
        ha_server_addr: format!("{addr}-ha"),
        broker_id: id,
        heartbeat_timeout_millis: None,
        enable_acting_master: Some(false),
        compressed: Some(false),
        body_crc32: None,
    };
    let body = to_json(&RegisterBrokerBody { filter_server_list: vec![], topic_config_serialize_wrapper: topics })
        .expect("encodes");
    RemotingCommand::new_request(req::REGISTER_BROKER, header.to_ext_fields()).with_body(body)
}

fn answer(ns: &NameServer, request: &RemotingCommand, now_ms: u64) -> RemotingCommand {
    ns.handle_at(Some(1), request, now_ms).expect("two-way requests are answered")
}

fn route_of(ns: &NameServer, topic: &str) -> Option<TopicRouteData> {
    let a = answer(ns, &request(req::GET_ROUTEINFO_BY_TOPIC, &[("topic", topic)]), 0);
    match a.code {
        resp::SUCCESS => Some(from_json(&a.body).expect("route body decodes")),
        resp::TOPIC_NOT_EXIST => None,
        other => panic!("unexpected code {other}: {:?}", a.remark),
    }
}

#[test]
fn registered_broker_is_routable_in_both_json_dialects() {
    let ns = NameServer::new(120_000);
    let reg = register_request("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[("TopicTest", 4, 6)]));
    let a = answer(&ns, &reg, 0);
    assert_eq!((a.code, a.remark.as_deref()), (resp::SUCCESS, None));
    assert!(a.is_response());
    assert!(a.ext_fields.is_empty(), "a master learns no master address: {:?}", a.ext_fields);
    assert!(a.body.is_empty());

    let mut get = request(req::GET_ROUTEINFO_BY_TOPIC, &[("topic", "TopicTest")]);
    get.version = version::V5_3_1_SNAPSHOT;
    let a = answer(&ns, &get, 0);
    assert_eq!(a.code, resp::SUCCESS);
    assert_eq!(a.opaque, 77);
    let body = std::str::from_utf8(&a.body).expect("utf8");
    assert_eq!(
        body,
        concat!(
            r#"{"brokerDatas":[{"brokerAddrs":{"0":"127.0.0.1:10911"},"brokerName":"broker-a","#,
            r#""cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"#,
            r#""queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
        )
    );

    // An old client gets bare integer keys, unless it asks for standard JSON.
    get.version = version::V4_9_4 - 1;
    let legacy = answer(&ns, &get, 0);
    assert!(std::str::from_utf8(&legacy.body).expect("utf8").contains(r#""brokerAddrs":{0:"127.0.0.1:10911"}"#));
    get.ext_fields.insert("acceptStandardJsonOnly", "true");
    assert_eq!(answer(&ns, &get, 0).body, a.body);
}

#[test]
fn unknown_topic_is_topic_not_exist_naming_it() {
    let ns = NameServer::new(120_000);
    let a = answer(&ns, &request(req::GET_ROUTEINFO_BY_TOPIC, &[("topic", "Nope")]), 0);
    assert_eq!(a.code, resp::TOPIC_NOT_EXIST);
    assert_eq!(a.remark.as_deref(), Some("No topic route info in name server for the topic: Nope"));
    assert!(a.body.is_empty());
}

#[test]
fn tbw102_is_routable_only_when_a_broker_registers_it() {
    let ns = NameServer::new(120_000);
    answer(&ns, &register_request("broker-a-s0", "127.0.0.1:10911", 0, wrapper(1, &[("T", 4, 6)])), 0);
    assert_eq!(route_of(&ns, "TBW102"), None);
    let auto_create = wrapper(1, &[("T", 4, 6), ("TBW102", 8, perm::READ | perm::WRITE | perm::INHERIT)]);
    answer(&ns, &register_request("broker-a-s1", "127.0.0.1:10912", 0, auto_create), 0);
    let route = route_of(&ns, "TBW102").expect("route");
    assert_eq!(route.queue_datas.len(), 1);
    assert_eq!((route.queue_datas[0].broker_name.as_str(), route.queue_datas[0].perm), ("broker-a-s1", 7));
    assert_eq!(route_of(&ns, "T").expect("route").broker_datas.len(), 2);
}

#[test]
fn unknown_codes_are_not_supported_and_stray_responses_are_ignored() {
    let ns = NameServer::new(120_000);
    let a = answer(&ns, &request(req::SEND_MESSAGE, &[]), 0);
    assert_eq!(a.code, resp::REQUEST_CODE_NOT_SUPPORTED);
    assert_eq!(a.remark.as_deref(), Some(" request type 10 not supported"));
    let mut stray = request(req::GET_ROUTEINFO_BY_TOPIC, &[("topic", "T")]);
    stray.mark_response();
    assert_eq!(ns.handle_at(Some(1), &stray, 0), None);
}

#[test]
fn missing_fields_and_bad_bodies_are_system_errors() {
    let ns = NameServer::new(120_000);
    let a = answer(&ns, &request(req::GET_ROUTEINFO_BY_TOPIC, &[]), 0);
    assert_eq!(a.code, resp::SYSTEM_ERROR);
    assert!(a.remark.as_deref().is_some_and(|r| r.contains("topic")), "{:?}", a.remark);

    let mut reg = register_request("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[]));
    reg.ext_fields.remove("brokerAddr");
    let a = answer(&ns, &reg, 0);
    assert_eq!(a.code, resp::SYSTEM_ERROR);
    assert!(a.remark.as_deref().is_some_and(|r| r.contains("brokerAddr")), "{:?}", a.remark);

    let reg = register_request("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[])).with_body(&b"{not json"[..]);
    assert_eq!(answer(&ns, &reg, 0).code, resp::SYSTEM_ERROR);
    assert_eq!(ns.routes().live_count(), 0);

    let a = answer(&ns, &request(req::GET_KV_CONFIG, &[("namespace", "ns")]), 0);
    assert_eq!(a.code, resp::SYSTEM_ERROR);
    assert!(a.remark.as_deref().is_some_and(|r| r.contains("key")), "{:?}", a.remark);
}

#[test]
fn register_checks_the_body_crc_and_refuses_compressed_bodies() {
    let ns = NameServer::new(120_000);
    let mut reg = register_request("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[("T", 4, 6)]));
    let crc = rockshard_net::stored::body_crc(&reg.body);
    reg.ext_fields.insert("bodyCrc32", (crc ^ 1).to_string());
    let a = answer(&ns, &reg, 0);
    assert_eq!((a.code, a.remark.as_deref()), (resp::SYSTEM_ERROR, Some("crc32 not match")));
    assert_eq!(route_of(&ns, "T"), None);

    reg.ext_fields.insert("compressed", "true");
    reg.ext_fields.insert("bodyCrc32", crc.to_string());
    assert_eq!(answer(&ns, &reg, 0).code, resp::SYSTEM_ERROR);

    reg.ext_fields.insert("compressed", "false");
    assert_eq!(answer(&ns, &reg, 0).code, resp::SUCCESS);
    assert!(route_of(&ns, "T").is_some());
}

#[test]
fn old_brokers_send_the_topic_wrapper_alone_and_an_empty_body_means_no_topics() {
    let ns = NameServer::new(120_000);
    let mut reg = register_request("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[]));
    reg.version = version::V3_0_11 - 1;
    reg.body = to_json(&wrapper(1, &[("Old", 2, 6)])).expect("encodes").into();
    assert_eq!(answer(&ns, &reg, 0).code, resp::SUCCESS);
    assert_eq!(route_of(&ns, "Old").expect("route").queue_datas[0].write_queue_nums, 2);

    let empty = register_request("broker-b", "127.0.0.1:10921", 0, wrapper(1, &[])).with_body(Vec::new());
    assert_eq!(answer(&ns, &empty, 0).code, resp::SUCCESS);
    assert_eq!(ns.routes().data_version(CLUSTER, "127.0.0.1:10921"), Some(DataVersion::default()));
}

#[test]
fn slave_learns_its_master_and_zone_is_kept() {
    let ns = NameServer::new(120_000);
    let mut master = register_request("broker-a", "10.0.0.1:10911", 0, wrapper(1, &[("T", 4, 6)]));
    master.ext_fields.insert(ZONE_NAME_KEY, "zone-1");
    answer(&ns, &master, 0);
    let a = answer(&ns, &register_request("broker-a", "10.0.0.2:10911", 1, wrapper(1, &[("T", 4, 6)])), 0);
    assert_eq!(a.code, resp::SUCCESS);
    assert_eq!(a.ext_fields.get("masterAddr"), Some("10.0.0.1:10911"));
    assert_eq!(a.ext_fields.get("haServerAddr"), Some("10.0.0.1:10911-ha"));
    let route = route_of(&ns, "T").expect("route");
    assert_eq!(route.broker_datas[0].zone_name.as_deref(), None, "the slave's registration had no zone");
    assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);
}

#[test]
fn unregister_expiry_and_connection_close() {
    let ns = NameServer::new(1_000);
    answer(&ns, &register_request("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[("T", 4, 6)])), 0);
    // Registered over connection 2 (answer() uses 1).
    ns.handle_at(Some(2), &register_request("broker-b", "127.0.0.1:10921", 0, wrapper(1, &[("T", 4, 6)])), 0);
    ns.handle_at(Some(3), &register_request("broker-c", "127.0.0.1:10931", 0, wrapper(1, &[("T", 4, 6)])), 0);
    assert_eq!(route_of(&ns, "T").expect("route").broker_datas.len(), 3);

    let unreg = request(
        req::UNREGISTER_BROKER,
        &[("brokerName", "broker-a"), ("brokerAddr", "127.0.0.1:10911"), ("clusterName", CLUSTER), ("brokerId", "0")],
    );
    assert_eq!(answer(&ns, &unreg, 10).code, resp::SUCCESS);
    let names = |ns: &NameServer| -> Vec<String> {
        route_of(ns, "T").map(|r| r.broker_datas.into_iter().map(|b| b.broker_name).collect()).unwrap_or_default()
    };
    assert_eq!(names(&ns), ["broker-b", "broker-c"]);

    assert_eq!(ns.connection_closed(2).len(), 1);
    assert_eq!(names(&ns), ["broker-c"]);

    // broker-c heartbeats at 900 through BROKER_HEARTBEAT, oneway: no answer, but alive.
    let mut beat = request(req::BROKER_HEARTBEAT, &[("clusterName", CLUSTER), ("brokerAddr", "127.0.0.1:10931")]);
    beat.ext_fields.insert("brokerName", "broker-c");
    beat.mark_oneway();
    assert_eq!(ns.handle_at(Some(3), &beat, 900), None);
    assert!(ns.scan(1_500).is_empty());
    assert_eq!(ns.scan(1_901).len(), 1);
    assert_eq!(route_of(&ns, "T"), None);
}

#[test]
fn cluster_info_is_legacy_json_and_topic_lists() {
    let ns = NameServer::new(120_000);
    answer(&ns, &register_request("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[("T", 4, 6), ("U", 1, 6)])), 0);
    let a = answer(&ns, &request(req::GET_BROKER_CLUSTER_INFO, &[]), 0);
    assert_eq!(a.code, resp::SUCCESS);
    assert_eq!(
        std::str::from_utf8(&a.body).expect("utf8"),
        concat!(
            r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"127.0.0.1:10911"},"brokerName":"broker-a","#,
            r#""cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#
        )
    );
    let info: ClusterInfo = from_json(&a.body).expect("decodes");
    assert_eq!(info.cluster_addr_table[CLUSTER], ["broker-a"]);

    let a = answer(&ns, &request(req::GET_ALL_TOPIC_LIST_FROM_NAMESERVER, &[]), 0);
    assert_eq!(&a.body[..], br#"{"topicList":["T","U"]}"#);
    let a = answer(&ns, &request(req::GET_TOPICS_BY_CLUSTER, &[("cluster", CLUSTER)]), 0);
    assert_eq!(&a.body[..], br#"{"topicList":["T","U"]}"#);
    let a = answer(&ns, &request(req::GET_TOPICS_BY_CLUSTER, &[("cluster", "Other")]), 0);
    assert_eq!(&a.body[..], br#"{"topicList":[]}"#);
    let a = answer(&ns, &request(req::GET_SYSTEM_TOPIC_LIST_FROM_NS, &[]), 0);
    assert_eq!(&a.body[..], br#"{"brokerAddr":"127.0.0.1:10911","topicList":["DefaultCluster","broker-a"]}"#);
}

#[test]
fn kv_config_round_trip_and_order_topic_config_in_register_answers() {
    let ns = NameServer::new(120_000);
    let get = request(req::GET_KV_CONFIG, &[("namespace", NAMESPACE_ORDER_TOPIC_CONFIG), ("key", "T")]);
    let a = answer(&ns, &get, 0);
    assert_eq!(a.code, resp::QUERY_NOT_FOUND);
    assert_eq!(a.remark.as_deref(), Some("No config item, Namespace: ORDER_TOPIC_CONFIG Key: T"));
    let list = request(req::GET_KVLIST_BY_NAMESPACE, &[("namespace", NAMESPACE_ORDER_TOPIC_CONFIG)]);
    assert_eq!(answer(&ns, &list, 0).code, resp::QUERY_NOT_FOUND);

    let put = request(
        req::PUT_KV_CONFIG,
        &[("namespace", NAMESPACE_ORDER_TOPIC_CONFIG), ("key", "T"), ("value", "broker-a:4")],
    );
    assert_eq!(answer(&ns, &put, 0).code, resp::SUCCESS);
    let a = answer(&ns, &get, 0);
    assert_eq!((a.code, a.ext_fields.get("value")), (resp::SUCCESS, Some("broker-a:4")));
    assert_eq!(&answer(&ns, &list, 0).body[..], br#"{"table":{"T":"broker-a:4"}}"#);
    let a = answer(&ns, &register_request("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[])), 0);
    assert_eq!(&a.body[..], br#"{"table":{"T":"broker-a:4"}}"#);

    let delete = request(req::DELETE_KV_CONFIG, &[("namespace", NAMESPACE_ORDER_TOPIC_CONFIG), ("key", "T")]);
    assert_eq!(answer(&ns, &delete, 0).code, resp::SUCCESS);
    assert_eq!(answer(&ns, &get, 0).code, resp::QUERY_NOT_FOUND);
}

#[test]
fn query_data_version_says_whether_to_register_and_counts_as_a_heartbeat() {
    let ns = NameServer::new(1_000);
    let ext =
        [("brokerName", "broker-a"), ("brokerAddr", "127.0.0.1:10911"), ("clusterName", CLUSTER), ("brokerId", "0")];
    let query = |counter: i64| {
        request(req::QUERY_DATA_VERSION, &ext).with_body(to_json(&wrapper(counter, &[]).data_version).expect("encodes"))
    };
    let a = answer(&ns, &query(1), 0);
    assert_eq!((a.code, a.ext_fields.get("changed")), (resp::SUCCESS, Some("true")));
    assert!(a.body.is_empty(), "nothing known about this broker yet");

    answer(&ns, &register_request("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[("T", 4, 6)])), 0);
    let a = answer(&ns, &query(1), 900);
    assert_eq!(a.ext_fields.get("changed"), Some("false"));
    assert_eq!(from_json::<DataVersion>(&a.body).expect("decodes").counter, 1);
    assert!(ns.scan(1_500).is_empty(), "the unchanged query refreshed the broker at 900");
    let a = answer(&ns, &query(2), 1_800);
    assert_eq!(a.ext_fields.get("changed"), Some("true"));
    assert_eq!(ns.scan(1_901).len(), 1, "a changed query is no heartbeat");
}

#[test]
fn write_permission_admin_and_topic_admin() {
    let ns = NameServer::new(120_000);
    answer(&ns, &register_request("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[("T", 4, 6), ("U", 1, 6)])), 0);
    let a = answer(&ns, &request(req::WIPE_WRITE_PERM_OF_BROKER, &[("brokerName", "broker-a")]), 0);
    assert_eq!((a.code, a.ext_fields.get("wipeTopicCount")), (resp::SUCCESS, Some("2")));
    assert_eq!(route_of(&ns, "T").expect("route").queue_datas[0].perm, perm::READ);
    let a = answer(&ns, &request(req::ADD_WRITE_PERM_OF_BROKER, &[("brokerName", "broker-a")]), 0);
    assert_eq!(a.ext_fields.get("addTopicCount"), Some("2"));
    assert_eq!(route_of(&ns, "T").expect("route").queue_datas[0].perm, perm::READ | perm::WRITE);

    assert_eq!(answer(&ns, &request(req::DELETE_TOPIC_IN_NAMESRV, &[("topic", "U")]), 0).code, resp::SUCCESS);
    assert_eq!(route_of(&ns, "U"), None);

    let mut route = route_of(&ns, "T").expect("route");
    route.queue_datas[0].write_queue_nums = 2;
    let body = to_json(&route).expect("encodes");
    let a = answer(&ns, &request(req::REGISTER_TOPIC_IN_NAMESRV, &[("topic", "S")]).with_body(body.clone()), 0);
    assert_eq!(a.code, resp::SUCCESS);
    assert_eq!(route_of(&ns, "S").expect("route").queue_datas[0].write_queue_nums, 2);
    route.queue_datas[0].broker_name = "ghost".into();
    let body = to_json(&route).expect("encodes");
    let a = answer(&ns, &request(req::REGISTER_TOPIC_IN_NAMESRV, &[("topic", "G")]).with_body(body), 0);
    assert_eq!(a.code, resp::SYSTEM_ERROR);
    assert_eq!(route_of(&ns, "G"), None);
}

#[test]
fn answers_survive_the_wire_in_the_requests_header_encoding() {
    let ns = NameServer::new(120_000);
    answer(&ns, &register_request("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[("T", 4, 6)])), 0);
    for serialize_type in [SerializeType::Json, SerializeType::RocketMq] {
        let mut get = request(req::GET_ROUTEINFO_BY_TOPIC, &[("topic", "T")]).with_serialize_type(serialize_type);
        get.language = LanguageCode::Java;
        let mut wire = BytesMut::new();
        encode_frame(&get, &mut wire).expect("request encodes");
        let decoded = decode_frame(&mut wire).expect("decodes").expect("whole frame");
        let a = answer(&ns, &decoded, 0);
        encode_frame(&a, &mut wire).expect("answer encodes");
        let back = decode_frame(&mut wire).expect("decodes").expect("whole frame");
        assert_eq!(back.serialize_type, serialize_type);
        assert_eq!((back.code, back.opaque, back.is_response()), (resp::SUCCESS, 77, true));
        let route: TopicRouteData = from_json(&back.body).expect("route");
        assert_eq!(route.broker_datas[0].broker_addrs, BTreeMap::from([(0, "127.0.0.1:10911".to_owned())]));
    }
}

#[test]
fn config_defaults_and_validation() {
    let c = NamesrvConfig::default();
    assert_eq!(c.listen, "127.0.0.1:9876".parse().expect("addr"));
    assert_eq!((c.scan_interval_ms, c.broker_expiry_ms), (10_000, 120_000));
    assert!(c.validate().is_ok());
    assert!(NamesrvConfig { scan_interval_ms: 0, ..c }.validate().is_err());
    assert!(NamesrvConfig { broker_expiry_ms: 0, ..c }.validate().is_err());
}
