#!/usr/bin/env python3
"""The CLAP fixture: a tiny seeded fused ``ClapModel`` and its goldens from transformers itself.

    python tools/make_clap_fixtures.py           # (re)write models/clap-fixture/ and the goldens
    python tools/make_clap_fixtures.py --check   # regenerate into a temp dir, compare with the tree

``models/clap-fixture/`` is ``export_clap.py``'s export of ``export_clap.fixture_config()`` (HTSAT
with fusion, one-layer RoBERTa, 16-d space) with seeded random weights, and a byte-level BPE
``tokenizer.json`` laid out like RoBERTa's (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3,
``<mask>`` 4, ``RobertaProcessing``) trained here with the ``tokenizers`` package on the text
goldens, since the real vocabulary cannot be fetched.

The reference, per input:

* audio: the audio and lossy-audio goldens' inputs, and two of this fixture's own over the 10 s
  window (``inputs/``: 21.3 s whose thirds differ, and 10 s plus 200 samples at 48 kHz), decoded
  as the ImageBind audio goldens decode them (``soundfile``, or ``ffmpeg`` to float
  WAV, named per case; Opus by FFmpeg with libopus), channels averaged, ``torchaudio.functional.resample`` to 48 kHz (the
  feature extractor does not resample), then ``ClapFeatureExtractor`` alone on that one input
  and ``ClapModel.get_audio_features`` in PyTorch. Its random choices are pinned to bindery's
  rule: ``rand_trunc`` keeps the centred window (``randint(0, overflow + 1)`` answers
  ``overflow // 2``), ``fusion`` takes the middle index of each third (``np.random.choice``
  answers ``a[len(a) // 2]``), and the "no input of the batch is longer" fallback marks the one
  input longer, as it does for any batch of one.
* text: every text of ``tests/fixtures/text/cases.json`` through ``RobertaTokenizerFast`` on the
  trained ``tokenizer.json`` (``padding="max_length", truncation=True, max_length=77``, as
  laion_clap calls it) and ``get_text_features``.

Both truncation modes are covered: the fixture tower is fused (``fusion``); ``rand_trunc`` goldens
come from the same model's preprocessing with the Slaney filters, written as log-mel tensors
(``mel_rand_trunc.json``: the feature extractor's output on the long inputs, strided) and checked
by a unit test of the front end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torchaudio  # noqa: E402

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import export_clap as ec  # noqa: E402
from bindery_tools import goldens  # noqa: E402
from make_audio_fixtures import LOADERS, _sweep, _tone, _write_sf  # noqa: E402
from transformers import ClapFeatureExtractor, RobertaTokenizerFast  # noqa: E402

REPO = TOOLS.parent
INPUTS = REPO / "tests" / "fixtures"
GOLDENS = "families/clap-fixture"
NAME = "clap-fixture"
DESCRIPTION = (
    "Tiny fused CLAP (HTSAT 8 wide, two one-block stages; RoBERTa 16 wide, one layer; random "
    "weights, seed 1234; a 1,000-piece byte-level BPE vocabulary trained for tests); embeddings "
    "carry no meaning."
)
LICENCE = "Apache-2.0 (transformers code); seeded random weights"
ONNX_TOLERANCE = 1e-4
#: Every ``mel_rand_trunc`` golden keeps each STRIDE-th value of the [1, frames, mels] tensor.
STRIDE = 97


def train_bpe(path: Path) -> None:
    """A small byte-level BPE ``tokenizer.json`` laid out like RoBERTa's."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    corpus = [c["text"] for c in json.loads((INPUTS / "text" / "cases.json").read_text())]
    corpus += [f"the sound of {w}" for w in ("a dog barking", "rain", "a siren", "a cat", "music")]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))


def reference_tokenizer(tokenizer_json: Path) -> Any:
    return RobertaTokenizerFast(
        tokenizer_file=str(tokenizer_json),
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
    )


