//! Pipeline tests of the collection pass: fixture and temporary cgroup trees read end to end,
//! down to the rendered `/metrics` and `/stats/summary` where the behaviour shows there.

use super::*;
use crate::cgroup::Stats;
use crate::discovery::naming::Kind;
use crate::proc::fs::Usage;
use crate::proc::processes::ProcessCounts;
use std::path::Path;

fn fixture_config(root: &str) -> Arc<Config> {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    Arc::new(Config {
        cgroup_root: base.join(root),
        proc_root: base.join("proc-root-absent"),
        pod_log_root: base.join("logs/pods"),
        container_log_root: Some(base.join("logs/containers")),
        node_name: Some("fixture-node".into()),
        ..Default::default()
    })
}

/// A temporary cgroup v2 root (with `controllers`) holding the empty container cgroup
/// `/kubepods/podaa/0123`.
struct TmpNode {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dir: PathBuf,
}

fn tmp_node(controllers: &str) -> TmpNode {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    std::fs::write(root.join("cgroup.controllers"), format!("{controllers}\n")).unwrap();
    let dir = root.join("kubepods/podaa/0123");
    std::fs::create_dir_all(&dir).unwrap();
    TmpNode {
        _tmp: tmp,
        root,
        dir,
    }
}

/// An empty cgroup v2 root (cpu and memory) at `<dir>/cg`.
fn v2_root_in(dir: &Path) -> PathBuf {
    let cg = dir.join("cg");
    std::fs::create_dir_all(&cg).unwrap();
    std::fs::write(cg.join("cgroup.controllers"), "cpu memory\n").unwrap();
    cg
}

/// A collector on the cgroup root `root` with the fixture config, adjusted by `tweak`.
fn collector_at(root: &Path, tweak: impl FnOnce(&mut Config)) -> Collector {
    let mut cfg = (*fixture_config("x")).clone();
    cfg.cgroup_root = root.to_path_buf();
    tweak(&mut cfg);
    Collector::new(Arc::new(cfg)).unwrap()
}

