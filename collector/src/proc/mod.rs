//! Node-wide figures from /proc (stat, meminfo, net/dev, diskstats, loadavg, uptime) and filesystems (statvfs).

pub mod fs;
pub mod mountinfo;
pub mod pod_net;
pub mod processes;

use std::path::{Path, PathBuf};

/// Errors while reading /proc.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("malformed {path}: {detail}")]
    Parse { path: PathBuf, detail: String },
}

impl Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { .. } => "proc_io",
            Error::Parse { .. } => "proc_parse",
        }
    }
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Counters of one network interface.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parses /proc/<pid>/net/dev (two header lines, then `name: rx×8 tx×8`).
pub fn parse_net_dev(text: &str) -> Result<Vec<Interface>, String> {
    let mut out = Vec::new();
    for line in text.lines().skip(2).filter(|l| !l.trim().is_empty()) {
        let (name, rest) = line
            .split_once(':')
            .ok_or_else(|| format!("expected \"iface: counters\", got line {line:?}"))?;
        let v: Vec<u64> = rest
            .split_ascii_whitespace()
            .map(|f| f.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("bad counter in line {line:?}"))?;
        if v.len() < 16 {
            return Err(format!(
                "expected 16 counters, got {} in line {line:?}",
                v.len()
            ));
        }
        out.push(Interface {
            name: name.trim().to_string(),
            rx_bytes: v[0],
            rx_packets: v[1],
            rx_errors: v[2],
            rx_dropped: v[3],
            tx_bytes: v[8],
            tx_packets: v[9],
            tx_errors: v[10],
            tx_dropped: v[11],
        });
    }
    Ok(out)
}

/// Reads a net/dev file.
pub fn read_net_dev(path: &Path) -> Result<Vec<Interface>, Error> {
    parse_net_dev(&read(path)?).map_err(|detail| Error::Parse {
        path: path.to_path_buf(),
        detail,
    })
}

/// Interfaces that do not belong to a pod's own traffic (as cAdvisor skips them).
pub fn is_container_interface(name: &str) -> bool {
    name != "lo" && !name.starts_with("veth") && !name.starts_with("docker")
}

/// Cumulative CPU time of the node, from the `cpu` line of /proc/stat, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeCpu {
    /// Non-idle time: user + nice + system + irq + softirq + steal.
    pub usage_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    pub idle_ns: u64,
    pub iowait_ns: u64,
    /// Number of `cpuN` lines.
    pub cores: u64,
    /// `btime`: boot time in seconds since the epoch.
    pub boot_time: u64,
}

/// Parses /proc/stat. `ns_per_tick` is 1e9 / USER_HZ.
pub fn parse_stat(text: &str, ns_per_tick: u64) -> Result<NodeCpu, String> {
    let mut out = NodeCpu::default();
    let mut saw_cpu = false;
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        match it.next() {
            Some("cpu") => {
                let v: Vec<u64> = it
                    .map(|f| f.parse::<u64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| format!("bad counter in line {line:?}"))?;
                if v.len() < 8 {
                    return Err(format!("expected at least 8 counters in line {line:?}"));
                }
                // user nice system idle iowait irq softirq steal (guest is already inside user).
                out.user_ns = (v[0] + v[1]) * ns_per_tick;
                out.system_ns = (v[2] + v[5] + v[6]) * ns_per_tick;
                out.idle_ns = v[3] * ns_per_tick;
                out.iowait_ns = v[4] * ns_per_tick;
                out.usage_ns = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) * ns_per_tick;
                saw_cpu = true;
            }
            Some(s) if s.starts_with("cpu") => out.cores += 1,
            Some("btime") => out.boot_time = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            _ => {}
        }
    }
    if !saw_cpu {
        return Err("no \"cpu\" line".into());
    }
    Ok(out)
}

/// The /proc/meminfo figures the collector uses, in bytes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeMemory {
    pub total: u64,
    pub free: u64,
    pub available: u64,
    pub buffers: u64,
    pub cached: u64,
    pub inactive_file: u64,
    pub active_file: u64,
    pub mapped: u64,
    pub anon_pages: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl NodeMemory {
    /// Usage as cAdvisor computes it for the root cgroup from meminfo: total − free.
    pub fn usage(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }
    /// Working set: usage − inactive file pages, clamped at 0.
    pub fn working_set(&self) -> u64 {
        self.usage().saturating_sub(self.inactive_file)
    }
}

