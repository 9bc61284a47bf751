//! Before the run: find the brokers through a NameServer, create the topic, and position
//! the consumers — the way a RocketMQ client and `mqadmin updateTopic` would.
//!
//! Steps: GET_ROUTEINFO_BY_TOPIC at the NameServer; unless `--no-create`,
//! UPDATE_AND_CREATE_TOPIC (with `+flush.mode=...` when asked) to the master of every
//! broker of the cluster (GET_BROKER_CLUSTER_INFO, or TBW102's route when the NameServer
//! does not answer that), then wait until the route shows the topic on each of them.
//! Consumers' start offsets are resolved here, before any message is produced, so an e2e
//! run starting at `latest` misses nothing it sends.
//!
//! Runs once, on a glommio executor of the main thread. Deliberately not here: the
//! workloads (`produce`, `consume`), and following the route while they run (`routes`,
//! which reads it with [`route`] too).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use rockshard::remoting::client::Client;
use rockshard_net::body::{self, ClusterInfo, TopicRouteData};
use rockshard_net::code::{perm, request, response};
use rockshard_net::headers::{
    CommandHeader, CreateTopicRequestHeader, GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader,
    GetMinOffsetRequestHeader, GetMinOffsetResponseHeader, GetRouteInfoRequestHeader, QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader,
};
use rockshard_net::{ExtFields, RemotingCommand, SerializeType};

use crate::args::{Config, FlushMode, StartFrom};
use crate::error::BenchError;
use crate::limits::{ROUTE_POLL_MS, ROUTE_WAIT_MAX_MS};

/// The template topic RocketMQ clients name in sends and creations.
pub const DEFAULT_TOPIC: &str = "TBW102";

/// A master broker serving the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub broker_name: String,
    pub addr: String,
    pub write_queues: i32,
    pub read_queues: i32,
}

/// What the workers need of a route.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteView {
    /// Brokers with a master (brokerId 0), with the queues the master serves, by name.
    pub masters: Vec<Target>,
    /// For every broker name, where consumers pull: the master, else the replica with
    /// the lowest brokerId (a RocketMQ consumer pulls from a slave while its master is
    /// gone; a Rockshard follower serves committed messages).
    pub pull_addrs: BTreeMap<String, String>,
}

impl RouteView {
    pub fn of(route: &TopicRouteData) -> RouteView {
        let pull_addrs = route
            .broker_datas
            .iter()
            .filter_map(|b| {
                let addr = b.broker_addrs.get(&0).or_else(|| b.broker_addrs.values().next())?;
                Some((b.broker_name.clone(), addr.clone()))
            })
            .collect();
        RouteView { masters: masters(route), pull_addrs }
    }

    /// Whether some broker of the topic is in the route without a master (its replicas
    /// are, so a new master is expected).
    pub fn masterless(&self) -> bool {
        self.pull_addrs.keys().any(|name| !self.masters.iter().any(|t| t.broker_name == *name))
    }

    /// One line naming what changed from `old` to `self`, for the run's log.
    pub fn describe_change(&self, old: &RouteView) -> String {
        let mut changes = Vec::new();
        for t in &self.masters {
            match old.masters.iter().find(|o| o.broker_name == t.broker_name) {
                Some(o) if o.addr != t.addr => {
                    changes.push(format!("{} master {} (was {})", t.broker_name, t.addr, o.addr))
                }
                Some(o) if o.write_queues != t.write_queues || o.read_queues != t.read_queues => changes.push(format!(
                    "{} queues {} write / {} read (were {} / {})",
                    t.broker_name, t.write_queues, t.read_queues, o.write_queues, o.read_queues
                )),
                Some(_) => {}
                None => changes.push(format!("{} master {}", t.broker_name, t.addr)),
            }
        }
        for o in &old.masters {
            if !self.masters.iter().any(|t| t.broker_name == o.broker_name) {
                changes.push(format!("{} has no master (was {})", o.broker_name, o.addr));
            }
        }
        if changes.is_empty() {
            // Only a replica's address moved: it matters to consumers pulling from it.
            changes.push("replica addresses".to_owned());
        }
        changes.join(", ")
    }
}

