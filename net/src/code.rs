//! The numbers of the protocol: request codes, response codes, language codes, header
//! serialization types, `flag` bits and version ordinals (REMOTING.md §1.5, §2.4, §2.5,
//! §3, §4.0).
//!
//! Invariants: every number here is the one Java's `RequestCode` / `ResponseCode` /
//! `LanguageCode` use and is stable forever; a client that sends 10 means SEND_MESSAGE in
//! every release. Codes are plain `i32` constants rather than enums because both sides
//! must carry codes they do not know (an unknown request is answered with
//! REQUEST_CODE_NOT_SUPPORTED, not rejected by the codec).
//!
//! Deliberately not here: mapping crate errors to response codes (the broker decides
//! which code a failure deserves), and any behaviour attached to a code.

/// Request codes (Java `RequestCode`). Broker→client requests are marked as such.
pub mod request {
    pub const SEND_MESSAGE: i32 = 10;
    pub const PULL_MESSAGE: i32 = 11;
    pub const QUERY_MESSAGE: i32 = 12;
    pub const QUERY_BROKER_OFFSET: i32 = 13;
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    pub const UPDATE_CONSUMER_OFFSET: i32 = 15;
    pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    pub const UPDATE_AND_CREATE_TOPIC_LIST: i32 = 18;
    pub const GET_ALL_TOPIC_CONFIG: i32 = 21;
    pub const UPDATE_BROKER_CONFIG: i32 = 25;
    pub const GET_BROKER_CONFIG: i32 = 26;
    pub const GET_BROKER_RUNTIME_INFO: i32 = 28;
    pub const SEARCH_OFFSET_BY_TIMESTAMP: i32 = 29;
    pub const GET_MAX_OFFSET: i32 = 30;
    pub const GET_MIN_OFFSET: i32 = 31;
    pub const GET_EARLIEST_MSG_STORETIME: i32 = 32;
    pub const VIEW_MESSAGE_BY_ID: i32 = 33;
    pub const HEART_BEAT: i32 = 34;
    pub const UNREGISTER_CLIENT: i32 = 35;
    pub const CONSUMER_SEND_MSG_BACK: i32 = 36;
    pub const END_TRANSACTION: i32 = 37;
    pub const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    /// Broker → producer, oneway.
    pub const CHECK_TRANSACTION_STATE: i32 = 39;
    /// Broker → consumer, oneway.
    pub const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
    pub const LOCK_BATCH_MQ: i32 = 41;
    pub const UNLOCK_BATCH_MQ: i32 = 42;
    pub const GET_ALL_CONSUMER_OFFSET: i32 = 43;
    pub const GET_ALL_DELAY_OFFSET: i32 = 45;
    pub const CHECK_CLIENT_CONFIG: i32 = 46;
    pub const PUT_KV_CONFIG: i32 = 100;
    pub const GET_KV_CONFIG: i32 = 101;
    pub const DELETE_KV_CONFIG: i32 = 102;
    pub const REGISTER_BROKER: i32 = 103;
    pub const UNREGISTER_BROKER: i32 = 104;
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    pub const UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: i32 = 200;
    /// Per-queue min/max offsets of a topic on one broker (admin).
    pub const GET_TOPIC_STATS_INFO: i32 = 202;
    pub const GET_CONSUMER_CONNECTION_LIST: i32 = 203;
    pub const WIPE_WRITE_PERM_OF_BROKER: i32 = 205;
    pub const GET_ALL_TOPIC_LIST_FROM_NAMESERVER: i32 = 206;
    pub const GET_CONSUME_STATS: i32 = 208;
    pub const DELETE_TOPIC_IN_BROKER: i32 = 215;
    pub const DELETE_TOPIC_IN_NAMESRV: i32 = 216;
    pub const REGISTER_TOPIC_IN_NAMESRV: i32 = 217;
    pub const GET_KVLIST_BY_NAMESPACE: i32 = 219;
    /// Broker → client.
    pub const RESET_CONSUMER_CLIENT_OFFSET: i32 = 220;
    /// Broker → client.
    pub const GET_CONSUMER_STATUS_FROM_CLIENT: i32 = 221;
    /// Admin -> broker: move a consumer group's offsets to a time (the broker then tells
    /// the group's clients with RESET_CONSUMER_CLIENT_OFFSET).
    pub const INVOKE_BROKER_TO_RESET_OFFSET: i32 = 222;
    pub const GET_TOPICS_BY_CLUSTER: i32 = 224;
    pub const GET_SYSTEM_TOPIC_LIST_FROM_NS: i32 = 304;
    /// Broker → client.
    pub const GET_CONSUMER_RUNNING_INFO: i32 = 307;
    /// Broker → client.
    pub const CONSUME_MESSAGE_DIRECTLY: i32 = 309;
    pub const SEND_MESSAGE_V2: i32 = 310;
    pub const SEND_BATCH_MESSAGE: i32 = 320;
    pub const QUERY_DATA_VERSION: i32 = 322;
    pub const SEND_REPLY_MESSAGE: i32 = 324;
    pub const SEND_REPLY_MESSAGE_V2: i32 = 325;
    /// Broker → client.
    pub const PUSH_REPLY_MESSAGE_TO_CLIENT: i32 = 326;
    pub const ADD_WRITE_PERM_OF_BROKER: i32 = 327;
    pub const LITE_PULL_MESSAGE: i32 = 361;
    pub const QUERY_ASSIGNMENT: i32 = 400;
    pub const SET_MESSAGE_REQUEST_MODE: i32 = 401;
    pub const BROKER_HEARTBEAT: i32 = 904;
    /// POP codes do not fit the ROCKETMQ binary header's 16-bit code field.
    pub const POP_MESSAGE: i32 = 200_050;
    pub const ACK_MESSAGE: i32 = 200_051;
    pub const CHANGE_MESSAGE_INVISIBLETIME: i32 = 200_053;
}

