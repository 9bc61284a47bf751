//! Topics on a shard: creation by request (UPDATE_AND_CREATE_TOPIC) and on first send
//! (auto-create), their spread over shards, the system topics the broker keeps for
//! itself as Apache's does (`system_topics`), and deletion.
//!
//! A topic's queue counts in a request are totals for the whole broker; shard `i` keeps
//! `control::queue_share(total, shards, i)` of them, so a 16-queue topic on a 4-shard
//! broker shows in routes as four brokers (`<name>-s0..s3`) with 4 queues each. A shard
//! whose share is 0 does not have the topic. Retry and dead-letter topics are the
//! exception: they are created per shard, one queue each, as RocketMQ creates them per
//! broker, because each shard receives its own heartbeats and send-backs.
//!
//! The flush mode travels as a RocketMQ 5 topic attribute, `+flush.mode=sync` (or
//! `async`), in the request's `attributes` field; an update that does not mention it
//! keeps the topic's current mode.
//!
//! Runs on the shard's executor; changes reach other shards as `control` messages, and
//! a request that changes topics is answered only once every shard applied (and saved)
//! the change, or with an error naming the shards that did not.

use std::rc::Rc;

use rockshard_net::code::response;
use rockshard_net::headers::CreateTopicRequestHeader;
use rockshard_net::rockshard::META_TOPIC;
use rockshard_net::RemotingCommand;
use rockshard_storage::store::SCHEDULE_TOPIC;
use rockshard_storage::topics::perm;
use rockshard_storage::{FlushMode, TopicConfig};
use tracing::{info, warn};

