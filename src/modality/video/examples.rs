//! Generated example videos for `bindery load --mix video=...`: Motion JPEG in AVI, written here
//! (no encoder library needed), so the load tool runs wherever bindery builds.

use crate::shared::pb;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;
const FPS: u32 = 10;
const SECONDS: u32 = 4;

/// Two 4 s 640x360 MJPEG AVIs at 10 fps: a gradient background with a disc moving along a path
/// the seed picks.
pub fn examples(seed: u64) -> Vec<pb::input::Payload> {
    (0..2u64)
        .filter_map(|k| {
            let data = avi(seed.wrapping_mul(31).wrapping_add(k))?;
            Some(pb::input::Payload::Video(pb::Video {
                data,
                format_hint: "avi".into(),
                ..Default::default()
            }))
        })
        .collect()
}

fn frame(seed: u64, t: u32) -> Option<Vec<u8>> {
    let phase = (seed % 97) as f32 / 97.0;
    let s = t as f32 / (FPS * SECONDS) as f32;
    let cx = (WIDTH as f32 * (0.2 + 0.6 * ((s + phase) * std::f32::consts::TAU).sin().abs())) as i64;
    let cy = (HEIGHT as f32 * (0.3 + 0.4 * s)) as i64;
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let mut rgb = vec![0u8; w * h * 3];
    let blue = ((t * 4) % 256) as u8;
    for (y, row) in rgb.chunks_exact_mut(w * 3).enumerate() {
        let green = (y * 255 / h) as u8;
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&[(x * 255 / w) as u8, green, blue]);
        }
    }
    // A disc of radius 60 around (cx, cy), drawn inside its bounding box only.
    let disc = [230, 40 + (phase * 200.0) as u8, 60];
    let r = 60i64;
    for y in (cy - r).max(0)..(cy + r).min(HEIGHT as i64) {
        for x in (cx - r).max(0)..(cx + r).min(WIDTH as i64) {
            if (x - cx).pow(2) + (y - cy).pow(2) < r * r {
                let at = (y as usize * w + x as usize) * 3;
                rgb[at..at + 3].copy_from_slice(&disc);
            }
        }
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
        .encode(&rgb, WIDTH, HEIGHT, image::ExtendedColorType::Rgb8)
        .ok()?;
    Some(out)
}

fn chunk(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 9);
    out.extend_from_slice(id);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    if body.len() % 2 == 1 {
        out.push(0);
    }
    out
}

fn list(kind: &[u8; 4], parts: &[Vec<u8>]) -> Vec<u8> {
    let mut body = kind.to_vec();
    for p in parts {
        body.extend_from_slice(p);
    }
    chunk(b"LIST", &body)
}

fn le(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A RIFF AVI of MJPEG frames with an `idx1` index.
fn avi(seed: u64) -> Option<Vec<u8>> {
    let count = FPS * SECONDS;
    let frames: Vec<Vec<u8>> = (0..count).map(|t| frame(seed, t)).collect::<Option<_>>()?;
    let largest = frames.iter().map(Vec::len).max().unwrap_or(0) as u32;
    // avih: µs per frame, max bytes/s, padding, flags (HASINDEX), frames, initial, streams,
    // buffer size, width, height, reserved x4.
    let avih = chunk(
        b"avih",
        &le(&[1_000_000 / FPS, largest * FPS, 0, 0x10, count, 0, 1, largest, WIDTH, HEIGHT, 0, 0, 0, 0]),
    );
    let mut strh = b"vidsMJPG".to_vec();
    // flags, priority+language, initial frames, scale, rate, start, length, buffer, quality,
    // sample size, frame rectangle (two u32: left/top, right/bottom as i16 pairs).
    strh.extend(le(&[0, 0, 0, 1, FPS, 0, count, largest, u32::MAX, 0, 0, WIDTH | (HEIGHT << 16)]));
    let mut strf = le(&[40, WIDTH, HEIGHT]);
    strf.extend_from_slice(&1u16.to_le_bytes()); // planes
    strf.extend_from_slice(&24u16.to_le_bytes()); // bits per pixel
    strf.extend_from_slice(b"MJPG");
    strf.extend(le(&[WIDTH * HEIGHT * 3, 0, 0, 0, 0]));
    let hdrl = list(b"hdrl", &[avih, list(b"strl", &[chunk(b"strh", &strh), chunk(b"strf", &strf)])]);
    let mut index = Vec::new();
    let mut offset = 4u32; // from the 'movi' tag
    let mut movi_parts = Vec::new();
    for f in &frames {
        let c = chunk(b"00dc", f);
        index.extend_from_slice(b"00dc");
        index.extend(le(&[0x10, offset, f.len() as u32]));
        offset += c.len() as u32;
        movi_parts.push(c);
    }
    let movi = list(b"movi", &movi_parts);
    let mut riff = b"AVI ".to_vec();
    riff.extend(hdrl);
    riff.extend(movi);
    riff.extend(chunk(b"idx1", &index));
    Some(chunk(b"RIFF", &riff))
}

#[cfg(all(test, feature = "video"))]
mod tests {
    use super::*;
    use crate::modality::video::VideoLimits;
    use crate::modality::video::decode::Demuxed;

    #[test]
    fn generated_examples_are_videos_ffmpeg_reads_at_their_size_and_rate() {
        let data = avi(3).unwrap();
        let mut video = Demuxed::open(&data, &VideoLimits::default()).unwrap();
        assert_eq!(video.frame_count(), (FPS * SECONDS) as usize);
        assert_eq!(video.frame_rate(), f64::from(FPS));
        let frames = video.decode_frames(&[0, 39]).unwrap();
        assert_eq!((frames[1].width, frames[1].height), (WIDTH as usize, HEIGHT as usize));
        // The disc moves: the first and last frames differ.
        assert_ne!(frames[0].rgb, frames[1].rgb);
    }
}
