#!/usr/bin/env python3
"""Write half-precision variants of a model folder's towers and name them in its model.toml.

    python tools/make_fp16.py tools/.gen/imagebind-base-random

Each ``<tower>.onnx`` gets a ``<tower>.fp16.onnx`` whose weights and arithmetic are float16 but
whose inputs and outputs stay float32 (``keep_io_types``), so bindery's preprocessing feeds it
unchanged; ``onnx_fp16 = ...`` is added to each section. ``bindery serve --fp16`` then loads
them. Meant for GPUs: on a CPU, ONNX Runtime runs most float16 kernels slower than float32.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import onnx
from onnxruntime.transformers.float16 import convert_float_to_float16

SECTIONS = ("text", "image", "audio", "point_cloud")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    args = parser.parse_args()
    manifest_path = args.model_dir / "model.toml"
    manifest = manifest_path.read_text()
    for section in SECTIONS:
        header = re.search(rf"^\[{section}\]\n(?:.*\n)*?onnx = \"([^\"]+)\"\n", manifest, re.M)
        if header is None:
            continue
        source = header.group(1)
        half = source.removesuffix(".onnx") + ".fp16.onnx"
        model = onnx.load(str(args.model_dir / source))
        converted = convert_float_to_float16(model, keep_io_types=True)
        onnx.save_model(converted, str(args.model_dir / half))
        print(f"{section}: {source} -> {half}")
        line = f'onnx = "{source}"\n'
        if f'onnx_fp16 = "{half}"' not in manifest:
            start = header.start()
            at = manifest.index(line, start) + len(line)
            manifest = manifest[:at] + f'onnx_fp16 = "{half}"\n' + manifest[at:]
    manifest_path.write_text(manifest)


if __name__ == "__main__":
    main()
