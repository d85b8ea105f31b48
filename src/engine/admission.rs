//! Deadline-aware admission: each encoder's recent pace, and the decisions taken from it.
//!
//! The queue is FIFO and bounded by its capacity for every request. On top of that bound:
//! - **at the door**, a request with a deadline is refused (RESOURCE_EXHAUSTED, with a retry
//!   hint) when the inputs ahead of it (queued, or taken and not yet past the slower of
//!   preprocessing and the tower) plus its own cannot be done before that deadline at the
//!   encoder's recent pace;
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
//! The pace comes from the encoder's last [`WINDOW`] batches: straight-line fits of a batch's
//! preprocessing and tower times against its size. Preprocessing of one batch overlaps the tower
//! run of the one before, so a backlog drains at the pace of the slower stage, and a batch taken
//! while the tower is busy (a run in progress, a batch waiting for it) ends after both its own
//! preprocessing and that work, then its own run.
//!
//! The admission estimate is multiplied by a headroom factor steered by the share of admitted
//! requests that miss their deadline, counted afresh in each interval of at least
//! [`ADJUST_EVERY`]: above [`MISS_TARGET`] the headroom grows a step, with no miss it shrinks a
//! step back towards 1. Counting afresh keeps a burst of misses from one misjudged moment from
//! growing it again and again while the first step takes effect. The checks on work already
//! admitted use the plain pace, with batches sized to the high end of each stage's spread.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Batches the pace is computed over.
const WINDOW: usize = 32;

/// Share of admitted requests allowed to miss their deadline before the headroom grows.
const MISS_TARGET: f64 = 0.005;

/// Headroom steps (growth, shrinkage), bounds, and the shortest interval over which misses are
/// counted before a step. The floor keeps 30% of every deadline in reserve: on a shared
/// machine a stall of a few tens of milliseconds would otherwise make every request queued to the
/// limit miss at once.
const HEADROOM_GROWTH: f64 = 1.1;
const HEADROOM_SHRINK: f64 = 0.995;
const HEADROOM_RANGE: (f64, f64) = (1.4, 8.0);
const ADJUST_EVERY: Duration = Duration::from_millis(100);

/// One finished batch, as the pace sees it.
#[derive(Debug, Clone, Copy)]
struct BatchSample {
    /// Inputs it ran.
    items: usize,
    /// Its preprocessing, seconds.
    preprocess: f64,
    /// Its tower run, seconds.
    inference: f64,
}

#[derive(Debug)]
struct PaceState {
    samples: VecDeque<BatchSample>,
    headroom: f64,
    /// Admitted requests with a deadline that ended since the last step, and those that missed.
    ended: u32,
    missed: u32,
    last_adjust: Option<Instant>,
    /// When the tower run in progress is expected to end; `None` while the tower is idle.
    tower_busy_until: Option<Instant>,
    /// Sizes of the preprocessed batches waiting for the tower, in order.
    staged: VecDeque<usize>,
    /// Preprocessing and tower fits of the last window whose batches had different sizes.
    informed: Option<(Linear, Linear)>,
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
                headroom: HEADROOM_RANGE.0,
                ended: 0,
                missed: 0,
                last_adjust: None,
                tower_busy_until: None,
                staged: VecDeque::new(),
                informed: None,
            }),
        }
    }
}

/// `fixed + per_item * n` seconds: a batch-size-dependent duration, with the spread of the
/// measurements around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Linear {
    /// Seconds whatever the batch size.
    pub fixed: f64,
    /// Seconds per input.
    pub per_item: f64,
    /// Standard deviation of the measurements from the line, as a share of the line's value
    /// (the same stage varies in proportion to its work).
    pub spread: f64,
}

/// Standard deviations added to a stage time when sizing a batch: a batch sized to the mean
/// estimate would end after its tightest deadline about half the time.
const SPREADS: f64 = 2.5;

impl Linear {
    /// The expected value at `n` inputs, in seconds.
    fn at(&self, n: usize) -> f64 {
        self.fixed + self.per_item * n as f64
    }

