#!/usr/bin/env python3
"""ULIP-2 in OpenCLIP ViT-bigG-14's space: one model folder with text, image and point towers.

    python tools/export_ulip2.py --point-checkpoint ULIP-2-PointBERT-10k-xyzrgb.pt \\
        --openclip-checkpoint open_clip_pytorch_model.bin --out models/ulip2-bigg
    python tools/export_ulip2.py --random --out tools/.gen/ulip2-bigg-random
    python tools/export_ulip2.py --random --openclip-model ViT-B-32 --out tools/.gen/ulip2-b32
    # bigG one tower per process (each holds one tower's weights while it exports):
    python tools/export_openclip.py --model ViT-bigG-14 --random --pretrained-tag laion2b_s39b_b160k \
        --towers text --out DIR   # then --towers image, then:
    python tools/export_ulip2.py --random --point-only --out DIR

The text and image towers are OpenCLIP ViT-bigG-14's (``export_openclip.py``, one tower at a
time); the point tower is ULIP-2's PointBERT (``PointTransformer_Colored`` with ULIP-2's
``ULIP_2_PointBERT_10k_colored_pointclouds.yaml``: 384 wide, 18 blocks, 6 heads, 512 groups of
32, xyz + rgb) and its ``pc_projection`` (768 -> 1280), loaded into ``point_tower.PointTower``
through :func:`map_state_dict`, which refuses a checkpoint with a key it does not place or a
tower parameter it leaves unset. ``--openclip-model`` swaps bigG for a smaller architecture
(the point tower's projection then has to match its width, so only with ``--random``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import point_tower  # noqa: E402

#: ULIP-2's point cloud preprocessing (10k points, 512 groups of 32, colour), for the manifest.
ULIP2_PREPROCESS = {**point_tower.PREPROCESS, "npoints": 10000}

#: Prefixes of a ULIP-2 checkpoint's keys (after ``module.``) that belong to the OpenCLIP towers,
#: which come from the OpenCLIP checkpoint instead.
OPENCLIP_PREFIX = "open_clip_model."


def ulip2_shapes(sizes: point_tower.Sizes = point_tower.ULIP2_SIZES) -> dict[str, tuple[int, ...]]:
    """The names and shapes of ULIP-2's ``ULIP2_WITH_OPENCLIP`` state dict outside the OpenCLIP
    model: ``point_encoder`` (``PointTransformer_Colored``: the dVAE ``Encoder``, ``reduce_dim``,
    ``cls_token``, ``cls_pos``, ``pos_embed``, ``blocks.blocks.<i>`` of ``Block`` with ``Mlp``
    ``fc1``/``fc2``, ``norm``), ``pc_projection`` ``[768, 1280]`` and ``logit_scale``."""
    a, b = sizes.encoder_first
    c, e, d = sizes.encoder_second, sizes.encoder_dim, sizes.trans_dim
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, out: int, inp: int) -> None:
        shapes[f"{name}.weight"] = (out, inp, 1)
        shapes[f"{name}.bias"] = (out,)

    def bn(name: str, n: int) -> None:
        for k in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{k}"] = (n,)
        shapes[f"{name}.num_batches_tracked"] = ()

    def linear(name: str, out: int, inp: int, bias: bool = True) -> None:
        shapes[f"{name}.weight"] = (out, inp)
        if bias:
            shapes[f"{name}.bias"] = (out,)

    pe = "point_encoder"
    conv(f"{pe}.encoder.first_conv.0", a, point_tower.CHANNELS)
    bn(f"{pe}.encoder.first_conv.1", a)
    conv(f"{pe}.encoder.first_conv.3", b, a)
    conv(f"{pe}.encoder.second_conv.0", c, 2 * b)
    bn(f"{pe}.encoder.second_conv.1", c)
    conv(f"{pe}.encoder.second_conv.3", e, c)
    linear(f"{pe}.reduce_dim", d, e)
    shapes[f"{pe}.cls_token"] = (1, 1, d)
    shapes[f"{pe}.cls_pos"] = (1, 1, d)
    linear(f"{pe}.pos_embed.0", sizes.pos_hidden, 3)
    linear(f"{pe}.pos_embed.2", d, sizes.pos_hidden)
    for i in range(sizes.depth):
        blk = f"{pe}.blocks.blocks.{i}"
        shapes[f"{blk}.norm1.weight"] = (d,)
        shapes[f"{blk}.norm1.bias"] = (d,)
        linear(f"{blk}.attn.qkv", 3 * d, d, bias=False)
        linear(f"{blk}.attn.proj", d, d)
        shapes[f"{blk}.norm2.weight"] = (d,)
        shapes[f"{blk}.norm2.bias"] = (d,)
        linear(f"{blk}.mlp.fc1", 4 * d, d)
        linear(f"{blk}.mlp.fc2", d, 4 * d)
    shapes[f"{pe}.norm.weight"] = (d,)
    shapes[f"{pe}.norm.bias"] = (d,)
    shapes["pc_projection"] = (2 * d, sizes.embed_dim)
    shapes["logit_scale"] = ()
    return shapes


def _tower_key(key: str) -> str | None:
    """The ``PointTower`` parameter a ULIP-2 ``point_encoder`` key loads into."""
    if not key.startswith("point_encoder."):
        return None
    name = key[len("point_encoder.") :]
    if name.startswith("blocks.blocks."):
        name = "blocks." + name[len("blocks.blocks.") :]
        # ULIP's Mlp names its layers fc1/fc2; the tower's MLP is a Sequential (0, act, 2).
        name = name.replace(".mlp.fc1.", ".mlp.0.").replace(".mlp.fc2.", ".mlp.2.")
    return name


def map_state_dict(
    checkpoint: dict[str, torch.Tensor], tower: point_tower.PointTower
) -> tuple[dict[str, torch.Tensor], float | None]:
    """ULIP-2's state dict as the tower's, and ULIP-2's ``logit_scale`` (exponentiated).

    Every key must be placed: into the tower, the logit scale, or (``open_clip_model.*``) the
    OpenCLIP towers exported separately. Every tower parameter and buffer must be set, with the
    tower's shape. Anything else raises ``ValueError`` naming the keys."""
    state = {k.removeprefix("module."): v for k, v in checkpoint.items()}
    wanted = tower.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    scale = None
    unplaced = []
    for key, value in state.items():
        if key.startswith(OPENCLIP_PREFIX):
            continue
        if key == "logit_scale":
            scale = float(value.exp())
            continue
        if key == "pc_projection":
            # ULIP computes `features @ pc_projection`; the tower's Linear holds its transpose.
            mapped["projection.weight"] = value.t().contiguous()
            continue
        name = _tower_key(key)
        if name is None or name not in wanted:
            unplaced.append(key)
            continue
        mapped[name] = value
    if unplaced:
        raise ValueError(f"checkpoint keys with no place in the tower: {unplaced}")
    unset = sorted(set(wanted) - set(mapped))
    if unset:
        raise ValueError(f"tower parameters the checkpoint leaves unset: {unset}")
    wrong = [k for k, v in mapped.items() if tuple(v.shape) != tuple(wanted[k].shape)]
    if wrong:
        shapes = {k: (tuple(mapped[k].shape), tuple(wanted[k].shape)) for k in wrong}
        raise ValueError(f"shape mismatches (checkpoint, tower): {shapes}")
    return mapped, scale


