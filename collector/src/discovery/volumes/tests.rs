//! Tests of volume identity on the kubelet-root fixtures, and the fixture helpers the claim
//! lookup tests share.

use super::*;
use crate::discovery::metadata::SpecVolume;
use crate::proc::fs::pod_volume_dirs;

pub(super) fn testdata(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/volumes")
        .join(p)
}

pub(super) const WEB_UID: &str = "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901";
pub(super) const PV1: &str = "pvc-1111aaaa-0000-4000-8000-000000000001";
pub(super) const PV2: &str = "pvc-2222bbbb-0000-4000-8000-000000000002";

pub(super) fn spec(name: &str, claim: Option<&str>, bound: Option<&str>) -> SpecVolume {
    SpecVolume {
        name: name.into(),
        claim: claim.map(str::to_string),
        bound_volume: bound.map(str::to_string),
        plugin: None,
    }
}

pub(super) fn pod(volumes: Vec<SpecVolume>) -> PodMeta {
    PodMeta {
        uid: WEB_UID.into(),
        name: "web-0".into(),
        namespace: "shop".into(),
        volumes,
        ..Default::default()
    }
}

/// (directory, reported name, claim) of one volume directory.
pub(super) type Row = (String, String, Option<String>);

/// The rows of each volume directory of a fixture pod, and the errors.
pub(super) fn run(root: &Path, pod: Option<&PodMeta>) -> (Vec<Row>, Vec<Error>) {
    let dirs = pod_volume_dirs(root).unwrap();
    let (ids, errors) = identify(root, &dirs, pod);
    let rows = dirs
        .iter()
        .zip(ids)
        .map(|(d, id)| {
            if let Some(p) = &id.pvc_ref {
                assert_eq!(p.namespace, "shop");
            }
            (d.name.clone(), id.name, id.pvc_ref.map(|p| p.name))
        })
        .collect();
    (rows, errors)
}

pub(super) fn row(dir: &str, name: &str, claim: Option<&str>) -> Row {
    (dir.into(), name.into(), claim.map(str::to_string))
}

pub(super) fn web_root() -> PathBuf {
    testdata(&format!("kubelet/pods/{WEB_UID}/volumes"))
}

pub(super) fn web_spec(data_bound: Option<&str>) -> PodMeta {
    pod(vec![
        spec("data", Some("data-web-0"), data_bound),
        spec("cache", None, None),
        spec("config", None, None),
        spec("scratch", Some("web-0-scratch"), None),
        spec("kube-api-access-x7k2p", None, None),
    ])
}

#[test]
fn vol_data_json_as_the_kubelet_writes_it() {
    let v = read_vol_data(&web_root().join(CSI_PLUGIN).join(PV1))
        .unwrap()
        .unwrap();
    assert_eq!(v.spec_vol_id, PV1);
    assert_eq!(v.driver_name, "ebs.csi.aws.com");
    assert_eq!(v.volume_handle, "vol-0123456789abcdef0");
    assert!(v.persistent());
    let inline = read_vol_data(
        &testdata("malformed/volumes")
            .join(CSI_PLUGIN)
            .join("inline-certs"),
    )
    .unwrap()
    .unwrap();
    assert!(!inline.persistent());
    // A directory without one (not CSI) is no error.
    assert_eq!(
        read_vol_data(&web_root().join("kubernetes.io~configmap/config")).unwrap(),
        None
    );
}

/// A hand-named PV directory carrying the name of a configMap volume of the same pod, under
/// a plugin that sorts first (`kubernetes.io~cephfs`), is not taken for the configMap: the
/// configMap's own directory is, and the PV goes to the claim by elimination.
#[test]
fn a_pv_named_like_a_configmap_volume_is_not_that_volume() {
    let t = tempfile::tempdir().unwrap();
    for plugin in ["kubernetes.io~cephfs", "kubernetes.io~configmap"] {
        std::fs::create_dir_all(t.path().join(plugin).join("data")).unwrap();
    }
    let mut config = spec("data", None, None);
    config.plugin = Some("kubernetes.io~configmap");
    let p = pod(vec![config, spec("storage", Some("storage-web-0"), None)]);
    let (rows, errors) = run(t.path(), Some(&p));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        rows,
        vec![
            row("data", "storage", Some("storage-web-0")),
            row("data", "data", None)
        ]
    );
    let dirs = pod_volume_dirs(t.path()).unwrap();
    assert_eq!(dirs[0].plugin, "kubernetes.io~cephfs");
    // The plugin of each kind, from the pod spec as the kubelet's /pods gives it.
    for (json, plugin) in [
        (
            r#"{"name":"a","configMap":{"name":"c"}}"#,
            Some("kubernetes.io~configmap"),
        ),
        (
            r#"{"name":"a","secret":{"secretName":"s"}}"#,
            Some("kubernetes.io~secret"),
        ),
        (
            r#"{"name":"a","emptyDir":{}}"#,
            Some("kubernetes.io~empty-dir"),
        ),
        (
            r#"{"name":"a","projected":{"sources":[]}}"#,
            Some("kubernetes.io~projected"),
        ),
        (
            r#"{"name":"a","downwardAPI":{"items":[]}}"#,
            Some("kubernetes.io~downward-api"),
        ),
        (
            r#"{"name":"a","persistentVolumeClaim":{"claimName":"c"}}"#,
            None,
        ),
        (r#"{"name":"a","nfs":{"server":"s","path":"/"}}"#, None),
    ] {
        let v: crate::discovery::metadata::Volume = serde_json::from_str(json).unwrap();
        assert_eq!(v.plugin(), plugin, "{json}");
    }
}

