//! Reading one cgroup's files into `Stats`: the reusable `Reader` (one buffer, directories
//! opened once, files kept open within the descriptor budget) and the small file readers.

use super::*;

/// What to read in one pass.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    pub cpu: bool,
    pub memory: bool,
    pub io: bool,
    pub pids: bool,
    pub pressure: bool,
    /// Re-read limits (they rarely change; the caller reads them every few passes).
    pub spec: bool,
    /// Read v2 `memory.swap.current`. False when the node has no swap at all (`SwapTotal: 0`
    /// in /proc/meminfo, read in the same pass): no cgroup can then have swapped memory, so
    /// the figure is 0 without a read. (v1 takes swap from memory.stat, read anyway.)
    pub swap: bool,
    /// Read v2 `memory.events` (failcnt and OOM kills). False when the caller knows it has not
    /// changed (the kernel notifies every change; see `V2_EVENT_FILES`): the figures are then
    /// `None` and the caller keeps the last ones.
    pub memory_events: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            cpu: true,
            memory: true,
            io: true,
            pids: true,
            pressure: true,
            spec: true,
            swap: true,
            memory_events: true,
        }
    }
}

/// A reusable reader: one buffer for every file it reads, and each cgroup directory opened once
/// (files are opened relative to it with `openat`, so the kernel walks the long path once per
/// directory instead of once per file). With a budget (`with_budget`), the directories and the
/// first `keep_files` files of each cgroup stay open between passes in the cgroup's `Handles`,
/// and a kept file costs one `pread` per pass instead of `openat` + `read` + `close`.
#[derive(Debug, Default)]
pub struct Reader {
    buf: Vec<u8>,
    len: usize,
    /// Directory and file of the last load, for error messages.
    last_dir: PathBuf,
    last_file: &'static str,
    /// Address and length of the last directory argument (see `load`).
    last_dir_key: (usize, usize),
    /// Its index in `handles.dirs`, once looked up (`None`: not looked up or not kept).
    last_kept_dir: Option<usize>,
    /// A directory opened for this cgroup only (no budget, or the budget is spent).
    transient: Option<(PathBuf, rustix::fd::OwnedFd)>,
    /// The descriptors of the cgroup being read (swapped in by `read_stats`).
    handles: Handles,
    budget: Option<&'static FdBudget>,
    /// Files kept open per cgroup (0: only directories are kept).
    keep_files: usize,
    /// Whether files loaded now may be kept (false while reading the limits, read every few passes).
    pub(super) keep_now: bool,
    /// Where the next kept file is likely to be in `handles.files` (see `file_index_from`).
    file_hint: usize,
    /// Files read by this reader since it was created (for the benches' floor).
    pub files_read: u64,
    /// Files are opened with O_NOATIME (no inode time update per read, as on tmpfs) until the
    /// kernel refuses it once (not the files' owner and no CAP_FOWNER).
    no_atime_refused: bool,
}

/// Where the directory of a load comes from.
enum DirRef {
    Kept(usize),
    Transient,
}

impl Reader {
    pub fn new() -> Self {
        Reader {
            buf: vec![0; 16 * 1024],
            ..Default::default()
        }
    }

