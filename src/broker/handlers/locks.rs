//! Queue locks for orderly consumption, as requests: LOCK_BATCH_MQ (41) and
//! UNLOCK_BATCH_MQ (42, may arrive oneway).
//!
//! An orderly push consumer locks the queues it is about to consume, renews the locks
//! every 20 s and releases them on rebalance and shutdown; the answer to a lock request
//! lists the queues the client now holds.
//!
//! Runs on the shard's executor. Deliberately not here: the lock rules
//! (`state::locks`), sweeping lapsed locks (`tasks::housekeeping`), and forwarding locks
//! to replicas (`onlyThisBroker`: there is one broker per shard).

use rockshard_net::body::{self, LockBatchRequestBody, LockBatchResponseBody, UnlockBatchRequestBody};
use rockshard_net::code::response;
use rockshard_net::RemotingCommand;

use super::answer::{reply, success, success_with_body};
use crate::broker::ops::Shard;

/// LOCK_BATCH_MQ (41).
pub fn lock_batch(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let body: LockBatchRequestBody = match body::from_json(&req.body) {
        Ok(b) => b,
        Err(e) => return reply(req, response::SYSTEM_ERROR, format!("lock body: {e}")),
    };
    let held = shard.lock_queues(&body.consumer_group, &body.client_id, &body.mq_set);
    match body::to_json(&LockBatchResponseBody { lock_ok_mq_set: held }) {
        Ok(bytes) => success_with_body(req, bytes),
        Err(e) => reply(req, response::SYSTEM_ERROR, e.to_string()),
    }
}

/// UNLOCK_BATCH_MQ (42).
pub fn unlock_batch(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let body: UnlockBatchRequestBody = match body::from_json(&req.body) {
        Ok(b) => b,
        Err(e) => return reply(req, response::SYSTEM_ERROR, format!("unlock body: {e}")),
    };
    shard.unlock_queues(&body.consumer_group, &body.client_id, &body.mq_set);
    success(req)
}
