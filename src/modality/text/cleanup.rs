//! The reference text cleanup, applied before tokenization.
//!
//! The reference (`imagebind.models.multimodal_preprocessors.SimpleTokenizer.encode`) computes
//! `whitespace_clean(basic_clean(text)).lower()`, where `basic_clean` is `ftfy.fix_text` followed
//! by `html.unescape` twice and `strip`, and `whitespace_clean` collapses `\s+` (the `regex`
//! package's `\s`) to one space and strips. Each step is mirrored here; see [`clean`] for the
//! parts that are not.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

use super::{ftfy, html};

/// ftfy cuts text into segments of at most this many characters (`max_decode_length`).
const FTFY_MAX_SEGMENT_CHARS: usize = 1_000_000;

/// Bound on ftfy's `fix_and_explain` rounds per segment (see [`ftfy_fix_segment`]).
const FTFY_MAX_ROUNDS: usize = 64;

/// ftfy's `remove_terminal_escapes` pattern (`\033\[((?:\d|;)*)([a-zA-Z])`, where Python's `\d`
/// is any Unicode decimal digit, as is the `regex` crate's).
static ANSI_ESCAPE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\x1b\[(?:\d|;)*[a-zA-Z]").ok());

/// Cleans `text` the way the reference tokenizer does before splitting it into words.
///
/// Steps, in the reference order:
/// 1. ftfy 6.3 `fix_text` with its default configuration, per line (and per 1,000,000
///    characters), each segment repeated until it no longer changes: `unescape_html` (complete
///    references only; off from the first line containing `<` onwards), `fix_encoding` (mojibake
///    repair, e.g. `cafÃ©` -> `café`, see [`super::ftfy`]), `fix_c1_controls`,
///    `fix_latin_ligatures`, `fix_character_width`, `uncurl_quotes`, `fix_line_breaks`,
///    `remove_terminal_escapes`, `remove_control_chars`, NFC normalisation;
/// 2. Python's `html.unescape`, twice;
/// 3. strip (Python `str.strip`: Unicode `White_Space` plus U+001C..=U+001F);
/// 4. every run of `White_Space` characters becomes one space, then strip again;
/// 5. lower-casing with full Unicode case mapping (`str.lower`, including final sigma).
///
/// Documented differences from the reference:
/// - **Unicode versions.** The reference runs on Python 3.11 (Unicode 14.0 for NFC and
///   `str.lower`), the `regex` package (its own, newer Unicode tables for `\p{L}`/`\p{N}`/`\s`)
///   and, here, Rust's and Oniguruma's tables. Characters whose properties differ between those
///   versions (mostly those assigned after Unicode 14.0) may be lower-cased, composed or split
///   differently. The one place mojibake repair consults such a table (a letter or digit after
///   a suspicious pair, `\w` in ftfy's heuristic) follows the same rule.
/// - **Lone surrogates** (`fix_surrogates`) cannot occur in Rust strings, so that step is absent.
/// - **Runaway repair.** Where ftfy would repeat a repair without end, or recurse past Python's
///   limit, bindery stops after a fixed number of rounds (far more than any text needs; see
///   [`super::ftfy`]) and keeps what it has.
pub fn clean(text: &str) -> String {
    clean_with(text, Clean::Lower)
}

/// open_clip's text cleaning functions (`open_clip.tokenizer.get_clean_fn`), chosen by the
/// manifest's `clean` value under open_clip's names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Clean {
    /// `_clean_lower`: `whitespace_clean(basic_clean(x)).lower()`, the CLIP tokenizers' cleanup
    /// (ImageBind's `SimpleTokenizer` does the same).
    #[default]
    Lower,
    /// `_clean_whitespace`: `whitespace_clean(basic_clean(x))`, case kept.
    Whitespace,
    /// `_clean_canonicalize`: `canonicalize_text(basic_clean(x))`, SigLIP's: `_` becomes a
    /// space, ASCII punctuation (`string.punctuation`) is removed, then lower-casing and
    /// whitespace collapsing.
    Canonicalize,
    /// No cleaning: the text reaches the tokenizer as given, as with a Hugging Face tokenizer
    /// called directly (CLAP's RoBERTa tokenizer in `ClapProcessor`).
    None,
    /// Hugging Face's slow `CLIPTokenizer` with ftfy installed (transformers 4.x, LanguageBind's
    /// tokenizer): `whitespace_clean(ftfy.fix_text(x)).lower()`, without open_clip's HTML
    /// unescaping.
    #[serde(rename = "ftfy_lower")]
    FtfyLower,
}

