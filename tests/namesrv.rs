//! End-to-end tests of `rockshard namesrv`: real processes on loopback, a fake broker and
//! a fake client speaking the remoting protocol over plain std sockets, with frames
//! built by `rockshard_net` (the same codec, but none of the server code under test).
//!
//! Each NameServer runs with a 200 ms scan and a 1 s expiry (unless a test needs
//! expiry out of the way), so liveness is observable in a couple of seconds. Every
//! process is killed by pid when its guard drops, also when a test panics; every wait
//! is bounded in count and time.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rockshard_net::body::{
    from_json, to_json, ClusterInfo, DataVersion, RegisterBrokerBody, TopicConfig, TopicConfigSerializeWrapper,
    TopicList, TopicRouteData,
};
use rockshard_net::code::{request, response, version};
use rockshard_net::headers::{CommandHeader, RegisterBrokerRequestHeader, UnregisterBrokerRequestHeader};
use rockshard_net::{decode_frame, encode_frame, RemotingCommand};

const CLUSTER: &str = "DefaultCluster";
/// How long any single answer or state change may take before the test fails.
const WAIT_MAX: Duration = Duration::from_secs(10);
const POLL_EVERY: Duration = Duration::from_millis(50);

/// A `rockshard namesrv` process, killed by pid on drop.
struct Namesrv {
    child: Child,
    addr: String,
}

impl Namesrv {
    fn start(scan_interval_ms: u64, broker_expiry_ms: u64) -> Namesrv {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_rockshard"))
            .args(["namesrv", "--listen", &addr])
            .args(["--scan-interval-ms", &scan_interval_ms.to_string()])
            .args(["--broker-expiry-ms", &broker_expiry_ms.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rockshard namesrv");
        let mut ns = Namesrv { child, addr };
        let started = Instant::now();
        loop {
            if TcpStream::connect(&ns.addr).is_ok() {
                break;
            }
            if let Some(status) = ns.child.try_wait().expect("child status") {
                panic!("namesrv on {} exited at start: {status}", ns.addr);
            }
            assert!(started.elapsed() < WAIT_MAX, "namesrv on {} did not listen within {WAIT_MAX:?}", ns.addr);
            sleep(POLL_EVERY);
        }
        ns
    }

    fn connect(&self) -> Conn {
        Conn::connect(&self.addr)
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: signalling our own child by its pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM delivered");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            assert!(started.elapsed() < WAIT_MAX, "namesrv did not stop within {WAIT_MAX:?} of SIGTERM");
            sleep(POLL_EVERY);
        }
    }
}

impl Drop for Namesrv {
    fn drop(&mut self) {
        // Child::kill signals exactly this pid; a process that already exited is fine.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// One remoting connection, answering requests one at a time.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    next_opaque: i32,
}

impl Conn {
    fn connect(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT_MAX)).expect("read timeout");
        stream.set_write_timeout(Some(WAIT_MAX)).expect("write timeout");
        Conn { stream, buf: BytesMut::new(), next_opaque: 1 }
    }

    fn call(&mut self, mut cmd: RemotingCommand) -> RemotingCommand {
        cmd.opaque = self.next_opaque;
        self.next_opaque += 1;
        let mut out = Vec::new();
        encode_frame(&cmd, &mut out).expect("request encodes");
        self.stream.write_all(&out).expect("send request");
        let answer = self.read_frame().expect("the NameServer answered instead of closing");
        assert!(answer.is_response());
        assert_eq!(answer.opaque, cmd.opaque, "answers come in order on this connection");
        answer
    }

