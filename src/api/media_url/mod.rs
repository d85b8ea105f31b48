//! Media by URL: fetching the bytes of an image, clip or point cloud that a request names by URL,
//! without letting a request reach what the server can reach and its clients should not (SSRF).
//!
//! # Policy
//!
//! - **Off by default.** [`MediaFetcher::disabled`], and a policy with no allowed hosts, refuse
//!   every URL with [`MediaUrlError::Disabled`].
//! - **Schemes:** `http` and `https` only.
//! - **Hosts:** only hosts on [`MediaUrlPolicy::allowed_hosts`], compared ASCII case-insensitively
//!   and ignoring one trailing dot:
//!   - `example.com` matches that host only;
//!   - `*.example.com` (or `.example.com`, the same) matches its subdomains at any depth
//!     (`a.example.com`, `a.b.example.com`) but not `example.com` itself: list both for both;
//!   - an IP address (`192.0.2.7`, `::1` or `[::1]`) matches a URL naming that address literally,
//!     in any form the URL standard reads as it (`http://2130706433/` is `http://127.0.0.1/`).
//!
//!   There is no catch-all pattern.
//! - **Addresses:** the host is resolved once per hop and *every* address is checked: one refused
//!   address refuses the URL. Refused, unless inside [`MediaUrlPolicy::allowed_addresses`]:
//!   IPv4 `0.0.0.0/8` (unspecified), `10/8`, `172.16/12`, `192.168/16` (private), `100.64/10`
//!   (CGNAT), `127/8` (loopback), `169.254/16` (link-local, cloud metadata `169.254.169.254`),
//!   `192.0.0/24`, `192.0.2/24`, `198.51.100/24`, `203.0.113/24` (protocol assignments,
//!   documentation), `192.88.99/24` (6to4 relays), `198.18/15` (benchmarking), `224/4`
//!   (multicast), `240/4` (reserved, broadcast); IPv6 anything outside global unicast `2000::/3`
//!   (so `::`, `::1`, IPv4-compatible `::/96`, `fc00::/7` unique-local with metadata `fd00:ec2::254`,
//!   `fe80::/10`, `fec0::/10`, `ff00::/8`, local-use NAT64 `64:ff9b:1::/48`), and inside it
//!   `2001::/23` (protocol assignments, Teredo), `2001:db8::/32` and `3fff::/20` (documentation).
//!   IPv6 forms that carry an IPv4 address are judged by that address: IPv4-mapped
//!   `::ffff:0:0/96`, NAT64 `64:ff9b::/96` and 6to4 `2002::/16`.
//! - **No DNS rebinding:** the connection goes to one of exactly the checked addresses; the name
//!   is never resolved again between check and connect. The original name is still the `Host`
//!   header, the TLS SNI and the name the server's certificate must carry.
//! - **Redirects** are followed by hand, at most [`MediaUrlPolicy::max_redirects`], and each target
//!   is checked again from the top: scheme, host, addresses.
//! - **Limits:** a body over [`MediaUrlPolicy::max_bytes`] is refused as soon as its
//!   `Content-Length` or the bytes received so far exceed it; each TCP connect and TLS handshake is
//!   bounded by `connect_timeout`, the whole fetch (every hop, resolving, body) by `total_timeout`.
//! - **Credentials** in a URL (`user:pass@`) are refused, never forwarded. Error messages name URLs
//!   without userinfo, query or fragment.
//!
//! # Status codes
//!
//! [`MediaUrlError::code`]: `INVALID_ARGUMENT` for what the URL asks (bad URL, scheme, host,
//! address, too many redirects, too large); `FAILED_PRECONDITION` when the feature is off or the
//! server answers with something other than media (4xx, a redirect without a target);
//! `UNAVAILABLE` when the server could not be reached (resolving, connecting, TLS, a broken
//! exchange, 5xx, 408, 429: a retry may succeed); `DEADLINE_EXCEEDED` when the whole fetch ran past
//! `total_timeout`.
//!
//! # Client
//!
//! hyper's HTTP/1.1 client connection over tokio-rustls (ring provider, the system's roots), one
//! connection per hop, on a socket this module connects itself. Every crate is already in the tree
//! through tonic and axum; a pooled client such as reqwest would add `url`/IDNA and its own pool and
//! redirect machinery, all of which would have to be bent to connect only to checked addresses.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION, USER_AGENT};
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tonic::Code;

