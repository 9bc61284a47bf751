//! Control messages between shards: topic changes, nothing on the data path.
//!
//! Every shard owns its share of every topic's queues, so creating, changing or
//! deleting a topic must reach all shards. The shard that receives the request applies
//! it and sends it to every other shard ([`ControlPlane::apply_on_others`]); each other
//! shard applies its own share when the message arrives and answers how that went.
//! Messages are owned values sent over glommio's cross-executor channels (one
//! single-producer channel per ordered pair of shards), so no shard ever touches
//! another's state.
//!
//! Invariants:
//! - Applying a message is idempotent (an upsert of the same spec twice leaves the same
//!   topic), so a topic request that several shards receive at once — a stock RocketMQ
//!   admin sends `updateTopic` to every broker of a cluster — converges, and sending a
//!   message again after a failure or a lost answer is safe.
//! - A change is never left half done in silence: the sender waits (bounded) for every
//!   other shard's answer, asks a shard that failed or did not answer again, and
//!   returns the shards still without the change, with why, so the request that caused
//!   it is answered with an error naming them. Asking again (the client's retry, the
//!   next heartbeat) finishes the change, since applying it is idempotent.
//! - A shard answers a message only after applying it, its topic table saved.
//!
//! Runs on each shard's executor. Connecting a glommio channel end waits for its peer,
//! so every end connects in its own task and nothing waits on another shard at start.
//! Deliberately not here: what applying a message means (`ops::topics` does it, and
//! `tasks::control` receives the messages), and how a topic's queues are shared out
//! (`state::topics::queue_share`).

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};
use rockshard_local::{completion, Completer, Notify};
use rockshard_storage::FlushMode;
use tracing::warn;

use crate::limits::{
    CONTROL_APPLY_ATTEMPTS, CONTROL_APPLY_TIMEOUT_MS, CONTROL_CHANNEL_CAPACITY, CONTROL_CONNECT_MAX_MS,
    CONTROL_RETRY_DELAY_MS,
};

/// A topic as the whole broker sees it: queue counts are totals over all shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub read_queues: u32,
    pub write_queues: u32,
    pub perm: u32,
    /// `None`: keep the topic's current mode (or the default for a new topic).
    pub flush: Option<FlushMode>,
    pub order: bool,
}

#[derive(Debug, Clone)]
pub enum ControlMsg {
    UpsertTopic(TopicSpec),
    DeleteTopic(String),
    /// Create a per-shard topic (a group's retry topic) on every shard that lacks it.
    EnsureLocalTopic {
        name: String,
        queues: u32,
        perm: u32,
    },
}

/// What travels between two shards.
#[derive(Debug, Clone)]
enum Envelope {
    /// A change for the receiver to apply and answer (`Done` with the same `id`).
    Request { from: usize, id: u64, msg: ControlMsg },
    /// How applying request `id` went on shard `from`.
    Done { from: usize, id: u64, result: Result<(), String> },
}

/// A change another shard sent; answer it with [`ControlPlane::answer`].
#[derive(Debug)]
pub struct Incoming {
    pub from: usize,
    id: u64,
    pub msg: ControlMsg,
}

/// A shard that does not have a change (yet), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub shard: usize,
    pub reason: String,
}

/// One shard's ends of the mesh, made on the main thread and moved to the shard.
pub struct Endpoints {
    senders: Vec<(usize, SharedSender<Envelope>)>,
    receivers: Vec<SharedReceiver<Envelope>>,
}

/// All channels between `shards` shards.
pub struct Mesh {
    endpoints: Vec<Endpoints>,
}

impl Mesh {
    pub fn new(shards: usize) -> Mesh {
        let mut endpoints: Vec<Endpoints> =
            (0..shards).map(|_| Endpoints { senders: Vec::new(), receivers: Vec::new() }).collect();
        for from in 0..shards {
            for to in 0..shards {
                if from != to {
                    let (tx, rx) = shared_channel::new_bounded(CONTROL_CHANNEL_CAPACITY);
                    endpoints[from].senders.push((to, tx));
                    endpoints[to].receivers.push(rx);
                }
            }
        }
        Mesh { endpoints }
    }

