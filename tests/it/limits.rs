//! Limits crossed through gRPC, each with the precise error it gives: image bytes and pixels,
//! point-cloud arrays, the gRPC message size, the request rate and the concurrent streams of one
//! connection. (Items per request and text length are crossed in api_errors.rs, audio bytes and
//! duration in embed_audio.rs, point-cloud file bytes and points in embed_point_cloud.rs.)

use std::sync::Arc;
use std::time::Duration;

use bindery::api::pb;
use bindery::api::pb::embedder_client::EmbedderClient;
use bindery::server::auth::ApiKeys;
use bindery::server::rate_limit::{RETRY_AFTER_KEY, RateLimit};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::common::*;

const IMAGES: Fixtures = Fixtures("images");

#[tokio::test]
async fn image_byte_and_pixel_limits_name_the_input_and_the_limit() {
    let mut options = fixture_options();
    options.limits.inputs.update(|l: &mut bindery::modality::image::ImageLimits| l.max_bytes = 60_000);
    options.limits.inputs.update(|l: &mut bindery::modality::image::ImageLimits| l.max_pixels = 50_000);
    let mut server = start(options).await;

    let status = server
        .client
        .embed(request(vec![image("big", IMAGES.read("png_rgb.png"))]))
        .await
        .expect_err("over the byte limit");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "input \"big\" (image): image is 71747 bytes, more than the limit of 60000 bytes"
    );

    let status = server
        .client
        .embed(request(vec![image("wide", IMAGES.read("png_333x177.png"))]))
        .await
        .expect_err("over the pixel limit");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "input \"wide\" (image): image is 333x177 = 58941 pixels, more than the limit of 50000 pixels"
    );

    server.client.embed(request(vec![image("small", IMAGES.read("png_1x1.png"))])).await.expect("under both");
}

fn cloud(id: &str, points: usize) -> pb::Input {
    let xyz = (0..points * 3).map(|i| i as f32 * 0.01).collect();
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::PointCloud(pb::PointCloud { xyz, ..Default::default() })),
    }
}

#[tokio::test]
async fn point_cloud_arrays_over_the_point_limit_are_refused() {
    let mut options = fixture_options();
    options
        .limits
        .inputs
        .update(|l: &mut bindery::modality::point_cloud::PointCloudLimits| l.max_points = 100);
    let mut server = start(options).await;
    let status = server.client.embed(request(vec![cloud("scan", 101)])).await.expect_err("101 points");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "input \"scan\" (point_cloud): point cloud has 101 points, more than the limit of 100"
    );
    server.client.embed(request(vec![cloud("ok", 100)])).await.expect("100 points");
}

#[tokio::test]
async fn messages_over_the_grpc_size_limit_are_refused_before_decoding() {
    let mut options = fixture_options();
    options.max_message_bytes = 32 << 10;
    let mut server = start(options).await;
    let huge = server.client.embed(request(vec![image("huge", vec![0xAB; 40_000])])).await;
    assert_refused(huge, Code::OutOfRange, &["message length too large", "the limit is: 32768 bytes"]);
    server.client.embed(request(vec![text("t", "a red cube")])).await.expect("small message");
}

fn retry_hint(status: &Status) -> u64 {
    status.metadata().get(RETRY_AFTER_KEY).expect("retry hint").to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn request_rate_over_the_limit_gets_resource_exhausted_with_a_retry_hint() {
    let mut options = fixture_options();
    options.rate_limit = Some(RateLimit::new(2.0, Some(2)).unwrap());
    let mut server = start(options).await;
    let call = |client: &mut EmbedderClient<Channel>| {
        let mut client = client.clone();
        async move { client.embed(request(vec![text("t", "a red cube")])).await }
    };
    call(&mut server.client).await.expect("first of the burst");
    call(&mut server.client).await.expect("second of the burst");
    let over = call(&mut server.client).await;
    let status = assert_refused(over, Code::ResourceExhausted, &["limit of 2 per second (burst 2)"]);
    let hint = retry_hint(&status);
    assert!((1..=500).contains(&hint), "refill every 500 ms, hint {hint} ms");
    assert!(status.message().contains(&format!("retry in {hint} ms")), "{}", status.message());

    // Probes are not counted against the rate.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel.clone());
    for _ in 0..5 {
        health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.expect("health");
    }

    tokio::time::sleep(Duration::from_millis(hint)).await;
    call(&mut server.client).await.expect("served again after the hinted delay");
}

#[tokio::test]
async fn each_api_key_has_its_own_bucket() {
    const A: &str = "key-a-0123456789abcdef";
    const B: &str = "key-b-0123456789abcdef";
    let mut keys = ApiKeys::new();
    keys.add_text(&format!("{A}\n{B}"), "test keys").unwrap();
    let mut options = fixture_options();
    options.api_keys = Some(Arc::new(keys));
    options.rate_limit = Some(RateLimit::new(0.5, Some(1)).unwrap());
    let server = start(options).await;
    let call = |key: &'static str| {
        let mut client =
            EmbedderClient::with_interceptor(server.channel.clone(), move |mut r: Request<()>| {
                r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
                Ok(r)
            });
        async move { client.embed(request(vec![text("t", "a red cube")])).await }
    };
    call(A).await.expect("A's first request");
    let status = assert_refused(call(A).await, Code::ResourceExhausted, &["for this API key"]);
    assert!((1..=2000).contains(&retry_hint(&status)));
    call(B).await.expect("B has its own bucket");
}

