//! Pulls each node's problem detector (`/conditions`, `/problems/events`) every round and keeps node-problem-detector's `problem_gauge` / `problem_counter` as series in the store.
//!
//! Why these two endpoints and not the collector's `/metrics` (where the same two families are
//! exported): `/metrics` carries every container's cAdvisor families first (a 1,000-container
//! node writes ~18 MB), so pulling it each round for two small families would cost more than the
//! Summary itself. `/conditions` is a few hundred bytes and `/problems/events?since=<seq>` sends
//! only what is new, so a quiet node costs two small requests a round.
//!
//! The series, per node (the `nodename` label is the Summary's node name, as on every other
//! node series, so the UI and rules join them):
//! - `problem_gauge{type,reason,nodename}`: 1 while the condition `type` is True with `reason`,
//!   else 0. As in node-problem-detector a type has one reason at a time: when the reason
//!   changes, the old reason's series drops to 0 and stays. Unlike it, the condition's default
//!   ("no problem") reason has a 0 series too, since `/conditions` names only the current
//!   reason; the reasons of rules that never fired have none.
//! - `problem_counter{reason,nodename}`: counted from the events as node-problem-detector counts
//!   them: each temporary problem (`warn` event) and each condition change to True (the
//!   `info` event "Node condition X is now: True, ..."). A reason first seen after the node's
//!   previous successful pull also gets a 0 at that pull's time, so `increase()` sees its first
//!   occurrence (node-problem-detector creates these series at 0; `/events` cannot say which
//!   reasons exist before they happen). The count starts from the events still in the
//!   collector's bounded log when the aggregator first reaches it; events the log dropped
//!   between two pulls are counted in `vigil_aggregator_problem_events_lost_total`. A collector
//!   restart (its sequence numbers fall below ours) is seen and the counter keeps rising.
//!
//! Bounds are the Summary pull's: the round's deadline (a pull not done by then is `late` and
//! tried again next round), the scraper's concurrency, a cap on each answer
//! ([`MAX_ANSWER_BYTES`]) and at most [`MAX_PAGES`] pages of [`EVENTS_PER_PAGE`] events a round
//! (the rest comes next round). A node answering 404 has no problem detector (a plain kubelet,
//! the simulator): that is counted as `no_detector`, not as a failure. A failed pull writes
//! nothing: the node's series age out of the query lookback as the Summary's do. A node that
//! leaves the target list or loses its detector gets staleness markers, as Prometheus writes
//! for a target that goes away.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use vigil_summary::problems::{Condition, Event, EventPage, Severity, Status};

use super::{Fetch, Scraper, Target};
use crate::store::Store;

/// The largest answer accepted from `/conditions` or one page of `/problems/events`.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;
/// Events asked for per `/problems/events` request.
pub const EVENTS_PER_PAGE: usize = 100;
/// Pages of events pulled from one node in one round.
pub const MAX_PAGES: usize = 10;

/// Why one node's problem pull failed; each names the node and the URL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("node {node}: {url}: request failed: {message}")]
    Transport {
        node: String,
        url: String,
        message: String,
    },
    #[error("node {node}: {url}: timed out after {timeout:?}")]
    Timeout {
        node: String,
        url: String,
        timeout: Duration,
    },
    #[error("node {node}: {url}: HTTP {status}")]
    Status {
        node: String,
        url: String,
        status: u16,
    },
    #[error("node {node}: {url}: malformed answer: {message}")]
    Malformed {
        node: String,
        url: String,
        message: String,
    },
    #[error("node {node}: {url}: answer larger than {limit} bytes")]
    TooLarge {
        node: String,
        url: String,
        limit: usize,
    },
    #[error("node {node}: problem pull not done by the round's deadline ({deadline:?} after the round began); tried again next round")]
    Late { node: String, deadline: Duration },
}

impl Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Transport { .. } => "transport",
            Error::Timeout { .. } => "timeout",
            Error::Status { .. } => "status",
            Error::Malformed { .. } => "malformed",
            Error::TooLarge { .. } => "too_large",
            Error::Late { .. } => "late",
        }
    }
}

/// What one node's detector answered this round.
#[derive(Debug, Default)]
pub struct Answer {
    pub conditions: Vec<Condition>,
    /// New events, oldest first.
    pub events: Vec<Event>,
    /// The sequence number to ask from next round.
    pub last: u64,
    /// The collector's sequence numbers fell below ours: it restarted.
    pub restarted: bool,
    /// Events dropped from the collector's bounded log before we pulled them.
    pub lost: u64,
}

/// One target's pull: an answer, `None` when the node has no problem detector (404), or why it
/// failed.
pub type Pulled = (String, Result<Option<Answer>, Error>);

