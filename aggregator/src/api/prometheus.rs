//! Prometheus's HTTP API (`/api/v1/query`, `query_range`, `series`, `labels`, `label/<n>/values`,
//! `metadata`, `status/buildinfo`, `query_exemplars`, `format_query`, `rules`, `alerts`) over the
//! store, with Prometheus's envelope, error types, codes and number encoding.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use vigil_promql::{MatchOp, Matcher, QueryResult, Value};

use super::AppState;
use crate::query::{QueryError, QueryKind, QueryParams};
use crate::store::names;

/// Largest request body (a POST form): 2 MiB, enough for thousands of `match[]`.
pub const MAX_BODY: usize = 2 << 20;
/// Most points a range query may return per series, as Prometheus.
pub const MAX_POINTS: i64 = 11_000;
/// Most `match[]` selectors one request may carry.
pub const MAX_MATCHERS: usize = 1_000;

/// The routes, merged into the aggregator's router.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route(
            "/api/v1/query_exemplars",
            get(query_exemplars).post(query_exemplars),
        )
        .route("/api/v1/format_query", get(format_query).post(format_query))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/alerts", get(alerts))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

/// A Prometheus API error: `errorType` and message; the HTTP code follows the type.
#[derive(Debug)]
pub struct PromError {
    pub kind: &'static str,
    pub message: String,
}

impl PromError {
    fn bad(message: impl Into<String>) -> PromError {
        PromError {
            kind: "bad_data",
            message: message.into(),
        }
    }

    fn param(name: &str, cause: impl std::fmt::Display) -> PromError {
        PromError::bad(format!("invalid parameter {name:?}: {cause}"))
    }

