//! The broker process: one glommio executor per shard, plus one for the embedded
//! NameServer, and the signal handling that stops them in order.
//!
//! Threads: `run` is called on the main thread, which blocks SIGINT/SIGTERM (so every
//! thread it starts inherits the mask) and then only waits. A signal thread turns the
//! first signal into `STOP`; each executor polls it and triggers its own shutdown
//! signal. A shard shuts down by: stop accepting, finish in-flight requests (long polls
//! are woken), flush and checkpoint the store, unregister from the NameServers. The
//! embedded NameServer stops last, so unregistrations reach it.
//!
//! Start-up order, so that a start that fails changes nothing other processes rely on:
//! every listener is bound first (on the main thread, retrying briefly a port that a
//! process killed a moment ago still holds), then every shard opens its store; only when
//! all of them got that far do the shards join their Raft groups and register with the
//! NameServers. A shard unregisters at the end only from NameServers that accepted it.
//!
//! Readiness: when every shard has registered with every NameServer once, the process
//! prints one line to stdout starting with `ready:`; tests and scripts wait for it.
//!
//! Runs on the main thread (`run`) and on each shard's executor (`run_shard`), where it
//! opens the shard, joins its Raft group, starts its tasks and serves its listener with
//! the dispatcher; it sits above every layer and may use all of them.
//!
//! Deliberately not here: request handling (`dispatch` and `handlers`), the shard's
//! state and operations (`ops`), and its background work (`tasks`).

use std::io::Write;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use tracing::{error, info, warn};

use super::ops::control;
use super::ops::Shard;
use super::tasks::{self, raft_links, register};
use crate::config::BrokerConfig;
use crate::limits::STOP_POLL_INTERVAL_MS;
use crate::process::{install_signal_thread, request_stop, watch_stop};
use crate::remoting::server;
use crate::{Error, Result};
use rockshard_local::Signal;

enum ShardEvent {
    /// The shard's store is open; it waits at the start gate.
    Opened,
    /// The shard has registered with every NameServer once.
    Ready,
    Failed(usize, String),
}

/// The go or no-go every shard waits for once its store is open: nothing is registered
/// with a NameServer (nor replicated) until every shard of the process got that far, so
/// a start that fails part-way changes nothing that other processes rely on. Set once
/// by the main thread; shards on their executors await it (glommio wakers may be woken
/// from another thread).
#[derive(Default)]
struct StartGate {
    state: Mutex<(Option<bool>, Vec<Waker>)>,
}

