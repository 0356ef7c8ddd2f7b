//! Pod and container names: from the kubelet's log layout (/var/log/pods, /var/log/containers)
//! and, when configured, from the kubelet's `/pods`.

use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Errors while reading metadata. None of them stops collection.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot list {path}: {source}")]
    List {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("kubelet {url}: {source}")]
    Kubelet { url: String, source: reqwest::Error },
    #[error("kubelet {url} answered {status}")]
    KubeletStatus { url: String, status: u16 },
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Error::List { .. } => "metadata_log_dir",
            Error::Kubelet { .. } | Error::KubeletStatus { .. } => "metadata_kubelet",
        }
    }
}

/// What is known about one container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerMeta {
    pub name: String,
    pub image: String,
    /// Requests and limits from the pod spec (cpu in millicores, memory in bytes) when the kubelet told us.
    pub cpu_request_millis: Option<u64>,
    pub memory_limit: Option<u64>,
}

/// What is known about one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodMeta {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    /// Container names seen in the pod's log directory.
    pub container_names: Vec<String>,
    /// Container id → metadata.
    pub containers: HashMap<String, ContainerMeta>,
    pub labels: BTreeMap<String, String>,
    /// The pod spec's volumes (`spec.volumes[]`), when the kubelet told us.
    pub volumes: Vec<SpecVolume>,
}

/// One volume of a pod spec, as far as the volume figures need it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecVolume {
    /// `spec.volumes[].name`: the name the kubelet reports the volume under.
    pub name: String,
    /// The PersistentVolumeClaim behind it: `persistentVolumeClaim.claimName`, or
    /// `<pod>-<volume>` for a generic ephemeral volume (`ephemeral`), as the kubelet names it.
    pub claim: Option<String>,
    /// The PersistentVolume the claim is bound to (the claim's `spec.volumeName`), when the
    /// API server lookup (`kubernetes_pvc_lookup`) has answered.
    pub bound_volume: Option<String>,
    /// The kubelet's plugin directory of the volume's kind, for the kinds that always have one
    /// (`kubernetes.io~configmap`, `~secret`, `~empty-dir`, `~projected`, `~downward-api`).
    pub plugin: Option<&'static str>,
}

/// Every pod's metadata, by uid.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub pods: HashMap<String, PodMeta>,
}

