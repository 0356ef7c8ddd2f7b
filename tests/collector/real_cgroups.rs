//! End to end on this machine's real cgroups: on a hybrid host (v1 controllers and the v2
//! hierarchy at /sys/fs/cgroup/unified) one container in each, on a pure cgroup v2 host both in
//! /sys/fs/cgroup. Containers appear through inotify, CPU and memory match what the processes
//! inside do, names come from the kubelet log layout, and removal is seen. A pod's network is
//! read from its own network namespace.

use crate::support::collector::*;
use crate::support::{require, until_blocking, Proc};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn find<'a>(doc: &'a Value, id: &str) -> Option<&'a Value> {
    doc["containers"].as_array()?.iter().find(|c| c["id"] == id)
}

/// utime + stime of a process, in seconds (the kernel's own per-process accounting).
fn proc_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is [0]; utime is field 14 overall → [11], stime → [12].
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// The tests share /sys/fs/cgroup/…/kubepods/burstable and each collector watches all of it
/// (one test's cgroups would count in another's inotify watches): they run one at a time.
static CGROUP_TREE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    CGROUP_TREE.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn real_cgroups_are_discovered_measured_named_and_removed() {
    let _tree = one_at_a_time();
    let root = Path::new("/sys/fs/cgroup");
    let layout = detect_layout(root);
    let uid = unique_pod_uid();
    let id1 = unique_hex(64);
    let id2: String = id1.chars().rev().collect();
    let (ns, pod) = ("e2e", format!("burner-{}", &uid[0..6]));

    // The kubelet's log layout names the containers.
    let logs = tempfile::tempdir().unwrap();
    let pods_dir = logs.path().join("pods");
    let containers_dir = logs.path().join("containers");
    write(&pods_dir.join(format!("{ns}_{pod}_{uid}/app/0.log")), "");
    write(&pods_dir.join(format!("{ns}_{pod}_{uid}/burner/0.log")), "");
    write(
        &containers_dir.join(format!("{pod}_{ns}_app-{id1}.log")),
        "",
    );
    write(
        &containers_dir.join(format!("{pod}_{ns}_burner-{id2}.log")),
        "",
    );

    // The collector starts first: the cgroups must be found through inotify (rescans are 10 min apart).
    let c = Collector::start(&[
        "--housekeeping-interval",
        "1s",
        "--rescan-interval",
        "600s",
        // Processes and their descriptors counted in every pass (30 s by default).
        "--process-stats-interval",
        "1s",
        "--pod-log-root",
        pods_dir.to_str().unwrap(),
        "--container-log-root",
        containers_dir.to_str().unwrap(),
    ]);

    // The collector's inotify watches before the test cgroups exist (see the end).
    let watches_before = inotify_watches(c.proc.pid());
    let (mut cg1, mut cg2) = match &layout {
        Layout::Hybrid { v1, unified } => (
            TestCgroup::create(v1, &uid, &id1),
            TestCgroup::create(std::slice::from_ref(unified), &uid, &id2),
        ),
        Layout::PureV2 { root } => {
            let cg1 = TestCgroup::create(std::slice::from_ref(root), &uid, &id1);
            let cg2 = TestCgroup::create(std::slice::from_ref(root), &uid, &id2);
            // Controllers reach a v2 leaf only when every ancestor delegates them.
            let pod_dir = cg1.leaf_dirs[0].parent().unwrap().to_path_buf();
            for dir in [
                root.clone(),
                root.join("kubepods"),
                root.join("kubepods/burstable"),
                pod_dir,
            ] {
                enable_v2_controllers(&dir, root);
            }
            (cg1, cg2)
        }
    };
    let burner1 = cg1.spawn_python("while True: pass");
    let alloc = cg1.spawn_python("import time\nb = b'x' * (64 << 20)\ntime.sleep(600)");
    let burner2 = cg2.spawn_python("while True: pass");
    let sockets = cg2.spawn_python(
        "import socket, time\ns = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]\ntime.sleep(600)",
    );
    let name1 = cg1.name.clone();
    let name2 = cg2.name.clone();

    // Memory: 64 MiB touched by the allocator, plus two small interpreters.
    const MIB: f64 = 1048576.0;
    let doc = until_blocking(
        "container 1 with 64 MiB resident",
        Duration::from_secs(40),
        || {
            let doc = c.containers();
            let rss = find(&doc, &name1)?["memory"]["rss"].as_f64()?;
            (rss >= 64.0 * MIB).then_some(doc)
        },
    );
    let m = &find(&doc, &name1).unwrap()["memory"];
    let usage = m["usage"].as_f64().unwrap();
    let ws = m["workingSet"].as_f64().unwrap();
    // Tolerance: 64 MiB plus up to 64 MiB for the interpreters, the burner and page cache they load.
    assert!(
        usage >= 64.0 * MIB && usage <= 128.0 * MIB,
        "usage {}",
        usage / MIB
    );
    assert!(ws >= 64.0 * MIB && ws <= usage, "working set {}", ws / MIB);
    let c1 = find(&doc, &name1).unwrap();
    assert_eq!(c1["pod"], pod.as_str(), "{c1}");
    assert_eq!(c1["namespace"], ns);
    assert_eq!(c1["container"], "app");
    assert!(
        c1["kind"].as_str().unwrap().starts_with("container"),
        "{c1}"
    );

    // CPU grows with wall time, and agrees with the kernel's per-process accounting.
    let t0 = doc["time"].as_str().unwrap().to_string();
    let u0 = c1["cpu"]["usageNs"].as_f64().unwrap() / 1e9;
    let later = until_blocking("a sample 3 s later", Duration::from_secs(30), || {
        let d = c.containers();
        let t = chrono_secs(d["time"].as_str()?) - chrono_secs(&t0);
        (t >= 3.0).then_some((d, t))
    });
    let (doc2, dt) = later;
    let u1 = find(&doc2, &name1).unwrap()["cpu"]["usageNs"]
        .as_f64()
        .unwrap()
        / 1e9;
    let grew = u1 - u0;
    assert!(grew > 0.05, "container 1 used {grew} s of CPU in {dt} s");
    assert!(
        grew <= dt * 2.0 + 0.5,
        "container 1 used {grew} s of CPU in {dt} s on 2 cores"
    );
    let kernel = proc_cpu_seconds(burner1) + proc_cpu_seconds(alloc);
    // The collector's value is at most one housekeeping interval (1 s) old: on 2 cores at most 2 s behind.
    assert!(
        (kernel - u1) >= -0.5 && (kernel - u1) <= 2.5,
        "collector {u1} s vs processes {kernel} s"
    );

    // The v2-only container: CPU from the unified cpu.stat, named from the logs.
    let mut last = Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let c2 = loop {
        let d = c.containers();
        if let Some(c2) = find(&d, &name2) {
            if c2["cpu"]["usageNs"].as_f64().unwrap_or(0.0) > 0.0 {
                break c2.clone();
            }
            last = c2.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "container 2 ({name2}) has no CPU time after 20 s: {last}; log: {}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(c2["container"], "burner");
    let k2 = proc_cpu_seconds(burner2);
    let v2 = c2["cpu"]["usageNs"].as_f64().unwrap() / 1e9;
    assert!(
        v2 > 0.0 && v2 <= k2 + 0.5,
        "v2 container {v2} s vs process {k2} s"
    );

    // /metrics carries the kubelet's labels for it.
    let samples = parse_exposition(&c.metrics());
    let cpu = samples
        .iter()
        .find(|s| {
            s.name == "container_cpu_usage_seconds_total" && s.label("id") == Some(name1.as_str())
        })
        .expect("container_cpu_usage_seconds_total for the test container");
    assert_eq!(cpu.label("pod"), Some(pod.as_str()));
    assert_eq!(cpu.label("namespace"), Some(ns));
    assert_eq!(cpu.label("container"), Some("app"));
    assert_eq!(cpu.label("name"), Some(id1.as_str()));
    assert!(samples
        .iter()
        .any(|s| s.name == "container_memory_working_set_bytes"
            && s.label("id") == Some(name1.as_str())
            && s.value >= 64.0 * MIB));
    assert!(samples
        .iter()
        .any(|s| s.name == "container_pressure_cpu_waiting_seconds_total"
            && s.label("id") == Some(name2.as_str())));

    // Processes, descriptors and sockets, as cAdvisor counts them: the cgroup's own processes,
    // and the entries of their /proc/<pid>/fd, read here by the test at the same time.
    let fds_of = |pids: &[u32]| -> f64 {
        pids.iter()
            .map(|p| std::fs::read_dir(format!("/proc/{p}/fd")).unwrap().count() as f64)
            .sum()
    };
    let gauge = |samples: &[Sample], name: &str, id: &str| {
        samples
            .iter()
            .find(|s| s.name == name && s.label("id") == Some(id))
            .map(|s| s.value)
    };
    let (mut ours, mut theirs) = (None, 0.0);
    let counted = (0..100).any(|_| {
        let samples = parse_exposition(&c.metrics());
        theirs = fds_of(&[burner2, sockets]);
        ours = (
            gauge(&samples, "container_processes", &name2),
            gauge(&samples, "container_sockets", &name2),
            gauge(&samples, "container_file_descriptors", &name2),
        )
            .into();
        std::thread::sleep(Duration::from_millis(200));
        ours == Some((Some(2.0), Some(3.0), Some(theirs)))
    });
    assert!(
        counted,
        "container 2: (processes, sockets, descriptors) {ours:?}, expected 2, 3 and {theirs}"
    );
    let samples = parse_exposition(&c.metrics());
    assert_eq!(gauge(&samples, "container_processes", &name1), Some(2.0));
    assert_eq!(gauge(&samples, "container_sockets", &name1), Some(0.0));

    // The summary has the pod with both containers.
    let (s, body) = get(&format!("{}/stats/summary", c.base));
    assert_eq!(s, 200);
    let summary: Value = serde_json::from_str(&body).unwrap();
    let p = summary["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["uid"] == uid.as_str())
        .expect("pod in summary");
    assert_eq!(p["podRef"]["name"], pod.as_str());
    let mut names: Vec<&str> = p["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["app", "burner"]);

    // Removal: both containers disappear (inotify or the next read).
    // cg2 first: on a pure v2 host both share the pod directory, which cg1 created.
    cg2.remove();
    cg1.remove();
    until_blocking("containers gone", Duration::from_secs(20), || {
        let d = c.containers();
        (find(&d, &name1).is_none() && find(&d, &name2).is_none()).then_some(())
    });
    let (s, _) = get(&format!("{}/healthz", c.base));
    assert_eq!(s, 200, "collector still healthy: {}", c.log());
    // cgroupfs reports no end of the watches of a removed cgroup's directory and files (no
    // IN_DELETE_SELF, no IN_IGNORED): the collector removes them itself, or they would leak.
    until_blocking(
        "the removed cgroups' inotify watches released",
        Duration::from_secs(10),
        || (inotify_watches(c.proc.pid()) <= watches_before).then_some(()),
    );
}

/// A pod's network is its own namespace's, read through a process of one of its containers: a
/// process in a new network namespace with a veth pair `pod0`/`peer0` sends 1,000 UDP datagrams
/// out of `pod0`; the pod reports these two interfaces only (not `lo`, not the host's), with the
/// bytes the namespace itself counts (142 bytes per datagram on the wire). When the pod is removed, the collector closes the namespace's net/dev (an
/// open one would keep the namespace alive).
#[test]
fn real_pod_network_is_read_from_its_namespace() {
    let _tree = one_at_a_time();
    require("unshare");
    require("ip");
    let root = Path::new("/sys/fs/cgroup");
    let layout = detect_layout(root);
    let uid = unique_pod_uid();
    let id = unique_hex(64);
    let c = Collector::start(&["--housekeeping-interval", "1s"]);
    let hierarchies = match &layout {
        Layout::Hybrid { v1, .. } => v1.clone(),
        Layout::PureV2 { root } => vec![root.clone()],
    };
    let mut cg = TestCgroup::create(&hierarchies, &uid, &id);
    let pod_name = cg.name.rsplit_once('/').unwrap().0.to_string();
    // Two bursts of 500 datagrams of 100 bytes; the second once the test creates `go`.
    let go = tempfile::tempdir().unwrap();
    let go = go.path().join("go");
    let pid = cg.spawn_python_in(
        "unshare -n",
        // No IPv6 (its router solicitations would add packets); a static neighbour, so that
        // every datagram leaves pod0 (for peer0, its veth peer, in the same namespace).
        "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 && \
         ip link add pod0 type veth peer name peer0 && ip addr add 10.77.0.1/24 dev pod0 && \
         ip link set peer0 up && ip link set pod0 up && \
         ip neigh add 10.77.0.2 lladdr 02:00:00:00:00:02 dev pod0",
        &format!(
            "import os, socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             def burst():\n    for _ in range(500):\n        s.sendto(b'x' * 100, ('10.77.0.2', 9))\n\
             burst()\nwhile not os.path.exists({go:?}):\n    time.sleep(0.05)\nburst()\ntime.sleep(600)"
        ),
    );
    // pod0's transmitted bytes as the namespace counts them, once `packets` have left.
    let own = |packets: u64| {
        until_blocking(
            &format!("{packets} datagrams sent"),
            Duration::from_secs(20),
            || {
                let text = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
                let line = text.lines().find(|l| l.trim_start().starts_with("pod0:"))?;
                let f: Vec<u64> = line
                    .split_once(':')?
                    .1
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect();
                (f.get(9) == Some(&packets)).then(|| f[8])
            },
        )
    };
    let pod_network = |tx: u64| {
        until_blocking(
            &format!("the pod's network with pod0's {tx} bytes"),
            Duration::from_secs(20),
            || {
                let d = c.containers();
                let n = find(&d, &pod_name)?["network"].as_array()?.clone();
                n.iter()
                    .any(|i| i["name"] == "pod0" && i["txBytes"].as_u64() == Some(tx))
                    .then_some(n)
            },
        )
    };
    let first = own(500);
    assert_eq!(
        first, 71_000,
        "100 bytes of payload + UDP, IPv4 and Ethernet headers"
    );
    pod_network(first);
    let net_dev_fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", c.proc.pid()))
            .map(|fds| {
                fds.flatten()
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .filter(|l| {
                        l.to_string_lossy()
                            .starts_with(&format!("/proc/{pid}/net/dev"))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(net_dev_fds(), 1, "the pod's net/dev is kept open");
    // The kept descriptor shows the second burst.
    std::fs::write(&go, "").unwrap();
    let own = own(1000);
    let net = pod_network(own);
    assert_eq!(net_dev_fds(), 1, "still the same descriptor");
    let mut names: Vec<&str> = net.iter().filter_map(|i| i["name"].as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        vec!["peer0", "pod0"],
        "only the namespace's interfaces (lo is left out)"
    );
    let peer_rx = net.iter().find(|i| i["name"] == "peer0").unwrap()["rxBytes"].as_u64();
    assert_eq!(peer_rx, Some(own), "peer0 received what pod0 sent");
    let samples = parse_exposition(&c.metrics());
    let tx = samples
        .iter()
        .find(|s| {
            s.name == "container_network_transmit_bytes_total"
                && s.label("id") == Some(pod_name.as_str())
                && s.label("interface") == Some("pod0")
        })
        .expect("container_network_transmit_bytes_total of the pod");
    assert_eq!(tx.value, own as f64);
    cg.remove();
    until_blocking("the pod's net/dev closed", Duration::from_secs(20), || {
        (find(&c.containers(), &pod_name).is_none() && net_dev_fds() == 0).then_some(())
    });
}

/// A pod uid (8-4-4-4-12 hex digits) no other run uses.
fn unique_pod_uid() -> String {
    let h = unique_hex(32);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The inotify watches a process holds (`inotify wd:` lines in the fdinfo of its descriptors).
fn inotify_watches(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return 0;
    };
    fds.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|info| {
            info.lines()
                .filter(|l| l.starts_with("inotify wd:"))
                .count()
        })
        .sum()
}

/// Where the test cgroups go.
enum Layout {
    /// v1 controllers under /sys/fs/cgroup/<ctrl> and v2 at /sys/fs/cgroup/unified.
    Hybrid { v1: Vec<PathBuf>, unified: PathBuf },
    /// One v2 hierarchy at /sys/fs/cgroup.
    PureV2 { root: PathBuf },
}

fn detect_layout(root: &Path) -> Layout {
    if root.join("cgroup.controllers").is_file() {
        return Layout::PureV2 {
            root: root.to_path_buf(),
        };
    }
    let v1: Vec<PathBuf> = V1_CONTROLLERS
        .iter()
        .map(|c| root.join(c))
        .filter(|p| p.is_dir())
        .collect();
    let unified = root.join("unified");
    assert!(
        !v1.is_empty() && unified.join("cgroup.controllers").is_file(),
        "this test needs a pure cgroup v2 host (/sys/fs/cgroup/cgroup.controllers) or a hybrid \
         host (v1 controllers + /sys/fs/cgroup/unified)"
    );
    Layout::Hybrid { v1, unified }
}

/// Enables cpu, memory, pids and io (those the hierarchy has) for `dir`'s children; cpu and
/// memory are required (the test measures them), the others are best effort.
fn enable_v2_controllers(dir: &Path, root: &Path) {
    let available = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let has = |text: &str, c: &str| text.split_whitespace().any(|w| w == c);
    for c in ["cpu", "memory", "pids", "io"] {
        let required = matches!(c, "cpu" | "memory");
        if !has(&available, c) {
            assert!(
                !required,
                "the v2 hierarchy at {} has no {c} controller",
                root.display()
            );
            continue;
        }
        if has(&enabled, c) {
            continue;
        }
        if let Err(e) = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}")) {
            assert!(
                !required,
                "cannot enable {c} in {}/cgroup.subtree_control: {e}",
                dir.display()
            );
        }
    }
}

fn chrono_secs(rfc3339: &str) -> f64 {
    // "2026-11-22T02:50:01.123456789Z" → seconds of the day are enough for differences within a test.
    let t = rfc3339
        .split('T')
        .nth(1)
        .unwrap_or("0:0:0Z")
        .trim_end_matches('Z');
    let mut it = t.split(':');
    let h: f64 = it.next().unwrap_or("0").parse().unwrap_or(0.0);
    let m: f64 = it.next().unwrap_or("0").parse().unwrap_or(0.0);
    let s: f64 = it.next().unwrap_or("0").parse().unwrap_or(0.0);
    h * 3600.0 + m * 60.0 + s
}

/// The cgroup v2 reader on this machine's real kernfs, with every file of a cgroup kept open and
/// re-read with pread at offset 0 (`--open-files-per-cgroup 11`): CPU keeps growing pass after
/// pass (a kept seq_file regenerates its content), and a removed cgroup disappears. On a hybrid
/// host the v2 hierarchy at /sys/fs/cgroup/unified is read as a pure v2 root; it has no cpu or
/// memory controller to enable here (cgroup.controllers lists only hugetlb), but cpu.stat and
/// the PSI files exist in every v2 cgroup.
#[test]
fn v2_reader_with_kept_files_on_real_kernfs() {
    let _tree = one_at_a_time();
    let root = match detect_layout(Path::new("/sys/fs/cgroup")) {
        Layout::Hybrid { unified, .. } => unified,
        Layout::PureV2 { root } => root,
    };
    let c = Collector::start(&[
        "--cgroup-root",
        root.to_str().unwrap(),
        "--open-files-per-cgroup",
        "11",
        "--housekeeping-interval",
        "1s",
        "--rescan-interval",
        "600s",
    ]);
    let dir = root.join(format!("vigil-e2e-{}", unique_hex(12)));
    std::fs::create_dir(&dir).unwrap();
    let guard = RmDir(dir.clone());
    let name = format!("/{}", dir.file_name().unwrap().to_str().unwrap());
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && exec python3 -c 'while True: pass'",
            dir.display()
        ))
        .spawn()
        .expect("spawn python3");
    let mut burner = Some(Proc {
        child,
        name: "python3".into(),
    });
    let usage = |doc: &Value| find(doc, &name)?["cpu"]["usageNs"].as_f64();
    let (doc0, u0) = until_blocking(
        "the v2 cgroup with CPU time",
        Duration::from_secs(30),
        || {
            let d = c.containers();
            let u = usage(&d)?;
            (u > 0.0).then_some((d.clone(), u))
        },
    );
    let t0 = doc0["time"].as_str().unwrap().to_string();
    let (u1, dt) = until_blocking("a sample 3 s later", Duration::from_secs(30), || {
        let d = c.containers();
        let t = chrono_secs(d["time"].as_str()?) - chrono_secs(&t0);
        (t >= 3.0).then_some((usage(&d)?, t))
    });
    let grew = (u1 - u0) / 1e9;
    assert!(
        grew > 0.05 && grew <= dt * 2.0 + 0.5,
        "burner used {grew} s of CPU in {dt} s"
    );
    // PSI comes from the same kept descriptors.
    let samples = parse_exposition(&c.metrics());
    assert!(samples
        .iter()
        .any(|s| s.name == "container_pressure_cpu_waiting_seconds_total"
            && s.label("id") == Some(name.as_str())));
    let kept = samples
        .iter()
        .find(|s| s.name == "vigil_collector_kept_descriptors")
        .expect("vigil_collector_kept_descriptors");
    assert!(kept.value >= 3.0, "descriptors kept: {}", kept.value);

    // Removal: the process leaves, the directory goes, the container disappears.
    drop(burner.take());
    drop(guard);
    assert!(!dir.exists(), "cannot remove {}", dir.display());
    until_blocking("the removed cgroup gone", Duration::from_secs(20), || {
        find(&c.containers(), &name).is_none().then_some(())
    });
    assert_eq!(get(&format!("{}/healthz", c.base)).0, 200, "{}", c.log());
}

/// Removes a cgroup directory on drop (after its processes were killed; a killed task leaves
/// the cgroup asynchronously, so rmdir is retried briefly).
struct RmDir(PathBuf);

impl Drop for RmDir {
    fn drop(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.0.exists() && std::fs::remove_dir(&self.0).is_err() {
            if std::time::Instant::now() > deadline {
                eprintln!("cannot remove {}", self.0.display());
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
