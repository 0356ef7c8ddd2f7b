//! Sinks: deliver every batch to InfluxDB (v1, v2), Prometheus remote_write or the log, each
//! through its own bounded, disk-spilling queue with retries, so a slow or dead sink never
//! stalls scraping or the other sinks.
//!
//! Per sink: `push` hands the batch to a bounded channel (never waits); a feeder task encodes
//! it into payloads (line protocol, snappy protobuf) and appends them to the sink's `Queue`; a
//! delivery task sends the oldest payloads (`concurrency` at a time), retrying failures with
//! exponential backoff and jitter, dropping a payload only when the server rejects it (4xx) —
//! logged with the server's reason and counted.

pub mod config;
pub mod http;
pub mod influxdb;
pub mod prometheus;
pub mod queue;
pub mod retry;

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use config::{
    DeliveryConfig, Influxdb2Config, InfluxWrite, InfluxdbConfig, LogConfig, RemoteWriteConfig, SinkConfig,
    SinksConfig,
};
pub use prometheus::render_exposition;

use crate::batch::Batch;
use http::SendError;
use queue::{Entry, Payload, Queue, QueueError, QueueStats};
use vigil_common::exposition::{Format, Kind, Writer};

/// Errors of the sinks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--sink` value that cannot be used.
    #[error("--sink={uri}: {reason}")]
    BadUri { uri: String, reason: String },
    /// A configuration key with a bad value.
    #[error("sink config `{key}`: {reason}")]
    Config { key: String, reason: String },
    /// The HTTP client could not be built.
    #[error("sink {sink}: cannot build the HTTP client: {reason}")]
    Client { sink: String, reason: String },
    /// The spill directory could not be used.
    #[error("sink {sink}: {source}")]
    Queue { sink: String, source: QueueError },
}

enum Encoder {
    Line(influxdb::LineProtocol),
    RemoteWrite(prometheus::RemoteWriteEncoder),
}

enum Transport {
    V1(influxdb::V1),
    V2(influxdb::V2),
    RemoteWrite(prometheus::RemoteWrite),
    Log,
}

#[derive(Default)]
struct Metrics {
    points_sent: AtomicU64,
    payloads_sent: AtomicU64,
    requests_failed: AtomicU64,
    retries: AtomicU64,
    payloads_rejected: AtomicU64,
    points_rejected: AtomicU64,
    points_unsupported: AtomicU64,
    batches_dropped: AtomicU64,
    last_success_ms: AtomicI64,
}

struct Sink {
    name: String,
    kind: &'static str,
    encoder: Encoder,
    transport: Transport,
    queue: Queue,
    concurrency: usize,
    retry_initial: Duration,
    retry_max: Duration,
    tx: mpsc::Sender<Arc<Batch>>,
    rx: Mutex<Option<mpsc::Receiver<Arc<Batch>>>>,
    metrics: Metrics,
}

/// A snapshot of one sink's counters (also exported by `write_metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct SinkStats {
    pub name: String,
    pub kind: &'static str,
    pub points_sent: u64,
    pub payloads_sent: u64,
    pub requests_failed: u64,
    pub retries: u64,
    pub payloads_rejected: u64,
    pub points_rejected: u64,
    pub points_unsupported: u64,
    pub batches_dropped: u64,
    /// Milliseconds since the epoch of the last delivered payload (0: never).
    pub last_success_ms: i64,
    pub queue: QueueStats,
}

/// One self-metric family: name, help, and its series: an extra label and how to read the value.
type Family = (
    &'static str,
    &'static str,
    &'static [(Option<(&'static str, &'static str)>, fn(&SinkStats) -> f64)],
);

/// Every configured sink.
pub struct SinkSet {
    sinks: Vec<Arc<Sink>>,
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

impl SinkSet {
    /// Parses `--sink` URIs (Heapster syntax, repeatable); a bad URI is an error naming the option and what is wrong.
    pub fn from_uris(uris: &[String], data_dir: Option<&Path>) -> Result<SinkSet, Error> {
        let configs = uris
            .iter()
            .map(|u| SinkConfig::from_uri(u))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_configs(&configs, data_dir)
    }

