//! numpy `.npy` (format versions 1-3): float32 or float64, either byte order, shape `[N, 3]` or
//! `[N, 6]`, C or Fortran order. Colour columns follow [`untyped_colors`](super::untyped_colors).

use super::{check_points, untyped_colors};
use crate::modality::npy::{NpyError, NpyHeader};
use crate::modality::point_cloud::{Cloud, PointCloudError, PointCloudLimits};

const NAME: &str = "NPY";

fn malformed(reason: impl Into<String>) -> PointCloudError {
    PointCloudError::Malformed { format: NAME, reason: reason.into() }
}

/// The shared reader's error, as the point-cloud error of the same kind.
fn from_npy(e: NpyError) -> PointCloudError {
    match e {
        NpyError::Truncated(reason) => PointCloudError::Truncated { format: NAME, reason },
        NpyError::Malformed(reason) => malformed(reason),
        NpyError::Unsupported(reason) => PointCloudError::Unsupported { format: NAME, reason },
        NpyError::TooLarge { .. } => malformed(e.to_string()),
    }
}

/// Parses an NPY file.
pub(super) fn parse(data: &[u8], limits: &PointCloudLimits) -> Result<Cloud, PointCloudError> {
    let header = NpyHeader::parse(data).map_err(from_npy)?;
    let shape = &header.shape_text;
    let [n, cols] = header.shape[..] else {
        return Err(malformed(format!("shape {shape} is not [N, 3] or [N, 6]")));
    };
    if cols != 3 && cols != 6 {
        return Err(malformed(format!("shape {shape} is not [N, 3] or [N, 6]")));
    }
    check_points(n, limits)?;
    let values = header.values(data).map_err(from_npy)?;
    let cols = cols as usize;
    let mut xyz = Vec::with_capacity(n as usize * 3);
    let mut rgb = Vec::with_capacity(if cols == 6 { n as usize * 3 } else { 0 });
    for row in values.chunks_exact(cols) {
        xyz.extend_from_slice(&row[..3]);
        rgb.extend_from_slice(&row[3..]);
    }
    let rgb = (cols == 6).then(|| untyped_colors(rgb));
    Ok(Cloud { xyz, rgb })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::modality::npy::tests::npy;

    #[test]
    fn fortran_order_and_doubles() {
        let body: Vec<u8> = [1.0f64, 4.0, 2.0, 5.0, 3.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let c = parse(&npy("<f8", true, "(2, 3)", &body), &PointCloudLimits::default()).unwrap();
        assert_eq!(c.xyz, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let err = parse(&npy("<f8", false, "(5, 3)", &body), &PointCloudLimits::default());
        assert!(matches!(err, Err(PointCloudError::Truncated { .. })));
        let err = parse(&npy("<i4", false, "(1, 3)", &body), &PointCloudLimits::default());
        assert!(matches!(err, Err(PointCloudError::Unsupported { .. })));
        let err = parse(&npy("<f8", false, "(1, 4)", &body), &PointCloudLimits::default());
        assert!(matches!(err, Err(PointCloudError::Malformed { .. })));
    }
}
