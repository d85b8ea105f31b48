//! Compact embedding outputs: fewer dimensions (truncated, then renormalised) and packed
//! encodings (float16, bfloat16, symmetric int8, sign bits), for the wire and for storage.

use half::{bf16, f16};

/// How a vector is packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// 32-bit floats, unpacked.
    Float32,
    /// IEEE half floats, little-endian.
    Float16,
    /// bfloat16, little-endian.
    Bfloat16,
    /// Symmetric int8 with one scale per vector.
    Int8,
    /// One sign bit per value, most significant bit first.
    Binary,
}

/// A packed vector.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Packed {
    /// The packed bytes.
    pub bytes: Vec<u8>,
    /// Int8 only: the value of one step.
    pub scale: f32,
}

/// Why a compact output cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompactError {
    /// More dimensions than the model has.
    #[error("dimensions {requested} is more than model {model:?} has ({available})")]
    TooManyDimensions {
        /// Requested.
        requested: usize,
        /// The model's dimension.
        available: usize,
        /// The model.
        model: String,
    },
}

/// Checks a requested dimension count against the model's.
pub fn check_dimensions(requested: usize, available: usize, model: &str) -> Result<(), CompactError> {
    if requested > available {
        return Err(CompactError::TooManyDimensions { requested, available, model: model.to_string() });
    }
    Ok(())
}

/// Keeps the first `dimensions` values; renormalises to unit length when `renormalize` (a zero
/// vector stays zero).
pub fn truncate(vector: &mut Vec<f32>, dimensions: usize, renormalize: bool) {
    if dimensions >= vector.len() {
        return;
    }
    vector.truncate(dimensions);
    if renormalize {
        let norm = vector.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>().sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|v| *v = (f64::from(*v) / norm) as f32);
        }
    }
}

/// `vector` in `encoding` (empty bytes for [`Encoding::Float32`], which travels unpacked).
pub fn pack(vector: &[f32], encoding: Encoding) -> Packed {
    match encoding {
        Encoding::Float32 => Packed::default(),
        Encoding::Float16 => Packed {
            bytes: vector.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
            scale: 0.0,
        },
        Encoding::Bfloat16 => Packed {
            bytes: vector.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect(),
            scale: 0.0,
        },
        Encoding::Int8 => {
            let max = vector.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = max / 127.0;
            let bytes = vector
                .iter()
                .map(|v| if scale > 0.0 { (v / scale).round().clamp(-127.0, 127.0) as i8 as u8 } else { 0 })
                .collect();
            Packed { bytes, scale }
        }
        Encoding::Binary => {
            let mut bytes = vec![0u8; vector.len().div_ceil(8)];
            for (i, v) in vector.iter().enumerate() {
                if *v > 0.0 {
                    bytes[i / 8] |= 0x80 >> (i % 8);
                }
            }
            Packed { bytes, scale: 0.0 }
        }
    }
}

/// The values of a packed vector of `dimension` values (sign bits become +1 / -1).
pub fn unpack(packed: &Packed, dimension: usize, encoding: Encoding) -> Vec<f32> {
    let pairs = || packed.bytes.chunks_exact(2).map(|b| [b[0], b[1]]);
    match encoding {
        Encoding::Float32 => Vec::new(),
        Encoding::Float16 => pairs().map(|b| f16::from_le_bytes(b).to_f32()).collect(),
        Encoding::Bfloat16 => pairs().map(|b| bf16::from_le_bytes(b).to_f32()).collect(),
        Encoding::Int8 => packed.bytes.iter().map(|b| f32::from(*b as i8) * packed.scale).collect(),
        Encoding::Binary => {
            (0..dimension)
                .map(|i| {
                    if packed.bytes.get(i / 8).is_some_and(|b| b & (0x80 >> (i % 8)) != 0) {
                        1.0
                    } else {
                        -1.0
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_renormalises_unless_raw() {
        let mut v = vec![3.0, 4.0, 12.0];
        truncate(&mut v, 2, true);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut raw = vec![3.0, 4.0, 12.0];
        truncate(&mut raw, 2, false);
        assert_eq!(raw, vec![3.0, 4.0]);
        assert!(
            check_dimensions(5, 3, "m").unwrap_err().to_string().contains("more than model \"m\" has (3)")
        );
    }

    #[test]
    fn encodings_round_trip_within_their_precision() {
        let v: Vec<f32> = (0..37).map(|i| ((i * 7919) % 201) as f32 / 100.0 - 1.0).collect();
        for (encoding, tolerance) in
            [(Encoding::Float16, 1e-3), (Encoding::Bfloat16, 8e-3), (Encoding::Int8, 4e-3)]
        {
            let packed = pack(&v, encoding);
            let back = unpack(&packed, v.len(), encoding);
            let worst = v.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= tolerance, "{encoding:?}: {worst}");
        }
        let bits = pack(&[0.5, -0.1, 0.0, 2.0, -3.0, 1.0, 1.0, -1.0, 0.25], Encoding::Binary);
        assert_eq!(bits.bytes, vec![0b1001_0110, 0b1000_0000]);
        assert_eq!(unpack(&bits, 9, Encoding::Binary), vec![1., -1., -1., 1., -1., 1., 1., -1., 1.]);
        let int8 = pack(&[0.5, -1.0, 0.25], Encoding::Int8);
        assert_eq!(int8.bytes, vec![64, (-127i8) as u8, 32]);
        assert_eq!(int8.scale, 1.0 / 127.0);
    }
}
