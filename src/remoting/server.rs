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
//! - Memory follows bytes that arrived, never what a frame declares: the read buffer of
//!   a frame still arriving grows at most to twice what it holds (plus one chunk), so a
//!   peer that sends an 8-byte prefix declaring 16 MiB costs one small chunk. Frames
//!   still arriving hold at most `PARTIAL_FRAME_BYTES_MAX` in the whole process; past
//!   it the oldest such frame on this executor is dropped with its connection.
//! - Answers queued and not yet written count per connection (`CONNECTION_OUT_BUFFER_MAX_BYTES`)
//!   and per listener (`unwritten_bytes_max`): past either, a connection with
//!   answers waiting stops reading requests, so clients that ask and never read cannot
//!   add up to more than the listener's bound.
//! - What one listener allows ([`ConnectionLimits`]): at most `max_connections` open
//!   (more are closed as soon as they are accepted), none silent for `idle_timeout_ms`
//!   with no request running (RocketMQ's 120 s channel idle time), and no frame taking
//!   longer than `frame_timeout_ms` to arrive. A sweeper task per listener enforces the
//!   two times by sampling counters each connection bumps, so the read path never
//!   reads a clock. Each refusal is a WARN, at most one per `REFUSAL_WARN_INTERVAL_MS`
//!   per listener and reason, with the count of those not logged.
//! - A peer that disconnects mid-request only loses the answer: the handler still runs to
//!   the end, so what it stores is stored whole.
//!
//! Deliberately not here: what requests mean (services), and client-side connections
//! (`client`).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use rockshard_local::{Notify, Signal};
use rockshard_net::frame::peek_frame_len;
use rockshard_net::{decode_frame, encode_frame, RemotingCommand};
use tracing::{debug, info, warn};

use crate::limits::{
    BIND_RETRY_INTERVAL_MS, BIND_RETRY_MAX_MS, CONNECTIONS_PER_LISTENER_DEFAULT_MAX,
    CONNECTION_IDLE_TIMEOUT_DEFAULT_MS, CONNECTION_IN_FLIGHT_MAX, CONNECTION_OUT_BUFFER_MAX_BYTES,
    CONNECTION_READ_CHUNK_BYTES, CONNECTION_READ_CHUNK_MIN_BYTES, CONNECTION_SWEEP_INTERVAL_MAX_MS,
    CONNECTION_SWEEP_INTERVAL_MIN_MS, FRAME_TIMEOUT_DEFAULT_MS, LISTENER_UNWRITTEN_BYTES_MAX, LISTEN_BACKLOG,
    PARTIAL_FRAME_BYTES_MAX, PARTIAL_FRAME_UNCOUNTED_BYTES, REFUSAL_WARN_INTERVAL_MS, SHUTDOWN_DRAIN_MAX_MS,
};
use crate::logs::RateLimited;
use crate::{Error, Result};

/// The server's shutdown switch: stop accepting, finish what is in flight, close.
pub type Shutdown = Signal;

/// What one listener allows its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A connection that sends nothing for this long while no request of it runs is
    /// closed (RocketMQ's `serverChannelMaxIdleTimeSeconds`; clients heartbeat every
    /// 30 s, brokers register every 30 s).
    pub idle_timeout_ms: u64,
    /// A frame whose first bytes arrived this long ago and which is still incomplete
    /// closes its connection.
    pub frame_timeout_ms: u64,
    /// Answer bytes all connections may hold unwritten before those with answers
    /// waiting stop reading (`LISTENER_UNWRITTEN_BYTES_MAX`; not a broker setting).
    pub unwritten_bytes_max: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: CONNECTIONS_PER_LISTENER_DEFAULT_MAX,
            idle_timeout_ms: CONNECTION_IDLE_TIMEOUT_DEFAULT_MS,
            frame_timeout_ms: FRAME_TIMEOUT_DEFAULT_MS,
            unwritten_bytes_max: LISTENER_UNWRITTEN_BYTES_MAX,
        }
    }
}

