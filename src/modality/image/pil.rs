//! Pixel conversions that reproduce Pillow's `Image.convert("RGB")` (libImaging/Convert.c and
//! the unpackers in libImaging/Unpack.c) for the sample layouts our decoders produce.

/// Pillow's `MULDIV255`: `a * b / 255` rounded, with its shift-based approximation.
#[inline]
fn muldiv255(a: i32, b: i32) -> i32 {
    let tmp = a * b + 128;
    ((tmp >> 8) + tmp) >> 8
}

/// Pillow's `cmyk2rgb`: `255 - k - round(c * (255 - k) / 255)` per channel, clipped.
pub(crate) fn cmyk_to_rgb(c: u8, m: u8, y: u8, k: u8) -> [u8; 3] {
    let nk = 255 - i32::from(k);
    let ch = |v: u8| (nk - muldiv255(i32::from(v), nk)).clamp(0, 255) as u8;
    [ch(c), ch(m), ch(y)]
}

/// Pillow's `I;16 -> RGB` (`I16_RGB`) and `I -> RGB` (`i2rgb`): values are clipped to 0..=255,
/// not scaled.
#[inline]
pub(crate) fn clip_int(v: i64) -> u8 {
    v.clamp(0, 255) as u8
}

/// Pillow's `F -> RGB` (through `F -> L`): the float is truncated toward zero and clipped;
/// NaN becomes 0.
#[inline]
pub(crate) fn clip_float(v: f32) -> u8 {
    // `as` saturates and maps NaN to 0, which is what Pillow's clip of the C cast produces.
    (v as i32).clamp(0, 255) as u8
}

/// Pillow reads 16-bit RGB(A) samples (`RGB;16B`, `RGBA;16B`, `LA;16B` rawmodes) by keeping the
/// most significant byte.
#[inline]
pub(crate) fn high_byte(v: u16) -> u8 {
    (v >> 8) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmyk_conversion_uses_pillows_rounding() {
        assert_eq!(cmyk_to_rgb(0, 0, 0, 0), [255, 255, 255]);
        assert_eq!(cmyk_to_rgb(255, 255, 255, 0), [0, 0, 0]);
        assert_eq!(cmyk_to_rgb(0, 0, 0, 255), [0, 0, 0]);
        // 255 - 100 - round(128 * 155 / 255) = 155 - 78
        assert_eq!(cmyk_to_rgb(128, 0, 255, 100), [77, 155, 0]);
    }

    #[test]
    fn deep_values_are_clipped_not_scaled() {
        assert_eq!(clip_int(-3), 0);
        assert_eq!(clip_int(200), 200);
        assert_eq!(clip_int(65535), 255);
        assert_eq!(clip_float(0.99), 0);
        assert_eq!(clip_float(254.9), 254);
        assert_eq!(clip_float(f32::NAN), 0);
        assert_eq!(clip_float(f32::INFINITY), 255);
        assert_eq!(high_byte(0x12ff), 0x12);
    }
}
