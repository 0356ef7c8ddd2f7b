//! Which nodes to pull: a static list, a file re-read when it changes, or the Kubernetes API
//! (Heapster's `--source=kubernetes.summary_api:...`, node list each round).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Deserialize;

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
    pub master: String,
    pub kubelet_port: u16,
    pub kubelet_https: bool,
    pub in_cluster: bool,
    /// Bearer token (in-cluster service account, or `tokenFile=`): sent to the API server and,
    /// as Heapster does, to HTTPS kubelets.
    pub token: Option<String>,
    /// Extra CA (in-cluster `ca.crt`, or `caFile=`), trusted for the API server and the kubelets.
    pub ca_pem: Option<Vec<u8>>,
    /// Skips certificate verification of the API server and the kubelets (Heapster's
    /// `insecure=true`, metrics-server's `--kubelet-insecure-tls`).
    pub insecure: bool,
}

/// Parses Heapster's `kubernetes.summary_api:<master>?opts` (also `kubernetes:`).
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
    let mut s = KubeSource {
        master: master.trim_end_matches('/').to_string(),
        kubelet_port: 10255,
        kubelet_https: false,
        in_cluster: true,
        token: None,
        ca_pem: None,
        insecure: false,
    };
    let mut token_file: Option<String> = None;
    let mut ca_file: Option<String> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let flag = || match v {
            "true" | "" => Ok(true),
            "false" => Ok(false),
            _ => Err(bad(format!("{k}={v}: expected true or false"))),
        };
        match k {
            "kubeletPort" => s.kubelet_port = v.parse().map_err(|_| bad(format!("kubeletPort={v}: not a port")))?,
            "kubeletHttps" => s.kubelet_https = flag()?,
            "inClusterConfig" => s.in_cluster = flag()?,
            "insecure" => s.insecure = flag()?,
            // vigil extensions: explicit service-account files (default: the in-cluster ones).
            "tokenFile" => token_file = Some(v.to_string()),
            "caFile" => ca_file = Some(v.to_string()),
            "useServiceAccount" => {
                if flag()? {
                    s.in_cluster = true;
                }
            }
            "auth" | "apiVersion" => return Err(bad(format!("option {k} is not supported by vigil (kubeconfig files are not read); use inClusterConfig=true or an http master"))),
            other => return Err(bad(format!("unknown option {other}"))),
        }
    }
    if s.in_cluster {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| bad("inClusterConfig=true but KUBERNETES_SERVICE_HOST is not set (not running in a pod?); pass inClusterConfig=false with an explicit master".into()))?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
        if s.master.is_empty() {
            s.master = format!("https://{host}:{port}");
        }
        let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
        token_file.get_or_insert_with(|| format!("{sa}/token"));
        if ca_file.is_none() {
            s.ca_pem = std::fs::read(format!("{sa}/ca.crt")).ok();
        }
    } else if s.master.is_empty() {
        return Err(bad("inClusterConfig=false needs a master URL, e.g. kubernetes.summary_api:http://127.0.0.1:8080?inClusterConfig=false".into()));
    }
    if let Some(f) = token_file {
        let t = std::fs::read_to_string(&f).map_err(|e| bad(format!("token file {f}: {e}")))?;
        let t = t.trim();
        if t.is_empty() {
            return Err(bad(format!("token file {f} is empty")));
        }
        s.token = Some(t.to_string());
    }
    if let Some(f) = ca_file {
        let pem = std::fs::read(&f).map_err(|e| bad(format!("caFile={f}: {e}")))?;
        s.ca_pem = Some(pem);
    }
    if let Some(pem) = &s.ca_pem {
        match reqwest::Certificate::from_pem_bundle(pem) {
            Ok(c) if !c.is_empty() => {}
            Ok(_) => return Err(bad("the CA file holds no PEM certificate".into())),
            Err(e) => return Err(bad(format!("the CA file is not valid PEM: {e}"))),
        }
    }
    Ok(s)
}