    /// A value at `n` inputs that measurements rarely exceed, in seconds.
    fn high(&self, n: usize) -> f64 {
        self.at(n) * (1.0 + SPREADS * self.spread)
    }

    /// The line through this one's value at `size` with `prior`'s fixed part (capped at that
    /// value).
    fn with_fixed_part_of(&self, prior: &Linear, size: usize) -> Self {
        let value = self.at(size);
        let fixed = prior.fixed.min(value);
        Self { fixed, per_item: (value - fixed) / size.max(1) as f64, spread: self.spread }
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
        let proportional = (0.0, if mx > 0.0 { my / mx } else { 0.0 });
        let (fixed, per_item) = if sxx <= f64::EPSILON {
            proportional
        } else {
            let per_item = sxy / sxx;
            let fixed = my - per_item * mx;
            if per_item < 0.0 || fixed < 0.0 { proportional } else { (fixed, per_item) }
        };
        let squares: f64 = points
            .iter()
            .map(|(x, y)| {
                let expected = fixed + per_item * x;
                if expected > 0.0 { ((y - expected) / expected).powi(2) } else { 0.0 }
            })
            .sum();
        Self { fixed, per_item, spread: (squares / n).sqrt() }
    }
}

/// What admission and batching predict with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Pace {
    /// Preprocessing of a batch, by batch size.
    pub preprocess: Linear,
    /// The tower run of a batch, by batch size.
    pub inference: Linear,
    /// The shortest time per input either stage has taken, summed, seconds: a bound no input
    /// beats.
    pub fastest_input: f64,
    /// When the tower run in progress is expected to end (`None`: the tower is idle).
    pub tower_busy_until: Option<Instant>,
    /// Expected tower time of the batches waiting for the tower, seconds.
    pub staged_inference: f64,
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
    /// Records a batch of `items` inputs taken at `taken_at`, preprocessed until
    /// `preprocessed_at`, whose tower ran from `started` to `finished`.
    pub(crate) fn record(
        &self,
        taken_at: Instant,
        preprocessed_at: Instant,
        started: Instant,
        finished: Instant,
        items: usize,
    ) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.tower_busy_until = None;
        if items == 0 {
            return;
        }
        let sample = BatchSample {
            items,
            preprocess: preprocessed_at.saturating_duration_since(taken_at).as_secs_f64(),
            inference: finished.saturating_duration_since(started).as_secs_f64(),
        };
        if state.samples.len() == WINDOW {
            state.samples.pop_front();
        }
        state.samples.push_back(sample);
    }

    /// Records that a preprocessed batch of `items` inputs waits for the tower.
    pub(crate) fn staged(&self, items: usize) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).staged.push_back(items);
    }

    /// Records that the runner took the oldest waiting batch.
    pub(crate) fn unstaged(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).staged.pop_front();
    }

    /// Records that a tower run of `items` inputs starts now, so a batch taken meanwhile knows
    /// when the tower will be free for it.
    pub(crate) fn tower_started(&self, items: usize) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(inference) = fit(&state.samples, |s| s.inference) {
            state.tower_busy_until = Some(Instant::now() + seconds(inference.at(items)));
        }
    }

    /// Records whether an admitted request with a deadline met it, and steers the headroom.
    pub(crate) fn feedback(&self, met: bool) {
        self.feedback_at(met, Instant::now());
    }

    fn feedback_at(&self, met: bool, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.ended += 1;
        state.missed += u32::from(!met);
        let last = *state.last_adjust.get_or_insert(now);
        if now.saturating_duration_since(last) < ADJUST_EVERY {
            return;
        }
        let share = f64::from(state.missed) / f64::from(state.ended);
        let factor = if share > MISS_TARGET {
            HEADROOM_GROWTH
        } else if state.missed == 0 {
            HEADROOM_SHRINK
        } else {
            1.0
        };
        state.headroom = (state.headroom * factor).clamp(HEADROOM_RANGE.0, HEADROOM_RANGE.1);
        (state.ended, state.missed, state.last_adjust) = (0, 0, Some(now));
    }

    /// The pace over the recent batches; `None` before the first batch.
    pub(crate) fn pace(&self) -> Option<Pace> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *state;
        let samples = &state.samples;
        let first = samples.front()?;
        let items: usize = samples.iter().map(|s| s.items).sum();
        let mean_batch = items as f64 / samples.len() as f64;
        let mut preprocess = fit(samples, |s| s.preprocess)?;
        let mut inference = fit(samples, |s| s.inference)?;
        let (smallest, largest) =
            samples.iter().fold((first.items, first.items), |(lo, hi), s| (lo.min(s.items), hi.max(s.items)));
        // Sizes close together (31 and 32) make a line through them say little of its fixed
        // part; from sizes at least a factor 2 apart it is kept.
        if largest >= 2 * smallest {
            state.informed = Some((preprocess, inference));
        } else if let Some((prior_preprocess, prior_inference)) = state.informed {
            // Batches of about one size (a full queue fills every batch) say little of the fixed
            // part of each stage; the last window that did is kept for it, so the estimates for
            // smaller batches are not far off when the load turns.
            let size = mean_batch.round() as usize;
            preprocess = preprocess.with_fixed_part_of(&prior_preprocess, size);
            inference = inference.with_fixed_part_of(&prior_inference, size);
        }
        let fastest = |value: fn(&BatchSample) -> f64| {
            samples.iter().map(|s| value(s) / s.items as f64).fold(f64::INFINITY, f64::min)
        };
        Some(Pace {
            preprocess,
            inference,
            fastest_input: fastest(|s| s.preprocess) + fastest(|s| s.inference),
            tower_busy_until: state.tower_busy_until,
            staged_inference: state.staged.iter().map(|n| inference.at(*n)).sum(),
            mean_batch,
            headroom: state.headroom,
        })
    }
}

