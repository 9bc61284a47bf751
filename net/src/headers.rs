//! Typed views of the `extFields` ("custom headers") of the requests and responses the
//! broker and NameServer handle (REMOTING.md §2.6, §4).
//!
//! Each header is a struct with one field per ext key. [`CommandHeader::decode`] reads
//! it from an [`ExtFields`], failing with [`Error::MissingField`] for an absent required
//! key and [`Error::InvalidField`] for a value that does not parse; [`CommandHeader::encode`]
//! writes it back, required keys first in declaration order, absent optional keys
//! omitted. Values are formatted as Java's `toString` does (decimal integers,
//! `true`/`false`), and parsed as Java's `valueOf` does (booleans: `"true"` in any case
//! is true, anything else false).
//!
//! SEND_MESSAGE comes in two spellings: V1 with the Java field names (what the Rust
//! client sends, code 10) and V2 with one-letter keys `a`..`n` (Java's default, code
//! 310, and every batch, code 320). Both decode to the one [`SendMessageRequestHeader`]
//! via [`decode_send_message_header`], or to the borrowed [`SendMessageRequestRef`] (no
//! string copied: the broker's send path) via [`decode_send_message_ref`].
//!
//! Decoding is one pass over the entries, each key matched against the header's constant
//! names; encoding formats numbers straight into the map's arena.
//!
//! The headers only admin traffic uses (topic and consume statistics, offset resets,
//! topic deletion) are in `headers/admin.rs`, declared with the same macro and
//! re-exported here.
//!
//! Invariants: decode never panics; `decode(encode(h)) == h` for every header whose
//! strings are non-empty (the binary header drops empty values). Unknown keys are
//! ignored, as Java and the Rust client ignore them.
//!
//! Deliberately not here: validation beyond syntax (topic-name rules, queue ranges); the
//! broker owns those and answers them with response codes.

use crate::command::{ExtFields, RemotingCommand};
use crate::Error;

/// A value an ext field can hold.
pub trait FieldValue: Sized {
    /// Parses the wire text; `None` means the text is not a value of this type.
    fn parse_field(text: &str) -> Option<Self>;
    fn format_field(&self) -> String;
    /// Appends the wire text to `out` (only appending: `out` may hold other fields).
    /// Header encoders use this to format straight into the ext-field arena.
    fn write_field(&self, out: &mut String) {
        out.push_str(&self.format_field());
    }
}

