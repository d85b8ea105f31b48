//! Segment mode: the time windows a long input is embedded in, one embedding per window (audio
//! and video; `segment_seconds` and `hop_seconds` of their protobuf messages).
//!
//! Window `k` starts at `k * hop` and ends `segment` seconds later or at the end of the input,
//! whichever comes first; the windows stop after the first one that reaches the end, so no
//! window lies inside the one before it. Each window is then embedded by the modality's own
//! pipeline on that window alone.

use super::Span;

/// Why segment parameters cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// Negative, not finite, or a hop without a segment length.
    #[error("invalid segments: {0}")]
    Invalid(String),
    /// More windows than the limit.
    #[error(
        "{seconds:.1} s in segments of {segment} s every {hop} s is {count} segments, more than the \
         limit of {max} per input"
    )]
    TooMany {
        /// Length of the input in seconds.
        seconds: f64,
        /// Segment length.
        segment: f64,
        /// Hop.
        hop: f64,
        /// Windows needed.
        count: usize,
        /// Configured limit.
        max: usize,
    },
}

/// Segment length and hop, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segments {
    /// Length of each window.
    pub segment: f64,
    /// Distance between window starts.
    pub hop: f64,
}

impl Segments {
    /// The segments a request asks for: `None` for the whole input (`segment_seconds = 0`); a
    /// hop of 0 is the segment length (windows side by side).
    pub fn of(segment_seconds: f32, hop_seconds: f32) -> Result<Option<Self>, SegmentError> {
        let (segment, hop) = (f64::from(segment_seconds), f64::from(hop_seconds));
        if !segment.is_finite() || segment < 0.0 {
            return Err(SegmentError::Invalid(format!("segment_seconds is {segment_seconds}")));
        }
        if !hop.is_finite() || hop < 0.0 {
            return Err(SegmentError::Invalid(format!("hop_seconds is {hop_seconds}")));
        }
        if segment == 0.0 {
            return if hop == 0.0 {
                Ok(None)
            } else {
                Err(SegmentError::Invalid("hop_seconds is set without segment_seconds".into()))
            };
        }
        Ok(Some(Self { segment, hop: if hop == 0.0 { segment } else { hop } }))
    }

    /// The windows over an input of `duration` seconds, at most `max` of them.
    pub fn windows(&self, duration: f64, max: usize) -> Result<Vec<Span>, SegmentError> {
        if !duration.is_finite() || duration <= 0.0 {
            return Ok(vec![Span { start: 0.0, end: duration.max(0.0) }]);
        }
        // The k-th window reaches the end once k * hop + segment >= duration.
        let count = (((duration - self.segment) / self.hop).ceil().max(0.0) as usize).saturating_add(1);
        if count > max {
            return Err(SegmentError::TooMany {
                seconds: duration,
                segment: self.segment,
                hop: self.hop,
                count,
                max,
            });
        }
        let mut out = Vec::with_capacity(count);
        for k in 0..count {
            let start = k as f64 * self.hop;
            if start >= duration {
                break;
            }
            let end = (start + self.segment).min(duration);
            out.push(Span { start, end });
            if end >= duration {
                break;
            }
        }
        Ok(out)
    }
}

/// The samples of `span` in a track of `total` samples at `rate` Hz: from `round(start * rate)`
/// to `round(end * rate)`, the last window running to the last sample.
pub fn sample_range(span: Span, rate: u32, total: usize) -> std::ops::Range<usize> {
    let at = |t: f64| ((t * f64::from(rate)).round().max(0.0) as usize).min(total);
    at(span.start)..at(span.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(segment: f32, hop: f32, duration: f64) -> Vec<(f64, f64)> {
        let s = Segments::of(segment, hop).unwrap().unwrap();
        s.windows(duration, 1000).unwrap().into_iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn windows_side_by_side_end_with_the_input() {
        assert_eq!(spans(4.0, 0.0, 10.0), [(0.0, 4.0), (4.0, 8.0), (8.0, 10.0)]);
        assert_eq!(spans(5.0, 0.0, 10.0), [(0.0, 5.0), (5.0, 10.0)]);
        assert_eq!(spans(20.0, 0.0, 10.0), [(0.0, 10.0)]);
    }

    #[test]
    fn overlapping_windows_stop_at_the_first_that_reaches_the_end() {
        assert_eq!(spans(4.0, 2.0, 10.0), [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (6.0, 10.0)]);
        assert_eq!(spans(4.0, 3.0, 10.0), [(0.0, 4.0), (3.0, 7.0), (6.0, 10.0)]);
    }

    #[test]
    fn gaps_between_windows_are_allowed() {
        assert_eq!(spans(1.0, 4.0, 10.0), [(0.0, 1.0), (4.0, 5.0), (8.0, 9.0)]);
    }

    #[test]
    fn sample_ranges_round_and_stop_at_the_track_end() {
        let span = |start, end| Span { start, end };
        assert_eq!(sample_range(span(0.0, 2.5), 16000, 50000), 0..40000);
        assert_eq!(sample_range(span(2.5, 3.125), 16000, 50000), 40000..50000);
        assert_eq!(sample_range(span(1.0 / 3.0, 1.0), 3, 10), 1..3);
    }

    #[test]
    fn bad_parameters_and_too_many_windows_are_refused() {
        assert!(Segments::of(0.0, 0.0).unwrap().is_none());
        assert!(Segments::of(-1.0, 0.0).is_err());
        assert!(Segments::of(f32::NAN, 0.0).is_err());
        assert!(Segments::of(2.0, -1.0).is_err());
        assert!(Segments::of(0.0, 1.0).is_err());
        let s = Segments::of(1.0, 0.0).unwrap().unwrap();
        let e = s.windows(3600.0, 100).unwrap_err().to_string();
        assert!(e.contains("3600 segments, more than the limit of 100"), "{e}");
    }
}
