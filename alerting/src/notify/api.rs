//! Alertmanager's HTTP API v2 as vigil serves it (what `amtool` and Grafana call): alerts,
//! alert groups, silences, receivers and status.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::alerts::StoredAlert;
use super::labels::{fingerprint_hex, parse_matcher, Labels, MatchType, Matcher};
use super::silences::{PostableSilence, Silence, SilenceError};
use super::Notifier;

/// Alertmanager's API time format (go-openapi `strfmt.DateTime`: milliseconds).
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An error answer: Alertmanager sends the message as a JSON string.
fn err(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(Value::String(msg.into()))).into_response()
}

/// `postableAlert`.
#[derive(Deserialize)]
struct PostableAlert {
    labels: Labels,
    #[serde(default)]
    annotations: Labels,
    #[serde(rename = "startsAt", default)]
    starts_at: Option<DateTime<Utc>>,
    #[serde(rename = "endsAt", default)]
    ends_at: Option<DateTime<Utc>>,
    #[serde(rename = "generatorURL", default)]
    generator_url: String,
}

/// The query parameters of the GET endpoints (repeated `filter`).
struct Params {
    filter: Vec<Matcher>,
    flags: BTreeMap<String, bool>,
    receiver: Option<regex::Regex>,
}

fn params(raw: Option<String>) -> Result<Params, String> {
    let mut p = Params { filter: Vec::new(), flags: BTreeMap::new(), receiver: None };
    let raw = raw.unwrap_or_default();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        match k.as_ref() {
            "filter" => p.filter.push(parse_matcher(&v).map_err(|e| format!("bad matcher format: {v}: {e}"))?),
            "active" | "silenced" | "inhibited" | "unprocessed" => {
                let b = v.parse::<bool>().map_err(|_| format!("{k}: not a boolean: {v:?}"))?;
                p.flags.insert(k.into_owned(), b);
            }
            "receiver" => {
                p.receiver = Some(
                    regex::Regex::new(&format!("^(?:{v})$"))
                        .map_err(|e| format!("failed to parse receiver param: {e}"))?,
                )
            }
            _ => {}
        }
    }
    Ok(p)
}

/// Alertmanager's `matchFilterLabels`: an empty `=""` matcher also accepts a missing label.
fn filter_matches(ms: &[Matcher], labels: &Labels) -> bool {
    ms.iter().all(|m| {
        let v = labels.get(&m.name);
        match m.kind {
            MatchType::NotRegexp | MatchType::NotEqual if m.value.is_empty() && v.is_some() => true,
            MatchType::Equal | MatchType::Regexp if m.value.is_empty() && v.is_none() => true,
            _ => m.matches(v.map(String::as_str).unwrap_or("")),
        }
    })
}

fn silence_json(s: &Silence, now: DateTime<Utc>) -> Value {
    json!({
        "id": s.id,
        "status": {"state": s.state(now)},
        "updatedAt": ts(s.updated_at),
        "matchers": s.matchers,
        "startsAt": ts(s.starts_at),
        "endsAt": ts(s.ends_at),
        "createdBy": s.created_by,
        "comment": s.comment,
    })
}

impl Notifier {
    /// Alertmanager's `/api/v2` routes.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/api/v2/alerts", get(get_alerts).post(post_alerts))
            .route("/api/v2/alerts/groups", get(get_groups))
            .route("/api/v2/silences", get(get_silences).post(post_silence))
            .route("/api/v2/silence/{id}", get(get_silence).delete(delete_silence))
            .route("/api/v2/status", get(status))
            .route("/api/v2/receivers", get(receivers))
            .with_state(self)
    }

    /// `gettableAlert`, with its silences and inhibitions now; `None` if the flags exclude it.
    fn alert_json(&self, a: &StoredAlert, all: &[StoredAlert], p: &Params, now: DateTime<Utc>) -> Option<Value> {
        let receivers = self.d.receivers_of(&a.labels);
        if let Some(re) = &p.receiver {
            if !receivers.iter().any(|r| re.is_match(r)) {
                return None;
            }
        }
        if !filter_matches(&p.filter, &a.labels) {
            return None;
        }
        let silenced_by = self.d.silences.muted_by(&a.labels, now);
        let inhibited_by: Vec<String> = self
            .d
            .inhibited_by(&a.labels, all, now)
            .map(|fp| format!("{fp:016x}"))
            .into_iter()
            .collect();
        let flag = |k: &str| p.flags.get(k).copied().unwrap_or(true);
        let suppressed = !silenced_by.is_empty() || !inhibited_by.is_empty();
        if (!suppressed && !flag("active"))
            || (!silenced_by.is_empty() && !flag("silenced"))
            || (!inhibited_by.is_empty() && !flag("inhibited"))
        {
            return None;
        }
        Some(json!({
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": ts(a.starts_at),
            "endsAt": a.ends_at.map(ts),
            "updatedAt": ts(a.updated_at),
            "generatorURL": a.generator_url,
            "fingerprint": fingerprint_hex(&a.labels),
            "receivers": receivers.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
            "status": {
                "state": if suppressed { "suppressed" } else { "active" },
                "silencedBy": silenced_by,
                "inhibitedBy": inhibited_by,
            },
        }))
    }
}

