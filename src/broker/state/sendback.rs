//! Retries, dead letters and transaction halves, as pure rules: where a message a
//! consumer failed goes next and what its copy carries (RocketMQ's
//! `consumerSendMsgBack`), which records are transaction halves, and what a committed
//! half becomes (`endMessageTransaction`).
//!
//! A failed message goes to its group's retry topic `%RETRY%<group>` with a growing
//! delay, or after the last retry (or when the consumer asks) to the dead-letter topic
//! `%DLQ%<group>`. The copy keeps body, flag, sys flag, born time and host and
//! properties; RETRY_TOPIC (the original topic) and ORIGIN_MESSAGE_ID (the offset id of
//! the first message of the chain) are added if missing, DELAY set for a retry.
//!
//! Invariants: a retry's delay level is always a real level (1..=18); a message already
//! in the chain keeps its first topic and id; a committed message carries none of the
//! half's markers (REAL_TOPIC, REAL_QID, TRAN_MSG).
//!
//! Deliberately not here: reading the failed message and storing the copy (the
//! CONSUMER_SEND_MSG_BACK and END_TRANSACTION handlers, through the shard's
//! operations), and subscription-group settings (RocketMQ's per-group retry queue count
//! and max retries; the request's max applies, as RocketMQ clients since 3.4.9 send it).

use rockshard_net::properties::{self, keys};
use rockshard_net::stored::{sys_flag, MessageView};

use super::topics::{DLQ_PREFIX, RETRY_PREFIX};
use crate::limits::DELAY_LEVEL_COUNT;

/// The first delay level the broker picks for a retry (level 3 = 10 s), plus one level
/// per earlier retry: RocketMQ's schedule.
const RETRY_FIRST_LEVEL: i32 = 3;

pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

/// Where a failed message goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendBackTarget {
    /// `%RETRY%<group>`, after this delay level.
    Retry { delay_level: i32 },
    /// `%DLQ%<group>`, at once.
    DeadLetter,
}

/// RocketMQ's rule: dead letter once the message was consumed `max_reconsume_times`
/// times or the consumer asks for it (level < 0); else a retry at the requested level,
/// or at 3 + the times already retried when the consumer leaves it to the broker (0).
/// Levels past the last one clamp to it (2 h).
pub fn send_back_target(reconsume_times: i32, max_reconsume_times: i32, requested_level: i32) -> SendBackTarget {
    if requested_level < 0 || reconsume_times >= max_reconsume_times {
        return SendBackTarget::DeadLetter;
    }
    let level = if requested_level == 0 { RETRY_FIRST_LEVEL.saturating_add(reconsume_times) } else { requested_level };
    SendBackTarget::Retry { delay_level: level.clamp(1, DELAY_LEVEL_COUNT as i32) }
}

/// The properties of the copy: the original's, minus DELAY and the REAL_TOPIC/REAL_QID
/// of an earlier parking (the delay path adds fresh ones), plus RETRY_TOPIC and
/// ORIGIN_MESSAGE_ID when missing, plus DELAY for a retry.
pub fn send_back_properties(
    original: &[u8],
    original_topic: &str,
    origin_message_id: &str,
    target: SendBackTarget,
) -> Vec<u8> {
    let mut pairs: Vec<(&str, &str)> = properties::iter(original)
        .filter(|(name, _)| !matches!(*name, keys::DELAY | keys::REAL_TOPIC | keys::REAL_QID))
        .collect();
    if !pairs.iter().any(|(name, _)| *name == keys::RETRY_TOPIC) {
        pairs.push((keys::RETRY_TOPIC, original_topic));
    }
    if !pairs.iter().any(|(name, _)| *name == keys::ORIGIN_MESSAGE_ID) {
        pairs.push((keys::ORIGIN_MESSAGE_ID, origin_message_id));
    }
    let level;
    if let SendBackTarget::Retry { delay_level } = target {
        level = delay_level.to_string();
        pairs.push((keys::DELAY, &level));
    }
    properties::encode(pairs)
}

