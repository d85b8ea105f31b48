//! Text as a bindery modality: its manifest section, its payload and its pipeline.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Clean, TextError, TextPreprocessor};
use crate::modality::{
    Argument, BuildError, InputLimits, Kind, Observed, Payload, PayloadValue, Pipeline, PreprocessError,
    Section, Slot, TensorSpec, limits_of, parse_section, require_file, slot,
};
use crate::shared::{Modality, pb};

/// Registration of text.
pub const KIND: Kind = Kind {
    modality: Modality::Text,
    check,
    build,
    from_proto,
    extensions: EXTENSIONS,
    inputs_from_file,
    limits: limits_of::<TextLimits>(),
    argument: Argument::Literal(pb::input::Payload::Text),
    examples: None,
    fuzz: &[("text_clean", super::fuzz_clean as fn(&[u8]))],
};

/// Text preprocessing (`[text.preprocess]`): open_clip's cleaning, then a tokenizer from a
/// `tokenizer.json`, into a fixed-length row of ids.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextPreprocess {
    /// `tokenizer.json` (Hugging Face `tokenizers` format), relative to the model folder.
    pub tokenizer: PathBuf,
    /// How the tokenizer is run (default `clip`).
    #[serde(default)]
    pub tokenizer_kind: TokenizerKind,
    /// open_clip's cleaning function applied first (default `lower`).
    #[serde(default)]
    pub clean: Clean,
    /// Number of token ids the tower takes (77 for CLIP/ImageBind, 64 for SigLIP).
    pub context_length: usize,
    /// Start-of-text id (`clip` only).
    #[serde(default)]
    pub start_token: Option<u32>,
    /// End-of-text id, kept as the last id when the text is truncated (`clip` only; an `hf`
    /// tokenizer's post-processor adds its own).
    #[serde(default)]
    pub end_token: Option<u32>,
    /// Id used to pad to `context_length`.
    pub pad_token: u32,
    /// Whether the tower takes id rows of any length up to `context_length` and reads nothing
    /// after a row's end id (causal attention pooled at the end id, or padding masked out of
    /// attention; exported with a free length axis by `tools/export_imagebind.py`,
    /// `export_openclip.py`, `export_languagebind.py` or `export_clap.py`): the server then cuts
    /// each batch's padding after the first pad id, grouping rows of similar length. The
    /// exporter sets it after checking that cut rows give the same embeddings as whole ones; the
    /// server refuses a tower whose length axis is fixed.
    #[serde(default)]
    pub trim_padding: bool,
}

/// How a `tokenizer.json` turns cleaned text into ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerKind {
    /// CLIP's byte-level BPE as its reference `SimpleTokenizer` runs it (open_clip's and
    /// ImageBind's): the file's pre-split pattern and BPE model, `[start] + ids`, cut to the
    /// context with the end id kept last, padded.
    #[default]
    Clip,
    /// The file's own pipeline (normalizer, pre-tokenizer, model such as SentencePiece Unigram,
    /// post-processor), truncated and padded to the context as open_clip's `HFTokenizer` calls
    /// it (`truncation=True, padding="max_length"`).
    Hf,
}

/// Text limits (the server's `--max-text-bytes` flag).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct TextLimits {
    /// Longest text accepted, in UTF-8 bytes.
    #[arg(id = "max_text_bytes", long = "max-text-bytes", value_name = "BYTES", default_value_t = TextLimits::default().max_bytes)]
    pub max_bytes: usize,
}

impl Default for TextLimits {
    fn default() -> Self {
        Self { max_bytes: 64 * 1024 }
    }
}

/// A text input, and whether it is refused when longer than the model's context.
#[derive(Debug)]
pub struct Text(pub String, pub OverContext);

/// What happens to a text with more tokens than the model's context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OverContext {
    /// Its first tokens are embedded (the reference model's behaviour).
    #[default]
    Truncate,
    /// The input is refused with its token count.
    Refuse,
}

