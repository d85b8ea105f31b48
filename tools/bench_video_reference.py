#!/usr/bin/env python3
"""End-to-end video embedding: bindery over gRPC against the reference pipeline, same file.

    target/release/bindery serve --models models --default-model imagebind-fixture --listen 127.0.0.1:50071 &
    tools/.venv/bin/python tools/bench_video_reference.py --server 127.0.0.1:50071

Encodes one 30 s 1280x720 H.264 video (FFmpeg's ``testsrc2``, libx264 defaults but ``veryfast``,
30 fps, a key frame every 250 frames at most), then alternates rounds: the reference
(``imagebind.data.load_and_transform_video_data`` with decord, then Python onnxruntime on the
same ``video.onnx``) embeds it ``--repeat`` times, and bindery (one Embed call per video, cache off)
does the same. Prints seconds per video on each side and the ratio per round, and checks that
both sides agree (cosine).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import reference as ref  # noqa: E402
from make_video_fixtures import _from_path_ignoring_extra  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _stubs(tmp: Path):
    from grpc_tools import protoc

    args = ["protoc", f"-I{ROOT / 'proto'}", f"--python_out={tmp}", f"--grpc_python_out={tmp}",
            str(ROOT / "proto/bindery/v1/embedder.proto")]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    sys.path.insert(0, str(tmp))
    from bindery.v1 import embedder_pb2, embedder_pb2_grpc

    return embedder_pb2, embedder_pb2_grpc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--server", default="127.0.0.1:50071")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "imagebind-fixture")
    args = parser.parse_args()

    import grpc

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        video = tmp / "bench_720p_30s.mp4"
        subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
             "testsrc2=size=1280x720:rate=30:duration=30", "-c:v", "libx264", "-preset", "veryfast",
             "-pix_fmt", "yuv420p", str(video)],
            check=True,
        )
        data = video.read_bytes()
        print(f"video: {video.name}, {len(data)} bytes, 900 frames of 1280x720")
        pb, rpc = _stubs(tmp)
        stub = rpc.EmbedderStub(grpc.insecure_channel(args.server, options=[
            ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]))
        session = ort.InferenceSession(str(args.model_dir / "video.onnx"), providers=["CPUExecutionProvider"])
        encoded = ref.data.EncodedVideo

        def reference() -> np.ndarray:
            with mock.patch.object(encoded, "from_path", _from_path_ignoring_extra(encoded.from_path)):
                clips = ref.data.load_and_transform_video_data([str(video)], "cpu").numpy()
            (out,) = session.run(None, {"clips": clips})
            return out[0]

        def bindery() -> np.ndarray:
            request = pb.EmbedRequest(
                model="imagebind-fixture", inputs=[pb.Input(id="v", video=pb.Video(data=data, format_hint="mp4"))],
                normalize=False, cache=False)
            return np.array(stub.Embed(request).embeddings[0].vector, dtype=np.float32)

        a, b = reference(), bindery()  # warm-up, and the agreement check
        cos = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
        print(f"cosine bindery vs reference: {cos:.7f}")
        ratios = []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                reference()
            ref_s = (time.perf_counter() - t0) / args.repeat
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                bindery()
            ours = (time.perf_counter() - t0) / args.repeat
            ratios.append(ref_s / ours)
            print(f"round {r + 1}: reference {ref_s:.3f} s/video, bindery {ours:.3f} s/video, ratio {ref_s / ours:.2f}x")
        print(f"median ratio {statistics.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f})")


if __name__ == "__main__":
    main()
