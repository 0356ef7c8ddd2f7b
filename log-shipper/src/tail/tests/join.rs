//! Tests of records cut by a rotation: CRI partial lines and multiline records joined across the file boundary (plain
//! and compressed), exactly once across restarts, and a partial line that is never continued.

use super::*;

#[path = "../../../tests/support/rotation.rs"]
mod rotation;

use rotation::cri_record_across_rotation;

const STAMP: &str = "0.log.20261122-100000";

/// The kubelet's rotation: `0.log` renamed to `0.log.<stamp>` (the reader has had time to read it first).
fn rotate(dir: &std::path::Path) -> std::path::PathBuf {
    std::thread::sleep(Duration::from_millis(200));
    let rotated = dir.join(STAMP);
    std::fs::rename(dir.join("0.log"), &rotated).unwrap();
    rotated
}

fn container(
    tmp: &tempfile::TempDir,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let root = tmp.path().join("pods");
    let dir = root.join("ns_p_u/c");
    std::fs::create_dir_all(&dir).unwrap();
    (root, dir, tmp.path().join("data"))
}

fn generation_of(doc: &serde_json::Value) -> String {
    doc["_id"]
        .as_str()
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .to_string()
}

impl Running {
    /// Collects the documents of `n` records without acknowledging them (a shipper killed before the sink answered).
    fn take_unacked(&mut self, n: usize) -> Vec<serde_json::Value> {
        self.collect_docs(n, false)
    }

    /// Stops without acknowledging anything more: the checkpoints keep only what was acknowledged before.
    fn kill(self) {
        let Running {
            rx,
            ack,
            stop,
            mut handle,
            ..
        } = self;
        stop.send(true).unwrap();
        drop(ack);
        drop(rx);
        handle.take().unwrap().join().unwrap().unwrap();
    }
}

#[test]
fn a_partial_line_cut_by_a_rotation_is_one_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, dir, data) = container(&tmp);
    let log = dir.join("0.log");
    append(&log, &line(1, "a1"));
    let mut r = start(&root, &data);
    let first = r.take_docs(1);
    let mut rotated = None;
    let (p_len, f_len) = cri_record_across_rotation(
        &log,
        36_000_000_000_002,
        "stdout",
        "the first half|and the second half",
        15,
        || rotated = Some(rotate(&dir)),
    );
    append(&log, &line(3, "b1"));
    let docs = r.take_docs(2);
    assert_eq!(
        messages(&docs),
        vec!["the first half|and the second half", "b1"]
    );
    // The joined record is the rotated file's: its generation and the offset of the `P` line.
    assert_eq!(generation_of(&docs[0]), generation_of(&first[0]));
    assert_eq!(docs[0]["log"]["offset"], line(1, "a1").len());
    assert_eq!(
        docs[0]["_id"],
        format!("{}-{:x}", generation_of(&first[0]), line(1, "a1").len())
    );
    assert_eq!(docs[1]["log"]["offset"], f_len);
    r.quiet(Duration::from_millis(300));
    r.stop();
    // Both files are committed to their ends once the joined record was acknowledged.
    let rotated = rotated.unwrap();
    let cp = Store::new(&data).load().unwrap();
    let offset_of = |p: &std::path::Path| {
        cp.values()
            .find(|c| c.path == p.to_string_lossy())
            .map(|c| c.offset)
    };
    assert_eq!(
        offset_of(&rotated),
        Some(line(1, "a1").len() as u64 + p_len)
    );
    assert_eq!(
        offset_of(&log),
        Some(std::fs::metadata(&log).unwrap().len())
    );
}

#[test]
fn a_partial_line_at_the_end_of_a_file_first_seen_compressed_is_joined() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, dir, data) = container(&tmp);
    let log = dir.join("0.log");
    // While the shipper is down: the record is cut by a rotation and the rotated file compressed before it is read.
    append(&log, &line(1, "a1"));
    let mut gz = None;
    cri_record_across_rotation(&log, 36_000_000_000_002, "stderr", "head+tail", 5, || {
        gz = Some(gzip_file(&rotate(&dir)))
    });
    append(&log, &line(3, "b1"));
    let mut r = start(&root, &data);
    let docs = r.take_docs(3);
    assert_eq!(messages(&docs), vec!["a1", "head+tail", "b1"]);
    assert_eq!(docs[1]["stream"], "stderr");
    assert_eq!(generation_of(&docs[1]), generation_of(&docs[0]));
    assert_eq!(docs[1]["log"]["offset"], line(1, "a1").len());
    r.quiet(Duration::from_millis(300));
    r.stop();
    // Read to its end and committed there: a restart reads nothing again.
    let cp = Store::new(&data).load().unwrap();
    let p = cp
        .values()
        .find(|p| p.compressed)
        .expect("compressed position");
    assert_eq!(
        (p.offset, p.path.as_str()),
        (p.size, &*gz.unwrap().to_string_lossy())
    );
    let mut r = start(&root, &data);
    r.quiet(Duration::from_millis(400));
    r.stop();
}

