//! Runs collection passes over an existing tree, for profiling: `pass_loop <cgroup-root> <passes> <threads> <files-kept-per-cgroup>`.

use std::sync::Arc;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 4 {
        eprintln!("usage: pass_loop <cgroup-root> <passes> <threads> <files-kept-per-cgroup>");
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
    let mut collector = match vigil_collector::housekeeping::Collector::new(Arc::new(c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    collector.pass();
    let passes = num(1);
    let started = Instant::now();
    let mut containers = 0;
    for _ in 0..passes {
        containers = collector.pass().containers.len();
    }
    let per = started.elapsed() / passes.max(1) as u32;
    println!("{containers} cgroups, {passes} passes, {per:?} per pass");
}
