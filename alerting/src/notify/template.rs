//! Notification data as Alertmanager's templates see it (`template.Data`): status, common labels,
//! the default e-mail subject, and Go's time format in JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::alerts::StoredAlert;
use super::labels::{fingerprint_hex, quote_meta, Labels};

/// Go's `time.Time` JSON form (RFC 3339 with nanoseconds, trailing zeros trimmed);
/// `None` is Go's zero time.
pub fn go_time(t: Option<DateTime<Utc>>) -> String {
    match t {
        None => "0001-01-01T00:00:00Z".to_string(),
        Some(t) => {
            let s = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
            // "…:05.120000000Z" → "…:05.12Z", "…:05.000000000Z" → "…:05Z"
            let (body, _) = s.split_at(s.len() - 1);
            let trimmed = body.trim_end_matches('0').trim_end_matches('.');
            format!("{trimmed}Z")
        }
    }
}

fn ser_go_time<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&go_time(*t))
}

/// One alert of a notification (`template.Alert`).
#[derive(Debug, Clone, Serialize)]
pub struct DataAlert {
    pub status: &'static str,
    pub labels: Labels,
    pub annotations: Labels,
    #[serde(rename = "startsAt", serialize_with = "ser_go_time")]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(rename = "endsAt", serialize_with = "ser_go_time")]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

/// What a notification is about (`template.Data`).
#[derive(Debug, Clone, Serialize)]
pub struct Data {
    pub receiver: String,
    pub status: &'static str,
    pub alerts: Vec<DataAlert>,
    #[serde(rename = "groupLabels")]
    pub group_labels: Labels,
    #[serde(rename = "commonLabels")]
    pub common_labels: Labels,
    #[serde(rename = "commonAnnotations")]
    pub common_annotations: Labels,
    #[serde(rename = "externalURL")]
    pub external_url: String,
}

fn common(mut sets: impl Iterator<Item = Labels>) -> Labels {
    let Some(mut c) = sets.next() else {
        return Labels::new();
    };
    for s in sets {
        c.retain(|k, v| s.get(k) == Some(v));
    }
    c
}

impl Data {
    /// The data of one notification of `alerts` (already in notification order).
    pub fn new(
        receiver: &str,
        group_labels: &Labels,
        alerts: &[StoredAlert],
        external_url: &str,
        now: DateTime<Utc>,
    ) -> Data {
        let alerts: Vec<DataAlert> = alerts
            .iter()
            .map(|a| DataAlert {
                status: if a.resolved_at(now) { "resolved" } else { "firing" },
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                starts_at: Some(a.starts_at),
                ends_at: a.ends_at,
                generator_url: a.generator_url.clone(),
                fingerprint: fingerprint_hex(&a.labels),
            })
            .collect();
        Data {
            receiver: quote_meta(receiver),
            status: if alerts.iter().any(|a| a.status == "firing") {
                "firing"
            } else {
                "resolved"
            },
            common_labels: common(alerts.iter().map(|a| a.labels.clone())),
            common_annotations: common(alerts.iter().map(|a| a.annotations.clone())),
            alerts,
            group_labels: group_labels.clone(),
            external_url: external_url.to_string(),
        }
    }

    pub fn firing(&self) -> impl Iterator<Item = &DataAlert> {
        self.alerts.iter().filter(|a| a.status == "firing")
    }

    pub fn resolved(&self) -> impl Iterator<Item = &DataAlert> {
        self.alerts.iter().filter(|a| a.status == "resolved")
    }

    /// Alertmanager's `email.default.subject`:
    /// `[FIRING:2] <group label values> (<other common label values>)`.
    pub fn default_subject(&self) -> String {
        let mut s = format!("[{}", self.status.to_uppercase());
        if self.status == "firing" {
            s.push_str(&format!(":{}", self.firing().count()));
        }
        s.push_str("] ");
        let values: Vec<&str> = self.group_labels.values().map(String::as_str).collect();
        s.push_str(&values.join(" "));
        s.push(' ');
        if self.common_labels.len() > self.group_labels.len() {
            let rest: Vec<&str> = self
                .common_labels
                .iter()
                .filter(|(k, _)| !self.group_labels.contains_key(*k))
                .map(|(_, v)| v.as_str())
                .collect();
            s.push_str(&format!("({})", rest.join(" ")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_times_trim_trailing_zeros() {
        let t = DateTime::parse_from_rfc3339("2026-12-07T10:00:05.120Z").unwrap().with_timezone(&Utc);
        assert_eq!(go_time(Some(t)), "2026-12-07T10:00:05.12Z");
        let t = DateTime::parse_from_rfc3339("2026-12-07T10:00:05Z").unwrap().with_timezone(&Utc);
        assert_eq!(go_time(Some(t)), "2026-12-07T10:00:05Z");
        assert_eq!(go_time(None), "0001-01-01T00:00:00Z");
    }

    #[test]
    fn subject_is_alertmanagers_default() {
        let now = Utc::now();
        let mk = |inst: &str| StoredAlert {
            labels: [("alertname", "HighCPU"), ("instance", inst), ("severity", "page")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: Labels::new(),
            starts_at: now,
            ends_at: None,
            generator_url: String::new(),
            updated_at: now,
            timeout: false,
            fingerprint: 0,
        };
        let group: Labels = [("alertname".to_string(), "HighCPU".to_string())].into();
        let d = Data::new("team.x", &group, &[mk("a"), mk("b")], "http://am", now);
        assert_eq!(d.default_subject(), "[FIRING:2] HighCPU (page)");
        assert_eq!(d.receiver, "team\\.x");
        assert_eq!(d.common_labels.len(), 2);
    }
}
