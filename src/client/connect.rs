//! How the client subcommands (`embed`, `models`, `load`) reach a server: plaintext or TLS,
//! optionally with a client certificate (mutual TLS) and an API key.

use std::path::{Path, PathBuf};

use clap::Args;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

use crate::shared::error_chain;
use crate::shared::pb::embedder_client::EmbedderClient;

/// Largest message a client sends or accepts (the server's default limit).
pub const MAX_MESSAGE_BYTES: usize = crate::shared::DEFAULT_MAX_MESSAGE_BYTES;

/// Where the server is and how to authenticate to it.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Server address, `host:port` or a URL; `https://` connects with TLS (as does `host:port`
    /// with a TLS option).
    #[arg(long, env = "BINDERY_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// CA certificate (PEM) the server's certificate must chain to (default for https://: the
    /// system's trusted roots).
    #[arg(long, env = "BINDERY_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate chain (PEM) presented to a server that requires mutual TLS.
    #[arg(long, env = "BINDERY_TLS_CLIENT_CERT", value_name = "FILE", requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-client-cert.
    #[arg(long, env = "BINDERY_TLS_CLIENT_KEY", value_name = "FILE", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
    /// Name the server's certificate must carry (default: the host of --server).
    #[arg(long, value_name = "NAME")]
    pub tls_domain: Option<String>,
    /// API key sent as `authorization: Bearer KEY` on every call.
    #[arg(long, env = "BINDERY_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// Why a client could not reach the server.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address or the TLS settings are unusable.
    #[error("{0}")]
    Config(String),
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The connection failed.
    #[error("cannot connect to {server}: {reason}")]
    Connect {
        /// The address.
        server: String,
        /// Why, with the transport's chain of causes.
        reason: String,
    },
}

/// Adds the API key, when there is one, to every call.
#[derive(Debug, Clone, Default)]
pub struct BearerKey(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerKey {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// An Embedder client over one connection, carrying the API key.
pub type Client = EmbedderClient<InterceptedService<Channel, BearerKey>>;

fn read(path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::Read { path: path.to_path_buf(), source })
}

impl ConnectArgs {
    fn wants_tls(&self) -> bool {
        self.tls_ca.is_some() || self.tls_client_cert.is_some() || self.tls_domain.is_some()
    }

    /// The server's URL: `--server` as given when it has a scheme; a bare `host:port` (the form
    /// `--listen` takes) gets `http://`, or `https://` when a TLS option is set.
    pub fn url(&self) -> String {
        if self.server.contains("://") {
            self.server.clone()
        } else if self.wants_tls() {
            format!("https://{}", self.server)
        } else {
            format!("http://{}", self.server)
        }
    }

    /// The endpoint to dial, with TLS configured for an `https://` address.
    fn endpoint(&self) -> Result<Endpoint, ConnectError> {
        let url = self.url();
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| ConnectError::Config(format!("invalid server address {:?}: {e}", self.server)))?
            .tcp_nodelay(true);
        let wants_tls = self.wants_tls();
        if !url.starts_with("https://") {
            return if wants_tls {
                Err(ConnectError::Config(format!(
                    "TLS options need an https:// server address, not {}",
                    self.server
                )))
            } else {
                Ok(endpoint)
            };
        }
        let mut tls = match &self.tls_ca {
            Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.tls_client_cert, &self.tls_client_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(domain) = &self.tls_domain {
            tls = tls.domain_name(domain.clone());
        }
        endpoint
            .tls_config(tls)
            .map_err(|e| ConnectError::Config(format!("TLS settings: {}", error_chain(&e))))
    }

    fn bearer(&self) -> Result<BearerKey, ConnectError> {
        let Some(key) = &self.api_key else { return Ok(BearerKey::default()) };
        let value = format!("Bearer {key}")
            .parse()
            .map_err(|_| ConnectError::Config("the API key must be printable ASCII".into()))?;
        Ok(BearerKey(Some(value)))
    }

    /// Opens `n` separate HTTP/2 connections, each an Embedder client.
    pub async fn clients(&self, n: usize) -> Result<Vec<Client>, ConnectError> {
        let (endpoint, bearer) = (self.endpoint()?, self.bearer()?);
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let channel = endpoint.connect().await.map_err(|e| ConnectError::Connect {
                server: self.server.clone(),
                reason: error_chain(&e),
            })?;
            clients.push(
                EmbedderClient::with_interceptor(channel, bearer.clone())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            );
        }
        Ok(clients)
    }

    /// One Embedder client.
    pub async fn client(&self) -> Result<Client, ConnectError> {
        self.clients(1).await?.pop().ok_or_else(|| ConnectError::Config("no connection was opened".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(server: &str, ca: Option<&str>) -> ConnectArgs {
        ConnectArgs {
            server: server.into(),
            tls_ca: ca.map(PathBuf::from),
            tls_client_cert: None,
            tls_client_key: None,
            tls_domain: None,
            api_key: None,
        }
    }

    #[test]
    fn a_bare_host_and_port_gets_a_scheme() {
        assert_eq!(args("127.0.0.1:50051", None).url(), "http://127.0.0.1:50051");
        assert_eq!(args("embed.internal:443", Some("ca.pem")).url(), "https://embed.internal:443");
        assert_eq!(args("https://h:1", None).url(), "https://h:1");
        assert_eq!(args("http://h:1", None).url(), "http://h:1");
        assert!(args("127.0.0.1:50051", None).endpoint().is_ok());
    }
}
