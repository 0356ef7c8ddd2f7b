//! End to end with real peers: Prometheus scrapes `vigil collector`, promtool lints its
//! exposition, and node-level figures agree with prometheus-node-exporter's.

use crate::support::fixture_node_flags;
use crate::support::promtool;
use crate::support::collector::*;
use crate::support::until_blocking;
use std::time::Duration;


#[test]
fn prometheus_scrapes_the_collector_and_promtool_accepts_it() {
    // The real machine, and a v2 fixture tree that has every metric family (PSI, io, pids, limits).
    let real = Collector::start(&["--housekeeping-interval", "1s"]);
    let fix = Collector::start(&fixture_node_flags().iter().map(String::as_str).collect::<Vec<_>>());
    // Only the findings kept on purpose for cAdvisor's names; any other fails.
    for c in [&real, &fix] {
        promtool::check_metrics(&c.metrics(), &CADVISOR_LINT_FINDINGS);
    }
    let fix_body = fix.metrics();
    for family in [
        "container_cpu_cfs_throttled_seconds_total",
        "container_memory_failures_total",
        "container_memory_failcnt",
        "container_oom_events_total",
        "container_fs_reads_bytes_total",
        "container_threads_max",
        "container_pressure_io_stalled_seconds_total",
        "container_spec_cpu_quota",
        "container_start_time_seconds",
        "machine_memory_bytes",
    ] {
        assert!(
            fix_body.contains(&format!("\n{family}{{"))
                || fix_body.contains(&format!("\n{family} ")),
            "{family} missing"
        );
    }

    let prom = Prometheus::start(&[
        format!("127.0.0.1:{}", real.port),
        format!("127.0.0.1:{}", fix.port),
    ]);
    until_blocking("both targets up", Duration::from_secs(40), || {
        let r = prom.query("up == 1");
        (r.len() == 2).then_some(())
    });
    // A container metric with the kubelet's labels, queryable through Prometheus' API.
    let r = until_blocking(
        "nginx working set in prometheus",
        Duration::from_secs(30),
        || {
            let r = prom.query("container_memory_working_set_bytes{namespace=\"default\",pod=\"web-0\",container=\"nginx\"}");
            (!r.is_empty()).then_some(r)
        },
    );
    // memory.current 104857600 − inactive_file 20971520 = 83886080.
    assert_eq!(r[0]["value"][1], "83886080", "{r:?}");
    let cores = until_blocking("machine_cpu_cores", Duration::from_secs(30), || {
        let r = prom.query(&format!(
            "machine_cpu_cores{{instance=\"127.0.0.1:{}\"}}",
            real.port
        ));
        r.first()
            .and_then(|v| v["value"][1].as_str().and_then(|s| s.parse::<f64>().ok()))
    });
    let online = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0) as f64;
    assert!(
        cores >= online,
        "machine_cpu_cores {cores}, this process sees {online}"
    );
    // The root container's CPU counter increases between scrapes.
    until_blocking("rate of root cpu", Duration::from_secs(30), || {
        let r = prom.query(&format!(
            "rate(container_cpu_usage_seconds_total{{id=\"/\",instance=\"127.0.0.1:{}\"}}[5s])",
            real.port
        ));
        r.first()
            .and_then(|v| v["value"][1].as_str().and_then(|s| s.parse::<f64>().ok()))
            .filter(|v| *v > 0.0)
    });
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
}

fn sum(samples: &[Sample], name: &str, pred: impl Fn(&Sample) -> bool) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && pred(s))
        .map(|s| s.value)
        .sum()
}

