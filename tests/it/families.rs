//! Other model families served from their manifests alone: open_clip's tiny fixtures (ViT with
//! CLIP BPE, SigLIP with squash resizing and a SentencePiece tokenizer, a ModifiedResNet with
//! longest-side resizing and a grey fill) match open_clip's own preprocessing, tokenizers and
//! towers over gRPC, on every text and image golden input (`tools/make_family_fixtures.py`).

use bindery::api::pb;
use serde::Deserialize;
use tonic::Code;

use crate::common::*;

#[derive(Deserialize)]
struct TextCase {
    id: String,
    text: String,
    tokens: Vec<i64>,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct ImageCase {
    id: String,
    file: String,
    embedding: Vec<f32>,
}

const IMAGES: Fixtures = Fixtures("images");

/// The worst cosine of every text golden of `model`; texts the reference tokenizes like the
/// empty string (nothing left after cleanup) must be refused instead.
async fn worst_text_cosine(model: &str) -> f64 {
    let mut server = start_fixture().await;
    let cases: Vec<TextCase> = Fixtures("families").json(&format!("{model}/text.json"));
    assert!(cases.len() >= 20, "{model}: expected a real golden set, got {}", cases.len());
    let empty = cases.iter().find(|c| c.text.is_empty()).expect("the empty text case").tokens.clone();
    let (mut worst, mut compared, mut refused) = (1.0f64, 0, 0);
    for case in &cases {
        let req = pb::EmbedRequest { model: model.into(), ..request(vec![text(&case.id, &case.text)]) };
        let reply = server.client.embed(req).await;
        if case.tokens == empty {
            assert_refused(reply.expect_err("empty after cleanup"), Code::InvalidArgument, &[&case.id]);
            refused += 1;
            continue;
        }
        let reply = reply.unwrap_or_else(|s| panic!("{model} case {}: {s}", case.id)).into_inner();
        let c = cosine(&reply.embeddings[0].vector, &case.embedding);
        assert!(c >= 0.9999, "{model} text case {} ({:?}): cosine {c}", case.id, case.text);
        worst = worst.min(c);
        compared += 1;
    }
    assert!(compared >= 30 && refused >= 2, "{model}: {compared} compared, {refused} refused");
    worst
}

/// The worst cosine of every image golden of `model`.
async fn worst_image_cosine(model: &str) -> f64 {
    let mut server = start_fixture().await;
    let cases: Vec<ImageCase> = Fixtures("families").json(&format!("{model}/images.json"));
    assert!(cases.len() >= 20, "{model}: expected a real golden set, got {}", cases.len());
    let mut worst = 1.0f64;
    for case in &cases {
        let req = pb::EmbedRequest {
            model: model.into(),
            ..request(vec![image(&case.id, IMAGES.read(&case.file))])
        };
        let reply = server
            .client
            .embed(req)
            .await
            .unwrap_or_else(|s| panic!("{model} case {} ({}): {s}", case.id, case.file))
            .into_inner();
        let c = cosine(&reply.embeddings[0].vector, &case.embedding);
        assert!(c >= 0.9999, "{model} image case {} ({}): cosine {c}", case.id, case.file);
        worst = worst.min(c);
    }
    worst
}

#[tokio::test]
async fn openclip_text_matches_open_clips_tokenizer_and_tower() {
    let worst = worst_text_cosine("openclip-fixture").await;
    eprintln!("openclip-fixture text: worst cosine {worst:.7}");
}

#[tokio::test]
async fn openclip_images_match_open_clips_preprocess_and_tower() {
    let worst = worst_image_cosine("openclip-fixture").await;
    eprintln!("openclip-fixture images: worst cosine {worst:.7}");
}

#[tokio::test]
async fn siglip_text_matches_open_clips_hf_tokenizer_and_tower() {
    let worst = worst_text_cosine("siglip-fixture").await;
    eprintln!("siglip-fixture text: worst cosine {worst:.7}");
}

#[tokio::test]
async fn siglip_squashed_images_match_open_clips_preprocess_and_tower() {
    let worst = worst_image_cosine("siglip-fixture").await;
    eprintln!("siglip-fixture images: worst cosine {worst:.7}");
}

/// A further architecture (ModifiedResNet) and other preprocessing values (longest-side
/// resize, bilinear, grey fill) are a manifest, not code.
#[tokio::test]
async fn a_resnet_with_longest_side_resize_is_served_from_its_manifest() {
    let text = worst_text_cosine("rn-fixture").await;
    let images = worst_image_cosine("rn-fixture").await;
    eprintln!("rn-fixture: worst cosine text {text:.7}, images {images:.7}");
}
