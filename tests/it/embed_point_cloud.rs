//! Point-cloud embeddings served over gRPC match the reference pipeline
//! (goldens from `tools/make_point_fixtures.py`: independent readers, `fpsample` FPS, torch kNN and
//! the PyTorch point tower).

use bindery::api::pb;
use serde::Deserialize;
use tonic::Code;

use crate::common::*;

#[derive(Deserialize)]
struct Cases {
    cases: Vec<PointCase>,
}

#[derive(Deserialize)]
struct PointCase {
    id: String,
    file: Option<String>,
    hint: Option<String>,
    dropped: u64,
    embedding: Vec<f32>,
    arrays: Option<Arrays>,
}

#[derive(Deserialize)]
struct Arrays {
    xyz: String,
    rgb_u8: String,
}

#[derive(Deserialize)]
struct BadCases {
    entries: Vec<BadCase>,
}

#[derive(Deserialize)]
struct BadCase {
    file: String,
    hint: Option<String>,
    kind: String,
    limits: Option<BadLimits>,
}

#[derive(Deserialize)]
struct BadLimits {
    max_points: Option<usize>,
    max_bytes: Option<usize>,
}

const POINT_CLOUD: Fixtures = Fixtures("point_cloud");

fn cloud(id: &str, data: Vec<u8>, hint: Option<&str>) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::PointCloud(pb::PointCloud {
            data,
            format_hint: hint.unwrap_or_default().into(),
            ..Default::default()
        })),
    }
}

#[tokio::test]
async fn every_point_cloud_file_golden_matches_the_reference() {
    let mut server = start_fixture().await;
    let cases: Cases = POINT_CLOUD.json("cases.json");
    let mut checked = 0;
    for case in cases.cases.iter() {
        let Some(file) = &case.file else { continue };
        let data = POINT_CLOUD.read(file);
        let reply = server
            .client
            .embed(request(vec![cloud(&case.id, data, case.hint.as_deref())]))
            .await
            .unwrap_or_else(|s| panic!("case {} ({file}): {s}", case.id))
            .into_inner();
        let e = &reply.embeddings[0];
        assert_eq!(e.modality, pb::Modality::PointCloud as i32);
        assert_eq!(e.dropped_points, case.dropped, "case {}: dropped points", case.id);
        let c = cosine(&e.vector, &case.embedding);
        assert!(c >= 0.9999, "point-cloud case {} ({file}): cosine {c}", case.id);
        checked += 1;
    }
    assert!(checked >= 18, "only {checked} file cases compared");
}

#[tokio::test]
async fn every_malformed_cloud_is_invalid_argument_and_the_server_keeps_serving() {
    let bad: BadCases = POINT_CLOUD.json("bad.json");
    let mut options = fixture_options();
    // The limit cases carry their own limits; run them on a server configured with them.
    for case in &bad.entries {
        if let Some(l) = &case.limits {
            if let Some(p) = l.max_points {
                options
                    .limits
                    .inputs
                    .update(|l: &mut bindery::modality::point_cloud::PointCloudLimits| l.max_points = p);
            }
            if let Some(b) = l.max_bytes {
                options
                    .limits
                    .inputs
                    .update(|l: &mut bindery::modality::point_cloud::PointCloudLimits| l.max_bytes = b);
            }
        }
    }
    let mut limited = start(options).await;
    let mut server = start_fixture().await;
    for case in &bad.entries {
        let data = POINT_CLOUD.read(&case.file);
        let target = if case.limits.is_some() { &mut limited } else { &mut server };
        let id = format!("bad:{}", case.file);
        let status = target
            .client
            .embed(request(vec![cloud(&id, data, case.hint.as_deref())]))
            .await
            .expect_err(&format!("{} ({}) must be refused", case.file, case.kind));
        assert_refused(status, Code::InvalidArgument, &[&id]);
    }
    let good: Cases = POINT_CLOUD.json("cases.json");
    let first = good.cases.iter().find(|c| c.file.is_some()).expect("a file case");
    let data = POINT_CLOUD.read(first.file.as_ref().unwrap());
    let reply = server.client.embed(request(vec![cloud("after", data, first.hint.as_deref())])).await;
    assert!(reply.is_ok(), "server still serves after malformed clouds");
}

