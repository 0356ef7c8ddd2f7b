//! The rule manager: loads rule files, runs each group on its own thread at its interval,
//! reloads (a failing reload keeps the old rules), keeps the `for` state across restarts in a
//! state file, and answers `/api/v1/rules` and `/api/v1/alerts`.
//!
//! The `for` state is restored from a state file under `--data-dir` rather than from
//! `ALERTS_FOR_STATE`: the rules may be evaluated against a remote Prometheus-compatible API
//! where vigil cannot write series, and the aggregator's in-memory window does not survive a
//! restart without its snapshot. `ALERTS_FOR_STATE` is still written where the store takes it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use vigil_common::exposition::{Format, Kind, Writer};

use crate::alert::Notify;
use crate::query::Query;

use super::eval::{EvalOptions, GroupState, Health, RuleState, SavedState, SeriesWriter, State};
use super::file::{load_patterns, LoadError, RuleKind};
use super::template::Env;

/// What the manager needs besides its rule files.
#[derive(Clone, Default)]
pub struct ManagerConfig {
    /// `--rule-file` paths or globs.
    pub patterns: Vec<String>,
    pub eval: EvalOptions,
    /// Where `rules-state.json` keeps pending alerts across restarts; none = not kept.
    pub data_dir: Option<PathBuf>,
}

struct Running {
    group: Arc<Mutex<GroupState>>,
    /// Dropping it stops the group's thread.
    _stop: Sender<()>,
}

