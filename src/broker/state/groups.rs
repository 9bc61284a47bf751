//! Consumer and producer groups of one shard, as a pure table: who is a member, over
//! which connection it last heartbeated and when, what each consumer group subscribes
//! to, and which groups must hear that their membership changed.
//!
//! The model is RocketMQ's `ConsumerManager`/`ProducerManager`, per shard (each shard is
//! a broker of its own to clients, and receives its own heartbeats):
//! - a consumer group has members, keyed by clientId, each remembering the connection it
//!   last heartbeated on and when; the group's consume type, message model and
//!   consume-from-where are those of the latest heartbeat;
//! - subscriptions belong to the group, not to a member: a heartbeat adds topics the
//!   group did not subscribe, replaces a topic's subscription when its `subVersion` is
//!   newer, and drops topics the heartbeat no longer lists (as Java does; members with
//!   different subscriptions are a client misconfiguration RocketMQ does not resolve);
//! - producer groups have members too, so transaction checks can find a producer.
//!
//! Invariants:
//! - A group with no members does not exist; its subscriptions go with it.
//! - Closing a connection removes only the members whose latest connection it is: a
//!   client that reconnected stays.
//! - BROADCASTING groups are never notified (their clients do not rebalance), as in Java.
//! - A subscription's tag codes are computed here from its tags, never taken from the
//!   client.
//!
//! [`GroupTable`] is generic over the connection handle `H` (the shard uses weak
//! connection references, unit tests plain strings) and every method takes the time, so
//! it knows nothing of sockets or clocks. Its methods are synchronous. Owned by the
//! shard; changed only by its operations (`ops::groups`), which send the notices.
//!
//! Deliberately not here: subscription-group configs (RocketMQ's subscriptionGroup.json;
//! every group gets RocketMQ's defaults, one retry queue and 16 retries), sending
//! NOTIFY_CONSUMER_IDS_CHANGED (the operations do, with the notices this table returns),
//! and closing expired connections (they are forgotten; TCP keeps its own counsel).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use rockshard_net::body::{ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, MessageModel, SubscriptionData};
use rockshard_net::properties::java_string_hash;
use rockshard_net::LanguageCode;
use tracing::debug;

use super::filter::{is_tag_type, TagFilter};

/// Who sent a heartbeat, and over which connection.
#[derive(Debug, Clone)]
pub struct Client<H> {
    pub client_id: String,
    pub conn_id: u64,
    pub handle: H,
    pub peer: Option<SocketAddr>,
    pub language: LanguageCode,
    pub version: i32,
}

/// One member of a group.
#[derive(Debug, Clone)]
struct Member<H> {
    conn_id: u64,
    handle: H,
    peer: Option<SocketAddr>,
    language: LanguageCode,
    version: i32,
    last_heartbeat_ms: i64,
}

impl<H: Clone> Member<H> {
    fn from_client(c: &Client<H>, now_ms: i64) -> Member<H> {
        Member {
            conn_id: c.conn_id,
            handle: c.handle.clone(),
            peer: c.peer,
            language: c.language,
            version: c.version,
            last_heartbeat_ms: now_ms,
        }
    }

    /// Refreshes the member from a new heartbeat; true when it came over another
    /// connection than before (the client reconnected: for the group, a new channel).
    fn refresh(&mut self, c: &Client<H>, now_ms: i64) -> bool {
        let moved = self.conn_id != c.conn_id;
        if moved {
            self.conn_id = c.conn_id;
            self.handle = c.handle.clone();
            self.peer = c.peer;
        }
        self.language = c.language;
        self.version = c.version;
        self.last_heartbeat_ms = now_ms;
        moved
    }
}

#[derive(Debug)]
struct ConsumerGroup<H> {
    members: BTreeMap<String, Member<H>>,
    consume_type: ConsumeType,
    message_model: MessageModel,
    consume_from_where: ConsumeFromWhere,
    subscriptions: BTreeMap<String, SubscriptionData>,
    /// The last heartbeat-V2 fingerprint seen for the group (0 for V1 heartbeats).
    fingerprint: Option<i32>,
}

