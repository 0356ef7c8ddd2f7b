//! Which nodes to pull: a static list, a file re-read when it changes, or the Kubernetes API
//! (Heapster's `--source=kubernetes.summary_api:...`, its nodes watched by `scrape::kubernetes`).

use std::path::PathBuf;
use std::time::SystemTime;

use k8s_openapi::api::core::v1::Node;
use vigil_common::kubernetes::{self, Access, Source};

/// Errors of node discovery; each names the entry, file or option at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("node {entry:?}: {message}")]
    BadEntry { entry: String, message: String },
    #[error("--nodes-file {path}: {message}")]
    File { path: String, message: String },
    #[error("--source {source_uri:?}: {message}")]
    Source { source_uri: String, message: String },
    #[error("kubernetes node list from {url}: {message}")]
    Kubernetes { url: String, message: String },
}

/// One node to pull.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Full URL of the node's Summary API.
    pub url: String,
    /// Name used when the document lacks `nodeName` (host part, or the Kubernetes node name).
    pub name: String,
    /// CPU cores when the node list knows them (Kubernetes `status.capacity.cpu`).
    pub cpu_cores: Option<f64>,
    /// Kubelet target of the Kubernetes source: pulled with the source's kubelet TLS settings
    /// (`insecure`, cluster CA) instead of the default client.
    pub kubelet: bool,
    /// Bearer token sent with the pull (the service-account token, to HTTPS kubelets only).
    pub bearer_token: Option<std::sync::Arc<str>>,
}

/// Parses `host:port`, `http(s)://host:port` or `http(s)://host:port/path`.
pub fn parse_entry(entry: &str) -> Result<Target, Error> {
    let e = entry.trim();
    let bad = |m: &str| Error::BadEntry {
        entry: entry.to_string(),
        message: m.to_string(),
    };
    let (scheme, rest) = if let Some(r) = e.strip_prefix("http://") {
        ("http", r)
    } else if let Some(r) = e.strip_prefix("https://") {
        ("https", r)
    } else if e.contains("://") {
        return Err(bad("only http:// and https:// are supported"));
    } else {
        ("http", e)
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad("empty or invalid host"));
    }
    port.parse::<u16>()
        .map_err(|_| bad("port is not a number between 0 and 65535"))?;
    let path = if path.is_empty() || path == "/" {
        "/stats/summary"
    } else {
        path
    };
    Ok(Target {
        url: format!("{scheme}://{hostport}{path}"),
        name: host.trim_matches(['[', ']']).to_string(),
        cpu_cores: None,
        kubelet: false,
        bearer_token: None,
    })
}

fn parse_list(text: &str) -> Result<Vec<Target>, Error> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .flat_map(|l| l.split(',').map(str::trim).filter(|s| !s.is_empty()))
        .map(parse_entry)
        .collect()
}

/// Settings of the Kubernetes node source.
#[derive(Debug, Clone)]
pub struct KubeSource {
    /// API server URL (empty before in-cluster discovery fills it in).
    pub master: String,
    pub kubelet_port: u16,
    pub kubelet_https: bool,
    pub in_cluster: bool,
    /// Bearer token (in-cluster service account, `tokenFile=` or `useServiceAccount=true`):
    /// sent, as Heapster does, to HTTPS kubelets.
    pub token: Option<String>,
    /// The file `token` was read from; the API client re-reads it (bound tokens rotate).
    pub token_file: Option<PathBuf>,
    /// Extra CA (in-cluster `ca.crt`, or `caFile=`), trusted for the API server and the kubelets.
    pub ca_pem: Option<Vec<u8>>,
    /// The file `ca_pem` was read from.
    pub ca_file: Option<PathBuf>,
    /// Heapster's `auth=`: a kubeconfig file for the API server (with `inClusterConfig=false`).
    pub kubeconfig: Option<PathBuf>,
    /// Skips certificate verification of the API server and the kubelets (Heapster's
    /// `insecure=true`, metrics-server's `--kubelet-insecure-tls`).
    pub insecure: bool,
}

