//! [`Query`] over a remote Prometheus-compatible HTTP API (Prometheus, VictoriaMetrics, Thanos),
//! as vmalert's `-datasource.url`: `/api/v1/query` and `/api/v1/query_range`.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

use super::{Query, QueryError, RangeSeries, Sample};

/// A remote query API at `base_url` (e.g. `http://127.0.0.1:9090`).
pub struct RemoteQuery {
    base_url: String,
    timeout: Duration,
    /// Built on first use: reqwest's blocking client must not be created inside an async
    /// runtime, and rules call it from their own threads.
    client: OnceLock<Result<reqwest::blocking::Client, String>>,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: String,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct VectorItem {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Deserialize)]
struct MatrixItem {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

fn parse_value(s: &str) -> Result<f64, QueryError> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse()
            .map_err(|_| QueryError(format!("remote query: bad sample value {s:?}"))),
    }
}

fn secs(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

impl RemoteQuery {
    /// A client for `base_url`; the URL is checked now, the connection made on first query.
    pub fn new(base_url: &str, timeout: Duration) -> Result<RemoteQuery, QueryError> {
        let url = base_url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(QueryError(format!(
                "--rule-query-url {base_url:?}: needs an http:// or https:// URL"
            )));
        }
        Ok(RemoteQuery {
            base_url: url.to_string(),
            timeout,
            client: OnceLock::new(),
        })
    }

    fn call(&self, path: &str, form: &[(&str, String)]) -> Result<Data, QueryError> {
        let client = self
            .client
            .get_or_init(|| {
                reqwest::blocking::Client::builder()
                    .timeout(self.timeout)
                    .user_agent(concat!("vigil-rules/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| QueryError(format!("remote query client: {e}")))?;
        let url = format!("{}{path}", self.base_url);
        let resp = client
            .post(&url)
            .form(form)
            .send()
            .map_err(|e| QueryError(format!("remote query {url}: {e}")))?;
        let status = resp.status();
        let body = resp
            .text()
            .map_err(|e| QueryError(format!("remote query {url}: reading the answer: {e}")))?;
        let env: Envelope = serde_json::from_str(&body).map_err(|e| {
            QueryError(format!(
                "remote query {url}: HTTP {status}, not a Prometheus API answer ({e}): {}",
                body.chars().take(200).collect::<String>()
            ))
        })?;
        if env.status != "success" {
            return Err(QueryError(format!("{}: {}", env.error_type, env.error)));
        }
        env.data
            .ok_or_else(|| QueryError(format!("remote query {url}: answer without data")))
    }
}

impl Query for RemoteQuery {
    fn instant(&self, expr: &str, time_ms: i64) -> Result<Vec<Sample>, QueryError> {
        let data = self.call(
            "/api/v1/query",
            &[("query", expr.to_string()), ("time", secs(time_ms))],
        )?;
        let bad = |e: serde_json::Error| QueryError(format!("remote query: bad result: {e}"));
        match data.result_type.as_str() {
            "vector" => {
                let items: Vec<VectorItem> = serde_json::from_value(data.result).map_err(bad)?;
                items
                    .into_iter()
                    .map(|i| {
                        Ok(Sample {
                            labels: i.metric,
                            value: parse_value(&i.value.1)?,
                        })
                    })
                    .collect()
            }
            "scalar" => {
                let (_, v): (f64, String) = serde_json::from_value(data.result).map_err(bad)?;
                Ok(vec![Sample {
                    labels: BTreeMap::new(),
                    value: parse_value(&v)?,
                }])
            }
            other => Err(QueryError(format!(
                "rule queries must return a vector or a scalar, got a {other}"
            ))),
        }
    }

    fn range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<RangeSeries>, QueryError> {
        let data = self.call(
            "/api/v1/query_range",
            &[
                ("query", expr.to_string()),
                ("start", secs(start_ms)),
                ("end", secs(end_ms)),
                ("step", secs(step_ms)),
            ],
        )?;
        if data.result_type != "matrix" {
            return Err(QueryError(format!(
                "range query answered a {}, not a matrix",
                data.result_type
            )));
        }
        let items: Vec<MatrixItem> = serde_json::from_value(data.result)
            .map_err(|e| QueryError(format!("remote query: bad result: {e}")))?;
        items
            .into_iter()
            .map(|i| {
                Ok(RangeSeries {
                    labels: i.metric,
                    points: i
                        .values
                        .into_iter()
                        .map(|(t, v)| Ok(((t * 1000.0).round() as i64, parse_value(&v)?)))
                        .collect::<Result<_, QueryError>>()?,
                })
            })
            .collect()
    }
}
