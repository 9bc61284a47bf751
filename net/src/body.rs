//! The JSON bodies brokers, NameServers and clients exchange (REMOTING.md §4): route
//! data, broker registration, cluster info, topic lists, heartbeats, consumer lists,
//! queue locks, key-value tables.
//!
//! Owns: one serde struct per Java body class, with Java's member names, and the two
//! JSON dialects those bodies travel in:
//!
//! * standard JSON, where integer map keys are quoted: `"brokerAddrs":{"0":"1.2.3.4:10911"}`;
//! * the legacy fastjson form, where they are bare: `"brokerAddrs":{0:"1.2.3.4:10911"}`
//!   (not valid JSON, but what a Java NameServer sends to clients older than 4.9.4
//!   (version < 401) and in every GET_BROKER_CLUSTER_INFO body; old Go clients need it).
//!
//! Admin bodies keyed by a [`MessageQueue`] (topic stats, consume stats, reset offsets)
//! travel in a third form: fastjson writes each key as the queue's JSON object, unquoted.
//! Those types have their own `encode`/`decode`, which write that form and also read
//! keys given as strings of JSON.
//!
//! Members are declared in alphabetical order, which is the order Java's fastjson writes,
//! so our standard output of a value equals a Java NameServer's for the same value.
//! Members the Rust client requires (e.g. `filterServerTable`, `enableActingMaster`,
//! `topicSysFlag`) are always written, never skipped.
//!
//! Invariants: decoding is tolerant, as Java's fastjson is with what real clients send
//! (the C++ client writes enums as ordinals and 64-bit numbers as strings, the Go client
//! tag codes as strings): every member is read through a `lenient` helper (numbers and
//! booleans also as strings, enums by name in any case or by Java ordinal, null as the
//! member's zero value), unknown members are ignored, missing ones take their defaults,
//! and bare integer keys are accepted (re-quoted before parsing, as the Rust client
//! does). What no reading makes sense of is an error naming the value. Decoders never
//! panic. Leniency is for reading only: encoders write what Java writes.
//!
//! Deliberately not here: the compressed REGISTER_BROKER body variant (Java never sends
//! it), and any routing logic over these structures.

use std::collections::BTreeMap;
use std::io;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};

use crate::code::version;
use crate::lenient::{self, JavaEnum};
use crate::Error;

/// Route of one topic: GET_ROUTEINFO_BY_TOPIC's body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicRouteData {
    #[serde(deserialize_with = "lenient::or_default")]
    pub broker_datas: Vec<BrokerData>,
    /// Always `{}` in practice; required by the Rust client.
    #[serde(deserialize_with = "lenient::or_default")]
    pub filter_server_table: BTreeMap<String, Vec<String>>,
    /// `brokerName:queueNums;...`, only in order-message mode.
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub order_topic_conf: Option<String>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub queue_datas: Vec<QueueData>,
    /// Static-topic mappings, carried through uninterpreted.
    #[serde(skip_serializing_if = "Option::is_none", alias = "topicQueueMappingInfo")]
    pub topic_queue_mapping_by_broker: Option<serde_json::Value>,
}

/// One broker group: its name, cluster and the address of each broker id (0 = master).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BrokerData {
    #[serde(deserialize_with = "lenient::or_default")]
    pub broker_addrs: BTreeMap<i64, String>,
    #[serde(deserialize_with = "lenient::string")]
    pub broker_name: String,
    #[serde(deserialize_with = "lenient::string")]
    pub cluster: String,
    #[serde(deserialize_with = "lenient::bool")]
    pub enable_acting_master: bool,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub zone_name: Option<String>,
}

/// The queues one broker group serves for a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct QueueData {
    #[serde(deserialize_with = "lenient::string")]
    pub broker_name: String,
    /// [`crate::code::perm`] bits.
    #[serde(deserialize_with = "lenient::i32")]
    pub perm: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub read_queue_nums: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub topic_sys_flag: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub write_queue_nums: i32,
}

impl TopicRouteData {
    /// The body a Java NameServer would send in reply to a request of `request_version`:
    /// standard JSON for 4.9.4+ clients or when they ask for it, legacy bare integer keys
    /// otherwise (REMOTING.md §4.1.3).
    pub fn encode_for(&self, request_version: i32, accept_standard_json_only: bool) -> Result<Vec<u8>, Error> {
        if request_version >= version::V4_9_4 || accept_standard_json_only {
            to_json(self)
        } else {
            to_legacy_json(self)
        }
    }
}

/// REGISTER_BROKER's body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RegisterBrokerBody {
    #[serde(deserialize_with = "lenient::strings")]
    pub filter_server_list: Vec<String>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub topic_config_serialize_wrapper: TopicConfigSerializeWrapper,
}

/// A broker's topic configs and their version (Java's
/// `TopicConfigAndMappingSerializeWrapper`; the mapping members are carried through).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicConfigSerializeWrapper {
    #[serde(deserialize_with = "lenient::or_default")]
    pub data_version: DataVersion,
    #[serde(deserialize_with = "lenient::or_default")]
    pub mapping_data_version: DataVersion,
    #[serde(deserialize_with = "lenient::or_default")]
    pub topic_config_table: BTreeMap<String, TopicConfig>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub topic_queue_mapping_detail_map: BTreeMap<String, serde_json::Value>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub topic_queue_mapping_info_map: BTreeMap<String, serde_json::Value>,
}

/// One topic's configuration on a broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicConfig {
    #[serde(deserialize_with = "lenient::string_map")]
    pub attributes: BTreeMap<String, String>,
    #[serde(deserialize_with = "lenient::bool")]
    pub order: bool,
    #[serde(deserialize_with = "lenient::i32")]
    pub perm: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub read_queue_nums: i32,
    /// `SINGLE_TAG` or `MULTI_TAG` (Java's `TopicFilterType`; an ordinal or a name in
    /// another case is read as the name).
    #[serde(deserialize_with = "topic_filter_type")]
    pub topic_filter_type: String,
    #[serde(deserialize_with = "lenient::string")]
    pub topic_name: String,
    #[serde(deserialize_with = "lenient::i32")]
    pub topic_sys_flag: i32,
    #[serde(deserialize_with = "lenient::i32")]
    pub write_queue_nums: i32,
}

