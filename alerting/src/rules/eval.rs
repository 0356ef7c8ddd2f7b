//! One rule group's evaluation at a given time: recording rules, the alert state machine
//! (inactive → pending → firing, `for`, `keep_firing_for`, resolved retention), `ALERTS` and
//! `ALERTS_FOR_STATE`, and which alerts are due to be sent. Time is a parameter, so the same
//! code runs in real time (the manager), in virtual time (`vigil rules test|replay`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::alert::Alert;
use crate::query::{Query, Sample};

use super::file::{Group, Rule, RuleKind};
use super::models;
use super::template::{self, Env};

/// A sample with its full labels (`__name__` included) to write into the store.
pub type Labels = BTreeMap<String, String>;

/// Prometheus's staleness marker, written when a recorded or `ALERTS` series disappears.
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

/// Where recording rules and `ALERTS`/`ALERTS_FOR_STATE` are written.
pub trait SeriesWriter: Send + Sync {
    /// Appends samples `(labels incl. __name__, t_ms, value)`; a value of [`STALE_NAN`] ends a series.
    fn write(&self, samples: Vec<(Labels, i64, f64)>) -> Result<(), String>;
}

/// A writer that drops everything (when the store cannot take series, e.g. a remote query API).
pub struct NoWriter;

impl SeriesWriter for NoWriter {
    fn write(&self, _: Vec<(Labels, i64, f64)>) -> Result<(), String> {
        Ok(())
    }
}

/// How long resolved alerts are kept (and re-sent as resolved).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// Settings shared by every group (Prometheus's `--rules.*` flags and global config).
#[derive(Clone)]
pub struct EvalOptions {
    pub default_interval: Duration,
    pub resend_delay: Duration,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
    /// `--rules.alert.for-grace-period` (10m).
    pub for_grace_period: Duration,
    /// `--rules.alert.for-outage-tolerance` (1h).
    pub for_outage_tolerance: Duration,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            default_interval: Duration::from_secs(60),
            resend_delay: Duration::from_secs(60),
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            for_grace_period: Duration::from_secs(600),
            for_outage_tolerance: Duration::from_secs(3600),
        }
    }
}

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Inactive,
    Pending,
    Firing,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Inactive => "inactive",
            State::Pending => "pending",
            State::Firing => "firing",
        }
    }
}

/// One alert a rule tracks.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ActiveAlert {
    pub labels: Labels,
    pub annotations: Labels,
    pub state: State,
    pub value: f64,
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub last_sent_at_ms: Option<i64>,
    pub valid_until_ms: i64,
    pub keep_firing_since_ms: Option<i64>,
}

/// A rule's health as `/api/v1/rules` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// A rule with what its evaluations left behind.
#[derive(Debug, Clone)]
pub struct RuleState {
    pub rule: Rule,
    /// Alerts by final label set (alerting rules only).
    pub alerts: BTreeMap<Labels, ActiveAlert>,
    pub health: Health,
    pub last_error: Option<String>,
    pub last_eval_ms: Option<i64>,
    pub eval_seconds: f64,
    pub evaluations: u64,
    pub failures: u64,
    /// Series written by the previous evaluation (for stale markers).
    written: HashSet<Labels>,
    /// `baseline:` rules: one model per series (labels without `__name__`).
    pub models: HashMap<Labels, crate::anomaly::Baseline>,
}

impl RuleState {
    pub fn new(rule: Rule) -> RuleState {
        RuleState {
            rule,
            alerts: BTreeMap::new(),
            health: Health::Unknown,
            last_error: None,
            last_eval_ms: None,
            eval_seconds: 0.0,
            evaluations: 0,
            failures: 0,
            written: HashSet::new(),
            models: HashMap::new(),
        }
    }

    /// The rule's state: the highest of its alerts'.
    pub fn state(&self) -> State {
        self.alerts
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(State::Inactive)
    }
}

/// A group with its rules' state.
#[derive(Debug, Clone)]
pub struct GroupState {
    pub group: Group,
    pub rules: Vec<RuleState>,
    pub last_eval_ms: Option<i64>,
    pub eval_seconds: f64,
    /// Evaluations so far (the `for` state is restored after the second).
    pub iterations: u64,
}

impl GroupState {
    pub fn new(group: Group) -> GroupState {
        let rules = group.rules.iter().cloned().map(RuleState::new).collect();
        GroupState {
            group,
            rules,
            last_eval_ms: None,
            eval_seconds: 0.0,
            iterations: 0,
        }
    }

