#!/usr/bin/env python3
"""Video goldens: small files encoded by FFmpeg, embedded by the reference video pipeline.

    tools/.venv/bin/python tools/make_video_fixtures.py           # (re)write the goldens
    tools/.venv/bin/python tools/make_video_fixtures.py --check   # regenerate and compare

Writes, under ``tests/fixtures/video``:

* ``cases/*``: FFmpeg's ``testsrc2`` pattern (moving, coloured, with sharp edges) encoded by the
  ``ffmpeg`` command line (Debian's FFmpeg 5.1) in every container and codec bindery reads:
  H.264 in MP4 and MOV, H.265, VP8 and VP9 in WebM, FFV1 (lossless) in MKV, MJPEG in AVI,
  portrait, odd dimensions, 1 s long (shorter than one clip), variable frame rate,
  and one with an AAC audio track. Short and small on purpose (tens of KB each).
* ``bad/*``: a container declaring 10 hours, and an AVI whose codec tag names no codec.
* ``tracks/*``: videos with sound tracks of several codecs and sample formats, and each track
  extracted by the ``ffmpeg`` command line to WAV (``-vn``, 32-bit float where the decoder gives
  float, so nothing is rounded; 16-bit where the track is 16-bit PCM). A video's ``with_audio``
  embedding must equal the audio path's embedding of its WAV. No reference model is involved.
* ``cases.json``: per file, the reference ``imagebind.data.load_and_transform_video_data``
  (pytorchvideo ``EncodedVideo`` with the ``decord`` decoder, as the reference asks; decord 0.6.0
  bundles its own FFmpeg 4) through the fixture model's vision tower: the model's raw output
  (``embedding``: the mean of the 15 normalised clip embeddings, not renormalised), plus the
  frame count and frame rate decord saw; for a few, ``frames_embedding``: the ``frames`` sampler
  (2 frames spread over the whole video, one centre crop) built from the reference's own parts.

Needs ``ffmpeg`` on PATH with libx264, libx265 and libvpx (only for regenerating).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import goldens  # noqa: E402
from bindery_tools import reference as ref  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "video"
DEFAULT_MODEL = ROOT / "models" / "imagebind-fixture"

_BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-threads", "1", "-map_metadata", "-1"]
_X264 = ["-c:v", "libx264", "-preset", "medium", "-crf", "28", "-g", "10", "-pix_fmt", "yuv420p"]


def _src(w: int, h: int, seconds: float, rate: int = 10) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={w}x{h}:rate={rate}:duration={seconds}"]


#: name -> ffmpeg arguments between the inputs and the output file. The extension of the name
#: picks the container.
CASES: dict[str, list[str]] = {
    "h264.mp4": _src(160, 120, 4) + _X264,
    "h264.mov": _src(160, 120, 3) + _X264,
    "h265.mp4": _src(160, 120, 3)
    + ["-c:v", "libx265", "-preset", "fast", "-crf", "30", "-g", "10", "-pix_fmt", "yuv420p",
       "-x265-params", "log-level=error:pools=none:frame-threads=1", "-tag:v", "hvc1"],
    "vp8.webm": _src(160, 120, 3) + ["-c:v", "libvpx", "-b:v", "100k", "-g", "10"],
    "vp9.webm": _src(160, 120, 3) + ["-c:v", "libvpx-vp9", "-b:v", "150k", "-g", "10", "-row-mt", "0"],
    "ffv1.mkv": _src(64, 48, 2) + ["-c:v", "ffv1", "-pix_fmt", "yuv420p", "-g", "10"],
    "mjpeg.avi": _src(64, 48, 2) + ["-c:v", "mjpeg", "-q:v", "12", "-pix_fmt", "yuvj420p"],
    "portrait.mp4": _src(90, 160, 3) + _X264,
    "odd.mp4": _src(121, 93, 3) + _X264[:-1] + ["yuv444p"],
    "short.mp4": _src(160, 120, 1) + _X264,
    # Frame gaps of 0.125, 0.125 and 0.05 s, repeating: no constant frame rate.
    "vfr.mp4": _src(160, 120, 4)
    + ["-vf", "settb=1/1000,setpts=(2*N+0.5*mod(N\\,3))*0.05/TB", "-fps_mode", "passthrough", "-enc_time_base", "1/1000"] + _X264,
    "with_audio.mp4": _src(160, 120, 3)
    + ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=3"]
    + _X264 + ["-c:a", "aac", "-b:a", "48k", "-shortest"],
}


#: Bad videos (``bad/``), each refused by bindery; made from small encodes, some patched.
BAD: dict[str, list[str]] = {
    # Two frames 10 hours apart: the container declares a 10 h duration.
    "ten_hours.mkv": _src(64, 48, 2, rate=1)
    + ["-vf", "settb=1/1000,setpts=N*36000/TB", "-fps_mode", "passthrough", "-enc_time_base", "1/1000",
       "-c:v", "mjpeg", "-q:v", "20"],
    "mjpeg.avi": _src(64, 48, 1, rate=5) + ["-c:v", "mjpeg", "-q:v", "20"],
}


#: Videos with sound (``tracks/``): name -> (ffmpeg arguments, WAV codec of the extraction).
TRACKS: dict[str, tuple[list[str], str]] = {
    # AAC (float planar out of the decoder), 44.1 kHz mono, with the MP4 edit list's priming.
    "aac.mp4": (
        _src(64, 48, 2.5)
        + ["-f", "lavfi", "-i", "aevalsrc=0.5*sin(2*PI*(200+300*t)*t)+0.1*sin(2*PI*1234*t):s=44100:d=2.5"]
        + _X264 + ["-c:a", "aac", "-b:a", "64k", "-shortest"],
        "pcm_f32le",
    ),
    # 16-bit PCM (converted to float by swresample), 22.05 kHz stereo, in Matroska.
    "pcm_stereo.mkv": (
        _src(64, 48, 1.5)
        + ["-f", "lavfi", "-i",
           "aevalsrc=0.4*sin(2*PI*(300+200*t)*t)|0.3*sin(2*PI*523*t)+0.05*sin(2*PI*3000*t):s=22050:d=1.5"]
        + ["-c:v", "ffv1", "-pix_fmt", "yuv420p", "-g", "10", "-c:a", "pcm_s16le", "-shortest"],
        "pcm_s16le",
    ),
    # Opus (48 kHz, the pre-skip dropped by the decoder) in WebM, mono.
    "opus.webm": (
        _src(64, 48, 1.5)
        + ["-f", "lavfi", "-i", "aevalsrc=0.5*sin(2*PI*(440+100*sin(2*PI*t))*t):s=48000:d=1.5"]
        + ["-c:v", "libvpx", "-b:v", "50k", "-g", "10", "-c:a", "libopus", "-b:a", "32k", "-shortest"],
        "pcm_f32le",
    ),
}


def _tracks(out: Path) -> None:
    tracks = out / "tracks"
    tracks.mkdir(parents=True, exist_ok=True)
    for name, (args, wav_codec) in TRACKS.items():
        video = tracks / name
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, *_BITEXACT, str(video)]
        subprocess.run(cmd, check=True)
        wav = tracks / (Path(name).stem + ".wav")
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(video), "-vn", "-map", "0:a:0",
               "-c:a", wav_codec, "-fflags", "+bitexact", "-map_metadata", "-1", str(wav)]
        subprocess.run(cmd, check=True)
        print(f"tracks/{name}: {video.stat().st_size} bytes, {wav.name}: {wav.stat().st_size} bytes")


def _patched_avi(avi: bytes) -> dict[str, bytes]:
    """An AVI whose codec tag names no codec. (Patched frame sizes do not make a bad file: FFmpeg
    takes the size from the decoded frame; the pixel limit is tested with a small limit.)"""
    return {"unknown_codec.avi": avi.replace(b"MJPG", b"ZZZZ")}


def _bad(out: Path) -> None:
    bad = out / "bad"
    bad.mkdir(parents=True, exist_ok=True)
    for name, args in BAD.items():
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args, *_BITEXACT, str(bad / name)]
        subprocess.run(cmd, check=True)
    for name, data in _patched_avi((bad / "mjpeg.avi").read_bytes()).items():
        (bad / name).write_bytes(data)
    (bad / "mjpeg.avi").unlink()


def _encode(name: str, dest: Path) -> None:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *CASES[name], *_BITEXACT, str(dest)]
    subprocess.run(cmd, check=True)


def _from_path_ignoring_extra(original: Any) -> Any:
    # The reference passes ``sample_rate`` to ``EncodedVideo.from_path``, which pytorchvideo's
    # main branch forwards to the decoder and 0.1.5 (the release on PyPI) does not accept. With
    # ``decode_audio=False`` the decoder never reads it, so dropping it changes nothing.
    def from_path(file_path: str, decode_audio: bool = True, decoder: str = "pyav", **_: Any) -> Any:
        return original(file_path, decode_audio=decode_audio, decoder=decoder)

    return from_path


def reference_embedding(model: torch.nn.Module, path: Path) -> list[float]:
    """``load_and_transform_video_data`` of ``path`` through the vision tower, raw output."""
    encoded = ref.data.EncodedVideo
    with mock.patch.object(encoded, "from_path", _from_path_ignoring_extra(encoded.from_path)):
        clips = ref.data.load_and_transform_video_data([str(path)], "cpu")
    with torch.no_grad():
        out = model({ref.ModalityType.VISION: clips})[ref.ModalityType.VISION]
    return [float(v) for v in out[0]]


#: Cases also embedded with the ``frames`` sampler (one clip spread over the whole video).
FRAMES_CASES = ("h264.mp4", "portrait.mp4", "vfr.mp4")


def frames_reference_embedding(model: torch.nn.Module, path: Path) -> list[float]:
    """bindery's ``frames`` sampler built from the reference's own parts: decord's clip of the
    whole video (``get_clip(0, duration)``), ``UniformTemporalSubsample(2)``, ``/ 255``, the same
    ``ShortSideScale`` and ``NormalizeVideo``, and one centre crop (``SpatialCrop(224, 1)``),
    through the vision tower as one clip."""
    from pytorchvideo import transforms as pv_transforms

    encoded = ref.data.EncodedVideo
    video = encoded.from_path(str(path), decoder="decord", decode_audio=False)
    clip = video.get_clip(0, video.duration)["video"]
    frames = pv_transforms.UniformTemporalSubsample(num_samples=2)(clip) / 255.0
    norm = ref.data.NormalizeVideo(
        mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711)
    )
    frames = norm(pv_transforms.ShortSideScale(224)(frames))
    crops = ref.data.SpatialCrop(224, num_crops=1)([frames])
    with torch.no_grad():
        out = model({ref.ModalityType.VISION: torch.stack(crops)[None]})[ref.ModalityType.VISION]
    return [float(v) for v in out[0]]


def _decord_info(path: Path) -> dict[str, Any]:
    import decord

    reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    return {"frames": len(reader), "fps": float(reader.get_avg_fps())}


def generate(root: Path, model_dir: Path) -> None:
    """Encodes every case under ``root/video/cases`` and writes ``root/video/cases.json``."""
    del model_dir  # the PyTorch fixture model is the reference, not the ONNX export
    out = root / "video"
    cases_dir = out / "cases"
    cases_dir.mkdir(parents=True, exist_ok=True)
    model = ref.build_fixture_model()
    rows = []
    for name in CASES:
        path = cases_dir / name
        _encode(name, path)
        row = {"file": f"cases/{name}", **_decord_info(path), "embedding": reference_embedding(model, path)}
        if name in FRAMES_CASES:
            row["frames_embedding"] = frames_reference_embedding(model, path)
        print(f"{name}: {path.stat().st_size} bytes, {row['frames']} frames at {row['fps']:.3f} fps")
        rows.append(row)
    (out / "cases.json").write_text(json.dumps({"cases": rows}, indent=1) + "\n")
    _bad(out)
    _tracks(out)


def _owned(root: Path) -> set[str]:
    out = root / "video"
    names = {f"video/cases/{n}" for n in CASES}
    names |= {f"video/bad/{n}" for n in ("ten_hours.mkv", "unknown_codec.avi")}
    names |= {f"video/tracks/{n}" for n in TRACKS}
    names |= {f"video/tracks/{Path(n).stem}.wav" for n in TRACKS}
    return names | ({"video/cases.json"} if (out / "cases.json").exists() else set())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT.parent, help="fixtures root")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--tracks-only", action="store_true", help="only (re)write tracks/")
    args = parser.parse_args()
    if args.tracks_only:
        _tracks(args.out / "video")
        return
    if args.check:
        raise SystemExit(goldens.check_regenerated(args.out, args.model_dir, generate, _owned))
    generate(args.out, args.model_dir)


if __name__ == "__main__":
    main()
