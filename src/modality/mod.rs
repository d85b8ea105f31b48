//! Modality preprocessing: turning client payloads into the dense tensors each tower takes.
//!
//! One folder per modality. Each owns its manifest section type, its payload, its limits and its
//! [`Pipeline`], and registers itself with one [`Kind`] line in [`KINDS`]; the engine, the
//! manifest and the API edge reach a modality only through these, so adding one never edits them.
//! Everything here must match the reference implementation bit for bit.

pub mod audio;
pub mod depth;
pub mod image;
pub mod imu;
pub mod npy;
mod pipeline;
pub mod point_cloud;
pub mod segments;
pub mod text;
pub mod thermal;
pub mod video;

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;
use std::sync::Arc;

pub use crate::shared::Modality;
use crate::shared::pb;
pub use pipeline::{
    ElementType, FillOne, Observed, OneTensor, Part, Payload, PayloadValue, Pipeline, PreprocessError, Slot,
    Span, TensorSpec, Unsupported, slot,
};

/// Every modality bindery has a pipeline for: one line per modality folder.
pub const KINDS: &[&Kind] = &[
    &text::KIND,
    &image::KIND,
    &audio::KIND,
    &point_cloud::KIND,
    &thermal::KIND,
    &imu::KIND,
    &depth::KIND,
    &video::KIND,
];

/// How a modality plugs in: its manifest section becomes a pipeline, its protobuf input a payload.
pub struct Kind {
    /// The modality.
    pub modality: Modality,
    /// Parses and validates a manifest section's `preprocess` table (and that the files it names
    /// exist under the model folder). The message names the offending field.
    pub check: fn(&Section<'_>) -> Result<(), String>,
    /// Builds the pipeline of one model's section, under the server's input limits.
    pub build: BuildFn,
    /// The payload of a protobuf input of this modality; an input of another modality is handed
    /// back untouched.
    pub from_proto: fn(pb::input::Payload) -> Result<Payload, pb::input::Payload>,
    /// Lower-case extensions of this modality's files, for tools that read payload folders.
    pub extensions: &'static [&'static str],
    /// The protobuf inputs a file of this modality holds (`extension` is its lower-case
    /// extension, passed on as the format hint where the input has one).
    pub inputs_from_file: fn(bytes: Vec<u8>, extension: &str) -> Vec<pb::input::Payload>,
    /// This modality's input limits and their command-line flags ([`limits_of`]).
    pub limits: LimitsSpec,
    /// What a command-line value of this modality is (`bindery embed --<modality> VALUE`).
    pub argument: Argument,
    /// A few deterministic example inputs (the seed varies them), which `bindery load` sends when
    /// it is given no files of this modality. `None` where the load tool has its own, tunable
    /// generator (text, image, audio, point cloud).
    pub examples: Option<fn(seed: u64) -> Vec<pb::input::Payload>>,
    /// Fuzz target bodies for this modality's parsers, by target name: each takes one raw input
    /// and panics only on a bug. `bindery::fuzzing::targets` lists them with the others, so the
    /// `fuzz/` harness of the same name and the kept-input replay find them.
    pub fuzz: &'static [FuzzTarget],
}

/// A named fuzz target body: takes one raw input, panics only on a bug.
pub type FuzzTarget = (&'static str, fn(&[u8]));

/// What a command-line value of a modality is.
#[derive(Clone, Copy)]
pub enum Argument {
    /// The input itself (text), made into a protobuf input by the function.
    Literal(fn(String) -> pb::input::Payload),
    /// A file, a folder of files with the modality's extensions, or `-` for stdin.
    Files,
}

/// A modality's input limits: a value of the modality's own limits type (which derives
/// `clap::Args`, so its fields are the server's `--max-...` flags), its defaults and its flags.
pub struct LimitsSpec {
    /// The defaults.
    pub defaults: fn() -> Arc<dyn Any + Send + Sync>,
    /// Adds the limits' flags to a command.
    pub flags: fn(clap::Command) -> clap::Command,
    /// Reads the limits from parsed flags.
    pub from_flags: fn(&clap::ArgMatches) -> Result<Arc<dyn Any + Send + Sync>, clap::Error>,
}

/// The [`LimitsSpec`] of limits type `T`.
pub const fn limits_of<T>() -> LimitsSpec
where
    T: clap::Args + clap::FromArgMatches + Default + Send + Sync + 'static,
{
    fn defaults<T: Default + Send + Sync + 'static>() -> Arc<dyn Any + Send + Sync> {
        Arc::new(T::default())
    }
    fn from_flags<T: clap::FromArgMatches + Send + Sync + 'static>(
        matches: &clap::ArgMatches,
    ) -> Result<Arc<dyn Any + Send + Sync>, clap::Error> {
        Ok(Arc::new(T::from_arg_matches(matches)?))
    }
    LimitsSpec { defaults: defaults::<T>, flags: T::augment_args, from_flags: from_flags::<T> }
}