/// Parses /proc/meminfo (`Key:   N kB`).
pub fn parse_meminfo(text: &str) -> Result<NodeMemory, String> {
    let mut m = NodeMemory::default();
    let mut saw_total = false;
    for line in text.lines() {
        let Some((k, rest)) = line.split_once(':') else {
            continue;
        };
        let mut it = rest.split_ascii_whitespace();
        let Some(v) = it.next().and_then(|v| v.parse::<u64>().ok()) else {
            return Err(format!("bad value in line {line:?}"));
        };
        let v = if it.next() == Some("kB") { v * 1024 } else { v };
        match k {
            "MemTotal" => {
                m.total = v;
                saw_total = true;
            }
            "MemFree" => m.free = v,
            "MemAvailable" => m.available = v,
            "Buffers" => m.buffers = v,
            "Cached" => m.cached = v,
            "Inactive(file)" => m.inactive_file = v,
            "Active(file)" => m.active_file = v,
            "Mapped" => m.mapped = v,
            "AnonPages" => m.anon_pages = v,
            "SwapTotal" => m.swap_total = v,
            "SwapFree" => m.swap_free = v,
            _ => {}
        }
    }
    if !saw_total {
        return Err("no MemTotal".into());
    }
    Ok(m)
}

/// One line of /proc/diskstats, in bytes (sectors × 512).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Disk {
    pub major: u64,
    pub minor: u64,
    pub name: String,
    pub reads: u64,
    pub read_bytes: u64,
    pub writes: u64,
    pub write_bytes: u64,
}

/// Parses /proc/diskstats; skips loop and ram devices.
pub fn parse_diskstats(text: &str) -> Result<Vec<Disk>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 10 {
            return Err(format!("expected at least 10 fields in line {line:?}"));
        }
        let num = |i: usize| {
            f[i].parse::<u64>()
                .map_err(|_| format!("bad field {i} in line {line:?}"))
        };
        let name = f[2];
        if name.starts_with("loop") || name.starts_with("ram") {
            continue;
        }
        out.push(Disk {
            major: num(0)?,
            minor: num(1)?,
            name: name.to_string(),
            reads: num(3)?,
            read_bytes: num(5)? * 512,
            writes: num(7)?,
            write_bytes: num(9)? * 512,
        });
    }
    Ok(out)
}

/// Everything node-wide read in one pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    pub cpu: NodeCpu,
    pub memory: NodeMemory,
    pub interfaces: Vec<Interface>,
    pub disks: Vec<Disk>,
    pub load: [f64; 3],
    pub uptime_seconds: f64,
    /// Number of processes and threads (loadavg's 4th field denominator).
    pub threads: u64,
    pub pid_max: Option<u64>,
    /// Read once when the collector starts (`read_topology`), not by `read_node`.
    pub topology: Option<Topology>,
}

/// The node's CPU topology, as cAdvisor's `machine_cpu_sockets` and `machine_cpu_physical_cores`
/// count it from /proc/cpuinfo: distinct `physical id`s, and distinct (`physical id`, `core id`)
/// pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Topology {
    pub sockets: u64,
    pub physical_cores: u64,
}

/// Parses /proc/cpuinfo. `None` when it names no `physical id`/`core id` at all (some
/// architectures and hypervisors leave them out): the topology is then unknown, not zero. A
/// processor with only one of the two, or a value that is not a number, is an error naming it.
pub fn parse_cpuinfo(text: &str) -> Result<Option<Topology>, String> {
    use std::collections::BTreeSet;
    let mut sockets = BTreeSet::new();
    let mut cores = BTreeSet::new();
    // One processor's block: (`processor` line's value, physical id, core id).
    let mut block: (Option<&str>, Option<u64>, Option<u64>) = (None, None, None);
    let mut finish = |block: &mut (Option<&str>, Option<u64>, Option<u64>)| -> Result<(), String> {
        match std::mem::take(block) {
            (_, Some(p), Some(c)) => {
                sockets.insert(p);
                cores.insert((p, c));
                Ok(())
            }
            (_, None, None) => Ok(()),
            (cpu, _, _) => Err(format!(
                "processor {} has only one of \"physical id\" and \"core id\"",
                cpu.unwrap_or("?")
            )),
        }
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            if line.trim().is_empty() {
                finish(&mut block)?;
            }
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("expected a number in line {line:?}"))
        };
        match key {
            "processor" => {
                finish(&mut block)?;
                block.0 = Some(value);
            }
            "physical id" => block.1 = Some(number()?),
            "core id" => block.2 = Some(number()?),
            _ => {}
        }
    }
    finish(&mut block)?;
    Ok((!sockets.is_empty()).then_some(Topology {
        sockets: sockets.len() as u64,
        physical_cores: cores.len() as u64,
    }))
}

