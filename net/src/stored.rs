//! The stored-message record: the byte format of every CommitLog record and of every
//! message in a pull-response body (RocketMQ's `MessageDecoder` layout).
//!
//! ```text
//!  offset  size    field                        notes
//!  0       4       TOTALSIZE                    whole record, this field included
//!  4       4       MAGICCODE                    V1 0xDAA320A7 (1-byte topic length)
//!                                               V2 0xDAA320AB (2-byte topic length)
//!  8       4       BODYCRC                      CRC32(body) & 0x7FFFFFFF
//!  12      4       QUEUEID
//!  16      4       FLAG                         the producer's int flag
//!  20      8       QUEUEOFFSET                  index in the ConsumeQueue
//!  28      8       PHYSICALOFFSET               CommitLog offset of byte 0 of this record
//!  36      4       SYSFLAG                      bit 4: born host is IPv6; bit 5: store host is IPv6
//!  40      8       BORNTIMESTAMP                ms, producer clock
//!  48      8|20    BORNHOST                     IPv4 (4) or IPv6 (16), then port as i32 (4)
//!  ..      8       STORETIMESTAMP               ms, broker clock
//!  ..      8|20    STOREHOST                    as BORNHOST
//!  ..      4       RECONSUMETIMES
//!  ..      8       PREPARED TRANSACTION OFFSET
//!  ..      4+n     BODY                         i32 length, then bytes
//!  ..      1+t     TOPIC (V1)                   u8 length, then bytes
//!          2+t     TOPIC (V2)                   i16 length, then bytes
//!  ..      2+p     PROPERTIES                   i16 length, then the property string
//! ```
//!
//! All integers are big-endian. With IPv4 hosts the fixed part before the body length is
//! [`FIXED_PREFIX_V4_BYTES`] = 84 bytes. Decoders read the fields sequentially, so
//! TOTALSIZE must equal the exact sum of the fields and records sit back to back.
//!
//! A segment's unused tail is a BLANK record: TOTALSIZE = bytes to the end of the segment,
//! MAGICCODE = 0xCBD43194, and (here) zeros after that. It is never shorter than
//! [`BLANK_SIZE_MIN_BYTES`].
//!
//! Invariants: [`encode`] writes exactly [`encoded_len`] bytes; [`decode`] accepts every
//! record [`encode`] writes and returns the same fields; [`decode`] never panics and never
//! reads outside the slice it is given.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::limits::{MESSAGE_SIZE_MAX_BYTES, PROPERTIES_SIZE_MAX_BYTES, TOPIC_LEN_MAX_BYTES, TOPIC_V1_LEN_MAX_BYTES};
use crate::Error;

/// MAGICCODE of a record whose topic length is one byte.
pub const MAGIC_V1: u32 = 0xDAA3_20A7;
/// MAGICCODE of a record whose topic length is two bytes.
pub const MAGIC_V2: u32 = 0xDAA3_20AB;
/// MAGICCODE of the filler at the end of a segment.
pub const MAGIC_BLANK: u32 = 0xCBD4_3194;

/// A BLANK record holds at least TOTALSIZE and MAGICCODE (RocketMQ's
/// `END_FILE_MIN_BLANK_LENGTH`), so a reader can always tell where a segment's data ends.
pub const BLANK_SIZE_MIN_BYTES: usize = 8;

/// Bytes before the body length when both hosts are IPv4.
pub const FIXED_PREFIX_V4_BYTES: usize = 84;

/// Enough bytes to decode every fixed field ([`RecordHeader`]) whatever the host families.
pub const HEADER_SIZE_MAX_BYTES: usize = FIXED_PREFIX_V4_BYTES + 2 * 12;

/// The smallest possible message record: IPv4 hosts, empty body, topic and properties.
pub const RECORD_SIZE_MIN_BYTES: usize = FIXED_PREFIX_V4_BYTES + 4 + 1 + 2;

