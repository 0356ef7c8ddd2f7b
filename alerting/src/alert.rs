//! The alert as rules hand it to notifiers: Alertmanager's `postableAlert` shape.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// One alert, as Prometheus sends it to Alertmanager (`POST /api/v2/alerts`): a firing alert has
/// `ends_at` in the future (Prometheus: now + 4 × resend delay), a resolved one in the past.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: DateTime<Utc>,
    #[serde(rename = "endsAt")]
    pub ends_at: DateTime<Utc>,
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
}

/// Where the rule engine sends its alerts (the built-in notifier, a remote Alertmanager, or a
/// test's recorder). Called from the rules' evaluation thread; it must not block for long.
pub trait Notify: Send + Sync {
    fn send(&self, alerts: Vec<Alert>);
}

/// Hands the same alerts to several notifiers (the built-in notifier and `--alertmanager-url`).
pub struct Fanout(pub Vec<std::sync::Arc<dyn Notify>>);

impl Notify for Fanout {
    fn send(&self, alerts: Vec<Alert>) {
        if let Some((last, rest)) = self.0.split_last() {
            for n in rest {
                n.send(alerts.clone());
            }
            last.send(alerts);
        }
    }
}
