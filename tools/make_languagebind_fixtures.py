#!/usr/bin/env python3
"""The LanguageBind fixture: a tiny seeded family and its goldens from the reference package.

    python tools/make_languagebind_fixtures.py           # (re)write models/languagebind-fixture/ and the goldens
    python tools/make_languagebind_fixtures.py --check   # regenerate into a temp dir, compare with the tree

``models/languagebind-fixture/`` is ``export_languagebind.py --fixture``: the five
``LanguageBind*`` models of ``fixture_configs()`` with seeded random weights, the text tower
taken from the image model. The goldens (``tests/fixtures/families/languagebind-fixture/``) are
the reference's: the package's own transforms and loaders (``get_*_transform(config)``,
``load_and_transform_*``) and the PyTorch models (LoRA unmerged), on transformers 4.30.2 in
``tools/.venv-languagebind`` (``bindery_tools/languagebind.py``). 16-d embeddings.

Per modality, and what is left out:

* text: every text of ``tests/fixtures/text/cases.json``, then ``EXTRA_TEXTS``, through the package's
  ``LanguageBindImageTokenizer`` (transformers 4.30.2's slow ``CLIPTokenizer``: ftfy, whitespace,
  lower case; pads with ``<|endoftext|>``) on the shipped CLIP BPE, ids and padding mask into
  ``text_model`` as upstream's ``inference.py`` passes them.
* image: the cases of ``tests/fixtures/images/cases.json`` the reference can process. It never
  converts to RGB, so every image that does not open as 3-channel RGB fails in ``Normalize``
  (grey, grey+alpha, 16-bit grey, bilevel, palette, RGBA, CMYK): those are skipped, listed in
  ``SKIPPED`` with the reference's error. bindery converts every image to RGB (its rule).
* thermal: ``tests/fixtures/thermal/`` 8-bit cases. They are mostly greyscale, which the
  reference (its image path) cannot process, so each is opened and ``.convert("RGB")`` before the
  transform, as bindery converts. The 16-bit ones are left out: Pillow's conversion of ``I;16``
  to RGB saturates at 255, which is no rule of the reference or of bindery.
* depth: the 16-bit single-channel PNG and TIFF maps of ``tests/fixtures/depth/`` (cv2 reads
  them as the reference's ``opencv_loader`` does), with the model's own values (the reference's
  ``DepthNorm`` has no per-request scale, so the RealSense case is read as millimetres).
* audio: ``tests/fixtures/audio/cases.json`` (every format and length; loaded with soundfile
  instead of ``torchaudio.load``, which needs torchcodec, and by ffmpeg where the case's
  reference decoder is ffmpeg: MP3, AAC) and the CLAP fixture's 21.3 s FLAC whose thirds differ,
  so the three-chunk path is checked on audio where a misplaced chunk shows. The reference picks
  each chunk at random in its third; ``np.random.choice`` is pinned to the first index (bindery's
  rule, upstream's commented "fixed" variant).
* video: ``tests/fixtures/video/cases.json`` through decord (``load_and_transform_video`` with
  ``video_decode_backend="decord"``), ``RandomHorizontalFlipVideo`` pinned off (bindery's rule).

``preprocess.json`` holds front-end tensors for unit tests, one per line: ``id``, ``front_end``,
``file``, ``shape`` and every ``stride``-th value of the flattened tensor (``values``). They are the
audio fbank chunks ``[3, 112, 1036]`` (0.05 s, tiled; 2.2 s stereo 44.1 kHz, resampled; 21.3 s,
three chunks), the tensor-domain resize of an RGB image and of a grey thermal image converted to
RGB ``[3, 224, 224]``, the depth normalisation with ``max_depth_m`` 10 and 0 (0: divided by the
map's own maximum) ``[3, 224, 224]``, and a portrait video's frames ``[3, 8, 224, 224]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import numpy as np
import onnxruntime as ort
import torch

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import export_languagebind as el  # noqa: E402
from bindery_tools import goldens  # noqa: E402
from bindery_tools.languagebind import reference_tokenizer  # noqa: E402
from languagebind.audio import processing_audio  # noqa: E402
from languagebind.depth import processing_depth  # noqa: E402
from languagebind.image import processing_image  # noqa: E402
from languagebind.thermal import processing_thermal  # noqa: E402
from languagebind.video import processing_video  # noqa: E402
from make_audio_fixtures import LOADERS  # noqa: E402
from PIL import Image  # noqa: E402

REPO = TOOLS.parent
INPUTS = REPO / "tests" / "fixtures"
GOLDENS = "families/languagebind-fixture"
NAME = "languagebind-fixture"
ONNX_TOLERANCE = 1e-4
#: Every ``preprocess.json`` tensor keeps each STRIDE-th value (video: VIDEO_STRIDE-th).
STRIDE = 197
VIDEO_STRIDE = 997
#: Audio over the 1036-frame window whose parts differ (the shared goldens' only long input is
#: nearly silent).
LONG_AUDIO = "families/clap-fixture/inputs/long_16k_21s.flac"


@contextmanager
def first_chunks() -> Iterator[None]:
    """``waveform2melspec``'s random pick of each third, answered with its first index."""

    def choice(a: Any, *args: Any, **kwargs: Any) -> Any:
        return np.asarray(a)[0]

    with mock.patch.object(np.random, "choice", choice):
        yield


