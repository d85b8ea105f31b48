#!/usr/bin/env bash
# Soak test: a release server under a mixed-modality `bindery load` while a second client sends
# garbage, with the server's resident memory sampled from /proc.
#
#   scripts/soak.sh [minutes]          (default 5)
#
# The server runs as it would in production: TLS (a throw-away CA and certificate made with
# openssl) and an API key, which both clients present; SOAK_SECURE=0 runs plaintext without keys.
#
# Passes when the good load has no error, the garbage client never sees the server unavailable,
# the server is still running at the end, and the RSS trend after warm-up is flat: the
# least-squares slope must stay below SOAK_RSS_MIB_PER_MIN (default 2 MiB/min) and, times the
# measured window, below SOAK_RSS_TOLERANCE (default 5 %) of the mean RSS. Results go to
# target/soak/: rss.csv (seconds, KiB), load.json (`bindery load` report), garbage.json (statuses
# received per class), server.log, summary.txt.
#
# Environment: SOAK_PORT (default 50151), SOAK_CONCURRENCY (2), SOAK_SAMPLE_S (5),
# SOAK_WARMUP_S (60), SOAK_RSS_TOLERANCE (0.05), SOAK_RSS_MIB_PER_MIN (2), SOAK_SECURE (1),
# BINDERY_BIN (default target/release/bindery, built when missing), PYTHON (default
# tools/.venv/bin/python; needs grpcio and grpcio-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-5}
port=${SOAK_PORT:-50151}
concurrency=${SOAK_CONCURRENCY:-2}
sample_s=${SOAK_SAMPLE_S:-5}
warmup_s=${SOAK_WARMUP_S:-60}
tolerance=${SOAK_RSS_TOLERANCE:-0.05}
max_mib_per_min=${SOAK_RSS_MIB_PER_MIN:-2}
secure=${SOAK_SECURE:-1}
python=${PYTHON:-tools/.venv/bin/python}
bin=${BINDERY_BIN:-target/release/bindery}
out=target/soak
mkdir -p "$out"
rm -f "$out"/rss.csv "$out"/load.json "$out"/garbage.json "$out"/summary.txt

if [[ ! -x $bin ]]; then
    cargo build --release
fi
"$python" -c 'import grpc, grpc_tools' || { echo "soak: $python lacks grpcio/grpcio-tools" >&2; exit 1; }

