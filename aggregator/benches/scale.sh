#!/usr/bin/env bash
# Scale run of the aggregator against the cluster simulator (30 pods x 2 containers per node):
# CPU per round, resident memory with a full window, and model-API latency under that load.
#
#   aggregator/benches/scale.sh <nodes> <rounds> [resolution] [retention]
#
# A 5s resolution with a 5m retention holds 60 points per series, as 15s/15m does, in a
# quarter of the wall time. Both programs are this crate's release examples: the simulator
# (perf/sim_cluster.rs) and perf/aggregator.rs (= `vigil aggregator`, same `run`).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:?nodes}; ROUNDS=${2:-20}; RES=${3:-5s}; RET=${4:-5m}
T=${CARGO_TARGET_DIR:-target}
cargo build -q --release -p vigil-aggregator --features perf --examples
tmp=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
"$T/release/examples/sim_cluster" "$N" 127.0.0.1:0 "$tmp/nodes" 2>/dev/null & SIM=$!
AGG=""
cleanup() { [ -n "$AGG" ] && kill "$AGG" 2>/dev/null; kill "$SIM" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
while [ ! -s "$tmp/nodes" ]; do sleep 0.1; done
PORT=$(free_port)
"$T/release/examples/aggregator" --listen "127.0.0.1:$PORT" --nodes-file "$tmp/nodes" --metric-resolution "$RES" \
  --allow-short-resolution --retention "$RET" --scrape-timeout 30s 2>"$tmp/agg.log" & AGG=$!
B="http://127.0.0.1:$PORT"
metric() { curl -s "$B/metrics" | awk -v m="$1" '$1==m {print $2}'; }
rounds() { local r; r=$(metric vigil_aggregator_rounds_total); echo "${r:-0}"; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
until [ "$(rounds)" -ge 2 ] 2>/dev/null; do sleep 0.5; done
r0=$(rounds); c0=$(ticks "$AGG"); s0=$(ticks "$SIM")
until [ "$(rounds)" -ge $((r0 + ROUNDS)) ]; do sleep 0.5; done
r1=$(rounds); c1=$(ticks "$AGG"); s1=$(ticks "$SIM")
HZ=$(getconf CLK_TCK)
LAT=$("$T/release/examples/api_latency" "$B" "$N" 2000)
echo "nodes=$N rounds=$((r1 - r0)) resolution=$RES retention=$RET"
echo "aggregator_cpu_s_per_round=$(echo "scale=3; ($c1 - $c0) / $HZ / ($r1 - $r0)" | bc)"
echo "simulator_cpu_s_per_round=$(echo "scale=3; ($s1 - $s0) / $HZ / ($r1 - $r0)" | bc)"
grep -E 'VmRSS|VmHWM' "/proc/$AGG/status" | tr -s ' \t' ' '
echo "series=$(metric vigil_aggregator_store_series) entities=$(metric vigil_aggregator_store_entities) points_bytes=$(metric vigil_aggregator_store_points_bytes)"
curl -s "$B/metrics" | grep '^vigil_aggregator_last_round_phase_seconds'
echo "api: $LAT"
echo "scrape failures: $(curl -s "$B/metrics" | grep '^vigil_aggregator_scrape_failures_total' | awk '{s+=$2} END {print s}')"