    pub fn into_endpoints(self) -> Vec<Endpoints> {
        self.endpoints
    }
}

type Peers = Rc<RefCell<Vec<(usize, Option<Rc<ConnectedSender<Envelope>>>)>>>;
/// Requests sent and not answered yet: (shard asked, request id) → its waiter.
type Waiting = Rc<RefCell<HashMap<(usize, u64), Completer<Result<(), String>>>>>;

/// A shard's side of the mesh.
pub struct ControlPlane {
    id: usize,
    peers: Peers,
    inbox: Rc<RefCell<VecDeque<Incoming>>>,
    inbox_wake: Rc<Notify>,
    waiting: Waiting,
    next_id: Cell<u64>,
    /// How long one attempt waits for a shard's answer (`CONTROL_APPLY_TIMEOUT_MS`;
    /// tests shorten it).
    answer_timeout: Cell<Duration>,
}

impl ControlPlane {
    /// Connects this shard's ends in background tasks; returns at once.
    pub async fn connect(id: usize, endpoints: Endpoints) -> ControlPlane {
        let peers: Peers = Rc::new(RefCell::new(endpoints.senders.iter().map(|(to, _)| (*to, None)).collect()));
        for (slot, (_, tx)) in endpoints.senders.into_iter().enumerate() {
            let peers = peers.clone();
            glommio::spawn_local(async move {
                let connected = Rc::new(tx.connect().await);
                peers.borrow_mut()[slot].1 = Some(connected);
            })
            .detach();
        }
        let inbox = Rc::new(RefCell::new(VecDeque::new()));
        let inbox_wake = Rc::new(Notify::default());
        let waiting: Waiting = Rc::new(RefCell::new(HashMap::new()));
        for rx in endpoints.receivers {
            let (inbox, wake, waiting) = (inbox.clone(), inbox_wake.clone(), waiting.clone());
            glommio::spawn_local(async move {
                let rx = rx.connect().await;
                while let Some(envelope) = rx.recv().await {
                    match envelope {
                        Envelope::Request { from, id, msg } => {
                            inbox.borrow_mut().push_back(Incoming { from, id, msg });
                            wake.notify();
                        }
                        Envelope::Done { from, id, result } => {
                            // No waiter: the attempt timed out and its sender moved on.
                            let waiter = waiting.borrow_mut().remove(&(from, id));
                            if let Some(w) = waiter {
                                w.complete(result);
                            }
                        }
                    }
                }
            })
            .detach();
        }
        ControlPlane {
            id,
            peers,
            inbox,
            inbox_wake,
            waiting,
            next_id: Cell::new(0),
            answer_timeout: Cell::new(Duration::from_millis(CONTROL_APPLY_TIMEOUT_MS)),
        }
    }

    #[cfg(test)]
    pub fn set_answer_timeout(&self, timeout: Duration) {
        self.answer_timeout.set(timeout);
    }

    /// The other shards' ids.
    pub fn others(&self) -> Vec<usize> {
        self.peers.borrow().iter().map(|(to, _)| *to).collect()
    }

