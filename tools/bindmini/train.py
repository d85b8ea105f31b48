#!/usr/bin/env python3
"""Train bind-mini on the cached world: image is the anchor, text, speech and point clouds are
each bound to it with a symmetric InfoNCE loss with a learnable temperature (the ImageBind recipe).

    tools/.venv/bin/python tools/bindmini/train.py [--minutes 22] [--bind-minutes 16] [--speech-minutes 20]
        [--steps 6000] [--speech-steps 14000] [--batch 48] [--seed 7]

Three stages, as ImageBind builds on a trained image-text model: first the image and text towers
are trained together (``--minutes``), then they are frozen and the speech and point-cloud towers
are bound to the fixed image embeddings (``--bind-minutes``), under strong SpecAugment-style
masking; last the speech tower alone goes on binding to the same image embeddings under light
masking and a lower learning rate (``--speech-minutes``, ``--speech-lr``). Each stage runs for its
wall time or its step limit, whichever ends first; the learning rate follows a warmup + cosine
schedule over that budget (the larger of the elapsed fractions of time and steps), so a slower or
busier machine trains fewer steps on the same schedule rather than overrunning. A stage given 0
minutes is skipped.

Each batch holds one training object of each of ``--batch`` different (shape, colour)
combinations, so no two items of a batch are true matches of each other. Text is one of the
object's captions or the phrase its speech says; audio is one of its three reference clips
(bindery averages the three at inference, as the reference model does). Writes the checkpoint to
``tools/.gen/bindmini/checkpoint.pt`` and prints a PyTorch-side check on the test split.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import model as M  # noqa: E402

ROOT = HERE.parents[1]
DEFAULT_CACHE = ROOT / "tools/.gen/bindmini/cache"
DEFAULT_CKPT = ROOT / "tools/.gen/bindmini/checkpoint.pt"
V, T, A = M.ref.ModalityType.VISION, M.ref.ModalityType.TEXT, M.ref.ModalityType.AUDIO
PAIRS = ("text", "audio", "point")


def _linear_encoder_forward(self: torch.nn.Module, groups: torch.Tensor) -> torch.Tensor:
    """``point_tower.Encoder.forward`` with its 1x1 convolutions as matrix products.

    Same function (a kernel-1 Conv1d is a Linear over channels; BatchNorm1d over [N, C, L]
    normalises over N and L, as batch_norm over the flattened [N * L, C] does); several times
    faster on CPU for training. Export uses the original module.
    """
    b, g, k, c = groups.shape
    x = groups.reshape(-1, c)

    def conv(layer: torch.nn.Conv1d, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, layer.weight[:, :, 0], layer.bias)

    def bn(layer: torch.nn.BatchNorm1d, h: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(h, layer.running_mean, layer.running_var, layer.weight, layer.bias,
                            layer.training, layer.momentum, layer.eps)

    c1, n1, _, c2 = self.first_conv
    f = conv(c2, F.relu(bn(n1, conv(c1, x))))  # [N * K, 64]
    f = f.reshape(b * g, k, -1)
    pooled = f.max(dim=1, keepdim=True)[0].expand(-1, k, -1)
    f = torch.cat([pooled, f], dim=2).reshape(b * g * k, -1)
    c3, n2, _, c4 = self.second_conv
    f = conv(c4, F.relu(bn(n2, conv(c3, f))))
    return f.reshape(b * g, k, -1).max(dim=1)[0].reshape(b, g, self.dim)


def random_crops(vision: torch.Tensor, rng: np.random.Generator, min_side: float = 0.7) -> torch.Tensor:
    """Each image cropped to a random square of 70-100 % of its side and resized back: the
    world's objects appear at many sizes and positions, and a few thousand images are few."""
    n, _, h, w = vision.shape
    out = torch.empty_like(vision)
    for i in range(n):
        side = int(round(h * rng.uniform(min_side, 1.0)))
        top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = vision[i:i + 1, :, top:top + side, left:left + side]
        out[i] = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)[0]
    return out


