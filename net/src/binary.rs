//! The ROCKETMQ binary encoding of the RemotingCommand header (REMOTING.md §2.3).
//!
//! ```text
//!  size  field
//!  2     code          i16   (codes above 32767, e.g. POP, cannot be sent this way)
//!  1     language      u8    (LanguageCode; unknown codes read as OTHER)
//!  2     version       i16
//!  4     opaque        i32
//!  4     flag          i32
//!  4     remarkLength  i32   0 = no remark
//!  R     remark        UTF-8
//!  4     extLength     i32   bytes of the entries that follow; 0 = no ext fields
//!  E     entries, until extLength is consumed:
//!          2  keyLength  i16,  K key bytes
//!          4  valLength  i32,  V value bytes
//! ```
//!
//! All integers big-endian. A header is exactly 2+1+2+4+4+4+R+4+E bytes: the Rust client
//! rejects trailing bytes and so do we. A zero-length remark, key or value reads as
//! absent (Java reads it as null), so an ext entry with an empty key or value is dropped
//! on decode; an empty string therefore does not survive a round trip.
//!
//! Invariants: [`encode_header`] either writes the whole header or nothing; [`decode_header`]
//! accepts everything [`encode_header`] writes, and never panics or reads out of bounds.
//! Negative lengths and non-UTF-8 strings are errors.
//!
//! Deliberately not here: the frame around the header (`frame`).

use crate::buf::OutBuf;
use crate::code::{LanguageCode, SerializeType};
use crate::command::{ExtFields, RemotingCommand};
use crate::limits::HEADER_KEY_LEN_MAX_BYTES;
use crate::Error;

/// Bytes of a header with no remark and no ext fields.
pub const HEADER_FIXED_BYTES: usize = 2 + 1 + 2 + 4 + 4 + 4 + 4;
const _: () = assert!(HEADER_FIXED_BYTES == 21, "the layout drawn above");

pub(crate) fn range_error(field: &'static str, value: i64) -> Error {
    Error::HeaderFieldRange { encoding: "ROCKETMQ", field, value }
}

/// The exact size [`encode_header`] writes for `cmd`, or why it cannot be encoded.
pub fn encoded_len(cmd: &RemotingCommand) -> Result<usize, Error> {
    if i16::try_from(cmd.code).is_err() {
        return Err(range_error("code", i64::from(cmd.code)));
    }
    if i16::try_from(cmd.version).is_err() {
        return Err(range_error("version", i64::from(cmd.version)));
    }
    let remark_len = cmd.remark.as_ref().map_or(0, String::len);
    if i32::try_from(remark_len).is_err() {
        return Err(range_error("remark length", remark_len as i64));
    }
    let ext_len = ext_len(&cmd.ext_fields)?;
    Ok(HEADER_FIXED_BYTES + remark_len + ext_len)
}

fn ext_len(ext: &ExtFields) -> Result<usize, Error> {
    let mut len = 0usize;
    for (key, value) in ext.iter() {
        if key.len() > HEADER_KEY_LEN_MAX_BYTES {
            return Err(range_error("ext key length", key.len() as i64));
        }
        if i32::try_from(value.len()).is_err() {
            return Err(range_error("ext value length", value.len() as i64));
        }
        len = len.saturating_add(2 + key.len() + 4 + value.len());
    }
    if i32::try_from(len).is_err() {
        return Err(range_error("ext length", len as i64));
    }
    Ok(len)
}

/// Appends the binary header of `cmd` to `out` and returns its length. Nothing is
/// written on error.
pub fn encode_header<B: OutBuf>(cmd: &RemotingCommand, out: &mut B) -> Result<usize, Error> {
    let len = encoded_len(cmd)?;
    out.reserve_more(len);
    // The casts below are exact: encoded_len checked every range.
    let remark = cmd.remark.as_deref().unwrap_or("");
    put_fixed(out, cmd.code as i16, cmd.language, cmd.version as i16, cmd.opaque, cmd.flag, remark);
    let ext_len = len - HEADER_FIXED_BYTES - remark.len();
    out.put(&(ext_len as i32).to_be_bytes());
    for (key, value) in cmd.ext_fields.iter() {
        put_ext_entry(out, key, value);
    }
    Ok(len)
}

