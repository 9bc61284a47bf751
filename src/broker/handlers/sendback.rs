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
//! first message of the chain) are added if missing. It is stored through
//! `send::append`, which parks the delayed retry on SCHEDULE_TOPIC_XXXX, so retries ride
//! the delayed-message path (`schedule`). Both topics are created on first use on this
//! shard only, one queue, read-write (RocketMQ 5 makes the DLQ readable too, so it can
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
//! Runs on the shard's executor, one task per request. Deliberately not here: unit mode
//! (`unitMode` is accepted and ignored), subscription-group settings (RocketMQ's
//! per-group retry queue count and max retries; the header's max applies, as RocketMQ
//! clients since 3.4.9 send it), transaction check-back.

use std::rc::Rc;

use rockshard_net::code::{request, response};
use rockshard_net::headers::{ConsumerSendMsgBackRequestHeader, EndTransactionRequestHeader};
use rockshard_net::properties::{self, keys};
use rockshard_net::stored::{self, sys_flag, MessageView, Record};
use rockshard_net::{msgid, RemotingCommand};
use rockshard_storage::store::{dispatchable, valid_topic};
use rockshard_storage::topics::perm;
use rockshard_storage::PhysicalOffset;
use tracing::{debug, warn};

use crate::broker::send::{self, Outgoing};
use crate::broker::shard::{bad_header, reply, store_failure_code, Shard};
use crate::broker::topics::{self, DLQ_PREFIX, RETRY_PREFIX};
use crate::limits::{DELAY_LEVEL_COUNT, MAX_RECONSUME_TIMES_DEFAULT, RETRY_TOPIC_NAME_MAX_BYTES};
use crate::remoting::server::Connection;

/// Queues of a retry or dead-letter topic on one shard (RocketMQ: one per broker).
const SEND_BACK_QUEUES: u32 = 1;

/// The first delay level the broker picks for a retry (level 3 = 10 s), plus one level
/// per earlier retry: RocketMQ's schedule.
const RETRY_FIRST_LEVEL: i32 = 3;

/// A failure answered on the wire: (response code, remark).
type Refusal = (i32, String);

pub fn retry_topic(group: &str) -> String {
    format!("{RETRY_PREFIX}{group}")
}

pub fn dlq_topic(group: &str) -> String {
    format!("{DLQ_PREFIX}{group}")
}

/// Where a failed message goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendBackTarget {
    /// `%RETRY%<group>`, after this delay level.
    Retry { delay_level: i32 },
    /// `%DLQ%<group>`, at once.
    DeadLetter,
}

/// RocketMQ's rule: dead letter once the message was consumed `max_reconsume_times`
/// times or the consumer asks for it (level < 0); else a retry at the requested level,
/// or at 3 + the times already retried when the consumer leaves it to the broker (0).
/// Levels past the last one clamp to it (2 h).
pub fn send_back_target(reconsume_times: i32, max_reconsume_times: i32, requested_level: i32) -> SendBackTarget {
    if requested_level < 0 || reconsume_times >= max_reconsume_times {
        return SendBackTarget::DeadLetter;
    }
    let level = if requested_level == 0 { RETRY_FIRST_LEVEL.saturating_add(reconsume_times) } else { requested_level };
    SendBackTarget::Retry { delay_level: level.clamp(1, DELAY_LEVEL_COUNT as i32) }
}

/// The properties of the copy: the original's, minus DELAY and the REAL_TOPIC/REAL_QID
/// of an earlier parking (the delay path adds fresh ones), plus RETRY_TOPIC and
/// ORIGIN_MESSAGE_ID when missing, plus DELAY for a retry.
pub fn send_back_properties(
    original: &[u8],
    original_topic: &str,
    origin_message_id: &str,
    target: SendBackTarget,
) -> Vec<u8> {
    let mut pairs: Vec<(&str, &str)> = properties::iter(original)
        .filter(|(name, _)| !matches!(*name, keys::DELAY | keys::REAL_TOPIC | keys::REAL_QID))
        .collect();
    if !pairs.iter().any(|(name, _)| *name == keys::RETRY_TOPIC) {
        pairs.push((keys::RETRY_TOPIC, original_topic));
    }
    if !pairs.iter().any(|(name, _)| *name == keys::ORIGIN_MESSAGE_ID) {
        pairs.push((keys::ORIGIN_MESSAGE_ID, origin_message_id));
    }
    let level;
    if let SendBackTarget::Retry { delay_level } = target {
        level = delay_level.to_string();
        pairs.push((keys::DELAY, &level));
    }
    properties::encode(pairs)
}