/// What is kept of one node between rounds.
#[derive(Debug, Default)]
struct NodeProblems {
    /// The `nodename` its series were last written with.
    nodename: String,
    since: u64,
    gauges: BTreeMap<(String, String), f64>,
    counters: BTreeMap<String, u64>,
    /// Time of the previous successful pull (ms).
    prev_ok_ms: Option<i64>,
    /// Its series have samples that are not staleness markers.
    live: bool,
    last_reason: Option<&'static str>,
}

#[derive(Debug, Default)]
struct Stats {
    pulls: BTreeMap<&'static str, u64>,
    events: u64,
    events_lost: u64,
    store_errors: u64,
    series: u64,
}

/// The problem half of a round: pulls every target's detector, writes the series.
#[derive(Default)]
pub struct ProblemPuller {
    nodes: Mutex<HashMap<String, NodeProblems>>,
    stats: Mutex<Stats>,
}

/// `http://host:port/stats/summary` → `http://host:port` (also `/node/x/stats/summary` →
/// `/node/x`); `None` for a target whose URL is not a Summary path.
fn base_url(summary_url: &str) -> Option<&str> {
    summary_url.strip_suffix("/stats/summary")
}

/// Whether an `info` event is node-problem-detector's change of a condition to True.
fn is_true_transition(message: &str) -> bool {
    message.starts_with("Node condition ")
        && message
            .split_once(" is now: ")
            .is_some_and(|(_, rest)| rest.starts_with("True,"))
}

impl ProblemPuller {
    pub fn new() -> ProblemPuller {
        ProblemPuller::default()
    }

    /// GETs `url` with the Summary pull's bounded read ([`Scraper::get_bounded`]), reading at
    /// most [`MAX_ANSWER_BYTES`]. `Ok(None)` on 404.
    async fn get(scraper: &Scraper, target: &Target, url: &str) -> Result<Option<Vec<u8>>, Error> {
        let (node, url_) = (target.name.clone(), url.to_string());
        match scraper.get_bounded(target, url, MAX_ANSWER_BYTES).await {
            Ok(body) => Ok(Some(body)),
            Err(Fetch::Status(404)) => Ok(None),
            Err(Fetch::Status(status)) => Err(Error::Status {
                node,
                url: url_,
                status,
            }),
            Err(Fetch::Timeout) => Err(Error::Timeout {
                node,
                url: url_,
                timeout: scraper.timeout,
            }),
            Err(Fetch::Transport(message)) => Err(Error::Transport {
                node,
                url: url_,
                message,
            }),
            Err(Fetch::TooLarge) => Err(Error::TooLarge {
                node,
                url: url_,
                limit: MAX_ANSWER_BYTES,
            }),
        }
    }

    /// Pulls one node's conditions and the events after `since`.
    async fn pull_one(scraper: &Scraper, t: &Target, since: u64) -> Result<Option<Answer>, Error> {
        let Some(base) = base_url(&t.url) else {
            return Ok(None);
        };
        let malformed = |url: &str, e: serde_json::Error| Error::Malformed {
            node: t.name.clone(),
            url: url.to_string(),
            message: e.to_string(),
        };
        let url = format!("{base}/conditions");
        let Some(body) = Self::get(scraper, t, &url).await? else {
            return Ok(None);
        };
        let conditions: Vec<Condition> =
            serde_json::from_slice(&body).map_err(|e| malformed(&url, e))?;
        let mut answer = Answer {
            conditions,
            last: since,
            ..Answer::default()
        };
        for _ in 0..MAX_PAGES {
            let url = format!(
                "{base}/problems/events?since={}&limit={EVENTS_PER_PAGE}",
                answer.last
            );
            let Some(body) = Self::get(scraper, t, &url).await? else {
                return Err(Error::Status {
                    node: t.name.clone(),
                    url,
                    status: 404,
                });
            };
            let page: EventPage = serde_json::from_slice(&body).map_err(|e| malformed(&url, e))?;
            if page.last < answer.last && !answer.restarted {
                // The collector counts from 1 again: it restarted. Start over from its first.
                answer.restarted = true;
                answer.last = 0;
                continue;
            }
            if let Some(first) = page.events.first() {
                answer.lost += first.seq.saturating_sub(answer.last + 1);
            }
            let n = page.events.len();
            answer.events.extend(page.events);
            answer.last = page.last.max(answer.last);
            if n < EVENTS_PER_PAGE {
                break;
            }
        }
        Ok(Some(answer))
    }

