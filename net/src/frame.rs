//! The remoting frame: how commands are cut out of, and laid onto, a TCP byte stream
//! (REMOTING.md §1.2).
//!
//! ```text
//!  0        4                8                     8+H                 4+frameLength
//!  +--------+----------------+---------------------+-------------------+
//!  | frame  | ser  | header  | header              | body              |
//!  | Length | Type | Length  | (JSON or ROCKETMQ)  | (opaque bytes)    |
//!  +--------+------+---------+---------------------+-------------------+
//!   i32 BE   u8     u24 BE     H bytes               B bytes
//!
//!  frameLength = 4 + H + B        (does not count its own 4 bytes)
//!  serType     = 0 JSON, 1 ROCKETMQ (high byte of the header-length word)
//!  B           = frameLength - 4 - H  (there is no body-length field)
//! ```
//!
//! A frame may be at most [`FRAME_SIZE_MAX_BYTES`] long counting its length prefix, as
//! Java's `NettyDecoder` and the Rust client enforce.
//!
//! Invariants: [`decode_frame`] returns `Ok(None)` when, and only when, the buffer holds
//! a valid-so-far prefix of a frame; it consumes exactly one frame when it returns a
//! command; it never panics. After an `Err` the stream has lost its framing and the
//! connection must be closed (the buffer's contents are then unspecified). Encoders
//! append one whole frame or, on error, nothing. The decoded body is a slice of the
//! received buffer, not a copy.
//!
//! [`ResponseWriter`] writes an answer frame field by field, for the one answer sent per
//! message (the send answer): the same bytes as [`encode_frame`] of the equivalent
//! command, without building the command first.
//!
//! Deliberately not here: reading the socket, and deciding what to do with a command.

use bytes::{Bytes, BytesMut};

use crate::buf::OutBuf;
use crate::code::{flag, version, LanguageCode, SerializeType};
use crate::command::RemotingCommand;
use crate::limits::{FRAME_PREFIX_BYTES, FRAME_SIZE_MAX_BYTES, HEADER_KEY_LEN_MAX_BYTES, HEADER_SIZE_MAX_BYTES};
use crate::{binary, json, Error};

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;
const _: () = assert!(FRAME_PREFIX_BYTES == LENGTH_PREFIX_BYTES + 4, "length prefix, then the header-length word");
const _: () = assert!(HEADER_SIZE_MAX_BYTES < FRAME_SIZE_MAX_BYTES, "any legal header fits a frame");

/// The total size of the frame at the start of `buf` (length prefix included) once its
/// prefix has arrived, so a reader can reserve room for it. `Ok(None)`: fewer than 4
/// bytes. Over-limit and impossible lengths are errors.
pub fn peek_frame_len(buf: &[u8]) -> Result<Option<usize>, Error> {
    let Some(prefix) = buf.get(..LENGTH_PREFIX_BYTES) else { return Ok(None) };
    let mut word = [0u8; 4];
    word.copy_from_slice(prefix);
    let frame_len = u32::from_be_bytes(word) as usize;
    let total = frame_len.saturating_add(LENGTH_PREFIX_BYTES);
    if total > FRAME_SIZE_MAX_BYTES {
        return Err(Error::FrameTooLarge { len: total, max: FRAME_SIZE_MAX_BYTES });
    }
    if frame_len < 4 {
        return Err(Error::FrameMalformed { detail: "frame length leaves no room for the header-length word" });
    }
    Ok(Some(total))
}

/// Cuts the next command out of `buf`. `Ok(None)`: not a whole frame yet (nothing is
/// consumed). The command's body shares `buf`'s memory.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<RemotingCommand>, Error> {
    let Some(total) = peek_frame_len(buf)? else { return Ok(None) };
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    let payload = frame.split_off(LENGTH_PREFIX_BYTES);
    decode_payload(payload).map(Some)
}

