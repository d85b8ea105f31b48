"""A small bindery gRPC client for the bind-mini tools: stubs, server start-up, embedding files.

The Python stubs are generated from ``proto/bindery/v1/embedder.proto`` into
``tools/.gen/bindmini/stubs`` on first use (``grpc_tools``, in the tools venv).
"""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "tools/.gen/bindmini/stubs"


def _stubs():
    proto = ROOT / "proto/bindery/v1/embedder.proto"
    target = STUBS / "bindery/v1/embedder_pb2.py"
    if not target.exists() or target.stat().st_mtime < proto.stat().st_mtime:
        from grpc_tools import protoc

        STUBS.mkdir(parents=True, exist_ok=True)
        code = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"--python_out={STUBS}",
                            f"--grpc_python_out={STUBS}", str(proto)])
        if code != 0:
            raise RuntimeError("protoc failed")
    sys.path.insert(0, str(STUBS))
    from bindery.v1 import embedder_pb2, embedder_pb2_grpc

    return embedder_pb2, embedder_pb2_grpc


pb, rpc = _stubs()

import grpc  # noqa: E402


def connect(address: str, timeout: float = 120.0) -> "rpc.EmbedderStub":
    """A stub for the server at ``address``, once it answers ``ListModels``."""
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20),
                                                      ("grpc.max_receive_message_length", 64 << 20)])
    stub = rpc.EmbedderStub(channel)
    deadline = time.monotonic() + timeout
    while True:
        try:
            stub.ListModels(pb.ListModelsRequest(), timeout=5)
            return stub
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@contextmanager
def server(binary: Path, models: Path, address: str, extra: tuple[str, ...] = ()) -> Iterator[subprocess.Popen]:
    """Runs ``bindery serve --models MODELS --listen ADDRESS [EXTRA...]`` for the duration of the block."""
    proc = subprocess.Popen([str(binary), "serve", "--models", str(models), "--listen", address, *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def file_input(input_id: str, path: Path) -> "pb.Input":
    """An ``Input`` for an image, audio or point-cloud file, by extension."""
    data = path.read_bytes()
    ext = path.suffix.lstrip(".").lower()
    if ext in ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"):
        return pb.Input(id=input_id, image=data)
    if ext in ("wav", "flac", "ogg", "mp3", "m4a"):
        return pb.Input(id=input_id, audio=pb.Audio(data=data, format_hint=ext))
    if ext in ("ply", "pcd", "xyz", "pts", "csv", "npy", "obj"):
        return pb.Input(id=input_id, point_cloud=pb.PointCloud(data=data, format_hint=ext))
    raise ValueError(f"{path}: unknown file type")


def embed(stub: "rpc.EmbedderStub", inputs: list, model: str = "", batch: int = 32) -> np.ndarray:
    """Unit embeddings ``[len(inputs), D]`` of ``inputs``, in order."""
    out = []
    for i in range(0, len(inputs), batch):
        reply = stub.Embed(pb.EmbedRequest(model=model, inputs=inputs[i:i + batch]), timeout=600)
        out += [np.array(e.vector, dtype=np.float32) for e in reply.embeddings]
    return np.stack(out)
