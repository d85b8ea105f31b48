"""Runs the tests against real bindery servers started from target/debug/bindery.

The binary is $BINDERY_BIN or the repository's target/debug/bindery (built by `cargo test`); the
servers serve only the fixture model (models/imagebind-fixture), from a temporary data folder.
A missing binary fails the tests rather than skipping them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bindery_client import BinderyError, Client

# The tests set these themselves where they test them; inherited values would change every call.
for _variable in ("BINDERY_SERVER", "BINDERY_API_KEY"):
    os.environ.pop(_variable, None)

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures"
FIXTURE_MODEL = "imagebind-fixture"
DIMENSION = 32


class Server:
    """A bindery server process on a free local port."""

    def __init__(self, workdir: Path, args: list[str], env: dict[str, str] | None = None) -> None:
        binary = Path(os.environ.get("BINDERY_BIN", REPO / "target" / "debug" / "bindery"))
        if not binary.is_file():
            pytest.fail(f"{binary} not found: build it with `cargo build --bin bindery` (or set BINDERY_BIN)")
        models = workdir / "models"
        models.mkdir(exist_ok=True)
        link = models / FIXTURE_MODEL
        if not link.exists():
            link.symlink_to(REPO / "models" / FIXTURE_MODEL)
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # The HTTP API, for the OpenAI-compatibility tests.
        self.http_address = f"127.0.0.1:{_free_port()}"
        self.log_path = workdir / f"server-{self.port}.log"
        command = [
            str(binary), "serve",
            "--models", str(models),
            "--listen", self.address,
            "--data-dir", str(workdir / f"data-{self.port}"),
            "--no-warm-up",
            "--intra-threads", "2",
            "--http", self.http_address,
            *args,
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            # Run from the repository so that the server finds .ort/ as `make setup` left it.
            # The server reads BINDERY_* settings (keys, TLS, models) from its environment: only
            # the test's own are passed.
            clean = {k: v for k, v in os.environ.items() if not k.startswith("BINDERY_")}
            self.process = subprocess.Popen(
                command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**clean, **(env or {})}
            )

    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_listening(self, timeout: float = 60.0) -> None:
        """Returns once the port accepts connections; fails the test if the server exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"bindery exited with {self.process.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"bindery did not listen on {self.address} within {timeout}s:\n{self.log()}")

    def wait_serving(self, client: Client, timeout: float = 60.0) -> None:
        """Returns once `client` gets an answer to ListModels."""
        self.wait_listening(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.list_models()
                return
            except BinderyError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Stops the server (SIGTERM, then SIGKILL)."""
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """A temporary folder for the servers' models link, data and logs."""
    with tempfile.TemporaryDirectory(prefix="bindery-python-tests-") as folder:
        yield Path(folder)


@pytest.fixture(scope="session")
def start_server(workdir: Path) -> Iterator:
    """Starts servers with extra arguments; they are all stopped at the end of the session."""
    servers: list[Server] = []

    def start(args: list[str] = (), env: dict[str, str] | None = None) -> Server:
        server = Server(workdir, list(args), env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def server(start_server) -> Server:
    """A server with default limits."""
    started = start_server()
    with Client(started.address) as client:
        started.wait_serving(client)
    return started


@pytest.fixture()
def client(server: Server) -> Iterator[Client]:
    """A client of the default server."""
    with Client(server.address, timeout=60) as connected:
        yield connected
