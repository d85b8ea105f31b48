"""Writes tests/fixtures/text/tokenizer_goldens.json from the reference tokenizer.

Each entry holds a named input string, the reference cleanup of it
(``whitespace_clean(basic_clean(text)).lower()``) and the 77 ids the reference
``imagebind.data.load_and_transform_text`` produces for it. The Rust tests compare bindery's
cleanup and tokenizer against these.

Usage: python tools/make_tokenizer_goldens.py [OUT]
       python tools/make_tokenizer_goldens.py --check    # regenerate in a scratch file and compare
"""

from __future__ import annotations

import argparse
import html.entities
import json
import sys
import tempfile
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools.compat import install_torchvision_alias  # noqa: E402

install_torchvision_alias()

import imagebind.data as data  # noqa: E402
from imagebind.models import multimodal_preprocessors as mp  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "text" / "tokenizer_goldens.json"

CAPTIONS = [
    "A dog.",
    "A car",
    "A bird",
    "a photo of a cat",
    "A man riding a horse on the beach at sunset.",
    "Two children playing football in a park.",
    "A plate of spaghetti with tomato sauce and basil.",
    "An aerial view of a city at night with bright lights.",
    "A red double-decker bus driving through London.",
    "The sound of rain falling on a tin roof.",
    "A close-up of a bee collecting pollen from a yellow flower.",
    "Snow-covered mountains reflected in a calm lake",
    "a woman playing the violin on stage",
    "A black and white photograph of an old train station.",
    "Waves crashing against the rocks during a storm",
    "A bowl of fresh fruit: apples, bananas, and grapes.",
    "People walking across a busy street in Tokyo",
    "A cute puppy sleeping on a blue blanket",
    "A chef slicing vegetables in a restaurant kitchen.",
    "The Eiffel Tower illuminated at night",
    "An astronaut floating in space above the Earth",
    "A vintage typewriter on a wooden desk",
    "Birds chirping in the early morning forest",
    "A crowd cheering at a rock concert",
    "A glass of orange juice next to a stack of pancakes",
    "a small boat sailing on the open sea",
    "A cat knocking a cup off the table",
    "Thunder rumbling in the distance",
    "A painting of sunflowers in the style of Van Gogh",
    "A microscope image of red blood cells",
    "Someone typing quickly on a mechanical keyboard",
    "A baby laughing",
    "A helicopter landing on a rooftop helipad",
    "An empty road through the desert",
    "A street musician playing the saxophone",
    "Fireworks exploding over the harbour on New Year's Eve",
    "a diagram of the human heart",
    "Leaves rustling in the wind",
    "A steaming cup of coffee on a rainy day",
    "A golden retriever catching a frisbee",
]

PUNCTUATION = [
    "Hello, world!",
    "Wait... what?!",
    "Is this real??? Yes!!!",
    "(parentheses) [brackets] {braces} <angles>",
    "semi;colon:colon - dash -- double -- em\u2014dash en\u2013dash",
    "quotes: \"double\" 'single' `back`",
    "slashes / and \\ backslashes | pipes",
    "math: 1 + 2 = 3, 4 * 5 / 6 % 7 ^ 8",
    "@mention #hashtag $dollar %percent &ampersand *star",
    "~tilde_underscore_",
    "...",
    "!!!???",
    "a.b.c.d",
    "e.g. i.e. etc. vs.",
    "\u00bfQu\u00e9? \u00a1S\u00ed!",
    "\u00ab guillemets \u00bb \u2039 single \u203a",
    "bullet \u2022 point \u00b7 middle dot \u2026 ellipsis",
    "\u00a9 2024 \u00ae \u2122 \u00a7 \u00b6 \u2020 \u2021",
]

NUMBERS = [
    "1234567890",
    "3.14159",
    "There are 12 apples and 345 oranges.",
    "1,000,000 people",
    "-42 degrees",
    "0.001%",
    "2024-01-15 13:45:00",
    "+1 (555) 123-4567",
    "1st 2nd 3rd 4th 21st",
    "\u00bd \u00bc \u00be fractions",
    "x\u00b2 + y\u00b3 = z\u2074",
    "\u2160 \u2161 \u2162 \u2163 roman numerals",
    "\u0661\u0662\u0663 Arabic-Indic digits",
    "\u0967\u0968\u0969 Devanagari digits",
    "\u2460 \u2461 \u2462 circled",
    "\u4e00\u4e8c\u4e09 \u5341 \u767e",
    "1e10 0x1F 0b1010 007",
    "$19.99 \u20ac5,00 \u00a3100 \u00a5500",
]

