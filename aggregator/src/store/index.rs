//! The store's label index (postings): Prometheus label name → value → the sorted ids of the
//! entities that hold a series carrying that pair, so a selector is answered by intersecting
//! short lists instead of scanning every series.
//!
//! The index is kept per entity, not per series: an entity's set labels are shared by all its
//! series (about 16 each), so one posting entry stands for them all. A list is thus a superset
//! of the matching series; the store checks each candidate series' full labels afterwards.

use rustc_hash::FxHashMap;
use vigil_promql::{MatchOp, Matcher};

/// One `(label name, value)` pair of a series, in Prometheus naming.
pub type Pair = (String, String);

/// What a shard's pass changed in the index, applied at the end of the pass.
#[derive(Default)]
pub struct Changes {
    /// Pairs to add for an entity (adding a pair already present is a no-op).
    pub adds: Vec<(u32, Vec<Pair>)>,
    /// Pairs no series of the entity carries any more.
    pub removes: Vec<(u32, Vec<Pair>)>,
    /// Ids of expired entities, free once their pairs are removed.
    pub freed: Vec<u32>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.removes.is_empty() && self.freed.is_empty()
    }
}

/// The index: postings plus the id → entity table.
#[derive(Default)]
pub struct Index {
    postings: FxHashMap<Box<str>, FxHashMap<Box<str>, Vec<u32>>>,
    /// id → (shard, position in the shard); `None` when the id is free.
    keys: Vec<Option<(u8, u32)>>,
    free: Vec<u32>,
}

/// The candidates of a selector: ids of entities that may hold matching series.
pub enum Candidates {
    /// No matcher narrows the selection: every entity.
    All,
    Ids(Vec<u32>),
}

