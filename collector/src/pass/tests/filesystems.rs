//! Filesystems in a pass (`filesystems.rs`): writable layers and logs sized by the walk, pod
//! volumes from the kubelet root, the device label from mountinfo.

use super::*;

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
