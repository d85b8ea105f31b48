#!/usr/bin/env python3
"""Generate bind-mini's world: images, point clouds, speech and captions for every object.

    tools/.venv/bin/python tools/bindmini/generate.py [--out tools/.gen/bindmini/world] [--seed 2024]

Writes ``<out>/{train,test}/<id>.{jpg,png,ply,npy,xyz,wav,flac,ogg}`` and ``<out>/index.json``
(one record per object: split, shape, colour, size, captions, spoken phrase, file names, whether
its (shape, colour) combination is seen in training, and how each file was made). Every object
draws from its own generator seeded by ``(seed, object number)``, so the output does not depend
on the number of worker processes. Needs ``espeak-ng`` on PATH (Debian package ``espeak-ng``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

import world as W  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "tools/.gen/bindmini/world"
SEED = 2024
#: Objects per (shape, colour): training (seen combinations only), test of seen combinations,
#: test of unseen combinations.
TRAIN_PER_COMBO = 80
TEST_SEEN_PER_COMBO = 5
TEST_UNSEEN_PER_COMBO = 15
CAPTIONS_PER_OBJECT = 4

AUDIO_RATES = [8000, 16000, 22050, 44100, 48000]


def plan(seed: int) -> list[dict]:
    """The list of objects to make (no media yet), in a fixed order."""
    rng = np.random.default_rng(seed)
    unseen = set(W.UNSEEN)
    jobs = []
    for shape, colour in W.combos():
        is_seen = (shape, colour) not in unseen
        counts = {"train": TRAIN_PER_COMBO if is_seen else 0,
                  "test": TEST_SEEN_PER_COMBO if is_seen else TEST_UNSEEN_PER_COMBO}
        for split, n in counts.items():
            for _ in range(n):
                jobs.append({"split": split, "shape": shape, "colour": colour, "seen": is_seen})
    order = rng.permutation(len(jobs))
    jobs = [jobs[i] for i in order]
    for i, job in enumerate(jobs):
        job["id"] = f"{job['split']}-{i:05d}"
        job["number"] = i
    return jobs


def _ply(xyz: np.ndarray, rgb: np.ndarray, ascii_: bool) -> bytes:
    rgb8 = np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)
    header = (
        f"ply\nformat {'ascii' if ascii_ else 'binary_little_endian'} 1.0\n"
        "comment bind-mini world\n"
        f"element vertex {len(xyz)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    ).encode()
    if ascii_:
        lines = [f"{x:.5f} {y:.5f} {z:.5f} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(xyz, rgb8)]
        return header + ("\n".join(lines) + "\n").encode()
    rec = np.empty(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    rec["x"], rec["y"], rec["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rec["r"], rec["g"], rec["b"] = rgb8[:, 0], rgb8[:, 1], rgb8[:, 2]
    return header + rec.tobytes()


def make(job: dict, out: Path, seed: int) -> dict:
    """Renders one object's files; returns its index record."""
    rng = np.random.default_rng([seed, job["number"]])
    shape, colour = job["shape"], job["colour"]
    albedo = np.array(W.COLOURS[colour][0])
    size = ["small", "medium", "large"][int(rng.integers(3))]
    scale = {"small": rng.uniform(0.6, 0.8), "medium": rng.uniform(0.8, 1.05), "large": rng.uniform(1.05, 1.3)}[size]
    folder = out / job["split"]
    stem = job["id"]
    rec = dict(job)
    rec["size"] = size
    rec["captions"] = [W.phrase(rng, shape, colour, size, W.CAPTION_TEMPLATES, 0.5) for _ in range(CAPTIONS_PER_OBJECT)]

    # Image.
    short = int(rng.integers(112, 200))
    aspect = rng.uniform(0.75, 1.33)
    w, h = (int(short * aspect), short) if aspect >= 1 else (short, int(short / aspect))
    pixels = W.render(rng, shape, albedo, scale, w, h)
    img = Image.fromarray(pixels)
    if rng.random() < 0.6:
        name = f"{stem}.jpg"
        img.save(folder / name, quality=int(rng.integers(70, 95)))
    else:
        name = f"{stem}.png"
        img.save(folder / name)
    rec["image"] = f"{job['split']}/{name}"
    rec["image_size"] = [w, h]

    # Point cloud.
    xyz, rgb = W.point_cloud(rng, shape, albedo, scale, int(rng.integers(800, 4000)))
    kind = rng.choice(["ply_binary", "ply_ascii", "npy", "xyz"], p=[0.4, 0.15, 0.25, 0.2])
    if kind == "ply_binary" or kind == "ply_ascii":
        name = f"{stem}.ply"
        (folder / name).write_bytes(_ply(xyz, rgb, kind == "ply_ascii"))
    elif kind == "npy":
        name = f"{stem}.npy"
        np.save(folder / name, np.concatenate([xyz, rgb], 1).astype(np.float32))
    else:
        name = f"{stem}.xyz"
        rgb8 = np.clip(np.rint(rgb * 255), 0, 255).astype(int)
        lines = [f"{x:.5f} {y:.5f} {z:.5f} {r} {g} {b}" for (x, y, z), (r, g, b) in zip(xyz, rgb8)]
        (folder / name).write_text("\n".join(lines) + "\n")
    rec["cloud"] = f"{job['split']}/{name}"
    rec["cloud_format"] = str(kind)
    rec["cloud_points"] = int(len(xyz))

    # Speech.
    said = W.phrase(rng, shape, colour, size, W.SPEECH_TEMPLATES, 0.7)
    speech = W.speak(rng, said)
    wave, snr = W.noisy(rng, speech.wave, speech.sample_rate)
    rate = int(rng.choice(AUDIO_RATES))
    if rate != speech.sample_rate:
        wave = torchaudio.functional.resample(torch.from_numpy(wave), speech.sample_rate, rate).numpy()
    if rng.random() < 0.1:
        wave = np.stack([wave, wave * rng.uniform(0.6, 1.0) + rng.normal(0, 0.003, len(wave))], 1)
    wave = np.clip(wave, -1, 1).astype(np.float32)
    fmt = rng.choice(["wav16", "flac", "ogg", "wavf"], p=[0.35, 0.3, 0.2, 0.15])
    if fmt == "ogg" and rate < 16000:
        fmt = "flac"  # libvorbis is poor at 8 kHz
    ext, sf_format, subtype = {
        "wav16": ("wav", "WAV", "PCM_16"),
        "wavf": ("wav", "WAV", "FLOAT"),
        "flac": ("flac", "FLAC", "PCM_16"),
        "ogg": ("ogg", "OGG", "VORBIS"),
    }[str(fmt)]
    name = f"{stem}.{ext}"
    sf.write(folder / name, wave, rate, format=sf_format, subtype=subtype)
    rec["audio"] = f"{job['split']}/{name}"
    rec["speech"] = {"text": said, "voice": speech.voice, "speed": speech.speed, "pitch": speech.pitch,
                     "snr_db": round(snr, 1), "sample_rate": rate, "format": str(fmt),
                     "seconds": round(len(wave) / rate, 3)}
    return rec


