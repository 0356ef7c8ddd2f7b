//! Readers for cgroup v1 controller files: cpuacct.*, cpu.stat, memory.*, blkio.*, limits.

use super::parse::{flat_keyed, parse_dev, to_ns};
use super::{
    read_keyed, read_limit, read_u64_file, read_u64_lenient, CgroupPaths, Controller, Cpu, Error,
    IoDevice, Memory, Reader, Spec,
};
use std::path::Path;

/// Nanoseconds per USER_HZ tick (cpuacct.stat counts ticks).
fn ns_per_tick() -> u64 {
    1_000_000_000u64
        .checked_div(rustix::param::clock_ticks_per_second())
        .unwrap_or(10_000_000)
}

/// cpuacct.usage, cpuacct.stat (user/system ticks), cpu.stat (nr_periods, nr_throttled, throttled_time).
pub fn read_cpu(r: &mut Reader, paths: &CgroupPaths, name: &str) -> Result<Option<Cpu>, Error> {
    let mut cpu = Cpu::default();
    let mut any = false;
    if let Some(dir) = paths.v1(Controller::Cpuacct).or(paths.v1(Controller::Cpu)) {
        if let Some(usage) = read_u64_file(r, dir, "cpuacct.usage", name)? {
            cpu.usage_ns = usage;
            any = true;
        }
        let tick = ns_per_tick();
        read_keyed(r, dir, "cpuacct.stat", name, |k, v| {
            match k {
                "user" => cpu.user_ns = to_ns(k, v, tick)?,
                "system" => cpu.system_ns = to_ns(k, v, tick)?,
                _ => {}
            }
            Ok(())
        })?;
    }
    if let Some(dir) = paths.v1(Controller::Cpu) {
        read_keyed(r, dir, "cpu.stat", name, |k, v| {
            match k {
                "nr_periods" => cpu.periods = v,
                "nr_throttled" => cpu.throttled_periods = v,
                "throttled_time" => cpu.throttled_ns = v,
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(any.then_some(cpu))
}

/// memory.usage_in_bytes, max_usage_in_bytes, failcnt, memory.stat (hierarchical `total_*`), oom_control.
pub fn read_memory(r: &mut Reader, dir: &Path, name: &str) -> Result<Option<Memory>, Error> {
    let Some(usage) = read_u64_file(r, dir, "memory.usage_in_bytes", name)? else {
        return Ok(None);
    };
    let mut m = Memory {
        usage,
        max_usage: read_u64_lenient(r, dir, "memory.max_usage_in_bytes", name)?,
        failcnt: read_u64_lenient(r, dir, "memory.failcnt", name)?,
        ..Default::default()
    };
    read_keyed(r, dir, "memory.stat", name, |k, v| {
        match k {
            "total_cache" => m.cache = v,
            "total_rss" => m.rss = v,
            "total_swap" => m.swap = v,
            "total_mapped_file" => m.mapped_file = v,
            "total_inactive_file" => m.inactive_file = v,
            "total_pgfault" => m.pgfault = v,
            "total_pgmajfault" => m.pgmajfault = v,
            "pgfault" => m.pgfault_local = v,
            "pgmajfault" => m.pgmajfault_local = v,
            _ => {}
        }
        Ok(())
    })?;
    if r.load(dir, "memory.oom_control", name)? {
        // Kernels ≥ 4.13 add `oom_kill N`; older ones have only oom_kill_disable / under_oom.
        for (k, v) in flat_keyed(r.text()).flatten() {
            if k == "oom_kill" {
                m.oom_kills = Some(v);
            }
        }
    }
    Ok(Some(m.with_working_set()))
}

/// blkio.throttle.io_service_bytes(_recursive) and io_serviced(_recursive).
pub fn read_io(r: &mut Reader, dir: &Path, name: &str) -> Result<Option<Vec<IoDevice>>, Error> {
    let mut devices: Vec<IoDevice> = Vec::new();
    let mut any = false;
    for (files, bytes) in [
        (
            [
                "blkio.throttle.io_service_bytes_recursive",
                "blkio.throttle.io_service_bytes",
            ],
            true,
        ),
        (
            [
                "blkio.throttle.io_serviced_recursive",
                "blkio.throttle.io_serviced",
            ],
            false,
        ),
    ] {
        for file in files {
            if !r.load(dir, file, name)? {
                continue;
            }
            let text = r.text();
            any = true;
            if let Err(e) = parse_blkio(text, bytes, &mut devices) {
                return Err(r.parse_err(e));
            }
            break;
        }
    }
    Ok(any.then_some(devices))
}

/// Lines `MAJ:MIN Read|Write|Sync|Async|Discard|Total N` and a final `Total N`.
pub fn parse_blkio(text: &str, bytes: bool, devices: &mut Vec<IoDevice>) -> Result<(), String> {
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() == 2 && f[0] == "Total" {
            continue;
        }
        if f.len() != 3 {
            return Err(format!("expected \"MAJ:MIN Op N\", got line {line:?}"));
        }
        let (major, minor) =
            parse_dev(f[0]).ok_or_else(|| format!("expected MAJ:MIN, got line {line:?}"))?;
        let v: u64 = f[2]
            .parse()
            .map_err(|_| format!("bad value in line {line:?}"))?;
        let idx = match devices
            .iter()
            .position(|d| d.major == major && d.minor == minor)
        {
            Some(i) => i,
            None => {
                devices.push(IoDevice {
                    major,
                    minor,
                    ..Default::default()
                });
                devices.len() - 1
            }
        };
        let d = &mut devices[idx];
        match (f[1], bytes) {
            ("Read", true) => d.read_bytes = v,
            ("Write", true) => d.write_bytes = v,
            ("Read", false) => d.reads = v,
            ("Write", false) => d.writes = v,
            _ => {}
        }
    }
    Ok(())
}

/// cpu.shares, cpu.cfs_quota_us (−1 = unlimited), cpu.cfs_period_us, memory.limit_in_bytes,
/// memory.memsw.limit_in_bytes, memory.soft_limit_in_bytes.
pub fn read_spec(
    r: &mut Reader,
    paths: &CgroupPaths,
    name: &str,
    spec: &mut Spec,
) -> Result<(), Error> {
    if let Some(dir) = paths.v1(Controller::Cpu) {
        if let Some(shares) = read_u64_file(r, dir, "cpu.shares", name)? {
            spec.cpu_shares = Some(shares);
        }
        if r.load(dir, "cpu.cfs_quota_us", name)? {
            let t = r.text();
            let q: i64 = t
                .trim()
                .parse()
                .map_err(|_| r.parse_err(format!("expected a number, got {:?}", t.trim())))?;
            spec.cpu_quota_us = (q > 0).then_some(q as u64);
        }
        spec.cpu_period_us = read_u64_lenient(r, dir, "cpu.cfs_period_us", name)?;
    }
    if let Some(dir) = paths.v1(Controller::Memory) {
        for (file, slot) in [
            ("memory.limit_in_bytes", &mut spec.memory_limit),
            ("memory.memsw.limit_in_bytes", &mut spec.memory_swap_limit),
            ("memory.soft_limit_in_bytes", &mut spec.memory_reservation),
        ] {
            read_limit(r, dir, file, name, slot)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_lines_merge_per_device() {
        let mut d = Vec::new();
        parse_blkio(
            "8:0 Read 4096\n8:0 Write 1024\n8:0 Sync 0\n8:0 Total 5120\nTotal 5120\n",
            true,
            &mut d,
        )
        .unwrap();
        parse_blkio("8:0 Read 3\n8:0 Write 2\nTotal 5\n", false, &mut d).unwrap();
        assert_eq!(
            d,
            vec![IoDevice {
                major: 8,
                minor: 0,
                read_bytes: 4096,
                write_bytes: 1024,
                reads: 3,
                writes: 2
            }]
        );
        assert!(parse_blkio("8:0 Read\n", true, &mut d).is_err());
    }
}
