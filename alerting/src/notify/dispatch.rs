//! Alertmanager's dispatcher and notification pipeline: aggregation groups per route and group
//! labels, `group_wait`/`group_interval`/`repeat_interval`, inhibition and silences at flush
//! time, dedup against the notification log, and every receiver's integrations at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::time::Instant;

use super::alerts::{sort_alerts, AlertStore, StoredAlert};
use super::config::{build_matchers, NotifyConfig};
use super::email::Email;
use super::labels::{fingerprint, labels_string, matches_all, Labels, Matcher};
use super::metrics::Metrics;
use super::route::RouteTree;
use super::silences::Silences;
use super::template::Data;
use super::webhook::Webhook;
use super::{retry, Error, SendError};
use crate::query::Query;

/// Shortest time a notification may take (Alertmanager's `minTimeout`).
const MIN_TIMEOUT: Duration = Duration::from_secs(10);

/// One receiver integration (`webhook_configs[i]`, `email_configs[i]`).
pub struct Integration {
    pub receiver: String,
    pub idx: usize,
    kind: Kind,
}

enum Kind {
    Webhook(Webhook),
    Email(Email),
}

impl Integration {
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Webhook(_) => "webhook",
            Kind::Email(_) => "email",
        }
    }

    fn send_resolved(&self) -> bool {
        match &self.kind {
            Kind::Webhook(w) => w.send_resolved,
            Kind::Email(e) => e.send_resolved,
        }
    }

    /// Sends one notification with retries until `deadline`.
    async fn notify(
        &self,
        metrics: &Metrics,
        group_key: &str,
        group_labels: &Labels,
        alerts: &[StoredAlert],
        external_url: &str,
        deadline: Instant,
    ) -> Result<(), SendError> {
        let now = Utc::now();
        let count = |outcome: &str| metrics.attempt(&self.receiver, self.name(), outcome);
        match &self.kind {
            Kind::Webhook(w) => {
                let (alerts, truncated) = if w.max_alerts > 0 && alerts.len() as u64 > w.max_alerts {
                    (&alerts[..w.max_alerts as usize], alerts.len() as u64 - w.max_alerts)
                } else {
                    (alerts, 0)
                };
                let data = Data::new(&self.receiver, group_labels, alerts, external_url, now);
                let body = Webhook::body(&data, group_key, truncated);
                retry(deadline, count, || w.http.post_json(&w.url, body.clone())).await
            }
            Kind::Email(e) => {
                let data = Data::new(&self.receiver, group_labels, alerts, external_url, now);
                let charts = e.charts(&data, now).await;
                for (fp, c) in &charts {
                    if let Err(err) = c {
                        tracing::warn!(receiver = %self.receiver, alert = %fp, error = %err, "e-mail chart not drawn");
                    }
                }
                let msg = e.message(&data, &charts).map_err(|msg| SendError {
                    retry: false,
                    outcome: "error",
                    msg,
                })?;
                let timeout = deadline.saturating_duration_since(Instant::now());
                retry(deadline, count, || e.send(msg.clone(), timeout)).await
            }
        }
    }
}

/// What was last notified for a group and integration (Alertmanager's nflog entry).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct LogEntry {
    firing: HashSet<u64>,
    resolved: HashSet<u64>,
    at: DateTime<Utc>,
}

/// How long notification log entries are kept (Alertmanager's `--data.retention`, 120h).
const NFLOG_RETENTION_HOURS: i64 = 120;

/// One entry of `nflog.json`.
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedEntry {
    group_key: String,
    receiver: String,
    integration: String,
    idx: usize,
    #[serde(flatten)]
    entry: LogEntry,
}

/// The notification log, kept in `nflog.json` when there is a data directory so that a
/// restart neither repeats a notification before `repeat_interval` nor a resolved one.
struct NfLog {
    path: Option<std::path::PathBuf>,
    entries: HashMap<LogKey, LogEntry>,
}

