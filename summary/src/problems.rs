//! The problem detector's documents: `/conditions` (a list of [`Condition`]) and
//! `/problems/events` (an [`EventPage`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A node condition status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// The problem is present.
    True,
    /// The problem is absent (the default).
    False,
    /// A plugin could not tell.
    Unknown,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        })
    }
}

/// A node condition in the Kubernetes `NodeCondition` shape, as `/conditions` serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// Condition type, e.g. `KernelDeadlock`.
    #[serde(rename = "type")]
    pub kind: String,
    /// True, False or Unknown.
    pub status: Status,
    /// When the condition was last reported (the time of the request).
    #[serde(rename = "lastHeartbeatTime")]
    pub last_heartbeat_time: DateTime<Utc>,
    /// When status or reason last changed.
    #[serde(rename = "lastTransitionTime")]
    pub last_transition_time: DateTime<Utc>,
    /// Short CamelCase reason.
    pub reason: String,
    /// Human-readable detail (the matched log lines or the plugin output).
    pub message: String,
}

/// Event severity (node-problem-detector: `warn` for problems, `info` for condition changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Condition changes.
    Info,
    /// Problems (Kubernetes event type Warning).
    Warn,
}

/// A problem event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Monotonic sequence number (starts at 1).
    pub seq: u64,
    /// The monitor's `source`.
    pub source: String,
    /// info (condition change) or warn (problem).
    pub severity: Severity,
    /// When the problem was logged (first matched line) or detected.
    pub timestamp: DateTime<Utc>,
    /// The rule's reason.
    pub reason: String,
    /// The matched text or plugin output.
    pub message: String,
}

/// One page of `/problems/events?since=<seq>&limit=<n>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPage {
    /// Events with a sequence number above `since`, oldest first.
    pub events: Vec<Event>,
    /// The sequence number to ask from next time: the last event's, or the newest one the
    /// detector has when the page is empty.
    pub last: u64,
    /// Events after `since` were dropped from the detector's bounded log before this request.
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names node-problem-detector's `/conditions` uses (Kubernetes' `NodeCondition`).
    #[test]
    fn condition_round_trips_with_kubernetes_names() {
        let doc = r#"[{"type":"KernelDeadlock","status":"False","lastHeartbeatTime":"2024-01-01T00:00:00Z","lastTransitionTime":"2024-01-01T00:00:00Z","reason":"KernelHasNoDeadlock","message":"kernel has no deadlock"}]"#;
        let c: Vec<Condition> = serde_json::from_str(doc).unwrap();
        assert_eq!(c[0].kind, "KernelDeadlock");
        assert_eq!(c[0].status, Status::False);
        assert_eq!(serde_json::to_string(&c).unwrap(), doc);
    }

    #[test]
    fn event_page_round_trips() {
        let doc = r#"{"events":[{"seq":7,"source":"kernel-monitor","severity":"warn","timestamp":"2024-01-01T00:00:00Z","reason":"OOMKilling","message":"Killed process 1"}],"last":7,"truncated":false}"#;
        let p: EventPage = serde_json::from_str(doc).unwrap();
        assert_eq!((p.events[0].seq, p.events[0].severity), (7, Severity::Warn));
        assert_eq!(serde_json::to_string(&p).unwrap(), doc);
    }

    #[test]
    fn bad_documents_name_what_is_wrong() {
        let status = r#"[{"type":"K","status":"Maybe","lastHeartbeatTime":"2024-01-01T00:00:00Z","lastTransitionTime":"2024-01-01T00:00:00Z","reason":"R","message":""}]"#;
        let err = serde_json::from_str::<Vec<Condition>>(status)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `Maybe`"), "{err}");
        let err = serde_json::from_str::<Vec<Condition>>(r#"[{"type": 1}]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid type"), "{err}");
        let err = serde_json::from_str::<EventPage>(r#"{"events":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `last`"), "{err}");
    }
}
