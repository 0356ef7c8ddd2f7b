//! Silences as Alertmanager keeps them (`silence/silence.go`): validation, in-place updates or
//! replacement, expiry, state, matching, and a JSON file under the data directory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::labels::{matches_all, valid_label_name, Labels, MatchType, Matcher};

/// How long expired silences are kept (`--data.retention=120h`).
pub const RETENTION: chrono::Duration = chrono::Duration::hours(120);

/// One matcher of a silence (API v2 `matcher`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceMatcher {
    pub name: String,
    pub value: String,
    #[serde(rename = "isRegex")]
    pub is_regex: bool,
    #[serde(rename = "isEqual", default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// `postableSilence`.
#[derive(Debug, Clone, Deserialize)]
pub struct PostableSilence {
    #[serde(default)]
    pub id: Option<String>,
    pub matchers: Vec<SilenceMatcher>,
    #[serde(rename = "startsAt")]
    pub starts_at: DateTime<Utc>,
    #[serde(rename = "endsAt")]
    pub ends_at: DateTime<Utc>,
    #[serde(rename = "createdBy")]
    pub created_by: String,
    pub comment: String,
}

/// A stored silence (`gettableSilence` without the computed status).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<SilenceMatcher>,
    #[serde(rename = "startsAt")]
    pub starts_at: DateTime<Utc>,
    #[serde(rename = "endsAt")]
    pub ends_at: DateTime<Utc>,
    #[serde(rename = "updatedAt")]
    pub updated_at: DateTime<Utc>,
    #[serde(rename = "createdBy")]
    pub created_by: String,
    pub comment: String,
}

/// A silence's state at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    Expired,
    Active,
    Pending,
}

impl Silence {
    pub fn state(&self, now: DateTime<Utc>) -> SilenceState {
        if now < self.starts_at {
            SilenceState::Pending
        } else if now > self.ends_at {
            SilenceState::Expired
        } else {
            SilenceState::Active
        }
    }
}

/// Why a silence operation failed: the HTTP status Alertmanager answers and its message.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    #[error("silence not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Internal(String),
}

fn compile(ms: &[SilenceMatcher]) -> Result<Vec<Matcher>, String> {
    ms.iter()
        .enumerate()
        .map(|(i, m)| {
            if !valid_label_name(&m.name) {
                return Err(format!("invalid label matcher {i}: invalid label name {:?}", m.name));
            }
            let kind = match (m.is_regex, m.is_equal) {
                (false, true) => MatchType::Equal,
                (false, false) => MatchType::NotEqual,
                (true, true) => MatchType::Regexp,
                (true, false) => MatchType::NotRegexp,
            };
            Matcher::new(kind, &m.name, &m.value)
                .map_err(|e| format!("invalid label matcher {i}: invalid regular expression: {e}"))
        })
        .collect()
}

fn validate(s: &Silence) -> Result<Vec<Matcher>, String> {
    if s.matchers.is_empty() {
        return Err("silence invalid: at least one matcher required".into());
    }
    let ms = compile(&s.matchers).map_err(|e| format!("silence invalid: {e}"))?;
    if ms.iter().all(|m| m.matches("")) {
        return Err("silence invalid: at least one matcher must not match the empty string".into());
    }
    if s.ends_at < s.starts_at {
        return Err("silence invalid: end time must not be before start time".into());
    }
    Ok(ms)
}

struct Stored {
    silence: Silence,
    matchers: Vec<Matcher>,
}

/// All silences, persisted as `silences.json` in the data directory when there is one.
pub struct Silences {
    inner: Mutex<HashMap<String, Stored>>,
    path: Option<PathBuf>,
}

