//! End-to-end tests of `vigil log-shipper` (the real binary) against the strict `_bulk` test server.

use crate::support::es_bulk::{EsServer, Options};
use crate::support::shipper::*;
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn messages(es: &EsServer) -> Vec<String> {
    es.all_docs()
        .iter()
        .map(|(_, _, d)| d["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ships_cri_and_docker_files_with_metadata_and_metrics() {
    let es = EsServer::start(Options::default()).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let cri = container_dir(&root, "shop", "web-0", "uid-1", "nginx");
    let dock = container_dir(&root, "shop", "api-7", "uid-2", "app");
    let mut data = String::new();
    for i in 0..50 {
        data.push_str(&cri_line(
            1_000 + i,
            "stdout",
            "F",
            &format!("cri line {i}"),
        ));
    }
    data.push_str(&cri_line(2_000, "stderr", "P", "joined "));
    data.push_str(&cri_line(2_001, "stderr", "F", "partial"));
    data.push_str("not a cri line at all\n");
    append(&cri.join("0.log"), &data);
    let mut d = String::new();
    for i in 0..30 {
        d.push_str(&docker_line(
            3_000 + i,
            "stdout",
            &format!("docker line {i}"),
        ));
    }
    append(&dock.join("1.log"), &d);
    let sh = Shipper::start(
        &root,
        &tmp.path().join("data"),
        &["--sink", &format!("es:{}", es.url())],
    );
    wait_for("82 documents", T, || (es.doc_count() >= 82).then_some(())).await;
    // A file created while running is found within a second or so.
    let late = container_dir(&root, "other", "job-1", "uid-3", "worker");
    append(
        &late.join("0.log"),
        &cri_line(5_000, "stdout", "F", "late file"),
    );
    wait_for("the late file", Duration::from_secs(5), || {
        messages(&es)
            .contains(&"late file".to_string())
            .then_some(())
    })
    .await;
    // Lines carry 2026-11-22; the one line without a parseable time is indexed by the day it is shipped.
    let today = format!("logstash-{}", chrono::Utc::now().format("%Y.%m.%d"));
    for i in es.indices() {
        assert!(i == "logstash-2026.11.22" || i == today, "{i}");
    }
    let docs: Vec<(String, serde_json::Value)> = es
        .all_docs()
        .into_iter()
        .map(|(_, id, d)| (id, d))
        .collect();
    let by_msg = |m: &str| {
        docs.iter()
            .find(|(_, d)| d["message"] == m)
            .unwrap_or_else(|| panic!("no doc {m}"))
            .1
            .clone()
    };
    let c0 = by_msg("cri line 0");
    assert_eq!(c0["kubernetes"]["namespace_name"], "shop");
    assert_eq!(c0["kubernetes"]["pod_name"], "web-0");
    assert_eq!(c0["kubernetes"]["pod_id"], "uid-1");
    assert_eq!(c0["kubernetes"]["container_name"], "nginx");
    assert_eq!(c0["kubernetes"]["restart_count"], 0);
    assert_eq!(c0["stream"], "stdout");
    assert_eq!(c0["@timestamp"], "2026-11-22T10:00:00.000001000Z");
    let joined = by_msg("joined partial");
    assert_eq!(joined["stream"], "stderr");
    let raw = by_msg("not a cri line at all");
    assert!(raw["parse_error"].as_str().unwrap().starts_with("cri:"));
    let d5 = by_msg("docker line 5");
    assert_eq!(d5["kubernetes"]["restart_count"], 1);
    assert_eq!(d5["kubernetes"]["container_name"], "app");
    // In order per file.
    let cri_order: Vec<String> = docs
        .iter()
        .filter_map(|(_, d)| {
            d["message"]
                .as_str()
                .filter(|m| m.starts_with("cri line"))
                .map(String::from)
        })
        .collect();
    assert_eq!(
        cri_order,
        (0..50).map(|i| format!("cri line {i}")).collect::<Vec<_>>()
    );
    assert_eq!(sh.get("/healthz").await.as_deref(), Some("ok\n"));
    assert!(
        sh.metric("vigil_log_shipper_records_shipped_total")
            .await
            .unwrap()
            >= 83.0
    );
    assert!(
        sh.metric("vigil_log_shipper_lines_read_total")
            .await
            .unwrap()
            >= 84.0
    );
    assert_eq!(
        sh.metric("vigil_log_shipper_parse_errors_total")
            .await
            .unwrap(),
        1.0
    );
    let text = sh.get("/metrics").await.unwrap();
    assert!(
        text.contains("vigil_log_shipper_file_lag_bytes{path="),
        "{text}"
    );
}

/// `count` CRI lines `line <i>` (timestamps from `first`), except line `marked`, which says `this one has a <marker>`.
fn lines_with_one_marked(first: u64, count: u64, marked: u64, marker: &str) -> String {
    let mut data = String::new();
    for i in 0..count {
        let msg = if i == marked {
            format!("this one has a {marker}")
        } else {
            format!("line {i}")
        };
        data.push_str(&cri_line(first + i, "stdout", "F", &msg));
    }
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_429_items_and_dead_letters_mapping_errors() {
    let es = EsServer::start(Options::default()).await;
    es.set_failures(0.3, 0.05, 0.0);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let c = container_dir(&root, "ns", "p", "u", "c");
    let data = lines_with_one_marked(10_000, 500, 250, "MAPPING-ERROR");
    append(&c.join("0.log"), &data);
    let data_dir = tmp.path().join("data");
    let sh = Shipper::start(
        &root,
        &data_dir,
        &[
            "--sink",
            &format!("es:{}", es.url()),
            "--batch-bytes",
            "20000",
        ],
    );
    wait_for("499 documents", T, || (es.doc_count() >= 499).then_some(())).await;
    let dl_path = data_dir.join("dead-letter.ndjson");
    let dl = wait_for("dead-letter file", T, || {
        std::fs::read_to_string(&dl_path)
            .ok()
            .filter(|s| !s.is_empty())
    })
    .await;
    let rec: Value = serde_json::from_str(dl.lines().next().unwrap()).unwrap();
    assert_eq!(rec["status"], 400);
    assert!(rec["reason"]
        .as_str()
        .unwrap()
        .contains("mapper_parsing_exception"));
    assert_eq!(rec["document"]["message"], "this one has a MAPPING-ERROR");
    assert!(rec["action"]["create"]["_id"].is_string());
    assert_eq!(dl.lines().count(), 1);
    // Every good line exactly once (the server stores a document once per id), in order.
    let msgs = messages(&es);
    let want: Vec<String> = (0..500)
        .filter(|&i| i != 250)
        .map(|i| format!("line {i}"))
        .collect();
    let mut sorted = msgs.clone();
    sorted.sort();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    assert_eq!(sorted, want_sorted);
    assert!(es.stats().injected_429 > 0);
    assert_eq!(
        sh.metric("vigil_log_shipper_records_dead_lettered_total")
            .await,
        Some(1.0)
    );
    assert!(
        sh.metric("vigil_log_shipper_records_retried_total")
            .await
            .unwrap()
            > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_resume_from_checkpoints_without_loss_or_duplicates() {
    let es = EsServer::start(Options::default()).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let c = container_dir(&root, "ns", "p", "u", "c");
    let log = c.join("0.log");
    let data_dir = tmp.path().join("data");
    let sink = format!("es:{}", es.url());
    let mut n = 0u64;
    let mut write = |count: u64| {
        let mut s = String::new();
        for _ in 0..count {
            s.push_str(&cri_line(100_000 + n, "stdout", "F", &format!("line {n}")));
            n += 1;
        }
        append(&log, &s);
    };
    write(100);
    let mut sh = Shipper::start(&root, &data_dir, &["--sink", &sink]);
    wait_for("100 docs", T, || (es.doc_count() >= 100).then_some(())).await;
    // Graceful stop writes checkpoints; lines written meanwhile are shipped after the restart.
    assert!(sh.terminate().success(), "{}", sh.stderr());
    let cp: Value =
        serde_json::from_str(&std::fs::read_to_string(data_dir.join("checkpoints.json")).unwrap())
            .unwrap();
    assert_eq!(
        cp["files"][0]["offset"].as_u64().unwrap(),
        std::fs::metadata(&log).unwrap().len()
    );
    write(100);
    let mut sh = Shipper::start(&root, &data_dir, &["--sink", &sink]);
    wait_for("200 docs", T, || (es.doc_count() >= 200).then_some(())).await;
    // A crash (SIGKILL) right after more lines: the restart re-sends what was not checkpointed; ids dedupe.
    write(300);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sh.kill();
    let _sh = Shipper::start(&root, &data_dir, &["--sink", &sink]);
    wait_for("500 docs", T, || (es.doc_count() >= 500).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Exactly once: the server keeps one document per id, and no line was stored under two ids.
    let mut msgs = messages(&es);
    assert_eq!(msgs.len(), 500);
    msgs.sort_by_key(|m| m[5..].parse::<u64>().unwrap());
    assert_eq!(
        msgs,
        (0..500).map(|i| format!("line {i}")).collect::<Vec<_>>()
    );
    // In file order: offsets (in the ids) rise with the line numbers.
    let mut by_offset: Vec<(u64, u64)> = es
        .all_docs()
        .iter()
        .map(|(_, id, d)| {
            (
                u64::from_str_radix(id.split_once('-').unwrap().1, 16).unwrap(),
                d["message"].as_str().unwrap()[5..].parse().unwrap(),
            )
        })
        .collect();
    by_offset.sort();
    assert!(by_offset.windows(2).all(|w| w[0].1 < w[1].1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_while_elasticsearch_is_down_then_catch_up() {
    let mut es = EsServer::start(Options::default()).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let c = container_dir(&root, "ns", "p", "u", "c");
    let log = c.join("0.log");
    let sh = Shipper::start(
        &root,
        &tmp.path().join("data"),
        &[
            "--sink",
            &format!("es:{}", es.url()),
            "--batch-bytes",
            "65536",
        ],
    );
    append(&log, &cri_line(1, "stdout", "F", "before"));
    wait_for("first doc", T, || (es.doc_count() >= 1).then_some(())).await;
    es.go_down().await;
    // 40 MB of lines while Elasticsearch is down: the shipper must not buffer them all.
    let pad = "x".repeat(150);
    let mut s = String::with_capacity(1 << 20);
    let mut n = 0u64;
    for _ in 0..40 {
        s.clear();
        for _ in 0..5000 {
            s.push_str(&cri_line(1_000 + n, "stdout", "F", &format!("{n} {pad}")));
            n += 1;
        }
        append(&log, &s);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = sh.rss_kib();
    assert!(
        rss < 100 * 1024,
        "RSS {rss} KiB while Elasticsearch is down"
    );
    let lag = sh.get("/metrics").await.unwrap();
    let lag_line = lag
        .lines()
        .find(|l| l.starts_with("vigil_log_shipper_file_lag_bytes{"))
        .unwrap()
        .to_string();
    let lag_bytes: f64 = lag_line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(lag_bytes > 30_000_000.0, "{lag_line}");
    es.come_up().await;
    wait_for("all 200001 docs", Duration::from_secs(90), || {
        (es.doc_count() >= 200_001).then_some(())
    })
    .await;
    assert_eq!(es.doc_count(), 200_001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_and_configuration_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let c = container_dir(&root, "ns", "p", "u", "c");
    append(
        &c.join("0.log"),
        &(cri_line(1, "stdout", "F", "to a file") + &cri_line(2, "stdout", "F", "second")),
    );
    let out = tmp.path().join("out.ndjson");
    let _sh = Shipper::start(
        &root,
        &tmp.path().join("data"),
        &["--sink", &format!("file:{}", out.display())],
    );
    let text = wait_for("file sink output", T, || {
        std::fs::read_to_string(&out)
            .ok()
            .filter(|t| t.lines().count() >= 2)
    })
    .await;
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["message"], "to a file");

    let bin = env!("CARGO_BIN_EXE_vigil");
    let run = |cfg: &str| {
        let p = tmp.path().join("cfg.yaml");
        std::fs::write(&p, cfg).unwrap();
        let o = std::process::Command::new(bin)
            .args(["log-shipper", "--config"])
            .arg(&p)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, err) = run("sink: {stdout: true}\nlisten_adress: x\n");
    assert!(!ok && err.contains("listen_adress"), "{err}");
    let (ok, err) = run("sink: {stdout: true}\nkubernetes_metadata: {source: kubelet}\n");
    assert!(!ok && err.contains("kubernetes_metadata.url"), "{err}");
    let (ok, err) = run("sink: {elasticsearch: {url: 'ftp://x'}}\n");
    assert!(!ok && err.contains("sink.elasticsearch.url"), "{err}");
    let (ok, err) = run("listen: 127.0.0.1:0\n");
    assert!(!ok && err.contains("no sink"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_api_key_413_split_and_data_stream() {
    let mut opts = Options {
        max_content_length: 16 * 1024,
        authorization: Some("ApiKey c2VjcmV0".into()),
        ..Default::default()
    };
    opts.data_streams.insert("logs-app-shop".into());
    let es = EsServer::start(opts).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let c = container_dir(&root, "shop", "p", "u", "c");
    let mut data = String::new();
    for i in 0..400 {
        data.push_str(&cri_line(
            7_000 + i,
            "stdout",
            "F",
            &format!("line {i} {}", "y".repeat(100)),
        ));
    }
    append(&c.join("0.log"), &data);
    let cfg = tmp.path().join("cfg.yaml");
    std::fs::write(
        &cfg,
        format!(
            "sink:\n  elasticsearch:\n    url: {}\n    data_stream: 'logs-app-{{namespace}}'\n    api_key: c2VjcmV0\n    gzip: true\n    batch_bytes: 200000\n",
            es.url()
        ),
    )
    .unwrap();
    let sh = Shipper::start(
        &root,
        &tmp.path().join("data"),
        &["--config", cfg.to_str().unwrap()],
    );
    wait_for("400 docs in the data stream", T, || {
        (es.docs("logs-app-shop").len() >= 400).then_some(())
    })
    .await;
    assert_eq!(es.doc_count(), 400);
    let st = es.stats();
    assert!(st.gzip_requests > 0);
    assert!(
        st.rejected_requests > 0,
        "expected 413s for bodies over 16 KiB"
    );
    assert!(
        sh.metric("vigil_log_shipper_bulk_splits_total")
            .await
            .unwrap()
            > 0.0
    );
    assert_eq!(
        sh.metric("vigil_log_shipper_records_dead_lettered_total")
            .await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_lines_truncated_or_dropped_and_multiline_joined() {
    for policy in ["truncate", "drop"] {
        let es = EsServer::start(Options::default()).await;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pods");
        let c = container_dir(&root, "java", "app-0", "u", "jvm");
        // Line 2 is 600 KiB in one raw line: longer than a read chunk, so it spans several reads.
        let data = stdout_lines(
            1,
            [
                "2026-11-22 10:00:00 INFO small".to_string(),
                format!("2026-11-22 10:00:01 HUGE {}", "h".repeat(600 * 1024)),
                "2026-11-22 10:00:02 ERROR boom".into(),
                "\tat a.b(C.java:1)".into(),
                "\tat d.e(F.java:2)".into(),
                "2026-11-22 10:00:03 INFO after".into(),
            ],
        );
        append(&c.join("0.log"), &data);
        let cfg = tmp.path().join("cfg.yaml");
        std::fs::write(
            &cfg,
            format!(
                "sink: {{elasticsearch: {{url: '{}'}}}}\nparse:\n  max_line_bytes: 4096\n  over_long: {policy}\n  multiline:\n    - {{namespace: java, start_pattern: '^\\d{{4}}-\\d\\d-\\d\\d ', flush_timeout: 300ms}}\n",
                es.url()
            ),
        )
        .unwrap();
        let sh = Shipper::start(
            &root,
            &tmp.path().join("data"),
            &["--config", cfg.to_str().unwrap()],
        );
        let want = if policy == "truncate" { 4 } else { 3 };
        wait_for("records", T, || (es.doc_count() >= want).then_some(())).await;
        let msgs = messages(&es);
        assert!(
            msgs.contains(&"2026-11-22 10:00:00 INFO small".to_string()),
            "{policy}: {msgs:?}"
        );
        assert!(
            msgs.contains(
                &"2026-11-22 10:00:02 ERROR boom\n\tat a.b(C.java:1)\n\tat d.e(F.java:2)"
                    .to_string()
            ),
            "{policy}: {msgs:?}"
        );
        assert!(
            msgs.contains(&"2026-11-22 10:00:03 INFO after".to_string()),
            "{policy}: {msgs:?}"
        );
        let docs = es.all_docs();
        if policy == "truncate" {
            let huge = docs
                .iter()
                .find(|(_, _, d)| d["message"].as_str().unwrap().contains("HUGE"))
                .expect("truncated record");
            assert_eq!(huge.2["truncated"], true);
            assert!(huge.2["message"].as_str().unwrap().len() <= 4096);
            assert_eq!(
                sh.metric("vigil_log_shipper_lines_truncated_total").await,
                Some(1.0)
            );
        } else {
            assert!(docs
                .iter()
                .all(|(_, _, d)| !d["message"].as_str().unwrap().contains("HUGE")));
            assert_eq!(
                sh.metric("vigil_log_shipper_lines_dropped_total").await,
                Some(1.0)
            );
        }
        assert_eq!(es.doc_count(), want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_and_wrong_credentials_are_retried_not_dropped() {
    // "elastic:changeme" in base64.
    let es = EsServer::start(Options {
        authorization: Some("Basic ZWxhc3RpYzpjaGFuZ2VtZQ==".into()),
        ..Default::default()
    })
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let c = container_dir(&root, "ns", "p", "u", "c");
    append(
        &c.join("0.log"),
        &cri_line(1, "stdout", "F", "authenticated"),
    );
    let write_cfg = |name: &str, pass: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, format!("sink: {{elasticsearch: {{url: '{}', username: elastic, password: {pass}, backoff_max: 200ms}}}}\n", es.url())).unwrap();
        p
    };
    // Wrong password: 401 is retried (a configuration problem must not drop data) and nothing is dead-lettered.
    let bad = write_cfg("bad.yaml", "wrong");
    let data = tmp.path().join("data");
    let mut sh = Shipper::start(&root, &data, &["--config", bad.to_str().unwrap()]);
    wait_for("rejected attempts", T, || {
        (es.stats().rejected_requests >= 2).then_some(())
    })
    .await;
    assert_eq!(es.doc_count(), 0);
    assert_eq!(
        sh.metric("vigil_log_shipper_records_dead_lettered_total")
            .await,
        Some(0.0)
    );
    assert!(sh.terminate().success());
    let good = write_cfg("good.yaml", "changeme");
    let _sh = Shipper::start(&root, &data, &["--config", good.to_str().unwrap()]);
    wait_for("the record", T, || (es.doc_count() >= 1).then_some(())).await;
    assert_eq!(messages(&es), vec!["authenticated"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_request_404_405_415_are_retried_not_dead_lettered() {
    let es = EsServer::start(Options::default()).await;
    es.set_whole_request_status(Some(404));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let c = container_dir(&root, "ns", "p", "u", "c");
    let mut data = String::new();
    for i in 0..50 {
        data.push_str(&cri_line(1_000 + i, "stdout", "F", &format!("held {i}")));
    }
    append(&c.join("0.log"), &data);
    let cfg = tmp.path().join("es.yaml");
    std::fs::write(
        &cfg,
        format!(
            "sink: {{elasticsearch: {{url: '{}', backoff_initial: 20ms, backoff_max: 100ms}}}}\n",
            es.url()
        ),
    )
    .unwrap();
    let data_dir = tmp.path().join("data");
    let sh = Shipper::start(&root, &data_dir, &["--config", cfg.to_str().unwrap()]);
    // A wrong path prefix (404), a refused method (405) or content type (415) is a configuration fault: the
    // records are held and retried, nothing is dead-lettered and the error is loud.
    let mut seen = 0;
    for code in [404u16, 405, 415] {
        es.set_whole_request_status(Some(code));
        seen += 2;
        wait_for("rejected attempts", T, || {
            (es.stats().rejected_requests >= seen).then_some(())
        })
        .await;
        seen = es.stats().rejected_requests;
        assert_eq!(es.doc_count(), 0);
        assert_eq!(
            sh.metric("vigil_log_shipper_records_dead_lettered_total")
                .await,
            Some(0.0)
        );
    }
    assert!(!data_dir.join("dead-letter.ndjson").exists());
    wait_for("a loud error in the log", T, || {
        sh.stderr()
            .contains("bulk request refused as a whole")
            .then_some(())
    })
    .await;
    es.set_whole_request_status(None);
    wait_for("50 documents", T, || (es.doc_count() >= 50).then_some(())).await;
    let mut msgs = messages(&es);
    msgs.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("held {i}")).collect();
    want.sort();
    assert_eq!(msgs, want);
    assert_eq!(
        sh.metric("vigil_log_shipper_records_dead_lettered_total")
            .await,
        Some(0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_request_400_splits_down_and_dead_letters_only_the_offending_record() {
    let es = EsServer::start(Options::default()).await;
    es.set_request_error_marker(true);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let c = container_dir(&root, "ns", "p", "u", "c");
    let data = lines_with_one_marked(5_000, 40, 23, "REQUEST-ERROR");
    // One write, so the 40 records travel in one batch and the 400 hits all of them.
    append(&c.join("0.log"), &data);
    let data_dir = tmp.path().join("data");
    let sh = Shipper::start(&root, &data_dir, &["--sink", &format!("es:{}", es.url())]);
    wait_for("39 documents", T, || (es.doc_count() >= 39).then_some(())).await;
    let dl_path = data_dir.join("dead-letter.ndjson");
    let dl = wait_for("dead-letter file", T, || {
        std::fs::read_to_string(&dl_path)
            .ok()
            .filter(|s| !s.is_empty())
    })
    .await;
    assert_eq!(dl.lines().count(), 1, "only the offending record: {dl}");
    let rec: Value = serde_json::from_str(dl.lines().next().unwrap()).unwrap();
    assert_eq!(rec["status"], 400);
    assert_eq!(rec["document"]["message"], "this one has a REQUEST-ERROR");
    assert!(rec["reason"].as_str().unwrap().contains("REQUEST-ERROR"));
    let mut msgs = messages(&es);
    msgs.sort();
    let mut want: Vec<String> = (0..40)
        .filter(|&i| i != 23)
        .map(|i| format!("line {i}"))
        .collect();
    want.sort();
    assert_eq!(msgs, want);
    assert!(es.stats().rejected_requests >= 2, "the batch was split");
    assert_eq!(
        sh.metric("vigil_log_shipper_records_dead_lettered_total")
            .await,
        Some(1.0)
    );
    assert!(
        sh.metric("vigil_log_shipper_bulk_splits_total")
            .await
            .unwrap()
            >= 1.0
    );
}

/// A config file: the test server as sink, checkpoints every `checkpoint_ms`, and a multiline rule for namespace
/// `java` (records start with a date) flushed after `flush_ms`.
fn java_multiline_config(
    dir: &std::path::Path,
    es: &EsServer,
    checkpoint_ms: u64,
    flush_ms: u64,
) -> std::path::PathBuf {
    let cfg = dir.join("cfg.yaml");
    std::fs::write(
        &cfg,
        format!(
            "sink: {{elasticsearch: {{url: '{}', batch_timeout: 100ms}}}}\ncheckpoint_interval: {checkpoint_ms}ms\nparse:\n  multiline:\n    - {{namespace: java, start_pattern: '^\\d{{4}}-\\d\\d-\\d\\d ', flush_timeout: {flush_ms}ms}}\n",
            es.url()
        ),
    )
    .unwrap();
    cfg
}

/// Multiline across a crash: while a stack trace is still being joined its first line bounds the checkpoint, so a
/// SIGKILL in the middle of the trace makes the restart read the whole trace again and ship it as one record, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_in_the_middle_of_a_stack_trace_reships_the_whole_trace_once() {
    let es = EsServer::start(Options::default()).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let c = container_dir(&root, "java", "app-0", "u", "jvm");
    let log = c.join("0.log");
    let frames = |class: &str, file: &str, range: std::ops::Range<u32>| {
        range
            .map(|i| format!("\tat {class}{i}({file}.java:{i})"))
            .collect::<Vec<_>>()
    };
    let mut first = stdout_lines(1, ["2026-11-22 10:00:00 ERROR first"]);
    first.push_str(&stdout_lines(2, frames("a.b", "A", 0..3)));
    let trace_start = first.len() as u64;
    first.push_str(&stdout_lines(10, ["2026-11-22 10:00:01 ERROR second"]));
    first.push_str(&stdout_lines(11, frames("c.d", "B", 0..2)));
    append(&log, &first);
    let cfg = java_multiline_config(tmp.path(), &es, 100, 60_000);
    let data = tmp.path().join("data");
    let mut sh = Shipper::start(&root, &data, &["--config", cfg.to_str().unwrap()]);
    wait_for("the first trace", T, || (es.doc_count() >= 1).then_some(())).await;
    // The second trace is pending: the checkpoint reaches its first line and never passes it.
    let offset = || -> Option<u64> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.join("checkpoints.json")).ok()?).ok()?;
        v["files"][0]["offset"].as_u64()
    };
    wait_for("the checkpoint at the pending trace", T, || {
        (offset() == Some(trace_start)).then_some(())
    })
    .await;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            offset(),
            Some(trace_start),
            "checkpoint moved past a pending trace"
        );
    }
    sh.kill();
    // The trace goes on while the shipper is down, then the next record starts.
    let mut rest = stdout_lines(13, frames("c.d", "B", 2..4));
    rest.push_str(&stdout_lines(20, ["2026-11-22 10:00:02 INFO after"]));
    append(&log, &rest);
    let sh = Shipper::start(&root, &data, &["--config", cfg.to_str().unwrap()]);
    wait_for("the second trace", T, || {
        (es.doc_count() >= 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let msgs = messages(&es);
    assert_eq!(
        msgs,
        vec![
            "2026-11-22 10:00:00 ERROR first\n\tat a.b0(A.java:0)\n\tat a.b1(A.java:1)\n\tat a.b2(A.java:2)".to_string(),
            "2026-11-22 10:00:01 ERROR second\n\tat c.d0(B.java:0)\n\tat c.d1(B.java:1)\n\tat c.d2(B.java:2)\n\tat c.d3(B.java:3)".to_string(),
        ],
        "{}",
        sh.stderr()
    );
    let docs = es.all_docs();
    assert_eq!(docs[1].2["log"]["offset"], trace_start);
}

/// A trace flushed by its timeout and stored, then a crash before the checkpoint was written, then more of the trace:
/// the restart joins the trace further from the same start. Its id includes where it ends, so the longer join is
/// stored too (no 409 that would drop the added lines): nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_longer_join_after_a_crash_is_not_dropped_as_a_duplicate() {
    let es = EsServer::start(Options::default()).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let c = container_dir(&root, "java", "app-0", "u", "jvm");
    let log = c.join("0.log");
    let first = stdout_lines(1, ["2026-11-22 10:00:00 ERROR boom", "\tat a.b(A.java:1)"]);
    append(&log, &first);
    // Checkpoints are (almost) never written, so the SIGKILL leaves the file to be read again from 0.
    let cfg = java_multiline_config(tmp.path(), &es, 600_000, 300);
    let data = tmp.path().join("data");
    let mut sh = Shipper::start(&root, &data, &["--config", cfg.to_str().unwrap()]);
    wait_for("the trace flushed by its timeout", T, || {
        (es.doc_count() >= 1).then_some(())
    })
    .await;
    sh.kill();
    let rest = stdout_lines(3, ["\tat c.d(B.java:2)", "2026-11-22 10:00:01 INFO next"]);
    append(&log, &rest);
    let sh = Shipper::start(&root, &data, &["--config", cfg.to_str().unwrap()]);
    wait_for("the longer join", T, || (es.doc_count() >= 2).then_some(())).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let msgs = messages(&es);
    assert!(
        msgs.contains(
            &"2026-11-22 10:00:00 ERROR boom\n\tat a.b(A.java:1)\n\tat c.d(B.java:2)".to_string()
        ),
        "{msgs:?}\n{}",
        sh.stderr()
    );
    assert!(msgs.contains(&"2026-11-22 10:00:00 ERROR boom\n\tat a.b(A.java:1)".to_string()));
}
