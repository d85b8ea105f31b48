use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::*;

/// Answers per host, in turn; the last answer repeats. Counts calls.
#[derive(Default)]
struct FakeResolver {
    answers: Mutex<HashMap<String, VecDeque<Vec<IpAddr>>>>,
    calls: AtomicUsize,
}

impl FakeResolver {
    fn with(self, host: &str, addresses: &[&str]) -> Self {
        let addresses = addresses.iter().map(|a| a.parse().unwrap()).collect();
        self.answers.lock().unwrap().entry(host.to_owned()).or_default().push_back(addresses);
        self
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Resolve for FakeResolver {
    fn resolve(&self, host: &str) -> ResolveFuture {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut answers = self.answers.lock().unwrap();
        let answer = match answers.get_mut(host) {
            Some(queue) if queue.len() > 1 => queue.pop_front().unwrap(),
            Some(queue) => queue.front().cloned().unwrap_or_default(),
            None => Vec::new(),
        };
        Box::pin(
            async move { if answer.is_empty() { Err(io::Error::other("no such host")) } else { Ok(answer) } },
        )
    }
}

/// A policy allowing `hosts`, with 127.0.0.1 exempt from the address refusals, small limits,
/// and `resolver`.
fn policy(hosts: &[&str], resolver: &Arc<FakeResolver>) -> MediaUrlPolicy {
    MediaUrlPolicy {
        allowed_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        allowed_addresses: vec!["127.0.0.1".parse().unwrap()],
        max_bytes: 1000,
        connect_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        max_redirects: 3,
        resolver: resolver.clone(),
        extra_root_certs: Vec::new(),
    }
}

fn fetcher(policy: MediaUrlPolicy) -> MediaFetcher {
    MediaFetcher::new(policy).unwrap()
}

/// A resolver answering `media.test` with 127.0.0.1 and a fetcher allowing `media.test` only.
fn local() -> (Arc<FakeResolver>, MediaFetcher) {
    let resolver = Arc::new(FakeResolver::default().with("media.test", &["127.0.0.1"]));
    let fetcher = fetcher(policy(&["media.test"], &resolver));
    (resolver, fetcher)
}

enum Reply {
    /// Write these bytes and close.
    Send(Vec<u8>),
    /// Write these bytes and then hold the connection open.
    Stall(Vec<u8>),
}

fn reply(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    Reply::Send(bytes)
}

fn redirect(location: &str) -> Reply {
    reply("302 Found", &[("Location", location)], b"")
}

/// A local HTTP server; `requests` holds each request head it read, in order.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    fn url(&self, path: &str) -> String {
        format!("http://media.test:{}{path}", self.port)
    }
}

/// The path of a request head.
fn path_of(head: &str) -> &str {
    head.split_whitespace().nth(1).unwrap_or("")
}