def _f32_list(t: Any) -> list[float]:
    return [float(x) for x in np.asarray(t, dtype=np.float32).reshape(-1).tolist()]


def _embed(model: Any, x: torch.Tensor) -> list[float]:
    with torch.no_grad():
        return _f32_list(model.visual_projection(model.vision_model(pixel_values=x[None])[1])[0])


# --- reference inputs -------------------------------------------------------------------------


#: Texts of this fixture's own, after the shared ones: HTML entities next to a literal "<", which
#: ftfy leaves escaped (it unescapes only text without "<") and ImageBind's cleanup would unescape,
#: so they tell the slow CLIP tokenizer's cleaning from ImageBind's (no shared text does).
EXTRA_TEXTS = {"html_entity_after_lt": "1 < 2 &amp; 3", "html_entities_with_lt": "x<y &lt;3"}


def text_cases(model: Any, tokenizer_json: Path, context: int) -> list[dict[str, Any]]:
    """Tokenized as LanguageBind's processors call the tokenizer; ids and padding mask into the
    model, as upstream's ``inference.py`` passes them."""
    tokenizer = reference_tokenizer(tokenizer_json)
    out = []
    shared = json.loads((INPUTS / "text" / "cases.json").read_text())
    for case in shared + [{"id": k, "text": v} for k, v in EXTRA_TEXTS.items()]:
        tokens = tokenizer(
            [case["text"]], max_length=context, padding="max_length", truncation=True, return_tensors="pt"
        )
        with torch.no_grad():
            pooled = model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])[1]
            emb = model.text_projection(pooled)[0]
        ids = [int(t) for t in tokens["input_ids"][0].tolist()]
        out.append({"id": case["id"], "text": case["text"], "tokens": ids, "embedding": _f32_list(emb)})
    return out


def image_inputs(config: Any) -> tuple[list[tuple[dict, torch.Tensor]], list[str]]:
    transform = processing_image.get_image_transform(config)
    done, skipped = [], []
    for case in json.loads((INPUTS / "images" / "cases.json").read_text()):
        file = "images/" + case["file"]
        try:
            x = processing_image.load_and_transform_image(str(INPUTS / file), transform)
        except (RuntimeError, ValueError, TypeError) as e:
            skipped.append(f"{case['id']} ({case['mode']}): {type(e).__name__}: {str(e).splitlines()[0]}")
            continue
        done.append(({"id": case["id"], "file": file, "mode": case["mode"]}, x))
    return done, skipped


def thermal_inputs(config: Any) -> tuple[list[tuple[dict, torch.Tensor]], list[str]]:
    transform = processing_thermal.get_thermal_transform(config)
    done, skipped = [], []
    for case in json.loads((INPUTS / "thermal" / "cases.json").read_text()):
        if case["mode"] == "I;16":
            skipped.append(f"{case['id']} (I;16): no 16-bit rule in the reference")
            continue
        file = "thermal/" + case["file"]
        # The reference's thermal loader is Image.open alone; RGB is bindery's rule.
        x = transform(Image.open(INPUTS / file).convert("RGB"))
        done.append(({"id": case["id"], "file": file, "mode": case["mode"]}, x))
    return done, skipped


