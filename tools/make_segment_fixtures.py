#!/usr/bin/env python3
"""Segment-mode goldens: the reference pipelines run on time windows of one video and one audio
file.

    tools/.venv/bin/python tools/make_segment_fixtures.py
    tools/.venv/bin/python tools/make_segment_fixtures.py --check   # regenerate into a temp dir, compare

Writes, under ``tests/fixtures/video/segments``:

* ``long.mp4``: 11.5 s of FFmpeg's ``testsrc2`` (H.264, 10 fps, 64x48);
* ``long.wav``: 6 s of 16-bit stereo PCM at 22.05 kHz (a sweep, a tone and noise);
* ``ten_minutes.mp4``: 10 minutes at 1 fps, 32x24, black but for FFmpeg's ``testsrc2`` from 5:00
  to 5:30 (the moment a collection search must find), and ``moment.mp4``: 4 s of that pattern
  alone (the query). Tiny on purpose (about 20 KB); no goldens.
* ``segments.json``: per file and per (``segment_seconds``, ``hop_seconds``), the windows
  (bindery's rule: window ``k`` starts at ``k * hop``, ends ``segment`` later or at the end, and
  the windows stop after the first that reaches the end) and each window's reference embedding
  through the fixture model (raw output):

  - video: ``imagebind.data.load_and_transform_video_data`` itself, over a view of the decord
    video that *is* the window: its ``duration`` is the window's and ``get_clip(s, e)`` reads
    ``get_clip(start + s, min(start + e, end))`` of the file, so the reference's own
    ``ConstantClipsPerVideoSampler`` places the clips within the window;
  - audio: the WAV's integer samples cut at ``round(t * 22050)`` (no re-encoding: the cut is
    written as 16-bit PCM again) through ``load_and_transform_audio_data``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_audio_fixtures as audio_fx  # noqa: E402
import make_video_fixtures as video_fx  # noqa: E402
from bindery_tools import goldens  # noqa: E402
from bindery_tools import reference as ref  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
#: What this script writes, relative to the fixtures root.
SEGMENTS = "video/segments"
OWNED = [f"{SEGMENTS}/{f}" for f in ("long.mp4", "long.wav", "ten_minutes.mp4", "moment.mp4")] + [
    "video/segments.json"
]

VIDEO_ARGS = video_fx._src(64, 48, 11.5) + video_fx._X264
VIDEO_CONFIGS = [(4.0, 3.0), (5.0, 0.0)]
AUDIO_RATE = 22050
AUDIO_CONFIGS = [(2.5, 0.0), (3.0, 1.5)]


def windows(duration: float, segment: float, hop: float) -> list[tuple[float, float]]:
    """bindery's segment windows (``src/modality/segments.rs``)."""
    hop = hop or segment
    out = []
    k = 0
    while True:
        start = k * hop
        if start >= duration:
            break
        end = min(start + segment, duration)
        out.append((start, end))
        if end >= duration:
            break
        k += 1
    return out


class WindowView:
    """A decord ``EncodedVideo`` seen through one window of it."""

    def __init__(self, inner: Any, start: float, end: float) -> None:
        self.inner, self.start, self.end = inner, start, end

    @property
    def duration(self) -> float:
        return self.end - self.start

    def get_clip(self, start_sec: Any, end_sec: Any) -> Any:
        return self.inner.get_clip(self.start + start_sec, min(self.start + end_sec, self.end))


def video_window_embedding(model: torch.nn.Module, path: Path, start: float, end: float) -> list[float]:
    encoded = ref.data.EncodedVideo
    original = encoded.from_path

    def from_path(file_path: str, **_: Any) -> Any:
        return WindowView(original(file_path, decoder="decord", decode_audio=False), start, end)

    with mock.patch.object(encoded, "from_path", from_path):
        clips = ref.data.load_and_transform_video_data([str(path)], "cpu")
    with torch.no_grad():
        out = model({ref.ModalityType.VISION: clips})[ref.ModalityType.VISION]
    return [float(v) for v in out[0]]


