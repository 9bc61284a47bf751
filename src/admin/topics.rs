//! `rockshard admin topic ...`: create, update, delete, list, route and status.
//!
//! Creation and deletion go to one shard per broker process (`one_per_process`), which
//! applies the change to every shard of its process; the queue counts given are per
//! process. After a change the command waits (bounded by `ROUTE_SETTLE_MAX_MS`) until the
//! NameServer's route shows it, and says so if it does not yet. Deleting also tells the
//! NameServer, which otherwise keeps routing to queues that no longer exist. `list`
//! leaves out the brokers' own topics unless `--system` asks for them.
//!
//! Deliberately not here: per-queue statistics beyond min/max offset and last store time
//! (`consumer progress` has the consumer side).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rockshard_net::body::{self, TopicList, TopicRouteData, TopicStatsTable};
use rockshard_net::code::{perm, request};
use rockshard_net::command::ExtFields;
use rockshard_net::headers::{
    CommandHeader, CreateTopicRequestHeader, DeleteTopicFromNamesrvRequestHeader, TopicRequestHeader,
};
use rockshard_net::rockshard::META_TOPIC;
use rockshard_net::RemotingCommand;
use serde_json::{json, Value};

use super::args::{PermArg, TopicOptions};
use super::client::{decode_body, master_addr, one_per_process, process_name, Admin, BrokerRef};
use super::render::{perm_text, time_or_dash, Table};
use super::Report;
use crate::{Error, Result};

/// How long a topic change may take to show in the NameServer's route before we say
/// it has not yet: brokers re-register at once on a change, so a second is plenty.
const ROUTE_SETTLE_MAX_MS: u64 = 5_000;
const ROUTE_SETTLE_POLL_MS: u64 = 100;
/// The template topic an auto-creating producer names; topic creation carries it too.
const DEFAULT_TOPIC: &str = "TBW102";
/// Apache RocketMQ's system topics (`TopicValidator.SYSTEM_TOPIC_SET`) and the prefix
/// of the others (`SYSTEM_TOPIC_PREFIX`): `topic list` leaves them out unless asked.
const APACHE_SYSTEM_TOPICS: [&str; 10] = [
    DEFAULT_TOPIC,
    "SCHEDULE_TOPIC_XXXX",
    "BenchmarkTest",
    "RMQ_SYS_TRANS_HALF_TOPIC",
    "RMQ_SYS_TRACE_TOPIC",
    "RMQ_SYS_TRANS_OP_HALF_TOPIC",
    "TRANS_CHECK_MAX_TIME_TOPIC",
    "SELF_TEST_TOPIC",
    "OFFSET_MOVED_EVENT",
    "CHECKPOINT_TOPIC",
];
const APACHE_SYSTEM_TOPIC_PREFIX: &str = "rmq_sys_";

impl Admin {
    /// `topic create` (`create` = true) and `topic update`.
    pub(super) async fn topic_create(
        &self,
        topic: &str,
        queues: Option<u32>,
        o: &TopicOptions,
        create: bool,
    ) -> Result<Report> {
        let info = self.cluster_info().await?;
        let (cluster, brokers) = self.cluster_brokers(&info, o.cluster.as_deref())?;
        let targets = one_per_process(&brokers);
        let change = self.topic_change(topic, queues, o, create, &targets).await?;
        for b in &targets {
            let cmd = RemotingCommand::new_request(request::UPDATE_AND_CREATE_TOPIC, change.header.to_ext_fields());
            self.call_ok(&b.addr, cmd).await?;
        }
        // The brokers re-register at once; wait (bounded) until the route shows it all.
        let expected = change.write as i64 * targets.len() as i64;
        let route = self.settled_route(topic, expected).await?;
        let mut flush_modes = BTreeSet::new();
        for b in &targets {
            if let Some(t) = self.topic_configs(&b.addr).await?.topic_config_table.get(topic) {
                flush_modes.extend(t.attributes.get("flush.mode").cloned());
            }
        }
        let flush = flush_modes.into_iter().collect::<Vec<_>>().join("/");
        Ok(topic_change_report(topic, &cluster, create, &change, &flush, route.as_ref(), expected))
    }

