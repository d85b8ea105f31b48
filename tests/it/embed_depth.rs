//! Depth embeddings served over gRPC match the reference (goldens from
//! `tools/make_sensor_fixtures.py`: Omnivore's disparity recipe and Weaviate's grayscale path in
//! `sensors.py`, through the PyTorch fixture model), for 16-bit PNG/TIFF maps, NPY in metres with
//! holes, request parameters and both conversions; bad maps are refused precisely.

use bindery::api::pb;
use serde::Deserialize;
use tonic::Code;

use crate::common::*;

const DEPTH: Fixtures = Fixtures("depth");

#[derive(Deserialize, Default)]
struct Request {
    #[serde(default)]
    depth_scale: f32,
    #[serde(default)]
    baseline_m: f32,
    #[serde(default)]
    focal_px: f32,
}

#[derive(Deserialize)]
struct DepthCase {
    id: String,
    file: String,
    conversion: String,
    request: Request,
    embedding: Vec<f32>,
}

fn depth(id: &str, data: Vec<u8>, request: &Request) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::DepthMap(pb::Depth {
            data,
            format_hint: String::new(),
            depth_scale: request.depth_scale,
            baseline_m: request.baseline_m,
            focal_px: request.focal_px,
        })),
    }
}

fn cases(conversion: &str) -> Vec<DepthCase> {
    let all: Vec<DepthCase> = DEPTH.json("cases.json");
    all.into_iter().filter(|c| c.conversion == conversion).collect()
}

async fn assert_goldens(server: &mut TestServer, cases: &[DepthCase]) {
    let inputs = cases.iter().map(|c| depth(&c.id, DEPTH.read(&c.file), &c.request)).collect();
    let reply = server.client.embed(uncached(inputs)).await.expect("embed").into_inner();
    let goldens: Vec<_> = cases.iter().map(|c| (c.id.as_str(), c.file.as_str(), &c.embedding[..])).collect();
    assert_matches_goldens(&reply.embeddings, &goldens, pb::Modality::Depth);
}

#[tokio::test]
async fn every_disparity_golden_matches_the_reference() {
    let cases = cases("disparity");
    assert!(cases.len() >= 8, "16-bit PNG/TIFF, NPY with holes, 1xN, clipped extremes, request parameters");
    let mut server = start_fixture().await;
    assert_goldens(&mut server, &cases).await;
}

#[tokio::test]
async fn grayscale_conversion_matches_the_reference() {
    let cases = cases("grayscale");
    assert!(cases.len() >= 2);
    // Weaviate's grey path, with its normalisation.
    let (options, _models) = fixture_variant(&[
        ("conversion = \"disparity\"", "conversion = \"grayscale\""),
        ("mean = 0.0", "mean = 0.48145466"),
        ("std = 1.0", "std = 0.26862954"),
    ]);
    let mut server = start(options).await;
    assert_goldens(&mut server, &cases).await;
    // A 16-bit map holds metric depth, which the grey path does not convert.
    let kinect = depth("metric", DEPTH.read("kinect_640x480.png"), &Request::default());
    assert_refused(
        server.client.embed(request(vec![kinect])).await,
        Code::InvalidArgument,
        &["metric", "8-bit grey"],
    );
}

#[tokio::test]
async fn depth_classifies_against_text_with_both_scales() {
    let case = cases("disparity").into_iter().next().expect("a case");
    let mut server = start_fixture().await;
    let labels = vec!["a kitchen".to_string(), "a bedroom".to_string(), "a corridor".to_string()];
    let reply = server
        .client
        .classify(pb::ClassifyRequest {
            inputs: vec![depth("room", DEPTH.read(&case.file), &case.request)],
            labels: labels.clone(),
            top_k: 1,
            ..Default::default()
        })
        .await
        .expect("classify")
        .into_inner();
    let result = &reply.results[0];
    // Depth's scale (5) times text's (1 / 0.07).
    assert!((result.logit_scale - 5.0 * 14.285714).abs() < 1e-2, "scale {}", result.logit_scale);
    let label_vectors = server
        .client
        .embed(request(labels.iter().map(|l| text(l, l)).collect()))
        .await
        .expect("labels")
        .into_inner()
        .embeddings;
    let label_vectors: Vec<Vec<f32>> = label_vectors.into_iter().map(|e| e.vector).collect();
    assert_softmax_of_scaled_cosines(result, &case.embedding, &label_vectors);
}

#[tokio::test]
async fn bad_depth_maps_are_refused_naming_the_input_and_the_problem() {
    let mut options = fixture_options();
    options.limits.inputs.update(|l: &mut bindery::modality::depth::DepthLimits| {
        l.max_bytes = 300_000;
        l.max_pixels = 200_000;
    });
    let mut server = start(options).await;
    let none = Request::default();
    let zeros = {
        let mut png = Vec::new();
        image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::new(40, 30)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    };
    let cases: Vec<(pb::Input, Vec<&str>)> = vec![
        (depth("holes", zeros, &none), vec!["no valid pixel: all 1200 pixels"]),
        (
            depth("eight", FIXTURES.read("images/png_gray.png"), &none),
            vec!["8-bit image holds no metric depth"],
        ),
        (depth("empty", Vec::new(), &none), vec!["image is empty"]),
        (depth("words", b"no depth here".to_vec(), &none), vec!["cannot decode image"]),
        (depth("big", DEPTH.read("metres_320x240.npy"), &none), vec!["more than the limit of 300000 bytes"]),
        (
            depth("pixels", DEPTH.read("kinect_640x480.png"), &none),
            vec!["307200 pixels, more than the limit of 200000"],
        ),
        (
            depth("focal", DEPTH.read("row_1x300.png"), &Request { focal_px: -3.0, ..Default::default() }),
            vec!["focal_px must be positive and finite, got -3"],
        ),
        (depth("cut", DEPTH.read("metres_hw1.npy")[..5000].to_vec(), &none), vec!["truncated NPY file"]),
    ];
    for (input, parts) in cases {
        let mut expected = vec![input.id.clone()];
        expected.extend(parts.iter().map(|p| p.to_string()));
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        assert_refused(server.client.embed(request(vec![input])).await, Code::InvalidArgument, &expected);
    }
    let ok = server.client.embed(request(vec![depth("fine", DEPTH.read("row_1x300.png"), &none)])).await;
    assert!(ok.is_ok(), "{ok:?}");
}
