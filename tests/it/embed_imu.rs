//! IMU embeddings served over gRPC match the reference (goldens from
//! `tools/make_sensor_fixtures.py`: the tower's contract and Weaviate's CSV convention in
//! `sensors.py`, transposed, resampled with numpy's interp, and the PyTorch fixture model), for
//! CSV, NPY and packed values, and bad series are refused naming the input and the problem.

use bindery::api::pb;
use serde::Deserialize;
use tonic::Code;

use crate::common::*;

const IMU: Fixtures = Fixtures("imu");

#[derive(Deserialize)]
struct ImuCase {
    id: String,
    file: String,
    sample_rate_hz: f32,
    embedding: Vec<f32>,
}

/// The request input of a golden case: packed values for `.f32` files, the file otherwise.
fn input_of(case: &ImuCase) -> pb::Input {
    let bytes = IMU.read(&case.file);
    let imu = if case.file.ends_with(".f32") {
        let values = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        pb::Imu { values, channels: 6, sample_rate_hz: case.sample_rate_hz, ..Default::default() }
    } else {
        pb::Imu { data: bytes, sample_rate_hz: case.sample_rate_hz, ..Default::default() }
    };
    pb::Input { id: case.id.clone(), payload: Some(pb::input::Payload::Imu(imu)) }
}

fn imu_values(id: &str, values: Vec<f32>, channels: u32) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::Imu(pb::Imu { values, channels, ..Default::default() })),
    }
}

fn imu_file(id: &str, data: Vec<u8>) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::Imu(pb::Imu { data, ..Default::default() })),
    }
}

#[tokio::test]
async fn every_imu_golden_matches_the_reference() {
    let cases: Vec<ImuCase> = IMU.json("cases.json");
    assert!(cases.len() >= 10, "CSV, TSV, NPY both ways, values, resampled, short and long");
    let mut server = start_fixture().await;
    let reply = server.client.embed(uncached(cases.iter().map(input_of).collect())).await.expect("embed");
    let goldens: Vec<_> = cases.iter().map(|c| (c.id.as_str(), c.file.as_str(), &c.embedding[..])).collect();
    assert_matches_goldens(&reply.into_inner().embeddings, &goldens, pb::Modality::Imu);
}

#[tokio::test]
async fn imu_classifies_against_text_and_searches_a_collection() {
    let cases: Vec<ImuCase> = IMU.json("cases.json");
    let walk = cases.iter().find(|c| c.id == "csv_weaviate_2000").expect("case");
    let mut server = start_fixture().await;
    let labels = vec!["walking".to_string(), "sitting".to_string(), "cycling".to_string()];
    let reply = server
        .client
        .classify(pb::ClassifyRequest {
            inputs: vec![input_of(walk)],
            labels: labels.clone(),
            templates: vec!["a person {}".into()],
            top_k: 3,
            ..Default::default()
        })
        .await
        .expect("classify")
        .into_inner();
    let result = &reply.results[0];
    // IMU's scale (5) times text's (1 / 0.07).
    assert!((result.logit_scale - 5.0 * 14.285714).abs() < 1e-2, "scale {}", result.logit_scale);
    // The probabilities are the softmax of the scaled cosines between the reference IMU
    // embedding and the served label embeddings.
    let prompts = labels.iter().map(|l| text(l, &format!("a person {l}"))).collect();
    let label_vectors = server.client.embed(request(prompts)).await.expect("labels").into_inner().embeddings;
    let label_vectors: Vec<Vec<f32>> = label_vectors.into_iter().map(|e| e.vector).collect();
    assert_softmax_of_scaled_cosines(result, &walk.embedding, &label_vectors);

    let mut c = collections_client(&server);
    c.create_collection(pb::CreateCollectionRequest { name: "motion".into(), ..Default::default() })
        .await
        .expect("create");
    let items = cases
        .iter()
        .take(4)
        .map(|case| pb::Item {
            id: case.id.clone(),
            source: Some(pb::item::Source::Input(input_of(case))),
            ..Default::default()
        })
        .collect();
    c.upsert(pb::UpsertRequest { collection: "motion".into(), items }).await.expect("upsert");
    let hits = c
        .search(pb::SearchRequest {
            collection: "motion".into(),
            query: Some(pb::search_request::Query::Input(input_of(walk))),
            top_k: 2,
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner()
        .hits;
    assert_eq!(hits[0].id, walk.id);
    assert_eq!(hits[0].modality, pb::Modality::Imu as i32);
}

#[tokio::test]
async fn bad_imu_series_are_refused_naming_the_input_and_the_problem() {
    let mut options = fixture_options();
    options.limits.inputs.update(|l: &mut bindery::modality::imu::ImuLimits| {
        l.max_bytes = 100_000;
        l.max_samples = 5000;
    });
    let mut server = start(options).await;
    let mut nan = vec![0.0f32; 60];
    nan[13] = f32::NAN;
    let cases: Vec<(pb::Input, Vec<&str>)> = vec![
        (imu_values("three", vec![0.0; 30], 3), vec!["has 3 channels, the model takes 6", "acc_x"]),
        (imu_values("ragged", vec![0.0; 13], 6), vec!["13 values do not divide into 6 channels"]),
        (imu_values("nan", nan, 6), vec!["sample 3 of channel acc_y is not finite"]),
        (imu_values("empty", Vec::new(), 6), vec!["IMU series is empty"]),
        (
            imu_values("long", vec![0.0; 6 * 5001], 6),
            vec!["5001 samples per channel, more than the limit of 5000"],
        ),
        (
            imu_file("words", b"a_x,a_y,a_z,g_x,g_y,g_z\n1,2,three,4,5,6\n".to_vec()),
            vec!["line 2, column a_z: \"three\" is not a number"],
        ),
        (imu_file("headless", b"1,2,3,4,5,6\n".to_vec()), vec!["not a header naming the columns"]),
        (imu_file("columns", b"a_x,a_y,a_z\n1,2,3\n".to_vec()), vec!["no column for channel gyro_x"]),
        (imu_file("binary", vec![0xff, 0xfe, 0x00, 0x01, 0x80]), vec!["neither NPY nor CSV"]),
        (imu_file("big", IMU.read("weaviate_2000.csv")), vec!["more than the limit of 100000 bytes"]),
        (imu_file("npy", IMU.read("sample_major.npy")[..2000].to_vec()), vec!["truncated NPY file"]),
        (
            pb::Input {
                id: "rate".into(),
                payload: Some(pb::input::Payload::Imu(pb::Imu {
                    values: vec![0.0; 60],
                    channels: 6,
                    sample_rate_hz: -5.0,
                    ..Default::default()
                })),
            },
            vec!["sample_rate_hz must be positive"],
        ),
    ];
    for (input, parts) in cases {
        let mut expected = vec![input.id.clone()];
        expected.extend(parts.iter().map(|p| p.to_string()));
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        assert_refused(server.client.embed(request(vec![input])).await, Code::InvalidArgument, &expected);
    }
    // A series shorter than one 8-sample patch is padded and served.
    let ok = server.client.embed(request(vec![imu_values("tiny", vec![0.5; 18], 6)])).await;
    assert!(ok.is_ok(), "{ok:?}");
}
