//! Stored messages, as requests: VIEW_MESSAGE_BY_ID (33), the whole stored record at a
//! CommitLog offset (an offset message id names the shard's address and that offset),
//! and QUERY_MESSAGE (12), which finds nothing: the broker keeps no key index.
//!
//! Runs on the shard's executor, one task per request. Deliberately not here: an index
//! of message keys (QUERY_MESSAGE cannot find by key), and decoding the record (the
//! client does; the bytes are the stored format).

use rockshard_net::code::response;
use rockshard_net::headers::{QueryMessageRequestHeader, QueryMessageResponseHeader, ViewMessageRequestHeader};
use rockshard_net::RemotingCommand;
use rockshard_storage::PhysicalOffset;

use super::answer::{bad_header, reply, success_with_body};
use crate::broker::ops::Shard;

/// VIEW_MESSAGE_BY_ID (33): the whole stored record at `offset`.
pub async fn view_message(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: ViewMessageRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let not_found = |detail: String| {
        reply(req, response::SYSTEM_ERROR, format!("can not find message by the offset, {}: {detail}", h.offset))
    };
    let Ok(at) = u64::try_from(h.offset) else { return not_found("offsets are never negative".into()) };
    match shard.read_message(PhysicalOffset(at)).await {
        Ok(record) => success_with_body(req, record.to_vec()),
        Err(e) => not_found(e.to_string()),
    }
}

/// QUERY_MESSAGE (12): there is no key index to search, so nothing is ever found. The
/// Rust client requires both index fields even on this answer.
pub fn query_message(req: &RemotingCommand) -> Option<RemotingCommand> {
    let h: QueryMessageRequestHeader = match req.ext_header() {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let mut answer = RemotingCommand::response_to(
        req,
        response::QUERY_NOT_FOUND,
        Some(format!(
            "can not find message, maybe time range not correct: this broker keeps no message key index \
             (topic `{}`, key `{}`); look messages up by their offset id instead",
            h.topic, h.key
        )),
    );
    answer.set_ext_header(&QueryMessageResponseHeader {
        index_last_update_timestamp_ms: 0,
        index_last_update_phyoffset: 0,
    });
    Some(answer)
}
