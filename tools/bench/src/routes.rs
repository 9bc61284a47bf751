//! The topic's route as one executor's workers see it, and the task that keeps it fresh:
//! what lets a run follow a failover instead of sending to a dead address until it ends.
//!
//! Owns: the executor's current [`RouteView`] (masters with their queues, and the address
//! each broker name is pulled from) with a version number that changes whenever the view
//! does; the refresh requests workers make; the NameServer connection of the refresh task.
//!
//! How it behaves, like a RocketMQ client instance (MQClientInstance): the route is read
//! every `ROUTE_REFRESH_PERIOD_MS` (the clients' `pollNameServerInterval`), every
//! `ROUTE_MASTERLESS_POLL_MS` while a broker of the topic has no master (its new one is
//! due any moment, and producers that moved to other brokers no longer fail), and at
//! once when a worker's request fails in a way that says the route may be stale
//! ([`reaction`]: the connection was lost, or the broker answered SERVICE_NOT_AVAILABLE,
//! which a Rockshard follower answers to a send). RocketMQ's producer would wait for its
//! next poll; the tool asks sooner so that what a failover run shows is the broker's
//! outage, not the client's polling period. Lookups are at most one per
//! `ROUTE_REFRESH_BACKOFF_MS`, however many workers ask, so an outage never floods the
//! NameServer. A failed lookup drops the NameServer connection and the next one tries
//! the next address of `--namesrv`.
//!
//! Invariants: the version only changes together with the view, and only when the view
//! differs from the one before; workers compare versions (one `Cell` read) on every
//! request and rebuild their broker lists only when it changed, so the hot path adds no
//! allocation. Every wait of the refresh task ends when the run stops.
//!
//! Runs on one executor: each has its own [`Routes`] and refresh task, as each RocketMQ
//! client instance has its own route table. Deliberately not here: which queue a worker
//! picks and how long it avoids a failed broker (`produce`), and setup's first lookup.

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Mutex;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use glommio::timer::Timer;
use rockshard::remoting::client::Client;
use rockshard_net::body::TopicRouteData;
use rockshard_net::code::response;

use crate::args::Config;
use crate::limits::{ROUTE_MASTERLESS_POLL_MS, ROUTE_REFRESH_BACKOFF_MS, ROUTE_REFRESH_PERIOD_MS};
use crate::setup::{self, RouteView};
use crate::stats::Failure;

/// What a failed request means for the broker it went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Nothing about the route: the broker is there and answered (busy, a bad message).
    Nothing,
    /// The route may be stale: read it again, but keep using the broker (it may only be
    /// slow, or its answer may be about this one request).
    Refresh,
    /// The broker is gone or is no longer the master: avoid it for a while and read the
    /// route again.
    AvoidAndRefresh,
}

/// How a worker reacts to `failure`, as a RocketMQ producer decides which failures move
/// a send to another broker (`DefaultMQProducerImpl.sendDefaultImpl`).
pub fn reaction(failure: Failure) -> Reaction {
    match failure {
        // Connection lost or refused; a follower's (or stopping broker's) "not the leader".
        Failure::Closed | Failure::Io | Failure::Code(response::SERVICE_NOT_AVAILABLE) => Reaction::AvoidAndRefresh,
        // No answer in time (a partitioned leader looks like this), a commit that timed
        // out, a topic or permission the route said was there: perhaps a new master.
        Failure::Timeout
        | Failure::NoRoute
        | Failure::Code(
            response::FLUSH_SLAVE_TIMEOUT
            | response::SLAVE_NOT_AVAILABLE
            | response::TOPIC_NOT_EXIST
            | response::NO_PERMISSION,
        ) => Reaction::Refresh,
        Failure::Code(_) | Failure::Protocol | Failure::BadRecord => Reaction::Nothing,
    }
}

