//! Transport security and API keys on a real server: TLS, mutual TLS with throw-away
//! certificates, bearer keys with roles, and the probes that stay open.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bindery::api::pb::embedder_client::EmbedderClient;
use bindery::server::auth::{ApiKeys, COLLECTION_WRITE_METHODS};
use bindery::server::tls::TlsOptions;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Code, Request, Status};

use crate::common::*;

/// A throw-away certificate authority.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self { pem, issuer: Issuer::new(params, key) }
    }

    /// A leaf certificate and its key (PEM), for a server (`localhost`) or a client.
    fn leaf(&self, server: bool) -> (String, String) {
        let names = if server { vec!["localhost".to_string()] } else { Vec::new() };
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, if server { "localhost" } else { "client" });
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes a server certificate signed by `ca` and returns the TLS options serving it.
fn server_files(dir: &Path, ca: &Ca, client_ca: Option<&Ca>) -> TlsOptions {
    let (cert, key) = ca.leaf(true);
    std::fs::write(dir.join("server.pem"), cert).unwrap();
    std::fs::write(dir.join("server.key"), key).unwrap();
    let client_ca = client_ca.map(|c| {
        std::fs::write(dir.join("client-ca.pem"), &c.pem).unwrap();
        dir.join("client-ca.pem")
    });
    TlsOptions { cert: dir.join("server.pem"), key: dir.join("server.key"), client_ca }
}

/// Connects over TLS trusting `ca`, optionally presenting a client identity, and embeds a text.
async fn tls_embed(
    addr: std::net::SocketAddr,
    ca: &Ca,
    identity: Option<(String, String)>,
) -> Result<(), String> {
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&ca.pem)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let attempt = async {
        let channel = Channel::from_shared(format!("https://{addr}"))
            .map_err(|e| e.to_string())?
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        EmbedderClient::new(channel)
            .embed(request(vec![text("t", "a red cube")]))
            .await
            .map(|_| ())
            .map_err(|s| format!("{s:?}"))
    };
    tokio::time::timeout(Duration::from_secs(20), attempt).await.map_err(|_| "timed out".to_string())?
}

/// `GET /ready` over HTTPS to the HTTP API, trusting `ca`, optionally with a client identity.
async fn https_ready(
    addr: std::net::SocketAddr,
    ca: &Ca,
    identity: Option<(String, String)>,
) -> Result<HttpReply, String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap()).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        try_http_exchange(tls, "GET", "/ready", &[], b"").await
    };
    tokio::time::timeout(Duration::from_secs(20), attempt).await.map_err(|_| "timed out".to_string())?
}

#[tokio::test]
async fn the_http_api_speaks_tls_and_mutual_tls_like_the_grpc_port() {
    let dir = TempDir::new("tls-http");
    let ca = Ca::new("bindery test CA");
    let client_ca = Ca::new("bindery client CA");
    let mut options = fixture_options();
    options.tls = Some(server_files(&dir, &ca, Some(&client_ca)));
    let server = start_bare(options).await;
    let reply =
        https_ready(server.http, &ca, Some(client_ca.leaf(false))).await.expect("HTTPS with a client cert");
    assert_eq!((reply.status, reply.text().as_str()), (200, "ready\n"));
    https_ready(server.http, &ca, None).await.expect_err("no client certificate");
    https_ready(server.http, &Ca::new("another CA"), Some(client_ca.leaf(false)))
        .await
        .expect_err("server not trusted");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(server.http).await.unwrap();
        stream.write_all(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(20), plain).await.expect("closed promptly");
    assert!(!raw.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&raw));
}

