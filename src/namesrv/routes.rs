//! The NameServer's route registry: which brokers are alive, which clusters they form,
//! and which queues each serves for each topic (Java's `RouteInfoManager`).
//!
//! Owns four tables, all keyed so that iteration order is stable (sorted):
//! - `topic_queues`: topic → broker name → [`QueueData`] (the queues that broker group
//!   serves for the topic);
//! - `brokers`: broker name → [`BrokerData`] (cluster, broker id → address);
//! - `clusters`: cluster → broker names;
//! - `live`: (cluster, address) → liveness: last registration time, expiry, the data
//!   version of the broker's topic table, the connection it registered over.
//!
//! Invariants (checked by [`RouteTable::check_invariants`] in the tests):
//! - every broker name in `clusters` has a `brokers` entry of that cluster, with at least
//!   one address, and every `brokers` entry is listed under its cluster;
//! - no topic has an empty queue map;
//! - the same address appears under at most one broker id of a broker group.
//!
//! Thread: the NameServer's executor only; the table is plain data behind a `RefCell`
//! in [`super::NameServer`]. It does no I/O and never reads a clock: every operation
//! that depends on time takes `now_ms` (milliseconds on a monotonic clock chosen by the
//! caller), so the tests drive time by hand.
//!
//! Deliberately not here (as in a default Java NameServer, where these are off):
//! slave-acting-master route rewriting, static-topic mappings, filter servers, deleting
//! a broker's topics that vanish from its registration (`deleteTopicWithBrokerRegistration`),
//! and the order-topic configuration in routes (`orderMessageEnable`). Also left out on
//! purpose: Java refuses a first registration that carries exactly one topic (it takes
//! it for a partial update from a broker it does not know); a Rockshard shard may hold a
//! single topic, and accepting it costs nothing, since the next full registration
//! carries everything anyway.

use std::collections::{BTreeMap, BTreeSet};

use rockshard_net::body::{BrokerData, ClusterInfo, DataVersion, QueueData, TopicConfig, TopicConfigSerializeWrapper};
use rockshard_net::code::perm;

/// The id the remoting server gives a connection. Registrations remember it so that
/// closing the connection removes the brokers that registered over it.
pub type ConnectionId = u64;

/// Broker id of a master; slaves have larger ids.
pub const MASTER_ID: i64 = 0;

/// A broker instance as the liveness table knows it: Java keys liveness by cluster and
/// address, because the same address may be reused in another cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BrokerAddr {
    pub cluster: String,
    pub addr: String,
}

/// One REGISTER_BROKER, decoded.
#[derive(Debug, Clone, Default)]
pub struct Registration {
    pub cluster: String,
    pub broker_name: String,
    /// `ip:port` clients connect to.
    pub broker_addr: String,
    /// 0 = master.
    pub broker_id: i64,
    pub ha_server_addr: String,
    /// The broker's own liveness timeout (`heartbeatTimeoutMillis`); `None` takes the
    /// table's default.
    pub expiry_ms: Option<u64>,
    /// `None` marks a broker older than 5.0, which does not send the key.
    pub enable_acting_master: Option<bool>,
    pub zone_name: Option<String>,
    pub topics: TopicConfigSerializeWrapper,
    /// The connection the registration arrived on, if any.
    pub connection: Option<ConnectionId>,
}

/// What a registration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterOutcome {
    /// For a slave: the master's address, when the master is alive.
    pub master_addr: Option<String>,
    /// For a slave: the master's HA address, when the master is alive.
    pub master_ha_server_addr: Option<String>,
    /// Topics whose queue data this registration wrote (0 when the data version was
    /// unchanged and every topic was already known).
    pub topics_applied: usize,
    /// True when the registration was refused because another address already holds
    /// this broker id with a newer state version (Java answers such a broker SUCCESS
    /// with an empty result, and so do we; it is here for logs and tests).
    pub refused_stale: bool,
}

/// A broker removed by the expiry scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub broker: BrokerAddr,
    /// The connection it last registered over; the server closes it, as Java does.
    pub connection: Option<ConnectionId>,
    pub silent_ms: u64,
}

#[derive(Debug, Clone)]
struct LiveBroker {
    last_update_ms: u64,
    expiry_ms: u64,
    data_version: DataVersion,
    connection: Option<ConnectionId>,
    ha_server_addr: String,
}

/// The registry. See the module documentation.
#[derive(Debug)]
pub struct RouteTable {
    topic_queues: BTreeMap<String, BTreeMap<String, QueueData>>,
    brokers: BTreeMap<String, BrokerData>,
    clusters: BTreeMap<String, BTreeSet<String>>,
    live: BTreeMap<BrokerAddr, LiveBroker>,
    /// Liveness timeout of brokers that do not send their own.
    default_expiry_ms: u64,
}

impl RouteTable {
    /// An empty table whose brokers expire after `default_expiry_ms` of silence unless
    /// they state their own timeout.
    pub fn new(default_expiry_ms: u64) -> RouteTable {
        RouteTable {
            topic_queues: BTreeMap::new(),
            brokers: BTreeMap::new(),
            clusters: BTreeMap::new(),
            live: BTreeMap::new(),
            default_expiry_ms,
        }
    }

