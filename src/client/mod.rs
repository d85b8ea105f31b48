//! The client side of bindery: connecting to a server (`connect`), the `embed` and `models`
//! commands (`commands`) and the load generator (`load`).
//!
//! It speaks to a server only through the generated protobuf client, so it imports `shared` and
//! never `server` or `api`; the load tool's in-process baseline alone loads models, through the
//! engine, as a server would.

pub mod commands;
pub mod connect;
pub mod load;

use std::io::{ErrorKind, Write};

/// Writes `text` to stdout. A closed stdout (`bindery embed | head`) is not an error: its reader
/// has all it wanted, so the command ends quietly, as Unix tools do.
pub fn write_stdout(text: &str) -> std::io::Result<()> {
    write_stdout_bytes(text.as_bytes())
}

/// [`write_stdout`] for binary output.
pub fn write_stdout_bytes(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