    /// Sends `msg` to every other shard and waits for each to apply it. A shard that
    /// fails or does not answer in time is asked again, up to `CONTROL_APPLY_ATTEMPTS`
    /// times in all. Returns the shards that still do not have the change, with why
    /// (empty: every other shard has it).
    pub async fn apply_on_others(&self, msg: &ControlMsg) -> Vec<Missing> {
        let mut missing: Vec<Missing> =
            self.others().into_iter().map(|shard| Missing { shard, reason: String::new() }).collect();
        for attempt in 1..=CONTROL_APPLY_ATTEMPTS {
            if attempt > 1 {
                glommio::timer::sleep(Duration::from_millis(CONTROL_RETRY_DELAY_MS)).await;
            }
            // Every request goes out before any answer is awaited, so the shards apply
            // the change at the same time and one deadline covers them all.
            let mut sent = Vec::with_capacity(missing.len());
            for m in std::mem::take(&mut missing) {
                match self.request(m.shard, msg.clone()).await {
                    Ok(wait) => sent.push((m.shard, wait)),
                    Err(reason) => missing.push(Missing { shard: m.shard, reason }),
                }
            }
            let deadline = Instant::now() + self.answer_timeout.get();
            for (shard, (id, answer)) in sent {
                let timed_out = async {
                    glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
                    None
                };
                let outcome = futures_lite::future::or(async { Some(answer.await) }, timed_out).await;
                let reason = match outcome {
                    Some(Ok(())) => continue,
                    Some(Err(e)) => e,
                    None => {
                        self.waiting.borrow_mut().remove(&(shard, id));
                        format!("no answer within {} ms", self.answer_timeout.get().as_millis())
                    }
                };
                missing.push(Missing { shard, reason });
            }
            if missing.is_empty() {
                break;
            }
            warn!(shard = self.id, attempt, ?msg, ?missing, "other shards did not apply a topic change");
        }
        missing
    }

    /// Sends one request to shard `to`; returns its id and the future of its answer.
    async fn request(
        &self,
        to: usize,
        msg: ControlMsg,
    ) -> Result<(u64, rockshard_local::Completion<Result<(), String>>), String> {
        let sender = self.sender(to).await.ok_or_else(|| {
            format!("the control channel to shard {to} did not connect within {CONTROL_CONNECT_MAX_MS} ms")
        })?;
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        let (done, answer) = completion();
        self.waiting.borrow_mut().insert((to, id), done);
        if sender.send(Envelope::Request { from: self.id, id, msg }).await.is_err() {
            self.waiting.borrow_mut().remove(&(to, id));
            return Err(format!("shard {to} is shutting down (its control channel is closed)"));
        }
        Ok((id, answer))
    }

    /// The connected sender to shard `to`, waiting (bounded) for a late connection:
    /// peers connect within moments of start.
    async fn sender(&self, to: usize) -> Option<Rc<ConnectedSender<Envelope>>> {
        let slot = self.peers.borrow().iter().position(|(peer, _)| *peer == to)?;
        let mut waited_ms = 0;
        loop {
            let sender = self.peers.borrow()[slot].1.clone();
            match sender {
                Some(s) => return Some(s),
                None if waited_ms >= CONTROL_CONNECT_MAX_MS => return None,
                None => {
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                    waited_ms += 5;
                }
            }
        }
    }

    /// The next change from another shard.
    pub async fn next(&self) -> Incoming {
        loop {
            if let Some(m) = self.inbox.borrow_mut().pop_front() {
                return m;
            }
            self.inbox_wake.notified().await;
        }
    }

    /// Tells the shard that sent `incoming` how applying it went.
    pub async fn answer(&self, incoming: &Incoming, result: Result<(), String>) {
        let Some(sender) = self.sender(incoming.from).await else {
            warn!(shard = self.id, to = incoming.from, "control channel never connected; answer not sent");
            return;
        };
        let done = Envelope::Done { from: self.id, id: incoming.id, result };
        if sender.send(done).await.is_err() {
            warn!(shard = self.id, to = incoming.from, "a shard's control channel is closed (it is shutting down)");
        }
    }
}

/// "shard 1 (why); shard 2 (why)", for errors and logs.
pub fn describe_missing(missing: &[Missing]) -> String {
    missing.iter().map(|m| format!("shard {} ({})", m.shard, m.reason)).collect::<Vec<_>>().join("; ")
}

