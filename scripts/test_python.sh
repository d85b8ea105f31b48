#!/usr/bin/env bash
# Runs the Python tests (clients/python/tests: the client, and the HTTP API through the openai
# package) against real servers started from
# target/debug/bindery (built by `cargo test`), in the venv `scripts/setup.sh --python` prepares
# (run first here; a no-op when it is up to date). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --python
export BINDERY_BIN=${BINDERY_BIN:-$PWD/target/debug/bindery}
[ -x "$BINDERY_BIN" ] || { echo "test_python: $BINDERY_BIN not found; run cargo test or cargo build --bin bindery" >&2; exit 1; }
exec .venv-test/bin/python -m pytest -q -p no:cacheprovider clients/python/tests "$@"