/// Whether the record is a transaction half message.
pub fn is_half(view: &MessageView<'_>) -> bool {
    (view.header.sys_flag & sys_flag::TRANSACTION_MASK) == sys_flag::TRANSACTION_PREPARED
        || (properties::get(view.properties, keys::TRAN_MSG) == Some("true")
            && properties::get(view.properties, keys::REAL_TOPIC).is_some())
}

/// The properties of a committed message: the half's minus REAL_TOPIC, REAL_QID and
/// TRAN_MSG (RocketMQ's `endMessageTransaction`).
pub fn commit_properties(half: &[u8]) -> Vec<u8> {
    properties::encode(
        properties::iter(half).filter(|(name, _)| !matches!(*name, keys::REAL_TOPIC | keys::REAL_QID | keys::TRAN_MSG)),
    )
}

/// CONSUMER_SEND_MSG_BACK and END_TRANSACTION.
pub async fn handle(shard: &Rc<Shard>, _conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
    let outcome = match req.code {
        request::CONSUMER_SEND_MSG_BACK => match req.ext_header::<ConsumerSendMsgBackRequestHeader>() {
            Ok(h) => send_back(shard, &h).await,
            Err(e) => return bad_header(&req, e),
        },
        request::END_TRANSACTION => match req.ext_header::<EndTransactionRequestHeader>() {
            Ok(h) => {
                let outcome = end_transaction(shard, &h).await;
                if let Err((code, remark)) = &outcome {
                    // Usually oneway: the producer never hears this, so the log must.
                    warn!(shard = shard.id, code, %remark, group = %h.producer_group, "END_TRANSACTION refused");
                }
                outcome
            }
            Err(e) => return bad_header(&req, e),
        },
        _ => return Some(RemotingCommand::not_supported(&req)),
    };
    match outcome {
        Ok(()) => Some(RemotingCommand::response_to(&req, response::SUCCESS, None)),
        Err((code, remark)) => reply(&req, code, remark),
    }
}

fn store_failure(e: crate::Error) -> Refusal {
    (store_failure_code(&e), e.to_string())
}

