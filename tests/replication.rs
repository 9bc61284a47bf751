//! Replication end to end: 3-node groups of `rockshard broker` processes on loopback
//! (tests/common/cluster.rs), raw remoting clients, and the nodes' CommitLog files.
//!
//! What is shown (issue 5, "How it is shown"):
//! - `leader_kill9_mid_stream_*`: producers send to a sync-flush topic on whichever node
//!   leads; the leader is `kill -9`ed mid-stream; a new leader must appear within 10 s;
//!   the producers continue; every acknowledged message is then read back from the new
//!   leader at the queue offset its answer named, with the same body; the old leader
//!   restarts, follows without disturbing the group, and all CommitLogs are byte-identical.
//! - `partitioned_leader_*`: the leader is cut from both others through the fault
//!   proxies; it must never acknowledge a send made after the cut, must step down, the
//!   majority elects a leader that takes sends; after healing the old leader follows and
//!   its divergent tail is gone: CommitLogs byte-identical.
//! - `follower_down_*`: a follower misses several segments' worth of messages and catches
//!   up after its restart; reads from it match the leader's; CommitLogs byte-identical.
//!
//! How the CommitLogs are compared: after the group converged (every node applied the same
//! last index) every node is stopped with SIGTERM, each node's `shard-0/commitlog/`
//! segments are walked record by record (messages and BLANK fillers) to find its written
//! end, the ends must be equal, the bytes up to it identical, every record's stored
//! PHYSICALOFFSET must equal its place, and every acknowledged message must be a record
//! at the physical offset its msgId named, with its body.
//!
//! Tests take the cluster lock (one group at a time on a 2-core machine). Everything is
//! bounded; on failure the seed, ports, data directories and log tails are printed and
//! the data kept. `ROCKSHARD_TEST_SEED` replays the ports and message sizes of a run.

#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cluster::{self, leader_among, Cluster, Options, Rng};
use common::{pull, req, send_message};
use rockshard_net::code::{request, response};
use rockshard_net::frame::{decode_payload, encode_frame_to_vec};
use rockshard_net::headers::{CommandHeader, GetMaxOffsetRequestHeader};
use rockshard_net::stored::{self, Record};
use rockshard_net::RemotingCommand;

/// Segment size of every node: small, so a test writes several segments and the
/// comparison covers segment rollover and BLANK padding.
const SEGMENT_BYTES: u64 = 1 << 20;
/// Queues of the test topic (all on shard 0: one shard per node).
const QUEUES: i32 = 4;
/// The failover bound.
const NEW_LEADER_WITHIN: Duration = Duration::from_secs(10);
/// How long a started group may take to elect its first leader.
const FIRST_LEADER_WITHIN: Duration = Duration::from_secs(30);
/// How long a group may take to converge after a restart or a heal (catch-up included).
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);
/// Answer timeout of one send: above the replication timeout (5 s by default), so a send
/// that could not commit gets its FLUSH_SLAVE_TIMEOUT answer rather than our timeout.
const SEND_TIMEOUT: Duration = Duration::from_secs(8);
/// Timeout of reads (pull, max offset).
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts at one message before a producer thread gives it up (each bounded in time).
const SEND_ATTEMPTS_MAX: usize = 100;
/// Pulls of one queue, at most (32 messages each): far above what the tests write.
const PULLS_PER_QUEUE_MAX: usize = 10_000;
/// How long the partition test keeps the leader cut off: several election timeouts
/// (1–2 s each at the default settings) of the isolated node.
const PARTITION_HOLD: Duration = Duration::from_secs(8);
/// Producer threads: several sends in flight when the leader dies.
const PRODUCERS: usize = 4;

fn options(proxies: bool) -> Options {
    Options::new(env!("CARGO_BIN_EXE_rockshard"), 3)
        .args(&["--segment-size-bytes", &SEGMENT_BYTES.to_string()])
        .proxies(proxies)
}

// ---- a client that reports errors instead of panicking ----------------------------------------

struct Client {
    addr: String,
    stream: TcpStream,
    opaque: i32,
}

impl Client {
    fn connect(addr: &str) -> Result<Client, String> {
        let sa: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
        let stream =
            TcpStream::connect_timeout(&sa, Duration::from_secs(2)).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(SEND_TIMEOUT)).map_err(|e| e.to_string())?;
        Ok(Client { addr: addr.to_string(), stream, opaque: 1 })
    }

    /// One request, one answer (requests from the broker skipped, bounded).
    fn call(&mut self, mut cmd: RemotingCommand, timeout: Duration) -> Result<RemotingCommand, String> {
        self.opaque += 1;
        cmd.opaque = self.opaque;
        let frame = encode_frame_to_vec(&cmd).map_err(|e| e.to_string())?;
        self.stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        self.stream.write_all(&frame).map_err(|e| format!("write to {}: {e}", self.addr))?;
        for _ in 0..16 {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).map_err(|e| match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => format!("no answer from {} in {timeout:?}", self.addr),
                _ => format!("read from {}: {e}", self.addr),
            })?;
            let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
            self.stream.read_exact(&mut payload).map_err(|e| format!("read from {}: {e}", self.addr))?;
            let answer = decode_payload(Bytes::from(payload)).map_err(|e| format!("bad frame: {e}"))?;
            if answer.is_response() && answer.opaque == cmd.opaque {
                return Ok(answer);
            }
        }
        Err(format!("{} sent many frames but no answer", self.addr))
    }
}

