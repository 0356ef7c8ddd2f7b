//! Prometheus: remote_write 1.0 (protobuf + snappy) of every series, and the text exposition of
//! the aggregated series that the aggregator serves at `/federate`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::Bytes;

use super::http::{classify, transport_error, SendError};
use super::queue::Payload;
use super::{is_cumulative, Error};
use crate::batch::{set_type, Batch, MetricSet, MetricValue};

/// remote_write 1.0 `WriteRequest` (prometheus/prompb/remote.proto; metadata, field 3, unused).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// One series and its samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// A label pair.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// A sample: value and timestamp in milliseconds.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

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
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' })
        .collect();
    if s.is_empty() || s.as_bytes()[0].is_ascii_digit() {
        s.insert(0, '_');
    }
    s
}

/// Prometheus label name for a Heapster label key.
pub fn label_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect();
    if s.is_empty() || s.as_bytes()[0].is_ascii_digit() {
        s.insert(0, '_');
    }
    s
}

/// A set's labels as Prometheus labels: sanitized names, empty values left out, sorted.
fn set_labels(set: &MetricSet, cluster_name: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = set
        .labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (label_name(k), v.clone()))
        .filter(|(k, _)| k != "__name__")
        .collect();
    if !cluster_name.is_empty() {
        v.retain(|(k, _)| k != "cluster_name");
        v.push(("cluster_name".into(), cluster_name.into()));
    }
    v.sort();
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

fn varint_len(v: u64) -> usize {
    prost::encoding::encoded_len_varint(v)
}

fn put_varint(buf: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, buf);
}

/// A label already encoded as a `TimeSeries.labels` field (tag, length, Label message).
struct EncLabel {
    name: String,
    bytes: Vec<u8>,
}

fn enc_label(name: &str, value: &str) -> EncLabel {
    let inner = 1 + varint_len(name.len() as u64) + name.len() + 1 + varint_len(value.len() as u64) + value.len();
    let mut bytes = Vec::with_capacity(inner + 6);
    bytes.push(0x0a);
    put_varint(&mut bytes, inner as u64);
    bytes.push(0x0a);
    put_varint(&mut bytes, name.len() as u64);
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(0x12);
    put_varint(&mut bytes, value.len() as u64);
    bytes.extend_from_slice(value.as_bytes());
    EncLabel { name: name.to_string(), bytes }
}

/// Encodes batches as snappy-compressed remote_write requests of at most `batch_size` samples.
#[derive(Debug, Clone)]
pub struct RemoteWriteEncoder {
    /// Most samples per request.
    pub batch_size: usize,
    /// Added as the `cluster_name` label when not empty.
    pub cluster_name: String,
}

impl RemoteWriteEncoder {
    /// The uncompressed protobuf requests for a batch (exposed for tests and benchmarks).
    pub fn encode_raw(&self, batch: &Batch) -> Vec<(Vec<u8>, u32)> {
        let ts = batch.timestamp.timestamp_millis();
        let sample_len = |v: f64| (if v != 0.0 { 9 } else { 0 }) + if ts != 0 { 1 + varint_len(ts as u64) } else { 0 };
        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
        let mut n = 0u32;
        let mut name_cache: std::collections::HashMap<&str, EncLabel> = std::collections::HashMap::new();
        for set in batch.sets.values() {
            let labels: Vec<EncLabel> =
                set_labels(set, &self.cluster_name).iter().map(|(k, v)| enc_label(k, v)).collect();
            let at = labels.partition_point(|l| l.name.as_str() < "__name__");
            let labels_len: usize = labels.iter().map(|l| l.bytes.len()).sum();
            let metrics = set
                .values
                .iter()
                .map(|(k, v)| (k.as_str(), *v, None))
                .chain(set.labeled.iter().map(|m| (m.name.as_str(), m.value, Some(&m.labels))));
            for (name, value, own) in metrics {
                if !name_cache.contains_key(name) {
                    name_cache.insert(name, enc_label("__name__", &metric_name(name)));
                }
                let name_label = &name_cache[name];
                let own_enc: Vec<EncLabel>;
                let mut merged: Vec<&EncLabel> = Vec::new();
                if let Some(own) = own {
                    let mut all: BTreeMap<String, &str> = BTreeMap::new();
                    for (k, v) in own.iter().filter(|(_, v)| !v.is_empty()) {
                        all.insert(label_name(k), v);
                    }
                    own_enc = all.iter().map(|(k, v)| enc_label(k, v)).collect();
                    merged.extend(own_enc.iter());
                    merged.extend(labels.iter().filter(|l| !all.contains_key(&l.name) && l.name != "__name__"));
                    merged.push(name_label);
                    merged.sort_by(|a, b| a.name.cmp(&b.name));
                }
                let v = value.as_f64();
                let sl = sample_len(v);
                let body_len = if own.is_some() {
                    merged.iter().map(|l| l.bytes.len()).sum::<usize>()
                } else {
                    labels_len + name_label.bytes.len()
                };
                let series_len = body_len + 1 + varint_len(sl as u64) + sl;
                buf.push(0x0a);
                put_varint(&mut buf, series_len as u64);
                if own.is_some() {
                    for l in &merged {
                        buf.extend_from_slice(&l.bytes);
                    }
                } else {
                    for l in &labels[..at] {
                        buf.extend_from_slice(&l.bytes);
                    }
                    buf.extend_from_slice(&name_label.bytes);
                    for l in &labels[at..] {
                        buf.extend_from_slice(&l.bytes);
                    }
                }
                buf.push(0x12);
                put_varint(&mut buf, sl as u64);
                if v != 0.0 {
                    buf.push(0x09);
                    buf.extend_from_slice(&v.to_le_bytes());
                }
                if ts != 0 {
                    buf.push(0x10);
                    put_varint(&mut buf, ts as u64);
                }
                n += 1;
                if n as usize >= self.batch_size {
                    out.push((std::mem::take(&mut buf), n));
                    n = 0;
                }
            }
        }
        if n > 0 {
            out.push((buf, n));
        }
        out
    }

