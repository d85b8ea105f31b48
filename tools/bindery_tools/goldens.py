"""What the golden-file generators share: regenerating into a scratch folder and comparing."""

from __future__ import annotations

import array
import filecmp
import json
import tempfile
from pathlib import Path
from typing import Callable

#: Float goldens regenerated on another CPU differ in their last bits (PyTorch picks reduction
#: kernels per instruction set, even single-threaded), so JSON files and raw float32 tensors
#: (``.f32``) compare numbers within this, relative to the largest magnitude when above 1.
FLOAT_TOLERANCE = 1e-5


def _max_float_difference(a, b) -> float | None:
    """The largest difference between numbers at the same place in two JSON values (relative to
    their magnitude when above 1), or None when they differ in anything else (keys, lengths,
    strings, types)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return 0.0 if a == b else None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) / max(1.0, abs(float(a)), abs(float(b)))
    if type(a) is not type(b):
        return None
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return None
        parts = [_max_float_difference(a[k], b[k]) for k in a]
    elif isinstance(a, list):
        if len(a) != len(b):
            return None
        parts = [_max_float_difference(x, y) for x, y in zip(a, b)]
    else:
        return 0.0 if a == b else None
    if any(p is None for p in parts):
        return None
    return max(parts, default=0.0)


def _max_f32_difference(old: Path, new: Path) -> float | None:
    """The largest difference between two raw little-endian float32 tensors of one length, scaled
    by their largest magnitude when that is above 1."""
    a, b = array.array("f", old.read_bytes()), array.array("f", new.read_bytes())
    if len(a) != len(b):
        return None
    scale = max(1.0, max(map(abs, a), default=0.0))
    return max((abs(x - y) for x, y in zip(a, b)), default=0.0) / scale


def _same(old: Path, new: Path, tolerance: float) -> bool:
    if filecmp.cmp(old, new, shallow=False):
        return True
    if old.suffix == ".json":
        diff = _max_float_difference(json.loads(old.read_text()), json.loads(new.read_text()))
    elif old.suffix == ".f32":
        diff = _max_f32_difference(old, new)
    else:
        return False
    if diff is not None and diff <= tolerance:
        print(f"same within {tolerance:g} (largest difference {diff:.3g}): {old}")
        return True
    return False


def check_regenerated(
    root: Path,
    model_dir: Path,
    generate: Callable[[Path, Path], None],
    owned: Callable[[Path], set[str]],
    tolerance: float = FLOAT_TOLERANCE,
) -> int:
    """Runs ``generate`` into a temporary folder and reports every file (of those ``owned``
    names under either root) that differs from ``root`` (JSON numbers within
    ``tolerance``). Returns the exit status: 1 on a difference."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh, model_dir)
        names = sorted(owned(root) | owned(fresh))
        bad = [
            n
            for n in names
            if not (root / n).is_file()
            or not (fresh / n).is_file()
            or not _same(root / n, fresh / n, tolerance)
        ]
    for n in bad:
        print(f"differs: {n}")
    print("fixtures up to date" if not bad else f"{len(bad)} fixture file(s) differ")
    return 1 if bad else 0
