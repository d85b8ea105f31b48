#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]     (default: 60 s, every target)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`). libFuzzer needs nightly compiler flags;
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them. Each target starts from the committed
# test fixtures of its format and its kept regression inputs in tests/fixtures/fuzz/<target>/
# (both copied into fuzz/seeds/) plus whatever earlier runs left in fuzz/corpus/. Crashes,
# timeouts and out-of-memory inputs land in fuzz/artifacts/<target>/; the script exits 1 when a
# run leaves one. Logs: target/fuzz-logs/<target>.log, and a summary
# table (executions, rate, corpus size, findings) at the end: target/fuzz-logs/summary.txt.
#
# Environment: FUZZ_TIMEOUT_S (longest run of one input, default 10), FUZZ_RSS_MB (default 2048),
# FUZZ_TARGET_DIR (build folder, default target/fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-60}
shift || true
timeout_s=${FUZZ_TIMEOUT_S:-10}
rss_mb=${FUZZ_RSS_MB:-2048}
export RUSTC_BOOTSTRAP=1
target_dir=${FUZZ_TARGET_DIR:-$PWD/target/fuzz}
logs=target/fuzz-logs
mkdir -p "$logs"

command -v cargo-fuzz >/dev/null || { echo "fuzz: install cargo-fuzz first: cargo install cargo-fuzz" >&2; exit 1; }
# Same dependency versions as the server itself.
[[ -f fuzz/Cargo.lock ]] || cp Cargo.lock fuzz/Cargo.lock

# The video target links FFmpeg's libraries: built only where pkg-config finds them.
features=()
if pkg-config --exists libavformat libavcodec libswscale libavutil libswresample 2>/dev/null; then
    features=(--features video)
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cd fuzz && cargo fuzz list)
    if [[ ${#features[@]} -eq 0 ]]; then
        mapfile -t targets < <(printf '%s\n' "${targets[@]}" | grep -vx video)
    fi
fi

seed() {
    local t=$1 dir=fuzz/seeds/$1
    rm -rf "$dir"
    mkdir -p "$dir"
    case $t in
        image)
            cp tests/fixtures/images/*.{jpg,png,gif,bmp,tif,webp,bin} "$dir"/
            find tests/fixtures/images/formats -type f ! -name '*.json' ! -name '*.rgb' -size -600k -exec cp {} "$dir"/ \; ;;
        audio)
            find tests/fixtures/audio/cases tests/fixtures/audio/bad tests/fixtures/audio_lossy/cases -type f \
                -size -600k -exec cp {} "$dir"/ \; ;;
        point_cloud_ply) cp tests/fixtures/point_cloud/{cases,bad}/*.ply "$dir"/ ;;
        point_cloud_pcd) cp tests/fixtures/point_cloud/{cases,bad}/*.pcd "$dir"/ ;;
        point_cloud_npy) cp tests/fixtures/point_cloud/{cases,bad}/*.npy "$dir"/ ;;
        point_cloud_obj) cp tests/fixtures/point_cloud/{cases,bad}/*.obj "$dir"/ ;;
        point_cloud_text)
            cp tests/fixtures/point_cloud/{cases,bad}/*.{xyz,csv,pts} "$dir"/ 2>/dev/null || true ;;
        point_cloud_sniff | point_cloud_preprocess)
            find tests/fixtures/point_cloud/cases tests/fixtures/point_cloud/bad -type f -size -600k -exec cp {} "$dir"/ \; ;;
        manifest) for m in models/*/model.toml; do cp "$m" "$dir/$(basename "$(dirname "$m")").toml"; done ;;
        # wal, snapshot, collection_manifest, api_keys: only their kept inputs (below), valid
        # files among them. A modality's own target (thermal, ...) starts from its test fixtures.
        *) if [[ -d tests/fixtures/$t ]]; then
               find tests/fixtures/"$t" -type f -size -600k -exec cp {} "$dir"/ \;
           fi ;;
    esac
    # Kept regression inputs are seeds too.
    if [[ -d tests/fixtures/fuzz/$t ]]; then cp tests/fixtures/fuzz/"$t"/* "$dir"/; fi
    true
}

echo "fuzz: building the targets (release, debug assertions, AddressSanitizer)"
(cd fuzz && cargo fuzz build "${features[@]}" --target-dir "$target_dir")
# The binaries are run directly: `cargo fuzz run` would rebuild whenever the source tree changes,
# so targets run later could test different code than the ones run first.
bin_dir=$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}

run_one() {
    local t=$1
    seed "$t"
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    local before
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    "$bin_dir/$t" -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$secs" -timeout="$timeout_s" \
        -rss_limit_mb="$rss_mb" -max_len=1048576 -print_final_stats=1 -close_fd_mask=1 \
        "fuzz/corpus/$t" "fuzz/seeds/$t" >"$logs/$t.log" 2>&1 || true
    local after execs rate corpus
    after=$(find "fuzz/artifacts/$t" -type f | wc -l)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' | tail -1)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    printf '%-20s %12s %10s %8s %9s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$((after - before))"
}

{
    printf 'fuzz run %s, %s s per target\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$secs"
    printf '%-20s %12s %10s %8s %9s\n' target executions exec/s corpus findings
} | tee "$logs/summary.txt"
for t in "${targets[@]}"; do
    run_one "$t" | tee -a "$logs/summary.txt"
done

findings=$(find fuzz/artifacts -type f 2>/dev/null | wc -l)
if [[ $findings -gt 0 ]]; then
    echo "fuzz: $findings input(s) in fuzz/artifacts/ crashed, timed out or ran out of memory:" >&2
    find fuzz/artifacts -type f >&2
    exit 1
fi
