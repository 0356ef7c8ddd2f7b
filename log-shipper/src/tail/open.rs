//! Opening a discovered log file so that a path swapped after discovery (a symlink pointed elsewhere, a directory on
//! the way replaced by a link) cannot redirect the read: the opened descriptor itself is checked. The open does not
//! follow a last component that became a link, and does not wait for a writer when a FIFO was put in the file's place.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a discovered log file was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} leads to {target}, out of the log roots and discovery.link_targets (changed after discovery?): not read")]
    Outside { path: PathBuf, target: PathBuf },
    #[error("{path} is no longer the file discovery saw (device {}, inode {}; now device {}, inode {}): not read",
        expected.0, expected.1, found.0, found.1)]
    Replaced {
        path: PathBuf,
        expected: (u64, u64),
        found: (u64, u64),
    },
    #[error("{path} is not a regular file: not read")]
    NotAFile { path: PathBuf },
    #[error("{path} became a symbolic link after it was resolved (changed after discovery?): not read")]
    Relinked { path: PathBuf },
}

impl OpenError {
    /// The file was refused (logged once and counted), rather than failing to open for an ordinary reason.
    pub fn refused(&self) -> bool {
        !matches!(self, OpenError::Io { .. })
    }
}

/// Opens a discovered log file for reading. A symlink is resolved and its target checked with `allowed` first; then,
/// whatever happened to the path meanwhile, the opened descriptor is checked: a regular file, with the (device,
/// inode) discovery saw (`expect`), at a place (`/proc/self/fd/<n>`, where the kernel says it is) that `allowed`
/// accepts. A descriptor that fails a check is closed unread.
pub fn open(
    path: &Path,
    expect: Option<(u64, u64)>,
    allowed: impl Fn(&Path) -> bool,
) -> Result<File, OpenError> {
    let io = |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let resolved = if path.is_symlink() {
        let target = std::fs::canonicalize(path).map_err(io)?;
        if !allowed(&target) {
            return Err(OpenError::Outside {
                path: path.to_path_buf(),
                target,
            });
        }
        target
    } else {
        path.to_path_buf()
    };
    let file = open_no_follow(&resolved).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => OpenError::Relinked {
            path: path.to_path_buf(),
        },
        _ => io(e),
    })?;
    let md = file.metadata().map_err(io)?;
    if !md.is_file() {
        return Err(OpenError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let found = (md.dev(), md.ino());
    if let Some(expected) = expect {
        if found != expected {
            return Err(OpenError::Replaced {
                path: path.to_path_buf(),
                expected,
                found,
            });
        }
    }
    let target = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).map_err(io)?;
    if !allowed(&target) {
        return Err(OpenError::Outside {
            path: path.to_path_buf(),
            target,
        });
    }
    Ok(file)
}

