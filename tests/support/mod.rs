//! What every end-to-end test binary shares: free loopback ports, polling with a deadline, child
//! processes killed on drop, peers that must be installed, and one harness per real peer.
//!
//! Each binary under `tests/` includes this folder once (`#[path = "../support/mod.rs"] mod
//! support;`); a test uses what it needs, so the rest is dead code in that binary.
#![allow(dead_code)]

pub mod aggregator;
pub mod chromium;
pub mod collector;
pub mod es_bulk;
pub mod kube_api;
pub mod kubelet_logs;
pub mod notify;
pub mod problems;
pub mod promtool;
pub mod query;
pub mod shipper;
pub mod sinks;
pub mod tls;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often `until` and `until_blocking` ask again.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// The `vigil` binary cargo built for this test binary. (`option_env!`: the measurement programs
/// in `perf/` include this folder for the Chromium harness, and cargo gives them no binary.)
pub fn vigil_bin() -> &'static str {
    option_env!("CARGO_BIN_EXE_vigil").expect("CARGO_BIN_EXE_vigil: run through cargo test")
}

/// A free TCP port on 127.0.0.1 (bound, then released for the peer to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// `until` for tests without a runtime: sleeps the thread between polls.
pub fn until_blocking<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(POLL_EVERY);
    }
}

/// A child process killed (and reaped) on drop.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `vigil <sub> <args>` expecting it to exit non-zero at start-up (within 30 s, or it is
/// killed and the test fails); returns its stderr.
pub fn start_fails(sub: &str, args: &[&str]) -> String {
    let child = Command::new(vigil_bin())
        .arg(sub)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vigil");
    let mut p = Proc { child, name: format!("vigil {sub}") };
    let what = format!("vigil {sub} {args:?} to exit at start-up");
    let status = until_blocking(&what, Duration::from_secs(30), || p.child.try_wait().unwrap());
    assert!(!status.success(), "vigil {sub} {args:?} exited 0");
    let mut err = String::new();
    std::io::Read::read_to_string(p.child.stderr.as_mut().unwrap(), &mut err).unwrap();
    err
}

/// A file or directory of `collector/testdata`.
pub fn collector_testdata(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("collector/testdata")
        .join(name)
        .display()
        .to_string()
}

/// `vigil collector` flags of the cgroup v2 fixture node (every metric family, its pod and
/// container logs, named `fixture-node`, a pass a second): one node for every test that reads it.
pub fn fixture_node_flags() -> Vec<String> {
    let mut flags = vec!["--housekeeping-interval".to_string(), "1s".to_string()];
    for (flag, dir) in [
        ("--cgroup-root", "cgroup-v2-systemd"),
        ("--pod-log-root", "logs/pods"),
        ("--container-log-root", "logs/containers"),
    ] {
        flags.push(flag.into());
        flags.push(collector_testdata(dir));
    }
    flags.extend(["--node-name".to_string(), "fixture-node".to_string()]);
    flags
}

/// Requires a peer binary: a test that needs it fails (not skips) when it is missing.
pub fn require(bin: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!("{bin} is not installed; scripts/test.sh installs the test peers (Debian packages)");
}

