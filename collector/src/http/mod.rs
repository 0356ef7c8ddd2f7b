//! The collector's HTTP API: /metrics, /stats/summary, /healthz, /api/v1/containers.

pub mod metrics;
pub mod summary;

use crate::config::Config;
use crate::discovery::naming::Kind;
use crate::snapshot::{SharedSnapshot, Snapshot};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use std::time::SystemTime;

/// Extra exposition lines appended to /metrics by another subsystem (the problem detector).
pub type ExtraMetrics = Arc<dyn Fn(&mut String) + Send + Sync>;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub snapshot: SharedSnapshot,
    pub config: Arc<Config>,
    pub extra_metrics: Option<ExtraMetrics>,
}

impl AppState {
    pub fn new(snapshot: SharedSnapshot, config: Arc<Config>) -> Self {
        AppState {
            snapshot,
            config,
            extra_metrics: None,
        }
    }
    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The router (tests call it without a socket).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/stats/summary", get(summary_handler))
        .route("/healthz", get(healthz))
        .route("/api/v1/containers", get(containers))
        .with_state(state)
}

/// A stream of exposition chunks rendered on a blocking thread.
struct ChunkStream(tokio::sync::mpsc::Receiver<axum::body::Bytes>);

impl futures_core::Stream for ChunkStream {
    type Item = Result<axum::body::Bytes, std::convert::Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}

/// Streams the exposition in 64 KiB chunks as it is rendered: memory stays bounded whatever the
/// number of containers (a 1,000-container node writes ~18 MB).
async fn metrics_handler(State(st): State<AppState>) -> Response {
    let snap = st.current();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let config = st.config.clone();
    let extra = st.extra_metrics.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = metrics::Out::streaming(tx);
        metrics::render_to(&snap, &config, &mut out);
        let text: &mut String = &mut out;
        if let Some(extra) = &extra {
            extra(text);
        }
        vigil_server::write_metrics(text, false);
        out.finish();
    });
    (
        [(
            header::CONTENT_TYPE,
            vigil_common::exposition::TEXT_CONTENT_TYPE,
        )],
        axum::body::Body::from_stream(ChunkStream(rx)),
    )
        .into_response()
}

fn not_ready() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "no collection pass has completed yet\n",
    )
        .into_response()
}

async fn summary_handler(State(st): State<AppState>) -> Response {
    let snap = st.current();
    if !snap.ready {
        return not_ready();
    }
    // Serialized on a blocking thread straight into 64 KiB chunks: the JSON of a 1,000-container
    // node (several MB) never sits in memory whole, nor is it copied while a buffer grows.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter {
            buf: Vec::with_capacity(metrics::CHUNK_BYTES),
            tx,
        };
        let doc = summary::build(&snap);
        // An error here means the client went away: nothing is left to tell.
        if serde_json::to_writer(&mut out, &doc).is_ok() {
            let _ = std::io::Write::flush(&mut out);
        }
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(ChunkStream(rx)),
    )
        .into_response()
}

/// An `io::Write` that sends what it is given in chunks of about 64 KiB (from a blocking thread).
struct ChunkWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<axum::body::Bytes>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= metrics::CHUNK_BYTES {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(metrics::CHUNK_BYTES));
        self.tx
            .blocking_send(axum::body::Bytes::from(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

/// ok while the last pass is younger than three housekeeping intervals.
async fn healthz(State(st): State<AppState>) -> Response {
    let snap = st.current();
    if !snap.ready {
        return not_ready();
    }
    let age = SystemTime::now()
        .duration_since(snap.time)
        .unwrap_or_default();
    let limit = st.config.housekeeping_interval * 3;
    if age > limit {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "last collection was {:.1}s ago (limit {:.1}s)\n",
                age.as_secs_f64(),
                limit.as_secs_f64()
            ),
        )
            .into_response();
    }
    "ok\n".into_response()
}

