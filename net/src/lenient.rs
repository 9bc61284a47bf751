//! Lenient readers for the members of JSON bodies: what Java's fastjson accepts from
//! real clients, so a body any RocketMQ client sends decodes here as it does in a Java
//! broker or NameServer.
//!
//! Owns the `deserialize_with` helpers `body` puts on its members, and the
//! [`JavaEnum`] reader its enums use. The rules, per member type:
//!
//! - integer: a JSON integer; a float with no fraction (`4.0`); a string holding an
//!   integer (`"1796412029214"`: the C++ client writes 64-bit values so); `true`/`false`
//!   as 1/0; `""` and `"null"` as 0. Null: 0.
//! - boolean: `true`/`false`; 1/0; the strings `true`/`false` in any case, `1`/`0`,
//!   `Y`/`N`, `T`/`F` (fastjson's `castToBoolean`); `""` and `"null"` as false. Null:
//!   false.
//! - string: a string; a number or boolean as its text. Null: `""` (or `None` for an
//!   optional member).
//! - enum ([`JavaEnum`]): the Java constant's name, in any case (fastjson falls back to
//!   a case-insensitive match); its ordinal, as a number or a string of digits (the C++
//!   client writes C++ enums, declared in Java's order); a name or ordinal past the
//!   known ones is the enum's `Unknown`. Null: the enum's default.
//! - list, map, nested object: as JSON. Null: empty, or the type's default.
//! - a subscription's `codeSet` ([`codes`]): integers in any form above; any other
//!   element is dropped, since brokers never trust these codes.
//!
//! Unknown members are ignored and missing ones take the container's defaults (serde's
//! `default` on every body), so neither needs a helper.
//!
//! Invariants: nothing is guessed or truncated: a fraction where an integer belongs, an
//! integer outside the member's range, a string that is no integer, a negative ordinal,
//! or an object where text belongs are errors naming the value. Readers never panic.
//! Encoding is untouched: these only read. Pure functions: they run on whichever thread
//! decodes a body (a broker shard, the NameServer, the admin tool).
//!
//! Deliberately not here: ext-field (header) values, which are strings on the wire and
//! parsed as Java's `decodeCommandCustomHeader` does (`headers`); the JSON command header
//! itself (`json`, lenient in its own hand-written way).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;

/// An integer in any of the forms fastjson reads as one, as an i64.
struct IntegerVisitor;

impl<'de> Visitor<'de> for IntegerVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer, or a string holding one")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        // 2^63 is exactly representable; anything at or past it does not fit.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v) {
            Ok(v as i64)
        } else {
            Err(E::invalid_value(Unexpected::Float(v), &self))
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<i64, E> {
        Ok(i64::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        if is_null_text(v) {
            return Ok(0);
        }
        v.parse::<i64>().map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
        Ok(0)
    }
}

/// fastjson reads an empty string, and the text `null`, as null.
fn is_null_text(v: &str) -> bool {
    v.is_empty() || v == "null" || v == "NULL"
}

/// A member of Java type `long`.
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    d.deserialize_any(IntegerVisitor)
}

/// A member of Java type `int`: as [`i64`], then refused when outside i32's range.
pub fn i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let wide = d.deserialize_any(IntegerVisitor)?;
    i32::try_from(wide)
        .map_err(|_| de::Error::invalid_value(Unexpected::Signed(wide), &"an integer within i32's range"))
}

struct FloatVisitor;

impl<'de> Visitor<'de> for FloatVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, or a string holding one")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        if is_null_text(v) {
            return Ok(0.0);
        }
        match v.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(f),
            _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
        Ok(0.0)
    }
}

/// A member of Java type `double`.
pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_any(FloatVisitor)
}

struct BoolVisitor;

impl<'de> Visitor<'de> for BoolVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a boolean, 0 or 1, or a string holding one")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        if is_null_text(v) {
            return Ok(false);
        }
        if ["true", "1", "Y", "T"].iter().any(|t| v.eq_ignore_ascii_case(t)) {
            Ok(true)
        } else if ["false", "0", "N", "F"].iter().any(|t| v.eq_ignore_ascii_case(t)) {
            Ok(false)
        } else {
            Err(E::invalid_value(Unexpected::Str(v), &self))
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// A member of Java type `boolean`.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_any(BoolVisitor)
}

