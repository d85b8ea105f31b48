//! XYZ / PTS / CSV text: one point per line, 3 (`x y z`) or 6 (`x y z r g b`) columns separated
//! by whitespace, commas or semicolons. Blank lines and lines starting with `#` or `//` are
//! skipped; the first line may be a header (any non-numeric token) or, as in PTS files, a point
//! count (a single integer). Colours follow [`untyped_colors`](super::untyped_colors).

use super::{check_points, text_f32, untyped_colors};
use crate::modality::point_cloud::{Cloud, PointCloudError, PointCloudLimits};

const NAME: &str = "text";

fn malformed(reason: impl Into<String>) -> PointCloudError {
    PointCloudError::Malformed { format: NAME, reason: reason.into() }
}

fn split(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| c == ',' || c == ';' || c.is_whitespace()).filter(|t| !t.is_empty())
}

/// Parses a text point file.
pub(super) fn parse(data: &[u8], limits: &PointCloudLimits) -> Result<Cloud, PointCloudError> {
    let text = std::str::from_utf8(data).map_err(|_| malformed("the file is not UTF-8 text"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut xyz = Vec::new();
    let mut rgb: Vec<f32> = Vec::new();
    let mut columns = None;
    let mut first = true;
    let mut tokens = Vec::with_capacity(8);
    for (line_no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        tokens.clear();
        tokens.extend(split(line));
        if first {
            first = false;
            if tokens.iter().any(|t| text_f32(t).is_none()) {
                continue; // header line
            }
            if let [count] = tokens.as_slice()
                && let Ok(count) = count.parse::<u64>()
            {
                check_points(count, limits)?;
                continue; // PTS point count
            }
        }
        let width = *columns.get_or_insert(tokens.len());
        if tokens.len() != width || !(width == 3 || width == 6) {
            return Err(malformed(format!(
                "line {} has {} columns; expected {}",
                line_no + 1,
                tokens.len(),
                if width == 3 || width == 6 {
                    width.to_string()
                } else {
                    "3 (x y z) or 6 (x y z r g b)".into()
                }
            )));
        }
        check_points((xyz.len() / 3 + 1) as u64, limits)?;
        for (i, t) in tokens.iter().enumerate() {
            let v = text_f32(t)
                .ok_or_else(|| malformed(format!("line {}: {t:?} is not a number", line_no + 1)))?;
            if i < 3 { xyz.push(v) } else { rgb.push(v) }
        }
    }
    let rgb = (columns == Some(6)).then(|| untyped_colors(rgb));
    Ok(Cloud { xyz, rgb })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_count_and_colors() {
        let c = parse(b"x,y,z,r,g,b\n1,2,3,255,0,0\n4,5,6,0,51,0\n", &PointCloudLimits::default()).unwrap();
        assert_eq!(c.xyz, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(c.rgb, Some(vec![1.0, 0.0, 0.0, 0.0, 0.2, 0.0]));
        let c = parse(b"2\n1 2 3\n4 5 6\n", &PointCloudLimits::default()).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.rgb, None);
    }

    #[test]
    fn column_errors_name_the_line() {
        let err = parse(b"1 2 3\n4 5\n", &PointCloudLimits::default()).unwrap_err();
        assert!(err.to_string().contains("line 2 has 2 columns"), "{err}");
        let err = parse(b"1 2 3 4\n", &PointCloudLimits::default()).unwrap_err();
        assert!(matches!(err, PointCloudError::Malformed { .. }), "{err}");
        let limits = PointCloudLimits { max_bytes: 100, max_points: 1 };
        let err = parse(b"1 2 3\n4 5 6\n", &limits).unwrap_err();
        assert!(matches!(err, PointCloudError::TooManyPoints { count: 2, limit: 1 }));
    }
}
