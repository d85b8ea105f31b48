"""Build hooks for bindery-client: the gRPC stubs are generated from bindery's proto files.

Nothing generated is kept in git. The proto files are read from the bindery repository
(`../../proto`, as in `pip install ./clients/python`) or, inside an sdist, from `proto/`, where
the sdist command below copies them.
"""

import re
import shutil
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
PROTO_FILES = ("bindery/v1/embedder.proto", "bindery/v1/collections.proto")
# protoc writes imports such as `from bindery.v1 import embedder_pb2`; they are rewritten to
# point into this package, so that no top-level `bindery` package is installed.
STUB_PACKAGE = "bindery_client._proto"


def proto_root() -> Path:
    """The folder holding `bindery/v1/*.proto`: the repository's, else the sdist's copy."""
    for candidate in (HERE.parent.parent / "proto", HERE / "proto"):
        if all((candidate / name).is_file() for name in PROTO_FILES):
            return candidate
    raise SystemExit(
        "bindery-client: bindery/v1/*.proto not found in ../../proto or ./proto; build the "
        "package from the bindery repository (pip install ./clients/python) or from its sdist"
    )


def generate_stubs(package_dir: Path) -> None:
    """Writes the message and service modules (and .pyi type stubs) under `package_dir`/bindery."""
    from grpc_tools import protoc

    root = proto_root()
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "grpc_tools.protoc",
            f"--proto_path={root}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(str(root / name) for name in PROTO_FILES),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"bindery-client: protoc failed on {root}")
        generated = Path(tmp) / "bindery"
        target = package_dir / "bindery"
        shutil.rmtree(target, ignore_errors=True)
        for source in sorted(generated.rglob("*")):
            if not source.is_file():
                continue
            dest = target / source.relative_to(generated)
            dest.parent.mkdir(parents=True, exist_ok=True)
            text = re.sub(
                r"^from bindery\.v1 import ",
                f"from {STUB_PACKAGE}.bindery.v1 import ",
                source.read_text(encoding="utf-8"),
                flags=re.MULTILINE,
            )
            # The module name the message classes are registered under (used by pickle).
            text = re.sub(r"'bindery\.v1\.(\w+_pb2)'", rf"'{STUB_PACKAGE}.bindery.v1.\1'", text)
            dest.write_text(text, encoding="utf-8")
    for package in (target, target / "v1"):
        (package / "__init__.py").write_text('"""Generated from bindery\'s proto files."""\n')


class BuildPyWithStubs(build_py):
    """build_py that also generates the stubs into the build tree (or, editable, the source)."""

    def run(self) -> None:
        super().run()
        base = HERE if getattr(self, "editable_mode", False) else Path(self.build_lib)
        generate_stubs(base / "bindery_client" / "_proto")


class SdistWithProtos(sdist):
    """sdist that carries the proto files, so that a wheel can be built from it elsewhere."""

    def make_release_tree(self, base_dir: str, files: list) -> None:
        super().make_release_tree(base_dir, files)
        root = proto_root()
        for name in PROTO_FILES:
            dest = Path(base_dir) / "proto" / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / name, dest)


setup(cmdclass={"build_py": BuildPyWithStubs, "sdist": SdistWithProtos})