@dataclass(frozen=True)
class Masking:
    """SpecAugment-style masks: how many of each, and their widest (mel bins / frames)."""

    freq_masks: int
    freq_width: int
    time_masks: int
    time_width: int


#: Stage 2: without masking the speech tower memorises the training clips (train accuracy 1.0,
#: held-out 0.4).
STRONG_MASKING = Masking(freq_masks=2, freq_width=12, time_masks=2, time_width=24)
#: Stage 3: a 24-frame time mask can erase a whole colour word, which caps even the training
#: accuracy on colour (0.95); the speech-only stage sharpens words under narrow masks.
LIGHT_MASKING = Masking(freq_masks=1, freq_width=8, time_masks=1, time_width=8)


def spec_augment(fbank: np.ndarray, rng: np.random.Generator, masking: Masking) -> np.ndarray:
    """SpecAugment-style masking plus a random time shift of ``[N, 1, mel, frames]`` fbanks."""
    out = fbank.copy()
    n, _, mels, frames = out.shape
    for i in range(n):
        out[i] = np.roll(out[i], int(rng.integers(-40, 41)), axis=-1)
        for _ in range(masking.freq_masks):
            width = int(rng.integers(0, masking.freq_width + 1))
            start = int(rng.integers(0, mels - width + 1))
            out[i, :, start:start + width, :] = 0.0
        for _ in range(masking.time_masks):
            width = int(rng.integers(0, masking.time_width + 1))
            start = int(rng.integers(0, frames - width + 1))
            out[i, :, :, start:start + width] = 0.0
    return out


class Data:
    """The cached tensors (memory-mapped) and labels."""

    def __init__(self, cache: Path) -> None:
        self.meta = json.loads((cache / "meta.json").read_text())
        self.arrays = {n: np.load(cache / f"{n}.npy", mmap_mode="r") for n in
                       ("tokens", "vision", "audio", "neighborhood", "center")}
        objs = self.meta["objects"]
        self.shapes, self.colours = self.meta["shapes"], self.meta["colours"]
        self.label = np.array([self.shapes.index(o["shape"]) * len(self.colours) + self.colours.index(o["colour"]) for o in objs])
        self.train = np.array([i for i, o in enumerate(objs) if o["split"] == "train"])
        self.test = np.array([i for i, o in enumerate(objs) if o["split"] == "test"])
        self.by_combo: dict[int, np.ndarray] = {}
        for i in self.train:
            self.by_combo.setdefault(int(self.label[i]), []).append(i)  # type: ignore[arg-type]
        self.by_combo = {k: np.array(v) for k, v in self.by_combo.items()}

    def batch(self, rng: np.random.Generator, size: int, train: bool = True, rows: np.ndarray | None = None,
              need: tuple[str, ...] = ("vision", "text", "audio", "neighborhood", "center"),
              masking: Masking = STRONG_MASKING):
        if rows is None:
            keys = list(self.by_combo)
            chosen = rng.choice(len(keys), size=min(size, len(keys)), replace=False)
            rows = np.array([rng.choice(self.by_combo[keys[c]]) for c in chosen])
        rows = np.sort(rows)  # memmap reads in file order
        a = self.arrays
        n = len(rows)
        out = {}
        if "vision" in need:
            vision = torch.from_numpy(a["vision"][rows].astype(np.float32))
            if train:
                flip = torch.from_numpy(rng.random(n) < 0.5)
                vision[flip] = vision[flip].flip(-1)
                vision = random_crops(vision, rng)
            out["vision"] = vision
        if "text" in need:
            per = a["tokens"].shape[1]
            text_col = rng.integers(0, per, n) if train else np.zeros(n, int)
            out["text"] = torch.from_numpy(a["tokens"][rows, text_col].astype(np.int64))
        if "audio" in need:
            audio = a["audio"][rows].astype(np.float32)
            if train:
                audio = spec_augment(audio[np.arange(n), rng.integers(0, audio.shape[1], n)], rng, masking)
            out["audio"] = torch.from_numpy(audio)
        for key in ("neighborhood", "center"):
            if key in need:
                out[key] = torch.from_numpy(np.ascontiguousarray(a[key][rows]))
        return rows, out


