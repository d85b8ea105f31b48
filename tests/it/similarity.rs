//! `Similarity` and `Classify` over the real server: the matrix equals the dot products of the
//! `Embed` vectors, softmax rows use the manifest's logit scales, and `Classify` matches the
//! reference golden from `tools/make_classify_golden.py`.

use bindery::api::pb;
use serde::Deserialize;
use tonic::Code;

use crate::common::*;

fn item(input: pb::Input) -> pb::SimilarityItem {
    pb::SimilarityItem { item: Some(pb::similarity_item::Item::Input(input)) }
}

fn vector(values: Vec<f32>) -> pb::SimilarityItem {
    pb::SimilarityItem { item: Some(pb::similarity_item::Item::Vector(pb::Vector { values })) }
}

fn similarity_request(
    queries: Vec<pb::SimilarityItem>,
    candidates: Vec<pb::SimilarityItem>,
) -> pb::SimilarityRequest {
    pb::SimilarityRequest { model: String::new(), queries, candidates, softmax: false, logit_scale: None }
}

/// Unit-norm `Embed` vectors of `inputs`, in order.
async fn embed_units(server: &mut TestServer, inputs: Vec<pb::Input>) -> Vec<Vec<f32>> {
    let reply = server.client.embed(request(inputs)).await.expect("embed").into_inner();
    reply.embeddings.into_iter().map(|e| e.vector).collect()
}

/// Logit scale per modality, from ListModels (what the manifest says).
async fn scales(server: &mut TestServer) -> std::collections::HashMap<i32, f64> {
    let models = server.client.list_models(pb::ListModelsRequest {}).await.expect("models").into_inner();
    let model = models.models.iter().find(|m| m.name == "imagebind-fixture").expect("fixture model");
    model.modalities.iter().map(|m| (m.modality, f64::from(m.logit_scale))).collect()
}

#[tokio::test]
async fn matrix_equals_dot_products_of_embed_vectors_across_modalities() {
    let mut server = start_fixture().await;
    let queries = vec![
        text("q-text", "a dog barking at the door"),
        image("q-image", FIXTURES.read("images/png_rgb.png")),
        audio("q-audio", FIXTURES.read("audio/cases/wav16k_mono_s16_5s.wav"), "wav"),
    ];
    let candidates = vec![
        text("c-text", "a cat asleep on a sofa"),
        image("c-image", FIXTURES.read("images/png_333x177.png")),
        point_cloud("c-cloud", FIXTURES.read("point_cloud/cases/plain.xyz"), "xyz"),
        audio("c-audio", FIXTURES.read("audio/cases/wav44k_stereo_s16.wav"), ""),
    ];
    let q = embed_units(&mut server, queries.clone()).await;
    let mut c = embed_units(&mut server, candidates.clone()).await;
    // A raw vector candidate: an Embed vector scaled by 3, which the server must normalise.
    let raw: Vec<f32> = q[0].iter().map(|x| x * 3.0).collect();
    c.push(q[0].clone());

    let mut items: Vec<_> = candidates.into_iter().map(item).collect();
    items.push(vector(raw));
    let reply = server
        .client
        .similarity(similarity_request(queries.into_iter().map(item).collect(), items))
        .await
        .expect("similarity")
        .into_inner();
    assert_eq!((reply.rows, reply.cols), (3, 5));
    assert_eq!(reply.model, "imagebind-fixture");
    assert_eq!(reply.cosine.len(), 15);
    assert!(reply.probabilities.is_empty() && reply.logits.is_empty(), "no softmax unless asked");
    for (i, qv) in q.iter().enumerate() {
        for (j, cv) in c.iter().enumerate() {
            let got = f64::from(reply.cosine[i * 5 + j]);
            let want = dot(qv, cv);
            assert!((got - want).abs() <= 1e-5, "cosine[{i}][{j}] = {got}, Embed dot product {want}");
        }
    }
    // The raw copy of the first query is the same direction: cosine 1.
    assert!((reply.cosine[4] - 1.0).abs() < 1e-5, "{}", reply.cosine[4]);
}