/// One executor's route and its refresh requests.
pub struct Routes {
    current: RefCell<Rc<RouteView>>,
    version: Cell<u64>,
    /// A worker asked for a lookup that has not started yet.
    wanted: Cell<bool>,
    /// The refresh task, waiting for a request.
    waiter: Cell<Option<Waker>>,
    /// Every broker address a view named, for the report.
    seen: RefCell<BTreeSet<String>>,
}

impl Routes {
    /// The route setup read, as version 0.
    pub fn new(initial: RouteView) -> Routes {
        let routes = Routes {
            current: RefCell::new(Rc::new(RouteView::default())),
            version: Cell::new(0),
            wanted: Cell::new(false),
            waiter: Cell::new(None),
            seen: RefCell::new(BTreeSet::new()),
        };
        routes.note_addresses(&initial);
        routes.current.replace(Rc::new(initial));
        routes
    }

    fn note_addresses(&self, view: &RouteView) {
        let mut seen = self.seen.borrow_mut();
        seen.extend(view.masters.iter().map(|t| t.addr.clone()));
        seen.extend(view.pull_addrs.values().cloned());
    }

    /// Every broker address the route named during the run: masters producers sent
    /// to, and whatever consumers pulled from.
    pub fn brokers(&self) -> BTreeSet<String> {
        self.seen.borrow().clone()
    }

    /// Changes whenever [`Routes::view`] does.
    pub fn version(&self) -> u64 {
        self.version.get()
    }

    pub fn view(&self) -> Rc<RouteView> {
        self.current.borrow().clone()
    }

    /// Asks the refresh task for a lookup (at most one per `ROUTE_REFRESH_BACKOFF_MS`).
    pub fn refresh_soon(&self) {
        if !self.wanted.replace(true) {
            if let Some(waker) = self.waiter.take() {
                waker.wake();
            }
        }
    }

    /// Installs `view` if it differs from the current one; the replaced view if it did.
    pub fn publish(&self, view: RouteView) -> Option<Rc<RouteView>> {
        if **self.current.borrow() == view {
            return None;
        }
        self.note_addresses(&view);
        let old = self.current.replace(Rc::new(view));
        self.version.set(self.version.get() + 1);
        Some(old)
    }

