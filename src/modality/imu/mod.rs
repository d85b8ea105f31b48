//! Inertial measurement series (accelerometer and gyroscope): read, put in the model's channel
//! order, resampled to the model's rate when the request names another, then cut or zero-padded
//! to the tower's length, into a `[channels, samples]` f32 slot.
//!
//! ImageBind ships no IMU loader. The contract comes from the tower (`[B, 6, 2000]`, raw sensor
//! values in 8-sample patches) and from Weaviate's multi2vec-bind container, which reads a CSV
//! with a header row, keeps the first 2000 samples of a longer series and pads a shorter one with
//! zeros at the end. Weaviate turns its `[T, 6]` array into channels with `reshape((6, T))`,
//! which interleaves samples of different channels; bindery transposes instead. Resampling is
//! bindery's own rule (numpy's `interp`, linear, at `k * source_rate / model_rate`), and the
//! reference in `tools/bindery_tools/sensors.py` states it the same way.

mod csv;
mod kind;

use crate::modality::npy::{self, NpyError};

pub use csv::canonical as canonical_channel_name;
pub use kind::{ImuPayload, ImuPreprocess, KIND, payload};

/// Size limits checked before any expensive parsing (the server's `--max-imu-*` flags).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ImuLimits {
    /// Largest IMU file accepted, in bytes.
    #[arg(id = "max_imu_bytes", long = "max-imu-bytes", value_name = "BYTES", default_value_t = ImuLimits::default().max_bytes)]
    pub max_bytes: usize,
    /// Most samples per channel accepted in one series, before resampling.
    #[arg(id = "max_imu_samples", long = "max-imu-samples", value_name = "SAMPLES", default_value_t = ImuLimits::default().max_samples)]
    pub max_samples: usize,
}

impl Default for ImuLimits {
    fn default() -> Self {
        Self { max_bytes: 64 << 20, max_samples: 1_000_000 }
    }
}