    /// Builds the sinks of a (YAML) config; spilled payloads of an earlier run are loaded from
    /// `<data_dir>/sinks/<sink name>/`.
    pub fn from_configs(configs: &[SinkConfig], data_dir: Option<&Path>) -> Result<SinkSet, Error> {
        SinksConfig {
            sinks: configs.to_vec(),
        }
        .validate()?;
        let mut sinks = Vec::new();
        for c in configs {
            let name = c.name();
            let kind = c.kind();
            let default_delivery = DeliveryConfig::default();
            let (encoder, transport, delivery, concurrency) = match c {
                SinkConfig::Log(_) => (
                    Encoder::Line(influxdb::LineProtocol {
                        with_fields: false,
                        cluster_name: String::new(),
                        disable_counter_metrics: false,
                        batch_size: 1000,
                        max_body_bytes: 1 << 20,
                        gzip: false,
                    }),
                    Transport::Log,
                    &default_delivery,
                    1,
                ),
                SinkConfig::Influxdb(ic) => (
                    Encoder::Line(influxdb::LineProtocol::new(&ic.write)),
                    Transport::V1(influxdb::V1::new(&name, ic)?),
                    &ic.write.delivery,
                    ic.write.concurrency,
                ),
                SinkConfig::Influxdb2(ic) => (
                    Encoder::Line(influxdb::LineProtocol::new(&ic.write)),
                    Transport::V2(influxdb::V2::new(&name, ic)?),
                    &ic.write.delivery,
                    ic.write.concurrency,
                ),
                // One request at a time: receivers want each series' samples in time order.
                SinkConfig::PrometheusRemoteWrite(rc) => (
                    Encoder::RemoteWrite(prometheus::RemoteWriteEncoder {
                        batch_size: rc.batch_size,
                        cluster_name: rc.cluster_name.clone(),
                    }),
                    Transport::RemoteWrite(prometheus::RemoteWrite::new(&name, rc)?),
                    &rc.delivery,
                    1,
                ),
            };
            let spill = match (&transport, data_dir) {
                (Transport::Log, _) | (_, None) => None,
                (_, Some(d)) => Some(d.join("sinks").join(&name)),
            };
            let queue = Queue::open(
                &name,
                delivery.max_memory_bytes,
                spill.as_deref(),
                delivery.max_disk_bytes,
            )
            .map_err(|source| Error::Queue {
                sink: name.clone(),
                source,
            })?;
            let (tx, rx) = mpsc::channel(delivery.max_pending_batches);
            tracing::info!(sink = %name, kind, spill_dir = ?spill, "sink configured");
            sinks.push(Arc::new(Sink {
                name,
                kind,
                encoder,
                transport,
                queue,
                concurrency,
                retry_initial: delivery.retry_initial,
                retry_max: delivery.retry_max,
                tx,
                rx: Mutex::new(Some(rx)),
                metrics: Metrics::default(),
            }));
        }
        Ok(SinkSet { sinks })
    }

    /// Number of sinks.
    pub fn len(&self) -> usize {
        self.sinks.len()
    }

    /// Whether no sink is configured.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Hands a batch to every sink without blocking (never stalls the scrape loop). A sink whose
    /// backlog of unencoded batches is full drops this batch, counted and logged.
    pub fn push(&self, batch: Arc<Batch>) {
        for s in &self.sinks {
            if let Err(e) = s.tx.try_send(batch.clone()) {
                s.metrics.batches_dropped.fetch_add(1, Ordering::Relaxed);
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "backlog of batches to encode is full",
                    mpsc::error::TrySendError::Closed(_) => "sink is not running",
                };
                tracing::warn!(sink = %s.name, reason = why, "batch dropped");
            }
        }
    }

