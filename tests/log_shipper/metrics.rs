//! The log shipper's self-metrics (OpenMetrics text) scraped by a real Prometheus.

use crate::support::collector::{get, Prometheus};
use crate::support::until_blocking;
use crate::support::shipper::{append, container_dir, cri_line, Shipper};
use std::time::Duration;

#[test]
fn prometheus_scrapes_the_openmetrics_self_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let dir = container_dir(&root, "shop", "web-0", "uid-1", "nginx");
    for n in 0..10u64 {
        append(
            &dir.join("0.log"),
            &cri_line(n + 1, "stdout", "F", &format!("line {n}")),
        );
    }
    let out = tmp.path().join("out.ndjson");
    let sink = format!("file:{}", out.display());
    let sh = Shipper::start(&root, &tmp.path().join("data"), &["--sink", &sink]);
    let metrics_url = format!("http://127.0.0.1:{}/metrics", sh.port);
    let body = until_blocking("10 records shipped", Duration::from_secs(30), || {
        let (st, body) = get(&metrics_url);
        // The per-file lag is published once a second.
        (st == 200
            && body.contains("\nvigil_log_shipper_records_shipped_total 10\n")
            && body.contains("vigil_log_shipper_file_lag_bytes{path="))
        .then_some(body)
    });
    assert!(
        body.contains("# TYPE vigil_log_shipper_records_shipped counter\n"),
        "{body}"
    );
    assert!(
        body.contains("vigil_log_shipper_file_lag_bytes{path="),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");

    let prom = Prometheus::start(&[format!("127.0.0.1:{}", sh.port)]);
    let r = until_blocking(
        "the shipper's counters in Prometheus",
        Duration::from_secs(40),
        || {
            let r = prom.query("vigil_log_shipper_records_shipped_total");
            (r.len() == 1 && r[0]["value"][1] == "10").then_some(r)
        },
    );
    assert_eq!(r[0]["metric"]["job"], "vigil");
    let lag = prom.query("vigil_log_shipper_file_lag_bytes");
    assert_eq!(lag.len(), 1, "{lag:?}");
    assert!(lag[0]["metric"]["path"]
        .as_str()
        .unwrap()
        .ends_with("/0.log"));
    assert_eq!(lag[0]["value"][1], "0");
    let (_, targets) = get(&format!("{}/api/v1/targets", prom.base));
    let t: serde_json::Value = serde_json::from_str(&targets).unwrap();
    let active = &t["data"]["activeTargets"][0];
    assert_eq!(active["health"], "up", "{targets}");
    assert_eq!(active["lastError"], "", "{targets}");
    assert_eq!(
        prom.query("vigil_log_shipper_metadata_errors_total")[0]["value"][1],
        "0"
    );
}
