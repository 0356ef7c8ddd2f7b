//! Heapster names → Prometheus names: the one mapping the `prometheus-remote-write` sink, the
//! `/federate` exposition and the PromQL query API all use, so a series looks the same in each.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::processors::names::is_cumulative;

/// Prometheus metric name for a Heapster one: `cpu/usage_rate` → `cpu_usage_rate`; cumulative
/// metrics (counters) get Prometheus' `_total` suffix: `network/rx` → `network_rx_total`.
pub fn metric_name(name: &str) -> String {
    let mut s = sanitize_metric_name(name);
    if is_cumulative(name) {
        s.push_str("_total");
    }
    s
}

fn sanitize_metric_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.as_bytes()[0].is_ascii_digit() {
        s.insert(0, '_');
    }
    s
}

/// Prometheus label name for a Heapster label key: `app.kubernetes.io/name` → `app_kubernetes_io_name`.
pub fn label_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.as_bytes()[0].is_ascii_digit() {
        s.insert(0, '_');
    }
    s
}

/// [`label_name`] without allocating when the name is already valid.
pub fn label_name_cow(name: &str) -> Cow<'_, str> {
    let b = name.as_bytes();
    if !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(label_name(name))
    }
}

/// A set's labels as Prometheus labels into `out` (cleared first): sanitized names, empty values
/// and `__name__` left out, `cluster_name` set to `cluster_name` when that is not empty, sorted
/// by name, the first of two keys that sanitize alike kept.
pub fn set_pairs<'a>(
    set: &'a BTreeMap<String, String>,
    cluster_name: &'a str,
    out: &mut Vec<(Cow<'a, str>, &'a str)>,
) {
    out.clear();
    for (k, v) in set {
        if v.is_empty() {
            continue;
        }
        let k = label_name_cow(k);
        if k == "__name__" || (!cluster_name.is_empty() && k == "cluster_name") {
            continue;
        }
        out.push((k, v));
    }
    if !cluster_name.is_empty() {
        out.push((Cow::Borrowed("cluster_name"), cluster_name));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
}

/// A labeled metric's labels into `out` (cleared first): its own labels (sanitized, non-empty,
/// no `__name__`), then each of the set's `set_pairs` whose name the metric does not carry
/// itself (a metric's own label wins). Not sorted, no `__name__`.
pub fn with_own<'a>(
    own: &'a BTreeMap<String, String>,
    set_pairs: &[(Cow<'a, str>, &'a str)],
    out: &mut Vec<(Cow<'a, str>, &'a str)>,
) {
    out.clear();
    for (k, v) in own.iter().filter(|(_, v)| !v.is_empty()) {
        let k = label_name_cow(k);
        if k != "__name__" {
            out.push((k, v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    let own_len = out.len();
    for (k, v) in set_pairs {
        if out[..own_len]
            .binary_search_by(|x| x.0.as_ref().cmp(k.as_ref()))
            .is_err()
        {
            out.push((k.clone(), v));
        }
    }
}

/// The full label set of one series as the sink writes it and the query API shows it:
/// `__name__` = [`metric_name`], the set's labels, the metric's own labels over them.
pub fn series_labels(
    set: &BTreeMap<String, String>,
    own: Option<&BTreeMap<String, String>>,
    heapster_name: &str,
    cluster_name: &str,
) -> BTreeMap<String, String> {
    let mut pairs = Vec::new();
    set_pairs(set, cluster_name, &mut pairs);
    let mut out: BTreeMap<String, String> = match own {
        Some(own) => {
            let mut all = Vec::new();
            with_own(own, &pairs, &mut all);
            all.into_iter()
                .map(|(k, v)| (k.into_owned(), v.to_string()))
                .collect()
        }
        None => pairs
            .into_iter()
            .map(|(k, v)| (k.into_owned(), v.to_string()))
            .collect(),
    };
    out.insert("__name__".into(), metric_name(heapster_name));
    out
}

/// Heapster's description of a metric, for `# HELP` and `/api/v1/metadata`; empty when unknown.
pub fn help(name: &str) -> &'static str {
    match name {
        "uptime" => "Number of milliseconds since the container was started (Heapster uptime)",
        "cpu/usage" => "Cumulative CPU usage on all cores in nanoseconds (Heapster cpu/usage)",
        "cpu/usage_rate" => "CPU usage on all cores in millicores (Heapster cpu/usage_rate)",
        "cpu/load" => "CPU load average (Heapster cpu/load)",
        "cpu/limit" => "CPU hard limit in millicores (Heapster cpu/limit)",
        "cpu/request" => {
            "CPU request (the guaranteed amount of resources) in millicores (Heapster cpu/request)"
        }
        "cpu/node_capacity" => "CPU capacity of a node in millicores (Heapster cpu/node_capacity)",
        "cpu/node_allocatable" => {
            "CPU allocatable of a node in millicores (Heapster cpu/node_allocatable)"
        }
        "cpu/node_utilization" => {
            "CPU utilization as a share of node allocatable (Heapster cpu/node_utilization)"
        }
        "cpu/node_reservation" => {
            "Share of CPU reserved on the node allocatable (Heapster cpu/node_reservation)"
        }
        "memory/usage" => "Total memory usage in bytes (Heapster memory/usage)",
        "memory/working_set" => "Total working set usage in bytes (Heapster memory/working_set)",
        "memory/rss" => "RSS memory usage in bytes (Heapster memory/rss)",
        "memory/cache" => "Cache memory usage in bytes (Heapster memory/cache)",
        "memory/limit" => "Memory hard limit in bytes (Heapster memory/limit)",
        "memory/request" => "Memory request in bytes (Heapster memory/request)",
        "memory/page_faults" => "Number of page faults (Heapster memory/page_faults)",
        "memory/major_page_faults" => {
            "Number of major page faults (Heapster memory/major_page_faults)"
        }
        "memory/page_faults_rate" => "Page faults per second (Heapster memory/page_faults_rate)",
        "memory/major_page_faults_rate" => {
            "Major page faults per second (Heapster memory/major_page_faults_rate)"
        }
        "memory/node_capacity" => {
            "Memory capacity of a node in bytes (Heapster memory/node_capacity)"
        }
        "memory/node_allocatable" => {
            "Memory allocatable of a node in bytes (Heapster memory/node_allocatable)"
        }
        "memory/node_utilization" => {
            "Memory utilization as a share of memory allocatable (Heapster memory/node_utilization)"
        }
        "memory/node_reservation" => {
            "Share of memory reserved on the node allocatable (Heapster memory/node_reservation)"
        }
        "network/rx" => "Cumulative bytes received over the network (Heapster network/rx)",
        "network/rx_errors" => {
            "Cumulative errors while receiving over the network (Heapster network/rx_errors)"
        }
        "network/tx" => "Cumulative bytes sent over the network (Heapster network/tx)",
        "network/tx_errors" => {
            "Cumulative errors while sending over the network (Heapster network/tx_errors)"
        }
        "network/rx_rate" => {
            "Bytes received over the network per second (Heapster network/rx_rate)"
        }
        "network/rx_errors_rate" => "Receive errors per second (Heapster network/rx_errors_rate)",
        "network/tx_rate" => "Bytes sent over the network per second (Heapster network/tx_rate)",
        "network/tx_errors_rate" => "Send errors per second (Heapster network/tx_errors_rate)",
        "filesystem/usage" => "Total bytes consumed on a filesystem (Heapster filesystem/usage)",
        "filesystem/limit" => "Total size of a filesystem in bytes (Heapster filesystem/limit)",
        "filesystem/available" => "Bytes available on a filesystem (Heapster filesystem/available)",
        "filesystem/inodes" => {
            "Total number of inodes on a filesystem (Heapster filesystem/inodes)"
        }
        "filesystem/inodes_free" => "Free inodes on a filesystem (Heapster filesystem/inodes_free)",
        "ephemeral_storage/usage" => {
            "Ephemeral storage usage in bytes (Heapster ephemeral_storage/usage)"
        }
        "restart_count" => "Number of container restarts (Heapster restart_count)",
        _ => "",
    }
}

/// The `# HELP` text of a Heapster metric: [`help`], or "Heapster metric <name>" when unknown.
pub fn help_text(name: &str) -> Cow<'static, str> {
    match help(name) {
        "" => Cow::Owned(format!("Heapster metric {name}")),
        h => Cow::Borrowed(h),
    }
}

/// The Prometheus type of a Heapster metric: `counter` for cumulative ones, else `gauge`.
pub fn metric_type(name: &str) -> &'static str {
    if is_cumulative(name) {
        "counter"
    } else {
        "gauge"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_labels_follow_the_sink() {
        let set: BTreeMap<String, String> = [
            ("type", "pod"),
            ("pod_name", "p"),
            ("labels", ""),
            ("Weird-Key", "x"),
            ("resource_id", "set"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let own: BTreeMap<String, String> = [("resource_id".to_string(), "/".to_string())].into();
        let l = series_labels(&set, Some(&own), "filesystem/usage", "");
        let got: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("Weird_Key", "x"),
                ("__name__", "filesystem_usage"),
                ("pod_name", "p"),
                ("resource_id", "/"),
                ("type", "pod")
            ]
        );
        let l = series_labels(&set, None, "network/rx", "c1");
        assert_eq!(l["__name__"], "network_rx_total");
        assert_eq!(l["cluster_name"], "c1");
        assert_eq!(metric_type("network/rx"), "counter");
        assert_eq!(help_text("x/y"), "Heapster metric x/y");
    }
}
