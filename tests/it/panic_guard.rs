//! A panicking handler, served by a real tonic server behind bindery's panic guard: the
//! request gets INTERNAL, the connection and the server go on. The handler is a test-only
//! implementation of the standard health service, so no panic is planted in bindery's own code.

use std::pin::Pin;
use std::time::Duration;

use bindery::server::catch_panic::{CatchPanicLayer, PANIC_MESSAGE};
use futures::Stream;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// Panics when asked about the service named `panic`; its watch stream panics after one reply.
struct Fragile;

fn serving() -> HealthCheckResponse {
    HealthCheckResponse { status: ServingStatus::Serving as i32 }
}

#[tonic::async_trait]
impl Health for Fragile {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if request.get_ref().service == "panic" {
            panic!("handler bug reached by a request");
        }
        Ok(Response::new(serving()))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let stream = futures::stream::unfold(0, |n| async move {
            if n == 1 {
                // Later replies take time, as real ones do: the first reply is flushed meanwhile
                // (tonic's encoder batches replies that are ready at once).
                tokio::time::sleep(Duration::from_millis(50)).await;
                panic!("handler bug while streaming");
            }
            Some((Ok(serving()), n + 1))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

async fn serve_fragile() -> (Channel, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        Server::builder()
            .layer(CatchPanicLayer)
            .add_service(HealthServer::new(Fragile))
            .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async {
                let _ = rx.await;
            }),
    );
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    (channel, tx)
}

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest { service: service.into() }
}

#[tokio::test]
async fn a_panic_in_a_unary_handler_is_internal_for_that_request_only() {
    let (channel, _stop) = serve_fragile().await;
    let mut client = HealthClient::new(channel);
    client.check(check("before")).await.expect("served before");
    let status = client.check(check("panic")).await.expect_err("the panicking request fails");
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), PANIC_MESSAGE);
    // Same client, same connection: still served, repeatedly.
    for _ in 0..3 {
        client.check(check("after")).await.expect("served after");
    }
}

#[tokio::test]
async fn a_panic_while_streaming_ends_that_stream_with_internal() {
    let (channel, _stop) = serve_fragile().await;
    let mut client = HealthClient::new(channel);
    let mut stream = client.watch(check("")).await.expect("stream opens").into_inner();
    let first = stream.message().await.expect("first reply").expect("a message");
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let status = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("the stream ends instead of hanging")
        .expect_err("the panic ends the stream");
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), PANIC_MESSAGE);
    client.check(check("after")).await.expect("served after");
}
