//! Text and image embeddings served over gRPC match the reference ImageBind pipeline
//! (goldens produced by `tools/make_fixtures.py` with the PyTorch model).

use bindery::api::pb;
use tonic::Code;

use crate::common::*;

const END_OF_TEXT: i64 = 49407;

const IMAGES: Fixtures = Fixtures("images");

fn text_cases() -> Vec<TextCase> {
    Fixtures("text").json("cases.json")
}

fn image_cases() -> Vec<ImageCase> {
    IMAGES.json("cases.json")
}

/// The reference embeds texts that clean up to nothing as `[SOT, EOT]`; bindery refuses them.
fn empty_after_cleanup(case: &TextCase) -> bool {
    case.tokens.get(1) == Some(&END_OF_TEXT)
}

#[tokio::test]
async fn every_text_golden_matches_the_reference() {
    let mut server = start_fixture().await;
    let cases = text_cases();
    assert!(cases.len() >= 20, "expected a real golden set, got {}", cases.len());
    let mut checked = 0;
    for case in &cases {
        let reply = server.client.embed(request(vec![text(&case.id, &case.text)])).await;
        if empty_after_cleanup(case) {
            let status = reply.expect_err("empty-after-cleanup text must be refused");
            assert_refused(status, Code::InvalidArgument, &[&case.id]);
            continue;
        }
        let reply = reply.unwrap_or_else(|s| panic!("case {}: {s}", case.id)).into_inner();
        let e = &reply.embeddings[0];
        assert_eq!(e.id, case.id);
        assert_eq!(e.modality, pb::Modality::Text as i32);
        assert!((norm(&e.vector) - 1.0).abs() < 1e-5, "unit norm by default");
        let c = cosine(&e.vector, &case.embedding);
        assert!(c >= 0.9999, "text case {} ({:?}): cosine {c}", case.id, case.text);
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} text cases compared");
}

#[tokio::test]
async fn every_image_golden_matches_the_reference() {
    let mut server = start_fixture().await;
    let cases = image_cases();
    assert!(cases.len() >= 20, "expected a real golden set, got {}", cases.len());
    for case in &cases {
        let bytes = IMAGES.read(&case.file);
        let reply = server
            .client
            .embed(request(vec![image(&case.id, bytes)]))
            .await
            .unwrap_or_else(|s| panic!("case {} ({}): {s}", case.id, case.file))
            .into_inner();
        let e = &reply.embeddings[0];
        assert_eq!(e.modality, pb::Modality::Image as i32);
        let c = cosine(&e.vector, &case.embedding);
        assert!(c >= 0.9999, "image case {} ({}): cosine {c}", case.id, case.file);
    }
}

#[tokio::test]
async fn mixed_batch_keeps_request_order_and_matches_single_requests() {
    let mut server = start_fixture().await;
    let texts = text_cases();
    let images = image_cases();
    let t = texts.iter().find(|c| !empty_after_cleanup(c)).expect("a text case");
    let i = &images[0];
    let bytes = IMAGES.read(&i.file);
    let inputs = vec![text("a", &t.text), image("b", bytes.clone()), text("c", "a dog"), image("d", bytes)];
    let reply = server.client.embed(request(inputs)).await.expect("mixed batch").into_inner();
    let ids: Vec<_> = reply.embeddings.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert_eq!(reply.model, "imagebind-fixture");
    assert!(cosine(&reply.embeddings[0].vector, &t.embedding) >= 0.9999);
    assert!(cosine(&reply.embeddings[1].vector, &i.embedding) >= 0.9999);
    assert!(cosine(&reply.embeddings[3].vector, &i.embedding) >= 0.9999);
}

#[tokio::test]
async fn raw_output_keeps_the_reference_logit_scale() {
    let mut server = start_fixture().await;
    let case = text_cases().into_iter().find(|c| !empty_after_cleanup(c)).expect("a text case");
    let mut req = request(vec![text("raw", &case.text)]);
    req.normalize = Some(false);
    let reply = server.client.embed(req).await.expect("raw embed").into_inner();
    let v = &reply.embeddings[0].vector;
    let scale = norm(&case.embedding);
    assert!((norm(v) - scale).abs() / scale < 1e-4, "raw norm {} vs reference {}", norm(v), scale);
}

#[tokio::test]
async fn one_corrupt_image_fails_the_batch_naming_it_and_the_server_keeps_serving() {
    let mut server = start_fixture().await;
    let good = IMAGES.read(&image_cases()[0].file);
    let corrupt = IMAGES.read("corrupt_truncated.jpg");
    let inputs =
        vec![image("fine-1", good.clone()), image("broken-photo", corrupt), image("fine-2", good.clone())];
    let reply = server.client.embed(request(inputs)).await;
    assert_refused(reply, Code::InvalidArgument, &["broken-photo", "image"]);

    let garbage = IMAGES.read("not_an_image.bin");
    let reply = server.client.embed(request(vec![image("noise", garbage)])).await;
    assert_refused(reply, Code::InvalidArgument, &["noise"]);

    let reply = server.client.embed(request(vec![image("nothing", Vec::new())])).await;
    assert_refused(reply, Code::InvalidArgument, &["empty"]);

    // Still serving.
    let ok = server.client.embed(request(vec![image("again", good)])).await.expect("server still serves");
    assert_eq!(ok.into_inner().embeddings.len(), 1);
}