/// Response codes (Java `RemotingSysResponseCode` + `ResponseCode`).
pub mod response {
    pub const SUCCESS: i32 = 0;
    pub const SYSTEM_ERROR: i32 = 1;
    pub const SYSTEM_BUSY: i32 = 2;
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    pub const TRANSACTION_FAILED: i32 = 4;
    pub const FLUSH_DISK_TIMEOUT: i32 = 10;
    pub const SLAVE_NOT_AVAILABLE: i32 = 11;
    pub const FLUSH_SLAVE_TIMEOUT: i32 = 12;
    pub const MESSAGE_ILLEGAL: i32 = 13;
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    pub const VERSION_NOT_SUPPORTED: i32 = 15;
    pub const NO_PERMISSION: i32 = 16;
    pub const TOPIC_NOT_EXIST: i32 = 17;
    pub const TOPIC_EXIST_ALREADY: i32 = 18;
    pub const PULL_NOT_FOUND: i32 = 19;
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    pub const PULL_OFFSET_MOVED: i32 = 21;
    pub const QUERY_NOT_FOUND: i32 = 22;
    pub const SUBSCRIPTION_PARSE_FAILED: i32 = 23;
    pub const SUBSCRIPTION_NOT_EXIST: i32 = 24;
    pub const SUBSCRIPTION_NOT_LATEST: i32 = 25;
    pub const SUBSCRIPTION_GROUP_NOT_EXIST: i32 = 26;
    pub const FILTER_DATA_NOT_EXIST: i32 = 27;
    pub const FILTER_DATA_NOT_LATEST: i32 = 28;
    pub const INVALID_PARAMETER: i32 = 29;
    pub const TRANSACTION_SHOULD_COMMIT: i32 = 200;
    pub const TRANSACTION_SHOULD_ROLLBACK: i32 = 201;
    /// Java's spelling.
    pub const TRANSACTION_STATE_UNKNOW: i32 = 202;
    pub const TRANSACTION_STATE_GROUP_WRONG: i32 = 203;
    pub const NO_BUYER_ID: i32 = 204;
    pub const NOT_IN_CURRENT_UNIT: i32 = 205;
    pub const CONSUMER_NOT_ONLINE: i32 = 206;
    pub const CONSUME_MSG_TIMEOUT: i32 = 207;
    pub const NO_MESSAGE: i32 = 208;
    pub const POLLING_FULL: i32 = 209;
    pub const POLLING_TIMEOUT: i32 = 210;
    pub const BROKER_NOT_EXIST: i32 = 211;
    pub const BROKER_DISPATCH_NOT_COMPLETE: i32 = 212;
    pub const BROADCAST_CONSUMPTION: i32 = 213;
    pub const FLOW_CONTROL: i32 = 215;
    pub const NOT_LEADER_FOR_QUEUE: i32 = 501;
    pub const ILLEGAL_OPERATION: i32 = 604;
    pub const GO_AWAY: i32 = 1500;

