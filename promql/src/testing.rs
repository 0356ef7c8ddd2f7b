//! An in-memory [`Storage`] with a postings index by label, for tests, benches and examples.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::storage::{Hints, Labels, MatchOp, Matcher, Selected, Series, Storage, StorageError};

/// Series held in memory, answered through an inverted index (label name → value → series ids).
#[derive(Debug, Default)]
pub struct MemStorage {
    series: Vec<Series>,
    by_labels: HashMap<Labels, usize>,
    /// name → value → series ids, ascending.
    postings: BTreeMap<String, BTreeMap<String, Vec<usize>>>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// Appends one sample (labels with empty values are left out); samples of a series must come in time order (a sample at the same time
    /// replaces the previous one).
    pub fn add(&mut self, labels: &Labels, t_ms: i64, value: f64) {
        if labels.values().any(String::is_empty) {
            // A label with an empty value is no label, as Prometheus stores it.
            let mut l = labels.clone();
            l.retain(|_, v| !v.is_empty());
            return self.add(&l, t_ms, value);
        }
        let id = match self.by_labels.get(labels) {
            Some(&id) => id,
            None => {
                let id = self.series.len();
                self.series.push(Series { labels: labels.clone(), samples: Vec::new() });
                self.by_labels.insert(labels.clone(), id);
                for (n, v) in labels {
                    self.postings
                        .entry(n.clone())
                        .or_default()
                        .entry(v.clone())
                        .or_default()
                        .push(id);
                }
                id
            }
        };
        let samples = &mut self.series[id].samples;
        match samples.last_mut() {
            Some(last) if last.0 == t_ms => last.1 = value,
            Some(last) if last.0 > t_ms => {
                let at = samples.partition_point(|s| s.0 < t_ms);
                if samples[at].0 == t_ms {
                    samples[at].1 = value;
                } else {
                    samples.insert(at, (t_ms, value));
                }
            }
            _ => samples.push((t_ms, value)),
        }
    }

    /// Number of series held.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Ids (ascending) of the series a matcher selects, or `None` when it also selects by
    /// absence (it matches ""): such matchers only filter.
    fn postings_for(&self, m: &Matcher) -> Option<Vec<usize>> {
        if m.matches_empty() {
            return None;
        }
        let Some(values) = self.postings.get(&m.name) else {
            return Some(Vec::new());
        };
        if m.op == MatchOp::Equal {
            return Some(values.get(&m.value).cloned().unwrap_or_default());
        }
        let mut ids: Vec<usize> = values
            .iter()
            .filter(|(v, _)| m.matches(v))
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        ids.sort_unstable();
        Some(ids)
    }

    fn matching(&self, matchers: &[Matcher]) -> Vec<usize> {
        let mut lists: Vec<Vec<usize>> = matchers.iter().filter_map(|m| self.postings_for(m)).collect();
        lists.sort_by_key(Vec::len);
        // Intersect from the shortest list; only matchers that match the empty string leave
        // every series a candidate, as in Prometheus.
        let candidates: Vec<usize> = match lists.split_first() {
            None => (0..self.series.len()).collect(),
            Some((first, rest)) => first
                .iter()
                .copied()
                .filter(|id| rest.iter().all(|l| l.binary_search(id).is_ok()))
                .collect(),
        };
        candidates
            .into_iter()
            .filter(|&id| {
                let l = &self.series[id].labels;
                matchers
                    .iter()
                    .all(|m| m.matches(l.get(&m.name).map(String::as_str).unwrap_or("")))
            })
            .collect()
    }

    fn in_range(&self, id: usize, start_ms: i64, end_ms: i64) -> bool {
        let s = &self.series[id].samples;
        let lo = s.partition_point(|x| x.0 < start_ms);
        lo < s.len() && s[lo].0 <= end_ms
    }

    fn selected(
        &self,
        selectors: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> BTreeSet<usize> {
        let mut ids = BTreeSet::new();
        if selectors.is_empty() {
            ids.extend(0..self.series.len());
        }
        for sel in selectors {
            ids.extend(self.matching(sel));
        }
        ids.retain(|&id| self.in_range(id, start_ms, end_ms));
        ids
    }
}

impl Storage for MemStorage {
    /// Follows `hints` as a real store may (only the newest sample, projected labels), so the
    /// engine's tests check that the engine asks only for what it reads.
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        hints: &Hints,
    ) -> Result<Vec<Selected>, StorageError> {
        let mut out = Vec::new();
        for id in self.matching(matchers) {
            let s = &self.series[id];
            let mut lo = s.samples.partition_point(|x| x.0 < start_ms);
            let hi = s.samples.partition_point(|x| x.0 <= end_ms);
            if lo < hi {
                if hints.last_only {
                    lo = hi - 1;
                }
                let labels = match &hints.labels {
                    Some(keep) => s
                        .labels
                        .iter()
                        .filter(|(k, _)| keep.contains(k))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    None => s.labels.clone(),
                };
                out.push(Selected { labels: Arc::new(labels), samples: s.samples[lo..hi].to_vec() });
            }
        }
        Ok(out)
    }

    fn label_names(
        &self,
        selectors: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut names = BTreeSet::new();
        for id in self.selected(selectors, start_ms, end_ms) {
            names.extend(self.series[id].labels.keys().cloned());
        }
        Ok(names.into_iter().collect())
    }

    fn label_values(
        &self,
        name: &str,
        selectors: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut values = BTreeSet::new();
        for id in self.selected(selectors, start_ms, end_ms) {
            if let Some(v) = self.series[id].labels.get(name) {
                values.insert(v.clone());
            }
        }
        Ok(values.into_iter().collect())
    }
}