/// Parses Heapster's `kubernetes.summary_api:<master>?opts` (also `kubernetes:`).
///
/// As in Heapster (common/kubernetes/configs.go): `inClusterConfig=true` (the default) uses the
/// pod's service account and the master only overrides the host; otherwise `auth=<kubeconfig>`
/// or the master URL itself. `useServiceAccount=true` adds the service-account token.
pub fn parse_source(uri: &str) -> Result<KubeSource, Error> {
    let bad = |m: String| Error::Source {
        source_uri: uri.to_string(),
        message: m,
    };
    let rest = uri
        .strip_prefix("kubernetes.summary_api:")
        .or_else(|| uri.strip_prefix("kubernetes:"))
        .ok_or_else(|| bad("only kubernetes.summary_api:<master>?... is supported (kubernetes.kubelet/cadvisor sources were removed with Heapster's summary switch)".into()))?;
    let (master, query) = rest.split_once('?').unwrap_or((rest, ""));
    let master = master.trim_matches(['\'', '"']);
    let mut s = KubeSource {
        master: master.trim_end_matches('/').to_string(),
        kubelet_port: 10255,
        kubelet_https: false,
        in_cluster: true,
        token: None,
        token_file: None,
        ca_pem: None,
        ca_file: None,
        kubeconfig: None,
        insecure: false,
    };
    let mut token_file: Option<String> = None;
    let mut ca_file: Option<String> = None;
    let mut use_service_account = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let flag = || match v {
            "true" | "" => Ok(true),
            "false" => Ok(false),
            _ => Err(bad(format!("{k}={v}: expected true or false"))),
        };
        match k {
            "kubeletPort" => {
                s.kubelet_port = v
                    .parse()
                    .map_err(|_| bad(format!("kubeletPort={v}: not a port")))?
            }
            "kubeletHttps" => s.kubelet_https = flag()?,
            "inClusterConfig" => s.in_cluster = flag()?,
            "insecure" => s.insecure = flag()?,
            "useServiceAccount" => use_service_account = flag()?,
            "auth" if !v.is_empty() => s.kubeconfig = Some(PathBuf::from(v)),
            "auth" => {}
            // Heapster only ever spoke the core API's v1.
            "apiVersion" if v == "v1" => {}
            "apiVersion" => return Err(bad(format!("apiVersion={v}: only v1 is served"))),
            // vigil extensions: explicit service-account files (default: the in-cluster ones).
            "tokenFile" => token_file = Some(v.to_string()),
            "caFile" => ca_file = Some(v.to_string()),
            other => return Err(bad(format!("unknown option {other}"))),
        }
    }
    if s.in_cluster {
        if s.kubeconfig.is_some() {
            return Err(bad(
                "auth=<kubeconfig> is read only with inClusterConfig=false (as Heapster)".into(),
            ));
        }
        let in_cluster_url = kubernetes::api_server_url(|k| std::env::var(k).ok()).map_err(|missing| bad(format!("inClusterConfig=true but {missing} is not set (not running in a pod?); pass inClusterConfig=false with an explicit master")))?;
        if s.master.is_empty() {
            s.master = in_cluster_url;
        }
        let sa = kubernetes::token_file();
        token_file.get_or_insert_with(|| sa.display().to_string());
        if ca_file.is_none() && kubernetes::ca_file().exists() {
            ca_file = Some(kubernetes::ca_file().display().to_string());
        }
    } else if let Some(path) = &s.kubeconfig {
        kube::config::Kubeconfig::read_from(path)
            .map_err(|e| bad(format!("auth={}: {e}", path.display())))?;
    } else if s.master.is_empty() {
        return Err(bad("inClusterConfig=false needs a master URL or auth=<kubeconfig>, e.g. kubernetes.summary_api:http://127.0.0.1:8080?inClusterConfig=false".into()));
    }
    if !s.master.is_empty() {
        url::Url::parse(&s.master)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| bad(format!("master {:?} is not an http(s):// URL", s.master)))?;
    }
    if use_service_account {
        token_file.get_or_insert_with(|| kubernetes::token_file().display().to_string());
    }
    if let Some(f) = token_file {
        let t = std::fs::read_to_string(&f).map_err(|e| bad(format!("token file {f}: {e}")))?;
        let t = t.trim();
        if t.is_empty() {
            return Err(bad(format!("token file {f} is empty")));
        }
        s.token = Some(t.to_string());
        s.token_file = Some(PathBuf::from(f));
    }
    if let Some(f) = ca_file {
        let pem = std::fs::read(&f).map_err(|e| bad(format!("caFile={f}: {e}")))?;
        if kubernetes::pem_certificates(&pem)
            .map_err(|e| bad(format!("the CA file {f} is not valid PEM: {e}")))?
            .is_empty()
        {
            return Err(bad(format!("the CA file {f} holds no PEM certificate")));
        }
        s.ca_pem = Some(pem);
        s.ca_file = Some(PathBuf::from(f));
    }
    Ok(s)
}

