//! Lossy audio (AAC, MP3, Vorbis, Opus; FLAC and WAV as controls) against the reference's FFmpeg
//! decode (goldens from `tools/make_lossy_audio_fixtures.py`): the decoded samples (gapless
//! trimming included) and the served embeddings.

use std::collections::BTreeMap;

use bindery::modality::audio::AudioLimits;
use bindery::modality::audio::decode::decode;
use serde::Deserialize;
use tonic::Code;

use crate::common::*;

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    id: String,
    file: String,
    codec: String,
    decoded: Decoded,
    embedding: Option<Vec<f32>>,
    reference_error: Option<String>,
}

/// FFmpeg's decode of the file.
#[derive(Deserialize)]
struct Decoded {
    sample_rate: u32,
    channels: usize,
    frames: usize,
    stride: usize,
    /// Every `stride`-th sample of each channel.
    samples: Vec<Vec<f32>>,
}

const LOSSY: Fixtures = Fixtures("audio_lossy");

/// Largest difference from FFmpeg's samples: decoder rounding. FFmpeg's native Opus decoder is
/// not libopus (its CELT noise folding differs), so Opus samples are not compared one by one;
/// its length is, and its embedding below.
const SAMPLE_TOL: f32 = 1e-4;

fn floor(codec: &str) -> f64 {
    match codec {
        "aac" | "mp3" | "opus" => 0.999,
        _ => 0.9999,
    }
}

#[test]
fn lossy_audio_decodes_to_ffmpegs_samples() {
    let cases: Cases = LOSSY.json("cases.json");
    assert!(cases.cases.len() >= 64, "expected every codec, rate, layout and length");
    let mut worst: BTreeMap<&str, f32> = BTreeMap::new();
    for case in &cases.cases {
        let want = &case.decoded;
        let got = decode(&LOSSY.read(&case.file), None, &AudioLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", case.id));
        assert_eq!(
            (got.sample_rate, got.channels.len(), got.frames()),
            (want.sample_rate, want.channels, want.frames),
            "{}: (rate, channels, frames) against FFmpeg's",
            case.id
        );
        if case.codec == "opus" {
            continue;
        }
        let mut d = 0f32;
        for (channel, samples) in got.channels.iter().zip(&want.samples) {
            let ours: Vec<f32> = channel.iter().step_by(want.stride).copied().collect();
            assert_eq!(ours.len(), samples.len(), "{}: sampled length", case.id);
            d = d.max(max_abs_diff(&ours, samples));
        }
        assert!(d <= SAMPLE_TOL, "{}: samples differ from FFmpeg's by up to {d}", case.id);
        let w = worst.entry(&case.codec).or_default();
        *w = w.max(d);
    }
    for (codec, d) in worst {
        eprintln!("{codec}: largest sample difference from FFmpeg {d:.2e}");
    }
}

#[tokio::test]
async fn lossy_audio_embeddings_match_the_reference() {
    let mut server = start_fixture().await;
    let cases: Cases = LOSSY.json("cases.json");
    let mut worst: BTreeMap<&str, f64> = BTreeMap::new();
    for case in &cases.cases {
        let reply = server.client.embed(request(vec![audio(&case.id, LOSSY.read(&case.file), "")])).await;
        match (&case.embedding, &case.reference_error) {
            (Some(want), _) => {
                let reply = reply.unwrap_or_else(|s| panic!("case {}: {s}", case.id)).into_inner();
                let c = cosine(&reply.embeddings[0].vector, want);
                let w = worst.entry(&case.codec).or_insert(1.0);
                *w = w.min(c);
                if case.id.contains("_real_") {
                    eprintln!("{} (a real recording): cosine {c:.7}", case.id);
                }
                assert!(
                    c >= floor(&case.codec),
                    "{} ({}): cosine {c} < {}",
                    case.id,
                    case.file,
                    floor(&case.codec)
                );
            }
            // The reference's filterbank refused the decoded audio (shorter than one window).
            (None, Some(why)) => {
                let status = reply.expect_err(&format!("{}: the reference refused it ({why})", case.id));
                assert_eq!(status.code(), Code::InvalidArgument, "{}: {}", case.id, status.message());
                assert!(status.message().contains("audio too short"), "{}: {}", case.id, status.message());
            }
            (None, None) => panic!("{}: golden has neither an embedding nor an error", case.id),
        }
    }
    for (codec, c) in &worst {
        eprintln!("{codec}: worst cosine {c:.7}");
    }
    for codec in ["aac", "mp3", "vorbis", "opus", "flac", "wav"] {
        assert!(worst.contains_key(codec), "no {codec} case with an embedding");
    }
    // Issue 18's case: FFmpeg's AAC of a real 48 kHz mono recording, in M4A.
    let real = cases.cases.iter().find(|c| c.id == "aac_real_48000_mono");
    assert!(real.is_some_and(|c| c.embedding.is_some()), "the real-recording AAC case is missing");
}

/// Cut and overwritten copies of the files whose trimming is read outside symphonia (MP4 edit
/// lists, Opus headers, WebM DiscardPadding, Ogg pages): each decodes or is refused, and none
/// panics inside the decoder.
#[test]
fn damaged_lossy_files_are_refused_without_panicking() {
    use bindery::modality::audio::AudioError;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for file in [
        "cases/aac_48000_mono_long.m4a",
        "cases/aac_8000_stereo_short.m4a",
        "cases/opus_16000_stereo_long.opus",
        "cases/opus_webm_48000_stereo_long.webm",
        "cases/vorbis_8000_mono_short.ogg",
    ] {
        let bytes = LOSSY.read(file);
        for round in 0..40 {
            let mut b = bytes.clone();
            if round % 2 == 0 {
                b.truncate((next() as usize) % b.len());
            } else {
                // Mostly the header, where the edit list, OpusHead and page headers are.
                let span = if round % 4 == 1 { 1024.min(b.len()) } else { b.len() };
                for _ in 0..6 {
                    let i = (next() as usize) % span;
                    b[i] = next() as u8;
                }
            }
            if let Err(AudioError::DecoderPanic(msg)) = decode(&b, None, &AudioLimits::default()) {
                panic!("{file} round {round}: the decoder panicked: {msg}");
            }
        }
    }
}
