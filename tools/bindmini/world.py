"""The procedural world bind-mini is trained on: shapes x colours, and how each object is shown.

Every object instance is drawn from a seeded ``numpy.random.Generator`` and rendered four ways:

* an image: a small numpy sphere tracer over signed distance functions, Lambert + ambient +
  a little specular light from a random direction, a random pose and camera distance, a
  procedural cluttered background and, sometimes, an occluder in front of the object;
* a point cloud: surface samples of the same shape (random points projected onto the surface
  along the SDF gradient, thinned towards a random scan direction), random rotation, jitter,
  a few outliers, per-point colour noise;
* speech: ``espeak-ng`` saying a short phrase about the object with a random voice, speed and
  pitch, mixed with noise at a random SNR;
* captions: templates with synonyms.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

#: Shape -> words used for it (the first is the canonical one).
SHAPES: dict[str, list[str]] = {
    "sphere": ["sphere", "ball", "globe", "orb"],
    "cube": ["cube", "box", "block"],
    "cylinder": ["cylinder", "can", "drum"],
    "cone": ["cone", "cone shape", "pointed cone"],
    "torus": ["torus", "donut", "doughnut"],
    "pyramid": ["pyramid", "square pyramid"],
    "capsule": ["capsule", "pill", "lozenge"],
    "ring": ["ring", "hoop", "band"],
}

#: Colour -> (albedo RGB in [0, 1], words used for it; the first is the canonical one).
COLOURS: dict[str, tuple[tuple[float, float, float], list[str]]] = {
    "red": ((0.86, 0.08, 0.08), ["red", "crimson", "scarlet"]),
    "orange": ((0.98, 0.48, 0.05), ["orange", "tangerine"]),
    "yellow": ((0.95, 0.85, 0.10), ["yellow", "golden", "lemon"]),
    "green": ((0.10, 0.70, 0.15), ["green", "emerald", "lime"]),
    "cyan": ((0.10, 0.80, 0.85), ["cyan", "turquoise", "teal"]),
    "blue": ((0.10, 0.22, 0.90), ["blue", "azure", "cobalt"]),
    "purple": ((0.52, 0.12, 0.78), ["purple", "violet", "lavender"]),
    "pink": ((0.98, 0.45, 0.72), ["pink", "rose", "fuchsia"]),
}

#: (shape, colour) combinations that never appear in training; each shape and colour in them is
#: seen in other combinations.
UNSEEN: list[tuple[str, str]] = [
    ("sphere", "purple"),
    ("cube", "cyan"),
    ("cylinder", "pink"),
    ("cone", "blue"),
    ("torus", "orange"),
    ("pyramid", "green"),
]

SIZE_WORDS = {"small": ["small", "tiny", "little"], "large": ["large", "big", "huge"], "medium": [""]}

CAPTION_TEMPLATES = [
    "a {size}{colour} {shape}",
    "{colour} {shape}",
    "a photo of a {size}{colour} {shape}",
    "a rendering of a {colour} {shape}",
    "a 3d model of a {size}{colour} {shape}",
    "the {shape} is {colour}",
    "a {shape} painted {colour}",
    "there is a {colour} {shape} in the picture",
    "a {colour} {shape} on a cluttered background",
    "a picture of the {size}{colour} {shape}",
]

SPEECH_TEMPLATES = [
    "a {size}{colour} {shape}",
    "{colour} {shape}",
    "a {colour} {shape}",
    "the {colour} {shape}",
]

#: espeak-ng voices and variants the speech is drawn from.
VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan"]
VARIANTS = ["", "+m1", "+m3", "+m5", "+m7", "+f1", "+f2", "+f3", "+f4", "+klatt2"]


def combos() -> list[tuple[str, str]]:
    """Every (shape, colour) pair, in a fixed order."""
    return [(s, c) for s in SHAPES for c in COLOURS]


# ------------------------------------------------------------------------------ text


def _pick(rng: np.random.Generator, words: list[str], canonical_p: float) -> str:
    if len(words) == 1 or rng.random() < canonical_p:
        return words[0]
    return words[int(rng.integers(1, len(words)))]


def phrase(rng: np.random.Generator, shape: str, colour: str, size: str, templates: list[str],
           canonical_p: float) -> str:
    """One phrase about the object from ``templates``, with synonyms."""
    t = templates[int(rng.integers(len(templates)))]
    s = _pick(rng, SIZE_WORDS[size], 0.5) if rng.random() < 0.6 else ""
    return " ".join(
        t.format(
            size=(s + " ") if s else "",
            colour=_pick(rng, COLOURS[colour][1], canonical_p),
            shape=_pick(rng, SHAPES[shape], canonical_p),
        ).split()
    )


# ------------------------------------------------------------------------------ geometry


def _length(p: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(p * p, axis=-1))


def sdf(shape: str, p: np.ndarray) -> np.ndarray:
    """Signed distance of points ``p`` [N, 3] to the unit-size shape (y is up, centred)."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    if shape == "sphere":
        return _length(p) - 0.8
    if shape == "cube":
        q = np.abs(p) - 0.58
        return _length(np.maximum(q, 0)) + np.minimum(q.max(axis=1), 0) - 0.04
    if shape == "cylinder":
        d = np.stack([np.sqrt(x * x + z * z) - 0.5, np.abs(y) - 0.7], axis=1)
        return np.minimum(d.max(axis=1), 0) + _length(np.maximum(d, 0))
    if shape == "cone":
        # Capped cone, apex up (height 1.4, base radius 0.75); exact distance.
        h, r = 1.4, 0.75
        qx, qy = np.sqrt(x * x + z * z), y + 0.5
        # distance to the 2D triangle (0,0)-(r,0)-(0,h) in (qx, qy)
        a = np.stack([qx, qy], 1)
        e = np.array([-r, h])
        t = np.clip(((a - np.array([r, 0.0])) @ e) / (e @ e), 0, 1)
        d_side = _length(a - (np.array([r, 0.0]) + t[:, None] * e))
        d_base = np.where(qx < r, np.abs(qy), _length(np.stack([qx - r, qy], 1)))
        inside = (qy > 0) & (qx * h + qy * r < h * r)
        d = np.minimum(d_side, d_base)
        return np.where(inside, -d, d)
    if shape == "torus":
        q = np.stack([np.sqrt(x * x + z * z) - 0.6, y], axis=1)
        return _length(q) - 0.25
    if shape == "pyramid":
        # Square pyramid with base 1.3 x 1.3 at y = -0.55 and apex at y = 0.75: intersection of
        # half-spaces (an SDF bound, good enough for sphere tracing and surface projection).
        b, h, y0 = 0.65, 1.3, -0.55
        n = np.array([h, b]) / math.hypot(h, b)
        yy = y - y0
        faces = [np.abs(x) * n[0] + yy * n[1] - b * n[0], np.abs(z) * n[0] + yy * n[1] - b * n[0], -yy]
        return np.max(np.stack(faces, 1), axis=1)
    if shape == "capsule":
        yy = np.clip(y, -0.5, 0.5)
        return _length(np.stack([x, y - yy, z], 1)) - 0.38
    if shape == "ring":
        # A flat band: hollow cylinder, outer radius 0.8, inner 0.6, height 0.24.
        rad = np.sqrt(x * x + z * z)
        d = np.stack([np.abs(rad - 0.7) - 0.1, np.abs(y) - 0.12], axis=1)
        return np.minimum(d.max(axis=1), 0) + _length(np.maximum(d, 0)) - 0.01
    raise ValueError(shape)


