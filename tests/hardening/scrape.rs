//! Hostile nodes against the real `vigil aggregator` (#19, items 4 and 5): a hung, a dripping
//! and a flaky node must not cost the healthy nodes a single point, and an endless body, a gzip
//! bomb and a huge body are refused at the document limit without the memory they ask for.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{free_port, until};
use crate::support::aggregator::*;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use vigil_aggregator::sim::{self, Shape, Sim};

const WAIT: Duration = Duration::from_secs(60);

async fn metrics(base: &str) -> String {
    get(&format!("{base}/metrics")).await.1
}

/// A sample whose line has `url="...<addr>..."` among its labels.
fn by_url(text: &str, metric: &str, addr: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(metric) && l.contains(&format!("url=\"http://{addr}/")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// (timestamp, value) of every point of a Heapster MetricResult.
fn points(v: &Value) -> Vec<(DateTime<Utc>, f64)> {
    v["metrics"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let t = p["timestamp"].as_str().unwrap().parse().unwrap();
                    let v = p
                        .get("floatValue")
                        .and_then(|f| f.as_f64())
                        .unwrap_or(p["value"].as_f64().unwrap_or(f64::NAN));
                    (t, v)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Reads one request head (up to the blank line); false when the peer went away.
async fn read_head(s: &mut TcpStream) -> bool {
    request_line(s).await.is_some()
}

/// Reads a request head; its first line (`GET /stats/summary HTTP/1.1`), or `None` when the
/// connection ends first.
async fn request_line(s: &mut TcpStream) -> Option<String> {
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&req);
    Some(head.lines().next().unwrap_or_default().to_string())
}

/// Serves every connection with `serve` on a fresh loopback port; returns `host:port`.
async fn node<F, Fut>(serve: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

/// Accepts, reads the request, never answers.
async fn hung(mut s: TcpStream) {
    read_head(&mut s).await;
    let _ = s.read(&mut [0u8; 1]).await;
}

/// Sends a 200 head, then one byte of a chunked body every 100 ms, forever.
async fn dripping(mut s: TcpStream) {
    if !read_head(&mut s).await {
        return;
    }
    let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n{\r\n";
    if s.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    while s.write_all(b"1\r\n \r\n").await.is_ok() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A 200 answer with `body` and the given extra headers, then the connection closes.
async fn answer(s: &mut TcpStream, extra: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if s.write_all(head.as_bytes()).await.is_ok() {
        let _ = s.write_all(body).await;
    }
    let _ = s.shutdown().await;
}

/// Regression (#19, item 4): with the default 10 s --scrape-timeout and a 2 s resolution, a
/// hung node and a dripping node used to hold every round for 10 s (a healthy node got 2
/// points in 30 s instead of 6 at 5 s). Now a round ends at its deadline: the healthy nodes
/// get a point every round, the hung and dripping ones are counted late, and a node that
/// misses every other round still gets exact rates (over the real interval).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_node_does_not_delay_healthy_nodes() {
    let sim = Sim::new(Shape {
        nodes: 3,
        pods_per_node: 2,
        containers_per_pod: 2,
        namespaces: 1,
    });
    let healthy = SimNode::start(&sim, 0, "127.0.0.1", 0).await;
    let hung = node(hung).await;
    let drip = node(dripping).await;
    // node-0002 answers every other Summary request and hangs on the rest; it has no problem
    // detector (the aggregator's pulls of /conditions and /problems/events get a 404, and do
    // not count in the alternation).
    let requests = Arc::new(AtomicU64::new(0));
    let flaky = {
        let (sim, requests) = (sim.clone(), requests.clone());
        node(move |mut s| {
            let (sim, requests) = (sim.clone(), requests.clone());
            async move {
                let Some(line) = request_line(&mut s).await else {
                    return;
                };
                if !line.contains("/stats/summary") {
                    let head = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.shutdown().await;
                    return;
                }
                if requests.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
                    let _ = s.read(&mut [0u8; 1]).await;
                    return;
                }
                let body = serde_json::to_vec(&sim.summary(2, Utc::now())).unwrap();
                answer(&mut s, "", &body).await;
            }
        })
        .await
    };
    let list = [healthy.addr.as_str(), &hung, &drip, &flaky].join(",");
    let agg = Aggregator::start(&[
        "--nodes",
        &list,
        "--metric-resolution",
        "2s",
        "--allow-short-resolution",
    ]);
    let b = agg.base.clone();
    let m = format!("{b}/api/v1/model/nodes");
    until("first node rate", WAIT, || async {
        latest(&try_json(&format!("{m}/node-0000/metrics/cpu/usage_rate")).await?)
    })
    .await;
    let r0 = sample(&metrics(&b).await, "vigil_aggregator_rounds_total").unwrap();
    until("8 more rounds", WAIT, || async {
        (sample(&metrics(&b).await, "vigil_aggregator_rounds_total")? >= r0 + 8.0).then_some(())
    })
    .await;

    // The healthy node has a point at every round boundary: no gap in its series.
    let usage = points(&get_json(&format!("{m}/node-0000/metrics/cpu/usage")).await);
    assert!(usage.len() >= 9, "{usage:?}");
    for w in usage.windows(2) {
        assert_eq!(
            (w[1].0 - w[0].0).num_milliseconds(),
            2000,
            "a healthy node missed a round: {usage:?}"
        );
    }
    let t = metrics(&b).await;
    for addr in [&hung, &drip] {
        let late = by_url(&t, "vigil_aggregator_node_scrape_late_total", addr).unwrap();
        assert!(late >= 8.0, "{addr}: late {late}\n{t}");
        assert_eq!(by_url(&t, "vigil_aggregator_node_up", addr), Some(0.0));
    }
    assert!(
        sample(
            &t,
            "vigil_aggregator_scrape_failures_total{reason=\"late\"}"
        )
        .unwrap()
            >= 16.0
    );
    // Every round took less than its 2 s: fetch ended at the 1.5 s deadline.
    let fetch = sample(
        &t,
        "vigil_aggregator_last_round_phase_seconds{phase=\"fetch\"}",
    )
    .unwrap();
    assert!(fetch < 1.9, "fetch {fetch}s\n{t}");

    // The flaky node missed about every other round; each rate it got is exact, over the
    // real interval (a missed round makes the interval 4 s, not 2 s).
    let flaky_rates = points(&get_json(&format!("{m}/node-0002/metrics/cpu/usage_rate")).await);
    let want = 100
        + (0..2)
            .flat_map(|p| (0..2).map(move |c| sim::container_millicores(p, c)))
            .sum::<u64>();
    assert!(flaky_rates.len() >= 2, "{flaky_rates:?}");
    assert!(
        flaky_rates
            .windows(2)
            .any(|w| (w[1].0 - w[0].0).num_seconds() >= 4),
        "the flaky node missed no round: {flaky_rates:?}"
    );
    for (t, v) in &flaky_rates {
        assert!(
            (v - want as f64).abs() <= 1.0,
            "rate {v} at {t}, want {want}: {flaky_rates:?}"
        );
    }
}

/// Peak resident memory of a process (VmHWM), MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb / 1024.0
}

/// A gzip stream of `mib` MiB of zeros (about 1 KB per MiB).
fn gzip_bomb(mib: usize) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..mib {
        gz.write_all(&zeros).unwrap();
    }
    gz.finish().unwrap()
}

/// Runs the aggregator against one hostile node and one healthy node until the hostile one was
/// refused `rounds` times as too large; returns the aggregator's peak RSS (MiB).
async fn peak_rss_against(hostile: String, rounds: f64) -> f64 {
    let sim = Sim::new(small_shape());
    let healthy = SimNode::start(&sim, 0, "127.0.0.1", 0).await;
    let list = format!("{},{hostile}", healthy.addr);
    let agg = Aggregator::start(&[
        "--nodes",
        &list,
        "--metric-resolution",
        "1s",
        "--allow-short-resolution",
    ]);
    let b = agg.base.clone();
    let refused = until("hostile node refused as too large", WAIT, || async {
        sample(
            &metrics(&b).await,
            "vigil_aggregator_scrape_failures_total{reason=\"too_large\"}",
        )
        .filter(|n| *n >= rounds)
    })
    .await;
    assert!(refused >= rounds);
    let t = metrics(&b).await;
    assert_eq!(
        by_url(&t, "vigil_aggregator_node_up", &healthy.addr),
        Some(1.0),
        "{t}"
    );
    assert_eq!(
        by_url(&t, "vigil_aggregator_node_up", &hostile),
        Some(0.0),
        "{t}"
    );
    peak_rss_mib(agg.child.id())
}

/// Regression (#19, item 5): an endless body peaked at 552 MiB, a 250 KB gzip bomb at 536 MiB
/// and a 200 MB body was accepted (218 MiB), per node. Now each is refused as it streams in,
/// at the 8 MiB document limit, and the aggregator stays small. A document under the limit
/// made of 95,000 tiny pods (785 MiB once parsed and built) is refused while it parses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_body_gzip_bomb_and_huge_body_are_refused_at_the_cap() {
    // Endless: a chunked body that never ends, 64 KiB chunks as fast as they are read.
    let endless = node(|mut s| async move {
        if !read_head(&mut s).await {
            return;
        }
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let mut chunk = format!("{:x}\r\n", 64 << 10).into_bytes();
        chunk.extend(std::iter::repeat_n(b' ', 64 << 10));
        chunk.extend_from_slice(b"\r\n");
        while s.write_all(&chunk).await.is_ok() {}
    })
    .await;
    // A 256 MiB gzip bomb (about 250 KB on the wire).
    let bomb = Arc::new(gzip_bomb(256));
    assert!(bomb.len() < 300 << 10, "{}", bomb.len());
    let gzip = {
        let bomb = bomb.clone();
        node(move |mut s| {
            let bomb = bomb.clone();
            async move {
                if read_head(&mut s).await {
                    answer(&mut s, "Content-Encoding: gzip\r\n", &bomb).await;
                }
            }
        })
        .await
    };
    // A 200 MB body, announced by its Content-Length, and the same without it (chunked).
    let huge = Arc::new(vec![b' '; 200_000_000]);
    let sized = {
        let huge = huge.clone();
        node(move |mut s| {
            let huge = huge.clone();
            async move {
                if read_head(&mut s).await {
                    answer(&mut s, "", &huge).await;
                }
            }
        })
        .await
    };
    let unsized_ = {
        let huge = huge.clone();
        node(move |mut s| {
            let huge = huge.clone();
            async move {
                if !read_head(&mut s).await {
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for part in huge.chunks(1 << 20) {
                    let mut c = format!("{:x}\r\n", part.len()).into_bytes();
                    c.extend_from_slice(part);
                    c.extend_from_slice(b"\r\n");
                    if s.write_all(&c).await.is_err() {
                        return;
                    }
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
            }
        })
        .await
    };
    // Under 8 MiB, but 95,000 minimal pods: each would become a few KB of structs and sets.
    let mut tiny = String::from(r#"{"node":{"nodeName":"amp"},"pods":["#);
    for i in 0..95_000 {
        if i > 0 {
            tiny.push(',');
        }
        tiny.push_str(&format!(
            r#"{{"podRef":{{"name":"p{i}","namespace":"n","uid":"u{i}"}},"containers":[{{"name":"c"}}]}}"#
        ));
    }
    tiny.push_str("]}");
    assert!(tiny.len() < 8 << 20, "{}", tiny.len());
    let tiny = Arc::new(tiny.into_bytes());
    let pods = {
        let tiny = tiny.clone();
        node(move |mut s| {
            let tiny = tiny.clone();
            async move {
                if read_head(&mut s).await {
                    answer(&mut s, "", &tiny).await;
                }
            }
        })
        .await
    };
    let mut report = Vec::new();
    for (what, addr) in [
        ("7.6 MB document of 95,000 minimal pods", pods),
        ("endless body", endless),
        ("gzip bomb", gzip),
        ("200 MB body with Content-Length", sized),
        ("200 MB chunked body", unsized_),
    ] {
        let peak = peak_rss_against(addr, 3.0).await;
        eprintln!("peak RSS against a node sending a {what}: {peak:.1} MiB");
        report.push((what, peak));
    }
    // The limit is 8 MiB per pull: the process stays far below what one hostile node cost
    // before (536 to 552 MiB).
    for (what, peak) in report {
        assert!(peak < 128.0, "{what}: peak RSS {peak:.1} MiB");
    }
}

/// Regression (#19, item 6): two pods with the same namespace/name in one node's document
/// silently overwrote each other (their counters alternating in the rates). Now the first is
/// kept, every drop is counted and the pair is logged once, not every round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_pod_names_keep_the_first_and_are_logged_once() {
    let sim = Sim::new(small_shape());
    let doubled = {
        let sim = sim.clone();
        node(move |mut s| {
            let sim = sim.clone();
            async move {
                if !read_head(&mut s).await {
                    return;
                }
                let mut doc = serde_json::to_value(sim.summary(0, Utc::now())).unwrap();
                let mut twin = doc["pods"][0].clone();
                twin["podRef"]["uid"] = "twin-uid".into();
                for c in twin["containers"].as_array_mut().unwrap() {
                    c["memory"]["workingSetBytes"] = 1.into();
                }
                doc["pods"].as_array_mut().unwrap().push(twin);
                answer(&mut s, "", &serde_json::to_vec(&doc).unwrap()).await;
            }
        })
        .await
    };
    let d = tempfile::tempdir().unwrap();
    let stderr = d.path().join("stderr.log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["aggregator", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--nodes",
            &doubled,
            "--metric-resolution",
            "1s",
            "--allow-short-resolution",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let counted = until("duplicates counted over 4 rounds", WAIT, || async {
        sample(
            &metrics(&base).await,
            "vigil_aggregator_duplicate_pod_names_total",
        )
        .filter(|n| *n >= 4.0)
    })
    .await;
    let (pod, ns) = sim::pod_ref(&sim.shape, 0, 0);
    let ws = get_json(&format!(
        "{base}/api/v1/model/namespaces/{ns}/pods/{pod}/containers/c0/metrics/memory/working_set"
    ))
    .await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(counted >= 4.0);
    let values: Vec<f64> = points(&ws).into_iter().map(|(_, v)| v).collect();
    assert!(!values.is_empty());
    assert!(
        values
            .iter()
            .all(|v| *v == sim::container_working_set(0, 0) as f64),
        "the twin's values leaked in: {values:?}"
    );
    let logged = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(
        logged
            .lines()
            .filter(|l| l.contains("same namespace and name"))
            .count(),
        1,
        "{logged}"
    );
}

/// A document limit of 0 or not a number stops start-up with the option named; the YAML key
/// `max_document_bytes` is read too.
#[test]
fn bad_document_limit_is_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("aggregator.yaml");
    std::fs::write(&yaml, "nodes: [127.0.0.1:1]\nmax_document_bytes: 0\n").unwrap();
    let yaml = yaml.display().to_string();
    for (args, want) in [
        (
            vec!["--nodes", "127.0.0.1:1", "--max-document-bytes", "0"],
            "--max-document-bytes: must be at least 1",
        ),
        (
            vec!["--nodes", "127.0.0.1:1", "--max-document-bytes", "8MiB"],
            "--max-document-bytes",
        ),
        (
            vec!["--config", yaml.as_str()],
            "--max-document-bytes: must be at least 1",
        ),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("aggregator")
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
