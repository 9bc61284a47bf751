//! The JSON encoding of the RemotingCommand header (REMOTING.md §2.2).
//!
//! What we write, byte for byte (field order fixed, no whitespace):
//!
//! ```text
//! {"code":105,"language":"RUST","version":479,"opaque":1,"flag":1,
//!  "remark":"...",                      <- only when there is a remark
//!  "extFields":{"k":"v",...},           <- always, `{}` when empty; values always strings
//!  "serializeTypeCurrentRPC":"JSON"}
//! ```
//!
//! That is the Rust client's own field order, and it satisfies the Rust client's strict
//! decoder, which fails a response whose `language`, `version` or
//! `serializeTypeCurrentRPC` is missing, whose `language` is a number, or whose ext
//! values are not strings. Strings are escaped as JSON requires: `"` and `\`, and every
//! control character (the property separators 0x01/0x02 become `\u0001`/`\u0002`).
//!
//! Reading is lenient, like Java's fastjson: members may come in any order or be missing
//! (numbers default to 0, language to JAVA), unknown members are ignored, `language` may
//! be a name or a number, numbers may be quoted, ext values may be strings, numbers or
//! booleans (stringified), and null ext values are dropped.
//!
//! Invariants: [`encode_header`] is hand-written (no serde on the hot path) and its
//! output always decodes with [`decode_header`] to the same fields. Decoding never panics.
//!
//! Deliberately not here: the frame around the header (`frame`), and JSON bodies (`body`).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::buf::OutBuf;
use crate::code::{LanguageCode, SerializeType};
use crate::command::{ExtFields, RemotingCommand};
use crate::Error;

/// Appends the JSON header of `cmd` to `out`. Cannot fail: every field has a JSON form.
pub fn encode_header<B: OutBuf>(cmd: &RemotingCommand, out: &mut B) {
    out.put(b"{\"code\":");
    put_i32(out, cmd.code);
    out.put(b",\"language\":\"");
    out.put(cmd.language.name().as_bytes());
    out.put(b"\",\"version\":");
    put_i32(out, cmd.version);
    out.put(b",\"opaque\":");
    put_i32(out, cmd.opaque);
    out.put(b",\"flag\":");
    put_i32(out, cmd.flag);
    if let Some(remark) = &cmd.remark {
        out.put(b",\"remark\":");
        put_string(out, remark);
    }
    out.put(b",\"extFields\":{");
    for (i, (key, value)) in cmd.ext_fields.iter().enumerate() {
        if i > 0 {
            out.put_byte(b',');
        }
        put_string(out, key);
        out.put_byte(b':');
        put_string(out, value);
    }
    out.put(b"},\"serializeTypeCurrentRPC\":\"");
    // The member names the encoding of this header, which is JSON by construction.
    out.put(SerializeType::Json.name().as_bytes());
    out.put(b"\"}");
}

/// Writes a decimal i32 without going through `fmt` (which is slow and allocates nothing
/// but still costs a virtual call per piece).
pub(crate) fn put_i32<B: OutBuf>(out: &mut B, value: i32) {
    let mut digits = [0u8; 11];
    let mut at = digits.len();
    let mut n = value.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        digits[at] = b'-';
    }
    out.put(&digits[at..]);
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Writes `s` as a JSON string literal. Runs of bytes that need no escape are copied in
/// one piece; non-ASCII UTF-8 passes through unchanged (valid JSON, and both clients
/// accept it).
pub(crate) fn put_string<B: OutBuf>(out: &mut B, s: &str) {
    out.put_byte(b'"');
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1F => b"",
            _ => continue,
        };
        out.put(&bytes[run_start..i]);
        if escape.is_empty() {
            out.put(&[b'\\', b'u', b'0', b'0', HEX_UPPER[usize::from(b >> 4)], HEX_UPPER[usize::from(b & 0xF)]]);
        } else {
            out.put(escape);
        }
        run_start = i + 1;
    }
    out.put(&bytes[run_start..]);
    out.put_byte(b'"');
}

/// Decodes a JSON header. The result has an empty body and serialize type JSON.
pub fn decode_header(header: &[u8]) -> Result<RemotingCommand, Error> {
    // serde's derived struct decoders also accept a JSON array of the members in order;
    // a header is only ever an object, so anything else is refused up front.
    if header.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::HeaderJson { detail: "the header is not a JSON object".into() });
    }
    let raw: RawHeader = serde_json::from_slice(header).map_err(|e| Error::HeaderJson { detail: e.to_string() })?;
    Ok(RemotingCommand {
        code: raw.code.0,
        language: raw.language.0,
        version: raw.version.0,
        opaque: raw.opaque.0,
        flag: raw.flag.0,
        remark: raw.remark.0,
        ext_fields: raw.ext_fields.0,
        serialize_type: SerializeType::Json,
        body: bytes::Bytes::new(),
    })
}

