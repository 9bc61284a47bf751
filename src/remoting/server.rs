//! The remoting server: accepts connections and turns their bytes into requests for a
//! [`Service`], and the service's answers back into bytes.
//!
//! Runs on one glommio executor (a broker shard or the NameServer); everything here is
//! `Rc`/`Cell`, never shared across threads.
//!
//! Per connection there is one reader task and one writer task:
//!
//! ```text
//!   socket ──read──▶ read buffer ──decode_frame──▶ request ──spawn──▶ Service::handle
//!                                                                         │
//!   socket ◀──write── out buffer ◀──encode_frame── response ◀─────────────┘
//! ```
//!
//! Every request runs as its own task, so a long-polling pull does not hold up the
//! sends behind it on the same connection; answers go out in completion order and
//! clients match them by `opaque`. The writer takes everything queued since its last
//! write in one go, which is what makes many requests in flight cheap (GLOMMIO-NOTES:
//! batching answers into one write is the difference between 15 k and 1.6 M req/s).
//! Answers completing in the same executor tick therefore leave in one write: the
//! writer, woken by the first, runs after the tasks that were already runnable. A
//! service may also write an answer frame in place ([`Connection::send_frame`]) instead
//! of returning a command. Reads ask for about what the last read returned (the read
//! buffer has to be zero-filled first, so a fixed large chunk would cost a large memset
//! per read).
//!
//! Invariants:
//! - A malformed or oversized frame closes that connection only (after logging it);
//!   other connections never notice.
//! - A oneway request is never answered.
//! - Reading pauses while a connection has `CONNECTION_IN_FLIGHT_MAX` requests running or
//!   `CONNECTION_OUT_BUFFER_MAX_BYTES` unwritten: a client cannot make us buffer without
//!   bound.
//! - A peer that disconnects mid-request only loses the answer: the handler still runs to
//!   the end, so what it stores is stored whole.
//!
//! Deliberately not here: what requests mean (services), and client-side connections
//! (`client`).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use rockshard_net::frame::peek_frame_len;
use rockshard_net::{decode_frame, encode_frame, RemotingCommand};
use rockshard_storage::sync::Notify;
use tracing::{debug, info, warn};

use crate::limits::{
    CONNECTION_IN_FLIGHT_MAX, CONNECTION_OUT_BUFFER_MAX_BYTES, CONNECTION_READ_CHUNK_BYTES, LISTEN_BACKLOG,
    SHUTDOWN_DRAIN_MAX_MS,
};
use crate::{Error, Result};

/// Smallest read a connection asks for, and what a quiet one shrinks back to: a few
/// requests' worth, so an idle connection does not zero large buffers. (A server twin
/// of `CLIENT_READ_CHUNK_MIN_BYTES`; it belongs in `limits.rs`, which this change does
/// not own.)
const READ_CHUNK_MIN_BYTES: usize = 4 * 1024;

