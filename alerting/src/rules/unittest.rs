//! promtool's rule unit tests (`vigil rules test`): input series in the expanding notation,
//! rules evaluated in virtual time, `alert_rule_test` and `promql_expr_test` checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use serde::Deserialize;

use super::eval::{EvalOptions, GroupState, Labels, State, STALE_NAN};
use super::file::{load_patterns, parse_duration, RuleFile, RuleKind};
use super::offline::MemQuery;
use super::template::Env;
use crate::query::Query;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    #[serde(default)]
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

/// One expanded value of an input series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Point {
    Value(f64),
    Missing,
    Stale,
}

fn number(s: &str) -> Result<f64, String> {
    match s {
        "Inf" | "+Inf" | "inf" | "+inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => Ok(f64::NAN),
        _ => s.parse().map_err(|_| format!("invalid number {s:?}")),
    }
}

/// Expands promtool's series notation: `1 2 _ stale 1+2x3 5-1x2 7x2 _x3`.
pub fn expand_values(values: &str) -> Result<Vec<Point>, String> {
    static RE: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(
            r"^([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN))(?:([-+])([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?))?x([0-9]+)$",
        )
        .expect("series notation regex")
    });
    let mut out = Vec::new();
    for tok in values.split_whitespace() {
        if tok == "_" {
            out.push(Point::Missing);
        } else if tok == "stale" {
            out.push(Point::Stale);
        } else if let Some(n) = tok.strip_prefix("_x") {
            let n: usize = n.parse().map_err(|_| format!("invalid repetition {tok:?}"))?;
            out.extend(std::iter::repeat_n(Point::Missing, n));
        } else if let Some(c) = RE.captures(tok) {
            let a = number(&c[1])?;
            let step = match (c.get(2), c.get(3)) {
                (Some(op), Some(b)) => {
                    let b = number(b.as_str())?;
                    if op.as_str() == "-" {
                        -b
                    } else {
                        b
                    }
                }
                _ => 0.0,
            };
            let n: usize = c[4].parse().map_err(|_| format!("invalid repetition {tok:?}"))?;
            for i in 0..=n {
                out.push(Point::Value(a + step * i as f64));
            }
        } else {
            out.push(Point::Value(number(tok).map_err(|_| format!("invalid value {tok:?} in {values:?}"))?));
        }
    }
    Ok(out)
}

/// Labels of a series written as a selector: `up{job="a"}` or `{__name__="up"}`.
pub fn series_labels(s: &str) -> Result<Labels, String> {
    if s.trim().is_empty() || s.trim() == "{}" {
        return Ok(Labels::new());
    }
    use promql_parser::parser::{parse, Expr};
    let e = parse(s).map_err(|e| format!("series {s:?}: {e}"))?;
    let Expr::VectorSelector(vs) = e else {
        return Err(format!("series {s:?}: not a series selector"));
    };
    let mut labels = Labels::new();
    if let Some(n) = &vs.name {
        labels.insert("__name__".into(), n.clone());
    }
    for m in &vs.matchers.matchers {
        if !matches!(m.op, promql_parser::label::MatchOp::Equal) {
            return Err(format!("series {s:?}: only = matchers describe a series"));
        }
        labels.insert(m.name.clone(), m.value.clone());
    }
    Ok(labels)
}

fn duration(what: &str, s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| format!("{what}: {e}"))
}

/// Runs one unit-test file; `Ok(failures)` lists every failed check (empty = success).
pub fn run_file(path: &Path) -> Result<Vec<String>, String> {
    let name = path.display().to_string();
    let text = vigil_common::config::read_capped(path).map_err(|e| e.to_string())?;
    // The depth budget first: a YAML bomb is reported as one, whatever its shape.
    vigil_common::config::check_yaml(&text, path).map_err(|e| e.to_string())?;
    let tf: TestFile = vigil_common::config::from_yaml(&text, path)
        .map_err(|e| format!("{name}: {}", e.detail()))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let patterns: Vec<String> = tf
        .rule_files
        .iter()
        .map(|f| {
            let p = PathBuf::from(f);
            if p.is_absolute() { p } else { base.join(p) }.display().to_string()
        })
        .collect();
    let files = load_patterns(&patterns).map_err(|e| e.to_string())?;
    let eval_interval = match &tf.evaluation_interval {
        Some(s) => duration("evaluation_interval", s)?,
        None => Duration::from_secs(60),
    };
    if !tf.group_eval_order.is_empty() {
        return Err(format!("{name}: group_eval_order is not supported by vigil yet"));
    }
    let mut failures = Vec::new();
    for (i, t) in tf.tests.iter().enumerate() {
        let label = if t.name.is_empty() { format!("test {}", i + 1) } else { t.name.clone() };
        match run_group(t, &files, eval_interval) {
            Ok(f) => failures.extend(f.into_iter().map(|f| format!("    {label}: {f}"))),
            Err(e) => failures.push(format!("    {label}: {e}")),
        }
    }
    Ok(failures)
}

