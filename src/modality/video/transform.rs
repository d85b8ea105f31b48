//! A clip's frames to the tower's tensor: `/ 255`, `ShortSideScale` (torch bilinear on float),
//! `NormalizeVideo` and `SpatialCrop`, as `load_and_transform_video_data` applies them; or, with
//! `normalize = "before_resize"` and `crop_rounding = "half_even"`, `/ 255`, `NormalizeVideo`,
//! `ShortSideScale` and `CenterCropVideo`, LanguageBind's order.

use super::kind::{CropRounding, NormalizeAt};
use super::{Frame, VideoError, VideoPreprocess};

/// One input or output position of a bilinear resize: the two source indices and weights.
#[derive(Debug, Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    l0: f32,
    l1: f32,
}

/// Taps of `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` with an output
/// size (no scale factor) along one axis, as `compute_source_index_and_lambda` computes them in
/// `float`: scale `in / out`, source `scale * (i + 0.5) - 0.5` clamped at 0, an equal size copies.
fn taps(input: usize, output: usize) -> Vec<Tap> {
    if input == output {
        return (0..output).map(|i| Tap { i0: i, i1: i, l0: 1.0, l1: 0.0 }).collect();
    }
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|i| {
            let real = (scale * (i as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (real.floor() as usize).min(input - 1);
            let l1 = (real - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            Tap { i0, i1, l0: 1.0 - l1, l1 }
        })
        .collect()
}

/// `ShortSideScale(size)`'s output size for a `width` x `height` frame: the short side becomes
/// `size`, the long side `floor(long / short * size)` in `f64` (Python floats).
pub fn scaled_size(width: usize, height: usize, size: usize) -> (usize, usize) {
    if width < height {
        (size, ((height as f64 / width as f64) * size as f64).floor() as usize)
    } else {
        (((width as f64 / height as f64) * size as f64).floor() as usize, size)
    }
}

/// Top-left corner of crop `index` (0, 1, 2 along the long side; 1 is the centre) of a
/// `width` x `height` image, as `uniform_crop` places it (`ceil((side - crop) / 2)` centred), or
/// with Python's `round((side - crop) / 2.0)` (halves to even), as `CenterCropVideo` centres.
fn crop_origin(
    width: usize,
    height: usize,
    crop: usize,
    index: usize,
    rounding: CropRounding,
) -> (usize, usize) {
    let centre = |side: usize| {
        let margin = side - crop;
        match rounding {
            CropRounding::Ceil => margin.div_ceil(2),
            // An odd margin halves to k + 0.5, which goes to the even one of k and k + 1.
            CropRounding::HalfEven => {
                let k = margin / 2;
                if margin % 2 == 1 && k % 2 == 1 { k + 1 } else { k }
            }
        }
    };
    let (mut x, mut y) = (centre(width), centre(height));
    if height > width {
        match index {
            0 => y = 0,
            2 => y = height - crop,
            _ => {}
        }
    } else {
        match index {
            0 => x = 0,
            2 => x = width - crop,
            _ => {}
        }
    }
    (x, y)
}

/// The per-clip transform of one manifest section.
pub struct ClipTransform<'a> {
    spec: &'a VideoPreprocess,
}

impl<'a> ClipTransform<'a> {
    /// The transform of `spec`.
    pub fn new(spec: &'a VideoPreprocess) -> Self {
        Self { spec }
    }

    /// Crops (`SpatialCrop`'s order) the reference takes from every clip.
    fn crop_indices(&self) -> &'static [usize] {
        if self.spec.crops == 1 { &[1] } else { &[0, 1, 2] }
    }

    /// Writes one clip's `[crops, 3, frames, crop, crop]` into `out` from its frames (in time
    /// order, `frames_per_clip` of them).
    pub fn clip_into(&self, frames: &[&Frame], out: &mut [f32]) -> Result<(), VideoError> {
        let spec = self.spec;
        let (t_len, side) = (spec.frames_per_clip, spec.crop);
        let plane = side * side;
        let expected = spec.crops * 3 * t_len * plane;
        if out.len() != expected || frames.len() != t_len {
            return Err(VideoError::OutputSize { expected, got: out.len() });
        }
        for (t, frame) in frames.iter().enumerate() {
            let (w, h) = scaled_size(frame.width, frame.height, spec.size);
            if w < side || h < side {
                return Err(VideoError::InvalidConfig(format!(
                    "crop {side} is larger than the scaled frame {w}x{h}"
                )));
            }
            let scaled = self.scale_normalize(frame, w, h)?;
            for (k, &index) in self.crop_indices().iter().enumerate() {
                let (x0, y0) = crop_origin(w, h, side, index, spec.crop_rounding);
                for c in 0..3 {
                    let src = &scaled[c * w * h..(c + 1) * w * h];
                    let base = ((k * 3 + c) * t_len + t) * plane;
                    for y in 0..side {
                        let row = &src[(y0 + y) * w + x0..(y0 + y) * w + x0 + side];
                        out[base + y * side..base + (y + 1) * side].copy_from_slice(row);
                    }
                }
            }
        }
        Ok(())
    }

    /// The frame scaled to `w` x `h` and normalised, as three planes.
    fn scale_normalize(&self, frame: &Frame, w: usize, h: usize) -> Result<Vec<f32>, VideoError> {
        let (fw, fh) = (frame.width, frame.height);
        if fw == 0 || fh == 0 || frame.rgb.len() != fw * fh * 3 {
            return Err(VideoError::Internal(format!(
                "a decoded {fw}x{fh} frame holds {} bytes",
                frame.rgb.len()
            )));
        }
        let (xs, ys) = (taps(fw, w), taps(fh, h));
        let before = self.spec.normalize == NormalizeAt::BeforeResize;
        let mut out = vec![0f32; 3 * w * h];
        for c in 0..3 {
            let (mean, std) = (self.spec.mean[c], self.spec.std[c]);
            // `/ 255.0` on the float frame, normalised here when the reference normalises before
            // scaling: each is a function of the byte, so a table of 256 values is exact and
            // normalising first costs no work per pixel.
            let table: [f32; 256] = std::array::from_fn(|v| {
                let v = f32::from(v as u8) / 255.0;
                if before { (v - mean) / std } else { v }
            });
            let unit: Vec<f32> =
                frame.rgb.iter().skip(c).step_by(3).map(|&v| table[usize::from(v)]).collect();
            let dst = &mut out[c * w * h..(c + 1) * w * h];
            for (y, ty) in ys.iter().enumerate() {
                let (r0, r1) = (&unit[ty.i0 * fw..(ty.i0 + 1) * fw], &unit[ty.i1 * fw..(ty.i1 + 1) * fw]);
                for (x, tx) in xs.iter().enumerate() {
                    // torch nests the axes: height outside, width inside.
                    let top = r0[tx.i0] * tx.l0 + r0[tx.i1] * tx.l1;
                    let bottom = r1[tx.i0] * tx.l0 + r1[tx.i1] * tx.l1;
                    let v = top * ty.l0 + bottom * ty.l1;
                    dst[y * w + x] = if before { v } else { (v - mean) / std };
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_side_scale_sizes_follow_python_floor() {
        assert_eq!(scaled_size(1280, 720, 224), (398, 224));
        assert_eq!(scaled_size(90, 160, 224), (224, 398));
        assert_eq!(scaled_size(121, 93, 224), (291, 224));
        assert_eq!(scaled_size(224, 224, 224), (224, 224));
    }

    #[test]
    fn crops_run_along_the_long_side() {
        let ceil = CropRounding::Ceil;
        assert_eq!(crop_origin(398, 224, 224, 0, ceil), (0, 0));
        assert_eq!(crop_origin(398, 224, 224, 1, ceil), (87, 0));
        assert_eq!(crop_origin(398, 224, 224, 2, ceil), (174, 0));
        assert_eq!(crop_origin(224, 291, 224, 1, ceil), (0, 34));
        assert_eq!(crop_origin(224, 291, 224, 2, ceil), (0, 67));
    }

    /// `CenterCropVideo` takes `int(round((side - crop) / 2.0))`: Python's `round` gives 0, 2, 2
    /// and 34 for margins 1, 3, 5 and 67, where `uniform_crop`'s `ceil` gives 1, 2, 3 and 34.
    #[test]
    fn centre_crops_round_half_to_even_like_python() {
        let even = CropRounding::HalfEven;
        assert_eq!(crop_origin(225, 224, 224, 1, even), (0, 0));
        assert_eq!(crop_origin(227, 224, 224, 1, even), (2, 0));
        assert_eq!(crop_origin(224, 229, 224, 1, even), (0, 2));
        assert_eq!(crop_origin(224, 291, 224, 1, even), (0, 34));
        assert_eq!(crop_origin(229, 224, 224, 1, CropRounding::Ceil), (3, 0));
    }
}