impl FieldValue for String {
    fn parse_field(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
    fn format_field(&self) -> String {
        self.clone()
    }
    fn write_field(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl FieldValue for i32 {
    fn parse_field(text: &str) -> Option<Self> {
        text.parse().ok()
    }
    fn format_field(&self) -> String {
        self.to_string()
    }
    fn write_field(&self, out: &mut String) {
        push_decimal(out, i64::from(*self));
    }
}

impl FieldValue for i64 {
    fn parse_field(text: &str) -> Option<Self> {
        text.parse().ok()
    }
    fn format_field(&self) -> String {
        self.to_string()
    }
    fn write_field(&self, out: &mut String) {
        push_decimal(out, *self);
    }
}

impl FieldValue for bool {
    /// Java's `Boolean.parseBoolean`: never fails, only `true` (any case) is true.
    fn parse_field(text: &str) -> Option<Self> {
        Some(text.eq_ignore_ascii_case("true"))
    }
    fn format_field(&self) -> String {
        self.to_string()
    }
    fn write_field(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

/// Text bytes of a typical ext field (key and value): what header encoders reserve per
/// field. Most are short names and numbers; a property string may take one regrowth.
const EXT_FIELD_TEXT_TYPICAL_BYTES: usize = 24;

/// Appends `value` in decimal, as Java's `Long.toString` writes it, without `fmt`'s
/// machinery (a send header carries six numbers).
pub fn push_decimal(out: &mut String, value: i64) {
    let mut buf = [0u8; crate::json::DECIMAL_I64_MAX_BYTES];
    let at = crate::json::decimal(value, &mut buf);
    // ASCII digits and a minus sign by construction.
    out.push_str(std::str::from_utf8(&buf[at..]).unwrap_or_default());
}

/// A typed custom header.
pub trait CommandHeader: Sized {
    /// The Java class name, used in errors.
    const NAME: &'static str;
    fn decode(ext: &ExtFields) -> Result<Self, Error>;
    fn encode(&self, ext: &mut ExtFields);

    /// A fresh map holding just this header.
    fn to_ext_fields(&self) -> ExtFields {
        let mut ext = ExtFields::new();
        self.encode(&mut ext);
        ext
    }
}

/// Parses a field's text, if the field was present.
fn optional<T: FieldValue>(text: Option<&str>, header: &'static str, field: &'static str) -> Result<Option<T>, Error> {
    match text {
        None => Ok(None),
        Some(text) => {
            T::parse_field(text).map(Some).ok_or_else(|| Error::InvalidField { header, field, value: text.to_owned() })
        }
    }
}

fn required<T: FieldValue>(text: Option<&str>, header: &'static str, field: &'static str) -> Result<T, Error> {
    optional(text, header, field)?.ok_or(Error::MissingField { header, field })
}

/// Declares a header struct and its [`CommandHeader`] impl from a list of
/// `field: req|opt Type = "wireKey"` lines.
macro_rules! ext_header {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $kind:ident $ty:ty = $key:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: ext_header!(@ty $kind $ty), )*
        }

        impl CommandHeader for $name {
            const NAME: &'static str = stringify!($name);

            fn decode(ext: &ExtFields) -> Result<Self, Error> {
                // One pass over the entries (keys are unique), each key matched against
                // the constant names, instead of one search of the map per field.
                struct Found<'a> {
                    $( $field: Option<&'a str>, )*
                }
                let mut found = Found { $( $field: None, )* };
                for (key, value) in ext.iter() {
                    match key {
                        $( $key => found.$field = Some(value), )*
                        _ => {}
                    }
                }
                Ok($name { $( $field: ext_header!(@get $kind $ty, found.$field, $key)?, )* })
            }

            fn encode(&self, ext: &mut ExtFields) {
                $( ext_header!(@put $kind, ext, $key, &self.$field); )*
            }

            fn to_ext_fields(&self) -> ExtFields {
                // Room for every field up front: growing the map field by field cost
                // more reallocations than the encoding itself.
                const FIELDS: usize = [$( $key ),*].len();
                let mut ext = ExtFields::with_capacities(FIELDS, FIELDS * EXT_FIELD_TEXT_TYPICAL_BYTES);
                self.encode(&mut ext);
                ext
            }
        }
    };
    (@ty req $ty:ty) => { $ty };
    (@ty opt $ty:ty) => { Option<$ty> };
    (@get req $ty:ty, $text:expr, $key:expr) => { required::<$ty>($text, Self::NAME, $key) };
    (@get opt $ty:ty, $text:expr, $key:expr) => { optional::<$ty>($text, Self::NAME, $key) };
    (@put req, $ext:expr, $key:expr, $value:expr) => { $ext.insert_with($key, |out| FieldValue::write_field($value, out)) };
    (@put opt, $ext:expr, $key:expr, $value:expr) => {
        if let Some(value) = $value {
            $ext.insert_with($key, |out| FieldValue::write_field(value, out));
        }
    };
}

// The admin headers live in a file of their own (declared after the macro, which they use).
mod admin;
pub use admin::{
    DeleteTopicFromNamesrvRequestHeader, GetConsumeStatsRequestHeader, ResetOffsetRequestHeader, TopicRequestHeader,
};

ext_header! {
    /// SEND_MESSAGE (10) / SEND_REPLY_MESSAGE (324), V1 keys; also the common form V2
    /// headers convert to.
    pub struct SendMessageRequestHeader {
        producer_group: req String = "producerGroup",
        topic: req String = "topic",
        /// Template topic for auto-creation, normally `TBW102`.
        default_topic: req String = "defaultTopic",
        default_topic_queue_nums: req i32 = "defaultTopicQueueNums",
        /// Negative: the broker picks a queue.
        queue_id: req i32 = "queueId",
        sys_flag: req i32 = "sysFlag",
        born_timestamp_ms: req i64 = "bornTimestamp",
        flag: req i32 = "flag",
        /// The property string (`name\x01value\x02...`).
        properties: opt String = "properties",
        reconsume_times: opt i32 = "reconsumeTimes",
        unit_mode: opt bool = "unitMode",
        max_reconsume_times: opt i32 = "maxReconsumeTimes",
        /// True: the body is a batch (`crate::batch`).
        batch: opt bool = "batch",
        broker_name: opt String = "bname",
    }
}

ext_header! {
    /// SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320), SEND_REPLY_MESSAGE_V2 (325): the
    /// same fields as [`SendMessageRequestHeader`] under one-letter keys.
    pub struct SendMessageRequestHeaderV2 {
        a: req String = "a",
        b: req String = "b",
        c: req String = "c",
        d: req i32 = "d",
        e: req i32 = "e",
        f: req i32 = "f",
        g: req i64 = "g",
        h: req i32 = "h",
        i: opt String = "i",
        j: opt i32 = "j",
        k: opt bool = "k",
        l: opt i32 = "l",
        m: opt bool = "m",
        n: opt String = "n",
    }
}

impl From<SendMessageRequestHeaderV2> for SendMessageRequestHeader {
    fn from(v2: SendMessageRequestHeaderV2) -> SendMessageRequestHeader {
        SendMessageRequestHeader {
            producer_group: v2.a,
            topic: v2.b,
            default_topic: v2.c,
            default_topic_queue_nums: v2.d,
            queue_id: v2.e,
            sys_flag: v2.f,
            born_timestamp_ms: v2.g,
            flag: v2.h,
            properties: v2.i,
            reconsume_times: v2.j,
            unit_mode: v2.k,
            max_reconsume_times: v2.l,
            batch: v2.m,
            broker_name: v2.n,
        }
    }
}

impl From<SendMessageRequestHeader> for SendMessageRequestHeaderV2 {
    fn from(v1: SendMessageRequestHeader) -> SendMessageRequestHeaderV2 {
        SendMessageRequestHeaderV2 {
            a: v1.producer_group,
            b: v1.topic,
            c: v1.default_topic,
            d: v1.default_topic_queue_nums,
            e: v1.queue_id,
            f: v1.sys_flag,
            g: v1.born_timestamp_ms,
            h: v1.flag,
            i: v1.properties,
            j: v1.reconsume_times,
            k: v1.unit_mode,
            l: v1.max_reconsume_times,
            m: v1.batch,
            n: v1.broker_name,
        }
    }
}

/// A send header borrowed from the request's ext fields: what the broker's send path
/// reads, without copying a string. [`SendMessageRequestRef::to_owned`] gives the owned
/// [`SendMessageRequestHeader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendMessageRequestRef<'a> {
    pub producer_group: &'a str,
    pub topic: &'a str,
    pub default_topic: &'a str,
    pub default_topic_queue_nums: i32,
    pub queue_id: i32,
    pub sys_flag: i32,
    pub born_timestamp_ms: i64,
    pub flag: i32,
    pub properties: Option<&'a str>,
    pub reconsume_times: Option<i32>,
    pub unit_mode: Option<bool>,
    pub max_reconsume_times: Option<i32>,
    pub batch: Option<bool>,
    pub broker_name: Option<&'a str>,
}

impl SendMessageRequestRef<'_> {
    /// Whether the body is a batch (`batch`/`m` = true).
    pub fn is_batch(&self) -> bool {
        self.batch == Some(true)
    }

