//! Pod volume identity: which pod spec volume (and PersistentVolumeClaim) each volume directory under `<kubelet root>/pods/<uid>/volumes/` is, and the API server claim lookup behind it.
//!
//! The kubelet reports a volume under its pod spec name (`spec.volumes[].name`) and adds a
//! `pvcRef` for a `persistentVolumeClaim` or generic `ephemeral` volume
//! (pkg/kubelet/server/stats/volume_stat_calculator.go). Most plugins name the directory after
//! the spec volume, but a PersistentVolume's directory is named after the PV
//! (`kubernetes.io~csi/pvc-3f2a…/mount`). The PV of a directory is matched to a claim by, in order:
//! the spec name; the claim's bound volume (`spec.volumeName`) from the API server when the
//! lookup is on (for CSI the PV name is `specVolID` of the `vol_data.json` the kubelet writes
//! beside `mount/`); elimination (one claim and one directory left). Otherwise the directory
//! name stays and there is no `pvcRef`.

use crate::discovery::metadata::{PodList, PodMeta};
use crate::problems::kubernetes::{ApiAccess, KubernetesError};
use crate::proc::fs::VolumeDir;
use crate::summary::PvcReference;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// The CSI plugin's directory under `volumes/`.
pub const CSI_PLUGIN: &str = "kubernetes.io~csi";

/// Errors of volume identity; none of them stops collection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `vol_data.json` exists but cannot be read.
    #[error("cannot read CSI volume data {path}: {source}")]
    VolDataRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `vol_data.json` is not the kubelet's JSON object with a `specVolID`.
    #[error("malformed CSI volume data {path}: {message}")]
    VolData { path: PathBuf, message: String },
    /// A directory that matches no volume of the known pod spec.
    #[error("pod {namespace}/{pod}: volume directory {plugin}/{dir} matches no volume of the pod spec (claims without a known volume: {claims:?}); reported under its directory name without pvcRef")]
    Unmapped {
        namespace: String,
        pod: String,
        plugin: String,
        dir: String,
        claims: Vec<String>,
    },
    /// The API server could not be reached or answered something unusable.
    #[error("GET {url}: {message}")]
    Lookup { url: String, message: String },
}

impl Error {
    /// The `kind` label of `vigil_collector_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::VolDataRead { .. } | Error::VolData { .. } => "volume_data",
            Error::Unmapped { .. } => "volume_unmapped",
            Error::Lookup { .. } => "pvc_lookup",
        }
    }
}

/// What the kubelet's CSI plugin writes to `<volume dir>/vol_data.json` (pkg/volume/csi,
/// `volDataKey`): `specVolID` is the PV name for a persistent volume, the spec volume name for an
/// inline (`volumeLifecycleMode: Ephemeral`) one.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VolData {
    #[serde(rename = "specVolID")]
    pub spec_vol_id: String,
    #[serde(rename = "driverName", default)]
    pub driver_name: String,
    #[serde(rename = "volumeHandle", default)]
    pub volume_handle: String,
    #[serde(rename = "volumeLifecycleMode", default)]
    pub volume_lifecycle_mode: String,
}

impl VolData {
    /// A PersistentVolume (not an inline CSI volume of the pod spec).
    pub fn persistent(&self) -> bool {
        self.volume_lifecycle_mode != "Ephemeral"
    }
}

/// Reads `<dir>/vol_data.json`; `Ok(None)` when there is none.
pub fn read_vol_data(dir: &Path) -> Result<Option<VolData>, Error> {
    let path = dir.join("vol_data.json");
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::VolDataRead { path, source }),
    };
    let data: VolData = serde_json::from_slice(&text).map_err(|e| Error::VolData {
        path: path.clone(),
        message: e.to_string(),
    })?;
    if data.spec_vol_id.is_empty() {
        return Err(Error::VolData {
            path,
            message: "empty specVolID".into(),
        });
    }
    Ok(Some(data))
}

/// The name and claim a volume directory is reported under.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VolumeIdentity {
    /// The pod spec volume name (the directory name when unknown).
    pub name: String,
    pub pvc_ref: Option<PvcReference>,
}

