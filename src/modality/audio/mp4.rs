//! The part of an MP4/M4A file's gapless information that FFmpeg applies when decoding: the
//! track's edit list (`moov/trak/edts/elst`) and, for AAC without one, iTunes' `iTunSMPB` tag.
//!
//! symphonia 0.6 parses `elst` but neither exposes it nor applies it, and ignores `iTunSMPB`, so
//! an AAC track would keep the encoder's priming samples (1024 for FFmpeg's encoder, 2112 for
//! Apple's) in front. The reference decodes with FFmpeg, so this module reads both boxes itself
//! and reproduces what FFmpeg 5.1's MP4 demuxer does with them (`mov_fix_index`,
//! `mov_read_custom`):
//!
//! - the first non-empty edit's media time is dropped from the start of the decoded audio
//!   (counted in media-timescale units, which FFmpeg treats as samples);
//! - packets after the one that reaches the edit's end are not decoded; that last packet is kept
//!   whole (FFmpeg 5.1 does not trim inside it);
//! - without such an edit, an AAC track's `iTunSMPB` priming count (0 < priming < 16384) is
//!   dropped from the start; its remainder field is ignored, as FFmpeg 5.1 ignores it.
//!
//! Empty edits (media time -1) only shift timestamps and are skipped; edits after the first
//! non-empty one are ignored (FFmpeg would play them in sequence; audio files practically never
//! have them).

/// What to cut from one MP4 track's decoded audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mp4Trim {
    /// Samples dropped from the start of the decoded audio.
    pub skip: u64,
    /// End of the edit, in the track's media timescale: the packet whose end reaches it is the
    /// last one decoded.
    pub end: Option<u64>,
}

/// Nesting deeper than this is not followed (real files nest the boxes read here 6 deep).
const MAX_DEPTH: usize = 8;

/// The trim FFmpeg applies to track `track_id` (the `tkhd` track ID, which is symphonia's track
/// id for MP4), or `None` when the file has no edit list or priming information for it, or its
/// boxes cannot be read (then nothing is trimmed, as symphonia would decode it).
pub fn trim_for_track(bytes: &[u8], track_id: u32, is_aac: bool) -> Option<Mp4Trim> {
    let moov = children(bytes).find(|b| &b.kind == b"moov")?;
    let movie_timescale =
        children(moov.body).find(|b| &b.kind == b"mvhd").and_then(|b| header_timescale(b.body))?;
    let trak = children(moov.body)
        .filter(|b| &b.kind == b"trak")
        .find(|t| child(t.body, b"tkhd").and_then(|h| tkhd_track_id(h.body)) == Some(track_id))?;
    let media_timescale = child(trak.body, b"mdia")
        .and_then(|m| child(m.body, b"mdhd"))
        .and_then(|h| header_timescale(h.body))?;
    let edit = child(trak.body, b"edts")
        .and_then(|e| child(e.body, b"elst"))
        .and_then(|e| first_nonempty_edit(e.body));
    if let Some((duration, media_time)) = edit {
        // av_rescale: movie timescale -> media timescale, rounded to nearest.
        let end_offset = (u128::from(duration) * u128::from(media_timescale)
            + u128::from(movie_timescale / 2))
            / u128::from(movie_timescale);
        let end = u64::try_from(end_offset).ok().and_then(|d| d.checked_add(media_time));
        return Some(Mp4Trim { skip: media_time, end });
    }
    if !is_aac {
        return None;
    }
    let priming = itunsmpb_priming(moov.body).or_else(|| itunsmpb_priming(trak.body))?;
    Some(Mp4Trim { skip: u64::from(priming), end: None })
}

/// One box: its four-character type and its body (after the size and type).
struct Mp4Box<'a> {
    kind: [u8; 4],
    body: &'a [u8],
}

/// The boxes laid end to end in `data`; stops at the first one whose size does not fit.
fn children(data: &[u8]) -> impl Iterator<Item = Mp4Box<'_>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (size, kind, header) = box_header(rest)?;
        let size = if size == 0 { rest.len() } else { usize::try_from(size).ok()? };
        if size < header || size > rest.len() {
            rest = &[];
            return None;
        }
        let body = &rest[header..size];
        rest = &rest[size..];
        Some(Mp4Box { kind, body })
    })
}

