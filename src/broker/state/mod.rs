//! Pure state tables of a shard (being moved here).

pub mod groups;
pub mod locks;
pub mod offsets;