/// Whether the record is a transaction half message.
pub fn is_half(view: &MessageView<'_>) -> bool {
    (view.header.sys_flag & sys_flag::TRANSACTION_MASK) == sys_flag::TRANSACTION_PREPARED
        || (properties::get(view.properties, keys::TRAN_MSG) == Some("true")
            && properties::get(view.properties, keys::REAL_TOPIC).is_some())
}

/// The properties of a committed message: the half's minus REAL_TOPIC, REAL_QID and
/// TRAN_MSG (RocketMQ's `endMessageTransaction`).
pub fn commit_properties(half: &[u8]) -> Vec<u8> {
    properties::encode(
        properties::iter(half).filter(|(name, _)| !matches!(*name, keys::REAL_TOPIC | keys::REAL_QID | keys::TRAN_MSG)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_then_dead_letter() {
        // The broker's schedule: 3 + times already retried.
        assert_eq!(send_back_target(0, 16, 0), SendBackTarget::Retry { delay_level: 3 });
        assert_eq!(send_back_target(5, 16, 0), SendBackTarget::Retry { delay_level: 8 });
        assert_eq!(send_back_target(15, 16, 0), SendBackTarget::Retry { delay_level: 18 });
        // The consumer's level wins when it names one.
        assert_eq!(send_back_target(4, 16, 2), SendBackTarget::Retry { delay_level: 2 });
        // Past the last level: clamped to 2 h.
        assert_eq!(send_back_target(17, 30, 0), SendBackTarget::Retry { delay_level: 18 });
        assert_eq!(send_back_target(0, 16, 40), SendBackTarget::Retry { delay_level: 18 });
        // After max_reconsume_times deliveries, or when asked: the dead-letter queue.
        assert_eq!(send_back_target(16, 16, 0), SendBackTarget::DeadLetter);
        assert_eq!(send_back_target(3, 3, 5), SendBackTarget::DeadLetter);
        assert_eq!(send_back_target(0, 16, -1), SendBackTarget::DeadLetter);
        assert_eq!(send_back_target(0, 0, 0), SendBackTarget::DeadLetter);
    }

    #[test]
    fn send_back_properties_mark_the_chain() {
        let original = properties::encode([
            (keys::TAGS, "TagA"),
            (keys::UNIQ_KEY, "U1"),
            (keys::DELAY, "3"),
            (keys::REAL_TOPIC, "%RETRY%g"),
            (keys::REAL_QID, "0"),
        ]);
        let props = send_back_properties(&original, "orders", "ID1", SendBackTarget::Retry { delay_level: 4 });
        let pairs: Vec<_> = properties::iter(&props).collect();
        assert_eq!(
            pairs,
            [
                (keys::TAGS, "TagA"),
                (keys::UNIQ_KEY, "U1"),
                (keys::RETRY_TOPIC, "orders"),
                (keys::ORIGIN_MESSAGE_ID, "ID1"),
                (keys::DELAY, "4")
            ]
        );
        // A message already in the chain keeps its first topic and id; a dead letter
        // carries no DELAY.
        let again = send_back_properties(&props, "%RETRY%g", "ID2", SendBackTarget::DeadLetter);
        assert_eq!(properties::get(&again, keys::RETRY_TOPIC), Some("orders"));
        assert_eq!(properties::get(&again, keys::ORIGIN_MESSAGE_ID), Some("ID1"));
        assert_eq!(properties::get(&again, keys::DELAY), None);
        assert_eq!(properties::iter(&again).count(), 4);
    }

    #[test]
    fn commit_properties_drop_the_half_markers() {
        let half = properties::encode([
            (keys::TRAN_MSG, "true"),
            (keys::PGROUP, "pg"),
            (keys::REAL_TOPIC, "orders"),
            (keys::REAL_QID, "1"),
            (keys::UNIQ_KEY, "U"),
        ]);
        let committed = commit_properties(&half);
        let pairs: Vec<_> = properties::iter(&committed).map(|(n, _)| n).collect();
        assert_eq!(pairs, [keys::PGROUP, keys::UNIQ_KEY]);
    }
}
