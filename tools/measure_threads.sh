#!/usr/bin/env bash
# Thread and memory settings of ONNX Runtime against each other, in alternated rounds so that all
# see the same machine drift: per variant and round, the mixed concurrency sweep on the fixture
# models (as in BENCHMARKS.md "Mixed workload") and a mixed load on the ViT-B-like export, where
# inference dominates. Writes raw JSON and a table of medians.
#
#   tools/measure_threads.sh [out-dir] [rounds] [label=serve-args]...
#   (default docs/bench/threads, 3 rounds; variants below)
#
# Needs tools/.gen/imagebind-base-random with its int8 towers (tools/export_imagebind.py
# --random-base, tools/quantize.py); without it only the sweep runs. About 80 s per variant and
# round on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/bench/threads}
rounds=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(
  "per-session=--ort-thread-pools per-session"
  "shared=--ort-thread-pools shared"
)
bin=${BINDERY:-target/release/bindery}
levels=${LEVELS:-1,2,4,8,16,32}
base_secs=${BASE_SECS:-20}
base_precision=${BASE_PRECISION:-int8}
mkdir -p "$out"
{ grep -m1 "model name" /proc/cpuinfo; echo "cores: $(nproc)"; uptime; } > "$out/machine.txt"

scratch=$(mktemp -d)
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$scratch"' EXIT
base=tools/.gen/imagebind-base-random
if [ -f "$base/model.toml" ]; then
  mkdir -p "$scratch/base"
  ln -s "$(realpath "$base")" "$scratch/base/imagebind-base-random"
fi

start() { # log, serve args... -> sets pid and listen
  local log=$1
  shift
  # A log left by an earlier round would show that round's address.
  rm -f "$log"
  "$bin" serve --listen 127.0.0.1:0 --cache-mib 0 --warm-up before \
    --data-dir "$(mktemp -d -p "$scratch")" "$@" > "$log" 2>&1 &
  pid=$!
  listen=""
  for _ in $(seq 3000); do
    listen=$(grep -so 'listen=[0-9.:]*' "$log" | head -1 | cut -d= -f2 || true)
    [ -z "$listen" ] || return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "server did not start" >&2
  exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

for round in $(seq "$rounds"); do
  for variant in "${variants[@]}"; do
    label=${variant%%=*}; args=${variant#*=}
    # shellcheck disable=SC2086 # the serve arguments are words
    start "$out/serve-$label.log" --models models --default-model imagebind-fixture $args
    "$bin" load --server "http://$listen" --no-cache --mix text=0.5,image=0.3,audio=0.1,point_cloud=0.1 \
      --concurrency "$levels" --duration 5s --warmup 1s --quiet --json "$out/sweep-$label-$round.json" > /dev/null
    stop
    if [ -d "$scratch/base" ]; then
      # shellcheck disable=SC2086
      start "$out/serve-base-$label.log" --models "$scratch/base" --precision "$base_precision" $args
      "$bin" load --server "http://$listen" --no-cache --mix text=0.4,image=0.3,audio=0.3 --batch 2 \
        --concurrency 6 --duration "${base_secs}s" --warmup 3s --quiet --json "$out/base-$label-$round.json" > /dev/null
      stop
    fi
    echo "round $round: $label done"
  done
done
uptime >> "$out/machine.txt"

python3 - "$out" "$rounds" "${variants[@]}" <<'PY' | tee "$out/threads.md"
import json, statistics, sys
from pathlib import Path
out, rounds, labels = Path(sys.argv[1]), int(sys.argv[2]), [v.split("=", 1)[0] for v in sys.argv[3:]]
def runs(kind, label):
    return [json.loads(p.read_text()) for r in range(1, rounds + 1) if (p := out / f"{kind}-{label}-{r}.json").exists()]
sweeps = {label: runs("sweep", label) for label in labels}
levels = [run["concurrency"] for run in sweeps[labels[0]][0]]
print("Fixture mixed sweep, requests/s (median of rounds; in brackets: change from the variant's best level)\n")
print("| variant | " + " | ".join(f"c={c}" for c in levels) + " | worst fall from best |")
print("| --- | " + " | ".join("---:" for _ in levels) + " | ---: |")
for label in labels:
    med = [statistics.median(s[i]["requests_per_s"] for s in sweeps[label]) for i in range(len(levels))]
    best = max(med)
    peak = med.index(best)
    fall = min(m / best - 1 for m in med[peak:])
    print(f"| {label} | " + " | ".join(f"{m:.1f}" for m in med) + f" | {fall * 100:+.1f}% |")
print()
print("| variant | " + " | ".join(f"p99 ms c={c}" for c in levels) + " |")
print("| --- | " + " | ".join("---:" for _ in levels) + " |")
for label in labels:
    p99 = [statistics.median(s[i]["latency_ms"]["p99"] for s in sweeps[label]) for i in range(len(levels))]
    print(f"| {label} | " + " | ".join(f"{p:.1f}" for p in p99) + " |")
base = {label: runs("base", label) for label in labels}
if all(base.values()):
    print("\nViT-B-like export, mixed text/image/audio, items/s (rounds; median)\n")
    print("| variant | rounds | median items/s | p50 ms | p99 ms |")
    print("| --- | --- | ---: | ---: | ---: |")
    for label in labels:
        rates = [b["items_per_s"] for b in base[label]]
        p50 = statistics.median(b["latency_ms"]["p50"] for b in base[label])
        p99 = statistics.median(b["latency_ms"]["p99"] for b in base[label])
        print(f"| {label} | {', '.join(f'{r:.2f}' for r in rates)} | {statistics.median(rates):.2f} | {p50:.0f} | {p99:.0f} |")
PY
