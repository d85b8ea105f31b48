#!/usr/bin/env python3
"""Goldens for lossy (and, as controls, lossless) audio decoded exactly as the reference decodes it.

    tools/.venv/bin/python tools/make_lossy_audio_fixtures.py           # (re)write the goldens
    tools/.venv/bin/python tools/make_lossy_audio_fixtures.py --check   # regenerate and compare

The reference loads audio with ``torchaudio.load``, which decodes through FFmpeg. Its reference
decode here is the ``ffmpeg`` command line (Debian's FFmpeg 5.1: ``apt-get install ffmpeg``)
decoding to float WAV, as ``make_audio_fixtures.load_ffmpeg`` does, so gapless trimming (MP4 edit
lists, LAME headers, Ogg granules, Opus pre-skip, WebM DiscardPadding) is FFmpeg's.

Writes, under ``tests/fixtures/audio_lossy``:

* ``cases/*``: one source recording (``espeak-ng`` speech over a quiet chord and a noise bed;
  the right channel holds the speech later and a different chord) at 8, 16, 44.1 and 48 kHz,
  mono and stereo, long (3.2 s) and short (15 ms, under one frame of every codec), encoded with
  FFmpeg's own encoders: ``aac`` (.m4a), ``libmp3lame`` (.mp3), ``libvorbis`` (.ogg),
  ``libopus`` (.opus and .webm); and FLAC and WAV controls;
* ``cases.json``: per file, FFmpeg's decode (rate, channels, frames and every
  ``WAVE_STRIDE``-th sample of each channel) and the reference preprocessing of that decode
  (``make_audio_fixtures.reference_preprocess``) through the fixture model's audio tower
  (``embedding``), or, where the reference refuses the decoded audio (shorter than one 25 ms
  filterbank window after resampling), the error it raised (``reference_error``).

Besides the synthesized source, ``cases/*_real_*`` encode a real recording: ALSA's
``Front_Center.wav`` (a voice saying "front center", 48 kHz mono, from Debian's ``alsa-utils``;
GPL-2, Copyright 1998-2022 Jaroslav Kysela and others, see ``SOURCES.md`` written beside the
cases), as FFmpeg's AAC in M4A and LAME's MP3, untouched.

Needs ``ffmpeg``, ``espeak-ng``, ``sox`` and ``alsa-utils`` (for ``/usr/share/sounds/alsa``)
(only for regenerating; outputs are committed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_audio_fixtures as maf  # noqa: E402
from bindery_tools import goldens  # noqa: E402
from bindery_tools import reference as ref  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "audio_lossy"
DEFAULT_MODEL = ROOT / "models" / "fixture"
RATES = (8000, 16000, 44100, 48000)
LONG_S = 3.2
SHORT_S = 0.015
#: Every this-many-th decoded sample (per channel) is stored.
WAVE_STRIDE = 211

#: (codec name, extension, ffmpeg encoder arguments).
CODECS = (
    ("aac", "m4a", ["-c:a", "aac", "-b:a", "64k"]),
    ("mp3", "mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
    ("vorbis", "ogg", ["-c:a", "libvorbis", "-q:a", "3"]),
    ("opus", "opus", ["-c:a", "libopus", "-b:a", "48k"]),
)
#: Extra cases: Opus in WebM, and lossless controls, at (rate, channels, length).
EXTRA = (
    ("opus", "webm", ["-c:a", "libopus", "-b:a", "48k"], (48000, 2, "long")),
    ("opus", "webm", ["-c:a", "libopus", "-b:a", "48k"], (16000, 1, "long")),
    ("opus", "webm", ["-c:a", "libopus", "-b:a", "48k"], (48000, 1, "short")),
    ("flac", "flac", ["-c:a", "flac"], (48000, 1, "long")),
    ("flac", "flac", ["-c:a", "flac"], (16000, 1, "long")),
    ("wav", "wav", ["-c:a", "pcm_s16le"], (16000, 1, "long")),
    ("wav", "wav", ["-c:a", "pcm_s16le"], (8000, 2, "long")),
)
LOSSY = {"aac", "mp3", "vorbis", "opus"}
#: A real recording, encoded as it is: (id, codec, extension, ffmpeg encoder arguments).
REAL_SOURCE = Path("/usr/share/sounds/alsa/Front_Center.wav")
REAL = (
    ("aac_real_48000_mono", "aac", "m4a", ["-c:a", "aac", "-b:a", "64k"]),
    ("mp3_real_48000_mono", "mp3", "mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
)
SOURCES_NOTE = """# Sources of the recordings in cases/

