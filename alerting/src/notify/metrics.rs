//! The notifier's self-metrics: notification attempts by receiver, integration and outcome,
//! alerts received, and notification latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of one notification attempt.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    /// Receiver name (or `alertmanager:<url>` for forwarding).
    pub receiver: String,
    /// `webhook`, `email` or `alertmanager`.
    pub integration: String,
    /// `success`, `client_error` (4xx, not retried), `server_error` (5xx), `connection_error`,
    /// `timeout`, `rejected` (permanent SMTP error), `error` (anything else).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `valid` or `invalid`.
    pub result: String,
}

/// All of the notifier's metrics (`vigil_notify_*`).
pub struct Metrics {
    pub attempts: Family<AttemptLabels, Counter>,
    pub alerts_received: Family<ResultLabels, Counter>,
    pub latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            attempts: Family::default(),
            alerts_received: Family::default(),
            latency: Histogram::new(
                [0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0],
            ),
        }
    }
}

impl Metrics {
    /// Counts one attempt.
    pub fn attempt(&self, receiver: &str, integration: &str, outcome: &str) {
        self.attempts
            .get_or_create(&AttemptLabels {
                receiver: receiver.to_string(),
                integration: integration.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Registers the metrics under `vigil_notify_` in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("vigil_notify");
        r.register(
            "attempts",
            "Notification attempts by receiver, integration and outcome",
            self.attempts.clone(),
        );
        r.register(
            "alerts_received",
            "Alerts handed to the notifier (rules or POST /api/v2/alerts), by validity",
            self.alerts_received.clone(),
        );
        r.register(
            "notification_latency_seconds",
            "Time from a group's flush to a successful notification",
            self.latency.clone(),
        );
    }
}
