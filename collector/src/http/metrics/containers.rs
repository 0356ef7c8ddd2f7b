//! The per-container families of `/metrics` under cAdvisor's names: CPU, memory, OOM events, network, disk I/O, filesystem usage, processes, pressure, the spec and the start and last-seen times.

use super::{family, family_multi, line, Out};
use crate::config::Config;
use crate::proc::fs::FsInfo;
use crate::proc::processes::ProcessCounts;
use crate::snapshot::{ContainerSample, Snapshot};
use vigil_common::exposition::{header, Kind, Timestamp};

/// CPU, memory, OOM events, network, disk I/O and filesystem usage: the families written before
/// the volumes'.
pub(super) fn usage(out: &mut Out, snap: &Snapshot, config: &Config, ts: &Timestamp) {
    let secs = |ns: u64| ns as f64 / 1e9;
    if config.enabled("cpu") {
        header(
            out,
            "container_cpu_usage_seconds_total",
            Kind::Counter,
            "Cumulative cpu time consumed in seconds.",
        );
        for c in &snap.containers {
            if let Some(cpu) = &c.stats.cpu {
                line(
                    out,
                    "container_cpu_usage_seconds_total",
                    &c.label_str,
                    &[("cpu", "total")],
                    secs(cpu.usage_ns),
                    ts,
                );
            }
        }
        family(
            out,
            snap,
            ts,
            "container_cpu_user_seconds_total",
            Kind::Counter,
            "Cumulative user cpu time consumed in seconds.",
            |c| c.stats.cpu.as_ref().map(|x| secs(x.user_ns)),
        );
        family(
            out,
            snap,
            ts,
            "container_cpu_system_seconds_total",
            Kind::Counter,
            "Cumulative system cpu time consumed in seconds.",
            |c| c.stats.cpu.as_ref().map(|x| secs(x.system_ns)),
        );
        // The CFS figures only mean something under a quota (cAdvisor writes them only then).
        type Cfs = fn(&crate::cgroup::Cpu) -> f64;
        let cfs: [(&str, &str, Cfs); 3] = [
            (
                "container_cpu_cfs_periods_total",
                "Number of elapsed enforcement period intervals.",
                |x| x.periods as f64,
            ),
            (
                "container_cpu_cfs_throttled_periods_total",
                "Number of throttled period intervals.",
                |x| x.throttled_periods as f64,
            ),
            (
                "container_cpu_cfs_throttled_seconds_total",
                "Total time duration the container has been throttled.",
                |x| x.throttled_ns as f64 / 1e9,
            ),
        ];
        for (name, help, get) in cfs {
            family(out, snap, ts, name, Kind::Counter, help, |c| {
                c.stats
                    .cpu
                    .as_ref()
                    .filter(|_| c.stats.spec.cpu_quota_us.is_some())
                    .map(get)
            });
        }
    }
    if config.enabled("memory") {
        type Get = fn(&crate::cgroup::Memory) -> Option<u64>;
        // cAdvisor's container_memory_failcnt keeps its name and type for dashboards although
        // promtool's lint flags a counter without `_total` (the promtool test allows exactly
        // that finding).
        let families: [(&str, Kind, &str, Get); 8] = [
            (
                "container_memory_usage_bytes",
                Kind::Gauge,
                "Current memory usage in bytes, including all memory regardless of when it was accessed",
                |m| Some(m.usage),
            ),
            (
                "container_memory_working_set_bytes",
                Kind::Gauge,
                "Current working set in bytes.",
                |m| Some(m.working_set),
            ),
            (
                "container_memory_rss",
                Kind::Gauge,
                "Size of RSS in bytes.",
                |m| Some(m.rss),
            ),
            (
                "container_memory_cache",
                Kind::Gauge,
                "Number of bytes of page cache memory.",
                |m| Some(m.cache),
            ),
            (
                "container_memory_swap",
                Kind::Gauge,
                "Container swap usage in bytes.",
                |m| Some(m.swap),
            ),
            (
                "container_memory_mapped_file",
                Kind::Gauge,
                "Size of memory mapped files in bytes.",
                |m| Some(m.mapped_file),
            ),
            (
                "container_memory_max_usage_bytes",
                Kind::Gauge,
                "Maximum memory usage recorded in bytes",
                |m| m.max_usage,
            ),
            (
                "container_memory_failcnt",
                Kind::Counter,
                "Number of memory usage hits limits",
                |m| m.failcnt,
            ),
        ];
        for (name, typ, help, get) in families {
            family(out, snap, ts, name, typ, help, |c| {
                c.stats.memory.as_ref().and_then(get).map(|v| v as f64)
            });
        }
        family_multi(
            out,
            snap,
            ts,
            "container_memory_failures_total",
            Kind::Counter,
            "Cumulative count of memory allocation failures.",
            &["failure_type", "scope"],
            |c, emit| {
                if let Some(x) = &c.stats.memory {
                    emit(&["pgfault", "container"], x.pgfault_local as f64);
                    emit(&["pgmajfault", "container"], x.pgmajfault_local as f64);
                    emit(&["pgfault", "hierarchy"], x.pgfault as f64);
                    emit(&["pgmajfault", "hierarchy"], x.pgmajfault as f64);
                }
            },
        );
    }
    if config.enabled("oom_event") {
        family(
            out,
            snap,
            ts,
            "container_oom_events_total",
            Kind::Counter,
            "Count of out of memory events observed for the container",
            |c| {
                c.stats
                    .memory
                    .as_ref()
                    .map(|x| x.oom_kills.unwrap_or(0) as f64)
            },
        );
    }
    if config.enabled("network") {
        type Get = fn(&crate::proc::Interface) -> u64;
        let nets: [(&str, &str, Get); 8] = [
            (
                "container_network_receive_bytes_total",
                "Cumulative count of bytes received",
                |i| i.rx_bytes,
            ),
            (
                "container_network_receive_packets_total",
                "Cumulative count of packets received",
                |i| i.rx_packets,
            ),
            (
                "container_network_receive_packets_dropped_total",
                "Cumulative count of packets dropped while receiving",
                |i| i.rx_dropped,
            ),
            (
                "container_network_receive_errors_total",
                "Cumulative count of errors encountered while receiving",
                |i| i.rx_errors,
            ),
            (
                "container_network_transmit_bytes_total",
                "Cumulative count of bytes transmitted",
                |i| i.tx_bytes,
            ),
            (
                "container_network_transmit_packets_total",
                "Cumulative count of packets transmitted",
                |i| i.tx_packets,
            ),
            (
                "container_network_transmit_packets_dropped_total",
                "Cumulative count of packets dropped while transmitting",
                |i| i.tx_dropped,
            ),
            (
                "container_network_transmit_errors_total",
                "Cumulative count of errors encountered while transmitting",
                |i| i.tx_errors,
            ),
        ];
        for (name, help, get) in nets {
            family_multi(
                out,
                snap,
                ts,
                name,
                Kind::Counter,
                help,
                &["interface"],
                |c, emit| {
                    if let Some(ifs) = &c.network {
                        for i in ifs {
                            emit(&[&i.name], get(i) as f64);
                        }
                    }
                },
            );
        }
    }
    if config.enabled("diskIO") {
        type Get = fn(&crate::cgroup::IoDevice) -> u64;
        let ios: [(&str, &str, Get); 4] = [
            (
                "container_fs_reads_bytes_total",
                "Cumulative count of bytes read",
                |d| d.read_bytes,
            ),
            (
                "container_fs_writes_bytes_total",
                "Cumulative count of bytes written",
                |d| d.write_bytes,
            ),
            (
                "container_fs_reads_total",
                "Cumulative count of reads completed",
                |d| d.reads,
            ),
            (
                "container_fs_writes_total",
                "Cumulative count of writes completed",
                |d| d.writes,
            ),
        ];
        for (name, help, get) in ios {
            family_multi(
                out,
                snap,
                ts,
                name,
                Kind::Counter,
                help,
                &["device"],
                |c, emit| {
                    if let Some(devs) = &c.stats.io {
                        for d in devs {
                            emit(&[&device_name(snap, d.major, d.minor)], get(d) as f64);
                        }
                    }
                },
            );
        }
    }
    if config.enabled("disk") {
        // cAdvisor's device label is the mount source (/dev/sda1); the path stands in when
        // mountinfo has no entry for it.
        let dev_label = |f: Option<&FsInfo>| {
            f.map(|f| {
                f.device
                    .clone()
                    .unwrap_or_else(|| f.path.display().to_string())
            })
            .unwrap_or_default()
        };
        let image_dev = dev_label(snap.image_fs.as_ref());
        let image_cap = snap.image_fs.as_ref().map(|f| f.capacity as f64);
        let root_dev = dev_label(snap.root_fs.as_ref());
        family_multi(
            out,
            snap,
            ts,
            "container_fs_usage_bytes",
            Kind::Gauge,
            "Number of bytes that are consumed by the container on this filesystem.",
            &["device"],
            |c, emit| {
                if &*c.name == "/" {
                    if let Some(f) = &snap.root_fs {
                        emit(&[&root_dev], f.used as f64);
                    }
                } else if let Some(u) = c.rootfs {
                    emit(&[&image_dev], u.bytes as f64);
                }
            },
        );
        family_multi(
            out,
            snap,
            ts,
            "container_fs_limit_bytes",
            Kind::Gauge,
            "Number of bytes that can be consumed by the container on this filesystem.",
            &["device"],
            |c, emit| {
                if &*c.name == "/" {
                    if let Some(f) = &snap.root_fs {
                        emit(&[&root_dev], f.capacity as f64);
                    }
                } else if let (Some(_), Some(cap)) = (c.rootfs, image_cap) {
                    emit(&[&image_dev], cap);
                }
            },
        );
        // Inodes of the filesystem the figures above are on, as cAdvisor reports them: the
        // node's root filesystem for "/", the image filesystem for a writable layer.
        for (name, help, get) in [
            (
                "container_fs_inodes_free",
                "Number of available Inodes",
                (|f: &FsInfo| f.inodes_free) as fn(&FsInfo) -> u64,
            ),
            ("container_fs_inodes_total", "Number of Inodes", |f| {
                f.inodes
            }),
        ] {
            family_multi(
                out,
                snap,
                ts,
                name,
                Kind::Gauge,
                help,
                &["device"],
                |c, emit| {
                    if &*c.name == "/" {
                        if let Some(f) = &snap.root_fs {
                            emit(&[&root_dev], get(f) as f64);
                        }
                    } else if let (Some(_), Some(f)) = (c.rootfs, &snap.image_fs) {
                        emit(&[&image_dev], get(f) as f64);
                    }
                },
            );
        }
    }
}

