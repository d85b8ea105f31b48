#!/usr/bin/env python3
"""Throughput of bindery against the reference ImageBind pipeline, on the same machine and inputs.

    tools/.venv/bin/python tools/bench_reference.py [--duration 10] [--warmup 2] [--batch 8]
        [--modalities text,image,audio,point_cloud] [--concurrency 1,2,4,8]
        [--rounds 3] [--bindery target/release/bindery] [--model models/imagebind-fixture]
        [--out FILE.json]

Build bindery first (``cargo build --release``). One run:

1. writes a fixed, seeded input set into a scratch folder: 256 captions of mixed lengths, 64 JPEGs
   of 1280x720, 32 WAVs of 10 s at 44.1 kHz stereo, and, when the model has a ``[point_cloud]``
   tower, 32 binary PLY clouds of 20000 coloured points;
2. reference: per modality, the reference preprocessing (``imagebind.data.load_and_transform_text``
   / ``load_and_transform_vision_data`` / ``load_and_transform_audio_data`` with ``soundfile``
   decoding; for point clouds ``plyfile`` + the reference functions of ``make_point_fixtures.py``)
   followed by Python ``onnxruntime`` on the model's ONNX tower, in batches, in this one process,
   looping over the inputs for ``--duration`` seconds after ``--warmup`` seconds; then the same
   loop without the ONNX call (preprocessing alone);
3. bindery: ``bindery serve`` as a child process on a free local port, driven by ``bindery load``
   with the same files, the same batch size and a sweep of closed-loop concurrency levels; the
   best level counts;
4. steps 2 and 3 alternate, modality by modality, for ``--rounds`` rounds against one running
   server, so that both sides see the same phases of a machine whose speed drifts (a virtual
   machine's can change by 20 % within a minute); each round gives a ratio;
5. prints a markdown table (median items/s over the rounds, and the median of the per-round
   ratios with their range) and writes every figure, the machine (CPU, core count, load
   average) and the package versions to ``--out``.

Text is measured twice on the reference side: ``load_and_transform_text`` as published builds a
new ``SimpleTokenizer`` (reading the BPE vocabulary) on every call, which costs far more than the
tokenisation of a batch; the second row reuses one tokenizer, which is what a long-running
Python service would do. Both call the unmodified reference function.

Both sides use every core by default (torch and onnxruntime defaults on the reference side,
``bindery serve``'s default intra-op threads), and ``bindery load`` shares the machine with the
server, so run it on an otherwise idle machine for figures worth quoting.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import numpy as np
import onnxruntime as ort
import soundfile as sf
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The fixture generators hold the reference calls and the signal/picture builders reused here;
# importing them also installs the torchvision alias ``imagebind.data`` needs.
import make_audio_fixtures as audio_fx  # noqa: E402
import make_fixtures as image_fx  # noqa: E402
from bindery_tools import reference as ref  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "imagebind-fixture"
DEFAULT_BINDERY = ROOT / "target" / "release" / "bindery"
#: Modalities in manifest order, as ``bindery load --mix`` names them.
MODALITIES = ("text", "image", "audio", "point_cloud")

N_TEXTS, N_IMAGES, N_AUDIO, N_POINTS = 256, 64, 32, 32
IMAGE_SIZE = (1280, 720)
AUDIO_RATE, AUDIO_SECONDS = 44_100, 10.0
CLOUD_POINTS = 20_000
#: Longest wait for ``bindery serve`` to load its models and listen.
SERVE_TIMEOUT_S = 300.0

# ---------------------------------------------------------------------------------- inputs

_WORDS = (
    "a the photo of dog cat bird car red blue green small large old young man woman child "
    "sitting standing running on in under near beside with and street park beach forest "
    "mountain river city night morning sunset snow rain sofa table kitchen window tree flower "
    "yellow bright dark wooden stone glass bicycle train boat plane two three several people "
    "playing eating looking holding reading walking over through between behind colourful "
    "quiet busy crowded empty ancient modern tiny huge fluffy shiny"
).split()


def make_captions(n: int, seed: int = 7) -> list[str]:
    """``n`` seeded captions: mostly short, some long, a few past the 77-token context."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        bucket = i % 8
        if bucket < 4:
            words = int(rng.integers(2, 9))
        elif bucket < 7:
            words = int(rng.integers(10, 31))
        else:
            words = int(rng.integers(60, 121))  # truncated by the tokenizer
        text = " ".join(rng.choice(_WORDS, words))
        out.append(text[0].upper() + text[1:] + ".")
    return out


