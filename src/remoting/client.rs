//! Pipelined remoting client on glommio: one TCP connection, many requests in flight.
//!
//! Used by the broker (registering with NameServers), `rockshard admin` and the load
//! tool. A [`Client`] is a cheap handle; clones share one connection.
//!
//! How it works:
//! - `request` takes a slot (at most [`CLIENT_PENDING_MAX`] requests wait at once), gives
//!   the command the next opaque, encodes its frame straight into the connection's shared
//!   outgoing buffer, records a pending entry (opaque → result slot + waker) and waits for
//!   that entry to be filled, or for its glommio timer.
//! - One writer task swaps the outgoing buffer with a spare one and writes everything
//!   queued in one go, so requests issued while a write was under way leave together.
//! - One reader task reads into a `BytesMut`, cuts frames with `decode_frame` and fills
//!   the pending entry of each response by opaque. A request from the server
//!   (NOTIFY_CONSUMER_IDS_CHANGED, CHECK_TRANSACTION_STATE, ...) goes to the callback set
//!   with `on_server_request`; a non-oneway one is answered with what the callback returns.
//!
//! Invariants: a pending entry exists exactly while its request future is alive and the
//! connection is open; a timed-out or dropped request removes its own entry, so a late
//! answer finds nothing and is dropped. Once the connection fails or is closed, every
//! pending request fails with [`Error::Closed`] at once and every later one at its start.
//! Nothing ever waits by spinning: every wait is on a stored waker that the task making
//! progress wakes (GLOMMIO-NOTES.md). No `RefCell` borrow is held across an `.await`: the
//! socket is borrowed only inside single `poll_read`/`poll_write` calls.
//!
//! Runs on the glommio executor that called [`Client::connect`]; the handle is not `Send`.
//!
//! Deliberately not here: reconnecting, retries and choosing brokers (callers decide what a
//! failure means for them), and interpreting response codes: a response with a failure code
//! is returned as it is; callers turn it into [`Error::Remote`] where that is what they mean.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use glommio::timer::Timer;
use rockshard_net::code::flag;
use rockshard_net::frame::peek_frame_len;
use rockshard_net::{decode_frame, encode_frame, RemotingCommand};

use crate::limits::{
    CLIENT_CLOSE_FLUSH_MAX_MS, CLIENT_OUT_QUEUE_HIGH_WATER_BYTES, CLIENT_PENDING_MAX, CLIENT_READ_CHUNK_MAX_BYTES,
    CLIENT_READ_CHUNK_MIN_BYTES, CLIENT_WRITE_BUFFER_KEEP_MAX_BYTES,
};
use crate::{Error, Result};

/// The callback type for requests the server sends us.
type ServerRequestHandler = Rc<dyn Fn(RemotingCommand) -> Option<RemotingCommand>>;

/// A connection to one remoting server. Clones share the connection; it closes when the
/// last clone is dropped or [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    handle: Rc<Handle>,
}

/// Owned by the clients only (the reader and writer tasks hold `Inner`), so dropping the
/// last client tears the connection down instead of leaking it behind its own tasks.
struct Handle {
    inner: Rc<Inner>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.inner.tear_down("every handle was dropped");
    }
}

/// The result slot of one request waiting for its answer.
struct Pending {
    response: Option<RemotingCommand>,
    waker: Option<Waker>,
}

struct Inner {
    peer: String,
    /// `None` once torn down: dropping the stream closes the socket.
    stream: RefCell<Option<TcpStream>>,
    /// Encoded frames waiting for the writer task.
    out: RefCell<BytesMut>,
    pending: RefCell<HashMap<i32, Pending>>,
    /// One permit per request allowed in flight; closed on tear-down so waiters fail.
    slots: Rc<Semaphore>,
    next_opaque: Cell<i32>,
    /// Set by `close` (no new requests) and by tear-down.
    closing: Cell<bool>,
    torn_down: Cell<bool>,
    /// True while the writer holds bytes it has not finished writing.
    writing: Cell<bool>,
    reader_waker: Cell<Option<Waker>>,
    writer_waker: Cell<Option<Waker>>,
    /// Tasks waiting for the outgoing queue to drop below its high-water mark.
    space_wakers: RefCell<Vec<Waker>>,
    /// Tasks waiting for everything queued to be written (`close`).
    flushed_wakers: RefCell<Vec<Waker>>,
    /// Tasks waiting for the connection to end (`closed`), one waker per task.
    closed_wakers: RefCell<Vec<Waker>>,
    on_request: RefCell<Option<ServerRequestHandler>>,
}

