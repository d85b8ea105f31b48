//! Text: reference-compatible cleanup, then one of two tokenizer kinds.
//!
//! `clip` mirrors the CLIP `SimpleTokenizer` (ImageBind's `multimodal_preprocessors` and
//! open_clip's `tokenizer.py`, which differ only in their special tokens' names, read from the
//! file): [`clean`] the text, split it with the reference pattern, byte-level BPE each piece,
//! then `[start] + ids`, cut to `context_length - 1`, `+ [end]`, padded.
//!
//! `hf` mirrors open_clip's `HFTokenizer` (SigLIP): [`clean_with`] the text, run the file's own
//! pipeline (normalizer, pre-tokenizer, model, e.g. SentencePiece Unigram), truncate the pieces
//! so that the post-processor's special ids still fit, add them, pad to the context.
//!
//! The tokenizer file carries the pattern, vocabulary and merges. Its pre-tokenizer and model are
//! run directly instead of `Tokenizer::encode`, because the reference maps a piece to the start
//! or end id only when its pattern yields that special token as a whole piece (so `!<|endoftext|>`
//! is ordinary punctuation), while `encode` would extract added tokens anywhere. For the CLIP
//! files' pre-tokenizer, bindery runs even the pre-split itself (`clip_split.rs`: the pattern by
//! hand on ASCII words, on Oniguruma otherwise, and a cache of each piece's ids), which the
//! tokenizer goldens check like the rest.
//!
//! Besides the cleanup differences listed on [`clean`], the pre-split can differ from the
//! reference's `regex` package for characters Oniguruma classifies differently: characters
//! assigned in recent Unicode versions that `regex` already knows as letters or digits, and
//! U+0345 COMBINING GREEK YPOGEGRAMMENI, which the reference's case-insensitive pattern matches
//! with no alternative (so it separates words) while Oniguruma counts it as a letter.

mod cleanup;
mod clip_split;
mod ftfy;
mod html;
mod kind;

use std::path::Path;

use tokenizers::{
    Model, OffsetReferential, OffsetType, PostProcessor, PreTokenizedString, PreTokenizer, Token, Tokenizer,
    TruncationDirection,
};

pub use cleanup::{Clean, clean, clean_with};
use clip_split::{ClipSplit, PieceCache};

/// Fuzz target body: any bytes (read as UTF-8, lossily) through the reference cleanup, mojibake
/// repair included: it must end without panicking and without blowing the text up.
fn fuzz_clean(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let cleaned = clean(&text);
    assert!(cleaned.len() <= text.len().saturating_mul(8) + 64, "cleanup grew the text without bound");
}
pub use kind::{
    KIND, OverContext, Text, TextLimits, TextPreprocess, TokenizerKind, payload,
    payload_refusing_over_context,
};

/// Texts longer than this many bytes are tokenized in chunks cut at spaces.
const CHUNK_BYTES: usize = 256;

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
    /// Text longer than the server accepts.
    #[error("text is {len} bytes, more than the limit of {limit} bytes")]
    TooLong {
        /// Text length in bytes.
        len: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Text with more tokens than the context, under the request's `TEXT_TRUNCATION_ERROR`.
    #[error(
        "text is {tokens} tokens (with the start and end tokens), more than the model's context of \
         {context}; shorten it or allow truncation (text_truncation TRUNCATE)"
    )]
    OverContext {
        /// Tokens of the whole text.
        tokens: usize,
        /// The model's context length.
        context: usize,
    },
    /// The tokenizer failed on this text.
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    /// The output row does not have `context_length` slots.
    #[error("output row has {actual} slots, expected {expected}")]
    RowLength {
        /// The context length.
        expected: usize,
        /// Length of the slice passed in.
        actual: usize,
    },
}

/// What encoding one text found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// Tokens of the whole text, the start and end tokens included.
    pub tokens: usize,
    /// The text had more tokens than the context holds, and its row keeps only the first ones.
    pub truncated: bool,
}

/// Turns strings into the fixed-length id rows the text tower takes.
pub struct TextPreprocessor {
    tokenizer: Tokenizer,
    context_length: usize,
    pad_id: i64,
    clean: Clean,
    ids: Ids,
}

/// What each tokenizer kind needs besides the file.
enum Ids {
    /// CLIP BPE: the start and end ids, the pieces that map straight to them (the reference
    /// tokenizer's cache seed), and the file's pre-split where bindery runs it itself.
    Clip {
        start_id: i64,
        end_id: i64,
        special_pieces: [(String, u32); 2],
        split: Option<ClipSplit>,
        cache: PieceCache,
    },
    /// A tokenizer run whole: how many special ids its post-processor adds.
    Hf { added: usize },
}

