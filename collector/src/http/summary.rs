//! Builds the kubelet Summary API document (`/stats/summary`) from a snapshot.

use crate::discovery::naming::Kind;
use crate::proc::fs::{FsInfo, Usage};
use crate::proc::Interface;
use crate::snapshot::{ContainerSample, Snapshot};
use crate::summary::*;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

fn time(t: std::time::SystemTime) -> Time {
    DateTime::<Utc>::from(t)
}

fn cpu_of(c: &ContainerSample, t: Time) -> Option<CpuStats> {
    let cpu = c.stats.cpu.as_ref()?;
    Some(CpuStats {
        time: Some(t),
        usage_nano_cores: c.usage_nano_cores,
        usage_core_nano_seconds: Some(cpu.usage_ns),
        psi: c.stats.pressure.cpu.clone(),
    })
}

fn memory_of(c: &ContainerSample, t: Time) -> Option<MemoryStats> {
    let m = c.stats.memory.as_ref()?;
    Some(MemoryStats {
        time: Some(t),
        // The kubelet reports available only under a limit: limit − working set.
        available_bytes: c
            .stats
            .spec
            .memory_limit
            .map(|l| l.saturating_sub(m.working_set)),
        usage_bytes: Some(m.usage),
        working_set_bytes: Some(m.working_set),
        rss_bytes: Some(m.rss),
        page_faults: Some(m.pgfault),
        major_page_faults: Some(m.pgmajfault),
        psi: c.stats.pressure.memory.clone(),
    })
}

fn iface(i: &Interface) -> InterfaceStats {
    InterfaceStats {
        name: i.name.clone(),
        rx_bytes: Some(i.rx_bytes),
        rx_errors: Some(i.rx_errors),
        tx_bytes: Some(i.tx_bytes),
        tx_errors: Some(i.tx_errors),
    }
}

fn network_of(ifs: &[Interface], t: Time) -> Option<NetworkStats> {
    if ifs.is_empty() {
        return None;
    }
    // The default interface: eth0 when present (the kubelet's default), else the first.
    let default = ifs.iter().find(|i| i.name == "eth0").unwrap_or(&ifs[0]);
    Some(NetworkStats {
        time: Some(t),
        default_interface: iface(default),
        interfaces: ifs.iter().map(iface).collect(),
    })
}

fn fs_of(f: &FsInfo, t: Time) -> FsStats {
    FsStats {
        time: Some(t),
        available_bytes: Some(f.available),
        capacity_bytes: Some(f.capacity),
        used_bytes: Some(f.used),
        inodes_free: Some(f.inodes_free),
        inodes: Some(f.inodes),
        inodes_used: Some(f.inodes.saturating_sub(f.inodes_free)),
    }
}

/// A directory's usage on a filesystem (capacity and free space are the filesystem's).
fn usage_on(u: Usage, fs: Option<&FsInfo>, t: Time) -> FsStats {
    FsStats {
        time: Some(t),
        available_bytes: fs.map(|f| f.available),
        capacity_bytes: fs.map(|f| f.capacity),
        used_bytes: Some(u.bytes),
        inodes_free: fs.map(|f| f.inodes_free),
        inodes: fs.map(|f| f.inodes),
        inodes_used: Some(u.inodes),
    }
}

fn container_stats(name: String, c: &ContainerSample, snap: &Snapshot, t: Time) -> ContainerStats {
    ContainerStats {
        name,
        start_time: Some(time(c.start_time)),
        cpu: cpu_of(c, t),
        memory: memory_of(c, t),
        rootfs: c.rootfs.map(|u| usage_on(u, snap.image_fs.as_ref(), t)),
        logs: c.logs.map(|u| usage_on(u, snap.root_fs.as_ref(), t)),
        vigil_spec: vigil_spec(&c.stats.spec),
        ..Default::default()
    }
}

/// A pod volume as the kubelet reports it: the filesystem's capacity, free space and inodes, and
/// the usage under the volume (its own filesystem's usage when it is a mount), under its pod spec
/// name with the claim behind it.
pub(crate) fn volume_stats(v: &crate::snapshot::PodVolume) -> VolumeStats {
    let f = &v.fs;
    let (used, inodes_used) = if v.dir.mounted {
        (Some(f.used), Some(f.inodes.saturating_sub(f.inodes_free)))
    } else {
        (v.usage.map(|u| u.bytes), v.usage.map(|u| u.inodes))
    };
    VolumeStats {
        fs: FsStats {
            time: Some(time(v.time)),
            available_bytes: Some(f.available),
            capacity_bytes: Some(f.capacity),
            used_bytes: used,
            inodes_free: Some(f.inodes_free),
            inodes: Some(f.inodes),
            inodes_used,
        },
        name: v.id.name.clone(),
        pvc_ref: v.id.pvc_ref.clone(),
        local_ephemeral: !v.dir.mounted,
    }
}

