#!/usr/bin/env python3
"""Audio golden files for bindery's audio pipeline, produced by the reference implementation.

    tools/.venv/bin/python tools/make_audio_fixtures.py            # (re)write tests/fixtures/audio
    tools/.venv/bin/python tools/make_audio_fixtures.py --check    # regenerate in a scratch folder
                                                                   # and compare with the committed
                                                                   # goldens

Writes, under ``tests/fixtures/audio``:

* ``cases/*``: audio files in every container bindery accepts, made from deterministic signals
  (sweeps, noise, silence, tone bursts) and ``espeak-ng`` speech, encoded with ``soundfile``
  (libsndfile) or ``ffmpeg``;
* ``cases.json``: per file, the reference preprocessing (``imagebind.data.
  load_and_transform_audio_data`` with ``torchaudio.load`` replaced by a ``soundfile`` or
  ``ffmpeg`` decoder, named in ``decoder``), as a strided sample of the ``[clips, 1, mel, frames]``
  tensor, its sum, the full tensor for a few files (``fbank``) and the fixture model's audio
  embedding (``embedding``, from ``bindery_tools.reference.build_fixture_model``);
* ``resample.json`` + ``unit/*``: ``torchaudio.functional.resample`` inputs and outputs;
* ``fbank.json`` + ``unit/*``: ``torchaudio.compliance.kaldi.fbank`` inputs and outputs, captured
  from inside ``imagebind.data.waveform2melspec``;
* ``bad.json`` + ``bad/*``: inputs that must be rejected, with the error kind bindery reports and
  what the reference did with them.

Raw arrays are little-endian float32 without header. Needs ``espeak-ng`` and ``ffmpeg`` on PATH
(only for regenerating; the outputs are committed).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable
from unittest import mock

import numpy as np
import soundfile as sf
import torch
import torchaudio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import goldens  # noqa: E402
from bindery_tools import reference as ref  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "audio"

#: Preprocessing parameters, read from the reference code (the manifest carries the same values).
PARAMS = ref.audio_preprocess_params()
#: Every this-many-th value of a case's flattened output tensor is stored in ``tensor_sample``.
SAMPLE_STRIDE = 127
#: Cases whose whole output tensor is stored as raw float32 (``fbank``).
FULL_TENSOR_CASES = {"wav44k_stereo_s16", "flac8k_mono_10min"}
#: Rates the resampler goldens cover (all converted to the model's rate).
RESAMPLE_RATES = (44100, 48000, 8000, 22050)

SPEECH_TEXT = (
    "Bindery embeds text, images and sound into one shared space. "
    "The quick brown fox jumps over the lazy dog."
)


# --------------------------------------------------------------------------- signals


def _sweep(sr: int, seconds: float, f0: float, f1: float, amp: float = 0.5) -> np.ndarray:
    """Exponential sine sweep from ``f0`` to ``f1`` Hz."""
    n = int(round(sr * seconds))
    t = np.arange(n) / sr
    k = math.log(f1 / f0) / max(seconds, 1e-9)
    phase = 2 * math.pi * f0 * (np.exp(k * t) - 1) / k
    return amp * np.sin(phase)


def _tone(sr: int, seconds: float, freq: float, amp: float = 0.3) -> np.ndarray:
    n = int(round(sr * seconds))
    return amp * np.sin(2 * math.pi * freq * np.arange(n) / sr)


def _noise(rng: np.random.Generator, n: int, amp: float = 0.2) -> np.ndarray:
    return amp * rng.standard_normal(n)


def _speech(sr: int, seconds: float, tmp: Path) -> np.ndarray:
    """``espeak-ng`` speech, converted to ``sr`` by sox and cut or zero-padded to ``seconds``."""
    raw = tmp / "speech_raw.wav"
    conv = tmp / f"speech_{sr}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(raw), SPEECH_TEXT], check=True)
    subprocess.run(["sox", str(raw), "-r", str(sr), "-b", "32", "-e", "floating-point", str(conv)], check=True)
    x, got = sf.read(conv, dtype="float64")
    assert got == sr
    n = int(round(sr * seconds))
    return np.pad(x, (0, max(0, n - len(x))))[:n] * 0.9


# --------------------------------------------------------------------------- encoders


def _write_sf(path: Path, x: np.ndarray, sr: int, fmt: str, subtype: str) -> None:
    sf.write(str(path), x, sr, format=fmt, subtype=subtype)
    if fmt.startswith("WAV") and subtype in ("FLOAT", "DOUBLE"):
        # libsndfile stamps float WAVs' PEAK chunk with the current time; clear it so that the
        # files are reproducible.
        data = bytearray(path.read_bytes())
        at = data.find(b"PEAK")
        if at >= 0:
            data[at + 12 : at + 16] = bytes(4)
            path.write_bytes(bytes(data))


def _ffmpeg_encode(src_wav: Path, dest: Path, args: list[str]) -> None:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(src_wav), *args, "-map_metadata", "-1",
         "-fflags", "+bitexact", "-flags:a", "+bitexact", str(dest)],
        check=True,
    )


# --------------------------------------------------------------------------- reference decoders


def _soundfile_version() -> str:
    return f"soundfile {sf.__version__} (libsndfile {sf.__libsndfile_version__})"


def _ffmpeg_version() -> str:
    out = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout
    return out.split("\n", 1)[0].split(" Copyright")[0]


def load_soundfile(path: str) -> tuple[torch.Tensor, int]:
    """``torchaudio.load`` stand-in: float32 in [-1, 1], shape [channels, frames]."""
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(x.T)), sr


def load_ffmpeg(path: str) -> tuple[torch.Tensor, int]:
    """``torchaudio.load`` stand-in decoding with ffmpeg (to float32 WAV, read by soundfile)."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "decoded.wav"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-i", path, "-c:a", "pcm_f32le", "-f", "wav", str(wav)],
            check=True,
        )
        return load_soundfile(str(wav))


