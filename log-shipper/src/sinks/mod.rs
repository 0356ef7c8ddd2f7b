//! Sinks: where batches of encoded records go (Elasticsearch, a file, stdout); each acknowledges a batch once it is safe.

pub mod elasticsearch;
pub mod file;

use crate::enrich::Item;
use crate::metrics::Metrics;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Encoded records read together, plus the file positions they complete.
#[derive(Debug, Default)]
pub struct Batch {
    /// Sequence number; batches are acknowledged to the checkpointer in this order.
    pub seq: u64,
    /// Action and document lines, back to back.
    pub buf: Vec<u8>,
    pub items: Vec<Item>,
    /// (file slot, offset): once this batch and all before it are acknowledged, the file is safe up to offset.
    pub positions: Vec<(u64, u64)>,
}

/// Batch buffers handed back by the sinks once a batch is done, for the reader's next batches: a 5 MB buffer that is
/// reused costs no page faults or zeroing, a fresh one does (that was ~10 % of the reader's time).
#[derive(Debug, Clone, Default)]
pub struct BufferPool {
    spare: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

/// Buffers kept at most (the others are freed). While busy the reader takes one back per batch sent, so two keep most
/// batches on recycled memory; when idle they are what stays resident (2 × `batch_bytes`).
const POOL_MAX: usize = 2;

impl BufferPool {
    /// An empty buffer with at least `capacity` bytes of room (a recycled one when there is one).
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let mut buf = self
            .spare
            .lock()
            .expect("pool lock")
            .pop()
            .unwrap_or_default();
        buf.clear();
        buf.reserve(capacity);
        buf
    }

    /// Hands a buffer back.
    pub fn give(&self, buf: Vec<u8>) {
        let mut spare = self.spare.lock().expect("pool lock");
        if spare.len() < POOL_MAX && buf.capacity() > 0 {
            spare.push(buf);
        }
    }

    /// Hands back the buffer of a sent batch if nothing else holds it any more.
    pub fn give_bytes(&self, buf: bytes::Bytes) {
        if let Ok(m) = buf.try_into_mut() {
            self.give(m.into());
        }
    }
}

/// What is wrong with the sinks right now, for `/healthz`: a sink that cannot write says so until it writes again.
#[derive(Debug, Clone, Default)]
pub struct Health {
    problems: Arc<std::sync::Mutex<std::collections::BTreeMap<&'static str, Problem>>>,
}

#[derive(Debug)]
struct Problem {
    error: String,
    since: std::time::Instant,
    attempts: u64,
}

impl Health {
    /// Records a failed attempt of `sink` (the error replaces the previous one; the first failure's time is kept).
    pub fn failing(&self, sink: &'static str, error: String) {
        let mut p = self.problems.lock().expect("health lock");
        let e = p.entry(sink).or_insert_with(|| Problem {
            error: String::new(),
            since: std::time::Instant::now(),
            attempts: 0,
        });
        e.error = error;
        e.attempts += 1;
    }

    /// `sink` wrote again.
    pub fn recovered(&self, sink: &'static str) {
        self.problems.lock().expect("health lock").remove(sink);
    }

    /// One line per failing sink (`None` when all are healthy).
    pub fn report(&self) -> Option<String> {
        let p = self.problems.lock().expect("health lock");
        if p.is_empty() {
            return None;
        }
        let mut out = String::new();
        for (sink, pr) in p.iter() {
            out.push_str(&format!(
                "{sink} sink failing for {}s ({} attempts, retrying with backoff; reading is paused): {}\n",
                pr.since.elapsed().as_secs(),
                pr.attempts,
                pr.error
            ));
        }
        Some(out)
    }
}

/// First and longest retry delay of the file sink when it cannot write (with jitter, see
/// [`vigil_common::Backoff`]).
const FILE_RETRY: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_millis(200),
    std::time::Duration::from_secs(10),
);

/// A configured sink.
pub enum Sink {
    Elasticsearch(Arc<elasticsearch::ElasticsearchSink>),
    File(file::FileSink),
    Stdout,
}

/// Receives batches until the reader closes the channel or shutdown fires; acknowledges each on `acks`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    sink: Sink,
    mut rx: mpsc::Receiver<Batch>,
    acks: std::sync::mpsc::Sender<u64>,
    mut shutdown: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    concurrency: usize,
    buffers: BufferPool,
    health: Health,
) {
    match sink {
        Sink::Elasticsearch(es) => {
            let sem = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let batch = tokio::select! {
                    b = rx.recv() => match b { Some(b) => b, None => break },
                    _ = shutdown.wait_for(|s| *s) => break,
                };
                let permit = tokio::select! {
                    p = sem.clone().acquire_owned() => p.expect("semaphore open"),
                    _ = shutdown.wait_for(|s| *s) => break,
                };
                let es = es.clone();
                let acks = acks.clone();
                let sd = shutdown.clone();
                let buffers = buffers.clone();
                let health = health.clone();
                tasks.spawn(async move {
                    let mut batch = batch;
                    let buf = bytes::Bytes::from(std::mem::take(&mut batch.buf));
                    if es.send_batch(&batch, &buf, sd, &health).await {
                        let _ = acks.send(batch.seq);
                    }
                    buffers.give_bytes(buf);
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
            // Close the channel first so a reader blocked on a full channel wakes up.
            rx.close();
            while tasks.join_next().await.is_some() {}
        }
        Sink::File(mut f) => loop {
            let batch = tokio::select! {
                b = rx.recv() => match b { Some(b) => b, None => break },
                _ = shutdown.wait_for(|s| *s) => break,
            };
            // Retried until it is written: unacknowledged, the batch holds the reader back (the log files are the
            // buffer), and a failed attempt leaves the output as it was, so nothing is lost or written twice.
            let mut attempt = 0u32;
            let mut backoff = vigil_common::Backoff::new(FILE_RETRY.0, FILE_RETRY.1);
            loop {
                match f.write_batch(&batch) {
                    Ok(w) => {
                        if attempt > 0 {
                            tracing::info!(attempts = attempt, "file sink writes again");
                            health.recovered("file");
                        }
                        metrics.records_shipped.inc_by(w.written + w.duplicates);
                        metrics.records_duplicate.inc_by(w.duplicates);
                        let _ = acks.send(batch.seq);
                        buffers.give(batch.buf);
                        break;
                    }
                    Err(e) => {
                        let error = e.to_string();
                        if attempt == 0 {
                            tracing::error!(error = %error, records = batch.items.len(), "file sink write failed; retrying with backoff, reading is paused meanwhile");
                        }
                        metrics.records_retried.inc_by(batch.items.len() as u64);
                        health.failing("file", error);
                        let d = backoff.next_delay();
                        attempt = attempt.saturating_add(1);
                        tokio::select! {
                            _ = tokio::time::sleep(d) => {},
                            // Not acknowledged: the checkpoint stays before these records, so a restart re-reads them.
                            _ = shutdown.wait_for(|s| *s) => return,
                        }
                    }
                }
            }
        },
        Sink::Stdout => {
            use std::io::Write;
            while let Some(batch) = rx.recv().await {
                let mut out = std::io::stdout().lock();
                let mut ok = true;
                for it in &batch.items {
                    ok &= out.write_all(&batch.buf[it.doc..it.end]).is_ok();
                }
                ok &= out.flush().is_ok();
                drop(out);
                if ok {
                    metrics.records_shipped.inc_by(batch.items.len() as u64);
                    let _ = acks.send(batch.seq);
                }
            }
        }
    }
}