`*_real_*` files are encodings of `Front_Center.wav` from ALSA's alsa-utils (speaker-test's
samples, as installed by Debian's `alsa-utils` package under /usr/share/sounds/alsa/).
Copyright 1998-2022 Jaroslav Kysela and others; licensed under the GNU General Public License,
version 2 (GPL-2). Every other file is synthesized by tools/make_lossy_audio_fixtures.py.
"""


def _source(sr: int, channels: int, seconds: float, tmp: Path) -> np.ndarray:
    """``[frames, channels]``: speech over a chord and a noise bed; 0.5 s in for short clips."""
    offset = 0.5 if seconds < 0.1 else 0.0
    total = seconds + offset
    n = int(round(sr * total))
    rng = np.random.default_rng(sr * 10 + channels)
    speech = maf._speech(sr, total + 0.4, tmp)
    chords = ((220.0, 277.2, 329.6), (196.0, 246.9, 293.7))
    cols = []
    for c in range(channels):
        delay = int(round(0.4 * sr)) * c
        voice = speech[delay : delay + n] if c else speech[:n]
        chord = sum(maf._tone(sr, total, f, 0.04)[:n] for f in chords[c])
        cols.append(0.8 * voice + chord + maf._noise(rng, n, 0.01))
    x = np.stack(cols, 1)
    return x[int(round(offset * sr)) :]


def _encode(src: Path, dest: Path, args: list[str]) -> None:
    maf._ffmpeg_encode(src, dest, args)


def _cases(cases_dir: Path, tmp: Path) -> list[dict]:
    plan = [(c, ext, args, (sr, ch, length)) for c, ext, args in CODECS for sr in RATES for ch in (1, 2)
            for length in ("long", "short")]
    plan += list(EXTRA)
    out = []
    if not REAL_SOURCE.is_file():
        raise SystemExit(f"{REAL_SOURCE} not found: install alsa-utils (Debian)")
    for id_, codec, ext, args in REAL:
        name = f"{id_}.{ext}"
        _encode(REAL_SOURCE, cases_dir / name, args)
        info = maf.sf.info(str(REAL_SOURCE))
        out.append({"id": id_, "file": f"cases/{name}", "codec": codec, "container": ext,
                    "lossy": True, "source_rate": int(info.samplerate), "source_channels": int(info.channels),
                    "source_seconds": round(float(info.duration), 6), "source": "alsa-utils Front_Center.wav"})
    for codec, ext, args, (sr, ch, length) in plan:
        layout = "mono" if ch == 1 else "stereo"
        id_ = f"{codec}_{ext}_{sr}_{layout}_{length}" if ext == "webm" else f"{codec}_{sr}_{layout}_{length}"
        src = tmp / f"{id_}_src.wav"
        maf._write_sf(src, _source(sr, ch, LONG_S if length == "long" else SHORT_S, tmp), sr, "WAV", "PCM_16")
        name = f"{id_}.{ext}"
        _encode(src, cases_dir / name, args)
        out.append({"id": id_, "file": f"cases/{name}", "codec": codec, "container": ext,
                    "lossy": codec in LOSSY, "source_rate": sr, "source_channels": ch,
                    "source_seconds": LONG_S if length == "long" else SHORT_S})
    return out


def _fill(out: Path, cases: list[dict], model: torch.nn.Module) -> None:
    tower = ref.Tower(model, ref.ModalityType.AUDIO)
    for case in cases:
        path = out / case["file"]
        wav, sr = maf.load_ffmpeg(str(path))
        case["decoded"] = {
            "sample_rate": int(sr),
            "channels": int(wav.shape[0]),
            "frames": int(wav.shape[1]),
            "stride": WAVE_STRIDE,
            "samples": [[maf._f32(v) for v in ch[::WAVE_STRIDE].numpy()] for ch in wav],
        }
        try:
            t = maf.reference_preprocess(path, "ffmpeg")
        except Exception as err:  # noqa: BLE001 - recorded: bindery must refuse it too
            msg = str(err).splitlines()[0] if str(err) else ""
            case["reference_error"] = f"{type(err).__name__}: {msg}"[:200]
            continue
        with torch.no_grad():
            emb = tower(t.unsqueeze(0))[0]
        case["embedding"] = [maf._f32(v) for v in emb]


def generate(root: Path, model_dir: Path) -> None:  # noqa: ARG001 - the signature check() needs
    """Write ``root/audio_lossy/**``."""
    out = root / "audio_lossy"
    cases_dir = out / "cases"
    cases_dir.mkdir(parents=True, exist_ok=True)
    for old in cases_dir.iterdir():
        old.unlink()
    torch.set_num_threads(1)
    model = ref.build_fixture_model()
    with tempfile.TemporaryDirectory() as t:
        cases = _cases(cases_dir, Path(t))
    _fill(out, cases, model)
    meta = {
        "generator": "tools/make_lossy_audio_fixtures.py",
        "reference": "imagebind.data.load_and_transform_audio_data (imagebind-unofficial 0.1.1), "
                     f"torch {torch.__version__}, torchaudio {maf.torchaudio.__version__}, "
                     f"decoded by {maf._ffmpeg_version()} to float WAV",
        "params": maf.PARAMS,
        "embedding_model": f"bindery_tools.reference.build_fixture_model() (seed {ref.FIXTURE_SEED}), audio tower",
        "cases": cases,
    }
    maf._dump(out / "cases.json", meta)
    (out / "SOURCES.md").write_text(SOURCES_NOTE)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{len(cases)} cases written under {out} ({total / 1e6:.2f} MB)")


def _owned(root: Path) -> set[str]:
    folder = root / "audio_lossy"
    return {str(p.relative_to(root)) for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT.parent, help="fixtures root")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL, help="unused; kept for the shared check")
    args = parser.parse_args()
    if args.check:
        raise SystemExit(goldens.check_regenerated(args.out, args.model_dir, generate, _owned))
    generate(args.out, args.model_dir)


if __name__ == "__main__":
    main()