    /// The compressed payloads for a batch.
    pub fn encode(&self, batch: &Batch) -> Vec<Payload> {
        let mut enc = snap::raw::Encoder::new();
        self.encode_raw(batch)
            .into_iter()
            .map(|(raw, points)| Payload {
                body: Bytes::from(enc.compress_vec(&raw).expect("snappy of an in-memory buffer")),
                points,
            })
            .collect()
    }
}

/// The remote_write transport.
pub struct RemoteWrite {
    client: reqwest::Client,
    url: url::Url,
    auth: Option<String>,
    basic: Option<(String, String)>,
}

impl RemoteWrite {
    pub fn new(name: &str, c: &super::config::RemoteWriteConfig) -> Result<RemoteWrite, Error> {
        let client = super::http::client(c.delivery.timeout, c.insecure_ssl)
            .map_err(|e| Error::Client { sink: name.into(), reason: e.to_string() })?;
        let url = url::Url::parse(&c.url).map_err(|e| Error::Config { key: "url".into(), reason: e.to_string() })?;
        let auth = match &c.bearer_token_file {
            Some(p) => Some(format!(
                "Bearer {}",
                std::fs::read_to_string(p)
                    .map_err(|e| Error::Config { key: "bearer_token_file".into(), reason: format!("{}: {e}", p.display()) })?
                    .trim()
            )),
            None => None,
        };
        let basic = (!c.user.is_empty()).then(|| (c.user.clone(), c.pw.clone()));
        Ok(RemoteWrite { client, url, auth, basic })
    }

    /// Sends one payload with the headers remote_write 1.0 requires.
    pub async fn send(&self, body: Bytes) -> Result<(), SendError> {
        let mut req = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_ENCODING, "snappy")
            .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        if let Some(a) = &self.auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        if let Some((u, p)) = &self.basic {
            req = req.basic_auth(u, Some(p));
        }
        classify(req.send().await.map_err(transport_error)?).await
    }
}

