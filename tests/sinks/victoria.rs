//! InfluxDB v2 `/api/v2/write` and Prometheus remote_write against a real VictoriaMetrics,
//! read back through `/api/v1/export`; a remote_write outage loses and repeats nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{free_port, until};
use crate::support::sinks::*;

/// Polls an export until it holds `want` samples in total, then returns it as a SeriesMap.
async fn export_when_complete(vm: &Victoria, selector: &str, want: usize) -> SeriesMap {
    until(
        &format!("{want} samples of {selector} in VictoriaMetrics"),
        Duration::from_secs(40),
        || async {
            let m = to_series_map(vm.export(selector).await);
            let n: usize = m.values().map(|v| v.len()).sum();
            (n >= want).then_some(m)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_v2_and_remote_write_reach_victoria_metrics() {
    let vm = Victoria::start().await;
    let tok = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tok.path(), "s3cret-token\n").unwrap();
    let batches: Vec<_> = times(3, Duration::from_secs(60))
        .into_iter()
        .enumerate()
        .map(|(i, t)| sample_batch(t, i as i64))
        .collect();
    let total: usize = batches.iter().map(points_in).sum();
    let run = Running::start(
        &[
            format!(
                "influxdb2:{}?org=o&bucket=k8s&token_file={}&gzip=true&cluster_name=v2",
                vm.url(),
                tok.path().display()
            ),
            format!(
                "prometheus-remote-write:{}/api/v1/write?cluster_name=rw&batch_size=5",
                vm.url()
            ),
        ],
        None,
    );
    run.push_all_and_wait(&batches, total as u64).await;
    assert!(run.set.stats()[1].payloads_sent >= (total as u64).div_ceil(5));

    // v2: VictoriaMetrics names a field's series `<measurement>_<field>`.
    let mut want = SeriesMap::new();
    for p in expected_influx_points(&batches, false, "v2") {
        let mut l: BTreeMap<String, String> = p.tags.clone();
        l.insert("__name__".into(), format!("{}_{}", p.measurement, p.field));
        let v = match p.value {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        };
        want.entry(l).or_default().push((p.time / 1_000_000, v));
    }
    let got = export_when_complete(&vm, "{cluster_name=\"v2\"}", total).await;
    assert_same_series(&got, &want);

    let got = export_when_complete(&vm, "{cluster_name=\"rw\"}", total).await;
    let want = expected_remote_write(&batches, "rw");
    assert_same_series(&got, &want);
    assert!(got.keys().any(|l| l["__name__"] == "cpu_usage_rate"
        && l["type"] == "pod"
        && l["labels"] == "app:dns,tier:infra"));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_outage_delivers_every_sample_once_in_order() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let port = free_port();
    let mut vm = Victoria::start_in(dir.clone(), port).await;
    let data_dir = tempfile::tempdir().unwrap();
    let run = Running::start(
        &[format!(
            "prometheus-remote-write:http://127.0.0.1:{port}/api/v1/write?batch_size=7&retry_initial=50ms&retry_max=300ms&max_memory_bytes=2KiB&timeout=2s"
        )],
        Some(data_dir.path()),
    );
    let batches: Vec<_> = times(8, Duration::from_secs(10))
        .into_iter()
        .enumerate()
        .map(|(i, t)| sample_batch(t, i as i64))
        .collect();
    let per = points_in(&batches[0]) as u64;
    run.set.push(Arc::new(batches[0].clone()));
    run.wait_sent(0, per, Duration::from_secs(20)).await;
    vm.proc.stop();
    for b in &batches[1..8] {
        run.set.push(Arc::new(b.clone()));
    }
    until(
        "retries while VictoriaMetrics is down",
        Duration::from_secs(20),
        || async {
            let st = &run.set.stats()[0];
            (st.requests_failed >= 3 && st.queue.disk_payloads > 0).then_some(())
        },
    )
    .await;
    let vm = Victoria::start_in(dir.clone(), port).await;
    run.wait_sent(0, per * 8, Duration::from_secs(30)).await;
    let got = export_when_complete(&vm, "{__name__=~\".+\"}", per as usize * 8).await;
    assert_same_series(&got, &expected_remote_write(&batches, ""));
    for samples in got.values() {
        assert_eq!(
            samples.len(),
            8,
            "one sample per batch: no gap, no duplicate"
        );
        assert!(samples.windows(2).all(|w| w[0].0 < w[1].0));
    }
    assert_eq!(run.set.stats()[0].queue.dropped_points, 0);
    run.stop().await;
}
