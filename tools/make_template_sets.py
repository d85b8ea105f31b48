#!/usr/bin/env python3
"""Write Classify's named prompt template sets from their reference lists.

    python tools/make_template_sets.py           # (re)write src/service/template_sets/*.txt
    python tools/make_template_sets.py --check   # compare with the tree

* ``imagenet.txt``: open_clip's ``OPENAI_IMAGENET_TEMPLATES`` (the 80 prompts OpenCLIP's
  ImageNet zero-shot evaluation uses), each callable applied to ``{}``.

One template a line, in the reference order (a label's embedding is the mean over the set, so the
order does not change results, but keeping it makes the file checkable).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from open_clip import zero_shot_metadata

OUT = Path(__file__).resolve().parent.parent / "src" / "service" / "template_sets"


def sets() -> dict[str, str]:
    imagenet = [t("{}") for t in zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES]
    for t in imagenet:
        if t.count("{}") != 1 or "\n" in t:
            raise ValueError(f"unusable template {t!r}")
    return {"imagenet.txt": "\n".join(imagenet) + "\n"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    stale = []
    for name, text in sets().items():
        path = OUT / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({text.count(chr(10))} templates)")
    if stale:
        print(f"differs: {', '.join(stale)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
