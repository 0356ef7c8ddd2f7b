//! Fault tests with tiny HTTP servers: a 400 loses only the bad payload and the log says why;
//! 5xx and 429 are retried until accepted; a sink that hangs delays neither `push` nor the
//! other sinks, nor shutdown for long.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use crate::support::until;
use crate::support::sinks::*;

/// What a test server saw: per request, its headers and body.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<(HeaderMap, Vec<u8>)>>,
    count: AtomicUsize,
}

/// Serves POSTs on any path, answering `answer(n, path)` to the n-th request (0-based); `None` hangs.
async fn server(
    answer: impl Fn(usize, &str) -> Option<(StatusCode, &'static str)> + Send + Sync + 'static,
) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    let answer = Arc::new(answer);
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: HeaderMap, body: axum::body::Bytes| {
            let seen = s2.clone();
            let answer = answer.clone();
            async move {
                let n = seen.count.fetch_add(1, Ordering::SeqCst);
                seen.requests.lock().unwrap().push((headers, body.to_vec()));
                match answer(n, uri.path()) {
                    Some((st, text)) => (st, text),
                    None => std::future::pending().await,
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), seen)
}

/// Log lines, captured for the whole test binary.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);
impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
fn logs() -> Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let l = Logs::default();
        let w = l.clone();
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || w.clone())
            .init();
        l
    })
    .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_loses_only_the_bad_payload_and_the_log_says_why() {
    let logs = logs();
    let (url, seen) = server(|n, _| {
        Some(if n == 1 {
            (
                StatusCode::BAD_REQUEST,
                "out of order sample for series cpu_usage_rate",
            )
        } else {
            (StatusCode::NO_CONTENT, "")
        })
    })
    .await;
    let run = Running::start(
        &[format!(
            "prometheus-remote-write:{url}/api/v1/write?retry_initial=50ms&retry_max=200ms"
        )],
        None,
    );
    let batches: Vec<_> = times(3, Duration::from_secs(60))
        .into_iter()
        .enumerate()
        .map(|(i, t)| sample_batch(t, i as i64))
        .collect();
    let per = points_in(&batches[0]) as u64;
    for b in &batches {
        run.set.push(Arc::new(b.clone()));
    }
    until(
        "three payloads handled",
        Duration::from_secs(20),
        || async {
            let st = &run.set.stats()[0];
            (st.payloads_sent + st.payloads_rejected == 3).then_some(())
        },
    )
    .await;
    let st = run.set.stats()[0].clone();
    assert_eq!(
        (
            st.points_sent,
            st.points_rejected,
            st.payloads_rejected,
            st.retries
        ),
        (2 * per, per, 1, 0),
        "{st:?}"
    );
    assert_eq!(
        seen.count.load(Ordering::SeqCst),
        3,
        "the rejected payload is not retried"
    );
    // remote_write 1.0 headers on every request.
    for (h, body) in seen.requests.lock().unwrap().iter() {
        assert_eq!(h["content-encoding"], "snappy");
        assert_eq!(h["content-type"], "application/x-protobuf");
        assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
        assert!(h["user-agent"].to_str().unwrap().starts_with("vigil/"));
        assert!(!body.is_empty());
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("payload rejected by the server; dropped")
            && text.contains("HTTP 400: out of order sample for series cpu_usage_rate"),
        "{text}"
    );
    let mut m = String::new();
    run.set.write_metrics(&mut m);
    assert!(m.contains(&format!("reason=\"rejected\"}} {per}")), "{m}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_5xx_and_429_are_retried_until_accepted() {
    let writes = AtomicUsize::new(0);
    let (url, seen) = server(move |_, path| {
        if path == "/query" {
            return Some((StatusCode::OK, "{\"results\":[{\"statement_id\":0}]}"));
        }
        Some(match writes.fetch_add(1, Ordering::SeqCst) {
            0 => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            1 => (StatusCode::TOO_MANY_REQUESTS, "slow down"),
            2 => (StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"timeout\"}"),
            _ => (StatusCode::NO_CONTENT, ""),
        })
    })
    .await;
    let run = Running::start(
        &[format!(
            "influxdb:{url}?db=k8s&retry_initial=20ms&retry_max=100ms"
        )],
        None,
    );
    let b = sample_batch(chrono::Utc::now(), 0);
    let per = points_in(&b) as u64;
    run.set.push(Arc::new(b));
    run.wait_sent(0, per, Duration::from_secs(20)).await;
    let st = run.set.stats()[0].clone();
    assert_eq!(
        (
            st.requests_failed,
            st.retries,
            st.payloads_sent,
            st.payloads_rejected
        ),
        (3, 3, 1, 0),
        "{st:?}"
    );
    {
        let reqs = seen.requests.lock().unwrap();
        // The first request is the database creation (POST /query), then the write is tried 4
        // times with the same body.
        let bodies: Vec<&Vec<u8>> = reqs.iter().skip(1).map(|(_, b)| b).collect();
        assert_eq!(bodies.len(), 4);
        assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    }
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_sink_delays_neither_push_nor_other_sinks() {
    let (hang_url, hang_seen) = server(|_, _| None).await;
    let (ok_url, ok_seen) = server(|_, _| Some((StatusCode::NO_CONTENT, ""))).await;
    let run = Running::start(
        &[
            format!("prometheus-remote-write:{hang_url}/api/v1/write?timeout=60s"),
            format!("influxdb2:{ok_url}?org=o&bucket=b&token_env=PATH"),
        ],
        None,
    );
    let batches: Vec<_> = times(5, Duration::from_secs(10))
        .into_iter()
        .enumerate()
        .map(|(i, t)| sample_batch(t, i as i64))
        .collect();
    let per = points_in(&batches[0]) as u64;
    for b in &batches {
        let t = Instant::now();
        run.set.push(Arc::new(b.clone()));
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "push took {:?}",
            t.elapsed()
        );
    }
    run.wait_sent(1, 5 * per, Duration::from_secs(10)).await;
    assert_eq!(ok_seen.count.load(Ordering::SeqCst), 5);
    let st = &run.set.stats()[0];
    assert_eq!(st.points_sent, 0);
    assert_eq!(
        hang_seen.count.load(Ordering::SeqCst),
        1,
        "one request in flight, the rest queued"
    );
    until(
        "the hanging sink's queue to hold the rest",
        Duration::from_secs(5),
        || async { (run.set.stats()[0].queue.memory_payloads == 5).then_some(()) },
    )
    .await;
    // Shutdown does not wait for the hanging request's 60s timeout.
    let t = Instant::now();
    run.stop().await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_sink_logs_every_point() {
    let logs = logs();
    let run = Running::start(&["log".to_string()], None);
    let b = sample_batch(chrono::Utc::now(), 3);
    run.set.push(Arc::new(b.clone()));
    run.wait_sent(0, points_in(&b) as u64, Duration::from_secs(10))
        .await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let ts = b.timestamp.timestamp_nanos_opt().unwrap();
    let want = format!("cpu/usage_rate,labels=app:dns\\,tier:infra,namespace_name=kube-system,nodename=node-a,pod_name=dns-1,type=pod value=253i {ts}");
    assert!(text.contains(&want), "{want} not in {text}");
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("vigil::sinks::log") && l.contains(&ts.to_string()))
            .count(),
        points_in(&b)
    );
    run.stop().await;
}