#[test]
fn without_a_pod_spec_directories_keep_their_names() {
    let (rows, errors) = run(&web_root(), None);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        rows.iter().all(|(d, n, c)| d == n && c.is_none()),
        "{rows:?}"
    );
    let (rows, errors) = run(&web_root(), Some(&pod(vec![])));
    assert!(errors.is_empty() && rows.iter().all(|(d, n, _)| d == n));
}

#[test]
fn bound_volume_then_elimination_name_pv_directories() {
    let (rows, errors) = run(&web_root(), Some(&web_spec(Some(PV1))));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        rows,
        vec![
            row("cache", "cache", None),
            row("config", "config", None),
            row(PV1, "data", Some("data-web-0")),
            // The generic ephemeral volume's claim is <pod>-<volume>.
            row(PV2, "scratch", Some("web-0-scratch")),
        ]
    );
    // The other binding gives the other answer: the lookup decides, not the order.
    let (rows, _) = run(&web_root(), Some(&web_spec(Some(PV2))));
    assert_eq!(rows[2], row(PV1, "scratch", Some("web-0-scratch")));
    assert_eq!(rows[3], row(PV2, "data", Some("data-web-0")));
}

#[test]
fn one_claim_and_one_directory_left_match_by_elimination() {
    let p = pod(vec![
        spec("data", Some("data-web-0"), None),
        spec("cache", None, None),
        spec("config", None, None),
    ]);
    let root = tempfile::tempdir().unwrap();
    for d in [
        "kubernetes.io~empty-dir/cache",
        "kubernetes.io~configmap/config",
        "kubernetes.io~aws-ebs/pv-77",
    ] {
        std::fs::create_dir_all(root.path().join(d)).unwrap();
    }
    let (rows, errors) = run(root.path(), Some(&p));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(rows[2], row("pv-77", "data", Some("data-web-0")));
}

#[test]
fn ambiguous_pv_directories_keep_their_names_and_are_counted() {
    let (rows, errors) = run(&web_root(), Some(&web_spec(None)));
    assert_eq!(rows[0], row("cache", "cache", None));
    assert_eq!(rows[2], row(PV1, PV1, None));
    assert_eq!(rows[3], row(PV2, PV2, None));
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.kind() == "volume_unmapped"));
    let msg = errors[0].to_string();
    assert!(
        msg.contains("shop/web-0")
            && msg.contains(PV1)
            && msg.contains("data-web-0")
            && msg.contains("web-0-scratch"),
        "{msg}"
    );
}

#[test]
fn malformed_vol_data_is_counted_and_mapping_goes_on() {
    let root = testdata("malformed/volumes");
    let p = pod(vec![
        spec("inline-certs", None, None),
        spec("logs", Some("logs-0"), None),
        spec("data", Some("data-0"), Some("local-pv-7f3a")),
    ]);
    let (rows, errors) = run(&root, Some(&p));
    assert_eq!(
        rows,
        vec![
            // Inline CSI volume: named after the spec volume.
            row("inline-certs", "inline-certs", None),
            // Non-CSI PV: its directory name is the PV name.
            row("local-pv-7f3a", "data", Some("data-0")),
            // Malformed vol_data.json: the directory name stands for the PV; elimination.
            row(
                "pvc-3333cccc-0000-4000-8000-000000000003",
                "logs",
                Some("logs-0")
            ),
        ]
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind(), "volume_data");
    let msg = errors[0].to_string();
    assert!(
        msg.contains("pvc-3333cccc-0000-4000-8000-000000000003/vol_data.json"),
        "{msg}"
    );
    // An unreadable one (a directory in its place) is counted the same way.
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join(CSI_PLUGIN).join("pv-x/vol_data.json")).unwrap();
    let (rows, errors) = run(t.path(), Some(&pod(vec![spec("d", Some("c"), None)])));
    assert_eq!(rows, vec![row("pv-x", "d", Some("c"))]);
    assert_eq!(errors[0].kind(), "volume_data", "{errors:?}");
}
