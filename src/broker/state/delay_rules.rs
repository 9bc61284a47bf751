//! RocketMQ's delay rules, as the broker applies them: the topic delayed messages are
//! parked in (`SCHEDULE_TOPIC_XXXX`), the 18 delay levels, and the ConsumeQueue tag code
//! of a parked message, which is its delivery time rather than a tag hash.
//!
//! The store knows no topic by name: it asks its owner for a record's tag code through
//! the [`rockshard_storage::TagCodeRule`] in its `StoreConfig`. The broker gives every
//! store it opens [`delay_tag_code`] (`BrokerConfig::store_config`), and so does
//! `rockshard store inspect`, so appends, recovery and inspect all compute the same codes.
//!
//! Invariants:
//! - [`delay_tag_code`] is a pure function of the stored record (topic, properties,
//!   store time), as a `TagCodeRule` must be: recovery rebuilds a ConsumeQueue entry
//!   equal to the one the append wrote.
//! - One delay queue per level: `DELAY_LEVELS_MS` has `DELAY_LEVEL_COUNT` entries
//!   (checked at compile time).
//!
//! Pure data and functions: no state, any thread. Deliberately not here: parking a
//! message (`send`), delivering it when due (`schedule`), the retry schedule of consumer
//! send-backs (`sendback`).

use rockshard_net::properties::{self, keys};
use rockshard_storage::record;

use crate::limits::DELAY_LEVEL_COUNT;

/// The topic RocketMQ parks delayed messages in; its tag-hash slot holds the delivery
/// time instead of a tag hash.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// RocketMQ's default `messageDelayLevel`: 1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m
/// 20m 30m 1h 2h, in milliseconds. Level n (1-based) is entry n − 1.
pub const DELAY_LEVELS_MS: [i64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000, 480_000, 540_000,
    600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];
const _: () = assert!(DELAY_LEVELS_MS.len() == DELAY_LEVEL_COUNT as usize, "one delay queue per level");

/// The broker's [`rockshard_storage::TagCodeRule`]: a record parked on the delay topic
/// with a DELAY level gets its delivery time (store time + the level's delay, the level
/// clamped to 1..=18); any other record keeps the plain tag hash (`None`).
pub fn delay_tag_code(topic: &[u8], properties: &[u8], store_timestamp_ms: i64) -> Option<i64> {
    if topic != SCHEDULE_TOPIC.as_bytes() {
        return None;
    }
    let level = properties::get(properties, keys::DELAY).and_then(|l| l.parse::<usize>().ok())?;
    let level = level.clamp(1, DELAY_LEVELS_MS.len());
    Some(store_timestamp_ms + DELAY_LEVELS_MS[level - 1])
}

/// The ConsumeQueue tag code the broker's stores give a record: the delivery time for
/// the delay topic, the Java hash of TAGS otherwise.
pub fn tags_code_of(topic: &[u8], properties: &[u8], store_timestamp_ms: i64) -> i64 {
    record::tag_code(delay_tag_code, topic, properties, store_timestamp_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Vec<u8> {
        properties::encode(pairs.iter().copied())
    }

    #[test]
    fn a_parked_message_is_coded_with_its_delivery_time() {
        let t = 1_700_000_000_000;
        let topic = SCHEDULE_TOPIC.as_bytes();
        assert_eq!(delay_tag_code(topic, &props(&[(keys::DELAY, "1")]), t), Some(t + 1_000));
        assert_eq!(delay_tag_code(topic, &props(&[(keys::DELAY, "3")]), t), Some(t + 10_000));
        assert_eq!(delay_tag_code(topic, &props(&[(keys::DELAY, "18")]), t), Some(t + 7_200_000));
        // Out-of-range levels are clamped, as the send path clamps them before parking.
        assert_eq!(delay_tag_code(topic, &props(&[(keys::DELAY, "0")]), t), Some(t + 1_000));
        assert_eq!(delay_tag_code(topic, &props(&[(keys::DELAY, "40")]), t), Some(t + 7_200_000));
    }

    #[test]
    fn the_broker_opens_every_store_with_this_rule() {
        let c = crate::config::BrokerConfig::resolve(None, crate::config::BrokerSettings::default()).unwrap();
        let rule = c.store_config(1).tag_code_rule;
        let t = 1_700_000_000_000;
        assert_eq!(rule(SCHEDULE_TOPIC.as_bytes(), &props(&[(keys::DELAY, "2")]), t), Some(t + 5_000));
        assert_eq!(rule(b"orders", &props(&[(keys::DELAY, "2")]), t), None);
    }

    #[test]
    fn other_records_keep_the_tag_hash() {
        let t = 1_700_000_000_000;
        let tagged = props(&[(keys::TAGS, "TagA"), (keys::DELAY, "2")]);
        let hash = properties::tags_code(&tagged);
        assert_eq!(delay_tag_code(b"orders", &tagged, t), None);
        assert_eq!(tags_code_of(b"orders", &tagged, t), hash);
        // On the delay topic without a usable level: the tag hash too.
        let no_level = props(&[(keys::TAGS, "TagA")]);
        assert_eq!(tags_code_of(SCHEDULE_TOPIC.as_bytes(), &no_level, t), hash);
        let bad_level = props(&[(keys::TAGS, "TagA"), (keys::DELAY, "soon")]);
        assert_eq!(tags_code_of(SCHEDULE_TOPIC.as_bytes(), &bad_level, t), hash);
    }
}