/// Decodes a frame without its length prefix: header-length word, header, body.
pub fn decode_payload(payload: Bytes) -> Result<RemotingCommand, Error> {
    let Some(mark) = payload.get(..4) else {
        return Err(Error::FrameMalformed { detail: "frame length leaves no room for the header-length word" });
    };
    let serialize_code = mark[0];
    let header_len = (usize::from(mark[1]) << 16) | (usize::from(mark[2]) << 8) | usize::from(mark[3]);
    let header_end = 4 + header_len;
    let Some(header) = payload.get(4..header_end) else {
        return Err(Error::FrameMalformed { detail: "header length exceeds the frame" });
    };
    let mut cmd = match SerializeType::from_code(serialize_code) {
        Some(SerializeType::Json) => json::decode_header(header)?,
        Some(SerializeType::RocketMq) => binary::decode_header(header)?,
        None => return Err(Error::SerializeType { code: serialize_code }),
    };
    cmd.body = payload.slice(header_end..);
    Ok(cmd)
}

/// Appends the whole frame of `cmd` (header in `cmd.serialize_type`, then `cmd.body`)
/// and returns its length. Nothing is appended on error.
pub fn encode_frame<B: OutBuf>(cmd: &RemotingCommand, out: &mut B) -> Result<usize, Error> {
    let head = encode_frame_head(cmd, cmd.body.len(), out)?;
    out.put(&cmd.body);
    Ok(head + cmd.body.len())
}

/// Appends everything of the frame of `cmd` except its body, announcing a body of
/// `body_len` bytes that the caller must send right after (typically with a vectored
/// write straight from the CommitLog, so a pull response's records are never copied).
/// `cmd.body` is ignored. Returns the bytes appended; nothing is appended on error.
pub fn encode_frame_head<B: OutBuf>(cmd: &RemotingCommand, body_len: usize, out: &mut B) -> Result<usize, Error> {
    let start = out.position();
    out.put(&[0u8; FRAME_PREFIX_BYTES]);
    let header_len = match cmd.serialize_type {
        SerializeType::Json => {
            json::encode_header(cmd, out);
            out.position() - start - FRAME_PREFIX_BYTES
        }
        SerializeType::RocketMq => match binary::encode_header(cmd, out) {
            Ok(len) => len,
            Err(e) => {
                out.truncate_to(start);
                return Err(e);
            }
        },
    };
    let total = FRAME_PREFIX_BYTES.saturating_add(header_len).saturating_add(body_len);
    if header_len > HEADER_SIZE_MAX_BYTES || total > FRAME_SIZE_MAX_BYTES {
        out.truncate_to(start);
        return Err(Error::FrameTooLarge { len: total, max: FRAME_SIZE_MAX_BYTES });
    }
    // Both casts are exact: total <= 16 MiB and header_len < 2^24.
    let frame_len = (total - LENGTH_PREFIX_BYTES) as u32;
    let mark = (u32::from(cmd.serialize_type.code()) << 24) | header_len as u32;
    out.patch(start, &frame_len.to_be_bytes());
    out.patch(start + 4, &mark.to_be_bytes());
    Ok(FRAME_PREFIX_BYTES + header_len)
}

/// Writes one answer frame straight into an output buffer, ext field by ext field, for
/// an answer sent so often that building a [`RemotingCommand`] and its ext map first
/// would cost more than encoding it (the send answer, once per message).
///
/// The bytes are exactly those [`encode_frame`] writes for
/// `RemotingCommand::response_to(request, code, None)` with the same ext fields inserted
/// in the same order and no body (the JSON and binary encoders share their pieces with
/// it, and a test compares both encodings byte for byte). Keys must be distinct, as in
/// the map. Like every encoder it appends one whole frame or nothing: [`finish`] patches
/// the lengths, and a writer dropped unfinished, or one whose frame cannot be encoded,
/// takes its bytes back out.
///
/// [`finish`]: ResponseWriter::finish
pub struct ResponseWriter<'a, B: OutBuf> {
    out: &'a mut B,
    start: usize,
    serialize_type: SerializeType,
    /// Ext fields written so far.
    ext_count: usize,
    /// Binary: where the ext-length word is, patched at the end.
    ext_len_at: usize,
    /// Why the binary header cannot carry what was written; reported by `finish`.
    error: Option<Error>,
    finished: bool,
}

