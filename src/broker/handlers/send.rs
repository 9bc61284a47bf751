//! Sends: SEND_MESSAGE (10), SEND_MESSAGE_V2 (310) and SEND_BATCH_MESSAGE (320).
//!
//! A send is checked whole before anything is stored — topic (auto-created when
//! allowed), write permission, queue id, body size, properties — so a refused send
//! leaves no trace. Then the records are stored in one call ([`Shard::append_one`] /
//! [`Shard::append`], which apply the delay rule) and the answer waits for what the
//! topic's flush mode promises: the page cache (`async`) or an fdatasync (`sync`). A
//! producer that sets `WAIT=false` is answered once the bytes are written, as RocketMQ
//! does. Retries past their limit sent straight to `%RETRY%<group>` go to the group's
//! dead-letter topic.
//!
//! The answer's message id is an offset id (store host + CommitLog offset) so
//! VIEW_MESSAGE_BY_ID and END_TRANSACTION can find the record.
//!
//! The single send is the broker's hottest path, so it allocates nothing of its own: the
//! header is read as a borrowed view, the property string is scanned once, one message
//! is appended without building lists, and the SUCCESS answer is written straight into
//! the connection's out buffer (the store and the per-request task still allocate).
//!
//! Runs on the shard's executor, one task per request. Leader-only in a replicated group
//! (the dispatcher refuses it on a follower). Deliberately not here: the delay rule and
//! how records reach the store or the Raft log (`ops::append`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::BytesMut;
use rockshard_net::code::{request, response};
use rockshard_net::frame::ResponseWriter;
use rockshard_net::headers::{decode_send_message_ref, SendMessageRequestRef, SendMessageResponseHeader};
use rockshard_net::properties::{self, keys};
use rockshard_net::{batch, msgid, RemotingCommand};
use rockshard_storage::topics::perm;
use rockshard_storage::{AppendedRecord, TopicConfig};
use tracing::{debug, info};

use super::answer::{bad_header, failure, reply, success_with_header};
use crate::broker::ops::append::Outgoing;
use crate::broker::ops::control::TopicSpec;
use crate::broker::ops::Shard;
use crate::broker::state::topics::{check_topic_name, is_client_writable, DLQ_PREFIX, RETRY_PREFIX};
use crate::limits::MAX_RECONSUME_TIMES_DEFAULT;
use crate::remoting::server::Connection;

/// SEND_MESSAGE, SEND_MESSAGE_V2, SEND_BATCH_MESSAGE.
///
/// A successful single send is answered here, straight into the connection's out buffer
/// (`send_answer`), and the handler returns `None`; every other outcome is returned
/// as a command.
pub async fn handle(shard: &Rc<Shard>, conn: &Rc<Connection>, req: &RemotingCommand) -> Option<RemotingCommand> {
    let h = match decode_send_message_ref(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => return bad_header(req, e),
    };
    let is_batch = req.code == request::SEND_BATCH_MESSAGE || h.is_batch();
    let limit = shard.config().max_message_size_bytes;
    if req.body.len() > limit {
        return reply(
            req,
            response::MESSAGE_ILLEGAL,
            format!("message body of {} bytes is over the {limit}-byte limit (max_message_size_bytes)", req.body.len()),
        );
    }
    if req.body.is_empty() {
        return reply(req, response::MESSAGE_ILLEGAL, "message body is empty");
    }
    let reconsume_times = h.reconsume_times.unwrap_or(0);
    let topic_name = destination(&h, reconsume_times);
    let topic_name = &*topic_name;
    let topic = match writable_topic(shard, topic_name).await {
        Ok(t) => t,
        Err((code, remark)) => return reply(req, code, remark),
    };
    let queues = topic.write_queues as i32;
    let queue_id = if h.queue_id < 0 { shard.next_queue(queues) } else { h.queue_id };
    if queue_id >= queues {
        return reply(
            req,
            response::SYSTEM_ERROR,
            format!(
                "queue {queue_id} of topic `{topic_name}` does not exist on {} ({queues} write queues)",
                shard.broker_name()
            ),
        );
    }

    let properties = h.properties.unwrap_or("").as_bytes();
    // One pass over the property string for everything the send path reads from it.
    let [wait, delay, uniq_key] = properties::scan(properties, [keys::WAIT, keys::DELAY, keys::UNIQ_KEY]);
    let wait_store = wait != Some("false");
    let base = Outgoing {
        topic: topic_name,
        queue_id,
        body: &req.body,
        flag: h.flag,
        properties,
        sys_flag: h.sys_flag,
        born_timestamp_ms: h.born_timestamp_ms,
        born_host: conn.peer(),
        reconsume_times,
        prepared_transaction_offset: 0,
    };
    if !is_batch {
        let wait = match shard.append_one(&base, delay, wait_store) {
            Ok(w) => w,
            Err(e) => return failure(req, &e),
        };
        let placed = match wait.await {
            Ok(placed) => placed,
            Err(e) => {
                debug!(shard = shard.id(), topic = %topic_name, error = %e, "send not confirmed");
                return failure(req, &e);
            }
        };
        let record = placed.records[0];
        send_answer(conn, req, shard.store_host(), record, queue_id, uniq_key);
        return None;
    }
    send_batch(shard, req, base, wait_store).await
}