    /// The next frame, or `None` when the peer closed the connection. Bounded by the
    /// read timeout per read and by the frame limit in total.
    fn read_frame(&mut self) -> Option<RemotingCommand> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some(cmd) = decode_frame(&mut self.buf).expect("a well-formed frame") {
                return Some(cmd);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read failed (timeout after {WAIT_MAX:?}?): {e}"),
            }
        }
    }

    fn register(&mut self, broker_name: &str, broker_addr: &str, counter: i64, topics: &[(&str, i32)]) {
        let wrapper = TopicConfigSerializeWrapper {
            data_version: DataVersion { counter, state_version: 0, timestamp: 1_700_000_000_000 + counter },
            topic_config_table: topics
                .iter()
                .map(|(name, queues)| {
                    let config = TopicConfig {
                        topic_name: (*name).to_owned(),
                        read_queue_nums: *queues,
                        write_queue_nums: *queues,
                        perm: if *name == "TBW102" { 7 } else { 6 },
                        ..TopicConfig::default()
                    };
                    ((*name).to_owned(), config)
                })
                .collect(),
            ..Default::default()
        };
        let body = to_json(&RegisterBrokerBody { filter_server_list: vec![], topic_config_serialize_wrapper: wrapper })
            .expect("body encodes");
        let header = RegisterBrokerRequestHeader {
            broker_name: broker_name.into(),
            broker_addr: broker_addr.into(),
            cluster_name: CLUSTER.into(),
            ha_server_addr: broker_addr.into(),
            broker_id: 0,
            heartbeat_timeout_millis: None,
            enable_acting_master: Some(false),
            compressed: Some(false),
            body_crc32: Some(rockshard_net::stored::body_crc(&body) as i32),
        };
        let cmd = RemotingCommand::new_request(request::REGISTER_BROKER, header.to_ext_fields()).with_body(body);
        let answer = self.call(cmd);
        assert_eq!(answer.code, response::SUCCESS, "register: {:?}", answer.remark);
    }

    fn unregister(&mut self, broker_name: &str, broker_addr: &str) {
        let header = UnregisterBrokerRequestHeader {
            broker_name: broker_name.into(),
            broker_addr: broker_addr.into(),
            cluster_name: CLUSTER.into(),
            broker_id: 0,
        };
        let answer = self.call(RemotingCommand::new_request(request::UNREGISTER_BROKER, header.to_ext_fields()));
        assert_eq!(answer.code, response::SUCCESS, "unregister: {:?}", answer.remark);
    }

    /// The route of `topic`, `None` on TOPIC_NOT_EXIST.
    fn route(&mut self, topic: &str) -> Option<TopicRouteData> {
        let answer = self.call(route_request(topic));
        match answer.code {
            response::SUCCESS => Some(from_json(&answer.body).expect("route body decodes")),
            response::TOPIC_NOT_EXIST => {
                let remark = answer.remark.unwrap_or_default();
                assert!(remark.contains(topic), "the remark names the topic: {remark}");
                None
            }
            other => panic!("route of {topic}: code {other}, {:?}", answer.remark),
        }
    }

    /// Polls the route of `topic` until `done` holds; returns how long that took.
    fn wait_route(&mut self, topic: &str, what: &str, done: impl Fn(&Option<TopicRouteData>) -> bool) -> Duration {
        let started = Instant::now();
        loop {
            if done(&self.route(topic)) {
                return started.elapsed();
            }
            assert!(started.elapsed() < WAIT_MAX, "{what}: not within {WAIT_MAX:?}");
            sleep(POLL_EVERY);
        }
    }
}

fn route_request(topic: &str) -> RemotingCommand {
    RemotingCommand::new_request(request::GET_ROUTEINFO_BY_TOPIC, [("topic", topic)].into_iter().collect())
}

fn broker_names(route: &TopicRouteData) -> Vec<&str> {
    route.broker_datas.iter().map(|b| b.broker_name.as_str()).collect()
}

