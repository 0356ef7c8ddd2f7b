//! Harness for the collector's end-to-end tests: runs the real `vigil collector`, real Prometheus,
//! promtool and node_exporter on free loopback ports, and real cgroups on this machine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require, until_blocking, Proc};

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GET → (status, body); connection errors are status 0.
pub fn get(url: &str) -> (u16, String) {
    match http().get(url).send() {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// The real `vigil collector` on a free port.
pub struct Collector {
    pub proc: Proc,
    pub base: String,
    pub port: u16,
    pub stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Collector {
    /// Starts `vigil collector --listen 127.0.0.1:<port> <args>` and waits for /healthz.
    pub fn start(args: &[&str]) -> Collector {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr.log");
        let child = Command::new(super::vigil_bin())
            .arg("collector")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start vigil collector");
        let mut c = Collector {
            proc: Proc {
                child,
                name: "vigil".into(),
            },
            base: format!("http://127.0.0.1:{port}"),
            port,
            stderr,
            _dir: dir,
        };
        let health = format!("{}/healthz", c.base);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if get(&health).0 == 200 {
                break;
            }
            if let Ok(Some(status)) = c.proc.child.try_wait() {
                panic!("vigil collector exited with {status}: {}", c.log());
            }
            if Instant::now() > deadline {
                panic!("vigil collector not healthy after 30s: {}", c.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn containers(&self) -> serde_json::Value {
        let (s, body) = get(&format!("{}/api/v1/containers", self.base));
        assert_eq!(s, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn metrics(&self) -> String {
        let (s, body) = get(&format!("{}/metrics", self.base));
        assert_eq!(s, 200);
        body
    }
}

/// Runs `vigil collector <args>` expecting it to fail at start-up; returns its stderr.
pub fn collector_fails(args: &[&str]) -> String {
    // Whether start-up succeeds must not depend on running inside a cluster.
    let out = Command::new(super::vigil_bin())
        .arg("collector")
        .args(args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .stdin(Stdio::null())
        .output()
        .expect("run vigil");
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `promtool check metrics` findings the collector's exposition has on purpose: cAdvisor
/// names a counter without `_total` and a gauge with it, and dashboards query them by those
/// names, so vigil keeps cAdvisor's names and types.
pub const CADVISOR_LINT_FINDINGS: [&str; 2] = [
    "container_memory_failcnt counter metrics should have \"_total\" suffix",
    "container_fs_inodes_total non-counter metrics should not have \"_total\" suffix",
];

/// One sample of a text exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(lk, _)| lk == k)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a text exposition (enough for tests: names, labels with escapes, value).
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, rest) = match line.find('{') {
            Some(i) => (&line[..i], &line[i..]),
            None => {
                let mut it = line.split_whitespace();
                let name = it.next().unwrap();
                out.push(Sample {
                    name: name.into(),
                    labels: vec![],
                    value: it.next().unwrap().parse().unwrap(),
                });
                continue;
            }
        };
        let mut labels = Vec::new();
        let bytes: Vec<char> = rest.chars().collect();
        let mut i = 1;
        loop {
            if bytes[i] == '}' {
                i += 1;
                break;
            }
            if bytes[i] == ',' {
                i += 1;
            }
            let mut k = String::new();
            while bytes[i] != '=' {
                k.push(bytes[i]);
                i += 1;
            }
            i += 2; // ="
            let mut v = String::new();
            while bytes[i] != '"' {
                if bytes[i] == '\\' {
                    i += 1;
                    v.push(match bytes[i] {
                        'n' => '\n',
                        c => c,
                    });
                } else {
                    v.push(bytes[i]);
                }
                i += 1;
            }
            i += 1;
            labels.push((k, v));
        }
        let tail: String = bytes[i..].iter().collect();
        let value = tail.split_whitespace().next().unwrap().parse().unwrap();
        out.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    out
}

/// A real cgroup laid out like a Kubernetes container (cgroupfs driver), created in the v1
/// controllers or in the v2 hierarchy, removed on drop (after its processes are killed).
pub struct TestCgroup {
    /// Directories created, deepest last.
    pub dirs: Vec<PathBuf>,
    pub procs: Vec<Proc>,
    pub leaf_dirs: Vec<PathBuf>,
    pub name: String,
}

pub const V1_CONTROLLERS: [&str; 5] = ["cpu", "cpuacct", "memory", "pids", "blkio"];

impl TestCgroup {
    /// Creates `/kubepods/burstable/pod<uid>/<id>` in each of `hierarchies` (paths like /sys/fs/cgroup/cpu).
    pub fn create(hierarchies: &[PathBuf], uid: &str, id: &str) -> TestCgroup {
        let rel = format!("kubepods/burstable/pod{uid}/{id}");
        let mut dirs = Vec::new();
        let mut leaf_dirs = Vec::new();
        for h in hierarchies {
            let mut p = h.clone();
            for seg in rel.split('/') {
                p.push(seg);
                match std::fs::create_dir(&p) {
                    Ok(()) => dirs.push(p.clone()),
                    // Left by an earlier run or made by another test: not ours to remove.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => panic!("mkdir {}: {e}", p.display()),
                }
            }
            leaf_dirs.push(p);
        }
        TestCgroup {
            dirs,
            procs: Vec::new(),
            leaf_dirs,
            name: format!("/{rel}"),
        }
    }

    /// Runs `python3 -c <code>` inside the cgroup: a shell joins every hierarchy, then execs python.
    pub fn spawn_python(&mut self, code: &str) -> u32 {
        self.spawn_python_after(code, "")
    }

    /// Like `spawn_python`, with `exec <prefix> sh -c '<setup> && exec python3 -c "$0"'` after
    /// joining the cgroup: e.g. `unshare -n` and the setup of the new network namespace (`setup`
    /// must not contain single quotes).
    pub fn spawn_python_in(&mut self, prefix: &str, setup: &str, code: &str) -> u32 {
        assert!(
            !setup.contains('\''),
            "setup must not contain single quotes"
        );
        self.spawn_python_after(
            code,
            &format!("{prefix} sh -c '{setup} && exec python3 -c \"$0\"'"),
        )
    }

    fn spawn_python_after(&mut self, code: &str, wrapper: &str) -> u32 {
        let mut script = String::new();
        for d in &self.leaf_dirs {
            script.push_str(&format!("echo $$ > {}/cgroup.procs && ", d.display()));
        }
        if wrapper.is_empty() {
            script.push_str("exec python3 -c \"$0\"");
        } else {
            script.push_str(&format!("exec {wrapper} \"$0\""));
        }
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(code)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3");
        let pid = child.id();
        self.procs.push(Proc {
            child,
            name: "python3".into(),
        });
        pid
    }

    /// Kills the processes and removes the directories (the container disappears).
    pub fn remove(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        self.procs.clear();
        // A killed task leaves the cgroup asynchronously: retry rmdir briefly.
        for d in self.dirs.iter().rev() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while d.exists() {
                match std::fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    Err(e) => {
                        eprintln!("cannot remove {}: {e}", d.display());
                        break;
                    }
                }
            }
        }
        self.dirs.clear();
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Writes a file, creating parents.
pub fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A random-enough hex string (pid, time) for unique cgroup names.
pub fn unique_hex(len: usize) -> String {
    let seed = format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut h: u64 = 0xcbf29ce484222325;
    let mut out = String::new();
    let mut i = 0u64;
    while out.len() < len {
        for b in seed.bytes().chain(i.to_le_bytes()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        out.push_str(&format!("{h:016x}"));
        i += 1;
    }
    out.truncate(len);
    out
}

/// Real Prometheus scraping `targets` every second.
pub struct Prometheus {
    pub proc: Proc,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    pub fn start(targets: &[String]) -> Prometheus {
        let bin = require("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let cfg = dir.path().join("prometheus.yml");
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        write(&cfg, &format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: vigil\n    static_configs:\n      - targets: [{list}]\n"));
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let base = format!("http://127.0.0.1:{port}");
        let p = Prometheus {
            proc: Proc {
                child,
                name: "prometheus".into(),
            },
            base: base.clone(),
            _dir: dir,
        };
        until_blocking("prometheus ready", Duration::from_secs(30), || {
            (get(&format!("{base}/-/ready")).0 == 200).then_some(())
        });
        p
    }

    /// An instant query's result vector.
    pub fn query(&self, expr: &str) -> Vec<serde_json::Value> {
        let r = http()
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send();
        let Ok(r) = r else { return vec![] };
        let v: serde_json::Value = r.json().unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

/// Real prometheus-node-exporter on a free port.
pub struct NodeExporter {
    pub proc: Proc,
    pub base: String,
}

impl NodeExporter {
    pub fn start() -> NodeExporter {
        let bin = require("prometheus-node-exporter");
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // node_cpu_info{package,core}: the topology to compare machine_cpu_* with.
            .arg("--collector.cpu.info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node_exporter");
        let base = format!("http://127.0.0.1:{port}");
        let n = NodeExporter {
            proc: Proc {
                child,
                name: "node_exporter".into(),
            },
            base: base.clone(),
        };
        until_blocking("node_exporter ready", Duration::from_secs(30), || {
            (get(&format!("{base}/metrics")).0 == 200).then_some(())
        });
        n
    }
}