/// Why a section's pipeline cannot be built (a tokenizer that does not load, parameters a
/// filterbank cannot use); the message names the problem.
pub type BuildError = Box<dyn Error + Send + Sync>;

/// Builds the pipeline of one model's section, under the server's input limits.
pub type BuildFn = fn(&Section<'_>, &InputLimits) -> Result<Box<dyn Pipeline>, BuildError>;

/// What a [`Kind`] builds a pipeline from.
pub struct Section<'a> {
    /// The section's `preprocess` table.
    pub preprocess: &'a toml::Table,
    /// The section's `input`: the name of the tower's (first) input tensor.
    pub input: &'a str,
    /// The model folder, which files named in the section are relative to.
    pub model_dir: &'a Path,
}

/// The registration of `modality`, when bindery has a pipeline for it.
pub fn kind(modality: Modality) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|k| k.modality == modality)
}

/// The registration whose [`Kind::extensions`] include `extension` (lower case).
pub fn kind_of_extension(extension: &str) -> Option<&'static Kind> {
    KINDS.iter().copied().find(|k| k.extensions.contains(&extension))
}

/// The payload of a protobuf input. A modality without a pipeline gives an [`Unsupported`]
/// payload, which the engine answers as unimplemented; a media URL (which the API edge replaces
/// by the file it fetched) gives `None`.
pub fn payload_from_proto(mut input: pb::input::Payload) -> Option<Payload> {
    for kind in KINDS {
        match (kind.from_proto)(input) {
            Ok(payload) => return Some(payload),
            Err(other) => input = other,
        }
    }
    match &input {
        pb::input::Payload::MediaUrl(_) => None,
        other => Modality::of_input(other).map(|modality| Payload::new(modality, Unsupported)),
    }
}

/// The protobuf input of a file's bytes, as if they had been sent inline in `modality`'s own
/// field (`hint` is the format hint, lower case). Text is sent as text, not as a file, and a
/// modality without a pipeline has no file reader; the message says so.
pub fn input_from_bytes(
    modality: Modality,
    bytes: Vec<u8>,
    hint: &str,
) -> Result<pb::input::Payload, String> {
    if modality == Modality::Text {
        return Err("text is sent as a string, not as file bytes".into());
    }
    let kind = kind(modality).ok_or_else(|| format!("this server has no {modality} pipeline"))?;
    let mut inputs = (kind.inputs_from_file)(bytes, hint);
    match (inputs.pop(), inputs.is_empty()) {
        (Some(input), true) => Ok(input),
        _ => Err(format!("a {modality} file must hold exactly one input")),
    }
}

/// Reads a `preprocess` table as a modality's section type; the message names the field.
pub(crate) fn parse_section<T: serde::de::DeserializeOwned>(preprocess: &toml::Table) -> Result<T, String> {
    // The full form names the key (`in `resize_mode``) where `message()` would not.
    T::deserialize(toml::Value::Table(preprocess.clone()))
        .map_err(|e| e.to_string().trim().replace('\n', " "))
}

/// Checks that `relative`, named by field `field` of a section, exists under `model_dir`.
pub(crate) fn require_file(field: &str, relative: &Path, model_dir: &Path) -> Result<(), String> {
    let full = model_dir.join(relative);
    if full.is_file() {
        Ok(())
    } else {
        Err(format!("{field} names {}, which does not exist", full.display()))
    }
}