CONTRACTIONS = [
    "it's",
    "don't can't won't",
    "they're we're you're",
    "I've we've they've",
    "I'm",
    "I'll you'll she'll",
    "I'd he'd",
    "IT'S DON'T THEY'RE I'VE I'M I'LL I'D",
    "The dog'S bone",
    "John'S car'S wheel",
    "it\u2019s curly",
    "rock 'n' roll",
    "''s double apostrophe",
    "'s at start",
    "ends with '",
    "o'clock",
    "x'\u017f long s",
    "can'T and isn'T",
    "'ll 'd 're 've 'm",
    "Ma'am y'all",
]

SCRIPTS = [
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u041a\u043e\u0448\u043a\u0430 \u0441\u0438\u0434\u0438\u0442 \u043d\u0430 \u043e\u043a\u043d\u0435.",
    "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5",
    "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3 \u03a3\u039f\u03a6\u039f\u03a3",
    "\u03a3 alone, \u03a3\u03a3 and \u0391\u03a3.",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u4e00\u53ea\u732b\u5728\u7761\u89c9\u3002",
    "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c \u30ab\u30bf\u30ab\u30ca \u3072\u3089\u304c\u306a",
    "\uc548\ub155\ud558\uc138\uc694 \uc138\uacc4",
    "\u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0",
    "\u0532\u0561\u0580\u0565\u0582 \u0561\u0577\u056d\u0561\u0580\u0570",
    "\u1230\u120b\u121d \u12d3\u1208\u121d",
    "\u0bb5\u0ba3\u0b95\u0bcd\u0b95\u0bae\u0bcd \u0b89\u0bb2\u0b95\u0bae\u0bcd",
    "\u09b9\u09cd\u09af\u09be\u09b2\u09cb \u09ac\u09bf\u09b6\u09cd\u09ac",
    "Xin ch\u00e0o th\u1ebf gi\u1edbi, ph\u1edf b\u00f2",
    "\u0130stanbul I\u011fd\u0131r \u015e\u0131rnak",
    "Stra\u00dfe STRASSE \u1e9e",
    "\u00c5ngstr\u00f6m \u00c6sir \u00d8re \u0152uvre",
    "Zo\u00eb Bj\u00f6rk Ren\u00e9e Fran\u00e7ois",
    "\u0141\u00f3d\u017a Gda\u0144sk \u017b\u00f3\u0142w",
    "\u010cesk\u00e9 Bud\u011bjovice \u0158\u00ed\u010dany",
    "\u1f08\u03b8\u1fc6\u03bd\u03b1\u03b9 \u1f21 \u03b4\u03cc\u03be\u03b1",
    "\u1100\u1161\u11a8 jamo sequence",
    "\u0e9e\u0eb2\u0eaa\u0eb2\u0ea5\u0eb2\u0ea7 \u1019\u103c\u1014\u103a\u1019\u102c \u1781\u17d2\u1798\u17c2\u179a",
    "\u0d2e\u0d32\u0d2f\u0d3e\u0d33\u0d02 \u0c24\u0c46\u0c32\u0c41\u0c17\u0c41 \u0c95\u0ca8\u0ccd\u0ca8\u0ca1",
    "\u1796\u17b6\u179f\u17b6 \u0f56\u0f7c\u0f51\u0f0b\u0f61\u0f72\u0f42 \u1828\u1823\u1829\u182d\u1823\u179b",
    "\u13e3\u13b3\u13a9 \u1403\u14c4\u1483\u144e\u1450\u1466 \u16a0\u16a2\u16a6\u16a8\u16b1\u16b2",
    "\U00010330\U00010331\U00010332 Gothic \U0001d400\U0001d401 math bold",
]

