//! Rejected requests in the log: each answer that refuses a request is logged at WARN
//! with the request's code, language and version, the answer's code and remark, and the
//! peer, so the next client incompatibility shows in the server's log and not only to a
//! client that may drop the remark (the C++ client's refused heartbeats went unseen).
//!
//! Owns [`RejectionLog`], one per listener (a broker shard, a NameServer), and the rule
//! of which answer codes are rejections ([`is_rejection`]).
//!
//! Invariants: at most [`REJECTION_LOG_LINES_MAX`] lines per
//! [`REJECTION_LOG_INTERVAL_MS`] per listener (a [`RateLimited`] with that burst), so a
//! misbehaving client cannot flood the log; what was held back is counted and the count
//! ends the next line let through.
//!
//! Runs on the listener's executor (a shard or the NameServer); `Cell`s, no locks.
//!
//! Deliberately not here: deciding the answers (the services do), logging answers that
//! are part of normal operation (see [`is_rejection`]), and malformed frames (the
//! server closes those connections and logs them itself).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rockshard_net::code::response;
use rockshard_net::{LanguageCode, RemotingCommand};
use tracing::warn;

use crate::limits::{REJECTION_LOG_INTERVAL_MS, REJECTION_LOG_LINES_MAX};
use crate::logs::RateLimited;

/// Whether an answer with `code` refuses its request: the request could not be read or
/// served as sent. These are the codes a client incompatibility produces: SYSTEM_ERROR
/// (Java's and our answer to a body or header that does not decode, and to requests
/// refused outright), REQUEST_CODE_NOT_SUPPORTED, INVALID_PARAMETER (a header that does
/// not parse), MESSAGE_ILLEGAL, SUBSCRIPTION_PARSE_FAILED, VERSION_NOT_SUPPORTED and
/// ILLEGAL_OPERATION.
///
/// Not rejections, and never logged here: the answers of normal operation, which
/// RocketMQ clients meet all the time and handle — PULL_NOT_FOUND, PULL_RETRY_IMMEDIATELY
/// and PULL_OFFSET_MOVED (pull flow), QUERY_NOT_FOUND (a group without an offset yet),
/// TOPIC_NOT_EXIST (clients probe routes of topics before they exist), SUBSCRIPTION_NOT_EXIST
/// (a pull racing the first heartbeat), CONSUMER_NOT_ONLINE, NO_PERMISSION and
/// TOPIC_EXIST_ALREADY (what the configuration says); and the answers of load and
/// availability — SYSTEM_BUSY, FLUSH_DISK_TIMEOUT, FLUSH_SLAVE_TIMEOUT,
/// SLAVE_NOT_AVAILABLE, SERVICE_NOT_AVAILABLE, NOT_LEADER_FOR_QUEUE — which the store
/// and replication report where they arise, and which would drown real rejections.
pub fn is_rejection(code: i32) -> bool {
    matches!(
        code,
        response::SYSTEM_ERROR
            | response::REQUEST_CODE_NOT_SUPPORTED
            | response::INVALID_PARAMETER
            | response::MESSAGE_ILLEGAL
            | response::SUBSCRIPTION_PARSE_FAILED
            | response::VERSION_NOT_SUPPORTED
            | response::ILLEGAL_OPERATION
    )
}

/// What the log says about a request: taken before a handler consumes the request, so
/// nothing is cloned on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestSummary {
    pub code: i32,
    pub language: LanguageCode,
    pub version: i32,
    pub oneway: bool,
}

impl RequestSummary {
    pub fn of(request: &RemotingCommand) -> RequestSummary {
        RequestSummary {
            code: request.code,
            language: request.language,
            version: request.version,
            oneway: request.is_oneway(),
        }
    }
}

/// Rate-limited WARN lines for one listener's rejected requests.
pub struct RejectionLog {
    /// Names the listener in every line (`broker-a-s0`, `namesrv 127.0.0.1:9876`).
    listener: String,
    /// A few lines per interval in full (each names its client), the rest counted.
    limit: RateLimited,
}

impl RejectionLog {
    pub fn new(listener: impl Into<String>) -> RejectionLog {
        RejectionLog {
            listener: listener.into(),
            limit: RateLimited::with_burst(Duration::from_millis(REJECTION_LOG_INTERVAL_MS), REJECTION_LOG_LINES_MAX),
        }
    }

    /// Logs `answer` at WARN when it rejects `request` (see [`is_rejection`]), within the
    /// listener's rate limit; a line let through after some were held back says how many.
    pub fn note(&self, request: RequestSummary, answer: &RemotingCommand, peer: SocketAddr) {
        if !is_rejection(answer.code) {
            return;
        }
        let Some(held) = self.limit.allow(Instant::now()) else { return };
        warn!(
            listener = %self.listener,
            %peer,
            request_code = request.code,
            language = %request.language.name(),
            version = request.version,
            oneway = request.oneway,
            response_code = answer.code,
            response = %response::name(answer.code).unwrap_or("?"),
            // Quoted (Debug), so where a remark with spaces ends is plain.
            remark = answer.remark.as_deref().unwrap_or(""),
            "request rejected{held}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_answers_are_not_rejections() {
        for code in [
            response::SYSTEM_ERROR,
            response::REQUEST_CODE_NOT_SUPPORTED,
            response::INVALID_PARAMETER,
            response::MESSAGE_ILLEGAL,
            response::SUBSCRIPTION_PARSE_FAILED,
        ] {
            assert!(is_rejection(code), "{code}");
        }
        for code in [
            response::SUCCESS,
            response::PULL_NOT_FOUND,
            response::PULL_RETRY_IMMEDIATELY,
            response::PULL_OFFSET_MOVED,
            response::QUERY_NOT_FOUND,
            response::TOPIC_NOT_EXIST,
            response::SUBSCRIPTION_NOT_EXIST,
            response::CONSUMER_NOT_ONLINE,
            response::SYSTEM_BUSY,
            response::FLUSH_DISK_TIMEOUT,
            response::SERVICE_NOT_AVAILABLE,
        ] {
            assert!(!is_rejection(code), "{code}");
        }
    }
}