impl KubeSource {
    /// The bearer token HTTPS kubelets get (none for the read-only HTTP port: never in clear
    /// text): the token file's content now, as bound service account tokens rotate; the token
    /// read at start when the file cannot be read.
    pub fn kubelet_token(&self) -> Option<std::sync::Arc<str>> {
        if !self.kubelet_https {
            return None;
        }
        let fresh = self
            .token_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        fresh.or_else(|| self.token.clone()).map(Into::into)
    }

    /// The API client's configuration: `Config::incluster()` in a pod, else the kubeconfig of
    /// `auth=`, else the master URL; then the master, token file, CA and `insecure` overrides.
    pub async fn kube_config(&self) -> Result<kube::Config, Error> {
        let source = if self.in_cluster {
            Source::InCluster
        } else if let Some(path) = &self.kubeconfig {
            Source::Kubeconfig(path.clone())
        } else {
            Source::Url(self.master.clone())
        };
        let mut access = Access::new(source);
        access.url = (!self.master.is_empty()).then(|| self.master.clone());
        access.token_file = self.token_file.clone();
        access.ca_file = self.ca_file.clone();
        access.insecure_skip_tls_verify = self.insecure;
        // Lists and watches keep kube's retry of 429/503/504, as before.
        access.retry = true;
        access.config().await.map_err(|e| Error::Kubernetes {
            url: self.master.clone(),
            message: e.to_string(),
        })
    }
}

/// Parses a Kubernetes CPU quantity (`2`, `500m`, `1.5`) into cores.
pub fn parse_cpu_quantity(q: &str) -> Option<f64> {
    match q.strip_suffix('m') {
        Some(m) => m.parse::<f64>().ok().map(|v| v / 1000.0),
        None => q.parse::<f64>().ok(),
    }
}

/// Targets from a NodeList document: Ready nodes, InternalIP (else Hostname) and the kubelet port.
pub fn targets_from_node_list(body: &[u8], k: &KubeSource) -> Result<Vec<Target>, String> {
    let list: kube::core::ObjectList<Node> =
        serde_json::from_slice(body).map_err(|e| format!("malformed NodeList: {e}"))?;
    Ok(targets_of(list.items.iter(), k))
}

/// Targets of these nodes: the Ready ones, at InternalIP (else Hostname) and the kubelet port.
pub(crate) fn targets_of<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    k: &KubeSource,
) -> Vec<Target> {
    let scheme = if k.kubelet_https { "https" } else { "http" };
    // The token goes to HTTPS kubelets only (never in clear text to the read-only port).
    let token = k.kubelet_token();
    let mut out = Vec::new();
    for n in nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        let status = n.status.as_ref();
        let conditions = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        if conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status != "True")
        {
            tracing::debug!(node = %name, "node is not ready; skipped");
            continue;
        }
        let addresses = status
            .and_then(|s| s.addresses.as_deref())
            .unwrap_or_default();
        let addr = addresses
            .iter()
            .find(|a| a.type_ == "InternalIP")
            .or_else(|| addresses.iter().find(|a| a.type_ == "Hostname"));
        let Some(addr) = addr else {
            tracing::warn!(node = %name, "node has no InternalIP or Hostname address; skipped");
            continue;
        };
        let host = if addr.address.contains(':') {
            format!("[{}]", addr.address)
        } else {
            addr.address.clone()
        };
        out.push(Target {
            url: format!("{scheme}://{host}:{}/stats/summary", k.kubelet_port),
            cpu_cores: status
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("cpu"))
                .and_then(|q| parse_cpu_quantity(&q.0)),
            name,
            kubelet: true,
            bearer_token: token.clone(),
        });
    }
    out
}

