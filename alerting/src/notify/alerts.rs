//! The notifier's alert store (Alertmanager's `provider/mem`): alerts by fingerprint, merged as
//! Alertmanager merges re-sent alerts, and resolved ones dropped after a while.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use super::labels::{fingerprint, valid_label_name, Labels};

/// An alert as the notifier keeps it (Alertmanager's `types.Alert`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlert {
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at: DateTime<Utc>,
    /// `None` = zero time (a firing alert in a notification).
    pub ends_at: Option<DateTime<Utc>>,
    pub generator_url: String,
    pub updated_at: DateTime<Utc>,
    /// `endsAt` was not given: set to `updatedAt + resolve_timeout`.
    pub timeout: bool,
    pub fingerprint: u64,
}

impl StoredAlert {
    /// Resolved at `now`: `endsAt` set and not after `now`.
    pub fn resolved_at(&self, now: DateTime<Utc>) -> bool {
        self.ends_at.is_some_and(|e| e <= now)
    }

    /// Builds a stored alert from what a client posted (`POST /api/v2/alerts` or the rules),
    /// with Alertmanager's defaults and validation.
    pub fn from_posted(
        mut labels: Labels,
        mut annotations: Labels,
        starts_at: Option<DateTime<Utc>>,
        ends_at: Option<DateTime<Utc>>,
        generator_url: String,
        now: DateTime<Utc>,
        resolve_timeout: chrono::Duration,
    ) -> Result<StoredAlert, String> {
        labels.retain(|_, v| !v.is_empty());
        annotations.retain(|_, v| !v.is_empty());
        let starts_at = match (starts_at, ends_at) {
            (Some(s), _) => s,
            (None, Some(e)) if e < now => e,
            _ => now,
        };
        let (ends_at, timeout) = match ends_at {
            Some(e) => (e, false),
            None => (now + resolve_timeout, true),
        };
        if labels.is_empty() {
            return Err("at least one label pair required".into());
        }
        for name in labels.keys() {
            if !valid_label_name(name) {
                return Err(format!("invalid label set: invalid name {name:?}"));
            }
        }
        for name in annotations.keys() {
            if !valid_label_name(name) {
                return Err(format!("invalid annotations: invalid name {name:?}"));
            }
        }
        if ends_at < starts_at {
            return Err("start time must be before end time".into());
        }
        Ok(StoredAlert {
            fingerprint: fingerprint(&labels),
            labels,
            annotations,
            starts_at,
            ends_at: Some(ends_at),
            generator_url,
            updated_at: now,
            timeout,
        })
    }

    /// `types.Alert.Merge`: `self` older, `o` younger; earliest start wins, the latest explicit end.
    pub fn merge(&self, o: &StoredAlert) -> StoredAlert {
        if o.updated_at < self.updated_at {
            return o.merge(self);
        }
        let now = Utc::now();
        let mut res = o.clone();
        if self.starts_at < o.starts_at {
            res.starts_at = self.starts_at;
        }
        if o.resolved_at(now) {
            if self.resolved_at(now) && self.ends_at > o.ends_at {
                res.ends_at = self.ends_at;
            }
        } else if self.ends_at > o.ends_at && !self.timeout {
            res.ends_at = self.ends_at;
        }
        res
    }
}

/// All alerts by fingerprint.
#[derive(Default)]
pub struct AlertStore {
    alerts: Mutex<HashMap<u64, StoredAlert>>,
}

impl AlertStore {
    /// Stores `a`, merged with the alert of the same fingerprint when their activity overlaps;
    /// returns what was stored.
    pub fn put(&self, a: StoredAlert) -> StoredAlert {
        let mut map = self.alerts.lock().unwrap();
        let merged = match map.get(&a.fingerprint) {
            Some(old) => {
                let (a_end, old_end) = (a.ends_at.unwrap_or(a.starts_at), old.ends_at.unwrap_or(old.starts_at));
                if (a_end > old.starts_at && a_end < old_end)
                    || (a.starts_at > old.starts_at && a.starts_at < old_end)
                {
                    old.merge(&a)
                } else {
                    a
                }
            }
            None => a,
        };
        map.insert(merged.fingerprint, merged.clone());
        merged
    }

    /// Every stored alert.
    pub fn list(&self) -> Vec<StoredAlert> {
        self.alerts.lock().unwrap().values().cloned().collect()
    }

    /// Drops alerts resolved before `before` (Alertmanager's alert GC).
    pub fn gc(&self, before: DateTime<Utc>) {
        self.alerts
            .lock()
            .unwrap()
            .retain(|_, a| !a.resolved_at(before));
    }
}

/// Alertmanager's order of alerts in a notification: by `job`, then `instance`, then labels.
pub fn sort_alerts(alerts: &mut [StoredAlert]) {
    alerts.sort_by(|a, b| {
        for key in ["job", "instance"] {
            match (a.labels.get(key), b.labels.get(key)) {
                (None, None) => continue,
                (None, Some(_)) => return std::cmp::Ordering::Greater,
                (Some(_), None) => return std::cmp::Ordering::Less,
                (Some(x), Some(y)) if x != y => return x.cmp(y),
                _ => {}
            }
        }
        a.labels.iter().cmp(b.labels.iter())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posted_alerts_get_alertmanagers_defaults() {
        let now = Utc::now();
        let labels: Labels = [("alertname".to_string(), "X".to_string()), ("e".to_string(), String::new())].into();
        let a = StoredAlert::from_posted(labels, Labels::new(), None, None, String::new(), now, chrono::Duration::minutes(5)).unwrap();
        assert_eq!(a.starts_at, now);
        assert_eq!(a.ends_at, Some(now + chrono::Duration::minutes(5)));
        assert!(a.timeout);
        assert!(!a.labels.contains_key("e"));
        let bad: Labels = [("0x".to_string(), "y".to_string())].into();
        let e = StoredAlert::from_posted(bad, Labels::new(), None, None, String::new(), now, chrono::Duration::minutes(5)).unwrap_err();
        assert!(e.contains("invalid name \"0x\""), "{e}");
        let e = StoredAlert::from_posted(Labels::new(), Labels::new(), None, None, String::new(), now, chrono::Duration::minutes(5)).unwrap_err();
        assert_eq!(e, "at least one label pair required");
    }

    #[test]
    fn re_sent_alerts_merge_keeping_the_first_start() {
        let store = AlertStore::default();
        let t0 = Utc::now() - chrono::Duration::minutes(2);
        let labels: Labels = [("alertname".to_string(), "X".to_string())].into();
        let first = StoredAlert::from_posted(labels.clone(), Labels::new(), Some(t0), Some(t0 + chrono::Duration::minutes(10)), String::new(), t0, chrono::Duration::minutes(5)).unwrap();
        store.put(first);
        let t1 = t0 + chrono::Duration::minutes(1);
        let again = StoredAlert::from_posted(labels, Labels::new(), Some(t1), Some(t1 + chrono::Duration::minutes(10)), String::new(), t1, chrono::Duration::minutes(5)).unwrap();
        let merged = store.put(again);
        assert_eq!(merged.starts_at, t0);
        assert_eq!(merged.ends_at, Some(t1 + chrono::Duration::minutes(10)));
    }
}
