//! Series written the Prometheus way by the aggregator's own subsystems (recording rules,
//! `ALERTS`, node problems): validated names, one entity per label set.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::entity::{set_label_pairs, Entity, SlotKey, Slots};
use super::{index, shard_of, Error, Series, Store};
use crate::batch::MetricValue;

/// The key of an entity written by [`Store::append`]: a prefix no Heapster key has.
fn raw_key(labels: &BTreeMap<String, String>) -> String {
    let mut key = String::from("prometheus:");
    for (k, v) in labels {
        key.push_str(k);
        key.push('=');
        key.push_str(&v.replace('\\', "\\\\").replace(',', "\\,"));
        key.push(',');
    }
    key
}

fn valid_label_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

fn valid_metric_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
}


impl Store {
    /// Writes one sample of a series named the Prometheus way, for subsystems that produce
    /// series of their own: alerting's recording rules and its `ALERTS` / `ALERTS_FOR_STATE`
    /// series, node problems. `labels` holds the metric name as `__name__` and the other labels
    /// (valid Prometheus names; empty values are dropped, as Prometheus drops them).
    ///
    /// The series is queryable at once through PromQL (`Storage::select`, the `/api/v1/*`
    /// routes) under exactly these labels, counts toward `--max-series`, and expires with the
    /// window like any other series (`--retention` after its last sample, at the next round).
    /// Samples must come in time order: one not newer than the series' last is refused with
    /// [`Error::OutOfOrder`]. A staleness marker (`vigil_promql::STALE_NAN_BITS`) is kept bit
    /// for bit and ends the series for lookback purposes, as in Prometheus.
    pub fn append(&self, labels: &BTreeMap<String, String>, t_ms: i64, value: f64) -> Result<(), Error> {
        let describe = || {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let invalid = |message: String| Error::InvalidSeries {
            labels: format!("{{{}}}", describe()),
            message,
        };
        let name = match labels.get("__name__") {
            Some(n) if valid_metric_name(n) => n.clone(),
            Some(n) => return Err(invalid(format!("invalid metric name {n:?}"))),
            None => return Err(invalid("no __name__ label".into())),
        };
        let mut set: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in labels {
            if k == "__name__" || v.is_empty() {
                continue;
            }
            if !valid_label_name(k) || k.starts_with("__") {
                return Err(invalid(format!("invalid label name {k:?}")));
            }
            set.insert(k.clone(), v.clone());
        }
        let metric = {
            let names = self.names.read().unwrap().clone();
            match names.get(&Arc::from(name.as_str())) {
                Some(id) => id,
                None => {
                    let mut w = self.names.write().unwrap();
                    let mut next = (**w).clone();
                    let id = next.intern(Arc::from(name.as_str()));
                    *w = Arc::new(next);
                    id
                }
            }
        };
        let key = raw_key(&set);
        let i = shard_of(&key);
        let mut shard = self.shards[i].write().unwrap();
        let v = MetricValue::Float(value);
        // An entity holds every appended series with this label set, one slot per name (two
        // recording rules over `sum(...)` share the empty label set but not their series).
        if let Some(e) = shard.get_mut(key.as_str()) {
            if let Some(pos) = e.slots.position(SlotKey { metric, labels: 0 }, 0) {
                if !e.slots.series_mut(pos).push(t_ms, v) {
                    self.stats.points_out_of_order.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::OutOfOrder {
                        labels: format!("{{{}}}", describe()),
                        t_ms,
                    });
                }
                e.last_seen_ms = e.last_seen_ms.max(t_ms);
                self.stats.points_appended.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        }
        if self.stats.series.load(Ordering::Relaxed) >= self.max_series {
            self.stats.series_rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Error::SeriesLimit {
                limit: self.max_series,
                rejected: 1,
            });
        }
        if let Some(e) = shard.get_mut(key.as_str()) {
            e.last_seen_ms = e.last_seen_ms.max(t_ms);
            e.slots.push(SlotKey { metric, labels: 0 }, Series::new(t_ms, v));
            self.index.write().unwrap().apply(index::Changes {
                adds: vec![(e.id, vec![("__name__".to_string(), name)])],
                ..Default::default()
            });
            self.generations[i].fetch_add(1, Ordering::Release);
            self.stats.series.fetch_add(1, Ordering::Relaxed);
            self.stats.points_appended.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut pairs = set_label_pairs(&set);
        pairs.push(("__name__".to_string(), name));
        let mut index = self.index.write().unwrap();
        let id = index.alloc(i, shard.next_pos());
        index.apply(index::Changes {
            adds: vec![(id, pairs)],
            ..Default::default()
        });
        drop(index);
        self.generations[i].fetch_add(1, Ordering::Release);
        shard.insert(
            Arc::from(key),
            Entity::new(
                Arc::new(set),
                t_ms,
                Slots::one(SlotKey { metric, labels: 0 }, Series::new(t_ms, v)),
                id,
                true,
            ),
        );
        self.stats.series.fetch_add(1, Ordering::Relaxed);
        self.stats.entities.fetch_add(1, Ordering::Relaxed);
        self.stats.points_appended.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

}
