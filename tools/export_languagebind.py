#!/usr/bin/env python3
"""Export LanguageBind's towers (text, image, video, audio, depth, thermal) to ONNX and write a
bindery model folder.

    python tools/export_languagebind.py --checkpoint-dir DIR --out models/languagebind
    python tools/export_languagebind.py --random-full --out /tmp/languagebind-random-full
    python tools/export_languagebind.py --fixture --out models/languagebind-fixture

Runs in ``tools/.venv-languagebind`` (``tools/setup.sh --languagebind``). The reference is upstream
LanguageBind (PKU-YuanGroup/LanguageBind at ``bindery_tools.languagebind.UPSTREAM_COMMIT``) through
the PyPI ``languagebind`` 0.1.0 package, unmodified, on transformers 4.30.2, the version upstream
pins (``bindery_tools/languagebind.py`` says why not transformers 5).

Sources of the weights:

* ``--checkpoint-dir DIR``: a user's download of the Hugging Face repositories
  ``LanguageBind/LanguageBind_Image``, ``_Video_FT``, ``_Audio_FT``, ``_Depth`` and ``_Thermal``,
  one subfolder each (``DIR/LanguageBind_Image/config.json`` and its weights, ...); nothing is
  fetched. The text tower is the image checkpoint's: LanguageBind trains every modality against
  one frozen language tower.
* ``--random-full``: seeded random towers at the real models' size (ViT-L/14 vision, the 12-layer
  768-wide text tower, 768-d projection; video with temporal attention over 8 frames; audio on
  112 x 1036 fbanks), built from the package's Config classes with the values of the released
  ``config.json`` files (which cannot be fetched here), to time the export at full size.
* ``--fixture``: the tiny seeded family of ``make_languagebind_fixtures.py`` (vision 32 wide, text
  16 wide, one layer each, patch 14 so the 112 x 1036 fbank tiles, the video's temporal
  attention and LoRA adapters with random weights included).

Each vision tower is ``visual_projection(vision_model(pixel_values).pooler_output)`` and the text
tower ``text_projection(text_model(input_ids).pooler_output)``: the projected, unnormalised
embedding, output ``embedding``. LoRA adapters (the released checkpoints carry them) are merged
into the weights before export. The text tower takes the padded ids alone: upstream also passes
the padding mask, but under the causal mask the pooled end-of-text position never attends to the
padding after it. The video tower takes bindery's video slot ``[B, 1, 3, 8, 224, 224]`` and runs
the video model on the one clip, ``[B, 3, 8, 224, 224]``.

``model.toml`` takes every preprocessing value from the package's processors and configs
(``get_*_transform(config)``, ``AudioTransform``, ``DepthNorm``, the tokenizer's defaults); the
constants written in the processors' code (the fbank's 25 ms frame, three audio chunks) are
named where they are read.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort
import torch

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

from bindery_tools import any_length, clip_tokenizer  # noqa: E402
from bindery_tools.languagebind import import_languagebind  # noqa: E402
from bindery_tools.onnx_files import save_exported  # noqa: E402

lb = import_languagebind()
from languagebind.audio import processing_audio  # noqa: E402
from languagebind.depth import processing_depth  # noqa: E402
from languagebind.image import processing_image  # noqa: E402
from languagebind.thermal import processing_thermal  # noqa: E402
from languagebind.video import processing_video  # noqa: E402
from torchvision import transforms  # noqa: E402

SEED = 1234
OPSET = 17
#: Max abs difference accepted between onnxruntime and PyTorch.
TOLERANCE = 1e-3
#: The vision modalities in export order, with the checkpoint folder each comes from.
CHECKPOINTS = {
    "image": "LanguageBind_Image",
    "video": "LanguageBind_Video_FT",
    "audio": "LanguageBind_Audio_FT",
    "depth": "LanguageBind_Depth",
    "thermal": "LanguageBind_Thermal",
}
ONNX = {m: f"{m}.onnx" for m in ("text", *CHECKPOINTS)}
INPUTS = {
    "text": "input_ids",
    "image": "pixel_values",
    "video": "clips",
    "audio": "fbank",
    "depth": "pixel_values",
    "thermal": "pixel_values",
}
#: ``get_mel``'s literal ``frame_length=25`` (ms); its shift is ``DEFAULT_AUDIO_FRAME_SHIFT_MS``.
AUDIO_FRAME_LENGTH_MS = 25.0
#: ``waveform2melspec`` splits long audio into three parts and stacks three chunks.
AUDIO_CHUNKS = 3


# --- configurations ---------------------------------------------------------------------------


def _per_modality(text: dict, vision: dict, extra: dict[str, dict], projection: int) -> dict[str, Any]:
    return {
        m: lb.config_dict[m](text_config=text, vision_config={**vision, **extra.get(m, {})}, projection_dim=projection)
        for m in CHECKPOINTS
    }


def fixture_configs() -> dict[str, Any]:
    """Tiny towers with every feature of the real ones: patch 14 (112 x 1036 tiles into 8 x 74),
    temporal attention over 8 frames, LoRA adapters, the audio statistics of the release."""
    text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, patch_size=14, lora_r=2
    )
    return _per_modality(text, vision, _RELEASE_VISION, projection=16)


#: The modality-specific ``vision_config`` values of the released checkpoints' ``config.json``
#: (upstream ``model/languagebind.py`` and ``scripts/*/train.sh`` set the same at training).
_RELEASE_VISION: dict[str, dict[str, Any]] = {
    "video": dict(add_time_attn=True, num_frames=8, video_decode_backend="decord"),
    "audio": dict(
        num_mel_bins=112, target_length=1036, audio_sample_rate=16000, audio_mean=-4.2677393, audio_std=4.5689974
    ),
    "depth": dict(max_depth=10),
}


def full_configs() -> dict[str, Any]:
    """The released towers' size: ViT-L/14 vision (24 layers, 1024 wide), CLIP-L's 12-layer
    768-wide text tower, 768-d projection; LoRA rank 16 (video, audio) and 2 (depth, thermal)
    as upstream's training scripts use (the image tower has none)."""
    text = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
    vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14)
    lora = {"image": 0, "video": 16, "audio": 16, "depth": 2, "thermal": 2}
    extra = {m: {**_RELEASE_VISION.get(m, {}), "lora_r": r} for m, r in lora.items()}
    return _per_modality(text, vision, extra, projection=768)