#[tokio::test]
async fn softmax_uses_the_product_of_the_modalities_logit_scales() {
    let mut server = start_fixture().await;
    let scales = scales(&mut server).await;
    let queries = vec![
        image("photo", FIXTURES.read("images/png_rgb.png")),
        audio("sound", FIXTURES.read("audio/cases/wav16k_mono_s16_5s.wav"), ""),
    ];
    let candidates = vec![
        text("a", "a dog"),
        text("b", "a piano"),
        text("c", "rain"),
        image("d", FIXTURES.read("images/bmp_rgb24.bmp")),
    ];
    let q = embed_units(&mut server, queries.clone()).await;
    let c = embed_units(&mut server, candidates.clone()).await;
    let mut req = similarity_request(
        queries.iter().cloned().map(item).collect(),
        candidates.iter().cloned().map(item).collect(),
    );
    req.softmax = true;
    let reply = server.client.similarity(req.clone()).await.expect("similarity").into_inner();
    assert_eq!(reply.probabilities.len(), 8);
    let (text_s, image_s, audio_s) = (
        scales[&(pb::Modality::Text as i32)],
        scales[&(pb::Modality::Image as i32)],
        scales[&(pb::Modality::Audio as i32)],
    );
    assert!(text_s > 1.0 && audio_s > 1.0, "the fixture scales text and audio");
    let query_scales = [image_s, audio_s];
    let candidate_scales = [text_s, text_s, text_s, image_s];
    for i in 0..2 {
        let logits: Vec<f64> =
            (0..4).map(|j| query_scales[i] * candidate_scales[j] * dot(&q[i], &c[j])).collect();
        let max = logits.iter().copied().fold(f64::MIN, f64::max);
        let sum: f64 = logits.iter().map(|l| (l - max).exp()).sum();
        let row = &reply.probabilities[i * 4..(i + 1) * 4];
        let total: f64 = row.iter().map(|p| f64::from(*p)).sum();
        assert!((total - 1.0).abs() < 1e-5, "row {i} sums to {total}");
        for j in 0..4 {
            let want = (logits[j] - max).exp() / sum;
            assert!((f64::from(row[j]) - want).abs() < 1e-5, "p[{i}][{j}] = {}, want {want}", row[j]);
            assert!((f64::from(reply.logits[i * 4 + j]) - logits[j]).abs() < 1e-3 * logits[j].abs().max(1.0));
        }
    }

    // An explicit scale replaces the default for every pair.
    req.logit_scale = Some(2.0);
    let reply = server.client.similarity(req).await.expect("similarity").into_inner();
    for (l, c) in reply.logits.iter().zip(&reply.cosine) {
        assert!((l - 2.0 * c).abs() < 1e-6);
    }
    for row in reply.probabilities.chunks(4) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

#[tokio::test]
async fn raw_vectors_count_as_scale_one_and_are_normalised() {
    let mut server = start_fixture().await;
    let v = embed_units(&mut server, vec![text("t", "a red cube")]).await.remove(0);
    let other = embed_units(&mut server, vec![text("u", "a blue sphere")]).await.remove(0);
    let mut req = similarity_request(
        vec![vector(v.iter().map(|x| x * 0.5).collect())],
        vec![vector(v.clone()), vector(other.iter().map(|x| x * 7.0).collect())],
    );
    req.softmax = true;
    let reply = server.client.similarity(req).await.expect("similarity").into_inner();
    assert!((reply.cosine[0] - 1.0).abs() < 1e-5);
    assert!((f64::from(reply.cosine[1]) - dot(&v, &other)).abs() < 1e-5);
    assert!((reply.logits[0] - reply.cosine[0]).abs() < 1e-6, "vector x vector has scale 1");
}

#[derive(Deserialize)]
struct Golden {
    inputs: Vec<GoldenInput>,
    requests: Vec<GoldenRequest>,
}

#[derive(Deserialize)]
struct GoldenInput {
    id: String,
    modality: String,
    file: Option<String>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct GoldenRequest {
    id: String,
    labels: Vec<String>,
    templates: Vec<String>,
    results: Vec<GoldenResult>,
}

#[derive(Deserialize)]
struct GoldenResult {
    id: String,
    logit_scale: f32,
    cosines: Vec<f32>,
    probabilities: Vec<f32>,
}

fn golden_input(g: &GoldenInput) -> pb::Input {
    match (g.modality.as_str(), &g.file, &g.text) {
        ("image", Some(file), _) => image(&g.id, FIXTURES.read(file)),
        ("audio", Some(file), _) => audio(&g.id, FIXTURES.read(file), ""),
        ("text", _, Some(t)) => text(&g.id, t),
        _ => panic!("unexpected golden input {}", g.id),
    }
}

#[tokio::test]
async fn classify_matches_the_reference_golden() {
    let mut server = start_fixture().await;
    let golden: Golden = FIXTURES.json("similarity/classify.json");
    assert!(golden.requests.len() >= 2 && golden.inputs.len() >= 5);
    let inputs: Vec<pb::Input> = golden.inputs.iter().map(golden_input).collect();
    let mut compared = 0;
    for req in &golden.requests {
        let reply = server
            .client
            .classify(pb::ClassifyRequest {
                model: String::new(),
                inputs: inputs.clone(),
                labels: req.labels.clone(),
                templates: req.templates.clone(),
                top_k: 3,
                logit_scale: None,
                template_set: String::new(),
            })
            .await
            .unwrap_or_else(|s| panic!("classify {}: {s}", req.id))
            .into_inner();
        assert_eq!(reply.results.len(), req.results.len());
        for (got, want) in reply.results.iter().zip(&req.results) {
            assert_eq!(got.id, want.id);
            assert!(
                (got.logit_scale - want.logit_scale).abs() <= 1e-3,
                "{}: scale {}",
                want.id,
                got.logit_scale
            );
            let sum: f64 = got.probabilities.iter().map(|p| f64::from(*p)).sum();
            assert!((sum - 1.0).abs() < 1e-5, "{}/{}: probabilities sum to {sum}", req.id, want.id);
            for (j, (g, w)) in got.probabilities.iter().zip(&want.probabilities).enumerate() {
                assert!(
                    (g - w).abs() <= 1e-4,
                    "{}/{} label {j}: probability {g}, reference {w}",
                    req.id,
                    want.id
                );
                compared += 1;
            }
            for (j, (g, w)) in got.cosines.iter().zip(&want.cosines).enumerate() {
                assert!((g - w).abs() <= 1e-4, "{}/{} label {j}: cosine {g}, reference {w}", req.id, want.id);
            }
            // top_k: the three most probable labels, best first.
            assert_eq!(got.top.len(), 3);
            let mut order: Vec<usize> = (0..want.probabilities.len()).collect();
            order.sort_by(|a, b| want.probabilities[*b].total_cmp(&want.probabilities[*a]));
            assert_eq!(got.top[0].label, req.labels[order[0]], "{}/{}", req.id, want.id);
            assert!(got.top.windows(2).all(|w| w[0].probability >= w[1].probability));
        }
    }
    assert!(compared >= 50, "compared {compared} probabilities");
}

#[tokio::test]
async fn repeated_labels_come_from_the_cache() {
    let mut server = start_fixture().await;
    // Labels no other test uses, so the first call must embed them.
    let labels: Vec<String> =
        ["zebra", "violin", "lighthouse"].iter().map(|l| format!("{l} cache-test")).collect();
    let call = |templates: Vec<String>| pb::ClassifyRequest {
        model: String::new(),
        inputs: vec![text("t", "a striped animal")],
        labels: labels.clone(),
        templates,
        top_k: 0,
        logit_scale: None,
        template_set: String::new(),
    };
    // Texts handed to the text encoder, as the engine counts them (run through the tower, or
    // answered from its embedding cache), so this sees re-encoding independently of the Classify
    // reply's own counters.
    let text_items = |metrics: String| {
        let labels = [("model", "imagebind-fixture"), ("modality", "text")];
        ["bindery_items_total", "bindery_cache_hits_total"]
            .iter()
            .map(|name| metric(&metrics, name, &labels).unwrap_or(0.0))
            .sum::<f64>()
    };
    let before = text_items(scrape(server.metrics).await);
    let first =
        server.client.classify(call(vec!["a photo of a {}".into()])).await.expect("first").into_inner();
    assert_eq!((first.label_cache_hits, first.label_cache_misses), (0, 3));
    assert_eq!(first.results[0].top.len(), 3, "top_k 0 lists every label");
    let after_first = text_items(scrape(server.metrics).await);
    assert_eq!(after_first - before, 4.0, "the input and three label prompts");
    let second =
        server.client.classify(call(vec!["a photo of a {}".into()])).await.expect("second").into_inner();
    assert_eq!((second.label_cache_hits, second.label_cache_misses), (3, 0));
    let after_second = text_items(scrape(server.metrics).await);
    assert_eq!(after_second - after_first, 1.0, "only the input: no label prompt reached the encoder");
    assert_eq!(
        first.results[0].probabilities, second.results[0].probabilities,
        "cached labels give the same answer"
    );
    // Other templates are other label embeddings.
    let third =
        server.client.classify(call(vec!["a drawing of a {}".into()])).await.expect("third").into_inner();
    assert_eq!((third.label_cache_hits, third.label_cache_misses), (0, 3));
}

#[tokio::test]
async fn bad_requests_get_precise_errors() {
    let mut server = start_fixture().await;
    let dim = embed_units(&mut server, vec![text("t", "a dog")]).await[0].len();
    let classify = |labels: Vec<&str>, templates: Vec<&str>, top_k: u32| pb::ClassifyRequest {
        model: String::new(),
        inputs: vec![text("t", "a dog")],
        labels: labels.into_iter().map(String::from).collect(),
        templates: templates.into_iter().map(String::from).collect(),
        top_k,
        logit_scale: None,
        template_set: String::new(),
    };
    let cases = [
        (classify(vec![], vec![], 0), "labels is empty"),
        (classify(vec!["dog", " "], vec![], 0), "labels[1] is empty"),
        (classify(vec!["dog"], vec!["a photo"], 0), "templates[0]"),
        (classify(vec!["dog"], vec!["{} and {}"], 0), "it has 2"),
        (classify(vec!["dog", "cat"], vec![], 3), "top_k = 3 is more than the 2 labels"),
    ];
    for (req, expected) in cases {
        assert_refused(server.client.classify(req).await, Code::InvalidArgument, &[expected]);
    }
    let mut req = classify(vec!["dog"], vec![], 0);
    req.logit_scale = Some(f32::NAN);
    assert_refused(server.client.classify(req).await, Code::InvalidArgument, &["logit_scale"]);
    let mut req = classify(vec!["dog"], vec![], 0);
    req.inputs.clear();
    assert_refused(server.client.classify(req).await, Code::InvalidArgument, &[]);

    let ok = || vec![vector(vec![1.0; dim])];
    let sim_cases = [
        (
            similarity_request(ok(), vec![vector(vec![1.0; dim]), vector(vec![1.0; dim + 1])]),
            "candidates[1]",
            "dimension",
        ),
        (similarity_request(vec![vector(vec![0.0; dim])], ok()), "queries[0]", "zeros"),
        (similarity_request(ok(), vec![vector(vec![f32::NAN; dim])]), "candidates[0]", "not finite"),
        (
            similarity_request(ok(), vec![pb::SimilarityItem { item: None }]),
            "candidates[0]",
            "input or vector",
        ),
        (similarity_request(vec![], ok()), "queries is empty", ""),
        (similarity_request(ok(), vec![item(text("", ""))]), "candidates[0]", "empty"),
    ];
    for (req, name, what) in sim_cases {
        assert_refused(server.client.similarity(req).await, Code::InvalidArgument, &[name, what]);
    }
    let mut req = similarity_request(ok(), ok());
    req.model = "no-such-model".into();
    assert_refused(server.client.similarity(req).await, Code::NotFound, &[]);
}
