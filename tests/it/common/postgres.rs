//! A real PostgreSQL 16 with pgvector for the tests of the PostgreSQL store: the binaries that
//! the PyPI package `pgserver` bundles, installed into `.venv-test` by `scripts/setup.sh
//! --python` (or named by `BINDERY_PG_BIN`). One server, started on first use, is shared by every
//! test of the process, each test in a database of its own; a test that kills PostgreSQL starts
//! its own with [`Postgres::start`].
//!
//! PostgreSQL refuses to run as root; as root the harness runs it as the user `pgserver`
//! (created with `useradd` if missing), as the `pgserver` package does itself. Each server runs
//! in a process group of its own, started from one long-lived thread with a parent-death signal,
//! so it goes when the test process goes, however that ends.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use super::repo;

/// The system user PostgreSQL runs as when the tests run as root (the `pgserver` package's).
const SYSTEM_USER: &str = "pgserver";

/// The folder holding `initdb`, `postgres` and `pg_isready`: `BINDERY_PG_BIN`, or pgserver's in
/// `.venv-test`. Panics, naming the setup command, when there is none.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BINDERY_PG_BIN") {
        return PathBuf::from(dir);
    }
    let venv_lib = repo().join(".venv-test/lib");
    let found = std::fs::read_dir(&venv_lib).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/pgserver/pginstall/bin"))
            .find(|bin| bin.join("postgres").is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "PostgreSQL with pgvector is needed for the PostgreSQL store's tests and was not found in \
             {}/python*/site-packages/pgserver: run `scripts/setup.sh --python` (it installs the PyPI \
             package pgserver into .venv-test), or set BINDERY_PG_BIN to a folder with initdb, postgres \
             and pg_isready of PostgreSQL 16 with pgvector",
            venv_lib.display()
        )
    })
}

/// Uid and gid to run PostgreSQL as: `None` unless the tests run as root.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    Some(*IDS.get_or_init(|| {
        let lookup = || {
            let out = Command::new("id").args(["-u", SYSTEM_USER]).output().ok()?;
            let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
            let out = Command::new("id").args(["-g", SYSTEM_USER]).output().ok()?;
            let gid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
            Some((uid, gid))
        };
        if let Some(ids) = lookup() {
            return ids;
        }
        let status = Command::new("useradd").args(["-s", "/bin/bash", SYSTEM_USER]).status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "PostgreSQL cannot run as root and `useradd {SYSTEM_USER}` failed"
        );
        lookup().expect("the user just added")
    }))
}

/// Spawns `command` from a thread that lives as long as the process, with SIGKILL as its
/// parent-death signal (which Linux ties to the spawning thread), in a process group of its own.
fn spawn_kept(mut command: Command) -> Child {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::spawn(move || {
            for (mut command, reply) in rx {
                let _ = reply.send(command.spawn());
            }
            // The channel lives in a static, so this loop never ends.
        });
        Mutex::new(tx)
    });
    command.process_group(0);
    // SAFETY: prctl is async-signal-safe; it runs after the uid change, which would clear it.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    keeper.lock().unwrap_or_else(|e| e.into_inner()).send((command, tx)).expect("keeper thread");
    rx.recv().expect("keeper reply").expect("start postgres")
}

/// Removes the scratch folders of test processes that have ended: the shared server lives in a
/// static, which is never dropped, so its folder outlives its process.
fn remove_leftovers() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("bpg-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A PostgreSQL server on a Unix socket in its own scratch folder.
pub struct Postgres {
    root: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Postgres {
    /// Initialises a cluster in a new scratch folder and starts it; waits until it accepts
    /// connections.
    pub fn start() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let bin = bin_dir();
        remove_leftovers();
        // Short: the socket's path must fit in 107 bytes.
        let root = std::env::temp_dir().join(format!(
            "bpg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("postgres scratch folder");
        if let Some((uid, gid)) = run_as() {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).expect("chown the postgres folder");
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.arg("-D").arg(root.join("data")).args([
            "--auth=trust",
            "--encoding=utf8",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        if let Some((uid, gid)) = run_as() {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed ({}): {}{}",
            bin.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let log = root.join("log");
        let mut server = Self { root, child: None, log };
        server.run();
        server
    }

    /// The URL of database `db`, in the form `pgserver`'s `get_uri()` gives.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres:@/{db}?host={}", self.root.display())
    }

    /// Starts the server on its cluster (after [`Postgres::kill`]); waits until it accepts
    /// connections. A server killed a moment ago may leave backends that still hold its shared
    /// memory: the start is retried until they are gone.
    pub fn run(&mut self) {
        let bin = bin_dir();
        let started = Instant::now();
        loop {
            let log =
                std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("postgres log");
            let mut command = Command::new(bin.join("postgres"));
            command
                .arg("-D")
                .arg(self.root.join("data"))
                .arg("-k")
                .arg(&self.root)
                .args(["-c", "listen_addresses=", "-c", "max_connections=300", "-c", "shared_buffers=32MB"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log);
            if let Some((uid, gid)) = run_as() {
                command.uid(uid).gid(gid);
            }
            let mut child = spawn_kept(command);
            if self.wait_ready(&mut child) {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "postgres did not start: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether `child` came up and accepts connections (false if it exited first).
    fn wait_ready(&self, child: &mut Child) -> bool {
        let isready = bin_dir().join("pg_isready");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return false;
            }
            let ready = Command::new(&isready)
                .arg("-q")
                .arg("-h")
                .arg(&self.root)
                .args(["-U", "postgres"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGKILL to every process of the server (the postmaster and its backends), as a crash of
    /// the database's machine would stop them.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: killpg on the group the child leads (process_group(0) at spawn).
            unsafe {
                libc::killpg(child.id() as libc::pid_t, libc::SIGKILL);
            }
            let _ = child.wait();
        }
    }

    /// Creates database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        let (client, connection) = tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
            .await
            .expect("connect to postgres");
        let task = tokio::spawn(connection);
        client.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("create database");
        drop(client);
        let _ = task.await;
        self.url(name)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The server shared by the tests of this process, started on first use.
pub fn shared() -> &'static Postgres {
    static SHARED: OnceLock<Postgres> = OnceLock::new();
    SHARED.get_or_init(Postgres::start)
}

/// A new database on the shared server, for one test: its URL.
pub async fn fresh_database(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = format!("t_{what}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    let server = tokio::task::spawn_blocking(shared).await.expect("start postgres");
    server.create_database(&name).await
}