impl Silences {
    /// Loads the silences saved under `dir` (none if the file does not exist yet).
    pub fn open(dir: Option<PathBuf>) -> Result<Silences, String> {
        let path = dir.map(|d| d.join("silences.json"));
        let mut map = HashMap::new();
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(bytes) => {
                    let list: Vec<Silence> = serde_json::from_slice(&bytes)
                        .map_err(|e| format!("{}: {e}", p.display()))?;
                    for s in list {
                        let matchers = validate(&s).map_err(|e| format!("{}: silence {}: {e}", p.display(), s.id))?;
                        map.insert(s.id.clone(), Stored { silence: s, matchers });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e}", p.display())),
            }
        }
        Ok(Silences {
            inner: Mutex::new(map),
            path,
        })
    }

    /// Creates or updates a silence (`POST /api/v2/silences`), returning its id.
    pub fn set(&self, p: PostableSilence, now: DateTime<Utc>) -> Result<String, SilenceError> {
        if p.starts_at >= p.ends_at {
            return Err(SilenceError::Invalid(
                "Failed to create silence: start time must be before end time".into(),
            ));
        }
        if p.ends_at < now {
            return Err(SilenceError::Invalid(
                "Failed to create silence: end time can't be in the past".into(),
            ));
        }
        let mut map = self.inner.lock().unwrap();
        let mut sil = Silence {
            id: p.id.clone().unwrap_or_default(),
            matchers: p.matchers,
            starts_at: p.starts_at,
            ends_at: p.ends_at,
            updated_at: now,
            created_by: p.created_by,
            comment: p.comment,
        };
        if let Some(id) = p.id.filter(|i| !i.is_empty()) {
            let prev = map.get(&id).ok_or(SilenceError::NotFound)?;
            if can_update(&prev.silence, &sil, now) {
                let matchers = validate(&sil).map_err(SilenceError::Invalid)?;
                map.insert(id.clone(), Stored { silence: sil, matchers });
                self.save(&map)?;
                return Ok(id);
            }
            let matchers = validate(&sil).map_err(SilenceError::Invalid)?;
            if prev.silence.state(now) != SilenceState::Expired {
                expire_in(&mut map, &id, now)?;
            }
            sil.id = uuid::Uuid::new_v4().to_string();
            sil.starts_at = sil.starts_at.max(now);
            map.insert(sil.id.clone(), Stored { silence: sil.clone(), matchers });
            self.save(&map)?;
            return Ok(sil.id);
        }
        let matchers = validate(&sil).map_err(SilenceError::Invalid)?;
        sil.id = uuid::Uuid::new_v4().to_string();
        sil.starts_at = sil.starts_at.max(now);
        map.insert(sil.id.clone(), Stored { silence: sil.clone(), matchers });
        self.save(&map)?;
        Ok(sil.id)
    }

    /// Expires a silence (`DELETE /api/v2/silence/{id}`).
    pub fn expire(&self, id: &str, now: DateTime<Utc>) -> Result<(), SilenceError> {
        let mut map = self.inner.lock().unwrap();
        expire_in(&mut map, id, now)?;
        self.save(&map)
    }

    pub fn get(&self, id: &str) -> Option<Silence> {
        self.inner.lock().unwrap().get(id).map(|s| s.silence.clone())
    }

    /// Every silence, sorted as Alertmanager lists them: active (ending first), pending
    /// (starting first), expired (most recently ended first).
    pub fn list(&self, now: DateTime<Utc>) -> Vec<Silence> {
        let mut all: Vec<Silence> = self
            .inner
            .lock()
            .unwrap()
            .values()
            .map(|s| s.silence.clone())
            .collect();
        let rank = |s: &Silence| match s.state(now) {
            SilenceState::Active => 0,
            SilenceState::Pending => 1,
            SilenceState::Expired => 2,
        };
        all.sort_by(|a, b| {
            rank(a).cmp(&rank(b)).then_with(|| match a.state(now) {
                SilenceState::Active => a.ends_at.cmp(&b.ends_at),
                SilenceState::Pending => a.starts_at.cmp(&b.starts_at),
                SilenceState::Expired => b.ends_at.cmp(&a.ends_at),
            })
        });
        all
    }

    /// Ids of the active silences that mute `labels`.
    pub fn muted_by(&self, labels: &Labels, now: DateTime<Utc>) -> Vec<String> {
        let mut ids: Vec<String> = self
            .inner
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.silence.state(now) == SilenceState::Active && matches_all(&s.matchers, labels))
            .map(|s| s.silence.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Drops silences expired longer than the retention.
    pub fn gc(&self, now: DateTime<Utc>) -> Result<usize, SilenceError> {
        let mut map = self.inner.lock().unwrap();
        let before = map.len();
        map.retain(|_, s| s.silence.ends_at + RETENTION > now);
        let removed = before - map.len();
        if removed > 0 {
            self.save(&map)?;
        }
        Ok(removed)
    }

    fn save(&self, map: &HashMap<String, Stored>) -> Result<(), SilenceError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut list: Vec<&Silence> = map.values().map(|s| &s.silence).collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        let body = serde_json::to_vec_pretty(&list).map_err(|e| SilenceError::Internal(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(&tmp, &body)?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| SilenceError::Internal(format!("saving silences to {}: {e}", path.display())))
    }
}

