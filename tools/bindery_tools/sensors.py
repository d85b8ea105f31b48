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
