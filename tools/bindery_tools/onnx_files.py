"""Writing an exported ONNX graph as one model file, with its weights beside it when large."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx

#: Above this many bytes of weights a model keeps them in ``<model>.data`` (protobuf's 2 GB cap).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


def save_exported(raw: Path, dest: Path) -> None:
    """Moves the graph the exporter wrote to ``raw`` (whose folder holds nothing else; large graphs
    come out with one file per tensor) to ``dest``: one model file, plus one ``<dest>.data`` when
    the weights are too large for one protobuf. Then checks the result."""
    weights = sum(f.stat().st_size for f in raw.parent.iterdir())
    data_name = dest.name + ".data"
    (dest.parent / data_name).unlink(missing_ok=True)
    if weights < EXTERNAL_DATA_THRESHOLD:
        shutil.copyfile(raw, dest)
    else:
        graph = onnx.load(str(raw), load_external_data=True)
        onnx.save_model(
            graph,
            str(dest),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=1024,
        )
        del graph
    onnx.checker.check_model(str(dest))
