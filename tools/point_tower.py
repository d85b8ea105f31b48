#!/usr/bin/env python3
"""The fixture model's point-cloud tower: a tiny, seeded PointBERT-style encoder (ULIP binding).

    tools/.venv/bin/python tools/point_tower.py --out models/imagebind-fixture

writes ``point.onnx`` into the model folder and adds (or replaces) the ``[point_cloud]`` section
of its ``model.toml``; ``tools/export_imagebind.py --fixture`` does the same through
:func:`export`. The tower takes the two tensors of PointBERT's ``Group`` and returns the
L2-normalised embedding:

* ``neighborhood`` float32 ``[B, G, K, 6]``: neighbour xyz relative to the centre, then rgb;
* ``center`` float32 ``[B, G, 3]``;
* ``embedding`` float32 ``[B, 32]``.

Architecture (PointBERT's ``PointTransformer`` as ULIP uses it, scaled down): the mini-PointNet
patch ``Encoder`` (shared MLP, max pool per group, concatenation of the pooled feature, second
MLP, max pool), a CLS token with its own position, transformer blocks with the centre position
embedding (an MLP of the centre xyz) added before every block, a final LayerNorm, the
concatenation of the CLS output and the max over the group outputs, and ULIP's projection to the
shared space, followed by L2 normalisation as ImageBind's other towers end.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from torch.nn import functional as F

#: Seed of the random weights; the committed point.onnx and goldens depend on it.
SEED = 4242
OPSET = 17
EMBED_DIM = 32
CHANNELS = 6
ENCODER_DIM = 48
TRANS_DIM = 32
DEPTH = 2
HEADS = 4
#: Factor applied to every weight matrix after PyTorch's default initialisation: at the default
#: scale the random tower maps different clouds to nearly the same direction (cosine > 0.999),
#: which would make embedding comparisons in tests blind to preprocessing mistakes.
GAIN = 2.0

#: Preprocessing of the fixture manifest. PointBERT's ULIP configuration (8192 points,
#: 512 groups of 32), with ULIP-2's colour input and default colour 0.4.
PREPROCESS = {
    "npoints": 8192,
    "num_group": 512,
    "group_size": 32,
    "use_color": True,
    "default_color": 0.4,
    "min_points": 1,
    "center_input": "center",
    "mesh_samples": 10000,
}
ONNX_NAME = "point.onnx"
INPUT, CENTER, OUTPUT = "neighborhood", "center", "embedding"


class Encoder(nn.Module):
    """PointBERT's mini-PointNet patch encoder: ``[B, G, K, C] -> [B, G, D]``."""

    def __init__(self, channels: int, dim: int, first: tuple[int, int] = (32, 64), second: int = 96) -> None:
        super().__init__()
        a, b = first
        self.first_conv = nn.Sequential(
            nn.Conv1d(channels, a, 1), nn.BatchNorm1d(a), nn.ReLU(inplace=True), nn.Conv1d(a, b, 1)
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(2 * b, second, 1), nn.BatchNorm1d(second), nn.ReLU(inplace=True), nn.Conv1d(second, dim, 1)
        )
        self.dim = dim

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        b, g, k, c = groups.shape
        x = groups.reshape(-1, k, c).transpose(2, 1)
        f = self.first_conv(x)
        pooled = torch.max(f, dim=2, keepdim=True)[0]
        f = torch.cat([pooled.expand(-1, -1, k), f], dim=1)
        f = self.second_conv(f)
        return torch.max(f, dim=2)[0].reshape(b, g, self.dim)


class Attention(nn.Module):
    """PointBERT's multi-head self-attention (one qkv projection, scaled dot product)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block (PointBERT's ``Block``)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


@dataclass(frozen=True)
class Sizes:
    """Widths and depth of the tower; the defaults are the fixture's."""

    embed_dim: int = EMBED_DIM
    encoder_dim: int = ENCODER_DIM
    trans_dim: int = TRANS_DIM
    depth: int = DEPTH
    heads: int = HEADS
    #: Widths of the patch encoder's first MLP and the hidden width of its second.
    encoder_first: tuple[int, int] = (32, 64)
    encoder_second: int = 96
    #: Hidden width of the centre position embedding.
    pos_hidden: int = 64


# PointBERT as ULIP uses it (384 wide, 12 blocks, 6 heads, 256-wide group encoder), for measuring
# inference-bound serving with random weights.
POINTBERT_SIZES = Sizes(embed_dim=512, encoder_dim=256, trans_dim=384, depth=12, heads=6)

# ULIP-2's PointBERT (salesforce/ULIP `models/pointbert/`: `PointTransformer_Colored` with
# `ULIP_2_PointBERT_10k_colored_pointclouds.yaml`, the dVAE `Encoder` with `input_dim=6`) and its
# projection from the 768 point features to OpenCLIP ViT-bigG-14's 1280-d space.
ULIP2_SIZES = Sizes(
    embed_dim=1280,
    encoder_dim=256,
    trans_dim=384,
    depth=18,
    heads=6,
    encoder_first=(128, 256),
    encoder_second=512,
    pos_hidden=128,
)


