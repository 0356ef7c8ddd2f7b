//! The Elasticsearch sink over TLS with a custom CA (`sink.elasticsearch.ca_file`): the right CA ships, a wrong
//! CA is a clear, retried error that loses nothing.

use crate::support::tls;
use crate::support::es_bulk::{EsServer, Options};
use crate::support::shipper::{append, container_dir, cri_line, wait_for, Shipper};
use std::time::Duration;

fn es_config(dir: &std::path::Path, name: &str, url: &str, ca_pem: &str) -> String {
    let ca = dir.join(format!("{name}.pem"));
    std::fs::write(&ca, ca_pem).unwrap();
    let cfg = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "sink:\n  elasticsearch: {{url: '{url}', ca_file: '{}', batch_timeout: 100ms, backoff_initial: 100ms, backoff_max: 500ms}}\n",
            ca.display()
        ),
    )
    .unwrap();
    cfg.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_ca_verifies_the_server_and_a_wrong_ca_retries_without_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let dir = container_dir(&root, "shop", "web-0", "uid-1", "nginx");
    let es = EsServer::start(Options::default()).await;
    let (port, right_ca) = tls::tls_front(es.addr).await;
    let url = format!("https://127.0.0.1:{port}");
    let (wrong_ca, _, _) = tls::new_ca("some other CA");
    let data = tmp.path().join("data");
    for n in 0..50u64 {
        append(
            &dir.join("0.log"),
            &cri_line(n + 1, "stdout", "F", &format!("line {n}")),
        );
    }

    // Wrong CA: the handshake fails, the shipper says why, retries, and ships nothing.
    let cfg = es_config(tmp.path(), "wrong", &url, &wrong_ca);
    let mut sh = Shipper::start(&root, &data, &["--config", &cfg]);
    let mut errors = 0.0;
    for _ in 0..300 {
        errors = sh
            .metric("vigil_log_shipper_bulk_request_errors_total")
            .await
            .unwrap_or(0.0);
        if errors >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(errors >= 2.0, "retried errors {errors}:\n{}", sh.stderr());
    let log = sh.stderr();
    assert!(
        log.contains("bulk request failed; retrying")
            && (log.contains("UnknownIssuer") || log.contains("certificate")),
        "{log}"
    );
    assert_eq!(es.doc_count(), 0);
    assert_eq!(
        sh.metric("vigil_log_shipper_records_shipped_total").await,
        Some(0.0)
    );
    assert!(sh.child.try_wait().unwrap().is_none(), "still running");
    sh.terminate();

    // The right CA: everything arrives, exactly once.
    let cfg = es_config(tmp.path(), "right", &url, &right_ca);
    let sh = Shipper::start(&root, &data, &["--config", &cfg]);
    wait_for("50 documents over TLS", Duration::from_secs(20), || {
        (es.doc_count() >= 50).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(es.doc_count(), 50, "{}", sh.stderr());
    let mut msgs: Vec<String> = es
        .all_docs()
        .into_iter()
        .map(|(_, _, d)| d["message"].as_str().unwrap().to_string())
        .collect();
    msgs.sort_by_key(|m| m[5..].parse::<u32>().unwrap());
    assert_eq!(
        msgs,
        (0..50).map(|n| format!("line {n}")).collect::<Vec<_>>()
    );
    assert_eq!(es.stats().conflicts, 0);
}
