#!/usr/bin/env bash
# int8 against fp32 towers on the ViT-B-like random export (inference dominates there): served
# items/s per modality, the two precisions alternated in rounds so that both see the same machine
# drift, and the cosine of the int8 embeddings against the fp32 ones on the same payloads.
#
#   tools/measure_int8.sh [out-dir] [rounds]   (default docs/bench/int8, 2 rounds; ~12 minutes on 2 cores)
#
# Needs tools/.venv (export and quantization) unless tools/.gen/imagebind-base-random already has
# its int8 towers; the cosines use the Python client from the test venv (scripts/setup.sh --python).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/bench/int8}
rounds=${2:-2}
mkdir -p "$out"
py=${PYTHON:-tools/.venv/bin/python}
base=tools/.gen/imagebind-base-random
cargo build --release
bin=target/release/bindery
[ -f "$base/model.toml" ] || $py tools/export_imagebind.py --random-base --out "$base"
grep -q onnx_int8 "$base/model.toml" || $py tools/quantize.py "$base" --sections text,image,audio | tee "$out/quantize.txt"
{ grep -m1 "model name" /proc/cpuinfo; echo "cores: $(nproc)"; uptime; } > "$out/machine.txt"
models=tools/.gen/base-models
mkdir -p "$models"
ln -sfn "$(realpath "$base")" "$models/imagebind-base-random"

serve() { # precision, port
  $bin serve --models "$models" --listen "127.0.0.1:$2" --cache-mib 0 --no-warm-up --precision "$1" \
    --data-dir "$(mktemp -d)" > "$out/serve-$1.log" 2>&1 &
  echo $!
}
wait_port() {
  for _ in $(seq 900); do (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.2; done
  echo "server on $1 did not start" >&2; exit 1
}

for round in $(seq "$rounds"); do
  for precision in fp32 int8; do
    pid=$(serve "$precision" 50090); wait_port 50090
    for modality in text image audio; do
      $bin load --server http://127.0.0.1:50090 --mix "$modality=1" --batch 4 --no-cache \
        --concurrency 2 --duration 20s --warmup 3s --quiet \
        --json "$out/$precision-$modality-$round.json" > /dev/null
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
done

# Cosine of int8 against fp32 on the same payloads: the same files embedded by both servers.
fp32=$(serve fp32 50091); int8=$(serve int8 50092); wait_port 50091; wait_port 50092
scripts/setup.sh --python > /dev/null
.venv-test/bin/python - "$out" "$rounds" <<'PY' | tee "$out/int8.md"
import json, statistics, sys
from pathlib import Path
import numpy as np
from bindery_client import Client
out, rounds = Path(sys.argv[1]), int(sys.argv[2])
fixtures = Path("tests/fixtures")
inputs = {
    "text": [c["text"] for c in json.loads((fixtures / "text/cases.json").read_text()) if c.get("text")][:16],
    "image": sorted(p for p in (fixtures / "images").glob("*.png"))[:12],
    "audio": [fixtures / "audio" / c["file"] for c in json.loads((fixtures / "audio/cases.json").read_text())["cases"] if "embedding" in c][:8],
}
with Client("127.0.0.1:50091", timeout=600) as a, Client("127.0.0.1:50092", timeout=600) as b:
    cosines = {}
    for modality, items in inputs.items():
        x, y = a.embed(items).matrix(), b.embed(items).matrix()
        cosines[modality] = float((x * y).sum(1).min())
def rate(precision, modality):
    return [json.loads((out / f"{precision}-{modality}-{r}.json").read_text())["items_per_s"] for r in range(1, rounds + 1)]
print("| modality | fp32 items/s | int8 items/s | int8 / fp32 | worst cosine int8 vs fp32 |")
print("| --- | ---: | ---: | ---: | ---: |")
for modality in ("text", "image", "audio"):
    f, i = statistics.median(rate("fp32", modality)), statistics.median(rate("int8", modality))
    print(f"| {modality} | {f:.2f} | {i:.2f} | {i / f:.2f}x | {cosines[modality]:.4f} |")
PY
kill "$fp32" "$int8"; wait 2>/dev/null || true
