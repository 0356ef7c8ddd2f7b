//! A cluster simulator for tests and benchmarks: answers kubelet Summary documents for many
//! node names from one port (`/node/<name>/stats/summary`), with counters that advance at known
//! rates, and switchable faults (garbage, HTTP errors, counters going back, restarts).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Duration, Utc};
use vigil_summary::*;

/// How a node answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// A body that is not a Summary document.
    Garbage,
    /// This HTTP status with an empty body.
    Status(u16),
}

/// Shape of the simulated cluster.
#[derive(Debug, Clone)]
pub struct Shape {
    pub nodes: usize,
    pub pods_per_node: usize,
    pub containers_per_pod: usize,
    pub namespaces: usize,
}

#[derive(Debug, Clone)]
struct NodeSim {
    mode: Mode,
    /// Subtracted from every CPU counter of the node (set it to make counters go backwards).
    cpu_offset_ns: u64,
    /// Start time of container 0 of pod 0 (moved to simulate a restart).
    restarted_at: Option<DateTime<Utc>>,
}

/// The simulator's state.
pub struct Sim {
    pub shape: Shape,
    pub epoch: DateTime<Utc>,
    nodes: Mutex<HashMap<String, NodeSim>>,
}

/// Node names the simulator answers for: `node-0000`...
pub fn node_name(i: usize) -> String {
    format!("node-{i:04}")
}

/// CPU of container `c` of pod `p`, millicores (what the aggregator must compute).
pub fn container_millicores(p: usize, c: usize) -> u64 {
    10 + ((p * 7 + c * 3) % 90) as u64
}

/// Working set of container `c` of pod `p`, bytes.
pub fn container_working_set(p: usize, c: usize) -> u64 {
    (10 + c as u64) * 1_048_576 + p as u64 * 4096
}

/// Received bytes per second of pod `p`.
pub fn pod_rx_per_second(p: usize) -> u64 {
    1000 * (p as u64 + 1)
}

/// Pod name and namespace of pod `p` on node `n`.
pub fn pod_ref(shape: &Shape, n: usize, p: usize) -> (String, String) {
    (
        format!("pod-{n:04}-{p:03}"),
        format!(
            "ns-{}",
            (n * shape.pods_per_node + p) % shape.namespaces.max(1)
        ),
    )
}

impl Shape {
    /// Heapster's design target per node: 30 pods × 2 containers, in 20 namespaces.
    pub fn heapster(nodes: usize) -> Shape {
        Shape {
            nodes,
            pods_per_node: 30,
            containers_per_pod: 2,
            namespaces: 20,
        }
    }
}

/// Every node's Summary document at `at`, serialized as a node would send it.
pub fn bodies(sim: &Sim, at: DateTime<Utc>) -> Vec<Vec<u8>> {
    (0..sim.shape.nodes)
        .map(|i| serde_json::to_vec(&sim.summary(i, at)).expect("serialize"))
        .collect()
}

/// The documents decoded as a live round decodes them (8 cores per node); `decoder` keeps each
/// node's label maps between rounds, as the scraper's does.
pub fn decode_bodies(
    decoder: &crate::processors::Decoder,
    bodies: &[Vec<u8>],
) -> Vec<crate::processors::NodeDoc> {
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            decoder
                .decode(&node_name(i), "", Some(8.0), b)
                .expect("simulated document decodes")
        })
        .collect()
}

/// The documents parsed into the collector's owned `Summary` tree: the floor of the criterion
/// round bench (what parsing alone costs with the wire types).
pub fn parse_bodies(bodies: &[Vec<u8>]) -> Vec<Summary> {
    bodies
        .iter()
        .map(|b| serde_json::from_slice::<Summary>(b).expect("simulated document parses"))
        .collect()
}

impl Sim {
    pub fn new(shape: Shape) -> Arc<Sim> {
        let nodes = (0..shape.nodes)
            .map(|i| {
                (
                    node_name(i),
                    NodeSim {
                        mode: Mode::Normal,
                        cpu_offset_ns: 0,
                        restarted_at: None,
                    },
                )
            })
            .collect();
        Arc::new(Sim {
            shape,
            epoch: Utc::now() - Duration::hours(1),
            nodes: Mutex::new(nodes),
        })
    }

    pub fn set_mode(&self, node: &str, mode: Mode) {
        if let Some(n) = self.nodes.lock().unwrap().get_mut(node) {
            n.mode = mode;
        }
    }

    /// Makes every CPU counter of the node drop by `ns` (a counter going backwards).
    pub fn set_cpu_offset(&self, node: &str, ns: u64) {
        if let Some(n) = self.nodes.lock().unwrap().get_mut(node) {
            n.cpu_offset_ns = ns;
        }
    }

    /// Restarts container 0 of pod 0 on the node now.
    pub fn restart_first_container(&self, node: &str) {
        if let Some(n) = self.nodes.lock().unwrap().get_mut(node) {
            n.restarted_at = Some(Utc::now());
        }
    }

