"""Text towers with a free length axis, which the server may run cut to the ids a batch uses.

A text tower with causal attention pooled at its end id reads nothing after a row's last id. The
reference pads every row to the whole context; exported with a free length axis (each family's
exporter patches its positional embedding and causal mask to the input's length while tracing),
the tower gives the same vectors for rows cut after their last id, and ``trim_padding = true`` in
the manifest lets bindery cut each batch's padding. ``verify_cut`` is the check that earns it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from .onnx_files import name_output

#: Length of the example rows traced: under any context, so the exporter keeps the length free.
TRACE_LENGTH = 20
#: Max abs difference accepted between a row run cut after its last id and the same row run
#: whole by the same graph: float32 rounding of outputs up to about 20, and in practice none.
CUT_TOLERANCE = 1e-5


def export(tower: torch.nn.Module, example: torch.Tensor, raw: Path, input_name: str, output_name: str) -> None:
    """Exports ``tower`` (ids ``[batch, length]`` -> embedding, already patched to take any
    length) to ``raw`` with both axes free. The tracing exporter fixes the sequence length inside
    ``nn.MultiheadAttention``'s reshapes, so this goes through ``torch.export``, which keeps it
    symbolic."""
    context = example.shape[1]
    short = example[:, :TRACE_LENGTH].clone()
    short[:, -1] = example.max()
    batch = torch.export.Dim("batch", min=1)
    length = torch.export.Dim("length", min=2, max=context)
    with torch.no_grad():
        torch.onnx.export(
            tower,
            (short,),
            str(raw),
            input_names=[input_name],
            dynamic_shapes=({0: batch, 1: length},),
            opset_version=18,
            dynamo=True,
            external_data=True,
        )
    name_output(raw, output_name)


def length_is_free(path: Path) -> bool:
    """Whether the tower at ``path`` exists and takes its input's last axis at any length."""
    if not path.is_file():
        return False
    (inp,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()
    return not isinstance(inp.shape[-1], int)


def verify_cut(path: Path, input_name: str, output_name: str, tokens: np.ndarray, pad: int) -> bool:
    """Whether the text tower at ``path`` gives, for each row of ``tokens`` cut after the first
    ``pad`` that follows its last other id, what it gives for the whole row, alone and as a
    batch cut to its longest row (what ``trim_padding`` lets the server do). Prints what it
    found."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    if isinstance(inp.shape[-1], int):
        print(f"  {path.name}: length axis fixed at {inp.shape[-1]}; padding is not cut")
        return False
    # As the server cuts: through the first pad after the last other id (LanguageBind pads with
    # its end id, where the tower pools).
    used = [min(int(np.flatnonzero(row != pad).max(initial=0)) + 2, len(row)) for row in tokens]
    (whole,) = session.run([output_name], {input_name: tokens})
    worst, same = 0.0, 0
    for row, n in enumerate(used):
        (cut,) = session.run([output_name], {input_name: tokens[row : row + 1, :n]})
        worst = max(worst, float(np.max(np.abs(cut[0] - whole[row]))))
        same += int(np.array_equal(cut[0], whole[row]))
    (batch,) = session.run([output_name], {input_name: tokens[:8, : max(used[:8])]})
    worst = max(worst, float(np.max(np.abs(batch - whole[:8]))))
    print(
        f"  {path.name}: rows cut after the first pad vs whole: {same}/{len(used)} identical, "
        f"max abs diff {worst:.3e}"
    )
    return worst <= CUT_TOLERANCE
