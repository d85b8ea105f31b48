//! LanguageBind's audio path served over gRPC matches the reference: the `languagebind-fixture`
//! audio tower's goldens (`tools/make_languagebind_fixtures.py`: the `languagebind` package's
//! `AudioTransform` after the ImageBind goldens' decoders, its random chunk pick pinned to the
//! first start of each third, through the PyTorch model) on every audio golden input; the
//! `fbank_chunks` front end alone equals the reference's tensor; bad values of its fields are
//! refused naming the field; segment mode runs the front end on each window, and a video's sound
//! track goes through it like a file.
//!
//! The model is served with only the towers a test needs (the manifest's header and its `[audio]`
//! and `[text]` sections; `[audio]` and `[video]` for the sound track), so these tests need
//! nothing of the other towers' preprocessing.

use std::path::Path;

use bindery::api::pb;
use bindery::modality::audio::AudioLimits;
use bindery::modality::audio::decode::decode;
use bindery::modality::audio::fbank_chunks::{FbankChunksPreprocess, FbankChunksPreprocessor};
use bindery::model::manifest::ModelDir;
use serde::Deserialize;

use crate::common::*;

const MODEL: &str = "languagebind-fixture";
const GOLDENS: Fixtures = Fixtures("families");

#[derive(Deserialize)]
struct Case {
    id: String,
    file: String,
    seconds: f64,
    embedding: Vec<f32>,
}

async fn embed(server: &mut TestServer, input: pb::Input) -> Vec<pb::Embedding> {
    let id = input.id.clone();
    let req = pb::EmbedRequest { model: MODEL.into(), ..request(vec![input]) };
    server.client.embed(req).await.unwrap_or_else(|s| panic!("{id}: {s}")).into_inner().embeddings
}

#[tokio::test]
async fn languagebind_audio_matches_the_reference_on_every_golden_input() {
    let dir = model_folder(MODEL, &manifest_sections(MODEL, &["audio", "text"]));
    let mut server = start_model_folder(&dir, MODEL).await;
    let cases: Vec<Case> = GOLDENS.json(&format!("{MODEL}/audio.json"));
    assert!(cases.len() >= 20, "expected the audio golden set, got {}", cases.len());
    // Longer than the 1036 frames of one chunk (10.4 s): the chunk pick is exercised.
    assert!(cases.iter().filter(|c| c.seconds > 10.4).count() >= 2, "golden inputs over one chunk");
    let (mut worst, mut below) = ((1.0f64, String::new()), Vec::new());
    for case in &cases {
        let got = embed(&mut server, audio(&case.id, FIXTURES.read(&case.file), "")).await;
        let c = cosine(&got[0].vector, &case.embedding);
        if c < 0.9999 {
            below.push(format!("{} ({}): cosine {c}", case.id, case.file));
        }
        if c < worst.0 {
            worst = (c, case.id.clone());
        }
    }
    eprintln!("languagebind-fixture audio: {} cases, worst cosine {:.9} ({})", cases.len(), worst.0, worst.1);
    assert!(below.is_empty(), "below 0.9999: {below:#?}");
}

/// The fixture's `[audio.preprocess]` as the front end reads it.
fn fixture_spec() -> FbankChunksPreprocess {
    let manifest: toml::Table = toml::from_str(&manifest_sections(MODEL, &["audio"])).expect("manifest");
    let mut preprocess = manifest["audio"]["preprocess"].as_table().expect("[audio.preprocess]").clone();
    assert_eq!(
        preprocess.remove("front_end").and_then(|v| v.as_str().map(str::to_owned)).as_deref(),
        Some("fbank_chunks")
    );
    toml::Value::Table(preprocess).try_into().expect("fbank_chunks section")
}

/// The front end alone against `AudioTransform`'s own tensor: a tiled input (0.05 s), a
/// resampled stereo one, and one over a chunk (21.3 s, three distinct chunks).
#[test]
fn fbank_chunks_matches_the_reference_tensor() {
    let cases: Vec<TensorGolden> = GOLDENS.json(&format!("{MODEL}/preprocess.json"));
    let cases: Vec<_> = cases.into_iter().filter(|c| c.front_end == "fbank_chunks").collect();
    assert!(cases.len() >= 3, "expected the audio tensor goldens, got {}", cases.len());
    let spec = fixture_spec();
    let pre = FbankChunksPreprocessor::new(&spec, AudioLimits::default()).expect("front end");
    let mut worst = 0f32;
    for case in &cases {
        assert_eq!(spec.item_shape(), case.shape, "{}", case.id);
        let decoded = decode(&FIXTURES.read(&case.file), None, &AudioLimits::default()).expect("decode");
        let mut out = vec![0f32; pre.tensor_len()];
        pre.preprocess_decoded_into(&decoded, &mut out).expect("features");
        let strided: Vec<f32> = out.iter().step_by(case.stride).copied().collect();
        assert_eq!(strided.len(), case.values.len(), "{}", case.id);
        // Normalised log-mel (log / 9.14): bins near the f32 epsilon floor move by up to ~2e-3
        // with the last bits of a resampled sample, as in the ImageBind audio goldens; a wrong
        // chunk or frame moves values by tenths.
        let d = max_abs_diff(&strided, &case.values);
        let mean =
            strided.iter().zip(&case.values).map(|(a, b)| (a - b).abs()).sum::<f32>() / strided.len() as f32;
        eprintln!("{}: max abs diff {d:.2e}, mean {mean:.2e}", case.id);
        assert!(d < 2.5e-3 && mean < 3e-5, "{}: max {d}, mean {mean}", case.id);
        worst = worst.max(d);
    }
    eprintln!("fbank_chunks vs AudioTransform: largest difference {worst:.2e}");
}

