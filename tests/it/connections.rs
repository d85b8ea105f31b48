//! Connections as a bounded resource, with the server's open-file limit at a common default of
//! 1024 (soft and hard, so raising the soft limit cannot hide anything): a crowd of idle clients
//! does not lock new clients out or burn CPU, idle and silent connections are closed by their
//! timeouts, and a server that runs out of descriptors backs off instead of spinning.
//!
//! Both tests bound how long a new client waits and how much CPU the server uses, so they hold
//! `common::exclusive`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common;
use crate::common::process::{ServerProcess, field};
use crate::common::{connect, metric, request, scrape, text};

/// The HTTP/2 client preface and an empty SETTINGS frame: what a gRPC client sends on connecting.
const H2_HELLO: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Makes room for this test's own sockets (the process's limit, raised once for every test).
fn raise_own_limit() {
    let hard = common::raise_open_file_limit().hard;
    assert!(hard >= 4096, "this test needs a hard open-file limit of at least 4096, not {hard}");
}

/// `n` connections that greet the server as HTTP/2 clients and then stay idle.
async fn idle_clients(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(H2_HELLO).await.expect("send preface");
        out.push(stream);
    }
    out
}

/// Whether the server has closed `stream` (its pending bytes read and discarded), within `wait`.
async fn closed_by_server(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// How many of `streams` the server closes within `wait`.
async fn count_closed(streams: &mut [TcpStream], wait: Duration) -> usize {
    let checks = streams.iter_mut().map(|s| closed_by_server(s, wait));
    futures::future::join_all(checks).await.into_iter().filter(|closed| *closed).count()
}

/// A fresh client's embed, and how long it took from connecting.
async fn fresh_client_embed(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut client =
        tokio::time::timeout(Duration::from_secs(10), connect(addr)).await.expect("connect in time");
    let reply =
        tokio::time::timeout(Duration::from_secs(10), client.embed(request(vec![text("t", "a red cube")])))
            .await
            .expect("reply in time")
            .expect("embedded");
    assert_eq!(reply.into_inner().embeddings.len(), 1);
    started.elapsed()
}

/// CPU share of one core the server used over `window`.
async fn cpu_share(server: &ServerProcess, window: Duration) -> f64 {
    let before = server.cpu_seconds();
    tokio::time::sleep(window).await;
    (server.cpu_seconds() - before) / window.as_secs_f64()
}

fn closed_total(metrics: &str, reason: &str) -> f64 {
    metric(metrics, "bindery_connections_closed_total", &[("reason", reason)]).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_idle_connections_does_not_lock_out_new_clients_and_times_out() {
    let _exclusive = common::exclusive().await;
    raise_own_limit();
    let mut server = ServerProcess::start(&["--idle-timeout", "4s", "--handshake-timeout", "1s"], Some(1024));
    let limits = server.wait_for_line("open-file limit");
    assert_eq!((field(&limits, "soft="), field(&limits, "hard=")), (Some("1024"), Some("1024")), "{limits}");
    let cap = server.wait_for_line("connection limits");
    assert_eq!(field(&cap, "max_connections="), Some("768"), "1024 less the 256 reserved: {cap}");
    let metrics = server.metrics.expect("metrics address");

    let mut idle = idle_clients(server.addr, 1200).await;
    let opened = Instant::now();
    let mut silent: Vec<TcpStream> = Vec::new();
    for _ in 0..10 {
        silent.push(TcpStream::connect(server.addr).await.expect("connect"));
    }

    let took = fresh_client_embed(server.addr).await;
    assert!(took < Duration::from_secs(1), "a new client waited {took:?} behind 1200 idle connections");
    let cpu = cpu_share(&server, Duration::from_secs(1)).await;
    // Shown with --nocapture: the figures RELIABILITY.md quotes.
    eprintln!(
        "behind 1200 idle connections: first reply in {took:?}, server CPU {:.1}% of a core",
        cpu * 100.0
    );
    assert!(cpu < 0.2, "the server used {:.0}% of a core while 1200 connections idled", cpu * 100.0);

    // Silent sockets never sent the preface: closed by the handshake timeout.
    assert_eq!(count_closed(&mut silent, Duration::from_secs(3)).await, 10);
    // The idle crowd: the oldest made room for newer ones at the cap, the rest go at the idle
    // timeout (4 s after they last did anything, which is when they connected).
    let text = scrape(metrics).await;
    assert!(closed_total(&text, "evicted") >= 442.0, "1210 - 768 connections made room: {text}");
    let still_open = metric(&text, "bindery_connections", &[]).expect("connections gauge");
    assert!((700.0..=770.0).contains(&still_open), "{still_open} open before the idle timeout");
    assert!(opened.elapsed() < Duration::from_secs(4), "the idle timeout must not have passed yet");
    let closed = count_closed(&mut idle, Duration::from_secs(8)).await;
    assert_eq!(closed, 1200, "every idle connection is closed by now");
    let text = scrape(metrics).await;
    assert!(closed_total(&text, "idle") >= 700.0, "{text}");
    assert!(closed_total(&text, "handshake") >= 10.0, "{text}");
    // And the server goes on serving.
    assert!(fresh_client_embed(server.addr).await < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_backs_off_logs_once_and_recovers() {
    let _exclusive = common::exclusive().await;
    raise_own_limit();
    // No descriptors reserved and no cap of its own: the process's limit is what stops accepting.
    let mut server = ServerProcess::start(
        &["--reserved-fds", "0", "--max-connections", "100000", "--idle-timeout", "0"],
        Some(1024),
    );
    let _idle = idle_clients(server.addr, 1100).await;
    // accept() now fails with EMFILE for the connections past the limit.
    let warned = server.wait_for_line("cannot accept connections");
    assert!(warned.contains("Too many open files") || warned.contains("os error 24"), "{warned}");
    let cpu = cpu_share(&server, Duration::from_secs(2)).await;
    assert!(cpu < 0.3, "the accept loop used {:.0}% of a core", cpu * 100.0);
    let took = fresh_client_embed(server.addr).await;
    assert!(took < Duration::from_secs(5), "a new client waited {took:?}");
    let warnings = server.drain_log().iter().filter(|l| l.contains("cannot accept connections")).count();
    assert!(warnings <= 2, "{warnings} warnings: the shortage is logged once per interval");
}