/// The largest record a store accepts (RocketMQ's `maxMessageSize` applies to the whole
/// record).
pub const RECORD_SIZE_MAX_BYTES: usize = MESSAGE_SIZE_MAX_BYTES;

/// SYSFLAG bits this codec interprets (RocketMQ `MessageSysFlag`).
pub mod sys_flag {
    pub const COMPRESSED: i32 = 0x1;
    pub const MULTI_TAGS: i32 = 0x2;
    pub const TRANSACTION_MASK: i32 = 0xC;
    pub const TRANSACTION_NOT_TYPE: i32 = 0x0;
    pub const TRANSACTION_PREPARED: i32 = 0x4;
    pub const TRANSACTION_COMMIT: i32 = 0x8;
    pub const TRANSACTION_ROLLBACK: i32 = 0xC;
    pub const BORN_HOST_V6: i32 = 0x10;
    pub const STORE_HOST_V6: i32 = 0x20;
}

/// The fields of a message to be written as a record, borrowed from wherever they came
/// from (a send request, a record being re-delivered). Offsets are supplied to [`encode`]
/// separately because only the store knows them.
#[derive(Debug, Clone, Copy)]
pub struct RecordFields<'a> {
    pub topic: &'a [u8],
    pub queue_id: i32,
    pub flag: i32,
    /// The IPv6 host bits are recomputed from the addresses by [`encode`].
    pub sys_flag: i32,
    pub born_timestamp_ms: i64,
    pub born_host: SocketAddr,
    pub store_timestamp_ms: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    pub body: &'a [u8],
    /// The encoded property string (see [`crate::properties`]).
    pub properties: &'a [u8],
}

fn host_len(addr: &SocketAddr) -> usize {
    match addr.ip() {
        IpAddr::V4(_) => 8,
        IpAddr::V6(_) => 20,
    }
}

fn topic_len_bytes(topic: &[u8]) -> usize {
    if topic.len() > TOPIC_V1_LEN_MAX_BYTES {
        2
    } else {
        1
    }
}

/// The exact size [`encode`] will write for `fields`, or why it cannot be encoded.
pub fn encoded_len(fields: &RecordFields<'_>) -> Result<usize, Error> {
    if fields.topic.len() > TOPIC_LEN_MAX_BYTES {
        return Err(Error::RecordFieldTooLong { field: "topic", len: fields.topic.len(), max: TOPIC_LEN_MAX_BYTES });
    }
    if fields.properties.len() > PROPERTIES_SIZE_MAX_BYTES {
        return Err(Error::RecordFieldTooLong {
            field: "properties",
            len: fields.properties.len(),
            max: PROPERTIES_SIZE_MAX_BYTES,
        });
    }
    let len = FIXED_PREFIX_V4_BYTES - 16
        + host_len(&fields.born_host)
        + host_len(&fields.store_host)
        + 4
        + fields.body.len()
        + topic_len_bytes(fields.topic)
        + fields.topic.len()
        + 2
        + fields.properties.len();
    if len > RECORD_SIZE_MAX_BYTES {
        return Err(Error::RecordFieldTooLong { field: "record", len, max: RECORD_SIZE_MAX_BYTES });
    }
    Ok(len)
}

/// CRC of a body as RocketMQ stores it: CRC32 (IEEE) with the sign bit cleared.
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}

fn put_host(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&i32::from(addr.port()).to_be_bytes());
}

