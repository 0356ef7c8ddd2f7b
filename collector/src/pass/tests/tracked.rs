//! What each tracked cgroup reads when (`tracked.rs`): CPU rates from two samples, process
//! counts every few passes, swap only with swap, watched limits and events, and kept
//! descriptors of cgroups removed or created again.

use super::*;

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