impl Default for TopicConfig {
    /// Java's defaults: 16 queues, read+write.
    fn default() -> TopicConfig {
        TopicConfig {
            attributes: BTreeMap::new(),
            order: false,
            perm: crate::code::perm::READ | crate::code::perm::WRITE,
            read_queue_nums: 16,
            topic_filter_type: "SINGLE_TAG".to_owned(),
            topic_name: String::new(),
            topic_sys_flag: 0,
            write_queue_nums: 16,
        }
    }
}

/// A version stamp of a broker's topic table; the NameServer compares them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DataVersion {
    #[serde(deserialize_with = "lenient::i64")]
    pub counter: i64,
    #[serde(deserialize_with = "lenient::i64")]
    pub state_version: i64,
    #[serde(deserialize_with = "lenient::i64")]
    pub timestamp: i64,
}

/// GET_BROKER_CLUSTER_INFO's body. Java always sends it in the legacy form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterInfo {
    #[serde(deserialize_with = "lenient::or_default")]
    pub broker_addr_table: BTreeMap<String, BrokerData>,
    #[serde(deserialize_with = "lenient::or_default")]
    pub cluster_addr_table: BTreeMap<String, Vec<String>>,
}

/// GET_ALL_TOPIC_LIST_FROM_NAMESERVER's body (and others listing topics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicList {
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub broker_addr: Option<String>,
    #[serde(deserialize_with = "lenient::strings")]
    pub topic_list: Vec<String>,
}

/// HEART_BEAT's body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HeartbeatData {
    /// `clientIP@instanceName[@unitName]`; opaque to the broker.
    #[serde(rename = "clientID", deserialize_with = "lenient::string")]
    pub client_id: String,
    #[serde(deserialize_with = "lenient::or_default")]
    pub consumer_data_set: Vec<ConsumerData>,
    /// Heartbeat V2 only; 0 otherwise.
    #[serde(deserialize_with = "lenient::i32")]
    pub heartbeat_fingerprint: i32,
    #[serde(deserialize_with = "lenient::or_default")]
    pub producer_data_set: Vec<ProducerData>,
    /// Heartbeat V2: subscriptions unchanged and omitted; keep the registered ones.
    #[serde(deserialize_with = "lenient::bool")]
    pub without_sub: bool,
}

/// A producer group in a heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProducerData {
    #[serde(deserialize_with = "lenient::string")]
    pub group_name: String,
}

/// A consumer group in a heartbeat, with its subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsumerData {
    pub consume_from_where: ConsumeFromWhere,
    pub consume_type: ConsumeType,
    #[serde(deserialize_with = "lenient::string")]
    pub group_name: String,
    pub message_model: MessageModel,
    #[serde(deserialize_with = "lenient::or_default")]
    pub subscription_data_set: Vec<SubscriptionData>,
    #[serde(deserialize_with = "lenient::bool")]
    pub unit_mode: bool,
}

/// How a consumer consumes (Java `ConsumeType`). Written by name; read by name or
/// ordinal ([`lenient::JavaEnum`]). Unknown names and ordinals decode as `Unknown`
/// rather than failing the whole heartbeat, because a newer client may add kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsumeType {
    /// Pull and lite-pull consumers.
    ConsumeActively,
    /// Push consumers.
    #[default]
    ConsumePassively,
    ConsumePop,
    Unknown,
}

impl JavaEnum for ConsumeType {
    const NAME: &'static str = "ConsumeType";
    /// RocketMQ's `remoting/.../protocol/heartbeat/ConsumeType.java`, in its order.
    const ORDINALS: &'static [(&'static str, ConsumeType)] = &[
        ("CONSUME_ACTIVELY", ConsumeType::ConsumeActively),
        ("CONSUME_PASSIVELY", ConsumeType::ConsumePassively),
        ("CONSUME_POP", ConsumeType::ConsumePop),
    ];
    const UNKNOWN: ConsumeType = ConsumeType::Unknown;
}

/// Java `MessageModel`; read and written as [`ConsumeType`] is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageModel {
    Broadcasting,
    #[default]
    Clustering,
    Unknown,
}

impl JavaEnum for MessageModel {
    const NAME: &'static str = "MessageModel";
    /// RocketMQ's `remoting/.../protocol/heartbeat/MessageModel.java`, in its order.
    const ORDINALS: &'static [(&'static str, MessageModel)] =
        &[("BROADCASTING", MessageModel::Broadcasting), ("CLUSTERING", MessageModel::Clustering)];
    const UNKNOWN: MessageModel = MessageModel::Unknown;
}

/// Java `ConsumeFromWhere`; read and written as [`ConsumeType`] is. The Rust order of
/// the variants means nothing on the wire: ordinals come from [`JavaEnum::ORDINALS`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsumeFromWhere {
    #[default]
    ConsumeFromLastOffset,
    ConsumeFromFirstOffset,
    ConsumeFromTimestamp,
    /// Deprecated Java names, still accepted.
    ConsumeFromLastOffsetAndFromMinWhenBootFirst,
    ConsumeFromMinOffset,
    ConsumeFromMaxOffset,
    Unknown,
}

