//! `GET /render`: a PromQL range query drawn as a PNG or SVG chart, with bounded size and time.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::chart::{self, Chart, Line, Unit};

/// One series of a range query: its labels (with `__name__` when it has one) and its points
/// `(t_ms, value)` oldest first.
pub type Series = (BTreeMap<String, String>, Vec<(i64, f64)>);

/// The future a [`RangeQuery`] returns.
pub type RangeFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Series>, String>> + Send + 'a>>;

/// What `/render` needs from a query engine: a PromQL range query. The aggregator implements
/// it over its own engine and store; anything that speaks PromQL could.
pub trait RangeQuery: Send + Sync + 'static {
    /// Evaluates `expr` at `start_ms, start_ms + step_ms, ... <= end_ms`. The error is shown to
    /// the user as it is (a parse error, an evaluation error).
    fn range<'a>(&'a self, expr: &'a str, start_ms: i64, end_ms: i64, step_ms: i64) -> RangeFuture<'a>;
}

/// Most points one series may have (as Prometheus' query_range).
pub const MAX_POINTS: i64 = 11_000;
/// Longest time range a chart may cover.
pub const MAX_RANGE_MS: i64 = 32 * 86_400_000;
/// How long the query may run before `/render` answers 503.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The parameters of `/render`, all optional but `query`; unknown ones are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderParams {
    /// PromQL expression (required).
    pub query: Option<String>,
    /// Start: Unix seconds (may have a fraction) or RFC 3339; default `end` - 1h.
    pub start: Option<String>,
    /// End: Unix seconds or RFC 3339; default now.
    pub end: Option<String>,
    /// Step: seconds or a duration (`30s`, `5m`); default about one point per 2 pixels, at least 1s.
    pub step: Option<String>,
    /// Width in pixels (16..=4000), default 800.
    pub width: Option<String>,
    /// Height in pixels (16..=4000), default 400.
    pub height: Option<String>,
    /// `png` (default) or `svg`.
    pub format: Option<String>,
    /// Title above the chart; default the query.
    pub title: Option<String>,
    /// A horizontal threshold line at this value.
    pub threshold: Option<String>,
    /// How values are written: none (default), bytes, cores, percent, seconds.
    pub unit: Option<String>,
}

/// A `/render` request checked and resolved to numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderRequest {
    pub query: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
    pub svg: bool,
    pub chart: Chart,
}

/// Why a `/render` request failed; each becomes a status and a one-line text body.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("invalid parameter {param:?}: {message}")]
    Param { param: &'static str, message: String },
    #[error("{0}")]
    BadRequest(String),
    #[error("query failed: {0}")]
    Query(String),
    #[error("query timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Chart(#[from] chart::ChartError),
}

impl IntoResponse for RenderError {
    fn into_response(self) -> Response {
        let status = match &self {
            RenderError::Param { .. } | RenderError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RenderError::Query(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RenderError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            RenderError::Chart(chart::ChartError::Draw(_)) => StatusCode::INTERNAL_SERVER_ERROR,
            RenderError::Chart(_) => StatusCode::BAD_REQUEST,
        };
        (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{self}\n")).into_response()
    }
}

fn param(param: &'static str, message: impl Into<String>) -> RenderError {
    RenderError::Param { param, message: message.into() }
}

/// Unix seconds (with an optional fraction) or RFC 3339, as Prometheus reads `start`/`end`.
pub fn parse_time(name: &'static str, s: &str) -> Result<i64, RenderError> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs.abs() < 1e13 {
            return Ok((secs * 1000.0).round() as i64);
        }
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| param(name, format!("cannot parse {s:?} to a valid timestamp (Unix seconds or RFC 3339)")))
}

