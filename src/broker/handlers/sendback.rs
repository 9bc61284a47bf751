//! Consumer send-back (CONSUMER_SEND_MSG_BACK, 36): a message a consumer failed to handle
//! goes to its group's retry topic `%RETRY%<group>` with a growing delay, and after the
//! last retry to the dead-letter topic `%DLQ%<group>`. Also the end of a transaction
//! (END_TRANSACTION, 37): commit or roll back a half message.
//!
//! Send-back follows RocketMQ's `consumerSendMsgBack`. The request names the failed
//! message by CommitLog offset (REMOTING.md quirk 8); it is read back from this shard's
//! store. If it was already consumed `maxReconsumeTimes` times (header, default 16) or
//! the consumer asks for delay level < 0, a copy goes to `%DLQ%<group>` undelayed;
//! otherwise to `%RETRY%<group>` with DELAY = the requested level, or 3 + reconsume
//! times when the consumer leaves it to the broker (10 s, 30 s, 1 min … 2 h). The copy
//! keeps body, flag, sys flag, born time and host and properties; its reconsume count is
//! one more; RETRY_TOPIC (the original topic) and ORIGIN_MESSAGE_ID (the offset id of the
//! first message of the chain) are added if missing (the rules are `state::sendback`'s).
//! It is stored through `Shard::append`, which parks the delayed retry on
//! SCHEDULE_TOPIC_XXXX, so retries ride the delayed-message path (`ops::delay`). Both
//! topics are created on first use on this shard only, one queue, read-write (RocketMQ 5 makes the DLQ readable too, so it can
//! be inspected and re-driven). The answer waits until the copy is as durable as its
//! topic promises: the consumer moves its offset past the failed message on SUCCESS, so
//! the copy must not be lost after that (RocketMQ answers before its store does).
//!
//! END_TRANSACTION reads the half message at `commitLogOffset` and checks it is one (sys
//! flag TRANSACTION_PREPARED, or TRAN_MSG with a REAL_TOPIC), that its PGROUP is the
//! request's producer group and its queue offset the request's `tranStateTableOffset`.
//! Commit stores a copy with sys flag TRANSACTION_COMMIT and the half's offset as its
//! prepared-transaction offset, on REAL_TOPIC/REAL_QID if the half carries them (a half
//! parked RocketMQ-style on a half topic), else on the half's own topic and queue (the
//! send path stores halves in place, where the store never indexes them), with
//! REAL_TOPIC, REAL_QID and TRAN_MSG removed. Rollback stores nothing.
//!
//! Why no record of resolved halves (RocketMQ's op messages on
//! RMQ_SYS_TRANS_OP_HALF_TOPIC): a half is never indexed in any ConsumeQueue (storage
//! `dispatchable`), so consumers never see one whatever happens to it, and nothing in this
//! broker goes back over halves — it sends no CHECK_TRANSACTION_STATE. An op record would
//! only be read by such a checker; it belongs with it, when one is built. Until then a
//! producer that sends the same commit twice gets the message stored twice, exactly as
//! RocketMQ's END_TRANSACTION does (it does not look at op records either).
//!
//! Both re-store a message the request names by its CommitLog offset, so they share
//! this file. Both are leader-only in a replicated group (the dispatcher refuses them on
//! a follower).
//!
//! Runs on the shard's executor, one task per request. Deliberately not here: unit mode
//! (`unitMode` is accepted and ignored), subscription-group settings (RocketMQ's
//! per-group retry queue count and max retries; the header's max applies, as RocketMQ
//! clients since 3.4.9 send it), transaction check-back.

use rockshard_net::code::response;
use rockshard_net::headers::{ConsumerSendMsgBackRequestHeader, EndTransactionRequestHeader};
use rockshard_net::properties::{self, keys};
use rockshard_net::stored::{self, sys_flag, MessageView, Record};
use rockshard_net::{msgid, RemotingCommand};
use rockshard_storage::record::{dispatchable, valid_topic};
use rockshard_storage::topics::perm;
use rockshard_storage::PhysicalOffset;
use tracing::{debug, warn};

