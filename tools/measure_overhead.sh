#!/usr/bin/env bash
# Serving overhead: bindery over gRPC (dynamic batching, queues, cache off) against the same
# preprocessing and ONNX towers called in-process in a loop at the same batch size
# (`bindery load --in-process`), per modality, for two models:
#   - imagebind-fixture (tiny towers: preprocessing dominates)
#   - a ViT-B-sized random export generated here (inference dominates; about 1 GB, not committed)
# Each side's best items/s over its concurrency levels is compared; ratio = served / in-process.
#
#   tools/measure_overhead.sh [out-dir]     (default docs/bench/overhead; about 13 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/bench/overhead}
mkdir -p "$out"
py=tools/.venv/bin/python
base=tools/.gen/imagebind-base-random
cargo build --release
bin=target/release/bindery
[ -f "$base/model.toml" ] || $py tools/export_imagebind.py --random-base --out "$base"
{ grep -m1 "model name" /proc/cpuinfo; echo "cores: $(nproc)"; uptime; } > "$out/machine.txt"

# models dir holding just the base model (the server loads every model of a folder)
base_models=tools/.gen/base-models
mkdir -p "$base_models"
ln -sfn "$(realpath "$base")" "$base_models/imagebind-base-random"

run_model() { # label, models dir, model name, batch, duration, served levels, in-process levels
  local label=$1 models=$2 model=$3 batch=$4 duration=$5 served=$6 local=$7
  local port=50088
  $bin serve --models "$models" --default-model "$model" --listen 127.0.0.1:$port --cache-mib 0 --no-warm-up \
    --data-dir "$(mktemp -d)" \
    > "$out/$label-serve.log" 2>&1 &
  local server=$!
  for _ in $(seq 900); do
    (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    kill -0 $server 2>/dev/null || { cat "$out/$label-serve.log"; exit 1; }
    sleep 0.2
  done
  # Served and in-process runs of a modality back to back (the idle server costs nothing), so
  # both see the same machine conditions.
  for modality in text image audio point_cloud; do
    $bin load --server http://127.0.0.1:$port --mix "$modality=1" --batch "$batch" --no-cache \
      --concurrency "$served" --duration "$duration" --warmup 3s --quiet \
      --json "$out/$label-$modality-served.json" > /dev/null
    $bin load --in-process "$models" --model "$model" --mix "$modality=1" --batch "$batch" \
      --concurrency "$local" --duration "$duration" --warmup 3s --quiet \
      --json "$out/$label-$modality-inprocess.json" > /dev/null
  done
  kill $server; wait $server 2>/dev/null || true
}

run_model fixture models imagebind-fixture 8 5s 1,2,4,8 1,2
run_model base "$base_models" imagebind-base-random 4 30s 1,2 1,2

$py - "$out" <<'PY' | tee "$out/overhead.md"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def best(path):
    runs = json.loads(path.read_text())
    runs = runs if isinstance(runs, list) else [runs]
    top = max(runs, key=lambda r: r["items_per_s"])
    return top["items_per_s"], top["concurrency"], sum(r["errors"] for r in runs)
print("| model | modality | batch | in-process items/s (loops) | served items/s (concurrency) | served / in-process |")
print("|---|---|---|---|---|---|")
for label, batch in (("fixture", 8), ("base", 4)):
    for modality in ("text", "image", "audio", "point_cloud"):
        local, lc, le = best(out / f"{label}-{modality}-inprocess.json")
        served, sc, se = best(out / f"{label}-{modality}-served.json")
        errors = f" ({le + se} errors)" if le + se else ""
        print(f"| {label} | {modality} | {batch} | {local:.1f} ({lc}) | {served:.1f} ({sc}) | {served / local:.2f}x{errors} |")
PY
