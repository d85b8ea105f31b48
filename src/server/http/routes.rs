//! The JSON mappings of the Embedder and Collections RPCs: one route per RPC, bodies in the
//! canonical protobuf JSON mapping of the RPC's request and response messages.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, on};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::HttpState;
use super::error::HttpError;
use crate::api::pb;

/// One HTTP route of a gRPC method.
#[derive(Clone, Copy)]
pub struct RpcRoute {
    /// HTTP method.
    pub method: &'static str,
    /// Path; `{collection}` is a collection name, which fills the request's name field.
    pub path: &'static str,
    /// The gRPC method it calls.
    pub rpc: &'static str,
    /// Protobuf name of its request message.
    pub request: &'static str,
    /// Protobuf name of its response message.
    pub response: &'static str,
    handler: fn(&'static RpcRoute) -> MethodRouter<HttpState>,
}

macro_rules! rpc_route {
    ($method:literal, $path:literal, $service:literal, $rpc:ident, $request:ident, $response:ident) => {
        RpcRoute {
            method: $method,
            path: $path,
            rpc: concat!("/bindery.v1.", $service, "/", stringify!($rpc)),
            request: stringify!($request),
            response: stringify!($response),
            handler: rpc::<pb::$request, pb::$response>,
        }
    };
}

/// Every RPC route, as the router serves them and the OpenAPI document lists them.
pub const RPC_ROUTES: &[RpcRoute] = &[
    rpc_route!("GET", "/v1/models", "Embedder", ListModels, ListModelsRequest, ListModelsResponse),
    rpc_route!("POST", "/v1/embed", "Embedder", Embed, EmbedRequest, EmbedResponse),
    rpc_route!("POST", "/v1/similarity", "Embedder", Similarity, SimilarityRequest, SimilarityResponse),
    rpc_route!("POST", "/v1/classify", "Embedder", Classify, ClassifyRequest, ClassifyResponse),
    rpc_route!(
        "GET",
        "/v1/collections",
        "Collections",
        ListCollections,
        ListCollectionsRequest,
        ListCollectionsResponse
    ),
    rpc_route!(
        "POST",
        "/v1/collections",
        "Collections",
        CreateCollection,
        CreateCollectionRequest,
        CreateCollectionResponse
    ),
    rpc_route!(
        "DELETE",
        "/v1/collections/{collection}",
        "Collections",
        DeleteCollection,
        DeleteCollectionRequest,
        DeleteCollectionResponse
    ),
    rpc_route!(
        "POST",
        "/v1/collections/{collection}/upsert",
        "Collections",
        Upsert,
        UpsertRequest,
        UpsertResponse
    ),
    rpc_route!("POST", "/v1/collections/{collection}/get", "Collections", Get, GetRequest, GetResponse),
    rpc_route!(
        "POST",
        "/v1/collections/{collection}/delete",
        "Collections",
        Delete,
        DeleteRequest,
        DeleteResponse
    ),
    rpc_route!(
        "POST",
        "/v1/collections/{collection}/search",
        "Collections",
        Search,
        SearchRequest,
        SearchResponse
    ),
    rpc_route!(
        "GET",
        "/v1/collections/{collection}/stats",
        "Collections",
        Stats,
        StatsRequest,
        StatsResponse
    ),
];

/// The request field a `{collection}` path segment fills.
fn name_field(request: &str) -> &'static str {
    match request {
        "DeleteCollectionRequest" => "name",
        _ => "collection",
    }
}

/// Adds every RPC route to `router` (routes sharing a path share one method router).
pub fn add(mut router: Router<HttpState>) -> Router<HttpState> {
    let mut paths: Vec<&'static str> = RPC_ROUTES.iter().map(|r| r.path).collect();
    paths.sort_unstable();
    paths.dedup();
    for path in paths {
        let mut methods = MethodRouter::new();
        for spec in RPC_ROUTES.iter().filter(|r| r.path == path) {
            methods = methods.merge((spec.handler)(spec));
        }
        router = router.route(path, methods);
    }
    router
}

/// The handler of one route: JSON (or nothing, for GET) in, the RPC's reply as JSON out.
fn rpc<Req, Resp>(spec: &'static RpcRoute) -> MethodRouter<HttpState>
where
    Req: prost::Message + DeserializeOwned + Default + Send + 'static,
    Resp: prost::Message + Serialize + Default + Send + 'static,
{
    let method = Method::from_bytes(spec.method.as_bytes()).unwrap_or(Method::POST);
    let filter =
        axum::routing::MethodFilter::try_from(method.clone()).unwrap_or(axum::routing::MethodFilter::POST);
    let has_body = method == Method::POST;
    on(
        filter,
        move |State(state): State<HttpState>, collection: Option<Path<String>>, request: Request| async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, state.max_body_bytes)
                .await
                .map_err(|e| body_error(&e, state.max_body_bytes))?;
            let collection = collection.map(|Path(name)| name);
            let message: Req = parse(
                spec.request,
                &body,
                has_body,
                collection.as_deref().map(|c| (name_field(spec.request), c)),
            )?;
            let reply = state.gateway.call::<Req, Resp>(spec.rpc, &message, &parts).await?;
            Ok::<Response, HttpError>(json_reply(&reply.message, reply.headers))
        },
    )
}

/// The request message from a JSON body (an empty body is the empty message), with the path's
/// collection name filled in.
fn parse<Req: DeserializeOwned + Default>(
    name: &str,
    body: &Bytes,
    has_body: bool,
    path_field: Option<(&str, &str)>,
) -> Result<Req, HttpError> {
    if !has_body && !body.is_empty() {
        return Err(HttpError::invalid(format!("this GET takes no body ({name} has nothing to send)")));
    }
    let mut value: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| HttpError::invalid(format!("the body is not JSON: {e}")))?
    };
    if let Some((field, path_value)) = path_field {
        let serde_json::Value::Object(object) = &mut value else {
            return Err(HttpError::invalid(format!("the body must be a JSON object ({name})")));
        };
        match object.get(field) {
            Some(serde_json::Value::String(given)) if given != path_value => {
                return Err(HttpError::invalid(format!(
                    "the body names {field} {given:?}, the path {path_value:?}"
                )));
            }
            _ => {
                object.insert(field.to_string(), serde_json::Value::String(path_value.to_string()));
            }
        }
    }
    serde_json::from_value(value).map_err(|e| HttpError::invalid(format!("invalid {name}: {e}")))
}

/// A body over the limit, or one that could not be read.
pub fn body_error(error: &axum::Error, limit: usize) -> HttpError {
    let too_big =
        std::error::Error::source(error).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
    if too_big {
        HttpError::too_large(format!(
            "the request body is over the HTTP limit of {limit} bytes (4 x --max-message-bytes)"
        ))
    } else {
        HttpError::invalid(format!("cannot read the request body: {error}"))
    }
}

/// `message` as a JSON reply, with the call's `bindery-*` metadata as headers.
pub fn json_reply<T: Serialize>(message: &T, headers: http::HeaderMap) -> Response {
    match serde_json::to_vec(message) {
        Ok(json) => {
            let mut response = json.into_response();
            response.headers_mut().extend(headers);
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => HttpError::from(tonic::Status::internal(format!("cannot write the reply as JSON: {e}")))
            .into_response(),
    }
}
