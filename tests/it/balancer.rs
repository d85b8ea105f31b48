//! Three replicas behind HAProxy with `deploy/haproxy/haproxy.cfg`, under `bindery load`: one
//! replica is killed (SIGKILL) mid-run and restarted, then each gets SIGTERM in turn. Reports the
//! errors clients saw during each event and how long the balancer took to stop routing to the
//! dead replica; a rolling SIGTERM must cost no request.
//!
//! Needs `haproxy` on the PATH (`scripts/setup.sh` installs Debian's as root); without it the
//! test fails saying so.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bindery::cli::{Cli, Command as CliCommand};
use clap::Parser;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::process::{ServerProcess, exit_status, sigterm};
use crate::common::*;

/// Seconds of load during the rolling restart (each replica stops, restarts and loads its models).
const ROLLING_RUN_S: u32 = 25;

/// Long enough for HAProxy (250 ms checks, out after one failure) to take a replica out.
const SHUTDOWN_DELAY: &str = "1500ms";

struct Replica {
    process: ServerProcess,
    grpc: SocketAddr,
    http: SocketAddr,
}

impl Replica {
    /// Starts a replica on `grpc` and `http` (port 0: any).
    fn start(grpc: &str, http: &str) -> Self {
        let process = ServerProcess::start_at(
            grpc,
            // No warm-up batch: restarts come back sooner (the test measures the balancer).
            &["--http", http, "--shutdown-delay", SHUTDOWN_DELAY, "--drain-timeout", "20s", "--no-warm-up"],
            None,
        );
        let (grpc, http) = (process.addr, process.http.expect("HTTP address"));
        Self { process, grpc, http }
    }

    /// A new process on the same addresses.
    fn restart(&self) -> Self {
        Self::start(&self.grpc.to_string(), &self.http.to_string())
    }
}