    fn status(&self) -> StatusCode {
        match self.kind {
            "bad_data" => StatusCode::BAD_REQUEST,
            "execution" => StatusCode::UNPROCESSABLE_ENTITY,
            "timeout" => StatusCode::SERVICE_UNAVAILABLE,
            "canceled" => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            "not_found" => StatusCode::NOT_FOUND,
            "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<QueryError> for PromError {
    fn from(e: QueryError) -> PromError {
        let kind = match &e {
            QueryError::Engine(vigil_promql::Error::Parse(_)) => {
                return PromError::param("query", &e);
            }
            // Prometheus rejects a range query over a string or range vector before running
            // it (engine.go NewRangeQuery): a parameter error, not an execution one.
            QueryError::Engine(vigil_promql::Error::Execution(m))
                if m.starts_with("invalid expression type") =>
            {
                return PromError::param("query", m);
            }
            QueryError::Engine(vigil_promql::Error::Timeout) | QueryError::Timeout => "timeout",
            QueryError::Engine(_) | QueryError::TooManySamples { .. } => "execution",
            QueryError::Internal(_) => "internal",
        };
        PromError {
            kind,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let kind = if self.kind == "too_large" {
            "bad_data"
        } else {
            self.kind
        };
        let body = serde_json::json!({"status": "error", "errorType": kind, "error": self.message});
        (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// A success envelope around `data` (already JSON), with warnings and infos.
fn success(data: &str, warnings: &[String]) -> Response {
    let mut out = String::with_capacity(data.len() + 64);
    out.push_str(r#"{"status":"success","data":"#);
    out.push_str(data);
    let (infos, warns): (Vec<&String>, Vec<&String>) =
        warnings.iter().partition(|w| w.starts_with("PromQL info:"));
    for (key, list) in [("warnings", warns), ("infos", infos)] {
        if list.is_empty() {
            continue;
        }
        let _ = write!(out, r#","{key}":["#);
        for (i, w) in list.iter().take(10).enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_str(&mut out, w);
        }
        out.push(']');
    }
    out.push('}');
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response()
}

fn json_success(data: serde_json::Value) -> Response {
    success(&data.to_string(), &[])
}

/// The request's parameters: the URL's query string and, for a form POST, the body (as Go's
/// `r.FormValue` merges them; body values first).
struct Params(Vec<(String, String)>);

impl Params {
    fn read(
        method: &Method,
        headers: &HeaderMap,
        query: Option<String>,
        body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    ) -> Result<Params, PromError> {
        let mut out = Vec::new();
        if method == Method::POST {
            let body = body.map_err(|e| PromError {
                kind: "too_large",
                message: format!("request body: {e} (limit {MAX_BODY} bytes)"),
            })?;
            let form = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            if form {
                out.extend(url::form_urlencoded::parse(&body).into_owned());
            } else if !body.is_empty() {
                return Err(PromError::bad(
                    "POST body must be application/x-www-form-urlencoded",
                ));
            }
        }
        if let Some(q) = query {
            out.extend(url::form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Ok(Params(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn time(&self, name: &str) -> Result<Option<i64>, PromError> {
        self.get(name)
            .map(|v| parse_time(v).map_err(|e| PromError::param(name, e)))
            .transpose()
    }

    fn duration(&self, name: &str) -> Result<Option<Duration>, PromError> {
        self.get(name)
            .map(|v| {
                parse_duration(v)
                    .map(|ms| Duration::from_millis(ms as u64))
                    .map_err(|e| PromError::param(name, e))
            })
            .transpose()
    }

    fn limit(&self) -> Result<usize, PromError> {
        match self.get("limit") {
            None => Ok(0),
            Some(v) => v.parse::<usize>().map_err(|_| {
                PromError::param("limit", format!("cannot parse {v:?} to a non-negative integer"))
            }),
        }
    }

    fn query_params(&self) -> Result<QueryParams, PromError> {
        Ok(QueryParams {
            timeout: self.duration("timeout")?,
            lookback_delta: self.duration("lookback_delta")?,
        })
    }
}

/// Prometheus's `parseTime`: float unix seconds (rounded to ms) or RFC 3339.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).round();
        if ms.is_finite() && ms.abs() < 9.2e18 {
            return Ok(ms as i64);
        }
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
}

/// Prometheus's `parseDuration`: float seconds or a duration such as `5m`, `1h30m`, `1d`, `1w`,
/// `1y`, `500ms`; milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        let ms = (f * 1000.0).round();
        if !ms.is_finite() || ms.abs() > 9.2e18 {
            return Err(format!("cannot parse {s:?} to a valid duration. It overflows int64"));
        }
        return Ok(ms as i64);
    }
    vigil_common::Duration::parse(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| format!("cannot parse {s:?} to a valid duration"))
}

/// Appends a JSON string.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A timestamp as Prometheus writes it: seconds, and `.` plus 3 digits when ms are not zero.
pub fn fmt_ts(out: &mut String, ms: i64) {
    let (sign, abs) = if ms < 0 { ("-", ms.unsigned_abs()) } else { ("", ms as u64) };
    let (s, frac) = (abs / 1000, abs % 1000);
    if frac == 0 {
        let _ = write!(out, "{sign}{s}");
    } else {
        let _ = write!(out, "{sign}{s}.{frac:03}");
    }
}

/// A sample value as Prometheus writes it (Go's `FormatFloat(f, 'f', -1)`, exponent form below
/// 1e-6 and from 1e21), as a JSON string.
pub fn fmt_value(out: &mut String, v: f64) {
    out.push('"');
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v != 0.0 && (v.abs() < 1e-6 || v.abs() >= 1e21) {
        let e = format!("{v:e}");
        let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let (esign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        let _ = write!(out, "{mant}e{esign}{digits:0>2}");
    } else {
        let _ = write!(out, "{v}");
    }
    out.push('"');
}

fn fmt_labels(out: &mut String, labels: &vigil_promql::Labels) {
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json_str(out, k);
        out.push(':');
        json_str(out, v);
    }
    out.push('}');
}

fn fmt_series(out: &mut String, s: &vigil_promql::Series) {
    out.push_str(r#"{"metric":"#);
    fmt_labels(out, &s.labels);
    out.push_str(r#","values":["#);
    for (i, (t, v)) in s.samples.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        fmt_ts(out, *t);
        out.push(',');
        fmt_value(out, *v);
        out.push(']');
    }
    out.push_str("]}");
}

/// `data` of a query: `{"resultType":…,"result":…}`; `limit` (0: none) truncates series.
fn fmt_result(value: &Value, limit: usize, warnings: &mut Vec<String>) -> String {
    let mut out = String::new();
    let mut truncated = |n: usize| -> usize {
        if limit > 0 && n > limit {
            warnings.push("results truncated due to limit".into());
            limit
        } else {
            n
        }
    };
    match value {
        Value::Scalar { t_ms, value } => {
            out.push_str(r#"{"resultType":"scalar","result":["#);
            fmt_ts(&mut out, *t_ms);
            out.push(',');
            fmt_value(&mut out, *value);
            out.push_str("]}");
        }
        Value::String { t_ms, value } => {
            out.push_str(r#"{"resultType":"string","result":["#);
            fmt_ts(&mut out, *t_ms);
            out.push(',');
            json_str(&mut out, value);
            out.push_str("]}");
        }
        Value::Vector(samples) => {
            out.push_str(r#"{"resultType":"vector","result":["#);
            let n = truncated(samples.len());
            for (i, s) in samples.iter().take(n).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(r#"{"metric":"#);
                fmt_labels(&mut out, &s.labels);
                out.push_str(r#","value":["#);
                fmt_ts(&mut out, s.t_ms);
                out.push(',');
                fmt_value(&mut out, s.value);
                out.push_str("]}");
            }
            out.push_str("]}");
        }
        Value::Matrix(series) => {
            out.push_str(r#"{"resultType":"matrix","result":["#);
            let n = truncated(series.len());
            for (i, s) in series.iter().take(n).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                fmt_series(&mut out, s);
            }
            out.push_str("]}");
        }
    }
    out
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

async fn query(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, PromError> {
    let p = Params::read(&method, &headers, q, body)?;
    let Some(query) = p.get("query") else {
        return Err(PromError::param("query", "query must not be empty"));
    };
    let time_ms = p.time("time")?.unwrap_or_else(now_ms);
    let limit = p.limit()?;
    let r = st
        .query
        .run(query, QueryKind::Instant { time_ms }, p.query_params()?)
        .await?;
    Ok(respond(r, limit))
}

fn respond(r: QueryResult, limit: usize) -> Response {
    let mut warnings = r.warnings;
    let data = fmt_result(&r.value, limit, &mut warnings);
    success(&data, &warnings)
}

async fn query_range(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, PromError> {
    let p = Params::read(&method, &headers, q, body)?;
    let start = p
        .time("start")?
        .ok_or_else(|| PromError::param("start", "cannot parse \"\" to a valid timestamp"))?;
    let end = p
        .time("end")?
        .ok_or_else(|| PromError::param("end", "cannot parse \"\" to a valid timestamp"))?;
    if end < start {
        return Err(PromError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step = match p.get("step") {
        Some(v) => parse_duration(v).map_err(|e| PromError::param("step", e))?,
        None => return Err(PromError::param("step", "cannot parse \"\" to a valid duration")),
    };
    if step <= 0 {
        return Err(PromError::param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(PromError::bad(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let Some(query) = p.get("query") else {
        return Err(PromError::param("query", "query must not be empty"));
    };
    let limit = p.limit()?;
    let r = st
        .query
        .run(
            query,
            QueryKind::Range {
                start_ms: start,
                end_ms: end,
                step_ms: step,
            },
            p.query_params()?,
        )
        .await?;
    Ok(respond(r, limit))
}

/// One `match[]` selector as matchers: a vector selector such as `up{job="x"}` or `{a=~"b"}`;
/// `{a="1" or b="2"}` gives one list per alternative.
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>, String> {
    let expr = promql_parser::parser::parse(s)?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(format!("{s:?} is not a series selector"));
    };
    let convert = |ms: &[promql_parser::label::Matcher]| -> Result<Vec<Matcher>, String> {
        let mut out = Vec::new();
        if let Some(n) = &vs.name {
            out.push(Matcher::new(MatchOp::Equal, "__name__", n).map_err(|e| e.to_string())?);
        }
        for m in ms {
            use promql_parser::label::MatchOp as P;
            let op = match m.op {
                P::Equal => MatchOp::Equal,
                P::NotEqual => MatchOp::NotEqual,
                P::Re(_) => MatchOp::Regex,
                P::NotRe(_) => MatchOp::NotRegex,
            };
            out.push(Matcher::new(op, &m.name, &m.value).map_err(|e| e.to_string())?);
        }
        if out.iter().all(|m| m.matches_empty()) {
            return Err("match[] must contain at least one non-empty matcher".into());
        }
        Ok(out)
    };
    if vs.matchers.or_matchers.is_empty() {
        Ok(vec![convert(&vs.matchers.matchers)?])
    } else {
        vs.matchers.or_matchers.iter().map(|m| convert(m)).collect()
    }
}

fn selectors(p: &Params, required: bool) -> Result<Vec<Vec<Matcher>>, PromError> {
    let raw = p.all("match[]");
    if raw.is_empty() && required {
        return Err(PromError::bad("no match[] parameter provided"));
    }
    if raw.len() > MAX_MATCHERS {
        return Err(PromError::param(
            "match[]",
            format!("{} selectors given, at most {MAX_MATCHERS} are accepted", raw.len()),
        ));
    }
    let mut out = Vec::new();
    for s in raw {
        out.extend(parse_selector(s).map_err(|e| PromError::param("match[]", e))?);
    }
    Ok(out)
}

/// `start`/`end` of the metadata routes: both default to the whole window.
fn time_range(p: &Params) -> Result<(i64, i64), PromError> {
    let start = p.time("start")?.unwrap_or(i64::MIN);
    let end = p.time("end")?.unwrap_or(i64::MAX);
    if end < start {
        return Err(PromError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    Ok((start, end))
}

fn truncate<T>(mut v: Vec<T>, limit: usize, warnings: &mut Vec<String>) -> Vec<T> {
    if limit > 0 && v.len() > limit {
        v.truncate(limit);
        warnings.push("results truncated due to limit".into());
    }
    v
}

async fn series(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, PromError> {
    let p = Params::read(&method, &headers, q, body)?;
    let sels = selectors(&p, true)?;
    let (start, end) = time_range(&p)?;
    let limit = p.limit()?;
    let range = (start != i64::MIN || end != i64::MAX).then_some((start, end));
    let store = st.query.store.clone();
    let mut all = st
        .query
        .metadata(move |storage| {
            let _ = storage;
            let mut out = std::collections::BTreeSet::new();
            for sel in &sels {
                for s in store.select_series(sel, range, |_| Ok::<(), vigil_promql::StorageError>(()))? {
                    out.insert(s.labels);
                }
            }
            Ok(out.into_iter().collect::<Vec<_>>())
        })
        .await?;
    let mut warnings = Vec::new();
    all = truncate(all, limit, &mut warnings);
    let mut data = String::from("[");
    for (i, l) in all.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        fmt_labels(&mut data, l);
    }
    data.push(']');
    Ok(success(&data, &warnings))
}

fn string_list(v: &[String]) -> String {
    let mut data = String::from("[");
    for (i, s) in v.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        json_str(&mut data, s);
    }
    data.push(']');
    data
}

async fn labels(
    State(st): State<Arc<AppState>>,
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, PromError> {
    let p = Params::read(&method, &headers, q, body)?;
    let sels = selectors(&p, false)?;
    let (start, end) = time_range(&p)?;
    let limit = p.limit()?;
    let names = st
        .query
        .metadata(move |storage| storage.label_names(&sels, start, end))
        .await?;
    let mut warnings = Vec::new();
    let names = truncate(names, limit, &mut warnings);
    Ok(success(&string_list(&names), &warnings))
}

/// A label name from the URL, `U__`-unescaped as Prometheus 3.x does (`U__a_2e_b` → `a.b`).
fn unescape_label_name(s: &str) -> Option<String> {
    let Some(rest) = s.strip_prefix("U__") else {
        return Some(s.to_string());
    };
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '_' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'_') {
            chars.next();
            out.push('_');
            continue;
        }
        let mut hex = String::new();
        loop {
            match chars.next() {
                Some('_') => break,
                Some(h) if h.is_ascii_hexdigit() => hex.push(h),
                _ => return None,
            }
        }
        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
    }
    Some(out)
}

async fn label_values(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, PromError> {
    let p = Params::read(&Method::GET, &HeaderMap::new(), q, Ok(Bytes::new()))?;
    let label = unescape_label_name(&name)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| PromError::bad(format!("invalid label name: {name:?}")))?;
    let sels = selectors(&p, false)?;
    let (start, end) = time_range(&p)?;
    let limit = p.limit()?;
    let values = st
        .query
        .metadata(move |storage| storage.label_values(&label, &sels, start, end))
        .await?;
    let mut warnings = Vec::new();
    let values = truncate(values, limit, &mut warnings);
    Ok(success(&string_list(&values), &warnings))
}

async fn metadata(
    State(st): State<Arc<AppState>>,
    RawQuery(q): RawQuery,
) -> Result<Response, PromError> {
    let p = Params::read(&Method::GET, &HeaderMap::new(), q, Ok(Bytes::new()))?;
    let limit = match p.get("limit") {
        None => -1,
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| PromError::bad("limit must be a number"))?,
    };
    let only = p.get("metric");
    let mut data = serde_json::Map::new();
    for name in st.query.store.heapster_metric_names() {
        let prom = names::metric_name(&name);
        if only.is_some_and(|m| m != prom) {
            continue;
        }
        if limit >= 0 && data.len() as i64 >= limit {
            break;
        }
        data.insert(
            prom,
            serde_json::json!([{
                "type": names::metric_type(&name),
                "help": names::help_text(&name),
                "unit": "",
            }]),
        );
    }
    Ok(json_success(serde_json::Value::Object(data)))
}

async fn buildinfo() -> Response {
    json_success(serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": "vigil",
        "branch": "main",
        "buildUser": "vigil",
        "buildDate": "",
        "goVersion": "none (vigil is written in Rust)",
    }))
}

async fn query_exemplars(
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, PromError> {
    let p = Params::read(&method, &headers, q, body)?;
    // vigil keeps no exemplars: checked parameters, then Prometheus's empty answer.
    p.time("start")?;
    p.time("end")?;
    Ok(success("[]", &[]))
}

async fn format_query(
    method: Method,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, PromError> {
    let p = Params::read(&method, &headers, q, body)?;
    let query = p.get("query").unwrap_or_default();
    let expr = promql_parser::parser::parse(query).map_err(|e| PromError::param("query", e))?;
    let mut data = String::new();
    json_str(&mut data, &expr.prettify());
    Ok(success(&data, &[]))
}

async fn rules(State(st): State<Arc<AppState>>, RawQuery(q): RawQuery) -> Result<Response, PromError> {
    let p = Params::read(&Method::GET, &HeaderMap::new(), q, Ok(Bytes::new()))?;
    Ok(json_success(st.query.rules(&p.0)))
}

async fn alerts(State(st): State<Arc<AppState>>) -> Response {
    json_success(st.query.alerts())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_encode_as_prometheus() {
        let f = |v: f64| {
            let mut s = String::new();
            fmt_value(&mut s, v);
            s
        };
        assert_eq!(f(250.0), "\"250\"");
        assert_eq!(f(0.1), "\"0.1\"");
        assert_eq!(f(1e-7), "\"1e-07\"");
        assert_eq!(f(1.5e21), "\"1.5e+21\"");
        assert_eq!(f(1e100), "\"1e+100\"");
        assert_eq!(f(f64::NAN), "\"NaN\"");
        assert_eq!(f(f64::NEG_INFINITY), "\"-Inf\"");
        assert_eq!(f(-0.0), "\"-0\"");
        let t = |ms: i64| {
            let mut s = String::new();
            fmt_ts(&mut s, ms);
            s
        };
        assert_eq!(t(1500), "1.500");
        assert_eq!(t(1000), "1");
        assert_eq!(t(-1500), "-1.500");
        assert_eq!(t(1_723_000_000_005), "1723000000.005");
        assert_eq!(parse_time("1723000000.5").unwrap(), 1_723_000_000_500);
        assert_eq!(parse_time("2024-08-07T03:06:40Z").unwrap(), 1_723_000_000_000);
        assert!(parse_time("yesterday").unwrap_err().contains("cannot parse"));
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert_eq!(parse_duration("0.5").unwrap(), 500);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("1d").unwrap(), 86_400_000);
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(unescape_label_name("U__http_2e_status__code").unwrap(), "http.status_code");
        assert_eq!(unescape_label_name("job").unwrap(), "job");
        assert!(unescape_label_name("U__a_zz_").is_none());
    }

    #[test]
    fn selectors_parse_and_need_a_non_empty_matcher() {
        let s = parse_selector(r#"cpu_usage_rate{type="pod",pod_name=~"a.*"}"#).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].len(), 3);
        assert!(parse_selector(r#"{a=""}"#)
            .unwrap_err()
            .contains("at least one non-empty matcher"));
        assert!(parse_selector("rate(x[5m])").is_err());
        assert!(parse_selector("x{").is_err());
    }
}