LOADERS: dict[str, Callable[[str], tuple[torch.Tensor, int]]] = {
    "soundfile": load_soundfile,
    "ffmpeg": load_ffmpeg,
}


def reference_preprocess(path: Path, loader: str) -> torch.Tensor:
    """``load_and_transform_audio_data`` on one file: ``[clips, 1, mel, frames]``."""
    with mock.patch.object(ref.data.torchaudio, "load", LOADERS[loader]):
        out = ref.data.load_and_transform_audio_data(
            [str(path)],
            "cpu",
            num_mel_bins=PARAMS["num_mel_bins"],
            target_length=PARAMS["target_length"],
            sample_rate=PARAMS["sample_rate"],
            clip_duration=PARAMS["clip_duration"],
            clips_per_video=PARAMS["clips_per_input"],
            mean=PARAMS["mean"],
            std=PARAMS["std"],
        )
    return out[0]


# --------------------------------------------------------------------------- cases


def _make_cases(cases_dir: Path, tmp: Path) -> list[dict]:
    """Writes the audio files; returns their descriptions (without reference outputs)."""
    rng = np.random.default_rng(20260101)
    cases: list[dict] = []

    def add(id_: str, file: str, lossy: bool, decoder: str, what: str) -> None:
        cases.append({"id": id_, "file": f"cases/{file}", "lossy": lossy, "decoder": decoder,
                      "format": what})

    # 16 kHz mono, 16-bit: speech over a low hum; the model rate, so no resampling.
    x = _speech(16000, 5.0, tmp) + _tone(16000, 5.0, 110.0, 0.05)
    _write_sf(cases_dir / "wav16k_mono_s16_5s.wav", x, 16000, "WAV", "PCM_16")
    add("wav16k_mono_s16_5s", "wav16k_mono_s16_5s.wav", False, "soundfile", "WAV PCM 16-bit, 16 kHz mono, 5 s")

    # 44.1 kHz stereo: different content per channel (channel 0 is used, the mean spans both).
    n = int(44100 * 2.2)
    left = _sweep(44100, 2.2, 60.0, 18000.0, 0.4)
    right = _noise(rng, n, 0.15) + 0.2
    _write_sf(cases_dir / "wav44k_stereo_s16.wav", np.stack([left, right], 1), 44100, "WAV", "PCM_16")
    add("wav44k_stereo_s16", "wav44k_stereo_s16.wav", False, "soundfile", "WAV PCM 16-bit, 44.1 kHz stereo, 2.2 s")

    # 48 kHz stereo, exactly 2 s (one clip length: all clips start at 0).
    left = _sweep(48000, 2.0, 200.0, 20000.0, 0.5)
    right = _tone(48000, 2.0, 440.0, 0.5)
    _write_sf(cases_dir / "wav48k_stereo_2s.wav", np.stack([left, right], 1), 48000, "WAV", "PCM_16")
    add("wav48k_stereo_2s", "wav48k_stereo_2s.wav", False, "soundfile", "WAV PCM 16-bit, 48 kHz stereo, exactly 2 s")

    # 8 kHz mono, 7 s (upsampling; overlapping clips).
    x = _speech(8000, 7.0, tmp) + _noise(rng, 56000, 0.01)
    _write_sf(cases_dir / "wav8k_mono_7s.wav", x, 8000, "WAV", "PCM_16")
    add("wav8k_mono_7s", "wav8k_mono_7s.wav", False, "soundfile", "WAV PCM 16-bit, 8 kHz mono, 7 s")

    # 24-bit at 22.05 kHz.
    x = _speech(22050, 3.0, tmp)
    _write_sf(cases_dir / "wav22k_mono_s24.wav", x, 22050, "WAV", "PCM_24")
    add("wav22k_mono_s24", "wav22k_mono_s24.wav", False, "soundfile", "WAV PCM 24-bit, 22.05 kHz mono, 3 s")

    # 32-bit float, shorter than one clip.
    x = _speech(16000, 1.5, tmp) * 1.05
    _write_sf(cases_dir / "wav16k_mono_f32_1p5s.wav", x, 16000, "WAV", "FLOAT")
    add("wav16k_mono_f32_1p5s", "wav16k_mono_f32_1p5s.wav", False, "soundfile", "WAV float 32-bit, 16 kHz mono, 1.5 s")

    # 64-bit float.
    x = _sweep(16000, 0.6, 100.0, 7000.0, 0.7)
    _write_sf(cases_dir / "wav16k_mono_f64.wav", x, 16000, "WAV", "DOUBLE")
    add("wav16k_mono_f64", "wav16k_mono_f64.wav", False, "soundfile", "WAV float 64-bit, 16 kHz mono, 0.6 s")

    # 32-bit integer PCM.
    x = _tone(16000, 1.0, 1000.0, 0.6) + _noise(rng, 16000, 0.05)
    _write_sf(cases_dir / "wav16k_mono_s32.wav", x, 16000, "WAV", "PCM_32")
    add("wav16k_mono_s32", "wav16k_mono_s32.wav", False, "soundfile", "WAV PCM 32-bit, 16 kHz mono, 1 s")

    # Unsigned 8-bit PCM.
    x = _sweep(8000, 3.0, 100.0, 3500.0, 0.6)
    _write_sf(cases_dir / "wav8k_mono_u8.wav", x, 8000, "WAV", "PCM_U8")
    add("wav8k_mono_u8", "wav8k_mono_u8.wav", False, "soundfile", "WAV PCM unsigned 8-bit, 8 kHz mono, 3 s")

    # 0.05 s: far shorter than a clip, still more than one analysis window.
    x = _tone(16000, 0.05, 700.0, 0.5)
    _write_sf(cases_dir / "wav16k_short_0p05s.wav", x, 16000, "WAV", "PCM_16")
    add("wav16k_short_0p05s", "wav16k_short_0p05s.wav", False, "soundfile", "WAV PCM 16-bit, 16 kHz mono, 0.05 s")

    # Digital silence: every filterbank value is floored at float32 epsilon.
    _write_sf(cases_dir / "wav8k_silence.wav", np.zeros(20000), 8000, "WAV", "PCM_16")
    add("wav8k_silence", "wav8k_silence.wav", False, "soundfile", "WAV PCM 16-bit, 8 kHz mono, 2.5 s of zeros")

    # High and odd rates.
    x = _sweep(96000, 0.5, 300.0, 40000.0, 0.5) + _tone(96000, 0.5, 2000.0, 0.2)
    _write_sf(cases_dir / "wav96k_mono.wav", x, 96000, "WAV", "PCM_16")
    add("wav96k_mono", "wav96k_mono.wav", False, "soundfile", "WAV PCM 16-bit, 96 kHz mono, 0.5 s")
    x = _speech(11025, 3.0, tmp)
    _write_sf(cases_dir / "wav11k_mono.wav", x, 11025, "WAV", "PCM_16")
    add("wav11k_mono", "wav11k_mono.wav", False, "soundfile", "WAV PCM 16-bit, 11.025 kHz mono, 3 s")

    # WAVE_FORMAT_EXTENSIBLE, three channels.
    a = _speech(16000, 2.2, tmp)
    b = _tone(16000, 2.2, 300.0, 0.3) - 0.1
    c = _noise(rng, len(a), 0.1)
    _write_sf(cases_dir / "wavex_3ch_16k.wav", np.stack([a, b, c], 1), 16000, "WAVEX", "PCM_16")
    add("wavex_3ch_16k", "wavex_3ch_16k.wav", False, "soundfile", "WAVE_FORMAT_EXTENSIBLE PCM 16-bit, 16 kHz, 3 channels, 2.2 s")

    # FLAC, 44.1 kHz stereo.
    left = _tone(44100, 3.0, 523.25, 0.3) + _sweep(44100, 3.0, 80.0, 8000.0, 0.2)
    right = _tone(44100, 3.0, 659.25, 0.3)
    _write_sf(cases_dir / "flac44k_stereo.flac", np.stack([left, right], 1), 44100, "FLAC", "PCM_16")
    add("flac44k_stereo", "flac44k_stereo.flac", False, "soundfile", "FLAC 16-bit, 44.1 kHz stereo, 3 s")

    # Ten minutes: 8 kHz mono FLAC, silent except for tone bursts around the three clips.
    sr = 8000
    x = np.zeros(sr * 600)
    for start in (0.0, 199.0, 398.0, 598.0):
        seg = _sweep(sr, 2.0, 150.0, 3500.0, 0.5) + _tone(sr, 2.0, 440.0, 0.2)
        i = int(start * sr)
        x[i : i + len(seg)] = seg[: len(x) - i]
    _write_sf(cases_dir / "flac8k_mono_10min.flac", x, sr, "FLAC", "PCM_16")
    add("flac8k_mono_10min", "flac8k_mono_10min.flac", False, "soundfile", "FLAC 16-bit, 8 kHz mono, 10 min")

    # Lossy codecs. The source is kept steady so that codec differences stay small.
    src = tmp / "lossy_src.wav"
    x = _tone(44100, 4.0, 440.0, 0.3) + _tone(44100, 4.0, 1250.0, 0.15) + _sweep(44100, 4.0, 100.0, 4000.0, 0.15)
    _write_sf(src, x, 44100, "WAV", "PCM_16")
    _ffmpeg_encode(src, cases_dir / "ogg_vorbis_44k.ogg", ["-c:a", "libvorbis", "-q:a", "4"])
    add("ogg_vorbis_44k", "ogg_vorbis_44k.ogg", True, "soundfile", "OGG Vorbis (libvorbis q4), 44.1 kHz mono, 4 s")
    _ffmpeg_encode(src, cases_dir / "mp3_44k.mp3", ["-c:a", "libmp3lame", "-b:a", "96k"])
    add("mp3_44k", "mp3_44k.mp3", True, "ffmpeg", "MP3 (LAME, 96 kb/s, Xing/LAME header), 44.1 kHz mono, 4 s")
    _ffmpeg_encode(src, cases_dir / "m4a_aac_44k.m4a", ["-c:a", "aac", "-b:a", "96k"])
    add("m4a_aac_44k", "m4a_aac_44k.m4a", True, "ffmpeg", "AAC-LC in MP4 (.m4a), 44.1 kHz mono, 4 s")

    # Content that does not match the name: a WAV called .mp3, and a FLAC without extension.
    x = _speech(8000, 2.5, tmp)
    _write_sf(cases_dir / "wav_named.mp3", x, 8000, "WAV", "PCM_16")
    add("wrong_extension", "wav_named.mp3", False, "soundfile", "WAV PCM 16-bit, 8 kHz mono, 2.5 s, named .mp3")
    x = _sweep(16000, 3.0, 50.0, 7500.0, 0.5)
    _write_sf(cases_dir / "flac_no_extension", x, 16000, "FLAC", "PCM_16")
    add("no_extension", "flac_no_extension", False, "soundfile", "FLAC 16-bit, 16 kHz mono, 3 s, no extension")
    return cases


