//! Latency from an alert handed to the notifier to a webhook receiving it, with `group_wait: 0s`
//! (the notifier's own overhead: the total is `group_wait` + this), for vigil (through
//! `Notify::send`, as the rules call it, and through `POST /api/v2/alerts`) and for Debian's
//! Alertmanager 0.25 (through `POST /api/v2/alerts`) in the same run. Each iteration is a new
//! alert group. Run: `cargo bench -p vigil-alerting --bench notify_latency -- --warm-up-time 1
//! --measurement-time 3`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use tokio::sync::mpsc;
use vigil_alerting::notify::{Notifier, NotifyConfig};
use vigil_alerting::{Alert, Notify};

fn config(hook: &str) -> String {
    format!(
        "route: {{receiver: hook, group_by: [alertname], group_wait: 0s, group_interval: 1m}}\n\
         receivers: [{{name: hook, webhook_configs: [{{url: '{hook}'}}]}}]\n"
    )
}

/// A webhook receiver that reports each payload's alertname.
async fn hook() -> (String, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let app = Router::new().route(
        "/hook",
        post(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let _ = tx.send(v["groupLabels"]["alertname"].as_str().unwrap_or("").to_string());
                "ok"
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (url, rx)
}

fn alert(name: &str) -> Alert {
    let now = chrono::Utc::now();
    Alert {
        labels: BTreeMap::from([
            ("alertname".to_string(), name.to_string()),
            ("instance".to_string(), "node-1".to_string()),
        ]),
        annotations: BTreeMap::new(),
        starts_at: now,
        ends_at: now + chrono::Duration::hours(1),
        generator_url: String::new(),
    }
}

/// Waits for the payload of group `name`.
async fn received(rx: &mut mpsc::UnboundedReceiver<String>, name: &str) {
    loop {
        let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("webhook got nothing in 10 s")
            .expect("webhook channel closed");
        if got == name {
            return;
        }
    }
}

struct Am(Child, tempfile::TempDir);
impl Drop for Am {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let seq = AtomicU64::new(0);
    let next = || format!("A{}", seq.fetch_add(1, Ordering::Relaxed));
    let http = reqwest::Client::new();
    let mut g = c.benchmark_group("notify_latency_group_wait_0");
    g.sample_size(20);

    // vigil, alerts handed over by the rules.
    let (url, mut rx) = rt.block_on(hook());
    let cfg = NotifyConfig::parse(&config(&url)).unwrap();
    let n = Arc::new(Notifier::new(cfg, None, None).unwrap());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    rt.spawn(n.clone().run(stop_rx.clone()));
    g.bench_function("vigil_notify_send_to_webhook", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let name = next();
                    let t = Instant::now();
                    n.send(vec![alert(&name)]);
                    received(&mut rx, &name).await;
                    total += t.elapsed();
                }
                total
            })
        })
    });

    // vigil, alerts POSTed to its /api/v2/alerts.
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let vigil_api = format!("http://{}/api/v2/alerts", listener.local_addr().unwrap());
    let app = n.clone().router();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    g.bench_function("vigil_http_post_to_webhook", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let name = next();
                    let t = Instant::now();
                    let r = http.post(&vigil_api).json(&vec![alert(&name)]).send().await.unwrap();
                    assert!(r.status().is_success());
                    received(&mut rx, &name).await;
                    total += t.elapsed();
                }
                total
            })
        })
    });

    // The peer: Alertmanager 0.25, same configuration.
    let (am_hook, mut am_rx) = rt.block_on(hook());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("am.yml"), config(&am_hook)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", dir.path().join("am.yml").display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager (Debian package) is the peer of this benchmark");
    let _am = Am(child, dir);
    let am_api = format!("http://127.0.0.1:{port}/api/v2/alerts");
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http.get(format!("http://127.0.0.1:{port}/-/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(Instant::now() < deadline, "alertmanager did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    g.bench_function("alertmanager_http_post_to_webhook", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let name = next();
                    let t = Instant::now();
                    let r = http.post(&am_api).json(&vec![alert(&name)]).send().await.unwrap();
                    assert!(r.status().is_success());
                    received(&mut am_rx, &name).await;
                    total += t.elapsed();
                }
                total
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
