//! Rules in virtual time: `vigil rules replay` over a CSV series in an in-memory store
//! (evaluated at each sample's time) or over history in a query API (`--from/--to`), returning
//! alert state changes.

use std::collections::BTreeSet;
use std::sync::RwLock;

use vigil_promql::testing::MemStorage;
use vigil_promql::Engine;

use crate::query::{Query, QueryError, RangeSeries, Sample};

use super::eval::{EvalOptions, GroupState, Labels, SeriesWriter, State};
use super::file::RuleFile;
use super::template::Env;

/// An in-memory store the PromQL engine reads and rules write back into.
pub struct MemQuery {
    pub storage: RwLock<MemStorage>,
    pub engine: Engine,
}

impl Default for MemQuery {
    fn default() -> Self {
        MemQuery {
            storage: RwLock::new(MemStorage::new()),
            engine: Engine::default(),
        }
    }
}

impl MemQuery {
    pub fn add(&self, labels: &Labels, t_ms: i64, value: f64) {
        self.storage.write().unwrap().add(labels, t_ms, value);
    }
}

impl Query for MemQuery {
    fn instant(&self, expr: &str, time_ms: i64) -> Result<Vec<Sample>, QueryError> {
        let storage = self.storage.read().unwrap();
        crate::query::engine_instant(&self.engine, &*storage, expr, time_ms)
    }

    fn range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<RangeSeries>, QueryError> {
        let storage = self.storage.read().unwrap();
        crate::query::engine_range(&self.engine, &*storage, expr, start_ms, end_ms, step_ms)
    }
}

impl SeriesWriter for MemQuery {
    fn write(&self, samples: Vec<(Labels, i64, f64)>) -> Result<(), String> {
        let mut s = self.storage.write().unwrap();
        for (l, t, v) in samples {
            s.add(&l, t, v);
        }
        Ok(())
    }
}

/// Why a CSV could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("{file}:{line}: {message}")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    File { file: String, message: String },
}

/// Parses a timestamp: `YYYY-MM-DD HH:MM:SS` (UTC), RFC 3339, or unix seconds.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let s = s.trim().trim_matches('"');
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        return Ok(t.and_utc().timestamp_millis());
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok((v * 1000.0).round() as i64),
        _ => Err(format!(
            "timestamp {s:?} is neither YYYY-MM-DD HH:MM:SS, RFC 3339 nor unix seconds"
        )),
    }
}

/// Reads `timestamp,value` lines (a header line is skipped) in time order.
pub fn read_csv(file: &str, text: &str) -> Result<Vec<(i64, f64)>, CsvError> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let err = |message: String| CsvError::Line {
            file: file.to_string(),
            line: i + 1,
            message,
        };
        let (t, v) = line
            .split_once(',')
            .ok_or_else(|| err("expected timestamp,value".into()))?;
        if i == 0 && parse_timestamp(t).is_err() {
            continue; // header
        }
        let t = parse_timestamp(t).map_err(err)?;
        let v: f64 = v
            .trim()
            .trim_matches('"')
            .parse()
            .map_err(|_| err(format!("value {:?} is not a number", v.trim())))?;
        if let Some((last, _)) = out.last() {
            if t <= *last {
                return Err(err(format!(
                    "timestamp {} is not after the previous line's",
                    t
                )));
            }
        }
        out.push((t, v));
    }
    if out.is_empty() {
        return Err(CsvError::File {
            file: file.to_string(),
            message: "no samples".into(),
        });
    }
    Ok(out)
}

/// One alert state change in a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub t_ms: i64,
    pub alertname: String,
    /// The alert's labels without `alertname`.
    pub labels: Labels,
    pub firing: bool,
}

impl std::fmt::Display for Change {
    /// `<RFC 3339 time> <alertname> {labels} firing|resolved`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        write!(
            f,
            "{} {} {{{}}} {}",
            super::eval::ms_to_time(self.t_ms).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            self.alertname,
            labels.join(", "),
            if self.firing { "firing" } else { "resolved" }
        )
    }
}

/// Follows alerts across evaluations and notes each change to firing or from firing.
#[derive(Default)]
struct Changes {
    /// (group index, rule index, labels) of the alerts firing now.
    firing: BTreeSet<(usize, usize, Labels)>,
    out: Vec<Change>,
}

impl Changes {
    fn push(&mut self, t_ms: i64, mut labels: Labels, firing: bool) {
        let alertname = labels.remove("alertname").unwrap_or_default();
        self.out.push(Change {
            t_ms,
            alertname,
            labels,
            firing,
        });
    }

