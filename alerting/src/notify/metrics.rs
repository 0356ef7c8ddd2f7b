//! The notifier's self-metrics: notification attempts by receiver, integration and outcome,
//! alerts received, and notification latency.

use vigil_common::exposition::{CounterFamily, Histogram, Writer};

/// Label names of [`Metrics::attempts`]: the receiver (or the Alertmanager's URL for
/// forwarding); `webhook`, `email` or `alertmanager`; the outcome: `success`, `client_error`
/// (4xx, not retried), `server_error` (5xx), `connection_error`, `timeout`, `rejected`
/// (permanent SMTP error), `error` (anything else).
pub const ATTEMPT_LABELS: [&str; 3] = ["receiver", "integration", "outcome"];

/// All of the notifier's metrics (`vigil_notify_*`).
pub struct Metrics {
    /// By [`ATTEMPT_LABELS`].
    pub attempts: CounterFamily,
    /// By `result`: `valid` or `invalid`.
    pub alerts_received: CounterFamily,
    pub latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            attempts: CounterFamily::default(),
            alerts_received: CounterFamily::default(),
            latency: Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
        }
    }
}

impl Metrics {
    /// Counts one attempt.
    pub fn attempt(&self, receiver: &str, integration: &str, outcome: &str) {
        self.attempts.inc(&[receiver, integration, outcome]);
    }

    /// Writes the `vigil_notify_*` families.
    pub fn write(&self, w: &mut Writer) {
        w.counters(
            "vigil_notify_attempts_total",
            "Notification attempts by receiver, integration and outcome",
            &ATTEMPT_LABELS,
            &self.attempts,
        );
        w.counters(
            "vigil_notify_alerts_received_total",
            "Alerts handed to the notifier (rules or POST /api/v2/alerts), by validity",
            &["result"],
            &self.alerts_received,
        );
        w.histogram(
            "vigil_notify_notification_latency_seconds",
            "Time from a group's flush to a successful notification",
            &self.latency,
        );
    }
}
