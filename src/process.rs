//! Process-level plumbing shared by `rockshard broker` and `rockshard namesrv`: turning
//! SIGINT/SIGTERM into a stop every executor sees, and the standalone NameServer process.
//!
//! The main thread blocks the signals before it starts any thread (so all inherit the
//! mask); one thread waits for them with `sigwait` and sets `STOP`. Executors poll the
//! flag (see `watch_stop`) — a signal handler could not safely touch them.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use tracing::info;

use crate::limits::STOP_POLL_INTERVAL_MS;
use crate::namesrv::NamesrvConfig;
use crate::{Error, Result};
use rockshard_local::Signal;

/// Set once a stop was asked for (signal or a shard that failed to start).
static STOP: AtomicBool = AtomicBool::new(false);

/// Asks every executor of this process to shut down.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Triggers `signal` once `STOP` is set. Polling a flag every few tens of ms is cheap and
/// keeps signal handling out of the executors (a signal handler may not touch them).
pub fn watch_stop(signal: Rc<Signal>) {
    glommio::spawn_local(async move {
        while !STOP.load(Ordering::SeqCst) {
            glommio::timer::sleep(Duration::from_millis(STOP_POLL_INTERVAL_MS)).await;
        }
        signal.trigger();
    })
    .detach();
}

/// Blocks SIGINT and SIGTERM in this thread (inherited by threads started later) and
/// starts a thread that waits for them.
pub fn install_signal_thread() -> Result<()> {
    // SAFETY: plain libc signal-set calls on a local, initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(Error::Io {
                op: "block signals",
                target: "SIGINT/SIGTERM".into(),
                source: std::io::Error::from_raw_os_error(rc),
            });
        }
        let set_copy = set;
        std::thread::Builder::new()
            .name("rockshard-signals".into())
            .spawn(move || {
                let mut sig: libc::c_int = 0;
                // sigwait only fails for an invalid set; either way, stop.
                libc::sigwait(&set_copy, &mut sig);
                info!(signal = sig, "stop requested; shutting down");
                request_stop();
            })
            .map_err(Error::io("start", "signal thread"))?;
    }
    Ok(())
}

/// Raises this process's soft limit of open descriptors to its hard limit, as Go's
/// runtime and most servers do: every client connection takes one, and a soft limit of
/// 1024 (a common login default) would refuse connections long before
/// `max_connections`. Failing to raise it is not fatal; the WARN says what stays.
pub fn raise_descriptor_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return;
        }
        let wanted = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
            tracing::warn!(
                soft = lim.rlim_cur,
                hard = lim.rlim_max,
                error = %std::io::Error::last_os_error(),
                "could not raise the open-descriptor limit; connections past it will be refused"
            );
        }
    }
}

/// Runs a standalone NameServer until SIGINT/SIGTERM.
pub fn run_namesrv(config: NamesrvConfig) -> Result<()> {
    install_signal_thread()?;
    raise_descriptor_limit();
    let listener = crate::remoting::server::bind_std(config.listen)?;
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("rockshard-namesrv")
        .spawn(move || async move {
            let shutdown = Signal::new();
            watch_stop(shutdown.clone());
            crate::namesrv::run(config, listener, shutdown).await
        })
        .map_err(|e| Error::Io {
            op: "start",
            target: "NameServer executor".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
    handle.join().map_err(|e| Error::Io {
        op: "run",
        target: "NameServer executor".into(),
        source: std::io::Error::other(e.to_string()),
    })?
}
