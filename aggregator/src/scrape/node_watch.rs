//! Keeps the Kubernetes node list current with one list and then a watch (`GET /api/v1/nodes?watch=1`), as client-go's reflector does.
//!
//! Events (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`) update the list in place; an `ERROR` event
//! with code 410 (the resource version is too old), a malformed event or a failed request start
//! over with a fresh list (after a backoff on failures); a watch the server closes is resumed from
//! the last resource version.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use super::discovery::{targets_of, Error, KubeSource, KubeState, Node, NodeList};

/// How long the server keeps one watch open before we resume it (client-go uses 5–10 minutes).
const WATCH_SECONDS: u64 = 300;
/// A watch silent for this long (no event, no bookmark) is treated as dead and started over.
const IDLE_LIMIT: Duration = Duration::from_secs(WATCH_SECONDS + 30);
/// Backoff after a failed list or watch request: doubles from the first value up to the second.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

/// Why a watch ended.
enum End {
    /// The server closed the stream: resume from the last resource version.
    Closed,
    /// The resource version is gone (410) or the stream made no sense: list again.
    Relist(String),
}

/// Runs until the task is aborted: lists, then watches, publishing the Ready nodes' targets into
/// `state` after every change.
pub async fn run(client: reqwest::Client, source: Arc<KubeSource>, state: Arc<Mutex<KubeState>>) {
    let mut backoff = BACKOFF.0;
    loop {
        let (mut nodes, mut rv) = match list(&client, &source).await {
            Ok(l) => l,
            Err(e) => {
                state.lock().expect("kubernetes state lock").node_error(e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
        };
        publish(&state, &nodes, &source);
        loop {
            let started = std::time::Instant::now();
            match watch(&client, &source, &mut nodes, &mut rv, &state).await {
                // A watch closed right away (a misbehaving proxy) must not turn into a busy loop.
                Ok(End::Closed) if started.elapsed() < Duration::from_secs(1) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
                Ok(End::Closed) => backoff = BACKOFF.0,
                Ok(End::Relist(why)) => {
                    tracing::info!(reason = %why, "node watch: listing the nodes again");
                    break;
                }
                Err(e) => {
                    state.lock().expect("kubernetes state lock").node_error(e);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF.1);
                    break;
                }
            }
        }
    }
}

fn publish(state: &Mutex<KubeState>, nodes: &BTreeMap<String, Node>, source: &KubeSource) {
    let targets = targets_of(nodes.values().cloned(), source);
    state.lock().expect("kubernetes state lock").set_targets(targets);
}

fn request(client: &reqwest::Client, source: &KubeSource, url: &str) -> reqwest::RequestBuilder {
    let req = client.get(url).header("Accept", "application/json");
    match &source.token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

async fn list(client: &reqwest::Client, source: &KubeSource) -> Result<(BTreeMap<String, Node>, String), Error> {
    let url = format!("{}/api/v1/nodes", source.master);
    let fail = |message: String| Error::Kubernetes { url: url.clone(), message };
    let resp = tokio::time::timeout(Duration::from_secs(30), request(client, source, &url).send())
        .await
        .map_err(|_| fail("no answer within 30s".into()))?
        .map_err(|e| fail(e.to_string()))?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|e| fail(e.to_string()))?;
    if !status.is_success() {
        return Err(fail(format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)]))));
    }
    let list: NodeList = serde_json::from_slice(&body).map_err(|e| fail(format!("malformed NodeList: {e}")))?;
    let nodes = list.items.into_iter().map(|n| (n.metadata.name.clone(), n)).collect();
    Ok((nodes, list.metadata.resource_version))
}