#[tokio::test]
async fn packed_array_golden_matches_the_reference() {
    let mut server = start_fixture().await;
    let cases: Cases = POINT_CLOUD.json("cases.json");
    let mut checked = 0;
    for case in &cases.cases {
        let Some(arrays) = &case.arrays else { continue };
        let xyz = POINT_CLOUD.f32s(&arrays.xyz);
        let rgb_u8 = POINT_CLOUD.read(&arrays.rgb_u8);
        let input = pb::Input {
            id: case.id.clone(),
            payload: Some(pb::input::Payload::PointCloud(pb::PointCloud {
                xyz,
                rgb_u8,
                ..Default::default()
            })),
        };
        let reply = server.client.embed(request(vec![input])).await.expect("arrays embed").into_inner();
        let c = cosine(&reply.embeddings[0].vector, &case.embedding);
        assert!(c >= 0.9999, "array case {}: cosine {c}", case.id);
        checked += 1;
    }
    assert!(checked >= 1, "no packed-array golden");
}

#[tokio::test]
async fn packed_arrays_and_nan_points_are_accepted() {
    let mut server = start_fixture().await;
    // A small deterministic cloud on a helix; one NaN point that must be dropped and counted.
    let mut xyz = Vec::new();
    for i in 0..600 {
        let t = i as f32 * 0.05;
        xyz.extend_from_slice(&[t.cos(), t.sin(), t * 0.1]);
    }
    xyz.extend_from_slice(&[f32::NAN, 0.0, 0.0]);
    let rgb_u8 = vec![200u8; xyz.len()];
    let input = pb::Input {
        id: "helix".into(),
        payload: Some(pb::input::Payload::PointCloud(pb::PointCloud { xyz, rgb_u8, ..Default::default() })),
    };
    let reply = server.client.embed(request(vec![input])).await.expect("arrays").into_inner();
    assert_eq!(reply.embeddings[0].dropped_points, 1);
    assert!((norm(&reply.embeddings[0].vector) - 1.0).abs() < 1e-5);
}

#[tokio::test]
async fn point_cloud_byte_and_point_limits_name_the_input_and_the_limit() {
    let read = |file: &str| POINT_CLOUD.read(&format!("bad/{file}"));
    // One server per limit, so each file can only cross the limit under test.
    let mut options = fixture_options();
    options
        .limits
        .inputs
        .update(|l: &mut bindery::modality::point_cloud::PointCloudLimits| l.max_bytes = 512);
    let mut by_bytes = start(options).await;
    let status = by_bytes
        .client
        .embed(request(vec![cloud("big", read("too_many_bytes.xyz"), Some("xyz"))]))
        .await
        .expect_err("over the byte limit");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "input \"big\" (point_cloud): point cloud file is 882 bytes, more than the limit of 512 bytes"
    );

    let mut options = fixture_options();
    options
        .limits
        .inputs
        .update(|l: &mut bindery::modality::point_cloud::PointCloudLimits| l.max_points = 100);
    let mut by_points = start(options).await;
    // Counted while reading a text file (101 lines).
    let status = by_points
        .client
        .embed(request(vec![cloud("many", read("too_many_points.xyz"), Some("xyz"))]))
        .await
        .expect_err("over the point limit");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "input \"many\" (point_cloud): point cloud has 101 points, more than the limit of 100"
    );
    // Taken from a PLY header, before any vertex is read.
    let status = by_points
        .client
        .embed(request(vec![cloud("header", read("huge_count.ply"), Some("ply"))]))
        .await
        .expect_err("a header over the point limit");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "input \"header\" (point_cloud): point cloud has 4000000000 points, more than the limit of 100"
    );
    // 100 points pass.
    let hundred: Vec<u8> =
        read("too_many_points.xyz").split_inclusive(|b| *b == b'\n').take(100).flatten().copied().collect();
    let reply = by_points.client.embed(request(vec![cloud("ok", hundred, Some("xyz"))])).await;
    assert!(reply.is_ok(), "{reply:?}");
}