    /// Runs the sinks' delivery loops until shutdown (true = stop); on shutdown encodes what was
    /// pushed, and spills undelivered payloads to the data dir for the next start.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        let mut senders = Vec::new();
        let mut feeders = Vec::new();
        for s in &self.sinks {
            let Some(rx) = s.rx.lock().unwrap().take() else {
                tracing::error!(sink = %s.name, "SinkSet::run called twice; this sink is already running");
                continue;
            };
            feeders.push(tokio::spawn(feed_loop(s.clone(), rx, shutdown.clone())));
            senders.push(tokio::spawn(deliver_loop(s.clone(), shutdown.clone())));
        }
        for h in senders {
            let _ = h.await;
        }
        for h in feeders {
            let _ = h.await;
        }
        for s in &self.sinks {
            if let Err(e) = s.queue.spill_memory() {
                tracing::error!(sink = %s.name, error = %e, "cannot spill the queue at shutdown");
            }
        }
    }

    /// Counters of every sink.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.sinks
            .iter()
            .map(|s| {
                let m = &s.metrics;
                SinkStats {
                    name: s.name.clone(),
                    kind: s.kind,
                    points_sent: m.points_sent.load(Ordering::Relaxed),
                    payloads_sent: m.payloads_sent.load(Ordering::Relaxed),
                    requests_failed: m.requests_failed.load(Ordering::Relaxed),
                    retries: m.retries.load(Ordering::Relaxed),
                    payloads_rejected: m.payloads_rejected.load(Ordering::Relaxed),
                    points_rejected: m.points_rejected.load(Ordering::Relaxed),
                    points_unsupported: m.points_unsupported.load(Ordering::Relaxed),
                    batches_dropped: m.batches_dropped.load(Ordering::Relaxed),
                    last_success_ms: m.last_success_ms.load(Ordering::Relaxed),
                    queue: s.queue.stats(),
                }
            })
            .collect()
    }

    /// Per-sink self-metrics (Prometheus text format) for the aggregator's /metrics.
    pub fn write_metrics(&self, out: &mut String) {
        if self.sinks.is_empty() {
            return;
        }
        let stats = self.stats();
        let counters: [Family; 8] = [
            (
                "vigil_sink_points_sent_total",
                "Points delivered to the sink.",
                &[(None, |s| s.points_sent as f64)],
            ),
            (
                "vigil_sink_payloads_sent_total",
                "Requests (payloads) the sink accepted.",
                &[(None, |s| s.payloads_sent as f64)],
            ),
            (
                "vigil_sink_requests_failed_total",
                "Requests that failed (each is retried or, when rejected, dropped).",
                &[(None, |s| s.requests_failed as f64)],
            ),
            (
                "vigil_sink_retries_total",
                "Requests sent again after a failure.",
                &[(None, |s| s.retries as f64)],
            ),
            (
                "vigil_sink_payloads_rejected_total",
                "Payloads the server rejected for good (4xx) and that were dropped.",
                &[(None, |s| s.payloads_rejected as f64)],
            ),
            (
                "vigil_sink_points_dropped_total",
                "Points dropped, by reason.",
                &[
                    (Some(("reason", "rejected")), |s| s.points_rejected as f64),
                    (Some(("reason", "queue_full")), |s| {
                        s.queue.dropped_points as f64
                    }),
                    (Some(("reason", "unsupported_value")), |s| {
                        s.points_unsupported as f64
                    }),
                ],
            ),
            (
                "vigil_sink_payloads_dropped_total",
                "Payloads dropped because the queue (memory, or disk under the data dir) was full.",
                &[(None, |s| s.queue.dropped_payloads as f64)],
            ),
            (
                "vigil_sink_batches_dropped_total",
                "Batches dropped by push because the sink's backlog of batches to encode was full.",
                &[(None, |s| s.batches_dropped as f64)],
            ),
        ];
        let gauges: [Family; 3] = [
            (
                "vigil_sink_queue_payloads",
                "Payloads waiting for delivery, by place.",
                &[
                    (Some(("place", "memory")), |s| {
                        s.queue.memory_payloads as f64
                    }),
                    (Some(("place", "disk")), |s| s.queue.disk_payloads as f64),
                ],
            ),
            (
                "vigil_sink_queue_bytes",
                "Bytes waiting for delivery, by place.",
                &[
                    (Some(("place", "memory")), |s| s.queue.memory_bytes as f64),
                    (Some(("place", "disk")), |s| s.queue.disk_bytes as f64),
                ],
            ),
            (
                "vigil_sink_last_success_timestamp_seconds",
                "When the sink last accepted a payload (0: never).",
                &[(None, |s| s.last_success_ms as f64 / 1000.0)],
            ),
        ];
        let mut w = Writer::new(out, Format::Text);
        let families = counters
            .iter()
            .map(|f| (Kind::Counter, f))
            .chain(gauges.iter().map(|f| (Kind::Gauge, f)));
        for (kind, (name, help, series)) in families {
            w.header(name, kind, help);
            for s in &stats {
                for (extra, get) in series.iter() {
                    let mut labels = vec![("sink", s.name.as_str()), ("kind", s.kind)];
                    labels.extend(*extra);
                    w.sample(name, &labels, get(s));
                }
            }
        }
    }
}

impl Sink {
    fn encode(&self, batch: &Batch) -> Vec<Payload> {
        match &self.encoder {
            Encoder::Line(lp) => {
                let e = lp.encode(batch);
                if e.skipped > 0 {
                    self.metrics
                        .points_unsupported
                        .fetch_add(e.skipped, Ordering::Relaxed);
                    tracing::warn!(sink = %self.name, points = e.skipped, "points with NaN or infinite values left out (InfluxDB cannot store them)");
                }
                e.payloads
            }
            Encoder::RemoteWrite(rw) => rw.encode(batch),
        }
    }

    async fn send(&self, body: bytes::Bytes) -> Result<(), SendError> {
        match &self.transport {
            Transport::V1(t) => t.send(body).await,
            Transport::V2(t) => t.send(body).await,
            Transport::RemoteWrite(t) => t.send(body).await,
            Transport::Log => {
                for line in String::from_utf8_lossy(&body).lines() {
                    tracing::info!(target: "vigil::sinks::log", sink = %self.name, "{line}");
                }
                Ok(())
            }
        }
    }

