//! Snapshots: the whole content of a collection at one sequence number, written atomically.
//!
//! Layout: the magic [`SNAPSHOT_MAGIC`], one frame holding a [`SnapshotHeader`], then frames of
//! [`SnapshotChunk`]s whose rows add up to the header's count. Frames are those of the log
//! (length, checksum, payload). A snapshot is written to a temporary file, flushed, renamed over
//! the previous one and the folder flushed, so a crash leaves either the old or the new file.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use prost::Message;

use super::StoreError;
use super::record::{SnapshotChunk, SnapshotHeader, StoredRow};
use super::wal::{self, FRAME_HEADER};

/// First bytes of every snapshot file (format version 1).
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"BNDSNAP1";

/// File name of the snapshot inside a collection folder.
pub const SNAPSHOT_FILE: &str = "snapshot";

/// File name a snapshot is written under before it replaces [`SNAPSHOT_FILE`].
pub const SNAPSHOT_TMP_FILE: &str = "snapshot.tmp";

/// Rows per chunk frame.
const ROWS_PER_CHUNK: usize = 512;

/// Flushes a folder so a rename or creation inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::Io { path: dir.to_path_buf(), source })?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes a snapshot of `rows` (exactly `count` of them) as of `last_seq` into `dir`, replacing
/// the previous one. Returns its size in bytes.
pub fn write<'a>(
    dir: &Path,
    last_seq: u64,
    dim: usize,
    count: usize,
    rows: impl Iterator<Item = StoredRow> + 'a,
) -> Result<u64, StoreError> {
    let tmp = dir.join(SNAPSHOT_TMP_FILE);
    let io = |path: &PathBuf| {
        let path = path.clone();
        move |source| StoreError::Io { path, source }
    };
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut frame = Vec::new();
    out.write_all(SNAPSHOT_MAGIC).map_err(io(&tmp))?;
    let header = SnapshotHeader { last_seq, count: count as u64, dim: dim as u64 };
    wal::encode_frame(&header.encode_to_vec(), &mut frame);
    let mut written = 0usize;
    let mut chunk = SnapshotChunk { rows: Vec::with_capacity(ROWS_PER_CHUNK) };
    let flush = |chunk: &mut SnapshotChunk, frame: &mut Vec<u8>, out: &mut BufWriter<File>| {
        if !chunk.rows.is_empty() {
            wal::encode_frame(&chunk.encode_to_vec(), frame);
            chunk.rows.clear();
        }
        out.write_all(frame).map_err(io(&tmp))?;
        frame.clear();
        Ok::<(), StoreError>(())
    };
    for row in rows {
        chunk.rows.push(row);
        written += 1;
        if chunk.rows.len() == ROWS_PER_CHUNK {
            flush(&mut chunk, &mut frame, &mut out)?;
        }
    }
    flush(&mut chunk, &mut frame, &mut out)?;
    if written != count {
        return Err(StoreError::Internal(format!("snapshot of {count} rows received {written}")));
    }
    let file = out.into_inner().map_err(|e| StoreError::Io { path: tmp.clone(), source: e.into_error() })?;
    file.sync_all().map_err(io(&tmp))?;
    let size = file.metadata().map_err(io(&tmp))?.len();
    drop(file);
    let dest = dir.join(SNAPSHOT_FILE);
    std::fs::rename(&tmp, &dest).map_err(io(&dest))?;
    sync_dir(dir)?;
    Ok(size)
}

/// Removes a temporary snapshot left in `dir` by a compaction that was interrupted (a crash or
/// a kill before the rename): it was never the collection's snapshot, and it can be as large as
/// the collection. Returns its size when there was one.
pub fn remove_leftover(dir: &Path) -> Result<Option<u64>, StoreError> {
    let tmp = dir.join(SNAPSHOT_TMP_FILE);
    let size = match std::fs::metadata(&tmp) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StoreError::Io { path: tmp, source }),
    };
    std::fs::remove_file(&tmp).map_err(|source| StoreError::Io { path: tmp, source })?;
    Ok(Some(size))
}

/// A snapshot read back.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Sequence number of the last write it includes.
    pub last_seq: u64,
    /// Its rows.
    pub rows: Vec<StoredRow>,
    /// File size in bytes.
    pub bytes: u64,
}

