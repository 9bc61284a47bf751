//! The RemotingCommand: one request or response, independent of how its header travels.
//!
//! Owns: the logical header fields (REMOTING.md §2.1), the ordered `extFields` map, the
//! body, and the request/response conventions of §1.5 (copy `opaque`, set the response
//! bit, answer in the request's serialize type, carry our own language and a modern
//! version).
//!
//! Invariants: `ext_fields` holds each key at most once and keeps insertion order, so
//! encoders are deterministic and golden tests can pin their output. The body is a
//! [`Bytes`] that usually points into the frame it was decoded from (no copy).
//!
//! Deliberately not here: byte layouts (`frame`, `json`, `binary`), typed views of the
//! ext fields (`headers`), and deciding whether a oneway request gets an answer (it never
//! should; the broker checks [`RemotingCommand::is_oneway`]).

use bytes::Bytes;

use crate::code::{flag, version, LanguageCode, SerializeType};

/// The custom-header map.
///
/// ```text
///  text:    p r o d u c e r G r o u p P G t o p i c T o p i c T e s t ...
///           '----- key ------''- v -''- key -''--- value ---'
///  entries: [ (0..13, 13..15), (15..20, 20..29), ... ]      (key range, value range)
/// ```
///
/// Every key and value lives in one string arena, with the entries (in insertion order)
/// as byte ranges into it. A decoded header therefore costs two allocations however many
/// fields it has, where a vector of `(String, String)` cost two per field: at hundreds of
/// thousands of sends a second the allocator was the largest single cost of a request.
/// Decoders may copy a whole run of header text into the arena at once and point the
/// ranges into it (the bytes between, such as JSON quotes, are simply never referred
/// to). Headers have a handful of keys, so a linear search beats a hash map; `key_bits`
/// (one bit per key, chosen by a cheap hash) answers most "absent" lookups, and most
/// inserts of a new key, without any comparison, and a lookup compares lengths before
/// bytes.
///
/// Invariants: each key is present at most once; `entries` keeps the order in which keys
/// were first inserted (a replaced value keeps its key's position); every range lies on
/// char boundaries of `text`; `key_bits` has the bit of every present key set (it may
/// also have stale bits of removed keys, which only cost a search); the arena stays under
/// 4 GiB (ranges are `u32`; a frame is at most 16 MiB). Replaced and removed entries
/// stay in the arena as dead bytes until they outweigh the live ones.
#[derive(Clone, Default)]
pub struct ExtFields {
    text: String,
    entries: Vec<Span>,
    key_bits: u64,
    /// Bytes of `text` held by replaced values and removed entries.
    dead_bytes: usize,
}

/// One entry's byte ranges in the arena.
#[derive(Clone, Copy, Debug)]
struct Span {
    key: u32,
    key_end: u32,
    value: u32,
    value_end: u32,
}

impl Span {
    fn len(&self) -> usize {
        (self.key_end - self.key) as usize + (self.value_end - self.value) as usize
    }
}

/// Dead arena bytes tolerated before a compaction; below this a rewrite costs more than
/// the memory it gives back.
const DEAD_BYTES_COMPACT_MIN: usize = 1024;

/// The `key_bits` bit of `key`: first byte, last byte and length. Chosen so that the
/// keys of each common header (the V1 and V2 send headers, the pull header, the send
/// answer) land on distinct bits, so building and reading them never compares keys.
#[inline]
fn key_bit(key: &[u8]) -> u64 {
    let (first, last) = match key {
        [] => (0u32, 0u32),
        [first, .., last] => (u32::from(*first), u32::from(*last)),
        [only] => (u32::from(*only), u32::from(*only)),
    };
    1u64 << ((first + last + key.len() as u32 * 10) & 63)
}

impl ExtFields {
    pub fn new() -> ExtFields {
        ExtFields::default()
    }

    pub fn with_capacity(capacity: usize) -> ExtFields {
        // A typical entry (a Java field name and a short value) is well under 32 bytes.
        ExtFields::with_capacities(capacity, capacity.saturating_mul(32))
    }

