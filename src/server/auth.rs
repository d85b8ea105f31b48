//! API keys: every bindery RPC needs `authorization: Bearer <key>` metadata once keys are
//! configured; health checks and reflection stay open so probes and tooling work without one.
//!
//! Keys come from a file and/or the `BINDERY_API_KEYS` variable, one entry per line (or
//! comma-separated): `KEY [ROLE]`, where ROLE is `rw` (the default) or `ro`. A read-only key may
//! call everything except the RPCs that change a collection.

use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};
use http::{Request, Response};
use subtle::ConstantTimeEq;
use tonic::Status;
use tower::{Layer, Service};

/// RPCs that change a collection; a read-only key gets `PERMISSION_DENIED` for them.
pub const COLLECTION_WRITE_METHODS: [&str; 4] = [
    "/bindery.v1.Collections/CreateCollection",
    "/bindery.v1.Collections/DeleteCollection",
    "/bindery.v1.Collections/Upsert",
    "/bindery.v1.Collections/Delete",
];

/// Path prefixes reachable without a key (and exempt from rate limiting): health and reflection.
pub const OPEN_PATH_PREFIXES: [&str; 2] = ["/grpc.health.v1.Health/", "/grpc.reflection."];

/// Shortest key accepted: shorter ones are guessable.
pub const MIN_KEY_LEN: usize = 16;

/// Whether `path` (`/package.Service/Method`) is served without a key.
pub fn is_open_path(path: &str) -> bool {
    OPEN_PATH_PREFIXES.iter().any(|prefix| path.starts_with(prefix))
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every RPC (`rw`).
    ReadWrite,
    /// Every RPC except the collection-writing ones (`ro`).
    ReadOnly,
}

/// The caller a request was authenticated as; inserted into the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// Position of the key among the configured keys (0-based); never the key itself.
    pub key_index: usize,
    /// What the key may do.
    pub role: Role,
}

/// Why the API keys could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// The key file cannot be read.
    #[error("cannot read API key file {path}: {source}")]
    Read {
        /// File.
        path: std::path::PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// An entry is not `KEY [ROLE]`.
    #[error("{at}: expected `KEY [ROLE]`, found {words} words")]
    Shape {
        /// Where (source and entry number).
        at: String,
        /// Words found.
        words: usize,
    },
    /// The role is neither `rw` nor `ro`.
    #[error("{at}: unknown role {role:?} (use rw or ro)")]
    UnknownRole {
        /// Where.
        at: String,
        /// Role given.
        role: String,
    },
    /// The key is too short to resist guessing.
    #[error("{at}: key is {len} characters, fewer than the {min} required")]
    TooShort {
        /// Where.
        at: String,
        /// Its length.
        len: usize,
        /// Required length.
        min: usize,
    },
    /// The key has characters an `authorization` header cannot carry.
    #[error("{at}: key must be printable ASCII without spaces or commas")]
    BadCharacters {
        /// Where.
        at: String,
    },
    /// The same key appears twice.
    #[error("{at}: the same key is already configured")]
    Duplicate {
        /// Where.
        at: String,
    },
    /// A key source was given but holds no key; serving with it would lock everyone out.
    #[error("{0} holds no API key")]
    Empty(String),
}

struct KeyEntry {
    /// BLAKE3 digest of the key: lookups compare digests, so neither the key's length nor its
    /// bytes influence how long a comparison takes.
    digest: [u8; 32],
    role: Role,
}

/// The configured API keys (only their digests are kept).
#[derive(Default)]
pub struct ApiKeys {
    keys: Vec<KeyEntry>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys").field("count", &self.keys.len()).finish()
    }
}