def _gradient(shape: str, p: np.ndarray, eps: float = 1e-3) -> np.ndarray:
    g = np.zeros_like(p)
    for i in range(3):
        d = np.zeros(3)
        d[i] = eps
        g[:, i] = sdf(shape, p + d) - sdf(shape, p - d)
    return g / np.maximum(_length(g)[:, None], 1e-9)


def random_rotation(rng: np.random.Generator, max_tilt: float = math.pi) -> np.ndarray:
    """Yaw uniform, tilt up to ``max_tilt`` about a random horizontal axis."""
    yaw = rng.uniform(0, 2 * math.pi)
    cy, sy = math.cos(yaw), math.sin(yaw)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    tilt = rng.uniform(0, max_tilt)
    axis_angle = rng.uniform(0, 2 * math.pi)
    ax = np.array([math.cos(axis_angle), 0.0, math.sin(axis_angle)])
    k = np.array([[0, -ax[2], ax[1]], [ax[2], 0, -ax[0]], [-ax[1], ax[0], 0]])
    rt = np.eye(3) + math.sin(tilt) * k + (1 - math.cos(tilt)) * (k @ k)
    return rt @ ry


# ------------------------------------------------------------------------------ image


def _muted(rng: np.random.Generator) -> np.ndarray:
    """A low-saturation colour for backgrounds and occluders."""
    grey = rng.uniform(0.25, 0.8)
    tint = rng.uniform(-0.12, 0.12, 3)
    return np.clip(grey + tint, 0, 1)