def build_model(modality: str, config: Any, seed: int = SEED) -> Any:
    """A seeded random model; LoRA's B matrices (zero at init), the temporal embeddings and the
    layer norms' scales get random values too, so the fixture exercises them."""
    torch.manual_seed(seed + list(CHECKPOINTS).index(modality))
    model = lb.model_dict[modality](config).eval()
    gen = torch.Generator().manual_seed(seed + 100 + list(CHECKPOINTS).index(modality))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "temporal_embedding" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
            elif name.endswith("layer_norm1.weight") or name.endswith("layer_norm2.weight"):
                p.copy_(1.0 + torch.randn(p.shape, generator=gen) * 0.1)
    return model


def load_checkpoint(folder: Path, modality: str) -> Any:
    path = folder / CHECKPOINTS[modality]
    if not (path / "config.json").is_file():
        raise SystemExit(f"{path} is not a downloaded {CHECKPOINTS[modality]} folder (no config.json)")
    return lb.model_dict[modality].from_pretrained(str(path), local_files_only=True).eval()


# --- towers -----------------------------------------------------------------------------------


def merged(model: Any) -> Any:
    """A copy of ``model`` with its LoRA adapters merged into the encoder's weights (peft wraps
    the vision encoder when ``lora_r`` > 0)."""
    model = copy.deepcopy(model)
    encoder = model.vision_model.encoder
    if hasattr(encoder, "merge_and_unload"):
        model.vision_model.encoder = encoder.merge_and_unload()
    return model


