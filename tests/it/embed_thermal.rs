//! Thermal embeddings served over gRPC match the reference (goldens from
//! `tools/make_sensor_fixtures.py`: Weaviate's multi2vec-bind recipe in `sensors.py` and the
//! PyTorch fixture model), and thermal inputs work wherever a modality works: Classify against
//! text, Similarity, collections, the cache, and precise refusals.

use std::collections::HashMap;

use bindery::api::pb;
use serde::Deserialize;
use tonic::Code;

use crate::common::*;

const THERMAL: Fixtures = Fixtures("thermal");

#[derive(Deserialize)]
struct ThermalCase {
    id: String,
    file: String,
    sixteen_bit: String,
    embedding: Vec<f32>,
}

fn thermal(id: &str, data: Vec<u8>) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::ThermalImage(pb::Thermal { data, format_hint: String::new() })),
    }
}

fn cases(mapping: &str) -> Vec<ThermalCase> {
    let all: Vec<ThermalCase> = THERMAL.json("cases.json");
    all.into_iter().filter(|c| c.sixteen_bit == mapping).collect()
}

async fn assert_goldens(server: &mut TestServer, cases: &[ThermalCase]) {
    let inputs = cases.iter().map(|c| thermal(&c.id, THERMAL.read(&c.file))).collect();
    let reply = server.client.embed(uncached(inputs)).await.expect("embed").into_inner();
    let goldens: Vec<_> = cases.iter().map(|c| (c.id.as_str(), c.file.as_str(), &c.embedding[..])).collect();
    assert_matches_goldens(&reply.embeddings, &goldens, pb::Modality::Thermal);
}

#[tokio::test]
async fn every_thermal_golden_matches_the_reference() {
    let cases = cases("full_range");
    assert!(cases.len() >= 8, "8-bit, colour, palette, 1xN and 16-bit PNG/TIFF cases");
    let mut server = start_fixture().await;
    assert_goldens(&mut server, &cases).await;
}

#[tokio::test]
async fn min_max_sixteen_bit_mapping_matches_the_reference() {
    let cases = cases("min_max");
    assert!(cases.len() >= 3, "16-bit PNG, TIFF and a constant image");
    let (options, _models) =
        fixture_variant(&[("sixteen_bit = \"full_range\"", "sixteen_bit = \"min_max\"")]);
    let mut server = start(options).await;
    assert_goldens(&mut server, &cases).await;
}

#[tokio::test]
async fn thermal_classifies_against_text_like_the_reference() {
    // Labels are reference text goldens with the template "{}", so each label's embedding is
    // that golden; the expected probabilities come from reference embeddings alone.
    let texts: Vec<TextCase> = Fixtures("text").json("cases.json");
    let labels: Vec<&TextCase> = ["plain_short", "plain_sentence", "plain_pangram"]
        .iter()
        .map(|id| texts.iter().find(|t| t.id == *id).unwrap())
        .collect();
    let case = cases("full_range").into_iter().find(|c| c.id == "gray8_png").unwrap();
    let mut server = start_fixture().await;
    let reply = server
        .client
        .classify(pb::ClassifyRequest {
            model: String::new(),
            inputs: vec![thermal("frame", THERMAL.read(&case.file))],
            labels: labels.iter().map(|t| t.text.clone()).collect(),
            templates: vec!["{}".into()],
            top_k: 2,
            logit_scale: None,
            template_set: String::new(),
        })
        .await
        .expect("classify")
        .into_inner();
    let result = &reply.results[0];
    // Thermal's scale (10) times text's (1 / 0.07).
    assert!((result.logit_scale - 10.0 * 14.285714).abs() < 1e-2, "scale {}", result.logit_scale);
    let label_vectors: Vec<Vec<f32>> = labels.iter().map(|t| t.embedding.clone()).collect();
    assert_softmax_of_scaled_cosines(result, &case.embedding, &label_vectors);
    assert_eq!(result.top.len(), 2);
}

