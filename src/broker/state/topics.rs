//! Topic rules of a shard, pure: which names a topic may have, which topics the broker
//! keeps for itself (as Apache's broker does, `system_topics`), which of them clients
//! may write, a topic's flush mode as a RocketMQ attribute, how a broker-wide queue
//! count is shared out over the shards, and a topic as RocketMQ's wire `TopicConfig`.
//!
//! A topic's queue counts in a request are totals for the whole broker; shard `i` keeps
//! `queue_share(total, shards, i)` of them, so a 16-queue topic on a 4-shard broker shows
//! in routes as four brokers (`<name>-s0..s3`) with 4 queues each. A shard whose share is
//! 0 does not have the topic. Retry and dead-letter topics (`%RETRY%<group>`,
//! `%DLQ%<group>`) are the exception: they are created per shard, one queue each, as
//! RocketMQ creates them per broker, because each shard receives its own heartbeats and
//! send-backs.
//!
//! The flush mode travels as a RocketMQ 5 topic attribute, `+flush.mode=sync` (or
//! `async`), in the request's `attributes` field; an update that does not mention it
//! keeps the topic's current mode.
//!
//! Invariants: shares sum to the total and differ by at most one; the system topics of a
//! shard are unique by name and every one is a valid topic name.
//!
//! Deliberately not here: creating, changing or deleting topics (the shard's operations,
//! `ops::topics`, do, and tell the other shards and the Raft group).

use std::collections::BTreeMap;

use crate::broker::state::delay_rules::SCHEDULE_TOPIC;
use rockshard_net::body;
use rockshard_net::rockshard::META_TOPIC;
use rockshard_storage::topics::perm;
use rockshard_storage::{FlushMode, TopicConfig};

use crate::config::BrokerConfig;
use crate::limits::{DELAY_LEVEL_COUNT, TOPIC_NAME_MAX_BYTES};

/// The topic whose route producers use before a topic exists (auto-create path), and
/// the usual key of a client's `createTopic`.
pub const AUTO_CREATE_TOPIC: &str = "TBW102";
/// Apache RocketMQ's self-test topic, which every broker has.
pub const SELF_TEST_TOPIC: &str = "SELF_TEST_TOPIC";
/// Queues of the cluster-name topic per shard: Apache's TopicConfig default (16), which
/// its broker gives that topic.
const CLUSTER_TOPIC_QUEUES: u32 = 16;
/// Retry topics are `%RETRY%<group>`, dead-letter topics `%DLQ%<group>`.
pub const RETRY_PREFIX: &str = "%RETRY%";
pub const DLQ_PREFIX: &str = "%DLQ%";
/// The attribute key carrying a topic's flush mode.
pub const FLUSH_MODE_ATTRIBUTE: &str = "flush.mode";

/// Whether a name is a topic clients may create: RocketMQ's charset and length.
pub fn check_topic_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > TOPIC_NAME_MAX_BYTES {
        return Err(format!("topic name must be 1 to {TOPIC_NAME_MAX_BYTES} bytes"));
    }
    if !rockshard_storage::record::valid_topic(name.as_bytes()) {
        return Err(format!("topic `{name}` has characters outside [%|a-zA-Z0-9_-]"));
    }
    if name == META_TOPIC {
        return Err(format!("topic `{name}` is reserved for the broker's replicated metadata"));
    }
    Ok(())
}

/// Reads `+flush.mode=...` out of a RocketMQ attribute string (`+k=v,+k2=v2,-k3`).
/// Unknown attributes are ignored, as RocketMQ ignores those it does not support.
pub fn flush_mode_attribute(attributes: &str) -> std::result::Result<Option<FlushMode>, String> {
    for item in attributes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let item = item.strip_prefix('+').unwrap_or(item);
        if let Some((key, value)) = item.split_once('=') {
            if key.trim() == FLUSH_MODE_ATTRIBUTE {
                return value.trim().parse::<FlushMode>().map(Some);
            }
        }
    }
    Ok(None)
}

/// A topic the broker keeps for itself on a shard (`system_topics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemTopic {
    pub name: String,
    /// Queues on this shard.
    pub queues: u32,
    pub perm: u32,
}

