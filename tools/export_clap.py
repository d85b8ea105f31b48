#!/usr/bin/env python3
"""Export a CLAP model's audio and text towers to ONNX and write a bindery model folder.

    python tools/export_clap.py --checkpoint DIR --out models/clap-htsat-unfused
    python tools/export_clap.py --random-full --out tools/.gen/clap-random-full
    python tools/make_clap_fixtures.py     # the tiny clap-fixture, via this module

The reference is ``transformers``' ``ClapModel`` with its ``ClapFeatureExtractor`` and RoBERTa
tokenizer. ``--checkpoint`` takes a ``laion/clap-htsat-unfused`` or ``laion/clap-htsat-fused``
folder as the Hugging Face hub holds it (``config.json``, the weights, ``preprocessor_config.json``
and ``tokenizer.json``), downloaded by the user; nothing is fetched here. ``--random-full`` builds
the default (full-size, fused) ``ClapConfig`` with seeded random weights and the fixture's trained
vocabulary, to time the export at full size.

Every ``[audio.preprocess]`` value is read from the feature extractor: ``truncation = "fusion"``
picks the HTK mel filters without normalisation, ``"rand_trunc"`` the Slaney filters with Slaney
normalisation, as ``ClapFeatureExtractor._get_input_mel`` does. The feature extractor does not
resample; the reference resamples to its rate with ``torchaudio.functional.resample`` (defaults)
after averaging the channels, and bindery does the same.

The towers:

* audio: ``get_audio_features(input_features [B, C, frames, mels], is_longer [B, 1])``, with
  ``is_longer`` as int64 (ONNX Runtime batches f32 and i64 inputs only). The fusion branch of the
  patch embedding selects the longer items with data-dependent indexing that the tracer cannot
  follow, so the export runs it on every item and keeps it where ``is_longer`` is set (each item's
  fusion is independent of the others in eval mode; onnxruntime is checked against the unpatched
  PyTorch model on both kinds of item).
* text: ``get_text_features(input_ids, attention_mask)`` with the mask computed in the graph as
  ``input_ids != pad``, so the tower takes the padded ids alone (RoBERTa's position ids already
  come from the same comparison).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnxruntime as ort
import torch

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

from transformers import ClapConfig, ClapFeatureExtractor, ClapModel  # noqa: E402
from transformers.models.clap import modeling_clap  # noqa: E402

from bindery_tools import any_length  # noqa: E402
from bindery_tools.onnx_files import save_exported  # noqa: E402

SEED = 1234
OPSET = 17
#: Max abs difference accepted between onnxruntime and PyTorch.
TOLERANCE = 1e-3
#: laion_clap tokenizes to 77 ids (``padding="max_length", truncation=True, max_length=77``);
#: ``ClapProcessor`` itself imposes no length, so the exporter writes this one.
CONTEXT_LENGTH = 77
AUDIO_ONNX, TEXT_ONNX = "audio.onnx", "text.onnx"


def fixture_config() -> ClapConfig:
    """A tiny fused CLAP: HTSAT with 8-wide patches and two one-block stages, a one-layer
    RoBERTa over a 1,000-piece vocabulary, 16-d projections."""
    text = dict(
        vocab_size=1000,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=CONTEXT_LENGTH + 3,
        projection_dim=16,
    )
    audio = dict(
        patch_embeds_hidden_size=8,
        hidden_size=16,
        depths=[1, 1],
        num_attention_heads=[1, 2],
        enable_fusion=True,
        projection_dim=16,
    )
    return ClapConfig(text_config=text, audio_config=audio, projection_dim=16)


def build_model(config: ClapConfig, seed: int = SEED) -> ClapModel:
    torch.manual_seed(seed)
    model = ClapModel(config).eval()
    # Random batch-norm statistics, so the fixture exercises them (fresh ones are 0 and 1).
    gen = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.5)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    return model


def _patch_embed_every_item(self: Any, hidden_states: torch.Tensor, is_longer_idx: Any = None) -> torch.Tensor:
    """``ClapAudioPatchEmbed.forward`` without data-dependent indexing: with fusion, the local
    branch runs on every item and ``torch.where`` keeps it for the longer ones."""
    if not self.enable_fusion:
        return _ORIGINAL_PATCH_EMBED(self, hidden_states, is_longer_idx)
    global_hidden_states = self.proj(hidden_states[:, 0:1, :, :])
    output_width = global_hidden_states.size(-1)
    local = hidden_states[:, 1:, :, :].contiguous()
    batch_size, num_channels, height, width = local.shape
    local = self.mel_conv2d(local.view(batch_size * num_channels, 1, height, width))
    _, features, height, width = local.shape
    local = local.view(batch_size, num_channels, features, height, width)
    local = local.permute((0, 2, 3, 1, 4)).contiguous().flatten(3)
    local = torch.nn.functional.pad(local, (0, output_width - local.size(-1)), "constant", 0)
    fused = self.fusion_model(global_hidden_states, local)
    longer = _LONGER_MASK[0].view(-1, 1, 1, 1)
    hidden_states = torch.where(longer, fused, global_hidden_states)
    if self.flatten:
        hidden_states = hidden_states.flatten(2).transpose(1, 2)
    return self.norm(hidden_states)


_ORIGINAL_PATCH_EMBED = modeling_clap.ClapAudioPatchEmbed.forward
#: The is_longer mask of the batch being traced (the patched forward reads it).
_LONGER_MASK: list[torch.Tensor] = []


class AudioTower(torch.nn.Module):
    def __init__(self, model: ClapModel):
        super().__init__()
        self.model = model

    def forward(self, input_features: torch.Tensor, is_longer: torch.Tensor | None = None) -> torch.Tensor:
        if is_longer is None:  # an unfused tower reads no is_longer
            is_longer = torch.zeros(input_features.shape[0], 1, dtype=torch.int64)
        longer = is_longer.reshape(-1) != 0
        _LONGER_MASK[:] = [longer]
        out = self.model.get_audio_features(input_features=input_features, is_longer=longer[:, None])
        return out.pooler_output if hasattr(out, "pooler_output") else out


class TextTower(torch.nn.Module):
    def __init__(self, model: ClapModel, pad: int):
        super().__init__()
        self.model = model
        self.pad = pad

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = (input_ids != self.pad).to(torch.int64)
        out = self.model.get_text_features(input_ids=input_ids, attention_mask=mask)
        return out.pooler_output if hasattr(out, "pooler_output") else out


@contextlib.contextmanager
def _every_item_fusion() -> Iterator[None]:
    modeling_clap.ClapAudioPatchEmbed.forward = _patch_embed_every_item
    try:
        yield
    finally:
        modeling_clap.ClapAudioPatchEmbed.forward = _ORIGINAL_PATCH_EMBED


def _export(
    tower: torch.nn.Module, example: tuple, names: list[str], dest: Path, length_free: bool = False
) -> None:
    """``length_free``: the inputs' second axis is free too (the text tower's ids)."""
    axes = {0: "batch", 1: "length"} if length_free else {0: "batch"}
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / dest.name
        torch.onnx.export(
            tower,
            example,
            str(raw),
            input_names=names,
            output_names=["embedding"],
            dynamic_axes={**{n: axes for n in names}, "embedding": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
        save_exported(raw, dest)


def _max_diff(a: Any, b: Any) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


def export_audio(model: ClapModel, out: Path, channels: int, frames: int, mels: int) -> float:
    """Exports the audio tower; returns the largest difference from the unpatched PyTorch model
    over a batch of a longer and a shorter item (fused towers) at batch sizes 1 and 3."""
    gen = torch.Generator().manual_seed(7)
    features = torch.randn(3, channels, frames, mels, generator=gen) * 10 - 40
    is_longer = torch.tensor([[1], [0], [1]], dtype=torch.int64)
    dest = out / AUDIO_ONNX
    fused = bool(model.config.audio_config.enable_fusion)
    # An unfused tower ignores is_longer, and the exporter would drop the unused input.
    names = ["input_features", "is_longer"] if fused else ["input_features"]
    with torch.no_grad(), _every_item_fusion():
        _export(AudioTower(model).eval(), (features[:1], is_longer[:1])[: len(names)], names, dest)
    session = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n in (1, 3):
        feeds = {"input_features": features[:n].numpy(), "is_longer": is_longer[:n].numpy()}
        (got,) = session.run(None, {k: feeds[k] for k in names})
        with torch.no_grad():
            want = AudioTower(model).eval()(features[:n], is_longer[:n])
        worst = max(worst, _max_diff(got, want))
    return worst


def _text_ids(model: ClapModel, lengths: list[int], pad: int, gen: torch.Generator) -> torch.Tensor:
    """Rows of ``<s>``, random ids and ``</s>`` of the given lengths, padded to the context."""
    vocab = model.config.text_config.vocab_size
    ids = torch.full((len(lengths), CONTEXT_LENGTH), pad, dtype=torch.int64)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(5, vocab, (length,), generator=gen)
        ids[row, 0], ids[row, length - 1] = 0, 2
    return ids


def export_text(model: ClapModel, out: Path, pad: int) -> float:
    """Exports the text tower with its length axis free: the mask keeps padding out of every
    position's attention and RoBERTa's position ids count only ids that are not padding, so rows
    cut after their padding starts give the whole rows' vectors (checked in ``export``)."""
    ids = _text_ids(model, [5, CONTEXT_LENGTH, 12], pad, torch.Generator().manual_seed(8))
    dest = out / TEXT_ONNX
    with torch.no_grad():
        example = (ids[:1, : any_length.TRACE_LENGTH],)
        _export(TextTower(model, pad).eval(), example, ["input_ids"], dest, length_free=True)
    session = ort.InferenceSession(str(dest), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n in (1, 3):
        (got,) = session.run(None, {"input_ids": ids[:n].numpy()})
        with torch.no_grad():
            want = TextTower(model, pad).eval()(ids[:n])
        worst = max(worst, _max_diff(got, want))
    return worst


def audio_preprocess(fe: ClapFeatureExtractor, fused: bool) -> dict[str, Any]:
    """The ``[audio.preprocess]`` table of a feature extractor, as ``_get_input_mel`` uses it."""
    if fe.truncation not in ("fusion", "rand_trunc"):
        raise SystemExit(f"unsupported truncation {fe.truncation!r}")
    if (fe.truncation == "fusion") != fused:
        raise SystemExit(f"truncation {fe.truncation!r} does not fit a tower with enable_fusion={fused}")
    fusion = fe.truncation == "fusion"
    table: dict[str, Any] = {
        "front_end": "htsat_mel",
        "sample_rate": int(fe.sampling_rate),
        "n_fft": int(fe.fft_window_size),
        "hop_length": int(fe.hop_length),
        "num_mel_bins": int(fe.feature_size),
        "f_min": float(fe.frequency_min),
        "f_max": float(fe.frequency_max),
        "mel_scale": "htk" if fusion else "slaney",
        "mel_norm": "none" if fusion else "slaney",
        "max_length_s": int(fe.max_length_s),
        "truncation": fe.truncation,
        "padding": fe.padding,
    }
    if fused:
        table["is_longer_input"] = "is_longer"
    if fe.top_db is not None:
        table["top_db"] = float(fe.top_db)
    return table


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    return repr(v)


def write_manifest(
    out: Path,
    name: str,
    description: str,
    licence: str,
    dim: int,
    audio: dict[str, Any],
    pad: int,
    cut_text: bool,
) -> None:
    """``cut_text``: the text tower passed ``any_length.verify_cut``."""
    lines = [
        f"name = {json.dumps(name)}",
        'family = "clap"',
        f"description = {json.dumps(description)}",
        f"licence = {json.dumps(licence)}",
        f"embedding_dim = {dim}",
        "",
        "# The HTSAT tower takes the log-mel channels and is_longer (int64, 0 or 1).",
        "[audio]",
        f'onnx = "{AUDIO_ONNX}"',
        'input = "input_features"',
        'output = "embedding"',
        "",
        "[audio.preprocess]",
        *(f"{k} = {_toml_value(v)}" for k, v in audio.items()),
        "",
        "# The RoBERTa tower takes the padded ids; its attention mask is `ids != pad` in the graph.",
        "[text]",
        f'onnx = "{TEXT_ONNX}"',
        'input = "input_ids"',
        'output = "embedding"',
        "",
        "[text.preprocess]",
        'tokenizer = "tokenizer.json"',
        'tokenizer_kind = "hf"',
        'clean = "none"',
        f"context_length = {CONTEXT_LENGTH}",
        f"pad_token = {pad}",
        *(["trim_padding = true"] if cut_text else []),
        "",
    ]
    (out / "model.toml").write_text("\n".join(lines), encoding="utf-8")


def export(
    model: ClapModel,
    fe: ClapFeatureExtractor,
    tokenizer_json: Path,
    out: Path,
    name: str,
    description: str,
    licence: str,
) -> dict[str, float]:
    """Writes ``out/`` (towers, ``tokenizer.json``, ``model.toml``); returns seconds and diffs."""
    out.mkdir(parents=True, exist_ok=True)
    fused = bool(model.config.audio_config.enable_fusion)
    audio = audio_preprocess(fe, fused)
    frames = int(fe.nb_max_samples) // int(fe.hop_length) + 1
    pad = int(model.config.text_config.pad_token_id)
    started = time.perf_counter()
    audio_diff = export_audio(model, out, 4 if fused else 1, frames, int(fe.feature_size))
    audio_s = time.perf_counter() - started
    text_diff = export_text(model, out, pad)
    text_s = time.perf_counter() - started - audio_s
    if max(audio_diff, text_diff) > TOLERANCE:
        raise SystemExit(f"onnxruntime differs from PyTorch: audio {audio_diff:.2e}, text {text_diff:.2e}")
    if tokenizer_json.resolve() != (out / "tokenizer.json").resolve():
        shutil.copyfile(tokenizer_json, out / "tokenizer.json")
    lengths = [2 + (7 * row) % (CONTEXT_LENGTH - 1) for row in range(48)]
    tokens = _text_ids(model, lengths, pad, torch.Generator().manual_seed(2)).numpy()
    cut_text = any_length.verify_cut(out / TEXT_ONNX, "input_ids", "embedding", tokens, pad)
    dim = int(model.config.projection_dim)
    write_manifest(out, name, description, licence, dim, audio, pad, cut_text)
    return {"audio_s": audio_s, "text_s": text_s, "audio_diff": audio_diff, "text_diff": text_diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="a downloaded laion/clap-htsat-* folder")
    source.add_argument("--random-full", action="store_true", help="full-size random weights (timing)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", help="model name (default: the folder name)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.checkpoint:
        if not (args.checkpoint / "config.json").is_file():
            raise SystemExit(f"{args.checkpoint} is not a downloaded CLAP folder (no config.json)")
        tokenizer_json = args.checkpoint / "tokenizer.json"
        if not tokenizer_json.is_file():
            raise SystemExit(
                f"{tokenizer_json} is missing: write it from the folder's vocab.json and merges.txt with "
                "RobertaTokenizerFast.from_pretrained(DIR).save_pretrained(DIR)"
            )
        model = ClapModel.from_pretrained(str(args.checkpoint), local_files_only=True).eval()
        fe = ClapFeatureExtractor.from_pretrained(str(args.checkpoint), local_files_only=True)
        description = f"CLAP ({args.checkpoint.name}) exported by tools/export_clap.py"
        licence = "Apache-2.0 (LAION CLAP weights and transformers code)"
    else:
        model = build_model(ClapConfig(audio_config={"enable_fusion": True}))
        fe = ClapFeatureExtractor(truncation="fusion")
        tokenizer_json = TOOLS.parent / "models" / "clap-fixture" / "tokenizer.json"
        description = "Full-size CLAP (HTSAT + RoBERTa, fused) with seeded random weights; no meaning."
        licence = "Apache-2.0 (transformers code); seeded random weights"
    params = sum(p.numel() for p in model.parameters())
    info = export(model, fe, tokenizer_json, args.out, args.name or args.out.name, description, licence)
    sizes = {f.name: f.stat().st_size for f in sorted(args.out.iterdir())}
    print(json.dumps({"parameters": params, **info, "total_s": time.perf_counter() - started, "bytes": sizes}, indent=1))


if __name__ == "__main__":
    main()