/// Cleans `text` with one of open_clip's cleaning functions; [`clean`] lists the steps and the
/// documented differences, which hold for every mode.
pub fn clean_with(text: &str, mode: Clean) -> String {
    match mode {
        Clean::Lower | Clean::FtfyLower | Clean::Whitespace if is_plain_ascii(text) => {
            collapse_plain_ascii(text, mode != Clean::Whitespace)
        }
        _ => clean_full(text, mode),
    }
}

/// Every step of [`clean_with`], whatever the text.
fn clean_full(text: &str, mode: Clean) -> String {
    match mode {
        Clean::None => text.to_string(),
        Clean::Lower => py_strip(&collapse_whitespace(py_strip(&basic_clean(text)))).to_lowercase(),
        Clean::FtfyLower => py_strip(&collapse_whitespace(&ftfy_fix_text(text))).to_lowercase(),
        Clean::Whitespace => py_strip(&collapse_whitespace(py_strip(&basic_clean(text)))).to_string(),
        Clean::Canonicalize => {
            // `str.translate` with `string.punctuation`, which is exactly ASCII punctuation.
            let kept: String = py_strip(&basic_clean(text))
                .chars()
                .map(|c| if c == '_' { ' ' } else { c })
                .filter(|c| !c.is_ascii_punctuation())
                .collect();
            py_strip(&collapse_whitespace(&kept.to_lowercase())).to_string()
        }
    }
}

/// Whether `text` is ASCII that neither ftfy nor `html.unescape` changes, save for line breaks:
/// printable characters other than `&`, and the whitespace `\t`, `\n`, `\x0c`, `\r`.
///
/// ftfy's mojibake repair stops at ASCII, its per-character translations and NFC leave ASCII
/// as it is, terminal escapes and removed controls need a control character, HTML references
/// need `&`, and `fix_line_breaks` only turns `\r` into `\n`, which whitespace collapsing makes
/// one space either way. Such text (most captions) is only stripped, collapsed and lower-cased.
fn is_plain_ascii(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b' '..=b'~' | b'\t' | b'\n' | b'\x0c' | b'\r') && b != b'&')
}

/// Steps 3 to 5 of [`clean`] on [`is_plain_ascii`] text, in one pass: the ASCII whitespace
/// that [`str::split_ascii_whitespace`] splits at is exactly the whitespace such text can hold.
fn collapse_plain_ascii(text: &str, lower: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_ascii_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        if lower {
            out.extend(word.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        } else {
            out.push_str(word);
        }
    }
    out
}

/// open_clip's `basic_clean` before its final strip: ftfy, then HTML unescaping twice.
fn basic_clean(text: &str) -> String {
    let fixed = ftfy_fix_text(text);
    let once = html::unescape(&fixed);
    html::unescape(&once).into_owned()
}

/// Python's `str.isspace`: the `White_Space` property plus the four ASCII information separators.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn py_strip(text: &str) -> &str {
    text.trim_matches(py_isspace)
}

/// `re.sub(r"\s+", " ", text)` with the `regex` package, whose `\s` is `White_Space`.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_run = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !in_run {
                out.push(' ');
            }
            in_run = true;
        } else {
            out.push(c);
            in_run = false;
        }
    }
    out
}

/// ftfy's `fix_text` with its default configuration.
fn ftfy_fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // `unescape_html="auto"` turns itself off for good once a segment contains '<'.
    let mut unescape = true;
    let mut rest = text;
    while !rest.is_empty() {
        let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        let end = rest[..line_end].char_indices().nth(FTFY_MAX_SEGMENT_CHARS).map_or(line_end, |(i, _)| i);
        let segment = &rest[..end];
        if unescape && segment.contains('<') {
            unescape = false;
        }
        out.push_str(&ftfy_fix_segment(segment, unescape));
        rest = &rest[end..];
    }
    out
}