    /// `file;name`, Prometheus's group key.
    pub fn key(&self) -> String {
        format!("{};{}", self.group.file, self.group.name)
    }

    pub fn interval(&self, opts: &EvalOptions) -> Duration {
        self.group.interval.unwrap_or(opts.default_interval)
    }

    /// Takes over the state of the same rules (same kind, name, labels and expression) from a
    /// group of the previous rule set, as Prometheus's `CopyState` does on reload.
    pub fn copy_state(&mut self, old: &GroupState) {
        self.last_eval_ms = old.last_eval_ms;
        self.iterations = old.iterations;
        let mut used = vec![false; old.rules.len()];
        for r in &mut self.rules {
            if let Some((i, o)) = old
                .rules
                .iter()
                .enumerate()
                .find(|(i, o)| !used[*i] && o.rule == r.rule)
            {
                used[i] = true;
                *r = o.clone();
            }
        }
    }

    /// Evaluates every rule at `ts_ms`, in file order, writing recorded and `ALERTS` series and
    /// returning the alerts due to be sent.
    pub fn eval(
        &mut self,
        ts_ms: i64,
        query: &dyn Query,
        writer: &dyn SeriesWriter,
        opts: &EvalOptions,
        env: &Env,
    ) -> Vec<Alert> {
        let started = Instant::now();
        let interval = self.interval(opts);
        let query_ts = ts_ms - self.group.query_offset.as_millis() as i64;
        let mut to_send = Vec::new();
        for r in &mut self.rules {
            let rule_started = Instant::now();
            let result = eval_rule(r, &self.group, ts_ms, query_ts, interval, query, env);
            let (samples, err) = match result {
                Ok(samples) => (samples, None),
                Err(e) => (Vec::new(), Some(e)),
            };
            // Stale markers for series of the previous evaluation that are gone now.
            let now_written: HashSet<Labels> = samples.iter().map(|(l, _, _)| l.clone()).collect();
            let mut out = samples;
            for gone in r.written.difference(&now_written) {
                out.push((gone.clone(), ts_ms, STALE_NAN));
            }
            r.written = now_written;
            let write_err = if out.is_empty() { Ok(()) } else { writer.write(out) };
            r.evaluations += 1;
            r.last_eval_ms = Some(ts_ms);
            match err.or(write_err.err().map(|e| format!("writing results: {e}"))) {
                Some(e) => {
                    r.failures += 1;
                    r.health = Health::Err;
                    tracing::warn!(group = %self.group.name, rule = %r.rule.name(), error = %e, "rule evaluation failed");
                    r.last_error = Some(e);
                }
                None => {
                    r.health = Health::Ok;
                    r.last_error = None;
                }
            }
            to_send.extend(due_alerts(r, ts_ms, interval, opts));
            r.eval_seconds = rule_started.elapsed().as_secs_f64();
        }
        self.iterations += 1;
        self.last_eval_ms = Some(ts_ms);
        self.eval_seconds = started.elapsed().as_secs_f64();
        to_send
    }
}