fn find<'a>(s: &'a Snapshot, suffix: &str) -> &'a ContainerSample {
    s.containers
        .iter()
        .find(|c| c.name.ends_with(suffix))
        .unwrap_or_else(|| panic!("{suffix} not found"))
}

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
fn rates_come_from_two_samples() {
    let node = tmp_node("cpu");
    let (root, dir) = (node.root.as_path(), node.dir.clone());
    std::fs::write(dir.join("cpu.stat"), "usage_usec 0\n").unwrap();
    let mut c = collector_at(root, |_| {});
    let first = c.pass();
    assert_eq!(
        first
            .containers
            .iter()
            .find(|s| &*s.name == "/kubepods/podaa/0123")
            .unwrap()
            .usage_nano_cores,
        None
    );
    std::thread::sleep(Duration::from_millis(200));
    // 100 ms of CPU in ≥ 200 ms of wall time: at most half a core.
    std::fs::write(dir.join("cpu.stat"), "usage_usec 100000\n").unwrap();
    let second = c.pass();
    let r = second
        .containers
        .iter()
        .find(|s| &*s.name == "/kubepods/podaa/0123")
        .unwrap()
        .usage_nano_cores
        .unwrap();
    assert!(r > 100_000_000 && r <= 500_000_000, "{r}");
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

#[test]
fn no_rate_after_a_pass_without_cpu_stats() {
    let node = tmp_node("cpu memory");
    let (root, dir) = (node.root.as_path(), node.dir.clone());
    // Pass 1: no cpu.stat yet (created mid-read), only memory.
    std::fs::write(dir.join("memory.current"), "4096\n").unwrap();
    let mut c = collector_at(root, |_| {});
    let first = c.pass();
    let s = first
        .containers
        .iter()
        .find(|s| &*s.name == "/kubepods/podaa/0123")
        .unwrap();
    assert!(s.stats.cpu.is_none());
    std::thread::sleep(Duration::from_millis(50));
    // Pass 2: an hour of lifetime CPU appears; one sample is not a rate.
    std::fs::write(dir.join("cpu.stat"), "usage_usec 3600000000\n").unwrap();
    let second = c.pass();
    let s = second
        .containers
        .iter()
        .find(|s| &*s.name == "/kubepods/podaa/0123")
        .unwrap();
    assert_eq!(s.stats.cpu.as_ref().unwrap().usage_ns, 3_600_000_000_000);
    assert_eq!(s.usage_nano_cores, None);
    // Pass 3: 10 ms more CPU in ≥ 50 ms: a sane rate (≤ 0.2 core).
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write(dir.join("cpu.stat"), "usage_usec 3600010000\n").unwrap();
    let third = c.pass();
    let r = third
        .containers
        .iter()
        .find(|s| &*s.name == "/kubepods/podaa/0123")
        .unwrap()
        .usage_nano_cores
        .unwrap();
    assert!(r > 0 && r <= 200_000_000, "{r}");
}

/// A pod's network comes from net/dev of one of its processes, opened once through a
/// container cgroup: a pid whose /proc entry is not in the pod (exited and reused) is
/// skipped; the descriptor is re-read without looking the pid up again; when its container is
/// removed, another container's process is looked up.
#[test]
fn pod_network_is_read_through_a_container_process() {
    let tmp = tempfile::tempdir().unwrap();
    let cg = v2_root_in(tmp.path());
    let proc_root = tmp.path().join("proc");
    let uid = "11111111-2222-3333-4444-555555555555";
    let pod_rel = format!("kubepods/burstable/pod{uid}");
    let container = |c: char, procs: &str| {
        let d = cg.join(&pod_rel).join(c.to_string().repeat(64));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("cpu.stat"), "usage_usec 10\n").unwrap();
        std::fs::write(d.join("cgroup.procs"), procs).unwrap();
        d
    };
    let net = |rx: u64| {
        format!(
            "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo: 7 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n  eth0: {rx} 10 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n"
        )
    };
    let write_pid = |pid: u32, cgroup: &str, rx: u64| {
        let d = proc_root.join(pid.to_string());
        std::fs::create_dir_all(d.join("net")).unwrap();
        std::fs::write(d.join("cgroup"), cgroup).unwrap();
        std::fs::write(d.join("net/dev"), net(rx)).unwrap();
    };
    let in_pod = |c: char| format!("0::/{pod_rel}/{}\n", c.to_string().repeat(64));
    // Container a lists pid 100, which is a host process now (exited and reused).
    let a = container('a', "100\n");
    write_pid(100, "0::/system.slice/cron.service\n", 999_999_999);
    let mut c = collector_at(&cg, |cfg| {
        cfg.proc_root = proc_root.clone();
        cfg.rescan_interval = Duration::ZERO;
    });
    let rx = |snap: &Snapshot| {
        let pod = snap
            .containers
            .iter()
            .find(|s| *s.name == *format!("/{pod_rel}"))
            .expect("pod sample");
        let n = pod.network.as_ref()?;
        assert!(
            n.iter().all(|i| i.name != "lo"),
            "lo is not a pod interface"
        );
        Some(n.iter().find(|i| i.name == "eth0").unwrap().rx_bytes)
    };
    assert_eq!(rx(&c.pass()), None, "a pid outside the pod is not read");
    // Container b starts with pid 200, in the pod: found within the retry cycle.
    container('b', "200\n");
    write_pid(200, &in_pod('b'), 2000);
    let found = (0..pod_net::RETRY_EVERY).find_map(|_| rx(&c.pass()));
    assert_eq!(found, Some(2000));
    // The kept descriptor is re-read; cgroup.procs is not looked at again.
    write_pid(200, &in_pod('b'), 2500);
    std::fs::write(
        cg.join(&pod_rel).join("b".repeat(64)).join("cgroup.procs"),
        "300\n",
    )
    .unwrap();
    write_pid(300, &in_pod('b'), 3000);
    assert_eq!(rx(&c.pass()), Some(2500));
    // Container b is removed: the pod's network is looked up again, in container a, whose
    // pid 100 is now the pod's.
    std::fs::remove_dir_all(cg.join(&pod_rel).join("b".repeat(64))).unwrap();
    write_pid(100, &in_pod('a'), 1000);
    assert_eq!(rx(&c.pass()), Some(1000));
    drop(a);
}

