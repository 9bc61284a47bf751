//! What a hostile or careless peer, and an ordinary crash, must not do to a running
//! broker (issue 12): hold memory it did not send, keep connections open for ever,
//! make a restart right after `kill -9` fail, or let a broker that failed to start
//! disturb the routes of one that runs.
//!
//! - Memory: a thousand connections to a shard port and a thousand to the NameServer
//!   port that each send only the 8-byte prefix of a frame declaring 16 MiB cost the
//!   broker a few MiB, not the 16 GiB they declare, and a normal client's sends are
//!   answered meanwhile.
//! - Time: a frame that does not complete within `--frame-timeout-ms` and a connection
//!   silent for `--idle-timeout-ms` are closed (a held pull is not idle); past
//!   `--max-connections` new connections are closed at once; each with a WARN.
//! - Start: a restart right after `kill -9` under load comes up at the first try, many
//!   times in a row; a second broker of the same name that cannot bind leaves the first
//!   broker's routes as they were.
//!
//! Every broker runs through `common::Broker` (killed by pid when the test ends); every
//! loop and wait is bounded.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{create_topic, eventually, pull, req, send_message, Broker, Conn};
use rockshard_net::body::{from_json, TopicRouteData};
use rockshard_net::code::{request, response};
use rockshard_net::headers::{CommandHeader, GetRouteInfoRequestHeader};
use rockshard_net::limits::FRAME_SIZE_MAX_BYTES;

/// Connections of the prefix flood, per listener attacked.
const FLOOD_CONNECTIONS: usize = 1000;
/// What the whole flood (both listeners) may add to the broker's resident memory.
const FLOOD_RSS_GROWTH_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// Sends a normal client makes while the flood holds its connections.
const SENDS_DURING_FLOOD: usize = 200;
/// Restarts right after `kill -9` in a row.
const CRASH_RESTARTS: usize = 8;
/// Longest any close or state change here may take to be seen.
const WAIT_MAX: Duration = Duration::from_secs(15);

/// The first 8 bytes of a frame whose length word declares the largest frame allowed
/// (16 MiB with its prefix) and a 256-byte JSON header; nothing of either follows.
fn frame_prefix() -> [u8; 8] {
    let mut prefix = [0u8; 8];
    prefix[..4].copy_from_slice(&((FRAME_SIZE_MAX_BYTES - 4) as u32).to_be_bytes());
    prefix[4..].copy_from_slice(&256u32.to_be_bytes());
    prefix
}

/// Opens `n` connections to `addr` that each send only the frame prefix.
fn prefix_flood(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i} to {addr}: {e}"));
            s.write_all(&frame_prefix()).expect("write the prefix");
            s
        })
        .collect()
}

/// True once the peer closed `s` (read returns end of stream or a reset) within `within`.
fn closed_by_peer(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("read timeout");
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted),
    }
}

fn send_ok(conn: &mut Conn, topic: &str, i: usize) {
    let answer = conn.call(send_message(topic, 0, format!("m{i}"), ""));
    assert_eq!(answer.code, response::SUCCESS, "send {i}: {answer:?}");
}