def background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A cluttered, textured background [h, w, 3] in [0, 1]."""
    coarse = np.stack([_muted(rng) for _ in range(16)]).reshape(4, 4, 3)
    img = Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    base = np.asarray(img, dtype=np.float32) / 255
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = rng.integers(4)
    if kind == 0:  # stripes
        f, a = rng.uniform(0.05, 0.3), rng.uniform(0, math.pi)
        pat = 0.5 + 0.5 * np.sign(np.sin(f * (xx * math.cos(a) + yy * math.sin(a))))
    elif kind == 1:  # checker
        s = rng.integers(6, 24)
        pat = ((xx // s + yy // s) % 2).astype(np.float32)
    elif kind == 2:  # noise
        n = rng.random((h // 4 + 1, w // 4 + 1)).astype(np.float32)
        pat = np.asarray(Image.fromarray((n * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC),
                         dtype=np.float32) / 255
    else:  # plain gradient
        pat = yy / h
    base = base * (1 - 0.25 * pat[..., None]) + 0.08 * rng.standard_normal((1, 1, 3))
    # Clutter: a few muted blobs and lines.
    clutter = Image.fromarray((np.clip(base, 0, 1) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(clutter)
    for _ in range(int(rng.integers(2, 7))):
        c = tuple(int(v * 255) for v in _muted(rng))
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        x1, y1 = x0 + rng.uniform(0.05, 0.4) * w, y0 + rng.uniform(0.05, 0.4) * h
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x1, y1], fill=c)
        elif rng.random() < 0.5:
            draw.rectangle([x0, y0, x1, y1], fill=c)
        else:
            draw.line([x0, y0, x1, y1], fill=c, width=int(rng.integers(2, 8)))
    return np.asarray(clutter.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5))),
                      dtype=np.float32) / 255


def render(rng: np.random.Generator, shape: str, albedo: np.ndarray, scale: float, w: int,
           h: int) -> np.ndarray:
    """The object over a cluttered background, uint8 [h, w, 3]."""
    rot = random_rotation(rng, max_tilt=rng.choice([0.5, 1.2, math.pi]))
    dist = rng.uniform(3.4, 4.6)
    fov = math.radians(rng.uniform(34, 44))
    offset = np.array([rng.uniform(-0.35, 0.35), rng.uniform(-0.3, 0.3), 0.0])
    # Camera looks along +z from (0, 0, -dist), slightly from above.
    elev = rng.uniform(-0.1, 0.6)
    ce, se = math.cos(elev), math.sin(elev)
    cam = np.array([[1, 0, 0], [0, ce, -se], [0, se, ce]])
    origin = cam @ np.array([0, 0, -dist])
    aspect = w / h
    t = math.tan(fov / 2)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    u = ((xs + 0.5) / w * 2 - 1) * t * max(aspect, 1)
    v = (1 - (ys + 0.5) / h * 2) * t * max(1 / aspect, 1)
    dirs = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ cam.T
    dirs /= _length(dirs)[:, None]
    # Object space: p_obj = rot^T (p - offset) / scale.
    o_obj = (rot.T @ (origin - offset)) / scale
    d_obj = dirs @ rot  # rows: rot^T d
    # Bounding sphere of radius 1.1 in object space.
    b = d_obj @ o_obj
    c = o_obj @ o_obj - 1.1**2
    disc = b * b - c
    hit_box = np.nonzero(disc > 0)[0]
    tt = np.maximum(-b[hit_box] - np.sqrt(disc[hit_box]), 0)
    t_far = -b[hit_box] + np.sqrt(disc[hit_box])
    active = np.ones(len(hit_box), bool)
    hit = np.zeros(len(hit_box), bool)
    for _ in range(64):
        idx = np.nonzero(active)[0]
        if len(idx) == 0:
            break
        p = o_obj + d_obj[hit_box[idx]] * tt[idx, None]
        d = sdf(shape, p)
        tt[idx] += d
        done = d < 1e-3
        hit[idx[done]] = True
        active[idx[done]] = False
        active[idx[tt[idx] > t_far[idx]]] = False
    img = background(rng, w, h).reshape(-1, 3)
    rays = hit_box[hit]
    if len(rays):
        p = o_obj + d_obj[rays] * tt[hit, None]
        n_obj = _gradient(shape, p)
        n = n_obj @ rot.T
        light = np.array([rng.uniform(-1, 1), rng.uniform(0.2, 1.2), rng.uniform(-1.2, -0.2)])
        light /= np.linalg.norm(light)
        lam = np.clip(n @ light, 0, 1)
        view = -dirs[rays]
        half = light + view
        half /= _length(half)[:, None]
        spec = np.clip(np.sum(n * half, 1), 0, 1) ** 24 * rng.uniform(0, 0.35)
        amb = rng.uniform(0.25, 0.45)
        tint = albedo * rng.uniform(0.9, 1.1, 3)
        col = tint[None] * (amb + (1 - amb) * lam[:, None] * rng.uniform(0.8, 1.1)) + spec[:, None]
        img[rays] = np.clip(col, 0, 1)
    img = img.reshape(h, w, 3)
    if rng.random() < 0.25:  # an occluder in front of part of the object
        pil = Image.fromarray((img * 255).astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        col = tuple(int(v * 255) for v in _muted(rng))
        cx, cy = w / 2 + offset[0] * w / 4, h / 2 - offset[1] * h / 4
        if rng.random() < 0.5:
            bw = rng.uniform(0.06, 0.16) * w
            x0 = cx + rng.uniform(-0.3, 0.3) * w
            draw.rectangle([x0, 0, x0 + bw, h], fill=col)
        else:
            r = rng.uniform(0.08, 0.16) * min(w, h)
            ex, ey = cx + rng.uniform(-0.25, 0.25) * w, cy + rng.uniform(-0.25, 0.25) * h
            draw.ellipse([ex - r, ey - r, ex + r, ey + r], fill=col)
        img = np.asarray(pil, dtype=np.float32) / 255
    noise = rng.normal(0, rng.uniform(0, 0.03), img.shape)
    return (np.clip(img + noise, 0, 1) * 255 + 0.5).astype(np.uint8)


# ------------------------------------------------------------------------------ point cloud


def surface_points(rng: np.random.Generator, shape: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points on the unit shape's surface and their normals."""
    out, normals = [], []
    have = 0
    while have < n:
        p = rng.uniform(-1.05, 1.05, (int(n * 1.3) + 16, 3))
        for _ in range(4):
            p = p - sdf(shape, p)[:, None] * _gradient(shape, p)
        ok = np.abs(sdf(shape, p)) < 4e-3
        p = p[ok]
        out.append(p)
        normals.append(_gradient(shape, p))
        have += len(p)
    return np.concatenate(out)[:n], np.concatenate(normals)[:n]