/// Names and labels are kept between passes, and follow the metadata (log directories
/// appearing) and the cgroups (a second container in the pod makes the unnamed one its
/// sandbox).
#[test]
fn names_and_labels_follow_metadata_and_new_cgroups() {
    let tmp = tempfile::tempdir().unwrap();
    let cg = v2_root_in(tmp.path());
    let (pods, containers) = (tmp.path().join("pods"), tmp.path().join("containers"));
    std::fs::create_dir_all(&pods).unwrap();
    std::fs::create_dir_all(&containers).unwrap();
    let uid = "11111111-2222-3333-4444-777777777777";
    let (a, b) = ("a".repeat(64), "b".repeat(64));
    let pod_dir = cg.join(format!("kubepods/pod{uid}"));
    std::fs::create_dir_all(pod_dir.join(&a)).unwrap();
    let mut c = collector_at(&cg, |cfg| {
        cfg.pod_log_root = pods.clone();
        cfg.container_log_root = Some(containers.clone());
        cfg.rescan_interval = Duration::ZERO;
    });
    let snap = c.pass();
    let s = find(&snap, &a);
    assert_eq!(s.identity.pod, "");
    assert!(s.label_str.contains("pod=\"\""), "{}", s.label_str);
    // The kubelet's log directories appear: the container is named in the next pass.
    std::fs::create_dir_all(pods.join(format!("ns1_web-0_{uid}/app"))).unwrap();
    std::fs::write(containers.join(format!("web-0_ns1_app-{a}.log")), "").unwrap();
    let snap = c.pass();
    let s = find(&snap, &a);
    assert_eq!(
        (s.identity.pod.as_str(), s.identity.container.as_str()),
        ("web-0", "app")
    );
    assert!(s.label_str.contains("container=\"app\"") && s.label_str.contains("pod=\"web-0\""));
    let pod = find(&snap, &format!("pod{uid}"));
    assert!(
        pod.label_str.contains("namespace=\"ns1\""),
        "{}",
        pod.label_str
    );
    // A second, unnamed container in the pod: the sandbox.
    std::fs::create_dir_all(pod_dir.join(&b)).unwrap();
    let snap = c.pass();
    let s = find(&snap, &b);
    assert!(s.identity.sandbox);
    assert!(s.label_str.contains("container=\"POD\""), "{}", s.label_str);
    assert_eq!(find(&snap, &a).identity.container, "app");
}

