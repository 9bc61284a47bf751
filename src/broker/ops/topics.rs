//! Topic changes as operations of one shard: the system topics it keeps, topics created
//! on first use (per shard, like retry topics, or broker-wide), broker-wide specs applied
//! to this shard's share, deletion, and the changes other shards send.
//!
//! Every change is saved with the topic table before it counts, announced to the
//! NameServers at once (`topics_changed`), and in a replicated group proposed to the
//! Raft log (`ops::replication`), which every node applies when it commits. A change
//! made on one shard reaches the others as a `control` message; a request that changes
//! topics is answered only once every shard applied (and saved) it, or with an error
//! naming the shards that did not.
//!
//! Invariants: applying a spec or a message is idempotent, so a change sent again (a
//! client's retry, the next heartbeat) finishes a change some shard missed; a per-shard
//! topic some other shard has not confirmed stays in `unfinished_topics` until one
//! call confirms it everywhere.
//!
//! Runs on the shard's executor. Deliberately not here: the naming rules, system topic
//! list and queue shares (`state::topics`), and deciding whether a client may create a
//! topic (the handlers).

use std::collections::HashSet;

use rockshard_storage::TopicConfig;

use super::control::{describe_missing, ControlMsg, Missing, TopicSpec};
use super::Shard;
use crate::broker::state::topics::{queue_share, system_topics, AUTO_CREATE_TOPIC};
use crate::{Error, Result};

impl Shard {
    /// Creates the topics this shard keeps for itself (`system_topics`). Those already
    /// there keep their stored configuration, as Apache's persisted table overrides its
    /// defaults; TBW102 alone is made to match the configuration, since auto-create
    /// decides its permission.
    pub async fn ensure_system_topics(&self) -> Result<()> {
        for t in system_topics(&self.config, self.id) {
            let existing = self.store.topic(&t.name);
            let matches = existing.as_ref().is_some_and(|e| {
                t.name != AUTO_CREATE_TOPIC
                    || (e.perm == t.perm && e.write_queues == t.queues && e.read_queues == t.queues)
            });
            if matches {
                continue;
            }
            let flush = existing.map_or(self.config.default_flush, |e| e.flush);
            let mut config = TopicConfig::new(t.name.clone(), t.queues, flush);
            config.perm = t.perm;
            self.store.upsert_topic(config.clone()).await?;
            self.topics_changed();
            self.replicate_topic_change(Some(config), None);
        }
        Ok(())
    }

    /// Creates `name` on this shard only, if it is missing; returns its config once the
    /// topic table holding it is saved (an earlier save of it may have failed).
    pub async fn ensure_local_topic(&self, name: &str, queues: u32, perm: u32) -> Result<TopicConfig> {
        if let Some(t) = self.store.topic(name) {
            self.store.persist_topics().await?;
            return Ok(t);
        }
        let mut t = TopicConfig::new(name, queues, self.config.default_flush);
        t.perm = perm;
        self.store.upsert_topic(t.clone()).await?;
        self.topics_changed();
        self.replicate_topic_change(Some(t.clone()), None);
        Ok(t)
    }

    /// Creates a per-shard topic (one queue per shard, like a retry topic) here and on
    /// every other shard, and returns once every shard has it saved. A client learns a
    /// new group's retry queues from one route lookup right after its first heartbeat;
    /// heartbeats reach the shards one after another, so without this the route could
    /// show only some shards' retry queues until the next refresh 30 s later, and retries
    /// stored on the others would wait that long.
    ///
    /// A creation that some shard did not finish is an error naming it, and the topic is
    /// remembered as unfinished (`unfinished_topics`), so the next call (the group's next
    /// heartbeat) sends it to the other shards again instead of taking the local copy
    /// for the whole.
    pub async fn ensure_topic_on_every_shard(&self, name: &str, queues: u32, perm: u32) -> Result<TopicConfig> {
        if let Some(t) = self.store.topic(name) {
            if !self.unfinished_topics.read(|u| u.contains(name)) {
                return Ok(t);
            }
        }
        self.unfinished_topics.write(|u| u.insert(name.to_owned()));
        let local = self.ensure_local_topic(name, queues, perm).await;
        let msg = ControlMsg::EnsureLocalTopic { name: name.to_string(), queues, perm };
        let others = self.control.apply_on_others(&msg).await;
        let outcome = self.all_applied(format!("creating topic `{name}`"), local, others);
        match outcome {
            Ok(t) => {
                self.unfinished_topics.write(|u| u.remove(name));
                Ok(t)
            }
            Err(e) => {
                self.unfinished_topics.write(|u| u.insert(name.to_owned()));
                Err(e)
            }
        }
    }

