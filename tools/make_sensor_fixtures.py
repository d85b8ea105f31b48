#!/usr/bin/env python3
"""Generate bindery's golden files for the sensor modalities (thermal, IMU, depth) from the
reference transforms in ``bindery_tools/sensors.py`` and the PyTorch fixture model.

    python tools/make_sensor_fixtures.py           # (re)write tests/fixtures/{thermal,imu,depth}/
    python tools/make_sensor_fixtures.py --check   # regenerate into a temp dir, compare

Each input is written as a file, transformed by the reference (which follows Weaviate's
multi2vec-bind recipe; see ``sensors.py``), and embedded by the seeded PyTorch fixture model one
input per forward pass. The committed ONNX tower is then run on the same tensors as a
consistency check only; the goldens never come from it. Output is deterministic.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import goldens  # noqa: E402
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


def _walk(samples: int, rate: float, seed: int) -> np.ndarray:
    """``[6, samples]``: accelerometer (gravity on z, a step rhythm) then gyroscope, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / rate
    pace = rng.uniform(1.4, 2.2)
    step = np.sin(2 * np.pi * pace * t)
    series = np.stack(
        [
            0.3 * step,
            0.1 * np.cos(np.pi * pace * t),
            9.81 + 1.2 * step,
            0.05 * step,
            0.02 + 0.0 * t,
            0.3 * np.sin(0.1 * t),
        ]
    )
    return (series + rng.normal(0, 0.02, size=series.shape)).astype(np.float32)


def _csv(series: np.ndarray, header: list[str], order: list[int], index: bool = False, sep: str = ",") -> bytes:
    """One row per sample; ``order[k]`` is the channel written in column k."""
    lines = [sep.join(([""] if index else []) + header)]
    for i in range(series.shape[1]):
        fields = [repr(float(series[c, i])) for c in order]
        lines.append(sep.join(([str(i)] if index else []) + fields))
    return ("\n".join(lines) + "\n").encode()


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


_WEAVIATE_HEADER = ["a_x", "a_y", "a_z", "g_x", "g_y", "g_z"]

#: (id, file name, bytes builder, sample rate sent with the request, 0 = the model's). Files
#: ending in ``.f32`` are packed channel-major values sent as ``Imu.values`` (6 channels).
IMU_CASES: list[tuple[str, str, Callable[[], bytes], float]] = [
    ("csv_weaviate_2000", "weaviate_2000.csv", lambda: _csv(_walk(2000, 200, 1), _WEAVIATE_HEADER, list(range(6)), index=True), 0.0),
    ("csv_short_1500", "short_1500.csv", lambda: _csv(_walk(1500, 200, 2), _WEAVIATE_HEADER, list(range(6)), index=True), 0.0),
    ("csv_long_3072", "long_3072.csv", lambda: _csv(_walk(3072, 200, 3), _WEAVIATE_HEADER, list(range(6))), 0.0),
    (
        "csv_reordered_tab",
        "reordered.tsv.csv",
        lambda: _csv(_walk(2000, 200, 4), ["gyro_z", "GyroY", "gyroscope.x", "AccelZ", "acc-y", "ax"], [5, 4, 3, 2, 1, 0], sep="\t"),
        0.0,
    ),
    ("csv_shorter_than_a_patch", "five_rows.csv", lambda: _csv(_walk(5, 200, 5), _WEAVIATE_HEADER, list(range(6))), 0.0),
    ("npy_channel_major", "channel_major.npy", lambda: _npy(_walk(2000, 200, 6)), 0.0),
    ("npy_sample_major_f64", "sample_major.npy", lambda: _npy(_walk(2500, 200, 7).T.astype(np.float64)), 0.0),
    ("values_2000", "values_2000.f32", lambda: _walk(2000, 200, 8).tobytes(), 0.0),
    ("values_100hz", "values_100hz.f32", lambda: _walk(1000, 100, 9).tobytes(), 100.0),
    ("values_333hz", "values_333hz.f32", lambda: _walk(3000, 333, 10).tobytes(), 333.0),
    ("csv_50hz", "walk_50hz.csv", lambda: _csv(_walk(400, 50, 11), _WEAVIATE_HEADER, list(range(6))), 50.0),
]


