//! `rockshard admin`: topics, routes, clusters, consumer progress and message lookup,
//! over the remoting protocol, against any RocketMQ-speaking NameServer and brokers.
//!
//! How it finds things: routes and the cluster list come from the NameServer
//! (`--namesrv`); everything else is asked of the brokers those name. A Rockshard
//! process shows up as one broker per shard (`<name>-s<i>`), so per-queue questions
//! (status, consumer progress, offset resets) go to every shard in the topic's route,
//! while topic creation and deletion go to one shard per process, which applies the
//! change to all its shards. Brokers without the `-s<i>` suffix (a Java broker) are
//! each their own process.
//!
//! Output: aligned tables for people, `--json` for machines. Errors are one line on
//! stderr naming what failed and who said so; the exit status is 2 for a mistake in the
//! command (bad value, unknown topic or group), 1 for anything else.
//!
//! Threading: one glommio executor on the calling thread; requests go out one at a time
//! (admin traffic is small). Every wait is bounded by `--timeout-ms`.
//!
//! Deliberately not here: looking messages up by key (the broker keeps no key index),
//! and retrying failed requests (an admin command reports what happened and stops).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Subcommand, ValueEnum};
use rockshard_net::body::{
    self, ClusterInfo, ConsumeStats, ConsumerConnection, KVTable, ResetOffsetBody, TopicConfigSerializeWrapper,
    TopicList, TopicRouteData, TopicStatsTable,
};
use rockshard_net::code::{perm, request, response};
use rockshard_net::command::ExtFields;
use rockshard_net::headers::{
    CommandHeader, ConsumerGroupRequestHeader, CreateTopicRequestHeader, DeleteTopicFromNamesrvRequestHeader,
    GetConsumeStatsRequestHeader, GetRouteInfoRequestHeader, ResetOffsetRequestHeader, TopicRequestHeader,
    ViewMessageRequestHeader,
};
use rockshard_net::rockshard::{StatusBody, META_TOPIC, RAFT_STATUS};
use rockshard_net::stored::{self, sys_flag, Record};
use rockshard_net::{msgid, properties, RemotingCommand};
use serde_json::{json, Value};

use crate::remoting::client::Client;
use crate::{Error, Result};

/// A TCP connect that takes longer than this is a broker that is not there.
const CONNECT_TIMEOUT_MS: u64 = 3_000;
/// How long to wait for each answer unless `--timeout-ms` says otherwise: above a
/// broker's sync-flush timeout (5 s), so a slow topic change still gets its answer.
const REQUEST_TIMEOUT_DEFAULT_MS: u64 = 8_000;
/// How long a topic change may take to show in the NameServer's route before we say
/// it has not yet: brokers re-register at once on a change, so a second is plenty.
const ROUTE_SETTLE_MAX_MS: u64 = 5_000;
const ROUTE_SETTLE_POLL_MS: u64 = 100;
/// Bytes of a message body `message view` shows.
const BODY_PREVIEW_BYTES: usize = 512;
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

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// NameServer to ask for routes and clusters, `host:port`
    #[arg(long, global = true, default_value = "127.0.0.1:9876")]
    namesrv: String,
    /// Print JSON instead of tables
    #[arg(long, global = true)]
    json: bool,
    /// How long to wait for each answer, in milliseconds
    #[arg(long, global = true, default_value_t = REQUEST_TIMEOUT_DEFAULT_MS)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create, change, delete and inspect topics
    Topic {
        #[command(subcommand)]
        command: TopicCommand,
    },
    /// The brokers the NameServer knows
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Consumer group progress and offsets
    Consumer {
        #[command(subcommand)]
        command: ConsumerCommand,
    },
    /// Look stored messages up
    Message {
        #[command(subcommand)]
        command: MessageCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic on every broker of a cluster (fails if it exists)
    Create(TopicCreateArgs),
    /// Change an existing topic; options not given keep their current value
    Update(TopicUpdateArgs),
    /// Delete a topic from its brokers and from the NameServer
    Delete {
        #[arg(long)]
        topic: String,
    },
    /// Every topic the NameServer knows, with queue counts and flush mode
    List {
        /// Also list the brokers' own topics (TBW102, SCHEDULE_TOPIC_XXXX,
        /// SELF_TEST_TOPIC, cluster and broker names), left out by default
        #[arg(long)]
        system: bool,
    },
    /// Which brokers serve a topic, and their queues
    Route {
        #[arg(long)]
        topic: String,
    },
    /// Min and max offset of every queue of a topic
    Status {
        #[arg(long)]
        topic: String,
    },
}

#[derive(Debug, clap::Args)]
struct TopicCreateArgs {
    #[arg(long)]
    topic: String,
    /// Queues per broker process, spread over its shards
    #[arg(long)]
    queues: u32,
    #[command(flatten)]
    options: TopicOptions,
}

#[derive(Debug, clap::Args)]
struct TopicUpdateArgs {
    #[arg(long)]
    topic: String,
    /// Queues per broker process, spread over its shards [default: unchanged]
    #[arg(long)]
    queues: Option<u32>,
    #[command(flatten)]
    options: TopicOptions,
}

