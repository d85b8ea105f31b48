//! Other model families served from their manifests alone: open_clip's tiny fixtures (ViT with
//! CLIP BPE, SigLIP with squash resizing and a SentencePiece tokenizer, a ModifiedResNet with
//! longest-side resizing and a grey fill) match open_clip's own preprocessing, tokenizers and
//! towers over gRPC, on every text and image golden input (`tools/make_family_fixtures.py`).

use bindery::api::pb;
use serde::Deserialize;
use tonic::Code;

use crate::common::*;

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

/// LanguageBind's language tower, through Hugging Face's slow `CLIPTokenizer` of transformers
/// 4.30.2 (ftfy, no HTML unescaping, `<|endoftext|>` padding): bindery's ids are the reference's
/// for every golden text, and the served embeddings match.
#[tokio::test]
async fn languagebind_text_matches_the_hf_clip_tokenizer_and_tower() {
    use bindery::modality::Modality;
    use bindery::modality::text::{TextPreprocess, TextPreprocessor};
    use bindery::model::manifest::ModelDir;
    use serde::Deserialize as _;

    let model = ModelDir::load(&repo().join("models/languagebind-fixture")).expect("manifest");
    let section = model.manifest.encoders[&Modality::Text].preprocess.clone();
    let spec = TextPreprocess::deserialize(toml::Value::Table(section)).expect("text section");
    let tokenizer = TextPreprocessor::new(&spec, &model.dir).expect("tokenizer");
    let cases: Vec<TextCase> = Fixtures("families").json("languagebind-fixture/text.json");
    let mut row = vec![0i64; spec.context_length];
    let mut compared = 0;
    for case in cases.iter().filter(|c| !c.text.trim().is_empty()) {
        if tokenizer.encode_into(&case.text, &mut row).is_err() {
            continue; // empty after cleanup: refused, checked over gRPC below
        }
        assert_eq!(row, case.tokens, "text case {} ({:?}): ids", case.id, case.text);
        compared += 1;
    }
    assert!(compared >= 40, "{compared} texts compared");
    let worst = worst_text_cosine("languagebind-fixture").await;
    eprintln!("languagebind-fixture text: {compared} id rows equal, worst cosine {worst:.7}");
}

/// A further architecture (ModifiedResNet) and other preprocessing values (longest-side
/// resize, bilinear, grey fill) are a manifest, not code.
#[tokio::test]
async fn a_resnet_with_longest_side_resize_is_served_from_its_manifest() {
    let text = worst_text_cosine("rn-fixture").await;
    let images = worst_image_cosine("rn-fixture").await;
    eprintln!("rn-fixture: worst cosine text {text:.7}, images {images:.7}");
}

/// The openclip-fixture's manifest with every value its family gives left out.
const OPENCLIP_MINIMAL: &str = r#"
family = "openclip"
licence = "MIT (open_clip code); seeded random weights"
embedding_dim = 16

[text]
onnx = "text.onnx"
input = "tokens"
output = "embedding"
logit_scale = 14.285714

[image]
onnx = "vision.onnx"
input = "pixels"
output = "embedding"

[image.preprocess]
size = 224
"#;

/// A copy of the openclip-fixture folder whose `model.toml` is `manifest`, named `name`.
fn openclip_variant(name: &str, manifest: &str) -> TempDir {
    let dir = TempDir::new("family-variant");
    let model = dir.path().join(name);
    std::fs::create_dir_all(&model).expect("create model folder");
    for entry in std::fs::read_dir(repo().join("models/openclip-fixture")).expect("fixture model") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, model.join(path.file_name().expect("file name"))).expect("copy");
    }
    std::fs::write(model.join("model.toml"), manifest).expect("write manifest");
    dir
}

#[tokio::test]
async fn a_manifest_gets_what_it_leaves_out_from_its_family() {
    let dir = openclip_variant("openclip-minimal", OPENCLIP_MINIMAL);
    let mut options = fixture_options();
    options.models_dir = dir.path().to_path_buf();
    options.default_model = Some("openclip-minimal".into());
    let mut server = start(options).await;
    let texts: Vec<TextCase> = Fixtures("families").json("openclip-fixture/text.json");
    let images: Vec<ImageCase> = Fixtures("families").json("openclip-fixture/images.json");
    let (t, i) = (&texts[1], &images[0]);
    let reply = server
        .client
        .embed(request(vec![text(&t.id, &t.text), image(&i.id, IMAGES.read(&i.file))]))
        .await
        .expect("embed")
        .into_inner();
    assert!(cosine(&reply.embeddings[0].vector, &t.embedding) >= 0.9999, "text from family defaults");
    assert!(cosine(&reply.embeddings[1].vector, &i.embedding) >= 0.9999, "image from family defaults");
}