def point_cloud(rng: np.random.Generator, shape: str, albedo: np.ndarray, scale: float,
                n: int) -> tuple[np.ndarray, np.ndarray]:
    """(xyz float32 [M, 3], rgb float32 [M, 3] in [0, 1]) for one object."""
    pts, nrm = surface_points(rng, shape, int(n * 1.6))
    # Non-uniform density: a partial "scan" from a random direction thins the far side.
    view = rng.standard_normal(3)
    view /= np.linalg.norm(view)
    keep_p = 0.25 + 0.75 * np.clip(nrm @ view, 0, 1) ** rng.uniform(0.5, 2)
    keep = rng.random(len(pts)) < keep_p
    pts = pts[keep][:n]
    rot = random_rotation(rng)
    xyz = (pts * scale) @ rot.T + rng.uniform(-2, 2, 3)
    xyz += rng.normal(0, rng.uniform(0.002, 0.015) * scale, xyz.shape)
    rgb = np.clip(albedo[None] * rng.uniform(0.85, 1.1, (len(xyz), 1)) + rng.normal(0, 0.03, xyz.shape), 0, 1)
    k = int(len(xyz) * rng.uniform(0.0, 0.01))
    if k:
        lo, hi = xyz.min(0), xyz.max(0)
        idx = rng.choice(len(xyz), k, replace=False)
        xyz[idx] = rng.uniform(lo - 0.2 * scale, hi + 0.2 * scale, (k, 3))
        rgb[idx] = rng.random((k, 3))
    return xyz.astype(np.float32), rgb.astype(np.float32)


