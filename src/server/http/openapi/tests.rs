//! Derives the OpenAPI document from the descriptor set and the routes, and compares it with the
//! committed one.

use std::collections::BTreeMap;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};
use serde_json::{Value, json};

use super::DOCUMENT;
use crate::api::pb::FILE_DESCRIPTOR_SET;
use crate::server::http::routes::RPC_ROUTES;

const PACKAGE: &str = ".bindery.v1.";

/// Comments of the proto file, by descriptor path.
struct Comments(BTreeMap<Vec<i32>, String>);

impl Comments {
    fn of(file: &FileDescriptorProto) -> Self {
        let mut map = BTreeMap::new();
        for location in file.source_code_info.iter().flat_map(|s| &s.location) {
            if let Some(text) = &location.leading_comments {
                let text: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
                map.insert(location.path.clone(), text.join(" "));
            }
        }
        Self(map)
    }

    fn get(&self, path: &[i32]) -> Option<String> {
        self.0.get(path).cloned()
    }
}

fn with_description(mut schema: Value, description: Option<String>) -> Value {
    if let (Some(d), Value::Object(o)) = (description, &mut schema) {
        o.insert("description".into(), Value::String(d));
    }
    schema
}

fn reference(type_name: &str) -> Value {
    let name = type_name.trim_start_matches(PACKAGE);
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// The canonical proto3 JSON schema of one field value.
fn scalar(field: &prost_types::FieldDescriptorProto) -> Value {
    match field.r#type() {
        Type::String => json!({"type": "string"}),
        Type::Bytes => json!({"type": "string", "format": "byte", "contentEncoding": "base64"}),
        Type::Bool => json!({"type": "boolean"}),
        Type::Float => json!({"type": "number", "format": "float"}),
        Type::Double => json!({"type": "number", "format": "double"}),
        Type::Int32 | Type::Sint32 | Type::Sfixed32 => json!({"type": "integer", "format": "int32"}),
        Type::Uint32 | Type::Fixed32 => json!({"type": "integer", "format": "int32", "minimum": 0}),
        // Canonical JSON writes 64-bit integers as strings (and reads numbers too).
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => json!({"type": "string", "format": "int64"}),
        Type::Uint64 | Type::Fixed64 => json!({"type": "string", "format": "uint64"}),
        Type::Enum | Type::Message | Type::Group => reference(field.type_name()),
    }
}

fn message_schema(
    message: &DescriptorProto,
    path: &[i32],
    comments: &Comments,
    schemas: &mut BTreeMap<String, Value>,
    prefix: &str,
) {
    let maps: BTreeMap<String, &DescriptorProto> = message
        .nested_type
        .iter()
        .filter(|n| n.options.as_ref().is_some_and(|o| o.map_entry()))
        .map(|n| (format!("{PACKAGE}{prefix}{}.{}", message.name(), n.name()), n))
        .collect();
    let mut properties = serde_json::Map::new();
    for (i, field) in message.field.iter().enumerate() {
        let mut field_path = path.to_vec();
        field_path.extend([2, i as i32]);
        let value = if let Some(entry) = maps.get(field.type_name()) {
            json!({"type": "object", "additionalProperties": scalar(&entry.field[1])})
        } else if field.label() == Label::Repeated {
            json!({"type": "array", "items": scalar(field)})
        } else {
            scalar(field)
        };
        let mut description = comments.get(&field_path);
        if let Some(index) = field.oneof_index.filter(|_| !field.proto3_optional()) {
            let oneof = message.oneof_decl[index as usize].name();
            let note = format!("One of `{oneof}`.");
            description = Some(description.map_or(note.clone(), |d| format!("{d} {note}")));
        }
        properties.insert(field.json_name().to_string(), with_description(value, description));
    }
    let schema = json!({"type": "object", "properties": properties, "additionalProperties": false});
    schemas.insert(format!("{prefix}{}", message.name()), with_description(schema, comments.get(path)));
}

