#!/usr/bin/env bash
# Creates tools/.venv (if missing) and installs the pinned tooling requirements into it.
# With --languagebind: tools/.venv-languagebind, LanguageBind's reference on transformers 4.30.2
# (requirements-languagebind.txt says why it is separate).
# Safe to re-run: pip skips what is already installed at the pinned version.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
extra="$here/requirements-nodeps.txt"
if [ "${1:-}" = "--languagebind" ]; then
    venv="$here/.venv-languagebind"
    extra="$here/requirements-languagebind.txt"
elif [ $# -gt 0 ]; then
    echo "usage: $0 [--languagebind]" >&2
    exit 2
fi
python="${PYTHON:-python3.11}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi

"$venv/bin/python" -m pip install --upgrade pip
"$venv/bin/python" -m pip install -r "$here/requirements.txt"
"$venv/bin/python" -m pip install --no-deps -r "$extra"