impl<'a, B: OutBuf> ResponseWriter<'a, B> {
    /// Starts the answer to `request` with response code `code`, in the request's
    /// header encoding.
    pub fn begin(out: &'a mut B, request: &RemotingCommand, code: i32) -> ResponseWriter<'a, B> {
        let start = out.position();
        out.put(&[0u8; FRAME_PREFIX_BYTES]);
        let serialize_type = request.serialize_type;
        let (language, version, flag) = (LanguageCode::Rust, version::CURRENT, flag::RESPONSE);
        let mut error = None;
        let mut ext_len_at = 0;
        match serialize_type {
            SerializeType::Json => json::put_head(out, code, language, version, request.opaque, flag, None),
            SerializeType::RocketMq => {
                let code = i16::try_from(code).unwrap_or_else(|_| {
                    error = Some(binary::range_error("code", i64::from(code)));
                    0
                });
                // Exact: our own version is far below i16::MAX.
                binary::put_fixed(out, code, language, version as i16, request.opaque, flag, "");
                ext_len_at = out.position();
                out.put(&[0u8; 4]);
            }
        }
        ResponseWriter { out, start, serialize_type, ext_count: 0, ext_len_at, error, finished: false }
    }

    /// Adds an ext field.
    pub fn ext_str(&mut self, key: &str, value: &str) {
        match self.serialize_type {
            SerializeType::Json => json::put_ext_entry(self.out, self.ext_count == 0, key, value),
            SerializeType::RocketMq => {
                if key.len() > HEADER_KEY_LEN_MAX_BYTES {
                    self.error.get_or_insert(binary::range_error("ext key length", key.len() as i64));
                } else if i32::try_from(value.len()).is_err() {
                    self.error.get_or_insert(binary::range_error("ext value length", value.len() as i64));
                } else {
                    binary::put_ext_entry(self.out, key, value);
                }
            }
        }
        self.ext_count += 1;
    }

    /// Adds an ext field holding a decimal number, as Java's `toString` writes it.
    pub fn ext_i64(&mut self, key: &str, value: i64) {
        let mut buf = [0u8; crate::json::DECIMAL_I64_MAX_BYTES];
        let at = crate::json::decimal(value, &mut buf);
        // ASCII digits and a minus sign.
        self.ext_str(key, std::str::from_utf8(&buf[at..]).unwrap_or_default());
    }

    /// Closes the frame and returns its size, or takes everything back out and says why
    /// it cannot be encoded.
    pub fn finish(mut self) -> Result<usize, Error> {
        self.finished = true;
        let result = self.close();
        if result.is_err() {
            self.out.truncate_to(self.start);
        }
        result
    }

    fn close(&mut self) -> Result<usize, Error> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        match self.serialize_type {
            SerializeType::Json => json::put_tail(self.out),
            SerializeType::RocketMq => {
                let ext_len = self.out.position() - self.ext_len_at - 4;
                let ext_len = i32::try_from(ext_len).map_err(|_| binary::range_error("ext length", ext_len as i64))?;
                self.out.patch(self.ext_len_at, &ext_len.to_be_bytes());
            }
        }
        let total = self.out.position() - self.start;
        let header_len = total - FRAME_PREFIX_BYTES;
        if header_len > HEADER_SIZE_MAX_BYTES || total > FRAME_SIZE_MAX_BYTES {
            return Err(Error::FrameTooLarge { len: total, max: FRAME_SIZE_MAX_BYTES });
        }
        // Both casts are exact: total <= 16 MiB and header_len < 2^24.
        let frame_len = (total - LENGTH_PREFIX_BYTES) as u32;
        let mark = (u32::from(self.serialize_type.code()) << 24) | header_len as u32;
        self.out.patch(self.start, &frame_len.to_be_bytes());
        self.out.patch(self.start + 4, &mark.to_be_bytes());
        Ok(total)
    }
}

impl<B: OutBuf> Drop for ResponseWriter<'_, B> {
    fn drop(&mut self) {
        if !self.finished {
            self.out.truncate_to(self.start);
        }
    }
}