def _fill_reference(out: Path, cases: list[dict], model: torch.nn.Module | None) -> None:
    """Adds the reference outputs (and embeddings) to each case."""
    versions = {"soundfile": _soundfile_version(), "ffmpeg": _ffmpeg_version()}
    tower = ref.Tower(model, ref.ModalityType.AUDIO) if model is not None else None
    for case in cases:
        path = out / case["file"]
        loader = case["decoder"]
        wav, sr = LOADERS[loader](str(path))
        case["decoder"] = versions[loader]
        case["sample_rate"] = int(sr)
        case["channels"] = int(wav.shape[0])
        case["frames"] = int(wav.shape[1])
        t = reference_preprocess(path, loader)
        flat = t.reshape(-1).numpy().astype(np.float32)
        case["shape"] = list(t.shape)
        case["tensor_sum"] = float(flat.astype(np.float64).sum())
        case["tensor_sample_stride"] = SAMPLE_STRIDE
        case["tensor_sample"] = [_f32(v) for v in flat[::SAMPLE_STRIDE]]
        if case["id"] in FULL_TENSOR_CASES:
            rel = f"tensors/{case['id']}.f32"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            flat.astype("<f4").tofile(out / rel)
            case["fbank"] = rel
        if tower is not None:
            with torch.no_grad():
                emb = tower(t.unsqueeze(0))[0]
            case["embedding"] = [_f32(v) for v in emb]


