#!/usr/bin/env python3
"""Evaluate bind-mini on the held-out split through a running bindery server.

    tools/.venv/bin/python tools/bindmini/eval.py                   # starts target/release/bindery
    tools/.venv/bin/python tools/bindmini/eval.py --server 127.0.0.1:50051   # uses a running one

Every embedding comes from the server over gRPC (model ``bind-mini``). Reports, separately for
objects whose (shape, colour) combination was seen in training and for the unseen ones:

* recall@1 and recall@5 for every ordered pair of modalities: each test object's query embedding
  ranks the other modality's embeddings of *all* test objects; a hit is a retrieved object with
  the query's shape and colour (objects carry no other identity that a caption or phrase names);
* zero-shot accuracy per modality: shape (8-way), colour (8-way) and both (64-way) against text
  prototypes, the mean of the server's embeddings of "a {colour} {shape}" over the other factor.

With the training checkpoint present it also checks that train and serve agree: the reference
preprocessing of a few test files run through the PyTorch towers gives the server's vectors.
Writes ``models/bind-mini/EVAL.md`` and prints the table.

``--compare-int8`` instead evaluates through two servers, ``--precision fp32`` and ``int8`` (the
towers ``tools/quantize.py`` wrote), and writes only EVAL.md's "int8 towers" section: what
quantization changes in the tables. It needs only the held-out split
(``generate.py --split test``).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import client as C  # noqa: E402

ROOT = HERE.parents[1]
MODS = ["text", "image", "audio", "point_cloud"]
LABEL = {"text": "text", "image": "image", "audio": "speech", "point_cloud": "point cloud"}


def machine() -> str:
    names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")]
    return f"{names[0] if names else platform.processor()}, {len(names)} cores ({platform.system()} {platform.machine()})"


def recall(q: np.ndarray, g: np.ndarray, ql: np.ndarray, gl: np.ndarray, k: int) -> np.ndarray:
    """Per query: whether one of the top-k gallery items has the query's label."""
    order = np.argsort(-(q @ g.T), axis=1, kind="stable")[:, :k]
    return (gl[order] == ql[:, None]).any(axis=1)


def parity(stub, objects: list[dict], world: Path, checkpoint: Path, count: int = 6) -> dict[str, float]:
    """Smallest cosine between server vectors and the PyTorch towers on reference tensors."""
    import torch

    import cache
    import export

    logging.disable(logging.WARNING)  # the reference warns about every clip shorter than 2 s
    ib, pt, _ = export.load(checkpoint)
    ref = export.ref
    picked = objects[:count]
    out = {}
    with torch.no_grad():
        server = {m: C.embed(stub, [_input(o, m, world) for o in picked], "bind-mini") for m in MODS}
        tokens = torch.from_numpy(cache.text_tokens([o["captions"][0] for o in picked]).astype(np.int64))
        local = {
            "text": ib({ref.ModalityType.TEXT: tokens})[ref.ModalityType.TEXT],
            "image": ib({ref.ModalityType.VISION: cache.vision_tensor([str(world / o["image"]) for o in picked])})[ref.ModalityType.VISION],
            "audio": ib({ref.ModalityType.AUDIO: torch.stack([cache.audio_tensor(str(world / o["audio"])) for o in picked])})[ref.ModalityType.AUDIO],
        }
        nb, ct = zip(*(cache.point_tensors(world / o["cloud"]) for o in picked))
        local["point_cloud"] = pt(torch.from_numpy(np.stack(nb)), torch.from_numpy(np.stack(ct)))
    for m in MODS:
        a = local[m].numpy()
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        out[m] = float(np.min(np.sum(a * server[m], axis=1)))
    return out


def _input(o: dict, m: str, world: Path):
    if m == "text":
        return C.pb.Input(id=o["id"], text=o["captions"][0])
    key = {"image": "image", "audio": "audio", "point_cloud": "cloud"}[m]
    return C.file_input(o["id"], world / o[key])