fn schemas(file: &FileDescriptorProto, comments: &Comments, schemas: &mut BTreeMap<String, Value>) {
    for (i, message) in file.message_type.iter().enumerate() {
        message_schema(message, &[4, i as i32], comments, schemas, "");
    }
    for (i, enumeration) in file.enum_type.iter().enumerate() {
        let names: Vec<&str> = enumeration.value.iter().map(|v| v.name()).collect();
        let schema = json!({"type": "string", "enum": names});
        schemas
            .insert(enumeration.name().to_string(), with_description(schema, comments.get(&[5, i as i32])));
    }
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "description": "A refused call: the gRPC code's HTTP status (400 INVALID_ARGUMENT, 401, 403, 404, 409, 429 with Retry-After, 501, 503, 504, 500), and the same message as on gRPC.",
        "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string", "description": "gRPC status code name, e.g. INVALID_ARGUMENT."},
            "message": {"type": "string"},
            "type": {"type": "string", "description": "OpenAI's error type: invalid_request_error, authentication_error, permission_error, not_found_error, rate_limit_error or server_error."}
        }}}
    })
}

fn openai_paths() -> Value {
    json!({"post": {
        "operationId": "openai.embeddings",
        "summary": "OpenAI-compatible embeddings. `input` is a string, a list of strings, or a list of typed items {\"type\" (or \"modality\"): \"image\" | \"audio\" | \"point_cloud\" | \"depth\" | \"thermal\" | \"imu\" | \"text\", \"data\": base64 | data: URI | http(s) URL, \"url\": http(s) URL, \"text\": string, \"format_hint\": string}. A top-level `modality` makes plain strings files of that modality.",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["input"],
            "additionalProperties": false,
            "properties": {
                "input": {"oneOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "object"}]}}
                ]},
                "model": {"type": "string", "description": "Model name; empty or absent: the server's default."},
                "encoding_format": {"type": "string", "enum": ["float", "base64"], "description": "base64: little-endian float32 bytes."},
                "dimensions": {"type": "integer", "minimum": 1, "description": "Keep the first values, renormalised."},
                "user": {"type": "string", "description": "Accepted, not used."},
                "modality": {"type": "string", "description": "Modality of plain-string inputs (default text)."},
                "truncate": {"type": "boolean", "description": "Texts over the model's context: cut (true, default) or refused with 400 (false)."}
            }
        }}}},
        "responses": {
            "200": {"description": "Embeddings in input order.", "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {
                    "object": {"const": "list"},
                    "data": {"type": "array", "items": {"type": "object", "properties": {
                        "object": {"const": "embedding"},
                        "index": {"type": "integer"},
                        "embedding": {"oneOf": [{"type": "array", "items": {"type": "number"}}, {"type": "string"}]}
                    }}},
                    "model": {"type": "string"},
                    "usage": {"type": "object", "properties": {
                        "prompt_tokens": {"type": "integer", "description": "Text tokens of the inputs, start and end tokens included, before truncation."},
                        "total_tokens": {"type": "integer"},
                        "truncated_inputs": {"type": "array", "items": {"type": "integer"}, "description": "Indexes of the texts that were cut to the model's context."}
                    }}
                }
            }}}},
            "default": {"description": "Refused.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HttpError"}}}}
        }
    }})
}

fn plain_text(summary: &str) -> Value {
    json!({"get": {
        "summary": summary,
        "responses": {
            "200": {"description": "OK.", "content": {"text/plain": {"schema": {"type": "string"}}}},
            "503": {"description": "Not ready: the text names the encoders that do not serve, or says the server is shutting down.", "content": {"text/plain": {"schema": {"type": "string"}}}}
        }
    }})
}

