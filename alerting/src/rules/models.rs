//! What `baseline:` and `outlier:` rules alert on: their models fed from the rule's query, and
//! the series they write (`<alert>_baseline_lower/upper`, `<alert>_outlier_score`).

use std::collections::HashMap;
use std::time::Duration;

use crate::anomaly::{outlier, AnomalyError, Baseline, BaselineConfig, OutlierConfig};
use crate::query::{Query, Sample};

use super::eval::Labels;

/// Most points per member an `outlier:` rule's range query asks for: the step is the group's
/// interval, or `window / MAX_OUTLIER_POINTS` when that is longer.
pub const MAX_OUTLIER_POINTS: u32 = 120;

/// Feeds each sample to its series' model (created on first sight) and returns the anomalous
/// samples (labels without `__name__`); the bands go to `series`.
pub fn baseline(
    config: &BaselineConfig,
    name: &str,
    models: &mut HashMap<Labels, Baseline>,
    samples: Vec<Sample>,
    query_ts: i64,
    series: &mut Vec<(Labels, i64, f64)>,
) -> Result<Vec<Sample>, String> {
    let mut anomalous = Vec::new();
    for Sample { mut labels, value } in samples {
        labels.remove("__name__");
        if !value.is_finite() {
            continue;
        }
        let model = models
            .entry(labels.clone())
            .or_insert_with(|| Baseline::new(config));
        let verdict = match model.update(query_ts, value) {
            Ok(v) => v,
            // A sample not newer than the model's last (a restart replaying the same point)
            // teaches it nothing.
            Err(AnomalyError::OutOfOrder { .. }) => continue,
            Err(e) => return Err(format!("baseline {labels:?}: {e}")),
        };
        for (suffix, v) in [("lower", verdict.lower), ("upper", verdict.upper)] {
            if v.is_finite() {
                let mut l = labels.clone();
                l.insert("__name__".into(), format!("{name}_baseline_{suffix}"));
                series.push((l, query_ts, v));
            }
        }
        if verdict.anomalous {
            anomalous.push(Sample { labels, value });
        }
    }
    Ok(anomalous)
}

/// Queries `config.expr` over the window ending at `query_ts`, compares each peer group's
/// members and returns the outliers (labels without `__name__`, value = score in group
/// spreads). Every compared member's score goes to `series` as `<name>_outlier_score`.
/// Groups too small to compare are logged (debug) and fire nothing.
pub fn outlier(
    config: &OutlierConfig,
    name: &str,
    query: &dyn Query,
    query_ts: i64,
    interval: Duration,
    series: &mut Vec<(Labels, i64, f64)>,
) -> Result<Vec<Sample>, String> {
    let step = interval.max(config.window / MAX_OUTLIER_POINTS).as_millis().max(1) as i64;
    let start = query_ts - config.window.as_millis() as i64;
    let mut members = query
        .range(&config.expr, start, query_ts, step)
        .map_err(|e| e.0)?;
    for m in &mut members {
        m.labels.remove("__name__");
    }
    let mut out = Vec::new();
    for group in outlier::evaluate(config, &members) {
        if let Some(why) = &group.skipped {
            tracing::debug!(rule = %name, group = ?group.group, reason = %why, "peer group not compared");
            continue;
        }
        for m in group.members {
            let mut l = m.labels.clone();
            l.insert("__name__".into(), format!("{name}_outlier_score"));
            series.push((l, query_ts, m.score));
            if m.anomalous {
                out.push(Sample {
                    labels: m.labels,
                    value: m.score,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::eval::{EvalOptions, GroupState};
    use crate::rules::offline::MemQuery;
    use crate::rules::template::Env;

    const RULE: &str = "groups:\n- name: fleet\n  interval: 1m\n  rules:\n  - alert: Odd\n    outlier: {expr: 'sum by (node) (load)', by: [node], window: 10m}\n    labels: {severity: ticket}\n";

    /// Ten nodes a minute apart for 30 minutes; `f(node, minute)` is the value.
    fn fleet(f: impl Fn(usize, i64) -> f64) -> (GroupState, MemQuery, Vec<Vec<Labels>>) {
        let file = crate::rules::file::parse("f.yml", RULE).unwrap();
        let mut g = GroupState::new(file.groups[0].clone());
        let store = MemQuery::default();
        let mut firing = Vec::new();
        for t in 0..30i64 {
            for n in 0..10 {
                let l: Labels = [("__name__".to_string(), "load".to_string()), ("node".to_string(), format!("n{n}"))].into();
                store.add(&l, t * 60_000, f(n, t));
            }
            g.eval(t * 60_000, &store, &store, &EvalOptions::default(), &Env::default());
            firing.push(g.rules[0].alerts.keys().cloned().collect());
        }
        (g, store, firing)
    }

    #[test]
    fn one_drifting_member_fires_alone_with_its_score_written() {
        // Peers spread 1.0..1.9; n3 drifts up from minute 15.
        let (g, store, firing) = fleet(|n, t| 1.0 + n as f64 / 10.0 + if n == 3 && t >= 15 { (t - 14) as f64 } else { 0.0 });
        assert!(firing[..16].iter().all(|f| f.is_empty()), "{firing:?}");
        let last = firing.last().unwrap();
        assert_eq!(last.len(), 1, "{last:?}");
        let alert = &last[0];
        assert_eq!(alert["node"], "n3");
        assert_eq!(alert["alertname"], "Odd");
        assert_eq!(alert["severity"], "ticket");
        assert!(g.rules[0].alerts[alert].value > 3.0);
        let scores = store.instant("Odd_outlier_score", 29 * 60_000).unwrap();
        assert_eq!(scores.len(), 10);
        let n3 = scores.iter().find(|s| s.labels["node"] == "n3").unwrap();
        assert!(n3.value > 3.0, "{scores:?}");
        assert!(scores.iter().filter(|s| s.labels["node"] != "n3").all(|s| s.value.abs() < 3.0), "{scores:?}");
    }

    #[test]
    fn a_fleet_wide_shift_fires_nothing() {
        let (g, _, firing) = fleet(|n, t| (1.0 + n as f64 / 10.0) * if t >= 15 { 5.0 } else { 1.0 });
        assert!(firing.iter().all(|f| f.is_empty()), "{firing:?}");
        assert_eq!(g.rules[0].health, crate::rules::eval::Health::Ok);
    }
}