/// Opens for reading without following a last component that is a link (`ELOOP` then), and without blocking on a
/// FIFO that has no writer (`O_NONBLOCK`; it changes nothing for the regular files that pass the checks: Linux
/// ignores it for them).
fn open_no_follow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    struct Dirs {
        _tmp: tempfile::TempDir,
        root: PathBuf,
        host: PathBuf,
    }

    fn dirs() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("pods").join("ns_p_u").join("c");
        let host = tmp.path().join("host");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("secret"), b"root:x:0:0\n").unwrap();
        std::fs::write(root.join("1.log"), b"a log line\n").unwrap();
        let root = std::fs::canonicalize(tmp.path().join("pods")).unwrap();
        let host = std::fs::canonicalize(&host).unwrap();
        Dirs {
            _tmp: tmp,
            root,
            host,
        }
    }

    fn key(p: &Path) -> (u64, u64) {
        let md = std::fs::metadata(p).unwrap();
        (md.dev(), md.ino())
    }

    #[test]
    fn a_file_or_a_link_inside_the_roots_opens() {
        let d = dirs();
        let c = d.root.join("ns_p_u/c");
        std::os::unix::fs::symlink(c.join("1.log"), c.join("0.log")).unwrap();
        let inside = |p: &Path| p.starts_with(&d.root);
        for p in [c.join("1.log"), c.join("0.log")] {
            let mut s = String::new();
            open(&p, Some(key(&p)), inside)
                .unwrap()
                .read_to_string(&mut s)
                .unwrap();
            assert_eq!(s, "a log line\n");
        }
    }

    /// The TOCTOU case: discovery saw a link into the roots; it points at a host file when the file is opened.
    #[test]
    fn a_link_swapped_after_discovery_is_refused() {
        let d = dirs();
        let c = d.root.join("ns_p_u/c");
        let link = c.join("0.log");
        std::os::unix::fs::symlink(c.join("1.log"), &link).unwrap();
        let seen = key(&link);
        let inside = |p: &Path| p.starts_with(&d.root);
        // Pointed out of the roots.
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(d.host.join("secret"), &link).unwrap();
        let e = open(&link, Some(seen), inside).unwrap_err();
        assert!(
            matches!(&e, OpenError::Outside { target, .. } if *target == d.host.join("secret")),
            "{e}"
        );
        assert!(e.refused());
        assert!(e.to_string().contains("discovery.link_targets"), "{e}");
        // Pointed at another file inside the roots: not the file discovery saw.
        std::fs::write(c.join("2.log"), b"other\n").unwrap();
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(c.join("2.log"), &link).unwrap();
        let e = open(&link, Some(seen), inside).unwrap_err();
        assert!(matches!(e, OpenError::Replaced { .. }), "{e}");
        assert!(e.to_string().contains(&format!("inode {}", seen.1)), "{e}");
    }

    /// A directory on the way replaced by a link out of the roots: the path is not a symlink itself, so only the
    /// check of the opened descriptor sees where it leads.
    #[test]
    fn a_directory_swapped_for_a_link_is_refused_by_the_descriptor_check() {
        let d = dirs();
        let pod = d.root.join("ns_q_u");
        std::fs::create_dir_all(d.host.join("c")).unwrap();
        std::fs::write(d.host.join("c/0.log"), b"host data\n").unwrap();
        std::os::unix::fs::symlink(&d.host, &pod).unwrap();
        let path = pod.join("c/0.log");
        assert!(!path.is_symlink());
        let e = open(&path, None, |p: &Path| p.starts_with(&d.root)).unwrap_err();
        assert!(
            matches!(&e, OpenError::Outside { target, .. } if *target == d.host.join("c/0.log")),
            "{e}"
        );
    }

    #[test]
    fn not_a_regular_file_and_missing_files() {
        let d = dirs();
        let c = d.root.join("ns_p_u/c");
        let inside = |p: &Path| p.starts_with(&d.root);
        std::fs::create_dir(c.join("3.log")).unwrap();
        let e = open(&c.join("3.log"), None, inside).unwrap_err();
        assert!(matches!(e, OpenError::NotAFile { .. }), "{e}");
        let e = open(&c.join("4.log"), None, inside).unwrap_err();
        assert!(!e.refused() && e.to_string().contains("4.log"), "{e}");
    }

    /// A FIFO put where a log file was: refused at once, not an open that waits for a writer forever.
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = dirs();
        let fifo = d.root.join("ns_p_u/c/5.log");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let root = d.root.clone();
        std::thread::spawn(move || {
            let r = open(&fifo, None, |p: &Path| p.starts_with(&root)).map(|_| ());
            let _ = tx.send(r);
        });
        let r = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("opening a FIFO without a writer must not block");
        let e = r.unwrap_err();
        assert!(matches!(e, OpenError::NotAFile { .. }) && e.refused(), "{e}");
    }

    /// The last component swapped for a link between resolving and opening: the open does not follow it.
    #[test]
    fn a_last_component_that_became_a_link_is_not_followed() {
        let d = dirs();
        let c = d.root.join("ns_p_u/c");
        std::os::unix::fs::symlink(d.host.join("secret"), c.join("6.log")).unwrap();
        let e = open_no_follow(&c.join("6.log")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP), "{e}");
        assert!(open_no_follow(&c.join("1.log")).is_ok());
    }
}
