//! How handlers answer: the one mapping from the broker's internal errors to RocketMQ
//! response codes ([`error_code`]), and the few shapes every answer takes (a refusal
//! with a remark, an unreadable header, a failure of ours, a SUCCESS with a header or a
//! body).
//!
//! Every handler answers a failure of the store or of replication through [`failure`]
//! (so the code a `FlushTimeout` or a lost leadership deserves is decided here and only
//! here) and a header it cannot read through [`bad_header`]. Refusals that are the
//! request's fault (an unknown topic, a bad queue id) are each handler's own, answered
//! with [`reply`] and the code RocketMQ uses for them.
//!
//! Invariants: the codes are RocketMQ's (`net::code::response`), stable forever; the
//! remark of a failure is the error's own text, so logs and clients read the same words.
//!
//! Pure: no shard, no I/O. Deliberately not here: logging refusals (the dispatcher does,
//! rate-limited) and deciding which answers are refusals (`remoting::rejections`).

use rockshard_net::code::response;
use rockshard_net::headers::CommandHeader;
use rockshard_net::RemotingCommand;
use rockshard_storage::StorageError;

use crate::Error;

/// The wire code a failure on our side deserves: the store's reason, the
/// replication's (not the leader, not committed in time), else SYSTEM_ERROR.
pub fn error_code(e: &Error) -> i32 {
    match e {
        Error::Storage(se) => storage_code(se),
        Error::Replication(re) => replication_code(re),
        _ => response::SYSTEM_ERROR,
    }
}

/// RocketMQ's mapping of PutMessageStatus.
fn storage_code(e: &StorageError) -> i32 {
    match e {
        StorageError::FlushTimeout { .. } => response::FLUSH_DISK_TIMEOUT,
        StorageError::Busy { .. } => response::SYSTEM_BUSY,
        StorageError::MessageTooLarge { .. } | StorageError::InvalidArgument(_) | StorageError::Message(_) => {
            response::MESSAGE_ILLEGAL
        }
        StorageError::Closed => response::SERVICE_NOT_AVAILABLE,
        _ => response::SYSTEM_ERROR,
    }
}

/// Not the leader (or no longer) is a reason to try another broker, which clients do
/// for SERVICE_NOT_AVAILABLE; a commit that timed out may still happen, which is what
/// RocketMQ's FLUSH_SLAVE_TIMEOUT says.
fn replication_code(e: &rockshard_raft::Error) -> i32 {
    match e {
        rockshard_raft::Error::Timeout { .. } => response::FLUSH_SLAVE_TIMEOUT,
        rockshard_raft::Error::Storage(se) => storage_code(se),
        _ => response::SERVICE_NOT_AVAILABLE,
    }
}

/// An answer with `code` and a remark; for the many "no, because" replies.
pub fn reply(req: &RemotingCommand, code: i32, remark: impl Into<String>) -> Option<RemotingCommand> {
    Some(RemotingCommand::response_to(req, code, Some(remark.into())))
}

/// The answer for a request whose header could not be read.
pub fn bad_header(req: &RemotingCommand, e: rockshard_net::Error) -> Option<RemotingCommand> {
    reply(req, response::INVALID_PARAMETER, format!("request code {}: {e}", req.code))
}

/// The answer for a request that failed on our side: [`error_code`]'s code, the
/// error's text as the remark.
pub fn failure(req: &RemotingCommand, e: &Error) -> Option<RemotingCommand> {
    reply(req, error_code(e), e.to_string())
}

/// The answer for a store read that failed.
pub fn storage_failure(req: &RemotingCommand, e: StorageError) -> Option<RemotingCommand> {
    failure(req, &Error::Storage(e))
}

/// A SUCCESS answer.
pub fn success(req: &RemotingCommand) -> Option<RemotingCommand> {
    Some(RemotingCommand::response_to(req, response::SUCCESS, None))
}