/// A level-triggered signal many tasks can wait on: once set it stays set. Used for
/// shutdown and for "every connection has closed".
#[derive(Default)]
pub struct Signal {
    set: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Signal {
    pub fn new() -> Rc<Signal> {
        Rc::new(Signal::default())
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    pub fn trigger(&self) {
        self.set.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Resolves once the signal is set (at once if it already is).
    pub fn wait(&self) -> SignalWait<'_> {
        SignalWait { signal: self }
    }

    /// Sleeps `d`, cut short by the signal: true when the signal is what ended it. The
    /// loop of every periodic task that stops at shutdown.
    pub async fn sleep(&self, d: std::time::Duration) -> bool {
        futures_lite::future::or(
            async {
                self.wait().await;
                true
            },
            async {
                glommio::timer::sleep(d).await;
                false
            },
        )
        .await
    }
}

pub struct SignalWait<'a> {
    signal: &'a Signal,
}

impl Future for SignalWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_set() {
            return Poll::Ready(());
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The server's shutdown switch: stop accepting, finish what is in flight, close.
pub type Shutdown = Signal;

/// One accepted connection, as the service sees it.
pub struct Connection {
    id: u64,
    peer: SocketAddr,
    out: RefCell<BytesMut>,
    writer_wake: Notify,
    /// Woken when the writer has drained the out buffer or a request finished, so a
    /// paused reader can look again.
    reader_wake: Notify,
    in_flight: Cell<usize>,
    closed: Cell<bool>,
}

impl Connection {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Queues a command for the writer. Commands sent after the connection closed are
    /// dropped: their peer is gone.
    pub fn send(&self, cmd: &RemotingCommand) {
        if self.closed.get() {
            return;
        }
        if let Err(e) = encode_frame(cmd, &mut *self.out.borrow_mut()) {
            // Only an over-limit answer can fail to encode; the peer gets nothing rather
            // than a truncated frame, and its request times out on its side.
            warn!(peer = %self.peer, code = cmd.code, error = %e, "answer not encodable; dropped");
            return;
        }
        self.writer_wake.notify();
    }

    /// Queues a frame that `write` appends straight to the out buffer, for answers
    /// written field by field without building a command (`rockshard_net::frame::
    /// ResponseWriter`). `write` must append one whole frame or, when it fails, nothing.
    pub fn send_frame(&self, write: impl FnOnce(&mut BytesMut) -> std::result::Result<usize, rockshard_net::Error>) {
        if self.closed.get() {
            return;
        }
        if let Err(e) = write(&mut self.out.borrow_mut()) {
            warn!(peer = %self.peer, error = %e, "answer not encodable; dropped");
            return;
        }
        self.writer_wake.notify();
    }

    /// Queues `cmd` with a body made of `parts` (its own body is ignored), copying each
    /// part once, straight into the out buffer: a pull answer is a run of stored records,
    /// and gluing them into one buffer first would copy every byte twice.
    pub fn send_parts(&self, cmd: &RemotingCommand, parts: &[bytes::Bytes]) {
        if self.closed.get() {
            return;
        }
        let body_len = parts.iter().map(|p| p.len()).sum();
        let mut out = self.out.borrow_mut();
        let mark = out.len();
        if let Err(e) = rockshard_net::encode_frame_head(cmd, body_len, &mut *out) {
            out.truncate(mark);
            warn!(peer = %self.peer, code = cmd.code, error = %e, "answer not encodable; dropped");
            return;
        }
        out.reserve(body_len);
        for p in parts {
            out.extend_from_slice(p);
        }
        drop(out);
        self.writer_wake.notify();
    }

    /// Sends a server-initiated oneway request (NOTIFY_CONSUMER_IDS_CHANGED and the like).
    pub fn send_oneway(&self, mut cmd: RemotingCommand) {
        cmd.mark_oneway();
        self.send(&cmd);
    }

    fn out_len(&self) -> usize {
        self.out.borrow().len()
    }

    fn may_read(&self) -> bool {
        self.in_flight.get() < CONNECTION_IN_FLIGHT_MAX && self.out_len() < CONNECTION_OUT_BUFFER_MAX_BYTES
    }
}

/// What a server serves. Implementations live on the same executor as the server.
pub trait Service: 'static {
    /// Handles one request and returns the answer (`None` for oneway requests or when
    /// there is nothing to say). Runs as its own task; takes the `Rc` so the handler can
    /// hand the service to tasks it spawns.
    fn handle(
        self: Rc<Self>,
        conn: &Rc<Connection>,
        request: RemotingCommand,
    ) -> impl Future<Output = Option<RemotingCommand>>;