    /// The UPDATE_AND_CREATE_TOPIC a `topic create` or `topic update` sends. What an
    /// update does not say is kept: the current totals of the first target process, its
    /// perm and order. Creating a topic that exists, or updating one that does not, is a
    /// usage error.
    async fn topic_change(
        &self,
        topic: &str,
        queues: Option<u32>,
        o: &TopicOptions,
        create: bool,
        targets: &[BrokerRef],
    ) -> Result<TopicChange> {
        let route = self.route(topic).await?;
        let (mut read, mut write, mut perm_bits, mut order) = (queues, queues, o.perm.map(PermArg::bits), o.order);
        match (&route, create) {
            (Some(r), true) => {
                let total: i32 = r.queue_datas.iter().map(|q| q.write_queue_nums).sum();
                return Err(Error::Usage(format!(
                    "topic `{topic}` already exists ({total} write queues); change it with `rockshard admin topic update`"
                )));
            }
            (None, false) => {
                return Err(Error::Usage(format!(
                    "topic `{topic}` does not exist; create it with `rockshard admin topic create`"
                )))
            }
            (Some(r), false) => {
                let first = &targets[0];
                let process = process_name(&first.name);
                let mine = r.queue_datas.iter().filter(|q| process_name(&q.broker_name) == process);
                let (cur_read, cur_write) =
                    mine.clone().fold((0, 0), |(r, w), q| (r + q.read_queue_nums, w + q.write_queue_nums));
                read = read.or(Some(cur_read.max(0) as u32));
                write = write.or(Some(cur_write.max(1) as u32));
                perm_bits = perm_bits.or(mine.clone().next().map(|q| q.perm));
                if order.is_none() {
                    let here = r.queue_datas.iter().find(|q| process_name(&q.broker_name) == process);
                    let addr = here.and_then(|q| {
                        r.broker_datas.iter().find(|d| d.broker_name == q.broker_name).and_then(master_addr)
                    });
                    if let Some(addr) = addr {
                        order = self.topic_configs(&addr).await?.topic_config_table.get(topic).map(|t| t.order);
                    }
                }
            }
            (None, true) => {}
        }
        let (read, write) = (read.unwrap_or(1), write.unwrap_or(1));
        if write == 0 {
            return Err(Error::Usage("--queues must be at least 1".into()));
        }
        let header = CreateTopicRequestHeader {
            topic: topic.to_string(),
            default_topic: DEFAULT_TOPIC.to_string(),
            read_queue_nums: read as i32,
            write_queue_nums: write as i32,
            perm: perm_bits.unwrap_or(perm::READ | perm::WRITE),
            topic_filter_type: "SINGLE_TAG".to_string(),
            order: order.unwrap_or(false),
            topic_sys_flag: None,
            attributes: o.flush.map(|f| format!("+flush.mode={}", f.name())),
            force: None,
        };
        Ok(TopicChange { header, read, write })
    }

    /// The topic's route once it shows `expected` write queues in all, or as it is when
    /// `ROUTE_SETTLE_MAX_MS` have passed.
    async fn settled_route(&self, topic: &str, expected: i64) -> Result<Option<TopicRouteData>> {
        let deadline = Instant::now() + Duration::from_millis(ROUTE_SETTLE_MAX_MS);
        loop {
            let route = self.route(topic).await?;
            let shown: i64 = route.iter().flat_map(|r| &r.queue_datas).map(|q| i64::from(q.write_queue_nums)).sum();
            if shown == expected || Instant::now() >= deadline {
                return Ok(route);
            }
            glommio::timer::sleep(Duration::from_millis(ROUTE_SETTLE_POLL_MS)).await;
        }
    }

    pub(super) async fn topic_delete(&self, topic: &str) -> Result<Report> {
        let route = self.existing_route(topic).await?;
        let brokers: Vec<BrokerRef> = route
            .broker_datas
            .iter()
            .filter_map(|d| master_addr(d).map(|addr| BrokerRef { name: d.broker_name.clone(), addr }))
            .collect();
        let targets = one_per_process(&brokers);
        for b in &targets {
            let header = TopicRequestHeader { topic: topic.to_string() };
            self.call_ok(
                &b.addr,
                RemotingCommand::new_request(request::DELETE_TOPIC_IN_BROKER, header.to_ext_fields()),
            )
            .await?;
        }
        // The NameServer keeps a topic's queues until told: deleting on brokers alone
        // would leave a route to queues that no longer exist.
        let header = DeleteTopicFromNamesrvRequestHeader { topic: topic.to_string(), cluster_name: None };
        self.call_ok(
            &self.namesrv,
            RemotingCommand::new_request(request::DELETE_TOPIC_IN_NAMESRV, header.to_ext_fields()),
        )
        .await?;
        let processes: Vec<&str> = targets.iter().map(|b| process_name(&b.name)).collect();
        let gone = self.route(topic).await?.is_none();
        let mut text = format!("deleted topic `{topic}` from {} and the NameServer\n", processes.join(", "));
        if !gone {
            text.push_str("note: the NameServer still shows a route for it; a broker re-registered it meanwhile?\n");
        }
        Ok(Report {
            text,
            json: json!({ "topic": topic, "action": "deleted", "brokers": processes, "routeGone": gone }),
        })
    }

