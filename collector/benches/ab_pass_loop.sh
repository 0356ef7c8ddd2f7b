#!/usr/bin/env bash
# Alternates `pass_loop_mimalloc` builds on one tree, round after round, and prints each build's
# median wall time per pass: on a noisy shared host, builds compared in the same minutes.
# Usage: collector/benches/ab_pass_loop.sh <rounds> <tree> <pass_loop binary>...
#   (build: cargo build --release -p vigil-collector --features perf --example pass_loop_mimalloc; copy the
#    binary of each version aside; tree: target/release/examples/gen_tree /dev/shm/vp1000 1000)
set -euo pipefail
rounds=$1; tree=$2; shift 2
declare -A res
for _ in $(seq "$rounds"); do
  for b in "$@"; do
    out=$(MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0 "$b" "$tree" 40 2 12 watch)
    res[$b]="${res[$b]:-} $(echo "$out" | sed -E 's/.* ([0-9.]+)ms per pass.*/\1/')"
  done
done
for b in "$@"; do
  med=$(echo ${res[$b]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  echo "$b median ${med} ms:${res[$b]}"
done