    /// Room for `entries` entries holding `text_bytes` bytes of keys and values in all,
    /// so a decoder that knows the header's size allocates exactly twice.
    pub fn with_capacities(entries: usize, text_bytes: usize) -> ExtFields {
        ExtFields {
            text: String::with_capacity(text_bytes),
            entries: Vec::with_capacity(entries),
            key_bits: 0,
            dead_bytes: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    #[inline]
    fn key_of(&self, span: &Span) -> &str {
        &self.text[span.key as usize..span.key_end as usize]
    }

    #[inline]
    fn value_of(&self, span: &Span) -> &str {
        &self.text[span.value as usize..span.value_end as usize]
    }

    /// The position of `key` in `entries`.
    #[inline]
    fn find(&self, key: &[u8]) -> Option<usize> {
        if self.key_bits & key_bit(key) == 0 {
            return None;
        }
        let text = self.text.as_bytes();
        self.entries
            .iter()
            .position(|s| (s.key_end - s.key) as usize == key.len() && &text[s.key as usize..s.key_end as usize] == key)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key.as_bytes()).map(|at| self.value_of(&self.entries[at]))
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key.as_bytes()).is_some()
    }

    /// Sets `key` to `value`, replacing an existing value in place (as a map would; the
    /// last duplicate in a decoded header wins, as in Java's `HashMap`).
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        let start = self.text.len();
        self.text.reserve(key.len() + value.len());
        self.text.push_str(key);
        self.text.push_str(value);
        let key_end = start + key.len();
        self.commit(start..key_end, key_end..self.text.len());
    }

    /// Sets `key` to the text `write` appends to the string it is given (which must only
    /// be appended to): values such as numbers are formatted straight into the arena.
    pub(crate) fn insert_with(&mut self, key: &str, write: impl FnOnce(&mut String)) {
        let start = self.text.len();
        self.text.push_str(key);
        let key_end = self.text.len();
        write(&mut self.text);
        assert!(self.text.len() >= key_end, "an ext-field writer may only append");
        self.commit(start..key_end, key_end..self.text.len());
    }

    /// The arena, for decoders: they append text (only append) and then [`commit`] ranges
    /// of it as entries.
    ///
    /// [`commit`]: ExtFields::commit
    pub(crate) fn arena(&mut self) -> &mut String {
        &mut self.text
    }

    /// Makes the arena ranges `key` and `value` an entry, replacing the value of an
    /// existing entry with the same key. Both ranges must lie on char boundaries.
    pub(crate) fn commit(&mut self, key: std::ops::Range<usize>, value: std::ops::Range<usize>) {
        assert!(self.text.len() <= u32::MAX as usize, "ext fields are limited to 4 GiB of text");
        debug_assert!(self.text.is_char_boundary(key.start) && self.text.is_char_boundary(key.end));
        debug_assert!(self.text.is_char_boundary(value.start) && self.text.is_char_boundary(value.end));
        // The casts are exact: every range lies within the arena, checked above.
        let span = Span {
            key: key.start as u32,
            key_end: key.end as u32,
            value: value.start as u32,
            value_end: value.end as u32,
        };
        let key = &self.text.as_bytes()[key];
        let bit = key_bit(key);
        if self.key_bits & bit != 0 {
            if let Some(at) = self.find(key) {
                let old = std::mem::replace(&mut self.entries[at], span);
                self.dead_bytes += old.len();
                self.maybe_compact();
                return;
            }
        }
        self.key_bits |= bit;
        self.entries.push(span);
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let at = self.find(key.as_bytes())?;
        let span = self.entries.remove(at);
        let value = self.value_of(&span).to_owned();
        if self.entries.is_empty() {
            self.text.clear();
            self.key_bits = 0;
            self.dead_bytes = 0;
        } else {
            self.dead_bytes += span.len();
            self.maybe_compact();
        }
        Some(value)
    }

    /// Rewrites the arena without its dead bytes once they outweigh the live ones, so a
    /// map that is updated in a loop stays bounded.
    fn maybe_compact(&mut self) {
        if self.dead_bytes < DEAD_BYTES_COMPACT_MIN || self.dead_bytes < self.text.len() / 2 {
            return;
        }
        let live: usize = self.entries.iter().map(Span::len).sum();
        let mut text = String::with_capacity(live);
        let mut key_bits = 0;
        for span in &mut self.entries {
            let key = &self.text[span.key as usize..span.key_end as usize];
            let value = &self.text[span.value as usize..span.value_end as usize];
            key_bits |= key_bit(key.as_bytes());
            let start = text.len();
            text.push_str(key);
            text.push_str(value);
            // Exact: the new arena is smaller than the old one.
            let key_end = (start + key.len()) as u32;
            *span = Span { key: start as u32, key_end, value: key_end, value_end: text.len() as u32 };
        }
        self.text = text;
        self.key_bits = key_bits;
        self.dead_bytes = 0;
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|s| (self.key_of(s), self.value_of(s)))
    }
}