impl Client {
    /// Connects to `addr` (`host:port`) within `timeout` and starts the connection's reader
    /// and writer tasks on the current glommio executor.
    pub async fn connect(addr: &str, timeout: Duration) -> Result<Client> {
        let socket_addr = resolve(addr)?;
        // glommio refuses a zero timeout; a zero here can only mean "as short as possible".
        let timeout = timeout.max(Duration::from_millis(1));
        let stream = TcpStream::connect_timeout(socket_addr, timeout).await.map_err(|e| {
            let source: io::Error = e.into();
            Error::Io { op: "connect", target: addr.to_owned(), source }
        })?;
        // Requests are small and latency matters; batching is done by the writer task.
        stream.set_nodelay(true).map_err(|e| {
            let source: io::Error = e.into();
            Error::Io { op: "set TCP_NODELAY", target: addr.to_owned(), source }
        })?;
        let inner = Rc::new(Inner {
            peer: addr.to_owned(),
            stream: RefCell::new(Some(stream)),
            out: RefCell::new(BytesMut::with_capacity(CLIENT_READ_CHUNK_MIN_BYTES)),
            pending: RefCell::new(HashMap::new()),
            slots: Rc::new(Semaphore::new(CLIENT_PENDING_MAX as u64)),
            next_opaque: Cell::new(0),
            closing: Cell::new(false),
            torn_down: Cell::new(false),
            writing: Cell::new(false),
            reader_waker: Cell::new(None),
            writer_waker: Cell::new(None),
            space_wakers: RefCell::new(Vec::new()),
            flushed_wakers: RefCell::new(Vec::new()),
            closed_wakers: RefCell::new(Vec::new()),
            on_request: RefCell::new(None),
        });
        glommio::spawn_local(read_loop(inner.clone())).detach();
        glommio::spawn_local(write_loop(inner.clone())).detach();
        Ok(Client { handle: Rc::new(Handle { inner }) })
    }

    /// The address this client was asked to connect to.
    pub fn peer(&self) -> &str {
        &self.handle.inner.peer
    }

    /// Sends a request (assigns the opaque), waits for its response or the timeout.
    /// The response is returned whatever its code.
    pub async fn request(&self, mut cmd: RemotingCommand, timeout: Duration) -> Result<RemotingCommand> {
        let inner = &self.handle.inner;
        if inner.closing.get() {
            return Err(inner.closed());
        }
        // Held until this function returns, answered or not.
        let _slot = inner.slots.acquire_static_permit(1).await.map_err(|_| inner.closed())?;
        inner.wait_for_space().await?;
        let opaque = inner.take_opaque();
        cmd.opaque = opaque;
        cmd.flag &= !(flag::RESPONSE | flag::ONEWAY);
        inner.enqueue(&cmd)?;
        inner.pending.borrow_mut().insert(opaque, Pending { response: None, waker: None });
        // Removes the entry however this future ends: answered, timed out, or dropped.
        let _entry = PendingEntry { inner, opaque };
        let answer = poll_fn(|cx| inner.poll_answer(opaque, cx));
        let timer = async {
            Timer::new(timeout).await;
            Err(Error::Timeout {
                peer: inner.peer.clone(),
                code: cmd.code,
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })
        };
        futures_lite::future::or(answer, timer).await
    }

    /// Sends a oneway request (flag bit 1 set), does not wait for an answer. Returns once
    /// the frame is queued for the writer task.
    pub async fn oneway(&self, mut cmd: RemotingCommand) -> Result<()> {
        let inner = &self.handle.inner;
        if inner.closing.get() {
            return Err(inner.closed());
        }
        inner.wait_for_space().await?;
        cmd.opaque = inner.take_opaque();
        cmd.flag = (cmd.flag & !flag::RESPONSE) | flag::ONEWAY;
        inner.enqueue(&cmd)
    }

    /// Requests the server sends us (e.g. NOTIFY_CONSUMER_IDS_CHANGED,
    /// CHECK_TRANSACTION_STATE) are delivered to `f`; a non-oneway one is answered with
    /// what `f` returns (its opaque and response flag are set here). Replaces an earlier
    /// callback. Without one, non-oneway requests are answered REQUEST_CODE_NOT_SUPPORTED,
    /// as a Java client does for codes it has no processor for.
    pub fn on_server_request(&self, f: impl Fn(RemotingCommand) -> Option<RemotingCommand> + 'static) {
        *self.handle.inner.on_request.borrow_mut() = Some(Rc::new(f));
    }

    /// True once the connection failed or was closed; no request can succeed after that.
    pub fn is_closed(&self) -> bool {
        let inner = &self.handle.inner;
        inner.closing.get() || inner.torn_down.get()
    }

