//! Deadline-aware admission: each encoder's recent pace, and the decisions taken from it.
//!
//! The queue is FIFO and bounded by its capacity for every request. On top of that bound:
//! - **at the door**, a request with a deadline is refused (RESOURCE_EXHAUSTED, with a retry
//!   hint) when the inputs ahead of it (queued, or taken and not finished) plus its own cannot be
//!   done before that deadline at the encoder's recent pace;
//! - **when a batch is taken**, its size is bounded so that it can finish before the tightest
//!   deadline among its inputs, and an input that could not finish even in a batch of its own is
//!   dropped unprocessed;
//! - **before the tower runs**, an input whose deadline falls before the run could end is
//!   dropped too.
//!
//! Shedding at the door is what keeps goodput under overload: without it, a queue of hundreds of
//! inputs is accepted that cannot drain within a short deadline, the CPU goes to preprocessing
//! inputs that expire before their batch runs, and nearly nothing completes in time. Bounding
//! the batch matters for short deadlines: a full batch can take longer than the deadline itself.
//!
//! The pace comes from the encoder's last [`WINDOW`] batches: the encoder time each input costs
//! (counted from the later of the previous batch's end and the batch's own take, so that while
//! the encoder is backlogged it is the interval between consecutive batch ends, the throughput the
//! pipelined preprocessing and tower reach together), and straight-line fits of a batch's latency
//! and tower time against its size. Every estimate is multiplied by a headroom factor that grows
//! whenever an admitted request misses its deadline and decays slowly while they are met, so
//! admission corrects its own optimism (additive-increase, multiplicative-decrease style).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Batches the pace is computed over.
const WINDOW: usize = 32;

/// Headroom growth per admitted request that missed its deadline, decay per one that met it,
/// and bounds. At equilibrium, misses are about `ln(1/DECAY) / ln(GROWTH)` = 0.5% of admitted
/// requests.
const HEADROOM_GROWTH: f64 = 1.1;
const HEADROOM_DECAY: f64 = 0.9995;
const HEADROOM_RANGE: (f64, f64) = (1.0, 8.0);

/// One finished batch, as the pace sees it.
#[derive(Debug, Clone, Copy)]
struct BatchSample {
    /// Inputs it ran.
    items: usize,
    /// Encoder time the batch cost (see the module header), seconds.
    cost: f64,
    /// From its take to the end of its tower run, seconds.
    latency: f64,
    /// Its tower run alone, seconds.
    inference: f64,
}

#[derive(Debug)]
struct PaceState {
    samples: VecDeque<BatchSample>,
    last_finish: Option<Instant>,
    headroom: f64,
}

/// An encoder's recent pace, updated by its runner after every batch and by the engine as each
/// admitted request with a deadline ends.
#[derive(Debug)]
pub(crate) struct PaceMeter {
    state: Mutex<PaceState>,
}

impl Default for PaceMeter {
    fn default() -> Self {
        Self {
            state: Mutex::new(PaceState {
                samples: VecDeque::with_capacity(WINDOW),
                last_finish: None,
                headroom: HEADROOM_RANGE.0,
            }),
        }
    }
}

/// `fixed + per_item * n` seconds: a batch-size-dependent duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Linear {
    /// Seconds whatever the batch size.
    pub fixed: f64,
    /// Seconds per input.
    pub per_item: f64,
}

impl Linear {
    /// The value at `n` inputs, in seconds.
    fn at(&self, n: usize) -> f64 {
        self.fixed + self.per_item * n as f64
    }

    /// The least-squares line through `(size, seconds)` points, kept non-negative; through the
    /// origin when every point has the same size.
    fn fit(points: &[(f64, f64)]) -> Self {
        let n = points.len() as f64;
        let (sx, sy) = points.iter().fold((0.0, 0.0), |(sx, sy), (x, y)| (sx + x, sy + y));
        let (mx, my) = (sx / n, sy / n);
        let (sxx, sxy) = points
            .iter()
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (x - mx), b + (x - mx) * (y - my)));
        let proportional = Self { fixed: 0.0, per_item: if mx > 0.0 { my / mx } else { 0.0 } };
        if sxx <= f64::EPSILON {
            return proportional;
        }
        let per_item = sxy / sxx;
        let fixed = my - per_item * mx;
        if per_item < 0.0 || fixed < 0.0 { proportional } else { Self { fixed, per_item } }
    }
}

/// What admission and batching predict with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pace {
    /// Encoder time per input while it is busy, seconds.
    pub per_item: f64,
    /// Time from taking a batch to the end of its tower run, by batch size.
    pub latency: Linear,
    /// The tower run alone, by batch size.
    pub inference: Linear,
    /// Mean batch size.
    pub mean_batch: f64,
    /// Factor every estimate is multiplied by (at least 1).
    pub headroom: f64,
}

