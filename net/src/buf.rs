//! The output buffers encoders write into.
//!
//! Owns: one small trait, [`OutBuf`], implemented for `Vec<u8>` and `BytesMut`, so every
//! encoder appends straight into the caller's buffer. The broker batches many responses
//! into one write; encoding each into a temporary and copying it over would double the
//! memory traffic of the hot path.
//!
//! Invariants: encoders only append, except that they may overwrite bytes they wrote
//! themselves (length fields patched once the length is known) and truncate back to
//! where they started when they fail, so a failed encode leaves the buffer as it was.

use bytes::BytesMut;

/// An append-only byte buffer with back-patching.
pub trait OutBuf {
    /// Bytes written so far.
    fn position(&self) -> usize;
    fn put(&mut self, bytes: &[u8]);
    fn put_byte(&mut self, byte: u8);
    /// Overwrites `bytes.len()` bytes at `at`, which must already have been written.
    fn patch(&mut self, at: usize, bytes: &[u8]);
    fn truncate_to(&mut self, len: usize);
    fn reserve_more(&mut self, additional: usize);
}

impl OutBuf for Vec<u8> {
    fn position(&self) -> usize {
        self.len()
    }
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn put_byte(&mut self, byte: u8) {
        self.push(byte);
    }
    fn patch(&mut self, at: usize, bytes: &[u8]) {
        self[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn truncate_to(&mut self, len: usize) {
        self.truncate(len);
    }
    fn reserve_more(&mut self, additional: usize) {
        self.reserve(additional);
    }
}

impl OutBuf for BytesMut {
    fn position(&self) -> usize {
        self.len()
    }
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn put_byte(&mut self, byte: u8) {
        self.extend_from_slice(&[byte]);
    }
    fn patch(&mut self, at: usize, bytes: &[u8]) {
        self[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn truncate_to(&mut self, len: usize) {
        self.truncate(len);
    }
    fn reserve_more(&mut self, additional: usize) {
        self.reserve(additional);
    }
}
