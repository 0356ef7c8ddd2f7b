//! InfluxDB sink against a real InfluxDB 1.6: both Heapster schemas read back exactly through
//! InfluxQL, and delivery across an InfluxDB outage and a vigil restart, each point once.

use std::sync::Arc;
use std::time::Duration;

use crate::support::{free_port, until};
use crate::support::sinks::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_v1_heapster_schema_reads_back_exactly() {
    let influx = Influx::start().await;
    let batches: Vec<_> = times(3, Duration::from_secs(60))
        .into_iter()
        .enumerate()
        .map(|(i, t)| sample_batch(t, i as i64))
        .collect();
    let total: usize = batches.iter().map(points_in).sum();
    let run = Running::start(
        &[
            format!("influxdb:{}?db=k8s&retry_initial=100ms&retry_max=1s", influx.url()),
            // withfields schema, another cluster name, small gzip'd requests sent 3 at a time
            format!("influxdb:{}?db=k8sf&withfields=true&cluster_name=prod&gzip=true&batch_size=7&concurrency=3", influx.url()),
        ],
        None,
    );
    run.push_all_and_wait(&batches, total as u64).await;
    let st = run.set.stats();
    assert!(
        st[1].payloads_sent >= (total as u64).div_ceil(7),
        "{:?}",
        st[1]
    );

    let got = influx.all_points("k8s").await;
    let want = expected_influx_points(&batches, false, "default");
    assert_eq!(got.len(), total);
    assert_same_points(&got, &want);
    // Spot-check the schema as Heapster's dashboards query it.
    let v = influx
        .query("k8s", "SELECT \"value\" FROM \"cpu/usage_rate\" WHERE \"type\"='pod_container' AND \"namespace_name\"='kube-system'")
        .await;
    let rows = v["results"][0]["series"][0]["values"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][1], 240);
    assert!(rows[0][1].is_i64(), "integers stay integers");

    let got = influx.all_points("k8sf").await;
    assert_same_points(&got, &expected_influx_points(&batches, true, "prod"));
    assert!(got
        .iter()
        .any(|p| p.measurement == "cpu" && p.field == "usage_rate"));
    assert!(got
        .iter()
        .any(|p| p.measurement == "uptime" && p.field == "value"));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_outage_and_vigil_restart_deliver_every_point_once() {
    let influx_dir = Arc::new(tempfile::tempdir().unwrap());
    let port = free_port();
    let data_dir = tempfile::tempdir().unwrap();
    let uri = format!(
        "influxdb:http://127.0.0.1:{port}?db=k8s&retry_initial=50ms&retry_max=400ms&max_memory_bytes=1KiB&timeout=2s"
    );
    let batches: Vec<_> = times(9, Duration::from_secs(15))
        .into_iter()
        .enumerate()
        .map(|(i, t)| sample_batch(t, i as i64))
        .collect();
    let per = points_in(&batches[0]) as u64;

    let mut influx = Influx::start_in(influx_dir.clone(), port).await;
    let run = Running::start(std::slice::from_ref(&uri), Some(data_dir.path()));
    run.set.push(Arc::new(batches[0].clone()));
    run.wait_sent(0, per, Duration::from_secs(20)).await;

    // InfluxDB goes away for several batches; pushing never waits.
    influx.proc.stop();
    for b in &batches[1..4] {
        let t = std::time::Instant::now();
        run.set.push(Arc::new(b.clone()));
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "push waited {:?}",
            t.elapsed()
        );
    }
    until(
        "failed requests while InfluxDB is down",
        Duration::from_secs(20),
        || async {
            let st = &run.set.stats()[0];
            (st.requests_failed >= 3 && st.queue.disk_payloads > 0).then_some(())
        },
    )
    .await;
    // vigil stops meanwhile: the queue is spilled under the data dir.
    run.stop().await;
    let segs = std::fs::read_dir(
        data_dir
            .path()
            .join("sinks")
            .join(format!("influxdb-127.0.0.1-{port}-k8s")),
    )
    .unwrap()
    .filter(|e| {
        e.as_ref()
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "seg")
    })
    .count();
    assert!(segs > 0, "spill segments on disk");

    // vigil comes back, still without InfluxDB, and gets more batches.
    let run = Running::start(std::slice::from_ref(&uri), Some(data_dir.path()));
    assert!(run.set.stats()[0].queue.disk_payloads > 0);
    for b in &batches[4..9] {
        run.set.push(Arc::new(b.clone()));
    }
    until("queued batches", Duration::from_secs(10), || async {
        let st = &run.set.stats()[0];
        (st.requests_failed >= 1 && st.queue.disk_payloads >= 2).then_some(())
    })
    .await;
    // InfluxDB returns (same port, same data): everything arrives, in order, once.
    let influx = Influx::start_in(influx_dir.clone(), port).await;
    run.wait_sent(0, per * 8, Duration::from_secs(30)).await;
    let got = influx.all_points("k8s").await;
    assert_same_points(&got, &expected_influx_points(&batches, false, "default"));
    let mut ts: Vec<i64> = got
        .iter()
        .filter(|p| p.measurement == "cpu/usage_rate" && p.tags["type"] == "cluster")
        .map(|p| p.time)
        .collect();
    let n = ts.len();
    ts.dedup();
    assert_eq!(
        (n, ts.len()),
        (9, 9),
        "one cluster point per batch: no gap, no duplicate"
    );
    let st = &run.set.stats()[0];
    assert_eq!(st.points_sent, per * 8);
    assert_eq!(st.queue.dropped_points, 0);
    assert!(st.retries > 0);
    let mut m = String::new();
    run.set.write_metrics(&mut m);
    assert!(m.contains(&format!("vigil_sink_points_sent_total{{sink=\"influxdb-127.0.0.1-{port}-k8s\",kind=\"influxdb\"}} {}", per * 8)), "{m}");
    run.stop().await;
}