#[test]
fn a_multiline_record_cut_by_a_rotation_is_one_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, dir, data) = container(&tmp);
    let log = dir.join("0.log");
    let rule = multiline::Rule {
        start: regex::bytes::Regex::new(r"^\d{4}-\d\d-\d\d ").unwrap(),
        flush_timeout: Duration::from_millis(1500),
    };
    let selector = MultilineSelector {
        namespace: None,
        container: None,
        rule,
    };
    let head = line(1, "2026-11-22 10:00:00 INFO a");
    append(
        &log,
        &(head.clone()
            + &line(2, "2026-11-22 10:00:01 ERROR boom")
            + &line(3, "\tat x.y(Z.java:1)")),
    );
    let mut r = start_full(&root, &data, 1 << 30, vec![selector]);
    let first = r.take_docs(1);
    assert_eq!(messages(&first), vec!["2026-11-22 10:00:00 INFO a"]);
    rotate(&dir);
    append(
        &log,
        &(line(4, "\tat x.w(Z.java:2)") + &line(5, "2026-11-22 10:00:02 INFO after")),
    );
    let docs = r.take_docs(2);
    assert_eq!(
        messages(&docs),
        vec![
            "2026-11-22 10:00:01 ERROR boom\n\tat x.y(Z.java:1)\n\tat x.w(Z.java:2)",
            "2026-11-22 10:00:02 INFO after"
        ]
    );
    assert_eq!(generation_of(&docs[0]), generation_of(&first[0]));
    assert_eq!(docs[0]["log"]["offset"], head.len());
    assert_ne!(generation_of(&docs[1]), generation_of(&first[0]));
    r.quiet(Duration::from_millis(300));
    r.stop();
}

/// The shipper stops with the `P` line read but its record pending, and the rotation happens while it is down; a second
/// run is killed after sending the joined record but before it was acknowledged, and the rotated file is compressed
/// before the third run. Each run joins the same record under the same id; nothing is shipped after the third.
#[test]
fn a_restart_between_the_two_parts_ships_the_record_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, dir, data) = container(&tmp);
    let log = dir.join("0.log");
    append(&log, &line(1, "a1"));
    let msg = "cut by a rotation|while the shipper was down";
    let mut run1 = Some(start(&root, &data));
    let mut a1 = Vec::new();
    let mut rotated = None;
    cri_record_across_rotation(&log, 36_000_000_000_002, "stdout", msg, 17, || {
        let mut r = run1.take().unwrap();
        a1 = r.take_docs(1);
        // The `P` line is read, its record waits for the final part.
        r.quiet(Duration::from_millis(300));
        r.stop();
        rotated = Some(rotate(&dir));
    });
    append(&log, &line(3, "b1"));
    assert_eq!(messages(&a1), vec!["a1"]);
    let mut r = start(&root, &data);
    let sent = r.take_unacked(2);
    assert_eq!(messages(&sent), vec![msg, "b1"]);
    assert_eq!(
        sent[0]["_id"],
        format!("{}-{:x}", generation_of(&a1[0]), line(1, "a1").len())
    );
    r.kill();
    gzip_file(&rotated.unwrap());
    let mut r = start(&root, &data);
    let again = r.take_docs(2);
    assert_eq!(messages(&again), vec![msg, "b1"]);
    assert_eq!(
        again[0]["_id"], sent[0]["_id"],
        "the same record, the same id"
    );
    assert_eq!(again[1]["_id"], sent[1]["_id"]);
    r.quiet(Duration::from_millis(300));
    r.stop();
    let mut r = start(&root, &data);
    r.quiet(Duration::from_millis(400));
    r.stop();
}

