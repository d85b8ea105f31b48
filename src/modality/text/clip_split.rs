//! The CLIP tokenizer's pre-split and byte-level mapping, run without `tokenizers`'
//! `PreTokenizedString`, which keeps an offset alignment per byte of every piece that the ids
//! never need.
//!
//! It applies only to the pre-tokenizer every CLIP `tokenizer.json` of bindery carries: a
//! `Split` on the reference pattern that keeps the matches and drops the rest (`Removed`,
//! `invert`), then `ByteLevel` without prefix space or its own pattern. Other files keep the
//! general path. The pattern runs on the same engine the `Split` compiles it with (Oniguruma,
//! default syntax and options); where it is a CLIP pattern (ImageBind's or open_clip's special
//! tokens, then the reference's alternatives), words of printable ASCII are split by
//! [`split_ascii`] instead, which follows the pattern's alternatives by hand.
//! [`PieceCache`] then keeps the BPE ids of frequent pieces.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use onig::Regex;
use serde_json::Value;

/// The reference `SimpleTokenizer` pattern (ImageBind's), with `re.IGNORECASE` inlined, as
/// `tools/bindery_tools/clip_tokenizer.py` writes it into `tokenizer.json`.
#[cfg(test)]
const CLIP_PATTERN: &str =
    r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// What follows the special tokens in every CLIP pattern (open_clip's names them
/// `<start_of_text>` and `<end_of_text>`).
const CLIP_PATTERN_TAIL: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// The contractions the pattern tries, in its order, after the `'` (matched without regard to
/// case).
const CONTRACTIONS: [&str; 7] = ["s", "t", "re", "ve", "m", "ll", "d"];

/// The special tokens of a CLIP pattern, `(?i)` then literal alternatives then
/// [`CLIP_PATTERN_TAIL`], or `None` for any other pattern. Only ASCII literals whose escapes
/// are escaped punctuation are read; anything else keeps the pattern on Oniguruma.
fn clip_specials(pattern: &str) -> Option<Vec<String>> {
    let middle = pattern.strip_prefix("(?i)")?.strip_suffix(CLIP_PATTERN_TAIL)?;
    let mut specials = Vec::new();
    let mut current = String::new();
    let mut chars = middle.chars();
    while let Some(c) = chars.next() {
        match c {
            '|' if !current.is_empty() => specials.push(std::mem::take(&mut current)),
            '\\' => current.push(chars.next().filter(char::is_ascii_punctuation)?),
            '.' | '^' | '$' | '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '|' => return None,
            c if c.is_ascii_graphic() => current.push(c),
            _ => return None,
        }
    }
    // Every special ends with the `|` before the tail.
    current.is_empty().then_some(specials)
}

/// A tokenizer file's pre-split, when it is the one this module runs.
pub(super) struct ClipSplit {
    regex: Regex,
    /// The special tokens of a CLIP pattern, where [`split_ascii`] may stand in for it.
    specials: Option<Vec<String>>,
}

impl ClipSplit {
    /// The pre-split of a `tokenizer.json`'s `pre_tokenizer` value, or `None` where it is not a
    /// `Split` that keeps the matches followed by a plain `ByteLevel`.
    pub(super) fn from_config(pre_tokenizer: &Value) -> Option<Self> {
        let [split, byte_level] = pre_tokenizer.get("pretokenizers")?.as_array()?.as_slice() else {
            return None;
        };
        let is = |value: &Value, key: &str, want: Value| value.get(key) == Some(&want);
        let plain_split = is(pre_tokenizer, "type", "Sequence".into())
            && is(split, "type", "Split".into())
            && is(split, "behavior", "Removed".into())
            && is(split, "invert", true.into())
            && is(byte_level, "type", "ByteLevel".into())
            && is(byte_level, "add_prefix_space", false.into())
            && is(byte_level, "use_regex", false.into());
        if !plain_split {
            return None;
        }
        let pattern = split.get("pattern")?.get("Regex")?.as_str()?;
        Some(Self { regex: Regex::new(pattern).ok()?, specials: clip_specials(pattern) })
    }