impl PartialEq for ExtFields {
    /// Equal when they hold the same entries in the same order (however their arenas
    /// are laid out).
    fn eq(&self, other: &ExtFields) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ExtFields {}

impl std::fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> ExtFields {
        let mut ext = ExtFields::new();
        for (k, v) in iter {
            ext.insert(k, v);
        }
        ext
    }
}

/// One request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code in requests ([`crate::code::request`]), response code in responses
    /// ([`crate::code::response`]).
    pub code: i32,
    pub language: LanguageCode,
    /// The sender's MQVersion ordinal ([`crate::code::version`]).
    pub version: i32,
    /// Correlation id chosen by the requester and echoed by the responder.
    pub opaque: i32,
    /// Bit 0 response, bit 1 oneway ([`crate::code::flag`]).
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: ExtFields,
    /// How the header was (or will be) encoded.
    pub serialize_type: SerializeType,
    pub body: Bytes,
}

impl RemotingCommand {
    /// A request as Rockshard sends it (broker→client notifications, broker→NameServer
    /// registration, the load tool): language RUST, our version, JSON header. `opaque`
    /// is 0; the sender sets it from its own counter.
    pub fn new_request(code: i32, ext_fields: ExtFields) -> RemotingCommand {
        RemotingCommand {
            code,
            language: LanguageCode::Rust,
            version: version::CURRENT,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields,
            serialize_type: SerializeType::Json,
            body: Bytes::new(),
        }
    }

    /// The response to `request`: same `opaque` and serialize type, response bit set,
    /// our own language and version (REMOTING.md §1.5: clients record the responder's
    /// version and refuse features against old ones).
    pub fn response_to(request: &RemotingCommand, code: i32, remark: Option<String>) -> RemotingCommand {
        RemotingCommand {
            code,
            language: LanguageCode::Rust,
            version: version::CURRENT,
            opaque: request.opaque,
            flag: flag::RESPONSE,
            remark,
            ext_fields: ExtFields::new(),
            serialize_type: request.serialize_type,
            body: Bytes::new(),
        }
    }

    /// The answer to a request code we do not serve: REQUEST_CODE_NOT_SUPPORTED with
    /// Java's remark, leading space included, so tools that match on it keep working.
    pub fn not_supported(request: &RemotingCommand) -> RemotingCommand {
        RemotingCommand::response_to(
            request,
            crate::code::response::REQUEST_CODE_NOT_SUPPORTED,
            Some(format!(" request type {} not supported", request.code)),
        )
    }