    /// Java's name of a response code, for messages people read (`TOPIC_NOT_EXIST`);
    /// `None` for a code this table does not know.
    pub fn name(code: i32) -> Option<&'static str> {
        Some(match code {
            SUCCESS => "SUCCESS",
            SYSTEM_ERROR => "SYSTEM_ERROR",
            SYSTEM_BUSY => "SYSTEM_BUSY",
            REQUEST_CODE_NOT_SUPPORTED => "REQUEST_CODE_NOT_SUPPORTED",
            TRANSACTION_FAILED => "TRANSACTION_FAILED",
            FLUSH_DISK_TIMEOUT => "FLUSH_DISK_TIMEOUT",
            SLAVE_NOT_AVAILABLE => "SLAVE_NOT_AVAILABLE",
            FLUSH_SLAVE_TIMEOUT => "FLUSH_SLAVE_TIMEOUT",
            MESSAGE_ILLEGAL => "MESSAGE_ILLEGAL",
            SERVICE_NOT_AVAILABLE => "SERVICE_NOT_AVAILABLE",
            VERSION_NOT_SUPPORTED => "VERSION_NOT_SUPPORTED",
            NO_PERMISSION => "NO_PERMISSION",
            TOPIC_NOT_EXIST => "TOPIC_NOT_EXIST",
            TOPIC_EXIST_ALREADY => "TOPIC_EXIST_ALREADY",
            PULL_NOT_FOUND => "PULL_NOT_FOUND",
            PULL_RETRY_IMMEDIATELY => "PULL_RETRY_IMMEDIATELY",
            PULL_OFFSET_MOVED => "PULL_OFFSET_MOVED",
            QUERY_NOT_FOUND => "QUERY_NOT_FOUND",
            SUBSCRIPTION_PARSE_FAILED => "SUBSCRIPTION_PARSE_FAILED",
            SUBSCRIPTION_NOT_EXIST => "SUBSCRIPTION_NOT_EXIST",
            SUBSCRIPTION_NOT_LATEST => "SUBSCRIPTION_NOT_LATEST",
            SUBSCRIPTION_GROUP_NOT_EXIST => "SUBSCRIPTION_GROUP_NOT_EXIST",
            FILTER_DATA_NOT_EXIST => "FILTER_DATA_NOT_EXIST",
            FILTER_DATA_NOT_LATEST => "FILTER_DATA_NOT_LATEST",
            INVALID_PARAMETER => "INVALID_PARAMETER",
            TRANSACTION_SHOULD_COMMIT => "TRANSACTION_SHOULD_COMMIT",
            TRANSACTION_SHOULD_ROLLBACK => "TRANSACTION_SHOULD_ROLLBACK",
            TRANSACTION_STATE_UNKNOW => "TRANSACTION_STATE_UNKNOW",
            TRANSACTION_STATE_GROUP_WRONG => "TRANSACTION_STATE_GROUP_WRONG",
            NO_BUYER_ID => "NO_BUYER_ID",
            NOT_IN_CURRENT_UNIT => "NOT_IN_CURRENT_UNIT",
            CONSUMER_NOT_ONLINE => "CONSUMER_NOT_ONLINE",
            CONSUME_MSG_TIMEOUT => "CONSUME_MSG_TIMEOUT",
            NO_MESSAGE => "NO_MESSAGE",
            POLLING_FULL => "POLLING_FULL",
            POLLING_TIMEOUT => "POLLING_TIMEOUT",
            BROKER_NOT_EXIST => "BROKER_NOT_EXIST",
            BROKER_DISPATCH_NOT_COMPLETE => "BROKER_DISPATCH_NOT_COMPLETE",
            BROADCAST_CONSUMPTION => "BROADCAST_CONSUMPTION",
            FLOW_CONTROL => "FLOW_CONTROL",
            NOT_LEADER_FOR_QUEUE => "NOT_LEADER_FOR_QUEUE",
            ILLEGAL_OPERATION => "ILLEGAL_OPERATION",
            GO_AWAY => "GO_AWAY",
            _ => return None,
        })
    }
}

