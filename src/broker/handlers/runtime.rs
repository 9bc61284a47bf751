//! What a shard tells about itself, as requests: GET_BROKER_RUNTIME_INFO (28), a KVTable
//! of versions, CommitLog positions and counters (Java's key names where the meaning is
//! the same), and GET_ALL_DELAY_OFFSET (45), delayed-delivery progress per level in
//! `delayOffset.json`'s form.
//!
//! Each answer covers this shard only: a shard is a broker of its own in routes, so
//! admin tools ask every shard. Runs on the shard's executor.
//!
//! Deliberately not here: broker configuration changes over the wire
//! (UPDATE_BROKER_CONFIG is not supported: the configuration is a file and flags).

use rockshard_net::body::{self, KVTable};
use rockshard_net::RemotingCommand;

use super::answer::{encode_failed, success_with_body};
use crate::broker::ops::Shard;

/// GET_BROKER_RUNTIME_INFO (28). Counters are since this shard's store was opened.
pub fn runtime_info(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    match body::to_json(&KVTable { table: shard.runtime_info() }) {
        Ok(json) => success_with_body(req, json),
        Err(e) => encode_failed(req, e),
    }
}

/// GET_ALL_DELAY_OFFSET (45).
pub fn delay_offsets(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    success_with_body(req, shard.delay_offsets_json())
}
