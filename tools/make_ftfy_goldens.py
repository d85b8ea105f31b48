#!/usr/bin/env python3
"""Mojibake-repair goldens: ftfy's own test corpus plus generated mojibake, through the reference.

    tools/.venv/bin/python tools/make_ftfy_goldens.py --ftfy-cases PATH           # (re)write the golden
    tools/.venv/bin/python tools/make_ftfy_goldens.py --ftfy-cases PATH --check   # compare with the committed one

``PATH`` is ``tests/test_cases.json`` of the ftfy 6.3.1 sdist (the version ``requirements.txt`` pins):
``pip download --no-binary :all: --no-deps ftfy==6.3.1`` fetches it.

Writes ``tests/fixtures/text/ftfy_goldens.json`` in the format of ``tokenizer_goldens.json`` and
with the same code (``make_tokenizer_goldens.reference_entries``): per case a name, the input text,
the reference cleanup (``whitespace_clean(basic_clean(text)).lower()``, where ``basic_clean`` runs
``ftfy.fix_text``) and the 77 ids ``imagebind.data.load_and_transform_text`` gives it.

The cases:

* ``ftfy/NNN``: every ``original`` of ftfy's test corpus, and ``ftfy_fixed/NNN`` its ``fixed``
  text, mostly correct text that a false repair would damage;
* ``mojibake/<sentence>/<codecs>``: every sentence of ``SENTENCES`` encoded as UTF-8 and decoded
  as Latin-1, Windows-1252 or MacRoman, one layer deep, and each of those encoded as UTF-8 and
  decoded again with one of the three, two layers deep. Windows-1252 leaves five bytes undefined;
  they decode to the C1 control of the same value, as ftfy's ``sloppy-windows-1252`` and the
  WHATWG (browser) ``windows-1252`` decoder do.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "text" / "ftfy_goldens.json"

#: Sentences in many scripts, with the punctuation mojibake mangles most (curly quotes, dashes,
#: ellipsis, currency, no-break space).
SENTENCES = {
    "en": "\u201cIt\u2019s 5\u00a0\u20ac \u2014 cheap\u2026\u201d she said.",
    "fr": "L\u2019\u00e9t\u00e9 \u00e0 la plage, c\u2019\u00e9tait g\u00e9nial\u00a0!",
    "de": "F\u00fcnf \u00dcbungen f\u00fcr gro\u00dfe B\u00e4ren \u00f6ffnen T\u00fcren.",
    "es": "\u00bfD\u00f3nde est\u00e1 el ni\u00f1o? \u00a1Ma\u00f1ana ser\u00e1!",
    "pt": "A\u00e7\u00e3o, cora\u00e7\u00e3o e informa\u00e7\u00f5es s\u00e3o \u00f3timas.",
    "it": "Perch\u00e9 cos\u00ec? Citt\u00e0 pi\u00f9 bella, caff\u00e8 gi\u00e0 pronto.",
    "nl": "Co\u00f6peratie en ru\u00efne: \u00e9\u00e9n ge\u00efnteresseerde.",
    "sv": "R\u00e4ksm\u00f6rg\u00e5s \u00e5t \u00e4lgen p\u00e5 \u00f6n.",
    "is": "\u00de\u00f3r\u00f0ur \u00e1 \u00feing \u00ed \u00c6gis\u00ed\u00f0u.",
    "pl": "Za\u017c\u00f3\u0142\u0107 g\u0119\u015bl\u0105 ja\u017a\u0144.",
    "cs": "P\u0159\u00edli\u0161 \u017elu\u0165ou\u010dk\u00fd k\u016f\u0148 \u00fap\u011bl \u010f\u00e1belsk\u00e9 \u00f3dy.",
    "hu": "\u00c1rv\u00edzt\u0171r\u0151 t\u00fck\u00f6rf\u00far\u00f3g\u00e9p.",
    "ro": "\u0218tiin\u021b\u0103 \u0219i \u00eenv\u0103\u021b\u0103m\u00e2nt \u00een Rom\u00e2nia.",
    "tr": "\u0130stanbul\u2019da \u015fo\u011fuk \u00e7ay i\u00e7tik, \u00e7ok g\u00fczel.",
    "vi": "Ti\u1ebfng Vi\u1ec7t c\u00f3 nhi\u1ec1u d\u1ea5u thanh.",
    "el": "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1 \u03ba\u03cc\u03c3\u03bc\u03b5, \u03c4\u03b9 \u03ba\u03ac\u03bd\u03b5\u03b9\u03c2;",
    "ru": "\u0421\u044a\u0435\u0448\u044c \u0436\u0435 \u0435\u0449\u0451 \u044d\u0442\u0438\u0445 \u043c\u044f\u0433\u043a\u0438\u0445 \u0431\u0443\u043b\u043e\u043a.",
    "uk": "\u0407\u0436\u0430\u043a \u0456 \u0491\u0430\u043d\u043e\u043a \u0454 \u0432 \u0441\u0430\u0434\u0443.",
    "sr": "\u0411\u0435\u043e\u0433\u0440\u0430\u0434 \u0458\u0435 \u0433\u043b\u0430\u0432\u043d\u0438 \u0433\u0440\u0430\u0434 \u0421\u0440\u0431\u0438\u0458\u0435.",
    "ar": "\u0627\u0644\u0644\u063a\u0629 \u0627\u0644\u0639\u0631\u0628\u064a\u0629 \u062c\u0645\u064a\u0644\u0629.",
    "he": "\u05e2\u05d1\u05e8\u05d9\u05ea \u05d4\u05d9\u05d0 \u05e9\u05e4\u05d4 \u05e2\u05ea\u05d9\u05e7\u05d4.",
    "hi": "\u0939\u093f\u0928\u094d\u0926\u0940 \u090f\u0915 \u0938\u0941\u0902\u0926\u0930 \u092d\u093e\u0937\u093e \u0939\u0948\u0964",
    "th": "\u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22\u0e07\u0e48\u0e32\u0e22\u0e21\u0e32\u0e01",
    "zh": "\u6211\u7231\u5403\u5317\u4eac\u70e4\u9e2d\u3002",
    "ja": "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002",
    "ko": "\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4.",
    "emoji": "Party time \U0001f389\U0001f382 \u2014 see you there \U0001f44d",
    "mixed": "Caf\u00e9 \u2013 \u00a33.50, \u00bd price \u2022 na\u00efve \u00a9 2024\u2122",
    "quotes": "\u2018Single\u2019 and \u201cdouble\u201d quotes, \u201elow\u201c ones \u00abguillemets\u00bb",
    "symbols": "\u00b1 \u00d7 \u00f7 \u00b0C \u00b5m \u00a7 \u00b6 \u2020 \u2021 \u2030 \u2032",
    "eo": "E\u0125o\u015dan\u011do \u0109iu\u0135a\u016dde.",
    "lv": "Gl\u0101\u017e\u0161\u0137\u016bn\u0101 r\u016bp\u0113\u0161 \u010d\u012bk\u0101.",
}

#: The misdecodings applied, by the name used in case names.
CODECS = {
    "latin1": "latin-1",
    "cp1252": "sloppy-windows-1252",
    "macroman": "mac_roman",
}


def ftfy_test_cases(path: Path) -> list[tuple[str, str]]:
    """ftfy's test corpus: each ``original``, then each ``fixed`` (which must stay as it is)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    cases = [(f"ftfy/{i:03d}", case["original"]) for i, case in enumerate(data)]
    cases += [(f"ftfy_fixed/{i:03d}", case["fixed"]) for i, case in enumerate(data)]
    return cases


