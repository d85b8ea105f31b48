//! Request-level errors, ListModels, health, reflection and streaming over the real server.

use bindery::api::pb;
use futures::StreamExt;
use tonic::Code;

use crate::common::*;

#[tokio::test]
async fn unknown_model_is_not_found_and_names_the_loaded_ones() {
    let mut server = start_fixture().await;
    let mut req = request(vec![text("t", "a cat")]);
    req.model = "no-such-model".into();
    assert_refused(server.client.embed(req).await, Code::NotFound, &["no-such-model", "imagebind-fixture"]);
}

#[tokio::test]
async fn bad_inputs_get_invalid_argument_naming_the_input() {
    let mut server = start_fixture().await;
    let blank = server.client.embed(request(vec![text("blank", "")])).await;
    assert_refused(blank, Code::InvalidArgument, &["blank", "empty"]);

    let whitespace = server.client.embed(request(vec![text("ws", " \t\n ")])).await;
    assert_refused(whitespace, Code::InvalidArgument, &["ws", "cleanup"]);

    let none = pb::Input { id: "nothing-set".into(), payload: None };
    assert_refused(server.client.embed(request(vec![none])).await, Code::InvalidArgument, &["nothing-set"]);

    assert_refused(server.client.embed(request(vec![])).await, Code::InvalidArgument, &[]);

    // Unnamed inputs are named by position.
    let unnamed = pb::Input { id: String::new(), payload: Some(pb::input::Payload::Text(String::new())) };
    let status = server.client.embed(request(vec![text("ok", "fine"), unnamed])).await.expect_err("unnamed");
    assert!(status.message().contains("#1"), "{}", status.message());
}

#[tokio::test]
async fn a_model_without_a_tower_for_a_modality_names_what_it_serves() {
    // bind-mini serves text, image, audio and point clouds; sensor inputs sent to it are refused.
    let mut server = start_fixture().await;
    let inputs = [
        pb::input::Payload::DepthMap(pb::Depth { data: vec![1, 2, 3], ..Default::default() }),
        pb::input::Payload::ThermalImage(pb::Thermal { data: vec![1, 2, 3], ..Default::default() }),
        pb::input::Payload::Imu(pb::Imu { values: vec![0.0; 12], channels: 6, ..Default::default() }),
    ];
    for payload in inputs {
        let modality = bindery::shared::Modality::of_input(&payload).expect("a sensor modality");
        let input = pb::Input { id: "sensor".into(), payload: Some(payload) };
        let reply =
            server.client.embed(pb::EmbedRequest { model: "bind-mini".into(), ..request(vec![input]) }).await;
        assert_refused(
            reply,
            Code::InvalidArgument,
            &[
                "sensor",
                "bind-mini",
                &format!("has no {modality} encoder"),
                "text, image, audio, point_cloud",
            ],
        );
    }
}