/// Why an IMU input cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ImuError {
    /// No values and no file.
    #[error("IMU series is empty: no values and no file")]
    Empty,
    /// The file is larger than the byte limit.
    #[error("IMU file is {size} bytes, more than the limit of {limit} bytes")]
    TooManyBytes {
        /// File size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// More samples per channel than the limit.
    #[error("IMU series has {} samples per channel, more than the limit of {limit}", samples.map_or("more".to_string(), |n| n.to_string()))]
    TooManySamples {
        /// Samples per channel, when known.
        samples: Option<usize>,
        /// Configured limit.
        limit: usize,
    },
    /// The series has no samples.
    #[error("IMU series has no samples")]
    NoSamples,
    /// Packed values or an array with the wrong number of channels.
    #[error("IMU series has {got} channels, the model takes {expected} ({names})")]
    Channels {
        /// Channels sent.
        got: String,
        /// Channels the tower takes.
        expected: usize,
        /// Their names, in order.
        names: String,
    },
    /// Packed values whose count is not a multiple of the channel count.
    #[error("IMU values: {values} values do not divide into {channels} channels")]
    Ragged {
        /// Number of values.
        values: usize,
        /// Declared channels.
        channels: usize,
    },
    /// A value that is NaN or infinite.
    #[error("IMU value at sample {sample} of channel {channel} is not finite ({value})")]
    NotFinite {
        /// Sample index.
        sample: usize,
        /// Channel name.
        channel: String,
        /// The value.
        value: f32,
    },
    /// A CSV file that cannot be read; the message names the line and column.
    #[error("IMU CSV: {0}")]
    Csv(String),
    /// An NPY file that cannot be read.
    #[error("IMU file: {0}")]
    Npy(#[from] NpyError),
    /// A file that is neither CSV nor NPY.
    #[error("IMU file is neither NPY nor CSV text{0}")]
    Format(String),
    /// A sample rate that is not a positive finite number.
    #[error("IMU sample_rate_hz must be positive and finite, got {0}")]
    SampleRate(f32),
    /// The output slot has the wrong length.
    #[error("output slot holds {got} values, the IMU tensor needs {expected}")]
    OutputSize {
        /// `tensor_len()`.
        expected: usize,
        /// Length of the slice passed in.
        got: usize,
    },
}

/// Prepares IMU series for the IMU tower.
pub struct ImuPreprocessor {
    spec: ImuPreprocess,
    limits: ImuLimits,
}

impl ImuPreprocessor {
    /// Builds a preprocessor from the manifest section and the server's limits.
    pub fn new(spec: &ImuPreprocess, limits: ImuLimits) -> Self {
        Self { spec: spec.clone(), limits }
    }

    /// Number of f32 values one series occupies in the batch tensor (channels * samples).
    pub fn tensor_len(&self) -> usize {
        self.spec.channels.len() * self.spec.samples
    }

    /// Reads `imu` and writes the `[channels, samples]` tensor into `out`.
    pub fn preprocess_into(&self, imu: &ImuPayload, out: &mut [f32]) -> Result<(), ImuError> {
        if out.len() != self.tensor_len() {
            return Err(ImuError::OutputSize { expected: self.tensor_len(), got: out.len() });
        }
        let series = self.read(imu)?;
        let series = match imu.sample_rate_hz {
            0.0 => series,
            rate if !rate.is_finite() || rate < 0.0 => return Err(ImuError::SampleRate(rate)),
            rate if rate == self.spec.sample_rate_hz => series,
            rate => series
                .iter()
                .map(|s| resample(s, f64::from(rate), f64::from(self.spec.sample_rate_hz)))
                .collect(),
        };
        // Keep the first `samples`; zero-pad the end of a shorter series.
        let n = self.spec.samples;
        for (row, values) in out.chunks_exact_mut(n).zip(&series) {
            let kept = values.len().min(n);
            row[..kept].copy_from_slice(&values[..kept]);
            row[kept..].fill(0.0);
        }
        Ok(())
    }

    /// The series channel-major, in the model's channel order, every value finite.
    fn read(&self, imu: &ImuPayload) -> Result<Vec<Vec<f32>>, ImuError> {
        let channels = &self.spec.channels;
        let series = if !imu.data.is_empty() {
            if imu.data.len() > self.limits.max_bytes {
                return Err(ImuError::TooManyBytes { size: imu.data.len(), limit: self.limits.max_bytes });
            }
            if npy::is_npy(&imu.data) {
                self.read_npy(&imu.data)?
            } else {
                let text = std::str::from_utf8(&imu.data)
                    .map_err(|e| ImuError::Format(format!(" (byte {} is not UTF-8)", e.valid_up_to())))?;
                csv::parse(text, channels, self.limits.max_samples)?
            }
        } else if !imu.values.is_empty() {
            let count = imu.channels as usize;
            if count != channels.len() {
                return Err(self.channel_error(count.to_string()));
            }
            if !imu.values.len().is_multiple_of(count) {
                return Err(ImuError::Ragged { values: imu.values.len(), channels: count });
            }
            let samples = imu.values.len() / count;
            if samples > self.limits.max_samples {
                return Err(ImuError::TooManySamples {
                    samples: Some(samples),
                    limit: self.limits.max_samples,
                });
            }
            imu.values.chunks_exact(samples).map(<[f32]>::to_vec).collect()
        } else {
            return Err(ImuError::Empty);
        };
        if series.first().is_none_or(Vec::is_empty) {
            return Err(ImuError::NoSamples);
        }
        for (values, channel) in series.iter().zip(channels) {
            if let Some((sample, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(ImuError::NotFinite { sample, channel: channel.clone(), value });
            }
        }
        Ok(series)
    }

    /// An NPY array of shape `[C, T]` (channel-major, the tower's layout; chosen when both axes
    /// equal C) or `[T, C]` (one row per sample, transposed).
    fn read_npy(&self, data: &[u8]) -> Result<Vec<Vec<f32>>, ImuError> {
        let c = self.spec.channels.len();
        let header = npy::NpyHeader::parse(data)?;
        let (channel_major, samples) = match header.shape[..] {
            [rows, t] if rows as usize == c => (true, t as usize),
            [t, cols] if cols as usize == c => (false, t as usize),
            _ => return Err(self.channel_error(format!("shape {}, no axis of", header.shape_text))),
        };
        if samples > self.limits.max_samples {
            return Err(ImuError::TooManySamples { samples: Some(samples), limit: self.limits.max_samples });
        }
        let values = header.values(data)?;
        Ok(if channel_major {
            values.chunks_exact(samples.max(1)).map(<[f32]>::to_vec).collect()
        } else {
            (0..c).map(|ch| values.iter().skip(ch).step_by(c).copied().collect()).collect()
        })
    }

    fn channel_error(&self, got: String) -> ImuError {
        ImuError::Channels { got, expected: self.spec.channels.len(), names: self.spec.channels.join(", ") }
    }
}

/// `values` sampled at `from` Hz, resampled to `to` Hz: numpy's `interp` of the series at
/// `k * from / to` for `k < round_half_even(len * to / from)` (at least one sample), linear
/// between neighbours and holding the last value past the end.
fn resample(values: &[f32], from: f64, to: f64) -> Vec<f32> {
    let n_out = ((values.len() as f64 * to / from).round_ties_even() as usize).max(1);
    let step = from / to;
    let last = values.len() - 1;
    (0..n_out)
        .map(|k| {
            let x = k as f64 * step;
            let j = x.floor() as usize;
            if j >= last {
                return values[last];
            }
            let (y0, y1) = (f64::from(values[j]), f64::from(values[j + 1]));
            if x == j as f64 {
                return values[j];
            }
            ((y1 - y0) * (x - j as f64) + y0) as f32
        })
        .collect()
}

/// Fuzz target body: any bytes as an IMU file with the fixture model's parameters. The output of
/// an accepted input must be finite.
fn fuzz_file(data: &[u8]) {
    let preprocessor = ImuPreprocessor::new(
        &ImuPreprocess::imagebind(),
        ImuLimits { max_bytes: 1 << 20, max_samples: 100_000 },
    );
    let mut out = vec![0f32; preprocessor.tensor_len()];
    let payload = ImuPayload { data: data.to_vec(), ..Default::default() };
    if preprocessor.preprocess_into(&payload, &mut out).is_ok() {
        assert!(out.iter().all(|v| v.is_finite()), "IMU preprocessing produced a non-finite value");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_follows_numpy_interp() {
        // np.interp(np.arange(5) * 0.5, np.arange(3), [0, 2, 4]) -> 0 1 2 3 4; then the end holds.
        assert_eq!(resample(&[0.0, 2.0, 4.0], 100.0, 200.0), vec![0.0, 1.0, 2.0, 3.0, 4.0, 4.0]);
        // Halving the rate keeps every other sample: round(5 * 0.5) = 2 (half to even).
        assert_eq!(resample(&[1.0, 2.0, 3.0, 4.0, 5.0], 200.0, 100.0), vec![1.0, 3.0]);
        assert_eq!(resample(&[7.0], 50.0, 200.0), vec![7.0; 4]);
    }

    #[test]
    fn short_series_are_zero_padded_and_long_ones_keep_their_start() {
        let spec = ImuPreprocess { samples: 4, ..ImuPreprocess::imagebind() };
        let p = ImuPreprocessor::new(&spec, ImuLimits::default());
        let mut out = vec![9.0; 24];
        let short =
            ImuPayload { values: (0..12).map(|v| v as f32).collect(), channels: 6, ..Default::default() };
        p.preprocess_into(&short, &mut out).unwrap();
        assert_eq!(&out[..8], &[0.0, 1.0, 0.0, 0.0, 2.0, 3.0, 0.0, 0.0]);
        let long =
            ImuPayload { values: (0..36).map(|v| v as f32).collect(), channels: 6, ..Default::default() };
        p.preprocess_into(&long, &mut out).unwrap();
        assert_eq!(&out[..8], &[0.0, 1.0, 2.0, 3.0, 6.0, 7.0, 8.0, 9.0]);
    }

    #[test]
    fn npy_of_either_orientation_gives_the_same_series() {
        let spec = ImuPreprocess { samples: 3, ..ImuPreprocess::imagebind() };
        let p = ImuPreprocessor::new(&spec, ImuLimits::default());
        let channel_major: Vec<f32> = (0..18).map(|v| v as f32).collect();
        let sample_major: Vec<f32> = (0..18).map(|i| ((i % 6) * 3 + i / 6) as f32).collect();
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let a = crate::modality::npy::tests::npy("<f4", false, "(6, 3)", &bytes(&channel_major));
        let b = crate::modality::npy::tests::npy("<f4", false, "(3, 6)", &bytes(&sample_major));
        let (mut x, mut y) = (vec![0.0; 18], vec![0.0; 18]);
        p.preprocess_into(&ImuPayload { data: a, ..Default::default() }, &mut x).unwrap();
        p.preprocess_into(&ImuPayload { data: b, ..Default::default() }, &mut y).unwrap();
        assert_eq!(x, channel_major);
        assert_eq!(x, y);
    }
}