/// The fields before the ext length, remark included (its length must fit an i32). The
/// header encoder and `frame::ResponseWriter` share this and [`put_ext_entry`], so an
/// answer written either way has the same bytes.
pub(crate) fn put_fixed<B: OutBuf>(
    out: &mut B,
    code: i16,
    language: LanguageCode,
    version: i16,
    opaque: i32,
    flag: i32,
    remark: &str,
) {
    out.put(&code.to_be_bytes());
    out.put_byte(language.code());
    out.put(&version.to_be_bytes());
    out.put(&opaque.to_be_bytes());
    out.put(&flag.to_be_bytes());
    out.put(&(remark.len() as i32).to_be_bytes());
    out.put(remark.as_bytes());
}

/// One ext entry; the key's length must fit an i16 and the value's an i32.
pub(crate) fn put_ext_entry<B: OutBuf>(out: &mut B, key: &str, value: &str) {
    out.put(&(key.len() as i16).to_be_bytes());
    out.put(key.as_bytes());
    out.put(&(value.len() as i32).to_be_bytes());
    out.put(value.as_bytes());
}

/// A bounds-checked big-endian reader; every shortfall is a [`Error::HeaderBinary`].
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn truncated() -> Error {
    Error::HeaderBinary { detail: "truncated" }
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.pos.checked_add(n).ok_or_else(truncated)?;
        let s = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        self.take(N)?.try_into().map_err(|_| truncated())
    }
    fn i16(&mut self) -> Result<i16, Error> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, Error> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn len(&mut self, wide: bool, what: &'static str) -> Result<usize, Error> {
        let len = if wide { self.i32()? } else { i32::from(self.i16()?) };
        usize::try_from(len).map_err(|_| Error::HeaderBinary { detail: what })
    }
    /// A length-prefixed string; zero length is `None`.
    fn string(&mut self, wide: bool, what: &'static str) -> Result<Option<&'a str>, Error> {
        let len = self.len(wide, what)?;
        if len == 0 {
            return Ok(None);
        }
        utf8(self.take(len)?).map(Some)
    }
}

#[inline]
fn utf8(bytes: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(bytes).map_err(|_| Error::HeaderBinary { detail: "string is not UTF-8" })
}

/// Decodes the ext block: `keyLength i16, key, valueLength i32, value` until it ends.
///
/// When the block is UTF-8 as a whole (every length byte below 0x80, which is any key
/// and value shorter than 128 bytes), it is copied into the map's arena in one piece and
/// the entries point into the copy; a key or value there is UTF-8 by itself exactly when
/// its ends are char boundaries of the block. Otherwise each string is checked and copied
/// on its own. Either way: two allocations for the map.
fn decode_ext(block: &[u8]) -> Result<ExtFields, Error> {
    // Each entry has at least 6 bytes of lengths, so the text is under the block's size;
    // the entry count estimate assumes short keys and values.
    let mut ext = ExtFields::with_capacities((block.len() / 16).clamp(4, 32), block.len());
    let whole = std::str::from_utf8(block).ok();
    if let Some(text) = whole {
        ext.arena().push_str(text);
    }
    let mut r = Reader { buf: block, pos: 0 };
    while r.pos < block.len() {
        let key_len = r.len(false, "negative key length")?;
        let key_at = r.pos;
        r.take(key_len)?;
        let value_len = r.len(true, "negative value length")?;
        let value_at = r.pos;
        r.take(value_len)?;
        let (key, value) = (key_at..key_at + key_len, value_at..value_at + value_len);
        match whole {
            Some(text) => {
                let on_boundaries = |range: &std::ops::Range<usize>| {
                    text.is_char_boundary(range.start) && text.is_char_boundary(range.end)
                };
                if !on_boundaries(&key) || !on_boundaries(&value) {
                    return Err(Error::HeaderBinary { detail: "string is not UTF-8" });
                }
                // A zero-length key or value reads as absent (Java reads it as null).
                if key_len > 0 && value_len > 0 {
                    ext.commit(key, value);
                }
            }
            None => {
                let (key, value) = (utf8(&block[key])?, utf8(&block[value])?);
                if !key.is_empty() && !value.is_empty() {
                    ext.insert(key, value);
                }
            }
        }
    }
    Ok(ext)
}