/// A `P` line whose final part never comes (the container died mid-line; its restart writes `1.log`, which never
/// continues it) is shipped as it is once the file has been quiet for the partial timeout, not held forever.
#[test]
fn a_partial_line_never_continued_is_shipped_after_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, dir, data) = container(&tmp);
    append(
        &dir.join("0.log"),
        &(line(1, "a1") + "2026-11-22T10:00:00.000000002Z stdout P died mid-\n"),
    );
    let mut r = start(&root, &data);
    let first = r.take_docs(1);
    assert_eq!(messages(&first), vec!["a1"]);
    std::thread::sleep(Duration::from_millis(200));
    append(&dir.join("1.log"), &line(3, "restarted"));
    let t0 = Instant::now();
    let docs = r.take_docs(2);
    assert_eq!(messages(&docs), vec!["restarted", "died mid-"]);
    assert!(
        t0.elapsed() >= DORMANT_AFTER - Duration::from_millis(500),
        "shipped before the partial timeout"
    );
    assert_eq!(generation_of(&docs[1]), generation_of(&first[0]));
    r.quiet(Duration::from_millis(300));
    r.stop();
    let cp = Store::new(&data).load().unwrap();
    assert!(cp
        .values()
        .all(|p| p.offset == std::fs::metadata(&p.path).unwrap().len()));
}

/// While the record's final part has not come, the older file stays committed at the record's start and the newer
/// one at where its part begins, though records after them (another stream, even a late line in the older file) are
/// acknowledged meanwhile.
#[test]
fn both_files_stay_committed_before_a_pending_record_until_it_is_shipped() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, dir, data) = container(&tmp);
    let log = dir.join("0.log");
    append(&log, &line(1, "a1"));
    append(
        &log,
        "2026-11-22T10:00:00.000000002Z stdout P begun in the old file|\n",
    );
    let rotated = dir.join(STAMP);
    std::fs::rename(&log, &rotated).unwrap();
    append(&log, "2026-11-22T10:00:00.000000003Z stderr F err1\n");
    let mut r = start(&root, &data);
    let first = r.take_docs(2);
    assert_eq!(messages(&first), vec!["a1", "err1"]);
    append(&rotated, "2026-11-22T10:00:00.000000005Z stderr F late\n");
    assert_eq!(messages(&r.take_docs(1)), vec!["late"]);
    r.quiet(Duration::from_millis(300));
    r.stop();
    let cp = Store::new(&data).load().unwrap();
    let offset_of = |p: &std::path::Path| {
        cp.values()
            .find(|c| c.path == p.to_string_lossy())
            .map(|c| c.offset)
    };
    assert_eq!(offset_of(&rotated), Some(line(1, "a1").len() as u64));
    assert_eq!(offset_of(&log), Some(0));
    // The final part comes; a restart reads both parts again and joins them; err1 is sent again under its id.
    append(
        &log,
        "2026-11-22T10:00:00.000000004Z stdout F and ended in the new one\n",
    );
    let mut r = start(&root, &data);
    let docs = r.take_docs(3);
    assert_eq!(
        messages(&docs),
        vec![
            "late",
            "err1",
            "begun in the old file|and ended in the new one"
        ]
    );
    assert_eq!(docs[1]["_id"], first[1]["_id"]);
    assert_eq!(
        docs[2]["_id"],
        format!("{}-{:x}", generation_of(&first[0]), line(1, "a1").len())
    );
    r.quiet(Duration::from_millis(300));
    r.stop();
    let cp = Store::new(&data).load().unwrap();
    assert!(cp
        .values()
        .all(|p| p.offset == std::fs::metadata(&p.path).unwrap().len()));
}

/// A record over three files (a rotated file holding only a middle part): one record, the oldest file's id.
#[test]
fn a_record_over_three_files_is_one_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, dir, data) = container(&tmp);
    append(
        &dir.join("0.log.20261122-090000"),
        &(line(1, "a1") + "2026-11-22T10:00:00.000000002Z stdout P one|\n"),
    );
    append(
        &dir.join("0.log.20261122-100000"),
        "2026-11-22T10:00:00.000000003Z stdout P two|\n",
    );
    gzip_file(&dir.join("0.log.20261122-100000"));
    append(
        &dir.join("0.log"),
        &("2026-11-22T10:00:00.000000004Z stdout F three\n".to_string() + &line(5, "b1")),
    );
    let mut r = start(&root, &data);
    let docs = r.take_docs(3);
    assert_eq!(messages(&docs), vec!["a1", "one|two|three", "b1"]);
    assert_eq!(
        docs[1]["_id"],
        format!("{}-{:x}", generation_of(&docs[0]), line(1, "a1").len())
    );
    r.quiet(Duration::from_millis(300));
    r.stop();
    let cp = Store::new(&data).load().unwrap();
    assert_eq!(cp.len(), 3);
    assert!(cp.values().all(|p| p.offset == p.size), "{cp:?}");
}