    /// Resolves once the connection has ended: the peer closed it or went away, a read or
    /// write failed, or it was closed here. For a caller that keeps a connection idle and
    /// must notice that it is gone without sending anything (a Raft link to a peer).
    pub async fn closed(&self) {
        let inner = &self.handle.inner;
        poll_fn(|cx| {
            if inner.torn_down.get() {
                return Poll::Ready(());
            }
            // A task that waits again (after other work) keeps one waker here, not one per
            // wait, so a long-lived connection does not pile them up.
            let mut wakers = inner.closed_wakers.borrow_mut();
            if !wakers.iter().any(|w| w.will_wake(cx.waker())) {
                wakers.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Closes the connection: refuses new requests, lets the writer send what is already
    /// queued (oneway requests sent just before closing still leave, up to
    /// [`CLIENT_CLOSE_FLUSH_MAX_MS`]), then fails every request still waiting with
    /// [`Error::Closed`] and closes the socket.
    pub async fn close(&self) {
        let inner = &self.handle.inner;
        inner.closing.set(true);
        let flushed = poll_fn(|cx| inner.poll_flushed(cx));
        let limit = async {
            Timer::new(Duration::from_millis(CLIENT_CLOSE_FLUSH_MAX_MS)).await;
        };
        futures_lite::future::or(flushed, limit).await;
        inner.tear_down("closed by the client");
    }
}

/// Removes a request's pending entry when its future ends, whichever way.
struct PendingEntry<'a> {
    inner: &'a Inner,
    opaque: i32,
}

impl Drop for PendingEntry<'_> {
    fn drop(&mut self) {
        self.inner.pending.borrow_mut().remove(&self.opaque);
    }
}

impl Inner {
    fn closed(&self) -> Error {
        Error::Closed { peer: self.peer.clone() }
    }

    /// The next opaque, skipping any still pending (only possible after 2^32 requests on
    /// one connection, but then a duplicate would hand one request another's answer).
    fn take_opaque(&self) -> i32 {
        let pending = self.pending.borrow();
        let mut opaque = self.next_opaque.get();
        while pending.contains_key(&opaque) {
            opaque = opaque.wrapping_add(1);
        }
        self.next_opaque.set(opaque.wrapping_add(1));
        opaque
    }

    /// Appends `cmd`'s frame to the outgoing queue and wakes the writer.
    fn enqueue(&self, cmd: &RemotingCommand) -> Result<()> {
        if self.torn_down.get() {
            return Err(self.closed());
        }
        encode_frame(cmd, &mut *self.out.borrow_mut())
            .map_err(|source| Error::Protocol { peer: self.peer.clone(), source })?;
        if let Some(waker) = self.writer_waker.take() {
            waker.wake();
        }
        Ok(())
    }

    /// Waits while the outgoing queue is above its high-water mark, so a peer that does
    /// not read cannot make us buffer without bound.
    async fn wait_for_space(&self) -> Result<()> {
        poll_fn(|cx| {
            if self.torn_down.get() {
                return Poll::Ready(Err(self.closed()));
            }
            if self.out.borrow().len() < CLIENT_OUT_QUEUE_HIGH_WATER_BYTES {
                return Poll::Ready(Ok(()));
            }
            self.space_wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn poll_answer(&self, opaque: i32, cx: &mut Context<'_>) -> Poll<Result<RemotingCommand>> {
        let mut pending = self.pending.borrow_mut();
        match pending.get_mut(&opaque) {
            Some(entry) => match entry.response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => {
                    if !matches!(&entry.waker, Some(w) if w.will_wake(cx.waker())) {
                        entry.waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
            },
            // Tear-down emptied the table.
            None => Poll::Ready(Err(self.closed())),
        }
    }

    fn poll_flushed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.torn_down.get() || (!self.writing.get() && self.out.borrow().is_empty()) {
            return Poll::Ready(());
        }
        self.flushed_wakers.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }

    /// Fails everything at once: pending requests, requests waiting for a slot or for
    /// queue space, and the reader and writer tasks; drops the socket. Idempotent.
    fn tear_down(&self, why: &str) {
        if self.torn_down.replace(true) {
            return;
        }
        self.closing.set(true);
        tracing::debug!(peer = %self.peer, why, "remoting client connection closed");
        self.slots.close();
        let pending = std::mem::take(&mut *self.pending.borrow_mut());
        for (_, entry) in pending {
            if let Some(waker) = entry.waker {
                waker.wake();
            }
        }
        self.out.borrow_mut().clear();
        // Dropping the stream closes the socket; its reader and writer see the flag on
        // their next poll, which the wakers below bring about.
        drop(self.stream.borrow_mut().take());
        for waker in [self.reader_waker.take(), self.writer_waker.take()].into_iter().flatten() {
            waker.wake();
        }
        wake_all(&self.space_wakers);
        wake_all(&self.flushed_wakers);
        wake_all(&self.closed_wakers);
    }

    /// The reader's read. `Ok(0)` also when the connection was torn down meanwhile.
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let mut stream = self.stream.borrow_mut();
        let Some(stream) = stream.as_mut() else { return Poll::Ready(Ok(0)) };
        let poll = Pin::new(stream).poll_read(cx, buf);
        if poll.is_pending() {
            self.reader_waker.set(Some(cx.waker().clone()));
        }
        poll
    }

    fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut stream = self.stream.borrow_mut();
        let Some(stream) = stream.as_mut() else {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::NotConnected, "connection torn down")));
        };
        let poll = Pin::new(stream).poll_write(cx, buf);
        if poll.is_pending() {
            self.writer_waker.set(Some(cx.waker().clone()));
        }
        poll
    }

