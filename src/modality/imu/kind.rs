//! IMU series as a bindery modality: the manifest section, the payload and the pipeline.

use serde::Deserialize;

use super::{ImuLimits, ImuPreprocessor};
use crate::modality::{
    Argument, BuildError, FillOne, InputLimits, Kind, OneTensor, Payload, PayloadValue, Pipeline,
    PreprocessError, Section, limits_of, parse_section,
};
use crate::shared::{Modality, pb};

/// Registration of IMU series.
pub const KIND: Kind = Kind {
    modality: Modality::Imu,
    check,
    build,
    from_proto,
    extensions: EXTENSIONS,
    inputs_from_file,
    limits: limits_of::<ImuLimits>(),
    argument: Argument::Files,
    examples: Some(examples),
    fuzz: &[("imu", super::fuzz_file as fn(&[u8]))],
};

/// IMU preprocessing (`[imu.preprocess]`): the tower's channels and length, and the sample rate
/// its series are taken at.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImuPreprocess {
    /// Channel names in the tower's order; CSV columns are matched to them by name.
    pub channels: Vec<String>,
    /// Samples per channel the tower takes (longer series keep their start, shorter ones are
    /// zero-padded at the end).
    pub samples: usize,
    /// The model's sample rate; a request at another rate is resampled to it.
    pub sample_rate_hz: f32,
}

impl ImuPreprocess {
    /// bindery's ImageBind values: accelerometer then gyroscope (Ego4D's order, ImageBind's IMU
    /// training data), 2000 samples (the tower's input), 200 Hz (a manifest value: no source
    /// fixes the rate in code).
    pub fn imagebind() -> Self {
        ImuPreprocess {
            channels: ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"].map(String::from).to_vec(),
            samples: 2000,
            sample_rate_hz: 200.0,
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.channels.is_empty() || self.samples == 0 {
            return Err("channels and samples must not be empty".into());
        }
        let mut names: Vec<String> = self.channels.iter().map(|c| super::canonical_channel_name(c)).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Err(format!("channels name the same channel twice: {}", self.channels.join(", ")));
        }
        if !self.sample_rate_hz.is_finite() || self.sample_rate_hz <= 0.0 {
            return Err(format!("sample_rate_hz must be positive, got {}", self.sample_rate_hz));
        }
        Ok(())
    }
}

/// An IMU series as the request carried it: packed values or a file.
#[derive(Debug, Clone, Default)]
pub struct ImuPayload {
    /// Channel-major values (used when `data` is empty).
    pub values: Vec<f32>,
    /// Number of channels in `values`.
    pub channels: u32,
    /// A CSV or NPY file.
    pub data: Vec<u8>,
    /// The series' sample rate (0: the model's).
    pub sample_rate_hz: f32,
}

impl PayloadValue for ImuPayload {
    fn key_parts(&self, part: &mut dyn FnMut(&[u8])) {
        let values: Vec<u8> = self.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        part(&values);
        part(&self.channels.to_le_bytes());
        part(&self.data);
        part(&self.sample_rate_hz.to_le_bytes());
    }
}

/// An IMU payload.
pub fn payload(imu: ImuPayload) -> Payload {
    Payload::new(Modality::Imu, imu)
}

fn check(section: &Section<'_>) -> Result<(), String> {
    parse_section::<ImuPreprocess>(section.preprocess)?.check()
}

fn build(section: &Section<'_>, limits: &InputLimits) -> Result<Box<dyn Pipeline>, BuildError> {
    let spec: ImuPreprocess = parse_section(section.preprocess)?;
    spec.check()?;
    let shape = vec![spec.channels.len(), spec.samples];
    Ok(Box::new(OneTensor::new(section.input, shape, ImuPreprocessor::new(&spec, limits.get::<ImuLimits>()))))
}

/// CSV is also a point-cloud extension, and point clouds are registered first, so wherever
/// bindery picks the modality by extension a CSV is a point cloud: IMU files are named with
/// `--imu`.
const EXTENSIONS: &[&str] = &["csv", "npy"];

fn inputs_from_file(bytes: Vec<u8>, extension: &str) -> Vec<pb::input::Payload> {
    vec![pb::input::Payload::Imu(pb::Imu {
        data: bytes,
        format_hint: extension.to_string(),
        ..Default::default()
    })]
}

fn from_proto(input: pb::input::Payload) -> Result<Payload, pb::input::Payload> {
    match input {
        pb::input::Payload::Imu(i) => Ok(payload(ImuPayload {
            values: i.values,
            channels: i.channels,
            data: i.data,
            sample_rate_hz: i.sample_rate_hz,
        })),
        other => Err(other),
    }
}

/// Eight 10-second walks at 200 Hz as packed values: gravity on z, a step rhythm whose pace the
/// seed varies, and a slow turn on the gyroscope.
fn examples(seed: u64) -> Vec<pb::input::Payload> {
    (0..8u64)
        .map(|i| {
            let pace = 1.5 + ((seed.wrapping_add(i) % 7) as f32) * 0.1;
            let samples = 2000;
            let mut values = Vec::with_capacity(6 * samples);
            for channel in 0..6 {
                for t in 0..samples {
                    let s = t as f32 / 200.0;
                    let step = (std::f32::consts::TAU * pace * s).sin();
                    values.push(match channel {
                        0 => 0.3 * step,
                        1 => 0.1 * (std::f32::consts::PI * pace * s).cos(),
                        2 => 9.81 + 1.2 * step,
                        3 => 0.05 * step,
                        4 => 0.02,
                        _ => 0.3 * (0.1 * s).sin(),
                    });
                }
            }
            pb::input::Payload::Imu(pb::Imu {
                values,
                channels: 6,
                sample_rate_hz: 200.0,
                ..Default::default()
            })
        })
        .collect()
}

impl FillOne for ImuPreprocessor {
    type Value = ImuPayload;

    fn fill(&self, value: &ImuPayload, out: &mut [f32]) -> Result<(), PreprocessError> {
        self.preprocess_into(value, out).map_err(PreprocessError::input)
    }
}
