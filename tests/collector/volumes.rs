//! End to end: the real `vigil collector` names pod volumes as the kubelet does (pod spec name,
//! `pvcRef`) from a kubelet `/pods` answer and a kubelet root with a CSI PersistentVolume,
//! exposes `kubelet_volume_stats_*` that promtool accepts, and refuses `--kubernetes-pvc-lookup`
//! without what it needs.

use crate::support::promtool;
use crate::support::collector::*;
use crate::support::until_blocking;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const UID: &str = "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901";
const PV: &str = "pvc-1111aaaa-0000-4000-8000-000000000001";

fn testdata(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("collector/testdata")
        .join(name)
}

/// The kubelet's read API on 127.0.0.1: `GET /pods` answers `body` (axum on its own thread).
fn fake_kubelet(body: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let pods = move || async move { ([("content-type", "application/json")], body) };
            let app = axum::Router::new().route("/pods", axum::routing::get(pods));
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    port
}

#[test]
fn pvc_volume_is_named_after_the_spec_with_pvc_ref_and_kubelet_volume_stats() {
    // The kubelet's pod list with one claim (the generic ephemeral volume removed).
    let mut pods: Value =
        serde_json::from_str(&std::fs::read_to_string(testdata("volumes/pods.json")).unwrap())
            .unwrap();
    pods["items"][0]["spec"]["volumes"]
        .as_array_mut()
        .unwrap()
        .retain(|v| v["name"] != "scratch");
    let port = fake_kubelet(pods.to_string());
    // A kubelet root: emptyDir, configMap and one CSI PV (vol_data.json beside mount/).
    let root = tempfile::tempdir().unwrap();
    let vols = root.path().join("pods").join(UID).join("volumes");
    std::fs::create_dir_all(vols.join("kubernetes.io~empty-dir/cache")).unwrap();
    std::fs::create_dir_all(vols.join("kubernetes.io~configmap/config")).unwrap();
    let csi = testdata("volumes/kubelet/pods")
        .join(UID)
        .join("volumes/kubernetes.io~csi")
        .join(PV);
    let pv = vols.join("kubernetes.io~csi").join(PV);
    std::fs::create_dir_all(pv.join("mount")).unwrap();
    std::fs::copy(csi.join("vol_data.json"), pv.join("vol_data.json")).unwrap();
    std::fs::write(pv.join("mount/db.bin"), vec![7u8; 64 * 1024]).unwrap();

    let c = Collector::start(&[
        "--housekeeping-interval",
        "1s",
        "--cgroup-root",
        testdata("cgroup-v2-systemd").to_str().unwrap(),
        "--pod-log-root",
        "/nonexistent/pods",
        "--kubelet-url",
        &format!("http://127.0.0.1:{port}"),
        "--kubelet-root",
        root.path().to_str().unwrap(),
        "--node-name",
        "fixture-node",
    ]);
    // Volumes are re-listed every sixth pass: wait until_blocking the pod spec has been applied.
    let data = until_blocking(
        "volume `data` with its pvcRef",
        Duration::from_secs(30),
        || {
            let (s, body) = get(&format!("{}/stats/summary", c.base));
            assert_eq!(s, 200, "{body}");
            let v: Value = serde_json::from_str(&body).unwrap();
            let pod = v["pods"]
                .as_array()?
                .iter()
                .find(|p| p["podRef"]["uid"] == UID)?
                .clone();
            pod["volume"]
                .as_array()?
                .iter()
                .find(|v| v["name"] == "data")
                .cloned()
        },
    );
    assert_eq!(
        data["pvcRef"],
        serde_json::json!({"name": "data-web-0", "namespace": "shop"})
    );
    let (_, body) = get(&format!("{}/stats/summary", c.base));
    let v: Value = serde_json::from_str(&body).unwrap();
    let pod = v["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["uid"] == UID)
        .unwrap();
    let mut names: Vec<&str> = pod["volume"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["cache", "config", "data"]);
    for v in pod["volume"].as_array().unwrap() {
        if v["name"] != "data" {
            assert!(v.get("pvcRef").is_none(), "{v}");
        }
    }

    let body = c.metrics();
    let samples = parse_exposition(&body);
    let used = samples
        .iter()
        .find(|s| {
            s.name == "kubelet_volume_stats_used_bytes"
                && s.label("namespace") == Some("shop")
                && s.label("persistentvolumeclaim") == Some("data-web-0")
        })
        .unwrap_or_else(|| panic!("kubelet_volume_stats_used_bytes missing:\n{body}"));
    assert_eq!(used.labels.len(), 2, "{:?}", used.labels);
    for family in [
        "kubelet_volume_stats_capacity_bytes",
        "kubelet_volume_stats_available_bytes",
        "kubelet_volume_stats_inodes",
        "kubelet_volume_stats_inodes_free",
        "kubelet_volume_stats_inodes_used",
    ] {
        assert_eq!(
            samples.iter().filter(|s| s.name == family).count(),
            1,
            "{family}"
        );
        assert!(
            body.contains(&format!("# TYPE {family} gauge\n")),
            "{family}"
        );
    }
    // promtool: only the findings kept on purpose for cAdvisor's names.
    promtool::check_metrics(&body, &CADVISOR_LINT_FINDINGS);
}

#[test]
fn kubernetes_pvc_lookup_needs_the_kubelet_and_credentials() {
    let v2 = testdata("cgroup-v2-systemd");
    let fails = |args: &[&str]| -> String {
        let base = [
            "--listen",
            "127.0.0.1:0",
            "--cgroup-root",
            v2.to_str().unwrap(),
        ];
        collector_fails(&[&base[..], args].concat())
    };
    let err = fails(&["--kubernetes-pvc-lookup"]);
    assert!(
        err.contains("kubernetes_pvc_lookup") && err.contains("kubelet_url"),
        "{err}"
    );
    let err = fails(&[
        "--kubernetes-pvc-lookup",
        "--kubelet-url",
        "http://127.0.0.1:1",
    ]);
    assert!(
        err.contains("--kubernetes-pvc-lookup")
            && err.contains("not running in a cluster")
            && err.contains("KUBERNETES_SERVICE_HOST"),
        "{err}"
    );
}