/// Decodes a binary header that spans all of `header`. The result has an empty body and
/// serialize type ROCKETMQ.
pub fn decode_header(header: &[u8]) -> Result<RemotingCommand, Error> {
    let mut r = Reader { buf: header, pos: 0 };
    let code = i32::from(r.i16()?);
    let language = LanguageCode::from_code(r.array::<1>()?[0]);
    let version = i32::from(r.i16()?);
    let opaque = r.i32()?;
    let flag = r.i32()?;
    let remark = r.string(true, "negative remark length")?.map(str::to_owned);
    let ext_len = r.len(true, "negative ext length")?;
    let ext_block = r.take(ext_len)?;
    if r.pos != header.len() {
        return Err(Error::HeaderBinary { detail: "bytes after the ext fields" });
    }
    let ext = if ext_block.is_empty() { ExtFields::new() } else { decode_ext(ext_block)? };
    Ok(RemotingCommand {
        code,
        language,
        version,
        opaque,
        flag,
        remark,
        ext_fields: ext,
        serialize_type: SerializeType::RocketMq,
        body: bytes::Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::request;
    use crate::test_util::XorShift;

    /// REMOTING.md §1.4: the binary header of GET_ROUTEINFO_BY_TOPIC for topic `T`.
    const SPEC_HEADER: [u8; 33] = [
        0x00, 0x69, 0x00, 0x01, 0xdf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x0c, 0x00, 0x05, b't', b'o', b'p', b'i', b'c', 0x00, 0x00, 0x00, 0x01, b'T',
    ];

    fn spec_command() -> RemotingCommand {
        let mut cmd =
            RemotingCommand::new_request(request::GET_ROUTEINFO_BY_TOPIC, [("topic", "T")].into_iter().collect())
                .with_opaque(1)
                .with_serialize_type(SerializeType::RocketMq);
        cmd.language = LanguageCode::Java;
        cmd
    }

    #[test]
    fn golden_spec_example() {
        let mut out = Vec::new();
        assert_eq!(encode_header(&spec_command(), &mut out), Ok(33));
        assert_eq!(out, SPEC_HEADER);
        assert_eq!(decode_header(&SPEC_HEADER), Ok(spec_command()));
    }

    #[test]
    fn round_trip_with_remark() {
        let mut cmd = spec_command();
        cmd.remark = Some("ünïcode".into());
        cmd.code = -1;
        cmd.version = i32::from(i16::MIN);
        cmd.flag = 3;
        cmd.ext_fields.insert("k2", "v\u{1}2");
        let mut out = vec![0xAA];
        let len = encode_header(&cmd, &mut out).expect("encodes");
        assert_eq!(len, out.len() - 1);
        assert_eq!(encoded_len(&cmd), Ok(len));
        assert_eq!(decode_header(&out[1..]), Ok(cmd));
    }

    #[test]
    fn empty_strings_decode_as_absent() {
        let mut cmd = spec_command();
        cmd.remark = Some(String::new());
        cmd.ext_fields.insert("empty", "");
        let mut out = Vec::new();
        encode_header(&cmd, &mut out).expect("encodes");
        let back = decode_header(&out).expect("decodes");
        assert_eq!(back.remark, None);
        assert_eq!(back.ext_fields.iter().collect::<Vec<_>>(), [("topic", "T")]);
    }

    #[test]
    fn unrepresentable_values_are_refused_without_writing() {
        let mut cmd = spec_command();
        cmd.code = request::POP_MESSAGE;
        let mut out = vec![1, 2, 3];
        assert!(matches!(encode_header(&cmd, &mut out), Err(Error::HeaderFieldRange { field: "code", .. })));
        assert_eq!(out, [1, 2, 3]);
        let mut cmd = spec_command();
        cmd.ext_fields.insert("k".repeat(40_000), "v");
        assert!(encode_header(&cmd, &mut out).is_err());
    }

    #[test]
    fn malformed_headers_are_errors() {
        let mut trailing = SPEC_HEADER.to_vec();
        trailing.push(0);
        assert_eq!(decode_header(&trailing), Err(Error::HeaderBinary { detail: "bytes after the ext fields" }));
        for cut in 0..SPEC_HEADER.len() {
            assert!(decode_header(&SPEC_HEADER[..cut]).is_err(), "prefix of {cut} bytes");
        }
        let mut neg_remark = SPEC_HEADER;
        neg_remark[13] = 0xFF;
        assert!(decode_header(&neg_remark).is_err());
        let mut neg_key = SPEC_HEADER;
        neg_key[21] = 0x80;
        assert_eq!(decode_header(&neg_key), Err(Error::HeaderBinary { detail: "negative key length" }));
        let mut entry_overruns = SPEC_HEADER;
        entry_overruns[20] = 0x0b; // ext block one byte short of its entry
        assert!(decode_header(&entry_overruns[..32]).is_err());
        let mut bad_utf8 = SPEC_HEADER;
        bad_utf8[32] = 0xFF;
        assert_eq!(decode_header(&bad_utf8), Err(Error::HeaderBinary { detail: "string is not UTF-8" }));
    }

    #[test]
    fn pseudo_random_headers_never_panic() {
        let mut rng = XorShift(3);
        let mut decoded = 0;
        for _ in 0..3000 {
            let input = rng.mutate(&SPEC_HEADER);
            if let Ok(cmd) = decode_header(&input) {
                decoded += 1;
                let mut again = Vec::new();
                if encode_header(&cmd, &mut again).is_ok() {
                    assert_eq!(decode_header(&again), Ok(cmd));
                }
            }
        }
        assert!(decoded > 100, "only {decoded} headers decoded");
    }

    /// The ext block as the decoder read it before the whole-block copy: each string
    /// checked and copied on its own.
    fn ext_by_strings(block: &[u8]) -> Result<ExtFields, Error> {
        let mut ext = ExtFields::new();
        let mut r = Reader { buf: block, pos: 0 };
        while r.pos < block.len() {
            let key = r.string(false, "negative key length")?;
            let value = r.string(true, "negative value length")?;
            if let (Some(key), Some(value)) = (key, value) {
                ext.insert(key, value);
            }
        }
        Ok(ext)
    }

    #[test]
    fn whole_block_copy_agrees_with_string_by_string_decoding() {
        let mut rng = XorShift(0xB10C);
        let texts = ["", "k", "topic", "é", "日本", "\u{1}\u{2}", "\u{7F}x", "v\u{80}"];
        let mut decoded = 0;
        for _ in 0..20_000 {
            let mut block = Vec::new();
            for _ in 0..rng.below(5) {
                let key = texts[rng.below(texts.len())].repeat(1 + rng.below(3));
                // Sometimes long enough that a length byte is 0x80 or more.
                let value = texts[rng.below(texts.len())].repeat(1 + rng.below(70));
                block.extend_from_slice(&(key.len() as i16).to_be_bytes());
                block.extend_from_slice(key.as_bytes());
                block.extend_from_slice(&(value.len() as i32).to_be_bytes());
                block.extend_from_slice(value.as_bytes());
            }
            let input = if rng.below(2) == 0 { block.clone() } else { rng.mutate(&block) };
            let fast = decode_ext(&input);
            match (&fast, ext_by_strings(&input)) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(*a, b, "{input:?}");
                    decoded += 1;
                }
                (Err(_), Err(_)) => {}
                (a, b) => panic!("{a:?} but {b:?} for {input:?}"),
            }
        }
        assert!(decoded > 5_000, "only {decoded} decoded");
    }
}
