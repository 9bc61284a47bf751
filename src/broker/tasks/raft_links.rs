//! The Raft transport between shard *i* of every node of a replicated group: one
//! connection and one sender task per peer, carrying whatever the replica hands over.
//!
//! Raft messages travel as remoting frames with the oneway request code `RAFT_MESSAGES`
//! (net's `rockshard` module) on an ordinary connection from this shard to the peer's
//! shard port (base port + shard), one connection per peer, made again when it breaks.
//! Every message the replica hands over while a write is under way leaves in the next
//! frame, so a burst of appends and heartbeats to one peer is one write. A peer that
//! cannot be reached holds at most [`RAFT_PEER_QUEUE_MAX_MSGS`] messages; past that they
//! are dropped — Raft resends what matters, and a dead peer must not grow our memory.
//! A link going down is a WARN naming the peer, once per down transition, also on an
//! idle link (its connection closing is noticed without a message to send); its coming
//! back is an INFO. At start, a peer gets [`RAFT_LINK_START_GRACE_MS`] to come up.
//!
//! Runs on the shard's executor: [`PeerLinks::start`] spawns the sender tasks, which end
//! when the shard shuts down. Touches no shard state at all: the replica calls
//! [`Transport::send`], and the receiving side is the RAFT_MESSAGES handler.
//!
//! Deliberately not here: encoding the messages (the raft crate's `wire`) and anything
//! Raft decides.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rockshard_local::Notify;
use rockshard_net::rockshard::RAFT_MESSAGES;
use rockshard_net::{ExtFields, RemotingCommand};
use rockshard_raft::{Message, Transport};
use tracing::{debug, info, warn};

use crate::config::Replication;
use crate::limits::{
    RAFT_LINK_START_GRACE_MS, RAFT_PEER_QUEUE_MAX_MSGS, RAFT_RECONNECT_BACKOFF_MS, REGISTER_TIMEOUT_MS,
};
use crate::remoting::client::Client;
use rockshard_local::Signal;

/// One peer's outgoing queue and the task that drains it.
struct Peer {
    id: u64,
    /// The node's name in `--peers`: what an operator knows it by.
    name: String,
    addr: SocketAddr,
    queue: RefCell<VecDeque<Message>>,
    wake: Notify,
    dropped: Cell<u64>,
}

/// The shard's links to the same shard on every other node of the group.
pub struct PeerLinks {
    peers: Vec<Rc<Peer>>,
}

impl PeerLinks {
    /// Starts one sender task per peer; they end when the shard shuts down.
    pub fn start(shard_id: usize, repl: &Replication, shutdown: Rc<Signal>) -> Rc<PeerLinks> {
        let mut peers = Vec::new();
        for id in repl.voters() {
            if id == repl.node_id {
                continue;
            }
            let Some(addr) = repl.peer_shard_addr(id, shard_id) else { continue };
            let name = (id as usize)
                .checked_sub(1)
                .and_then(|i| repl.peers.get(i))
                .map_or_else(|| format!("#{id}"), |(n, _)| n.clone());
            let peer = Rc::new(Peer {
                id,
                name,
                addr,
                queue: RefCell::new(VecDeque::new()),
                wake: Notify::default(),
                dropped: Cell::new(0),
            });
            glommio::spawn_local(run_peer(peer.clone(), shard_id, shutdown.clone())).detach();
            peers.push(peer);
        }
        Rc::new(PeerLinks { peers })
    }
}

impl Transport for PeerLinks {
    fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            let Some(peer) = self.peers.iter().find(|p| p.id == m.to) else {
                debug!(to = m.to, "raft message to an unknown node dropped");
                continue;
            };
            let mut q = peer.queue.borrow_mut();
            if q.len() >= RAFT_PEER_QUEUE_MAX_MSGS {
                peer.dropped.set(peer.dropped.get() + 1);
                continue;
            }
            q.push_back(m);
            drop(q);
            peer.wake.notify();
        }
    }
}

/// What a peer's sender task knows of its link, so that each change is logged once: a
/// WARN naming the peer when the link goes down, an INFO when it is up (again).
enum LinkState {
    /// Not up yet since the shard started (then): failures are quiet for
    /// [`RAFT_LINK_START_GRACE_MS`], as peers start at about the same time.
    Starting(Instant),
    Up,
    /// Down since then.
    Down(Instant),
}

