"""gRPC stubs generated from bindery's proto files when the package is built.

`pb` holds the embedder messages, `cpb` the collections messages, `embedder_grpc` and
`collections_grpc` the service stubs.
"""

import importlib.util

if importlib.util.find_spec(__name__ + ".bindery") is None:
    raise ImportError(
        "bindery_client's gRPC stubs are generated when the package is built; install it "
        "(pip install ./clients/python) rather than importing it from the source folder"
    )

from .bindery.v1 import collections_pb2 as cpb  # noqa: E402
from .bindery.v1 import collections_pb2_grpc as collections_grpc  # noqa: E402
from .bindery.v1 import embedder_pb2 as pb  # noqa: E402
from .bindery.v1 import embedder_pb2_grpc as embedder_grpc  # noqa: E402

__all__ = ["pb", "cpb", "embedder_grpc", "collections_grpc"]
