#!/usr/bin/env bash
# Start-up of `bindery serve`: seconds until the gRPC port opens and until /ready answers 200 (every
# encoder warmed up), and the resident memory then, for bind-mini alone and for the ViT-B-like
# random export. Two binaries are compared in alternated rounds so both see the same machine drift:
# by default the current release build under each warm-up mode.
#
#   tools/measure_startup.sh [out-dir] [rounds] [label=binary[:serve-args]]...
#   (default docs/bench/startup, 3 rounds; labels "background", "before": target/release/bindery
#    with --warm-up background / before)
#
# Measures tools/.gen/imagebind-base-random (tools/export_imagebind.py --random-base) and
# tools/.gen/imagebind-huge-random (--random-huge) when they exist. STARTUP_MODELS=name,name picks
# among bind-mini, imagebind-base-random and imagebind-huge-random.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/bench/startup}
rounds=${2:-3}
shift $(( $# < 2 ? $# : 2 ))
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(
  "background=target/release/bindery:--warm-up background"
  "before=target/release/bindery:--warm-up before"
)
mkdir -p "$out"
{ grep -m1 "model name" /proc/cpuinfo; echo "cores: $(nproc)"; uptime; } > "$out/machine.txt"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/bind-mini"
ln -s "$(realpath models/bind-mini)" "$scratch/bind-mini/bind-mini"
model_sets=("bind-mini=$scratch/bind-mini")
if [ -f tools/.gen/imagebind-base-random/model.toml ]; then
  mkdir -p "$scratch/base"
  ln -s "$(realpath tools/.gen/imagebind-base-random)" "$scratch/base/imagebind-base-random"
  model_sets+=("imagebind-base-random=$scratch/base")
fi
if [ -f tools/.gen/imagebind-huge-random/model.toml ]; then
  mkdir -p "$scratch/huge"
  ln -s "$(realpath tools/.gen/imagebind-huge-random)" "$scratch/huge/imagebind-huge-random"
  model_sets+=("imagebind-huge-random=$scratch/huge")
fi
if [ -n "${STARTUP_MODELS:-}" ]; then
  picked=()
  for set in "${model_sets[@]}"; do
    case ",$STARTUP_MODELS," in *",${set%%=*},"*) picked+=("$set") ;; esac
  done
  model_sets=("${picked[@]}")
fi

now() { date +%s.%N; }
# One start: prints "seconds-to-listen seconds-to-ready rss-mib".
measure() { # binary, models folder, extra args...
  local bin=$1 models=$2 log
  log=$(mktemp -p "$scratch" serve-XXXX.log)
  shift 2
  local start; start=$(now)
  "$bin" serve --models "$models" --listen 127.0.0.1:0 --metrics 127.0.0.1:0 \
    --data-dir "$(mktemp -d -p "$scratch")" "$@" > "$log" 2>&1 &
  local pid=$! listen="" metrics="" ready=""
  for _ in $(seq 6000); do
    [ -n "$metrics" ] || metrics=$(grep -o 'metrics=[0-9.:]*' "$log" | head -1 | cut -d= -f2 || true)
    if [ -z "$listen" ] && grep -q "bindery serving" "$log"; then listen=$(now); fi
    if [ -n "$metrics" ] && [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://$metrics/ready")" = 200 ]; then
      ready=$(now)
      break
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  [ -n "$listen" ] || listen=$ready
  local rss; rss=$(awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  python3 -c "print(f'{$listen - $start:.2f} {$ready - $start:.2f} $rss')"
}

results="$out/startup.tsv"
printf 'round\tvariant\tmodel\tlisten_s\tready_s\trss_mib\n' > "$results"
for round in $(seq "$rounds"); do
  for set in "${model_sets[@]}"; do
    for variant in "${variants[@]}"; do
      label=${variant%%=*}; spec=${variant#*=}; bin=${spec%%:*}; args=""
      [ "$spec" = "$bin" ] || args=${spec#*:}
      # shellcheck disable=SC2086 # the serve arguments are words
      read -r listen ready rss < <(measure "$bin" "${set#*=}" $args)
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$label" "${set%%=*}" "$listen" "$ready" "$rss" | tee -a "$results"
    done
  done
done

python3 - "$results" <<'PY' | tee "$out/startup.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
keys = sorted({(r["model"], r["variant"]) for r in rows})
print("| model | variant | port open (s) | ready (s) | RSS at ready (MiB) |")
print("| --- | --- | ---: | ---: | ---: |")
for model, variant in keys:
    sel = [r for r in rows if r["model"] == model and r["variant"] == variant]
    med = lambda k: statistics.median(float(r[k]) for r in sel)
    print(f"| {model} | {variant} | {med('listen_s'):.2f} | {med('ready_s'):.2f} | {med('rss_mib'):.0f} |")
print(f"\nmedians of {len({r['round'] for r in rows})} alternated rounds")
PY