mod address;
mod target;
#[cfg(test)]
mod tests;

pub use address::AddressRange;
use address::refused_range;
use target::{Host, HostPattern, Target, redact_raw};

/// Default [`MediaUrlPolicy::max_bytes`]: 32 MiB.
pub const DEFAULT_MAX_BYTES: usize = 32 << 20;
/// Default [`MediaUrlPolicy::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`MediaUrlPolicy::total_timeout`].
pub const DEFAULT_TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`MediaUrlPolicy::max_redirects`].
pub const DEFAULT_MAX_REDIRECTS: usize = 5;

/// Longer URLs are refused before parsing.
const MAX_URL_LEN: usize = 8192;
/// Error messages cut a URL to this many characters.
const MAX_SHOWN_URL: usize = 256;
/// A declared length reserves at most this much up front; the rest grows as bytes arrive.
const MAX_PREALLOC: usize = 1 << 20;
const USER_AGENT_VALUE: &str = concat!("bindery/", env!("CARGO_PKG_VERSION"));

/// What a [`Resolve`] returns.
pub type ResolveFuture = Pin<Box<dyn Future<Output = io::Result<Vec<IpAddr>>> + Send>>;

/// Turns a host name into addresses. [`SystemResolver`] by default; tests inject their own to
/// play DNS tricks.
pub trait Resolve: Send + Sync {
    /// Every address `host` (lowercase, no trailing dot) has.
    fn resolve(&self, host: &str) -> ResolveFuture;
}

/// The system's resolver (`getaddrinfo`, through tokio).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str) -> ResolveFuture {
        let host = host.to_owned();
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|addr| addr.ip()).collect())
        })
    }
}

/// What [`MediaFetcher`] may fetch and how much of it.
#[derive(Clone)]
pub struct MediaUrlPolicy {
    /// Host patterns (see the module doc for matching); empty turns fetching off.
    pub allowed_hosts: Vec<String>,
    /// Ranges exempt from the address refusals (for example `127.0.0.1/32` for a local media
    /// server). Hosts must still be on `allowed_hosts`.
    pub allowed_addresses: Vec<AddressRange>,
    /// Largest body accepted, in bytes.
    pub max_bytes: usize,
    /// Bound on each TCP connect attempt and each TLS handshake.
    pub connect_timeout: Duration,
    /// Bound on the whole fetch: every hop, resolving, connecting and reading the body.
    pub total_timeout: Duration,
    /// Redirects followed before giving up (0: none).
    pub max_redirects: usize,
    /// How host names become addresses.
    pub resolver: Arc<dyn Resolve>,
    /// Roots trusted for https besides the system's (a private CA, or a test's certificate).
    pub extra_root_certs: Vec<CertificateDer<'static>>,
}

impl Default for MediaUrlPolicy {
    /// Fetching off (no hosts), default limits, the system resolver.
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allowed_addresses: Vec::new(),
            max_bytes: DEFAULT_MAX_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            total_timeout: DEFAULT_TOTAL_TIMEOUT,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            resolver: Arc::new(SystemResolver),
            extra_root_certs: Vec::new(),
        }
    }
}

impl fmt::Debug for MediaUrlPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaUrlPolicy")
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allowed_addresses", &self.allowed_addresses)
            .field("max_bytes", &self.max_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("max_redirects", &self.max_redirects)
            .field("extra_root_certs", &self.extra_root_certs.len())
            .finish_non_exhaustive()
    }
}

