//! How long the web UI's overview takes in headless Chromium, from navigation start to every
//! chart and table drawn (`window.vigil.firstReadyMs`), and the API requests it made.
//!
//! cargo run --release --features perf --example ui_overview_time -- http://127.0.0.1:8082 [loads]
//!
//! Start the cluster first, e.g. 1,000 simulated nodes × 30 pods:
//!   cargo run --release -p vigil-aggregator --features perf --example sim_cluster -- 1000 127.0.0.1:9101 /tmp/nodes.txt &
//!   vigil aggregator --nodes-file /tmp/nodes.txt --listen 127.0.0.1:8082 &

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let base = args.get(1).expect("usage: ui_overview_time <aggregator URL> [loads]").trim_end_matches('/').to_string();
    let loads: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5);
    let browser = support::chromium::Browser::start();
    let mut times = Vec::new();
    for i in 0..loads {
        let mut page = browser.page();
        page.viewport(1400, 1000, false);
        let t = Instant::now();
        page.navigate(&format!("{base}/#/"));
        page.wait_for("overview drawn", "window.vigil && window.vigil.firstReadyMs !== null", Duration::from_secs(60));
        let wall = t.elapsed();
        let ready = page.eval("window.vigil.firstReadyMs").as_f64().unwrap();
        let requests = page.eval("window.vigil.stats.requests").as_u64().unwrap();
        let rows = page.eval("document.querySelectorAll('main tbody tr').length").as_u64().unwrap();
        let nodes = page.eval("document.querySelector('.tile .v')?.textContent").to_string();
        let slowest = page.eval(
            "performance.getEntriesByType('resource').filter(e => e.name.includes('/api/v1/')).map(e => [Math.round(e.duration), decodeURIComponent(e.name.split('query=')[1] || e.name).slice(0, 60)]).sort((a, b) => b[0] - a[0]).slice(0, 3)",
        );
        println!("load {i}: ready {ready:.0} ms after navigation start (wall {:.0} ms), {requests} API requests, {rows} table rows, nodes tile {nodes}; slowest API requests (ms, query): {slowest}", wall.as_secs_f64() * 1000.0);
        assert!(page.problems.is_empty(), "problems: {:?}", page.problems);
        times.push(ready);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!("median {:.0} ms, min {:.0} ms, max {:.0} ms over {loads} loads", times[times.len() / 2], times[0], times[times.len() - 1]);
}