impl ApiKeys {
    /// No keys yet; add some with [`ApiKeys::add_text`] or [`ApiKeys::add_file`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the entries of `text` (lines or comma-separated `KEY [ROLE]`, `#` starts a comment);
    /// `origin` names the source in error messages.
    pub fn add_text(&mut self, text: &str, origin: &str) -> Result<(), ApiKeyError> {
        let before = self.keys.len();
        let entries = text.lines().flat_map(|line| line.split('#').next().unwrap_or_default().split(','));
        for (n, entry) in entries.enumerate() {
            let words: Vec<&str> = entry.split_whitespace().collect();
            let at = || format!("{origin}, entry {}", n + 1);
            let (key, role) = match words.as_slice() {
                [] => continue,
                [key] => (*key, Role::ReadWrite),
                [key, "rw"] => (*key, Role::ReadWrite),
                [key, "ro"] => (*key, Role::ReadOnly),
                [_, role] => return Err(ApiKeyError::UnknownRole { at: at(), role: (*role).to_string() }),
                _ => return Err(ApiKeyError::Shape { at: at(), words: words.len() }),
            };
            if !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
                return Err(ApiKeyError::BadCharacters { at: at() });
            }
            if key.len() < MIN_KEY_LEN {
                return Err(ApiKeyError::TooShort { at: at(), len: key.len(), min: MIN_KEY_LEN });
            }
            let digest = *blake3::hash(key.as_bytes()).as_bytes();
            if self.keys.iter().any(|k| k.digest == digest) {
                return Err(ApiKeyError::Duplicate { at: at() });
            }
            self.keys.push(KeyEntry { digest, role });
        }
        if self.keys.len() == before {
            return Err(ApiKeyError::Empty(origin.to_string()));
        }
        Ok(())
    }

    /// Adds the entries of the file at `path`.
    pub fn add_file(&mut self, path: &Path) -> Result<(), ApiKeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ApiKeyError::Read { path: path.to_path_buf(), source })?;
        self.add_text(&text, &path.display().to_string())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The caller owning `presented`, if it is a configured key.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        let digest = blake3::hash(presented.as_bytes());
        let mut found = None;
        // Every entry is compared in constant time, so the reply time does not depend on which
        // key (if any) matched or on how close a guess came.
        for (key_index, entry) in self.keys.iter().enumerate() {
            if bool::from(entry.digest.ct_eq(digest.as_bytes())) {
                found = Some(Principal { key_index, role: entry.role });
            }
        }
        found
    }

    /// The caller of `request`, or the status refusing it.
    fn check<B>(&self, request: &Request<B>) -> Result<Option<Principal>, Status> {
        let path = request.uri().path();
        if is_open_path(path) {
            return Ok(None);
        }
        let mut values = request.headers().get_all(http::header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Err(Status::unauthenticated(
                "missing API key: send metadata `authorization: Bearer <key>`",
            ));
        };
        // Proxies and clients disagree on which of several values counts; picking one would let
        // a caller's identity depend on that choice.
        if values.next().is_some() {
            return Err(Status::unauthenticated(
                "the call carries more than one authorization header: send exactly one \
                 `authorization: Bearer <key>`",
            ));
        }
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| {
                Status::unauthenticated("malformed authorization metadata: expected `Bearer <key>`")
            })?;
        let principal = self.authenticate(token).ok_or_else(|| Status::unauthenticated("unknown API key"))?;
        if principal.role == Role::ReadOnly && COLLECTION_WRITE_METHODS.contains(&path) {
            return Err(Status::permission_denied(format!(
                "this API key is read-only and may not call {path}, which changes a collection"
            )));
        }
        Ok(Some(principal))
    }
}

/// Tower layer checking API keys on every request (a pass-through when `keys` is `None`).
#[derive(Debug, Clone, Default)]
pub struct AuthLayer {
    keys: Option<Arc<ApiKeys>>,
}

impl AuthLayer {
    /// Checks requests against `keys`; `None` lets every request through.
    pub fn new(keys: Option<Arc<ApiKeys>>) -> Self {
        Self { keys }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner, keys: self.keys.clone() }
    }
}

