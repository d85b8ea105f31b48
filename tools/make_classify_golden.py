#!/usr/bin/env python3
"""Zero-shot classification golden for bindery's ``Classify`` RPC, from the reference ImageBind code.

    tools/.venv/bin/python tools/make_classify_golden.py          # (re)write the golden
    tools/.venv/bin/python tools/make_classify_golden.py --check  # compare with the committed one

Writes ``tests/fixtures/similarity/classify.json``. Committed fixture inputs (images, audio and a
text) go through the reference preprocessing (``imagebind.data.load_and_transform_*``) and the
PyTorch fixture model (``bindery_tools.reference.build_fixture_model``, the seeded model that
``export_imagebind.py --fixture`` exports), one input per forward pass. Each label prompt
(template with the label substituted) goes through ``load_and_transform_text`` and the text
tower. Then, with numpy in float64:

* unit embeddings: the tower outputs divided by their norm (the reference towers end with a
  normalisation, then a modality's logit scale);
* a label's embedding: the unit-norm mean of its unit prompt embeddings (the CLIP/ULIP prompt
  ensemble);
* logits: ``scale(input modality) * scale(text) * cosine``, with each scale read from the
  reference model's logit-scaling modules; this equals the dot product of the towers' raw
  outputs, as in ImageBind's ``vision x text`` example;
* probabilities: the softmax of the logits over the labels.

Audio files are read with ``soundfile`` in place of ``torchaudio.load`` (as
``make_audio_fixtures.py`` does, so the decoded samples are the ones its goldens use).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import goldens  # noqa: E402
from bindery_tools import reference as ref  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
OUT = FIXTURES / "similarity" / "classify.json"

#: (id, modality, file under tests/fixtures or the text itself).
INPUTS = [
    ("photo_rgb", "image", "images/png_rgb.png"),
    ("photo_wide", "image", "images/png_333x177.png"),
    ("photo_bmp", "image", "images/bmp_rgb24.bmp"),
    ("sound_16k", "audio", "audio/cases/wav16k_mono_s16_5s.wav"),
    ("sound_44k", "audio", "audio/cases/wav44k_stereo_s16.wav"),
    ("caption", "text", "a small dog running on a beach"),
]

#: Requests: labels and templates (an empty template list means the single template "{}").
REQUESTS = [
    {
        "id": "ensemble",
        "labels": ["dog", "cat", "piano", "red car", "bird", "thunderstorm"],
        "templates": ["a photo of a {}.", "a blurry photo of the {}.", "the sound of a {}", "{}"],
    },
    {
        "id": "plain",
        "labels": ["a dog", "a cat", "a guitar", "rain on a roof"],
        "templates": [],
    },
]

MODALITY = {
    "image": ref.ModalityType.VISION,
    "audio": ref.ModalityType.AUDIO,
    "text": ref.ModalityType.TEXT,
}


def _load_soundfile(path: str) -> tuple[torch.Tensor, int]:
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(x.T)), sr


def _preprocess(modality: str, source: str) -> torch.Tensor:
    if modality == "image":
        return ref.data.load_and_transform_vision_data([str(FIXTURES / source)], "cpu")
    if modality == "audio":
        p = ref.audio_preprocess_params()
        with mock.patch.object(ref.data.torchaudio, "load", _load_soundfile):
            return ref.data.load_and_transform_audio_data(
                [str(FIXTURES / source)],
                "cpu",
                num_mel_bins=p["num_mel_bins"],
                target_length=p["target_length"],
                sample_rate=p["sample_rate"],
                clip_duration=p["clip_duration"],
                clips_per_video=p["clips_per_input"],
                mean=p["mean"],
                std=p["std"],
            )
    return ref.data.load_and_transform_text([source], "cpu")


def _raw(model: torch.nn.Module, modality: str, tensor: torch.Tensor) -> np.ndarray:
    key = MODALITY[modality]
    with torch.no_grad():
        out = model({key: tensor})[key]
    return out[0].numpy().astype(np.float64)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _f32(x: float) -> float:
    # The exact value of the float32 nearest to x, so any JSON reader recovers that float32.
    return float(np.float32(x))


def generate() -> dict:
    model = ref.build_fixture_model()
    scales = {m: ref.logit_scale(model, key) for m, key in MODALITY.items()}
    inputs = []
    for input_id, modality, source in INPUTS:
        unit = _unit(_raw(model, modality, _preprocess(modality, source)))
        entry = {"id": input_id, "modality": modality}
        entry["file" if modality != "text" else "text"] = source
        inputs.append((entry, unit))
    requests = []
    for req in REQUESTS:
        templates = req["templates"] or ["{}"]
        labels = []
        for label in req["labels"]:
            prompts = [t.replace("{}", label, 1) for t in templates]
            units = [_unit(_raw(model, "text", _preprocess("text", p))) for p in prompts]
            labels.append(_unit(np.mean(units, axis=0)))
        label_matrix = np.stack(labels)
        results = []
        for entry, unit in inputs:
            scale = scales[entry["modality"]] * scales["text"]
            cosines = label_matrix @ unit
            logits = scale * cosines
            e = np.exp(logits - logits.max())
            probabilities = e / e.sum()
            results.append(
                {
                    "id": entry["id"],
                    "logit_scale": _f32(scale),
                    "cosines": [_f32(c) for c in cosines],
                    "probabilities": [_f32(p) for p in probabilities],
                }
            )
        requests.append({**req, "results": results})
    return {
        "reference": "imagebind-unofficial 0.1.1: imagebind.data.load_and_transform_{vision,audio,text}_data "
        "and bindery_tools.reference.build_fixture_model(); probabilities computed with numpy (float64)",
        "model": "imagebind-fixture",
        "logit_scales": {m: _f32(s) for m, s in scales.items()},
        "inputs": [entry for entry, _ in inputs],
        "requests": requests,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed golden")
    args = parser.parse_args()
    if args.check:
        write = lambda root, _: (root / OUT.name).write_text(json.dumps(generate(), indent=1) + "\n")  # noqa: E731
        sys.exit(goldens.check_regenerated(OUT.parent, Path(), write, lambda _: {OUT.name}))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(generate(), indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