    /// The document of node `i` at time `now`.
    pub fn summary(&self, i: usize, now: DateTime<Utc>) -> Summary {
        let name = node_name(i);
        let st = self
            .nodes
            .lock()
            .unwrap()
            .get(&name)
            .cloned()
            .unwrap_or(NodeSim {
                mode: Mode::Normal,
                cpu_offset_ns: 0,
                restarted_at: None,
            });
        let secs = |since: DateTime<Utc>| {
            ((now - since).num_nanoseconds().unwrap_or(0).max(0)) as f64 / 1e9
        };
        let cpu = |mc: u64, since: DateTime<Utc>| CpuStats {
            time: Some(now),
            usage_nano_cores: Some(mc * 1_000_000),
            usage_core_nano_seconds: Some(
                ((mc as f64 * 1e6 * secs(since)) as u64).saturating_sub(st.cpu_offset_ns),
            ),
            psi: None,
        };
        let mem = |ws: u64, avail: Option<u64>| MemoryStats {
            time: Some(now),
            available_bytes: avail,
            usage_bytes: Some(ws + 1_048_576),
            working_set_bytes: Some(ws),
            rss_bytes: Some(ws / 2),
            page_faults: Some((secs(self.epoch) * 10.0) as u64),
            major_page_faults: Some((secs(self.epoch) / 10.0) as u64),
            psi: None,
        };
        let mut pods = Vec::new();
        let (mut node_mc, mut node_ws) = (100u64, 200 * 1_048_576u64);
        for p in 0..self.shape.pods_per_node {
            let (pod_name, ns) = pod_ref(&self.shape, i, p);
            let mut containers = Vec::new();
            let (mut pod_mc, mut pod_ws) = (0, 0);
            for c in 0..self.shape.containers_per_pod {
                let start = match (p, c, st.restarted_at) {
                    (0, 0, Some(t)) => t,
                    _ => self.epoch,
                };
                let (mc, ws) = (container_millicores(p, c), container_working_set(p, c));
                pod_mc += mc;
                pod_ws += ws;
                containers.push(ContainerStats {
                    name: format!("c{c}"),
                    start_time: Some(start),
                    cpu: Some(cpu(mc, start)),
                    memory: Some(mem(ws, None)),
                    rootfs: Some(FsStats {
                        time: Some(now),
                        used_bytes: Some(4096 * (c as u64 + 1)),
                        inodes_used: Some(3),
                        ..Default::default()
                    }),
                    logs: Some(FsStats {
                        time: Some(now),
                        used_bytes: Some(8192),
                        inodes_used: Some(1),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            node_mc += pod_mc;
            node_ws += pod_ws;
            let rx = (pod_rx_per_second(p) as f64 * secs(self.epoch)) as u64;
            pods.push(PodStats {
                pod_ref: PodReference {
                    name: pod_name,
                    namespace: ns,
                    uid: format!("uid-{i}-{p}"),
                },
                start_time: Some(self.epoch),
                containers,
                cpu: Some(cpu(pod_mc, self.epoch)),
                memory: Some(mem(pod_ws, None)),
                network: Some(NetworkStats {
                    time: Some(now),
                    default_interface: InterfaceStats {
                        name: "eth0".into(),
                        rx_bytes: Some(rx),
                        rx_errors: Some(0),
                        tx_bytes: Some(rx * 2),
                        tx_errors: Some(0),
                    },
                    interfaces: vec![],
                }),
                ephemeral_storage: Some(FsStats {
                    time: Some(now),
                    used_bytes: Some(20480),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
        let sys = |n: &str, mc: u64| ContainerStats {
            name: n.into(),
            start_time: Some(self.epoch),
            cpu: Some(cpu(mc, self.epoch)),
            memory: Some(mem(50 * 1_048_576, None)),
            ..Default::default()
        };
        Summary {
            node: NodeStats {
                node_name: name,
                system_containers: vec![
                    sys("kubelet", 30),
                    sys("runtime", 20),
                    sys("pods", node_mc - 100),
                ],
                start_time: Some(self.epoch),
                cpu: Some(cpu(node_mc, self.epoch)),
                memory: Some(mem(node_ws, Some(8 << 30))),
                network: Some(NetworkStats {
                    time: Some(now),
                    default_interface: InterfaceStats {
                        name: "eth0".into(),
                        rx_bytes: Some((secs(self.epoch) * 5e4) as u64),
                        rx_errors: Some(0),
                        tx_bytes: Some((secs(self.epoch) * 7e4) as u64),
                        tx_errors: Some(0),
                    },
                    interfaces: vec![],
                }),
                fs: Some(FsStats {
                    time: Some(now),
                    available_bytes: Some(50 << 30),
                    capacity_bytes: Some(100 << 30),
                    used_bytes: Some(50 << 30),
                    inodes_free: Some(1_000_000),
                    inodes: Some(2_000_000),
                    inodes_used: Some(1_000_000),
                }),
                ..Default::default()
            },
            pods,
        }
    }

    /// The HTTP face: `/node/<name>/stats/summary`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/node/{name}/stats/summary", get(serve))
            .with_state(self.clone())
    }

    /// One node's face, as its kubelet would serve it: `/stats/summary`.
    pub fn node_router(self: &Arc<Self>, i: usize) -> Router {
        let name = node_name(i);
        Router::new()
            .route(
                "/stats/summary",
                get(move |st: State<Arc<Sim>>| serve(st, Path(name.clone()))),
            )
            .with_state(self.clone())
    }

    /// Serves `router` on `listener` until `stop` fires (then closes every connection).
    pub async fn serve(
        router: Router,
        listener: tokio::net::TcpListener,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    }
}

async fn serve(State(sim): State<Arc<Sim>>, Path(name): Path<String>) -> Response {
    let Some(i) = name
        .strip_prefix("node-")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|i| *i < sim.shape.nodes)
    else {
        return (StatusCode::NOT_FOUND, "no such node").into_response();
    };
    let mode = sim
        .nodes
        .lock()
        .unwrap()
        .get(&name)
        .map(|n| n.mode.clone())
        .unwrap_or(Mode::Normal);
    match mode {
        Mode::Normal => {
            let body = serde_json::to_vec(&sim.summary(i, Utc::now())).unwrap();
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        }
        Mode::Garbage => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            r#"{"node": {"nodeName": 42, "#,
        )
            .into_response(),
        Mode::Status(s) => StatusCode::from_u16(s)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
    }
}
