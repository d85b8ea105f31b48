#!/usr/bin/env python3
"""Times the reference audio preprocessing on the same input as ``benches/audio_preprocess.rs``.

    tools/.venv/bin/python tools/bench_audio_reference.py [--threads N] [--repeat R]
    tools/.venv-languagebind/bin/python tools/bench_audio_reference.py --languagebind [--threads N]

The input is a 10 s, 44.1 kHz, 16-bit stereo WAV synthesised with the bench's formulas (sweep on
the left, tone plus LCG noise on the right). One iteration is
``imagebind.data.load_and_transform_audio_data`` on that file, with ``torchaudio.load`` replaced
by ``soundfile`` (torchaudio 2.11's loader needs torchcodec): decode, ``torchaudio.functional.
resample`` to 16 kHz, three clips of ``torchaudio.compliance.kaldi.fbank``, normalisation. The
per-stage lines time decode, resample and one clip's filterbank on their own.

``--languagebind`` times LanguageBind's ``AudioTransform`` instead (``languagebind`` 0.1.0, in
its own environment): the same decode, then resampling of both channels, the mean subtracted,
one 112-bin filterbank of the whole 10 s (1000 frames) tiled to 1036 and stacked three times.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import soundfile as sf
import torch
import torchaudio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import reference as ref  # noqa: E402
from bindery_tools.timing import timeit  # noqa: E402

RATE = 44_100
SECONDS = 10


def bench_signal() -> np.ndarray:
    """[frames, 2] int16, the same samples as ``bench_wav`` in the Rust bench."""
    n = RATE * SECONDS
    t = np.arange(n, dtype=np.float64) / RATE
    f0, f1 = 100.0, 10_000.0
    k = math.log(f1 / f0) / SECONDS
    left = 0.4 * np.sin(2 * math.pi * f0 * (np.exp(k * t) - 1.0) / k)
    # 64-bit LCG, same constants and seed as the Rust bench.
    mask = (1 << 64) - 1
    state = 0x2545_F491_4F6C_DD1D
    noise = np.empty(n)
    for i in range(n):
        state = (state * 6_364_136_223_846_793_005 + 1_442_695_040_888_963_407) & mask
        noise[i] = (state >> 33) / float(1 << 31) * 2.0 - 1.0
    right = 0.2 * np.sin(2 * math.pi * 440.0 * t) + 0.1 * noise
    return np.round(np.stack([left, right], 1) * 32767.0).astype(np.int16)


def load_soundfile(path: str) -> tuple[torch.Tensor, int]:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(x.T)), sr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--languagebind", action="store_true", help="LanguageBind's AudioTransform instead")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.languagebind:
        bench_languagebind(args.repeat)
        return
    params = ref.audio_preprocess_params()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.wav"
        sf.write(str(path), bench_signal(), RATE, subtype="PCM_16")

        def whole() -> torch.Tensor:
            with mock.patch.object(ref.data.torchaudio, "load", load_soundfile):
                return ref.data.load_and_transform_audio_data(
                    [str(path)],
                    "cpu",
                    num_mel_bins=params["num_mel_bins"],
                    target_length=params["target_length"],
                    sample_rate=params["sample_rate"],
                    clip_duration=params["clip_duration"],
                    clips_per_video=params["clips_per_input"],
                    mean=params["mean"],
                    std=params["std"],
                )

        wav, _ = load_soundfile(str(path))
        wav16k = torchaudio.functional.resample(wav, RATE, params["sample_rate"])
        clip = wav16k[:1, :32_000].clone()
        rows = [
            ("whole preprocessing (decode + resample + 3 clips)", whole),
            ("decode (soundfile)", lambda: load_soundfile(str(path))),
            ("resample 44.1 -> 16 kHz, both channels", lambda: torchaudio.functional.resample(wav, RATE, 16_000)),
            ("resample 44.1 -> 16 kHz, one channel", lambda: torchaudio.functional.resample(wav[:1], RATE, 16_000)),
            ("fbank + pad + normalise, one 2 s clip",
             lambda: ref.data.waveform2melspec(clip.clone(), params["sample_rate"], params["num_mel_bins"],
                                               params["target_length"])),
        ]
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {args.repeat} runs each")
        for name, fn in rows:
            med, best = timeit(fn, args.repeat)
            print(f"{name:55s} median {med:8.2f} ms   min {best:8.2f} ms")


def bench_languagebind(repeat: int) -> None:
    """LanguageBind's audio preprocessing (the checkpoints' values) on the bench WAV."""
    from types import SimpleNamespace

    from bindery_tools.languagebind import import_languagebind

    import_languagebind()
    from languagebind.audio.processing_audio import AudioTransform

    config = SimpleNamespace(
        audio_sample_rate=16_000, num_mel_bins=112, target_length=1036, audio_mean=-4.2677393, audio_std=4.5689974
    )
    transform = AudioTransform(config)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.wav"
        sf.write(str(path), bench_signal(), RATE, subtype="PCM_16")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {repeat} runs each")
        name = "LanguageBind whole preprocessing (decode + AudioTransform)"
        med, best = timeit(lambda: transform(load_soundfile(str(path))), repeat)
        print(f"{name:55s} median {med:8.2f} ms   min {best:8.2f} ms")


if __name__ == "__main__":
    main()