    /// Registers (or re-registers, which is the heartbeat) one broker at `now_ms`.
    ///
    /// Topic configs are applied from masters, and from the lowest-id slave of a 5.x
    /// broker group that has no master (so consumers can still read), when the broker
    /// registers for the first time, when its data version changed, or for topics the
    /// table does not yet list under this broker. An unchanged data version otherwise
    /// leaves the queue data alone, so a WIPE_WRITE_PERM stays in force until the
    /// broker's topic table really changes.
    pub fn register(&mut self, reg: Registration, now_ms: u64) -> RegisterOutcome {
        let mut outcome = RegisterOutcome::default();
        let key = BrokerAddr { cluster: reg.cluster.clone(), addr: reg.broker_addr.clone() };

        self.clusters.entry(reg.cluster.clone()).or_default().insert(reg.broker_name.clone());
        let mut register_first = false;
        let broker = self.brokers.entry(reg.broker_name.clone()).or_insert_with(|| {
            register_first = true;
            BrokerData {
                broker_addrs: BTreeMap::new(),
                broker_name: reg.broker_name.clone(),
                cluster: reg.cluster.clone(),
                enable_acting_master: false,
                zone_name: None,
            }
        });
        let old_version_broker = reg.enable_acting_master.is_none();
        broker.enable_acting_master = reg.enable_acting_master.unwrap_or(false);
        broker.zone_name = reg.zone_name.clone();

        // One address holds one broker id: a slave promoted to master (or the reverse)
        // re-registers under its new id, and its old entry must go.
        broker.broker_addrs.retain(|id, addr| *addr != reg.broker_addr || *id == reg.broker_id);

        // Another address holding this id wins if its topic table is of a newer state
        // (a stale broker coming back must not take over the id).
        if let Some(old_addr) = broker.broker_addrs.get(&reg.broker_id) {
            if *old_addr != reg.broker_addr {
                let old_key = BrokerAddr { cluster: reg.cluster.clone(), addr: old_addr.clone() };
                if let Some(old) = self.live.get(&old_key) {
                    if old.data_version.state_version > reg.topics.data_version.state_version {
                        tracing::warn!(
                            broker = %reg.broker_name, id = reg.broker_id, addr = %reg.broker_addr, holder = %old_addr,
                            "registration refused: the current holder of this broker id has a newer state version"
                        );
                        self.live.remove(&key);
                        outcome.refused_stale = true;
                        self.drop_empty_broker(&reg.cluster, &reg.broker_name);
                        return outcome;
                    }
                }
            }
        }

        register_first |= broker.broker_addrs.insert(reg.broker_id, reg.broker_addr.clone()).is_none();
        let is_master = reg.broker_id == MASTER_ID;
        let min_id = broker.broker_addrs.keys().next().copied();
        let is_prime_slave = !old_version_broker && !is_master && min_id == Some(reg.broker_id);
        let acting_master = broker.enable_acting_master;

        if is_master || is_prime_slave {
            let version_changed = self.topic_config_changed(&key, &reg.topics.data_version);
            for (name, config) in &reg.topics.topic_config_table {
                // Java keys the queue table by the config's own name; the map key is the
                // same in every broker we know, and an empty config name falls back to it.
                let topic = if config.topic_name.is_empty() { name } else { &config.topic_name };
                let known = self.topic_queues.get(topic).is_some_and(|queues| queues.contains_key(&reg.broker_name));
                if register_first || version_changed || !known {
                    let mut queue = queue_data(&reg.broker_name, config);
                    if is_prime_slave && acting_master {
                        queue.perm &= !perm::WRITE;
                    }
                    self.topic_queues.entry(topic.clone()).or_default().insert(reg.broker_name.clone(), queue);
                    outcome.topics_applied += 1;
                }
            }
        }

        if !is_master {
            let master_addr = self.brokers.get(&reg.broker_name).and_then(|b| b.broker_addrs.get(&MASTER_ID));
            if let Some(master_addr) = master_addr {
                let master_key = BrokerAddr { cluster: reg.cluster.clone(), addr: master_addr.clone() };
                if let Some(master) = self.live.get(&master_key) {
                    outcome.master_addr = Some(master_addr.clone());
                    outcome.master_ha_server_addr = Some(master.ha_server_addr.clone());
                }
            }
        }

        let expiry_ms = reg.expiry_ms.unwrap_or(self.default_expiry_ms);
        self.live.insert(
            key,
            LiveBroker {
                last_update_ms: now_ms,
                expiry_ms,
                data_version: reg.topics.data_version,
                connection: reg.connection,
                ha_server_addr: reg.ha_server_addr,
            },
        );
        outcome
    }