#[test]
fn node_figures_agree_with_node_exporter() {
    let ne = NodeExporter::start();
    let c = Collector::start(&["--housekeeping-interval", "1s"]);
    // Wait for a pass that has a rate (two samples), then read both within a few milliseconds.
    until_blocking("node usageNanoCores", Duration::from_secs(20), || {
        let (_, b) = get(&format!("{}/stats/summary", c.base));
        let v: serde_json::Value = serde_json::from_str(&b).ok()?;
        v["node"]["cpu"]["usageNanoCores"].as_u64()
    });
    let (_, summary) = get(&format!("{}/stats/summary", c.base));
    let ours = parse_exposition(&c.metrics());
    let (_, ne_body) = get(&format!("{}/metrics", ne.base));
    let theirs = parse_exposition(&ne_body);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();

    // Memory capacity: both read MemTotal — exactly equal.
    let total = value(&theirs, "node_memory_MemTotal_bytes", &[]).unwrap();
    assert_eq!(value(&ours, "machine_memory_bytes", &[]).unwrap(), total);
    // Memory usage (MemTotal − MemFree): other work on this shared machine moves it between the
    // two reads (≤ 1 s apart); tolerance 3 % of MemTotal.
    let free = value(&theirs, "node_memory_MemFree_bytes", &[]).unwrap();
    let usage = summary["node"]["memory"]["usageBytes"].as_f64().unwrap();
    assert!(
        (usage - (total - free)).abs() <= 0.03 * total,
        "usage {usage} vs node_exporter {}",
        total - free
    );

    // CPU: non-idle seconds since boot (user+nice+system+irq+softirq+steal). Our value is up to 1 s
    // old, on 2 cores that is ≤ 2 s; tolerance 1 % + 3 s.
    let busy = sum(&theirs, "node_cpu_seconds_total", |s| {
        matches!(
            s.label("mode"),
            Some("user" | "nice" | "system" | "irq" | "softirq" | "steal")
        )
    });
    let ours_cpu = summary["node"]["cpu"]["usageCoreNanoSeconds"]
        .as_f64()
        .unwrap()
        / 1e9;
    assert!(
        (ours_cpu - busy).abs() <= busy * 0.01 + 3.0,
        "cpu {ours_cpu} s vs node_exporter {busy} s"
    );
    let cores = value(&ours, "machine_cpu_cores", &[]).unwrap();
    let ne_cores = theirs
        .iter()
        .filter(|s| s.name == "node_cpu_seconds_total" && s.label("mode") == Some("idle"))
        .count() as f64;
    assert_eq!(cores, ne_cores);
    // The root filesystem (statvfs of "/", both): size and inodes are fixed, exactly equal; free
    // inodes move with other work on the machine between the two reads: 1 % of the total.
    let on_root = |name: &str| {
        theirs
            .iter()
            .find(|s| s.name == name && s.label("mountpoint") == Some("/"))
            .map(|s| (s.label("device").unwrap().to_string(), s.value))
            .unwrap_or_else(|| panic!("node_exporter has no {name} for /"))
    };
    let (dev, size) = on_root("node_filesystem_size_bytes");
    let ours_fs = |name: &str| value(&ours, name, &[("id", "/"), ("device", &dev)]);
    assert_eq!(ours_fs("container_fs_limit_bytes"), Some(size));
    let (_, files) = on_root("node_filesystem_files");
    assert_eq!(ours_fs("container_fs_inodes_total"), Some(files));
    let (_, files_free) = on_root("node_filesystem_files_free");
    let ours_free = ours_fs("container_fs_inodes_free").expect("container_fs_inodes_free on /");
    assert!(
        (ours_free - files_free).abs() <= files * 0.01,
        "free inodes {ours_free} vs node_exporter {files_free}"
    );

    // Topology: node_exporter's node_cpu_info has each CPU's package and core, from the same
    // /proc/cpuinfo: distinct packages are sockets, distinct (package, core) physical cores.
    let info: Vec<_> = theirs
        .iter()
        .filter(|s| s.name == "node_cpu_info")
        .map(|s| (s.label("package").unwrap(), s.label("core").unwrap()))
        .collect();
    assert_eq!(info.len() as f64, ne_cores, "node_cpu_info per CPU");
    let packages: std::collections::BTreeSet<_> = info.iter().map(|(p, _)| p).collect();
    let physical: std::collections::BTreeSet<_> = info.iter().collect();
    assert_eq!(
        value(&ours, "machine_cpu_sockets", &[]),
        Some(packages.len() as f64)
    );
    assert_eq!(
        value(&ours, "machine_cpu_physical_cores", &[]),
        Some(physical.len() as f64)
    );

    // Network: every interface node_exporter reports (but lo) has the same counters on the root
    // container; traffic between the reads is small here (loopback is excluded): 1 MiB + 1 %.
    let mut compared = 0;
    for s in theirs
        .iter()
        .filter(|s| s.name == "node_network_receive_bytes_total")
    {
        let dev = s.label("device").unwrap();
        if dev == "lo" || dev.starts_with("veth") || dev.starts_with("docker") {
            continue;
        }
        let rx = value(
            &ours,
            "container_network_receive_bytes_total",
            &[("id", "/"), ("interface", dev)],
        )
        .unwrap_or_else(|| panic!("no container_network_receive_bytes_total for {dev}"));
        assert!(
            (rx - s.value).abs() <= 1048576.0 + s.value * 0.01,
            "{dev} rx {rx} vs {}",
            s.value
        );
        let tx = value(
            &ours,
            "container_network_transmit_bytes_total",
            &[("id", "/"), ("interface", dev)],
        )
        .unwrap();
        let ne_tx = value(
            &theirs,
            "node_network_transmit_bytes_total",
            &[("device", dev)],
        )
        .unwrap();
        assert!(
            (tx - ne_tx).abs() <= 1048576.0 + ne_tx * 0.01,
            "{dev} tx {tx} vs {ne_tx}"
        );
        compared += 1;
    }
    assert!(compared > 0, "no interface to compare");
}