fn run_group(t: &TestGroup, files: &[RuleFile], eval_interval: Duration) -> Result<Vec<String>, String> {
    let interval = match &t.interval {
        Some(s) => duration("interval", s)?,
        None => eval_interval,
    };
    let store = MemQuery::default();
    for s in &t.input_series {
        let labels = series_labels(&s.series)?;
        let points = expand_values(&s.values).map_err(|e| format!("series {:?}: {e}", s.series))?;
        for (i, p) in points.iter().enumerate() {
            let ts = (interval.as_millis() as i64) * i as i64;
            match p {
                Point::Value(v) => store.add(&labels, ts, *v),
                Point::Stale => store.add(&labels, ts, STALE_NAN),
                Point::Missing => {}
            }
        }
    }
    let mut alert_tests: Vec<(i64, &AlertTest)> = Vec::new();
    for a in &t.alert_rule_test {
        alert_tests.push((duration("eval_time", &a.eval_time)?.as_millis() as i64, a));
    }
    alert_tests.sort_by_key(|(t, _)| *t);
    let mut expr_times = Vec::new();
    for e in &t.promql_expr_test {
        expr_times.push(duration("eval_time", &e.eval_time)?.as_millis() as i64);
    }
    let max_t = alert_tests
        .iter()
        .map(|(t, _)| *t)
        .chain(expr_times.iter().copied())
        .max()
        .unwrap_or(0);
    let opts = EvalOptions {
        default_interval: eval_interval,
        external_labels: t.external_labels.clone(),
        external_url: t.external_url.clone(),
        ..EvalOptions::default()
    };
    let mut groups: Vec<GroupState> = files
        .iter()
        .flat_map(|f| f.groups.iter().cloned().map(GroupState::new))
        .collect();
    let step = eval_interval.as_millis().max(1) as i64;
    let mut failures = Vec::new();
    let mut next_test = 0;
    let mut ts = 0;
    while ts <= max_t {
        for g in &mut groups {
            let env = Env {
                query: None,
                time_ms: ts,
                external_labels: opts.external_labels.clone(),
                external_url: opts.external_url.clone(),
            };
            g.eval(ts, &store, &store, &opts, &env);
        }
        while next_test < alert_tests.len() && alert_tests[next_test].0 < ts + step {
            let (et, test) = alert_tests[next_test];
            next_test += 1;
            if et < ts {
                continue;
            }
            let mut got: Vec<(Labels, Labels)> = groups
                .iter()
                .flat_map(|g| &g.rules)
                .filter(|r| matches!(&r.rule.kind, RuleKind::Alerting { name, .. } if *name == test.alertname))
                .flat_map(|r| r.alerts.values())
                .filter(|a| a.state == State::Firing)
                .map(|a| (a.labels.clone(), a.annotations.clone()))
                .collect();
            let mut exp: Vec<(Labels, Labels)> = test
                .exp_alerts
                .iter()
                .map(|e| {
                    let mut l = e.exp_labels.clone();
                    l.insert("alertname".into(), test.alertname.clone());
                    (l, e.exp_annotations.clone())
                })
                .collect();
            got.sort();
            exp.sort();
            if got != exp {
                failures.push(format!(
                    "alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                    test.alertname,
                    test.eval_time,
                    show_alerts(&exp),
                    show_alerts(&got)
                ));
            }
        }
        ts += step;
    }
    for (e, et) in t.promql_expr_test.iter().zip(expr_times) {
        let got = match store.instant(&e.expr, et) {
            Ok(v) => v,
            Err(err) => {
                failures.push(format!("    expr: {:?}, time: {}, err: {}", e.expr, e.eval_time, err.0));
                continue;
            }
        };
        let mut got: Vec<(Labels, f64)> = got.into_iter().map(|s| (s.labels, s.value)).collect();
        let mut exp = Vec::new();
        for s in &e.exp_samples {
            exp.push((series_labels(&s.labels)?, s.value));
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        let same = got.len() == exp.len()
            && got.iter().zip(&exp).all(|((gl, gv), (el, ev))| gl == el && almost_equal(*gv, *ev));
        if !same {
            failures.push(format!(
                "expr: {:?}, time: {},\n        exp: {}\n        got: {}",
                e.expr,
                e.eval_time,
                show_samples(&exp),
                show_samples(&got)
            ));
        }
    }
    Ok(failures)
}

/// promtool 2.42 compares sample values exactly (NaN equals NaN).
fn almost_equal(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

fn show_labels(l: &Labels) -> String {
    let v: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", v.join(", "))
}

fn show_alerts(a: &[(Labels, Labels)]) -> String {
    let v: Vec<String> = a
        .iter()
        .enumerate()
        .map(|(i, (l, an))| format!("{i}:\n          Labels:{}\n          Annotations:{}", show_labels(l), show_labels(an)))
        .collect();
    format!("[\n        {}\n        ]", v.join("\n        "))
}

fn show_samples(s: &[(Labels, f64)]) -> String {
    let v: Vec<String> = s
        .iter()
        .map(|(l, v)| format!("{{\"labels\":\"{}\",\"value\":{v}}}", show_labels(l)))
        .collect();
    format!("[{}]", v.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanding_notation_as_promtool() {
        use Point::*;
        assert_eq!(expand_values("1+1x3").unwrap(), vec![Value(1.0), Value(2.0), Value(3.0), Value(4.0)]);
        assert_eq!(expand_values("5-2x2 _ stale").unwrap(), vec![Value(5.0), Value(3.0), Value(1.0), Missing, Stale]);
        assert_eq!(expand_values("7x2 _x2 -1").unwrap(), vec![Value(7.0), Value(7.0), Value(7.0), Missing, Missing, Value(-1.0)]);
        assert_eq!(expand_values("1e3 Inf").unwrap(), vec![Value(1000.0), Value(f64::INFINITY)]);
        assert!(expand_values("1+x").is_err());
    }

    #[test]
    fn series_as_selectors() {
        let l = series_labels("up{job=\"a\", instance=\"b\"}").unwrap();
        assert_eq!(l["__name__"], "up");
        assert_eq!(l["job"], "a");
        assert!(series_labels("up{job=~\"a\"}").is_err());
    }
}
