//! A panic while handling a request becomes `INTERNAL` for that request only: the connection,
//! the other requests on it and the server go on.
//!
//! Unary handlers run inside the response future; streaming handlers run while the response body
//! is polled. Both are guarded: a panic in the future yields an `INTERNAL` reply, a panic in the
//! body ends the stream with `INTERNAL` trailers.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tonic::Status;
use tower::{Layer, Service};

/// Message the client receives; the panic itself is logged, not sent.
pub const PANIC_MESSAGE: &str = "internal error: the server failed while handling this request";

fn panic_status(method: &str, payload: &(dyn Any + Send)) -> Status {
    let reason = crate::shared::panic::reason(payload);
    tracing::error!(method, panic = reason, "request handler panicked; the request gets INTERNAL");
    Status::internal(PANIC_MESSAGE)
}

/// Tower layer turning handler panics into `INTERNAL` statuses.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// The service built by [`CatchPanicLayer`].
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

type ResponseFuture<B, E> = Pin<Box<dyn Future<Output = Result<Response<GuardedBody<B>>, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CatchPanic<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<GuardedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let method: Arc<str> = Arc::from(request.uri().path());
        let inner = &mut self.inner;
        let future = match catch_unwind(AssertUnwindSafe(|| inner.call(request))) {
            Ok(future) => future,
            Err(payload) => {
                let reply = GuardedBody::failed(&method, &*payload);
                return Box::pin(futures::future::ready(Ok(reply)));
            }
        };
        Box::pin(async move {
            match AssertUnwindSafe(future).catch_unwind().await {
                Ok(result) => result.map(|response| response.map(|body| GuardedBody::new(body, method))),
                Err(payload) => Ok(GuardedBody::failed(&method, &*payload)),
            }
        })
    }
}

/// A response body that ends with `INTERNAL` trailers if polling the inner body panics.
#[derive(Debug)]
pub struct GuardedBody<B> {
    inner: B,
    method: Arc<str>,
    /// Set once a panic was caught; the inner body is not polled again.
    failed: bool,
}

impl<B: Default> GuardedBody<B> {
    fn new(inner: B, method: Arc<str>) -> Self {
        Self { inner, method, failed: false }
    }

    /// The trailers-only `INTERNAL` reply for a panic caught before the response existed.
    fn failed(method: &Arc<str>, payload: &(dyn Any + Send)) -> Response<Self> {
        panic_status(method, payload).into_http::<B>().map(|body| Self::new(body, Arc::clone(method)))
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut this.inner).poll_frame(cx))) {
            Ok(frame) => frame,
            Err(payload) => {
                this.failed = true;
                let mut trailers = HeaderMap::new();
                // `add_header` only fails on metadata it cannot encode; this status has none.
                let _ = panic_status(&this.method, &*payload).add_header(&mut trailers);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.failed && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.failed { SizeHint::with_exact(0) } else { self.inner.size_hint() }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures::StreamExt;
    use http_body_util::BodyExt;
    use tonic::body::Body as TonicBody;

    use super::*;

    fn request(path: &str) -> Request<TonicBody> {
        Request::builder().uri(format!("http://localhost{path}")).body(TonicBody::default()).unwrap()
    }

    fn grpc_status(headers: &HeaderMap) -> Option<&str> {
        headers.get("grpc-status").and_then(|v| v.to_str().ok())
    }

    #[tokio::test]
    async fn a_panicking_handler_yields_internal_and_the_service_keeps_working() {
        let handler = tower::service_fn(|req: Request<TonicBody>| async move {
            if req.uri().path() == "/boom" {
                panic!("handler bug");
            }
            Ok::<_, Infallible>(Response::new(TonicBody::default()))
        });
        let mut service = CatchPanicLayer.layer(handler);
        let reply = service.call(request("/boom")).await.unwrap();
        assert_eq!(grpc_status(reply.headers()), Some("13"));
        let reply = service.call(request("/fine")).await.unwrap();
        assert_eq!(grpc_status(reply.headers()), None);
    }

    #[tokio::test]
    async fn a_panic_while_creating_the_future_is_caught_too() {
        #[derive(Clone)]
        struct PanicsInCall;
        impl Service<Request<TonicBody>> for PanicsInCall {
            type Response = Response<TonicBody>;
            type Error = Infallible;
            type Future = futures::future::Ready<Result<Self::Response, Infallible>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _: Request<TonicBody>) -> Self::Future {
                panic!("bug before any future exists")
            }
        }
        let reply = CatchPanicLayer.layer(PanicsInCall).call(request("/x")).await.unwrap();
        assert_eq!(grpc_status(reply.headers()), Some("13"));
    }

    #[tokio::test]
    async fn a_panicking_body_ends_with_internal_trailers() {
        let handler = tower::service_fn(move |_req: Request<TonicBody>| {
            let stream = futures::stream::iter(0..3).map(|i| {
                if i == 2 {
                    panic!("stream bug");
                }
                Ok::<_, Status>(Frame::data(bytes::Bytes::from_static(b"chunk")))
            });
            let body = TonicBody::new(http_body_util::StreamBody::new(stream));
            async move { Ok::<_, Infallible>(Response::new(body)) }
        });
        let reply = CatchPanicLayer.layer(handler).call(request("/stream")).await.unwrap();
        let collected = reply.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers");
        assert_eq!(grpc_status(&trailers), Some("13"));
        assert_eq!(collected.to_bytes().as_ref(), b"chunkchunk");
    }
}