/// Seconds (`15`, `0.5`) or a duration (`30s`, `5m`, `1h30m`, `1d`, `1w`), in milliseconds.
pub fn parse_duration(name: &'static str, s: &str) -> Result<i64, RenderError> {
    let bad = || param(name, format!("cannot parse {s:?} to a duration (seconds or e.g. 30s, 5m, 1h)"));
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs.abs() > 1e10 {
            return Err(bad());
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    let ms = vigil_common::Duration::parse(s).map_err(|_| bad())?.as_millis();
    i64::try_from(ms).map_err(|_| bad())
}

fn parse_size(name: &'static str, s: Option<&str>, default: u32) -> Result<u32, RenderError> {
    let Some(s) = s else { return Ok(default) };
    let v: u32 = s.parse().map_err(|_| param(name, format!("{s:?} is not a whole number of pixels")))?;
    if !chart::SIZE_RANGE.contains(&v) {
        return Err(param(name, format!("{v} is out of range (16..=4000)")));
    }
    Ok(v)
}

impl RenderParams {
    /// Checks every parameter; `now_ms` is the default end.
    pub fn resolve(&self, now_ms: i64) -> Result<RenderRequest, RenderError> {
        let query = self.query.as_deref().map(str::trim).unwrap_or_default();
        if query.is_empty() {
            return Err(param("query", "missing: give a PromQL expression, e.g. query=sum(cpu_usage_rate{type=\"node\"})"));
        }
        let width = parse_size("width", self.width.as_deref(), 800)?;
        let height = parse_size("height", self.height.as_deref(), 400)?;
        let end_ms = match &self.end {
            Some(s) => parse_time("end", s)?,
            None => now_ms,
        };
        let start_ms = match &self.start {
            Some(s) => parse_time("start", s)?,
            None => end_ms - 3_600_000,
        };
        if end_ms < start_ms {
            return Err(RenderError::BadRequest("end timestamp must not be before start time".into()));
        }
        if end_ms - start_ms > MAX_RANGE_MS {
            return Err(RenderError::BadRequest(format!(
                "time range of {} days is too long: at most {} days",
                (end_ms - start_ms) / 86_400_000,
                MAX_RANGE_MS / 86_400_000
            )));
        }
        let step_ms = match &self.step {
            Some(s) => parse_duration("step", s)?,
            None => ((end_ms - start_ms) / (width as i64 / 2).max(1)).max(1000),
        };
        if step_ms <= 0 {
            return Err(param("step", "zero or negative query resolution step widths are not accepted. Try a positive integer"));
        }
        if (end_ms - start_ms) / step_ms > MAX_POINTS {
            return Err(param(
                "step",
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
            ));
        }
        let svg = match self.format.as_deref() {
            None | Some("png") => false,
            Some("svg") => true,
            Some(other) => return Err(param("format", format!("{other:?}: expected png or svg"))),
        };
        let threshold = match &self.threshold {
            None => None,
            Some(s) => Some(
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| param("threshold", format!("{s:?} is not a finite number")))?,
            ),
        };
        let unit: Unit = self.unit.as_deref().unwrap_or("none").parse().map_err(|e: String| param("unit", e))?;
        let title = match &self.title {
            Some(t) => t.chars().take(200).collect(),
            None => query.chars().take(120).collect(),
        };
        Ok(RenderRequest {
            query: query.to_string(),
            start_ms,
            end_ms,
            step_ms,
            svg,
            chart: Chart { title, unit, lines: Vec::new(), threshold, band: None, width, height },
        })
    }
}

/// A series' legend text, as Prometheus writes a series: `name{a="1", b="2"}`.
pub fn series_label(labels: &BTreeMap<String, String>) -> String {
    let name = labels.get("__name__").map(String::as_str).unwrap_or("");
    let rest: Vec<String> = labels
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if rest.is_empty() && !name.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", rest.join(", "))
    }
}