# Python stubs for the garbage client.
gen=$out/gen
mkdir -p "$gen"
"$python" -m grpc_tools.protoc -I proto --python_out="$gen" --grpc_python_out="$gen" proto/bindery/v1/*.proto

serve_security=()
client=(--server "http://127.0.0.1:$port")
key=""
if [[ $secure == 1 ]]; then
    tls=$out/tls
    mkdir -p "$tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=bindery soak CA" \
        -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$tls/server.ext"
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
        -days 1 -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null
    key="soak-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    printf '%s rw\n' "$key" >"$tls/api-keys"
    serve_security=(--tls-cert "$tls/server.pem" --tls-key "$tls/server.key" --api-keys "$tls/api-keys")
    client=(--server "https://127.0.0.1:$port" --tls-ca "$tls/ca.pem" --tls-domain localhost)
fi
export BINDERY_API_KEY=$key

# Smaller limits than the defaults so that "oversized" inputs are cheap to send.
"$bin" serve --models models --default-model imagebind-fixture --listen "127.0.0.1:$port" \
    --data-dir "$out/data" --max-message-bytes $((16 << 20)) --max-text-bytes 16384 \
    --max-image-bytes $((4 << 20)) --max-audio-bytes $((4 << 20)) --max-points 1000000 \
    "${serve_security[@]}" >"$out/server.log" 2>&1 &
server=$!
cleanup() { kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; }
trap cleanup EXIT

for _ in $(seq 1 600); do
    if "$bin" models "${client[@]}" >/dev/null 2>&1; then break; fi
    kill -0 "$server" 2>/dev/null || { echo "soak: server exited during start-up" >&2; cat "$out/server.log" >&2; exit 1; }
    sleep 0.2
done

start=$(date +%s)
total_s=$((minutes * 60))

# RSS sampler.
(
    while kill -0 "$server" 2>/dev/null; do
        now=$(($(date +%s) - start))
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server/status" 2>/dev/null || true)
        [[ -n $rss ]] && echo "$now,$rss" >>"$out/rss.csv"
        [[ $now -ge $total_s ]] && break
        sleep "$sample_s"
    done
) &
sampler=$!

# Garbage client: every bad-input class, in a loop, until the run ends.
rm -rf "$out/data"
PYTHONPATH=$gen GRPC_VERBOSITY=ERROR "$python" - "$port" "$total_s" "$out/garbage.json" "${tls:-}" <<'PY' &
import json, math, os, random, struct, sys, time
import grpc
from bindery.v1 import embedder_pb2 as pb, embedder_pb2_grpc as rpc
from bindery.v1 import collections_pb2 as cpb, collections_pb2_grpc as crpc

port, total_s, report, tls = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
opts = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
if tls:
    ca = open(os.path.join(tls, "ca.pem"), "rb").read()
    opts.append(("grpc.ssl_target_name_override", "localhost"))
    channel = grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(root_certificates=ca), options=opts)
else:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=opts)
key = os.environ.get("BINDERY_API_KEY", "")
auth = [("authorization", f"Bearer {key}")] if key else []
stub = rpc.EmbedderStub(channel)
collections = crpc.CollectionsStub(channel)
raw = channel.unary_unary("/bindery.v1.Embedder/Embed", request_serializer=None, response_deserializer=None)
rng = random.Random(7)

def fx(path):
    with open(os.path.join("tests/fixtures", path), "rb") as f:
        return f.read()

good = {
    "image": fx("images/jpeg_baseline.jpg"),
    "audio": fx("audio/cases/wav16k_mono_s16_5s.wav"),
    "cloud": fx("point_cloud/cases/binary_le_20k.ply"),
}

def inp(kind, data, id="g"):
    if kind == "text":
        return pb.Input(id=id, text=data)
    if kind == "image":
        return pb.Input(id=id, image=data)
    if kind == "audio":
        return pb.Input(id=id, audio=pb.Audio(data=data))
    return pb.Input(id=id, point_cloud=pb.PointCloud(data=data))

def cut(b):
    return b[: rng.randrange(1, max(2, len(b)))]

def noise(b):
    b = bytearray(b)
    for _ in range(max(1, len(b) // 50)):
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b)

def nan_cloud():
    xyz = [rng.choice([math.nan, math.inf, -math.inf, rng.uniform(-1, 1)]) for _ in range(3000)]
    return pb.Input(id="g", point_cloud=pb.PointCloud(xyz=xyz))

def bad_vector():
    n = rng.choice([0, 7, 32, 33, 1024])
    values = [rng.choice([math.nan, math.inf, 0.0, rng.uniform(-1, 1)]) for _ in range(n)]
    return pb.SimilarityItem(vector=pb.Vector(values=values))

def other_rpcs():
    """A garbage call to Similarity, Classify or Collections (unknown names, bad vectors, bad limits)."""
    pick = rng.randrange(6)
    if pick == 0:
        stub.Similarity(pb.SimilarityRequest(queries=[bad_vector()], candidates=[bad_vector()]), timeout=30, metadata=auth)
    elif pick == 1:
        stub.Classify(pb.ClassifyRequest(inputs=[inp("text", "a cat")], labels=rng.choice([[], ["", "dog"]]),
                                         templates=rng.choice([[], ["no placeholder"], ["{} and {}"]])), timeout=30, metadata=auth)
    elif pick == 2:
        collections.Search(cpb.SearchRequest(collection=f"nope-{rng.randrange(1000)}", top_k=5,
                                             vector=pb.Vector(values=[0.1] * 32)), timeout=30, metadata=auth)
    elif pick == 3:
        collections.Search(cpb.SearchRequest(collection="soak", top_k=rng.choice([0, 10**9]),
                                             vector=pb.Vector(values=[0.1] * 32)), timeout=30, metadata=auth)
    elif pick == 4:
        item = cpb.Item(id="x" * rng.choice([0, 300]), vector=pb.Vector(values=[math.nan] * 32))
        collections.Upsert(cpb.UpsertRequest(collection="soak", items=[item]), timeout=30, metadata=auth)
    else:
        collections.CreateCollection(cpb.CreateCollectionRequest(name=rng.choice(["", "../up", "soak"])), timeout=30, metadata=auth)

def nan_wav():
    n = 16000
    data = struct.pack(f"<{n}f", *([math.nan] * n))
    fmt = struct.pack("<HHIIHH", 3, 1, 16000, 64000, 4, 32)
    return b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data)) + data

classes = {
    "truncated": lambda: [inp(k, cut(v)) for k, v in good.items()],
    "corrupt": lambda: [inp(k, noise(v)) for k, v in good.items()] + [inp(k, os.urandom(rng.randrange(1, 4096))) for k in good],
    "wrong type": lambda: [inp("image", good["audio"]), inp("audio", good["image"]), inp("cloud", good["audio"])],
    "NaN payloads": lambda: [nan_cloud(), inp("audio", nan_wav())],
    "empty": lambda: [inp("text", ""), inp("image", b""), inp("audio", b""), inp("cloud", b"")],
    "oversized": lambda: [inp("text", "x" * 20000), inp("image", os.urandom(5 << 20))],
}
# A collection for the garbage that needs one to exist.
collections.CreateCollection(cpb.CreateCollectionRequest(name="soak"), timeout=60, metadata=auth)
counts, failures = {}, []
deadline = time.time() + total_s
sent = 0
extra = ["raw protobuf", "big message", "metadata", "other RPCs"] + (["wrong key"] if key else [])
while time.time() < deadline:
    cls = rng.choice(list(classes) + extra)
    try:
        if cls == "raw protobuf":
            raw(os.urandom(rng.randrange(1, 512)), timeout=30, metadata=auth)
        elif cls == "big message":
            stub.Embed(pb.EmbedRequest(inputs=[inp("image", b"\0" * (17 << 20))]), timeout=30, metadata=auth)
        elif cls == "metadata":
            stub.Embed(pb.EmbedRequest(inputs=[inp("text", "a cat")]), timeout=30,
                       metadata=auth + [("x-padding", "a" * (64 << 10))])
        elif cls == "wrong key":
            stub.Embed(pb.EmbedRequest(inputs=[inp("text", "a cat")]), timeout=30,
                       metadata=[("authorization", "Bearer " + rng.choice(["", "x" * 20, key[:-1] + "0"]))])
        elif cls == "other RPCs":
            other_rpcs()
        else:
            inputs = classes[cls]()
            stub.Embed(pb.EmbedRequest(inputs=[rng.choice(inputs)]), timeout=30, metadata=auth)
        code = "OK"
    except grpc.RpcError as e:
        code = e.code().name
    counts.setdefault(cls, {}).setdefault(code, 0)
    counts[cls][code] += 1
    sent += 1
    # Oversized metadata makes the server end that connection (HTTP/2 GOAWAY, ENHANCE_YOUR_CALM),
    # which grpc reports as UNAVAILABLE; anywhere else UNAVAILABLE means the server is gone.
    expected_unavailable = cls == "metadata"
    if code in ("DEADLINE_EXCEEDED", "UNKNOWN") or (code == "UNAVAILABLE" and not expected_unavailable):
        failures.append(f"{cls}: {code}")
    time.sleep(0.05)
json.dump({"sent": sent, "by_class": counts, "suspicious": failures[:50]}, open(report, "w"), indent=1)
PY
garbage=$!

set +e
"$bin" load "${client[@]}" --mix text=0.4,image=0.3,audio=0.15,point_cloud=0.15 \
    --concurrency "$concurrency" --duration "$((total_s))s" --warmup 0s --no-cache --quiet \
    --json "$out/load.json"
load_rc=$?
wait "$garbage"
garbage_rc=$?
wait "$sampler"
set -e
alive=yes
kill -0 "$server" 2>/dev/null || alive=no

"$python" - "$out" "$warmup_s" "$tolerance" "$load_rc" "$garbage_rc" "$alive" "$max_mib_per_min" "$secure" <<'PY'
import json, sys
out, warmup, tol, load_rc, garbage_rc, alive = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
max_mib_per_min, secure = float(sys.argv[7]), sys.argv[8] == "1"
rows = [tuple(map(float, l.split(","))) for l in open(f"{out}/rss.csv") if l.strip()]
after = [(t, r) for t, r in rows if t >= warmup]
n = len(after)
mean_t = sum(t for t, _ in after) / n
mean_r = sum(r for _, r in after) / n
slope = sum((t - mean_t) * (r - mean_r) for t, r in after) / max(1e-9, sum((t - mean_t) ** 2 for t, _ in after))
span = after[-1][0] - after[0][0]
growth = slope * span / mean_r
load = json.load(open(f"{out}/load.json"))
load = load[0] if isinstance(load, list) else load
garbage = json.load(open(f"{out}/garbage.json"))
lines = [
    f"samples: {len(rows)} ({n} after {warmup:.0f} s warm-up), every ~{rows[1][0]-rows[0][0]:.0f} s" if len(rows) > 1 else f"samples: {len(rows)}",
    f"RSS KiB: first {rows[0][1]:.0f}, at warm-up end {after[0][1]:.0f}, min {min(r for _, r in after):.0f}, max {max(r for _, r in after):.0f}, last {rows[-1][1]:.0f}, mean {mean_r:.0f}",
    f"RSS trend after warm-up: {slope*60/1024:.2f} MiB/min (tolerance {max_mib_per_min:g}), {growth*100:.2f} % of the mean over {span:.0f} s (tolerance {tol*100:.1f} %)",
    f"good load: {load['requests']} requests, {load['ok']} ok, {load['errors']} errors {load['errors_by_code']}, {load['items_per_s']:.1f} items/s",
    f"garbage: {garbage['sent']} requests; by class: {json.dumps(garbage['by_class'], sort_keys=True)}",
    f"garbage answers suggesting a server failure (UNAVAILABLE outside the metadata class, DEADLINE_EXCEEDED, UNKNOWN): {len(garbage['suspicious'])}",
    f"server alive at the end: {alive}",
    "transport: " + ("TLS with an API key" if secure else "plaintext, no keys"),
]
ok = growth <= tol and slope * 60 / 1024 <= max_mib_per_min and load["errors"] == 0 and alive == "yes" and not garbage["suspicious"] and load_rc == 0 and garbage_rc == 0
lines.append("RESULT: " + ("PASS" if ok else "FAIL"))
text = "\n".join(lines)
print(text)
open(f"{out}/summary.txt", "w").write(text + "\n")
sys.exit(0 if ok else 1)
PY
