//! Pulls `/stats/summary` from every node each round: per-node jitter, a timeout, a round
//! deadline, bounded concurrency, gzip, a cap on the decompressed body; failed and late nodes
//! are marked stale, counted and retried next round.
//!
//! A hung or dripping node must not delay the others. Like Heapster's source manager, a round
//! has a deadline ([`round_deadline`]: three quarters of the resolution, leaving the last
//! quarter to processing and storing): the nodes that answered by then are the round, and a
//! pull still running at the deadline is dropped (its connection closed), counted as `late`
//! and tried again next round. The round is thus never longer than the deadline, whatever
//! `--scrape-timeout` says, so the next one starts on its boundary and healthy nodes get every
//! point. Rates stay right across a missed round: they are computed from each document's own
//! sample times and the last counters seen, so the next rate covers the real interval.
//! (Per-target loops as in Prometheus would also work, but the processor builds one batch per
//! round at the round's boundary; a deadline keeps that model.) A hung node holds one of the
//! `concurrency` pull slots until the deadline; the others go on in the remaining slots.
//!
//! A node's body is read chunk by chunk after gzip decoding and refused as soon as it passes
//! the document limit ([`DEFAULT_MAX_DOCUMENT`], `--max-document-bytes`), so an endless body,
//! a gzip bomb or a huge document costs at most the limit per pull in flight; the decoder then
//! refuses a document with more list entries or metric sets than a node may report
//! ([`crate::processors::decode::MAX_SETS_PER_DOCUMENT`]). A failing node is logged when it
//! starts failing, fails differently or answers again, not every round.

pub mod discovery;
pub mod kubernetes;
pub mod problems;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::processors::{Decoder, NodeDoc};
pub use discovery::{Discovery, Target};

/// Why one node's pull failed; each names the node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("node {node}: request failed: {message}")]
    Transport { node: String, message: String },
    #[error("node {node}: timed out after {timeout:?}")]
    Timeout { node: String, timeout: Duration },
    #[error("node {node}: HTTP {status}")]
    Status { node: String, status: u16 },
    #[error("node {node}: malformed Summary document: {message}")]
    Malformed { node: String, message: String },
    #[error("node {node}: document larger than {limit} bytes (decompressed; raise --max-document-bytes if real)")]
    TooLarge { node: String, limit: usize },
    #[error("node {node}: document refused as too large: {message}")]
    TooManySets { node: String, message: String },
    #[error("node {node}: no answer by the round's deadline ({deadline:?} after the round began); missed this round")]
    Late { node: String, deadline: Duration },
}

impl Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Transport { .. } => "transport",
            Error::Timeout { .. } => "timeout",
            Error::Status { .. } => "status",
            Error::Malformed { .. } => "malformed",
            Error::TooLarge { .. } | Error::TooManySets { .. } => "too_large",
            Error::Late { .. } => "late",
        }
    }
}

/// How a bounded GET ([`Scraper::get_bounded`]) failed; each caller wraps it in its own error,
/// which names the node (and the URL).
#[derive(Debug)]
enum Fetch {
    Timeout,
    Transport(String),
    /// Any status but 2xx.
    Status(u16),
    /// The body passed the caller's limit.
    TooLarge,
}

/// The failure reasons counted in `vigil_aggregator_scrape_failures_total{reason}`.
pub const FAILURE_REASONS: [&str; 6] = [
    "transport",
    "timeout",
    "status",
    "malformed",
    "too_large",
    "late",
];

/// The largest decompressed Summary document accepted by default: 8 MiB. A simulated node at
/// the kubelet's 110-pod maximum with 2 containers per pod sends 178 KB (288 KB pretty-printed,
/// as a kubelet indents it; the test `default_document_limit_has_headroom_over_a_110_pod_node`
/// measures it), so this leaves more than 25× for larger pods, volumes and extra fields, while
/// 64 pulls in flight hold at most 512 MiB even if every node is hostile.
pub const DEFAULT_MAX_DOCUMENT: usize = 8 << 20;

/// The round deadline for a resolution: three quarters of it (the rest is for processing).
pub fn round_deadline(resolution: Duration) -> Duration {
    resolution * 3 / 4
}

