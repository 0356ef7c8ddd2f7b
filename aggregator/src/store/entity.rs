//! One entity (a metric set: container, pod, node, …, or an appended label set) and its series,
//! and the label-index pairs they stand for.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{index, names, Interner, Labels, Series};

/// Which series a slot holds: the interned metric name, and its own label set (index into the
/// label-set interner plus one; 0 for an unlabeled metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SlotKey {
    pub metric: u32,
    pub labels: u32,
}

/// An entity's series, their keys kept apart from the compressed series: a selection scans the
/// keys of all of an entity's ~16 series in one or two cache lines instead of ~16 series
/// headers (the scan was half the selector's cost at 1,000 nodes, in cache misses).
#[derive(Default)]
pub(super) struct Slots {
    keys: Vec<SlotKey>,
    series: Vec<Series>,
}

impl Slots {
    pub fn one(key: SlotKey, series: Series) -> Slots {
        Slots { keys: vec![key], series: vec![series] }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn keys(&self) -> &[SlotKey] {
        &self.keys
    }

    pub fn series(&self) -> &[Series] {
        &self.series
    }

    pub fn series_mut(&mut self, i: usize) -> &mut Series {
        &mut self.series[i]
    }

    /// Where `key` is, looking at `hint` first (series come in the same order every round).
    pub fn position(&self, key: SlotKey, hint: usize) -> Option<usize> {
        if self.keys.get(hint) == Some(&key) {
            return Some(hint);
        }
        self.keys.iter().position(|k| *k == key)
    }

    pub fn push(&mut self, key: SlotKey, series: Series) {
        self.keys.push(key);
        self.series.push(series);
    }

    /// Keeps the series `keep` accepts; returns how many were dropped.
    pub fn retain(&mut self, mut keep: impl FnMut(&Series) -> bool) -> usize {
        let before = self.keys.len();
        let mut i = 0;
        while i < self.keys.len() {
            if keep(&self.series[i]) {
                i += 1;
            } else {
                self.keys.remove(i);
                self.series.remove(i);
            }
        }
        before - self.keys.len()
    }

    /// Series are added in the first rounds only: do not keep doubling's slack.
    pub fn shrink(&mut self) {
        if self.keys.capacity() > self.keys.len() + 2 {
            self.keys.shrink_to_fit();
            self.series.shrink_to_fit();
        }
    }
}

/// One metric set's history: its labels and series.
pub struct Entity {
    pub labels: Labels,
    pub create_time_ms: Option<i64>,
    pub last_seen_ms: i64,
    /// Interval between the two samples behind the newest rates (metrics.k8s.io `window`).
    pub rate_window_ms: Option<i64>,
    pub(super) slots: Slots,
    /// The entity's id in the label index.
    pub(super) id: u32,
    /// Written by [`super::Store::append`]: names are Prometheus names, used as they are.
    pub(super) raw: bool,
    /// Whether `labels` are Prometheus labels as they are ([`plain_labels`]): a selection then
    /// reads them without mapping. Set whenever `labels` change.
    pub(super) plain: bool,
}

impl Entity {
    pub(super) fn new(labels: Labels, last_seen_ms: i64, slots: Slots, id: u32, raw: bool) -> Entity {
        Entity {
            plain: plain_labels(&labels),
            labels,
            create_time_ms: None,
            last_seen_ms,
            rate_window_ms: None,
            slots,
            id,
            raw,
        }
    }

    /// Replaces the labels (and their `plain` mark).
    pub(super) fn set_labels(&mut self, labels: Labels) {
        self.plain = plain_labels(&labels);
        self.labels = labels;
    }
}

/// Whether a set's labels need no mapping to be Prometheus labels: every name is a valid
/// Prometheus label name and none is `__name__`, so [`names::set_pairs`] would keep every pair
/// with a value under its own name, in the map's order.
pub(super) fn plain_labels(labels: &BTreeMap<String, String>) -> bool {
    labels
        .keys()
        .all(|k| k != "__name__" && matches!(names::label_name_cow(k), std::borrow::Cow::Borrowed(_)))
}

/// The index pairs of a set's labels (Prometheus names, as the sink writes them).
pub(super) fn set_label_pairs(labels: &BTreeMap<String, String>) -> Vec<index::Pair> {
    let mut pairs = Vec::new();
    names::set_pairs(labels, "", &mut pairs);
    pairs
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v.to_string()))
        .collect()
}

/// The Prometheus name of a stored metric: Heapster names are mapped, `append`'s kept.
pub(super) fn prom_name(raw: bool, name: &str) -> String {
    if raw {
        name.to_string()
    } else {
        names::metric_name(name)
    }
}

/// The index pairs a series adds to its entity's: `__name__` and its own labels.
pub(super) fn slot_pairs(
    raw: bool,
    key: SlotKey,
    names: &Interner<Arc<str>>,
    label_sets: &Interner<BTreeMap<String, String>>,
    out: &mut Vec<index::Pair>,
) {
    out.push((
        "__name__".to_string(),
        prom_name(raw, &names.items[key.metric as usize]),
    ));
    if key.labels != 0 {
        for (k, v) in &label_sets.items[(key.labels - 1) as usize] {
            if !v.is_empty() {
                let k = names::label_name(k);
                if k != "__name__" {
                    out.push((k, v.clone()));
                }
            }
        }
    }
}

/// Every index pair of an entity, sorted and unique.
pub(super) fn entity_pairs(
    e: &Entity,
    names: &Interner<Arc<str>>,
    label_sets: &Interner<BTreeMap<String, String>>,
) -> Vec<index::Pair> {
    let mut out = set_label_pairs(&e.labels);
    for key in e.slots.keys() {
        slot_pairs(e.raw, *key, names, label_sets, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(p: &[(&str, &str)]) -> BTreeMap<String, String> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn plain_labels_are_exactly_those_set_pairs_keeps_as_they_are() {
        for (labels, plain) in [
            (map(&[("type", "pod"), ("pod_name", "p"), ("labels", "")]), true),
            (map(&[]), true),
            (map(&[("app.kubernetes.io/name", "x")]), false),
            (map(&[("__name__", "x")]), false),
            (map(&[("9lives", "x")]), false),
        ] {
            assert_eq!(plain_labels(&labels), plain, "{labels:?}");
            if plain {
                let mut pairs = Vec::new();
                names::set_pairs(&labels, "", &mut pairs);
                let kept: Vec<(&str, &str)> =
                    pairs.iter().map(|(k, v)| (k.as_ref(), *v)).collect();
                let same: Vec<(&str, &str)> = labels
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                assert_eq!(kept, same);
            }
        }
    }

    #[test]
    fn slots_keep_keys_and_series_together() {
        let key = |m| SlotKey { metric: m, labels: 0 };
        let mut s = Slots::one(key(1), Series::new(0, crate::batch::MetricValue::Int(1)));
        s.push(key(2), Series::new(10, crate::batch::MetricValue::Int(2)));
        s.push(key(3), Series::new(0, crate::batch::MetricValue::Int(3)));
        assert_eq!(s.position(key(3), 2), Some(2));
        assert_eq!(s.position(key(2), 0), Some(1));
        assert_eq!(s.position(key(4), 0), None);
        assert_eq!(s.retain(|x| x.last_ts() > 5), 2);
        assert_eq!(s.keys(), &[key(2)]);
        assert_eq!(s.series()[0].last().1, crate::batch::MetricValue::Int(2));
    }
}
