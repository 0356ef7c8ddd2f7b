//! Serves a simulated cluster's Summary documents from one port (`/node/<name>/stats/summary`)
//! and writes the node URL list for `--nodes-file`. Used by benches/scale.sh.
//!
//! cargo run --release -p vigil-aggregator --features perf --example sim_cluster -- <nodes> <listen> <nodes-file>

use vigil_aggregator::sim::{node_name, Shape, Sim};

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let nodes: usize = args
        .get(1)
        .and_then(|n| n.parse().ok())
        .expect("usage: sim_cluster <nodes> <listen> <nodes-file>");
    let listen = args.get(2).cloned().unwrap_or_else(|| "127.0.0.1:0".into());
    let file = args.get(3).expect("nodes file path");
    let sim = Sim::new(Shape {
        nodes,
        pods_per_node: 30,
        containers_per_pod: 2,
        namespaces: 20,
    });
    let listener = tokio::net::TcpListener::bind(&listen).await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let list: String = (0..nodes)
        .map(|i| format!("http://{addr}/node/{}/stats/summary\n", node_name(i)))
        .collect();
    std::fs::write(file, list).expect("write nodes file");
    eprintln!("simulating {nodes} nodes on {addr}");
    let (_tx, rx) = tokio::sync::watch::channel(false);
    Sim::serve(sim.router(), listener, rx).await;
}