    /// Removes the broker at `addr` of `broker_name` in `cluster` (UNREGISTER_BROKER,
    /// and what expiry and connection close do). When its broker group is left without
    /// addresses, the group leaves its cluster and its queues leave every topic; topics
    /// left without queues disappear. Returns whether anything was removed.
    pub fn unregister(&mut self, cluster: &str, addr: &str, broker_name: &str) -> bool {
        let key = BrokerAddr { cluster: cluster.to_owned(), addr: addr.to_owned() };
        let mut removed = self.live.remove(&key).is_some();
        if let Some(broker) = self.brokers.get_mut(broker_name) {
            let before = broker.broker_addrs.len();
            broker.broker_addrs.retain(|_, a| a != addr);
            removed |= broker.broker_addrs.len() != before;
        }
        self.drop_empty_broker(cluster, broker_name);
        removed
    }

    /// Refreshes the liveness of a registered broker without touching its routes
    /// (BROKER_HEARTBEAT, QUERY_DATA_VERSION). Returns whether the broker is known.
    pub fn refresh(&mut self, cluster: &str, addr: &str, now_ms: u64) -> bool {
        let key = BrokerAddr { cluster: cluster.to_owned(), addr: addr.to_owned() };
        match self.live.get_mut(&key) {
            Some(live) => {
                live.last_update_ms = now_ms;
                true
            }
            None => false,
        }
    }

    /// The data version the table holds for a live broker.
    pub fn data_version(&self, cluster: &str, addr: &str) -> Option<DataVersion> {
        let key = BrokerAddr { cluster: cluster.to_owned(), addr: addr.to_owned() };
        self.live.get(&key).map(|live| live.data_version)
    }

    /// True when `version` differs from what the broker last registered, or the broker
    /// is not registered (Java's `isBrokerTopicConfigChanged`).
    pub fn topic_config_changed(&self, broker: &BrokerAddr, version: &DataVersion) -> bool {
        match self.live.get(broker) {
            Some(live) => live.data_version != *version,
            None => true,
        }
    }

    /// Removes every broker silent for longer than its expiry at `now_ms` and returns
    /// them, so the caller can close their connections and log them.
    pub fn scan_expired(&mut self, now_ms: u64) -> Vec<Expired> {
        let expired: Vec<Expired> = self
            .live
            .iter()
            .filter(|(_, live)| live.last_update_ms.saturating_add(live.expiry_ms) < now_ms)
            .map(|(key, live)| Expired {
                broker: key.clone(),
                connection: live.connection,
                silent_ms: now_ms - live.last_update_ms,
            })
            .collect();
        for e in &expired {
            self.remove_by_addr(&e.broker);
        }
        expired
    }

    /// Removes every broker whose latest registration came over `connection` (Java's
    /// `onChannelDestroy`; one connection may carry several brokers, e.g. the shards of
    /// one Rockshard process). A broker that has since re-registered over another
    /// connection stays. Returns the brokers removed.
    pub fn connection_closed(&mut self, connection: ConnectionId) -> Vec<BrokerAddr> {
        let gone: Vec<BrokerAddr> =
            self.live.iter().filter(|(_, live)| live.connection == Some(connection)).map(|(k, _)| k.clone()).collect();
        for broker in &gone {
            self.remove_by_addr(broker);
        }
        gone
    }

    /// The route of `topic`, or `None` when no live broker group serves it.
    pub fn route(&self, topic: &str) -> Option<rockshard_net::body::TopicRouteData> {
        let queues = self.topic_queues.get(topic)?;
        let broker_datas: Vec<BrokerData> =
            queues.keys().filter_map(|broker_name| self.brokers.get(broker_name)).cloned().collect();
        if broker_datas.is_empty() {
            return None;
        }
        Some(rockshard_net::body::TopicRouteData {
            broker_datas,
            queue_datas: queues.values().cloned().collect(),
            ..Default::default()
        })
    }

