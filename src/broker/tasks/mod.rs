//! Background tasks of a shard (being moved here).

pub mod register;
