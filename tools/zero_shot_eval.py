#!/usr/bin/env python3
"""Zero-shot classification accuracy of a running bindery server on a labelled folder.

    python tools/zero_shot_eval.py DATA --server 127.0.0.1:50051 --model vit-b-32 \\
        --template-set imagenet
    python tools/zero_shot_eval.py DATA --model ulip2-bigg --template "a point cloud model of {}."

``DATA`` holds one folder per class (``DATA/<class>/<files>``, the ImageFolder layout); the class
names, with ``_`` read as a space, are the labels. Every file goes through the server's
``Classify`` (images, or point clouds by extension) with the named template set and/or explicit
templates, so what is measured is what clients get: bindery's preprocessing, towers and label
embeddings. Prints top-1 and top-5 accuracy overall and per class.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import grpc

REPO = Path(__file__).resolve().parent.parent
IMAGE = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
POINT_CLOUD = {".npy", ".ply", ".pcd", ".xyz", ".pts", ".csv", ".obj"}


def _stubs(out: Path):
    """The bindery.v1 stubs, generated from the proto with grpc_tools."""
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{REPO / 'proto'}", f"--python_out={out}",
         f"--grpc_python_out={out}", str(REPO / "proto/bindery/v1/embedder.proto")],
        check=True,
    )
    sys.path.insert(0, str(out))
    from bindery.v1 import embedder_pb2, embedder_pb2_grpc

    return embedder_pb2, embedder_pb2_grpc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("data", type=Path, help="folder of class folders")
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--model", default="", help="model name (default: the server's)")
    parser.add_argument("--template-set", default="", help="named template set, e.g. imagenet")
    parser.add_argument("--template", action="append", default=[], help="explicit template (repeatable)")
    parser.add_argument("--batch", type=int, default=16, help="inputs per Classify call")
    args = parser.parse_args()

    classes = sorted(p.name for p in args.data.iterdir() if p.is_dir())
    if len(classes) < 2:
        parser.error(f"{args.data} needs at least two class folders")
    labels = [c.replace("_", " ") for c in classes]
    files = []
    for index, name in enumerate(classes):
        for f in sorted((args.data / name).iterdir()):
            if f.suffix.lower() in IMAGE | POINT_CLOUD:
                files.append((f, index))
    with tempfile.TemporaryDirectory() as tmp:
        pb, rpc = _stubs(Path(tmp))
        stub = rpc.EmbedderStub(grpc.insecure_channel(args.server.removeprefix("http://")))
        hits1, hits5, seen = defaultdict(int), defaultdict(int), defaultdict(int)
        for start in range(0, len(files), args.batch):
            chunk = files[start : start + args.batch]
            inputs = []
            for i, (f, _) in enumerate(chunk):
                data = f.read_bytes()
                if f.suffix.lower() in IMAGE:
                    inputs.append(pb.Input(id=str(i), image=data))
                else:
                    inputs.append(pb.Input(id=str(i), point_cloud=pb.PointCloud(data=data, format_hint=f.suffix[1:])))
            reply = stub.Classify(
                pb.ClassifyRequest(
                    model=args.model,
                    inputs=inputs,
                    labels=labels,
                    templates=args.template,
                    template_set=args.template_set,
                    top_k=min(5, len(labels)),
                )
            )
            for (f, truth), result in zip(chunk, reply.results):
                top = [labels.index(s.label) for s in result.top]
                seen[truth] += 1
                hits1[truth] += top[0] == truth
                hits5[truth] += truth in top
    total = sum(seen.values())
    print(f"{total} inputs, {len(labels)} classes")
    for index, label in enumerate(labels):
        n = seen[index]
        if n:
            print(f"  {label:30s} {n:5d}  top-1 {hits1[index] / n:.3f}  top-5 {hits5[index] / n:.3f}")
    print(f"top-1 {sum(hits1.values()) / total:.4f}  top-5 {sum(hits5.values()) / total:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
