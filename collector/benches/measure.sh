#!/usr/bin/env bash
# Resident memory of the real `vigil collector` on a generated 1,000-container v2 tree (tmpfs),
# and the cost of 50 sequential /metrics scrapes of vigil vs prometheus-node-exporter, same run.
# Usage: collector/benches/measure.sh [containers]   (needs a release build: cargo build --release -p vigil)
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-1000}"
T="${CARGO_TARGET_DIR:-target}"
VIGIL="$T/release/vigil"
GEN="$T/release/examples/gen_tree"
[ -x "$VIGIL" ] || { echo "build first: cargo build --release -p vigil"; exit 1; }
[ -x "$GEN" ] || { echo "build first: cargo build --release -p vigil-collector --features perf --example gen_tree"; exit 1; }
ROOT="/dev/shm/vigil-measure-$$"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$ROOT"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1"; exit 1; }
scrape50() { local s e; s=$(date +%s.%N); for _ in $(seq 1 50); do curl -s -o /dev/null "$1"; done; e=$(date +%s.%N); echo "scale=1; ($e - $s) * 1000 / 50" | bc; }

"$GEN" "$ROOT" "$N"
P1=$(port)
"$VIGIL" collector --listen "127.0.0.1:$P1" --cgroup-root "$ROOT" --pod-log-root "$ROOT/no-logs" --housekeeping-interval 1s 2>/dev/null &
PIDS+=($!); VP=$!
wait_http "http://127.0.0.1:$P1/healthz"
sleep 5   # several passes and scrapes before measuring
echo "containers=$N series=$(curl -s "http://127.0.0.1:$P1/metrics" | grep -vc '^#') bytes=$(curl -s "http://127.0.0.1:$P1/metrics" | wc -c)"
for _ in 1 2 3; do curl -s -o /dev/null "http://127.0.0.1:$P1/metrics"; curl -s -o /dev/null "http://127.0.0.1:$P1/stats/summary"; done
sleep 2
echo "RSS between scrapes (VmRSS, after scrapes of /metrics and /stats/summary and 2 s idle) and peak (VmHWM):"
grep -E "VmRSS|VmHWM" "/proc/$VP/status"
echo "pass_duration_seconds=$(curl -s "http://127.0.0.1:$P1/metrics" | awk '/^vigil_collector_collection_duration_seconds /{print $2}')"
echo "vigil (generated tree) ms/scrape: $(scrape50 "http://127.0.0.1:$P1/metrics")"

P2=$(port)
"$VIGIL" collector --listen "127.0.0.1:$P2" --housekeeping-interval 1s 2>/dev/null &
PIDS+=($!); VR=$!
P3=$(port)
prometheus-node-exporter --web.listen-address="127.0.0.1:$P3" 2>/dev/null &
PIDS+=($!); NE=$!
wait_http "http://127.0.0.1:$P2/healthz"; wait_http "http://127.0.0.1:$P3/metrics"
sleep 2
echo "vigil (this machine) series=$(curl -s "http://127.0.0.1:$P2/metrics" | grep -vc '^#') ms/scrape: $(scrape50 "http://127.0.0.1:$P2/metrics")"
echo "node_exporter (this machine) series=$(curl -s "http://127.0.0.1:$P3/metrics" | grep -vc '^#') ms/scrape: $(scrape50 "http://127.0.0.1:$P3/metrics")"
echo "RSS vigil (this machine): $(grep VmRSS /proc/$VR/status | awk '{print $2" "$3}')  node_exporter: $(grep VmRSS /proc/$NE/status | awk '{print $2" "$3}')"
