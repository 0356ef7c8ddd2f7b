//! The bounded in-memory window of every series: sharded entities, interned names and label
//! sets, compressed series, a series limit, and snapshots to `--data-dir`.

mod append;
mod entity;
pub mod index;
pub mod names;
mod select;
pub mod series;
mod shard;
pub mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;

use crate::batch::{Batch, MetricValue};
use entity::{entity_pairs, set_label_pairs, slot_pairs, SlotKey, Slots};
pub use entity::Entity;
pub use series::{Kind, Series};
use shard::Shard;

const SHARDS: usize = 64;

/// Labels of a metric set or of a labeled metric, shared between series.
pub type Labels = Arc<BTreeMap<String, String>>;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("series limit {limit} reached: {rejected} new series refused in this batch (raise --max-series)")]
    SeriesLimit { limit: usize, rejected: u64 },
    #[error("series {labels}: {message}")]
    InvalidSeries { labels: String, message: String },
    #[error("series {labels}: sample at {t_ms} ms is not newer than the last one")]
    OutOfOrder { labels: String, t_ms: i64 },
    #[error("snapshot {path}: {source}")]
    SnapshotIo {
        path: String,
        source: std::io::Error,
    },
    #[error("snapshot {path} line {line}: {message}")]
    SnapshotFormat {
        path: String,
        line: usize,
        message: String,
    },
}

/// Interned strings with stable ids; copied on write so readers never wait for the writer.
#[derive(Debug, Default, Clone)]
struct Interner<T: Eq + Hash + Clone> {
    items: Vec<T>,
    ids: HashMap<T, u32>,
}

impl<T: Eq + Hash + Clone> Interner<T> {
    fn get(&self, item: &T) -> Option<u32> {
        self.ids.get(item).copied()
    }
    fn intern(&mut self, item: T) -> u32 {
        if let Some(id) = self.ids.get(&item) {
            return *id;
        }
        let id = self.items.len() as u32;
        self.items.push(item.clone());
        self.ids.insert(item, id);
        id
    }
}


/// Counters the store exposes on /metrics.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub series: AtomicUsize,
    pub entities: AtomicUsize,
    pub points_appended: AtomicU64,
    pub series_rejected: AtomicU64,
    pub points_out_of_order: AtomicU64,
    pub heap_bytes: AtomicUsize,
}

/// The store.
pub struct Store {
    shards: Vec<RwLock<Shard>>,
    names: RwLock<Arc<Interner<Arc<str>>>>,
    label_sets: RwLock<Arc<Interner<BTreeMap<String, String>>>>,
    /// Label name → value → entities (see `index`). Lock order: a shard, then the index.
    index: RwLock<index::Index>,
    /// Per shard, bumped after each index change for its entities (under the shard's write
    /// lock): a selection whose shard's count is unchanged since it asked the index knows the
    /// index still describes that shard's entities.
    generations: Vec<AtomicU64>,
    retention_ms: i64,
    max_series: usize,
    pub stats: StoreStats,
}

/// A query's answer: points oldest first, and whether they are floats.
#[derive(Debug, Clone, PartialEq)]
pub struct Points {
    pub kind: Kind,
    pub points: Vec<(i64, MetricValue)>,
}

fn shard_of(key: &str) -> usize {
    // The high bits: FxHash's low bits are weak for strings that differ only at the end.
    (rustc_hash::FxBuildHasher.hash_one(key) >> 40) as usize % SHARDS
}