def write_inputs(root: Path, modalities: list[str]) -> dict[str, list[Path]]:
    """Writes each modality's input files under ``root/<modality>``; returns them in order."""
    files: dict[str, list[Path]] = {}
    for kind in modalities:
        (root / kind).mkdir(parents=True)
    if "text" in modalities:
        path = root / "text" / "captions.txt"
        # `bindery load` takes one text per line of a .txt file.
        path.write_text("\n".join(make_captions(N_TEXTS)) + "\n")
        files["text"] = [path]
    if "image" in modalities:
        files["image"] = []
        for i in range(N_IMAGES):
            path = root / "image" / f"img_{i:03d}.jpg"
            w, h = IMAGE_SIZE
            # Smooth gradients, a few hard-edged shapes and sensor-like noise.
            pixels = image_fx._content(w, h, seed=1000 + i, noise=3.0)
            Image.fromarray(pixels, "RGB").save(path, "JPEG", quality=90)
            files["image"].append(path)
    if "audio" in modalities:
        files["audio"] = []
        rng = np.random.default_rng(11)
        for i in range(N_AUDIO):
            path = root / "audio" / f"clip_{i:03d}.wav"
            n = int(AUDIO_RATE * AUDIO_SECONDS)
            left = audio_fx._sweep(AUDIO_RATE, AUDIO_SECONDS, 50.0 + 10 * i, 12_000.0, 0.4)
            right = audio_fx._tone(AUDIO_RATE, AUDIO_SECONDS, 220.0 + 35 * i, 0.3)
            stereo = np.stack([left, right], 1) + audio_fx._noise(rng, 2 * n, 0.05).reshape(n, 2)
            sf.write(str(path), np.clip(stereo, -1, 1), AUDIO_RATE, subtype="PCM_16")
            files["audio"].append(path)
    if "point_cloud" in modalities:
        import make_point_fixtures as point_fx

        files["point_cloud"] = []
        types = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
        for i in range(N_POINTS):
            rng = np.random.default_rng(5000 + i)
            xyz = point_fx.rng_cloud(rng, CLOUD_POINTS, scale=1.0 + 0.1 * i).astype(np.float32)
            rgb = point_fx.colors_u8(rng, xyz)
            extra = {"red": rgb[:, 0], "green": rgb[:, 1], "blue": rgb[:, 2]}
            path = root / "point_cloud" / f"cloud_{i:03d}.ply"
            path.write_bytes(point_fx.ply_bytes([point_fx.vertex_element(xyz, types, extra)], False, "<"))
            files["point_cloud"].append(path)
    return files


# ---------------------------------------------------------------------------------- reference


@dataclass
class Variant:
    """One reference pipeline: a row of the table."""

    modality: str
    label: str
    inputs: list[Any]
    #: A batch of inputs -> the tower's feeds (input name -> array).
    preprocess: Callable[[list[Any]], dict[str, np.ndarray]]


def text_variants(captions: list[str], spec: dict) -> list[Variant]:
    def feeds(batch: list[str]) -> dict[str, np.ndarray]:
        return {spec["input"]: ref.data.load_and_transform_text(batch, "cpu").numpy()}

    tokenizer = ref.data.SimpleTokenizer(bpe_path=ref.data.return_bpe_path())

    def feeds_reused(batch: list[str]) -> dict[str, np.ndarray]:
        # Same reference function, with its per-call tokenizer construction replaced by one
        # shared instance.
        with mock.patch.object(ref.data, "SimpleTokenizer", lambda **_: tokenizer):
            return feeds(batch)

    return [
        Variant("text", "text (reference as published: new tokenizer per call)", captions, feeds),
        Variant("text", "text (tokenizer built once)", captions, feeds_reused),
    ]