impl JavaEnum for ConsumeFromWhere {
    const NAME: &'static str = "ConsumeFromWhere";
    /// RocketMQ's `common/.../consumer/ConsumeFromWhere.java`, in its order: the three
    /// deprecated constants sit between LAST_OFFSET and FIRST_OFFSET, so FIRST_OFFSET is
    /// 4 and TIMESTAMP 5 (the C++ client declares them the same way and sends these).
    const ORDINALS: &'static [(&'static str, ConsumeFromWhere)] = &[
        ("CONSUME_FROM_LAST_OFFSET", ConsumeFromWhere::ConsumeFromLastOffset),
        (
            "CONSUME_FROM_LAST_OFFSET_AND_FROM_MIN_WHEN_BOOT_FIRST",
            ConsumeFromWhere::ConsumeFromLastOffsetAndFromMinWhenBootFirst,
        ),
        ("CONSUME_FROM_MIN_OFFSET", ConsumeFromWhere::ConsumeFromMinOffset),
        ("CONSUME_FROM_MAX_OFFSET", ConsumeFromWhere::ConsumeFromMaxOffset),
        ("CONSUME_FROM_FIRST_OFFSET", ConsumeFromWhere::ConsumeFromFirstOffset),
        ("CONSUME_FROM_TIMESTAMP", ConsumeFromWhere::ConsumeFromTimestamp),
    ];
    const UNKNOWN: ConsumeFromWhere = ConsumeFromWhere::Unknown;
}

macro_rules! deserialize_java_enum {
    ($($name:ident),*) => {
        $(
            impl<'de> Deserialize<'de> for $name {
                fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                    lenient::java_enum(d)
                }
            }
        )*
    };
}

deserialize_java_enum!(ConsumeType, MessageModel, ConsumeFromWhere);

/// Java `TopicFilterType`, whose constants [`TopicConfig::topic_filter_type`] holds by
/// name, in declaration order.
const TOPIC_FILTER_TYPES: [&str; 2] = ["SINGLE_TAG", "MULTI_TAG"];

/// Reads a `TopicFilterType` as its name: an ordinal (number or digits) or a known name
/// in another case becomes the Java name; other text is kept as it came (the broker
/// only carries this member).
fn topic_filter_type<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = lenient::string(d)?;
    let by_ordinal = text.parse::<usize>().ok().and_then(|i| TOPIC_FILTER_TYPES.get(i));
    let by_name = TOPIC_FILTER_TYPES.iter().find(|n| n.eq_ignore_ascii_case(&text));
    Ok(by_ordinal.or(by_name).map_or(text, |name| (*name).to_owned()))
}

/// One topic subscription of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SubscriptionData {
    #[serde(deserialize_with = "lenient::bool")]
    pub class_filter_mode: bool,
    /// Java `String.hashCode` of each tag ([`crate::properties::java_string_hash`]) in
    /// what a broker writes; in what a client sends, whatever it put there (see
    /// [`lenient::codes`]): brokers compute their own.
    #[serde(deserialize_with = "lenient::codes")]
    pub code_set: Vec<i32>,
    /// `TAG` or `SQL92`.
    #[serde(deserialize_with = "lenient::string")]
    pub expression_type: String,
    /// `*` or empty: every tag; else `TagA || TagB`.
    #[serde(deserialize_with = "lenient::string")]
    pub sub_string: String,
    /// A timestamp (milliseconds from Java and C++, nanoseconds from Go); newer
    /// replaces older.
    #[serde(deserialize_with = "lenient::i64")]
    pub sub_version: i64,
    #[serde(deserialize_with = "lenient::strings")]
    pub tags_set: Vec<String>,
    #[serde(deserialize_with = "lenient::string")]
    pub topic: String,
}

impl Default for SubscriptionData {
    fn default() -> SubscriptionData {
        SubscriptionData {
            class_filter_mode: false,
            code_set: Vec::new(),
            expression_type: "TAG".to_owned(),
            sub_string: String::new(),
            sub_version: 0,
            tags_set: Vec::new(),
            topic: String::new(),
        }
    }
}

/// GET_CONSUMER_LIST_BY_GROUP's response body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsumerListBody {
    #[serde(deserialize_with = "lenient::strings")]
    pub consumer_id_list: Vec<String>,
}

/// CHECK_CLIENT_CONFIG's request body: a push consumer's non-TAG subscription, sent at
/// start so the broker can refuse an expression it cannot evaluate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CheckClientRequestBody {
    #[serde(deserialize_with = "lenient::string")]
    pub client_id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub group: String,
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "lenient::opt_string")]
    pub namespace: Option<String>,
    /// Absent in Java means nothing to check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_data: Option<SubscriptionData>,
}

/// A queue: the unit of sharding and ordering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MessageQueue {
    #[serde(deserialize_with = "lenient::string")]
    pub broker_name: String,
    #[serde(deserialize_with = "lenient::i32")]
    pub queue_id: i32,
    #[serde(deserialize_with = "lenient::string")]
    pub topic: String,
}

/// LOCK_BATCH_MQ's and UNLOCK_BATCH_MQ's request body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LockBatchRequestBody {
    #[serde(deserialize_with = "lenient::string")]
    pub client_id: String,
    #[serde(deserialize_with = "lenient::string")]
    pub consumer_group: String,
    #[serde(deserialize_with = "lenient::or_default")]
    pub mq_set: Vec<MessageQueue>,
    #[serde(deserialize_with = "lenient::bool")]
    pub only_this_broker: bool,
}

/// UNLOCK_BATCH_MQ carries the same members as LOCK_BATCH_MQ.
pub type UnlockBatchRequestBody = LockBatchRequestBody;

/// LOCK_BATCH_MQ's response body: the queues now held by the requesting client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockBatchResponseBody {
    #[serde(rename = "lockOKMQSet", deserialize_with = "lenient::or_default")]
    pub lock_ok_mq_set: Vec<MessageQueue>,
}

/// A flat string table (GET_BROKER_RUNTIME_INFO, REGISTER_BROKER's response).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KVTable {
    #[serde(deserialize_with = "lenient::string_map")]
    pub table: BTreeMap<String, String>,
}

/// One queue's offsets as GET_TOPIC_STATS_INFO reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicOffset {
    /// Store time (ms) of the queue's newest message; 0 when the queue is empty.
    #[serde(deserialize_with = "lenient::i64")]
    pub last_update_timestamp: i64,
    /// Next offset to be written (= number of entries ever written).
    #[serde(deserialize_with = "lenient::i64")]
    pub max_offset: i64,
    /// Smallest offset still readable.
    #[serde(deserialize_with = "lenient::i64")]
    pub min_offset: i64,
}