/// `flag` bits of every command (Java `RemotingCommand` RPC_TYPE / RPC_ONEWAY).
pub mod flag {
    /// Set on responses; a peer routes a frame to its pending-request table on this bit alone.
    pub const RESPONSE: i32 = 1;
    /// Set on requests that must never be answered.
    pub const ONEWAY: i32 = 2;
}

/// `version` values: ordinals of Java's `MQVersion.Version` enum (REMOTING.md §2.5).
pub mod version {
    pub const V3_0_11: i32 = 37;
    pub const V3_4_9: i32 = 121;
    pub const V4_1_0_SNAPSHOT: i32 = 232;
    pub const V4_9_4: i32 = 401;
    pub const V5_0_0: i32 = 413;
    pub const V5_3_1_SNAPSHOT: i32 = 474;
    pub const V5_3_3: i32 = 479;
    /// What Rockshard puts in every command it originates. Clients store the broker's
    /// version from heartbeat responses and refuse SQL92 filters below 232, so this must
    /// be modern.
    pub const CURRENT: i32 = V5_3_3;
}

/// Permission bits of topics and queues (Java `PermName`).
pub mod perm {
    pub const INHERIT: i32 = 1;
    pub const WRITE: i32 = 2;
    pub const READ: i32 = 4;
    pub const PRIORITY: i32 = 8;
}

/// PULL_MESSAGE `sysFlag` bits (Java `PullSysFlag`).
pub mod pull_sys_flag {
    pub const COMMIT_OFFSET: i32 = 1;
    pub const SUSPEND: i32 = 2;
    pub const SUBSCRIPTION: i32 = 4;
    pub const CLASS_FILTER: i32 = 8;
    pub const LITE_PULL: i32 = 16;
}

/// The sender's implementation language (Java `LanguageCode`, REMOTING.md §2.4).
///
/// JSON headers carry the name, binary headers the code. An unknown binary code decodes
/// as [`LanguageCode::Other`], as the Rust client does, because the language is
/// informational and refusing a frame over it would break a working client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LanguageCode {
    #[default]
    Java,
    Cpp,
    Dotnet,
    Python,
    Delphi,
    Erlang,
    Ruby,
    Other,
    Http,
    Go,
    Php,
    Oms,
    Rust,
    NodeJs,
}

impl LanguageCode {
    const ALL: [LanguageCode; 14] = [
        LanguageCode::Java,
        LanguageCode::Cpp,
        LanguageCode::Dotnet,
        LanguageCode::Python,
        LanguageCode::Delphi,
        LanguageCode::Erlang,
        LanguageCode::Ruby,
        LanguageCode::Other,
        LanguageCode::Http,
        LanguageCode::Go,
        LanguageCode::Php,
        LanguageCode::Oms,
        LanguageCode::Rust,
        LanguageCode::NodeJs,
    ];