/// Reads `proc_root`/cpuinfo (see `parse_cpuinfo`).
pub fn read_topology(proc_root: &Path) -> Result<Option<Topology>, Error> {
    let p = proc_root.join("cpuinfo");
    parse_cpuinfo(&read(&p)?).map_err(|detail| Error::Parse { path: p, detail })
}

/// Reads the node's figures under `proc_root`; a file that fails is reported and the rest is kept.
pub fn read_node(proc_root: &Path, errors: &mut Vec<Error>) -> Node {
    let mut node = Node::default();
    let tick = 1_000_000_000 / rustix::param::clock_ticks_per_second().max(1);
    let p = proc_root.join("stat");
    match read(&p).and_then(|t| {
        parse_stat(&t, tick).map_err(|detail| Error::Parse {
            path: p.clone(),
            detail,
        })
    }) {
        Ok(c) => node.cpu = c,
        Err(e) => errors.push(e),
    }
    let p = proc_root.join("meminfo");
    match read(&p).and_then(|t| {
        parse_meminfo(&t).map_err(|detail| Error::Parse {
            path: p.clone(),
            detail,
        })
    }) {
        Ok(m) => node.memory = m,
        Err(e) => errors.push(e),
    }
    match read_net_dev(&proc_root.join("net/dev")) {
        Ok(i) => node.interfaces = i,
        Err(e) => errors.push(e),
    }
    let p = proc_root.join("diskstats");
    match read(&p).and_then(|t| {
        parse_diskstats(&t).map_err(|detail| Error::Parse {
            path: p.clone(),
            detail,
        })
    }) {
        Ok(d) => node.disks = d,
        Err(e) => errors.push(e),
    }
    let p = proc_root.join("loadavg");
    match read(&p) {
        Ok(t) => {
            let f: Vec<&str> = t.split_ascii_whitespace().collect();
            let l: Vec<f64> = f.iter().take(3).filter_map(|v| v.parse().ok()).collect();
            if l.len() == 3 {
                node.load = [l[0], l[1], l[2]];
                node.threads = f
                    .get(3)
                    .and_then(|s| s.split_once('/'))
                    .and_then(|(_, n)| n.parse().ok())
                    .unwrap_or(0);
            } else {
                errors.push(Error::Parse {
                    path: p,
                    detail: format!("expected three load averages, got {:?}", t.trim()),
                });
            }
        }
        Err(e) => errors.push(e),
    }
    let p = proc_root.join("uptime");
    match read(&p) {
        Ok(t) => match t
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
        {
            Some(u) => node.uptime_seconds = u,
            None => errors.push(Error::Parse {
                path: p,
                detail: format!("expected seconds, got {:?}", t.trim()),
            }),
        },
        Err(e) => errors.push(e),
    }
    node.pid_max = std::fs::read_to_string(proc_root.join("sys/kernel/pid_max"))
        .ok()
        .and_then(|t| t.trim().parse().ok());
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(p: &str) -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata/proc")
                .join(p),
        )
        .unwrap()
    }

    #[test]
    fn cpuinfo_topology() {
        // 8 processors: physical id 0 and 1, core id 0 and 1 in each, two threads per core.
        assert_eq!(
            parse_cpuinfo(&testdata("cpuinfo")).unwrap(),
            Some(Topology {
                sockets: 2,
                physical_cores: 4
            })
        );
        // Core ids repeat across sockets: the pair counts, not the core id alone.
        let one_socket = "processor : 0\nphysical id : 0\ncore id : 0\n\nprocessor : 1\nphysical id : 0\ncore id : 0\n";
        assert_eq!(
            parse_cpuinfo(one_socket).unwrap(),
            Some(Topology {
                sockets: 1,
                physical_cores: 1
            })
        );
        // arm64 has no topology lines: unknown, not zero.
        let arm = "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n\nprocessor\t: 1\nBogoMIPS\t: 50.00\n";
        assert_eq!(parse_cpuinfo(arm).unwrap(), None);
        assert_eq!(parse_cpuinfo("").unwrap(), None);
    }

    #[test]
    fn malformed_cpuinfo_names_the_line_or_processor() {
        let e = parse_cpuinfo("processor : 0\nphysical id : zero\ncore id : 0\n").unwrap_err();
        assert!(e.contains("physical id : zero"), "{e}");
        let e = parse_cpuinfo(
            "processor : 0\nphysical id : 0\ncore id : 0\n\nprocessor : 1\nphysical id : 0\n",
        )
        .unwrap_err();
        assert!(e.contains("processor 1 has only one"), "{e}");
        // Through the reader: the error names the file.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("cpuinfo"), "processor : 0\ncore id : x\n").unwrap();
        let e = read_topology(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("cpuinfo") && e.contains("core id : x"), "{e}");
        assert!(matches!(
            read_topology(&tmp.path().join("absent")),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn net_dev_fixture() {
        let i = parse_net_dev(&testdata("net-dev")).unwrap();
        assert_eq!(i.len(), 2);
        assert_eq!(i[1].name, "eth0");
        // eth0: rx bytes 123456, packets 789, errs 1, drop 2; tx bytes 654321, packets 987, errs 3, drop 4.
        assert_eq!(
            (
                i[1].rx_bytes,
                i[1].rx_packets,
                i[1].rx_errors,
                i[1].rx_dropped
            ),
            (123456, 789, 1, 2)
        );
        assert_eq!(
            (
                i[1].tx_bytes,
                i[1].tx_packets,
                i[1].tx_errors,
                i[1].tx_dropped
            ),
            (654321, 987, 3, 4)
        );
        assert!(parse_net_dev("h1\nh2\neth0: 1 2 3\n")
            .unwrap_err()
            .contains("16 counters"));
    }

    #[test]
    fn stat_fixture() {
        // cpu  100 20 30 1000 50 5 5 10 0 0 (ticks); 10 ms per tick.
        // usage = 100+20+30+5+5+10 = 170 ticks = 1.7 s; user = 120 ticks; system = 30+5+5 = 40 ticks.
        let c = parse_stat(&testdata("stat"), 10_000_000).unwrap();
        assert_eq!(c.usage_ns, 1_700_000_000);
        assert_eq!(c.user_ns, 1_200_000_000);
        assert_eq!(c.system_ns, 400_000_000);
        assert_eq!(c.idle_ns, 10_000_000_000);
        assert_eq!(c.cores, 2);
        assert_eq!(c.boot_time, 1700000000);
    }

    #[test]
    fn meminfo_fixture() {
        let m = parse_meminfo(&testdata("meminfo")).unwrap();
        // MemTotal 16384000 kB, MemFree 8192000 kB, Inactive(file) 1024000 kB.
        assert_eq!(m.total, 16384000 * 1024);
        assert_eq!(m.usage(), (16384000 - 8192000) * 1024);
        assert_eq!(m.working_set(), (16384000 - 8192000 - 1024000) * 1024);
        assert!(parse_meminfo("MemTotal: lots kB\n").is_err());
    }

    #[test]
    fn diskstats_fixture() {
        let d = parse_diskstats(&testdata("diskstats")).unwrap();
        // loop0 skipped; sda: 100 reads, 2000 sectors read, 50 writes, 4000 sectors written.
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].reads, d[0].read_bytes, d[0].writes, d[0].write_bytes),
            (100, 2000 * 512, 50, 4000 * 512)
        );
    }

    #[test]
    fn unreadable_proc_is_counted_not_fatal() {
        let mut errors = Vec::new();
        let node = read_node(Path::new("/nonexistent-proc"), &mut errors);
        assert_eq!(node.cpu.cores, 0);
        assert!(errors.len() >= 5, "{errors:?}");
        assert!(errors.iter().all(|e| e.kind() == "proc_io"));
    }
}
