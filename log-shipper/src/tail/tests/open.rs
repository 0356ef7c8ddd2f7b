//! Tests of opening discovered files while their path changes under the reader.

use super::*;

/// The swap discovery's own check cannot see: a `0.log` symlink into the root when the directory is listed, pointed
/// at a host file before the reader opens it. The opened file is checked, so the host file is refused (logged once,
/// counted) and never read; the link is read again once it points back inside.
#[test]
fn a_symlink_swapped_between_discovery_and_open_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("pods");
    let dir = root.join("ns_p_u/c");
    let keep = root.join("ns_p_u/keep");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&keep).unwrap();
    // Inside the root but not matched by the include globs: reachable only through the link.
    let inside = keep.join("inside.txt");
    let host = tmp.path().join("host-secret");
    append(&inside, &line(1, "inside 1"));
    append(&host, &line(2, "SECRET host line"));
    let link = dir.join("0.log");
    std::os::unix::fs::symlink(&host, &link).unwrap();
    let metrics = Arc::new(Metrics::default());
    let cfg = reader_config(&root, &tmp.path().join("data"), 1 << 30, Vec::new());
    let mut reader = Reader::new(cfg, metrics.clone()).unwrap();
    let shipped = |reader: &Reader| String::from_utf8_lossy(&reader.batch.buf).into_owned();
    // Discovery's check: a link pointing out of the root is not listed at all.
    reader.scan();
    assert!(reader.files.is_empty());
    // Listed while it points inside, swapped before the open: refused.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&inside, &link).unwrap();
    reader
        .cfg
        .discovery
        .swap_after_scan
        .lock()
        .unwrap()
        .push((link.clone(), host.clone()));
    reader.scan();
    reader.poll_all();
    assert!(reader.files.is_empty(), "the host file is tracked");
    assert!(!shipped(&reader).contains("SECRET"));
    assert_eq!(metrics.files_refused.get(), 1);
    // The same swap again: counted again (logged once).
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&inside, &link).unwrap();
    reader
        .cfg
        .discovery
        .swap_after_scan
        .lock()
        .unwrap()
        .push((link.clone(), host.clone()));
    reader.scan();
    assert_eq!(metrics.files_refused.get(), 2);
    assert_eq!(reader.refused.len(), 1);
    // Pointing inside again: read.
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&inside, &link).unwrap();
    reader.scan();
    reader.poll_all();
    let out = shipped(&reader);
    assert!(out.contains("inside 1") && !out.contains("SECRET"), "{out}");
}