/// The final labels of a rule's output: sample labels, then group and rule labels, then the
/// name (`alertname` for alerts, `__name__` for recorded series).
fn eval_rule(
    r: &mut RuleState,
    group: &Group,
    ts_ms: i64,
    query_ts: i64,
    interval: Duration,
    query: &dyn Query,
    env: &Env,
) -> Result<Vec<(Labels, i64, f64)>, String> {
    match &r.rule.kind {
        RuleKind::Recording { name } => {
            let samples = query.instant(&r.rule.expr, query_ts).map_err(|e| e.0)?;
            let mut seen = HashSet::new();
            let mut out = Vec::with_capacity(samples.len());
            for Sample { mut labels, value } in samples {
                for (k, v) in group.labels.iter().chain(&r.rule.labels) {
                    set_or_remove(&mut labels, k, v);
                }
                labels.insert("__name__".into(), name.clone());
                if !seen.insert(labels.clone()) {
                    return Err(
                        "vector contains metrics with the same labelset after applying rule labels"
                            .into(),
                    );
                }
                out.push((labels, query_ts, value));
            }
            if group.limit > 0 && out.len() > group.limit {
                return Err(format!(
                    "exceeded limit of {} with {} series",
                    group.limit,
                    out.len()
                ));
            }
            Ok(out)
        }
        RuleKind::Alerting {
            name,
            hold,
            keep_firing_for,
            annotations,
            baseline,
            outlier,
        } => {
            // Series the models write besides ALERTS (bands, scores).
            let mut model_series = Vec::new();
            let samples = match (baseline, outlier) {
                (Some(config), _) => {
                    let samples = query.instant(&r.rule.expr, query_ts).map_err(|e| e.0)?;
                    let series = &mut model_series;
                    models::baseline(config, name, &mut r.models, samples, query_ts, series)?
                }
                (None, Some(config)) => {
                    models::outlier(config, name, query, query_ts, interval, &mut model_series)?
                }
                (None, None) => query.instant(&r.rule.expr, query_ts).map_err(|e| e.0)?,
            };
            let hold_ms = hold.as_millis() as i64;
            let keep_ms = keep_firing_for.as_millis() as i64;
            let env = Env {
                time_ms: query_ts,
                ..env.clone()
            };
            let mut current: BTreeMap<Labels, (f64, Labels)> = BTreeMap::new();
            for Sample { mut labels, value } in samples {
                labels.remove("__name__");
                let tmpl_labels = labels.clone();
                let expand = |k: &str, text: &str| {
                    template::expand_or_error(&format!("__alert_{name}_{k}"), text, &tmpl_labels, value, &env)
                };
                for (k, v) in group.labels.iter().chain(&r.rule.labels) {
                    let v = expand(k, v);
                    set_or_remove(&mut labels, k, &v);
                }
                labels.insert("alertname".into(), name.clone());
                let annots: Labels = annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), expand(k, v)))
                    .collect();
                if current.insert(labels, (value, annots)).is_some() {
                    return Err(
                        "vector contains metrics with the same labelset after applying alert labels"
                            .into(),
                    );
                }
            }
            for (labels, (value, annots)) in &current {
                match r.alerts.get_mut(labels) {
                    Some(a) if a.state != State::Inactive => {
                        a.value = *value;
                        a.annotations = annots.clone();
                    }
                    _ => {
                        r.alerts.insert(
                            labels.clone(),
                            ActiveAlert {
                                labels: labels.clone(),
                                annotations: annots.clone(),
                                state: State::Pending,
                                value: *value,
                                active_at_ms: ts_ms,
                                fired_at_ms: None,
                                resolved_at_ms: None,
                                last_sent_at_ms: None,
                                valid_until_ms: 0,
                                keep_firing_since_ms: None,
                            },
                        );
                    }
                }
            }
            let mut gone = Vec::new();
            for (labels, a) in r.alerts.iter_mut() {
                if current.contains_key(labels) {
                    a.keep_firing_since_ms = None;
                    continue;
                }
                if a.state == State::Firing && keep_ms > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts_ms);
                    if ts_ms - since < keep_ms {
                        continue;
                    }
                }
                match a.state {
                    State::Pending => gone.push(labels.clone()),
                    State::Firing => {
                        a.state = State::Inactive;
                        a.resolved_at_ms = Some(ts_ms);
                        a.keep_firing_since_ms = None;
                    }
                    State::Inactive => {
                        if a
                            .resolved_at_ms
                            .is_some_and(|t| ts_ms - t > RESOLVED_RETENTION_MS)
                        {
                            gone.push(labels.clone());
                        }
                    }
                }
            }
            for l in gone {
                r.alerts.remove(&l);
            }
            let mut out = Vec::new();
            let mut active = 0;
            for a in r.alerts.values_mut() {
                if a.state == State::Pending && ts_ms - a.active_at_ms >= hold_ms {
                    a.state = State::Firing;
                    a.fired_at_ms = Some(ts_ms);
                }
                if a.state == State::Inactive {
                    continue;
                }
                active += 1;
                let mut alerts = a.labels.clone();
                alerts.insert("__name__".into(), "ALERTS".into());
                alerts.insert("alertstate".into(), a.state.as_str().into());
                out.push((alerts, query_ts, 1.0));
                let mut for_state = a.labels.clone();
                for_state.insert("__name__".into(), "ALERTS_FOR_STATE".into());
                out.push((for_state, query_ts, a.active_at_ms as f64 / 1000.0));
            }
            if group.limit > 0 && active > group.limit {
                r.alerts.clear();
                return Err(format!(
                    "exceeded limit of {} with {} alerts",
                    group.limit, active
                ));
            }
            out.extend(model_series);
            Ok(out)
        }
    }
}

/// Sets a label, or removes it when the value is empty (an empty label is no label).
fn set_or_remove(labels: &mut Labels, k: &str, v: &str) {
    if v.is_empty() {
        labels.remove(k);
    } else {
        labels.insert(k.to_string(), v.to_string());
    }
}