    /// Every broker group and every cluster (GET_BROKER_CLUSTER_INFO).
    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            broker_addr_table: self.brokers.clone(),
            cluster_addr_table: self
                .clusters
                .iter()
                .map(|(cluster, names)| (cluster.clone(), names.iter().cloned().collect()))
                .collect(),
        }
    }

    /// Every topic with a route, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.topic_queues.keys().cloned().collect()
    }

    /// Topics served by at least one broker group of `cluster`, sorted.
    pub fn topics_of_cluster(&self, cluster: &str) -> Vec<String> {
        let Some(names) = self.clusters.get(cluster) else { return Vec::new() };
        self.topic_queues
            .iter()
            .filter(|(_, queues)| queues.keys().any(|broker| names.contains(broker)))
            .map(|(topic, _)| topic.clone())
            .collect()
    }

    /// The "system topics" list (GET_SYSTEM_TOPIC_LIST_FROM_NS): every cluster name and
    /// every broker name (brokers create a topic named after each), plus the address of
    /// one broker the caller can ask for more.
    pub fn system_topics(&self) -> (Vec<String>, Option<String>) {
        let mut names = Vec::new();
        for (cluster, brokers) in &self.clusters {
            names.push(cluster.clone());
            names.extend(brokers.iter().cloned());
        }
        let addr = self.brokers.values().find_map(|b| b.broker_addrs.values().next().cloned());
        (names, addr)
    }

    /// Clears (`wipe`) or restores the write permission of every queue of broker group
    /// `broker_name` (WIPE_WRITE_PERM_OF_BROKER / ADD_WRITE_PERM_OF_BROKER, used to drain
    /// a broker before maintenance). Restoring sets read+write, as Java does. Returns the
    /// number of topics touched.
    pub fn set_write_perm(&mut self, broker_name: &str, wipe: bool) -> usize {
        let mut touched = 0;
        for queues in self.topic_queues.values_mut() {
            if let Some(queue) = queues.get_mut(broker_name) {
                queue.perm = if wipe { queue.perm & !perm::WRITE } else { perm::READ | perm::WRITE };
                touched += 1;
            }
        }
        touched
    }

    /// Removes `topic` (DELETE_TOPIC_IN_NAMESRV), or only its queues on the broker groups
    /// of `cluster` when one is given. A broker that still has the topic brings it back
    /// at its next registration.
    pub fn delete_topic(&mut self, topic: &str, cluster: Option<&str>) {
        match cluster {
            None => {
                self.topic_queues.remove(topic);
            }
            Some(cluster) => {
                let (Some(names), Some(queues)) = (self.clusters.get(cluster), self.topic_queues.get_mut(topic)) else {
                    return;
                };
                queues.retain(|broker, _| !names.contains(broker));
                if queues.is_empty() {
                    self.topic_queues.remove(topic);
                }
            }
        }
    }

    /// Sets the queues of `topic` on the given broker groups (REGISTER_TOPIC_IN_NAMESRV).
    /// Every broker group must be registered; otherwise nothing changes and the first
    /// unknown name is returned.
    pub fn register_topic(&mut self, topic: &str, queue_datas: Vec<QueueData>) -> Result<(), String> {
        if let Some(unknown) = queue_datas.iter().find(|q| !self.brokers.contains_key(&q.broker_name)) {
            return Err(unknown.broker_name.clone());
        }
        if queue_datas.is_empty() {
            return Ok(());
        }
        let queues = self.topic_queues.entry(topic.to_owned()).or_default();
        for queue in queue_datas {
            queues.insert(queue.broker_name.clone(), queue);
        }
        Ok(())
    }

    /// Live broker instances (for logs and tests).
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Finds the broker group holding `broker.addr` in `broker.cluster` and unregisters
    /// it; only the liveness entry goes when no group lists the address.
    fn remove_by_addr(&mut self, broker: &BrokerAddr) {
        let name = self
            .brokers
            .values()
            .find(|b| b.cluster == broker.cluster && b.broker_addrs.values().any(|a| *a == broker.addr))
            .map(|b| b.broker_name.clone());
        match name {
            Some(name) => {
                self.unregister(&broker.cluster, &broker.addr, &name);
            }
            None => {
                self.live.remove(broker);
            }
        }
    }

    /// Drops broker group `broker_name` if it has no address left: from the broker
    /// table, from `cluster`, and from every topic.
    fn drop_empty_broker(&mut self, cluster: &str, broker_name: &str) {
        if !self.brokers.get(broker_name).is_some_and(|b| b.broker_addrs.is_empty()) {
            return;
        }
        self.brokers.remove(broker_name);
        if let Some(names) = self.clusters.get_mut(cluster) {
            names.remove(broker_name);
            if names.is_empty() {
                self.clusters.remove(cluster);
            }
        }
        self.topic_queues.retain(|_, queues| {
            queues.remove(broker_name);
            !queues.is_empty()
        });
    }

    /// Panics when an invariant of the module documentation does not hold.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        for (cluster, names) in &self.clusters {
            assert!(!names.is_empty(), "cluster {cluster} without brokers");
            for name in names {
                let broker = self.brokers.get(name).unwrap_or_else(|| panic!("{cluster} lists unknown {name}"));
                assert_eq!(broker.cluster, *cluster, "{name} listed under the wrong cluster");
            }
        }
        for (name, broker) in &self.brokers {
            assert!(!broker.broker_addrs.is_empty(), "broker {name} without addresses");
            assert!(self.clusters.get(&broker.cluster).is_some_and(|n| n.contains(name)), "{name} not in its cluster");
            let addrs: BTreeSet<&String> = broker.broker_addrs.values().collect();
            assert_eq!(addrs.len(), broker.broker_addrs.len(), "{name} has one address under two ids");
        }
        for (topic, queues) in &self.topic_queues {
            assert!(!queues.is_empty(), "topic {topic} without queues");
        }
    }
}