/// Processes, pressure, the spec and the start and last-seen times: the families written after
/// the volumes'.
pub(super) fn tasks_and_spec(
    out: &mut Out,
    snap: &Snapshot,
    config: &Config,
    ts: &Timestamp,
    ts_ms: i64,
) {
    if config.enabled("process") {
        family(
            out,
            snap,
            ts,
            "container_threads",
            Kind::Gauge,
            "Number of threads running inside the container",
            |c| c.stats.pids.as_ref().map(|p| p.current as f64),
        );
        family(
            out,
            snap,
            ts,
            "container_threads_max",
            Kind::Gauge,
            "Maximum number of threads allowed inside the container, infinity if value is zero",
            |c| c.stats.pids.as_ref().map(|p| p.max.unwrap_or(0) as f64),
        );
        for (name, help, get) in [
            (
                "container_processes",
                "Number of processes running inside the container.",
                (|p: &ProcessCounts| Some(p.processes)) as fn(&ProcessCounts) -> Option<u64>,
            ),
            (
                "container_file_descriptors",
                "Number of open file descriptors for the container.",
                |p| Some(p.fds),
            ),
            (
                "container_sockets",
                "Number of open sockets for the container.",
                |p| p.sockets,
            ),
        ] {
            family(out, snap, ts, name, Kind::Gauge, help, |c| {
                c.processes.as_ref().and_then(get).map(|v| v as f64)
            });
        }
    }
    if config.enabled("pressure") {
        for (res, get) in [
            (
                "cpu",
                (|c: &ContainerSample| c.stats.pressure.cpu.clone())
                    as fn(&ContainerSample) -> Option<crate::summary::PsiStats>,
            ),
            ("memory", |c: &ContainerSample| {
                c.stats.pressure.memory.clone()
            }),
            ("io", |c: &ContainerSample| c.stats.pressure.io.clone()),
        ] {
            let waiting = format!("container_pressure_{res}_waiting_seconds_total");
            family(
                out,
                snap,
                ts,
                &waiting,
                Kind::Counter,
                &format!(
                    "Total time duration tasks in the container have waited due to {res} congestion."
                ),
                |c| get(c).map(|p| p.some.total as f64 / 1e6),
            );
            let stalled = format!("container_pressure_{res}_stalled_seconds_total");
            family(
                out,
                snap,
                ts,
                &stalled,
                Kind::Counter,
                &format!(
                    "Total time duration no tasks in the container could make progress due to {res} congestion."
                ),
                |c| get(c).map(|p| p.full.total as f64 / 1e6),
            );
        }
    }
    family(
        out,
        snap,
        ts,
        "container_spec_cpu_period",
        Kind::Gauge,
        "CPU period of the container.",
        |c| c.stats.spec.cpu_period_us.map(|v| v as f64),
    );
    family(
        out,
        snap,
        ts,
        "container_spec_cpu_quota",
        Kind::Gauge,
        "CPU quota of the container.",
        |c| c.stats.spec.cpu_quota_us.map(|v| v as f64),
    );
    family(
        out,
        snap,
        ts,
        "container_spec_cpu_shares",
        Kind::Gauge,
        "CPU share of the container.",
        |c| c.stats.spec.cpu_shares.map(|v| v as f64),
    );
    // Unlimited is exported as 0, as cAdvisor does for limits ≥ 2^62.
    family(
        out,
        snap,
        ts,
        "container_spec_memory_limit_bytes",
        Kind::Gauge,
        "Memory limit for the container.",
        |c| {
            c.stats
                .memory
                .as_ref()
                .map(|_| c.stats.spec.memory_limit.unwrap_or(0) as f64)
        },
    );
    family(
        out,
        snap,
        ts,
        "container_spec_memory_swap_limit_bytes",
        Kind::Gauge,
        "Memory swap limit for the container.",
        |c| {
            c.stats
                .memory
                .as_ref()
                .map(|_| c.stats.spec.memory_swap_limit.unwrap_or(0) as f64)
        },
    );
    family(
        out,
        snap,
        ts,
        "container_spec_memory_reservation_limit_bytes",
        Kind::Gauge,
        "Memory reservation limit for the container.",
        |c| {
            c.stats
                .memory
                .as_ref()
                .map(|_| c.stats.spec.memory_reservation.unwrap_or(0) as f64)
        },
    );
    family(
        out,
        snap,
        ts,
        "container_start_time_seconds",
        Kind::Gauge,
        "Start time of the container since unix epoch in seconds.",
        |c| {
            c.start_time
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs() as f64)
        },
    );
    let seen = ts_ms as f64 / 1000.0;
    family(
        out,
        snap,
        ts,
        "container_last_seen",
        Kind::Gauge,
        "Last time a container was seen by the exporter",
        |_| Some(seen.floor()),
    );
}

fn device_name(snap: &Snapshot, major: u64, minor: u64) -> String {
    snap.node
        .disks
        .iter()
        .find(|d| d.major == major && d.minor == minor)
        .map(|d| format!("/dev/{}", d.name))
        .unwrap_or_else(|| format!("{major}:{minor}"))
}
