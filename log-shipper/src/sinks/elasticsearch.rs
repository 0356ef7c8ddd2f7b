//! The Elasticsearch sink: `_bulk` NDJSON with per-item handling (retry 429/5xx, dead-letter other 4xx, 409 on `create` = stored),
//! whole-request retries with exponential backoff and jitter, 413 splitting, gzip, basic/API-key auth and custom CAs.

use super::Batch;
use vigil_common::error_chain;
use crate::metrics::Metrics;
use serde::Deserialize;
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Errors building the Elasticsearch sink.
#[derive(Debug, thiserror::Error)]
pub enum EsError {
    #[error("sink.elasticsearch.ca_file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sink.elasticsearch.ca_file {path}: not a PEM certificate: {source}")]
    CaParse {
        path: PathBuf,
        source: reqwest::Error,
    },
    #[error("sink.elasticsearch: building the HTTP client: {0}")]
    Client(reqwest::Error),
    #[error("sink.elasticsearch.url {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("dead-letter file {path}: {source}")]
    DeadLetter {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Elasticsearch sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EsConfig {
    /// Base URL, e.g. `http://127.0.0.1:9200` (requests go to `<url>/_bulk`).
    pub url: String,
    /// Index name pattern: `%Y %m %d` from the record time, `{namespace}`, `{pod}`, `{container}` from its file.
    ///
    /// Exactly-once relies on `create` with a deterministic `_id`, and Elasticsearch enforces `_id` uniqueness per
    /// index only. A record whose time cannot be parsed is dated by the clock when it is encoded, so if it is re-sent
    /// after a restart that crosses midnight (UTC) it lands in the next day's index and is stored twice. Likewise a
    /// re-send after a data stream rolled over goes to the new backing index (inherent to data streams).
    #[serde(default = "default_index")]
    pub index: String,
    /// Write to this data stream instead of `index` (actions are `create`, records carry `@timestamp`).
    #[serde(default)]
    pub data_stream: Option<String>,
    /// A batch is sent once it holds this many bytes.
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// A batch is sent at the latest this long after its first record, e.g. `1s`.
    #[serde(default = "default_batch_timeout", with = "vigil_common::duration::serde_std")]
    pub batch_timeout: Duration,
    /// Bulk requests in flight at once (memory: up to this many batches of `batch_bytes` are held while unacknowledged).
    /// 4 keeps both the encoder and Elasticsearch busy; 2 left the end-to-end benchmark waiting on round trips.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Compress request bodies with gzip.
    #[serde(default)]
    pub gzip: bool,
    /// Basic authentication user.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic authentication password.
    #[serde(default)]
    pub password: Option<String>,
    /// API key (the base64 `id:key` value sent as `Authorization: ApiKey ...`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// PEM file of a CA to trust for `https` URLs (in addition to the built-in roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Timeout of one bulk request.
    #[serde(default = "default_request_timeout", with = "vigil_common::duration::serde_std")]
    pub request_timeout: Duration,
    /// First retry delay (doubles up to `backoff_max`, with jitter).
    #[serde(default = "default_backoff_initial", with = "vigil_common::duration::serde_std")]
    pub backoff_initial: Duration,
    /// Largest retry delay.
    #[serde(default = "default_backoff_max", with = "vigil_common::duration::serde_std")]
    pub backoff_max: Duration,
}

fn default_index() -> String {
    "logstash-%Y.%m.%d".into()
}
fn default_batch_bytes() -> usize {
    5 << 20
}
fn default_batch_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_concurrency() -> usize {
    4
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_backoff_initial() -> Duration {
    Duration::from_millis(100)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(10)
}

impl EsConfig {
    pub fn new(url: String) -> Self {
        EsConfig {
            url,
            index: default_index(),
            data_stream: None,
            batch_bytes: default_batch_bytes(),
            batch_timeout: default_batch_timeout(),
            concurrency: default_concurrency(),
            gzip: false,
            username: None,
            password: None,
            api_key: None,
            ca_file: None,
            request_timeout: default_request_timeout(),
            backoff_initial: default_backoff_initial(),
            backoff_max: default_backoff_max(),
        }
    }

    /// Checks what can be checked without I/O; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        let u = &self.url;
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(format!(
                "sink.elasticsearch.url {u:?}: must start with http:// or https://"
            ));
        }
        if self.batch_bytes == 0 {
            return Err("sink.elasticsearch.batch_bytes: must be > 0".into());
        }
        if self.concurrency == 0 {
            return Err("sink.elasticsearch.concurrency: must be > 0".into());
        }
        if self.password.is_some() && self.username.is_none() {
            return Err("sink.elasticsearch.password: set without username".into());
        }
        if self.api_key.is_some() && self.username.is_some() {
            return Err(
                "sink.elasticsearch: set either api_key or username/password, not both".into(),
            );
        }
        if self.backoff_initial.is_zero() || self.backoff_max < self.backoff_initial {
            return Err(
                "sink.elasticsearch.backoff_initial/backoff_max: need 0s < initial <= max".into(),
            );
        }
        if self.request_timeout.is_zero() {
            return Err("sink.elasticsearch.request_timeout: must be longer than 0s".into());
        }
        Ok(())
    }

    /// The index pattern records are written to.
    pub fn target(&self) -> &str {
        self.data_stream.as_deref().unwrap_or(&self.index)
    }
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    errors: bool,
    items: Vec<ItemWrapper>,
}

/// The top of a bulk response: the `errors` flag and how many items there are (items are skipped, not built).
#[derive(Deserialize)]
struct BulkSummary {
    #[serde(default = "default_true")]
    errors: bool,
    items: ItemCount,
}

fn default_true() -> bool {
    true
}

/// Counts the elements of a JSON array without building them.
struct ItemCount(usize);

impl<'de> Deserialize<'de> for ItemCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ItemCount;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of bulk items")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<ItemCount, A::Error> {
                let mut n = 0;
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(ItemCount(n))
            }
        }
        d.deserialize_seq(V)
    }
}

