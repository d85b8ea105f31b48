//! Prometheus metrics of a server: request counts by status, stage latencies, batch sizes, queue
//! depth, cache and encoder health, each labelled by model and modality.
//!
//! Each server owns its own registry (no process-global state), so several servers in one
//! process (as in the tests) keep separate figures.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// Labels of an encoder's series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EncoderLabels {
    /// Model name.
    pub model: String,
    /// Modality (`text`, `image`, `audio`, `point_cloud`).
    pub modality: String,
}

impl EncoderLabels {
    /// Labels for `model`'s `modality` encoder.
    pub fn new(model: &str, modality: &str) -> Self {
        Self { model: model.to_string(), modality: modality.to_string() }
    }
}

/// Labels of a refusal at admission: the encoder and why (`queue_full`: the queue was at its
/// capacity; `deadline`: the inputs queued ahead could not be done before the request's deadline).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// Model name.
    pub model: String,
    /// Modality.
    pub modality: String,
    /// Why the request was refused.
    pub reason: String,
}

/// Labels of inputs dropped unprocessed: the encoder and where (`queue`: when their batch was
/// taken, before preprocessing; `inference`: after preprocessing, before the tower).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// Model name.
    pub model: String,
    /// Modality.
    pub modality: String,
    /// Where the inputs were dropped.
    pub stage: String,
}

impl StageLabels {
    /// `encoder`'s labels at `stage`.
    pub fn new(encoder: &EncoderLabels, stage: &str) -> Self {
        Self { model: encoder.model.clone(), modality: encoder.modality.clone(), stage: stage.to_string() }
    }
}

/// Labels of connections the server closed: why (`idle`, `handshake`, `evicted`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: String,
}

/// Labels of a request count: the encoder and the gRPC status the request ended with.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// Model name.
    pub model: String,
    /// Modality.
    pub modality: String,
    /// gRPC status code name in snake case (`ok`, `invalid_argument`, `resource_exhausted`...).
    pub status: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~27 s: a text item on the fixture model up to a batch of large images on a CPU.
    Histogram::new(exponential_buckets(50e-6, 2.0, 20))
}

fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

