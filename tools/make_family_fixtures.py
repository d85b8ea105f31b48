#!/usr/bin/env python3
"""The open_clip family fixtures: tiny seeded models and their goldens from open_clip itself.

    python tools/make_family_fixtures.py           # (re)write models/<fixture>/ and the goldens
    python tools/make_family_fixtures.py --check   # regenerate into a temp dir, compare with the tree

Three fixtures, each exported by ``export_openclip.py`` from a tiny config in
``tools/openclip_configs/`` with seeded random weights:

* ``openclip-fixture``: an open_clip ViT with open_clip's default preprocessing (shortest-side
  resize, centre crop, bicubic, OpenAI mean/std) and its CLIP BPE ``SimpleTokenizer``;
* ``siglip-fixture``: a SigLIP-shaped model (no causal mask, last-token pooling, context 64)
  with the preprocessing of open_clip's ``ViT-B-16-SigLIP`` ``webli`` tag (squash resize,
  mean/std 0.5) and a SentencePiece Unigram ``tokenizer.json`` trained here with the
  ``tokenizers`` package (the real vocabulary cannot be fetched), run through open_clip's own
  ``HFTokenizer`` (``clean="canonicalize"``, padding to the context);
* ``rn-fixture``: a further architecture (open_clip's ModifiedResNet image tower) with
  ``resize_mode="longest"``, bilinear interpolation and a grey fill, to show that another
  architecture and other preprocessing values are a manifest, not code.

Goldens: every text of ``tests/fixtures/text/cases.json`` through the model's open_clip
tokenizer and ``encode_text``, and every image of ``tests/fixtures/images/cases.json`` through
``image_transform_v2(PreprocessCfg)`` (open_clip's ``preprocess``) and ``encode_image``, with the
PyTorch model. Images are opened as RGB (``Image.open(f).convert("RGB")``, as open_clip's
webdataset training loader decodes them with ``pilrgb``) before ``preprocess``. The committed ONNX
files are run on the same inputs as a consistency check only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import export_openclip as oc  # noqa: E402
from bindery_tools import goldens  # noqa: E402
from open_clip import tokenizer as oc_tokenizer  # noqa: E402
from open_clip import zero_shot_metadata  # noqa: E402
from open_clip.zero_shot_classifier import build_zero_shot_classifier  # noqa: E402
from open_clip.transform import image_transform_v2  # noqa: E402

REPO = TOOLS.parent
INPUTS = REPO / "tests" / "fixtures"
GOLDENS = "families"
ONNX_TOLERANCE = 1e-4
LICENCE = "MIT (open_clip code); seeded random weights"


#: name -> (config, extra export arguments)
FIXTURES: dict[str, dict[str, Any]] = {
    "openclip-fixture": {
        "description": "Tiny open_clip ViT (16 wide, 1 block, random weights, seed 1234) for tests; "
        "embeddings carry no meaning.",
    },
    "siglip-fixture": {
        "description": "Tiny SigLIP-shaped open_clip model (16 wide, 1 block, random weights, seed "
        "1234, a 1,000-piece Unigram vocabulary trained for tests); embeddings carry no meaning.",
        "pretrained_tag": "ViT-B-16-SigLIP:webli",
        "sentencepiece": True,
    },
    "rn-fixture": {
        "description": "Tiny open_clip ModifiedResNet (random weights, seed 1234) with longest-side "
        "resize, bilinear interpolation and a grey fill, for tests; embeddings carry no meaning.",
        "force": {"resize_mode": "longest", "interpolation": "bilinear", "fill_color": 128},
    },
}


def train_sentencepiece(path: Path) -> None:
    """A small SentencePiece-style Unigram ``tokenizer.json`` laid out like T5's (SigLIP's):
    ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, Metaspace pre-tokenizer, ``</s>`` appended."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers import processors, trainers

    corpus = [c["text"] for c in json.loads((INPUTS / "text" / "cases.json").read_text())]
    for name in zero_shot_metadata.IMAGENET_CLASSNAMES:
        corpus += [t(name) for t in zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES[:8]]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=1000,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", eos)])
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))