use crate::broker::control::{describe_missing, queue_share, ControlMsg, Missing, TopicSpec};
use crate::broker::replication;
use crate::broker::shard::{bad_header, reply, Shard};
use crate::config::BrokerConfig;
use crate::limits::{DELAY_LEVEL_COUNT, TOPIC_NAME_MAX_BYTES, TOPIC_QUEUES_MAX};
use crate::remoting::server::Connection;
use crate::{Error, Result};

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
    if !rockshard_storage::store::valid_topic(name.as_bytes()) {
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
    topics.retain(|t| rockshard_storage::store::valid_topic(t.name.as_bytes()));
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

/// Creates the topics this shard keeps for itself (`system_topics`). Those already there
/// keep their stored configuration, as Apache's persisted table overrides its defaults;
/// TBW102 alone is made to match the configuration, since auto-create decides its
/// permission.
pub async fn ensure_system_topics(shard: &Rc<Shard>) -> Result<()> {
    for t in system_topics(&shard.config, shard.id) {
        let existing = shard.store.topic(&t.name);
        let matches = existing.as_ref().is_some_and(|e| {
            t.name != AUTO_CREATE_TOPIC || (e.perm == t.perm && e.write_queues == t.queues && e.read_queues == t.queues)
        });
        if matches {
            continue;
        }
        let flush = existing.map_or(shard.config.default_flush, |e| e.flush);
        let mut config = TopicConfig::new(t.name.clone(), t.queues, flush);
        config.perm = t.perm;
        shard.store.upsert_topic(config.clone()).await?;
        shard.topics_changed();
        replication::topic_changed(shard, Some(config), None);
    }
    Ok(())
}

/// Creates `name` on this shard only, if it is missing; returns its config once the
/// topic table holding it is saved (an earlier save of it may have failed).
pub async fn ensure_local_topic(shard: &Rc<Shard>, name: &str, queues: u32, perm: u32) -> Result<TopicConfig> {
    if let Some(t) = shard.store.topic(name) {
        shard.store.persist_topics().await?;
        return Ok(t);
    }
    let mut t = TopicConfig::new(name, queues, shard.config.default_flush);
    t.perm = perm;
    shard.store.upsert_topic(t.clone()).await?;
    shard.topics_changed();
    replication::topic_changed(shard, Some(t.clone()), None);
    Ok(t)
}

/// Creates a per-shard topic (one queue per shard, like a retry topic) here and on every
/// other shard, and returns once every shard has it saved. A client learns a new group's
/// retry queues from one route lookup right after its first heartbeat; heartbeats reach
/// the shards one after another, so without this the route could show only some shards'
/// retry queues until the next refresh 30 s later, and retries stored on the others
/// would wait that long.
///
/// A creation that some shard did not finish is an error naming it, and the topic is
/// remembered as unfinished (`Shard::unfinished_topics`), so the next call (the group's
/// next heartbeat) sends it to the other shards again instead of taking the local copy
/// for the whole.
pub async fn ensure_topic_on_every_shard(shard: &Rc<Shard>, name: &str, queues: u32, perm: u32) -> Result<TopicConfig> {
    if let Some(t) = shard.store.topic(name) {
        if !shard.unfinished_topics.borrow().contains(name) {
            return Ok(t);
        }
    }
    shard.unfinished_topics.borrow_mut().insert(name.to_owned());
    let local = ensure_local_topic(shard, name, queues, perm).await;
    let msg = ControlMsg::EnsureLocalTopic { name: name.to_string(), queues, perm };
    let others = shard.control.apply_on_others(&msg).await;
    let outcome = all_applied(shard, format!("creating topic `{name}`"), local, others);
    match outcome {
        Ok(t) => {
            shard.unfinished_topics.borrow_mut().remove(name);
            Ok(t)
        }
        Err(e) => {
            shard.unfinished_topics.borrow_mut().insert(name.to_owned());
            Err(e)
        }
    }
}

/// Puts this shard's own result and the shards that did not apply a change together:
/// `Ok` only when every shard has it; otherwise an error naming each shard without it.
fn all_applied<T>(shard: &Shard, change: String, local: Result<T>, others: Vec<Missing>) -> Result<T> {
    let mut missing = Vec::new();
    let local = match local {
        Ok(v) => Some(v),
        Err(e) => {
            missing.push(Missing { shard: shard.id, reason: e.to_string() });
            None
        }
    };
    missing.extend(others);
    match local {
        Some(v) if missing.is_empty() => Ok(v),
        _ => {
            missing.sort_by_key(|m| m.shard);
            Err(Error::NotOnEveryShard { change, missing: describe_missing(&missing) })
        }
    }
}

/// Applies a broker-wide topic spec to this shard's share.
pub async fn apply_spec(shard: &Rc<Shard>, spec: &TopicSpec) -> Result<()> {
    let (shards, id) = (shard.config.shards, shard.id);
    let write = queue_share(spec.write_queues, shards, id);
    let read = queue_share(spec.read_queues, shards, id);
    let existing = shard.store.topic(&spec.name);
    if write == 0 && read == 0 {
        if existing.is_some() {
            shard.store.remove_topic(&spec.name).await?;
            shard.topics_changed();
            replication::topic_changed(shard, None, Some(&spec.name));
        }
        return Ok(());
    }
    let flush = spec.flush.or(existing.as_ref().map(|t| t.flush)).unwrap_or(shard.config.default_flush);
    let mut t = TopicConfig::new(spec.name.clone(), write, flush);
    t.read_queues = read;
    t.perm = spec.perm;
    t.order = spec.order;
    if existing.as_ref() != Some(&t) {
        shard.store.upsert_topic(t.clone()).await?;
        shard.topics_changed();
        replication::topic_changed(shard, Some(t), None);
    } else {
        // Unchanged in memory, but an earlier save of it may have failed: the spec is
        // applied only once it is on disk.
        shard.store.persist_topics().await?;
    }
    Ok(())
}

/// Applies `spec` here and on every other shard; an error names the shards that do not
/// have it (sending the same request again finishes it).
pub async fn apply_everywhere(shard: &Rc<Shard>, spec: TopicSpec) -> Result<()> {
    let local = apply_spec(shard, &spec).await;
    let change = format!("creating or updating topic `{}`", spec.name);
    let others = shard.control.apply_on_others(&ControlMsg::UpsertTopic(spec)).await;
    all_applied(shard, change, local, others)
}

/// Removes `name` from every shard; an error names the shards that still have it.
pub async fn delete_topic_everywhere(shard: &Rc<Shard>, name: &str) -> Result<bool> {
    let local = remove_local(shard, name).await;
    let others = shard.control.apply_on_others(&ControlMsg::DeleteTopic(name.to_string())).await;
    all_applied(shard, format!("deleting topic `{name}`"), local, others)
}

/// Removes a topic from this shard with its consumer offsets: a topic created again
/// under the same name starts with no committed offsets, as in RocketMQ.
async fn remove_local(shard: &Rc<Shard>, name: &str) -> Result<bool> {
    let removed = shard.store.remove_topic(name).await?.is_some();
    shard.offsets.remove_topic(name);
    if removed {
        shard.topics_changed();
        replication::topic_changed(shard, None, Some(name));
    }
    Ok(removed)
}

/// Whether clients may send to `name`: not the delay topic, which only the broker
/// writes (a message there without REAL_TOPIC would be undeliverable), nor the
/// replicated-metadata topic (a client's record there would be applied as a topic or
/// offset change on every node of a replicated group), nor SELF_TEST_TOPIC (Apache
/// forbids clients it).
pub fn is_client_writable(name: &str) -> bool {
    name != SCHEDULE_TOPIC && name != META_TOPIC && name != SELF_TEST_TOPIC
}

/// Auto-creates `name` for a send that named an unknown topic, when allowed. Returns
/// this shard's config of it, or why not.
pub async fn auto_create(shard: &Rc<Shard>, name: &str) -> std::result::Result<TopicConfig, (i32, String)> {
    if !shard.config.auto_create_topic {
        return Err((
            response::TOPIC_NOT_EXIST,
            format!("topic `{name}` does not exist on {} and auto-create is off; create it with `rockshard admin topic create`", shard.broker_name),
        ));
    }
    check_topic_name(name).map_err(|e| (response::INVALID_PARAMETER, e))?;
    let spec = TopicSpec {
        name: name.to_string(),
        read_queues: shard.config.default_topic_queues,
        write_queues: shard.config.default_topic_queues,
        perm: perm::READ_WRITE,
        flush: None,
        order: false,
    };
    if let Err(e) = apply_everywhere(shard, spec).await {
        return Err((response::SYSTEM_ERROR, format!("auto-creating topic `{name}`: {e}")));
    }
    info!(shard = shard.id, topic = name, "topic auto-created");
    shard.store.topic(name).ok_or_else(|| {
        (
            response::TOPIC_NOT_EXIST,
            format!("topic `{name}` was created, but none of its queues is on {}", shard.broker_name),
        )
    })
}

/// UPDATE_AND_CREATE_TOPIC (17).
pub async fn handle(shard: &Rc<Shard>, _conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
    let h: CreateTopicRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(&req, e),
    };
    if let Err(e) = check_topic_name(&h.topic) {
        return reply(&req, response::INVALID_PARAMETER, e);
    }
    if is_system_topic(&shard.config, &h.topic) {
        return reply(
            &req,
            response::INVALID_PARAMETER,
            format!("the topic[{}] is conflict with system topic: the broker keeps it itself", h.topic),
        );
    }
    let max = TOPIC_QUEUES_MAX as i32;
    if !(0..=max).contains(&h.read_queue_nums) || !(1..=max).contains(&h.write_queue_nums) {
        return reply(
            &req,
            response::INVALID_PARAMETER,
            format!(
                "queue counts read {} / write {}: write must be 1 to {max}, read 0 to {max}",
                h.read_queue_nums, h.write_queue_nums
            ),
        );
    }
    let flush = match h.attributes.as_deref().map(flush_mode_attribute).transpose() {
        Ok(f) => f.flatten(),
        Err(e) => return reply(&req, response::INVALID_PARAMETER, format!("attribute {FLUSH_MODE_ATTRIBUTE}: {e}")),
    };
    let spec = TopicSpec {
        name: h.topic.clone(),
        read_queues: h.read_queue_nums as u32,
        write_queues: h.write_queue_nums as u32,
        perm: (h.perm as u32) & (perm::READ_WRITE | perm::INHERIT),
        flush,
        order: h.order,
    };
    match apply_everywhere(shard, spec).await {
        Ok(()) => Some(RemotingCommand::response_to(&req, response::SUCCESS, None)),
        Err(e) => reply(&req, response::SYSTEM_ERROR, format!("creating topic `{}`: {e}", h.topic)),
    }
}

