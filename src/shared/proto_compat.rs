//! The proto is a public contract: changes must be additive. This test compares the `bindery.v1`
//! descriptors compiled into this build with the last accepted ones (`proto/baseline.binpb`) and
//! fails on anything a deployed client could trip over: a message, enum, service or method that
//! disappeared; a field whose number changed type, label, name or oneof; a field or enum value
//! removed without reserving both its number and its name; a method whose types or streaming
//! changed. New fields, messages, values and methods pass.
//!
//! After an additive change, record it as the new baseline (the check must pass first):
//! `BINDERY_ACCEPT_PROTO=1 cargo test --lib proto_compat`.

use std::collections::BTreeMap;
use std::path::Path;

use prost::Message;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet, ServiceDescriptorProto,
};

use super::pb::FILE_DESCRIPTOR_SET;

/// Messages, enums and services by full name (`.bindery.v1.Input`, nested ones included).
#[derive(Default)]
struct Schema<'a> {
    messages: BTreeMap<String, &'a DescriptorProto>,
    enums: BTreeMap<String, &'a EnumDescriptorProto>,
    services: BTreeMap<String, &'a ServiceDescriptorProto>,
}

impl<'a> Schema<'a> {
    fn of(set: &'a FileDescriptorSet) -> Self {
        let mut schema = Schema::default();
        for file in &set.file {
            let prefix = format!(".{}", file.package());
            for message in &file.message_type {
                schema.add_message(&prefix, message);
            }
            for e in &file.enum_type {
                schema.enums.insert(format!("{prefix}.{}", e.name()), e);
            }
            for service in &file.service {
                schema.services.insert(format!("{prefix}.{}", service.name()), service);
            }
        }
        schema
    }

    fn add_message(&mut self, prefix: &str, message: &'a DescriptorProto) {
        let name = format!("{prefix}.{}", message.name());
        for nested in &message.nested_type {
            self.add_message(&name, nested);
        }
        for e in &message.enum_type {
            self.enums.insert(format!("{name}.{}", e.name()), e);
        }
        self.messages.insert(name, message);
    }
}

/// Whether `number` and `name` are both reserved in `message`.
fn field_reserved(message: &DescriptorProto, number: i32, name: &str) -> bool {
    // Descriptor ranges are end-exclusive for messages.
    message.reserved_range.iter().any(|r| (r.start()..r.end()).contains(&number))
        && message.reserved_name.iter().any(|n| n == name)
}

fn value_reserved(e: &EnumDescriptorProto, number: i32, name: &str) -> bool {
    // ...and end-inclusive for enums.
    e.reserved_range.iter().any(|r| (r.start()..=r.end()).contains(&number))
        && e.reserved_name.iter().any(|n| n == name)
}