    /// The names `topic list` leaves out unless asked: Apache's system topics, and the
    /// topics brokers keep under their cluster's and their own names (the NameServer's
    /// system topic list, GET_SYSTEM_TOPIC_LIST_FROM_NS), with the process name of each
    /// Rockshard shard. rocketmq-dashboard hides the same ones.
    async fn system_topic_names(&self) -> Result<BTreeSet<String>> {
        let answer = self
            .call_ok(
                &self.namesrv,
                RemotingCommand::new_request(request::GET_SYSTEM_TOPIC_LIST_FROM_NS, ExtFields::new()),
            )
            .await?;
        let list: TopicList = decode_body(&self.namesrv, "system topic list", body::from_json(&answer.body))?;
        let mut names: BTreeSet<String> = APACHE_SYSTEM_TOPICS.iter().map(|t| t.to_string()).collect();
        names.insert(META_TOPIC.to_string());
        for name in &list.topic_list {
            names.insert(process_name(name).to_string());
            names.insert(name.clone());
        }
        Ok(names)
    }

    pub(super) async fn topic_list(&self, system: bool) -> Result<Report> {
        let answer = self
            .call_ok(
                &self.namesrv,
                RemotingCommand::new_request(request::GET_ALL_TOPIC_LIST_FROM_NAMESERVER, ExtFields::new()),
            )
            .await?;
        let list: TopicList = decode_body(&self.namesrv, "topic list", body::from_json(&answer.body))?;
        let info = self.cluster_info().await?;
        #[derive(Default)]
        struct Agg {
            read: i64,
            write: i64,
            perm: Option<i32>,
            flush: BTreeSet<String>,
            order: bool,
            brokers: usize,
        }
        let mut topics: BTreeMap<String, Agg> = list.topic_list.iter().map(|t| (t.clone(), Agg::default())).collect();
        let mut warnings = Vec::new();
        let mut brokers: Vec<BrokerRef> = info
            .broker_addr_table
            .values()
            .filter_map(|d| master_addr(d).map(|addr| BrokerRef { name: d.broker_name.clone(), addr }))
            .collect();
        brokers.sort();
        for b in &brokers {
            match self.topic_configs(&b.addr).await {
                Ok(w) => {
                    for (name, t) in w.topic_config_table {
                        let a = topics.entry(name).or_default();
                        a.read += i64::from(t.read_queue_nums);
                        a.write += i64::from(t.write_queue_nums);
                        a.perm.get_or_insert(t.perm);
                        a.flush.extend(t.attributes.get("flush.mode").cloned());
                        a.order |= t.order;
                        a.brokers += 1;
                    }
                }
                Err(e) => warnings.push(format!("{} ({}): {e}", b.name, b.addr)),
            }
        }
        let mut hidden = 0;
        if !system {
            let system_names = self.system_topic_names().await?;
            let before = topics.len();
            topics.retain(|name, _| !system_names.contains(name) && !name.starts_with(APACHE_SYSTEM_TOPIC_PREFIX));
            hidden = before - topics.len();
        }
        let mut table = Table::new(&["TOPIC", "WRITE QUEUES", "READ QUEUES", "PERM", "FLUSH", "ORDER", "BROKERS"]);
        let mut rows = Vec::new();
        for (name, a) in &topics {
            let flush = a.flush.iter().cloned().collect::<Vec<_>>().join("/");
            table.row(vec![
                name.clone(),
                a.write.to_string(),
                a.read.to_string(),
                a.perm.map_or("?".into(), perm_text),
                if flush.is_empty() { "?".into() } else { flush.clone() },
                a.order.to_string(),
                a.brokers.to_string(),
            ]);
            rows.push(json!({
                "topic": name, "writeQueues": a.write, "readQueues": a.read, "perm": a.perm,
                "flush": if flush.is_empty() { Value::Null } else { Value::from(flush) }, "order": a.order, "brokers": a.brokers,
            }));
        }
        let mut text = table.render();
        if hidden > 0 {
            let _ = writeln!(text, "({hidden} system topics not shown; --system lists them)");
        }
        for w in &warnings {
            let _ = writeln!(text, "warning: could not read topics of {w}");
        }
        Ok(Report { text, json: json!({ "topics": rows, "hiddenSystemTopics": hidden, "warnings": warnings }) })
    }