/// A request refused at the door because its deadline cannot be met.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Unmeetable {
    /// Predicted time until the request would be done.
    pub wait: Duration,
    /// Time left before its deadline.
    pub remaining: Duration,
    /// When a retry could be admitted, if nothing else arrived meanwhile.
    pub retry_after: Duration,
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

impl PaceMeter {
    /// Records a batch of `items` inputs taken at `taken_at` whose tower ran from `started` to
    /// `finished`.
    pub(crate) fn record(&self, taken_at: Instant, started: Instant, finished: Instant, items: usize) {
        if items == 0 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let busy_from = state.last_finish.map_or(taken_at, |last| last.max(taken_at));
        let sample = BatchSample {
            items,
            cost: finished.saturating_duration_since(busy_from).as_secs_f64(),
            latency: finished.saturating_duration_since(taken_at).as_secs_f64(),
            inference: finished.saturating_duration_since(started).as_secs_f64(),
        };
        state.last_finish = Some(finished);
        if state.samples.len() == WINDOW {
            state.samples.pop_front();
        }
        state.samples.push_back(sample);
    }

    /// Records whether an admitted request with a deadline met it.
    pub(crate) fn feedback(&self, met: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let factor = if met { HEADROOM_DECAY } else { HEADROOM_GROWTH };
        state.headroom = (state.headroom * factor).clamp(HEADROOM_RANGE.0, HEADROOM_RANGE.1);
    }

    /// The pace over the recent batches; `None` before the first batch.
    pub(crate) fn pace(&self) -> Option<Pace> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let samples = &state.samples;
        let items: usize = samples.iter().map(|s| s.items).sum();
        if items == 0 {
            return None;
        }
        let cost: f64 = samples.iter().map(|s| s.cost).sum();
        let size = |s: &BatchSample| s.items as f64;
        let latency: Vec<(f64, f64)> = samples.iter().map(|s| (size(s), s.latency)).collect();
        let inference: Vec<(f64, f64)> = samples.iter().map(|s| (size(s), s.inference)).collect();
        Some(Pace {
            per_item: cost / items as f64,
            latency: Linear::fit(&latency),
            inference: Linear::fit(&inference),
            mean_batch: items as f64 / samples.len() as f64,
            headroom: state.headroom,
        })
    }
}

impl Pace {
    /// Predicted time until `n` inputs admitted now are embedded, with `ahead` inputs queued or
    /// in flight before them: the backlog drains at the busy pace, and the last batch adds the
    /// part of its latency that pipelining does not hide.
    pub(crate) fn wait(&self, ahead: usize, n: usize) -> Duration {
        let drain = self.per_item * (ahead + n) as f64;
        let batch = self.mean_batch.round().max(1.0) as usize;
        let unhidden = (self.latency.at(batch) - self.per_item * batch as f64).max(0.0);
        seconds(self.headroom * (drain + unhidden))
    }

    /// Whether `n` inputs admitted at `now` with `ahead` inputs before them can be done by
    /// `deadline`. With nothing ahead the request waits for no one: it is admitted, and the
    /// checks at take and before the tower judge it on its own.
    pub(crate) fn check_deadline(
        &self,
        now: Instant,
        deadline: Instant,
        ahead: usize,
        n: usize,
    ) -> Result<(), Unmeetable> {
        let remaining = deadline.saturating_duration_since(now);
        if ahead == 0 {
            return Ok(());
        }
        let wait = self.wait(ahead, n);
        if wait <= remaining {
            return Ok(());
        }
        Err(Unmeetable { wait, remaining, retry_after: (wait - remaining).max(Duration::from_millis(1)) })
    }

    /// Whether a batch of `size` inputs taken now can finish within `remaining`.
    pub(crate) fn batch_fits(&self, size: usize, remaining: Duration) -> bool {
        seconds(self.headroom * self.latency.at(size)) <= remaining
    }

    /// Predicted duration of a tower run of `size` inputs.
    pub(crate) fn inference(&self, size: usize) -> Duration {
        seconds(self.headroom * self.inference.at(size))
    }