    /// The binary header's byte.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The language with this code; unknown codes are [`LanguageCode::Other`].
    pub fn from_code(code: u8) -> LanguageCode {
        Self::ALL.get(usize::from(code)).copied().unwrap_or(LanguageCode::Other)
    }

    /// The JSON header's name, as Java spells the enum constant.
    pub fn name(self) -> &'static str {
        match self {
            LanguageCode::Java => "JAVA",
            LanguageCode::Cpp => "CPP",
            LanguageCode::Dotnet => "DOTNET",
            LanguageCode::Python => "PYTHON",
            LanguageCode::Delphi => "DELPHI",
            LanguageCode::Erlang => "ERLANG",
            LanguageCode::Ruby => "RUBY",
            LanguageCode::Other => "OTHER",
            LanguageCode::Http => "HTTP",
            LanguageCode::Go => "GO",
            LanguageCode::Php => "PHP",
            LanguageCode::Oms => "OMS",
            LanguageCode::Rust => "RUST",
            LanguageCode::NodeJs => "NODE_JS",
        }
    }

    /// The language with this name (case-insensitive); unknown names are `None`.
    pub fn from_name(name: &str) -> Option<LanguageCode> {
        Self::ALL.iter().copied().find(|l| l.name().eq_ignore_ascii_case(name))
    }
}

/// How a frame's header is encoded: the high byte of the header-length word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SerializeType {
    #[default]
    Json,
    RocketMq,
}

impl SerializeType {
    /// The high byte of the header-length word.
    pub fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    pub fn from_code(code: u8) -> Option<SerializeType> {
        match code {
            0 => Some(SerializeType::Json),
            1 => Some(SerializeType::RocketMq),
            _ => None,
        }
    }

    /// The name in the JSON header's `serializeTypeCurrentRPC`.
    pub fn name(self) -> &'static str {
        match self {
            SerializeType::Json => "JSON",
            SerializeType::RocketMq => "ROCKETMQ",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes_match_the_java_table() {
        assert_eq!(LanguageCode::Java.code(), 0);
        assert_eq!(LanguageCode::Other.code(), 7);
        assert_eq!(LanguageCode::Rust.code(), 12);
        assert_eq!(LanguageCode::NodeJs.code(), 13);
        for l in LanguageCode::ALL {
            assert_eq!(LanguageCode::from_code(l.code()), l);
            assert_eq!(LanguageCode::from_name(l.name()), Some(l));
        }
        assert_eq!(LanguageCode::from_code(14), LanguageCode::Other);
        assert_eq!(LanguageCode::from_code(255), LanguageCode::Other);
        assert_eq!(LanguageCode::from_name("rust"), Some(LanguageCode::Rust));
        assert_eq!(LanguageCode::from_name("COBOL"), None);
    }

    #[test]
    fn response_names_are_javas() {
        assert_eq!(response::name(response::SUCCESS), Some("SUCCESS"));
        assert_eq!(response::name(17), Some("TOPIC_NOT_EXIST"));
        assert_eq!(response::name(3), Some("REQUEST_CODE_NOT_SUPPORTED"));
        assert_eq!(response::name(202), Some("TRANSACTION_STATE_UNKNOW"));
        assert_eq!(response::name(1500), Some("GO_AWAY"));
        assert_eq!(response::name(9999), None);
    }

    #[test]
    fn serialize_types() {
        assert_eq!(SerializeType::from_code(0), Some(SerializeType::Json));
        assert_eq!(SerializeType::from_code(1), Some(SerializeType::RocketMq));
        assert_eq!(SerializeType::from_code(2), None);
        assert_eq!(SerializeType::RocketMq.name(), "ROCKETMQ");
    }
}
