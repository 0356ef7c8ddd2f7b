//! The parallel block read (`blocks.rs`): any number of threads and kept files give the same
//! pass, in order, and a recycled snapshot is refilled in place.

use super::*;

/// On a tree of many blocks, passes with 1, 2 and 3 threads give the same samples, in the
/// same order (blocks are taken from both ends and put back in order).
#[test]
fn threads_share_the_blocks_and_keep_the_order() {
    let tmp = tempfile::tempdir().unwrap();
    crate::fixture::generate_v2_tree(tmp.path(), 60).unwrap();
    let run = |threads: usize| {
        let mut c = collector_at(tmp.path(), |cfg| cfg.collection_threads = threads);
        c.pass();
        let snap = c.pass();
        snap.containers
            .iter()
            .map(|s| (s.name.clone(), s.stats.clone(), s.label_str.clone()))
            .collect::<Vec<_>>()
    };
    let one = run(1);
    assert!(one.len() > 5 * READ_BLOCK, "{} cgroups", one.len());
    assert!(one.windows(2).all(|w| w[0].0 < w[1].0), "in name order");
    assert_eq!(run(2), one);
    assert_eq!(run(3), one);
}

/// A pass fills the vector of the snapshot handed back (`recycle`), and cgroups found gone
/// while it reads leave no hole: the others close up, in order. A snapshot still shared
/// is not taken.
#[test]
fn recycled_samples_are_refilled_in_place_and_close_up_over_gone_cgroups() {
    let tmp = tempfile::tempdir().unwrap();
    crate::fixture::generate_v2_tree(tmp.path(), 60).unwrap();
    let mut c = collector_at(tmp.path(), |cfg| cfg.collection_threads = 2);
    let first = c.pass();
    let names: Vec<Arc<str>> = first.containers.iter().map(|s| s.name.clone()).collect();
    let at = first.containers.as_ptr();
    c.recycle(Arc::new(first));
    // Containers in several blocks (never a pod: its containers go with it).
    let gone: Vec<&Arc<str>> = names
        .iter()
        .filter(|n| n.ends_with(".scope"))
        .step_by(9)
        .collect();
    assert!(gone.len() >= 5, "{} removed", gone.len());
    for n in &gone {
        std::fs::remove_dir_all(tmp.path().join(n.trim_start_matches('/'))).unwrap();
    }
    // No watcher and no rescan due: the reads find them gone.
    let second = c.pass();
    assert_eq!(
        second.containers.as_ptr(),
        at,
        "the recycled vector is filled"
    );
    let left: Vec<&Arc<str>> = names.iter().filter(|n| !gone.contains(n)).collect();
    let got: Vec<&Arc<str>> = second.containers.iter().map(|s| &s.name).collect();
    assert_eq!(got, left);
    assert_eq!(
        second.self_stats.errors_by_kind.get("container_gone"),
        Some(&(gone.len() as u64))
    );
    // Each sample is its own cgroup's (the slots were not shifted).
    for s in &second.containers {
        let usage = std::fs::read_to_string(
            tmp.path()
                .join(s.name.trim_start_matches('/'))
                .join("cpu.stat"),
        )
        .unwrap();
        let usec: u64 = usage.lines().next().unwrap()[11..].parse().unwrap();
        assert_eq!(
            s.stats.cpu.as_ref().unwrap().usage_ns,
            usec * 1000,
            "{}",
            s.name
        );
    }
    // A snapshot a scrape still holds is left alone.
    let second = Arc::new(second);
    let held = second.clone();
    c.recycle(second);
    let third = c.pass();
    assert_ne!(third.containers.as_ptr(), held.containers.as_ptr());
    assert_eq!(held.containers.len(), left.len());
}

/// Splitting the cgroups between worker threads and keeping files open changes nothing in
/// what a pass reports, nor in the errors it counts.
#[test]
fn threads_and_kept_files_give_the_same_pass() {
    let run = |threads: usize, keep: usize| {
        let mut cfg = (*fixture_config("cgroup-v2-systemd")).clone();
        cfg.collection_threads = threads;
        cfg.open_files_per_cgroup = keep;
        let mut c = Collector::new(Arc::new(cfg)).unwrap();
        c.pass();
        let snap = c.pass();
        let mut errors = snap.self_stats.errors_by_kind.clone();
        // The missing /proc is counted once per pass whatever the settings.
        errors.remove("proc_io");
        let v: Vec<(Arc<str>, Stats, Arc<str>)> = snap
            .containers
            .iter()
            .map(|s| (s.name.clone(), s.stats.clone(), s.label_str.clone()))
            .collect();
        (v, errors, snap.self_stats.files_read)
    };
    let base = run(1, 0);
    assert!(base.0.len() > 5);
    for (threads, keep) in [(2, 0), (2, 3), (1, 11), (3, 11)] {
        let other = run(threads, keep);
        assert_eq!(other.0, base.0, "threads {threads} keep {keep}");
        assert_eq!(other.1, base.1, "threads {threads} keep {keep}");
        assert_eq!(other.2, base.2, "threads {threads} keep {keep}");
    }
}