    /// How long until `excess` queued inputs have drained.
    pub(crate) fn drain_time(&self, excess: usize) -> Duration {
        seconds(self.headroom * self.per_item * excess as f64).max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// `d` is `millis` ms to within a microsecond (estimates are computed in floating point).
    fn about(d: Duration, millis: u64) -> bool {
        d.abs_diff(ms(millis)) <= Duration::from_micros(1)
    }

    #[test]
    fn the_pace_is_the_interval_between_batch_ends_while_backlogged() {
        let meter = PaceMeter::default();
        assert!(meter.pace().is_none(), "no pace before the first batch");
        let t0 = Instant::now();
        // Batches taken back to back, each preprocessed for 20 ms while the one before runs its
        // tower for 10 ms: batch ends 20 ms apart once the pipeline is full.
        meter.record(t0, t0 + ms(20), t0 + ms(30), 4);
        meter.record(t0 + ms(20), t0 + ms(40), t0 + ms(50), 4);
        meter.record(t0 + ms(40), t0 + ms(60), t0 + ms(70), 4);
        let pace = meter.pace().unwrap();
        assert!(close(pace.per_item, 0.070 / 12.0), "{pace:?}");
        assert_eq!(
            pace.latency,
            Linear { fixed: 0.0, per_item: 0.030 / 4.0 },
            "one batch size: proportional"
        );
        assert!(close(pace.mean_batch, 4.0));
        // An idle gap is not counted as work: the next batch costs from its own take.
        meter.record(t0 + ms(1000), t0 + ms(1020), t0 + ms(1025), 2);
        assert!(close(meter.pace().unwrap().per_item, 0.095 / 14.0));
    }

    #[test]
    fn latency_is_fitted_against_batch_size() {
        let meter = PaceMeter::default();
        let t0 = Instant::now();
        // Latency 5 ms + 2 ms per input, tower 1 ms + 1 ms per input.
        for (i, n) in [1u64, 4, 8, 2, 16].into_iter().enumerate() {
            let at = t0 + ms(1000 * i as u64);
            meter.record(at, at + ms(4 + n), at + ms(5 + 2 * n), n as usize);
        }
        let pace = meter.pace().unwrap();
        assert!(close(pace.latency.fixed, 0.005) && close(pace.latency.per_item, 0.002), "{pace:?}");
        assert!(close(pace.inference.fixed, 0.001) && close(pace.inference.per_item, 0.001), "{pace:?}");
        assert!(pace.batch_fits(10, ms(25)) && !pace.batch_fits(11, ms(25)));
        assert!(about(pace.inference(3), 4));
    }

    #[test]
    fn the_window_forgets_old_batches() {
        let meter = PaceMeter::default();
        let t0 = Instant::now();
        meter.record(t0, t0, t0 + ms(500), 1);
        for i in 1..=WINDOW as u64 {
            let at = t0 + ms(1000 * i);
            meter.record(at, at, at + ms(10), 1);
        }
        assert!(close(meter.pace().unwrap().per_item, 0.010), "the slow first batch left the window");
    }

    #[test]
    fn misses_grow_the_headroom_and_met_deadlines_shrink_it_back() {
        let meter = PaceMeter::default();
        let t0 = Instant::now();
        meter.record(t0, t0, t0 + ms(10), 1);
        assert!(close(meter.pace().unwrap().headroom, 1.0));
        meter.feedback(false);
        meter.feedback(false);
        assert!(close(meter.pace().unwrap().headroom, 1.21));
        for _ in 0..10_000 {
            meter.feedback(true);
        }
        assert!(close(meter.pace().unwrap().headroom, 1.0), "never below 1");
        for _ in 0..100 {
            meter.feedback(false);
        }
        assert!(close(meter.pace().unwrap().headroom, HEADROOM_RANGE.1), "bounded");
    }

    #[test]
    fn a_deadline_the_work_ahead_makes_unmeetable_is_refused_with_a_retry_hint() {
        let pace = Pace {
            per_item: 0.010,
            latency: Linear { fixed: 0.0, per_item: 0.015 },
            inference: Linear { fixed: 0.0, per_item: 0.005 },
            mean_batch: 4.0,
            headroom: 1.0,
        };
        let now = Instant::now();
        // 10 ahead + 1: 110 ms to drain, and 60 - 40 = 20 ms of a 4-input batch's latency that
        // pipelining does not hide.
        assert!(about(pace.wait(10, 1), 130));
        assert_eq!(pace.check_deadline(now, now + ms(200), 10, 1), Ok(()));
        assert_eq!(pace.check_deadline(now, now + ms(131), 10, 1), Ok(()));
        let refusal = pace.check_deadline(now, now + ms(100), 10, 1).unwrap_err();
        assert!(about(refusal.wait, 130) && refusal.remaining == ms(100), "{refusal:?}");
        assert!(about(refusal.retry_after, 30), "{refusal:?}");
        // Nothing ahead: admitted whatever the deadline; the later checks judge it.
        assert_eq!(pace.check_deadline(now, now + ms(1), 0, 4), Ok(()));
        assert!(about(pace.drain_time(3), 30));
        // Headroom scales every estimate.
        let wary = Pace { headroom: 2.0, ..pace };
        assert!(about(wary.wait(10, 1), 260));
        assert!(!wary.batch_fits(4, ms(100)) && pace.batch_fits(4, ms(100)));
    }
}
