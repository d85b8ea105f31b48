"""A minimal Python gRPC client for bindery (the README's example).

Generate the stubs once, then run against a running server:

    python -m grpc_tools.protoc -I proto --python_out=tools/.gen --grpc_python_out=tools/.gen \
        proto/bindery/v1/embedder.proto
    PYTHONPATH=tools/.gen python tools/example_client.py tests/fixtures/images/jpeg_baseline.jpg

The server is the second argument, else $BINDERY_SERVER, else 127.0.0.1:50051. The package in
clients/python wraps all of this (and more) in a typed client.
"""

import os
import sys

import grpc
from bindery.v1 import embedder_pb2 as pb
from bindery.v1 import embedder_pb2_grpc as rpc


def main(image_path: str, server: str = "") -> None:
    server = server or os.environ.get("BINDERY_SERVER") or "127.0.0.1:50051"
    # $BINDERY_SERVER may be a URL, as the CLI accepts; this plaintext example needs host:port.
    server = server.removeprefix("http://")
    stub = rpc.EmbedderStub(grpc.insecure_channel(server))
    with open(image_path, "rb") as f:
        image = f.read()
    reply = stub.Embed(
        pb.EmbedRequest(
            inputs=[
                pb.Input(id="caption", text="a red cube on a table"),
                pb.Input(id="photo", image=image),
            ]
        )
    )
    caption, photo = reply.embeddings
    similarity = sum(a * b for a, b in zip(caption.vector, photo.vector))
    print(f"model {reply.model}: dimension {len(caption.vector)}, cosine(caption, photo) = {similarity:.4f}")

    try:
        stub.Embed(pb.EmbedRequest(inputs=[pb.Input(id="bad", image=b"not an image")]))
    except grpc.RpcError as e:
        print(f"{e.code().name}: {e.details()}")


if __name__ == "__main__":
    main(*sys.argv[1:])
