//! Sends: SEND_MESSAGE (10), SEND_MESSAGE_V2 (310), SEND_BATCH_MESSAGE (320), and
//! [`append`], the one way the broker itself stores a message (retries, dead letters,
//! delayed delivery, transaction commits).
//!
//! A send is checked whole before anything is stored — topic (auto-created when
//! allowed), write permission, queue id, body size, properties — so a refused send
//! leaves no trace. Then the records are appended to the shard's store in one call
//! (a batch becomes one write) and the answer waits for what the topic's flush mode
//! promises: the page cache (`async`) or an fdatasync (`sync`). A producer that sets
//! `WAIT=false` is answered once the bytes are written, as RocketMQ does.
//!
//! Delayed messages follow RocketMQ: a DELAY property > 0 parks the message on
//! `SCHEDULE_TOPIC_XXXX`, queue `level - 1`, with the real topic and queue in
//! REAL_TOPIC / REAL_QID; `schedule` moves it back when due.
//!
//! Runs on the shard's executor; the answer's message id is an offset id (store host +
//! CommitLog offset) so VIEW_MESSAGE_BY_ID and END_TRANSACTION can find the record.
//!
//! The single send is the broker's hottest path, so it allocates nothing of its own: the
//! header is read as a borrowed view, the property string is scanned once, one message
//! is appended without building lists, and the SUCCESS answer is written straight into
//! the connection's out buffer (the store and the per-request task still allocate).

use std::borrow::Cow;
use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use rockshard_net::code::{request, response};
use rockshard_net::frame::ResponseWriter;
use rockshard_net::headers::{decode_send_message_ref, SendMessageResponseHeader};
use rockshard_net::properties::{self, keys};
use rockshard_net::stored::{sys_flag, RecordFields};
use rockshard_net::{batch, msgid, RemotingCommand};
use rockshard_raft::Proposal;
use rockshard_storage::store::SCHEDULE_TOPIC;
use rockshard_storage::topics::perm;
use rockshard_storage::{AppendResult, AppendWait, AppendedRecord, StorageError};
use tracing::debug;

use crate::broker::shard::{bad_header, reply, store_failure_code, Shard};
use crate::broker::{replication, topics};
use crate::limits::{DELAY_LEVEL_COUNT, MAX_RECONSUME_TIMES_DEFAULT};
use crate::remoting::server::Connection;

/// A message the broker stores on its own behalf.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub body: &'a [u8],
    pub flag: i32,
    /// The encoded property string.
    pub properties: &'a [u8],
    pub sys_flag: i32,
    pub born_timestamp_ms: i64,
    pub born_host: SocketAddr,
    pub reconsume_times: i32,
    pub prepared_transaction_offset: i64,
}

/// Where a delayed message is parked: (SCHEDULE_TOPIC queue, properties with the real
/// destination added). `None` for a message that is not delayed. `delay` is the
/// message's DELAY property, already looked up.
fn divert_delayed(m: &Outgoing<'_>, delay: Option<&str>) -> Option<(i32, Vec<u8>)> {
    if m.topic == SCHEDULE_TOPIC || (m.sys_flag & sys_flag::TRANSACTION_MASK) == sys_flag::TRANSACTION_PREPARED {
        return None;
    }
    let level = delay?.trim().parse::<i64>().ok()?;
    if level <= 0 {
        return None;
    }
    let level = level.min(DELAY_LEVEL_COUNT as i64) as i32;
    let mut props = Vec::with_capacity(m.properties.len() + m.topic.len() + 32);
    props.extend_from_slice(m.properties);
    if !props.is_empty() && props.last() != Some(&properties::PROPERTY_SEPARATOR) {
        props.push(properties::PROPERTY_SEPARATOR);
    }
    let qid = m.queue_id.to_string();
    props.extend_from_slice(&properties::encode([(keys::REAL_TOPIC, m.topic), (keys::REAL_QID, qid.as_str())]));
    Some((level - 1, props))
}

/// The record fields of `m`, stored where `diverted` says (or where it was sent).
fn record_fields<'a>(shard: &Shard, m: &Outgoing<'a>, diverted: &'a Option<(i32, Vec<u8>)>) -> RecordFields<'a> {
    let (topic, queue_id, properties) = match diverted {
        Some((q, p)) => (SCHEDULE_TOPIC.as_bytes(), *q, p.as_slice()),
        None => (m.topic.as_bytes(), m.queue_id, m.properties),
    };
    RecordFields {
        topic,
        queue_id,
        flag: m.flag,
        sys_flag: m.sys_flag,
        born_timestamp_ms: m.born_timestamp_ms,
        born_host: m.born_host,
        store_timestamp_ms: 0,
        store_host: shard.store_host,
        reconsume_times: m.reconsume_times,
        prepared_transaction_offset: m.prepared_transaction_offset,
        body: m.body,
        properties,
    }
}