fn ms(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

impl Store {
    /// A store keeping `retention_ms` of every series and at most `max_series` series.
    pub fn new(retention_ms: i64, max_series: usize) -> Store {
        Store {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            generations: (0..SHARDS).map(|_| AtomicU64::new(0)).collect(),
            names: RwLock::new(Arc::new(Interner::default())),
            label_sets: RwLock::new(Arc::new(Interner::default())),
            index: RwLock::new(index::Index::default()),
            retention_ms,
            max_series,
            stats: StoreStats::default(),
        }
    }

    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// Adds every value of `batch` at the batch time, then drops what fell out of the window.
    /// New series beyond the limit are refused; the error says how many (the rest is kept).
    pub fn ingest(&self, batch: &Batch) -> Result<(), Error> {
        let ts = ms(batch.timestamp);
        self.ingest_at(batch, ts, ts)
    }

    fn ingest_at(&self, batch: &Batch, ts: i64, now: i64) -> Result<(), Error> {
        // Pass 1: intern names and label sets (copy on write), group sets by shard. Names are
        // `&'static str` and labeled-metric labels shared `Arc`s, so each distinct pointer is
        // looked up by content once per batch, then by address.
        let names_now = self.names.read().unwrap().clone();
        let label_sets_now = self.label_sets.read().unwrap().clone();
        let mut names_new: Option<Interner<Arc<str>>> = None;
        let mut label_sets_new: Option<Interner<BTreeMap<String, String>>> = None;
        let mut name_ids: FxHashMap<(usize, usize), u32> = FxHashMap::default();
        let mut label_ids: FxHashMap<usize, u32> = FxHashMap::default();
        let mut name_id = |name: &'static str| -> u32 {
            *name_ids
                .entry((name.as_ptr() as usize, name.len()))
                .or_insert_with(|| {
                    let interner = names_new.as_ref().unwrap_or(&names_now);
                    match interner.ids.get(name) {
                        Some(id) => *id,
                        None => names_new
                            .get_or_insert_with(|| (*names_now).clone())
                            .intern(Arc::from(name)),
                    }
                })
        };
        // Every set's `(name, labels, value)` triples in one vector; each shard's entries hold
        // their set's range of it (no allocation per set).
        let mut vals: Vec<(u32, u32, MetricValue)> = Vec::with_capacity(
            batch
                .sets
                .values()
                .map(|s| s.values.len() + s.labeled.len())
                .sum(),
        );
        let mut per_shard: Vec<Vec<(&str, &crate::batch::MetricSet, std::ops::Range<usize>)>> =
            (0..SHARDS).map(|_| Vec::new()).collect();
        for (key, set) in &batch.sets {
            let start = vals.len();
            for (name, v) in &set.values {
                vals.push((name_id(name), 0, *v));
            }
            for lm in &set.labeled {
                let lid = *label_ids
                    .entry(Arc::as_ptr(&lm.labels) as usize)
                    .or_insert_with(|| {
                        let interner = label_sets_new.as_ref().unwrap_or(&label_sets_now);
                        match interner.get(&lm.labels) {
                            Some(l) => l,
                            None => label_sets_new
                                .get_or_insert_with(|| (*label_sets_now).clone())
                                .intern((*lm.labels).clone()),
                        }
                    });
                vals.push((name_id(lm.name), lid + 1, lm.value));
            }
            per_shard[shard_of(key)].push((key.as_str(), set, start..vals.len()));
        }
        if let Some(names) = names_new {
            *self.names.write().unwrap() = Arc::new(names);
        }
        if let Some(label_sets) = label_sets_new {
            *self.label_sets.write().unwrap() = Arc::new(label_sets);
        }
        // Pass 2: one shard at a time, so readers wait for one shard's share at most.
        let cutoff = now - self.retention_ms;
        let trim_below = cutoff - self.retention_ms / 4;
        let names_cur = self.names.read().unwrap().clone();
        let label_sets_cur = self.label_sets.read().unwrap().clone();
        let mut rejected = 0u64;
        let mut appended = 0u64;
        let mut out_of_order = 0u64;
        for (i, sets) in per_shard.into_iter().enumerate() {
            let mut shard = self.shards[i].write().unwrap();
            let mut changes = index::Changes::default();
            for (key, set, range) in sets {
                let entity = match shard.get_mut(key) {
                    Some(e) => e,
                    None => {
                        self.stats.entities.fetch_add(1, Ordering::Relaxed);
                        let id = self.index.write().unwrap().alloc(i, shard.next_pos());
                        changes.adds.push((id, set_label_pairs(&set.labels)));
                        let e = Entity::new(set.labels.clone(), ts, Slots::default(), id, false);
                        shard.insert(Arc::from(key), e)
                    }
                };
                // The processor shares unchanged label maps across rounds: this is a pointer
                // copy, never a map copy. Changed labels re-index the entity.
                let mut relabeled = None;
                if !Arc::ptr_eq(&entity.labels, &set.labels) {
                    if *entity.labels != *set.labels {
                        relabeled = Some(entity_pairs(entity, &names_cur, &label_sets_cur));
                        entity.set_labels(set.labels.clone());
                    } else {
                        entity.labels = set.labels.clone();
                    }
                }
                entity.create_time_ms = set.create_time.map(ms);
                if set.rate_window_ms.is_some() {
                    entity.rate_window_ms = set.rate_window_ms;
                }
                entity.last_seen_ms = entity.last_seen_ms.max(ts);
                let mut hint = 0usize;
                for &(metric, labels, v) in &vals[range] {
                    let slot = SlotKey { metric, labels };
                    match entity.slots.position(slot, hint) {
                        Some(pos) => {
                            let series = entity.slots.series_mut(pos);
                            if series.push(ts, v) {
                                appended += 1;
                            } else {
                                out_of_order += 1;
                            }
                            if series.first_ts() < trim_below {
                                series.trim(cutoff);
                            }
                            hint = pos + 1;
                        }
                        None => {
                            if self.stats.series.load(Ordering::Relaxed) >= self.max_series {
                                rejected += 1;
                                continue;
                            }
                            self.stats.series.fetch_add(1, Ordering::Relaxed);
                            let mut pairs = Vec::new();
                            slot_pairs(false, slot, &names_cur, &label_sets_cur, &mut pairs);
                            changes.adds.push((entity.id, pairs));
                            entity.slots.push(slot, Series::new(ts, v));
                            appended += 1;
                            hint = entity.slots.len();
                        }
                    }
                }
                if let Some(before) = relabeled {
                    let after = entity_pairs(entity, &names_cur, &label_sets_cur);
                    let gone: Vec<index::Pair> =
                        before.into_iter().filter(|p| after.binary_search(p).is_err()).collect();
                    changes.removes.push((entity.id, gone));
                    changes.adds.push((entity.id, after));
                }
                entity.slots.shrink();
            }
            // Expire entities and series that fell out of the window, and their index entries.
            let mut dropped_series = 0usize;
            let mut dropped_entities = 0usize;
            shard.retain(|e| {
                if e.last_seen_ms < cutoff {
                    dropped_series += e.slots.len();
                    dropped_entities += 1;
                    changes
                        .removes
                        .push((e.id, entity_pairs(e, &names_cur, &label_sets_cur)));
                    changes.freed.push(e.id);
                    return false;
                }
                if e.slots.series().iter().all(|s| s.last_ts() >= cutoff) {
                    return true;
                }
                let before = entity_pairs(e, &names_cur, &label_sets_cur);
                dropped_series += e.slots.retain(|s| s.last_ts() >= cutoff);
                let after = entity_pairs(e, &names_cur, &label_sets_cur);
                let gone: Vec<index::Pair> =
                    before.into_iter().filter(|p| after.binary_search(p).is_err()).collect();
                changes.removes.push((e.id, gone));
                true
            });
            if !changes.is_empty() {
                self.index.write().unwrap().apply(changes);
                self.generations[i].fetch_add(1, Ordering::Release);
            }
            drop(shard);
            self.stats
                .series
                .fetch_sub(dropped_series, Ordering::Relaxed);
            self.stats
                .entities
                .fetch_sub(dropped_entities, Ordering::Relaxed);
        }
        self.stats
            .points_appended
            .fetch_add(appended, Ordering::Relaxed);
        self.stats
            .points_out_of_order
            .fetch_add(out_of_order, Ordering::Relaxed);
        if rejected > 0 {
            self.stats
                .series_rejected
                .fetch_add(rejected, Ordering::Relaxed);
            return Err(Error::SeriesLimit {
                limit: self.max_series,
                rejected,
            });
        }
        Ok(())
    }

    /// Every label name in the index (of all series), sorted.
    pub fn label_names(&self) -> Vec<String> {
        self.index.read().unwrap().label_names()
    }

    /// Every value of label `name` in the index (of all series), sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.index.read().unwrap().label_values(name)
    }

    /// The Heapster metric names the store has held (for `/api/v1/metadata`): names with a `/`
    /// or with Heapster's help text, i.e. not the Prometheus names of [`Store::append`].
    pub fn heapster_metric_names(&self) -> Vec<String> {
        let names = self.names.read().unwrap().clone();
        let mut out: Vec<String> = names
            .items
            .iter()
            .filter(|n| n.contains('/') || !names::help(n).is_empty())
            .map(|n| n.to_string())
            .collect();
        out.sort();
        out
    }

    /// Approximate heap bytes of the label index.
    pub fn index_heap_bytes(&self) -> usize {
        self.index.read().unwrap().heap_bytes()
    }

    /// Points of one series between `start_ms` and `end_ms` (inclusive). `None` when the entity
    /// is unknown; an empty list when the entity lacks that metric.
    pub fn query(
        &self,
        key: &str,
        metric: &str,
        labels: Option<&BTreeMap<String, String>>,
        start_ms: i64,
        end_ms: i64,
    ) -> Option<Vec<Points>> {
        let names = self.names.read().unwrap().clone();
        let label_sets = self.label_sets.read().unwrap().clone();
        let shard = self.shards[shard_of(key)].read().unwrap();
        let entity = shard.get(key)?;
        let Some(metric_id) = names.ids.get(metric).copied() else {
            return Some(Vec::new());
        };
        let mut out = Vec::new();
        let slots = entity.slots.keys().iter().zip(entity.slots.series());
        for (slot, series) in slots.filter(|(s, _)| s.metric == metric_id) {
            let wanted = match (labels, slot.labels) {
                (None, 0) => true,
                (None, _) | (Some(_), 0) => false,
                (Some(want), l) => &label_sets.items[(l - 1) as usize] == want,
            };
            if !wanted {
                continue;
            }
            let mut points = Vec::new();
            series.for_each(|ts, v| {
                if ts >= start_ms && ts <= end_ms {
                    points.push((ts, v));
                }
            });
            out.push(Points {
                kind: series.kind(),
                points,
            });
        }
        Some(out)
    }

    /// Names of the unlabeled metrics an entity has, sorted; `None` when the entity is unknown.
    pub fn metric_names(&self, key: &str) -> Option<Vec<String>> {
        let names = self.names.read().unwrap().clone();
        let shard = self.shards[shard_of(key)].read().unwrap();
        let entity = shard.get(key)?;
        let mut out: Vec<String> = entity
            .slots
            .keys()
            .iter()
            .filter(|s| s.labels == 0)
            .map(|s| names.items[s.metric as usize].to_string())
            .collect();
        out.sort();
        out.dedup();
        Some(out)
    }

    /// Whether a metric name was ever stored.
    pub fn knows_metric(&self, metric: &str) -> bool {
        self.names.read().unwrap().ids.contains_key(metric)
    }

    /// Labels and start time of an entity.
    pub fn entity(&self, key: &str) -> Option<(Labels, Option<i64>, i64)> {
        let shard = self.shards[shard_of(key)].read().unwrap();
        shard
            .get(key)
            .map(|e| (e.labels.clone(), e.create_time_ms, e.last_seen_ms))
    }

    /// Milliseconds between the two samples behind an entity's newest rates, once known.
    pub fn rate_window_ms(&self, key: &str) -> Option<i64> {
        let shard = self.shards[shard_of(key)].read().unwrap();
        shard.get(key).and_then(|e| e.rate_window_ms)
    }

    /// Every entity key accepted by `filter`, sorted.
    pub fn keys(&self, mut filter: impl FnMut(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let shard = shard.read().unwrap();
            out.extend(
                shard
                    .iter()
                    .filter(|(k, e)| !e.raw && filter(k))
                    .map(|(k, _)| k.to_string()),
            );
        }
        out.sort();
        out
    }

    /// Approximate heap bytes of the encoded points (for /metrics and the benchmarks).
    pub fn points_heap_bytes(&self) -> usize {
        let mut total = 0;
        for shard in &self.shards {
            let shard = shard.read().unwrap();
            for (_, e) in shard.iter() {
                total += e.slots.series().iter().map(|s| s.heap_bytes()).sum::<usize>();
            }
        }
        self.stats.heap_bytes.store(total, Ordering::Relaxed);
        total
    }

    /// Visits every series (for snapshots): entity key, entity, metric name, metric labels, series.
    pub fn for_each_entity(
        &self,
        mut f: impl FnMut(
            &str,
            &Labels,
            Option<i64>,
            Vec<(&str, Option<&BTreeMap<String, String>>, &Series)>,
        ),
    ) {
        let names = self.names.read().unwrap().clone();
        let label_sets = self.label_sets.read().unwrap().clone();
        for shard in &self.shards {
            let shard = shard.read().unwrap();
            for (key, e) in shard.iter().filter(|(_, e)| !e.raw) {
                let series = e
                    .slots
                    .keys()
                    .iter()
                    .zip(e.slots.series())
                    .map(|(s, series)| {
                        let labels = if s.labels == 0 {
                            None
                        } else {
                            Some(&label_sets.items[(s.labels - 1) as usize])
                        };
                        (&*names.items[s.metric as usize], labels, series)
                    })
                    .collect();
                f(key, &e.labels, e.create_time_ms, series);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{LabeledMetric, MetricSet};
    use chrono::{TimeZone, Utc};

    fn batch(t: i64, sets: &[(&str, &[(&'static str, MetricValue)])]) -> Batch {
        let mut b = Batch {
            timestamp: Utc.timestamp_millis_opt(t).unwrap(),
            sets: BTreeMap::new(),
        };
        for (key, vals) in sets {
            let mut set = MetricSet::default();
            std::sync::Arc::make_mut(&mut set.labels).insert("type".into(), "node".into());
            for (n, v) in vals.iter() {
                set.values.insert(*n, *v);
            }
            set.labeled.push(LabeledMetric {
                name: "filesystem/usage".into(),
                labels: crate::batch::resource_labels("/"),
                value: MetricValue::Int(t),
            });
            b.sets.insert(key.to_string(), set);
        }
        b
    }

    #[test]
    fn stores_queries_and_expires() {
        let store = Store::new(60_000, 1000);
        for i in 0..10 {
            let t = 1_000_000 + i * 15_000;
            store
                .ingest(&batch(
                    t,
                    &[(
                        "node:a",
                        &[
                            ("cpu/usage_rate", MetricValue::Int(i * 10)),
                            ("memory/usage", MetricValue::Int(5)),
                        ],
                    )],
                ))
                .unwrap();
        }
        let got = store
            .query("node:a", "cpu/usage_rate", None, 0, i64::MAX)
            .unwrap();
        assert_eq!(got.len(), 1);
        // The window is 60 s: points older than the newest minus 60 s may linger until trimmed,
        // but never more than a quarter window beyond it.
        let pts = &got[0].points;
        assert_eq!(pts.last().unwrap(), &(1_135_000, MetricValue::Int(90)));
        assert!(
            pts.first().unwrap().0 >= 1_135_000 - 60_000 - 15_000,
            "{pts:?}"
        );
        let fs = store
            .query(
                "node:a",
                "filesystem/usage",
                Some(&[("resource_id".to_string(), "/".to_string())].into()),
                0,
                i64::MAX,
            )
            .unwrap();
        assert_eq!(fs[0].points.last().unwrap().1, MetricValue::Int(1_135_000));
        assert!(store
            .query("node:a", "filesystem/usage", None, 0, i64::MAX)
            .unwrap()
            .is_empty());
        assert_eq!(
            store.metric_names("node:a").unwrap(),
            vec!["cpu/usage_rate", "memory/usage"]
        );
        assert!(store
            .query("node:b", "cpu/usage_rate", None, 0, i64::MAX)
            .is_none());
        // Range limits are inclusive.
        let r = store
            .query("node:a", "cpu/usage_rate", None, 1_120_000, 1_135_000)
            .unwrap();
        assert_eq!(r[0].points.len(), 2);
        // An entity not seen for a whole window is dropped with its series.
        store
            .ingest(&batch(
                1_135_000 + 61_000,
                &[("node:b", &[("x", MetricValue::Int(1))])],
            ))
            .unwrap();
        assert!(store.entity("node:a").is_none());
        assert_eq!(store.stats.series.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn series_limit_is_enforced_with_a_clear_error() {
        let store = Store::new(60_000, 3);
        let err = store
            .ingest(&batch(
                1000,
                &[(
                    "node:a",
                    &[
                        ("a", MetricValue::Int(1)),
                        ("b", MetricValue::Int(1)),
                        ("c", MetricValue::Int(1)),
                    ],
                )],
            ))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("series limit 3 reached: 1 new series refused"),
            "{err}"
        );
        assert_eq!(store.stats.series.load(Ordering::Relaxed), 3);
        assert_eq!(store.stats.series_rejected.load(Ordering::Relaxed), 1);
        // Existing series keep getting points.
        let _ = store.ingest(&batch(2000, &[("node:a", &[("a", MetricValue::Int(2))])]));
        assert_eq!(
            store.query("node:a", "a", None, 0, i64::MAX).unwrap()[0]
                .points
                .len(),
            2
        );
    }
}
