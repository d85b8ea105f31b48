//! Recording of request outcomes: the latency histogram, errors, server stage timings and the
//! latency trend over the run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Highest latency the histogram resolves, in microseconds (one hour); longer ones saturate.
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;
/// Significant decimal digits kept by the histogram.
const HISTOGRAM_DIGITS: u8 = 3;
/// Slots of the latency trend; they are merged pairwise whenever the run outgrows them, so memory
/// stays bounded however long it runs.
const TREND_SLOTS: usize = 1024;

/// Server stage timings of one response, in microseconds: queue, preprocess, inference, total.
pub type StageMicros = [u64; 4];

/// How one request ended.
#[derive(Debug)]
pub enum Outcome {
    /// Embedded; carries the number of inputs and the server timings when the reply had them.
    Ok {
        /// Inputs embedded.
        items: u64,
        /// Server stage timings.
        stages: Option<StageMicros>,
        /// Inputs the server answered from its embedding cache, when the reply said.
        cache_hits: Option<u64>,
    },
    /// Failed with this gRPC status code name.
    Failed(String),
}

/// Mean latency of successive slices of the measured requests, in send order.
#[derive(Debug, Clone)]
struct Trend {
    /// Requests per slot.
    stride: u64,
    /// (sum of latencies in µs, count) per slot.
    slots: Vec<(u64, u64)>,
}

impl Trend {
    fn new() -> Self {
        Trend { stride: 1, slots: vec![(0, 0); TREND_SLOTS] }
    }

    fn add(&mut self, seq: u64, micros: u64) {
        while seq >= TREND_SLOTS as u64 * self.stride {
            for j in 0..TREND_SLOTS / 2 {
                let (a, b) = (self.slots[2 * j], self.slots[2 * j + 1]);
                self.slots[j] = (a.0 + b.0, a.1 + b.1);
            }
            self.slots[TREND_SLOTS / 2..].fill((0, 0));
            self.stride *= 2;
        }
        let slot = &mut self.slots[(seq / self.stride) as usize];
        slot.0 += micros;
        slot.1 += 1;
    }

    /// Mean latency in ms of each of `parts` equal slices of the first `count` requests (fewer
    /// slices when there are fewer slots in use); slices without a success give `None`.
    fn slices(&self, count: u64, parts: usize) -> Vec<Option<f64>> {
        let used = count.div_ceil(self.stride).min(TREND_SLOTS as u64) as usize;
        let parts = parts.min(used);
        (0..parts)
            .map(|p| {
                let range = p * used / parts..(p + 1) * used / parts;
                let (sum, n) = self.slots[range].iter().fold((0, 0), |(s, n), (a, b)| (s + a, n + b));
                (n > 0).then(|| sum as f64 / n as f64 / 1000.0)
            })
            .collect()
    }
}

/// Figures of the measured part of a run.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latencies of successful requests, in µs.
    pub histogram: Histogram<u64>,
    /// Successful requests.
    pub ok: u64,
    /// Inputs embedded by successful requests.
    pub items: u64,
    /// Failed requests by gRPC code name.
    pub errors: BTreeMap<String, u64>,
    /// Sums of server stage timings (µs) over `stage_samples` replies that carried them.
    pub stage_sums: [u64; 4],
    /// Replies that carried stage timings.
    pub stage_samples: u64,
    /// Inputs answered from the server's embedding cache, over `cache_reported_items` inputs of
    /// replies that said.
    pub cache_hits: u64,
    /// Inputs of replies that reported their cache hits.
    pub cache_reported_items: u64,
    /// When the last measured request completed.
    pub last_done: Option<Instant>,
    /// Measured requests issued (highest sequence number + 1).
    pub issued: u64,
    trend: Trend,
}

impl Stats {
    fn new() -> Result<Self, hdrhistogram::CreationError> {
        Ok(Stats {
            histogram: Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, HISTOGRAM_DIGITS)?,
            ok: 0,
            items: 0,
            errors: BTreeMap::new(),
            stage_sums: [0; 4],
            stage_samples: 0,
            cache_hits: 0,
            cache_reported_items: 0,
            last_done: None,
            issued: 0,
            trend: Trend::new(),
        })
    }

    /// Failed requests.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Mean latency (ms) of successful requests in each tenth of the measured requests, taken in
    /// the order they were (meant to be) sent.
    pub fn trend_ms(&self) -> Vec<Option<f64>> {
        self.trend.slices(self.issued, 10)
    }
}

