//! A pod's network counters: `/proc/<pid>/net/dev` of one of its processes, opened once and
//! re-read with one `pread` per pass by the collection thread that reads the pod's cgroup.
//!
//! An open net/dev shows the network namespace it was opened in, whatever later happens to the
//! process (the file holds the namespace, not the pid): so the descriptor needs no pid check per
//! pass, and a pid reused by another process cannot make the pod report someone else's
//! traffic. It is closed when the container cgroup whose process opened it is removed
//! ([`PodNet::forget`]): a re-created sandbox (a new namespace) is then looked up again, and a
//! deleted pod's namespace is not kept alive by the collector.

use super::{parse_net_dev, Error, Interface};
use crate::cgroup::fds::{FdBudget, Token};
use crate::discovery::naming::{classify, Kind};
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use std::path::{Path, PathBuf};

/// A pod without a process is looked at again every this many passes (in its own slot).
pub const RETRY_EVERY: u64 = 6;

/// Where a pod's network figures come from.
#[derive(Debug, Default)]
pub struct PodNet {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    /// Look for a process in this pass.
    #[default]
    Unknown,
    /// No process was found: looked for again when the caller says so (`retry`).
    NoProcess,
    /// net/dev of the pod's namespace, opened through a process of the container cgroup `source`.
    Kept {
        source: String,
        path: PathBuf,
        fd: OwnedFd,
        _token: Token,
    },
}

/// What a pass needs to find a pod's process.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    pub proc_root: &'a Path,
    /// Kept descriptors come out of this budget; without a share the file is opened for this
    /// read only and the process looked up again in the next pass.
    pub budget: Option<&'static FdBudget>,
}

impl PodNet {
    /// This pass's interfaces (cAdvisor's: without `lo`, veths and docker bridges) of the pod
    /// cgroup `name`, whose directory is `dir`. `retry`: a pod that had no process is looked at
    /// again in this pass. `Ok(None)`: no process in the pod.
    pub fn read(
        &mut self,
        name: &str,
        dir: &Path,
        pod_uid: &str,
        lookup: Lookup<'_>,
        retry: bool,
        buf: &mut Vec<u8>,
    ) -> Result<Option<Vec<Interface>>, Error> {
        if let State::Kept { fd, path, .. } = &self.state {
            match pread_all(fd, buf) {
                Ok(()) => return parse(buf, path).map(Some),
                // Not expected of an open net/dev: look the process up again.
                Err(_) => self.state = State::Unknown,
            }
        }
        if matches!(self.state, State::NoProcess) && !retry {
            return Ok(None);
        }
        let Some((source, path, fd)) = find_process(name, dir, pod_uid, lookup.proc_root) else {
            self.state = State::NoProcess;
            return Ok(None);
        };
        let read = pread_all(&fd, buf).map_err(|e| Error::Io {
            path: path.clone(),
            source: e.into(),
        });
        self.state = State::Unknown;
        read?;
        let interfaces = parse(buf, &path)?;
        if let Some(token) = lookup.budget.and_then(|b| b.take()) {
            self.state = State::Kept {
                source,
                path,
                fd,
                _token: token,
            };
        }
        Ok(Some(interfaces))
    }

    /// The container cgroup `child` was removed (or re-created): if the descriptor was opened
    /// through its process, it is closed and a process looked up again in the next pass.
    pub fn forget(&mut self, child: &str) {
        if matches!(&self.state, State::Kept { source, .. } if source == child) {
            self.state = State::Unknown;
        }
    }

