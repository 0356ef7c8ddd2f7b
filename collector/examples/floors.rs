//! Floors of the read mechanisms over the files of one pass of a generated v2 tree:
//! `floors <cgroup-root> <iterations>` prints the median time per pass of each mechanism.
//!
//! What a pass cannot go below, whatever it parses: `open+read` (std, full path), `openat+read`
//! (relative to a kept directory descriptor), and `pread` of kept descriptors (1 and 2 threads).
//! Every mechanism reads the files a pass reads per cgroup (`pass_files()`: 11, or 10 on a node
//! without swap). The io_uring floor needs
//! `unsafe` (forbidden in the workspace) and lives in the standalone `benches/uring-floor` crate.

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vigil_collector::fixture::{cgroup_dirs, pass_files};

const SLOT: usize = 4096;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(iters: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut bytes = f();
    let mut t = Vec::with_capacity(iters);
    for _ in 0..iters {
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

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
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

    let dir_fds: Vec<OwnedFd> = dirs
        .iter()
        .map(|d| {
            rustix::fs::open(
                d,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .expect("open dir")
        })
        .collect();
    let mut buf = vec![0u8; SLOT];
    report(
        "openat(kept dir)+read+close",
        time(iters, || {
            let mut b = 0;
            for d in &dir_fds {
                for f in &names {
                    if let Ok(fd) =
                        rustix::fs::openat(d, *f, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                    {
                        b += rustix::io::read(&fd, &mut buf).unwrap_or(0);
                    }
                }
            }
            b
        }),
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
}