async fn containers(State(st): State<AppState>) -> Response {
    let snap = st.current();
    if !snap.ready {
        return not_ready();
    }
    let list: Vec<serde_json::Value> = snap
        .containers
        .iter()
        .map(|c| {
            let kind = match &*c.kind {
                Kind::Container { .. } if c.identity.sandbox => "sandbox".to_string(),
                Kind::Container { runtime, .. } => format!("container ({runtime})"),
                Kind::Pod { qos, .. } => format!("pod ({qos})"),
                Kind::System(n) => format!("system ({n})"),
                Kind::Other => "cgroup".to_string(),
            };
            let s = &c.stats;
            serde_json::json!({
                "id": &*c.name,
                "kind": kind,
                "pod": c.identity.pod,
                "namespace": c.identity.namespace,
                "podUid": c.identity.pod_uid,
                "container": c.identity.container,
                "containerId": c.identity.container_id,
                "image": c.identity.image,
                "startTime": chrono::DateTime::<chrono::Utc>::from(c.start_time),
                "usageNanoCores": c.usage_nano_cores,
                "cpu": s.cpu.as_ref().map(|x| serde_json::json!({"usageNs": x.usage_ns, "userNs": x.user_ns, "systemNs": x.system_ns, "periods": x.periods, "throttledPeriods": x.throttled_periods, "throttledNs": x.throttled_ns})),
                "memory": s.memory.as_ref().map(|m| serde_json::json!({"usage": m.usage, "workingSet": m.working_set, "rss": m.rss, "cache": m.cache, "swap": m.swap, "mappedFile": m.mapped_file, "pgfault": m.pgfault, "pgmajfault": m.pgmajfault, "failcnt": m.failcnt, "oomKills": m.oom_kills})),
                "pids": s.pids.as_ref().map(|p| serde_json::json!({"current": p.current, "max": p.max})),
                "processes": c.processes.as_ref().map(|p| serde_json::json!({"processes": p.processes, "fileDescriptors": p.fds, "sockets": p.sockets})),
                "spec": {"cpuShares": s.spec.cpu_shares, "cpuQuotaUs": s.spec.cpu_quota_us, "cpuPeriodUs": s.spec.cpu_period_us, "memoryLimit": s.spec.memory_limit},
                "network": c.network.as_ref().map(|n| n.iter().map(|i| serde_json::json!({"name": i.name, "rxBytes": i.rx_bytes, "txBytes": i.tx_bytes})).collect::<Vec<_>>()),
                "rootfsBytes": c.rootfs.map(|u| u.bytes),
                "logsBytes": c.logs.map(|u| u.bytes),
            })
        })
        .collect();
    let n = &snap.node;
    axum::Json(serde_json::json!({
        "time": chrono::DateTime::<chrono::Utc>::from(snap.time),
        "node": {
            "name": snap.node_name,
            "cores": n.cpu.cores,
            "memoryBytes": n.memory.total,
            "bootTime": n.cpu.boot_time,
            "uptimeSeconds": n.uptime_seconds,
            "load": n.load,
            "usageNanoCores": snap.node_usage_nano_cores,
            "disks": n.disks.iter().map(|d| serde_json::json!({"name": d.name, "readBytes": d.read_bytes, "writeBytes": d.write_bytes, "reads": d.reads, "writes": d.writes})).collect::<Vec<_>>(),
        },
        "containers": list,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use std::sync::RwLock;
    use std::time::Duration;
    use tower::ServiceExt;

    fn state(snap: Snapshot) -> AppState {
        let config = Config {
            housekeeping_interval: Duration::from_secs(1),
            ..Default::default()
        };
        AppState::new(Arc::new(RwLock::new(Arc::new(snap))), Arc::new(config))
    }

    async fn status(st: &AppState, uri: &str) -> (StatusCode, String) {
        let resp = app(st.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let s = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (s, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn healthz_follows_the_age_of_the_last_pass() {
        // Before the first pass: 503, and the summary says why.
        let st = state(Snapshot::empty("n".into()));
        assert_eq!(
            status(&st, "/healthz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(&st, "/stats/summary").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        // A fresh pass: ok.
        let mut fresh = Snapshot::empty("n".into());
        fresh.ready = true;
        fresh.time = SystemTime::now();
        assert_eq!(
            status(&state(fresh.clone()), "/healthz").await.0,
            StatusCode::OK
        );
        // Older than three housekeeping intervals (3 s): 503 naming the age.
        let mut stale = fresh;
        stale.time = SystemTime::now() - Duration::from_secs(10);
        let (s, body) = status(&state(stale), "/healthz").await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("last collection was"), "{body}");
    }

    #[tokio::test]
    async fn summary_is_streamed_in_chunks_and_equals_the_document() {
        // 200 containers: a JSON body of several 64 KiB chunks.
        let tmp = tempfile::tempdir().unwrap();
        crate::fixture::generate_v2_tree(tmp.path(), 200).unwrap();
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let config = Config {
            cgroup_root: tmp.path().to_path_buf(),
            proc_root: base.join("proc-root-absent"),
            pod_log_root: base.join("logs/pods"),
            node_name: Some("stream-node".into()),
            ..Default::default()
        };
        let mut c = crate::pass::Collector::new(Arc::new(config)).unwrap();
        let snap = c.pass();
        let expected = serde_json::to_string(&summary::build(&snap)).unwrap();
        assert!(
            expected.len() > 3 * metrics::CHUNK_BYTES,
            "{} bytes",
            expected.len()
        );
        let (s, body) = status(&state(snap), "/stats/summary").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body, expected);
        let doc: crate::summary::Summary = serde_json::from_str(&body).unwrap();
        assert_eq!(doc.pods.len(), 100);
    }

    #[tokio::test]
    async fn metrics_have_help_type_and_contiguous_families() {
        let mut snap = Snapshot::empty("n".into());
        snap.ready = true;
        snap.time = SystemTime::now();
        let st = state(snap);
        let (s, body) = status(&st, "/metrics").await;
        assert_eq!(s, StatusCode::OK);
        let mut seen = std::collections::HashSet::new();
        let mut last = String::new();
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap().to_string();
            if name != last {
                assert!(seen.insert(name.clone()), "family {name} is split");
                assert!(
                    body.contains(&format!("# TYPE {name} ")),
                    "no TYPE for {name}"
                );
                last = name;
            }
        }
        assert!(seen.contains("machine_cpu_cores"));
    }
}