def evaluate(stub, world: Path) -> dict:
    index = json.loads((world / "index.json").read_text())
    shapes, colours = index["shapes"], index["colours"]
    objects = [o for o in index["objects"] if o["split"] == "test"]
    t0 = time.monotonic()
    emb = {m: C.embed(stub, [_input(o, m, world) for o in objects], "bind-mini") for m in MODS}
    embed_seconds = time.monotonic() - t0
    shape_l = np.array([shapes.index(o["shape"]) for o in objects])
    colour_l = np.array([colours.index(o["colour"]) for o in objects])
    combo_l = shape_l * len(colours) + colour_l
    seen = np.array([o["seen"] for o in objects])
    prompts = [f"a {c} {s}" for s in shapes for c in colours]
    proto = C.embed(stub, [C.pb.Input(id=p, text=p) for p in prompts], "bind-mini").reshape(len(shapes), len(colours), -1)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    shape_p, colour_p, combo_p = unit(proto.mean(1)), unit(proto.mean(0)), unit(proto.reshape(-1, proto.shape[-1]))
    result: dict = {"objects": len(objects), "seen_objects": int(seen.sum()), "unseen_objects": int((~seen).sum()),
                    "embed_seconds": round(embed_seconds, 1), "retrieval": {}, "zero_shot": {}}
    for group, mask in (("seen", seen), ("unseen", ~seen)):
        for qm in MODS:
            for gm in MODS:
                if qm == gm:
                    continue
                r = {f"R@{k}": float(recall(emb[qm][mask], emb[gm], combo_l[mask], combo_l, k).mean()) for k in (1, 5)}
                result["retrieval"].setdefault(group, {})[f"{qm}->{gm}"] = r
        for m in MODS:
            e = emb[m][mask]
            result["zero_shot"].setdefault(group, {})[m] = {
                "shape": float(np.mean((e @ shape_p.T).argmax(1) == shape_l[mask])),
                "colour": float(np.mean((e @ colour_p.T).argmax(1) == colour_l[mask])),
                "shape+colour": float(np.mean((e @ combo_p.T).argmax(1) == combo_l[mask])),
            }
    return result


