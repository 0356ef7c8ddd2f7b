//! The notifier: Alertmanager-format routing, grouping, inhibition, silences and receivers.
//!
//! [`Notifier`] takes alerts from the rules ([`Notify`]) and from `POST /api/v2/alerts`, and
//! notifies webhooks and e-mail as Alertmanager 0.25 does; [`forward::Forwarder`] sends them to
//! real Alertmanagers instead.

pub mod alerts;
pub mod api;
pub mod config;
pub mod dispatch;
pub mod email;
pub mod forward;
pub mod labels;
pub mod metrics;
pub mod route;
pub mod silences;
pub mod template;
pub mod webhook;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub use config::{ConfigError, NotifyConfig};
pub use forward::Forwarder;

use crate::alert::{Alert, Notify};
use crate::query::Query;
use alerts::StoredAlert;
use dispatch::Dispatcher;
use silences::Silences;

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("receiver {receiver:?}: {integration}[{idx}]: {msg}")]
    Receiver {
        receiver: String,
        integration: &'static str,
        idx: usize,
        msg: String,
    },
    #[error("silences: {0}")]
    Silences(String),
    #[error("notification log: {0}")]
    NotificationLog(String),
    #[error("forwarding: {0}")]
    Forward(String),
}

/// Why one notification attempt failed.
#[derive(Debug, Clone)]
pub struct SendError {
    /// Worth retrying (5xx, connection errors, transient SMTP errors).
    pub retry: bool,
    /// The `outcome` label of the attempt counter.
    pub outcome: &'static str,
    pub msg: String,
}

/// Runs `attempt` until it succeeds, fails for good, or `deadline` passes; exponential backoff
/// from 200 ms (×2, at most 10 s, with [`vigil_common::Backoff`]'s jitter). Each attempt's
/// outcome goes to `count`.
pub(crate) async fn retry<F, Fut>(
    deadline: Instant,
    count: impl Fn(&str),
    mut attempt: F,
) -> Result<(), SendError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), SendError>>,
{
    let mut backoff = vigil_common::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let res = match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(r) => r,
            Err(_) => Err(SendError {
                retry: false,
                outcome: "timeout",
                msg: "no answer before the notification deadline".into(),
            }),
        };
        match res {
            Ok(()) => {
                count("success");
                return Ok(());
            }
            Err(e) => {
                count(e.outcome);
                let wait = backoff.next_delay();
                if !e.retry || Instant::now() + wait >= deadline {
                    return Err(e);
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The built-in Alertmanager.
pub struct Notifier {
    pub(crate) d: Arc<Dispatcher>,
    pub(crate) config: NotifyConfig,
    pub(crate) started: DateTime<Utc>,
    tx: mpsc::UnboundedSender<Vec<Alert>>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<Vec<Alert>>>>,
}

impl Notifier {
    /// Builds the notifier from a validated configuration. Silences and the notification log
    /// are kept in `data_dir/silences.json` and `nflog.json` when a data directory is given; `query` fetches the series the
    /// e-mail charts show.
    pub fn new(
        config: NotifyConfig,
        data_dir: Option<PathBuf>,
        query: Option<Arc<dyn Query>>,
    ) -> Result<Notifier, Error> {
        config.validate().map_err(Error::Invalid)?;
        let silences = Silences::open(data_dir.clone()).map_err(Error::Silences)?;
        let d = Arc::new(Dispatcher::new(&config, silences, query, data_dir.as_deref())?);
        let (tx, rx) = mpsc::unbounded_channel();
        Ok(Notifier {
            d,
            config,
            started: Utc::now(),
            tx,
            rx: Mutex::new(Some(rx)),
        })
    }

    /// Writes the notifier's metrics (`vigil_notify_*`).
    pub fn write_metrics(&self, w: &mut vigil_common::exposition::Writer) {
        self.d.metrics.write(w);
    }

    /// Dispatches alerts until `shutdown`; also drops old silences and resolved alerts.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let Some(mut rx) = self.rx.lock().unwrap().take() else {
            tracing::error!("notifier: run called twice");
            return;
        };
        let mut gc = tokio::time::interval(Duration::from_secs(15 * 60));
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(alerts) => self.accept(alerts),
                    None => break,
                },
                _ = gc.tick() => {
                    let now = Utc::now();
                    if let Err(e) = self.d.silences.gc(now) {
                        tracing::warn!(error = %e, "silence maintenance failed");
                    }
                    self.d.alerts.gc(now - chrono::Duration::minutes(30));
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                }
            }
        }
        self.d.stop();
    }

    fn accept(&self, alerts: Vec<Alert>) {
        let now = Utc::now();
        let mut ok = Vec::with_capacity(alerts.len());
        for a in alerts {
            let labels = a.labels.clone();
            match StoredAlert::from_posted(
                a.labels,
                a.annotations,
                Some(a.starts_at),
                Some(a.ends_at),
                a.generator_url,
                now,
                self.d.resolve_timeout,
            ) {
                Ok(s) => ok.push(s),
                Err(e) => {
                    self.count_received("invalid", 1);
                    tracing::warn!(labels = ?labels, error = %e, "alert from the rules rejected");
                }
            }
        }
        self.count_received("valid", ok.len() as u64);
        self.d.put(ok);
    }

    pub(crate) fn count_received(&self, result: &str, n: u64) {
        self.d
            .metrics
            .alerts_received
            .inc_by(&[result], n);
    }
}

impl Notify for Notifier {
    /// Queues the alerts for [`Notifier::run`]; never blocks.
    fn send(&self, alerts: Vec<Alert>) {
        let _ = self.tx.send(alerts);
    }
}