/// Loads, runs and reports rule groups.
pub struct Manager {
    config: ManagerConfig,
    query: Arc<dyn Query>,
    writer: Arc<dyn SeriesWriter>,
    notify: Option<Arc<dyn Notify>>,
    running: Mutex<Vec<Running>>,
    /// State read at start, applied to each group after its second evaluation.
    restored: Arc<SavedState>,
    saved: Arc<Mutex<SavedState>>,
    last_reload: RwLock<Result<(), String>>,
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Manager {
    /// Loads the rule files; nothing runs until [`Manager::start`].
    pub fn new(
        config: ManagerConfig,
        query: Arc<dyn Query>,
        writer: Arc<dyn SeriesWriter>,
        notify: Option<Arc<dyn Notify>>,
    ) -> Result<Arc<Manager>, LoadError> {
        // Validate before anything starts.
        load_patterns(&config.patterns)?;
        let restored = config
            .data_dir
            .as_ref()
            .and_then(|d| std::fs::read(d.join("rules-state.json")).ok())
            .and_then(|b| match serde_json::from_slice::<SavedState>(&b) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring an unreadable rules-state.json");
                    None
                }
            })
            .unwrap_or_default();
        Ok(Arc::new(Manager {
            config,
            query,
            writer,
            notify,
            running: Mutex::new(Vec::new()),
            restored: Arc::new(restored),
            saved: Arc::new(Mutex::new(SavedState::default())),
            last_reload: RwLock::new(Ok(())),
        }))
    }

    /// Starts evaluating the rule files.
    pub fn start(self: &Arc<Self>) -> Result<(), LoadError> {
        self.reload()
    }

    /// Reloads the rule files: on success the new groups replace the old ones (rules that did
    /// not change keep their alerts); on failure the old groups keep running and the error is
    /// returned (and kept for `vigil_rules_last_reload_successful`).
    pub fn reload(self: &Arc<Self>) -> Result<(), LoadError> {
        let files = match load_patterns(&self.config.patterns) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "error loading rules, previous rule set kept");
                *self.last_reload.write().unwrap() = Err(e.to_string());
                return Err(e);
            }
        };
        let mut running = self.running.lock().unwrap();
        let old: Vec<GroupState> = running
            .iter()
            .map(|r| r.group.lock().unwrap().clone())
            .collect();
        running.clear(); // stops the old threads
        for file in files {
            for group in file.groups {
                let mut state = GroupState::new(group);
                if let Some(o) = old.iter().find(|o| o.key() == state.key()) {
                    state.copy_state(o);
                } else if let Some(dir) = &self.config.data_dir {
                    load_models(&mut state, dir);
                }
                running.push(self.spawn(state));
            }
        }
        *self.last_reload.write().unwrap() = Ok(());
        tracing::info!(groups = running.len(), "rules loaded");
        Ok(())
    }

    /// Stops every group and saves the baseline models.
    pub fn stop(&self) {
        let running: Vec<Running> = self.running.lock().unwrap().drain(..).collect();
        if let Some(dir) = &self.config.data_dir {
            for r in &running {
                if let Err(e) = save_models(&r.group.lock().unwrap(), dir) {
                    tracing::warn!(error = %e, "could not save the baseline models");
                }
            }
        }
    }

    fn spawn(self: &Arc<Self>, state: GroupState) -> Running {
        let (tx, rx) = channel::<()>();
        let group = Arc::new(Mutex::new(state));
        let me = Arc::clone(self);
        let g = Arc::clone(&group);
        let name = g.lock().unwrap().group.name.clone();
        std::thread::Builder::new()
            .name(format!("rules-{name}"))
            .spawn(move || {
                let (interval, offset) = {
                    let g = g.lock().unwrap();
                    let interval = g.interval(&me.config.eval).as_millis().max(1) as i64;
                    (interval, fnv(&g.key()) % interval as u64)
                };
                let mut next = (now_ms() - offset as i64).div_euclid(interval) * interval
                    + offset as i64
                    + interval;
                loop {
                    let wait = (next - now_ms()).max(0) as u64;
                    match rx.recv_timeout(Duration::from_millis(wait)) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                    me.eval_group(&g, next);
                    let now = now_ms();
                    next += interval;
                    if next <= now {
                        let missed = (now - next) / interval + 1;
                        tracing::warn!(group = %name, missed, "rule group evaluation missed iterations");
                        next += missed * interval;
                    }
                }
            })
            .expect("spawn a rule group thread");
        Running {
            group,
            _stop: tx,
        }
    }

    /// One evaluation of a group at `ts_ms`: rules, alerts handed to the notifier, restore after
    /// the second evaluation, state saved.
    pub fn eval_group(&self, g: &Mutex<GroupState>, ts_ms: i64) {
        let env = Env {
            query: Some(Arc::clone(&self.query)),
            time_ms: ts_ms,
            external_labels: self.config.eval.external_labels.clone(),
            external_url: self.config.eval.external_url.clone(),
        };
        let mut g = g.lock().unwrap();
        let alerts = g.eval(ts_ms, &*self.query, &*self.writer, &self.config.eval, &env);
        if g.iterations == 2 {
            g.restore(&self.restored, ts_ms, &self.config.eval);
        }
        if let (Some(n), false) = (&self.notify, alerts.is_empty()) {
            n.send(alerts);
        }
        if let Some(dir) = &self.config.data_dir {
            if g.iterations % MODEL_SAVE_EVERY == 0 {
                if let Err(e) = save_models(&g, dir) {
                    tracing::warn!(group = %g.group.name, error = %e, "could not save the baseline models");
                }
            }
            let mut saved = self.saved.lock().unwrap();
            saved.saved_at_ms = ts_ms;
            g.save_into(&mut saved);
            if let Err(e) = write_atomic(&dir.join("rules-state.json"), &saved) {
                tracing::warn!(error = %e, "could not save the rules' state");
            }
        }
    }

    fn groups(&self) -> Vec<GroupState> {
        self.running
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.group.lock().unwrap().clone())
            .collect()
    }

    /// `/api/v1/rules`' `data`; `type=alert|record` filters (any other type is an error).
    pub fn rules_json(&self, params: &[(String, String)]) -> Result<Value, String> {
        let mut want_alert = true;
        let mut want_record = true;
        for (k, v) in params {
            if k == "type" {
                match v.as_str() {
                    "alert" => want_record = false,
                    "record" => want_alert = false,
                    "" => {}
                    other => return Err(format!("not supported value {other:?}")),
                }
            }
        }
        let groups = self
            .groups()
            .iter()
            .map(|g| group_json(g, &self.config.eval, want_alert, want_record))
            .collect::<Vec<_>>();
        Ok(json!({ "groups": groups }))
    }

    /// `/api/v1/alerts`' `data`: pending and firing alerts.
    pub fn alerts_json(&self) -> Value {
        let mut alerts = Vec::new();
        for g in self.groups() {
            for r in &g.rules {
                alerts.extend(r.alerts.values().filter(|a| a.state != State::Inactive).map(alert_json));
            }
        }
        json!({ "alerts": alerts })
    }

    /// Self-metrics in the Prometheus text format: evaluations and failures per rule, and
    /// whether the last reload worked.
    pub fn metrics_text(&self) -> String {
        let groups = self.groups();
        let mut out = String::new();
        let mut w = Writer::new(&mut out, Format::Text);
        type Get = fn(&RuleState) -> u64;
        let families: [(&str, &str, Get); 2] = [
            ("vigil_rule_evaluations_total", "Rule evaluations.", |r| r.evaluations),
            (
                "vigil_rule_evaluation_failures_total",
                "Rule evaluations that failed.",
                |r| r.failures,
            ),
        ];
        for (name, help, get) in families {
            w.header(name, Kind::Counter, help);
            for g in &groups {
                let group = g.key();
                for r in &g.rules {
                    let labels = [("rule_group", group.as_str()), ("rule", r.rule.name())];
                    w.sample(name, &labels, get(r));
                }
            }
        }
        let ok = self.last_reload.read().unwrap().is_ok();
        w.gauge(
            "vigil_rules_last_reload_successful",
            "Whether the last rule reload succeeded.",
            u64::from(ok),
        );
        out
    }

    /// The last reload's error, if it failed.
    pub fn last_reload_error(&self) -> Option<String> {
        self.last_reload.read().unwrap().clone().err()
    }
}

