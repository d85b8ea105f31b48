//! The OpenAPI 3.1 document of the HTTP API, served at `/openapi.json`.
//!
//! No maintained generator turns this proto into OpenAPI, so the document is derived here, in a
//! test, from the two things it describes: the proto's messages, fields and comments (the
//! compiled descriptor set) and the routes the router serves ([`super::routes::RPC_ROUTES`] and
//! the fixed routes listed below). The committed `openapi.json` must equal what the test derives,
//! so a changed field, comment or route fails `cargo test` until the document is rewritten with
//! `BINDERY_ACCEPT_OPENAPI=1 cargo test --lib openapi`.

use axum::response::IntoResponse;
use http::HeaderValue;
use http::header::CONTENT_TYPE;

/// The document, as committed.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
pub async fn document() -> impl IntoResponse {
    ([(CONTENT_TYPE, HeaderValue::from_static("application/json"))], DOCUMENT)
}

#[cfg(test)]
mod tests;
