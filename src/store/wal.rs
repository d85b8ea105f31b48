//! The write-ahead log of a collection: checksummed, length-prefixed records appended to one
//! file, flushed to disk before a write is acknowledged.
//!
//! File layout: the 8-byte magic [`WAL_MAGIC`], then frames. A frame is the payload length
//! (u32, little-endian), a CRC-32 of the length bytes and the payload (u32, little-endian), and
//! the payload: one prost-encoded [`WalRecord`]. Covering the length with the checksum makes a
//! zero-filled tail (a common shape of torn writes) fail the check instead of reading as empty
//! records.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message;

use super::StoreError;
use super::record::WalRecord;

/// First bytes of every log file (format version 1).
pub const WAL_MAGIC: &[u8; 8] = b"BNDWAL01";

/// Bytes before a frame's payload: length and checksum.
pub const FRAME_HEADER: usize = 8;

/// Largest payload accepted; a larger length field can only come from damage.
pub const MAX_RECORD_BYTES: usize = 1 << 30;

/// Why decoding stopped before the end of a log or snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// The file does not start with the expected magic.
    #[error("bad file header (expected {expected:?})")]
    BadMagic {
        /// The magic expected.
        expected: String,
    },
    /// The bytes end inside a frame header.
    #[error("torn frame header at byte {offset}: {available} of {FRAME_HEADER} bytes present")]
    TornHeader {
        /// Offset of the frame.
        offset: usize,
        /// Bytes present.
        available: usize,
    },
    /// The bytes end inside a payload.
    #[error("torn record at byte {offset}: {available} of {len} payload bytes present")]
    TornPayload {
        /// Offset of the frame.
        offset: usize,
        /// Declared payload length.
        len: usize,
        /// Bytes present.
        available: usize,
    },
    /// The length field is zero or absurdly large.
    #[error("bad record length {len} at byte {offset}")]
    BadLength {
        /// Offset of the frame.
        offset: usize,
        /// Declared payload length.
        len: usize,
    },
    /// The checksum does not match.
    #[error("checksum mismatch at byte {offset} (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum {
        /// Offset of the frame.
        offset: usize,
        /// Checksum in the frame.
        stored: u32,
        /// Checksum of the bytes read.
        computed: u32,
    },
    /// The checksum matches but the payload is not a valid record.
    #[error("undecodable record at byte {offset}: {reason}")]
    Undecodable {
        /// Offset of the frame.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// Sequence numbers must increase from record to record.
    #[error("record at byte {offset} has sequence {seq}, not after {previous}")]
    OutOfOrder {
        /// Offset of the frame.
        offset: usize,
        /// Its sequence number.
        seq: u64,
        /// The previous record's.
        previous: u64,
    },
}