/// A SUCCESS answer carrying response header `header`.
pub fn success_with_header<H: CommandHeader>(req: &RemotingCommand, header: &H) -> Option<RemotingCommand> {
    let mut answer = RemotingCommand::response_to(req, response::SUCCESS, None);
    answer.set_ext_header(header);
    Some(answer)
}

/// A SUCCESS answer carrying `body`.
pub fn success_with_body(req: &RemotingCommand, body: impl Into<bytes::Bytes>) -> Option<RemotingCommand> {
    Some(RemotingCommand::response_to(req, response::SUCCESS, None).with_body(body))
}

/// TOPIC_NOT_EXIST for a topic this shard (`broker_name`) does not have.
pub fn no_topic(req: &RemotingCommand, topic: &str, broker_name: &str) -> Option<RemotingCommand> {
    reply(req, response::TOPIC_NOT_EXIST, format!("topic `{topic}` does not exist on {broker_name}"))
}

/// Our own bodies always encode; should one ever not, the client hears why.
pub fn encode_failed(req: &RemotingCommand, e: rockshard_net::Error) -> Option<RemotingCommand> {
    reply(req, response::SYSTEM_ERROR, format!("encoding the answer to request code {}: {e}", req.code))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn store_failures_map_to_rocketmqs_put_message_codes() {
        let cases = [
            (StorageError::FlushTimeout { offset: 1, timeout_ms: 5 }, response::FLUSH_DISK_TIMEOUT),
            (StorageError::Busy { pending_bytes: 2, limit_bytes: 1 }, response::SYSTEM_BUSY),
            (StorageError::MessageTooLarge { size: 9, segment_size: 8 }, response::MESSAGE_ILLEGAL),
            (StorageError::InvalidArgument("x".into()), response::MESSAGE_ILLEGAL),
            (StorageError::Closed, response::SERVICE_NOT_AVAILABLE),
            (StorageError::Truncated { offset: 3 }, response::SYSTEM_ERROR),
        ];
        for (e, code) in cases {
            assert_eq!(error_code(&Error::Storage(e.clone())), code, "{e}");
            let raft = rockshard_raft::Error::Storage(e.clone());
            assert_eq!(error_code(&Error::Replication(raft)), code, "through replication: {e}");
        }
    }

    #[test]
    fn replication_failures_send_clients_elsewhere_or_say_not_known_yet() {
        use rockshard_raft::Error as Raft;
        let cases = [
            (Raft::NotLeader { leader: Some(2) }, response::SERVICE_NOT_AVAILABLE),
            (Raft::Stopped(Arc::from("closed")), response::SERVICE_NOT_AVAILABLE),
            (Raft::Dropped("lost leadership"), response::SERVICE_NOT_AVAILABLE),
            (Raft::Timeout { timeout_ms: 5_000 }, response::FLUSH_SLAVE_TIMEOUT),
        ];
        for (e, code) in cases {
            assert_eq!(error_code(&Error::Replication(e.clone())), code, "{e}");
        }
        assert_eq!(error_code(&Error::Usage("x".into())), response::SYSTEM_ERROR);
    }

    #[test]
    fn a_failure_answer_carries_the_errors_own_words() {
        let req = RemotingCommand::new_request(10, Default::default());
        let e = Error::Replication(rockshard_raft::Error::NotLeader { leader: None });
        let answer = failure(&req, &e).expect("answered");
        assert_eq!(answer.code, response::SERVICE_NOT_AVAILABLE);
        assert_eq!(answer.remark.as_deref(), Some("not the leader (leader: None)"));
        let answer =
            bad_header(&req, rockshard_net::Error::MissingField { header: "H", field: "f" }).expect("answered");
        assert_eq!(answer.code, response::INVALID_PARAMETER);
        assert!(answer.remark.as_deref().is_some_and(|r| r.starts_with("request code 10: ")), "{answer:?}");
    }
}
