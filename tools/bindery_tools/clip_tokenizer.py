"""Builds bindery's ``tokenizer.json`` (Hugging Face ``tokenizers`` format) for the CLIP BPE.

The vocabulary, merge ranks and pre-split pattern are read from the reference ``SimpleTokenizer``
(``imagebind.models.multimodal_preprocessors``) built on the BPE file shipped with the installed
``imagebind`` package, so the file follows the reference instead of restating it.

What the file contains, and what it deliberately leaves out:

* no normalizer: bindery performs the reference cleanup (ftfy, HTML unescape, whitespace
  collapse, lower-casing) itself before tokenizing, so the tokenizer must not normalise again;
* pre-tokenizer: the reference pattern as a ``Split`` that keeps the matches (``invert``), with
  ``(?i)`` when the reference compiles it case-insensitively, then ``ByteLevel`` without prefix
  space or its own regex (the GPT-2 byte-to-unicode table is the reference's);
* model: BPE with ``</w>`` word ends and the reference merge ranks;
* no post-processor: bindery adds the start/end ids and pads to the context length from
  ``model.toml``;
* ``<|startoftext|>`` / ``<|endoftext|>`` are listed as special added tokens for decoding.
  Note that ``Tokenizer.encode`` would split them out anywhere in the text, whereas the
  reference only recognises them where its pattern produces them as a whole piece, so bindery
  runs the pre-tokenizer and model itself and maps those pieces to their ids.

Run ``python tools/bindery_tools/clip_tokenizer.py OUT`` to write the file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the ``bindery_tools`` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bindery_tools.compat import install_torchvision_alias  # noqa: E402

__all__ = ["SPECIAL_TOKENS", "build_tokenizer_json", "reference_tokenizer", "tokenizer_dict"]

#: Special tokens of the reference vocabulary, in id order.
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")

_END_OF_WORD = "</w>"


def reference_tokenizer() -> Any:
    """The reference ``SimpleTokenizer`` on the BPE file shipped with ``imagebind``."""
    install_torchvision_alias()
    import imagebind.data as data  # imported late: pulls in torch and pytorchvideo

    return data.SimpleTokenizer(bpe_path=data.return_bpe_path())


def _onig_pattern(pat: Any) -> str:
    """The reference pre-split pattern in Oniguruma syntax (same syntax, flags inlined)."""
    import regex

    allowed = regex.IGNORECASE | regex.UNICODE | regex.VERSION0
    if pat.flags & ~allowed:
        raise ValueError(f"unsupported flags on the reference pattern: {pat.flags:#x}")
    prefix = "(?i)" if pat.flags & regex.IGNORECASE else ""
    return prefix + pat.pattern


def tokenizer_dict(
    tok: Any | None = None, special_tokens: tuple[str, ...] = SPECIAL_TOKENS
) -> dict[str, Any]:
    """The ``tokenizer.json`` content for the reference tokenizer ``tok``, whose start and end
    pieces are ``special_tokens`` (open_clip's ``SimpleTokenizer`` names them
    ``<start_of_text>`` / ``<end_of_text>``)."""
    if tok is None:
        tok = reference_tokenizer()
    vocab: dict[str, int] = {token: int(i) for token, i in tok.encoder.items()}
    if sorted(vocab.values()) != list(range(len(vocab))):
        raise ValueError("reference vocabulary ids are not contiguous")
    ranked = sorted(tok.bpe_ranks.items(), key=lambda item: item[1])
    merges = [list(pair) for pair, _ in ranked]
    for a, b in merges:
        if a + b not in vocab:
            raise ValueError(f"merge {a!r} + {b!r} has no vocabulary entry")
    byte_level = {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": False,
        "use_regex": False,
    }
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": vocab[name],
                "content": name,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for name in special_tokens
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": _onig_pattern(tok.pat)},
                    "behavior": "Removed",
                    "invert": True,
                },
                byte_level,
            ],
        },
        "post_processor": None,
        # Mirrors the reference ``decode``: bytes back to text, then word ends to spaces.
        "decoder": {
            "type": "Sequence",
            "decoders": [
                byte_level,
                {"type": "Replace", "pattern": {"String": _END_OF_WORD}, "content": " "},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": _END_OF_WORD,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


def build_tokenizer_json(out_path: str | Path) -> Path:
    """Writes the reference CLIP tokenizer as ``tokenizer.json`` to ``out_path``.

    The output is deterministic (same bytes for the same reference package).
    """
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    content = json.dumps(tokenizer_dict(), ensure_ascii=False, separators=(",", ":"))
    out.write_text(content + "\n", encoding="utf-8")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} OUT", file=sys.stderr)
        return 2
    out = build_tokenizer_json(argv[1])
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
