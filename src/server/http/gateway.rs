//! The HTTP API's way into the services: every HTTP call becomes one in-process gRPC call that
//! goes through the gRPC server's own layers (panic guard, API keys, rate limit) and services, so
//! limits, error messages and metrics are the gRPC ones by construction.

use std::convert::Infallible;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONTENT_TYPE, TE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Version};
use http_body_util::{BodyExt, Full};
use tonic::Status;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;

use super::error::HttpError;
use crate::server::connections::ConnectionInfo;

/// The layered gRPC services (Embedder and Collections), callable in process.
pub type GrpcService =
    BoxCloneSyncService<Request<tonic::body::Body>, Response<tonic::body::Body>, Infallible>;

/// Request headers handed on as gRPC metadata: the API key and the deadline.
const FORWARDED: [HeaderName; 2] = [AUTHORIZATION, HeaderName::from_static("grpc-timeout")];

/// Calls the gRPC services on behalf of HTTP requests.
#[derive(Clone)]
pub struct Gateway {
    grpc: GrpcService,
    max_message_bytes: usize,
}

/// What a successful call returned.
pub struct Reply<M> {
    /// The response message.
    pub message: M,
    /// Response metadata bindery sets (`bindery-*`: timings, cache hits), for the HTTP reply.
    pub headers: HeaderMap,
}

impl Gateway {
    /// A gateway into `grpc`, refusing requests whose protobuf encoding exceeds
    /// `max_message_bytes` (the gRPC limit) as gRPC would.
    pub fn new(grpc: GrpcService, max_message_bytes: usize) -> Self {
        Self { grpc, max_message_bytes }
    }

    /// Calls `method` (`/bindery.v1.Service/Method`) with `message`, on behalf of the HTTP
    /// request whose headers and extensions are `from`.
    pub async fn call<Req, Resp>(
        &self,
        method: &'static str,
        message: &Req,
        from: &http::request::Parts,
    ) -> Result<Reply<Resp>, HttpError>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let len = message.encoded_len();
        if len > self.max_message_bytes {
            return Err(HttpError::too_large(format!(
                "the request is {len} bytes as protobuf, over the limit of {} bytes (--max-message-bytes)",
                self.max_message_bytes
            )));
        }
        let length_prefix = u32::try_from(len).map_err(|_| HttpError::too_large("request too large"))?;
        let mut frame = BytesMut::with_capacity(5 + len);
        frame.put_u8(0);
        frame.put_u32(length_prefix);
        message
            .encode(&mut frame)
            .map_err(|e| Status::internal(format!("cannot encode the request: {e}")))?;
        let mut request = Request::new(tonic::body::Body::new(Full::new(frame.freeze())));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = http::Uri::from_static(method);
        *request.version_mut() = Version::HTTP_2;
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        for name in &FORWARDED {
            for value in from.headers.get_all(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        // The rate limiter keys callers without an API key by their address.
        if let Some(info) = from.extensions.get::<ConnectionInfo>() {
            request.extensions_mut().insert(info.clone());
        }
        let response = match self.grpc.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        refused(&parts.headers)?;
        let collected =
            body.collect().await.map_err(|e| Status::internal(format!("cannot read the reply: {e}")))?;
        if let Some(trailers) = collected.trailers() {
            refused(trailers)?;
        }
        let message = decode_frame(collected.to_bytes())?;
        let mut headers = HeaderMap::new();
        for (name, value) in &parts.headers {
            if name.as_str().starts_with("bindery-") {
                headers.append(name.clone(), value.clone());
            }
        }
        Ok(Reply { message, headers })
    }
}

/// The status in `headers` when it is not OK.
fn refused(headers: &HeaderMap) -> Result<(), Status> {
    match Status::from_header_map(headers) {
        Some(status) if status.code() != tonic::Code::Ok => Err(status),
        _ => Ok(()),
    }
}

/// The one message of a unary reply body (5-byte gRPC frame header, then the message).
fn decode_frame<M: prost::Message + Default>(mut body: Bytes) -> Result<M, Status> {
    if body.len() < 5 {
        return Err(Status::internal("the service sent no reply message"));
    }
    let compressed = body.get_u8();
    let len = body.get_u32() as usize;
    if compressed != 0 || body.len() != len {
        return Err(Status::internal("the service sent a malformed reply frame"));
    }
    M::decode(body).map_err(|e| Status::internal(format!("cannot decode the reply: {e}")))
}
