"""Reference transforms for ImageBind's sensor modalities: thermal, depth and IMU.

ImageBind's repository ships no loaders for these three, so each step here follows a named
source, not bindery's code:

* thermal, and depth in ``grayscale`` mode: Weaviate's multi2vec-bind inference container
  (``weaviate/multi2vec-bind-inference``, ``bind_data.py``, ``_load_and_transform_vision_data``
  with image mode ``L``): ``Image.open``, ``convert("L")`` unless already ``L``, torchvision
  ``Resize(224, BICUBIC)``, ``CenterCrop(224)``, ``ToTensor()``, ``Normalize(0.48145466,
  0.26862954)`` (the first channel of CLIP's mean and std).
* 16-bit grey inputs (Pillow mode ``I;16``): Weaviate's ``convert("L")`` clips every value above
  255, so a 16-bit frame would become white. bindery's choice instead: the values become a float
  (``F``) image, ``value / 65535`` (``full_range``) or ``(value - min) / (max - min)`` per image
  (``min_max``), and the same resize, crop and normalisation run on it.

Every constant is a parameter with its source named in ``THERMAL_DEFAULTS``; the manifest
carries the values bindery serves with.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

#: Thermal preprocessing as bindery's ImageBind manifests write it. Source of each value:
#: weaviate/multi2vec-bind-inference bind_data.py (resize, crop, filter, mean, std); bindery
#: (normalize switch, sixteen_bit mapping).
THERMAL_DEFAULTS: dict[str, Any] = {
    "resize": 224,
    "crop": 224,
    "filter": "bicubic",
    "mean": 0.48145466,
    "std": 0.26862954,
    "normalize": True,
    "sixteen_bit": "full_range",
}

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B")
_FILTERS = {
    "bicubic": transforms.InterpolationMode.BICUBIC,
    "bilinear": transforms.InterpolationMode.BILINEAR,
}


def _sixteen_bit_to_float(image: Image.Image, mapping: str) -> Image.Image:
    """A 16-bit grey image as a float (``F``) image in [0, 1], as ``mapping`` says."""
    values = np.asarray(image, dtype=np.float32)
    if mapping == "full_range":
        scaled = values / np.float32(65535)
    elif mapping == "min_max":
        low, high = values.min(), values.max()
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    else:
        raise ValueError(f"unknown sixteen_bit mapping {mapping!r}")
    return Image.fromarray(scaled.astype(np.float32))  # 2-D float32: mode F


def single_channel_transform(params: dict[str, Any]) -> transforms.Compose:
    """Resize, crop, ToTensor and (when ``params["normalize"]``) Normalize, as Weaviate builds
    them for mode ``L``."""
    steps: list[Any] = [
        transforms.Resize(params["resize"], interpolation=_FILTERS[params["filter"]]),
        transforms.CenterCrop(params["crop"]),
        transforms.ToTensor(),
    ]
    if params["normalize"]:
        steps.append(transforms.Normalize(mean=(params["mean"],), std=(params["std"],)))
    return transforms.Compose(steps)


def thermal_tensor(data: bytes, params: dict[str, Any] = THERMAL_DEFAULTS) -> torch.Tensor:
    """The ``[1, crop, crop]`` tensor of one encoded thermal image."""
    image = Image.open(io.BytesIO(data))
    if image.mode in _SIXTEEN_BIT_MODES:
        image = _sixteen_bit_to_float(image, params["sixteen_bit"])
    elif image.mode != "L":
        image = image.convert("L")
    return single_channel_transform(params)(image)


# --------------------------------------------------------------------------------------------
# IMU

#: IMU preprocessing as bindery's ImageBind manifests write it. Sources: the tower's input
#: ``[B, 6, 2000]`` (ImageBind's ``IMUPreprocessor(img_size=[6, 2000])``) for channels and
#: samples; Ego4D's accelerometer-then-gyroscope order (ImageBind's IMU training data) for the
#: channel order; the sample rate is bindery's manifest value (no source fixes it in code).
IMU_DEFAULTS: dict[str, Any] = {
    "channels": ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"],
    "samples": 2000,
    "sample_rate_hz": 200.0,
}

_SENSOR_PREFIXES = {
    **dict.fromkeys(("a", "acc", "accel", "accelerometer"), "acc"),
    **dict.fromkeys(("g", "gyr", "gyro", "gyroscope"), "gyro"),
}


def imu_channel_key(name: str) -> str:
    """bindery's rule for matching a CSV column to a channel: lower case, no ``_ - .`` or
    spaces, and a known sensor prefix spelled ``acc``/``gyro`` before a final axis letter."""
    plain = "".join(c for c in name.strip().strip('"') if c not in "_-. ").lower()
    if plain[-1:] in ("x", "y", "z"):
        return _SENSOR_PREFIXES.get(plain[:-1], plain[:-1]) + plain[-1]
    return plain


def _imu_csv(text: str, channels: list[str]) -> np.ndarray:
    """``[C, T]`` from a CSV whose header names the columns (Weaviate's convention: one row per
    sample, a header row first)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    sep = next((c for c in ",\t;" if c in header), ",")
    keys = [imu_channel_key(n) for n in header.split(sep)]
    columns = [keys.index(imu_channel_key(c)) for c in channels]
    rows = [line.split(sep) for line in lines[1:]]
    samples = np.array(
        [[np.float32(row[c].strip().strip('"')) for c in columns] for row in rows], dtype=np.float32
    ).reshape(len(rows), len(channels))
    # Weaviate reshapes [T, C] to (C, T), which interleaves channels; a transpose is meant.
    return samples.T


