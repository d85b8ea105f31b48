//! Client subcommands: talk to a running server and print JSON.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::connect::ConnectArgs;
use super::write_stdout;
use crate::shared::pb;

/// Options of `bindery embed`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).multiple(true)))]
pub struct EmbedArgs {
    /// Server to call.
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Text to embed (repeatable).
    #[arg(long, group = "input")]
    pub text: Vec<String>,
    /// Image file to embed (repeatable).
    #[arg(long, group = "input")]
    pub image: Vec<PathBuf>,
    /// Audio file to embed (repeatable).
    #[arg(long, group = "input")]
    pub audio: Vec<PathBuf>,
    /// Model (default: the server's default model).
    #[arg(long, default_value = "")]
    pub model: String,
    /// Return the tower's raw output instead of unit vectors.
    #[arg(long)]
    pub raw: bool,
}

fn read(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

/// `bindery embed`.
pub async fn embed(args: EmbedArgs) -> anyhow::Result<()> {
    let mut inputs = Vec::new();
    for text in &args.text {
        inputs.push(pb::Input { id: text.clone(), payload: Some(pb::input::Payload::Text(text.clone())) });
    }
    for path in &args.image {
        inputs.push(pb::Input {
            id: path.display().to_string(),
            payload: Some(pb::input::Payload::Image(read(path)?)),
        });
    }
    for path in &args.audio {
        let format_hint = path.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_default();
        inputs.push(pb::Input {
            id: path.display().to_string(),
            payload: Some(pb::input::Payload::Audio(pb::Audio { data: read(path)?, format_hint })),
        });
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
