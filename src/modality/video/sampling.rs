//! Which frames each clip takes, on frame indices in presentation order: for the `clips` sampler
//! pytorchvideo's clip sampler, decord's `get_clip` and `UniformTemporalSubsample` (ImageBind); for
//! the `frames` sampler `np.linspace(0, n - 1, frames_per_clip, dtype=int)` over decord's frame
//! count (LanguageBind's `load_and_transform_video` with `video_decode_backend='decord'`).

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
/// `frames` sampler: one clip of `frames_per_clip` indices spread over the whole video by
/// [`linspace`] (numpy's rule, which is not torch's float32 `linspace` for every count).
///
/// With a `window` (segment mode) the sampler sees only the window: its duration is the
/// window's, clip times are offset by the window's start (`start + clip_start` in `f64`, as
/// Python adds a float and a `Fraction`), and no clip reads past the window's last frame
/// (`ceil(rate * end)`, as `get_clip(start, end)` of the window would). The `frames` sampler
/// treats the window's frames `ceil(rate * start) .. ceil(rate * end)` as a whole video of their
/// own and spreads its frames over them.
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
            Ok(vec![
                linspace(frames_end - first, spec.frames_per_clip).into_iter().map(|i| first + i).collect(),
            ])
        }
        Sampler::Clips => {
            if !(rate.is_finite() && rate > 0.0) {
                return Err(VideoError::NoFrameRate);
            }
            let duration = match window {
                None => frames as f64 / rate,
                Some(w) => w.end - w.start,
            };
            let clip_duration = spec
                .clip_duration
                .ok_or_else(|| VideoError::InvalidConfig("the clips sampler needs clip_duration".into()))?;
            let spans = clip_spans(duration, clip_duration, spec.clips).map_err(VideoError::InvalidConfig)?;
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

/// `np.linspace(0, frames - 1, n, dtype=int)` (numpy 2): the step `(frames - 1) / (n - 1)` in
/// `f64`, index `i` is `floor(i * step)`, the last is exactly `frames - 1`; one frame or a zero
/// step gives zeros.
pub fn linspace(frames: usize, n: usize) -> Vec<usize> {
    let last = frames.saturating_sub(1);
    if n <= 1 || last == 0 {
        return vec![0; n];
    }
    let step = last as f64 / (n - 1) as f64;
    (0..n).map(|i| if i == n - 1 { last } else { (i as f64 * step).floor() as usize }).collect()
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

    /// Values printed by numpy 2.4 `np.linspace(0, n - 1, k, dtype=int)`; the last three are
    /// counts where torch 2.11's float32 `linspace(...).long()` gives another index (for 8
    /// frames the two agree on every count up to 300000).
    #[test]
    fn the_frames_rule_is_numpys_linspace() {
        assert_eq!(linspace(40, 8), vec![0, 5, 11, 16, 22, 27, 33, 39]);
        assert_eq!(linspace(10, 8), vec![0, 1, 2, 3, 5, 6, 7, 9]);
        assert_eq!(linspace(1, 8), vec![0; 8]);
        // An hour at 60 frames/s.
        assert_eq!(linspace(216_000, 8), vec![0, 30857, 61714, 92571, 123428, 154285, 185142, 215999]);
        assert_eq!(linspace(3, 15), vec![0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 2]);
        let numpy = [0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 19, 20, 21, 23, 24, 25, 27, 28, 30];
        assert_eq!(linspace(31, 23), numpy);
        let numpy = [0, 4, 8, 13, 17, 22, 26, 31, 35, 39, 44, 48, 53, 57, 62, 66, 70, 75, 79, 84, 88, 93];
        assert_eq!(linspace(94, 22), numpy);
    }

    #[test]
    fn a_window_is_sampled_as_a_video_of_its_own_frames() {
        let spec = VideoPreprocess {
            sampler: Sampler::Frames,
            clips: 1,
            clip_duration: None,
            frames_per_clip: 8,
            size: 224,
            crop: 224,
            crops: 1,
            mean: [0.5; 3],
            std: [0.5; 3],
            normalize: Default::default(),
            crop_rounding: Default::default(),
            flip: Default::default(),
        };
        let whole = clip_frames(&spec, 40, 10.0, None).expect("whole");
        assert_eq!(whole, vec![vec![0, 5, 11, 16, 22, 27, 33, 39]]);
        // 1.0 s .. 3.0 s at 10 frames/s: frames 10..30, sampled as a 20-frame video.
        let window = clip_frames(&spec, 40, 10.0, Some(Span { start: 1.0, end: 3.0 })).expect("window");
        assert_eq!(window, vec![vec![10, 12, 15, 18, 20, 23, 26, 29]]);
        // The last window stops at the last frame.
        let tail = clip_frames(&spec, 40, 10.0, Some(Span { start: 3.5, end: 4.2 })).expect("tail");
        assert_eq!(tail, vec![vec![35, 35, 36, 36, 37, 37, 38, 39]]);
    }
}