/// Per-input size limits of every modality, checked before any expensive work: one value of each
/// modality's own limits type, found by its type.
#[derive(Clone)]
pub struct InputLimits(BTreeMap<TypeId, Arc<dyn Any + Send + Sync>>);

impl InputLimits {
    fn from_values(values: impl Iterator<Item = Arc<dyn Any + Send + Sync>>) -> Self {
        Self(values.map(|v| ((*v).type_id(), v)).collect())
    }

    /// The limits of type `T` (its defaults when no modality registered it).
    pub fn get<T: Any + Clone + Default>(&self) -> T {
        self.0.get(&TypeId::of::<T>()).and_then(|v| v.downcast_ref::<T>()).cloned().unwrap_or_default()
    }

    /// Changes the limits of type `T`.
    pub fn update<T: Any + Clone + Default + Send + Sync>(&mut self, change: impl FnOnce(&mut T)) {
        let mut limits = self.get::<T>();
        change(&mut limits);
        self.0.insert(TypeId::of::<T>(), Arc::new(limits));
    }

    /// Adds every modality's limit flags to `command`.
    pub fn flags(command: clap::Command) -> clap::Command {
        KINDS.iter().fold(command, |command, kind| (kind.limits.flags)(command))
    }

    /// Every modality's limits, from flags added by [`InputLimits::flags`].
    pub fn from_flags(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let values =
            KINDS.iter().map(|kind| (kind.limits.from_flags)(matches)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_values(values.into_iter()))
    }
}

impl Default for InputLimits {
    fn default() -> Self {
        Self::from_values(KINDS.iter().map(|kind| (kind.limits.defaults)()))
    }
}

impl std::fmt::Debug for InputLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InputLimits({} modalities)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_come_from_each_modality_and_changes_stick() {
        let mut limits = InputLimits::default();
        assert_eq!(limits.get::<image::ImageLimits>().max_bytes, image::ImageLimits::default().max_bytes);
        limits.update(|l: &mut image::ImageLimits| l.max_bytes = 7);
        assert_eq!(limits.get::<image::ImageLimits>().max_bytes, 7);
        assert_eq!(limits.get::<audio::AudioLimits>().max_bytes, audio::AudioLimits::default().max_bytes);
        let command = InputLimits::flags(clap::Command::new("t").no_binary_name(true));
        let matches =
            command.try_get_matches_from(["--max-image-bytes", "9", "--max-text-bytes", "3"]).unwrap();
        let parsed = InputLimits::from_flags(&matches).unwrap();
        assert_eq!(parsed.get::<image::ImageLimits>().max_bytes, 9);
        assert_eq!(parsed.get::<text::TextLimits>().max_bytes, 3);
        assert_eq!(
            parsed.get::<point_cloud::PointCloudLimits>().max_points,
            point_cloud::PointCloudLimits::default().max_points
        );
    }

    #[test]
    fn every_kind_is_registered_once_and_claims_only_its_own_protobuf_input() {
        let mut seen: Vec<Modality> = KINDS.iter().map(|k| k.modality).collect();
        seen.dedup();
        assert_eq!(seen.len(), KINDS.len(), "a modality is registered twice");
        let inputs = [
            pb::input::Payload::Text("a".into()),
            pb::input::Payload::Image(vec![1]),
            pb::input::Payload::Audio(pb::Audio::default()),
            pb::input::Payload::PointCloud(pb::PointCloud::default()),
            pb::input::Payload::DepthMap(pb::Depth::default()),
            pb::input::Payload::ThermalImage(pb::Thermal::default()),
            pb::input::Payload::Imu(pb::Imu::default()),
            pb::input::Payload::Video(pb::Video::default()),
        ];
        for input in inputs {
            let modality = Modality::of_input(&input).unwrap();
            let payload = payload_from_proto(input).unwrap();
            assert_eq!(payload.modality(), modality);
            assert_eq!(payload.value::<Unsupported>().is_some(), kind(modality).is_none(), "{modality}");
        }
    }
}
