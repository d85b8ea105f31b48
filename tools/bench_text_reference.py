#!/usr/bin/env python3
"""Times the reference text preprocessing on the same texts as ``benches/tokenize.rs``.

    tools/.venv/bin/python tools/bench_text_reference.py [--threads N] [--repeat R]
    tools/.venv/bin/python tools/bench_text_reference.py --write-corpus benches/text_corpus.json

One iteration of a set is ``imagebind.data.load_and_transform_text`` on all of its texts, with
one ``SimpleTokenizer`` built once and reused (the reference as published builds a new one per
call, reading the BPE file; a long-running service would not): per text ``ftfy.fix_text``,
``html.unescape`` twice, whitespace collapsing, ``lower``, the pre-split pattern, byte-level BPE
with the tokenizer's word cache, then the ``[1, 77]`` tensor, and the batch concatenated.

The sets, the same on both sides:

* ``captions_x32``: the 32 captions of the Rust bench (``captions`` in the corpus file);
* ``e2e_captions``: the 256 captions ``tools/bench_reference.py`` sends end to end;
* ``mixed``: 256 texts, half plain ASCII captions and the rest accented Latin, CJK, emoji,
  mojibake with HTML entities, and paragraphs past the 77-token context;
* ``goldens``: every text of ``tests/fixtures/text/tokenizer_goldens.json`` and
  ``ftfy_goldens.json`` that is not empty after cleanup (bindery refuses those).

``--write-corpus`` writes the first three sets (seeded, deterministic) to the JSON file the Rust
bench reads; the timing run reads them back from that file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reference import make_captions  # noqa: E402
from bindery_tools import reference as ref  # noqa: E402
from bindery_tools.timing import timeit  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "benches" / "text_corpus.json"
GOLDENS = [ROOT / "tests/fixtures/text/tokenizer_goldens.json", ROOT / "tests/fixtures/text/ftfy_goldens.json"]

_ACCENTED = [
    "Un café au lait sur une terrasse à Paris, l'été",
    "Crème brûlée et pâtisseries françaises dans une vitrine",
    "Niños jugando al fútbol en la plaza mayor de Sevilla",
    "El pingüino camina sobre el hielo en la Antártida",
    "Ein Mädchen fährt Fahrrad über die Brücke in München",
    "Schöne Grüße aus Köln: der Dom bei Dämmerung",
    "Uma criança comendo pão de queijo em São Paulo",
    "Façade d'une église gothique à Strasbourg, côté nord",
    "Smörgåsbord på ett bord i Göteborg",
    "Zażółć gęślą jaźń: polski pangram na tablicy",
    "Ørkenen i solnedgang, fotografert fra et fly over Ålesund",
    "Dvořák's symphony performed in Prague's Rudolfinum",
]

_CJK = [
    "一只猫坐在窗台上看着外面的雨",
    "東京の夜景と桜の花",
    "海边的日落，天空是橙色的",
    "子供たちが公園でサッカーをしている",
    "서울의 번화한 거리를 걷는 사람들",
    "一碗热腾腾的拉面",
    "富士山と湖に映る雪景色",
    "古老的长城在山脉上蜿蜒",
]

_EMOJI = [
    "Best pizza in town 🍕🔥 #foodie",
    "Sunset at the beach 🌅 so peaceful",
    "My dog 🐶 loves the snow ❄️❄️",
    "Happy birthday!! 🎉🎂🥳",
    "Coffee first ☕️ then everything else",
    "Road trip with friends 🚗💨 👍🏽",
    "Rainy day in the city 🌧️☔ #mood",
    "New plants for the balcony 🌱🌿🪴",
]

_LONG_SENTENCES = [
    "The old lighthouse stood at the edge of the cliff, its white paint peeling after decades of "
    "salt spray and winter storms.",
    "Fishermen still looked for its beam on foggy nights, although the lamp had been automated "
    "long ago.",
    "Below, the harbour filled with small boats each morning, their engines coughing in the cold.",
    "Tourists climbed the narrow stairs in summer to photograph the bay and the distant islands.",
]


def _mojibake(text: str) -> str:
    """``text`` as UTF-8 read back as Windows-1252 (the commonest mojibake ftfy repairs)."""
    return text.encode("utf-8").decode("windows-1252", errors="replace")


def mixed_corpus(n: int = 256, seed: int = 11) -> list[str]:
    """``n`` seeded texts: half plain ASCII captions, the rest non-ASCII and long texts."""
    rng = np.random.default_rng(seed)
    ascii_captions = make_captions(n, seed=seed)
    out = []
    for i in range(n):
        bucket = i % 16
        if bucket < 8:
            out.append(ascii_captions[i])
        elif bucket < 10:
            out.append(str(rng.choice(_ACCENTED)))
        elif bucket < 11:
            out.append(str(rng.choice(_CJK)))
        elif bucket < 13:
            out.append(str(rng.choice(_EMOJI)))
        elif bucket < 14:
            # Mojibake of an accented caption, with the HTML entities scraped text carries.
            out.append(_mojibake(str(rng.choice(_ACCENTED))) + " &amp; more &quot;photos&quot;")
        elif bucket < 15:
            out.append(ascii_captions[i].replace(" ", "  ", 1) + "\t\n" + str(rng.choice(_ACCENTED)))
        else:
            out.append(" ".join(str(s) for s in rng.choice(_LONG_SENTENCES, 6)))
    return out


def write_corpus(path: Path) -> None:
    """Writes the generated sets; the 32 hand-written ``captions`` are kept from the file, which
    is their only copy (``benches/tokenize.rs`` reads them there too)."""
    corpus = {
        "captions": json.loads(CORPUS.read_text())["captions"],
        "e2e_captions": make_captions(256),
        "mixed": mixed_corpus(),
    }
    path.write_text(json.dumps(corpus, ensure_ascii=False, indent=0) + "\n")


def golden_texts() -> list[str]:
    texts = []
    for path in GOLDENS:
        texts.extend(g["text"] for g in json.loads(path.read_text()) if g["cleaned"])
    return texts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--write-corpus", type=Path, help="write the corpus JSON and exit")
    args = ap.parse_args()
    if args.write_corpus:
        write_corpus(args.write_corpus)
        return
    torch.set_num_threads(args.threads)
    corpus = json.loads(CORPUS.read_text())
    tokenizer = ref.data.SimpleTokenizer(bpe_path=ref.data.return_bpe_path())

    def run(texts: list[str]) -> torch.Tensor:
        with mock.patch.object(ref.data, "SimpleTokenizer", lambda **_: tokenizer):
            return ref.data.load_and_transform_text(texts, "cpu")

    sets = [
        ("captions_x32", corpus["captions"]),
        ("e2e_captions_x256", corpus["e2e_captions"]),
        ("mixed_x256", corpus["mixed"]),
        (f"goldens_x{len(golden_texts())}", golden_texts()),
    ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.repeat} runs each, "
          "one SimpleTokenizer reused")
    for name, texts in sets:
        med, best = timeit(lambda texts=texts: run(texts), args.repeat)
        per = med * 1e3 / len(texts)
        print(f"{name:22s} median {med:9.3f} ms   min {best:9.3f} ms   {per:8.2f} µs/text")


if __name__ == "__main__":
    main()