/// What a field's number means on the wire and in JSON.
fn field_shape(f: &FieldDescriptorProto) -> (Option<i32>, &str, Option<i32>, bool, &str, Option<i32>) {
    (f.r#type, f.type_name(), f.label, f.proto3_optional(), f.name(), f.oneof_index)
}

/// Every breaking difference between `old` and `new`, described.
fn breaking_changes(old: &Schema<'_>, new: &Schema<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, was) in &old.messages {
        let Some(now) = new.messages.get(name) else {
            problems.push(format!("message {name} was removed"));
            continue;
        };
        for field in &was.field {
            match now.field.iter().find(|f| f.number() == field.number()) {
                Some(current) if field_shape(current) != field_shape(field) => problems.push(format!(
                    "{name}.{} (field {}) changed: was {:?}, now {:?}",
                    field.name(),
                    field.number(),
                    field_shape(field),
                    field_shape(current)
                )),
                Some(_) => {}
                None if field_reserved(now, field.number(), field.name()) => {}
                None => problems.push(format!(
                    "{name}.{} (field {}) was removed without reserving its number and name",
                    field.name(),
                    field.number()
                )),
            }
        }
    }
    for (name, was) in &old.enums {
        let Some(now) = new.enums.get(name) else {
            problems.push(format!("enum {name} was removed"));
            continue;
        };
        for value in &was.value {
            match now.value.iter().find(|v| v.number() == value.number()) {
                Some(current) if current.name() != value.name() => problems.push(format!(
                    "{name} value {} was renamed from {} to {}",
                    value.number(),
                    value.name(),
                    current.name()
                )),
                Some(_) => {}
                None if value_reserved(now, value.number(), value.name()) => {}
                None => problems.push(format!(
                    "{name} value {} ({}) was removed without reserving its number and name",
                    value.name(),
                    value.number()
                )),
            }
        }
    }
    for (name, was) in &old.services {
        let Some(now) = new.services.get(name) else {
            problems.push(format!("service {name} was removed"));
            continue;
        };
        for method in &was.method {
            let shape = |m: &prost_types::MethodDescriptorProto| {
                (
                    m.input_type().to_string(),
                    m.output_type().to_string(),
                    m.client_streaming(),
                    m.server_streaming(),
                )
            };
            match now.method.iter().find(|m| m.name() == method.name()) {
                Some(current) if shape(current) != shape(method) => {
                    problems.push(format!("{name}/{} changed its request, reply or streaming", method.name()))
                }
                Some(_) => {}
                None => problems.push(format!("{name}/{} was removed", method.name())),
            }
        }
    }
    problems
}

fn decode(bytes: &[u8]) -> FileDescriptorSet {
    FileDescriptorSet::decode(bytes).expect("a valid descriptor set")
}

#[test]
fn the_proto_changes_only_by_addition() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/baseline.binpb");
    let baseline = std::fs::read(&path).expect("proto/baseline.binpb (the last accepted descriptors)");
    let (old, new) = (decode(&baseline), decode(FILE_DESCRIPTOR_SET));
    let problems = breaking_changes(&Schema::of(&old), &Schema::of(&new));
    assert!(problems.is_empty(), "breaking changes to the bindery.v1 proto:\n{}", problems.join("\n"));
    if std::env::var_os("BINDERY_ACCEPT_PROTO").is_some() {
        std::fs::write(&path, FILE_DESCRIPTOR_SET).expect("write proto/baseline.binpb");
    }
}

#[test]
fn removals_renumberings_and_retypings_are_caught_and_additions_pass() {
    let base = decode(FILE_DESCRIPTOR_SET);
    fn input(set: &mut FileDescriptorSet) -> &mut DescriptorProto {
        set.file.iter_mut().flat_map(|f| f.message_type.iter_mut()).find(|m| m.name() == "Input").unwrap()
    }
    let check = |changed: &FileDescriptorSet| breaking_changes(&Schema::of(&base), &Schema::of(changed));

    let mut added = base.clone();
    let mut extra = input(&mut added).field[1].clone();
    extra.number = Some(99);
    extra.name = Some("new_kind".into());
    input(&mut added).field.push(extra);
    assert!(check(&added).is_empty(), "{:?}", check(&added));

    let mut removed = base.clone();
    let gone = input(&mut removed).field.remove(1);
    assert!(check(&removed).iter().any(|p| p.contains("without reserving")), "{:?}", check(&removed));
    input(&mut removed).reserved_range.push(prost_types::descriptor_proto::ReservedRange {
        start: gone.number,
        end: Some(gone.number() + 1),
    });
    input(&mut removed).reserved_name.push(gone.name().to_string());
    assert!(check(&removed).is_empty(), "reserved number and name: {:?}", check(&removed));

    let mut retyped = base.clone();
    input(&mut retyped).field[1].r#type = Some(prost_types::field_descriptor_proto::Type::Int64 as i32);
    assert!(check(&retyped).iter().any(|p| p.contains("changed")), "{:?}", check(&retyped));

    let mut renumbered = base.clone();
    input(&mut renumbered).field[1].number = Some(98);
    assert!(!check(&renumbered).is_empty());
}
