//! OpenAI's `POST /v1/embeddings`, so OpenAI client libraries reach bindery unchanged.
//!
//! `input` is a string, a list of strings, or a list of typed items for the other modalities:
//! `{"type": "image", "data": "<base64> | data:...;base64,... | https://..."}` (Infinity's
//! `"modality"` key is accepted for `"type"`, and `"url"` for a URL in `"data"`). With a
//! top-level `"modality"` (Infinity's form), plain strings are files of that modality. The
//! request becomes one `Embed` call; `usage` counts text tokens and lists truncated inputs.

use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::HttpState;
use super::error::HttpError;
use super::routes::{body_error, json_reply};
use crate::api::pb;
use crate::modality;
use crate::shared::Modality;

/// The request; unknown keys are refused by name, so a typo is not silently ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbeddingsRequest {
    input: Value,
    #[serde(default)]
    model: String,
    /// `float` (the default) or `base64` (little-endian float32 bytes).
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u32>,
    /// OpenAI's end-user id; accepted and not used.
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
    /// The modality of plain-string inputs (Infinity's form); default text.
    #[serde(default)]
    modality: Option<String>,
    /// Texts longer than the model's context: cut (true, the default) or refused (false).
    #[serde(default)]
    truncate: Option<bool>,
}

/// `POST /v1/embeddings`.
pub async fn embeddings(State(state): State<HttpState>, request: Request) -> Result<Response, HttpError> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|e| body_error(&e, state.max_body_bytes))?;
    let request: EmbeddingsRequest = serde_json::from_slice(&body)
        .map_err(|e| HttpError::invalid(format!("invalid embeddings request: {e}")))?;
    let base64_output = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(HttpError::invalid(format!(
                "encoding_format {other:?} is not supported: use \"float\" or \"base64\""
            )));
        }
    };
    let default_modality = match request.modality.as_deref() {
        None => Modality::Text,
        Some(name) => parse_modality(name, "modality")?,
    };
    let inputs = inputs(request.input, default_modality)?;
    let embed = pb::EmbedRequest {
        model: request.model,
        inputs,
        dimensions: request.dimensions,
        text_truncation: if request.truncate == Some(false) {
            pb::TextTruncation::Error as i32
        } else {
            pb::TextTruncation::Truncate as i32
        },
        ..Default::default()
    };
    let reply = state
        .gateway
        .call::<pb::EmbedRequest, pb::EmbedResponse>("/bindery.v1.Embedder/Embed", &embed, &parts)
        .await?;
    let response = reply.message;
    let mut usage = Usage::default();
    let data = response
        .embeddings
        .into_iter()
        .enumerate()
        .map(|(index, e)| {
            usage.prompt_tokens += u64::from(e.tokens);
            if e.truncated {
                usage.truncated_inputs.push(index);
            }
            let embedding = if base64_output {
                let bytes: Vec<u8> = e.vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                EmbeddingValue::Base64(BASE64.encode(bytes))
            } else {
                EmbeddingValue::Floats(e.vector)
            };
            EmbeddingData { object: "embedding", index, embedding }
        })
        .collect();
    usage.total_tokens = usage.prompt_tokens;
    let body = EmbeddingsResponse { object: "list", data, model: response.model, usage };
    Ok(json_reply(&body, reply.headers))
}

/// OpenAI's reply, fields in OpenAI's order; floats stay `f32`, so they print at their shortest.
#[derive(Serialize)]
struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<EmbeddingData>,
    model: String,
    usage: Usage,
}

#[derive(Serialize)]
struct EmbeddingData {
    object: &'static str,
    index: usize,
    embedding: EmbeddingValue,
}

#[derive(Serialize)]
#[serde(untagged)]
enum EmbeddingValue {
    Floats(Vec<f32>),
    /// Little-endian float32 bytes, base64.
    Base64(String),
}

/// Text tokens (start and end tokens included, before truncation) and the inputs cut to the
/// model's context.
#[derive(Serialize, Default)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
    truncated_inputs: Vec<usize>,
}

fn parse_modality(name: &str, field: &str) -> Result<Modality, HttpError> {
    name.parse::<Modality>().map_err(|_| {
        let known: Vec<&str> = Modality::ALL.iter().map(|m| m.as_str()).collect();
        HttpError::invalid(format!("{field} {name:?} is not a modality: use one of {}", known.join(", ")))
    })
}