/// One queue a consumer will pull, and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStart {
    /// Index into the plan's `route.masters`.
    pub target: usize,
    pub queue_id: i32,
    pub offset: i64,
}

/// What the run works on.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The route as setup read it; `route.masters` are the targets.
    pub route: RouteView,
    /// Every readable queue (consumers only), in target then queue order.
    pub queues: Vec<QueueStart>,
}

/// A request with the run's header encoding.
pub fn command(code: i32, ext: ExtFields, serialize_type: SerializeType) -> RemotingCommand {
    RemotingCommand::new_request(code, ext).with_serialize_type(serialize_type)
}

/// The masters (brokerId 0) of a route with the queues they serve, by broker name.
pub fn masters(route: &TopicRouteData) -> Vec<Target> {
    let mut targets: Vec<Target> = route
        .queue_datas
        .iter()
        .filter_map(|q| {
            let broker = route.broker_datas.iter().find(|b| b.broker_name == q.broker_name)?;
            let addr = broker.broker_addrs.get(&0)?;
            let write_queues = if q.perm & perm::WRITE != 0 { q.write_queue_nums.max(0) } else { 0 };
            let read_queues = if q.perm & perm::READ != 0 { q.read_queue_nums.max(0) } else { 0 };
            Some(Target { broker_name: q.broker_name.clone(), addr: addr.clone(), write_queues, read_queues })
        })
        .collect();
    targets.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    targets.dedup_by(|a, b| a.broker_name == b.broker_name);
    targets
}

/// The master addresses of a cluster (or all clusters), by broker name.
pub fn cluster_masters(info: &ClusterInfo, cluster: Option<&str>) -> BTreeMap<String, String> {
    let names: Vec<&String> = match cluster {
        Some(c) => info.cluster_addr_table.get(c).map(|v| v.iter().collect()).unwrap_or_default(),
        None => info.cluster_addr_table.values().flatten().collect(),
    };
    names
        .into_iter()
        .filter_map(|name| {
            let addr = info.broker_addr_table.get(name)?.broker_addrs.get(&0)?;
            Some((name.clone(), addr.clone()))
        })
        .collect()
}

/// The `attributes` value that sets a topic's flush mode (RocketMQ 5 attribute syntax).
pub fn flush_attribute(mode: FlushMode) -> String {
    match mode {
        FlushMode::Async => "+flush.mode=async".to_owned(),
        FlushMode::Sync => "+flush.mode=sync".to_owned(),
    }
}

struct Setup<'a> {
    cfg: &'a Config,
    namesrv: Client,
    serialize_type: SerializeType,
}

/// The topic's route from the NameServer `namesrv`, `None` when it does not know the
/// topic. Setup's lookups and the run's refreshes ([`crate::routes`]) both use it.
pub async fn route(
    namesrv: &Client,
    topic: &str,
    timeout: Duration,
    serialize_type: SerializeType,
) -> Result<Option<TopicRouteData>, BenchError> {
    let ext = GetRouteInfoRequestHeader { topic: topic.to_owned(), ..Default::default() }.to_ext_fields();
    let cmd = command(request::GET_ROUTEINFO_BY_TOPIC, ext, serialize_type);
    let context = || format!("route of {topic} from NameServer {}", namesrv.peer());
    let resp = namesrv.request(cmd, timeout).await.map_err(BenchError::remote(context()))?;
    match resp.code {
        response::SUCCESS => body::from_json(&resp.body)
            .map(Some)
            .map_err(|e| BenchError::Setup(format!("{}: undecodable route: {e}", context()))),
        response::TOPIC_NOT_EXIST => Ok(None),
        code => Err(remote_code(context(), &resp, code)),
    }
}