use super::answer::{bad_header, error_code, reply, success};
use crate::broker::ops::append::Outgoing;
use crate::broker::ops::Shard;
use crate::broker::state::delay::real_destination;
use crate::broker::state::sendback::{
    commit_properties, dlq_topic, is_half, retry_topic, send_back_properties, send_back_target, SendBackTarget,
};
use crate::limits::{MAX_RECONSUME_TIMES_DEFAULT, RETRY_TOPIC_NAME_MAX_BYTES};

/// Queues of a retry or dead-letter topic on one shard (RocketMQ: one per broker).
const SEND_BACK_QUEUES: u32 = 1;

/// A failure answered on the wire: (response code, remark).
pub type Refusal = (i32, String);

/// CONSUMER_SEND_MSG_BACK (36).
pub async fn consumer_send_back(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let outcome = match req.ext_header::<ConsumerSendMsgBackRequestHeader>() {
        Ok(h) => send_back(shard, &h).await,
        Err(e) => return bad_header(req, e),
    };
    answer(req, outcome)
}

/// END_TRANSACTION (37), usually oneway.
pub async fn end_transaction_request(shard: &Shard, req: &RemotingCommand) -> Option<RemotingCommand> {
    let outcome = match req.ext_header::<EndTransactionRequestHeader>() {
        Ok(h) => {
            let outcome = end_transaction(shard, &h).await;
            if let Err((code, remark)) = &outcome {
                // Usually oneway: the producer never hears this, so the log must.
                warn!(shard = shard.id(), code, %remark, group = %h.producer_group, "END_TRANSACTION refused");
            }
            outcome
        }
        Err(e) => return bad_header(req, e),
    };
    answer(req, outcome)
}

fn answer(req: &RemotingCommand, outcome: Result<(), Refusal>) -> Option<RemotingCommand> {
    match outcome {
        Ok(()) => success(req),
        Err((code, remark)) => reply(req, code, remark),
    }
}

fn store_failure(e: crate::Error) -> Refusal {
    (error_code(&e), e.to_string())
}

/// Reads the whole record at a CommitLog offset a request named.
async fn read_record(shard: &Shard, offset: i64) -> Result<bytes::Bytes, Refusal> {
    let missing =
        |detail: String| (response::SYSTEM_ERROR, format!("no message at CommitLog offset {offset}: {detail}"));
    if offset < 0 {
        return Err(missing("negative offset".into()));
    }
    shard.read_message(PhysicalOffset(offset as u64)).await.map_err(|e| missing(e.to_string()))
}

fn decode_record(bytes: &[u8], offset: i64) -> Result<MessageView<'_>, Refusal> {
    match stored::decode(bytes) {
        Ok(Some(Record::Message(view))) => Ok(view),
        other => {
            Err((response::SYSTEM_ERROR, format!("CommitLog offset {offset} holds no readable message: {other:?}")))
        }
    }
}