    pub fn to_owned(&self) -> SendMessageRequestHeader {
        SendMessageRequestHeader {
            producer_group: self.producer_group.to_owned(),
            topic: self.topic.to_owned(),
            default_topic: self.default_topic.to_owned(),
            default_topic_queue_nums: self.default_topic_queue_nums,
            queue_id: self.queue_id,
            sys_flag: self.sys_flag,
            born_timestamp_ms: self.born_timestamp_ms,
            flag: self.flag,
            properties: self.properties.map(str::to_owned),
            reconsume_times: self.reconsume_times,
            unit_mode: self.unit_mode,
            max_reconsume_times: self.max_reconsume_times,
            batch: self.batch,
            broker_name: self.broker_name.map(str::to_owned),
        }
    }
}

/// The V1 keys of a send header, in declaration order (the order errors are found in).
pub(crate) const SEND_V1_KEYS: [&str; 14] = [
    "producerGroup",
    "topic",
    "defaultTopic",
    "defaultTopicQueueNums",
    "queueId",
    "sysFlag",
    "bornTimestamp",
    "flag",
    "properties",
    "reconsumeTimes",
    "unitMode",
    "maxReconsumeTimes",
    "batch",
    "bname",
];

/// The V2 keys, one letter per V1 field, same order.
pub(crate) const SEND_V2_KEYS: [&str; 14] = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n"];

/// Decodes a send header in whichever spelling it came, borrowing its strings. The keys
/// decide, not the request code: Java decides by code, but a V2 header always has `b`
/// and never `topic`, so this also accepts a client that pairs a code with the other
/// spelling. V1 headers may name the broker `brokerName` instead of `bname` (the long
/// alias the Rust side accepts). One pass over the entries finds both spellings.
pub fn decode_send_message_ref(ext: &ExtFields) -> Result<SendMessageRequestRef<'_>, Error> {
    let mut v1: [Option<&str>; 14] = [None; 14];
    let mut v2: [Option<&str>; 14] = [None; 14];
    let mut broker_name_alias = None;
    for (key, value) in ext.iter() {
        let slot = match key.as_bytes() {
            [letter @ b'a'..=b'n'] => {
                v2[usize::from(letter - b'a')] = Some(value);
                continue;
            }
            b"producerGroup" => 0,
            b"topic" => 1,
            b"defaultTopic" => 2,
            b"defaultTopicQueueNums" => 3,
            b"queueId" => 4,
            b"sysFlag" => 5,
            b"bornTimestamp" => 6,
            b"flag" => 7,
            b"properties" => 8,
            b"reconsumeTimes" => 9,
            b"unitMode" => 10,
            b"maxReconsumeTimes" => 11,
            b"batch" => 12,
            b"bname" => 13,
            b"brokerName" => {
                broker_name_alias = Some(value);
                continue;
            }
            _ => continue,
        };
        v1[slot] = Some(value);
    }
    let v2_spelling = v2[1].is_some() && v1[1].is_none();
    let (found, keys, header) = if v2_spelling {
        (v2, &SEND_V2_KEYS, SendMessageRequestHeaderV2::NAME)
    } else {
        (v1, &SEND_V1_KEYS, SendMessageRequestHeader::NAME)
    };
    // Fields are checked in declaration order, so the first bad one is reported, as the
    // typed decoders do.
    let text = |i: usize| found[i].ok_or(Error::MissingField { header, field: keys[i] });
    Ok(SendMessageRequestRef {
        producer_group: text(0)?,
        topic: text(1)?,
        default_topic: text(2)?,
        default_topic_queue_nums: required(found[3], header, keys[3])?,
        queue_id: required(found[4], header, keys[4])?,
        sys_flag: required(found[5], header, keys[5])?,
        born_timestamp_ms: required(found[6], header, keys[6])?,
        flag: required(found[7], header, keys[7])?,
        properties: found[8],
        reconsume_times: optional(found[9], header, keys[9])?,
        unit_mode: optional(found[10], header, keys[10])?,
        max_reconsume_times: optional(found[11], header, keys[11])?,
        batch: optional(found[12], header, keys[12])?,
        broker_name: if v2_spelling { found[13] } else { found[13].or(broker_name_alias) },
    })
}

