#!/usr/bin/env bash
# Replays NAB's labelled series through the baseline model with its default configuration
# (online, no look-ahead), writes the alert onsets and scores them with NAB's scorer.
#   alerting/nab/run.sh [NAB_DIR]        (default: ../shared/fixtures/nab next to the repository)
#   NAB_CONFIG='{expr: value, deviations: 4}' alerting/nab/run.sh    (another configuration)
# Prints score.py's per-file table and the standard / reward-low-FP / reward-low-FN figures;
# the onsets are left in target/nab-alerts.csv.
set -euo pipefail
cd "$(dirname "$0")/../.."
export NAB_DIR="$(realpath "${1:-../shared/fixtures/nab}")"
export NAB_ALERTS_OUT="$PWD/target/nab-alerts.csv"
# The test writes the onsets, then fails if the score fell under the recorded figure.
status=0
cargo test -q -p vigil-alerting --test anomaly_nab nab_default_config_keeps_its_recorded_score \
  -- --exact >/dev/null 2>&1 || status=$?
python3 "$NAB_DIR/score.py" "$NAB_ALERTS_OUT" --data "$NAB_DIR/data" --per-file
exit $status