/// A policy that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MediaPolicyError {
    #[error("media URL host pattern {pattern:?}: {reason}")]
    HostPattern { pattern: String, reason: &'static str },
    #[error("media URL address range {0}")]
    AddressRange(String),
    #[error("media URL policy: {0} must be above zero")]
    Zero(&'static str),
    #[error("media URL TLS setup: {0}")]
    Tls(String),
}

/// Why a URL was not fetched. Every message names the URL without userinfo, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaUrlError {
    #[error(
        "fetching media by URL is not enabled on this server (the operator turns it on for chosen hosts with --media-url-allow)"
    )]
    Disabled,
    #[error("invalid media URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("media URL {url}: scheme {scheme:?} is refused (only http and https are fetched)")]
    SchemeRefused { url: String, scheme: String },
    #[error("media URL {url}: host {host} is not on the allow-list")]
    HostNotAllowed { url: String, host: String },
    #[error("media URL {url}: {host} has address {address}, which is refused ({what}, {range})")]
    AddressRefused { url: String, host: String, address: IpAddr, what: &'static str, range: AddressRange },
    #[error("media URL {url}: resolving {host} failed: {reason}")]
    Resolve { url: String, host: String, reason: String },
    #[error("media URL {url}: connecting to {address} failed: {reason}")]
    Connect { url: String, address: SocketAddr, reason: String },
    #[error("media URL {url}: connecting to {address} took longer than {timeout:?}")]
    ConnectTimeout { url: String, address: SocketAddr, timeout: Duration },
    #[error("media URL {url}: TLS failed: {reason}")]
    Tls { url: String, reason: String },
    #[error("media URL {url}: HTTP exchange failed: {reason}")]
    Http { url: String, reason: String },
    #[error("media URL {url}: the server answered HTTP {status}")]
    UpstreamStatus { url: String, status: u16 },
    #[error("media URL {url}: bad redirect: {reason}")]
    BadRedirect { url: String, reason: String },
    #[error("media URL {url}: more than {limit} redirects")]
    TooManyRedirects { url: String, limit: usize },
    #[error("media URL {url}: Content-Length {length} is over the limit of {limit} bytes")]
    TooLargeDeclared { url: String, length: u64, limit: usize },
    #[error("media URL {url}: body is over the limit of {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("media URL {url}: fetching took longer than {timeout:?}")]
    Timeout { url: String, timeout: Duration },
}

impl MediaUrlError {
    /// The gRPC code a client should get for this error (the module doc says why).
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidUrl { .. }
            | Self::SchemeRefused { .. }
            | Self::HostNotAllowed { .. }
            | Self::AddressRefused { .. }
            | Self::TooManyRedirects { .. }
            | Self::TooLargeDeclared { .. }
            | Self::TooLarge { .. } => Code::InvalidArgument,
            Self::Resolve { .. }
            | Self::Connect { .. }
            | Self::ConnectTimeout { .. }
            | Self::Tls { .. }
            | Self::Http { .. } => Code::Unavailable,
            // Server trouble, a timeout or rate limiting: a retry may succeed.
            Self::UpstreamStatus { status, .. } if *status >= 500 || *status == 408 || *status == 429 => {
                Code::Unavailable
            }
            Self::Disabled | Self::UpstreamStatus { .. } | Self::BadRedirect { .. } => {
                Code::FailedPrecondition
            }
            Self::Timeout { .. } => Code::DeadlineExceeded,
        }
    }
}

/// A fetched body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub bytes: Bytes,
    /// The `Content-Type` header, when it was there and is text.
    pub content_type: Option<String>,
    /// The URL the body came from after redirects (without userinfo, with its query).
    pub final_url: String,
}

/// Fetches media by URL under a [`MediaUrlPolicy`]; cheap to clone and share.
#[derive(Clone)]
pub struct MediaFetcher {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    hosts: Vec<HostPattern>,
    allowed_addresses: Vec<AddressRange>,
    max_bytes: usize,
    connect_timeout: Duration,
    total_timeout: Duration,
    max_redirects: usize,
    resolver: Arc<dyn Resolve>,
    tls: TlsConnector,
}

impl fmt::Debug for MediaFetcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            None => f.write_str("MediaFetcher(disabled)"),
            Some(inner) => {
                f.debug_struct("MediaFetcher").field("hosts", &inner.hosts).finish_non_exhaustive()
            }
        }
    }
}

impl MediaFetcher {
    /// A fetcher for `policy`; disabled when it allows no host.
    pub fn new(policy: MediaUrlPolicy) -> Result<Self, MediaPolicyError> {
        if policy.allowed_hosts.is_empty() {
            return Ok(Self::disabled());
        }
        if policy.max_bytes == 0 {
            return Err(MediaPolicyError::Zero("max_bytes"));
        }
        if policy.connect_timeout.is_zero() {
            return Err(MediaPolicyError::Zero("connect_timeout"));
        }
        if policy.total_timeout.is_zero() {
            return Err(MediaPolicyError::Zero("total_timeout"));
        }
        let hosts = policy.allowed_hosts.iter().map(|p| HostPattern::parse(p)).collect::<Result<_, _>>()?;
        Ok(Self {
            inner: Some(Arc::new(Inner {
                hosts,
                allowed_addresses: policy.allowed_addresses,
                max_bytes: policy.max_bytes,
                connect_timeout: policy.connect_timeout,
                total_timeout: policy.total_timeout,
                max_redirects: policy.max_redirects,
                resolver: policy.resolver,
                tls: TlsConnector::from(tls_config(&policy.extra_root_certs)?),
            })),
        })
    }