impl Index {
    /// A new id for the entity at position `pos` of shard `shard`.
    pub fn alloc(&mut self, shard: usize, pos: u32) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.keys[id as usize] = Some((shard as u8, pos));
                id
            }
            None => {
                self.keys.push(Some((shard as u8, pos)));
                (self.keys.len() - 1) as u32
            }
        }
    }

    /// Applies a pass's changes: removals, then additions, then frees the expired ids.
    pub fn apply(&mut self, changes: Changes) {
        for (id, pairs) in changes.removes {
            for (name, value) in pairs {
                let Some(values) = self.postings.get_mut(name.as_str()) else {
                    continue;
                };
                if let Some(list) = values.get_mut(value.as_str()) {
                    if let Ok(pos) = list.binary_search(&id) {
                        list.remove(pos);
                    }
                    if list.is_empty() {
                        values.remove(value.as_str());
                    } else if list.capacity() > 2 * list.len() + 4 {
                        list.shrink_to_fit();
                    }
                }
                if values.is_empty() {
                    self.postings.remove(name.as_str());
                }
            }
        }
        for (id, pairs) in changes.adds {
            for (name, value) in pairs {
                let values = match self.postings.get_mut(name.as_str()) {
                    Some(v) => v,
                    None => self.postings.entry(name.into_boxed_str()).or_default(),
                };
                let list = match values.get_mut(value.as_str()) {
                    Some(l) => l,
                    None => values.entry(value.into_boxed_str()).or_default(),
                };
                match list.last() {
                    Some(&last) if last < id => list.push(id),
                    None => list.push(id),
                    _ => {
                        if let Err(pos) = list.binary_search(&id) {
                            list.insert(pos, id);
                        }
                    }
                }
            }
        }
        for id in changes.freed {
            self.keys[id as usize] = None;
            self.free.push(id);
        }
    }

    /// The shard and position in it of an id's entity.
    pub fn key(&self, id: u32) -> Option<(u8, u32)> {
        self.keys.get(id as usize).copied().flatten()
    }

    /// Every live id.
    pub fn all_ids(&self) -> Vec<u32> {
        self.keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.is_some())
            .map(|(i, _)| i as u32)
            .collect()
    }

    /// Ids of the entities that may hold a series matching every matcher. Matchers that match
    /// the empty string (`a!="x"`, `a=~".*"`) select series without the label too, so only the
    /// others narrow the lists; the caller checks every candidate series.
    pub fn candidates(&self, matchers: &[Matcher]) -> Candidates {
        let mut lists: Vec<std::borrow::Cow<'_, [u32]>> = Vec::new();
        for m in matchers.iter().filter(|m| !m.matches_empty()) {
            let Some(values) = self.postings.get(m.name.as_str()) else {
                return Candidates::Ids(Vec::new());
            };
            if m.op == MatchOp::Equal {
                match values.get(m.value.as_str()) {
                    Some(l) => lists.push(std::borrow::Cow::Borrowed(l)),
                    None => return Candidates::Ids(Vec::new()),
                }
                continue;
            }
            let matched: Vec<&Vec<u32>> = values
                .iter()
                .filter(|(v, _)| m.matches(v))
                .map(|(_, l)| l)
                .collect();
            match matched.len() {
                0 => return Candidates::Ids(Vec::new()),
                1 => lists.push(std::borrow::Cow::Borrowed(matched[0])),
                _ => {
                    let mut u: Vec<u32> = matched.into_iter().flatten().copied().collect();
                    u.sort_unstable();
                    u.dedup();
                    lists.push(std::borrow::Cow::Owned(u));
                }
            }
        }
        if lists.is_empty() {
            return Candidates::All;
        }
        lists.sort_by_key(|l| l.len());
        let mut out: Vec<u32> = lists[0].to_vec();
        for other in &lists[1..] {
            if out.is_empty() {
                break;
            }
            out.retain(|id| other.binary_search(id).is_ok());
        }
        Candidates::Ids(out)
    }

    /// Every label name in the index, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut out: Vec<String> = self.postings.keys().map(|k| k.to_string()).collect();
        out.sort();
        out
    }

    /// Every value of a label in the index, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .postings
            .get(name)
            .map(|v| v.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Heap bytes of the index, approximately (for the benchmarks and /metrics).
    pub fn heap_bytes(&self) -> usize {
        let mut total = self.keys.capacity() * std::mem::size_of::<Option<(u8, u32)>>()
            + self.free.capacity() * 4;
        for (name, values) in &self.postings {
            total += name.len() + values.capacity() * (16 + 24 + 1);
            for (v, l) in values {
                total += v.len() + l.capacity() * 4;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<Pair> {
        p.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn postings_intersect_and_shrink_on_removal() {
        let mut idx = Index::default();
        let a = idx.alloc(0, 0);
        let b = idx.alloc(1, 0);
        idx.apply(Changes {
            adds: vec![
                (a, pairs(&[("__name__", "x"), ("type", "pod")])),
                (b, pairs(&[("__name__", "x"), ("type", "node")])),
            ],
            ..Default::default()
        });
        let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
        let ids = |c: Candidates| match c {
            Candidates::Ids(v) => v,
            Candidates::All => panic!("all"),
        };
        assert_eq!(
            ids(idx.candidates(&[m(MatchOp::Equal, "__name__", "x"), m(MatchOp::Equal, "type", "pod")])),
            vec![a]
        );
        assert_eq!(
            ids(idx.candidates(&[m(MatchOp::Regex, "type", "pod|node")])),
            vec![a, b]
        );
        assert!(ids(idx.candidates(&[m(MatchOp::Equal, "nope", "1")])).is_empty());
        assert!(matches!(
            idx.candidates(&[m(MatchOp::NotEqual, "type", "pod")]),
            Candidates::All
        ));
        idx.apply(Changes {
            removes: vec![(b, pairs(&[("__name__", "x"), ("type", "node")]))],
            freed: vec![b],
            ..Default::default()
        });
        assert_eq!(idx.label_values("type"), vec!["pod"]);
        assert_eq!(idx.all_ids(), vec![a]);
        assert_eq!(idx.alloc(2, 5), b, "a freed id is reused");
        assert_eq!(idx.key(b), Some((2, 5)));
    }
}