    /// Puts this shard's own result and the shards that did not apply a change
    /// together: `Ok` only when every shard has it; otherwise an error naming each shard
    /// without it.
    fn all_applied<T>(&self, change: String, local: Result<T>, others: Vec<Missing>) -> Result<T> {
        let mut missing = Vec::new();
        let local = match local {
            Ok(v) => Some(v),
            Err(e) => {
                missing.push(Missing { shard: self.id, reason: e.to_string() });
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
    pub async fn apply_spec(&self, spec: &TopicSpec) -> Result<()> {
        let (shards, id) = (self.config.shards, self.id);
        let write = queue_share(spec.write_queues, shards, id);
        let read = queue_share(spec.read_queues, shards, id);
        let existing = self.store.topic(&spec.name);
        if write == 0 && read == 0 {
            if existing.is_some() {
                self.store.remove_topic(&spec.name).await?;
                self.topics_changed();
                self.replicate_topic_change(None, Some(&spec.name));
            }
            return Ok(());
        }
        let flush = spec.flush.or(existing.as_ref().map(|t| t.flush)).unwrap_or(self.config.default_flush);
        let mut t = TopicConfig::new(spec.name.clone(), write, flush);
        t.read_queues = read;
        t.perm = spec.perm;
        t.order = spec.order;
        if existing.as_ref() != Some(&t) {
            self.store.upsert_topic(t.clone()).await?;
            self.topics_changed();
            self.replicate_topic_change(Some(t), None);
        } else {
            // Unchanged in memory, but an earlier save of it may have failed: the spec
            // is applied only once it is on disk.
            self.store.persist_topics().await?;
        }
        Ok(())
    }

    /// Applies `spec` here and on every other shard; an error names the shards that do
    /// not have it (sending the same request again finishes it).
    pub async fn apply_everywhere(&self, spec: TopicSpec) -> Result<()> {
        let local = self.apply_spec(&spec).await;
        let change = format!("creating or updating topic `{}`", spec.name);
        let others = self.control.apply_on_others(&ControlMsg::UpsertTopic(spec)).await;
        self.all_applied(change, local, others)
    }

    /// Removes `name` from every shard; an error names the shards that still have it.
    pub async fn delete_topic_everywhere(&self, name: &str) -> Result<bool> {
        let local = self.remove_local_topic(name).await;
        let others = self.control.apply_on_others(&ControlMsg::DeleteTopic(name.to_string())).await;
        self.all_applied(format!("deleting topic `{name}`"), local, others)
    }

    /// Removes a topic from this shard with its consumer offsets: a topic created again
    /// under the same name starts with no committed offsets, as in RocketMQ.
    async fn remove_local_topic(&self, name: &str) -> Result<bool> {
        let removed = self.store.remove_topic(name).await?.is_some();
        self.offsets.write(|o| o.remove_topic(name));
        if removed {
            self.topics_changed();
            self.replicate_topic_change(None, Some(name));
        }
        Ok(removed)
    }

    /// Applies a topic change another shard sent (idempotent, like every change).
    pub async fn apply_control(&self, msg: &ControlMsg) -> Result<()> {
        match msg {
            ControlMsg::UpsertTopic(spec) => self.apply_spec(spec).await,
            ControlMsg::DeleteTopic(name) => self.remove_local_topic(name).await.map(|_| ()),
            ControlMsg::EnsureLocalTopic { name, queues, perm } => {
                self.ensure_local_topic(name, *queues, *perm).await.map(|_| ())
            }
        }
    }

    /// Applies topic changes a replicated group committed (in log order): upserts whose
    /// config differs, deletions with their offsets. A failure is logged and the next
    /// change applied; the NameServers hear of the result at once.
    pub async fn apply_replicated_topics(&self, upserts: Vec<TopicConfig>, deletes: Vec<String>) {
        for t in upserts {
            if self.store.topic(&t.name).as_ref() != Some(&t) {
                if let Err(e) = self.store.upsert_topic(t).await {
                    tracing::warn!(shard = self.id, error = %e, "applying a replicated topic change failed");
                }
            }
        }
        for name in deletes {
            if let Err(e) = self.store.remove_topic(&name).await {
                tracing::warn!(shard = self.id, error = %e, "applying a replicated topic deletion failed");
            }
            self.offsets.write(|o| o.remove_topic(&name));
        }
        self.topics_changed();
    }

    /// Per-shard topics this shard created whose creation some other shard has not
    /// confirmed.
    pub fn unfinished_topics(&self) -> HashSet<String> {
        self.unfinished_topics.read(HashSet::clone)
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use rockshard_storage::topics::perm;

    use super::*;
    use crate::broker::ops::control::testing::{Peer, TestPeer};
    use crate::broker::ops::control::{ControlPlane, Mesh};
    use crate::config::{BrokerConfig, BrokerSettings};
    use rockshard_local::Signal;

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
            let err = shard.ensure_topic_on_every_shard(name, 1, perm::READ_WRITE).await.expect_err("shard 1 failed");
            let text = err.to_string();
            assert!(matches!(err, Error::NotOnEveryShard { .. }), "{text}");
            assert!(text.contains("shard 1 (disk trouble #2)") && text.contains(name), "{text}");
            assert!(shard.store.topic(name).is_some(), "this shard has it");
            assert!(shard.unfinished_topics.read(|u| u.contains(name)), "and knows the others may not");

            shard.ensure_topic_on_every_shard(name, 1, perm::READ_WRITE).await.expect("finished now");
            assert!(shard.unfinished_topics.read(|u| u.is_empty()));
            assert_eq!(peer.seen(), 3);
            shard.ensure_topic_on_every_shard(name, 1, perm::READ_WRITE).await.expect("known everywhere");
            assert_eq!(peer.seen(), 3, "a topic every shard has needs no message");
            shard.store.close().await.expect("closes");
            peer.stop();
        });
    }
}