/// The line of `value` against batch size over `samples`; `None` without samples.
fn fit(samples: &VecDeque<BatchSample>, value: impl Fn(&BatchSample) -> f64) -> Option<Linear> {
    if samples.is_empty() {
        return None;
    }
    let points: Vec<(f64, f64)> = samples.iter().map(|s| (s.items as f64, value(s))).collect();
    Some(Linear::fit(&points))
}

impl Pace {
    /// Whether the tower, rather than preprocessing, is the slower stage of a typical batch.
    pub(crate) fn tower_bound(&self) -> bool {
        let (preprocess, inference) = self.typical_batch();
        inference > preprocess
    }

    /// Predicted time until `n` inputs admitted now are embedded, with `ahead` inputs before
    /// them that have yet to pass the slower stage: those and these pass it at its own pace, then
    /// the last batch goes through the faster stage.
    ///
    /// The slower stage's own time per input is used, not the interval between batch ends: that
    /// interval also holds the bubbles of a pipeline short of work, and estimating from it would
    /// keep the queue short, batches small and the pipeline short of work.
    pub(crate) fn wait(&self, ahead: usize, n: usize) -> Duration {
        let (preprocess, inference) = self.typical_batch();
        seconds(self.headroom * (self.slower_per_input() * (ahead + n) as f64 + preprocess.min(inference)))
    }

    /// Preprocessing and tower times of a batch of the mean size, seconds.
    fn typical_batch(&self) -> (f64, f64) {
        let batch = self.typical_size();
        (self.preprocess.at(batch), self.inference.at(batch))
    }

    fn typical_size(&self) -> usize {
        self.mean_batch.round().max(1.0) as usize
    }

