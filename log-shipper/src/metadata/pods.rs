//! A v1 PodList body (the kubelet's `/pods` and the API server's `/api/v1/pods` answer the same
//! shape) parsed into what the cache keeps of each pod, with labels and annotations filtered.

use super::MetadataConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

/// What the cache knows of one pod, already filtered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodMeta {
    pub namespace: String,
    pub name: String,
    pub node: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Container name → (image, image id).
    pub images: BTreeMap<String, (String, String)>,
}

impl PodMeta {
    /// The JSON members added to a record's `kubernetes` object for `container` (each preceded by a comma):
    /// `host`, `container_image`, `container_hash`, `labels`, `annotations` (Fluent Bit's kubernetes filter names).
    pub fn fragment(&self, container: &str) -> String {
        let s = |v: &str| serde_json::to_string(v).expect("string");
        let mut out = String::new();
        if !self.node.is_empty() {
            out.push_str(&format!(",\"host\":{}", s(&self.node)));
        }
        if let Some((image, id)) = self.images.get(container) {
            if !image.is_empty() {
                out.push_str(&format!(",\"container_image\":{}", s(image)));
            }
            if !id.is_empty() {
                out.push_str(&format!(",\"container_hash\":{}", s(id)));
            }
        }
        if !self.labels.is_empty() {
            out.push_str(",\"labels\":");
            out.push_str(&serde_json::to_string(&self.labels).expect("map"));
        }
        if !self.annotations.is_empty() {
            out.push_str(",\"annotations\":");
            out.push_str(&serde_json::to_string(&self.annotations).expect("map"));
        }
        out
    }
}

/// The shape of a v1 PodList (kubelet `/pods` and API server `/api/v1/pods`), only the fields used.
#[derive(Debug, Deserialize)]
struct PodList {
    items: Vec<Pod>,
}

#[derive(Debug, Deserialize)]
struct Pod {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Debug, Deserialize)]
struct ObjectMeta {
    name: String,
    #[serde(default)]
    namespace: String,
    uid: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    node_name: String,
    #[serde(default)]
    containers: Vec<Container>,
    #[serde(default)]
    init_containers: Vec<Container>,
}

#[derive(Debug, Deserialize)]
struct Container {
    name: String,
    #[serde(default)]
    image: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    #[serde(default)]
    container_statuses: Vec<ContainerStatus>,
    #[serde(default)]
    init_container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerStatus {
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default, rename = "imageID")]
    image_id: String,
}

/// Parses a PodList body into filtered metadata, by pod uid.
pub(super) fn parse_pod_list(
    body: &[u8],
    cfg: &MetadataConfig,
) -> Result<Vec<(String, PodMeta)>, serde_json::Error> {
    let list: PodList = serde_json::from_slice(body)?;
    Ok(list
        .items
        .into_iter()
        .map(|p| {
            let mut images = BTreeMap::new();
            for c in p.spec.containers.iter().chain(&p.spec.init_containers) {
                images.insert(c.name.clone(), (c.image.clone(), String::new()));
            }
            // The status names the image actually running (resolved tag) and its digest.
            for c in p
                .status
                .container_statuses
                .iter()
                .chain(&p.status.init_container_statuses)
            {
                let e = images.entry(c.name.clone()).or_default();
                if !c.image.is_empty() {
                    e.0 = c.image.clone();
                }
                e.1 = c.image_id.clone();
            }
            let meta = PodMeta {
                namespace: p.metadata.namespace,
                name: p.metadata.name,
                node: p.spec.node_name,
                labels: if cfg.labels {
                    p.metadata.labels
                } else {
                    BTreeMap::new()
                },
                annotations: if cfg.annotations {
                    p.metadata
                        .annotations
                        .into_iter()
                        .filter(|(k, _)| cfg.annotation_wanted(k))
                        .collect()
                } else {
                    BTreeMap::new()
                },
                images,
            };
            (p.metadata.uid, meta)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Source;

    fn cfg() -> MetadataConfig {
        MetadataConfig::new(Source::Kubelet, Some("http://127.0.0.1:1".into()))
    }

    #[test]
    fn pod_list_is_parsed_and_annotations_filtered() {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/podlist.json"
        ))
        .unwrap();
        let mut c = cfg();
        c.exclude_annotations.push("secret.example.com/*".into());
        let pods = parse_pod_list(&body, &c).unwrap();
        assert_eq!(pods.len(), 2);
        let (uid, web) = &pods[0];
        assert_eq!(uid, "6f3c0e7a-1b2c-4d5e-8f90-123456789abc");
        assert_eq!(web.labels["app"], "web");
        assert_eq!(web.node, "node-a");
        assert!(web.annotations.contains_key("prometheus.io/scrape"));
        assert!(!web.annotations.contains_key("secret.example.com/token"));
        assert!(!web
            .annotations
            .contains_key("kubectl.kubernetes.io/last-applied-configuration"));
        assert_eq!(web.images["nginx"].0, "docker.io/library/nginx:1.25");
        assert!(web.images["nginx"]
            .1
            .starts_with("docker.io/library/nginx@sha256:"));
        let frag = web.fragment("nginx");
        let v: serde_json::Value = serde_json::from_str(&format!("{{\"x\":1{frag}}}")).unwrap();
        assert_eq!(v["labels"]["app"], "web");
        assert_eq!(v["host"], "node-a");
        assert_eq!(v["container_image"], "docker.io/library/nginx:1.25");
        // Include list: only the named annotations.
        c.include_annotations = vec!["prometheus.io/*".into()];
        let pods = parse_pod_list(&body, &c).unwrap();
        assert_eq!(
            pods[0].1.annotations.keys().collect::<Vec<_>>(),
            vec!["prometheus.io/port", "prometheus.io/scrape"]
        );
        c.labels = false;
        c.annotations = false;
        let pods = parse_pod_list(&body, &c).unwrap();
        assert!(pods[0].1.labels.is_empty() && pods[0].1.annotations.is_empty());
    }

    #[test]
    fn malformed_pod_lists_are_errors() {
        for bad in [
            &b"{\"items\":\"oops\"}"[..],
            b"not json",
            b"{\"items\":[{\"metadata\":{}}]}",
        ] {
            assert!(
                parse_pod_list(bad, &cfg()).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
