"""Import shims that let the pinned reference packages load on current torchvision."""

import importlib
import sys


def install_torchvision_alias() -> None:
    """Make ``torchvision.transforms.functional_tensor`` importable.

    pytorchvideo 0.1.5 (imported by ``imagebind.data``) still imports that module, which
    torchvision renamed to ``_functional_tensor``. Aliasing the new module under the old name
    keeps the reference code unmodified. Must run before ``imagebind.data`` is imported.
    """
    old = "torchvision.transforms.functional_tensor"
    if old in sys.modules:
        return
    try:
        importlib.import_module(old)
    except ModuleNotFoundError:
        sys.modules[old] = importlib.import_module("torchvision.transforms._functional_tensor")
