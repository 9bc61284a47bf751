//! The produce workload: producers that send SEND_MESSAGE_V2 (310), or SEND_BATCH_MESSAGE
//! (320) with a batch body, to the masters round-robin over the topic's write queues.
//!
//! A producer holds one connection per master broker and `--inflight` worker tasks. Each
//! worker claims messages from the run's budget, waits for its scheduled time (open loop)
//! or not (closed loop), sends, and records the outcome: success → messages, bytes and
//! latency; anything else → a failure of its kind. Failed sends are never retried: a
//! retry would report a success the broker did not give the first time.
//!
//! Failover, as a RocketMQ producer: a send whose connection was lost or that a broker
//! refused as not the master (SERVICE_NOT_AVAILABLE) makes the producer avoid that
//! broker's queues for `BROKER_AVOID_MS` (its other queues still take sends; if no broker
//! is left, one is tried anyway, as `MQFaultStrategy` does) and asks for the route again.
//! Before each send the worker compares the executor's route version with the one its
//! producer's broker list was built from, and rebuilds the list when the route moved:
//! connections follow their broker name to the new master's address.
//!
//! Latency runs from the scheduled time (or the real send time, if earlier) to the answer,
//! so a broker that falls behind an open-loop rate shows it as latency.
//!
//! Runs on one executor; a producer and its workers never leave it.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rockshard_net::code::{request, response};
use rockshard_net::headers::{CommandHeader, SendMessageRequestHeaderV2};
use rockshard_net::properties::{keys, NAME_VALUE_SEPARATOR as NV, PROPERTY_SEPARATOR as PS};
use rockshard_net::{batch, RemotingCommand};

use crate::limits::{ERROR_BACKOFF_MS, OPEN_LOOP_SLACK_US};
use crate::rate::Schedule;
use crate::routes::Routes;
use crate::setup::{command, DEFAULT_TOPIC};
use crate::stats::Failure;
use crate::worker::{Conn, Ctx};

/// The queue count producers name for auto-creation, as RocketMQ clients do.
const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;

pub struct Producer {
    index: usize,
    /// Where sends go, as of one route version.
    sending: RefCell<Sending>,
    cursor: Cell<usize>,
    schedule: RefCell<Schedule>,
    payload: Bytes,
    /// Hex of ip + pid + producer: the fixed first 20 characters of every UNIQ_KEY.
    uniq_prefix: String,
    sequence: Cell<u64>,
}

/// A producer's brokers and their queues, built from route version `version`.
struct Sending {
    version: u64,
    /// One per master with writable queues.
    conns: Vec<Rc<Conn>>,
    /// (connection, queue id) pairs, cycled through.
    queues: Vec<(usize, i32)>,
}

impl Sending {
    /// The brokers of `routes`' current view, keeping the connection of every broker name
    /// already in `old` (pointed at its new address if it moved).
    fn of(routes: &Routes, old: &[Rc<Conn>]) -> Sending {
        let view = routes.view();
        let mut conns = Vec::new();
        let mut queues = Vec::new();
        for target in view.masters.iter().filter(|t| t.write_queues > 0) {
            let conn = match old.iter().find(|c| c.broker_name == target.broker_name) {
                Some(c) => {
                    c.retarget(&target.addr);
                    c.clone()
                }
                None => Rc::new(Conn::lazy(&target.addr, &target.broker_name)),
            };
            queues.extend((0..target.write_queues).map(|q| (conns.len(), q)));
            conns.push(conn);
        }
        Sending { version: routes.version(), conns, queues }
    }
}

/// The index into `queues` of the next queue to send to, starting at `start` and passing
/// over queues of connections `usable` refuses; `start` itself when every one is refused
/// (a send to an avoided broker may still succeed, none to no broker can). `None` when
/// there is no queue.
fn pick_queue(queues: &[(usize, i32)], start: usize, usable: impl Fn(usize) -> bool) -> Option<usize> {
    let n = queues.len();
    if n == 0 {
        return None;
    }
    let start = start % n;
    (0..n).map(|step| (start + step) % n).find(|at| usable(queues[*at].0)).or(Some(start))
}

impl Producer {
    /// Connects producer `index` to every master with writable queues.
    pub async fn connect(ctx: &Ctx, index: usize) -> Result<Producer, rockshard::Error> {
        let shared = &ctx.shared;
        let cfg = &shared.cfg;
        let mut conns = Vec::new();
        let mut queues = Vec::new();
        for target in ctx.routes.view().masters.iter().filter(|t| t.write_queues > 0) {
            let conn = Conn::open(&target.addr, &target.broker_name, cfg.timeout).await?;
            queues.extend((0..target.write_queues).map(|q| (conns.len(), q)));
            conns.push(Rc::new(conn));
        }
        // Producers start at different queues so they do not move in lockstep.
        let cursor = Cell::new(index % queues.len().max(1));
        let schedule = match cfg.rate {
            Some(rate) => Schedule::open_loop(shared.clock.base(), rate, cfg.batch, index, cfg.producers),
            None => Schedule::closed_loop(),
        };
        let payload: Bytes = (0..cfg.size_bytes).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>().into();
        let uniq_prefix = format!("7F000001{:04X}{:08X}", std::process::id() & 0xFFFF, index as u32);
        Ok(Producer {
            index,
            sending: RefCell::new(Sending { version: ctx.routes.version(), conns, queues }),
            cursor,
            schedule: RefCell::new(schedule),
            payload,
            uniq_prefix,
            sequence: Cell::new(0),
        })
    }