def _hf_tokenizer(tokenizer_json: Path, context: int, clean: str) -> Any:
    """open_clip's ``HFTokenizer`` on a local folder holding ``tokenizer_json``."""
    folder = Path(tempfile.mkdtemp())
    (folder / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "model_max_length": context,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return oc_tokenizer.HFTokenizer(str(folder), context_length=context, clean=clean)


def _reference_tokenizer(name: str, model_dir: Path) -> Any:
    cfg = oc.text_cfg(name, None)
    context = int(cfg["context_length"])
    if cfg.get("hf_tokenizer_name"):
        clean = cfg.get("tokenizer_kwargs", {}).get("clean", "whitespace")
        return _hf_tokenizer(model_dir / "tokenizer.json", context, clean)
    return oc_tokenizer.SimpleTokenizer(context_length=context, **cfg.get("tokenizer_kwargs", {}))


def _f32_list(t: torch.Tensor) -> list[float]:
    return [float(x) for x in t.detach().to(torch.float32).reshape(-1).tolist()]


def goldens_for(name: str, model_dir: Path) -> dict[str, Any]:
    """Reference tokens and embeddings of every text and image golden input."""
    spec = FIXTURES[name]
    model = oc.build_model(name, pretrained_tag=spec.get("pretrained_tag"), force=spec.get("force"))
    tokenizer = _reference_tokenizer(name, model_dir)
    preprocess = image_transform_v2(oc.preprocess_cfg(model), is_train=False)
    text = []
    for case in json.loads((INPUTS / "text" / "cases.json").read_text()):
        tokens = tokenizer([case["text"]])
        with torch.no_grad():
            emb = model.encode_text(tokens)
        text.append(
            {
                "id": case["id"],
                "text": case["text"],
                "tokens": [int(t) for t in tokens[0].tolist()],
                "embedding": _f32_list(emb[0]),
            }
        )
    images = []
    for case in json.loads((INPUTS / "images" / "cases.json").read_text()):
        with Image.open(INPUTS / "images" / case["file"]) as im:
            pixels = preprocess(im.convert("RGB")).unsqueeze(0)
        with torch.no_grad():
            emb = model.encode_image(pixels)
        images.append({"id": case["id"], "file": case["file"], "embedding": _f32_list(emb[0])})
    _check_onnx(model_dir, tokenizer, text, images, preprocess)
    return {"text": text, "images": images}


#: Labels and image of the zero-shot golden (Classify with ``template_set = "imagenet"``).
ZERO_SHOT_LABELS = ["dog", "cat", "red sofa", "fox", "lighthouse"]
ZERO_SHOT_IMAGE = "jpeg_baseline.jpg"


def zero_shot_golden(name: str, model_dir: Path) -> dict[str, Any]:
    """open_clip's own zero-shot classifier over ``OPENAI_IMAGENET_TEMPLATES`` and the cosines
    of one image with each label."""
    spec = FIXTURES[name]
    model = oc.build_model(name, pretrained_tag=spec.get("pretrained_tag"), force=spec.get("force"))
    tokenizer = _reference_tokenizer(name, model_dir)
    preprocess = image_transform_v2(oc.preprocess_cfg(model), is_train=False)
    with torch.no_grad():
        classifier = build_zero_shot_classifier(
            model, tokenizer, ZERO_SHOT_LABELS, zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES
        )
        with Image.open(INPUTS / "images" / ZERO_SHOT_IMAGE) as im:
            pixels = preprocess(im.convert("RGB")).unsqueeze(0)
        image = torch.nn.functional.normalize(model.encode_image(pixels), dim=-1)
        cosines = (image @ classifier)[0]
    return {"image": ZERO_SHOT_IMAGE, "labels": ZERO_SHOT_LABELS, "cosines": _f32_list(cosines)}


def _check_onnx(model_dir: Path, tokenizer: Any, text: list, images: list, preprocess: Any) -> None:
    """The exported towers on the reference inputs must give the PyTorch goldens."""
    session = ort.InferenceSession(str(model_dir / "text.onnx"), providers=["CPUExecutionProvider"])
    tokens = np.array([c["tokens"] for c in text], dtype=np.int64)
    (got,) = session.run(None, {"tokens": tokens})
    text_diff = float(np.max(np.abs(got - np.array([c["embedding"] for c in text], np.float32))))
    session = ort.InferenceSession(str(model_dir / "vision.onnx"), providers=["CPUExecutionProvider"])
    pixels = []
    for case in images:
        with Image.open(INPUTS / "images" / case["file"]) as im:
            pixels.append(preprocess(im.convert("RGB")).numpy())
    (got,) = session.run(None, {"pixels": np.stack(pixels)})
    image_diff = float(np.max(np.abs(got - np.array([c["embedding"] for c in images], np.float32))))
    print(f"  {model_dir.name}: onnxruntime vs goldens, text {text_diff:.2e}, image {image_diff:.2e}")
    if max(text_diff, image_diff) > ONNX_TOLERANCE:
        raise SystemExit(f"{model_dir} does not match its PyTorch model")


def _dump(cases: list[dict[str, Any]], path: Path) -> None:
    """JSON with one case per line group and arrays on one line, so diffs stay readable."""
    lines = ["["]
    for i, case in enumerate(cases):
        body = ", ".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in case.items())
        lines.append("  {" + body + ("}," if i + 1 < len(cases) else "}"))
    lines.append("]")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def generate(root: Path, models: Path, retrain: bool = False) -> None:
    """Write ``models/<fixture>/`` and ``root/families/<fixture>/{text,images}.json``.

    The committed SentencePiece vocabulary is reused unless ``retrain``: Unigram training is
    not byte-for-byte reproducible, and the goldens are only comparable on the same vocabulary."""
    torch.set_num_threads(1)
    for name, spec in FIXTURES.items():
        out = models / name
        tokenizer_json = None
        if spec.get("sentencepiece"):
            tokenizer_json = out / "tokenizer.json"
            committed = REPO / "models" / name / "tokenizer.json"
            if retrain or not committed.is_file():
                train_sentencepiece(tokenizer_json)
            elif committed.resolve() != tokenizer_json.resolve():
                out.mkdir(parents=True, exist_ok=True)
                tokenizer_json.write_bytes(committed.read_bytes())
        oc.export_model(
            name,
            out,
            name=name,
            description=spec["description"],
            licence=LICENCE,
            pretrained_tag=spec.get("pretrained_tag"),
            force=spec.get("force"),
            tokenizer_json=tokenizer_json,
        )
        cases = goldens_for(name, out)
        _dump(cases["text"], root / GOLDENS / name / "text.json")
        _dump(cases["images"], root / GOLDENS / name / "images.json")
        if name == "openclip-fixture":
            _dump([zero_shot_golden(name, out)], root / GOLDENS / name / "zero_shot.json")


def _owned(root: Path) -> set[str]:
    owned = {f"{GOLDENS}/{n}/{k}.json" for n in FIXTURES for k in ("text", "images")}
    return owned | {f"{GOLDENS}/openclip-fixture/zero_shot.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument(
        "--retrain-tokenizer", action="store_true", help="train the SigLIP fixture's vocabulary anew"
    )
    args = parser.parse_args()
    if args.check:

        def regenerate(root: Path, _models: Path) -> None:
            generate(root, root / "models")

        raise SystemExit(goldens.check_regenerated(INPUTS, REPO / "models", regenerate, _owned))
    generate(INPUTS, REPO / "models", args.retrain_tokenizer)


if __name__ == "__main__":
    main()