# ------------------------------------------------------------------------------ speech

ESPEAK = shutil.which("espeak-ng") or "/usr/bin/espeak-ng"


@dataclass
class Speech:
    """A synthesised utterance with the parameters it was made with."""

    wave: np.ndarray
    sample_rate: int
    voice: str
    speed: int
    pitch: int


def speak(rng: np.random.Generator, text: str) -> Speech:
    """``espeak-ng`` saying ``text`` with a random voice, speed and pitch (float32 mono)."""
    import soundfile as sf

    voice = VOICES[int(rng.integers(len(VOICES)))] + VARIANTS[int(rng.integers(len(VARIANTS)))]
    speed = int(rng.integers(140, 230))
    pitch = int(rng.integers(25, 80))
    raw = subprocess.run(
        [ESPEAK, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    wave, sr = sf.read(io.BytesIO(raw), dtype="float32")
    return Speech(wave, sr, voice, speed, pitch)


def noisy(rng: np.random.Generator, wave: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """Speech with silence around it and background noise at a random SNR (dB)."""
    lead = np.zeros(int(sr * rng.uniform(0.0, 0.25)), np.float32)
    tail = np.zeros(int(sr * rng.uniform(0.0, 0.25)), np.float32)
    x = np.concatenate([lead, wave, tail])
    white = rng.standard_normal(len(x))
    kind = rng.integers(3)
    if kind == 0:
        noise = white
    elif kind == 1:  # brown-ish
        noise = np.cumsum(white)
        noise -= np.convolve(noise, np.ones(200) / 200, mode="same")
    else:  # hum + hiss
        t = np.arange(len(x)) / sr
        noise = np.sin(2 * math.pi * rng.uniform(50, 240) * t) + 0.3 * white
    snr = float(rng.uniform(5, 30))
    p_sig = float(np.mean(wave**2)) + 1e-12
    p_noise = float(np.mean(noise**2)) + 1e-12
    noise = noise * math.sqrt(p_sig / (p_noise * 10 ** (snr / 10)))
    y = x + noise.astype(np.float32)
    peak = float(np.max(np.abs(y)))
    gain = rng.uniform(0.3, 0.95) / max(peak, 1e-6)
    return (y * gain).astype(np.float32), snr
