#!/usr/bin/env bash
# NAB through the real rule engine: each labelled file replayed with `vigil rules replay --csv`
# and the default baseline rule `{alert: Anomaly, baseline: {expr: value}}` (online, virtual
# time, the rule manager's state machine); the `firing` lines are the onsets, scored with NAB's
# scorer. run.sh drives the model directly; this is the path an operator's backtest takes.
#   alerting/nab/replay.sh [NAB_DIR]      (VIGIL=path/to/vigil, default target/debug/vigil)
set -euo pipefail
cd "$(dirname "$0")/../.."
NAB_DIR="$(realpath "${1:-../shared/fixtures/nab}")"
VIGIL="${VIGIL:-target/debug/vigil}"
[ -x "$VIGIL" ] || cargo build -q -p vigil
out=target/nab-replay-alerts.csv
rules=target/nab-replay-rule.yml
printf 'groups:\n- name: nab\n  rules:\n  - alert: Anomaly\n    baseline: {expr: value}\n' >"$rules"
echo "file,timestamp" >"$out"
files=$(python3 -c 'import json,sys; print("\n".join(sorted(json.load(open(sys.argv[1])))))' \
  "$NAB_DIR/data/labels/combined_windows.json")
for f in $files; do
  # 2014-02-14T14:30:00Z Anomaly {} firing  ->  realAWSCloudwatch/x.csv,2014-02-14 14:30:00
  "$VIGIL" rules replay --rule-file "$rules" --csv "$NAB_DIR/data/$f" |
    awk -v f="$f" '$NF == "firing" { t = $1; sub("T", " ", t); sub("Z", "", t); print f "," t }' >>"$out"
done
python3 "$NAB_DIR/score.py" "$out" --data "$NAB_DIR/data" --per-file
