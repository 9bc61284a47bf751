//! What the producer and consumer tasks of one executor share: the run-wide state
//! ([`Shared`], the only thing crossing threads, all atomics), the executor's own context
//! ([`Ctx`]: stats, stop signals), broker connections that reconnect, and the wall clock
//! used for born timestamps.
//!
//! Invariants: workers never touch another executor's state; they see the run-wide stop
//! flags through their executor's [`Signal`]s, which one watcher task per executor sets
//! from the atomics every `STOP_POLL_MS` (a timer, never a spin). Every wait a worker
//! does can be cut short by its stop signal.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::timer::Timer;
use rockshard::remoting::client::Client;

use crate::args::Config;
use crate::rate::Budget;
use crate::setup::Plan;
use crate::stats::{Failure, Stats};

/// Run-wide state, shared by every executor and the main thread.
pub struct Shared {
    pub cfg: Config,
    pub plan: Plan,
    pub clock: Clock,
    /// Messages producers may still send (`--count`).
    pub budget: Budget,
    pub stop_produce: AtomicBool,
    pub stop_consume: AtomicBool,
    /// Messages the broker acknowledged.
    pub produced_ok: AtomicU64,
    /// Messages consumers received.
    pub consumed: AtomicU64,
    /// Executors whose producers are still running.
    pub producing_threads: AtomicUsize,
}

/// Maps `Instant`s to Unix time, from one reading of both clocks taken at the start, so
/// every thread computes the same born timestamp for the same instant.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_unix_us: i64,
}

impl Clock {
    pub fn now() -> Clock {
        let base_unix_us = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as i64).unwrap_or(0);
        Clock { base: Instant::now(), base_unix_us }
    }

    pub fn unix_us(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.base) {
            Some(after) => self.base_unix_us + after.as_micros() as i64,
            None => self.base_unix_us - (self.base - at).as_micros() as i64,
        }
    }

    pub fn unix_ms(&self, at: Instant) -> i64 {
        self.unix_us(at).div_euclid(1000)
    }

    pub fn base(&self) -> Instant {
        self.base
    }
}

/// A one-shot flag tasks of one executor can wait on.
#[derive(Default)]
pub struct Signal {
    set: Cell<bool>,
    wakers: RefCell<Vec<Waker>>,
}

impl Signal {
    pub fn set(&self) {
        if !self.set.replace(true) {
            for waker in std::mem::take(&mut *self.wakers.borrow_mut()) {
                waker.wake();
            }
        }
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.set.get() {
                return Poll::Ready(());
            }
            self.wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Sleeps until `at`; false if the signal was set first.
    pub async fn sleep_until(&self, at: Instant) -> bool {
        let wait = at.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return !self.is_set();
        }
        self.sleep(wait).await
    }

    /// Sleeps for `d`; false if the signal was set first.
    pub async fn sleep(&self, d: Duration) -> bool {
        let slept = async {
            Timer::new(d).await;
            true
        };
        let stopped = async {
            self.wait().await;
            false
        };
        futures_lite::future::or(stopped, slept).await
    }

    /// Runs `f` unless the signal is set first (then `None`; `f` is dropped, which for a
    /// request removes it from its connection's pending table).
    pub async fn unless<T>(&self, f: impl Future<Output = T>) -> Option<T> {
        let stopped = async {
            self.wait().await;
            None
        };
        futures_lite::future::or(stopped, async { Some(f.await) }).await
    }
}

/// One executor's context.
pub struct Ctx {
    pub thread: usize,
    pub shared: std::sync::Arc<Shared>,
    pub stats: RefCell<Stats>,
    pub stop_produce: Signal,
    pub stop_consume: Signal,
}

impl Ctx {
    /// Mirrors the run-wide stop flags into this executor's signals until both are set.
    pub async fn watch_stop_flags(&self) {
        loop {
            if self.shared.stop_produce.load(Ordering::Relaxed) {
                self.stop_produce.set();
            }
            if self.shared.stop_consume.load(Ordering::Relaxed) {
                self.stop_consume.set();
            }
            if self.stop_produce.is_set() && self.stop_consume.is_set() {
                return;
            }
            Timer::new(Duration::from_millis(crate::limits::STOP_POLL_MS)).await;
        }
    }
}

/// A connection to one broker that is opened again (at most one attempt at a time) after
/// it closes, as a RocketMQ client would.
pub struct Conn {
    pub addr: String,
    pub broker_name: String,
    client: RefCell<Client>,
    reconnecting: Cell<bool>,
}

impl Conn {
    pub async fn open(addr: &str, broker_name: &str, timeout: Duration) -> Result<Conn, rockshard::Error> {
        let client = Client::connect(addr, timeout).await?;
        Ok(Conn {
            addr: addr.to_owned(),
            broker_name: broker_name.to_owned(),
            client: RefCell::new(client),
            reconnecting: Cell::new(false),
        })
    }

    /// The open client, reconnecting if it closed. A failure is counted by the caller.
    pub async fn client(&self, timeout: Duration) -> Result<Client, Failure> {
        let current = self.client.borrow().clone();
        if !current.is_closed() {
            return Ok(current);
        }
        if self.reconnecting.replace(true) {
            return Err(Failure::Closed);
        }
        let fresh = Client::connect(&self.addr, timeout).await;
        self.reconnecting.set(false);
        match fresh {
            Ok(client) => {
                *self.client.borrow_mut() = client.clone();
                Ok(client)
            }
            Err(_) => Err(Failure::Closed),
        }
    }

    /// The current client, open or not (for final oneway requests and closing).
    pub fn current(&self) -> Client {
        self.client.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_maps_instants_to_unix_time_both_ways() {
        let clock = Clock::now();
        let later = clock.base() + Duration::from_millis(1500);
        assert_eq!(clock.unix_us(later) - clock.unix_us(clock.base()), 1_500_000);
        assert_eq!(clock.unix_ms(later) - clock.unix_ms(clock.base()), 1500);
        if let Some(earlier) = clock.base().checked_sub(Duration::from_millis(2)) {
            assert_eq!(clock.unix_us(clock.base()) - clock.unix_us(earlier), 2000);
        }
        let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_millis() as i64;
        assert!((clock.unix_ms(Instant::now()) - wall_ms).abs() < 1000);
    }

    #[test]
    fn signal_cuts_sleeps_and_waits_short() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).make().expect("executor");
        ex.run(async {
            let signal = std::rc::Rc::new(Signal::default());
            assert!(signal.sleep(Duration::from_millis(1)).await, "a sleep that ends on its own");
            let setter = signal.clone();
            glommio::spawn_local(async move {
                Timer::new(Duration::from_millis(10)).await;
                setter.set();
            })
            .detach();
            let started = Instant::now();
            assert!(!signal.sleep(Duration::from_secs(30)).await, "cut short by the signal");
            assert!(started.elapsed() < Duration::from_secs(5));
            assert_eq!(signal.unless(std::future::pending::<()>()).await, None);
            assert!(!signal.sleep_until(Instant::now() + Duration::from_secs(30)).await);
        });
    }
}
