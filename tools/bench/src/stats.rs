//! What the workers measure: message and byte counts, failures by kind, HDR latency
//! histograms, for one side (produce or consume) of one thread, per second and in total.
//!
//! Each executor owns its own [`Stats`] (no sharing, no atomics on the hot path); once a
//! second it sends a copy of the last interval to the main thread, and at the end its
//! totals. The main thread merges them: HDR histograms add without losing precision.
//!
//! Invariants: latencies are microseconds, clamped to [1, `LATENCY_MAX_US`]; only
//! successful requests go into latency histograms (failures are counted by kind, so a
//! failing broker never makes latency look better or worse than what it answered).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use rockshard_net::code::response;

use crate::limits::LATENCY_MAX_US;

/// Why a request did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// The broker answered with this response code.
    Code(i32),
    /// No answer within the timeout.
    Timeout,
    /// The connection closed (or could not be opened).
    Closed,
    /// The socket failed.
    Io,
    /// Bytes we could not decode, or a request we could not encode.
    Protocol,
    /// A pull response whose stored records did not decode.
    BadRecord,
    /// The route had no master with a writable queue to send to.
    NoRoute,
}

impl Failure {
    pub fn of(error: &rockshard::Error) -> Failure {
        match error {
            rockshard::Error::Timeout { .. } => Failure::Timeout,
            rockshard::Error::Closed { .. } => Failure::Closed,
            rockshard::Error::Remote { code, .. } => Failure::Code(*code),
            rockshard::Error::Protocol { .. } => Failure::Protocol,
            _ => Failure::Io,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Code(code) => match response::name(*code) {
                Some(name) => write!(f, "{name} ({code})"),
                None => write!(f, "code {code}"),
            },
            Failure::Timeout => f.write_str("timeout"),
            Failure::Closed => f.write_str("connection closed"),
            Failure::Io => f.write_str("i/o error"),
            Failure::Protocol => f.write_str("protocol error"),
            Failure::BadRecord => f.write_str("undecodable record"),
            Failure::NoRoute => f.write_str("no route (no master with writable queues)"),
        }
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // Three significant digits: 0.1% precision at every magnitude.
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("static histogram bounds are valid")
}

/// Microseconds, clamped into the histogram's range.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, LATENCY_MAX_US)
}

/// One side's figures over some period.
#[derive(Debug, Clone)]
pub struct Side {
    pub messages: u64,
    /// Message body bytes (the payload, not the wire bytes).
    pub bytes: u64,
    /// Requests answered with success.
    pub requests: u64,
    pub failures: BTreeMap<Failure, u64>,
    pub latency: Histogram<u64>,
}

impl Default for Side {
    fn default() -> Side {
        Side { messages: 0, bytes: 0, requests: 0, failures: BTreeMap::new(), latency: new_histogram() }
    }
}

impl Side {
    pub fn failures_total(&self) -> u64 {
        self.failures.values().sum()
    }

    pub fn merge(&mut self, other: &Side) {
        self.messages += other.messages;
        self.bytes += other.bytes;
        self.requests += other.requests;
        for (failure, n) in &other.failures {
            *self.failures.entry(*failure).or_default() += n;
        }
        self.latency.add(&other.latency).expect("histograms of equal bounds add");
    }
}

/// Everything one thread measured over some period.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub produce: Side,
    pub consume: Side,
    /// Born timestamp to delivery, per consumed message (e2e only).
    pub e2e: Option<Histogram<u64>>,
}

impl Snapshot {
    pub fn merge(&mut self, other: &Snapshot) {
        self.produce.merge(&other.produce);
        self.consume.merge(&other.consume);
        if let Some(e2e) = &other.e2e {
            self.e2e.get_or_insert_with(new_histogram).add(e2e).expect("histograms of equal bounds add");
        }
    }
}

/// A thread's running figures: the current second and the whole run (after the
/// warm-up, if there is one).
#[derive(Debug, Default)]
pub struct Stats {
    pub interval: Snapshot,
    pub total: Snapshot,
    /// While set, `total` holds warm-up figures that the run will throw away.
    warming_up: bool,
}

impl Stats {
    /// Figures of a run that starts with a warm-up (`true`) or is measured from the start.
    pub fn new(warming_up: bool) -> Stats {
        Stats { warming_up, ..Stats::default() }
    }

    /// The warm-up is over: the totals start again from here. Intervals go on as they
    /// were (the current one is the caller's to take first).
    pub fn end_warmup(&mut self) {
        self.total = Snapshot::default();
        self.warming_up = false;
    }

    /// The totals measured after the warm-up; empty if the run ended before it was over.
    pub fn take_total(&mut self) -> Snapshot {
        let total = std::mem::take(&mut self.total);
        if self.warming_up {
            Snapshot::default()
        } else {
            total
        }
    }

