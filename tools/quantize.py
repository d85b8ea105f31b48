#!/usr/bin/env python3
"""Writes int8 variants of a model's towers and records how close each stays to its fp32 tower.

    tools/.venv/bin/python tools/quantize.py models/imagebind-fixture
    tools/.venv/bin/python tools/quantize.py MODEL_DIR --sections image,audio --static audio

For each section (default: every tower ``bindery_tools.reference.TOWERS`` knows), ONNX Runtime's
quantization tooling writes ``<onnx stem>.int8.onnx``: dynamic quantization (int8 weights,
activations quantized at run time) by default, static QDQ (activations calibrated on reference
inputs) for the sections named by ``--static``, for towers where dynamic quantization loses too
much. The inputs are the reference preprocessing of the committed test files: text goldens
through the reference tokenizer, images through ``load_and_transform_vision_data``, audio files
through ``load_and_transform_audio_data``; the sensor towers, which have no reference loader, get
the exporter's example inputs. A model whose towers take other shapes than ImageBind's (bind-mini)
passes ``--cache DIR``: the reference tensors ``tools/bindmini/cache.py`` wrote with its manifest's
values. The first half of them calibrates (static), the second half is
held out. The worst cosine of the int8 tower against the fp32 tower on the held-out inputs is
printed and written to ``model.toml`` beside ``onnx_int8`` as ``int8_cosine``: bindery refuses to
serve an int8 tower (``--precision int8``) whose recorded cosine is under the section's
``int8_min_cosine`` (default 0.99).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import reference as ref  # noqa: E402
from make_audio_fixtures import reference_preprocess  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
#: Synthetic inputs for towers without committed reference inputs.
EXAMPLES = 8


def reference_inputs(section: str) -> tuple[np.ndarray, str]:
    """Preprocessed inputs for one tower, batch first, and where they came from."""
    if section == "text":
        cases = json.loads((FIXTURES / "text" / "cases.json").read_text())
        texts = [c["text"] for c in cases if c.get("text")]
        return ref.data.load_and_transform_text(texts, "cpu").numpy(), f"{len(texts)} text goldens"
    if section == "image":
        paths = sorted(p for p in (FIXTURES / "images").iterdir() if p.suffix in {".png", ".jpg"} and "corrupt" not in p.name)
        pixels = ref.data.load_and_transform_vision_data([str(p) for p in paths], "cpu")
        return pixels.numpy(), f"{len(paths)} fixture images"
    if section == "audio":
        cases = json.loads((FIXTURES / "audio" / "cases.json").read_text())["cases"]
        usable = [c for c in cases if c["decoder"].startswith("soundfile") and "embedding" in c][:16]
        tensors = [reference_preprocess(FIXTURES / "audio" / c["file"], "soundfile") for c in usable]
        return torch.stack(tensors).numpy(), f"{len(tensors)} fixture audio files"
    spec = next(s for s in ref.TOWERS if s.section == section)
    example = spec.example(EXAMPLES, torch.Generator().manual_seed(7)).numpy()
    return example, f"{EXAMPLES} synthetic example inputs (no reference loader)"


#: tools/bindmini/cache.py's file for each section's tower input.
CACHE_FILES = {"text": "tokens.npy", "image": "vision.npy", "audio": "audio.npy"}


def cached_inputs(cache: Path, section: str, limit: int = 64) -> tuple[np.ndarray, str]:
    """The first `limit` rows of a section's tensors from a bind-mini cache (float16 stored)."""
    if section not in CACHE_FILES:
        raise SystemExit(f"--cache has no tensors for [{section}]; pass --sections")
    data = np.load(cache / CACHE_FILES[section], mmap_mode="r")
    if section == "text":
        data = data.reshape(-1, data.shape[-1])  # [objects, captions, 77] -> one row per caption
        rows = np.asarray(data[:limit]).astype(np.int64)
    else:
        rows = np.asarray(data[:limit]).astype(np.float32)
    return rows, f"{len(rows)} cached reference tensors"


class Batches(CalibrationDataReader):
    """One input at a time, for static calibration."""

    def __init__(self, name: str, inputs: np.ndarray) -> None:
        self.items = iter([{name: inputs[i : i + 1]} for i in range(len(inputs))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def run(path: Path, name: str, inputs: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {name: inputs[i : i + 1]})[0] for i in range(len(inputs))])


def worst_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cos.min())


def record(manifest: Path, section: str, int8_file: str, cosine: float) -> None:
    """Sets `onnx_int8` and `int8_cosine` in `[section]`, keeping the rest of the file as written."""
    text = manifest.read_text()
    start = re.search(rf"^\[{section}\]\n", text, re.M)
    if start is None:
        raise SystemExit(f"{manifest}: no [{section}] section")
    end = re.search(r"^\[", text[start.end() :], re.M)
    body_end = start.end() + (end.start() if end else len(text) - start.end())
    body = text[start.end() : body_end]
    body = re.sub(r"^(onnx_int8|int8_cosine) = .*\n", "", body, flags=re.M)
    lines = f'onnx_int8 = "{int8_file}"\nint8_cosine = {cosine:.6f}\n'
    body = re.sub(r"^(onnx = .*\n)", lambda m: m.group(1) + lines, body, count=1, flags=re.M)
    manifest.write_text(text[: start.end()] + body + text[body_end:])


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--sections", default="", help="comma-separated sections (default: every known tower)")
    ap.add_argument("--static", default="", help="sections quantized statically (QDQ, calibrated)")
    ap.add_argument("--cache", type=Path, help="reference tensors from tools/bindmini/cache.py instead")
    args = ap.parse_args(argv)
    manifest_path = args.model_dir / "model.toml"
    manifest = tomllib.loads(manifest_path.read_text())
    known = [s.section for s in ref.TOWERS]
    sections = [s for s in (args.sections.split(",") if args.sections else known) if s in manifest]
    static = set(filter(None, args.static.split(",")))
    print(f"{'tower':<8} {'method':<8} {'held-out inputs':<48} {'worst cosine':>12}")
    for section in sections:
        spec = manifest[section]
        fp32 = args.model_dir / spec["onnx"]
        int8 = fp32.with_name(fp32.stem + ".int8.onnx")
        inputs, source = cached_inputs(args.cache, section) if args.cache else reference_inputs(section)
        half = max(1, len(inputs) // 2)
        calibration, held_out = inputs[:half], inputs[half:] if len(inputs) > 1 else inputs
        if section in static:
            quantize_static(
                str(fp32),
                str(int8),
                Batches(spec["input"], calibration),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
            )
            method = "static"
        else:
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
            method = "dynamic"
        cosine = worst_cosine(run(fp32, spec["input"], held_out), run(int8, spec["input"], held_out))
        record(manifest_path, section, int8.name, cosine)
        print(f"{section:<8} {method:<8} {f'{len(held_out)} of {source}':<48} {cosine:>12.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
