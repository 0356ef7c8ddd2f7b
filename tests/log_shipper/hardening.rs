//! Regression tests for issue 19 items 9-11 (log shipper): the file sink on a full disk, the file sink across
//! restarts without saved checkpoints and SIGKILL, impossible timestamps; plus bounded property tests of the CRI and
//! docker line parsers. The full-disk test mounts a real tmpfs (needs root, as the test environment is) and fails,
//! never skips, when it cannot.

use crate::support::es_bulk;
use crate::support::shipper::*;
use proptest::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use vigil_log_shipper::parse::{
    check_time, cri, docker, FileParser, OverLong, ParserConfig, TimeCache,
};

const T: Duration = Duration::from_secs(60);

/// A small tmpfs mounted for the test; unmounted on every path.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mounting a tmpfs at {} failed ({st}): this test needs root to build a real full filesystem",
            dir.display()
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Writes `path` until the filesystem is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![b'x'; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = f.sync_all();
}

/// The documents in the file sink's output, up to its last complete line: the sink may be
/// mid-write while a test polls, and a killed shipper's half line is the next one's to repair (a
/// half line left in the middle still fails to parse).
fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text[..text.rfind('\n').map_or(0, |i| i + 1)]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("output line {l:?}: {e}")))
        .collect()
}

fn messages(path: &Path) -> Vec<String> {
    docs(path)
        .iter()
        .map(|d| d["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn healthz(sh: &Shipper) -> Option<(u16, String)> {
    let r = reqwest::get(format!("http://127.0.0.1:{}/healthz", sh.port))
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

/// Asserts every line `<prefix> <n>` for n in 0..count appears exactly once, in order.
fn assert_exactly_once(msgs: &[String], prefix: &str, count: usize) {
    let mine: Vec<&String> = msgs.iter().filter(|m| m.starts_with(prefix)).collect();
    let want: Vec<String> = (0..count).map(|i| format!("{prefix} {i}")).collect();
    if mine.len() != count || mine.iter().zip(&want).any(|(a, b)| *a != b) {
        let mut seen = std::collections::HashMap::new();
        for m in &mine {
            *seen.entry(m.as_str()).or_insert(0) += 1;
        }
        let dups = seen.values().filter(|&&n| n > 1).count();
        let missing = want
            .iter()
            .filter(|w| !seen.contains_key(w.as_str()))
            .count();
        panic!(
            "{prefix}: {} lines for {count}: {dups} duplicated, {missing} missing",
            mine.len()
        );
    }
}

/// Issue 19 item 9: on a full disk the file sink logged "stopping the sink" and never resumed (0 of 300 lines after
/// space was freed) while /healthz said 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_on_a_full_disk_retries_reports_unhealthy_and_resumes_without_loss_or_duplicates()
{
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let _fs = Tmpfs::mount(&out_dir, "256k");
    // 8 KiB left free: the first batch (~30 KB) is written in part before ENOSPC, and must be taken back.
    std::fs::write(out_dir.join("gap"), vec![b'g'; 8192]).unwrap();
    fill(&out_dir.join("filler"));
    std::fs::remove_file(out_dir.join("gap")).unwrap();
    let out = out_dir.join("logs.ndjson");
    let root = tmp.path().join("pods");
    let c = container_dir(&root, "shop", "web-0", "uid-1", "app");
    let lines: Vec<String> = (0..300)
        .map(|i| format!("full disk line {i} {}", "x".repeat(60)))
        .collect();
    append(&c.join("0.log"), &stdout_lines(1_000, &lines));
    let sh = Shipper::start(
        &root,
        &tmp.path().join("data"),
        &["--sink", &format!("file:{}", out.display())],
    );
    let sh = &sh;
    let (status, body) = {
        let mut last = None;
        for _ in 0..600 {
            if let Some((s, b)) = healthz(sh).await {
                if s != 200 {
                    last = Some((s, b));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        last.unwrap_or_else(|| panic!("/healthz never left 200 on a full disk:\n{}", sh.stderr()))
    };
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("file sink")
            && body.contains(&out.display().to_string())
            && body.contains("No space left"),
        "{body}"
    );
    // The part of a batch that fitted is taken off the output again after each failed attempt.
    wait_for("the output cut back to empty", T, || {
        (std::fs::metadata(&out).map(|m| m.len()).unwrap_or(1) == 0).then_some(())
    })
    .await;
    assert!(
        sh.metric("vigil_log_shipper_records_retried_total")
            .await
            .unwrap()
            > 0.0
    );
    assert!(
        sh.stderr().contains("retrying with backoff"),
        "{}",
        sh.stderr()
    );

    std::fs::remove_file(out_dir.join("filler")).unwrap();
    wait_for("300 lines after space was freed", T, || {
        (messages(&out).len() >= 300).then_some(())
    })
    .await;
    let prefix = "full disk line";
    let msgs: Vec<String> = messages(&out)
        .into_iter()
        .map(|m| m.split(" x").next().unwrap().to_string())
        .collect();
    assert_exactly_once(&msgs, prefix, 300);
    let mut healthy = false;
    for _ in 0..100 {
        if healthz(sh).await == Some((200, "ok\n".to_string())) {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        healthy,
        "/healthz did not return to 200: {:?}",
        healthz(sh).await
    );
    assert!(
        sh.stderr().contains("file sink writes again"),
        "{}",
        sh.stderr()
    );
}

/// Issue 19 item 9 ("health must say what is wrong"), for the Elasticsearch sink: a refused bulk request holds the
/// records and retries; meanwhile /healthz names the sink, its URL and the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_sink_refused_requests_make_healthz_name_the_sink_until_it_writes_again() {
    let es = es_bulk::EsServer::start(es_bulk::Options::default()).await;
    es.set_whole_request_status(Some(401));
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let c = container_dir(&root, "shop", "web-0", "uid-1", "app");
    append(
        &c.join("0.log"),
        &stdout_lines(1_000, (0..50).map(|i| format!("es line {i}"))),
    );
    let sh = Shipper::start(
        &root,
        &tmp.path().join("data"),
        &["--sink", &format!("es:{}", es.url())],
    );
    let mut seen = None;
    for _ in 0..600 {
        if let Some((503, body)) = healthz(&sh).await {
            seen = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = seen.unwrap_or_else(|| {
        panic!(
            "/healthz stayed 200 while requests were refused:\n{}",
            sh.stderr()
        )
    });
    assert!(
        body.contains("elasticsearch sink") && body.contains(&es.url()) && body.contains("401"),
        "{body}"
    );
    es.set_whole_request_status(None);
    wait_for("50 documents", T, || (es.doc_count() >= 50).then_some(())).await;
    let mut healthy = false;
    for _ in 0..200 {
        if healthz(&sh).await == Some((200, "ok\n".to_string())) {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(healthy, "{:?}", healthz(&sh).await);
}

/// Issue 19 item 10: with checkpoints not saved, a graceful restart re-shipped 200 of 200 lines into the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_graceful_restart_without_saved_checkpoints_writes_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let data = tmp.path().join("data");
    let out = tmp.path().join("out/logs.ndjson");
    let sink = format!("file:{}", out.display());
    let c = container_dir(&root, "shop", "web-0", "uid-1", "app");
    append(
        &c.join("0.log"),
        &stdout_lines(1_000, (0..200).map(|i| format!("restart line {i}"))),
    );
    let mut sh = Shipper::start(&root, &data, &["--sink", &sink]);
    wait_for("200 lines", T, || {
        (messages(&out).len() >= 200).then_some(())
    })
    .await;
    assert!(sh.terminate().success(), "{}", sh.stderr());
    // As if the checkpoints could not be saved: the restart reads the file again from the start.
    std::fs::remove_file(data.join("checkpoints.json")).unwrap();
    let sh = Shipper::start(&root, &data, &["--sink", &sink]);
    let dup = "vigil_log_shipper_records_duplicate_total";
    for _ in 0..600 {
        if sh.metric(dup).await == Some(200.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sh.metric(dup).await, Some(200.0), "{}", sh.stderr());
    append(&c.join("0.log"), &stdout_lines(2_000, ["restart line 200"]));
    wait_for("the new line", T, || {
        (messages(&out).len() >= 201).then_some(())
    })
    .await;
    assert_exactly_once(&messages(&out), "restart line", 201);
}

/// Issue 19 item 10: after SIGKILL one run had 1,301 duplicates in the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sink_after_sigkill_mid_write_has_no_duplicates_or_losses() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let data = tmp.path().join("data");
    let out = tmp.path().join("out/logs.ndjson");
    let sink = format!("file:{}", out.display());
    let a = container_dir(&root, "shop", "web-0", "uid-1", "app");
    let b = container_dir(&root, "shop", "api-0", "uid-2", "app");
    let per_round = 2_000;
    let rounds = 4;
    for round in 0..rounds {
        let mut sh = Shipper::start(&root, &data, &["--sink", &sink]);
        let before = messages(&out).len();
        let first = round * per_round;
        // Interleaved stdout/stderr and partial lines in one file, plain lines in another.
        let mut text_a = String::new();
        for i in first..first + per_round {
            let (stream, n) = if i % 3 == 0 {
                ("stderr", i)
            } else {
                ("stdout", i)
            };
            if i % 7 == 0 {
                text_a.push_str(&cri_line(
                    1_000 + n as u64,
                    stream,
                    "P",
                    &format!("a line {i} "),
                ));
                text_a.push_str(&cri_line(1_000 + n as u64, stream, "F", "(joined)"));
            } else {
                text_a.push_str(&cri_line(
                    1_000 + n as u64,
                    stream,
                    "F",
                    &format!("a line {i}"),
                ));
            }
        }
        append(&a.join("0.log"), &text_a);
        append(
            &b.join("0.log"),
            &stdout_lines(
                1_000 + first as u64,
                (first..first + per_round).map(|i| format!("b line {i}")),
            ),
        );
        if round + 1 < rounds {
            // Kill as soon as this round's lines start arriving: mid-batch, checkpoints behind.
            wait_for("some output", T, || {
                (messages(&out).len() > before).then_some(())
            })
            .await;
            sh.kill();
            if round % 2 == 0 {
                // And the harshest case: no checkpoint at all, everything is read again.
                let _ = std::fs::remove_file(data.join("checkpoints.json"));
            }
        } else {
            let total = rounds * per_round * 2;
            wait_for("every line", T, || {
                (messages(&out).len() >= total).then_some(())
            })
            .await;
            // Re-sent records were seen and skipped (without the marks they would have been written again).
            assert!(
                sh.metric("vigil_log_shipper_records_duplicate_total")
                    .await
                    .unwrap()
                    > 0.0,
                "{}",
                sh.stderr()
            );
        }
    }
    let msgs: Vec<String> = messages(&out)
        .into_iter()
        .map(|m| m.trim_end_matches(" (joined)").to_string())
        .collect();
    assert_exactly_once(&msgs, "a line", rounds * per_round);
    assert_exactly_once(&msgs, "b line", rounds * per_round);
}

/// Issue 19 item 11: CRI `2024-13-45T99:99:99Z` and docker `"time":"garbage"` went into `@timestamp` untouched
/// (Elasticsearch rejects such documents).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_timestamps_get_the_read_time_and_parse_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let out = tmp.path().join("out/logs.ndjson");
    let cri_dir = container_dir(&root, "shop", "web-0", "uid-1", "app");
    let docker_dir = container_dir(&root, "shop", "api-0", "uid-2", "app");
    append(
        &cri_dir.join("0.log"),
        "2016-10-06T00:17:09.669794202Z stdout F good cri\n2024-13-45T99:99:99Z stderr F bad cri\n",
    );
    append(
        &docker_dir.join("0.log"),
        "{\"log\":\"good docker\\n\",\"stream\":\"stdout\",\"time\":\"2016-10-20T18:39:20Z\"}\n\
         {\"log\":\"bad docker\\n\",\"stream\":\"stdout\",\"time\":\"garbage\"}\n",
    );
    let started = chrono::Utc::now();
    let sh = Shipper::start(
        &root,
        &tmp.path().join("data"),
        &["--sink", &format!("file:{}", out.display())],
    );
    wait_for("4 documents", T, || (docs(&out).len() >= 4).then_some(())).await;
    let all = docs(&out);
    let by = |m: &str| {
        all.iter()
            .find(|d| d["message"] == m)
            .unwrap_or_else(|| panic!("no {m}: {all:?}"))
            .clone()
    };
    assert_eq!(
        by("good cri")["@timestamp"],
        "2016-10-06T00:17:09.669794202Z"
    );
    assert_eq!(by("good docker")["@timestamp"], "2016-10-20T18:39:20Z");
    assert!(by("good cri").get("parse_error").is_none());
    for (msg, stream, reason) in [
        (
            "bad cri",
            "stderr",
            "cri: invalid timestamp (read time used)",
        ),
        (
            "bad docker",
            "stdout",
            "docker: invalid \"time\" (read time used)",
        ),
    ] {
        let d = by(msg);
        assert_eq!(d["parse_error"], reason, "{d}");
        assert_eq!(d["stream"], stream, "{d}");
        let ts = d["@timestamp"].as_str().unwrap();
        let t = chrono::DateTime::parse_from_rfc3339(ts).unwrap_or_else(|e| panic!("{ts}: {e}"));
        let t = t.with_timezone(&chrono::Utc);
        assert!(
            t >= started - chrono::Duration::seconds(1) && t <= chrono::Utc::now(),
            "{msg}: {ts} is not the read time"
        );
    }
    assert_eq!(
        sh.metric("vigil_log_shipper_parse_errors_total").await,
        Some(2.0)
    );
}

fn prop_config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

/// A parsed line's time is either a checked instant or empty with the reason set.
fn time_is_checked_or_flagged(time: &str, err: Option<&str>) -> Result<(), TestCaseError> {
    if time.is_empty() {
        prop_assert!(err.is_some());
    } else {
        prop_assert!(err.is_none());
        let checked = check_time(time);
        prop_assert_eq!(checked.as_deref(), Some(time));
    }
    Ok(())
}

proptest! {
    #![proptest_config(prop_config())]

    /// CRI: any bytes give a line or an error naming the format.
    #[test]
    fn cri_lines_of_any_bytes_never_panic(line in prop::collection::vec(any::<u8>(), 0..160)) {
        match cri::parse(&line, &mut TimeCache::default()) {
            Ok(p) => time_is_checked_or_flagged(&p.time, p.time_error)?,
            Err(e) => prop_assert!(e.starts_with("cri: "), "{}", e),
        }
    }

    /// CRI: timestamp-shaped first fields with any digits parse, the time checked or flagged.
    #[test]
    fn cri_lines_with_any_timestamp_digits_parse(
        ts in "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?([Zz]|[+-][0-9]{2}:[0-9]{2})",
        stream in "stdout|stderr", tag in "[PF](:[a-z]{0,3})?", msg in "\\PC{0,40}",
    ) {
        let line = format!("{ts} {stream} {tag} {msg}");
        let p = cri::parse(line.as_bytes(), &mut TimeCache::default()).unwrap();
        time_is_checked_or_flagged(&p.time, p.time_error)?;
        prop_assert_eq!(p.message.as_ref(), msg.as_bytes());
        prop_assert_eq!(p.partial, tag.starts_with('P'));
    }

    /// Docker: any bytes give a line or an error naming the format.
    #[test]
    fn docker_lines_of_any_bytes_never_panic(line in prop::collection::vec(any::<u8>(), 0..160)) {
        match docker::parse(&line, &mut TimeCache::default()) {
            Ok(p) => time_is_checked_or_flagged(&p.time, p.time_error)?,
            Err(e) => prop_assert!(e.starts_with("docker: "), "{}", e),
        }
    }

    /// Docker: well-formed JSON with any `time` string (or none) keeps the record; the time checked or flagged.
    #[test]
    fn docker_lines_with_any_time_keep_the_record(
        log in "\\PC{0,30}\n?", stream in "stdout|stderr", time in proptest::option::of("\\PC{0,40}"),
    ) {
        let mut obj = serde_json::json!({"log": log, "stream": stream});
        if let Some(t) = &time {
            obj["time"] = Value::from(t.as_str());
        }
        let line = serde_json::to_vec(&obj).unwrap();
        let p = docker::parse(&line, &mut TimeCache::default()).unwrap();
        time_is_checked_or_flagged(&p.time, p.time_error)?;
        prop_assert_eq!(p.partial, !log.ends_with('\n'));
    }

    /// One file's time cache gives the answer of the full check for any sequence of nearby times.
    #[test]
    fn the_time_cache_agrees_with_the_full_check(
        times in prop::collection::vec(
            "2016-10-06[Tt ]00:17:(09|10|60|9)(\\.[0-9a]{0,11})?([Zz]|[+-]1[89]:[0-9]{2})?", 1..20)
    ) {
        let mut cache = TimeCache::default();
        for t in &times {
            prop_assert_eq!(cache.check(t), check_time(t), "{}", t);
        }
    }

    /// A whole file of mixed, broken and partial lines: no panic, entries within the input, times checked or flagged.
    #[test]
    fn file_parser_of_mixed_lines_never_panics(
        lines in prop::collection::vec(prop_oneof![
            prop::collection::vec(any::<u8>(), 0..60),
            ("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z", "stdout|stderr|x", "[PFX]", "[a-z ]{0,20}")
                .prop_map(|(t, s, g, m)| format!("{t} {s} {g} {m}").into_bytes()),
        ], 0..40),
        max in 1usize..64,
    ) {
        let mut p = FileParser::new(ParserConfig { max_bytes: max, over_long: OverLong::Truncate, multiline: None });
        let mut out = Vec::new();
        let mut pos = 0u64;
        for l in &lines {
            let l: Vec<u8> = l.iter().copied().filter(|&b| b != b'\n').collect();
            let end = pos + l.len() as u64 + 1;
            p.push_line(&l, pos, end, false, std::time::Instant::now(), &mut out);
            pos = end;
        }
        p.flush_all(&mut out);
        for e in &out {
            prop_assert!(e.start < e.end && e.end <= pos);
            prop_assert!(e.message.len() <= max);
            if e.time.is_empty() {
                prop_assert!(e.parse_error.is_some());
            } else {
                let checked = check_time(&e.time);
                prop_assert_eq!(checked.as_deref(), Some(e.time.as_str()));
            }
        }
    }
}