#[test]
fn a_flood_of_frame_prefixes_costs_little_memory_and_sends_go_on() {
    let broker = Broker::start();
    let mut conn = broker.connect(0);
    create_topic(&mut conn, "Flooded", 2);
    send_ok(&mut conn, "Flooded", 0);
    let before = broker.rss_bytes();

    let shard_flood = prefix_flood(&broker.shard_addr(0), FLOOD_CONNECTIONS);
    let namesrv_flood = prefix_flood(&broker.namesrv_addr(), FLOOD_CONNECTIONS);
    // Every connection has been accepted and has read its prefix once the broker
    // answers on a new connection of each listener after them (accepts are in order).
    for i in 1..=SENDS_DURING_FLOOD {
        send_ok(&mut conn, "Flooded", i);
    }
    let mut ns = Conn::connect(&broker.namesrv_addr());
    let header = GetRouteInfoRequestHeader { topic: "Flooded".into(), accept_standard_json_only: None };
    let answer = ns.call(req(request::GET_ROUTEINFO_BY_TOPIC, header.to_ext_fields()));
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    std::thread::sleep(Duration::from_millis(500));
    let during = broker.rss_bytes();
    let grown = during.saturating_sub(before);
    println!(
        "prefix flood: {} connections x 8 bytes; broker RSS before {} KiB, during {} KiB (+{} KiB)",
        2 * FLOOD_CONNECTIONS,
        before / 1024,
        during / 1024,
        grown / 1024
    );
    assert!(
        grown < FLOOD_RSS_GROWTH_MAX_BYTES,
        "{} connections holding a 16 MiB frame prefix grew the broker by {} MiB",
        2 * FLOOD_CONNECTIONS,
        grown >> 20
    );
    // The flood's connections are still open (the frame timeout is 30 s by default),
    // and the broker still answers a new client.
    let mut fresh = broker.connect(1);
    create_topic(&mut fresh, "AfterFlood", 2);
    drop((shard_flood, namesrv_flood));
}

#[test]
fn incomplete_frames_and_idle_connections_are_closed_but_a_held_pull_is_not() {
    let broker = Broker::start_with(&["--frame-timeout-ms", "600", "--idle-timeout-ms", "1500"]);
    let mut conn = broker.connect(0);
    create_topic(&mut conn, "Timed", 2);

    let mut stuck = prefix_flood(&broker.shard_addr(0), 1).remove(0);
    let mut stuck_ns = prefix_flood(&broker.namesrv_addr(), 1).remove(0);
    let started = Instant::now();
    assert!(closed_by_peer(&mut stuck, WAIT_MAX), "a frame stuck after its prefix was not dropped");
    assert!(closed_by_peer(&mut stuck_ns, WAIT_MAX), "the NameServer kept a frame stuck after its prefix");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500), "closed after {took:?}, before the frame timeout");

    // A pull held for longer than the idle timeout is a running request, not silence.
    let mut held = broker.connect(0);
    let answer = held.call(pull("Timed", 0, 0, 2_500));
    assert_eq!(answer.code, response::PULL_NOT_FOUND, "{answer:?}");
    send_ok(&mut held, "Timed", 1);
    // Silence past the idle timeout closes the connection.
    let mut silent = broker.connect(1);
    let started = Instant::now();
    assert!(silent.closed_within(WAIT_MAX).is_ok(), "an idle connection was not closed");
    assert!(started.elapsed() >= Duration::from_millis(1_400), "closed after {:?}", started.elapsed());
    let log = broker.log();
    assert!(log.contains("frame not complete within the frame timeout"), "{log}");
    assert!(log.contains("connection idle past the idle timeout"), "{log}");
}

#[test]
fn connections_past_the_limit_are_closed_at_once_with_a_warning() {
    let broker = Broker::start_with(&["--max-connections", "20"]);
    let mut kept: Vec<Conn> = (0..20).map(|_| broker.connect(0)).collect();
    create_topic(&mut kept[0], "Limited", 2);
    let mut refused = broker.connect(0);
    assert!(refused.closed_within(WAIT_MAX).is_ok(), "the 21st connection was kept");
    // The twenty are served, and a place freed is taken again.
    send_ok(&mut kept[19], "Limited", 1);
    kept.pop().expect("twenty").close();
    // The broker may not have seen the close yet: a connection it still refuses is
    // closed before any answer, and the next try comes.
    assert!(
        eventually(WAIT_MAX, || {
            let mut c = broker.connect(0);
            c.stream.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
            c.send(send_message("Limited", 0, "again", ""));
            let mut len = [0u8; 4];
            c.stream.read_exact(&mut len).is_ok()
        }),
        "a freed place was not taken again"
    );
    let log = broker.log();
    assert!(log.contains("connection limit reached"), "{log}");
}