    /// Delivers one payload, retrying until it is accepted or rejected (true), or shutdown (false).
    async fn deliver(&self, e: &Entry, mut shutdown: watch::Receiver<bool>) -> bool {
        let mut backoff = retry::Backoff::new(self.retry_initial, self.retry_max);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let send = self.send(e.payload.body.clone());
            tokio::pin!(send);
            let result = tokio::select! {
                r = &mut send => r,
                _ = stopped(&mut shutdown) => {
                    // Shutting down: give the request in flight a moment to finish.
                    match tokio::time::timeout(Duration::from_secs(2), &mut send).await {
                        Ok(r) => r,
                        Err(_) => return false,
                    }
                }
            };
            match result {
                Ok(()) => {
                    let m = &self.metrics;
                    m.points_sent
                        .fetch_add(e.payload.points as u64, Ordering::Relaxed);
                    m.payloads_sent.fetch_add(1, Ordering::Relaxed);
                    m.last_success_ms
                        .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
                    if attempt > 1 {
                        tracing::info!(sink = %self.name, attempts = attempt, points = e.payload.points, "delivered after retrying");
                    }
                    return true;
                }
                Err(SendError::Permanent(reason)) => {
                    let m = &self.metrics;
                    m.requests_failed.fetch_add(1, Ordering::Relaxed);
                    m.payloads_rejected.fetch_add(1, Ordering::Relaxed);
                    m.points_rejected
                        .fetch_add(e.payload.points as u64, Ordering::Relaxed);
                    tracing::error!(sink = %self.name, points = e.payload.points, %reason, "payload rejected by the server; dropped");
                    return true;
                }
                Err(SendError::Retry(reason)) => {
                    self.metrics.requests_failed.fetch_add(1, Ordering::Relaxed);
                    if *shutdown.borrow() {
                        return false;
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(sink = %self.name, attempt, points = e.payload.points, %reason,
                        retry_in_ms = delay.as_millis() as u64, "delivery failed; will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stopped(&mut shutdown) => return false,
                    }
                    self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

async fn feed_loop(
    sink: Arc<Sink>,
    mut rx: mpsc::Receiver<Arc<Batch>>,
    mut shutdown: watch::Receiver<bool>,
) {
    async fn enqueue(sink: &Arc<Sink>, batch: Arc<Batch>) {
        let s = sink.clone();
        match tokio::task::spawn_blocking(move || s.encode(&batch)).await {
            Ok(payloads) => {
                for p in payloads {
                    sink.queue.push(p);
                }
            }
            Err(e) => tracing::error!(sink = %sink.name, error = %e, "encoding a batch failed"),
        }
    }
    loop {
        tokio::select! {
            b = rx.recv() => match b {
                Some(b) => enqueue(&sink, b).await,
                None => break,
            },
            _ = stopped(&mut shutdown) => break,
        }
    }
    rx.close();
    while let Ok(b) = rx.try_recv() {
        enqueue(&sink, b).await;
    }
}

async fn deliver_loop(sink: Arc<Sink>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let entries = sink.queue.peek(sink.concurrency);
        if entries.is_empty() {
            tokio::select! {
                _ = sink.queue.wait() => {}
                _ = stopped(&mut shutdown) => return,
            }
            continue;
        }
        let results = futures_util::future::join_all(
            entries.iter().map(|e| sink.deliver(e, shutdown.clone())),
        )
        .await;
        let done = results.iter().take_while(|r| **r).count();
        sink.queue.ack(&entries[..done]);
        if done < entries.len() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_have_help_and_type_once_per_family() {
        let set = SinkSet::from_uris(
            &[
                "log".to_string(),
                "influxdb:http://127.0.0.1:1?db=x".to_string(),
            ],
            None,
        )
        .unwrap();
        let mut out = String::new();
        set.write_metrics(&mut out);
        assert_eq!(
            out.matches("# TYPE vigil_sink_points_dropped_total counter")
                .count(),
            1
        );
        assert!(
            out.contains(
                "vigil_sink_points_sent_total{sink=\"influxdb-127.0.0.1-1-x\",kind=\"influxdb\"} 0"
            ),
            "{out}"
        );
        assert!(
            out.contains("vigil_sink_queue_bytes{sink=\"log\",kind=\"log\",place=\"disk\"} 0"),
            "{out}"
        );
    }

    #[test]
    fn bad_uri_stops_with_the_option_named() {
        let e = SinkSet::from_uris(&["influxdb:http://h:8086?wtf=1".to_string()], None)
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .starts_with("--sink=influxdb:http://h:8086?wtf=1: unknown option `wtf`"),
            "{e}"
        );
    }

    #[test]
    fn push_without_run_never_blocks_and_counts_drops() {
        let set = SinkSet::from_uris(
            &["influxdb:http://127.0.0.1:1?max_pending_batches=2".to_string()],
            None,
        )
        .unwrap();
        let b = Arc::new(Batch::default());
        for _ in 0..5 {
            set.push(b.clone());
        }
        assert_eq!(set.stats()[0].batches_dropped, 3);
    }
}
