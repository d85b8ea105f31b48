#!/usr/bin/env bash
# CUDA check of bindery: serve a realistically sized model on the GPU and measure each modality
# with the gRPC load tool. CI has no GPU; this runs by hand on a GPU machine.
#
#   tools/gpu_check.sh prepare DIR   on a build machine (cargo, network): release binary built with
#                                    --features cuda, onnxruntime-gpu's libraries (scripts/setup.sh
#                                    --gpu), the ViT-B-like random model and its fp16 variants,
#                                    all copied into DIR
#   tools/gpu_check.sh run DIR       on the GPU machine (no cargo needed): CUDA 13 + cuDNN 9 from the
#                                    Python `nvidia-*` wheels or the system; prints items/s per
#                                    modality, fp32 then fp16, and the CPU figures for scale
#
# The onnxruntime-gpu CUDA provider library is about 284 MB; to move DIR in small pieces, split
# it (`zstd -19 | split -b 60M`) and reassemble it before `run`.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
dir=${2:-}
[ -n "$what" ] && [ -n "$dir" ] || { sed -n '2,15p' "$0"; exit 1; }
duration=${GPU_CHECK_DURATION:-8s}

prepare() {
  cargo build --release --features cuda
  scripts/setup.sh --gpu
  model=tools/.gen/imagebind-base-random
  [ -f "$model/model.toml" ] || tools/.venv/bin/python tools/export_imagebind.py --random-base --out "$model"
  grep -q onnx_fp16 "$model/model.toml" || tools/.venv/bin/python tools/make_fp16.py "$model"
  mkdir -p "$dir/models" "$dir/ort"
  cp target/release/bindery "$dir/"
  cp .ort-gpu/libonnxruntime* "$dir/ort/"
  rm -rf "$dir/models/base" && cp -r "$model" "$dir/models/base"
  echo "gpu_check: prepared $dir ($(du -sh "$dir" | cut -f1))"
}

# CUDA and cuDNN libraries from the Python nvidia-* wheels, when they are installed.
cuda_paths() {
  for py in python3 python; do
    command -v "$py" >/dev/null || continue
    "$py" - <<'PY' 2>/dev/null && return 0
import glob, os, site
roots = site.getsitepackages() + [site.getusersitepackages()]
libs = sorted({d for r in roots for d in glob.glob(os.path.join(r, "nvidia", "*", "lib"))})
print(":".join(libs))
PY
  done
}

measure() { # label, serve flags...
  local label=$1; shift
  local port=50099
  "$dir/bindery" serve --models "$dir/models" --listen 127.0.0.1:$port --data-dir "$dir/data-$label" "$@" \
    > "$dir/serve-$label.log" 2>&1 &
  local server=$!
  for _ in $(seq 600); do
    (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    kill -0 $server 2>/dev/null || { echo "gpu_check: server failed:"; tail -20 "$dir/serve-$label.log"; return 1; }
    sleep 0.5
  done
  for spec in text:32 image:32 audio:8 point_cloud:16; do
    local modality=${spec%%:*} batch=${spec##*:}
    "$dir/bindery" load --server http://127.0.0.1:$port --mix "$modality=1" --batch "$batch" \
      --concurrency 8 --duration "$duration" --warmup 3s --no-cache --quiet --json "$dir/$label-$modality.json" >/dev/null
    python3 - "$label" "$modality" "$batch" "$dir/$label-$modality.json" <<'PY'
import json, sys
label, modality, batch, path = sys.argv[1:]
run = json.load(open(path))
run = run[0] if isinstance(run, list) else run
p50 = (run.get("latency_ms") or {}).get("p50")
print(f"{label:>6} {modality:>12} batch {batch:>2}: {run['items_per_s']:10.1f} items/s"
      f"  p50 {p50} ms  errors {run['errors_by_code']}")
PY
  done
  kill $server; wait $server 2>/dev/null || true
}

run() {
  export ORT_DYLIB_PATH="$dir/ort/libonnxruntime.so.1.31.1"
  local extra; extra=$(cuda_paths || true)
  export LD_LIBRARY_PATH="$dir/ort${extra:+:$extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
  echo "cores: $(nproc)"
  measure cuda --device cuda:0
  measure fp16 --device cuda:0 --fp16
  measure cpu --device cpu
}

case "$what" in
  prepare) prepare ;;
  run) run ;;
  *) sed -n '2,15p' "$0"; exit 1 ;;
esac
