#!/usr/bin/env bash
# Issue 11 figures with N release `okpay` nodes (`--node-id`) sharing one
# redis-server with `appendfsync always`, all on this machine: the load
# harness against node-0's URL (requests for shards the other nodes own are
# routed through Redis), and, over the load phase only, per acknowledged
# transfer: each node's CPU (node-0 via --server-pid, the others and
# redis-server via --node-pid), the Redis work (INFO: commands, bytes in/out,
# AOF growth) and the cross-node hops (each node's okpay_remote_* counters).
# One bounded run per call (10 s of load); everything it started is killed on
# exit. Usage:
#   cargo build --release -p okpay-gateway -p loadtest && loadtest/cluster_figures.sh 3
set -euo pipefail
N=${1:?usage: cluster_figures.sh NODES}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$ROOT/target/release
DIR=$(mktemp -d /tmp/okpay-cluster-figures-XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

RP=$(free_port)
redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly yes \
    --appendfsync always --maxmemory-policy noeviction --dir "$DIR" \
    --logfile "$DIR/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 100); do redis-cli -p "$RP" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
REDIS=redis://127.0.0.1:$RP/

PORTS=()
NODE_PIDS=()
for i in $(seq 0 $((N - 1))); do
    port=$(free_port)
    "$BIN/okpay" --config "$ROOT/loadtest/okpay-loadtest.toml" --admin-token T --dev \
        --redis "$REDIS" --node-id "node-$i" --listen "127.0.0.1:$port" \
        --data-dir "$DIR/node-$i" >"$DIR/node-$i.log" 2>&1 &
    PIDS+=($!)
    NODE_PIDS+=($!)
    PORTS+=("$port")
done
for port in "${PORTS[@]}"; do
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
done
# Wait (bounded) until the N nodes split the shards.
for _ in $(seq 300); do
    spread=$(curl -sf -H "Authorization: Bearer T" "http://127.0.0.1:${PORTS[0]}/v1/admin/cluster" |
        python3 -c 'import json, sys; v = json.load(sys.stdin); print(sum(1 for n in v["nodes"] if n["shards"] > 0))' || echo 0)
    [ "$spread" = "$N" ] && break
    sleep 0.1
done
echo "nodes=$N shards spread over $spread nodes"

ARGS=(--url "http://127.0.0.1:${PORTS[0]}" --admin-token T --accounts 500 --duration 10s
    --rate max --connections 256 --ws-subscribers 60 --seed 1 --quiet
    --server-pid "${NODE_PIDS[0]}" --node-pid "$REDIS_PID" --redis-info "$REDIS"
    --report "$DIR/report.json")
for pid in "${NODE_PIDS[@]:1}"; do ARGS+=(--node-pid "$pid"); done
for port in "${PORTS[@]}"; do ARGS+=(--metrics-url "http://127.0.0.1:$port/metrics"); done
status=0
"$BIN/loadtest" "${ARGS[@]}" || status=$?
echo "pids: node-0=${NODE_PIDS[0]} others=${NODE_PIDS[*]:1} redis=$REDIS_PID"
python3 - "$DIR/report.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
c = r.get("costs", {})
print(json.dumps({"throughput_tps": round(r["throughput_tps"]), "acked": r["acked"],
    "p99_ms": r["latency_ms"]["p99"], "errors": r["errors"], "checks": r["checks"],
    "cpu_us_entry_node": r["cpu_us_per_transfer"]["server_us"],
    "cpu_us_harness": r["cpu_us_per_transfer"]["client_us"],
    "cpu_us_other_pids": c.get("cpu_us"), "redis_per_transfer": c.get("redis"),
    "remote_per_transfer": c.get("remote"), "problems": c.get("problems")}, indent=1))
EOF
exit $status