/// Reads the frame at `offset` of a file `file_len` bytes long.
fn read_frame(reader: &mut impl Read, offset: usize, file_len: u64) -> Result<Option<Vec<u8>>, String> {
    let mut header = [0u8; FRAME_HEADER];
    let mut got = 0;
    while got < FRAME_HEADER {
        match reader.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(format!("torn frame header at byte {offset}")),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > wal::MAX_RECORD_BYTES {
        return Err(format!("bad record length {len} at byte {offset}"));
    }
    // Checked against the file before allocating, so a damaged length costs no memory.
    let end = (offset + FRAME_HEADER) as u64 + len as u64;
    if end > file_len {
        return Err(format!(
            "torn record at byte {offset}: {len} bytes declared, the file ends at {file_len}"
        ));
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER + len);
    frame.extend_from_slice(&header);
    frame.resize(FRAME_HEADER + len, 0);
    reader
        .read_exact(&mut frame[FRAME_HEADER..])
        .map_err(|e| format!("torn record at byte {offset}: {e}"))?;
    let range = wal::check_frame(&frame, 0).map_err(|e| format!("at byte {offset}: {e}"))?;
    Ok(Some(frame[range].to_vec()))
}

/// Reads `dir`'s snapshot; `None` when there is none yet. A damaged snapshot is an error: it
/// was flushed before it replaced the previous one, so damage means the disk lost data.
pub fn read(dir: &Path, dim: usize) -> Result<Option<Loaded>, StoreError> {
    let path = dir.join(SNAPSHOT_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StoreError::Io { path, source }),
    };
    let bytes = file.metadata().map_err(|source| StoreError::Io { path: path.clone(), source })?.len();
    decode(BufReader::with_capacity(1 << 20, file), &path, bytes, dim).map(Some)
}

/// Decodes the snapshot that `reader` yields (`bytes` long, `path` names it in errors) for a
/// collection of dimension `dim`. Public for the fuzz targets.
#[doc(hidden)]
pub fn decode(mut reader: impl Read, path: &Path, bytes: u64, dim: usize) -> Result<Loaded, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { path: path.to_path_buf(), reason };
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic).map_err(|e| corrupt(format!("no header: {e}")))?;
    if &magic != SNAPSHOT_MAGIC {
        return Err(corrupt("bad file header".into()));
    }
    let mut offset = SNAPSHOT_MAGIC.len();
    let header = read_frame(&mut reader, offset, bytes)
        .map_err(&corrupt)?
        .ok_or_else(|| corrupt("no header record".into()))?;
    offset += FRAME_HEADER + header.len();
    let header = SnapshotHeader::decode(header.as_slice()).map_err(|e| corrupt(e.to_string()))?;
    if header.dim != dim as u64 {
        return Err(corrupt(format!("dimension {} differs from the manifest's {dim}", header.dim)));
    }
    let count = usize::try_from(header.count).map_err(|e| corrupt(e.to_string()))?;
    // Every row holds at least `dim` floats, which bounds what a damaged count can reserve.
    let fit = usize::try_from(bytes).unwrap_or(usize::MAX) / (dim * 4).max(1);
    let mut rows = Vec::with_capacity(count.min(fit).min(1 << 20));
    while let Some(payload) = read_frame(&mut reader, offset, bytes).map_err(&corrupt)? {
        offset += FRAME_HEADER + payload.len();
        let chunk = SnapshotChunk::decode(payload.as_slice()).map_err(|e| corrupt(e.to_string()))?;
        rows.extend(chunk.rows);
        if rows.len() > count {
            return Err(corrupt(format!("more rows than the {count} announced")));
        }
    }
    if rows.len() != count {
        return Err(corrupt(format!("{} rows of the {count} announced", rows.len())));
    }
    Ok(Loaded { last_seq: header.last_seq, rows, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_longer_than_the_file_is_torn_without_allocating_it() {
        let mut bytes = SNAPSHOT_MAGIC.to_vec();
        // A header frame declaring 512 MiB, then nothing.
        bytes.extend_from_slice(&(512u32 << 20).to_le_bytes());
        bytes.resize(SNAPSHOT_MAGIC.len() + FRAME_HEADER, 0);
        let len = bytes.len() as u64;
        match decode(bytes.as_slice(), Path::new("s"), len, 4) {
            Err(StoreError::Corrupt { reason, .. }) => {
                assert!(reason.contains("536870912 bytes declared, the file ends at"), "{reason}");
            }
            other => panic!("expected a torn-record error, got {other:?}"),
        }
    }
}