impl Setup<'_> {
    /// The topic's route, `None` when the NameServer does not know it.
    async fn route(&self, topic: &str) -> Result<Option<TopicRouteData>, BenchError> {
        route(&self.namesrv, topic, self.cfg.timeout, self.serialize_type).await
    }

    /// The masters to create the topic on: the cluster's, or TBW102's route's.
    async fn creation_targets(&self) -> Result<BTreeMap<String, String>, BenchError> {
        let cmd = command(request::GET_BROKER_CLUSTER_INFO, ExtFields::new(), self.serialize_type);
        let answer = self.namesrv.request(cmd, self.cfg.timeout).await;
        if let Ok(resp) = &answer {
            if resp.code == response::SUCCESS {
                if let Ok(info) = body::from_json::<ClusterInfo>(&resp.body) {
                    let found = cluster_masters(&info, self.cfg.cluster.as_deref());
                    if !found.is_empty() {
                        return Ok(found);
                    }
                }
            }
        }
        if let Some(cluster) = &self.cfg.cluster {
            return Err(BenchError::Setup(format!(
                "cluster `{cluster}`: the NameServer {} lists no master for it",
                self.namesrv.peer()
            )));
        }
        let route = self.route(DEFAULT_TOPIC).await?.ok_or_else(|| {
            BenchError::Setup(format!(
                "the NameServer {} answers no cluster info and has no {DEFAULT_TOPIC} route: no broker to create the \
                 topic on",
                self.namesrv.peer()
            ))
        })?;
        Ok(masters(&route).into_iter().map(|t| (t.broker_name, t.addr)).collect())
    }

    async fn create_on(&self, broker_name: &str, addr: &str) -> Result<(), BenchError> {
        let cfg = self.cfg;
        let h = CreateTopicRequestHeader {
            topic: cfg.topic.clone(),
            default_topic: DEFAULT_TOPIC.to_owned(),
            read_queue_nums: cfg.queues as i32,
            write_queue_nums: cfg.queues as i32,
            perm: perm::READ | perm::WRITE,
            topic_filter_type: "SINGLE_TAG".to_owned(),
            order: false,
            topic_sys_flag: Some(0),
            attributes: cfg.flush.map(flush_attribute),
            force: None,
        };
        let context = format!("creating topic {} on broker {broker_name} ({addr})", cfg.topic);
        let broker = Client::connect(addr, cfg.timeout).await.map_err(BenchError::remote(context.clone()))?;
        let resp = broker
            .request(command(request::UPDATE_AND_CREATE_TOPIC, h.to_ext_fields(), self.serialize_type), cfg.timeout)
            .await
            .map_err(BenchError::remote(context.clone()));
        broker.close().await;
        let resp = resp?;
        if resp.code != response::SUCCESS {
            return Err(remote_code(context, &resp, resp.code));
        }
        Ok(())
    }

    /// Polls the route until every broker in `brokers` serves the topic.
    async fn wait_for_route(&self, brokers: &BTreeMap<String, String>) -> Result<TopicRouteData, BenchError> {
        let deadline = Instant::now() + Duration::from_millis(ROUTE_WAIT_MAX_MS);
        loop {
            let route = self.route(&self.cfg.topic).await?;
            let missing: Vec<&String> = match &route {
                Some(r) => {
                    let present = masters(r);
                    brokers.keys().filter(|name| !present.iter().any(|t| &t.broker_name == *name)).collect()
                }
                None => brokers.keys().collect(),
            };
            match route {
                Some(r) if missing.is_empty() => return Ok(r),
                _ if Instant::now() >= deadline => {
                    return Err(BenchError::Setup(format!(
                        "topic {} was created, but after {} s the NameServer's route still lacks {missing:?}",
                        self.cfg.topic,
                        ROUTE_WAIT_MAX_MS / 1000
                    )))
                }
                _ => Timer::new(Duration::from_millis(ROUTE_POLL_MS)).await,
            };
        }
    }
}

fn remote_code(context: String, resp: &RemotingCommand, code: i32) -> BenchError {
    BenchError::Remote {
        context,
        source: rockshard::Error::Remote {
            peer: String::new(),
            code,
            remark: format!(
                "{}{}",
                response::name(code).map(|n| format!("{n}: ")).unwrap_or_default(),
                resp.remark.clone().unwrap_or_default()
            ),
        },
    }
}

