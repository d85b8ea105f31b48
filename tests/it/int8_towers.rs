//! int8 tower variants (`--precision int8`, `onnx_int8` written by `tools/quantize.py`): served
//! close to the fp32 towers when their recorded cosine passes the manifest's threshold, refused
//! by name when it does not or was never measured.

use bindery::model::tower::Precision;
use bindery::server;

use crate::common::*;

fn inputs() -> Vec<bindery::api::pb::Input> {
    let audio_bytes = FIXTURES.read("audio/cases/wav16k_mono_s16_5s.wav");
    vec![text("t", "a red cube on a table"), image("i", png(5, 64)), audio("a", audio_bytes, "wav")]
}

#[tokio::test]
async fn int8_towers_serve_within_their_recorded_cosine_of_fp32() {
    let mut fp32 = start_fixture().await;
    let mut options = fixture_options();
    options.towers.precision = Precision::Int8;
    let mut int8 = start(options).await;
    // tools/quantize.py recorded 0.9988 (text) to 0.99995 (image) for the fixture, and 0.9991
    // (speech) to 0.99997 (text) for bind-mini, on held-out reference inputs; the manifests'
    // threshold is 0.99.
    for model in ["imagebind-fixture", "bind-mini"] {
        let request = || bindery::api::pb::EmbedRequest { model: model.into(), ..uncached(inputs()) };
        let full = fp32.client.embed(request()).await.expect("fp32").into_inner();
        let quantized = int8.client.embed(request()).await.expect("int8").into_inner();
        assert_eq!(full.embeddings.len(), 3, "{model}");
        for (a, b) in full.embeddings.iter().zip(&quantized.embeddings) {
            let cos = cosine(&a.vector, &b.vector);
            assert!(cos >= 0.99, "{model} {}: cosine {cos}", a.id);
            assert!(a.vector != b.vector, "{model} {}: the int8 tower must be the one serving", a.id);
        }
    }
}

#[test]
fn an_int8_tower_under_its_threshold_or_unmeasured_is_refused() {
    let (mut options, _dir) = fixture_variant(&[("int8_cosine = 0.999953", "int8_cosine = 0.95")]);
    options.towers.precision = Precision::Int8;
    let error = server::load_engine(&options).err().expect("refused").to_string();
    for part in ["image", "vision.int8.onnx", "0.95", "0.99", "--precision fp32"] {
        assert!(error.contains(part), "{error:?} lacks {part:?}");
    }
    // The same manifest serves at fp32, which does not read the int8 towers.
    options.towers.precision = Precision::Fp32;
    server::load_engine(&options).expect("fp32 loads");

    let (mut options, _dir) = fixture_variant(&[("int8_cosine = 0.999831\n", "")]);
    options.towers.precision = Precision::Int8;
    let error = server::load_engine(&options).err().expect("refused").to_string();
    assert!(error.contains("audio") && error.contains("no recorded int8_cosine"), "{error}");

    // A section may ask for more.
    let (mut options, _dir) =
        fixture_variant(&[("int8_cosine = 0.998826\n", "int8_cosine = 0.998826\nint8_min_cosine = 0.999\n")]);
    options.towers.precision = Precision::Int8;
    let error = server::load_engine(&options).err().expect("refused").to_string();
    assert!(error.contains("text") && error.contains("0.999 (int8_min_cosine)"), "{error}");
}