/// Segment mode runs the front end on each window as on a file of just its samples: the window
/// that covers the whole file is the whole file's golden, and a 2 s window is the embedding of a
/// WAV of its 32 000 samples.
#[tokio::test]
async fn languagebind_audio_segments_are_embedded_as_files_of_their_samples() {
    let dir = model_folder(MODEL, &manifest_sections(MODEL, &["audio", "text"]));
    let mut server = start_model_folder(&dir, MODEL).await;
    let cases: Vec<Case> = GOLDENS.json(&format!("{MODEL}/audio.json"));
    let case = cases.iter().find(|c| c.id == "wav16k_mono_s16_5s").expect("the 5 s golden");
    let bytes = FIXTURES.read(&case.file);
    let segmented = |id: &str, segment_seconds: f32| pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::Audio(pb::Audio {
            data: bytes.clone(),
            segment_seconds,
            ..Default::default()
        })),
    };
    let whole = embed(&mut server, segmented("whole", 5.0)).await;
    assert_eq!(whole.len(), 1);
    let c = cosine(&whole[0].vector, &case.embedding);
    assert!(c >= 0.9999, "one 5 s window of the 5 s file: cosine {c} with the golden");

    let windows = embed(&mut server, segmented("windows", 2.0)).await;
    let spans: Vec<(f64, f64)> = windows
        .iter()
        .map(|e| e.span.as_ref().map_or((-1.0, -1.0), |s| (s.start_seconds, s.end_seconds)))
        .collect();
    assert_eq!(spans, [(0.0, 2.0), (2.0, 4.0), (4.0, 5.0)]);
    let decoded = decode(&bytes, None, &AudioLimits::default()).expect("decode");
    assert_eq!(decoded.sample_rate, 16000);
    let first = embed(&mut server, audio("first", wav_s16(&decoded.channels[0][..32000], 16000), "")).await;
    let c = cosine(&windows[0].vector, &first[0].vector);
    assert!(c >= 0.999999, "window 0..2 s against a file of its samples: cosine {c}");
    assert!(cosine(&windows[0].vector, &windows[1].vector) < 0.9999, "the windows differ");
}

/// A video's sound track (`with_audio`) goes through the same front end: its embedding equals the
/// audio path's on the track extracted to WAV by the `ffmpeg` command line.
#[cfg(feature = "video")]
#[tokio::test]
async fn languagebind_sound_track_embeds_as_its_wav_extraction_does() {
    let dir = model_folder(MODEL, &manifest_sections(MODEL, &["audio", "video"]));
    let mut server = start_model_folder(&dir, MODEL).await;
    let video = Fixtures("video");
    let with_audio = pb::Input {
        id: "track".into(),
        payload: Some(pb::input::Payload::Video(pb::Video {
            data: video.read("tracks/aac.mp4"),
            with_audio: true,
            ..Default::default()
        })),
    };
    let mut req = pb::EmbedRequest {
        model: MODEL.into(),
        ..uncached(vec![with_audio, audio("wav", video.read("tracks/aac.wav"), "wav")])
    };
    req.normalize = Some(false);
    let reply = server.client.embed(req).await.expect("embed").into_inner();
    let e = &reply.embeddings;
    let kinds: Vec<(&str, i32)> = e.iter().map(|e| (e.id.as_str(), e.modality)).collect();
    let (video_m, audio_m) = (pb::Modality::Video as i32, pb::Modality::Audio as i32);
    assert_eq!(kinds, [("track", video_m), ("track", audio_m), ("wav", audio_m)]);
    let c = cosine(&e[1].vector, &e[2].vector);
    eprintln!("languagebind sound track of tracks/aac.mp4: cosine {c:.9} against tracks/aac.wav");
    assert!(c >= 0.9999, "cosine {c}");
}

/// A mono 16-bit PCM WAV of `samples` (values that came from 16-bit PCM, so exactly).
fn wav_s16(samples: &[f32], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &s in samples {
        out.extend_from_slice(&((s * 32768.0).round() as i16).to_le_bytes());
    }
    out
}

/// Each field of `[audio.preprocess]`, given a bad value, is refused naming it.
#[test]
fn bad_fbank_chunks_values_are_refused_naming_the_field() {
    let dir = repo().join("models").join(MODEL);
    let good = manifest_sections(MODEL, &["audio"]);
    ModelDir::parse(&dir, Path::new("model.toml"), &good).expect("the fixture's audio manifest is valid");
    let cases = [
        ("front_end = \"fbank_chunks\"", "front_end = \"fbank_chunk\"", "front_end"),
        ("chunk_pick = \"first\"", "chunk_pick = \"random\"", "chunk_pick"),
        ("chunks = 3", "chunks = 4", "chunks"),
        ("num_mel_bins = 112", "num_mel_bins = 0", "num_mel_bins"),
        ("target_length = 1036", "target_length = 0", "target_length"),
        ("sample_rate = 16000", "sample_rate = 10", "sample_rate"),
        ("frame_shift_ms = 10.0", "frame_shift_ms = 0.0", "frame_shift_ms"),
        ("frame_length_ms = 25.0", "frame_length_ms = -25.0", "frame_length_ms"),
        ("std = 9.1379948", "std = 0.0", "std"),
        ("chunk_pick = \"first\"", "chunk_pick = \"first\"\nclips_per_input = 3", "clips_per_input"),
    ];
    for (from, to, field) in cases {
        assert!(good.contains(from), "{from}");
        let bad = good.replacen(from, to, 1);
        let err = ModelDir::parse(&dir, Path::new("model.toml"), &bad).expect_err(to).to_string();
        assert!(err.contains(field) && err.contains("model.toml"), "{to}: {err}");
    }
}
