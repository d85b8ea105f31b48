"""tools/example_client.py (the raw-stub example) honours $BINDERY_SERVER."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURE_MODEL, FIXTURES, REPO
from grpc_tools import protoc


def test_example_client_reads_the_server_from_the_environment(server, tmp_path: Path) -> None:
    proto = REPO / "proto"
    generate = [f"-I{proto}", f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}"]
    assert protoc.main(["protoc", *generate, str(proto / "bindery" / "v1" / "embedder.proto")]) == 0
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "BINDERY_SERVER": f"http://{server.address}"}
    image = FIXTURES / "images" / "jpeg_baseline.jpg"
    example = REPO / "tools" / "example_client.py"
    run = subprocess.run(
        [sys.executable, str(example), str(image)], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert f"model {FIXTURE_MODEL}: dimension 32" in run.stdout
    assert 'INVALID_ARGUMENT: input "bad" (image)' in run.stdout