def image_variant(paths: list[Path], spec: dict) -> Variant:
    def feeds(batch: list[Path]) -> dict[str, np.ndarray]:
        pixels = ref.data.load_and_transform_vision_data([str(p) for p in batch], "cpu")
        return {spec["input"]: pixels.numpy()}

    return Variant("image", "image", paths, feeds)


def audio_variant(paths: list[Path], spec: dict) -> Variant:
    def feeds(batch: list[Path]) -> dict[str, np.ndarray]:
        # load_and_transform_audio_data handles a list one file at a time and stacks; the
        # fixture helper does one file with soundfile decoding (torchaudio 2.11 needs torchcodec).
        clips = [audio_fx.reference_preprocess(p, "soundfile") for p in batch]
        return {spec["input"]: torch.stack(clips).numpy()}

    return Variant("audio", "audio", paths, feeds)


def point_variant(paths: list[Path], spec: dict) -> Variant:
    import make_point_fixtures as point_fx

    npoints, groups, k = point_fx.NPOINTS, point_fx.GROUPS, point_fx.K

    def one(path: Path) -> tuple[np.ndarray, np.ndarray]:
        xyz, rgb, _ = point_fx.read_ply(path.read_bytes())
        xyz, rgb, _ = point_fx.clean(xyz, rgb)
        # The steps of make_point_fixtures.reference(), without the stable sort it runs beside
        # topk to pin the order of tied neighbours for the goldens; PointBERT's grouping is topk.
        pick = point_fx.fps(xyz, npoints) if len(xyz) > npoints else np.arange(npoints) % len(xyz)
        pts = point_fx.pc_normalize(xyz[pick])
        colors = rgb[pick] if rgb is not None else np.full((npoints, 3), point_fx.DEFAULT_COLOR, np.float32)
        centers = pts[point_fx.fps(pts, groups)]
        t_pts, t_ctr = torch.from_numpy(pts), torch.from_numpy(centers)
        dist = ((t_pts[None, :, :] - t_ctr[:, None, :]) ** 2).sum(-1)
        knn = torch.topk(dist, k, dim=-1, largest=False, sorted=True).indices.numpy()
        rel = pts[knn] - centers[:, None, :]
        return np.concatenate([rel, colors[knn]], axis=-1).astype(np.float32), centers

    def feeds(batch: list[Path]) -> dict[str, np.ndarray]:
        done = [one(p) for p in batch]
        return {
            spec["input"]: np.stack([n for n, _ in done]),
            spec["preprocess"]["center_input"]: np.stack([c for _, c in done]),
        }

    return Variant("point_cloud", "point_cloud", paths, feeds)


def timed_loop(step: Callable[[list[Any]], None], inputs: list[Any], batch: int, warmup: float,
               duration: float) -> dict[str, float]:
    """Runs ``step`` on consecutive batches (cycling through ``inputs``) for ``warmup`` seconds,
    then measures whole batches until ``duration`` seconds have passed (at least one each)."""
    cursor = 0

    def next_batch() -> list[Any]:
        nonlocal cursor
        out = [inputs[(cursor + j) % len(inputs)] for j in range(batch)]
        cursor = (cursor + batch) % len(inputs)
        return out

    end = time.perf_counter() + warmup
    while True:
        step(next_batch())
        if time.perf_counter() >= end:
            break
    start = time.perf_counter()
    batches = 0
    while True:
        step(next_batch())
        batches += 1
        elapsed = time.perf_counter() - start
        if elapsed >= duration:
            break
    items = batches * batch
    return {"items": items, "batches": batches, "elapsed_s": elapsed, "items_per_s": items / elapsed}