/// Bytes held by the read buffers of frames still arriving, over every listener of the
/// process (each connection counts only what it holds past
/// `PARTIAL_FRAME_UNCOUNTED_BYTES`, so the ordinary tail of a pipelined read never
/// touches this shared counter).
static PARTIAL_FRAME_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The bytes frames still arriving hold in the whole process (see [`ConnectionLimits`]).
pub fn partial_frame_bytes() -> usize {
    PARTIAL_FRAME_BYTES.load(Ordering::Relaxed)
}

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
    /// Answer bytes queued and not yet written by every connection of the listener, and
    /// the listener's bound on them.
    unwritten: Rc<Cell<usize>>,
    unwritten_max: usize,
    /// Set to end the reader: at shutdown, or by the listener's sweeper or memory
    /// bound, with the reason in `stop_reason`.
    stop: Signal,
    stop_reason: Cell<&'static str>,
    /// Reads that returned bytes, and frames decoded: the sweeper compares them between
    /// its rounds to tell silence and stuck frames without a clock on the read path.
    reads: Cell<u64>,
    frames: Cell<u64>,
    /// True while the read buffer holds the start of a frame not yet complete.
    partial: Cell<bool>,
    /// What this connection counts in `PARTIAL_FRAME_BYTES`, and since when (the
    /// oldest such frame is the one dropped when the process is over its bound).
    partial_held: Cell<usize>,
    partial_held_since: Cell<Option<Instant>>,
    /// The sweeper's own notes (only it touches them).
    sweep: SweepNotes,
}

