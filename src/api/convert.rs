//! Protobuf messages to engine types and back.

use super::pb;
use crate::engine::{EngineError, Item};
use crate::modality;

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