    /// Time per input of the slower stage at the mean batch size, seconds: the pace at which a
    /// backlog drains.
    fn slower_per_input(&self) -> f64 {
        let (preprocess, inference) = self.typical_batch();
        preprocess.max(inference) / self.typical_size() as f64
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

    /// When a batch of `size` inputs taken at `now` is expected to end its tower run: its
    /// preprocessing, then (after the run in progress, if that ends later) its own run.
    #[cfg(test)]
    fn batch_end(&self, now: Instant, size: usize) -> Instant {
        self.end_after(now, self.preprocess.at(size), self.inference.at(size))
    }

    /// When a batch of `size` inputs taken at `now` ends its tower run, with each stage at the
    /// high end of its measured spread: its preprocessing, then (after the run in progress, if
    /// that ends later) its own run. A batch is sized by this, so that it rarely ends after its
    /// tightest deadline. Unlike the admission estimate it leaves out the headroom: work already
    /// admitted is judged at the plain pace.
    pub(crate) fn batch_end_high(&self, now: Instant, size: usize) -> Instant {
        self.end_after(now, self.preprocess.high(size), self.inference.high(size))
    }

    fn end_after(&self, now: Instant, preprocess: f64, inference: f64) -> Instant {
        let preprocessed = now + seconds(preprocess);
        // The tower first finishes the run in progress, then the batch waiting for it.
        let tower_free = self.tower_busy_until.unwrap_or(now).max(now) + seconds(self.staged_inference);
        tower_free.max(preprocessed) + seconds(inference)
    }

    /// Whether an input taken at `now` cannot end by `deadline` even at the fastest pace either
    /// stage has shown. Only such inputs are dropped at take: judging by the fitted lines, which
    /// can be far off for a batch size the window has not seen, could drop every input, and with
    /// nothing run the pace would never be corrected.
    pub(crate) fn hopeless(&self, now: Instant, deadline: Instant) -> bool {
        now + seconds(self.fastest_input) > deadline
    }

    /// Predicted duration of a tower run of `size` inputs (without headroom, as for
    /// [`Pace::batch_end`]).
    pub(crate) fn inference(&self, size: usize) -> Duration {
        seconds(self.inference.at(size))
    }

    /// How long until `excess` queued inputs have drained.
    pub(crate) fn drain_time(&self, excess: usize) -> Duration {
        seconds(self.headroom * self.slower_per_input() * excess as f64).max(Duration::from_millis(1))
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

    /// Records a batch of `n` taken at `at`, preprocessed for `pre` ms, run for `run` ms.
    fn batch(meter: &PaceMeter, at: Instant, n: usize, pre: u64, run: u64) {
        meter.record(at, at + ms(pre), at + ms(pre), at + ms(pre + run), n);
    }

    #[test]
    fn a_backlog_drains_at_the_pace_of_the_slower_stage() {
        let meter = PaceMeter::default();
        assert!(meter.pace().is_none(), "no pace before the first batch");
        let t0 = Instant::now();
        // Batches of 4: preprocessing 20 ms, tower 10 ms.
        for i in 0..3 {
            batch(&meter, t0 + ms(20 * i), 4, 20, 10);
        }
        let pace = meter.pace().unwrap();
        assert_eq!(
            pace.preprocess,
            Linear { fixed: 0.0, per_item: 0.005, spread: 0.0 },
            "one batch size: proportional"
        );
        assert!(close(pace.mean_batch, 4.0) && !pace.tower_bound());
        // 6 inputs ahead + 2: 8 x 5 ms through preprocessing, then the last batch's 10 ms run;
        // times the headroom, at its floor to begin with.
        assert!(close(pace.headroom, HEADROOM_RANGE.0));
        let plain = Pace { headroom: 1.0, ..pace };
        assert!(about(plain.wait(6, 2), 50));
        assert!(about(plain.drain_time(3), 15));
    }

    #[test]
    fn stage_times_are_fitted_against_batch_size() {
        let meter = PaceMeter::default();
        let t0 = Instant::now();
        // Preprocessing 1 ms + 1 ms per input, tower 3 ms + 1 ms per input.
        for (i, n) in [1u64, 4, 8, 2, 16].into_iter().enumerate() {
            batch(&meter, t0 + ms(1000 * i as u64), n as usize, 1 + n, 3 + n);
        }
        let pace = meter.pace().unwrap();
        assert!(close(pace.preprocess.fixed, 0.001) && close(pace.preprocess.per_item, 0.001), "{pace:?}");
        assert!(close(pace.inference.fixed, 0.003) && close(pace.inference.per_item, 0.001), "{pace:?}");
        assert!(about(pace.inference(3), 6));
        // An idle tower: a batch of 10 ends 11 + 13 ms after its take.
        let now = Instant::now();
        assert_eq!(pace.tower_busy_until, None);
        assert!(about(pace.batch_end(now, 10) - now, 24));
        // A tower busy for another 50 ms: the batch waits for it after its preprocessing.
        meter.tower_started(16);
        let pace = meter.pace().unwrap();
        let busy = pace.tower_busy_until.expect("a run in progress");
        assert!(about(pace.batch_end(now, 10) - busy, 13), "{pace:?}");
        // A batch of 8 waiting for the tower too (11 ms): 24 ms more than the idle case.
        meter.staged(8);
        let pace = meter.pace().unwrap();
        assert!(about(pace.batch_end(now, 10) - busy, 24), "{pace:?}");
        batch(&meter, t0 + ms(9000), 16, 17, 19);
        assert_eq!(meter.pace().unwrap().tower_busy_until, None, "the run ended");
        meter.unstaged();
        assert!(close(meter.pace().unwrap().staged_inference, 0.0), "the waiting batch went to the tower");
    }

    #[test]
    fn a_window_of_one_batch_size_keeps_the_fixed_part_last_seen() {
        let meter = PaceMeter::default();
        let t0 = Instant::now();
        // Preprocessing 2 ms + 1 ms per input, tower 4 ms + 1 ms per input, at varied sizes.
        for (i, n) in [1u64, 8, 4, 2].into_iter().enumerate() {
            batch(&meter, t0 + ms(1000 * i as u64), n as usize, 2 + n, 4 + n);
        }
        assert!(close(meter.pace().unwrap().inference.fixed, 0.004));
        // Then only full batches of 32, slower than before: their level is kept, and the
        // fixed part of the varied window.
        for i in 0..WINDOW as u64 {
            batch(&meter, t0 + ms(10_000 + 1000 * i), 32, 50, 68);
        }
        let pace = meter.pace().unwrap();
        assert!(close(pace.preprocess.at(32), 0.050) && close(pace.inference.at(32), 0.068), "{pace:?}");
        assert!(close(pace.preprocess.fixed, 0.002) && close(pace.inference.fixed, 0.004), "{pace:?}");
    }

    #[test]
    fn the_window_forgets_old_batches() {
        let meter = PaceMeter::default();
        let t0 = Instant::now();
        batch(&meter, t0, 1, 0, 500);
        for i in 1..=WINDOW as u64 {
            batch(&meter, t0 + ms(1000 * i), 1, 0, 10);
        }
        assert!(close(meter.pace().unwrap().inference.at(1), 0.010), "the slow first batch left the window");
    }

    #[test]
    fn the_headroom_follows_the_share_of_missed_deadlines_one_step_per_interval() {
        let meter = PaceMeter::default();
        batch(&meter, Instant::now(), 1, 0, 10);
        let headroom = || meter.pace().unwrap().headroom;
        let t0 = Instant::now();
        meter.feedback_at(true, t0);
        // A burst of misses within one interval is one step, taken when the interval ends.
        for _ in 0..20 {
            meter.feedback_at(false, t0);
        }
        let floor = HEADROOM_RANGE.0;
        assert!(close(headroom(), floor));
        meter.feedback_at(true, t0 + ADJUST_EVERY);
        assert!(close(headroom(), floor * HEADROOM_GROWTH), "{}", headroom());
        // The next interval counts afresh: one miss in 1000 is under the target, no step.
        for _ in 0..999 {
            meter.feedback_at(true, t0 + ADJUST_EVERY);
        }
        meter.feedback_at(false, t0 + ADJUST_EVERY * 2);
        assert!(close(headroom(), floor * HEADROOM_GROWTH), "{}", headroom());
        // Misses in every interval grow it up to the bound.
        for i in 3..60 {
            meter.feedback_at(false, t0 + ADJUST_EVERY * i);
        }
        assert!(close(headroom(), HEADROOM_RANGE.1));
        // Intervals without a miss bring it back, never below the floor.
        for i in 60..1000 {
            meter.feedback_at(true, t0 + ADJUST_EVERY * i);
        }
        assert!(close(headroom(), floor), "{}", headroom());
    }

    #[test]
    fn a_deadline_the_work_ahead_makes_unmeetable_is_refused_with_a_retry_hint() {
        let pace = Pace {
            preprocess: Linear { fixed: 0.0, per_item: 0.010, spread: 0.05 },
            inference: Linear { fixed: 0.0, per_item: 0.005, spread: 0.05 },
            fastest_input: 0.015,
            tower_busy_until: None,
            staged_inference: 0.0,
            mean_batch: 4.0,
            headroom: 1.0,
        };
        let now = Instant::now();
        // 10 ahead + 1: 110 ms through preprocessing, then a 4-input batch's 20 ms tower run.
        assert!(about(pace.wait(10, 1), 130));
        assert_eq!(pace.check_deadline(now, now + ms(200), 10, 1), Ok(()));
        assert_eq!(pace.check_deadline(now, now + ms(131), 10, 1), Ok(()));
        let refusal = pace.check_deadline(now, now + ms(100), 10, 1).unwrap_err();
        assert!(about(refusal.wait, 130) && refusal.remaining == ms(100), "{refusal:?}");
        assert!(about(refusal.retry_after, 30), "{refusal:?}");
        // Nothing ahead: admitted whatever the deadline; the later checks judge it.
        assert_eq!(pace.check_deadline(now, now + ms(1), 0, 4), Ok(()));
        assert!(about(pace.drain_time(3), 30));
        // Headroom scales the admission estimate, not the judgement of admitted work.
        let wary = Pace { headroom: 2.0, ..pace };
        assert!(about(wary.wait(10, 1), 260));
        assert_eq!(wary.batch_end(now, 4), pace.batch_end(now, 4));
        // Sizing a batch allows for 2.5 spreads (of 5%) in each stage: 60 ms expected, 67.5 high.
        assert!(about(pace.batch_end(now, 4) - now, 60));
        assert!(
            (pace.batch_end_high(now, 4) - now).abs_diff(Duration::from_micros(67_500))
                < Duration::from_micros(1)
        );
        // An input is hopeless only when even the fastest pace seen would miss.
        assert!(pace.hopeless(now, now + ms(14)) && !pace.hopeless(now, now + ms(16)));
    }

    #[test]
    fn the_slower_stage_of_a_typical_batch_is_the_bottleneck() {
        let meter = PaceMeter::default();
        let t0 = Instant::now();
        // Preprocessing 2 ms per input; the tower 10 ms + 1 ms per input.
        batch(&meter, t0, 8, 16, 18);
        batch(&meter, t0 + ms(1000), 4, 8, 14);
        assert!(meter.pace().unwrap().tower_bound(), "batches of 6: 12 ms preprocessing, 16 ms tower");
        batch(&meter, t0 + ms(2000), 32, 64, 42);
        batch(&meter, t0 + ms(3000), 32, 64, 42);
        assert!(!meter.pace().unwrap().tower_bound(), "batches of 19: 38 ms preprocessing, 29 ms tower");
    }

    #[test]
    fn the_spread_is_the_relative_deviation_of_the_measurements_from_the_line() {
        let line = Linear::fit(&[(1.0, 0.009), (1.0, 0.011), (3.0, 0.027), (3.0, 0.033)]);
        assert!(close(line.per_item, 0.010) && close(line.fixed, 0.0), "{line:?}");
        assert!(close(line.spread, 0.1), "every point is 10% off the line: {line:?}");
        assert!(close(line.high(2), 0.025), "2.5 spreads above 20 ms");
    }
}