/// What the sweeper saw of one connection at its earlier rounds.
struct SweepNotes {
    reads: Cell<u64>,
    quiet_since: Cell<Instant>,
    frames: Cell<u64>,
    partial_since: Cell<Option<Instant>>,
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
        let mut out = self.out.borrow_mut();
        let before = out.len();
        if let Err(e) = encode_frame(cmd, &mut *out) {
            // Only an over-limit answer can fail to encode; the peer gets nothing rather
            // than a truncated frame, and its request times out on its side.
            warn!(peer = %self.peer, code = cmd.code, error = %e, "answer not encodable; dropped");
            return;
        }
        let added = out.len() - before;
        drop(out);
        self.queued(added);
    }

    /// Queues a frame that `write` appends straight to the out buffer, for answers
    /// written field by field without building a command (`rockshard_net::frame::
    /// ResponseWriter`). `write` must append one whole frame or, when it fails, nothing.
    pub fn send_frame(&self, write: impl FnOnce(&mut BytesMut) -> std::result::Result<usize, rockshard_net::Error>) {
        if self.closed.get() {
            return;
        }
        let mut out = self.out.borrow_mut();
        let before = out.len();
        if let Err(e) = write(&mut out) {
            warn!(peer = %self.peer, error = %e, "answer not encodable; dropped");
            return;
        }
        let added = out.len() - before;
        drop(out);
        self.queued(added);
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
        let added = out.len() - mark;
        drop(out);
        self.queued(added);
    }

    /// Sends a server-initiated oneway request (NOTIFY_CONSUMER_IDS_CHANGED and the like).
    pub fn send_oneway(&self, mut cmd: RemotingCommand) {
        cmd.mark_oneway();
        self.send(&cmd);
    }

    fn out_len(&self) -> usize {
        self.out.borrow().len()
    }

    /// Counts `added` bytes a send queued in the listener's unwritten total and wakes
    /// the writer (which takes them off the total once written).
    fn queued(&self, added: usize) {
        self.unwritten.set(self.unwritten.get() + added);
        self.writer_wake.notify();
    }

    /// Whether the reader may take more requests. Besides this connection's own bounds,
    /// a connection with answers still queued waits while the listener's connections
    /// together hold `LISTENER_UNWRITTEN_BYTES_MAX` unwritten: a thousand clients that
    /// ask for pulls and never read them must not hold a thousand out buffers' worth.
    /// (Its own writer wakes it once its buffer is drained, so it never waits on others.)
    /// The bound is `ConnectionLimits::unwritten_bytes_max`.
    fn may_read(&self) -> bool {
        let out = self.out_len();
        self.in_flight.get() < CONNECTION_IN_FLIGHT_MAX
            && out < CONNECTION_OUT_BUFFER_MAX_BYTES
            && (out == 0 || self.unwritten.get() < self.unwritten_max)
    }

    /// Ends the reader (it finishes running requests and closes); the first reason wins.
    fn stop_reading(&self, reason: &'static str) {
        if !self.stop.is_set() {
            self.stop_reason.set(reason);
            self.stop.trigger();
        }
        self.reader_wake.notify();
    }

    /// Moves this connection's count in `PARTIAL_FRAME_BYTES` to `held`. Returns false
    /// when growing it would pass `PARTIAL_FRAME_BYTES_MAX` (nothing is counted then).
    fn hold_partial(&self, held: usize) -> bool {
        let before = self.partial_held.get();
        if held > before {
            let grow = held - before;
            let total = PARTIAL_FRAME_BYTES.fetch_add(grow, Ordering::Relaxed) + grow;
            if total > PARTIAL_FRAME_BYTES_MAX {
                PARTIAL_FRAME_BYTES.fetch_sub(grow, Ordering::Relaxed);
                return false;
            }
            if before == 0 {
                self.partial_held_since.set(Some(Instant::now()));
            }
        } else if held < before {
            PARTIAL_FRAME_BYTES.fetch_sub(before - held, Ordering::Relaxed);
            if held == 0 {
                self.partial_held_since.set(None);
            }
        }
        self.partial_held.set(held);
        true
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

/// The connections of one listener, oldest first, and its rate-limited refusal log.
struct Listener {
    local: String,
    limits: ConnectionLimits,
    conns: RefCell<BTreeMap<u64, Rc<Connection>>>,
    unwritten: Rc<Cell<usize>>,
    warns: RefusalWarnings,
}

impl Listener {
    /// Drops the oldest frame still arriving that counts against the process bound, other
    /// than `except`'s. Returns whether there was one.
    fn drop_oldest_partial(&self, except: u64) -> bool {
        let conns = self.conns.borrow();
        let oldest = conns
            .values()
            .filter(|c| c.id != except && c.partial_held.get() > 0 && !c.stop.is_set())
            .min_by_key(|c| c.partial_held_since.get());
        match oldest {
            Some(c) => {
                self.warns.warn(Refusal::PartialBytes, &self.local, c.peer);
                c.stop_reading("partial-frame memory bound: oldest frame dropped");
                true
            }
            None => false,
        }
    }
}

/// Why a listener refused or closed a connection; one rate limit each.
#[derive(Clone, Copy)]
enum Refusal {
    TooMany,
    Idle,
    FrameTimeout,
    PartialBytes,
}

impl Refusal {
    const COUNT: usize = 4;

    fn what(self) -> &'static str {
        match self {
            Refusal::TooMany => "connection limit reached; new connection closed",
            Refusal::Idle => "connection idle past the idle timeout; closed",
            Refusal::FrameTimeout => "frame not complete within the frame timeout; connection closed",
            Refusal::PartialBytes => "frames still arriving hold the process's limit of bytes; oldest dropped",
        }
    }
}

/// One WARN per reason per `REFUSAL_WARN_INTERVAL_MS`, carrying the count of those not
/// logged since: a flood of hostile connections must not flood the log too.
struct RefusalWarnings {
    limits: [RateLimited; Refusal::COUNT],
}

impl Default for RefusalWarnings {
    fn default() -> RefusalWarnings {
        RefusalWarnings {
            limits: std::array::from_fn(|_| RateLimited::new(Duration::from_millis(REFUSAL_WARN_INTERVAL_MS))),
        }
    }
}

impl RefusalWarnings {
    fn warn(&self, why: Refusal, local: &str, peer: SocketAddr) {
        if let Some(held) = self.limits[why as usize].allow(Instant::now()) {
            warn!(listen = %local, %peer, "{}{held}", why.what());
        }
    }
}

