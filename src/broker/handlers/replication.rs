//! The replicated group's requests: RAFT_MESSAGES (oneway, a batch of Raft messages from
//! the same shard on another node of the group) and RAFT_STATUS (this shard's Raft view,
//! for `rockshard admin cluster status` and tests). Both are Rockshard's own codes
//! (net's `rockshard` module).
//!
//! A broker that is not part of a replicated group answers REQUEST_CODE_NOT_SUPPORTED
//! with a remark saying so; undecodable Raft messages are dropped with a WARN (Raft
//! resends what matters).
//!
//! Runs on the shard's executor. Deliberately not here: the replica and what it applies
//! (`ops::replication`), and sending Raft messages (`tasks::raft_links`).

use rockshard_net::code::response;
use rockshard_net::RemotingCommand;
use tracing::warn;

use super::answer::{reply, success_with_body};
use crate::broker::ops::Shard;

/// What a broker outside any replicated group answers to the Raft codes.
fn not_replicated(req: &RemotingCommand) -> Option<RemotingCommand> {
    reply(req, response::REQUEST_CODE_NOT_SUPPORTED, "this broker is not part of a replicated group")
}

/// RAFT_MESSAGES: hands the messages to the replica; never answered (oneway).
pub fn raft_messages(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    if !shard.is_replicated() || shard.config().replication.is_none() {
        return not_replicated(req);
    }
    match rockshard_raft::wire::decode(&req.body) {
        Ok(msgs) => {
            shard.step_raft(msgs);
        }
        Err(e) => warn!(shard = shard.id(), error = %e, "undecodable raft messages dropped"),
    }
    None
}

/// RAFT_STATUS: the replica's status and who the nodes are, as JSON.
pub fn raft_status(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let Some(body) = shard.raft_status_body() else { return not_replicated(req) };
    let json = serde_json::to_vec(&body).expect("status serializes");
    success_with_body(req, json)
}
