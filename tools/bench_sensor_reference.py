#!/usr/bin/env python3
"""Times the reference sensor preprocessing on the same files as ``benches/sensors.rs``.

    tools/.venv/bin/python tools/bench_sensor_reference.py [--repeat R] [--threads 1]

* ``depth_png16_640x480_disparity``: ``sensors.depth_tensor`` (Omnivore's recipe: Pillow read,
  metres, clip, baseline x focal / depth, then Pillow resize of the float image, crop, tensor);
* ``imu_csv_2000x6``: Weaviate's own reading, ``np.loadtxt(..., delimiter=",", skiprows=1)``,
  then the six channels transposed and cut or padded to 2000 (the faster of the two Python
  readings; ``sensors.imu_tensor``, which matches columns by name in Python, is timed too);
* ``thermal_png8_640x512``: ``sensors.thermal_tensor`` (Weaviate's recipe).

Each is timed ``--repeat`` times after one warm-up call; the median is printed.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bindery_tools import sensors  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"


def weaviate_imu(data: bytes) -> torch.Tensor:
    table = np.loadtxt(io.BytesIO(data), dtype=np.float32, delimiter=",", skiprows=1)
    tensor = torch.from_numpy(np.ascontiguousarray(table[:, -6:].T))
    if tensor.shape[1] < 2000:
        return torch.nn.functional.pad(tensor, (0, 2000 - tensor.shape[1]), value=0.0)
    return tensor[:, :2000]


def timed(name: str, fn, repeat: int) -> None:
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    print(f"{name}: median {statistics.median(samples) * 1e3:.3f} ms over {repeat} runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    depth = (FIXTURES / "depth" / "kinect_640x480.png").read_bytes()
    csv = (FIXTURES / "imu" / "weaviate_2000.csv").read_bytes()
    frame = (FIXTURES / "thermal" / "gray8_640x512.png").read_bytes()
    # The two IMU readings are the same work with the same result.
    assert torch.allclose(weaviate_imu(csv), sensors.imu_tensor(csv), rtol=0, atol=1e-6)
    timed("depth_png16_640x480_disparity", lambda: sensors.depth_tensor(depth), args.repeat)
    timed("imu_csv_2000x6 (np.loadtxt, Weaviate)", lambda: weaviate_imu(csv), args.repeat)
    timed("imu_csv_2000x6 (sensors.imu_tensor)", lambda: sensors.imu_tensor(csv), args.repeat)
    timed("thermal_png8_640x512", lambda: sensors.thermal_tensor(frame), args.repeat)


if __name__ == "__main__":
    main()
