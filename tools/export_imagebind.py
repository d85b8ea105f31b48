#!/usr/bin/env python3
"""Export ImageBind's towers (text, vision, audio, thermal, IMU, depth) to ONNX and write a bindery model folder.

    python tools/export_imagebind.py --fixture --out models/imagebind-fixture
    python tools/export_imagebind.py --checkpoint imagebind_huge.pth --out models/imagebind-huge
    python tools/export_imagebind.py --random-huge --out /tmp/imagebind-huge-random
    python tools/export_imagebind.py --random-base --out tools/.gen/imagebind-base-random

Each tower is the reference model's own forward for one modality (preprocessor, trunk, head,
normalisation and logit scale), checked against onnxruntime at batch sizes 1 and 3 before the
folder is written. ``model.toml`` takes every preprocessing constant from the reference code.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import reference as ref  # noqa: E402
from bindery_tools import sensors  # noqa: E402
from bindery_tools import any_length  # noqa: E402
from bindery_tools.onnx_files import save_exported  # noqa: E402

# Protobuf cannot serialise a message over 2 GiB; stay clear of it with some headroom for the graph.
OPSET = 17
# Max abs difference accepted between onnxruntime and PyTorch (outputs carry the logit scale, so
# text and audio values reach about 20).
TOLERANCE = 1e-3


def _dynamic_input_axes(spec: ref.TowerSpec) -> dict[int, str]:
    # A video's clip count is a manifest value, so the clip axis stays free too.
    return {0: "batch", 1: "clips"} if spec.section == "video" else {0: "batch"}


def _export_onnx(tower: ref.Tower, spec: ref.TowerSpec, dest: Path) -> None:
    """Trace ``tower`` into ``dest``, moving weights to ``<dest>.data`` when they are too big."""
    gen = torch.Generator().manual_seed(0)
    example = spec.example(2, gen)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        # Large graphs come out of the exporter with one file per tensor next to the model; export
        # into a scratch folder and re-save as a single model (+ one data file) afterwards.
        raw = Path(tmp) / dest.name
        if spec.section == "text":
            with ref.any_length_text():
                any_length.export(tower, example, raw, spec.input, spec.output)
            save_exported(raw, dest)
            return
        with torch.no_grad(), ref.traceable_unfold():
            torch.onnx.export(
                tower,
                (example,),
                str(raw),
                input_names=[spec.input],
                output_names=[spec.output],
                dynamic_axes={spec.input: _dynamic_input_axes(spec), spec.output: {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        save_exported(raw, dest)


def verify_text_cut(out: Path) -> bool:
    """Whether the text tower in the model folder ``out`` may be served with ``trim_padding``
    (``any_length.verify_cut`` on reference-shaped id rows)."""
    spec = next(s for s in ref.TOWERS if s.section == "text")
    tokens = spec.example(48, torch.Generator().manual_seed(2)).numpy()
    pad = int(ref.text_preprocess_params()["pad_token"])
    return any_length.verify_cut(out / spec.onnx, spec.input, spec.output, tokens, pad)


def _verify(tower: ref.Tower, spec: ref.TowerSpec, path: Path) -> float:
    """Largest |onnxruntime - PyTorch| over random inputs at batch sizes 1 and 3."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    if (inp.name, out.name) != (spec.input, spec.output):
        raise ValueError(f"{path.name}: tensor names {inp.name}/{out.name}")
    worst = 0.0
    gen = torch.Generator().manual_seed(1)
    for batch in (1, 3):
        x = spec.example(batch, gen)
        with torch.no_grad():
            expected = tower(x).numpy()
        (got,) = session.run([spec.output], {spec.input: x.numpy()})
        if got.shape != expected.shape or got.dtype != np.float32:
            raise ValueError(f"{path.name}: output {got.dtype}{got.shape}, want {expected.shape}")
        diff = float(np.max(np.abs(got - expected)))
        print(f"  {path.name}: batch {batch} -> {tuple(got.shape)}, max abs diff {diff:.3e}")
        worst = max(worst, diff)
    if worst > TOLERANCE:
        raise ValueError(f"{path.name}: onnxruntime differs from PyTorch by {worst}")
    return worst


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def _manifest(
    name: str, description: str, dim: int, model: torch.nn.Module, cut_text: bool
) -> str:
    """``model.toml`` text in the schema of ``src/model/manifest.rs``."""
    text = {"tokenizer": "tokenizer.json", **ref.text_preprocess_params()}
    if cut_text:
        text["trim_padding"] = True
    preprocess = {
        "text": text,
        "image": ref.image_preprocess_params(),
        "audio": ref.audio_preprocess_params(),
        "video": ref.video_preprocess_params(),
        "thermal": sensors.THERMAL_DEFAULTS,
        "imu": sensors.IMU_DEFAULTS,
        "depth": sensors.DEPTH_DEFAULTS,
    }
    lines = [
        f"name = {_toml_value(name)}",
        'family = "imagebind"',
        f"description = {_toml_value(description)}",
        f"embedding_dim = {dim}",
    ]
    for spec in ref.TOWERS:
        lines += [
            "",
            f"[{spec.section}]",
            f"onnx = {_toml_value(spec.onnx)}",
            f"input = {_toml_value(spec.input)}",
            f"output = {_toml_value(spec.output)}",
            # The value the float32 model multiplies by, written so it reads back exactly.
            f"logit_scale = {ref.float32_literal(ref.logit_scale(model, spec.modality))}",
            "",
            f"[{spec.section}.preprocess]",
        ]
        lines += [f"{k} = {_toml_value(v)}" for k, v in preprocess[spec.section].items()]
    return "\n".join(lines) + "\n"


