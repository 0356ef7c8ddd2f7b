//! The Prometheus text exposition: cAdvisor's metric names, the kubelet's labels, explicit timestamps.

use crate::config::Config;
use crate::proc::fs::FsInfo;
use crate::proc::processes::ProcessCounts;
use crate::snapshot::{ContainerSample, Snapshot};
use axum::body::Bytes;

/// Size of the chunks a streamed exposition is sent in.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Where the exposition is written: one String, or 64 KiB chunks sent to the HTTP response as
/// they fill (so a 1,000-container exposition never sits in memory whole).
pub struct Out {
    buf: String,
    tx: Option<tokio::sync::mpsc::Sender<Bytes>>,
    closed: bool,
}

impl std::ops::Deref for Out {
    type Target = String;
    fn deref(&self) -> &String {
        &self.buf
    }
}

impl std::ops::DerefMut for Out {
    fn deref_mut(&mut self) -> &mut String {
        &mut self.buf
    }
}

impl Out {
    /// Writes into one String.
    pub fn string(buf: String) -> Out {
        Out {
            buf,
            tx: None,
            closed: false,
        }
    }

    /// Sends chunks to `tx` (from a blocking thread).
    pub fn streaming(tx: tokio::sync::mpsc::Sender<Bytes>) -> Out {
        Out {
            buf: String::with_capacity(CHUNK_BYTES + 4096),
            tx: Some(tx),
            closed: false,
        }
    }

    fn line_done(&mut self) {
        if self.tx.is_some() && self.buf.len() >= CHUNK_BYTES {
            self.send();
        }
    }

    fn send(&mut self) {
        if self.closed {
            self.buf.clear();
            return;
        }
        let chunk = std::mem::replace(&mut self.buf, String::with_capacity(CHUNK_BYTES + 4096));
        if let Some(tx) = &self.tx {
            if tx.blocking_send(Bytes::from(chunk)).is_err() {
                // The client went away: render the rest into nothing.
                self.closed = true;
            }
        }
    }

    /// Sends what is left (streaming) or returns the whole text (string).
    pub fn finish(mut self) -> String {
        if self.tx.is_some() {
            if !self.buf.is_empty() {
                self.send();
            }
            String::new()
        } else {
            std::mem::take(&mut self.buf)
        }
    }
}

/// Writes `value` the way Prometheus parses it (integers without a fraction, floats shortest).
fn push_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

fn header(out: &mut String, name: &str, typ: &str, help: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    out.push_str(help);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(typ);
    out.push('\n');
}

fn push_label(out: &mut String, first: bool, k: &str, v: &str) {
    if !first {
        out.push(',');
    }
    out.push_str(k);
    out.push_str("=\"");
    crate::pass::escape_label(v, out);
    out.push('"');
}

fn line_end(out: &mut Out, value: f64, ts: &str) {
    out.push_str("} ");
    push_f64(out, value);
    out.push(' ');
    out.push_str(ts);
    out.push('\n');
    out.line_done();
}

/// One sample line: `name{labels,extra} value timestamp`.
fn line(out: &mut Out, name: &str, labels: &str, extra: &[(&str, &str)], value: f64, ts: &str) {
    out.push_str(name);
    out.push('{');
    out.push_str(labels);
    for (i, (k, v)) in extra.iter().enumerate() {
        push_label(out, labels.is_empty() && i == 0, k, v);
    }
    line_end(out, value, ts);
}

/// One sample line with extra labels given as parallel key and value slices.
fn line_kv(
    out: &mut Out,
    name: &str,
    labels: &str,
    keys: &[&str],
    vals: &[&str],
    value: f64,
    ts: &str,
) {
    out.push_str(name);
    out.push('{');
    out.push_str(labels);
    for (i, (k, v)) in keys.iter().zip(vals).enumerate() {
        push_label(out, labels.is_empty() && i == 0, k, v);
    }
    line_end(out, value, ts);
}

/// A per-container metric family: header, then one line per container the closure gives a value for.
fn family<F>(out: &mut Out, snap: &Snapshot, ts: &str, name: &str, typ: &str, help: &str, mut f: F)
where
    F: FnMut(&ContainerSample) -> Option<f64>,
{
    header(out, name, typ, help);
    for c in &snap.containers {
        if let Some(v) = f(c) {
            line(out, name, &c.label_str, &[], v, ts);
        }
    }
}

/// The sink a multi-line family's closure writes (extra label values, value) to.
type Emit<'a> = dyn FnMut(&[&str], f64) + 'a;