/// The topic a send goes to: the one it names, except that retries past their limit go
/// to the dead-letter queue (a client may send to %RETRY% directly when
/// CONSUMER_SEND_MSG_BACK fails).
fn destination<'a>(h: &SendMessageRequestRef<'a>, reconsume_times: i32) -> Cow<'a, str> {
    if let Some(group) = h.topic.strip_prefix(RETRY_PREFIX) {
        let max = h.max_reconsume_times.unwrap_or(MAX_RECONSUME_TIMES_DEFAULT);
        if reconsume_times > max {
            return Cow::Owned(format!("{DLQ_PREFIX}{group}"));
        }
    }
    Cow::Borrowed(h.topic)
}

/// This shard's config of the topic a send names, created if it is a retry or
/// dead-letter topic (on this shard) or when auto-create allows it (everywhere); or why
/// the send is refused: (response code, remark).
async fn writable_topic(shard: &Rc<Shard>, topic_name: &str) -> Result<TopicConfig, (i32, String)> {
    // Creating a topic is rare and its futures are large: they are boxed so that every
    // send's task (which holds this function's state) stays small.
    let topic = match shard.topic(topic_name) {
        Some(t) => t,
        None if topic_name.starts_with(RETRY_PREFIX) || topic_name.starts_with(DLQ_PREFIX) => {
            match Box::pin(shard.ensure_local_topic(topic_name, 1, perm::READ_WRITE)).await {
                Ok(t) => t,
                Err(e) => return Err((response::SYSTEM_ERROR, format!("creating `{topic_name}`: {e}"))),
            }
        }
        None => Box::pin(auto_create(shard, topic_name)).await?,
    };
    if topic.perm & perm::WRITE == 0 || !is_client_writable(topic_name) {
        return Err((
            response::NO_PERMISSION,
            format!("topic `{topic_name}` is not writable on {}", shard.broker_name()),
        ));
    }
    Ok(topic)
}

/// Auto-creates `name` for a send that named an unknown topic, when allowed. Returns
/// this shard's config of it, or why not.
async fn auto_create(shard: &Rc<Shard>, name: &str) -> Result<TopicConfig, (i32, String)> {
    let config = shard.config();
    if !config.auto_create_topic {
        return Err((
            response::TOPIC_NOT_EXIST,
            format!("topic `{name}` does not exist on {} and auto-create is off; create it with `rockshard admin topic create`", shard.broker_name()),
        ));
    }
    check_topic_name(name).map_err(|e| (response::INVALID_PARAMETER, e))?;
    let spec = TopicSpec {
        name: name.to_string(),
        read_queues: config.default_topic_queues,
        write_queues: config.default_topic_queues,
        perm: perm::READ_WRITE,
        flush: None,
        order: false,
    };
    if let Err(e) = shard.apply_everywhere(spec).await {
        return Err((response::SYSTEM_ERROR, format!("auto-creating topic `{name}`: {e}")));
    }
    info!(shard = shard.id(), topic = name, "topic auto-created");
    shard.topic(name).ok_or_else(|| {
        (
            response::TOPIC_NOT_EXIST,
            format!("topic `{name}` was created, but none of its queues is on {}", shard.broker_name()),
        )
    })
}