    /// Notes the changes of group `gi` after its evaluation at `t`.
    fn observe(&mut self, gi: usize, g: &GroupState, t: i64) {
        for (ri, r) in g.rules.iter().enumerate() {
            for a in r.alerts.values() {
                let key = (gi, ri, a.labels.clone());
                let now = a.state == State::Firing;
                if now != self.firing.contains(&key) {
                    self.push(t, a.labels.clone(), now);
                    if now {
                        self.firing.insert(key);
                    } else {
                        self.firing.remove(&key);
                    }
                }
            }
        }
        // Alerts that vanished while firing (dropped on a limit error) resolve too.
        let gone: Vec<_> = self
            .firing
            .iter()
            .filter(|(g2, ri, l)| *g2 == gi && !g.rules[*ri].alerts.contains_key(l))
            .cloned()
            .collect();
        for key in gone {
            self.firing.remove(&key);
            self.push(t, key.2, false);
        }
    }
}

fn env_at(t: i64, opts: &EvalOptions) -> Env {
    Env {
        time_ms: t,
        external_labels: opts.external_labels.clone(),
        external_url: opts.external_url.clone(),
        query: None,
    }
}

fn group_states(files: &[RuleFile]) -> Vec<GroupState> {
    files
        .iter()
        .flat_map(|f| f.groups.iter().cloned().map(GroupState::new))
        .collect()
}

/// Replays `samples` as series `metric` and evaluates every group of `files` at each sample's
/// time (online: a sample is in the store only from its own time on), returning each change
/// of an alert to firing or from firing to resolved.
pub fn replay(
    files: &[RuleFile],
    metric: &str,
    samples: &[(i64, f64)],
    opts: &EvalOptions,
) -> Vec<Change> {
    let store = MemQuery::default();
    let labels: Labels = [("__name__".to_string(), metric.to_string())].into();
    let mut groups = group_states(files);
    let mut changes = Changes::default();
    for &(t, v) in samples {
        store.add(&labels, t, v);
        for (gi, g) in groups.iter_mut().enumerate() {
            g.eval(t, &store, &store, opts, &env_at(t, opts));
            changes.observe(gi, g, t);
        }
    }
    changes.out
}

/// A rule evaluation that failed during [`replay_range`].
#[derive(Debug, Clone, PartialEq)]
pub struct EvalFailure {
    pub t_ms: i64,
    pub group: String,
    pub rule: String,
    pub error: String,
}

impl std::fmt::Display for EvalFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} group {:?}, rule {:?}: {}",
            super::eval::ms_to_time(self.t_ms).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            self.group,
            self.rule,
            self.error
        )
    }
}

