//! Results of a load test: the per-run report, its text summary and JSON form, the sweep chart and
//! the service-level objective checks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::driver::{LoadModel, RunPlan, RunStats};
use super::stats::millis;
use super::workload::Workload;
use super::{LoadArgs, LoadError};

/// Latency percentiles of successful requests, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Slowest.
    pub max: f64,
    /// Fastest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
}

/// Mean server-side stage timings (from the `bindery-*-us` response metadata), in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Stages {
    /// Waiting for an encoder.
    pub queue: f64,
    /// Decoding and preprocessing.
    pub preprocess: f64,
    /// Model inference.
    pub inference: f64,
    /// The whole call inside the server.
    pub total: f64,
}

/// Outcome of the objective checks of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Slo {
    /// Whether every objective given was met.
    pub passed: bool,
    /// One line per missed objective.
    pub missed: Vec<String>,
}

/// Results of one run, as printed and written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// `closed` or `open`.
    pub load: &'static str,
    /// Closed loop: requests kept in flight.
    pub concurrency: Option<usize>,
    /// Open loop: requests per second sent.
    pub rate: Option<f64>,
    /// Open loop: bound on outstanding requests.
    pub max_in_flight: Option<usize>,
    /// `unary` or `stream`.
    pub mode: &'static str,
    /// Inputs per request.
    pub batch: usize,
    /// Model requested ("" for the server's default).
    pub model: String,
    /// Share of each modality.
    pub mix: BTreeMap<&'static str, f64>,
    /// Warm-up left out, in seconds.
    pub warmup_s: f64,
    /// Measured time, from the end of the warm-up to the last measured completion, in seconds.
    pub elapsed_s: f64,
    /// Measured requests completed (successful or not).
    pub requests: u64,
    /// Successful requests.
    pub ok: u64,
    /// Failed requests.
    pub errors: u64,
    /// Failed share of the measured requests.
    pub error_rate: f64,
    /// Failed requests by gRPC status code.
    pub errors_by_code: BTreeMap<String, u64>,
    /// Inputs embedded by successful requests.
    pub items: u64,
    /// Successful requests per second.
    pub requests_per_s: f64,
    /// Inputs embedded per second.
    pub items_per_s: f64,
    /// Latency of successful requests; for an open loop, from the intended send time.
    pub latency_ms: Option<Latency>,
    /// Mean latency of successful requests in each tenth of the run, in send order (`null` for a
    /// tenth without a success). A rising trend is a queue building up.
    pub latency_trend_ms: Vec<Option<f64>>,
    /// Mean server stage timings; absent in stream mode, whose replies carry none.
    pub server_stages_ms: Option<Stages>,
    /// Share of the inputs the server answered from its embedding cache (absent when the replies
    /// did not say: stream mode).
    pub cache_hit_ratio: Option<f64>,
    /// Objective checks.
    pub slo: Slo,
}

/// Cache-hit share from which a run's figures are flagged as measuring the cache.
const CACHE_WARNING_RATIO: f64 = 0.1;

/// The warning for a run whose inputs came from the server's cache `ratio` of the time.
fn cache_warning(ratio: Option<f64>) -> Option<String> {
    let ratio = ratio.filter(|r| *r >= CACHE_WARNING_RATIO)?;
    Some(format!(
        "{:.0}% of inputs were answered from the server's embedding cache, so throughput and stage \
         times do not measure embedding; add --no-cache, or send more distinct payloads",
        ratio * 100.0
    ))
}

impl RunReport {
    /// Builds the report of a finished run and checks the objectives of `args` against it.
    pub fn new(plan: &RunPlan, args: &LoadArgs, workload: &Workload, run: &RunStats) -> Self {
        let stats = &run.stats;
        let (concurrency, rate, max_in_flight) = match plan.load {
            LoadModel::Closed { concurrency } => (Some(concurrency), None, None),
            LoadModel::Open { rate, max_in_flight } => (None, Some(rate), Some(max_in_flight)),
        };
        let errors = stats.failed();
        let requests = stats.ok + errors;
        let seconds = run.elapsed.as_secs_f64();
        let per_second = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
        let h = &stats.histogram;
        let ms = |us: u64| us as f64 / 1000.0;
        let latency = (stats.ok > 0).then(|| Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
        });
        let stages = (stats.stage_samples > 0).then(|| {
            let mean = |i: usize| stats.stage_sums[i] as f64 / stats.stage_samples as f64 / 1000.0;
            Stages { queue: mean(0), preprocess: mean(1), inference: mean(2), total: mean(3) }
        });
        let error_rate = if requests > 0 { errors as f64 / requests as f64 } else { 0.0 };

