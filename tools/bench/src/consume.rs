//! The consume workload: consumers that pull their queues with PULL_MESSAGE and long
//! polling, as a RocketMQ pull consumer does, and count what arrives.
//!
//! Queues are assigned to consumers round-robin (queue i → consumer i mod N) once at the
//! start: the tool measures the broker, not a rebalance protocol. Each consumer registers
//! its group and subscription with one HEART_BEAT per broker, then keeps one pull in
//! flight per queue (sysFlag SUSPEND | SUBSCRIPTION | COMMIT_OFFSET, at most
//! `PULL_BATCH_MAX_MESSAGES` messages, held `PULL_SUSPEND_MS` when empty). Pull bodies are
//! decoded record by record with the stored-message codec; each message adds to the counts
//! and, for e2e, its latency from the born timestamp to now. At the end the consumer
//! commits its offsets (UPDATE_CONSUMER_OFFSET, oneway), so a named group resumes there.
//!
//! Failover: a queue stays with its broker name; its connection follows the route to
//! that name's master (or, while there is none, a replica). A pull that lost its
//! connection asks the executor for the route again; once the route changed, the next
//! pull goes to the new address from the same offset (replicas hold the same queue
//! offsets). No new heartbeat is needed there: every pull carries its subscription.
//!
//! Runs on one executor; a consumer and its pull tasks never leave it.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rockshard_net::body::{
    self, ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, MessageModel, SubscriptionData,
};
use rockshard_net::code::{pull_sys_flag, request, response};
use rockshard_net::headers::{
    CommandHeader, PullMessageRequestHeader, PullMessageResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use rockshard_net::properties::java_string_hash;
use rockshard_net::stored::{self, Record};
use rockshard_net::ExtFields;

use crate::args::{StartFrom, Workload};
use crate::limits::{ERROR_BACKOFF_MS, PULL_BATCH_MAX_MESSAGES, PULL_SUSPEND_MS, PULL_TIMEOUT_EXTRA_MS};
use crate::routes::Routes;
use crate::setup::command;
use crate::stats::Failure;
use crate::worker::{Conn, Ctx};

struct Queue {
    conn: usize,
    queue_id: i32,
    start: i64,
    /// The next offset to pull, which is also everything before it consumed.
    offset: Cell<i64>,
}

pub struct Consumer {
    conns: Vec<Conn>,
    queues: Vec<Queue>,
    /// The route version the connections' addresses come from.
    version: Cell<u64>,
}

/// What a pull body held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Delivered {
    pub messages: u64,
    pub bytes: u64,
    /// Born timestamps (ms) of the messages, for e2e latency.
    pub born_ms: Vec<i64>,
    /// The body did not decode completely (what came before the bad record is counted).
    pub bad_record: bool,
}

/// Decodes the stored records of a pull body.
pub fn decode_pull_body(body: &[u8], keep_born: bool) -> Delivered {
    let mut d = Delivered::default();
    let mut at = 0;
    while at < body.len() {
        match stored::decode(&body[at..]) {
            Ok(Some(Record::Message(m))) => {
                d.messages += 1;
                d.bytes += m.body.len() as u64;
                if keep_born {
                    d.born_ms.push(m.header.born_timestamp_ms);
                }
                at += m.header.total_size as usize;
            }
            Ok(Some(Record::Blank { total_size })) => at += total_size as usize,
            Ok(None) | Err(_) => {
                d.bad_record = true;
                break;
            }
        }
    }
    d
}

impl Consumer {
    /// Connects consumer `index` to the brokers of the queues it is assigned, and
    /// registers it there. `None` when it has no queue (more consumers than queues).
    pub async fn connect(ctx: &Ctx, index: usize) -> Result<Option<Consumer>, rockshard::Error> {
        let shared = &ctx.shared;
        let cfg = &shared.cfg;
        let mut conns: Vec<Conn> = Vec::new();
        let targets = &shared.plan.route.masters;
        let mut conn_of_target: Vec<Option<usize>> = vec![None; targets.len()];
        let mut queues = Vec::new();
        for q in shared.plan.queues.iter().skip(index).step_by(cfg.consumers.max(1)) {
            let conn = match conn_of_target[q.target] {
                Some(c) => c,
                None => {
                    let target = &targets[q.target];
                    conns.push(Conn::open(&target.addr, &target.broker_name, cfg.timeout).await?);
                    conn_of_target[q.target] = Some(conns.len() - 1);
                    conns.len() - 1
                }
            };
            queues.push(Queue { conn, queue_id: q.queue_id, start: q.offset, offset: Cell::new(q.offset) });
        }
        if queues.is_empty() {
            return Ok(None);
        }
        let consumer = Consumer { conns, queues, version: Cell::new(ctx.routes.version()) };
        consumer.heartbeat(ctx, index).await?;
        Ok(Some(consumer))
    }

