//! Client connections as a bounded resource: the accept loop, the connection cap, the idle and
//! handshake timeouts, and the open-file limit they are sized against.
//!
//! tonic's own accept loop retries a failed `accept` at once, so once the process runs out of
//! file descriptors (EMFILE) it spins on a full core while no client gets in; and nothing bounds
//! how many connections idle clients may hold. Here:
//! - at most `max_connections` are open, fewer when the open-file limit leaves less room after
//!   the descriptors reserved for the data folder's files; a new connection at the cap takes the
//!   place of the connection idle the longest (no call in flight), as nginx reuses keep-alive
//!   connections when it runs out, so an idle crowd never locks a new client out;
//! - a connection with no call in flight for `idle_timeout` is closed, and one that has not sent
//!   the HTTP/2 preface within `handshake_timeout` is closed (TLS handshakes get the same
//!   timeout from the TLS acceptor);
//! - a failing `accept` is logged once per interval, not once per attempt; when the cause is a
//!   descriptor shortage, a few idle connections are closed to make room and the accept retried
//!   after 10 ms, and with nothing to close it backs off (10 ms doubling to 1 s).
//!
//! Closing a connection from here makes its socket read as ended, so hyper drops the connection
//! and its descriptor; only connections without calls in flight are ever closed this way.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};

use crate::metrics::{Metrics, ReasonLabels};

/// Length of the HTTP/2 client connection preface (RFC 9113, section 3.4): a plaintext
/// connection has finished its handshake once it has sent that many bytes.
const PREFACE_LEN: u64 = 24;

/// Shortest and longest pause after a failed `accept`.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// Idle connections closed each time `accept` finds no descriptor left.
const EVICT_ON_SHORTAGE: usize = 8;

/// A failing `accept` is logged at most once per this interval.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Connection settings of the gRPC listener.
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    /// Most client connections open at once (lowered at start when the open-file limit leaves
    /// less room).
    pub max_connections: usize,
    /// File descriptors kept free of connections, for collection files, models and logs.
    pub reserved_fds: u64,
    /// A connection with no call in flight for this long is closed; zero disables it.
    pub idle_timeout: Duration,
    /// A connection must finish its TLS handshake, or send the HTTP/2 preface, within this.
    pub handshake_timeout: Duration,
    /// Pending connections the kernel may queue before `accept` (capped by `somaxconn`).
    pub listen_backlog: u32,
    /// Interval of HTTP/2 PING frames on a connection, to find dead peers; zero disables them.
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            reserved_fds: 256,
            idle_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
            listen_backlog: 4096,
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// The process's open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    /// Soft limit before it was raised.
    pub soft_before: u64,
    /// Soft limit now.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard limit (the soft default, often 1024, is far
/// below what a server with many clients needs) and returns both values.
pub fn raise_open_file_limit() -> io::Result<FileLimit> {
    let (soft_before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let soft = if soft_before < hard {
        rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard)?;
        rlimit::getrlimit(rlimit::Resource::NOFILE)?.0
    } else {
        soft_before
    };
    Ok(FileLimit { soft_before, soft, hard })
}

/// The connection cap in force: `options.max_connections`, lowered so that `reserved_fds`
/// descriptors stay free under the current soft open-file limit.
pub fn effective_max_connections(options: &ConnectionOptions) -> usize {
    let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(u64::MAX, |(soft, _)| soft);
    let room = usize::try_from(soft.saturating_sub(options.reserved_fds)).unwrap_or(usize::MAX);
    options.max_connections.min(room).max(1)
}

/// Binds `addr` with a listen backlog of `backlog` (std and tokio use 128 and 1024; a burst of
/// connecting clients overflows those and their SYNs are dropped).
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // As std and tokio do: a restart must not wait for TIME_WAIT sockets of the last run.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    TcpListener::from_std(socket.into())
}

/// Why a connection was closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    Idle,
    Handshake,
    Evicted,
}

impl CloseReason {
    fn label(self) -> &'static str {
        match self {
            CloseReason::Idle => "idle",
            CloseReason::Handshake => "handshake",
            CloseReason::Evicted => "evicted",
        }
    }
}

/// What the server knows of one open connection.
#[derive(Debug)]
pub struct ConnectionState {
    opened: Instant,
    /// Milliseconds since `opened` at the last start or end of a call.
    last_active_ms: AtomicU64,
    in_flight: AtomicUsize,
    bytes_read: AtomicU64,
    closing: AtomicBool,
    read_waker: AtomicWaker,
}

impl ConnectionState {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            bytes_read: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            read_waker: AtomicWaker::new(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self, now: Instant) -> Duration {
        let last = self.opened + Duration::from_millis(self.last_active_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && !self.closing.load(Ordering::Relaxed)
    }