/// What the aggregator knows of one node's pulls.
#[derive(Debug, Clone, Default)]
pub struct NodeState {
    pub name: String,
    pub up: bool,
    pub consecutive_failures: u64,
    pub failures: u64,
    pub successes: u64,
    pub last_error: Option<String>,
    pub last_duration: Duration,
    /// Rounds this node missed because it had not answered by the round's deadline.
    pub late: u64,
    /// Why the last failed pull failed (a [`FAILURE_REASONS`] entry).
    pub last_reason: Option<&'static str>,
}

/// The pulling half of the aggregator.
pub struct Scraper {
    client: reqwest::Client,
    timeout: Duration,
    concurrency: usize,
    max_document: usize,
    /// When set, pulls still running this long after a round began are dropped as late.
    round_deadline: Option<Duration>,
    /// Client for the Kubernetes source's kubelets (its `insecure` and CA settings).
    kubelet_client: Option<reqwest::Client>,
    nodes: Mutex<HashMap<String, NodeState>>,
    failures_by_reason: Mutex<HashMap<&'static str, u64>>,
    /// Decodes each body as it arrives (each target's label maps are kept between rounds).
    decoder: Decoder,
}

fn jitter(name: &str, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    Duration::from_nanos(h.finish() % max.as_nanos().max(1) as u64)
}

impl Scraper {
    pub fn new(timeout: Duration, concurrency: usize) -> Scraper {
        // Up to `concurrency` idle connections per host: one per node when every node is its own
        // host, and a connection per pull slot when many nodes sit behind one address (the API
        // server's node proxy, a load balancer, the simulator); with fewer, most pulls opened a
        // new connection every round.
        let client = reqwest::Client::builder()
            .gzip(true)
            .timeout(timeout)
            .pool_max_idle_per_host(concurrency.max(1))
            .build()
            .expect("HTTP client with rustls builds");
        Scraper {
            client,
            timeout,
            concurrency,
            max_document: DEFAULT_MAX_DOCUMENT,
            round_deadline: None,
            kubelet_client: None,
            nodes: Mutex::new(HashMap::new()),
            failures_by_reason: Mutex::new(HashMap::new()),
            decoder: Decoder::default(),
        }
    }

    /// Overrides the largest accepted (decompressed) document, [`DEFAULT_MAX_DOCUMENT`] by
    /// default.
    pub fn with_max_document(mut self, bytes: usize) -> Scraper {
        self.max_document = bytes;
        self
    }

    /// Ends every round `deadline` after it began (see the module doc): pulls still running
    /// then are dropped and counted as late. Without it a round waits for every pull's timeout.
    pub fn with_round_deadline(mut self, deadline: Duration) -> Scraper {
        self.round_deadline = Some(deadline);
        self
    }