    /// Pulls every target's detector (at most the scraper's concurrency at once, ended at its
    /// round deadline), concurrently with the Summary round.
    pub async fn pull(&self, scraper: &Scraper, targets: &[Target]) -> Vec<Pulled> {
        let began = tokio::time::Instant::now();
        let since: HashMap<String, u64> = {
            let nodes = self.nodes.lock().unwrap();
            targets
                .iter()
                .map(|t| (t.url.clone(), nodes.get(&t.url).map_or(0, |n| n.since)))
                .collect()
        };
        let slots = tokio::sync::Semaphore::new(scraper.concurrency.max(1));
        targets
            .iter()
            .map(|t| {
                let (slots, since) = (&slots, since[&t.url]);
                async move {
                    let pull = async {
                        let _slot = slots.acquire().await.expect("never closed");
                        Self::pull_one(scraper, t, since).await
                    };
                    let r = match scraper.round_deadline {
                        None => pull.await,
                        Some(deadline) => tokio::time::timeout_at(began + deadline, pull)
                            .await
                            .unwrap_or_else(|_| {
                                Err(Error::Late {
                                    node: t.name.clone(),
                                    deadline,
                                })
                            }),
                    };
                    (t.url.clone(), r)
                }
            })
            .collect::<futures_util::stream::FuturesUnordered<_>>()
            .collect()
            .await
    }

    /// Applies a round's pulls at `t_ms`: updates each node's gauges and counters and writes
    /// them to `store` under `nodename` (from `names`, URL → node name; the target's URL when
    /// missing). Targets not in `pulled` are forgotten (their series marked stale). Returns the
    /// number of samples written.
    pub fn apply(
        &self,
        pulled: Vec<Pulled>,
        names: &HashMap<String, String>,
        t_ms: i64,
        store: &Store,
    ) -> usize {
        let mut nodes = self.nodes.lock().unwrap();
        let mut stats = self.stats.lock().unwrap();
        let mut writer = Writer {
            store,
            written: 0,
            errors: 0,
        };
        let live: HashSet<&str> = pulled.iter().map(|(u, _)| u.as_str()).collect();
        // Node names written this round: a series that goes on under another URL (a node
        // re-addressed) is not ended.
        let fresh: HashSet<String> = pulled
            .iter()
            .filter(|(_, r)| matches!(r, Ok(Some(_))))
            .map(|(u, _)| names.get(u).cloned().unwrap_or_else(|| u.clone()))
            .collect();
        nodes.retain(|url, n| {
            let keep = live.contains(url.as_str());
            if !keep && n.live && !fresh.contains(&n.nodename) {
                writer.mark_stale(n, t_ms);
            }
            keep
        });
        for (url, r) in pulled {
            let n = nodes.entry(url.clone()).or_default();
            let nodename = names.get(&url).cloned().unwrap_or_else(|| url.clone());
            match r {
                Ok(Some(a)) => {
                    *stats.pulls.entry("ok").or_default() += 1;
                    stats.events += a.events.len() as u64;
                    stats.events_lost += a.lost;
                    if n.last_reason.take().is_some() {
                        tracing::info!(node = %nodename, %url, "problem detector answers again");
                    }
                    if a.restarted {
                        tracing::info!(node = %nodename, %url, "problem detector restarted (its event numbers start again); counters keep rising");
                    }
                    if n.live && n.nodename != nodename && !fresh.contains(&n.nodename) {
                        writer.mark_stale(n, t_ms);
                    }
                    n.nodename = nodename;
                    n.since = a.last;
                    update(n, &a, &mut writer);
                    for ((kind, reason), v) in &n.gauges {
                        writer.write(gauge_labels(&n.nodename, kind, reason), t_ms, *v);
                    }
                    for (reason, v) in &n.counters {
                        writer.write(counter_labels(&n.nodename, reason), t_ms, *v as f64);
                    }
                    n.prev_ok_ms = Some(t_ms);
                    n.live = true;
                }
                Ok(None) => {
                    *stats.pulls.entry("no_detector").or_default() += 1;
                    if n.live && !fresh.contains(&n.nodename) {
                        tracing::info!(node = %nodename, %url, "problem detector gone (404); its series end");
                        writer.mark_stale(n, t_ms);
                    }
                    *n = NodeProblems::default();
                }
                Err(e) => {
                    let reason = e.reason();
                    *stats.pulls.entry(reason).or_default() += 1;
                    if n.last_reason.replace(reason) == Some(reason) {
                        tracing::debug!(node = %nodename, %url, error = %e, "problem pull failed again");
                    } else {
                        tracing::warn!(node = %nodename, %url, error = %e, "problem pull failed (logged again when it answers or fails differently)");
                    }
                }
            }
        }
        stats.store_errors += writer.errors;
        stats.series = nodes
            .values()
            .filter(|n| n.live)
            .map(|n| (n.gauges.len() + n.counters.len()) as u64)
            .sum();
        writer.written
    }