#[test]
fn unknown_families_and_values_are_refused_naming_the_file_and_field() {
    use bindery::model::manifest::ModelDir;
    for (from, to, field) in [
        ("family = \"openclip\"", "family = \"openclap\"", "family"),
        ("size = 224", "size = 224\nresize_mode = \"crop\"", "resize_mode"),
        ("size = 224", "size = 224\ninterpolation = \"lanczos\"", "interpolation"),
        ("logit_scale = 14.285714", "logit_scale = 14.285714\n[text.preprocess]\nclean = \"upper\"", "clean"),
        (
            "logit_scale = 14.285714",
            "logit_scale = 14.285714\n[text.preprocess]\ntokenizer_kind = \"wordpiece\"",
            "tokenizer_kind",
        ),
    ] {
        let manifest = OPENCLIP_MINIMAL.replacen(from, to, 1);
        assert_ne!(manifest, OPENCLIP_MINIMAL, "{from:?} is in the manifest");
        let dir = openclip_variant("refused", &manifest);
        let err = ModelDir::load(&dir.path().join("refused")).expect_err(field).to_string();
        assert!(err.contains("model.toml") && err.contains(field), "{field}: {err}");
    }
}

#[tokio::test]
async fn list_models_shows_family_modalities_dimension_and_licence() {
    let mut server = start_fixture().await;
    let reply = server.client.list_models(pb::ListModelsRequest {}).await.expect("list").into_inner();
    for (name, family) in
        [("openclip-fixture", "openclip"), ("siglip-fixture", "siglip"), ("rn-fixture", "openclip")]
    {
        let model = reply.models.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("{name} listed"));
        assert_eq!(model.family, family);
        assert_eq!(model.dimension, 16);
        assert!(model.licence.contains("MIT"), "{name}: licence {:?}", model.licence);
        let mut modalities: Vec<i32> = model.modalities.iter().map(|m| m.modality).collect();
        modalities.sort_unstable();
        assert_eq!(modalities, [pb::Modality::Text as i32, pb::Modality::Image as i32]);
    }
}

#[derive(Deserialize)]
struct ZeroShot {
    image: String,
    labels: Vec<String>,
    cosines: Vec<f32>,
}

/// Classify with the `imagenet` template set gives open_clip's own zero-shot classifier
/// (`build_zero_shot_classifier` over `OPENAI_IMAGENET_TEMPLATES`); an unknown set is refused.
#[tokio::test]
async fn classify_with_the_imagenet_template_set_matches_open_clips_zero_shot_classifier() {
    let mut server = start_fixture().await;
    let golden: Vec<ZeroShot> = Fixtures("families").json("openclip-fixture/zero_shot.json");
    let golden = &golden[0];
    let call = |set: &str| pb::ClassifyRequest {
        model: "openclip-fixture".into(),
        inputs: vec![image("probe", IMAGES.read(&golden.image))],
        labels: golden.labels.clone(),
        template_set: set.into(),
        ..Default::default()
    };
    let reply = server.client.classify(call("imagenet")).await.expect("classify").into_inner();
    let cosines = &reply.results[0].cosines;
    let worst = max_abs_diff(cosines, &golden.cosines);
    assert!(worst < 1e-4, "cosines {cosines:?}, open_clip {:?}", golden.cosines);
    // The set is what made the difference: the label alone gives other cosines.
    let plain = server.client.classify(call("")).await.expect("classify").into_inner();
    assert!(max_abs_diff(&plain.results[0].cosines, &golden.cosines) > 1e-3);
    let refused = server.client.classify(call("imagenet-21k")).await;
    assert_refused(refused, Code::InvalidArgument, &["imagenet-21k", "imagenet", "modelnet40"]);
}

/// `modelnet40` is ULIP's ModelNet40 prompt list (`tools/make_template_sets.py --check` compares
/// the data file with ULIP's `templates.json`): naming it equals sending its 64 templates.
#[tokio::test]
async fn the_modelnet40_template_set_is_ulips_prompt_list() {
    let mut server = start_fixture().await;
    let templates: Vec<String> =
        include_str!("../../src/service/template_sets/modelnet40.txt").lines().map(String::from).collect();
    assert_eq!(templates.len(), 64);
    let cloud = pb::Input {
        id: "cloud".into(),
        payload: Some(pb::input::Payload::PointCloud(pb::PointCloud {
            xyz: (0..3000).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect(),
            ..Default::default()
        })),
    };
    let call = |set: &str, templates: Vec<String>| pb::ClassifyRequest {
        inputs: vec![cloud.clone()],
        labels: ["airplane", "chair", "lamp"].map(String::from).to_vec(),
        template_set: set.into(),
        templates,
        ..Default::default()
    };
    let named = server.client.classify(call("modelnet40", vec![])).await.expect("named").into_inner();
    let explicit = server.client.classify(call("", templates)).await.expect("explicit").into_inner();
    let worst = max_abs_diff(&named.results[0].cosines, &explicit.results[0].cosines);
    assert!(worst < 1e-6, "named {:?}, explicit {:?}", named.results[0].cosines, explicit.results[0].cosines);
    let plain = server.client.classify(call("", vec![])).await.expect("plain").into_inner();
    assert!(max_abs_diff(&plain.results[0].cosines, &named.results[0].cosines) > 1e-4);
}