/// One response item: `{"<action>": {...}}`.
#[derive(Deserialize)]
struct ItemWrapper {
    create: Option<ItemResult>,
    index: Option<ItemResult>,
    update: Option<ItemResult>,
    delete: Option<ItemResult>,
}

impl ItemWrapper {
    fn result(&self) -> Option<&ItemResult> {
        self.create
            .as_ref()
            .or(self.index.as_ref())
            .or(self.update.as_ref())
            .or(self.delete.as_ref())
    }
}

/// What to do with one answered item.
#[derive(Debug, PartialEq, Eq)]
enum ItemClass {
    Stored,
    /// 409 on `create`: a document with this deterministic id is already in the index (a re-send after a restart).
    AlreadyStored,
    Retry,
    Reject(u16),
}

/// Classifies an item by action and status. 409 is success ONLY for `create`: our ids are deterministic (file
/// identity + generation + offset, see `enrich::Encoder::encode`, which emits only `create`), so a conflict on
/// `create` means the very same record is already stored. On `index`/`update`/`delete` a 409 is a real version
/// conflict and must not be counted as stored; should another action ever be emitted, it is dead-lettered.
fn classify(item: &ItemWrapper, status: u16) -> ItemClass {
    match status {
        200..=299 => ItemClass::Stored,
        409 if item.create.is_some() => ItemClass::AlreadyStored,
        429 | 500..=599 => ItemClass::Retry,
        s => ItemClass::Reject(s),
    }
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The `filter_path` sent with every bulk request.
pub const BULK_FILTER_PATH: &str = "errors,items.*.status,items.*.error";

/// Sends batches to Elasticsearch.
pub struct ElasticsearchSink {
    cfg: EsConfig,
    client: reqwest::Client,
    bulk_url: String,
    metrics: Arc<Metrics>,
    dead_letter: Mutex<DeadLetter>,
}

struct DeadLetter {
    path: PathBuf,
    file: Option<std::fs::File>,
}

enum Outcome {
    Done,
    Retry(Vec<usize>),
    /// Halve the group and send both halves; a single record that still gets this status is dead-lettered.
    Split(u16, String),
    /// Transient (connection, timeout, 408/429/5xx): retry with backoff.
    RequestFailed(String),
    /// The request itself is refused (401/403/404/405/415/other 4xx): a configuration or proxy fault, never the
    /// data's. Retried with backoff (backpressure: reading stops) and logged as an error on every attempt.
    Misconfigured(u16, String),
}

impl ElasticsearchSink {
    pub fn new(
        cfg: EsConfig,
        dead_letter_path: PathBuf,
        metrics: Arc<Metrics>,
    ) -> Result<Self, EsError> {
        let mut b = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(cfg.concurrency);
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|source| EsError::CaFile {
                path: ca.clone(),
                source,
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|source| EsError::CaParse {
                path: ca.clone(),
                source,
            })?;
            b = b.add_root_certificate(cert);
        }
        let client = b.build().map_err(EsError::Client)?;
        let base = cfg.url.trim_end_matches('/');
        if reqwest::Url::parse(base).is_err() {
            return Err(EsError::Url {
                url: cfg.url.clone(),
                reason: "not a valid URL".into(),
            });
        }
        // Elasticsearch's documented response filtering: only what per-item handling reads comes back (the `errors`
        // flag, each item's action and `status`, and the `error` of failed items), not `_index`/`_id`/`_shards`...
        let bulk_url = format!("{base}/_bulk?filter_path={BULK_FILTER_PATH}");
        Ok(ElasticsearchSink {
            cfg,
            client,
            bulk_url,
            metrics,
            dead_letter: Mutex::new(DeadLetter {
                path: dead_letter_path,
                file: None,
            }),
        })
    }

    /// Sends every item of `batch`; returns true once each is stored or dead-lettered, false if shutdown came first.
    /// `buf` is the batch's encoded records (`batch.buf` handed over as `Bytes`, so a whole batch is sent without a copy).
    /// Whole-request failures are reported to `health` (for `/healthz`) until a request succeeds again.
    pub async fn send_batch(
        &self,
        batch: &Batch,
        buf: &bytes::Bytes,
        mut shutdown: watch::Receiver<bool>,
        health: &super::Health,
    ) -> bool {
        let mut queue: VecDeque<Vec<usize>> = VecDeque::new();
        if !batch.items.is_empty() {
            queue.push_back((0..batch.items.len()).collect());
        }
        let mut attempt = 0u32;
        let mut backoff = vigil_common::Backoff::new(self.cfg.backoff_initial, self.cfg.backoff_max);
        while let Some(group) = queue.pop_front() {
            let outcome = tokio::select! {
                o = self.send_group(batch, buf, &group) => o,
                _ = shutdown.wait_for(|s| *s) => return false,
            };
            let wait = match outcome {
                Outcome::Done => {
                    if attempt > 0 {
                        health.recovered("elasticsearch");
                    }
                    attempt = 0;
                    backoff.reset();
                    continue;
                }
                Outcome::Retry(items) => {
                    self.metrics.records_retried.inc_by(items.len() as u64);
                    queue.push_front(items);
                    true
                }
                Outcome::Split(status, reason) => {
                    self.metrics.bulk_splits.inc_by(1);
                    if group.len() == 1 {
                        let reason = if status == 413 {
                            "request too large (413) even for a single record".to_string()
                        } else {
                            format!("whole request rejected even for a single record: {reason}")
                        };
                        self.dead_letter_items(batch, buf, &group, status, &reason);
                    } else {
                        tracing::warn!(url = %self.bulk_url, status, reason = %reason, records = group.len(), "bulk request rejected as a whole; splitting the batch to find the offending record");
                        let (a, b) = group.split_at(group.len() / 2);
                        queue.push_front(b.to_vec());
                        queue.push_front(a.to_vec());
                    }
                    false
                }
                Outcome::RequestFailed(reason) => {
                    self.metrics.bulk_request_errors.inc_by(1);
                    self.metrics.records_retried.inc_by(group.len() as u64);
                    tracing::warn!(url = %self.bulk_url, attempt, reason = %reason, records = group.len(), "bulk request failed; retrying");
                    health.failing("elasticsearch", format!("{}: {reason}", self.cfg.url));
                    queue.push_front(group);
                    true
                }
                Outcome::Misconfigured(status, reason) => {
                    self.metrics.bulk_request_errors.inc_by(1);
                    self.metrics.records_retried.inc_by(group.len() as u64);
                    tracing::error!(url = %self.bulk_url, status, attempt, reason = %reason, records = group.len(),
                        "bulk request refused as a whole (check the URL, proxy, credentials and content type); \
                         holding the records and retrying, reading is paused meanwhile");
                    health.failing("elasticsearch", format!("{}: {reason}", self.cfg.url));
                    queue.push_front(group);
                    true
                }
            };
            if wait {
                let d = backoff.next_delay();
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    _ = tokio::time::sleep(d) => {},
                    _ = shutdown.wait_for(|s| *s) => return false,
                }
            }
        }
        true
    }

    async fn send_group(&self, batch: &Batch, buf: &bytes::Bytes, group: &[usize]) -> Outcome {
        let mut body = group_body(batch, buf, group);
        let mut req = self
            .client
            .post(&self.bulk_url)
            .header("Content-Type", "application/x-ndjson");
        if self.cfg.gzip {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            if enc.write_all(&body).is_ok() {
                if let Ok(z) = enc.finish() {
                    body = z.into();
                    req = req.header("Content-Encoding", "gzip");
                }
            }
        }
        if let Some(user) = &self.cfg.username {
            req = req.basic_auth(user, self.cfg.password.as_deref());
        }
        if let Some(key) = &self.cfg.api_key {
            req = req.header("Authorization", format!("ApiKey {key}"));
        }
        self.metrics.bulk_requests.inc_by(1);
        let resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => return Outcome::RequestFailed(error_chain(&e)),
        };
        let status = resp.status().as_u16();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Outcome::RequestFailed(format!("reading response: {}", error_chain(&e)))
            }
        };
        match status {
            200..=299 => {}
            413 => return Outcome::Split(413, format!("HTTP 413: {}", snippet(&bytes))),
            408 | 429 | 500..=599 => {
                return Outcome::RequestFailed(format!("HTTP {status}: {}", snippet(&bytes)))
            }
            // A whole-request 400 on a body we framed ourselves: one record may be at fault (or a proxy). Split down
            // to single records so only the offending one is dead-lettered (a lone record getting 400 is).
            400 => return Outcome::Split(400, format!("HTTP 400: {}", snippet(&bytes))),
            // Credentials, permissions, a wrong path prefix behind a proxy (404), a method or content type a proxy
            // refuses (405/406/415) and any other whole-request status: the request is wrong, not the records.
            // Never drop data for it: retry with backoff, which stops reading (the log files are the buffer).
            401 | 403 => {
                return Outcome::Misconfigured(
                    status,
                    format!("HTTP {status} (check credentials): {}", snippet(&bytes)),
                )
            }
            _ => {
                return Outcome::Misconfigured(
                    status,
                    format!("HTTP {status}: {}", snippet(&bytes)),
                )
            }
        }
        // Fast path: `errors: false` means every item succeeded, so only the item count needs checking; this skips
        // building a struct per item (the per-item parse was as costly as reading and encoding the records).
        if clean_response(&bytes, group.len()) {
            self.metrics.records_shipped.inc_by(group.len() as u64);
            return Outcome::Done;
        }
        if let Ok(sum) = serde_json::from_slice::<BulkSummary>(&bytes) {
            if !sum.errors && sum.items.0 == group.len() {
                self.metrics.records_shipped.inc_by(group.len() as u64);
                return Outcome::Done;
            }
        }
        let parsed: BulkResponse = match serde_json::from_slice(&bytes) {
            Ok(p) => p,
            Err(e) => return Outcome::RequestFailed(format!("unreadable bulk response: {e}")),
        };
        if parsed.items.len() != group.len() {
            return Outcome::RequestFailed(format!(
                "bulk response has {} items for {} sent",
                parsed.items.len(),
                group.len()
            ));
        }
        if !parsed.errors {
            let ok = parsed
                .items
                .iter()
                .filter(|m| m.result().is_some_and(|r| (200..300).contains(&r.status)))
                .count();
            if ok == group.len() {
                self.metrics.records_shipped.inc_by(ok as u64);
                return Outcome::Done;
            }
        }
        let mut retry = Vec::new();
        let mut shipped = 0u64;
        for (k, item) in parsed.items.iter().enumerate() {
            let Some(r) = item.result() else {
                retry.push(group[k]);
                continue;
            };
            match classify(item, r.status) {
                ItemClass::Stored => shipped += 1,
                ItemClass::AlreadyStored => {
                    shipped += 1;
                    self.metrics.records_duplicate.inc_by(1);
                }
                ItemClass::Retry => retry.push(group[k]),
                ItemClass::Reject(s) => {
                    let reason = r
                        .error
                        .as_ref()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| format!("status {s}"));
                    self.dead_letter_items(batch, buf, &[group[k]], s, &reason);
                }
            }
        }
        self.metrics.records_shipped.inc_by(shipped);
        if retry.is_empty() {
            Outcome::Done
        } else {
            Outcome::Retry(retry)
        }
    }

    /// Appends the items to the dead-letter file with the reason; they count as handled.
    fn dead_letter_items(
        &self,
        batch: &Batch,
        buf: &[u8],
        items: &[usize],
        status: u16,
        reason: &str,
    ) {
        self.metrics
            .records_dead_lettered
            .inc_by(items.len() as u64);
        let mut dl = self.dead_letter.lock().expect("dead-letter lock");
        if dl.file.is_none() {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&dl.path)
            {
                Ok(f) => dl.file = Some(f),
                Err(e) => {
                    tracing::error!(path = %dl.path.display(), error = %e, records = items.len(), "cannot open dead-letter file; records lost");
                    return;
                }
            }
        }
        let mut out = Vec::new();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        for &i in items {
            let it = batch.items[i];
            let action = buf[it.action..it.doc].trim_ascii_end();
            let doc = buf[it.doc..it.end].trim_ascii_end();
            out.extend_from_slice(b"{\"time\":\"");
            out.extend_from_slice(now.as_bytes());
            out.extend_from_slice(format!("\",\"status\":{status},\"reason\":").as_bytes());
            crate::enrich::write_json_str(&mut out, reason.as_bytes());
            out.extend_from_slice(b",\"action\":");
            out.extend_from_slice(action);
            out.extend_from_slice(b",\"document\":");
            out.extend_from_slice(doc);
            out.extend_from_slice(b"}\n");
        }
        let path = dl.path.clone();
        let f = dl.file.as_mut().expect("opened");
        if let Err(e) = f.write_all(&out).and_then(|_| f.sync_data()) {
            tracing::error!(path = %path.display(), error = %e, "writing the dead-letter file failed");
        }
        tracing::warn!(status, reason = %snippet(reason.as_bytes()), records = items.len(), "records dead-lettered");
    }
}

