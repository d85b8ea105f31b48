#!/usr/bin/env bash
# Goodput under overload: image embeds on the fixture model offered at 0.5x to 4x the measured
# capacity, without deadlines and with 250 ms and 50 ms deadlines, against two server builds in
# alternated rounds (one run, so their figures compare). Writes docs/bench/goodput/.
#
#   tools/measure_goodput.sh BEFORE_BINARY [AFTER_BINARY]
#
# AFTER_BINARY defaults to target/release/bindery (built first); the load tool is always
# AFTER_BINARY's, so both servers get the same client, which sends each deadline as grpc-timeout.
# Both servers run with one CPU worker and one ONNX thread. About 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:?usage: tools/measure_goodput.sh BEFORE_BINARY [AFTER_BINARY]}
after=${2:-}
if [ -z "$after" ]; then
  cargo build --release
  after=target/release/bindery
fi
out=docs/bench/goodput
mkdir -p "$out"
rounds=${ROUNDS:-3}
multipliers=${MULTIPLIERS:-0.5 1 1.5 2 2.5 3 4}
run_secs=${RUN_SECS:-6}
{ grep -m1 "model name" /proc/cpuinfo; echo "cores: $(nproc)"; uptime; } > "$out/machine.txt"

data=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$data"' EXIT
serve() { # binary port metrics_port
  "$1" serve --default-model imagebind-fixture --listen "127.0.0.1:$2" --metrics "127.0.0.1:$3" \
    --cpu-workers 1 --intra-threads 1 --data-dir "$data/$2" > "$out/serve-$2.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$2") 2>/dev/null && return; sleep 0.2; done
  echo "server on port $2 did not start" >&2
  exit 1
}
serve "$before" 50081 9181
serve "$after" 50082 9182
declare -A port=([before]=50081 [after]=50082)
declare -A mport=([before]=9181 [after]=9182)

counter() { # metrics_port series -> summed value of every line of that series (0 when absent)
  curl -s "http://127.0.0.1:$1/metrics" | awk -v s="$2" '$1 ~ "^"s"({|$)" {v += $2} END {print v+0}'
}
load() { # side json [load args...]
  local side=$1 json=$2
  shift 2
  "$after" load --server "http://127.0.0.1:${port[$side]}" --mix image --no-cache --connections 16 \
    --duration "${run_secs}s" --warmup 1s --quiet --json "$json" "$@" > /dev/null
}

raw="$out/raw.jsonl"
: > "$raw"
# Capacity: the best closed-loop throughput over 32, 64 and 128 requests in flight, no deadline;
# alternated rounds on both builds.
for round in $(seq "$rounds"); do
  for side in before after; do
    load "$side" "$data/cap.json" --concurrency 32,64,128 --timeout 60s
    python3 - "$data/cap.json" "$side" "$round" >> "$raw" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))
print(json.dumps({"kind": "capacity", "side": sys.argv[2], "round": int(sys.argv[3]),
                  "requests_per_s": max(r["requests_per_s"] for r in runs)}))
PY
  done
done
capacity=$(python3 - "$raw" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(statistics.median(r["requests_per_s"] for r in rows if r["kind"] == "capacity" and r["side"] == "after"))
PY
)
echo "capacity (after, median of $rounds rounds): $capacity requests/s"

for m in $multipliers; do
  rate=$(python3 -c "print(round($m * $capacity, 1))")
  for deadline in none 250ms 50ms; do
    timeout=$deadline
    [ "$deadline" = none ] && timeout=60s
    for round in $(seq "$rounds"); do
      # Alternate which build goes first, so drift within a round does not favour one.
      sides="before after"
      [ $((round % 2)) = 0 ] && sides="after before"
      for side in $sides; do
        late0=$(counter "${mport[$side]}" bindery_late_total)
        admitted0=$(counter "${mport[$side]}" bindery_admitted_total)
        load "$side" "$data/run.json" --rate "$rate" --max-in-flight 20000 --timeout "$timeout"
        late1=$(counter "${mport[$side]}" bindery_late_total)
        admitted1=$(counter "${mport[$side]}" bindery_admitted_total)
        python3 - "$data/run.json" "$side" "$round" "$m" "$deadline" "$rate" \
          "$((late1 - late0))" "$((admitted1 - admitted0))" >> "$raw" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
side, rnd, m, deadline, rate, late, admitted = sys.argv[2:9]
print(json.dumps({"kind": "run", "side": side, "round": int(rnd), "multiplier": float(m),
                  "deadline": deadline, "rate": float(rate), "requests_per_s": r["requests_per_s"],
                  "errors": r.get("errors_by_code", {}), "late": int(late), "admitted": int(admitted)}))
PY
      done
    done
    echo "done: ${m}x capacity, deadline $deadline"
  done
done
python3 tools/goodput_report.py "$raw" "$out"