/// Where the node list comes from.
pub enum Discovery {
    Static(Vec<Target>),
    File {
        path: PathBuf,
        stamp: Option<(SystemTime, u64)>,
        targets: Vec<Target>,
    },
    Kubernetes {
        source: std::sync::Arc<KubeSource>,
        /// The node, pod and namespace watchers and their stores.
        watch: super::kubernetes::KubeWatch,
        /// The first round has waited for the first node list.
        waited: bool,
    },
}

/// How long the first round waits for the first node list before it goes ahead without it.
const FIRST_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Discovery {
    /// Builds the discovery from the options (static entries are checked now; the Kubernetes
    /// watchers start now, so this runs inside a tokio runtime).
    pub async fn from_options(
        nodes: &[String],
        nodes_file: Option<&PathBuf>,
        source: Option<&str>,
    ) -> Result<Vec<Discovery>, Error> {
        let mut out = Vec::new();
        let entries: Vec<&String> = nodes.iter().filter(|n| !n.trim().is_empty()).collect();
        if !entries.is_empty() {
            out.push(Discovery::Static(
                entries
                    .into_iter()
                    .map(|e| parse_entry(e))
                    .collect::<Result<_, _>>()?,
            ));
        }
        if let Some(path) = nodes_file {
            let mut stamp = None;
            let mut targets = Vec::new();
            reload_file(path, &mut stamp, &mut targets)?;
            out.push(Discovery::File {
                path: path.clone(),
                stamp,
                targets,
            });
        }
        if let Some(src) = source {
            let source = parse_source(src)?;
            let config = source.kube_config().await.map_err(|e| Error::Source {
                source_uri: src.to_string(),
                message: e.to_string(),
            })?;
            let client = super::kubernetes::client(config).map_err(|e| Error::Source {
                source_uri: src.to_string(),
                message: format!("API client: {e}"),
            })?;
            let source = std::sync::Arc::new(source);
            out.push(Discovery::Kubernetes {
                watch: super::kubernetes::KubeWatch::start(client, source.clone()),
                source,
                waited: false,
            });
        }
        Ok(out)
    }

    /// The Kubernetes source's settings, when that is the node source (for the kubelet client).
    pub fn kube_source(&self) -> Option<&KubeSource> {
        match self {
            Discovery::Kubernetes { source, .. } => Some(&**source),
            _ => None,
        }
    }

    /// Builds the pods' and namespaces' enrichment view from the Kubernetes watchers' stores.
    pub fn info_source(&self) -> Option<super::kubernetes::InfoSource> {
        match self {
            Discovery::Kubernetes { watch, .. } => Some(watch.info_source()),
            _ => None,
        }
    }

    /// The Kubernetes watchers' counters.
    pub fn watch_stats(&self) -> Option<std::sync::Arc<super::kubernetes::WatchStats>> {
        match self {
            Discovery::Kubernetes { watch, .. } => Some(watch.stats()),
            _ => None,
        }
    }

    /// The watched nodes' conditions (node, type, status); `None` without a Kubernetes source.
    pub fn node_conditions(&self) -> Option<Vec<(String, String, String)>> {
        match self {
            Discovery::Kubernetes { watch, .. } => Some(watch.node_conditions()),
            _ => None,
        }
    }

    /// The current targets. On a failed refresh the previous list stays and the error is returned
    /// alongside it.
    pub async fn targets(&mut self) -> (Vec<Target>, Option<Error>) {
        match self {
            Discovery::Static(t) => (t.clone(), None),
            Discovery::File {
                path,
                stamp,
                targets,
            } => {
                let err = reload_file(path, stamp, targets).err();
                (targets.clone(), err)
            }
            Discovery::Kubernetes { watch, waited, .. } => {
                // The watchers keep the stores current in the background: a slow or hanging API
                // server delays the stores, never the round. The first round waits a little for
                // the first node list, so it is not empty.
                if !*waited {
                    *waited = true;
                    watch.wait_first_nodes(FIRST_LIST_WAIT).await;
                }
                let (targets, err) = watch.targets();
                (targets.to_vec(), err)
            }
        }
    }
}