fn can_update(a: &Silence, b: &Silence, now: DateTime<Utc>) -> bool {
    if a.matchers != b.matchers {
        return false;
    }
    match a.state(now) {
        SilenceState::Active => b.starts_at == a.starts_at && b.ends_at >= now,
        SilenceState::Pending => b.starts_at >= now,
        SilenceState::Expired => false,
    }
}

fn expire_in(map: &mut HashMap<String, Stored>, id: &str, now: DateTime<Utc>) -> Result<(), SilenceError> {
    let s = map.get_mut(id).ok_or(SilenceError::NotFound)?;
    match s.silence.state(now) {
        SilenceState::Expired => {
            return Err(SilenceError::Internal(format!("silence {id} already expired")))
        }
        SilenceState::Active => s.silence.ends_at = now,
        SilenceState::Pending => {
            s.silence.starts_at = now;
            s.silence.ends_at = now;
        }
    }
    s.silence.updated_at = now;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(name: &str, value: &str, regex: bool, from: i64, to: i64, now: DateTime<Utc>) -> PostableSilence {
        PostableSilence {
            id: None,
            matchers: vec![SilenceMatcher {
                name: name.into(),
                value: value.into(),
                is_regex: regex,
                is_equal: true,
            }],
            starts_at: now + chrono::Duration::seconds(from),
            ends_at: now + chrono::Duration::seconds(to),
            created_by: "me".into(),
            comment: "c".into(),
        }
    }

    #[test]
    fn silences_validate_mute_update_and_persist() {
        let dir = std::env::temp_dir().join(format!("vigil-silences-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = Utc::now();
        let s = Silences::open(Some(dir.clone())).unwrap();
        let id = s.set(post("alertname", "Hi.*", true, -10, 60, now), now).unwrap();
        let labels: Labels = [("alertname".to_string(), "HighCPU".to_string())].into();
        assert_eq!(s.muted_by(&labels, now), vec![id.clone()]);
        let e = s.set(post("x", ".*", true, 0, 60, now), now).unwrap_err();
        assert!(e.to_string().contains("at least one matcher must not match the empty string"));
        let e = s.set(post("x", "y", false, 60, 10, now), now).unwrap_err();
        assert!(e.to_string().contains("start time must be before end time"));
        // Same matchers, active: updated in place.
        let mut upd = post("alertname", "Hi.*", true, 0, 120, now);
        upd.starts_at = s.get(&id).unwrap().starts_at;
        upd.id = Some(id.clone());
        assert_eq!(s.set(upd, now).unwrap(), id);
        // Other matchers: old one expired, new id.
        let mut repl = post("alertname", "Other", false, 0, 120, now);
        repl.id = Some(id.clone());
        let id2 = s.set(repl, now).unwrap();
        assert_ne!(id2, id);
        let later = now + chrono::Duration::seconds(1);
        assert_eq!(s.get(&id).unwrap().state(later), SilenceState::Expired);
        let reopened = Silences::open(Some(dir.clone())).unwrap();
        assert_eq!(reopened.list(later).len(), 2);
        assert_eq!(reopened.list(later)[0].id, id2);
        assert!(matches!(reopened.expire("nope", now), Err(SilenceError::NotFound)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