    /// Registers the group and subscription with each broker, as a consumer's first
    /// heartbeat does. A broker that refuses it is reported, and pulls go on (they carry
    /// the subscription themselves).
    async fn heartbeat(&self, ctx: &Ctx, index: usize) -> Result<(), rockshard::Error> {
        let cfg = &ctx.shared.cfg;
        let (sub_string, tags_set, code_set) = match &cfg.tag {
            Some(tag) => (tag.clone(), vec![tag.clone()], vec![java_string_hash(tag)]),
            None => ("*".to_owned(), Vec::new(), Vec::new()),
        };
        let data = HeartbeatData {
            client_id: format!("127.0.0.1@rockshard-bench-{}-{index}", std::process::id()),
            consumer_data_set: vec![ConsumerData {
                consume_from_where: match cfg.from {
                    StartFrom::Earliest => ConsumeFromWhere::ConsumeFromFirstOffset,
                    StartFrom::Latest => ConsumeFromWhere::ConsumeFromLastOffset,
                },
                consume_type: ConsumeType::ConsumeActively,
                group_name: cfg.group.clone(),
                message_model: MessageModel::Clustering,
                subscription_data_set: vec![SubscriptionData {
                    code_set,
                    sub_string,
                    sub_version: ctx.shared.clock.unix_ms(Instant::now()),
                    tags_set,
                    topic: cfg.topic.clone(),
                    ..Default::default()
                }],
                unit_mode: false,
            }],
            ..Default::default()
        };
        let json = body::to_json(&data).map_err(|source| rockshard::Error::Protocol { peer: String::new(), source })?;
        for conn in &self.conns {
            let cmd =
                command(request::HEART_BEAT, ExtFields::new(), cfg.header.serialize_type()).with_body(json.clone());
            // Connected by `Conn::open` just before; a client that is gone already fails
            // like a closed one would.
            let client = conn.current().ok_or_else(|| rockshard::Error::Closed { peer: conn.addr() })?;
            let resp = client.request(cmd, cfg.timeout).await?;
            if resp.code != response::SUCCESS {
                eprintln!(
                    "rockshard-bench: broker {} answered the consumer heartbeat with {}; pulling anyway",
                    conn.addr(),
                    Failure::Code(resp.code)
                );
            }
            // Requests the broker sends (NOTIFY_CONSUMER_IDS_CHANGED) need no action here:
            // queues are assigned once, and a oneway request gets no answer.
            client.on_server_request(|_| None);
        }
        Ok(())
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Points each connection at its broker's current pull address if the route changed.
    /// A broker name missing from the route keeps its address: its pulls fail, and ask
    /// for the route again, until it is back.
    fn follow_route(&self, routes: &Routes) {
        if self.version.get() == routes.version() {
            return;
        }
        let view = routes.view();
        for conn in &self.conns {
            if let Some(addr) = view.pull_addrs.get(&conn.broker_name) {
                conn.retarget(addr);
            }
        }
        self.version.set(routes.version());
    }

    /// Commits every queue's offset (oneway) and closes the connections; the close lets
    /// the queued commits leave first.
    pub async fn finish(&self, ctx: &Ctx) {
        let cfg = &ctx.shared.cfg;
        for q in &self.queues {
            if q.offset.get() <= q.start {
                continue;
            }
            let h = UpdateConsumerOffsetRequestHeader {
                consumer_group: cfg.group.clone(),
                topic: cfg.topic.clone(),
                queue_id: q.queue_id,
                commit_offset: q.offset.get(),
            };
            let cmd = command(request::UPDATE_CONSUMER_OFFSET, h.to_ext_fields(), cfg.header.serialize_type());
            // The run is over: a commit that cannot be sent only means a named group
            // resumes a little earlier next time.
            if let Some(client) = self.conns[q.conn].current() {
                let _ = client.oneway(cmd).await;
            }
        }
        for client in self.conns.iter().filter_map(Conn::current) {
            client.close().await;
        }
    }
}

/// Pulls queue `queue` of `consumer` until the run stops consuming.
pub async fn pull_loop(ctx: Rc<Ctx>, consumer: Rc<Consumer>, queue: usize) {
    let shared = &ctx.shared;
    let cfg = &shared.cfg;
    let q = &consumer.queues[queue];
    let conn = &consumer.conns[q.conn];
    let timeout = Duration::from_millis(PULL_SUSPEND_MS as u64 + PULL_TIMEOUT_EXTRA_MS);
    let backoff = Duration::from_millis(ERROR_BACKOFF_MS);
    let e2e = cfg.workload == Workload::E2e;
    let subscription = cfg.tag.clone().unwrap_or_else(|| "*".to_owned());
    while !ctx.stop_consume.is_set() {
        consumer.follow_route(&ctx.routes);
        let generation = conn.generation();
        let client = match conn.client(cfg.timeout).await {
            Ok(c) => c,
            Err(failure) => {
                ctx.stats.borrow_mut().consume_failed(failure);
                ctx.react(conn, generation, failure);
                if ctx.stop_consume.sleep(backoff).await {
                    return;
                }
                continue;
            }
        };
        let offset = q.offset.get();
        let commit = offset > q.start;
        let h = PullMessageRequestHeader {
            consumer_group: cfg.group.clone(),
            topic: cfg.topic.clone(),
            queue_id: q.queue_id,
            queue_offset: offset,
            max_msg_nums: PULL_BATCH_MAX_MESSAGES,
            sys_flag: pull_sys_flag::SUSPEND
                | pull_sys_flag::SUBSCRIPTION
                | if commit { pull_sys_flag::COMMIT_OFFSET } else { 0 },
            commit_offset: if commit { offset } else { 0 },
            suspend_timeout_millis: PULL_SUSPEND_MS,
            subscription: Some(subscription.clone()),
            sub_version: 0,
            expression_type: Some("TAG".to_owned()),
            max_msg_bytes: None,
            request_source: None,
            proxy_froward_client_id: None,
        };
        let cmd = command(request::PULL_MESSAGE, h.to_ext_fields(), cfg.header.serialize_type());
        let sent_at = Instant::now();
        let Some(result) = ctx.stop_consume.unless(client.request(cmd, timeout)).await else { return };
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => {
                let failure = Failure::of(&e);
                ctx.stats.borrow_mut().consume_failed(failure);
                ctx.react(conn, generation, failure);
                if ctx.stop_consume.sleep(backoff).await {
                    return;
                }
                continue;
            }
        };
        let next = resp.ext_header::<PullMessageResponseHeader>().map(|h| h.next_begin_offset);
        match resp.code {
            response::SUCCESS => {
                let latency = sent_at.elapsed();
                let delivered = decode_pull_body(&resp.body, e2e);
                let now_us = shared.clock.unix_us(Instant::now());
                let mut stats = ctx.stats.borrow_mut();
                stats.pulled(delivered.messages, delivered.bytes, latency);
                for born_ms in &delivered.born_ms {
                    stats.delivered(u64::try_from(now_us - born_ms * 1000).unwrap_or(0));
                }
                if delivered.bad_record {
                    stats.consume_failed(Failure::BadRecord);
                }
                drop(stats);
                shared.consumed.fetch_add(delivered.messages, Ordering::Relaxed);
                match next {
                    Ok(next) => q.offset.set(next),
                    // Without the next offset we cannot go on from a known point; skip what
                    // we decoded rather than read it twice.
                    Err(_) => {
                        ctx.stats.borrow_mut().consume_failed(Failure::Protocol);
                        q.offset.set(offset + delivered.messages as i64);
                    }
                }
            }
            // Long poll ended empty, or the broker asks for another try at once.
            response::PULL_NOT_FOUND | response::PULL_RETRY_IMMEDIATELY => {
                if let Ok(next) = next {
                    q.offset.set(next);
                }
            }
            code => {
                // Including PULL_OFFSET_MOVED: counted, then continued where the broker says.
                ctx.stats.borrow_mut().consume_failed(Failure::Code(code));
                ctx.react(conn, generation, Failure::Code(code));
                if let (response::PULL_OFFSET_MOVED, Ok(next)) = (code, next) {
                    q.offset.set(next);
                }
                if ctx.stop_consume.sleep(backoff).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rockshard_net::stored::RecordFields;

    fn record(body: &[u8], born_ms: i64, out: &mut Vec<u8>) {
        let fields = RecordFields {
            topic: b"BenchTopic",
            queue_id: 0,
            flag: 0,
            sys_flag: 0,
            born_timestamp_ms: born_ms,
            born_host: "127.0.0.1:1".parse().expect("addr"),
            store_timestamp_ms: born_ms + 1,
            store_host: "127.0.0.1:10911".parse().expect("addr"),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            properties: b"WAIT\x01true\x02",
        };
        stored::encode(&fields, 0, out.len() as i64, out).expect("encodes");
    }

    #[test]
    fn pull_bodies_count_messages_bytes_and_born_times() {
        let mut body = Vec::new();
        record(b"hello", 1_000, &mut body);
        record(&[7u8; 300], 2_000, &mut body);
        let d = decode_pull_body(&body, true);
        assert_eq!(d, Delivered { messages: 2, bytes: 305, born_ms: vec![1_000, 2_000], bad_record: false });
        assert!(decode_pull_body(&body, false).born_ms.is_empty());
        assert_eq!(decode_pull_body(&[], true), Delivered::default());
    }

    #[test]
    fn a_damaged_body_counts_what_precedes_the_damage() {
        let mut body = Vec::new();
        record(b"first", 1, &mut body);
        let first_len = body.len();
        record(b"second", 2, &mut body);
        body[first_len + 5] ^= 0xFF; // the second record's magic
        let d = decode_pull_body(&body, false);
        assert_eq!((d.messages, d.bytes, d.bad_record), (1, 5, true));
        let truncated = decode_pull_body(&body[..first_len + 10], false);
        assert_eq!((truncated.messages, truncated.bad_record), (1, true));
    }
}