#[tokio::test]
async fn tls_clients_are_served_and_plaintext_clients_are_not() {
    let dir = TempDir::new("tls-tls");
    let ca = Ca::new("bindery test CA");
    let mut options = fixture_options();
    options.tls = Some(server_files(&dir, &ca, None));
    let server = start_bare(options).await;

    tls_embed(server.addr, &ca, None).await.expect("TLS client is served");

    // A client speaking plaintext HTTP/2 to the TLS port gets nothing back.
    let plaintext = async {
        let channel = Channel::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        EmbedderClient::new(channel)
            .embed(request(vec![text("t", "a red cube")]))
            .await
            .map(|_| ())
            .map_err(|s| s.to_string())
    };
    let result = tokio::time::timeout(Duration::from_secs(20), plaintext).await.expect("refused promptly");
    assert!(result.is_err(), "plaintext client must fail");

    // The certificate is really checked: a client trusting another CA refuses the server.
    let other = Ca::new("another CA");
    assert!(tls_embed(server.addr, &other, None).await.is_err());
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_certificate_from_the_client_ca() {
    let dir = TempDir::new("tls-mtls");
    let ca = Ca::new("bindery test CA");
    let client_ca = Ca::new("bindery client CA");
    let mut options = fixture_options();
    options.tls = Some(server_files(&dir, &ca, Some(&client_ca)));
    let server = start_bare(options).await;

    tls_embed(server.addr, &ca, Some(client_ca.leaf(false))).await.expect("client with a valid cert");
    let err = tls_embed(server.addr, &ca, None).await.expect_err("no client certificate");
    assert!(!err.is_empty());
    let stranger = Ca::new("stranger CA");
    tls_embed(server.addr, &ca, Some(stranger.leaf(false))).await.expect_err("cert from another CA");
}

#[test]
fn unreadable_tls_files_stop_the_server_before_loading_models() {
    let dir = TempDir::new("tls-bad-files");
    std::fs::write(dir.join("cert.der"), [0x30, 0x82, 0x01, 0x00]).unwrap();
    let serve = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bindery"))
            .args(["serve", "--listen", "127.0.0.1:0", "--models"])
            .arg(repo().join("models"))
            // Collections go to a scratch folder of this server's own (a data folder takes one
            // server), never the user's data dir.
            .env("BINDERY_DATA_DIR", scratch_path("data"))
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let missing = dir.join("missing.pem");
    let stderr = serve(&["--tls-cert", missing.to_str().unwrap(), "--tls-key", missing.to_str().unwrap()]);
    assert!(stderr.contains("cannot read TLS certificate") && stderr.contains("missing.pem"), "{stderr}");
    let der = dir.join("cert.der");
    let stderr = serve(&["--tls-cert", der.to_str().unwrap(), "--tls-key", der.to_str().unwrap()]);
    assert!(stderr.contains("is not PEM"), "{stderr}");
    let stderr = serve(&["--api-keys", missing.to_str().unwrap()]);
    assert!(stderr.contains("cannot read API key file"), "{stderr}");
    let short = dir.join("short.keys");
    std::fs::write(&short, "abc ro\n").unwrap();
    let stderr = serve(&["--api-keys", short.to_str().unwrap()]);
    assert!(stderr.contains("entry 1: key is 3 characters"), "{stderr}");
}

const RW_KEY: &str = "rw-0123456789abcdef0123";
const RO_KEY: &str = "ro-0123456789abcdef0123";

fn with_key(key: Option<&'static str>) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |mut request: Request<()>| {
        if let Some(k) = key {
            request.metadata_mut().insert("authorization", format!("Bearer {k}").parse().unwrap());
        }
        Ok(request)
    }
}

async fn keyed_server() -> (BareServer, Channel) {
    let mut keys = ApiKeys::new();
    keys.add_text(&format!("{RW_KEY}\n{RO_KEY} ro\n"), "test keys").unwrap();
    let mut options = fixture_options();
    options.api_keys = Some(Arc::new(keys));
    let server = start_bare(options).await;
    let channel = Channel::from_shared(format!("http://{}", server.addr)).unwrap().connect().await.unwrap();
    (server, channel)
}

/// Calls `path` with an empty message (whatever the method expects, the key is checked first).
async fn raw_call(channel: Channel, path: &'static str, key: &'static str) -> Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let request = with_key(Some(key))(Request::new(())).unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(request, tonic::codegen::http::uri::PathAndQuery::from_static(path), codec)
        .await
        .map(|_| Status::ok(""))
        .unwrap_or_else(|s| s)
}

#[tokio::test]
async fn api_keys_are_required_and_read_only_keys_cannot_write_collections() {
    let (_server, channel) = keyed_server().await;
    let embed = |key| {
        let mut client = EmbedderClient::with_interceptor(channel.clone(), with_key(key));
        async move { client.embed(request(vec![text("t", "a red cube")])).await }
    };
    assert_refused(embed(None).await, Code::Unauthenticated, &["authorization: Bearer"]);
    let status = embed(Some("unknown-0123456789abcdef")).await.expect_err("unknown key");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "unknown API key");
    embed(Some(RW_KEY)).await.expect("read-write key embeds");
    embed(Some(RO_KEY)).await.expect("read-only key embeds");

    for method in COLLECTION_WRITE_METHODS {
        let status = raw_call(channel.clone(), method, RO_KEY).await;
        assert_eq!(status.code(), Code::PermissionDenied, "{method}: {status:?}");
        assert!(status.message().contains(method) && status.message().contains("read-only"));
        // A read-write key gets past the check (to whatever the method itself answers).
        let status = raw_call(channel.clone(), method, RW_KEY).await;
        assert!(
            !matches!(status.code(), Code::PermissionDenied | Code::Unauthenticated),
            "{method}: {status:?}"
        );
    }
}

