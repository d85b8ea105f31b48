//! The tests run as threads of one process: what one of them does to the process (its open-file
//! limit, its memory, the cores it keeps busy) the others see.

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