/// GET_TOPIC_STATS_INFO's response body (Java `TopicStatsTable`). The map is keyed by
/// [`MessageQueue`]: see [`encode_mq_keyed`] for how such keys travel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TopicStatsTable {
    #[serde(deserialize_with = "mq_keyed")]
    pub offset_table: BTreeMap<MessageQueue, TopicOffset>,
}

impl TopicStatsTable {
    /// Java's form: `{"offsetTable":{{"brokerName":..}:{..}}}`.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = b"{\"offsetTable\":".to_vec();
        encode_mq_keyed(&self.offset_table, &mut out)?;
        out.push(b'}');
        Ok(out)
    }

    /// Reads Java's form or the string-keyed form.
    pub fn decode(body: &[u8]) -> Result<TopicStatsTable, Error> {
        from_json(&object_keys_as_strings(body))
    }
}

/// One queue of a consumer group's progress (Java `OffsetWrapper`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OffsetWrapper {
    /// The queue's max offset.
    #[serde(deserialize_with = "lenient::i64")]
    pub broker_offset: i64,
    /// The group's committed offset (0 when it never committed).
    #[serde(deserialize_with = "lenient::i64")]
    pub consumer_offset: i64,
    /// Store time (ms) of the last consumed message; 0 when unknown.
    #[serde(deserialize_with = "lenient::i64")]
    pub last_timestamp: i64,
    /// Where the group's pulls have reached; the committed offset when not tracked.
    #[serde(deserialize_with = "lenient::i64")]
    pub pull_offset: i64,
}

/// GET_CONSUME_STATS's response body (Java `ConsumeStats`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsumeStats {
    #[serde(deserialize_with = "lenient::f64")]
    pub consume_tps: f64,
    #[serde(deserialize_with = "mq_keyed")]
    pub offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
}

impl ConsumeStats {
    /// Java's form: `{"consumeTps":0.0,"offsetTable":{{"brokerName":..}:{..}}}`.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = b"{\"consumeTps\":".to_vec();
        serde_json::to_writer(&mut out, &self.consume_tps)
            .map_err(|e| Error::BodyJson { body: "ConsumeStats", detail: e.to_string() })?;
        out.extend_from_slice(b",\"offsetTable\":");
        encode_mq_keyed(&self.offset_table, &mut out)?;
        out.push(b'}');
        Ok(out)
    }

    /// Reads Java's form or the string-keyed form.
    pub fn decode(body: &[u8]) -> Result<ConsumeStats, Error> {
        from_json(&object_keys_as_strings(body))
    }
}

/// INVOKE_BROKER_TO_RESET_OFFSET's response body and RESET_CONSUMER_CLIENT_OFFSET's
/// request body (Java `ResetOffsetBody`): the new offset of each queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ResetOffsetBody {
    #[serde(deserialize_with = "mq_keyed")]
    pub offset_table: BTreeMap<MessageQueue, i64>,
}

impl ResetOffsetBody {
    /// Java's form: `{"offsetTable":{{"brokerName":..}:42}}`.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut out = b"{\"offsetTable\":".to_vec();
        encode_mq_keyed(&self.offset_table, &mut out)?;
        out.push(b'}');
        Ok(out)
    }

    /// Reads Java's form or the string-keyed form.
    pub fn decode(body: &[u8]) -> Result<ResetOffsetBody, Error> {
        from_json(&object_keys_as_strings(body))
    }
}

/// One client connection of a consumer group (Java `Connection`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClientConnection {
    /// `ip:port` of the client's socket.
    #[serde(deserialize_with = "lenient::string")]
    pub client_addr: String,
    #[serde(deserialize_with = "lenient::string")]
    pub client_id: String,
    /// The language name, as in JSON headers (`JAVA`, `RUST`).
    #[serde(deserialize_with = "lenient::string")]
    pub language: String,
    #[serde(deserialize_with = "lenient::i32")]
    pub version: i32,
}

/// GET_CONSUMER_CONNECTION_LIST's response body (Java `ConsumerConnection`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsumerConnection {
    #[serde(deserialize_with = "lenient::or_default")]
    pub connection_set: Vec<ClientConnection>,
    pub consume_from_where: ConsumeFromWhere,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    #[serde(deserialize_with = "lenient::or_default")]
    pub subscription_table: BTreeMap<String, SubscriptionData>,
}

/// Appends a map keyed by [`MessageQueue`] as Java's fastjson writes it: each key is the
/// queue's JSON object, unquoted (`{{"brokerName":"b","queueId":0,"topic":"T"}:1}`).
/// That is not valid JSON, but it is what Java brokers send and Java admin tools read;
/// [`object_keys_as_strings`] turns it back into JSON.
pub fn encode_mq_keyed<V: Serialize>(map: &BTreeMap<MessageQueue, V>, out: &mut Vec<u8>) -> Result<(), Error> {
    let err = |e: serde_json::Error| Error::BodyJson { body: "MessageQueue-keyed map", detail: e.to_string() };
    out.push(b'{');
    for (i, (mq, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, mq).map_err(err)?;
        out.push(b':');
        serde_json::to_writer(&mut *out, value).map_err(err)?;
    }
    out.push(b'}');
    Ok(())
}

/// Rewrites every object key that is itself an object (`{{"a":1}:2}`, fastjson's form of
/// a map with object keys) into a JSON string holding that object's text
/// (`{"{\"a\":1}":2}`), which is also how string-keyed encoders write such maps. Other
/// bytes are copied unchanged; input that is not JSON-like stays not JSON-like.
pub fn object_keys_as_strings(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 64);
    // Open containers, to know whether a `,` is followed by a key (objects) or not.
    let mut open: Vec<u8> = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut key_position = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if key_position && b == b'{' {
            let end = balanced_object_end(json, i);
            out.push(b'"');
            for &c in &json[i..end] {
                match c {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    c if c < 0x20 => out.extend_from_slice(format!("\\u{c:04x}").as_bytes()),
                    c => out.push(c),
                }
            }
            out.push(b'"');
            key_position = false;
            i = end;
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                key_position = false;
            }
            b'{' => {
                open.push(b'{');
                key_position = true;
            }
            b'[' => {
                open.push(b'[');
                key_position = false;
            }
            b'}' | b']' => {
                open.pop();
                key_position = false;
            }
            b',' => key_position = open.last() == Some(&b'{'),
            _ if b.is_ascii_whitespace() => {}
            _ => key_position = false,
        }
        out.push(b);
        i += 1;
    }
    out
}