/// Decodes a send header in whichever spelling it came, as an owned struct (see
/// [`decode_send_message_ref`] for the rules).
pub fn decode_send_message_header(ext: &ExtFields) -> Result<SendMessageRequestHeader, Error> {
    decode_send_message_ref(ext).map(|h| h.to_owned())
}

impl SendMessageRequestHeader {
    /// Whether the body is a batch (`batch`/`m` = true).
    pub fn is_batch(&self) -> bool {
        self.batch == Some(true)
    }

    /// Writes the header with V2 keys (what Java producers and batch sends use).
    pub fn encode_v2(&self, ext: &mut ExtFields) {
        SendMessageRequestHeaderV2::from(self.clone()).encode(ext);
    }
}

ext_header! {
    /// Response to every send.
    pub struct SendMessageResponseHeader {
        /// Offset message id (`crate::msgid`); comma-joined for a batch.
        msg_id: req String = "msgId",
        queue_id: req i32 = "queueId",
        /// Queue offset of the (first) message; the Rust client rejects negatives.
        queue_offset: req i64 = "queueOffset",
        /// The UNIQ_KEY; Java sets it on every successful send.
        transaction_id: opt String = "transactionId",
        batch_uniq_id: opt String = "batchUniqId",
        recall_handle: opt String = "recallHandle",
        msg_region: opt String = "MSG_REGION",
        trace_on: opt bool = "TRACE_ON",
    }
}

ext_header! {
    /// PULL_MESSAGE (11) and LITE_PULL_MESSAGE (361).
    pub struct PullMessageRequestHeader {
        consumer_group: req String = "consumerGroup",
        topic: req String = "topic",
        queue_id: req i32 = "queueId",
        queue_offset: req i64 = "queueOffset",
        max_msg_nums: req i32 = "maxMsgNums",
        /// `crate::code::pull_sys_flag` bits.
        sys_flag: req i32 = "sysFlag",
        commit_offset: req i64 = "commitOffset",
        suspend_timeout_millis: req i64 = "suspendTimeoutMillis",
        subscription: opt String = "subscription",
        sub_version: req i64 = "subVersion",
        expression_type: opt String = "expressionType",
        max_msg_bytes: opt i32 = "maxMsgBytes",
        request_source: opt i32 = "requestSource",
        /// Java's spelling.
        proxy_froward_client_id: opt String = "proxyFrowardClientId",
    }
}

ext_header! {
    /// Response to PULL_MESSAGE; the Rust client requires the four offsets on codes
    /// 0/19/20/21, each >= 0.
    pub struct PullMessageResponseHeader {
        suggest_which_broker_id: req i64 = "suggestWhichBrokerId",
        next_begin_offset: req i64 = "nextBeginOffset",
        min_offset: req i64 = "minOffset",
        max_offset: req i64 = "maxOffset",
        offset_delta: opt i64 = "offsetDelta",
        topic_sys_flag: opt i32 = "topicSysFlag",
        group_sys_flag: opt i32 = "groupSysFlag",
        forbidden_type: opt i32 = "forbiddenType",
    }
}

ext_header! {
    /// QUERY_CONSUMER_OFFSET (14).
    pub struct QueryConsumerOffsetRequestHeader {
        consumer_group: req String = "consumerGroup",
        topic: req String = "topic",
        queue_id: req i32 = "queueId",
        set_zero_if_not_found: opt bool = "setZeroIfNotFound",
    }
}

ext_header! {
    /// Response to QUERY_CONSUMER_OFFSET on SUCCESS ("not found" is code 22, no header).
    pub struct QueryConsumerOffsetResponseHeader {
        offset: req i64 = "offset",
    }
}

ext_header! {
    /// UPDATE_CONSUMER_OFFSET (15), usually oneway.
    pub struct UpdateConsumerOffsetRequestHeader {
        consumer_group: req String = "consumerGroup",
        topic: req String = "topic",
        queue_id: req i32 = "queueId",
        commit_offset: req i64 = "commitOffset",
    }
}

ext_header! {
    /// GET_MAX_OFFSET (30).
    pub struct GetMaxOffsetRequestHeader {
        topic: req String = "topic",
        queue_id: req i32 = "queueId",
        /// Ignored by current Java brokers.
        committed: opt bool = "committed",
    }
}

ext_header! {
    /// Response to GET_MAX_OFFSET: the next offset to be written.
    pub struct GetMaxOffsetResponseHeader {
        offset: req i64 = "offset",
    }
}

ext_header! {
    /// GET_MIN_OFFSET (31).
    pub struct GetMinOffsetRequestHeader {
        topic: req String = "topic",
        queue_id: req i32 = "queueId",
    }
}

ext_header! {
    /// Response to GET_MIN_OFFSET.
    pub struct GetMinOffsetResponseHeader {
        offset: req i64 = "offset",
    }
}

ext_header! {
    /// SEARCH_OFFSET_BY_TIMESTAMP (29).
    pub struct SearchOffsetRequestHeader {
        topic: req String = "topic",
        queue_id: req i32 = "queueId",
        timestamp_ms: req i64 = "timestamp",
        /// `LOWER` / `UPPER`, any case; see [`SearchOffsetRequestHeader::boundary`].
        boundary_type: opt String = "boundaryType",
    }
}