/// Heapster's description of a metric, for `# HELP`.
fn help(name: &str) -> &'static str {
    match name {
        "uptime" => "Number of milliseconds since the container was started (Heapster uptime)",
        "cpu/usage" => "Cumulative CPU usage on all cores in nanoseconds (Heapster cpu/usage)",
        "cpu/usage_rate" => "CPU usage on all cores in millicores (Heapster cpu/usage_rate)",
        "cpu/load" => "CPU load average (Heapster cpu/load)",
        "cpu/limit" => "CPU hard limit in millicores (Heapster cpu/limit)",
        "cpu/request" => "CPU request (the guaranteed amount of resources) in millicores (Heapster cpu/request)",
        "cpu/node_capacity" => "CPU capacity of a node in millicores (Heapster cpu/node_capacity)",
        "cpu/node_allocatable" => "CPU allocatable of a node in millicores (Heapster cpu/node_allocatable)",
        "cpu/node_utilization" => "CPU utilization as a share of node allocatable (Heapster cpu/node_utilization)",
        "cpu/node_reservation" => "Share of CPU reserved on the node allocatable (Heapster cpu/node_reservation)",
        "memory/usage" => "Total memory usage in bytes (Heapster memory/usage)",
        "memory/working_set" => "Total working set usage in bytes (Heapster memory/working_set)",
        "memory/rss" => "RSS memory usage in bytes (Heapster memory/rss)",
        "memory/cache" => "Cache memory usage in bytes (Heapster memory/cache)",
        "memory/limit" => "Memory hard limit in bytes (Heapster memory/limit)",
        "memory/request" => "Memory request in bytes (Heapster memory/request)",
        "memory/page_faults" => "Number of page faults (Heapster memory/page_faults)",
        "memory/major_page_faults" => "Number of major page faults (Heapster memory/major_page_faults)",
        "memory/page_faults_rate" => "Page faults per second (Heapster memory/page_faults_rate)",
        "memory/major_page_faults_rate" => "Major page faults per second (Heapster memory/major_page_faults_rate)",
        "memory/node_capacity" => "Memory capacity of a node in bytes (Heapster memory/node_capacity)",
        "memory/node_allocatable" => "Memory allocatable of a node in bytes (Heapster memory/node_allocatable)",
        "memory/node_utilization" => "Memory utilization as a share of memory allocatable (Heapster memory/node_utilization)",
        "memory/node_reservation" => "Share of memory reserved on the node allocatable (Heapster memory/node_reservation)",
        "network/rx" => "Cumulative bytes received over the network (Heapster network/rx)",
        "network/rx_errors" => "Cumulative errors while receiving over the network (Heapster network/rx_errors)",
        "network/tx" => "Cumulative bytes sent over the network (Heapster network/tx)",
        "network/tx_errors" => "Cumulative errors while sending over the network (Heapster network/tx_errors)",
        "network/rx_rate" => "Bytes received over the network per second (Heapster network/rx_rate)",
        "network/rx_errors_rate" => "Receive errors per second (Heapster network/rx_errors_rate)",
        "network/tx_rate" => "Bytes sent over the network per second (Heapster network/tx_rate)",
        "network/tx_errors_rate" => "Send errors per second (Heapster network/tx_errors_rate)",
        "filesystem/usage" => "Total bytes consumed on a filesystem (Heapster filesystem/usage)",
        "filesystem/limit" => "Total size of a filesystem in bytes (Heapster filesystem/limit)",
        "filesystem/available" => "Bytes available on a filesystem (Heapster filesystem/available)",
        "filesystem/inodes" => "Total number of inodes on a filesystem (Heapster filesystem/inodes)",
        "filesystem/inodes_free" => "Free inodes on a filesystem (Heapster filesystem/inodes_free)",
        "ephemeral_storage/usage" => "Ephemeral storage usage in bytes (Heapster ephemeral_storage/usage)",
        "restart_count" => "Number of container restarts (Heapster restart_count)",
        _ => "",
    }
}

fn escape_help(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_label_value(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn fmt_value(v: MetricValue, out: &mut String) {
    match v {
        MetricValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        MetricValue::Float(f) if f.is_nan() => out.push_str("NaN"),
        MetricValue::Float(f) if f == f64::INFINITY => out.push_str("+Inf"),
        MetricValue::Float(f) if f == f64::NEG_INFINITY => out.push_str("-Inf"),
        MetricValue::Float(f) => out.push_str(ryu::Buffer::new().format_finite(f)),
    }
}

fn set_kind<'a>(key: &str, set: &'a MetricSet) -> Option<&'a str> {
    if let Some(t) = set.labels.get("type") {
        return Some(t.as_str());
    }
    // No `type` label: infer from the Heapster key.
    if key == "cluster" {
        Some(set_type::CLUSTER)
    } else if key.starts_with("node:") && !key.contains('/') {
        Some(set_type::NODE)
    } else if key.starts_with("namespace:") && !key.contains('/') {
        Some(set_type::NAMESPACE)
    } else if key.starts_with("namespace:") && key.matches('/').count() == 1 {
        Some(set_type::POD)
    } else {
        None
    }
}