def _write_tokenizer(out: Path) -> None:
    try:
        from bindery_tools.clip_tokenizer import build_tokenizer_json
    except ImportError as e:
        raise SystemExit(f"cannot build tokenizer.json: {e}") from e
    build_tokenizer_json(out / "tokenizer.json")


def _export_point_tower(out: Path, base: bool = False) -> None:
    """A point-cloud tower (not part of ImageBind): ``point.onnx`` + ``[point_cloud]``; the
    fixture's, or PointBERT-sized for the base model."""
    import point_tower

    point_tower.export(out, point_tower.POINTBERT_SIZES if base else None)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--fixture", action="store_true", help="tiny seeded model for tests")
    which.add_argument("--checkpoint", type=Path, help="official imagebind_huge.pth")
    which.add_argument("--random-huge", action="store_true", help="ImageBind-huge, random weights")
    which.add_argument(
        "--random-base", action="store_true", help="ViT-B-like widths + PointBERT, random weights"
    )
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--name", help="model name in model.toml (default: the folder name)")
    parser.add_argument(
        "--towers",
        help="comma-separated sections whose ONNX files to (re)write, e.g. thermal; the others "
        "are left as they are (model.toml is always written whole)",
    )
    args = parser.parse_args()
    sections = [spec.section for spec in ref.TOWERS]
    only = set(args.towers.split(",")) if args.towers else set(sections)
    if not only <= set(sections):
        parser.error(f"--towers: unknown section(s) {sorted(only - set(sections))}")

    start = time.monotonic()
    if args.fixture:
        model = ref.build_fixture_model()
        description = (
            f"Tiny ImageBind ({ref.FIXTURE_WIDTH} wide, {ref.FIXTURE_BLOCKS} block, random "
            f"weights, seed {ref.FIXTURE_SEED}) for tests; embeddings carry no meaning."
        )
    elif args.random_base:
        model = ref.build_base_model()
        description = (
            "ImageBind with ViT-B-like widths and a PointBERT-sized point tower, random weights: "
            "for measuring inference-bound serving; embeddings carry no meaning."
        )
    elif args.checkpoint is not None:
        model = ref.build_huge_model(args.checkpoint)
        description = "ImageBind-huge (official weights)."
    else:
        model = ref.build_huge_model(None)
        description = "ImageBind-huge architecture with random weights, for exercising the export."
    name = args.name or args.out.resolve().name
    dim = int(model.modality_heads[ref.ModalityType.TEXT].proj[-1].out_features)

    args.out.mkdir(parents=True, exist_ok=True)
    for spec in (s for s in ref.TOWERS if s.section in only):
        tower = ref.Tower(model, spec.modality).eval()
        dest = args.out / spec.onnx
        t0 = time.monotonic()
        print(f"exporting {spec.section} -> {dest}", flush=True)
        _export_onnx(tower, spec, dest)
        _verify(tower, spec, dest)
        print(f"  done in {time.monotonic() - t0:.1f}s", flush=True)

    (args.out / "model.toml").write_text(_manifest(name, description, dim, model, verify_text_cut(args.out)))
    _write_tokenizer(args.out)
    if (args.fixture or args.random_base) and not args.towers:
        _export_point_tower(args.out, base=args.random_base)
    elif args.fixture or args.random_base:
        # The point tower's ONNX stays as it is; its manifest section is written again.
        import point_tower

        manifest = args.out / "model.toml"
        manifest.write_text(manifest.read_text() + point_tower.manifest_section())
    print(f"wrote {args.out} in {time.monotonic() - start:.1f}s")
    for f in sorted(args.out.iterdir()):
        print(f"  {f.name}: {f.stat().st_size} bytes")


if __name__ == "__main__":
    main()