    /// Routes one decoded frame: a response to its pending request, a request to the
    /// callback.
    fn dispatch(&self, cmd: RemotingCommand) {
        if cmd.is_response() {
            let mut pending = self.pending.borrow_mut();
            // No entry: the request timed out or was dropped; the answer is not wanted.
            if let Some(entry) = pending.get_mut(&cmd.opaque) {
                entry.response = Some(cmd);
                if let Some(waker) = entry.waker.take() {
                    waker.wake();
                }
            }
            return;
        }
        // Cloned out so the callback may itself replace the callback or send requests.
        let handler = self.on_request.borrow().clone();
        let oneway = cmd.is_oneway();
        let opaque = cmd.opaque;
        let answer = match handler {
            Some(handler) => handler(cmd),
            None if oneway => None,
            None => Some(RemotingCommand::not_supported(&cmd)),
        };
        if oneway {
            return;
        }
        if let Some(mut answer) = answer {
            answer.opaque = opaque;
            answer.flag = (answer.flag | flag::RESPONSE) & !flag::ONEWAY;
            if let Err(e) = self.enqueue(&answer) {
                tracing::warn!(peer = %self.peer, error = %e, "could not answer a server request");
            }
        }
    }
}

fn wake_all(wakers: &RefCell<Vec<Waker>>) {
    let wakers = std::mem::take(&mut *wakers.borrow_mut());
    for waker in wakers {
        waker.wake();
    }
}

fn resolve(addr: &str) -> Result<SocketAddr> {
    // Addresses are IP:port in practice (routes carry IPs); a host name is resolved with the
    // blocking resolver once per connection, which is acceptable at connect time.
    let mut addrs = addr.to_socket_addrs().map_err(Error::io("resolve", addr))?;
    addrs.next().ok_or_else(|| Error::Io {
        op: "resolve",
        target: addr.to_owned(),
        source: io::Error::new(io::ErrorKind::NotFound, "no address"),
    })
}

