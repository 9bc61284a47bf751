//! Storing messages: [`Shard::append`], the one way anything in the broker stores a message —
//! producers' sends, retries, dead letters, delayed deliveries, transaction commits.
//!
//! The delay rule is applied here, once for all of them, as RocketMQ does: a message
//! whose DELAY property is above 0 (and that is not a transaction half, nor already on
//! the delay topic) is parked on `SCHEDULE_TOPIC_XXXX`, queue `level - 1`, with its real
//! topic and queue in REAL_TOPIC / REAL_QID; the delayed-delivery operations
//! (`ops::delay`) move it back when due.
//!
//! Alone, the records are appended to the shard's store in one call (a batch becomes
//! one write). In a replicated group they are proposed to the shard's Raft group
//! instead (leader only: a follower's proposal fails "not the leader"), encoded once in
//! the stored format (`replication::encode_records`); the answer then waits for the
//! commit whatever WAIT says, because SEND_OK means a majority has it.
//!
//! The single send is the broker's hottest path: [`Shard::append_one`] stores one message
//! without building any list.
//!
//! Runs on the shard's executor; holds no borrow of shard state at all.
//!
//! Deliberately not here: checking a send (topic, permission, queue, size: the
//! handlers do) and answering it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::broker::state::delay_rules::SCHEDULE_TOPIC;
use rockshard_net::properties::{self, keys};
use rockshard_net::stored::{sys_flag, RecordFields};
use rockshard_raft::Proposal;
use rockshard_storage::{AppendResult, AppendWait, StorageError};

use super::replication::encode_records;
use super::Shard;
use crate::limits::DELAY_LEVEL_COUNT;

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

/// The record fields of `m`, stored where `diverted` says (or where it was sent), with
/// this shard's address as STOREHOST.
fn record_fields<'a>(
    store_host: SocketAddr,
    m: &Outgoing<'a>,
    diverted: &'a Option<(i32, Vec<u8>)>,
) -> RecordFields<'a> {
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
        store_host,
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

impl Shard {
    /// Stores `msgs` on this shard (in one append or one proposal), applying the delay
    /// rule. Awaiting the result gives the records' places and the durability answer.
    pub fn append(&self, msgs: &[Outgoing<'_>], wait_store: bool) -> crate::Result<Stored> {
        if let [m] = msgs {
            return self.append_one(m, properties::get(m.properties, keys::DELAY), wait_store);
        }
        let diverted: Vec<Option<(i32, Vec<u8>)>> =
            msgs.iter().map(|m| divert_delayed(m, properties::get(m.properties, keys::DELAY))).collect();
        let fields: Vec<RecordFields<'_>> =
            msgs.iter().zip(&diverted).map(|(m, d)| record_fields(self.store_host, m, d)).collect();
        self.store_fields(&fields, wait_store)
    }

    /// [`Shard::append`] of one message whose DELAY property the caller already looked
    /// up: the common send, stored without building any list.
    pub fn append_one(&self, m: &Outgoing<'_>, delay: Option<&str>, wait_store: bool) -> crate::Result<Stored> {
        let diverted = divert_delayed(m, delay);
        let fields = record_fields(self.store_host, m, &diverted);
        self.store_fields(std::slice::from_ref(&fields), wait_store)
    }

    /// Appends to the store, or, in a replicated group, proposes the records to the
    /// shard's Raft group (leader only: a follower answers "not the leader" and the
    /// client retries elsewhere). A replicated send always waits for the commit, whatever
    /// WAIT says: SEND_OK means a majority has it.
    fn store_fields(&self, fields: &[RecordFields<'_>], wait_store: bool) -> crate::Result<Stored> {
        let Some(replica) = self.replica.get() else {
            return Ok(Stored::Local(self.store.append(fields, wait_store)?));
        };
        let data =
            encode_records(fields).map_err(|e| crate::Error::Storage(StorageError::InvalidArgument(e.to_string())))?;
        Ok(Stored::Replicated(replica.propose(data)?))
    }
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
    fn undelayed_and_already_parked_messages_stay() {
        assert!(diverted(&outgoing("orders", &properties::encode([(keys::TAGS, "a")]))).is_none());
        assert!(diverted(&outgoing("orders", &properties::encode([(keys::DELAY, "0")]))).is_none());
        let props = properties::encode([(keys::DELAY, "3")]);
        assert!(diverted(&outgoing(SCHEDULE_TOPIC, &props)).is_none());
    }
}