EMOJI = [
    "I love pizza \U0001f355\U0001f355\U0001f355",
    "\U0001f600\U0001f603\U0001f604\U0001f601",
    "thumbs up \U0001f44d\U0001f3fd",
    "family \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "rainbow flag \U0001f3f3\ufe0f\u200d\U0001f308",
    "flags \U0001f1fa\U0001f1f8 \U0001f1ef\U0001f1f5 \U0001f1e9\U0001f1ea",
    "Wales \U0001f3f4\U000e0067\U000e0062\U000e0077\U000e006c\U000e0073\U000e007f",
    "keycap 1\ufe0f\u20e3 #\ufe0f\u20e3",
    "heart \u2764\ufe0f vs \u2764",
    "woman technologist \U0001f469\u200d\U0001f4bb",
    "\U0001f431\U0001f436 cat and dog",
    "text\U0001f525fire\U0001f525",
    "\u263a \u2600 \u2603 \u2614 dingbats",
]

HTML = [
    "Tom &amp; Jerry",
    "5 &lt; 6 &gt; 4",
    "&quot;quoted&quot; and &apos;apos&apos;",
    "caf&eacute; na&iuml;ve r&eacute;sum&eacute;",
    "&copy; &reg; &trade; &euro; &pound;",
    "&#65;&#66;&#67; &#x44;&#x45;&#X46;",
    "&#8220;curly&#8221; &#x2019;",
    "double escaped &amp;amp; &amp;lt;b&amp;gt;",
    "triple &amp;amp;amp;lt; escaped",
    "quadruple &amp;amp;amp;amp; escaped",
    "no semicolon &amp &lt &gt &copy &nbsp;x",
    "&ampfoo &notit; &notin;",
    "P&EACUTE;REZ BUNDESSTRA&SZLIG;E &NTILDE; &nTILDE;",
    "&nbsp;&nbsp;padded&nbsp;&nbsp;",
    "&#0; &#1; &#13; &#128; &#x81; &#xD800; &#x110000; &#xFFFF;",
    "&#999999999999999999999; huge",
    "&bogus; &; & &# &#x; &#xyz;",
    "x < y &amp;lt; z",
    "a < b then &eacute;",
    "first line &eacute;\nsecond < line\nthird &eacute;",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<b>bold</b> &amp; <i>italic</i>",
    "&Tab;tab&NewLine;newline",
    "&hellip; &mdash; &ndash; &lsquo;x&rsquo; &ldquo;y&rdquo;",
    "&ThisEntityNameIsWayTooLongToBeMatchedByTheReferenceRule;",
    "&#x1F600; &#128512;",
    "&shy;soft&shy;hyphen",
    "&zwj;&zwnj;&lrm;&rlm;",
]

WHITESPACE = [
    "  leading and trailing spaces  ",
    "multiple     internal      spaces",
    "tabs\tand\t\ttabs",
    "new\nlines\n\nhere",
    "windows\r\nline\r\nendings",
    "old mac\rline endings",
    "no\u00a0break\u00a0space",
    "em\u2003space thin\u2009space hair\u200aspace",
    "ideographic\u3000space",
    "zero\u200bwidth\u200bspace",
    "zero\u200cwidth\u200dnon\u200djoiner",
    "word\u2060joiner",
    "\ufeffbyte order mark",
    "line\u2028separator para\u2029separator",
    "next\u0085line",
    "vertical\x0btab form\x0cfeed",
    "file\x1cgroup\x1drecord\x1eunit\x1fsep",
    "mongolian\u180evowel",
    "ogham\u1680space narrow\u202fnbsp math\u205fspace",
    "\t \n mixed \r\n\t whitespace \u00a0 ",
]