/// A stand-in for another shard in tests: it answers changes as told, on a thread of
/// its own, without applying them.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    /// How the stand-in answers.
    #[derive(Clone, Copy)]
    pub(crate) enum Peer {
        /// Fails the first `n` changes (answering "disk trouble #<i>"), applies the rest.
        FailFirst(usize),
        /// Never answers (a stuck shard), but keeps its channels open.
        Silent,
    }

    pub(crate) struct TestPeer {
        stop: Arc<AtomicBool>,
        seen: Arc<AtomicUsize>,
        thread: Option<glommio::ExecutorJoinHandle<()>>,
    }

    impl TestPeer {
        /// Starts shard 1's side on `endpoints`.
        pub(crate) fn spawn(endpoints: Endpoints, peer: Peer) -> TestPeer {
            let stop = Arc::new(AtomicBool::new(false));
            let seen = Arc::new(AtomicUsize::new(0));
            let (peer_stop, peer_seen) = (stop.clone(), seen.clone());
            let thread = glommio::LocalExecutorBuilder::default()
                .spawn(move || async move {
                    let plane = ControlPlane::connect(1, endpoints).await;
                    // Bounded: stopped by the test, or after 1,000 idle rounds of 10 ms.
                    for _ in 0..1_000 {
                        if peer_stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let next = futures_lite::future::or(async { Some(plane.next().await) }, async {
                            glommio::timer::sleep(Duration::from_millis(10)).await;
                            None
                        })
                        .await;
                        let Some(incoming) = next else { continue };
                        let seen = peer_seen.fetch_add(1, Ordering::SeqCst) + 1;
                        match peer {
                            Peer::FailFirst(n) if seen <= n => {
                                plane.answer(&incoming, Err(format!("disk trouble #{seen}"))).await
                            }
                            Peer::FailFirst(_) => plane.answer(&incoming, Ok(())).await,
                            Peer::Silent => {}
                        }
                    }
                })
                .expect("shard 1 executor");
            TestPeer { stop, seen, thread: Some(thread) }
        }

        /// Changes received so far.
        pub(crate) fn seen(&self) -> usize {
            self.seen.load(Ordering::SeqCst)
        }

        /// Stops the stand-in; returns the changes it received.
        pub(crate) fn stop(mut self) -> usize {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(t) = self.thread.take() {
                t.join().expect("shard 1 ends");
            }
            self.seen()
        }
    }

    impl Drop for TestPeer {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Peer, TestPeer};
    use super::*;

    /// Runs shard 0 on this thread and shard 1, behaving as `peer`, on another; returns
    /// what `apply_on_others` on shard 0 found missing, and the changes shard 1 saw.
    fn apply_with_peer(peer: Peer) -> (Vec<Missing>, usize) {
        let mut endpoints = Mesh::new(2).into_endpoints();
        let peer = TestPeer::spawn(endpoints.pop().expect("shard 1"), peer);
        let ours = endpoints.pop().expect("shard 0");
        let missing = glommio::LocalExecutorBuilder::default().make().expect("shard 0 executor").run(async move {
            let plane = ControlPlane::connect(0, ours).await;
            plane.set_answer_timeout(Duration::from_millis(200));
            let msg = ControlMsg::EnsureLocalTopic { name: "%RETRY%g".into(), queues: 1, perm: 6 };
            plane.apply_on_others(&msg).await
        });
        (missing, peer.stop())
    }

    #[test]
    fn a_change_another_shard_fails_once_is_sent_again_and_finished() {
        let (missing, seen) = apply_with_peer(Peer::FailFirst(1));
        assert_eq!(missing, []);
        assert_eq!(seen, 2, "sent once more after the failure");
    }

    #[test]
    fn a_change_another_shard_keeps_failing_is_reported_with_its_reason() {
        let (missing, seen) = apply_with_peer(Peer::FailFirst(usize::MAX));
        assert_eq!(seen, CONTROL_APPLY_ATTEMPTS as usize);
        assert_eq!(missing, [Missing { shard: 1, reason: format!("disk trouble #{seen}") }]);
        assert_eq!(describe_missing(&missing), format!("shard 1 (disk trouble #{seen})"));
    }

    #[test]
    fn a_shard_that_never_answers_is_reported_after_the_timeout() {
        let (missing, seen) = apply_with_peer(Peer::Silent);
        assert_eq!(seen, CONTROL_APPLY_ATTEMPTS as usize, "asked again after the first timeout");
        assert_eq!(missing, [Missing { shard: 1, reason: "no answer within 200 ms".into() }]);
    }
}
