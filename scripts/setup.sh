#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library bindery loads at run time (and nasm, see below).
#
#   scripts/setup.sh          CPU runtime  -> .ort/libonnxruntime.so.1.31.1      (PyPI onnxruntime)
#   scripts/setup.sh --gpu    CUDA runtime -> .ort-gpu/ (PyPI onnxruntime-gpu; CUDA 13, cuDNN 9)
#
# Idempotent: does nothing when the library is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# libjpeg-turbo's x86 SIMD code (used through the `mozjpeg` crate, as Pillow uses it) is
# assembled with nasm; without nasm the build falls back to the C code, which decodes the same
# pixels about twice as slowly. Install it when possible, never fail over it.
if ! command -v nasm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing nasm (Debian) for libjpeg-turbo's SIMD JPEG decoding"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nasm >/dev/null 2>&1 \
      || echo "setup: nasm not installed; JPEG decoding builds without SIMD" >&2
  else
    echo "setup: nasm not found; JPEG decoding builds without SIMD (install nasm for speed)" >&2
  fi
fi

version=1.31.1
package=onnxruntime
dest=.ort
if [ "${1:-}" = "--gpu" ]; then
  package=onnxruntime-gpu
  dest=.ort-gpu
fi
lib="$dest/libonnxruntime.so.$version"
if [ -f "$lib" ]; then
  echo "setup: $lib already present"
  exit 0
fi

python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "setup: python3 is needed to fetch $package from PyPI" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "setup: fetching $package==$version from PyPI"
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  "$package==$version" -d "$tmp"
wheel=$(ls "$tmp"/*.whl)
mkdir -p "$dest"
# The wheel is a zip; extract only the shared libraries from onnxruntime/capi/. Each is written
# under a temporary name and renamed when complete, the main library last: an interrupted setup
# leaves no half-written library that a later run would take as installed.
"$python" - "$wheel" "$dest" "$(basename "$lib")" <<'PY'
import sys, zipfile, os, shutil
wheel, dest, main = sys.argv[1], sys.argv[2], sys.argv[3]
done = []
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
            partial = os.path.join(dest, base + ".partial")
            with z.open(name) as src, open(partial, "wb") as out:
                shutil.copyfileobj(src, out)
                out.flush()
                os.fsync(out.fileno())
            done.append(base)
for base in sorted(done, key=lambda b: b == main):
    os.replace(os.path.join(dest, base + ".partial"), os.path.join(dest, base))
PY
[ -f "$lib" ] || { echo "setup: $lib not found in $wheel" >&2; exit 1; }
echo "setup: installed $lib"