/// Which entry SEARCH_OFFSET_BY_TIMESTAMP returns when several match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundaryType {
    /// First entry stored at or after the timestamp.
    Lower,
    /// Last entry stored at or before the timestamp.
    Upper,
}

impl SearchOffsetRequestHeader {
    /// The boundary asked for; absent or unrecognised means LOWER, as in Java.
    pub fn boundary(&self) -> BoundaryType {
        match &self.boundary_type {
            Some(b) if b.eq_ignore_ascii_case("UPPER") => BoundaryType::Upper,
            _ => BoundaryType::Lower,
        }
    }
}

ext_header! {
    /// Response to SEARCH_OFFSET_BY_TIMESTAMP.
    pub struct SearchOffsetResponseHeader {
        offset: req i64 = "offset",
    }
}

ext_header! {
    /// GET_EARLIEST_MSG_STORETIME (32).
    pub struct GetEarliestMsgStoretimeRequestHeader {
        topic: req String = "topic",
        queue_id: req i32 = "queueId",
    }
}

ext_header! {
    /// Response to GET_EARLIEST_MSG_STORETIME; -1 when unknown.
    pub struct GetEarliestMsgStoretimeResponseHeader {
        timestamp_ms: req i64 = "timestamp",
    }
}

ext_header! {
    /// CONSUMER_SEND_MSG_BACK (36).
    pub struct ConsumerSendMsgBackRequestHeader {
        /// CommitLog (physical) offset of the failed message, not a queue offset.
        offset: req i64 = "offset",
        group: req String = "group",
        /// 0: broker decides; -1: straight to the DLQ; n > 0: that level.
        delay_level: req i32 = "delayLevel",
        origin_msg_id: opt String = "originMsgId",
        origin_topic: opt String = "originTopic",
        unit_mode: opt bool = "unitMode",
        max_reconsume_times: opt i32 = "maxReconsumeTimes",
        broker_name: opt String = "bname",
    }
}

ext_header! {
    /// UPDATE_AND_CREATE_TOPIC (17).
    pub struct CreateTopicRequestHeader {
        topic: req String = "topic",
        default_topic: req String = "defaultTopic",
        read_queue_nums: req i32 = "readQueueNums",
        write_queue_nums: req i32 = "writeQueueNums",
        perm: req i32 = "perm",
        /// `SINGLE_TAG` / `MULTI_TAG`.
        topic_filter_type: req String = "topicFilterType",
        order: req bool = "order",
        topic_sys_flag: opt i32 = "topicSysFlag",
        /// e.g. `+message.type=NORMAL`.
        attributes: opt String = "attributes",
        force: opt bool = "force",
    }
}

ext_header! {
    /// REGISTER_BROKER (103), broker -> NameServer.
    pub struct RegisterBrokerRequestHeader {
        broker_name: req String = "brokerName",
        broker_addr: req String = "brokerAddr",
        cluster_name: req String = "clusterName",
        ha_server_addr: req String = "haServerAddr",
        /// 0 = master.
        broker_id: req i64 = "brokerId",
        /// Absent: 120 000.
        heartbeat_timeout_millis: opt i64 = "heartbeatTimeoutMillis",
        enable_acting_master: opt bool = "enableActingMaster",
        compressed: opt bool = "compressed",
        /// CRC32 of the body & 0x7FFFFFFF; 0 or absent: not checked.
        body_crc32: opt i32 = "bodyCrc32",
    }
}

ext_header! {
    /// Response to REGISTER_BROKER (filled only for slaves).
    pub struct RegisterBrokerResponseHeader {
        ha_server_addr: opt String = "haServerAddr",
        master_addr: opt String = "masterAddr",
    }
}

ext_header! {
    /// UNREGISTER_BROKER (104).
    pub struct UnregisterBrokerRequestHeader {
        broker_name: req String = "brokerName",
        broker_addr: req String = "brokerAddr",
        cluster_name: req String = "clusterName",
        broker_id: req i64 = "brokerId",
    }
}

ext_header! {
    /// GET_ROUTEINFO_BY_TOPIC (105).
    pub struct GetRouteInfoRequestHeader {
        topic: req String = "topic",
        accept_standard_json_only: opt bool = "acceptStandardJsonOnly",
    }
}

ext_header! {
    /// GET_CONSUMER_LIST_BY_GROUP (38), and NOTIFY_CONSUMER_IDS_CHANGED (40).
    pub struct ConsumerGroupRequestHeader {
        consumer_group: req String = "consumerGroup",
    }
}

ext_header! {
    /// UNREGISTER_CLIENT (35).
    pub struct UnregisterClientRequestHeader {
        client_id: req String = "clientID",
        producer_group: opt String = "producerGroup",
        consumer_group: opt String = "consumerGroup",
    }
}

ext_header! {
    /// END_TRANSACTION (37), oneway.
    pub struct EndTransactionRequestHeader {
        producer_group: req String = "producerGroup",
        /// Queue offset of the half message.
        tran_state_table_offset: req i64 = "tranStateTableOffset",
        /// Physical offset of the half message.
        commit_log_offset: req i64 = "commitLogOffset",
        /// 0 unknown, 8 commit, 12 rollback.
        commit_or_rollback: req i32 = "commitOrRollback",
        from_transaction_check: opt bool = "fromTransactionCheck",
        msg_id: req String = "msgId",
        transaction_id: opt String = "transactionId",
        topic: opt String = "topic",
    }
}