/// Applies topic changes other shards send.
pub fn start(shard: &Rc<Shard>) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        loop {
            let msg = futures_lite::future::or(async { Some(shard.control.next().await) }, async {
                shard.shutdown.wait().await;
                None
            })
            .await;
            let Some(incoming) = msg else { break };
            // One at a time, in the order they came: two changes of one topic from one
            // shard apply in the order that shard sent them.
            let result = match &incoming.msg {
                ControlMsg::UpsertTopic(spec) => apply_spec(&shard, spec).await,
                ControlMsg::DeleteTopic(name) => remove_local(&shard, name).await.map(|_| ()),
                ControlMsg::EnsureLocalTopic { name, queues, perm } => {
                    ensure_local_topic(&shard, name, *queues, *perm).await.map(|_| ())
                }
            };
            if let Err(e) = &result {
                warn!(shard = shard.id, from = incoming.from, msg = ?incoming.msg, error = %e, "applying a topic change from another shard failed");
            }
            shard.control.answer(&incoming, result.map_err(|e| e.to_string())).await;
        }
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::control::testing::{Peer, TestPeer};
    use crate::broker::control::{ControlPlane, Mesh};
    use crate::config::{BrokerConfig, BrokerSettings};
    use crate::remoting::server::Signal;

    /// Shard 0 of a two-shard broker whose shard 1 fails the first two changes it gets:
    /// a retry topic's creation is reported unfinished, naming shard 1, and the next
    /// request for it (the group's next heartbeat) finishes it; after that the topic
    /// costs no message to the other shard.
    #[test]
    fn a_retry_topic_another_shard_did_not_create_is_reported_and_finished_by_the_next_request() {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = BrokerSettings {
            data_dir: Some(dir.path().to_path_buf()),
            shards: Some(2),
            segment_size_bytes: Some(1 << 20),
            ..Default::default()
        };
        let config = BrokerConfig::resolve(None, settings).expect("config");
        let mut endpoints = Mesh::new(2).into_endpoints();
        let peer = TestPeer::spawn(endpoints.pop().expect("shard 1"), Peer::FailFirst(2));
        let ours = endpoints.pop().expect("shard 0");
        glommio::LocalExecutorBuilder::default().make().expect("executor").run(async move {
            let control = ControlPlane::connect(0, ours).await;
            let shard = Shard::open(0, Rc::new(config), control, Signal::new()).await.expect("shard opens");
            let name = "%RETRY%late";
            let err = ensure_topic_on_every_shard(&shard, name, 1, perm::READ_WRITE).await.expect_err("shard 1 failed");
            let text = err.to_string();
            assert!(matches!(err, Error::NotOnEveryShard { .. }), "{text}");
            assert!(text.contains("shard 1 (disk trouble #2)") && text.contains(name), "{text}");
            assert!(shard.store.topic(name).is_some(), "this shard has it");
            assert!(shard.unfinished_topics.borrow().contains(name), "and knows the others may not");

            ensure_topic_on_every_shard(&shard, name, 1, perm::READ_WRITE).await.expect("finished now");
            assert!(shard.unfinished_topics.borrow().is_empty());
            assert_eq!(peer.seen(), 3);
            ensure_topic_on_every_shard(&shard, name, 1, perm::READ_WRITE).await.expect("known everywhere");
            assert_eq!(peer.seen(), 3, "a topic every shard has needs no message");
            shard.store.close().await.expect("closes");
            peer.stop();
        });
    }

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
}
