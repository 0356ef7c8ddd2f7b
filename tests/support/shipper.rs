//! Helpers for the log-shipper end-to-end tests: a fake /var/log/pods tree, line writers, and the real
//! `vigil log-shipper` binary as a child process.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// `until` for a check that needs no `.await` (reading files, the ES test server's state).
pub async fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    super::until(what, timeout, || std::future::ready(f())).await
}

/// `<root>/<ns>_<pod>_<uid>/<container>/` created.
pub fn container_dir(root: &Path, ns: &str, pod: &str, uid: &str, container: &str) -> PathBuf {
    let d = root.join(format!("{ns}_{pod}_{uid}")).join(container);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A CRI line with a timestamp derived from `n` (so first lines differ between files and generations).
/// Full (`F`) stdout CRI lines for `msgs`, numbered from `first` on (see [`cri_line`]).
pub fn stdout_lines<S: AsRef<str>>(first: u64, msgs: impl IntoIterator<Item = S>) -> String {
    msgs.into_iter()
        .zip(first..)
        .map(|(m, n)| cri_line(n, "stdout", "F", m.as_ref()))
        .collect()
}

pub fn cri_line(n: u64, stream: &str, tag: &str, msg: &str) -> String {
    let secs = n / 1_000_000_000;
    let nanos = n % 1_000_000_000;
    format!(
        "2026-11-22T10:{:02}:{:02}.{nanos:09}Z {stream} {tag} {msg}\n",
        (secs / 60) % 60,
        secs % 60
    )
}

/// A docker json-file line.
pub fn docker_line(n: u64, stream: &str, msg: &str) -> String {
    let secs = n / 1_000_000_000;
    let nanos = n % 1_000_000_000;
    let log = serde_json::to_string(&format!("{msg}\n")).unwrap();
    format!("{{\"log\":{log},\"stream\":\"{stream}\",\"time\":\"2026-11-22T10:{:02}:{:02}.{nanos:09}Z\"}}\n", (secs / 60) % 60, secs % 60)
}

pub fn append(path: &Path, data: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(data.as_bytes()).unwrap();
}

/// The shipper child process.
pub struct Shipper {
    pub child: Child,
    pub port: u16,
    pub stderr_path: PathBuf,
}

impl Shipper {
    /// Starts `vigil log-shipper --root <root> --data-dir <data> --listen 127.0.0.1:<free> <extra...>`.
    pub fn start(root: &Path, data_dir: &Path, extra: &[&str]) -> Shipper {
        let port = free_port();
        std::fs::create_dir_all(data_dir).unwrap();
        let stderr_path = data_dir.join(format!("shipper-{port}.log"));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = Command::new(super::vigil_bin())
            .arg("log-shipper")
            .arg("--root")
            .arg(root)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start vigil log-shipper");
        Shipper {
            child,
            port,
            stderr_path,
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY-free: libc::kill on our own child's pid.
        let pid = self.child.id() as i32;
        unsafe_free_kill(pid, 15);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "log shipper did not stop within 20 s of SIGTERM:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET a path on the shipper's HTTP server.
    pub async fn get(&self, path: &str) -> Option<String> {
        let r = reqwest::get(format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .ok()?;
        r.text().await.ok()
    }

    /// A metric's value from /metrics (label-less metrics only).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.get("/metrics").await?;
        text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// Resident memory in KiB from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal with the `kill` command (the workspace forbids unsafe code).
fn unsafe_free_kill(pid: i32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}