FTFY_RULES = [
    "\u201cSmart quotes\u201d and \u2018single ones\u2019",
    "\u201a low \u201e double low \u201b reversed \u201f",
    "modifier \u02bcapostrophe",
    "\u2032prime\u2033 are not quotes",
    "\ufb01nancial \ufb02ow \ufb00 \ufb03 \ufb04 \ufb05 \ufb06",
    "\u0132sselmeer \u0133s \u0149 \u01c4 \u01c5 \u01c6 \u01c7 \u01c8 \u01c9 \u01ca \u01cb \u01cc \u01f1 \u01f2 \u01f3",
    "\uff28\uff45\uff4c\uff4c\uff4f\u3000\uff37\uff4f\uff52\uff4c\uff44\uff01",
    "\uff11\uff12\uff13\uff0b\uff14\uff15\uff16",
    "\uff76\uff80\uff76\uff85 \uff8a\uff9f\uff9d \uff78\uff9e\uff97\uff8c\uff9e",
    "halfwidth hangul \uffa1\uffa4\uffb7",
    "\uffe0\uffe1\uffe5\uffe6 \uffe8\uffe9\uffee",
    "\x1b[31mred\x1b[0m \x1b[1;32mbold green\x1b[0m",
    "\x1b[\u0661\u0662mdigits\x1b[m",
    "\x1b]not csi",
    "null\x00char bell\x07 escape\x1b delete\x7f",
    "\u206aarabic\u206fdeprecated",
    "\ufff9annotation\ufffb \ufffcobject",
    "C1 \x80 \x85 \x91quoted\x92 \x93double\x94 \x96 \x97 \x9f",
    "C1 undefined \x81 \x8d \x8f \x90 \x9d",
    "e\u0301 vs \u00e9 a\u030a vs \u00e5",
    "\u212b angstrom \u2126 ohm \u212a kelvin",
    "\u1e9b\u0323 long s dot",
    "\u0344 \u0340 \u0341 \u0343 singletons",
    "\ufb2a\ufb2b hebrew presentation",
    "\u00bd half stays, \u2153 third stays",
    "\u2126\u212b",
]

MOJIBAKE = [
    "caf\u00c3\u00a9",
    "\u00e2\u20ac\u0153quoted\u00e2\u20ac\u009d",
    "\u00c3 la mode",
    "na\u00c3\u00afve r\u00c3\u00a9sum\u00c3\u00a9",
    "\u00e2\u0153\u201d No problems",
    "\u00c3\u00a9\u00c3\u00a8\u00c3\u00a0",
    "Tarifa\u00e2\u20ac\u00a6 the end",
    "\u00d0\u0178\u00d1\u20ac\u00d0\u00b8\u00d0\u00b2\u00d0\u00b5\u00d1\u201a",
    "sloppy \u00e2\u20ac\u0153 like this \u00e2\u20ac\ufffd",
    "I\u00e2\u20ac\u2122m here",
]

LONG = [
    " ".join(["word"] * 100),
    " ".join(CAPTIONS[:12]),
    "a" * 500,
    "supercalifragilisticexpialidocious " * 10,
    "\U0001f600" * 60,
    ", ".join(str(i) for i in range(60)),
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
]

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|startoftext|>",
    "a photo <|endoftext|> of a cat",
    "!<|endoftext|>",
    "x<|endoftext|>y",
    "<|ENDOFTEXT|> upper",
    "<|startoftext|><|endoftext|>",
    "< |endoftext| >",
    "<|endoftext",
    "<|\ufb05artoftext|>",
    "<|\u017ftartoftext|>",
    "<|endoftext|>" * 40,
]

MIXED = [
    "ThIs Is MiXeD cAsE",
    "iPhone iPad macOS JavaScript",
    "HTTPS://WWW.EXAMPLE.COM/PATH?Q=1",
    "https://example.com/a/b?c=d&e=f#frag",
    "http://user:pass@host.example:8080/p/a/t/h?query=string&x=1",
    "www.example.org/~user/index.html",
    "mailto:someone@example.com",
    "ftp://files.example.net/pub/file.tar.gz",
    "def f(x): return x ** 2  # square",
    "fn main() { println!(\"hi\"); }",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "SELECT * FROM users WHERE id = 1;",
    "<div class=\"caption\">A cat</div>",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
    "C:\\Users\\name\\file.txt",
    "/usr/local/bin/python3 --version",
    "snake_case camelCase PascalCase kebab-case SCREAMING_CASE",
    "git commit -m 'fix: handle &amp; correctly'",
    "E = mc\u00b2 and \u2200x \u2203y: x \u2264 y",
    "$x_1 + \\alpha \\cdot \\beta$",
]

EMPTY_AFTER_CLEANUP = [
    "",
    " ",
    "\t\n\r ",
    "\x00\x01\x02",
    "\ufeff",
    "&#1;&#2;",
    "\u00a0\u3000\u2003",
    "&nbsp;",
    "&amp;nbsp;&nbsp;",
    "\x1b[0m",
    "\u206a\u206b",
]

