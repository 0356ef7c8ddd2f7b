//! Readers for cgroup v2 (unified) files: cpu.stat, memory.*, io.stat, *.pressure, cpu.max/weight.

use super::parse::{flat_keyed, parse_dev, parse_limit, parse_psi, parse_u64, to_ns};
use super::{CgroupPaths, Controller, Cpu, Error, IoDevice, Memory, Reader, Spec};
use crate::summary::PsiStats;
use std::path::Path;

/// cpu.stat: usage_usec, user_usec, system_usec, nr_periods, nr_throttled, throttled_usec.
pub fn read_cpu(r: &mut Reader, dir: &Path, name: &str) -> Result<Option<Cpu>, Error> {
    if !r.load(dir, "cpu.stat", name)? {
        return Ok(None);
    }
    let text = r.text();
    let mut cpu = Cpu::default();
    let mut saw_usage = false;
    let mut bad = None;
    for kv in flat_keyed(text) {
        let set = match kv {
            Ok((k @ "usage_usec", v)) => {
                saw_usage = true;
                to_ns(k, v, 1000).map(|n| cpu.usage_ns = n)
            }
            Ok((k @ "user_usec", v)) => to_ns(k, v, 1000).map(|n| cpu.user_ns = n),
            Ok((k @ "system_usec", v)) => to_ns(k, v, 1000).map(|n| cpu.system_ns = n),
            Ok(("nr_periods", v)) => {
                cpu.periods = v;
                Ok(())
            }
            Ok(("nr_throttled", v)) => {
                cpu.throttled_periods = v;
                Ok(())
            }
            Ok((k @ "throttled_usec", v)) => to_ns(k, v, 1000).map(|n| cpu.throttled_ns = n),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = set {
            bad = Some(e);
            break;
        }
    }
    if let Some(e) = bad {
        return Err(r.parse_err(e));
    }
    if !saw_usage {
        return Err(r.parse_err("no usage_usec"));
    }
    Ok(Some(cpu))
}

/// memory.current, memory.peak, memory.swap.current, memory.stat, memory.events.
pub fn read_memory(r: &mut Reader, dir: &Path, name: &str) -> Result<Option<Memory>, Error> {
    let mut m = Memory::default();
    if !r.load(dir, "memory.current", name)? {
        return Ok(None);
    }
    let t = r.text();
    m.usage = parse_u64(t)
        .ok_or_else(|| r.parse_err(format!("expected a number, got {:?}", t.trim())))?;
    if r.load(dir, "memory.peak", name)? {
        let t = r.text();
        m.max_usage = parse_u64(t);
    }
    if r.load(dir, "memory.swap.current", name)? {
        let t = r.text();
        m.swap = parse_u64(t).unwrap_or(0);
    }
    if r.load(dir, "memory.stat", name)? {
        let t = r.text();
        let mut bad = None;
        for kv in flat_keyed(t) {
            match kv {
                Ok(("anon", v)) => m.rss = v,
                Ok(("file", v)) => m.cache = v,
                Ok(("file_mapped", v)) => m.mapped_file = v,
                Ok(("inactive_file", v)) => m.inactive_file = v,
                Ok(("pgfault", v)) => m.pgfault = v,
                Ok(("pgmajfault", v)) => m.pgmajfault = v,
                Ok(_) => {}
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = bad {
            return Err(r.parse_err(e));
        }
    }
    if r.load(dir, "memory.events", name)? {
        let t = r.text();
        let mut bad = None;
        for kv in flat_keyed(t) {
            match kv {
                Ok(("max", v)) => m.failcnt = Some(v),
                Ok(("oom_kill", v)) => m.oom_kills = Some(v),
                Ok(_) => {}
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = bad {
            return Err(r.parse_err(e));
        }
    }
    m.working_set = m.usage.saturating_sub(m.inactive_file);
    // v2 memory.stat is hierarchical: cAdvisor reports the same value for both scopes.
    m.pgfault_local = m.pgfault;
    m.pgmajfault_local = m.pgmajfault;
    Ok(Some(m))
}

/// io.stat: `MAJ:MIN rbytes=… wbytes=… rios=… wios=… dbytes=… dios=…`.
pub fn read_io(r: &mut Reader, dir: &Path, name: &str) -> Result<Option<Vec<IoDevice>>, Error> {
    if !r.load(dir, "io.stat", name)? {
        return Ok(None);
    }
    let text = r.text();
    match parse_io_stat(text) {
        Ok(v) => Ok(Some(v)),
        Err(e) => Err(r.parse_err(e)),
    }
}

/// Parses io.stat's nested keyed lines.
pub fn parse_io_stat(text: &str) -> Result<Vec<IoDevice>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_ascii_whitespace();
        let dev = it.next().unwrap_or_default();
        let (major, minor) =
            parse_dev(dev).ok_or_else(|| format!("expected MAJ:MIN, got line {line:?}"))?;
        let mut d = IoDevice {
            major,
            minor,
            ..Default::default()
        };
        for field in it {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| format!("expected key=value in line {line:?}"))?;
            let v: u64 = v.parse().map_err(|_| format!("bad {k} in line {line:?}"))?;
            match k {
                "rbytes" => d.read_bytes = v,
                "wbytes" => d.write_bytes = v,
                "rios" => d.reads = v,
                "wios" => d.writes = v,
                _ => {}
            }
        }
        out.push(d);
    }
    Ok(out)
}

/// One of cpu.pressure, memory.pressure, io.pressure.
pub fn read_psi(
    r: &mut Reader,
    dir: &Path,
    file: &'static str,
    name: &str,
) -> Result<Option<PsiStats>, Error> {
    if !r.load(dir, file, name)? {
        return Ok(None);
    }
    let text = r.text();
    match parse_psi(text) {
        Ok(p) => Ok(Some(p)),
        // PSI disabled at boot: the file exists but reads fail with EOPNOTSUPP (handled as Io upstream).
        Err(e) => Err(r.parse_err(e)),
    }
}

/// cpu.weight → shares (2 + (w − 1) × 262142 / 9999), cpu.max, memory.max, memory.swap.max, memory.min.
/// Fields already filled from v1 controllers (hybrid hosts) are kept.
pub fn read_spec(
    r: &mut Reader,
    dir: &Path,
    name: &str,
    spec: &mut Spec,
    paths: &CgroupPaths,
) -> Result<(), Error> {
    let v1_cpu = paths.v1(Controller::Cpu).is_some();
    let v1_mem = paths.v1(Controller::Memory).is_some();
    if !v1_cpu {
        if r.load(dir, "cpu.weight", name)? {
            let t = r.text();
            let w = parse_u64(t)
                .ok_or_else(|| r.parse_err(format!("expected a number, got {:?}", t.trim())))?;
            spec.cpu_shares = Some(weight_to_shares(w));
        }
        if r.load(dir, "cpu.max", name)? {
            let t = r.text();
            let mut it = t.split_ascii_whitespace();
            let quota = it.next().unwrap_or_default().to_string();
            let period = it.next().and_then(|p| p.parse::<u64>().ok());
            match (quota.as_str(), period) {
                ("max", Some(p)) => {
                    spec.cpu_quota_us = None;
                    spec.cpu_period_us = Some(p);
                }
                (q, Some(p)) => match q.parse::<u64>() {
                    Ok(q) => {
                        spec.cpu_quota_us = Some(q);
                        spec.cpu_period_us = Some(p);
                    }
                    Err(_) => {
                        return Err(r.parse_err(format!(
                            "expected \"<quota|max> <period>\", got {:?}",
                            t.trim()
                        )))
                    }
                },
                _ => {
                    return Err(r.parse_err(format!(
                        "expected \"<quota|max> <period>\", got {:?}",
                        t.trim()
                    )))
                }
            }
        }
    }
    if !v1_mem {
        for (file, slot) in [
            ("memory.max", &mut spec.memory_limit),
            ("memory.swap.max", &mut spec.memory_swap_limit),
            ("memory.min", &mut spec.memory_reservation),
        ] {
            if r.load(dir, file, name)? {
                let t = r.text();
                *slot = parse_limit(t).map_err(|d| r.parse_err(d))?;
            }
        }
        spec.memory_min = spec.memory_reservation;
    }
    Ok(())
}

/// cpu.weight (1..10000) to cpu.shares (2..262144), as the kubelet and runc convert them.
pub fn weight_to_shares(weight: u64) -> u64 {
    if weight == 0 {
        return 2;
    }
    2 + (weight - 1) * 262142 / 9999
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_conversion_matches_runc() {
        // weight 100 (the default) → 2 + 99 × 262142 / 9999 = 2 + 2595 = 2597 (integer division).
        assert_eq!(weight_to_shares(100), 2597);
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10000), 262144);
    }

    #[test]
    fn io_stat_lines() {
        let d =
            parse_io_stat("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n").unwrap();
        assert_eq!(
            d,
            vec![IoDevice {
                major: 8,
                minor: 0,
                read_bytes: 4096,
                write_bytes: 8192,
                reads: 1,
                writes: 2
            }]
        );
        assert!(parse_io_stat("sda rbytes=1")
            .unwrap_err()
            .contains("MAJ:MIN"));
    }
}
