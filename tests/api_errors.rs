//! Request-level errors, ListModels, health, reflection and streaming over the real server.

mod common;

use bindery::api::pb;
use common::*;
use futures::StreamExt;
use tonic::Code;

#[tokio::test]
async fn unknown_model_is_not_found_and_names_the_loaded_ones() {
    let mut server = start_fixture().await;
    let mut req = request(vec![text("t", "a cat")]);
    req.model = "no-such-model".into();
    let status = server.client.embed(req).await.expect_err("unknown model");
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("no-such-model"));
    assert!(status.message().contains("imagebind-fixture"), "{}", status.message());
}

#[tokio::test]
async fn bad_inputs_get_invalid_argument_naming_the_input() {
    let mut server = start_fixture().await;
    let status = server.client.embed(request(vec![text("blank", "")])).await.expect_err("empty text");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("blank") && status.message().contains("empty"), "{}", status.message());

    let status = server.client.embed(request(vec![text("ws", " \t\n ")])).await.expect_err("whitespace");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("ws") && status.message().contains("cleanup"), "{}", status.message());

    let none = pb::Input { id: "nothing-set".into(), payload: None };
    let status = server.client.embed(request(vec![none])).await.expect_err("no payload");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("nothing-set"));

    let status = server.client.embed(request(vec![])).await.expect_err("no inputs");
    assert_eq!(status.code(), Code::InvalidArgument);

    // Unnamed inputs are named by position.
    let unnamed = pb::Input { id: String::new(), payload: Some(pb::input::Payload::Text(String::new())) };
    let status = server.client.embed(request(vec![text("ok", "fine"), unnamed])).await.expect_err("unnamed");
    assert!(status.message().contains("#1"), "{}", status.message());
}

#[tokio::test]
async fn modalities_without_a_pipeline_are_unimplemented() {
    let mut server = start_fixture().await;
    let inputs = [
        pb::input::Payload::Depth(vec![1, 2, 3]),
        pb::input::Payload::Thermal(vec![1, 2, 3]),
        pb::input::Payload::Imu(pb::Imu { values: vec![0.0; 12], channels: 6 }),
    ];
    for payload in inputs {
        let input = pb::Input { id: "later".into(), payload: Some(payload) };
        let status = server.client.embed(request(vec![input])).await.expect_err("placeholder modality");
        assert_eq!(status.code(), Code::Unimplemented, "{}", status.message());
        assert!(status.message().contains("later") && status.message().contains("not implemented"));
    }
}

#[tokio::test]
async fn too_many_inputs_are_refused() {
    let mut options = fixture_options();
    options.limits.max_items_per_request = 3;
    let mut server = start(options).await;
    let inputs = (0..4).map(|i| text(&format!("t{i}"), "a cat")).collect();
    let status = server.client.embed(request(inputs)).await.expect_err("over the limit");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("4 inputs") && status.message().contains("limit of 3"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn list_models_reports_dimension_modalities_and_logit_scales() {
    let mut server = start_fixture().await;
    let reply = server.client.list_models(pb::ListModelsRequest {}).await.expect("list").into_inner();
    assert_eq!(reply.default_model, "imagebind-fixture");
    let model = reply.models.iter().find(|m| m.name == "imagebind-fixture").expect("fixture listed");
    assert!(model.is_default);
    assert_eq!(model.dimension, 32);
    let text = model.modalities.iter().find(|m| m.modality == pb::Modality::Text as i32).expect("text");
    let image = model.modalities.iter().find(|m| m.modality == pb::Modality::Image as i32).expect("image");
    assert!(text.logit_scale > 1.0, "ImageBind scales text logits");
    assert_eq!(image.logit_scale, 1.0);
}

#[tokio::test]
async fn embed_stream_answers_each_request_in_order_and_survives_a_bad_one() {
    let mut server = start_fixture().await;
    let requests = vec![
        request(vec![text("s1", "a red cube")]),
        request(vec![text("s2", "")]),
        request(vec![text("s3", "a blue sphere")]),
    ];
    let replies: Vec<_> = server
        .client
        .embed_stream(futures::stream::iter(requests))
        .await
        .expect("stream")
        .into_inner()
        .collect()
        .await;
    assert_eq!(replies.len(), 3);
    let r1 = replies[0].as_ref().expect("first");
    assert_eq!(r1.embeddings[0].id, "s1");
    let r2 = replies[1].as_ref().expect("second is a response carrying an error");
    let err = r2.error.as_ref().expect("error set");
    assert_eq!(err.code, Code::InvalidArgument as i32);
    assert!(err.message.contains("s2"));
    let r3 = replies[2].as_ref().expect("third");
    assert_eq!(r3.embeddings[0].id, "s3");

    let unary =
        server.client.embed(request(vec![text("u", "a red cube")])).await.expect("unary").into_inner();
    assert!(cosine(&unary.embeddings[0].vector, &r1.embeddings[0].vector) > 0.999999);
}

#[tokio::test]
async fn health_reports_serving_and_reflection_lists_the_service() {
    let server = start_fixture().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    for service in ["", "bindery.v1.Embedder"] {
        let reply = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.into() })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(reply.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    }

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(server.channel.clone());
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = reflection
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .expect("reflection")
        .into_inner();
    let first = replies.next().await.expect("a reply").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("unexpected reflection reply");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"bindery.v1.Embedder"), "{names:?}");
}

#[tokio::test]
async fn text_over_the_length_limit_is_refused() {
    let mut options = fixture_options();
    options.limits.max_text_bytes = 16;
    let mut server = start(options).await;
    let status = server
        .client
        .embed(request(vec![text("essay", "a sentence that is longer than sixteen bytes")]))
        .await
        .expect_err("too long");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("essay") && status.message().contains("limit of 16 bytes"));
    assert!(server.client.embed(request(vec![text("short", "a cat")])).await.is_ok());
}

#[tokio::test]
async fn unary_replies_carry_stage_timings_in_metadata() {
    let mut server = start_fixture().await;
    let reply = server.client.embed(request(vec![text("t", "a red cube")])).await.expect("embed");
    for key in bindery::api::TIMING_KEYS {
        let value = reply.metadata().get(key).unwrap_or_else(|| panic!("{key} missing"));
        let micros: u64 = value.to_str().expect("ascii").parse().expect("integer microseconds");
        if key == "bindery-total-us" {
            assert!(micros > 0, "total time is measured");
        }
    }
}