struct Balancer {
    child: Child,
    addr: SocketAddr,
    stats: PathBuf,
    _dir: TempDir,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Balancer {
    fn start(replicas: &[&Replica]) -> Self {
        let dir = TempDir::new("haproxy");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let stats = dir.join("stats.sock");
        let mut command = Command::new("haproxy");
        command
            .args(["-db", "-f"])
            .arg(repo().join("deploy/haproxy/haproxy.cfg"))
            .env("BINDERY_LB_BIND", addr.to_string())
            .env("BINDERY_LB_STATS", &stats)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (i, replica) in replicas.iter().enumerate() {
            command.env(format!("BINDERY_R{}", i + 1), replica.grpc.to_string());
            command.env(format!("BINDERY_R{}_HTTP_PORT", i + 1), replica.http.port().to_string());
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot start haproxy ({e}): install it (scripts/setup.sh installs Debian's haproxy when run as root)")
        });
        Self { child, addr, stats, _dir: dir }
    }

    /// The status HAProxy gives server `name` ("UP", "DOWN", ...).
    async fn status(&self, name: &str) -> Option<String> {
        let mut socket = tokio::net::UnixStream::connect(&self.stats).await.ok()?;
        socket.write_all(b"show stat\n").await.ok()?;
        let mut csv = String::new();
        socket.read_to_string(&mut csv).await.ok()?;
        // Columns: pxname, svname, ..., status is the 18th.
        csv.lines().map(|l| l.split(',').collect::<Vec<_>>()).find_map(|row| {
            (row.len() > 17 && row[0] == "bindery" && row[1] == name).then(|| row[17].to_string())
        })
    }

    /// Waits until server `name` has status `want` (its first word); returns how long that took.
    async fn wait_for(&self, name: &str, want: &str, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let status = self.status(name).await;
            if status.as_deref().and_then(|s| s.split_whitespace().next()) == Some(want) {
                return started.elapsed();
            }
            assert!(started.elapsed() < within, "{name} is {status:?}, not {want}, after {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `bindery load` through the balancer at a steady rate for `seconds`; the JSON report.
async fn load(balancer: SocketAddr, seconds: u32, report: PathBuf) -> Value {
    let args = [
        "bindery",
        "load",
        "--server",
        &format!("http://{balancer}"),
        "--mix",
        "text",
        "--rate",
        "40",
        "--duration",
        &format!("{seconds}s"),
        "--warmup",
        "0s",
        "--timeout",
        "10s",
        "--connections",
        "4",
        "--no-cache",
        "--quiet",
        "--json",
        report.to_str().expect("utf-8 path"),
    ];
    let CliCommand::Load(args) = Cli::try_parse_from(args).expect("load arguments").command else {
        panic!("not a load command")
    };
    // Missed objectives are not set, so the exit status is not the test's concern.
    bindery::client::load::run(args).await.expect("load runs");
    serde_json::from_str(&std::fs::read_to_string(&report).expect("report written")).expect("JSON report")
}

fn errors(report: &Value) -> (u64, u64) {
    (report["errors"].as_u64().expect("errors"), report["requests"].as_u64().expect("requests"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_behind_haproxy_survive_a_kill_and_a_rolling_restart() {
    let _exclusive = exclusive().await;
    let dir = TempDir::new("balancer");
    let started: Vec<Replica> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..3).map(|_| s.spawn(|| Replica::start("127.0.0.1:0", "127.0.0.1:0"))).collect();
        handles.into_iter().map(|h| h.join().expect("replica starts")).collect()
    });
    let mut replicas: Vec<Replica> = started;
    let balancer = Balancer::start(&replicas.iter().collect::<Vec<_>>());
    for name in ["r1", "r2", "r3"] {
        balancer.wait_for(name, "UP", Duration::from_secs(30)).await;
    }

    // SIGKILL one replica two seconds into an 8-second run.
    let run = tokio::spawn(load(balancer.addr, 8, dir.join("kill.json")));
    tokio::time::sleep(Duration::from_secs(2)).await;
    replicas[0].process.child.kill().expect("SIGKILL");
    let ejected = balancer.wait_for("r1", "DOWN", Duration::from_secs(10)).await;
    let killed = run.await.expect("load task");
    let (kill_errors, kill_requests) = errors(&killed);
    let _ = replicas[0].process.child.wait();
    replicas[0] = replicas[0].restart();
    let back = balancer.wait_for("r1", "UP", Duration::from_secs(30)).await;

    // SIGTERM each replica in turn, restarting it before the next, during one run.
    let run = tokio::spawn(load(balancer.addr, ROLLING_RUN_S, dir.join("rolling.json")));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rolling_started = Instant::now();
    let mut out_after = Vec::new();
    for (i, name) in ["r1", "r2", "r3"].into_iter().enumerate() {
        sigterm(&replicas[i].process.child);
        out_after.push(balancer.wait_for(name, "DOWN", Duration::from_secs(10)).await);
        assert!(exit_status(&mut replicas[i].process.child).await.success(), "{name} exits cleanly");
        replicas[i] = replicas[i].restart();
        balancer.wait_for(name, "UP", Duration::from_secs(30)).await;
    }
    let rolling_took = rolling_started.elapsed();
    let rolled = run.await.expect("load task");
    let (rolling_errors, rolling_requests) = errors(&rolled);
    eprintln!(
        "balancer: SIGKILL: {kill_errors} errors of {kill_requests} requests ({:?}), replica out after {} ms, \
         back {} ms after its restart; rolling SIGTERM of 3 replicas in {:.1} s: {rolling_errors} errors of \
         {rolling_requests} requests, each out after {:?} ms",
        killed["errors_by_code"],
        ejected.as_millis(),
        back.as_millis(),
        rolling_took.as_secs_f64(),
        out_after.iter().map(Duration::as_millis).collect::<Vec<_>>(),
    );
    assert!(
        rolling_took < Duration::from_secs(u64::from(ROLLING_RUN_S) - 1),
        "the rolling restart fits in the measured run"
    );
    assert_eq!(rolling_errors, 0, "a rolling SIGTERM costs no request: {rolled:#}");
    assert!(rolling_requests > 500, "{rolled:#}");
    assert!(kill_requests > 200, "{killed:#}");
    assert!(
        kill_errors * 20 <= kill_requests,
        "a SIGKILL costs at most a few in-flight requests: {killed:#}"
    );
    assert!(ejected < Duration::from_secs(2), "HAProxy takes a dead replica out within a few checks");
}