/// The index just past the object that starts at `json[start]` (a `{`), or the end of
/// the input when it is never closed.
fn balanced_object_end(json: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in json.iter().enumerate().skip(start) {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    json.len()
}

/// Reads a map whose keys are strings holding a [`MessageQueue`]'s JSON.
fn mq_keyed<'de, D, V>(deserializer: D) -> Result<BTreeMap<MessageQueue, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    let raw = BTreeMap::<String, V>::deserialize(deserializer)?;
    raw.into_iter()
        .map(|(key, value)| {
            serde_json::from_str::<MessageQueue>(&key)
                .map(|mq| (mq, value))
                .map_err(|e| serde::de::Error::custom(format!("map key `{key}` is not a MessageQueue: {e}")))
        })
        .collect()
}

fn body_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Standard JSON (quoted integer keys).
pub fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::BodyJson { body: body_name::<T>(), detail: e.to_string() })
}

/// Legacy fastjson JSON: like [`to_json`] but integer map keys are written bare.
pub fn to_legacy_json<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, BareIntegerKeys::default());
    value.serialize(&mut ser).map_err(|e| Error::BodyJson { body: body_name::<T>(), detail: e.to_string() })?;
    Ok(out)
}

/// Decodes a body in either dialect.
pub fn from_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(first) => {
            // Only a legacy body changes when re-quoted; anything else reports the
            // original error, which points at the real problem.
            let requoted = quote_bare_integer_keys(body);
            if requoted == body {
                return Err(Error::BodyJson { body: body_name::<T>(), detail: first.to_string() });
            }
            serde_json::from_slice(&requoted)
                .map_err(|_| Error::BodyJson { body: body_name::<T>(), detail: first.to_string() })
        }
    }
}

/// Rewrites `{0:"a",-1:"b"}` into `{"0":"a","-1":"b"}`: every bare integer in object-key
/// position (after `{` or `,`, before `:`) outside strings gets quotes. Other bytes are
/// copied unchanged.
pub fn quote_bare_integer_keys(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 16);
    let mut in_string = false;
    let mut escaped = false;
    let mut key_position = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        if key_position && (b.is_ascii_digit() || b == b'-') {
            let start = i;
            let mut end = i + 1;
            while end < json.len() && json[end].is_ascii_digit() {
                end += 1;
            }
            let mut after = end;
            while after < json.len() && json[after].is_ascii_whitespace() {
                after += 1;
            }
            if json.get(after) == Some(&b':') {
                out.push(b'"');
                out.extend_from_slice(&json[start..end]);
                out.push(b'"');
            } else {
                out.extend_from_slice(&json[start..end]);
            }
            key_position = false;
            i = end;
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                key_position = false;
            }
            b'{' | b',' => key_position = true,
            _ if b.is_ascii_whitespace() => {}
            _ => key_position = false,
        }
        out.push(b);
        i += 1;
    }
    out
}

/// A serde_json formatter that writes integer map keys without quotes. serde_json writes
/// an integer key as begin_string, write_iN, end_string; this formatter holds back the
/// opening quote of every key until it sees whether an integer or text follows.
#[derive(Default)]
struct BareIntegerKeys {
    in_key: bool,
    quote_pending: bool,
    bare: bool,
}

impl BareIntegerKeys {
    fn flush_quote<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.quote_pending {
            self.quote_pending = false;
            w.write_all(b"\"")?;
        }
        Ok(())
    }

    fn integer_key(&mut self) {
        if self.in_key && self.quote_pending {
            self.quote_pending = false;
            self.bare = true;
        }
    }
}

macro_rules! bare_int {
    ($($method:ident: $ty:ty),*) => {
        $(
            fn $method<W: ?Sized + io::Write>(&mut self, w: &mut W, value: $ty) -> io::Result<()> {
                self.integer_key();
                CompactFormatter.$method(w, value)
            }
        )*
    };
}

impl Formatter for BareIntegerKeys {
    bare_int!(write_i8: i8, write_i16: i16, write_i32: i32, write_i64: i64, write_u8: u8, write_u16: u16, write_u32: u32, write_u64: u64);

