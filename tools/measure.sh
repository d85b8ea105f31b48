#!/usr/bin/env bash
# Re-measures the first three sections of BENCHMARKS.md on this machine, in one run. Takes about 17 minutes on 2 cores.
# Writes raw outputs under docs/bench/ (the sweep chart among them).
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/bench
mkdir -p "$out"
py=tools/.venv/bin/python
{ grep -m1 "model name" /proc/cpuinfo; echo "cores: $(nproc)"; uptime; } > "$out/machine.txt"

cargo build --release
bin=target/release/bindery

# Criterion benches, each beside its reference timing on the same input.
BINDERY_BENCH_JPEG="$out/bench_1920x1080.jpg" \
  cargo bench --bench image_preprocess --bench tokenize --bench audio_preprocess --bench point_cloud \
  -- --warm-up-time 1 --measurement-time 4 2>&1 | grep -E "^[a-z].*time:|^[a-z_/0-9]+$|^ +time:" \
  | tee "$out/criterion.txt"
$py tools/bench_audio_reference.py --threads 1 2>&1 | tee "$out/audio_reference.txt"
$py tools/bench_image_reference.py --threads 1 --jpeg "$out/bench_1920x1080.jpg" 2>&1 | tee "$out/image_reference.txt"
rm -f "$out/bench_1920x1080.jpg"
$py tools/bench_point_reference.py --threads 1 2>&1 | tee "$out/point_reference.txt"
$py tools/bench_text_reference.py --threads 1 2>&1 | tee "$out/text_reference.txt"

# End-to-end: bindery over gRPC vs the reference pipeline + onnxruntime, same inputs.
$py tools/bench_reference.py --duration 5 --warmup 1 --out "$out/reference.json" | tee "$out/reference.md"

# Concurrency sweep with the mixed workload, and its chart.
$bin serve --default-model imagebind-fixture --listen 127.0.0.1:50077 --data-dir "$(mktemp -d)" \
  > "$out/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/50077) 2>/dev/null && break; sleep 0.2; done
$bin load --server http://127.0.0.1:50077 --no-cache --mix text=0.5,image=0.3,audio=0.1,point_cloud=0.1 \
  --concurrency 1,2,4,8,16 --duration 5s --warmup 1s --json "$out/sweep.json" --chart "$out/sweep.svg" \
  2>&1 | tee "$out/sweep.txt"