/// Prometheus's `needsSending` and `sendAlerts`: firing alerts on their first firing evaluation
/// then every resend delay (strictly after), resolved ones at resolution and while retained.
fn due_alerts(r: &mut RuleState, ts_ms: i64, interval: Duration, opts: &EvalOptions) -> Vec<Alert> {
    let RuleKind::Alerting { .. } = r.rule.kind else {
        return Vec::new();
    };
    let resend_ms = opts.resend_delay.as_millis() as i64;
    let valid_for = 4 * interval.max(opts.resend_delay).as_millis() as i64;
    let url = generator_url(&opts.external_url, &r.rule.expr);
    let mut out = Vec::new();
    for a in r.alerts.values_mut() {
        if a.state == State::Pending {
            continue;
        }
        let due = match a.last_sent_at_ms {
            None => true,
            Some(sent) => {
                a.resolved_at_ms.is_some_and(|res| res > sent) || sent + resend_ms < ts_ms
            }
        };
        if !due {
            continue;
        }
        a.last_sent_at_ms = Some(ts_ms);
        a.valid_until_ms = ts_ms + valid_for;
        let mut labels = a.labels.clone();
        for (k, v) in &opts.external_labels {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        out.push(Alert {
            labels,
            annotations: a.annotations.clone(),
            starts_at: ms_to_time(a.fired_at_ms.unwrap_or(a.active_at_ms)),
            ends_at: ms_to_time(a.resolved_at_ms.unwrap_or(a.valid_until_ms)),
            generator_url: url.clone(),
        });
    }
    out
}

/// `<external URL>/graph?g0.expr=<expr>&g0.tab=1`.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    format!(
        "{}/graph?g0.expr={}&g0.tab=1",
        external_url.trim_end_matches('/'),
        template::query_escape(expr)
    )
}

pub fn ms_to_time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// What the state file keeps of a group's alerts to restore `for` after a restart.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SavedState {
    /// When the state was saved (the last evaluation before the restart).
    pub saved_at_ms: i64,
    /// `group key` → `rule name` → alerts (labels and `active_at`).
    pub groups: HashMap<String, HashMap<String, Vec<(Labels, i64)>>>,
}

impl GroupState {
    /// Adds this group's pending and firing alerts to `saved`.
    pub fn save_into(&self, saved: &mut SavedState) {
        let g = saved.groups.entry(self.key()).or_default();
        g.clear();
        for r in &self.rules {
            let alerts: Vec<(Labels, i64)> = r
                .alerts
                .values()
                .filter(|a| a.state != State::Inactive)
                .map(|a| (a.labels.clone(), a.active_at_ms))
                .collect();
            if !alerts.is_empty() {
                g.insert(r.rule.name().to_string(), alerts);
            }
        }
    }

