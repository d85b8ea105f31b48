//! Protobuf messages to engine types and back.

use super::pb;
use crate::engine::{EngineError, Item};
use crate::modality;
use crate::modality::text::{self, OverContext};
use crate::service::compact::Encoding;

/// Converts request inputs, giving unnamed inputs their position (`#0`, `#1`, ...) as id; texts
/// longer than the context are truncated.
pub fn items(inputs: Vec<pb::Input>) -> Result<Vec<Item>, EngineError> {
    items_with(inputs, OverContext::Truncate)
}

/// [`items`], with texts longer than the context handled as `over_context` says.
pub fn items_with(inputs: Vec<pb::Input>, over_context: OverContext) -> Result<Vec<Item>, EngineError> {
    inputs
        .into_iter()
        .enumerate()
        .map(|(position, input)| {
            let id = if input.id.is_empty() { format!("#{position}") } else { input.id };
            match input.payload {
                Some(pb::input::Payload::Text(text)) if over_context == OverContext::Refuse => {
                    Ok(Item { id, payload: text::payload_refusing_over_context(text) })
                }
                Some(payload) => match modality::payload_from_proto(payload) {
                    Some(payload) => Ok(Item { id, payload }),
                    // The edge fetches every URL it accepts before converting.
                    None => Err(EngineError::InvalidRequest(format!(
                        "input {id}: media_url is not accepted by this call"
                    ))),
                },
                None => Err(EngineError::MissingPayload { id }),
            }
        })
        .collect()
}

/// The text truncation policy of an `EmbedRequest`; an unknown value is named.
pub fn over_context(value: i32) -> Result<OverContext, EngineError> {
    match pb::TextTruncation::try_from(value) {
        Ok(pb::TextTruncation::Truncate) => Ok(OverContext::Truncate),
        Ok(pb::TextTruncation::Error) => Ok(OverContext::Refuse),
        Err(_) => Err(EngineError::InvalidRequest(format!("unknown text_truncation {value}"))),
    }
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
