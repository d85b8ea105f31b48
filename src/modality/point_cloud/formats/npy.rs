//! numpy `.npy` (format versions 1-3): float32 or float64, either byte order, shape `[N, 3]` or
//! `[N, 6]`, C or Fortran order. Colour columns follow [`untyped_colors`](super::untyped_colors).

use super::{check_points, untyped_colors};
use crate::modality::point_cloud::{Cloud, PointCloudError, PointCloudLimits};

const NAME: &str = "NPY";

fn malformed(reason: impl Into<String>) -> PointCloudError {
    PointCloudError::Malformed { format: NAME, reason: reason.into() }
}

fn unsupported(reason: impl Into<String>) -> PointCloudError {
    PointCloudError::Unsupported { format: NAME, reason: reason.into() }
}

/// The value of `'key':` in the header dictionary, up to the next top-level comma or brace.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let quoted = [format!("'{key}'"), format!("\"{key}\"")];
    let at = quoted.iter().find_map(|q| header.find(q.as_str()).map(|i| i + q.len()))?;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let end =
        if rest.starts_with('(') { rest.find(')')? + 1 } else { rest.find([',', '}']).unwrap_or(rest.len()) };
    Some(rest[..end].trim())
}

/// Parses an NPY file.
pub(super) fn parse(data: &[u8], limits: &PointCloudLimits) -> Result<Cloud, PointCloudError> {
    let truncated = |reason: String| PointCloudError::Truncated { format: NAME, reason };
    if data.len() < 10 {
        return Err(truncated("the header is incomplete".into()));
    }
    let (len, start) = match data[6] {
        1 => (usize::from(u16::from_le_bytes([data[8], data[9]])), 10),
        2 | 3 => {
            if data.len() < 12 {
                return Err(truncated("the header is incomplete".into()));
            }
            (u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize, 12)
        }
        v => return Err(unsupported(format!("format version {v}"))),
    };
    let header = data.get(start..start + len).ok_or_else(|| truncated("the header is incomplete".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| malformed("the header is not text"))?;
    let descr = dict_value(header, "descr")
        .ok_or_else(|| malformed("the header has no 'descr'"))?
        .trim_matches(|c| c == '\'' || c == '"');
    let (big, size) = match descr {
        "<f4" | "=f4" | "|f4" => (false, 4),
        "<f8" | "=f8" | "|f8" => (false, 8),
        ">f4" => (true, 4),
        ">f8" => (true, 8),
        other => {
            return Err(unsupported(format!("dtype {other:?} (only float32 and float64 arrays are read)")));
        }
    };
    let fortran = match dict_value(header, "fortran_order") {
        Some("True") => true,
        Some("False") => false,
        _ => return Err(malformed("the header has no valid 'fortran_order'")),
    };
    let shape = dict_value(header, "shape").ok_or_else(|| malformed("the header has no 'shape'"))?;
    let dims: Vec<u64> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| malformed(format!("bad shape {shape}")))?;
    let [n, cols] = dims[..] else {
        return Err(malformed(format!("shape {shape} is not [N, 3] or [N, 6]")));
    };
    if cols != 3 && cols != 6 {
        return Err(malformed(format!("shape {shape} is not [N, 3] or [N, 6]")));
    }
    check_points(n, limits)?;
    let (n, cols) = (n as usize, cols as usize);
    let body = &data[start + len..];
    let need = n as u128 * cols as u128 * size as u128;
    if (body.len() as u128) < need {
        return Err(truncated(format!("shape {shape} needs {need} bytes of data but {} follow", body.len())));
    }
    let value = |row: usize, col: usize| -> f32 {
        let i = if fortran { col * n + row } else { row * cols + col };
        let b = &body[i * size..(i + 1) * size];
        if size == 4 {
            let a = [b[0], b[1], b[2], b[3]];
            if big { f32::from_be_bytes(a) } else { f32::from_le_bytes(a) }
        } else {
            let a = [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
            (if big { f64::from_be_bytes(a) } else { f64::from_le_bytes(a) }) as f32
        }
    };
    let mut xyz = Vec::with_capacity(n * 3);
    let mut rgb = Vec::with_capacity(if cols == 6 { n * 3 } else { 0 });
    for r in 0..n {
        for c in 0..3 {
            xyz.push(value(r, c));
        }
        for c in 3..cols {
            rgb.push(value(r, c));
        }
    }
    let rgb = (cols == 6).then(|| untyped_colors(rgb));
    Ok(Cloud { xyz, rgb })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, fortran: bool, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(body);
        out
    }

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
