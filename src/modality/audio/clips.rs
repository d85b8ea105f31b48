//! Clip placement, following `imagebind.data.get_clip_timepoints` driving pytorchvideo's
//! `ConstantClipsPerVideoSampler` (pytorchvideo 0.1.5) with exact rational arithmetic.
//!
//! The sampler works on Python `Fraction`s, and the sample indices are `int(t * sample_rate)` of
//! those fractions, so the bounds are computed with arbitrary-precision rationals here: rounding
//! through `f64` would move a clip by one sample for some lengths.

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{ToPrimitive, Zero};

use super::AudioError;

/// Sample ranges `[start, end)` of each clip, clamped to `num_samples` like a Python slice.
///
/// `num_samples` is the length of the waveform at `sample_rate`. The reference computes the
/// duration as `num_samples / sample_rate` in `f64`, then `max(duration - clip_duration, 0)` in
/// `f64` (a float minus a `Fraction` is a float in Python) and only then converts to a
/// `Fraction`; every later step is exact. Audio shorter than one clip gives `clips` copies of
/// the whole waveform.
pub fn clip_bounds(
    num_samples: usize,
    sample_rate: u32,
    clip_duration: f64,
    clips: usize,
) -> Result<Vec<(usize, usize)>, AudioError> {
    let invalid = |what: &str| AudioError::InvalidConfig(format!("clip sampling: {what}"));
    if sample_rate == 0 {
        return Err(invalid("sample rate must be positive"));
    }
    let duration = num_samples as f64 / f64::from(sample_rate);
    let spans = clip_spans(duration, clip_duration, clips).map_err(|e| invalid(&e))?;
    let rate = BigRational::from_integer(BigInt::from(sample_rate));
    let index = |t: &BigRational| -> Result<usize, AudioError> {
        // `int()` truncates toward zero; every time here is non-negative, so that is `floor`.
        (t * &rate).floor().to_integer().to_usize().ok_or_else(|| invalid("clip bound out of range"))
    };
    spans
        .iter()
        .map(|(start, end)| {
            let (a, b) = (index(start)?, index(end)?);
            let b = b.min(num_samples);
            Ok((a.min(b), b))
        })
        .collect()
}

/// Start and end times of each clip of `ConstantClipsPerVideoSampler` over `duration` seconds,
/// as the exact fractions the sampler computes (`clip_duration` and `clips` come from the
/// manifest; the message names a bad one). The reference takes `max(duration - clip_duration, 0)`
/// in `f64` (a float minus a `Fraction` is a float in Python) and only then converts to a
/// `Fraction`; every later step is exact. Media shorter than one clip gives `clips` copies of
/// `[0, clip_duration]`.
pub fn clip_spans(
    duration: f64,
    clip_duration: f64,
    clips: usize,
) -> Result<Vec<(BigRational, BigRational)>, String> {
    if clips == 0 {
        return Err("the clip count must be positive".into());
    }
    let clip = BigRational::from_float(clip_duration)
        .filter(|c| *c > BigRational::zero())
        .ok_or("clip duration must be a positive finite number")?;
    let headroom = duration - clip_duration;
    let max_start = if headroom > 0.0 {
        BigRational::from_float(headroom).ok_or("duration is not finite")?
    } else {
        BigRational::zero()
    };
    let step = &max_start / BigInt::from(clips);
    let mut out = Vec::with_capacity(clips);
    for i in 0..clips {
        let start = &step * BigInt::from(i);
        let end = &start + &clip;
        out.push((start, end));
        // The sampler also stops once the next start would pass the last possible one; with
        // `step = max_start / clips` that never happens before `clips` clips, but it is kept so
        // the loop reads like the reference.
        if &step * BigInt::from(i + 1) > max_start {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_audio_repeats_the_whole_waveform() {
        let b = clip_bounds(800, 16000, 2.0, 3).unwrap();
        assert_eq!(b, vec![(0, 800); 3]);
    }

    #[test]
    fn exactly_one_clip_long() {
        let b = clip_bounds(32000, 16000, 2.0, 3).unwrap();
        assert_eq!(b, vec![(0, 32000); 3]);
    }

    #[test]
    fn five_seconds_spreads_three_clips() {
        // max start 3 s, step 1 s.
        let b = clip_bounds(80000, 16000, 2.0, 3).unwrap();
        assert_eq!(b, vec![(0, 32000), (16000, 48000), (32000, 64000)]);
    }

    #[test]
    fn inexact_durations_truncate_like_python() {
        // Expected bounds printed by `imagebind.data.get_clip_timepoints` with pytorchvideo's
        // `ConstantClipsPerVideoSampler(clip_duration=2, clips_per_video=3)`.
        let cases: [(usize, [(usize, usize); 3]); 4] = [
            (70001, [(0, 32000), (12667, 44667), (25334, 57334)]),
            (112000, [(0, 32000), (26666, 58666), (53333, 85333)]),
            (32001, [(0, 32000), (0, 32000), (0, 32000)]),
            (48001, [(0, 32000), (5333, 37333), (10667, 42667)]),
        ];
        for (n, want) in cases {
            assert_eq!(clip_bounds(n, 16000, 2.0, 3).unwrap(), want, "{n} samples");
        }
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(clip_bounds(100, 16000, 0.0, 3).is_err());
        assert!(clip_bounds(100, 16000, f64::NAN, 3).is_err());
        assert!(clip_bounds(100, 16000, 2.0, 0).is_err());
    }
}
