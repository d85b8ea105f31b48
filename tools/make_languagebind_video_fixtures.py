#!/usr/bin/env python3
"""LanguageBind video front-end goldens where bindery's choices show: an odd crop margin and a
window of a longer video.

    tools/.venv-languagebind/bin/python tools/make_languagebind_video_fixtures.py           # (re)write
    tools/.venv-languagebind/bin/python tools/make_languagebind_video_fixtures.py --check   # compare

The reference is the PyPI ``languagebind`` 0.1.0 package (upstream PKU-YuanGroup/LanguageBind at
7070c53375661cdb235801176b564b45f96f0648): ``get_video_transform`` with
``video_decode_backend='decord'`` (``/ 255``, ``NormalizeVideo``, ``ShortSideScale(224)``,
``CenterCropVideo(224)``), its ``RandomHorizontalFlipVideo`` pinned off (bindery's rule), and
``load_and_transform_video``. The transforms need no model, so only tensors are written.

Writes, under ``tests/fixtures/video/languagebind``:

* ``margin_landscape.mp4`` (100 x 96) and ``margin_portrait.mp4`` (96 x 100): scaled to 224 on the
  short side, the long side is 233, a margin of 9 that ``CenterCropVideo``'s ``round(4.5)`` puts
  at 4 where pytorchvideo's ``ceil`` would put it at 5;
* ``tensors.json``: per case the reference tensor's shape and every STRIDE-th value. The cases
  are the two files whole, and a window (1.0 s to 3.0 s) of ``video/cases/h264.mp4``: the
  reference's own parts on the window's frames 10 to 29 as a video of their own (decord's
  ``get_batch`` of ``10 + np.linspace(0, 19, 8, dtype=int)``, then the transform), which is
  bindery's segment-mode rule for the ``frames`` sampler.

Needs ``ffmpeg`` on PATH with libx264 (only for regenerating the videos).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import goldens  # noqa: E402
from bindery_tools.languagebind import import_languagebind  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
OUT = "video/languagebind"
STRIDE = 997
NUM_FRAMES = 8

_BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-threads", "1", "-map_metadata", "-1"]
_X264 = ["-c:v", "libx264", "-preset", "medium", "-crf", "24", "-g", "10", "-pix_fmt", "yuv444p"]

#: name -> (width, height) of a 2 s ``testsrc2`` at 10 frames/s.
VIDEOS = {"margin_landscape.mp4": (100, 96), "margin_portrait.mp4": (96, 100)}

#: The window case: source (under tests/fixtures), start and end in seconds.
WINDOW = ("video/cases/h264.mp4", 1.0, 3.0)


def _processing() -> Any:
    import_languagebind()  # checks the environment and installs the torchvision alias
    from languagebind.video import processing_video

    return processing_video


def _transform(pv: Any) -> Any:
    config = SimpleNamespace(vision_config=SimpleNamespace(video_decode_backend="decord", num_frames=NUM_FRAMES))
    transform = pv.get_video_transform(config)
    for step in transform.transforms:
        if isinstance(step, pv.RandomHorizontalFlipVideo):
            step.p = 0.0  # bindery's rule: no flip
    return transform


def _case(case_id: str, file: str, tensor: Any, window: tuple[float, float] | None = None) -> dict:
    values = tensor.numpy().ravel()[::STRIDE]
    row: dict[str, Any] = {"id": case_id, "file": file}
    if window is not None:
        row["window"] = list(window)
    row.update({"shape": list(tensor.shape), "stride": STRIDE, "values": [float(v) for v in values]})
    return row


def _window_tensor(pv: Any, transform: Any, path: Path, start: float, end: float) -> Any:
    """The window's frames ``ceil(rate * start) .. ceil(rate * end)`` (capped at the frame count)
    read as ``load_and_transform_video`` reads a whole video."""
    import decord

    decord.bridge.set_bridge("torch")
    reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    rate = float(reader.get_avg_fps())
    first, last = int(np.ceil(rate * start)), min(int(np.ceil(rate * end)), len(reader))
    ids = first + np.linspace(0, last - first - 1, NUM_FRAMES, dtype=int)
    frames = reader.get_batch(ids).permute(3, 0, 1, 2)  # (T, H, W, C) -> (C, T, H, W)
    return transform(frames)


def generate(root: Path, model_dir: Path) -> None:
    """Encodes the videos under ``root/video/languagebind`` and writes their tensors."""
    del model_dir  # no model: front-end tensors only
    out = root / OUT
    out.mkdir(parents=True, exist_ok=True)
    pv = _processing()
    transform = _transform(pv)
    rows = []
    for name, (w, h) in VIDEOS.items():
        path = out / name
        src = ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate=10:duration=2"]
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *src, *_X264, *_BITEXACT, str(path)]
        subprocess.run(cmd, check=True)
        tensor = pv.load_and_transform_video(str(path), transform, video_decode_backend="decord", num_frames=NUM_FRAMES)
        rows.append(_case(Path(name).stem, f"{OUT}/{name}", tensor))
    file, start, end = WINDOW
    tensor = _window_tensor(pv, transform, FIXTURES / file, start, end)
    rows.append(_case("h264_window", file, tensor, (start, end)))
    (out / "tensors.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{OUT}/tensors.json: {len(rows)} cases")


def _owned(root: Path) -> set[str]:
    return {f"{OUT}/{n}" for n in VIDEOS} | {f"{OUT}/tensors.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=FIXTURES, help="fixtures root")
    args = parser.parse_args()
    if args.check:
        raise SystemExit(goldens.check_regenerated(args.out, ROOT, generate, _owned))
    generate(args.out, ROOT)


if __name__ == "__main__":
    main()
