#!/usr/bin/env python3
"""Export an open_clip model's text and image towers to ONNX and write a bindery model folder.

    python tools/export_openclip.py --model ViT-B-32 --checkpoint open_clip_model.safetensors \\
        --pretrained-tag laion2b_s34b_b79k --out models/vit-b-32
    python tools/export_openclip.py --pretrained-dir DIR --out models/NAME   # an open_clip hub folder
    python tools/export_openclip.py --model ViT-B-32 --random --out tools/.gen/vit-b-32-random
    python tools/export_openclip.py --model openclip-fixture --random --out models/openclip-fixture

The architecture comes from open_clip's own model configs (``tools/openclip_configs/`` adds the
tiny test architectures); ``create_model(name, pretrained=None)`` builds it offline, and weights
are loaded from a local file only. ``--random`` keeps the seeded random initialisation.

Every preprocessing value in ``model.toml`` is read from open_clip: the image section from the
model's ``PreprocessCfg`` (merged with the pretrained tag's metadata when ``--pretrained-tag``
names one; nothing is downloaded), the text section from the tokenizer ``get_tokenizer`` (or,
for Hugging Face tokenizers, the model config) describes. A CLIP BPE model's ``tokenizer.json``
is written from open_clip's bundled vocabulary; a Hugging Face tokenizer's ``tokenizer.json``
must be given (``--tokenizer``), since it comes with the weights.

Each tower is checked against onnxruntime at batch sizes 1 and 3 before the folder is written.
Towers are exported one at a time, and weights go to ``<tower>.onnx.data`` when the graph would
not fit a protobuf.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import onnxruntime as ort
import torch

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import open_clip  # noqa: E402
from open_clip import tokenizer as oc_tokenizer  # noqa: E402
from open_clip.transform import PreprocessCfg  # noqa: E402
from open_clip.transformer import text_global_pool  # noqa: E402

from bindery_tools.clip_tokenizer import tokenizer_dict  # noqa: E402
from bindery_tools import any_length  # noqa: E402
from bindery_tools.onnx_files import save_exported  # noqa: E402

#: Tiny architectures for tests, in open_clip's own config format.
CONFIGS = TOOLS / "openclip_configs"
open_clip.add_model_config(CONFIGS)
# nn.MultiheadAttention's inference fast path is one fused operator the ONNX exporter lacks.
torch.backends.mha.set_fastpath_enabled(False)

#: Seed of ``--random`` weights, so a fixture can be rebuilt identically for its goldens.
SEED = 1234
OPSET = 17
#: Protobuf cannot serialise a message over 2 GiB; keep clear of it.
#: Max abs difference accepted between onnxruntime and PyTorch.
TOLERANCE = 1e-3


@dataclass(frozen=True)
class TowerSpec:
    """One exported tower: its manifest section, file and tensor names."""

    section: str
    onnx: str
    input: str
    output: str


TEXT = TowerSpec("text", "text.onnx", "tokens", "embedding")
IMAGE = TowerSpec("image", "vision.onnx", "pixels", "embedding")


class _Tower(torch.nn.Module):
    """``encode_text`` or ``encode_image`` of the model, unnormalised (bindery normalises)."""

    def __init__(self, model: torch.nn.Module, section: str) -> None:
        super().__init__()
        self.model = model
        self.section = section

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.section == "text":
            return self.model.encode_text(x)
        return self.model.encode_image(x)


def cuttable_text(model: torch.nn.Module) -> bool:
    """Whether the text tower reads nothing after a row's last id, so that it can be exported
    to take any length and served with ``trim_padding``: open_clip's ``CLIP`` text tower with its
    causal mask, pooled at the end id (``argmax``) or the tokenizer's eos id. SigLIP's (no causal
    mask, last-token pooling) reads the padding."""
    return (
        type(model) is open_clip.model.CLIP
        and model.attn_mask is not None
        and model.text_pool_type in ("argmax", "eos")
    )


@contextlib.contextmanager
def any_length_text() -> Iterator[None]:
    """Within the block, ``CLIP.encode_text`` takes id rows of any length up to the context: it
    adds the first ``length`` positional embeddings and masks with the top-left ``length x
    length`` of the causal mask, where open_clip always uses all of them. For a row cut after its
    end id this is the same computation on every position the pooled output reads, since causal
    attention never looks right; the exporter checks the graph against the unpatched model at
    full length and against its own whole rows."""
    original = open_clip.model.CLIP.encode_text

    def encode_text(self: Any, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        length = text.shape[1]
        cast_dtype = self.transformer.get_cast_dtype()
        x = self.token_embedding(text).to(cast_dtype)
        x = x + self.positional_embedding[:length].to(cast_dtype)
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        x = self.ln_final(x)
        x = text_global_pool(x, text, self.text_pool_type, eos_token_id=getattr(self, "text_eos_id", None))
        if self.text_projection is not None:
            if isinstance(self.text_projection, torch.nn.Linear):
                x = self.text_projection(x)
            else:
                x = x @ self.text_projection
        return torch.nn.functional.normalize(x, dim=-1) if normalize else x

    open_clip.model.CLIP.encode_text = encode_text  # type: ignore[method-assign]
    try:
        yield
    finally:
        open_clip.model.CLIP.encode_text = original  # type: ignore[method-assign]


def build_model(
    name: str,
    checkpoint: Path | None = None,
    pretrained_dir: Path | None = None,
    pretrained_tag: str | None = None,
    force: dict[str, Any] | None = None,
) -> torch.nn.Module:
    """The open_clip model: seeded random weights, or weights from a local file or folder.

    ``pretrained_tag`` (``TAG`` of ``name``, or ``MODEL:TAG`` of another architecture, which a
    tiny test architecture stands in for) only contributes preprocessing metadata (mean, std,
    resize mode...); ``force`` sets ``PreprocessCfg`` fields last, as open_clip's
    ``force_preprocess_cfg`` does."""
    torch.manual_seed(SEED)
    if pretrained_dir is not None:
        return open_clip.create_model(f"local-dir:{pretrained_dir}", force_preprocess_cfg=force).eval()
    merged: dict[str, Any] = {}
    if pretrained_tag:
        arch, _, tag_name = pretrained_tag.rpartition(":")
        tag = open_clip.get_pretrained_cfg(arch or name, tag_name)
        if not tag:
            raise SystemExit(f"open_clip has no pretrained tag {tag_name!r} for {arch or name}")
        merged = {k: v for k, v in tag.items() if k in asdict(PreprocessCfg())}
    merged.update(force or {})
    model = open_clip.create_model(
        name,
        pretrained=str(checkpoint) if checkpoint else None,
        force_preprocess_cfg=merged or None,
        pretrained_text=False,
    )
    return model.eval()


def preprocess_cfg(model: torch.nn.Module) -> PreprocessCfg:
    """The image preprocessing open_clip attached to the model."""
    return PreprocessCfg(**model.visual.preprocess_cfg)


def text_cfg(name: str, pretrained_dir: Path | None) -> dict[str, Any]:
    """The model config's ``text_cfg`` (where context length and tokenizer are named)."""
    if pretrained_dir is not None:
        config = json.loads((pretrained_dir / "open_clip_config.json").read_text())["model_cfg"]
    else:
        config = open_clip.get_model_config(name)
    return dict(config.get("text_cfg", {}))


