//! Collection write-ahead log decoding: frame headers, checksums and record payloads.
#![no_main]

use bindery::store::wal::{WAL_MAGIC, encode_frame, scan};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let bytes = match mode % 3 {
        // The file as it is.
        0 => rest.to_vec(),
        // Past the magic: frame headers and checksums.
        1 => [WAL_MAGIC.as_slice(), rest].concat(),
        // Valid frames around arbitrary payloads, so that record decoding and validation are
        // reached despite the checksums: each payload is prefixed by a one-byte length.
        _ => {
            let mut out = WAL_MAGIC.to_vec();
            let mut rest = rest;
            while let Some((&len, tail)) = rest.split_first() {
                let take = usize::from(len).min(tail.len());
                encode_frame(&tail[..take], &mut out);
                rest = &tail[take..];
            }
            out
        }
    };
    let first = scan(&bytes);
    assert!(first.valid_len <= bytes.len());
    assert_eq!(first.records.len(), first.offsets.len());
    // The intact prefix reads back as the same records, with no damage.
    if first.valid_len >= WAL_MAGIC.len() {
        let again = scan(&bytes[..first.valid_len]);
        assert_eq!(again.records, first.records);
        assert!(again.corruption.is_none(), "{:?}", again.corruption);
    }
});
