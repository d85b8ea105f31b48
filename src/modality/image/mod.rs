//! Images: decode, convert to RGB like PIL, resize like PIL, center crop like torchvision,
//! normalise into a CHW f32 slot.
//! CONTRACT STUB: implementation pending.

use crate::model::manifest::ImagePreprocess;

/// Size limits checked before any expensive decoding.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    /// Largest encoded payload accepted, in bytes.
    pub max_bytes: usize,
    /// Largest decoded width * height accepted (decompression-bomb guard).
    pub max_pixels: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_bytes: 32 << 20,
            max_pixels: 64_000_000,
        }
    }
}

/// Why an image input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Zero-length payload.
    #[error("image is empty (0 bytes)")]
    Empty,
    /// Payload larger than the configured byte limit.
    #[error("image is {size} bytes, more than the limit of {limit} bytes")]
    TooManyBytes {
        /// Payload size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Declared dimensions exceed the pixel limit.
    #[error("image is {width}x{height} = {pixels} pixels, more than the limit of {limit} pixels")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// width * height.
        pixels: u64,
        /// Configured limit.
        limit: u64,
    },
    /// Bytes are not an image in a supported format, or are corrupt.
    #[error("cannot decode image: {0}")]
    Decode(String),
}

/// Prepares encoded images for the vision tower.
pub struct ImagePreprocessor {
    spec: ImagePreprocess,
    limits: ImageLimits,
}

impl ImagePreprocessor {
    /// Builds a preprocessor from the manifest section and the server's limits.
    pub fn new(spec: &ImagePreprocess, limits: ImageLimits) -> Self {
        Self {
            spec: spec.clone(),
            limits,
        }
    }

    /// Number of f32 values one image occupies in the batch tensor (3 * crop * crop).
    pub fn tensor_len(&self) -> usize {
        3 * (self.spec.crop as usize) * (self.spec.crop as usize)
    }

    /// Decodes `bytes` and writes the normalised CHW tensor into `out` (length `tensor_len()`).
    pub fn preprocess_into(&self, bytes: &[u8], out: &mut [f32]) -> Result<(), ImageError> {
        let _ = (bytes, out, &self.limits);
        Err(ImageError::Decode("not implemented".into()))
    }
}
