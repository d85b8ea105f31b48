"""The reference ImageBind implementation (imagebind-unofficial 0.1.1) as bindery's tools use it.

Everything numeric that bindery must reproduce (preprocessing constants, logit scales, tower
outputs) is read here from the reference package itself rather than restated, so the manifest and
the golden files follow the reference if it changes.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator
from unittest import mock

import numpy as np
import torch
from PIL import Image

from .compat import install_torchvision_alias

install_torchvision_alias()

# Imported after the alias on purpose: imagebind.data pulls in pytorchvideo.
import imagebind.data as data  # noqa: E402
from imagebind.models import imagebind_model, multimodal_preprocessors  # noqa: E402
from imagebind.models.helpers import LearnableLogitScaling  # noqa: E402
from imagebind.models.imagebind_model import ModalityType  # noqa: E402

__all__ = [
    "FIXTURE_SEED",
    "ModalityType",
    "TOWERS",
    "Tower",
    "TowerSpec",
    "audio_preprocess_params",
    "build_fixture_model",
    "build_huge_model",
    "data",
    "float32_literal",
    "image_preprocess_params",
    "logit_scale",
    "text_preprocess_params",
    "video_preprocess_params",
]

#: Seed for the fixture model's random weights; the committed ONNX files and goldens depend on it.
FIXTURE_SEED = 1234

# Fixture model size: big enough to run every code path of the real model, small enough to commit.
FIXTURE_WIDTH = 32
FIXTURE_BLOCKS = 1
FIXTURE_HEADS = 4


def build_fixture_model() -> torch.nn.Module:
    """The tiny, seeded ImageBind model behind ``models/imagebind-fixture`` (eval mode).

    Same architecture and input geometry as ImageBind-huge, with every tower 32 wide and one
    block deep. Construction order is fixed by the reference constructor, so the seed alone
    determines every weight.
    """
    w, blocks, heads = FIXTURE_WIDTH, FIXTURE_BLOCKS, FIXTURE_HEADS
    torch.manual_seed(FIXTURE_SEED)
    model = imagebind_model.ImageBindModel(
        video_frames=2,
        kernel_size=(2, 14, 14),
        out_embed_dim=w,
        vision_embed_dim=w,
        vision_num_blocks=blocks,
        vision_num_heads=heads,
        text_embed_dim=w,
        text_num_blocks=blocks,
        text_num_heads=heads,
        audio_embed_dim=w,
        audio_num_blocks=blocks,
        audio_num_heads=heads,
        audio_num_mel_bins=128,
        audio_target_len=204,
        audio_drop_path=0.0,
        depth_embed_dim=w,
        depth_num_blocks=blocks,
        depth_num_heads=heads,
        thermal_embed_dim=w,
        thermal_num_blocks=blocks,
        thermal_num_heads=heads,
        imu_embed_dim=w,
        imu_num_blocks=blocks,
        imu_num_heads=heads,
    )
    return model.eval()


def build_base_model(seed: int = 0) -> torch.nn.Module:
    """ImageBind with ViT-B-like widths and random weights (eval mode): vision and audio 768 wide
    with 12 blocks of 12 heads, text 512 wide with 12 blocks of 8 heads, a 512-dim shared space.

    Realistically sized towers for measuring inference-bound serving; not a trained model.
    """
    torch.manual_seed(seed)
    model = imagebind_model.ImageBindModel(
        video_frames=2,
        kernel_size=(2, 14, 14),
        out_embed_dim=512,
        vision_embed_dim=768,
        vision_num_blocks=12,
        vision_num_heads=12,
        text_embed_dim=512,
        text_num_blocks=12,
        text_num_heads=8,
        audio_embed_dim=768,
        audio_num_blocks=12,
        audio_num_heads=12,
        audio_num_mel_bins=128,
        audio_target_len=204,
        audio_drop_path=0.0,
        # Towers bindery does not serve; kept small so building the model stays fast.
        depth_embed_dim=32,
        depth_num_blocks=1,
        depth_num_heads=4,
        thermal_embed_dim=32,
        thermal_num_blocks=1,
        thermal_num_heads=4,
        imu_embed_dim=32,
        imu_num_blocks=1,
        imu_num_heads=4,
    )
    return model.eval()


def build_huge_model(checkpoint: Path | None) -> torch.nn.Module:
    """ImageBind-huge (eval mode), with the official weights when ``checkpoint`` is given.

    Without a checkpoint the weights are the reference's random initialisation, which exercises
    the export path (sizes, external data) without the 4.5 GB download.
    """
    model = imagebind_model.imagebind_huge(pretrained=False)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval()


class Tower(torch.nn.Module):
    """One modality of an ImageBind model as a single-input module.

    Returns exactly ``model({modality: x})[modality]``: preprocessor, trunk, head and
    postprocessor (normalisation and logit scale), including the clip averaging the model does
    for 5-D inputs such as audio.
    """

    def __init__(self, model: torch.nn.Module, modality: str) -> None:
        super().__init__()
        self.model = model
        self.modality = modality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The modality's embedding for a batch of preprocessed inputs."""
        return self.model({self.modality: x})[self.modality]


