//! Readers for the accepted point-cloud encodings, and content sniffing.
//!
//! The readers are written here rather than taken from crates because each must check the counts a
//! header declares against [`PointCloudLimits::max_points`] and against the bytes actually present
//! before allocating anything, and must read a million-point file in tens of milliseconds; both
//! need control of the header and of the record loop.
//!
//! Numbers written as text are parsed as f64 and rounded to f32, which is what numpy (and so the
//! Python readers ULIP uses) does; binary doubles and integers are rounded to f32 the same way.

mod lzf;
mod npy;
mod obj;
mod pcd;
mod ply;
mod text;

use super::mesh::Mesh;
use super::{Cloud, Colors, PointCloudError, PointCloudInput, PointCloudLimits};

/// The formats bindery reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Stanford PLY (ascii, binary little/big endian), points or mesh.
    Ply,
    /// Point Cloud Library PCD (ascii, binary, binary_compressed).
    Pcd,
    /// Whitespace, comma or semicolon separated columns (`xyz`, `pts`, `csv`, `txt`).
    Text,
    /// numpy `.npy`, float32/float64 `[N, 3]` or `[N, 6]`.
    Npy,
    /// Wavefront OBJ, points or mesh.
    Obj,
}

impl Format {
    /// Format named by a hint (a file extension, with or without the dot, any case).
    pub fn from_hint(hint: &str) -> Result<Self, PointCloudError> {
        let h = hint.trim().trim_start_matches('.').to_ascii_lowercase();
        Ok(match h.as_str() {
            "ply" => Format::Ply,
            "pcd" => Format::Pcd,
            "xyz" | "pts" | "csv" | "txt" | "xyzrgb" => Format::Text,
            "npy" => Format::Npy,
            "obj" => Format::Obj,
            _ => return Err(PointCloudError::UnknownHint(hint.to_string())),
        })
    }

    /// Recognises a format from the first bytes of a file.
    pub fn sniff(data: &[u8]) -> Result<Self, PointCloudError> {
        if data.starts_with(b"\x93NUMPY") {
            return Ok(Format::Npy);
        }
        if data.starts_with(b"ply\n") || data.starts_with(b"ply\r\n") {
            return Ok(Format::Ply);
        }
        let head = &data[..data.len().min(4096)];
        let head = match std::str::from_utf8(head) {
            Ok(s) => s,
            // A cut in the middle of a UTF-8 sequence at the 4096 boundary is fine.
            Err(e) if e.valid_up_to() > 0 => {
                std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => return Err(PointCloudError::UnknownFormat),
        };
        for line in head.lines() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with("# .PCD") {
                return Ok(Format::Pcd);
            }
            if line.starts_with('#') || line.starts_with("//") {
                continue;
            }
            let word = line.split_whitespace().next().unwrap_or_default();
            return match word {
                "VERSION" | "FIELDS" => Ok(Format::Pcd),
                "v" | "vn" | "vt" | "f" | "o" | "g" | "s" | "mtllib" | "usemtl" => Ok(Format::Obj),
                _ if line.starts_with(|c: char| {
                    c.is_ascii_digit() || "+-.".contains(c) || c.is_ascii_alphabetic()
                }) =>
                {
                    Ok(Format::Text)
                }
                _ => Err(PointCloudError::UnknownFormat),
            };
        }
        Err(PointCloudError::UnknownFormat)
    }

    /// Name used in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Ply => "PLY",
            Format::Pcd => "PCD",
            Format::Text => "text",
            Format::Npy => "NPY",
            Format::Obj => "OBJ",
        }
    }
}

/// A parsed file: points, or a mesh to sample.
pub(crate) enum Parsed {
    Points(Cloud),
    Mesh(Mesh),
}

/// Reads any input into a cleaned cloud; returns it with the number of dropped points.
pub(crate) fn read(
    input: PointCloudInput<'_>,
    limits: &PointCloudLimits,
    mesh_samples: usize,
) -> Result<(Cloud, u64), PointCloudError> {
    let parsed = match input {
        PointCloudInput::Arrays { xyz, colors } => Parsed::Points(from_arrays(xyz, colors, limits)?),
        PointCloudInput::File { data, format_hint } => {
            if data.is_empty() {
                return Err(PointCloudError::Empty);
            }
            if data.len() > limits.max_bytes {
                return Err(PointCloudError::TooManyBytes { size: data.len(), limit: limits.max_bytes });
            }
            let format = match format_hint.filter(|h| !h.trim().is_empty()) {
                Some(h) => Format::from_hint(h)?,
                None => Format::sniff(data)?,
            };
            parse(format, data, limits)?
        }
    };
    Ok(match parsed {
        Parsed::Points(mut cloud) => {
            let dropped = cloud.drop_non_finite();
            (cloud, dropped)
        }
        Parsed::Mesh(mesh) => mesh.sample(mesh_samples),
    })
}

