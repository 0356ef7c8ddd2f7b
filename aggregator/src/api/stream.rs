//! The aggregator's big answers, streamed and bounded: `/federate` (filtered by `match[]`) and
//! `/api/v1/metric-export` (filtered by `namespace`), rendered in chunks on a blocking thread.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use vigil_promql::Matcher;

use super::{ApiError, AppState};
use crate::batch::{Batch, MetricSet};

/// Expensive requests of one kind answered at once, at most; more get 503 with Retry-After.
pub const AT_ONCE: usize = 4;
/// `match[]` selectors per request, at most.
const MAX_SELECTORS: usize = 64;
/// A chunk is sent once it holds this many bytes.
const CHUNK: usize = 64 * 1024;

/// A response body fed by a blocking renderer through a bounded channel (a few chunks in flight).
pub fn channel_body() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    (tx, Body::from_stream(stream))
}

fn gate(slot: &'static OnceLock<vigil_server::Gate>, what: &'static str) -> &'static vigil_server::Gate {
    slot.get_or_init(|| vigil_server::Gate::new(what, AT_ONCE))
}

/// All values of `name` in a raw query string.
fn params(raw: &Option<String>, name: &str) -> Vec<String> {
    url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// `/federate`: the latest batch as Prometheus exposition, one metric family at a time. With
/// `match[]` (repeatable, as Prometheus's federation takes it) only matching series; without, all
/// (vigil's aggregator holds only the latest round, and existing scrapers ask for all of it).
pub async fn federate(State(st): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    let Some(render) = st.federate else {
        return ApiError::NotFound(
            "/federate needs the sinks module (not built into this aggregator)".into(),
        )
        .into_response();
    };
    let raw_selectors = params(&raw, "match[]");
    if raw_selectors.len() > MAX_SELECTORS {
        return ApiError::BadRequest(format!(
            "match[]: {} selectors given, at most {MAX_SELECTORS} are accepted",
            raw_selectors.len()
        ))
        .into_response();
    }
    let mut selectors = Vec::new();
    for s in &raw_selectors {
        match super::prometheus::parse_selector(s) {
            Ok(alternatives) => selectors.extend(alternatives),
            Err(e) => return ApiError::BadRequest(format!("match[]={s}: {e}")).into_response(),
        }
    }
    static GATE: OnceLock<vigil_server::Gate> = OnceLock::new();
    let permit = match gate(&GATE, "/federate").enter() {
        Ok(p) => p,
        Err(busy) => return busy,
    };
    let (tx, body) = channel_body();
    let batch = st.latest();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        if let Some(b) = batch {
            federate_chunks(&b, render, &selectors, |chunk| tx.blocking_send(chunk).is_ok());
        }
    });
    (
        [(header::CONTENT_TYPE, vigil_common::exposition::TEXT_CONTENT_TYPE)],
        body,
    )
        .into_response()
}

/// Renders `batch` one metric name at a time (a family stays whole and contiguous), keeps the
/// series `selectors` select (all when there are none), and hands out ~64 KiB chunks; stops when
/// `send` returns false (the client went away).
pub fn federate_chunks(
    batch: &Batch,
    render: super::BatchRenderer,
    selectors: &[Vec<Matcher>],
    mut send: impl FnMut(Bytes) -> bool,
) {
    let names: BTreeSet<&'static str> = batch
        .sets
        .values()
        .flat_map(|s| s.values.keys().copied().chain(s.labeled.iter().map(|m| m.name)))
        .collect();
    let mut out = String::with_capacity(CHUNK);
    for name in names {
        let one = Batch {
            timestamp: batch.timestamp,
            sets: batch
                .sets
                .iter()
                .filter_map(|(k, s)| only(s, name).map(|s| (k.clone(), s)))
                .collect(),
        };
        let mut text = String::new();
        render(&one, &mut text);
        if selectors.is_empty() {
            out.push_str(&text);
        } else {
            keep_selected(&text, selectors, &mut out);
        }
        if out.len() >= CHUNK && !send(Bytes::from(std::mem::take(&mut out))) {
            return;
        }
    }
    if !out.is_empty() {
        send(Bytes::from(out));
    }
}

