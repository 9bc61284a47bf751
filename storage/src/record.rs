//! The rules a stored record keeps, in one place: what makes its topic, queue id,
//! properties and sys flag valid, whether it is indexed in a ConsumeQueue
//! (dispatchable), and how its ConsumeQueue tag code is computed.
//!
//! Users, who must all agree: the append path (which refuses a record breaking a rule),
//! recovery and the read-only `store inspect` (which take a record breaking one for a
//! torn write, and rebuild the tag codes the append wrote), and the raft crate's data
//! side (which checks replicated records before they reach the store).
//!
//! Invariants:
//! - Every record an append accepts passes [`valid_topic`] and [`valid_properties`], so
//!   recovery may treat a record failing either as damage (a zeroed topic or property
//!   byte can never pass; BODYCRC does not cover them).
//! - [`tag_code`] is a pure function of the record's topic, properties and store time
//!   and the store's [`TagCodeRule`]: an append and a later recovery of the same record
//!   with the same rule compute the same code, so a rebuilt ConsumeQueue entry equals
//!   the original byte for byte.
//!
//! Pure functions: no I/O, no state; any thread may call them. Deliberately not here:
//! the stored-record codec (`rockshard_net::stored`) and any broker policy (which topic
//! holds delayed messages, what their tag code means: the owner's [`TagCodeRule`]).

use rockshard_net::properties::{self, keys};
use rockshard_net::stored::sys_flag;

/// Whether a topic name is one RocketMQ accepts: `[%|a-zA-Z0-9_-]`, not empty. Recovery
/// relies on it too: a zeroed (torn) topic byte can never pass.
pub fn valid_topic(topic: &[u8]) -> bool {
    !topic.is_empty() && topic.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
}

/// Whether a queue id is one a record may carry: RocketMQ's queue ids count from 0.
pub fn valid_queue_id(queue_id: i32) -> bool {
    queue_id >= 0
}

/// Property strings never hold NUL bytes (appends refuse them). BODYCRC covers only the
/// body, so this is what lets recovery tell a record whose properties were torn to zeros
/// from an intact one.
pub fn valid_properties(properties: &[u8]) -> bool {
    !properties.contains(&0)
}

/// Half (prepared) and rolled-back transactional records are stored but never indexed
/// in a ConsumeQueue, as in RocketMQ.
pub fn dispatchable(sys: i32) -> bool {
    matches!(sys & sys_flag::TRANSACTION_MASK, sys_flag::TRANSACTION_NOT_TYPE | sys_flag::TRANSACTION_COMMIT)
}

/// The store owner's say over a record's ConsumeQueue tag code: given the record's topic,
/// properties and store time (ms), `Some(code)` puts `code` in the tag-hash slot of its
/// ConsumeQueue entry, `None` leaves the plain tag hash ([`tag_hash`]) there.
///
/// Why a plain `fn` pointer, set in `StoreConfig`: recovery rebuilds ConsumeQueue entries
/// from the CommitLog and must compute exactly the codes the append did, so the rule has
/// to be a pure function of the stored record, the same for the store's whole life and
/// known before recovery runs. A `fn` cannot capture state that could change between the
/// append and the recovery, costs one indirect call per record, and keeps `StoreConfig`
/// `Clone + Send + Debug`. The broker's rule is RocketMQ's delay topic, whose entries
/// hold the delivery time (`src/broker/delay_rules.rs`); the storage crate itself knows
/// no topic by name.
pub type TagCodeRule = fn(topic: &[u8], properties: &[u8], store_timestamp_ms: i64) -> Option<i64>;

/// The default [`TagCodeRule`]: every record's entry holds its plain tag hash.
pub fn plain_tag_code(_topic: &[u8], _properties: &[u8], _store_timestamp_ms: i64) -> Option<i64> {
    None
}

/// The ConsumeQueue tag code of a record under `rule`: what the rule says, or else the
/// Java hash of its TAGS. Appends and recovery both use this, so a rebuilt entry equals
/// the original.
pub fn tag_code(rule: TagCodeRule, topic: &[u8], properties: &[u8], store_timestamp_ms: i64) -> i64 {
    rule(topic, properties, store_timestamp_ms).unwrap_or_else(|| tag_hash(properties))
}

