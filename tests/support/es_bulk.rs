//! A strict Elasticsearch `_bulk` test server (axum on 127.0.0.1:0) for the log shipper's tests.
//!
//! It follows the documented protocol (shared/reference/logs-and-elasticsearch.md) and checks:
//! - only `POST /_bulk` and `POST /<index>/_bulk`; `Content-Type` must be `application/x-ndjson`
//!   (406 otherwise, as Elasticsearch answers); `Content-Encoding: gzip` bodies are inflated;
//! - bodies over `max_content_length` get 413; a configured `Authorization` value is required (401);
//! - the body is NDJSON: every line, including the last, ends with `\n`; no empty lines; each
//!   action line is one JSON object with exactly one of `index`/`create`/`update`/`delete` and only
//!   known metadata keys; `_type` is rejected on ES 8 (400 illegal_argument_exception) and only
//!   `_doc` accepted on ES 7; `_index` comes from the line or the URL; a malformed action line
//!   fails the whole request with 400 (as Elasticsearch does); a source line that is not a JSON
//!   object fails only its item (400 mapper_parsing_exception);
//! - `create` of an existing `_id` is a 409 version_conflict_engine_exception; data streams accept
//!   only `create` and need `@timestamp`;
//! - items are answered in request order with `errors` set when any failed; documents are stored per
//!   index in arrival order;
//! - it can be told to fail a fraction of items with 429/500/400 (seeded, so runs are repeatable),
//!   to reject documents whose `message` contains `MAPPING-ERROR` with 400, and to go down (the
//!   listener is closed: connections are refused) and come back on the same port;
//! - on demand it answers every request as a whole with a given status (`set_whole_request_status`, e.g. 404
//!   from a wrong path prefix behind a proxy, 405, 415), and it can reject a whole request with 400 when any
//!   line contains `REQUEST-ERROR` (`set_request_error_marker`), as Elasticsearch or a proxy does for a body
//!   it cannot take at all;
//! - `?filter_path=` is honoured on the bulk answer as Elasticsearch documents it: comma-separated dotted paths,
//!   `*` matches one key (`**` any number of keys), a path keeps its whole subtree, and objects or arrays left
//!   empty are dropped — so `filter_path=items.*.error` alone returns only the failed items, which is why a
//!   sender must also ask for `items.*.status` (unit tests in tests/log_shipper/es_server.rs).
//!
//! By concept: this file (the server, its state and the strict path that stores documents),
//! `es_bulk/filter_path.rs` (`?filter_path=`), `es_bulk/bench.rs` (benchmark mode, which checks the
//! framing cheaply and stores nothing). Explicit `#[path]`s, so the file also works where it is
//! included by `#[path]` (log-shipper/benches/e2e.rs).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

#[path = "es_bulk/bench.rs"]
mod bench;
#[path = "es_bulk/filter_path.rs"]
mod filter_path;

pub use filter_path::{FilterPath, Keep};

/// Behaviour switches.
#[derive(Debug, Clone)]
pub struct Options {
    /// 7 or 8.
    pub version: u8,
    /// Largest accepted body (after inflating), in bytes.
    pub max_content_length: usize,
    /// Required `Authorization` header value, if any.
    pub authorization: Option<String>,
    /// Names that are data streams.
    pub data_streams: HashSet<String>,
    /// Keep documents (tests) or, when false, benchmark mode: check the framing cheaply and remember ids only
    /// (see `bulk_bench`), so a throughput benchmark measures the shipper rather than this server.
    pub store_documents: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            version: 8,
            max_content_length: 100 << 20,
            authorization: None,
            data_streams: HashSet::new(),
            store_documents: true,
        }
    }
}

/// What the server has seen.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: u64,
    pub rejected_requests: u64,
    pub items: u64,
    pub created: u64,
    pub conflicts: u64,
    pub injected_429: u64,
    pub injected_500: u64,
    pub injected_400: u64,
    pub gzip_requests: u64,
}

#[derive(Default)]
struct Index {
    docs: Vec<(String, Value)>,
    ids: HashMap<String, usize>,
}

