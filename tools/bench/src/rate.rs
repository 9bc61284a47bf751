//! When to send: the open-loop schedule of one producer, and the run's message budget.
//!
//! Open loop means sends happen at times fixed in advance (start + k × interval), not
//! when the previous answer arrives. A slow broker then shows up as latency measured from
//! the scheduled time, instead of silently lowering the send rate (the "coordinated
//! omission" a closed-loop tool suffers). Producers get staggered phases so their sends
//! interleave instead of bursting together.
//!
//! Invariants: scheduled times are strictly increasing and never drift (each is computed
//! from the start, not from the previous one); the budget never grants more than its
//! total, across all threads.
//!
//! Pure: no clocks are read here (callers pass `start`), so both are unit-tested.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The send times of one producer.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    /// Nanoseconds between two sends of this producer; `None`: closed loop.
    interval_ns: Option<f64>,
    /// Fraction of an interval this producer is shifted by, in [0, 1).
    phase: f64,
    next: u64,
}

impl Schedule {
    /// As fast as possible: no scheduled times.
    pub fn closed_loop() -> Schedule {
        Schedule { start: Instant::now(), interval_ns: None, phase: 0.0, next: 0 }
    }

    /// Producer `index` of `producers` sharing `messages_per_s`, sending `batch` messages per
    /// request. All producers together then send `messages_per_s` messages per second.
    pub fn open_loop(start: Instant, messages_per_s: u64, batch: usize, index: usize, producers: usize) -> Schedule {
        let requests_per_s = messages_per_s as f64 / batch.max(1) as f64 / producers.max(1) as f64;
        let interval_ns = 1e9 / requests_per_s;
        let phase = index as f64 / producers.max(1) as f64;
        Schedule { start, interval_ns: Some(interval_ns), phase, next: 0 }
    }

    /// The scheduled time of the next send; `None` in closed loop (send now).
    pub fn next_send(&mut self) -> Option<Instant> {
        let interval = self.interval_ns?;
        let offset_ns = (self.next as f64 + self.phase) * interval;
        self.next += 1;
        Some(self.start + Duration::from_nanos(offset_ns as u64))
    }
}

/// The messages a run may still send (or consume), shared by every thread.
#[derive(Debug)]
pub struct Budget {
    remaining: AtomicU64,
}

impl Budget {
    /// `None`: unlimited.
    pub fn new(total: Option<u64>) -> Budget {
        Budget { remaining: AtomicU64::new(total.unwrap_or(u64::MAX)) }
    }

    /// Takes up to `wanted` messages; returns how many were granted (0: the budget is spent).
    pub fn claim(&self, wanted: u64) -> u64 {
        let mut current = self.remaining.load(Ordering::Relaxed);
        loop {
            let granted = current.min(wanted);
            if granted == 0 {
                return 0;
            }
            match self.remaining.compare_exchange_weak(current, current - granted, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return granted,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_loop_has_no_schedule() {
        let mut s = Schedule::closed_loop();
        assert_eq!(s.next_send(), None);
        assert_eq!(s.next_send(), None);
    }

    #[test]
    fn open_loop_times_are_evenly_spaced_from_the_start_without_drift() {
        let start = Instant::now();
        // 1000 msgs/s, batch 1, one producer: one send per millisecond.
        let mut s = Schedule::open_loop(start, 1000, 1, 0, 1);
        let times: Vec<Instant> = (0..5).map(|_| s.next_send().expect("open loop")).collect();
        for (k, t) in times.iter().enumerate() {
            assert_eq!(*t - start, Duration::from_millis(k as u64));
        }
        // The millionth send is exactly 1000 s after the start: no accumulated rounding.
        let mut far = Schedule::open_loop(start, 3, 1, 0, 1);
        for _ in 0..999_999 {
            far.next_send();
        }
        let t = far.next_send().expect("open loop") - start;
        let expected = Duration::from_secs_f64(999_999.0 / 3.0);
        assert!(t.abs_diff(expected) < Duration::from_micros(1), "{t:?} vs {expected:?}");
    }

    #[test]
    fn producers_share_the_rate_and_interleave() {
        let start = Instant::now();
        let (rate, batch, producers) = (40_000u64, 4usize, 5usize);
        let mut schedules: Vec<Schedule> =
            (0..producers).map(|i| Schedule::open_loop(start, rate, batch, i, producers)).collect();
        // Count the messages all producers send in the first second.
        let mut messages = 0u64;
        let mut all = Vec::new();
        for s in &mut schedules {
            while let Some(t) = s.next_send() {
                if t - start >= Duration::from_secs(1) {
                    break;
                }
                messages += batch as u64;
                all.push(t);
            }
        }
        assert_eq!(messages, rate);
        // Phases spread the producers: no two sends share a time.
        all.sort();
        all.dedup();
        assert_eq!(all.len() as u64, rate / batch as u64);
        // Producer 1 starts a fifth of an interval (interval = 500 µs) after producer 0.
        let mut p1 = Schedule::open_loop(start, rate, batch, 1, producers);
        assert_eq!(p1.next_send().expect("open loop") - start, Duration::from_micros(100));
    }

    #[test]
    fn budget_grants_exactly_its_total_across_threads() {
        let budget = std::sync::Arc::new(Budget::new(Some(10_007)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    let mut got = 0;
                    loop {
                        let g = budget.claim(10);
                        if g == 0 {
                            return got;
                        }
                        assert!(g <= 10);
                        got += g;
                    }
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
        assert_eq!(total, 10_007);
        assert_eq!(budget.claim(1), 0);
        let unlimited = Budget::new(None);
        assert_eq!(unlimited.claim(1 << 40), 1 << 40);
    }
}