#[test]
fn registered_broker_is_routed_kept_alive_by_heartbeats_and_expires_when_silent() {
    let ns = Namesrv::start(200, 1_000);
    let mut broker = ns.connect();
    let mut client = ns.connect();
    assert_eq!(client.route("TopicTest"), None);

    broker.register("broker-a-s0", "127.0.0.1:10911", 1, &[("TopicTest", 4), ("TBW102", 8)]);
    broker.register("broker-a-s1", "127.0.0.1:10912", 1, &[("TopicTest", 4)]);
    let route = client.route("TopicTest").expect("route after registration");
    assert_eq!(broker_names(&route), ["broker-a-s0", "broker-a-s1"]);
    assert_eq!(route.broker_datas[0].broker_addrs[&0], "127.0.0.1:10911");
    assert_eq!(route.broker_datas[1].broker_addrs[&0], "127.0.0.1:10912");
    assert_eq!(route.broker_datas[0].cluster, CLUSTER);
    let queues: Vec<(&str, i32, i32)> =
        route.queue_datas.iter().map(|q| (q.broker_name.as_str(), q.write_queue_nums, q.perm)).collect();
    assert_eq!(queues, [("broker-a-s0", 4, 6), ("broker-a-s1", 4, 6)]);
    // Only the shard that put TBW102 in its wrapper (auto-create on) serves it.
    assert_eq!(broker_names(&client.route("TBW102").expect("TBW102 route")), ["broker-a-s0"]);

    // Heartbeats (re-registrations) every 300 ms keep both alive well past the expiry.
    let beating = Instant::now();
    let mut last_s0_beat = Instant::now();
    while beating.elapsed() < Duration::from_millis(2_000) {
        broker.register("broker-a-s0", "127.0.0.1:10911", 1, &[("TopicTest", 4), ("TBW102", 8)]);
        last_s0_beat = Instant::now();
        broker.register("broker-a-s1", "127.0.0.1:10912", 1, &[("TopicTest", 4)]);
        sleep(Duration::from_millis(300));
        assert_eq!(client.route("TopicTest").map(|r| r.broker_datas.len()), Some(2), "alive while heartbeating");
    }

    // s0 falls silent (its connection stays open); s1 keeps beating from another one.
    let mut s1 = ns.connect();
    let started = Instant::now();
    let mut gone = false;
    while started.elapsed() < WAIT_MAX {
        s1.register("broker-a-s1", "127.0.0.1:10912", 1, &[("TopicTest", 4)]);
        let route = client.route("TopicTest").expect("s1 still serves the topic");
        if broker_names(&route) == ["broker-a-s1"] {
            gone = true;
            break;
        }
        sleep(Duration::from_millis(100));
    }
    assert!(gone, "the silent shard was not dropped within {WAIT_MAX:?}");
    let silent = last_s0_beat.elapsed();
    assert!(silent >= Duration::from_millis(1_000), "dropped after {silent:?}, before its 1 s expiry");
    assert_eq!(client.route("TBW102"), None, "TBW102 went with the only shard serving it");
    // A broker that comes back is routed again.
    s1.register("broker-a-s0", "127.0.0.1:10911", 2, &[("TopicTest", 4)]);
    assert_eq!(client.route("TopicTest").map(|r| r.broker_datas.len()), Some(2));
    drop((broker, client, s1));

    // SIGTERM stops the NameServer cleanly.
    let mut ns = ns;
    assert!(ns.terminate().success());
}

#[test]
fn closing_the_broker_connection_removes_its_brokers_at_once() {
    // Expiry is a minute away, so only the connection close can remove the broker.
    let ns = Namesrv::start(200, 60_000);
    let mut broker = ns.connect();
    let mut other = ns.connect();
    let mut client = ns.connect();
    broker.register("broker-a-s0", "127.0.0.1:10911", 1, &[("T", 4)]);
    broker.register("broker-a-s1", "127.0.0.1:10912", 1, &[("T", 4)]);
    other.register("broker-b-s0", "127.0.0.1:10921", 1, &[("T", 2)]);
    assert_eq!(broker_names(&client.route("T").expect("route")), ["broker-a-s0", "broker-a-s1", "broker-b-s0"]);

    drop(broker);
    let took = client.wait_route("T", "brokers of the closed connection removed", |r| {
        r.as_ref().is_some_and(|r| broker_names(r) == ["broker-b-s0"])
    });
    assert!(took < Duration::from_secs(5), "removal took {took:?}");

    // An explicit unregister removes the last one.
    other.unregister("broker-b-s0", "127.0.0.1:10921");
    assert_eq!(client.route("T"), None);
}

