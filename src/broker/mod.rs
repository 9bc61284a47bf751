//! The broker shard.