/// A container's writable layer (the overlay upperdir of one of its processes) and its log
/// directory are sized by the incremental walk, `du`'s way; when the container goes, their
/// walks stop.
#[test]
fn writable_layer_and_logs_are_sized_and_forgotten() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let cg = v2_root_in(tmp.path());
    let proc_root = tmp.path().join("proc");
    let (pods, containers) = (tmp.path().join("pods"), tmp.path().join("containers"));
    let upper = tmp.path().join("snapshots/9/fs");
    std::fs::create_dir_all(upper.join("etc")).unwrap();
    std::fs::write(upper.join("data"), vec![7u8; 20_000]).unwrap();
    std::fs::write(upper.join("etc/conf"), "x=1\n").unwrap();
    let uid = "11111111-2222-3333-4444-888888888888";
    let id = "c".repeat(64);
    let log_dir = pods.join(format!("ns1_web-0_{uid}/app"));
    std::fs::create_dir_all(&log_dir).unwrap();
    std::fs::write(log_dir.join("0.log"), vec![b'l'; 9_000]).unwrap();
    std::fs::create_dir_all(&containers).unwrap();
    std::fs::write(containers.join(format!("web-0_ns1_app-{id}.log")), "").unwrap();
    let ctr = cg.join(format!("kubepods/pod{uid}/{id}"));
    std::fs::create_dir_all(&ctr).unwrap();
    std::fs::write(ctr.join("cgroup.procs"), "500\n").unwrap();
    std::fs::create_dir_all(proc_root.join("500")).unwrap();
    std::fs::write(
        proc_root.join("500/mountinfo"),
        format!(
            "1 0 0:50 / / rw - overlay overlay rw,lowerdir=/l,upperdir={},workdir=/w\n",
            upper.display()
        ),
    )
    .unwrap();
    // What `du` counts under a directory: every entry's blocks × 512.
    let du = |root: &Path| {
        let mut u = Usage::default();
        let mut pending = vec![root.to_path_buf()];
        while let Some(d) = pending.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let md = e.metadata().unwrap();
                u.bytes += md.blocks() * 512;
                u.inodes += 1;
                if md.is_dir() {
                    pending.push(e.path());
                }
            }
        }
        u
    };
    let mut c = collector_at(&cg, |cfg| {
        cfg.proc_root = proc_root.clone();
        cfg.pod_log_root = pods.clone();
        cfg.container_log_root = Some(containers.clone());
        cfg.rescan_interval = Duration::ZERO;
    });
    let sized = (0..5)
        .map(|_| c.pass())
        .find(|snap| {
            let s = find(snap, &id);
            s.rootfs.is_some() && s.logs.is_some()
        })
        .expect("writable layer and logs sized within 5 passes");
    let s = find(&sized, &id);
    assert_eq!(s.rootfs, Some(du(&upper)));
    assert_eq!(s.rootfs.unwrap().inodes, 3);
    assert_eq!(s.logs, Some(du(&log_dir)));
    assert!(s.logs.unwrap().bytes >= 9_000);
    assert_eq!(c.du.len(), 2);
    // More data in the layer: the next complete walk has it.
    std::fs::write(upper.join("more"), vec![1u8; 50_000]).unwrap();
    let grown = (0..5)
        .map(|_| find(&c.pass(), &id).rootfs)
        .find(|u| *u == Some(du(&upper)));
    assert!(grown.is_some(), "the layer's new size within 5 passes");
    std::fs::remove_dir_all(&ctr).unwrap();
    c.pass();
    assert_eq!(c.du.len(), 0, "the walks of a removed container stop");
}

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