def _clean_name(fn: Callable[[str], str]) -> str:
    """open_clip's name of one of its cleaning functions."""
    for name in ("lower", "whitespace", "canonicalize"):
        if oc_tokenizer.get_clean_fn(name) is fn:
            return name
    raise ValueError(f"unknown open_clip cleaning function {fn!r}")


def text_preprocess(name: str, pretrained_dir: Path | None, tokenizer_json: Path | None) -> dict:
    """``[text.preprocess]``, and the ``tokenizer.json`` content to write (``None``: copy)."""
    cfg = text_cfg(name, pretrained_dir)
    context = int(cfg.get("context_length", oc_tokenizer.DEFAULT_CONTEXT_LENGTH))
    if cfg.get("hf_tokenizer_name"):
        # open_clip's HFTokenizer: the tokenizer.json's own pipeline, truncated and padded to the
        # context, around open_clip's cleaning.
        if tokenizer_json is None:
            raise SystemExit(
                "this model uses a Hugging Face tokenizer: pass its tokenizer.json with --tokenizer"
            )
        kwargs = dict(cfg.get("tokenizer_kwargs", {}))
        clean = kwargs.pop("clean", "whitespace")
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tokenizer_json))
        pad = tok.token_to_id("<pad>")
        if pad is None:
            raise SystemExit(f"{tokenizer_json} has no <pad> token")
        return {
            "params": {
                "tokenizer_kind": "hf",
                "context_length": context,
                "clean": clean,
                "pad_token": pad,
            },
            "tokenizer": None,
        }
    tok = oc_tokenizer.SimpleTokenizer(context_length=context)
    specials = tuple(tok.decoder[i] for i in tok.all_special_ids)
    return {
        "params": {
            "tokenizer_kind": "clip",
            "context_length": context,
            "clean": _clean_name(tok.clean_fn),
            "start_token": tok.sot_token_id,
            "end_token": tok.eot_token_id,
            # SimpleTokenizer fills the rest of the row with zeros.
            "pad_token": 0,
        },
        "tokenizer": tokenizer_dict(tok, specials),
    }