def run_reference(variant: Variant, session: ort.InferenceSession, output: str, batch: int,
                  warmup: float, duration: float) -> dict[str, Any]:
    def end_to_end(b: list[Any]) -> None:
        session.run([output], variant.preprocess(b))

    def preprocess_only(b: list[Any]) -> None:
        variant.preprocess(b)

    print(f"reference {variant.label}: end to end ...", file=sys.stderr, flush=True)
    full = timed_loop(end_to_end, variant.inputs, batch, warmup, duration)
    print(f"reference {variant.label}: preprocessing only ...", file=sys.stderr, flush=True)
    pre = timed_loop(preprocess_only, variant.inputs, batch, warmup, duration)
    return {"modality": variant.modality, "label": variant.label, "end_to_end": full,
            "preprocess_only": pre}


# ---------------------------------------------------------------------------------- bindery


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def bindery_server(binary: Path, model_dir: Path, scratch: Path) -> Iterator[str]:
    """Runs ``bindery serve`` on ``model_dir`` alone; yields its URL; always stops it."""
    models = scratch / "models"
    models.mkdir()
    # `serve` loads every model folder under --models: give it a folder holding only this one.
    (models / model_dir.name).symlink_to(model_dir.resolve())
    port = free_port()
    log_path = scratch / "serve.log"
    with open(log_path, "wb") as log:
        child = subprocess.Popen(
            [str(binary), "serve", "--models", str(models), "--listen", f"127.0.0.1:{port}",
             "--data-dir", str(scratch / "data")],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + SERVE_TIMEOUT_S
            while True:
                if child.poll() is not None:
                    raise RuntimeError(f"bindery serve exited with {child.returncode}:\n"
                                       + log_path.read_text(errors="replace")[-3000:])
                try:
                    # The server binds only after every tower is loaded, so a connection means ready.
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"bindery serve not listening after {SERVE_TIMEOUT_S:.0f} s")
                    time.sleep(0.2)
            yield f"http://127.0.0.1:{port}"
        finally:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def run_bindery_load(binary: Path, url: str, modality: str, payloads: Path, batch: int,
                     levels: list[int], warmup: float, duration: float, scratch: Path) -> dict[str, Any]:
    out = scratch / f"load_{modality}.json"
    cmd = [
        str(binary), "load", "--server", url, "--mix", f"{modality}=1", "--payloads", str(payloads),
        "--batch", str(batch), "--concurrency", ",".join(map(str, levels)),
        "--warmup", f"{round(warmup * 1000)}ms", "--duration", f"{round(duration * 1000)}ms",
        # The same payloads repeat: without this the server's embedding cache would answer them.
        "--no-cache", "--json", str(out), "--quiet",
    ]
    print(f"bindery {modality}: concurrency {','.join(map(str, levels))} ...", file=sys.stderr, flush=True)
    limit = len(levels) * (warmup + duration + 60) + 60
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit)
    if done.returncode != 0:
        raise RuntimeError(f"bindery load ({modality}) exited with {done.returncode}:\n{done.stderr[-3000:]}")
    runs = json.loads(out.read_text())
    runs = runs if isinstance(runs, list) else [runs]
    best = max(runs, key=lambda r: r["items_per_s"])
    return {
        "modality": modality,
        "best_items_per_s": best["items_per_s"],
        "best_concurrency": best["concurrency"],
        "errors": sum(r["errors"] for r in runs),
        "runs": runs,
    }


# ---------------------------------------------------------------------------------- report


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(binary: Path) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        bindery_version = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                                         check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        bindery_version = None
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
        "versions": {d: _version(d) for d in (
            "imagebind-unofficial", "torch", "torchvision", "torchaudio", "onnxruntime", "numpy",
            "pillow", "soundfile", "plyfile", "fpsample")},
        "bindery": {
            "binary": str(binary),
            "version": bindery_version,
            "binary_mtime": (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(binary.stat().st_mtime))
                             if binary.is_file() else None),
            "git_head": git.stdout.strip() or None,
            # The binary may be older than the tree: compare its time with the last changes.
            "tracked_changes": bool(dirty.stdout.strip()),
        },
    }


