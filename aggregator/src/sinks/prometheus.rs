//! Prometheus: remote_write 1.0 (protobuf + snappy) of every series, and the text exposition of
//! the aggregated series that the aggregator serves at `/federate`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;

use super::http::{classify, transport_error, SendError};
use super::queue::Payload;
use super::Error;
use crate::batch::{set_type, Batch, MetricSet, MetricValue};
use vigil_common::exposition::{self, Kind, Timestamp};

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

pub use crate::store::names::{label_name, metric_name};
use crate::store::names::{help_text, metric_type, set_pairs, with_own};

fn varint_len(v: u64) -> usize {
    prost::encoding::encoded_len_varint(v)
}

fn put_varint(buf: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, buf);
}

/// Bytes of one `TimeSeries.labels` field (tag, length, Label message).
fn label_field_len(name: &str, value: &str) -> usize {
    let inner = 1
        + varint_len(name.len() as u64)
        + name.len()
        + 1
        + varint_len(value.len() as u64)
        + value.len();
    1 + varint_len(inner as u64) + inner
}

/// Appends one `TimeSeries.labels` field.
fn put_label(buf: &mut Vec<u8>, name: &str, value: &str) {
    let inner = 1
        + varint_len(name.len() as u64)
        + name.len()
        + 1
        + varint_len(value.len() as u64)
        + value.len();
    buf.push(0x0a);
    put_varint(buf, inner as u64);
    buf.push(0x0a);
    put_varint(buf, name.len() as u64);
    buf.extend_from_slice(name.as_bytes());
    buf.push(0x12);
    put_varint(buf, value.len() as u64);
    buf.extend_from_slice(value.as_bytes());
}

