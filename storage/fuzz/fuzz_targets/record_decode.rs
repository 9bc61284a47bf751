//! Fuzz target: arbitrary bytes as a run of stored records (a CommitLog segment, a
//! pull-response body) into `rockshard_net::stored::decode`.
//!
//! The property, in `rockshard_storage::testing::fuzzing::decode_records`: no input panics or
//! reads out of bounds, and every record the decoder accepts re-encodes from its decoded
//! fields to the same bytes (where the fields determine the bytes: a matching body CRC,
//! the V1/V2 topic width encode would pick, ports within u16).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rockshard_storage::testing::fuzzing::decode_records(data));
