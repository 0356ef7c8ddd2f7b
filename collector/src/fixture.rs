//! Generated cgroup v2 trees (systemd driver, containerd ids) for benchmarks and scale tests.

use std::io;
use std::path::{Path, PathBuf};

/// The cgroup path of container `i` of a generated tree (pods hold two containers each).
pub fn container_dir(root: &Path, i: usize) -> PathBuf {
    let pod = i / 2;
    let uid = format!("{pod:08x}_0000_4000_8000_{pod:012x}");
    root.join("kubepods.slice/kubepods-burstable.slice")
        .join(format!("kubepods-burstable-pod{uid}.slice"))
        .join(format!("cri-containerd-{i:064x}.scope"))
}

fn write(dir: &Path, file: &str, text: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), text)
}

/// Writes the files the kernel provides for one v2 cgroup with cpu, memory, io and pids enabled.
fn write_cgroup(dir: &Path, seed: u64) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write(dir, "cgroup.procs", "")?;
    // No process anywhere in a generated tree.
    write(dir, "cgroup.events", "populated 0\nfrozen 0\n")?;
    write(dir, "cpu.stat", &format!(
        "usage_usec {}\nuser_usec {}\nsystem_usec {}\nnr_periods {}\nnr_throttled {}\nthrottled_usec {}\nnr_bursts 0\nburst_usec 0\n",
        seed * 1000 + 7, seed * 600, seed * 400 + 7, seed, seed / 10, seed * 3
    ))?;
    write(dir, "cpu.max", "100000 100000\n")?;
    write(dir, "cpu.weight", "40\n")?;
    write(
        dir,
        "memory.current",
        &format!("{}\n", 1_048_576 * (seed % 512 + 1)),
    )?;
    write(
        dir,
        "memory.peak",
        &format!("{}\n", 2_097_152 * (seed % 512 + 1)),
    )?;
    write(dir, "memory.swap.current", "0\n")?;
    write(dir, "memory.max", "536870912\n")?;
    write(dir, "memory.swap.max", "max\n")?;
    write(dir, "memory.min", "0\n")?;
    write(dir, "memory.stat", &format!(
        "anon {}\nfile {}\nkernel 1048576\nkernel_stack 65536\npagetables 131072\nsec_pagetables 0\npercpu 0\nsock 0\nvmalloc 0\nshmem 0\nzswap 0\nzswapped 0\nfile_mapped {}\nfile_dirty 0\nfile_writeback 0\nswapcached 0\nanon_thp 0\nfile_thp 0\nshmem_thp 0\ninactive_anon {}\nactive_anon 0\ninactive_file {}\nactive_file 4096\nunevictable 0\nslab_reclaimable 0\nslab_unreclaimable 0\nslab 0\nworkingset_refault_anon 0\nworkingset_refault_file 0\nworkingset_activate_anon 0\nworkingset_activate_file 0\nworkingset_restore_anon 0\nworkingset_restore_file 0\nworkingset_nodereclaim 0\npgscan 0\npgsteal 0\npgscan_kswapd 0\npgscan_direct 0\npgsteal_kswapd 0\npgsteal_direct 0\npgfault {}\npgmajfault {}\npgrefill 0\npgactivate 0\npgdeactivate 0\npglazyfree 0\npglazyfreed 0\nthp_fault_alloc 0\nthp_collapse_alloc 0\n",
        seed * 4096, seed * 2048, seed * 512, seed * 4096, seed * 1024, seed * 11, seed % 7
    ))?;
    write(
        dir,
        "memory.events",
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    )?;
    write(
        dir,
        "io.stat",
        &format!(
            "8:0 rbytes={} wbytes={} rios={} wios={} dbytes=0 dios=0\n",
            seed * 4096,
            seed * 8192,
            seed,
            seed * 2
        ),
    )?;
    write(dir, "pids.current", &format!("{}\n", seed % 50 + 1))?;
    write(dir, "pids.max", "4096\n")?;
    for f in ["cpu.pressure", "memory.pressure", "io.pressure"] {
        write(dir, f, &format!(
            "some avg10=0.00 avg60=0.00 avg300=0.00 total={}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total={}\n",
            seed * 13, seed * 5
        ))?;
    }
    Ok(())
}

/// Generates a v2 tree with `containers` containers (two per pod) under `root`, plus the pod
/// and QoS levels, as a node with that many containers has.
pub fn generate_v2_tree(root: &Path, containers: usize) -> io::Result<()> {
    std::fs::create_dir_all(root)?;
    write(
        root,
        "cgroup.controllers",
        "cpuset cpu io memory hugetlb pids rdma misc\n",
    )?;
    write(
        root,
        "cpu.stat",
        "usage_usec 1000\nuser_usec 600\nsystem_usec 400\n",
    )?;
    write_cgroup(&root.join("kubepods.slice"), 1)?;
    write_cgroup(&root.join("kubepods.slice/kubepods-burstable.slice"), 2)?;
    for i in 0..containers {
        let dir = container_dir(root, i);
        if i % 2 == 0 {
            write_cgroup(dir.parent().expect("pod dir"), i as u64 + 3)?;
        }
        write_cgroup(&dir, i as u64 + 5)?;
    }
    Ok(())
}

/// Every cgroup directory of a tree (what a pass reads), for floor measurements.
pub fn cgroup_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// The files a regular pass reads in each v2 cgroup directory on a node with swap (without
/// swap, memory.swap.current is not read: see `pass_files`). The limit files
/// and memory.events (`cgroup::v2_watched_files`) are read when inotify reports a write, and the
/// limits also every 60th pass (every 6th without watches).
pub const PASS_FILES: [&str; 10] = [
    "cpu.stat",
    "memory.current",
    "memory.peak",
    "memory.swap.current",
    "memory.stat",
    "io.stat",
    "pids.current",
    "cpu.pressure",
    "memory.pressure",
    "io.pressure",
];
/// The files a regular pass reads in each v2 cgroup directory on this machine: `PASS_FILES`
/// without memory.swap.current when /proc/meminfo says `SwapTotal: 0`.
pub fn pass_files() -> Vec<&'static str> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let swap_total = meminfo.lines().find_map(|l| l.strip_prefix("SwapTotal:"));
    let no_swap = swap_total.and_then(|v| v.split_whitespace().next()) == Some("0");
    PASS_FILES
        .iter()
        .copied()
        .filter(|f| !(no_swap && *f == "memory.swap.current"))
        .collect()
}