fn queue_data(broker_name: &str, config: &TopicConfig) -> QueueData {
    QueueData {
        broker_name: broker_name.to_owned(),
        perm: config.perm,
        read_queue_nums: config.read_queue_nums,
        topic_sys_flag: config.topic_sys_flag,
        write_queue_nums: config.write_queue_nums,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPIRY_MS: u64 = 120_000;
    const CLUSTER: &str = "DefaultCluster";

    fn topic(name: &str, queues: i32, perm: i32) -> (String, TopicConfig) {
        (
            name.to_owned(),
            TopicConfig {
                topic_name: name.to_owned(),
                read_queue_nums: queues,
                write_queue_nums: queues,
                perm,
                ..TopicConfig::default()
            },
        )
    }

    fn wrapper(counter: i64, topics: &[(&str, i32)]) -> TopicConfigSerializeWrapper {
        TopicConfigSerializeWrapper {
            data_version: DataVersion { counter, state_version: 0, timestamp: 1_700_000_000_000 },
            topic_config_table: topics.iter().map(|(name, queues)| topic(name, *queues, 6)).collect(),
            ..Default::default()
        }
    }

    fn reg(name: &str, addr: &str, id: i64, topics: TopicConfigSerializeWrapper) -> Registration {
        Registration {
            cluster: CLUSTER.into(),
            broker_name: name.into(),
            broker_addr: addr.into(),
            broker_id: id,
            ha_server_addr: format!("{addr}-ha"),
            expiry_ms: None,
            enable_acting_master: Some(false),
            zone_name: None,
            topics,
            connection: None,
        }
    }

    fn queues_of(table: &RouteTable, topic: &str) -> Vec<(String, i32, i32)> {
        table
            .route(topic)
            .map(|r| r.queue_datas.iter().map(|q| (q.broker_name.clone(), q.write_queue_nums, q.perm)).collect())
            .unwrap_or_default()
    }

    #[test]
    fn register_with_topic_wrapper_makes_routes() {
        let mut t = RouteTable::new(EXPIRY_MS);
        let mut w = wrapper(1, &[("TopicTest", 4)]);
        w.topic_config_table.extend([topic("TBW102", 8, 7)]);
        let out = t.register(reg("broker-a", "127.0.0.1:10911", 0, w), 0);
        assert_eq!(out.topics_applied, 2);
        assert_eq!(out.master_addr, None);
        t.check_invariants();

        let route = t.route("TopicTest").expect("route");
        assert_eq!(route.broker_datas.len(), 1);
        let b = &route.broker_datas[0];
        assert_eq!((b.cluster.as_str(), b.broker_name.as_str()), (CLUSTER, "broker-a"));
        assert_eq!(b.broker_addrs, BTreeMap::from([(0, "127.0.0.1:10911".to_owned())]));
        assert_eq!(
            route.queue_datas,
            [QueueData {
                broker_name: "broker-a".into(),
                perm: 6,
                read_queue_nums: 4,
                topic_sys_flag: 0,
                write_queue_nums: 4
            }]
        );
        assert!(route.filter_server_table.is_empty());
        // TBW102 is routable because this broker put it in its wrapper (auto-create on).
        assert_eq!(queues_of(&t, "TBW102"), [("broker-a".to_owned(), 8, 7)]);
        assert_eq!(t.route("Unknown"), None);
    }

    #[test]
    fn data_version_decides_whether_topic_configs_are_reapplied() {
        let mut t = RouteTable::new(EXPIRY_MS);
        t.register(reg("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[("T", 4)])), 0);
        assert_eq!(t.set_write_perm("broker-a", true), 1);
        assert_eq!(queues_of(&t, "T"), [("broker-a".to_owned(), 4, 4)]);

        // Same version: a heartbeat. The wiped permission stays; a topic the table lacks
        // for this broker is still added.
        let mut same = wrapper(1, &[("T", 8)]);
        same.topic_config_table.extend([topic("New", 2, 6)]);
        let out = t.register(reg("broker-a", "127.0.0.1:10911", 0, same), 10);
        assert_eq!(out.topics_applied, 1);
        assert_eq!(queues_of(&t, "T"), [("broker-a".to_owned(), 4, 4)]);
        assert_eq!(queues_of(&t, "New"), [("broker-a".to_owned(), 2, 6)]);

        // New version: everything in the wrapper is applied again.
        let out = t.register(reg("broker-a", "127.0.0.1:10911", 0, wrapper(2, &[("T", 8)])), 20);
        assert_eq!(out.topics_applied, 1);
        assert_eq!(queues_of(&t, "T"), [("broker-a".to_owned(), 8, 6)]);
        // A topic missing from the new wrapper stays, as in Java by default.
        assert_eq!(queues_of(&t, "New"), [("broker-a".to_owned(), 2, 6)]);
        assert_eq!(t.data_version(CLUSTER, "127.0.0.1:10911").map(|v| v.counter), Some(2));

        let key = BrokerAddr { cluster: CLUSTER.into(), addr: "127.0.0.1:10911".into() };
        assert!(!t.topic_config_changed(&key, &wrapper(2, &[]).data_version));
        assert!(t.topic_config_changed(&key, &wrapper(3, &[]).data_version));
        let other = BrokerAddr { cluster: CLUSTER.into(), addr: "127.0.0.1:1".into() };
        assert!(t.topic_config_changed(&other, &wrapper(2, &[]).data_version));
        t.check_invariants();
    }

    #[test]
    fn route_spans_the_shards_of_one_broker() {
        let mut t = RouteTable::new(EXPIRY_MS);
        for shard in 0..4 {
            let name = format!("broker-a-s{shard}");
            let addr = format!("127.0.0.1:{}", 10911 + shard);
            t.register(
                reg(&name, &addr, 0, wrapper(1, &[("T", 4), ("Only0", 1)][..if shard == 0 { 2 } else { 1 }])),
                0,
            );
        }
        t.check_invariants();
        let route = t.route("T").expect("route");
        let names: Vec<&str> = route.broker_datas.iter().map(|b| b.broker_name.as_str()).collect();
        assert_eq!(names, ["broker-a-s0", "broker-a-s1", "broker-a-s2", "broker-a-s3"]);
        for (i, b) in route.broker_datas.iter().enumerate() {
            assert_eq!(b.broker_addrs[&0], format!("127.0.0.1:{}", 10911 + i));
            assert_eq!(b.cluster, CLUSTER);
        }
        let queues: Vec<(&str, i32)> =
            route.queue_datas.iter().map(|q| (q.broker_name.as_str(), q.write_queue_nums)).collect();
        assert_eq!(queues, [("broker-a-s0", 4), ("broker-a-s1", 4), ("broker-a-s2", 4), ("broker-a-s3", 4)]);
        // A topic one shard serves routes to that shard only.
        let only = t.route("Only0").expect("route");
        assert_eq!(only.broker_datas.len(), 1);
        assert_eq!(only.broker_datas[0].broker_name, "broker-a-s0");
        assert_eq!(t.cluster_info().cluster_addr_table[CLUSTER].len(), 4);
    }

    #[test]
    fn masters_and_slaves() {
        let mut t = RouteTable::new(EXPIRY_MS);
        // A slave registering before its master: its topics are applied (lowest id, 5.x).
        let out = t.register(reg("broker-a", "10.0.0.2:10911", 1, wrapper(1, &[("T", 4)])), 0);
        assert_eq!((out.topics_applied, out.master_addr), (1, None));
        let out = t.register(reg("broker-a", "10.0.0.1:10911", 0, wrapper(1, &[("T", 8)])), 1);
        assert_eq!(out.topics_applied, 1);
        // Once the master is there a slave's topics are ignored, and it learns the master.
        let out = t.register(reg("broker-a", "10.0.0.2:10911", 1, wrapper(2, &[("T", 2)])), 2);
        assert_eq!(out.topics_applied, 0);
        assert_eq!(out.master_addr.as_deref(), Some("10.0.0.1:10911"));
        assert_eq!(out.master_ha_server_addr.as_deref(), Some("10.0.0.1:10911-ha"));
        assert_eq!(queues_of(&t, "T"), [("broker-a".to_owned(), 8, 6)]);
        let route = t.route("T").expect("route");
        assert_eq!(route.broker_datas[0].broker_addrs.len(), 2);

        // The slave is promoted: it re-registers as id 0 from the same address, after
        // the old master left. Its old id-1 entry must not linger.
        assert!(t.unregister(CLUSTER, "10.0.0.1:10911", "broker-a"));
        assert_eq!(queues_of(&t, "T"), [("broker-a".to_owned(), 8, 6)], "queues stay while a slave serves reads");
        t.register(reg("broker-a", "10.0.0.2:10911", 0, wrapper(3, &[("T", 2)])), 3);
        let route = t.route("T").expect("route");
        assert_eq!(route.broker_datas[0].broker_addrs, BTreeMap::from([(0, "10.0.0.2:10911".to_owned())]));
        t.check_invariants();
    }

    #[test]
    fn a_stale_broker_cannot_take_over_an_id() {
        let mut t = RouteTable::new(EXPIRY_MS);
        let mut current = wrapper(1, &[("T", 4)]);
        current.data_version.state_version = 5;
        t.register(reg("broker-a", "10.0.0.1:10911", 0, current), 0);
        let mut stale = wrapper(1, &[("T", 1)]);
        stale.data_version.state_version = 4;
        let out = t.register(reg("broker-a", "10.0.0.9:10911", 0, stale), 1);
        assert!(out.refused_stale);
        assert_eq!(t.route("T").expect("route").broker_datas[0].broker_addrs[&0], "10.0.0.1:10911");
        assert_eq!(queues_of(&t, "T"), [("broker-a".to_owned(), 4, 6)]);
        assert_eq!(t.live_count(), 1);
        t.check_invariants();
    }

    #[test]
    fn acting_master_slave_registers_read_only_queues() {
        let mut t = RouteTable::new(EXPIRY_MS);
        let mut r = reg("broker-a", "10.0.0.2:10911", 1, wrapper(1, &[("T", 4)]));
        r.enable_acting_master = Some(true);
        t.register(r, 0);
        assert_eq!(queues_of(&t, "T"), [("broker-a".to_owned(), 4, 4)]);
        // A broker older than 5.0 (no enableActingMaster) never counts as a prime slave.
        let mut old = reg("broker-b", "10.0.0.3:10911", 1, wrapper(1, &[("U", 4)]));
        old.enable_acting_master = None;
        let out = t.register(old, 0);
        assert_eq!(out.topics_applied, 0);
        assert_eq!(t.route("U"), None);
        t.check_invariants();
    }

    #[test]
    fn expiry_scan_removes_silent_brokers_only() {
        let mut t = RouteTable::new(1_000);
        t.register(reg("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[("T", 4), ("A", 1)])), 0);
        t.register(reg("broker-b", "127.0.0.1:10921", 0, wrapper(1, &[("T", 4)])), 0);
        let mut own = reg("broker-c", "127.0.0.1:10931", 0, wrapper(1, &[("T", 4)]));
        own.expiry_ms = Some(10_000);
        own.connection = Some(7);
        t.register(own, 0);

        assert_eq!(t.scan_expired(1_000), [], "exactly at the expiry is still alive");
        t.register(reg("broker-b", "127.0.0.1:10921", 0, wrapper(1, &[("T", 4)])), 900);
        let expired = t.scan_expired(1_001);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].broker, BrokerAddr { cluster: CLUSTER.into(), addr: "127.0.0.1:10911".into() });
        assert_eq!(expired[0].silent_ms, 1_001);
        assert_eq!(t.route("A"), None, "a topic only the expired broker served is gone");
        let names: Vec<String> = t.route("T").expect("route").broker_datas.into_iter().map(|b| b.broker_name).collect();
        assert_eq!(names, ["broker-b", "broker-c"]);
        t.check_invariants();

        // broker-b heartbeated at 900; broker-c stated its own 10 s expiry.
        let expired = t.scan_expired(1_901);
        assert_eq!(expired.iter().map(|e| e.broker.addr.as_str()).collect::<Vec<_>>(), ["127.0.0.1:10921"]);
        let expired = t.scan_expired(10_001);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].connection, Some(7));
        assert_eq!(t.route("T"), None);
        assert!(t.cluster_info().cluster_addr_table.is_empty());
        assert_eq!(t.live_count(), 0);
        t.check_invariants();
    }

    #[test]
    fn refresh_keeps_a_broker_alive() {
        let mut t = RouteTable::new(1_000);
        t.register(reg("broker-a", "127.0.0.1:10911", 0, wrapper(1, &[("T", 4)])), 0);
        assert!(t.refresh(CLUSTER, "127.0.0.1:10911", 800));
        assert!(!t.refresh(CLUSTER, "127.0.0.1:1", 800));
        assert!(!t.refresh("OtherCluster", "127.0.0.1:10911", 800));
        assert_eq!(t.scan_expired(1_500), []);
        assert_eq!(t.scan_expired(1_801).len(), 1);
    }

    #[test]
    fn unregister_removes_address_then_group() {
        let mut t = RouteTable::new(EXPIRY_MS);
        t.register(reg("broker-a", "10.0.0.1:10911", 0, wrapper(1, &[("T", 4)])), 0);
        t.register(reg("broker-a", "10.0.0.2:10911", 1, wrapper(1, &[("T", 4)])), 0);
        t.register(reg("broker-b", "10.0.0.3:10911", 0, wrapper(1, &[("T", 4), ("B", 1)])), 0);

        assert!(t.unregister(CLUSTER, "10.0.0.2:10911", "broker-a"));
        assert_eq!(t.route("T").expect("route").broker_datas[0].broker_addrs.len(), 1);
        assert!(t.unregister(CLUSTER, "10.0.0.1:10911", "broker-a"));
        assert_eq!(queues_of(&t, "T"), [("broker-b".to_owned(), 4, 6)]);
        assert_eq!(t.cluster_info().cluster_addr_table[CLUSTER], ["broker-b"]);
        assert!(!t.unregister(CLUSTER, "10.0.0.1:10911", "broker-a"), "second unregister is a no-op");

        assert!(t.unregister(CLUSTER, "10.0.0.3:10911", "broker-b"));
        assert_eq!(t.route("T"), None);
        assert_eq!(t.route("B"), None);
        assert!(t.topics().is_empty());
        assert!(t.cluster_info().broker_addr_table.is_empty());
        t.check_invariants();
    }

    #[test]
    fn unregister_from_another_address_leaves_the_registered_broker() {
        // A process that failed to start, or an old incarnation, unregistering the name
        // of a broker that now runs at another address: Apache's route manager removes
        // the entry only when the address matches, and so do we.
        let mut t = RouteTable::new(EXPIRY_MS);
        t.register(reg("broker-a-s1", "10.0.0.1:10912", 0, wrapper(1, &[("T", 4)])), 0);
        assert!(!t.unregister(CLUSTER, "10.0.0.9:20912", "broker-a-s1"));
        let route = t.route("T").expect("route kept");
        assert_eq!(route.broker_datas[0].broker_addrs.get(&0).map(String::as_str), Some("10.0.0.1:10912"));
        assert!(t.refresh(CLUSTER, "10.0.0.1:10912", 1), "still live");
        t.check_invariants();
    }

    #[test]
    fn closing_a_connection_removes_the_brokers_registered_over_it() {
        let mut t = RouteTable::new(EXPIRY_MS);
        for (shard, conn) in [(0, 1), (1, 1), (2, 2)] {
            let mut r =
                reg(&format!("broker-a-s{shard}"), &format!("127.0.0.1:{}", 10911 + shard), 0, wrapper(1, &[("T", 4)]));
            r.connection = Some(conn);
            t.register(r, 0);
        }
        // Shard 1 reconnected and re-registered over connection 3 before 1 closed.
        let mut r = reg("broker-a-s1", "127.0.0.1:10912", 0, wrapper(1, &[("T", 4)]));
        r.connection = Some(3);
        t.register(r, 5);

        let gone = t.connection_closed(1);
        assert_eq!(gone.iter().map(|b| b.addr.as_str()).collect::<Vec<_>>(), ["127.0.0.1:10911"]);
        let names: Vec<String> = t.route("T").expect("route").broker_datas.into_iter().map(|b| b.broker_name).collect();
        assert_eq!(names, ["broker-a-s1", "broker-a-s2"]);
        assert!(t.connection_closed(1).is_empty());
        assert!(t.connection_closed(99).is_empty());
        assert_eq!(t.connection_closed(2).len(), 1);
        assert_eq!(t.connection_closed(3).len(), 1);
        assert_eq!(t.route("T"), None);
        t.check_invariants();
    }

    #[test]
    fn cluster_info_and_topic_lists() {
        let mut t = RouteTable::new(EXPIRY_MS);
        t.register(reg("broker-a", "10.0.0.1:10911", 0, wrapper(1, &[("T", 4), ("A", 1)])), 0);
        let mut other = reg("broker-x", "10.0.1.1:10911", 0, wrapper(1, &[("T", 4), ("X", 1)]));
        other.cluster = "Other".into();
        other.zone_name = Some("z1".into());
        t.register(other, 0);

        let info = t.cluster_info();
        assert_eq!(info.cluster_addr_table[CLUSTER], ["broker-a"]);
        assert_eq!(info.cluster_addr_table["Other"], ["broker-x"]);
        assert_eq!(info.broker_addr_table["broker-x"].cluster, "Other");
        assert_eq!(info.broker_addr_table["broker-x"].zone_name.as_deref(), Some("z1"));
        assert_eq!(info.broker_addr_table["broker-a"].broker_addrs[&0], "10.0.0.1:10911");

        assert_eq!(t.topics(), ["A", "T", "X"]);
        assert_eq!(t.topics_of_cluster(CLUSTER), ["A", "T"]);
        assert_eq!(t.topics_of_cluster("Other"), ["T", "X"]);
        assert!(t.topics_of_cluster("Nope").is_empty());

        let (names, addr) = t.system_topics();
        assert_eq!(names, [CLUSTER, "broker-a", "Other", "broker-x"]);
        assert_eq!(addr.as_deref(), Some("10.0.0.1:10911"));
        assert_eq!(RouteTable::new(1).system_topics(), (vec![], None));
    }

    #[test]
    fn admin_edits_of_topics_and_permissions() {
        let mut t = RouteTable::new(EXPIRY_MS);
        t.register(reg("broker-a", "10.0.0.1:10911", 0, wrapper(1, &[("T", 4), ("A", 1)])), 0);
        let mut other = reg("broker-x", "10.0.1.1:10911", 0, wrapper(1, &[("T", 4)]));
        other.cluster = "Other".into();
        t.register(other, 0);

        assert_eq!(t.set_write_perm("broker-a", true), 2);
        assert_eq!(queues_of(&t, "A"), [("broker-a".to_owned(), 1, 4)]);
        assert_eq!(t.set_write_perm("broker-a", false), 2);
        assert_eq!(queues_of(&t, "A"), [("broker-a".to_owned(), 1, 6)]);
        assert_eq!(t.set_write_perm("nobody", true), 0);

        t.delete_topic("T", Some("Other"));
        assert_eq!(queues_of(&t, "T"), [("broker-a".to_owned(), 4, 6)]);
        t.delete_topic("T", Some("Nope"));
        assert_eq!(queues_of(&t, "T").len(), 1);
        t.delete_topic("T", None);
        assert_eq!(t.route("T"), None);
        t.check_invariants();

        let q = |name: &str| QueueData {
            broker_name: name.into(),
            perm: 6,
            read_queue_nums: 2,
            write_queue_nums: 2,
            topic_sys_flag: 0,
        };
        assert_eq!(t.register_topic("S", vec![q("broker-a"), q("ghost")]), Err("ghost".to_owned()));
        assert_eq!(t.route("S"), None);
        assert_eq!(t.register_topic("S", vec![]), Ok(()));
        assert_eq!(t.route("S"), None);
        assert_eq!(t.register_topic("S", vec![q("broker-a"), q("broker-x")]), Ok(()));
        assert_eq!(t.route("S").expect("route").broker_datas.len(), 2);
        t.check_invariants();
    }
}
