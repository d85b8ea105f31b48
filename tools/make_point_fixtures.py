#!/usr/bin/env python3
"""Point-cloud golden files for bindery, produced by an independent reference pipeline.

    tools/.venv/bin/python tools/make_point_fixtures.py            # (re)write tests/fixtures/point_cloud
    tools/.venv/bin/python tools/make_point_fixtures.py --check    # regenerate in a scratch folder
                                                                   # and compare with the committed files

Test clouds are written by third-party writers (``plyfile`` for PLY, ``pypcd4`` for PCD,
``numpy`` for NPY and text; OBJ by hand) and read back by third-party readers (``plyfile``,
``pypcd4``, ``numpy.load``, ``numpy.loadtxt``; OBJ by a small line parser here). The reference
preprocessing is ULIP's, with ``fpsample`` (1.0.2, ``fps_sampling``) for farthest point sampling and
``torch`` for the neighbour search:

* more than ``npoints`` points: ``fps_sampling(xyz, npoints, start_idx=0)`` order (ULIP's
  ``farthest_point_sample`` takes the points in selection order); fewer: point ``i mod N``;
* ULIP's ``pc_normalize`` in numpy float32 (on a C-ordered array), guarded against a zero scale;
* PointBERT's ``Group``: centres by ``fps_sampling`` on the normalised xyz, then for each centre the
  ``group_size`` smallest squared distances from ``torch`` (``((p - c) ** 2).sum(-1)``), taken
  with a stable ``torch.sort`` (ties to the lower index; checked equal in value to
  ``torch.topk(largest=False)``); neighbour xyz minus the centre, then rgb (or 0.4);
* the embedding from the fixture model's PyTorch point tower (``tools/point_tower.py``).

``fpsample.fps_sampling`` breaks ties towards the *highest* index; bindery (like ULIP's numpy
``farthest_point_sample``, which uses ``argmax``) breaks them towards the lowest. The reference
therefore runs ``fpsample`` on the reversed array starting from its last point and maps the indices
back, which is the same algorithm with the other tie rule.

Mesh inputs (OBJ, PLY with faces) are sampled with the algorithm documented in bindery's
``src/modality/point_cloud/mesh.rs`` (re-implemented below from that description, PCG32 included).

Outputs under ``tests/fixtures/point_cloud``: ``cases/*`` (inputs), ``cases.json`` (per case the
point count, dropped points, sampling and centre indices, the embedding), ``knn/<id>.u16``
(neighbour indices ``[G, K]`` into the sampled cloud, little-endian uint16), ``tensors/<id>.*.f32``
(centre tensor for every case, neighbourhood tensor for a few; little-endian float32), and
``bad/*`` with ``bad.json`` (inputs that must be rejected, the error kind bindery reports and what
the reference reader did).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import sys
from pathlib import Path

import fpsample
import numpy as np
import plyfile
import pypcd4
import torch
from plyfile import PlyData, PlyElement

sys.path.insert(0, str(Path(__file__).resolve().parent))

import point_tower  # noqa: E402
from bindery_tools import goldens  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "tests/fixtures/point_cloud"
P = point_tower.PREPROCESS
NPOINTS, GROUPS, K = P["npoints"], P["num_group"], P["group_size"]
DEFAULT_COLOR = np.float32(P["default_color"])
MESH_SAMPLES = P["mesh_samples"]
#: Cases whose full neighbourhood tensor is stored.
FULL_TENSORS = {"ply_ascii_color", "pcd_binary", "obj_mesh_color", "three_points", "generated_1m"}
GENERATED_POINTS = 1_000_000


# ---------------------------------------------------------------- reference pipeline


def fps(points: np.ndarray, count: int) -> np.ndarray:
    """``fpsample.fps_sampling`` from index 0 with ties to the lowest index (see module docs)."""
    n = len(points)
    rev = np.ascontiguousarray(points[::-1], dtype=np.float32)
    idx = fpsample.fps_sampling(rev, count, start_idx=n - 1)
    return (n - 1 - idx.astype(np.int64)).astype(np.int64)


def pc_normalize(pc: np.ndarray) -> np.ndarray:
    """ULIP's ``pc_normalize``; a cloud of identical points is left at the origin."""
    pc = np.ascontiguousarray(pc, dtype=np.float32)
    centroid = np.mean(pc, axis=0)
    pc = pc - centroid
    m = np.max(np.sqrt(np.sum(pc**2, axis=1)))
    if m > 0:
        pc = pc / m
    return pc