    pub fn sent(&mut self, messages: u64, bytes: u64, latency: Duration) {
        let us = micros(latency);
        for s in [&mut self.interval.produce, &mut self.total.produce] {
            s.messages += messages;
            s.bytes += bytes;
            s.requests += 1;
            s.latency.saturating_record(us);
        }
    }

    /// A successful pull and what it delivered; `latency` is the pull's round trip.
    pub fn pulled(&mut self, messages: u64, bytes: u64, latency: Duration) {
        let us = micros(latency);
        for s in [&mut self.interval.consume, &mut self.total.consume] {
            s.messages += messages;
            s.bytes += bytes;
            s.requests += 1;
            s.latency.saturating_record(us);
        }
    }

    pub fn delivered(&mut self, latency_us: u64) {
        let us = latency_us.clamp(1, LATENCY_MAX_US);
        for snap in [&mut self.interval, &mut self.total] {
            snap.e2e.get_or_insert_with(new_histogram).saturating_record(us);
        }
    }

    pub fn produce_failed(&mut self, failure: Failure) {
        for s in [&mut self.interval.produce, &mut self.total.produce] {
            *s.failures.entry(failure).or_default() += 1;
        }
    }

    pub fn consume_failed(&mut self, failure: Failure) {
        for s in [&mut self.interval.consume, &mut self.total.consume] {
            *s.failures.entry(failure).or_default() += 1;
        }
    }

    /// The interval so far, and a fresh one started.
    pub fn take_interval(&mut self) -> Snapshot {
        std::mem::take(&mut self.interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_reset_totals_accumulate_and_merges_add_up() {
        let mut a = Stats::default();
        a.sent(4, 400, Duration::from_micros(100));
        a.produce_failed(Failure::Code(response::SYSTEM_BUSY));
        let first = a.take_interval();
        a.sent(1, 100, Duration::from_micros(300));
        a.delivered(2_000);
        assert_eq!(first.produce.messages, 4);
        assert_eq!(first.produce.failures_total(), 1);
        assert!(first.e2e.is_none());
        assert_eq!(a.interval.produce.messages, 1);
        assert_eq!(a.total.produce.messages, 5);
        assert_eq!(a.total.produce.requests, 2);
        assert_eq!(a.total.produce.latency.len(), 2);

        let mut b = Stats::default();
        b.pulled(7, 700, Duration::from_millis(2));
        b.consume_failed(Failure::Timeout);
        b.delivered(1_000);
        let mut merged = a.total.clone();
        merged.merge(&b.total);
        assert_eq!(merged.produce.messages, 5);
        assert_eq!(merged.consume.messages, 7);
        assert_eq!(merged.consume.failures[&Failure::Timeout], 1);
        let e2e = merged.e2e.expect("e2e recorded");
        assert_eq!(e2e.len(), 2);
        assert_eq!(e2e.max(), e2e.highest_equivalent(2_000));
    }

    #[test]
    fn warm_up_figures_stay_out_of_the_totals() {
        let mut s = Stats::new(true);
        s.sent(10, 1000, Duration::from_micros(100));
        s.produce_failed(Failure::NoRoute);
        let warm = s.take_interval();
        assert_eq!(warm.produce.messages, 10, "the warm-up second still has its figures");
        s.end_warmup();
        s.sent(3, 300, Duration::from_micros(200));
        let total = s.take_total();
        assert_eq!((total.produce.messages, total.produce.requests), (3, 1));
        assert_eq!(total.produce.failures_total(), 0);
        assert_eq!(total.produce.latency.len(), 1);

        let mut cut_short = Stats::new(true);
        cut_short.sent(5, 500, Duration::from_micros(100));
        assert_eq!(cut_short.take_total().produce.messages, 0, "a run that never left its warm-up measured nothing");
        let mut measured = Stats::new(false);
        measured.sent(5, 500, Duration::from_micros(100));
        assert_eq!(measured.take_total().produce.messages, 5);
    }

    #[test]
    fn latencies_are_clamped_into_the_histogram() {
        assert_eq!(micros(Duration::ZERO), 1);
        assert_eq!(micros(Duration::from_secs(100_000)), LATENCY_MAX_US);
        let mut s = Stats::default();
        s.delivered(u64::MAX);
        assert!(s.total.e2e.expect("recorded").max() >= LATENCY_MAX_US);
    }

    #[test]
    fn failures_read_as_response_code_names() {
        assert_eq!(Failure::Code(2).to_string(), "SYSTEM_BUSY (2)");
        assert_eq!(Failure::Code(10).to_string(), "FLUSH_DISK_TIMEOUT (10)");
        assert_eq!(Failure::Code(9999).to_string(), "code 9999");
        assert_eq!(Failure::Timeout.to_string(), "timeout");
        assert_eq!(Failure::NoRoute.to_string(), "no route (no master with writable queues)");
        let closed = rockshard::Error::Closed { peer: "x".into() };
        assert_eq!(Failure::of(&closed), Failure::Closed);
    }
}
