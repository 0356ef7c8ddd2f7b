//! The API server lookup behind volume identity: which PersistentVolume each claim is bound to
//! (`GET /api/v1/namespaces/{ns}/persistentvolumeclaims/{name}` through kube's client,
//! decided by the HTTP status), cached between the lookup task and the kubelet `/pods` fetcher
//! so that a pass never waits on the network.

use super::Error;
use crate::discovery::metadata::PodList;
use crate::problems::kubernetes::snippet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::GetParams;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// What the API server said about a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Bound to this PersistentVolume (`spec.volumeName`).
    Bound(String),
    /// The claim exists but is not bound yet.
    Pending,
    /// 404: no such claim.
    NotFound,
    /// Not answered (transport error, timeout, 401/403/5xx, not a claim).
    Failed,
}

/// The `answer` label of each kind of answer, in `Answer::index` order.
const ANSWER_LABELS: [&str; 4] = ["bound", "pending", "not_found", "error"];

impl Answer {
    /// Its place in `ANSWER_LABELS` and the lookup counters.
    fn index(&self) -> usize {
        match self {
            Answer::Bound(_) => 0,
            Answer::Pending => 1,
            Answer::NotFound => 2,
            Answer::Failed => 3,
        }
    }

    fn label(&self) -> &'static str {
        ANSWER_LABELS[self.index()]
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// The last answer (`None`: never asked yet).
    answer: Option<Answer>,
    /// When it was asked; an entry is due again after the TTL of its answer.
    asked: Option<Instant>,
}

/// The claim → PV cache between the lookup task and the kubelet `/pods` fetcher. Reading it
/// never waits on the network.
#[derive(Debug)]
pub struct ClaimCache {
    entries: Mutex<HashMap<(String, String), Entry>>,
    wake: Notify,
    /// How long a bound claim's answer is used before it is asked again.
    bound_ttl: Duration,
    /// How long before a claim that is pending, missing or failed is asked again.
    retry: Duration,
    /// Lookups by answer: bound, pending, not_found, error.
    lookups: [AtomicU64; 4],
}

