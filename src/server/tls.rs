//! TLS on the gRPC port (and the HTTP API's), and mutual TLS when a client CA is configured.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// Where the server's TLS material lives (PEM files).
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// Server certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf certificate.
    pub key: PathBuf,
    /// CA that client certificates must chain to; when set, clients without a valid certificate
    /// are refused during the handshake.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read.
    #[error("cannot read TLS {what} {path}: {source}")]
    Read {
        /// Which file (certificate, key, client CA).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A file holds no PEM block at all (a DER file, or the wrong file).
    #[error("TLS {what} {path} is not PEM (no `-----BEGIN` line)")]
    NotPem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
    },
    /// The TLS stack refused the material (key does not match, unsupported key type...).
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let bytes =
        std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_path_buf(), source })?;
    // rustls reports a missing PEM block as "no certificate"; naming the file is clearer.
    if !bytes.windows(10).any(|w| w == b"-----BEGIN") {
        return Err(TlsError::NotPem { what, path: path.to_path_buf() });
    }
    Ok(bytes)
}

/// Reads the PEM files named by `options` into tonic's server TLS settings (the server adds its
/// handshake timeout).
pub fn server_config(options: &TlsOptions) -> Result<ServerTlsConfig, TlsError> {
    let cert = read_pem("certificate", &options.cert)?;
    let key = read_pem("private key", &options.key)?;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
    if let Some(ca) = &options.client_ca {
        // Client authentication is mandatory once a CA is given (tonic's default).
        config = config.client_ca_root(Certificate::from_pem(read_pem("client CA", ca)?));
    }
    Ok(config)
}

/// The same TLS settings as rustls server configuration, for the HTTP listener (HTTP/2 and
/// HTTP/1.1 by ALPN; client certificates required when a client CA is set, as on gRPC).
pub fn rustls_config(options: &TlsOptions) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config_error = |e: &dyn std::fmt::Display| TlsError::Config(e.to_string());
    let cert_pem = read_pem("certificate", &options.cert)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Config(format!("certificate {}: {e}", options.cert.display())))?;
    let key = PrivateKeyDer::from_pem_slice(&read_pem("private key", &options.key)?)
        .map_err(|e| TlsError::Config(format!("private key {}: {e}", options.key.display())))?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(&e))?;
    let builder = match &options.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read_pem("client CA", ca)?) {
                let cert = cert.map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca.display())))?;
                roots.add(cert).map_err(|e| config_error(&e))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| config_error(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| config_error(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