/// Text, or a number or boolean as its text; `None` for null.
struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
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

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

/// A member of Java type `String`; null reads as empty.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(d.deserialize_any(TextVisitor)?.unwrap_or_default())
}

/// An optional `String` member: null stays `None`.
pub fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(TextVisitor)
}

/// A list, map or nested object: null reads as the type's default (empty), as an
/// absent member does.
pub fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One element of a list of strings, read as [`string`].
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        string(d).map(Text)
    }
}

/// A `List<String>` / `Set<String>` member: elements read as [`string`], null as empty.
pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list: Option<Vec<Text>> = Option::deserialize(d)?;
    Ok(list.unwrap_or_default().into_iter().map(|t| t.0).collect())
}

/// A `Map<String, String>` member: values read as [`string`], null as empty.
pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let map: Option<BTreeMap<String, Text>> = Option::deserialize(d)?;
    Ok(map.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// One element of a list that is never trusted: an integer in any form, or `None` for
/// anything else.
struct MaybeInteger(Option<i32>);

impl<'de> Deserialize<'de> for MaybeInteger {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MaybeInteger, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let wide = match &value {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.parse::<i64>().ok(),
            _ => None,
        };
        Ok(MaybeInteger(wide.and_then(|w| i32::try_from(w).ok())))
    }
}

/// A subscription's `codeSet`: elements read as integers in any form, and an element
/// that is none is dropped rather than failing the body. Brokers never use these codes
/// (they compute their own from the tags; the C++ client sends `atoi(tag)`, the Go
/// client a hash over UTF-8 bytes rather than Java's UTF-16 units), so refusing a whole
/// heartbeat over one would only cost the client its membership.
pub fn codes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i32>, D::Error> {
    let list: Option<Vec<MaybeInteger>> = Option::deserialize(d)?;
    Ok(list.unwrap_or_default().into_iter().filter_map(|c| c.0).collect())
}

/// A Java enum as fastjson reads it: by name or by ordinal.
pub trait JavaEnum: Copy + Default + 'static {
    /// The Java class name, for errors.
    const NAME: &'static str;
    /// Every constant's Java name in Java's declaration order: the index is its ordinal.
    const ORDINALS: &'static [(&'static str, Self)];
    /// What a name or ordinal past the known ones reads as: a constant a newer client
    /// may send, which should not fail the whole body.
    const UNKNOWN: Self;

    /// The constant named `name`: exactly, else ignoring ASCII case (fastjson's
    /// fallback), else an ordinal written as digits; `UNKNOWN` for any other text.
    fn from_name(name: &str) -> Self {
        let by_name = Self::ORDINALS.iter().find(|(n, _)| *n == name);
        let by_name = by_name.or_else(|| Self::ORDINALS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)));
        match by_name {
            Some((_, value)) => *value,
            None => match name.parse::<u64>() {
                Ok(ordinal) => Self::from_ordinal(ordinal),
                Err(_) => Self::UNKNOWN,
            },
        }
    }

    fn from_ordinal(ordinal: u64) -> Self {
        usize::try_from(ordinal).ok().and_then(|i| Self::ORDINALS.get(i)).map_or(Self::UNKNOWN, |(_, value)| *value)
    }
}

struct EnumVisitor<T>(PhantomData<T>);