def _imu_npy(data: bytes, channels: int) -> np.ndarray:
    array = np.load(io.BytesIO(data)).astype(np.float32)
    return array if array.shape[0] == channels else array.T


def imu_tensor(
    series: bytes | np.ndarray, sample_rate_hz: float = 0.0, params: dict[str, Any] = IMU_DEFAULTS
) -> torch.Tensor:
    """The ``[C, samples]`` tensor of one IMU input: a CSV or NPY file, or a ``[C, T]`` array.

    At another rate than the model's, each channel is resampled with ``np.interp`` at
    ``k * rate / model_rate``; then the first ``samples`` are kept, or zeros appended (Weaviate).
    """
    channels = params["channels"]
    if isinstance(series, np.ndarray):
        values = series.astype(np.float32)
    elif series.startswith(b"\x93NUMPY"):
        values = _imu_npy(series, len(channels))
    else:
        values = _imu_csv(series.decode("utf-8"), channels)
    model_rate = params["sample_rate_hz"]
    if sample_rate_hz and sample_rate_hz != model_rate:
        length = values.shape[1]
        n_out = max(1, round(length * model_rate / sample_rate_hz))
        at = np.arange(n_out) * (sample_rate_hz / model_rate)
        values = np.stack([np.interp(at, np.arange(length), row) for row in values]).astype(np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(values))
    samples = params["samples"]
    if tensor.shape[1] < samples:
        return torch.nn.functional.pad(tensor, (0, samples - tensor.shape[1]), value=0.0)
    return tensor[:, :samples]


# --------------------------------------------------------------------------------------------
# Depth

#: Depth preprocessing as bindery's ImageBind manifests write it. Sources: Omnivore's SUN RGB-D
#: conversion (facebookresearch/omnivore issue #12, pointed to by ImageBind issues #69 and #134)
#: for the disparity recipe, the clip range (0.01-50 m), millimetre units and the Kinect baseline
#: (0.075 m); NYU Depth v2's focal length (518.857901 px, as ImageBind issue #107 uses); the
#: vision transform's resize, crop and filter. No source gives the disparity statistics ImageBind
#: normalised with, so mean 0 and std 1 (no normalisation) are bindery's manifest values.
DEPTH_DEFAULTS: dict[str, Any] = {
    "conversion": "disparity",
    "resize": 224,
    "crop": 224,
    "filter": "bicubic",
    "mean": 0.0,
    "std": 1.0,
    "depth_scale": 0.001,
    "min_depth_m": 0.01,
    "max_depth_m": 50.0,
    "baseline_m": 0.075,
    "focal_px": 518.857901,
}

#: The ``grayscale`` conversion: Weaviate's multi2vec-bind depth path, the same as its thermal one.
DEPTH_GRAYSCALE: dict[str, Any] = {
    **DEPTH_DEFAULTS,
    "conversion": "grayscale",
    "mean": 0.48145466,
    "std": 0.26862954,
}


def _metric_depth(data: bytes, depth_scale: float) -> np.ndarray:
    """Depth in metres: an NPY in metres, or a 16-bit map times ``depth_scale``."""
    if data.startswith(b"\x93NUMPY"):
        array = np.load(io.BytesIO(data)).astype(np.float32)
        # [H, W], or one map with a singleton axis first or last.
        return array.reshape(-1, array.shape[-1]) if array.ndim == 3 and array.shape[0] == 1 else (
            array[..., 0] if array.ndim == 3 else array
        )
    image = Image.open(io.BytesIO(data))
    if image.mode not in _SIXTEEN_BIT_MODES:
        raise ValueError(f"not a 16-bit depth map (mode {image.mode})")
    return np.asarray(image, dtype=np.float32) * np.float32(depth_scale)


def depth_tensor(
    data: bytes,
    params: dict[str, Any] = DEPTH_DEFAULTS,
    depth_scale: float = 0.0,
    baseline_m: float = 0.0,
    focal_px: float = 0.0,
) -> torch.Tensor:
    """The ``[1, crop, crop]`` tensor of one depth map; request parameters of 0 take the model's.

    ``disparity``: metres clipped to ``[min_depth_m, max_depth_m]``, then
    ``baseline_m * focal_px / depth`` (Omnivore); pixels with no reading (0, negative, NaN,
    infinite) get disparity 0 (bindery's rule); the float image is resized, cropped and
    normalised. ``grayscale``: Weaviate's ``L`` path.
    """
    transform = single_channel_transform({**params, "normalize": True})
    if params["conversion"] == "grayscale":
        image = Image.open(io.BytesIO(data))
        if image.mode in _SIXTEEN_BIT_MODES:
            raise ValueError("a 16-bit map under the grayscale conversion")
        return transform(image if image.mode == "L" else image.convert("L"))
    depth = _metric_depth(data, depth_scale or params["depth_scale"])
    valid = np.isfinite(depth) & (depth > 0)
    if not valid.any():
        raise ValueError("no valid pixel")
    # The parameters are float32 (the manifest's and the request's type); their product is taken
    # in double and rounded once.
    baseline = float(np.float32(baseline_m or params["baseline_m"]))
    focal = float(np.float32(focal_px or params["focal_px"]))
    bf = np.float32(baseline * focal)
    low, high = np.float32(params["min_depth_m"]), np.float32(params["max_depth_m"])
    clipped = np.clip(np.where(valid, depth, np.float32(1)), low, high)
    disparity = np.where(valid, bf / clipped, np.float32(0)).astype(np.float32)
    return transform(Image.fromarray(disparity))