/// ftfy's `fix_and_explain` loop: apply every fixer in order until nothing changes.
fn ftfy_fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_owned();
    // ftfy loops without a bound; every fixer only removes or repairs, so text settles within
    // a few rounds and the bound only guarantees termination.
    for _ in 0..FTFY_MAX_ROUNDS {
        let mut next = if unescape { html::ftfy_unescape(&text).into_owned() } else { text.clone() };
        if let Cow::Owned(repaired) = ftfy::fix_encoding(&next) {
            next = repaired;
        }
        if let Cow::Owned(s) = translate_chars(&next) {
            next = s;
        }
        if let Cow::Owned(s) = fix_line_breaks(&next) {
            next = s;
        }
        if let Cow::Owned(s) = remove_terminal_escapes(&next) {
            next = s;
        }
        next.retain(|c| !is_removed_control(c));
        if is_nfc_quick(next.chars()) != IsNormalized::Yes {
            next = next.nfc().collect();
        }
        if next == text {
            break;
        }
        text = next;
    }
    text
}

/// `fix_c1_controls`, `fix_latin_ligatures`, `fix_character_width` and `uncurl_quotes`, which
/// are consecutive per-character translations, composed; borrowed where none applies.
fn translate_chars(text: &str) -> Cow<'_, str> {
    // Every character these fixers change is outside ASCII and one of these.
    let changes = |c: char| {
        matches!(c, '\u{80}'..='\u{9F}' | '\u{3000}' | '\u{FF01}'..='\u{FFEF}' | '\u{2BC}' | '\u{2018}'..='\u{201F}')
            || latin_ligature(c).is_some()
    };
    if text.is_ascii() || !text.chars().any(changes) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = html::windows_1252_c1(c);
        match latin_ligature(c) {
            Some(parts) => {
                for part in parts.chars() {
                    push_full_width_fixed(part, &mut out);
                }
            }
            None => push_full_width_fixed(c, &mut out),
        }
    }
    Cow::Owned(out)
}

/// ftfy's `LIGATURES` table.
fn latin_ligature(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{132}' => "IJ",
        '\u{133}' => "ij",
        '\u{149}' => "\u{2BC}n",
        '\u{1F1}' => "DZ",
        '\u{1F2}' => "Dz",
        '\u{1F3}' => "dz",
        '\u{1C4}' => "D\u{17D}",
        '\u{1C5}' => "D\u{17E}",
        '\u{1C6}' => "d\u{17E}",
        '\u{1C7}' => "LJ",
        '\u{1C8}' => "Lj",
        '\u{1C9}' => "lj",
        '\u{1CA}' => "NJ",
        '\u{1CB}' => "Nj",
        '\u{1CC}' => "nj",
        '\u{FB00}' => "ff",
        '\u{FB01}' => "fi",
        '\u{FB02}' => "fl",
        '\u{FB03}' => "ffi",
        '\u{FB04}' => "ffl",
        '\u{FB05}' => "\u{17F}t",
        '\u{FB06}' => "st",
        _ => return None,
    })
}

/// `fix_character_width` (U+3000 and the NFKC form of U+FF01..=U+FFEF), then `uncurl_quotes`.
fn push_full_width_fixed(c: char, out: &mut String) {
    match c {
        '\u{3000}' => out.push(' '),
        '\u{FF01}'..='\u{FFEF}' => {
            for part in std::iter::once(c).nfkc() {
                out.push(uncurl_quote(part));
            }
        }
        _ => out.push(uncurl_quote(c)),
    }
}

/// ftfy's `uncurl_quotes`.
fn uncurl_quote(c: char) -> char {
    match c {
        '\u{2BC}' | '\u{2018}'..='\u{201B}' => '\'',
        '\u{201C}'..='\u{201F}' => '"',
        _ => c,
    }
}

/// ftfy's `fix_line_breaks`; borrowed where the text has no break to change.
fn fix_line_breaks(text: &str) -> Cow<'_, str> {
    if !text.contains(['\r', '\u{2028}', '\u{2029}', '\u{85}']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\u{2028}' | '\u{2029}' | '\u{85}' => out.push('\n'),
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn remove_terminal_escapes(text: &str) -> Cow<'_, str> {
    match &*ANSI_ESCAPE {
        Some(re) if text.contains('\x1b') => re.replace_all(text, ""),
        _ => Cow::Borrowed(text),
    }
}