    /// Makes the socket read as ended; returns false when it was already closing.
    fn close(&self) -> bool {
        if self.closing.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.read_waker.wake();
        true
    }

    fn call_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
    }

    fn call_ended(&self) {
        self.touch();
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, Arc<ConnectionState>>,
    /// Connections told to close whose sockets are not dropped yet.
    closing: usize,
}

/// Every open connection of one listener.
pub struct Tracker {
    max_connections: usize,
    options: ConnectionOptions,
    registry: Mutex<Registry>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("max_connections", &self.max_connections)
            .field("open", &self.open())
            .finish()
    }
}

impl Tracker {
    /// A tracker allowing `max_connections` open connections.
    pub fn new(options: ConnectionOptions, max_connections: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            max_connections,
            options,
            registry: Mutex::new(Registry { next_id: 0, open: HashMap::new(), closing: 0 }),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().open.len()
    }

    fn close(&self, registry: &mut Registry, state: &ConnectionState, reason: CloseReason) {
        if state.close() {
            registry.closing += 1;
            let labels = ReasonLabels { reason: reason.label().to_string() };
            self.metrics.connections_closed.get_or_create(&labels).inc();
        }
    }

    /// Closes up to `n` of the connections idle the longest; returns how many it closed (none
    /// when every connection has a call in flight).
    fn evict(&self, n: usize) -> usize {
        let mut registry = self.lock();
        let now = Instant::now();
        let mut idle: Vec<(Duration, Arc<ConnectionState>)> = registry
            .open
            .values()
            .filter(|c| c.is_idle())
            .map(|c| (c.idle_for(now), Arc::clone(c)))
            .collect();
        if idle.len() > n {
            idle.select_nth_unstable_by(n, |a, b| b.0.cmp(&a.0));
            idle.truncate(n);
        }
        for (_, victim) in &idle {
            self.close(&mut registry, victim, CloseReason::Evicted);
        }
        idle.len()
    }

    /// Registers an accepted connection, making room at the cap; `None` when the cap is reached
    /// and every connection has a call in flight.
    fn admit(self: &Arc<Self>, stream: TcpStream) -> Option<TrackedStream> {
        let at_cap = {
            let registry = self.lock();
            registry.open.len() - registry.closing >= self.max_connections
        };
        if at_cap && self.evict(1) == 0 {
            return None;
        }
        let state = Arc::new(ConnectionState::new());
        let id = {
            let mut registry = self.lock();
            let id = registry.next_id;
            registry.next_id += 1;
            registry.open.insert(id, Arc::clone(&state));
            self.metrics.connections.set(registry.open.len() as i64);
            id
        };
        let info =
            TcpConnectInfo { local_addr: stream.local_addr().ok(), remote_addr: stream.peer_addr().ok() };
        Some(TrackedStream { inner: stream, state, id, info, tracker: Arc::downgrade(self) })
    }

    fn remove(&self, id: u64, state: &ConnectionState) {
        let mut registry = self.lock();
        if registry.open.remove(&id).is_some() && state.closing.load(Ordering::Relaxed) {
            registry.closing = registry.closing.saturating_sub(1);
        }
        self.metrics.connections.set(registry.open.len() as i64);
    }

    /// Closes the connections past their handshake or idle timeout.
    fn reap(&self) {
        let now = Instant::now();
        let mut registry = self.lock();
        let due: Vec<(Arc<ConnectionState>, CloseReason)> = registry
            .open
            .values()
            .filter_map(|c| {
                if c.closing.load(Ordering::Relaxed) {
                    return None;
                }
                let handshaking = c.bytes_read.load(Ordering::Relaxed) < PREFACE_LEN;
                if handshaking && now.saturating_duration_since(c.opened) >= self.options.handshake_timeout {
                    return Some((Arc::clone(c), CloseReason::Handshake));
                }
                let idle_timeout = self.options.idle_timeout;
                (!idle_timeout.is_zero() && c.is_idle() && c.idle_for(now) >= idle_timeout)
                    .then(|| (Arc::clone(c), CloseReason::Idle))
            })
            .collect();
        for (state, reason) in due {
            self.close(&mut registry, &state, reason);
        }
    }

