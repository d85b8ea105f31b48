//! Wavefront OBJ: `v x y z [w]` or `v x y z r g b` vertices and `f` faces (`i`, `i/t`, `i//n`,
//! `i/t/n`, negative indices counting back from the last vertex); everything else is ignored.
//! With faces the file is a mesh; without, its vertices are the cloud.

use super::{Parsed, check_points, text_f32};
use crate::modality::point_cloud::mesh::{Mesh, fan};
use crate::modality::point_cloud::{Cloud, PointCloudError, PointCloudLimits};

const NAME: &str = "OBJ";

fn malformed(reason: impl Into<String>) -> PointCloudError {
    PointCloudError::Malformed { format: NAME, reason: reason.into() }
}

/// Parses an OBJ file.
pub(super) fn parse(data: &[u8], limits: &PointCloudLimits) -> Result<Parsed, PointCloudError> {
    let text = std::str::from_utf8(data).map_err(|_| malformed("the file is not UTF-8 text"))?;
    let mut vertices = Vec::new();
    let mut colors = Vec::new();
    let mut all_colored = true;
    let mut triangles = Vec::new();
    let mut polygon = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("v") => {
                check_points((vertices.len() / 3 + 1) as u64, limits)?;
                let values: Vec<f32> = words
                    .map(|w| {
                        text_f32(w)
                            .ok_or_else(|| malformed(format!("line {}: {w:?} is not a number", line_no + 1)))
                    })
                    .collect::<Result<_, _>>()?;
                match values.len() {
                    3 | 4 => all_colored = false,
                    6 => colors.extend_from_slice(&values[3..6]),
                    k => {
                        return Err(malformed(format!(
                            "line {}: a vertex has {k} values; expected 3, 4 or 6",
                            line_no + 1
                        )));
                    }
                }
                vertices.extend_from_slice(&values[..3]);
            }
            Some("f") => {
                let count = vertices.len() / 3;
                polygon.clear();
                for w in words {
                    let index = w.split('/').next().unwrap_or_default();
                    let i: i64 = index
                        .parse()
                        .map_err(|_| malformed(format!("line {}: bad face vertex {w:?}", line_no + 1)))?;
                    // 1-based; negative counts back from the last vertex defined so far.
                    let resolved = if i > 0 { i - 1 } else { count as i64 + i };
                    if i == 0 || resolved < 0 || resolved >= count as i64 {
                        return Err(malformed(format!(
                            "line {}: face vertex {i} is out of range ({count} vertices)",
                            line_no + 1
                        )));
                    }
                    polygon.push(resolved as u32);
                }
                fan(&polygon, &mut triangles);
            }
            _ => {}
        }
    }
    let colors = (all_colored && !vertices.is_empty()).then_some(colors);
    if triangles.is_empty() {
        Ok(Parsed::Points(Cloud { xyz: vertices, rgb: colors }))
    } else {
        Ok(Parsed::Mesh(Mesh { vertices, colors, triangles }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polygons_and_index_forms() {
        let data = b"# quad\nv 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv 1 1 0 0 0 1\nv 0 1 0 1 1 1\n\
vn 0 0 1\nf 1//1 2//1 -2//1 -1//1\n";
        match parse(data, &PointCloudLimits::default()).unwrap() {
            Parsed::Mesh(m) => {
                assert_eq!(m.triangles, vec![[0, 1, 2], [0, 2, 3]]);
                assert_eq!(m.colors.map(|c| c.len()), Some(12));
            }
            Parsed::Points(_) => panic!("expected a mesh"),
        }
        let err = parse(b"v 0 0 0\nf 1 2 3\n", &PointCloudLimits::default()).err().unwrap();
        assert!(matches!(err, PointCloudError::Malformed { .. }), "{err}");
    }
}