/// Accepts connections on `listener` and serves them until `shutdown` is triggered and
/// every connection has finished (or `SHUTDOWN_DRAIN_MAX_MS` passed).
pub async fn serve<S: Service>(
    listener: TcpListener,
    service: Rc<S>,
    shutdown: Rc<Shutdown>,
    limits: ConnectionLimits,
) -> Result<()> {
    let local = listener.local_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
    let this = Rc::new(Listener {
        local: local.clone(),
        limits,
        conns: RefCell::new(BTreeMap::new()),
        unwritten: Rc::new(Cell::new(0)),
        warns: RefusalWarnings::default(),
    });
    let closed_one = Rc::new(Notify::default());
    let sweeper = glommio::spawn_local(sweep_loop(this.clone(), shutdown.clone()));
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
        if this.conns.borrow().len() >= limits.max_connections {
            this.warns.warn(Refusal::TooMany, &local, peer);
            drop(stream);
            continue;
        }
        // Answers are batched by the writer already; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let now = Instant::now();
        let conn = Rc::new(Connection {
            id: next_id,
            peer,
            // Both buffers start empty and grow with use: a thousand idle connections
            // must not hold a thousand preallocated chunks.
            out: RefCell::new(BytesMut::new()),
            writer_wake: Notify::default(),
            reader_wake: Notify::default(),
            in_flight: Cell::new(0),
            closed: Cell::new(false),
            unwritten: this.unwritten.clone(),
            unwritten_max: limits.unwritten_bytes_max,
            stop: Signal::default(),
            stop_reason: Cell::new(""),
            reads: Cell::new(0),
            frames: Cell::new(0),
            partial: Cell::new(false),
            partial_held: Cell::new(0),
            partial_held_since: Cell::new(None),
            sweep: SweepNotes {
                reads: Cell::new(0),
                quiet_since: Cell::new(now),
                frames: Cell::new(0),
                partial_since: Cell::new(None),
            },
        });
        debug!(listen = %local, %peer, id = next_id, "connection accepted");
        this.conns.borrow_mut().insert(conn.id, conn.clone());
        let (service, this, closed_one) = (service.clone(), this.clone(), closed_one.clone());
        glommio::spawn_local(async move {
            run_connection(stream, conn.clone(), service, &this).await;
            this.conns.borrow_mut().remove(&conn.id);
            closed_one.notify();
        })
        .detach();
    }
    let open = this.conns.borrow().len();
    info!(listen = %local, open, "stopped accepting");
    // Shutdown reaches every reader through its connection's stop signal. (Collected
    // first: stopping wakes tasks that remove themselves from the map.)
    let conns: Vec<Rc<Connection>> = this.conns.borrow().values().cloned().collect();
    for c in conns {
        c.stop_reading("shutdown");
    }
    drop(sweeper);
    let deadline = Instant::now() + Duration::from_millis(SHUTDOWN_DRAIN_MAX_MS);
    while !this.conns.borrow().is_empty() && Instant::now() < deadline {
        future::or(closed_one.notified(), glommio::timer::sleep(Duration::from_millis(50))).await;
    }
    let open = this.conns.borrow().len();
    if open > 0 {
        warn!(listen = %local, open, "connections still open after the drain period");
    }
    Ok(())
}

