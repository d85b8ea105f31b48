//! Media by URL through a real server: a local media server on 127.0.0.1 (allowed explicitly),
//! inputs fetched on gRPC, the JSON route and OpenAI's endpoint, and each refusal the policy makes.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bindery::api::pb;
use bindery::server::media_url::{AddressRange, MediaUrlPolicy, Resolve, ResolveFuture};
use serde_json::json;
use tonic::Code;

use crate::common::*;

/// Serves a PNG at `/cat.png`, a redirect to the cloud metadata address, a large body and a
/// body that never comes; returns its address.
async fn media_server(image: Vec<u8>) -> std::net::SocketAddr {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/cat.png", get(move || async move { ([("content-type", "image/png")], image) }))
        .route(
            "/to-metadata",
            get(|| async {
                (http::StatusCode::FOUND, [("location", "http://169.254.169.254/latest/meta-data")])
            }),
        )
        .route("/big.png", get(|| async { vec![0u8; 256 << 10] }))
        .route(
            "/slow.png",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind media server");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Resolves every name to `addresses`.
struct FixedResolver(Vec<IpAddr>);

impl Resolve for FixedResolver {
    fn resolve(&self, _host: &str) -> ResolveFuture {
        let addresses = self.0.clone();
        Box::pin(async move { Ok(addresses) })
    }
}

fn policy(hosts: &[&str], loopback_allowed: bool) -> MediaUrlPolicy {
    MediaUrlPolicy {
        allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        allowed_addresses: if loopback_allowed {
            vec!["127.0.0.1".parse::<AddressRange>().unwrap()]
        } else {
            Vec::new()
        },
        max_bytes: 128 << 10,
        total_timeout: Duration::from_millis(1500),
        ..Default::default()
    }
}

fn url_input(id: &str, url: String) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::MediaUrl(pb::MediaUrl {
            url,
            modality: pb::Modality::Image as i32,
            format_hint: String::new(),
        })),
    }
}