/// Appends the record for `fields` at `queue_offset` / `physical_offset` to `out` and
/// returns its length. Nothing is appended on error.
pub fn encode(
    fields: &RecordFields<'_>,
    queue_offset: i64,
    physical_offset: i64,
    out: &mut Vec<u8>,
) -> Result<usize, Error> {
    let len = encoded_len(fields)?;
    let start = out.len();
    out.reserve(len);
    let mut sys_flag = fields.sys_flag & !(sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6);
    if fields.born_host.is_ipv6() {
        sys_flag |= sys_flag::BORN_HOST_V6;
    }
    if fields.store_host.is_ipv6() {
        sys_flag |= sys_flag::STORE_HOST_V6;
    }
    let v2 = topic_len_bytes(fields.topic) == 2;
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&(if v2 { MAGIC_V2 } else { MAGIC_V1 }).to_be_bytes());
    out.extend_from_slice(&body_crc(fields.body).to_be_bytes());
    out.extend_from_slice(&fields.queue_id.to_be_bytes());
    out.extend_from_slice(&fields.flag.to_be_bytes());
    out.extend_from_slice(&queue_offset.to_be_bytes());
    out.extend_from_slice(&physical_offset.to_be_bytes());
    out.extend_from_slice(&sys_flag.to_be_bytes());
    out.extend_from_slice(&fields.born_timestamp_ms.to_be_bytes());
    put_host(out, &fields.born_host);
    out.extend_from_slice(&fields.store_timestamp_ms.to_be_bytes());
    put_host(out, &fields.store_host);
    out.extend_from_slice(&fields.reconsume_times.to_be_bytes());
    out.extend_from_slice(&fields.prepared_transaction_offset.to_be_bytes());
    out.extend_from_slice(&(fields.body.len() as i32).to_be_bytes());
    out.extend_from_slice(fields.body);
    if v2 {
        out.extend_from_slice(&(fields.topic.len() as i16).to_be_bytes());
    } else {
        out.push(fields.topic.len() as u8);
    }
    out.extend_from_slice(fields.topic);
    out.extend_from_slice(&(fields.properties.len() as i16).to_be_bytes());
    out.extend_from_slice(fields.properties);
    debug_assert_eq!(out.len() - start, len);
    Ok(len)
}

/// Appends a BLANK record of `len` bytes (TOTALSIZE, MAGICCODE, then zeros).
pub fn encode_blank(len: usize, out: &mut Vec<u8>) {
    assert!(len >= BLANK_SIZE_MIN_BYTES, "a BLANK record needs {BLANK_SIZE_MIN_BYTES} bytes, got {len}");
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&MAGIC_BLANK.to_be_bytes());
    out.resize(out.len() + len - BLANK_SIZE_MIN_BYTES, 0);
}

/// The fixed-size fields of a message record, everything before the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub total_size: u32,
    pub magic: u32,
    pub body_crc: u32,
    pub queue_id: i32,
    pub flag: i32,
    pub queue_offset: i64,
    pub physical_offset: i64,
    pub sys_flag: i32,
    pub born_timestamp_ms: i64,
    pub born_host: SocketAddr,
    pub store_timestamp_ms: i64,
    pub store_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
    /// Where the body length field starts, counted from byte 0 of the record.
    pub body_len_at: usize,
}

/// One decoded record, borrowing the variable-length parts from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageView<'a> {
    pub header: RecordHeader,
    pub body: &'a [u8],
    pub topic: &'a [u8],
    pub properties: &'a [u8],
}

impl MessageView<'_> {
    /// Whether the stored BODYCRC matches the body: a torn or flipped record fails this.
    pub fn body_crc_matches(&self) -> bool {
        body_crc(self.body) == self.header.body_crc
    }
}

/// What sits at a record position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    Message(MessageView<'a>),
    /// The filler at the end of a segment; `total_size` bytes to skip.
    Blank {
        total_size: u32,
    },
}

/// A bounds-checked big-endian reader. Every read returns `None` past the end, so the
/// decoders below cannot index out of range whatever they are handed.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn host(&mut self, v6: bool) -> Option<SocketAddr> {
        let ip = if v6 {
            let o: [u8; 16] = self.take(16)?.try_into().ok()?;
            IpAddr::from(o)
        } else {
            let o: [u8; 4] = self.take(4)?.try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(o))
        };
        // Ports travel as i32; anything outside u16 is kept modulo 2^16 rather than
        // rejected, because the port is informational and Java writes what it has.
        let port = self.i32()? as u16;
        Some(SocketAddr::new(ip, port))
    }
}