/// The `Embed` inputs of `input`.
fn inputs(input: Value, default_modality: Modality) -> Result<Vec<pb::Input>, HttpError> {
    let items = match input {
        Value::String(s) => vec![Value::String(s)],
        Value::Array(items) => items,
        other => {
            return Err(HttpError::invalid(format!(
                "input must be a string or a list, not {}",
                json_kind(&other)
            )));
        }
    };
    if items.is_empty() {
        return Err(HttpError::invalid("input is an empty list"));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let payload = match item {
                Value::String(s) if default_modality == Modality::Text => pb::input::Payload::Text(s),
                Value::String(s) => file_payload(default_modality, &s, "")
                    .map_err(|e| HttpError::invalid(format!("input[{i}]: {e}")))?,
                Value::Object(object) => typed_item(object, default_modality)
                    .map_err(|e| HttpError::invalid(format!("input[{i}]: {e}")))?,
                Value::Number(_) | Value::Array(_) => {
                    return Err(HttpError::invalid(format!(
                        "input[{i}]: token ids are not accepted; send the text itself"
                    )));
                }
                other => {
                    return Err(HttpError::invalid(format!(
                        "input[{i}] must be a string or an object, not {}",
                        json_kind(&other)
                    )));
                }
            };
            Ok(pb::Input { id: String::new(), payload: Some(payload) })
        })
        .collect()
}

/// One typed item: `{"type"|"modality": ..., "data"|"url"|"text": ..., "format_hint": ...}`.
fn typed_item(
    mut object: serde_json::Map<String, Value>,
    default_modality: Modality,
) -> Result<pb::input::Payload, String> {
    let mut take_string = |key: &str| -> Result<Option<String>, String> {
        match object.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("{key} must be a string, not {}", json_kind(&other))),
        }
    };
    let declared = match (take_string("type")?, take_string("modality")?) {
        (Some(a), Some(b)) if a != b => return Err(format!("type {a:?} and modality {b:?} disagree")),
        (Some(name), _) | (None, Some(name)) => {
            Some(name.parse::<Modality>().map_err(|_| format!("{name:?} is not a modality"))?)
        }
        (None, None) => None,
    };
    let modality = declared.unwrap_or(default_modality);
    let hint = take_string("format_hint")?.unwrap_or_default();
    let (data, url, text) = (take_string("data")?, take_string("url")?, take_string("text")?);
    if let Some(key) = object.keys().next() {
        return Err(format!("unknown key {key:?} (known: type, modality, data, url, text, format_hint)"));
    }
    match (modality, data, url, text) {
        (Modality::Text, Some(t), None, None) | (Modality::Text, None, None, Some(t)) => {
            Ok(pb::input::Payload::Text(t))
        }
        (_, None, Some(url), None) => media_url(modality, url, hint),
        (m, Some(data), None, None) if m != Modality::Text => file_payload(m, &data, &hint),
        _ => Err(format!(
            "a {modality} item needs exactly one of {}",
            if modality == Modality::Text { "text or data" } else { "data or url" }
        )),
    }
}

/// A file of `modality` given as base64, a `data:` URI or an http(s) URL.
fn file_payload(modality: Modality, data: &str, hint: &str) -> Result<pb::input::Payload, String> {
    let lower = data.get(..8).unwrap_or(data).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return media_url(modality, data.to_string(), hint.to_string());
    }
    let (bytes, hint) = if let Some(uri) = data.strip_prefix("data:") {
        let (meta, encoded) = uri.split_once(',').ok_or("a data: URI has no ',' before its data")?;
        let media_type = meta
            .strip_suffix(";base64")
            .ok_or("only base64 data: URIs are accepted (data:<type>;base64,<data>)")?;
        let subtype = media_type.split_once('/').map_or("", |(_, s)| s);
        let hint =
            if hint.is_empty() { subtype.trim_start_matches("x-").to_ascii_lowercase() } else { hint.into() };
        (BASE64.decode(encoded).map_err(|e| format!("data: URI is not valid base64: {e}"))?, hint)
    } else {
        (
            BASE64
                .decode(data)
                .map_err(|e| format!("data is not base64, a data: URI or an http(s) URL: {e}"))?,
            hint.into(),
        )
    };
    modality::input_from_bytes(modality, bytes, &hint)
}

fn media_url(modality: Modality, url: String, format_hint: String) -> Result<pb::input::Payload, String> {
    if modality == Modality::Text {
        return Err("text is sent as a string, not by URL".into());
    }
    Ok(pb::input::Payload::MediaUrl(pb::MediaUrl { url, modality: modality.to_pb() as i32, format_hint }))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}
