//! Request limits enforced before any expensive work.

use crate::modality::audio::AudioLimits;
use crate::modality::image::ImageLimits;
use crate::modality::point_cloud::PointCloudLimits;

/// Per-request and per-input limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most inputs in one request.
    pub max_items_per_request: usize,
    /// Longest text accepted, in UTF-8 bytes.
    pub max_text_bytes: usize,
    /// Image limits.
    pub image: ImageLimits,
    /// Audio limits.
    pub audio: AudioLimits,
    /// Point-cloud limits.
    pub point_cloud: PointCloudLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_items_per_request: 256,
            max_text_bytes: 64 * 1024,
            image: ImageLimits::default(),
            audio: AudioLimits::default(),
            point_cloud: PointCloudLimits::default(),
        }
    }
}
