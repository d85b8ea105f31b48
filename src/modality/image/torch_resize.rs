//! torch's antialiased resize of a float tensor (`interpolate(mode="bicubic" or "bilinear",
//! antialias=True)`, what torchvision's `Resize` runs on a tensor), one channel at a time.
//!
//! torch (2.11, `aten/src/ATen/native/cpu/UpSampleKernel.cpp`,
//! `_compute_indices_min_size_weights_aa`) took Pillow's separable convolution: the same filters,
//! support, input window and normalised weights. It computes them in the tensor's type, though:
//! for f32 the scale is `float(in) / out`, each window's centre is rounded to f32, and the
//! filter runs in f32. Near the far end of a large axis the centre's rounding moves the weights
//! by about 1e-5, which Pillow's double-precision weights (`resample.rs`, mode `F`) do not
//! reproduce, so this computes them as torch does. The sums are f32 too, tap by tap, and the
//! horizontal pass always runs first. Against torch's output on random data this leaves
//! differences of about 1e-6 (torch's vectorised loops and fused multiply-adds order the
//! roundings differently); Pillow's weights left 4e-5.

use std::ops::Range;

use super::ResizeFilter;
use super::resample::{Coeffs, Passes, PlaneF32, resize_passes};

/// `HelperInterpCubic::aa_filter` with Keys' a = -0.5 (`cubic_convolution1` and `2`), in f32.
fn bicubic(x: f32) -> f32 {
    const A: f32 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((A * x - 5.0 * A) * x + 8.0 * A) * x - 4.0 * A
    } else {
        0.0
    }
}