/// A batch send: every message of the body, stored in one append; the answer names
/// each message's id, comma-separated.
async fn send_batch(
    shard: &Rc<Shard>,
    req: &RemotingCommand,
    base: Outgoing<'_>,
    wait_store: bool,
) -> Option<RemotingCommand> {
    let items = match batch::decode(&req.body) {
        Ok(items) if !items.is_empty() => items,
        Ok(_) => return reply(req, response::MESSAGE_ILLEGAL, "batch holds no messages"),
        Err(e) => return reply(req, response::MESSAGE_ILLEGAL, format!("batch body: {e}")),
    };
    let msgs: Vec<Outgoing<'_>> =
        items.iter().map(|it| Outgoing { body: it.body, flag: it.flag, properties: it.properties, ..base }).collect();
    let wait = match shard.append(&msgs, wait_store) {
        Ok(w) => w,
        Err(e) => return failure(req, &e),
    };
    let placed = match wait.await {
        Ok(placed) => placed,
        Err(e) => {
            debug!(shard = shard.id(), topic = %base.topic, error = %e, "send not confirmed");
            return failure(req, &e);
        }
    };
    let mut msg_id = String::with_capacity(placed.records.len() * (msgid::ID_V4_LEN + 1));
    for (i, r) in placed.records.iter().enumerate() {
        if i > 0 {
            msg_id.push(',');
        }
        msgid::encode_into(shard.store_host(), r.physical_offset.0 as i64, &mut msg_id);
    }
    let first = placed.records[0];
    let header = SendMessageResponseHeader {
        msg_id,
        queue_id: base.queue_id,
        queue_offset: first.queue_offset.0 as i64,
        transaction_id: None,
        batch_uniq_id: None,
        recall_handle: None,
        msg_region: None,
        trace_on: None,
    };
    success_with_header(req, &header)
}

thread_local! {
    /// The message id being formatted for a send answer, reused by every send of this
    /// shard's thread so the answer costs no allocation.
    static MSG_ID: RefCell<String> = RefCell::new(String::with_capacity(msgid::ID_V6_LEN));
}

/// Queues the SUCCESS answer of a single send, written straight into the connection's
/// out buffer: the same bytes as `SendMessageResponseHeader` set on
/// `RemotingCommand::response_to` (msgId, queueId, queueOffset, and transactionId = the
/// UNIQ_KEY when there is one), without building either. A oneway send gets nothing.
fn send_answer(
    conn: &Connection,
    req: &RemotingCommand,
    store_host: SocketAddr,
    record: AppendedRecord,
    queue_id: i32,
    uniq_key: Option<&str>,
) {
    if req.is_oneway() {
        return;
    }
    MSG_ID.with_borrow_mut(|msg_id| {
        conn.send_frame(|out| write_send_answer(out, req, store_host, record, queue_id, uniq_key, msg_id));
    });
}

/// Appends the frame [`send_answer`] queues; `msg_id` is scratch space for the id.
fn write_send_answer(
    out: &mut BytesMut,
    req: &RemotingCommand,
    store_host: SocketAddr,
    record: AppendedRecord,
    queue_id: i32,
    uniq_key: Option<&str>,
    msg_id: &mut String,
) -> Result<usize, rockshard_net::Error> {
    msg_id.clear();
    msgid::encode_into(store_host, record.physical_offset.0 as i64, msg_id);
    let mut w = ResponseWriter::begin(out, req, response::SUCCESS);
    w.ext_str("msgId", msg_id);
    w.ext_i64("queueId", i64::from(queue_id));
    w.ext_i64("queueOffset", record.queue_offset.0 as i64);
    if let Some(uniq_key) = uniq_key {
        w.ext_str("transactionId", uniq_key);
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_send_answer_has_the_bytes_of_the_response_header() {
        use rockshard_net::{encode_frame, ExtFields, SerializeType};
        use rockshard_storage::{PhysicalOffset, QueueOffset};
        let host: SocketAddr = "10.1.2.3:10911".parse().unwrap();
        let record =
            AppendedRecord { physical_offset: PhysicalOffset(123_456), queue_offset: QueueOffset(77), size: 1 };
        let mut scratch = String::from("left over");
        for serialize_type in [SerializeType::Json, SerializeType::RocketMq] {
            for uniq_key in [None, Some("7F0000010001B4AAC2A1A0CE57DE0000")] {
                let req = RemotingCommand::new_request(request::SEND_MESSAGE_V2, ExtFields::new())
                    .with_opaque(99)
                    .with_serialize_type(serialize_type);
                let mut out = BytesMut::new();
                write_send_answer(&mut out, &req, host, record, 5, uniq_key, &mut scratch).expect("encodes");
                let mut expected = RemotingCommand::response_to(&req, response::SUCCESS, None);
                expected.set_ext_header(&SendMessageResponseHeader {
                    msg_id: msgid::encode(host, 123_456),
                    queue_id: 5,
                    queue_offset: 77,
                    transaction_id: uniq_key.map(str::to_owned),
                    ..Default::default()
                });
                let mut want = BytesMut::new();
                encode_frame(&expected, &mut want).expect("encodes");
                assert_eq!(out, want, "{serialize_type:?} {uniq_key:?}");
            }
        }
    }
}