/// Prometheus exposition of a batch's aggregated series (pod, namespace, node and cluster sets):
/// `cpu/usage_rate` → `cpu_usage_rate`, Heapster's set labels (and a labeled metric's own) as
/// labels, empty ones left out, each sample stamped with the batch time. Cumulative metrics are
/// typed `counter` and named with `_total`, the others `gauge`; each family's lines are contiguous.
pub fn render_exposition(batch: &Batch, out: &mut String) {
    let ts = batch.timestamp.timestamp_millis();
    // family name → (Heapster name, lines)
    let mut families: BTreeMap<String, (&str, String)> = BTreeMap::new();
    for (key, set) in &batch.sets {
        match set_kind(key, set) {
            Some(set_type::POD | set_type::NAMESPACE | set_type::NODE | set_type::CLUSTER) => {}
            _ => continue,
        }
        let labels = set_labels(set, "");
        let metrics = set
            .values
            .iter()
            .map(|(k, v)| (k.as_str(), *v, None))
            .chain(set.labeled.iter().map(|m| (m.name.as_str(), m.value, Some(&m.labels))));
        for (name, value, own) in metrics {
            let fam = metric_name(name);
            let entry = families.entry(fam.clone()).or_insert_with(|| (name, String::new()));
            let lines = &mut entry.1;
            lines.push_str(&fam);
            let mut all: Vec<(String, &str)> = labels.iter().map(|(k, v)| (k.clone(), v.as_str())).collect();
            if let Some(own) = own {
                for (k, v) in own.iter().filter(|(_, v)| !v.is_empty()) {
                    let k = label_name(k);
                    all.retain(|(x, _)| *x != k);
                    all.push((k, v));
                }
                all.sort();
            }
            if !all.is_empty() {
                lines.push('{');
                for (i, (k, v)) in all.iter().enumerate() {
                    if i > 0 {
                        lines.push(',');
                    }
                    lines.push_str(k);
                    lines.push_str("=\"");
                    escape_label_value(v, lines);
                    lines.push('"');
                }
                lines.push('}');
            }
            lines.push(' ');
            fmt_value(value, lines);
            let _ = writeln!(lines, " {ts}");
        }
    }
    for (fam, (name, lines)) in &families {
        let h = help(name);
        out.push_str("# HELP ");
        out.push_str(fam);
        out.push(' ');
        if h.is_empty() {
            escape_help(&format!("Heapster metric {name}"), out);
        } else {
            escape_help(h, out);
        }
        out.push('\n');
        let _ = writeln!(out, "# TYPE {fam} {}", if is_cumulative(name) { "counter" } else { "gauge" });
        out.push_str(lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::LabeledMetric;
    use prost::Message;

    fn set(kind: &str, extra: &[(&str, &str)], values: &[(&str, MetricValue)]) -> MetricSet {
        let mut labels: BTreeMap<String, String> = [("type".to_string(), kind.to_string())].into();
        for (k, v) in extra {
            labels.insert(k.to_string(), v.to_string());
        }
        MetricSet {
            labels,
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            ..Default::default()
        }
    }

    fn batch() -> Batch {
        let mut pod = set(
            "pod",
            &[("namespace_name", "ns1"), ("pod_name", "web\"1"), ("nodename", "n1"), ("labels", ""), ("Weird-Key", "x")],
            &[("cpu/usage_rate", MetricValue::Int(250)), ("network/rx", MetricValue::Int(0)), ("memory/usage", MetricValue::Int(1 << 20))],
        );
        pod.labeled.push(LabeledMetric {
            name: "filesystem/usage".into(),
            labels: [("resource_id".to_string(), "Volume:data".to_string())].into(),
            value: MetricValue::Int(77),
        });
        let node = set("node", &[("nodename", "n1")], &[("cpu/node_utilization", MetricValue::Float(0.25))]);
        let container = set("pod_container", &[("container_name", "c")], &[("cpu/usage_rate", MetricValue::Int(1))]);
        Batch {
            timestamp: chrono::DateTime::from_timestamp(1_700_000_000, 123_000_000).unwrap(),
            sets: [
                ("namespace:ns1/pod:web".to_string(), pod),
                ("node:n1".to_string(), node),
                ("namespace:ns1/pod:web/container:c".to_string(), container),
            ]
            .into(),
        }
    }

    #[test]
    fn fast_encoder_matches_prost_and_sorts_labels() {
        let enc = RemoteWriteEncoder { batch_size: 1000, cluster_name: "c1".into() };
        let raw = enc.encode_raw(&batch());
        assert_eq!(raw.len(), 1);
        let decoded = WriteRequest::decode(&raw[0].0[..]).unwrap();
        assert_eq!(decoded.timeseries.len(), 6);
        assert_eq!(raw[0].1, 6);
        // Re-encoding with prost gives the same bytes: the hand encoder is exact.
        assert_eq!(decoded.encode_to_vec(), raw[0].0);
        for ts in &decoded.timeseries {
            let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(names, sorted, "sorted and unique");
            assert!(names.contains(&"__name__") && names.contains(&"cluster_name"));
            assert!(ts.labels.iter().all(|l| !l.value.is_empty()));
            assert_eq!(ts.samples.len(), 1);
            assert_eq!(ts.samples[0].timestamp, 1_700_000_000_123);
        }
        let fs = decoded
            .timeseries
            .iter()
            .find(|t| t.labels.iter().any(|l| l.value == "filesystem_usage"))
            .unwrap();
        assert!(fs.labels.iter().any(|l| l.name == "resource_id" && l.value == "Volume:data"));
        assert!(fs.labels.iter().any(|l| l.name == "Weird_Key"));
        assert_eq!(fs.samples[0].value, 77.0);
        let rx = decoded.timeseries.iter().find(|t| t.labels.iter().any(|l| l.value == "network_rx_total")).unwrap();
        assert_eq!(rx.samples[0].value, 0.0);
    }

    #[test]
    fn batches_split_and_snappy_round_trips() {
        let enc = RemoteWriteEncoder { batch_size: 4, cluster_name: String::new() };
        let payloads = enc.encode(&batch());
        assert_eq!(payloads.iter().map(|p| p.points).collect::<Vec<_>>(), vec![4, 2]);
        let raw = snap::raw::Decoder::new().decompress_vec(&payloads[0].body).unwrap();
        let w = WriteRequest::decode(&raw[..]).unwrap();
        assert_eq!(w.timeseries.len(), 4);
        assert!(w.timeseries.iter().all(|t| t.labels.iter().all(|l| l.name != "cluster_name")));
    }

    #[test]
    fn exposition_has_aggregated_sets_only_with_help_and_type() {
        let mut out = String::new();
        render_exposition(&batch(), &mut out);
        let want = "\
# HELP cpu_node_utilization CPU utilization as a share of node allocatable (Heapster cpu/node_utilization)
# TYPE cpu_node_utilization gauge
cpu_node_utilization{nodename=\"n1\",type=\"node\"} 0.25 1700000000123
# HELP cpu_usage_rate CPU usage on all cores in millicores (Heapster cpu/usage_rate)
# TYPE cpu_usage_rate gauge
cpu_usage_rate{Weird_Key=\"x\",namespace_name=\"ns1\",nodename=\"n1\",pod_name=\"web\\\"1\",type=\"pod\"} 250 1700000000123
# HELP filesystem_usage Total bytes consumed on a filesystem (Heapster filesystem/usage)
# TYPE filesystem_usage gauge
filesystem_usage{Weird_Key=\"x\",namespace_name=\"ns1\",nodename=\"n1\",pod_name=\"web\\\"1\",resource_id=\"Volume:data\",type=\"pod\"} 77 1700000000123
# HELP memory_usage Total memory usage in bytes (Heapster memory/usage)
# TYPE memory_usage gauge
memory_usage{Weird_Key=\"x\",namespace_name=\"ns1\",nodename=\"n1\",pod_name=\"web\\\"1\",type=\"pod\"} 1048576 1700000000123
# HELP network_rx_total Cumulative bytes received over the network (Heapster network/rx)
# TYPE network_rx_total counter
network_rx_total{Weird_Key=\"x\",namespace_name=\"ns1\",nodename=\"n1\",pod_name=\"web\\\"1\",type=\"pod\"} 0 1700000000123
";
        assert_eq!(out, want);
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(metric_name("cpu/usage_rate"), "cpu_usage_rate");
        assert_eq!(metric_name("9lives"), "_9lives");
        assert_eq!(metric_name("cpu/usage"), "cpu_usage_total");
        assert_eq!(label_name("app.kubernetes.io/name"), "app_kubernetes_io_name");
    }
}