    /// How often [`Tracker::reap`] must run for the timeouts to hold to within a quarter.
    fn reap_interval(&self) -> Duration {
        let mut interval = self.options.handshake_timeout / 4;
        if !self.options.idle_timeout.is_zero() {
            interval = interval.min(self.options.idle_timeout / 4);
        }
        interval.clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// Whether a failed `accept` means the process or system is out of descriptors or memory: a
/// retry fails the same way until something is freed.
fn is_resource_shortage(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(code) if [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM].contains(&code))
}

/// Accepts connections from `listener` under `tracker`'s cap, and closes the ones past their
/// timeouts, until the returned stream is dropped (tonic drops it when shutdown begins, which
/// closes the listening socket).
pub fn incoming(listener: TcpListener, tracker: Arc<Tracker>) -> ReceiverStream<io::Result<TrackedStream>> {
    let (tx, rx) = mpsc::channel(16);
    let reaper = {
        let tracker = Arc::downgrade(&tracker);
        let interval = tracker.upgrade().map_or(Duration::from_secs(1), |t| t.reap_interval());
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(tracker) = tracker.upgrade() else { return };
                tracker.reap();
            }
        })
    };
    tokio::spawn(async move {
        accept_loop(listener, &tracker, &tx).await;
        reaper.abort();
        // Connections already accepted keep the tracker alive for their own bookkeeping.
    });
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    tracker: &Arc<Tracker>,
    tx: &mpsc::Sender<io::Result<TrackedStream>>,
) {
    let mut backoff = ACCEPT_BACKOFF.0;
    let mut last_logged: Option<Instant> = None;
    let mut failures_since_log = 0u64;
    let mut refused_since_log = 0u64;
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let should_log = |last: &Option<Instant>| last.is_none_or(|t| t.elapsed() >= ACCEPT_LOG_INTERVAL);
        match accepted {
            Ok((stream, _)) => {
                backoff = ACCEPT_BACKOFF.0;
                // Without TCP_NODELAY small replies wait on Nagle + delayed ACK (~40 ms per call).
                let _ = stream.set_nodelay(true);
                match tracker.admit(stream) {
                    Some(tracked) => {
                        if tx.send(Ok(tracked)).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        tracker.metrics.connections_refused.inc();
                        refused_since_log += 1;
                        if should_log(&last_logged) {
                            tracing::warn!(
                                max_connections = tracker.max_connections,
                                refused = refused_since_log,
                                "connection limit reached with a call in flight on every connection; \
                                 refusing new connections"
                            );
                            last_logged = Some(Instant::now());
                            refused_since_log = 0;
                        }
                    }
                }
            }
            Err(error) => {
                tracker.metrics.accept_errors.inc();
                if !is_resource_shortage(&error) {
                    // A connection that failed between the kernel's accept and ours: its own loss.
                    tracing::debug!(%error, "accept failed");
                    continue;
                }
                failures_since_log += 1;
                if should_log(&last_logged) {
                    tracing::warn!(
                        %error,
                        failures = failures_since_log,
                        open_connections = tracker.open(),
                        "cannot accept connections; closing the longest-idle connection and backing off"
                    );
                    last_logged = Some(Instant::now());
                    failures_since_log = 0;
                }
                // Freeing a few idle connections lets the next accepts succeed once their
                // sockets are dropped, a moment later; with nothing to free, wait longer each time.
                if tracker.evict(EVICT_ON_SHORTAGE) > 0 {
                    tokio::time::sleep(ACCEPT_BACKOFF.0).await;
                } else {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF.1);
                }
            }
        }
    }
}

/// What a call learns of its connection (in the request's extensions).
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Addresses, as tonic gives them for plain TCP.
    pub tcp: TcpConnectInfo,
    state: Arc<ConnectionState>,
}

/// An accepted TCP connection under a [`Tracker`]: reads as ended once the tracker closes it.
#[derive(Debug)]
pub struct TrackedStream {
    inner: TcpStream,
    state: Arc<ConnectionState>,
    id: u64,
    info: TcpConnectInfo,
    tracker: Weak<Tracker>,
}

impl Drop for TrackedStream {
    fn drop(&mut self) {
        if let Some(tracker) = self.tracker.upgrade() {
            tracker.remove(self.id, &self.state);
        }
    }
}

impl Connected for TrackedStream {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> ConnectionInfo {
        ConnectionInfo { tcp: self.info.clone(), state: Arc::clone(&self.state) }
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.state.read_waker.register(cx.waker());
        if this.state.closing.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = (buf.filled().len() - before) as u64;
        if read > 0 {
            this.state.bytes_read.fetch_add(read, Ordering::Relaxed);
        }
        result
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The connection state of a request, on plain TCP or under TLS.
fn connection_of<B>(request: &Request<B>) -> Option<Arc<ConnectionState>> {
    let extensions = request.extensions();
    extensions
        .get::<ConnectionInfo>()
        .or_else(|| extensions.get::<TlsConnectInfo<ConnectionInfo>>().map(TlsConnectInfo::get_ref))
        .map(|info| Arc::clone(&info.state))
}

/// The peer address of a request, on plain TCP or under TLS, through a [`TrackedStream`] or not.
pub fn peer_addr<B>(request: &Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<ConnectionInfo>()
        .map(|info| &info.tcp)
        .or_else(|| extensions.get::<TlsConnectInfo<ConnectionInfo>>().map(|i| &i.get_ref().tcp))
        .or_else(|| extensions.get::<TcpConnectInfo>())
        .or_else(|| extensions.get::<TlsConnectInfo<TcpConnectInfo>>().map(TlsConnectInfo::get_ref))
        .and_then(TcpConnectInfo::remote_addr)
}

/// Tower layer counting each connection's calls in flight (a call lasts until its response body
/// is done), which tells the idle timeout and eviction which connections are idle.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActivityLayer;

impl<S> Layer<S> for ActivityLayer {
    type Service = Activity<S>;