/// The link to one peer as the log tells it.
struct LinkLog<'a> {
    peer: &'a Peer,
    shard_id: usize,
    state: LinkState,
}

impl LinkLog<'_> {
    fn up(&mut self) {
        let (shard, peer, addr) = (self.shard_id, &self.peer.name, self.peer.addr);
        match self.state {
            LinkState::Starting(_) => info!(shard, %peer, id = self.peer.id, %addr, "raft link up"),
            LinkState::Down(since) => {
                let down_ms = since.elapsed().as_millis() as u64;
                info!(shard, %peer, id = self.peer.id, %addr, down_ms, "raft link up again");
            }
            LinkState::Up => {}
        }
        self.state = LinkState::Up;
    }

    fn down(&mut self, why: &dyn std::fmt::Display) {
        let (shard, peer, addr) = (self.shard_id, &self.peer.name, self.peer.addr);
        match self.state {
            LinkState::Up => {
                warn!(shard, %peer, id = self.peer.id, %addr, error = %why, "raft link down");
                self.state = LinkState::Down(Instant::now());
            }
            LinkState::Starting(since) if since.elapsed() >= Duration::from_millis(RAFT_LINK_START_GRACE_MS) => {
                warn!(shard, %peer, id = self.peer.id, %addr, error = %why, "raft link down: not up since this node started");
                self.state = LinkState::Down(since);
            }
            LinkState::Starting(_) | LinkState::Down(_) => {
                debug!(shard, %peer, %addr, error = %why, "raft link not up; retrying");
            }
        }
    }
}

/// What ended a sender task's wait while its queue was empty.
enum Woke {
    Messages,
    Shutdown,
    /// The idle connection ended.
    Closed,
}

async fn run_peer(peer: Rc<Peer>, shard_id: usize, shutdown: Rc<Signal>) {
    let mut client: Option<Client> = None;
    let mut link = LinkLog { peer: &peer, shard_id, state: LinkState::Starting(Instant::now()) };
    while !shutdown.is_set() {
        if peer.queue.borrow().is_empty() {
            // Waits for messages, and meanwhile watches the connection: a peer that dies
            // while nothing goes to it (a follower's link to another follower) is noticed
            // when its connection ends, not at the next election.
            let idle = client.clone();
            let woke = futures_lite::future::or(
                async {
                    peer.wake.notified().await;
                    Woke::Messages
                },
                futures_lite::future::or(
                    async {
                        shutdown.wait().await;
                        Woke::Shutdown
                    },
                    async {
                        match idle {
                            Some(c) => c.closed().await,
                            None => std::future::pending::<()>().await,
                        }
                        Woke::Closed
                    },
                ),
            )
            .await;
            match woke {
                Woke::Shutdown => break,
                Woke::Messages => {}
                Woke::Closed => {
                    client = None;
                    link.down(&"connection closed");
                }
            }
            continue;
        }
        if client.as_ref().is_some_and(Client::is_closed) {
            client = None;
            link.down(&"connection closed");
        }
        let c = match client.clone() {
            Some(c) => c,
            None => match Client::connect(&peer.addr.to_string(), Duration::from_millis(REGISTER_TIMEOUT_MS)).await {
                Ok(c) => {
                    link.up();
                    client = Some(c.clone());
                    c
                }
                Err(e) => {
                    link.down(&e);
                    // What waited is stale by the time the link is back: Raft resends
                    // whatever still matters, newer and smaller.
                    peer.queue.borrow_mut().clear();
                    glommio::timer::sleep(Duration::from_millis(RAFT_RECONNECT_BACKOFF_MS)).await;
                    continue;
                }
            },
        };
        let batch: Vec<Message> = peer.queue.borrow_mut().drain(..).collect();
        let mut body = Vec::new();
        rockshard_raft::wire::encode(&batch, &mut body);
        let cmd = RemotingCommand::new_request(RAFT_MESSAGES, ExtFields::new()).with_body(Bytes::from(body));
        if let Err(e) = c.oneway(cmd).await {
            link.down(&e);
            client = None;
        }
    }
    if let Some(c) = client {
        c.close().await;
    }
}
