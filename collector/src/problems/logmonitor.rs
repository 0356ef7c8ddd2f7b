//! System log monitor: feeds watcher lines through the rules, updates conditions and events
//! exactly as node-problem-detector's log monitor does.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};

use super::config::{parse_go_duration, DefaultCondition, LogRule, RuleKind, SystemLogConfig};
use super::matcher::{LogLine, Matcher, RuleMatch};
use super::store::{Condition, Severity, Status, Store};
use super::watch::{self as watchers, Common};

/// Conditions at start: every default condition with status False.
pub(crate) fn initial_conditions(
    defaults: &[DefaultCondition],
    now: DateTime<Utc>,
) -> Vec<Condition> {
    defaults
        .iter()
        .map(|d| Condition {
            kind: d.kind.clone(),
            status: Status::False,
            last_heartbeat_time: now,
            last_transition_time: now,
            reason: d.reason.clone(),
            message: d.message.clone(),
        })
        .collect()
}

/// Registers the monitor's default conditions and creates its metric series at 0.
pub(crate) fn initialize(store: &Store, cfg: &SystemLogConfig) {
    store.register(&cfg.source, initial_conditions(&cfg.conditions, Utc::now()));
    store.line_counter(&cfg.source);
    store.watch_stats(&cfg.source);
    if cfg.metrics_reporting.unwrap_or(true) {
        for rule in &cfg.rules {
            if rule.kind == RuleKind::Permanent {
                store.set_gauge(&rule.condition, &rule.reason, false);
            }
            store.increment_counter(&rule.reason, 0);
        }
    }
}

/// The matching and state half of a log monitor (no I/O), fed one line at a time.
pub struct LogMonitor {
    source: String,
    rules: Vec<LogRule>,
    matcher: Matcher,
    conditions: Vec<Condition>,
    metrics: bool,
    slot: usize,
    store: Arc<Store>,
    lines: Arc<std::sync::atomic::AtomicU64>,
}

impl LogMonitor {
    /// Builds the monitor for a validated config; `slot` is its place in the store.
    pub fn new(
        cfg: &SystemLogConfig,
        slot: usize,
        store: Arc<Store>,
    ) -> Result<Self, regex::Error> {
        let patterns: Vec<&str> = cfg.rules.iter().map(|r| r.pattern.as_str()).collect();
        Ok(LogMonitor {
            source: cfg.source.clone(),
            rules: cfg.rules.clone(),
            matcher: Matcher::new(&patterns, cfg.buffer_lines())?,
            conditions: initial_conditions(&cfg.conditions, Utc::now()),
            metrics: cfg.metrics_reporting.unwrap_or(true),
            slot,
            lines: store.line_counter(&cfg.source),
            store,
        })
    }

    /// Handles one line: every matching rule produces its event or condition change.
    pub fn process(&mut self, line: LogLine) {
        self.lines
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        for m in self.matcher.push(line) {
            self.apply(m);
        }
    }

    fn apply(&mut self, m: RuleMatch) {
        let rule = &self.rules[m.rule];
        // node-problem-detector: the first matched line's timestamp, the lines joined by "\n".
        let timestamp = m.lines[0].timestamp;
        let mut message = m
            .lines
            .iter()
            .map(|l| l.message.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        if !rule.pattern_generated_message_suffix.is_empty() {
            message = format!("{message}; {}", rule.pattern_generated_message_suffix);
        }
        match rule.kind {
            RuleKind::Temporary => {
                tracing::info!(source = %self.source, reason = %rule.reason, message = %message, "problem event");
                self.store.push_event(
                    &self.source,
                    Severity::Warn,
                    timestamp,
                    &rule.reason,
                    &message,
                );
                if self.metrics {
                    self.store.increment_counter(&rule.reason, 1);
                }
            }
            RuleKind::Permanent => {
                let Some(cond) = self
                    .conditions
                    .iter_mut()
                    .find(|c| c.kind == rule.condition)
                else {
                    return;
                };
                let changed = cond.status == Status::False || cond.reason != rule.reason;
                if changed {
                    cond.last_transition_time = timestamp;
                    cond.message = message.clone();
                    tracing::info!(source = %self.source, condition = %cond.kind, reason = %rule.reason, "condition is now True");
                    self.store.push_condition_change(
                        &self.source,
                        &cond.kind,
                        Status::True,
                        &rule.reason,
                        &message,
                        timestamp,
                    );
                    if self.metrics {
                        self.store.increment_counter(&rule.reason, 1);
                    }
                }
                cond.status = Status::True;
                cond.reason = rule.reason.clone();
                if self.metrics {
                    self.store.set_gauge(&cond.kind, &cond.reason, true);
                }
                self.store.set_conditions(self.slot, &self.conditions);
            }
        }
    }
}

/// Starts the watcher of the config and feeds its lines to the monitor until shutdown.
pub(crate) async fn run(
    file: PathBuf,
    cfg: SystemLogConfig,
    slot: usize,
    store: Arc<Store>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stats = store.watch_stats(&cfg.source);
    let mut monitor = match LogMonitor::new(&cfg, slot, store) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(file = %file.display(), error = %e, "cannot compile rules");
            return;
        }
    };
    let now = Utc::now();
    let lookback = parse_go_duration(&cfg.lookback).unwrap_or_default();
    let delay = parse_go_duration(&cfg.delay).unwrap_or_default();
    let uptime = watchers::uptime().unwrap_or_default();
    let common = Common {
        start: watchers::start_time(now, uptime, lookback, delay),
        skip_list: cfg.skip_list.clone(),
        stats,
    };
    let (tx, mut rx) = mpsc::channel::<LogLine>(1024);
    let path = PathBuf::from(&cfg.log_path);
    let watcher_shutdown = shutdown.clone();
    let watcher = match cfg.plugin.as_str() {
        "filelog" => {
            let pc = &cfg.plugin_config;
            let translator = match watchers::filelog::Translator::new(
                &pc["timestamp"],
                &pc["message"],
                &pc["timestampFormat"],
            ) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(file = %file.display(), error = %e, "invalid filelog regex");
                    return;
                }
            };
            tokio::spawn(watchers::filelog::run(
                path,
                translator,
                common,
                tx,
                watcher_shutdown,
            ))
        }
        "kmsg" => {
            let path = if cfg.log_path.is_empty() {
                PathBuf::from("/dev/kmsg")
            } else {
                path
            };
            let boot = now - chrono::Duration::from_std(uptime).unwrap_or_default();
            tokio::spawn(watchers::kmsg::run(
                path,
                boot,
                common,
                tx,
                watcher_shutdown,
            ))
        }
        "journald" => {
            let source = cfg.plugin_config.get("source").cloned().unwrap_or_default();
            tokio::spawn(watchers::journald::run(
                path,
                source,
                common,
                tx,
                watcher_shutdown,
            ))
        }
        other => {
            tracing::error!(file = %file.display(), plugin = other, "unknown plugin");
            return;
        }
    };
    tracing::info!(file = %file.display(), plugin = %cfg.plugin, "log monitor started");
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => monitor.process(line),
                None => break,
            },
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    watcher.abort();
    tracing::info!(file = %file.display(), "log monitor stopped");
}