def image_preprocess(cfg: PreprocessCfg) -> dict[str, Any]:
    """``[image.preprocess]`` from open_clip's ``PreprocessCfg``, under open_clip's names."""
    size = cfg.size
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise SystemExit(f"non-square image size {size} is not supported")
        size = size[0]
    return {
        "size": int(size),
        "resize_mode": cfg.resize_mode,
        "interpolation": cfg.interpolation,
        "mean": [float(v) for v in cfg.mean],
        "std": [float(v) for v in cfg.std],
        "fill_color": int(cfg.fill_color),
    }


def _example(spec: TowerSpec, model: torch.nn.Module, batch: int, gen: torch.Generator) -> torch.Tensor:
    if spec is TEXT:
        vocab = int(model.vocab_size if hasattr(model, "vocab_size") else 49408)
        context = int(model.context_length)
        ids = torch.randint(1, vocab, (batch, context), generator=gen)
        # Rows of different lengths, zero-padded like real ones.
        for row, length in enumerate(torch.randint(2, context, (batch,), generator=gen).tolist()):
            ids[row, length:] = 0
        return ids
    cfg = preprocess_cfg(model)
    size = cfg.size if isinstance(cfg.size, int) else cfg.size[0]
    return torch.randn(batch, 3, size, size, generator=gen)


