#!/usr/bin/env python3
"""Copy a small held-out sample of bind-mini's world into tests/fixtures/bind_mini.

    tools/.venv/bin/python tools/bindmini/make_sample.py [--world tools/.gen/bindmini/world]

Takes 18 test objects of distinct seen (shape, colour) combinations, covering every shape and
colour, and one test object of each combination never seen in training; for each combination the
object with the smallest files. Writes the files as ``<colour>_<shape>.<ext>`` and
``sample.json`` (per object: shape, colour, whether the combination was seen in training, its
first caption, the phrase its audio says and the three file names).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEST = ROOT / "tests/fixtures/bind_mini"
SEEN_COUNT = 18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--world", type=Path, default=ROOT / "tools/.gen/bindmini/world")
    args = parser.parse_args()
    index = json.loads((args.world / "index.json").read_text())
    shapes, colours = index["shapes"], index["colours"]
    unseen = [tuple(c) for c in index["unseen"]]
    test = [o for o in index["objects"] if o["split"] == "test"]
    combos = []
    i = 0
    while len(combos) < SEEN_COUNT:
        combo = (shapes[i % len(shapes)], colours[(3 * i + i // len(shapes)) % len(colours)])
        if combo not in unseen and combo not in combos:
            combos.append(combo)
        i += 1
    combos += unseen

    def size(o: dict) -> int:
        return sum((args.world / o[k]).stat().st_size for k in ("image", "audio", "cloud"))

    if DEST.exists():
        shutil.rmtree(DEST)
    DEST.mkdir(parents=True)
    records = []
    for shape, colour in combos:
        obj = min((o for o in test if (o["shape"], o["colour"]) == (shape, colour)), key=lambda o: (size(o), o["id"]))
        rec = {"name": f"{colour}_{shape}", "shape": shape, "colour": colour, "seen": obj["seen"],
               "source": obj["id"], "caption": obj["captions"][0], "phrase": obj["speech"]["text"]}
        for key in ("image", "audio", "cloud"):
            src = args.world / obj[key]
            name = f"{colour}_{shape}{src.suffix}"
            shutil.copyfile(src, DEST / name)
            rec[key] = name
        records.append(rec)
    meta = {"generator": "tools/bindmini/make_sample.py", "world_seed": index["seed"], "objects": records}
    (DEST / "sample.json").write_text(json.dumps(meta, indent=1) + "\n")
    total = sum(f.stat().st_size for f in DEST.iterdir())
    print(f"wrote {len(records)} objects ({total / 1e6:.2f} MB) to {DEST}")


if __name__ == "__main__":
    main()
