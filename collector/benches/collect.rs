//! Collection pass, floor (open+read of the same files) and /metrics rendering on generated v2
//! trees of 100, 1,000 and 5,000 containers on tmpfs (/dev/shm).

/// The allocator the `vigil` binary uses (src/main.rs), so the figures are the binary's; run
/// with the binary's allocator settings in the environment:
/// `MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use vigil_collector::cgroup::v2_watched_files;
use vigil_collector::config::Config;
use vigil_collector::fixture::{cgroup_dirs, generate_v2_tree, pass_files};
use vigil_collector::pass::Collector;

struct Tree(PathBuf);
impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tree(n: usize) -> Tree {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let root = base.join(format!("vigil-bench-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    generate_v2_tree(&root, n).expect("generate tree");
    Tree(root)
}

fn config(root: &Path) -> Arc<Config> {
    config_with(root, None)
}

/// A collector as `vigil collector` runs one: with its inotify watches (limits and
/// memory.events are then read when they change), after one pass.
fn collector(config: Arc<Config>) -> Collector {
    let mut c = Collector::new(config).expect("collector");
    c.start_watcher();
    c.pass();
    c
}

/// One pass, and the snapshot handed back as `vigil collector` does after publishing it.
fn pass_and_recycle(c: &mut Collector) -> usize {
    let snap = Arc::new(c.pass());
    let n = snap.containers.len();
    c.recycle(snap);
    n
}

/// The time of `iters` passes alone, each after `idle`, the snapshot handed back untimed.
fn passes_alone(c: &mut Collector, iters: u64, idle: Duration) -> Duration {
    let mut took = Duration::ZERO;
    for _ in 0..iters {
        std::thread::sleep(idle);
        let started = std::time::Instant::now();
        let snap = c.pass();
        took += started.elapsed();
        c.recycle(Arc::new(snap));
    }
    took
}

/// The default config, or `(collection_threads, open_files_per_cgroup)`.
fn config_with(root: &Path, variant: Option<(usize, usize)>) -> Arc<Config> {
    let mut c = Config::default();
    if let Some((threads, keep)) = variant {
        c.collection_threads = threads;
        c.open_files_per_cgroup = keep;
    }
    c.cgroup_root = root.to_path_buf();
    c.pod_log_root = root.join("no-logs");
    c.node_name = Some("bench".into());
    Arc::new(c)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("collector");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for n in [100usize, 1000, 5000] {
        let t = tree(n);
        let dirs = cgroup_dirs(&t.0);
        let mut c = collector(config(&t.0));
        let first = c.pass();
        assert!(
            first.containers.len() > n,
            "{} cgroups for {n} containers",
            first.containers.len()
        );
        // As `vigil collector` runs it: a pass, then the previous snapshot handed back
        // (its samples freed, its vector kept for the next pass).
        g.bench_with_input(BenchmarkId::new("pass", n), &n, |b, _| {
            b.iter(|| pass_and_recycle(&mut c))
        });
        if n == 1000 {
            // The pass alone, what the collector reports as
            // vigil_collector_collection_duration_seconds: the previous snapshot is handed back
            // after the lock is released, outside that duration.
            g.bench_with_input(BenchmarkId::new("pass_drop_excluded", n), &n, |b, _| {
                b.iter_custom(|iters| passes_alone(&mut c, iters, Duration::ZERO))
            });
            // The same after 300 ms idle, as between the collector's passes (10 s by default):
            // the caches have gone cold, and the pool thread is asleep.
            g.bench_with_input(BenchmarkId::new("pass_after_idle", n), &n, |b, _| {
                b.iter_custom(|iters| passes_alone(&mut c, iters, Duration::from_millis(300)))
            });
        }
        drop(c);
        if n == 1000 {
            // What each part of the pass design buys: threads × files kept open per cgroup
            // (the default is 2 threads, 12 files: every file a pass reads).
            for (threads, keep) in [(1, 0), (2, 0), (1, 12)] {
                let mut v = collector(config_with(&t.0, Some((threads, keep))));
                let id = format!("pass_threads{threads}_keep{keep}");
                g.bench_with_input(BenchmarkId::new(id, n), &n, |b, _| {
                    b.iter(|| pass_and_recycle(&mut v))
                });
            }
        }
        let mut collector = Collector::new(config(&t.0)).expect("collector");
        // The floor: open and read the same files a pass reads (memory.swap.current only on a
        // node with swap; the limit and event files of one cgroup in 60, as the watched pass
        // reads them; the cgroup.events of one process-less pod in 6).
        let watched: Vec<&str> = ["cpu", "memory", "pids"]
            .iter()
            .flat_map(|c| v2_watched_files(c))
            .copied()
            .collect();
        let files = pass_files();
        let mut buf = String::with_capacity(4096);
        let mut iter = 0u64;
        g.bench_with_input(BenchmarkId::new("floor_read_files", n), &n, |b, _| {
            b.iter(|| {
                iter += 1;
                let mut bytes = 0;
                for (i, d) in dirs.iter().enumerate() {
                    let spec: &[&str] = if (iter + i as u64).is_multiple_of(60) {
                        &watched
                    } else {
                        &[]
                    };
                    // A pod without a process is looked at every sixth pass (its cgroup.events).
                    let pod = d
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().contains("-pod"));
                    let events: &[&str] = if pod && (iter + i as u64).is_multiple_of(6) {
                        &["cgroup.events"]
                    } else {
                        &[]
                    };
                    for f in files.iter().chain(spec.iter()).chain(events.iter()) {
                        buf.clear();
                        if let Ok(mut file) = std::fs::File::open(d.join(f)) {
                            let _ = file.read_to_string(&mut buf);
                            bytes += buf.len();
                        }
                    }
                }
                bytes
            })
        });
        let snap = collector.pass();
        let cfg = config(&t.0);
        let mut out = String::new();
        g.bench_with_input(BenchmarkId::new("render_metrics", n), &n, |b, _| {
            b.iter(|| {
                vigil_collector::http::metrics::render(&snap, &cfg, &mut out);
                out.len()
            })
        });
        g.bench_with_input(BenchmarkId::new("render_summary", n), &n, |b, _| {
            b.iter(|| {
                serde_json::to_vec(&vigil_collector::http::summary::build(&snap)).map(|v| v.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