/// cgroup v2's `populated 0` in a pod's cgroup.events spares the look at its containers.
#[test]
fn unpopulated_pod_has_no_network_until_populated() {
    let tmp = tempfile::tempdir().unwrap();
    let cg = v2_root_in(tmp.path());
    let proc_root = tmp.path().join("proc");
    let uid = "11111111-2222-3333-4444-666666666666";
    let pod = cg.join(format!("kubepods/pod{uid}"));
    let ctr = pod.join("d".repeat(64));
    std::fs::create_dir_all(&ctr).unwrap();
    std::fs::write(ctr.join("cgroup.procs"), "400\n").unwrap();
    std::fs::write(pod.join("cgroup.events"), "populated 0\nfrozen 0\n").unwrap();
    let d = proc_root.join("400");
    std::fs::create_dir_all(d.join("net")).unwrap();
    std::fs::write(
        d.join("cgroup"),
        format!("0::/kubepods/pod{uid}/{}\n", "d".repeat(64)),
    )
    .unwrap();
    std::fs::write(
        d.join("net/dev"),
        "h1\nh2\n  eth0: 42 1 0 0 0 0 0 0 8 1 0 0 0 0 0 0\n",
    )
    .unwrap();
    let mut c = collector_at(&cg, |cfg| cfg.proc_root = proc_root.clone());
    let net = |snap: &Snapshot| {
        snap.containers
            .iter()
            .find(|s| *s.name == *format!("/kubepods/pod{uid}"))
            .and_then(|s| s.network.clone())
    };
    for _ in 0..pod_net::RETRY_EVERY {
        assert_eq!(net(&c.pass()), None, "populated 0: not looked at");
    }
    std::fs::write(pod.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
    let found = (0..pod_net::RETRY_EVERY).find_map(|_| net(&c.pass()));
    assert_eq!(found.expect("found once populated")[0].rx_bytes, 42);
}

fn v2_dir(root: &Path, rel: &str, usage_usec: u64) -> PathBuf {
    let dir = root.join(rel);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cpu.stat"), format!("usage_usec {usage_usec}\n")).unwrap();
    std::fs::write(dir.join("memory.current"), format!("{}\n", usage_usec * 2)).unwrap();
    std::fs::write(dir.join("pids.current"), "3\n").unwrap();
    dir
}

/// cgroup.procs and each listed process's /proc/<pid>/fd: processes, descriptors and
/// sockets, counted when first seen, then every `process_stats_interval` (every third pass at
/// the defaults); a process that exited is left out; a bad cgroup.procs is a parse error.
#[test]
fn processes_descriptors_and_sockets_are_counted_every_few_passes() {
    let node = tmp_node("cpu memory pids");
    v2_dir(&node.root, "kubepods/podaa/0123", 10);
    std::fs::write(node.dir.join("cgroup.procs"), "500\n501\n4000000\n").unwrap();
    let proc_tmp = tempfile::tempdir().unwrap();
    let fd_links = |pid: u32, links: &[&str]| {
        let fd = proc_tmp.path().join(pid.to_string()).join("fd");
        let _ = std::fs::remove_dir_all(&fd);
        std::fs::create_dir_all(&fd).unwrap();
        for (i, l) in links.iter().enumerate() {
            std::os::unix::fs::symlink(l, fd.join(i.to_string())).unwrap();
        }
    };
    fd_links(
        500,
        &["/dev/null", "socket:[123]", "pipe:[7]", "socket:[124]"],
    );
    fd_links(501, &["/var/log/app.log", "anon_inode:[eventpoll]"]);
    // pid 4000000 has no /proc entry: exited since cgroup.procs was read.
    let mut c = collector_at(&node.root, |cfg| cfg.proc_root = proc_tmp.path().into());
    let counts = |snap: &Snapshot| find(snap, "/0123").processes;
    let first = ProcessCounts {
        processes: 3,
        fds: 6,
        sockets: Some(2),
    };
    assert_eq!(counts(&c.pass()), Some(first));
    let mut out = String::new();
    let snap = c.pass();
    crate::http::metrics::render(&snap, &c.config, &mut out);
    for (name, v) in [
        ("container_processes{", "3"),
        ("container_file_descriptors{", "6"),
        ("container_sockets{", "2"),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(name) && l.contains("id=\"/kubepods/podaa/0123\""))
            .unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(line.rsplit(' ').nth(1), Some(v), "{line}");
    }
    // One socket more: seen within three passes (10 s interval), and the count in between
    // is the last one, not a missing figure.
    fd_links(
        501,
        &["/var/log/app.log", "anon_inode:[eventpoll]", "socket:[9]"],
    );
    let seen: Vec<_> = (0..3).map(|_| counts(&c.pass())).collect();
    assert!(seen.iter().all(Option::is_some), "{seen:?}");
    assert_eq!(
        seen.last().unwrap().unwrap(),
        ProcessCounts {
            processes: 3,
            fds: 7,
            sockets: Some(3)
        },
        "{seen:?}"
    );
    // A line that is not a pid: no figure, and a parse error naming the file.
    std::fs::write(node.dir.join("cgroup.procs"), "500\nfive\n").unwrap();
    let before = c.stats.errors_by_kind.get("parse").copied().unwrap_or(0);
    let seen: Vec<_> = (0..3).map(|_| counts(&c.pass())).collect();
    assert_eq!(seen.last().unwrap(), &None, "{seen:?}");
    assert!(c.stats.errors_by_kind.get("parse").copied().unwrap_or(0) > before);
    assert!(c
        .logged
        .iter()
        .any(|m| m.contains("cgroup.procs") && m.contains("five")));
}

