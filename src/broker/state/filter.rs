//! Tag filters: what a subscription's TAG expression lets through, as the ConsumeQueue
//! sees it (tag hash codes) and exactly (the record's TAGS property).
//!
//! RocketMQ consumers subscribe by tag: `*` (everything) or `TagA || TagB`. The
//! ConsumeQueue keeps each record's tag hash (Java `String.hashCode`), so the store can
//! skip records whose hash is not subscribed without reading them ([`TagFilter::code_matches`]);
//! the records it returns are then checked against the exact names
//! ([`TagFilter::record_matches`]), so a hash collision never delivers a message of
//! another tag.
//!
//! Pure: no shard, no clock, no I/O; used by the pull handler and by the group table
//! (which computes a subscription's code set from the same parse).
//!
//! Deliberately not here: SQL92 expressions (the broker refuses them, as a Java broker
//! with `enablePropertyFilter=false` does) and class filters.

use rockshard_net::body::SubscriptionData;
use rockshard_net::properties::{self, java_string_hash, keys};
use rockshard_net::stored;

/// A tag subscription, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagFilter {
    All,
    Tags { names: Vec<String>, codes: Vec<i64> },
}

impl TagFilter {
    /// From a TAG expression: `*` (or empty) or `TagA || TagB`.
    pub fn parse(expression: &str) -> TagFilter {
        let names: Vec<String> =
            expression.split("||").map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect();
        if names.is_empty() || names.iter().any(|t| t == "*") {
            return TagFilter::All;
        }
        let codes = names.iter().map(|t| java_string_hash(t) as i64).collect();
        TagFilter::Tags { names, codes }
    }

    pub fn from_subscription(s: &SubscriptionData) -> TagFilter {
        if s.tags_set.is_empty() {
            return TagFilter::parse(&s.sub_string);
        }
        TagFilter::parse(&s.tags_set.join("||"))
    }

    pub fn code_matches(&self, code: i64) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::Tags { codes, .. } => codes.contains(&code),
        }
    }

    /// The exact check on a record's TAGS property.
    pub fn record_matches(&self, record: &[u8]) -> bool {
        match self {
            TagFilter::All => true,
            TagFilter::Tags { names, .. } => match stored::decode(record) {
                Ok(Some(stored::Record::Message(m))) => {
                    properties::get(m.properties, keys::TAGS).is_some_and(|t| names.iter().any(|n| n == t))
                }
                _ => false,
            },
        }
    }
}

/// Whether an expression type is a tag expression (Java `ExpressionType.isTagType`:
/// absent counts as TAG).
pub fn is_tag_type(expression_type: &str) -> bool {
    expression_type.is_empty() || expression_type == "TAG"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_expressions_compile_to_java_hashes() {
        assert_eq!(TagFilter::parse("*"), TagFilter::All);
        assert_eq!(TagFilter::parse(""), TagFilter::All);
        assert_eq!(TagFilter::parse("a || *"), TagFilter::All);
        let f = TagFilter::parse("TagA || TagB");
        assert!(f.code_matches(java_string_hash("TagA") as i64));
        assert!(f.code_matches(java_string_hash("TagB") as i64));
        assert!(!f.code_matches(java_string_hash("TagC") as i64));
    }

    #[test]
    fn only_tag_expressions_are_tag_types() {
        assert!(is_tag_type("TAG"));
        assert!(is_tag_type(""));
        assert!(!is_tag_type("SQL92"));
    }

    #[test]
    fn the_exact_check_refuses_a_hash_collision() {
        // "Aa" and "BB" have the same Java hash: the ConsumeQueue cannot tell them apart.
        assert_eq!(java_string_hash("Aa"), java_string_hash("BB"));
        let f = TagFilter::parse("Aa");
        assert!(f.code_matches(java_string_hash("BB") as i64));
        let props = properties::encode([(keys::TAGS, "BB")]);
        let fields = stored::RecordFields {
            topic: b"t",
            queue_id: 0,
            flag: 0,
            sys_flag: 0,
            born_timestamp_ms: 1,
            born_host: "127.0.0.1:1".parse().unwrap(),
            store_timestamp_ms: 2,
            store_host: "127.0.0.1:2".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: b"x",
            properties: &props,
        };
        let mut record = Vec::new();
        stored::encode(&fields, 0, 0, &mut record).unwrap();
        assert!(!f.record_matches(&record));
        assert!(TagFilter::parse("BB").record_matches(&record));
    }
}