async fn connect_namesrv(cfg: &Config) -> Result<Client, BenchError> {
    let mut last = None;
    for addr in &cfg.namesrv {
        match Client::connect(addr, cfg.timeout).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(BenchError::Remote { context: format!("NameServer {addr}"), source: e }),
        }
    }
    Err(last.unwrap_or_else(|| BenchError::Setup("no NameServer address".into())))
}

/// Finds (and creates) the topic and resolves consumer start offsets.
pub async fn prepare(cfg: &Config) -> Result<Plan, BenchError> {
    let namesrv = connect_namesrv(cfg).await?;
    let setup = Setup { cfg, namesrv, serialize_type: cfg.header.serialize_type() };
    let route = if cfg.create_topic {
        let brokers = setup.creation_targets().await?;
        for (name, addr) in &brokers {
            setup.create_on(name, addr).await?;
        }
        setup.wait_for_route(&brokers).await?
    } else {
        setup.route(&cfg.topic).await?.ok_or_else(|| {
            BenchError::Setup(format!("topic {} does not exist (and --no-create was given)", cfg.topic))
        })?
    };
    setup.namesrv.close().await;
    let view = RouteView::of(&route);
    let targets = &view.masters;
    if cfg.workload.produces() && targets.iter().all(|t| t.write_queues == 0) {
        return Err(BenchError::Setup(format!("topic {}: no master broker has a writable queue", cfg.topic)));
    }
    let queues = if cfg.workload.consumes() { start_offsets(cfg, targets).await? } else { Vec::new() };
    if cfg.workload.consumes() && queues.is_empty() {
        return Err(BenchError::Setup(format!("topic {}: no master broker has a readable queue", cfg.topic)));
    }
    Ok(Plan { route: view, queues })
}

