//! Client subcommands: talk to a running server and print JSON. `bindery embed` has one flag per
//! registered modality.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::connect::ConnectArgs;
use super::{write_stdout, write_stdout_bytes};
use crate::modality::{self, Argument, Kind, Modality};
use crate::shared::pb;

/// Options of `bindery embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Server to call.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// What to embed: `--text TEXT...`, and for every other modality `--<modality> FILE...`
    /// (files, glob patterns, folders of files with that modality's extensions, or `-` for stdin).
    #[command(flatten)]
    pub inputs: EmbedInputs,
    /// Model (default: the server's default model).
    #[arg(long, default_value = "")]
    pub model: String,
    /// Return the tower's raw output instead of unit vectors.
    #[arg(long)]
    pub raw: bool,
    /// Output: `json` (one object with every embedding), `jsonl` (one compact line per
    /// embedding) or `npy` (a float32 [inputs, dimension] array, to a file or pipe). Default:
    /// `json` for one input, `jsonl` for more.
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Keep only the first N values of each vector (renormalised unless --raw).
    #[arg(long, value_name = "N")]
    pub dimensions: Option<u32>,
    /// Inputs per request; more inputs are sent as several requests, in order.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Videos: also embed each one's sound track (a second embedding, modality audio).
    #[arg(long)]
    pub with_audio: bool,
    /// Audio and videos: one embedding per window of this many seconds (segment mode), each
    /// with its start and end.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    pub segment_seconds: f32,
    /// Segment mode: seconds between window starts (default: the window length).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    pub hop_seconds: f32,
}

/// Sets the video and audio options of `args` on `input`.
fn apply_media_options(args: &EmbedArgs, input: &mut pb::Input) {
    match &mut input.payload {
        Some(pb::input::Payload::Video(v)) => {
            v.with_audio = args.with_audio;
            v.segment_seconds = args.segment_seconds;
            v.hop_seconds = args.hop_seconds;
        }
        Some(pb::input::Payload::Audio(a)) => {
            a.segment_seconds = args.segment_seconds;
            a.hop_seconds = args.hop_seconds;
        }
        _ => {}
    }
}

/// How `bindery embed` writes its embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One JSON object: `{"model": ..., "embeddings": [...]}`.
    Json,
    /// One compact JSON object per embedding, one per line.
    Jsonl,
    /// A numpy `.npy` float32 array, one row per input in order.
    Npy,
}

/// The inputs of `bindery embed`, one flag per registered modality, in command-line order.
#[derive(Debug, Clone, Default)]
pub struct EmbedInputs(pub Vec<(Modality, String)>);

/// The flag of `kind`: its modality's name with dashes (`--point-cloud`).
fn flag_id(kind: &Kind) -> &'static str {
    kind.modality.as_str()
}

impl clap::FromArgMatches for EmbedInputs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut values = Vec::new();
        for kind in modality::KINDS {
            let id = flag_id(kind);
            if let (Some(found), Some(at)) = (matches.get_many::<String>(id), matches.indices_of(id)) {
                values.extend(at.zip(found).map(|(at, value)| (at, kind.modality, value.clone())));
            }
        }
        values.sort_by_key(|(at, _, _)| *at);
        Ok(Self(values.into_iter().map(|(_, modality, value)| (modality, value)).collect()))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for EmbedInputs {
    fn augment_args(command: clap::Command) -> clap::Command {
        let ids: Vec<&'static str> = modality::KINDS.iter().map(|k| flag_id(k)).collect();
        let command = modality::KINDS.iter().fold(command, |command, kind| {
            let name = kind.modality.as_str().replace('_', " ");
            let (value_name, help) = match kind.argument {
                Argument::Literal(_) => {
                    ("TEXT", format!("Inputs of {name} to embed (several values, repeatable)"))
                }
                Argument::Files => (
                    "FILE",
                    format!(
                        "Files of {name} to embed: files, glob patterns, folders or - for stdin (several, repeatable)"
                    ),
                ),
            };
            command.arg(
                clap::Arg::new(flag_id(kind))
                    .long(kind.modality.as_str().replace('_', "-"))
                    .value_name(value_name)
                    .help(help)
                    .num_args(1..)
                    .action(clap::ArgAction::Append),
            )
        });
        command.group(clap::ArgGroup::new("input").args(ids).multiple(true).required(true))
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

/// The protobuf inputs of one command-line value of `kind`, each with its id.
fn inputs_of(kind: &Kind, value: &str) -> anyhow::Result<Vec<pb::Input>> {
    let input = |id: String, payload| pb::Input { id, payload: Some(payload) };
    let from_file = |id: String, bytes: Vec<u8>, extension: &str| {
        let payloads = (kind.inputs_from_file)(bytes, extension);
        let many = payloads.len() > 1;
        payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| input(if many { format!("{id}#{i}") } else { id.clone() }, payload))
            .collect::<Vec<_>>()
    };
    match kind.argument {
        Argument::Literal(to_payload) => Ok(vec![input(value.to_string(), to_payload(value.to_string()))]),
        Argument::Files if value == "-" => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .map_err(|e| anyhow::anyhow!("cannot read stdin: {e}"))?;
            // No extension: the server detects the format from the bytes.
            Ok(from_file("-".into(), bytes, ""))
        }
        Argument::Files => {
            let mut files = Vec::new();
            for path in expand_glob(value)? {
                collect_files(&path, kind, &mut files)?;
            }
            if files.is_empty() {
                anyhow::bail!("{value} holds no {} file ({})", kind.modality, kind.extensions.join(", "));
            }
            let mut inputs = Vec::new();
            for file in files {
                let extension = extension(&file);
                inputs.extend(from_file(file.display().to_string(), read(&file)?, &extension));
            }
            Ok(inputs)
        }
    }
}

