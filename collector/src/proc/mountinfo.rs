//! Parsers of /proc/<pid>/mountinfo: the device holding a path, and a container's writable layer.

use std::path::{Path, PathBuf};

/// The device (mount source, e.g. `/dev/sda1`; `tmpfs`, `overlay` for virtual filesystems) of
/// the filesystem holding `path`, from mountinfo text: the last mount whose `major:minor` is
/// `dev` (the path's st_dev), else the longest mount point that contains `path`.
pub fn mount_device(mountinfo: &str, path: &Path, dev: Option<(u64, u64)>) -> Option<String> {
    let mut by_dev = None;
    let mut by_prefix: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = pre.split_ascii_whitespace().collect();
        let mut p = post.split_ascii_whitespace();
        let (Some(_fstype), Some(source)) = (p.next(), p.next()) else {
            continue;
        };
        if f.len() < 5 {
            continue;
        }
        if let (Some(d), Some((ma, mi))) = (dev, f[2].split_once(':')) {
            if ma.parse() == Ok(d.0) && mi.parse() == Ok(d.1) {
                by_dev = Some(source.to_string());
            }
        }
        let mount_point = unescape_mount(f[4]);
        if path.starts_with(&mount_point) {
            let depth = Path::new(&mount_point).components().count();
            if by_prefix.as_ref().is_none_or(|(d, _)| depth >= *d) {
                by_prefix = Some((depth, source.to_string()));
            }
        }
    }
    by_dev.or(by_prefix.map(|(_, s)| s))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mount(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `upperdir=` of the overlay mounted at `/` in a process's mount namespace.
pub fn overlay_upperdir(mountinfo: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(mountinfo).ok()?;
    for line in text.lines() {
        let (pre, post) = line.split_once(" - ")?;
        let mount_point = pre.split_ascii_whitespace().nth(4)?;
        if mount_point != "/" {
            continue;
        }
        let mut it = post.split_ascii_whitespace();
        if it.next()? != "overlay" {
            return None;
        }
        let opts = it.nth(1)?;
        return opts
            .split(',')
            .find_map(|o| o.strip_prefix("upperdir="))
            .map(PathBuf::from);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_device_from_fixture_mountinfo() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/proc/mountinfo"),
        )
        .unwrap();
        let dev = |p: &str, d| mount_device(&text, Path::new(p), d);
        // By st_dev first (8:17 is the containerd disk), whatever the path says.
        assert_eq!(
            dev("/var/lib/containerd", Some((8, 17))).as_deref(),
            Some("/dev/sdb1")
        );
        assert_eq!(
            dev("/elsewhere", Some((8, 1))).as_deref(),
            Some("/dev/sda1")
        );
        // Without a matching st_dev: the deepest mount point containing the path.
        assert_eq!(
            dev("/var/lib/containerd/x", None).as_deref(),
            Some("/dev/sdb1")
        );
        assert_eq!(dev("/var/lib", Some((9, 9))).as_deref(), Some("/dev/sda1"));
        assert_eq!(dev("/", None).as_deref(), Some("/dev/sda1"));
        assert_eq!(dev("/dev/shm/a", None).as_deref(), Some("tmpfs"));
        assert_eq!(dev("/mnt/with space/d", None).as_deref(), Some("/dev/sdc1"));
        assert_eq!(mount_device("garbage\n", Path::new("/"), None), None);
    }

    #[test]
    fn upperdir_from_mountinfo() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("mountinfo");
        std::fs::write(&p, "1 0 0:50 / / rw,relatime - overlay overlay rw,lowerdir=/l1:/l2,upperdir=/var/lib/containerd/snapshots/9/fs,workdir=/w\n2 1 0:5 / /proc rw - proc proc rw\n").unwrap();
        assert_eq!(
            overlay_upperdir(&p),
            Some(PathBuf::from("/var/lib/containerd/snapshots/9/fs"))
        );
    }
}
