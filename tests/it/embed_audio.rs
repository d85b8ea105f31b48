//! Audio embeddings served over gRPC match the reference ImageBind pipeline
//! (goldens from `tools/make_audio_fixtures.py`: reference preprocessing + the PyTorch model).

use bindery::api::pb;
use serde::Deserialize;
use tonic::Code;

use crate::common::*;

#[derive(Deserialize)]
struct Cases {
    cases: Vec<AudioCase>,
}

#[derive(Deserialize)]
struct AudioCase {
    id: String,
    file: String,
    lossy: bool,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct BadCases {
    entries: Vec<BadCase>,
}

#[derive(Deserialize)]
struct BadCase {
    id: String,
    file: String,
    why: String,
}

const AUDIO: Fixtures = Fixtures("audio");

#[tokio::test]
async fn every_audio_golden_matches_the_reference() {
    let mut server = start_fixture().await;
    let cases: Cases = AUDIO.json("cases.json");
    assert!(cases.cases.len() >= 15, "expected a real golden set");
    for case in &cases.cases {
        // No format hint: the content decides (the fixtures include a wrong extension and none).
        let reply = server
            .client
            .embed(request(vec![audio(&case.id, AUDIO.read(&case.file), "")]))
            .await
            .unwrap_or_else(|s| panic!("case {}: {s}", case.id))
            .into_inner();
        let e = &reply.embeddings[0];
        assert_eq!(e.modality, pb::Modality::Audio as i32);
        let c = cosine(&e.vector, &case.embedding);
        let floor = if case.lossy { 0.999 } else { 0.9999 };
        assert!(c >= floor, "audio case {} ({}): cosine {c} < {floor}", case.id, case.file);
    }
}

#[tokio::test]
async fn every_bad_audio_file_is_invalid_argument_and_the_server_keeps_serving() {
    let mut server = start_fixture().await;
    let bad: BadCases = AUDIO.json("bad.json");
    assert!(bad.entries.len() >= 6);
    for case in &bad.entries {
        let status = server
            .client
            .embed(request(vec![audio(&case.id, AUDIO.read(&case.file), "wav")]))
            .await
            .expect_err(&format!("{} ({}) must be refused", case.id, case.why));
        assert_refused(status, Code::InvalidArgument, &[&case.id, "audio"]);
    }
    let good: Cases = AUDIO.json("cases.json");
    let first = &good.cases[0];
    let reply = server.client.embed(request(vec![audio("after", AUDIO.read(&first.file), "")])).await;
    assert!(reply.is_ok(), "server still serves after bad audio");
}

#[tokio::test]
async fn audio_limits_are_enforced_with_a_precise_error() {
    let mut options = fixture_options();
    options.limits.inputs.update(|l: &mut bindery::modality::audio::AudioLimits| l.max_duration_secs = 3.0);
    options.limits.inputs.update(|l: &mut bindery::modality::audio::AudioLimits| l.max_bytes = 400_000);
    let mut server = start(options).await;
    let cases: Cases = AUDIO.json("cases.json");
    let long = cases.cases.iter().find(|c| c.id == "flac8k_mono_10min").expect("10 min case");
    let status = server
        .client
        .embed(request(vec![audio("long", AUDIO.read(&long.file), "")]))
        .await
        .expect_err("too long");
    assert_eq!(status.code(), Code::InvalidArgument);
    // The declared length (10 min) is over the limit: refused before decoding.
    assert!(
        status
            .message()
            .starts_with("input \"long\" (audio): audio is longer than the limit of 3 s (at least 600"),
        "{}",
        status.message()
    );

    let big = vec![0u8; 400_001];
    let status = server.client.embed(request(vec![audio("big", big, "wav")])).await.expect_err("too big");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "input \"big\" (audio): audio is 400001 bytes, more than the limit of 400000 bytes"
    );
}