impl StartGate {
    fn open(&self, go: bool) {
        let wakers = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.0 = Some(go);
            std::mem::take(&mut state.1)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves to the main thread's decision: true to go on, false to close and stop.
    fn wait(&self) -> impl std::future::Future<Output = bool> + '_ {
        std::future::poll_fn(move |cx| {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match state.0 {
                Some(go) => Poll::Ready(go),
                None => {
                    state.1.push(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }
}

/// Runs the broker until SIGINT/SIGTERM; returns once every shard closed its store.
///
/// Start-up order, so that a start that fails changes nothing others rely on: bind every
/// listener (the NameServer's and each shard's) on this thread, then open every shard's
/// store, and only when all of that worked let the shards join their Raft groups and
/// register with the NameServers. A shard that cannot open its store makes the others
/// close theirs without registering anything.
pub fn run(config: BrokerConfig) -> Result<()> {
    install_signal_thread()?;
    crate::process::raise_descriptor_limit();
    std::fs::create_dir_all(&config.data_dir).map_err(Error::io("create data directory", config.data_dir.display()))?;
    // One broker per data directory, before anything else opens a file in it, held until
    // this returns (every shard has closed its store by then); see `dir_lock`.
    let _owner = crate::dir_lock::DataDirLock::acquire(&config.data_dir)?;
    let config = Arc::new(config);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    let namesrv_listener = match &config.embedded_namesrv {
        None => None,
        Some(ns) => Some(server::bind_std(ns.listen).map_err(|e| Error::Usage(format!("embedded NameServer: {e}")))?),
    };
    let mut shard_listeners = Vec::with_capacity(config.shards);
    for id in 0..config.shards {
        shard_listeners
            .push(server::bind_std(config.shard_listen(id)).map_err(|e| Error::Usage(format!("shard {id}: {e}")))?);
    }

    // The embedded NameServer starts first so the shards' first registration finds it.
    let namesrv = match (config.embedded_namesrv, namesrv_listener) {
        (Some(ns), Some(listener)) => Some(spawn_namesrv(ns, listener)?),
        _ => None,
    };

    let mesh = control::Mesh::new(config.shards);
    let gate = Arc::new(StartGate::default());
    let (events_tx, events_rx) = mpsc::channel::<ShardEvent>();
    let mut handles = Vec::with_capacity(config.shards);
    for ((id, endpoints), listener) in mesh.into_endpoints().into_iter().enumerate().zip(shard_listeners) {
        let placement = if config.pin_cores { Placement::Fixed(id % cores) } else { Placement::Unbound };
        let (config, events, gate) = (config.clone(), events_tx.clone(), gate.clone());
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("rockshard-shard-{id}"))
            .spawn(move || async move { run_shard(id, config, listener, endpoints, gate, events).await })
            .map_err(|e| Error::Io {
                op: "start",
                target: format!("shard {id} executor"),
                source: std::io::Error::other(e.to_string()),
            })?;
        handles.push(handle);
    }
    drop(events_tx);

    let mut failure = wait_for_shards(&config, &gate, &events_rx);
    for (id, h) in handles.into_iter().enumerate() {
        if let Err(e) = h.join() {
            let e = executor_error(&e.to_string());
            warn!(shard = id, error = %e, "shard executor ended abnormally");
            if failure.as_deref() == Some(SHARD_ENDED_STARTING) {
                failure = Some(format!("shard {id}: {e}"));
            }
        }
    }
    NAMESRV_STOP.store(true, Ordering::SeqCst);
    if let Some(h) = namesrv {
        let _ = h.join();
    }
    match failure {
        Some(e) => Err(Error::Usage(e)),
        None => Ok(()),
    }
}

/// What a failed start says until a shard's executor tells why it ended.
const SHARD_ENDED_STARTING: &str = "a shard ended while starting";

/// An executor's failure in words an operator can act on: io_uring rings live in locked
/// memory, and a small `ulimit -l` (RLIMIT_MEMLOCK) is the usual reason one cannot start.
fn executor_error(e: &str) -> String {
    let lower = e.to_ascii_lowercase();
    if lower.contains("cannot allocate memory") || lower.contains("enomem") || lower.contains("memlock") {
        format!("{e} (io_uring needs locked memory: raise `ulimit -l`, e.g. LimitMEMLOCK=infinity under systemd)")
    } else {
        e.to_string()
    }
}

/// Starts the embedded NameServer on an executor of its own; it stops only after every
/// shard has stopped (`NAMESRV_STOP`), so the shards' unregistrations reach it.
fn spawn_namesrv(
    ns: crate::namesrv::NamesrvConfig,
    listener: std::net::TcpListener,
) -> Result<glommio::ExecutorJoinHandle<()>> {
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("rockshard-namesrv")
        .spawn(move || async move {
            let shutdown = Signal::new();
            // The sidecar outlives the shards: it stops only after they unregistered.
            watch_namesrv_stop(shutdown.clone());
            if let Err(e) = crate::namesrv::run(ns, listener, shutdown).await {
                error!(error = %e, "embedded NameServer failed");
                request_stop();
            }
        })
        .map_err(|e| Error::Io {
            op: "start",
            target: "NameServer executor".into(),
            source: std::io::Error::other(e.to_string()),
        })
}

/// Waits until every shard opened its store, opens the start gate (go only if all did),
/// then waits until every shard registered once and prints the `ready:` line. Returns
/// the failure that stopped the start, if one did (the shards are then told to stop).
fn wait_for_shards(config: &BrokerConfig, gate: &StartGate, events_rx: &mpsc::Receiver<ShardEvent>) -> Option<String> {
    let mut failure = None;
    let mut opened = 0;
    while opened < config.shards && failure.is_none() {
        match events_rx.recv() {
            Ok(ShardEvent::Opened) => opened += 1,
            Ok(ShardEvent::Ready) => {}
            Ok(ShardEvent::Failed(id, e)) => failure = Some(format!("shard {id}: {e}")),
            Err(_) => failure = Some(SHARD_ENDED_STARTING.to_string()),
        }
    }
    gate.open(failure.is_none());
    let mut ready = 0;
    while failure.is_none() && ready < config.shards {
        match events_rx.recv() {
            Ok(ShardEvent::Ready) => ready += 1,
            Ok(ShardEvent::Opened) => {}
            Ok(ShardEvent::Failed(id, e)) => failure = Some(format!("shard {id}: {e}")),
            Err(_) => break,
        }
    }
    if failure.is_some() {
        request_stop();
    } else if ready == config.shards {
        let last = config.port as usize + config.shards - 1;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "ready: broker {} shards {} ports {}-{} namesrv {}",
            config.broker_name,
            config.shards,
            config.port,
            last,
            config.namesrv_addrs.join(";")
        );
        let _ = out.flush();
    }
    failure
}

/// Set after every shard has stopped (and unregistered): the sidecar NameServer may go.
static NAMESRV_STOP: AtomicBool = AtomicBool::new(false);

fn watch_namesrv_stop(signal: Rc<Signal>) {
    glommio::spawn_local(async move {
        while !NAMESRV_STOP.load(Ordering::SeqCst) {
            glommio::timer::sleep(Duration::from_millis(STOP_POLL_INTERVAL_MS)).await;
        }
        signal.trigger();
    })
    .detach();
}

async fn run_shard(
    id: usize,
    config: Arc<BrokerConfig>,
    listener: std::net::TcpListener,
    endpoints: control::Endpoints,
    gate: Arc<StartGate>,
    events: mpsc::Sender<ShardEvent>,
) {
    let config = Rc::new((*config).clone());
    let fail = |e: String| {
        let _ = events.send(ShardEvent::Failed(id, e));
    };
    let listener = server::adopt(listener);
    // SIGTERM sets `requested`; the shard's own shutdown follows once a replicated
    // leader has handed its leadership over (see `tasks::replication::hand_over_then`).
    let requested = Signal::new();
    watch_stop(requested.clone());
    let shutdown = Signal::new();
    let control = control::ControlPlane::connect(id, endpoints).await;
    let shard = match Shard::open(id, config, control, shutdown.clone()).await {
        Ok(s) => s,
        Err(e) => return fail(e.to_string()),
    };
    let _ = events.send(ShardEvent::Opened);
    if !gate.wait().await {
        // Another shard could not start: close what this one opened, register nothing.
        shutdown.trigger();
        if let Err(e) = shard.close().await {
            error!(shard = id, error = %e, "closing the store failed");
        }
        info!(shard = id, "shard stopped: the broker did not start");
        return;
    }
    if let Err(e) = start_replica(&shard, &shutdown).await {
        shutdown.trigger();
        return fail(e.to_string());
    }
    tasks::replication::hand_over_then(&shard, requested, shutdown.clone());
    info!(shard = id, listen = %shard.config().shard_listen(id), broker = %shard.broker_name(), "shard serving");
    tasks::start(&shard);
    let (registrar, registered) = register::start(&shard);
    {
        let events = events.clone();
        glommio::spawn_local(async move {
            if registered.await {
                let _ = events.send(ShardEvent::Ready);
            }
        })
        .detach();
    }
    if let Err(e) = server::serve(listener, shard.clone(), shutdown, shard.config().connection_limits).await {
        warn!(shard = id, error = %e, "serving ended with an error");
    }
    registrar.unregister_all(&shard).await;
    shard.close_replica().await;
    if let Err(e) = shard.close().await {
        error!(shard = id, error = %e, "closing the store failed");
    }
    info!(shard = id, "shard stopped");
}

/// Joins shard `shard.id`'s Raft group when the node is part of a replicated group: opens
/// the replica over the shard's store (it reconciles its log with the CommitLog and makes
/// only committed records readable), links it to the same shard on every peer, and starts
/// the leader's metadata snapshots and leader placement.
async fn start_replica(shard: &Rc<Shard>, shutdown: &Rc<Signal>) -> Result<()> {
    let Some(repl) = shard.config().replication.as_ref() else { return Ok(()) };
    let links = raft_links::PeerLinks::start(shard.id(), repl, shutdown.clone());
    shard.open_replica(links).await?;
    tasks::replication::start(shard);
    info!(shard = shard.id(), group = %repl.group, node = %repl.node, id = repl.node_id, "replica started");
    Ok(())
}