    /// The start of the open-loop schedule must be the run's start, which is only known
    /// once every executor has connected.
    pub fn restart_schedule(&self, ctx: &Ctx, start: Instant) {
        let cfg = &ctx.shared.cfg;
        if let Some(rate) = cfg.rate {
            *self.schedule.borrow_mut() = Schedule::open_loop(start, rate, cfg.batch, self.index, cfg.producers);
        }
    }

    /// Rebuilds the broker list if the route changed since it was built.
    fn follow_route(&self, routes: &Routes) {
        if self.sending.borrow().version == routes.version() {
            return;
        }
        let mut sending = self.sending.borrow_mut();
        *sending = Sending::of(routes, &sending.conns);
    }

    /// The next queue round robin, passing over avoided brokers; `None` when the route
    /// has no writable queue.
    fn next_queue(&self) -> Option<(Rc<Conn>, i32)> {
        let sending = self.sending.borrow();
        let at = pick_queue(&sending.queues, self.cursor.get(), |conn| sending.conns[conn].usable())?;
        self.cursor.set((at + 1) % sending.queues.len());
        let (conn, queue_id) = sending.queues[at];
        Some((sending.conns[conn].clone(), queue_id))
    }

    /// Appends one message's properties: UNIQ_KEY (32 hex digits, RocketMQ's layout:
    /// ip, pid, producer, time, counter), WAIT, and the optional TAGS and KEYS.
    fn message_properties(&self, ctx: &Ctx, born_ms: i64, out: &mut String) {
        let seq = self.sequence.get();
        self.sequence.set(seq + 1);
        let cfg = &ctx.shared.cfg;
        let sep = |out: &mut String, name: &str| {
            out.push_str(name);
            out.push(char::from(NV));
        };
        sep(out, keys::UNIQ_KEY);
        let _ = write!(out, "{}{:08X}{:04X}", self.uniq_prefix, born_ms as u32, seq as u16);
        out.push(char::from(PS));
        sep(out, keys::WAIT);
        out.push_str("true");
        out.push(char::from(PS));
        if let Some(tag) = &cfg.tag {
            sep(out, keys::TAGS);
            out.push_str(tag);
            out.push(char::from(PS));
        }
        if cfg.keys {
            sep(out, keys::KEYS);
            let _ = write!(out, "bench-{}-{seq}", self.index);
            out.push(char::from(PS));
        }
    }

    /// The send request for `messages` messages to `queue_id` of broker `broker_name`.
    fn request(&self, ctx: &Ctx, broker_name: &str, queue_id: i32, messages: u64, born_ms: i64) -> RemotingCommand {
        let cfg = &ctx.shared.cfg;
        let batched = cfg.batch > 1;
        let mut properties = String::with_capacity(96);
        let body = if batched {
            // Batch-level properties are only WAIT; each item carries its own.
            properties.push_str(keys::WAIT);
            properties.push(char::from(NV));
            properties.push_str("true");
            properties.push(char::from(PS));
            let mut body = BytesMut::with_capacity(messages as usize * (self.payload.len() + 128));
            let mut item_properties = String::with_capacity(96);
            for _ in 0..messages {
                item_properties.clear();
                self.message_properties(ctx, born_ms, &mut item_properties);
                // The sizes were validated against the item limits before the run.
                batch::encode_item(0, &self.payload, item_properties.as_bytes(), &mut body)
                    .expect("validated message and property sizes encode");
            }
            body.freeze()
        } else {
            self.message_properties(ctx, born_ms, &mut properties);
            self.payload.clone()
        };
        let header = SendMessageRequestHeaderV2 {
            a: cfg.producer_group.clone(),
            b: cfg.topic.clone(),
            c: DEFAULT_TOPIC.to_owned(),
            d: DEFAULT_TOPIC_QUEUE_NUMS,
            e: queue_id,
            f: 0,
            g: born_ms,
            h: 0,
            i: Some(properties),
            j: Some(0),
            k: Some(false),
            l: None,
            m: Some(batched),
            n: Some(broker_name.to_owned()),
        };
        let code = if batched { request::SEND_BATCH_MESSAGE } else { request::SEND_MESSAGE_V2 };
        command(code, header.to_ext_fields(), cfg.header.serialize_type()).with_body(body)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        let conns = self.sending.borrow().conns.clone();
        for client in conns.iter().filter_map(|c| c.current()) {
            client.close().await;
        }
    }
}

