//! Fixture files under `tests/fixtures/` and readers for what the reference tools in `tools/`
//! store there: JSON case lists and goldens, and raw little-endian arrays (numpy `tofile`).

use std::path::PathBuf;

use serde::de::DeserializeOwned;

use super::repo;

/// A folder under `tests/fixtures/`; [`FIXTURES`] is `tests/fixtures/` itself.
#[derive(Debug, Clone, Copy)]
pub struct Fixtures(pub &'static str);

/// `tests/fixtures/`.
pub const FIXTURES: Fixtures = Fixtures("");

impl Fixtures {
    /// The path of `relative` in this folder.
    pub fn path(self, relative: &str) -> PathBuf {
        repo().join("tests/fixtures").join(self.0).join(relative)
    }

    /// The bytes of a file.
    pub fn read(self, relative: &str) -> Vec<u8> {
        let path = self.path(relative);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A JSON file, parsed (into `serde_json::Value` or a typed case list).
    pub fn json<T: DeserializeOwned>(self, relative: &str) -> T {
        let path = self.path(relative);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// A file of little-endian f32 values.
    pub fn f32s(self, relative: &str) -> Vec<f32> {
        let bytes = self.read(relative);
        assert_eq!(bytes.len() % 4, 0, "{relative}: not a whole number of f32 values");
        bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    /// A file of little-endian u16 values.
    pub fn u16s(self, relative: &str) -> Vec<u16> {
        let bytes = self.read(relative);
        assert_eq!(bytes.len() % 2, 0, "{relative}: not a whole number of u16 values");
        bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
    }
}

/// Largest absolute difference between two tensors of the same length.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "tensor lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// One text golden (`text/cases.json`, and each model family's own): the reference's token ids
/// and embedding of `text`.
#[derive(serde::Deserialize)]
pub struct TextCase {
    pub id: String,
    pub text: String,
    pub tokens: Vec<i64>,
    pub embedding: Vec<f32>,
}

/// One image golden: the reference embedding of the image `file`.
#[derive(serde::Deserialize)]
pub struct ImageCase {
    pub id: String,
    pub file: String,
    pub embedding: Vec<f32>,
}

/// One front-end tensor golden: every `stride`-th value of the reference's tensor for `file`.
#[derive(serde::Deserialize)]
pub struct TensorGolden {
    pub id: String,
    /// The front end that made it, where one file holds several.
    #[serde(default)]
    pub front_end: String,
    pub file: String,
    /// Depth: the `max_depth_m` the reference ran with.
    #[serde(default)]
    pub max_depth_m: Option<f32>,
    /// Video: a window of the file, in seconds (segment mode).
    #[serde(default)]
    #[cfg_attr(not(feature = "video"), expect(dead_code, reason = "only the video tests read it"))]
    pub window: Option<(f64, f64)>,
    pub shape: Vec<usize>,
    pub stride: usize,
    pub values: Vec<f32>,
}