/// `HelperInterpLinear::aa_filter`, in f32.
fn bilinear(x: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// `_compute_index_ranges_weights` with `antialias=True` for the outputs in `outs` of a resize
/// from `in_size` to `out_size` samples. The casts follow C++'s promotions: a `float` meeting a
/// `double` literal is computed in double and stored back as float.
fn coeffs(in_size: usize, out_size: u64, outs: Range<u64>, filter: ResizeFilter) -> Coeffs<f32> {
    let (kernel, interp_size): (fn(f32) -> f32, f64) = match filter {
        ResizeFilter::Bicubic => (bicubic, 4.0),
        ResizeFilter::Bilinear => (bilinear, 2.0),
    };
    // `area_pixel_compute_scale<float>`: the input size as float over the output size.
    let scale = in_size as f32 / out_size as f32;
    let scale64 = f64::from(scale);
    let support =
        if scale >= 1.0 { (interp_size * 0.5 * scale64) as f32 } else { (interp_size * 0.5) as f32 };
    let ksize = support.ceil() as usize * 2 + 1;
    let invscale = if scale >= 1.0 { (1.0 / scale64) as f32 } else { 1.0 };
    let n = (outs.end - outs.start) as usize;
    let (mut start, mut len) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut weights = vec![0f32; n * ksize];
    for (i, xx) in outs.enumerate() {
        let center = (scale64 * (xx as f64 + 0.5)) as f32;
        // C++'s cast to int64 truncates toward zero; negative values are clamped right after.
        let xmin = ((f64::from(center - support) + 0.5) as i64).max(0);
        let xmax = ((f64::from(center + support) + 0.5) as i64).min(in_size as i64);
        let count = (xmax - xmin).clamp(0, ksize as i64) as usize;
        let xmin = xmin as usize;
        let row = &mut weights[i * ksize..(i + 1) * ksize];
        let mut total = 0f32;
        for (j, slot) in row.iter_mut().enumerate().take(count) {
            let x = (f64::from((j + xmin) as f32 - center) + 0.5) * f64::from(invscale);
            *slot = kernel(x as f32);
            total += *slot;
        }
        if total != 0.0 {
            row.iter_mut().take(count).for_each(|w| *w /= total);
        }
        start.push(xmin);
        len.push(count);
    }
    Coeffs { start, ksize, len, weights }
}

/// One output sample: `t0 * w0`, then `+= t * w` for each further tap, in f32.
fn dot(samples: impl Iterator<Item = f32>, taps: &[f32]) -> f32 {
    let mut pairs = samples.zip(taps);
    let Some((s0, &w0)) = pairs.next() else { return 0.0 };
    pairs.fold(s0 * w0, |acc, (s, &w)| acc + s * w)
}

/// Rows the horizontal pass computes together. Their samples are transposed so that one column
/// of all of them is contiguous: each tap is then one multiply and one add across the rows, which
/// the compiler vectorises, and each row's output is still `t0 * w0`, then `+= t * w` per tap in
/// order, exactly as [`dot`] sums it (the rows never mix, and there is no fused multiply-add).
const ROW_BLOCK: usize = 8;

/// The horizontal pass over rows `rows` of a buffer `width` samples wide.
fn horizontal(src: &[f32], width: usize, rows: Range<usize>, col_offset: usize, c: &Coeffs<f32>) -> Vec<f32> {
    let out_w = c.start.len();
    let mut out = vec![0f32; rows.len() * out_w];
    let mut block = vec![[0f32; ROW_BLOCK]; width];
    for (first, dst) in rows.clone().step_by(ROW_BLOCK).zip(out.chunks_mut(ROW_BLOCK * out_w)) {
        if dst.len() < ROW_BLOCK * out_w {
            // The last rows, fewer than a block: one output at a time.
            for (y, dst) in (first..rows.end).zip(dst.chunks_mut(out_w)) {
                let row = &src[y * width..(y + 1) * width];
                for (x, d) in dst.iter_mut().enumerate() {
                    *d = dot(row[c.start[x] - col_offset..].iter().copied(), c.taps(x));
                }
            }
            continue;
        }
        for (col, lanes) in block.iter_mut().enumerate() {
            for (k, lane) in lanes.iter_mut().enumerate() {
                *lane = src[(first + k) * width + col];
            }
        }
        for x in 0..out_w {
            let xmin = c.start[x] - col_offset;
            let mut acc = [0f32; ROW_BLOCK];
            if let Some((&w0, rest)) = c.taps(x).split_first() {
                acc.iter_mut().zip(&block[xmin]).for_each(|(a, &s)| *a = s * w0);
                for (lanes, &w) in block[xmin + 1..].iter().zip(rest) {
                    acc.iter_mut().zip(lanes).for_each(|(a, &s)| *a += s * w);
                }
            }
            for (k, a) in acc.into_iter().enumerate() {
                dst[k * out_w + x] = a;
            }
        }
    }
    out
}

/// The vertical pass over columns `cols` of a buffer `width` samples wide: whole rows, tap by
/// tap, so the inner loop runs over contiguous samples.
fn vertical(src: &[f32], width: usize, cols: Range<usize>, row_offset: usize, c: &Coeffs<f32>) -> Vec<f32> {
    let mut out = Vec::with_capacity(c.start.len() * cols.len());
    let mut acc = vec![0f32; cols.len()];
    for y in 0..c.start.len() {
        let ymin = c.start[y] - row_offset;
        let taps = c.taps(y);
        for (j, &w) in taps.iter().enumerate() {
            let row = &src[(ymin + j) * width + cols.start..(ymin + j) * width + cols.end];
            if j == 0 {
                acc.iter_mut().zip(row).for_each(|(a, &s)| *a = s * w);
            } else {
                acc.iter_mut().zip(row).for_each(|(a, &s)| *a += s * w);
            }
        }
        if taps.is_empty() {
            acc.fill(0.0);
        }
        out.extend_from_slice(&acc);
    }
    out
}

const TORCH_F32: Passes<f32, Coeffs<f32>> =
    Passes { coeffs, span: Coeffs::span, horizontal, vertical, bands: 1, pillow_order: false };

/// torch's resize of `img` to `out_w x out_h`, returning only the window `cols x rows`.
pub(crate) fn resize_window(
    img: &PlaneF32,
    out_w: u64,
    out_h: u64,
    cols: Range<u64>,
    rows: Range<u64>,
    filter: ResizeFilter,
) -> PlaneF32 {
    let (width, height, data) =
        resize_passes(&TORCH_F32, &img.data, (img.width, img.height), (out_w, out_h), cols, rows, filter);
    PlaneF32 { width, height, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of `(i * 7 % 11) / 10` for i = 0..54: a 9x6 plane.
    fn plane() -> PlaneF32 {
        PlaneF32 { width: 9, height: 6, data: (0..54).map(|i| (i * 7 % 11) as f32 / 10.0).collect() }
    }

    fn assert_close(got: &[f32], want: &[f32], tolerance: f32) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= tolerance, "sample {i}: {g} against torch's {w}");
        }
    }

    /// torch 2.11: `interpolate(arange(10.)[None, None, None], size=(1, 3), mode="bicubic",
    /// antialias=True)`.
    #[test]
    fn a_downscaled_ramp_matches_torch() {
        let img = PlaneF32 { width: 10, height: 1, data: (0..10).map(|v| v as f32).collect() };
        let out = resize_window(&img, 3, 1, 0..3, 0..1, ResizeFilter::Bicubic);
        assert_close(&out.data, &[1.241_056_4, 4.500_000_5, 7.758_944], 1e-6);
    }

    /// torch 2.11 on [`plane`]: bicubic to 5x4 (both passes shrink), and bilinear to 13x10 (both
    /// grow; the first 8 samples).
    #[test]
    fn both_passes_match_torch() {
        let down = resize_window(&plane(), 5, 4, 0..5, 0..4, ResizeFilter::Bicubic);
        #[rustfmt::skip]
        let torch = [
            0.405_609_6, 0.490_675_3, 0.612_996, 0.630_653_9, 0.393_166_2,
            0.426_556_95, 0.429_274_26, 0.376_831_08, 0.564_607_1, 0.702_962_3,
            0.611_683_9, 0.468_819_53, 0.494_611_47, 0.346_954_3, 0.397_290_6,
            0.631_981_85, 0.659_670_7, 0.480_162_98, 0.547_262, 0.360_847_56,
        ];
        assert_close(&down.data, &torch, 1e-6);
        let up = resize_window(&plane(), 13, 10, 0..13, 0..10, ResizeFilter::Bilinear);
        let torch = [0.0, 0.376_923_08, 0.607_692_3, 0.330_769_18, 0.730_769_2, 0.876_923, 0.6, 0.323_076_84];
        assert_close(&up.data[..8], &torch, 1e-6);
    }

    /// The horizontal pass computes rows in blocks; every sample is the same bits as [`dot`]
    /// over its taps, in full blocks and in the rows left after them.
    #[test]
    fn blocked_rows_sum_as_one_output_at_a_time() {
        let (width, height) = (37, 2 * ROW_BLOCK + 3);
        let src: Vec<f32> = (0..width * height).map(|i| ((i * 7919) % 1013) as f32 / 97.0 - 5.0).collect();
        for filter in [ResizeFilter::Bicubic, ResizeFilter::Bilinear] {
            for out_w in [5u64, 11, 60] {
                let c = coeffs(width, out_w, 0..out_w, filter);
                let got = horizontal(&src, width, 1..height, 0, &c);
                let want: Vec<f32> = (1..height)
                    .flat_map(|y| {
                        let row = &src[y * width..(y + 1) * width];
                        (0..out_w as usize)
                            .map(|x| dot(row[c.start[x]..].iter().copied(), c.taps(x)))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                assert_eq!(got.len(), want.len());
                assert!(
                    got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()),
                    "{filter:?} to {out_w}"
                );
            }
        }
    }

    /// A window is the same samples as the whole resize, cropped.
    #[test]
    fn a_window_is_a_crop_of_the_whole() {
        let whole = resize_window(&plane(), 5, 4, 0..5, 0..4, ResizeFilter::Bicubic);
        let win = resize_window(&plane(), 5, 4, 1..4, 2..4, ResizeFilter::Bicubic);
        let cropped: Vec<f32> = (2..4).flat_map(|y| whole.data[y * 5 + 1..y * 5 + 4].to_vec()).collect();
        assert_eq!(win.data, cropped);
    }
}
