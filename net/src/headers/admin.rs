//! The request headers only admin traffic uses: what `rockshard admin` (and Apache's
//! `mqadmin`) send and the broker reads for topic statistics, consume statistics,
//! offset resets and topic deletion.
//!
//! Declared with the same [`ext_header!`](super) macro as every other header, so they
//! decode in one pass, fail with `MissingField` / `InvalidField` like the others and
//! encode required keys first in declaration order. Java's class and key names are kept
//! (`ResetOffsetRequestHeader` sends `timestamp` and `isForce`).
//!
//! Deliberately not here: what the broker does with them (its admin handlers) and how the
//! admin tool renders the answers.

use super::{optional, required, CommandHeader, FieldValue, EXT_FIELD_TEXT_TYPICAL_BYTES};
use crate::command::ExtFields;
use crate::Error;

ext_header! {
    /// GET_TOPIC_STATS_INFO (202) and DELETE_TOPIC_IN_BROKER (215): just the topic.
    pub struct TopicRequestHeader {
        topic: req String = "topic",
    }
}

ext_header! {
    /// GET_CONSUME_STATS (208). Without a topic: every topic the group has offsets for.
    pub struct GetConsumeStatsRequestHeader {
        consumer_group: req String = "consumerGroup",
        topic: opt String = "topic",
    }
}

ext_header! {
    /// INVOKE_BROKER_TO_RESET_OFFSET (222), Java's `ResetOffsetRequestHeader`.
    pub struct ResetOffsetRequestHeader {
        topic: req String = "topic",
        group: req String = "group",
        /// -1 or absent: every queue.
        queue_id: opt i32 = "queueId",
        /// With a queue id: reset that queue to exactly this offset.
        offset: opt i64 = "offset",
        /// Store time (ms) to move to; -1 means the end of each queue.
        timestamp_ms: req i64 = "timestamp",
        /// Without force, an offset only ever moves backwards (Java's rule).
        is_force: req bool = "isForce",
    }
}

ext_header! {
    /// DELETE_TOPIC_IN_NAMESRV (216), sent by `rockshard admin topic delete`.
    pub struct DeleteTopicFromNamesrvRequestHeader {
        topic: req String = "topic",
        cluster_name: opt String = "clusterName",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_offset_header_uses_javas_keys() {
        let h = ResetOffsetRequestHeader {
            topic: "T".into(),
            group: "G".into(),
            queue_id: None,
            offset: None,
            timestamp_ms: 1_700_000_000_000,
            is_force: true,
        };
        let ext = h.to_ext_fields();
        assert_eq!(
            ext.iter().collect::<Vec<_>>(),
            [("topic", "T"), ("group", "G"), ("timestamp", "1700000000000"), ("isForce", "true")]
        );
        assert_eq!(ResetOffsetRequestHeader::decode(&ext), Ok(h));
        let missing: ExtFields = [("topic", "T")].into_iter().collect();
        assert!(matches!(ResetOffsetRequestHeader::decode(&missing), Err(Error::MissingField { field: "group", .. })));
        let bad: ExtFields = [("consumerGroup", "G"), ("topic", "T")].into_iter().collect();
        assert_eq!(
            GetConsumeStatsRequestHeader::decode(&bad),
            Ok(GetConsumeStatsRequestHeader { consumer_group: "G".into(), topic: Some("T".into()) })
        );
        let bad: ExtFields =
            [("topic", "T"), ("group", "G"), ("timestamp", "soon"), ("isForce", "x")].into_iter().collect();
        assert!(matches!(ResetOffsetRequestHeader::decode(&bad), Err(Error::InvalidField { field: "timestamp", .. })));
    }

    #[test]
    fn admin_headers_round_trip_with_optional_fields() {
        let h = ResetOffsetRequestHeader {
            topic: "T".into(),
            group: "G".into(),
            queue_id: Some(3),
            offset: Some(42),
            timestamp_ms: -1,
            is_force: false,
        };
        assert_eq!(ResetOffsetRequestHeader::decode(&h.to_ext_fields()), Ok(h));
        let d = DeleteTopicFromNamesrvRequestHeader { topic: "T".into(), cluster_name: Some("DefaultCluster".into()) };
        assert_eq!(d.to_ext_fields().iter().collect::<Vec<_>>(), [("topic", "T"), ("clusterName", "DefaultCluster")]);
        assert_eq!(DeleteTopicFromNamesrvRequestHeader::decode(&d.to_ext_fields()), Ok(d));
        let t = TopicRequestHeader { topic: "T".into() };
        assert_eq!(TopicRequestHeader::decode(&t.to_ext_fields()), Ok(t));
    }
}
