//! CLAP served from its manifest: the tiny fused `clap-fixture` matches transformers'
//! `ClapFeatureExtractor` (after torchaudio's resampling to 48 kHz), RoBERTa tokenizer and
//! `ClapModel` towers over gRPC, on every audio and text golden input
//! (`tools/make_clap_fixtures.py`, the reference's random choices pinned to bindery's rule); the
//! front end alone matches the extractor in both truncation modes; bad values of the new
//! manifest fields are refused naming the field.

use std::path::Path;

use bindery::api::pb;
use bindery::modality::audio::AudioLimits;
use bindery::modality::audio::decode::decode;
use bindery::modality::audio::htsat_mel::{HtsatMelPreprocess, HtsatPreprocessor};
use bindery::model::manifest::ModelDir;
use serde::Deserialize;
use tonic::Code;

use crate::common::*;

const MODEL: &str = "clap-fixture";
const GOLDENS: Fixtures = Fixtures("families");

#[derive(Deserialize)]
struct AudioCase {
    id: String,
    file: String,
    seconds: f64,
    is_longer: bool,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct MelCase {
    id: String,
    file: String,
    truncation: String,
    shape: Vec<usize>,
    is_longer: bool,
    stride: usize,
    values: Vec<f32>,
}

#[tokio::test]
async fn clap_audio_matches_the_feature_extractor_and_tower_on_every_golden_input() {
    let mut server = start_fixture().await;
    let cases: Vec<AudioCase> = GOLDENS.json(&format!("{MODEL}/audio.json"));
    assert!(cases.len() >= 60, "expected the audio and lossy golden sets, got {}", cases.len());
    // Longer than the 10 s window: 10 min (nearly silent), 21.3 s and 10.004 s (by less than a hop).
    assert!(cases.iter().filter(|c| c.seconds > 10.0).count() >= 3, "golden inputs over the window");
    // Alone in its batch, every input is the one the reference marks longer under fusion.
    assert!(cases.iter().all(|c| c.is_longer));
    let mut worst = (1.0f64, String::new());
    let mut below = Vec::new();
    for case in &cases {
        let req = pb::EmbedRequest {
            model: MODEL.into(),
            ..request(vec![audio(&case.id, FIXTURES.read(&case.file), "")])
        };
        let reply = server
            .client
            .embed(req)
            .await
            .unwrap_or_else(|s| panic!("case {} ({}): {s}", case.id, case.file))
            .into_inner();
        let c = cosine(&reply.embeddings[0].vector, &case.embedding);
        // Every format, Opus included: the reference decodes Opus with FFmpeg's libopus decoder,
        // whose 16-bit output bindery reproduces.
        let floor = 0.9999;
        if c < floor {
            below.push(format!("{} ({}): cosine {c}", case.id, case.file));
        }
        if c < worst.0 {
            worst = (c, case.id.clone());
        }
    }
    eprintln!("clap-fixture audio: {} cases, worst cosine {:.7} ({})", cases.len(), worst.0, worst.1);
    assert!(below.is_empty(), "below the floor: {below:#?}");
}

#[tokio::test]
async fn clap_text_matches_the_roberta_tokenizer_and_tower() {
    let mut server = start_fixture().await;
    let cases: Vec<TextCase> = GOLDENS.json(&format!("{MODEL}/text.json"));
    assert!(cases.len() >= 30, "expected the text golden set, got {}", cases.len());
    let (mut worst, mut compared) = (1.0f64, 0);
    for case in &cases {
        let req = pb::EmbedRequest { model: MODEL.into(), ..request(vec![text(&case.id, &case.text)]) };
        let reply = server.client.embed(req).await;
        if case.text.is_empty() {
            // The reference encodes "" as <s></s>; bindery refuses empty text for every model.
            assert_refused(reply.expect_err("empty text"), Code::InvalidArgument, &[&case.id]);
            continue;
        }
        let reply = reply.unwrap_or_else(|s| panic!("text case {}: {s}", case.id)).into_inner();
        let c = cosine(&reply.embeddings[0].vector, &case.embedding);
        assert!(c >= 0.9999, "text case {} ({:?}): cosine {c}", case.id, case.text);
        worst = worst.min(c);
        compared += 1;
    }
    assert!(compared + 1 >= cases.len(), "{compared} of {} compared", cases.len());
    eprintln!("clap-fixture text: worst cosine {worst:.7}");
}

/// The HTSAT front end embeds whole files: segment mode is refused, naming the input, rather
/// than answered with one whole-file embedding.
#[tokio::test]
async fn clap_refuses_segment_mode_naming_the_input() {
    let mut server = start_fixture().await;
    let mut input = audio("windows", FIXTURES.read("audio/cases/wav16k_mono_s16_5s.wav"), "");
    if let Some(pb::input::Payload::Audio(a)) = input.payload.as_mut() {
        a.segment_seconds = 2.0;
    }
    let req = pb::EmbedRequest { model: MODEL.into(), ..request(vec![input]) };
    let refusal = server.client.embed(req).await.expect_err("segment mode on htsat_mel");
    assert_refused(refusal, Code::InvalidArgument, &["windows", "whole files"]);
}

/// The fixture's audio section with `truncation` (and the filters that go with it).
fn htsat_spec(truncation: &str) -> HtsatMelPreprocess {
    let (scale, norm) = if truncation == "fusion" { ("htk", "none") } else { ("slaney", "slaney") };
    let text = format!(
        "sample_rate = 48000\nn_fft = 1024\nhop_length = 480\nnum_mel_bins = 64\nf_min = 0.0\n\
         f_max = 14000.0\nmel_scale = \"{scale}\"\nmel_norm = \"{norm}\"\nmax_length_s = 10\n\
         truncation = \"{truncation}\"\npadding = \"repeatpad\"\nis_longer_input = \"is_longer\"\n"
    );
    toml::from_str(&text).expect("spec")
}

/// The front end alone against the feature extractor's own output, both truncation modes, on
/// inputs that reach each branch (longer than the window, shorter, a few milliseconds).
#[test]
fn htsat_mel_matches_the_feature_extractor_in_both_truncation_modes() {
    let cases: Vec<MelCase> = GOLDENS.json(&format!("{MODEL}/mel.json"));
    assert!(
        cases.iter().any(|c| c.truncation == "rand_trunc") && cases.iter().any(|c| c.truncation == "fusion")
    );
    let mut worst = 0f32;
    for case in &cases {
        let spec = htsat_spec(&case.truncation);
        assert_eq!(spec.item_shape(), case.shape, "{}", case.id);
        let pre = HtsatPreprocessor::new(&spec, AudioLimits::default()).expect("front end");
        let decoded = decode(&FIXTURES.read(&case.file), None, &AudioLimits::default()).expect("decode");
        let mut out = vec![0f32; case.shape.iter().product()];
        let longer = pre.preprocess_decoded_into(&decoded, &mut out).expect("features");
        assert_eq!(longer, case.is_longer, "{}: is_longer", case.id);
        let strided: Vec<f32> = out.iter().step_by(case.stride).copied().collect();
        assert_eq!(strided.len(), case.values.len(), "{}", case.id);
        // dB values: a resampled sample differing in its last bits moves a quiet bin by far less.
        // Within 40 dB of the input's peak the log-mel must agree to 0.01 dB. Further down lie
        // the bins that hold only resampling leakage and rounding noise (above a low-rate
        // source's Nyquist, or 100 dB under a loud sweep), where the last bits of a resampled
        // sample move the log by up to a few tenths of a dB; a wrong filter, scale or chunk
        // moves loud bins by decibels.
        let peak = case.values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (mut loud, mut quiet) = (0f32, 0f32);
        for (got, want) in strided.iter().zip(&case.values) {
            let d = (got - want).abs();
            if *want > peak - 40.0 { loud = loud.max(d) } else { quiet = quiet.max(d) }
        }
        eprintln!("{}: {loud:.2e} dB within 40 dB of the peak, {quiet:.2e} dB below", case.id);
        assert!(loud < 1e-2 && quiet < 0.25, "{}: log-mel differs by {loud} / {quiet} dB", case.id);
        worst = worst.max(loud);
    }
    eprintln!(
        "htsat_mel vs ClapFeatureExtractor: largest difference within 40 dB of the peak {worst:.2e} dB"
    );
}

/// Each new field of the CLAP manifest, given a bad value, is refused naming it.
#[test]
fn bad_clap_manifest_values_are_refused_naming_the_field() {
    let dir = repo().join("models").join(MODEL);
    let good = std::fs::read_to_string(dir.join("model.toml")).expect("manifest");
    ModelDir::parse(&dir, Path::new("model.toml"), &good).expect("the fixture's manifest is valid");
    let cases = [
        ("front_end = \"htsat_mel\"", "front_end = \"htsat\"", "front_end"),
        ("truncation = \"fusion\"", "truncation = \"random\"", "truncation"),
        ("padding = \"repeatpad\"", "padding = \"zeros\"", "padding"),
        ("mel_scale = \"htk\"", "mel_scale = \"kaldi\"", "mel_scale"),
        ("mel_norm = \"none\"", "mel_norm = \"area\"", "mel_norm"),
        ("n_fft = 1024", "n_fft = 1023", "n_fft"),
        ("hop_length = 480", "hop_length = 0", "hop_length"),
        ("num_mel_bins = 64", "num_mel_bins = 0", "num_mel_bins"),
        ("f_max = 14000.0", "f_max = 30000.0", "f_max"),
        ("f_min = 0.0", "f_min = -1.0", "f_min"),
        ("max_length_s = 10", "max_length_s = 0", "max_length_s"),
        ("sample_rate = 48000", "sample_rate = 10", "sample_rate"),
        ("is_longer_input = \"is_longer\"", "is_longer_input = \"input_features\"", "is_longer_input"),
        ("is_longer_input = \"is_longer\"", "is_longer_input = \"is_longer\"\ntop_db = -3.0", "top_db"),
        ("is_longer_input = \"is_longer\"", "is_longer_input = \"is_longer\"\nhop = 480", "hop"),
        ("clean = \"none\"", "clean = \"nothing\"", "clean"),
    ];
    for (from, to, field) in cases {
        assert!(good.contains(from), "{from}");
        let bad = good.replacen(from, to, 1);
        let err = ModelDir::parse(&dir, Path::new("model.toml"), &bad).expect_err(to).to_string();
        assert!(err.contains(field) && err.contains("model.toml"), "{to}: {err}");
    }
}
