#!/usr/bin/env python3
"""Generate bindery's golden files for the sensor modalities (thermal) from the reference
transforms in ``bindery_tools/sensors.py`` and the PyTorch fixture model.

    python tools/make_sensor_fixtures.py           # (re)write tests/fixtures/thermal/
    python tools/make_sensor_fixtures.py --check   # regenerate into a temp dir, compare

Each input is written as a file, transformed by the reference (which follows Weaviate's
multi2vec-bind recipe; see ``sensors.py``), and embedded by the seeded PyTorch fixture model one
input per forward pass. The committed ONNX tower is then run on the same tensors as a
consistency check only; the goldens never come from it. Output is deterministic.
"""

from __future__ import annotations

import argparse
import filecmp
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import reference as ref  # noqa: E402
from bindery_tools import sensors  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = REPO / "tests" / "fixtures"
DEFAULT_MODEL = REPO / "models" / "imagebind-fixture"
ONNX_TOLERANCE = 1e-4


def _f32_list(t: torch.Tensor) -> list[float]:
    return [float(x) for x in t.detach().to(torch.float32).reshape(-1).tolist()]


def _scene(w: int, h: int, seed: int) -> np.ndarray:
    """A thermal-looking scene in [0, 1]: a cool gradient, warm blobs, a little sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    scene = 0.2 + 0.1 * (x / max(w - 1, 1))
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.05, 0.3) * max(w, h)
        scene = np.maximum(scene, 0.9 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r)))
    return np.clip(scene + rng.normal(0, 0.01, size=scene.shape), 0, 1)


def _encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _gray8(w: int, h: int, seed: int) -> Image.Image:
    return Image.fromarray((_scene(w, h, seed) * 255).round().astype(np.uint8))


def _gray16(w: int, h: int, seed: int, low: int = 7000, span: int = 2500) -> Image.Image:
    counts = (low + _scene(w, h, seed) * span).round().astype(np.uint16)
    return Image.fromarray(counts)


def _rgb(w: int, h: int, seed: int) -> Image.Image:
    grey = (_scene(w, h, seed) * 255).round().astype(np.uint8)
    # Infrared frames saved as colour JPEGs carry slightly different channels.
    rgb = np.stack([grey, np.clip(grey.astype(int) + 3, 0, 255), np.clip(grey.astype(int) - 5, 0, 255)], -1)
    return Image.fromarray(rgb.astype(np.uint8))


#: (id, file name, bytes builder, sixteen_bit mapping of the model it runs under).
THERMAL_CASES: list[tuple[str, str, Callable[[], bytes], str]] = [
    ("gray8_png", "gray8_640x512.png", lambda: _encode(_gray8(640, 512, 1), "PNG"), "full_range"),
    ("rgb_jpeg", "rgb_640x512.jpg", lambda: _encode(_rgb(640, 512, 2), "JPEG", quality=90), "full_range"),
    ("gray8_jpeg", "gray8_320x256.jpg", lambda: _encode(_gray8(320, 256, 3), "JPEG", quality=85), "full_range"),
    ("palette_png", "palette_200x150.png", lambda: _encode(_rgb(200, 150, 4).convert("P"), "PNG"), "full_range"),
    ("rgba_png", "rgba_160x120.png", lambda: _encode(_rgb(160, 120, 5).convert("RGBA"), "PNG"), "full_range"),
    ("gray8_bmp", "gray8_100x300.bmp", lambda: _encode(_gray8(100, 300, 6), "BMP"), "full_range"),
    ("gray8_1x300", "gray8_1x300.png", lambda: _encode(_gray8(300, 1, 7), "PNG"), "full_range"),
    ("gray16_png", "gray16_640x512.png", lambda: _encode(_gray16(640, 512, 8), "PNG"), "full_range"),
    ("gray16_tiff", "gray16_336x256.tif", lambda: _encode(_gray16(336, 256, 9), "TIFF"), "full_range"),
    ("gray16_png_min_max", "gray16_640x512.png", lambda: _encode(_gray16(640, 512, 8), "PNG"), "min_max"),
    ("gray16_tiff_min_max", "gray16_336x256.tif", lambda: _encode(_gray16(336, 256, 9), "TIFF"), "min_max"),
    (
        "gray16_constant_min_max",
        "gray16_constant_64x48.png",
        lambda: _encode(Image.fromarray(np.full((48, 64), 8000, np.uint16)), "PNG"),
        "min_max",
    ),
]


def thermal_cases(model: torch.nn.Module, out_dir: Path) -> list[dict[str, Any]]:
    """Write the thermal inputs into ``out_dir`` and return their reference goldens."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for case_id, name, build, mapping in THERMAL_CASES:
        data = build()
        (out_dir / name).write_bytes(data)
        params = {**sensors.THERMAL_DEFAULTS, "sixteen_bit": mapping}
        tensor = sensors.thermal_tensor(data, params)
        with torch.no_grad():
            emb = model({ref.ModalityType.THERMAL: tensor[None]})[ref.ModalityType.THERMAL]
        with Image.open(io.BytesIO(data)) as im:
            mode, size = im.mode, [int(im.size[0]), int(im.size[1])]
        cases.append(
            {
                "id": case_id,
                "file": name,
                "mode": mode,
                "size": size,
                "sixteen_bit": mapping,
                "embedding": _f32_list(emb[0]),
                "tensor_sum": float(tensor.double().sum()),
            }
        )
    return cases