impl std::fmt::Debug for TextPreprocessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextPreprocessor")
            .field("context_length", &self.context_length)
            .field("pad_id", &self.pad_id)
            .field("clean", &self.clean)
            .finish_non_exhaustive()
    }
}

impl TextPreprocessor {
    /// Loads the tokenizer named in `spec`, relative to `model_dir`.
    pub fn new(spec: &TextPreprocess, model_dir: &Path) -> Result<Self, TextError> {
        let path = model_dir.join(&spec.tokenizer);
        let load_error = |message: String| TextError::Load { path: path.display().to_string(), message };
        let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| load_error(e.to_string()))?;
        if spec.context_length < 2 {
            return Err(load_error(format!(
                "context_length {} leaves no room for the start and end ids",
                spec.context_length
            )));
        }
        let ids = match spec.tokenizer_kind {
            TokenizerKind::Clip => {
                if tokenizer.get_pre_tokenizer().is_none() {
                    return Err(load_error("the tokenizer has no pre-tokenizer".into()));
                }
                let piece = |id: Option<u32>, field: &str| {
                    let id = id.ok_or_else(|| load_error(format!("{field} is missing")))?;
                    tokenizer
                        .id_to_token(id)
                        .map(|token| (token, id))
                        .ok_or_else(|| load_error(format!("{field} {id} is not in the vocabulary")))
                };
                let special_pieces =
                    [piece(spec.start_token, "start_token")?, piece(spec.end_token, "end_token")?];
                let split = serde_json::to_value(tokenizer.get_pre_tokenizer())
                    .ok()
                    .and_then(|config| ClipSplit::from_config(&config));
                Ids::Clip {
                    start_id: i64::from(special_pieces[0].1),
                    end_id: i64::from(special_pieces[1].1),
                    special_pieces,
                    split,
                    cache: PieceCache::default(),
                }
            }
            TokenizerKind::Hf => {
                // Truncation and padding are bindery's, to the manifest's context; a file's own
                // settings would cut before the special ids are counted.
                tokenizer.with_truncation(None).map_err(|e| load_error(e.to_string()))?;
                tokenizer.with_padding(None);
                let added = tokenizer.get_post_processor().map_or(0, |p| p.added_tokens(false));
                if added >= spec.context_length {
                    return Err(load_error(format!(
                        "the post-processor adds {added} ids, which leaves no room in a context of {}",
                        spec.context_length
                    )));
                }
                Ids::Hf { added }
            }
        };
        Ok(Self {
            context_length: spec.context_length,
            pad_id: i64::from(spec.pad_token),
            clean: spec.clean,
            ids,
            tokenizer,
        })
    }

    /// Number of ids per row.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Writes the `context_length` ids for `text` into `out`, and says how many tokens the whole
    /// text has.
    ///
    /// Empty text, and text that cleanup reduces to nothing, is rejected rather than encoded as
    /// the reference would (as `[start, end]`): such a request is almost certainly a mistake.
    pub fn encode_into(&self, text: &str, out: &mut [i64]) -> Result<Encoded, TextError> {
        if out.len() != self.context_length {
            return Err(TextError::RowLength { expected: self.context_length, actual: out.len() });
        }
        if text.is_empty() {
            return Err(TextError::Empty);
        }
        let cleaned = clean_with(text, self.clean);
        if cleaned.is_empty() {
            return Err(TextError::EmptyAfterCleanup);
        }
        match &self.ids {
            Ids::Clip { start_id, end_id, .. } => self.encode_clip(&cleaned, *start_id, *end_id, out),
            Ids::Hf { added } => self.encode_hf(&cleaned, *added, out),
        }
    }

    /// The CLIP row: `([start] + ids)[:context_length - 1] + [end]`, padded (the reference pads
    /// with zeros; the manifest's `pad_token` is that zero).
    fn encode_clip(
        &self,
        cleaned: &str,
        start_id: i64,
        end_id: i64,
        out: &mut [i64],
    ) -> Result<Encoded, TextError> {
        let room = self.context_length - 2;
        let (ids, rest) = self.token_ids(cleaned, room + 1)?;
        let kept = ids.len().min(room);
        out[0] = start_id;
        for (slot, &id) in out[1..=kept].iter_mut().zip(&ids) {
            *slot = i64::from(id);
        }
        out[kept + 1] = end_id;
        out[kept + 2..].fill(self.pad_id);
        let truncated = ids.len() > room;
        // A cut text is counted to its end, so replies and refusals give its real length; the
        // count costs one pass of the tokenizer over at most --max-text-bytes.
        let uncounted = if truncated { self.token_ids(rest, usize::MAX)?.0.len() } else { 0 };
        Ok(Encoded { tokens: ids.len() + uncounted + 2, truncated })
    }

    /// The `HFTokenizer` row, as `tokenizers` computes `encode` with truncation to the context
    /// (the pieces cut to leave room for the post-processor's ids, from the right) and padding
    /// to it; done in these steps so the uncut length is known.
    fn encode_hf(&self, cleaned: &str, added: usize, out: &mut [i64]) -> Result<Encoded, TextError> {
        let tokenize_error = |e: tokenizers::Error| TextError::Tokenize(e.to_string());
        let mut pieces = self.tokenizer.encode(cleaned, false).map_err(tokenize_error)?;
        let tokens = pieces.len() + added;
        let room = self.context_length - added;
        let truncated = pieces.len() > room;
        if truncated {
            pieces.truncate(room, 0, TruncationDirection::Right);
        }
        let row = self.tokenizer.post_process(pieces, None, true).map_err(tokenize_error)?;
        let ids = row.get_ids();
        if ids.len() > self.context_length {
            return Err(TextError::Tokenize(format!(
                "the post-processor made {} ids, more than the context of {}",
                ids.len(),
                self.context_length
            )));
        }
        for (slot, &id) in out.iter_mut().zip(ids) {
            *slot = i64::from(id);
        }
        out[ids.len()..].fill(self.pad_id);
        Ok(Encoded { tokens, truncated })
    }

    /// BPE ids of already cleaned text, stopping once at least `limit` ids are known, and the
    /// text not yet tokenized.
    ///
    /// No piece of the reference pattern contains a space, and a space is the only whitespace
    /// left after cleanup, so cutting the text at spaces yields the same pieces; long texts are
    /// therefore split in chunks and only tokenized as far as the row needs.
    fn token_ids<'t>(&self, cleaned: &'t str, limit: usize) -> Result<(Vec<u32>, &'t str), TextError> {
        let mut ids = Vec::new();
        let mut rest = cleaned;
        while !rest.is_empty() && ids.len() < limit {
            let end = rest
                .as_bytes()
                .iter()
                .skip(CHUNK_BYTES)
                .position(|&b| b == b' ')
                .map_or(rest.len(), |i| CHUNK_BYTES + i);
            let (chunk, tail) = rest.split_at(end);
            self.chunk_ids(chunk, &mut ids)?;
            rest = tail;
        }
        Ok((ids, rest))
    }

    /// Appends the BPE ids of one chunk of cleaned text to `ids`.
    fn chunk_ids(&self, chunk: &str, ids: &mut Vec<u32>) -> Result<(), TextError> {
        let tokenize_error = |e: tokenizers::Error| TextError::Tokenize(e.to_string());
        if let Ids::Clip { special_pieces, split: Some(split), cache, .. } = &self.ids {
            let model = self.tokenizer.get_model();
            let mut scratch = String::new();
            return split.for_each_piece(chunk, &mut scratch, |piece| {
                match special_pieces.iter().find(|(s, _)| s == piece) {
                    Some(&(_, id)) => ids.push(id),
                    None => cache.extend(piece, ids, |piece| {
                        Ok(model.tokenize(piece).map_err(tokenize_error)?.iter().map(|t| t.id).collect())
                    })?,
                }
                Ok(())
            });
        }
        let mut pieces = PreTokenizedString::from(chunk);
        if let Some(pre_tokenizer) = self.tokenizer.get_pre_tokenizer() {
            pre_tokenizer.pre_tokenize(&mut pieces).map_err(tokenize_error)?;
        }
        let model = self.tokenizer.get_model();
        let special_pieces: &[(String, u32)] = match &self.ids {
            Ids::Clip { special_pieces, .. } => special_pieces,
            Ids::Hf { .. } => &[],
        };
        pieces
            .tokenize(|piece| {
                let piece = piece.get();
                match special_pieces.iter().find(|(s, _)| s == piece) {
                    Some((s, id)) => Ok(vec![Token::new(*id, s.clone(), (0, piece.len()))]),
                    None => model.tokenize(piece),
                }
            })
            .map_err(tokenize_error)?;
        ids.extend(
            pieces
                .get_splits(OffsetReferential::Original, OffsetType::None)
                .into_iter()
                .flat_map(|(_, _, tokens)| tokens.iter().flatten().map(|t| t.id)),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests;
