//! io_uring floor of a collection pass: `uring-floor <cgroup-root> <iterations> <file>...` reads
//! the named files of every directory under the root that has the first one, and prints the
//! median time per pass of each mechanism, in the same run: `pread` of kept descriptors (1 and
//! 2 threads), io_uring reads of kept descriptors registered as fixed files (batches of 64 and
//! 512, 1 and 2 threads with a ring each), and io_uring OPENAT (relative to a kept directory
//! descriptor) → READ → CLOSE linked chains, which keep no file open between passes.

use io_uring::{opcode, squeue, types, IoUring};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const SLOT: usize = 4096;

fn dirs_with(root: &Path, first: &str, out: &mut Vec<PathBuf>) {
    if root.join(first).is_file() {
        out.push(root.to_path_buf());
    }
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                dirs_with(&e.path(), first, out);
            }
        }
    }
}

fn median(iters: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut bytes = f();
    let mut t: Vec<Duration> = (0..iters)
        .map(|_| {
            let s = Instant::now();
            bytes = f();
            s.elapsed()
        })
        .collect();
    t.sort();
    (t[t.len() / 2], bytes)
}

fn pread_all(fds: &[File]) -> usize {
    let mut buf = [0u8; SLOT];
    let mut n = 0;
    for f in fds {
        n += std::os::unix::fs::FileExt::read_at(f, &mut buf, 0).unwrap_or(0);
    }
    n
}

struct Ring {
    ring: IoUring,
    bufs: Vec<u8>,
    batch: usize,
    /// (op: 0 open/close, 1 read; -errno) of the first failed operation.
    first_error: Option<(u64, i32)>,
}