#[derive(Debug, clap::Args)]
struct TopicOptions {
    /// When a send is answered: `sync` after fdatasync, `async` once in the page cache
    /// [default: the broker's default for a new topic, unchanged for an update]
    #[arg(long, value_enum)]
    flush: Option<FlushArg>,
    /// Permission: `rw`, `r` (no sends) or `w` (no consumption) [default: rw, or unchanged]
    #[arg(long, value_enum)]
    perm: Option<PermArg>,
    /// Ordered topic (`--order` or `--order=false`) [default: false, or unchanged]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    order: Option<bool>,
    /// Cluster to create the topic in [default: the only cluster]
    #[arg(long)]
    cluster: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FlushArg {
    Sync,
    Async,
}

impl FlushArg {
    fn name(self) -> &'static str {
        match self {
            FlushArg::Sync => "sync",
            FlushArg::Async => "async",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PermArg {
    Rw,
    R,
    W,
}

impl PermArg {
    fn bits(self) -> i32 {
        match self {
            PermArg::Rw => perm::READ | perm::WRITE,
            PermArg::R => perm::READ,
            PermArg::W => perm::WRITE,
        }
    }
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Every broker of every cluster, with its address and store figures
    List,
    /// Replicated groups: each shard group's leader, term, commit index, and each
    /// follower's lag, as every registered node sees it
    Status,
}

#[derive(Debug, Subcommand)]
enum ConsumerCommand {
    /// The clients of a consumer group connected to each broker, and its subscriptions
    Connections {
        #[arg(long)]
        group: String,
    },
    /// Per queue: the queue's end, the group's committed offset and the lag
    Progress {
        #[arg(long)]
        group: String,
        /// Only this topic [default: every topic the group committed offsets for]
        #[arg(long)]
        topic: Option<String>,
    },
    /// Move a group's committed offsets to the first message stored at or after a time
    ResetOffset {
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
        /// Milliseconds since the epoch, or ISO 8601 (`2024-05-01T12:00:00Z`; no zone = UTC)
        #[arg(long)]
        timestamp: String,
    },
}

#[derive(Debug, Subcommand)]
enum MessageCommand {
    /// Show a message by its offset message id (what a send returns as msgId)
    View {
        #[arg(long)]
        id: String,
    },
}

/// Runs one admin command; prints its result; the exit status says how it went.
pub fn run(args: AdminArgs) -> ExitCode {
    let executor = match glommio::LocalExecutorBuilder::default().make() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("rockshard admin: cannot start an io_uring executor: {e}");
            return ExitCode::FAILURE;
        }
    };
    executor.run(async move {
        let admin = Admin::new(&args);
        let result = admin.execute(&args.command).await;
        admin.close().await;
        match result {
            Ok(report) => {
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&report.json).unwrap_or_else(|e| e.to_string()));
                } else {
                    print!("{}", report.text);
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("rockshard admin: {e}");
                match e {
                    Error::Usage(_) => ExitCode::from(2),
                    _ => ExitCode::FAILURE,
                }
            }
        }
    })
}

/// What a command found: text for people, JSON for machines.
struct Report {
    text: String,
    json: Value,
}

/// A broker as routes and cluster info name it: its name and master address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct BrokerRef {
    name: String,
    addr: String,
}

/// The process a broker name belongs to: `<name>-s<i>` is shard i of `<name>`.
fn process_name(broker_name: &str) -> &str {
    match broker_name.rsplit_once("-s") {
        Some((base, shard)) if !base.is_empty() && !shard.is_empty() && shard.bytes().all(|b| b.is_ascii_digit()) => {
            base
        }
        _ => broker_name,
    }
}

/// One broker per process: the lowest-numbered shard of each.
fn one_per_process(brokers: &[BrokerRef]) -> Vec<BrokerRef> {
    let mut picked: BTreeMap<&str, &BrokerRef> = BTreeMap::new();
    for b in brokers {
        let key = process_name(&b.name);
        let better = picked.get(key).is_none_or(|cur| shard_number(&b.name) < shard_number(&cur.name));
        if better {
            picked.insert(key, b);
        }
    }
    picked.into_values().cloned().collect()
}

fn shard_number(broker_name: &str) -> u64 {
    broker_name.rsplit_once("-s").and_then(|(_, n)| n.parse().ok()).unwrap_or(0)
}

/// The master address of a broker group, if it has one.
fn master_addr(data: &body::BrokerData) -> Option<String> {
    data.broker_addrs.get(&0).cloned()
}

fn perm_text(bits: i32) -> String {
    let mut s = String::new();
    if bits & perm::READ != 0 {
        s.push('r');
    }
    if bits & perm::WRITE != 0 {
        s.push('w');
    }
    if s.is_empty() {
        s.push('-');
    }
    if bits & perm::INHERIT != 0 {
        s.push_str("+inherit");
    }
    s
}

struct Admin {
    namesrv: String,
    timeout: Duration,
    clients: RefCell<HashMap<String, Client>>,
}

impl Admin {
    fn new(args: &AdminArgs) -> Admin {
        Admin {
            namesrv: args.namesrv.clone(),
            timeout: Duration::from_millis(args.timeout_ms.max(1)),
            clients: RefCell::new(HashMap::new()),
        }
    }

    async fn close(&self) {
        let clients: Vec<Client> = self.clients.borrow_mut().drain().map(|(_, c)| c).collect();
        for c in clients {
            c.close().await;
        }
    }