    /// The budget this reader keeps descriptors in, if any.
    pub fn budget(&self) -> Option<&'static FdBudget> {
        self.budget
    }

    /// A reader that keeps directories and up to `keep_files` files per cgroup open between
    /// passes, within `budget`.
    pub fn with_budget(budget: &'static FdBudget, keep_files: usize) -> Self {
        Reader {
            budget: Some(budget),
            keep_files,
            ..Reader::new()
        }
    }

    fn gone_or_absent(dir: &Path, name: &str) -> Result<bool, Error> {
        if dir.is_dir() {
            Ok(false)
        } else {
            Err(Error::Gone {
                name: name.to_string(),
            })
        }
    }

    fn io_err(&self, source: rustix::io::Errno) -> Error {
        Error::Io {
            path: self.last_dir.join(self.last_file),
            source: source.into(),
        }
    }

    /// Finds or opens the directory `dir`; the flag says whether it was opened just now.
    fn dir_ref(&mut self, dir: &Path, name: &str) -> Result<(DirRef, bool), Error> {
        use rustix::fs::{Mode, OFlags};
        use rustix::io::Errno;
        if let Some(i) = self.handles.dir_index(dir) {
            return Ok((DirRef::Kept(i), false));
        }
        if matches!(&self.transient, Some((p, _)) if p.as_os_str() == dir.as_os_str()) {
            return Ok((DirRef::Transient, false));
        }
        let fd = match rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => {
                return Err(Error::Gone {
                    name: name.to_string(),
                })
            }
            Err(e) => {
                return Err(Error::Io {
                    path: dir.to_path_buf(),
                    source: e.into(),
                })
            }
        };
        if let Some(token) = self.budget.and_then(|b| b.take()) {
            return Ok((DirRef::Kept(self.handles.keep_dir(dir, fd, token)), true));
        }
        self.transient = Some((dir.to_path_buf(), fd));
        Ok((DirRef::Transient, true))
    }

    /// Reads `dir/file` into the reusable buffer (then see `text`). An absent file is `Ok(false)`;
    /// an absent `dir` is `Gone`.
    pub(crate) fn load(
        &mut self,
        dir: &Path,
        file: &'static str,
        name: &str,
    ) -> Result<bool, Error> {
        use rustix::fs::{Mode, OFlags};
        use rustix::io::Errno;
        self.files_read += 1;
        self.len = 0;
        // Remembered for error messages; the directory is copied only when it changes (a
        // cgroup's files are read one after the other, from the same `CgroupPaths`: the same
        // address and length is the same directory, without comparing the bytes).
        let key = (
            dir.as_os_str().as_encoded_bytes().as_ptr() as usize,
            dir.as_os_str().len(),
        );
        if key != self.last_dir_key {
            if self.last_dir.as_os_str() != dir.as_os_str() {
                let d = self.last_dir.as_mut_os_string();
                d.clear();
                d.push(dir.as_os_str());
            }
            self.last_dir_key = key;
            self.last_kept_dir = None;
        }
        self.last_file = file;
        if self.buf.is_empty() {
            self.buf = vec![0; 16 * 1024];
        }
        // A kept file: one pread at offset 0.
        let kept_dir = match self.last_kept_dir {
            Some(d) => Some(d),
            None => {
                let d = self.handles.dir_index(dir);
                self.last_kept_dir = d;
                d
            }
        };
        if let Some(d) = kept_dir {
            if let Some(i) = self.handles.file_index_from(d, file, self.file_hint) {
                match read_all(&self.handles.files[i].fd, &mut self.buf, &mut self.len) {
                    Ok(()) => {
                        self.file_hint = i + 1;
                        return Ok(true);
                    }
                    // ENODEV (cgroup removed or controller disabled) or another failure: close it
                    // and let a fresh open tell which.
                    Err(_) => {
                        self.handles.drop_file(i);
                        self.len = 0;
                    }
                }
            }
        }
        let mut retried = false;
        let (fd, kept_dir) = loop {
            let (dref, fresh) = self.dir_ref(dir, name)?;
            let dirfd = match &dref {
                DirRef::Kept(i) => &self.handles.dirs[*i].fd,
                DirRef::Transient => &self.transient.as_ref().expect("opened").1,
            };
            let flags = if self.no_atime_refused {
                OFlags::RDONLY | OFlags::CLOEXEC
            } else {
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOATIME
            };
            match rustix::fs::openat(dirfd, file, flags, Mode::empty()) {
                // O_NOATIME needs the file's owner or CAP_FOWNER: without them, open as usual.
                Err(Errno::PERM) if !self.no_atime_refused => {
                    self.no_atime_refused = true;
                    continue;
                }
                Ok(fd) => {
                    break (
                        fd,
                        match dref {
                            DirRef::Kept(i) => Some(i),
                            DirRef::Transient => None,
                        },
                    )
                }
                Err(Errno::NOENT) | Err(Errno::NODEV) => {
                    // A directory kept from an earlier pass may be a removed cgroup whose name
                    // was created again: forget it and look the path up once more.
                    if let (DirRef::Kept(i), false, false) = (&dref, fresh, retried) {
                        // Still the same directory: the file is just absent.
                        if same_dir(&self.handles.dirs[*i].fd, dir) {
                            return Ok(false);
                        }
                        self.handles.drop_dir(*i);
                        self.last_kept_dir = None;
                        retried = true;
                        continue;
                    }
                    return Self::gone_or_absent(dir, name);
                }
                Err(e) => return Err(self.io_err(e)),
            }
        };
        match read_all(&fd, &mut self.buf, &mut self.len) {
            Ok(()) => {}
            // ENODEV: the cgroup was removed between open and read.
            Err(Errno::NODEV) => return Self::gone_or_absent(dir, name),
            Err(e) => return Err(self.io_err(e)),
        }
        if let Some(d) = kept_dir {
            if self.keep_now && self.handles.files_len() < self.keep_files {
                if let Some(token) = self.budget.and_then(|b| b.take()) {
                    self.handles.keep_file(d, file, fd, token);
                }
            }
        }
        Ok(true)
    }

    /// The content of the last file loaded (empty if it is not UTF-8, which parsers then reject).
    pub(crate) fn text(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    pub(crate) fn parse_err(&self, detail: impl Into<String>) -> Error {
        Error::Parse {
            path: self.last_dir.join(self.last_file),
            detail: detail.into(),
        }
    }

    /// Reads every figure of the cgroup, with the descriptors kept for it in `handles` (updated:
    /// files and directories opened now may be kept, stale ones are closed). Errors that leave the
    /// rest readable (a malformed or unreadable file) are pushed to `errors` and the pass goes on;
    /// `Gone` stops it.
    pub fn read_stats(
        &mut self,
        paths: &CgroupPaths,
        handles: &mut Handles,
        opts: ReadOptions,
        errors: &mut Vec<Error>,
    ) -> Result<Stats, Error> {
        self.with_handles(handles, |r| r.read_stats_inner(paths, opts, errors))
    }

    /// Runs `read` with the descriptors kept for one cgroup (`handles`), and puts them back.
    fn with_handles<T>(&mut self, handles: &mut Handles, read: impl FnOnce(&mut Self) -> T) -> T {
        self.transient = None;
        self.file_hint = 0;
        self.last_kept_dir = None;
        self.last_dir_key = (0, 0);
        std::mem::swap(&mut self.handles, handles);
        let r = read(self);
        std::mem::swap(&mut self.handles, handles);
        self.transient = None;
        r
    }

    /// The pids of the cgroup's `cgroup.procs`, in `any_dir` (the v1 cpu controller's first, as
    /// cAdvisor). `None` when the file is absent. A line that is not a pid is a parse error
    /// naming the file. Its descriptor is kept like the figures' (within the same limits): an
    /// open and a close cost 5–6 µs more than a `pread` here, with the inotify watches on.
    pub fn read_procs_of(
        &mut self,
        paths: &CgroupPaths,
        handles: &mut Handles,
    ) -> Result<Option<Vec<u32>>, Error> {
        let Some(dir) = paths.any_dir() else {
            return Ok(None);
        };
        self.with_handles(handles, |r| {
            r.keep_now = true;
            if !r.load(dir, "cgroup.procs", &paths.name)? {
                return Ok(None);
            }
            crate::proc::processes::parse_procs(r.text())
                .map(Some)
                .map_err(|e| r.parse_err(e))
        })
    }

    fn read_stats_inner(
        &mut self,
        paths: &CgroupPaths,
        opts: ReadOptions,
        errors: &mut Vec<Error>,
    ) -> Result<Stats, Error> {
        // Without the spec (read below, or the caller's): `Stats::default` would allocate one.
        let mut stats = Stats {
            cpu: None,
            memory: None,
            io: None,
            pids: None,
            pressure: Pressure::default(),
            spec: NO_SPEC.with(Arc::clone),
        };
        let name = paths.name.as_str();
        self.keep_now = true;
        macro_rules! soft {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(Error::Gone { name }) => return Err(Error::Gone { name }),
                    Err(e) => {
                        errors.push(e);
                        None
                    }
                }
            };
        }
        // CPU: v1 cpuacct/cpu, else v2.
        if opts.cpu {
            stats.cpu =
                if paths.v1(Controller::Cpuacct).is_some() || paths.v1(Controller::Cpu).is_some() {
                    soft!(v1::read_cpu(self, paths, name))
                } else if let Some(dir) = &paths.v2 {
                    soft!(v2::read_cpu(self, dir, name))
                } else {
                    None
                };
        }
        if opts.memory {
            stats.memory = if let Some(dir) = paths.v1(Controller::Memory) {
                soft!(v1::read_memory(self, dir, name))
            } else if let Some(dir) = &paths.v2 {
                soft!(v2::read_memory(
                    self,
                    dir,
                    name,
                    opts.swap,
                    opts.memory_events
                ))
            } else {
                None
            };
        }
        if opts.io {
            stats.io = if let Some(dir) = paths.v1(Controller::Blkio) {
                soft!(v1::read_io(self, dir, name))
            } else if let Some(dir) = &paths.v2 {
                soft!(v2::read_io(self, dir, name))
            } else {
                None
            };
        }
        let pids_dir = paths.v1(Controller::Pids).or(paths.v2.as_deref());
        if opts.pids {
            stats.pids = match pids_dir {
                Some(dir) => soft!(read_pids(self, dir, name)),
                None => None,
            };
        }
        if opts.pressure {
            if let Some(dir) = &paths.v2 {
                stats.pressure.cpu = soft!(v2::read_psi(self, dir, "cpu.pressure", name));
                stats.pressure.memory = soft!(v2::read_psi(self, dir, "memory.pressure", name));
                stats.pressure.io = soft!(v2::read_psi(self, dir, "io.pressure", name));
            }
        }
        if opts.spec {
            // Limits are read every few passes: their files are not worth a kept descriptor.
            self.keep_now = false;
            let mut spec = Spec::default();
            if paths.v1(Controller::Cpu).is_some() || paths.v1(Controller::Memory).is_some() {
                soft!(v1::read_spec(self, paths, name, &mut spec).map(Some));
            }
            if let Some(dir) = &paths.v2 {
                soft!(v2::read_spec(self, dir, name, &mut spec, paths).map(Some));
            }
            if opts.pids {
                if let Some(dir) = pids_dir {
                    spec.pids_max = soft!(read_pids_max(self, dir, name));
                }
            }
            stats.spec = Arc::new(spec);
            stats.apply_spec_limits();
        }
        Ok(stats)
    }
}