// ---- producing -----------------------------------------------------------------------------

/// A message a node answered SUCCESS for.
#[derive(Clone, Debug)]
struct Acked {
    queue: i32,
    offset: i64,
    /// From the answer's msgId.
    physical: i64,
    body: Vec<u8>,
    node: usize,
    at: Instant,
}

/// What the producer threads share.
#[derive(Default)]
struct Produced {
    acked: Mutex<Vec<Acked>>,
    /// Every body ever sent (acknowledged or not): anything stored must be one of these.
    attempted: Mutex<HashSet<Vec<u8>>>,
    /// Answers other than SUCCESS, by code ("io" for transport errors).
    failures: Mutex<BTreeMap<String, usize>>,
    given_up: AtomicUsize,
    stop: AtomicBool,
}

impl Produced {
    fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
    fn acked_since(&self, t: Instant) -> usize {
        self.acked.lock().unwrap().iter().filter(|a| a.at >= t).count()
    }
    fn fail(&self, what: String) {
        *self.failures.lock().unwrap().entry(what).or_default() += 1;
    }
}

/// A body unique to (seed, thread, sequence), 64..1088 bytes.
fn body(rng: &mut Rng, seed: u64, thread: usize, seq: usize) -> Vec<u8> {
    let mut b = format!("{seed:x}-t{thread}-m{seq}-").into_bytes();
    let filler = 64 + rng.below(1024) as usize;
    b.extend((0..filler).map(|_| b'a' + rng.below(26) as u8));
    b
}

/// One send; Ok(Some(acked)) on SUCCESS, Ok(None) on another answer (recorded).
fn send_once(
    client: &mut Client,
    topic: &str,
    queue: i32,
    body: &[u8],
    node: usize,
    produced: &Produced,
) -> Result<Option<Acked>, String> {
    let answer = client.call(send_message(topic, queue, body.to_vec(), ""), SEND_TIMEOUT)?;
    if answer.code != response::SUCCESS {
        produced.fail(format!("code {}", answer.code));
        return Ok(None);
    }
    let ext = &answer.ext_fields;
    let field = |k: &str| ext.get(k).ok_or_else(|| format!("SUCCESS without {k}: {answer:?}"));
    let offset: i64 = field("queueOffset")?.parse().map_err(|e| format!("queueOffset: {e}"))?;
    let q: i32 = field("queueId")?.parse().map_err(|e| format!("queueId: {e}"))?;
    let (_, physical) = rockshard_net::msgid::decode(field("msgId")?).map_err(|e| format!("msgId: {e}"))?;
    Ok(Some(Acked { queue: q, offset, physical, body: body.to_vec(), node, at: Instant::now() }))
}

/// All nodes of shard 0 as (index, address), for the producers.
fn all_nodes(cluster: &Cluster) -> Vec<(usize, String)> {
    (0..cluster.nodes.len()).map(|i| (i, cluster.shard_addr(i, 0))).collect()
}