    /// Called once when a connection has closed, after its last answer was queued.
    fn on_close(&self, _conn: &Connection) {}
}

/// Accepts connections on `listener` and serves them until `shutdown` is triggered and
/// every connection has finished (or `SHUTDOWN_DRAIN_MAX_MS` passed).
pub async fn serve<S: Service>(listener: TcpListener, service: Rc<S>, shutdown: Rc<Shutdown>) -> Result<()> {
    let local = listener.local_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
    let open = Rc::new(Cell::new(0usize));
    let closed_one = Rc::new(Notify::default());
    let mut next_id = 0u64;
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                // EMFILE and friends: keep the listener alive, give the system a moment.
                warn!(listen = %local, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        next_id += 1;
        let Ok(peer) = stream.peer_addr() else { continue };
        // Answers are batched by the writer already; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let conn = Rc::new(Connection {
            id: next_id,
            peer,
            out: RefCell::new(BytesMut::with_capacity(CONNECTION_READ_CHUNK_BYTES)),
            writer_wake: Notify::default(),
            reader_wake: Notify::default(),
            in_flight: Cell::new(0),
            closed: Cell::new(false),
        });
        debug!(listen = %local, %peer, id = next_id, "connection accepted");
        open.set(open.get() + 1);
        let (service, shutdown, open, closed_one) =
            (service.clone(), shutdown.clone(), open.clone(), closed_one.clone());
        glommio::spawn_local(async move {
            run_connection(stream, conn, service, shutdown).await;
            open.set(open.get() - 1);
            closed_one.notify();
        })
        .detach();
    }
    info!(listen = %local, open = open.get(), "stopped accepting");
    let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_DRAIN_MAX_MS);
    while open.get() > 0 && Instant::now() < deadline {
        future::or(closed_one.notified(), glommio::timer::sleep(Duration::from_millis(50))).await;
    }
    if open.get() > 0 {
        warn!(listen = %local, open = open.get(), "connections still open after the drain period");
    }
    Ok(())
}