    /// Builder-style: sets the body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> RemotingCommand {
        self.body = body.into();
        self
    }

    /// Builder-style: sets the ext fields.
    pub fn with_ext_fields(mut self, ext_fields: ExtFields) -> RemotingCommand {
        self.ext_fields = ext_fields;
        self
    }

    /// Builder-style: sets the opaque.
    pub fn with_opaque(mut self, opaque: i32) -> RemotingCommand {
        self.opaque = opaque;
        self
    }

    /// Builder-style: sets the header encoding.
    pub fn with_serialize_type(mut self, serialize_type: SerializeType) -> RemotingCommand {
        self.serialize_type = serialize_type;
        self
    }

    pub fn is_response(&self) -> bool {
        self.flag & flag::RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & flag::ONEWAY != 0
    }

    pub fn mark_response(&mut self) {
        self.flag |= flag::RESPONSE;
    }

    pub fn mark_oneway(&mut self) {
        self.flag |= flag::ONEWAY;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::{request, response};

    #[test]
    fn ext_fields_keep_order_and_replace_in_place() {
        let mut ext: ExtFields = [("b", "1"), ("a", "2")].into_iter().collect();
        ext.insert("c", "3");
        ext.insert("b", "4");
        assert_eq!(ext.iter().collect::<Vec<_>>(), [("b", "4"), ("a", "2"), ("c", "3")]);
        assert_eq!(ext.get("a"), Some("2"));
        assert_eq!(ext.remove("a"), Some("2".to_owned()));
        assert_eq!(ext.get("a"), None);
        assert_eq!(ext.len(), 2);
        assert!(!ext.contains_key("a"));
        assert_eq!(ext.remove("a"), None);
    }

    #[test]
    fn ext_fields_compare_by_entries_not_by_arena_layout() {
        let mut a: ExtFields = [("k", "old"), ("j", "1")].into_iter().collect();
        a.insert("k", "new");
        let b: ExtFields = [("k", "new"), ("j", "1")].into_iter().collect();
        assert_eq!(a, b);
        assert_ne!(a, [("j", "1"), ("k", "new")].into_iter().collect::<ExtFields>());
        assert_eq!(format!("{b:?}"), r#"{"k": "new", "j": "1"}"#);
        let mut c = b.clone();
        assert_eq!(c.remove("k").as_deref(), Some("new"));
        assert_eq!(c.remove("j").as_deref(), Some("1"));
        assert!(c.is_empty());
        c.insert("", "");
        assert_eq!(c.get(""), Some(""));
    }

    #[test]
    fn ext_fields_stay_bounded_under_repeated_updates() {
        let mut ext = ExtFields::new();
        for i in 0..10_000 {
            ext.insert("counter", i.to_string());
            ext.insert(format!("k{}", i % 7), "é".repeat(i % 13));
            if i % 5 == 0 {
                ext.remove(&format!("k{}", i % 3));
            }
        }
        assert_eq!(ext.get("counter"), Some("9999"));
        assert!(ext.text.len() < 4 * DEAD_BYTES_COMPACT_MIN, "arena grew to {} bytes", ext.text.len());
        // Every key still found after compactions rebuilt the key bits.
        for (k, v) in ext.clone().iter() {
            assert_eq!(ext.get(k), Some(v));
        }
    }

    #[test]
    fn common_headers_have_distinct_key_bits() {
        let headers: [&[&str]; 4] = [
            &crate::headers::SEND_V1_KEYS,
            &crate::headers::SEND_V2_KEYS,
            &[
                "consumerGroup",
                "topic",
                "queueId",
                "queueOffset",
                "maxMsgNums",
                "sysFlag",
                "commitOffset",
                "suspendTimeoutMillis",
                "subscription",
                "subVersion",
                "expressionType",
                "maxMsgBytes",
            ],
            &["msgId", "queueId", "queueOffset", "transactionId"],
        ];
        for keys in headers {
            let bits = keys.iter().fold(0u64, |bits, k| bits | key_bit(k.as_bytes()));
            assert_eq!(bits.count_ones() as usize, keys.len(), "{keys:?}");
        }
    }

    #[test]
    fn ext_fields_lookups_agree_with_a_plain_list() {
        // Many keys, so key bits collide and lookups must fall back to comparing.
        let mut ext = ExtFields::new();
        let mut plain: Vec<(String, String)> = Vec::new();
        for i in 0..300u32 {
            let key = format!("{}{}", char::from(b'a' + (i % 26) as u8), i % 40);
            let value = format!("v{i}");
            ext.insert(&key, &value);
            match plain.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => *v = value,
                None => plain.push((key, value)),
            }
        }
        assert_eq!(ext.iter().collect::<Vec<_>>(), plain.iter().map(|(k, v)| (&**k, &**v)).collect::<Vec<_>>());
        assert_eq!(ext.get("zz"), None);
        assert_eq!(ext.get("a20"), Some("v260"));
    }

    #[test]
    fn response_copies_opaque_and_serialize_type_and_marks_response() {
        let mut req = RemotingCommand::new_request(request::SEND_MESSAGE, ExtFields::new())
            .with_opaque(42)
            .with_serialize_type(SerializeType::RocketMq);
        req.language = LanguageCode::Java;
        req.version = version::V5_3_1_SNAPSHOT;
        assert!(!req.is_response());
        let resp = RemotingCommand::response_to(&req, response::SUCCESS, None);
        assert!(resp.is_response());
        assert!(!resp.is_oneway());
        assert_eq!(resp.opaque, 42);
        assert_eq!(resp.serialize_type, SerializeType::RocketMq);
        assert_eq!(resp.language, LanguageCode::Rust);
        assert_eq!(resp.version, 479);
        req.mark_oneway();
        assert!(req.is_oneway());
        let unknown = RemotingCommand::not_supported(&req);
        assert_eq!(unknown.code, response::REQUEST_CODE_NOT_SUPPORTED);
        assert_eq!(unknown.remark.as_deref(), Some(" request type 10 not supported"));
        assert_eq!(unknown.opaque, 42);
    }
}