/// Size (0: to the end), type and header length of the box at the start of `data`.
fn box_header(data: &[u8]) -> Option<(u64, [u8; 4], usize)> {
    let size = u32::from_be_bytes(data.get(0..4)?.try_into().ok()?);
    let kind: [u8; 4] = data.get(4..8)?.try_into().ok()?;
    if size == 1 {
        let large = u64::from_be_bytes(data.get(8..16)?.try_into().ok()?);
        Some((large, kind, 16))
    } else {
        Some((u64::from(size), kind, 8))
    }
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<Mp4Box<'a>> {
    children(data).find(|b| &b.kind == kind)
}

fn be_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn be_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// The timescale of an `mvhd` or `mdhd` body (version 0: 32-bit times, version 1: 64-bit);
/// `None` when it is zero.
fn header_timescale(body: &[u8]) -> Option<u32> {
    let at = match body.first()? {
        0 => 12,
        1 => 20,
        _ => return None,
    };
    be_u32(body, at).filter(|&t| t > 0)
}

fn tkhd_track_id(body: &[u8]) -> Option<u32> {
    match body.first()? {
        0 => be_u32(body, 12),
        1 => be_u32(body, 20),
        _ => None,
    }
}

/// `(segment duration in the movie timescale, media time)` of the first edit whose media time
/// is not -1 (an empty edit). A negative media time other than -1 is invalid and ends the search.
fn first_nonempty_edit(body: &[u8]) -> Option<(u64, u64)> {
    let version = *body.first()?;
    let count = be_u32(body, 4)?;
    let entry_len = if version == 1 { 20 } else { 12 };
    for i in 0..usize::try_from(count).ok()? {
        let at = 8usize.checked_add(i.checked_mul(entry_len)?)?;
        let (duration, media_time) = if version == 1 {
            (be_u64(body, at)?, be_u64(body, at + 8)? as i64)
        } else {
            (u64::from(be_u32(body, at)?), i64::from(be_u32(body, at + 4)? as i32))
        };
        match media_time {
            -1 => continue,
            t if t < 0 => return None,
            t => return Some((duration, t as u64)),
        }
    }
    None
}

/// The priming count of an `iTunSMPB` tag under `parent` (`udta/meta/ilst/----`), searched
/// depth-first. FFmpeg reads the second of its hexadecimal fields and keeps it when it is in
/// `1..16384`.
fn itunsmpb_priming(parent: &[u8]) -> Option<u32> {
    find_itunsmpb(parent, 0)
}

fn find_itunsmpb(data: &[u8], depth: usize) -> Option<u32> {
    if depth > MAX_DEPTH {
        return None;
    }
    for b in children(data) {
        match &b.kind {
            b"udta" | b"ilst" => {
                if let Some(p) = find_itunsmpb(b.body, depth + 1) {
                    return Some(p);
                }
            }
            // `meta` is a full box (version and flags first) in MP4; QuickTime files omit them.
            b"meta" => {
                let body =
                    if b.body.get(4..8).is_some_and(|k| k == b"hdlr") { b.body } else { b.body.get(4..)? };
                if let Some(p) = find_itunsmpb(body, depth + 1) {
                    return Some(p);
                }
            }
            b"----" => {
                if let Some(p) = freeform_priming(b.body) {
                    return Some(p);
                }
            }
            _ => {}
        }
    }
    None
}