/// One of a producer's `--inflight` senders; returns when the run stops producing or the
/// budget is spent.
pub async fn send_loop(ctx: Rc<Ctx>, producer: Rc<Producer>) {
    let shared = &ctx.shared;
    let cfg = &shared.cfg;
    let slack = Duration::from_micros(OPEN_LOOP_SLACK_US);
    let backoff = Duration::from_millis(ERROR_BACKOFF_MS);
    loop {
        if ctx.stop_produce.is_set() {
            return;
        }
        let messages = shared.budget.claim(cfg.batch as u64);
        if messages == 0 {
            return;
        }
        let scheduled = producer.schedule.borrow_mut().next_send();
        if let Some(at) = scheduled {
            if at > Instant::now() + slack && ctx.stop_produce.sleep_until(at).await {
                return;
            }
        }
        producer.follow_route(&ctx.routes);
        let Some((conn, queue_id)) = producer.next_queue() else {
            // The route has no master with writable queues (all gone at once): what a
            // RocketMQ producer reports as "no route info of this topic".
            ctx.stats.borrow_mut().produce_failed(Failure::NoRoute);
            ctx.routes.refresh_soon();
            if ctx.stop_produce.sleep(backoff).await {
                return;
            }
            continue;
        };
        let generation = conn.generation();
        let client = match conn.client(cfg.timeout).await {
            Ok(client) => client,
            Err(failure) => {
                ctx.stats.borrow_mut().produce_failed(failure);
                ctx.react(&conn, generation, failure);
                if ctx.stop_produce.sleep(backoff).await {
                    return;
                }
                continue;
            }
        };
        let sent_at = Instant::now();
        // Born at the scheduled time: end-to-end latency then also counts schedule lag.
        let born_ms = shared.clock.unix_ms(scheduled.map_or(sent_at, |at| at.min(sent_at)));
        let req = producer.request(&ctx, &conn.broker_name, queue_id, messages, born_ms);
        let result = client.request(req, cfg.timeout).await;
        let latency = scheduled.map_or(sent_at, |at| at.min(sent_at)).elapsed();
        let failure = match result {
            Ok(resp) if resp.code == response::SUCCESS => {
                ctx.stats.borrow_mut().sent(messages, messages * cfg.size_bytes as u64, latency);
                shared.produced_ok.fetch_add(messages, Ordering::Relaxed);
                continue;
            }
            Ok(resp) => Failure::Code(resp.code),
            Err(e) => Failure::of(&e),
        };
        ctx.stats.borrow_mut().produce_failed(failure);
        ctx.react(&conn, generation, failure);
        if ctx.stop_produce.sleep(backoff).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_of_avoided_brokers_are_passed_over_unless_every_broker_is_avoided() {
        // Broker 0 has queues 0..=1, broker 1 queues 0..=2.
        let queues = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)];
        assert_eq!(pick_queue(&queues, 0, |_| true), Some(0));
        assert_eq!(pick_queue(&queues, 7, |_| true), Some(2), "the cursor wraps");
        assert_eq!(pick_queue(&queues, 0, |conn| conn != 0), Some(2), "broker 0 is avoided");
        assert_eq!(pick_queue(&queues, 4, |conn| conn != 1), Some(0), "wrapping past broker 1");
        assert_eq!(pick_queue(&queues, 3, |_| false), Some(3), "none usable: the next queue anyway");
        assert_eq!(pick_queue(&[], 0, |_| true), None);
    }

    #[test]
    fn a_new_route_moves_a_brokers_connection_and_keeps_the_others() {
        use crate::setup::RouteView;
        use crate::setup::Target;
        let target = |name: &str, addr: &str, queues: i32| Target {
            broker_name: name.to_owned(),
            addr: addr.to_owned(),
            write_queues: queues,
            read_queues: queues,
        };
        let routes = Routes::new(RouteView {
            masters: vec![target("g-s0", "a:1", 2), target("g-s1", "b:2", 2)],
            ..Default::default()
        });
        let first = Sending::of(&routes, &[]);
        assert_eq!(first.queues, [(0, 0), (0, 1), (1, 0), (1, 1)]);
        first.conns[0].avoid_for(std::time::Duration::from_secs(60));
        first.conns[1].avoid_for(std::time::Duration::from_secs(60));
        routes.publish(RouteView {
            masters: vec![target("g-s0", "c:1", 2), target("g-s1", "b:2", 2), target("g-s2", "c:3", 1)],
            ..Default::default()
        });
        let second = Sending::of(&routes, &first.conns);
        assert_eq!(second.version, 1);
        assert!(Rc::ptr_eq(&second.conns[0], &first.conns[0]), "a broker keeps its connection");
        assert_eq!(second.conns[0].addr(), "c:1", "moved to the new master");
        assert!(second.conns[0].usable(), "the new address is not avoided");
        assert!(!second.conns[1].usable(), "an unchanged broker stays avoided");
        assert_eq!(second.conns[2].broker_name, "g-s2");
        assert!(second.conns[2].current().is_none(), "a new broker connects on first use");
        assert_eq!(second.queues.len(), 5);
        let third = Sending::of(&routes, &second.conns);
        assert!(third.conns.iter().zip(&second.conns).all(|(a, b)| Rc::ptr_eq(a, b)));
        routes.publish(RouteView::default());
        assert!(Sending::of(&routes, &third.conns).queues.is_empty(), "no master: no queue");
    }
}
