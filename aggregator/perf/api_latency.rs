//! Sequential GETs of `/api/v1/model/namespaces/{ns}/pods/{pod}/metrics/cpu/usage_rate` for
//! random pods of the simulated cluster; prints p50/p99/max latency. Used by benches/scale.sh.
//!
//! cargo run --release -p vigil-aggregator --features perf --example api_latency -- <base-url> <nodes> <requests>

use std::time::{Duration, Instant};

use vigil_aggregator::sim::{pod_ref, Shape};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .expect("usage: api_latency <base-url> <nodes> <requests>")
        .clone();
    let nodes: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(1000);
    let requests: usize = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(2000);
    let shape = Shape {
        nodes,
        pods_per_node: 30,
        containers_per_pod: 2,
        namespaces: 20,
    };
    let client = reqwest::Client::new();
    let mut lat = Vec::with_capacity(requests);
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut empty = 0;
    for _ in 0..requests {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (n, p) = ((seed % nodes as u64) as usize, ((seed >> 32) % 30) as usize);
        let (pod, ns) = pod_ref(&shape, n, p);
        let url = format!("{base}/api/v1/model/namespaces/{ns}/pods/{pod}/metrics/cpu/usage_rate");
        let t = Instant::now();
        let r = client.get(&url).send().await.expect("request");
        let status = r.status();
        let body = r.bytes().await.expect("body");
        lat.push(t.elapsed());
        assert!(status.is_success(), "{url}: {status}");
        if body.len() < 60 {
            empty += 1;
        }
    }
    lat.sort();
    let q = |f: f64| lat[((lat.len() as f64 * f) as usize).min(lat.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "requests={requests} empty={empty} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        ms(q(0.5)),
        ms(q(0.99)),
        ms(*lat.last().unwrap())
    );
}