    /// Prometheus's `RestoreForState`, from the saved state instead of `ALERTS_FOR_STATE`:
    /// for rules whose `for` is at least the grace period, pending alerts get their old
    /// `active_at` moved forward by the downtime, or fire after the grace period at the earliest.
    pub fn restore(&mut self, saved: &SavedState, now_ms: i64, opts: &EvalOptions) {
        let Some(g) = saved.groups.get(&self.key()) else {
            return;
        };
        let down_at = saved.saved_at_ms;
        if now_ms - down_at > opts.for_outage_tolerance.as_millis() as i64 {
            return;
        }
        let grace = opts.for_grace_period.as_millis() as i64;
        for r in &mut self.rules {
            let RuleKind::Alerting { name, hold, .. } = &r.rule.kind else {
                continue;
            };
            let hold_ms = hold.as_millis() as i64;
            if hold_ms < grace {
                continue;
            }
            let Some(old) = g.get(name) else { continue };
            for a in r.alerts.values_mut() {
                if a.state != State::Pending {
                    continue;
                }
                let Some((_, old_active)) = old.iter().find(|(l, _)| *l == a.labels) else {
                    continue;
                };
                let downtime = now_ms - down_at;
                let restored = old_active + downtime;
                a.active_at_ms = if restored + hold_ms - now_ms < grace {
                    now_ms + grace - hold_ms
                } else {
                    restored
                };
                tracing::info!(alert = %name, labels = ?a.labels, "restored the for state of a pending alert");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{QueryError, RangeSeries};
    use std::sync::Mutex;

    /// A query whose answer the test sets: `up == 0` returns the listed instances.
    struct Answer(Mutex<Vec<(&'static str, f64)>>);
    impl Query for Answer {
        fn instant(&self, _: &str, _: i64) -> Result<Vec<Sample>, QueryError> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .map(|(i, v)| Sample {
                    labels: [("__name__".to_string(), "up".to_string()), ("instance".to_string(), i.to_string())].into(),
                    value: *v,
                })
                .collect())
        }
        fn range(&self, _: &str, _: i64, _: i64, _: i64) -> Result<Vec<RangeSeries>, QueryError> {
            Ok(Vec::new())
        }
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(Labels, i64, f64)>>);
    impl SeriesWriter for Recorder {
        fn write(&self, s: Vec<(Labels, i64, f64)>) -> Result<(), String> {
            self.0.lock().unwrap().extend(s);
            Ok(())
        }
    }

    fn group(text: &str) -> GroupState {
        let f = super::super::file::parse("t.yml", text).unwrap();
        GroupState::new(f.groups.into_iter().next().unwrap())
    }

    const RULE: &str = "groups:\n- name: g\n  interval: 1m\n  rules:\n  - alert: Down\n    expr: up == 0\n    for: 2m\n    labels: {severity: page, inst: '{{ $labels.instance }}'}\n    annotations: {summary: '{{ $labels.instance }} is {{ $value }}'}\n";

    #[test]
    fn pending_then_firing_then_resolved_with_resend_timing() {
        let mut g = group(RULE);
        let q = Answer(Mutex::new(vec![("a", 0.0)]));
        let w = Recorder::default();
        let o = EvalOptions::default();
        let env = Env::default();
        let min = 60_000;
        // t=0: pending, nothing sent.
        assert!(g.eval(0, &q, &w, &o, &env).is_empty());
        assert_eq!(g.rules[0].state(), State::Pending);
        // t=1m: still pending (1m < 2m).
        assert!(g.eval(min, &q, &w, &o, &env).is_empty());
        // t=2m: firing, sent with startsAt = fired time, endsAt = ts + 4 × max(1m, 1m).
        let sent = g.eval(2 * min, &q, &w, &o, &env);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].starts_at, ms_to_time(2 * min));
        assert_eq!(sent[0].ends_at, ms_to_time(6 * min));
        assert_eq!(sent[0].labels["inst"], "a");
        assert_eq!(sent[0].labels["alertname"], "Down");
        assert_eq!(sent[0].annotations["summary"], "a is 0");
        // t=3m: last sent 2m + 1m is not strictly before 3m: not re-sent. t=4m: re-sent.
        assert!(g.eval(3 * min, &q, &w, &o, &env).is_empty());
        assert_eq!(g.eval(4 * min, &q, &w, &o, &env).len(), 1);
        // t=5m: gone → resolved, sent at once with endsAt = resolution time.
        q.0.lock().unwrap().clear();
        let sent = g.eval(5 * min, &q, &w, &o, &env);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].ends_at, ms_to_time(5 * min));
        // Re-sent while retained (15m), then dropped.
        assert!(g.eval(6 * min, &q, &w, &o, &env).is_empty());
        assert_eq!(g.eval(7 * min, &q, &w, &o, &env).len(), 1);
        for t in 8..=20 {
            g.eval(t * min, &q, &w, &o, &env);
        }
        assert_eq!(g.rules[0].alerts.len(), 1);
        g.eval(21 * min, &q, &w, &o, &env);
        assert!(g.rules[0].alerts.is_empty());
        // ALERTS went pending → firing, then a stale marker for each when resolved.
        let written = w.0.lock().unwrap();
        let alerts: Vec<_> = written
            .iter()
            .filter(|(l, _, _)| l["__name__"] == "ALERTS")
            .map(|(l, t, v)| (l["alertstate"].clone(), *t / min, v.to_bits() == STALE_NAN.to_bits()))
            .collect();
        assert_eq!(alerts[0], ("pending".to_string(), 0, false));
        assert!(alerts.contains(&("pending".to_string(), 2, true)));
        assert!(alerts.contains(&("firing".to_string(), 2, false)));
        assert!(alerts.contains(&("firing".to_string(), 5, true)));
        let for_state = written
            .iter()
            .find(|(l, _, _)| l["__name__"] == "ALERTS_FOR_STATE")
            .unwrap();
        assert_eq!(for_state.2, 0.0);
        assert!(!for_state.0.contains_key("alertstate"));
    }

    #[test]
    fn pending_alert_that_goes_away_is_never_sent() {
        let mut g = group(RULE);
        let q = Answer(Mutex::new(vec![("a", 0.0)]));
        let (w, o, env) = (Recorder::default(), EvalOptions::default(), Env::default());
        g.eval(0, &q, &w, &o, &env);
        q.0.lock().unwrap().clear();
        assert!(g.eval(60_000, &q, &w, &o, &env).is_empty());
        assert!(g.rules[0].alerts.is_empty());
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        let mut g = group("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    keep_firing_for: 2m\n");
        let q = Answer(Mutex::new(vec![("a", 0.0)]));
        let (w, o, env) = (Recorder::default(), EvalOptions::default(), Env::default());
        let min = 60_000;
        assert_eq!(g.eval(0, &q, &w, &o, &env).len(), 1); // for: 0 fires at once
        q.0.lock().unwrap().clear();
        g.eval(min, &q, &w, &o, &env);
        assert_eq!(g.rules[0].state(), State::Firing);
        assert_eq!(g.rules[0].alerts.values().next().unwrap().keep_firing_since_ms, Some(min));
        g.eval(2 * min, &q, &w, &o, &env);
        assert_eq!(g.rules[0].state(), State::Firing);
        g.eval(3 * min, &q, &w, &o, &env);
        assert_eq!(g.rules[0].state(), State::Inactive);
    }

    #[test]
    fn duplicate_labelsets_and_limit_are_rule_errors() {
        let mut g = group("groups:\n- name: g\n  limit: 1\n  rules:\n  - alert: A\n    expr: up == 0\n    labels: {instance: same}\n");
        let q = Answer(Mutex::new(vec![("a", 0.0), ("b", 0.0)]));
        let (w, o, env) = (Recorder::default(), EvalOptions::default(), Env::default());
        g.eval(0, &q, &w, &o, &env);
        assert_eq!(g.rules[0].health, Health::Err);
        assert!(g.rules[0].last_error.as_ref().unwrap().contains("same labelset after applying alert labels"));
        let mut g = group("groups:\n- name: g\n  limit: 1\n  rules:\n  - alert: A\n    expr: up == 0\n");
        g.eval(0, &q, &w, &o, &env);
        assert_eq!(g.rules[0].last_error.as_deref(), Some("exceeded limit of 1 with 2 alerts"));
        assert!(g.rules[0].alerts.is_empty());
        assert_eq!(g.rules[0].failures, 1);
    }

    #[test]
    fn recording_rules_write_named_series() {
        let mut g = group("groups:\n- name: g\n  rules:\n  - record: job:down\n    expr: up == 0\n    labels: {team: x}\n");
        let q = Answer(Mutex::new(vec![("a", 0.0)]));
        let (w, o, env) = (Recorder::default(), EvalOptions::default(), Env::default());
        g.eval(1000, &q, &w, &o, &env);
        let written = w.0.lock().unwrap();
        assert_eq!(written[0].0["__name__"], "job:down");
        assert_eq!(written[0].0["team"], "x");
        assert_eq!(written[0].1, 1000);
    }

    #[test]
    fn for_state_restored_after_restart() {
        let rule = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    for: 30m\n";
        let o = EvalOptions::default();
        let q = Answer(Mutex::new(vec![("a", 0.0)]));
        let (w, env) = (Recorder::default(), Env::default());
        let min = 60_000;
        let mut before = group(rule);
        for t in 0..=10 {
            before.eval(t * min, &q, &w, &o, &env);
        }
        let mut saved = SavedState { saved_at_ms: 10 * min, ..Default::default() };
        before.save_into(&mut saved);
        // Last saved at 10m, restored at 16m: the 6 minutes down do not count.
        let mut after = group(rule);
        after.eval(15 * min, &q, &w, &o, &env);
        after.eval(16 * min, &q, &w, &o, &env);
        after.restore(&saved, 16 * min, &o);
        assert_eq!(after.rules[0].alerts.values().next().unwrap().active_at_ms, 6 * min);
        // Near the end of `for`: fires after the grace period (10m), not at once.
        let mut saved = SavedState { saved_at_ms: 25 * min, ..Default::default() };
        for t in 11..=25 {
            before.eval(t * min, &q, &w, &o, &env);
        }
        before.save_into(&mut saved);
        let mut after = group(rule);
        after.eval(26 * min, &q, &w, &o, &env);
        after.eval(27 * min, &q, &w, &o, &env);
        after.restore(&saved, 27 * min, &o);
        assert_eq!(after.rules[0].alerts.values().next().unwrap().active_at_ms, 27 * min + 10 * min - 30 * min);
    }
}