def reference(xyz: np.ndarray, rgb: np.ndarray | None) -> dict:
    """Sampling, normalisation and grouping of one cleaned cloud."""
    n = len(xyz)
    sample = None
    if n > NPOINTS:
        sample = fps(xyz, NPOINTS)
        pick = sample
    else:
        pick = np.arange(NPOINTS) % n
    pts = pc_normalize(xyz[pick])
    colors = rgb[pick] if rgb is not None else np.full((NPOINTS, 3), DEFAULT_COLOR, np.float32)
    centers_idx = fps(pts, GROUPS)
    centers = pts[centers_idx]
    t_pts, t_ctr = torch.from_numpy(pts), torch.from_numpy(centers)
    dist = ((t_pts[None, :, :] - t_ctr[:, None, :]) ** 2).sum(-1)
    values, order = torch.sort(dist, dim=-1, stable=True)
    knn = order[:, :K]
    top = torch.topk(dist, K, dim=-1, largest=False, sorted=True).values
    if not torch.equal(top, values[:, :K]):
        raise AssertionError("topk and sort disagree on the neighbour distances")
    knn = knn.numpy()
    rel = pts[knn] - centers[:, None, :]
    neighborhood = np.concatenate([rel, colors[knn]], axis=-1).astype(np.float32)
    return {
        "sample": sample,
        "centers_idx": centers_idx,
        "centers": centers.astype(np.float32),
        "knn": knn,
        "neighborhood": neighborhood,
    }


def clean(xyz: np.ndarray, rgb: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, int]:
    ok = np.isfinite(xyz).all(axis=1)
    if rgb is not None:
        ok &= np.isfinite(rgb).all(axis=1)
    return xyz[ok], (rgb[ok] if rgb is not None else None), int((~ok).sum())


def untyped_colors(rgb: np.ndarray) -> np.ndarray:
    """Text/NPY colour columns: 0-255 when any value exceeds 1, else [0, 1]."""
    rgb = rgb.astype(np.float32)
    return rgb / np.float32(255) if (rgb > 1).any() else rgb


# ---------------------------------------------------------------- mesh sampling (bindery's doc)

MASK64 = (1 << 64) - 1


class Pcg32:
    """PCG XSH RR 64/32 as ``rand_pcg::Pcg32::new(state, stream)``."""

    MULT = 6364136223846793005

    def __init__(self, state: int, stream: int) -> None:
        self.inc = ((stream << 1) | 1) & MASK64
        self.state = ((state + self.inc) * self.MULT + self.inc) & MASK64

    def next_u32(self) -> int:
        old = self.state
        self.state = (old * self.MULT + self.inc) & MASK64
        xorshifted = (((old >> 18) ^ old) >> 27) & 0xFFFFFFFF
        rot = old >> 59
        return ((xorshifted >> rot) | (xorshifted << ((32 - rot) & 31))) & 0xFFFFFFFF

    def unit(self) -> float:
        a = self.next_u32() >> 5
        b = self.next_u32() >> 6
        return (a * 67108864 + b) / 9007199254740992.0


def fan(faces) -> np.ndarray:
    tris = []
    for f in faces:
        f = [int(v) for v in f]
        for i in range(1, len(f) - 1):
            tris.append((f[0], f[i], f[i + 1]))
    return np.array(tris, dtype=np.int64).reshape(-1, 3)


def sample_mesh(vertices: np.ndarray, colors: np.ndarray | None, tris: np.ndarray):
    v = vertices.astype(np.float64)
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    e1, e2 = b - a, c - a
    cx = e1[:, 1] * e2[:, 2] - e1[:, 2] * e2[:, 1]
    cy = e1[:, 2] * e2[:, 0] - e1[:, 0] * e2[:, 2]
    cz = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    w = np.sqrt((cx * cx + cy * cy) + cz * cz)
    cum = np.cumsum(w)
    total = cum[-1]
    rng = Pcg32(0xCAFEF00DD15EA5E5, 0x0A02BDBF7BB3C0A7)
    draws = np.array([[rng.unit() for _ in range(3)] for _ in range(MESH_SAMPLES)])
    u, r1, r2 = draws[:, 0], draws[:, 1], draws[:, 2]
    t = np.minimum(np.searchsorted(cum, u * total, side="right"), len(tris) - 1)
    s = np.sqrt(r1)
    wa, wb, wc = 1.0 - s, s * (1.0 - r2), s * r2

    def mix(values: np.ndarray) -> np.ndarray:
        val = values.astype(np.float64)
        pa, pb, pc = val[tris[t, 0]], val[tris[t, 1]], val[tris[t, 2]]
        return ((wa[:, None] * pa + wb[:, None] * pb) + wc[:, None] * pc).astype(np.float32)

    return mix(vertices), (mix(colors) if colors is not None else None)