/// ftfy's `CONTROL_CHARS`.
fn is_removed_control(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{8}'
            | '\u{b}'
            | '\u{e}'..='\u{1f}'
            | '\u{7f}'
            | '\u{206a}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffc}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values are the reference's `whitespace_clean(basic_clean(text)).lower()`.
    #[test]
    fn cleanup_examples() {
        let cases = [
            ("  Hello\t\tWORLD \n", "hello world"),
            ("\u{201C}Curly\u{201D} \u{2018}quotes\u{2019}", "\"curly\" 'quotes'"),
            ("\u{FB01}ne \u{FB02}our", "fine flour"),
            (
                "\u{FF2C}\u{FF2F}\u{FF35}\u{FF24}\u{3000}\u{FF2E}\u{FF2F}\u{FF29}\u{FF33}\u{FF25}",
                "loud noise",
            ),
            ("a&amp;amp;b &lt;3", "a&b <3"),
            ("x < y &amp;amp;lt; z", "x < y &lt; z"),
            ("e\u{301}t\u{E9}", "\u{E9}t\u{E9}"),
            ("\u{1b}[31mred\u{1b}[0m", "red"),
            ("a\u{0}b\u{7}c\u{feff}d", "abcd"),
            ("\u{91}hi\u{92}", "'hi'"),
            ("line\r\nbreak\u{2028}x", "line break x"),
            ("\u{a0}\u{2003}NBSP\u{a0}\u{a0}and\u{200b}zwsp", "nbsp and\u{200b}zwsp"),
            ("\u{3A3}\u{39F}\u{3A6}\u{39F}\u{3A3}", "\u{3C3}\u{3BF}\u{3C6}\u{3BF}\u{3C2}"),
            ("\u{130}stanbul", "i\u{307}stanbul"),
            (" \t\r\n ", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(clean(input), expected, "{input:?}");
        }
    }

    /// The plain-ASCII shortcut gives what every step gives, on texts built from the
    /// characters it takes and the ones next to them it must refuse.
    #[test]
    fn plain_ascii_shortcut_matches_every_step() {
        let alphabet = [
            "a", "B", "z", "0", "9", " ", "  ", "\t", "\n", "\r", "\r\n", "\x0c", "\x0b", "\x1c", "\x1b[31m",
            "&", "&amp;", "&lt;", "<", "'", "\"", "~", "\x7f", "\0", ".", "_", "!",
        ];
        // xorshift: a fixed, dependency-free stream of picks.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut checked = 0;
        for _ in 0..4000 {
            let mut text = String::new();
            for _ in 0..(state % 12) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                text.push_str(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            for mode in [Clean::Lower, Clean::FtfyLower, Clean::Whitespace] {
                assert_eq!(clean_with(&text, mode), clean_full(&text, mode), "{mode:?} {text:?}");
            }
            checked += usize::from(is_plain_ascii(&text));
        }
        assert!(checked > 500, "only {checked} texts took the shortcut");
    }

    // Expected values are open_clip's `get_clean_fn(mode)(text)` (open_clip 3.3).
    #[test]
    fn open_clip_cleaning_modes() {
        let cases = [
            (
                "Hello_World, it's  \u{C9}T\u{C9}!\t(&amp; more)",
                [
                    "hello_world, it's \u{E9}t\u{E9}! (& more)",
                    "Hello_World, it's \u{C9}T\u{C9}! (& more)",
                    "hello world its \u{E9}t\u{E9} more",
                ],
            ),
            ("  A.B-C  ", ["a.b-c", "A.B-C", "abc"]),
            ("...", ["...", "...", ""]),
        ];
        for (input, expected) in cases {
            for (mode, want) in
                [Clean::Lower, Clean::Whitespace, Clean::Canonicalize].into_iter().zip(expected)
            {
                assert_eq!(clean_with(input, mode), want, "{mode:?} {input:?}");
            }
        }
    }
}
