//! A pass over the fixture trees (cgroup v1, v2, hybrid) read end to end, down to the rendered
//! `/metrics` and `/stats/summary`; malformed, unreadable and vanishing files are counted and
//! the pass goes on.

use super::*;

#[test]
fn v2_systemd_fixture_values() {
    let mut c = Collector::new(fixture_config("cgroup-v2-systemd")).unwrap();
    let snap = c.pass();
    let a = find(&snap, &format!("cri-containerd-{}.scope", "a".repeat(64)));
    let cpu = a.stats.cpu.as_ref().unwrap();
    // cpu.stat usage_usec 5000000 × 1000 = 5e9 ns; user 3e9; system 2e9; throttled_usec 250000 × 1000.
    assert_eq!(
        (cpu.usage_ns, cpu.user_ns, cpu.system_ns),
        (5_000_000_000, 3_000_000_000, 2_000_000_000)
    );
    assert_eq!(
        (cpu.periods, cpu.throttled_periods, cpu.throttled_ns),
        (100, 10, 250_000_000)
    );
    let m = a.stats.memory.as_ref().unwrap();
    // working set = memory.current 104857600 − inactive_file 20971520 = 83886080.
    assert_eq!(m.usage, 104_857_600);
    assert_eq!(m.working_set, 83_886_080);
    assert_eq!(
        (m.rss, m.cache, m.mapped_file, m.swap),
        (52_428_800, 41_943_040, 4_194_304, 4096)
    );
    assert_eq!(
        (m.pgfault, m.pgmajfault, m.failcnt, m.oom_kills),
        (1000, 7, Some(3), Some(1))
    );
    assert_eq!(m.max_usage, Some(125_829_120));
    // cpu.max "50000 100000"; cpu.weight 10 → 2 + 9 × 262142 / 9999 = 2 + 235 = 237.
    assert_eq!(a.stats.spec.cpu_quota_us, Some(50_000));
    assert_eq!(a.stats.spec.cpu_period_us, Some(100_000));
    assert_eq!(a.stats.spec.cpu_shares, Some(237));
    assert_eq!(a.stats.spec.memory_limit, Some(268_435_456));
    assert_eq!(a.stats.spec.memory_swap_limit, None);
    let io = a.stats.io.as_ref().unwrap();
    assert_eq!(
        (
            io[0].read_bytes,
            io[0].write_bytes,
            io[0].reads,
            io[0].writes
        ),
        (1_048_576, 2_097_152, 10, 20)
    );
    assert_eq!(a.stats.pids.as_ref().unwrap().current, 12);
    assert_eq!(a.stats.pids.as_ref().unwrap().max, Some(1024));
    let psi = a.stats.pressure.cpu.as_ref().unwrap();
    assert_eq!((psi.some.total, psi.full.total), (1_500_000, 500_000));
    // Names from the log layout: the symlink maps aaaa… to nginx; cccc… has no match and the
    // pod has two containers, so it is the sandbox.
    assert_eq!(a.identity.container, "nginx");
    assert_eq!(
        (a.identity.pod.as_str(), a.identity.namespace.as_str()),
        ("web-0", "default")
    );
    let sandbox = find(&snap, &format!("cri-containerd-{}.scope", "c".repeat(64)));
    assert!(sandbox.identity.sandbox);
    assert_eq!(sandbox.identity.container, "POD");
    // crio-conmon is not a container; the kubelet is a system container.
    assert!(!snap
        .containers
        .iter()
        .any(|c| c.name.contains("crio-conmon")));
    assert_eq!(
        *find(&snap, "/system.slice/kubelet.service").kind,
        Kind::System("kubelet")
    );
    // The pod-level cgroup is a pod.
    let pod = find(
        &snap,
        "kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice",
    );
    assert!(matches!(*pod.kind, Kind::Pod { .. }));
    assert_eq!(pod.identity.pod, "web-0");
}