#[tokio::test]
async fn thermal_works_in_similarity_and_collections() {
    let mut server = start_fixture().await;
    let frame = thermal("frame", THERMAL.read("gray8_640x512.png"));
    let other = thermal("other", THERMAL.read("gray16_640x512.png"));
    let words = text("words", "a warm engine at night");
    let embedded = server
        .client
        .embed(request(vec![frame.clone(), other.clone(), words.clone()]))
        .await
        .expect("embed")
        .into_inner()
        .embeddings;

    let item = |input: pb::Input| pb::SimilarityItem { item: Some(pb::similarity_item::Item::Input(input)) };
    let reply = server
        .client
        .similarity(pb::SimilarityRequest {
            queries: vec![item(frame.clone())],
            candidates: vec![item(other.clone()), item(words.clone())],
            ..Default::default()
        })
        .await
        .expect("similarity")
        .into_inner();
    for (j, want) in
        [dot(&embedded[0].vector, &embedded[1].vector), dot(&embedded[0].vector, &embedded[2].vector)]
            .into_iter()
            .enumerate()
    {
        assert!(
            (f64::from(reply.cosine[j]) - want).abs() < 1e-5,
            "cosine[{j}] {} vs {want}",
            reply.cosine[j]
        );
    }

    let mut c = collections_client(&server);
    c.create_collection(pb::CreateCollectionRequest { name: "heat".into(), ..Default::default() })
        .await
        .expect("create");
    let items = [frame.clone(), other, words]
        .into_iter()
        .map(|input| pb::Item {
            id: input.id.clone(),
            source: Some(pb::item::Source::Input(input)),
            metadata: HashMap::new(),
            modality: 0,
        })
        .collect();
    c.upsert(pb::UpsertRequest { collection: "heat".into(), items }).await.expect("upsert");
    let hits = c
        .search(pb::SearchRequest {
            collection: "heat".into(),
            query: Some(pb::search_request::Query::Input(frame)),
            top_k: 3,
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner()
        .hits;
    assert_eq!(hits[0].id, "frame");
    assert_eq!(hits[0].modality, pb::Modality::Thermal as i32);
    assert!((hits[0].score - 1.0).abs() < 1e-5);
}

#[tokio::test]
async fn repeated_thermal_inputs_come_from_the_cache() {
    let server = start_fixture().await;
    let mut client = server.client.clone();
    let frame = || thermal("frame", THERMAL.read("rgb_640x512.jpg"));
    let first = client.embed(request(vec![frame()])).await.expect("first").into_inner();
    let before = scrape(server.metrics).await;
    let second = client.embed(request(vec![frame()])).await.expect("second").into_inner();
    let after = scrape(server.metrics).await;
    assert_eq!(first.embeddings[0].vector, second.embeddings[0].vector);
    let hits =
        |text: &str| metric(text, "bindery_cache_hits_total", &[("modality", "thermal")]).unwrap_or_default();
    assert_eq!(hits(&after) - hits(&before), 1.0, "the second request is a cache hit");
}

#[tokio::test]
async fn bad_thermal_inputs_are_refused_naming_the_input_and_the_problem() {
    let mut options = fixture_options();
    options.limits.inputs.update(|l: &mut bindery::modality::thermal::ThermalLimits| {
        l.max_bytes = 100_000;
        l.max_pixels = 100_000;
    });
    let mut server = start(options).await;
    let png = THERMAL.read("gray8_640x512.png");
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        ("empty", Vec::new(), vec!["(thermal): image is empty"]),
        ("words", b"not a picture at all".to_vec(), vec!["(thermal): cannot decode image"]),
        (
            "truncated",
            THERMAL.read("gray8_100x300.bmp")[..2000].to_vec(),
            vec!["(thermal): cannot decode image"],
        ),
        ("big", png.clone(), vec!["more than the limit of 100000 bytes"]),
        ("wide", THERMAL.read("gray16_336x256.tif"), vec!["more than the limit of 100000 bytes"]),
        ("many-pixels", THERMAL.read("rgb_640x512.jpg"), vec!["327680 pixels", "limit of 100000 pixels"]),
    ];
    for (id, data, parts) in cases {
        let mut expected = vec![id];
        expected.extend(parts);
        assert_refused(
            server.client.embed(request(vec![thermal(id, data)])).await,
            Code::InvalidArgument,
            &expected,
        );
    }
    // The server keeps serving.
    let ok = server.client.embed(request(vec![thermal("fine", THERMAL.read("gray8_1x300.png"))])).await;
    assert!(ok.is_ok(), "{ok:?}");
}