impl<'de, T: JavaEnum> Visitor<'de> for EnumVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {} name or ordinal", T::NAME)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        if is_null_text(v) {
            return Ok(T::default());
        }
        Ok(T::from_name(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Ok(T::from_ordinal(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        // serde_json hands non-negative integers to visit_u64; only negatives come here.
        u64::try_from(v).map(T::from_ordinal).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }
}

/// Reads a [`JavaEnum`] member (the enums' `Deserialize` impls call this).
pub fn java_enum<'de, D: Deserializer<'de>, T: JavaEnum>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(EnumVisitor(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(default)]
    struct Probe {
        #[serde(deserialize_with = "i32")]
        small: i32,
        #[serde(deserialize_with = "i64")]
        wide: i64,
        #[serde(deserialize_with = "bool")]
        flag: bool,
        #[serde(deserialize_with = "string")]
        text: String,
        #[serde(deserialize_with = "f64")]
        real: f64,
    }

    fn probe(json: &str) -> Result<Probe, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn integers_in_every_form_fastjson_reads() {
        for (json, expected) in [
            (r#"{"small":7}"#, 7),
            (r#"{"small":"7"}"#, 7),
            (r#"{"small":"-7"}"#, -7),
            (r#"{"small":"+7"}"#, 7),
            (r#"{"small":7.0}"#, 7),
            (r#"{"small":true}"#, 1),
            (r#"{"small":null}"#, 0),
            (r#"{"small":""}"#, 0),
            (r#"{"small":"null"}"#, 0),
            (r#"{"small":-2147483648}"#, i32::MIN),
        ] {
            assert_eq!(probe(json).map(|p| p.small), Ok(expected), "{json}");
        }
        assert_eq!(probe(r#"{"wide":"9223372036854775807"}"#).map(|p| p.wide), Ok(i64::MAX));
        assert_eq!(probe(r#"{"wide":-9223372036854775808}"#).map(|p| p.wide), Ok(i64::MIN));
        for json in [
            r#"{"small":2147483648}"#,
            r#"{"small":"7x"}"#,
            r#"{"small":" 7"}"#,
            r#"{"small":7.5}"#,
            r#"{"small":[7]}"#,
            r#"{"small":{}}"#,
            r#"{"wide":9223372036854775808}"#,
            r#"{"wide":1e19}"#,
        ] {
            assert!(probe(json).is_err(), "{json} should be refused");
        }
    }

    #[test]
    fn booleans_in_every_form_fastjson_reads() {
        for (json, expected) in [
            (r#"{"flag":true}"#, true),
            (r#"{"flag":"TRUE"}"#, true),
            (r#"{"flag":"y"}"#, true),
            (r#"{"flag":"T"}"#, true),
            (r#"{"flag":1}"#, true),
            (r#"{"flag":"1"}"#, true),
            (r#"{"flag":false}"#, false),
            (r#"{"flag":"False"}"#, false),
            (r#"{"flag":"N"}"#, false),
            (r#"{"flag":0}"#, false),
            (r#"{"flag":null}"#, false),
            (r#"{"flag":""}"#, false),
        ] {
            assert_eq!(probe(json).map(|p| p.flag), Ok(expected), "{json}");
        }
        for json in [r#"{"flag":2}"#, r#"{"flag":"yes"}"#, r#"{"flag":[]}"#, r#"{"flag":0.5}"#] {
            assert!(probe(json).is_err(), "{json} should be refused");
        }
    }

    #[test]
    fn text_and_reals() {
        assert_eq!(probe(r#"{"text":12}"#).map(|p| p.text), Ok("12".into()));
        assert_eq!(probe(r#"{"text":false}"#).map(|p| p.text), Ok("false".into()));
        assert_eq!(probe(r#"{"text":null}"#).map(|p| p.text), Ok(String::new()));
        assert!(probe(r#"{"text":{"a":1}}"#).is_err());
        assert_eq!(probe(r#"{"real":"1.5"}"#).map(|p| p.real), Ok(1.5));
        assert_eq!(probe(r#"{"real":2}"#).map(|p| p.real), Ok(2.0));
        assert!(probe(r#"{"real":"NaN"}"#).is_err());
        assert_eq!(probe(r#"{"unknown":[1,{"x":null}],"small":3}"#).map(|p| p.small), Ok(3));
    }

    #[test]
    fn codes_drop_what_is_no_integer() {
        #[derive(Deserialize)]
        struct Sub {
            #[serde(deserialize_with = "codes")]
            c: Vec<i32>,
        }
        let sub: Sub = serde_json::from_str(r#"{"c":[1,"2",null,"x",4294967296,-3,{"a":1}]}"#).expect("decodes");
        assert_eq!(sub.c, [1, 2, -3]);
        let sub: Sub = serde_json::from_str(r#"{"c":null}"#).expect("decodes");
        assert!(sub.c.is_empty());
    }
}