/// Reads the whole record at a CommitLog offset a request named.
async fn read_record(shard: &Shard, offset: i64) -> Result<bytes::Bytes, Refusal> {
    let missing =
        |detail: String| (response::SYSTEM_ERROR, format!("no message at CommitLog offset {offset}: {detail}"));
    if offset < 0 {
        return Err(missing("negative offset".into()));
    }
    shard.store.read_message(PhysicalOffset(offset as u64)).await.map_err(|e| missing(e.to_string()))
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
pub async fn send_back(shard: &Rc<Shard>, h: &ConsumerSendMsgBackRequestHeader) -> Result<(), Refusal> {
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
    let topic = topics::ensure_local_topic(shard, &topic_name, SEND_BACK_QUEUES, perm::READ_WRITE)
        .await
        .map_err(|e| (response::SYSTEM_ERROR, format!("creating `{topic_name}`: {e}")))?;
    if topic.perm & perm::WRITE == 0 {
        return Err((
            response::NO_PERMISSION,
            format!("topic `{topic_name}` is not writable on {}", shard.broker_name),
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
    let wait = send::append(shard, &[copy], true).map_err(store_failure)?;
    wait.await.map_err(store_failure)?;
    debug!(shard = shard.id, group = %h.group, topic = %topic_name, ?target, offset = h.offset, "message sent back");
    Ok(())
}

/// Commits or rolls back the half message named by `h`.
pub async fn end_transaction(shard: &Rc<Shard>, h: &EndTransactionRequestHeader) -> Result<(), Refusal> {
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
        debug!(shard = shard.id, offset = h.commit_log_offset, "transaction rolled back");
        return Ok(());
    }

    let own_topic = std::str::from_utf8(half.topic).map_err(|_| {
        (response::SYSTEM_ERROR, format!("half message at {} has a non-UTF-8 topic", h.commit_log_offset))
    })?;
    let (topic, queue_id) =
        crate::broker::schedule::real_destination(half.properties).unwrap_or((own_topic, half.header.queue_id));
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
    let wait = send::append(shard, &[message], true).map_err(store_failure)?;
    wait.await.map_err(store_failure)?;
    debug!(shard = shard.id, offset = h.commit_log_offset, topic, "transaction committed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use rockshard_storage::{GetStatus, QueueOffset};

    use super::*;
    use crate::broker::control::{ControlPlane, Mesh};
    use crate::config::{BrokerConfig, BrokerSettings};
    use crate::remoting::server::Signal;

    #[test]
    fn retries_back_off_then_dead_letter() {
        // The broker's schedule: 3 + times already retried.
        assert_eq!(send_back_target(0, 16, 0), SendBackTarget::Retry { delay_level: 3 });
        assert_eq!(send_back_target(5, 16, 0), SendBackTarget::Retry { delay_level: 8 });
        assert_eq!(send_back_target(15, 16, 0), SendBackTarget::Retry { delay_level: 18 });
        // The consumer's level wins when it names one.
        assert_eq!(send_back_target(4, 16, 2), SendBackTarget::Retry { delay_level: 2 });
        // Past the last level: clamped to 2 h.
        assert_eq!(send_back_target(17, 30, 0), SendBackTarget::Retry { delay_level: 18 });
        assert_eq!(send_back_target(0, 16, 40), SendBackTarget::Retry { delay_level: 18 });
        // After max_reconsume_times deliveries, or when asked: the dead-letter queue.
        assert_eq!(send_back_target(16, 16, 0), SendBackTarget::DeadLetter);
        assert_eq!(send_back_target(3, 3, 5), SendBackTarget::DeadLetter);
        assert_eq!(send_back_target(0, 16, -1), SendBackTarget::DeadLetter);
        assert_eq!(send_back_target(0, 0, 0), SendBackTarget::DeadLetter);
    }

    #[test]
    fn send_back_properties_mark_the_chain() {
        let original = properties::encode([
            (keys::TAGS, "TagA"),
            (keys::UNIQ_KEY, "U1"),
            (keys::DELAY, "3"),
            (keys::REAL_TOPIC, "%RETRY%g"),
            (keys::REAL_QID, "0"),
        ]);
        let props = send_back_properties(&original, "orders", "ID1", SendBackTarget::Retry { delay_level: 4 });
        let pairs: Vec<_> = properties::iter(&props).collect();
        assert_eq!(
            pairs,
            [
                (keys::TAGS, "TagA"),
                (keys::UNIQ_KEY, "U1"),
                (keys::RETRY_TOPIC, "orders"),
                (keys::ORIGIN_MESSAGE_ID, "ID1"),
                (keys::DELAY, "4")
            ]
        );
        // A message already in the chain keeps its first topic and id; a dead letter
        // carries no DELAY.
        let again = send_back_properties(&props, "%RETRY%g", "ID2", SendBackTarget::DeadLetter);
        assert_eq!(properties::get(&again, keys::RETRY_TOPIC), Some("orders"));
        assert_eq!(properties::get(&again, keys::ORIGIN_MESSAGE_ID), Some("ID1"));
        assert_eq!(properties::get(&again, keys::DELAY), None);
        assert_eq!(properties::iter(&again).count(), 4);
    }

    #[test]
    fn commit_properties_drop_the_half_markers() {
        let half = properties::encode([
            (keys::TRAN_MSG, "true"),
            (keys::PGROUP, "pg"),
            (keys::REAL_TOPIC, "orders"),
            (keys::REAL_QID, "1"),
            (keys::UNIQ_KEY, "U"),
        ]);
        let committed = commit_properties(&half);
        let pairs: Vec<_> = properties::iter(&committed).map(|(n, _)| n).collect();
        assert_eq!(pairs, [keys::PGROUP, keys::UNIQ_KEY]);
    }

    fn run<T: 'static>(f: impl std::future::Future<Output = T> + 'static) -> T {
        glommio::LocalExecutorBuilder::default().make().expect("glommio executor").run(f)
    }

    async fn open_shard(dir: &Path) -> Rc<Shard> {
        let settings = BrokerSettings {
            data_dir: Some(dir.to_path_buf()),
            shards: Some(1),
            segment_size_bytes: Some(1 << 20),
            ..Default::default()
        };
        let config = BrokerConfig::resolve(None, settings).expect("config");
        let endpoints = Mesh::new(1).into_endpoints().pop().expect("one shard");
        let control = ControlPlane::connect(0, endpoints).await;
        Shard::open(0, Rc::new(config), control, Signal::new()).await.expect("shard opens")
    }

    /// Stores a message as a producer's send would; returns its CommitLog offset.
    async fn produce(shard: &Rc<Shard>, topic: &str, props: &[u8], sys: i32) -> i64 {
        let m = Outgoing {
            topic,
            queue_id: 0,
            body: b"payload",
            flag: 3,
            properties: props,
            sys_flag: sys,
            born_timestamp_ms: 1_700_000_000_000,
            born_host: "127.0.0.1:40000".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        };
        let wait = send::append(shard, &[m], true).expect("append");
        wait.await.expect("stored").records[0].physical_offset.0 as i64
    }

    /// Waits (bounded) until `topic` queue 0 holds `n` messages; returns the last one's
    /// bytes and when it was seen.
    async fn wait_for(shard: &Rc<Shard>, topic: &str, n: u64) -> (bytes::Bytes, Instant) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some((_, max)) = shard.store.queue_offsets(topic, 0) {
                if max.0 >= n {
                    let seen = Instant::now();
                    let got = shard.store.get_messages(topic, 0, QueueOffset(n - 1), 1, 1 << 20, None).await.unwrap();
                    assert_eq!(got.status, GetStatus::Found);
                    return (got.messages[0].clone(), seen);
                }
            }
            assert!(Instant::now() < deadline, "{topic} never got message {n}");
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }

    fn view(bytes: &[u8]) -> MessageView<'_> {
        match stored::decode(bytes) {
            Ok(Some(Record::Message(v))) => v,
            other => panic!("not a message: {other:?}"),
        }
    }

    fn back(offset: i64, delay_level: i32, max: i32) -> ConsumerSendMsgBackRequestHeader {
        ConsumerSendMsgBackRequestHeader {
            offset,
            group: "G".into(),
            delay_level,
            max_reconsume_times: Some(max),
            ..Default::default()
        }
    }

    #[test]
    fn failed_messages_retry_through_the_delay_queue_then_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let shard = open_shard(&path).await;
            crate::broker::schedule::start(&shard);
            let props = properties::encode([(keys::TAGS, "TagA"), (keys::UNIQ_KEY, "U1")]);
            let first = produce(&shard, "orders", &props, 0).await;
            let first_id = msgid::encode(shard.store_host, first);

            // First failure, the consumer names level 1 (1 s): parked, then delivered
            // to %RETRY%G no earlier than its delay and soon after it.
            let asked = Instant::now();
            send_back(&shard, &back(first, 1, 2)).await.expect("sent back");
            assert_eq!(shard.store.topic("%RETRY%G").map(|t| t.write_queues), Some(1));
            let (parked, _) = wait_for(&shard, rockshard_storage::store::SCHEDULE_TOPIC, 1).await;
            assert_eq!(properties::get(view(&parked).properties, keys::REAL_TOPIC), Some("%RETRY%G"));
            let (retry1, seen) = wait_for(&shard, "%RETRY%G", 1).await;
            let waited = seen - asked;
            assert!(waited >= Duration::from_millis(1_000), "delivered after {waited:?}");
            assert!(waited < Duration::from_millis(1_900), "delivered after {waited:?}");
            let v = view(&retry1);
            assert_eq!(v.header.reconsume_times, 1);
            assert_eq!((v.body, v.header.flag), (&b"payload"[..], 3));
            assert_eq!(properties::get(v.properties, keys::RETRY_TOPIC), Some("orders"));
            assert_eq!(properties::get(v.properties, keys::ORIGIN_MESSAGE_ID), Some(first_id.as_str()));
            assert_eq!(properties::get(v.properties, keys::DELAY), None);
            assert_eq!(properties::get(v.properties, keys::TAGS), Some("TagA"));

            // Second failure: once more through the delay queue.
            send_back(&shard, &back(v.header.physical_offset, 1, 2)).await.expect("sent back");
            let (retry2, _) = wait_for(&shard, "%RETRY%G", 2).await;
            let v = view(&retry2);
            assert_eq!(v.header.reconsume_times, 2);
            assert_eq!(properties::get(v.properties, keys::ORIGIN_MESSAGE_ID), Some(first_id.as_str()));

            // Third failure: consumed max (2) times already, so straight to the DLQ.
            send_back(&shard, &back(v.header.physical_offset, 0, 2)).await.expect("sent back");
            let (dead, _) = wait_for(&shard, "%DLQ%G", 1).await;
            let v = view(&dead);
            assert_eq!(v.header.reconsume_times, 3);
            assert_eq!(properties::get(v.properties, keys::RETRY_TOPIC), Some("orders"));
            let dlq = shard.store.topic("%DLQ%G").expect("DLQ created");
            assert_eq!((dlq.write_queues, dlq.perm), (1, perm::READ_WRITE));

            // A consumer asking for the DLQ (level -1) gets it at once.
            send_back(&shard, &back(first, -1, 16)).await.expect("sent back");
            wait_for(&shard, "%DLQ%G", 2).await;

            // Offsets that name no message are refused, nothing is stored.
            let err = send_back(&shard, &back(first + 1, 0, 16)).await.unwrap_err();
            assert_eq!(err.0, response::SYSTEM_ERROR);
            let err = send_back(&shard, &back(-5, 0, 16)).await.unwrap_err();
            assert_eq!(err.0, response::SYSTEM_ERROR);
            assert_eq!(shard.store.queue_offsets("%DLQ%G", 0).map(|(_, max)| max.0), Some(2));

            shard.shutdown.trigger();
            shard.close().await.expect("closes");
        });
    }

    #[test]
    fn end_transaction_commits_or_drops_the_half() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        run(async move {
            let shard = open_shard(&path).await;
            let half_props = |key: &'static str| {
                properties::encode([(keys::TRAN_MSG, "true"), (keys::PGROUP, "pg"), (keys::UNIQ_KEY, key)])
            };
            let a = produce(&shard, "orders", &half_props("A"), sys_flag::TRANSACTION_PREPARED).await;
            let b = produce(&shard, "orders", &half_props("B"), sys_flag::TRANSACTION_PREPARED).await;
            assert_eq!(shard.store.queue_offsets("orders", 0), None, "halves are never indexed");
            let end = |offset: i64, how: i32, group: &str| EndTransactionRequestHeader {
                producer_group: group.into(),
                tran_state_table_offset: 0,
                commit_log_offset: offset,
                commit_or_rollback: how,
                msg_id: "U".into(),
                ..Default::default()
            };

            // Wrong group, an offset that is no half, and an unknown decision are refused.
            let err = end_transaction(&shard, &end(a, 8, "other")).await.unwrap_err();
            assert_eq!(err.0, response::SYSTEM_ERROR);
            let plain = produce(&shard, "orders", &properties::encode([(keys::UNIQ_KEY, "P")]), 0).await;
            assert!(end_transaction(&shard, &end(plain, 8, "pg")).await.is_err());
            assert_eq!(end_transaction(&shard, &end(a, 5, "pg")).await.unwrap_err().0, response::INVALID_PARAMETER);
            // "Unknown" and rollback store nothing.
            end_transaction(&shard, &end(a, 0, "pg")).await.expect("unknown is fine");
            end_transaction(&shard, &end(b, 12, "pg")).await.expect("rolled back");
            assert_eq!(shard.store.queue_offsets("orders", 0).map(|(_, max)| max.0), Some(1), "only the plain one");

            // Commit: the message appears on its topic, marked committed.
            end_transaction(&shard, &end(a, 8, "pg")).await.expect("committed");
            let (committed, _) = wait_for(&shard, "orders", 2).await;
            let v = view(&committed);
            assert_eq!(v.header.sys_flag & sys_flag::TRANSACTION_MASK, sys_flag::TRANSACTION_COMMIT);
            assert_eq!(v.header.prepared_transaction_offset, a);
            assert_eq!(properties::get(v.properties, keys::UNIQ_KEY), Some("A"));
            assert_eq!(properties::get(v.properties, keys::TRAN_MSG), None);
            assert_eq!(v.body, b"payload");

            shard.shutdown.trigger();
            shard.close().await.expect("closes");
        });
    }
}