#[tokio::test]
async fn too_many_inputs_are_refused() {
    let mut options = fixture_options();
    options.limits.max_items_per_request = 3;
    let mut server = start(options).await;
    let inputs = (0..4).map(|i| text(&format!("t{i}"), "a cat")).collect();
    assert_refused(
        server.client.embed(request(inputs)).await,
        Code::InvalidArgument,
        &["4 inputs", "limit of 3"],
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

    // The v1alpha protocol too (Python's grpcio-reflection speaks only that one).
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let req = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let mut replies = AlphaClient::new(server.channel.clone())
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .expect("v1alpha reflection")
        .into_inner();
    let first = replies.next().await.expect("a reply").expect("ok");
    let Some(AlphaResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("unexpected v1alpha reflection reply");
    };
    assert!(list.service.iter().any(|s| s.name == "bindery.v1.Collections"), "{:?}", list.service);
}

#[tokio::test]
async fn text_over_the_length_limit_is_refused() {
    let mut options = fixture_options();
    options.limits.inputs.update(|l: &mut bindery::modality::text::TextLimits| l.max_bytes = 16);
    let mut server = start(options).await;
    let essay = server
        .client
        .embed(request(vec![text("essay", "a sentence that is longer than sixteen bytes")]))
        .await;
    assert_refused(essay, Code::InvalidArgument, &["essay", "limit of 16 bytes"]);
    assert!(server.client.embed(request(vec![text("short", "a cat")])).await.is_ok());
}

#[tokio::test]
async fn unary_replies_say_how_many_inputs_came_from_the_cache() {
    let mut server = start_fixture().await;
    let hits = |reply: &tonic::Response<pb::EmbedResponse>| -> u64 {
        reply
            .metadata()
            .get(bindery::api::CACHE_HITS_KEY)
            .expect("cache hits key")
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    let inputs = || vec![text("a", "a cached sentence"), text("b", "another one")];
    let first = server.client.embed(request(inputs())).await.expect("first");
    assert_eq!(hits(&first), 0);
    let second = server.client.embed(request(inputs())).await.expect("second");
    assert_eq!(hits(&second), 2);
    let bypass = server.client.embed(uncached(inputs())).await.expect("uncached");
    assert_eq!(hits(&bypass), 0);
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

/// Asserts `result` failed with INVALID_ARGUMENT and exactly `message`.
fn assert_limit<T: std::fmt::Debug>(result: Result<T, tonic::Status>, message: &str) {
    let status = result.expect_err(message);
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert_eq!(status.message(), message);
}

#[tokio::test]
async fn every_rpc_counts_its_entries_against_the_request_limits() {
    let mut options = fixture_options();
    options.limits.max_items_per_request = 3;
    options.limits.max_labels = 4;
    options.limits.max_templates = 2;
    options.limits.max_label_prompts = 6;
    let mut server = start(options).await;
    let unit = |i: usize| {
        let mut v = vec![0.0f32; 32];
        v[i] = 1.0;
        pb::SimilarityItem { item: Some(pb::similarity_item::Item::Vector(pb::Vector { values: v })) }
    };

    // Similarity: queries and candidates together, raw vectors included.
    let similarity = |queries: usize, candidates: usize| pb::SimilarityRequest {
        queries: (0..queries).map(unit).collect(),
        candidates: (0..candidates).map(unit).collect(),
        ..Default::default()
    };
    assert_limit(
        server.client.similarity(similarity(2, 2)).await,
        "request has 4 items (queries and candidates), more than the limit of 3 per request",
    );
    let reply = server.client.similarity(similarity(1, 2)).await.expect("at the limit").into_inner();
    assert_eq!((reply.rows, reply.cols, reply.cosine), (1, 2, vec![1.0, 0.0]));

    // Classify: inputs, labels, templates and their product.
    let classify = |inputs: usize, labels: usize, templates: &[&str]| pb::ClassifyRequest {
        inputs: (0..inputs).map(|i| text(&format!("t{i}"), "a red cube")).collect(),
        labels: (0..labels).map(|i| format!("shape {i}")).collect(),
        templates: templates.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    };
    assert_limit(
        server.client.classify(classify(4, 2, &[])).await,
        "request has 4 inputs, more than the limit of 3 per request",
    );
    assert_limit(
        server.client.classify(classify(1, 5, &[])).await,
        "request has 5 labels, more than the limit of 4 per request",
    );
    assert_limit(
        server.client.classify(classify(1, 2, &["a {}", "the {}", "one {}"])).await,
        "request has 3 templates, more than the limit of 2 per request",
    );
    assert_limit(
        server.client.classify(classify(1, 4, &["a {}", "the {}"])).await,
        "request has 8 label prompts (labels x templates), more than the limit of 6 per request",
    );
    let reply = server.client.classify(classify(1, 3, &["a {}", "the {}"])).await.expect("at the limits");
    assert_eq!(reply.into_inner().label_cache_misses, 3);

    // EmbedStream: each message is a request; the one over the limit fails alone.
    let messages = vec![
        request((0..4).map(|i| text(&format!("s{i}"), "a cat")).collect()),
        request(vec![text("after", "a cat")]),
    ];
    let replies: Vec<_> = server
        .client
        .embed_stream(futures::stream::iter(messages))
        .await
        .expect("stream")
        .into_inner()
        .collect()
        .await;
    let first = replies[0].as_ref().expect("an error response, not a broken stream");
    let error = first.error.as_ref().expect("the first message fails");
    assert_eq!(error.code, Code::InvalidArgument as i32);
    assert_eq!(error.message, "request has 4 inputs, more than the limit of 3 per request");
    assert_eq!(replies[1].as_ref().expect("second").embeddings.len(), 1);

    // Collections: Upsert items, Get and Delete ids; a refused call changes nothing.
    let mut c = collections_client(&server);
    c.create_collection(pb::CreateCollectionRequest { name: "limited".into(), ..Default::default() })
        .await
        .expect("create");
    let items = |n: usize| pb::UpsertRequest {
        collection: "limited".into(),
        items: (0..n)
            .map(|i| pb::Item {
                id: format!("v{i}"),
                source: Some(pb::item::Source::Vector(pb::Vector {
                    values: (0..32).map(|d| if d == i { 1.0 } else { 0.0 }).collect(),
                })),
                ..Default::default()
            })
            .collect(),
    };
    assert_limit(c.upsert(items(4)).await, "request has 4 items, more than the limit of 3 per request");
    let ids: Vec<String> = (0..4).map(|i| format!("v{i}")).collect();
    let get = pb::GetRequest { collection: "limited".into(), ids: ids.clone(), ..Default::default() };
    assert_limit(c.get(get).await, "request has 4 ids, more than the limit of 3 per request");
    let delete = pb::DeleteRequest { collection: "limited".into(), ids };
    assert_limit(c.delete(delete).await, "request has 4 ids, more than the limit of 3 per request");
    let stats_request = || pb::StatsRequest { collection: "limited".into() };
    let before = c.stats(stats_request()).await.expect("stats").into_inner();
    assert_eq!((before.collection.map(|i| i.count), before.last_sequence), (Some(0), 0));
    assert_eq!(c.upsert(items(3)).await.expect("at the limit").into_inner().upserted, 3);
    let after = c.stats(stats_request()).await.expect("stats").into_inner();
    assert_eq!(after.collection.map(|i| i.count), Some(3));
}

#[tokio::test]
async fn malformed_protobuf_is_invalid_argument_naming_the_message_and_the_server_goes_on() {
    let mut server = start_fixture().await;
    // A length prefix (32 bytes) running past the end of the message, sent to RPCs of both
    // services: the status names the message type and where decoding stopped.
    let cut = vec![0x12, 0x20, 0x0a, 0x01, b't'];
    for (path, message) in [
        ("/bindery.v1.Embedder/Embed", "bindery.v1.EmbedRequest"),
        ("/bindery.v1.Embedder/Similarity", "bindery.v1.SimilarityRequest"),
        ("/bindery.v1.Collections/Upsert", "bindery.v1.UpsertRequest"),
    ] {
        let status = raw_unary(&server.channel, path, cut.clone()).await.expect_err("malformed");
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
        let expected = format!("not a valid {message} message: ");
        assert!(status.message().starts_with(&expected), "{path}: {}", status.message());
        assert!(status.message().ends_with("buffer underflow"), "{path}: {}", status.message());
    }
    // Bytes that are no protobuf at all (wire type 7 does not exist).
    let status = raw_unary(&server.channel, "/bindery.v1.Embedder/Embed", vec![0xff; 16]).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // The same connection then serves a well-formed request.
    let reply = server.client.embed(request(vec![text("t", "a red cube")])).await.expect("served");
    assert_eq!(reply.into_inner().embeddings.len(), 1);
}
