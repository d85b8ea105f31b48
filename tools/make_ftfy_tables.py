#!/usr/bin/env python3
"""Writes ``src/modality/text/ftfy/tables.rs``: the character data of ftfy's mojibake repair.

    tools/.venv/bin/python tools/make_ftfy_tables.py           # (re)write the table file
    tools/.venv/bin/python tools/make_ftfy_tables.py --check   # compare with the committed one

Everything is read from the installed ftfy (pinned in ``requirements.txt``), so the Rust port of
``ftfy.fix_encoding`` carries ftfy's data rather than a restatement of it:

* the single-byte codecs of ``ftfy.chardata.CHARMAP_ENCODINGS``, in order: what bytes 0x80..=0xFF
  and 0x1A decode to (Python's codecs, and ftfy's ``sloppy-*`` variants of the Windows ones, which
  decode unassigned bytes to the same-valued C1 control and 0x1A to U+FFFD), and the inverse;
* ``ALTERED_UTF8_RE`` and ``LOSSY_UTF8_RE`` (byte patterns) and the words ``A_GRAVE_WORD_RE``
  must not precede;
* ``ftfy.chardata.UTF8_CLUES``, the classes behind ``UTF8_DETECTOR_RE``, as code point ranges;
* ``ftfy.badness.BADNESS_RE``, the mojibake heuristic, as a ``regex`` crate pattern.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import ftfy
import ftfy.bad_codecs  # noqa: F401  registers the sloppy-* codecs
from ftfy import badness, chardata, fixes

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "src" / "modality" / "text" / "ftfy" / "tables.rs"

# Every class in these tables lies in the Basic Multilingual Plane (checked).
_PLANE_END = 0x10000
_ASTRAL = "".join(chr(c) for c in range(_PLANE_END, 0x110000))

# What a verbose Python pattern ignores outside classes (``sre_parse.WHITESPACE``).
_VERBOSE_LAYOUT = " \t\n\r\v\f"


def _members(class_body: str) -> list[int]:
    """Code points matched by the Python character class ``[class_body]``."""
    pattern = re.compile("[" + class_body + "]")
    found = [c for c in range(_PLANE_END) if pattern.fullmatch(chr(c))]
    if pattern.search(_ASTRAL):
        raise ValueError(f"class {class_body!r} reaches past the BMP")
    if not found:
        raise ValueError(f"empty class {class_body!r}")
    return found


def _ranges(points: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for c in points:
        if out and out[-1][1] == c - 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


def _char(c: int) -> str:
    return f"'\\u{{{c:x}}}'"


def _regex_class_body(points: list[int]) -> str:
    """A ``regex`` crate class body: ranges of ``\\x{..}`` escapes, safe inside ``[...]``."""
    parts = []
    for lo, hi in _ranges(points):
        parts.append(f"\\\\x{{{lo:x}}}" if lo == hi else f"\\\\x{{{lo:x}}}-\\\\x{{{hi:x}}}")
    return "".join(parts)


def _regex_class(class_text: str) -> str:
    """A Python character class (``[...]``, not negated) as an equivalent ``regex`` crate class."""
    return "[" + _regex_class_body(_members(class_text[1:-1])) + "]"


def badness_pattern() -> str:
    """``BADNESS_RE`` (a verbose Python pattern) rewritten for the ``regex`` crate.

    Classes are expanded to the code points Python matches, literals become ``\\x{..}`` escapes,
    and the verbose mode's layout is dropped. ``\\s`` becomes the set of characters Python's
    ``\\s`` matches (it includes U+001C..=U+001F, which the crate's ``\\s`` does not); ``\\w``
    becomes letters, numbers and ``_`` (Python's ``str.isalnum`` or ``_``), in the crate's
    Unicode version. The pattern is checked to use nothing else (in particular no groups, so
    every ``|`` separates two of its top-level alternatives).
    """
    pattern = badness.BADNESS_RE.pattern
    if badness.BADNESS_RE.flags & ~(re.VERBOSE | re.UNICODE):
        raise ValueError("unexpected flags on BADNESS_RE")
    spaces = "[" + _regex_class_body([c for c in range(0x110000) if re.fullmatch(r"\s", chr(c))]) + "]"
    out = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch in _VERBOSE_LAYOUT:
            i += 1
        elif ch == "#":
            i = pattern.index("\n", i)
        elif ch == "[":
            end = pattern.index("]", i + 2)
            body = pattern[i : end + 1]
            if body.startswith("[^"):
                if not re.fullmatch(r"\[\^[A-Za-z-]+\]", body):
                    raise ValueError(f"unexpected negated class {body!r}")
                out.append(body)
            else:
                out.append(_regex_class(body))
            i = end + 1
        elif ch == "\\":
            escape = pattern[i + 1]
            if escape == "s":
                out.append(spaces)
            elif escape == "w":
                out.append("[\\\\p{L}\\\\p{N}_]")
            else:
                raise ValueError(f"unexpected escape \\{escape}")
            i += 2
        elif ch in "|?^.":
            out.append(ch)
            i += 1
        elif ch in "()*+{}$]":
            raise ValueError(f"unexpected metacharacter {ch!r}")
        else:
            out.append(f"\\\\x{{{ord(ch):x}}}")
            i += 1
    return "".join(out)


def _bytes_pattern(pattern: bytes) -> str:
    """A Python bytes pattern made of classes, literals and ``|`` as a ``regex::bytes`` pattern
    (for a Rust string literal): every byte but the metacharacters it uses is escaped."""
    out = ["(?-u)"]
    for b in pattern:
        ch = chr(b)
        if ch in "[]-|?":
            out.append(ch)
        elif ch in "()*+{}.^$\\":
            raise ValueError(f"unexpected metacharacter {ch!r} in {pattern!r}")
        else:
            out.append(f"\\\\x{b:02x}")
    return "".join(out)


def _a_grave_exceptions() -> list[bytes]:
    """The words ``A_GRAVE_WORD_RE`` (``\\xc3 (?!word|...)``) keeps its match from preceding."""
    match = re.fullmatch(rb"\xc3 \(\?!(.*)\)", fixes.A_GRAVE_WORD_RE.pattern)
    if match is None:
        raise ValueError(f"unexpected A_GRAVE_WORD_RE {fixes.A_GRAVE_WORD_RE.pattern!r}")
    words = match.group(1).split(b"|")
    if any(re.search(rb"[^a-z ]", w) for w in words):
        raise ValueError(f"unexpected A_GRAVE_WORD_RE {fixes.A_GRAVE_WORD_RE.pattern!r}")
    return words


def _rust_ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def render() -> str:
    lines = [
        "// @generated by tools/make_ftfy_tables.py from ftfy "
        + ftfy.__version__
        + "; do not edit.",
        "//! ftfy's character data, read from ftfy itself (see `tools/make_ftfy_tables.py`).",
        "",
        "/// A single-byte codec of ftfy's `CHARMAP_ENCODINGS`.",
        "pub(super) struct Charmap {",
        "    /// ftfy's name for the codec (`possible_encoding`'s argument).",
        "    pub name: &'static str,",
        "    /// Whether this is one of ftfy's `sloppy-*` codecs: `replace_lossy_sequences` applies,",
        "    /// and byte 0x1A stands for U+FFFD (so U+001A cannot be encoded).",
        "    pub sloppy: bool,",
        "    /// What bytes 0x80..=0xFF (and 0x1A, in the sloppy codecs) decode to, as",
        "    /// (character, byte) sorted by character: the codec's encoder for non-ASCII text.",
        "    pub encode: &'static [(char, u8)],",
        "}",
        "",
        "/// ftfy's `CHARMAP_ENCODINGS`, in the order ftfy tries them.",
        f"pub(super) static CHARMAPS: [Charmap; {len(chardata.CHARMAP_ENCODINGS)}] = [",
    ]
    for encoding in chardata.CHARMAP_ENCODINGS:
        high = bytes(range(0x80, 0x100)).decode(encoding)
        sub = b"\x1a".decode(encoding)
        if len(high) != 128 or len(sub) != 1:
            raise ValueError(f"{encoding} is not a single-byte codec")
        pairs = {ch: 0x80 + i for i, ch in enumerate(high)}
        sloppy = encoding.startswith("sloppy")
        if sub != ("\ufffd" if sloppy else "\x1a"):
            raise ValueError(f"{encoding} decodes byte 0x1A to {sub!r}")
        if sloppy:
            pairs[sub] = 0x1A
        if len(pairs) != 128 + sloppy:
            raise ValueError(f"{encoding} decodes two bytes to one character")
        for ch, byte in pairs.items():
            if ch.encode(encoding) != bytes([byte]):
                raise ValueError(f"{encoding} does not round-trip {ch!r}")
        lines.append("    Charmap {")
        lines.append(f'        name: "{encoding}",')
        lines.append(f"        sloppy: {'true' if sloppy else 'false'},")
        lines.append("        encode: &[")
        ordered = [f"({_char(ord(ch))}, 0x{byte:02x})," for ch, byte in sorted(pairs.items())]
        for row in range(0, len(ordered), 4):
            lines.append("            " + " ".join(ordered[row : row + 4]))
        lines.append("        ],")
        lines.append("    },")
    lines.append("];")
    lines.append("")
    for name, body in chardata.UTF8_CLUES.items():
        ranges = _ranges(_members(body))
        lines.append(f"/// ftfy's `UTF8_CLUES[\"{name}\"]`, as sorted inclusive ranges.")
        lines.append(f"pub(super) static {_rust_ident(name)}: &[(char, char)] = &[")
        for lo, hi in ranges:
            lines.append(f"    ({_char(lo)}, {_char(hi)}),")
        lines.append("];")
        lines.append("")
    for name in ("ALTERED_UTF8_RE", "LOSSY_UTF8_RE"):
        lines.append(f"/// ftfy's `{name}`, a `regex::bytes` pattern.")
        pattern = _bytes_pattern(getattr(chardata, name).pattern)
        lines.append(f'pub(super) const {name.removesuffix("_RE")}: &str = "{pattern}";')
        lines.append("")
    words = ", ".join('b"' + w.decode("ascii") + '"' for w in _a_grave_exceptions())
    lines.append("/// What may not follow `C3 20` for ftfy's `A_GRAVE_WORD_RE` to match it.")
    lines.append(f"pub(super) const A_GRAVE_WORD_EXCEPTIONS: &[&[u8]] = &[{words}];")
    lines.append("")
    lines.append("/// ftfy's `BADNESS_RE`, in `regex` crate syntax (see `badness_pattern` in the generator).")
    lines.append("pub(super) const BADNESS: &str = concat!(")
    for i, alternative in enumerate(badness_pattern().split("|")):
        lines.append(f'    "{"|" if i else ""}{alternative}",')
    lines.append(");")
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="compare with the committed file instead")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv[1:])
    text = render()
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print("tables up to date" if same else f"differs: {args.out}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