async fn serve(handler: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (handler, log) = (Arc::new(handler), requests.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (handler, log) = (handler.clone(), log.clone());
            tokio::spawn(answer(stream, move |head| {
                log.lock().unwrap().push(head.to_owned());
                handler(head)
            }));
        }
    });
    Server { port, requests }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, handler: impl FnOnce(&str) -> Reply) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    match handler(&String::from_utf8_lossy(&head)) {
        Reply::Send(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Reply::Stall(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
    }
}

#[tokio::test]
async fn disabled_refuses_everything() {
    let fetcher = MediaFetcher::disabled();
    assert!(!fetcher.enabled());
    let error = fetcher.fetch("https://example.com/a.png").await.unwrap_err();
    assert_eq!(error, MediaUrlError::Disabled);
    assert_eq!(error.code(), Code::FailedPrecondition);
    // No hosts: off, whatever else the policy says.
    let fetcher = MediaFetcher::new(MediaUrlPolicy::default()).unwrap();
    assert!(!fetcher.enabled());
    assert_eq!(fetcher.fetch("http://127.0.0.1/").await.unwrap_err(), MediaUrlError::Disabled);
}

#[tokio::test]
async fn only_http_and_https() {
    let (resolver, fetcher) = local();
    assert!(fetcher.enabled());
    for url in
        ["ftp://media.test/a.png", "file:///etc/passwd", "data:image/png;base64,AAAA", "gopher://media.test/"]
    {
        let error = fetcher.fetch(url).await.unwrap_err();
        assert!(matches!(error, MediaUrlError::SchemeRefused { .. }), "{url}: {error}");
        assert_eq!(error.code(), Code::InvalidArgument);
    }
    let error = fetcher.fetch("data:text/plain,secret-data").await.unwrap_err();
    assert!(!error.to_string().contains("secret"), "{error}");
    for url in [
        "",
        "media.test/a.png",
        "/a.png",
        "http://",
        "http:///a.png",
        "http://[::1/",
        "http://media.test:99999/",
    ] {
        let error = fetcher.fetch(url).await.unwrap_err();
        assert!(matches!(error, MediaUrlError::InvalidUrl { .. }), "{url:?}: {error}");
        assert_eq!(error.code(), Code::InvalidArgument);
    }
    assert_eq!(resolver.calls(), 0);
}

#[tokio::test]
async fn hosts_off_the_allow_list_are_refused_before_resolving() {
    let (resolver, fetcher) = local();
    for url in
        ["http://evil.test/", "http://media.test.evil.test/", "http://sub.media.test/", "http://127.0.0.1/"]
    {
        let error = fetcher.fetch(url).await.unwrap_err();
        assert!(matches!(error, MediaUrlError::HostNotAllowed { .. }), "{url}: {error}");
        assert_eq!(error.code(), Code::InvalidArgument);
    }
    assert_eq!(resolver.calls(), 0);
}

#[test]
fn host_patterns() {
    let host = |h: &str| Host::parse(h).unwrap();
    let exact = HostPattern::parse("Media.Test.").unwrap();
    assert!(exact.matches(&host("media.test")) && exact.matches(&host("MEDIA.test.")));
    assert!(!exact.matches(&host("a.media.test")));
    for pattern in ["*.media.test", ".media.test"] {
        let subdomains = HostPattern::parse(pattern).unwrap();
        assert!(subdomains.matches(&host("a.media.test")) && subdomains.matches(&host("a.b.media.test")));
        assert!(!subdomains.matches(&host("media.test")));
        assert!(!subdomains.matches(&host("evilmedia.test")));
        assert!(!subdomains.matches(&host("media.test.evil")));
    }
    let ip = HostPattern::parse("127.0.0.1").unwrap();
    assert!(
        ip.matches(&host("127.0.0.1"))
            && ip.matches(&host("2130706433"))
            && ip.matches(&host("[::ffff:127.0.0.1]"))
    );
    assert!(!ip.matches(&host("localhost")));
    assert!(HostPattern::parse("[::1]").unwrap().matches(&host("[0:0::1]")));
    for bad in ["", "*", "*.", "*.*.test", "a b", "a/b", "*.127.0.0.1", "exa%6dple.com"] {
        assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
    }
    let policy = MediaUrlPolicy { allowed_hosts: vec!["*".into()], ..MediaUrlPolicy::default() };
    assert!(matches!(MediaFetcher::new(policy), Err(MediaPolicyError::HostPattern { .. })));
}

#[test]
fn hosts_read_as_the_url_standard_reads_them() {
    let v4 = |h: &str| Host::parse(h).ok();
    let loopback = Some(Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    for form in
        ["127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.1", "127.1", "127.0.1", "127.0.0.1."]
    {
        assert_eq!(v4(form), loopback, "{form}");
    }
    for bad in ["256.0.0.1", "1.2.3.4.5", "08", "1.2.3.0x1g", "a.1", "4294967296", "1..2", ""] {
        assert!(!matches!(v4(bad), Some(Host::Ip(_))), "{bad}");
    }
    assert_eq!(v4("a.0x"), None);
    assert_eq!(v4("0x.0"), Some(Host::Ip(IpAddr::V4(Ipv4Addr::UNSPECIFIED))));
}

#[test]
fn address_ranges() {
    let refused = |ip: &str| refused_range(ip.parse().unwrap()).map(|(what, _)| what);
    for ip in [
        "0.0.0.0",
        "10.1.2.3",
        "100.64.0.1",
        "100.127.255.255",
        "127.0.0.1",
        "127.255.0.1",
        "169.254.1.1",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.170",
        "192.0.2.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.51.100.1",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::127.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::7f00:1",
        "64:ff9b:1::1",
        "2002:7f00:1::",
        "2002:a00:1::1",
        "2001::1",
        "2001:db8::1",
        "3fff::1",
        "fc00::1",
        "fd00:ec2::254",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "100::1",
        "4000::1",
    ] {
        assert!(refused(ip).is_some(), "{ip} should be refused");
    }
    for ip in [
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",
        "100.128.0.1",
        "169.255.0.1",
        "2606:4700::1111",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ] {
        assert_eq!(refused(ip), None, "{ip} should be allowed");
    }
    assert_eq!(refused("169.254.169.254"), Some("cloud metadata"));
    assert_eq!(refused("fd00:ec2::254"), Some("cloud metadata"));
    assert_eq!(refused("::ffff:127.0.0.1"), Some("loopback"));

    let range: AddressRange = "10.1.2.3/8".parse().unwrap();
    assert_eq!(range.to_string(), "10.0.0.0/8");
    assert!(
        range.contains("10.255.0.1".parse().unwrap()) && range.contains("::ffff:10.0.0.1".parse().unwrap())
    );
    assert!(!range.contains("11.0.0.1".parse().unwrap()));
    let one: AddressRange = "[::1]".parse().unwrap();
    assert!(one.contains("::1".parse().unwrap()) && !one.contains("::2".parse().unwrap()));
    assert!("0.0.0.0/0".parse::<AddressRange>().unwrap().contains("1.2.3.4".parse().unwrap()));
    for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/x", "example.com", ""] {
        assert!(bad.parse::<AddressRange>().is_err(), "{bad}");
    }
}

#[tokio::test]
async fn loopback_is_refused_unless_allowed() {
    let resolver = Arc::new(FakeResolver::default());
    let hosts = ["localhost", "127.0.0.1", "::1", "::ffff:127.0.0.1"];
    let strict = fetcher(MediaUrlPolicy {
        allowed_addresses: Vec::new(),
        resolver: Arc::new(SystemResolver),
        ..policy(&hosts, &resolver)
    });
    for url in [
        "http://localhost/",
        "http://127.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "HTTP://LOCALHOST./",
    ] {
        let error = strict.fetch(url).await.unwrap_err();
        assert!(matches!(error, MediaUrlError::AddressRefused { what: "loopback", .. }), "{url}: {error}");
        assert_eq!(error.code(), Code::InvalidArgument);
    }
}

#[tokio::test]
async fn internal_addresses_are_refused() {
    for address in [
        "10.0.0.1",
        "172.16.5.4",
        "192.168.0.10",
        "169.254.169.254",
        "100.64.0.1",
        "fd00:ec2::254",
        "::ffff:192.168.0.1",
        "64:ff9b::a9fe:a9fe",
        "0.0.0.0",
    ] {
        let resolver = Arc::new(FakeResolver::default().with("media.test", &[address]));
        let error =
            fetcher(policy(&["media.test"], &resolver)).fetch("http://media.test/a.png").await.unwrap_err();
        let expected: IpAddr = address.parse().unwrap();
        assert!(
            matches!(error, MediaUrlError::AddressRefused { address, .. } if address == expected),
            "{error}"
        );
        assert!(error.to_string().contains(&expected.to_string()), "{error}");
    }
}

#[tokio::test]
async fn one_internal_address_refuses_the_name() {
    let resolver =
        Arc::new(FakeResolver::default().with("media.test", &["93.184.216.34", "2606:2800::1", "10.0.0.1"]));
    let error = fetcher(policy(&["media.test"], &resolver)).fetch("http://media.test/").await.unwrap_err();
    assert!(matches!(error, MediaUrlError::AddressRefused { what: "private", .. }), "{error}");
}

#[tokio::test]
async fn fetches_from_the_checked_address_only() {
    let server = serve(|_| reply("200 OK", &[("Content-Type", "image/png")], b"png")).await;
    // The name rebinds to an internal address after the first answer.
    let resolver = Arc::new(
        FakeResolver::default().with("media.test", &["127.0.0.1"]).with("media.test", &["10.0.0.1"]),
    );
    let fetched = fetcher(policy(&["media.test"], &resolver)).fetch(&server.url("/a.png")).await.unwrap();
    assert_eq!(&fetched.bytes[..], b"png");
    assert_eq!(resolver.calls(), 1);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn every_redirect_is_resolved_and_checked_again() {
    let server = serve(|head| match path_of(head) {
        "/first" => redirect("/second"),
        _ => reply("200 OK", &[], b"late"),
    })
    .await;
    let resolver = Arc::new(
        FakeResolver::default().with("media.test", &["127.0.0.1"]).with("media.test", &["10.0.0.1"]),
    );
    let error = fetcher(policy(&["media.test"], &resolver)).fetch(&server.url("/first")).await.unwrap_err();
    assert!(matches!(error, MediaUrlError::AddressRefused { what: "private", .. }), "{error}");
    assert_eq!(resolver.calls(), 2);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn happy_path() {
    let server = serve(|_| reply("200 OK", &[("Content-Type", "image/jpeg")], b"\xff\xd8jpeg")).await;
    let (_, fetcher) = local();
    let url = server.url("/img/a.jpg?size=2#frag");
    let fetched = fetcher.fetch(&url).await.unwrap();
    assert_eq!(&fetched.bytes[..], b"\xff\xd8jpeg");
    assert_eq!(fetched.content_type.as_deref(), Some("image/jpeg"));
    assert_eq!(fetched.final_url, server.url("/img/a.jpg?size=2"));
    let head = &server.requests()[0];
    assert!(head.starts_with("GET /img/a.jpg?size=2 HTTP/1.1\r\n"), "{head}");
    // The Host header is the name the client gave, not the address connected to.
    assert!(head.to_ascii_lowercase().contains(&format!("host: media.test:{}\r\n", server.port)), "{head}");
    // No path: `/`, keeping the query.
    let fetched = fetcher.fetch(&format!("http://media.test:{}?q=1", server.port)).await.unwrap();
    assert_eq!(fetched.final_url, server.url("/?q=1"));
    assert!(server.requests()[1].starts_with("GET /?q=1 HTTP/1.1\r\n"));
}

#[tokio::test]
async fn redirects_are_followed_within_the_limit() {
    let server = serve(|head| match path_of(head) {
        "/a/one" => redirect("two"),
        "/a/two" => redirect("?three"),
        "/a/two?three" => reply("301 Moved Permanently", &[("Location", "/done")], b""),
        "/done" => reply("200 OK", &[], b"ok"),
        _ => reply("404 Not Found", &[], b""),
    })
    .await;
    let (_, fetcher) = local();
    let fetched = fetcher.fetch(&server.url("/a/one")).await.unwrap();
    assert_eq!(&fetched.bytes[..], b"ok");
    assert_eq!(fetched.final_url, server.url("/done"));
    let paths: Vec<String> = server.requests().iter().map(|h| path_of(h).to_owned()).collect();
    assert_eq!(paths, ["/a/one", "/a/two", "/a/two?three", "/done"]);
}

#[tokio::test]
async fn redirect_loops_stop_at_the_limit() {
    let server = serve(|head| redirect(if path_of(head) == "/ping" { "/pong" } else { "/ping" })).await;
    let (_, fetcher) = local();
    let error = fetcher.fetch(&server.url("/ping")).await.unwrap_err();
    assert!(matches!(error, MediaUrlError::TooManyRedirects { limit: 3, .. }), "{error}");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(server.requests().len(), 4);

    let resolver = Arc::new(FakeResolver::default().with("media.test", &["127.0.0.1"]));
    let none = fetcher_with(&resolver, |p| p.max_redirects = 0);
    assert!(matches!(
        none.fetch(&server.url("/ping")).await,
        Err(MediaUrlError::TooManyRedirects { limit: 0, .. })
    ));
}

fn fetcher_with(resolver: &Arc<FakeResolver>, change: impl FnOnce(&mut MediaUrlPolicy)) -> MediaFetcher {
    let mut policy = policy(&["media.test"], resolver);
    change(&mut policy);
    fetcher(policy)
}

#[tokio::test]
async fn redirects_to_refused_targets_are_refused() {
    let server = serve(|head| match path_of(head) {
        "/to-private" => redirect("http://internal.test/admin"),
        "/to-metadata" => redirect("http://169.254.169.254/latest/meta-data/"),
        "/to-loopback" => redirect("http://127.0.0.2/"),
        "/to-other-host" => redirect("http://evil.test/"),
        "/to-file" => redirect("file:///etc/passwd"),
        "/to-garbage" => redirect("http://[oops/"),
        _ => reply("302 Found", &[], b""),
    })
    .await;
    let resolver = Arc::new(
        FakeResolver::default().with("media.test", &["127.0.0.1"]).with("internal.test", &["192.168.1.1"]),
    );
    let hosts = ["media.test", "internal.test", "169.254.169.254", "127.0.0.2"];
    let fetcher = fetcher(policy(&hosts, &resolver));
    type Expected = fn(&MediaUrlError) -> bool;
    let cases: [(&str, Expected); 7] = [
        ("/to-private", |e| matches!(e, MediaUrlError::AddressRefused { what: "private", .. })),
        ("/to-metadata", |e| matches!(e, MediaUrlError::AddressRefused { what: "cloud metadata", .. })),
        ("/to-loopback", |e| matches!(e, MediaUrlError::AddressRefused { what: "loopback", .. })),
        (
            "/to-other-host",
            |e| matches!(e, MediaUrlError::HostNotAllowed { host, .. } if host == "evil.test"),
        ),
        ("/to-file", |e| matches!(e, MediaUrlError::SchemeRefused { .. })),
        ("/to-garbage", |e| matches!(e, MediaUrlError::InvalidUrl { .. })),
        ("/no-location", |e| matches!(e, MediaUrlError::BadRedirect { .. })),
    ];
    for (path, expected) in cases {
        let error = fetcher.fetch(&server.url(path)).await.unwrap_err();
        assert!(expected(&error), "{path}: {error}");
    }
    // Only the allowed server was ever reached.
    assert_eq!(server.requests().len(), cases.len());
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused() {
    let server = serve(|head| match path_of(head) {
        "/declared" => reply("200 OK", &[], &[7; 1001]),
        "/exact" => reply("200 OK", &[], &[7; 1000]),
        "/chunked" => {
            let mut bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for _ in 0..3 {
                bytes.extend_from_slice(b"190\r\n");
                bytes.extend_from_slice(&[7; 400]);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
            Reply::Send(bytes)
        }
        // No length: the body runs until the server closes, and the server never stops.
        _ => {
            let mut bytes = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
            bytes.extend_from_slice(&[7; 1500]);
            Reply::Stall(bytes)
        }
    })
    .await;
    let (_, fetcher) = local();
    let error = fetcher.fetch(&server.url("/declared")).await.unwrap_err();
    assert!(matches!(error, MediaUrlError::TooLargeDeclared { length: 1001, limit: 1000, .. }), "{error}");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(fetcher.fetch(&server.url("/exact")).await.unwrap().bytes.len(), 1000);
    for path in ["/chunked", "/endless"] {
        let error = fetcher.fetch(&server.url(path)).await.unwrap_err();
        assert!(matches!(error, MediaUrlError::TooLarge { limit: 1000, .. }), "{path}: {error}");
    }
}

#[tokio::test]
async fn slow_servers_time_out() {
    let server = serve(|head| match path_of(head) {
        "/silent" => Reply::Stall(Vec::new()),
        _ => Reply::Stall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf".to_vec()),
    })
    .await;
    let resolver = Arc::new(FakeResolver::default().with("media.test", &["127.0.0.1"]));
    let fetcher = fetcher_with(&resolver, |p| p.total_timeout = Duration::from_millis(200));
    for path in ["/silent", "/trickle"] {
        let started = Instant::now();
        let error = fetcher.fetch(&server.url(path)).await.unwrap_err();
        assert!(matches!(error, MediaUrlError::Timeout { .. }), "{path}: {error}");
        assert_eq!(error.code(), Code::DeadlineExceeded);
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}

#[tokio::test]
async fn upstream_failures_map_to_codes() {
    let server = serve(|head| match path_of(head) {
        "/missing" => reply("404 Not Found", &[], b"nope"),
        "/busy" => reply("503 Service Unavailable", &[], b""),
        "/limited" => reply("429 Too Many Requests", &[], b""),
        _ => Reply::Send(b"garbage\r\n\r\n".to_vec()),
    })
    .await;
    let (_, fetcher) = local();
    let code = |path: &'static str| {
        let fetcher = fetcher.clone();
        let url = server.url(path);
        async move { fetcher.fetch(&url).await.unwrap_err() }
    };
    let missing = code("/missing").await;
    assert_eq!(missing, MediaUrlError::UpstreamStatus { url: server.url("/missing"), status: 404 });
    assert_eq!(missing.code(), Code::FailedPrecondition);
    assert_eq!(code("/busy").await.code(), Code::Unavailable);
    assert_eq!(code("/limited").await.code(), Code::Unavailable);
    let broken = code("/broken").await;
    assert!(matches!(broken, MediaUrlError::Http { .. }), "{broken}");
    assert_eq!(broken.code(), Code::Unavailable);

    // Nothing listens on a port just freed.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let refused = fetcher.fetch(&format!("http://media.test:{port}/")).await.unwrap_err();
    assert!(matches!(refused, MediaUrlError::Connect { .. }), "{refused}");
    assert_eq!(refused.code(), Code::Unavailable);
    let unknown = Arc::new(FakeResolver::default());
    let error = fetcher_with(&unknown, |_| {}).fetch("http://media.test/").await.unwrap_err();
    assert!(matches!(error, MediaUrlError::Resolve { .. }), "{error}");
}

#[tokio::test]
async fn credentials_and_queries_stay_out_of_messages() {
    let (_, fetcher) = local();
    for url in [
        "http://alice:hunter2@evil.test/a.png?token=s3cret#frag",
        "http://alice:hunter2@media.test/a.png?token=s3cret",
        "ftp://alice:hunter2@media.test/?token=s3cret",
        "http://alice:hunter2@[oops/?token=s3cret",
        "http://alice:hunter2@10.0.0.1/?token=s3cret",
    ] {
        let error = fetcher.fetch(url).await.unwrap_err();
        let message = error.to_string();
        assert!(
            !message.contains("hunter2") && !message.contains("s3cret") && !message.contains("alice"),
            "{message}"
        );
    }
    let error = fetcher.fetch("http://alice:hunter2@media.test/a.png").await.unwrap_err();
    assert!(
        matches!(&error, MediaUrlError::InvalidUrl { reason, .. } if reason.contains("credentials")),
        "{error}"
    );
    assert_eq!(redact_raw("https://a:b@host.test:8443/p/q?x=1#y"), "https://host.test:8443/p/q");
    assert_eq!(redact_raw("data:text/plain,//a:b@c/secret"), "data:...");
    assert_eq!(redact_raw("HTTP://a@b@host.test\\x"), "HTTP://host.test\\x");
}

#[tokio::test]
async fn odd_inputs_never_panic() {
    let (_, fetcher) = local();
    let long = format!("http://media.test/{}", "a".repeat(10_000));
    let inputs = [
        "http://@/",
        "http://:80/",
        "http://media.test:/",
        "http://media.test:0/",
        "http://%6d%65dia.test/",
        "http://[fe80::1%25eth0]/",
        "http://média.test/",
        "http://media.test\\@evil.test/",
        "http://a..b/",
        "http://0x/",
        "http://1.2.3.4.5/",
        "HtTpS://",
        "\u{0}http://media.test/",
        "http://media.test/\u{7f}",
        "https://[::ffff:169.254.169.254]:443/",
        long.as_str(),
    ];
    for input in inputs {
        // Any error will do; reaching an answer at all is the point.
        let _ = fetcher.fetch(input).await;
        let _ = redact_raw(input);
    }
}

/// A TLS server for `names`, recording the SNI each connection asked for.
async fn serve_tls(names: &[&str]) -> (u16, CertificateDer<'static>, Arc<Mutex<Vec<Option<String>>>>) {
    let key = rcgen::generate_simple_self_signed(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
        .unwrap();
    let cert = key.cert.der().clone();
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
    let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], private)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let names = Arc::new(Mutex::new(Vec::new()));
    let log = names.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(tcp).await else { continue };
            log.lock().unwrap().push(tls.get_ref().1.server_name().map(str::to_owned));
            tokio::spawn(answer(tls, |_| reply("200 OK", &[("Content-Type", "audio/wav")], b"RIFF")));
        }
    });
    (port, cert, names)
}

#[tokio::test]
async fn https_verifies_the_original_name() {
    let (port, cert, names) = serve_tls(&["media.test"]).await;
    let resolver = Arc::new(FakeResolver::default().with("media.test", &["127.0.0.1"]));
    let fetcher = fetcher_with(&resolver, |p| p.extra_root_certs = vec![cert.clone()]);
    let fetched = fetcher.fetch(&format!("https://media.test:{port}/clip.wav")).await.unwrap();
    assert_eq!(&fetched.bytes[..], b"RIFF");
    assert_eq!(fetched.content_type.as_deref(), Some("audio/wav"));
    assert_eq!(names.lock().unwrap().as_slice(), [Some("media.test".to_owned())]);

    // A certificate for another name fails, although the address is the same.
    let (port, cert, _) = serve_tls(&["other.test"]).await;
    let fetcher = fetcher_with(&resolver, |p| p.extra_root_certs = vec![cert]);
    let error = fetcher.fetch(&format!("https://media.test:{port}/")).await.unwrap_err();
    assert!(matches!(error, MediaUrlError::Tls { .. }), "{error}");
    assert_eq!(error.code(), Code::Unavailable);
}

#[tokio::test]
async fn every_checked_address_is_tried_in_turn() {
    let server = serve(|_| reply("200 OK", &[], b"second")).await;
    // Nothing listens on 127.0.0.2 at the server's port: refused, then 127.0.0.1 answers.
    let resolver = Arc::new(FakeResolver::default().with("media.test", &["127.0.0.2", "127.0.0.1"]));
    let fetcher = fetcher_with(&resolver, |p| p.allowed_addresses = vec!["127.0.0.0/8".parse().unwrap()]);
    assert_eq!(&fetcher.fetch(&server.url("/")).await.unwrap().bytes[..], b"second");
}

#[tokio::test]
async fn connecting_is_bounded() {
    // A listener whose accept queue is full drops further SYNs, so connecting hangs.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut queued = Vec::new();
    for _ in 0..4 {
        match tokio::time::timeout(Duration::from_millis(100), TcpStream::connect(("127.0.0.1", port))).await
        {
            Ok(Ok(stream)) => queued.push(stream),
            _ => break,
        }
    }
    let resolver = Arc::new(FakeResolver::default().with("media.test", &["127.0.0.1"]));
    let fetcher = fetcher_with(&resolver, |p| p.connect_timeout = Duration::from_millis(200));
    let started = Instant::now();
    let error = fetcher.fetch(&format!("http://media.test:{port}/")).await.unwrap_err();
    assert!(matches!(error, MediaUrlError::ConnectTimeout { .. }), "{error}");
    assert_eq!(error.code(), Code::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    drop((listener, queued));
}