    /// Calls `piece` with each piece of `text` in order, in its byte-level form (each UTF-8 byte
    /// as its GPT-2 character), as `Split` then `ByteLevel` would leave it. `scratch` holds a
    /// piece that needs mapping.
    pub(super) fn for_each_piece<E>(
        &self,
        text: &str,
        scratch: &mut String,
        mut piece: impl FnMut(&str) -> Result<(), E>,
    ) -> Result<(), E> {
        let Some(specials) = &self.specials else {
            return self.for_each_regex_piece(text, scratch, piece);
        };
        // No piece holds a space (the pattern's last alternative excludes `\s`, the others
        // match no space), so each space-separated word splits alone: printable ASCII by hand
        // (it maps to itself), anything else on Oniguruma.
        for word in text.split(' ').filter(|w| !w.is_empty()) {
            if word.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
                split_ascii(word, specials, &mut piece)?;
            } else {
                self.for_each_regex_piece(word, scratch, &mut piece)?;
            }
        }
        Ok(())
    }

    /// [`Self::for_each_piece`] with the pattern run on Oniguruma.
    fn for_each_regex_piece<E>(
        &self,
        text: &str,
        scratch: &mut String,
        mut piece: impl FnMut(&str) -> Result<(), E>,
    ) -> Result<(), E> {
        for (start, end) in self.regex.find_iter(text) {
            let matched = &text[start..end];
            if matched.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
                piece(matched)?;
            } else {
                scratch.clear();
                scratch.extend(matched.bytes().map(byte_char));
                piece(scratch)?;
            }
        }
        Ok(())
    }
}

/// Most pieces a cache keeps, like the `tokenizers` BPE cache's default capacity.
const CACHE_PIECES: usize = 10_000;

/// Longest piece the cache keeps, in bytes: words, not the rare long runs.
const CACHE_PIECE_BYTES: usize = 64;

/// The BPE ids of frequent pieces, so a repeated word costs one lookup instead of the model's
/// `Token`s (a `String` per id). Filled on first use, up to [`CACHE_PIECES`], then only read,
/// as the reference tokenizer's word cache (unbounded there).
#[derive(Default)]
pub(super) struct PieceCache {
    ids: RwLock<HashMap<Box<str>, Box<[u32]>>>,
}

impl PieceCache {
    /// Appends the ids of `piece` to `out`, from the cache or from `tokenize`.
    pub(super) fn extend<E>(
        &self,
        piece: &str,
        out: &mut Vec<u32>,
        tokenize: impl FnOnce(&str) -> Result<Vec<u32>, E>,
    ) -> Result<(), E> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is still whole.
        if let Some(ids) = self.ids.read().unwrap_or_else(PoisonError::into_inner).get(piece) {
            out.extend_from_slice(ids);
            return Ok(());
        }
        let ids = tokenize(piece)?;
        out.extend_from_slice(&ids);
        if piece.len() <= CACHE_PIECE_BYTES {
            let mut map = self.ids.write().unwrap_or_else(PoisonError::into_inner);
            if map.len() < CACHE_PIECES {
                map.insert(piece.into(), ids.into_boxed_slice());
            }
        }
        Ok(())
    }
}

/// GPT-2's `bytes_to_unicode`: printable bytes other than the space stand for themselves, the
/// others (0-32, 127-160, 173) for U+0100 onwards, in byte order.
const BYTE_CHARS: [char; 256] = {
    let mut table = ['\0'; 256];
    let mut next = 256;
    let mut b = 0;
    while b < 256 {
        let kept = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        table[b as usize] = match char::from_u32(if kept { b } else { next }) {
            Some(c) => c,
            None => panic!("not a character"),
        };
        if !kept {
            next += 1;
        }
        b += 1;
    }
    table
};

fn byte_char(b: u8) -> char {
    BYTE_CHARS[usize::from(b)]
}

