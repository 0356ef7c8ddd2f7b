//! The node's families of `/metrics`: machine figures, the kubelet's PVC volume stats, and the collector's own metrics.

use super::{line_kv, line_nolabels, Out};
use crate::snapshot::Snapshot;
use vigil_common::exposition::{header, Format, Kind, Timestamp, Writer};

/// The machine's CPU, memory and swap (cAdvisor's `machine_*`).
pub(super) fn machine(out: &mut Out, snap: &Snapshot, ts: &Timestamp) {
    header(
        out,
        "machine_cpu_cores",
        Kind::Gauge,
        "Number of logical CPU cores.",
    );
    line_nolabels(out, "machine_cpu_cores", snap.node.cpu.cores as f64, ts);
    // Unknown (no `physical id` in /proc/cpuinfo): left out rather than reported as 0.
    if let Some(t) = snap.node.topology {
        header(
            out,
            "machine_cpu_physical_cores",
            Kind::Gauge,
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
            Kind::Gauge,
            "Number of CPU sockets.",
        );
        line_nolabels(out, "machine_cpu_sockets", t.sockets as f64, ts);
    }
    header(
        out,
        "machine_memory_bytes",
        Kind::Gauge,
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
        Kind::Gauge,
        "Amount of swap memory available on the machine.",
    );
    line_nolabels(
        out,
        "machine_swap_bytes",
        snap.node.memory.swap_total as f64,
        ts,
    );
}

/// The collector's own metrics (no timestamps: they describe the collector now).
pub(super) fn self_metrics(out: &mut String, snap: &Snapshot, ts_ms: i64) {
    let st = &snap.self_stats;
    let mut w = Writer::new(out, Format::Text);
    w.gauge(
        "vigil_collector_collection_duration_seconds",
        "Duration of the last collection pass.",
        st.last_duration.as_secs_f64(),
    );
    w.counter(
        "vigil_collector_passes_total",
        "Collection passes completed.",
        st.passes,
    );
    w.header(
        "vigil_collector_errors_total",
        Kind::Counter,
        "Collection errors by kind (container_gone, io, parse, missing_controller, proc_io, volume, ...).",
    );
    for (kind, n) in &st.errors_by_kind {
        w.sample("vigil_collector_errors_total", &[("kind", kind)], *n);
    }
    w.gauge(
        "vigil_collector_containers",
        "Cgroups tracked in the last pass.",
        snap.containers.len() as u64,
    );
    w.counter(
        "vigil_collector_containers_added_total",
        "Cgroups that appeared.",
        st.containers_added,
    );
    w.counter(
        "vigil_collector_containers_removed_total",
        "Cgroups that disappeared.",
        st.containers_removed,
    );
    w.counter(
        "vigil_collector_files_read_total",
        "Cgroup files read.",
        st.files_read,
    );
    let budget = crate::cgroup::FdBudget::global();
    w.gauge(
        "vigil_collector_kept_descriptors",
        "Cgroup directories and files kept open between passes.",
        budget.in_use() as u64,
    );
    w.gauge(
        "vigil_collector_kept_descriptors_limit",
        "Descriptors the collector may keep open between passes (RLIMIT_NOFILE less a reserve, at most max_open_files).",
        budget.total() as u64,
    );
    w.gauge(
        "vigil_collector_last_collection_timestamp_seconds",
        "Time of the last collection pass.",
        ts_ms as f64 / 1000.0,
    );
}

/// The kubelet's PVC volume metrics (pkg/kubelet/metrics/collectors/volume_stats.go; HELP with the
/// `[ALPHA] ` prefix its metrics framework adds): one series per claim (the first pod's figures
/// when several pods mount it), labels `namespace` and `persistentvolumeclaim`; volumes without a
/// claim are not reported. `kubelet_volume_stats_health_status_abnormal` is not: it needs the CSI
/// driver's volume condition (NodeGetVolumeStats), which a reader of the filesystem does not have.
pub(super) fn volume_stats(out: &mut Out, snap: &Snapshot, ts: &Timestamp) {
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
                .then(|| (pvc, crate::http::summary::volume_stats(v).fs))
        })
        .collect();
    if claims.is_empty() {
        return;
    }
    for (name, help, get) in FAMILIES {
        header(out, name, Kind::Gauge, help);
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