# Characters whose Unicode properties changed after Unicode 14.0 (Python 3.11's tables).
UNICODE_VERSION = [
    "a\u0345b iota subscript",
    "Garay \U00010d50\U00010d51 capitals",
    "latin \ua7cb\ua7dc additions",
    "a\u0c5cb letter in a word",
]


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def table_cases() -> list[tuple[str, str]]:
    """Strings that walk complete character tables: entities, widths, ligatures, C1."""
    cases: list[tuple[str, str]] = []
    # One entity per line: each line is its own ftfy segment, so neighbouring decoded letters
    # (e.g. "\u00c3 \u00a9") cannot look like mojibake to ftfy.
    names = sorted(html.entities.html5)
    for i, chunk in enumerate(_chunks(names, 60)):
        cases.append((f"entities/{i:02d}", "\n".join("&" + n for n in chunk)))
    upper = sorted(
        n.upper()
        for n in html.entities.html5
        if n.endswith(";") and n == n.lower() and html.unescape("&" + n.upper()) == "&" + n.upper()
    )
    for i, chunk in enumerate(_chunks(upper, 60)):
        cases.append((f"entities_upper/{i:02d}", "\n".join("&" + n for n in chunk)))
    width = [chr(c) for c in range(0xFF01, 0xFFF0)]
    for i, chunk in enumerate(_chunks(width, 40)):
        cases.append((f"width/{i:02d}", " ".join(chunk)))
    cases.append(("c1/all", " ".join(chr(c) for c in range(0x80, 0xA0))))
    cases.append(("numeric/c1", " ".join(f"&#{c};" for c in range(0x80, 0xA0))))
    cases.append(("numeric/controls", " x ".join(f"&#{c};" for c in range(0, 0x20))))
    return cases


def all_cases() -> list[tuple[str, str]]:
    groups = {
        "caption": CAPTIONS,
        "punctuation": PUNCTUATION,
        "numbers": NUMBERS,
        "contractions": CONTRACTIONS,
        "scripts": SCRIPTS,
        "emoji": EMOJI,
        "html": HTML,
        "whitespace": WHITESPACE,
        "ftfy": FTFY_RULES,
        "mojibake": MOJIBAKE,
        "long": LONG,
        "special": SPECIAL_TOKENS,
        "mixed": MIXED,
        "empty": EMPTY_AFTER_CLEANUP,
        "unicode_version": UNICODE_VERSION,
    }
    cases = [(f"{group}/{i:02d}", text) for group, texts in groups.items() for i, text in enumerate(texts)]
    cases += table_cases()
    # NFD spellings of a few captions and scripts exercise NFC composition.
    for i, text in enumerate(SCRIPTS[16:24]):
        cases.append((f"nfd/{i:02d}", unicodedata.normalize("NFD", text)))
    names = [name for name, _ in cases]
    if len(set(names)) != len(names):
        raise ValueError("duplicate golden names")
    return cases


def reference_entries(cases: list[tuple[str, str]]) -> list[dict]:
    """Golden entries for named texts: the reference cleanup and the reference's 77 ids."""
    texts = [text for _, text in cases]
    ids = data.load_and_transform_text(texts, "cpu")
    entries = []
    for (name, text), row in zip(cases, ids.tolist()):
        cleaned = mp.whitespace_clean(mp.basic_clean(text)).lower()
        entries.append({"name": name, "text": text, "cleaned": cleaned, "ids": row})
    return entries


def write_entries(out: Path, entries: list[dict]) -> None:
    """Writes golden entries as a JSON list, one entry per line, ASCII-escaped."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ",\n".join(json.dumps(e, ensure_ascii=True) for e in entries)
    out.write_text("[\n" + lines + "\n]\n", encoding="utf-8")
    print(f"wrote {len(entries)} strings to {out}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help="goldens file to write")
    parser.add_argument("--check", action="store_true", help="regenerate in a scratch file and compare")
    args = parser.parse_args(argv[1:])
    if not args.check:
        write_entries(args.out, reference_entries(all_cases()))
        return 0
    # Ids and cleaned strings are exact (no floats), so the files must be equal byte for byte.
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / args.out.name
        write_entries(fresh, reference_entries(all_cases()))
        same = fresh.read_bytes() == args.out.read_bytes()
    print("fixtures up to date" if same else f"differs: {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
