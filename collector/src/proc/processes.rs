//! A cgroup's processes and the descriptors they hold: cAdvisor's `container_processes`,
//! `container_file_descriptors` and `container_sockets`, counted as cAdvisor counts them (the
//! pids of the cgroup's own `cgroup.procs`, then each one's `/proc/<pid>/fd`).

use super::Error;
use rustix::fs::{Dir, Mode, OFlags, CWD};
use rustix::io::Errno;
use std::path::Path;

/// The processes of one cgroup and their open descriptors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCounts {
    /// Processes listed in the cgroup's own `cgroup.procs` (not its children's).
    pub processes: u64,
    /// Their open descriptors (entries of `/proc/<pid>/fd`).
    pub fds: u64,
    /// Those descriptors that are sockets (the link reads `socket:[<inode>]`); `None` when the
    /// links could not be read (see `count`).
    pub sockets: Option<u64>,
}

/// `cgroup.procs`: one pid per line. A line that is not a pid is an error naming it.
pub fn parse_procs(text: &str) -> Result<Vec<u32>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .parse()
                .map_err(|_| format!("expected a pid, got line {l:?}"))
        })
        .collect()
}

/// Counts the open descriptors and sockets of `pids` under `proc_root`. A process that exits
/// during the count, or a descriptor closed during it, is left out, as cAdvisor does. A
/// descriptor table that cannot be listed for another reason (permissions: another user's
/// table needs root) is an error naming it. Reading another process's links needs
/// CAP_SYS_PTRACE as well: without it the descriptors are still counted, and `sockets` is
/// `None`.
pub fn count(proc_root: &Path, pids: &[u32]) -> Result<ProcessCounts, Error> {
    let mut out = ProcessCounts {
        processes: pids.len() as u64,
        fds: 0,
        sockets: Some(0),
    };
    let mut path = proc_root.to_path_buf();
    // Enough for `socket:[`, the only thing read from the link.
    let mut link = [0u8; 8];
    for pid in pids {
        path.push(pid.to_string());
        path.push("fd");
        let fds = rustix::fs::openat(
            CWD,
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let io_err = |path: &Path, e: Errno| Error::Io {
            path: path.to_path_buf(),
            source: e.into(),
        };
        match fds {
            // Exited: gone from /proc (or a zombie whose table is already closed).
            Err(Errno::NOENT | Errno::SRCH) => {}
            Err(e) => return Err(io_err(&path, e)),
            Ok(fd) => {
                let dir = Dir::read_from(&fd).map_err(|e| io_err(&path, e))?;
                for entry in dir {
                    let entry = match entry {
                        Ok(e) => e,
                        // The process exited while its table was listed.
                        Err(Errno::NOENT | Errno::SRCH) => break,
                        Err(e) => return Err(io_err(&path, e)),
                    };
                    let name = entry.file_name().to_bytes();
                    if name == b"." || name == b".." {
                        continue;
                    }
                    let Some(sockets) = &mut out.sockets else {
                        out.fds += 1;
                        continue;
                    };
                    match rustix::fs::readlinkat_raw(&fd, entry.file_name(), &mut link[..]) {
                        Ok(n) => {
                            out.fds += 1;
                            *sockets += u64::from(link[..n.min(link.len())] == *b"socket:[");
                        }
                        // Closed between the listing and the read.
                        Err(Errno::NOENT) => {}
                        // Listed but not readable: no CAP_SYS_PTRACE.
                        Err(Errno::ACCESS | Errno::PERM) => {
                            out.fds += 1;
                            out.sockets = None;
                        }
                        Err(e) => return Err(io_err(&path, e)),
                    }
                }
            }
        }
        path.pop();
        path.pop();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procs_lines_and_bad_lines() {
        assert_eq!(parse_procs("12\n345\n").unwrap(), vec![12, 345]);
        assert_eq!(parse_procs("").unwrap(), Vec::<u32>::new());
        let e = parse_procs("12\nabc\n").unwrap_err();
        assert!(e.contains("\"abc\""), "{e}");
    }

    /// This process, counted through the real /proc: a socket and a file opened here are
    /// counted, and closing them takes them out again.
    #[test]
    fn counts_this_process_descriptors_and_sockets() {
        let me = std::process::id();
        let proc_root = Path::new("/proc");
        // Other test threads open and close files meanwhile: retry until two counts taken
        // around the change agree with it.
        for _ in 0..50 {
            let before = count(proc_root, &[me]).unwrap();
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let file = std::fs::File::open("/proc/self/stat").unwrap();
            let during = count(proc_root, &[me]).unwrap();
            drop((sock, file));
            let after = count(proc_root, &[me]).unwrap();
            assert_eq!(during.processes, 1);
            if during.fds == before.fds + 2
                && during.sockets == before.sockets.map(|s| s + 1)
                && after == before
            {
                assert!(before.fds >= 3, "{before:?}");
                return;
            }
        }
        panic!("descriptor counts never matched the two opened and closed here");
    }

    /// Without CAP_SYS_PTRACE (dropped in one thread: capabilities are per thread), another
    /// root process's table is listed but its links cannot be read (its capabilities are not a
    /// subset of the reader's): descriptors are counted, sockets are unknown. Needs root, as
    /// the collector.
    #[test]
    fn without_ptrace_descriptors_are_counted_and_sockets_are_unknown() {
        use rustix::thread::{capabilities, set_capabilities, CapabilitySet};
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Until exec, the child holds the test process's descriptors (other threads' too).
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap() != "sleep\n" {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // The exec closes the inherited descriptors just after renaming the process.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let with_all = count(Path::new("/proc"), &[pid]).unwrap();
        let without = std::thread::spawn(move || {
            let mut caps = capabilities(None).unwrap();
            caps.effective.remove(CapabilitySet::SYS_PTRACE);
            caps.permitted.remove(CapabilitySet::SYS_PTRACE);
            set_capabilities(None, caps).unwrap();
            count(Path::new("/proc"), &[pid]).unwrap()
        })
        .join()
        .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(with_all.sockets, Some(0), "{with_all:?}");
        assert!(with_all.fds >= 3, "{with_all:?}");
        assert_eq!(
            without,
            ProcessCounts {
                sockets: None,
                ..with_all
            }
        );
    }

    #[test]
    fn an_exited_process_is_left_out_and_an_unlistable_table_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        // No /proc/<pid> at all: exited.
        let c = count(tmp.path(), &[4_000_000]).unwrap();
        assert_eq!(
            c,
            ProcessCounts {
                processes: 1,
                fds: 0,
                sockets: Some(0)
            }
        );
        // A `fd` that is not a directory cannot be listed: an error naming it.
        std::fs::create_dir(tmp.path().join("7")).unwrap();
        std::fs::write(tmp.path().join("7/fd"), "").unwrap();
        let e = count(tmp.path(), &[7]).unwrap_err().to_string();
        assert!(e.contains("7/fd"), "{e}");
    }
}
