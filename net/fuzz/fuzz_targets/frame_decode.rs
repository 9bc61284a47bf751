//! Fuzz target: arbitrary bytes as a TCP stream into the frame decoder.
//!
//! Decodes frames until the decoder asks for more bytes or reports an error, exactly as
//! a connection's read loop would. Every decoded command is also run through the typed
//! header decoders and re-encoded; a command that encodes must decode back to itself.
//! The property under test: no input panics, loops forever or allocates beyond the
//! input's size.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rockshard_net::headers::{self, CommandHeader};
use rockshard_net::{decode_frame, frame};

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(cmd)) = decode_frame(&mut buf) {
        let _ = headers::decode_send_message_header(&cmd.ext_fields);
        let _ = headers::PullMessageRequestHeader::decode(&cmd.ext_fields);
        let _ = headers::RegisterBrokerRequestHeader::decode(&cmd.ext_fields);
        if let Ok(again) = frame::encode_frame_to_vec(&cmd) {
            let back = decode_frame(&mut BytesMut::from(&again[..]));
            assert_eq!(back, Ok(Some(cmd)));
        }
    }
});