def _loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def summarise(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per reference variant: median items/s of each side over the rounds, and the median (and
    range) of the per-round ratios bindery / reference."""
    rounds = result["settings"]["rounds"]
    out = []
    for label in dict.fromkeys(r["label"] for r in result["reference"]):
        refs = sorted((r for r in result["reference"] if r["label"] == label), key=lambda r: r["round"])
        modality = refs[0]["modality"]
        binds = {b["round"]: b for b in result["bindery"] if b["modality"] == modality}
        row: dict[str, Any] = {
            "label": label, "modality": modality,
            "reference_items_per_s": statistics.median(r["end_to_end"]["items_per_s"] for r in refs),
            "reference_preprocess_items_per_s": statistics.median(
                r["preprocess_only"]["items_per_s"] for r in refs),
        }
        if len(binds) == rounds:
            ratios = [binds[r["round"]]["best_items_per_s"] / r["end_to_end"]["items_per_s"] for r in refs]
            row.update(
                bindery_items_per_s=statistics.median(b["best_items_per_s"] for b in binds.values()),
                best_concurrency=[binds[r]["best_concurrency"] for r in sorted(binds)],
                errors=sum(b["errors"] for b in binds.values()),
                ratios=ratios, ratio=statistics.median(ratios))
        out.append(row)
    return out


def markdown(result: dict[str, Any]) -> str:
    rounds = result["settings"]["rounds"]
    lines = [
        "| modality | reference items/s | reference preprocessing only items/s "
        "| bindery items/s (best concurrency per round) | bindery / reference (range) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in result["summary"]:
        if "ratio" in row:
            errs = f", {row['errors']} errors" if row["errors"] else ""
            cell = f"{row['bindery_items_per_s']:.1f} ({','.join(map(str, row['best_concurrency']))}{errs})"
            ratio = f"{row['ratio']:.2f}x ({min(row['ratios']):.2f}-{max(row['ratios']):.2f})"
        else:
            cell, ratio = "-", "-"
        lines.append(f"| {row['label']} | {row['reference_items_per_s']:.1f} "
                     f"| {row['reference_preprocess_items_per_s']:.1f} | {cell} | {ratio} |")
    if result["bindery"]:
        levels = result["settings"]["concurrency"]
        lines += ["", f"bindery sweep (items/s, p50 ms; median over {rounds} rounds):", "",
                  "| modality | " + " | ".join(f"c={c}" for c in levels) + " |",
                  "|---|" + "---:|" * len(levels)]
        for modality in dict.fromkeys(b["modality"] for b in result["bindery"]):
            runs = [b["runs"] for b in result["bindery"] if b["modality"] == modality]
            cells = []
            for i in range(len(levels)):
                at = [r[i] for r in runs]
                rate = statistics.median(x["items_per_s"] for x in at)
                p50 = statistics.median(x["latency_ms"]["p50"] if x.get("latency_ms") else math.nan for x in at)
                cells.append(f"{rate:.1f} ({p50:.0f} ms)")
            lines.append(f"| {modality} | " + " | ".join(cells) + " |")
    m = result["machine"]
    lines += ["", f"{m['cpu_model']}, {m['nproc']} cores, load average {result['loadavg_start']} -> "
              f"{result['loadavg_end']}; batch {result['settings']['batch']}, "
              f"{result['settings']['duration_s']} s after {result['settings']['warmup_s']} s warm-up, "
              f"{rounds} rounds"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- main


def main() -> None:
    try:
        run(sys.argv[1:])
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        sys.exit(f"bench_reference: {e}")


def run(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default 10)")
    ap.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per run (default 2)")
    ap.add_argument("--batch", type=int, default=8, help="inputs per batch / request (default 8)")
    ap.add_argument("--modalities", default=None,
                    help="comma-separated subset of text,image,audio,point_cloud (default: every "
                         "tower of the model)")
    ap.add_argument("--concurrency", default="1,2,4,8", help="bindery load levels (default 1,2,4,8)")
    ap.add_argument("--bindery", type=Path, default=DEFAULT_BINDERY, help="bindery binary")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model folder (model.toml + ONNX)")
    ap.add_argument("--out", type=Path, default=None, help="write every figure as JSON here")
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternations of reference and bindery per modality (default 3)")
    ap.add_argument("--skip-bindery", action="store_true", help="reference side only")
    args = ap.parse_args(argv)
    if args.batch < 1 or args.duration <= 0 or args.warmup < 0 or args.rounds < 1:
        ap.error("--batch and --rounds must be >= 1, --duration > 0, --warmup >= 0")
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not levels or min(levels) < 1:
        ap.error("--concurrency takes positive integers")
    if not args.skip_bindery and not args.bindery.is_file():
        ap.error(f"{args.bindery} not found; build it with `cargo build --release`")

    manifest = tomllib.loads((args.model / "model.toml").read_text())
    available = [m for m in MODALITIES if m in manifest]
    wanted = args.modalities.split(",") if args.modalities else available
    unknown = [m for m in wanted if m not in available]
    if unknown:
        ap.error(f"{', '.join(unknown)}: not a tower of {args.model} (has {', '.join(available)})")

    # SIGTERM ends the run through the `finally` blocks, so the server child is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    result: dict[str, Any] = {
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "batch": args.batch,
                     "concurrency": levels, "rounds": args.rounds, "modalities": wanted, "model": str(args.model),
                     "inputs": {"text": N_TEXTS, "image": f"{N_IMAGES} JPEG {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}",
                                "audio": f"{N_AUDIO} WAV {AUDIO_SECONDS:g} s {AUDIO_RATE} Hz stereo",
                                "point_cloud": f"{N_POINTS} PLY {CLOUD_POINTS} points, rgb"}},
        "machine": machine_info(args.bindery),
        "loadavg_start": _loadavg(),
        "reference": [],
        "bindery": [],
    }
    with tempfile.TemporaryDirectory(prefix="bindery-bench-") as tmp:
        scratch = Path(tmp)
        print(f"writing inputs to {scratch}", file=sys.stderr, flush=True)
        files = write_inputs(scratch / "inputs", wanted)

        opts = ort.SessionOptions()
        result["machine"]["onnxruntime_session"] = {
            "intra_op_num_threads": opts.intra_op_num_threads or "default (physical cores)",
            "graph_optimization_level": str(opts.graph_optimization_level),
        }
        variants: dict[str, tuple[ort.InferenceSession, list[Variant]]] = {}
        for modality in wanted:
            spec = manifest[modality]
            session = ort.InferenceSession(str(args.model / spec["onnx"]), opts,
                                           providers=["CPUExecutionProvider"])
            if modality == "text":
                captions = files["text"][0].read_text().splitlines()
                variants[modality] = (session, text_variants(captions, spec))
            elif modality == "image":
                variants[modality] = (session, [image_variant(files["image"], spec)])
            elif modality == "audio":
                variants[modality] = (session, [audio_variant(files["audio"], spec)])
            else:
                variants[modality] = (session, [point_variant(files["point_cloud"], spec)])

        with contextlib.ExitStack() as stack:
            url = None if args.skip_bindery else stack.enter_context(
                bindery_server(args.bindery, args.model, scratch))
            for rnd in range(args.rounds):
                for modality in wanted:
                    session, vs = variants[modality]
                    for v in vs:
                        ref_run = run_reference(v, session, manifest[modality]["output"], args.batch,
                                                args.warmup, args.duration)
                        result["reference"].append({"round": rnd, **ref_run})
                    if url is not None:
                        b_run = run_bindery_load(args.bindery, url, modality, scratch / "inputs" / modality,
                                                 args.batch, levels, args.warmup, args.duration, scratch)
                        result["bindery"].append({"round": rnd, **b_run})
    result["loadavg_end"] = _loadavg()
    result["summary"] = summarise(result)

    table = markdown(result)
    print(table)
    if args.out:
        result["table_markdown"] = table
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
