//! The tests run as threads of one process: what one of them does to the process (its open-file
//! limit, its memory, the cores it keeps busy) the others see.

use std::process::Command;
use std::sync::OnceLock;

use bindery::server::connections::FileLimit;

/// Raises this process's soft open-file limit to the hard one, once, as `bindery serve` does for
/// itself: every running test's sockets and files count against it. Called before each server
/// start, so the limit (and the connection cap a server derives from it) is the same whichever
/// tests ran first.
pub fn raise_open_file_limit() -> FileLimit {
    static RAISED: OnceLock<FileLimit> = OnceLock::new();
    *RAISED.get_or_init(|| {
        bindery::server::connections::raise_open_file_limit().expect("raise the open-file limit")
    })
}

static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Held by tests whose assertions depend on the CPU time left to them (latency bounds, CPU shares,
/// throughput measured against an earlier measurement) and by tests that keep every core busy for
/// seconds: no two of these run at once.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().await
}

/// Names the one test a process started by [`in_own_process`] is for.
const OWN_PROCESS: &str = "BINDERY_TEST_OWN_PROCESS";

/// For a test that measures this process (its resident memory): true when the caller runs in a
/// process of this test binary started for `test` (its full name, `module::function`) alone, so
/// its body should run. Otherwise runs `test` in such a process, fails unless it passed there,
/// and returns false.
pub fn in_own_process(test: &str) -> bool {
    if std::env::var_os(OWN_PROCESS).is_some_and(|name| name == test) {
        return true;
    }
    let output = Command::new(std::env::current_exe().expect("path of the test binary"))
        .args([test, "--exact", "--test-threads", "1"])
        .env(OWN_PROCESS, test)
        .output()
        .expect("start the test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{test} failed in its own process:\n{stdout}\n{stderr}");
    // A name that matches no test runs nothing, and that passes too.
    assert!(stdout.contains("test result: ok. 1 passed"), "{test} did not run in its own process:\n{stdout}");
    false
}