impl<H: Clone> ConsumerGroup<H> {
    fn new(data: &ConsumerData) -> ConsumerGroup<H> {
        ConsumerGroup {
            members: BTreeMap::new(),
            consume_type: data.consume_type,
            message_model: data.message_model,
            consume_from_where: data.consume_from_where,
            subscriptions: BTreeMap::new(),
            fingerprint: None,
        }
    }

    /// Applies a heartbeat's subscription set; true when the set of topics changed.
    /// A topic already subscribed is replaced only by a newer `subVersion`.
    fn update_subscriptions(&mut self, subs: &[SubscriptionData]) -> bool {
        let mut changed = false;
        for sub in subs {
            match self.subscriptions.get_mut(&sub.topic) {
                None => {
                    self.subscriptions.insert(sub.topic.clone(), with_broker_codes(sub));
                    changed = true;
                }
                Some(old) if sub.sub_version > old.sub_version => *old = with_broker_codes(sub),
                Some(_) => {}
            }
        }
        let before = self.subscriptions.len();
        self.subscriptions.retain(|topic, _| subs.iter().any(|s| s.topic == *topic));
        changed || self.subscriptions.len() != before
    }

    fn notice(&self, group: &str) -> Option<Notice<H>> {
        if self.message_model == MessageModel::Broadcasting || self.members.is_empty() {
            return None;
        }
        Some(Notice { group: group.to_owned(), targets: self.members.values().map(|m| m.handle.clone()).collect() })
    }
}

/// A subscription as the broker keeps it: `codeSet` computed here from the tags the pull
/// filter matches (Java `String.hashCode`, what the ConsumeQueue stores per message),
/// never taken from the client. The C++ client fills it with `atoi(tag)` (zeros), the
/// Go client hashes UTF-8 bytes where Java hashes UTF-16 units, and what admin tools are
/// shown must be what filtering uses. `*`, and non-TAG expressions, have no codes.
fn with_broker_codes(sub: &SubscriptionData) -> SubscriptionData {
    let mut codes: Vec<i32> = Vec::new();
    if is_tag_type(&sub.expression_type) {
        if let TagFilter::Tags { names, .. } = TagFilter::from_subscription(sub) {
            for code in names.iter().map(|t| java_string_hash(t)) {
                if !codes.contains(&code) {
                    codes.push(code);
                }
            }
        }
    }
    SubscriptionData { code_set: codes, ..sub.clone() }
}

/// A consumer group whose members must hear that its membership changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice<H> {
    pub group: String,
    pub targets: Vec<H>,
}

/// What a heartbeat changed.
#[derive(Debug)]
pub struct HeartbeatOutcome<H> {
    pub notices: Vec<Notice<H>>,
    /// Heartbeat V2's answer: whether the client should send its subscriptions in full.
    pub sub_change: bool,
}

/// A member as admin requests show it (consumer connections, producer connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub client_id: String,
    pub peer: Option<SocketAddr>,
    pub language: LanguageCode,
    pub version: i32,
    pub last_heartbeat_ms: i64,
}

/// A consumer group as admin requests show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerGroupView {
    pub group: String,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
    pub members: Vec<MemberView>,
    pub subscriptions: Vec<SubscriptionData>,
}

fn view_members<H>(members: &BTreeMap<String, Member<H>>) -> Vec<MemberView> {
    members
        .iter()
        .map(|(id, m)| MemberView {
            client_id: id.clone(),
            peer: m.peer,
            language: m.language,
            version: m.version,
            last_heartbeat_ms: m.last_heartbeat_ms,
        })
        .collect()
}

/// The membership rules, without sockets or clocks: every method takes the time.
#[derive(Debug)]
pub struct GroupTable<H> {
    consumers: HashMap<String, ConsumerGroup<H>>,
    producers: HashMap<String, BTreeMap<String, Member<H>>>,
}

impl<H: Clone> Default for GroupTable<H> {
    fn default() -> Self {
        GroupTable { consumers: HashMap::new(), producers: HashMap::new() }
    }
}