def _check_onnx(model_dir: Path, root: Path, cases: list[dict[str, Any]]) -> None:
    session = ort.InferenceSession(str(model_dir / "thermal.onnx"), providers=["CPUExecutionProvider"])
    worst = 0.0
    for case in cases:
        data = (root / "thermal" / case["file"]).read_bytes()
        params = {**sensors.THERMAL_DEFAULTS, "sixteen_bit": case["sixteen_bit"]}
        tensor = sensors.thermal_tensor(data, params)[None].numpy()
        (got,) = session.run(None, {"thermal": tensor})
        worst = max(worst, float(np.max(np.abs(got[0] - np.array(case["embedding"], np.float32)))))
    print(f"onnxruntime vs thermal goldens, max abs diff {worst:.3e}")
    if worst > ONNX_TOLERANCE:
        raise SystemExit(f"{model_dir} does not match the fixture model; re-run export_imagebind.py")


def _dump(cases: list[dict[str, Any]], path: Path) -> None:
    path.write_text(json.dumps(cases, indent=2) + "\n")


def generate(root: Path, model_dir: Path) -> None:
    """Write ``root/thermal/**``."""
    torch.set_num_threads(1)
    model = ref.build_fixture_model()
    thermal_dir = root / "thermal"
    cases = thermal_cases(model, thermal_dir)
    _dump(cases, thermal_dir / "cases.json")
    _check_onnx(model_dir, root, cases)
    print(f"{len(cases)} thermal cases written under {thermal_dir}")


def _owned(root: Path) -> set[str]:
    folder = root / "thermal"
    return {str(p.relative_to(root)) for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


def check(root: Path, model_dir: Path) -> int:
    """Regenerate into a temp dir; report any file that differs from ``root``."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh, model_dir)
        names = sorted(_owned(root) | _owned(fresh))
        bad = [
            n
            for n in names
            if not (root / n).is_file()
            or not (fresh / n).is_file()
            or not filecmp.cmp(root / n, fresh / n, shallow=False)
        ]
    for n in bad:
        print(f"differs: {n}")
    print("fixtures up to date" if not bad else f"{len(bad)} fixture file(s) differ")
    return 1 if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=DEFAULT_FIXTURES, help="fixtures root")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL, help="fixture model folder")
    args = parser.parse_args()
    if args.check:
        raise SystemExit(check(args.out, args.model_dir))
    generate(args.out, args.model_dir)


if __name__ == "__main__":
    main()
