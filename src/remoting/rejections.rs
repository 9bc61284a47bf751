//! Rejected requests in the log: each answer that refuses a request is logged at WARN
//! with the request's code, language and version, the answer's code and remark, and the
//! peer, so the next client incompatibility shows in the server's log and not only to a
//! client that may drop the remark (the C++ client's refused heartbeats went unseen).
//!
//! Owns [`RejectionLog`], one per listener (a broker shard, a NameServer), and the rule
//! of which answer codes are rejections ([`is_rejection`]).
//!
//! Invariants: at most [`REJECTION_LOG_LINES_MAX`] lines per
//! [`REJECTION_LOG_INTERVAL_MS`] per listener, so a misbehaving client cannot flood the
//! log; what was held back is counted and the count is logged with the next line let
//! through. The limiter is pure over the time it is given.
//!
//! Runs on the listener's executor (a shard or the NameServer); `Cell`s, no locks.
//!
//! Deliberately not here: deciding the answers (the services do), logging answers that
//! are part of normal operation (see [`is_rejection`]), and malformed frames (the
//! server closes those connections and logs them itself).

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rockshard_net::code::response;
use rockshard_net::{LanguageCode, RemotingCommand};
use tracing::warn;

use crate::limits::{REJECTION_LOG_INTERVAL_MS, REJECTION_LOG_LINES_MAX};

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

/// What the limiter decided for one rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Log it; `held_back` rejections were not logged since the last line let through.
    Log { held_back: u64 },
    /// The listener's budget for this interval is spent: count it only.
    HoldBack,
}

/// Rate-limited WARN lines for one listener's rejected requests.
pub struct RejectionLog {
    /// Names the listener in every line (`broker-a-s0`, `namesrv 127.0.0.1:9876`).
    listener: String,
    /// Start of the current interval; `None` before the first rejection.
    interval_start: Cell<Option<Instant>>,
    /// Lines logged in the current interval.
    logged: Cell<u32>,
    /// Rejections not logged since the last line let through.
    held_back: Cell<u64>,
}

impl RejectionLog {
    pub fn new(listener: impl Into<String>) -> RejectionLog {
        RejectionLog {
            listener: listener.into(),
            interval_start: Cell::new(None),
            logged: Cell::new(0),
            held_back: Cell::new(0),
        }
    }

    /// Logs `answer` at WARN when it rejects `request` (see [`is_rejection`]), within the
    /// listener's rate limit.
    pub fn note(&self, request: RequestSummary, answer: &RemotingCommand, peer: SocketAddr) {
        if !is_rejection(answer.code) {
            return;
        }
        let held_back = match self.admit(Instant::now()) {
            Admission::HoldBack => return,
            Admission::Log { held_back } => held_back,
        };
        if held_back > 0 {
            warn!(
                listener = %self.listener, held_back, limit = REJECTION_LOG_LINES_MAX,
                interval_ms = REJECTION_LOG_INTERVAL_MS, "rejected requests not logged (rate limit)"
            );
        }
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
            "request rejected"
        );
    }

    /// The limiter: the first [`REJECTION_LOG_LINES_MAX`] rejections of each interval are
    /// logged, the rest counted. An interval starts with the first rejection after the
    /// previous one ended, so a quiet listener costs nothing.
    fn admit(&self, now: Instant) -> Admission {
        let interval = Duration::from_millis(REJECTION_LOG_INTERVAL_MS);
        let expired = self.interval_start.get().is_none_or(|start| now.saturating_duration_since(start) >= interval);
        if expired {
            self.interval_start.set(Some(now));
            self.logged.set(0);
        }
        if self.logged.get() >= REJECTION_LOG_LINES_MAX {
            self.held_back.set(self.held_back.get().saturating_add(1));
            return Admission::HoldBack;
        }
        self.logged.set(self.logged.get() + 1);
        Admission::Log { held_back: self.held_back.replace(0) }
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

    #[test]
    fn the_limiter_lets_a_bounded_number_through_per_interval_and_counts_the_rest() {
        let log = RejectionLog::new("test");
        let t0 = Instant::now();
        let interval = Duration::from_millis(REJECTION_LOG_INTERVAL_MS);
        for i in 0..REJECTION_LOG_LINES_MAX {
            assert_eq!(log.admit(t0), Admission::Log { held_back: 0 }, "line {i}");
        }
        for _ in 0..5 {
            assert_eq!(log.admit(t0 + interval / 2), Admission::HoldBack);
        }
        // The next interval lets lines through again; its first carries the count.
        assert_eq!(log.admit(t0 + interval), Admission::Log { held_back: 5 });
        assert_eq!(log.admit(t0 + interval), Admission::Log { held_back: 0 });
        // A long quiet spell: a fresh interval starts at the next rejection.
        let later = t0 + interval * 10;
        for _ in 0..REJECTION_LOG_LINES_MAX {
            assert!(matches!(log.admit(later), Admission::Log { .. }));
        }
        assert_eq!(log.admit(later + interval - Duration::from_millis(1)), Admission::HoldBack);
    }
}