ext_header! {
    /// CHECK_TRANSACTION_STATE (39), broker -> producer, oneway.
    pub struct CheckTransactionStateRequestHeader {
        topic: opt String = "topic",
        tran_state_table_offset: req i64 = "tranStateTableOffset",
        commit_log_offset: req i64 = "commitLogOffset",
        msg_id: opt String = "msgId",
        transaction_id: opt String = "transactionId",
        offset_msg_id: opt String = "offsetMsgId",
        broker_name: opt String = "bname",
    }
}

ext_header! {
    /// VIEW_MESSAGE_BY_ID (33).
    pub struct ViewMessageRequestHeader {
        /// CommitLog (physical) offset.
        offset: req i64 = "offset",
        topic: opt String = "topic",
    }
}

ext_header! {
    /// QUERY_MESSAGE (12).
    pub struct QueryMessageRequestHeader {
        topic: req String = "topic",
        key: req String = "key",
        max_num: req i32 = "maxNum",
        begin_timestamp_ms: req i64 = "beginTimestamp",
        end_timestamp_ms: req i64 = "endTimestamp",
    }
}

ext_header! {
    /// Response to QUERY_MESSAGE on SUCCESS; the Rust client requires both.
    pub struct QueryMessageResponseHeader {
        index_last_update_timestamp_ms: req i64 = "indexLastUpdateTimestamp",
        index_last_update_phyoffset: req i64 = "indexLastUpdatePhyoffset",
    }
}

ext_header! {
    /// GET_KV_CONFIG (101).
    pub struct GetKvConfigRequestHeader {
        namespace: req String = "namespace",
        key: req String = "key",
    }
}

ext_header! {
    /// Response to GET_KV_CONFIG.
    pub struct GetKvConfigResponseHeader {
        value: opt String = "value",
    }
}

impl RemotingCommand {
    /// Decodes this command's ext fields as header `H`.
    pub fn ext_header<H: CommandHeader>(&self) -> Result<H, Error> {
        H::decode(&self.ext_fields)
    }

