//! Test support for the aggregator's end-to-end tests: simulated nodes on loopback ports, the
//! real `vigil aggregator` process, and polling helpers with deadlines.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_aggregator::sim::{Shape, Sim};

use super::{free_port, until};

/// The small cluster of the fault and Kubernetes tests: 3 nodes × 2 pods × 2 containers, one namespace.
pub fn small_shape() -> Shape {
    Shape {
        nodes: 3,
        pods_per_node: 2,
        containers_per_pod: 2,
        namespaces: 1,
    }
}

/// The `--nodes` value for these simulated nodes: their addresses, comma-separated.
pub fn nodes_arg(nodes: &[SimNode]) -> String {
    nodes.iter().map(|n| n.addr.as_str()).collect::<Vec<_>>().join(",")
}

/// A simulated node serving `/stats/summary` on its own loopback address.
pub struct SimNode {
    pub addr: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimNode {
    /// Serves node `i` of `sim` on `ip:port` (port 0 = any).
    pub async fn start(sim: &Arc<Sim>, i: usize, ip: &str, port: u16) -> SimNode {
        let listener = tokio::net::TcpListener::bind((ip, port))
            .await
            .expect("bind simulated node");
        let addr = listener.local_addr().unwrap().to_string();
        let (stop, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(Sim::serve(sim.node_router(i), listener, rx));
        SimNode {
            addr,
            stop,
            task: Some(task),
        }
    }

    /// The node goes away: the listener closes, open connections end.
    pub async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// The real `vigil aggregator`, killed when dropped.
pub struct Aggregator {
    pub child: Child,
    pub base: String,
}

impl Aggregator {
    pub fn start(args: &[&str]) -> Aggregator {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(super::vigil_bin());
        cmd.arg("aggregator")
            .arg("--listen")
            .arg(&listen)
            .args(args);
        cmd.stdout(Stdio::null()).stderr(Stdio::inherit());
        let child = cmd.spawn().expect("start vigil aggregator");
        Aggregator {
            child,
            base: format!("http://{listen}"),
        }
    }

    /// SIGTERM and wait for a graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_free_kill(self.child.id(), 15);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "aggregator did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn unsafe_free_kill(pid: u32, sig: i32) {
    // `kill(1)` keeps the test free of unsafe code.
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET returning (status, body).
pub async fn get(url: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    match client.get(url).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

/// GET expecting 200 and JSON.
pub async fn get_json(url: &str) -> serde_json::Value {
    let (s, body) = get(url).await;
    assert_eq!(s, 200, "GET {url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {body}"))
}

/// The newest value of a Heapster MetricResult, if any.
pub fn latest(result: &serde_json::Value) -> Option<f64> {
    let last = result["metrics"].as_array()?.last()?;
    last.get("floatValue")
        .and_then(|v| v.as_f64())
        .or_else(|| last["value"].as_f64())
}

/// Value of an unlabeled sample in Prometheus text, matched by the line's prefix.
pub fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// GET returning JSON when the answer is 200 (for polling while the server starts).
pub async fn try_json(url: &str) -> Option<serde_json::Value> {
    let (s, body) = get(url).await;
    if s != 200 {
        return None;
    }
    serde_json::from_str(&body).ok()
}

/// The real `vigil collector`, killed when dropped.
pub struct Collector {
    pub child: Child,
    pub addr: String,
}

impl Collector {
    /// Starts a collector and waits until its /healthz answers.
    pub async fn start(args: &[&str]) -> Collector {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(super::vigil_bin())
            .arg("collector")
            .arg("--listen")
            .arg(&addr)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vigil collector");
        let c = Collector { child, addr };
        let url = format!("http://{}/healthz", c.addr);
        until("collector /healthz", Duration::from_secs(30), || async {
            (get(&url).await.0 == 200).then_some(())
        })
        .await;
        c
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