def _work(args: tuple[dict, str, int]) -> dict:
    torch.set_num_threads(1)
    job, out, seed = args
    return make(job, Path(out), seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="only the first N objects (smoke test)")
    parser.add_argument("--split", choices=("train", "test"),
                        help="only this split (each object is seeded by its number, so its files are the same)")
    args = parser.parse_args()
    start = time.monotonic()
    jobs = plan(args.seed)
    if args.split:
        jobs = [j for j in jobs if j["split"] == args.split]
    if args.limit:
        jobs = jobs[: args.limit]
    for split in ("train", "test"):
        (args.out / split).mkdir(parents=True, exist_ok=True)
    records = []
    with multiprocessing.Pool(args.workers) as pool:
        for i, rec in enumerate(pool.imap(_work, [(j, str(args.out), args.seed) for j in jobs], chunksize=8)):
            records.append(rec)
            if (i + 1) % 500 == 0:
                print(f"  {i + 1}/{len(jobs)} objects, {time.monotonic() - start:.0f}s", flush=True)
    index = {
        "seed": args.seed,
        "shapes": list(W.SHAPES),
        "colours": list(W.COLOURS),
        "unseen": [list(c) for c in W.UNSEEN],
        "objects": records,
    }
    (args.out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {len(records)} objects ({size / 1e6:.1f} MB) to {args.out} in {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    main()
