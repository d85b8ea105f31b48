#!/usr/bin/env python3
"""Write Classify's named prompt template sets from their reference lists.

    python tools/make_template_sets.py --ulip-templates ULIP/data/templates.json           # (re)write src/service/template_sets/*.txt
    python tools/make_template_sets.py --ulip-templates ULIP/data/templates.json --check   # compare with the tree

* ``imagenet.txt``: open_clip's ``OPENAI_IMAGENET_TEMPLATES`` (the 80 prompts OpenCLIP's
  ImageNet zero-shot evaluation uses), each callable applied to ``{}``.
* ``modelnet40.txt``: ULIP's ``modelnet40_64`` prompts, the 64 its ModelNet40 zero-shot
  evaluation (``main.py``, ``--validate_dataset_prompt modelnet40_64``) formats each label into.
  ULIP is not on PyPI: pass its ``data/templates.json`` (github.com/salesforce/ULIP).

One template a line, in the reference order (a label's embedding is the mean over the set, so the
order does not change results, but keeping it makes the file checkable).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from open_clip import zero_shot_metadata

OUT = Path(__file__).resolve().parent.parent / "src" / "service" / "template_sets"


def sets(ulip_templates: Path) -> dict[str, str]:
    named = {
        "imagenet.txt": [t("{}") for t in zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES],
        "modelnet40.txt": json.loads(ulip_templates.read_text(encoding="utf-8"))["modelnet40_64"],
    }
    for templates in named.values():
        for t in templates:
            if t.count("{}") != 1 or "\n" in t:
                raise ValueError(f"unusable template {t!r}")
    return {name: "\n".join(templates) + "\n" for name, templates in named.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--ulip-templates", type=Path, required=True,
                        help="data/templates.json of a checkout of salesforce/ULIP")
    args = parser.parse_args()
    stale = []
    for name, text in sets(args.ulip_templates).items():
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
