//! Pipeline tests of the collection pass: fixture and temporary cgroup trees read end to end,
//! down to the rendered `/metrics` and `/stats/summary` where the behaviour shows there.
//! One file per concept of the pass, beside the helpers they share (below).

mod blocks;
mod filesystems;
mod identity;
mod pod_network;
mod read;
mod tracked;

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

fn v2_dir(root: &Path, rel: &str, usage_usec: u64) -> PathBuf {
    let dir = root.join(rel);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cpu.stat"), format!("usage_usec {usage_usec}\n")).unwrap();
    std::fs::write(dir.join("memory.current"), format!("{}\n", usage_usec * 2)).unwrap();
    std::fs::write(dir.join("pids.current"), "3\n").unwrap();
    dir
}

fn usage_of(snap: &Snapshot, name: &str) -> Option<u64> {
    snap.containers
        .iter()
        .find(|s| &*s.name == name)
        .and_then(|s| s.stats.cpu.as_ref().map(|c| c.usage_ns))
}
