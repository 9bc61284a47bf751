//! Runs a workload: one glommio executor per `--threads`, each owning some producers and
//! consumers, and the main thread as coordinator.
//!
//! Sequence: every executor connects its producers (thread t gets producers t, t+T, ...)
//! and consumers, then arrives at a [`StartGate`]; the main thread fixes the common start
//! instant and opens the gate, so the per-second intervals of all executors line up and
//! the open-loop schedules start together. While running, each executor sends its last
//! second's figures to the main thread, which merges them and prints one line per second.
//! The main thread alone decides when to stop (duration, count, e2e drain, Ctrl-C) and
//! says so through the atomics in [`Shared`]; executors finish their in-flight work,
//! commit consumer offsets, close their connections and hand back their totals. Each
//! executor also runs its route refresh task (`routes`), which ends with the run.
//!
//! Warm-up (`--warmup W`): the run lasts W seconds more than --duration. Each executor
//! starts its totals again at its tick of second W, in the same step that hands over
//! that second's figures, so the totals are exactly the seconds after W; the main thread
//! prints the first W per-second lines marked as warm-up and leaves them out of the
//! report, and reports times measured from W on.
//!
//! Invariants: every run ends: the duration limit always applies, every wait of a worker
//! is cut by its stop signal, and a request can only wait its timeout. Nothing on the hot
//! path crosses threads except the budget and two counters (relaxed atomics).

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

use crate::args::{Config, Workload};
use crate::consume::{self, Consumer};
use crate::error::BenchError;
use crate::limits::COORDINATOR_POLL_MS;
use crate::produce::{self, Producer};
use crate::rate::Budget;
use crate::report::{EndedBy, Outcome, SecondReport};
use crate::routes::{self, Routes};
use crate::setup::Plan;
use crate::stats::{Snapshot, Stats};
use crate::worker::{Clock, Ctx, Shared, Signal};

/// What executors tell the main thread.
enum Msg {
    /// Figures of second `index` (1-based) of `thread`.
    Second { thread: usize, index: u32, snap: Snapshot },
    /// `thread` is finished; `snap` is its last, partial interval.
    Done { thread: usize, snap: Snapshot, at: Duration },
}

/// What an executor hands back at the end.
struct ThreadResult {
    total: Snapshot,
    produce_end: Option<Duration>,
    consume_end: Option<Duration>,
    /// Every broker address its routes named.
    brokers: BTreeSet<String>,
}

/// Executors arrive here once connected and wait until the main thread opens it with
/// the run's start instant. Unlike a `Barrier`, it works with however many executors
/// actually started.
#[derive(Default)]
struct StartGate {
    state: Mutex<(usize, Option<Instant>)>,
    changed: Condvar,
}

