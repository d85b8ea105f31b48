#!/usr/bin/env python3
"""Times the reference image preprocessing on the same JPEG as ``benches/image_preprocess.rs``.

    BINDERY_BENCH_JPEG=/tmp/bench.jpg cargo bench --bench image_preprocess   # writes the JPEG
    tools/.venv/bin/python tools/bench_image_reference.py --jpeg /tmp/bench.jpg [--threads N]

One iteration is ``imagebind.data.load_and_transform_vision_data`` on that file:
``Image.open(f).convert("RGB")``, ``Resize(224, BICUBIC)``, ``CenterCrop(224)``, ``ToTensor()``,
``Normalize(...)``, as the reference builds them. The per-stage lines time the decode
(``Image.open`` + ``convert("RGB")``) and the tensor transform on the decoded image on their own.

``--languagebind`` adds LanguageBind's image path (the PyPI ``languagebind`` package,
``get_image_transform`` + ``load_and_transform_image``: ``ToTensor()`` first, then ``Resize(224,
BICUBIC)`` on the float tensor, ``CenterCrop``, ``Normalize``), which bindery runs with
``resize_domain = "tensor"`` (the ``jpeg_1920x1080_tensor`` bench).
"""

from __future__ import annotations

import argparse
import io
import sys
import types
from pathlib import Path
from unittest import mock

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import reference as ref  # noqa: E402
from bindery_tools.timing import timeit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jpeg", type=Path, required=True, help="the JPEG the Rust bench wrote")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--languagebind", action="store_true", help="also time LanguageBind's image path")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path = str(args.jpeg)
    data = args.jpeg.read_bytes()

    # The transform exactly as load_and_transform_vision_data builds it, captured from one call.
    captured: list = []
    compose = ref.data.transforms.Compose

    class Recording(compose):  # type: ignore[misc, valid-type]
        def __init__(self, steps: list) -> None:
            super().__init__(steps)
            captured.append(self)

    with mock.patch.object(ref.data.transforms, "Compose", Recording):
        ref.data.load_and_transform_vision_data([path], "cpu")
    transform = captured[0]

    def decode() -> Image.Image:
        with Image.open(io.BytesIO(data)) as im:
            return im.convert("RGB")

    decoded = decode()
    rows = [
        ("whole preprocessing (load_and_transform_vision_data)",
         lambda: ref.data.load_and_transform_vision_data([path], "cpu")),
        ("decode (Image.open + convert RGB, from memory)", decode),
        ("resize + crop + ToTensor + Normalize", lambda: transform(decoded)),
    ]
    if args.languagebind:
        from bindery_tools.compat import install_torchvision_alias

        install_torchvision_alias()
        from languagebind.image import processing_image as lb

        # get_image_transform reads nothing from the config it is given.
        lb_transform = lb.get_image_transform(types.SimpleNamespace(vision_config=None))
        rows += [
            ("LanguageBind: load_and_transform_image", lambda: lb.load_and_transform_image(path, lb_transform)),
            ("LanguageBind: ToTensor + tensor resize + crop + Normalize", lambda: lb_transform(decoded)),
        ]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), Pillow {Image.__version__}, "
          f"{decoded.width}x{decoded.height} JPEG of {len(data)} bytes, {args.repeat} runs each")
    for name, fn in rows:
        med, best = timeit(fn, args.repeat)
        print(f"{name:55s} median {med:8.2f} ms   min {best:8.2f} ms")


if __name__ == "__main__":
    main()