impl NfLog {
    /// Reads `dir/nflog.json`; entries older than the retention, or of an integration kind
    /// this version does not have, are dropped. An unreadable file is an error naming it.
    fn open(dir: Option<&std::path::Path>, now: DateTime<Utc>) -> Result<NfLog, String> {
        let path = dir.map(|d| d.join("nflog.json"));
        let mut entries = HashMap::new();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(bytes) => {
                    let saved: Vec<SavedEntry> = serde_json::from_slice(&bytes)
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                    for s in saved {
                        let kind = match s.integration.as_str() {
                            "webhook" => "webhook",
                            "email" => "email",
                            _ => continue,
                        };
                        if s.entry.at > now - chrono::Duration::hours(NFLOG_RETENTION_HOURS) {
                            entries.insert((s.group_key, s.receiver, kind, s.idx), s.entry);
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", p.display())),
            }
        }
        Ok(NfLog { path, entries })
    }

    fn get(&self, key: &LogKey) -> Option<LogEntry> {
        self.entries.get(key).cloned()
    }

    /// Records a notification and rewrites the file (atomically) if there is one.
    fn insert(&mut self, key: LogKey, entry: LogEntry) {
        self.entries.insert(key, entry);
        let Some(path) = &self.path else { return };
        let saved: Vec<SavedEntry> = self
            .entries
            .iter()
            .map(|((g, r, i, idx), e)| SavedEntry {
                group_key: g.clone(),
                receiver: r.clone(),
                integration: i.to_string(),
                idx: *idx,
                entry: e.clone(),
            })
            .collect();
        let tmp = path.with_extension("json.tmp");
        let res = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|b| {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&tmp, b)
            })
            .and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = res {
            tracing::warn!(path = %path.display(), error = %e, "could not save the notification log");
        }
    }
}

/// `DedupStage.needsUpdate`.
fn needs_update(
    entry: Option<&LogEntry>,
    firing: &HashSet<u64>,
    resolved: &HashSet<u64>,
    send_resolved: bool,
    repeat: Duration,
    now: DateTime<Utc>,
) -> bool {
    let Some(e) = entry else {
        return !firing.is_empty();
    };
    if !firing.is_subset(&e.firing) {
        return true;
    }
    if firing.is_empty() {
        return !e.firing.is_empty();
    }
    if send_resolved && !resolved.is_subset(&e.resolved) {
        return true;
    }
    e.at < now - chrono::Duration::from_std(repeat).unwrap_or(chrono::Duration::MAX)
}

