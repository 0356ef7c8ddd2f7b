//! Naming across passes (`identity.rs`, `discover.rs`): names and labels follow the pod
//! metadata and the cgroups that appear.

use super::*;

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