impl StartGate {
    fn arrive_and_wait(&self) -> Instant {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 += 1;
        self.changed.notify_all();
        loop {
            if let Some(start) = state.1 {
                return start;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn wait_for(&self, executors: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.0 < executors {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn open(&self, start: Instant) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = Some(start);
        self.changed.notify_all();
    }
}

/// Runs the workload described by `cfg` over `plan`; `interrupted` is set by Ctrl-C.
/// `on_second` receives each per-second line as it is complete.
pub fn run(
    cfg: Config,
    plan: Plan,
    interrupted: Arc<AtomicBool>,
    mut on_second: impl FnMut(&SecondReport),
) -> Result<(Outcome, Clock), BenchError> {
    let threads = cfg.threads;
    let w = cfg.workload;
    let shared = Arc::new(Shared {
        budget: Budget::new(if w.produces() { cfg.count } else { None }),
        // A side the workload does not run is stopped from the start.
        stop_produce: AtomicBool::new(!w.produces()),
        stop_consume: AtomicBool::new(!w.consumes()),
        produced_ok: AtomicU64::new(0),
        consumed: AtomicU64::new(0),
        producing_threads: AtomicUsize::new(0),
        route_announced: Mutex::new(plan.route.clone()),
        clock: Clock::now(),
        cfg,
        plan,
    });
    let gate = Arc::new(StartGate::default());
    let connect_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut handles = Vec::new();
    let mut spawn_error = None;
    for thread in 0..threads {
        let (for_thread, gate, errors, tx) = (shared.clone(), gate.clone(), connect_errors.clone(), tx.clone());
        let spawned = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("bench-{thread}"))
            .spawn(move || executor_main(thread, for_thread, gate, errors, tx));
        match spawned {
            Ok(handle) => {
                if thread < shared.cfg.producers {
                    shared.producing_threads.fetch_add(1, Ordering::Relaxed);
                }
                handles.push(handle)
            }
            Err(e) => {
                spawn_error = Some(BenchError::Executor(e.to_string()));
                break;
            }
        }
    }
    drop(tx);
    gate.wait_for(handles.len());
    let failed = {
        let errors = connect_errors.lock().unwrap_or_else(|e| e.into_inner());
        (!errors.is_empty()).then(|| errors.join("; "))
    };
    if spawn_error.is_some() || failed.is_some() {
        shared.stop_produce.store(true, Ordering::Relaxed);
        shared.stop_consume.store(true, Ordering::Relaxed);
    }
    let start = Instant::now();
    gate.open(start);
    if spawn_error.is_some() || failed.is_some() {
        for handle in handles {
            let _ = handle.join();
        }
        return Err(
            spawn_error.unwrap_or_else(|| BenchError::Setup(format!("connecting: {}", failed.unwrap_or_default())))
        );
    }

    let cfg = &shared.cfg;
    let mut seconds: BTreeMap<u32, Snapshot> = BTreeMap::new();
    let mut last_second = vec![0u32; handles.len()];
    let mut done = vec![false; handles.len()];
    let mut final_snap = Snapshot::default();
    let mut final_at = Duration::ZERO;
    let mut printed = 0u32;
    let mut lines = Vec::new();
    let mut ended_by: Option<EndedBy> = None;
    let mut producers_done_at: Option<Instant> = None;
    let deadline = start + cfg.warmup + cfg.duration;
    let warmup_s = cfg.warmup.as_secs_f64();
    // Prints every line; the report keeps the measured ones.
    let mut emit = |line: SecondReport| {
        on_second(&line);
        if !line.warmup {
            lines.push(line);
        }
    };
    // Past this, everything is stopped whatever state the workers are in.
    let hard_deadline = deadline + cfg.drain + cfg.timeout;
    let stop_all = || {
        shared.stop_produce.store(true, Ordering::Relaxed);
        shared.stop_consume.store(true, Ordering::Relaxed);
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(COORDINATOR_POLL_MS)) {
            Ok(Msg::Second { thread, index, snap }) => {
                seconds.entry(index).or_default().merge(&snap);
                last_second[thread] = index;
            }
            Ok(Msg::Done { thread, snap, at }) => {
                final_snap.merge(&snap);
                final_at = final_at.max(at);
                done[thread] = true;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // A second is complete once every executor reported it or has finished.
        while (0..done.len()).all(|t| done[t] || last_second[t] > printed) && seconds.contains_key(&(printed + 1)) {
            printed += 1;
            let snap = seconds.remove(&printed).unwrap_or_default();
            emit(SecondReport::of(w, &snap, f64::from(printed), 1.0).in_warmup(f64::from(printed) <= warmup_s));
        }
        let now = Instant::now();
        if interrupted.load(Ordering::Relaxed) {
            ended_by.get_or_insert(EndedBy::Interrupt);
            stop_all();
        }
        if now >= hard_deadline {
            ended_by.get_or_insert(EndedBy::Duration);
            stop_all();
        }
        if w.produces() {
            if now >= deadline && !shared.stop_produce.load(Ordering::Relaxed) {
                ended_by.get_or_insert(EndedBy::Duration);
                shared.stop_produce.store(true, Ordering::Relaxed);
            }
            if producers_done_at.is_none() && shared.producing_threads.load(Ordering::Relaxed) == 0 {
                producers_done_at = Some(now);
                // Producers that ended on their own spent the budget.
                ended_by.get_or_insert(EndedBy::Count);
                shared.stop_produce.store(true, Ordering::Relaxed);
            }
        }
        match w {
            Workload::Produce => {}
            Workload::Consume => {
                if now >= deadline {
                    ended_by.get_or_insert(EndedBy::Duration);
                    stop_all();
                }
                if cfg.count.is_some_and(|count| shared.consumed.load(Ordering::Relaxed) >= count) {
                    ended_by.get_or_insert(EndedBy::Count);
                    stop_all();
                }
            }
            Workload::E2e => {
                if let Some(producers_done) = producers_done_at {
                    let caught_up =
                        shared.consumed.load(Ordering::Relaxed) >= shared.produced_ok.load(Ordering::Relaxed);
                    if caught_up {
                        shared.stop_consume.store(true, Ordering::Relaxed);
                    } else if now >= producers_done + cfg.drain && !shared.stop_consume.load(Ordering::Relaxed) {
                        if ended_by != Some(EndedBy::Interrupt) {
                            ended_by = Some(EndedBy::DrainTimeout);
                        }
                        shared.stop_consume.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        // After the checks above, so a run whose producers spent the budget before the
        // first check still records that it ended by count.
        if done.iter().all(|d| *d) {
            break;
        }
    }
    // Seconds some executor never completed (it finished first) still go in the report.
    for (index, snap) in std::mem::take(&mut seconds) {
        emit(SecondReport::of(w, &snap, f64::from(index), 1.0).in_warmup(f64::from(index) <= warmup_s));
        printed = printed.max(index);
    }
    let tail = final_at.as_secs_f64() - f64::from(printed);
    if tail > 0.0005 {
        let end = final_at.as_secs_f64();
        emit(SecondReport::of(w, &final_snap, end, tail).in_warmup(end <= warmup_s));
    }

    let mut total = Snapshot::default();
    let (mut produce_active, mut consume_active) = (Duration::ZERO, Duration::ZERO);
    let mut brokers = BTreeSet::new();
    for handle in handles {
        let result = handle.join().map_err(|e| BenchError::Executor(e.to_string()))?;
        total.merge(&result.total);
        produce_active = produce_active.max(result.produce_end.unwrap_or_default());
        consume_active = consume_active.max(result.consume_end.unwrap_or_default());
        brokers.extend(result.brokers);
    }
    // Times of the measured part: from the end of the warm-up.
    let measured = |d: Duration| d.saturating_sub(cfg.warmup).as_secs_f64();
    let outcome = Outcome {
        total,
        elapsed_s: measured(start.elapsed()),
        produce_active_s: measured(produce_active),
        consume_active_s: measured(consume_active),
        ended_by: ended_by.unwrap_or(EndedBy::Duration),
        seconds: lines,
        brokers: brokers.into_iter().collect(),
    };
    Ok((outcome, shared.clock))
}

/// One executor: connect, wait for the start, run the workers, report, hand back totals.
async fn executor_main(
    thread: usize,
    shared: Arc<Shared>,
    gate: Arc<StartGate>,
    errors: Arc<Mutex<Vec<String>>>,
    tx: mpsc::Sender<Msg>,
) -> ThreadResult {
    let threads = shared.cfg.threads;
    let ctx = Rc::new(Ctx {
        thread,
        shared: shared.clone(),
        stats: std::cell::RefCell::new(Stats::new(!shared.cfg.warmup.is_zero())),
        stop_produce: Signal::default(),
        stop_consume: Signal::default(),
        routes: Routes::new(shared.plan.route.clone()),
    });
    let cfg = &shared.cfg;
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    let mut error = None;
    for index in (thread..cfg.producers).step_by(threads) {
        match Producer::connect(&ctx, index).await {
            Ok(p) => producers.push(Rc::new(p)),
            Err(e) => {
                error = Some(format!("producer {index}: {e}"));
                break;
            }
        }
    }
    if error.is_none() {
        for index in (thread..cfg.consumers).step_by(threads) {
            match Consumer::connect(&ctx, index).await {
                Ok(Some(c)) => consumers.push(Rc::new(c)),
                Ok(None) => {}
                Err(e) => {
                    error = Some(format!("consumer {index}: {e}"));
                    break;
                }
            }
        }
    }
    if let Some(e) = error {
        errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
    }
    // Blocks this executor's thread; nothing of the run has started yet.
    let start = gate.arrive_and_wait();
    for p in &producers {
        p.restart_schedule(&ctx, start);
    }

    glommio::spawn_local({
        let ctx = ctx.clone();
        async move { ctx.watch_stop_flags().await }
    })
    .detach();
    let finished = Rc::new(Signal::default());
    let ticker = glommio::spawn_local(tick_loop(ctx.clone(), start, finished.clone(), tx.clone()));
    let route_task = {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            let shared = &ctx.shared;
            routes::keep_fresh(&ctx.routes, &shared.cfg, ctx.thread, &shared.route_announced, ctx.run_over()).await
        })
    };

    let send_tasks: Vec<_> = producers
        .iter()
        .flat_map(|p| (0..cfg.inflight).map(move |_| p.clone()))
        .map(|p| glommio::spawn_local(produce::send_loop(ctx.clone(), p)))
        .collect();
    let pull_tasks: Vec<_> = consumers
        .iter()
        .flat_map(|c| (0..c.queue_count()).map(move |q| (c.clone(), q)))
        .map(|(c, q)| glommio::spawn_local(consume::pull_loop(ctx.clone(), c, q)))
        .collect();
    let has_producers = thread < cfg.producers;
    let producing = async {
        for task in send_tasks {
            task.await;
        }
        let end = start.elapsed();
        if has_producers {
            shared.producing_threads.fetch_sub(1, Ordering::Relaxed);
        }
        for p in &producers {
            p.close().await;
        }
        has_producers.then_some(end)
    };
    let consuming = async {
        for task in pull_tasks {
            task.await;
        }
        let end = start.elapsed();
        for c in &consumers {
            c.finish(&ctx).await;
        }
        (!consumers.is_empty()).then_some(end)
    };
    let (produce_end, consume_end) = futures_lite::future::zip(producing, consuming).await;
    finished.trigger();
    ticker.await;
    let last = ctx.stats.borrow_mut().take_interval();
    // The main thread may have gone (it only stops listening once every executor is done).
    let _ = tx.send(Msg::Done { thread, snap: last, at: start.elapsed() });
    // It ends once the main thread has stopped both sides, which it always does (by the
    // hard deadline at the latest) before it stops waiting for executors.
    route_task.await;
    let total = ctx.stats.borrow_mut().take_total();
    ThreadResult { total, produce_end, consume_end, brokers: ctx.routes.brokers() }
}

/// Sends this executor's figures at every whole second after the start, and ends the
/// warm-up at its last second.
async fn tick_loop(ctx: Rc<Ctx>, start: Instant, finished: Rc<Signal>, tx: mpsc::Sender<Msg>) {
    let warmup_s = ctx.shared.cfg.warmup.as_secs();
    for index in 1u32.. {
        if finished.sleep_until(start + Duration::from_secs(u64::from(index))).await {
            return;
        }
        let snap = {
            let mut stats = ctx.stats.borrow_mut();
            let snap = stats.take_interval();
            if u64::from(index) == warmup_s {
                stats.end_warmup();
            }
            snap
        };
        if tx.send(Msg::Second { thread: ctx.thread, index, snap }).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_gate_opens_for_the_executors_that_arrived() {
        let gate = Arc::new(StartGate::default());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let gate = gate.clone();
                std::thread::spawn(move || gate.arrive_and_wait())
            })
            .collect();
        gate.wait_for(3);
        let start = Instant::now();
        gate.open(start);
        for w in waiters {
            assert_eq!(w.join().expect("thread"), start);
        }
    }
}
