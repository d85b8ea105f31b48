//! YUV planes to 8-bit RGB with the integer arithmetic of libyuv, as libavif calls it.
//!
//! Pillow reads AVIF through libavif (1.4.2 in the pinned wheel, built with libyuv 1924), whose
//! `avifImageYUVToRGB` hands every layout bindery decodes to libyuv (`avifImageYUVToRGBLibYUV`
//! in libavif's `reformat_libyuv.c`). What it picks for Pillow's request (8-bit RGB, or RGBA when
//! the file has alpha; default, "automatic" chroma upsampling) decides the pixels:
//!
//! - 4:2:0 chroma is upsampled bilinearly (`I420ToRGB24MatrixFilter` with `kFilterBilinear`:
//!   libyuv's `ScaleRowUp2_Bilinear` and `ScaleRowUp2_Linear` rows, 9-3-3-1 weights), 4:2:2
//!   linearly along rows (`I422ToRGB24MatrixLinear`), 4:4:4 is used as it is;
//! - each pixel then goes through libyuv's `YuvPixel` (6-bit fixed-point coefficients);
//! - 10-bit images without alpha are first brought to 8 bits (`Convert16To8Plane`, `v >> 2`),
//!   while 10-bit images with alpha go through the 10-bit functions (`I010AlphaToARGBMatrixFilter`
//!   and relatives: upsampling on 10-bit values, then `YuvPixel10`).
//!
//! The functions here follow libyuv's C reference rows (`row_common.cc`, `scale_common.cc`,
//! `scale_any.cc`), which its x86 SIMD rows reproduce exactly.

/// libyuv's `YuvConstants` for one matrix and range, in the terms of its C rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Coefficients {
    /// Luma gain (`YG`), 16.16 fixed point on `y * 0x0101`.
    yg: i32,
    /// Luma bias (`YB`), with the rounding of the final `>> 6`.
    yb: i32,
    ub: i32,
    ug: i32,
    vg: i32,
    vr: i32,
}

const fn coefficients(yg: i32, yb: i32, ub: i32, ug: i32, vg: i32, vr: i32) -> Coefficients {
    Coefficients { yg, yb, ub, ug, vg, vr }
}

// libyuv's tables (row_common.cc), without LIBYUV_UNLIMITED_DATA: the B coefficient of the
// limited-range matrices is capped at 128 there, and so here.
const I601: Coefficients = coefficients(18997, -1160, 128, 25, 52, 102);
const JPEG: Coefficients = coefficients(16320, 32, 113, 22, 46, 90);
const H709: Coefficients = coefficients(18997, -1160, 128, 14, 34, 115);
const F709: Coefficients = coefficients(16320, 32, 119, 12, 30, 101);
const BT2020: Coefficients = coefficients(19003, -1160, 128, 12, 42, 107);
const V2020: Coefficients = coefficients(16320, 32, 120, 11, 37, 94);

/// The constants libavif's `getLibYUVConstants` chooses for the image's CICP matrix
/// coefficients, colour primaries and range; `None` where libavif falls back to its own
/// (non-libyuv) conversion, which bindery does not reproduce.
pub(crate) fn coefficients_for(matrix: u8, primaries: u8, full_range: bool) -> Option<Coefficients> {
    // Matrix coefficients 12 (chroma-derived, non-constant luminance) take the matrix of the
    // primaries: 1 and 2 (BT.709, unspecified), 5 and 6 (BT.601), 9 (BT.2020).
    let family = match matrix {
        1 => 709,
        2 | 5 | 6 => 601,
        9 => 2020,
        12 => match primaries {
            1 | 2 => 709,
            5 | 6 => 601,
            9 => 2020,
            _ => return None,
        },
        _ => return None,
    };
    Some(match (family, full_range) {
        (601, false) => I601,
        (601, true) => JPEG,
        (709, false) => H709,
        (709, true) => F709,
        (_, false) => BT2020,
        (_, true) => V2020,
    })
}