    /// The container cgroup the kept descriptor was opened through, if one is kept.
    pub fn source(&self) -> Option<&str> {
        match &self.state {
            State::Kept { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn parse(buf: &[u8], path: &Path) -> Result<Vec<Interface>, Error> {
    let text = std::str::from_utf8(buf).map_err(|_| Error::Parse {
        path: path.to_path_buf(),
        detail: "not UTF-8".into(),
    })?;
    let mut ifs = parse_net_dev(text).map_err(|detail| Error::Parse {
        path: path.to_path_buf(),
        detail,
    })?;
    ifs.retain(|i| super::is_container_interface(&i.name));
    Ok(ifs)
}

/// A process of one of the pod's containers, and its net/dev opened: (container cgroup name,
/// path for messages, descriptor). Containers are tried in name order; a pid is taken only if
/// its /proc entry, opened before its cgroup file is checked, shows it in the pod (a pid read
/// from cgroup.procs may have exited and been reused since).
fn find_process(
    name: &str,
    dir: &Path,
    pod_uid: &str,
    proc_root: &Path,
) -> Option<(String, PathBuf, OwnedFd)> {
    // cgroup v2: a pod without any process says so in one small file.
    if let Ok(events) = std::fs::read_to_string(dir.join("cgroup.events")) {
        if events.lines().any(|l| l.trim() == "populated 0") {
            return None;
        }
    }
    let mut children: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        // Only the pod's containers: CRI-O's conmon scope sits in the pod too, in the host's
        // network namespace.
        .filter(|leaf| matches!(classify(&format!("{name}/{leaf}")), Kind::Container { .. }))
        .collect();
    children.sort();
    let oflags = OFlags::RDONLY | OFlags::CLOEXEC;
    for leaf in children {
        let Ok(procs) = std::fs::read_to_string(dir.join(&leaf).join("cgroup.procs")) else {
            continue;
        };
        // pid 0: a process outside this pid namespace.
        for pid in procs
            .lines()
            .filter_map(|l| l.trim().parse::<u32>().ok())
            .filter(|p| *p > 0)
            .take(3)
        {
            let pid_dir = proc_root.join(pid.to_string());
            let Ok(pid_fd) = rustix::fs::open(&pid_dir, oflags | OFlags::DIRECTORY, Mode::empty())
            else {
                continue;
            };
            let in_pod = rustix::fs::openat(&pid_fd, "cgroup", oflags, Mode::empty())
                .ok()
                .and_then(|fd| std::io::read_to_string(std::fs::File::from(fd)).ok())
                .is_some_and(|text| cgroup_file_in_pod(&text, pod_uid));
            if !in_pod {
                continue;
            }
            if let Ok(fd) = rustix::fs::openat(&pid_fd, "net/dev", oflags, Mode::empty()) {
                return Some((format!("{name}/{leaf}"), pid_dir.join("net/dev"), fd));
            }
        }
    }
    None
}

/// Whether a /proc/<pid>/cgroup text puts the process in the pod (the cgroupfs driver's dashed
/// uid or the systemd driver's underscored one).
pub fn cgroup_file_in_pod(text: &str, pod_uid: &str) -> bool {
    let dashed = format!("pod{pod_uid}");
    let underscored = format!("pod{}", pod_uid.replace('-', "_"));
    text.lines()
        .any(|l| l.contains(&dashed) || l.contains(&underscored))
}

/// Reads the whole file at offset 0 into `buf`, which then holds exactly the content (the
/// cgroup reader's `read_all`: one `pread` when the content fits).
fn pread_all(fd: &OwnedFd, buf: &mut Vec<u8>) -> Result<(), rustix::io::Errno> {
    let cap = buf.capacity().max(4096);
    buf.resize(cap, 0);
    let mut len = 0;
    let result = crate::cgroup::read_all(fd, buf, &mut len);
    buf.truncate(len);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_file_in_pod_takes_both_drivers_uids() {
        let uid = "11111111-2222-3333-4444-555555555555";
        assert!(cgroup_file_in_pod(
            &format!("0::/kubepods/burstable/pod{uid}/abc\n"),
            uid
        ));
        assert!(cgroup_file_in_pod(
            "12:memory:/x\n0::/kubepods.slice/kubepods-pod11111111_2222_3333_4444_555555555555.slice/x\n",
            uid
        ));
        assert!(!cgroup_file_in_pod("0::/system.slice/cron.service\n", uid));
    }

    #[test]
    fn pread_all_reads_past_a_full_buffer() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, &text).unwrap();
        let fd = rustix::fs::open(&p, OFlags::RDONLY, Mode::empty()).unwrap();
        let mut buf = Vec::new();
        pread_all(&fd, &mut buf).unwrap();
        assert_eq!(buf, text.as_bytes());
        std::fs::write(&p, "short\n").unwrap();
        pread_all(&fd, &mut buf).unwrap();
        assert_eq!(buf, b"short\n");
    }
}