/// Checksum of a frame: CRC-32 over the length bytes and the payload.
fn frame_crc(len_bytes: &[u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(len_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one frame holding `payload` to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    // Payloads are bounded by the gRPC message limit, far below u32::MAX; saturate rather than
    // wrap so an impossible size fails the length check on read instead of aliasing.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&frame_crc(&len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Parses the frame header at `bytes[offset..]`: the payload range, or why it is bad.
pub fn check_frame(bytes: &[u8], offset: usize) -> Result<std::ops::Range<usize>, Corruption> {
    let rest = bytes.get(offset..).unwrap_or_default();
    if rest.len() < FRAME_HEADER {
        return Err(Corruption::TornHeader { offset, available: rest.len() });
    }
    let len_bytes = [rest[0], rest[1], rest[2], rest[3]];
    let stored = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len == 0 || len > MAX_RECORD_BYTES {
        return Err(Corruption::BadLength { offset, len });
    }
    let available = rest.len() - FRAME_HEADER;
    if available < len {
        return Err(Corruption::TornPayload { offset, len, available });
    }
    let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
    let computed = frame_crc(&len_bytes, payload);
    if computed != stored {
        return Err(Corruption::Checksum { offset, stored, computed });
    }
    let start = offset + FRAME_HEADER;
    Ok(start..start + len)
}

/// The decoded content of a log.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every intact record before the first damaged one, in order.
    pub records: Vec<WalRecord>,
    /// Byte offset of each record's frame in the file (parallel to `records`).
    pub offsets: Vec<usize>,
    /// Length of the intact prefix (header and intact records), in bytes.
    pub valid_len: usize,
    /// The first damage found, if any; nothing after it is read.
    pub corruption: Option<Corruption>,
}

/// Decodes a whole log file held in memory. Never panics: damage of any kind ends the scan and
/// is reported in [`Scan::corruption`], with everything intact before it kept.
pub fn scan(bytes: &[u8]) -> Scan {
    let mut out = Scan::default();
    if bytes.get(..WAL_MAGIC.len()) != Some(WAL_MAGIC.as_slice()) {
        out.corruption =
            Some(Corruption::BadMagic { expected: String::from_utf8_lossy(WAL_MAGIC).into_owned() });
        return out;
    }
    let mut offset = WAL_MAGIC.len();
    out.valid_len = offset;
    let mut previous = 0u64;
    while offset < bytes.len() {
        let range = match check_frame(bytes, offset) {
            Ok(range) => range,
            Err(e) => {
                out.corruption = Some(e);
                break;
            }
        };
        let end = range.end;
        let record = match WalRecord::decode(&bytes[range]) {
            Ok(r) => r,
            Err(e) => {
                out.corruption = Some(Corruption::Undecodable { offset, reason: e.to_string() });
                break;
            }
        };
        if let Err(reason) = record.check() {
            out.corruption = Some(Corruption::Undecodable { offset, reason });
            break;
        }
        if record.seq <= previous {
            out.corruption = Some(Corruption::OutOfOrder { offset, seq: record.seq, previous });
            break;
        }
        previous = record.seq;
        out.records.push(record);
        out.offsets.push(offset);
        offset = end;
        out.valid_len = offset;
    }
    out
}

/// Why the log refused or failed a write. Once one write failed, every later one is refused: what
/// is on disk is no longer known to match memory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct LogFailure {
    /// What failed.
    pub reason: String,
}

/// A step of the log where tests inject faults and pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultPoint {
    /// Before a record is written.
    Append,
    /// Before the file is flushed.
    Sync,
}

/// A test's stand-in for a step: runs before it, and an error replaces the step's outcome.
#[cfg(test)]
pub(crate) type FaultHook = Arc<dyn Fn(FaultPoint) -> std::io::Result<()> + Send + Sync>;

#[cfg(test)]
#[derive(Default)]
struct Faults(Mutex<Option<FaultHook>>);

#[cfg(test)]
impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Faults")
    }
}

/// What the appending side knows about the file.
#[derive(Debug)]
struct Tail {
    /// File length (everything written so far).
    len: u64,
    /// Sequence number of the last record written.
    appended: u64,
    /// Set when the file can no longer be trusted to match memory; every later write fails.
    broken: Option<String>,
}