/// Moves the failed message named by `h` to its group's retry or dead-letter topic.
pub async fn send_back(shard: &Shard, h: &ConsumerSendMsgBackRequestHeader) -> Result<(), Refusal> {
    let retry = retry_topic(&h.group);
    if h.group.is_empty() || retry.len() > RETRY_TOPIC_NAME_MAX_BYTES || !valid_topic(retry.as_bytes()) {
        return Err((response::INVALID_PARAMETER, format!("consumer group `{}` cannot name a retry topic", h.group)));
    }
    let bytes = read_record(shard, h.offset).await?;
    let view = decode_record(&bytes, h.offset)?;
    if !dispatchable(view.header.sys_flag) {
        return Err((
            response::SYSTEM_ERROR,
            format!("CommitLog offset {} holds a transaction half, which no consumer received", h.offset),
        ));
    }
    let original_topic = std::str::from_utf8(view.topic)
        .map_err(|_| (response::SYSTEM_ERROR, format!("message at {} has a non-UTF-8 topic", h.offset)))?;

    // A negative maximum is a client's "unset" (Java's -1 means 16).
    let max = h.max_reconsume_times.filter(|m| *m >= 0).unwrap_or(MAX_RECONSUME_TIMES_DEFAULT);
    let target = send_back_target(view.header.reconsume_times, max, h.delay_level);
    let topic_name = match target {
        SendBackTarget::Retry { .. } => retry,
        SendBackTarget::DeadLetter => dlq_topic(&h.group),
    };
    let topic = shard
        .ensure_local_topic(&topic_name, SEND_BACK_QUEUES, perm::READ_WRITE)
        .await
        .map_err(|e| (response::SYSTEM_ERROR, format!("creating `{topic_name}`: {e}")))?;
    if topic.perm & perm::WRITE == 0 {
        return Err((
            response::NO_PERMISSION,
            format!("topic `{topic_name}` is not writable on {}", shard.broker_name()),
        ));
    }

    let origin_id = msgid::encode(view.header.store_host, view.header.physical_offset);
    let props = send_back_properties(view.properties, original_topic, &origin_id, target);
    let copy = Outgoing {
        topic: &topic_name,
        queue_id: shard.next_queue(topic.write_queues as i32),
        body: view.body,
        flag: view.header.flag,
        properties: &props,
        sys_flag: view.header.sys_flag,
        born_timestamp_ms: view.header.born_timestamp_ms,
        born_host: view.header.born_host,
        reconsume_times: view.header.reconsume_times.saturating_add(1),
        prepared_transaction_offset: 0,
    };
    let wait = shard.append(&[copy], true).map_err(store_failure)?;
    wait.await.map_err(store_failure)?;
    debug!(shard = shard.id(), group = %h.group, topic = %topic_name, ?target, offset = h.offset, "message sent back");
    Ok(())
}

/// Commits or rolls back the half message named by `h`.
pub async fn end_transaction(shard: &Shard, h: &EndTransactionRequestHeader) -> Result<(), Refusal> {
    let commit = match h.commit_or_rollback {
        // "Unknown": the producer does not know yet; RocketMQ does nothing.
        sys_flag::TRANSACTION_NOT_TYPE => return Ok(()),
        sys_flag::TRANSACTION_COMMIT => true,
        sys_flag::TRANSACTION_ROLLBACK => false,
        other => {
            return Err((response::INVALID_PARAMETER, format!("commitOrRollback {other}: expected 0, 8 or 12")));
        }
    };
    let bytes = read_record(shard, h.commit_log_offset).await?;
    let half = decode_record(&bytes, h.commit_log_offset)?;
    if !is_half(&half) {
        return Err((
            response::SYSTEM_ERROR,
            format!("CommitLog offset {} holds no transaction half message", h.commit_log_offset),
        ));
    }
    if let Some(group) = properties::get(half.properties, keys::PGROUP) {
        if group != h.producer_group {
            return Err((
                response::SYSTEM_ERROR,
                format!("the half message belongs to producer group `{group}`, not `{}`", h.producer_group),
            ));
        }
    }
    if half.header.queue_offset != h.tran_state_table_offset {
        return Err((
            response::SYSTEM_ERROR,
            format!(
                "tranStateTableOffset {} does not match the half message's queue offset {}",
                h.tran_state_table_offset, half.header.queue_offset
            ),
        ));
    }
    if !commit {
        debug!(shard = shard.id(), offset = h.commit_log_offset, "transaction rolled back");
        return Ok(());
    }

    let own_topic = std::str::from_utf8(half.topic).map_err(|_| {
        (response::SYSTEM_ERROR, format!("half message at {} has a non-UTF-8 topic", h.commit_log_offset))
    })?;
    let (topic, queue_id) = real_destination(half.properties).unwrap_or((own_topic, half.header.queue_id));
    let props = commit_properties(half.properties);
    let message = Outgoing {
        topic,
        queue_id,
        body: half.body,
        flag: half.header.flag,
        properties: &props,
        sys_flag: (half.header.sys_flag & !sys_flag::TRANSACTION_MASK) | sys_flag::TRANSACTION_COMMIT,
        born_timestamp_ms: half.header.born_timestamp_ms,
        born_host: half.header.born_host,
        reconsume_times: half.header.reconsume_times,
        prepared_transaction_offset: h.commit_log_offset,
    };
    let wait = shard.append(&[message], true).map_err(store_failure)?;
    wait.await.map_err(store_failure)?;
    debug!(shard = shard.id(), offset = h.commit_log_offset, topic, "transaction committed");
    Ok(())
}
