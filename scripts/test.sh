#!/usr/bin/env bash
# The one command that runs every vigil test: installs the real peers the tests talk to
# (Debian packages) when they are missing, then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
need() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }
need promtool prometheus
need prometheus prometheus
need prometheus-node-exporter prometheus-node-exporter
need influxd influxdb
need influx influxdb-client
need victoria-metrics victoria-metrics
need prometheus-alertmanager prometheus-alertmanager
need rsyslogd rsyslog
need protoc protobuf-compiler
need python3 python3  # NAB's score.py (alerting/tests/anomaly_nab.rs)
need chromium chromium
# Debian's package installs for Debian's python3, which a pyenv or venv python3 on PATH may hide.
debian_python=/usr/bin/python3; [ -x "$debian_python" ] || debian_python=python3
"$debian_python" -c 'import aiosmtpd' 2>/dev/null || need_pkgs+=(python3-aiosmtpd)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing test peers: ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  # Debian starts some of these as services; the tests start their own on loopback ports.
  $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# The packaged services (if the package started them) are not used by the tests.
for svc in prometheus prometheus-node-exporter influxdb prometheus-alertmanager victoria-metrics; do
  if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
done

# A one-off build (CI's fresh clone) gains nothing from incremental state: ~1 GB less on disk.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi
# The linker dies with a bare "Bus error" when the disk fills up: say so before building.
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
free_kb=$(df --output=avail -k "$target_dir" | tail -1)
if [ "$free_kb" -lt $((4 * 1024 * 1024)) ]; then
  echo "warning: only $((free_kb / 1024)) MB free under $target_dir; the test build needs about 3 GB" >&2
fi

# Two cores: build once, run test binaries with the default thread count.
cargo test --workspace "$@"
# The measurement programs (perf/, BENCHMARKS.md's commands) are not built by `cargo test`:
# build them here so they cannot rot unnoticed.
cargo build --workspace --examples \
  --features vigil/perf,vigil-aggregator/perf,vigil-collector/perf,vigil-dashboards/perf