def depth_inputs(config: Any) -> tuple[list[tuple[dict, torch.Tensor]], list[str]]:
    import cv2

    transform = processing_depth.get_depth_transform(config)
    done, skipped = [], []
    for case in json.loads((INPUTS / "depth" / "cases.json").read_text()):
        file = "depth/" + case["file"]
        if file.endswith(".npy"):
            skipped.append(f"{case['id']}: NPY, which the reference's cv2.imread cannot read")
            continue
        raw = cv2.imread(str(INPUTS / file), cv2.IMREAD_UNCHANGED)
        if raw.dtype != np.uint16 or raw.ndim != 2:
            skipped.append(f"{case['id']}: {raw.dtype} {list(raw.shape)}, not a 16-bit single-channel map")
            continue
        x = processing_depth.load_and_transform_depth(str(INPUTS / file), transform)
        done.append(({"id": case["id"], "file": file, "size": [raw.shape[1], raw.shape[0]]}, x))
    return done, skipped


def audio_list() -> list[dict[str, str]]:
    cases = []
    for c in json.loads((INPUTS / "audio" / "cases.json").read_text())["cases"]:
        loader = "ffmpeg" if c["decoder"].startswith("ffmpeg") else "soundfile"
        cases.append({"id": c["id"], "file": "audio/" + c["file"], "loader": loader})
    cases.append({"id": "long_16k_21s", "file": LONG_AUDIO, "loader": "soundfile"})
    return cases


def audio_tensor(config: Any, case: dict[str, str]) -> tuple[torch.Tensor, float]:
    """The reference fbank chunks of one input and its length in seconds."""
    transform = processing_audio.get_audio_transform(config)
    wave, sr = LOADERS[case["loader"]](str(INPUTS / case["file"]))
    seconds = wave.shape[1] / sr
    with first_chunks():
        return transform((wave, sr)), seconds


def audio_inputs(config: Any) -> tuple[list[tuple[dict, torch.Tensor]], list[str]]:
    done = []
    for case in audio_list():
        x, seconds = audio_tensor(config, case)
        done.append(({"id": case["id"], "file": case["file"], "seconds": round(seconds, 3)}, x))
    return done, []


def video_transform(config: Any) -> Any:
    transform = processing_video.get_video_transform(config)
    for step in transform.transforms:
        if isinstance(step, processing_video.RandomHorizontalFlipVideo):
            step.p = 0.0  # bindery's rule: no flip
    return transform


def video_tensor(config: Any, file: str) -> torch.Tensor:
    v = config.vision_config
    return processing_video.load_and_transform_video(
        str(INPUTS / file),
        video_transform(config),
        video_decode_backend=v.video_decode_backend,
        num_frames=v.num_frames,
    )


def video_inputs(config: Any) -> tuple[list[tuple[dict, torch.Tensor]], list[str]]:
    done = []
    for case in json.loads((INPUTS / "video" / "cases.json").read_text())["cases"]:
        file = "video/" + case["file"]
        done.append(({"id": Path(case["file"]).name.replace(".", "_"), "file": file}, video_tensor(config, file)))
    return done, []


READERS = {
    "image": image_inputs,
    "thermal": thermal_inputs,
    "depth": depth_inputs,
    "audio": audio_inputs,
    "video": video_inputs,
}


# --- tensors for unit tests -------------------------------------------------------------------


def _tensor_case(id_: str, front_end: str, file: str, x: torch.Tensor, stride: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": id_,
        "front_end": front_end,
        "file": file,
        **extra,
        "shape": list(x.shape),
        "stride": stride,
        "values": _f32_list(x.reshape(-1)[::stride]),
    }


