#!/usr/bin/env python3
"""Checks a running bindery server against the reference ImageBind code on a folder of your files.

    tools/.venv/bin/python tools/parity_report.py FOLDER --server 127.0.0.1:50051 --checkpoint imagebind_huge.pth
    tools/.venv/bin/python tools/parity_report.py FOLDER --server 127.0.0.1:50051 --fixture   # models/imagebind-fixture

Every file under FOLDER goes to a modality by extension: texts (``.txt``, one text per line),
images (``.jpg .jpeg .png .webp .gif .bmp .tif .tiff`` and every other extension of a format
Pillow opens: ``.avif .qoi .ppm .tga .ico .psd`` ...) and audio
(``.wav .flac .mp3 .ogg .oga .opus .m4a .mp4 .aac .webm``). Each input is
embedded twice: by the reference (``imagebind.data``'s loaders, audio decoded by the ``ffmpeg``
CLI as ``torchaudio.load`` decodes through FFmpeg, and the PyTorch model with the weights the
server serves) and by the server (``Embed``, normalised vectors). The report prints, per modality
and format, the number of inputs, the worst cosine (with its file) and the mean, and lists the
inputs the server or the reference refused, with their messages. Exit status 1 when a cosine is
below ``--min-cosine`` (default 0.999).

The server must serve the same weights: ``--checkpoint`` with a model folder exported from that
checkpoint by ``export_imagebind.py --checkpoint``, ``--fixture`` with the committed fixture model.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import reference as ref  # noqa: E402
from make_audio_fixtures import reference_preprocess  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".webm"}
# Every extension of a format Pillow opens (.avif, .qoi, .ppm, .tga, .ico, .psd, ...), so that the
# formats bindery refuses show up in the report too.
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"} | {
    ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN and ext not in AUDIO_EXTENSIONS
}


@dataclass
class Case:
    """One input: where it came from, its modality and format, and its payload for the server."""

    name: str
    modality: str
    format: str
    path: Path
    text: str | None = None


def cases(folder: Path) -> list[Case]:
    found: list[Case] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        suffix = path.suffix.lower()
        if suffix == ".txt":
            for n, line in enumerate(path.read_text(errors="replace").splitlines()):
                if line.strip():
                    found.append(Case(f"{path}:{n + 1}", "text", "text", path, text=line))
        elif suffix in IMAGE_EXTENSIONS:
            found.append(Case(str(path), "image", suffix.lstrip("."), path))
        elif suffix in AUDIO_EXTENSIONS:
            found.append(Case(str(path), "audio", suffix.lstrip("."), path))
    return found


def stubs(out: Path):
    """The gRPC stubs of ``proto/``, generated into ``out``."""
    from grpc_tools import protoc

    proto = REPO / "proto"
    files = [str(p) for p in (proto / "bindery" / "v1").glob("*.proto")]
    if protoc.main(["protoc", f"-I{proto}", f"--python_out={out}", f"--grpc_python_out={out}", *files]) != 0:
        raise SystemExit("cannot generate the gRPC stubs")
    sys.path.insert(0, str(out))
    from bindery.v1 import embedder_pb2, embedder_pb2_grpc

    return embedder_pb2, embedder_pb2_grpc


def reference_embedding(model: torch.nn.Module, case: Case) -> np.ndarray:
    """The reference's unit-norm embedding of one input."""
    with torch.no_grad():
        if case.modality == "text":
            tokens = ref.data.load_and_transform_text([case.text], "cpu")
            out = model({ref.ModalityType.TEXT: tokens})[ref.ModalityType.TEXT]
        elif case.modality == "image":
            pixels = ref.data.load_and_transform_vision_data([str(case.path)], "cpu")
            out = model({ref.ModalityType.VISION: pixels})[ref.ModalityType.VISION]
        else:
            fbank = reference_preprocess(case.path, "ffmpeg")
            out = model({ref.ModalityType.AUDIO: fbank.unsqueeze(0)})[ref.ModalityType.AUDIO]
    vector = out[0].numpy().astype(np.float64)
    return vector / np.linalg.norm(vector)


def server_embedding(stub, pb, model: str, case: Case) -> np.ndarray:
    if case.modality == "text":
        item = pb.Input(id=case.name, text=case.text)
    elif case.modality == "image":
        item = pb.Input(id=case.name, image=case.path.read_bytes())
    else:
        item = pb.Input(id=case.name, audio=pb.Audio(data=case.path.read_bytes(), format_hint=case.format))
    reply = stub.Embed(pb.EmbedRequest(model=model, inputs=[item], cache=False), timeout=600)
    return np.asarray(reply.embeddings[0].vector, dtype=np.float64)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="folder of texts, images and audio files")
    ap.add_argument("--server", default="127.0.0.1:50051", help="bindery's gRPC address")
    ap.add_argument("--model", default="", help="model name on the server (default: its default model)")
    weights = ap.add_mutually_exclusive_group(required=True)
    weights.add_argument("--checkpoint", type=Path, help="ImageBind checkpoint the server's model was exported from")
    weights.add_argument("--fixture", action="store_true", help="the committed fixture model (models/imagebind-fixture)")
    ap.add_argument("--min-cosine", type=float, default=0.999, help="exit 1 below this cosine")
    args = ap.parse_args(argv)

    import grpc

    found = cases(args.folder)
    if not found:
        raise SystemExit(f"no texts, images or audio files under {args.folder}")
    model = ref.build_fixture_model() if args.fixture else ref.build_huge_model(args.checkpoint)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        pb, rpc = stubs(Path(tmp))
        stub = rpc.EmbedderStub(grpc.insecure_channel(args.server))
        results: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
        refused: list[str] = []
        for case in found:
            try:
                served = server_embedding(stub, pb, args.model, case)
            except grpc.RpcError as e:
                refused.append(f"{case.name}: server {e.code().name}: {e.details()}")
                continue
            try:
                reference = reference_embedding(model, case)
            except (RuntimeError, ValueError, OSError, subprocess.CalledProcessError) as e:
                refused.append(f"{case.name}: reference failed: {e}")
                continue
            if served.shape != reference.shape:
                refused.append(f"{case.name}: server gave {served.shape[0]} values, the reference {reference.shape[0]}")
                continue
            results[(case.modality, case.format)].append((float(served @ reference), case.name))
    print(f"{'modality':<10} {'format':<8} {'inputs':>6} {'worst cosine':>13} {'mean':>9}  worst input")
    below = False
    for (modality, fmt), scores in sorted(results.items()):
        worst, name = min(scores)
        mean = sum(s for s, _ in scores) / len(scores)
        below |= worst < args.min_cosine
        print(f"{modality:<10} {fmt:<8} {len(scores):>6} {worst:>13.6f} {mean:>9.6f}  {name}")
    for line in refused:
        print(f"refused: {line}")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
