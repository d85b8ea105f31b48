#!/usr/bin/env python3
"""Preprocess bind-mini's world once into the tensors the towers take, as bindery computes them.

    tools/.venv/bin/python tools/bindmini/cache.py [--world tools/.gen/bindmini/world] [--out tools/.gen/bindmini/cache]

Every tensor comes from the reference preprocessing that bindery reproduces:

* text: ``imagebind.data.load_and_transform_text`` (``[N, captions, 77]`` token ids);
* images: ``imagebind.data.load_and_transform_vision_data`` with its ``Resize``/``CenterCrop``
  size set to bind-mini's manifest value (112) instead of 224 (``[N, 3, 112, 112]``);
* audio: ``imagebind.data.load_and_transform_audio_data`` with ``torchaudio.load`` replaced by
  ``soundfile`` as tools/make_audio_fixtures.py does (``[N, 3, 1, 128, 204]``);
* point clouds: the reader and ULIP/PointBERT steps of tools/make_point_fixtures.py (``reference``)
  with bind-mini's ``npoints``/``num_group``/``group_size`` (``[N, 64, 16, 6]`` and ``[N, 64, 3]``).

Images and fbanks are stored as float16 to keep the cache small (about 1.2 GB); training reads
them back as float32. Output: ``<out>/{tokens,vision,audio,neighborhood,center}.npy`` and
``<out>/meta.json`` (object ids and labels in row order).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import plyfile
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import model as M  # noqa: E402
from bindery_tools import reference as ref  # noqa: E402
import make_audio_fixtures  # noqa: E402
import make_point_fixtures as mpf  # noqa: E402

ROOT = HERE.parents[1]
DEFAULT_WORLD = ROOT / "tools/.gen/bindmini/world"
DEFAULT_OUT = ROOT / "tools/.gen/bindmini/cache"


def text_tokens(captions: list[str]) -> np.ndarray:
    """Reference tokenizer output, int32 ``[len(captions), 77]``."""
    return ref.data.load_and_transform_text(captions, "cpu").numpy().astype(np.int32)


def vision_tensor(paths: list[str]) -> torch.Tensor:
    """``load_and_transform_vision_data`` at bind-mini's image size."""
    tv = ref.data.transforms
    resize, crop = tv.Resize, tv.CenterCrop
    with mock.patch.object(tv, "Resize", lambda size, **kw: resize(M.IMAGE_SIZE, **kw)), \
            mock.patch.object(tv, "CenterCrop", lambda size: crop(M.IMAGE_SIZE)):
        return ref.data.load_and_transform_vision_data(paths, "cpu")


def audio_tensor(path: str) -> torch.Tensor:
    """``load_and_transform_audio_data`` of one file: ``[3, 1, 128, 204]``."""
    return make_audio_fixtures.reference_preprocess(Path(path), "soundfile")


def _read_ply(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``make_point_fixtures.read_ply`` on a file name, which lets plyfile read binary data in
    one go (from a byte stream it reads vertex by vertex)."""
    v = plyfile.PlyData.read(str(path))["vertex"].data
    xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    raw = np.stack([v["red"], v["green"], v["blue"]], axis=1)
    rgb = raw.astype(np.float32) / np.float32(255) if raw.dtype == np.uint8 else raw.astype(np.float32)
    return xyz, rgb


def _read_cloud(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    if path.suffix == ".ply":
        xyz, rgb = _read_ply(path)
    elif path.suffix == ".npy":
        xyz, rgb = mpf.read_npy(path.read_bytes())
    else:
        xyz, rgb = mpf.read_text(path.read_bytes(), 0, None)
    xyz, rgb, _ = mpf.clean(xyz, rgb)
    return xyz, rgb


def point_tensors(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(neighborhood ``[G, K, 6]``, center ``[G, 3]``) of one cloud file."""
    xyz, rgb = _read_cloud(path)
    p = M.POINT_PREPROCESS
    with mock.patch.multiple(mpf, NPOINTS=p["npoints"], GROUPS=p["num_group"], K=p["group_size"],
                             DEFAULT_COLOR=np.float32(p["default_color"])):
        r = mpf.reference(xyz, rgb)
    return r["neighborhood"], r["centers"]


ARRAYS = ("tokens", "vision", "audio", "neighborhood", "center")


def _fill(args: tuple[str, str, list[int]]) -> int:
    """Worker: preprocesses the objects ``rows`` into the (already created) arrays."""
    world, out, rows = Path(args[0]), Path(args[1]), args[2]
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)  # the reference warns about every clip shorter than 2 s
    objects = json.loads((world / "index.json").read_text())["objects"]
    arrays = {name: np.load(out / f"{name}.npy", mmap_mode="r+") for name in ARRAYS[1:]}
    for i in rows:
        obj = objects[i]
        arrays["vision"][i] = vision_tensor([str(world / obj["image"])])[0].numpy().astype(np.float16)
        arrays["audio"][i] = audio_tensor(str(world / obj["audio"])).numpy().astype(np.float16)
        arrays["neighborhood"][i], arrays["center"][i] = point_tensors(world / obj["cloud"])
    for arr in arrays.values():
        arr.flush()
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--world", type=Path, default=DEFAULT_WORLD)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    start = time.monotonic()
    index = json.loads((args.world / "index.json").read_text())
    objects = index["objects"]
    n = len(objects)
    p = M.POINT_PREPROCESS
    args.out.mkdir(parents=True, exist_ok=True)
    per = len(objects[0]["captions"]) + 1
    shapes = {
        "tokens": (np.int32, (n, per, 77)),
        "vision": (np.float16, (n, 3, M.IMAGE_SIZE, M.IMAGE_SIZE)),
        "audio": (np.float16, (n, 3, 1, 128, 204)),
        "neighborhood": (np.float32, (n, p["num_group"], p["group_size"], 6)),
        "center": (np.float32, (n, p["num_group"], 3)),
    }
    for name, (dtype, shape) in shapes.items():
        np.lib.format.open_memmap(args.out / f"{name}.npy", "w+", dtype, shape).flush()
    # Captions, then the spoken phrase (the text of what the audio says); one tokenizer for all.
    tokens = np.load(args.out / "tokens.npy", mmap_mode="r+")
    tokens[:] = text_tokens([t for o in objects for t in o["captions"] + [o["speech"]["text"]]]).reshape(n, per, 77)
    tokens.flush()
    chunks = [list(range(i, min(i + 100, n))) for i in range(0, n, 100)]
    done = 0
    with multiprocessing.Pool(args.workers) as pool:
        for k in pool.imap_unordered(_fill, [(str(args.world), str(args.out), c) for c in chunks]):
            done += k
            if done % 500 < 100:
                print(f"  {done}/{n} objects, {time.monotonic() - start:.0f}s", flush=True)
    meta = {
        "world": str(args.world),
        "seed": index["seed"],
        "shapes": index["shapes"],
        "colours": index["colours"],
        "objects": [
            {k: o[k] for k in ("id", "split", "shape", "colour", "seen", "size")} for o in objects
        ],
    }
    (args.out / "meta.json").write_text(json.dumps(meta) + "\n")
    print(f"cached {n} objects in {args.out} in {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