# ---------------------------------------------------------------- independent readers


def read_ply(data: bytes):
    ply = PlyData.read(io.BytesIO(data))
    v = ply["vertex"].data
    names = v.dtype.names
    xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    rgb = None
    if {"red", "green", "blue"} <= set(names):
        raw = np.stack([v["red"], v["green"], v["blue"]], axis=1)
        if raw.dtype == np.uint8:
            rgb = raw.astype(np.float32) / np.float32(255)
        else:
            rgb = raw.astype(np.float32)
    faces = None
    if "face" in ply and len(ply["face"].data):
        faces = ply["face"].data["vertex_indices"]
    return xyz, rgb, faces


def read_pcd(data: bytes):
    pc = pypcd4.PointCloud.from_fileobj(io.BytesIO(data))
    xyz = pc.numpy(("x", "y", "z")).astype(np.float32)
    rgb = None
    if "rgb" in pc.fields:
        packed = pc.numpy(("rgb",)).reshape(-1)
        packed = packed.astype(np.float32) if pc.types[pc.fields.index("rgb")] == np.float32 else packed.astype(np.uint32)
        rgb = pypcd4.PointCloud.decode_rgb(packed).astype(np.float32) / np.float32(255)
    return xyz, rgb


def read_text(data: bytes, skip: int, delimiter: str | None):
    arr = np.loadtxt(io.StringIO(data.decode()), dtype=np.float64, delimiter=delimiter, skiprows=skip, ndmin=2)
    arr = arr.astype(np.float32)
    return arr[:, :3], (untyped_colors(arr[:, 3:6]) if arr.shape[1] == 6 else None)


def read_npy(data: bytes):
    arr = np.load(io.BytesIO(data)).astype(np.float32)
    return np.ascontiguousarray(arr[:, :3]), (untyped_colors(arr[:, 3:6]) if arr.shape[1] == 6 else None)


def read_obj(data: bytes):
    verts, faces = [], []
    for line in data.decode().splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "v":
            verts.append([np.float32(float(x)) for x in parts[1:]])
        elif parts[0] == "f":
            idx = [int(p.split("/")[0]) for p in parts[1:]]
            faces.append([i - 1 if i > 0 else len(verts) + i for i in idx])
    arr = np.array(verts, dtype=np.float32)
    rgb = arr[:, 3:6].copy() if arr.shape[1] == 6 else None
    return np.ascontiguousarray(arr[:, :3]), rgb, faces


# ---------------------------------------------------------------- test clouds


def rng_cloud(rng: np.random.Generator, n: int, scale: float = 1.0, offset=(0, 0, 0)) -> np.ndarray:
    """A lumpy surface-like cloud: points on a noisy ellipsoid plus a plane."""
    k = n * 2 // 3
    d = rng.standard_normal((k, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    shell = d * np.array([1.0, 0.6, 0.4]) * (1 + 0.05 * rng.standard_normal((k, 1)))
    plane = np.column_stack([rng.uniform(-1.5, 1.5, n - k), rng.uniform(-1, 1, n - k), np.full(n - k, -0.5)])
    pts = np.concatenate([shell, plane]) * scale + np.array(offset)
    return pts[rng.permutation(n)]


def colors_u8(rng: np.random.Generator, xyz: np.ndarray) -> np.ndarray:
    base = (np.clip((xyz - xyz.min(0)) / np.ptp(xyz, axis=0).clip(1e-9), 0, 1) * 200).astype(np.int64)
    return (base + rng.integers(0, 55, xyz.shape)).astype(np.uint8)


def vertex_element(xyz: np.ndarray, types: list[tuple[str, str]], extra: dict[str, np.ndarray] | None = None) -> PlyElement:
    rec = np.empty(len(xyz), dtype=types)
    for i, name in enumerate(("x", "y", "z")):
        rec[name] = xyz[:, i]
    for name, values in (extra or {}).items():
        rec[name] = values
    return PlyElement.describe(rec, "vertex")


def ply_bytes(elements: list[PlyElement], text: bool, byte_order: str = "<", comments=()) -> bytes:
    buf = io.BytesIO()
    PlyData(elements, text=text, byte_order=byte_order, comments=list(comments)).write(buf)
    return buf.getvalue()


def grid_mesh(nu: int, nv: int):
    """A wavy open surface of nu*nv vertices and (nu-1)*(nv-1) quads."""
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, nu), np.linspace(-1, 1, nv), indexing="ij")
    xyz = np.stack([np.cos(u) * (1 + 0.3 * v), np.sin(u) * (1 + 0.3 * v), v + 0.1 * np.sin(5 * u)], -1)
    xyz = xyz.reshape(-1, 3).astype(np.float32)
    i = np.arange(nu - 1)[:, None] * nv + np.arange(nv - 1)[None, :]
    quads = np.stack([i, i + nv, i + nv + 1, i + 1], -1).reshape(-1, 4)
    return xyz, quads