#[tokio::test]
async fn a_call_with_two_authorization_headers_is_refused() {
    let (_server, channel) = keyed_server().await;
    let embed = |keys: [&'static str; 2]| {
        let mut client = EmbedderClient::new(channel.clone());
        let mut call = Request::new(request(vec![text("t", "a red cube")]));
        for key in keys {
            call.metadata_mut().append("authorization", format!("Bearer {key}").parse().unwrap());
        }
        async move { client.embed(call).await }
    };
    // A valid key next to an unknown one, in either order, and two valid keys: none is chosen.
    let unknown = "unknown-0123456789abcdef";
    for keys in [[RW_KEY, unknown], [unknown, RW_KEY], [RW_KEY, RO_KEY], [RW_KEY, RW_KEY]] {
        let status = embed(keys).await.expect_err("two authorization headers");
        assert_eq!(status.code(), Code::Unauthenticated, "{keys:?}: {status:?}");
        assert!(status.message().contains("more than one authorization header"), "{}", status.message());
    }
    // One key, on the same connection, still works.
    let mut client = EmbedderClient::with_interceptor(channel, with_key(Some(RW_KEY)));
    let reply = client.embed(request(vec![text("t", "a red cube")])).await.expect("one key embeds");
    assert_eq!(reply.into_inner().embeddings.len(), 1);
}

#[tokio::test]
async fn health_and_reflection_need_no_key() {
    let (_server, channel) = keyed_server().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .expect("health without a key")
        .into_inner();
    assert_eq!(reply.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .expect("reflection without a key")
        .into_inner();
    assert!(replies.message().await.expect("reply").is_some());
}

/// Runs the `bindery` binary with `args` and returns (success, stdout, stderr).
async fn run_cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_bindery"))
        .args(args)
        .env_remove("BINDERY_API_KEY")
        .output()
        .await
        .expect("bindery runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_subcommands_reach_a_mutual_tls_server_with_an_api_key() {
    let dir = TempDir::new("tls-cli");
    let (ca, client_ca) = (Ca::new("bindery test CA"), Ca::new("bindery client CA"));
    let mut keys = ApiKeys::new();
    keys.add_text(RW_KEY, "test keys").unwrap();
    let mut options = fixture_options();
    options.tls = Some(server_files(&dir, &ca, Some(&client_ca)));
    options.api_keys = Some(Arc::new(keys));
    let server = start_bare(options).await;

    let (cert, key) = client_ca.leaf(false);
    for (name, content) in [("ca.pem", &ca.pem), ("client.pem", &cert), ("client.key", &key)] {
        std::fs::write(dir.join(name), content).unwrap();
    }
    let path = |name: &str| dir.join(name).to_str().expect("utf-8 path").to_string();
    let server_url = format!("https://{}", server.addr);
    let (ca_file, cert_file, key_file) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let tls: Vec<&str> = vec![
        "--server",
        &server_url,
        "--tls-ca",
        &ca_file,
        "--tls-client-cert",
        &cert_file,
        "--tls-client-key",
        &key_file,
        // The certificate names localhost; the address is 127.0.0.1.
        "--tls-domain",
        "localhost",
    ];
    let with = |command: &'static str, extra: &[&'static str]| -> Vec<String> {
        let mut args = vec![command.to_string()];
        args.extend(tls.iter().map(|a| a.to_string()));
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };

    let (ok, stdout, stderr) = run_cli(&with("models", &["--api-key", RW_KEY])).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("\"imagebind-fixture\""), "{stdout}");

    let (ok, stdout, stderr) = run_cli(&with("embed", &["--api-key", RW_KEY, "--text", "a red cube"])).await;
    assert!(ok, "{stderr}");
    let reply: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(reply["embeddings"][0]["dimension"], 32);

    let load =
        ["--api-key", RW_KEY, "--mix", "text", "--requests", "6", "--warmup", "0s", "--quiet", "--json", "-"];
    let (ok, stdout, stderr) = run_cli(&with("load", &load)).await;
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!((report["ok"].as_f64(), report["errors"].as_f64()), (Some(6.0), Some(0.0)), "{report:#}");

    // Without the key the server answers UNAUTHENTICATED; without the client certificate the
    // handshake fails; without https:// the TLS options are refused before connecting.
    let (ok, _, stderr) = run_cli(&with("models", &[])).await;
    assert!(!ok && stderr.contains("Unauthenticated"), "{stderr}");
    let no_identity = [
        "models",
        "--server",
        &server_url,
        "--tls-ca",
        &ca_file,
        "--tls-domain",
        "localhost",
        "--api-key",
        RW_KEY,
    ];
    let (ok, _, stderr) = run_cli(&no_identity).await;
    assert!(!ok, "{stderr}");
    let plain_url = format!("http://{}", server.addr);
    let (ok, _, stderr) = run_cli(&["models", "--server", &plain_url, "--tls-ca", &ca_file]).await;
    assert!(!ok && stderr.contains("TLS options need an https:// server address"), "{stderr}");
}