/// An open log, shared by every writer of one collection.
///
/// Group commit: a writer appends its record (ordered by the caller's lock), then calls
/// [`Wal::sync_through`] with its sequence number. One fsync covers every record written
/// before it started, so writers that queue behind a running fsync often find their record
/// already durable and return without one of their own.
///
/// A failed write or fsync breaks the log for good: that call and every later append, flush
/// and reset fail with a [`LogFailure`]. Records flushed before the failure stay durable, so the
/// records whose [`Wal::sync_through`] succeeded always form a prefix of the log.
#[derive(Debug)]
pub struct Wal {
    path: PathBuf,
    file: Arc<File>,
    tail: Mutex<Tail>,
    /// Sequence number known durable; held across the fsync so only one runs at a time.
    synced: Mutex<u64>,
    #[cfg(test)]
    faults: Faults,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated in a way the
    // next holder could not handle (plain integers), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Wal {
    /// Creates a new, empty log at `path` (replacing any file there) and flushes it.
    pub fn create(path: &Path) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io { path: path.to_path_buf(), source };
        let mut file =
            File::options().read(true).write(true).create(true).truncate(true).open(path).map_err(io)?;
        file.write_all(WAL_MAGIC).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self::from_file(path, file, WAL_MAGIC.len() as u64, 0))
    }

    /// Opens an existing log whose intact prefix is `valid_len` bytes, ending with record
    /// `last_seq`. Anything after `valid_len` is cut off and the cut is flushed, so new records
    /// follow the last intact one.
    pub fn open(path: &Path, valid_len: u64, last_seq: u64) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io { path: path.to_path_buf(), source };
        let mut file = File::options().read(true).write(true).open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if valid_len < WAL_MAGIC.len() as u64 {
            // The header itself is damaged: start the file over.
            file.set_len(0).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.write_all(WAL_MAGIC).map_err(io)?;
            file.sync_all().map_err(io)?;
            return Ok(Self::from_file(path, file, WAL_MAGIC.len() as u64, last_seq));
        }
        if len != valid_len {
            file.set_len(valid_len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        Ok(Self::from_file(path, file, valid_len, last_seq))
    }

    fn from_file(path: &Path, file: File, len: u64, seq: u64) -> Self {
        Self {
            path: path.to_path_buf(),
            file: Arc::new(file),
            tail: Mutex::new(Tail { len, appended: seq, broken: None }),
            synced: Mutex::new(seq),
            #[cfg(test)]
            faults: Faults::default(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why the log refuses writes, if it does.
    pub fn failure(&self) -> Option<LogFailure> {
        lock(&self.tail).broken.clone().map(|reason| LogFailure { reason })
    }

    /// Makes `hook` run before every append and flush (`None` removes it).
    #[cfg(test)]
    pub(crate) fn set_fault_hook(&self, hook: Option<FaultHook>) {
        *lock(&self.faults.0) = hook;
    }

    #[cfg(test)]
    fn fault(&self, point: FaultPoint) -> std::io::Result<()> {
        // Cloned out so a hook that blocks does not hold up the other steps' hooks.
        let hook = lock(&self.faults.0).clone();
        hook.map_or(Ok(()), |hook| hook(point))
    }

    #[cfg(not(test))]
    fn fault(&self, _point: FaultPoint) -> std::io::Result<()> {
        Ok(())
    }

    /// Current file length in bytes.
    pub fn len(&self) -> u64 {
        lock(&self.tail).len
    }

    /// Whether the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.len() <= WAL_MAGIC.len() as u64
    }

    /// Writes `record` at the end of the log (not yet flushed). Callers serialise appends and
    /// pass increasing sequence numbers. A failed write is cut off the file where possible, and
    /// the log refuses every later write either way.
    pub fn append(&self, record: &WalRecord) -> Result<(), LogFailure> {
        let mut frame = Vec::with_capacity(record.encoded_len() + FRAME_HEADER);
        encode_frame(&record.encode_to_vec(), &mut frame);
        let mut tail = lock(&self.tail);
        if let Some(reason) = &tail.broken {
            return Err(LogFailure { reason: reason.clone() });
        }
        let mut file = &*self.file;
        let written = self
            .fault(FaultPoint::Append)
            .and_then(|()| file.seek(SeekFrom::Start(tail.len)))
            .and_then(|_| file.write_all(&frame));
        if let Err(source) = written {
            let mut reason = format!("writing a record failed: {source}");
            if let Err(e) = self.file.set_len(tail.len) {
                reason.push_str(&format!("; cutting it off failed too: {e}"));
            }
            tail.broken = Some(reason.clone());
            return Err(LogFailure { reason });
        }
        tail.len += frame.len() as u64;
        tail.appended = record.seq;
        Ok(())
    }

    /// Returns once every record up to `seq` is on disk, flushing the file if no other writer
    /// already did.
    pub fn sync_through(&self, seq: u64) -> Result<(), LogFailure> {
        let mut synced = lock(&self.synced);
        if *synced >= seq {
            return Ok(());
        }
        let target = {
            let tail = lock(&self.tail);
            if let Some(reason) = &tail.broken {
                return Err(LogFailure { reason: reason.clone() });
            }
            tail.appended
        };
        if let Err(source) = self.fault(FaultPoint::Sync).and_then(|()| self.file.sync_data()) {
            // After a failed fsync the kernel may have dropped the dirty pages: what is on disk
            // is unknown, so stop accepting writes rather than acknowledge on top of it.
            let reason = format!("flushing it to disk failed: {source}");
            lock(&self.tail).broken = Some(reason.clone());
            return Err(LogFailure { reason });
        }
        *synced = target;
        Ok(())
    }

    /// Empties the log after a snapshot holding every record through `seq` was made durable.
    /// Callers hold the collection's append lock so no append runs concurrently.
    pub fn reset(&self, seq: u64) -> Result<(), LogFailure> {
        let mut synced = lock(&self.synced);
        let mut tail = lock(&self.tail);
        if let Some(reason) = &tail.broken {
            return Err(LogFailure { reason: reason.clone() });
        }
        let header = WAL_MAGIC.len() as u64;
        let result = self.file.set_len(header).and_then(|()| self.file.sync_all());
        if let Err(source) = result {
            let reason = format!("emptying it after a snapshot failed: {source}");
            tail.broken = Some(reason.clone());
            return Err(LogFailure { reason });
        }
        tail.len = header;
        tail.appended = seq;
        *synced = (*synced).max(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{DeleteOp, Op};

    fn record(seq: u64) -> WalRecord {
        WalRecord { seq, op: Some(Op::Delete(DeleteOp { ids: vec![format!("id-{seq}")] })) }
    }

    fn log(n: u64) -> Vec<u8> {
        let mut bytes = WAL_MAGIC.to_vec();
        for seq in 1..=n {
            encode_frame(&record(seq).encode_to_vec(), &mut bytes);
        }
        bytes
    }

    #[test]
    fn intact_log_decodes_every_record() {
        let bytes = log(5);
        let s = scan(&bytes);
        assert_eq!(s.records.len(), 5);
        assert_eq!(s.valid_len, bytes.len());
        assert!(s.corruption.is_none());
    }

    #[test]
    fn every_truncation_keeps_the_intact_prefix() {
        let bytes = log(4);
        let full = scan(&bytes);
        for cut in 0..bytes.len() {
            let s = scan(&bytes[..cut]);
            assert!(s.valid_len <= cut);
            let kept = s.records.len();
            assert_eq!(s.records[..], full.records[..kept]);
            if cut >= WAL_MAGIC.len() && s.corruption.is_none() {
                assert_eq!(s.valid_len, cut, "a clean scan ends at a frame boundary");
            }
        }
    }

    #[test]
    fn a_flipped_bit_is_caught_and_earlier_records_survive() {
        let bytes = log(3);
        let second = scan(&log(1)).valid_len;
        for bit in 0..8 {
            let mut damaged = bytes.clone();
            damaged[second + FRAME_HEADER + 2] ^= 1 << bit;
            let s = scan(&damaged);
            assert_eq!(s.records.len(), 1);
            assert_eq!(s.valid_len, second);
            assert!(matches!(s.corruption, Some(Corruption::Checksum { .. })), "{:?}", s.corruption);
        }
    }

    #[test]
    fn zeroed_tail_is_not_read_as_records() {
        let mut bytes = log(2);
        let valid = bytes.len();
        bytes.extend_from_slice(&[0u8; 64]);
        let s = scan(&bytes);
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.valid_len, valid);
        assert!(s.corruption.is_some());
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x1234_5678_u64;
        for len in 0..512 {
            let mut bytes = WAL_MAGIC.to_vec();
            for _ in 0..len {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                bytes.push((state >> 33) as u8);
            }
            let s = scan(&bytes);
            assert!(s.valid_len <= bytes.len());
        }
        assert!(scan(b"").corruption.is_some());
        assert!(scan(b"BNDWAL0").corruption.is_some());
    }

    #[test]
    fn a_failed_flush_refuses_later_writes_but_keeps_what_was_flushed() {
        let path = std::env::temp_dir().join(format!("bindery-unit-wal-{}", std::process::id()));
        let wal = Wal::create(&path).unwrap();
        wal.append(&record(1)).unwrap();
        wal.sync_through(1).unwrap();
        wal.append(&record(2)).unwrap();
        wal.set_fault_hook(Some(Arc::new(|point| {
            if point == FaultPoint::Sync { Err(std::io::Error::other("injected")) } else { Ok(()) }
        })));
        let failure = wal.sync_through(2).unwrap_err();
        assert!(failure.reason.contains("injected"), "{failure}");
        wal.set_fault_hook(None);
        assert_eq!(wal.sync_through(1), Ok(()), "flushed before the failure");
        assert_eq!(wal.sync_through(2), Err(failure.clone()));
        assert_eq!(wal.append(&record(3)), Err(failure.clone()));
        assert_eq!(wal.reset(2), Err(failure.clone()));
        assert_eq!(wal.failure(), Some(failure));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn records_out_of_order_stop_the_scan() {
        let mut bytes = log(2);
        encode_frame(&record(2).encode_to_vec(), &mut bytes);
        let s = scan(&bytes);
        assert_eq!(s.records.len(), 2);
        assert!(matches!(s.corruption, Some(Corruption::OutOfOrder { seq: 2, previous: 2, .. })));
    }
}
