//! `bindery serve` as a child process: for tests of what only a whole process shows (signals,
//! open-file limits, its log).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{TempDir, raise_open_file_limit, repo};

/// A running `bindery serve`; killed when dropped.
pub struct ServerProcess {
    /// The child.
    pub child: Child,
    /// Address of its gRPC listener.
    pub addr: SocketAddr,
    /// Address of its metrics endpoint, when started with `--metrics`.
    pub metrics: Option<SocketAddr>,
    /// Address of its HTTP API, when started with `--http`.
    pub http: Option<SocketAddr>,
    /// Its log lines, as they come.
    pub log: mpsc::Receiver<String>,
    /// The log lines read so far.
    pub seen: Vec<String>,
    _data: TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    /// Starts `bindery serve` on the fixture models with `extra` arguments, its own data folder and
    /// a metrics endpoint; `open_files` sets both the soft and the hard open-file limit of the
    /// child. Waits until it serves.
    pub fn start(extra: &[&str], open_files: Option<u64>) -> Self {
        Self::start_at("127.0.0.1:0", extra, open_files)
    }

    /// [`ServerProcess::start`] with the gRPC listener on `listen`.
    pub fn start_at(listen: &str, extra: &[&str], open_files: Option<u64>) -> Self {
        raise_open_file_limit();
        let data = TempDir::new("process-data");
        let mut command = Command::new(env!("CARGO_BIN_EXE_bindery"));
        command
            .args(["serve", "--listen", listen, "--metrics", "127.0.0.1:0"])
            .args(["--default-model", "imagebind-fixture", "--intra-threads", "1", "--models"])
            .arg(repo().join("models"))
            .arg("--data-dir")
            .arg(data.path())
            .args(extra)
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "bindery=info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        if let Some(limit) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                command.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, limit, limit));
            }
        }
        let mut child = command.spawn().expect("start bindery");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut server = Self {
            child,
            addr: "0.0.0.0:0".parse().expect("placeholder"),
            metrics: None,
            http: None,
            log,
            seen: Vec::new(),
            _data: data,
        };
        let metrics = server.wait_for_line("serving Prometheus metrics");
        server.metrics = field(&metrics, "metrics=").map(|a| a.parse().expect("metrics address"));
        if extra.contains(&"--http") {
            let http = server.wait_for_line("serving the HTTP API");
            server.http = field(&http, "http=").map(|a| a.parse().expect("http address"));
        }
        let serving = server.wait_for_line("bindery serving");
        server.addr = field(&serving, "listen=").expect("listen= field").parse().expect("address");
        // The default warm-up runs in the background after the port opens: tests start from a
        // warm, ready server unless they choose the warm-up themselves.
        if !extra.iter().any(|a| a.starts_with("--warm-up") || *a == "--no-warm-up") {
            server.wait_for_line("warm-up done");
        }
        server
    }

    /// Reads the log until a line contains `needle` and returns it (fails after 120 s, or on a
    /// panic line).
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let line =
                self.log.recv_timeout(deadline.saturating_duration_since(Instant::now())).unwrap_or_else(
                    |e| panic!("no log line with {needle:?}: {e}; log so far:\n{}", self.seen.join("\n")),
                );
            assert!(!line.contains("panicked"), "{line}");
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Every log line that arrived until now.
    pub fn drain_log(&mut self) -> &[String] {
        while let Ok(line) = self.log.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// CPU seconds (user + system) the process has used.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("read stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let after = &stat[stat.rfind(')').expect("stat format") + 2..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 =
            fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks / per_second
    }
}

/// The value of the `key` field (e.g. `listen=`) of a log line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key))
}

/// Sends `signal` to `child`.
pub fn signal(child: &Child, signal: libc::c_int) {
    // SAFETY: plain kill(2) on the pid of a child this test owns and has not reaped.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    assert_eq!(rc, 0, "kill failed");
}

/// Waits up to 30 s for `child` to exit and returns its status.
pub async fn exit_status(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "server did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends SIGTERM to `child`.
pub fn sigterm(child: &Child) {
    signal(child, libc::SIGTERM);
}