fn reload_file(
    path: &PathBuf,
    stamp: &mut Option<(SystemTime, u64)>,
    targets: &mut Vec<Target>,
) -> Result<(), Error> {
    let ferr = |m: String| Error::File {
        path: path.display().to_string(),
        message: m,
    };
    let meta = std::fs::metadata(path).map_err(|e| ferr(e.to_string()))?;
    let now = (
        meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        meta.len(),
    );
    if *stamp == Some(now) {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| ferr(e.to_string()))?;
    // The stamp moves even when the content is bad, so one bad edit is reported once.
    *stamp = Some(now);
    let parsed = parse_list(&text).map_err(|e| ferr(e.to_string()))?;
    tracing::info!(path = %path.display(), nodes = parsed.len(), "node list loaded");
    *targets = parsed;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_entry("127.0.0.1:4194").unwrap().url,
            "http://127.0.0.1:4194/stats/summary"
        );
        assert_eq!(
            parse_entry("https://node-1:10250").unwrap().url,
            "https://node-1:10250/stats/summary"
        );
        assert_eq!(
            parse_entry("http://127.0.0.1:9/node/a/stats/summary")
                .unwrap()
                .url,
            "http://127.0.0.1:9/node/a/stats/summary"
        );
        assert_eq!(parse_entry("node-1:10255").unwrap().name, "node-1");
        for bad in ["node-1", "ftp://x:1", ":80", "x:port", "x:70000"] {
            let err = parse_entry(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[tokio::test]
    async fn file_is_reread_when_it_changes_and_bad_edits_keep_the_old_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nodes");
        std::fs::write(&path, "# nodes\n127.0.0.1:1\n127.0.0.1:2, 127.0.0.1:3\n").unwrap();
        let mut d = Discovery::from_options(&[], Some(&path), None)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(d.targets().await.0.len(), 3);
        std::fs::write(&path, "127.0.0.1:5\n").unwrap();
        let (t, err) = d.targets().await;
        assert!(err.is_none());
        assert_eq!(t, vec![parse_entry("127.0.0.1:5").unwrap()]);
        std::fs::write(&path, "127.0.0.1:5\nbroken line here\n").unwrap();
        let (t, err) = d.targets().await;
        assert_eq!(t.len(), 1);
        assert!(err.unwrap().to_string().contains("--nodes-file"));
    }

    #[test]
    fn heapster_source_flag_parses() {
        let s = parse_source("kubernetes.summary_api:http://127.0.0.1:8080?kubeletPort=10250&kubeletHttps=true&inClusterConfig=false").unwrap();
        assert_eq!(
            (
                s.master.as_str(),
                s.kubelet_port,
                s.kubelet_https,
                s.in_cluster
            ),
            ("http://127.0.0.1:8080", 10250, true, false)
        );
        let err = parse_source("kubernetes.summary_api:http://x?bogus=1&inClusterConfig=false")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown option bogus"), "{err}");
        // Heapster's manifests (and deploy/aggregator-deployment.yaml) quote the master; the
        // quotes are not part of the URL.
        let quoted =
            parse_source("kubernetes.summary_api:'http://127.0.0.1:8080'?inClusterConfig=false")
                .unwrap();
        assert_eq!(quoted.master, "http://127.0.0.1:8080");
        let err = parse_source("kubernetes.summary_api:ftp://x?inClusterConfig=false")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an http(s):// URL"), "{err}");
        let err = parse_source("kubernetes.summary_api:''?inClusterConfig=false")
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a master URL"), "{err}");
        assert!(parse_source("cadvisor:x").is_err());
        let body = br#"{"items":[
          {"metadata":{"name":"n1"},"status":{"addresses":[{"type":"Hostname","address":"h1"},{"type":"InternalIP","address":"127.0.0.2"}],"capacity":{"cpu":"4","memory":"8Gi"},"conditions":[{"type":"Ready","status":"True"}]}},
          {"metadata":{"name":"n2"},"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.3"}],"conditions":[{"type":"Ready","status":"False"}]}},
          {"metadata":{"name":"n3"},"status":{"addresses":[{"type":"Hostname","address":"h3"}],"capacity":{"cpu":"500m"}}}]}"#;
        let t = targets_from_node_list(body, &s).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].url, "https://127.0.0.2:10250/stats/summary");
        assert_eq!(t[0].cpu_cores, Some(4.0));
        assert_eq!(t[1].cpu_cores, Some(0.5));
        assert!(targets_from_node_list(b"{", &s)
            .unwrap_err()
            .contains("malformed NodeList"));
    }
}