#[tokio::test]
async fn concurrent_streams_per_connection_are_capped() {
    let mut options = fixture_options();
    options.max_concurrent_streams = 1;
    let mut server = start(options).await;
    // A first call makes sure the client has read the server's SETTINGS.
    server.client.embed(request(vec![text("t", "warm")])).await.expect("first call");

    // Hold the only stream open: an EmbedStream whose request side stays open.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(request(vec![text("s", "a red cube")])).await.unwrap();
    let mut replies = server
        .client
        .embed_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    replies.message().await.expect("first reply").expect("a message");

    // A second call on the same connection waits for the stream slot...
    let mut client = server.client.clone();
    let queued = tokio::spawn(async move { client.embed(request(vec![text("u", "a blue sphere")])).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!queued.is_finished(), "second call must wait while the connection's only stream is open");

    // ...while another connection is not held back.
    let other = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        EmbedderClient::new(other).embed(request(vec![text("o", "other connection")])),
    )
    .await
    .expect("other connection not blocked")
    .expect("served");

    // Closing the stream frees the slot and the queued call goes through.
    drop(tx);
    while replies.message().await.expect("stream ends cleanly").is_some() {}
    tokio::time::timeout(Duration::from_secs(10), queued)
        .await
        .expect("queued call proceeds")
        .unwrap()
        .expect("served");
}

/// The "retry in N ms" hint of a refusal message.
fn hint_in_message(message: &str) -> u64 {
    let rest = message.split("retry in ").nth(1).unwrap_or_else(|| panic!("no retry hint: {message}"));
    rest.trim_end_matches(" ms").parse().unwrap_or_else(|_| panic!("no retry hint: {message}"))
}

#[tokio::test]
async fn every_stream_message_counts_against_the_rate_and_the_stream_goes_on() {
    let mut options = fixture_options();
    options.rate_limit = Some(RateLimit::new(2.0, Some(2)).unwrap());
    let mut server = start(options).await;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    for i in 0..5 {
        tx.send(request(vec![text(&format!("m{i}"), "a red cube")])).await.unwrap();
    }
    let mut replies = server
        .client
        .embed_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("the call itself is within the rate")
        .into_inner();
    let (mut served, mut hints) = (0, Vec::new());
    for _ in 0..5 {
        let reply = replies.message().await.expect("a reply per message").expect("a message");
        match reply.error {
            None => {
                assert_eq!(reply.embeddings.len(), 1);
                served += 1;
            }
            Some(error) => {
                assert_eq!(error.code, Code::ResourceExhausted as i32, "{}", error.message);
                assert!(error.message.contains("limit of 2 per second (burst 2)"), "{}", error.message);
                let hint = hint_in_message(&error.message);
                assert!((1..=500).contains(&hint), "refill every 500 ms, hint {hint} ms");
                hints.push(hint);
            }
        }
    }
    // The burst covers two messages (the call's token pays for the first); back to back, the
    // rest arrive before the next refill.
    assert!(served >= 2, "served {served} of 5");
    assert!(!hints.is_empty(), "5 messages at once exceed a burst of 2");

    // Same stream, after the hinted delay: served again.
    tokio::time::sleep(Duration::from_millis(*hints.last().unwrap())).await;
    tx.send(request(vec![text("later", "a blue sphere")])).await.unwrap();
    let reply = replies.message().await.expect("reply after the wait").expect("a message");
    assert!(reply.error.is_none(), "{:?}", reply.error);
    assert_eq!(reply.embeddings.len(), 1);
    drop(tx);
    while replies.message().await.expect("stream ends cleanly").is_some() {}
}