def imu_cases(model: torch.nn.Module, out_dir: Path) -> list[dict[str, Any]]:
    """Write the IMU inputs into ``out_dir`` and return their reference goldens."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for case_id, name, build, rate in IMU_CASES:
        data = build()
        (out_dir / name).write_bytes(data)
        tensor = sensors.imu_tensor(_imu_series(data, name), rate)
        with torch.no_grad():
            emb = model({ref.ModalityType.IMU: tensor[None]})[ref.ModalityType.IMU]
        cases.append(
            {
                "id": case_id,
                "file": name,
                "sample_rate_hz": rate,
                "embedding": _f32_list(emb[0]),
                "tensor_sum": float(tensor.double().sum()),
            }
        )
    return cases


def _dump(cases: list[dict[str, Any]], path: Path) -> None:
    path.write_text(json.dumps(cases, indent=2) + "\n")


def _room(w: int, h: int, seed: int, holes: float = 0.02) -> np.ndarray:
    """Depth in metres of an indoor scene: a floor receding from 0.8 m to 6 m, a wall, two
    boxes, sensor noise, and a fraction ``holes`` of pixels with no reading (0)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    depth = 0.8 + (1 - y / max(h - 1, 1)) * 5.2
    depth = np.minimum(depth, 4.5 + 0.5 * x / max(w - 1, 1))
    for _ in range(2):
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.5, 0.9) * h
        box = (abs(x - cx) < 0.12 * w) & (abs(y - cy) < 0.1 * h)
        depth[box] = rng.uniform(1.0, 2.5)
    depth += rng.normal(0, 0.005, size=depth.shape)
    depth[rng.random(depth.shape) < holes] = 0.0
    return depth


def _mm16(depth_m: np.ndarray, units_per_m: float = 1000.0) -> Image.Image:
    return Image.fromarray(np.clip(np.round(depth_m * units_per_m), 0, 65535).astype(np.uint16))


def _depth_npy(w: int, h: int, seed: int, dtype: Any = np.float32, shape: str = "hw") -> bytes:
    depth = _room(w, h, seed).astype(dtype)
    depth[5, 5:20] = np.nan
    depth[10, 5:20] = np.inf
    depth[15, 5:20] = -1.0
    if shape == "1hw":
        depth = depth[None]
    elif shape == "hw1":
        depth = depth[..., None]
    return _npy(depth)


def _extremes() -> Image.Image:
    """Pixels nearer than 0.01 m and farther than 50 m (clipped), and holes."""
    depth = _room(200, 160, 20)
    depth[:20] = 65.535
    depth[-20:, :50] = 0.004
    return _mm16(depth)


def _depth_params(conversion: str) -> dict[str, Any]:
    return sensors.DEPTH_DEFAULTS if conversion == "disparity" else sensors.DEPTH_GRAYSCALE


#: (id, file name, bytes builder, conversion, request parameters).
DEPTH_CASES: list[tuple[str, str, Callable[[], bytes], str, dict[str, float]]] = [
    ("png16_kinect_640x480", "kinect_640x480.png", lambda: _encode(_mm16(_room(640, 480, 1)), "PNG"), "disparity", {}),
    ("tiff16_portrait_240x320", "portrait_240x320.tif", lambda: _encode(_mm16(_room(240, 320, 2)), "TIFF"), "disparity", {}),
    ("npy_f32_holes_320x240", "metres_320x240.npy", lambda: _depth_npy(320, 240, 3), "disparity", {}),
    ("npy_f64_1hw", "metres_f64_1hw.npy", lambda: _depth_npy(200, 150, 4, np.float64, "1hw"), "disparity", {}),
    ("npy_hw1", "metres_hw1.npy", lambda: _depth_npy(120, 90, 5, np.float32, "hw1"), "disparity", {}),
    ("png16_1x300", "row_1x300.png", lambda: _encode(_mm16(_room(300, 1, 6, holes=0.0)), "PNG"), "disparity", {}),
    ("png16_clipped_extremes", "extremes_200x160.png", lambda: _encode(_extremes(), "PNG"), "disparity", {}),
    (
        "png16_realsense_units",
        "realsense_tenth_mm_424x240.png",
        lambda: _encode(_mm16(_room(424, 240, 7), units_per_m=10000.0), "PNG"),
        "disparity",
        {"depth_scale": 0.0001, "baseline_m": 0.05, "focal_px": 380.0},
    ),
    ("gray8_png", "gray8_320x240.png", lambda: _encode(_gray8(320, 240, 8), "PNG"), "grayscale", {}),
    ("rgb_jpeg_grayscale", "rgb_320x240.jpg", lambda: _encode(_rgb(320, 240, 9), "JPEG", quality=90), "grayscale", {}),
]