/// `set` with only the metric `name` (None when it has none).
fn only(set: &MetricSet, name: &'static str) -> Option<MetricSet> {
    let value = set.values.get(name).copied();
    let labeled: Vec<_> = set.labeled.iter().filter(|m| m.name == name).cloned().collect();
    if value.is_none() && labeled.is_empty() {
        return None;
    }
    Some(MetricSet {
        create_time: set.create_time,
        scrape_time: set.scrape_time,
        values: value.map(|v| (name, v)).into_iter().collect(),
        labels: set.labels.clone(),
        labeled,
        rate_window_ms: set.rate_window_ms,
    })
}

/// Copies the series lines of `text` (one family's exposition) that a selector selects, with the
/// family's HELP and TYPE lines when at least one does.
fn keep_selected(text: &str, selectors: &[Vec<Matcher>], out: &mut String) {
    let mut head = String::new();
    let mut kept = false;
    for line in text.lines() {
        if line.starts_with('#') {
            head.push_str(line);
            head.push('\n');
            continue;
        }
        let Some((name, labels)) = series_of(line) else {
            continue;
        };
        let get = |l: &str| -> &str {
            if l == "__name__" {
                return name;
            }
            labels
                .iter()
                .find(|(k, _)| k == l)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        if selectors.iter().any(|ms| ms.iter().all(|m| m.matches(get(&m.name)))) {
            if !kept {
                out.push_str(&head);
                kept = true;
            }
            out.push_str(line);
            out.push('\n');
        }
    }
}

/// The metric name and labels of an exposition line `name{k="v",...} value ts`.
fn series_of(line: &str) -> Option<(&str, Vec<(String, String)>)> {
    let end = line.find(['{', ' '])?;
    let name = &line[..end];
    let mut labels = Vec::new();
    if line[end..].starts_with('{') {
        let mut rest = &line[end + 1..];
        loop {
            if rest.starts_with('}') {
                break;
            }
            let eq = rest.find("=\"")?;
            let key = rest[..eq].to_string();
            let mut value = String::new();
            let mut chars = rest[eq + 2..].char_indices();
            let close = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.push((key, value));
            rest = &rest[eq + 2 + close + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    Some((name, labels))
}

/// `/api/v1/metric-export`: Heapster's `[]Timeseries`, one set at a time; `namespace=` (repeatable,
/// or comma-separated) keeps the pods and containers of those namespaces (nodes and system
/// containers then left out).
pub async fn export(State(st): State<Arc<AppState>>, RawQuery(raw): RawQuery) -> Response {
    let namespaces: Vec<String> = params(&raw, "namespace")
        .iter()
        .flat_map(|v| v.split(',').map(str::trim).map(String::from).collect::<Vec<_>>())
        .filter(|n| !n.is_empty())
        .collect();
    let json = [(header::CONTENT_TYPE, "application/json")];
    let batch = match (st.disable_export, st.latest()) {
        (false, Some(b)) => b,
        _ => return (json, "[]").into_response(),
    };
    static GATE: OnceLock<vigil_server::Gate> = OnceLock::new();
    let permit = match gate(&GATE, "/api/v1/metric-export").enter() {
        Ok(p) => p,
        Err(busy) => return busy,
    };
    let (tx, body) = channel_body();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let mut out = Vec::with_capacity(CHUNK);
        out.push(b'[');
        let mut first = true;
        for set in batch.sets.values() {
            if !namespaces.is_empty()
                && !set
                    .labels
                    .get("namespace_name")
                    .is_some_and(|n| namespaces.contains(n))
            {
                continue;
            }
            let Some(ts) = super::heapster::export_timeseries(&batch, set) else {
                continue;
            };
            if !first {
                out.push(b',');
            }
            first = false;
            if serde_json::to_writer(&mut out, &ts).is_err() {
                return;
            }
            if out.len() >= CHUNK && tx.blocking_send(Bytes::from(std::mem::take(&mut out))).is_err() {
                return;
            }
        }
        out.push(b']');
        let _ = tx.blocking_send(Bytes::from(out));
    });
    (json, body).into_response()
}