        let mut missed = Vec::new();
        if (args.max_p99.is_some() || args.max_error_rate.is_some()) && requests == 0 {
            missed.push("no measured request completed".to_string());
        }
        if let Some(max) = args.max_p99 {
            match &latency {
                Some(l) if l.p99 > millis(max) => {
                    missed.push(format!("p99 {} > {}", fmt_ms(l.p99), humantime::format_duration(max)));
                }
                None if requests > 0 => missed.push("p99: no successful request".to_string()),
                _ => {}
            }
        }
        if let Some(max) = args.max_error_rate
            && requests > 0
            && error_rate > max
        {
            missed.push(format!("error rate {error_rate:.4} > {max}"));
        }

        RunReport {
            load: if concurrency.is_some() { "closed" } else { "open" },
            concurrency,
            rate,
            max_in_flight,
            mode: args.mode.name(),
            batch: workload.batch(),
            model: workload.model().to_string(),
            mix: workload.mix().shares().map(|(k, w)| (k.as_str(), w)).collect(),
            warmup_s: plan.warmup.as_secs_f64(),
            elapsed_s: seconds,
            requests,
            ok: stats.ok,
            errors,
            error_rate,
            errors_by_code: stats.errors.clone(),
            items: stats.items,
            requests_per_s: per_second(stats.ok),
            items_per_s: per_second(stats.items),
            latency_ms: latency,
            latency_trend_ms: stats.trend_ms(),
            server_stages_ms: stages,
            cache_hit_ratio: (stats.cache_reported_items > 0)
                .then(|| stats.cache_hits as f64 / stats.cache_reported_items as f64),
            slo: Slo { passed: missed.is_empty(), missed },
        }
    }

    /// Set when a tenth or more of the inputs came from the server's cache: the run then measures
    /// cache lookups, not embedding.
    pub fn cache_warning(&self) -> Option<String> {
        cache_warning(self.cache_hit_ratio)
    }

    /// The sweep level of this run, e.g. "concurrency 4".
    pub fn level(&self) -> String {
        match (self.concurrency, self.rate) {
            (Some(c), _) => format!("concurrency {c}"),
            (None, Some(r)) => format!("rate {r}/s"),
            (None, None) => String::new(),
        }
    }

    /// A human-readable summary, several lines ending with a newline.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let mix: Vec<String> = self.mix.iter().map(|(k, w)| format!("{k}={}", round3(*w))).collect();
        let model = if self.model.is_empty() { "default model" } else { &self.model };
        let bound = self.max_in_flight.map(|m| format!(", at most {m} in flight")).unwrap_or_default();
        let _ = writeln!(
            s,
            "{} loop, {}{bound}: {}, batch {}, mix {}, {model}",
            self.load,
            self.level(),
            self.mode,
            self.batch,
            mix.join(",")
        );
        let _ =
            writeln!(s, "  measured    {:.2} s (warm-up {:.2} s left out)", self.elapsed_s, self.warmup_s);
        let _ = writeln!(
            s,
            "  requests    {} ok, {} failed (error rate {:.4})",
            self.ok, self.errors, self.error_rate
        );
        let _ = writeln!(
            s,
            "  throughput  {:.1} requests/s, {:.1} items/s",
            self.requests_per_s, self.items_per_s
        );
        if let Some(l) = &self.latency_ms {
            let _ = writeln!(
                s,
                "  latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                fmt_ms(l.p50),
                fmt_ms(l.p90),
                fmt_ms(l.p99),
                fmt_ms(l.p99_9),
                fmt_ms(l.max)
            );
        }
        if let Some(st) = &self.server_stages_ms {
            let _ = writeln!(
                s,
                "  server      queue {}  preprocess {}  inference {}  total {} (means)",
                fmt_ms(st.queue),
                fmt_ms(st.preprocess),
                fmt_ms(st.inference),
                fmt_ms(st.total)
            );
        }
        if let Some(ratio) = self.cache_hit_ratio {
            let _ =
                writeln!(s, "  cache       {:.1}% of inputs answered from the server's cache", ratio * 100.0);
        }
        if let Some(warning) = self.cache_warning() {
            let _ = writeln!(s, "  warning     {warning}");
        }
        if !self.errors_by_code.is_empty() {
            let codes: Vec<String> = self.errors_by_code.iter().map(|(c, n)| format!("{c} {n}")).collect();
            let _ = writeln!(s, "  errors      {}", codes.join(", "));
        }
        for line in &self.slo.missed {
            let _ = writeln!(s, "  SLO missed  {line}");
        }
        s
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn fmt_ms(ms: f64) -> String {
    if ms < 10.0 { format!("{ms:.2} ms") } else { format!("{ms:.1} ms") }
}

