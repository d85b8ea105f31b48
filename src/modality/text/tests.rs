//! Parity of cleanup and tokenization with the reference, on the committed golden strings:
//! `tests/fixtures/text/tokenizer_goldens.json` (written by `tools/make_tokenizer_goldens.py`)
//! and, for mojibake repair, `tests/fixtures/text/ftfy_goldens.json` (ftfy's own test corpus plus
//! generated mojibake, written by `tools/make_ftfy_goldens.py`).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::*;

/// Golden strings whose cleanup differs from the reference, and why (see [`clean`]).
const CLEANUP_EXCEPTIONS: &[(&str, &str)] = &[
    (
        "unicode_version/01",
        "Garay capitals are unassigned in Python 3.11's Unicode 14.0, so str.lower keeps them",
    ),
    ("unicode_version/02", "U+A7CB/U+A7DC got lower-case mappings after Unicode 14.0"),
];

/// Mojibake goldens whose cleanup or ids differ from the reference, and why. None do: bindery's
/// port of ftfy's `fix_encoding` agrees with ftfy on every case of the corpus.
const FTFY_EXCEPTIONS: &[(&str, &str)] = &[];

/// Golden strings whose cleanup matches but whose ids differ, and why.
const TOKEN_EXCEPTIONS: &[(&str, &str)] = &[
    (
        "unicode_version/00",
        "the reference's case-insensitive `regex` pattern matches U+0345 with no alternative \
         (it separates words), Oniguruma counts it as a letter",
    ),
    (
        "unicode_version/03",
        "U+0C5C is a letter in the `regex` package's Unicode tables, unassigned in Oniguruma's",
    ),
];

#[derive(Debug, Deserialize)]
struct Golden {
    name: String,
    text: String,
    cleaned: String,
    ids: Vec<i64>,
}

const CONTEXT_LENGTH: usize = 77;
const START: u32 = 49406;
const END: u32 = 49407;
const PAD: u32 = 0;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/imagebind-fixture")
}

fn read_goldens(file: &str) -> Vec<Golden> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/text").join(file);
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn goldens() -> Vec<Golden> {
    read_goldens("tokenizer_goldens.json")
}

fn ftfy_goldens() -> Vec<Golden> {
    read_goldens("ftfy_goldens.json")
}

fn spec() -> TextPreprocess {
    TextPreprocess {
        tokenizer: "tokenizer.json".into(),
        tokenizer_kind: TokenizerKind::Clip,
        clean: Clean::Lower,
        context_length: CONTEXT_LENGTH,
        start_token: Some(START),
        end_token: Some(END),
        pad_token: PAD,
        trim_padding: false,
    }
}

fn preprocessor() -> TextPreprocessor {
    TextPreprocessor::new(&spec(), &fixture_dir()).unwrap()
}

fn exception<'a>(list: &'a [(&str, &str)], name: &str) -> Option<&'a str> {
    list.iter().find(|(n, _)| *n == name).map(|(_, why)| *why)
}

/// Checks names are unique, rows well formed and every exception names a golden.
fn assert_well_formed(goldens: &[Golden], exceptions: &[&[(&str, &str)]]) {
    let mut names: Vec<&str> = goldens.iter().map(|g| g.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), goldens.len(), "golden names must be unique");
    for g in goldens {
        assert_eq!(g.ids.len(), CONTEXT_LENGTH, "{}", g.name);
        assert_eq!(g.ids[0], i64::from(START), "{}", g.name);
    }
    for (name, _) in exceptions.iter().copied().flatten() {
        assert!(names.contains(name), "exception {name} names no golden string");
    }
}

/// Compares bindery's cleanup with each golden's, honouring (and re-checking) `exceptions`.
fn cleanup_mismatches(goldens: &[Golden], exceptions: &[(&str, &str)]) -> Vec<String> {
    let mut mismatches = Vec::new();
    for g in goldens {
        let got = clean(&g.text);
        match exception(exceptions, &g.name) {
            Some(why) if got == g.cleaned => {
                mismatches.push(format!("{}: documented exception no longer differs ({why})", g.name))
            }
            Some(_) => {}
            None if got != g.cleaned => {
                mismatches.push(format!("{}: want {:?}, got {got:?}", g.name, g.cleaned))
            }
            None => {}
        }
    }
    mismatches
}