def audio_window_embedding(tower: torch.nn.Module, samples: np.ndarray, a: int, b: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        cut = Path(tmp) / "cut.wav"
        sf.write(cut, samples[a:b], AUDIO_RATE, subtype="PCM_16")
        t = audio_fx.reference_preprocess(cut, "soundfile")
    with torch.no_grad():
        return [float(v) for v in tower(t.unsqueeze(0))[0]]


def _moment_videos(out: Path) -> None:
    common = ["-c:v", "libx264", "-preset", "medium", "-crf", "28", "-g", "10", *video_fx._BITEXACT]
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "lavfi", "-i", "color=c=black:s=32x24:r=1:d=300",
           "-f", "lavfi", "-i", "testsrc2=s=32x24:r=1:d=30",
           "-f", "lavfi", "-i", "color=c=black:s=32x24:r=1:d=270",
           "-filter_complex", "[0][1][2]concat=n=3:v=1:a=0,format=yuv420p", *common, str(out / "ten_minutes.mp4")]
    subprocess.run(cmd, check=True)
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
           "testsrc2=s=32x24:r=1:d=4", "-vf", "format=yuv420p", *common, str(out / "moment.mp4")]
    subprocess.run(cmd, check=True)


def generate(root: Path) -> None:
    """Writes every file of ``OWNED`` under the fixtures root ``root``."""
    out = root / SEGMENTS
    out.mkdir(parents=True, exist_ok=True)
    _moment_videos(out)
    model = ref.build_fixture_model()
    video = out / "long.mp4"
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *VIDEO_ARGS, *video_fx._BITEXACT, str(video)]
    subprocess.run(cmd, check=True)
    info = video_fx._decord_info(video)
    duration = info["frames"] / info["fps"]
    rows: list[dict[str, Any]] = []
    for segment, hop in VIDEO_CONFIGS:
        spans = windows(duration, segment, hop)
        embeddings = [video_window_embedding(model, video, s, e) for s, e in spans]
        rows.append({"file": "segments/long.mp4", "modality": "video", "segment_seconds": segment,
                     "hop_seconds": hop, "windows": spans, "embeddings": embeddings})
        print(f"long.mp4 {segment}/{hop}: {spans}")

    seconds = 6.0
    n = int(seconds * AUDIO_RATE)
    t = np.arange(n) / AUDIO_RATE
    rng = np.random.default_rng(7)
    left = 0.4 * np.sin(2 * np.pi * (200 * t + 150 * t * t)) + 0.05 * rng.standard_normal(n)
    right = 0.3 * np.sin(2 * np.pi * 660 * t) * (t > 3.0) + 0.05 * rng.standard_normal(n)
    pcm = np.clip(np.stack([left, right], axis=1), -1, 1)
    pcm = (pcm * 32767).round().astype(np.int16)
    wav = out / "long.wav"
    sf.write(wav, pcm, AUDIO_RATE, subtype="PCM_16")
    samples, _ = sf.read(wav, dtype="int16", always_2d=True)
    tower = ref.Tower(model, ref.ModalityType.AUDIO)
    for segment, hop in AUDIO_CONFIGS:
        spans = windows(len(samples) / AUDIO_RATE, segment, hop)
        embeddings = []
        for s, e in spans:
            a, b = round(s * AUDIO_RATE), min(round(e * AUDIO_RATE), len(samples))
            embeddings.append(audio_window_embedding(tower, samples, a, b))
        rows.append({"file": "segments/long.wav", "modality": "audio", "segment_seconds": segment,
                     "hop_seconds": hop, "windows": spans, "embeddings": embeddings})
        print(f"long.wav {segment}/{hop}: {spans}")
    (out.parent / "segments.json").write_text(json.dumps({"cases": rows}, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if args.check:
        raise SystemExit(
            goldens.check_regenerated(
                FIXTURES,
                ROOT / "models",
                lambda root, _models: generate(root),
                lambda root: {n for n in OWNED if (root / n).is_file()},
            )
        )
    generate(FIXTURES)


if __name__ == "__main__":
    main()