/// memory.swap.current is read only when the node has swap: with `SwapTotal: 0` in the
/// pass's /proc/meminfo it is 0 without a read; with swap, or when meminfo cannot be read,
/// the file's value is reported.
#[test]
fn swap_is_read_only_on_a_node_with_swap() {
    let node = tmp_node("cpu memory pids");
    std::fs::write(node.dir.join("memory.current"), "8192\n").unwrap();
    std::fs::write(node.dir.join("memory.swap.current"), "4096\n").unwrap();
    let proc_tmp = tempfile::tempdir().unwrap();
    let proc_root = proc_tmp.path().to_path_buf();
    let meminfo = |swap_kb: u64| {
        std::fs::write(
            proc_root.join("meminfo"),
            format!("MemTotal: 1000 kB\nMemFree: 500 kB\nSwapTotal: {swap_kb} kB\nSwapFree: {swap_kb} kB\n"),
        )
        .unwrap()
    };
    let swap_of = |snap: &Snapshot| {
        snap.containers
            .iter()
            .find(|s| &*s.name == "/kubepods/podaa/0123")
            .and_then(|s| s.stats.memory.as_ref().map(|m| m.swap))
    };
    meminfo(0);
    let mut c = collector_at(&node.root, |cfg| cfg.proc_root = proc_root.clone());
    // 0 although the file says 4096: it was not read.
    assert_eq!(swap_of(&c.pass()), Some(0));
    meminfo(2048);
    assert_eq!(swap_of(&c.pass()), Some(4096));
    std::fs::remove_file(proc_root.join("meminfo")).unwrap();
    assert_eq!(
        swap_of(&c.pass()),
        Some(4096),
        "meminfo unreadable: the file is read"
    );
}