def load_point_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a ULIP-2 checkpoint file (``state_dict`` of ULIP's training loop)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else ckpt


def random_point_checkpoint(sizes: point_tower.Sizes, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with ULIP-2's names and shapes (for ``--random`` and the tests)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in ulip2_shapes(sizes).items():
        if name == "logit_scale":
            # ULIP's initial value, log(1 / 0.07).
            out[f"module.{name}"] = torch.tensor(float(np.log(1 / 0.07)))
        elif name.endswith("num_batches_tracked"):
            out[f"module.{name}"] = torch.tensor(0, dtype=torch.long)
        elif name.endswith("running_var"):
            out[f"module.{name}"] = torch.rand(shape, generator=gen) + 0.5
        else:
            out[f"module.{name}"] = torch.randn(shape, generator=gen) * 0.02
    return out


def main() -> None:
    import export_openclip as oc

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--point-checkpoint", type=Path, help="ULIP-2 PointBERT checkpoint (.pt)")
    parser.add_argument("--openclip-checkpoint", type=Path, help="OpenCLIP ViT-bigG-14 weights")
    parser.add_argument("--random", action="store_true", help="random weights for all three towers")
    parser.add_argument("--openclip-model", default="ViT-bigG-14", help="OpenCLIP architecture")
    parser.add_argument("--pretrained-tag", default="laion2b_s39b_b160k", help="preprocessing metadata")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--point-only",
        action="store_true",
        help="add the point tower to a folder whose OpenCLIP towers export_openclip.py already "
        "wrote (one tower per process, for ViT-bigG-14)",
    )
    args = parser.parse_args()
    if not args.random and (args.point_checkpoint is None or args.openclip_checkpoint is None):
        parser.error("give --point-checkpoint and --openclip-checkpoint, or --random")

    start = time.monotonic()
    tag = args.pretrained_tag if args.openclip_model == "ViT-bigG-14" else None
    if args.point_only:
        if not (args.out / "model.toml").is_file():
            parser.error(f"--point-only: {args.out} has no model.toml (export the OpenCLIP towers first)")
    else:
        oc.export_model(
            args.openclip_model,
            args.out,
            name=args.out.resolve().name,
            description=f"ULIP-2 PointBERT in OpenCLIP {args.openclip_model}'s space"
            + (" (random weights)." if args.random else "."),
            licence="ULIP-2: BSD-3-Clause (code), see its weights' terms; OpenCLIP: MIT",
            checkpoint=args.openclip_checkpoint,
            pretrained_tag=tag,
        )
    manifest = (args.out / "model.toml").read_text()
    dim = int(manifest.split("embedding_dim = ")[1].split("\n")[0])
    sizes = point_tower.Sizes(**{**point_tower.ULIP2_SIZES.__dict__, "embed_dim": dim})
    tower = point_tower.PointTower(sizes).eval()
    state = (
        random_point_checkpoint(sizes)
        if args.random
        else load_point_checkpoint(args.point_checkpoint)
    )
    mapped, scale = map_state_dict(state, tower)
    tower.load_state_dict(mapped, strict=True)
    # bindery scales point-text logits by the point scale times the text scale; ULIP-2 scales
    # them by its own logit_scale alone.
    text_scale = float(manifest.split("logit_scale = ")[1].split("\n")[0])
    point_scale = None if scale is None else scale / text_scale
    t0 = time.monotonic()
    point_tower.export_tower(tower, args.out, ULIP2_PREPROCESS, point_scale)
    print(f"point tower in {time.monotonic() - t0:.1f}s; all in {time.monotonic() - start:.1f}s")


if __name__ == "__main__":
    main()
