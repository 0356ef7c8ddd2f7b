//! Selections through the label index: the series whose Prometheus labels satisfy a selector,
//! with their samples in a range and the labels the engine will read.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use vigil_promql::{Hints, Matcher, Selected};

use super::entity::Entity;
use super::{index, names, Store, SHARDS};

/// A Prometheus label pair borrowed from the store.
type Pair<'a> = (Cow<'a, str>, &'a str);

fn value_of<'a>(pairs: &[Pair<'a>], name: &str) -> &'a str {
    pairs.iter().find(|(k, _)| k == name).map_or("", |(_, v)| *v)
}

/// An entity's set labels in Prometheus names: read from its map as they are when the entity's
/// labels are plain (the usual case: no mapping, no allocation), else mapped once, when first
/// needed.
struct SetLabels<'a> {
    map: &'a BTreeMap<String, String>,
    plain: bool,
    pairs: Option<Vec<Pair<'a>>>,
}

impl<'a> SetLabels<'a> {
    fn new(e: &'a Entity) -> SetLabels<'a> {
        SetLabels { map: &e.labels, plain: e.plain, pairs: None }
    }

    /// Every pair, sorted by name, empty values left out.
    fn pairs(&mut self) -> &[Pair<'a>] {
        let (map, plain) = (self.map, self.plain);
        self.pairs.get_or_insert_with(|| {
            let mut v = Vec::new();
            if plain {
                v.extend(
                    map.iter()
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(k, v)| (Cow::Borrowed(k.as_str()), v.as_str())),
                );
            } else {
                names::set_pairs(map, "", &mut v);
            }
            v
        })
    }

    /// The value of label `name` ("" when absent).
    fn get(&mut self, name: &str) -> &'a str {
        if self.plain {
            return self.map.get(name).map_or("", String::as_str);
        }
        value_of(self.pairs(), name)
    }
}

impl Store {
    /// [`Store::select_hinted`] without hints: every label, every sample in the range.
    pub fn select_series<E>(
        &self,
        matchers: &[Matcher],
        range: Option<(i64, i64)>,
        budget: impl FnMut(usize) -> Result<(), E>,
    ) -> Result<Vec<Selected>, E> {
        self.select_hinted(matchers, range, &Hints::default(), budget)
    }

