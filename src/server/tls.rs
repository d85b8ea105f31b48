//! TLS on the gRPC port, and mutual TLS when a client CA is configured.

use std::path::{Path, PathBuf};

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