/// The notification log's key: group key, receiver, integration and its index.
type LogKey = (String, String, &'static str, usize);

/// A compiled inhibition rule.
struct InhibitRule {
    source: Vec<Matcher>,
    target: Vec<Matcher>,
    equal: Vec<String>,
}

/// One aggregation group.
pub struct Group {
    pub route: usize,
    pub labels: Labels,
    pub key: String,
    id: (usize, u64),
    pub alerts: Mutex<BTreeMap<u64, StoredAlert>>,
    flush_now: tokio::sync::Notify,
    has_flushed: AtomicBool,
}

/// Routes, groups, receivers and the state they share.
pub struct Dispatcher {
    pub routes: RouteTree,
    pub receivers: BTreeMap<String, Vec<Arc<Integration>>>,
    inhibit: Vec<InhibitRule>,
    pub alerts: AlertStore,
    pub silences: Silences,
    nflog: Mutex<NfLog>,
    groups: Mutex<HashMap<(usize, u64), Arc<Group>>>,
    pub metrics: Metrics,
    pub external_url: String,
    pub resolve_timeout: chrono::Duration,
    stop: watch::Sender<bool>,
}

impl Dispatcher {
    /// `data_dir` keeps the notification log (`nflog.json`) across restarts.
    pub fn new(
        cfg: &NotifyConfig,
        silences: Silences,
        query: Option<Arc<dyn Query>>,
        data_dir: Option<&std::path::Path>,
    ) -> Result<Dispatcher, Error> {
        let nflog = NfLog::open(data_dir, Utc::now()).map_err(Error::NotificationLog)?;
        let routes = RouteTree::new(cfg.root()).map_err(Error::Invalid)?;
        let mut receivers = BTreeMap::new();
        for r in &cfg.receivers {
            let mut list = Vec::new();
            for (idx, w) in r.webhook_configs.iter().enumerate() {
                let kind = Kind::Webhook(Webhook::new(w, &cfg.global.http_config).map_err(|msg| {
                    Error::Receiver { receiver: r.name.clone(), integration: "webhook_configs", idx, msg }
                })?);
                list.push(Arc::new(Integration { receiver: r.name.clone(), idx, kind }));
            }
            for (idx, e) in r.email_configs.iter().enumerate() {
                let kind = Kind::Email(Email::new(e, &cfg.global, query.clone()).map_err(|msg| {
                    Error::Receiver { receiver: r.name.clone(), integration: "email_configs", idx, msg }
                })?);
                list.push(Arc::new(Integration { receiver: r.name.clone(), idx, kind }));
            }
            receivers.insert(r.name.clone(), list);
        }
        let mut inhibit = Vec::new();
        for (i, r) in cfg.inhibit_rules.iter().enumerate() {
            let at = |e: String| Error::Invalid(format!("inhibit_rules[{i}]: {e}"));
            inhibit.push(InhibitRule {
                source: build_matchers(&r.source_match, &r.source_match_re, &r.source_matchers).map_err(at)?,
                target: build_matchers(&r.target_match, &r.target_match_re, &r.target_matchers).map_err(at)?,
                equal: r.equal.clone(),
            });
        }
        Ok(Dispatcher {
            routes,
            receivers,
            inhibit,
            alerts: AlertStore::default(),
            silences,
            nflog: Mutex::new(nflog),
            groups: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            external_url: cfg.external_url.clone(),
            resolve_timeout: chrono::Duration::from_std(cfg.global.resolve_timeout.0)
                .unwrap_or(chrono::Duration::minutes(5)),
            stop: watch::channel(false).0,
        })
    }

    /// Stores alerts and hands them to the groups of every route they match. Must run inside
    /// the tokio runtime (new groups start a task).
    pub fn put(self: &Arc<Self>, alerts: Vec<StoredAlert>) {
        for a in alerts {
            let stored = self.alerts.put(a);
            for r in self.routes.matching(&stored.labels) {
                self.insert(r, stored.clone());
            }
        }
    }

    fn insert(self: &Arc<Self>, route: usize, a: StoredAlert) {
        let r = &self.routes.routes[route];
        let labels = r.group_labels(&a.labels);
        let id = (route, fingerprint(&labels));
        let mut groups = self.groups.lock().unwrap();
        let g = groups
            .entry(id)
            .or_insert_with(|| {
                let g = Arc::new(Group {
                    route,
                    key: format!("{}:{}", r.key, labels_string(&labels)),
                    labels,
                    id,
                    alerts: Mutex::new(BTreeMap::new()),
                    flush_now: tokio::sync::Notify::new(),
                    has_flushed: AtomicBool::new(false),
                });
                tokio::spawn(self.clone().run_group(g.clone()));
                g
            })
            .clone();
        let wait = chrono::Duration::from_std(r.group_wait).unwrap_or(chrono::Duration::MAX);
        let overdue = a.starts_at + wait < Utc::now();
        g.alerts.lock().unwrap().insert(a.fingerprint, a);
        if overdue && !g.has_flushed.load(Ordering::SeqCst) {
            g.flush_now.notify_one();
        }
    }

    /// Stops every group's task.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    async fn run_group(self: Arc<Self>, g: Arc<Group>) {
        let r = self.routes.routes[g.route].clone();
        let mut stop = self.stop.subscribe();
        let mut next = Instant::now() + r.group_wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = g.flush_now.notified(), if !g.has_flushed.load(Ordering::SeqCst) => {}
                _ = stop.changed() => return,
            }
            g.has_flushed.store(true, Ordering::SeqCst);
            next = Instant::now() + r.group_interval;
            let timeout = r.group_interval.max(MIN_TIMEOUT);
            self.flush(&g, Instant::now() + timeout).await;
            let mut groups = self.groups.lock().unwrap();
            if g.alerts.lock().unwrap().is_empty() {
                groups.remove(&g.id);
                return;
            }
        }
    }

    /// One flush: the group's alerts (firing ones with `endsAt` zeroed) through the pipeline;
    /// after success, resolved alerts not updated since are dropped from the group.
    async fn flush(self: &Arc<Self>, g: &Arc<Group>, deadline: Instant) {
        let now = Utc::now();
        let mut alerts: Vec<StoredAlert> = g.alerts.lock().unwrap().values().cloned().collect();
        for a in &mut alerts {
            if !a.resolved_at(now) {
                a.ends_at = None;
            }
        }
        sort_alerts(&mut alerts);
        if self.pipeline(g, alerts.clone(), deadline).await {
            let mut m = g.alerts.lock().unwrap();
            for a in &alerts {
                if a.resolved_at(now) && m.get(&a.fingerprint).map(|x| x.updated_at) == Some(a.updated_at) {
                    m.remove(&a.fingerprint);
                }
            }
        }
    }

    /// Inhibition and silences, then every integration of the route's receiver at once.
    async fn pipeline(self: &Arc<Self>, g: &Arc<Group>, alerts: Vec<StoredAlert>, deadline: Instant) -> bool {
        let now = Utc::now();
        // Source alerts for inhibition: the whole store, only when there are rules.
        let all = if self.inhibit.is_empty() { Vec::new() } else { self.alerts.list() };
        let alerts: Vec<StoredAlert> = alerts
            .into_iter()
            .filter(|a| self.inhibited_by(&a.labels, &all, now).is_none())
            .filter(|a| self.silences.muted_by(&a.labels, now).is_empty())
            .collect();
        if alerts.is_empty() {
            return true;
        }
        let r = &self.routes.routes[g.route];
        let Some(integrations) = self.receivers.get(&r.receiver) else {
            return true;
        };
        let alerts = Arc::new(alerts);
        let mut tasks = tokio::task::JoinSet::new();
        for i in integrations {
            let (d, i, g, alerts, repeat) = (self.clone(), i.clone(), g.clone(), alerts.clone(), r.repeat_interval);
            tasks.spawn(async move { d.notify_integration(&i, &g, &alerts, repeat, deadline).await });
        }
        let mut ok = true;
        while let Some(r) = tasks.join_next().await {
            ok &= r.unwrap_or(false);
        }
        ok
    }

    async fn notify_integration(
        &self,
        i: &Integration,
        g: &Group,
        alerts: &[StoredAlert],
        repeat: Duration,
        deadline: Instant,
    ) -> bool {
        let started = Instant::now();
        let now = Utc::now();
        let (firing, resolved): (Vec<&StoredAlert>, Vec<&StoredAlert>) =
            alerts.iter().partition(|a| !a.resolved_at(now));
        let firing_fps: HashSet<u64> = firing.iter().map(|a| a.fingerprint).collect();
        let resolved_fps: HashSet<u64> = resolved.iter().map(|a| a.fingerprint).collect();
        let key = (g.key.clone(), i.receiver.clone(), i.name(), i.idx);
        let entry = self.nflog.lock().unwrap().get(&key);
        if !needs_update(entry.as_ref(), &firing_fps, &resolved_fps, i.send_resolved(), repeat, now) {
            return true;
        }
        let to_send: Vec<StoredAlert> = if i.send_resolved() {
            alerts.to_vec()
        } else {
            firing.into_iter().cloned().collect()
        };
        if !to_send.is_empty() {
            let res = i
                .notify(&self.metrics, &g.key, &g.labels, &to_send, &self.external_url, deadline)
                .await;
            if let Err(e) = res {
                tracing::warn!(receiver = %i.receiver, integration = i.name(), idx = i.idx,
                    group = %g.key, error = %e.msg, "notification failed");
                return false;
            }
            self.metrics.latency.observe(started.elapsed().as_secs_f64());
        }
        self.nflog.lock().unwrap().insert(
            key,
            LogEntry { firing: firing_fps, resolved: resolved_fps, at: Utc::now() },
        );
        true
    }

    /// The fingerprint of a firing alert that inhibits `labels`, if any (`Inhibitor.Mutes`).
    pub fn inhibited_by(&self, labels: &Labels, all: &[StoredAlert], now: DateTime<Utc>) -> Option<u64> {
        for r in &self.inhibit {
            if !matches_all(&r.target, labels) {
                continue;
            }
            let two_sided = matches_all(&r.source, labels);
            for a in all {
                if a.resolved_at(now) || !matches_all(&r.source, &a.labels) {
                    continue;
                }
                if r.equal.iter().any(|n| a.labels.get(n) != labels.get(n)) {
                    continue;
                }
                if two_sided && matches_all(&r.target, &a.labels) {
                    continue;
                }
                return Some(a.fingerprint);
            }
        }
        None
    }

    /// The receivers an alert goes to.
    pub fn receivers_of(&self, labels: &Labels) -> Vec<String> {
        let mut names: Vec<String> = self
            .routes
            .matching(labels)
            .into_iter()
            .map(|r| self.routes.routes[r].receiver.clone())
            .collect();
        names.dedup();
        names
    }

    /// Every group: labels, receiver and alerts.
    pub fn groups(&self) -> Vec<(Labels, String, Vec<StoredAlert>)> {
        let groups: Vec<Arc<Group>> = self.groups.lock().unwrap().values().cloned().collect();
        groups
            .into_iter()
            .map(|g| {
                let alerts = g.alerts.lock().unwrap().values().cloned().collect();
                (g.labels.clone(), self.routes.routes[g.route].receiver.clone(), alerts)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u64]) -> HashSet<u64> {
        v.iter().copied().collect()
    }

    #[test]
    fn dedup_follows_alertmanager() {
        let now = Utc::now();
        let h = Duration::from_secs(3600);
        assert!(needs_update(None, &set(&[1]), &set(&[]), true, h, now));
        assert!(!needs_update(None, &set(&[]), &set(&[1]), true, h, now));
        let e = LogEntry { firing: set(&[1, 2]), resolved: set(&[]), at: now };
        assert!(!needs_update(Some(&e), &set(&[1]), &set(&[]), false, h, now));
        assert!(needs_update(Some(&e), &set(&[1]), &set(&[2]), true, h, now));
        assert!(!needs_update(Some(&e), &set(&[1]), &set(&[2]), false, h, now));
        assert!(needs_update(Some(&e), &set(&[3]), &set(&[]), false, h, now));
        assert!(needs_update(Some(&e), &set(&[]), &set(&[1, 2]), false, h, now));
        let old = LogEntry { firing: set(&[1]), resolved: set(&[]), at: now - chrono::Duration::hours(2) };
        assert!(needs_update(Some(&old), &set(&[1]), &set(&[]), false, h, now));
        let none_firing = LogEntry { firing: set(&[]), resolved: set(&[1]), at: now };
        assert!(!needs_update(Some(&none_firing), &set(&[]), &set(&[1]), true, h, now));
    }

    #[test]
    fn notification_log_survives_a_restart_and_forgets_old_entries() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let mut log = NfLog::open(Some(dir.path()), now).unwrap();
        let entry = LogEntry { firing: set(&[1]), resolved: set(&[2]), at: now };
        let key: LogKey = ("{}:{alertname=\"A\"}".into(), "hook".into(), "webhook", 0);
        log.insert(key.clone(), entry.clone());
        let old: LogKey = ("{}:{alertname=\"B\"}".into(), "hook".into(), "email", 1);
        log.insert(old.clone(), LogEntry { at: now - chrono::Duration::hours(121), ..entry.clone() });
        let again = NfLog::open(Some(dir.path()), now).unwrap();
        assert_eq!(again.get(&key), Some(entry));
        assert_eq!(again.get(&old), None);
        std::fs::write(dir.path().join("nflog.json"), "[{").unwrap();
        let e = NfLog::open(Some(dir.path()), now).err().unwrap();
        assert!(e.contains("nflog.json: "), "{e}");
    }
}
