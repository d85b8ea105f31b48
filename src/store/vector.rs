//! Checks and normalisation of vectors that clients send directly.

/// Why a client-supplied vector is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VectorError {
    /// Wrong length.
    #[error("vector has {got} values, the model's dimension is {want}")]
    Dimension {
        /// Values sent.
        got: usize,
        /// Expected dimension.
        want: usize,
    },
    /// NaN or infinity.
    #[error("vector value {index} is not finite ({value})")]
    NonFinite {
        /// Position of the first bad value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// All zeros where a direction is needed.
    #[error("vector is all zeros and has no direction")]
    Zero,
}

/// Checks that `v` has `dim` finite values.
pub fn check(v: &[f32], dim: usize) -> Result<(), VectorError> {
    if v.len() != dim {
        return Err(VectorError::Dimension { got: v.len(), want: dim });
    }
    if let Some((index, value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(VectorError::NonFinite { index, value: *value });
    }
    Ok(())
}

/// Scales `v` to unit L2 norm (the sum is taken in f64, as the engine does for embeddings).
pub fn normalize(v: &mut [f32]) -> Result<(), VectorError> {
    // In f64 the sum of squares of finite f32 values cannot overflow.
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return Err(VectorError::Zero);
    }
    let inv = 1.0 / norm;
    v.iter_mut().for_each(|x| *x = (f64::from(*x) * inv) as f32);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_dimension_and_finiteness() {
        assert_eq!(check(&[1.0, 2.0], 3), Err(VectorError::Dimension { got: 2, want: 3 }));
        assert!(matches!(check(&[1.0, f32::NAN], 2), Err(VectorError::NonFinite { index: 1, .. })));
        assert!(check(&[1.0, 2.0], 2).is_ok());
    }

    #[test]
    fn normalises_even_huge_values() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v).unwrap();
        assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);
        let mut huge = vec![f32::MAX, f32::MAX];
        normalize(&mut huge).unwrap();
        assert!((huge[0] - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(normalize(&mut [0.0, 0.0]), Err(VectorError::Zero));
    }
}
