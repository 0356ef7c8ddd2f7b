//! A pod's network, read from net/dev through one of its containers' processes.

use super::*;

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