/// One watch request, applied event by event until the stream ends.
async fn watch(
    client: &reqwest::Client,
    source: &KubeSource,
    nodes: &mut BTreeMap<String, Node>,
    rv: &mut String,
    state: &Mutex<KubeState>,
) -> Result<End, Error> {
    let url = format!(
        "{}/api/v1/nodes?watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={}",
        source.master, rv
    );
    let fail = |message: String| Error::Kubernetes { url: url.clone(), message };
    let mut resp = tokio::time::timeout(Duration::from_secs(30), request(client, source, &url).send())
        .await
        .map_err(|_| fail("no answer within 30s".into()))?
        .map_err(|e| fail(e.to_string()))?;
    if resp.status().as_u16() == 410 {
        return Ok(End::Relist("HTTP 410 Gone".into()));
    }
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(IDLE_LIMIT, resp.chunk()).await {
            Err(_) => return Ok(End::Relist(format!("no event for {IDLE_LIMIT:?}"))),
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Ok(Ok(None)) => return Ok(End::Closed),
            Ok(Ok(Some(c))) => c,
        };
        buf.extend_from_slice(&chunk);
        // Every complete event line of this chunk, then one publish (a first watch without a
        // resource version brings one ADDED event per node).
        let mut changed = false;
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if let Some(end) = apply(&line, nodes, rv) {
                if changed {
                    publish(state, nodes, source);
                }
                return Ok(end);
            }
            changed = true;
        }
        if changed {
            publish(state, nodes, source);
        }
    }
}

/// Applies one event line; `Some` when the watch must end.
fn apply(line: &[u8], nodes: &mut BTreeMap<String, Node>, rv: &mut String) -> Option<End> {
    let ev: Event = match serde_json::from_slice(line) {
        Ok(e) => e,
        Err(e) => return Some(End::Relist(format!("malformed watch event: {e}"))),
    };
    if ev.kind == "ERROR" {
        let code = ev.object.get("code").and_then(|c| c.as_u64()).unwrap_or(0);
        let msg = ev.object.get("message").and_then(|m| m.as_str()).unwrap_or("");
        return Some(End::Relist(format!("watch error {code}: {msg}")));
    }
    if let Some(v) = ev.object.pointer("/metadata/resourceVersion").and_then(|v| v.as_str()) {
        *rv = v.to_string();
    }
    match ev.kind.as_str() {
        "BOOKMARK" => None,
        "ADDED" | "MODIFIED" | "DELETED" => {
            let node: Node = match serde_json::from_value(ev.object) {
                Ok(n) => n,
                Err(e) => return Some(End::Relist(format!("malformed Node in a {} event: {e}", ev.kind))),
            };
            if ev.kind == "DELETED" {
                nodes.remove(&node.metadata.name);
            } else {
                nodes.insert(node.metadata.name.clone(), node);
            }
            None
        }
        other => Some(End::Relist(format!("unknown watch event type {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: &str) -> String {
        format!(
            r#"{{"metadata":{{"name":"{name}","resourceVersion":"7"}},"status":{{"addresses":[{{"type":"InternalIP","address":"10.0.0.1"}}],"conditions":[{{"type":"Ready","status":"{ready}"}}]}}}}"#
        )
    }

    #[test]
    fn events_update_the_list_and_errors_end_the_watch() {
        let mut nodes = BTreeMap::new();
        let mut rv = "1".to_string();
        assert!(apply(format!(r#"{{"type":"ADDED","object":{}}}"#, node("a", "True")).as_bytes(), &mut nodes, &mut rv).is_none());
        assert_eq!((nodes.len(), rv.as_str()), (1, "7"));
        assert!(apply(br#"{"type":"BOOKMARK","object":{"kind":"Node","metadata":{"resourceVersion":"12"}}}"#, &mut nodes, &mut rv).is_none());
        assert_eq!((nodes.len(), rv.as_str()), (1, "12"));
        assert!(apply(format!(r#"{{"type":"DELETED","object":{}}}"#, node("a", "True")).as_bytes(), &mut nodes, &mut rv).is_none());
        assert!(nodes.is_empty());
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old resource version"}}"#;
        assert!(matches!(apply(gone, &mut nodes, &mut rv), Some(End::Relist(m)) if m.contains("410")));
        assert!(matches!(apply(b"{not json", &mut nodes, &mut rv), Some(End::Relist(m)) if m.contains("malformed")));
        assert!(matches!(apply(br#"{"type":"ADDED","object":{"metadata":{}}}"#, &mut nodes, &mut rv), Some(End::Relist(_))));
    }
}