/// libyuv's `Clamp`: to 0..=255.
fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// libyuv's `YuvPixel` core (the x86 form of `CALC_RGB16`), from a 16-bit luma (`y32`) and
/// 8-bit chroma; writes R, G, B.
fn pixel(c: &Coefficients, y32: u32, u: u8, v: u8) -> [u8; 3] {
    let y1 = (y32.wrapping_mul(c.yg as u32) >> 16) as i32 + c.yb;
    let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
    let b = y1 + u * c.ub;
    let g = y1 - (u * c.ug + v * c.vg);
    let r = y1 + v * c.vr;
    [clamp(r >> 6), clamp(g >> 6), clamp(b >> 6)]
}

/// `YuvPixel`: 8-bit Y, U and V.
fn pixel8(c: &Coefficients, y: u16, u: u16, v: u16) -> [u8; 3] {
    pixel(c, u32::from(y) * 0x0101, u as u8, v as u8)
}

/// `YuvPixel10`: 10-bit Y (widened to 16 bits), chroma reduced to 8 bits.
fn pixel10(c: &Coefficients, y: u16, u: u16, v: u16) -> [u8; 3] {
    let y32 = (u32::from(y) << 6) | (u32::from(y) >> 4);
    pixel(c, y32, (u >> 2).min(255) as u8, (v >> 2).min(255) as u8)
}

/// Chroma subsampling of a 3-plane image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subsampling {
    /// 4:4:4.
    None,
    /// 4:2:2: half the columns.
    Horizontal,
    /// 4:2:0: half the columns and half the rows.
    Both,
}

/// One plane of samples (8-bit samples are stored widened).
pub(crate) struct Plane {
    /// Samples, `stride` apart per row.
    pub data: Vec<u16>,
    /// Samples per row in `data`.
    pub stride: usize,
}

impl Plane {
    fn row(&self, y: usize) -> &[u16] {
        &self.data[y * self.stride..]
    }
}

/// A decoded YUV image.
pub(crate) struct Yuv {
    pub width: usize,
    pub height: usize,
    /// 8 or 10.
    pub depth: u8,
    pub subsampling: Subsampling,
    pub planes: [Plane; 3],
}

/// libyuv's `ScaleRowUp2_Linear_Any_C`: a chroma row to `width` samples.
fn up2_linear(src: &[u16], out: &mut [u16]) {
    let width = out.len();
    out[0] = src[0];
    // Pairs of outputs between each two source samples, up to the last even position.
    let work = (width - 1) & !1;
    for x in 0..work / 2 {
        let (a, b) = (u32::from(src[x]), u32::from(src[x + 1]));
        out[2 * x + 1] = ((a * 3 + b + 2) >> 2) as u16;
        out[2 * x + 2] = ((a + b * 3 + 2) >> 2) as u16;
    }
    out[width - 1] = src[(width - 1) / 2];
}

/// libyuv's `ScaleRowUp2_Bilinear_Any_C`: two chroma rows `s` (nearer to the first output) and
/// `t` to the two output rows between them.
fn up2_bilinear(s: &[u16], t: &[u16], first: &mut [u16], second: &mut [u16]) {
    let width = first.len();
    let edge = |near: u16, far: u16| ((3 * u32::from(near) + u32::from(far) + 2) >> 2) as u16;
    first[0] = edge(s[0], t[0]);
    second[0] = edge(t[0], s[0]);
    let work = (width - 1) & !1;
    for x in 0..work / 2 {
        let [s0, s1, t0, t1] = [s[x], s[x + 1], t[x], t[x + 1]].map(u32::from);
        first[2 * x + 1] = ((s0 * 9 + s1 * 3 + t0 * 3 + t1 + 8) >> 4) as u16;
        first[2 * x + 2] = ((s0 * 3 + s1 * 9 + t0 + t1 * 3 + 8) >> 4) as u16;
        second[2 * x + 1] = ((s0 * 3 + s1 + t0 * 9 + t1 * 3 + 8) >> 4) as u16;
        second[2 * x + 2] = ((s0 + s1 * 3 + t0 * 3 + t1 * 9 + 8) >> 4) as u16;
    }
    let last = (width - 1) / 2;
    first[width - 1] = edge(s[last], t[last]);
    second[width - 1] = edge(t[last], s[last]);
}