/// Backfill-style replay over history, as vmalert's replay mode and `promtool tsdb
/// create-blocks-from rules` do: each group is evaluated through `query` at every multiple of
/// its interval from `from_ms` to `to_ms`, in virtual time. Recorded and `ALERTS` series are
/// not written anywhere (a later rule does not see an earlier rule's recorded series). Returns
/// the alert state changes in time order and every failed evaluation.
pub fn replay_range(
    files: &[RuleFile],
    query: &dyn Query,
    from_ms: i64,
    to_ms: i64,
    opts: &EvalOptions,
) -> (Vec<Change>, Vec<EvalFailure>) {
    let mut changes = Changes::default();
    let mut failures = Vec::new();
    for (gi, mut g) in group_states(files).into_iter().enumerate() {
        let step = g.interval(opts).as_millis().max(1) as i64;
        let mut t = from_ms.div_euclid(step) * step;
        if t < from_ms {
            t += step;
        }
        while t <= to_ms {
            g.eval(t, query, &super::eval::NoWriter, opts, &env_at(t, opts));
            changes.observe(gi, &g, t);
            for r in &g.rules {
                if let (super::eval::Health::Err, Some(e)) = (r.health, &r.last_error) {
                    failures.push(EvalFailure {
                        t_ms: t,
                        group: g.group.name.clone(),
                        rule: r.rule.name().to_string(),
                        error: e.clone(),
                    });
                }
            }
            t += step;
        }
    }
    // Groups were replayed one after the other: merge them in time (stable: a group's own
    // order is kept).
    changes.out.sort_by_key(|c| c.t_ms);
    (changes.out, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_three_forms() {
        assert_eq!(
            parse_timestamp("2014-02-14 14:30:00").unwrap(),
            1_392_388_200_000
        );
        assert_eq!(
            parse_timestamp("2014-02-14T14:30:00Z").unwrap(),
            1_392_388_200_000
        );
        assert_eq!(parse_timestamp("1392388200").unwrap(), 1_392_388_200_000);
        assert!(parse_timestamp("yesterday").is_err());
    }

    #[test]
    fn csv_errors_name_the_line() {
        assert_eq!(
            read_csv("f", "timestamp,value\n1,2\n2,3\n").unwrap(),
            vec![(1000, 2.0), (2000, 3.0)]
        );
        let e = read_csv("f.csv", "timestamp,value\n1,2\n1,3\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.csv:3: "), "{e}");
        let e = read_csv("f.csv", "1,x\n").unwrap_err().to_string();
        assert!(e.contains("f.csv:1: value \"x\" is not a number"), "{e}");
    }

    #[test]
    fn baseline_rule_with_defaults_fires_on_a_spike_and_writes_bands() {
        let f = super::super::file::parse(
            "r.yml",
            "groups:\n- name: g\n  rules:\n  - alert: Anomaly\n    baseline: {expr: value}\n",
        )
        .unwrap();
        // Two days every 5 minutes around 10 with small noise, one spike to 40 on day 2.
        let spike = 2 * 288 - 20;
        let samples: Vec<(i64, f64)> = (0..2 * 288)
            .map(|i: i64| {
                (
                    i * 300_000,
                    if i == spike {
                        40.0
                    } else {
                        10.0 + ((i * 7919) % 11) as f64 / 10.0
                    },
                )
            })
            .collect();
        let changes = replay(&[f.clone()], "value", &samples, &EvalOptions::default());
        assert!(!changes.is_empty());
        assert_eq!(changes[0].t_ms, spike * 300_000, "{changes:?}");
        assert!(changes[0].firing);
        assert_eq!(changes[0].alertname, "Anomaly");
        // The bands are series in the store.
        let store = MemQuery::default();
        let mut g = GroupState::new(f.groups[0].clone());
        let label: Labels = [("__name__".to_string(), "value".to_string())].into();
        for (t, v) in &samples[..300] {
            store.add(&label, *t, *v);
            g.eval(*t, &store, &store, &EvalOptions::default(), &Env::default());
        }
        let upper = store
            .instant("Anomaly_baseline_upper", samples[299].0)
            .unwrap();
        let lower = store
            .instant("Anomaly_baseline_lower", samples[299].0)
            .unwrap();
        assert!(
            upper[0].value > 11.0 && lower[0].value < 10.0,
            "{upper:?} {lower:?}"
        );
        assert!(g.rules[0].models.len() == 1);
    }

    #[test]
    fn threshold_rule_replayed_in_virtual_time() {
        let f = super::super::file::parse(
            "r.yml",
            "groups:\n- name: g\n  rules:\n  - alert: High\n    expr: value > 10\n    for: 10m\n    labels: {severity: page}\n",
        )
        .unwrap();
        // One sample every 5 minutes: high from 20m to 40m.
        let samples: Vec<(i64, f64)> = (0..12)
            .map(|i| (i * 300_000, if (4..=8).contains(&i) { 20.0 } else { 1.0 }))
            .collect();
        let changes = replay(&[f], "value", &samples, &EvalOptions::default());
        let lines: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            lines,
            vec![
                "1970-01-01T00:30:00Z High {severity=\"page\"} firing",
                "1970-01-01T00:45:00Z High {severity=\"page\"} resolved",
            ]
        );
    }

    #[test]
    fn replay_range_over_a_store_reports_changes_and_failures() {
        let f = super::super::file::parse(
            "r.yml",
            "groups:\n- name: g\n  interval: 1m\n  rules:\n  - alert: High\n    expr: value > 10\n    for: 10m\n  - alert: Broken\n    expr: '{__name__=~\"value|other\"} * on() vector(1)'\n",
        )
        .unwrap();
        let store = MemQuery::default();
        for i in 0..=60i64 {
            let v = if (20..=40).contains(&i) { 20.0 } else { 1.0 };
            store.add(&[("__name__".to_string(), "value".to_string())].into(), i * 60_000, v);
            store.add(&[("__name__".to_string(), "other".to_string())].into(), i * 60_000, v);
        }
        // From 30 s: the first evaluation is at the next whole minute.
        let (changes, failures) = replay_range(&[f], &store, 30_000, 60 * 60_000, &EvalOptions::default());
        let lines: Vec<String> = changes.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            lines,
            vec![
                "1970-01-01T00:30:00Z High {} firing",
                "1970-01-01T00:41:00Z High {} resolved",
            ]
        );
        assert_eq!(failures.len(), 60, "{failures:?}");
        assert_eq!(failures[0].t_ms, 60_000);
        assert_eq!(failures[0].rule, "Broken");
        assert!(failures[0].to_string().starts_with("1970-01-01T00:01:00Z group \"g\", rule \"Broken\": "), "{}", failures[0]);
    }
}