/// The header as read, every member optional and leniently typed.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawHeader {
    code: LenientI32,
    language: LenientLanguage,
    version: LenientI32,
    opaque: LenientI32,
    flag: LenientI32,
    remark: LenientString,
    #[serde(rename = "extFields")]
    ext_fields: LenientExt,
}

/// An i32 given as a number or a numeric string; null reads as 0.
#[derive(Default)]
struct LenientI32(i32);

/// A scalar stringified the way Java's `toString` would; null reads as absent.
#[derive(Default)]
struct LenientString(Option<String>);

/// A language given by name or by code; null or an unknown name reads as OTHER/JAVA.
#[derive(Default)]
struct LenientLanguage(LanguageCode);

#[derive(Default)]
struct LenientExt(ExtFields);

impl<'de> Deserialize<'de> for LenientI32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientI32;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a 32-bit integer or a string holding one")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientI32, E> {
                i32::try_from(v).map(LenientI32).map_err(|_| E::custom(format!("{v} is out of i32 range")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientI32, E> {
                i32::try_from(v).map(LenientI32).map_err(|_| E::custom(format!("{v} is out of i32 range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientI32, E> {
                v.trim().parse().map(LenientI32).map_err(|_| E::custom(format!("{v:?} is not an i32")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientI32, E> {
                Ok(LenientI32(0))
            }
        }
        d.deserialize_any(V)
    }
}

/// Visits a JSON scalar as the string Java would hold for it.
struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number, boolean or null")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

impl<'de> Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor).map(LenientString)
    }
}

impl<'de> Deserialize<'de> for LenientLanguage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = LenientLanguage;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a language name or code")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientLanguage, E> {
                Ok(LenientLanguage(LanguageCode::from_name(v).unwrap_or(LanguageCode::Other)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientLanguage, E> {
                Ok(LenientLanguage(u8::try_from(v).map_or(LanguageCode::Other, LanguageCode::from_code)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientLanguage, E> {
                Ok(LenientLanguage(u8::try_from(v).map_or(LanguageCode::Other, LanguageCode::from_code)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientLanguage, E> {
                Ok(LenientLanguage::default())
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for LenientExt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientExt;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of scalar values, or null")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LenientExt, A::Error> {
                let mut ext = ExtFields::with_capacity(map.size_hint().unwrap_or(8).min(64));
                while let Some(key) = map.next_key::<String>()? {
                    // A null value is Java's "field not set": the key is dropped, exactly
                    // as when it is absent.
                    if let LenientString(Some(value)) = map.next_value::<LenientString>()? {
                        ext.insert(key, value);
                    }
                }
                Ok(LenientExt(ext))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientExt, E> {
                Ok(LenientExt::default())
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::{request, response};

    fn encode(cmd: &RemotingCommand) -> String {
        let mut out = Vec::new();
        encode_header(cmd, &mut out);
        String::from_utf8(out).expect("the encoder writes UTF-8")
    }

    #[test]
    fn golden_request_encoding() {
        let ext: ExtFields = [("topic", "T")].into_iter().collect();
        let cmd = RemotingCommand::new_request(request::GET_ROUTEINFO_BY_TOPIC, ext).with_opaque(1);
        assert_eq!(
            encode(&cmd),
            r#"{"code":105,"language":"RUST","version":479,"opaque":1,"flag":0,"extFields":{"topic":"T"},"serializeTypeCurrentRPC":"JSON"}"#
        );
    }

    #[test]
    fn golden_response_encoding_with_remark_and_escapes() {
        let req = RemotingCommand::new_request(request::SEND_MESSAGE, ExtFields::new()).with_opaque(-7);
        let mut resp = RemotingCommand::response_to(&req, response::SYSTEM_ERROR, Some("bad \"x\"\\\n\u{1}é".into()));
        resp.ext_fields.insert("properties", "A\u{1}B\u{2}\u{1F}\t");
        assert_eq!(
            encode(&resp),
            concat!(
                r#"{"code":1,"language":"RUST","version":479,"opaque":-7,"flag":1,"remark":"bad \"x\"\\\n\u0001é","#,
                r#""extFields":{"properties":"A\u0001B\u0002\u001F\t"},"serializeTypeCurrentRPC":"JSON"}"#
            )
        );
    }

    #[test]
    fn integers_format_like_java() {
        for v in [0, 1, -1, 9, 10, 479, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            put_i32(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
    }

    #[test]
    fn encoded_output_is_valid_json_and_round_trips() {
        let mut ext = ExtFields::new();
        for c in 0u8..=0x7F {
            ext.insert(format!("k{c}"), format!("v{}x", char::from(c)));
        }
        ext.insert("unicode", "日本\u{1F600}");
        let mut cmd = RemotingCommand::new_request(request::SEND_MESSAGE, ext).with_opaque(i32::MIN);
        cmd.remark = Some("\u{0}\u{7F}".into());
        cmd.flag = 3;
        let text = encode(&cmd);
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(parsed["extFields"]["k1"], "v\u{1}x");
        assert_eq!(decode_header(text.as_bytes()).expect("decodes"), cmd);
    }

    #[test]
    fn decodes_the_java_layout_of_the_spec() {
        // REMOTING.md §1.4, the JSON header of the GET_ROUTEINFO_BY_TOPIC example.
        let text = br#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;
        let cmd = decode_header(text).expect("decodes");
        assert_eq!(cmd.code, 105);
        assert_eq!(cmd.language, LanguageCode::Java);
        assert_eq!(cmd.version, 479);
        assert_eq!(cmd.opaque, 1);
        assert_eq!(cmd.flag, 0);
        assert_eq!(cmd.remark, None);
        assert_eq!(cmd.ext_fields.iter().collect::<Vec<_>>(), [("topic", "T")]);
    }

    #[test]
    fn decodes_the_rust_client_send_message_example() {
        // REMOTING.md §2.2: real output of rocketmq-client-rust 1.0.0.
        let text = br#"{"code":10,"language":"RUST","version":474,"opaque":7,"flag":0,"remark":null,"extFields":{"producerGroup":"PG","topic":"TopicTest","defaultTopic":"TBW102","defaultTopicQueueNums":"4","queueId":"1","sysFlag":"0","bornTimestamp":"1700000000000","flag":"0","properties":"UNIQ_KEY\u0001ABC\u0002WAIT\u0001true\u0002","reconsumeTimes":"0","unitMode":"false","batch":"false","bname":"broker-a"},"serializeTypeCurrentRPC":"JSON"}"#;
        let cmd = decode_header(text).expect("decodes");
        assert_eq!(cmd.code, request::SEND_MESSAGE);
        assert_eq!(cmd.language, LanguageCode::Rust);
        assert_eq!(cmd.version, 474);
        assert_eq!(cmd.opaque, 7);
        assert_eq!(cmd.remark, None);
        assert_eq!(cmd.ext_fields.len(), 13);
        assert_eq!(cmd.ext_fields.get("properties"), Some("UNIQ_KEY\u{1}ABC\u{2}WAIT\u{1}true\u{2}"));
        assert_eq!(cmd.ext_fields.get("bornTimestamp"), Some("1700000000000"));
        assert_eq!(cmd.ext_fields.iter().next(), Some(("producerGroup", "PG")));
    }

    #[test]
    fn decoding_is_lenient() {
        let cmd = decode_header(
            br#" {"opaque":"12","language":12,"extFields":{"n":4,"b":true,"z":null,"f":1.5},"extra":[1,{}]} "#,
        )
        .expect("decodes");
        assert_eq!(cmd.code, 0);
        assert_eq!(cmd.opaque, 12);
        assert_eq!(cmd.language, LanguageCode::Rust);
        assert_eq!(cmd.ext_fields.iter().collect::<Vec<_>>(), [("n", "4"), ("b", "true"), ("f", "1.5")]);
        assert_eq!(decode_header(b"{}").expect("decodes").language, LanguageCode::Java);
        assert_eq!(decode_header(br#"{"language":"KLINGON"}"#).expect("decodes").language, LanguageCode::Other);
        assert_eq!(
            decode_header(br#"{"language":99,"extFields":null}"#).expect("decodes").language,
            LanguageCode::Other
        );
    }

    #[test]
    fn malformed_headers_are_errors() {
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            b"{\"code\":1}x",
            b"{\"code\":4294967296}",
            b"{\"code\":\"ten\"}",
            b"{\"extFields\":{\"a\":[1]}}",
            b"{\"extFields\":[]}",
            b"{\"code\":1,\"code\":2}",
            b"\xff",
        ] {
            assert!(
                matches!(decode_header(bad), Err(Error::HeaderJson { .. })),
                "{:?} should not decode",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