#[derive(Deserialize)]
pub(crate) struct NodeList {
    #[serde(default)]
    pub(crate) metadata: ListMeta,
    #[serde(default)]
    pub(crate) items: Vec<Node>,
}
#[derive(Deserialize, Default)]
pub(crate) struct ListMeta {
    #[serde(default, rename = "resourceVersion")]
    pub(crate) resource_version: String,
}
#[derive(Deserialize, Clone)]
pub(crate) struct Node {
    pub(crate) metadata: Meta,
    #[serde(default)]
    status: NodeStatus,
}
#[derive(Deserialize, Clone)]
pub(crate) struct Meta {
    pub(crate) name: String,
}
#[derive(Deserialize, Default, Clone)]
struct NodeStatus {
    #[serde(default)]
    addresses: Vec<Address>,
    #[serde(default)]
    conditions: Vec<Condition>,
    #[serde(default)]
    capacity: BTreeMap<String, String>,
}
#[derive(Deserialize, Clone)]
struct Address {
    #[serde(rename = "type")]
    kind: String,
    address: String,
}
#[derive(Deserialize, Clone)]
struct Condition {
    #[serde(rename = "type")]
    kind: String,
    status: String,
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
    let list: NodeList =
        serde_json::from_slice(body).map_err(|e| format!("malformed NodeList: {e}"))?;
    Ok(targets_of(list.items, k))
}

