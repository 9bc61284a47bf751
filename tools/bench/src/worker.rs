//! What the producer and consumer tasks of one executor share: the run-wide state
//! ([`Shared`], the only thing crossing threads: atomics, and one lock taken only when a
//! route changes), the executor's own context ([`Ctx`]: stats, stop signals, its view of
//! the route), broker connections that reconnect and can be pointed at another address
//! when the route moves a broker, and the wall clock used for born timestamps.
//!
//! Invariants: workers never touch another executor's state; they see the run-wide stop
//! flags through their executor's [`Signal`]s, which one watcher task per executor sets
//! from the atomics every `STOP_POLL_MS` (a timer, never a spin). Every wait a worker
//! does can be cut short by its stop signal. A [`Conn`] only ever hands out a client
//! connected to its current address.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use glommio::timer::Timer;
use rockshard::remoting::client::Client;

use crate::args::Config;
use crate::limits::BROKER_AVOID_MS;
use crate::rate::Budget;
use crate::routes::{reaction, Reaction, Routes};
use crate::setup::Plan;
use crate::setup::RouteView;
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
    /// The route as last printed; locked only when an executor's route changed.
    pub route_announced: Mutex<RouteView>,
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

/// A one-shot flag tasks of one executor wait on: the shared executor-local one.
pub use rockshard_local::Signal;

/// One executor's context.
pub struct Ctx {
    pub thread: usize,
    pub shared: std::sync::Arc<Shared>,
    pub stats: RefCell<Stats>,
    pub stop_produce: Signal,
    pub stop_consume: Signal,
    /// This executor's route, kept fresh by [`crate::routes::keep_fresh`].
    pub routes: Routes,
}

impl Ctx {
    /// Ends once the run stops both producing and consuming.
    pub async fn run_over(&self) {
        self.stop_produce.wait().await;
        self.stop_consume.wait().await;
    }

    /// Acts on what a failed request to `conn` says about the route: avoid the broker
    /// for a while, read the route again, or nothing ([`crate::routes::reaction`]).
    /// `generation` is the connection's when the request started: a request to an
    /// address the route has since replaced says nothing about the new one.
    pub fn react(&self, conn: &Conn, generation: u64, failure: Failure) {
        match reaction(failure) {
            Reaction::AvoidAndRefresh => {
                if conn.generation() == generation {
                    conn.avoid_for(Duration::from_millis(BROKER_AVOID_MS));
                }
                self.routes.refresh_soon();
            }
            Reaction::Refresh => self.routes.refresh_soon(),
            Reaction::Nothing => {}
        }
    }

    /// Mirrors the run-wide stop flags into this executor's signals until both are set.
    pub async fn watch_stop_flags(&self) {
        loop {
            if self.shared.stop_produce.load(Ordering::Relaxed) {
                self.stop_produce.trigger();
            }
            if self.shared.stop_consume.load(Ordering::Relaxed) {
                self.stop_consume.trigger();
            }
            if self.stop_produce.is_set() && self.stop_consume.is_set() {
                return;
            }
            Timer::new(Duration::from_millis(crate::limits::STOP_POLL_MS)).await;
        }
    }
}

/// A connection to one broker that is opened again (at most one attempt at a time) after
/// it closes, as a RocketMQ client would, and moved to another address when the route
/// names a new one for its broker (a failover).
pub struct Conn {
    pub broker_name: String,
    addr: RefCell<String>,
    /// `None` until the first connect of a connection made for a new route, and after
    /// the address changed.
    client: RefCell<Option<Client>>,
    reconnecting: Cell<bool>,
    /// Counts address changes, so a failure can be told to belong to an old address.
    generation: Cell<u64>,
    /// Producers pick other brokers' queues until then: this one just failed in a way
    /// that says it is gone or no longer the master.
    avoid_until: Cell<Option<Instant>>,
}

impl Conn {
    /// Connects now: the brokers setup found must be reachable for the run to start.
    pub async fn open(addr: &str, broker_name: &str, timeout: Duration) -> Result<Conn, rockshard::Error> {
        let client = Client::connect(addr, timeout).await?;
        let conn = Conn::lazy(addr, broker_name);
        *conn.client.borrow_mut() = Some(client);
        Ok(conn)
    }

    /// Connects on first use: a broker that appeared in the route during the run.
    pub fn lazy(addr: &str, broker_name: &str) -> Conn {
        Conn {
            broker_name: broker_name.to_owned(),
            addr: RefCell::new(addr.to_owned()),
            client: RefCell::new(None),
            reconnecting: Cell::new(false),
            generation: Cell::new(0),
            avoid_until: Cell::new(None),
        }
    }

    /// Changes whenever the address does.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    pub fn addr(&self) -> String {
        self.addr.borrow().clone()
    }

    /// The open client, connecting if there is none or it closed. A failure is counted
    /// by the caller.
    pub async fn client(&self, timeout: Duration) -> Result<Client, Failure> {
        if let Some(current) = self.client.borrow().as_ref().filter(|c| !c.is_closed()) {
            return Ok(current.clone());
        }
        if self.reconnecting.replace(true) {
            return Err(Failure::Closed);
        }
        let addr = self.addr();
        let fresh = Client::connect(&addr, timeout).await;
        self.reconnecting.set(false);
        match fresh {
            // The route moved the broker while this connect was under way: this client
            // reaches the old address, where sends are refused or lost.
            Ok(_) if *self.addr.borrow() != addr => Err(Failure::Closed),
            Ok(client) => {
                *self.client.borrow_mut() = Some(client.clone());
                Ok(client)
            }
            Err(_) => Err(Failure::Closed),
        }
    }

    /// Points the connection at `addr` if it is not there already. The old client is
    /// dropped: requests still in flight on it hold their own handles and end with it.
    pub fn retarget(&self, addr: &str) {
        if *self.addr.borrow() == addr {
            return;
        }
        *self.addr.borrow_mut() = addr.to_owned();
        self.generation.set(self.generation.get() + 1);
        self.client.borrow_mut().take();
        self.avoid_until.set(None);
    }

    /// Producers pick other brokers for `d` (unless no broker is left).
    pub fn avoid_for(&self, d: Duration) {
        self.avoid_until.set(Some(Instant::now() + d));
    }

    /// False while this broker is avoided. Reads the clock only while it is.
    pub fn usable(&self) -> bool {
        match self.avoid_until.get() {
            None => true,
            Some(until) if Instant::now() >= until => {
                self.avoid_until.set(None);
                true
            }
            Some(_) => false,
        }
    }

    /// The current client, open or not (for final oneway requests and closing); `None`
    /// if it never connected.
    pub fn current(&self) -> Option<Client> {
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
    fn a_moved_connection_forgets_failures_of_its_old_address() {
        let conn = Conn::lazy("127.0.0.1:1", "g-s0");
        assert!(conn.usable());
        conn.avoid_for(Duration::from_secs(60));
        assert!(!conn.usable());
        conn.retarget("127.0.0.1:1");
        assert!(!conn.usable(), "the same address is no move");
        let before = conn.generation();
        conn.retarget("127.0.0.1:2");
        assert_eq!(conn.addr(), "127.0.0.1:2");
        assert_ne!(conn.generation(), before);
        assert!(conn.usable(), "the new address is not avoided");
        assert!(conn.current().is_none(), "nothing connected to the new address yet");
        conn.avoid_for(Duration::ZERO);
        assert!(conn.usable(), "an avoidance that ran out");
    }
}