def embed(ib: torch.nn.Module, pt: torch.nn.Module, x: dict) -> dict[str, torch.Tensor]:
    """Unit-length embeddings of every modality of a batch."""
    return {
        "image": F.normalize(ib({V: x["vision"]})[V], dim=-1),
        "text": F.normalize(ib({T: x["text"]})[T], dim=-1),
        "audio": F.normalize(ib({A: x["audio"]})[A], dim=-1),
        "point": F.normalize(pt(x["neighborhood"], x["center"]), dim=-1),
    }


def infonce(a: torch.Tensor, b: torch.Tensor, log_scale: torch.Tensor) -> tuple[torch.Tensor, float]:
    logits = log_scale.clamp(max=math.log(100)).exp() * a @ b.T
    target = torch.arange(len(a))
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    acc = float((logits.argmax(1) == target).float().mean())
    return loss, acc


@torch.no_grad()
def test_check(ib: torch.nn.Module, pt: torch.nn.Module, data: Data) -> dict[str, float]:
    """Class-level retrieval accuracy anything -> image on the test split (PyTorch, not bindery)."""
    ib.eval(), pt.eval()
    rng = np.random.default_rng(0)
    embs: dict[str, list[torch.Tensor]] = {}
    rows_all = []
    for start in range(0, len(data.test), 64):
        rows, x = data.batch(rng, 0, train=False, rows=data.test[start:start + 64])
        rows_all.append(rows)
        for k, v in embed(ib, pt, x).items():
            embs.setdefault(k, []).append(v)
    e = {k: torch.cat(v) for k, v in embs.items()}
    labels = torch.from_numpy(data.label[np.concatenate(rows_all)])
    seen = torch.from_numpy(np.array([data.meta["objects"][i]["seen"] for i in np.concatenate(rows_all)]))
    out = {}
    for m in PAIRS:
        top = (e[m] @ e["image"].T).argmax(1)
        hit = (labels[top] == labels).float()
        out[f"{m}->image seen"] = float(hit[seen].mean())
        out[f"{m}->image unseen"] = float(hit[~seen].mean()) if (~seen).any() else float("nan")
    ib.train(), pt.train()
    return out


