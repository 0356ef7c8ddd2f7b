//! What a request asks for in Kubernetes authorization terms: a verb on a resource or a non-resource path, and whether it writes.

use http::Method;

/// Prometheus query endpoints that accept POST (form-encoded) and only read.
const READ_POSTS: &[&str] = &[
    "/api/v1/query",
    "/api/v1/query_range",
    "/api/v1/query_exemplars",
    "/api/v1/series",
    "/api/v1/labels",
    "/api/v1/format_query",
    "/api/v1/parse_query",
];

/// Group and version of the metrics API the aggregator serves as an APIService.
const METRICS_PREFIX: &str = "/apis/metrics.k8s.io/v1beta1/";

/// What a SubjectAccessReview is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any path outside `metrics.k8s.io` (RBAC `nonResourceURLs`), as kube-rbac-proxy asks by default.
    NonResource { path: String },
    /// A `metrics.k8s.io` resource, as metrics-server's generic API server asks.
    Resource {
        group: String,
        version: String,
        resource: String,
        namespace: String,
        name: String,
    },
}

/// The verb and target of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// `get` for every read; kube-rbac-proxy's mapping for writes (POST `create`, PUT `update`,
    /// PATCH `patch`, DELETE `delete`); `list` for a metrics.k8s.io collection.
    pub verb: String,
    pub target: Target,
    /// True when the request changes state (reload, silences, posted alerts).
    pub write: bool,
}

impl Attributes {
    /// The attributes of `method path`.
    pub fn of(method: &Method, path: &str) -> Self {
        let read = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
            || (*method == Method::POST && READ_POSTS.contains(&path));
        let verb = if read {
            "get".to_string()
        } else {
            match *method {
                Method::POST => "create".into(),
                Method::PUT => "update".into(),
                Method::PATCH => "patch".into(),
                Method::DELETE => "delete".into(),
                ref m => m.as_str().to_ascii_lowercase(),
            }
        };
        if let Some(rest) = path.strip_prefix(METRICS_PREFIX) {
            if let Some((resource, namespace, name)) = metrics_resource(rest) {
                let verb = if read && name.is_empty() {
                    "list".to_string()
                } else {
                    verb
                };
                return Attributes {
                    verb,
                    target: Target::Resource {
                        group: "metrics.k8s.io".into(),
                        version: "v1beta1".into(),
                        resource: resource.into(),
                        namespace: namespace.into(),
                        name: name.into(),
                    },
                    write: !read,
                };
            }
        }
        Attributes {
            verb,
            target: Target::NonResource {
                path: path.to_string(),
            },
            write: !read,
        }
    }

    /// `verb=get, path=/metrics` or `verb=list, resource=pods, namespace=kube-system`, for messages.
    pub fn describe(&self) -> String {
        match &self.target {
            Target::NonResource { path } => format!("verb={}, path={path}", self.verb),
            Target::Resource {
                group,
                resource,
                namespace,
                name,
                ..
            } => format!(
                "verb={}, resource={resource}.{group}, namespace={namespace}, name={name}",
                self.verb
            ),
        }
    }
}

/// `nodes`, `nodes/<n>`, `pods`, `namespaces/<ns>/pods`, `namespaces/<ns>/pods/<n>` → (resource, namespace, name).
fn metrics_resource(rest: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [r @ ("nodes" | "pods")] => Some((r, "", "")),
        ["nodes", n] => Some(("nodes", "", n)),
        ["namespaces", ns, "pods"] => Some(("pods", ns, "")),
        ["namespaces", ns, "pods", n] => Some(("pods", ns, n)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_map_to_verbs_as_kube_rbac_proxy() {
        let a = Attributes::of(&Method::GET, "/api/v1/query");
        assert_eq!((a.verb.as_str(), a.write), ("get", false));
        let a = Attributes::of(&Method::POST, "/api/v1/query_range");
        assert_eq!((a.verb.as_str(), a.write), ("get", false));
        let a = Attributes::of(&Method::POST, "/-/reload");
        assert_eq!((a.verb.as_str(), a.write), ("create", true));
        assert_eq!(
            a.target,
            Target::NonResource {
                path: "/-/reload".into()
            }
        );
        let a = Attributes::of(&Method::DELETE, "/api/v2/silence/abc");
        assert_eq!((a.verb.as_str(), a.write), ("delete", true));
        let a = Attributes::of(&Method::PUT, "/x");
        assert_eq!(a.verb, "update");
    }

    #[test]
    fn metrics_api_paths_are_resources() {
        let a = Attributes::of(
            &Method::GET,
            "/apis/metrics.k8s.io/v1beta1/namespaces/kube-system/pods",
        );
        assert_eq!(a.verb, "list");
        assert_eq!(
            a.target,
            Target::Resource {
                group: "metrics.k8s.io".into(),
                version: "v1beta1".into(),
                resource: "pods".into(),
                namespace: "kube-system".into(),
                name: "".into()
            }
        );
        let a = Attributes::of(&Method::GET, "/apis/metrics.k8s.io/v1beta1/nodes/n1");
        assert_eq!(a.verb, "get");
        assert!(matches!(a.target, Target::Resource { ref name, .. } if name == "n1"));
        // Discovery documents are plain paths.
        let a = Attributes::of(&Method::GET, "/apis/metrics.k8s.io/v1beta1");
        assert!(matches!(a.target, Target::NonResource { .. }));
        let a = Attributes::of(&Method::GET, "/apis/metrics.k8s.io/v1beta1/bogus/x/y");
        assert!(matches!(a.target, Target::NonResource { .. }));
    }
}