/// The reader task: reads, cuts frames, dispatches them, until the connection ends.
async fn read_loop(inner: Rc<Inner>) {
    let mut buf = BytesMut::with_capacity(CLIENT_READ_CHUNK_MIN_BYTES);
    // Bytes asked for per read; adapts to what the peer sends (see below).
    let mut chunk = CLIENT_READ_CHUNK_MIN_BYTES;
    let why = loop {
        let mut failure = None;
        loop {
            match decode_frame(&mut buf) {
                Ok(Some(cmd)) => inner.dispatch(cmd),
                Ok(None) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failure {
            tracing::warn!(peer = %inner.peer, error = %e, "undecodable frame; closing the connection");
            break "undecodable frame";
        }
        if inner.torn_down.get() {
            return;
        }
        // Ask for the rest of a partly received frame at once (its size is bounded by the
        // frame limit decode_frame enforces), and at least one chunk.
        let missing = match peek_frame_len(&buf) {
            Ok(Some(total)) => total.saturating_sub(buf.len()),
            _ => 0,
        };
        let want = missing.max(chunk);
        let start = buf.len();
        // Zero-filled rather than uninitialised: the chunk adapts, so this costs one memset
        // of about what the read returns.
        buf.resize(start + want, 0);
        let read = poll_fn(|cx| inner.poll_read(cx, &mut buf[start..])).await;
        match read {
            Ok(0) => {
                buf.truncate(start);
                break "closed by the peer";
            }
            Ok(n) => {
                buf.truncate(start + n);
                // Grow the chunk while reads fill it, shrink it when they use a quarter.
                if n == want {
                    chunk = (chunk * 2).min(CLIENT_READ_CHUNK_MAX_BYTES);
                } else if n < chunk / 4 {
                    chunk = (chunk / 2).max(CLIENT_READ_CHUNK_MIN_BYTES);
                }
            }
            Err(e) => {
                buf.truncate(start);
                tracing::debug!(peer = %inner.peer, error = %e, "read failed");
                break "read failed";
            }
        }
    };
    inner.tear_down(why);
}

/// The writer task: writes whatever is queued, all of it per round, until tear-down.
async fn write_loop(inner: Rc<Inner>) {
    let mut spare = BytesMut::with_capacity(CLIENT_READ_CHUNK_MIN_BYTES);
    loop {
        let have_bytes = poll_fn(|cx| {
            if inner.torn_down.get() {
                return Poll::Ready(false);
            }
            let mut out = inner.out.borrow_mut();
            if out.is_empty() {
                inner.writing.set(false);
                inner.writer_waker.set(Some(cx.waker().clone()));
                drop(out);
                wake_all(&inner.flushed_wakers);
                return Poll::Pending;
            }
            inner.writing.set(true);
            std::mem::swap(&mut *out, &mut spare);
            Poll::Ready(true)
        })
        .await;
        if !have_bytes {
            return;
        }
        wake_all(&inner.space_wakers);
        let mut written = 0;
        while written < spare.len() {
            match poll_fn(|cx| inner.poll_write(cx, &spare[written..])).await {
                Ok(0) => {
                    inner.tear_down("the socket accepted no bytes");
                    return;
                }
                Ok(n) => written += n,
                Err(e) => {
                    tracing::debug!(peer = %inner.peer, error = %e, "write failed");
                    inner.tear_down("write failed");
                    return;
                }
            }
        }
        spare.clear();
        // One huge frame must not pin a huge buffer for the connection's lifetime.
        if spare.capacity() > CLIENT_WRITE_BUFFER_KEEP_MAX_BYTES {
            spare = BytesMut::with_capacity(CLIENT_READ_CHUNK_MIN_BYTES);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::time::Instant;

    use bytes::Bytes;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::net::TcpListener;
    use glommio::{LocalExecutorBuilder, Placement};
    use rockshard_net::code::{request, response};
    use rockshard_net::ExtFields;

    use super::*;

    /// No test may run longer than this, whatever the code under test does.
    const TEST_TIME_MAX: Duration = Duration::from_secs(20);
    const LONG: Duration = Duration::from_secs(10);

    fn run(body: impl Future<Output = ()> + 'static) {
        let executor = LocalExecutorBuilder::new(Placement::Unbound).make().expect("executor");
        executor.run(async move {
            let finished = async {
                body.await;
                true
            };
            let limit = async {
                Timer::new(TEST_TIME_MAX).await;
                false
            };
            assert!(futures_lite::future::or(finished, limit).await, "test ran past {TEST_TIME_MAX:?}");
        });
    }

    fn listen() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr").to_string();
        (listener, addr)
    }

    /// The server side of a test: a socket and its read buffer.
    struct Peer {
        stream: TcpStream,
        buf: BytesMut,
    }

    impl Peer {
        async fn accept(listener: &TcpListener) -> Peer {
            let stream = listener.accept().await.expect("accept");
            Peer { stream, buf: BytesMut::new() }
        }

        /// The next frame, or `None` at end of stream.
        async fn next(&mut self) -> Option<RemotingCommand> {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                if let Some(cmd) = decode_frame(&mut self.buf).expect("client sends valid frames") {
                    return Some(cmd);
                }
                let n = self.stream.read(&mut chunk).await.expect("server read");
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }

        async fn send(&mut self, cmds: &[RemotingCommand]) {
            let mut out = Vec::new();
            for cmd in cmds {
                encode_frame(cmd, &mut out).expect("encodes");
            }
            self.stream.write_all(&out).await.expect("server write");
        }
    }

    fn numbered(n: usize) -> RemotingCommand {
        let ext: ExtFields = [("n", n.to_string())].into_iter().collect();
        RemotingCommand::new_request(request::GET_ROUTEINFO_BY_TOPIC, ext)
            .with_body(Bytes::from(format!("body {n}").into_bytes()))
    }

    /// Answers with the request's `n` as remark and its body echoed.
    fn echo(req: &RemotingCommand) -> RemotingCommand {
        RemotingCommand::response_to(req, response::SUCCESS, req.ext_fields.get("n").map(str::to_owned))
            .with_body(req.body.clone())
    }

    async fn request_all(
        client: &Client,
        ns: std::ops::Range<usize>,
    ) -> Vec<glommio::Task<(usize, Result<RemotingCommand>)>> {
        ns.map(|n| {
            let client = client.clone();
            glommio::spawn_local(async move { (n, client.request(numbered(n), LONG).await) })
        })
        .collect()
    }

    fn assert_echo(n: usize, result: Result<RemotingCommand>) {
        let resp = result.unwrap_or_else(|e| panic!("request {n} failed: {e}"));
        assert_eq!(resp.remark.as_deref(), Some(n.to_string().as_str()), "request {n} got another's answer");
        assert_eq!(&resp.body[..], format!("body {n}").as_bytes());
        assert!(resp.is_response());
    }

    #[test]
    fn answers_out_of_order_reach_their_own_requests() {
        run(async {
            let (listener, addr) = listen();
            const N: usize = 64;
            let server = glommio::spawn_local(async move {
                let mut peer = Peer::accept(&listener).await;
                let mut opaques = std::collections::HashSet::new();
                for _round in 0..2 {
                    let mut reqs = Vec::new();
                    for _ in 0..N {
                        let req = peer.next().await.expect("a request");
                        assert!(!req.is_oneway() && !req.is_response());
                        assert!(opaques.insert(req.opaque), "opaque {} reused while pending", req.opaque);
                        reqs.push(req);
                    }
                    // Reverse order, in two writes, so answers also span reads.
                    let answers: Vec<_> = reqs.iter().rev().map(echo).collect();
                    peer.send(&answers[..N / 2]).await;
                    peer.send(&answers[N / 2..]).await;
                }
                peer
            });
            let client = Client::connect(&addr, LONG).await.expect("connect");
            assert_eq!(client.peer(), addr);
            for round in 0..2 {
                for task in request_all(&client, round * N..(round + 1) * N).await {
                    let (n, result) = task.await;
                    assert_echo(n, result);
                }
            }
            assert!(client.handle.inner.pending.borrow().is_empty());
            let _peer = server.await;
            assert!(!client.is_closed());
        });
    }

    #[test]
    fn more_requests_than_slots_wait_for_a_slot_and_all_complete() {
        run(async {
            let (listener, addr) = listen();
            let total = CLIENT_PENDING_MAX + 100;
            let server = glommio::spawn_local(async move {
                let mut peer = Peer::accept(&listener).await;
                let mut most_outstanding = 0;
                let mut answered = 0;
                let mut batch = Vec::new();
                while answered < total {
                    let req = peer.next().await.expect("a request");
                    batch.push(echo(&req));
                    // Answer in groups: the client must have had many requests waiting.
                    if batch.len() == 512 || answered + batch.len() == total || peer.buf.is_empty() {
                        most_outstanding = most_outstanding.max(batch.len());
                        answered += batch.len();
                        peer.send(&std::mem::take(&mut batch)).await;
                    }
                }
                most_outstanding
            });
            let client = Client::connect(&addr, LONG).await.expect("connect");
            for task in request_all(&client, 0..total).await {
                let (n, result) = task.await;
                assert_echo(n, result);
            }
            assert!(server.await > 1, "requests were pipelined");
            assert_eq!(client.handle.inner.slots.available(), CLIENT_PENDING_MAX as u64);
        });
    }

    #[test]
    fn peer_closing_mid_request_fails_pending_requests_at_once() {
        run(async {
            let (listener, addr) = listen();
            let server = glommio::spawn_local(async move {
                let mut peer = Peer::accept(&listener).await;
                // Read one request, then hang up without answering.
                peer.next().await.expect("a request");
            });
            let client = Client::connect(&addr, LONG).await.expect("connect");
            let started = Instant::now();
            let result = client.request(numbered(1), LONG).await;
            assert!(matches!(result, Err(Error::Closed { .. })), "{result:?}");
            assert!(started.elapsed() < LONG / 2, "failed at once, not at the timeout");
            server.await;
            assert!(client.is_closed());
            assert!(client.handle.inner.pending.borrow().is_empty());
            let again = client.request(numbered(2), LONG).await;
            assert!(matches!(again, Err(Error::Closed { .. })), "{again:?}");
            assert!(matches!(client.oneway(numbered(3)).await, Err(Error::Closed { .. })));
        });
    }

    #[test]
    fn an_idle_connection_the_peer_drops_is_noticed_without_a_request() {
        run(async {
            let (listener, addr) = listen();
            let (hang_up, hung_up) = rockshard_local::completion::<()>();
            let server = glommio::spawn_local(async move {
                let peer = Peer::accept(&listener).await;
                hung_up.await;
                drop(peer);
            });
            let client = Client::connect(&addr, LONG).await.expect("connect");
            // Waiting again and again (as an idle link does between messages) keeps one
            // waker, not one per wait.
            for _ in 0..3 {
                let closed = futures_lite::future::or(
                    async {
                        client.closed().await;
                        true
                    },
                    async {
                        glommio::timer::sleep(Duration::from_millis(20)).await;
                        false
                    },
                );
                assert!(!closed.await, "open while the peer keeps it");
            }
            assert_eq!(client.handle.inner.closed_wakers.borrow().len(), 1);
            hang_up.complete(());
            let started = Instant::now();
            futures_lite::future::or(client.closed(), async {
                glommio::timer::sleep(LONG).await;
                panic!("the hang-up was not noticed within {LONG:?}");
            })
            .await;
            assert!(started.elapsed() < LONG / 2);
            assert!(client.is_closed());
            server.await;
            // Once closed, it stays so: a later wait ends at once.
            client.closed().await;
        });
    }

    #[test]
    fn unanswered_request_times_out_removes_its_entry_and_a_late_answer_is_dropped() {
        run(async {
            let (listener, addr) = listen();
            let server = glommio::spawn_local(async move {
                let mut peer = Peer::accept(&listener).await;
                let first = peer.next().await.expect("first request");
                let second = peer.next().await.expect("second request");
                // The first answer arrives after its request timed out.
                peer.send(&[echo(&first), echo(&second)]).await;
                peer
            });
            let client = Client::connect(&addr, LONG).await.expect("connect");
            let started = Instant::now();
            let result = client.request(numbered(1), Duration::from_millis(100)).await;
            match result {
                Err(Error::Timeout { code, timeout_ms, .. }) => {
                    assert_eq!(code, request::GET_ROUTEINFO_BY_TOPIC);
                    assert_eq!(timeout_ms, 100);
                }
                other => panic!("expected a timeout, got {other:?}"),
            }
            assert!(started.elapsed() >= Duration::from_millis(100));
            assert!(client.handle.inner.pending.borrow().is_empty(), "timed-out entry removed");
            assert_echo(2, client.request(numbered(2), LONG).await);
            let _peer = server.await;
            assert!(!client.is_closed());
        });
    }

    #[test]
    fn server_requests_reach_the_callback_and_non_oneway_ones_are_answered() {
        run(async {
            let (listener, addr) = listen();
            let server = glommio::spawn_local(async move {
                let mut peer = Peer::accept(&listener).await;
                // Before a callback is set: answered REQUEST_CODE_NOT_SUPPORTED.
                let ping = peer.next().await.expect("ping 1");
                let check =
                    RemotingCommand::new_request(request::CHECK_TRANSACTION_STATE, ExtFields::new()).with_opaque(1);
                peer.send(&[echo(&ping), check]).await;
                let mut sync = None;
                let mut unsupported = None;
                while sync.is_none() || unsupported.is_none() {
                    let cmd = peer.next().await.expect("a frame");
                    if cmd.is_response() {
                        unsupported = Some(cmd);
                    } else {
                        sync = Some(cmd);
                    }
                }
                let unsupported = unsupported.expect("answered");
                assert_eq!((unsupported.opaque, unsupported.code), (1, response::REQUEST_CODE_NOT_SUPPORTED));
                peer.send(&[echo(&sync.expect("sync request"))]).await;
                // With a callback: the oneway one is delivered but never answered.
                let ping = peer.next().await.expect("ping 2");
                let mut notify =
                    RemotingCommand::new_request(request::NOTIFY_CONSUMER_IDS_CHANGED, ExtFields::new()).with_opaque(7);
                notify.mark_oneway();
                let check = RemotingCommand::new_request(request::CHECK_TRANSACTION_STATE, ExtFields::new())
                    .with_opaque(8)
                    .with_serialize_type(rockshard_net::SerializeType::RocketMq);
                peer.send(&[echo(&ping), notify, check]).await;
                let answer = peer.next().await.expect("the answer to opaque 8");
                assert_eq!(answer.opaque, 8, "the oneway request was answered");
                assert!(answer.is_response() && !answer.is_oneway());
                assert_eq!(answer.remark.as_deref(), Some("checked"));
                peer
            });
            let client = Client::connect(&addr, LONG).await.expect("connect");
            assert_echo(1, client.request(numbered(1), LONG).await);
            assert_echo(2, client.request(numbered(2), LONG).await);
            let seen = Rc::new(RefCell::new(Vec::new()));
            let record = seen.clone();
            client.on_server_request(move |req| {
                record.borrow_mut().push((req.code, req.opaque));
                Some(RemotingCommand::response_to(&req, response::SUCCESS, Some("checked".into())))
            });
            assert_echo(3, client.request(numbered(3), LONG).await);
            let _peer = server.await;
            assert_eq!(
                *seen.borrow(),
                [(request::NOTIFY_CONSUMER_IDS_CHANGED, 7), (request::CHECK_TRANSACTION_STATE, 8)]
            );
        });
    }

    #[test]
    fn oneway_sets_its_flag_and_close_sends_it_first_then_fails_pending_requests() {
        run(async {
            let (listener, addr) = listen();
            let (got_request_tx, got_request_rx) = glommio::channels::local_channel::new_bounded(1);
            let server = glommio::spawn_local(async move {
                let mut peer = Peer::accept(&listener).await;
                let req = peer.next().await.expect("the request");
                assert!(!req.is_oneway());
                got_request_tx.send(()).await.expect("test waits");
                let oneway = peer.next().await.expect("the oneway request");
                assert!(oneway.is_oneway() && !oneway.is_response());
                assert_eq!(oneway.ext_fields.get("n"), Some("2"));
                assert!(peer.next().await.is_none(), "the client closed the socket");
            });
            let client = Client::connect(&addr, LONG).await.expect("connect");
            let waiting = {
                let client = client.clone();
                glommio::spawn_local(async move { client.request(numbered(1), LONG).await })
            };
            got_request_rx.recv().await.expect("server got the request");
            client.oneway(numbered(2)).await.expect("queued");
            let started = Instant::now();
            client.close().await;
            let result = waiting.await;
            assert!(matches!(result, Err(Error::Closed { .. })), "{result:?}");
            assert!(started.elapsed() < LONG / 2);
            assert!(client.is_closed());
            assert!(matches!(client.request(numbered(3), LONG).await, Err(Error::Closed { .. })));
            server.await;
        });
    }

    #[test]
    fn dropping_the_last_handle_closes_the_socket() {
        run(async {
            let (listener, addr) = listen();
            let server = glommio::spawn_local(async move {
                let mut peer = Peer::accept(&listener).await;
                peer.next().await
            });
            let client = Client::connect(&addr, LONG).await.expect("connect");
            let other = client.clone();
            drop(client);
            assert!(!other.is_closed(), "a clone keeps the connection");
            drop(other);
            assert!(server.await.is_none());
        });
    }

    #[test]
    fn large_frames_and_frames_split_across_writes_are_reassembled() {
        run(async {
            let (listener, addr) = listen();
            let big_body: Bytes = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
            let expected = big_body.clone();
            let server = glommio::spawn_local(async move {
                let mut peer = Peer::accept(&listener).await;
                let big = peer.next().await.expect("request for the big answer");
                peer.send(&[echo(&big).with_body(big_body)]).await;
                let split = peer.next().await.expect("request for the split answer");
                let mut frame = Vec::new();
                encode_frame(&echo(&split), &mut frame).expect("encodes");
                for piece in [&frame[..3], &frame[3..10], &frame[10..]] {
                    peer.stream.write_all(piece).await.expect("write");
                    Timer::new(Duration::from_millis(20)).await;
                }
                peer
            });
            let client = Client::connect(&addr, LONG).await.expect("connect");
            let big = client.request(numbered(1), LONG).await.expect("big answer");
            assert_eq!(big.body, expected);
            assert_echo(2, client.request(numbered(2), LONG).await);
            let _peer = server.await;
        });
    }

    #[test]
    fn connecting_to_a_closed_port_is_an_io_error() {
        run(async {
            let (listener, addr) = listen();
            drop(listener);
            let result = Client::connect(&addr, LONG).await;
            assert!(matches!(result, Err(Error::Io { op: "connect", .. })), "{:?}", result.err());
        });
    }

    #[test]
    fn a_frame_the_client_cannot_encode_is_refused_without_closing() {
        run(async {
            let (listener, addr) = listen();
            let server = glommio::spawn_local(async move {
                let mut peer = Peer::accept(&listener).await;
                let req = peer.next().await.expect("the valid request");
                peer.send(&[echo(&req)]).await;
                peer
            });
            let client = Client::connect(&addr, LONG).await.expect("connect");
            // POP codes do not fit the binary header's 16-bit code field.
            let pop = RemotingCommand::new_request(request::POP_MESSAGE, ExtFields::new())
                .with_serialize_type(rockshard_net::SerializeType::RocketMq);
            assert!(matches!(client.request(pop, LONG).await, Err(Error::Protocol { .. })));
            assert!(client.handle.inner.pending.borrow().is_empty());
            assert_echo(1, client.request(numbered(1), LONG).await);
            let _peer = server.await;
        });
    }
}
