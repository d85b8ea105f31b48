//! Which frames each clip takes: pytorchvideo's clip sampler, decord's `get_clip` and
//! `UniformTemporalSubsample`, on frame indices in presentation order.

use num_traits::ToPrimitive;

use super::{VideoError, VideoPreprocess};
use crate::modality::Span;
use crate::modality::audio::clips::clip_spans;
use crate::modality::video::kind::Sampler;

/// For each clip, the indices of the frames it keeps (`frames_per_clip` of them, possibly
/// repeated), given the video's frame count and average frame rate.
///
/// `clips` sampler: the reference's duration is `frames / rate` (decord's), the clip spans are
/// [`clip_spans`], and a clip's frames are `ceil(rate * start) .. min(ceil(rate * end), frames)`
/// with the times turned into `f64` first (a float times a `Fraction` is a float in Python).
/// `frames` sampler: one clip of `frames_per_clip` indices spread over the whole video.
///
/// With a `window` (segment mode) the sampler sees only the window: its duration is the
/// window's, clip times are offset by the window's start (`start + clip_start` in `f64`, as
/// Python adds a float and a `Fraction`), and no clip reads past the window's last frame
/// (`ceil(rate * end)`, as `get_clip(start, end)` of the window would).
pub fn clip_frames(
    spec: &VideoPreprocess,
    frames: usize,
    rate: f64,
    window: Option<Span>,
) -> Result<Vec<Vec<usize>>, VideoError> {
    if frames == 0 {
        return Err(VideoError::NoFrames(String::new()));
    }
    let (offset, frames_end) = match window {
        None => (0.0, frames),
        Some(w) => {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(VideoError::NoFrameRate);
            }
            (w.start, frame_at(rate * w.end).min(frames))
        }
    };
    match spec.sampler {
        Sampler::Frames => {
            let first = frame_at(rate * offset);
            if first >= frames_end {
                return Err(VideoError::NoFrames(String::new()));
            }
            Ok(vec![subsample(first, frames_end, spec.frames_per_clip)])
        }
        Sampler::Clips => {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(VideoError::NoFrameRate);
            }
            let duration = match window {
                None => frames as f64 / rate,
                Some(w) => w.end - w.start,
            };
            let spans =
                clip_spans(duration, spec.clip_duration, spec.clips).map_err(VideoError::InvalidConfig)?;
            if spans.len() != spec.clips {
                return Err(VideoError::InvalidConfig(format!(
                    "the clip sampler gave {} clips, the manifest asks for {}",
                    spans.len(),
                    spec.clips
                )));
            }
            spans
                .iter()
                .map(|(start, end)| {
                    let to_f64 = |t: &num_rational::BigRational| t.to_f64().unwrap_or(f64::INFINITY);
                    let (start, end) = (offset + to_f64(start), offset + to_f64(end));
                    let first = frame_at(rate * start);
                    let last = frame_at(rate * end).min(frames_end);
                    if first >= last {
                        return Err(VideoError::NoFrames(format!(" between {start:.3} s and {end:.3} s")));
                    }
                    Ok(subsample(first, last, spec.frames_per_clip))
                })
                .collect()
        }
    }
}

/// `math.ceil(t)` as an index (times here are non-negative and finite or the clip is refused).
fn frame_at(t: f64) -> usize {
    if t.is_finite() && t > 0.0 { t.ceil() as usize } else { 0 }
}

/// `UniformTemporalSubsample(n)` of the frames `first..last`: `torch.linspace(0, T - 1, n)` in
/// `float32` (computed from both ends, as torch does), clamped and truncated by `.long()`.
pub fn subsample(first: usize, last: usize, n: usize) -> Vec<usize> {
    let t = last - first;
    let end = (t - 1) as f32;
    if n == 1 {
        return vec![first];
    }
    let step = end / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            let v = if i < half { step * i as f32 } else { end - step * (n - 1 - i) as f32 };
            first + v.clamp(0.0, end) as usize
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_frames_are_the_first_and_last_of_the_clip() {
        assert_eq!(subsample(10, 30, 2), vec![10, 29]);
        assert_eq!(subsample(0, 1, 2), vec![0, 0]);
    }

    #[test]
    fn eight_frames_spread_like_torch_linspace() {
        // torch.linspace(0, 99, 8).long() = [0, 14, 28, 42, 56, 70, 84, 99]
        assert_eq!(subsample(0, 100, 8), vec![0, 14, 28, 42, 56, 70, 84, 99]);
    }
}