    /// Pulls the Kubernetes source's kubelet targets with their TLS settings: `insecure` accepts
    /// any serving certificate (metrics-server's `--kubelet-insecure-tls`), `ca_pem` adds the
    /// cluster CA to the trusted roots.
    pub fn with_kubelet_tls(
        mut self,
        insecure: bool,
        ca_pem: Option<&[u8]>,
    ) -> Result<Scraper, reqwest::Error> {
        let mut b = reqwest::Client::builder()
            .gzip(true)
            .timeout(self.timeout)
            .pool_max_idle_per_host(self.concurrency.max(1))
            .danger_accept_invalid_certs(insecure);
        if let Some(pem) = ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                b = b.add_root_certificate(cert);
            }
        }
        self.kubelet_client = Some(b.build()?);
        Ok(self)
    }

    /// GETs `url` with `target`'s client and bearer token and reads the (gzip-decoded) body,
    /// refusing it as soon as it passes `limit` bytes: the one bounded read of the Summary
    /// pull and the problem pull. A status other than 2xx is [`Fetch::Status`].
    async fn get_bounded(
        &self,
        target: &Target,
        url: &str,
        limit: usize,
    ) -> Result<Vec<u8>, Fetch> {
        let client = match (&self.kubelet_client, target.kubelet) {
            (Some(k), true) => k,
            _ => &self.client,
        };
        let mut req = client.get(url).header("Accept", "application/json");
        if let Some(t) = &target.bearer_token {
            req = req.bearer_auth(t);
        }
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                Fetch::Timeout
            } else {
                Fetch::Transport(e.to_string())
            }
        };
        let mut resp = req.send().await.map_err(failed)?;
        if !resp.status().is_success() {
            return Err(Fetch::Status(resp.status().as_u16()));
        }
        if resp.content_length().is_some_and(|l| l as usize > limit) {
            return Err(Fetch::TooLarge);
        }
        // Read chunk by chunk (decompressed): with chunked transfer or gzip there is no
        // Content-Length, and a broken or hostile node must not make us hold more than `limit`
        // bytes. The buffer grows by doubling but never past `limit` (a plain `extend` could
        // double a buffer just under the limit to twice it).
        let mut body: Vec<u8> = Vec::with_capacity(
            resp.content_length()
                .map_or(64 << 10, |l| l as usize)
                .min(limit),
        );
        while let Some(chunk) = resp.chunk().await.map_err(failed)? {
            let need = body.len() + chunk.len();
            if need > limit {
                return Err(Fetch::TooLarge);
            }
            if need > body.capacity() {
                let want = (body.capacity() * 2).max(need).min(limit);
                body.reserve_exact(want - body.len());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Pulls one target and decodes its document into the node's sets as soon as the body is
    /// in (the body is dropped then; no parsed document tree is kept for the round).
    async fn fetch(&self, target: &Target) -> Result<NodeDoc, Error> {
        let node = target.name.clone();
        let limit = self.max_document;
        let body = self
            .get_bounded(target, &target.url, limit)
            .await
            .map_err(|e| match e {
                Fetch::Timeout => Error::Timeout {
                    node: node.clone(),
                    timeout: self.timeout,
                },
                Fetch::Transport(message) => Error::Transport {
                    node: node.clone(),
                    message,
                },
                Fetch::Status(status) => Error::Status {
                    node: node.clone(),
                    status,
                },
                Fetch::TooLarge => Error::TooLarge {
                    node: node.clone(),
                    limit,
                },
            })?;
        self.decoder
            .decode(&target.url, &target.name, target.cpu_cores, &body)
            .map_err(|e| match e {
                crate::processors::decode::Error::TooManySets { .. }
                | crate::processors::decode::Error::TooManyEntries { .. } => Error::TooManySets {
                    node,
                    message: e.to_string(),
                },
                e => Error::Malformed {
                    node,
                    message: e.to_string(),
                },
            })
    }

    /// Pulls every target (at most `concurrency` at once, each delayed by its jitter) and returns
    /// the documents that arrived by the round deadline. Failures and late nodes are logged,
    /// counted and leave the node stale.
    pub async fn round(&self, targets: &[Target], max_jitter: Duration) -> Vec<NodeDoc> {
        let began = tokio::time::Instant::now();
        // Each pull waits for its jitter first and only then for one of the `concurrency`
        // slots: a jitter that held a slot would serialize the delays (1,000 nodes, 64 slots and
        // up to 4 s of jitter made a round's fetch last ~30 s, twice the resolution).
        let slots = tokio::sync::Semaphore::new(self.concurrency.max(1));
        let results: Vec<(Target, Result<NodeDoc, Error>, Duration)> = targets
            .iter()
            .cloned()
            .map(|t| {
                let slots = &slots;
                async move {
                    let pull = async {
                        tokio::time::sleep(jitter(&t.url, max_jitter)).await;
                        let _slot = slots
                            .acquire()
                            .await
                            .expect("the semaphore is never closed");
                        let start = Instant::now();
                        let r = self.fetch(&t).await;
                        (r, start.elapsed())
                    };
                    let (r, took) = match self.round_deadline {
                        None => pull.await,
                        Some(deadline) => tokio::time::timeout_at(began + deadline, pull)
                            .await
                            .unwrap_or_else(|_| {
                                let node = t.name.clone();
                                (Err(Error::Late { node, deadline }), deadline)
                            }),
                    };
                    (t, r, took)
                }
            })
            .collect::<futures_util::stream::FuturesUnordered<_>>()
            .collect()
            .await;
        let mut docs = Vec::with_capacity(results.len());
        let mut nodes = self.nodes.lock().unwrap();
        let live: std::collections::HashSet<&str> =
            targets.iter().map(|t| t.url.as_str()).collect();
        nodes.retain(|url, _| live.contains(url.as_str()));
        self.decoder.retain(|url| live.contains(url));
        for (t, r, took) in results {
            let st = nodes.entry(t.url.clone()).or_default();
            st.last_duration = took;
            match r {
                Ok(doc) => {
                    if st.name != doc.node_name {
                        st.name = doc.node_name.clone();
                    }
                    if st.consecutive_failures > 0 {
                        tracing::info!(node = %st.name, url = %t.url, missed = st.consecutive_failures, "node answers again");
                    }
                    st.up = true;
                    st.consecutive_failures = 0;
                    st.successes += 1;
                    st.last_error = None;
                    st.last_reason = None;
                    docs.push(doc);
                }
                Err(e) => {
                    if st.name.is_empty() {
                        st.name = t.name.clone();
                    }
                    st.up = false;
                    st.consecutive_failures += 1;
                    st.failures += 1;
                    if matches!(e, Error::Late { .. }) {
                        st.late += 1;
                    }
                    // Logged when a node starts failing or fails differently, not every round
                    // while it stays down (the counters and node_up say that).
                    let error = e.to_string();
                    let same = st.consecutive_failures > 1 && st.last_reason == Some(e.reason());
                    st.last_reason = Some(e.reason());
                    if same {
                        tracing::debug!(node = %st.name, url = %t.url, reason = e.reason(), consecutive = st.consecutive_failures, error = %e, "node pull failed again");
                    } else {
                        tracing::warn!(node = %st.name, url = %t.url, reason = e.reason(), consecutive = st.consecutive_failures, error = %e, "node pull failed; node is stale (logged again when it answers or fails differently)");
                    }
                    st.last_error = Some(error);
                    *self
                        .failures_by_reason
                        .lock()
                        .unwrap()
                        .entry(e.reason())
                        .or_default() += 1;
                }
            }
        }
        docs
    }

    /// Per-node state keyed by URL.
    pub fn node_states(&self) -> Vec<(String, NodeState)> {
        let mut v: Vec<_> = self
            .nodes
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Pods dropped from node documents that listed the same namespace/name twice.
    pub fn duplicate_pods(&self) -> u64 {
        self.decoder.duplicate_pods()
    }

    pub fn failures_by_reason(&self) -> Vec<(&'static str, u64)> {
        let mut v: Vec<_> = self
            .failures_by_reason
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect();
        v.sort();
        v
    }
}

/// Heapster's per-node jitter bound: min(8 ms × nodes, 4 s), and at most a quarter resolution.
pub fn max_jitter(nodes: usize, resolution: Duration) -> Duration {
    Duration::from_millis(8 * nodes as u64)
        .min(Duration::from_secs(4))
        .min(resolution / 4)
}

/// The root tests' test CA and TLS front, one copy (included as `server/tests/serve.rs` does).
#[cfg(test)]
#[path = "../../../tests/support/tls.rs"]
#[allow(dead_code)]
mod test_tls;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_bounded_and_stable() {
        assert_eq!(
            max_jitter(10, Duration::from_secs(15)),
            Duration::from_millis(80)
        );
        assert_eq!(
            max_jitter(10_000, Duration::from_secs(60)),
            Duration::from_secs(4)
        );
        assert_eq!(
            max_jitter(10_000, Duration::from_secs(1)),
            Duration::from_millis(250)
        );
        let j = jitter("http://a", Duration::from_millis(80));
        assert!(j < Duration::from_millis(80));
        assert_eq!(j, jitter("http://a", Duration::from_millis(80)));
    }

    /// Jitter delays a pull without holding one of the concurrency slots: with one slot, eight
    /// nodes whose jitters add up to several seconds are all pulled within about the largest
    /// jitter.
    #[tokio::test]
    async fn jitter_does_not_hold_a_concurrency_slot() {
        let max = Duration::from_millis(1500);
        // Nothing listens on port 9: each pull fails at once (connection refused).
        let targets: Vec<Target> = (0..8)
            .map(|i| discovery::parse_entry(&format!("http://127.0.0.1:9/n{i}")).unwrap())
            .collect();
        let sum: Duration = targets.iter().map(|t| jitter(&t.url, max)).sum();
        assert!(sum > Duration::from_secs(3), "test premise: {sum:?}");
        let s = Scraper::new(Duration::from_millis(500), 1);
        let t0 = Instant::now();
        let docs = s.round(&targets, max).await;
        assert!(docs.is_empty());
        assert_eq!(s.node_states().len(), 8);
        let took = t0.elapsed();
        assert!(
            took < Duration::from_millis(2500),
            "{took:?} (jitters add up to {sum:?})"
        );
    }

    /// A loopback server answering every connection with a chunked body (no Content-Length)
    /// of `chunks` × 64 KiB.
    async fn chunked_server(chunks: usize) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                    if s.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let data = vec![b' '; 64 << 10];
                    for _ in 0..chunks {
                        let mut c = format!("{:x}\r\n", data.len()).into_bytes();
                        c.extend_from_slice(&data);
                        c.extend_from_slice(b"\r\n");
                        if s.write_all(&c).await.is_err() {
                            return;
                        }
                    }
                    let _ = s.write_all(b"0\r\n\r\n").await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn chunked_body_without_length_is_bounded() {
        // 64 chunks × 64 KiB = 4 MiB with no Content-Length; the limit is 1 MiB.
        let addr = chunked_server(64).await;
        let s = Scraper::new(Duration::from_secs(5), 4).with_max_document(1 << 20);
        let t = discovery::parse_entry(&addr.to_string()).unwrap();
        let docs = s.round(std::slice::from_ref(&t), Duration::ZERO).await;
        assert!(docs.is_empty());
        let st = &s.node_states()[0].1;
        assert!(!st.up);
        assert_eq!(st.failures, 1);
        let err = st.last_error.as_ref().unwrap();
        assert!(err.contains("larger than 1048576 bytes"), "{err}");
        assert_eq!(s.failures_by_reason(), vec![("too_large", 1)]);
        // Under the limit, the same server's body is read in full (and then rejected as
        // malformed JSON, not as too large).
        let s = Scraper::new(Duration::from_secs(5), 4).with_max_document(8 << 20);
        let _ = s.round(&[t], Duration::ZERO).await;
        assert_eq!(s.failures_by_reason(), vec![("malformed", 1)]);
    }

    /// A loopback HTTPS "kubelet" serving the testdata Summary only with
    /// `Authorization: Bearer <token>` (401 otherwise), over TLS from the test CA's front.
    /// Returns its port and the CA's PEM.
    async fn https_kubelet(token: &'static str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/kubelet-summary.json"
        ))
        .unwrap();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plain = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&req).to_ascii_lowercase();
                    let want = format!("authorization: bearer {}\r\n", token.to_ascii_lowercase());
                    let resp = if head.contains(&want) {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(&body);
                        r
                    } else {
                        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 12\r\nConnection: close\r\n\r\nUnauthorized".to_vec()
                    };
                    let _ = s.write_all(&resp).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        test_tls::tls_front(plain).await
    }

    /// #1: the Kubernetes source's HTTPS kubelets get the service-account bearer token and are
    /// verified against the cluster CA, or not at all with `insecure=true`.
    #[tokio::test]
    async fn https_kubelet_gets_the_bearer_token_and_the_cluster_ca() {
        let (port, ca_pem) = https_kubelet("s3cret-token").await;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret-token\n").unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca_pem).unwrap();
        let node_list = br#"{"items":[{"metadata":{"name":"kube-node-1"},"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}]}}]}"#;
        let source = |opts: &str| {
            discovery::parse_source(&format!(
                "kubernetes.summary_api:http://127.0.0.1:1?inClusterConfig=false&kubeletHttps=true&kubeletPort={port}{opts}"
            ))
            .unwrap()
        };
        let pull = |k: discovery::KubeSource| async move {
            let targets = discovery::targets_from_node_list(node_list, &k).unwrap();
            assert_eq!(
                targets[0].url,
                format!("https://127.0.0.1:{port}/stats/summary")
            );
            let s = Scraper::new(Duration::from_secs(5), 4)
                .with_kubelet_tls(k.insecure, k.ca_pem.as_deref())
                .unwrap();
            let docs = s.round(&targets, Duration::ZERO).await;
            (docs.len(), s.node_states()[0].1.last_error.clone())
        };
        let token = format!("&tokenFile={}", dir.path().join("token").display());
        let ca = format!("&caFile={}", dir.path().join("ca.crt").display());

        // Token + cluster CA: verified TLS, authorized.
        let (n, err) = pull(source(&format!("{token}{ca}"))).await;
        assert_eq!((n, err), (1, None));
        // Token + insecure=true, no CA: the serving certificate is accepted as is.
        let (n, err) = pull(source(&format!("{token}&insecure=true"))).await;
        assert_eq!((n, err), (1, None));
        // No CA and not insecure: the self-made certificate is refused.
        let (n, err) = pull(source(&token)).await;
        assert_eq!(n, 0);
        assert!(err.as_ref().unwrap().contains("request failed"), "{err:?}");
        // Without the token the kubelet answers 401, and the node is stale with that status.
        let (n, err) = pull(source(&ca)).await;
        assert_eq!(n, 0);
        assert!(err.as_ref().unwrap().contains("HTTP 401"), "{err:?}");
        // The token never goes to a plain-HTTP (read-only port) kubelet.
        let plain = discovery::parse_source(&format!(
            "kubernetes.summary_api:http://127.0.0.1:1?inClusterConfig=false&kubeletPort={port}{token}"
        ))
        .unwrap();
        let t = discovery::targets_from_node_list(node_list, &plain).unwrap();
        assert!(t[0].bearer_token.is_none() && t[0].url.starts_with("http://"));
        // Bad files are named.
        let err = discovery::parse_source(
            "kubernetes.summary_api:http://127.0.0.1:1?inClusterConfig=false&caFile=/nonexistent/ca.crt",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("caFile=/nonexistent/ca.crt"), "{err}");
        std::fs::write(dir.path().join("bad.crt"), "not a certificate").unwrap();
        let err = discovery::parse_source(&format!(
            "kubernetes.summary_api:http://127.0.0.1:1?inClusterConfig=false&caFile={}",
            dir.path().join("bad.crt").display()
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("CA file"), "{err}");
    }

    /// A simulated node at the kubelet's 110-pod maximum (2 containers per pod) is far below
    /// the default document limit.
    #[test]
    fn default_document_limit_has_headroom_over_a_110_pod_node() {
        let sim = crate::sim::Sim::new(crate::sim::Shape {
            nodes: 1,
            pods_per_node: 110,
            containers_per_pod: 2,
            namespaces: 10,
        });
        let body = serde_json::to_vec(&sim.summary(0, chrono::Utc::now())).unwrap();
        let pretty = serde_json::to_vec_pretty(&sim.summary(0, chrono::Utc::now())).unwrap();
        eprintln!(
            "110-pod Summary: {} bytes compact, {} bytes pretty",
            body.len(),
            pretty.len()
        );
        assert!(
            pretty.len() * 25 < DEFAULT_MAX_DOCUMENT,
            "{} bytes",
            pretty.len()
        );
    }

    /// A loopback server that accepts connections and never answers (a hung node); the problem
    /// pull's tests use it too.
    pub(super) async fn hung_server() -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        addr
    }

    /// A pull still running at the round deadline is dropped and counted as late; the round
    /// ends at the deadline, not at the node's (longer) timeout.
    #[tokio::test]
    async fn hung_node_is_late_at_the_round_deadline() {
        let hung = discovery::parse_entry(&hung_server().await.to_string()).unwrap();
        let s = Scraper::new(Duration::from_secs(30), 4)
            .with_round_deadline(Duration::from_millis(400));
        let t0 = Instant::now();
        let docs = s.round(std::slice::from_ref(&hung), Duration::ZERO).await;
        let took = t0.elapsed();
        assert!(docs.is_empty());
        assert!(took < Duration::from_secs(2), "{took:?}");
        let st = &s.node_states()[0].1;
        assert_eq!((st.up, st.late, st.failures), (false, 1, 1));
        let err = st.last_error.as_ref().unwrap();
        assert!(
            err.contains("round's deadline") && err.contains("missed"),
            "{err}"
        );
        assert_eq!(s.failures_by_reason(), vec![("late", 1)]);
        let _ = s.round(&[hung], Duration::ZERO).await;
        assert_eq!(s.node_states()[0].1.late, 2);
    }

    #[tokio::test]
    async fn unreachable_node_is_stale_and_named() {
        let s = Scraper::new(Duration::from_millis(500), 4);
        // Port 9 on loopback: nothing listens, connection refused.
        let t = discovery::parse_entry("127.0.0.1:9").unwrap();
        let docs = s.round(&[t], Duration::ZERO).await;
        assert!(docs.is_empty());
        let st = &s.node_states()[0].1;
        assert!(!st.up);
        assert_eq!(st.failures, 1);
        assert!(
            st.last_error.as_ref().unwrap().contains("node 127.0.0.1"),
            "{:?}",
            st.last_error
        );
    }
}