#[tokio::test]
async fn a_fetched_image_embeds_exactly_as_the_same_bytes_sent_inline() {
    let bytes = png(11, 48);
    let media = media_server(bytes.clone()).await;
    let mut options = fixture_options();
    options.media_urls = policy(&["127.0.0.1"], true);
    let mut server = start(options).await;
    let url = format!("http://{media}/cat.png");
    let reply = server
        .client
        .embed(request(vec![image("inline", bytes.clone()), url_input("fetched", url.clone())]))
        .await
        .expect("a URL input of an allowed host is fetched")
        .into_inner();
    assert_eq!(reply.embeddings[1].vector, reply.embeddings[0].vector);
    assert_eq!(reply.embeddings[1].modality, pb::Modality::Image as i32);

    let openai =
        http_post_json(server.http, "/v1/embeddings", &json!({"input": [{"type": "image", "url": url}]}))
            .await;
    assert_eq!(openai.status, 200, "{}", openai.text());
    let vector: Vec<f32> = openai.json()["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(vector, reply.embeddings[0].vector);

    let json_route = http_post_json(
        server.http,
        "/v1/embed",
        &json!({"inputs": [{"mediaUrl": {"url": url, "modality": "MODALITY_IMAGE"}}]}),
    )
    .await;
    assert_eq!(json_route.status, 200, "{}", json_route.text());

    // Collections fetch too: upsert by URL, then search with the inline bytes finds it.
    let mut collections = collections_client(&server);
    collections
        .create_collection(pb::CreateCollectionRequest { name: "pics".into(), ..Default::default() })
        .await
        .expect("create");
    collections
        .upsert(pb::UpsertRequest {
            collection: "pics".into(),
            items: vec![pb::Item {
                id: "cat".into(),
                source: Some(pb::item::Source::Input(url_input("", format!("http://{media}/cat.png")))),
                ..Default::default()
            }],
        })
        .await
        .expect("upsert by URL");
    let hits = collections
        .search(pb::SearchRequest {
            collection: "pics".into(),
            query: Some(pb::search_request::Query::Input(image("q", bytes))),
            top_k: 1,
            ..Default::default()
        })
        .await
        .expect("search")
        .into_inner()
        .hits;
    assert!((hits[0].score - 1.0).abs() < 1e-5, "{}", hits[0].score);
}

#[tokio::test]
async fn each_policy_refusal_has_its_own_status() {
    let media = media_server(png(1, 16)).await;
    let port = media.port();
    // Off by default.
    let mut off = start_fixture().await;
    let refused = off.client.embed(request(vec![url_input("pic", format!("http://{media}/cat.png"))])).await;
    assert_refused(refused, Code::FailedPrecondition, &["pic", "--media-url-allow"]);

    // Allowed host, but loopback is not an allowed address; private and metadata ranges likewise.
    let mut options = fixture_options();
    options.media_urls = policy(&["127.0.0.1", "localhost", "169.254.169.254", "10.0.0.1"], false);
    let mut strict = start(options).await;
    for (url, parts) in [
        (format!("http://127.0.0.1:{port}/cat.png"), vec!["pic", "loopback"]),
        (format!("http://localhost:{port}/cat.png"), vec!["pic", "loopback"]),
        (format!("http://2130706433:{port}/cat.png"), vec!["pic"]),
        ("http://10.0.0.1/cat.png".to_string(), vec!["pic", "private"]),
        ("http://169.254.169.254/latest/meta-data".to_string(), vec!["pic"]),
        (format!("ftp://127.0.0.1:{port}/cat.png"), vec!["pic", "ftp"]),
        (format!("http://elsewhere.test:{port}/cat.png"), vec!["pic", "elsewhere.test"]),
    ] {
        let refused = strict.client.embed(request(vec![url_input("pic", url.clone())])).await;
        assert_refused(refused, Code::InvalidArgument, &parts.iter().map(|s| &**s).collect::<Vec<_>>());
    }

    // Loopback allowed: a redirect to the metadata address, a body over the limit and a server
    // too slow are each refused, and the server keeps serving.
    let mut options = fixture_options();
    options.media_urls = policy(&["127.0.0.1", "169.254.169.254"], true);
    let mut open = start(options).await;
    let redirect =
        open.client.embed(request(vec![url_input("pic", format!("http://{media}/to-metadata"))])).await;
    assert_refused(redirect, Code::InvalidArgument, &["pic", "169.254.169.254"]);
    let big = open.client.embed(request(vec![url_input("pic", format!("http://{media}/big.png"))])).await;
    assert_refused(big, Code::InvalidArgument, &["pic", "131072"]);
    let slow = open.client.embed(request(vec![url_input("pic", format!("http://{media}/slow.png"))])).await;
    assert_refused(slow, Code::DeadlineExceeded, &["pic"]);
    let text_by_url = open
        .client
        .embed(request(vec![pb::Input {
            id: "words".into(),
            payload: Some(pb::input::Payload::MediaUrl(pb::MediaUrl {
                url: format!("http://{media}/cat.png"),
                modality: pb::Modality::Text as i32,
                format_hint: String::new(),
            })),
        }]))
        .await;
    assert_refused(text_by_url, Code::InvalidArgument, &["words", "text"]);
    open.client
        .embed(request(vec![url_input("pic", format!("http://{media}/cat.png"))]))
        .await
        .expect("still serving");
}

#[tokio::test]
async fn a_name_with_any_internal_address_is_refused_whatever_else_it_resolves_to() {
    // DNS-rebinding style: the name answers a public address and a private one.
    let mut options = fixture_options();
    options.media_urls = MediaUrlPolicy {
        resolver: Arc::new(FixedResolver(vec![
            "93.184.216.34".parse().unwrap(),
            "10.1.2.3".parse().unwrap(),
        ])),
        ..policy(&["media.test"], false)
    };
    let mut server = start(options).await;
    let refused =
        server.client.embed(request(vec![url_input("pic", "http://media.test/cat.png".into())])).await;
    assert_refused(refused, Code::InvalidArgument, &["pic", "10.1.2.3"]);
}