/// With the watcher, a limit written between passes is in the next pass (not up to six
/// passes later), and memory.events is read only when it changes.
#[test]
fn watched_limits_and_events_are_read_when_they_change() {
    let node = tmp_node("cpu memory pids");
    // Every limit and event file of the hierarchy's controllers, in every cgroup: all watched.
    for rel in ["", "kubepods", "kubepods/podaa", "kubepods/podaa/0123"] {
        let d = node.root.join(rel);
        for (f, v) in [
            ("cpu.max", "max 100000"),
            ("cpu.weight", "100"),
            ("memory.min", "0"),
            ("memory.swap.max", "max"),
            ("pids.max", "max"),
        ] {
            std::fs::write(d.join(f), format!("{v}\n")).unwrap();
        }
        std::fs::write(d.join("memory.max"), "1000000\n").unwrap();
        std::fs::write(d.join("memory.events"), "max 0\noom_kill 0\n").unwrap();
    }
    std::fs::write(node.dir.join("memory.current"), "8192\n").unwrap();
    // At a 30 s interval processes are counted in every pass (cgroup.procs is read in
    // every pass, like the figures), so the files read per pass do not vary with that.
    let mut c = collector_at(&node.root, |cfg| {
        cfg.housekeeping_interval = Duration::from_secs(30)
    });
    c.start_watcher();
    let name = "/kubepods/podaa/0123";
    let figures = |snap: &Snapshot| {
        let s = snap.containers.iter().find(|s| &*s.name == name).unwrap();
        let m = s.stats.memory.as_ref().unwrap();
        (s.stats.spec.memory_limit, m.oom_kills)
    };
    // The first two passes read everything (the stagger's first slot is next).
    c.pass();
    c.pass();
    let read_before = c.stats.files_read;
    assert_eq!(figures(&c.pass()), (Some(1_000_000), Some(0)));
    let per_pass = c.stats.files_read - read_before;
    // Unchanged: neither memory.events nor the limits were read.
    let read_before = c.stats.files_read;
    c.pass();
    assert_eq!(c.stats.files_read - read_before, per_pass);
    std::fs::write(node.dir.join("memory.max"), "2000000\n").unwrap();
    std::fs::write(node.dir.join("memory.events"), "max 3\noom_kill 1\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = figures(&c.pass());
    while seen != (Some(2_000_000), Some(1)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        seen = figures(&c.pass());
    }
    assert_eq!(seen, (Some(2_000_000), Some(1)));
    // Carried over in later passes, not reset to "unknown".
    assert_eq!(figures(&c.pass()), (Some(2_000_000), Some(1)));
    // Let any late event of the writes above (truncation, then write) be taken first.
    std::thread::sleep(Duration::from_millis(300));
    c.pass();
    // Not read without a change: a new file renamed over it (no IN_MODIFY) goes unseen.
    let tmp = node.dir.join(".memory.events.new");
    std::fs::write(&tmp, "max 9\noom_kill 9\n").unwrap();
    std::fs::rename(&tmp, node.dir.join("memory.events")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(figures(&c.pass()), (Some(2_000_000), Some(1)));
    assert_eq!(c.tracked[name].files_watched, Some(true));
}

/// A cgroup one of whose limit or event files is not watched (its controller not enabled
/// when it was registered) reads memory.events every pass.
#[test]
fn cgroups_not_fully_watched_read_their_events_every_pass() {
    let node = tmp_node("cpu memory pids");
    std::fs::write(node.dir.join("memory.current"), "8192\n").unwrap();
    std::fs::write(node.dir.join("memory.events"), "max 0\noom_kill 0\n").unwrap();
    let mut c = collector_at(&node.root, |_| {});
    c.start_watcher();
    let name = "/kubepods/podaa/0123";
    let ooms = |snap: &Snapshot| {
        let s = snap.containers.iter().find(|s| &*s.name == name).unwrap();
        s.stats.memory.as_ref().unwrap().oom_kills
    };
    assert_eq!(ooms(&c.pass()), Some(0));
    assert_eq!(c.tracked[name].files_watched, Some(false));
    // A new file renamed over it raises no IN_MODIFY, and is still read.
    let tmp = node.dir.join(".memory.events.new");
    std::fs::write(&tmp, "max 4\noom_kill 2\n").unwrap();
    std::fs::rename(&tmp, node.dir.join("memory.events")).unwrap();
    assert_eq!(ooms(&c.pass()), Some(2));
}

fn usage_of(snap: &Snapshot, name: &str) -> Option<u64> {
    snap.containers
        .iter()
        .find(|s| &*s.name == name)
        .and_then(|s| s.stats.cpu.as_ref().map(|c| c.usage_ns))
}

/// A cgroup removed and created again under the same name between passes is read from the
/// new directory, not through descriptors kept for the old one.
#[test]
fn recreated_cgroup_is_read_from_the_new_directory() {
    let node = tmp_node("cpu memory pids");
    let root = node.root.as_path();
    let name = "/kubepods/podaa/0123";
    let dir = v2_dir(root, "kubepods/podaa/0123", 10);
    let mut c = collector_at(root, |c| c.open_files_per_cgroup = 3);
    c.start_watcher();
    assert_eq!(usage_of(&c.pass(), name), Some(10_000));
    assert_eq!(usage_of(&c.pass(), name), Some(10_000));
    assert!(
        c.tracked[name].handles.len() >= 2,
        "directory and files kept"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    v2_dir(root, "kubepods/podaa/0123", 77);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let u = usage_of(&c.pass(), name);
        if u == Some(77_000) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still reading the removed cgroup: {u:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Without a watcher, a kept directory descriptor of a removed cgroup is noticed by the
/// failing `openat` and the path is looked up again (only directories kept here).
#[test]
fn stale_kept_directory_is_reopened() {
    let node = tmp_node("cpu memory pids");
    let root = node.root.as_path();
    let name = "/kubepods/podaa/0123";
    let dir = v2_dir(root, "kubepods/podaa/0123", 10);
    let mut c = collector_at(root, |c| c.open_files_per_cgroup = 0);
    assert_eq!(usage_of(&c.pass(), name), Some(10_000));
    std::fs::remove_dir_all(&dir).unwrap();
    v2_dir(root, "kubepods/podaa/0123", 77);
    let snap = c.pass();
    assert_eq!(usage_of(&snap, name), Some(77_000));
    let s = snap.containers.iter().find(|s| &*s.name == name).unwrap();
    assert_eq!(s.stats.memory.as_ref().unwrap().usage, 154);
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

/// Pod volumes from a kubelet root fixture: every directory under
/// `pods/<uid>/volumes/<plugin>/`, with the filesystem's capacity and inodes from statvfs and,
/// for volumes on the node filesystem, the usage under them (as the kubelet's du).
#[test]
fn pod_volumes_from_the_kubelet_root() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut cfg = (*fixture_config("cgroup-v2-systemd")).clone();
    cfg.kubelet_root = base.join("kubelet");
    let mut c = Collector::new(Arc::new(cfg)).unwrap();
    let snap = c.pass();
    let pod = find(
        &snap,
        "kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice",
    );
    let names: Vec<(&str, &str, bool)> = pod
        .volumes
        .iter()
        .map(|v| (v.dir.name.as_str(), v.dir.plugin.as_str(), v.dir.mounted))
        .collect();
    assert_eq!(
        names,
        vec![
            ("cache", "kubernetes.io~empty-dir", false),
            ("config", "kubernetes.io~configmap", false)
        ]
    );
    let fs = crate::proc::fs::statvfs(&base).unwrap();
    // du of each volume: every entry under it, blocks × 512 (cache: a.bin, sub, sub/b.txt).
    let du = |p: &Path| -> (u64, u64) {
        let mut out = (0, 0);
        let mut stack = vec![p.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                let md = e.metadata().unwrap();
                out.0 += std::os::unix::fs::MetadataExt::blocks(&md) * 512;
                out.1 += 1;
                if md.is_dir() {
                    stack.push(e.path());
                }
            }
        }
        out
    };
    let summary = crate::http::summary::build(&snap);
    let json = serde_json::to_value(&summary).unwrap();
    let p = json["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["uid"] == "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901")
        .unwrap();
    let vols = p["volume"].as_array().unwrap();
    assert_eq!(vols.len(), 2);
    for (v, inodes) in vols.iter().zip([3u64, 1]) {
        let dir = pod
            .volumes
            .iter()
            .find(|x| x.dir.name == v["name"])
            .unwrap();
        let (bytes, n) = du(&dir.dir.path);
        assert_eq!(n, inodes);
        assert_eq!(v["usedBytes"], bytes, "{v}");
        assert_eq!(v["inodesUsed"], inodes, "{v}");
        assert_eq!(v["capacityBytes"], fs.capacity, "{v}");
        assert_eq!(v["inodes"], fs.inodes, "{v}");
        for k in ["time", "availableBytes", "inodesFree"] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
    }
    // Local volumes count in the pod's ephemeral-storage.
    let eph = p["ephemeral-storage"]["usedBytes"].as_u64().unwrap();
    assert!(eph >= du(&pod.volumes[0].dir.path).0 + du(&pod.volumes[1].dir.path).0);
    // A pod without a kubelet directory has no volumes and no error.
    let other = find(
        &snap,
        "kubepods-pod99999999_8888_7777_6666_555555555555.slice",
    );
    assert!(other.volumes.is_empty());
    assert_eq!(snap.self_stats.errors_by_kind.get("volume"), None);
}

/// The fs `device` label is the mount source from mountinfo (cAdvisor), not the path.
#[test]
fn fs_device_label_comes_from_mountinfo() {
    let tmp = tempfile::tempdir().unwrap();
    let proc_root = tmp.path().join("proc");
    std::fs::create_dir_all(proc_root.join("self")).unwrap();
    let (ma, mi) = crate::proc::fs::path_dev(tmp.path()).unwrap();
    std::fs::write(
        proc_root.join("self/mountinfo"),
        format!("1 0 {ma}:{mi} / / rw,relatime - ext4 /dev/vigil-test rw\n"),
    )
    .unwrap();
    let mut cfg = (*fixture_config("cgroup-v2-systemd")).clone();
    cfg.proc_root = proc_root;
    cfg.root_fs_path = tmp.path().to_path_buf();
    cfg.image_fs_path = Some(tmp.path().to_path_buf());
    let mut c = Collector::new(Arc::new(cfg.clone())).unwrap();
    let snap = c.pass();
    assert_eq!(
        snap.root_fs.as_ref().unwrap().device.as_deref(),
        Some("/dev/vigil-test")
    );
    let mut out = String::new();
    crate::http::metrics::render(&snap, &cfg, &mut out);
    let line = out
        .lines()
        .find(|l| l.starts_with("container_fs_limit_bytes{") && l.contains("id=\"/\""))
        .expect("root fs limit line");
    assert!(line.contains("device=\"/dev/vigil-test\""), "{line}");
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
