//! Runs collection passes over an existing tree, for profiling: `pass_loop <cgroup-root> <passes> <threads> <files-kept-per-cgroup> [watch] [pause=<ms>]`
//! (`watch`: with the inotify watches of `vigil collector`; `pause`: idle time between passes,
//! as between the collector's passes, not counted in the time per pass).
//!
//! `PAUSE_MODE` says how the pause is spent, to tell what an idle host costs a pass:
//! `sleep` (the default, as the collector), `spin` (the main thread busy-waits without touching
//! any data, so its CPU never idles) or `warm` (sleep, then both threads busy-wait 3 ms).

use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let pause = match args.last().and_then(|a| a.strip_prefix("pause=")) {
        Some(ms) => {
            let ms = ms.parse().unwrap_or_else(|_| {
                eprintln!("pause=<milliseconds>, got {ms:?}");
                std::process::exit(2);
            });
            args.pop();
            Some(Duration::from_millis(ms))
        }
        None => None,
    };
    if args.len() != 4 && !(args.len() == 5 && args[4] == "watch") {
        eprintln!(
            "usage: pass_loop <cgroup-root> <passes> <threads> <files-kept-per-cgroup> [watch] [pause=<ms>]"
        );
        std::process::exit(2);
    }
    let num = |i: usize| -> usize {
        args[i].parse().unwrap_or_else(|_| {
            eprintln!("argument {} must be a number, got {:?}", i + 1, args[i]);
            std::process::exit(2);
        })
    };
    let mut c = vigil_collector::config::Config::default();
    c.cgroup_root = args[0].clone().into();
    c.pod_log_root = c.cgroup_root.join("no-logs");
    c.node_name = Some("profile".into());
    c.collection_threads = num(2);
    c.open_files_per_cgroup = num(3);
    let mut collector = match vigil_collector::pass::Collector::new(Arc::new(c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    if args.len() == 5 {
        // inotify watches as `vigil collector` has them (their event handling is in the CPU figures).
        collector.start_watcher();
    }
    collector.pass();
    let passes = num(1);
    let mode = std::env::var("PAUSE_MODE").ok();
    if !matches!(mode.as_deref(), None | Some("sleep" | "spin" | "warm")) {
        eprintln!("PAUSE_MODE must be sleep, spin or warm, got {mode:?}");
        std::process::exit(2);
    }
    let cpu0 = cpu_times();
    let mut took = Vec::with_capacity(passes);
    let mut containers = 0;
    for _ in 0..passes {
        if let Some(p) = pause {
            idle(p, mode.as_deref());
        }
        let started = Instant::now();
        let snap = Arc::new(collector.pass());
        took.push(started.elapsed());
        containers = snap.containers.len();
        // As `vigil collector` does: the snapshot goes back to the collector once replaced.
        collector.recycle(snap);
    }
    let per = took.iter().sum::<Duration>() / passes.max(1) as u32;
    took.sort();
    let median = took.get(took.len() / 2).copied().unwrap_or_default();
    let cpu1 = cpu_times();
    let ms = |a: Duration, b: Duration| (b - a).as_secs_f64() * 1e3 / passes.max(1) as f64;
    // CPU time is less sensitive than wall time to other processes on a shared machine.
    println!(
        "{containers} cgroups, {passes} passes, {per:?} per pass, median {median:?} (CPU per pass: user {:.1} ms, system {:.1} ms)",
        ms(cpu0.0, cpu1.0),
        ms(cpu0.1, cpu1.1)
    );
}

/// Spends `pause` between passes as `PAUSE_MODE` says (see the top of this file).
fn idle(pause: Duration, mode: Option<&str>) {
    let spin_for = |d: Duration| {
        let t = Instant::now();
        while t.elapsed() < d {
            std::hint::spin_loop();
        }
    };
    match mode {
        None | Some("sleep") => std::thread::sleep(pause),
        Some("spin") => spin_for(pause),
        Some("warm") => {
            std::thread::sleep(pause);
            let warm = Duration::from_millis(3);
            std::thread::scope(|s| {
                s.spawn(move || spin_for(warm));
                spin_for(warm);
            });
        }
        Some(other) => unreachable!("PAUSE_MODE {other:?} is checked at the start"),
    }
}

/// (user, system) CPU time of this process so far (/proc/self/stat, clock ticks of 10 ms).
fn cpu_times() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields after the command: utime is field 14 overall → [11], stime → [12].
    (
        Duration::from_millis(ticks(11) * 10),
        Duration::from_millis(ticks(12) * 10),
    )
}