/// Reads the fixed fields of the message record at the start of `buf`.
///
/// `Ok(None)`: fewer bytes than the header needs. A BLANK or unknown magic is an error
/// here: callers that scan segments use [`decode`], which understands BLANK.
pub fn decode_header(buf: &[u8]) -> Result<Option<RecordHeader>, Error> {
    let mut r = Reader { buf, pos: 0 };
    let (Some(total_size), Some(magic)) = (r.u32(), r.u32()) else { return Ok(None) };
    if magic != MAGIC_V1 && magic != MAGIC_V2 {
        return Err(Error::RecordMagic { magic });
    }
    if (total_size as usize) < RECORD_SIZE_MIN_BYTES || total_size as usize > RECORD_SIZE_MAX_BYTES {
        return Err(Error::RecordSize { total_size, detail: "outside the possible record sizes" });
    }
    let header = (|| {
        let body_crc = r.u32()?;
        let queue_id = r.i32()?;
        let flag = r.i32()?;
        let queue_offset = r.i64()?;
        let physical_offset = r.i64()?;
        let sys_flag = r.i32()?;
        let born_timestamp_ms = r.i64()?;
        let born_host = r.host(sys_flag & sys_flag::BORN_HOST_V6 != 0)?;
        let store_timestamp_ms = r.i64()?;
        let store_host = r.host(sys_flag & sys_flag::STORE_HOST_V6 != 0)?;
        let reconsume_times = r.i32()?;
        let prepared_transaction_offset = r.i64()?;
        Some(RecordHeader {
            total_size,
            magic,
            body_crc,
            queue_id,
            flag,
            queue_offset,
            physical_offset,
            sys_flag,
            born_timestamp_ms,
            born_host,
            store_timestamp_ms,
            store_host,
            reconsume_times,
            prepared_transaction_offset,
            body_len_at: r.pos,
        })
    })();
    Ok(header)
}