/// Legend texts: each series' labels without those every series shares (so the legend shows
/// what tells the lines apart), as Prometheus writes a series; all of them for a single series.
pub fn legend_labels(series: &[Series]) -> Vec<String> {
    if series.len() < 2 {
        return series.iter().map(|(l, _)| series_label(l)).collect();
    }
    let first = &series[0].0;
    let common: Vec<&String> =
        first.keys().filter(|k| series.iter().all(|(l, _)| l.get(*k) == first.get(*k))).collect();
    series
        .iter()
        .map(|(l, _)| {
            let own: BTreeMap<String, String> =
                l.iter().filter(|(k, _)| !common.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
            series_label(&own)
        })
        .collect()
}

/// The handler: parse, query (with a deadline), draw (on a blocking thread).
pub async fn render(
    q: Arc<dyn RangeQuery>,
    params: Result<Query<RenderParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, RenderError> {
    let Query(params) = params.map_err(|e| RenderError::BadRequest(e.body_text()))?;
    let req = params.resolve(chrono::Utc::now().timestamp_millis())?;
    let job = q.range(&req.query, req.start_ms, req.end_ms, req.step_ms);
    let series = match tokio::time::timeout(QUERY_TIMEOUT, job).await {
        Err(_) => return Err(RenderError::Timeout(QUERY_TIMEOUT)),
        Ok(r) => r.map_err(RenderError::Query)?,
    };
    if series.len() > chart::MAX_LINES {
        return Err(RenderError::BadRequest(format!(
            "the query returned {} series, at most {} can be drawn: aggregate it (sum by, topk)",
            series.len(),
            chart::MAX_LINES
        )));
    }
    let mut chart = req.chart;
    let labels = legend_labels(&series);
    chart.lines = series.into_iter().zip(labels).map(|((_, points), label)| Line { label, points }).collect();
    let svg = req.svg;
    let drawn = tokio::task::spawn_blocking(move || {
        if svg {
            chart::render_svg(&chart).map(|s| ("image/svg+xml", s.into_bytes()))
        } else {
            chart::render_png(&chart).map(|b| ("image/png", b))
        }
    })
    .await
    .map_err(|e| RenderError::Chart(chart::ChartError::Draw(e.to_string())))??;
    Ok(([(header::CONTENT_TYPE, drawn.0), (header::CACHE_CONTROL, "no-store")], drawn.1).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> RenderParams {
        let q: String = pairs.iter().map(|(k, v)| format!("{k}={v}&")).collect();
        serde_urlencoded_like(&q)
    }

    fn serde_urlencoded_like(q: &str) -> RenderParams {
        let uri: axum::http::Uri = format!("/render?{q}").parse().unwrap();
        Query::<RenderParams>::try_from_uri(&uri).unwrap().0
    }

    #[test]
    fn defaults_cover_the_last_hour() {
        let r = params(&[("query", "up")]).resolve(10_000_000).unwrap();
        assert_eq!((r.start_ms, r.end_ms), (10_000_000 - 3_600_000, 10_000_000));
        assert_eq!(r.step_ms, 9000, "one point per two pixels of 800");
        assert_eq!((r.chart.width, r.chart.height, r.svg), (800, 400, false));
        assert_eq!(r.chart.title, "up");
    }

    #[test]
    fn times_and_steps_in_both_forms() {
        let r = params(&[("query", "up"), ("start", "1700000000.5"), ("end", "2023-11-14T22:23:20Z"), ("step", "1m")])
            .resolve(0)
            .unwrap();
        assert_eq!((r.start_ms, r.end_ms, r.step_ms), (1_700_000_000_500, 1_700_000_600_000, 60_000));
        assert_eq!(parse_duration("step", "1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("step", "0.5").unwrap(), 500);
    }

    #[test]
    fn bad_requests_name_the_parameter() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "\"query\": missing"),
            (&[("query", "up"), ("width", "5000")], "\"width\": 5000 is out of range"),
            (&[("query", "up"), ("height", "abc")], "\"height\": \"abc\" is not a whole number"),
            (&[("query", "up"), ("start", "yesterday")], "\"start\": cannot parse \"yesterday\""),
            (&[("query", "up"), ("step", "0")], "\"step\": zero or negative"),
            (&[("query", "up"), ("step", "5parsecs")], "\"step\": cannot parse"),
            (&[("query", "up"), ("start", "0"), ("end", "86400"), ("step", "1")], "exceeded maximum resolution"),
            (&[("query", "up"), ("start", "100"), ("end", "50")], "must not be before"),
            (&[("query", "up"), ("start", "0"), ("end", "9999999")], "too long"),
            (&[("query", "up"), ("format", "gif")], "\"format\": \"gif\": expected png or svg"),
            (&[("query", "up"), ("threshold", "NaN")], "\"threshold\": \"NaN\" is not a finite number"),
            (&[("query", "up"), ("unit", "furlongs")], "\"unit\": unknown unit"),
        ];
        for (pairs, want) in cases {
            let err = params(pairs).resolve(1_000_000_000).unwrap_err().to_string();
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
        let uri: axum::http::Uri = "/render?query=up&colour=red".parse().unwrap();
        let err = Query::<RenderParams>::try_from_uri(&uri).unwrap_err().body_text();
        assert!(err.contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn series_are_labelled_like_prometheus() {
        let l: BTreeMap<String, String> =
            [("__name__", "cpu_usage_rate"), ("type", "node"), ("nodename", "n1")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        assert_eq!(series_label(&l), "cpu_usage_rate{nodename=\"n1\", type=\"node\"}");
        assert_eq!(series_label(&BTreeMap::new()), "{}");
        let s = |pod: &str| -> Series {
            let l = [("__name__", "cpu_usage_rate"), ("type", "pod"), ("pod_name", pod)];
            (l.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(), vec![])
        };
        assert_eq!(legend_labels(&[s("a"), s("b")]), ["{pod_name=\"a\"}", "{pod_name=\"b\"}"]);
        assert_eq!(legend_labels(&[s("a")]), ["cpu_usage_rate{pod_name=\"a\", type=\"pod\"}"]);
    }
}