    /// Writes header `H` into this command's ext fields (replacing keys it shares).
    pub fn set_ext_header<H: CommandHeader>(&mut self, header: &H) {
        header.encode(&mut self.ext_fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json;

    fn ext(pairs: &[(&str, &str)]) -> ExtFields {
        pairs.iter().copied().collect()
    }

    #[test]
    fn rust_client_v1_send_header_decodes() {
        // The ext fields of the REMOTING.md §2.2 example.
        let text = br#"{"code":10,"language":"RUST","version":474,"opaque":7,"flag":0,"remark":null,"extFields":{"producerGroup":"PG","topic":"TopicTest","defaultTopic":"TBW102","defaultTopicQueueNums":"4","queueId":"1","sysFlag":"0","bornTimestamp":"1700000000000","flag":"0","properties":"UNIQ_KEY\u0001ABC\u0002WAIT\u0001true\u0002","reconsumeTimes":"0","unitMode":"false","batch":"false","bname":"broker-a"},"serializeTypeCurrentRPC":"JSON"}"#;
        let cmd = json::decode_header(text).expect("decodes");
        let h = decode_send_message_header(&cmd.ext_fields).expect("valid header");
        assert_eq!(
            h,
            SendMessageRequestHeader {
                producer_group: "PG".into(),
                topic: "TopicTest".into(),
                default_topic: "TBW102".into(),
                default_topic_queue_nums: 4,
                queue_id: 1,
                sys_flag: 0,
                born_timestamp_ms: 1_700_000_000_000,
                flag: 0,
                properties: Some("UNIQ_KEY\u{1}ABC\u{2}WAIT\u{1}true\u{2}".into()),
                reconsume_times: Some(0),
                unit_mode: Some(false),
                max_reconsume_times: None,
                batch: Some(false),
                broker_name: Some("broker-a".into()),
            }
        );
        assert!(!h.is_batch());
    }

    #[test]
    fn java_v2_send_header_decodes_to_the_same_struct() {
        // The V2 example of REMOTING.md §4.2.1.
        let text = br#"{"code":310,"extFields":{"a":"PG","b":"TopicTest","c":"TBW102","d":"4","e":"1","f":"0","g":"1700000000000","h":"0","i":"UNIQ_KEY\u0001C0A8000200002A9F0000000000000001\u0002WAIT\u0001true\u0002TAGS\u0001TagA\u0002","j":"0","k":"false","m":"false","n":"broker-a"},"flag":0,"language":"JAVA","opaque":3,"serializeTypeCurrentRPC":"JSON","version":479}"#;
        let cmd = json::decode_header(text).expect("decodes");
        let h = decode_send_message_header(&cmd.ext_fields).expect("valid header");
        assert_eq!(h.producer_group, "PG");
        assert_eq!(h.topic, "TopicTest");
        assert_eq!(h.default_topic_queue_nums, 4);
        assert_eq!(h.queue_id, 1);
        assert_eq!(h.born_timestamp_ms, 1_700_000_000_000);
        assert_eq!(h.broker_name.as_deref(), Some("broker-a"));
        assert_eq!(h.max_reconsume_times, None);
        let mut v2 = ExtFields::new();
        h.encode_v2(&mut v2);
        assert_eq!(decode_send_message_header(&v2), Ok(h.clone()));
        let mut v1 = ExtFields::new();
        h.encode(&mut v1);
        assert_eq!(decode_send_message_header(&v1), Ok(h));
    }

    /// Headers as the C++ client writes them (`RemotingCommand::Encode` with jsoncpp's
    /// `FastWriter`: keys sorted, a trailing newline, `int` members as JSON numbers and
    /// 64-bit ones as strings, empty credential keys on every request), from
    /// `src/protocol/CommandHeader.cpp`. Java reads ext values with `Integer.parseInt` /
    /// `Long.parseLong` / `Boolean.parseBoolean`, and so do we once the JSON decoder has
    /// turned the numbers into their text.
    #[test]
    fn cpp_client_headers_decode() {
        let pull = concat!(
            r#"{"code":11,"extFields":{"AccessKey":"","ONSChannelKey":"","Signature":"","#,
            r#""commitOffset":"0","consumerGroup":"CID-smoke2","maxMsgNums":32,"queueId":3,"#,
            r#""queueOffset":"17","subVersion":"1796412029214","subscription":"TA || TB","#,
            r#""suspendTimeoutMillis":"15000","sysFlag":6,"topic":"SmokeT"},"flag":0,"#,
            r#""language":"CPP","opaque":9,"remark":"","version":317}"#,
            "\n"
        );
        let cmd = json::decode_header(pull.as_bytes()).expect("decodes");
        assert_eq!((cmd.code, cmd.language, cmd.version), (11, crate::LanguageCode::Cpp, 317));
        let h = PullMessageRequestHeader::decode(&cmd.ext_fields).expect("valid header");
        assert_eq!((h.queue_id, h.queue_offset, h.max_msg_nums, h.sys_flag), (3, 17, 32, 6));
        assert_eq!((h.sub_version, h.suspend_timeout_millis), (1_796_412_029_214, 15_000));
        assert_eq!((h.subscription.as_deref(), h.expression_type), (Some("TA || TB"), None));

        let send = concat!(
            r#"{"code":310,"extFields":{"AccessKey":"","ONSChannelKey":"","Signature":"","#,
            r#""a":"PG-smoke","b":"SmokeT","c":"TBW102","d":4,"e":1,"f":0,"g":"1796412029214","h":0,"#,
            r#""i":"TAGS\u0001TA\u0002","j":"0","k":"false","l":16,"m":"false"},"flag":0,"#,
            r#""language":"CPP","opaque":10,"remark":"","version":317}"#,
            "\n"
        );
        let cmd = json::decode_header(send.as_bytes()).expect("decodes");
        let h = decode_send_message_header(&cmd.ext_fields).expect("valid header");
        assert_eq!((h.topic.as_str(), h.default_topic_queue_nums, h.queue_id), ("SmokeT", 4, 1));
        assert_eq!(
            (h.born_timestamp_ms, h.max_reconsume_times, h.unit_mode),
            (1_796_412_029_214, Some(16), Some(false))
        );
        assert_eq!(h.properties.as_deref(), Some("TAGS\u{1}TA\u{2}"));
    }

    #[test]
    fn golden_encoding_of_a_send_response() {
        let h = SendMessageResponseHeader {
            msg_id: "C0A8000100002A9F0000000000000000".into(),
            queue_id: 1,
            queue_offset: 0,
            transaction_id: Some("ABC".into()),
            ..Default::default()
        };
        assert_eq!(
            h.to_ext_fields().iter().collect::<Vec<_>>(),
            [
                ("msgId", "C0A8000100002A9F0000000000000000"),
                ("queueId", "1"),
                ("queueOffset", "0"),
                ("transactionId", "ABC")
            ]
        );
        assert_eq!(SendMessageResponseHeader::decode(&h.to_ext_fields()), Ok(h));
    }

    #[test]
    fn missing_and_invalid_fields_are_named() {
        let e = SendMessageRequestHeader::decode(&ext(&[("producerGroup", "PG")]));
        assert_eq!(e, Err(Error::MissingField { header: "SendMessageRequestHeader", field: "topic" }));
        let e = decode_send_message_header(&ext(&[("a", "PG"), ("b", "T")]));
        assert_eq!(e, Err(Error::MissingField { header: "SendMessageRequestHeaderV2", field: "c" }));
        let e = PullMessageRequestHeader::decode(&ext(&[("consumerGroup", "CG"), ("topic", "T"), ("queueId", "x1")]));
        assert_eq!(
            e,
            Err(Error::InvalidField { header: "PullMessageRequestHeader", field: "queueId", value: "x1".into() })
        );
        let e = GetMaxOffsetRequestHeader::decode(&ext(&[("topic", "T"), ("queueId", "99999999999")]));
        assert!(matches!(e, Err(Error::InvalidField { field: "queueId", .. })));
        let e = RegisterBrokerRequestHeader::decode(&ext(&[]));
        assert_eq!(e, Err(Error::MissingField { header: "RegisterBrokerRequestHeader", field: "brokerName" }));
    }

    #[test]
    fn pull_header_round_trips_and_keeps_java_typo() {
        let h = PullMessageRequestHeader {
            consumer_group: "CG".into(),
            topic: "TopicTest".into(),
            queue_id: 3,
            queue_offset: 42,
            max_msg_nums: 32,
            sys_flag: 3,
            commit_offset: 40,
            suspend_timeout_millis: 15_000,
            subscription: Some("*".into()),
            sub_version: 1_700_000_000_000,
            expression_type: Some("TAG".into()),
            max_msg_bytes: Some(262_144),
            request_source: None,
            proxy_froward_client_id: Some("p".into()),
        };
        let e = h.to_ext_fields();
        assert_eq!(e.get("proxyFrowardClientId"), Some("p"));
        assert_eq!(e.get("suspendTimeoutMillis"), Some("15000"));
        assert_eq!(PullMessageRequestHeader::decode(&e), Ok(h));
        let resp = PullMessageResponseHeader { next_begin_offset: 43, max_offset: 100, ..Default::default() };
        assert_eq!(
            resp.to_ext_fields().iter().collect::<Vec<_>>(),
            [("suggestWhichBrokerId", "0"), ("nextBeginOffset", "43"), ("minOffset", "0"), ("maxOffset", "100")]
        );
    }

    #[test]
    fn booleans_parse_like_java_and_boundary_defaults_to_lower() {
        let h = GetRouteInfoRequestHeader::decode(&ext(&[("topic", "T"), ("acceptStandardJsonOnly", "TRUE")]));
        assert_eq!(h.map(|h| h.accept_standard_json_only), Ok(Some(true)));
        let h = GetRouteInfoRequestHeader::decode(&ext(&[("topic", "T"), ("acceptStandardJsonOnly", "yes")]));
        assert_eq!(h.map(|h| h.accept_standard_json_only), Ok(Some(false)));
        let s =
            |b: Option<&str>| SearchOffsetRequestHeader { boundary_type: b.map(str::to_owned), ..Default::default() };
        assert_eq!(s(None).boundary(), BoundaryType::Lower);
        assert_eq!(s(Some("upper")).boundary(), BoundaryType::Upper);
        assert_eq!(s(Some("LOWER")).boundary(), BoundaryType::Lower);
    }

    #[test]
    fn command_helpers_and_unknown_keys() {
        let mut cmd = RemotingCommand::new_request(crate::code::request::UPDATE_CONSUMER_OFFSET, ExtFields::new());
        let h = UpdateConsumerOffsetRequestHeader {
            consumer_group: "CG".into(),
            topic: "T".into(),
            queue_id: 0,
            commit_offset: 7,
        };
        cmd.set_ext_header(&h);
        cmd.ext_fields.insert("lo", "false");
        assert_eq!(cmd.ext_header::<UpdateConsumerOffsetRequestHeader>(), Ok(h));
        let v1_alias = decode_send_message_header(&ext(&[
            ("producerGroup", "PG"),
            ("topic", "T"),
            ("defaultTopic", "TBW102"),
            ("defaultTopicQueueNums", "4"),
            ("queueId", "-1"),
            ("sysFlag", "0"),
            ("bornTimestamp", "1"),
            ("flag", "0"),
            ("brokerName", "broker-b"),
        ]));
        assert_eq!(v1_alias.map(|h| (h.queue_id, h.broker_name)), Ok((-1, Some("broker-b".into()))));
    }

    /// The rules [`decode_send_message_header`] had before its single-pass rewrite.
    fn send_header_by_lookups(ext: &ExtFields) -> Result<SendMessageRequestHeader, Error> {
        if ext.contains_key("b") && !ext.contains_key("topic") {
            return SendMessageRequestHeaderV2::decode(ext).map(SendMessageRequestHeader::from);
        }
        let mut header = SendMessageRequestHeader::decode(ext)?;
        if header.broker_name.is_none() {
            header.broker_name = ext.get("brokerName").map(str::to_owned);
        }
        Ok(header)
    }

    #[test]
    fn single_pass_send_decode_agrees_with_per_field_lookups() {
        let mut rng = crate::test_util::XorShift(0xD1FF);
        let keys: Vec<&str> = SEND_V1_KEYS.iter().chain(&SEND_V2_KEYS).copied().chain(["brokerName", "zzz"]).collect();
        let values = ["PG", "7", "-1", "x1", "true", "FALSE", "99999999999", "1700000000000", ""];
        let mut decoded = 0;
        for _ in 0..20_000 {
            let mut ext = ExtFields::new();
            // Mostly complete headers of one spelling, then noise.
            let base: &[&str] = if rng.below(2) == 0 { &SEND_V1_KEYS } else { &SEND_V2_KEYS };
            for key in &base[..8] {
                if rng.below(12) != 0 {
                    ext.insert(key, if key.len() > 1 && key.contains("opic") { "T" } else { "1" });
                }
            }
            for _ in 0..rng.below(5) {
                ext.insert(keys[rng.below(keys.len())], values[rng.below(values.len())]);
            }
            let fast = decode_send_message_header(&ext);
            assert_eq!(fast, send_header_by_lookups(&ext), "{ext:?}");
            decoded += usize::from(fast.is_ok());
        }
        assert!(decoded > 2_000, "only {decoded} decoded");
    }

    #[test]
    fn numbers_are_written_like_java() {
        for v in [0, 1, -1, 9, 10, i64::from(i32::MAX), i64::MAX, i64::MIN] {
            let mut out = String::from("x");
            push_decimal(&mut out, v);
            assert_eq!(out, format!("x{v}"));
        }
    }
}
