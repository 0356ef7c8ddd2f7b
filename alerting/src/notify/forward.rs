//! Forwarding to real Alertmanagers (`--alertmanager-url`), as Prometheus's notifier does:
//! a queue of 10,000 alerts (oldest dropped), batches of 64 POSTed to `/api/v2/alerts` of every
//! Alertmanager at once, 10 s per batch; the rules' re-sends keep alerts alive.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use vigil_common::exposition::{Counter, CounterFamily, Writer};

use super::metrics::ATTEMPT_LABELS;
use super::webhook::HttpClient;
use super::{retry, SendError};
use crate::alert::{Alert, Notify};

/// Prometheus's `--alertmanager.notification-queue-capacity`.
pub const QUEUE_CAPACITY: usize = 10_000;
/// Prometheus's `maxBatchSize`.
pub const BATCH: usize = 64;
/// Prometheus's per-Alertmanager timeout.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Sends alerts to one or more Alertmanagers.
pub struct Forwarder {
    urls: Vec<String>,
    http: HttpClient,
    queue: Mutex<VecDeque<Alert>>,
    wake: tokio::sync::Notify,
    attempts: Arc<CounterFamily>,
    dropped: Counter,
}

impl Forwarder {
    /// `urls` are Alertmanager base URLs (`http://am:9093`, with a path prefix if it has one).
    pub fn new(urls: Vec<String>) -> Result<Forwarder, super::Error> {
        for u in &urls {
            let p = url::Url::parse(u).map_err(|e| super::Error::Forward(format!("alertmanager url {u:?}: {e}")))?;
            if p.scheme() != "http" && p.scheme() != "https" {
                return Err(super::Error::Forward(format!(
                    "alertmanager url {u:?}: scheme must be http or https"
                )));
            }
        }
        let http = HttpClient::new(&Default::default()).map_err(super::Error::Forward)?;
        Ok(Forwarder {
            urls: urls
                .into_iter()
                .map(|u| format!("{}/api/v2/alerts", u.trim_end_matches('/')))
                .collect(),
            http,
            queue: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            attempts: Arc::default(),
            dropped: Counter::default(),
        })
    }

    /// Writes `vigil_notify_forward_attempts_total` and `vigil_notify_forward_dropped_alerts_total`.
    pub fn write_metrics(&self, w: &mut Writer) {
        w.counters(
            "vigil_notify_forward_attempts_total",
            "POSTs of alert batches to Alertmanagers, by Alertmanager and outcome",
            &ATTEMPT_LABELS,
            &self.attempts,
        );
        w.counter(
            "vigil_notify_forward_dropped_alerts_total",
            "Alerts no Alertmanager accepted, or dropped from a full queue",
            self.dropped.get(),
        );
    }

    /// Sends queued alerts until `shutdown`; a last batch is sent on shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            let batch: Vec<Alert> = {
                let mut q = self.queue.lock().unwrap();
                let n = q.len().min(BATCH);
                q.drain(..n).collect()
            };
            if batch.is_empty() {
                if *shutdown.borrow() {
                    return;
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            self.send_batch(&batch).await;
        }
    }

    async fn send_batch(&self, batch: &[Alert]) {
        let body = serde_json::to_vec(batch).expect("alerts serialize");
        let mut tasks = tokio::task::JoinSet::new();
        for url in &self.urls {
            let (url, body, http, attempts) = (url.clone(), body.clone(), self.http.clone(), self.attempts.clone());
            tasks.spawn(async move {
                let deadline = tokio::time::Instant::now() + TIMEOUT;
                let res = retry(deadline, |outcome| {
                    attempts.inc(&[url.as_str(), "alertmanager", outcome]);
                }, || http.post_json(&url, body.clone()))
                .await;
                if let Err(SendError { msg, .. }) = &res {
                    tracing::warn!(alertmanager = %url, error = %msg, "forwarding alerts failed");
                }
                res.is_ok()
            });
        }
        let mut any = false;
        while let Some(r) = tasks.join_next().await {
            any |= r.unwrap_or(false);
        }
        if !any {
            self.dropped.inc_by(batch.len() as u64);
        }
    }
}

impl Notify for Forwarder {
    fn send(&self, alerts: Vec<Alert>) {
        let mut q = self.queue.lock().unwrap();
        q.extend(alerts);
        if q.len() > QUEUE_CAPACITY {
            let over = q.len() - QUEUE_CAPACITY;
            q.drain(..over);
            self.dropped.inc_by(over as u64);
        }
        drop(q);
        self.wake.notify_one();
    }
}