@contextmanager
def pinned_choices() -> Iterator[None]:
    """The feature extractor's random picks, answered with bindery's deterministic rule."""

    def choice(a: Any, *args: Any, **kwargs: Any) -> Any:
        a = np.asarray(a)
        return a[len(a) // 2]

    def randint(low: int, high: int | None = None, *args: Any, **kwargs: Any) -> int:
        if high is None:
            low, high = 0, low
        if high - low == 1:  # the batch-of-one fallback: the only input
            return low
        return low + (high - 1 - low) // 2  # randint(0, overflow + 1): overflow // 2

    with mock.patch.object(np.random, "choice", choice), mock.patch.object(np.random, "randint", randint):
        yield


def load_libopus(path: str) -> tuple[torch.Tensor, int]:
    """FFmpeg with the libopus decoder (the Opus reference decoder, which bindery also runs):
    FFmpeg's native Opus decoder folds CELT noise differently, which moves the bands above the
    source's rate that CLAP's 48 kHz spectrogram keeps. FFmpeg's libopus wrapper decodes to 16-bit
    samples unless a caller requests float, which this command line does not."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "decoded.wav"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-c:a", "libopus", "-i", path, "-c:a", "pcm_f32le", "-f", "wav", str(wav)],
            check=True,
        )
        return LOADERS["soundfile"](str(wav))


def reference_waveform(path: Path, loader: str, rate: int) -> np.ndarray:
    """Decoded, channels averaged, resampled to ``rate`` by torchaudio: float32 mono."""
    wave, sr = (load_libopus if loader == "libopus" else LOADERS[loader])(str(path))
    mono = wave.mean(dim=0)
    if sr != rate:
        mono = torchaudio.functional.resample(mono, orig_freq=sr, new_freq=rate)
    return mono.numpy().astype(np.float32)


def _f32_list(t: Any) -> list[float]:
    return [float(x) for x in np.asarray(t, dtype=np.float32).reshape(-1).tolist()]


#: Inputs of this fixture's own (``families/clap-fixture/inputs/``): the shared goldens' only
#: input over the 10 s window is nearly silent, which would not show a misplaced chunk.
EXTRA = {
    "long_16k_21s": "inputs/long_16k_21s.flac",
    "just_over_48k": "inputs/just_over_48k.flac",
}


def write_extra_inputs(root: Path) -> None:
    """A 21.3 s 16 kHz FLAC whose thirds sound different (a rising sweep, tone bursts, a falling
    sweep under a hum), and a 48 kHz FLAC 200 samples over the window (longer, but by less than
    a hop: the extractor's ``chunk_frames == total_frames`` branch)."""
    folder = root / GOLDENS / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    sr = 16000
    bursts = _tone(sr, 7.1, 440.0, 0.4) * (np.sin(2 * np.pi * 1.5 * np.arange(int(round(sr * 7.1))) / sr) > 0)
    x = np.concatenate(
        [_sweep(sr, 7.1, 80.0, 7000.0, 0.5), bursts, _sweep(sr, 7.1, 6000.0, 100.0, 0.3) + _tone(sr, 7.1, 60.0, 0.1)]
    )
    _write_sf(folder / "long_16k_21s.flac", x, sr, "FLAC", "PCM_16")
    sr = 48000
    n = 10 * sr + 200
    y = _sweep(sr, n / sr, 200.0, 12000.0, 0.4) + _tone(sr, n / sr, 1000.0, 0.1)
    _write_sf(folder / "just_over_48k.flac", y[:n], sr, "FLAC", "PCM_16")


def _input(root: Path, file: str) -> Path:
    """Where an input lies: this fixture's own under ``root`` (a scratch root under ``--check``),
    the shared goldens' in the tree."""
    return (root if file.startswith(GOLDENS) else INPUTS) / file


def audio_cases() -> list[dict[str, Any]]:
    """The audio goldens' inputs: ImageBind's (every format and length, the 10-minute one
    included), decoded as their reference decodes them, and the lossy set (AAC, MP3, Vorbis,
    Opus, FLAC and WAV at four rates), decoded by FFmpeg (Opus with libopus), where the ImageBind
    reference could read them."""
    cases = []
    for c in json.loads((INPUTS / "audio" / "cases.json").read_text())["cases"]:
        loader = "ffmpeg" if c["decoder"].startswith("ffmpeg") else "soundfile"
        cases.append({"id": c["id"], "file": "audio/" + c["file"], "loader": loader})
    for c in json.loads((INPUTS / "audio_lossy" / "cases.json").read_text())["cases"]:
        if c.get("embedding") is not None:
            loader = "libopus" if c["codec"] == "opus" else "ffmpeg"
            cases.append({"id": "lossy_" + c["id"], "file": "audio_lossy/" + c["file"], "loader": loader})
    for id_, file in EXTRA.items():
        cases.append({"id": id_, "file": f"{GOLDENS}/{file}", "loader": "soundfile"})
    return cases


def goldens_for(model_dir: Path, root: Path = INPUTS) -> dict[str, Any]:
    model = ec.build_model(ec.fixture_config())
    fe = ClapFeatureExtractor(truncation="fusion")
    rate = int(fe.sampling_rate)
    audio, features, longer = [], [], []
    for case in audio_cases():
        wave = reference_waveform(_input(root, case["file"]), case["loader"], rate)
        with pinned_choices():
            inputs = fe(wave, sampling_rate=rate, return_tensors="pt")
        x = inputs["input_features"].to(torch.float32)
        with torch.no_grad():
            emb = model.get_audio_features(input_features=x, is_longer=inputs["is_longer"]).pooler_output
        features.append(x[0].numpy())
        longer.append(int(inputs["is_longer"][0, 0]))
        audio.append(
            {
                "id": case["id"],
                "file": case["file"],
                "seconds": round(len(wave) / rate, 3),
                "is_longer": bool(longer[-1]),
                "embedding": _f32_list(emb[0]),
            }
        )
    tokenizer = reference_tokenizer(model_dir / "tokenizer.json")
    text = []
    for case in json.loads((INPUTS / "text" / "cases.json").read_text()):
        tokens = tokenizer(
            [case["text"]], padding="max_length", truncation=True, max_length=ec.CONTEXT_LENGTH, return_tensors="pt"
        )
        with torch.no_grad():
            emb = model.get_text_features(**tokens).pooler_output
        ids = [int(t) for t in tokens["input_ids"][0].tolist()]
        text.append({"id": case["id"], "text": case["text"], "tokens": ids, "embedding": _f32_list(emb[0])})
    _check_onnx(model_dir, audio, features, longer, text)
    return {"audio": audio, "text": text, "mel": mel_goldens(fe, rate, root)}


def mel_goldens(fused: ClapFeatureExtractor, rate: int, root: Path) -> list[dict[str, Any]]:
    """The front end's own output, strided, for both truncation modes on the inputs that reach
    their different branches (longer than 10 s, a few frames over, short)."""
    cases = {c["id"]: c for c in audio_cases()}
    out = []
    for mode in ("fusion", "rand_trunc"):
        fe = ClapFeatureExtractor(truncation=mode) if mode != "fusion" else fused
        for id_ in ("flac8k_mono_10min", "long_16k_21s", "just_over_48k", "wav44k_stereo_s16", "wav16k_short_0p05s"):
            case = cases[id_]
            wave = reference_waveform(_input(root, case["file"]), case["loader"], rate)
            with pinned_choices():
                inputs = fe(wave, sampling_rate=rate, return_tensors="np")
            mel = np.asarray(inputs["input_features"][0], dtype=np.float32)
            out.append(
                {
                    "id": f"{mode}:{id_}",
                    "file": case["file"],
                    "truncation": mode,
                    "shape": list(mel.shape),
                    "is_longer": bool(inputs["is_longer"][0][0]),
                    "stride": STRIDE,
                    "values": _f32_list(mel.reshape(-1)[::STRIDE]),
                }
            )
    return out


def _check_onnx(model_dir: Path, audio: list, features: list, longer: list, text: list) -> None:
    """The exported towers on the reference inputs must give the PyTorch goldens."""
    session = ort.InferenceSession(str(model_dir / ec.AUDIO_ONNX), providers=["CPUExecutionProvider"])
    audio_diff = 0.0
    for case, x, is_longer in zip(audio, features, longer):
        (got,) = session.run(
            None, {"input_features": x[None], "is_longer": np.array([[is_longer]], dtype=np.int64)}
        )
        audio_diff = max(audio_diff, float(np.max(np.abs(got[0] - np.array(case["embedding"], np.float32)))))
    session = ort.InferenceSession(str(model_dir / ec.TEXT_ONNX), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input_ids": np.array([c["tokens"] for c in text], dtype=np.int64)})
    text_diff = float(np.max(np.abs(got - np.array([c["embedding"] for c in text], np.float32))))
    print(f"  {model_dir.name}: onnxruntime vs goldens, audio {audio_diff:.2e}, text {text_diff:.2e}")
    if max(audio_diff, text_diff) > ONNX_TOLERANCE:
        raise SystemExit(f"{model_dir} does not match its PyTorch model")


def _dump(cases: list[dict[str, Any]], path: Path) -> None:
    """JSON with one case per line, so diffs stay readable."""
    lines = ["["]
    for i, case in enumerate(cases):
        body = ", ".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in case.items())
        lines.append("  {" + body + ("}," if i + 1 < len(cases) else "}"))
    lines.append("]")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def generate(root: Path, models: Path, retrain: bool = False) -> None:
    """Write ``models/clap-fixture/`` and ``root/families/clap-fixture/*.json``. The committed
    vocabulary is reused unless ``retrain`` (the goldens are only comparable on one vocabulary)."""
    torch.set_num_threads(1)
    out = models / NAME
    tokenizer_json = out / "tokenizer.json"
    committed = REPO / "models" / NAME / "tokenizer.json"
    if retrain or not committed.is_file():
        train_bpe(tokenizer_json)
    elif committed.resolve() != tokenizer_json.resolve():
        out.mkdir(parents=True, exist_ok=True)
        tokenizer_json.write_bytes(committed.read_bytes())
    model = ec.build_model(ec.fixture_config())
    ec.export(model, ClapFeatureExtractor(truncation="fusion"), tokenizer_json, out, NAME, DESCRIPTION, LICENCE)
    write_extra_inputs(root)
    cases = goldens_for(out, root)
    for key in ("audio", "text", "mel"):
        _dump(cases[key], root / GOLDENS / f"{key}.json")


def _owned(root: Path) -> set[str]:
    return {f"{GOLDENS}/{k}.json" for k in ("audio", "text", "mel")} | {f"{GOLDENS}/{f}" for f in EXTRA.values()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--retrain-tokenizer", action="store_true", help="train the vocabulary anew")
    args = parser.parse_args()
    if args.check:

        def regenerate(root: Path, _models: Path) -> None:
            generate(root, root / "models")

        raise SystemExit(goldens.check_regenerated(INPUTS, REPO / "models", regenerate, _owned))
    generate(INPUTS, REPO / "models", args.retrain_tokenizer)


if __name__ == "__main__":
    main()
