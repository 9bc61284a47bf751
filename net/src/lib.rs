//! The Apache RocketMQ remoting codec, as pure functions over bytes.
//!
//! Owns: the byte layouts RocketMQ clients and brokers exchange — frames, the JSON and
//! ROCKETMQ binary header encodings, request/response codes, the stored-message record
//! (the format of CommitLog records and of pull-response bodies), message properties and
//! the batch body.
//!
//! Invariants: nothing here performs I/O, spawns tasks or reads clocks. Decoders never
//! panic on any input (each has a fuzz target); "not enough bytes yet" is `Ok(None)`, a
//! malformed or over-limit input is an [`Error`]. Encoders produce exactly the bytes the
//! layouts drawn beside them describe, and golden-byte tests pin them.
//!
//! Map: a connection's read loop calls [`decode_frame`] (module `frame`), which picks
//! `json` or `binary` for the header and yields a [`RemotingCommand`] (`command`) whose
//! body is a slice of the read buffer. Handlers view its ext fields through `headers`,
//! its body through `batch` (batch sends), `body` (JSON bodies, read with `lenient`'s
//! fastjson-like rules) or `stored` (records); numbers live in `code`, offset message
//! ids in `msgid`; the codes and bodies Rockshard adds (Raft transport and status) in
//! `rockshard`. Responses are built with [`RemotingCommand::response_to`] and
//! appended to the connection's write buffer with [`encode_frame`], or
//! [`encode_frame_head`] when the body is sent separately.
//!
//! Deliberately not here: sockets (the broker owns them), storage positions (the storage
//! crate), and any policy about what a broker does with a request.

pub mod batch;
pub mod binary;
pub mod body;
pub mod buf;
pub mod code;
pub mod command;
pub mod error;
pub mod frame;
pub mod headers;
pub mod json;
pub mod lenient;
pub mod limits;
pub mod msgid;
pub mod properties;
pub mod rockshard;
pub mod stored;
#[cfg(test)]
mod test_util;

pub use buf::OutBuf;
pub use code::{LanguageCode, SerializeType};
pub use command::{ExtFields, RemotingCommand};
pub use error::Error;
pub use frame::{decode_frame, encode_frame, encode_frame_head};