/// Where each readable queue starts: the group's committed offset, else --from.
async fn start_offsets(cfg: &Config, targets: &[Target]) -> Result<Vec<QueueStart>, BenchError> {
    let st = cfg.header.serialize_type();
    let mut queues = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        if target.read_queues == 0 {
            continue;
        }
        let context = |what: &str| format!("{what} on broker {} ({})", target.broker_name, target.addr);
        let broker =
            Client::connect(&target.addr, cfg.timeout).await.map_err(BenchError::remote(context("connect")))?;
        for queue_id in 0..target.read_queues {
            let query = QueryConsumerOffsetRequestHeader {
                consumer_group: cfg.group.clone(),
                topic: cfg.topic.clone(),
                queue_id,
                set_zero_if_not_found: Some(false),
            };
            let resp = broker
                .request(command(request::QUERY_CONSUMER_OFFSET, query.to_ext_fields(), st), cfg.timeout)
                .await
                .map_err(BenchError::remote(context("QUERY_CONSUMER_OFFSET")))?;
            let committed = match resp.code {
                response::SUCCESS => resp
                    .ext_header::<QueryConsumerOffsetResponseHeader>()
                    .ok()
                    .map(|h| h.offset)
                    .filter(|offset| *offset >= 0),
                response::QUERY_NOT_FOUND => None,
                code => return Err(remote_code(context("QUERY_CONSUMER_OFFSET"), &resp, code)),
            };
            let offset = match committed {
                Some(offset) => offset,
                None => {
                    let (code, ext) = match cfg.from {
                        StartFrom::Earliest => (
                            request::GET_MIN_OFFSET,
                            GetMinOffsetRequestHeader { topic: cfg.topic.clone(), queue_id }.to_ext_fields(),
                        ),
                        StartFrom::Latest => (
                            request::GET_MAX_OFFSET,
                            GetMaxOffsetRequestHeader { topic: cfg.topic.clone(), queue_id, committed: None }
                                .to_ext_fields(),
                        ),
                    };
                    let what = if code == request::GET_MIN_OFFSET { "GET_MIN_OFFSET" } else { "GET_MAX_OFFSET" };
                    let resp = broker
                        .request(command(code, ext, st), cfg.timeout)
                        .await
                        .map_err(BenchError::remote(context(what)))?;
                    if resp.code != response::SUCCESS {
                        return Err(remote_code(context(what), &resp, resp.code));
                    }
                    let offset = match cfg.from {
                        StartFrom::Earliest => resp.ext_header::<GetMinOffsetResponseHeader>().map(|h| h.offset),
                        StartFrom::Latest => resp.ext_header::<GetMaxOffsetResponseHeader>().map(|h| h.offset),
                    };
                    offset.map_err(|e| BenchError::Setup(format!("{}: {e}", context(what))))?
                }
            };
            queues.push(QueueStart { target: index, queue_id, offset });
        }
        broker.close().await;
    }
    Ok(queues)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rockshard_net::body::{BrokerData, QueueData};

    fn broker(name: &str, cluster: &str, addrs: &[(i64, &str)]) -> BrokerData {
        BrokerData {
            broker_addrs: addrs.iter().map(|(id, a)| (*id, (*a).to_owned())).collect(),
            broker_name: name.to_owned(),
            cluster: cluster.to_owned(),
            ..Default::default()
        }
    }

    fn queues(name: &str, n: i32, perm: i32) -> QueueData {
        QueueData { broker_name: name.to_owned(), perm, read_queue_nums: n, write_queue_nums: n, topic_sys_flag: 0 }
    }

    #[test]
    fn masters_are_the_brokers_with_id_zero_and_their_permitted_queues() {
        let route = TopicRouteData {
            broker_datas: vec![
                broker("b-s1", "c", &[(0, "127.0.0.1:10912"), (1, "127.0.0.1:20912")]),
                broker("b-s0", "c", &[(0, "127.0.0.1:10911")]),
                broker("slave-only", "c", &[(1, "127.0.0.1:30911")]),
                broker("read-only", "c", &[(0, "127.0.0.1:40911")]),
            ],
            queue_datas: vec![
                queues("b-s1", 4, perm::READ | perm::WRITE),
                queues("b-s0", 8, perm::READ | perm::WRITE),
                queues("slave-only", 4, 6),
                queues("read-only", 2, perm::READ),
                queues("no-broker-data", 2, 6),
            ],
            ..Default::default()
        };
        let t = masters(&route);
        let names: Vec<&str> = t.iter().map(|t| t.broker_name.as_str()).collect();
        assert_eq!(names, ["b-s0", "b-s1", "read-only"]);
        assert_eq!(t[0].addr, "127.0.0.1:10911");
        assert_eq!((t[0].write_queues, t[0].read_queues), (8, 8));
        assert_eq!(t[1].addr, "127.0.0.1:10912", "the master, not the slave");
        assert_eq!((t[2].write_queues, t[2].read_queues), (0, 2));
    }

    #[test]
    fn cluster_masters_pick_one_cluster_or_all() {
        let mut info = ClusterInfo::default();
        info.broker_addr_table.insert("a".into(), broker("a", "c1", &[(0, "1.1.1.1:1")]));
        info.broker_addr_table.insert("b".into(), broker("b", "c2", &[(0, "2.2.2.2:2"), (1, "3.3.3.3:3")]));
        info.broker_addr_table.insert("s".into(), broker("s", "c2", &[(1, "4.4.4.4:4")]));
        info.cluster_addr_table.insert("c1".into(), vec!["a".into()]);
        info.cluster_addr_table.insert("c2".into(), vec!["b".into(), "s".into()]);
        let c2 = cluster_masters(&info, Some("c2"));
        assert_eq!(c2.into_iter().collect::<Vec<_>>(), [("b".to_owned(), "2.2.2.2:2".to_owned())]);
        assert_eq!(cluster_masters(&info, None).len(), 2);
        assert!(cluster_masters(&info, Some("nope")).is_empty());
    }

    #[test]
    fn flush_modes_use_rocketmq_5_attribute_syntax() {
        assert_eq!(flush_attribute(FlushMode::Sync), "+flush.mode=sync");
        assert_eq!(flush_attribute(FlushMode::Async), "+flush.mode=async");
    }
}