/// Compares bindery's ids with each golden's, honouring (and re-checking) `exceptions`.
/// Returns the mismatches and how many goldens matched outside the exceptions.
fn id_mismatches(goldens: &[Golden], exceptions: &[&[(&str, &str)]]) -> (Vec<String>, usize) {
    let preprocessor = preprocessor();
    let mut empty_row = vec![i64::from(PAD); CONTEXT_LENGTH];
    empty_row[0] = i64::from(START);
    empty_row[1] = i64::from(END);
    let mut mismatches = Vec::new();
    let mut matched = 0;
    for g in goldens {
        let mut row = vec![-1; CONTEXT_LENGTH];
        let result = preprocessor.encode_into(&g.text, &mut row);
        if g.cleaned.is_empty() {
            // The reference embeds `[start, end]`; bindery rejects such input instead.
            assert_eq!(g.ids, empty_row, "{}", g.name);
            let expected_empty = g.text.is_empty();
            match result {
                Err(TextError::Empty) if expected_empty => {}
                Err(TextError::EmptyAfterCleanup) if !expected_empty => {}
                other => mismatches.push(format!("{}: expected rejection, got {other:?}", g.name)),
            }
            continue;
        }
        if let Err(e) = result {
            mismatches.push(format!("{}: {e}", g.name));
            continue;
        }
        let why = exceptions.iter().find_map(|list| exception(list, &g.name));
        match why {
            Some(why) if row == g.ids => {
                mismatches.push(format!("{}: documented exception no longer differs ({why})", g.name))
            }
            Some(_) => {}
            None if row != g.ids => {
                mismatches.push(format!("{} ({:?}):\n  want {:?}\n  got  {row:?}", g.name, g.cleaned, g.ids))
            }
            None => matched += 1,
        }
    }
    (mismatches, matched)
}

#[test]
fn goldens_are_well_formed() {
    let goldens = goldens();
    assert!(goldens.len() >= 250, "only {} golden strings", goldens.len());
    assert_well_formed(&goldens, &[CLEANUP_EXCEPTIONS, TOKEN_EXCEPTIONS]);
}