/// The request body for `group` (indices into `batch.items`): a zero-copy slice of `buf` when the group is a run of
/// consecutive items (a whole batch, or half of one after a split), else the items copied together (retries).
fn group_body(batch: &Batch, buf: &bytes::Bytes, group: &[usize]) -> bytes::Bytes {
    let consecutive = group
        .windows(2)
        .all(|w| w[1] == w[0] + 1 && batch.items[w[0]].end == batch.items[w[1]].action);
    match (group.first(), group.last()) {
        (Some(&first), Some(&last)) if consecutive => {
            buf.slice(batch.items[first].action..batch.items[last].end)
        }
        _ => {
            let mut body = Vec::with_capacity(
                group
                    .iter()
                    .map(|&i| batch.items[i].end - batch.items[i].action)
                    .sum(),
            );
            for &i in group {
                let it = batch.items[i];
                body.extend_from_slice(&buf[it.action..it.end]);
            }
            body.into()
        }
    }
}

/// Byte-level check of a compact bulk response: exactly one top-level `"errors":false` (no `"errors":true`) and one
/// `"status":` key per item. Inside JSON strings a `"` is escaped, so these patterns only match keys; a response
/// this does not recognise (pretty-printed, reordered, failed items) goes to the structural parse instead.
fn clean_response(body: &[u8], items: usize) -> bool {
    use memchr::memmem;
    memmem::find_iter(body, b"\"errors\":false").count() == 1
        && memmem::find(body, b"\"errors\":true").is_none()
        && memmem::find_iter(body, b"\"status\":").count() == items
}

fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(300)]);
    s.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(json: &str) -> (ItemWrapper, u16) {
        let w: ItemWrapper = serde_json::from_str(json).unwrap();
        let st = w.result().unwrap().status;
        (w, st)
    }

    #[test]
    fn summary_counts_items_and_a_missing_errors_flag_means_look_closer() {
        let s: BulkSummary = serde_json::from_str(
            r#"{"took":1,"errors":false,"items":[{"create":{"status":201,"_shards":{"total":1}}},{"create":{"status":201}}]}"#,
        )
        .unwrap();
        assert!(!s.errors);
        assert_eq!(s.items.0, 2);
        let s: BulkSummary = serde_json::from_str(r#"{"items":[]}"#).unwrap();
        assert!(s.errors);
    }

    #[test]
    fn clean_response_needs_errors_false_and_one_status_per_item() {
        let ok = br#"{"took":1,"errors":false,"items":[{"create":{"_id":"a","status":201}},{"create":{"_id":"b\"status\":","status":201}}]}"#;
        assert!(clean_response(ok, 2));
        assert!(!clean_response(ok, 3));
        let bad = br#"{"took":1,"errors":true,"items":[{"create":{"status":201}},{"create":{"status":429}}]}"#;
        assert!(!clean_response(bad, 2));
        assert!(!clean_response(
            br#"{"errors": false,"items":[{"create":{"status":201}}]}"#,
            1
        ));
    }

    #[test]
    fn conflict_is_success_only_for_create() {
        let (w, st) = item(
            r#"{"create":{"_id":"a","status":409,"error":{"type":"version_conflict_engine_exception"}}}"#,
        );
        assert_eq!(classify(&w, st), ItemClass::AlreadyStored);
        for action in ["index", "update", "delete"] {
            let (w, st) = item(&format!(r#"{{"{action}":{{"_id":"a","status":409}}}}"#));
            assert_eq!(classify(&w, st), ItemClass::Reject(409), "{action}");
        }
        let (w, st) = item(r#"{"create":{"_id":"a","status":201}}"#);
        assert_eq!(classify(&w, st), ItemClass::Stored);
        let (w, st) = item(r#"{"create":{"_id":"a","status":429}}"#);
        assert_eq!(classify(&w, st), ItemClass::Retry);
        let (w, st) = item(r#"{"create":{"_id":"a","status":400}}"#);
        assert_eq!(classify(&w, st), ItemClass::Reject(400));
    }
}