/// Producer threads sending to whichever of `nodes` leads (re-found after any failure), each
/// message retried until SUCCESS (a client's retries: duplicates are possible), until
/// `per_thread` messages each, `stop`, or `budget`.
fn start_producers(
    produced: &Arc<Produced>,
    nodes: Vec<(usize, String)>,
    topic: &str,
    per_thread: usize,
    seed: u64,
    budget: Duration,
) -> Vec<JoinHandle<()>> {
    (0..PRODUCERS)
        .map(|t| {
            let (produced, nodes, topic) = (produced.clone(), nodes.clone(), topic.to_string());
            let addrs: Vec<String> = nodes.iter().map(|(_, a)| a.clone()).collect();
            std::thread::spawn(move || {
                let deadline = Instant::now() + budget;
                let mut rng = Rng::new(seed.wrapping_add(t as u64 * 7919));
                let mut target: Option<(usize, Client)> = None;
                'messages: for seq in 0..per_thread {
                    let b = body(&mut rng, seed, t, seq);
                    produced.attempted.lock().unwrap().insert(b.clone());
                    let queue = ((t + seq) % QUEUES as usize) as i32;
                    for _ in 0..SEND_ATTEMPTS_MAX {
                        if produced.stop.load(Ordering::SeqCst) || Instant::now() >= deadline {
                            break 'messages;
                        }
                        if target.is_none() {
                            target = leader_among(&addrs, Duration::from_secs(1))
                                .ok()
                                .and_then(|i| Client::connect(&addrs[i]).ok().map(|c| (nodes[i].0, c)));
                            if target.is_none() {
                                std::thread::sleep(Duration::from_millis(50));
                                continue;
                            }
                        }
                        let Some((node, client)) = target.as_mut() else { continue };
                        match send_once(client, &topic, queue, &b, *node, &produced) {
                            Ok(Some(a)) => {
                                produced.acked.lock().unwrap().push(a);
                                continue 'messages;
                            }
                            Ok(None) => {
                                // Not the leader any more, or not committed in time: look again.
                                target = None;
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            Err(_) => {
                                produced.fail("io".into());
                                target = None;
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                    produced.given_up.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect()
}

fn join_all(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        h.join().expect("producer thread panicked");
    }
}

/// Waits (bounded) until `check` holds.
fn wait_for(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    let rounds = within.as_millis() / 20 + 2;
    for _ in 0..rounds {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

// ---- reading back -------------------------------------------------------------------------

/// (queue, offset) -> body of every visible message of `topic` on the node at `addr`.
fn read_topic(addr: &str, topic: &str) -> Result<BTreeMap<(i32, i64), Vec<u8>>, String> {
    let mut client = Client::connect(addr)?;
    let mut out = BTreeMap::new();
    for q in 0..QUEUES {
        let header = GetMaxOffsetRequestHeader { topic: topic.into(), queue_id: q, committed: None };
        let a = client.call(req(request::GET_MAX_OFFSET, header.to_ext_fields()), READ_TIMEOUT)?;
        if a.code != response::SUCCESS {
            return Err(format!("GET_MAX_OFFSET {topic}:{q} at {addr}: {a:?}"));
        }
        let max: i64 = a.ext_fields.get("offset").and_then(|o| o.parse().ok()).ok_or("no offset")?;
        let mut offset = 0i64;
        for _ in 0..PULLS_PER_QUEUE_MAX {
            if offset >= max {
                break;
            }
            let a = client.call(pull(topic, q, offset, 0), READ_TIMEOUT)?;
            if a.code != response::SUCCESS {
                return Err(format!("pull {topic}:{q}@{offset} (max {max}) at {addr}: code {} {:?}", a.code, a.remark));
            }
            let mut at = 0;
            let mut got = 0;
            while at < a.body.len() {
                match stored::decode(&a.body[at..]) {
                    Ok(Some(Record::Message(m))) => {
                        let o = m.header.queue_offset;
                        if o != offset {
                            return Err(format!("{topic}:{q} at {addr}: expected offset {offset}, got {o}"));
                        }
                        out.insert((q, o), m.body.to_vec());
                        offset += 1;
                        got += 1;
                        at += m.header.total_size as usize;
                    }
                    other => return Err(format!("pull body at {at} of {topic}:{q} from {addr}: {other:?}")),
                }
            }
            if got == 0 {
                return Err(format!("pull {topic}:{q}@{offset} at {addr} answered SUCCESS with no message"));
            }
        }
        if offset < max {
            return Err(format!("{topic}:{q} at {addr}: read up to {offset} of {max}"));
        }
    }
    Ok(out)
}

/// Checks that every acknowledged message is stored where its answer said, with its
/// body, and that nothing unknown is stored. Returns the number of duplicates (bodies
/// stored more than once: a send retried after an answer that was not SUCCESS).
fn check_acked(stored: &BTreeMap<(i32, i64), Vec<u8>>, produced: &Produced, on: &str) -> usize {
    let acked = produced.acked.lock().unwrap();
    let mut lost = Vec::new();
    for a in acked.iter() {
        match stored.get(&(a.queue, a.offset)) {
            Some(b) if *b == a.body => {}
            Some(b) => lost.push(format!(
                "q{}@{} acked by n{} holds another body ({:?}... instead of {:?}...)",
                a.queue,
                a.offset,
                a.node + 1,
                String::from_utf8_lossy(&b[..b.len().min(24)]),
                String::from_utf8_lossy(&a.body[..24])
            )),
            None => lost.push(format!("q{}@{} acked by n{} is missing", a.queue, a.offset, a.node + 1)),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost or changed on {on}; first: {:#?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
    let attempted = produced.attempted.lock().unwrap();
    let unknown: Vec<_> = stored.iter().filter(|(_, b)| !attempted.contains(*b)).map(|(k, _)| *k).collect();
    assert!(
        unknown.is_empty(),
        "{on} stores {} messages nobody sent, at {:?}",
        unknown.len(),
        &unknown[..5.min(unknown.len())]
    );
    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    for b in stored.values() {
        *seen.entry(b.as_slice()).or_default() += 1;
    }
    seen.values().map(|n| n - 1).sum()
}

// ---- CommitLog comparison -------------------------------------------------------------------

/// A node's CommitLog: its segments (base, bytes) and where its records end.
struct LogImage {
    segments: Vec<(u64, Vec<u8>)>,
    end: u64,
    /// Physical offset -> body of every message record.
    messages: HashMap<u64, Vec<u8>>,
}

fn read_commitlog(shard_dir: &Path) -> Result<LogImage, String> {
    let dir = shard_dir.join("commitlog");
    let mut segments = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let e = e.map_err(|e| e.to_string())?;
        let name = e.file_name().to_string_lossy().to_string();
        let Some(base) = (name.len() == 20).then(|| name.parse::<u64>().ok()).flatten() else { continue };
        let bytes = std::fs::read(e.path()).map_err(|e| format!("{}: {e}", name))?;
        segments.push((base, bytes));
    }
    segments.sort_by_key(|(b, _)| *b);
    let mut end = segments.first().map_or(0, |(b, _)| *b);
    let mut messages = HashMap::new();
    'segments: for (base, bytes) in &segments {
        if *base != end {
            // A segment past the end of the records (preallocated, never written) or a gap.
            break;
        }
        let mut pos = 0usize;
        while pos < bytes.len() {
            match stored::decode(&bytes[pos..]) {
                Ok(Some(Record::Message(m))) => {
                    let at = base + pos as u64;
                    if m.header.physical_offset as u64 != at {
                        return Err(format!(
                            "record at {at} in {} says PHYSICALOFFSET {}",
                            dir.display(),
                            m.header.physical_offset
                        ));
                    }
                    if !m.body_crc_matches() {
                        return Err(format!("record at {at} in {} fails its body CRC", dir.display()));
                    }
                    messages.insert(at, m.body.to_vec());
                    pos += m.header.total_size as usize;
                }
                Ok(Some(Record::Blank { total_size })) => pos += total_size as usize,
                // Zeros (never written) or a partial record: the end.
                Ok(None) | Err(_) => {
                    end = base + pos as u64;
                    break 'segments;
                }
            }
        }
        end = base + bytes.len() as u64;
    }
    Ok(LogImage { segments, end, messages })
}

/// Stops every node (SIGTERM, clean exit required), then compares the CommitLogs of
/// shard 0 byte for byte up to their (equal) ends and finds every acknowledged message
/// in them. `views` are the converged statuses taken just before.
fn stop_and_compare_commitlogs(cluster: &mut Cluster, produced: &Produced) {
    let unclean = cluster.stop_all();
    assert!(unclean.is_empty(), "nodes did not exit cleanly on SIGTERM: {unclean:?}");
    let images: Vec<LogImage> = (0..cluster.nodes.len())
        .map(|i| read_commitlog(&cluster.shard_dir(i, 0)).unwrap_or_else(|e| panic!("n{}: {e}", i + 1)))
        .collect();
    let ends: Vec<u64> = images.iter().map(|l| l.end).collect();
    println!(
        "commitlogs: ends {ends:?}, segments {:?}",
        images.iter().map(|l| l.segments.iter().map(|s| s.0).collect::<Vec<_>>()).collect::<Vec<_>>()
    );
    assert!(ends.iter().all(|e| *e == ends[0]), "converged nodes' CommitLogs end at different offsets: {ends:?}");
    let end = ends[0];
    let (first, rest) = images.split_first().expect("nodes");
    for (seg_i, (base, bytes)) in first.segments.iter().enumerate() {
        if *base >= end {
            break;
        }
        let len = ((end - base) as usize).min(bytes.len());
        for (n, other) in rest.iter().enumerate() {
            let Some((ob, obytes)) = other.segments.get(seg_i) else {
                panic!("n{} lacks segment {base} (end {end})", n + 2)
            };
            assert_eq!(ob, base, "n{} segment {seg_i} has base {ob}, n1 {base}", n + 2);
            if obytes.len() < len || obytes[..len] != bytes[..len] {
                let at = (0..len.min(obytes.len())).find(|i| obytes[*i] != bytes[*i]).unwrap_or(len.min(obytes.len()));
                panic!(
                    "CommitLogs differ: n1 and n{} at physical offset {} (segment {base}, end {end}, n{} segment length {})",
                    n + 2,
                    base + at as u64,
                    n + 2,
                    obytes.len()
                );
            }
        }
    }
    let acked = produced.acked.lock().unwrap();
    let mut missing = Vec::new();
    for a in acked.iter() {
        if first.messages.get(&(a.physical as u64)) != Some(&a.body) {
            missing.push(a.physical);
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged messages are not records at their msgId's physical offset in the common CommitLog \
         (end {end}); first offsets: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    println!(
        "commitlogs identical over [0, {end}) on {} nodes ({} messages, {} acknowledged found at their offsets)",
        images.len(),
        first.messages.len(),
        acked.len()
    );
}

/// Every `raft` object (a RAFT_STATUS body) of g1-s0 in `admin cluster status --json`.
fn collect_raft_rows(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(raft) = m.get("raft").filter(|r| r.get("brokerName").and_then(|n| n.as_str()) == Some("g1-s0"))
            {
                out.push(raft.clone());
            }
            m.values().for_each(|x| collect_raft_rows(x, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_raft_rows(x, out)),
        _ => {}
    }
}

/// The leader (index, view), then creates the test topic on it (sync flush).
fn leader_and_topic(cluster: &Cluster, topic: &str) -> (usize, cluster::RaftView) {
    let (leader, view) = cluster.leader(0, FIRST_LEADER_WITHIN).expect("a first leader");
    cluster::create_topic(&cluster.shard_addr(leader, 0), topic, QUEUES as u32, "sync")
        .unwrap_or_else(|e| panic!("create {topic}: {e}"));
    println!("leader n{} term {}; topic {topic} created", leader + 1, view.term);
    (leader, view)
}

// ---- the tests ----------------------------------------------------------------------------------

#[test]
fn leader_kill9_mid_stream_new_leader_no_acked_message_lost_logs_converge() {
    let _serial = cluster::serial();
    let mut cluster = Cluster::start(options(false));
    let seed = cluster.opts.seed;
    let topic = "repl_failover";
    leader_and_topic(&cluster, topic);

    let produced = Arc::new(Produced::default());
    let producers = start_producers(&produced, all_nodes(&cluster), topic, 100_000, seed, Duration::from_secs(120));
    assert!(
        wait_for(Duration::from_secs(60), || produced.acked_count() >= 400),
        "only {} sends acknowledged before the kill; failures {:?}",
        produced.acked_count(),
        produced.failures.lock().unwrap()
    );
    // Whoever leads now (leadership could have moved since the topic was created).
    let (old, old_view) = cluster.leader(0, Duration::from_secs(5)).expect("a leader before the kill");
    let before = produced.acked_count();
    cluster.kill9(old);
    let killed_at = Instant::now();
    let found = cluster.leader_where(0, NEW_LEADER_WITHIN, |i, v| i != old && v.term > old_view.term);
    let failover = killed_at.elapsed();
    let (new, new_view) =
        found.unwrap_or_else(|e| panic!("no new leader within {NEW_LEADER_WITHIN:?} of kill -9: {e}"));
    println!(
        "kill -9 n{} after {before} acknowledged sends: n{} leads (term {}) after {failover:?}",
        old + 1,
        new + 1,
        new_view.term
    );
    assert!(failover <= NEW_LEADER_WITHIN);

    // The producers continue on the new leader.
    let resumed = wait_for(Duration::from_secs(60), || produced.acked_since(killed_at) >= 400);
    produced.stop.store(true, Ordering::SeqCst);
    join_all(producers);
    let first_after = produced.acked.lock().unwrap().iter().filter(|a| a.at >= killed_at).map(|a| a.at).min();
    println!(
        "producers: {} acknowledged ({} after the kill, first {:?} after it), failures {:?}, given up {}",
        produced.acked_count(),
        produced.acked_since(killed_at),
        first_after.map(|t| t - killed_at),
        produced.failures.lock().unwrap(),
        produced.given_up.load(Ordering::SeqCst)
    );
    assert!(resumed, "producers did not get 400 more sends acknowledged within 60 s of the failover");
    let routed = cluster
        .wait_route_master(topic, "g1-s0", &cluster.shard_addr(new, 0), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("route after failover: {e}"));
    println!("the NameServer route names n{} master {routed:?} after the producers stopped", new + 1);

    // Every acknowledged message is on the new leader.
    let on_new = read_topic(&cluster.shard_addr(new, 0), topic).unwrap_or_else(|e| panic!("read new leader: {e}"));
    let duplicates = check_acked(&on_new, &produced, "the new leader");
    println!("new leader holds {} messages; all acknowledged present; duplicates {duplicates}", on_new.len());

    // The old leader comes back as a follower without disturbing the group (pre-vote).
    cluster.start_node(old);
    let views =
        cluster.wait_converged(0, CONVERGE_WITHIN).unwrap_or_else(|e| panic!("after restarting n{}: {e}", old + 1));
    let v_old = views.iter().find(|v| v.node_id == old as u64 + 1).expect("old leader's view");
    assert!(!v_old.is_leader(), "the restarted old leader leads again: {:?}", v_old.raw);
    assert_eq!(v_old.leader, Some(new as u64 + 1), "the restarted node follows someone else: {:?}", v_old.raw);
    let term_now = views[0].term;
    assert_eq!(
        term_now, new_view.term,
        "the rejoining node forced a new election (term {} -> {term_now})",
        new_view.term
    );
    // Followers serve pulls too: the old leader reads exactly what the new one does.
    let on_old = read_topic(&cluster.shard_addr(old, 0), topic).unwrap_or_else(|e| panic!("read old leader: {e}"));
    assert!(
        on_old == on_new,
        "the caught-up old leader reads differently ({} vs {} messages)",
        on_old.len(),
        on_new.len()
    );
    println!("n{} rejoined as follower at commit {}; term unchanged", old + 1, v_old.commit);

    stop_and_compare_commitlogs(&mut cluster, &produced);
}

#[test]
fn partitioned_leader_stops_acking_majority_elects_logs_converge_after_heal() {
    let _serial = cluster::serial();
    let mut cluster = Cluster::start(options(true).args(&["--replication-timeout-ms", "3000"]));
    let seed = cluster.opts.seed;
    let topic = "repl_partition";
    let (old, old_view) = leader_and_topic(&cluster, topic);

    let produced = Arc::new(Produced::default());
    join_all(start_producers(
        &produced,
        vec![(old, cluster.shard_addr(old, 0))],
        topic,
        25,
        seed,
        Duration::from_secs(60),
    ));
    assert_eq!(
        produced.acked_count(),
        100,
        "sends before the partition: failures {:?}",
        produced.failures.lock().unwrap()
    );

    cluster.isolate(old);
    let cut_at = Instant::now();
    println!("n{} cut from both peers", old + 1);

    // Sends to the isolated leader, from right after the cut until it says it stepped
    // down: none may be acknowledged (it cannot reach a majority).
    let mut rng = Rng::new(seed ^ 0xC0FFEE);
    let minority = Produced::default();
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let mut acked_by_minority = Vec::new();
    let mut stepped_down = None;
    let old_addr = cluster.shard_addr(old, 0);
    let mut client = Client::connect(&old_addr).expect("clients still reach the isolated node");
    for seq in 0..100 {
        if cut_at.elapsed() > Duration::from_secs(15) {
            break;
        }
        let b = body(&mut rng, seed, 99, seq);
        produced.attempted.lock().unwrap().insert(b.clone());
        match send_once(&mut client, topic, seq as i32 % QUEUES, &b, old, &minority) {
            Ok(Some(a)) => acked_by_minority.push(a),
            Ok(None) => {}
            Err(e) => {
                *answers.entry(format!("io: {e}")).or_default() += 1;
                client = match Client::connect(&old_addr) {
                    Ok(c) => c,
                    Err(_) => break,
                };
            }
        }
        let v = cluster.status(old, 0);
        if stepped_down.is_none() && v.as_ref().is_ok_and(|v| !v.is_leader()) {
            stepped_down = Some(cut_at.elapsed());
            // A few more sends as a non-leader, then stop.
            for k in 0..3 {
                let b = body(&mut rng, seed, 98, k);
                produced.attempted.lock().unwrap().insert(b.clone());
                let a = client.call(send_message(topic, 0, b, ""), SEND_TIMEOUT).expect("answer from the old leader");
                *answers.entry(format!("after step-down: code {}", a.code)).or_default() += 1;
                assert_ne!(a.code, response::SUCCESS, "the isolated, stepped-down node acknowledged a send");
                assert_eq!(a.code, response::SERVICE_NOT_AVAILABLE, "a follower refuses sends: {a:?}");
            }
            break;
        }
    }
    println!(
        "isolated n{}: stepped down after {stepped_down:?}; its answers {:?} {answers:?}; status {:?}",
        old + 1,
        minority.failures.lock().unwrap(),
        cluster.status(old, 0).map(|v| v.raw)
    );
    assert!(
        acked_by_minority.is_empty(),
        "the isolated leader acknowledged {} sends made after it was cut off: {:?}",
        acked_by_minority.len(),
        acked_by_minority.iter().map(|a| (a.queue, a.offset)).collect::<Vec<_>>()
    );
    assert!(stepped_down.is_some(), "the isolated leader still says it leads {:?} after the cut", cut_at.elapsed());

    // The majority elects a leader and takes sends.
    let (new, new_view) = cluster
        .leader_where(0, NEW_LEADER_WITHIN, |i, v| i != old && v.term > old_view.term)
        .unwrap_or_else(|e| panic!("majority elected no leader: {e}"));
    println!("majority: n{} leads (term {}) {:?} after the cut", new + 1, new_view.term, cut_at.elapsed());
    let majority: Vec<(usize, String)> = all_nodes(&cluster).into_iter().filter(|(i, _)| *i != old).collect();
    let before = produced.acked_count();
    join_all(start_producers(&produced, majority, topic, 25, seed ^ 1, Duration::from_secs(60)));
    assert_eq!(
        produced.acked_count() - before,
        100,
        "sends to the majority: failures {:?}",
        produced.failures.lock().unwrap()
    );
    // Keep the cut long enough for the isolated node to pass several election timeouts:
    // without pre-vote it would come back with a higher term and depose the new leader.
    std::thread::sleep(PARTITION_HOLD.saturating_sub(cut_at.elapsed()));
    let isolated = cluster.status(old, 0).expect("the isolated node answers its clients");
    println!(
        "isolated node after {:?}: term {} role {:?}, last index {:?} (entries past the majority's commit are its divergent tail)",
        cut_at.elapsed(),
        isolated.term,
        isolated.role,
        isolated.last_index
    );

    cluster.heal_all();
    let healed_at = Instant::now();
    let views = cluster.wait_converged(0, CONVERGE_WITHIN).unwrap_or_else(|e| panic!("after healing: {e}"));
    println!("converged {:?} after the heal at commit {}", healed_at.elapsed(), views[0].commit);
    let v_old = views.iter().find(|v| v.node_id == old as u64 + 1).expect("old leader's view");
    assert!(!v_old.is_leader() && v_old.leader == Some(new as u64 + 1), "old leader after heal: {:?}", v_old.raw);
    assert_eq!(views[0].term, new_view.term, "the healed node forced a new election");

    let on_new = read_topic(&cluster.shard_addr(new, 0), topic).unwrap_or_else(|e| panic!("read new leader: {e}"));
    let duplicates = check_acked(&on_new, &produced, "the new leader");
    let on_old = read_topic(&old_addr, topic).unwrap_or_else(|e| panic!("read old leader: {e}"));
    assert!(
        on_old == on_new,
        "the healed old leader reads differently ({} vs {} messages)",
        on_old.len(),
        on_new.len()
    );
    println!("all {} acknowledged present on both; duplicates {duplicates}", produced.acked_count());
    stop_and_compare_commitlogs(&mut cluster, &produced);
}

#[test]
fn follower_down_while_group_writes_catches_up_and_converges() {
    let _serial = cluster::serial();
    let mut cluster = Cluster::start(options(false));
    let seed = cluster.opts.seed;
    let topic = "repl_catchup";
    let (leader, view) = leader_and_topic(&cluster, topic);
    let addrs = all_nodes(&cluster);

    let produced = Arc::new(Produced::default());
    join_all(start_producers(&produced, addrs.clone(), topic, 25, seed, Duration::from_secs(60)));
    assert_eq!(produced.acked_count(), 100, "failures {:?}", produced.failures.lock().unwrap());

    let follower = (leader + 1) % 3;
    cluster.kill9(follower);
    // About 2.5 MiB: the follower misses several segments, BLANK fillers included.
    let before = produced.acked_count();
    let t = Instant::now();
    join_all(start_producers(&produced, addrs, topic, 1_000, seed ^ 2, Duration::from_secs(90)));
    let written = produced.acked_count() - before;
    println!("n{} down; {written} sends acknowledged by the other two in {:?}", follower + 1, t.elapsed());
    assert_eq!(
        written,
        PRODUCERS * 1_000,
        "sends with one follower down: failures {:?}",
        produced.failures.lock().unwrap()
    );

    cluster.start_node(follower);
    let t = Instant::now();
    let views = cluster.wait_converged(0, CONVERGE_WITHIN).unwrap_or_else(|e| panic!("catch-up: {e}"));
    println!("n{} caught up to commit {} in {:?}", follower + 1, views[0].commit, t.elapsed());
    assert_eq!(views[0].leader, Some(leader as u64 + 1), "leadership moved during catch-up");
    assert_eq!(views[0].term, view.term, "the returning follower forced a new election");

    // Routes: the leader is brokerId 0, each follower registered under its Raft id.
    let want: BTreeMap<i64, String> =
        (0..3).map(|i| (if i == leader { 0 } else { i as i64 + 1 }, cluster.shard_addr(i, 0))).collect();
    let routed =
        wait_for(Duration::from_secs(10), || cluster.route(topic).is_ok_and(|r| r.get("g1-s0") == Some(&want)));
    assert!(routed, "route of {topic}: {:?}, expected g1-s0 = {want:?}", cluster.route(topic));
    // `rockshard admin cluster status` shows the same group as every node sees it.
    let text = cluster.admin(&["cluster", "status"]).unwrap_or_else(|e| panic!("{e}"));
    println!("admin cluster status:\n{text}");
    let json = cluster.admin(&["--json", "cluster", "status"]).unwrap_or_else(|e| panic!("{e}"));
    let json: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("admin --json: {e}: {json}"));
    let mut raft_rows = Vec::new();
    collect_raft_rows(&json, &mut raft_rows);
    let leaders: Vec<Option<u64>> =
        raft_rows.iter().map(|r| cluster::RaftView::parse(r.clone()).ok().and_then(|v| v.leader)).collect();
    assert_eq!(
        leaders,
        vec![Some(leader as u64 + 1); 3],
        "admin cluster status --json should show g1-s0 on 3 nodes, all led by n{}: {json}",
        leader + 1
    );

    let on_leader = read_topic(&cluster.shard_addr(leader, 0), topic).unwrap_or_else(|e| panic!("read leader: {e}"));
    check_acked(&on_leader, &produced, "the leader");
    let on_follower =
        read_topic(&cluster.shard_addr(follower, 0), topic).unwrap_or_else(|e| panic!("read follower: {e}"));
    check_acked(&on_follower, &produced, "the caught-up follower");
    assert!(on_follower == on_leader, "follower reads {} messages, leader {}", on_follower.len(), on_leader.len());
    stop_and_compare_commitlogs(&mut cluster, &produced);
}

/// A group's committed offset of queue 0 as node `i` answers QUERY_CONSUMER_OFFSET.
fn queried_offset(cluster: &Cluster, i: usize, topic: &str, group: &str) -> Option<i64> {
    let ext = [("consumerGroup", group.to_string()), ("topic", topic.to_string()), ("queueId", "0".to_string())];
    let a =
        cluster::call_json(&cluster.shard_addr(i, 0), request::QUERY_CONSUMER_OFFSET, &ext, b"", READ_TIMEOUT).ok()?;
    if a.code != i64::from(response::SUCCESS) {
        return None;
    }
    a.ext.get("offset").and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_i64()))
}

/// Topic configuration and consumer offsets ride the log: a topic created on the leader
/// exists on every follower, an offset committed on the leader reaches the followers
/// within the snapshot interval, and after the leader dies the new one answers the same
/// offset (a failover does not rewind consumers or lose a topic).
#[test]
fn topics_and_consumer_offsets_survive_a_failover() {
    let _serial = cluster::serial();
    let mut cluster = Cluster::start(options(false));
    let topic = "repl_meta";
    let group = "repl_meta_group";
    let (leader, _) = leader_and_topic(&cluster, topic);
    let produced = Arc::new(Produced::default());
    join_all(start_producers(&produced, all_nodes(&cluster), topic, 10, cluster.opts.seed, Duration::from_secs(60)));

    let ext = [
        ("consumerGroup", group.to_string()),
        ("topic", topic.to_string()),
        ("queueId", "0".to_string()),
        ("commitOffset", "7".to_string()),
    ];
    let a =
        cluster::call_json(&cluster.shard_addr(leader, 0), request::UPDATE_CONSUMER_OFFSET, &ext, b"", READ_TIMEOUT)
            .unwrap_or_else(|e| panic!("commit offset: {e}"));
    assert_eq!(a.code, i64::from(response::SUCCESS), "commit offset: {:?}", a.remark);
    for i in (0..3).filter(|&i| i != leader) {
        let seen = wait_for(Duration::from_secs(10), || queried_offset(&cluster, i, topic, group) == Some(7));
        assert!(seen, "n{} never learned the committed offset: {:?}", i + 1, queried_offset(&cluster, i, topic, group));
        let topics =
            cluster::call_json(&cluster.shard_addr(i, 0), request::GET_ALL_TOPIC_CONFIG, &[], b"", READ_TIMEOUT)
                .unwrap_or_else(|e| panic!("topic configs of n{}: {e}", i + 1));
        assert!(String::from_utf8_lossy(&topics.body).contains(topic), "n{} lacks topic {topic}", i + 1);
    }

    cluster.kill9(leader);
    let others: Vec<String> = (0..3).filter(|&i| i != leader).map(|i| cluster.shard_addr(i, 0)).collect();
    let new = leader_among(&others, Duration::from_secs(10)).unwrap_or_else(|e| panic!("no new leader: {e}"));
    let new = (0..3).filter(|&i| i != leader).nth(new).expect("one of the others");
    assert_eq!(queried_offset(&cluster, new, topic, group), Some(7), "the new leader n{} rewound", new + 1);
    // And the new leader takes commits that the remaining follower learns in turn.
    let ext = [
        ("consumerGroup", group.to_string()),
        ("topic", topic.to_string()),
        ("queueId", "0".to_string()),
        ("commitOffset", "9".to_string()),
    ];
    let a = cluster::call_json(&cluster.shard_addr(new, 0), request::UPDATE_CONSUMER_OFFSET, &ext, b"", READ_TIMEOUT)
        .unwrap_or_else(|e| panic!("commit offset on the new leader: {e}"));
    assert_eq!(a.code, i64::from(response::SUCCESS));
    let last = (0..3).find(|&i| i != leader && i != new).expect("the third node");
    let seen = wait_for(Duration::from_secs(10), || queried_offset(&cluster, last, topic, group) == Some(9));
    assert!(seen, "n{} never learned the new leader's offset", last + 1);
    cluster.stop_all();
}

/// A leader stopped with SIGTERM hands its leadership over before it exits: the moment
/// the process is gone another node already leads, in a newer term — without the
/// hand-over nobody would lead for at least one election timeout (1 s at the defaults).
#[test]
fn sigterm_of_the_leader_hands_leadership_over_before_exiting() {
    let _serial = cluster::serial();
    let mut cluster = Cluster::start(options(false));
    let (leader, view) = leader_and_topic(&cluster, "repl_handover");
    let status = cluster.stop(leader);
    assert!(status.is_some_and(|s| s.success()), "n{} did not exit cleanly: {status:?}", leader + 1);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let leads: Vec<_> = others
        .iter()
        .filter_map(|&i| cluster.status(i, 0).ok().map(|v| (i, v)))
        .filter(|(_, v)| v.is_leader() && v.term > view.term)
        .collect();
    assert_eq!(
        leads.len(),
        1,
        "right after n{} exited exactly one other node should lead in a newer term: {:?}",
        leader + 1,
        others.iter().map(|&i| cluster.status(i, 0)).collect::<Vec<_>>()
    );
    cluster.stop_all();
}

/// Level 1's delivered offset as node `i` reports it (GET_ALL_DELAY_OFFSET).
fn delay_level1(cluster: &Cluster, i: usize) -> Option<u64> {
    let a =
        cluster::call_json(&cluster.shard_addr(i, 0), request::GET_ALL_DELAY_OFFSET, &[], b"", READ_TIMEOUT).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&a.body).ok()?;
    v.get("offsetTable")?.get("1")?.as_u64()
}

/// The number of messages in queue 0 of `topic` on node `i`.
fn queue0_max(cluster: &Cluster, i: usize, topic: &str) -> Option<i64> {
    let header = GetMaxOffsetRequestHeader { topic: topic.into(), queue_id: 0, committed: None };
    let mut client = Client::connect(&cluster.shard_addr(i, 0)).ok()?;
    let a = client.call(req(request::GET_MAX_OFFSET, header.to_ext_fields()), READ_TIMEOUT).ok()?;
    a.ext_fields.get("offset")?.parse().ok()
}

/// Delayed-delivery progress rides the log: a delayed message the leader delivered is
/// recorded as delivered on the followers, so the leader that follows a failover does not
/// deliver it a second time.
#[test]
fn delayed_delivery_progress_survives_a_failover() {
    let _serial = cluster::serial();
    let mut cluster = Cluster::start(options(false));
    let topic = "repl_delay";
    let (leader, _) = leader_and_topic(&cluster, topic);
    let props = rockshard_net::properties::encode([(rockshard_net::properties::keys::DELAY, "1")]);
    let props = String::from_utf8(props).expect("ASCII properties");
    let mut client = Client::connect(&cluster.shard_addr(leader, 0)).unwrap_or_else(|e| panic!("{e}"));
    let a =
        client.call(send_message(topic, 0, b"later".to_vec(), &props), SEND_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.code, response::SUCCESS, "delayed send: {:?}", a.remark);
    // Level 1 is 1 s: delivered to queue 0 of the topic on the leader, then on all.
    assert!(
        wait_for(Duration::from_secs(15), || (0..3).all(|i| queue0_max(&cluster, i, topic) == Some(1))),
        "the delayed message was not delivered everywhere: {:?}",
        (0..3).map(|i| queue0_max(&cluster, i, topic)).collect::<Vec<_>>()
    );
    for i in (0..3).filter(|&i| i != leader) {
        let learned = wait_for(Duration::from_secs(10), || delay_level1(&cluster, i) == Some(1));
        assert!(learned, "n{} never learned level 1's progress: {:?}", i + 1, delay_level1(&cluster, i));
    }
    cluster.kill9(leader);
    let others: Vec<String> = (0..3).filter(|&i| i != leader).map(|i| cluster.shard_addr(i, 0)).collect();
    let new = leader_among(&others, Duration::from_secs(10)).unwrap_or_else(|e| panic!("no new leader: {e}"));
    let new = (0..3).filter(|&i| i != leader).nth(new).expect("one of the others");
    // Several of the new leader's delivery polls: the message must not come again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(queue0_max(&cluster, new, topic), Some(1), "the new leader n{} delivered it again", new + 1);
    cluster.stop_all();
}
