#!/usr/bin/env python3
"""Export a trained bind-mini checkpoint to a bindery model folder.

    tools/.venv/bin/python tools/bindmini/export.py [--checkpoint tools/.gen/bindmini/checkpoint.pt] [--out models/bind-mini]

Writes ``text.onnx``, ``vision.onnx``, ``audio.onnx`` (tools/export_imagebind.py's exporter and
its onnxruntime-vs-PyTorch check), ``point.onnx`` (tools/point_tower.py's), ``tokenizer.json``
(the fixture's CLIP BPE, the same one ImageBind uses) and ``model.toml`` with every preprocessing
constant taken from the reference code, except the image size and the point-cloud sampling,
which are bind-mini's own (tools/bindmini/model.py).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from unittest import mock

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import model as M  # noqa: E402
import export_imagebind as exporter  # noqa: E402
import point_tower  # noqa: E402

ref = M.ref
ROOT = HERE.parents[1]
DEFAULT_CKPT = ROOT / "tools/.gen/bindmini/checkpoint.pt"
DEFAULT_OUT = ROOT / "models/bind-mini"
FIXTURE_TOKENIZER = ROOT / "models/imagebind-fixture/tokenizer.json"


def _example_pixels(batch: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(batch, 3, M.IMAGE_SIZE, M.IMAGE_SIZE, generator=gen)


#: The ImageBind towers bind-mini trains (the exporter's list also holds video and the sensors).
SECTIONS = ("text", "image", "audio")


def tower_specs() -> list[ref.TowerSpec]:
    """bind-mini's ImageBind towers, with its image size in the example input."""
    out = []
    for spec in (s for s in ref.TOWERS if s.section in SECTIONS):
        if spec.section == "image":
            spec = ref.TowerSpec(spec.section, spec.modality, spec.onnx, spec.input, spec.output, _example_pixels)
        out.append(spec)
    return out


def load(checkpoint: Path) -> tuple[torch.nn.Module, point_tower.PointTower, dict]:
    """The trained towers (eval mode) and the checkpoint's metadata."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    ib = M.build_imagebind(state["seed"])
    ib.load_state_dict(state["imagebind"])
    pt = M.build_point(state["seed"])
    pt.load_state_dict(state["point"])
    return ib.eval(), pt.eval(), state


def manifest(ib: torch.nn.Module, state: dict, cut_text: bool) -> str:
    """``model.toml`` in the schema of src/model/manifest.rs; ``cut_text``: the text tower may be
    served with ``trim_padding``."""
    v = exporter._toml_value
    image = ref.image_preprocess_params()
    image.update(resize=M.IMAGE_SIZE, crop=M.IMAGE_SIZE)
    text = {"tokenizer": "tokenizer.json", **ref.text_preprocess_params()}
    if cut_text:
        text["trim_padding"] = True
    preprocess = {
        "text": text,
        "image": image,
        "audio": ref.audio_preprocess_params(),
    }
    # Steps of every run, plus stage 1 of a run whose image and text towers were taken over.
    steps = state["steps"] + sum(
        st["steps"] for r in state.get("runs") or [] if r.get("image_text_from")
        for name, st in (r["image_text_from"].get("stages") or {}).items() if name == "image-text")
    description = (
        "bind-mini: a small ImageBind (vision, text, audio) and PointBERT-style point tower trained "
        "on a procedural world of 8 shapes x 8 colours (tools/bindmini, seed "
        f"{state['seed']}, world seed {state['world_seed']}, {steps} steps)."
    )
    lines = [
        'name = "bind-mini"',
        'family = "imagebind"',
        f"description = {v(description)}",
        f"embedding_dim = {M.EMBED_DIM}",
    ]
    for spec in tower_specs():
        lines += [
            "",
            f"[{spec.section}]",
            f"onnx = {v(spec.onnx)}",
            f"input = {v(spec.input)}",
            f"output = {v(spec.output)}",
            f"logit_scale = {ref.float32_literal(ref.logit_scale(ib, spec.modality))}",
            "",
            f"[{spec.section}.preprocess]",
        ]
        lines += [f"{k} = {v(x)}" for k, x in preprocess[spec.section].items()]
    lines += [
        "",
        "# PointBERT-style tower (tools/point_tower.py), bound to the image tower; ULIP's",
        "# preprocessing steps with fewer points and groups.",
        "[point_cloud]",
        f'onnx = "{point_tower.ONNX_NAME}"',
        f'input = "{point_tower.INPUT}"',
        f'output = "{point_tower.OUTPUT}"',
        "logit_scale = 1.0",
        "",
        "[point_cloud.preprocess]",
    ]
    lines += [f"{k} = {v(x)}" for k, x in M.POINT_PREPROCESS.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CKPT)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    start = time.monotonic()
    ib, pt, state = load(args.checkpoint)
    args.out.mkdir(parents=True, exist_ok=True)
    for spec in tower_specs():
        tower = ref.Tower(ib, spec.modality).eval()
        dest = args.out / spec.onnx
        print(f"exporting {spec.section} -> {dest}", flush=True)
        exporter._export_onnx(tower, spec, dest)
        exporter._verify(tower, spec, dest)
    groups = {"num_group": M.POINT_PREPROCESS["num_group"], "group_size": M.POINT_PREPROCESS["group_size"]}
    with mock.patch.dict(point_tower.PREPROCESS, groups):
        dest = args.out / point_tower.ONNX_NAME
        print(f"exporting point_cloud -> {dest}", flush=True)
        point_tower._export_onnx(pt, dest)
        point_tower._verify(pt, dest)
    shutil.copyfile(FIXTURE_TOKENIZER, args.out / "tokenizer.json")
    (args.out / "model.toml").write_text(manifest(ib, state, exporter.verify_text_cut(args.out)))
    total = 0
    for f in sorted(args.out.iterdir()):
        if f.suffix in (".onnx", ".json", ".toml"):
            total += f.stat().st_size
            print(f"  {f.name}: {f.stat().st_size} bytes")
    print(f"wrote {args.out} ({total / 1e6:.1f} MB of model files) in {time.monotonic() - start:.1f}s")


if __name__ == "__main__":
    main()
