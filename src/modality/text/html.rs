//! HTML character references, decoded the way the reference cleanup decodes them.
//!
//! Two decoders run in the reference: ftfy's `unescape_html` (inside `ftfy.fix_text`) and
//! CPython's `html.unescape` (applied twice by `basic_clean`). No crate reproduces either one
//! (`html-escape`, for one, skips the references without `;`, the Windows-1252 remapping of
//! numeric references and the second code point of two-character entities), so both are written
//! out here, mirroring CPython 3.11 `html/__init__.py` and ftfy 6.3 `fixes.unescape_html` /
//! `chardata.HTML_ENTITIES`. The entity table is the WHATWG list as shipped by `web_atoms`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::LazyLock;

/// Windows-1252 meaning of bytes 0x80..=0x9F; the five bytes Windows-1252 leaves undefined map
/// to the C1 control of the same value (Python's `html._invalid_charrefs`, ftfy's
/// "sloppy-windows-1252").
const WINDOWS_1252_C1: [char; 32] = [
    '\u{20AC}', '\u{81}', '\u{201A}', '\u{192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}', '\u{2C6}',
    '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8D}', '\u{17D}', '\u{8F}', '\u{90}', '\u{2018}',
    '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}', '\u{2DC}', '\u{2122}', '\u{161}',
    '\u{203A}', '\u{153}', '\u{9D}', '\u{17E}', '\u{178}',
];

/// The Windows-1252 character for a C1 control (U+0080..=U+009F); other characters unchanged.
pub(crate) fn windows_1252_c1(c: char) -> char {
    match u32::from(c) {
        n @ 0x80..=0x9F => WINDOWS_1252_C1[(n - 0x80) as usize],
        _ => c,
    }
}

/// The text of a named reference (`"amp;"`, or `"amp"` for the legacy names that HTML accepts
/// without `;`), like Python's `html.entities.html5`.
fn named_entity(name: &str) -> Option<String> {
    match web_atoms::NAMED_ENTITIES.get(name) {
        // The map also holds every prefix of every name, with (0, 0), for incremental parsers.
        Some(&(0, _)) | None => None,
        Some(&(first, second)) => {
            Some([first, second].into_iter().filter(|&cp| cp != 0).filter_map(char::from_u32).collect())
        }
    }
}

/// ftfy's `HTML_ENTITIES`: `"&amp;"`, `"&EACUTE;"`, ... to the replacement text.
static FTFY_ENTITIES: LazyLock<HashMap<String, String>> = LazyLock::new(|| {
    let mut table = HashMap::new();
    for name in web_atoms::NAMED_ENTITIES.keys() {
        let Some(value) = named_entity(name).filter(|_| name.ends_with(';')) else {
            continue;
        };
        // ftfy also accepts an all-caps spelling of a lower-case name, unless Python's
        // `html.unescape` would already decode (part of) that spelling.
        if !name.bytes().any(|b| b.is_ascii_uppercase()) {
            let upper = format!("&{}", name.to_ascii_uppercase());
            if unescape_all(&upper) == upper {
                table.insert(upper, value.to_uppercase());
            }
        }
        table.insert(format!("&{name}"), value);
    }
    table
});

/// CPython's `html.unescape`: decodes every character reference, including legacy names
/// without `;` (also as a prefix, `&ampfoo` -> `&foo`) and invalid numeric references.
pub(crate) fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(unescape_all(text))
}