    fn layer(&self, inner: S) -> Activity<S> {
        Activity { inner }
    }
}

/// The service built by [`ActivityLayer`].
#[derive(Debug, Clone)]
pub struct Activity<S> {
    inner: S,
}

type ActivityFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<CallBody<B>>, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Activity<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<CallBody<ResBody>>;
    type Error = S::Error;
    type Future = ActivityFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let guard = connection_of(&request).map(|state| {
            state.call_started();
            CallGuard(state)
        });
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            Ok(response.map(|inner| CallBody { inner, _guard: guard }))
        })
    }
}

/// Ends a call on its connection when dropped.
#[derive(Debug)]
struct CallGuard(Arc<ConnectionState>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0.call_ended();
    }
}

/// A response body that keeps its call counted in flight until it is dropped.
#[derive(Debug)]
pub struct CallBody<B> {
    inner: B,
    _guard: Option<CallGuard>,
}

impl<B: Body + Unpin> Body for CallBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
        let addr = listener.local_addr().unwrap();
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), server.unwrap().0)
    }

    fn options() -> ConnectionOptions {
        ConnectionOptions {
            handshake_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            ..ConnectionOptions::default()
        }
    }

    #[tokio::test]
    async fn at_the_cap_a_new_connection_replaces_the_longest_idle_one_never_a_busy_one() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let tracker = Tracker::new(options(), 2, Arc::new(Metrics::new()));
        let mut clients = Vec::new();
        let mut first = None;
        let mut second = None;
        for slot in [&mut first, &mut second] {
            let (client, server) = pair(&listener).await;
            clients.push(client);
            *slot = Some(tracker.admit(server).expect("under the cap"));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (first, second) = (first.unwrap(), second.unwrap());
        // The first (oldest idle) connection is busy with a call: the second is evicted instead.
        first.state.call_started();
        let (client, server) = pair(&listener).await;
        clients.push(client);
        let third = tracker.admit(server).expect("room made by eviction");
        assert!(second.state.closing.load(Ordering::Relaxed), "the idle connection was evicted");
        assert!(!first.state.closing.load(Ordering::Relaxed), "a connection with a call is never evicted");
        drop(second);
        assert_eq!(tracker.open(), 2);
        // Every connection busy: a newcomer is refused.
        third.state.call_started();
        let (_client, server) = pair(&listener).await;
        assert!(tracker.admit(server).is_none());
        first.state.call_ended();
        third.state.call_ended();
    }

    #[tokio::test]
    async fn a_closed_connection_reads_as_ended_and_leaves_the_registry_when_dropped() {
        use tokio::io::AsyncReadExt;
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let tracker = Tracker::new(options(), 8, Arc::new(Metrics::new()));
        let (_client, server) = pair(&listener).await;
        let mut tracked = tracker.admit(server).unwrap();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            let n = tracked.read(&mut buf).await.unwrap();
            (n, tracked)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(tracker.evict(1), 1);
        let (n, tracked) = tokio::time::timeout(Duration::from_secs(5), reader).await.unwrap().unwrap();
        assert_eq!(n, 0, "a pending read is woken and sees the end of the stream");
        assert_eq!(tracker.open(), 1);
        drop(tracked);
        assert_eq!(tracker.open(), 0);
    }

    #[tokio::test]
    async fn the_reaper_closes_silent_handshakes_and_idle_connections() {
        use tokio::io::AsyncWriteExt;
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let options = ConnectionOptions {
            handshake_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(300),
            ..ConnectionOptions::default()
        };
        let tracker = Tracker::new(options, 8, Arc::new(Metrics::new()));
        let (_silent_client, silent) = pair(&listener).await;
        let silent = tracker.admit(silent).unwrap();
        let (mut talking_client, talking) = pair(&listener).await;
        let mut talking = tracker.admit(talking).unwrap();
        talking_client.write_all(&[0u8; PREFACE_LEN as usize]).await.unwrap();
        let mut buf = [0u8; 64];
        tokio::io::AsyncReadExt::read(&mut talking, &mut buf).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        tracker.reap();
        assert!(silent.state.closing.load(Ordering::Relaxed), "no preface within the handshake timeout");
        assert!(!talking.state.closing.load(Ordering::Relaxed), "the preface was sent in time");
        tokio::time::sleep(Duration::from_millis(200)).await;
        tracker.reap();
        assert!(talking.state.closing.load(Ordering::Relaxed), "idle past the idle timeout");
    }
}
