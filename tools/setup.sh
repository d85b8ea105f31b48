#!/usr/bin/env bash
# Creates tools/.venv (if missing) and installs the pinned tooling requirements into it.
# Safe to re-run: pip skips what is already installed at the pinned version.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3.11}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install -r "$here/requirements.txt"
"$venv/bin/python" -m pip install --no-deps -r "$here/requirements-nodeps.txt"