class VisionTower(torch.nn.Module):
    """The projected, unnormalised embedding of one vision modality."""

    def __init__(self, model: Any, video: bool = False):
        super().__init__()
        self.vision_model = model.vision_model
        self.projection = model.visual_projection
        self.video = video

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.video:
            x = x[:, 0]  # bindery's video slot has a clip axis; LanguageBind takes one clip
        return self.projection(self.vision_model(pixel_values=x)[1])


class TextTower(torch.nn.Module):
    def __init__(self, model: Any):
        super().__init__()
        self.text_model = model.text_model
        self.projection = model.text_projection

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.projection(self.text_model(input_ids=input_ids)[1])


def example_input(modality: str, config: Any, batch: int, gen: torch.Generator) -> torch.Tensor:
    v = config.vision_config
    # resize_pos rewrites image_size as [height, width].
    side = v.image_size if isinstance(v.image_size, int) else v.image_size[0]
    if modality == "text":
        ids = torch.full((batch, config.text_config.max_position_embeddings), 49407, dtype=torch.int64)
        for row in range(batch):
            # Lengths 3, 10, ... 73, then round again: every row ends within the context.
            n = 3 + (7 * row) % 74
            ids[row, 0] = 49406
            ids[row, 1 : n - 1] = torch.randint(256, 49000, (n - 2,), generator=gen)
        return ids
    if modality == "audio":
        return torch.randn(batch, 3, v.num_mel_bins, v.target_length, generator=gen)
    if modality == "video":
        return torch.randn(batch, 1, 3, v.num_frames, side, side, generator=gen)
    return torch.randn(batch, 3, side, side, generator=gen)


