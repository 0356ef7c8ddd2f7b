//! Pulls `/stats/summary` from every node each round: per-node jitter, a timeout, bounded
//! concurrency, gzip; failed nodes are marked stale, counted and retried next round.

pub mod discovery;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use vigil_collector::summary::Summary;

use crate::processors::NodeDoc;
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
    #[error("node {node}: document larger than {limit} bytes")]
    TooLarge { node: String, limit: usize },
}

impl Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Transport { .. } => "transport",
            Error::Timeout { .. } => "timeout",
            Error::Status { .. } => "status",
            Error::Malformed { .. } => "malformed",
            Error::TooLarge { .. } => "too_large",
        }
    }
}

const MAX_DOCUMENT: usize = 256 << 20;

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
}

/// The pulling half of the aggregator.
pub struct Scraper {
    client: reqwest::Client,
    timeout: Duration,
    concurrency: usize,
    max_document: usize,
    nodes: Mutex<HashMap<String, NodeState>>,
    failures_by_reason: Mutex<HashMap<&'static str, u64>>,
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
        let client = reqwest::Client::builder()
            .gzip(true)
            .timeout(timeout)
            .pool_max_idle_per_host(4)
            .build()
            .expect("HTTP client with rustls builds");
        Scraper {
            client,
            timeout,
            concurrency,
            max_document: MAX_DOCUMENT,
            nodes: Mutex::new(HashMap::new()),
            failures_by_reason: Mutex::new(HashMap::new()),
        }
    }

    /// Overrides the largest accepted (decompressed) document, 256 MiB by default.
    pub fn with_max_document(mut self, bytes: usize) -> Scraper {
        self.max_document = bytes;
        self
    }

    async fn fetch(&self, target: &Target) -> Result<Summary, Error> {
        let node = target.name.clone();
        let mut resp = self
            .client
            .get(&target.url)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    Error::Timeout {
                        node: node.clone(),
                        timeout: self.timeout,
                    }
                } else {
                    Error::Transport {
                        node: node.clone(),
                        message: e.to_string(),
                    }
                }
            })?;
        if !resp.status().is_success() {
            return Err(Error::Status {
                node,
                status: resp.status().as_u16(),
            });
        }
        let limit = self.max_document;
        if resp.content_length().is_some_and(|l| l as usize > limit) {
            return Err(Error::TooLarge { node, limit });
        }
        // Read chunk by chunk: with chunked transfer or gzip there is no Content-Length, and a
        // broken or hostile node must not make us buffer more than `limit` bytes.
        let mut body: Vec<u8> = Vec::new();
        loop {
            let chunk = resp.chunk().await.map_err(|e| {
                if e.is_timeout() {
                    Error::Timeout {
                        node: node.clone(),
                        timeout: self.timeout,
                    }
                } else {
                    Error::Transport {
                        node: node.clone(),
                        message: e.to_string(),
                    }
                }
            })?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > limit {
                return Err(Error::TooLarge { node, limit });
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice::<Summary>(&body).map_err(|e| Error::Malformed {
            node,
            message: e.to_string(),
        })
    }

    /// Pulls every target (at most `concurrency` at once, each delayed by its jitter) and returns
    /// the documents that arrived. Failures are logged, counted and leave the node stale.
    pub async fn round(&self, targets: &[Target], max_jitter: Duration) -> Vec<NodeDoc> {
        let results: Vec<(Target, Result<Summary, Error>, Duration)> =
            futures_util::stream::iter(targets.iter().cloned())
                .map(|t| async move {
                    tokio::time::sleep(jitter(&t.url, max_jitter)).await;
                    let start = Instant::now();
                    let r = self.fetch(&t).await;
                    (t, r, start.elapsed())
                })
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
        let mut docs = Vec::with_capacity(results.len());
        let mut nodes = self.nodes.lock().unwrap();
        let live: std::collections::HashSet<&str> =
            targets.iter().map(|t| t.url.as_str()).collect();
        nodes.retain(|url, _| live.contains(url.as_str()));
        for (t, r, took) in results {
            let st = nodes.entry(t.url.clone()).or_default();
            st.last_duration = took;
            match r {
                Ok(summary) => {
                    st.name = if summary.node.node_name.is_empty() {
                        t.name.clone()
                    } else {
                        summary.node.node_name.clone()
                    };
                    st.up = true;
                    st.consecutive_failures = 0;
                    st.successes += 1;
                    st.last_error = None;
                    docs.push(NodeDoc {
                        fallback_name: t.name.clone(),
                        url: t.url.clone(),
                        summary,
                        cpu_cores: t.cpu_cores,
                    });
                }
                Err(e) => {
                    if st.name.is_empty() {
                        st.name = t.name.clone();
                    }
                    st.up = false;
                    st.consecutive_failures += 1;
                    st.failures += 1;
                    tracing::warn!(node = %t.name, url = %t.url, reason = e.reason(), consecutive = st.consecutive_failures, error = %e, "node pull failed; node is stale");
                    st.last_error = Some(e.to_string());
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