async fn run_connection<S: Service>(stream: TcpStream, conn: Rc<Connection>, service: Rc<S>, shutdown: Rc<Shutdown>) {
    let (mut reader, writer) = futures_lite::io::split(stream);
    let writer_task = glommio::spawn_local(write_loop(writer, conn.clone()));
    let mut buf = BytesMut::with_capacity(CONNECTION_READ_CHUNK_BYTES);
    // Bytes asked for per read; adapts to what the peer sends (see below).
    let mut chunk = READ_CHUNK_MIN_BYTES;
    let reason = loop {
        // Decode everything already read, then read more.
        // decode_frame refuses an over-limit length as soon as the length word is in,
        // so the buffer never grows past one frame.
        let malformed = loop {
            match decode_frame(&mut buf) {
                Ok(Some(cmd)) => dispatch(&conn, &service, cmd),
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        if let Some(e) = malformed {
            warn!(peer = %conn.peer, error = %e, "malformed frame; closing the connection");
            break "malformed frame";
        }
        while !conn.may_read() && !conn.closed.get() {
            conn.reader_wake.notified().await;
        }
        if shutdown.is_set() {
            break "shutdown";
        }
        // Ask for the rest of a partly received frame at once (bounded by the frame limit
        // decode_frame enforces), and at least one chunk.
        let missing = match peek_frame_len(&buf) {
            Ok(Some(total)) => total.saturating_sub(buf.len()),
            _ => 0,
        };
        let want = missing.max(chunk);
        let filled = buf.len();
        // The read needs initialised memory, so the space is zero-filled first. The chunk
        // follows what reads return, so this memset is about the size of the data: a
        // fixed 64 KiB chunk cost a 64 KiB memset per read however little arrived.
        buf.resize(filled + want, 0);
        let read = future::or(async { Some(reader.read(&mut buf[filled..]).await) }, async {
            shutdown.wait().await;
            None
        })
        .await;
        match read {
            None => {
                buf.truncate(filled);
                break "shutdown";
            }
            Some(Ok(0)) => {
                buf.truncate(filled);
                break "peer closed";
            }
            Some(Ok(n)) => {
                buf.truncate(filled + n);
                // Grow the chunk while reads fill it, shrink it when they use a quarter.
                if n == want {
                    chunk = (chunk * 2).min(CONNECTION_READ_CHUNK_BYTES);
                } else if n < chunk / 4 {
                    chunk = (chunk / 2).max(READ_CHUNK_MIN_BYTES);
                }
            }
            Some(Err(e)) => {
                debug!(peer = %conn.peer, error = %e, "read failed");
                break "read error";
            }
        }
    };
    debug!(peer = %conn.peer, reason, "connection reader done");
    // Let running requests finish and their answers go out, within the drain bound.
    let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_DRAIN_MAX_MS);
    while conn.in_flight.get() > 0 && Instant::now() < deadline {
        future::or(conn.reader_wake.notified(), glommio::timer::sleep(Duration::from_millis(50))).await;
    }
    conn.closed.set(true);
    conn.writer_wake.notify();
    writer_task.await;
    service.on_close(&conn);
}

fn dispatch<S: Service>(conn: &Rc<Connection>, service: &Rc<S>, cmd: RemotingCommand) {
    if cmd.is_response() {
        // Answers to requests we sent (CHECK_TRANSACTION_STATE is oneway, so nothing is
        // expected); nothing waits for them here.
        debug!(peer = %conn.peer, code = cmd.code, opaque = cmd.opaque, "unexpected response ignored");
        return;
    }
    conn.in_flight.set(conn.in_flight.get() + 1);
    let (conn, service) = (conn.clone(), service.clone());
    glommio::spawn_local(async move {
        let oneway = cmd.is_oneway();
        let answer = service.clone().handle(&conn, cmd).await;
        if let Some(answer) = answer {
            if !oneway {
                conn.send(&answer);
            }
        }
        conn.in_flight.set(conn.in_flight.get() - 1);
        conn.reader_wake.notify();
    })
    .detach();
}

async fn write_loop(mut writer: futures_lite::io::WriteHalf<TcpStream>, conn: Rc<Connection>) {
    loop {
        let pending = conn.out.borrow_mut().split();
        if pending.is_empty() {
            if conn.closed.get() {
                break;
            }
            conn.writer_wake.notified().await;
            continue;
        }
        if let Err(e) = writer.write_all(&pending).await {
            debug!(peer = %conn.peer, error = %e, "write failed; closing");
            conn.closed.set(true);
            conn.out.borrow_mut().clear();
            conn.reader_wake.notify();
            break;
        }
        conn.reader_wake.notify();
    }
    let _ = writer.close().await;
}

/// Binds a listener, with the address in the error.
///
/// The socket is made here rather than by glommio's `TcpListener::bind`, which sets
/// SO_REUSEPORT and not SO_REUSEADDR. SO_REUSEPORT would let a second broker on the same
/// port "succeed" and split the connections with the first; without SO_REUSEADDR, the
/// sockets a stopped (or `kill -9`ed) broker leaves in TIME_WAIT would keep its restart
/// from binding its own port. std's listener sets SO_REUSEADDR only.
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let err = |e: std::io::Error| Error::Io { op: "listen on", target: addr.to_string(), source: e };
    let listener = std::net::TcpListener::bind(addr).map_err(err)?;
    let fd = listener.into_raw_fd();
    // std listens with a backlog of 128; a load test opening hundreds of connections at
    // once would see SYNs dropped and one-second retries. Listening again raises it.
    // SAFETY: `fd` is the listening socket we own.
    if unsafe { libc::listen(fd, LISTEN_BACKLOG) } != 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: closing the descriptor we own and will not use again.
        unsafe { libc::close(fd) };
        return Err(err(e));
    }
    // SAFETY: `fd` is an open, bound, listening TCP socket whose ownership moves to
    // glommio's listener (which closes it); we are on a glommio executor.
    Ok(unsafe { TcpListener::from_raw_fd(fd) })
}