/// Closes connections silent past the idle timeout and those whose frame has been
/// arriving for longer than the frame timeout. It samples each connection's read and
/// frame counters once a round: a frame seen incomplete at two rounds with no frame
/// decoded in between is the same frame, so its age is known to within a round.
async fn sweep_loop(this: Rc<Listener>, shutdown: Rc<Shutdown>) {
    let limits = this.limits;
    let round = (limits.idle_timeout_ms.min(limits.frame_timeout_ms) / 4)
        .clamp(CONNECTION_SWEEP_INTERVAL_MIN_MS, CONNECTION_SWEEP_INTERVAL_MAX_MS);
    let idle = Duration::from_millis(limits.idle_timeout_ms);
    let frame = Duration::from_millis(limits.frame_timeout_ms);
    while !shutdown.sleep(Duration::from_millis(round)).await {
        let now = Instant::now();
        let mut to_close = Vec::new();
        for c in this.conns.borrow().values() {
            let notes = &c.sweep;
            let reads = c.reads.get();
            if reads != notes.reads.get() || c.in_flight.get() > 0 {
                notes.reads.set(reads);
                notes.quiet_since.set(now);
            } else if now.duration_since(notes.quiet_since.get()) >= idle {
                to_close.push((c.clone(), Refusal::Idle));
                continue;
            }
            let frames = c.frames.get();
            if !c.partial.get() {
                notes.partial_since.set(None);
            } else if frames != notes.frames.get() || notes.partial_since.get().is_none() {
                notes.frames.set(frames);
                notes.partial_since.set(Some(now));
            } else if notes.partial_since.get().is_some_and(|t| now.duration_since(t) >= frame) {
                to_close.push((c.clone(), Refusal::FrameTimeout));
            }
        }
        for (c, why) in to_close {
            this.warns.warn(why, &this.local, c.peer);
            c.stop_reading(match why {
                Refusal::Idle => "idle timeout",
                _ => "frame timeout",
            });
        }
    }
}