    /// Waits until a lookup is asked for.
    async fn requested(&self) {
        std::future::poll_fn(|cx| {
            if self.wanted.get() {
                return Poll::Ready(());
            }
            self.waiter.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }
}

/// Why the refresh task woke.
enum Wake {
    Asked,
    Period,
    RunOver,
}

/// The refresh task of one executor: reads the route when asked and every
/// `ROUTE_REFRESH_PERIOD_MS`, until the run stops producing and consuming.
///
/// `thread` 0 says what happens to the lookups (once for the run); `announced` is the
/// view last announced by any executor; `run_over` ends when the run stops producing and
/// consuming.
pub async fn keep_fresh(
    routes: &Routes,
    cfg: &Config,
    thread: usize,
    announced: &Mutex<RouteView>,
    run_over: impl std::future::Future<Output = ()>,
) {
    let backoff = Duration::from_millis(ROUTE_REFRESH_BACKOFF_MS);
    let mut run_over = std::pin::pin!(run_over);
    let mut namesrv: Option<Client> = None;
    // The NameServer to try next: a failed one is passed over for the next in the list.
    let mut next_namesrv = 0usize;
    // Setup has just read the route.
    let mut last_lookup = Instant::now();
    // Lookups have failed since the last one that worked (said once, not per lookup).
    let mut failing = false;
    loop {
        let asked = async {
            routes.requested().await;
            Wake::Asked
        };
        let period = if routes.view().masterless() { ROUTE_MASTERLESS_POLL_MS } else { ROUTE_REFRESH_PERIOD_MS };
        let period_over = async {
            Timer::new(Duration::from_millis(period)).await;
            Wake::Period
        };
        let over = async {
            run_over.as_mut().await;
            Wake::RunOver
        };
        match futures_lite::future::or(over, futures_lite::future::or(asked, period_over)).await {
            Wake::RunOver => break,
            Wake::Asked | Wake::Period => {}
        }
        let earliest = last_lookup + backoff;
        if earliest > Instant::now() {
            let waited = async {
                Timer::new(earliest.saturating_duration_since(Instant::now())).await;
                true
            };
            let over = async {
                run_over.as_mut().await;
                false
            };
            if !futures_lite::future::or(over, waited).await {
                break;
            }
        }
        // Requests made before this lookup starts are answered by it.
        routes.wanted.set(false);
        last_lookup = Instant::now();
        let lookup = lookup(cfg, &mut namesrv, &mut next_namesrv);
        let over = async {
            run_over.as_mut().await;
            None
        };
        let Some(result) = futures_lite::future::or(over, async { Some(lookup.await) }).await else { break };
        if result.is_ok() && std::mem::take(&mut failing) && thread == 0 {
            eprintln!("rockshard-bench: route lookups work again");
        }
        match result {
            Ok(Some(route)) => {
                if routes.publish(RouteView::of(&route)).is_some() {
                    announce(announced, &cfg.topic, &routes.view());
                }
            }
            // The topic is not (or no longer) known: keep sending where we did, and let
            // the failures say so.
            Ok(None) => {}
            Err(e) => {
                if !std::mem::replace(&mut failing, true) && thread == 0 {
                    eprintln!("rockshard-bench: route lookup failed ({e}); trying again on the next failure or poll");
                }
                if let Some(client) = namesrv.take() {
                    client.close().await;
                }
                next_namesrv += 1;
            }
        }
    }
    if let Some(client) = namesrv.take() {
        client.close().await;
    }
}

/// Prints what changed in the route, once for the whole run: every executor follows the
/// same route, and whichever sees a new view first says it. Only runs when a view changed.
fn announce(announced: &Mutex<RouteView>, topic: &str, view: &RouteView) {
    let mut last = announced.lock().unwrap_or_else(|e| e.into_inner());
    if *last != *view {
        eprintln!("rockshard-bench: route of {topic} changed: {}", view.describe_change(&last));
        *last = view.clone();
    }
}

/// One route lookup, connecting to the next NameServer first when there is no connection.
async fn lookup(
    cfg: &Config,
    namesrv: &mut Option<Client>,
    next_namesrv: &mut usize,
) -> Result<Option<TopicRouteData>, crate::error::BenchError> {
    let client = match namesrv.as_ref().filter(|c| !c.is_closed()) {
        Some(c) => c.clone(),
        None => {
            let addr = &cfg.namesrv[*next_namesrv % cfg.namesrv.len()];
            let client = Client::connect(addr, cfg.timeout)
                .await
                .map_err(crate::error::BenchError::remote(format!("NameServer {addr}")))?;
            *namesrv = Some(client.clone());
            client
        }
    };
    setup::route(&client, &cfg.topic, cfg.timeout, cfg.header.serialize_type()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rockshard_net::body::{BrokerData, QueueData};
    use rockshard_net::code::perm;

    fn route(brokers: &[(&str, &[(i64, &str)])]) -> TopicRouteData {
        TopicRouteData {
            broker_datas: brokers
                .iter()
                .map(|(name, addrs)| BrokerData {
                    broker_addrs: addrs.iter().map(|(id, a)| (*id, (*a).to_owned())).collect(),
                    broker_name: (*name).to_owned(),
                    cluster: "c".to_owned(),
                    ..Default::default()
                })
                .collect(),
            queue_datas: brokers
                .iter()
                .map(|(name, _)| QueueData {
                    broker_name: (*name).to_owned(),
                    perm: perm::READ | perm::WRITE,
                    read_queue_nums: 4,
                    write_queue_nums: 4,
                    topic_sys_flag: 0,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn consumers_pull_from_the_master_or_else_the_lowest_replica() {
        let view = RouteView::of(&route(&[
            ("g-s0", &[(0, "a:1"), (2, "b:1"), (3, "c:1")]),
            ("g-s1", &[(3, "c:2"), (2, "b:2")]),
        ]));
        assert_eq!(view.masters.len(), 1, "a broker without a master takes no sends");
        assert_eq!(view.masters[0].addr, "a:1");
        assert_eq!(view.pull_addrs["g-s0"], "a:1");
        assert_eq!(view.pull_addrs["g-s1"], "b:2", "while its master is gone, the replica with the lowest id");
        assert!(view.masterless(), "g-s1 waits for a master");
        assert!(!RouteView::of(&route(&[("g-s0", &[(0, "a:1"), (2, "b:1")])])).masterless());
    }

    #[test]
    fn a_failover_reads_as_the_new_master_and_versions_change_only_with_the_view() {
        let before = RouteView::of(&route(&[("g-s0", &[(0, "a:1"), (2, "b:1")]), ("g-s1", &[(0, "b:2")])]));
        let after = RouteView::of(&route(&[("g-s0", &[(0, "b:1")]), ("g-s1", &[(0, "b:2")])]));
        assert_eq!(after.describe_change(&before), "g-s0 master b:1 (was a:1)");
        let gone = RouteView::of(&route(&[("g-s0", &[(2, "b:1")]), ("g-s1", &[(0, "b:2")])]));
        assert_eq!(gone.describe_change(&before), "g-s0 has no master (was a:1)");

        let routes = Routes::new(before.clone());
        assert_eq!(routes.version(), 0);
        assert!(routes.publish(before.clone()).is_none(), "the same route is no change");
        assert_eq!(routes.version(), 0);
        let old = routes.publish(after.clone()).expect("a change");
        assert_eq!(*old, before);
        assert_eq!(routes.version(), 1);
        assert_eq!(*routes.view(), after);
        let named: Vec<String> = routes.brokers().into_iter().collect();
        assert_eq!(named, ["a:1", "b:1", "b:2"], "the report names the old and the new master");
    }

    #[test]
    fn lost_connections_and_not_leader_answers_move_sends_elsewhere() {
        assert_eq!(reaction(Failure::Closed), Reaction::AvoidAndRefresh);
        assert_eq!(reaction(Failure::Io), Reaction::AvoidAndRefresh);
        assert_eq!(reaction(Failure::Code(response::SERVICE_NOT_AVAILABLE)), Reaction::AvoidAndRefresh);
        assert_eq!(reaction(Failure::Timeout), Reaction::Refresh);
        assert_eq!(reaction(Failure::NoRoute), Reaction::Refresh);
        assert_eq!(reaction(Failure::Code(response::FLUSH_SLAVE_TIMEOUT)), Reaction::Refresh);
        assert_eq!(reaction(Failure::Code(response::SYSTEM_BUSY)), Reaction::Nothing);
        assert_eq!(reaction(Failure::Code(response::FLUSH_DISK_TIMEOUT)), Reaction::Nothing);
        assert_eq!(reaction(Failure::Code(response::MESSAGE_ILLEGAL)), Reaction::Nothing);
    }

    #[test]
    fn refresh_requests_wake_the_task_once_until_served() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).make().expect("executor");
        ex.run(async {
            let routes = Rc::new(Routes::new(RouteView::default()));
            let waiting = {
                let routes = routes.clone();
                glommio::spawn_local(async move { routes.requested().await })
            };
            Timer::new(Duration::from_millis(5)).await;
            routes.refresh_soon();
            routes.refresh_soon();
            let done = futures_lite::future::or(
                async {
                    waiting.await;
                    true
                },
                async {
                    Timer::new(Duration::from_secs(5)).await;
                    false
                },
            )
            .await;
            assert!(done, "a request wakes the waiting task");
            assert!(routes.wanted.get(), "the request stays until a lookup takes it");
        });
    }
}