    /// [`ProblemPuller::apply`] with the node names the scraper learnt from the Summaries
    /// (called after the Summary round, so a node's first document already names it).
    pub fn apply_round(
        &self,
        pulled: Vec<Pulled>,
        scraper: &Scraper,
        t_ms: i64,
        store: &Store,
    ) -> usize {
        let names: HashMap<String, String> = scraper
            .nodes
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, st)| !st.name.is_empty())
            .map(|(url, st)| (url.clone(), st.name.clone()))
            .collect();
        self.apply(pulled, &names, t_ms, store)
    }

    /// Appends the problem pull's own metrics to a Prometheus exposition.
    pub fn write_metrics(&self, out: &mut String) {
        use vigil_common::exposition::{Format, Kind, Writer as Exposition};
        let s = self.stats.lock().unwrap();
        let mut w = Exposition::new(out, Format::Text);
        let pulls = "vigil_aggregator_problem_pulls_total";
        w.header(
            pulls,
            Kind::Counter,
            "Pulls of the nodes' problem detectors (/conditions, /problems/events) by outcome: ok, no_detector (404), or why they failed.",
        );
        for (outcome, n) in &s.pulls {
            w.sample(pulls, &[("outcome", outcome)], *n);
        }
        w.counter(
            "vigil_aggregator_problem_events_total",
            "Problem events received from the nodes' detectors.",
            s.events,
        );
        w.counter(
            "vigil_aggregator_problem_events_lost_total",
            "Problem events a collector's bounded log dropped before the aggregator pulled them.",
            s.events_lost,
        );
        w.counter(
            "vigil_aggregator_problem_store_errors_total",
            "problem_gauge / problem_counter samples the store refused.",
            s.store_errors,
        );
        w.gauge(
            "vigil_aggregator_problem_series",
            "problem_gauge and problem_counter series written in the last round.",
            s.series,
        );
    }
}

/// Folds a node's answer into its gauges and counters; writes the 0 a new counter reason gets at
/// the previous pull's time.
fn update(n: &mut NodeProblems, a: &Answer, w: &mut Writer<'_>) {
    for c in &a.conditions {
        for ((kind, _), v) in n.gauges.iter_mut() {
            if *kind == c.kind {
                *v = 0.0;
            }
        }
        let v = if c.status == Status::True { 1.0 } else { 0.0 };
        n.gauges.insert((c.kind.clone(), c.reason.clone()), v);
    }
    for e in &a.events {
        let counts = match e.severity {
            Severity::Warn => true,
            Severity::Info => is_true_transition(&e.message),
        };
        if !counts {
            continue;
        }
        if !n.counters.contains_key(&e.reason) {
            if let Some(prev) = n.prev_ok_ms {
                w.write(counter_labels(&n.nodename, &e.reason), prev, 0.0);
            }
        }
        *n.counters.entry(e.reason.clone()).or_default() += 1;
    }
}

fn gauge_labels(nodename: &str, kind: &str, reason: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("__name__".to_string(), "problem_gauge".to_string()),
        ("nodename".to_string(), nodename.to_string()),
        ("reason".to_string(), reason.to_string()),
        ("type".to_string(), kind.to_string()),
    ])
}

fn counter_labels(nodename: &str, reason: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("__name__".to_string(), "problem_counter".to_string()),
        ("nodename".to_string(), nodename.to_string()),
        ("reason".to_string(), reason.to_string()),
    ])
}

/// Writes samples to the store, counting what it refuses (logged once per round).
struct Writer<'a> {
    store: &'a Store,
    written: usize,
    errors: u64,
}

impl Writer<'_> {
    fn write(&mut self, labels: BTreeMap<String, String>, t_ms: i64, v: f64) {
        match self.store.append(&labels, t_ms, v) {
            Ok(()) => self.written += 1,
            Err(e) => {
                if self.errors == 0 {
                    tracing::error!(error = %e, "store refused a node problem sample");
                }
                self.errors += 1;
            }
        }
    }

    /// Ends every series of `n` with a staleness marker.
    fn mark_stale(&mut self, n: &mut NodeProblems, t_ms: i64) {
        let stale = f64::from_bits(vigil_promql::STALE_NAN_BITS);
        for (kind, reason) in n.gauges.keys() {
            self.write(gauge_labels(&n.nodename, kind, reason), t_ms, stale);
        }
        for reason in n.counters.keys() {
            self.write(counter_labels(&n.nodename, reason), t_ms, stale);
        }
        n.live = false;
    }
}

#[cfg(test)]
#[path = "problems_tests.rs"]
mod tests;
