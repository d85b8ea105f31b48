//! Protobuf messages to engine types and back.

use super::pb;
use crate::engine::{EngineError, Item, Payload, PointCloudPayload};
use crate::modality::Modality;

/// Converts request inputs, giving unnamed inputs their position (`#0`, `#1`, ...) as id.
pub fn items(inputs: Vec<pb::Input>) -> Result<Vec<Item>, EngineError> {
    inputs
        .into_iter()
        .enumerate()
        .map(|(position, input)| {
            let id = if input.id.is_empty() { format!("#{position}") } else { input.id };
            let payload = match input.payload {
                Some(pb::input::Payload::Text(t)) => Payload::Text(t),
                Some(pb::input::Payload::Image(b)) => Payload::Image(b),
                Some(pb::input::Payload::Audio(a)) => {
                    Payload::Audio { data: a.data, format_hint: a.format_hint }
                }
                Some(pb::input::Payload::PointCloud(p)) => Payload::PointCloud(PointCloudPayload {
                    data: p.data,
                    format_hint: p.format_hint,
                    xyz: p.xyz,
                    rgb: p.rgb,
                    rgb_u8: p.rgb_u8,
                }),
                Some(pb::input::Payload::Depth(_)) => Payload::Depth,
                Some(pb::input::Payload::Thermal(_)) => Payload::Thermal,
                Some(pb::input::Payload::Imu(_)) => Payload::Imu,
                None => return Err(EngineError::MissingPayload { id }),
            };
            Ok(Item { id, payload })
        })
        .collect()
}

/// The protobuf enum value of a modality.
pub fn modality(m: Modality) -> pb::Modality {
    match m {
        Modality::Text => pb::Modality::Text,
        Modality::Image => pb::Modality::Image,
        Modality::Audio => pb::Modality::Audio,
        Modality::PointCloud => pb::Modality::PointCloud,
        Modality::Depth => pb::Modality::Depth,
        Modality::Thermal => pb::Modality::Thermal,
        Modality::Imu => pb::Modality::Imu,
    }
}
