//! Test support for the query API tests: a simulated cluster behind the real `vigil aggregator`,
//! HTTP helpers that keep the status code, and `promtool query` against a server.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::aggregator::{Aggregator, SimNode};
use super::until;
use vigil_aggregator::sim::{Shape, Sim};

/// Simulated nodes and the aggregator pulling them every second.
pub struct Cluster {
    pub sim: Arc<Sim>,
    pub nodes: Vec<SimNode>,
    pub agg: Aggregator,
}

impl Cluster {
    /// `shape`'s nodes on loopback and `vigil aggregator --metric-resolution 1s <extra>`.
    pub async fn start(shape: Shape, extra: &[&str]) -> Cluster {
        let sim = Sim::new(shape);
        let mut nodes = Vec::new();
        for i in 0..sim.shape.nodes {
            nodes.push(SimNode::start(&sim, i, "127.0.0.1", 0).await);
        }
        let list = super::aggregator::nodes_arg(&nodes);
        let mut args = vec![
            "--nodes",
            &list,
            "--metric-resolution",
            "1s",
            "--allow-short-resolution",
        ];
        args.extend_from_slice(extra);
        let agg = Aggregator::start(&args);
        Cluster { sim, nodes, agg }
    }

    pub fn base(&self) -> &str {
        &self.agg.base
    }

    /// Waits until the store holds rates (the second round) for every pod.
    pub async fn wait_for_rates(&self) {
        let pods = self.sim.shape.nodes * self.sim.shape.pods_per_node;
        let url = format!(
            "{}/api/v1/series?match[]=cpu_usage_rate{{type=\"pod\"}}",
            self.base()
        );
        until("pod cpu_usage_rate series", Duration::from_secs(60), || {
            let url = url.clone();
            async move {
                let (s, v) = get(&url).await;
                (s == 200 && v["data"].as_array()?.len() == pods).then_some(())
            }
        })
        .await;
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn read(r: reqwest::Result<reqwest::Response>) -> (u16, Value) {
    match r {
        Ok(r) => {
            let s = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (s, v)
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

/// GET: (status, JSON body, or the body as a JSON string when it is not JSON).
pub async fn get(url: &str) -> (u16, Value) {
    read(client().get(url).send().await).await
}

/// GET with query parameters (encoded by reqwest).
pub async fn get_params(url: &str, params: &[(&str, &str)]) -> (u16, Value) {
    read(client().get(url).query(params).send().await).await
}

/// POST with an `application/x-www-form-urlencoded` body, as Grafana's backend sends.
pub async fn post_form(url: &str, params: &[(&str, &str)]) -> (u16, Value) {
    read(client().post(url).form(params).send().await).await
}

/// Asserts a Prometheus error envelope with this HTTP code and `errorType`; returns `error`.
pub fn assert_error(got: &(u16, Value), code: u16, kind: &str, what: &str) -> String {
    let (s, v) = got;
    assert_eq!(*s, code, "{what}: {v}");
    assert_eq!(v["status"], "error", "{what}: {v}");
    assert_eq!(v["errorType"], kind, "{what}: {v}");
    let e = v["error"].as_str().unwrap_or_default().to_string();
    assert!(!e.is_empty(), "{what}: empty error: {v}");
    e
}

/// Runs `promtool query <args>`; returns (success, stdout, stderr). Fails when promtool is
/// missing (the peer tests never skip).
pub fn promtool(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("promtool")
        .arg("query")
        .args(args)
        .output()
        .expect("promtool (Debian package prometheus) must be installed: scripts/test.sh installs it");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `value` of a vector sample as f64.
pub fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}