thread_local! {
    /// The empty spec of samples read without theirs (one per reading thread: no shared count).
    static NO_SPEC: Arc<Spec> = Arc::default();
}

/// Whether the directory descriptor `fd` is still the directory at `path` (not a removed one
/// whose name was created again).
fn same_dir(fd: &rustix::fd::OwnedFd, path: &Path) -> bool {
    match (rustix::fs::fstat(fd), rustix::fs::stat(path)) {
        (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
        _ => false,
    }
}

/// Reads a whole file from offset 0 with `pread` (one call for a kernfs or tmpfs file that fits the
/// buffer: a short read is its end); the buffer grows for larger files.
pub(crate) fn read_all(
    fd: &rustix::fd::OwnedFd,
    buf: &mut Vec<u8>,
    len: &mut usize,
) -> Result<(), rustix::io::Errno> {
    use rustix::io::Errno;
    *len = 0;
    loop {
        match rustix::io::pread(fd, &mut buf[*len..], *len as u64) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                *len += n;
                if *len < buf.len() {
                    return Ok(());
                }
                let grow = buf.len();
                buf.resize(grow * 2, 0);
            }
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// pids.current (same name on v1 and v2); `max` comes from the spec (`read_pids_max`).
fn read_pids(r: &mut Reader, dir: &Path, name: &str) -> Result<Option<Pids>, Error> {
    Ok(read_u64_file(r, dir, "pids.current", name)?.map(|current| Pids { current, max: None }))
}

/// pids.max (a limit: read with the spec, every few passes). `Some(None)` is unlimited.
fn read_pids_max(r: &mut Reader, dir: &Path, name: &str) -> Result<Option<Option<u64>>, Error> {
    if !r.load(dir, "pids.max", name)? {
        return Ok(None);
    }
    Ok(Some(
        parse::parse_limit(r.text()).map_err(|d| r.parse_err(d))?,
    ))
}

/// Loads a flat keyed file (`key value` lines) and hands each pair to `f`. `Ok(false)` when the
/// file is absent; a malformed line or an error from `f` is a parse error naming the file.
pub(crate) fn read_keyed(
    r: &mut Reader,
    dir: &Path,
    file: &'static str,
    name: &str,
    mut f: impl FnMut(&str, u64) -> Result<(), String>,
) -> Result<bool, Error> {
    if !r.load(dir, file, name)? {
        return Ok(false);
    }
    for kv in parse::flat_keyed(r.text()) {
        if let Err(e) = kv.and_then(|(k, v)| f(k, v)) {
            return Err(r.parse_err(e));
        }
    }
    Ok(true)
}

/// A file holding one number, read leniently (a figure the kernel may not have, such as a peak):
/// `None` when the file is absent or not a number.
pub(crate) fn read_u64_lenient(
    r: &mut Reader,
    dir: &Path,
    file: &'static str,
    name: &str,
) -> Result<Option<u64>, Error> {
    Ok(if r.load(dir, file, name)? {
        parse::parse_u64(r.text())
    } else {
        None
    })
}

/// A limit file (`max`, -1 or a huge value is unlimited) into `slot`; absent leaves it.
pub(crate) fn read_limit(
    r: &mut Reader,
    dir: &Path,
    file: &'static str,
    name: &str,
    slot: &mut Option<u64>,
) -> Result<(), Error> {
    if r.load(dir, file, name)? {
        *slot = parse::parse_limit(r.text()).map_err(|d| r.parse_err(d))?;
    }
    Ok(())
}

/// A file holding one number; `None` when the file is absent.
pub(crate) fn read_u64_file(
    r: &mut Reader,
    dir: &Path,
    file: &'static str,
    name: &str,
) -> Result<Option<u64>, Error> {
    if !r.load(dir, file, name)? {
        return Ok(None);
    }
    let t = r.text();
    parse::parse_u64(t)
        .map(Some)
        .ok_or_else(|| r.parse_err(format!("expected a number, got {:?}", t.trim())))
}

/// The pids listed in a cgroup's `cgroup.procs`.
pub fn read_procs(dir: &Path) -> std::io::Result<Vec<u32>> {
    let text = std::fs::read_to_string(dir.join("cgroup.procs"))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With a spent budget nothing is kept and every file is still read; with room, kept files
    /// are re-read (new content) with one pread and give their descriptors back when dropped.
    #[test]
    fn kept_files_follow_the_budget_and_reread_fresh_content() {
        static BUDGET: std::sync::OnceLock<FdBudget> = std::sync::OnceLock::new();
        let budget = BUDGET.get_or_init(|| FdBudget::new(3));
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        let dir = tmp.path().join("a");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("cpu.stat"), "usage_usec 1\n").unwrap();
        std::fs::write(dir.join("memory.current"), "100\n").unwrap();
        std::fs::write(dir.join("pids.current"), "1\n").unwrap();
        let layout = Layout::detect(tmp.path()).unwrap();
        let paths = layout.paths_of("/a");
        let opts = ReadOptions {
            spec: false,
            ..Default::default()
        };
        let mut r = Reader::with_budget(budget, 8);
        let mut h = Handles::default();
        let mut errors = Vec::new();
        let s = r.read_stats(&paths, &mut h, opts, &mut errors).unwrap();
        assert_eq!(s.cpu.unwrap().usage_ns, 1000);
        // The directory and two files: the budget of three is spent.
        assert_eq!((h.len(), budget.in_use()), (3, 3));
        std::fs::write(dir.join("cpu.stat"), "usage_usec 2\n").unwrap();
        std::fs::write(dir.join("pids.current"), "9\n").unwrap();
        let s = r.read_stats(&paths, &mut h, opts, &mut errors).unwrap();
        assert_eq!(s.cpu.unwrap().usage_ns, 2000);
        assert_eq!(s.memory.unwrap().usage, 100);
        assert_eq!(s.pids.unwrap().current, 9);
        assert!(errors.is_empty(), "{errors:?}");
        drop(h);
        assert_eq!(budget.in_use(), 0);
    }
}