/// Live counters for the progress line, covering warm-up too.
#[derive(Debug, Clone, Copy, Default)]
pub struct Live {
    /// Requests completed.
    pub done: u64,
    /// Requests failed.
    pub failed: u64,
}

/// Thread-safe sink of request outcomes for one run.
pub struct Recorder {
    inner: Mutex<(Stats, Live)>,
    in_flight: AtomicUsize,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Result<Self, hdrhistogram::CreationError> {
        Ok(Recorder { inner: Mutex::new((Stats::new()?, Live::default())), in_flight: AtomicUsize::new(0) })
    }

    fn lock(&self) -> MutexGuard<'_, (Stats, Live)> {
        // A panic while holding the lock leaves plain counters behind, still worth reporting.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a request as sent; the returned guard marks it done when dropped.
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Records a request (meant to be) sent at `sent` and finished at `done`. `seq` is its position
    /// among the measured requests, `None` during warm-up.
    pub fn record(&self, seq: Option<u64>, sent: Instant, done: Instant, outcome: Outcome) {
        let micros = u64::try_from(done.saturating_duration_since(sent).as_micros()).unwrap_or(u64::MAX);
        let mut guard = self.lock();
        let (stats, live) = &mut *guard;
        live.done += 1;
        if matches!(outcome, Outcome::Failed(_)) {
            live.failed += 1;
        }
        let Some(seq) = seq else { return };
        stats.issued = stats.issued.max(seq + 1);
        stats.last_done = Some(stats.last_done.map_or(done, |t| t.max(done)));
        match outcome {
            Outcome::Ok { items, stages, cache_hits } => {
                stats.ok += 1;
                stats.items += items;
                if let Some(hits) = cache_hits {
                    stats.cache_hits += hits;
                    stats.cache_reported_items += items;
                }
                stats.histogram.saturating_record(micros.max(1));
                stats.trend.add(seq, micros);
                if let Some(stages) = stages {
                    stats.stage_samples += 1;
                    for (sum, v) in stats.stage_sums.iter_mut().zip(stages) {
                        *sum += v;
                    }
                }
            }
            Outcome::Failed(code) => *stats.errors.entry(code).or_default() += 1,
        }
    }

    /// A snapshot of the live counters and of the measured p99 (ms) so far.
    pub fn live(&self) -> (Live, Option<f64>) {
        let guard = self.lock();
        let p99 = (guard.0.ok > 0).then(|| guard.0.histogram.value_at_quantile(0.99) as f64 / 1000.0);
        (guard.1, p99)
    }

    /// The measured figures.
    pub fn finish(&self) -> Stats {
        self.lock().0.clone()
    }
}

/// Counts a request as in flight while alive.
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Converts a duration to fractional milliseconds.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trend_keeps_send_order_when_slots_merge() {
        let mut trend = Trend::new();
        let n = 10 * TREND_SLOTS as u64 + 7;
        // Latency grows with the send position, arriving out of order.
        for seq in (0..n).rev() {
            trend.add(seq, 1000 * (seq / (n / 10 + 1) + 1));
        }
        assert!(trend.stride >= 8);
        let slices = trend.slices(n, 10);
        assert_eq!(slices.len(), 10);
        let means: Vec<f64> = slices.into_iter().map(Option::unwrap).collect();
        assert!(means.windows(2).all(|w| w[0] <= w[1]), "{means:?}");
        assert!((means[0] - 1.0).abs() < 0.05 && (means[9] - 10.0).abs() < 0.5, "{means:?}");
    }

    #[test]
    fn recorder_leaves_warmup_out() {
        let recorder = Recorder::new().unwrap();
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(5);
        recorder.record(None, t0, later, Outcome::Ok { items: 1, stages: None, cache_hits: None });
        recorder.record(
            Some(0),
            t0,
            later,
            Outcome::Ok { items: 2, stages: Some([1, 2, 3, 6]), cache_hits: Some(1) },
        );
        recorder.record(Some(1), t0, later, Outcome::Failed("Unavailable".into()));
        let stats = recorder.finish();
        assert_eq!((stats.ok, stats.items, stats.failed(), stats.issued), (1, 2, 1, 2));
        assert_eq!(stats.stage_sums, [1, 2, 3, 6]);
        assert_eq!(stats.histogram.len(), 1);
        assert_eq!(recorder.live().0.done, 3);
    }
}