/// Names the volume directories of one pod (`volumes` is `<kubelet root>/pods/<uid>/volumes`),
/// in the order of `dirs`. Without the pod spec (no `--kubelet-url`) every directory keeps its
/// name and nothing is an error.
pub fn identify(
    volumes: &Path,
    dirs: &[VolumeDir],
    pod: Option<&PodMeta>,
) -> (Vec<VolumeIdentity>, Vec<Error>) {
    let mut out: Vec<VolumeIdentity> = dirs
        .iter()
        .map(|d| VolumeIdentity {
            name: d.name.clone(),
            pvc_ref: None,
        })
        .collect();
    let mut errors = Vec::new();
    let Some(pod) = pod.filter(|p| !p.volumes.is_empty()) else {
        return (out, errors);
    };
    let spec = &pod.volumes;
    let mut spec_used = vec![false; spec.len()];
    let mut done = vec![false; dirs.len()];
    // Directory `i` is spec volume `s`.
    let take =
        |i: usize, s: usize, out: &mut [VolumeIdentity], used: &mut [bool], done: &mut [bool]| {
            used[s] = true;
            done[i] = true;
            out[i] = VolumeIdentity {
                name: spec[s].name.clone(),
                pvc_ref: spec[s].claim.as_ref().map(|c| PvcReference {
                    name: c.clone(),
                    namespace: pod.namespace.clone(),
                }),
            };
        };
    // The PV name of each directory (CSI: from vol_data.json) and whether it is surely a PV.
    let mut pv: Vec<(String, bool)> = Vec::with_capacity(dirs.len());
    for d in dirs {
        let mut entry = (d.name.clone(), false);
        if d.plugin == CSI_PLUGIN {
            match read_vol_data(&volumes.join(&d.plugin).join(&d.name)) {
                Ok(Some(v)) => entry = (v.spec_vol_id.clone(), v.persistent()),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        pv.push(entry);
    }
    // 1. The directory is named after the spec volume (every plugin but a PV's), under the
    //    plugin of the volume's kind when that is known: a PV directory that happens to carry a
    //    configMap's or an emptyDir's name is not that volume.
    for (i, d) in dirs.iter().enumerate() {
        if pv[i].1 {
            continue;
        }
        if let Some(s) = (0..spec.len()).find(|&s| {
            !spec_used[s] && spec[s].name == d.name && spec[s].plugin.is_none_or(|p| p == d.plugin)
        }) {
            take(i, s, &mut out, &mut spec_used, &mut done);
        }
    }
    // 2. The PV a claim is bound to (API server lookup).
    for i in 0..dirs.len() {
        if done[i] {
            continue;
        }
        let found = (0..spec.len()).find(|&s| {
            !spec_used[s]
                && spec[s].claim.is_some()
                && spec[s].bound_volume.as_deref() == Some(pv[i].0.as_str())
        });
        if let Some(s) = found {
            take(i, s, &mut out, &mut spec_used, &mut done);
        }
    }
    // 3. Elimination: one claim volume and one directory left.
    let left_dirs: Vec<usize> = (0..dirs.len()).filter(|&i| !done[i]).collect();
    let left_claims: Vec<usize> = (0..spec.len())
        .filter(|&s| !spec_used[s] && spec[s].claim.is_some())
        .collect();
    if let ([i], [s]) = (left_dirs.as_slice(), left_claims.as_slice()) {
        take(*i, *s, &mut out, &mut spec_used, &mut done);
    }
    for (i, d) in dirs.iter().enumerate() {
        if !done[i] {
            errors.push(Error::Unmapped {
                namespace: pod.namespace.clone(),
                pod: pod.name.clone(),
                plugin: d.plugin.clone(),
                dir: d.name.clone(),
                claims: left_claims
                    .iter()
                    .filter(|&&s| !spec_used[s])
                    .filter_map(|&s| spec[s].claim.clone())
                    .collect(),
            });
        }
    }
    (out, errors)
}

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
/// Each API request is bounded by this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The part of a PersistentVolumeClaim the lookup reads.
#[derive(Debug, Deserialize)]
struct Claim {
    kind: String,
    #[serde(default)]
    spec: ClaimSpec,
}

#[derive(Debug, Default, Deserialize)]
struct ClaimSpec {
    #[serde(rename = "volumeName", default)]
    volume_name: String,
}

/// Asks the API server which PV each claim is bound to
/// (`GET /api/v1/namespaces/<ns>/persistentvolumeclaims/<claim>`), in the background.
pub struct ClaimLookup {
    api: ApiAccess,
    client: reqwest::Client,
    cache: Arc<ClaimCache>,
}

impl ClaimLookup {
    /// Builds the client (the CA bundle is checked here) with the default intervals.
    pub fn new(api: ApiAccess) -> Result<Self, KubernetesError> {
        Self::with_cache(
            api,
            Arc::new(ClaimCache::new(BOUND_TTL, RETRY)),
            REQUEST_TIMEOUT,
        )
    }

    /// As `new`, with the cache and the per-request timeout given.
    pub fn with_cache(
        api: ApiAccess,
        cache: Arc<ClaimCache>,
        timeout: Duration,
    ) -> Result<Self, KubernetesError> {
        Ok(ClaimLookup {
            client: api.client(timeout)?,
            api,
            cache,
        })
    }

    /// The cache the kubelet `/pods` fetcher reads.
    pub fn cache(&self) -> Arc<ClaimCache> {
        self.cache.clone()
    }

    /// One GET of a claim.
    pub async fn get(&self, namespace: &str, claim: &str) -> (Answer, Option<Error>) {
        let url = format!(
            "{}/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}",
            self.api.api_url.trim_end_matches('/')
        );
        let fail = |message: String| {
            (
                Answer::Failed,
                Some(Error::Lookup {
                    url: url.clone(),
                    message,
                }),
            )
        };
        let resp = match self.api.auth(self.client.get(&url)).send().await {
            Ok(r) => r,
            Err(e) => return fail(e.to_string()),
        };
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return (Answer::NotFound, None);
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let hint = if status == reqwest::StatusCode::FORBIDDEN {
                " (the service account needs get on persistentvolumeclaims)"
            } else {
                ""
            };
            return fail(format!(
                "answered {status}{hint}: {}",
                body.chars().take(200).collect::<String>()
            ));
        }
        match resp.json::<Claim>().await {
            Ok(c) if c.kind != "PersistentVolumeClaim" => fail(format!(
                "answered kind {:?}, not a PersistentVolumeClaim",
                c.kind
            )),
            Ok(c) if c.spec.volume_name.is_empty() => (Answer::Pending, None),
            Ok(c) => (Answer::Bound(c.spec.volume_name), None),
            Err(e) => fail(format!("not a PersistentVolumeClaim: {e}")),
        }
    }

    /// Asks about due claims when woken (a new claim) or every second, until shutdown. Requests
    /// are sequential and each bounded by the client timeout; nothing here blocks a pass.
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
pub(crate) mod tests {
    use super::*;
    use crate::discovery::metadata::SpecVolume;
    use crate::proc::fs::pod_volume_dirs;

    pub(crate) fn testdata(p: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/volumes")
            .join(p)
    }

    const WEB_UID: &str = "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901";
    const PV1: &str = "pvc-1111aaaa-0000-4000-8000-000000000001";
    const PV2: &str = "pvc-2222bbbb-0000-4000-8000-000000000002";

    fn spec(name: &str, claim: Option<&str>, bound: Option<&str>) -> SpecVolume {
        SpecVolume {
            name: name.into(),
            claim: claim.map(str::to_string),
            bound_volume: bound.map(str::to_string),
            plugin: None,
        }
    }

    fn pod(volumes: Vec<SpecVolume>) -> PodMeta {
        PodMeta {
            uid: WEB_UID.into(),
            name: "web-0".into(),
            namespace: "shop".into(),
            volumes,
            ..Default::default()
        }
    }

    /// (directory, reported name, claim) of one volume directory.
    type Row = (String, String, Option<String>);

    /// The rows of each volume directory of a fixture pod, and the errors.
    fn run(root: &Path, pod: Option<&PodMeta>) -> (Vec<Row>, Vec<Error>) {
        let dirs = pod_volume_dirs(root).unwrap();
        let (ids, errors) = identify(root, &dirs, pod);
        let rows = dirs
            .iter()
            .zip(ids)
            .map(|(d, id)| {
                if let Some(p) = &id.pvc_ref {
                    assert_eq!(p.namespace, "shop");
                }
                (d.name.clone(), id.name, id.pvc_ref.map(|p| p.name))
            })
            .collect();
        (rows, errors)
    }

    fn row(dir: &str, name: &str, claim: Option<&str>) -> Row {
        (dir.into(), name.into(), claim.map(str::to_string))
    }

    fn web_root() -> PathBuf {
        testdata(&format!("kubelet/pods/{WEB_UID}/volumes"))
    }

    fn web_spec(data_bound: Option<&str>) -> PodMeta {
        pod(vec![
            spec("data", Some("data-web-0"), data_bound),
            spec("cache", None, None),
            spec("config", None, None),
            spec("scratch", Some("web-0-scratch"), None),
            spec("kube-api-access-x7k2p", None, None),
        ])
    }

    #[test]
    fn vol_data_json_as_the_kubelet_writes_it() {
        let v = read_vol_data(&web_root().join(CSI_PLUGIN).join(PV1))
            .unwrap()
            .unwrap();
        assert_eq!(v.spec_vol_id, PV1);
        assert_eq!(v.driver_name, "ebs.csi.aws.com");
        assert_eq!(v.volume_handle, "vol-0123456789abcdef0");
        assert!(v.persistent());
        let inline = read_vol_data(
            &testdata("malformed/volumes")
                .join(CSI_PLUGIN)
                .join("inline-certs"),
        )
        .unwrap()
        .unwrap();
        assert!(!inline.persistent());
        // A directory without one (not CSI) is no error.
        assert_eq!(
            read_vol_data(&web_root().join("kubernetes.io~configmap/config")).unwrap(),
            None
        );
    }

    /// A hand-named PV directory carrying the name of a configMap volume of the same pod, under
    /// a plugin that sorts first (`kubernetes.io~cephfs`), is not taken for the configMap: the
    /// configMap's own directory is, and the PV goes to the claim by elimination.
    #[test]
    fn a_pv_named_like_a_configmap_volume_is_not_that_volume() {
        let t = tempfile::tempdir().unwrap();
        for plugin in ["kubernetes.io~cephfs", "kubernetes.io~configmap"] {
            std::fs::create_dir_all(t.path().join(plugin).join("data")).unwrap();
        }
        let mut config = spec("data", None, None);
        config.plugin = Some("kubernetes.io~configmap");
        let p = pod(vec![config, spec("storage", Some("storage-web-0"), None)]);
        let (rows, errors) = run(t.path(), Some(&p));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            rows,
            vec![
                row("data", "storage", Some("storage-web-0")),
                row("data", "data", None)
            ]
        );
        let dirs = pod_volume_dirs(t.path()).unwrap();
        assert_eq!(dirs[0].plugin, "kubernetes.io~cephfs");
        // The plugin of each kind, from the pod spec as the kubelet's /pods gives it.
        for (json, plugin) in [
            (
                r#"{"name":"a","configMap":{"name":"c"}}"#,
                Some("kubernetes.io~configmap"),
            ),
            (
                r#"{"name":"a","secret":{"secretName":"s"}}"#,
                Some("kubernetes.io~secret"),
            ),
            (
                r#"{"name":"a","emptyDir":{}}"#,
                Some("kubernetes.io~empty-dir"),
            ),
            (
                r#"{"name":"a","projected":{"sources":[]}}"#,
                Some("kubernetes.io~projected"),
            ),
            (
                r#"{"name":"a","downwardAPI":{"items":[]}}"#,
                Some("kubernetes.io~downward-api"),
            ),
            (
                r#"{"name":"a","persistentVolumeClaim":{"claimName":"c"}}"#,
                None,
            ),
            (r#"{"name":"a","nfs":{"server":"s","path":"/"}}"#, None),
        ] {
            let v: crate::discovery::metadata::Volume = serde_json::from_str(json).unwrap();
            assert_eq!(v.plugin(), plugin, "{json}");
        }
    }

    #[test]
    fn without_a_pod_spec_directories_keep_their_names() {
        let (rows, errors) = run(&web_root(), None);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(
            rows.iter().all(|(d, n, c)| d == n && c.is_none()),
            "{rows:?}"
        );
        let (rows, errors) = run(&web_root(), Some(&pod(vec![])));
        assert!(errors.is_empty() && rows.iter().all(|(d, n, _)| d == n));
    }

    #[test]
    fn bound_volume_then_elimination_name_pv_directories() {
        let (rows, errors) = run(&web_root(), Some(&web_spec(Some(PV1))));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            rows,
            vec![
                row("cache", "cache", None),
                row("config", "config", None),
                row(PV1, "data", Some("data-web-0")),
                // The generic ephemeral volume's claim is <pod>-<volume>.
                row(PV2, "scratch", Some("web-0-scratch")),
            ]
        );
        // The other binding gives the other answer: the lookup decides, not the order.
        let (rows, _) = run(&web_root(), Some(&web_spec(Some(PV2))));
        assert_eq!(rows[2], row(PV1, "scratch", Some("web-0-scratch")));
        assert_eq!(rows[3], row(PV2, "data", Some("data-web-0")));
    }

    #[test]
    fn one_claim_and_one_directory_left_match_by_elimination() {
        let p = pod(vec![
            spec("data", Some("data-web-0"), None),
            spec("cache", None, None),
            spec("config", None, None),
        ]);
        let root = tempfile::tempdir().unwrap();
        for d in [
            "kubernetes.io~empty-dir/cache",
            "kubernetes.io~configmap/config",
            "kubernetes.io~aws-ebs/pv-77",
        ] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        let (rows, errors) = run(root.path(), Some(&p));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(rows[2], row("pv-77", "data", Some("data-web-0")));
    }

    #[test]
    fn ambiguous_pv_directories_keep_their_names_and_are_counted() {
        let (rows, errors) = run(&web_root(), Some(&web_spec(None)));
        assert_eq!(rows[0], row("cache", "cache", None));
        assert_eq!(rows[2], row(PV1, PV1, None));
        assert_eq!(rows[3], row(PV2, PV2, None));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.kind() == "volume_unmapped"));
        let msg = errors[0].to_string();
        assert!(
            msg.contains("shop/web-0")
                && msg.contains(PV1)
                && msg.contains("data-web-0")
                && msg.contains("web-0-scratch"),
            "{msg}"
        );
    }

    #[test]
    fn malformed_vol_data_is_counted_and_mapping_goes_on() {
        let root = testdata("malformed/volumes");
        let p = pod(vec![
            spec("inline-certs", None, None),
            spec("logs", Some("logs-0"), None),
            spec("data", Some("data-0"), Some("local-pv-7f3a")),
        ]);
        let (rows, errors) = run(&root, Some(&p));
        assert_eq!(
            rows,
            vec![
                // Inline CSI volume: named after the spec volume.
                row("inline-certs", "inline-certs", None),
                // Non-CSI PV: its directory name is the PV name.
                row("local-pv-7f3a", "data", Some("data-0")),
                // Malformed vol_data.json: the directory name stands for the PV; elimination.
                row(
                    "pvc-3333cccc-0000-4000-8000-000000000003",
                    "logs",
                    Some("logs-0")
                ),
            ]
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].kind(), "volume_data");
        let msg = errors[0].to_string();
        assert!(
            msg.contains("pvc-3333cccc-0000-4000-8000-000000000003/vol_data.json"),
            "{msg}"
        );
        // An unreadable one (a directory in its place) is counted the same way.
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join(CSI_PLUGIN).join("pv-x/vol_data.json")).unwrap();
        let (rows, errors) = run(t.path(), Some(&pod(vec![spec("d", Some("c"), None)])));
        assert_eq!(rows, vec![row("pv-x", "d", Some("c"))]);
        assert_eq!(errors[0].kind(), "volume_data", "{errors:?}");
    }

    // ---- the API server lookup, against a loopback server with the API's GET semantics ----

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

    fn access(url: &str, token: &str) -> ApiAccess {
        ApiAccess {
            api_url: url.into(),
            token: Some(token.into()),
            token_file: None,
            ca_pem: None,
        }
    }

    fn web_list() -> PodList {
        serde_json::from_str(&std::fs::read_to_string(testdata("pods.json")).unwrap()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lookup_follows_the_api_get_semantics() {
        let url = api_server().await;
        let cache = Arc::new(ClaimCache::new(BOUND_TTL, RETRY));
        let l =
            ClaimLookup::with_cache(access(&url, "tok"), cache, Duration::from_secs(5)).unwrap();
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
            msg.contains("403")
                && msg.contains("get on persistentvolumeclaims")
                && msg.contains("/shop/persistentvolumeclaims/forbidden"),
            "{msg}"
        );
        // A wrong token: 401, failed (never taken for "no such claim").
        let bad = ClaimLookup::with_cache(
            access(&url, "nope"),
            Arc::new(ClaimCache::new(BOUND_TTL, RETRY)),
            Duration::from_secs(5),
        )
        .unwrap();
        let (a, e) = bad.get("shop", "data-web-0").await;
        assert_eq!(a, Answer::Failed);
        assert_eq!(e.unwrap().kind(), "pvc_lookup");
        // Nothing listening.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let none = ClaimLookup::with_cache(
            access(&format!("http://{closed}"), "tok"),
            Arc::new(ClaimCache::new(BOUND_TTL, RETRY)),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(none.get("shop", "data-web-0").await.0, Answer::Failed);
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
        let lookup = ClaimLookup::new(access(&url, "tok")).unwrap();
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
        let lookup = ClaimLookup::with_cache(
            access(&format!("http://{addr}"), "tok"),
            cache.clone(),
            Duration::from_secs(5),
        )
        .unwrap();
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
        // The hung request ends at the client timeout as a counted failure.
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