/// Every metric bindery exports.
pub struct Metrics {
    registry: Registry,
    /// Requests by model, modality and final status (a mixed request counts once per modality).
    pub requests: Family<StatusLabels, Counter>,
    /// Inputs embedded, by encoder (cache hits included).
    pub items: Family<EncoderLabels, Counter>,
    /// Time from admission until an input's batch started preprocessing, plus any wait for the
    /// tower after preprocessing.
    pub queue_seconds: HistogramFamily<EncoderLabels>,
    /// Preprocessing time of each batch.
    pub preprocess_seconds: HistogramFamily<EncoderLabels>,
    /// Tower run time of each batch.
    pub inference_seconds: HistogramFamily<EncoderLabels>,
    /// Server time of each request, per modality it contained.
    pub request_seconds: HistogramFamily<EncoderLabels>,
    /// Inputs per tower run.
    pub batch_size: HistogramFamily<EncoderLabels>,
    /// Inputs admitted and not yet taken into a batch.
    pub queue_depth: Family<EncoderLabels, Gauge>,
    /// Requests admitted to an encoder's queue (a mixed request once per modality).
    pub admitted: Family<EncoderLabels, Counter>,
    /// Requests refused at admission, by reason.
    pub rejected: Family<RejectLabels, Counter>,
    /// Inputs dropped unprocessed because their deadline had passed or could not be met.
    pub expired: Family<StageLabels, Counter>,
    /// Admitted requests that did not finish before their deadline (failed with
    /// DEADLINE_EXCEEDED, were dropped, or finished late): how often admission misjudged.
    pub late: Family<EncoderLabels, Counter>,
    /// Inputs answered from the embedding cache.
    pub cache_hits: Family<EncoderLabels, Counter>,
    /// Inputs looked up in the cache and not found.
    pub cache_misses: Family<EncoderLabels, Counter>,
    /// Bytes held by the embedding cache.
    pub cache_bytes: Gauge,
    /// 1 while the encoder's last tower run (or its warm-up) succeeded, else 0.
    pub encoder_up: Family<EncoderLabels, Gauge>,
    /// Client connections open.
    pub connections: Gauge,
    /// Connections the server closed, by reason.
    pub connections_closed: Family<ReasonLabels, Counter>,
    /// Connections refused at the cap because every open one had a call in flight.
    pub connections_refused: Counter,
    /// Failed `accept` calls (descriptor shortages among them).
    pub accept_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set of metrics in its own registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bindery");
        let requests = Family::<StatusLabels, Counter>::default();
        registry.register("requests", "Requests by model, modality and gRPC status", requests.clone());
        let items = Family::<EncoderLabels, Counter>::default();
        registry.register(
            "items",
            "Inputs run through the encoder (cache hits are counted in cache_hits)",
            items.clone(),
        );
        let histogram = || HistogramFamily::<EncoderLabels>::new_with_constructor(latency_histogram);
        let queue_seconds = histogram();
        registry.register_with_unit(
            "queue_duration",
            "Time inputs waited for a batch and for the tower",
            Unit::Seconds,
            queue_seconds.clone(),
        );
        let preprocess_seconds = histogram();
        registry.register_with_unit(
            "preprocess_duration",
            "Preprocessing time per batch",
            Unit::Seconds,
            preprocess_seconds.clone(),
        );
        let inference_seconds = histogram();
        registry.register_with_unit(
            "inference_duration",
            "Tower run time per batch",
            Unit::Seconds,
            inference_seconds.clone(),
        );
        let request_seconds = histogram();
        registry.register_with_unit(
            "request_duration",
            "Server time per request",
            Unit::Seconds,
            request_seconds.clone(),
        );
        let batch_size = HistogramFamily::<EncoderLabels>::new_with_constructor(batch_histogram);
        registry.register("batch_size", "Inputs per tower run", batch_size.clone());
        let queue_depth = Family::<EncoderLabels, Gauge>::default();
        registry.register("queue_depth", "Inputs admitted and waiting for a batch", queue_depth.clone());
        let admitted = Family::<EncoderLabels, Counter>::default();
        registry.register("admitted", "Requests admitted to the encoder's queue", admitted.clone());
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "rejected",
            "Requests refused at admission: queue_full, or deadline (the work queued ahead could not be \
             done before the request's deadline)",
            rejected.clone(),
        );
        let expired = Family::<StageLabels, Counter>::default();
        registry.register(
            "expired",
            "Inputs dropped unprocessed because their deadline had passed or could not be met, by stage \
             (queue: before preprocessing; inference: before the tower)",
            expired.clone(),
        );
        let late = Family::<EncoderLabels, Counter>::default();
        registry.register(
            "late",
            "Admitted requests that did not finish before their deadline",
            late.clone(),
        );
        let cache_hits = Family::<EncoderLabels, Counter>::default();
        registry.register("cache_hits", "Inputs answered from the embedding cache", cache_hits.clone());
        let cache_misses = Family::<EncoderLabels, Counter>::default();
        registry.register("cache_misses", "Inputs not found in the embedding cache", cache_misses.clone());
        let cache_bytes = Gauge::default();
        registry.register("cache_bytes", "Bytes held by the embedding cache", cache_bytes.clone());
        let encoder_up = Family::<EncoderLabels, Gauge>::default();
        registry.register("encoder_up", "1 while the encoder's last tower run succeeded", encoder_up.clone());
        let connections = Gauge::default();
        registry.register("connections", "Client connections open", connections.clone());
        let connections_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections closed by the server: idle (idle timeout), handshake (no TLS handshake or \
             HTTP/2 preface in time), evicted (longest-idle connection closed for a new one at the cap)",
            connections_closed.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections refused at the cap because every open one had a call in flight",
            connections_refused.clone(),
        );
        let accept_errors = Counter::default();
        registry.register("accept_errors", "Failed accept calls", accept_errors.clone());
        Self {
            registry,
            requests,
            items,
            queue_seconds,
            preprocess_seconds,
            inference_seconds,
            request_seconds,
            batch_size,
            queue_depth,
            admitted,
            rejected,
            expired,
            late,
            cache_hits,
            cache_misses,
            cache_bytes,
            encoder_up,
            connections,
            connections_closed,
            connections_refused,
            accept_errors,
        }
    }

    /// The metrics in the Prometheus/OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