/// A per-container family with extra labels: the closure emits one line per label set.
#[allow(clippy::too_many_arguments)]
fn family_multi<F>(
    out: &mut Out,
    snap: &Snapshot,
    ts: &str,
    name: &str,
    typ: &str,
    help: &str,
    keys: &[&str],
    mut f: F,
) where
    F: FnMut(&ContainerSample, &mut Emit<'_>),
{
    header(out, name, typ, help);
    for c in &snap.containers {
        let labels: &str = &c.label_str;
        let mut emit = |vals: &[&str], v: f64| line_kv(out, name, labels, keys, vals, v, ts);
        f(c, &mut emit);
    }
}

fn device_name(snap: &Snapshot, major: u64, minor: u64) -> String {
    snap.node
        .disks
        .iter()
        .find(|d| d.major == major && d.minor == minor)
        .map(|d| format!("/dev/{}", d.name))
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

/// Renders the whole exposition into `out` (cleared first).
pub fn render(snap: &Snapshot, config: &Config, out: &mut String) {
    let mut o = Out::string(std::mem::take(out));
    o.clear();
    render_to(snap, config, &mut o);
    *out = o.finish();
}

/// Renders the whole exposition into `out` (a String or a stream of chunks).
pub fn render_to(snap: &Snapshot, config: &Config, out: &mut Out) {
    let ts_ms = snap
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let ts_buf = ts_ms.to_string();
    let ts = ts_buf.as_str();
    let secs = |ns: u64| ns as f64 / 1e9;
    if snap.ready {
        if config.enabled("cpu") {
            header(
                out,
                "container_cpu_usage_seconds_total",
                "counter",
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
                "counter",
                "Cumulative user cpu time consumed in seconds.",
                |c| c.stats.cpu.as_ref().map(|x| secs(x.user_ns)),
            );
            family(
                out,
                snap,
                ts,
                "container_cpu_system_seconds_total",
                "counter",
                "Cumulative system cpu time consumed in seconds.",
                |c| c.stats.cpu.as_ref().map(|x| secs(x.system_ns)),
            );
            let quota = |c: &ContainerSample| c.stats.spec.cpu_quota_us.is_some();
            family(
                out,
                snap,
                ts,
                "container_cpu_cfs_periods_total",
                "counter",
                "Number of elapsed enforcement period intervals.",
                |c| {
                    c.stats
                        .cpu
                        .as_ref()
                        .filter(|_| quota(c))
                        .map(|x| x.periods as f64)
                },
            );
            family(
                out,
                snap,
                ts,
                "container_cpu_cfs_throttled_periods_total",
                "counter",
                "Number of throttled period intervals.",
                |c| {
                    c.stats
                        .cpu
                        .as_ref()
                        .filter(|_| quota(c))
                        .map(|x| x.throttled_periods as f64)
                },
            );
            family(
                out,
                snap,
                ts,
                "container_cpu_cfs_throttled_seconds_total",
                "counter",
                "Total time duration the container has been throttled.",
                |c| {
                    c.stats
                        .cpu
                        .as_ref()
                        .filter(|_| quota(c))
                        .map(|x| secs(x.throttled_ns))
                },
            );
        }
        if config.enabled("memory") {
            type Get = fn(&crate::cgroup::Memory) -> Option<u64>;
            // cAdvisor's container_memory_failcnt keeps its name and type for dashboards although
            // promtool's lint flags a counter without `_total` (the promtool test allows exactly
            // that finding).
            let families: [(&str, &str, &str, Get); 8] = [
                ("container_memory_usage_bytes", "gauge", "Current memory usage in bytes, including all memory regardless of when it was accessed", |m| Some(m.usage)),
                ("container_memory_working_set_bytes", "gauge", "Current working set in bytes.", |m| Some(m.working_set)),
                ("container_memory_rss", "gauge", "Size of RSS in bytes.", |m| Some(m.rss)),
                ("container_memory_cache", "gauge", "Number of bytes of page cache memory.", |m| Some(m.cache)),
                ("container_memory_swap", "gauge", "Container swap usage in bytes.", |m| Some(m.swap)),
                ("container_memory_mapped_file", "gauge", "Size of memory mapped files in bytes.", |m| Some(m.mapped_file)),
                ("container_memory_max_usage_bytes", "gauge", "Maximum memory usage recorded in bytes", |m| m.max_usage),
                ("container_memory_failcnt", "counter", "Number of memory usage hits limits", |m| m.failcnt),
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
                "counter",
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
                "counter",
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
                    "counter",
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
                    "counter",
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
                "gauge",
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
                "gauge",
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
                    "gauge",
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
        if config.enabled("volume_stats") {
            volume_stats(out, snap, ts);
        }
        if config.enabled("process") {
            family(
                out,
                snap,
                ts,
                "container_threads",
                "gauge",
                "Number of threads running inside the container",
                |c| c.stats.pids.as_ref().map(|p| p.current as f64),
            );
            family(
                out,
                snap,
                ts,
                "container_threads_max",
                "gauge",
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
                family(out, snap, ts, name, "gauge", help, |c| {
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
                family(out, snap, ts, &waiting, "counter", &format!("Total time duration tasks in the container have waited due to {res} congestion."), |c| {
                    get(c).map(|p| p.some.total as f64 / 1e6)
                });
                let stalled = format!("container_pressure_{res}_stalled_seconds_total");
                family(out, snap, ts, &stalled, "counter", &format!("Total time duration no tasks in the container could make progress due to {res} congestion."), |c| {
                    get(c).map(|p| p.full.total as f64 / 1e6)
                });
            }
        }
        family(
            out,
            snap,
            ts,
            "container_spec_cpu_period",
            "gauge",
            "CPU period of the container.",
            |c| c.stats.spec.cpu_period_us.map(|v| v as f64),
        );
        family(
            out,
            snap,
            ts,
            "container_spec_cpu_quota",
            "gauge",
            "CPU quota of the container.",
            |c| c.stats.spec.cpu_quota_us.map(|v| v as f64),
        );
        family(
            out,
            snap,
            ts,
            "container_spec_cpu_shares",
            "gauge",
            "CPU share of the container.",
            |c| c.stats.spec.cpu_shares.map(|v| v as f64),
        );
        // Unlimited is exported as 0, as cAdvisor does for limits ≥ 2^62.
        family(
            out,
            snap,
            ts,
            "container_spec_memory_limit_bytes",
            "gauge",
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
            "gauge",
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
            "gauge",
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
            "gauge",
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
            "gauge",
            "Last time a container was seen by the exporter",
            |_| Some(seen.floor()),
        );

        header(
            out,
            "machine_cpu_cores",
            "gauge",
            "Number of logical CPU cores.",
        );
        line_nolabels(out, "machine_cpu_cores", snap.node.cpu.cores as f64, ts);
        // Unknown (no `physical id` in /proc/cpuinfo): left out rather than reported as 0.
        if let Some(t) = snap.node.topology {
            header(
                out,
                "machine_cpu_physical_cores",
                "gauge",
                "Number of physical CPU cores.",
            );
            line_nolabels(
                out,
                "machine_cpu_physical_cores",
                t.physical_cores as f64,
                ts,
            );
            header(
                out,
                "machine_cpu_sockets",
                "gauge",
                "Number of CPU sockets.",
            );
            line_nolabels(out, "machine_cpu_sockets", t.sockets as f64, ts);
        }
        header(
            out,
            "machine_memory_bytes",
            "gauge",
            "Amount of memory installed on the machine.",
        );
        line_nolabels(
            out,
            "machine_memory_bytes",
            snap.node.memory.total as f64,
            ts,
        );
        header(
            out,
            "machine_swap_bytes",
            "gauge",
            "Amount of swap memory available on the machine.",
        );
        line_nolabels(
            out,
            "machine_swap_bytes",
            snap.node.memory.swap_total as f64,
            ts,
        );
    }
    // The collector's own metrics (no timestamps: they describe the collector now).
    let mut self_text = String::new();
    crate::self_metrics::encode(&self_registry(snap, ts_ms), &mut self_text);
    out.push_str(&self_text);
}

/// The collector's own metrics from a snapshot.
fn self_registry(snap: &Snapshot, ts_ms: i64) -> prometheus_client::registry::Registry {
    use crate::self_metrics::{const_counter, const_gauge, counter_family, set};
    let st = &snap.self_stats;
    let mut r = prometheus_client::registry::Registry::default();
    let duration = st.last_duration.as_secs_f64();
    const_gauge(
        &mut r,
        "vigil_collector_collection_duration_seconds",
        "Duration of the last collection pass",
        duration,
    );
    const_counter(
        &mut r,
        "vigil_collector_passes",
        "Collection passes completed",
        st.passes,
    );
    let errors = counter_family(
        &mut r,
        "vigil_collector_errors",
        "Collection errors by kind (container_gone, io, parse, missing_controller, proc_io, volume, ...)",
    );
    for (k, v) in &st.errors_by_kind {
        set(&errors, &[("kind", k)], *v);
    }
    let tracked = snap.containers.len() as f64;
    const_gauge(
        &mut r,
        "vigil_collector_containers",
        "Cgroups tracked in the last pass",
        tracked,
    );
    const_counter(
        &mut r,
        "vigil_collector_containers_added",
        "Cgroups that appeared",
        st.containers_added,
    );
    const_counter(
        &mut r,
        "vigil_collector_containers_removed",
        "Cgroups that disappeared",
        st.containers_removed,
    );
    const_counter(
        &mut r,
        "vigil_collector_files_read",
        "Cgroup files read",
        st.files_read,
    );
    let budget = crate::cgroup::FdBudget::global();
    const_gauge(
        &mut r,
        "vigil_collector_kept_descriptors",
        "Cgroup directories and files kept open between passes",
        budget.in_use() as f64,
    );
    const_gauge(
        &mut r,
        "vigil_collector_kept_descriptors_limit",
        "Descriptors the collector may keep open between passes (RLIMIT_NOFILE less a reserve, at most max_open_files)",
        budget.total() as f64,
    );
    let last = ts_ms as f64 / 1000.0;
    const_gauge(
        &mut r,
        "vigil_collector_last_collection_timestamp_seconds",
        "Time of the last collection pass",
        last,
    );
    r
}

/// The kubelet's PVC volume metrics (pkg/kubelet/metrics/collectors/volume_stats.go; HELP with the
/// `[ALPHA] ` prefix its metrics framework adds): one series per claim (the first pod's figures
/// when several pods mount it), labels `namespace` and `persistentvolumeclaim`; volumes without a
/// claim are not reported. `kubelet_volume_stats_health_status_abnormal` is not: it needs the CSI
/// driver's volume condition (NodeGetVolumeStats), which a reader of the filesystem does not have.
fn volume_stats(out: &mut Out, snap: &Snapshot, ts: &str) {
    type Get = fn(&crate::summary::FsStats) -> Option<u64>;
    const FAMILIES: [(&str, &str, Get); 6] = [
        (
            "kubelet_volume_stats_capacity_bytes",
            "[ALPHA] Capacity in bytes of the volume",
            |f| f.capacity_bytes,
        ),
        (
            "kubelet_volume_stats_available_bytes",
            "[ALPHA] Number of available bytes in the volume",
            |f| f.available_bytes,
        ),
        (
            "kubelet_volume_stats_used_bytes",
            "[ALPHA] Number of used bytes in the volume",
            |f| f.used_bytes,
        ),
        (
            "kubelet_volume_stats_inodes",
            "[ALPHA] Maximum number of inodes in the volume",
            |f| f.inodes,
        ),
        (
            "kubelet_volume_stats_inodes_free",
            "[ALPHA] Number of free inodes in the volume",
            |f| f.inodes_free,
        ),
        (
            "kubelet_volume_stats_inodes_used",
            "[ALPHA] Number of used inodes in the volume",
            |f| f.inodes_used,
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    let claims: Vec<(&crate::summary::PvcReference, crate::summary::FsStats)> = snap
        .containers
        .iter()
        .flat_map(|c| c.volumes.iter())
        .filter_map(|v| {
            let pvc = v.id.pvc_ref.as_ref()?;
            seen.insert((&pvc.namespace, &pvc.name))
                .then(|| (pvc, super::summary::volume_stats(v).fs))
        })
        .collect();
    if claims.is_empty() {
        return;
    }
    for (name, help, get) in FAMILIES {
        header(out, name, "gauge", help);
        for (pvc, fs) in &claims {
            if let Some(v) = get(fs) {
                line_kv(
                    out,
                    name,
                    "",
                    &["namespace", "persistentvolumeclaim"],
                    &[&pvc.namespace, &pvc.name],
                    v as f64,
                    ts,
                );
            }
        }
    }
}

fn line_nolabels(out: &mut Out, name: &str, v: f64, ts: &str) {
    out.push_str(name);
    out.push(' ');
    push_f64(out, v);
    out.push(' ');
    out.push_str(ts);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// v1: `scope="container"` from memory.stat's local keys, `scope="hierarchy"` from `total_*`;
    /// container_memory_failcnt with cAdvisor's name and type.
    /// The v1 cgroupfs fixture's configuration and one pass over it.
    fn v1_fixture_pass() -> (Config, Snapshot) {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let c = Config {
            cgroup_root: base.join("cgroup-v1-cgroupfs"),
            proc_root: base.join("proc-root-absent"),
            pod_log_root: base.join("logs/pods"),
            container_log_root: Some(base.join("logs/containers")),
            node_name: Some("fixture-node".into()),
            ..Default::default()
        };
        let mut col = crate::pass::Collector::new(std::sync::Arc::new(c.clone())).unwrap();
        let snap = col.pass();
        (c, snap)
    }

    #[test]
    fn v1_page_fault_scopes_and_failcnt() {
        let (c, snap) = v1_fixture_pass();
        let mut out = String::new();
        render(&snap, &c, &mut out);
        let id = "b".repeat(64);
        let value = |name: &str, extra: &str| -> String {
            out.lines()
                .find(|l| l.starts_with(name) && l.contains(&id) && l.contains(extra))
                .unwrap_or_else(|| panic!("{name} {extra} missing"))
                .rsplit(' ')
                .nth(1)
                .unwrap()
                .to_string()
        };
        let f = "container_memory_failures_total{";
        // memory.stat: pgfault 5, pgmajfault 6, total_pgfault 2000, total_pgmajfault 9.
        assert_eq!(
            value(f, "failure_type=\"pgfault\",scope=\"container\""),
            "5"
        );
        assert_eq!(
            value(f, "failure_type=\"pgmajfault\",scope=\"container\""),
            "6"
        );
        assert_eq!(
            value(f, "failure_type=\"pgfault\",scope=\"hierarchy\""),
            "2000"
        );
        assert_eq!(
            value(f, "failure_type=\"pgmajfault\",scope=\"hierarchy\""),
            "9"
        );
        // memory.failcnt 2.
        assert!(out.contains("# TYPE container_memory_failcnt counter\n"));
        assert_eq!(value("container_memory_failcnt{", ""), "2");
    }

    /// A container's writable layer is on the image filesystem: usage from the layer, limit and
    /// inodes from that filesystem, under its device; the root container has the root's.
    #[test]
    fn writable_layer_figures_are_on_the_image_filesystem() {
        let (c, mut snap) = v1_fixture_pass();
        let fs = |device: &str, capacity, inodes, inodes_free| FsInfo {
            path: "/x".into(),
            device: Some(device.into()),
            capacity,
            available: 0,
            used: 0,
            inodes,
            inodes_free,
        };
        snap.root_fs = Some(fs("/dev/root", 1000, 50, 20));
        snap.image_fs = Some(fs("/dev/images", 9000, 700, 300));
        let id = "b".repeat(64);
        let ctr = snap
            .containers
            .iter_mut()
            .find(|s| s.name.ends_with(&id))
            .unwrap();
        ctr.rootfs = Some(crate::proc::fs::Usage {
            bytes: 4096,
            inodes: 3,
        });
        let mut out = String::new();
        render(&snap, &c, &mut out);
        let value = |name: &str, which: &str| -> Option<String> {
            out.lines()
                .find(|l| {
                    l.starts_with(&format!("{name}{{"))
                        && (if which == "/" {
                            l.contains("id=\"/\"")
                        } else {
                            l.contains(which)
                        })
                })
                .map(|l| {
                    let (labels, rest) = l.split_once('}').unwrap();
                    let dev = labels
                        .rsplit("device=\"")
                        .next()
                        .unwrap()
                        .trim_end_matches('"');
                    format!("{dev} {}", rest.split_whitespace().next().unwrap())
                })
        };
        for (name, root, layer) in [
            (
                "container_fs_usage_bytes",
                "/dev/root 0",
                "/dev/images 4096",
            ),
            (
                "container_fs_limit_bytes",
                "/dev/root 1000",
                "/dev/images 9000",
            ),
            (
                "container_fs_inodes_total",
                "/dev/root 50",
                "/dev/images 700",
            ),
            (
                "container_fs_inodes_free",
                "/dev/root 20",
                "/dev/images 300",
            ),
        ] {
            assert_eq!(value(name, "/").as_deref(), Some(root), "{name} on /");
            assert_eq!(
                value(name, &id).as_deref(),
                Some(layer),
                "{name} on the layer"
            );
        }
    }

    #[test]
    fn numbers_are_prometheus_floats() {
        let mut s = Out::string(String::new());
        push_f64(&mut s, 5.0);
        s.push(' ');
        push_f64(&mut s, 0.25);
        s.push(' ');
        push_f64(&mut s, f64::NAN);
        assert_eq!(s.as_str(), "5 0.25 NaN");
    }

    #[test]
    fn extra_labels_are_escaped_and_joined() {
        let mut s = Out::string(String::new());
        line(&mut s, "m", "id=\"/\"", &[("interface", "a\"b")], 1.0, "7");
        assert_eq!(s.as_str(), "m{id=\"/\",interface=\"a\\\"b\"} 1 7\n");
        s.clear();
        line(&mut s, "m", "", &[("a", "1"), ("b", "2")], 1.0, "7");
        assert_eq!(s.as_str(), "m{a=\"1\",b=\"2\"} 1 7\n");
    }
}