def export_tower(model: torch.nn.Module, spec: TowerSpec, dest: Path) -> float:
    """Trace one tower into ``dest`` and check it; returns the worst abs difference."""
    tower = _Tower(model, spec.section).eval()
    example = _example(spec, model, 2, torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        raw = Path(tmp) / dest.name
        if spec is TEXT and cuttable_text(model):
            with any_length_text():
                any_length.export(tower, example, raw, spec.input, spec.output)
            save_exported(raw, dest)
            return _verify(tower, model, spec, dest)
        with torch.no_grad():
            torch.onnx.export(
                tower,
                (example,),
                str(raw),
                input_names=[spec.input],
                output_names=[spec.output],
                dynamic_axes={spec.input: {0: "batch"}, spec.output: {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        save_exported(raw, dest)
    return _verify(tower, model, spec, dest)


def _verify(tower: torch.nn.Module, model: torch.nn.Module, spec: TowerSpec, path: Path) -> float:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    if (inp.name, out.name) != (spec.input, spec.output):
        raise ValueError(f"{path.name}: tensor names {inp.name}/{out.name}")
    worst = 0.0
    gen = torch.Generator().manual_seed(1)
    for batch in (1, 3):
        x = _example(spec, model, batch, gen)
        with torch.no_grad():
            expected = tower(x).numpy()
        (got,) = session.run([spec.output], {spec.input: x.numpy()})
        diff = float(np.max(np.abs(got - expected)))
        print(f"  {path.name}: batch {batch} -> {tuple(got.shape)}, max abs diff {diff:.3e}")
        worst = max(worst, diff)
    if worst > TOLERANCE:
        raise ValueError(f"{path.name}: onnxruntime differs from PyTorch by {worst}")
    return worst


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return np.format_float_positional(np.float32(v), unique=True, trim="0")
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def manifest(
    name: str,
    family: str,
    description: str,
    licence: str,
    model: torch.nn.Module,
    text_params: dict[str, Any],
) -> str:
    """``model.toml`` text in the schema of ``src/model/manifest.rs``."""
    with torch.no_grad():
        probe = torch.zeros(1, int(model.context_length), dtype=torch.long)
        dim = int(model.encode_text(probe).shape[-1])
    scale = float(model.logit_scale.detach().exp())
    lines = [
        f"name = {_toml_value(name)}",
        f"family = {_toml_value(family)}",
        f"description = {_toml_value(description)}",
        f"licence = {_toml_value(licence)}",
        f"embedding_dim = {dim}",
    ]
    sections = [
        (TEXT, scale, {"tokenizer": "tokenizer.json", **text_params}),
        (IMAGE, 1.0, image_preprocess(preprocess_cfg(model))),
    ]
    for spec, logit_scale, params in sections:
        lines += [
            "",
            f"[{spec.section}]",
            f"onnx = {_toml_value(spec.onnx)}",
            f"input = {_toml_value(spec.input)}",
            f"output = {_toml_value(spec.output)}",
            # open_clip scales image-text cosines by exp(logit_scale); bindery multiplies the
            # two modalities' scales.
            f"logit_scale = {_toml_value(float(logit_scale))}",
            "",
            f"[{spec.section}.preprocess]",
        ]
        lines += [f"{k} = {_toml_value(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


#: Attributes of open_clip's ``CLIP`` / ``CustomTextCLIP`` that hold the text tower.
TEXT_PARTS = ("text", "transformer", "token_embedding", "positional_embedding", "ln_final", "text_projection")


def drop_other_tower(model: torch.nn.Module, keep: TowerSpec) -> None:
    """Frees the tower that is not exported, so a large model exports one tower per process
    with only that tower's weights held (the preprocessing settings were read before)."""
    if keep is TEXT:
        model.visual = None
    else:
        for part in TEXT_PARTS:
            if getattr(model, part, None) is not None:
                setattr(model, part, None)
    gc.collect()


def family_of(name: str, text_params: dict[str, Any]) -> str:
    """The bindery family whose defaults fit: SigLIP's tokenizer and image path, or OpenCLIP's."""
    return "siglip" if text_params["tokenizer_kind"] == "hf" else "openclip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", help="open_clip architecture name, e.g. ViT-B-32")
    weights = parser.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", type=Path, help="local open_clip checkpoint file")
    weights.add_argument("--pretrained-dir", type=Path, help="local open_clip hub folder")
    weights.add_argument("--random", action="store_true", help=f"random weights (seed {SEED})")
    parser.add_argument("--pretrained-tag", help="tag whose preprocessing metadata to use")
    parser.add_argument(
        "--force-preprocess",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="set a PreprocessCfg field, e.g. resize_mode=\"longest\" (repeatable)",
    )
    parser.add_argument("--tokenizer", type=Path, help="tokenizer.json of a Hugging Face tokenizer")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--name", help="model name (default: the folder name)")
    parser.add_argument("--description", help="model.toml description")
    parser.add_argument("--licence", default="", help="licence note shown by ListModels")
    parser.add_argument(
        "--towers",
        help="text or image: export only that tower (the other is freed first), so that a large "
        "model is exported one tower per process; model.toml and tokenizer.json are written each time",
    )
    args = parser.parse_args()
    if args.pretrained_dir is None and not args.model:
        parser.error("--model is required unless --pretrained-dir is given")
    arch = args.model or args.pretrained_dir.name
    tokenizer_json = args.tokenizer
    if tokenizer_json is None and args.pretrained_dir and (args.pretrained_dir / "tokenizer.json").is_file():
        tokenizer_json = args.pretrained_dir / "tokenizer.json"
    force = {}
    for item in args.force_preprocess:
        key, _, value = item.partition("=")
        force[key] = json.loads(value)
    export_model(
        arch,
        args.out,
        name=args.name or args.out.resolve().name,
        description=args.description,
        licence=args.licence,
        checkpoint=args.checkpoint,
        pretrained_dir=args.pretrained_dir,
        pretrained_tag=args.pretrained_tag,
        force=force,
        tokenizer_json=tokenizer_json,
        towers=set(args.towers.split(",")) if args.towers else None,
    )


def export_model(
    arch: str,
    out: Path,
    *,
    name: str,
    description: str | None = None,
    licence: str = "",
    checkpoint: Path | None = None,
    pretrained_dir: Path | None = None,
    pretrained_tag: str | None = None,
    force: dict[str, Any] | None = None,
    tokenizer_json: Path | None = None,
    towers: set[str] | None = None,
) -> None:
    """Writes the model folder ``out``: both towers (or those in ``towers``), ``model.toml`` and
    ``tokenizer.json``."""
    start = time.monotonic()
    text = text_preprocess(arch, pretrained_dir, tokenizer_json)
    model = build_model(arch, checkpoint, pretrained_dir, pretrained_tag, force)
    params = sum(p.numel() for p in model.parameters())
    print(f"{arch}: {params / 1e6:.1f} M parameters, built in {time.monotonic() - start:.1f}s", flush=True)
    if checkpoint is None and pretrained_dir is None:
        weights_note = f"random weights (seed {SEED})"
    else:
        weights_note = f"weights from {(checkpoint or pretrained_dir).name}"
    description = description or f"open_clip {arch}, {weights_note}."

    out.mkdir(parents=True, exist_ok=True)
    family = family_of(arch, text["params"])
    specs = [spec for spec in (TEXT, IMAGE) if towers is None or spec.section in towers]
    # The text tower is exported to take any length (or was, when only the image tower is
    # written now); checked below once it is written.
    cut = cuttable_text(model) and (TEXT in specs or any_length.length_is_free(out / TEXT.onnx))
    text_params = {**text["params"], **({"trim_padding": True} if cut else {})}
    # Written first: it reads both towers' settings, one of which may be dropped below.
    (out / "model.toml").write_text(manifest(name, family, description, licence, model, text_params))
    if len(specs) == 1:
        drop_other_tower(model, specs[0])
    for spec in specs:
        t0 = time.monotonic()
        print(f"exporting {spec.section} -> {out / spec.onnx}", flush=True)
        export_tower(model, spec, out / spec.onnx)
        if spec is TEXT and cut:
            tokens = _example(TEXT, model, 48, torch.Generator().manual_seed(2)).numpy()
            if not any_length.verify_cut(out / TEXT.onnx, TEXT.input, TEXT.output, tokens, text_params["pad_token"]):
                raise ValueError(f"{TEXT.onnx}: rows cut after their last id differ from whole rows")
        gc.collect()
        print(f"  done in {time.monotonic() - t0:.1f}s", flush=True)
    if text["tokenizer"] is not None:
        content = json.dumps(text["tokenizer"], ensure_ascii=False, separators=(",", ":"))
        (out / "tokenizer.json").write_text(content + "\n", encoding="utf-8")
    elif tokenizer_json is not None and tokenizer_json.resolve() != (out / "tokenizer.json").resolve():
        shutil.copyfile(tokenizer_json, out / "tokenizer.json")
    print(f"wrote {out} in {time.monotonic() - start:.1f}s")
    for f in sorted(out.iterdir()):
        print(f"  {f.name}: {f.stat().st_size} bytes")


if __name__ == "__main__":
    main()