    /// Every series whose Prometheus labels satisfy all `matchers`, found through the label
    /// index. With `range`, each series comes with its samples in `[start, end]` (as f64) and
    /// series without any are left out; without, samples are empty. `hints` (see
    /// [`vigil_promql::Hints`]): `last_only` returns just the newest sample in the range (read
    /// from the series' header, without decoding, when it is the series' last); `labels`
    /// returns only those labels, one shared set per distinct projection. `budget` is called
    /// with each series' sample count and stops the selection when it returns an error.
    pub fn select_hinted<E>(
        &self,
        matchers: &[Matcher],
        range: Option<(i64, i64)>,
        hints: &Hints,
        mut budget: impl FnMut(usize) -> Result<(), E>,
    ) -> Result<Vec<Selected>, E> {
        // Each shard's generation before the index answers (see `Store::generations`).
        let asked: Vec<u64> = self.generations.iter().map(|g| g.load(Ordering::Acquire)).collect();
        let ids = match self.index.read().unwrap().candidates(matchers) {
            index::Candidates::All => self.index.read().unwrap().all_ids(),
            index::Candidates::Ids(ids) => ids,
        };
        let mut by_shard: Vec<Vec<(u32, u32)>> = (0..SHARDS).map(|_| Vec::new()).collect();
        {
            let index = self.index.read().unwrap();
            for id in ids {
                if let Some((shard, pos)) = index.key(id) {
                    by_shard[shard as usize].push((id, pos));
                }
            }
        }
        let names = self.names.read().unwrap().clone();
        let label_sets = self.label_sets.read().unwrap().clone();
        // The metric-name matchers are decided once per stored name, as Prometheus names it
        // (mapped for Heapster's series, as it is for appended ones), not once per series.
        let (by_name, by_label): (Vec<&Matcher>, Vec<&Matcher>) =
            matchers.iter().partition(|m| m.name == "__name__");
        // Label matchers the index narrowed the candidates with (those not matching ""): each
        // candidate entity holds a matching pair in its set labels or in a series' own labels.
        // A series without own labels then matches without reading its labels, unless a series
        // of the entity has its own label of that name (the pair may be that one's), or the
        // shard's entities changed since the index answered.
        let vouched: Vec<bool> = by_label.iter().map(|m| !m.matches_empty()).collect();
        let mapped: Vec<String> = names.items.iter().map(|n| names::metric_name(n)).collect();
        let name_ok = |n: &str| by_name.iter().all(|m| m.matches(n));
        let wanted: Vec<[bool; 2]> = names
            .items
            .iter()
            .zip(&mapped)
            .map(|(raw, mapped)| [name_ok(mapped), name_ok(raw)])
            .collect();
        // Projected label sets, shared: key = the projected values, each prefixed by its length.
        let mut projected: FxHashMap<String, Arc<vigil_promql::Labels>> = FxHashMap::default();
        let mut key = String::new();
        let mut out = Vec::new();
        for (i, keys) in by_shard.iter().enumerate() {
            if keys.is_empty() {
                continue;
            }
            let shard = self.shards[i].read().unwrap();
            let fresh = by_label.len() <= 64
                && self.generations[i].load(Ordering::Acquire) == asked[i];
            let mut own_pairs: Vec<Pair<'_>> = Vec::new();
            for &(id, pos) in keys {
                // The entity may have gone (and its position been reused) since the index
                // answered: the id tells.
                let Some(e) = shard.at(pos).filter(|e| e.id == id) else {
                    continue;
                };
                let mut set = SetLabels::new(e);
                let raw = usize::from(e.raw);
                // Bit j: a series of the entity has its own label named as `by_label[j]`.
                let mut overridden = 0u64;
                if fresh {
                    for k in e.slots.keys().iter().filter(|k| k.labels != 0) {
                        let own = &label_sets.items[(k.labels - 1) as usize];
                        for (j, m) in by_label.iter().enumerate() {
                            if own.keys().any(|n| names::label_name_cow(n) == m.name.as_str()) {
                                overridden |= 1 << j;
                            }
                        }
                    }
                }
                for (slot, series) in e.slots.keys().iter().zip(e.slots.series()) {
                    if !wanted[slot.metric as usize][raw] {
                        continue;
                    }
                    let name: &str = if e.raw {
                        &names.items[slot.metric as usize]
                    } else {
                        &mapped[slot.metric as usize]
                    };
                    // A labeled metric's own labels over its set's; an unlabeled one reads the
                    // set's labels straight.
                    let own = (slot.labels != 0).then(|| &label_sets.items[(slot.labels - 1) as usize]);
                    if let Some(own) = own {
                        names::with_own(own, set.pairs(), &mut own_pairs);
                    }
                    let matched = by_label.iter().enumerate().all(|(j, m)| match own {
                        Some(_) => m.matches(value_of(&own_pairs, &m.name)),
                        None if fresh && vouched[j] && overridden & (1 << j) == 0 => true,
                        None => m.matches(set.get(&m.name)),
                    });
                    if !matched {
                        continue;
                    }
                    let mut samples = Vec::new();
                    if let Some((start, end)) = range {
                        let (first, last) = (series.first_ts(), series.last_ts());
                        if last < start || first > end {
                            continue;
                        }
                        if hints.last_only && last <= end {
                            samples.push((last, series.last().1.as_f64()));
                        } else {
                            series.for_each(|t, v| {
                                if t >= start && t <= end {
                                    samples.push((t, v.as_f64()));
                                }
                            });
                            if hints.last_only && samples.len() > 1 {
                                samples.drain(..samples.len() - 1);
                            }
                        }
                        if samples.is_empty() {
                            continue;
                        }
                        budget(samples.len())?;
                    } else {
                        budget(1)?;
                    }
                    let labels = match &hints.labels {
                        None => {
                            let pairs = match own {
                                Some(_) => &own_pairs[..],
                                None => set.pairs(),
                            };
                            let mut labels: vigil_promql::Labels = pairs
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .collect();
                            labels.insert("__name__".into(), name.to_string());
                            Arc::new(labels)
                        }
                        Some(keep) => {
                            let mut get = |k: &str| -> &str {
                                match own {
                                    _ if k == "__name__" => name,
                                    Some(_) => value_of(&own_pairs, k),
                                    None => set.get(k),
                                }
                            };
                            key.clear();
                            for k in keep {
                                let v = get(k);
                                key.push_str(itoa::Buffer::new().format(v.len()));
                                key.push(':');
                                key.push_str(v);
                            }
                            match projected.get(key.as_str()) {
                                Some(l) => l.clone(),
                                None => {
                                    let l: vigil_promql::Labels = keep
                                        .iter()
                                        .map(|k| (k.clone(), get(k).to_string()))
                                        .filter(|(_, v)| !v.is_empty())
                                        .collect();
                                    let l = Arc::new(l);
                                    projected.insert(key.clone(), l.clone());
                                    l
                                }
                            }
                        }
                    };
                    out.push(Selected { labels, samples });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Batch, LabeledMetric, MetricSet, MetricValue};
    use vigil_promql::MatchOp;

    fn m(op: MatchOp, n: &str, v: &str) -> Matcher {
        Matcher::new(op, n, v).unwrap()
    }

    /// One plain entity and one whose Heapster label names are not Prometheus names (mapped
    /// on selection), each with an unlabeled and a labeled metric.
    fn store() -> Store {
        let store = Store::new(60_000, 1000);
        let mut sets = std::collections::BTreeMap::new();
        for (key, extra) in [("pod:a", ("team", "x")), ("pod:b", ("app.kubernetes.io/name", "y"))] {
            let mut s = MetricSet::default();
            let l = Arc::make_mut(&mut s.labels);
            l.insert("type".into(), "pod".into());
            l.insert("pod_name".into(), key[4..].to_string());
            l.insert("labels".into(), String::new());
            l.insert(extra.0.into(), extra.1.into());
            s.values.insert("cpu/usage_rate", MetricValue::Int(5));
            s.labeled.push(LabeledMetric {
                name: "filesystem/usage",
                labels: crate::batch::resource_labels("/"),
                value: MetricValue::Int(7),
            });
            sets.insert(key.to_string(), s);
        }
        let batch = Batch { timestamp: chrono::DateTime::from_timestamp_millis(1000).unwrap(), sets };
        store.ingest(&batch).unwrap();
        store
    }

    /// The index holds an entity's pairs, not a series': a pair from one series' own labels
    /// must not let the entity's other series match.
    #[test]
    fn a_pair_of_one_series_own_labels_does_not_select_the_others() {
        let store = Store::new(60_000, 1000);
        let mut s = MetricSet::default();
        let l = Arc::make_mut(&mut s.labels);
        l.insert("type".into(), "node".into());
        l.insert("resource_id".into(), "set".into());
        s.values.insert("cpu/usage_rate", MetricValue::Int(5));
        s.labeled.push(LabeledMetric {
            name: "filesystem/usage",
            labels: crate::batch::resource_labels("/"),
            value: MetricValue::Int(7),
        });
        let sets = [("node:a".to_string(), s)].into_iter().collect();
        let batch = Batch { timestamp: chrono::DateTime::from_timestamp_millis(1000).unwrap(), sets };
        store.ingest(&batch).unwrap();
        let select = |ms: &[Matcher]| {
            let got = store.select_series(ms, Some((0, 2000)), |_| Ok::<(), ()>(())).unwrap();
            let mut names: Vec<String> = got.iter().map(|s| s.labels["__name__"].clone()).collect();
            names.sort();
            names
        };
        assert_eq!(select(&[m(MatchOp::Equal, "resource_id", "/")]), ["filesystem_usage"]);
        assert_eq!(select(&[m(MatchOp::Equal, "resource_id", "set")]), ["cpu_usage_rate"]);
        assert!(select(&[
            m(MatchOp::Equal, "__name__", "cpu_usage_rate"),
            m(MatchOp::Regex, "resource_id", "/|x")
        ])
        .is_empty());
        assert_eq!(
            select(&[m(MatchOp::Equal, "type", "node"), m(MatchOp::Regex, "resource_id", ".+")]),
            ["cpu_usage_rate", "filesystem_usage"]
        );
    }

    fn labels(s: &Selected) -> Vec<(String, String)> {
        s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    #[test]
    fn mapped_and_plain_entities_select_alike() {
        let store = store();
        let none = |_| Ok::<(), ()>(());
        let got = store
            .select_series(&[m(MatchOp::Equal, "app_kubernetes_io_name", "y")], Some((0, 2000)), none)
            .unwrap();
        assert_eq!(got.len(), 2, "both series of the mapped entity: {got:?}");
        let mut names: Vec<String> = got.iter().map(|s| s.labels["__name__"].clone()).collect();
        names.sort();
        assert_eq!(names, ["cpu_usage_rate", "filesystem_usage"]);
        let fs = got.iter().find(|s| s.labels["__name__"] == "filesystem_usage").unwrap();
        assert_eq!(
            labels(fs),
            [
                ("__name__", "filesystem_usage"),
                ("app_kubernetes_io_name", "y"),
                ("pod_name", "b"),
                ("resource_id", "/"),
                ("type", "pod"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        // The Heapster spelling is no Prometheus label; an empty value is no label.
        let got = store
            .select_series(&[m(MatchOp::Equal, "app.kubernetes.io/name", "y")], Some((0, 2000)), none)
            .unwrap();
        assert!(got.is_empty());
        let got = store
            .select_series(
                &[m(MatchOp::Equal, "__name__", "cpu_usage_rate"), m(MatchOp::Equal, "labels", "")],
                Some((0, 2000)),
                none,
            )
            .unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|s| !s.labels.contains_key("labels")));
        // Projections read plain and mapped labels, and own labels over the set's.
        let hints = Hints {
            last_only: true,
            labels: Some(vec!["app_kubernetes_io_name".into(), "team".into(), "resource_id".into()]),
        };
        let got = store
            .select_hinted(&[m(MatchOp::Regex, "type", "pod")], Some((0, 2000)), &hints, none)
            .unwrap();
        let mut seen: Vec<Vec<(String, String)>> = got.iter().map(labels).collect();
        seen.sort();
        let want: Vec<Vec<(String, String)>> = vec![
            vec![("app_kubernetes_io_name", "y")],
            vec![("app_kubernetes_io_name", "y"), ("resource_id", "/")],
            vec![("resource_id", "/"), ("team", "x")],
            vec![("team", "x")],
        ]
        .into_iter()
        .map(|v| v.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        .collect();
        assert_eq!(seen, want);
        // A matcher that matches the empty string also selects series without the label.
        let got = store
            .select_series(
                &[m(MatchOp::Equal, "__name__", "cpu_usage_rate"), m(MatchOp::NotEqual, "team", "x")],
                Some((0, 2000)),
                none,
            )
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].labels["pod_name"], "b");
    }
}
