//! Protobuf messages to engine types and back.

use super::pb;
use crate::engine::{EngineError, Item};
use crate::modality;
use crate::service::compact::Encoding;

/// Converts request inputs, giving unnamed inputs their position (`#0`, `#1`, ...) as id.
pub fn items(inputs: Vec<pb::Input>) -> Result<Vec<Item>, EngineError> {
    inputs
        .into_iter()
        .enumerate()
        .map(|(position, input)| {
            let id = if input.id.is_empty() { format!("#{position}") } else { input.id };
            match input.payload {
                Some(payload) => Ok(Item { id, payload: modality::payload_from_proto(payload) }),
                None => Err(EngineError::MissingPayload { id }),
            }
        })
        .collect()
}

/// The encoding of an `EmbedRequest`; an unknown value is named.
pub fn encoding(value: i32) -> Result<Encoding, EngineError> {
    Ok(match pb::Encoding::try_from(value) {
        Ok(pb::Encoding::Float32) => Encoding::Float32,
        Ok(pb::Encoding::Float16) => Encoding::Float16,
        Ok(pb::Encoding::Bfloat16) => Encoding::Bfloat16,
        Ok(pb::Encoding::Int8) => Encoding::Int8,
        Ok(pb::Encoding::Binary) => Encoding::Binary,
        Err(_) => return Err(EngineError::InvalidRequest(format!("unknown encoding {value}"))),
    })
}

/// The protobuf value of an encoding.
pub fn encoding_to_pb(encoding: Encoding) -> pb::Encoding {
    match encoding {
        Encoding::Float32 => pb::Encoding::Float32,
        Encoding::Float16 => pb::Encoding::Float16,
        Encoding::Bfloat16 => pb::Encoding::Bfloat16,
        Encoding::Int8 => pb::Encoding::Int8,
        Encoding::Binary => pb::Encoding::Binary,
    }
}
