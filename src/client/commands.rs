//! Client subcommands: talk to a running server and print JSON. `bindery embed` has one flag per
//! registered modality.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;

use super::connect::ConnectArgs;
use super::write_stdout;
use crate::modality::{self, Argument, Kind, Modality};
use crate::shared::pb;

/// Options of `bindery embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// Server to call.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// What to embed: `--text TEXT...`, and for every other modality `--<modality> FILE...`
    /// (files, folders of files with that modality's extensions, or `-` for stdin).
    #[command(flatten)]
    pub inputs: EmbedInputs,
    /// Model (default: the server's default model).
    #[arg(long, default_value = "")]
    pub model: String,
    /// Return the tower's raw output instead of unit vectors.
    #[arg(long)]
    pub raw: bool,
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
                    format!("Files of {name} to embed: files, folders or - for stdin (several, repeatable)"),
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
            collect_files(Path::new(value), kind, &mut files)?;
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
    let mut client = args.connect.client().await?;
    let request =
        pb::EmbedRequest { model: args.model.clone(), inputs, normalize: Some(!args.raw), cache: None };
    let reply =
        client.embed(request).await.map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?;
    let reply = reply.into_inner();
    let embeddings: Vec<_> = reply
        .embeddings
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "modality": pb::Modality::try_from(e.modality).map(|m| m.as_str_name()).unwrap_or("UNKNOWN"),
                "model": e.model,
                "dimension": e.vector.len(),
                "vector": e.vector,
            })
        })
        .collect();
    let text = serde_json::to_string_pretty(&json!({ "model": reply.model, "embeddings": embeddings }))?;
    write_stdout(&(text + "\n"))?;
    Ok(())
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
