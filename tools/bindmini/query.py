#!/usr/bin/env python3
"""Rank files against a query through a running bindery server (default model).

    tools/.venv/bin/python tools/bindmini/query.py "a red cube" tests/fixtures/bind_mini/*.jpg
    tools/.venv/bin/python tools/bindmini/query.py tests/fixtures/bind_mini/blue_cone.wav tests/fixtures/bind_mini/*.ply

The query is a text, or an image/audio/point-cloud file; the candidates are files of any of those
kinds. Prints the best matches by cosine similarity.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import client as C  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("query", help="a text, or a file")
    parser.add_argument("candidates", nargs="+", type=Path)
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()
    stub = C.connect(args.server, timeout=10)
    q = Path(args.query)
    query = C.file_input("query", q) if q.is_file() else C.pb.Input(id="query", text=args.query)
    reply = stub.Embed(C.pb.EmbedRequest(inputs=[query]))
    vec = C.np.array(reply.embeddings[0].vector, dtype=C.np.float32)
    cands = C.embed(stub, [C.file_input(str(p), p) for p in args.candidates])
    scores = cands @ vec
    print(f"model {reply.model}: {args.query!r} against {len(args.candidates)} files")
    for i in C.np.argsort(-scores, kind="stable")[: args.top]:
        print(f"  {scores[i]:.3f}  {args.candidates[i]}")


if __name__ == "__main__":
    main()
