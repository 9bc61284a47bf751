//! The one error type of the codec crate.
//!
//! Every variant says what was being decoded or encoded and what was wrong with it, so a
//! broker can log it and close the offending connection without guessing. Mapping these
//! to RocketMQ response codes happens at the broker boundary, not here.

use thiserror::Error;

/// A malformed, truncated-beyond-repair or over-limit input, or a value that cannot be
/// encoded in the wire format.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// A stored-message record whose MAGICCODE is neither V1, V2 nor BLANK.
    #[error("stored message: unknown magic code {magic:#010x}")]
    RecordMagic { magic: u32 },

    /// A stored-message record whose TOTALSIZE is impossible or disagrees with the sum
    /// of its fields.
    #[error("stored message: total size {total_size} does not match its fields ({detail})")]
    RecordSize { total_size: u32, detail: &'static str },

    /// A field that does not fit its length prefix in the stored format (topic, body,
    /// properties).
    #[error("stored message: {field} is {len} bytes, more than the format allows ({max})")]
    RecordFieldTooLong { field: &'static str, len: usize, max: usize },

    /// A frame whose announced size (length prefix included) exceeds the limit, or a
    /// command too large to encode into one frame.
    #[error("frame: {len} bytes is more than the {max}-byte limit")]
    FrameTooLarge { len: usize, max: usize },

    /// A frame whose length words contradict each other or the bytes present.
    #[error("frame: malformed ({detail})")]
    FrameMalformed { detail: &'static str },

    /// A header-length word whose high byte is neither JSON (0) nor ROCKETMQ (1).
    #[error("frame: unknown header serialize type {code}")]
    SerializeType { code: u8 },

    /// A JSON header that does not parse, or whose fields have impossible types.
    #[error("JSON header: {detail}")]
    HeaderJson { detail: String },

    /// A ROCKETMQ binary header that is truncated, has negative or overrunning lengths,
    /// trailing bytes, or non-UTF-8 strings.
    #[error("binary header: {detail}")]
    HeaderBinary { detail: &'static str },

    /// A header value that the chosen encoding cannot represent (a code above 32767 in
    /// the binary header's 16-bit field, a key longer than an i16 length allows).
    #[error("{encoding} header: {field} = {value} does not fit the format")]
    HeaderFieldRange { encoding: &'static str, field: &'static str, value: i64 },

    /// A typed request/response header lacks a field the protocol requires.
    #[error("{header}: required field {field} is missing")]
    MissingField { header: &'static str, field: &'static str },

    /// A typed header field is present but not a valid value of its type.
    #[error("{header}: field {field} has invalid value {value:?}")]
    InvalidField { header: &'static str, field: &'static str, value: String },

    /// A SEND_BATCH_MESSAGE body whose item at byte `at` is truncated or inconsistent.
    #[error("batch body: item at byte {at}: {detail}")]
    Batch { at: usize, detail: &'static str },

    /// A batch item that cannot be encoded (a length that does not fit its prefix).
    #[error("batch body: {field} is {len} bytes, more than the format allows ({max})")]
    BatchFieldTooLong { field: &'static str, len: usize, max: usize },

    /// A string that is not an offset message id (32 or 56 hex digits).
    #[error("message id {id:?}: {detail}")]
    MessageId { id: String, detail: &'static str },

    /// A JSON body (route data, heartbeat, ...) that does not parse as its type.
    #[error("{body} body: {detail}")]
    BodyJson { body: &'static str, detail: String },
}