/// Baseline models are saved every this many evaluations of their group, and at shutdown.
const MODEL_SAVE_EVERY: u64 = 10;

fn models_path(g: &GroupState, dir: &std::path::Path) -> PathBuf {
    dir.join("baselines").join(format!("{:016x}.bin", fnv(&g.key())))
}

/// Writes the group's baseline models: per rule `name`, per series `labels` (JSON) and the
/// model's bytes, each length-prefixed (u32, little endian).
fn save_models(g: &GroupState, dir: &std::path::Path) -> std::io::Result<()> {
    if g.rules.iter().all(|r| r.models.is_empty()) {
        return Ok(());
    }
    let mut out = Vec::new();
    let put = |b: &[u8], out: &mut Vec<u8>| {
        out.extend((b.len() as u32).to_le_bytes());
        out.extend(b);
    };
    for r in g.rules.iter().filter(|r| !r.models.is_empty()) {
        put(r.rule.name().as_bytes(), &mut out);
        put(&(r.models.len() as u32).to_le_bytes(), &mut out);
        for (labels, m) in &r.models {
            put(&serde_json::to_vec(labels)?, &mut out);
            put(&m.to_bytes(), &mut out);
        }
    }
    let path = models_path(g, dir);
    std::fs::create_dir_all(path.parent().expect("baselines dir"))?;
    let tmp = path.with_extension("bin.tmp");
    std::fs::write(&tmp, out)?;
    std::fs::rename(tmp, path)
}