def splitmix(i: np.ndarray) -> np.ndarray:
    """splitmix64's output for state ``(i + 1) * 0x9E3779B97F4A7C15`` (wrapping)."""
    with np.errstate(over="ignore"):
        z = (i + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def generated_cloud(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The generated cloud (also built by tests/it/point_cloud_pipeline.rs and the bench).

    Point i: ``h = splitmix(i)``, ``g = splitmix(i + 2^32)``; coordinates are the 21-bit fields
    ``h >> 43``, ``(h >> 22) & 0x1fffff``, ``(h >> 1) & 0x1fffff``, each as ``(v - 2^20) / 2^20``
    (exact in f32); colours are the bytes ``g & 0xff``, ``(g >> 8) & 0xff``, ``(g >> 16) & 0xff``.
    """
    i = np.arange(n, dtype=np.uint64)
    h, g = splitmix(i), splitmix(i + np.uint64(1 << 32))
    m = np.uint64(0x1FFFFF)
    fields = [h >> np.uint64(43), (h >> np.uint64(22)) & m, (h >> np.uint64(1)) & m]
    xyz = np.stack([(f.astype(np.float64) - 2**20) / 2**20 for f in fields], 1).astype(np.float32)
    rgb = np.stack([(g >> np.uint64(s)) & np.uint64(0xFF) for s in (0, 8, 16)], 1).astype(np.uint8)
    return xyz, rgb


def make_cases(out: Path) -> list[dict]:
    """Writes every test cloud into ``out/cases``; returns the case descriptions."""
    rng = np.random.default_rng(20240607)
    cases_dir = out / "cases"
    cases_dir.mkdir(parents=True, exist_ok=True)
    cases = []

    def add(id_: str, name: str, data: bytes, hint: str | None, reader: str, **extra) -> None:
        (cases_dir / name).write_bytes(data)
        cases.append({"id": id_, "file": f"cases/{name}", "hint": hint, "reader": reader, **extra})

    f4 = [("x", "f4"), ("y", "f4"), ("z", "f4")]
    rgb8 = [("red", "u1"), ("green", "u1"), ("blue", "u1")]

    xyz = rng_cloud(rng, 3000, 2.0, (1, 2, 3)).astype(np.float32)
    c = colors_u8(rng, xyz)
    el = vertex_element(xyz, f4 + rgb8 + [("intensity", "f4")], {"red": c[:, 0], "green": c[:, 1], "blue": c[:, 2], "intensity": rng.random(3000)})
    add("ply_ascii_color", "ascii_color.ply", ply_bytes([el], True, comments=["made for bindery tests"]), "ply", "plyfile")

    xyz = rng_cloud(rng, 20000, 50.0).astype(np.float32)
    normals = rng.standard_normal((20000, 3)).astype(np.float32)
    el = vertex_element(xyz, f4 + [("nx", "f4"), ("ny", "f4"), ("nz", "f4")], {"nx": normals[:, 0], "ny": normals[:, 1], "nz": normals[:, 2]})
    add("ply_binary_le", "binary_le_20k.ply", ply_bytes([el], False, "<"), None, "plyfile")

    xyz = rng_cloud(rng, 5000, 0.01, (100.0, -3.0, 7.0))
    rgbf = rng.random((5000, 3)).astype(np.float32)
    el = vertex_element(xyz, [("x", "f8"), ("y", "f8"), ("z", "f8"), ("red", "f4"), ("green", "f4"), ("blue", "f4")], {"red": rgbf[:, 0], "green": rgbf[:, 1], "blue": rgbf[:, 2]})
    add("ply_binary_be_double", "binary_be_double.ply", ply_bytes([el], False, ">"), "ply", "plyfile")

    # Integer coordinates of several types, extra properties of every other scalar type and a list.
    xyz = np.round(rng_cloud(rng, 4000, 1000.0)).astype(np.int64)
    rec = np.empty(4000, dtype=[("x", "i4"), ("y", "i2"), ("z", "u2"), ("a", "i1"), ("b", "u1"), ("c", "u4"), ("d", "f8"), ("e", "f4"), ("tags", "O")])
    rec["x"], rec["y"], rec["z"] = xyz[:, 0] * 1000, xyz[:, 1], xyz[:, 2] + 2000
    rec["a"], rec["b"], rec["c"] = -3, 7, 70000
    rec["d"], rec["e"] = 1.5, -2.5
    rec["tags"] = [np.arange(i % 4, dtype=np.int32) for i in range(4000)]
    el = PlyElement.describe(rec, "vertex", len_types={"tags": "u1"}, val_types={"tags": "i4"})
    add("ply_int_types", "int_types.ply", ply_bytes([el], False, "<"), "ply", "plyfile")

    verts, quads = grid_mesh(320, 320)
    vc = colors_u8(rng, verts)
    vel = vertex_element(verts, f4 + rgb8, {"red": vc[:, 0], "green": vc[:, 1], "blue": vc[:, 2]})
    frec = np.empty(len(quads), dtype=[("vertex_indices", "O")])
    frec["vertex_indices"] = list(quads.astype(np.int32))
    fel = PlyElement.describe(frec, "face", len_types={"vertex_indices": "u1"}, val_types={"vertex_indices": "i4"})
    add("ply_mesh_100k", "mesh_100k.ply", ply_bytes([vel, fel], False, "<"), None, "plyfile", mesh=True)

    verts, quads = grid_mesh(12, 9)
    tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    vel = vertex_element(verts, f4)
    frec = np.empty(len(tris), dtype=[("vertex_indices", "O")])
    frec["vertex_indices"] = list(tris.astype(np.int32))
    fel = PlyElement.describe(frec, "face", len_types={"vertex_indices": "u1"}, val_types={"vertex_indices": "i4"})
    add("ply_ascii_mesh", "ascii_mesh.ply", ply_bytes([vel, fel], True), "ply", "plyfile", mesh=True)

    # PCD: organised ascii cloud with NaN holes and packed float rgb.
    xyz = rng_cloud(rng, 4000, 3.0).astype(np.float32)
    xyz[rng.choice(4000, 150, replace=False)] = np.nan
    c = colors_u8(rng, np.nan_to_num(xyz))
    packed = pypcd4.PointCloud.encode_rgb(c)
    pc = pypcd4.PointCloud.from_xyzrgb_points(np.column_stack([xyz, packed]))
    add("pcd_ascii_nan", "ascii_nan.pcd", pcd_bytes(pc, "ascii"), "pcd", "pypcd4")

    xyz = rng_cloud(rng, 12000, 0.5).astype(np.float32)
    pc = pypcd4.PointCloud.from_xyz_points(xyz)
    add("pcd_binary", "binary_12k.pcd", pcd_bytes(pc, "binary"), None, "pypcd4")

    xyz = rng_cloud(rng, 6000, 4.0).astype(np.float32)
    c = colors_u8(rng, xyz).astype(np.uint32)
    packed_u = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    pc = pypcd4.PointCloud.from_points([xyz[:, 0], xyz[:, 1], xyz[:, 2], packed_u], ("x", "y", "z", "rgb"), (np.float32, np.float32, np.float32, np.uint32))
    add("pcd_compressed", "compressed.pcd", pcd_bytes(pc, "binary_compressed"), "pcd", "pypcd4")

    # Text.
    xyz = rng_cloud(rng, 2500, 10.0)
    add("xyz_plain", "plain.xyz", text_bytes(xyz, None, " ", "%.6f"), "xyz", "numpy.loadtxt", text={"skip": 0, "delimiter": None})
    xyz = rng_cloud(rng, 2200, 1.0)
    c = colors_u8(rng, xyz)
    add("xyz_rgb255", "rgb255.xyz", text_bytes(xyz, c, " ", "%.7g"), None, "numpy.loadtxt", text={"skip": 0, "delimiter": None})
    xyz = rng_cloud(rng, 1800, 5.0)
    add("pts_count", "count.pts", f"{len(xyz)}\n".encode() + text_bytes(xyz, None, " ", "%.5f"), "pts", "numpy.loadtxt", text={"skip": 1, "delimiter": None})
    xyz = rng_cloud(rng, 2600, 0.3)
    rgbf = rng.random((2600, 3))
    add("csv_header", "header.csv", b"x,y,z,r,g,b\n" + text_bytes(xyz, rgbf, ",", "%.6g"), "csv", "numpy.loadtxt", text={"skip": 1, "delimiter": ","})

    # NPY.
    xyz = rng_cloud(rng, 9000, 2.0).astype(np.float32)
    add("npy_f32", "f32.npy", npy_bytes(xyz), "npy", "numpy.load")
    arr = np.column_stack([rng_cloud(rng, 3500, 1.0), rng.random((3500, 3))])
    add("npy_f64_fortran_rgb", "f64_fortran_rgb.npy", npy_bytes(np.asfortranarray(arr)), None, "numpy.load")

    # OBJ.
    add("obj_mesh_color", "mesh_color.obj", obj_mesh(rng), "obj", "obj", mesh=True)
    xyz = rng_cloud(rng, 1500, 1.0)
    lines = ["# vertices only", *[f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in xyz]]
    add("obj_points", "points.obj", ("\n".join(lines) + "\n").encode(), None, "obj")

    # Special clouds.
    base = rng_cloud(rng, 100, 1.0).astype(np.float32)
    dup = base[rng.integers(0, 100, 5000)]
    el = vertex_element(dup, f4)
    add("duplicates", "duplicates.ply", ply_bytes([el], False, "<"), "ply", "plyfile")
    add("three_points", "three.xyz", b"0 0 0\n1 0 0\n0 2 0\n", "xyz", "numpy.loadtxt", text={"skip": 0, "delimiter": None})
    add("identical_points", "identical.xyz", b"1.5 -2 3\n" * 10, "xyz", "numpy.loadtxt", text={"skip": 0, "delimiter": None})
    xyz = rng_cloud(rng, 3000, 1.0).astype(np.float32)
    bad = rng.choice(3000, 40, replace=False)
    xyz[bad[:20], 0] = np.nan
    xyz[bad[20:30], 1] = np.inf
    xyz[bad[30:], 2] = -np.inf
    add("nan_points", "nan_points.ply", ply_bytes([vertex_element(xyz, f4)], False, "<"), "ply", "plyfile")

    # Packed arrays (the request's xyz + byte colours).
    xyz = rng_cloud(rng, 7000, 3.0).astype(np.float32)
    c = colors_u8(rng, xyz)
    (cases_dir / "arrays.xyz.f32").write_bytes(xyz.astype("<f4").tobytes())
    (cases_dir / "arrays.rgb.u8").write_bytes(c.tobytes())
    cases.append({"id": "arrays_u8", "file": None, "hint": None, "reader": "raw", "arrays": {"xyz": "cases/arrays.xyz.f32", "rgb_u8": "cases/arrays.rgb.u8"}})

    cases.append({"id": "generated_1m", "file": None, "hint": "ply", "reader": "plyfile", "generated": {"points": GENERATED_POINTS, "layout": "binary_little_endian float x y z, uchar red green blue"}})
    return cases


def pcd_bytes(pc: pypcd4.PointCloud, encoding: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.pcd"
        pc.save(path, encoding=pypcd4.Encoding(encoding))
        return path.read_bytes()


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def text_bytes(xyz: np.ndarray, rgb: np.ndarray | None, sep: str, fmt: str) -> bytes:
    cols = [xyz] if rgb is None else [xyz, rgb]
    arr = np.column_stack(cols)
    fmts = [fmt] * 3 + (["%d" if rgb is not None and rgb.dtype == np.uint8 else "%.6f"] * 3 if rgb is not None else [])
    buf = io.StringIO()
    np.savetxt(buf, arr, fmt=fmts, delimiter=sep)
    return buf.getvalue().encode()


def obj_mesh(rng: np.random.Generator) -> bytes:
    """A coloured OBJ: triangles, quads and pentagons, ``v//vn`` and negative indices."""
    verts, quads = grid_mesh(30, 20)
    colors = rng.random((len(verts), 3))
    lines = ["# bindery test mesh", "o sheet", "mtllib none.mtl"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f} {r:.4f} {g:.4f} {b:.4f}" for (x, y, z), (r, g, b) in zip(verts, colors)]
    lines += ["vn 0 0 1", "vt 0.5 0.5", "usemtl none", "s off"]
    n = len(verts)
    for k, q in enumerate(quads + 1):
        if k % 3 == 0:
            lines.append(f"f {q[0]} {q[1]} {q[2]}")
            lines.append(f"f {q[0]}/1 {q[2]}/1 {q[3]}/1")
        elif k % 3 == 1:
            lines.append("f " + " ".join(f"{v}//1" for v in q))
        else:
            lines.append("f " + " ".join(f"{v - n - 1}/1/1" for v in q))
    # One pentagon across the first row.
    lines.append("f 1 21 41 42 2")
    return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------- bad inputs


def make_bad(out: Path) -> list[dict]:
    bad_dir = out / "bad"
    bad_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(99)
    entries = []

    def add(name: str, data: bytes, hint: str | None, kind: str, check, limits: dict | None = None) -> None:
        (bad_dir / name).write_bytes(data)
        if check is None:
            ref = "not run: the reader would allocate the declared size"
        else:
            try:
                check(data)
                ref = "accepted"
            except Exception as e:  # noqa: BLE001 - any failure of the reference reader is the record
                ref = f"{type(e).__name__}: {e}"[:200]
        entries.append({"file": f"bad/{name}", "hint": hint, "kind": kind, "limits": limits, "reference": ref})

    xyz = rng.random((500, 3)).astype(np.float32)
    full = ply_bytes([vertex_element(xyz, [("x", "f4"), ("y", "f4"), ("z", "f4")])], False, "<")
    add("truncated_binary.ply", full[: len(full) - 1000], "ply", "Truncated", read_ply)
    lines = "\n".join(f"{x} {y} {z}" for x, y, z in xyz[:10])
    lying = f"ply\nformat ascii 1.0\nelement vertex 5000\nproperty float x\nproperty float y\nproperty float z\nend_header\n{lines}\n"
    add("lying_count.ply", lying.encode(), "ply", "Truncated", read_ply)
    huge = "ply\nformat binary_little_endian 1.0\nelement vertex 4000000000\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    add("huge_count.ply", huge.encode() + xyz[:2].tobytes(), "ply", "TooManyPoints", None)
    add("huge_count_binary.pcd", b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH 3000000000\nHEIGHT 1\nPOINTS 3000000000\nDATA binary\n" + xyz[:2].tobytes(), "pcd", "TooManyPoints", None)
    pcd_full = pcd_bytes(pypcd4.PointCloud.from_xyz_points(xyz), "binary")
    add("truncated.pcd", pcd_full[:-7], "pcd", "Truncated", read_pcd)
    add("wrong_columns.xyz", b"0 0 0\n1 1 1\n2 2 2 2\n3 3 3\n", "xyz", "Malformed", lambda d: read_text(d, 0, None))
    add("four_columns.csv", b"1,2,3,4\n5,6,7,8\n", "csv", "Malformed", lambda d: read_text(d, 0, ","))
    add("nan_only.xyz", b"nan nan nan\nnan 1 2\ninf 0 0\n", "xyz", "TooFewPoints", lambda d: _require_points(read_text(d, 0, None)))
    add("empty.ply", b"", "ply", "Empty", read_ply)
    add("zero_vertices.ply", b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\nend_header\n", "ply", "Empty", lambda d: _require_points(read_ply(d)))
    many = "\n".join(f"{i} {i} {i}" for i in range(101)) + "\n"
    add("too_many_points.xyz", many.encode(), "xyz", "TooManyPoints", lambda d: read_text(d, 0, None), {"max_points": 100})
    add("too_many_bytes.xyz", many.encode(), "xyz", "TooManyBytes", lambda d: read_text(d, 0, None), {"max_bytes": 512})
    add("bad_face_index.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "obj", "Malformed", lambda d: sample_mesh(*_obj_mesh(d)))
    add("not_a_cloud.bin", bytes(rng.integers(0, 256, 300, dtype=np.uint8)) + b"\x00", None, "UnknownFormat", read_ply)
    add("int32.npy", npy_bytes(np.zeros((4, 3), np.int32)), "npy", "Unsupported", lambda d: _require_float(np.load(io.BytesIO(d))))
    add("bad_shape.npy", npy_bytes(np.zeros((4, 4), np.float32)), "npy", "Malformed", lambda d: _require_cols(np.load(io.BytesIO(d))))
    add("no_xyz.ply", b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float u\nproperty float v\nend_header\n1 2\n", "ply", "Malformed", read_ply)
    add("unknown_hint.las", b"LASF", "las", "UnknownHint", _no_reader)
    return entries


def _no_reader(data: bytes) -> None:
    raise ValueError(f"no reference reader for this format ({len(data)} bytes)")


def _require_points(parsed) -> None:
    xyz, rgb = parsed[0], parsed[1]
    xyz, _, _ = clean(xyz, rgb)
    if len(xyz) == 0:
        raise ValueError("no finite point")


def _require_float(arr: np.ndarray) -> None:
    if arr.dtype.kind != "f":
        raise TypeError(f"dtype {arr.dtype} is not floating point")


def _require_cols(arr: np.ndarray) -> None:
    if arr.ndim != 2 or arr.shape[1] not in (3, 6):
        raise ValueError(f"shape {arr.shape} is not [N, 3] or [N, 6]")


def _obj_mesh(data: bytes):
    xyz, rgb, faces = read_obj(data)
    tris = fan(faces)
    if tris.size and tris.max() >= len(xyz):
        raise IndexError(f"face index {tris.max() + 1} out of range")
    return xyz, rgb, tris


# ---------------------------------------------------------------- goldens


def read_case(out: Path, case: dict):
    """(xyz, rgb, dropped, mesh) of one case through the reference readers."""
    if case.get("generated"):
        xyz, c = generated_cloud(case["generated"]["points"])
        vel = vertex_element(xyz, [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")], {"red": c[:, 0], "green": c[:, 1], "blue": c[:, 2]})
        xyz, rgb, _ = read_ply(ply_bytes([vel], False, "<"))
        return (*clean(xyz, rgb), False)
    if case.get("arrays"):
        xyz = np.fromfile(out / case["arrays"]["xyz"], dtype="<f4").reshape(-1, 3)
        rgb = np.fromfile(out / case["arrays"]["rgb_u8"], dtype=np.uint8).reshape(-1, 3).astype(np.float32) / np.float32(255)
        return (*clean(xyz, rgb), False)
    data = (out / case["file"]).read_bytes()
    name = case["file"]
    faces = None
    if name.endswith(".ply"):
        xyz, rgb, faces = read_ply(data)
    elif name.endswith(".pcd"):
        xyz, rgb = read_pcd(data)
    elif name.endswith(".npy"):
        xyz, rgb = read_npy(data)
    elif name.endswith(".obj"):
        xyz, rgb, faces = read_obj(data)
        faces = faces or None
    else:
        t = case["text"]
        xyz, rgb = read_text(data, t["skip"], t["delimiter"])
    if faces is not None:
        xyz, rgb = sample_mesh(xyz, rgb, fan(faces))
        return xyz, rgb, 0, True
    return (*clean(xyz, rgb), False)


def write_goldens(out: Path) -> None:
    cases = make_cases(out)
    tower = point_tower.build()
    (out / "knn").mkdir(exist_ok=True)
    (out / "tensors").mkdir(exist_ok=True)
    for case in cases:
        xyz, rgb, dropped, mesh = read_case(out, case)
        r = reference(xyz, rgb)
        cid = case["id"]
        emb = point_tower.embed(tower, r["neighborhood"][None], r["centers"][None])[0]
        (out / "knn" / f"{cid}.u16").write_bytes(r["knn"].astype("<u2").tobytes())
        (out / "tensors" / f"{cid}.center.f32").write_bytes(r["centers"].astype("<f4").tobytes())
        nb = None
        if cid in FULL_TENSORS:
            nb = f"tensors/{cid}.neighborhood.f32"
            (out / nb).write_bytes(r["neighborhood"].astype("<f4").tobytes())
        case.update(
            {
                "mesh": mesh,
                "points": int(len(xyz)),
                "dropped": int(dropped),
                "colored": rgb is not None,
                "sample_indices": None if r["sample"] is None else [int(i) for i in r["sample"]],
                "center_indices": [int(i) for i in r["centers_idx"]],
                "neighbors": f"knn/{cid}.u16",
                "center": f"tensors/{cid}.center.f32",
                "neighborhood": nb,
                "embedding": [float(v) for v in emb],
            }
        )
        print(f"  {cid}: {len(xyz)} points, dropped {dropped}, mesh {mesh}", flush=True)
    meta = {
        "generator": "tools/make_point_fixtures.py",
        "versions": {
            "fpsample": fpsample.__version__,
            "plyfile": plyfile.__version__ if hasattr(plyfile, "__version__") else "1.1.5",
            "pypcd4": pypcd4.__version__,
            "numpy": np.__version__,
            "torch": torch.__version__.split("+")[0],
        },
        "params": P,
        "cases": cases,
    }
    (out / "cases.json").write_text(json.dumps(meta, indent=1) + "\n")
    bad = make_bad(out)
    (out / "bad.json").write_text(json.dumps({"entries": bad}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="regenerate in a scratch folder and compare")
    args = parser.parse_args()
    if args.check:
        owned = lambda root: {str(f.relative_to(root)) for f in root.rglob("*") if f.is_file()}  # noqa: E731
        raise SystemExit(goldens.check_regenerated(DEST, Path(), lambda root, _: write_goldens(root), owned))
    if DEST.exists():
        shutil.rmtree(DEST)
    DEST.mkdir(parents=True)
    write_goldens(DEST)
    print(f"wrote {DEST}")


if __name__ == "__main__":
    main()
