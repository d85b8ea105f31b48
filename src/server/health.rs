//! The `grpc.health.v1.Health` service, with `Watch` streams that end at shutdown.
//!
//! A graceful shutdown waits for every open call, and a `Watch` stream never ends on its own: one
//! watching client (a load balancer, a sidecar) would hold every shutdown for the whole drain
//! timeout. Once the shutdown starts, each `Watch` stream sends `NOT_SERVING` (unless that was its
//! last message) and ends with OK, so the drain waits only for real work. `Check` is tonic-health's.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

/// Tells the health service that the server is shutting down: every `Watch` stream ends.
#[derive(Debug)]
pub struct HealthShutdown(watch::Sender<bool>);

impl HealthShutdown {
    /// Ends every open `Watch` stream (after its `NOT_SERVING`) and every one opened later.
    /// Call it once the statuses are set to `NOT_SERVING`, so watchers see why they were cut.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

/// tonic-health's service, whose `Watch` streams end when [`HealthShutdown::fire`] is called.
#[derive(Debug)]
pub struct ShutdownAwareHealth {
    inner: HealthService,
    stopping: watch::Receiver<bool>,
}

impl ShutdownAwareHealth {
    /// A service reporting the statuses `reporter` sets, and the handle that ends its watches.
    pub fn new(reporter: HealthReporter) -> (Self, HealthShutdown) {
        let (fire, stopping) = watch::channel(false);
        (Self { inner: HealthService::from_health_reporter(reporter), stopping }, HealthShutdown(fire))
    }
}

/// What a `Watch` stream yields.
type WatchItem = Result<HealthCheckResponse, Status>;

/// A `Watch` stream between two messages.
struct WatchState<S> {
    statuses: Pin<Box<S>>,
    stopping: watch::Receiver<bool>,
    /// Whether the last status sent was `NOT_SERVING`.
    told_not_serving: bool,
}

/// What a `Watch` stream does next.
enum Next {
    /// Sends this message from tonic-health's stream, or ends with it.
    Status(Option<WatchItem>),
    /// The server is shutting down.
    Stop,
}

/// `statuses`, ended by the shutdown: a status change already waiting is sent first, then
/// `NOT_SERVING` if that was not the last status sent.
fn until_shutdown<S>(statuses: S, stopping: watch::Receiver<bool>) -> impl Stream<Item = WatchItem>
where
    S: Stream<Item = WatchItem> + Send + 'static,
{
    let state = WatchState { statuses: Box::pin(statuses), stopping, told_not_serving: false };
    futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        let next = tokio::select! {
            // Status changes first: the shutdown sets NOT_SERVING before it fires.
            biased;
            next = state.statuses.next() => Next::Status(next),
            // An error means the sender is gone with the server: stop as well.
            _ = state.stopping.wait_for(|stopping| *stopping) => Next::Stop,
        };
        match next {
            Next::Status(Some(item)) => {
                state.told_not_serving =
                    matches!(&item, Ok(r) if r.status == ServingStatus::NotServing as i32);
                Some((item, Some(state)))
            }
            Next::Status(None) => None,
            Next::Stop if state.told_not_serving => None,
            Next::Stop => Some((Ok(HealthCheckResponse { status: ServingStatus::NotServing as i32 }), None)),
        }
    })
}

#[tonic::async_trait]
impl Health for ShutdownAwareHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = Pin<Box<dyn Stream<Item = WatchItem> + Send>>;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let statuses = self.inner.watch(request).await?.into_inner();
        Ok(Response::new(Box::pin(until_shutdown(statuses, self.stopping.clone()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: ServingStatus) -> WatchItem {
        Ok(HealthCheckResponse { status: status as i32 })
    }

    fn statuses(items: &[WatchItem]) -> Vec<i32> {
        items.iter().map(|i| i.as_ref().map(|r| r.status).unwrap_or(-1)).collect()
    }

    #[tokio::test]
    async fn a_watch_ends_after_not_serving_once_the_shutdown_fires() {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let (fire, stopping) = watch::channel(false);
        let mut stream = Box::pin(until_shutdown(rx, stopping));
        tx.unbounded_send(reply(ServingStatus::Serving)).unwrap();
        assert_eq!(statuses(&[stream.next().await.unwrap()]), [ServingStatus::Serving as i32]);

        // The shutdown set NOT_SERVING, then fired: the change is sent once and the stream ends,
        // although the status source itself never would.
        tx.unbounded_send(reply(ServingStatus::NotServing)).unwrap();
        fire.send_replace(true);
        let rest: Vec<WatchItem> = stream.collect().await;
        assert_eq!(statuses(&rest), [ServingStatus::NotServing as i32]);
    }

    #[tokio::test]
    async fn a_watch_still_serving_at_shutdown_is_told_not_serving() {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let (fire, stopping) = watch::channel(false);
        let stream = until_shutdown(rx, stopping);
        tx.unbounded_send(reply(ServingStatus::Serving)).unwrap();
        fire.send_replace(true);
        let all: Vec<WatchItem> = stream.collect().await;
        assert_eq!(statuses(&all), [ServingStatus::Serving as i32, ServingStatus::NotServing as i32]);
        drop(tx);
    }
}
