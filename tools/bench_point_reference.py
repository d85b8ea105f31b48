#!/usr/bin/env python3
"""Times the reference point-cloud preprocessing on the same data as ``benches/point_cloud.rs``.

    tools/.venv/bin/python tools/bench_point_reference.py [--repeat R] [--whole]

* ``parse_ply_1m``: ``plyfile.PlyData.read`` of the generated 1M-point binary PLY (float xyz,
  uchar rgb), then the float32 xyz and [0, 1] rgb arrays. The file is read from a path in a
  temporary folder (page cache), where plyfile maps it; reading from an in-memory stream instead
  (``--from-memory``, what bindery does) makes plyfile about a hundred times slower;
* ``group_10k_512x32``: the first 10000 points of that cloud, normalised (ULIP's
  ``pc_normalize``), grouped as PointBERT does: ``fpsample.fps_sampling`` for 512 centres, then
  the 32 nearest points of each centre with ``torch`` (squared distances, ``topk``) and the
  gathered ``[512, 32, 6]`` neighbourhood;
* ``--whole``: the full reference pipeline on the 1M-point file (parse, ``fps_sampling`` down to
  8192 points, normalise, group); one run takes about a minute.

The cloud comes from ``make_point_fixtures.generated_cloud``, the formula the Rust bench uses.
Threads: torch and numpy as configured by the environment (``--threads`` sets torch's).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import fpsample
import numpy as np
import torch
from plyfile import PlyData

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_point_fixtures as fx  # noqa: E402


def parse(source) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    v = PlyData.read(source)["vertex"].data
    xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    rgb = np.stack([v["red"], v["green"], v["blue"]], axis=1).astype(np.float32) / np.float32(255)
    return xyz, rgb


def group(pts: np.ndarray, rgb: np.ndarray, groups: int, k: int) -> np.ndarray:
    idx = fpsample.fps_sampling(pts, groups, start_idx=0).astype(np.int64)
    t_pts = torch.from_numpy(pts)
    centers = t_pts[idx]
    dist = ((t_pts[None, :, :] - centers[:, None, :]) ** 2).sum(-1)
    knn = torch.topk(dist, k, dim=-1, largest=False, sorted=True).indices
    rel = t_pts[knn] - centers[:, None, :]
    return torch.cat([rel, torch.from_numpy(rgb)[knn]], dim=-1).numpy()


def timed(name: str, fn, repeat: int) -> None:
    fn()  # warm-up
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    print(f"{name}: median {statistics.median(runs) * 1e3:.2f} ms, min {min(runs) * 1e3:.2f} ms ({repeat} runs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--whole", action="store_true", help="also time the whole 1M-point pipeline")
    parser.add_argument("--from-memory", action="store_true", help="parse from bytes, not a file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    xyz, c = fx.generated_cloud(fx.GENERATED_POINTS)
    el = fx.vertex_element(
        xyz,
        [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")],
        {"red": c[:, 0], "green": c[:, 1], "blue": c[:, 2]},
    )
    data = fx.ply_bytes([el], False, "<")
    print(f"torch threads {torch.get_num_threads()}, {len(data)} bytes of PLY")
    tmp = tempfile.TemporaryDirectory()
    path = Path(tmp.name) / "cloud.ply"
    path.write_bytes(data)
    source = data if args.from_memory else str(path)

    timed("parse_ply_1m", lambda: parse(source), args.repeat)

    pts, rgb = parse(source)
    pts10k = fx.pc_normalize(pts[:10_000])
    rgb10k = np.ascontiguousarray(rgb[:10_000])
    timed("group_10k_512x32", lambda: group(pts10k, rgb10k, 512, 32), args.repeat)

    if args.whole:

        def whole() -> None:
            xyz, colors = parse(source)
            sample = fpsample.fps_sampling(xyz, fx.NPOINTS, start_idx=0).astype(np.int64)
            group(fx.pc_normalize(xyz[sample]), colors[sample], fx.GROUPS, fx.K)

        t0 = time.perf_counter()
        whole()
        print(f"preprocess_ply_1m: {(time.perf_counter() - t0) * 1e3:.0f} ms (1 run)")


if __name__ == "__main__":
    main()