class PointTower(nn.Module):
    """``(neighborhood, center) -> L2-normalised embedding``."""

    def __init__(self, sizes: Sizes | None = None) -> None:
        super().__init__()
        z = sizes or Sizes()
        self.encoder = Encoder(CHANNELS, z.encoder_dim, z.encoder_first, z.encoder_second)
        self.reduce_dim = nn.Linear(z.encoder_dim, z.trans_dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, z.trans_dim) * 0.02)
        self.cls_pos = nn.Parameter(torch.randn(1, 1, z.trans_dim) * 0.02)
        self.pos_embed = nn.Sequential(nn.Linear(3, z.pos_hidden), nn.GELU(), nn.Linear(z.pos_hidden, z.trans_dim))
        self.blocks = nn.ModuleList(Block(z.trans_dim, z.heads) for _ in range(z.depth))
        self.norm = nn.LayerNorm(z.trans_dim)
        # ULIP's pc_projection: a bias-free matrix from the point features to the shared space.
        self.projection = nn.Linear(2 * z.trans_dim, z.embed_dim, bias=False)

    def forward(self, neighborhood: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
        tokens = self.reduce_dim(self.encoder(neighborhood))
        b = tokens.shape[0]
        x = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
        pos = torch.cat([self.cls_pos.expand(b, -1, -1), self.pos_embed(center)], dim=1)
        for block in self.blocks:
            x = block(x + pos)
        x = self.norm(x)
        features = torch.cat([x[:, 0], x[:, 1:].max(dim=1)[0]], dim=-1)
        return F.normalize(self.projection(features), dim=-1)


def build(sizes: Sizes | None = None) -> PointTower:
    """The seeded tower in eval mode (BatchNorm running statistics randomised too)."""
    torch.manual_seed(SEED)
    tower = PointTower(sizes)
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for p in tower.parameters():
            if p.dim() >= 2:
                p.mul_(GAIN)
        for m in tower.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
    return tower.eval()


def example(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs of the tower's shapes."""
    g, k = PREPROCESS["num_group"], PREPROCESS["group_size"]
    neighborhood = torch.rand(batch, g, k, CHANNELS, generator=gen) * 0.2 - 0.1
    neighborhood[..., 3:] = torch.rand(batch, g, k, 3, generator=gen)
    center = torch.rand(batch, g, 3, generator=gen) * 2 - 1
    return neighborhood, center


def embed(tower: PointTower, neighborhood: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Embeddings of a batch of grouped clouds, in PyTorch."""
    with torch.no_grad():
        return tower(torch.from_numpy(neighborhood), torch.from_numpy(center)).numpy()


def _export_onnx(tower: PointTower, dest: Path) -> None:
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        raw = Path(tmp) / dest.name
        with torch.no_grad():
            torch.onnx.export(
                tower,
                example(2, torch.Generator().manual_seed(0)),
                str(raw),
                input_names=[INPUT, CENTER],
                output_names=[OUTPUT],
                dynamic_axes={INPUT: {0: "batch"}, CENTER: {0: "batch"}, OUTPUT: {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        onnx.save_model(onnx.load(str(raw)), str(dest))
    onnx.checker.check_model(str(dest))


def _verify(tower: PointTower, path: Path) -> float:
    """Largest |onnxruntime - PyTorch| at batch sizes 1 and 3."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if names != ([INPUT, CENTER], [OUTPUT]):
        raise ValueError(f"{path.name}: tensor names {names}")
    worst = 0.0
    gen = torch.Generator().manual_seed(1)
    for batch in (1, 3):
        n, c = example(batch, gen)
        expected = embed(tower, n.numpy(), c.numpy())
        (got,) = session.run([OUTPUT], {INPUT: n.numpy(), CENTER: c.numpy()})
        if got.shape != (batch, tower.projection.out_features) or got.dtype != np.float32:
            raise ValueError(f"{path.name}: output {got.dtype}{got.shape}")
        diff = float(np.max(np.abs(got - expected)))
        print(f"  {path.name}: batch {batch} -> {got.shape}, max abs diff {diff:.3e}")
        worst = max(worst, diff)
    if worst > 1e-5:
        raise ValueError(f"{path.name}: onnxruntime differs from PyTorch by {worst}")
    return worst


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    return repr(v)


def manifest_section(preprocess: dict | None = None, logit_scale: float | None = None) -> str:
    """The ``[point_cloud]`` section of ``model.toml``."""
    lines = [
        "",
        "# PointBERT-style tower (ULIP binding), seeded random weights. Preprocessing follows",
        "# PointBERT's ULIP configuration (8192 points, 512 groups of 32 neighbours) with ULIP-2's",
        "# colour channels and its default colour 0.4 for clouds without colour.",
        "[point_cloud]",
        f'onnx = "{ONNX_NAME}"',
        f'input = "{INPUT}"',
        f'output = "{OUTPUT}"',
        f"logit_scale = {1.0 if logit_scale is None else float(np.float32(logit_scale))}",
        "",
        "[point_cloud.preprocess]",
    ]
    lines += [f"{k} = {_toml(v)}" for k, v in (preprocess or PREPROCESS).items()]
    return "\n".join(lines) + "\n"


def export(out: Path, sizes: Sizes | None = None) -> None:
    """Writes ``point.onnx`` into ``out`` and sets the ``[point_cloud]`` section of its manifest."""
    export_tower(build(sizes), out)


def export_tower(
    tower: PointTower, out: Path, preprocess: dict | None = None, logit_scale: float | None = None
) -> None:
    """Writes ``tower`` as ``point.onnx`` into ``out`` and sets the ``[point_cloud]`` section."""
    dest = out / ONNX_NAME
    print(f"exporting point_cloud -> {dest}", flush=True)
    _export_onnx(tower, dest)
    _verify(tower, dest)
    manifest = out / "model.toml"
    text = manifest.read_text() if manifest.exists() else ""
    # Replace a previous section (it is always last) so the export can be repeated.
    text = re.split(r"\n(?:# PointBERT-style tower[^\n]*\n(?:#[^\n]*\n)*)?\[point_cloud\]\n", text)[0]
    manifest.write_text(text.rstrip("\n") + "\n" + manifest_section(preprocess, logit_scale))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="model folder (with model.toml)")
    args = parser.parse_args()
    export(args.out)


if __name__ == "__main__":
    main()