#[test]
fn two_nameservers_serve_routes_independently() {
    let ns1 = Namesrv::start(200, 60_000);
    let ns2 = Namesrv::start(200, 60_000);
    // A broker registers with every NameServer, over one connection to each.
    let (mut to1, mut to2) = (ns1.connect(), ns2.connect());
    for conn in [&mut to1, &mut to2] {
        conn.register("broker-a-s0", "127.0.0.1:10911", 1, &[("T", 4)]);
    }
    // A second broker only reached the first NameServer.
    let mut only1 = ns1.connect();
    only1.register("broker-b-s0", "127.0.0.1:10921", 1, &[("T", 4), ("U", 1)]);

    let (mut c1, mut c2) = (ns1.connect(), ns2.connect());
    assert_eq!(broker_names(&c1.route("T").expect("route")), ["broker-a-s0", "broker-b-s0"]);
    assert_eq!(broker_names(&c2.route("T").expect("route")), ["broker-a-s0"]);
    assert!(c1.route("U").is_some());
    assert_eq!(c2.route("U"), None, "NameServers do not share registrations");

    // Unregistering from one leaves the other as it was.
    to1.unregister("broker-a-s0", "127.0.0.1:10911");
    assert_eq!(broker_names(&c1.route("T").expect("route")), ["broker-b-s0"]);
    assert_eq!(broker_names(&c2.route("T").expect("route")), ["broker-a-s0"]);

    // One NameServer dying does not affect the other.
    drop((to1, only1, c1));
    drop(ns1);
    assert_eq!(broker_names(&c2.route("T").expect("route")), ["broker-a-s0"]);

    let info = c2.call(RemotingCommand::new_request(request::GET_BROKER_CLUSTER_INFO, Default::default()));
    assert_eq!(info.code, response::SUCCESS);
    assert!(
        std::str::from_utf8(&info.body).expect("utf8").contains(r#""brokerAddrs":{0:"127.0.0.1:10911"}"#),
        "cluster info keeps Java's bare integer keys"
    );
    let info: ClusterInfo = from_json(&info.body).expect("cluster info decodes");
    assert_eq!(info.cluster_addr_table[CLUSTER], ["broker-a-s0"]);
    let topics = c2.call(RemotingCommand::new_request(request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER, Default::default()));
    assert_eq!(from_json::<TopicList>(&topics.body).expect("topic list").topic_list, ["T"]);
    drop(to2);
}

#[test]
fn a_malformed_frame_closes_only_that_connection() {
    let ns = Namesrv::start(200, 60_000);
    let mut broker = ns.connect();
    broker.register("broker-a-s0", "127.0.0.1:10911", 1, &[("T", 4)]);
    let mut client = ns.connect();

    let mut bad = ns.connect();
    // A frame whose header claims serialize type 9 (only 0 and 1 exist).
    bad.stream.write_all(&[0, 0, 0, 8, 9, 0, 0, 0, 0, 0, 0, 0]).expect("send garbage");
    assert!(bad.read_frame().is_none(), "the malformed connection is closed without an answer");

    // Everyone else is served as before, and the broker on its own connection stays.
    assert_eq!(broker_names(&client.route("T").expect("route")), ["broker-a-s0"]);
    broker.register("broker-a-s0", "127.0.0.1:10911", 1, &[("T", 4)]);
    assert!(ns.connect().route("T").is_some());

    // Old clients get the legacy route dialect, unknown codes are refused politely, and
    // the order-topic KV lookup Java clients make finds nothing.
    let mut old = route_request("T");
    old.version = version::V4_9_4 - 1;
    let legacy = client.call(old);
    assert!(std::str::from_utf8(&legacy.body).expect("utf8").contains(r#"{0:"127.0.0.1:10911"}"#));
    let unknown = client.call(RemotingCommand::new_request(request::SEND_MESSAGE, Default::default()));
    assert_eq!(unknown.code, response::REQUEST_CODE_NOT_SUPPORTED);
    let kv = client.call(RemotingCommand::new_request(
        request::GET_KV_CONFIG,
        [("namespace", "ORDER_TOPIC_CONFIG"), ("key", "T")].into_iter().collect(),
    ));
    assert_eq!(kv.code, response::QUERY_NOT_FOUND);
}