/// Appends one `TimeSeries.samples` field; zero fields are left out, as prost (proto3) does.
fn put_sample(buf: &mut Vec<u8>, sample_len: usize, v: f64, ts: i64) {
    buf.push(0x12);
    put_varint(buf, sample_len as u64);
    if v != 0.0 {
        buf.push(0x09);
        buf.extend_from_slice(&v.to_le_bytes());
    }
    if ts != 0 {
        buf.push(0x10);
        put_varint(buf, ts as u64);
    }
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
    ///
    /// Hand-rolled for speed (no per-point allocation): each set's labels are encoded once into
    /// a block split where `__name__` sorts in; a point is then the block halves around its
    /// cached name label plus the sample. `fast_encoder_matches_prost_and_sorts_labels` checks
    /// the bytes against prost's own encoding.
    pub fn encode_raw(&self, batch: &Batch) -> Vec<(Vec<u8>, u32)> {
        let mut out = Vec::new();
        self.encode_chunks(batch, |raw, n| out.push((raw.to_vec(), n)));
        out
    }

    /// Encodes a batch chunk by chunk into one reused buffer, handing each finished request
    /// (at most `batch_size` samples) to `emit`.
    fn encode_chunks(&self, batch: &Batch, mut emit: impl FnMut(&[u8], u32)) {
        let ts = batch.timestamp.timestamp_millis();
        let sample_len = |v: f64| {
            (if v != 0.0 { 9 } else { 0 })
                + if ts != 0 {
                    1 + varint_len(ts as u64)
                } else {
                    0
                }
        };
        let cap = (self.batch_size.min(100_000) * 320).max(4096);
        let mut buf: Vec<u8> = Vec::with_capacity(cap);
        let mut n = 0u32;
        // Per-batch caches of short, trusted keys: rustc-hash's fast hasher.
        let mut name_cache: rustc_hash::FxHashMap<&str, Vec<u8>> = Default::default();
        // Names of labeled metrics, sanitized once per batch.
        let mut labeled_names: rustc_hash::FxHashMap<&str, String> = Default::default();
        for set in batch.sets.values() {
            for lm in &set.labeled {
                if !labeled_names.contains_key(lm.name) {
                    labeled_names.insert(&lm.name, metric_name(&lm.name));
                }
            }
        }
        let mut all: Vec<(Cow<'_, str>, &str)> = Vec::with_capacity(32);
        let mut pairs: Vec<(Cow<'_, str>, &str)> = Vec::with_capacity(32);
        let mut block: Vec<u8> = Vec::with_capacity(1024);
        for set in batch.sets.values() {
            // The set's labels, sorted, encoded once.
            set_pairs(&set.labels, &self.cluster_name, &mut pairs);
            block.clear();
            let mut split = 0;
            for (k, v) in &pairs {
                if k.as_ref() < "__name__" {
                    put_label(&mut block, k, v);
                    split = block.len();
                } else {
                    put_label(&mut block, k, v);
                }
            }
            for (name, value) in &set.values {
                let name_label: &[u8] = match name_cache.get(*name) {
                    Some(l) => l,
                    None => {
                        let mut l = Vec::new();
                        put_label(&mut l, "__name__", &metric_name(name));
                        name_cache.entry(*name).or_insert(l)
                    }
                };
                let v = value.as_f64();
                let sl = sample_len(v);
                let series_len = block.len() + name_label.len() + 1 + varint_len(sl as u64) + sl;
                buf.reserve(series_len + 12);
                buf.push(0x0a);
                put_varint(&mut buf, series_len as u64);
                buf.extend_from_slice(&block[..split]);
                buf.extend_from_slice(name_label);
                buf.extend_from_slice(&block[split..]);
                put_sample(&mut buf, sl, v, ts);
                n += 1;
                if n as usize >= self.batch_size {
                    emit(&buf, n);
                    buf.clear();
                    n = 0;
                }
            }
            for lm in &set.labeled {
                with_own(&lm.labels, &pairs, &mut all);
                all.push((Cow::Borrowed("__name__"), labeled_names[lm.name].as_str()));
                all.sort_by(|a, b| a.0.cmp(&b.0));
                let v = lm.value.as_f64();
                let sl = sample_len(v);
                let labels_len: usize = all.iter().map(|(k, v)| label_field_len(k, v)).sum();
                let series_len = labels_len + 1 + varint_len(sl as u64) + sl;
                buf.push(0x0a);
                put_varint(&mut buf, series_len as u64);
                for (k, v) in &all {
                    put_label(&mut buf, k, v);
                }
                put_sample(&mut buf, sl, v, ts);
                n += 1;
                if n as usize >= self.batch_size {
                    emit(&buf, n);
                    buf.clear();
                    n = 0;
                }
            }
        }
        if n > 0 {
            emit(&buf, n);
        }
    }

    /// The compressed payloads for a batch.
    pub fn encode(&self, batch: &Batch) -> Vec<Payload> {
        let mut enc = snap::raw::Encoder::new();
        let mut z: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        self.encode_chunks(batch, |raw, points| {
            z.resize(snap::raw::max_compress_len(raw.len()), 0);
            let len = enc
                .compress(raw, &mut z)
                .expect("snappy of an in-memory buffer");
            out.push(Payload {
                body: Bytes::copy_from_slice(&z[..len]),
                points,
            });
        });
        out
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
        let client =
            super::http::client(c.delivery.timeout, c.insecure_ssl).map_err(|e| Error::Client {
                sink: name.into(),
                reason: e.to_string(),
            })?;
        let url = url::Url::parse(&c.url).map_err(|e| Error::Config {
            key: "url".into(),
            reason: e.to_string(),
        })?;
        let auth = match &c.bearer_token_file {
            Some(p) => Some(format!(
                "Bearer {}",
                std::fs::read_to_string(p)
                    .map_err(|e| Error::Config {
                        key: "bearer_token_file".into(),
                        reason: format!("{}: {e}", p.display())
                    })?
                    .trim()
            )),
            None => None,
        };
        let basic = (!c.user.is_empty()).then(|| (c.user.clone(), c.pw.clone()));
        Ok(RemoteWrite {
            client,
            url,
            auth,
            basic,
        })
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
    let ts = Timestamp::from_millis(batch.timestamp.timestamp_millis());
    // family name → (Heapster name, lines)
    let mut families: BTreeMap<String, (&str, String)> = BTreeMap::new();
    for (key, set) in &batch.sets {
        match set_kind(key, set) {
            Some(set_type::POD | set_type::NAMESPACE | set_type::NODE | set_type::CLUSTER) => {}
            _ => continue,
        }
        let mut labels = Vec::new();
        set_pairs(&set.labels, "", &mut labels);
        let metrics = set.values.iter().map(|(k, v)| (*k, *v, None)).chain(
            set.labeled
                .iter()
                .map(|m| (m.name, m.value, Some(&*m.labels))),
        );
        let mut all = Vec::new();
        for (name, value, own) in metrics {
            let fam = metric_name(name);
            let entry = families
                .entry(fam.clone())
                .or_insert_with(|| (name, String::new()));
            let lines = &mut entry.1;
            lines.push_str(&fam);
            match own {
                Some(own) => {
                    with_own(own, &labels, &mut all);
                    all.sort_by(|a, b| a.0.cmp(&b.0));
                }
                None => all.clone_from(&labels),
            }
            if !all.is_empty() {
                lines.push('{');
                for (i, (k, v)) in all.iter().enumerate() {
                    exposition::label(lines, i == 0, k, v);
                }
                lines.push('}');
            }
            match value {
                MetricValue::Int(i) => exposition::value_line(lines, i, Some(&ts)),
                MetricValue::Float(f) => exposition::value_line(lines, f, Some(&ts)),
            }
        }
    }
    for (fam, (name, lines)) in &families {
        let kind = if metric_type(name) == "counter" {
            Kind::Counter
        } else {
            Kind::Gauge
        };
        exposition::header(out, fam, kind, &help_text(name));
        out.push_str(lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::LabeledMetric;
    use prost::Message;

    fn set(
        kind: &str,
        extra: &[(&str, &str)],
        values: &[(&'static str, MetricValue)],
    ) -> MetricSet {
        let mut labels: BTreeMap<String, String> = [("type".to_string(), kind.to_string())].into();
        for (k, v) in extra {
            labels.insert(k.to_string(), v.to_string());
        }
        MetricSet {
            labels: std::sync::Arc::new(labels),
            values: values.iter().copied().collect(),
            ..Default::default()
        }
    }

    fn batch() -> Batch {
        let mut pod = set(
            "pod",
            &[
                ("namespace_name", "ns1"),
                ("pod_name", "web\"1"),
                ("nodename", "n1"),
                ("labels", ""),
                ("Weird-Key", "x"),
            ],
            &[
                ("cpu/usage_rate", MetricValue::Int(250)),
                ("network/rx", MetricValue::Int(0)),
                ("memory/usage", MetricValue::Int(1 << 20)),
            ],
        );
        pod.labeled.push(LabeledMetric {
            name: "filesystem/usage".into(),
            labels: crate::batch::resource_labels("Volume:data"),
            value: MetricValue::Int(77),
        });
        let node = set(
            "node",
            &[("nodename", "n1")],
            &[("cpu/node_utilization", MetricValue::Float(0.25))],
        );
        let container = set(
            "pod_container",
            &[("container_name", "c")],
            &[("cpu/usage_rate", MetricValue::Int(1))],
        );
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
        let enc = RemoteWriteEncoder {
            batch_size: 1000,
            cluster_name: "c1".into(),
        };
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
        assert!(fs
            .labels
            .iter()
            .any(|l| l.name == "resource_id" && l.value == "Volume:data"));
        assert!(fs.labels.iter().any(|l| l.name == "Weird_Key"));
        assert_eq!(fs.samples[0].value, 77.0);
        let rx = decoded
            .timeseries
            .iter()
            .find(|t| t.labels.iter().any(|l| l.value == "network_rx_total"))
            .unwrap();
        assert_eq!(rx.samples[0].value, 0.0);
    }

    #[test]
    fn batches_split_and_snappy_round_trips() {
        let enc = RemoteWriteEncoder {
            batch_size: 4,
            cluster_name: String::new(),
        };
        let payloads = enc.encode(&batch());
        assert_eq!(
            payloads.iter().map(|p| p.points).collect::<Vec<_>>(),
            vec![4, 2]
        );
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&payloads[0].body)
            .unwrap();
        let w = WriteRequest::decode(&raw[..]).unwrap();
        assert_eq!(w.timeseries.len(), 4);
        assert!(w
            .timeseries
            .iter()
            .all(|t| t.labels.iter().all(|l| l.name != "cluster_name")));
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
        assert_eq!(
            label_name("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
    }
}