type St = State<Arc<Notifier>>;

async fn get_alerts(State(n): St, RawQuery(q): RawQuery) -> Response {
    let p = match params(q) {
        Ok(p) => p,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let now = Utc::now();
    let all = n.d.alerts.list();
    let mut list: Vec<&StoredAlert> = all.iter().filter(|a| !a.resolved_at(now)).collect();
    list.sort_by_key(|a| a.fingerprint);
    let out: Vec<Value> = list.iter().filter_map(|a| n.alert_json(a, &all, &p, now)).collect();
    Json(out).into_response()
}

async fn post_alerts(State(n): St, body: axum::body::Bytes) -> Response {
    let posted: Vec<PostableAlert> = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("parsing alerts: {e}")),
    };
    let now = Utc::now();
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for a in posted {
        match StoredAlert::from_posted(a.labels, a.annotations, a.starts_at, a.ends_at, a.generator_url, now, n.d.resolve_timeout) {
            Ok(s) => ok.push(s),
            Err(e) => errors.push(e),
        }
    }
    n.count_received("valid", ok.len() as u64);
    n.count_received("invalid", errors.len() as u64);
    n.d.put(ok);
    if errors.is_empty() {
        StatusCode::OK.into_response()
    } else {
        err(StatusCode::BAD_REQUEST, errors.join(";"))
    }
}

async fn get_groups(State(n): St, RawQuery(q): RawQuery) -> Response {
    let p = match params(q) {
        Ok(p) => p,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let now = Utc::now();
    let all = n.d.alerts.list();
    let mut groups: Vec<(Labels, String, Vec<Value>)> = Vec::new();
    for (labels, receiver, mut alerts) in n.d.groups() {
        if p.receiver.as_ref().is_some_and(|re| !re.is_match(&receiver)) {
            continue;
        }
        alerts.sort_by_key(|a| a.fingerprint);
        let list: Vec<Value> = alerts
            .iter()
            .filter(|a| !a.resolved_at(now))
            .filter_map(|a| n.alert_json(a, &all, &p, now))
            .collect();
        if !list.is_empty() {
            groups.push((labels, receiver, list));
        }
    }
    groups.sort_by(|a, b| (a.0.iter().collect::<Vec<_>>(), &a.1).cmp(&(b.0.iter().collect(), &b.1)));
    let out: Vec<Value> = groups
        .into_iter()
        .map(|(labels, receiver, alerts)| json!({"labels": labels, "receiver": {"name": receiver}, "alerts": alerts}))
        .collect();
    Json(out).into_response()
}

async fn get_silences(State(n): St, RawQuery(q): RawQuery) -> Response {
    let p = match params(q) {
        Ok(p) => p,
        Err(e) => return err(StatusCode::BAD_REQUEST, e),
    };
    let now = Utc::now();
    let out: Vec<Value> = n
        .d
        .silences
        .list(now)
        .iter()
        .filter(|s| {
            let labels: Labels = s.matchers.iter().map(|m| (m.name.clone(), m.value.clone())).collect();
            filter_matches(&p.filter, &labels)
        })
        .map(|s| silence_json(s, now))
        .collect();
    Json(out).into_response()
}

async fn post_silence(State(n): St, body: axum::body::Bytes) -> Response {
    let p: PostableSilence = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("parsing silence: {e}")),
    };
    match n.d.silences.set(p, Utc::now()) {
        Ok(id) => Json(json!({"silenceID": id})).into_response(),
        Err(SilenceError::NotFound) => err(StatusCode::NOT_FOUND, "silence not found"),
        Err(SilenceError::Invalid(e)) => err(StatusCode::BAD_REQUEST, e),
        Err(SilenceError::Internal(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn get_silence(State(n): St, Path(id): Path<String>) -> Response {
    match n.d.silences.get(&id) {
        Some(s) => Json(silence_json(&s, Utc::now())).into_response(),
        None => err(StatusCode::NOT_FOUND, format!("silence {id} not found")),
    }
}

async fn delete_silence(State(n): St, Path(id): Path<String>) -> Response {
    match n.d.silences.expire(&id, Utc::now()) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(SilenceError::NotFound) => err(StatusCode::NOT_FOUND, format!("silence {id} not found")),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn status(State(n): St) -> Response {
    Json(json!({
        "cluster": {"name": "vigil", "status": "disabled", "peers": []},
        "versionInfo": {
            "version": concat!("vigil-", env!("CARGO_PKG_VERSION")),
            "revision": "", "branch": "", "buildUser": "", "buildDate": "", "goVersion": "",
        },
        "config": {"original": n.config.original},
        "uptime": ts(n.started),
    }))
    .into_response()
}

async fn receivers(State(n): St) -> Response {
    let out: Vec<Value> = n.d.receivers.keys().map(|r| json!({"name": r})).collect();
    Json(out).into_response()
}