/// Decodes the record at the start of `buf`.
///
/// `Ok(None)`: `buf` holds a valid beginning but not the whole record yet. A TOTALSIZE
/// that cannot be right, an unknown magic, or fields that do not add up to TOTALSIZE are
/// errors. The body CRC is *not* checked here (see [`MessageView::body_crc_matches`]):
/// recovery checks it, a pull-response reader may not want to pay for it.
pub fn decode(buf: &[u8]) -> Result<Option<Record<'_>>, Error> {
    if buf.len() < BLANK_SIZE_MIN_BYTES {
        return Ok(None);
    }
    let total_size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let magic = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if magic == MAGIC_BLANK {
        if (total_size as usize) < BLANK_SIZE_MIN_BYTES {
            return Err(Error::RecordSize { total_size, detail: "BLANK shorter than its own header" });
        }
        return Ok(Some(Record::Blank { total_size }));
    }
    let Some(header) = decode_header(buf)? else { return Ok(None) };
    let total = total_size as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let mut r = Reader { buf: &buf[..total], pos: header.body_len_at };
    let short = || Error::RecordSize { total_size, detail: "fields run past TOTALSIZE" };
    let body_len = r.i32().ok_or_else(short)?;
    if body_len < 0 {
        return Err(Error::RecordSize { total_size, detail: "negative body length" });
    }
    let body = r.take(body_len as usize).ok_or_else(short)?;
    let topic_len = if magic == MAGIC_V2 {
        let n = r.i16().ok_or_else(short)?;
        if n < 0 {
            return Err(Error::RecordSize { total_size, detail: "negative topic length" });
        }
        n as usize
    } else {
        usize::from(r.u8().ok_or_else(short)?)
    };
    let topic = r.take(topic_len).ok_or_else(short)?;
    let props_len = r.i16().ok_or_else(short)?;
    if props_len < 0 {
        return Err(Error::RecordSize { total_size, detail: "negative properties length" });
    }
    let properties = r.take(props_len as usize).ok_or_else(short)?;
    if r.pos != total {
        return Err(Error::RecordSize { total_size, detail: "fields end before TOTALSIZE" });
    }
    Ok(Some(Record::Message(MessageView { header, body, topic, properties })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_fields<'a>(body: &'a [u8], topic: &'a [u8], properties: &'a [u8]) -> RecordFields<'a> {
        RecordFields {
            topic,
            queue_id: 1,
            flag: 0,
            sys_flag: 0,
            born_timestamp_ms: 1_700_000_000_000,
            born_host: "192.168.0.2:54321".parse().unwrap(),
            store_timestamp_ms: 1_700_000_000_005,
            store_host: "192.168.0.1:10911".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body,
            properties,
        }
    }

    /// The worked example of REMOTING.md §5.1 (checked there against the Rust client's
    /// own decoder): topic TopicTest, queue 1, offset 0, body "hello", 85 bytes of
    /// properties, 190 bytes in all.
    #[test]
    fn golden_bytes_match_the_reference_example() {
        let props = b"UNIQ_KEY\x01C0A8000200002A9F0000000000000001\x02TAGS\x01TagA\x02WAIT\x01true\x02CLUSTER\x01DefaultCluster\x02";
        assert_eq!(props.len(), 85);
        let mut out = Vec::new();
        let n = encode(&example_fields(b"hello", b"TopicTest", props), 0, 0, &mut out).unwrap();
        assert_eq!(n, 190);
        assert_eq!(out.len(), 190);
        let golden: [u8; FIXED_PREFIX_V4_BYTES] = [
            0x00, 0x00, 0x00, 0xbe, 0xda, 0xa3, 0x20, 0xa7, 0x36, 0x10, 0xa6, 0x86, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
            0x00, 0x00, // size, magic, crc, queue, flag
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, // queue offset, physical offset, sysflag
            0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00, 0xc0, 0xa8, 0x00, 0x02, 0x00, 0x00, 0xd4, 0x31, 0x00, 0x00,
            0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x05, // born ts, born host, store ts
            0xc0, 0xa8, 0x00, 0x01, 0x00, 0x00, 0x2a, 0x9f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, // store host, reconsume, prepared offset
        ];
        assert_eq!(&out[..FIXED_PREFIX_V4_BYTES], &golden[..]);
        // Body length, body, topic and properties follow in that order.
        assert_eq!(&out[84..88], &5i32.to_be_bytes());
        assert_eq!(&out[88..93], b"hello");
        assert_eq!(out[93], 9);
        assert_eq!(&out[94..103], b"TopicTest");
        assert_eq!(&out[103..105], &85i16.to_be_bytes());
        assert_eq!(&out[105..], &props[..]);
    }

    #[test]
    fn decode_returns_every_encoded_field() {
        let mut out = Vec::new();
        let fields = example_fields(b"payload", b"T", b"TAGS\x01a\x02");
        encode(&fields, 42, 4096, &mut out).unwrap();
        let Some(Record::Message(view)) = decode(&out).unwrap() else { panic!("not a message") };
        assert_eq!(view.header.total_size as usize, out.len());
        assert_eq!(view.header.queue_offset, 42);
        assert_eq!(view.header.physical_offset, 4096);
        assert_eq!(view.header.queue_id, 1);
        assert_eq!(view.header.born_host, fields.born_host);
        assert_eq!(view.header.store_host, fields.store_host);
        assert_eq!(view.header.store_timestamp_ms, fields.store_timestamp_ms);
        assert_eq!(view.body, b"payload");
        assert_eq!(view.topic, b"T");
        assert_eq!(view.properties, b"TAGS\x01a\x02");
        assert!(view.body_crc_matches());
    }

    #[test]
    fn ipv6_hosts_set_their_sys_flag_bits_and_round_trip() {
        let mut fields = example_fields(b"x", b"T", b"");
        fields.born_host = "[::1]:7".parse().unwrap();
        fields.store_host = "[fe80::2]:10911".parse().unwrap();
        let mut out = Vec::new();
        let n = encode(&fields, 0, 0, &mut out).unwrap();
        assert_eq!(n, FIXED_PREFIX_V4_BYTES + 24 + 4 + 1 + 1 + 1 + 2);
        let Some(Record::Message(view)) = decode(&out).unwrap() else { panic!() };
        assert_eq!(view.header.sys_flag, sys_flag::BORN_HOST_V6 | sys_flag::STORE_HOST_V6);
        assert_eq!(view.header.born_host, fields.born_host);
        assert_eq!(view.header.store_host, fields.store_host);
    }

    #[test]
    fn long_topics_use_the_v2_magic() {
        let topic = vec![b'a'; 200];
        let mut out = Vec::new();
        encode(&example_fields(b"", &topic, b""), 0, 0, &mut out).unwrap();
        assert_eq!(&out[4..8], &MAGIC_V2.to_be_bytes());
        let Some(Record::Message(view)) = decode(&out).unwrap() else { panic!() };
        assert_eq!(view.topic, &topic[..]);
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        let mut out = Vec::new();
        encode(&example_fields(b"hello", b"TopicTest", b"K\x01V\x02"), 0, 0, &mut out).unwrap();
        for cut in 0..out.len() {
            assert_eq!(decode(&out[..cut]), Ok(None), "prefix of {cut} bytes");
        }
    }

    #[test]
    fn a_size_that_disagrees_with_the_fields_is_an_error() {
        let mut out = Vec::new();
        encode(&example_fields(b"hello", b"T", b""), 0, 0, &mut out).unwrap();
        let mut longer = out.clone();
        longer.push(0);
        let n = longer.len() as u32;
        longer[..4].copy_from_slice(&n.to_be_bytes());
        assert!(matches!(decode(&longer), Err(Error::RecordSize { .. })));
        let mut shorter = out.clone();
        let n = out.len() as u32 - 1;
        shorter[..4].copy_from_slice(&n.to_be_bytes());
        assert!(matches!(decode(&shorter), Err(Error::RecordSize { .. })));
    }

    #[test]
    fn a_flipped_body_byte_fails_the_crc() {
        let mut out = Vec::new();
        encode(&example_fields(b"hello", b"T", b""), 0, 0, &mut out).unwrap();
        out[FIXED_PREFIX_V4_BYTES + 4] ^= 1;
        let Some(Record::Message(view)) = decode(&out).unwrap() else { panic!() };
        assert!(!view.body_crc_matches());
    }

    #[test]
    fn blank_records_are_recognised() {
        let mut out = Vec::new();
        encode_blank(20, &mut out);
        assert_eq!(out.len(), 20);
        assert_eq!(&out[..8], &[0, 0, 0, 20, 0xcb, 0xd4, 0x31, 0x94]);
        assert_eq!(decode(&out), Ok(Some(Record::Blank { total_size: 20 })));
        assert!(decode(&[0, 0, 0, 4, 0xcb, 0xd4, 0x31, 0x94]).is_err());
    }

    #[test]
    fn unknown_magic_and_zeroes_are_errors() {
        assert!(matches!(decode(&[0u8; 16]), Err(Error::RecordMagic { magic: 0 })));
    }

    #[test]
    fn oversized_fields_are_refused_before_writing() {
        let props = vec![b'a'; PROPERTIES_SIZE_MAX_BYTES + 1];
        let mut out = Vec::new();
        assert!(encode(&example_fields(b"", b"T", &props), 0, 0, &mut out).is_err());
        let body = vec![0u8; RECORD_SIZE_MAX_BYTES];
        assert!(encode(&example_fields(&body, b"T", b""), 0, 0, &mut out).is_err());
        assert!(out.is_empty());
    }
}