impl ClaimCache {
    /// A cache re-asking bound claims after `bound_ttl` and others after `retry`.
    pub fn new(bound_ttl: Duration, retry: Duration) -> Self {
        ClaimCache {
            entries: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            bound_ttl,
            retry,
            lookups: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the bound volumes known now to `list.claim_volumes`, asks for the claims not known
    /// yet (in the background) and forgets claims no pod on the node uses any more.
    pub fn annotate(&self, list: &mut PodList) {
        let wanted: HashSet<(String, String)> =
            list.claims().map(|(ns, c)| (ns.to_string(), c)).collect();
        let mut new = false;
        {
            let mut entries = self.lock();
            entries.retain(|k, _| wanted.contains(k));
            for key in wanted {
                match entries.get(&key) {
                    Some(Entry {
                        answer: Some(Answer::Bound(pv)),
                        ..
                    }) => {
                        list.claim_volumes.insert(key, pv.clone());
                    }
                    Some(_) => {}
                    None => {
                        entries.insert(
                            key,
                            Entry {
                                answer: None,
                                asked: None,
                            },
                        );
                        new = true;
                    }
                }
            }
        }
        if new {
            self.wake.notify_one();
        }
    }

    /// The bound volume of a claim, if known.
    pub fn bound_volume(&self, namespace: &str, claim: &str) -> Option<String> {
        match self.lock().get(&(namespace.to_string(), claim.to_string())) {
            Some(Entry {
                answer: Some(Answer::Bound(pv)),
                ..
            }) => Some(pv.clone()),
            _ => None,
        }
    }

    /// Claims to ask about now.
    fn due(&self, now: Instant) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .filter(|(_, e)| match (&e.answer, e.asked) {
                (Some(Answer::Bound(_)), Some(t)) => now.duration_since(t) >= self.bound_ttl,
                (_, Some(t)) => now.duration_since(t) >= self.retry,
                (_, None) => true,
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Records an answer. A failed lookup keeps a previous bound answer (the binding of a
    /// claim does not change while it exists).
    fn store(&self, key: (String, String), answer: Answer, now: Instant) {
        self.lookups[answer.index()].fetch_add(1, Ordering::Relaxed);
        let mut entries = self.lock();
        // Only claims still wanted (annotate may have dropped it meanwhile).
        if let Some(e) = entries.get_mut(&key) {
            let keep_bound = answer == Answer::Failed && matches!(e.answer, Some(Answer::Bound(_)));
            if !keep_bound {
                e.answer = Some(answer);
            }
            e.asked = Some(now);
        }
    }

    /// Lookups so far by answer (`bound`, `pending`, `not_found`, `error`).
    pub fn lookups(&self) -> [(&'static str, u64); 4] {
        std::array::from_fn(|i| (ANSWER_LABELS[i], self.lookups[i].load(Ordering::Relaxed)))
    }

    /// The lookup's self-metrics in the Prometheus text format.
    pub fn write_metrics(&self, out: &mut String) {
        use vigil_common::exposition::{Format, Kind, Writer};
        let mut w = Writer::new(out, Format::Text);
        let name = "vigil_collector_pvc_lookups_total";
        w.header(
            name,
            Kind::Counter,
            "PersistentVolumeClaim lookups on the API server by answer (bound, pending, not_found, error).",
        );
        for (answer, n) in self.lookups() {
            w.sample(name, &[("answer", answer)], n);
        }
        w.gauge(
            "vigil_collector_pvc_claims",
            "Claims of pods on this node the lookup keeps.",
            self.lock().len() as u64,
        );
    }
}

/// Default: re-ask a bound claim after this long (it only changes if deleted and re-created).
pub const BOUND_TTL: Duration = Duration::from_secs(600);
/// Default: re-ask a pending, missing or failed claim after this long.
pub const RETRY: Duration = Duration::from_secs(30);
/// Each API request is bounded by this as a whole (kube's own retries of a 429, 503 or 504
/// included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the API server which PV each claim is bound to
/// (`GET /api/v1/namespaces/<ns>/persistentvolumeclaims/<claim>`), in the background.
pub struct ClaimLookup {
    client: kube::Client,
    cache: Arc<ClaimCache>,
    timeout: Duration,
}

impl ClaimLookup {
    /// Asks through `client` with the default intervals and timeout.
    pub fn new(client: kube::Client) -> Self {
        Self::with_cache(
            client,
            Arc::new(ClaimCache::new(BOUND_TTL, RETRY)),
            REQUEST_TIMEOUT,
        )
    }

    /// As `new`, with the cache and the per-request timeout given.
    pub fn with_cache(client: kube::Client, cache: Arc<ClaimCache>, timeout: Duration) -> Self {
        ClaimLookup {
            client,
            cache,
            timeout,
        }
    }

    /// The cache the kubelet `/pods` fetcher reads.
    pub fn cache(&self) -> Arc<ClaimCache> {
        self.cache.clone()
    }

    /// One GET of a claim.
    pub async fn get(&self, namespace: &str, claim: &str) -> (Answer, Option<Error>) {
        let fail = |message: String| {
            (
                Answer::Failed,
                Some(Error::Lookup {
                    path: format!("/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}"),
                    message,
                }),
            )
        };
        let req = match kube::core::Request::new(format!(
            "/api/v1/namespaces/{namespace}/persistentvolumeclaims"
        ))
        .get(claim, &GetParams::default())
        {
            Ok(r) => r,
            Err(e) => return fail(format!("the request cannot be built: {e}")),
        };
        // Decided by the HTTP status itself: a proxy's error body is not always a Status.
        let sent = vigil_common::kubernetes::send(&self.client, req);
        let (status, body) = match tokio::time::timeout(self.timeout, sent).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return fail(e),
            Err(_) => return fail(format!("no answer within {:?}", self.timeout)),
        };
        if status.as_u16() == 404 {
            return (Answer::NotFound, None);
        }
        if !status.is_success() {
            let hint = if status.as_u16() == 403 {
                " (the service account needs get on persistentvolumeclaims)"
            } else {
                ""
            };
            return fail(format!("answered {status}{hint}: {}", snippet(&body)));
        }
        match serde_json::from_slice::<PersistentVolumeClaim>(&body) {
            Ok(c) => match c.spec.and_then(|s| s.volume_name).filter(|v| !v.is_empty()) {
                Some(pv) => (Answer::Bound(pv), None),
                None => (Answer::Pending, None),
            },
            Err(e) => fail(format!("not a PersistentVolumeClaim: {e}")),
        }
    }

    /// Asks about due claims when woken (a new claim) or every second, until shutdown. Requests
    /// are sequential and each bounded by the lookup's timeout; nothing here blocks a pass.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut last: HashMap<(String, String), Answer> = HashMap::new();
        loop {
            for key in self.cache.due(Instant::now()) {
                if *shutdown.borrow() {
                    return;
                }
                let (answer, err) = tokio::select! {
                    a = self.get(&key.0, &key.1) => a,
                    _ = shutdown.wait_for(|s| *s) => return,
                };
                // Log a change of answer once, not every retry.
                if last.get(&key) != Some(&answer) {
                    match (&answer, &err) {
                        (_, Some(e)) => {
                            tracing::warn!(namespace = %key.0, claim = %key.1, error = %e, "claim lookup failed; will retry")
                        }
                        (Answer::NotFound, _) => {
                            tracing::warn!(namespace = %key.0, claim = %key.1, "claim not found on the API server")
                        }
                        _ => {
                            tracing::debug!(namespace = %key.0, claim = %key.1, answer = answer.label(), "claim lookup")
                        }
                    }
                    last.insert(key.clone(), answer.clone());
                }
                self.cache.store(key, answer, Instant::now());
            }
            if last.len() > 10_000 {
                last.clear();
            }
            tokio::select! {
                _ = self.cache.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;
    use std::path::Path;
    use vigil_common::kubernetes::{Access, Source};

    use axum::extract::Path as UrlPath;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;

    /// `GET /api/v1/namespaces/{ns}/persistentvolumeclaims/{name}` as the API server answers
    /// it: 200 with the claim, 404 with a Status, 401 without the bearer token.
    async fn pvc(
        UrlPath((ns, name)): UrlPath<(String, String)>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        let status = |code: StatusCode, reason: &str, message: String| {
            let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()});
            (code, axum::Json(body)).into_response()
        };
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer tok") {
            return status(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "Unauthorized".into(),
            );
        }
        let claim = |volume: Option<&str>| {
            let mut c = serde_json::json!({"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": ns, "uid": "0f0e0d0c-1111-2222-3333-444455556666"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                         "storageClassName": "gp3", "volumeMode": "Filesystem"},
                "status": {"phase": "Pending"}});
            if let Some(v) = volume {
                c["spec"]["volumeName"] = v.into();
                c["status"] = serde_json::json!({"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}});
            }
            axum::Json(c).into_response()
        };
        match (ns.as_str(), name.as_str()) {
            ("shop", "data-web-0") => claim(Some(PV1)),
            ("shop", "pending-0") => claim(None),
            ("shop", "not-a-claim") => axum::Json(serde_json::json!({"kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"name": name, "namespace": ns}, "data": {}})).into_response(),
            // A proxy in front of the API server answers JSON that is not a Status.
            ("shop", "proxy-gone") => (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({"error": "no route"}))).into_response(),
            ("shop", "proxy-denied") => (StatusCode::FORBIDDEN, axum::Json(serde_json::json!({"error": "denied by proxy"}))).into_response(),
            ("shop", "busy") => status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "try again later".into()),
            ("shop", "forbidden") => status(StatusCode::FORBIDDEN, "Forbidden", format!(
                "persistentvolumeclaims \"{name}\" is forbidden: User \"system:serviceaccount:vigil:collector\" cannot get resource \"persistentvolumeclaims\" in API group \"\" in the namespace \"{ns}\"")),
            _ => status(StatusCode::NOT_FOUND, "NotFound", format!("persistentvolumeclaims \"{name}\" not found")),
        }
    }

    async fn api_server() -> String {
        let app = axum::Router::new().route(
            "/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}",
            axum::routing::get(pvc),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    /// A kube client of the API server at `url` whose bearer token comes from a token file (as
    /// in a pod; kube re-reads it about once a minute), and the directory holding the file.
    async fn client(url: &str, token: &str) -> (kube::Client, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), token).unwrap();
        let mut access = Access::new(Source::Url(url.into())).with_timeout(Duration::from_secs(5));
        access.token_file = Some(dir.path().join("token"));
        let (client, _) = crate::problems::kubernetes::client(&access).await.unwrap();
        (client, dir)
    }

    fn web_list() -> PodList {
        serde_json::from_str(&std::fs::read_to_string(testdata("pods.json")).unwrap()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookup_follows_the_api_get_semantics() {
        let url = api_server().await;
        let cache = Arc::new(ClaimCache::new(BOUND_TTL, RETRY));
        let (c, _token) = client(&url, "tok").await;
        let l = ClaimLookup::with_cache(c, cache, Duration::from_secs(5));
        let (a, e) = l.get("shop", "data-web-0").await;
        assert_eq!((a, e.is_none()), (Answer::Bound(PV1.into()), true));
        let (a, e) = l.get("shop", "pending-0").await;
        assert_eq!((a, e.is_none()), (Answer::Pending, true));
        let (a, e) = l.get("shop", "gone").await;
        assert_eq!((a, e.is_none()), (Answer::NotFound, true));
        let (a, e) = l.get("shop", "forbidden").await;
        assert_eq!(a, Answer::Failed);
        let msg = e.unwrap().to_string();
        assert!(
            msg.contains("answered 403 Forbidden")
                && msg.contains("get on persistentvolumeclaims")
                && msg.contains("/shop/persistentvolumeclaims/forbidden")
                && msg.contains("cannot get resource"),
            "{msg}"
        );
        // Decided by the HTTP status, whatever the body: a proxy's 404 is "no such claim", its
        // 403 a failure with the hint; a 503 is answered once (kube's own retry is off).
        let (a, e) = l.get("shop", "proxy-gone").await;
        assert_eq!((a, e.is_none()), (Answer::NotFound, true));
        let (a, e) = l.get("shop", "proxy-denied").await;
        let msg = e.unwrap().to_string();
        assert_eq!(a, Answer::Failed);
        assert!(msg.contains("answered 403 Forbidden") && msg.contains("denied by proxy"), "{msg}");
        let (a, e) = l.get("shop", "busy").await;
        let msg = e.unwrap().to_string();
        assert_eq!(a, Answer::Failed);
        assert!(msg.contains("answered 503 Service Unavailable: try again later"), "{msg}");
        // An answer that is not a claim is an error, not a pending claim.
        let (a, e) = l.get("shop", "not-a-claim").await;
        assert_eq!(a, Answer::Failed);
        let msg = e.unwrap().to_string();
        assert!(msg.contains("not a PersistentVolumeClaim"), "{msg}");
        // A wrong token: 401, failed (never taken for "no such claim").
        let (c, _token) = client(&url, "nope").await;
        let bad = ClaimLookup::with_cache(
            c,
            Arc::new(ClaimCache::new(BOUND_TTL, RETRY)),
            Duration::from_secs(5),
        );
        let (a, e) = bad.get("shop", "data-web-0").await;
        assert_eq!(a, Answer::Failed);
        let e = e.unwrap();
        assert_eq!(e.kind(), "pvc_lookup");
        assert!(e.to_string().contains("answered 401 Unauthorized"), "{e}");
        // Nothing listening: the transport's cause is in the message.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let (c, _token) = client(&format!("http://{closed}"), "tok").await;
        let none = ClaimLookup::with_cache(
            c,
            Arc::new(ClaimCache::new(BOUND_TTL, RETRY)),
            Duration::from_secs(5),
        );
        let (a, e) = none.get("shop", "data-web-0").await;
        assert_eq!(a, Answer::Failed);
        let msg = e.unwrap().to_string();
        assert!(msg.to_lowercase().contains("refused"), "{msg}");
    }

    /// The lookup's timeout bounds a request as a whole, whatever the client's own timeouts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lookup_without_an_answer_fails_at_the_lookup_timeout() {
        // Listening but never accepted: no byte of answer ever comes.
        let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let access = Access::new(Source::Url(format!(
            "http://{}",
            hung.local_addr().unwrap()
        )));
        let (c, _) = crate::problems::kubernetes::client(&access).await.unwrap();
        let l = ClaimLookup::with_cache(
            c,
            Arc::new(ClaimCache::new(BOUND_TTL, RETRY)),
            Duration::from_millis(300),
        );
        let t = Instant::now();
        let (a, e) = l.get("shop", "data-web-0").await;
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert_eq!(a, Answer::Failed);
        let msg = e.unwrap().to_string();
        assert!(msg.contains("no answer within 300ms"), "{msg}");
    }

    #[test]
    fn cache_answers_expire_and_a_failure_keeps_a_binding() {
        let cache = ClaimCache::new(Duration::from_secs(600), Duration::from_secs(30));
        let mut list = web_list();
        cache.annotate(&mut list);
        let t0 = Instant::now();
        let mut due = cache.due(t0);
        due.sort();
        assert_eq!(
            due,
            vec![
                ("shop".to_string(), "data-web-0".to_string()),
                ("shop".to_string(), "web-0-scratch".to_string())
            ]
        );
        let key = |c: &str| ("shop".to_string(), c.to_string());
        cache.store(key("data-web-0"), Answer::Bound(PV1.into()), t0);
        cache.store(key("web-0-scratch"), Answer::NotFound, t0);
        assert!(cache.due(t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(
            cache.due(t0 + Duration::from_secs(31)),
            vec![key("web-0-scratch")]
        );
        assert_eq!(cache.due(t0 + Duration::from_secs(601)).len(), 2);
        cache.store(
            key("data-web-0"),
            Answer::Failed,
            t0 + Duration::from_secs(601),
        );
        assert_eq!(
            cache.bound_volume("shop", "data-web-0").as_deref(),
            Some(PV1)
        );
        let mut list = web_list();
        cache.annotate(&mut list);
        assert_eq!(
            list.claim_volumes
                .get(&key("data-web-0"))
                .map(String::as_str),
            Some(PV1)
        );
        assert_eq!(list.claim_volumes.len(), 1);
        // Claims no pod uses any more are forgotten.
        cache.annotate(&mut PodList::default());
        assert_eq!(cache.bound_volume("shop", "data-web-0"), None);
        assert_eq!(cache.lookups()[0], ("bound", 1));
        assert_eq!(cache.lookups()[3], ("error", 1));
        let mut text = String::new();
        cache.write_metrics(&mut text);
        assert!(
            text.contains("vigil_collector_pvc_lookups_total{answer=\"bound\"} 1\n"),
            "{text}"
        );
    }

    fn fixture_collector() -> (crate::pass::Collector, crate::config::Config) {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let cfg = crate::config::Config {
            cgroup_root: base.join("cgroup-v2-systemd"),
            proc_root: base.join("proc-root-absent"),
            pod_log_root: base.join("logs/pods"),
            container_log_root: Some(base.join("logs/containers")),
            node_name: Some("fixture-node".into()),
            kubelet_root: testdata("kubelet"),
            ..Default::default()
        };
        (
            crate::pass::Collector::new(Arc::new(cfg.clone())).unwrap(),
            cfg,
        )
    }

    /// The volumes of the fixture pod in the Summary document, as (name, pvcRef).
    fn summary_volumes(
        snap: &crate::snapshot::Snapshot,
    ) -> Vec<(String, Option<(String, String)>)> {
        let summary = crate::http::summary::build(snap);
        let pod = summary
            .pods
            .iter()
            .find(|p| p.pod_ref.uid == WEB_UID)
            .expect("fixture pod");
        let mut v: Vec<_> = pod
            .volume
            .iter()
            .map(|v| {
                (
                    v.name.clone(),
                    v.pvc_ref
                        .as_ref()
                        .map(|p| (p.namespace.clone(), p.name.clone())),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// End to end in the crate: the lookup answers from a loopback API server, the kubelet
    /// `/pods` list is annotated from its cache, the pass names the PV directories after the
    /// spec with pvcRef, and /metrics carries kubelet_volume_stats_* per claim.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn looked_up_claims_name_volumes_in_the_summary_and_metrics() {
        let url = api_server().await;
        let (c, _token) = client(&url, "tok").await;
        let lookup = ClaimLookup::new(c);
        let cache = lookup.cache();
        let (stop_tx, stop) = watch::channel(false);
        let run = tokio::spawn(lookup.run(stop));
        // The kubelet fetcher annotates each /pods answer; the first one asks for the claims.
        let deadline = Instant::now() + Duration::from_secs(10);
        let list = loop {
            let mut list = web_list();
            cache.annotate(&mut list);
            if !list.claim_volumes.is_empty() {
                break list;
            }
            assert!(Instant::now() < deadline, "claim not looked up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // web-0-scratch does not exist on this API server (404): elimination names it.
        let (mut col, cfg) = fixture_collector();
        *col.kubelet_pods_slot().lock().unwrap() = Some(list);
        let snap = tokio::task::spawn_blocking(move || col.pass())
            .await
            .unwrap();
        let claim = |c: &str| Some(("shop".to_string(), c.to_string()));
        assert_eq!(
            summary_volumes(&snap),
            vec![
                ("cache".into(), None),
                ("config".into(), None),
                ("data".into(), claim("data-web-0")),
                ("scratch".into(), claim("web-0-scratch")),
            ]
        );
        assert_eq!(snap.self_stats.errors_by_kind.get("volume_unmapped"), None);
        let json = serde_json::to_value(crate::http::summary::build(&snap)).unwrap();
        let pod = json["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["podRef"]["uid"] == WEB_UID)
            .unwrap();
        let data = pod["volume"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "data")
            .unwrap();
        assert_eq!(
            data["pvcRef"],
            serde_json::json!({"name": "data-web-0", "namespace": "shop"})
        );
        // /metrics: one series per claim and figure, the values of the Summary document.
        let mut text = String::new();
        crate::http::metrics::render(&snap, &cfg, &mut text);
        let used = data["usedBytes"].as_u64().unwrap();
        let cap = data["capacityBytes"].as_u64().unwrap();
        let line = |name: &str, claim: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "{name}{{namespace=\"shop\",persistentvolumeclaim=\"{claim}\"}} "
                    ))
                })
                .unwrap_or_else(|| panic!("{name} {claim} missing"))
                .split(' ')
                .nth(1)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert_eq!(line("kubelet_volume_stats_used_bytes", "data-web-0"), used);
        assert_eq!(
            line("kubelet_volume_stats_capacity_bytes", "data-web-0"),
            cap
        );
        for m in ["available_bytes", "inodes", "inodes_free", "inodes_used"] {
            line(&format!("kubelet_volume_stats_{m}"), "web-0-scratch");
        }
        assert!(text.contains("# HELP kubelet_volume_stats_capacity_bytes [ALPHA] Capacity in bytes of the volume\n# TYPE kubelet_volume_stats_capacity_bytes gauge\n"));
        // Volumes without a claim are not in these metrics (as the kubelet).
        assert_eq!(text.matches("kubelet_volume_stats_used_bytes{").count(), 2);
        // The group can be switched off.
        let off = crate::config::Config {
            disable_metrics: vec!["volume_stats".into()],
            ..cfg
        };
        crate::http::metrics::render(&snap, &off, &mut text);
        assert!(!text.contains("kubelet_volume_stats_"));
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .unwrap()
            .unwrap();
    }

    /// A hung API server (accepts, never answers): annotating the kubelet list and the pass
    /// return at once; the volumes keep their directory names until an answer comes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hung_api_server_never_stalls_the_pass() {
        // Bound and listening but never accepted: connections complete in the kernel's
        // backlog and no byte of answer ever comes.
        let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = hung.local_addr().unwrap();
        let cache = Arc::new(ClaimCache::new(BOUND_TTL, RETRY));
        let (c, _token) = client(&format!("http://{addr}"), "tok").await;
        let lookup = ClaimLookup::with_cache(c, cache.clone(), Duration::from_secs(5));
        let (stop_tx, stop) = watch::channel(false);
        let run = tokio::spawn(lookup.run(stop));
        let mut list = web_list();
        let t = Instant::now();
        cache.annotate(&mut list);
        assert!(list.claim_volumes.is_empty());
        // The lookup is now waiting on the hung server; annotate again and run a pass.
        tokio::time::sleep(Duration::from_millis(200)).await;
        cache.annotate(&mut list);
        let (mut col, _) = fixture_collector();
        *col.kubelet_pods_slot().lock().unwrap() = Some(list);
        let snap = tokio::task::spawn_blocking(move || col.pass())
            .await
            .unwrap();
        let waited = t.elapsed();
        assert!(
            waited < Duration::from_secs(4),
            "the pass waited {waited:?} on the API server"
        );
        assert_eq!(
            cache.lookups()[3].1,
            0,
            "the lookup answered before its timeout"
        );
        // Two claims, two PV directories, nothing known: directory names, counted once each.
        let vols = summary_volumes(&snap);
        assert!(
            vols.contains(&(PV1.to_string(), None)) && !vols.iter().any(|(n, _)| n == "data"),
            "{vols:?}"
        );
        assert_eq!(
            snap.self_stats.errors_by_kind.get("volume_unmapped"),
            Some(&2)
        );
        // The hung request ends at the lookup's timeout as a counted failure.
        let deadline = Instant::now() + Duration::from_secs(10);
        while cache.lookups()[3].1 == 0 {
            assert!(Instant::now() < deadline, "the hung lookup never timed out");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .unwrap()
            .unwrap();
        drop(hung);
    }
}