fn unescape_all(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        match char_ref(after) {
            Some((consumed, replacement)) => {
                out.push_str(&replacement);
                rest = &after[consumed..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Matches `#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?` at the start of `s` (the text
/// after a `&`) and returns the matched length and its replacement.
fn char_ref(s: &str) -> Option<(usize, String)> {
    let bytes = s.as_bytes();
    if bytes.first() == Some(&b'#') {
        let (radix, start) = match bytes.get(1) {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let digits = bytes[start..]
            .iter()
            .take_while(|b| if radix == 16 { b.is_ascii_hexdigit() } else { b.is_ascii_digit() })
            .count();
        if digits == 0 {
            return None;
        }
        let end = start + digits;
        let consumed = end + usize::from(bytes.get(end) == Some(&b';'));
        let value = s[start..end].chars().fold(0u64, |acc, c| {
            let digit = u64::from(c.to_digit(radix).unwrap_or(0));
            // Saturating keeps every too-large number above 0x10FFFF, which is all that matters.
            acc.saturating_mul(u64::from(radix)).saturating_add(digit)
        });
        return Some((consumed, numeric_ref(value)));
    }
    let name_end = s
        .char_indices()
        .take(32)
        .find(|(_, c)| matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';'))
        .map_or_else(|| s.char_indices().nth(32).map_or(s.len(), |(i, _)| i), |(i, _)| i);
    if name_end == 0 {
        return None;
    }
    let consumed = name_end + usize::from(bytes.get(name_end) == Some(&b';'));
    let name = &s[..consumed];
    if let Some(value) = named_entity(name) {
        return Some((consumed, value));
    }
    // The longest prefix (at least two characters, shorter than the whole) that is an entity.
    let cuts: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
    for &cut in cuts.iter().rev() {
        if let Some(value) = named_entity(&name[..cut]) {
            return Some((consumed, format!("{value}{}", &name[cut..])));
        }
    }
    Some((consumed, format!("&{name}")))
}

/// Python's replacement for a numeric character reference.
fn numeric_ref(value: u64) -> String {
    let replacement = match value {
        0 => Some('\u{FFFD}'),
        0x0D => Some('\r'),
        0x80..=0x9F => char::from_u32(value as u32).map(windows_1252_c1),
        0xD800..=0xDFFF => Some('\u{FFFD}'),
        v if v > 0x10FFFF => Some('\u{FFFD}'),
        0x01..=0x08 | 0x0B | 0x0E..=0x1F | 0x7F | 0xFDD0..=0xFDEF => None,
        v if v & 0xFFFE == 0xFFFE => None,
        v => char::from_u32(v as u32),
    };
    replacement.map(String::from).unwrap_or_default()
}

/// ftfy's `unescape_html`: only complete references `&#?[0-9A-Za-z]{1,24};` are decoded, named
/// ones from the HTML5 list (plus all-caps spellings), numeric ones only when Python decodes the
/// whole reference.
pub(crate) fn ftfy_unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut pos = 0;
    while let Some(found) = text[pos..].find('&') {
        let at = pos + found;
        let body = at + 1 + usize::from(bytes.get(at + 1) == Some(&b'#'));
        let run = bytes[body..].iter().take_while(|b| b.is_ascii_alphanumeric()).count();
        if (1..=24).contains(&run) && bytes.get(body + run) == Some(&b';') {
            let end = body + run + 1;
            let entity = &text[at..end];
            let replacement: Cow<'_, str> = if let Some(value) = FTFY_ENTITIES.get(entity) {
                Cow::Borrowed(value)
            } else if entity.starts_with("&#") {
                let decoded = unescape_all(entity);
                if decoded.contains(';') { Cow::Borrowed(entity) } else { Cow::Owned(decoded) }
            } else {
                Cow::Borrowed(entity)
            };
            out.push_str(&text[copied..at]);
            out.push_str(&replacement);
            copied = end;
            pos = end;
        } else {
            pos = at + 1;
        }
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_unescape_cases() {
        // Expected values are what CPython 3.11 `html.unescape` returns.
        let cases = [
            ("&amp;", "&"),
            ("&amp", "&"),
            ("&ampfoo", "&foo"),
            ("&notit;", "\u{AC}it;"),
            ("&#65;&#x42;&#X43", "ABC"),
            ("&#0;", "\u{FFFD}"),
            ("&#x80;", "\u{20AC}"),
            ("&#x81;", "\u{81}"),
            ("&#1;x", "x"),
            ("&#xD800;", "\u{FFFD}"),
            ("&#99999999999999999999;", "\u{FFFD}"),
            ("&#xFFFF;", ""),
            ("&#;", "&#;"),
            ("&#x;", "&#x;"),
            ("& amp;", "& amp;"),
            ("&bogus;", "&bogus;"),
            ("&NotNestedGreaterGreater;", "\u{2AA2}\u{338}"),
        ];
        for (input, expected) in cases {
            assert_eq!(unescape(input), expected, "{input:?}");
        }
    }

    #[test]
    fn entity_table_has_python_names() {
        // Python 3.11's `html.entities.html5` holds 2231 names, 106 of them without `;`.
        let names: Vec<&str> =
            web_atoms::NAMED_ENTITIES.keys().copied().filter(|name| named_entity(name).is_some()).collect();
        assert_eq!(names.len(), 2231);
        assert_eq!(names.iter().filter(|n| !n.ends_with(';')).count(), 106);
    }

    #[test]
    fn ftfy_unescape_cases() {
        // Expected values are what ftfy 6.3 `fixes.unescape_html` returns.
        let cases = [
            ("&lt;tag&gt;", "<tag>"),
            ("P&EACUTE;REZ", "P\u{C9}REZ"),
            ("BUNDESSTRA&SZLIG;E", "BUNDESSTRASSE"),
            ("&ntilde; &Ntilde; &NTILDE; &nTILDE;", "\u{F1} \u{D1} \u{D1} &nTILDE;"),
            ("this&not that", "this&not that"),
            ("&amp", "&amp"),
            ("&#65abc;", "&#65abc;"),
            ("&#x41;", "A"),
            ("&#1;", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(ftfy_unescape(input), expected, "{input:?}");
        }
    }
}
