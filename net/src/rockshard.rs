//! What Rockshard adds to the RocketMQ protocol: its own request codes (the Raft
//! transport between the nodes of a replicated group, and the Raft status admin tools
//! ask for), the JSON body RAFT_STATUS answers, and the name of the internal topic its
//! replicated metadata rides on.
//!
//! Invariants: the codes are below 2^15, so they fit the ROCKETMQ binary header's code
//! field, and far from RocketMQ's own codes; like RocketMQ's they never change meaning.
//! The status body's field names are the JSON that `rockshard admin cluster status
//! --json` prints and tests read: renaming one is a format change.
//!
//! Deliberately not here: the Raft messages themselves (the raft crate's `wire` encodes
//! them; this crate only names the request that carries them), turning a replica's
//! status into this body (the broker does, it alone knows the replica), and the rules
//! about the metadata topic (the broker refuses client sends to it).

use serde::{Deserialize, Serialize};

/// Oneway: a batch of Raft messages for the shard this connection reaches (its body is
/// the raft crate's wire encoding).
pub const RAFT_MESSAGES: i32 = 30_001;
/// Request: the shard's Raft status as JSON ([`StatusBody`]).
pub const RAFT_STATUS: i32 = 30_002;

// The ROCKETMQ binary header carries the code in 16 signed bits.
const _: () = assert!(RAFT_MESSAGES < 1 << 15 && RAFT_STATUS < 1 << 15, "codes fit the binary header");

/// The internal topic replicated metadata records (topic changes, consumer offsets,
/// delayed-delivery progress) are stored on. Clients can neither send to it nor see it
/// in routes; admin tools leave it out of topic lists.
pub const META_TOPIC: &str = "RMQ_SYS_ROCKSHARD_META";

/// What RAFT_STATUS answers: the replica's view plus who the nodes are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusBody {
    pub group: String,
    pub broker_name: String,
    pub shard: usize,
    pub node: String,
    pub node_id: u64,
    /// Node names by Raft id (1-based).
    pub peers: Vec<String>,
    pub status: StatusView,
}

/// The replica's status in the form RAFT_STATUS carries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub id: u64,
    pub leader: Option<u64>,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub role: String,
    /// Per follower, on the leader only.
    pub progress: Vec<ProgressView>,
    pub stopped: Option<String>,
}

/// One follower's replication progress as the leader sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressView {
    pub id: u64,
    pub matched: u64,
    pub next_idx: u64,
    pub state: String,
    /// Entries the follower is behind the leader's last index.
    pub lag: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_stay_put() {
        assert_eq!((RAFT_MESSAGES, RAFT_STATUS), (30_001, 30_002));
    }

    #[test]
    fn status_body_json_uses_the_published_names() {
        let body = StatusBody {
            group: "g1".into(),
            broker_name: "broker-a-s0".into(),
            shard: 0,
            node: "n1".into(),
            node_id: 1,
            peers: vec!["n1".into(), "n2".into()],
            status: StatusView {
                id: 1,
                leader: Some(1),
                term: 3,
                commit: 10,
                applied: 10,
                last_index: 11,
                role: "leader".into(),
                progress: vec![ProgressView { id: 2, matched: 9, next_idx: 10, state: "replicate".into(), lag: 2 }],
                stopped: None,
            },
        };
        let json = serde_json::to_string(&body).expect("serializes");
        assert!(
            json.starts_with(r#"{"group":"g1","brokerName":"broker-a-s0","shard":0,"node":"n1","nodeId":1,"#),
            "{json}"
        );
        assert!(json.contains(r#""lastIndex":11"#) && json.contains(r#""nextIdx":10"#), "{json}");
        let back: StatusBody = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back.status.progress[0].lag, 2);
    }
}