impl Ring {
    fn new(entries: usize, batch: usize) -> std::io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .build(entries as u32)?;
        Ok(Ring {
            ring,
            bufs: vec![0; batch * SLOT],
            batch,
            first_error: None,
        })
    }

    /// Reads every fixed file `0..n` at offset 0.
    fn read_fixed(&mut self, n: usize) -> usize {
        let mut bytes = 0;
        let mut i = 0;
        while i < n {
            let k = self.batch.min(n - i);
            {
                let mut sq = self.ring.submission();
                for j in 0..k {
                    let ptr = self.bufs[j * SLOT..].as_mut_ptr();
                    let e = opcode::Read::new(types::Fixed((i + j) as u32), ptr, SLOT as u32)
                        .offset(0)
                        .build();
                    unsafe { sq.push(&e).expect("submission queue full") };
                }
            }
            self.ring.submit_and_wait(k).expect("io_uring_enter");
            for c in self.ring.completion() {
                bytes += c.result().max(0) as usize;
            }
            i += k;
        }
        bytes
    }

    /// OPENAT(dirfd, name) into a direct descriptor slot → READ(slot) → CLOSE(slot), linked.
    fn read_chains(&mut self, jobs: &[(i32, CString)]) -> usize {
        let mut bytes = 0;
        let per = self.batch;
        for chunk in jobs.chunks(per) {
            {
                let mut sq = self.ring.submission();
                for (j, (dirfd, name)) in chunk.iter().enumerate() {
                    let slot = types::DestinationSlot::try_from_slot_target(j as u32).unwrap();
                    let open = opcode::OpenAt::new(types::Fd(*dirfd), name.as_ptr())
                        .flags(libc::O_RDONLY) // a direct descriptor refuses O_CLOEXEC (EINVAL)
                        .file_index(Some(slot))
                        .build()
                        .flags(squeue::Flags::IO_LINK)
                        .user_data(0);
                    let ptr = self.bufs[j * SLOT..].as_mut_ptr();
                    let read = opcode::Read::new(types::Fixed(j as u32), ptr, SLOT as u32)
                        .offset(0)
                        .build()
                        // A short read (every small file) would break a soft link and cancel the close.
                        .flags(squeue::Flags::IO_HARDLINK)
                        .user_data(1);
                    let close = opcode::Close::new(types::Fixed(j as u32))
                        .build()
                        .user_data(0);
                    unsafe {
                        sq.push(&open).expect("sq");
                        sq.push(&read).expect("sq");
                        sq.push(&close).expect("sq");
                    }
                }
            }
            self.ring
                .submit_and_wait(chunk.len() * 3)
                .expect("io_uring_enter");
            for c in self.ring.completion() {
                if c.result() < 0 && self.first_error.is_none() {
                    self.first_error = Some((c.user_data(), c.result()));
                }
                if c.user_data() == 1 {
                    bytes += c.result().max(0) as usize;
                }
            }
        }
        bytes
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: uring-floor <cgroup-root> <iterations> <file>...");
        std::process::exit(2);
    }
    let iters: usize = args[1].parse().expect("iterations must be a number");
    let names = &args[2..];
    let mut dirs = Vec::new();
    dirs_with(Path::new(&args[0]), &names[0], &mut dirs);
    let mut files = Vec::new();
    let mut jobs = Vec::new();
    let dir_fds: Vec<OwnedFd> = dirs
        .iter()
        .map(|d| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_PATH)
                .open(d)
                .expect("open dir")
                .into()
        })
        .collect();
    for (d, dfd) in dirs.iter().zip(&dir_fds) {
        for n in names {
            if let Ok(f) = File::open(d.join(n)) {
                files.push(f);
                jobs.push((dfd.as_raw_fd(), CString::new(n.as_str()).unwrap()));
            }
        }
    }
    let n = files.len();
    println!(
        "{} directories, {n} files per pass, median of {iters} passes",
        dirs.len()
    );
    // io_uring punts an operation it cannot complete inline to io-wq worker threads
    // (`iou-wrk-*`, threads of this process): their count after each mechanism tells which.
    let workers = || {
        std::fs::read_dir("/proc/self/task")
            .map(|rd| {
                rd.flatten()
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .map(|c| c.starts_with("iou-wrk"))
                            .unwrap_or(false)
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let report = |what: &str, (d, bytes): (Duration, usize)| {
        println!(
            "{what:<52} {:>8.2} ms {:>6.0} ns/file ({bytes} bytes, io-wq workers now: {})",
            d.as_secs_f64() * 1e3,
            d.as_nanos() as f64 / n as f64,
            workers()
        );
    };
    report(
        "pread of kept files, 1 thread",
        median(iters, || pread_all(&files)),
    );
    let (a, b) = files.split_at(n / 2);
    report(
        "pread of kept files, 2 threads",
        median(iters, || {
            std::thread::scope(|s| {
                let h = s.spawn(|| pread_all(a));
                pread_all(b) + h.join().unwrap()
            })
        }),
    );
    let raw = |fs: &[File]| fs.iter().map(|f| f.as_raw_fd()).collect::<Vec<i32>>();
    for batch in [64usize, 512] {
        let mut r = match Ring::new(batch, batch) {
            Ok(r) => r,
            Err(e) => {
                println!("io_uring unavailable: {e}");
                return;
            }
        };
        r.ring
            .submitter()
            .register_files(&raw(&files))
            .expect("register files");
        report(
            &format!("io_uring READ of fixed files, batch {batch}, 1 thread"),
            median(iters, || r.read_fixed(n)),
        );
    }
    let mut ra = Ring::new(512, 512).unwrap();
    let mut rb = Ring::new(512, 512).unwrap();
    ra.ring
        .submitter()
        .register_files(&raw(a))
        .expect("register");
    rb.ring
        .submitter()
        .register_files(&raw(b))
        .expect("register");
    let (na, nb) = (a.len(), b.len());
    report(
        "io_uring READ of fixed files, batch 512, 2 threads",
        median(iters, || {
            std::thread::scope(|s| {
                let h = s.spawn(|| ra.read_fixed(na));
                rb.read_fixed(nb) + h.join().unwrap()
            })
        }),
    );
    for batch in [64usize, 256] {
        let mut r = Ring::new(batch * 4, batch).unwrap();
        r.ring
            .submitter()
            .register_files_sparse(batch as u32)
            .expect("sparse files");
        report(
            &format!("io_uring OPENAT→READ→CLOSE chains, batch {batch}, 1 thread"),
            median(iters, || r.read_chains(&jobs)),
        );
        if let Some((op, e)) = r.first_error {
            println!("  first failure: op {op}, errno {}", -e);
        }
    }
}