async fn run_connection<S: Service>(stream: TcpStream, conn: Rc<Connection>, service: Rc<S>, this: &Listener) {
    let (mut reader, writer) = futures_lite::io::split(stream);
    let writer_task = glommio::spawn_local(write_loop(writer, conn.clone()));
    let mut buf = BytesMut::new();
    // Bytes asked for per read; adapts to what the peer sends (see below).
    let mut chunk = CONNECTION_READ_CHUNK_MIN_BYTES;
    let reason = loop {
        // Decode everything already read, then read more.
        // decode_frame refuses an over-limit length as soon as the length word is in.
        let malformed = loop {
            match decode_frame(&mut buf) {
                Ok(Some(cmd)) => {
                    conn.frames.set(conn.frames.get() + 1);
                    dispatch(&conn, &service, cmd)
                }
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        if let Some(e) = malformed {
            warn!(peer = %conn.peer, error = %e, "malformed frame; closing the connection");
            break "malformed frame";
        }
        conn.partial.set(!buf.is_empty());
        while !conn.may_read() && !conn.closed.get() && !conn.stop.is_set() {
            conn.reader_wake.notified().await;
        }
        if conn.stop.is_set() {
            break conn.stop_reason.get();
        }
        // A frame's declared length is only a claim until its bytes arrive: ask for at
        // most as much again as the frame already has (and at least one chunk), so the
        // buffer grows geometrically with what the peer really sent, and a peer that
        // declares 16 MiB and sends eight bytes costs one small chunk.
        let missing = match peek_frame_len(&buf) {
            Ok(Some(total)) => total.saturating_sub(buf.len()),
            _ => 0,
        };
        let want = if missing > 0 { missing.min(chunk.max(buf.len())) } else { chunk };
        let filled = buf.len();
        // Large frames still arriving count against the process's bound; past it the
        // oldest one on this executor makes room, or, when this is the only one, this.
        let held = if missing > 0 && filled + want > PARTIAL_FRAME_UNCOUNTED_BYTES { filled + want } else { 0 };
        let room = conn.hold_partial(held) || (this.drop_oldest_partial(conn.id) && conn.hold_partial(held));
        if !room {
            this.warns.warn(Refusal::PartialBytes, &this.local, conn.peer);
            break "partial-frame memory bound";
        }
        // The read needs initialised memory, so the space is zero-filled first. The chunk
        // follows what reads return, so this memset is about the size of the data: a
        // fixed 64 KiB chunk cost a 64 KiB memset per read however little arrived.
        buf.resize(filled + want, 0);
        let read = future::or(async { Some(reader.read(&mut buf[filled..]).await) }, async {
            conn.stop.wait().await;
            None
        })
        .await;
        match read {
            None => {
                buf.truncate(filled);
                break conn.stop_reason.get();
            }
            Some(Ok(0)) => {
                buf.truncate(filled);
                break "peer closed";
            }
            Some(Ok(n)) => {
                buf.truncate(filled + n);
                conn.reads.set(conn.reads.get() + 1);
                // Grow the chunk while reads fill it, shrink it when they use a quarter.
                if n == want {
                    chunk = (chunk * 2).min(CONNECTION_READ_CHUNK_BYTES);
                } else if n < chunk / 4 {
                    chunk = (chunk / 2).max(CONNECTION_READ_CHUNK_MIN_BYTES);
                }
            }
            Some(Err(e)) => {
                debug!(peer = %conn.peer, error = %e, "read failed");
                break "read error";
            }
        }
    };
    debug!(peer = %conn.peer, reason, "connection reader done");
    conn.hold_partial(0);
    drop(buf);
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
        let written = writer.write_all(&pending).await;
        conn.unwritten.set(conn.unwritten.get() - pending.len());
        if let Err(e) = written {
            debug!(peer = %conn.peer, error = %e, "write failed; closing");
            conn.closed.set(true);
            let mut out = conn.out.borrow_mut();
            conn.unwritten.set(conn.unwritten.get() - out.len());
            out.clear();
            drop(out);
            conn.reader_wake.notify();
            break;
        }
        conn.reader_wake.notify();
    }
    let _ = writer.close().await;
}

/// Binds a listening socket on the calling thread, with the address in the error.
///
/// The socket is made here rather than by glommio's `TcpListener::bind`, which sets
/// SO_REUSEPORT and not SO_REUSEADDR. SO_REUSEPORT would let a second broker on the same
/// port "succeed" and split the connections with the first; without SO_REUSEADDR, the
/// sockets a stopped (or `kill -9`ed) broker leaves in TIME_WAIT would keep its restart
/// from binding its own port. std's listener sets SO_REUSEADDR only.
///
/// A port in use is tried again for up to `BIND_RETRY_MAX_MS`: a process killed a moment
/// ago still holds its listening sockets while the kernel tears down its io_uring
/// instance (whose pending accept polls reference them), which outlives the process by
/// up to a few tens of ms. A live process keeps its port, so this never lets two share
/// one: the bind still fails once the bound has passed.
pub fn bind_std(addr: SocketAddr) -> Result<std::net::TcpListener> {
    use std::os::fd::AsRawFd;
    let err = |e: std::io::Error| Error::Io { op: "listen on", target: addr.to_string(), source: e };
    let deadline = Instant::now() + Duration::from_millis(BIND_RETRY_MAX_MS);
    let mut logged = false;
    let listener = loop {
        match std::net::TcpListener::bind(addr) {
            Ok(l) => break l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                if !logged {
                    logged = true;
                    info!(listen = %addr, retry_ms = BIND_RETRY_MAX_MS, "address in use; trying again (a process that just stopped may still hold it)");
                }
                std::thread::sleep(Duration::from_millis(BIND_RETRY_INTERVAL_MS));
            }
            Err(e) => return Err(err(e)),
        }
    };
    // std listens with a backlog of 128; a load test opening hundreds of connections at
    // once would see SYNs dropped and one-second retries. Listening again raises it.
    // SAFETY: the descriptor is the listening socket `listener` owns, open for this call.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(listener)
}

/// Hands a listening socket bound by [`bind_std`] (on any thread) to this executor.
pub fn adopt(listener: std::net::TcpListener) -> TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = listener.into_raw_fd();
    // SAFETY: `fd` is an open, bound, listening TCP socket whose ownership moves to
    // glommio's listener (which closes it); we are on a glommio executor.
    unsafe { TcpListener::from_raw_fd(fd) }
}