@dataclass(frozen=True)
class TowerSpec:
    """How one tower is exported: manifest section, file and tensor names, example input."""

    section: str
    modality: str
    onnx: str
    input: str
    output: str
    example: Callable[[int, torch.Generator], torch.Tensor]


def _example_tokens(batch: int, gen: torch.Generator) -> torch.Tensor:
    # Shaped like real tokenizer output: start, ids, end (the row's largest id), zero padding.
    ctx = 77
    tokens = torch.zeros(batch, ctx, dtype=torch.int64)
    for row in range(batch):
        n = int(torch.randint(0, ctx - 1, (1,), generator=gen))
        tokens[row, 0] = 49406
        tokens[row, 1 : n + 1] = torch.randint(1, 49406, (n,), generator=gen)
        tokens[row, n + 1] = 49407
    return tokens


def _example_pixels(batch: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(batch, 3, 224, 224, generator=gen)


def _example_clips(batch: int, gen: torch.Generator) -> torch.Tensor:
    # load_and_transform_video_data's output: 5 clips x 3 crops, each [3, 2, 224, 224].
    return torch.randn(batch, 15, 3, 2, 224, 224, generator=gen)


def _example_fbank(batch: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(batch, 3, 1, 128, 204, generator=gen)


def _example_single_channel(batch: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(batch, 1, 224, 224, generator=gen)


def _example_imu(batch: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(batch, 6, 2000, generator=gen)


#: The towers bindery serves, in manifest order.
TOWERS = (
    TowerSpec("text", ModalityType.TEXT, "text.onnx", "tokens", "embedding", _example_tokens),
    TowerSpec("image", ModalityType.VISION, "vision.onnx", "pixels", "embedding", _example_pixels),
    TowerSpec("audio", ModalityType.AUDIO, "audio.onnx", "fbank", "embedding", _example_fbank),
    # The vision tower again, on a video's clips [B, S, 3, 2, H, W]: the model's own forward
    # reads an input of 5 or more dimensions as S clips of one item and averages their
    # normalised embeddings, so the clip mean is part of the graph (as the audio tower's is).
    TowerSpec("video", ModalityType.VISION, "video.onnx", "clips", "embedding", _example_clips),
    TowerSpec(
        "thermal",
        ModalityType.THERMAL,
        "thermal.onnx",
        "thermal",
        "embedding",
        _example_single_channel,
    ),
    TowerSpec("imu", ModalityType.IMU, "imu.onnx", "imu", "embedding", _example_imu),
    TowerSpec(
        "depth", ModalityType.DEPTH, "depth.onnx", "depth", "embedding", _example_single_channel
    ),
)


@contextlib.contextmanager
def traceable_unfold() -> Iterator[None]:
    """Within the block, ``Tensor.unfold`` of the last axis into non-overlapping windows (the IMU
    preprocessor's patchify) is the equal reshape. The tracing exporter writes that unfold as one
    slice per window plus a concat that onnxruntime's shape inference rejects; the reshape
    exports cleanly. The exporter's check compares the ONNX tower with the unpatched model."""
    original = torch.Tensor.unfold

    def unfold(self: torch.Tensor, dimension: int, size: int, step: int) -> torch.Tensor:
        last = dimension in (-1, self.dim() - 1)
        if last and size == step and self.shape[-1] % size == 0:
            return self.reshape(*self.shape[:-1], self.shape[-1] // size, size)
        return original(self, dimension, size, step)

    torch.Tensor.unfold = unfold  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.unfold = original  # type: ignore[method-assign]


@contextlib.contextmanager
def any_length_text() -> Iterator[None]:
    """Within the block, ImageBind's text preprocessor takes id rows of any length up to its
    context: it adds the first ``length`` positional embeddings and masks with the top-left
    ``length x length`` of its causal mask, where the reference always adds and masks all 77.
    For a row cut after its end id this is the same computation on every position the pooled
    (end id) output reads, since causal attention never looks right. Exported under this patch,
    the text tower takes a free length axis and the server can cut a batch's padding; the
    exporter checks the cut graph against the unpatched model at full length and against its
    own whole rows."""
    original = multimodal_preprocessors.TextPreprocessor.forward

    def forward(self: Any, text: torch.Tensor) -> dict[str, Any]:
        if self.num_cls_tokens:
            return original(self, text)
        length = text.shape[1]
        tokens = self.token_embedding(text) + self.pos_embed[:, :length]
        out: dict[str, Any] = {"trunk": {"tokens": tokens}, "head": {}}
        if self.supply_seq_len_to_head:
            out["head"] = {"seq_len": text.argmax(dim=-1)}
        if self.causal_masking:
            out["trunk"]["attn_mask"] = self.mask[:length, :length]
        return out

    multimodal_preprocessors.TextPreprocessor.forward = forward  # type: ignore[method-assign]
    try:
        yield
    finally:
        multimodal_preprocessors.TextPreprocessor.forward = original  # type: ignore[method-assign]


def logit_scale(model: torch.nn.Module, modality: str) -> float:
    """The factor the model's postprocessor multiplies the unit embedding by (1.0 if none)."""
    post = model.modality_postprocessors[modality]
    scales = [m for m in post.modules() if isinstance(m, LearnableLogitScaling)]
    if not scales:
        return 1.0
    if len(scales) > 1:
        raise ValueError(f"{modality}: more than one logit scaling module")
    s = scales[0]
    with torch.no_grad():
        return float(torch.clip(s.log_logit_scale.exp(), max=s.max_logit_scale))


def text_preprocess_params() -> dict[str, Any]:
    """Context length and special ids of the reference ``SimpleTokenizer``."""
    tok = data.SimpleTokenizer(bpe_path=data.return_bpe_path())
    empty = tok("")
    return {
        "context_length": int(tok.context_length),
        "start_token": int(tok.encoder["<|startoftext|>"]),
        "end_token": int(tok.encoder["<|endoftext|>"]),
        # The reference pads by leaving its zero-filled buffer untouched; read it back.
        "pad_token": int(empty[-1]),
    }


def image_preprocess_params() -> dict[str, Any]:
    """Resize, crop, filter and normalisation of ``load_and_transform_vision_data``.

    The transform is built inside that function, so it is captured by running the function once
    on a throw-away image with ``Compose`` wrapped.
    """
    transforms = data.transforms
    captured: list[Any] = []

    class RecordingCompose(transforms.Compose):
        def __init__(self, steps: list[Any]) -> None:
            super().__init__(steps)
            captured.append(self)

    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.png"
        Image.new("RGB", (8, 8)).save(probe)
        with mock.patch.object(transforms, "Compose", RecordingCompose):
            data.load_and_transform_vision_data([str(probe)], "cpu")
    if len(captured) != 1:
        raise ValueError("could not capture the reference vision transform")
    steps = {type(s).__name__: s for s in captured[0].transforms}
    resize, crop, norm = steps["Resize"], steps["CenterCrop"], steps["Normalize"]

    def side(v: Any) -> int:
        v = [v] if isinstance(v, int) else list(v)
        if len(set(v)) != 1:
            raise ValueError(f"non-square size {v}")
        return int(v[0])

    return {
        "resize": side(resize.size),
        "crop": side(crop.size),
        "interpolation": resize.interpolation.value,
        "mean": [float(x) for x in norm.mean],
        "std": [float(x) for x in norm.std],
    }


def _fbank_call_keywords() -> dict[str, Any]:
    """Literal keyword arguments of the ``kaldi.fbank`` call in ``waveform2melspec``."""
    tree = ast.parse(inspect.getsource(data.waveform2melspec))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "fbank":
            out = {}
            for kw in node.keywords:
                if isinstance(kw.value, ast.Constant):
                    out[kw.arg] = kw.value.value
                elif isinstance(kw.value, ast.Name) and hasattr(data, kw.value.id):
                    out[kw.arg] = getattr(data, kw.value.id)
            return out
    raise ValueError("no fbank call found in imagebind.data.waveform2melspec")


def audio_preprocess_params() -> dict[str, Any]:
    """Defaults of ``load_and_transform_audio_data`` and the filterbank's frame geometry."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(data.load_and_transform_audio_data).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    fbank = _fbank_call_keywords()
    return {
        "sample_rate": int(defaults["sample_rate"]),
        "clips_per_input": int(defaults["clips_per_video"]),
        "clip_duration": float(defaults["clip_duration"]),
        "num_mel_bins": int(defaults["num_mel_bins"]),
        "target_length": int(defaults["target_length"]),
        "frame_length_ms": float(fbank["frame_length"]),
        "frame_shift_ms": float(fbank["frame_shift"]),
        "mean": float(defaults["mean"]),
        "std": float(defaults["std"]),
    }


def video_preprocess_params() -> dict[str, Any]:
    """Clip sampling, frame sampling, scaling, crops and normalisation of
    ``load_and_transform_video_data``: defaults from its signature, the rest from the constants
    of the transforms it builds (read back from a probe of the same classes)."""
    defaults = {
        name: p.default
        for name, p in inspect.signature(data.load_and_transform_video_data).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    tree = ast.parse(inspect.getsource(data.load_and_transform_video_data))
    literals: dict[str, Any] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
        if name in ("ShortSideScale", "SpatialCrop") and node.args:
            literals[name] = ast.literal_eval(node.args[0])
        if name == "SpatialCrop":
            for kw in node.keywords:
                if kw.arg == "num_crops":
                    literals["num_crops"] = ast.literal_eval(kw.value)
        if name == "NormalizeVideo":
            for kw in node.keywords:
                literals[kw.arg] = [float(x) for x in ast.literal_eval(kw.value)]
    clip_duration = float(defaults["clip_duration"])
    return {
        "sampler": "clips",
        "clips": int(defaults["clips_per_video"]),
        "clip_duration": clip_duration,
        # UniformTemporalSubsample(num_samples=clip_duration) in the reference.
        "frames_per_clip": int(clip_duration),
        "size": int(literals["ShortSideScale"]),
        "crop": int(literals["SpatialCrop"]),
        "crops": int(literals["num_crops"]),
        "mean": literals["mean"],
        "std": literals["std"],
    }


def float32_literal(value: float) -> str:
    """Shortest decimal that reads back as the same float32 (always with a decimal point)."""
    return np.format_float_positional(np.float32(value), unique=True, trim="0")
