//! The node problem pull's share of a round: 1,000 nodes' `/conditions` and
//! `/problems/events` over loopback from the collector's own problem endpoints, pulled and
//! written to the store (`pull_apply`), and the store half alone (`apply_only`). In the same run,
//! the rest of the round for comparison: parse, process and store 1,000 simulated nodes'
//! Summaries (`aggregator_round/parse_process_store`, benches/round.rs; run both).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vigil_aggregator::scrape::problems::ProblemPuller;
use vigil_aggregator::scrape::{discovery, Scraper};
use vigil_aggregator::store::Store;
use vigil_collector::problems::store::{self as npd, Severity, Status};

const NODES: usize = 1000;

/// A detector like kernel-monitor + readonly-monitor: three conditions, one True.
fn detector() -> Arc<npd::Store> {
    let now = Utc::now();
    let s = Arc::new(npd::Store::default());
    let cond = |kind: &str, status, reason: &str| npd::Condition {
        kind: kind.into(),
        status,
        last_heartbeat_time: now,
        last_transition_time: now,
        reason: reason.into(),
        message: "kernel has no deadlock".into(),
    };
    s.register(
        "kernel-monitor",
        vec![
            cond("KernelDeadlock", Status::True, "DockerHung"),
            cond("XfsShutdown", Status::False, "XfsHasNoShutdown"),
        ],
    );
    s.register("readonly-monitor", vec![cond("ReadonlyFilesystem", Status::False, "FilesystemIsNotReadOnly")]);
    s
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let det = detector();
    // One server for every node: `/n<i>/...` is node i's detector (the prefix is cut off).
    let app = vigil_collector::problems::http::app(det.clone());
    let router = axum::Router::new().fallback(move |mut req: axum::extract::Request| {
        let app = app.clone();
        async move {
            use tower::ServiceExt;
            let pq = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
            let rest = pq.trim_start_matches('/').split_once('/').map_or(String::new(), |(_, r)| format!("/{r}"));
            *req.uri_mut() = rest.parse().unwrap();
            app.oneshot(req).await.unwrap()
        }
    });
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, router).await });
    let targets: Vec<_> = (0..NODES)
        .map(|i| discovery::parse_entry(&format!("http://{addr}/n{i}/stats/summary")).unwrap())
        .collect();
    let names: HashMap<String, String> =
        targets.iter().enumerate().map(|(i, t)| (t.url.clone(), format!("node-{i:04}"))).collect();
    let scraper = Scraper::new(Duration::from_secs(10), 64);

    let mut g = c.benchmark_group("problems_round");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    let store = Store::new(15 * 60 * 1000, 10_000_000);
    let puller = ProblemPuller::new();
    let mut t_ms = Utc::now().timestamp_millis();
    // Each round: two new events on every node (the shared detector), then the pull.
    g.bench_function(BenchmarkId::new("pull_apply", NODES), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                det.push_event("kernel-monitor", Severity::Warn, Utc::now(), "OOMKilling", "Killed process 1012 (heapster)");
                det.push_event("kernel-monitor", Severity::Warn, Utc::now(), "TaskHung", "task x blocked");
                t_ms += 15_000;
                let start = Instant::now();
                let pulled = rt.block_on(puller.pull(&scraper, &targets));
                puller.apply(pulled, &names, t_ms, &store);
                total += start.elapsed();
            }
            total
        })
    });
    let answers: Vec<String> = targets.iter().map(|t| t.url.clone()).collect();
    g.bench_function(BenchmarkId::new("apply_only", NODES), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Answers without news: every node's series written again, as in a quiet round.
                let pulled: Vec<_> = answers.iter().map(|u| (u.clone(), Ok(Some(Default::default())))).collect();
                t_ms += 15_000;
                let start = Instant::now();
                puller.apply(pulled, &names, t_ms, &store);
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
