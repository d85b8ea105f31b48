//! Modality preprocessing: turning client payloads into the dense tensors each tower takes.
//!
//! One submodule per modality; each exposes a preprocessor built from its manifest section that
//! writes one item straight into its slot of a batch tensor.

pub mod audio;
pub mod image;
pub mod point_cloud;
pub mod text;

/// The kinds of input bindery knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Modality {
    /// UTF-8 text.
    Text,
    /// Encoded still image.
    Image,
    /// Encoded audio file.
    Audio,
    /// 3D point cloud.
    PointCloud,
    /// Depth map.
    Depth,
    /// Thermal image.
    Thermal,
    /// Inertial measurement unit series.
    Imu,
}

impl Modality {
    /// Lower-case name used in messages, metrics and the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Image => "image",
            Modality::Audio => "audio",
            Modality::PointCloud => "point_cloud",
            Modality::Depth => "depth",
            Modality::Thermal => "thermal",
            Modality::Imu => "imu",
        }
    }
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