impl<H: Clone> GroupTable<H> {
    /// Registers every consumer and producer group a heartbeat names.
    pub fn heartbeat(&mut self, hb: &HeartbeatData, client: &Client<H>, now_ms: i64) -> HeartbeatOutcome<H> {
        let mut notices = Vec::new();
        // V1 heartbeats always carry full subscriptions: Java answers "changed" to them.
        let mut sub_change = hb.heartbeat_fingerprint == 0;
        for data in hb.consumer_data_set.iter().filter(|d| !d.group_name.is_empty()) {
            let without_sub = hb.heartbeat_fingerprint != 0 && hb.without_sub;
            let group = self.consumers.entry(data.group_name.clone()).or_insert_with(|| ConsumerGroup::new(data));
            if hb.heartbeat_fingerprint != 0 {
                if group.fingerprint.is_some_and(|f| f != hb.heartbeat_fingerprint) {
                    sub_change = true;
                }
                // A V2 client that omits its subscriptions to a broker that has none for
                // the group (a restarted broker) must be asked for them.
                if without_sub && group.subscriptions.is_empty() {
                    sub_change = true;
                }
            }
            group.fingerprint = Some(hb.heartbeat_fingerprint);
            group.consume_type = data.consume_type;
            group.message_model = data.message_model;
            group.consume_from_where = data.consume_from_where;
            let joined = match group.members.get_mut(&client.client_id) {
                None => {
                    group.members.insert(client.client_id.clone(), Member::from_client(client, now_ms));
                    true
                }
                Some(m) => m.refresh(client, now_ms),
            };
            let subs_changed = !without_sub && group.update_subscriptions(&data.subscription_data_set);
            if joined || subs_changed {
                debug!(group = %data.group_name, client = %client.client_id, joined, subs_changed, "consumer group changed");
                notices.extend(group.notice(&data.group_name));
            }
        }
        for data in hb.producer_data_set.iter().filter(|d| !d.group_name.is_empty()) {
            let members = self.producers.entry(data.group_name.clone()).or_default();
            match members.get_mut(&client.client_id) {
                None => {
                    members.insert(client.client_id.clone(), Member::from_client(client, now_ms));
                }
                Some(m) => {
                    m.refresh(client, now_ms);
                }
            }
        }
        HeartbeatOutcome { notices, sub_change }
    }

    /// Removes `client_id` from consumer group `group` (UNREGISTER_CLIENT).
    pub fn unregister_consumer(&mut self, group: &str, client_id: &str) -> Option<Notice<H>> {
        let g = self.consumers.get_mut(group)?;
        g.members.remove(client_id)?;
        let notice = g.notice(group);
        if g.members.is_empty() {
            self.consumers.remove(group);
        }
        notice
    }

    /// Removes `client_id` from producer group `group`; true if it was a member.
    pub fn unregister_producer(&mut self, group: &str, client_id: &str) -> bool {
        let Some(members) = self.producers.get_mut(group) else { return false };
        let removed = members.remove(client_id).is_some();
        if members.is_empty() {
            self.producers.remove(group);
        }
        removed
    }

    /// Removes every member whose latest connection is `conn_id`.
    pub fn connection_closed(&mut self, conn_id: u64) -> Vec<Notice<H>> {
        self.remove_members(usize::MAX, |m| m.conn_id == conn_id).0
    }

    /// Removes members not heard from for more than `expiry_ms`, at most `max_removals`
    /// of them (the rest go on the next sweep). Returns the notices and how many went.
    pub fn expire(&mut self, now_ms: i64, expiry_ms: u64, max_removals: usize) -> (Vec<Notice<H>>, usize) {
        let expiry_ms = i64::try_from(expiry_ms).unwrap_or(i64::MAX);
        self.remove_members(max_removals, |m| now_ms.saturating_sub(m.last_heartbeat_ms) > expiry_ms)
    }

