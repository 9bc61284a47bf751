//! Raft messages on the wire: a batch of messages for one frame (the broker's
//! RAFT_MESSAGES request body between shard i of two nodes).
//!
//! ```text
//!  0     4   COUNT   u32 BE, number of messages (<= WIRE_MESSAGES_MAX)
//!  then COUNT times:
//!        4   LEN     u32 BE, bytes of the message (<= WIRE_MESSAGE_MAX_BYTES)
//!        LEN MESSAGE raft-rs eraftpb.Message, protobuf
//! ```
//!
//! Pure code: no I/O. `decode` never panics and refuses counts and lengths past the
//! limits before allocating for them, and trailing bytes.

use protobuf::Message as _;
use raft::eraftpb::Message;

use crate::error::{Error, Result};
use crate::limits::{WIRE_MESSAGES_MAX, WIRE_MESSAGE_MAX_BYTES};

/// Appends the frame body for `msgs` to `out`.
pub fn encode(msgs: &[Message], out: &mut Vec<u8>) {
    assert!(msgs.len() <= WIRE_MESSAGES_MAX, "{} messages in one frame (limit {WIRE_MESSAGES_MAX})", msgs.len());
    out.extend_from_slice(&(msgs.len() as u32).to_be_bytes());
    for m in msgs {
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        m.write_to_vec(out).expect("a raft message always encodes");
        let len = out.len() - len_at - 4;
        out[len_at..len_at + 4].copy_from_slice(&(len as u32).to_be_bytes());
    }
}

pub fn decode(buf: &[u8]) -> Result<Vec<Message>> {
    let bad = |detail: String| Error::decode("raft frame", detail);
    let u32_at = |at: usize| -> Result<usize> {
        let b = buf.get(at..at + 4).ok_or_else(|| bad(format!("{} bytes, need a length at {at}", buf.len())))?;
        Ok(u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
    };
    let count = u32_at(0)?;
    if count > WIRE_MESSAGES_MAX {
        return Err(bad(format!("{count} messages (limit {WIRE_MESSAGES_MAX})")));
    }
    let mut at = 4;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u32_at(at)?;
        if len > WIRE_MESSAGE_MAX_BYTES {
            return Err(bad(format!("message of {len} bytes (limit {WIRE_MESSAGE_MAX_BYTES})")));
        }
        at += 4;
        let body =
            buf.get(at..at + len).ok_or_else(|| bad(format!("message of {len} bytes at {at} runs past the end")))?;
        out.push(Message::parse_from_bytes(body).map_err(|e| bad(e.to_string()))?);
        at += len;
    }
    if at != buf.len() {
        return Err(bad(format!("{} bytes after the last message", buf.len() - at)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    fn append_msg() -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.to = 2;
        m.from = 1;
        m.term = 7;
        m.log_term = 6;
        m.index = 41;
        m.commit = 40;
        let e = Entry { index: 42, term: 7, data: bytes::Bytes::from_static(b"records"), ..Default::default() };
        m.set_entries(vec![e].into());
        m
    }

    #[test]
    fn round_trip() {
        let mut hb = Message::default();
        hb.set_msg_type(MessageType::MsgHeartbeat);
        hb.to = 3;
        hb.from = 1;
        hb.term = 7;
        let msgs = vec![append_msg(), hb];
        let mut buf = Vec::new();
        encode(&msgs, &mut buf);
        assert_eq!(&buf[..4], &[0, 0, 0, 2]);
        assert_eq!(decode(&buf).unwrap(), msgs);
        let mut empty = Vec::new();
        encode(&[], &mut empty);
        assert_eq!(decode(&empty).unwrap(), Vec::<Message>::new());
    }

    #[test]
    fn damaged_frames_are_errors() {
        let mut buf = Vec::new();
        encode(&[append_msg()], &mut buf);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = buf.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        let mut huge = buf.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge).is_err());
        let mut long = buf;
        long[4..8].copy_from_slice(&(WIRE_MESSAGE_MAX_BYTES as u32 + 1).to_be_bytes());
        assert!(decode(&long).is_err());
    }
}
