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
}