#[test]
fn a_restart_right_after_kill_9_under_load_comes_up_every_time() {
    let mut broker = Broker::start();
    let mut conn = broker.connect(0);
    create_topic(&mut conn, "Crashy", 2);
    drop(conn);
    for round in 0..CRASH_RESTARTS {
        // Load on both shards while the process dies, so its io_uring has work in flight.
        let stop = Arc::new(AtomicBool::new(false));
        let loaders: Vec<_> = (0..2u16)
            .map(|shard| {
                let (addr, stop) = (broker.shard_addr(shard), stop.clone());
                std::thread::spawn(move || {
                    let Ok(mut s) = TcpStream::connect(&addr) else { return };
                    let frame =
                        rockshard_net::frame::encode_frame_to_vec(&send_message("Crashy", 0, vec![7u8; 4096], ""))
                            .expect("encodes");
                    // Bounded: at most this many writes, and only until told to stop.
                    for _ in 0..100_000 {
                        if stop.load(Ordering::Relaxed) || s.write_all(&frame).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let restarted = broker.kill9_and_restart_once();
        stop.store(true, Ordering::Relaxed);
        for l in loaders {
            let _ = l.join();
        }
        if let Err(e) = restarted {
            panic!("round {round}: the restart right after kill -9 failed: {e}");
        }
    }
}

/// A listener on a port whose next port is free (bounded tries): a broker given that
/// port cannot bind shard 0 and can bind shard 1.
fn port_taken_next_free() -> (std::net::TcpListener, u16) {
    for _ in 0..100 {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = taken.local_addr().expect("addr").port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return (taken, port);
        }
    }
    panic!("no free port after a taken one in 100 tries");
}

/// The route of `topic` as the NameServer at `namesrv` has it: broker name → master address.
/// Empty when the NameServer has no route for it.
fn masters(namesrv: &str, topic: &str) -> Vec<(String, String)> {
    let mut ns = Conn::connect(namesrv);
    let header = GetRouteInfoRequestHeader { topic: topic.into(), accept_standard_json_only: None };
    let answer = ns.call(req(request::GET_ROUTEINFO_BY_TOPIC, header.to_ext_fields()));
    if answer.code == response::TOPIC_NOT_EXIST {
        return Vec::new();
    }
    assert_eq!(answer.code, response::SUCCESS, "{answer:?}");
    let route: TopicRouteData = from_json(&answer.body).expect("route body");
    let mut out: Vec<(String, String)> = route
        .broker_datas
        .iter()
        .filter_map(|b| b.broker_addrs.get(&0).map(|a| (b.broker_name.clone(), a.clone())))
        .collect();
    out.sort();
    out
}

#[test]
fn a_broker_that_fails_to_start_leaves_the_running_brokers_routes_alone() {
    let broker = Broker::start();
    let mut conn = broker.connect(0);
    create_topic(&mut conn, "Routed", 4);
    // Shards register a new topic at once, each on its own.
    assert!(eventually(WAIT_MAX, || masters(&broker.namesrv_addr(), "Routed").len() == 2), "no route for Routed");
    let before = masters(&broker.namesrv_addr(), "Routed");

    // A second broker of the same name, registering with the first one's NameServer,
    // whose shard 0 port is taken and whose shard 1 port is free.
    let (taken, port) = port_taken_next_free();
    let other = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_rockshard"))
        .arg("broker")
        .arg("--data-dir")
        .arg(other.path())
        .args(["--shards", "2", "--pin-cores", "false", "--port", &port.to_string()])
        .args(["--embedded-namesrv", "false", "--namesrv-addr", &broker.namesrv_addr()])
        .stdin(Stdio::null())
        .output()
        .expect("run a second broker");
    assert!(!out.status.success(), "the second broker started on a taken port");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Address already in use") && stderr.contains(&port.to_string()), "{stderr}");
    drop(taken);
    // Right after (long before the first broker's next 30 s registration), its routes
    // are what they were: nothing was registered over them, nothing unregistered.
    assert_eq!(masters(&broker.namesrv_addr(), "Routed"), before, "second broker's log:\n{stderr}");
}