    fn remove_members(&mut self, max_removals: usize, gone: impl Fn(&Member<H>) -> bool) -> (Vec<Notice<H>>, usize) {
        let mut budget = max_removals;
        let mut notices = Vec::new();
        let mut empty = Vec::new();
        for (name, g) in self.consumers.iter_mut() {
            if budget == 0 {
                break;
            }
            let before = g.members.len();
            g.members.retain(|_, m| {
                if budget > 0 && gone(m) {
                    budget -= 1;
                    false
                } else {
                    true
                }
            });
            if g.members.len() != before {
                notices.extend(g.notice(name));
                if g.members.is_empty() {
                    empty.push(name.clone());
                }
            }
        }
        for name in empty.drain(..) {
            self.consumers.remove(&name);
        }
        for (name, members) in self.producers.iter_mut() {
            if budget == 0 {
                break;
            }
            members.retain(|_, m| {
                if budget > 0 && gone(m) {
                    budget -= 1;
                    false
                } else {
                    true
                }
            });
            if members.is_empty() {
                empty.push(name.clone());
            }
        }
        for name in empty {
            self.producers.remove(&name);
        }
        (notices, max_removals - budget)
    }

    /// The clientIds of a consumer group, sorted (what GET_CONSUMER_LIST_BY_GROUP sends).
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        self.consumers.get(group).map(|g| g.members.keys().cloned().collect()).unwrap_or_default()
    }

    pub fn subscription(&self, group: &str, topic: &str) -> Option<SubscriptionData> {
        self.consumers.get(group)?.subscriptions.get(topic).cloned()
    }

    /// The connection handles of a consumer group's members.
    pub fn consumer_handles(&self, group: &str) -> Vec<H> {
        self.consumers.get(group).map(|g| g.members.values().map(|m| m.handle.clone()).collect()).unwrap_or_default()
    }

    /// The connection handles of a producer group, most recently heard first.
    pub fn producer_handles(&self, group: &str) -> Vec<H> {
        let Some(members) = self.producers.get(group) else { return Vec::new() };
        let mut list: Vec<&Member<H>> = members.values().collect();
        list.sort_by_key(|m| std::cmp::Reverse(m.last_heartbeat_ms));
        list.into_iter().map(|m| m.handle.clone()).collect()
    }

    pub fn consumer_group(&self, group: &str) -> Option<ConsumerGroupView> {
        let g = self.consumers.get(group)?;
        Some(ConsumerGroupView {
            group: group.to_owned(),
            consume_type: g.consume_type,
            message_model: g.message_model,
            consume_from_where: g.consume_from_where,
            members: view_members(&g.members),
            subscriptions: g.subscriptions.values().cloned().collect(),
        })
    }

    pub fn consumer_group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.consumers.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn producer_members(&self, group: &str) -> Vec<MemberView> {
        self.producers.get(group).map(view_members).unwrap_or_default()
    }

    pub fn producer_group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.producers.keys().cloned().collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rockshard_net::body::ProducerData;

    fn sub(topic: &str, version: i64, expr: &str) -> SubscriptionData {
        SubscriptionData { topic: topic.into(), sub_version: version, sub_string: expr.into(), ..Default::default() }
    }

    fn consumer(group: &str, subs: Vec<SubscriptionData>) -> ConsumerData {
        ConsumerData { group_name: group.into(), subscription_data_set: subs, ..Default::default() }
    }

    fn hb(client: &str, consumers: Vec<ConsumerData>, producers: &[&str]) -> HeartbeatData {
        HeartbeatData {
            client_id: client.into(),
            consumer_data_set: consumers,
            producer_data_set: producers.iter().map(|g| ProducerData { group_name: (*g).into() }).collect(),
            ..Default::default()
        }
    }

    /// A client whose handle is its name, so notices say who is told.
    fn client(id: &str, conn_id: u64) -> Client<String> {
        Client {
            client_id: id.into(),
            conn_id,
            handle: format!("{id}#{conn_id}"),
            peer: None,
            language: LanguageCode::Rust,
            version: 474,
        }
    }

    fn targets(notices: &[Notice<String>], group: &str) -> Vec<String> {
        let mut t: Vec<String> =
            notices.iter().filter(|n| n.group == group).flat_map(|n| n.targets.iter().cloned()).collect();
        t.sort();
        t
    }

    #[test]
    fn joining_notifies_every_member_and_repeat_heartbeats_do_not() {
        let mut t = GroupTable::default();
        let a = t.heartbeat(&hb("a", vec![consumer("G", vec![sub("T", 1, "*")])], &[]), &client("a", 1), 0);
        assert_eq!(targets(&a.notices, "G"), ["a#1"]);
        assert!(a.sub_change, "V1 heartbeats are always answered with IS_SUB_CHANGE=true");
        let again = t.heartbeat(&hb("a", vec![consumer("G", vec![sub("T", 1, "*")])], &[]), &client("a", 1), 10);
        assert!(again.notices.is_empty(), "nothing changed: {again:?}");
        let b = t.heartbeat(&hb("b", vec![consumer("G", vec![sub("T", 1, "*")])], &[]), &client("b", 2), 20);
        assert_eq!(targets(&b.notices, "G"), ["a#1", "b#2"]);
        assert_eq!(t.consumer_ids("G"), ["a", "b"]);
        assert!(t.consumer_ids("other").is_empty());
    }

    #[test]
    fn tag_codes_are_computed_from_the_tags_never_taken_from_the_client() {
        let mut t = GroupTable::default();
        // The C++ client's codeSet (`atoi` of each tag), a Go client's code for a
        // non-ASCII tag (its hash runs over UTF-8 bytes, Java's over UTF-16 units), and a
        // subscription with only an expression.
        let cpp = SubscriptionData {
            code_set: vec![0, 0],
            tags_set: vec!["TA".into(), "TB".into()],
            ..sub("C", 1, "TA || TB")
        };
        let go_code = "标签".bytes().fold(0i32, |h, b| h.wrapping_mul(31).wrapping_add(i32::from(b)));
        assert_ne!(go_code, java_string_hash("标签"));
        let go = SubscriptionData { code_set: vec![go_code], tags_set: vec!["标签".into()], ..sub("G", 1, "标签") };
        let bare = sub("E", 1, "x || y || x");
        let sql = SubscriptionData { expression_type: "SQL92".into(), code_set: vec![5], ..sub("S", 1, "a > 1") };
        let all = SubscriptionData { code_set: vec![9], ..sub("A", 1, "*") };
        t.heartbeat(&hb("a", vec![consumer("G", vec![cpp, go, bare, sql, all])], &[]), &client("a", 1), 0);
        let codes = |t: &GroupTable<String>, topic: &str| t.subscription("G", topic).expect("subscribed").code_set;
        assert_eq!(codes(&t, "C"), [java_string_hash("TA"), java_string_hash("TB")]);
        assert_eq!(codes(&t, "G"), [java_string_hash("标签")]);
        assert_eq!(codes(&t, "E"), [java_string_hash("x"), java_string_hash("y")]);
        assert!(codes(&t, "S").is_empty() && codes(&t, "A").is_empty());
        // A newer subscription of a topic is kept with the broker's codes too.
        let newer = SubscriptionData { code_set: vec![1], tags_set: vec!["TC".into()], ..sub("C", 2, "TC") };
        t.heartbeat(&hb("a", vec![consumer("G", vec![newer])], &[]), &client("a", 1), 5);
        assert_eq!(codes(&t, "C"), [java_string_hash("TC")]);
    }

    #[test]
    fn reconnecting_client_moves_to_its_new_connection() {
        let mut t = GroupTable::default();
        t.heartbeat(&hb("a", vec![consumer("G", vec![sub("T", 1, "*")])], &["PG"]), &client("a", 1), 0);
        let moved = t.heartbeat(&hb("a", vec![consumer("G", vec![sub("T", 1, "*")])], &["PG"]), &client("a", 2), 5);
        assert_eq!(targets(&moved.notices, "G"), ["a#2"], "a new connection is a new channel for the group");
        // The old connection closing must not remove the member that moved away from it.
        assert!(t.connection_closed(1).is_empty());
        assert_eq!(t.consumer_ids("G"), ["a"]);
        assert_eq!(t.producer_handles("PG"), ["a#2"]);
        assert!(t.connection_closed(2).is_empty(), "the last member left: nobody to tell");
        assert!(t.consumer_ids("G").is_empty());
        assert!(t.consumer_group("G").is_none(), "an empty group is forgotten");
        assert!(t.subscription("G", "T").is_none(), "with its subscriptions");
        assert!(t.producer_handles("PG").is_empty());
    }

    #[test]
    fn leaving_notifies_the_remaining_members() {
        let mut t = GroupTable::default();
        for (id, conn) in [("a", 1), ("b", 2), ("c", 3)] {
            t.heartbeat(&hb(id, vec![consumer("G", vec![sub("T", 1, "*")])], &[]), &client(id, conn), 0);
        }
        let n = t.unregister_consumer("G", "b").expect("b was a member");
        assert_eq!(targets(&[n], "G"), ["a#1", "c#3"]);
        assert!(t.unregister_consumer("G", "b").is_none(), "unregistering twice changes nothing");
        assert!(t.unregister_consumer("nope", "a").is_none());
        let closed = t.connection_closed(3);
        assert_eq!(targets(&closed, "G"), ["a#1"]);
        assert_eq!(t.consumer_ids("G"), ["a"]);
    }

    #[test]
    fn broadcasting_groups_are_never_notified() {
        let mut t = GroupTable::default();
        let mut data = consumer("B", vec![sub("T", 1, "*")]);
        data.message_model = MessageModel::Broadcasting;
        assert!(t.heartbeat(&hb("a", vec![data.clone()], &[]), &client("a", 1), 0).notices.is_empty());
        assert!(t.heartbeat(&hb("b", vec![data], &[]), &client("b", 2), 0).notices.is_empty());
        assert!(t.connection_closed(1).is_empty());
        assert_eq!(t.consumer_ids("B"), ["b"], "membership is still tracked");
    }

    #[test]
    fn newer_sub_version_replaces_older_and_dropped_topics_go() {
        let mut t = GroupTable::default();
        t.heartbeat(
            &hb("a", vec![consumer("G", vec![sub("T", 10, "TagA"), sub("U", 10, "*")])], &[]),
            &client("a", 1),
            0,
        );
        assert_eq!(t.subscription("G", "T").map(|s| s.sub_string), Some("TagA".into()));
        // An older version does not replace, and is not a change.
        let older = t.heartbeat(
            &hb("a", vec![consumer("G", vec![sub("T", 5, "TagB"), sub("U", 10, "*")])], &[]),
            &client("a", 1),
            1,
        );
        assert!(older.notices.is_empty());
        assert_eq!(t.subscription("G", "T").map(|s| (s.sub_string, s.sub_version)), Some(("TagA".into(), 10)));
        // A newer one replaces; the set of topics is the same, so no rebalance is needed.
        let newer = t.heartbeat(
            &hb("a", vec![consumer("G", vec![sub("T", 11, "TagB"), sub("U", 10, "*")])], &[]),
            &client("a", 1),
            2,
        );
        assert!(newer.notices.is_empty());
        assert_eq!(t.subscription("G", "T").map(|s| (s.sub_string, s.sub_version)), Some(("TagB".into(), 11)));
        // Dropping U and adding V changes the topic set: members are told.
        let changed = t.heartbeat(
            &hb("a", vec![consumer("G", vec![sub("T", 11, "TagB"), sub("V", 12, "*")])], &[]),
            &client("a", 1),
            3,
        );
        assert_eq!(targets(&changed.notices, "G"), ["a#1"]);
        assert!(t.subscription("G", "U").is_none());
        assert!(t.subscription("G", "V").is_some());
        assert!(t.subscription("other", "T").is_none());
    }

    #[test]
    fn heartbeat_v2_without_subscriptions_keeps_them() {
        let mut t = GroupTable::default();
        let mut first = hb("a", vec![consumer("G", vec![sub("T", 1, "*")])], &[]);
        first.heartbeat_fingerprint = 77;
        let out = t.heartbeat(&first, &client("a", 1), 0);
        assert!(!out.sub_change, "first V2 heartbeat with full subscriptions: nothing to ask for");
        let mut light = hb("a", vec![consumer("G", vec![])], &[]);
        light.heartbeat_fingerprint = 77;
        light.without_sub = true;
        let out = t.heartbeat(&light, &client("a", 1), 1);
        assert!(!out.sub_change);
        assert!(out.notices.is_empty());
        assert!(t.subscription("G", "T").is_some(), "withoutSub keeps the registered subscriptions");
        light.heartbeat_fingerprint = 78;
        assert!(t.heartbeat(&light, &client("a", 1), 2).sub_change, "a new fingerprint asks for full subscriptions");
        // A broker that knows no subscriptions for the group asks for them too.
        let mut fresh = GroupTable::default();
        light.heartbeat_fingerprint = 78;
        assert!(fresh.heartbeat(&light, &client("a", 1), 0).sub_change);
    }

    #[test]
    fn expiry_drops_silent_clients_within_the_sweep_bound() {
        let mut t = GroupTable::default();
        for (id, conn, at) in [("a", 1, 0), ("b", 2, 0), ("c", 3, 0), ("d", 4, 100)] {
            t.heartbeat(&hb(id, vec![consumer("G", vec![sub("T", 1, "*")])], &["PG"]), &client(id, conn), at);
        }
        // At exactly the expiry nobody goes; one ms later a, b, c are silent too long.
        assert_eq!(t.expire(1_000, 1_000, 100).1, 0);
        let (notices, removed) = t.expire(1_001, 1_000, 2);
        assert_eq!(removed, 2, "the sweep bound holds");
        assert_eq!(targets(&notices, "G").len(), 2, "the two remaining members are told");
        let (_, removed) = t.expire(1_001, 1_000, 100);
        // The third consumer, then the producer entries of a, b, c.
        assert_eq!(removed, 1 + 3);
        assert_eq!(t.consumer_ids("G"), ["d"]);
        assert_eq!(t.producer_handles("PG"), ["d#4"]);
        let (_, removed) = t.expire(10_000, 1_000, 100);
        assert_eq!(removed, 2);
        assert!(t.consumer_group_names().is_empty());
        assert!(t.producer_group_names().is_empty());
    }

    #[test]
    fn producers_register_and_unregister() {
        let mut t = GroupTable::default();
        t.heartbeat(&hb("a", vec![], &["PG", "CLIENT_INNER_PRODUCER"]), &client("a", 1), 0);
        t.heartbeat(&hb("b", vec![], &["PG"]), &client("b", 2), 5);
        assert_eq!(t.producer_handles("PG"), ["b#2", "a#1"], "most recently heard first");
        assert_eq!(t.producer_group_names(), ["CLIENT_INNER_PRODUCER", "PG"]);
        assert!(t.unregister_producer("PG", "b"));
        assert!(!t.unregister_producer("PG", "b"));
        assert_eq!(t.producer_members("PG").iter().map(|m| m.client_id.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(t.consumer_group_names().is_empty(), "producers are not consumers");
    }

    #[test]
    fn empty_group_names_are_ignored_and_views_show_the_latest_settings() {
        let mut t = GroupTable::default();
        let mut data = consumer("G", vec![sub("T", 1, "*")]);
        data.consume_type = ConsumeType::ConsumeActively;
        data.consume_from_where = ConsumeFromWhere::ConsumeFromFirstOffset;
        t.heartbeat(&hb("a", vec![data, consumer("", vec![])], &[""]), &client("a", 1), 42);
        assert_eq!(t.consumer_group_names(), ["G"]);
        assert!(t.producer_group_names().is_empty());
        let view = t.consumer_group("G").expect("registered");
        assert_eq!(view.consume_type, ConsumeType::ConsumeActively);
        assert_eq!(view.consume_from_where, ConsumeFromWhere::ConsumeFromFirstOffset);
        assert_eq!(view.members[0].client_id, "a");
        assert_eq!(view.members[0].last_heartbeat_ms, 42);
        assert_eq!(view.subscriptions.len(), 1);
    }
}