    pub(super) async fn topic_route(&self, topic: &str) -> Result<Report> {
        let route = self.existing_route(topic).await?;
        let mut table = Table::new(&["BROKER", "ADDRESS", "CLUSTER", "WRITE QUEUES", "READ QUEUES", "PERM"]);
        let mut queues = route.queue_datas.clone();
        queues.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
        for q in &queues {
            let data = route.broker_datas.iter().find(|d| d.broker_name == q.broker_name);
            table.row(vec![
                q.broker_name.clone(),
                data.and_then(master_addr).unwrap_or_else(|| "-".into()),
                data.map_or("-".into(), |d| d.cluster.clone()),
                q.write_queue_nums.to_string(),
                q.read_queue_nums.to_string(),
                perm_text(q.perm),
            ]);
        }
        let json = serde_json::from_slice(&body::to_json(&route).map_err(|e| Error::Usage(e.to_string()))?)
            .unwrap_or(Value::Null);
        Ok(Report { text: table.render(), json })
    }

    pub(super) async fn topic_status(&self, topic: &str) -> Result<Report> {
        let route = self.existing_route(topic).await?;
        let mut table = Table::new(&["BROKER", "QUEUE", "MIN OFFSET", "MAX OFFSET", "MESSAGES", "LAST STORED"]);
        let mut rows = Vec::new();
        let mut total = 0i64;
        for b in Self::route_brokers(&route) {
            let header = TopicRequestHeader { topic: topic.to_string() };
            let answer = self
                .call_ok(&b.addr, RemotingCommand::new_request(request::GET_TOPIC_STATS_INFO, header.to_ext_fields()))
                .await?;
            let stats = decode_body(&b.addr, "topic stats", TopicStatsTable::decode(&answer.body))?;
            for (mq, o) in stats.offset_table {
                let messages = o.max_offset - o.min_offset;
                total += messages;
                table.row(vec![
                    mq.broker_name.clone(),
                    mq.queue_id.to_string(),
                    o.min_offset.to_string(),
                    o.max_offset.to_string(),
                    messages.to_string(),
                    time_or_dash(o.last_update_timestamp),
                ]);
                rows.push(json!({
                    "brokerName": mq.broker_name, "queueId": mq.queue_id, "minOffset": o.min_offset,
                    "maxOffset": o.max_offset, "messages": messages, "lastUpdateTimestamp": o.last_update_timestamp,
                }));
            }
        }
        let mut text = table.render();
        let _ = writeln!(text, "{} queues, {total} messages", rows.len());
        Ok(Report { text, json: json!({ "topic": topic, "queues": rows, "messages": total }) })
    }
}

/// What a topic change sent: the header, and the queue totals as the command line (or
/// the topic's current state) gave them.
struct TopicChange {
    header: CreateTopicRequestHeader,
    read: u32,
    write: u32,
}

/// `topic create` / `topic update`'s report: the change, the flush modes the brokers
/// now show, and the route as the NameServer shows it (with a note while incomplete).
fn topic_change_report(
    topic: &str,
    cluster: &str,
    create: bool,
    change: &TopicChange,
    flush: &str,
    route: Option<&TopicRouteData>,
    expected: i64,
) -> Report {
    let TopicChange { header, read, write } = change;
    let verb = if create { "created" } else { "updated" };
    let mut text = format!(
        "{verb} topic `{topic}` in cluster {cluster}: {write} write / {read} read queues in all, perm {}, flush {}, {}\n",
        perm_text(header.perm),
        if flush.is_empty() { "?" } else { flush },
        if header.order { "ordered" } else { "not ordered" }
    );
    let queue_datas = route.map(|r| r.queue_datas.clone()).unwrap_or_default();
    let shown: i64 = queue_datas.iter().map(|q| i64::from(q.write_queue_nums)).sum();
    for q in &queue_datas {
        let _ = writeln!(text, "  {}: {} write / {} read queues", q.broker_name, q.write_queue_nums, q.read_queue_nums);
    }
    if shown != expected {
        let _ = writeln!(
            text,
            "note: the NameServer shows {shown} write queues, not yet the {expected} expected; brokers re-register within their interval"
        );
    }
    let json = json!({
        "topic": topic,
        "action": verb,
        "cluster": cluster,
        "readQueues": read,
        "writeQueues": write,
        "perm": header.perm,
        "order": header.order,
        "flush": flush,
        "route": queue_datas.iter().map(|q| json!({
            "brokerName": q.broker_name, "readQueues": q.read_queue_nums, "writeQueues": q.write_queue_nums, "perm": q.perm,
        })).collect::<Vec<_>>(),
        "routeComplete": shown == expected,
    });
    Report { text, json }
}
