#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library bindery loads at run time (and nasm, libopus-dev and
# libdav1d-dev, see below).
#
#   scripts/setup.sh          CPU runtime  -> .ort/libonnxruntime.so.1.31.1      (PyPI onnxruntime)
#   scripts/setup.sh --gpu    CUDA runtime -> .ort-gpu/ (PyPI onnxruntime-gpu; CUDA 13, cuDNN 9)
#   scripts/setup.sh --python the venv .venv-test/ for the tests that need Python packages (only
#                             that): the client's, the HTTP API's through the official openai
#                             package, and PostgreSQL 16 + pgvector (pgserver's bundled binaries)
#                             for the Rust tests of the PostgreSQL collection store
#
# Idempotent: does nothing when the library (or the up-to-date venv) is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned test dependencies of clients/python; grpcio-tools also generates its stubs, and its
# protoc decides the grpcio/protobuf floors in clients/python/pyproject.toml. pgserver is not
# imported: tests/it/common/postgres.rs runs the initdb and postgres it bundles (PostgreSQL 16.2
# with pgvector 0.6.2).
python_test_pins=(
  grpcio==1.85.4 grpcio-tools==1.85.4 protobuf==7.36.2 numpy==2.4.6 setuptools==84.2.1
  pytest==9.2.0 cryptography==51.0.1 openai==3.63.0 pgserver==0.1.4
)

# Creates .venv-test/ with the pins and the client installed from clients/python. A stamp of the
# pins and the package's sources (proto files included) makes re-runs a no-op until one changes.
python_test_env() {
  local venv=.venv-test python=${PYTHON:-python3} stamp
  command -v "$python" >/dev/null || { echo "setup: python3 is needed for the Python client tests" >&2; exit 1; }
  stamp=$({
    printf '%s\n' "${python_test_pins[@]}"
    find clients/python proto -type f \( -name '*.py' -o -name '*.toml' -o -name '*.proto' -o -name '*.md' \) \
      -not -path 'clients/python/tests/*' -not -path 'clients/python/build/*' \
      -not -path 'clients/python/bindery_client/_proto/bindery/*' -not -path '*.egg-info/*' -print0 \
      | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1)
  if [ -f "$venv/.stamp" ] && [ "$(cat "$venv/.stamp")" = "$stamp" ]; then
    echo "setup: $venv up to date"
    return
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv"
    if ! "$python" -m venv "$venv" 2>/dev/null; then
      # Debian ships ensurepip separately (python3-venv): make the venv bare and bootstrap pip
      # from its PyPI wheel, which can run itself.
      rm -rf "$venv"
      "$python" -m venv --without-pip "$venv"
      local wheels
      wheels=$(mktemp -d)
      "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: pip -d "$wheels"
      "$venv/bin/python" "$(ls "$wheels"/pip-*.whl)/pip" install --quiet --no-index "$(ls "$wheels"/pip-*.whl)"
      rm -rf "$wheels"
    fi
  fi
  echo "setup: installing the Python client and its test dependencies into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${python_test_pins[@]}"
  # setuptools reuses clients/python/build/ between builds; a stale copy could ship deleted files.
  rm -rf clients/python/build
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-build-isolation ./clients/python
  echo "$stamp" >"$venv/.stamp"
}

if [ "${1:-}" = "--python" ]; then
  python_test_env
  exit 0
fi

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

# HAProxy runs the replica test (tests/it/balancer.rs) with deploy/haproxy/haproxy.cfg.
if ! command -v haproxy >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "setup: installing haproxy (Debian) for the replicas-behind-a-balancer test"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null 2>&1 \
    || echo "setup: haproxy not installed; the balancer test will fail until it is" >&2
fi

# Opus audio is decoded by the system libopus (the audiopus crate finds it with pkg-config); the
# build needs its headers and pkg-config file from Debian's libopus-dev.
if ! pkg-config --exists opus 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing libopus-dev and pkg-config (Debian) for Opus audio decoding"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libopus-dev pkg-config >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libopus-dev pkg-config >/dev/null 2>&1; } \
      || echo "setup: could not install libopus-dev; the build needs it for Opus decoding" >&2
  else
    echo "setup: libopus not found by pkg-config; install libopus-dev (Debian) or opus (Homebrew) to build" >&2
  fi
fi

# AVIF images are decoded by the system libdav1d (the dav1d crate finds it with pkg-config); the
# build needs its headers and pkg-config file from Debian's libdav1d-dev (1.0 to 1.2).
if ! pkg-config --exists dav1d 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing libdav1d-dev and pkg-config (Debian) for AVIF decoding"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libdav1d-dev pkg-config >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libdav1d-dev pkg-config >/dev/null 2>&1; } \
      || echo "setup: could not install libdav1d-dev; the build needs it for AVIF decoding" >&2
  else
    echo "setup: libdav1d not found by pkg-config; install libdav1d-dev (Debian) to build" >&2
  fi
fi

# Video is decoded by the system FFmpeg libraries (the `video` cargo feature, through the
# ffmpeg-next crate, whose bindings are generated with clang). The Makefile turns the feature on
# when pkg-config finds the libraries; without them bindery builds and answers video inputs as
# unimplemented.
video_packages=(libavformat-dev libavcodec-dev libswscale-dev libavutil-dev libswresample-dev clang libclang-dev pkg-config)
if ! pkg-config --exists libavformat libavcodec libswscale libavutil libswresample 2>/dev/null \
  || ! ldconfig -p 2>/dev/null | grep -q libclang; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing FFmpeg's development libraries and clang (Debian) for video decoding"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${video_packages[@]}" >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${video_packages[@]}" >/dev/null 2>&1; } \
      || echo "setup: could not install FFmpeg's libraries; bindery builds without video" >&2
  else
    echo "setup: FFmpeg's libraries not found by pkg-config; bindery builds without video (install ${video_packages[*]})" >&2
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