    fn begin_object_key<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.in_key = true;
        CompactFormatter.begin_object_key(w, first)
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.in_key = false;
        Ok(())
    }

    fn begin_string<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.in_key {
            self.quote_pending = true;
            Ok(())
        } else {
            w.write_all(b"\"")
        }
    }

    fn end_string<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        if self.in_key {
            // An empty text key still needs both quotes.
            self.flush_quote(w)?;
            let bare = std::mem::take(&mut self.bare);
            if bare {
                Ok(())
            } else {
                w.write_all(b"\"")
            }
        } else {
            w.write_all(b"\"")
        }
    }

    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        self.flush_quote(w)?;
        w.write_all(fragment.as_bytes())
    }

    fn write_char_escape<W: ?Sized + io::Write>(&mut self, w: &mut W, escape: CharEscape) -> io::Result<()> {
        self.flush_quote(w)?;
        CompactFormatter.write_char_escape(w, escape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::XorShift;

    fn route() -> TopicRouteData {
        TopicRouteData {
            broker_datas: vec![BrokerData {
                broker_addrs: BTreeMap::from([(0, "192.168.0.1:10911".into()), (1, "192.168.0.2:10911".into())]),
                broker_name: "broker-a".into(),
                cluster: "DefaultCluster".into(),
                enable_acting_master: false,
                zone_name: None,
            }],
            queue_datas: vec![QueueData {
                broker_name: "broker-a".into(),
                perm: 6,
                read_queue_nums: 4,
                topic_sys_flag: 0,
                write_queue_nums: 4,
            }],
            ..Default::default()
        }
    }

    /// REMOTING.md §4.1.3, whitespace removed.
    const SPEC_ROUTE: &str = concat!(
        r#"{"brokerDatas":[{"brokerAddrs":{"0":"192.168.0.1:10911","1":"192.168.0.2:10911"},"#,
        r#""brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"#,
        r#""filterServerTable":{},"#,
        r#""queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}]}"#
    );

    #[test]
    fn route_standard_json_matches_java_byte_for_byte() {
        assert_eq!(String::from_utf8(to_json(&route()).expect("encodes")).expect("utf8"), SPEC_ROUTE);
        assert_eq!(from_json::<TopicRouteData>(SPEC_ROUTE.as_bytes()), Ok(route()));
        assert_eq!(route().encode_for(479, false).expect("encodes"), SPEC_ROUTE.as_bytes());
        assert_eq!(route().encode_for(100, true).expect("encodes"), SPEC_ROUTE.as_bytes());
    }

    #[test]
    fn route_legacy_json_has_bare_integer_keys_and_decodes() {
        let legacy = String::from_utf8(route().encode_for(400, false).expect("encodes")).expect("utf8");
        assert_eq!(legacy, SPEC_ROUTE.replace(r#"{"0":"#, "{0:").replace(r#","1":"#, ",1:"));
        assert!(legacy.contains(r#""brokerAddrs":{0:"192.168.0.1:10911",1:"192.168.0.2:10911"}"#));
        assert!(serde_json::from_str::<serde_json::Value>(&legacy).is_err(), "legacy form is not JSON");
        assert_eq!(from_json::<TopicRouteData>(legacy.as_bytes()), Ok(route()));
    }

    #[test]
    fn legacy_formatter_keeps_text_keys_and_escapes() {
        let table = KVTable { table: BTreeMap::from([("".into(), "e".into()), ("a\"b".into(), "\u{1}".into())]) };
        assert_eq!(to_legacy_json(&table).expect("encodes"), to_json(&table).expect("encodes"));
        let neg: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::from([(-5, BTreeMap::from([("k".into(), 1)]))]);
        assert_eq!(to_legacy_json(&neg).expect("encodes"), br#"{-5:{"k":1}}"#);
    }

    #[test]
    fn requoting_only_touches_keys_outside_strings() {
        let input = br#"{ 0 : "a:{1:2}", "x":[1, 2], 12:{-3:"v"}, "s":"\"7:"}"#;
        let expected = br#"{ "0" : "a:{1:2}", "x":[1, 2], "12":{"-3":"v"}, "s":"\"7:"}"#;
        assert_eq!(quote_bare_integer_keys(input), expected.to_vec());
    }

    #[test]
    fn cluster_info_decodes_in_java_legacy_form() {
        let java = br#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"192.168.0.1:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}},"clusterAddrTable":{"DefaultCluster":["broker-a"]}}"#;
        let info: ClusterInfo = from_json(java).expect("decodes");
        assert_eq!(info.broker_addr_table["broker-a"].broker_addrs[&0], "192.168.0.1:10911");
        assert_eq!(info.cluster_addr_table["DefaultCluster"], ["broker-a"]);
        assert_eq!(to_legacy_json(&info).expect("encodes"), java.to_vec());
    }

    #[test]
    fn register_broker_body_matches_the_spec_example() {
        let spec = br#"{"filterServerList":[],
 "topicConfigSerializeWrapper":{
   "dataVersion":{"counter":3,"stateVersion":0,"timestamp":1700000000000},
   "mappingDataVersion":{"counter":0,"stateVersion":0,"timestamp":1700000000000},
   "topicConfigTable":{
     "TopicTest":{"attributes":{},"order":false,"perm":6,"readQueueNums":4,
                  "topicFilterType":"SINGLE_TAG","topicName":"TopicTest","topicSysFlag":0,"writeQueueNums":4},
     "TBW102":{"attributes":{},"order":false,"perm":7,"readQueueNums":8,
               "topicFilterType":"SINGLE_TAG","topicName":"TBW102","topicSysFlag":0,"writeQueueNums":8}},
   "topicQueueMappingDetailMap":{},"topicQueueMappingInfoMap":{}}}"#;
        let body: RegisterBrokerBody = from_json(spec).expect("decodes");
        let w = &body.topic_config_serialize_wrapper;
        assert_eq!(w.data_version.counter, 3);
        assert_eq!(w.mapping_data_version.timestamp, 1_700_000_000_000);
        assert_eq!(w.topic_config_table["TBW102"].perm, 7);
        assert_eq!(w.topic_config_table["TopicTest"].write_queue_nums, 4);
        let compact: Vec<u8> = spec.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        // BTreeMap orders "TBW102" before "TopicTest"; Java's HashMap order differs, so
        // compare as values rather than bytes.
        let ours: serde_json::Value = serde_json::from_slice(&to_json(&body).expect("encodes")).expect("json");
        let theirs: serde_json::Value = serde_json::from_slice(&compact).expect("json");
        assert_eq!(ours, theirs);
    }

    #[test]
    fn heartbeat_from_the_spec_decodes() {
        let spec = br#"{"clientID":"192.168.0.2@12345#98765",
 "producerDataSet":[{"groupName":"PG"},{"groupName":"CLIENT_INNER_PRODUCER"}],
 "consumerDataSet":[{"groupName":"CG","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING",
   "consumeFromWhere":"CONSUME_FROM_LAST_OFFSET",
   "subscriptionDataSet":[
     {"classFilterMode":false,"topic":"TopicTest","subString":"TagA || TagB","tagsSet":["TagA","TagB"],
      "codeSet":[2598919,2598920],"subVersion":1700000000000,"expressionType":"TAG"},
     {"classFilterMode":false,"topic":"%RETRY%CG","subString":"*","tagsSet":[],"codeSet":[],
      "subVersion":1700000000000,"expressionType":"TAG"}],
   "unitMode":false}],
 "heartbeatFingerprint":0,"withoutSub":false}"#;
        let hb: HeartbeatData = from_json(spec).expect("decodes");
        assert_eq!(hb.client_id, "192.168.0.2@12345#98765");
        assert_eq!(hb.producer_data_set.len(), 2);
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_type, ConsumeType::ConsumePassively);
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.consume_from_where, ConsumeFromWhere::ConsumeFromLastOffset);
        assert_eq!(c.subscription_data_set[0].code_set, [2_598_919, 2_598_920]);
        assert_eq!(c.subscription_data_set[1].topic, "%RETRY%CG");
        assert_eq!(from_json::<HeartbeatData>(&to_json(&hb).expect("encodes")), Ok(hb));
    }

    #[test]
    fn decoders_are_tolerant() {
        let hb: HeartbeatData = from_json(
            br#"{"clientID":"c","consumerDataSet":[{"groupName":"G","consumeType":"CONSUME_SOMEHOW","subscriptionDataSet":[{"topic":"T"}]}],"newField":{"x":[1]}}"#,
        )
        .expect("decodes");
        let c = &hb.consumer_data_set[0];
        assert_eq!(c.consume_type, ConsumeType::Unknown);
        assert_eq!(c.message_model, MessageModel::Clustering);
        assert_eq!(c.subscription_data_set[0].expression_type, "TAG");
        let q: QueueData =
            from_json(br#"{"brokerName":"b","perm":6,"readQueueNums":1,"writeQueueNums":1}"#).expect("decodes");
        assert_eq!(q.topic_sys_flag, 0);
        assert!(matches!(from_json::<TopicRouteData>(b"{"), Err(Error::BodyJson { body: "TopicRouteData", .. })));
        assert!(from_json::<TopicRouteData>(b"{0:").is_err());
        assert!(from_json::<ConsumerListBody>(br#"{"consumerIdList":"x"}"#).is_err());
    }

    #[test]
    fn golden_small_bodies() {
        let mq = MessageQueue { broker_name: "broker-a".into(), queue_id: 1, topic: "TopicTest".into() };
        let lock = LockBatchRequestBody {
            client_id: "c1".into(),
            consumer_group: "CG".into(),
            mq_set: vec![mq.clone()],
            only_this_broker: false,
        };
        assert_eq!(
            to_json(&lock).expect("encodes"),
            br#"{"clientId":"c1","consumerGroup":"CG","mqSet":[{"brokerName":"broker-a","queueId":1,"topic":"TopicTest"}],"onlyThisBroker":false}"#
        );
        let spec_lock = br#"{"consumerGroup":"CG","clientId":"c1","onlyThisBroker":false,"mqSet":[{"topic":"TopicTest","brokerName":"broker-a","queueId":1}]}"#;
        assert_eq!(from_json::<UnlockBatchRequestBody>(spec_lock), Ok(lock));
        assert_eq!(
            to_json(&LockBatchResponseBody { lock_ok_mq_set: vec![mq] }).expect("encodes"),
            br#"{"lockOKMQSet":[{"brokerName":"broker-a","queueId":1,"topic":"TopicTest"}]}"#
        );
        assert_eq!(
            to_json(&ConsumerListBody { consumer_id_list: vec!["a@1".into()] }).expect("encodes"),
            br#"{"consumerIdList":["a@1"]}"#
        );
        assert_eq!(
            to_json(&TopicList { broker_addr: None, topic_list: vec!["T".into()] }).expect("encodes"),
            br#"{"topicList":["T"]}"#
        );
        let kv = KVTable { table: BTreeMap::from([("brokerVersionDesc".into(), "V5_3_3".into())]) };
        assert_eq!(to_json(&kv).expect("encodes"), br#"{"table":{"brokerVersionDesc":"V5_3_3"}}"#);
        assert_eq!(
            to_json(&DataVersion { counter: 1, state_version: 0, timestamp: 2 }).expect("encodes"),
            br#"{"counter":1,"stateVersion":0,"timestamp":2}"#
        );
    }

    fn mq(broker: &str, queue_id: i32) -> MessageQueue {
        MessageQueue { broker_name: broker.into(), queue_id, topic: "T".into() }
    }

    #[test]
    fn mq_keyed_bodies_use_javas_object_keys_and_round_trip() {
        let stats = TopicStatsTable {
            offset_table: BTreeMap::from([
                (mq("b-s0", 0), TopicOffset { last_update_timestamp: 1_700_000_000_000, max_offset: 5, min_offset: 1 }),
                (mq("b-s0", 1), TopicOffset::default()),
            ]),
        };
        let bytes = stats.encode().expect("encodes");
        assert_eq!(
            String::from_utf8(bytes.clone()).expect("utf8"),
            concat!(
                r#"{"offsetTable":{{"brokerName":"b-s0","queueId":0,"topic":"T"}:"#,
                r#"{"lastUpdateTimestamp":1700000000000,"maxOffset":5,"minOffset":1},"#,
                r#"{"brokerName":"b-s0","queueId":1,"topic":"T"}:"#,
                r#"{"lastUpdateTimestamp":0,"maxOffset":0,"minOffset":0}}}"#
            )
        );
        assert_eq!(TopicStatsTable::decode(&bytes), Ok(stats));

        let consume = ConsumeStats {
            consume_tps: 0.0,
            offset_table: BTreeMap::from([(
                mq("b-s1", 2),
                OffsetWrapper { broker_offset: 10, consumer_offset: 7, last_timestamp: 3, pull_offset: 7 },
            )]),
        };
        let bytes = consume.encode().expect("encodes");
        assert_eq!(
            String::from_utf8(bytes.clone()).expect("utf8"),
            concat!(
                r#"{"consumeTps":0.0,"offsetTable":{{"brokerName":"b-s1","queueId":2,"topic":"T"}:"#,
                r#"{"brokerOffset":10,"consumerOffset":7,"lastTimestamp":3,"pullOffset":7}}}"#
            )
        );
        assert_eq!(ConsumeStats::decode(&bytes), Ok(consume));

        let reset = ResetOffsetBody { offset_table: BTreeMap::from([(mq("b", 0), 4), (mq("b", 3), 0)]) };
        let bytes = reset.encode().expect("encodes");
        assert_eq!(ResetOffsetBody::decode(&bytes), Ok(reset));
        assert_eq!(ResetOffsetBody::decode(b"{\"offsetTable\":{}}"), Ok(ResetOffsetBody::default()));
    }

    #[test]
    fn mq_keyed_bodies_decode_java_key_order_and_string_keys() {
        // Java's HashMap order, fastjson member order of the key object differing from
        // ours, whitespace, and a second dialect where keys are strings of JSON.
        let java = br#"{ "offsetTable" : { {"topic":"T","brokerName":"b","queueId":1} : 9 ,
            {"queueId":0,"brokerName":"b","topic":"T"}:8 } }"#;
        let reset = ResetOffsetBody::decode(java).expect("decodes");
        assert_eq!(reset.offset_table, BTreeMap::from([(mq("b", 0), 8), (mq("b", 1), 9)]));
        let stringly = br#"{"offsetTable":{"{\"brokerName\":\"b\",\"queueId\":0,\"topic\":\"T\"}":8}}"#;
        assert_eq!(ResetOffsetBody::decode(stringly).expect("decodes").offset_table[&mq("b", 0)], 8);
        assert!(ResetOffsetBody::decode(br#"{"offsetTable":{"notaqueue":1}}"#).is_err());
        assert!(ResetOffsetBody::decode(br#"{"offsetTable":{{"brokerName":"b""#).is_err());
    }

    #[test]
    fn object_keys_become_strings_only_in_key_position() {
        let input = br#"{"a":[{"x":1},{"y":{"z":2}}],{"k":"}\""}:{"v":[1,{}]},"s":"{\"q\":1}"}"#;
        let expected = br#"{"a":[{"x":1},{"y":{"z":2}}],"{\"k\":\"}\\\"\"}":{"v":[1,{}]},"s":"{\"q\":1}"}"#;
        assert_eq!(
            String::from_utf8(object_keys_as_strings(input)).expect("utf8"),
            String::from_utf8(expected.to_vec()).expect("utf8")
        );
        let round: serde_json::Value = serde_json::from_slice(&object_keys_as_strings(input)).expect("valid JSON");
        assert_eq!(round["{\"k\":\"}\\\"\"}"]["v"][0], 1);
    }

    #[test]
    fn consumer_connection_round_trips() {
        let body = ConsumerConnection {
            connection_set: vec![ClientConnection {
                client_addr: "127.0.0.1:50000".into(),
                client_id: "127.0.0.1@1#2".into(),
                language: "RUST".into(),
                version: 474,
            }],
            consume_from_where: ConsumeFromWhere::ConsumeFromFirstOffset,
            consume_type: ConsumeType::ConsumePassively,
            message_model: MessageModel::Clustering,
            subscription_table: BTreeMap::from([(
                "T".into(),
                SubscriptionData { topic: "T".into(), sub_string: "*".into(), ..Default::default() },
            )]),
        };
        let json = to_json(&body).expect("encodes");
        let text = String::from_utf8(json.clone()).expect("utf8");
        assert!(text.starts_with(r#"{"connectionSet":[{"clientAddr":"127.0.0.1:50000","clientId":"127.0.0.1@1#2","language":"RUST","version":474}],"consumeFromWhere":"CONSUME_FROM_FIRST_OFFSET","consumeType":"CONSUME_PASSIVELY","messageModel":"CLUSTERING","subscriptionTable":{"T":{"#), "{text}");
        assert_eq!(from_json::<ConsumerConnection>(&json), Ok(body));
    }

    #[test]
    fn pseudo_random_mq_keyed_bodies_never_panic() {
        let seed = ConsumeStats {
            consume_tps: 1.5,
            offset_table: BTreeMap::from([
                (mq("b", 0), OffsetWrapper::default()),
                (mq("b", 1), OffsetWrapper::default()),
            ]),
        }
        .encode()
        .expect("encodes");
        let mut rng = XorShift(23);
        let mut decoded = 0;
        for _ in 0..3000 {
            let input = rng.mutate(&seed);
            decoded += usize::from(ConsumeStats::decode(&input).is_ok());
            let _ = TopicStatsTable::decode(&input);
            let _ = ResetOffsetBody::decode(&input);
        }
        assert!(decoded > 100, "only {decoded} bodies decoded");
    }

    #[test]
    fn check_client_body_round_trips_with_java_names() {
        let java = br#"{"clientId":"192.168.0.2@1","group":"CG","namespace":"","subscriptionData":{"classFilterMode":false,"codeSet":[],"expressionType":"SQL92","subString":"a > 1","subVersion":7,"tagsSet":[],"topic":"T"}}"#;
        let body: CheckClientRequestBody = from_json(java).expect("decodes");
        assert_eq!(body.client_id, "192.168.0.2@1");
        assert_eq!(body.group, "CG");
        let sub = body.subscription_data.as_ref().expect("subscription present");
        assert_eq!((sub.expression_type.as_str(), sub.sub_string.as_str(), sub.sub_version), ("SQL92", "a > 1", 7));
        assert_eq!(to_json(&body).expect("encodes"), java.to_vec());
        let none: CheckClientRequestBody = from_json(br#"{"clientId":"c","group":"G"}"#).expect("decodes");
        assert_eq!(none.subscription_data, None);
        assert_eq!(from_json::<CheckClientRequestBody>(&to_json(&none).expect("encodes")), Ok(none));
    }

    #[test]
    fn pseudo_random_bodies_never_panic() {
        let legacy = route().encode_for(0, false).expect("encodes");
        let seeds = [SPEC_ROUTE.as_bytes(), &legacy[..]];
        let mut rng = XorShift(11);
        let mut decoded = 0;
        for _ in 0..3000 {
            let seed = rng.below(seeds.len());
            let input = rng.mutate(seeds[seed]);
            decoded += usize::from(from_json::<TopicRouteData>(&input).is_ok());
            let _ = from_json::<HeartbeatData>(&input);
        }
        assert!(decoded > 100, "only {decoded} bodies decoded");
    }
}