/// A `----` item: `mean`, `name` and `data` boxes; only `name` == `iTunSMPB` counts.
fn freeform_priming(body: &[u8]) -> Option<u32> {
    let name = child(body, b"name")?;
    if name.body.get(4..)? != b"iTunSMPB" {
        return None;
    }
    // `data` body: 4 bytes type, 4 bytes locale, then the text.
    let data = child(body, b"data")?;
    let text = std::str::from_utf8(data.body.get(8..)?).ok()?;
    // sscanf("%*X %X %X %X"): at least four hexadecimal fields; the second is the priming.
    let fields: Vec<u32> =
        text.split_ascii_whitespace().take(4).map_while(|f| u32::from_str_radix(f, 16).ok()).collect();
    let priming = *fields.get(1).filter(|_| fields.len() == 4)?;
    (1..16384).contains(&priming).then_some(priming)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn full(version: u8, rest: &[u8]) -> Vec<u8> {
        let mut out = vec![version, 0, 0, 0];
        out.extend_from_slice(rest);
        out
    }

    fn timescale_header(kind: &[u8; 4], timescale: u32) -> Vec<u8> {
        let mut rest = vec![0u8; 8];
        rest.extend_from_slice(&timescale.to_be_bytes());
        rest.extend_from_slice(&[0u8; 4]);
        mp4_box(kind, &full(0, &rest))
    }

    fn file(elst: Option<&[(u32, i32)]>, smpb: Option<&str>) -> Vec<u8> {
        let mut tkhd = vec![0u8; 8];
        tkhd.extend_from_slice(&7u32.to_be_bytes());
        tkhd.extend_from_slice(&[0u8; 8]);
        let mut trak = mp4_box(b"tkhd", &full(0, &tkhd));
        if let Some(entries) = elst {
            let mut body = (entries.len() as u32).to_be_bytes().to_vec();
            for &(d, t) in entries {
                body.extend_from_slice(&d.to_be_bytes());
                body.extend_from_slice(&t.to_be_bytes());
                body.extend_from_slice(&[0, 1, 0, 0]);
            }
            trak.extend(mp4_box(b"edts", &mp4_box(b"elst", &full(0, &body))));
        }
        trak.extend(mp4_box(b"mdia", &timescale_header(b"mdhd", 48000)));
        let mut moov = timescale_header(b"mvhd", 1000);
        moov.extend(mp4_box(b"trak", &trak));
        if let Some(text) = smpb {
            let mut item = mp4_box(b"mean", &full(0, b"com.apple.iTunes"));
            item.extend(mp4_box(b"name", &full(0, b"iTunSMPB")));
            let mut data = vec![0, 0, 0, 1, 0, 0, 0, 0];
            data.extend_from_slice(text.as_bytes());
            item.extend(mp4_box(b"data", &data));
            let ilst = mp4_box(b"ilst", &mp4_box(b"----", &item));
            moov.extend(mp4_box(b"udta", &mp4_box(b"meta", &full(0, &ilst))));
        }
        let mut out = mp4_box(b"ftyp", b"M4A \0\0\0\0");
        out.extend(mp4_box(b"moov", &moov));
        out
    }

    #[test]
    fn edit_list_start_and_end_in_media_units() {
        let f = file(Some(&[(1000, 1024)]), None);
        assert_eq!(trim_for_track(&f, 7, true), Some(Mp4Trim { skip: 1024, end: Some(1024 + 48000) }));
        assert_eq!(trim_for_track(&f, 8, true), None, "another track");
    }

    #[test]
    fn empty_edits_are_skipped_and_the_edit_wins_over_itunsmpb() {
        let f = file(Some(&[(500, -1), (2000, 2112)]), Some(" 00000000 00000400 00000000 0000000000000000"));
        assert_eq!(trim_for_track(&f, 7, true), Some(Mp4Trim { skip: 2112, end: Some(2112 + 96000) }));
    }

    #[test]
    fn itunsmpb_priming_for_aac_only() {
        let f = file(None, Some(" 00000000 00000840 000001C0 0000000000055F80 00000000"));
        assert_eq!(trim_for_track(&f, 7, true), Some(Mp4Trim { skip: 0x840, end: None }));
        assert_eq!(trim_for_track(&f, 7, false), None);
        let out_of_range = file(None, Some(" 00000000 00004000 000001C0 0000000000055F80"));
        assert_eq!(trim_for_track(&out_of_range, 7, true), None);
    }

    #[test]
    fn malformed_boxes_give_none_without_panicking() {
        let f = file(Some(&[(1000, 1024)]), Some(" 0 840 1C0 55F80"));
        for cut in 0..f.len() {
            let _ = trim_for_track(&f[..cut], 7, true);
        }
        let mut bad = f.clone();
        bad[3] = 0xff; // ftyp claims more bytes than there are
        assert_eq!(trim_for_track(&bad, 7, true), None);
        let huge_count = file(Some(&[(1000, -5)]), None);
        assert_eq!(trim_for_track(&huge_count, 7, true), None, "negative media time other than -1");
    }
}