def tables(result: dict) -> str:
    """Markdown tables of an evaluation."""
    s, u = result["retrieval"]["seen"], result["retrieval"]["unseen"]
    lines = [
        f"Held-out split: {result['seen_objects']} objects of seen (shape, colour) combinations, "
        f"{result['unseen_objects']} of the {len(result['unseen_combos'])} combinations never seen in training "
        "(15 objects per unseen combination against 5 per seen one, so unseen queries have more right "
        "answers in the gallery: compare them through the zero-shot columns).",
        "",
        "| query -> gallery | R@1 seen | R@5 seen | R@1 unseen | R@5 unseen |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for pair in s:
        q, g = pair.split("->")
        lines.append(f"| {LABEL[q]} -> {LABEL[g]} | {s[pair]['R@1']:.3f} | {s[pair]['R@5']:.3f} | "
                     f"{u[pair]['R@1']:.3f} | {u[pair]['R@5']:.3f} |")
    zs, zu = result["zero_shot"]["seen"], result["zero_shot"]["unseen"]
    lines += [
        "",
        "| zero-shot accuracy | shape seen | colour seen | both seen | shape unseen | colour unseen | both unseen |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in MODS:
        a, b = zs[m], zu[m]
        lines.append(f"| {LABEL[m]} | {a['shape']:.3f} | {a['colour']:.3f} | {a['shape+colour']:.3f} | "
                     f"{b['shape']:.3f} | {b['colour']:.3f} | {b['shape+colour']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--world", type=Path, default=ROOT / "tools/.gen/bindmini/world")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--bindery", type=Path, default=ROOT / "target/release/bindery")
    parser.add_argument("--server", help="address of a running server (default: start one)")
    parser.add_argument("--listen", default="127.0.0.1:50071", help="address for the server this starts")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "tools/.gen/bindmini/checkpoint.pt")
    parser.add_argument("--eval-md", type=Path, default=ROOT / "models/bind-mini/EVAL.md")
    parser.add_argument("--json", type=Path, default=ROOT / "tools/.gen/bindmini/eval.json")
    parser.add_argument("--compare-int8", action="store_true",
                        help="evaluate fp32 and int8 servers; write EVAL.md's int8 section only")
    args = parser.parse_args()
    if args.compare_int8:
        compare_int8(args)
        return

    def run(address: str) -> tuple[dict, dict | None]:
        stub = C.connect(address)
        result = evaluate(stub, args.world)
        check = None
        if args.checkpoint.exists():
            objects = [o for o in json.loads((args.world / "index.json").read_text())["objects"] if o["split"] == "test"]
            check = parity(stub, objects, args.world, args.checkpoint)
        return result, check

    if args.server:
        result, check = run(args.server)
    else:
        with C.server(args.bindery, args.models, args.listen):
            result, check = run(args.listen)
    index = json.loads((args.world / "index.json").read_text())
    result["unseen_combos"] = index["unseen"]
    result["parity_min_cosine"] = check
    table = tables(result)
    print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    write_eval_md(args, result, table, index)


def write_eval_md(args: argparse.Namespace, result: dict, table: str, index: dict) -> None:
    objs = index["objects"]
    train = [o for o in objs if o["split"] == "train"]
    size = sum(f.stat().st_size for f in args.world.rglob("*") if f.is_file())
    state = {}
    if args.checkpoint.exists():
        import torch

        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    unseen = ", ".join(f"{c} {s}" for s, c in index["unseen"])
    model_bytes = sum(f.stat().st_size for f in args.eval_md.parent.iterdir() if f.suffix in (".onnx", ".json", ".toml"))
    lines = [
        "# bind-mini evaluation",
        "",
        "Produced by `tools/bindmini/eval.py`: every embedding below came from a running bindery server",
        "over gRPC. Retrieval: each held-out object's embedding in the query modality ranks the gallery",
        "modality's embeddings of all held-out objects; a hit is an object of the query's shape and colour.",
        "Zero-shot: nearest text prototype (mean embedding of \"a {colour} {shape}\" over the other factor).",
        "",
        table,
        "",
        "## Setup",
        "",
        f"- World: seed {index['seed']}, {len(index['shapes'])} shapes x {len(index['colours'])} colours; "
        f"{len(train)} training objects ({len({(o['shape'], o['colour']) for o in train})} combinations), "
        f"{len(objs) - len(train)} held-out objects; each object has an image, a point cloud, a spoken phrase "
        f"and {len(objs[0]['captions'])} captions ({size / 1e6:.0f} MB of files).",
        f"- Combinations never seen in training: {unseen}.",
    ]
    if state:
        lines += [f"- Training (`tools/bindmini/train.py`): seed {state['seed']}, batches of {state['batch']} "
                  f"objects; {training_story(state)}; on {machine()}."]
    if result.get("parity_min_cosine"):
        pc = result["parity_min_cosine"]
        lines += [
            "- Train/serve agreement: reference preprocessing + PyTorch towers vs the server, smallest cosine "
            "over 6 held-out objects: " + ", ".join(f"{LABEL[m]} {v:.7f}" for m, v in pc.items()) + ".",
        ]
    lines += [f"- Model files: {model_bytes / 1e6:.1f} MB.", ""]
    # Keep the int8 comparison (--compare-int8), which a full evaluation does not redo.
    old = args.eval_md.read_text() if args.eval_md.exists() else ""
    if INT8_HEADING in old:
        lines += ["", old[old.index(INT8_HEADING) :].rstrip("\n"), ""]
    args.eval_md.write_text("\n".join(lines))
    print(f"wrote {args.eval_md}")


INT8_HEADING = "## int8 towers"


def compare_int8(args: argparse.Namespace) -> None:
    """Evaluates the same held-out split through an fp32 and an int8 server, one after the other,
    and replaces EVAL.md's int8 section (everything from its heading to the next ``## ``)."""
    results = {}
    for precision in ("fp32", "int8"):
        with C.server(args.bindery, args.models, args.listen, ("--precision", precision)):
            results[precision] = evaluate(C.connect(args.listen), args.world)
    fp32, int8 = results["fp32"], results["int8"]
    manifest = (args.eval_md.parent / "model.toml").read_text()
    cosines = ", ".join(f"{LABEL[m]} {c}" for m, c in
                        zip(("text", "image", "audio"), _int8_cosines(manifest)) if c)
    lines = [
        INT8_HEADING,
        "",
        "`tools/bindmini/eval.py --compare-int8`: the tables above through `bindery serve --precision "
        "int8` against `--precision fp32`, on the same held-out files. The int8 towers come from "
        "`tools/quantize.py models/bind-mini --sections text,image,audio --cache tools/.gen/bindmini/cache` "
        f"(dynamic quantization); worst cosine against fp32 on held-out reference tensors: {cosines}. "
        "The point-cloud tower stays fp32. Cells: fp32 -> int8.",
        "",
        "| query -> gallery | R@1 seen | R@5 seen | R@1 unseen | R@5 unseen |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for pair in fp32["retrieval"]["seen"]:
        q, g = pair.split("->")
        cells = [f"{fp32['retrieval'][grp][pair][k]:.3f} -> {int8['retrieval'][grp][pair][k]:.3f}"
                 for grp in ("seen", "unseen") for k in ("R@1", "R@5")]
        lines.append(f"| {LABEL[q]} -> {LABEL[g]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| zero-shot accuracy (shape+colour) | seen | unseen |",
        "| --- | ---: | ---: |",
    ]
    for m in MODS:
        cells = [f"{fp32['zero_shot'][grp][m]['shape+colour']:.3f} -> {int8['zero_shot'][grp][m]['shape+colour']:.3f}"
                 for grp in ("seen", "unseen")]
        lines.append(f"| {LABEL[m]} | " + " | ".join(cells) + " |")
    section = "\n".join(lines) + "\n"
    print(section)
    text = args.eval_md.read_text()
    start = text.find(INT8_HEADING)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(INT8_HEADING))
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    args.eval_md.write_text(text)
    print(f"wrote the int8 section of {args.eval_md}")


def _int8_cosines(manifest: str) -> list[str | None]:
    """The recorded ``int8_cosine`` of [text], [image] and [audio], in that order."""
    import tomllib

    parsed = tomllib.loads(manifest)
    return [str(parsed.get(s, {}).get("int8_cosine")) if "int8_cosine" in parsed.get(s, {}) else None
            for s in ("text", "image", "audio")]


#: What each stage of ``train.py`` trains.
STAGE_TOWERS = {
    "image-text": "image and text towers",
    "bind": "speech and point-cloud towers",
    "speech": "speech tower alone, light masking",
}


def training_story(state: dict) -> str:
    """The stages (steps, wall time) that made the checkpoint, including a stage 1 taken from
    another run (``train.py --image-text-from``) and later resumed runs (``--resume``)."""
    def stages(st: dict, only: str | None = None) -> str:
        return ", ".join(f"{k} {v['steps']} steps in {v['minutes']:g} min ({STAGE_TOWERS.get(k, k)})"
                         for k, v in st.items() if (only is None or k == only) and v["steps"])
    parts = []
    runs = state.get("runs") or [{"stages": state["stages"], "wall_seconds": state["wall_seconds"]}]
    for i, r in enumerate(runs):
        source = r.get("image_text_from")
        if i == 0 and source:
            parts.append("image and text towers from an earlier run's stage 1 (`--image-text-from`: "
                         f"{stages(source['stages'], 'image-text')}), then {stages(r['stages'])} "
                         f"from fresh speech and point-cloud weights")
        else:
            parts.append(stages(r["stages"]))
    return "; then resumed: ".join(parts)


if __name__ == "__main__":
    main()