/// Targets of these nodes: the Ready ones, at InternalIP (else Hostname) and the kubelet port.
pub(crate) fn targets_of(nodes: impl IntoIterator<Item = Node>, k: &KubeSource) -> Vec<Target> {
    let scheme = if k.kubelet_https { "https" } else { "http" };
    // The token goes to HTTPS kubelets only (never in clear text to the read-only port).
    let token: Option<std::sync::Arc<str>> = match (&k.token, k.kubelet_https) {
        (Some(t), true) => Some(t.as_str().into()),
        _ => None,
    };
    let mut out = Vec::new();
    for n in nodes {
        if n.status
            .conditions
            .iter()
            .any(|c| c.kind == "Ready" && c.status != "True")
        {
            tracing::info!(node = %n.metadata.name, "node is not ready; skipped");
            continue;
        }
        let addr = n
            .status
            .addresses
            .iter()
            .find(|a| a.kind == "InternalIP")
            .or_else(|| n.status.addresses.iter().find(|a| a.kind == "Hostname"));
        let Some(addr) = addr else {
            tracing::warn!(node = %n.metadata.name, "node has no InternalIP or Hostname address; skipped");
            continue;
        };
        let host = if addr.address.contains(':') {
            format!("[{}]", addr.address)
        } else {
            addr.address.clone()
        };
        out.push(Target {
            url: format!("{scheme}://{host}:{}/stats/summary", k.kubelet_port),
            name: n.metadata.name,
            cpu_cores: n
                .status
                .capacity
                .get("cpu")
                .and_then(|q| parse_cpu_quantity(q)),
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
        client: reqwest::Client,
        /// The same TLS settings without a total timeout, for the long-lived node watch.
        watch_client: reqwest::Client,
        /// The node list and watch (`node_watch`), started at the first round.
        watch_task: Option<tokio::task::JoinHandle<()>>,
        /// What the background refresh found last (a slow API server never stalls a round).
        state: std::sync::Arc<std::sync::Mutex<KubeState>>,
        /// Asks the background refresh for a new list (once per round).
        wake: std::sync::Arc<tokio::sync::Notify>,
        /// The background refresh, started at the first round.
        task: Option<tokio::task::JoinHandle<()>>,
    },
}

/// The Kubernetes source's latest lists: nodes kept by the node watch, pods and namespaces by
/// the refresh asked once per round.
#[derive(Default)]
pub struct KubeState {
    targets: Vec<Target>,
    info: Option<std::sync::Arc<crate::processors::enrich::ClusterInfo>>,
    /// The last error, reported once by the next round.
    error: Option<Error>,
    /// The first node list has finished (successfully or not).
    done: bool,
}

impl KubeState {
    /// The node watch's current Ready nodes.
    pub(crate) fn set_targets(&mut self, targets: Vec<Target>) {
        self.targets = targets;
        self.done = true;
    }

    /// A failed node list or watch: the previous targets stay.
    pub(crate) fn node_error(&mut self, e: Error) {
        self.error = Some(e);
        self.done = true;
    }
}

/// How long the first round waits for the first node list before it goes ahead without it.
const FIRST_LIST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Lists pods and namespaces into `state` (the error is kept for the next round).
async fn refresh_kubernetes(client: &reqwest::Client, source: &KubeSource, state: &std::sync::Mutex<KubeState>) {
    // Pods and namespaces enrich the sets (requests, limits, labels, namespace_id).
    let lists = async {
        let pods = get_list(client, source, "/api/v1/pods").await?;
        let nss = get_list(client, source, "/api/v1/namespaces").await?;
        crate::processors::enrich::from_lists(&pods, &nss).map_err(|message| Error::Kubernetes {
            url: format!("{}/api/v1/pods", source.master),
            message,
        })
    }
    .await;
    let mut st = state.lock().expect("kubernetes state lock");
    match lists {
        Ok(i) => st.info = Some(std::sync::Arc::new(i)),
        Err(e) => st.error = Some(e),
    }
}

async fn get_list(
    client: &reqwest::Client,
    source: &KubeSource,
    path: &str,
) -> Result<bytes::Bytes, Error> {
    let url = format!("{}{path}", source.master);
    let mut req = client.get(&url);
    if let Some(t) = &source.token {
        req = req.bearer_auth(t);
    }
    let fail = |message: String| Error::Kubernetes {
        url: url.clone(),
        message,
    };
    let resp = req.send().await.map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
    if !status.is_success() {
        return Err(fail(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )));
    }
    Ok(body)
}

impl Discovery {
    /// Builds the discovery from the options (exactly one kind; static entries are checked now).
    pub fn from_options(
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
            let mut d = Discovery::File {
                path: path.clone(),
                stamp: None,
                targets: Vec::new(),
            };
            if let Discovery::File {
                path,
                stamp,
                targets,
            } = &mut d
            {
                reload_file(path, stamp, targets)?;
            }
            out.push(d);
        }
        if let Some(src) = source {
            let source = parse_source(src)?;
            let mut b = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .danger_accept_invalid_certs(source.insecure);
            if let Some(pem) = &source.ca_pem {
                for cert in reqwest::Certificate::from_pem_bundle(pem).unwrap_or_default() {
                    b = b.add_root_certificate(cert);
                }
            }
            let client = b.build().map_err(|e| Error::Source {
                source_uri: src.to_string(),
                message: e.to_string(),
            })?;
            let mut w = reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(10))
                .danger_accept_invalid_certs(source.insecure);
            if let Some(pem) = &source.ca_pem {
                for cert in reqwest::Certificate::from_pem_bundle(pem).unwrap_or_default() {
                    w = w.add_root_certificate(cert);
                }
            }
            let watch_client = w.build().map_err(|e| Error::Source {
                source_uri: src.to_string(),
                message: e.to_string(),
            })?;
            out.push(Discovery::Kubernetes {
                source: std::sync::Arc::new(source),
                client,
                watch_client,
                watch_task: None,
                state: Default::default(),
                wake: Default::default(),
                task: None,
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

    /// Pods and namespaces from the last successful Kubernetes refresh.
    pub fn cluster_info(&self) -> Option<std::sync::Arc<crate::processors::enrich::ClusterInfo>> {
        match self {
            Discovery::Kubernetes { state, .. } => state.lock().expect("kubernetes state lock").info.clone(),
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
            Discovery::Kubernetes {
                source,
                client,
                watch_client,
                watch_task,
                state,
                wake,
                task,
            } => {
                // Nodes come from a list + watch, pods and namespaces from a refresh asked once per
                // round, both in the background: a slow or hanging API server delays the lists,
                // never the round.
                if task.is_none() {
                    *watch_task = Some(tokio::spawn(super::node_watch::run(
                        watch_client.clone(),
                        source.clone(),
                        state.clone(),
                    )));
                    let (source, client, shared, wake) = (source.clone(), client.clone(), state.clone(), wake.clone());
                    *task = Some(tokio::spawn(async move {
                        loop {
                            refresh_kubernetes(&client, &source, &shared).await;
                            wake.notified().await;
                        }
                    }));
                    // The first round waits a little for the first list, so it is not empty.
                    let first = async {
                        while !state.lock().expect("kubernetes state lock").done {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        }
                    };
                    let _ = tokio::time::timeout(FIRST_LIST_WAIT, first).await;
                } else {
                    wake.notify_one();
                }
                let mut st = state.lock().expect("kubernetes state lock");
                (st.targets.clone(), st.error.take())
            }
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        if let Discovery::Kubernetes { task, watch_task, .. } = self {
            for t in [task.take(), watch_task.take()].into_iter().flatten() {
                t.abort();
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
        assert!(parse_source("kubernetes.summary_api:''?inClusterConfig=false").is_ok());
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
