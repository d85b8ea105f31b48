//! Text: reference-compatible cleanup and CLIP byte-level BPE tokenization.
//! CONTRACT STUB: implementation pending.

use std::path::Path;

use crate::model::manifest::TextPreprocess;

/// Why a text input cannot be encoded.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The input string is empty.
    #[error("text is empty")]
    Empty,
    /// Nothing is left once the text is cleaned.
    #[error("text is empty after cleanup (only whitespace or control characters)")]
    EmptyAfterCleanup,
    /// The tokenizer file could not be loaded.
    #[error("cannot load tokenizer {path}: {message}")]
    Load {
        /// Tokenizer path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The tokenizer failed on this text.
    #[error("tokenization failed: {0}")]
    Tokenize(String),
}

/// Turns strings into the fixed-length id rows the text tower takes.
pub struct TextPreprocessor {
    context_length: usize,
}

impl TextPreprocessor {
    /// Loads the tokenizer named in `spec`, relative to `model_dir`.
    pub fn new(spec: &TextPreprocess, model_dir: &Path) -> Result<Self, TextError> {
        let _ = model_dir;
        Ok(Self {
            context_length: spec.context_length,
        })
    }

    /// Number of ids per row.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Writes the `context_length` ids for `text` into `out`.
    pub fn encode_into(&self, text: &str, out: &mut [i64]) -> Result<(), TextError> {
        let _ = (text, out);
        Err(TextError::Tokenize("not implemented".into()))
    }
}