/// Converts `yuv` to RGB as libavif does for Pillow; `has_alpha` selects libyuv's alpha
/// functions, which for 10-bit images compute differently.
pub(crate) fn to_rgb(yuv: &Yuv, c: &Coefficients, has_alpha: bool) -> Vec<u8> {
    let ten_bit_path = yuv.depth > 8 && has_alpha;
    let downshifted;
    let planes: &[Plane; 3] = if yuv.depth > 8 && !has_alpha {
        // `avifImageDownshiftTo8bpc`: Convert16To8Plane with scale 1 << 14, i.e. `v >> 2`.
        downshifted = yuv
            .planes
            .each_ref()
            .map(|p| Plane { data: p.data.iter().map(|&v| (v >> 2).min(255)).collect(), stride: p.stride });
        &downshifted
    } else {
        &yuv.planes
    };
    let convert = if ten_bit_path { pixel10 } else { pixel8 };
    let (w, h) = (yuv.width, yuv.height);
    let mut out = vec![0u8; w * h * 3];
    let row_out = |out: &mut [u8], y: usize, u: &[u16], v: &[u16]| {
        let luma = planes[0].row(y);
        for (x, px) in out[y * w * 3..(y + 1) * w * 3].chunks_exact_mut(3).enumerate() {
            px.copy_from_slice(&convert(c, luma[x], u[x], v[x]));
        }
    };
    let [_, pu, pv] = planes;
    match yuv.subsampling {
        Subsampling::None => {
            for y in 0..h {
                row_out(&mut out, y, pu.row(y), pv.row(y));
            }
        }
        Subsampling::Horizontal => {
            let (mut u, mut v) = (vec![0u16; w], vec![0u16; w]);
            for y in 0..h {
                up2_linear(pu.row(y), &mut u);
                up2_linear(pv.row(y), &mut v);
                row_out(&mut out, y, &u, &v);
            }
        }
        Subsampling::Both => {
            // The first row from the first chroma row alone, then pairs of rows between two
            // chroma rows, then (for an even height) the last row from the last chroma row.
            let (mut u1, mut v1, mut u2, mut v2) =
                (vec![0u16; w], vec![0u16; w], vec![0u16; w], vec![0u16; w]);
            up2_linear(pu.row(0), &mut u1);
            up2_linear(pv.row(0), &mut v1);
            row_out(&mut out, 0, &u1, &v1);
            let mut y = 1;
            let mut cy = 0;
            while y + 1 < h {
                up2_bilinear(pu.row(cy), pu.row(cy + 1), &mut u1, &mut u2);
                up2_bilinear(pv.row(cy), pv.row(cy + 1), &mut v1, &mut v2);
                row_out(&mut out, y, &u1, &v1);
                row_out(&mut out, y + 1, &u2, &v2);
                y += 2;
                cy += 1;
            }
            if h.is_multiple_of(2) {
                up2_linear(pu.row(cy), &mut u1);
                up2_linear(pv.row(cy), &mut v1);
                row_out(&mut out, h - 1, &u1, &v1);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libyuv_full_range_bt601_keeps_greys_and_saturates_like_libyuv() {
        // Y = 255 with neutral chroma: (255 * 0x0101 * 16320) >> 16 = 16319, + 32 = 16351,
        // >> 6 = 255.
        assert_eq!(pixel8(&JPEG, 255, 128, 128), [255, 255, 255]);
        assert_eq!(pixel8(&JPEG, 0, 128, 128), [0, 0, 0]);
        // Strong red chroma saturates R and B clips to 0.
        let [r, _, b] = pixel8(&JPEG, 128, 0, 255);
        assert_eq!((r, b), (255, 0));
    }

    #[test]
    fn edges_of_linear_upsampling_repeat_the_outer_samples() {
        let mut out = [0u16; 5];
        up2_linear(&[10, 20, 30], &mut out);
        assert_eq!(out, [10, 13, 18, 23, 30]);
        let mut even = [0u16; 4];
        up2_linear(&[10, 20], &mut even);
        assert_eq!(even, [10, 13, 18, 20]);
    }
}
