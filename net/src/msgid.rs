//! Offset message ids (REMOTING.md §5.4): the `msgId` a broker returns for a send and
//! the id clients compute for every pulled record.
//!
//! ```text
//!  IPv4:  | store IP (4) | store port as i32 (4) | physical offset i64 (8) |  -> 32 hex digits
//!  IPv6:  | store IP (16)| store port as i32 (4) | physical offset i64 (8) |  -> 56 hex digits
//! ```
//!
//! Uppercase hex, big-endian. Example: 192.168.0.1:10911 at offset 0 is
//! `C0A8000100002A9F0000000000000000`.
//!
//! Invariants: [`decode`] accepts exactly what [`encode`] writes (and lowercase hex, as
//! Java's parser does); anything that is not 32 or 56 hex digits is an error, never a
//! panic. Batch sends return these ids comma-joined ([`encode_into`] appends).
//!
//! Deliberately not here: UNIQ_KEY generation (it needs a clock, a pid and a counter;
//! the broker owns those).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Error;

/// Hex digits of an id whose store host is IPv4.
pub const ID_V4_LEN: usize = 32;
/// Hex digits of an id whose store host is IPv6.
pub const ID_V6_LEN: usize = 56;

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_hex(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        out.push(char::from(HEX_UPPER[usize::from(b >> 4)]));
        out.push(char::from(HEX_UPPER[usize::from(b & 0xF)]));
    }
}

/// Appends the id of the record at `physical_offset` stored by `store_host` to `out`.
pub fn encode_into(store_host: SocketAddr, physical_offset: i64, out: &mut String) {
    match store_host.ip() {
        IpAddr::V4(ip) => push_hex(out, &ip.octets()),
        IpAddr::V6(ip) => push_hex(out, &ip.octets()),
    }
    push_hex(out, &i32::from(store_host.port()).to_be_bytes());
    push_hex(out, &physical_offset.to_be_bytes());
}

/// The id of the record at `physical_offset` stored by `store_host`.
pub fn encode(store_host: SocketAddr, physical_offset: i64) -> String {
    let mut out = String::with_capacity(ID_V6_LEN);
    encode_into(store_host, physical_offset, &mut out);
    out
}

/// The store host and physical offset an id names.
pub fn decode(id: &str) -> Result<(SocketAddr, i64), Error> {
    let err = |detail| Error::MessageId { id: id.chars().take(64).collect(), detail };
    let ip_len = match id.len() {
        ID_V4_LEN => 4,
        ID_V6_LEN => 16,
        _ => return Err(err("must be 32 or 56 hex digits")),
    };
    let mut bytes = [0u8; 28];
    let raw = id.as_bytes();
    for (i, byte) in bytes.iter_mut().take(id.len() / 2).enumerate() {
        let hi = hex_value(raw[2 * i]).ok_or_else(|| err("not hexadecimal"))?;
        let lo = hex_value(raw[2 * i + 1]).ok_or_else(|| err("not hexadecimal"))?;
        *byte = (hi << 4) | lo;
    }
    let ip = if ip_len == 4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&bytes[..16]);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    let mut port = [0u8; 4];
    port.copy_from_slice(&bytes[ip_len..ip_len + 4]);
    let port = u16::try_from(i32::from_be_bytes(port)).map_err(|_| err("port out of range"))?;
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&bytes[ip_len + 4..ip_len + 12]);
    Ok((SocketAddr::new(ip, port), i64::from_be_bytes(offset)))
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::XorShift;

    #[test]
    fn golden_ids_from_the_spec() {
        let host: SocketAddr = "192.168.0.1:10911".parse().expect("address");
        assert_eq!(encode(host, 0), "C0A8000100002A9F0000000000000000");
        assert_eq!(encode(host, 190), "C0A8000100002A9F00000000000000BE");
        assert_eq!(decode("C0A8000100002A9F00000000000000BE"), Ok((host, 190)));
        assert_eq!(decode("c0a8000100002a9f00000000000000be"), Ok((host, 190)));
    }

    #[test]
    fn ipv6_and_comma_joined_ids() {
        let host: SocketAddr = "[2001:db8::1]:10911".parse().expect("address");
        let id = encode(host, i64::MAX);
        assert_eq!(id.len(), ID_V6_LEN);
        assert_eq!(id, "20010DB800000000000000000000000100002A9F7FFFFFFFFFFFFFFF");
        assert_eq!(decode(&id), Ok((host, i64::MAX)));
        let mut joined = String::new();
        let v4: SocketAddr = "10.0.0.1:1".parse().expect("address");
        for offset in [0, 100] {
            if !joined.is_empty() {
                joined.push(',');
            }
            encode_into(v4, offset, &mut joined);
        }
        assert_eq!(joined, "0A000001000000010000000000000000,0A000001000000010000000000000064");
    }

    #[test]
    fn malformed_ids_are_errors() {
        for bad in [
            "",
            "C0A8",
            "G0A8000100002A9F0000000000000000",
            "C0A8000100002A9F00000000000000é",
            "C0A80001FFFFFFFF0000000000000000",
        ] {
            assert!(matches!(decode(bad), Err(Error::MessageId { .. })), "{bad}");
        }
    }

    #[test]
    fn pseudo_random_ids_never_panic() {
        let mut rng = XorShift(5);
        for _ in 0..3000 {
            let input = rng.mutate(b"C0A8000100002A9F00000000000000BE");
            if let Ok(text) = std::str::from_utf8(&input) {
                if let Ok((host, offset)) = decode(text) {
                    assert!(encode(host, offset).eq_ignore_ascii_case(text));
                }
            }
        }
    }
}