/// A message being stored: appended to this shard's store, or (replicated) proposed to
/// its Raft group. Resolves to where the records went once they are as durable as the
/// topic's flush mode promises — and, replicated, committed by a majority.
pub enum Stored {
    Local(AppendWait),
    Replicated(Proposal),
}

impl Future for Stored {
    type Output = crate::Result<AppendResult>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Stored::Local(w) => Pin::new(w).poll(cx).map_err(Into::into),
            Stored::Replicated(p) => Pin::new(p).poll(cx).map_err(Into::into),
        }
    }
}

/// Stores `msgs` on this shard (in one append or one proposal), applying the delay rule.
/// Awaiting the result gives the records' places and the durability answer.
pub fn append(shard: &Shard, msgs: &[Outgoing<'_>], wait_store: bool) -> crate::Result<Stored> {
    if let [m] = msgs {
        return append_one(shard, m, properties::get(m.properties, keys::DELAY), wait_store);
    }
    let diverted: Vec<Option<(i32, Vec<u8>)>> =
        msgs.iter().map(|m| divert_delayed(m, properties::get(m.properties, keys::DELAY))).collect();
    let fields: Vec<RecordFields<'_>> = msgs.iter().zip(&diverted).map(|(m, d)| record_fields(shard, m, d)).collect();
    store_fields(shard, &fields, wait_store)
}

/// [`append`] of one message whose DELAY property the caller already looked up: the
/// common send, stored without building any list.
fn append_one(shard: &Shard, m: &Outgoing<'_>, delay: Option<&str>, wait_store: bool) -> crate::Result<Stored> {
    let diverted = divert_delayed(m, delay);
    let fields = record_fields(shard, m, &diverted);
    store_fields(shard, std::slice::from_ref(&fields), wait_store)
}

/// Appends to the store, or, in a replicated group, proposes the records to the shard's
/// Raft group (leader only: a follower answers "not the leader" and the client retries
/// elsewhere). A replicated send always waits for the commit, whatever WAIT says: SEND_OK
/// means a majority has it.
fn store_fields(shard: &Shard, fields: &[RecordFields<'_>], wait_store: bool) -> crate::Result<Stored> {
    let Some(replica) = shard.replica.get() else {
        return Ok(Stored::Local(shard.store.append(fields, wait_store)?));
    };
    let data = replication::encode_records(fields)
        .map_err(|e| crate::Error::Storage(StorageError::InvalidArgument(e.to_string())))?;
    Ok(Stored::Replicated(replica.propose(data)?))
}

/// SEND_MESSAGE, SEND_MESSAGE_V2, SEND_BATCH_MESSAGE.
///
/// A successful single send is answered here, straight into the connection's out buffer
/// ([`send_answer`]), and the handler returns `None`; every other outcome is returned
/// as a command.
pub async fn handle(shard: &Rc<Shard>, conn: &Rc<Connection>, req: RemotingCommand) -> Option<RemotingCommand> {
    let h = match decode_send_message_ref(&req.ext_fields) {
        Ok(h) => h,
        Err(e) => return bad_header(&req, e),
    };
    let is_batch = req.code == request::SEND_BATCH_MESSAGE || h.is_batch();
    let limit = shard.config.max_message_size_bytes;
    if req.body.len() > limit {
        return reply(
            &req,
            response::MESSAGE_ILLEGAL,
            format!("message body of {} bytes is over the {limit}-byte limit (max_message_size_bytes)", req.body.len()),
        );
    }
    if req.body.is_empty() {
        return reply(&req, response::MESSAGE_ILLEGAL, "message body is empty");
    }

    // The topic: retries past their limit go to the dead-letter queue (a client may send
    // to %RETRY% directly when CONSUMER_SEND_MSG_BACK fails).
    let mut topic_name = Cow::Borrowed(h.topic);
    let reconsume_times = h.reconsume_times.unwrap_or(0);
    if let Some(group) = h.topic.strip_prefix(topics::RETRY_PREFIX) {
        let max = h.max_reconsume_times.unwrap_or(MAX_RECONSUME_TIMES_DEFAULT);
        if reconsume_times > max {
            topic_name = Cow::Owned(format!("{}{group}", topics::DLQ_PREFIX));
        }
    }
    let topic_name = &*topic_name;
    // Creating a topic is rare and its futures are large: they are boxed so that every
    // send's task (which holds this function's state) stays small.
    let topic = match shard.store.topic(topic_name) {
        Some(t) => t,
        None if topic_name.starts_with(topics::RETRY_PREFIX) || topic_name.starts_with(topics::DLQ_PREFIX) => {
            match Box::pin(topics::ensure_local_topic(shard, topic_name, 1, perm::READ_WRITE)).await {
                Ok(t) => t,
                Err(e) => return reply(&req, response::SYSTEM_ERROR, format!("creating `{topic_name}`: {e}")),
            }
        }
        None => match Box::pin(topics::auto_create(shard, topic_name)).await {
            Ok(t) => t,
            Err((code, remark)) => return reply(&req, code, remark),
        },
    };
    if topic.perm & perm::WRITE == 0 || !topics::is_client_writable(topic_name) {
        return reply(
            &req,
            response::NO_PERMISSION,
            format!("topic `{topic_name}` is not writable on {}", shard.broker_name),
        );
    }
    let queues = topic.write_queues as i32;
    let queue_id = if h.queue_id < 0 { shard.next_queue(queues) } else { h.queue_id };
    if queue_id >= queues {
        return reply(
            &req,
            response::SYSTEM_ERROR,
            format!(
                "queue {queue_id} of topic `{topic_name}` does not exist on {} ({queues} write queues)",
                shard.broker_name
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
        let wait = match append_one(shard, &base, delay, wait_store) {
            Ok(w) => w,
            Err(e) => return reply(&req, store_failure_code(&e), e.to_string()),
        };
        let placed = match wait.await {
            Ok(placed) => placed,
            Err(e) => {
                debug!(shard = shard.id, topic = %topic_name, error = %e, "send not confirmed");
                return reply(&req, store_failure_code(&e), e.to_string());
            }
        };
        let record = placed.records[0];
        send_answer(conn, &req, shard.store_host, record, queue_id, uniq_key);
        return None;
    }

    let items = match batch::decode(&req.body) {
        Ok(items) if !items.is_empty() => items,
        Ok(_) => return reply(&req, response::MESSAGE_ILLEGAL, "batch holds no messages"),
        Err(e) => return reply(&req, response::MESSAGE_ILLEGAL, format!("batch body: {e}")),
    };
    let msgs: Vec<Outgoing<'_>> =
        items.iter().map(|it| Outgoing { body: it.body, flag: it.flag, properties: it.properties, ..base }).collect();
    let wait = match append(shard, &msgs, wait_store) {
        Ok(w) => w,
        Err(e) => return reply(&req, store_failure_code(&e), e.to_string()),
    };
    let placed = match wait.await {
        Ok(placed) => placed,
        Err(e) => {
            debug!(shard = shard.id, topic = %topic_name, error = %e, "send not confirmed");
            return reply(&req, store_failure_code(&e), e.to_string());
        }
    };
    let mut msg_id = String::with_capacity(placed.records.len() * (msgid::ID_V4_LEN + 1));
    for (i, r) in placed.records.iter().enumerate() {
        if i > 0 {
            msg_id.push(',');
        }
        msgid::encode_into(shard.store_host, r.physical_offset.0 as i64, &mut msg_id);
    }
    let first = placed.records[0];
    let header = SendMessageResponseHeader {
        msg_id,
        queue_id,
        queue_offset: first.queue_offset.0 as i64,
        transaction_id: None,
        batch_uniq_id: None,
        recall_handle: None,
        msg_region: None,
        trace_on: None,
    };
    let mut answer = RemotingCommand::response_to(&req, response::SUCCESS, None);
    answer.set_ext_header(&header);
    Some(answer)
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

    /// The delay rule as `append` applies it.
    fn diverted(m: &Outgoing<'_>) -> Option<(i32, Vec<u8>)> {
        divert_delayed(m, properties::get(m.properties, keys::DELAY))
    }

    fn outgoing<'a>(topic: &'a str, props: &'a [u8]) -> Outgoing<'a> {
        Outgoing {
            topic,
            queue_id: 3,
            body: b"x",
            flag: 0,
            properties: props,
            sys_flag: 0,
            born_timestamp_ms: 0,
            born_host: "127.0.0.1:1".parse().unwrap(),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }

    #[test]
    fn delayed_messages_park_on_the_schedule_topic_with_their_destination() {
        let props = properties::encode([(keys::DELAY, "2"), (keys::TAGS, "a")]);
        let (queue, parked) = diverted(&outgoing("orders", &props)).unwrap();
        assert_eq!(queue, 1);
        assert_eq!(properties::get(&parked, keys::REAL_TOPIC), Some("orders"));
        assert_eq!(properties::get(&parked, keys::REAL_QID), Some("3"));
        assert_eq!(properties::get(&parked, keys::TAGS), Some("a"));
        // Levels past the table clamp to the last (2 h), as RocketMQ does.
        let props = properties::encode([(keys::DELAY, "99")]);
        assert_eq!(diverted(&outgoing("orders", &props)).unwrap().0, 17);
    }

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

    #[test]
    fn undelayed_and_already_parked_messages_stay() {
        assert!(diverted(&outgoing("orders", &properties::encode([(keys::TAGS, "a")]))).is_none());
        assert!(diverted(&outgoing("orders", &properties::encode([(keys::DELAY, "0")]))).is_none());
        let props = properties::encode([(keys::DELAY, "3")]);
        assert!(diverted(&outgoing(SCHEDULE_TOPIC, &props)).is_none());
    }
}