/// The topics shard `shard` keeps for itself, as Apache RocketMQ 5's broker creates them
/// at start (`TopicConfigManager.init`), each shard being a broker of its own in routes:
/// - the delay topic `SCHEDULE_TOPIC_XXXX`, one queue per delay level;
/// - `TBW102`, the key topic: producers route a topic that does not exist yet through
///   it, and `createTopic(key, ...)` in clients sends UPDATE_AND_CREATE_TOPIC to every
///   master in its route. Apache creates it only with auto-create on; it is kept here
///   with auto-create off too, so that client-side topic creation keeps working, but
///   then without the inherit permission (nothing is created from it on a send: the
///   broker refuses unknown topics whatever the permission says);
/// - `SELF_TEST_TOPIC`, one queue (Apache: always);
/// - the cluster-name topic, 16 queues (Apache's TopicConfig default) with read, write
///   and inherit permission (Apache's `clusterTopicEnable`, on by default): its route is
///   every master of the cluster, the usual key of `createTopic`;
/// - broker-name topics, one queue, read, write and inherit (`brokerTopicEnable`): for
///   Apache a broker's own name. A shard registers as `<broker_name>-s<i>`, so shard i
///   keeps the topic of that name (the route of one shard), and every shard keeps the
///   process's `<broker_name>` (the route of all shards of this process). Either as a
///   `createTopic` key creates the topic on the whole process: a topic request to one
///   shard applies the broker-wide queue counts to every shard.
///
/// These are stored like any topic (Apache keeps them in its topic table too), so sends
/// to the cluster- and broker-name topics (`mqadmin clusterRT`, `sendMsgStatus`) work.
/// A cluster name that is no valid topic name gets no topic.
pub fn system_topics(config: &BrokerConfig, shard: usize) -> Vec<SystemTopic> {
    let topic = |name: &str, queues: u32, perm: u32| SystemTopic { name: name.to_string(), queues, perm };
    let named = perm::READ_WRITE | perm::INHERIT;
    let auto_create_perm = if config.auto_create_topic { perm::READ_WRITE | perm::INHERIT } else { perm::READ_WRITE };
    let share = queue_share(config.default_topic_queues, config.shards, shard).max(1);
    let mut topics = vec![
        topic(SCHEDULE_TOPIC, DELAY_LEVEL_COUNT, perm::READ_WRITE),
        topic(AUTO_CREATE_TOPIC, share, auto_create_perm),
        topic(SELF_TEST_TOPIC, 1, perm::READ_WRITE),
        topic(&config.cluster_name, CLUSTER_TOPIC_QUEUES, named),
        topic(&config.broker_name, 1, named),
        topic(&config.shard_broker_name(shard), 1, named),
    ];
    topics.retain(|t| rockshard_storage::record::valid_topic(t.name.as_bytes()));
    // A cluster named like the broker (or like another system topic) is one topic; the
    // first entry wins.
    let mut seen = std::collections::HashSet::new();
    topics.retain(|t| seen.insert(t.name.clone()));
    topics
}

/// Whether `name` is a topic the broker keeps for itself (on some shard): clients may
/// neither redefine nor delete it (Apache answers "conflict with system topic").
pub fn is_system_topic(config: &BrokerConfig, name: &str) -> bool {
    (0..config.shards).any(|i| name == config.shard_broker_name(i))
        || system_topics(config, 0).iter().any(|t| t.name == name)
}

/// Whether clients may send to `name`: not the delay topic, which only the broker
/// writes (a message there without REAL_TOPIC would be undeliverable), nor the
/// replicated-metadata topic (a client's record there would be applied as a topic or
/// offset change on every node of a replicated group), nor SELF_TEST_TOPIC (Apache
/// forbids clients it).
pub fn is_client_writable(name: &str) -> bool {
    name != SCHEDULE_TOPIC && name != META_TOPIC && name != SELF_TEST_TOPIC
}

/// Shard `shard`'s share of `total` queues spread over `shards` shards: as even as
/// possible, lower shards take the remainder. Shares sum to `total`.
pub fn queue_share(total: u32, shards: usize, shard: usize) -> u32 {
    let shards = shards as u32;
    let shard = shard as u32;
    total / shards + u32::from(shard < total % shards)
}

/// A topic as RocketMQ's `TopicConfig` body shows it; the flush mode rides in
/// `attributes` as `flush.mode`, the key topic creation reads.
pub fn wire_topic_config(t: &TopicConfig) -> body::TopicConfig {
    body::TopicConfig {
        attributes: BTreeMap::from([(FLUSH_MODE_ATTRIBUTE.to_string(), t.flush.to_string())]),
        order: t.order,
        perm: t.perm as i32,
        read_queue_nums: t.read_queues as i32,
        topic_filter_type: "SINGLE_TAG".to_string(),
        topic_name: t.name.clone(),
        topic_sys_flag: t.sys_flag as i32,
        write_queue_nums: t.write_queues as i32,
    }
}

