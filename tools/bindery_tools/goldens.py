"""What the golden-file generators share: regenerating into a scratch folder and comparing."""

from __future__ import annotations

import filecmp
import tempfile
from pathlib import Path
from typing import Callable


def check_regenerated(
    root: Path,
    model_dir: Path,
    generate: Callable[[Path, Path], None],
    owned: Callable[[Path], set[str]],
) -> int:
    """Runs ``generate`` into a temporary folder and reports every file (of those ``owned``
    names under either root) that differs from ``root``. Returns the exit status: 1 on a
    difference."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh, model_dir)
        names = sorted(owned(root) | owned(fresh))
        bad = [
            n
            for n in names
            if not (root / n).is_file()
            or not (fresh / n).is_file()
            or not filecmp.cmp(root / n, fresh / n, shallow=False)
        ]
    for n in bad:
        print(f"differs: {n}")
    print("fixtures up to date" if not bad else f"{len(bad)} fixture file(s) differ")
    return 1 if bad else 0