/// Loads models saved by [`save_models`] into the group's baseline rules of the same name; a
/// model saved under another configuration or unreadable is dropped (it is learned again).
fn load_models(g: &mut GroupState, dir: &std::path::Path) {
    let Ok(bytes) = std::fs::read(models_path(g, dir)) else {
        return;
    };
    let mut pos = 0;
    let take = |pos: &mut usize| -> Option<Vec<u8>> {
        let n = u32::from_le_bytes(bytes.get(*pos..*pos + 4)?.try_into().ok()?) as usize;
        let v = bytes.get(*pos + 4..*pos + 4 + n)?.to_vec();
        *pos += 4 + n;
        Some(v)
    };
    let mut loaded = 0;
    while pos < bytes.len() {
        let (Some(name), Some(count)) = (take(&mut pos), take(&mut pos)) else {
            break;
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        let count = u32::from_le_bytes(count.try_into().unwrap_or([0; 4]));
        let mut rule = g.rules.iter_mut().find(|r| r.rule.name() == name);
        for _ in 0..count {
            let (Some(labels), Some(model)) = (take(&mut pos), take(&mut pos)) else {
                break;
            };
            let Some(r) = rule.as_deref_mut() else { continue };
            let RuleKind::Alerting { baseline: Some(config), .. } = &r.rule.kind else {
                continue;
            };
            let (Ok(labels), Ok(m)) = (
                serde_json::from_slice(&labels),
                crate::anomaly::Baseline::from_bytes(config, &model),
            ) else {
                continue;
            };
            r.models.insert(labels, m);
            loaded += 1;
        }
    }
    tracing::info!(group = %g.group.name, models = loaded, "baseline models loaded");
}

/// FNV-1a 64 of `s` (stable across builds: baseline file names and evaluation offsets).
fn fnv(s: &str) -> u64 {
    use std::hash::Hasher;
    let mut h = fnv::FnvHasher::default();
    h.write(s.as_bytes());
    h.finish()
}

fn write_atomic(path: &std::path::Path, saved: &SavedState) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(saved)?)?;
    std::fs::rename(tmp, path)
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`, as the API prints alert values.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let s = format!("{v:e}");
    let (m, e) = s.split_once('e').expect("exponent");
    let e: i32 = e.parse().expect("integer exponent");
    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
}

/// RFC 3339 with nanoseconds as Go prints `time.Time` in JSON; Go's zero time before any
/// evaluation.
fn time_json(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => super::eval::ms_to_time(ms).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

fn alert_json(a: &super::eval::ActiveAlert) -> Value {
    let mut v = json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": time_json(Some(a.active_at_ms)),
        "value": format_value(a.value),
    });
    if let Some(k) = a.keep_firing_since_ms {
        v["keepFiringSince"] = json!(time_json(Some(k)));
    }
    v
}

/// The expression as Prometheus shows it: parsed and printed again.
fn query_string(expr: &str) -> String {
    promql_parser::parser::parse(expr)
        .map(|e| e.to_string())
        .unwrap_or_else(|_| expr.to_string())
}

fn group_json(g: &GroupState, opts: &EvalOptions, want_alert: bool, want_record: bool) -> Value {
    let mut rules = Vec::new();
    for r in &g.rules {
        let mut v = match &r.rule.kind {
            RuleKind::Alerting {
                name,
                hold,
                keep_firing_for,
                annotations,
                ..
            } => {
                if !want_alert {
                    continue;
                }
                json!({
                    "state": r.state().as_str(),
                    "name": name,
                    "query": query_string(&r.rule.expr),
                    "duration": go_float(hold.as_secs_f64()),
                    "keepFiringFor": go_float(keep_firing_for.as_secs_f64()),
                    "labels": labels_with_group(&g.group.labels, &r.rule.labels),
                    "annotations": annotations,
                    "alerts": r.alerts.values().filter(|a| a.state != State::Inactive).map(alert_json).collect::<Vec<_>>(),
                    "type": "alerting",
                })
            }
            RuleKind::Recording { name } => {
                if !want_record {
                    continue;
                }
                let mut v = json!({
                    "name": name,
                    "query": query_string(&r.rule.expr),
                    "type": "recording",
                });
                let labels = labels_with_group(&g.group.labels, &r.rule.labels);
                if !labels.is_empty() {
                    v["labels"] = json!(labels);
                }
                v
            }
        };
        v["health"] = json!(r.health.as_str());
        if let (Health::Err, Some(e)) = (r.health, &r.last_error) {
            v["lastError"] = json!(e);
        }
        v["evaluationTime"] = go_float(r.eval_seconds);
        v["lastEvaluation"] = json!(time_json(r.last_eval_ms));
        rules.push(v);
    }
    json!({
        "name": g.group.name,
        "file": g.group.file,
        "rules": rules,
        "interval": go_float(g.interval(opts).as_secs_f64()),
        "limit": g.group.limit,
        "evaluationTime": go_float(g.eval_seconds),
        "lastEvaluation": time_json(g.last_eval_ms),
    })
}

/// A float as Go's encoding/json writes it: integral values without a fraction (`0`, `60`).
fn go_float(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        json!(v as i64)
    } else {
        json!(v)
    }
}

fn labels_with_group(
    group: &BTreeMap<String, String>,
    rule: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut l = group.clone();
    l.extend(rule.iter().map(|(k, v)| (k.clone(), v.clone())));
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_models_survive_a_restart() {
        use crate::rules::offline::MemQuery;
        let f = crate::rules::file::parse("r.yml", "groups:\n- name: g\n  rules:\n  - alert: A\n    baseline: {expr: value}\n").unwrap();
        let store = MemQuery::default();
        let mut g = GroupState::new(f.groups[0].clone());
        for i in 0..50i64 {
            for (inst, v) in [("a", 1.0), ("b", 5.0)] {
                store.add(&[("__name__".to_string(), "value".to_string()), ("i".to_string(), inst.to_string())].into(), i * 60_000, v + (i % 3) as f64);
            }
            g.eval(i * 60_000, &store, &store, &EvalOptions::default(), &Env::default());
        }
        let dir = tempfile::tempdir().unwrap();
        save_models(&g, dir.path()).unwrap();
        let mut fresh = GroupState::new(f.groups[0].clone());
        load_models(&mut fresh, dir.path());
        assert_eq!(fresh.rules[0].models.len(), 2);
        for (l, m) in &g.rules[0].models {
            assert_eq!(fresh.rules[0].models[l].to_bytes(), m.to_bytes());
        }
    }

    #[test]
    fn values_as_go_formats_them() {
        assert_eq!(format_value(1.0), "1e+00");
        assert_eq!(format_value(0.85), "8.5e-01");
        assert_eq!(format_value(123456.0), "1.23456e+05");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
    }
}