struct Inner {
    indices: BTreeMap<String, Index>,
    /// Benchmark mode: hashes of (index, id) seen, for 409 on a repeated `create` (the hash is the key already).
    bench_ids: HashSet<u64, std::hash::BuildHasherDefault<bench::IdHasher>>,
    fail_429: f64,
    fail_500: f64,
    fail_400: f64,
    rng: u64,
    stats: Stats,
    auto_id: u64,
    whole_request_status: Option<u16>,
    request_error_marker: bool,
    /// For each `_id`, the rank of the first item carrying it over all requests (failed attempts included): the
    /// order in which the client first sent its records.
    first_sent: HashMap<String, u64>,
}

struct Shared {
    opts: Options,
    inner: Mutex<Inner>,
}

/// A running test server.
pub struct EsServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl EsServer {
    /// Starts on a free 127.0.0.1 port.
    pub async fn start(opts: Options) -> EsServer {
        let shared = Arc::new(Shared {
            opts,
            inner: Mutex::new(Inner {
                indices: BTreeMap::new(),
                bench_ids: HashSet::default(),
                fail_429: 0.0,
                fail_500: 0.0,
                fail_400: 0.0,
                rng: 0x9e37_79b9_7f4a_7c15,
                stats: Stats::default(),
                auto_id: 0,
                whole_request_status: None,
                request_error_marker: false,
                first_sent: HashMap::new(),
            }),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test server");
        let addr = listener.local_addr().unwrap();
        let mut s = EsServer {
            addr,
            shared,
            stop: None,
            task: None,
        };
        s.serve(listener);
        s
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (tx, mut rx) = watch::channel(false);
        let app = app(self.shared.clone());
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        }));
        self.stop = Some(tx);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Fails these fractions of items (0.0–1.0) with 429, 500 and 400.
    pub fn set_failures(&self, p429: f64, p500: f64, p400: f64) {
        let mut g = self.shared.inner.lock().unwrap();
        g.fail_429 = p429;
        g.fail_500 = p500;
        g.fail_400 = p400;
    }

    /// Answers every request as a whole with this status (`None`: normal service).
    pub fn set_whole_request_status(&self, status: Option<u16>) {
        self.shared.inner.lock().unwrap().whole_request_status = status;
    }

    /// When on, a request whose body contains `REQUEST-ERROR` anywhere is rejected as a whole with 400.
    pub fn set_request_error_marker(&self, on: bool) {
        self.shared.inner.lock().unwrap().request_error_marker = on;
    }

    /// Closes the listener and open connections: clients get "connection refused".
    pub async fn go_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(std::time::Duration::from_secs(3), &mut task)
                .await
                .is_err()
            {
                // A connection did not finish in time: stop the server task and its connections.
                task.abort();
            }
        }
    }

    /// Listens again on the same port.
    pub async fn come_up(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => {
                    self.serve(l);
                    return;
                }
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("test server cannot rebind {}: {e}", self.addr),
            }
        }
    }

    pub fn stats(&self) -> Stats {
        self.shared.inner.lock().unwrap().stats.clone()
    }

    /// For each `_id` seen, the rank of the first item that carried it (in request order; failed attempts and
    /// requests refused as a whole while down do not count, items answered 429 do).
    pub fn first_sent(&self) -> HashMap<String, u64> {
        self.shared.inner.lock().unwrap().first_sent.clone()
    }

    /// Documents of one index in arrival order.
    pub fn docs(&self, index: &str) -> Vec<(String, Value)> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .indices
            .get(index)
            .map(|i| i.docs.clone())
            .unwrap_or_default()
    }

    /// Names of the indices.
    pub fn indices(&self) -> Vec<String> {
        self.shared
            .inner
            .lock()
            .unwrap()
            .indices
            .keys()
            .cloned()
            .collect()
    }

    /// Every stored document: (index, id, source), per index in arrival order.
    pub fn all_docs(&self) -> Vec<(String, String, Value)> {
        let g = self.shared.inner.lock().unwrap();
        let mut out = Vec::new();
        for (name, idx) in &g.indices {
            for (id, v) in &idx.docs {
                out.push((name.clone(), id.clone(), v.clone()));
            }
        }
        out
    }

    pub fn doc_count(&self) -> usize {
        self.shared
            .inner
            .lock()
            .unwrap()
            .indices
            .values()
            .map(|i| i.docs.len())
            .sum()
    }
}

fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_bulk", post(bulk_root))
        .route("/{index}/_bulk", post(bulk_index))
        // The size limit is `max_content_length`, checked after inflating (axum's 2 MB default would answer 413 early).
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(shared)
}

fn error(status: StatusCode, kind: &str, reason: String) -> Response {
    (status, axum::Json(json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status.as_u16()}))).into_response()
}