def depth_cases(model: torch.nn.Module, out_dir: Path) -> list[dict[str, Any]]:
    """Write the depth inputs into ``out_dir`` and return their reference goldens."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for case_id, name, build, conversion, request in DEPTH_CASES:
        data = build()
        (out_dir / name).write_bytes(data)
        tensor = sensors.depth_tensor(data, _depth_params(conversion), **request)
        with torch.no_grad():
            emb = model({ref.ModalityType.DEPTH: tensor[None]})[ref.ModalityType.DEPTH]
        cases.append(
            {
                "id": case_id,
                "file": name,
                "conversion": conversion,
                "request": request,
                "embedding": _f32_list(emb[0]),
                "tensor_sum": float(tensor.double().sum()),
            }
        )
    return cases


def _check_onnx(
    model_dir: Path, tower: str, cases: list[dict[str, Any]], tensor_of: Callable[[dict[str, Any]], torch.Tensor]
) -> None:
    """The committed ONNX tower (input named like the tower) on the reference tensors of
    ``cases`` must give their goldens; a consistency check of the fixture model only."""
    session = ort.InferenceSession(str(model_dir / f"{tower}.onnx"), providers=["CPUExecutionProvider"])
    worst = 0.0
    for case in cases:
        (got,) = session.run(None, {tower: tensor_of(case)[None].numpy()})
        worst = max(worst, float(np.max(np.abs(got[0] - np.array(case["embedding"], np.float32)))))
    print(f"onnxruntime vs {tower} goldens, max abs diff {worst:.3e}")
    if worst > ONNX_TOLERANCE:
        raise SystemExit(f"{model_dir} does not match the fixture model; re-run export_imagebind.py")


def _imu_series(data: bytes, name: str) -> bytes | np.ndarray:
    """A case's input as ``imu_tensor`` takes it: ``.f32`` files are packed channel-major values."""
    return np.frombuffer(data, dtype="<f4").reshape(6, -1) if name.endswith(".f32") else data


def generate(root: Path, model_dir: Path) -> None:
    """Write ``root/thermal/**`` and ``root/imu/**``."""
    torch.set_num_threads(1)
    model = ref.build_fixture_model()
    thermal_dir = root / "thermal"
    cases = thermal_cases(model, thermal_dir)
    _dump(cases, thermal_dir / "cases.json")
    _check_onnx(
        model_dir,
        "thermal",
        cases,
        lambda c: sensors.thermal_tensor(
            (thermal_dir / c["file"]).read_bytes(), {**sensors.THERMAL_DEFAULTS, "sixteen_bit": c["sixteen_bit"]}
        ),
    )
    imu_dir = root / "imu"
    imu = imu_cases(model, imu_dir)
    _dump(imu, imu_dir / "cases.json")
    _check_onnx(
        model_dir,
        "imu",
        imu,
        lambda c: sensors.imu_tensor(_imu_series((imu_dir / c["file"]).read_bytes(), c["file"]), c["sample_rate_hz"]),
    )
    depth_dir = root / "depth"
    depth = depth_cases(model, depth_dir)
    _dump(depth, depth_dir / "cases.json")
    _check_onnx(
        model_dir,
        "depth",
        depth,
        lambda c: sensors.depth_tensor((depth_dir / c["file"]).read_bytes(), _depth_params(c["conversion"]), **c["request"]),
    )
    print(f"{len(cases)} thermal, {len(imu)} IMU and {len(depth)} depth cases written under {root}")


SENSOR_FOLDERS = ("thermal", "imu", "depth")


def _owned(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for folder in SENSOR_FOLDERS
        if (root / folder).is_dir()
        for p in (root / folder).rglob("*")
        if p.is_file()
    }


def check(root: Path, model_dir: Path) -> int:
    """Regenerate into a temp dir; report any file that differs from ``root``."""
    return goldens.check_regenerated(root, model_dir, generate, _owned)


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
