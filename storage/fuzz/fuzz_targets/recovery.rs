//! Fuzz target: recovery of a store whose CommitLog segments, ConsumeQueue files and
//! checkpoint hold arbitrary bytes, on an in-memory SimDisk without glommio.
//!
//! The property, in `rockshard_storage::testing::fuzzing::recover_arbitrary`: recovery ends in
//! `Ok` or a clean `Err`, never a panic; and when it succeeds, its report is coherent and
//! a second recovery of the disk it left agrees with it. The input layout (flags, image
//! lengths, images) is drawn in `rockshard_storage::testing::fuzzing::recovery_input`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rockshard_storage::testing::fuzzing::recover_arbitrary(data));
