//! Message properties: the `name 0x01 value 0x02` string of RocketMQ, and the Java
//! `String.hashCode` that turns a tag into the ConsumeQueue's tag hash.
//!
//! ```text
//!  K E Y S 0x01 o r d e r - 1 0x02 T A G S 0x01 T a g A 0x02 ...
//!  '-name-'      '--value--'      '-name-'     '-value-'
//! ```
//!
//! Parsing follows Java's `MessageDecoder.string2messageProperties`: segments that are
//! empty, lack the 0x01 separator, or have an empty name or value are skipped, so any
//! byte string parses without error.

/// Separates a property name from its value.
pub const NAME_VALUE_SEPARATOR: u8 = 0x01;
/// Ends each property.
pub const PROPERTY_SEPARATOR: u8 = 0x02;

/// Well-known property names (RocketMQ `MessageConst`).
pub mod keys {
    pub const KEYS: &str = "KEYS";
    pub const TAGS: &str = "TAGS";
    pub const WAIT: &str = "WAIT";
    pub const DELAY: &str = "DELAY";
    pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    pub const REAL_QID: &str = "REAL_QID";
    pub const TRAN_MSG: &str = "TRAN_MSG";
    pub const PGROUP: &str = "PGROUP";
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
    pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
    pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
    pub const CLUSTER: &str = "CLUSTER";
    pub const TRANSACTION_ID: &str = "__transactionId__";
}

/// Iterates the well-formed `(name, value)` pairs of a property string, in order.
/// Non-UTF-8 segments are skipped like malformed ones.
pub fn iter(properties: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    properties.split(|b| *b == PROPERTY_SEPARATOR).filter_map(|segment| {
        let at = segment.iter().position(|b| *b == NAME_VALUE_SEPARATOR)?;
        let (name, value) = (&segment[..at], &segment[at + 1..]);
        if name.is_empty() || value.is_empty() {
            return None;
        }
        Some((std::str::from_utf8(name).ok()?, std::str::from_utf8(value).ok()?))
    })
}

/// The value of `name`, if present (the last one wins, as in Java's map).
pub fn get<'a>(properties: &'a [u8], name: &str) -> Option<&'a str> {
    let [value] = scan(properties, [name]);
    value
}

/// The values of several names in one pass over the property string, as [`get`] would
/// find each (the last well-formed occurrence wins). The send path reads WAIT, DELAY and
/// UNIQ_KEY of every message; names are compared as bytes first, and only a matching
/// segment is checked for UTF-8.
pub fn scan<'a, const N: usize>(properties: &'a [u8], names: [&str; N]) -> [Option<&'a str>; N] {
    let mut found = [None; N];
    for segment in properties.split(|b| *b == PROPERTY_SEPARATOR) {
        let Some(at) = segment.iter().position(|b| *b == NAME_VALUE_SEPARATOR) else { continue };
        let (name, value) = (&segment[..at], &segment[at + 1..]);
        if name.is_empty() || value.is_empty() {
            continue;
        }
        if let Some(slot) = names.iter().position(|n| n.as_bytes() == name) {
            if let Ok(value) = std::str::from_utf8(value) {
                found[slot] = Some(value);
            }
        }
    }
    found
}

/// Encodes pairs the way Java does, with a trailing separator after every property.
pub fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(NAME_VALUE_SEPARATOR);
        out.extend_from_slice(value.as_bytes());
        out.push(PROPERTY_SEPARATOR);
    }
    out
}

/// Java's `String.hashCode`: 31-based over UTF-16 code units, wrapping at 32 bits.
/// Subscriptions carry these in `codeSet` and the ConsumeQueue stores them per message,
/// so both sides must agree bit for bit.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// The ConsumeQueue tag hash of a message with these properties: the hash of its TAGS,
/// or 0 when it has none.
pub fn tags_code(properties: &[u8]) -> i64 {
    get(properties, keys::TAGS).map_or(0, |tags| i64::from(java_string_hash(tags)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_known_values() {
        // Values Java prints for "TagA".hashCode() etc. (also in REMOTING.md §4.3.1).
        assert_eq!(java_string_hash("TagA"), 2_598_919);
        assert_eq!(java_string_hash("TagB"), 2_598_920);
        assert_eq!(java_string_hash(""), 0);
        // Wraps like Java's int arithmetic.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // Non-BMP characters hash as two UTF-16 units.
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let encoded = encode([("TAGS", "TagA"), ("KEYS", "k1 k2"), ("WAIT", "true")]);
        assert_eq!(encoded, b"TAGS\x01TagA\x02KEYS\x01k1 k2\x02WAIT\x01true\x02");
        let pairs: Vec<_> = iter(&encoded).collect();
        assert_eq!(pairs, [("TAGS", "TagA"), ("KEYS", "k1 k2"), ("WAIT", "true")]);
        assert_eq!(get(&encoded, "KEYS"), Some("k1 k2"));
        assert_eq!(get(&encoded, "DELAY"), None);
        assert_eq!(tags_code(&encoded), 2_598_919);
    }

    #[test]
    fn scan_finds_what_get_finds() {
        let raw = b"WAIT\x01true\x02DELAY\x013\x02\x01x\x02WAIT\x01false\x02UNIQ_KEY\x01\xff\x02UNIQ_KEY\x01A\x02DELAY\x01\x02";
        let names = [keys::WAIT, keys::DELAY, keys::UNIQ_KEY, keys::TAGS];
        let found = scan(raw, names);
        assert_eq!(found, [Some("false"), Some("3"), Some("A"), None]);
        for (name, value) in names.iter().zip(found) {
            assert_eq!(iter(raw).filter(|(n, _)| n == name).last().map(|(_, v)| v), value);
            assert_eq!(get(raw, name), value);
        }
    }

    #[test]
    fn malformed_segments_are_skipped() {
        let raw = b"\x02noseparator\x02\x01novalue\x02empty\x01\x02A\x01B\x02\xff\x01x\x02C\x01D";
        let pairs: Vec<_> = iter(raw).collect();
        assert_eq!(pairs, [("A", "B"), ("C", "D")]);
        assert_eq!(tags_code(b""), 0);
    }
}