impl Metadata {
    /// Reads `/var/log/pods/<ns>_<pod>_<uid>/<container>/` and the
    /// `/var/log/containers/<pod>_<ns>_<container>-<id>.log` symlinks. A missing directory is
    /// not an error (a node without pods yet); an unreadable one is.
    pub fn from_log_dirs(pod_log_root: &Path, container_log_root: &Path) -> (Metadata, Vec<Error>) {
        let mut meta = Metadata::default();
        let mut errors = Vec::new();
        // (namespace, pod) → uid, to join the two layouts.
        let mut by_name: HashMap<(String, String), String> = HashMap::new();
        match std::fs::read_dir(pod_log_root) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let file_name = e.file_name();
                    let Some(dir) = file_name.to_str() else {
                        continue;
                    };
                    let mut parts = dir.splitn(3, '_');
                    let (Some(ns), Some(pod), Some(uid)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    let mut names: Vec<String> = std::fs::read_dir(e.path())
                        .map(|it| {
                            it.flatten()
                                .filter(|c| c.file_type().map(|t| t.is_dir()).unwrap_or(false))
                                .filter_map(|c| c.file_name().to_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    names.sort();
                    by_name.insert((ns.to_string(), pod.to_string()), uid.to_string());
                    meta.pods.insert(
                        uid.to_string(),
                        PodMeta {
                            uid: uid.to_string(),
                            name: pod.to_string(),
                            namespace: ns.to_string(),
                            container_names: names,
                            ..Default::default()
                        },
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => errors.push(Error::List {
                path: pod_log_root.to_path_buf(),
                source,
            }),
        }
        match std::fs::read_dir(container_log_root) {
            Ok(entries) => {
                for e in entries.flatten() {
                    let file_name = e.file_name();
                    let Some(f) = file_name.to_str() else {
                        continue;
                    };
                    let Some((pod, ns, container, id)) = parse_container_log_name(f) else {
                        continue;
                    };
                    if let Some(uid) = by_name.get(&(ns.to_string(), pod.to_string())) {
                        if let Some(p) = meta.pods.get_mut(uid) {
                            p.containers.entry(id.to_string()).or_default().name =
                                container.to_string();
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => errors.push(Error::List {
                path: container_log_root.to_path_buf(),
                source,
            }),
        }
        (meta, errors)
    }

    /// Adds what the kubelet's `/pods` says (names, labels, images, requests, limits).
    pub fn merge_pod_list(&mut self, list: &PodList) {
        for item in &list.items {
            let uid = item.metadata.uid.clone();
            if uid.is_empty() {
                continue;
            }
            let pod = self.pods.entry(uid.clone()).or_insert_with(|| PodMeta {
                uid: uid.clone(),
                ..Default::default()
            });
            pod.name = item.metadata.name.clone();
            pod.namespace = item.metadata.namespace.clone();
            pod.labels = item.metadata.labels.clone();
            pod.volumes = item
                .spec
                .volumes
                .iter()
                .map(|v| {
                    let claim = v.claim_name(&item.metadata.name);
                    let bound_volume = claim.as_ref().and_then(|c| {
                        list.claim_volumes
                            .get(&(item.metadata.namespace.clone(), c.clone()))
                            .cloned()
                    });
                    SpecVolume {
                        name: v.name.clone(),
                        claim,
                        bound_volume,
                        plugin: v.plugin(),
                    }
                })
                .collect();
            let spec_of = |name: &str| item.spec.containers.iter().find(|c| c.name == name);
            for status in &item.status.container_statuses {
                let id = status.container_id.rsplit("://").next().unwrap_or_default();
                if id.is_empty() {
                    continue;
                }
                let c = pod.containers.entry(id.to_string()).or_default();
                c.name = status.name.clone();
                c.image = status.image.clone();
                if let Some(spec) = spec_of(&status.name) {
                    if c.image.is_empty() {
                        c.image = spec.image.clone();
                    }
                    c.cpu_request_millis = spec
                        .resources
                        .requests
                        .get("cpu")
                        .and_then(|q| parse_cpu_millis(q));
                    c.memory_limit = spec
                        .resources
                        .limits
                        .get("memory")
                        .and_then(|q| parse_bytes(q));
                }
            }
            for c in &item.spec.containers {
                if !pod.container_names.contains(&c.name) {
                    pod.container_names.push(c.name.clone());
                }
            }
        }
    }
}

/// `<pod>_<namespace>_<container>-<id>.log` → its parts.
pub fn parse_container_log_name(f: &str) -> Option<(&str, &str, &str, &str)> {
    let stem = f.strip_suffix(".log")?;
    let (rest, id) = stem.rsplit_once('-')?;
    let mut parts = rest.splitn(3, '_');
    let (pod, ns, container) = (parts.next()?, parts.next()?, parts.next()?);
    if id.is_empty() || container.is_empty() {
        return None;
    }
    Some((pod, ns, container, id))
}

/// Kubernetes CPU quantity (`250m`, `1`, `0.5`) → millicores.
pub fn parse_cpu_millis(q: &str) -> Option<u64> {
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().ok();
    }
    q.parse::<f64>().ok().map(|c| (c * 1000.0).round() as u64)
}

/// Kubernetes memory quantity (`64Mi`, `1G`, `1000`) → bytes.
pub fn parse_bytes(q: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 12] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    for (suffix, mult) in UNITS {
        if let Some(n) = q.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|v| (v * mult as f64) as u64);
        }
    }
    q.parse::<f64>().ok().map(|v| v as u64)
}

/// The parts of the kubelet's `/pods` answer (a v1 PodList) the collector uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodList {
    #[serde(default)]
    pub items: Vec<Pod>,
    /// Not from the kubelet: (namespace, claim) → bound PersistentVolume name, added from the
    /// API server lookup's cache before the list is handed to the collection pass.
    #[serde(skip)]
    pub claim_volumes: HashMap<(String, String), String>,
}

impl PodList {
    /// The claims the pods' spec volumes refer to, as (namespace, claim name).
    pub fn claims(&self) -> impl Iterator<Item = (&str, String)> + '_ {
        self.items.iter().flat_map(|p| {
            p.spec.volumes.iter().filter_map(move |v| {
                Some((
                    p.metadata.namespace.as_str(),
                    v.claim_name(&p.metadata.name)?,
                ))
            })
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Pod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ObjectMeta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodSpec {
    #[serde(default)]
    pub containers: Vec<ContainerSpec>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
}

/// A pod spec volume (`spec.volumes[]`): its name and whether a claim is behind it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Volume {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "persistentVolumeClaim", default)]
    pub persistent_volume_claim: Option<ClaimSource>,
    /// A generic ephemeral volume: its claim is `<pod>-<volume>` (only presence matters).
    #[serde(default)]
    pub ephemeral: Option<serde::de::IgnoredAny>,
    /// Kinds whose plugin directory is known (only presence matters).
    #[serde(rename = "configMap", default)]
    pub config_map: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub secret: Option<serde::de::IgnoredAny>,
    #[serde(rename = "emptyDir", default)]
    pub empty_dir: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub projected: Option<serde::de::IgnoredAny>,
    #[serde(rename = "downwardAPI", default)]
    pub downward_api: Option<serde::de::IgnoredAny>,
}

impl Volume {
    /// The kubelet's plugin directory for this volume's kind, when the kind has a fixed one.
    pub fn plugin(&self) -> Option<&'static str> {
        [
            (self.config_map.is_some(), "kubernetes.io~configmap"),
            (self.secret.is_some(), "kubernetes.io~secret"),
            (self.empty_dir.is_some(), "kubernetes.io~empty-dir"),
            (self.projected.is_some(), "kubernetes.io~projected"),
            (self.downward_api.is_some(), "kubernetes.io~downward-api"),
        ]
        .into_iter()
        .find_map(|(is, plugin)| is.then_some(plugin))
    }

    /// The claim behind the volume in pod `pod_name`: `persistentVolumeClaim.claimName`, or
    /// `<pod>-<volume>` for a generic ephemeral volume (the kubelet's
    /// `ephemeral.VolumeClaimName`); `None` for any other kind of volume.
    pub fn claim_name(&self, pod_name: &str) -> Option<String> {
        match (&self.persistent_volume_claim, &self.ephemeral) {
            (Some(c), _) => Some(c.claim_name.clone()),
            (None, Some(_)) => Some(format!("{pod_name}-{}", self.name)),
            (None, None) => None,
        }
    }
}

/// `persistentVolumeClaim` of a pod spec volume.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClaimSource {
    #[serde(rename = "claimName", default)]
    pub claim_name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerSpec {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub resources: Resources,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resources {
    #[serde(default)]
    pub requests: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PodStatus {
    #[serde(rename = "containerStatuses", default)]
    pub container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContainerStatus {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub image: String,
    #[serde(rename = "containerID", default)]
    pub container_id: String,
}

/// Fetches `<kubelet_url>/pods`.
pub async fn fetch_pod_list(client: &reqwest::Client, kubelet_url: &str) -> Result<PodList, Error> {
    let url = format!("{}/pods", kubelet_url.trim_end_matches('/'));
    let resp = client
        .get(&url)
        .send()
        .await
        .map_err(|source| Error::Kubelet {
            url: url.clone(),
            source,
        })?;
    if !resp.status().is_success() {
        return Err(Error::KubeletStatus {
            url,
            status: resp.status().as_u16(),
        });
    }
    resp.json::<PodList>()
        .await
        .map_err(|source| Error::Kubelet { url, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(p: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(p)
    }

    #[test]
    fn log_layout_gives_names_and_ids() {
        let (m, errors) =
            Metadata::from_log_dirs(&testdata("logs/pods"), &testdata("logs/containers"));
        assert!(errors.is_empty(), "{errors:?}");
        let pod = &m.pods["1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"];
        assert_eq!(
            (pod.namespace.as_str(), pod.name.as_str()),
            ("default", "web-0")
        );
        assert_eq!(pod.container_names, vec!["nginx", "sidecar"]);
        let id = "a".repeat(64);
        assert_eq!(pod.containers[&id].name, "nginx");
    }

    #[test]
    fn missing_log_dirs_are_not_errors() {
        let (m, errors) = Metadata::from_log_dirs(
            Path::new("/nonexistent/pods"),
            Path::new("/nonexistent/containers"),
        );
        assert!(m.pods.is_empty());
        assert!(errors.is_empty());
    }

    #[test]
    fn pod_list_adds_images_and_requests() {
        let text = std::fs::read_to_string(testdata("kubelet-pods.json")).unwrap();
        let list: PodList = serde_json::from_str(&text).unwrap();
        let mut m = Metadata::default();
        m.merge_pod_list(&list);
        let pod = &m.pods["1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901"];
        assert_eq!(pod.labels["app"], "web");
        let c = &pod.containers[&"a".repeat(64)];
        assert_eq!(c.image, "docker.io/library/nginx:1.25");
        assert_eq!(c.cpu_request_millis, Some(250));
        assert_eq!(c.memory_limit, Some(128 << 20));
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_cpu_millis("250m"), Some(250));
        assert_eq!(parse_cpu_millis("1.5"), Some(1500));
        assert_eq!(parse_bytes("64Mi"), Some(64 << 20));
        assert_eq!(parse_bytes("1G"), Some(1_000_000_000));
        assert_eq!(
            parse_container_log_name(&format!("web-0_default_nginx-{}.log", "a".repeat(64))),
            Some((
                "web-0",
                "default",
                "nginx",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            ))
        );
        assert_eq!(parse_container_log_name("garbage"), None);
    }
}
