//! Compact outputs over gRPC: `dimensions` truncates and renormalises, and each packed encoding
//! decodes (independently of bindery's packing code) back to the float vector within its
//! precision, on Embed and EmbedStream.

use bindery::api::pb;
use half::{bf16, f16};
use tonic::Code;

use crate::common::*;

fn inputs() -> Vec<pb::Input> {
    vec![text("t", "a red cube"), image("i", FIXTURES.read("images/png_rgb.png"))]
}

async fn embed(server: &mut TestServer, change: impl FnOnce(&mut pb::EmbedRequest)) -> Vec<pb::Embedding> {
    let mut req = uncached(inputs());
    change(&mut req);
    server.client.embed(req).await.expect("embed").into_inner().embeddings
}

#[tokio::test]
async fn dimensions_truncate_then_renormalise_and_are_checked() {
    let mut server = start_fixture().await;
    let full = embed(&mut server, |_| {}).await;
    let short = embed(&mut server, |r| r.dimensions = Some(16)).await;
    for (f, s) in full.iter().zip(&short) {
        assert_eq!((s.vector.len(), s.dimension), (16, 16));
        let norm: f64 = f.vector[..16].iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
        for (a, b) in f.vector[..16].iter().zip(&s.vector) {
            assert!((f64::from(*a) / norm - f64::from(*b)).abs() < 1e-6);
        }
    }
    // Raw output is truncated only.
    let raw = embed(&mut server, |r| r.normalize = Some(false)).await;
    let raw_short = embed(&mut server, |r| {
        r.normalize = Some(false);
        r.dimensions = Some(10);
    })
    .await;
    assert_eq!(raw_short[0].vector, raw[0].vector[..10]);

    let mut too_many = uncached(inputs());
    too_many.dimensions = Some(64);
    assert_refused(
        server.client.embed(too_many).await,
        Code::InvalidArgument,
        &["dimensions 64 is more than model \"imagebind-fixture\" has (32)"],
    );
    let mut unknown = uncached(inputs());
    unknown.encoding = 99;
    assert_refused(server.client.embed(unknown).await, Code::InvalidArgument, &["unknown encoding 99"]);
}

#[tokio::test]
async fn every_packed_encoding_decodes_to_the_float_vector() {
    let mut server = start_fixture().await;
    let full = embed(&mut server, |_| {}).await;
    let pairs =
        |e: &pb::Embedding| -> Vec<[u8; 2]> { e.packed.chunks_exact(2).map(|b| [b[0], b[1]]).collect() };
    for (encoding, tolerance) in
        [(pb::Encoding::Float16, 1e-3), (pb::Encoding::Bfloat16, 4e-3), (pb::Encoding::Int8, 0.0)]
    {
        let packed = embed(&mut server, |r| r.encoding = encoding as i32).await;
        for (f, p) in full.iter().zip(&packed) {
            assert!(p.vector.is_empty() && p.encoding == encoding as i32 && p.dimension == 32);
            let decoded: Vec<f32> = match encoding {
                pb::Encoding::Float16 => {
                    pairs(p).into_iter().map(|b| f16::from_le_bytes(b).to_f32()).collect()
                }
                pb::Encoding::Bfloat16 => {
                    pairs(p).into_iter().map(|b| bf16::from_le_bytes(b).to_f32()).collect()
                }
                _ => p.packed.iter().map(|b| f32::from(*b as i8) * p.scale).collect(),
            };
            // Int8's error is at most half a step.
            let tolerance = if encoding == pb::Encoding::Int8 { p.scale / 2.0 + 1e-7 } else { tolerance };
            let max = f.vector.iter().fold(0f32, |m, v| m.max(v.abs()));
            if encoding == pb::Encoding::Int8 {
                assert!((p.scale - max / 127.0).abs() < 1e-9, "scale {} for max {max}", p.scale);
            }
            for (a, b) in f.vector.iter().zip(&decoded) {
                assert!((a - b).abs() <= tolerance, "{encoding:?}: {a} vs {b}");
            }
        }
    }
    let bits = embed(&mut server, |r| {
        r.encoding = pb::Encoding::Binary as i32;
        r.dimensions = Some(20);
    })
    .await;
    let short = embed(&mut server, |r| r.dimensions = Some(20)).await;
    for (s, b) in short.iter().zip(&bits) {
        assert_eq!((b.packed.len(), b.dimension), (3, 20));
        for (i, v) in s.vector.iter().enumerate() {
            let set = b.packed[i / 8] & (0x80 >> (i % 8)) != 0;
            assert_eq!(set, *v > 0.0, "bit {i} of {v}");
        }
        assert_eq!(b.packed[2] & 0x0f, 0, "padding bits are zero");
    }
}

#[tokio::test]
async fn the_stream_honours_the_encoding() {
    let mut server = start_fixture().await;
    let full = embed(&mut server, |_| {}).await;
    let mut req = uncached(inputs());
    req.encoding = pb::Encoding::Float16 as i32;
    let mut replies =
        server.client.embed_stream(futures::stream::iter(vec![req])).await.expect("stream").into_inner();
    let reply = futures::StreamExt::next(&mut replies).await.expect("a reply").expect("ok");
    let first = &reply.embeddings[0];
    assert_eq!(first.encoding, pb::Encoding::Float16 as i32);
    let decoded: Vec<f32> =
        first.packed.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
    assert!(full[0].vector.iter().zip(&decoded).all(|(a, b)| (a - b).abs() < 1e-3));
}