/// `properties::tags_code`, found without decoding every property as UTF-8: the last
/// well-formed `TAGS` property (a segment `TAGS 0x01 value`, value not empty and UTF-8)
/// wins, as there. An append spends this per record, so it is worth the few lines; the
/// test below holds it equal to the general one.
pub fn tag_hash(properties: &[u8]) -> i64 {
    const PREFIX: &[u8] = b"TAGS\x01";
    const _: () = assert!(PREFIX.len() == keys::TAGS.len() + 1);
    properties
        .rsplit(|&b| b == properties::PROPERTY_SEPARATOR)
        .filter_map(|segment| segment.strip_prefix(PREFIX))
        .find_map(|value| (!value.is_empty()).then(|| std::str::from_utf8(value).ok()).flatten())
        .map_or(0, |tags| i64::from(properties::java_string_hash(tags)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_tag_hash_equals_the_general_one() {
        let fixed: [&[u8]; 12] = [
            b"",
            b"TAGS\x01TagA\x02",
            b"KEYS\x01k\x02TAGS\x01TagA\x02WAIT\x01true\x02",
            b"TAGS\x01a\x02TAGS\x01b\x02",
            b"TAGS\x01a\x02TAGS\x01\x02",
            b"TAGS\x01a\x02TAGS\x01\xff\x02",
            b"TAGS\x01a\x01b\x02",
            b"XTAGS\x01a\x02",
            b"TAGS\x02\x01a",
            b"TAGS\x01\xf0\x9f\x98\x80",
            b"\x02\x02TAGS\x01z",
            b"TAG\x01S\x02",
        ];
        for p in fixed {
            assert_eq!(tag_hash(p), properties::tags_code(p), "{p:?}");
        }
        // Seeded random property strings built of pieces rich in names and separators.
        let pieces: [&[u8]; 8] = [b"TAGS\x01", b"TAGS", b"\x01", b"\x02", b"a", b"Tag", b"\xff", b"\xc3\xa9"];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut matched = 0;
        for _ in 0..20_000 {
            let mut p = Vec::new();
            for _ in 0..8 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                p.extend_from_slice(pieces[(state % pieces.len() as u64) as usize]);
            }
            matched += usize::from(properties::tags_code(&p) != 0);
            assert_eq!(tag_hash(&p), properties::tags_code(&p), "{p:?}");
        }
        assert!(matched > 1_000, "the strings hold tags often enough to test: {matched}");
    }

    #[test]
    fn a_rule_decides_the_tag_code_and_none_leaves_the_tag_hash() {
        fn by_topic(topic: &[u8], _properties: &[u8], store_timestamp_ms: i64) -> Option<i64> {
            (topic == b"Timed").then_some(store_timestamp_ms + 1)
        }
        let props = b"TAGS\x01TagA\x02";
        let hash = properties::tags_code(props);
        assert_ne!(hash, 0);
        assert_eq!(tag_code(plain_tag_code, b"Timed", props, 7), hash);
        assert_eq!(tag_code(by_topic, b"Timed", props, 7), 8);
        assert_eq!(tag_code(by_topic, b"Other", props, 7), hash);
    }

    #[test]
    fn validity_rules() {
        assert!(valid_topic(b"Orders_1-%|"));
        assert!(!valid_topic(b""));
        assert!(!valid_topic(b"a b"));
        assert!(!valid_topic(b"a\0"));
        assert!(valid_queue_id(0) && !valid_queue_id(-1));
        assert!(valid_properties(b"TAGS\x01a\x02"));
        assert!(!valid_properties(b"TAGS\x01\0"));
        assert!(dispatchable(sys_flag::TRANSACTION_NOT_TYPE));
        assert!(dispatchable(sys_flag::TRANSACTION_COMMIT));
        assert!(!dispatchable(sys_flag::TRANSACTION_PREPARED));
        assert!(!dispatchable(sys_flag::TRANSACTION_ROLLBACK));
    }
}
