//! The HTTP API on a real server: every JSON route against its gRPC twin, the OpenAPI document
//! against the routes, OpenAI's `/v1/embeddings`, bad requests, API keys and rate limits, and
//! the long-text policy on both protocols.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bindery::api::pb;
use bindery::server::auth::ApiKeys;
use bindery::server::rate_limit::RateLimit;
use serde_json::{Value, json};
use tonic::Code;

use crate::common::*;

fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("a list of numbers")
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect()
}

/// A text over the fixture's 77-token context: 100 one-token words.
fn long_text() -> String {
    vec!["cat"; 100].join(" ")
}

/// A fixture server, a test image, and gRPC's embeddings of "a red cube" and of the image.
async fn server_with_grpc_answers(seed: u32) -> (TestServer, Vec<u8>, pb::EmbedResponse) {
    let mut server = start_fixture().await;
    let image_bytes = png(seed, 40);
    let grpc = server
        .client
        .embed(request(vec![text("t", "a red cube"), image("i", image_bytes.clone())]))
        .await
        .expect("gRPC embed")
        .into_inner();
    (server, image_bytes, grpc)
}

#[tokio::test]
async fn the_json_routes_answer_what_grpc_answers() {
    let (mut server, image_bytes, grpc) = server_with_grpc_answers(7).await;
    let reply = http_post_json(
        server.http,
        "/v1/embed",
        &json!({"inputs": [
            {"id": "t", "text": "a red cube"},
            {"id": "i", "image": BASE64.encode(&image_bytes)}
        ]}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let body = reply.json();
    assert_eq!(body["model"], "imagebind-fixture");
    let embeddings = body["embeddings"].as_array().expect("embeddings");
    assert_eq!(embeddings.len(), 2);
    for (http, grpc) in embeddings.iter().zip(&grpc.embeddings) {
        assert_eq!(http["id"], grpc.id.as_str());
        assert_eq!(floats(&http["vector"]), grpc.vector, "the same vector as gRPC");
    }
    assert_eq!(embeddings[0]["modality"], "MODALITY_TEXT");
    assert_eq!(embeddings[1]["modality"], "MODALITY_IMAGE");
    assert!(reply.header("bindery-cache-hits").is_some(), "gRPC metadata travels as headers");

    let models = http_request(server.http, "GET", "/v1/models", &[], b"").await;
    assert_eq!(models.status, 200);
    assert_eq!(models.json()["defaultModel"], "imagebind-fixture");

    let similarity = http_post_json(
        server.http,
        "/v1/similarity",
        &json!({
            "queries": [{"input": {"text": "a red cube"}}],
            "candidates": [{"input": {"text": "a red cube"}}, {"input": {"text": "a dog"}}],
        }),
    )
    .await;
    assert_eq!(similarity.status, 200, "{}", similarity.text());
    let similarity = similarity.json();
    assert_eq!((similarity["rows"].as_u64(), similarity["cols"].as_u64()), (Some(1), Some(2)));
    let cosine = floats(&similarity["cosine"]);
    assert!((cosine[0] - 1.0).abs() < 1e-5 && cosine[1] < cosine[0], "{cosine:?}");

    let classify = http_post_json(
        server.http,
        "/v1/classify",
        &json!({"inputs": [{"text": "a red cube"}], "labels": ["red cube", "dog"], "topK": 1}),
    )
    .await;
    assert_eq!(classify.status, 200, "{}", classify.text());
    let grpc_classify = server
        .client
        .classify(pb::ClassifyRequest {
            inputs: vec![text("", "a red cube")],
            labels: vec!["red cube".into(), "dog".into()],
            top_k: 1,
            ..Default::default()
        })
        .await
        .expect("gRPC classify")
        .into_inner();
    let result = &classify.json()["results"][0];
    assert_eq!(floats(&result["probabilities"]), grpc_classify.results[0].probabilities);
    assert_eq!(result["top"][0]["label"], grpc_classify.results[0].top[0].label.as_str());

    // The same request metrics as gRPC calls.
    let metrics = scrape(server.metrics).await;
    let ok = metric(&metrics, "bindery_requests_total", &[("modality", "image"), ("status", "ok")]);
    assert_eq!(ok, Some(2.0), "one gRPC and one HTTP image request");
}

#[tokio::test]
async fn collections_round_trip_over_http() {
    let server = start_fixture().await;
    let create = http_post_json(server.http, "/v1/collections", &json!({"name": "shapes"})).await;
    assert_eq!(create.status, 200, "{}", create.text());
    let upsert = http_post_json(
        server.http,
        "/v1/collections/shapes/upsert",
        &json!({"items": [
            {"id": "cube", "input": {"text": "a red cube"}, "metadata": {"colour": "red"}},
            {"id": "dog", "input": {"text": "a dog"}}
        ]}),
    )
    .await;
    assert_eq!(upsert.status, 200, "{}", upsert.text());
    let search = http_post_json(
        server.http,
        "/v1/collections/shapes/search",
        &json!({"input": {"text": "a red cube"}, "topK": 1}),
    )
    .await;
    assert_eq!(search.status, 200, "{}", search.text());
    assert_eq!(search.json()["hits"][0]["id"], "cube");
    let get = http_post_json(server.http, "/v1/collections/shapes/get", &json!({"ids": ["cube"]})).await;
    assert_eq!(get.status, 200, "{}", get.text());
    assert_eq!(get.json()["items"][0]["metadata"]["colour"], "red");
    let stats = http_request(server.http, "GET", "/v1/collections/shapes/stats", &[], b"").await;
    assert_eq!(stats.status, 200, "{}", stats.text());
    assert_eq!(stats.json()["collection"]["count"], "2", "uint64 is a string in canonical JSON");
    // The path names the collection; a body naming another is refused.
    let mismatch = http_post_json(
        server.http,
        "/v1/collections/shapes/get",
        &json!({"collection": "other", "ids": ["x"]}),
    )
    .await;
    assert_eq!(mismatch.status, 400);
    assert!(mismatch.text().contains("\\\"other\\\""), "{}", mismatch.text());
    let delete = http_post_json(server.http, "/v1/collections/shapes/delete", &json!({"ids": ["dog"]})).await;
    assert_eq!(delete.status, 200, "{}", delete.text());
    let listed = http_request(server.http, "GET", "/v1/collections", &[], b"").await;
    assert_eq!(listed.json()["collections"][0]["name"], "shapes");
    let dropped = http_request(server.http, "DELETE", "/v1/collections/shapes", &[], b"").await;
    assert_eq!(dropped.status, 200, "{}", dropped.text());
    let gone = http_request(server.http, "GET", "/v1/collections/shapes/stats", &[], b"").await;
    assert_eq!(gone.status, 404, "{}", gone.text());
    assert_eq!(gone.json()["error"]["code"], "NOT_FOUND");
}

#[tokio::test]
async fn every_route_in_the_openapi_document_is_served() {
    let server = start_fixture().await;
    let served = http_request(server.http, "GET", "/openapi.json", &[], b"").await;
    assert_eq!(served.status, 200);
    let document = served.json();
    assert_eq!(document, serde_json::from_str::<Value>(bindery::server::http::openapi::DOCUMENT).unwrap());
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 14, "{} paths", paths.len());
    for (path, operations) in paths {
        for method in operations.as_object().expect("operations").keys() {
            let concrete = path.replace("{collection}", "absent");
            let reply = http_request(server.http, &method.to_ascii_uppercase(), &concrete, &[], b"").await;
            // Any answer but "no such route" or "no such method": an empty body is often invalid.
            assert!(
                reply.status != 405 && !(reply.status == 404 && reply.text().contains("no route")),
                "{method} {path}: {} {}",
                reply.status,
                reply.text()
            );
        }
    }
    for (path, expected) in [("/health", "ok\n"), ("/ready", "ready\n")] {
        let reply = http_request(server.http, "GET", path, &[], b"").await;
        assert_eq!((reply.status, reply.text().as_str()), (200, expected));
    }
}

#[tokio::test]
async fn bad_requests_get_a_precise_status_and_the_server_keeps_serving() {
    let mut options = fixture_options();
    options.max_message_bytes = 64 << 10;
    let server = start(options).await;
    // Method, path, body, HTTP status, parts of the message.
    type Case<'a> = (&'a str, &'a str, &'a [u8], u16, &'a [&'a str]);
    let cases: [Case; 7] = [
        ("POST", "/v1/embed", b"{\"inputs\": [", 400, &["not JSON"]),
        ("POST", "/v1/embed", b"{\"inputs\": 5}", 400, &["EmbedRequest"]),
        ("POST", "/v1/embed", b"{\"inputz\": []}", 400, &["inputz"]),
        ("POST", "/v1/embed", b"{\"inputs\": []}", 400, &["no inputs"]),
        ("GET", "/v1/models", b"{}", 400, &["takes no body"]),
        ("PUT", "/v1/embed", b"{}", 405, &["PUT"]),
        ("POST", "/v1/nothing", b"{}", 404, &["no route", "/v1/nothing"]),
    ];
    for (method, path, body, status, parts) in cases {
        let reply =
            http_request(server.http, method, path, &[("Content-Type", "application/json")], body).await;
        assert_eq!(
            reply.status,
            status,
            "{method} {path} {}: {}",
            String::from_utf8_lossy(body),
            reply.text()
        );
        let message = reply.json()["error"]["message"].as_str().expect("error message").to_string();
        for part in parts {
            assert!(message.contains(part), "{method} {path}: {message:?} lacks {part:?}");
        }
    }
    // An unknown model: the gRPC code's HTTP status and the gRPC message.
    let grpc = connect(server.addr)
        .await
        .embed(pb::EmbedRequest { model: "nope".into(), ..request(vec![text("t", "a")]) })
        .await
        .expect_err("unknown model");
    let reply =
        http_post_json(server.http, "/v1/embed", &json!({"model": "nope", "inputs": [{"text": "a"}]})).await;
    assert_eq!(reply.json()["error"]["message"], grpc.message());
    assert_eq!(reply.json()["error"]["code"], bindery::server::http::code_name(grpc.code()));
    assert_eq!(reply.status, bindery::server::http::http_status(grpc.code()).as_u16());
    // A body over 4 x the message limit, and a body under it whose protobuf is over it.
    let huge = vec![b' '; (64 << 10) * 4 + 1];
    let reply = http_request(server.http, "POST", "/v1/embed", &[], &huge).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    let image_over_limit = json!({"inputs": [{"image": BASE64.encode(vec![0u8; 80 << 10])}]});
    let reply = http_post_json(server.http, "/v1/embed", &image_over_limit).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(reply.text().contains("--max-message-bytes"), "{}", reply.text());
    // A broken image is the gRPC refusal, naming the input.
    let reply =
        http_post_json(server.http, "/v1/embed", &json!({"inputs": [{"id": "pic", "image": "AAAA"}]})).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(reply.text().contains("pic"), "{}", reply.text());
    let ok = http_post_json(server.http, "/v1/embed", &json!({"inputs": [{"text": "still here"}]})).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn api_keys_and_rate_limits_hold_on_http() {
    const RW: &str = "rw-0123456789abcdef0123";
    const RO: &str = "ro-0123456789abcdef0123";
    let mut keys = ApiKeys::new();
    keys.add_text(&format!("{RW}\n{RO} ro\n"), "test keys").unwrap();
    let mut options = fixture_options();
    options.api_keys = Some(Arc::new(keys));
    options.rate_limit = Some(RateLimit::new(0.5, Some(3)).unwrap());
    let server = start_bare(options).await;
    let body = json!({"inputs": [{"text": "a"}]}).to_string();
    let call = |key: Option<&'static str>, path: &'static str, body: String| {
        let addr = server.http;
        async move {
            let auth = key.map(|k| format!("Bearer {k}"));
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
            http_request(addr, "POST", path, &headers, body.as_bytes()).await
        }
    };
    let missing = call(None, "/v1/embed", body.clone()).await;
    assert_eq!(missing.status, 401);
    assert!(missing.text().contains("missing API key"), "{}", missing.text());
    assert_eq!(call(Some("wrong-0123456789abcdef"), "/v1/embed", body.clone()).await.status, 401);
    assert_eq!(call(Some(RW), "/v1/embed", body.clone()).await.status, 200);
    let read_only = call(Some(RO), "/v1/collections", json!({"name": "c"}).to_string()).await;
    assert_eq!(read_only.status, 403, "{}", read_only.text());
    assert!(read_only.text().contains("read-only"), "{}", read_only.text());
    // Probes need no key.
    assert_eq!(http_request(server.http, "GET", "/ready", &[], b"").await.status, 200);
    // The burst of 3 is spent (two calls above charged this key... and one more), then 429.
    let mut limited = None;
    for _ in 0..4 {
        let reply = call(Some(RW), "/v1/embed", body.clone()).await;
        if reply.status == 429 {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.expect("the rate limit refuses within the burst");
    assert!(limited.header("retry-after").and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= 1));
    assert!(limited.text().contains("rate limit"), "{}", limited.text());
}

#[tokio::test]
async fn openai_embeddings_takes_strings_and_typed_items() {
    let (server, image_bytes, grpc) = server_with_grpc_answers(3).await;
    let one = http_post_json(server.http, "/v1/embeddings", &json!({"input": "a red cube"})).await;
    assert_eq!(one.status, 200, "{}", one.text());
    let one = one.json();
    assert_eq!(one["object"], "list");
    assert_eq!(one["data"][0]["object"], "embedding");
    assert_eq!(one["data"][0]["index"], 0);
    assert_eq!(floats(&one["data"][0]["embedding"]), grpc.embeddings[0].vector);
    assert_eq!(one["usage"]["prompt_tokens"], 5, "a red cube: three tokens plus start and end");
    assert_eq!(one["model"], "imagebind-fixture");

    let data_uri = format!("data:image/png;base64,{}", BASE64.encode(&image_bytes));
    let typed = http_post_json(
        server.http,
        "/v1/embeddings",
        &json!({"input": [
            "a red cube",
            {"type": "image", "data": BASE64.encode(&image_bytes)},
            {"modality": "image", "data": data_uri},
        ], "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(typed.status, 200, "{}", typed.text());
    let typed = typed.json();
    for (index, expected) in
        [(0, &grpc.embeddings[0].vector), (1, &grpc.embeddings[1].vector), (2, &grpc.embeddings[1].vector)]
    {
        let bytes =
            BASE64.decode(typed["data"][index]["embedding"].as_str().expect("base64 string")).unwrap();
        let vector: Vec<f32> =
            bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        assert_eq!(&vector, expected, "item {index}");
    }

    // Infinity's form: a top-level modality for plain strings.
    let infinity = http_post_json(
        server.http,
        "/v1/embeddings",
        &json!({"input": [BASE64.encode(&image_bytes)], "modality": "image"}),
    )
    .await;
    assert_eq!(floats(&infinity.json()["data"][0]["embedding"]), grpc.embeddings[1].vector);

    let short =
        http_post_json(server.http, "/v1/embeddings", &json!({"input": "a red cube", "dimensions": 8})).await;
    let short = floats(&short.json()["data"][0]["embedding"]);
    assert_eq!(short.len(), 8);
    assert!((short.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5, "renormalised");

    for (body, part) in [
        (json!({"input": [[1, 2, 3]]}), "token ids"),
        (json!({"input": "a", "encoding_format": "int8"}), "encoding_format"),
        (json!({"input": "a", "colour": "red"}), "colour"),
        (json!({"input": [{"type": "smell", "data": "AAAA"}]}), "smell"),
        (json!({"input": [{"type": "image", "data": "not base64!"}]}), "input[0]"),
        (json!({"input": [{"type": "image", "data": "data:image/png,raw"}]}), "base64"),
        (json!({"input": []}), "empty"),
    ] {
        let reply = http_post_json(server.http, "/v1/embeddings", &body).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        let error = &reply.json()["error"];
        assert_eq!(error["type"], "invalid_request_error");
        assert!(error["message"].as_str().unwrap().contains(part), "{body}: {error}");
    }
}

#[tokio::test]
async fn long_text_is_truncated_and_reported_or_refused_on_both_protocols() {
    let mut server = start_fixture().await;
    let long = long_text();
    // gRPC: truncated by default, and the reply says so with the whole text's token count.
    let reply = server
        .client
        .embed(request(vec![text("long", &long), text("short", "a dog")]))
        .await
        .expect("truncated by default")
        .into_inner();
    let (cut, fits) = (&reply.embeddings[0], &reply.embeddings[1]);
    assert!(cut.truncated && cut.tokens == 102, "{} tokens, truncated {}", cut.tokens, cut.truncated);
    assert!(!fits.truncated && fits.tokens == 4, "{} tokens", fits.tokens);
    let refused = server
        .client
        .embed(pb::EmbedRequest {
            text_truncation: pb::TextTruncation::Error as i32,
            ..request(vec![text("short", "a dog"), text("long", &long)])
        })
        .await;
    assert_refused(refused, Code::InvalidArgument, &["long", "102 tokens", "context of 77"]);
    // A refusing request is not answered from a truncated vector in the cache.
    let again = server
        .client
        .embed(pb::EmbedRequest {
            text_truncation: pb::TextTruncation::Error as i32,
            ..request(vec![text("long", &long)])
        })
        .await;
    assert_refused(again, Code::InvalidArgument, &["102 tokens"]);

    // OpenAI: usage counts the tokens and lists the truncated inputs; truncate=false refuses.
    let openai = http_post_json(server.http, "/v1/embeddings", &json!({"input": ["a dog", long]})).await;
    assert_eq!(openai.status, 200, "{}", openai.text());
    let usage = &openai.json()["usage"];
    assert_eq!(usage["prompt_tokens"], 106);
    assert_eq!(usage["truncated_inputs"], json!([1]));
    let strict =
        http_post_json(server.http, "/v1/embeddings", &json!({"input": ["a dog", long], "truncate": false}))
            .await;
    assert_eq!(strict.status, 400, "{}", strict.text());
    assert!(strict.text().contains("#1") && strict.text().contains("102 tokens"), "{}", strict.text());
    // The JSON route takes the enum by name.
    let strict = http_post_json(
        server.http,
        "/v1/embed",
        &json!({"inputs": [{"text": long}], "textTruncation": "TEXT_TRUNCATION_ERROR"}),
    )
    .await;
    assert_eq!(strict.status, 400, "{}", strict.text());
}

#[tokio::test]
async fn compact_outputs_round_trip_on_the_json_route() {
    let mut server = start_fixture().await;
    for encoding in [pb::Encoding::Float16, pb::Encoding::Bfloat16, pb::Encoding::Int8, pb::Encoding::Binary]
    {
        let grpc = server
            .client
            .embed(pb::EmbedRequest {
                encoding: encoding as i32,
                dimensions: Some(16),
                ..request(vec![text("t", "a red cube")])
            })
            .await
            .expect("gRPC compact embed")
            .into_inner();
        let reply = http_post_json(
            server.http,
            "/v1/embed",
            &json!({"inputs": [{"id": "t", "text": "a red cube"}], "encoding": encoding.as_str_name(), "dimensions": 16}),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let embedding = &reply.json()["embeddings"][0];
        let packed = BASE64.decode(embedding["packed"].as_str().expect("packed bytes as base64")).unwrap();
        assert_eq!(packed, grpc.embeddings[0].packed, "{encoding:?}");
        assert_eq!(embedding["dimension"], 16);
        assert_eq!(embedding["encoding"], encoding.as_str_name());
        assert!(embedding.get("vector").is_none(), "packed encodings leave `vector` empty");
        if encoding == pb::Encoding::Int8 {
            assert_eq!(embedding["scale"].as_f64().unwrap() as f32, grpc.embeddings[0].scale);
        }
    }
}