/// Convenience for tests and tools: the frame of `cmd` in a fresh vector.
pub fn encode_frame_to_vec(cmd: &RemotingCommand) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(256 + cmd.body.len());
    encode_frame(cmd, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::code::{request, response, LanguageCode};
    use crate::command::ExtFields;
    use crate::test_util::XorShift;

    /// REMOTING.md §1.4, JSON form (Java's member order).
    fn spec_json_frame() -> Vec<u8> {
        let header = br#"{"code":105,"extFields":{"topic":"T"},"flag":0,"language":"JAVA","opaque":1,"serializeTypeCurrentRPC":"JSON","version":479}"#;
        assert_eq!(header.len(), 123);
        let mut f = vec![0x00, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x00, 0x7b];
        f.extend_from_slice(header);
        f
    }

    /// REMOTING.md §1.4, binary form.
    const SPEC_BINARY_FRAME: [u8; 41] = [
        0x00, 0x00, 0x00, 0x25, 0x01, 0x00, 0x00, 0x21, 0x00, 0x69, 0x00, 0x01, 0xdf, 0x00, 0x00, 0x00, 0x01, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x05, 0x74, 0x6f, 0x70, 0x69, 0x63,
        0x00, 0x00, 0x00, 0x01, 0x54,
    ];

    fn route_request(serialize_type: SerializeType) -> RemotingCommand {
        let mut cmd =
            RemotingCommand::new_request(request::GET_ROUTEINFO_BY_TOPIC, [("topic", "T")].into_iter().collect())
                .with_opaque(1)
                .with_serialize_type(serialize_type);
        cmd.language = LanguageCode::Java;
        cmd
    }

    #[test]
    fn decodes_the_spec_json_frame() {
        let mut buf = BytesMut::from(&spec_json_frame()[..]);
        let cmd = decode_frame(&mut buf).expect("valid").expect("whole frame");
        assert_eq!(cmd, route_request(SerializeType::Json));
        assert!(buf.is_empty());
    }

    #[test]
    fn golden_json_frame_of_our_encoder() {
        let frame = encode_frame_to_vec(&route_request(SerializeType::Json)).expect("encodes");
        let header = br#"{"code":105,"language":"JAVA","version":479,"opaque":1,"flag":0,"extFields":{"topic":"T"},"serializeTypeCurrentRPC":"JSON"}"#;
        let mut expected = vec![0x00, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x00, 0x7b];
        expected.extend_from_slice(header);
        assert_eq!(frame, expected);
    }

    #[test]
    fn binary_frame_matches_the_spec_byte_for_byte() {
        let frame = encode_frame_to_vec(&route_request(SerializeType::RocketMq)).expect("encodes");
        assert_eq!(frame, SPEC_BINARY_FRAME);
        let mut buf = BytesMut::from(&SPEC_BINARY_FRAME[..]);
        assert_eq!(decode_frame(&mut buf), Ok(Some(route_request(SerializeType::RocketMq))));
    }

    #[test]
    fn body_round_trips_and_frames_follow_each_other() {
        let req = route_request(SerializeType::Json);
        let resp = RemotingCommand::response_to(&req, response::SUCCESS, Some("ok".into()))
            .with_body(Bytes::from_static(b"{\"brokerDatas\":[]}"));
        let mut bin = resp.clone().with_serialize_type(SerializeType::RocketMq);
        bin.ext_fields = ExtFields::from_iter([("a", "1")]);
        let mut out = BytesMut::new();
        encode_frame(&resp, &mut out).expect("encodes");
        encode_frame(&bin, &mut out).expect("encodes");
        out.extend_from_slice(&[0, 0]);
        assert_eq!(decode_frame(&mut out), Ok(Some(resp)));
        assert_eq!(decode_frame(&mut out), Ok(Some(bin)));
        assert_eq!(decode_frame(&mut out), Ok(None));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn frame_head_announces_a_body_sent_separately() {
        let cmd = route_request(SerializeType::RocketMq).with_body(Bytes::from_static(b"ignored"));
        let mut out = Vec::new();
        let head = encode_frame_head(&cmd, 5, &mut out).expect("encodes");
        assert_eq!(head, out.len());
        out.extend_from_slice(b"hello");
        let mut buf = BytesMut::from(&out[..]);
        let back = decode_frame(&mut buf).expect("valid").expect("whole");
        assert_eq!(&back.body[..], b"hello");
    }

    #[test]
    fn every_prefix_of_a_valid_frame_is_not_enough_bytes() {
        let mut frames = vec![spec_json_frame(), SPEC_BINARY_FRAME.to_vec()];
        let with_body = route_request(SerializeType::Json).with_body(Bytes::from_static(b"body bytes"));
        frames.push(encode_frame_to_vec(&with_body).expect("encodes"));
        for frame in frames {
            for cut in 0..frame.len() {
                let mut buf = BytesMut::from(&frame[..cut]);
                assert_eq!(decode_frame(&mut buf), Ok(None), "prefix of {cut} bytes");
                assert_eq!(buf.len(), cut, "nothing consumed");
            }
            let mut buf = BytesMut::from(&frame[..]);
            assert!(matches!(decode_frame(&mut buf), Ok(Some(_))));
        }
    }

    #[test]
    fn over_limit_and_malformed_frames_are_errors() {
        let too_big = ((FRAME_SIZE_MAX_BYTES - 3) as u32).to_be_bytes();
        assert_eq!(
            decode_frame(&mut BytesMut::from(&too_big[..])),
            Err(Error::FrameTooLarge { len: FRAME_SIZE_MAX_BYTES + 1, max: FRAME_SIZE_MAX_BYTES })
        );
        let max_ok = ((FRAME_SIZE_MAX_BYTES - 4) as u32).to_be_bytes();
        assert_eq!(decode_frame(&mut BytesMut::from(&max_ok[..])), Ok(None));
        assert_eq!(peek_frame_len(&max_ok), Ok(Some(FRAME_SIZE_MAX_BYTES)));
        assert_eq!(peek_frame_len(&max_ok[..3]), Ok(None));
        assert!(decode_frame(&mut BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFF][..])).is_err());
        assert!(matches!(
            decode_frame(&mut BytesMut::from(&[0, 0, 0, 3, 0, 0, 0][..])),
            Err(Error::FrameMalformed { .. })
        ));
        // Header length 5 in a frame with room for 1.
        assert!(matches!(
            decode_frame(&mut BytesMut::from(&[0, 0, 0, 5, 0, 0, 0, 5, b'{'][..])),
            Err(Error::FrameMalformed { .. })
        ));
        assert_eq!(
            decode_frame(&mut BytesMut::from(&[0, 0, 0, 6, 2, 0, 0, 2, b'{', b'}'][..])),
            Err(Error::SerializeType { code: 2 })
        );
        assert!(matches!(
            decode_frame(&mut BytesMut::from(&[0, 0, 0, 6, 0, 0, 0, 2, b'{', b'x'][..])),
            Err(Error::HeaderJson { .. })
        ));
        assert!(matches!(
            decode_frame(&mut BytesMut::from(&[0, 0, 0, 6, 1, 0, 0, 2, 0, 1][..])),
            Err(Error::HeaderBinary { .. })
        ));
        // An empty JSON object header with a body is fine.
        let cmd = decode_frame(&mut BytesMut::from(&[0, 0, 0, 7, 0, 0, 0, 2, b'{', b'}', b'!'][..]));
        assert_eq!(cmd.expect("valid").expect("whole").body, Bytes::from_static(b"!"));
    }

    #[test]
    fn encoding_refuses_over_limit_frames_without_writing() {
        let cmd = route_request(SerializeType::Json);
        let mut out = vec![9u8];
        assert!(matches!(encode_frame_head(&cmd, FRAME_SIZE_MAX_BYTES, &mut out), Err(Error::FrameTooLarge { .. })));
        assert_eq!(out, [9]);
        let mut pop = route_request(SerializeType::RocketMq);
        pop.code = request::POP_MESSAGE;
        assert!(encode_frame(&pop, &mut out).is_err());
        assert_eq!(out, [9]);
    }

    /// Decodes frames until the input runs out or errs, as the fuzz target does.
    fn drain(input: &[u8]) -> usize {
        let mut buf = BytesMut::from(input);
        let mut frames = 0usize;
        while let Ok(Some(cmd)) = decode_frame(&mut buf) {
            frames += 1;
            // Whatever decodes must encode again (or be refused cleanly) and decode to the same command.
            if let Ok(again) = encode_frame_to_vec(&cmd) {
                let back = decode_frame(&mut BytesMut::from(&again[..]));
                assert_eq!(back, Ok(Some(cmd)));
            }
            assert!(frames <= input.len());
        }
        frames
    }

    #[test]
    fn pseudo_random_inputs_never_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut send = RemotingCommand::new_request(
            request::SEND_MESSAGE_V2,
            [("a", "PG"), ("b", "TopicTest"), ("i", "UNIQ_KEY\u{1}K\u{2}"), ("m", "false")].into_iter().collect(),
        )
        .with_body(Bytes::from_static(b"hello"));
        send.remark = Some("r\"\\".into());
        let seeds = [
            spec_json_frame(),
            SPEC_BINARY_FRAME.to_vec(),
            encode_frame_to_vec(&send).expect("encodes"),
            encode_frame_to_vec(&send.with_serialize_type(SerializeType::RocketMq)).expect("encodes"),
        ];
        let mut decoded = 0;
        for i in 0..5000 {
            let input: Vec<u8> = if i % 2 == 0 {
                // Mutate a valid frame: flip a few bytes, maybe truncate or extend.
                let seed = rng.below(seeds.len());
                rng.mutate(&seeds[seed])
            } else {
                // Random bytes with a plausible small length prefix.
                let len = rng.below(64);
                let mut f: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if f.len() >= 8 && rng.below(2) == 0 {
                    f[..4].copy_from_slice(&((len - 4) as u32).to_be_bytes());
                    f[4] = rng.below(2) as u8;
                    f[5] = 0;
                    f[6] = 0;
                    f[7] = rng.below(len - 7) as u8;
                }
                f
            };
            decoded += drain(&input);
        }
        // The mutations must leave many frames valid, or this test exercises nothing
        // past the header checks.
        assert!(decoded > 200, "only {decoded} frames decoded");
    }

    #[test]
    fn response_writer_writes_what_encode_frame_writes() {
        for serialize_type in [SerializeType::Json, SerializeType::RocketMq] {
            let request = route_request(serialize_type).with_opaque(-42);
            for fields in [
                &[][..],
                &[("msgId", "C0A8000100002A9F0000000000000000"), ("queueId", "3"), ("queueOffset", "-9")][..],
                &[("k\"\\", "v\u{1}é\n"), ("", ""), ("transactionId", "7F00000100002A9F")][..],
            ] {
                let mut expected = RemotingCommand::response_to(&request, response::SUCCESS, None);
                let mut out = BytesMut::from(&b"before"[..]);
                let mut w = ResponseWriter::begin(&mut out, &request, response::SUCCESS);
                for (key, value) in fields {
                    expected.ext_fields.insert(key, value);
                    match value.parse::<i64>() {
                        Ok(n) => w.ext_i64(key, n),
                        Err(_) => w.ext_str(key, value),
                    }
                }
                let len = w.finish().expect("encodes");
                let mut want = b"before".to_vec();
                encode_frame(&expected, &mut want).expect("encodes");
                assert_eq!(&out[..], &want[..], "{serialize_type:?} {fields:?}");
                assert_eq!(len, want.len() - 6);
            }
        }
    }

    #[test]
    fn response_writer_takes_back_what_it_cannot_finish() {
        let request = route_request(SerializeType::RocketMq);
        let mut out = vec![1u8, 2];
        let mut w = ResponseWriter::begin(&mut out, &request, request::POP_MESSAGE);
        w.ext_str("k", "v");
        assert!(matches!(w.finish(), Err(Error::HeaderFieldRange { field: "code", .. })));
        assert_eq!(out, [1, 2]);
        let mut w = ResponseWriter::begin(&mut out, &request, response::SUCCESS);
        w.ext_str(&"k".repeat(HEADER_KEY_LEN_MAX_BYTES + 1), "v");
        assert!(w.finish().is_err());
        assert_eq!(out, [1, 2]);
        let mut w = ResponseWriter::begin(&mut out, &route_request(SerializeType::Json), response::SUCCESS);
        w.ext_i64("queueId", 1);
        drop(w);
        assert_eq!(out, [1, 2]);
    }
}