def export_tower(modality: str, model: Any, out: Path) -> float:
    """Exports one tower from ``model`` (LoRA merged); returns the largest difference between
    onnxruntime and the unmerged PyTorch model at batch sizes 1 and 2."""
    tower_of = (lambda m: TextTower(m)) if modality == "text" else (lambda m: VisionTower(m, modality == "video"))
    gen = torch.Generator().manual_seed(7)
    x = example_input(modality, model.config, 2, gen)
    name = INPUTS[modality]
    dest = out / ONNX[modality]
    with torch.no_grad():
        tower = tower_of(merged(model)).eval()
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / dest.name
            # Hugging Face's CLIP text model takes its positions and causal mask to the input's
            # length, so the text tower is traced short with its length axis free (checked by
            # any_length.verify_cut below, and served with trim_padding).
            example, axes = x[:1], {0: "batch"}
            if modality == "text":
                example, axes = x[:1, : any_length.TRACE_LENGTH], {0: "batch", 1: "length"}
            torch.onnx.export(
                tower,
                (example,),
                str(raw),
                input_names=[name],
                output_names=["embedding"],
                dynamic_axes={name: axes, "embedding": {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
            save_exported(raw, dest)
        del tower
        want = tower_of(model).eval()(x).numpy()
    session = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n in (1, 2):
        (got,) = session.run(None, {name: x[:n].numpy()})
        worst = max(worst, float(np.max(np.abs(got - want[:n]))))
    return worst


# --- manifest ---------------------------------------------------------------------------------


def _steps(transform: Any) -> list[Any]:
    return list(getattr(transform, "transforms", [transform]))


def _one(steps: list[Any], kind: type) -> Any:
    found = [s for s in steps if isinstance(s, kind)]
    if len(found) != 1:
        raise SystemExit(f"expected one {kind.__name__} in the reference transform, found {len(found)}")
    return found[0]


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values]


def _image_like(transform: Any) -> dict[str, Any]:
    """resize, crop, filter and normalisation of a ``Compose`` of torchvision transforms, and
    where the resize runs: ``tensor`` when ``ToTensor`` (or a tensor-making step) comes first."""
    steps = _steps(transform)
    resize = _one(steps, transforms.Resize)
    crop = _one(steps, transforms.CenterCrop)
    norm = _one(steps, transforms.Normalize)
    if resize.interpolation != transforms.InterpolationMode.BICUBIC or resize.antialias is False:
        raise SystemExit(f"unsupported resize {resize!r}")
    size = resize.size if isinstance(resize.size, int) else resize.size[0]
    crop_size = crop.size[0] if isinstance(crop.size, (tuple, list)) else crop.size
    first_tensor = next(i for i, s in enumerate(steps) if not isinstance(s, (transforms.Resize, transforms.CenterCrop)))
    domain = "tensor" if first_tensor < steps.index(resize) else "pil"
    return {
        "resize": int(size),
        "crop": int(crop_size),
        "filter": "bicubic",
        "mean": _floats(norm.mean),
        "std": _floats(norm.std),
        "resize_domain": domain,
    }


def image_preprocess(config: Any) -> dict[str, Any]:
    t = _image_like(processing_image.get_image_transform(config))
    t["interpolation"] = t.pop("filter")
    return {k: t[k] for k in ("resize", "crop", "interpolation", "mean", "std", "resize_domain")}


def thermal_preprocess(config: Any) -> dict[str, Any]:
    t = _image_like(processing_thermal.get_thermal_transform(config))
    keys = ("resize", "crop", "filter", "channels", "mean", "std", "resize_domain")
    return {k: len(t["mean"]) if k == "channels" else t[k] for k in keys}


def depth_preprocess(config: Any) -> dict[str, Any]:
    transform = processing_depth.get_depth_transform(config)
    norm = _one(_steps(transform), processing_depth.DepthNorm)
    t = _image_like(transform)
    return {
        "conversion": "normalized",
        "resize": t["resize"],
        "crop": t["crop"],
        "filter": t["filter"],
        "channels": len(t["mean"]),
        "mean": t["mean"],
        "std": t["std"],
        "depth_scale": 1.0 / float(norm.scale),
        "min_depth_m": float(norm.min_depth),
        "max_depth_m": float(norm.max_depth),
        "resize_domain": t["resize_domain"],
    }


def _check_audio_literals(a: Any) -> None:
    """The two values written as literals in the reference's code, checked against what it
    does: the number of fbank frames of one second (25 ms frames every shift) and of chunks."""
    rate, shift = int(a.sample_rate), float(processing_audio.DEFAULT_AUDIO_FRAME_SHIFT_MS)
    second = torch.sin(torch.arange(rate, dtype=torch.float32))[None]
    frames = a.get_mel(second.clone()).shape[0]
    window, hop = int(rate * AUDIO_FRAME_LENGTH_MS / 1000), int(rate * shift / 1000)
    if frames != 1 + (rate - window) // hop:
        raise SystemExit(f"the reference fbank gives {frames} frames a second, not {AUDIO_FRAME_LENGTH_MS} ms ones")
    chunks = a.waveform2melspec(second.repeat(1, 2 + a.target_length // 100)).shape[0]
    if chunks != AUDIO_CHUNKS:
        raise SystemExit(f"the reference stacks {chunks} chunks, not {AUDIO_CHUNKS}")


def audio_preprocess(config: Any) -> dict[str, Any]:
    a = processing_audio.get_audio_transform(config)
    _check_audio_literals(a)
    return {
        "front_end": "fbank_chunks",
        "sample_rate": int(a.sample_rate),
        "num_mel_bins": int(a.num_mel_bins),
        "target_length": int(a.target_length),
        "frame_length_ms": AUDIO_FRAME_LENGTH_MS,
        "frame_shift_ms": float(processing_audio.DEFAULT_AUDIO_FRAME_SHIFT_MS),
        "mean": float(a.audio_mean),
        # waveform2melspec divides by ``audio_std * 2``.
        "std": float(a.audio_std) * 2,
        "chunks": AUDIO_CHUNKS,
        "chunk_pick": "first",
    }


def video_preprocess(config: Any) -> dict[str, Any]:
    v = config.vision_config
    if v.video_decode_backend != "decord":
        raise SystemExit(f"video_decode_backend {v.video_decode_backend!r}: bindery follows the decord path")
    steps = _steps(processing_video.get_video_transform(config))
    scale = _one(steps, processing_video.ShortSideScale)
    crop = _one(steps, processing_video.CenterCropVideo)
    norm = _one(steps, processing_video.NormalizeVideo)
    crop_size = crop.crop_size[0] if isinstance(crop.crop_size, (tuple, list)) else crop.crop_size
    return {
        "sampler": "frames",
        "clips": 1,
        "frames_per_clip": int(v.num_frames),
        "size": int(scale._size),
        "crop": int(crop_size),
        "crops": 1,
        "mean": _floats(norm.mean),
        "std": _floats(norm.std),
        # bindery's rule: the reference's RandomHorizontalFlipVideo(p=0.5) is not applied.
        "flip": "none",
    }


def text_preprocess(config: Any, tokenizer_json: Path) -> dict[str, Any]:
    """Token ids from the tokenizer's defaults (LanguageBind pads with ``<|endoftext|>``) looked up
    in the shipped vocabulary, and the processors' ``context_length``."""
    defaults = inspect.signature(lb.LanguageBindImageTokenizer.__init__).parameters
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    context = inspect.signature(lb.LanguageBindImageProcessor.__call__).parameters["context_length"].default
    if context > config.text_config.max_position_embeddings:
        raise SystemExit(f"context_length {context} exceeds the text tower's positions")
    return {
        "tokenizer": "tokenizer.json",
        "tokenizer_kind": "clip",
        "context_length": int(context),
        "clean": "ftfy_lower",
        "start_token": vocab[defaults["bos_token"].default],
        "end_token": vocab[defaults["eos_token"].default],
        "pad_token": vocab[defaults["pad_token"].default],
    }


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


_NOTES = {
    "text": "# CLIP text tower (causal); input: the padded ids, pooled at the first end-of-text id.",
    "image": "# ToTensor first, then torchvision's antialiased bicubic resize on the float tensor.",
    "video": "# One clip of 8 frames ([B, 1, 3, 8, 224, 224]); the graph drops the clip axis.",
    "audio": "# Three 112 x 1036 fbank chunks as channels ([B, 3, 112, 1036]).",
    "depth": "# LanguageBind's DepthNorm: metres clipped to [min, max], divided by max, as 3 channels.",
    "thermal": "# LanguageBind's thermal path is its image path.",
}


def write_manifest(
    out: Path,
    name: str,
    description: str,
    licence: str,
    configs: dict[str, Any],
    scales: dict[str, float],
    cut_text: bool,
) -> None:
    """``scales``: each checkpoint's ``exp(logit_scale)``, which ``LanguageBind.forward`` multiplies
    that modality's normalised embeddings by (the language tower's are not scaled). ``cut_text``:
    the text tower passed ``any_length.verify_cut``."""
    image = configs["image"]
    text = text_preprocess(image, out / "tokenizer.json")
    sections = {
        "text": {**text, **({"trim_padding": True} if cut_text else {})},
        "image": image_preprocess(image),
        "video": video_preprocess(configs["video"]),
        "audio": audio_preprocess(configs["audio"]),
        "depth": depth_preprocess(configs["depth"]),
        "thermal": thermal_preprocess(configs["thermal"]),
    }
    dims = {int(c.projection_dim) for c in configs.values()}
    if len(dims) != 1:
        raise SystemExit(f"towers project to different dimensions: {sorted(dims)}")
    lines = [
        f"name = {json.dumps(name)}",
        'family = "languagebind"',
        f"description = {json.dumps(description)}",
        f"licence = {json.dumps(licence)}",
        f"embedding_dim = {dims.pop()}",
    ]
    for modality, table in sections.items():
        lines += [
            "",
            _NOTES[modality],
            f"[{modality}]",
            f'onnx = "{ONNX[modality]}"',
            f'input = "{INPUTS[modality]}"',
            'output = "embedding"',
            *([f"logit_scale = {scales[modality]:.7g}"] if modality in scales else []),
            "",
            f"[{modality}.preprocess]",
            *(f"{k} = {_toml_value(v)}" for k, v in table.items()),
        ]
    (out / "model.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def export(load: Callable[[str], Any], out: Path, name: str, description: str, licence: str) -> dict[str, Any]:
    """Writes ``out/`` (six towers, ``tokenizer.json``, ``model.toml``) from the models ``load``
    gives per modality, one at a time (full-size models are large); returns seconds and
    onnxruntime's largest difference from PyTorch per tower."""
    out.mkdir(parents=True, exist_ok=True)
    clip_tokenizer.build_tokenizer_json(out / "tokenizer.json")
    info: dict[str, Any] = {}
    configs = {}
    scales = {}
    for modality in CHECKPOINTS:
        started = time.perf_counter()
        model = load(modality)
        configs[modality] = model.config
        scales[modality] = float(model.logit_scale.detach().exp())
        info[f"{modality}_load_s"] = round(time.perf_counter() - started, 2)
        # The language tower is the image checkpoint's.
        for tower in ("text", "image") if modality == "image" else (modality,):
            started = time.perf_counter()
            diff = export_tower(tower, model, out)
            info[tower] = {"seconds": round(time.perf_counter() - started, 2), "max_diff": diff}
            print(f"  {tower}: {info[tower]}", flush=True)
        del model
    bad = {m: i["max_diff"] for m, i in info.items() if isinstance(i, dict) and i["max_diff"] > TOLERANCE}
    if bad:
        raise SystemExit(f"onnxruntime differs from PyTorch: {bad}")
    pad = text_preprocess(configs["image"], out / "tokenizer.json")["pad_token"]
    tokens = example_input("text", configs["image"], 48, torch.Generator().manual_seed(2)).numpy()
    cut_text = any_length.verify_cut(out / ONNX["text"], INPUTS["text"], "embedding", tokens, pad)
    write_manifest(out, name, description, licence, configs, scales, cut_text)
    return info


FIXTURE_DESCRIPTION = (
    "Tiny LanguageBind (vision 32 wide, text 16 wide, one layer each, patch 14, video temporal "
    "attention over 8 frames, LoRA rank 2; random weights, seed 1234); embeddings carry no meaning."
)
LICENCE = "MIT (LanguageBind code); seeded random weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint-dir", type=Path, help="folder of the downloaded LanguageBind_* repositories")
    source.add_argument("--random-full", action="store_true", help="full-size random weights (timing)")
    source.add_argument("--fixture", action="store_true", help="the tiny seeded test family")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", help="model name (default: the folder name)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.checkpoint_dir:

        def load(modality: str) -> Any:
            return load_checkpoint(args.checkpoint_dir, modality)

        description = f"LanguageBind ({', '.join(CHECKPOINTS.values())}) exported by tools/export_languagebind.py"
        licence = "MIT (LanguageBind code and weights)"
    else:
        configs = full_configs() if args.random_full else fixture_configs()

        def load(modality: str) -> Any:
            return build_model(modality, configs[modality])

        if args.random_full:
            description = "Full-size LanguageBind towers (ViT-L/14, CLIP-L text), seeded random weights; no meaning."
            licence = LICENCE
        else:
            description, licence = FIXTURE_DESCRIPTION, LICENCE
    info = export(load, args.out, args.name or args.out.name, description, licence)
    sizes = {f.name: f.stat().st_size for f in sorted(args.out.iterdir())}
    total = time.perf_counter() - started
    print(json.dumps({"towers": info, "total_s": total, "bytes": sizes}, indent=1))


if __name__ == "__main__":
    main()
