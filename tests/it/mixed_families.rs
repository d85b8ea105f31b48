//! Families side by side in one server: ImageBind (32-d, eight modalities), OpenCLIP and SigLIP
//! (16-d, text and image), CLAP (16-d, text and audio) and LanguageBind (16-d, text, image, video,
//! audio, depth and thermal) load from one models folder, each
//! embeds what it binds, `ListModels` says which modalities and which dimension each has, and a
//! raw vector of another dimension than the model's space is refused by Similarity, Collections
//! upsert and Search, naming the dimensions.

use std::collections::HashMap;

use bindery::api::pb;
use tonic::Code;

use crate::common::*;

/// (model, family, dimension, modalities it binds).
const MODELS: [(&str, &str, u32, &[pb::Modality]); 5] = [
    (
        "imagebind-fixture",
        "imagebind",
        32,
        &[
            pb::Modality::Text,
            pb::Modality::Image,
            pb::Modality::Audio,
            pb::Modality::Depth,
            pb::Modality::Thermal,
            pb::Modality::Imu,
            pb::Modality::PointCloud,
            pb::Modality::Video,
        ],
    ),
    ("openclip-fixture", "openclip", 16, &[pb::Modality::Text, pb::Modality::Image]),
    ("siglip-fixture", "siglip", 16, &[pb::Modality::Text, pb::Modality::Image]),
    ("clap-fixture", "clap", 16, &[pb::Modality::Text, pb::Modality::Audio]),
    (
        "languagebind-fixture",
        "languagebind",
        16,
        &[
            pb::Modality::Text,
            pb::Modality::Image,
            pb::Modality::Video,
            pb::Modality::Audio,
            pb::Modality::Depth,
            pb::Modality::Thermal,
        ],
    ),
];

#[tokio::test]
async fn list_models_shows_each_familys_modalities_and_dimension() {
    let mut server = start_fixture().await;
    let reply = server.client.list_models(pb::ListModelsRequest {}).await.expect("list").into_inner();
    for (name, family, dim, modalities) in MODELS {
        let model = reply.models.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("{name} listed"));
        assert_eq!((model.family.as_str(), model.dimension), (family, dim), "{name}");
        let mut got: Vec<i32> = model.modalities.iter().map(|m| m.modality).collect();
        let mut want: Vec<i32> = modalities.iter().map(|&m| m as i32).collect();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{name}: modalities");
    }
}

#[tokio::test]
async fn each_model_embeds_what_it_binds_in_its_own_space() {
    let mut server = start_fixture().await;
    let wav = FIXTURES.read("audio/cases/wav16k_mono_s16_5s.wav");
    let png = FIXTURES.read("images/png_rgb.png");
    let calls: [(&str, pb::Input, usize); 8] = [
        ("imagebind-fixture", audio("a", wav.clone(), "wav"), 32),
        ("clap-fixture", audio("a", wav.clone(), "wav"), 16),
        ("languagebind-fixture", audio("a", wav.clone(), "wav"), 16),
        ("languagebind-fixture", image("i", png.clone()), 16),
        ("languagebind-fixture", text("t", "the sound of rain"), 16),
        ("clap-fixture", text("t", "the sound of rain"), 16),
        ("openclip-fixture", image("i", png.clone()), 16),
        ("siglip-fixture", text("t", "a photo of rain"), 16),
    ];
    for (model, input, dim) in calls {
        let req = pb::EmbedRequest { model: model.into(), ..request(vec![input]) };
        let reply = server.client.embed(req).await.unwrap_or_else(|s| panic!("{model}: {s}")).into_inner();
        assert_eq!(reply.embeddings[0].vector.len(), dim, "{model}");
    }
    // A modality the model does not bind is refused, naming it.
    let req = pb::EmbedRequest { model: "clap-fixture".into(), ..request(vec![image("i", png)]) };
    assert_refused(server.client.embed(req).await, Code::InvalidArgument, &["clap-fixture", "image"]);
}

fn vector(values: Vec<f32>) -> pb::SimilarityItem {
    pb::SimilarityItem { item: Some(pb::similarity_item::Item::Vector(pb::Vector { values })) }
}

#[tokio::test]
async fn vectors_of_another_models_dimension_are_refused_everywhere() {
    let mut server = start_fixture().await;
    let mut collections = collections_client(&server);
    // Each model with a vector of another model's space.
    for (model, dim, wrong) in [
        ("clap-fixture", 16, 32),
        ("imagebind-fixture", 32, 16),
        ("openclip-fixture", 16, 32),
        ("languagebind-fixture", 16, 32),
    ] {
        let expected = format!("{dim}");
        let req = pb::SimilarityRequest {
            model: model.into(),
            queries: vec![vector(vec![1.0; dim])],
            candidates: vec![vector(vec![1.0; wrong])],
            softmax: false,
            logit_scale: None,
        };
        let status =
            assert_refused(server.client.similarity(req).await, Code::InvalidArgument, &["dimension"]);
        assert!(status.message().contains(&expected), "{model}: {}", status.message());

        let name = format!("space-{model}");
        let create =
            pb::CreateCollectionRequest { name: name.clone(), model: model.into(), ..Default::default() };
        collections.create_collection(create).await.unwrap_or_else(|s| panic!("{model}: {s}"));
        let item = pb::Item {
            id: "v".into(),
            source: Some(pb::item::Source::Vector(pb::Vector { values: vec![0.5; wrong] })),
            metadata: HashMap::new(),
            modality: 0,
        };
        let upsert = pb::UpsertRequest { collection: name.clone(), items: vec![item] };
        let status = assert_refused(collections.upsert(upsert).await, Code::InvalidArgument, &["dimension"]);
        assert!(status.message().contains(&expected), "{model} upsert: {}", status.message());
        let search = pb::SearchRequest {
            collection: name.clone(),
            query: Some(pb::search_request::Query::Vector(pb::Vector { values: vec![0.5; wrong] })),
            top_k: 1,
            ..Default::default()
        };
        let status = assert_refused(collections.search(search).await, Code::InvalidArgument, &["dimension"]);
        assert!(status.message().contains(&expected), "{model} search: {}", status.message());
    }
}