#[test]
fn malformed_files_are_counted_and_the_pass_goes_on() {
    let mut c = Collector::new(fixture_config("cgroup-v2-systemd")).unwrap();
    let snap = c.pass();
    // crio-dddd…: memory.stat has a bad line, pids.current is not a number.
    let d = find(&snap, &format!("crio-{}.scope", "d".repeat(64)));
    assert!(d.stats.cpu.is_some(), "cpu still read");
    assert!(d.stats.memory.is_none());
    assert!(d.stats.pids.is_none());
    assert_eq!(
        snap.self_stats.errors_by_kind.get("parse"),
        Some(&2),
        "{:?}",
        snap.self_stats.errors_by_kind
    );
    // The missing /proc is counted, not fatal.
    assert!(
        snap.self_stats
            .errors_by_kind
            .get("proc_io")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    // Unknown pod: still reported by its cgroup id, with no names.
    assert_eq!(d.identity.pod, "");
    assert!(d
        .label_str
        .contains(&format!("name=\"{}\"", "d".repeat(64))));
}

#[test]
fn v1_cgroupfs_fixture_values() {
    let mut c = Collector::new(fixture_config("cgroup-v1-cgroupfs")).unwrap();
    let snap = c.pass();
    let b = find(&snap, &"b".repeat(64));
    let cpu = b.stats.cpu.as_ref().unwrap();
    let tick = 1_000_000_000 / rustix::param::clock_ticks_per_second();
    // cpuacct.usage 7e9 ns; cpuacct.stat user 400, system 200 ticks (× 1e9/USER_HZ).
    assert_eq!(cpu.usage_ns, 7_000_000_000);
    assert_eq!((cpu.user_ns, cpu.system_ns), (400 * tick, 200 * tick));
    assert_eq!(
        (cpu.periods, cpu.throttled_periods, cpu.throttled_ns),
        (40, 4, 123_000_000)
    );
    let m = b.stats.memory.as_ref().unwrap();
    // working set = 209715200 − total_inactive_file 52428800 = 157286400 (total_* keys, not the local ones).
    assert_eq!(m.working_set, 157_286_400);
    assert_eq!(
        (m.rss, m.cache, m.swap, m.mapped_file),
        (73_400_320, 104_857_600, 8192, 8_388_608)
    );
    assert_eq!(
        (m.pgfault, m.pgmajfault, m.failcnt, m.oom_kills),
        (2000, 9, Some(2), Some(2))
    );
    // Container scope comes from the non-total_ keys: pgfault 5, pgmajfault 6.
    assert_eq!((m.pgfault_local, m.pgmajfault_local), (5, 6));
    assert_eq!(b.stats.spec.cpu_shares, Some(512));
    assert_eq!(b.stats.spec.cpu_quota_us, Some(50_000));
    assert_eq!(b.stats.spec.memory_limit, Some(536_870_912));
    // 9223372036854771712 is v1's "unlimited".
    assert_eq!(b.stats.spec.memory_swap_limit, None);
    let io = b.stats.io.as_ref().unwrap();
    assert_eq!(
        (
            io[0].read_bytes,
            io[0].write_bytes,
            io[0].reads,
            io[0].writes
        ),
        (4096, 8192, 1, 2)
    );
    assert_eq!(b.stats.pids.as_ref().unwrap().max, None);
    // The pod-level cgroup has cpu.cfs_quota_us -1: no quota.
    let pod = find(&snap, "/pod11111111-2222-3333-4444-555555555555");
    assert_eq!(pod.stats.spec.cpu_quota_us, None);
    // No metadata for this pod: reported by cgroup id.
    assert_eq!(b.identity.pod, "");
    // This v1 fixture has every controller.
    assert_eq!(
        snap.self_stats.errors_by_kind.get("missing_controller"),
        None
    );
}

#[test]
fn hybrid_reads_v1_controllers_and_v2_pressure() {
    let mut c = Collector::new(fixture_config("cgroup-hybrid")).unwrap();
    let snap = c.pass();
    let e = find(&snap, &"e".repeat(64));
    // CPU from v1 cpuacct.usage (3e9), not the unified cpu.stat (2.999e9).
    assert_eq!(e.stats.cpu.as_ref().unwrap().usage_ns, 3_000_000_000);
    assert_eq!(e.stats.pressure.cpu.as_ref().unwrap().some.total, 7000);
    assert_eq!(e.stats.memory.as_ref().unwrap().usage, 1_048_576);
    // A cgroup only in the unified hierarchy is read through v2.
    let f = find(&snap, &"f".repeat(64));
    assert_eq!(f.stats.cpu.as_ref().unwrap().usage_ns, 1_000_000_000);
    // blkio and pids are not mounted in this fixture: counted once as missing controllers.
    assert_eq!(
        snap.self_stats.errors_by_kind.get("missing_controller"),
        Some(&2)
    );
}

#[test]
fn removed_mid_pass_is_dropped_not_fatal() {
    let node = tmp_node("cpu memory");
    let (root, dir) = (node.root.as_path(), node.dir.clone());
    std::fs::write(
        dir.join("cpu.stat"),
        "usage_usec 10\nuser_usec 5\nsystem_usec 5\n",
    )
    .unwrap();
    let mut c = collector_at(root, |_| {});
    let first = c.pass();
    assert!(first
        .containers
        .iter()
        .any(|s| &*s.name == "/kubepods/podaa/0123"));
    std::fs::remove_dir_all(&dir).unwrap();
    // No watcher and no rescan due: the read finds the directory gone.
    let second = c.pass();
    assert!(!second
        .containers
        .iter()
        .any(|s| &*s.name == "/kubepods/podaa/0123"));
    assert_eq!(
        second.self_stats.errors_by_kind.get("container_gone"),
        Some(&1)
    );
}

#[test]
fn unreadable_file_is_counted_as_io_and_the_rest_is_read() {
    let node = tmp_node("cpu memory");
    let (root, dir) = (node.root.as_path(), node.dir.clone());
    // A directory where the kernel has a file: reading it fails (EISDIR), as an unreadable file does.
    std::fs::create_dir(dir.join("cpu.stat")).unwrap();
    std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
    let mut c = collector_at(root, |_| {});
    let snap = c.pass();
    let s = snap
        .containers
        .iter()
        .find(|s| &*s.name == "/kubepods/podaa/0123")
        .unwrap();
    assert!(s.stats.cpu.is_none());
    assert_eq!(s.stats.memory.as_ref().unwrap().usage, 4096);
    assert!(
        snap.self_stats
            .errors_by_kind
            .get("io")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{:?}",
        snap.self_stats.errors_by_kind
    );
}

#[test]
fn overflowing_counter_is_a_parse_error_naming_the_file() {
    let node = tmp_node("cpu memory");
    let (root, dir) = (node.root.as_path(), node.dir.clone());
    // u64::MAX µs × 1000 does not fit u64 ns: no panic, no wrap, a parse error.
    std::fs::write(
        dir.join("cpu.stat"),
        format!("usage_usec {}\nuser_usec 1\n", u64::MAX),
    )
    .unwrap();
    std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
    let mut c = collector_at(root, |_| {});
    let mut errors = Vec::new();
    let paths = c.layout.paths_of("/kubepods/podaa/0123");
    let opts = c.opts_template;
    let err =
        match c.readers[0].read_stats(&paths, &mut cgroup::Handles::default(), opts, &mut errors) {
            Err(e) => e.to_string(),
            Ok(_) => errors
                .iter()
                .map(|e| e.to_string())
                .find(|e| e.contains("overflows"))
                .expect("an overflow error"),
        };
    assert!(
        err.contains("cpu.stat") && err.contains("usage_usec"),
        "{err}"
    );
    let snap = c.pass();
    assert!(
        snap.self_stats
            .errors_by_kind
            .get("parse")
            .copied()
            .unwrap_or(0)
            >= 1
    );
    // The pass went on: the container is still reported with its memory.
    let s = snap
        .containers
        .iter()
        .find(|s| &*s.name == "/kubepods/podaa/0123")
        .unwrap();
    assert_eq!(s.stats.memory.as_ref().unwrap().usage, 4096);
}

/// The Summary's vigil-only `vigilSpec` carries the cgroup limits computed by hand from the
/// fixture files, for cgroup v2 (cpu.weight/cpu.max/memory.max/memory.min) and v1
/// (cpu.shares/cpu.cfs_quota_us/cpu.cfs_period_us/memory.limit_in_bytes).
#[test]
fn summary_carries_vigil_spec_from_cgroup_fixtures() {
    fn spec_of(root: &str, suffix: &str, id: &str) -> crate::summary::VigilSpec {
        let mut c = Collector::new(fixture_config(root)).unwrap();
        let snap = c.pass();
        let sample = find(&snap, suffix);
        let summary = crate::http::summary::build(&snap);
        let json = serde_json::to_string(&summary).unwrap();
        assert!(json.contains("\"vigilSpec\""), "{json}");
        let back: crate::summary::Summary = serde_json::from_str(&json).unwrap();
        back.pods
            .iter()
            .flat_map(|p| &p.containers)
            .find(|c| {
                c.name.contains(id)
                    || (!sample.identity.container.is_empty()
                        && c.name == sample.identity.container)
            })
            .unwrap_or_else(|| panic!("{id} not in summary"))
            .vigil_spec
            .clone()
            .expect("vigilSpec present")
    }
    // v2: cpu.weight 10 → shares 2 + 9 × 262142 / 9999 = 237; cpu.max "50000 100000";
    // memory.max 268435456; memory.min 0.
    let v2 = spec_of(
        "cgroup-v2-systemd",
        &format!("cri-containerd-{}.scope", "a".repeat(64)),
        &"a".repeat(64),
    );
    assert_eq!(v2.cpu_shares, Some(237));
    assert_eq!(v2.cpu_quota_micros, Some(50_000));
    assert_eq!(v2.cpu_period_micros, Some(100_000));
    assert_eq!(v2.memory_limit_bytes, Some(268_435_456));
    assert_eq!(v2.memory_min_bytes, Some(0));
    // v1: cpu.shares 512, cfs_quota_us 50000, cfs_period_us 100000,
    // memory.limit_in_bytes 536870912; v1 has no memory.min.
    let v1 = spec_of("cgroup-v1-cgroupfs", &"b".repeat(64), &"b".repeat(64));
    assert_eq!(v1.cpu_shares, Some(512));
    assert_eq!(v1.cpu_quota_micros, Some(50_000));
    assert_eq!(v1.cpu_period_micros, Some(100_000));
    assert_eq!(v1.memory_limit_bytes, Some(536_870_912));
    assert_eq!(v1.memory_min_bytes, None);
}