    async fn client(&self, addr: &str) -> Result<Client> {
        let cached = self.clients.borrow().get(addr).filter(|c| !c.is_closed()).cloned();
        if let Some(c) = cached {
            return Ok(c);
        }
        let c = Client::connect(addr, Duration::from_millis(CONNECT_TIMEOUT_MS)).await?;
        self.clients.borrow_mut().insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Sends a request and returns the answer whatever its code.
    async fn call(&self, addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand> {
        self.client(addr).await?.request(cmd, self.timeout).await
    }

    /// Sends a request; an answer other than SUCCESS is an error naming the code.
    async fn call_ok(&self, addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand> {
        let answer = self.call(addr, cmd).await?;
        if answer.code == response::SUCCESS {
            Ok(answer)
        } else {
            Err(remote_error(addr, &answer))
        }
    }

    async fn cluster_info(&self) -> Result<ClusterInfo> {
        let answer = self
            .call_ok(&self.namesrv, RemotingCommand::new_request(request::GET_BROKER_CLUSTER_INFO, ExtFields::new()))
            .await?;
        decode_body(&self.namesrv, "cluster info", body::from_json(&answer.body))
    }

    /// The topic's route, or `None` when the NameServer does not know it.
    async fn route(&self, topic: &str) -> Result<Option<TopicRouteData>> {
        let header = GetRouteInfoRequestHeader { topic: topic.to_string(), accept_standard_json_only: Some(true) };
        let cmd = RemotingCommand::new_request(request::GET_ROUTEINFO_BY_TOPIC, header.to_ext_fields());
        let answer = self.call(&self.namesrv, cmd).await?;
        match answer.code {
            response::SUCCESS => decode_body(&self.namesrv, "route", body::from_json(&answer.body)).map(Some),
            response::TOPIC_NOT_EXIST => Ok(None),
            _ => Err(remote_error(&self.namesrv, &answer)),
        }
    }

    async fn existing_route(&self, topic: &str) -> Result<TopicRouteData> {
        self.route(topic).await?.ok_or_else(|| {
            Error::Usage(format!(
                "topic `{topic}` does not exist (the NameServer at {} has no route for it)",
                self.namesrv
            ))
        })
    }

    /// This broker's topic table (its share of each topic's queues).
    async fn topic_configs(&self, addr: &str) -> Result<TopicConfigSerializeWrapper> {
        let answer =
            self.call_ok(addr, RemotingCommand::new_request(request::GET_ALL_TOPIC_CONFIG, ExtFields::new())).await?;
        decode_body(addr, "topic configs", body::from_json(&answer.body))
    }

    async fn execute(&self, command: &AdminCommand) -> Result<Report> {
        match command {
            AdminCommand::Topic { command } => match command {
                TopicCommand::Create(a) => self.topic_create(&a.topic, Some(a.queues), &a.options, true).await,
                TopicCommand::Update(a) => self.topic_create(&a.topic, a.queues, &a.options, false).await,
                TopicCommand::Delete { topic } => self.topic_delete(topic).await,
                TopicCommand::List { system } => self.topic_list(*system).await,
                TopicCommand::Route { topic } => self.topic_route(topic).await,
                TopicCommand::Status { topic } => self.topic_status(topic).await,
            },
            AdminCommand::Cluster { command: ClusterCommand::List } => self.cluster_list().await,
            AdminCommand::Cluster { command: ClusterCommand::Status } => self.cluster_status().await,
            AdminCommand::Consumer { command } => match command {
                ConsumerCommand::Connections { group } => self.consumer_connections(group).await,
                ConsumerCommand::Progress { group, topic } => self.consumer_progress(group, topic.as_deref()).await,
                ConsumerCommand::ResetOffset { group, topic, timestamp } => {
                    let ms = parse_time(timestamp).map_err(Error::Usage)?;
                    self.reset_offset(group, topic, ms).await
                }
            },
            AdminCommand::Message { command: MessageCommand::View { id } } => self.message_view(id).await,
        }
    }

    /// The brokers of the cluster topic changes go to: `--cluster`, or the only one.
    fn cluster_brokers(&self, info: &ClusterInfo, wanted: Option<&str>) -> Result<(String, Vec<BrokerRef>)> {
        let name = match wanted {
            Some(c) => c.to_string(),
            None => match info.cluster_addr_table.keys().collect::<Vec<_>>().as_slice() {
                [only] => (*only).clone(),
                [] => return Err(Error::Usage(format!("the NameServer at {} knows no broker yet", self.namesrv))),
                many => {
                    let names: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
                    return Err(Error::Usage(format!(
                        "there are several clusters ({}); pick one with --cluster",
                        names.join(", ")
                    )));
                }
            },
        };
        let Some(names) = info.cluster_addr_table.get(&name) else {
            let known: Vec<&str> = info.cluster_addr_table.keys().map(String::as_str).collect();
            return Err(Error::Usage(format!("no cluster `{name}`; the NameServer knows: {}", known.join(", "))));
        };
        let mut brokers: Vec<BrokerRef> = names
            .iter()
            .filter_map(|n| info.broker_addr_table.get(n))
            .filter_map(|d| master_addr(d).map(|addr| BrokerRef { name: d.broker_name.clone(), addr }))
            .collect();
        brokers.sort();
        if brokers.is_empty() {
            return Err(Error::Usage(format!("cluster `{name}` has no master broker registered")));
        }
        Ok((name, brokers))
    }

    /// `topic create` (`create` = true) and `topic update`.
    async fn topic_create(&self, topic: &str, queues: Option<u32>, o: &TopicOptions, create: bool) -> Result<Report> {
        let info = self.cluster_info().await?;
        let (cluster, brokers) = self.cluster_brokers(&info, o.cluster.as_deref())?;
        let targets = one_per_process(&brokers);
        let route = self.route(topic).await?;
        // What an update keeps: the current totals per process, perm and order.
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
        for b in &targets {
            let cmd = RemotingCommand::new_request(request::UPDATE_AND_CREATE_TOPIC, header.to_ext_fields());
            self.call_ok(&b.addr, cmd).await?;
        }
        // The brokers re-register at once; wait (bounded) until the route shows it all.
        let expected = write as i64 * targets.len() as i64;
        let deadline = Instant::now() + Duration::from_millis(ROUTE_SETTLE_MAX_MS);
        let route = loop {
            let route = self.route(topic).await?;
            let shown: i64 = route.iter().flat_map(|r| &r.queue_datas).map(|q| i64::from(q.write_queue_nums)).sum();
            if shown == expected || Instant::now() >= deadline {
                break route;
            }
            glommio::timer::sleep(Duration::from_millis(ROUTE_SETTLE_POLL_MS)).await;
        };
        let mut flush_modes = BTreeSet::new();
        for b in &targets {
            if let Some(t) = self.topic_configs(&b.addr).await?.topic_config_table.get(topic) {
                flush_modes.extend(t.attributes.get("flush.mode").cloned());
            }
        }
        let flush = flush_modes.into_iter().collect::<Vec<_>>().join("/");
        let verb = if create { "created" } else { "updated" };
        let mut text = format!(
            "{verb} topic `{topic}` in cluster {cluster}: {write} write / {read} read queues in all, perm {}, flush {}, {}\n",
            perm_text(header.perm),
            if flush.is_empty() { "?" } else { &flush },
            if header.order { "ordered" } else { "not ordered" }
        );
        let queue_datas = route.as_ref().map(|r| r.queue_datas.clone()).unwrap_or_default();
        let shown: i64 = queue_datas.iter().map(|q| i64::from(q.write_queue_nums)).sum();
        for q in &queue_datas {
            let _ =
                writeln!(text, "  {}: {} write / {} read queues", q.broker_name, q.write_queue_nums, q.read_queue_nums);
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
        Ok(Report { text, json })
    }

    async fn topic_delete(&self, topic: &str) -> Result<Report> {
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

    async fn topic_list(&self, system: bool) -> Result<Report> {
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

    async fn topic_route(&self, topic: &str) -> Result<Report> {
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

    /// Every (broker, address) serving `route`'s queues.
    fn route_brokers(route: &TopicRouteData) -> Vec<BrokerRef> {
        let mut brokers: Vec<BrokerRef> = route
            .queue_datas
            .iter()
            .filter_map(|q| route.broker_datas.iter().find(|d| d.broker_name == q.broker_name))
            .filter_map(|d| master_addr(d).map(|addr| BrokerRef { name: d.broker_name.clone(), addr }))
            .collect();
        brokers.sort();
        brokers.dedup();
        brokers
    }

    async fn topic_status(&self, topic: &str) -> Result<Report> {
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

    async fn cluster_list(&self) -> Result<Report> {
        let info = self.cluster_info().await?;
        let mut table = Table::new(&[
            "CLUSTER",
            "BROKER",
            "ID",
            "ADDRESS",
            "VERSION",
            "TOPICS",
            "QUEUES",
            "MESSAGES",
            "COMMITLOG BYTES",
        ]);
        let mut rows = Vec::new();
        for (cluster, names) in &info.cluster_addr_table {
            let mut names = names.clone();
            names.sort();
            for name in names {
                let Some(data) = info.broker_addr_table.get(&name) else { continue };
                for (id, addr) in &data.broker_addrs {
                    let runtime = self
                        .call_ok(addr, RemotingCommand::new_request(request::GET_BROKER_RUNTIME_INFO, ExtFields::new()))
                        .await
                        .and_then(|a| decode_body(addr, "runtime info", body::from_json::<KVTable>(&a.body)));
                    let (cells, status) = match &runtime {
                        Ok(kv) => {
                            let get = |k: &str| kv.table.get(k).cloned().unwrap_or_else(|| "-".into());
                            let bytes = match (kv.table.get("commitLogMaxOffset"), kv.table.get("commitLogMinOffset")) {
                                (Some(max), Some(min)) => match (max.parse::<i64>(), min.parse::<i64>()) {
                                    (Ok(max), Ok(min)) => (max - min).to_string(),
                                    _ => "-".into(),
                                },
                                _ => "-".into(),
                            };
                            (
                                vec![
                                    get("brokerVersionDesc"),
                                    get("topicCount"),
                                    get("queueCount"),
                                    get("messagesInQueues"),
                                    bytes,
                                ],
                                Value::Null,
                            )
                        }
                        Err(e) => (
                            vec![format!("unreachable: {e}"), "-".into(), "-".into(), "-".into(), "-".into()],
                            Value::from(e.to_string()),
                        ),
                    };
                    let mut row = vec![cluster.clone(), name.clone(), id.to_string(), addr.clone()];
                    row.extend(cells);
                    table.row(row);
                    rows.push(json!({
                        "cluster": cluster, "brokerName": name, "brokerId": id, "addr": addr,
                        "runtime": runtime.as_ref().map(|kv| json!(kv.table)).unwrap_or(Value::Null), "error": status,
                    }));
                }
            }
        }
        Ok(Report { text: table.render(), json: json!({ "brokers": rows }) })
    }

    /// Asks every registered address of every broker for its Raft status.
    async fn cluster_status(&self) -> Result<Report> {
        let info = self.cluster_info().await?;
        let mut table = Table::new(&[
            "BROKER",
            "ID",
            "ADDRESS",
            "NODE",
            "ROLE",
            "TERM",
            "LEADER",
            "COMMIT",
            "APPLIED",
            "LAST",
            "FOLLOWERS",
        ]);
        let mut rows = Vec::new();
        let mut names: Vec<&String> = info.broker_addr_table.keys().collect();
        names.sort();
        for name in names {
            let data = &info.broker_addr_table[name];
            for (id, addr) in &data.broker_addrs {
                let cmd = RemotingCommand::new_request(RAFT_STATUS, ExtFields::new());
                let status = self.call_ok(addr, cmd).await.and_then(|a| {
                    serde_json::from_slice::<StatusBody>(&a.body).map_err(|e| Error::Remote {
                        peer: addr.clone(),
                        code: response::SUCCESS,
                        remark: format!("its raft status body does not decode: {e}"),
                    })
                });
                match &status {
                    Ok(b) => {
                        let node = |id: u64| b.peers.get(id as usize - 1).cloned().unwrap_or_else(|| format!("#{id}"));
                        let st = &b.status;
                        let followers: Vec<String> = st
                            .progress
                            .iter()
                            .filter(|p| p.id != st.id)
                            .map(|p| format!("{} lag {} ({})", node(p.id), p.lag, p.state))
                            .collect();
                        table.row(vec![
                            name.clone(),
                            id.to_string(),
                            addr.clone(),
                            b.node.clone(),
                            st.stopped.as_ref().map_or(st.role.clone(), |why| format!("stopped: {why}")),
                            st.term.to_string(),
                            st.leader.map_or("-".into(), node),
                            st.commit.to_string(),
                            st.applied.to_string(),
                            st.last_index.to_string(),
                            if followers.is_empty() { "-".into() } else { followers.join(", ") },
                        ]);
                    }
                    Err(e) => {
                        let mut row = vec![name.clone(), id.to_string(), addr.clone()];
                        row.push(format!("no status: {e}"));
                        row.extend(std::iter::repeat_n("-".to_string(), 7));
                        table.row(row);
                    }
                }
                rows.push(json!({
                    "brokerName": name, "brokerId": id, "addr": addr,
                    "raft": status.as_ref().map(|b| json!(b)).unwrap_or(Value::Null),
                    "error": status.as_ref().err().map(|e| e.to_string()),
                }));
            }
        }
        Ok(Report { text: table.render(), json: json!({ "brokers": rows }) })
    }

    /// Every master broker the NameServer knows, sorted by name.
    async fn all_brokers(&self) -> Result<Vec<BrokerRef>> {
        let info = self.cluster_info().await?;
        let mut all: Vec<BrokerRef> = info
            .broker_addr_table
            .values()
            .filter_map(|d| master_addr(d).map(|addr| BrokerRef { name: d.broker_name.clone(), addr }))
            .collect();
        all.sort();
        Ok(all)
    }

    async fn consumer_connections(&self, group: &str) -> Result<Report> {
        let brokers = self.all_brokers().await?;
        let mut table = Table::new(&["BROKER", "CLIENT ID", "CLIENT ADDRESS", "LANGUAGE", "VERSION"]);
        let mut rows = Vec::new();
        let mut subscriptions = BTreeMap::new();
        let mut kind = None;
        for b in &brokers {
            let header = ConsumerGroupRequestHeader { consumer_group: group.to_string() };
            let cmd = RemotingCommand::new_request(request::GET_CONSUMER_CONNECTION_LIST, header.to_ext_fields());
            let answer = self.call(&b.addr, cmd).await?;
            match answer.code {
                response::SUCCESS => {}
                // Not every broker sees every group: clients heartbeat to the brokers of
                // the topics they use.
                response::CONSUMER_NOT_ONLINE => continue,
                _ => return Err(remote_error(&b.addr, &answer)),
            }
            let body: ConsumerConnection = decode_body(&b.addr, "consumer connections", body::from_json(&answer.body))?;
            kind.get_or_insert((body.consume_type, body.message_model, body.consume_from_where));
            for c in &body.connection_set {
                table.row(vec![
                    b.name.clone(),
                    c.client_id.clone(),
                    c.client_addr.clone(),
                    c.language.clone(),
                    c.version.to_string(),
                ]);
                rows.push(json!({
                    "brokerName": b.name, "clientId": c.client_id, "clientAddr": c.client_addr,
                    "language": c.language, "version": c.version,
                }));
            }
            for (topic, sub) in body.subscription_table {
                subscriptions.entry(topic).or_insert(sub.sub_string);
            }
        }
        let Some((consume_type, model, from_where)) = kind else {
            return Err(Error::Usage(format!(
                "consumer group `{group}` is not online on any of {} broker(s)",
                brokers.len()
            )));
        };
        let mut text = table.render();
        let _ = writeln!(
            text,
            "consume type {}, message model {}, consume from {}",
            enum_name(&consume_type),
            enum_name(&model),
            enum_name(&from_where)
        );
        for (topic, expression) in &subscriptions {
            let _ = writeln!(text, "subscribes {topic}: {expression}");
        }
        Ok(Report {
            text,
            json: json!({
                "group": group, "connections": rows, "subscriptions": subscriptions,
                "consumeType": consume_type, "messageModel": model, "consumeFromWhere": from_where,
            }),
        })
    }

    async fn consumer_progress(&self, group: &str, topic: Option<&str>) -> Result<Report> {
        let brokers = match topic {
            Some(t) => Self::route_brokers(&self.existing_route(t).await?),
            None => self.all_brokers().await?,
        };
        let mut table =
            Table::new(&["TOPIC", "BROKER", "QUEUE", "BROKER OFFSET", "CONSUMER OFFSET", "LAG", "LAST CONSUMED"]);
        let mut rows = Vec::new();
        let mut entries = Vec::new();
        for b in &brokers {
            let header =
                GetConsumeStatsRequestHeader { consumer_group: group.to_string(), topic: topic.map(str::to_string) };
            let answer = self
                .call_ok(&b.addr, RemotingCommand::new_request(request::GET_CONSUME_STATS, header.to_ext_fields()))
                .await?;
            let stats = decode_body(&b.addr, "consume stats", ConsumeStats::decode(&answer.body))?;
            entries.extend(stats.offset_table);
        }
        entries.sort_by(|(a, _), (b, _)| {
            (&a.topic, &a.broker_name, a.queue_id).cmp(&(&b.topic, &b.broker_name, b.queue_id))
        });
        let mut total_lag = 0i64;
        for (mq, o) in &entries {
            let lag = (o.broker_offset - o.consumer_offset).max(0);
            total_lag += lag;
            table.row(vec![
                mq.topic.clone(),
                mq.broker_name.clone(),
                mq.queue_id.to_string(),
                o.broker_offset.to_string(),
                o.consumer_offset.to_string(),
                lag.to_string(),
                time_or_dash(o.last_timestamp),
            ]);
            rows.push(json!({
                "topic": mq.topic, "brokerName": mq.broker_name, "queueId": mq.queue_id, "brokerOffset": o.broker_offset,
                "consumerOffset": o.consumer_offset, "lag": lag, "lastTimestamp": o.last_timestamp,
            }));
        }
        if entries.is_empty() {
            return Err(Error::Usage(format!(
                "consumer group `{group}` has committed no offset on any of {} broker(s){}",
                brokers.len(),
                topic.map(|t| format!(" for topic `{t}`")).unwrap_or_default()
            )));
        }
        let mut text = table.render();
        let _ = writeln!(text, "total lag: {total_lag}");
        Ok(Report { text, json: json!({ "group": group, "queues": rows, "totalLag": total_lag }) })
    }

    async fn reset_offset(&self, group: &str, topic: &str, time_ms: i64) -> Result<Report> {
        let route = self.existing_route(topic).await?;
        let mut table = Table::new(&["TOPIC", "BROKER", "QUEUE", "NEW OFFSET"]);
        let mut rows = Vec::new();
        for b in Self::route_brokers(&route) {
            let header = ResetOffsetRequestHeader {
                topic: topic.to_string(),
                group: group.to_string(),
                queue_id: None,
                offset: None,
                timestamp_ms: time_ms,
                is_force: true,
            };
            let cmd = RemotingCommand::new_request(request::INVOKE_BROKER_TO_RESET_OFFSET, header.to_ext_fields());
            let answer = self.call_ok(&b.addr, cmd).await?;
            let reset = decode_body(&b.addr, "reset offsets", ResetOffsetBody::decode(&answer.body))?;
            for (mq, offset) in reset.offset_table {
                table.row(vec![mq.topic.clone(), mq.broker_name.clone(), mq.queue_id.to_string(), offset.to_string()]);
                rows.push(json!({ "topic": mq.topic, "brokerName": mq.broker_name, "queueId": mq.queue_id, "offset": offset }));
            }
        }
        let mut text = format!("reset group `{group}` on topic `{topic}` to {} ({time_ms} ms)\n", format_time(time_ms));
        text.push_str(&table.render());
        text.push_str(
            "running consumers of the group were told (RESET_CONSUMER_CLIENT_OFFSET) and move to these offsets\n",
        );
        Ok(Report { text, json: json!({ "group": group, "topic": topic, "timestamp": time_ms, "queues": rows }) })
    }

    async fn message_view(&self, id: &str) -> Result<Report> {
        let (host, offset) = msgid::decode(id.trim()).map_err(|e| {
            Error::Usage(format!("{e}; `message view` takes the offset message id a send returns (msgId)"))
        })?;
        let addr = host.to_string();
        let header = ViewMessageRequestHeader { offset, topic: None };
        let cmd = RemotingCommand::new_request(request::VIEW_MESSAGE_BY_ID, header.to_ext_fields());
        let answer = match self.call(&addr, cmd).await {
            Ok(a) => a,
            Err(e @ (Error::Io { .. } | Error::Timeout { .. } | Error::Closed { .. })) => {
                return Err(Error::Usage(format!(
                    "message id {id} names broker {addr}, offset {offset}, which did not answer ({e}); is this an \
                     offset message id? A client-side id (UNIQ_KEY) cannot be looked up: the broker keeps no key index"
                )))
            }
            Err(e) => return Err(e),
        };
        if answer.code != response::SUCCESS {
            return Err(remote_error(&addr, &answer));
        }
        let view = match stored::decode(&answer.body) {
            Ok(Some(Record::Message(view))) => view,
            Ok(_) => return Err(Error::Usage(format!("{addr} returned no whole message record for offset {offset}"))),
            Err(e) => return Err(Error::Protocol { peer: addr, source: e }),
        };
        Ok(describe_message(id, &view))
    }
}

/// `message view`'s report for one decoded record.
fn describe_message(id: &str, view: &stored::MessageView<'_>) -> Report {
    let h = &view.header;
    let topic = String::from_utf8_lossy(view.topic).into_owned();
    let props: Vec<(String, String)> =
        properties::iter(view.properties).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let compressed = h.sys_flag & sys_flag::COMPRESSED != 0;
    let text_body =
        std::str::from_utf8(view.body).ok().filter(|s| !s.chars().any(|c| c.is_control() && !c.is_whitespace()));
    let mut fields = Table::new(&["FIELD", "VALUE"]);
    let mut add = |k: &str, v: String| fields.row(vec![k.to_string(), v]);
    add("msgId", id.to_string());
    add("topic", topic.clone());
    add("queueId", h.queue_id.to_string());
    add("queueOffset", h.queue_offset.to_string());
    add("physicalOffset", h.physical_offset.to_string());
    add("storeHost", h.store_host.to_string());
    add("storeTime", format!("{} ({})", format_time(h.store_timestamp_ms), h.store_timestamp_ms));
    add("bornHost", h.born_host.to_string());
    add("bornTime", format!("{} ({})", format_time(h.born_timestamp_ms), h.born_timestamp_ms));
    add("sysFlag", format!("{:#x}{}", h.sys_flag, if compressed { " (compressed body)" } else { "" }));
    add("flag", h.flag.to_string());
    add("reconsumeTimes", h.reconsume_times.to_string());
    add("preparedTransactionOffset", h.prepared_transaction_offset.to_string());
    add("bodyCrc", if view.body_crc_matches() { "ok".into() } else { "MISMATCH".into() });
    add("bodySize", view.body.len().to_string());
    for (k, v) in &props {
        add(&format!("property {k}"), v.clone());
    }
    let mut text = fields.render();
    let preview = &view.body[..view.body.len().min(BODY_PREVIEW_BYTES)];
    let more = if view.body.len() > preview.len() {
        format!(" … ({} more bytes)", view.body.len() - preview.len())
    } else {
        String::new()
    };
    match text_body {
        Some(s) if !compressed => {
            let cut = s.char_indices().map(|(i, _)| i).take_while(|&i| i <= BODY_PREVIEW_BYTES).last().unwrap_or(0);
            let shown = if s.len() <= BODY_PREVIEW_BYTES { s } else { &s[..cut] };
            let _ = writeln!(text, "body:\n{shown}{more}");
        }
        _ => {
            let _ = writeln!(text, "body (hex):\n{}{more}", hex(preview));
        }
    }
    let json = json!({
        "msgId": id, "topic": topic, "queueId": h.queue_id, "queueOffset": h.queue_offset, "physicalOffset": h.physical_offset,
        "storeHost": h.store_host.to_string(), "storeTimestamp": h.store_timestamp_ms, "bornHost": h.born_host.to_string(),
        "bornTimestamp": h.born_timestamp_ms, "sysFlag": h.sys_flag, "flag": h.flag, "reconsumeTimes": h.reconsume_times,
        "preparedTransactionOffset": h.prepared_transaction_offset, "bodyCrcOk": view.body_crc_matches(),
        "bodySize": view.body.len(), "properties": props.iter().cloned().collect::<BTreeMap<_, _>>(),
        "bodyText": text_body.filter(|_| !compressed), "bodyHex": if text_body.is_some() && !compressed { Value::Null } else { Value::from(hex(view.body)) },
    });
    Report { text, json }
}

/// The wire name of one of the body enums (`CONSUME_PASSIVELY`, `CLUSTERING`).
fn enum_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => "?".into(),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A failure answer as an error: who answered, the code with Java's name, the remark.
fn remote_error(peer: &str, answer: &RemotingCommand) -> Error {
    let name = response::name(answer.code).unwrap_or("unknown code");
    let remark = answer.remark.as_deref().map(str::trim).filter(|r| !r.is_empty()).unwrap_or("(no remark)");
    Error::Remote { peer: peer.to_string(), code: answer.code, remark: format!("{name}: {remark}") }
}

fn decode_body<T>(peer: &str, what: &str, decoded: std::result::Result<T, rockshard_net::Error>) -> Result<T> {
    decoded.map_err(|e| Error::Remote {
        peer: peer.to_string(),
        code: response::SUCCESS,
        remark: format!("its {what} body does not decode: {e}"),
    })
}

/// A table whose columns line up; numbers right-aligned.
struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self) -> String {
        let columns = self.headers.len();
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .chain(std::iter::once(&self.headers[i]))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let numeric: Vec<bool> = (0..columns)
            .map(|i| {
                !self.rows.is_empty()
                    && self.rows.iter().all(|r| r.get(i).is_some_and(|c| c.parse::<i64>().is_ok() || c == "-"))
            })
            .collect();
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut l = String::new();
            for (i, cell) in cells.iter().enumerate().take(columns) {
                let pad = widths[i].saturating_sub(cell.chars().count());
                let last = i + 1 == columns;
                if numeric[i] {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(cell);
                } else {
                    l.push_str(cell);
                    if !last {
                        l.push_str(&" ".repeat(pad));
                    }
                }
                if !last {
                    l.push_str("  ");
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&self.headers);
        for r in &self.rows {
            line(r);
        }
        out
    }
}

fn time_or_dash(ms: i64) -> String {
    if ms <= 0 {
        "-".into()
    } else {
        format_time(ms)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Milliseconds since the epoch as ISO 8601 UTC with milliseconds.
fn format_time(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// Milliseconds since the epoch, or ISO 8601: `YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z|±HH:MM]`.
/// A time without a zone is UTC.
fn parse_time(text: &str) -> std::result::Result<i64, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse::<i64>().map_err(|e| format!("timestamp `{t}`: {e}"));
    }
    let bad = |why: &str| {
        format!("timestamp `{t}`: {why}; give milliseconds since the epoch or ISO 8601 like 2024-05-01T12:00:00Z")
    };
    let num = |s: &str, what: &str| -> std::result::Result<i64, String> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(&format!("{what} `{s}` is not a number")));
        }
        s.parse::<i64>().map_err(|_| bad(&format!("{what} `{s}` is out of range")))
    };
    let (date, rest) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, ""),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, mo, d] = parts.as_slice() else { return Err(bad("the date must be YYYY-MM-DD")) };
    let (year, month, day) = (num(y, "year")?, num(mo, "month")?, num(d, "day")?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad("month or day out of range"));
    }
    // The zone: a trailing Z, or +HH:MM / -HH:MM (also without the colon).
    let (clock, offset_min) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (c, zone) = rest.split_at(i);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let zone = zone[1..].replace(':', "");
        if zone.len() != 4 {
            return Err(bad("the zone must be Z or ±HH:MM"));
        }
        (c, sign * (num(&zone[..2], "zone hours")? * 60 + num(&zone[2..], "zone minutes")?))
    } else {
        (rest, 0)
    };
    let (mut h, mut mi, mut s, mut milli) = (0, 0, 0, 0);
    if !clock.is_empty() {
        let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
        let fields: Vec<&str> = hms.split(':').collect();
        match fields.as_slice() {
            [hh, mm] => (h, mi) = (num(hh, "hour")?, num(mm, "minute")?),
            [hh, mm, ss] => (h, mi, s) = (num(hh, "hour")?, num(mm, "minute")?, num(ss, "second")?),
            _ => return Err(bad("the time must be HH:MM or HH:MM:SS")),
        }
        if !frac.is_empty() {
            let digits: String = frac.chars().chain("000".chars()).take(3).collect();
            milli = num(&digits, "fraction")?;
        }
        if h > 23 || mi > 59 || s > 60 {
            return Err(bad("hour, minute or second out of range"));
        }
    }
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + h) * 60 + mi - offset_min) * 60_000 + s * 1000 + milli)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: AdminArgs,
    }

    fn parse(line: &str) -> AdminArgs {
        Cli::try_parse_from(std::iter::once("admin").chain(line.split_whitespace())).expect("parses").args
    }

    #[test]
    fn command_lines_parse() {
        let a = parse("topic create --topic T --queues 4 --flush sync --order");
        assert_eq!(a.namesrv, "127.0.0.1:9876");
        let AdminCommand::Topic { command: TopicCommand::Create(c) } = a.command else { panic!("not create") };
        assert_eq!(
            (c.topic.as_str(), c.queues, c.options.flush, c.options.order),
            ("T", 4, Some(FlushArg::Sync), Some(true))
        );
        let a = parse("topic update --topic T --perm r --order=false --namesrv 10.0.0.1:9876 --json");
        assert!(a.json);
        assert_eq!(a.namesrv, "10.0.0.1:9876");
        let AdminCommand::Topic { command: TopicCommand::Update(u) } = a.command else { panic!("not update") };
        assert_eq!((u.queues, u.options.perm, u.options.order), (None, Some(PermArg::R), Some(false)));
        let a = parse("consumer reset-offset --group G --topic T --timestamp 2024-05-01T00:00:00Z");
        assert!(matches!(a.command, AdminCommand::Consumer { command: ConsumerCommand::ResetOffset { .. } }));
        assert!(Cli::try_parse_from(["admin", "topic", "create", "--topic", "T"]).is_err(), "create needs --queues");
        assert!(Cli::try_parse_from(["admin", "topic", "create", "--topic", "T", "--queues", "1", "--flush", "often"])
            .is_err());
    }

    #[test]
    fn times_parse_and_format() {
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-01"), Ok(0));
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14 22:13:20.5"), Ok(1_700_000_000_500));
        assert_eq!(parse_time("2023-11-15T00:13:20+02:00"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T20:13:20.123-0200"), Ok(1_700_000_000_123));
        assert_eq!(parse_time("2024-02-29T00:00"), Ok(1_709_164_800_000));
        for bad in ["", "yesterday", "2024-13-01", "2024-01-01T25:00", "2024-01-01T10", "2024-01-01T10:00+2"] {
            let e = parse_time(bad).expect_err(bad);
            assert!(e.contains("timestamp"), "{e}");
        }
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        for ms in [0, 951_782_400_000, 1_709_164_800_000, 4_102_444_800_999] {
            assert_eq!(parse_time(&format_time(ms)), Ok(ms));
        }
    }

    #[test]
    fn shards_group_into_processes() {
        assert_eq!(process_name("broker-a-s0"), "broker-a");
        assert_eq!(process_name("broker-a-s12"), "broker-a");
        assert_eq!(process_name("broker-a"), "broker-a");
        assert_eq!(process_name("b-sx"), "b-sx");
        assert_eq!(process_name("-s1"), "-s1");
        let b = |name: &str, addr: &str| BrokerRef { name: name.into(), addr: addr.into() };
        let picked = one_per_process(&[
            b("broker-a-s10", "h:10921"),
            b("broker-a-s2", "h:10913"),
            b("java-broker", "j:10911"),
            b("broker-b-s0", "k:10911"),
        ]);
        assert_eq!(picked, [b("broker-a-s2", "h:10913"), b("broker-b-s0", "k:10911"), b("java-broker", "j:10911")]);
    }

    #[test]
    fn tables_align_and_right_align_numbers() {
        let mut t = Table::new(&["TOPIC", "QUEUES", "FLUSH"]);
        t.row(vec!["orders".into(), "16".into(), "sync".into()]);
        t.row(vec!["a".into(), "4".into(), "async".into()]);
        assert_eq!(t.render(), "TOPIC   QUEUES  FLUSH\norders      16  sync\na            4  async\n");
        assert_eq!(perm_text(6), "rw");
        assert_eq!(perm_text(7), "rw+inherit");
        assert_eq!(perm_text(0), "-");
    }

    #[test]
    fn failure_answers_name_the_code() {
        let req = RemotingCommand::new_request(request::GET_TOPIC_STATS_INFO, ExtFields::new());
        let answer =
            RemotingCommand::response_to(&req, response::TOPIC_NOT_EXIST, Some("topic `X` does not exist".into()));
        let e = remote_error("127.0.0.1:10911", &answer).to_string();
        assert_eq!(e, "127.0.0.1:10911 answered code 17: TOPIC_NOT_EXIST: topic `X` does not exist");
    }
}