/// Queue ids of a topic on this shard: consumers read `0..read`, producers write
/// `0..write`; admin answers cover both.
pub fn queue_ids(t: &TopicConfig) -> std::ops::Range<i32> {
    0..t.read_queues.max(t.write_queues) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerSettings;

    fn config_with(settings: BrokerSettings) -> BrokerConfig {
        BrokerConfig::resolve(None, BrokerSettings { shards: Some(2), ..settings }).expect("config")
    }

    #[test]
    fn system_topics_are_apaches_per_shard() {
        let config = config_with(BrokerSettings::default());
        let rw = perm::READ_WRITE;
        let rwx = perm::READ_WRITE | perm::INHERIT;
        let shard1: Vec<(String, u32, u32)> =
            system_topics(&config, 1).into_iter().map(|t| (t.name, t.queues, t.perm)).collect();
        let expected: Vec<(String, u32, u32)> = [
            ("SCHEDULE_TOPIC_XXXX", 18, rw),
            ("TBW102", 4, rwx),
            ("SELF_TEST_TOPIC", 1, rw),
            ("DefaultCluster", 16, rwx),
            ("broker-a", 1, rwx),
            ("broker-a-s1", 1, rwx),
        ]
        .into_iter()
        .map(|(n, q, p)| (n.to_string(), q, p))
        .collect();
        assert_eq!(shard1, expected);
        for name in ["DefaultCluster", "broker-a", "broker-a-s0", "broker-a-s1", "TBW102", "SELF_TEST_TOPIC"] {
            assert!(is_system_topic(&config, name), "{name}");
        }
        assert!(!is_system_topic(&config, "broker-a-s2"), "no third shard");
        assert!(!is_system_topic(&config, "orders") && !is_system_topic(&config, "%RETRY%g"));
        assert!(!is_client_writable(SELF_TEST_TOPIC));

        // With auto-create off TBW102 stays, as createTopic's key, without inherit.
        let off = config_with(BrokerSettings { auto_create_topic: Some(false), ..Default::default() });
        let key = system_topics(&off, 0).into_iter().find(|t| t.name == AUTO_CREATE_TOPIC).expect("TBW102");
        assert_eq!(key.perm, rw);

        // A cluster name no topic may have gets no topic; one equal to the broker name
        // gives one topic.
        let odd = config_with(BrokerSettings { cluster_name: Some("a.b".into()), ..Default::default() });
        assert!(system_topics(&odd, 0).iter().all(|t| t.name != "a.b"));
        let same = config_with(BrokerSettings { cluster_name: Some("broker-a".into()), ..Default::default() });
        let names: Vec<String> = system_topics(&same, 0).into_iter().map(|t| t.name).collect();
        assert_eq!(names.iter().filter(|n| *n == "broker-a").count(), 1, "{names:?}");
    }

    #[test]
    fn the_metadata_topic_is_neither_creatable_nor_writable() {
        assert!(check_topic_name(META_TOPIC).unwrap_err().contains("reserved"));
        assert!(!is_client_writable(META_TOPIC));
        assert!(check_topic_name("orders").is_ok() && is_client_writable("orders"));
    }

    #[test]
    fn flush_mode_rides_in_rocketmq_attributes() {
        assert_eq!(flush_mode_attribute("+flush.mode=sync"), Ok(Some(FlushMode::Sync)));
        assert_eq!(flush_mode_attribute("+message.type=NORMAL,+flush.mode=async"), Ok(Some(FlushMode::Async)));
        assert_eq!(flush_mode_attribute("+message.type=NORMAL"), Ok(None));
        assert_eq!(flush_mode_attribute(""), Ok(None));
        assert!(flush_mode_attribute("+flush.mode=often").unwrap_err().contains("`sync` or `async`"));
    }

    #[test]
    fn topic_names_follow_rocketmq() {
        assert!(check_topic_name("orders_v2-%RETRY%x").is_ok());
        assert!(check_topic_name("").is_err());
        assert!(check_topic_name("a b").is_err());
        assert!(check_topic_name(&"x".repeat(TOPIC_NAME_MAX_BYTES + 1)).is_err());
    }

    #[test]
    fn shares_sum_to_the_total_and_differ_by_at_most_one() {
        for shards in 1..=9 {
            for total in 0..40 {
                let shares: Vec<u32> = (0..shards).map(|s| queue_share(total, shards, s)).collect();
                assert_eq!(shares.iter().sum::<u32>(), total);
                let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(max - min <= 1, "{shares:?}");
            }
        }
        assert_eq!(queue_share(16, 4, 3), 4);
        assert_eq!(queue_share(1, 2, 1), 0);
    }

    #[test]
    fn topic_configs_carry_the_flush_mode_as_an_attribute() {
        let mut t = TopicConfig::new("T", 3, FlushMode::Sync);
        t.read_queues = 2;
        t.order = true;
        let wire = wire_topic_config(&t);
        assert_eq!(wire.attributes.get("flush.mode").map(String::as_str), Some("sync"));
        assert_eq!((wire.read_queue_nums, wire.write_queue_nums, wire.perm, wire.order), (2, 3, 6, true));
        assert_eq!(queue_ids(&t), 0..3);
        // What the wire form says is what topic creation would read back.
        let attrs = format!("+{}={}", FLUSH_MODE_ATTRIBUTE, wire.attributes["flush.mode"]);
        assert_eq!(flush_mode_attribute(&attrs), Ok(Some(FlushMode::Sync)));
    }
}