async fn bulk_root(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let filter = q.get("filter_path").map(|f| FilterPath::parse(f));
    bulk(s, None, filter.as_ref(), headers, body)
}

async fn bulk_index(
    State(s): State<Arc<Shared>>,
    Path(index): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let filter = q.get("filter_path").map(|f| FilterPath::parse(f));
    bulk(s, Some(index), filter.as_ref(), headers, body)
}

fn reject(s: &Shared, r: Response) -> Response {
    s.inner.lock().unwrap().stats.rejected_requests += 1;
    r
}

fn bulk(
    s: Arc<Shared>,
    url_index: Option<String>,
    filter: Option<&FilterPath>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (forced, marker) = {
        let mut g = s.inner.lock().unwrap();
        g.stats.requests += 1;
        (g.whole_request_status, g.request_error_marker)
    };
    if let Some(code) = forced {
        let status = StatusCode::from_u16(code).expect("valid forced status");
        return reject(
            &s,
            error(
                status,
                "forced_status",
                format!("the test server was told to answer {code}"),
            ),
        );
    }
    if let Some(want) = &s.opts.authorization {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
            return reject(
                &s,
                error(
                    StatusCode::UNAUTHORIZED,
                    "security_exception",
                    "missing authentication credentials".into(),
                ),
            );
        }
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime != "application/x-ndjson" {
        return reject(
            &s,
            error(
                StatusCode::NOT_ACCEPTABLE,
                "media_type_header_exception",
                format!("Content-Type header [{ct}] is not supported"),
            ),
        );
    }
    let body: std::borrow::Cow<'_, [u8]> = match headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
    {
        Some("gzip") => {
            s.inner.lock().unwrap().stats.gzip_requests += 1;
            let mut out = Vec::new();
            if flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .is_err()
            {
                return reject(
                    &s,
                    error(
                        StatusCode::BAD_REQUEST,
                        "parse_exception",
                        "invalid gzip body".into(),
                    ),
                );
            }
            out.into()
        }
        None | Some("identity") => std::borrow::Cow::Borrowed(&body[..]),
        Some(other) => {
            return reject(
                &s,
                error(
                    StatusCode::BAD_REQUEST,
                    "illegal_argument_exception",
                    format!("unsupported Content-Encoding {other}"),
                ),
            )
        }
    };
    if body.len() > s.opts.max_content_length {
        return reject(
            &s,
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "content_too_long",
                format!("body of {} bytes exceeds max_content_length", body.len()),
            ),
        );
    }
    if body.is_empty() {
        return reject(
            &s,
            error(
                StatusCode::BAD_REQUEST,
                "action_request_validation_exception",
                "Validation Failed: 1: no requests added;".into(),
            ),
        );
    }
    if !body.ends_with(b"\n") {
        return reject(
            &s,
            error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline [\\n]".into(),
            ),
        );
    }
    if marker && body.windows(13).any(|w| w == b"REQUEST-ERROR") {
        return reject(
            &s,
            error(
                StatusCode::BAD_REQUEST,
                "illegal_argument_exception",
                "the request contains REQUEST-ERROR".into(),
            ),
        );
    }
    if !s.opts.store_documents {
        return bench::bulk_bench(&s, url_index.as_deref(), filter, &body);
    }
    let lines: Vec<&[u8]> = body[..body.len() - 1].split(|&b| b == b'\n').collect();
    // First pass: validate every action line (a bad one fails the whole request).
    struct Op<'a> {
        action: String,
        index: String,
        id: Option<String>,
        source: Option<&'a [u8]>,
    }
    let mut ops = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line_no = i + 1;
        let line = lines[i];
        if line.is_empty() {
            return reject(
                &s,
                error(
                    StatusCode::BAD_REQUEST,
                    "illegal_argument_exception",
                    format!("empty line [{line_no}] in bulk body"),
                ),
            );
        }
        let v: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                return reject(
                    &s,
                    error(
                        StatusCode::BAD_REQUEST,
                        "x_content_parse_exception",
                        format!("[{line_no}] malformed action/metadata line: {e}"),
                    ),
                )
            }
        };
        let Some(obj) = v.as_object().filter(|o| o.len() == 1) else {
            return reject(
                &s,
                error(
                    StatusCode::BAD_REQUEST,
                    "illegal_argument_exception",
                    format!("Malformed action/metadata line [{line_no}], expected a single action"),
                ),
            );
        };
        let (action, meta) = obj.iter().next().unwrap();
        if !["index", "create", "update", "delete"].contains(&action.as_str()) {
            return reject(&s, error(StatusCode::BAD_REQUEST, "illegal_argument_exception", format!("Malformed action/metadata line [{line_no}], expected one of [create, delete, index, update] but found [{action}]")));
        }
        let Some(meta) = meta.as_object() else {
            return reject(
                &s,
                error(
                    StatusCode::BAD_REQUEST,
                    "illegal_argument_exception",
                    format!("Malformed action/metadata line [{line_no}], expected START_OBJECT"),
                ),
            );
        };
        for (k, val) in meta {
            match k.as_str() {
                "_index" | "_id" | "routing" | "pipeline" | "require_alias" | "if_seq_no"
                | "if_primary_term" | "version" | "version_type" | "dynamic_templates" => {}
                "_type" if s.opts.version == 7 && val == "_doc" => {}
                _ => {
                    return reject(
                        &s,
                        error(
                            StatusCode::BAD_REQUEST,
                            "illegal_argument_exception",
                            format!(
                            "Action/metadata line [{line_no}] contains an unknown parameter [{k}]"
                        ),
                        ),
                    )
                }
            }
        }
        let index = match meta
            .get("_index")
            .and_then(|v| v.as_str())
            .map(String::from)
            .or_else(|| url_index.clone())
        {
            Some(ix) => ix,
            None => {
                return reject(
                    &s,
                    error(
                        StatusCode::BAD_REQUEST,
                        "action_request_validation_exception",
                        format!("Validation Failed: 1: index is missing ([{line_no}])"),
                    ),
                )
            }
        };
        if index != index.to_lowercase() || index.starts_with(['_', '-', '+']) {
            return reject(
                &s,
                error(
                    StatusCode::BAD_REQUEST,
                    "invalid_index_name_exception",
                    format!("Invalid index name [{index}]"),
                ),
            );
        }
        let id = meta.get("_id").and_then(|v| v.as_str()).map(String::from);
        let source = if action == "delete" {
            None
        } else {
            i += 1;
            match lines.get(i) {
                Some(src) => Some(*src),
                None => {
                    return reject(
                        &s,
                        error(
                            StatusCode::BAD_REQUEST,
                            "illegal_argument_exception",
                            format!("action [{action}] at line [{line_no}] has no source line"),
                        ),
                    )
                }
            }
        };
        ops.push(Op {
            action: action.clone(),
            index,
            id,
            source,
        });
        i += 1;
    }
    // Second pass: apply, item by item, in order.
    let mut g = s.inner.lock().unwrap();
    let mut items: Vec<Value> = Vec::with_capacity(ops.len());
    let mut errors = false;
    for op in ops {
        g.stats.items += 1;
        if let Some(id) = &op.id {
            let rank = g.stats.items;
            g.first_sent.entry(id.clone()).or_insert(rank);
        }
        let item_err = |status: u16, kind: &str, reason: String, id: &Option<String>| json!({op.action.clone(): {"_index": op.index, "_id": id, "status": status, "error": {"type": kind, "reason": reason}}});
        // Injected failures first (as a loaded cluster would answer).
        let r = next_f64(&mut g.rng);
        let (f429, f500, f400) = (g.fail_429, g.fail_500, g.fail_400);
        let injected = if r < f429 {
            g.stats.injected_429 += 1;
            Some((
                429,
                "es_rejected_execution_exception",
                "rejected execution of coordinating operation",
            ))
        } else if r < f429 + f500 {
            g.stats.injected_500 += 1;
            Some((500, "internal_server_error", "injected failure"))
        } else {
            None
        };
        if let Some((status, kind, reason)) = injected {
            errors = true;
            items.push(item_err(status, kind, reason.into(), &op.id));
            continue;
        }
        let src: Option<Map<String, Value>> = match op.source {
            Some(bytes) => match serde_json::from_slice::<Value>(bytes) {
                Ok(Value::Object(m)) => Some(m),
                _ => {
                    errors = true;
                    items.push(item_err(
                        400,
                        "document_parsing_exception",
                        "failed to parse: source is not a JSON object".into(),
                        &op.id,
                    ));
                    continue;
                }
            },
            None => None,
        };
        if r < f429 + f500 + f400
            || src
                .as_ref()
                .and_then(|m| m.get("message"))
                .and_then(|m| m.as_str())
                .is_some_and(|m| m.contains("MAPPING-ERROR"))
        {
            g.stats.injected_400 += 1;
            errors = true;
            items.push(item_err(
                400,
                "mapper_parsing_exception",
                "failed to parse field [message] of type [long]".into(),
                &op.id,
            ));
            continue;
        }
        let is_stream = s.opts.data_streams.contains(&op.index);
        if is_stream && op.action != "create" {
            errors = true;
            items.push(item_err(
                400,
                "illegal_argument_exception",
                format!(
                    "only write ops with an op_type of create are allowed in data streams (got {})",
                    op.action
                ),
                &op.id,
            ));
            continue;
        }
        if is_stream && !src.as_ref().is_some_and(|m| m.contains_key("@timestamp")) {
            errors = true;
            items.push(item_err(
                400,
                "illegal_argument_exception",
                "data stream timestamp field [@timestamp] is missing".into(),
                &op.id,
            ));
            continue;
        }
        let id = match &op.id {
            Some(id) => id.clone(),
            None => {
                g.auto_id += 1;
                format!("auto-{}", g.auto_id)
            }
        };
        let idx = g.indices.entry(op.index.clone()).or_default();
        let exists = idx.ids.get(&id).copied();
        let (status, result) = match (op.action.as_str(), exists) {
            ("create", Some(_)) => {
                g.stats.conflicts += 1;
                errors = true;
                items.push(json!({"create": {"_index": op.index, "_id": id, "status": 409, "error": {"type": "version_conflict_engine_exception", "reason": format!("[{id}]: version conflict, document already exists (current version [1])")}}}));
                continue;
            }
            ("create", None) | ("index", None) => {
                idx.ids.insert(id.clone(), idx.docs.len());
                idx.docs.push((id.clone(), Value::Object(src.unwrap())));
                g.stats.created += 1;
                (201, "created")
            }
            ("index", Some(pos)) => {
                idx.docs[pos].1 = Value::Object(src.unwrap());
                (200, "updated")
            }
            ("update", Some(pos)) => {
                if let (Value::Object(d), Some(Value::Object(patch))) =
                    (&mut idx.docs[pos].1, src.unwrap().get("doc").cloned())
                {
                    d.extend(patch);
                }
                (200, "updated")
            }
            ("delete", Some(pos)) => {
                idx.docs.remove(pos);
                idx.ids = idx
                    .docs
                    .iter()
                    .enumerate()
                    .map(|(i, (id, _))| (id.clone(), i))
                    .collect();
                (200, "deleted")
            }
            _ => {
                errors = true;
                items.push(item_err(
                    404,
                    "document_missing_exception",
                    format!("[{id}]: document missing"),
                    &Some(id.clone()),
                ));
                continue;
            }
        };
        items.push(json!({op.action.clone(): {"_index": op.index, "_id": id, "_version": 1, "result": result, "_shards": {"total": 1, "successful": 1, "failed": 0}, "_seq_no": 0, "_primary_term": 1, "status": status}}));
    }
    let answer = json!({"took": 1, "errors": errors, "items": items});
    let answer = match filter {
        Some(f) => f.apply(&answer),
        None => answer,
    };
    (StatusCode::OK, axum::Json(answer)).into_response()
}

/// `{"create":{"_index":"<index>","_id":"<id>"}}` exactly, with both strings free of escapes and control characters:
/// the index and id, borrowed. `None` for any other line (the caller then parses it strictly with serde).
pub fn compact_create(line: &[u8]) -> Option<(&str, &str)> {
    fn plain(b: &[u8]) -> Option<&str> {
        if b.iter().any(|&c| c == b'\\' || c < 0x20) {
            return None;
        }
        std::str::from_utf8(b).ok()
    }
    let rest = line.strip_prefix(b"{\"create\":{\"_index\":\"")?;
    let q = memchr::memchr(b'"', rest)?;
    let index = plain(&rest[..q])?;
    let rest = rest[q..].strip_prefix(b"\",\"_id\":\"")?;
    let q = memchr::memchr(b'"', rest)?;
    let id = plain(&rest[..q])?;
    (&rest[q..] == b"\"}}").then_some((index, id))
}

fn next_f64(state: &mut u64) -> f64 {
    // xorshift64*: repeatable per server.
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
}
