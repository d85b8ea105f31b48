#!/usr/bin/env bash
# Resident memory of `bindery serve` with bind-mini alone: at ready (idle), the peak under a mixed
# load, and again a few seconds after the load stopped, with the throughput of that load; one row
# per server variant, the variants alternated in rounds so that all see the same machine drift.
#
#   tools/measure_memory.sh [out-dir] [rounds] [label=serve-args]...
#   (default docs/bench/memory, 3 rounds; variants below)
#
# A variant's serve arguments are added to `bindery serve --models <bind-mini alone>`; a label
# ending in "+cache" drives the load with the embedding cache in use (repeated payloads hit it),
# every other label with --no-cache. Each row also records the server's threads and, from
# /proc/PID/smaps_rollup at the peak, its anonymous memory. Takes ~1 minute per variant and round.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/bench/memory}
rounds=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(
  "per-session-pattern=--ort-thread-pools per-session --ort-memory-pattern"
  "shared-pattern=--ort-memory-pattern"
  "shared=--ort-arena keep"
  "shared-shrink=--ort-arena shrink"
  "shared-off=--ort-arena off"
  "cache-0+cache=--cache-mib 0"
  "cache-256+cache=--cache-mib 256"
)
bin=${BINDERY:-target/release/bindery}
load_secs=${LOAD_SECS:-15}
mix=${MIX:-text=0.4,image=0.3,audio=0.2,point_cloud=0.1}
concurrency=${CONCURRENCY:-8}
batch=${BATCH:-4}
mkdir -p "$out"
{ grep -m1 "model name" /proc/cpuinfo; echo "cores: $(nproc)"; uptime; } > "$out/machine.txt"

scratch=$(mktemp -d)
pid=""
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$scratch"' EXIT
mkdir -p "$scratch/models"
ln -s "$(realpath models/bind-mini)" "$scratch/models/bind-mini"

rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
anon() { awk '/^Anonymous/ {printf "%.1f", $2 / 1024}' "/proc/$1/smaps_rollup"; }
threads() { awk '/^Threads/ {print $2}' "/proc/$1/status"; }

# One variant: prints "idle_mib peak_mib after_mib items_per_s anon_peak_mib threads".
measure() { # label, serve args...
  local label=$1 log
  shift
  log="$scratch/serve-$label.log"
  # A log left by an earlier round would show that round's address.
  rm -f "$log"
  "$bin" serve --models "$scratch/models" --listen 127.0.0.1:0 --metrics 127.0.0.1:0 \
    --data-dir "$(mktemp -d -p "$scratch")" "$@" > "$log" 2>&1 &
  pid=$!
  local listen="" metrics=""
  for _ in $(seq 1200); do
    [ -n "$metrics" ] || metrics=$(grep -so 'metrics=[0-9.:]*' "$log" | head -1 | cut -d= -f2 || true)
    [ -n "$listen" ] || listen=$(grep -so 'listen=[0-9.:]*' "$log" | head -1 | cut -d= -f2 || true)
    if [ -n "$metrics" ] && [ -n "$listen" ] &&
      [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://$metrics/ready")" = 200 ]; then
      break
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  sleep 1
  local idle; idle=$(rss "$pid")
  local cache_flag=--no-cache
  [[ $label == *+cache ]] && cache_flag=""
  # shellcheck disable=SC2086 # empty when the cache is used
  "$bin" load --server "http://$listen" --mix "$mix" --batch "$batch" --concurrency "$concurrency" \
    --duration "${load_secs}s" --warmup 2s --quiet $cache_flag --json "$scratch/load.json" > /dev/null &
  local loader=$! peak=0 anon_peak=0 now
  while kill -0 "$loader" 2>/dev/null; do
    now=$(rss "$pid")
    if python3 -c "import sys; sys.exit(not $now > $peak)"; then peak=$now; anon_peak=$(anon "$pid"); fi
    sleep 0.25
  done
  wait "$loader"
  local nthreads; nthreads=$(threads "$pid")
  sleep 3
  local after; after=$(rss "$pid")
  local rate; rate=$(python3 -c "import json; print(round(json.load(open('$scratch/load.json'))['items_per_s'], 1))")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  pid=""
  echo "$idle $peak $after $rate $anon_peak $nthreads"
}

results="$out/memory.tsv"
printf 'round\tvariant\tidle_mib\tpeak_mib\tafter_mib\titems_per_s\tanon_peak_mib\tthreads\n' > "$results"
for round in $(seq "$rounds"); do
  for variant in "${variants[@]}"; do
    label=${variant%%=*}; args=${variant#*=}
    # shellcheck disable=SC2086 # the serve arguments are words
    read -r idle peak after rate anon_peak nthreads < <(measure "$label" $args)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$label" "$idle" "$peak" "$after" "$rate" \
      "$anon_peak" "$nthreads" | tee -a "$results"
  done
done
uptime >> "$out/machine.txt"

python3 - "$results" "${variants[@]}" <<'PY' | tee "$out/memory.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
labels = [v.split("=", 1)[0] for v in sys.argv[2:]]
print("| variant | idle RSS (MiB) | peak RSS under load (MiB) | RSS 3 s after (MiB) | items/s | anonymous at peak (MiB) | threads |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for label in labels:
    sel = [r for r in rows if r["variant"] == label]
    med = lambda k: statistics.median(float(r[k]) for r in sel)
    print(f"| {label} | {med('idle_mib'):.0f} | {med('peak_mib'):.0f} | {med('after_mib'):.0f} "
          f"| {med('items_per_s'):.1f} | {med('anon_peak_mib'):.0f} | {med('threads'):.0f} |")
print(f"\nmedians of {len({r['round'] for r in rows})} alternated rounds")
PY