/// `value` itself, or the paths its glob pattern matches (sorted) when it has pattern characters
/// and names no existing file. A pattern that matches nothing is an error.
fn expand_glob(value: &str) -> anyhow::Result<Vec<PathBuf>> {
    let path = Path::new(value);
    if path.exists() || !value.contains(['*', '?', '[']) {
        return Ok(vec![path.to_path_buf()]);
    }
    let pattern = glob::glob(value).map_err(|e| anyhow::anyhow!("bad glob pattern {value:?}: {e}"))?;
    let mut paths = pattern
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("cannot read {}: {}", e.path().display(), e.error()))?;
    if paths.is_empty() {
        anyhow::bail!("{value} matches no file");
    }
    paths.sort();
    Ok(paths)
}

fn extension(path: &Path) -> String {
    path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default()
}

/// `path` itself when it is a file; the files under it with `kind`'s extensions, in name order,
/// when it is a folder.
fn collect_files(path: &Path, kind: &Kind, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if !path.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let entries =
        std::fs::read_dir(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for entry in paths {
        if entry.is_dir() {
            collect_files(&entry, kind, out)?;
        } else if kind.extensions.contains(&extension(&entry).as_str()) {
            out.push(entry);
        }
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

/// `bindery embed`.
pub async fn embed(args: EmbedArgs) -> anyhow::Result<()> {
    let mut inputs = Vec::new();
    for (modality, value) in &args.inputs.0 {
        let kind = modality::kind(*modality).ok_or_else(|| anyhow::anyhow!("no {modality} pipeline"))?;
        inputs.extend(inputs_of(kind, value)?);
    }
    for input in &mut inputs {
        apply_media_options(&args, input);
    }
    let format =
        args.format.unwrap_or(if inputs.len() > 1 { OutputFormat::Jsonl } else { OutputFormat::Json });
    if format == OutputFormat::Npy && std::io::stdout().is_terminal() {
        anyhow::bail!("--format npy writes binary: redirect stdout to a file or a pipe");
    }
    let mut client = args.connect.client().await?;
    // A bar on stderr when there are several requests to wait for (hidden when stderr is not a
    // terminal).
    let batches: Vec<Vec<pb::Input>> = inputs.chunks(args.batch_size as usize).map(<[_]>::to_vec).collect();
    let progress = if batches.len() > 1 {
        ProgressBar::new(inputs.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} inputs, {per_sec}, eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut model = String::new();
    let mut embeddings = Vec::with_capacity(inputs.len());
    for batch in batches {
        let count = batch.len() as u64;
        let request = pb::EmbedRequest {
            model: args.model.clone(),
            inputs: batch,
            normalize: Some(!args.raw),
            dimensions: args.dimensions,
            ..Default::default()
        };
        let reply = client
            .embed(request)
            .await
            .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        model = reply.model;
        embeddings.extend(reply.embeddings);
        progress.inc(count);
    }
    progress.finish_and_clear();
    match format {
        OutputFormat::Json => {
            let all: Vec<_> = embeddings.iter().map(embedding_json).collect();
            write_stdout(&(json!({ "model": model, "embeddings": all }).to_string() + "\n"))?;
        }
        OutputFormat::Jsonl => {
            let lines: String = embeddings.iter().map(|e| embedding_json(e).to_string() + "\n").collect();
            write_stdout(&lines)?;
        }
        OutputFormat::Npy => write_stdout_bytes(&npy_matrix(&embeddings)?)?,
    }
    Ok(())
}

fn embedding_json(e: &pb::Embedding) -> serde_json::Value {
    let mut out = json!({
        "id": e.id,
        "modality": pb::Modality::try_from(e.modality).map(|m| m.as_str_name()).unwrap_or("UNKNOWN"),
        "model": e.model,
        "dimension": e.vector.len(),
        "vector": e.vector,
    });
    if let (Some(span), Some(fields)) = (&e.span, out.as_object_mut()) {
        fields.insert("start_seconds".into(), json!(span.start_seconds));
        fields.insert("end_seconds".into(), json!(span.end_seconds));
    }
    out
}

/// The vectors as a numpy `.npy` file (format 1.0, little-endian float32, C order).
fn npy_matrix(embeddings: &[pb::Embedding]) -> anyhow::Result<Vec<u8>> {
    let dimension = embeddings.first().map_or(0, |e| e.vector.len());
    if let Some(other) = embeddings.iter().find(|e| e.vector.len() != dimension) {
        anyhow::bail!(
            "{} has {} dimensions, not {dimension}: npy needs one size",
            other.id,
            other.vector.len()
        );
    }
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {dimension}), }}", embeddings.len());
    // The magic, version and length take 10 bytes; numpy pads the header to a multiple of 64.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for e in embeddings {
        out.extend(e.vector.iter().flat_map(|v| v.to_le_bytes()));
    }
    Ok(out)
}

/// `bindery models`.
pub async fn models(args: ConnectArgs) -> anyhow::Result<()> {
    let mut client = args.client().await?;
    let reply = client
        .list_models(pb::ListModelsRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    let models: Vec<_> = reply
        .models
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "dimension": m.dimension,
                "family": m.family,
                "description": m.description,
                "licence": m.licence,
                "default": m.is_default,
                "modalities": m.modalities.iter().map(|x| json!({
                    "modality": pb::Modality::try_from(x.modality).map(|m| m.as_str_name()).unwrap_or("UNKNOWN"),
                    "logit_scale": x.logit_scale,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let text =
        serde_json::to_string_pretty(&json!({ "default_model": reply.default_model, "models": models }))?;
    write_stdout(&(text + "\n"))?;
    Ok(())
}