# --------------------------------------------------------------------------- unit goldens


def _unit_waveforms(sr: int, seconds: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(sr)
    n = int(sr * seconds)
    chirp = _sweep(sr, n / sr, 40.0, 0.45 * sr, 0.5)[:n] + _noise(rng, n, 0.01)
    clicks = _noise(rng, n, 0.2)
    clicks[:: max(1, n // 7)] = 0.95
    return {"chirp": chirp, "noise_clicks": clicks}


def _make_resample(out: Path) -> list[dict]:
    entries = []
    target = PARAMS["sample_rate"]
    for sr in RESAMPLE_RATES:
        for name, x in _unit_waveforms(sr, 0.25).items():
            x32 = x.astype(np.float32)
            y = torchaudio.functional.resample(torch.from_numpy(x32)[None], sr, target)[0].numpy()
            id_ = f"resample_{name}_{sr}"
            x32.astype("<f4").tofile(out / "unit" / f"{id_}_in.f32")
            y.astype("<f4").tofile(out / "unit" / f"{id_}_out.f32")
            entries.append({"id": id_, "orig_freq": sr, "new_freq": target,
                            "input": f"unit/{id_}_in.f32", "input_len": len(x32),
                            "output": f"unit/{id_}_out.f32", "output_len": len(y)})
    return entries


def _make_fbank(out: Path, tmp: Path) -> list[dict]:
    sr = PARAMS["sample_rate"]
    rng = np.random.default_rng(7)
    waves = {
        "speech_1s": _speech(sr, 1.0, tmp),
        # Not a whole number of hops, with a DC offset the per-frame mean removal takes out.
        "tone_noise_dc": _tone(sr, 0.37, 3000.0, 0.4) + _noise(rng, int(round(sr * 0.37)), 0.05) + 0.3,
        "silence": np.zeros(4000),
    }
    entries = []
    real_fbank = torchaudio.compliance.kaldi.fbank
    for name, x in waves.items():
        captured = {}

        def spy(waveform, **kwargs):
            captured["input"] = waveform.clone()
            captured["kwargs"] = kwargs
            captured["output"] = real_fbank(waveform, **kwargs)
            return captured["output"]

        with mock.patch.object(ref.data.torchaudio.compliance.kaldi, "fbank", spy):
            ref.data.waveform2melspec(torch.from_numpy(x.astype(np.float32))[None], sr,
                                      PARAMS["num_mel_bins"], PARAMS["target_length"])
        inp = captured["input"][0].numpy()
        fb = captured["output"].numpy()
        id_ = f"fbank_{name}"
        inp.astype("<f4").tofile(out / "unit" / f"{id_}_in.f32")
        fb.astype("<f4").tofile(out / "unit" / f"{id_}_out.f32")
        kwargs = {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                  for k, v in captured["kwargs"].items()}
        entries.append({"id": id_, "input": f"unit/{id_}_in.f32", "input_len": len(inp),
                        "output": f"unit/{id_}_out.f32", "frames": fb.shape[0],
                        "mel_bins": fb.shape[1], "kaldi_fbank_kwargs": kwargs})
    return entries


# --------------------------------------------------------------------------- bad inputs


def _wav_header(data_len: int, sr: int = 16000, channels: int = 1, bits: int = 16) -> bytes:
    block = channels * bits // 8
    fmt = (b"fmt " + (16).to_bytes(4, "little") + (1).to_bytes(2, "little")
           + channels.to_bytes(2, "little") + sr.to_bytes(4, "little")
           + (sr * block).to_bytes(4, "little") + block.to_bytes(2, "little")
           + bits.to_bytes(2, "little"))
    return (b"RIFF" + (4 + len(fmt) + 8 + data_len).to_bytes(4, "little") + b"WAVE" + fmt
            + b"data" + data_len.to_bytes(4, "little"))


def _make_bad(out: Path, tmp: Path) -> list[dict]:
    bad = out / "bad"
    rng = np.random.default_rng(99)
    entries = []

    def add(id_: str, name: str, content: bytes, expect: str, why: str) -> None:
        (bad / name).write_bytes(content)
        entries.append({"id": id_, "file": f"bad/{name}", "expect": expect, "why": why})

    pcm = (_tone(16000, 1.0, 440.0, 0.5) * 32767).astype("<i2").tobytes()
    wav = _wav_header(len(pcm)) + pcm
    add("empty", "empty.wav", b"", "Empty", "0 bytes")
    add("not_audio_text", "not_audio.txt", b"This is a plain text file, not audio.\n" * 20,
        "UnrecognizedFormat", "text")
    png = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (4, 4), (200, 30, 30)).save(png, format="PNG")
    add("not_audio_png", "not_audio.png", png.getvalue(), "UnrecognizedFormat", "a PNG image")
    add("zero_samples", "zero_samples.wav", _wav_header(0), "NoSamples",
        "valid WAV header, empty data chunk")
    add("truncated_wav", "truncated.wav", wav[: len(wav) // 2], "Truncated",
        "WAV whose data chunk declares twice the bytes present")
    flac = io.BytesIO()
    sf.write(flac, _tone(16000, 2.0, 440.0, 0.5) + _noise(rng, 32000, 0.1), 16000, format="FLAC",
             subtype="PCM_16")
    flac_bytes = flac.getvalue()
    add("truncated_flac", "truncated.flac", flac_bytes[: len(flac_bytes) // 2], "Truncated",
        "FLAC cut in half (STREAMINFO declares more samples)")
    # A real FLAC header followed by noise instead of frames.
    corrupt = bytearray(flac_bytes)
    body = rng.integers(0, 256, len(corrupt) - 200, dtype=np.uint8).tobytes()
    corrupt[200:] = body
    add("corrupt_flac", "corrupt.flac", bytes(corrupt), "Corrupt", "FLAC header, frames replaced by noise")
    # A WAV whose format chunk names a codec that does not exist.
    bogus = bytearray(wav)
    bogus[20:22] = (0x7A7A).to_bytes(2, "little")
    add("unsupported_codec", "unsupported_codec.wav", bytes(bogus), "UnsupportedCodec",
        "WAV format tag 0x7a7a")
    # 10 ms: decodes, but shorter than one 25 ms analysis window.
    short = (_tone(16000, 0.01, 440.0, 0.5) * 32767).astype("<i2").tobytes()
    add("too_short", "too_short.wav", _wav_header(len(short)) + short, "TooShort",
        "160 samples, fewer than one 400-sample window")

    add("truncated_header", "truncated_header.wav", wav[:30], "Truncated",
        "the first 30 bytes of a WAV: the format chunk is cut")

    for e in entries:
        path = out / e["file"]
        try:
            reference_preprocess(path, "soundfile")
            e["reference"] = "accepted"
        except Exception as err:  # noqa: BLE001 - recorded, not handled
            msg = str(err).splitlines()[0] if str(err) else ""
            msg = msg.replace(str(path), path.name)
            e["reference"] = f"{type(err).__name__}: {msg}"[:200]
    return entries


# --------------------------------------------------------------------------- main


def generate(out: Path, with_embeddings: bool) -> None:
    for sub in ("cases", "unit", "bad", "tensors"):
        if (out / sub).exists():
            shutil.rmtree(out / sub)
        (out / sub).mkdir(parents=True)
    torch.set_num_threads(1)
    model = ref.build_fixture_model() if with_embeddings else None
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        cases = _make_cases(out / "cases", tmp)
        _fill_reference(out, cases, model)
        resample = _make_resample(out)
        fbank = _make_fbank(out, tmp)
        bad = _make_bad(out, tmp)
    meta = {
        "generator": "tools/make_audio_fixtures.py",
        "reference": "imagebind.data.load_and_transform_audio_data (imagebind-unofficial 0.1.1), "
                     f"torch {torch.__version__}, torchaudio {torchaudio.__version__}",
        "params": PARAMS,
    }
    if with_embeddings:
        meta["embedding_model"] = (f"bindery_tools.reference.build_fixture_model() "
                                   f"(seed {ref.FIXTURE_SEED}), audio tower")
    _dump(out / "cases.json", {**meta, "cases": cases})
    _dump(out / "resample.json", {**meta, "entries": resample})
    _dump(out / "fbank.json", {**meta, "entries": fbank})
    _dump(out / "bad.json", {**meta, "entries": bad})


def _f32(v: float) -> float:
    """The double that prints as the shortest decimal of ``v`` rounded to float32."""
    return float(str(np.float32(v)))


def _dump(path: Path, obj: object) -> None:
    text = json.dumps(obj, indent=1)
    # One line per number list keeps the files short and diffs readable.
    text = re.sub(r"\[\s*(-?[0-9][^\[\]{}\"]*?)\s*\]",
                  lambda m: "[" + ", ".join(p.strip() for p in m.group(1).split(",")) + "]", text)
    path.write_text(text + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--no-embeddings", action="store_true", help="skip the fixture model")
    ap.add_argument("--check", action="store_true",
                    help="regenerate into a scratch folder and compare with --out")
    args = ap.parse_args()
    if args.check:
        owned = lambda root: {str(f.relative_to(root)) for f in root.rglob("*") if f.is_file()}  # noqa: E731
        generate_into = lambda root, _: generate(root, not args.no_embeddings)  # noqa: E731
        # Log-mel values of near-silent bins amplify the FFT's last-bit differences between CPUs
        # (up to 1.1e-3 seen on normalised fbanks), hence a looser bound than the default.
        sys.exit(goldens.check_regenerated(args.out, Path(), generate_into, owned, tolerance=2e-3))
    generate(args.out, not args.no_embeddings)
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
