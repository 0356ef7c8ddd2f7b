//! Floors of the read mechanisms over the files of one pass of a generated v2 tree:
//! `floors <cgroup-root> <iterations>` prints the median time per pass of each mechanism.
//! With `PAUSE_MS=<ms>` in the environment, each timed pass comes after that much idle time (as
//! `pass_loop … pause=<ms>`).
//!
//! What a pass cannot go below, whatever it parses: `open+read` (std, full path), `openat+read`
//! (relative to a kept directory descriptor), and `pread` of kept descriptors (1 and 2 threads).
//! Two threads share one descriptor table (openat/close take its lock, and every fdget of a
//! multithreaded process takes a reference on the file); two processes do not: both are measured.
//! Every mechanism reads the files a pass reads per cgroup (`pass_files()`: 10, or 9 on a node
//! without swap). The io_uring floor needs
//! `unsafe` (forbidden in the workspace) and lives in the standalone `benches/uring-floor` crate.

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vigil_collector::fixture::{cgroup_dirs, pass_files};

const SLOT: usize = 4096;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(iters: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let pause = std::env::var("PAUSE_MS").ok().map(|ms| {
        Duration::from_millis(
            ms.parse()
                .expect("PAUSE_MS must be a number of milliseconds"),
        )
    });
    let mut bytes = f();
    let mut t = Vec::with_capacity(iters);
    for _ in 0..iters {
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
        let s = Instant::now();
        bytes = f();
        t.push(s.elapsed());
    }
    (median(t), bytes)
}

fn open_files(dirs: &[PathBuf], names: &[&str]) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    for d in dirs {
        for f in names {
            // The root cgroup has no memory.current, io.stat…: the other mechanisms skip them too.
            if let Ok(fd) =
                rustix::fs::open(d.join(f), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            {
                fds.push(fd);
            }
        }
    }
    fds
}

fn pread_all(fds: &[OwnedFd], buf: &mut [u8]) -> usize {
    let mut b = 0;
    for fd in fds {
        b += rustix::io::pread(fd, &mut *buf, 0).unwrap_or(0);
    }
    b
}

/// `openat` (relative to kept directories) + `read` + `close` of `names` in each directory.
fn openat_all(dir_fds: &[OwnedFd], names: &[&str], buf: &mut [u8]) -> usize {
    let mut b = 0;
    for d in dir_fds {
        for f in names {
            if let Ok(fd) =
                rustix::fs::openat(d, *f, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            {
                b += rustix::io::read(&fd, &mut *buf).unwrap_or(0);
            }
        }
    }
    b
}

fn open_dirs(dirs: &[PathBuf]) -> Vec<OwnedFd> {
    dirs.iter()
        .map(|d| {
            rustix::fs::open(
                d,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .expect("open dir")
        })
        .collect()
}

/// Child mode (`--child <openat|pread> <root> <iterations> <half 0|1>`): one half of the
/// directories in a process of its own (its own descriptor table); prints the median in ns.
fn child(args: &[String]) {
    let dirs = cgroup_dirs(Path::new(&args[1]));
    let iters: usize = args[2].parse().expect("iterations");
    let half = dirs.len() / 2;
    let part = if args[3] == "0" {
        &dirs[..half]
    } else {
        &dirs[half..]
    };
    let names = pass_files();
    let mut buf = vec![0u8; SLOT];
    let (d, _) = if args[0] == "openat" {
        let fds = open_dirs(part);
        time(iters, || openat_all(&fds, &names, &mut buf))
    } else {
        let fds = open_files(part, &names);
        time(iters, || pread_all(&fds, &mut buf))
    };
    println!("{}", d.as_nanos());
}

/// Both halves in two processes at once; the slower median.
fn two_processes(mech: &str, root: &Path, iters: usize) -> Duration {
    let exe = std::env::current_exe().expect("current_exe");
    let kids: Vec<_> = ["0", "1"]
        .iter()
        .map(|half| {
            std::process::Command::new(&exe)
                .args(["--child", mech])
                .arg(root)
                .args([&iters.to_string(), *half])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    kids.into_iter()
        .map(|k| {
            let out = k.wait_with_output().expect("child");
            let ns: u64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .expect("child median");
            Duration::from_nanos(ns)
        })
        .max()
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") && args.len() == 5 {
        child(&args[1..]);
        return;
    }
    if args.len() != 2 {
        eprintln!("usage: floors <cgroup-root> <iterations>");
        std::process::exit(2);
    }
    let root = PathBuf::from(&args[0]);
    let iters: usize = args[1].parse().expect("iterations must be a number");
    let dirs = cgroup_dirs(&root);
    let names = pass_files();
    let files = dirs.len() * names.len();
    println!(
        "{} cgroups, {files} files per pass, median of {iters} passes",
        dirs.len()
    );
    let report = |what: &str, (d, bytes): (Duration, usize)| {
        println!(
            "{what:<44} {:>9.2} ms  {:>6.0} ns/file  ({bytes} bytes)",
            d.as_secs_f64() * 1e3,
            d.as_nanos() as f64 / files as f64
        );
    };

    let mut s = String::with_capacity(SLOT);
    report(
        "std open+read_to_string (full path)",
        time(iters, || {
            let mut b = 0;
            for d in &dirs {
                for f in &names {
                    s.clear();
                    if let Ok(mut file) = std::fs::File::open(d.join(f)) {
                        b += file.read_to_string(&mut s).unwrap_or(0);
                    }
                }
            }
            b
        }),
    );

    let dir_fds = open_dirs(&dirs);
    let mut buf = vec![0u8; SLOT];
    report(
        "openat(kept dir)+read+close",
        time(iters, || openat_all(&dir_fds, &names, &mut buf)),
    );
    let (da, db) = dir_fds.split_at(dir_fds.len() / 2);
    report(
        "openat(kept dir)+read+close, 2 threads",
        time(iters, || {
            std::thread::scope(|sc| {
                let h = sc.spawn(|| openat_all(da, &names, &mut vec![0u8; SLOT]));
                let x = openat_all(db, &names, &mut vec![0u8; SLOT]);
                x + h.join().unwrap()
            })
        }),
    );
    report(
        "openat(kept dir)+read+close, 2 processes",
        (two_processes("openat", &root, iters), 0),
    );

    let fds = open_files(&dirs, &names);
    let mut b1 = vec![0u8; SLOT];
    report(
        "pread of kept files, 1 thread",
        time(iters, || pread_all(&fds, &mut b1)),
    );
    let half = fds.len() / 2;
    let (a, b) = fds.split_at(half);
    report(
        "pread of kept files, 2 threads",
        time(iters, || {
            std::thread::scope(|sc| {
                let h = sc.spawn(|| pread_all(a, &mut vec![0u8; SLOT]));
                let x = pread_all(b, &mut vec![0u8; SLOT]);
                x + h.join().unwrap()
            })
        }),
    );
    report(
        "pread of kept files, 2 processes",
        (two_processes("pread", &root, iters), 0),
    );
}
