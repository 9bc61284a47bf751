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

/// The custom-header map. Headers have a handful of keys, so a vector searched linearly
/// beats a hash map and keeps the order the sender used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtFields {
    entries: Vec<(String, String)>,
}

impl ExtFields {
    pub fn new() -> ExtFields {
        ExtFields { entries: Vec::new() }
    }

    pub fn with_capacity(capacity: usize) -> ExtFields {
        ExtFields { entries: Vec::with_capacity(capacity) }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// Sets `key` to `value`, replacing an existing value in place (as a map would; the
    /// last duplicate in a decoded header wins, as in Java's `HashMap`).
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let (key, value) = (key.into(), value.into());
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.entries.push((key, value)),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(at).1)
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for ExtFields {
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