def _param_groups(modules: list[torch.nn.Module], extra: list[torch.nn.Parameter]) -> list[dict]:
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            (decay if p.dim() >= 2 and "pos_embed" not in name and "token" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": 0.05}, {"params": no_decay + extra, "weight_decay": 0.0}]


def run_stage(name: str, params: list[dict], step_fn, minutes: float, max_steps: int, lr_peak: float,
              labels: list[str], monitor=None) -> tuple[int, float]:
    """AdamW with warmup + cosine over the larger of the elapsed time and step fractions; a
    stage with no time or no steps is skipped. Returns the steps run and their wall time (s)."""
    if minutes <= 0 or max_steps <= 0:
        return 0, 0.0
    opt = torch.optim.AdamW(params, lr=lr_peak, betas=(0.9, 0.98))
    hist: list[list[float]] = []
    loop_start = time.monotonic()
    step = 0
    while True:
        progress = max(step / max_steps, (time.monotonic() - loop_start) / (minutes * 60))
        if progress >= 1:
            break
        lr = lr_peak * min(1.0, progress / 0.05 + 1e-3) * 0.5 * (1 + math.cos(math.pi * progress))
        for group in opt.param_groups:
            group["lr"] = lr
        loss, accs = step_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
        opt.step()
        step += 1
        if monitor is not None and step % 1000 == 0:
            print(f"{name} step {step}: test split {json.dumps(monitor())}", flush=True)
        hist.append([float(loss.detach())] + list(accs))
        if step % 100 == 0 or step == 1:
            h = np.mean(hist[-100:], axis=0)
            accs_s = ", ".join(f"image<-{m} {a:.2f}" for m, a in zip(labels, h[1:]))
            print(f"{name} step {step}: lr {lr:.2e}, loss {h[0]:.3f}, batch acc {accs_s}; "
                  f"{time.monotonic() - loop_start:.0f}s", flush=True)
    return step, time.monotonic() - loop_start


@torch.no_grad()
def image_embeddings(ib: torch.nn.Module, data: Data) -> torch.Tensor:
    """Unit image embeddings of every cached object (no augmentation), in row order."""
    out = []
    vision = data.arrays["vision"]
    for start in range(0, len(vision), 64):
        x = torch.from_numpy(vision[start:start + 64].astype(np.float32))
        out.append(F.normalize(ib({V: x})[V], dim=-1))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--out", type=Path, default=DEFAULT_CKPT)
    parser.add_argument("--minutes", type=float, default=22.0, help="wall time of stage 1 (image-text)")
    parser.add_argument("--bind-minutes", type=float, default=16.0, help="wall time of stage 2 (speech and points)")
    parser.add_argument("--speech-minutes", type=float, default=20.0,
                        help="wall time of stage 3 (speech tower alone, light masking)")
    parser.add_argument("--steps", type=int, default=6000, help="most steps of each stage")
    parser.add_argument("--speech-steps", type=int, default=14000, help="most steps of stage 3")
    parser.add_argument("--speech-lr", type=float, default=3e-4, help="peak learning rate of stage 3")
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", type=Path, help="continue from this checkpoint (every stage with a budget runs again)")
    parser.add_argument("--image-text-from", type=Path,
                        help="take the image and text towers from this checkpoint and skip stage 1 "
                             "(the speech and point-cloud towers start fresh, or from --resume)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.monotonic()
    data = Data(args.cache)
    ib = M.build_imagebind(args.seed).train()
    pt = M.build_point(args.seed).train()
    log_scales = torch.nn.Parameter(torch.full((len(PAIRS),), math.log(1 / 0.07)))
    previous: dict = {}
    if args.resume:
        previous = torch.load(args.resume, map_location="cpu", weights_only=False)
        ib.load_state_dict(previous["imagebind"])
        pt.load_state_dict(previous["point"])
        with torch.no_grad():
            log_scales.copy_(previous["log_scales"])
    image_text_source = None
    if args.image_text_from:
        source = torch.load(args.image_text_from, map_location="cpu", weights_only=False)
        kept = {k: v for k, v in source["imagebind"].items() if ".audio." not in k}
        missing, _ = ib.load_state_dict(kept, strict=False)
        assert all(".audio." in k for k in missing), missing
        with torch.no_grad():
            log_scales[0] = source["log_scales"][0]
        image_text_source = {"checkpoint": args.image_text_from.name, "stages": source.get("stages"),
                             "wall_seconds": source.get("wall_seconds")}
    pt.encoder.forward = types.MethodType(_linear_encoder_forward, pt.encoder)
    # A resumed run draws different batches from the first one.
    rng = np.random.default_rng([args.seed, len(previous.get("runs") or [0])] if previous else args.seed)
    print(f"{len(data.train)} training objects, {len(data.test)} test objects; batches of {args.batch}", flush=True)

    # Stage 1: the image and text towers, bound to each other (the CLIP part ImageBind starts from).
    def image_text_step():
        _, x = data.batch(rng, args.batch, need=("vision", "text"))
        img = F.normalize(ib({V: x["vision"]})[V], dim=-1)
        txt = F.normalize(ib({T: x["text"]})[T], dim=-1)
        loss, acc = infonce(img, txt, log_scales[0])
        return loss, [acc]

    vt = [ib.modality_preprocessors[m] for m in (V, T)] + [ib.modality_trunks[m] for m in (V, T)] + \
         [ib.modality_heads[m] for m in (V, T)]
    steps1, seconds1 = (0, 0.0) if image_text_source else run_stage(
        "image-text", _param_groups(vt, [log_scales]), image_text_step, args.minutes, args.steps, args.lr, ["text"])

    # Stage 2: image (and text) frozen, as ImageBind keeps them; speech and point clouds are bound
    # to the fixed image embeddings, computed once.
    ib.eval()
    for p in ib.parameters():
        p.requires_grad_(False)
    audio_modules = [ib.modality_preprocessors[A], ib.modality_trunks[A], ib.modality_heads[A]]
    for module in audio_modules:
        module.train()
        for p in module.parameters():
            p.requires_grad_(True)
    t0 = time.monotonic()
    anchors = image_embeddings(ib, data)
    print(f"image embeddings of {len(anchors)} objects in {time.monotonic() - t0:.0f}s", flush=True)

    def bind_step():
        rows, x = data.batch(rng, args.batch, need=("audio", "neighborhood", "center"))
        img = anchors[rows]
        aud = F.normalize(ib({A: x["audio"]})[A], dim=-1)
        pts = F.normalize(pt(x["neighborhood"], x["center"]), dim=-1)
        (la, aa), (lp, ap) = infonce(img, aud, log_scales[1]), infonce(img, pts, log_scales[2])
        return la + lp, [aa, ap]

    def monitor() -> dict[str, float]:
        return {k: round(v, 3) for k, v in test_check(ib, pt, data).items()}

    steps2, seconds2 = run_stage("bind", _param_groups(audio_modules + [pt], [log_scales]), bind_step,
                                 args.bind_minutes, args.steps, args.lr, ["speech", "point"], monitor)

    # Stage 3: the speech tower alone, still bound to the image embeddings, with narrow masks so
    # that short words (the colour) are rarely erased; the point tower is done.
    def speech_step():
        rows, x = data.batch(rng, args.batch, need=("audio",), masking=LIGHT_MASKING)
        aud = F.normalize(ib({A: x["audio"]})[A], dim=-1)
        loss, acc = infonce(anchors[rows], aud, log_scales[1])
        return loss, [acc]

    steps3, seconds3 = run_stage("speech", _param_groups(audio_modules, [log_scales]), speech_step,
                                 args.speech_minutes, args.speech_steps, args.speech_lr, ["speech"], monitor)
    wall = time.monotonic() - start
    for p in ib.parameters():
        p.requires_grad_(True)
    pt.encoder.forward = types.MethodType(type(pt.encoder).forward, pt.encoder)
    check = test_check(ib, pt, data)
    print("test split (PyTorch):", json.dumps(check), flush=True)
    # Minutes actually run (a stage ends at its step limit or its wall time).
    run = {"stages": {"image-text": {"steps": steps1, "minutes": round(seconds1 / 60, 1)},
                      "bind": {"steps": steps2, "minutes": round(seconds2 / 60, 1)},
                      "speech": {"steps": steps3, "minutes": round(seconds3 / 60, 1)}},
           "lr": args.lr, "wall_seconds": wall, "image_text_from": image_text_source}
    runs = (previous.get("runs") or ([{"stages": previous["stages"], "lr": previous["lr"],
                                        "wall_seconds": previous["wall_seconds"]}] if previous else [])) + [run]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "imagebind": ib.state_dict(),
        "point": pt.state_dict(),
        "log_scales": log_scales.detach(),
        "seed": args.seed,
        "steps": sum(st["steps"] for r in runs for st in r["stages"].values()),
        "stages": run["stages"],
        "runs": runs,
        "batch": args.batch,
        "lr": args.lr,
        "train_objects": int(len(data.train)),
        "wall_seconds": sum(r["wall_seconds"] for r in runs),
        "world_seed": data.meta["seed"],
        "test_check": check,
    }, args.out)
    print(f"trained {steps1} + {steps2} + {steps3} steps in {wall:.0f}s; wrote {args.out}")


if __name__ == "__main__":
    main()