def preprocess_goldens(configs: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    audio = {c["id"]: c for c in audio_list()}
    for id_ in ("wav16k_short_0p05s", "wav44k_stereo_s16", "long_16k_21s"):
        x, _ = audio_tensor(configs["audio"], audio[id_])
        out.append(_tensor_case(f"audio:{id_}", "fbank_chunks", audio[id_]["file"], x, STRIDE))
    image = processing_image.get_image_transform(configs["image"])
    file = "images/png_333x177.png"
    out.append(_tensor_case("image:png_333x177", "image", file, image(Image.open(INPUTS / file)), STRIDE))
    thermal = processing_thermal.get_thermal_transform(configs["thermal"])
    file = "thermal/gray8_100x300.bmp"
    x = thermal(Image.open(INPUTS / file).convert("RGB"))
    out.append(_tensor_case("thermal:gray8_100x300", "thermal", file, x, STRIDE))
    file = "depth/kinect_640x480.png"
    for max_depth in (float(configs["depth"].vision_config.max_depth), 0.0):
        config = configs["depth"].__class__.from_dict(configs["depth"].to_dict())
        config.vision_config.max_depth = max_depth
        x = processing_depth.load_and_transform_depth(str(INPUTS / file), processing_depth.get_depth_transform(config))
        out.append(
            _tensor_case(f"depth:kinect_max{max_depth:g}", "depth", file, x, STRIDE, max_depth_m=max_depth)
        )
    file = "video/cases/portrait.mp4"
    x = video_tensor(configs["video"], file)
    out.append(_tensor_case("video:portrait_mp4", "video", file, x, VIDEO_STRIDE))
    return out


# --- goldens ----------------------------------------------------------------------------------


def goldens_for(models: dict[str, Any], model_dir: Path) -> dict[str, list[dict[str, Any]]]:
    configs = {m: models[m].config for m in el.CHECKPOINTS}
    context = el.text_preprocess(configs["image"], model_dir / "tokenizer.json")["context_length"]
    out: dict[str, list[dict[str, Any]]] = {}
    out["text"] = text_cases(models["image"], model_dir / "tokenizer.json", context)
    tensors: dict[str, list[np.ndarray]] = {}
    for modality, read in READERS.items():
        done, skipped = read(configs[modality])
        for line in skipped:
            print(f"  {modality}: skipped {line}")
        out[modality] = [{**meta, "embedding": _embed(models[modality], x)} for meta, x in done]
        tensors[modality] = [x.numpy() for _, x in done]
    out["preprocess"] = preprocess_goldens(configs)
    _check_onnx(model_dir, out, tensors)
    return out


def _check_onnx(model_dir: Path, cases: dict[str, list], tensors: dict[str, list[np.ndarray]]) -> None:
    """The exported towers on the reference inputs must give the PyTorch goldens."""
    worst = {}
    for modality, xs in tensors.items():
        session = ort.InferenceSession(str(model_dir / el.ONNX[modality]), providers=["CPUExecutionProvider"])
        diff = 0.0
        for case, x in zip(cases[modality], xs):
            feed = x[None, None] if modality == "video" else x[None]
            (got,) = session.run(None, {el.INPUTS[modality]: feed.astype(np.float32)})
            diff = max(diff, float(np.max(np.abs(got[0] - np.array(case["embedding"], np.float32)))))
        worst[modality] = diff
    session = ort.InferenceSession(str(model_dir / el.ONNX["text"]), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input_ids": np.array([c["tokens"] for c in cases["text"]], dtype=np.int64)})
    worst["text"] = float(np.max(np.abs(got - np.array([c["embedding"] for c in cases["text"]], np.float32))))
    print("  onnxruntime vs goldens: " + ", ".join(f"{m} {d:.2e}" for m, d in worst.items()))
    if max(worst.values()) > ONNX_TOLERANCE:
        raise SystemExit(f"{model_dir} does not match its PyTorch models")


def _dump(cases: list[dict[str, Any]], path: Path) -> None:
    """JSON with one case per line, so diffs stay readable."""
    lines = ["["]
    for i, case in enumerate(cases):
        body = ", ".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in case.items())
        lines.append("  {" + body + ("}," if i + 1 < len(cases) else "}"))
    lines.append("]")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


KEYS = ("text", "image", "thermal", "depth", "audio", "video", "preprocess")


def generate(root: Path, models_root: Path) -> None:
    """Write ``models_root/languagebind-fixture/`` and ``root/families/languagebind-fixture/``."""
    torch.set_num_threads(1)
    models = {m: el.build_model(m, c) for m, c in el.fixture_configs().items()}
    out = models_root / NAME
    el.export(models.__getitem__, out, NAME, el.FIXTURE_DESCRIPTION, el.LICENCE)
    cases = goldens_for(models, out)
    for key in KEYS:
        _dump(cases[key], root / GOLDENS / f"{key}.json")


def _owned(root: Path) -> set[str]:
    return {f"{GOLDENS}/{k}.json" for k in KEYS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    if args.check:

        def regenerate(root: Path, _models: Path) -> None:
            generate(root, root / "models")

        raise SystemExit(goldens.check_regenerated(INPUTS, REPO / "models", regenerate, _owned))
    generate(INPUTS, REPO / "models")


if __name__ == "__main__":
    main()