/// A table with one row per run of a sweep.
pub fn sweep_table(runs: &[RunReport]) -> String {
    let mut s = String::from("\nsweep:\n");
    let _ = writeln!(
        s,
        "  {:<18} {:>11} {:>11} {:>10} {:>10} {:>10} {:>8}",
        "level", "requests/s", "items/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for run in runs {
        let (p50, p99, max) =
            run.latency_ms.as_ref().map_or((f64::NAN, f64::NAN, f64::NAN), |l| (l.p50, l.p99, l.max));
        let _ = writeln!(
            s,
            "  {:<18} {:>11.1} {:>11.1} {:>10.2} {:>10.2} {:>10.2} {:>8}",
            run.level(),
            run.requests_per_s,
            run.items_per_s,
            p50,
            p99,
            max,
            run.errors
        );
    }
    s
}

/// Writes the reports as JSON to `path` (`-`: stdout): an object for one run, an array for more.
pub fn write_json(path: &Path, runs: &[RunReport]) -> Result<(), LoadError> {
    let text = match runs {
        [one] => serde_json::to_string_pretty(one)?,
        many => serde_json::to_string_pretty(many)?,
    };
    if path.as_os_str() == "-" {
        return stdout(&(text + "\n"));
    }
    std::fs::write(path, text + "\n").map_err(|source| LoadError::Write { path: path.to_path_buf(), source })
}

/// Writes `text` to stdout; a closed stdout ends the output quietly.
pub fn stdout(text: &str) -> Result<(), LoadError> {
    crate::client::write_stdout(text).map_err(|source| LoadError::Write { path: "-".into(), source })
}

/// Fails early when the chart cannot be written in the format its name asks for.
pub fn check_chart_path(path: &Path) -> Result<(), LoadError> {
    let svg = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if svg {
        Ok(())
    } else {
        Err(LoadError::Chart { path: path.to_path_buf(), message: "only .svg charts are supported".into() })
    }
}

/// Draws p50 and p99 latency against items/s, one point per run, to an SVG file.
pub fn draw_chart(path: &Path, runs: &[RunReport]) -> Result<(), LoadError> {
    check_chart_path(path)?;
    let fail = |message: String| LoadError::Chart { path: path.to_path_buf(), message };
    let points: Vec<(f64, f64, f64, String)> = runs
        .iter()
        .filter_map(|r| r.latency_ms.as_ref().map(|l| (r.items_per_s, l.p50, l.p99, r.level())))
        .collect();
    if points.is_empty() {
        return Err(fail("no run had a successful request".into()));
    }
    let x_max = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-3) * 1.1;
    let y_max = points.iter().map(|p| p.2).fold(0.0, f64::max).max(1e-3) * 1.1;

    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("bindery load: latency vs throughput", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("throughput (items/s)")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    for (name, colour, pick) in
        [("p50", BLUE, (|p: &(f64, f64, f64, String)| p.1) as fn(&_) -> f64), ("p99", RED, |p| p.2)]
    {
        let series: Vec<(f64, f64)> = points.iter().map(|p| (p.0, pick(p))).collect();
        chart
            .draw_series(LineSeries::new(series.clone(), colour.stroke_width(2)))
            .map_err(|e| fail(e.to_string()))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart
            .draw_series(series.iter().map(|&(x, y)| Circle::new((x, y), 4, colour.filled())))
            .map_err(|e| fail(e.to_string()))?;
    }
    chart
        .draw_series(points.iter().map(|(x, _, p99, level)| {
            Text::new(level.clone(), (*x, *p99), ("sans-serif", 12).into_font().color(&BLACK))
        }))
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_series_labels()
        // Low throughput with high latency is the least likely corner to hold a point.
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(e.to_string()))?;
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_served_from_the_cache_is_flagged() {
        assert_eq!(cache_warning(None), None);
        assert_eq!(cache_warning(Some(0.05)), None);
        let warning = cache_warning(Some(0.98)).expect("flagged");
        assert!(
            warning.starts_with("98% of inputs were answered from the server's embedding cache"),
            "{warning}"
        );
        assert!(warning.contains("--no-cache"));
    }
}
