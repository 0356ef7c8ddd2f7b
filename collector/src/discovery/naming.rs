//! Recognises Kubernetes cgroup paths (systemd and cgroupfs drivers) and the node's system cgroups.

/// What a cgroup path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A container of a pod (app or sandbox; which one is decided with the pod's metadata).
    Container {
        pod_uid: String,
        id: String,
        runtime: &'static str,
    },
    /// The pod-level cgroup.
    Pod { pod_uid: String, qos: &'static str },
    /// One of the kubelet's system containers: `kubelet`, `runtime`, `misc`, `pods`.
    System(&'static str),
    /// Not a container (e.g. `crio-conmon-<id>.scope`, a QoS-level slice's sibling, user sessions).
    Other,
}

const RUNTIME_PREFIXES: [(&str, &str); 3] = [
    ("cri-containerd-", "containerd"),
    ("crio-", "cri-o"),
    ("docker-", "docker"),
];

/// Classifies a cgroup name like `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice/cri-containerd-<id>.scope`.
pub fn classify(name: &str) -> Kind {
    let segs: Vec<&str> = name.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(k) = segs
        .iter()
        .position(|s| *s == "kubepods" || s.ends_with("kubepods.slice"))
    {
        return classify_kubepods(&segs[k + 1..]);
    }
    match segs.as_slice() {
        ["system.slice", s] if s.starts_with("kubelet") => Kind::System("kubelet"),
        ["kubelet"] | ["kubelet.service"] | ["kubelet.slice"] => Kind::System("kubelet"),
        ["system.slice", s]
            if [
                "containerd.service",
                "crio.service",
                "docker.service",
                "cri-docker.service",
            ]
            .contains(s) =>
        {
            Kind::System("runtime")
        }
        ["runtime"] | ["containerd"] => Kind::System("runtime"),
        ["system.slice"] => Kind::System("misc"),
        _ => Kind::Other,
    }
}

fn classify_kubepods(rest: &[&str]) -> Kind {
    let (qos, rest) = match rest.first() {
        None => return Kind::System("pods"),
        Some(s) => match qos_of(s) {
            Some(q) => (q, &rest[1..]),
            None => ("guaranteed", rest),
        },
    };
    let Some(pod_seg) = rest.first() else {
        // A QoS-level cgroup (kubepods-burstable.slice): part of "pods", not a container itself.
        return Kind::Other;
    };
    let Some(pod_uid) = pod_uid_of(pod_seg) else {
        return Kind::Other;
    };
    match rest.get(1) {
        None => Kind::Pod { pod_uid, qos },
        Some(c) if rest.len() == 2 => match container_id_of(c) {
            Some((id, runtime)) => Kind::Container {
                pod_uid,
                id,
                runtime,
            },
            None => Kind::Other,
        },
        Some(_) => Kind::Other,
    }
}

fn qos_of(seg: &str) -> Option<&'static str> {
    let s = seg.trim_end_matches(".slice");
    match s {
        "burstable" | "kubepods-burstable" => Some("burstable"),
        "besteffort" | "kubepods-besteffort" => Some("besteffort"),
        _ => None,
    }
}

/// `pod<uid>` (cgroupfs) or `kubepods[-qos]-pod<uid with _>.slice` (systemd).
fn pod_uid_of(seg: &str) -> Option<String> {
    let s = seg.strip_suffix(".slice").unwrap_or(seg);
    let at = s.rfind("pod")?;
    if at != 0 && !s[..at].ends_with('-') {
        return None;
    }
    let uid = &s[at + 3..];
    if uid.is_empty()
        || !uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return None;
    }
    Some(uid.replace('_', "-"))
}

/// `<runtime>-<id>.scope` (systemd) or `<id>` (cgroupfs). `crio-conmon-<id>.scope` is not a container.
fn container_id_of(seg: &str) -> Option<(String, &'static str)> {
    if let Some(scope) = seg.strip_suffix(".scope") {
        if scope.starts_with("crio-conmon-") {
            return None;
        }
        for (prefix, runtime) in RUNTIME_PREFIXES {
            if let Some(id) = scope.strip_prefix(prefix) {
                return is_id(id).then(|| (id.to_string(), runtime));
            }
        }
        return None;
    }
    is_id(seg).then(|| (seg.to_string(), "unknown"))
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn systemd_driver_paths() {
        let p = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-{ID}.scope");
        assert_eq!(
            classify(&p),
            Kind::Container {
                pod_uid: "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901".into(),
                id: ID.into(),
                runtime: "containerd"
            }
        );
        // Guaranteed pods have no QoS level.
        let g = format!("/kubepods.slice/kubepods-podaa_bb.slice/crio-{ID}.scope");
        assert_eq!(
            classify(&g),
            Kind::Container {
                pod_uid: "aa-bb".into(),
                id: ID.into(),
                runtime: "cri-o"
            }
        );
        let conmon = format!("/kubepods.slice/kubepods-podaa_bb.slice/crio-conmon-{ID}.scope");
        assert_eq!(classify(&conmon), Kind::Other);
        let d = format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podcc.slice/docker-{ID}.scope");
        assert!(matches!(
            classify(&d),
            Kind::Container {
                runtime: "docker",
                ..
            }
        ));
        assert_eq!(
            classify("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podcc.slice"),
            Kind::Pod {
                pod_uid: "cc".into(),
                qos: "besteffort"
            }
        );
        assert_eq!(classify("/kubepods.slice"), Kind::System("pods"));
        assert_eq!(
            classify("/kubepods.slice/kubepods-burstable.slice"),
            Kind::Other
        );
    }

    #[test]
    fn cgroupfs_driver_paths() {
        assert_eq!(
            classify(&format!("/kubepods/burstable/pod1234-5678/{ID}")),
            Kind::Container {
                pod_uid: "1234-5678".into(),
                id: ID.into(),
                runtime: "unknown"
            }
        );
        assert_eq!(
            classify("/kubepods/podabcd/short-id"),
            Kind::Container {
                pod_uid: "abcd".into(),
                id: "short-id".into(),
                runtime: "unknown"
            }
        );
        assert_eq!(
            classify("/kubepods/besteffort/podabcd"),
            Kind::Pod {
                pod_uid: "abcd".into(),
                qos: "besteffort"
            }
        );
        assert_eq!(
            classify("/kubepods/podabcd"),
            Kind::Pod {
                pod_uid: "abcd".into(),
                qos: "guaranteed"
            }
        );
        assert_eq!(classify("/kubepods"), Kind::System("pods"));
        // A nested node (kind, docker-in-docker) keeps the layout below a prefix.
        assert!(matches!(
            classify(&format!("/docker/abc/kubepods/burstable/podx/{ID}")),
            Kind::Container { .. }
        ));
    }

    #[test]
    fn system_cgroups() {
        assert_eq!(
            classify("/system.slice/kubelet.service"),
            Kind::System("kubelet")
        );
        assert_eq!(
            classify("/system.slice/containerd.service"),
            Kind::System("runtime")
        );
        assert_eq!(classify("/system.slice"), Kind::System("misc"));
        assert_eq!(classify("/user.slice"), Kind::Other);
        assert_eq!(classify("/"), Kind::Other);
    }
}
