//! The produce workload: producers that send SEND_MESSAGE_V2 (310), or SEND_BATCH_MESSAGE
//! (320) with a batch body, to the masters round-robin over the topic's write queues.
//!
//! A producer holds one connection per master broker and `--inflight` worker tasks. Each
//! worker claims messages from the run's budget, waits for its scheduled time (open loop)
//! or not (closed loop), sends, and records the outcome: success → messages, bytes and
//! latency; anything else → a failure of its kind. Failed sends are never retried: a
//! retry would report a success the broker did not give the first time.
//!
//! Latency runs from the scheduled time (or the real send time, if earlier) to the answer,
//! so a broker that falls behind an open-loop rate shows it as latency.
//!
//! Runs on one executor; a producer and its workers never leave it.

use std::cell::Cell;
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
use crate::setup::{command, DEFAULT_TOPIC};
use crate::stats::Failure;
use crate::worker::{Conn, Ctx};

/// The queue count producers name for auto-creation, as RocketMQ clients do.
const DEFAULT_TOPIC_QUEUE_NUMS: i32 = 4;

pub struct Producer {
    index: usize,
    conns: Vec<Conn>,
    /// (connection, queue id) pairs, cycled through.
    queues: Vec<(usize, i32)>,
    cursor: Cell<usize>,
    schedule: std::cell::RefCell<Schedule>,
    payload: Bytes,
    /// Hex of ip + pid + producer: the fixed first 20 characters of every UNIQ_KEY.
    uniq_prefix: String,
    sequence: Cell<u64>,
}

impl Producer {
    /// Connects producer `index` to every master with writable queues.
    pub async fn connect(ctx: &Ctx, index: usize) -> Result<Producer, rockshard::Error> {
        let shared = &ctx.shared;
        let cfg = &shared.cfg;
        let mut conns = Vec::new();
        let mut queues = Vec::new();
        for target in shared.plan.targets.iter().filter(|t| t.write_queues > 0) {
            let conn = Conn::open(&target.addr, &target.broker_name, cfg.timeout).await?;
            queues.extend((0..target.write_queues).map(|q| (conns.len(), q)));
            conns.push(conn);
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
            conns,
            queues,
            cursor,
            schedule: std::cell::RefCell::new(schedule),
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

    fn next_queue(&self) -> (usize, i32) {
        let at = self.cursor.get();
        self.cursor.set((at + 1) % self.queues.len());
        self.queues[at]
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

    /// The send request for `messages` messages to `queue_id` on connection `conn`.
    fn request(&self, ctx: &Ctx, conn: usize, queue_id: i32, messages: u64, born_ms: i64) -> RemotingCommand {
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
            n: Some(self.conns[conn].broker_name.clone()),
        };
        let code = if batched { request::SEND_BATCH_MESSAGE } else { request::SEND_MESSAGE_V2 };
        command(code, header.to_ext_fields(), cfg.header.serialize_type()).with_body(body)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        for conn in &self.conns {
            conn.current().close().await;
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
            if at > Instant::now() + slack && !ctx.stop_produce.sleep_until(at).await {
                return;
            }
        }
        let (conn, queue_id) = producer.next_queue();
        let client = match producer.conns[conn].client(cfg.timeout).await {
            Ok(client) => client,
            Err(failure) => {
                ctx.stats.borrow_mut().produce_failed(failure);
                if !ctx.stop_produce.sleep(backoff).await {
                    return;
                }
                continue;
            }
        };
        let sent_at = Instant::now();
        // Born at the scheduled time: end-to-end latency then also counts schedule lag.
        let born_ms = shared.clock.unix_ms(scheduled.map_or(sent_at, |at| at.min(sent_at)));
        let req = producer.request(&ctx, conn, queue_id, messages, born_ms);
        let result = client.request(req, cfg.timeout).await;
        let latency = scheduled.map_or(sent_at, |at| at.min(sent_at)).elapsed();
        match result {
            Ok(resp) if resp.code == response::SUCCESS => {
                ctx.stats.borrow_mut().sent(messages, messages * cfg.size_bytes as u64, latency);
                shared.produced_ok.fetch_add(messages, Ordering::Relaxed);
            }
            Ok(resp) => {
                ctx.stats.borrow_mut().produce_failed(Failure::Code(resp.code));
                if !ctx.stop_produce.sleep(backoff).await {
                    return;
                }
            }
            Err(e) => {
                ctx.stats.borrow_mut().produce_failed(Failure::of(&e));
                if !ctx.stop_produce.sleep(backoff).await {
                    return;
                }
            }
        }
    }
}