def misdecode(text: str, codec: str) -> str:
    """``text`` as UTF-8 bytes read back in ``codec``: one layer of mojibake."""
    import ftfy.bad_codecs  # noqa: F401  registers the sloppy-* codecs

    return text.encode("utf-8").decode(codec)


def mojibake_cases() -> list[tuple[str, str]]:
    """Every one- and two-layer misdecoding of every sentence in ``SENTENCES``."""
    cases = []
    for lang, sentence in SENTENCES.items():
        for depth in (1, 2):
            for names in itertools.product(CODECS, repeat=depth):
                text = sentence
                for name in names:
                    text = misdecode(text, CODECS[name])
                cases.append((f"mojibake/{lang}/{'+'.join(names)}", text))
    return cases


def all_cases(ftfy_cases: Path) -> list[tuple[str, str]]:
    cases = ftfy_test_cases(ftfy_cases) + mojibake_cases()
    names = [name for name, _ in cases]
    if len(set(names)) != len(names):
        raise ValueError("duplicate golden names")
    return cases


def write(out: Path, ftfy_cases: Path) -> None:
    # Imported here: it loads the reference (torch, imagebind) on import.
    from make_tokenizer_goldens import reference_entries, write_entries

    write_entries(out, reference_entries(all_cases(ftfy_cases)))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ftfy-cases", type=Path, required=True, help="ftfy's tests/test_cases.json")
    ap.add_argument("--check", action="store_true", help="regenerate into a temporary file and compare")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv[1:])
    if not args.check:
        write(args.out, args.ftfy_cases)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / OUT.name
        write(fresh, args.ftfy_cases)
        same = args.out.is_file() and fresh.read_bytes() == args.out.read_bytes()
    print("golden up to date" if same else f"differs: {args.out}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