/// [`bind_std`] then [`adopt`], for a listener bound on its own executor.
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    bind_std(addr).map(adopt)
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::sync::Arc;
    use std::time::Duration;

    use glommio::{LocalExecutorBuilder, Placement};
    use rockshard_net::code::{request, response};
    use rockshard_net::frame::encode_frame_to_vec;
    use rockshard_net::ExtFields;

    use super::*;

    /// Every wait here is bounded by this.
    const WAIT_MAX: Duration = Duration::from_secs(20);
    /// Body of every answer of the test service: a pull answer's worth.
    const ANSWER_BYTES: usize = 256 * 1024;
    /// The listener's bound on unwritten answers in the test: four answers.
    const UNWRITTEN_MAX: usize = 4 * ANSWER_BYTES;
    const CLIENTS: usize = 8;
    const REQUESTS_PER_CLIENT: usize = 64;

    /// Answers every request with `ANSWER_BYTES` and counts what it handled.
    struct BigAnswers {
        handled: Rc<Cell<usize>>,
        report: std::sync::mpsc::Sender<usize>,
    }

    impl Service for BigAnswers {
        async fn handle(self: Rc<Self>, _conn: &Rc<Connection>, request: RemotingCommand) -> Option<RemotingCommand> {
            self.handled.set(self.handled.get() + 1);
            let _ = self.report.send(self.handled.get());
            Some(RemotingCommand::response_to(&request, response::SUCCESS, None).with_body(vec![7u8; ANSWER_BYTES]))
        }
    }

    #[test]
    fn clients_that_never_read_stop_being_served_at_the_listeners_unwritten_bound() {
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (report_tx, report_rx) = std::sync::mpsc::channel::<usize>();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let server_stop = stop.clone();
        let server = LocalExecutorBuilder::new(Placement::Unbound)
            .spawn(move || async move {
                let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).expect("send addr");
                let shutdown = Signal::new();
                let watcher = shutdown.clone();
                glommio::spawn_local(async move {
                    while !server_stop.load(std::sync::atomic::Ordering::SeqCst) {
                        glommio::timer::sleep(Duration::from_millis(10)).await;
                    }
                    watcher.trigger();
                })
                .detach();
                let service = Rc::new(BigAnswers { handled: Rc::new(Cell::new(0)), report: report_tx });
                let limits = ConnectionLimits { unwritten_bytes_max: UNWRITTEN_MAX, ..ConnectionLimits::default() };
                serve(listener, service, shutdown, limits).await.expect("serve");
            })
            .expect("server executor");
        let addr = addr_rx.recv_timeout(WAIT_MAX).expect("server address");

        // Clients with tiny receive buffers send all their requests and read nothing.
        let request = encode_frame_to_vec(&RemotingCommand::new_request(request::PULL_MESSAGE, ExtFields::new()))
            .expect("encodes");
        let mut clients: Vec<std::net::TcpStream> = (0..CLIENTS)
            .map(|_| {
                let s = std::net::TcpStream::connect(addr).expect("connect");
                let all: Vec<u8> = request.iter().copied().cycle().take(request.len() * REQUESTS_PER_CLIENT).collect();
                (&s).write_all(&all).expect("requests");
                s
            })
            .collect();
        // The service stops being called: what it answered is bounded by what the kernel's
        // socket buffers absorb plus the listener's bound, far below all requests.
        let mut handled = 0;
        while let Ok(n) = report_rx.recv_timeout(Duration::from_millis(1_000)) {
            handled = n;
        }
        let all = CLIENTS * REQUESTS_PER_CLIENT;
        assert!(handled < all, "every one of {all} requests was answered into buffers nobody reads");

        // Readers drain their answers; every request is then answered.
        let readers: Vec<_> = clients
            .drain(..)
            .map(|mut s| {
                std::thread::spawn(move || {
                    s.set_read_timeout(Some(WAIT_MAX)).expect("timeout");
                    let want = REQUESTS_PER_CLIENT * ANSWER_BYTES;
                    let mut got = 0;
                    let mut buf = vec![0u8; 64 * 1024];
                    while got < want {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got += n,
                        }
                    }
                    got >= want
                })
            })
            .collect();
        for r in readers {
            assert!(r.join().expect("reader"), "a client did not get all its answers once it read");
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        server.join().expect("server thread");
    }
}
