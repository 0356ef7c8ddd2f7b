//! Naming the tracked cgroups: pod, container, image and sandbox flag from the metadata, the
//! exposition label string the samples share, and each container's log directory.

use super::Collector;
use crate::discovery::metadata::Metadata;
use crate::discovery::naming::Kind;
use crate::snapshot::Identity;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use vigil_common::exposition::label;

impl Collector {
    /// Pod and container names, images, the sandbox flag and the exposition label string of
    /// every tracked cgroup. They change only with the metadata or the set of cgroups (a pod's
    /// container count tells its sandbox apart), so they are computed again only then
    /// (`described` false), not in every pass; samples share them.
    pub(super) fn describe(&mut self) {
        if self.described {
            return;
        }
        self.described = true;
        self.du_dirty = true;
        let mut per_pod: HashMap<&str, usize> = HashMap::new();
        for t in self.tracked.values() {
            if let Kind::Container { pod_uid, .. } = &*t.kind {
                *per_pod.entry(pod_uid.as_str()).or_default() += 1;
            }
        }
        let mut described = Vec::with_capacity(self.tracked.len());
        for (name, t) in &self.tracked {
            let idn = identity_of(&t.kind, &self.metadata, &per_pod, &self.config.pod_labels);
            let labels = label_string(name, &idn, &self.config.pod_labels);
            described.push((idn, labels));
        }
        let log_root = &self.config.pod_log_root;
        for (t, (idn, labels)) in self.tracked.values_mut().zip(described) {
            let log_dir = (!idn.container.is_empty() && !idn.sandbox && !idn.pod.is_empty())
                .then(|| pod_log_dir(log_root, &idn));
            if t.log_dir.as_deref() != log_dir.as_deref() {
                t.log_dir = log_dir.map(Arc::from);
            }
            if *t.identity != idn {
                t.identity = Arc::new(idn);
            }
            if *t.label_str != *labels {
                t.label_str = labels.into();
            }
        }
    }
}

/// The log directory of a named container: `<root>/<namespace>_<pod>_<uid>/<container>` (the
/// kubelet's layout).
fn pod_log_dir(root: &Path, id: &Identity) -> PathBuf {
    root.join(format!("{}_{}_{}", id.namespace, id.pod, id.pod_uid))
        .join(&id.container)
}

/// Pod/container names, image and sandbox flag of a cgroup of kind `kind`; `per_pod`: the
/// number of container cgroups of each pod.
fn identity_of(
    kind: &Kind,
    metadata: &Metadata,
    per_pod: &HashMap<&str, usize>,
    pod_labels: &[String],
) -> Identity {
    // What a pod's cgroups and its containers' share: the pod's uid, and its name, namespace
    // and selected labels when the metadata knows the pod.
    let of_pod = |pod_uid: &String| {
        let mut idn = Identity {
            pod_uid: pod_uid.clone(),
            ..Default::default()
        };
        let pod = metadata.pods.get(pod_uid);
        if let Some(pod) = pod {
            idn.pod = pod.name.clone();
            idn.namespace = pod.namespace.clone();
            idn.labels = pod_labels
                .iter()
                .filter_map(|k| pod.labels.get(k).map(|v| (k.clone(), v.clone())))
                .collect();
        }
        (idn, pod)
    };
    match kind {
        Kind::Container { pod_uid, id, .. } => {
            let (mut idn, pod) = of_pod(pod_uid);
            idn.container_id = id.clone();
            if let Some(pod) = pod {
                match pod.containers.get(id) {
                    Some(c) => {
                        idn.container = c.name.clone();
                        idn.image = c.image.clone();
                    }
                    None if per_pod.get(pod_uid.as_str()).copied().unwrap_or(0) > 1 => {
                        // In the pod's cgroup but not in its logs or the kubelet's list: the
                        // sandbox (pause) container.
                        idn.sandbox = true;
                        idn.container = "POD".to_string();
                    }
                    None => {
                        // A single unnamed container: if the pod has exactly one named
                        // container in its log dir, it is that one.
                        if pod.container_names.len() == 1 && pod.containers.is_empty() {
                            idn.container = pod.container_names[0].clone();
                        }
                    }
                }
            }
            idn
        }
        Kind::Pod { pod_uid, .. } => of_pod(pod_uid).0,
        _ => Identity::default(),
    }
}

/// The exposition label set of cgroup `name` (see `ContainerSample::label_str`): the kubelet's
/// labels (container, id, image, name, namespace, pod) plus the opt-in pod labels.
fn label_string(name: &str, i: &Identity, pod_labels: &[String]) -> String {
    let mut out = String::with_capacity(160);
    for (n, (k, v)) in [
        ("container", i.container.as_str()),
        ("id", name),
        ("image", i.image.as_str()),
        ("name", i.container_id.as_str()),
        ("namespace", i.namespace.as_str()),
        ("pod", i.pod.as_str()),
    ]
    .into_iter()
    .enumerate()
    {
        label(&mut out, n == 0, k, v);
    }
    for k in pod_labels {
        let v = i
            .labels
            .iter()
            .find(|(lk, _)| lk == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        label(&mut out, false, &crate::config::pod_label_name(k), v);
    }
    out
}
