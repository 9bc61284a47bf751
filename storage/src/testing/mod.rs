//! Test doubles and test drivers of the storage crate, kept out of its production API:
//! the disk simulator ([`SimDisk`], a disk that loses power and fails on demand) and the
//! fuzzing entry points ([`fuzzing`]).
//!
//! Compiled only for the crate's own tests and for crates that enable the crate's
//! `testing` feature: the storage integration tests (a dev-dependency of the crate on
//! itself), the raft crate's tests (its dev-dependency) and the fuzz crate
//! (`storage/fuzz`). A normal build of the broker does not compile this module.
//!
//! Invariant: nothing outside this module refers to it; the store runs the same code
//! on a `SimDisk` as on the real disk, through the `Disk` trait.
//!
//! Threading: like the store, everything here lives on one thread and is not `Send`.
//! Deliberately not here: fakes of other crates (raft's in-memory log is raft's).

pub mod fuzzing;
mod sim_disk;

pub use sim_disk::{SimDisk, SimFile, SimStats, SimWrite};