/// The document derived from the descriptor set and the routes.
fn derived() -> Value {
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    let mut components = BTreeMap::new();
    let mut rpc_comments = BTreeMap::new();
    for file in set.file.iter().filter(|f| f.package() == "bindery.v1") {
        let comments = Comments::of(file);
        schemas(file, &comments, &mut components);
        for (s, service) in file.service.iter().enumerate() {
            for (m, method) in service.method.iter().enumerate() {
                let name = format!("/bindery.v1.{}/{}", service.name(), method.name());
                rpc_comments.insert(name, comments.get(&[6, s as i32, 2, m as i32]).unwrap_or_default());
            }
        }
    }
    components.insert("HttpError".into(), error_schema());
    let mut paths = serde_json::Map::new();
    for route in RPC_ROUTES {
        let mut operation = json!({
            "operationId": route.rpc.trim_start_matches('/').replace('/', "."),
            "summary": rpc_comments.get(route.rpc).cloned().unwrap_or_default(),
            "responses": {
                "200": {"description": "OK.", "content": {"application/json": {"schema": reference(route.response)}}},
                "default": {"description": "Refused.", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HttpError"}}}}
            }
        });
        if route.method == "POST" {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": reference(route.request)}}});
        }
        if route.path.contains("{collection}") {
            operation["parameters"] = json!([{
                "name": "collection", "in": "path", "required": true, "schema": {"type": "string"},
                "description": "Collection name; fills the request's collection (or name) field."
            }]);
        }
        let entry = paths.entry(route.path).or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = operation;
    }
    paths.insert("/v1/embeddings".into(), openai_paths());
    paths.insert("/health".into(), plain_text("Liveness: the process answers."));
    paths.insert(
        "/ready".into(),
        plain_text("Readiness: every encoder serves and the server is not shutting down."),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {"summary": "This document.", "responses": {"200": {"description": "OK.", "content": {"application/json": {}}}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "bindery HTTP API",
            "version": "v1",
            "description": "JSON mappings of the bindery.v1 gRPC services (canonical protobuf JSON: lowerCamelCase field names, enums by name, bytes as base64, 64-bit integers as strings) and an OpenAI-compatible /v1/embeddings. API keys: `Authorization: Bearer <key>`. Deadline: the gRPC `grpc-timeout` header (e.g. `500m`)."
        },
        "paths": paths,
        "components": {"schemas": components}
    })
}

#[test]
fn the_committed_document_is_derived_from_the_proto_and_the_routes() {
    let derived = derived();
    let text = serde_json::to_string_pretty(&derived).expect("serialises") + "\n";
    if std::env::var_os("BINDERY_ACCEPT_OPENAPI").is_some() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server/http/openapi.json");
        std::fs::write(&path, &text).expect("write openapi.json");
        return;
    }
    let committed: Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
    assert!(
        committed == derived,
        "src/server/http/openapi.json is out of date with the proto or the routes; review the change and \
         rewrite it with `BINDERY_ACCEPT_OPENAPI=1 cargo test --lib openapi`"
    );
}

#[test]
fn every_message_field_of_the_proto_is_in_the_document() {
    // Independent of the derivation above: walks the descriptor and the committed document.
    let document: Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
    let set = FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    let mut checked = 0;
    for file in set.file.iter().filter(|f| f.package() == "bindery.v1") {
        for message in &file.message_type {
            let schema = &document["components"]["schemas"][message.name()];
            let properties = schema["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{} has no schema", message.name()));
            let fields: Vec<&str> = message.field.iter().map(|f| f.json_name()).collect();
            let mut listed: Vec<&str> = properties.keys().map(String::as_str).collect();
            listed.sort_unstable();
            let mut expected = fields.clone();
            expected.sort_unstable();
            assert_eq!(listed, expected, "fields of {}", message.name());
            checked += fields.len();
        }
    }
    assert!(checked > 100, "only {checked} fields checked");
    for route in RPC_ROUTES {
        let operation = &document["paths"][route.path][route.method.to_ascii_lowercase()];
        assert!(operation.is_object(), "{} {} is not in the document", route.method, route.path);
    }
}