/// The vigil-only `vigilSpec` extension: the cgroup limits already read for the container,
/// so an aggregator can derive requests and limits without the Kubernetes API.
fn vigil_spec(s: &crate::cgroup::Spec) -> Option<VigilSpec> {
    let v = VigilSpec {
        cpu_shares: s.cpu_shares,
        cpu_quota_micros: s.cpu_quota_us,
        cpu_period_micros: s.cpu_period_us,
        memory_limit_bytes: s.memory_limit,
        memory_min_bytes: s.memory_min,
    };
    (v != VigilSpec::default()).then_some(v)
}

/// The Summary document of a snapshot.
pub fn build(snap: &Snapshot) -> Summary {
    let t = time(snap.time);
    let node = &snap.node;
    let mem = &node.memory;
    let working_set = mem.working_set();
    let node_stats = NodeStats {
        node_name: snap.node_name.clone(),
        system_containers: snap
            .containers
            .iter()
            .filter_map(|c| match *c.kind {
                Kind::System(n) => Some(container_stats(n.to_string(), c, snap, t)),
                _ => None,
            })
            .collect(),
        start_time: (node.cpu.boot_time > 0)
            .then_some(node.cpu.boot_time as i64)
            .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0)),
        cpu: (node.cpu.usage_ns > 0).then_some(CpuStats {
            time: Some(t),
            usage_nano_cores: snap.node_usage_nano_cores,
            usage_core_nano_seconds: Some(node.cpu.usage_ns),
            psi: None,
        }),
        memory: (mem.total > 0).then(|| MemoryStats {
            time: Some(t),
            available_bytes: Some(mem.total.saturating_sub(working_set)),
            usage_bytes: Some(mem.usage()),
            working_set_bytes: Some(working_set),
            rss_bytes: Some(mem.anon_pages),
            page_faults: None,
            major_page_faults: None,
            psi: None,
        }),
        network: network_of(
            &node
                .interfaces
                .iter()
                .filter(|i| crate::proc::is_container_interface(&i.name))
                .cloned()
                .collect::<Vec<_>>(),
            t,
        ),
        fs: snap.root_fs.as_ref().map(|f| fs_of(f, t)),
        runtime: snap.image_fs.as_ref().map(|f| RuntimeStats {
            image_fs: Some(fs_of(f, t)),
            container_fs: None,
        }),
        rlimit: Some(RlimitStats {
            time: Some(t),
            maxpid: node.pid_max.map(|v| v as i64),
            curproc: (node.threads > 0).then_some(node.threads as i64),
        }),
        swap: None,
    };

    let mut pods: BTreeMap<String, PodStats> = BTreeMap::new();
    let pod_entry = |c: &ContainerSample| -> PodStats {
        let i = &c.identity;
        PodStats {
            pod_ref: PodReference {
                // Without metadata the pod is still reported, named by its uid.
                name: if i.pod.is_empty() {
                    i.pod_uid.clone()
                } else {
                    i.pod.clone()
                },
                namespace: i.namespace.clone(),
                uid: i.pod_uid.clone(),
            },
            ..Default::default()
        }
    };
    for c in &snap.containers {
        match &*c.kind {
            Kind::Pod { pod_uid, .. } => {
                let p = pods.entry(pod_uid.clone()).or_insert_with(|| pod_entry(c));
                p.start_time = Some(time(c.start_time));
                p.cpu = cpu_of(c, t);
                p.memory = memory_of(c, t);
                p.network = c.network.as_deref().and_then(|n| network_of(n, t));
                p.volume = c.volumes.iter().map(volume_stats).collect();
                p.process_stats = c.stats.pids.as_ref().map(|pids| ProcessStats {
                    process_count: Some(pids.current),
                });
                if !c.identity.pod.is_empty() {
                    p.pod_ref.name = c.identity.pod.clone();
                    p.pod_ref.namespace = c.identity.namespace.clone();
                }
            }
            Kind::Container { pod_uid, id, .. } if !c.identity.sandbox => {
                let p = pods.entry(pod_uid.clone()).or_insert_with(|| pod_entry(c));
                let name = if c.identity.container.is_empty() {
                    id.clone()
                } else {
                    c.identity.container.clone()
                };
                p.containers.push(container_stats(name, c, snap, t));
            }
            _ => {}
        }
    }
    for p in pods.values_mut() {
        // ephemeral-storage: writable layers plus logs, when any of them is known.
        let mut used = 0;
        let mut inodes = 0;
        let mut any = false;
        // The kubelet counts local ephemeral volumes (those on the node filesystem) too.
        for v in &p.volume {
            if v.local_ephemeral {
                used += v.fs.used_bytes.unwrap_or(0);
                inodes += v.fs.inodes_used.unwrap_or(0);
                any = true;
            }
        }
        for c in &p.containers {
            for fs in [&c.rootfs, &c.logs].into_iter().flatten() {
                used += fs.used_bytes.unwrap_or(0);
                inodes += fs.inodes_used.unwrap_or(0);
                any = true;
            }
        }
        if any {
            let root = snap.root_fs.as_ref();
            p.ephemeral_storage = Some(usage_on(
                Usage {
                    bytes: used,
                    inodes,
                },
                root,
                t,
            ));
        }
    }
    Summary {
        node: node_stats,
        pods: pods.into_values().collect(),
    }
}
