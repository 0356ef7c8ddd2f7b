//! Readers for cgroup v2 (unified) files: cpu.stat, memory.*, io.stat, *.pressure, cpu.max/weight.

use super::parse::{parse_dev, parse_psi, to_ns};
use super::{
    read_keyed, read_limit, read_u64_file, read_u64_lenient, CgroupPaths, Controller, Cpu, Error,
    IoDevice, Memory, Reader, Spec,
};
use crate::summary::PsiStats;
use std::path::Path;

/// cpu.stat: usage_usec, user_usec, system_usec, nr_periods, nr_throttled, throttled_usec.
pub fn read_cpu(r: &mut Reader, dir: &Path, name: &str) -> Result<Option<Cpu>, Error> {
    let mut cpu = Cpu::default();
    let mut saw_usage = false;
    let found = read_keyed(r, dir, "cpu.stat", name, |k, v| {
        match k {
            "usage_usec" => {
                saw_usage = true;
                cpu.usage_ns = to_ns(k, v, 1000)?;
            }
            "user_usec" => cpu.user_ns = to_ns(k, v, 1000)?,
            "system_usec" => cpu.system_ns = to_ns(k, v, 1000)?,
            "nr_periods" => cpu.periods = v,
            "nr_throttled" => cpu.throttled_periods = v,
            "throttled_usec" => cpu.throttled_ns = to_ns(k, v, 1000)?,
            _ => {}
        }
        Ok(())
    })?;
    if !found {
        return Ok(None);
    }
    if !saw_usage {
        return Err(r.parse_err("no usage_usec"));
    }
    Ok(Some(cpu))
}

/// memory.current, memory.peak, memory.swap.current (unless `swap` is false: a node without
/// swap, where it is 0), memory.stat, and memory.events when `events` is true (read rarely, so
/// its descriptor is not kept).
pub fn read_memory(
    r: &mut Reader,
    dir: &Path,
    name: &str,
    swap: bool,
    events: bool,
) -> Result<Option<Memory>, Error> {
    let Some(usage) = read_u64_file(r, dir, "memory.current", name)? else {
        return Ok(None);
    };
    let mut m = Memory {
        usage,
        max_usage: read_u64_lenient(r, dir, "memory.peak", name)?,
        swap: if swap {
            read_u64_lenient(r, dir, "memory.swap.current", name)?.unwrap_or(0)
        } else {
            0
        },
        ..Default::default()
    };
    read_keyed(r, dir, "memory.stat", name, |k, v| {
        match k {
            "anon" => m.rss = v,
            "file" => m.cache = v,
            "file_mapped" => m.mapped_file = v,
            "inactive_file" => m.inactive_file = v,
            "pgfault" => m.pgfault = v,
            "pgmajfault" => m.pgmajfault = v,
            _ => {}
        }
        Ok(())
    })?;
    if events {
        let keep = std::mem::replace(&mut r.keep_now, false);
        let read = read_keyed(r, dir, "memory.events", name, |k, v| {
            match k {
                "max" => m.failcnt = Some(v),
                "oom_kill" => m.oom_kills = Some(v),
                _ => {}
            }
            Ok(())
        });
        r.keep_now = keep;
        read?;
    }
    // v2 memory.stat is hierarchical: cAdvisor reports the same value for both scopes.
    m.pgfault_local = m.pgfault;
    m.pgmajfault_local = m.pgmajfault;
    Ok(Some(m.with_working_set()))
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
        if let Some(w) = read_u64_file(r, dir, "cpu.weight", name)? {
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
            read_limit(r, dir, file, name, slot)?;
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
