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
    if weights < EXTERNAL_DATA_THRESHOLD and len(list(raw.parent.iterdir())) == 1:
        shutil.copyfile(raw, dest)
    elif weights < EXTERNAL_DATA_THRESHOLD:
        # Weights in files beside the graph: fold them into the one model file.
        onnx.save_model(onnx.load(str(raw), load_external_data=True), str(dest))
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


def name_output(path: Path, name: str) -> None:
    """Gives the graph's only output the tensor name ``name``, renaming any inner value that
    already has it. The dynamo exporter names inner values after their operators (``embedding``
    for the token lookup), so asking it for such an output name directly yields a graph with the
    name defined twice, which onnxruntime refuses. Weights stay where they are."""
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    (output,) = graph.output
    if output.name == name:
        return

    def rename(old: str, new: str) -> None:
        for node in graph.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]
        for value in list(graph.value_info) + list(graph.input) + list(graph.output):
            if value.name == old:
                value.name = new
        for init in graph.initializer:
            if init.name == old:
                init.name = new

    rename(name, name + "_inner")
    rename(output.name, name)
    onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path))