#[test]
fn cleanup_matches_reference() {
    let mismatches = cleanup_mismatches(&goldens(), CLEANUP_EXCEPTIONS);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn ids_match_reference() {
    let (mismatches, matched) = id_mismatches(&goldens(), &[CLEANUP_EXCEPTIONS, TOKEN_EXCEPTIONS]);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(matched >= 250, "only {matched} golden strings matched");
}

#[test]
fn ftfy_goldens_are_well_formed() {
    let goldens = ftfy_goldens();
    assert!(goldens.len() >= 700, "only {} mojibake golden strings", goldens.len());
    assert_well_formed(&goldens, &[FTFY_EXCEPTIONS]);
    // The corpus must exercise the repair: most inputs change under the reference cleanup.
    let changed = goldens.iter().filter(|g| g.cleaned != g.text.trim().to_lowercase()).count();
    assert!(changed >= 400, "only {changed} mojibake goldens are changed by the cleanup");
}

#[test]
fn mojibake_cleanup_matches_reference() {
    let mismatches = cleanup_mismatches(&ftfy_goldens(), FTFY_EXCEPTIONS);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn mojibake_ids_match_reference() {
    let goldens = ftfy_goldens();
    let (mismatches, matched) = id_mismatches(&goldens, &[FTFY_EXCEPTIONS]);
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    assert!(matched + FTFY_EXCEPTIONS.len() == goldens.len(), "only {matched} mojibake goldens matched");
}

#[test]
fn rejects_a_row_of_the_wrong_length() {
    let mut row = vec![0; CONTEXT_LENGTH - 1];
    let err = preprocessor().encode_into("a dog", &mut row).unwrap_err();
    assert!(matches!(
        err,
        TextError::RowLength {
            expected: CONTEXT_LENGTH,
            actual
        } if actual == CONTEXT_LENGTH - 1
    ));
}

#[test]
fn missing_tokenizer_is_a_load_error() {
    let mut spec = spec();
    spec.tokenizer = "no-such-tokenizer.json".into();
    let err = TextPreprocessor::new(&spec, &fixture_dir()).unwrap_err();
    assert!(matches!(err, TextError::Load { .. }), "{err:?}");
}

#[test]
fn special_ids_must_be_in_the_vocabulary() {
    let mut spec = spec();
    spec.end_token = Some(1_000_000);
    let err = TextPreprocessor::new(&spec, &fixture_dir()).unwrap_err();
    assert!(err.to_string().contains("end_token"), "{err}");
}

#[test]
fn context_length_sets_truncation_and_padding() {
    let mut spec = spec();
    spec.context_length = 4;
    spec.pad_token = 7;
    let preprocessor = TextPreprocessor::new(&spec, &fixture_dir()).unwrap();
    let mut row = vec![0; 4];
    let fits = preprocessor.encode_into("a", &mut row).unwrap();
    // "a" is one token (320 in the reference vocabulary, see the goldens).
    assert_eq!(row, [i64::from(START), 320, i64::from(END), 7]);
    assert_eq!(fits, Encoded { tokens: 3, truncated: false });
    let cut = preprocessor.encode_into("a photo of a cat", &mut row).unwrap();
    assert_eq!(row, [i64::from(START), 320, 1125, i64::from(END)]);
    // Five words of one token each, counted to the end although two were kept.
    assert_eq!(cut, Encoded { tokens: 7, truncated: true });
    let exact = preprocessor.encode_into("a photo", &mut row).unwrap();
    assert_eq!(exact, Encoded { tokens: 4, truncated: false }, "exactly the context is not cut");
}

#[test]
fn a_long_text_is_counted_to_its_end() {
    // Far beyond one tokenizer chunk, so the count continues past the chunk that filled the row.
    let words = 3_000;
    let text = vec!["cat"; words].join(" ");
    let mut row = vec![0; CONTEXT_LENGTH];
    let encoded = preprocessor().encode_into(&text, &mut row).unwrap();
    assert_eq!(encoded, Encoded { tokens: words + 2, truncated: true });
    assert_eq!(row[CONTEXT_LENGTH - 1], i64::from(END));
}

#[test]
fn clean_none_leaves_the_text_as_given() {
    let text = "  Caf\u{e9} &amp; \u{201c}rain\u{201d}\n\tBIRDS  ";
    assert_eq!(clean_with(text, Clean::None), text);
    // The same text under open_clip's cleanings does change: "none" is not one of them.
    assert_ne!(clean_with(text, Clean::Whitespace), text);
}

#[test]
fn clean_ftfy_lower_unescapes_only_what_ftfy_does() {
    // ftfy leaves entities alone in text with markup; open_clip's `basic_clean` then unescapes
    // twice, which Hugging Face's CLIPTokenizer does not (values from transformers 4.30.2).
    let text = "  Fish <i>&amp;</i> CHIPS\u{a0} \n caf\u{c3}\u{a9} ";
    assert_eq!(clean_with(text, Clean::FtfyLower), "fish <i>&amp;</i> chips café");
    assert_eq!(clean_with(text, Clean::Lower), "fish <i>&</i> chips café");
}

/// The committed CLIP tokenizer gets the direct pre-split (so the parity tests above run it),
/// and the general path it stands in for gives the same rows on every golden, the documented
/// exceptions included.
#[test]
fn direct_pre_split_gives_the_general_paths_rows() {
    let direct = preprocessor();
    assert!(
        matches!(&direct.ids, Ids::Clip { split: Some(_), .. }),
        "the fixture's pre-split is not run directly"
    );
    let mut general = preprocessor();
    if let Ids::Clip { split, .. } = &mut general.ids {
        *split = None;
    }
    let long = vec!["Caf\u{e9} <|endoftext|> it's 42 \u{1F355}!"; 40].join(" ");
    let texts: Vec<String> =
        goldens().into_iter().chain(ftfy_goldens()).map(|g| g.text).chain([long]).collect();
    for text in &texts {
        let (mut want, mut got) = (vec![-1; CONTEXT_LENGTH], vec![-1; CONTEXT_LENGTH]);
        let expected = general.encode_into(text, &mut want).map_err(|e| e.to_string());
        let actual = direct.encode_into(text, &mut got).map_err(|e| e.to_string());
        assert_eq!(actual, expected, "{text:?}");
        assert_eq!(got, want, "{text:?}");
    }
}