/// The service built by [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    keys: Option<Arc<ApiKeys>>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Response<ResBody>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let Some(keys) = &self.keys else {
            return Either::Right(self.inner.call(request));
        };
        match keys.check(&request) {
            Ok(principal) => {
                if let Some(p) = principal {
                    request.extensions_mut().insert(p);
                }
                Either::Right(self.inner.call(request))
            }
            Err(status) => {
                tracing::debug!(path = request.uri().path(), code = ?status.code(), "request refused");
                Either::Left(ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: &str = "0123456789abcdef-rw";
    const RO: &str = "0123456789abcdef-ro";

    fn keys() -> ApiKeys {
        let mut keys = ApiKeys::new();
        keys.add_text(&format!("# comment\n{RW}\n\n{RO} ro  # trailing comment\n"), "keys.txt").unwrap();
        keys
    }

    fn call(path: &str, auth: Option<&str>) -> Result<Option<Principal>, Status> {
        call_with(path, auth.as_slice())
    }

    /// A call carrying one `authorization` header per entry of `auth`.
    fn call_with(path: &str, auth: &[&str]) -> Result<Option<Principal>, Status> {
        let mut request = Request::builder().uri(format!("http://localhost{path}"));
        for a in auth {
            request = request.header("authorization", *a);
        }
        keys().check(&request.body(()).unwrap())
    }

    #[test]
    fn parses_roles_comments_and_commas() {
        let k = keys();
        assert_eq!(k.len(), 2);
        assert_eq!(k.authenticate(RW).unwrap(), Principal { key_index: 0, role: Role::ReadWrite });
        assert_eq!(k.authenticate(RO).unwrap(), Principal { key_index: 1, role: Role::ReadOnly });
        assert!(k.authenticate("0123456789abcdef").is_none());
        assert!(k.authenticate("").is_none());

        let mut env = ApiKeys::new();
        env.add_text(&format!("{RW} rw,{RO} ro"), "BINDERY_API_KEYS").unwrap();
        assert_eq!(env.len(), 2);
        assert_eq!(env.authenticate(RO).unwrap().role, Role::ReadOnly);
    }

    #[test]
    fn bad_entries_are_refused_with_their_position() {
        let err = |text: &str| ApiKeys::new().add_text(text, "keys.txt").unwrap_err().to_string();
        assert_eq!(
            err(&format!("{RW}\n{RO} admin")),
            "keys.txt, entry 2: unknown role \"admin\" (use rw or ro)"
        );
        assert_eq!(err("short"), "keys.txt, entry 1: key is 5 characters, fewer than the 16 required");
        assert_eq!(err(&format!("{RW} ro extra")), "keys.txt, entry 1: expected `KEY [ROLE]`, found 3 words");
        assert_eq!(err(&format!("{RW}\n{RW} ro")), "keys.txt, entry 2: the same key is already configured");
        assert_eq!(
            err("\u{e9}0123456789abcdef"),
            "keys.txt, entry 1: key must be printable ASCII without spaces or commas"
        );
        assert_eq!(err("# only a comment\n"), "keys.txt holds no API key");
    }

    #[test]
    fn missing_unknown_and_malformed_keys_are_unauthenticated() {
        let embed = "/bindery.v1.Embedder/Embed";
        for auth in [None, Some("Bearer nope-nope-nope-nope"), Some(RW), Some("Basic abc")] {
            let status = call(embed, auth).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{auth:?}");
        }
        assert_eq!(call(embed, Some(&format!("Bearer {RW}"))).unwrap().unwrap().key_index, 0);
        assert_eq!(call(embed, Some(&format!("bearer {RO}"))).unwrap().unwrap().key_index, 1);
    }

    #[test]
    fn read_only_keys_cannot_write_collections_and_probes_need_no_key() {
        for method in COLLECTION_WRITE_METHODS {
            let status = call(method, Some(&format!("Bearer {RO}"))).unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied);
            assert!(status.message().contains(method), "{}", status.message());
            assert!(call(method, Some(&format!("Bearer {RW}"))).is_ok());
        }
        assert!(call("/bindery.v1.Collections/Search", Some(&format!("Bearer {RO}"))).is_ok());
        assert_eq!(call("/grpc.health.v1.Health/Check", None).unwrap(), None);
        assert_eq!(call("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", None).unwrap(), None);
    }

    #[test]
    fn two_authorization_headers_are_refused_whatever_they_hold() {
        let embed = "/bindery.v1.Embedder/Embed";
        let (rw, ro) = (format!("Bearer {RW}"), format!("Bearer {RO}"));
        let unknown = "Bearer nope-nope-nope-nope";
        for pair in [[rw.as_str(), unknown], [unknown, rw.as_str()], [rw.as_str(), ro.as_str()], [&rw, &rw]] {
            let status = call_with(embed, &pair).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{pair:?}");
            assert!(status.message().contains("more than one authorization header"), "{}", status.message());
        }
        // Probes stay open whatever they carry.
        assert_eq!(call_with("/grpc.health.v1.Health/Check", &[&rw, unknown]).unwrap(), None);
    }
}
