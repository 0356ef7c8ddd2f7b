//! Prometheus 2.42: remote_write series arrive and its query API returns the pushed values; a
//! Prometheus scraping `render_exposition` gets the aggregated series, and promtool accepts it.

use crate::support::until;
use crate::support::promtool;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::sinks::*;
use vigil_aggregator::batch::Batch;
use vigil_aggregator::sinks::render_exposition;

/// A range-vector query as a SeriesMap (labels → samples in ms).
async fn matrix(prom: &Prometheus, q: &str, at: f64) -> SeriesMap {
    let mut out = SeriesMap::new();
    for r in prom.query(q, at).await {
        let labels: BTreeMap<String, String> = r["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let samples = r["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                    p[1].as_str().unwrap().parse::<f64>().unwrap(),
                )
            })
            .collect();
        out.insert(labels, samples);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_reaches_prometheus_and_its_query_api_returns_the_values() {
    let prom = Prometheus::start(None).await;
    let batches: Vec<_> = times(3, Duration::from_secs(60))
        .into_iter()
        .enumerate()
        .map(|(i, t)| sample_batch(t, i as i64))
        .collect();
    let total: usize = batches.iter().map(points_in).sum();
    let run = Running::start(
        &[format!(
            "prometheus-remote-write:{}/api/v1/write?cluster_name=rw&batch_size=10",
            prom.url()
        )],
        None,
    );
    run.push_all_and_wait(&batches, total as u64).await;
    let st = &run.set.stats()[0];
    assert_eq!((st.payloads_rejected, st.requests_failed), (0, 0), "{st:?}");
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let got = until(
        "remote-written series in Prometheus",
        Duration::from_secs(20),
        || async {
            let m = matrix(&prom, "{cluster_name=\"rw\"}[10m]", now).await;
            (m.values().map(|v| v.len()).sum::<usize>() >= total).then_some(m)
        },
    )
    .await;
    assert_same_series(&got, &expected_remote_write(&batches, "rw"));
    // An instant query at the last batch's time, as Grafana asks it.
    let t = batches[2].timestamp.timestamp_millis() as f64 / 1000.0;
    let r = prom
        .query(
            "cpu_usage_rate{type=\"pod\",namespace_name=\"kube-system\"}",
            t,
        )
        .await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["value"][1], "252");
    let r = prom
        .query("rate(cpu_usage_total{type=\"pod_container\"}[5m])", t)
        .await;
    assert_eq!(
        r.len(),
        1,
        "cumulative metrics are counters that rate() works on"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposition_is_scraped_by_prometheus_and_passes_promtool() {
    let ts = chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis() - 2000)
        .unwrap();
    let batch = sample_batch(ts, 7);
    let mut body = String::new();
    render_exposition(&batch, &mut body);

    // promtool lints it.
    promtool::check_metrics(&body, &[]);

    // Served from a tiny axum server, as the aggregator's /federate serves it.
    let shared: Arc<Mutex<Batch>> = Arc::new(Mutex::new(batch.clone()));
    let s2 = shared.clone();
    let app = axum::Router::new().route(
        "/federate",
        axum::routing::get(move || {
            let s = s2.clone();
            async move {
                let mut out = String::new();
                render_exposition(&s.lock().unwrap(), &mut out);
                ([("content-type", "text/plain; version=0.0.4")], out)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let prom = Prometheus::start(Some(&addr.to_string())).await;
    // Expected: only the aggregated sets (pod, namespace, node, cluster), plus the scrape's job/instance.
    let mut agg = batch.clone();
    agg.sets
        .retain(|_, s| ["pod", "ns", "node", "cluster"].contains(&s.labels["type"].as_str()));
    let want: SeriesMap = expected_remote_write(&[agg], "")
        .into_iter()
        .map(|(mut l, v)| {
            l.insert("job".into(), "vigil".into());
            l.insert("instance".into(), addr.to_string());
            (l, v)
        })
        .collect();
    let at = chrono::Utc::now().timestamp_millis() as f64 / 1000.0 + 1.0;
    let got = until(
        "scraped series in Prometheus",
        Duration::from_secs(30),
        || async {
            let m: SeriesMap = matrix(&prom, "{job=\"vigil\",__name__!~\"up|scrape_.*\"}[5m]", at)
                .await
                .into_iter()
                .map(|(l, mut v)| {
                    v.dedup();
                    (l, v)
                })
                .collect();
            (m.len() >= want.len()).then_some(m)
        },
    )
    .await;
    assert_same_series(&got, &want);
    assert!(!got
        .keys()
        .any(|l| l["type"] == "pod_container" || l["type"] == "sys_container"));
}