impl PayloadValue for Text {
    fn key_parts(&self, part: &mut dyn FnMut(&[u8])) {
        part(self.0.as_bytes());
        // A refusing input's cache entry could only ever hold a text that fits, but kept apart
        // so a truncated vector cached for another request never answers it.
        if self.1 == OverContext::Refuse {
            part(b"refuse-over-context");
        }
    }
}

/// A text payload, truncated when longer than the context.
pub fn payload(text: String) -> Payload {
    Payload::new(Modality::Text, Text(text, OverContext::Truncate))
}

/// A text payload refused when longer than the context.
pub fn payload_refusing_over_context(text: String) -> Payload {
    Payload::new(Modality::Text, Text(text, OverContext::Refuse))
}

fn check(section: &Section<'_>) -> Result<(), String> {
    let spec: TextPreprocess = parse_section(section.preprocess)?;
    if spec.context_length < 2 {
        return Err("context_length must be at least 2".into());
    }
    match spec.tokenizer_kind {
        TokenizerKind::Clip if spec.start_token.is_none() || spec.end_token.is_none() => {
            return Err("tokenizer_kind \"clip\" needs start_token and end_token".into());
        }
        TokenizerKind::Hf if spec.start_token.is_some() || spec.end_token.is_some() => {
            return Err("tokenizer_kind \"hf\" takes its start and end ids from the tokenizer's \
                        post-processor: remove start_token and end_token"
                .into());
        }
        _ => {}
    }
    require_file("tokenizer", &spec.tokenizer, section.model_dir)
}

fn build(section: &Section<'_>, limits: &InputLimits) -> Result<Box<dyn Pipeline>, BuildError> {
    let spec: TextPreprocess = parse_section(section.preprocess)?;
    let tokenizer = TextPreprocessor::new(&spec, section.model_dir)?;
    let ids = TensorSpec::i64(section.input, vec![spec.context_length]);
    Ok(Box::new(TextPipeline {
        tensors: [if spec.trim_padding { ids.with_trailing_pad(i64::from(spec.pad_token)) } else { ids }],
        tokenizer,
        max_bytes: limits.get::<TextLimits>().max_bytes,
    }))
}

/// Text files: one input per non-empty line.
const EXTENSIONS: &[&str] = &["txt"];

fn inputs_from_file(bytes: Vec<u8>, _extension: &str) -> Vec<pb::input::Payload> {
    String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| pb::input::Payload::Text(l.to_string()))
        .collect()
}

fn from_proto(input: pb::input::Payload) -> Result<Payload, pb::input::Payload> {
    match input {
        pb::input::Payload::Text(text) => Ok(payload(text)),
        other => Err(other),
    }
}

struct TextPipeline {
    tensors: [TensorSpec; 1],
    tokenizer: TextPreprocessor,
    max_bytes: usize,
}

impl Pipeline for TextPipeline {
    fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    fn admit(&self, payload: &Payload) -> Result<(), PreprocessError> {
        let len = payload.expect_value::<Text>()?.0.len();
        if len > self.max_bytes {
            return Err(PreprocessError::input(TextError::TooLong { len, limit: self.max_bytes }));
        }
        Ok(())
    }

    fn preprocess_into(
        &self,
        payload: &Payload,
        slots: &mut [Slot<'_>],
    ) -> Result<Observed, PreprocessError> {
        let Text(text, over_context) = payload.expect_value::<Text>()?;
        let row = slot(slots, 0)?.i64()?;
        let encoded = self.tokenizer.encode_into(text, row).map_err(PreprocessError::input)?;
        if encoded.truncated && *over_context == OverContext::Refuse {
            return Err(PreprocessError::input(TextError::OverContext {
                tokens: encoded.tokens,
                context: self.tokenizer.context_length(),
            }));
        }
        Ok(Observed {
            tokens: u32::try_from(encoded.tokens).unwrap_or(u32::MAX),
            truncated: encoded.truncated,
            ..Observed::default()
        })
    }
}
