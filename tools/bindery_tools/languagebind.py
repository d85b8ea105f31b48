"""The LanguageBind reference as the tooling runs it: the PyPI ``languagebind`` 0.1.0 package
(upstream PKU-YuanGroup/LanguageBind at 7070c53375661cdb235801176b564b45f96f0648, repackaged with
import shims only) on transformers 4.30.2, the version upstream pins, in its own virtual
environment (``tools/setup.sh --languagebind``: ``tools/.venv-languagebind``).

Why not the main tooling environment's transformers 5: LanguageBind's modelling code imports
transformers' CLIP classes, and in transformers 5 ``CLIPVisionEmbeddings`` refuses the audio
tower's 112 x 1036 fbank "image" (it is not the configured square), ``CLIPAttention`` ignores the
``causal_attention_mask`` LanguageBind's encoder layer passes (the text tower would attend to every
token), and ``CLIPTokenizer`` is a different, fast tokenizer without ftfy. On 4.30.2 the package
runs unmodified.

The text reference is the package's ``LanguageBindImageTokenizer`` (transformers 4.30.2's slow
``CLIPTokenizer``, padding with ``<|endoftext|>``) on the CLIP BPE the project ships
(``tokenizer.json``, written out as the ``vocab.json`` and ``merges.txt`` it reads).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from bindery_tools.compat import install_torchvision_alias

__all__ = ["UPSTREAM_COMMIT", "TRANSFORMERS_VERSION", "import_languagebind", "reference_tokenizer"]

#: The upstream commit the PyPI package's processing and modelling code match.
UPSTREAM_COMMIT = "7070c53375661cdb235801176b564b45f96f0648"
#: The transformers version upstream pins (``requirements.txt``), under which the package runs.
TRANSFORMERS_VERSION = "4.30.2"


def import_languagebind() -> Any:
    """The ``languagebind`` package, imported after the torchvision alias pytorchvideo needs, on
    the transformers it was written for."""
    import transformers

    if transformers.__version__ != TRANSFORMERS_VERSION:
        raise SystemExit(
            f"LanguageBind's reference needs transformers {TRANSFORMERS_VERSION} (found {transformers.__version__}): "
            "run it with tools/.venv-languagebind (tools/setup.sh --languagebind)"
        )
    install_torchvision_alias()
    import languagebind

    return languagebind


def reference_tokenizer(tokenizer_json: Path) -> Any:
    """``LanguageBindImageTokenizer`` on the vocabulary and merges of bindery's ``tokenizer.json``."""
    lb = import_languagebind()
    model = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]
    with tempfile.TemporaryDirectory() as tmp:
        vocab, merges = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab.write_text(json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8")
        # CLIPTokenizer skips the first line of merges.txt (the "#version" header).
        lines = ["#version: 0.2", *(" ".join(pair) for pair in model["merges"])]
        merges.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return lb.LanguageBindImageTokenizer(str(vocab), str(merges))