/// A CLIP pattern with these `specials` on printable ASCII (spaces included), by hand: at each
/// position the first alternative that matches, as Oniguruma tries them. The spaces are what no
/// alternative matches, and are dropped.
fn split_ascii<E>(
    text: &str,
    specials: &[String],
    mut piece: impl FnMut(&str) -> Result<(), E>,
) -> Result<(), E> {
    let bytes = text.as_bytes();
    let starts_with = |at: usize, word: &str| {
        bytes.get(at..at + word.len()).is_some_and(|b| b.eq_ignore_ascii_case(word.as_bytes()))
    };
    let mut at = 0;
    while at < bytes.len() {
        let b = bytes[at];
        let len = if b == b' ' {
            at += 1;
            continue;
        } else if let Some(special) = specials.iter().find(|s| starts_with(at, s)) {
            special.len()
        } else if let Some(tail) = CONTRACTIONS.iter().find(|c| b == b'\'' && starts_with(at + 1, c)) {
            1 + tail.len()
        } else if b.is_ascii_alphabetic() {
            bytes[at..].iter().take_while(|b| b.is_ascii_alphabetic()).count()
        } else if b.is_ascii_digit() {
            1
        } else {
            bytes[at..].iter().take_while(|&&b| b != b' ' && !b.is_ascii_alphanumeric()).count()
        };
        piece(&text[at..at + len])?;
        at += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pattern: &str) -> serde_json::Value {
        serde_json::json!({
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Removed", "invert": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
            ]
        })
    }

    /// The pieces of `text` by hand (with the pattern's specials), or by Oniguruma alone.
    fn pieces(split: &ClipSplit, text: &str, by_hand: bool) -> Vec<String> {
        let mut out = Vec::new();
        let push = |p: &str| -> Result<(), ()> {
            out.push(p.to_owned());
            Ok(())
        };
        let done = match &split.specials {
            Some(specials) if by_hand => split_ascii(text, specials, push),
            _ => split.for_each_regex_piece(text, &mut String::new(), push),
        };
        assert!(done.is_ok());
        out
    }

    /// The hand-written ASCII split gives Oniguruma's pieces, for ImageBind's and open_clip's
    /// patterns, on texts dense in the characters where the pattern's alternatives meet
    /// (specials, contractions, punctuation runs).
    #[test]
    fn ascii_split_matches_the_pattern() {
        let open_clip = format!("(?i)<start_of_text>|<end_of_text>|{CLIP_PATTERN_TAIL}");
        assert_eq!(clip_specials(CLIP_PATTERN).unwrap(), ["<|startoftext|>", "<|endoftext|>"]);
        assert_eq!(clip_specials(&open_clip).unwrap(), ["<start_of_text>", "<end_of_text>"]);
        let splits = [CLIP_PATTERN, open_clip.as_str()].map(|p| ClipSplit::from_config(&config(p)).unwrap());
        let alphabet = [
            "a",
            "Z",
            "s",
            "T",
            "re",
            "VE",
            "ll",
            "d",
            "m",
            "0",
            "7",
            " ",
            "  ",
            "'",
            "''",
            "<",
            "|",
            ">",
            "<|startoftext|>",
            "<|ENDofText|>",
            "<|endoftext",
            "<start_of_text>",
            "<END_OF_TEXT>",
            "_",
            "!",
            ".",
            "-",
            "~",
            "&",
            "\"",
        ];
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        for _ in 0..5000 {
            let mut text = String::new();
            for _ in 0..(state % 16) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            for split in &splits {
                assert_eq!(pieces(split, &text, true), pieces(split, &text, false), "{text:?}");
            }
        }
        let all_printable: String = (b' '..=b'~').map(char::from).collect();
        assert_eq!(pieces(&splits[0], &all_printable, true), pieces(&splits[0], &all_printable, false));
    }

    /// Patterns that are not a CLIP pattern of literal specials stay on Oniguruma.
    #[test]
    fn other_patterns_are_not_split_by_hand() {
        for pattern in [
            format!("(?i)<s>.|{CLIP_PATTERN_TAIL}"),
            format!("<s>|{CLIP_PATTERN_TAIL}"),
            format!("(?i)<s\\d>|{CLIP_PATTERN_TAIL}"),
            format!("(?i)<\u{e9}>|{CLIP_PATTERN_TAIL}"),
            format!("(?i)<s>|{CLIP_PATTERN_TAIL}|x"),
        ] {
            assert!(clip_specials(&pattern).is_none(), "{pattern}");
        }
        assert_eq!(clip_specials(&format!("(?i){CLIP_PATTERN_TAIL}")), Some(vec![]));
    }

    /// A cached piece is tokenized once; a piece past the length bound every time.
    #[test]
    fn piece_cache_tokenizes_a_word_once() {
        let cache = PieceCache::default();
        let mut calls = 0;
        let mut out = Vec::new();
        let long = "x".repeat(CACHE_PIECE_BYTES + 1);
        for piece in ["dog", "dog", "dog", &long, &long] {
            let done = cache.extend(piece, &mut out, |_| {
                calls += 1;
                Ok::<_, ()>(vec![7, 8])
            });
            assert!(done.is_ok());
        }
        assert_eq!(calls, 3);
        assert_eq!(out, [7, 8].repeat(5));
    }

    /// GPT-2's table: 256 distinct characters, printable Latin-1 kept, the rest from U+0100.
    #[test]
    fn byte_chars_are_gpt2s() {
        let chars: Vec<char> = (0..=255u8).map(byte_char).collect();
        let distinct: std::collections::HashSet<char> = chars.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert_eq!(chars[usize::from(b' ')], '\u{120}');
        assert_eq!(chars[0], '\u{100}');
        assert_eq!(chars[0xAD], '\u{143}');
        assert_eq!(chars[usize::from(b'a')], 'a');
        assert_eq!(chars[0xE9], '\u{E9}');
    }

    #[test]
    fn other_pre_tokenizers_keep_the_general_path() {
        let config = serde_json::json!({
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": "\\s+"}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
            ]
        });
        assert!(ClipSplit::from_config(&config).is_none());
        assert!(ClipSplit::from_config(&serde_json::json!({"type": "Whitespace"})).is_none());
    }
}