/// Parses one file of a known format.
pub(crate) fn parse(
    format: Format,
    data: &[u8],
    limits: &PointCloudLimits,
) -> Result<Parsed, PointCloudError> {
    match format {
        Format::Ply => ply::parse(data, limits),
        Format::Pcd => pcd::parse(data, limits).map(Parsed::Points),
        Format::Text => text::parse(data, limits).map(Parsed::Points),
        Format::Npy => npy::parse(data, limits).map(Parsed::Points),
        Format::Obj => obj::parse(data, limits),
    }
}

fn from_arrays(
    xyz: &[f32],
    colors: Option<Colors<'_>>,
    limits: &PointCloudLimits,
) -> Result<Cloud, PointCloudError> {
    if !xyz.len().is_multiple_of(3) {
        return Err(PointCloudError::InvalidArrays(format!(
            "xyz has {} values, not a multiple of 3",
            xyz.len()
        )));
    }
    let n = xyz.len() / 3;
    if n > limits.max_points {
        return Err(PointCloudError::TooManyPoints { count: n as u64, limit: limits.max_points });
    }
    let rgb = match colors {
        None => None,
        Some(c) => {
            let len = match c {
                Colors::Float(v) => v.len(),
                Colors::Bytes(v) => v.len(),
            };
            if len != xyz.len() {
                return Err(PointCloudError::InvalidArrays(format!(
                    "{len} colour values for {n} points (expected {})",
                    xyz.len()
                )));
            }
            Some(match c {
                Colors::Float(v) => v.to_vec(),
                Colors::Bytes(v) => v.iter().map(|&b| byte_color(b)).collect(),
            })
        }
    };
    Ok(Cloud { xyz: xyz.to_vec(), rgb })
}

/// A 0-255 colour channel in [0, 1] (`np.float32(v) / np.float32(255)`).
pub(crate) fn byte_color(v: u8) -> f32 {
    BYTE_COLORS[usize::from(v)]
}

/// `v / 255` for every byte, divided once (a multiplication by 1/255 would round differently).
static BYTE_COLORS: [f32; 256] = {
    let mut t = [0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as f32 / 255.0;
        i += 1;
    }
    t
};

/// Text and NPY colour columns carry no type: values above 1 anywhere mean the 0-255 convention,
/// so all are divided by 255; otherwise they are used as they are.
pub(crate) fn untyped_colors(mut rgb: Vec<f32>) -> Vec<f32> {
    if rgb.iter().any(|v| *v > 1.0) {
        for v in &mut rgb {
            *v /= 255.0;
        }
    }
    rgb
}

/// Fails when `count` points exceed the limit.
pub(crate) fn check_points(count: u64, limits: &PointCloudLimits) -> Result<(), PointCloudError> {
    if count > limits.max_points as u64 {
        Err(PointCloudError::TooManyPoints { count, limit: limits.max_points })
    } else {
        Ok(())
    }
}

/// Parses a text number the way numpy does for float32 (f64 first, then rounded).
pub(crate) fn text_f32(token: &str) -> Option<f32> {
    token.parse::<f64>().ok().map(|v| v as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(Format::sniff(b"ply\nformat ascii 1.0\n").unwrap(), Format::Ply);
        assert_eq!(Format::sniff(b"\x93NUMPY\x01\x00").unwrap(), Format::Npy);
        assert_eq!(Format::sniff(b"# .PCD v0.7\nVERSION 0.7").unwrap(), Format::Pcd);
        assert_eq!(Format::sniff(b"# made by hand\nv 1 2 3\n").unwrap(), Format::Obj);
        assert_eq!(Format::sniff(b"x,y,z\n1,2,3\n").unwrap(), Format::Text);
        assert_eq!(Format::sniff(b"-1.5 2 3\n").unwrap(), Format::Text);
        assert!(matches!(Format::sniff(b"\x00\x01\x02garbage"), Err(PointCloudError::UnknownFormat)));
        assert!(matches!(Format::from_hint("las"), Err(PointCloudError::UnknownHint(_))));
        assert_eq!(Format::from_hint(".PTS").unwrap(), Format::Text);
    }

    #[test]
    fn arrays_are_checked() {
        let limits = PointCloudLimits { max_bytes: 1 << 20, max_points: 2 };
        assert!(matches!(from_arrays(&[0.0; 4], None, &limits), Err(PointCloudError::InvalidArrays(_))));
        assert!(matches!(
            from_arrays(&[0.0; 9], None, &limits),
            Err(PointCloudError::TooManyPoints { count: 3, limit: 2 })
        ));
        assert!(matches!(
            from_arrays(&[0.0; 6], Some(Colors::Bytes(&[0; 3])), &limits),
            Err(PointCloudError::InvalidArrays(_))
        ));
        let c = from_arrays(&[0.0; 3], Some(Colors::Bytes(&[0, 51, 255])), &limits).unwrap();
        assert_eq!(c.rgb, Some(vec![0.0, 0.2, 1.0]));
    }
}