    /// A fetcher that refuses every URL with [`MediaUrlError::Disabled`].
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Whether any URL can be fetched.
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The body at `url`, after the policy's checks on it and on every redirect. Runs on the
    /// current tokio runtime (a task drives each connection).
    pub async fn fetch(&self, url: &str) -> Result<Fetched, MediaUrlError> {
        let Some(inner) = &self.inner else {
            return Err(MediaUrlError::Disabled);
        };
        match tokio::time::timeout(inner.total_timeout, inner.fetch(url)).await {
            Ok(result) => result,
            Err(_) => Err(MediaUrlError::Timeout { url: redact_raw(url), timeout: inner.total_timeout }),
        }
    }
}

fn tls_config(extra_roots: &[CertificateDer<'static>]) -> Result<Arc<ClientConfig>, MediaPolicyError> {
    let mut roots = RootCertStore::empty();
    // An unreadable system store is not fatal: https then fails per URL with a certificate error.
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    for cert in extra_roots {
        roots.add(cert.clone()).map_err(|e| MediaPolicyError::Tls(format!("extra root certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MediaPolicyError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Inner {
    async fn fetch(&self, url: &str) -> Result<Fetched, MediaUrlError> {
        let mut target = Target::parse(url)?;
        let mut redirects = 0;
        loop {
            self.check_host(&target)?;
            let addresses = self.addresses(&target).await?;
            // The connection task lives as long as `_connection`: until the body is read.
            let (response, _connection) = self.request(&target, &addresses).await?;
            let status = response.status();
            if matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
                if redirects >= self.max_redirects {
                    return Err(MediaUrlError::TooManyRedirects {
                        url: redact_raw(url),
                        limit: self.max_redirects,
                    });
                }
                redirects += 1;
                let location =
                    response.headers().get(LOCATION).ok_or_else(|| MediaUrlError::BadRedirect {
                        url: target.shown(),
                        reason: format!("HTTP {} without a Location", status.as_u16()),
                    })?;
                let location = location.to_str().map_err(|_| MediaUrlError::BadRedirect {
                    url: target.shown(),
                    reason: "Location is not ASCII text".into(),
                })?;
                target = Target::parse(&target.join(location))?;
                continue;
            }
            if !status.is_success() {
                return Err(MediaUrlError::UpstreamStatus { url: target.shown(), status: status.as_u16() });
            }
            let content_type =
                response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = self.read_body(response, &target).await?;
            return Ok(Fetched { bytes, content_type, final_url: target.full() });
        }
    }

    fn check_host(&self, target: &Target) -> Result<(), MediaUrlError> {
        if !self.hosts.iter().any(|pattern| pattern.matches(&target.host)) {
            return Err(MediaUrlError::HostNotAllowed { url: target.shown(), host: target.host.to_string() });
        }
        if target.userinfo {
            return Err(MediaUrlError::InvalidUrl {
                url: target.shown(),
                reason: "credentials (user:password@) are not supported".into(),
            });
        }
        Ok(())
    }

    /// The host's addresses, each one checked: any refused address refuses them all.
    async fn addresses(&self, target: &Target) -> Result<Vec<IpAddr>, MediaUrlError> {
        let addresses =
            match &target.host {
                Host::Ip(ip) => vec![*ip],
                Host::Name(name) => self.resolver.resolve(name).await.map_err(|e| {
                    MediaUrlError::Resolve { url: target.shown(), host: name.clone(), reason: e.to_string() }
                })?,
            };
        // System resolvers repeat addresses (one per socket type on some systems).
        let mut unique: Vec<IpAddr> = Vec::with_capacity(addresses.len());
        for address in addresses {
            if !unique.contains(&address) {
                unique.push(address);
            }
        }
        let addresses = unique;
        if addresses.is_empty() {
            return Err(MediaUrlError::Resolve {
                url: target.shown(),
                host: target.host.to_string(),
                reason: "no addresses".into(),
            });
        }
        for &address in &addresses {
            if self.allowed_addresses.iter().any(|range| range.contains(address)) {
                continue;
            }
            if let Some((what, range)) = refused_range(address) {
                return Err(MediaUrlError::AddressRefused {
                    url: target.shown(),
                    host: target.host.to_string(),
                    address,
                    what,
                    range,
                });
            }
        }
        Ok(addresses)
    }

    /// Connects to the first checked address that answers and sends the GET.
    async fn request(
        &self,
        target: &Target,
        addresses: &[IpAddr],
    ) -> Result<(Response<Incoming>, AbortOnDrop), MediaUrlError> {
        let mut failure = None;
        let mut stream = None;
        for &ip in addresses {
            let address = SocketAddr::new(ip, target.port);
            match tokio::time::timeout(self.connect_timeout, tcp_connect(address)).await {
                Ok(Ok(tcp)) => {
                    stream = Some(tcp);
                    break;
                }
                Ok(Err(e)) => {
                    failure =
                        Some(MediaUrlError::Connect { url: target.shown(), address, reason: e.to_string() })
                }
                Err(_) => {
                    failure = Some(MediaUrlError::ConnectTimeout {
                        url: target.shown(),
                        address,
                        timeout: self.connect_timeout,
                    })
                }
            }
        }
        let Some(tcp) = stream else {
            return Err(failure.unwrap_or_else(|| MediaUrlError::Resolve {
                url: target.shown(),
                host: target.host.to_string(),
                reason: "no addresses".into(),
            }));
        };
        if !target.https {
            return exchange(tcp, target).await;
        }
        let tls_error = |reason: String| MediaUrlError::Tls { url: target.shown(), reason };
        let server_name = match &target.host {
            Host::Name(name) => {
                ServerName::try_from(name.as_str()).map_err(|e| tls_error(e.to_string()))?.to_owned()
            }
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        };
        let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(server_name, tcp))
            .await
            .map_err(|_| tls_error(format!("handshake took longer than {:?}", self.connect_timeout)))?
            .map_err(|e| tls_error(e.to_string()))?;
        exchange(tls, target).await
    }

    async fn read_body(&self, response: Response<Incoming>, target: &Target) -> Result<Bytes, MediaUrlError> {
        let limit = self.max_bytes;
        let declared =
            response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        if let Some(length) = declared
            && length > u64::try_from(limit).unwrap_or(u64::MAX)
        {
            return Err(MediaUrlError::TooLargeDeclared { url: target.shown(), length, limit });
        }
        let reserve =
            declared.map_or(0, |n| usize::try_from(n).unwrap_or(limit)).min(limit).min(MAX_PREALLOC);
        let mut buffer = BytesMut::with_capacity(reserve);
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| MediaUrlError::Http { url: target.shown(), reason: e.to_string() })?;
            if let Ok(data) = frame.into_data() {
                // `buffer.len() <= limit` holds throughout, so this cannot underflow.
                if data.len() > limit - buffer.len() {
                    return Err(MediaUrlError::TooLarge { url: target.shown(), limit });
                }
                buffer.extend_from_slice(&data);
            }
        }
        Ok(buffer.freeze())
    }
}

async fn tcp_connect(address: SocketAddr) -> io::Result<TcpStream> {
    // Tests serve on loopback only: a test that would reach past this machine fails here instead.
    #[cfg(test)]
    if !address.ip().to_canonical().is_loopback() {
        return Err(io::Error::other("tests connect to loopback only"));
    }
    TcpStream::connect(address).await
}

/// Aborts the connection task when the response it carries is done with.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One GET over `io`, an HTTP/1.1 connection that closes after it.
async fn exchange<S>(io: S, target: &Target) -> Result<(Response<Incoming>, AbortOnDrop), MediaUrlError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http_error = |reason: String| MediaUrlError::Http { url: target.shown(), reason };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| http_error(e.to_string()))?;
    let connection = AbortOnDrop(tokio::spawn(async move {
        // Its errors surface through the response or its body.
        let _ = connection.await;
    }));
    let request = Request::get(target.path_and_query.as_str())
        .header(HOST, target.authority())
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(ACCEPT, "*/*")
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| http_error(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| http_error(e.to_string()))?;
    Ok((response, connection))
}
