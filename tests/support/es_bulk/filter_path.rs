//! Elasticsearch's `?filter_path=` on the bulk answer.

use serde_json::{json, Map, Value};

/// Elasticsearch's `filter_path` response filtering: comma-separated dotted paths; `*` matches any one key and
/// `**` any number of keys (including none); a matching path keeps its whole subtree; objects and arrays left
/// empty by the filter are left out (an empty root stays `{}`). Array elements are matched by the array's path.
#[derive(Debug, Clone)]
pub struct FilterPath {
    paths: Vec<Vec<String>>,
}

/// How a filter treats one JSON path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The path and everything below it.
    All,
    /// Only parts of what is below it.
    Some,
    /// Nothing here.
    None,
}

impl FilterPath {
    pub fn parse(s: &str) -> FilterPath {
        FilterPath {
            paths: s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| p.split('.').map(String::from).collect())
                .collect(),
        }
    }

    /// Whether the value at `path` (object keys from the root) is kept.
    pub fn keep(&self, path: &[&str]) -> Keep {
        let mut best = Keep::None;
        for p in &self.paths {
            match Self::walk(p, path) {
                Keep::All => return Keep::All,
                Keep::Some => best = Keep::Some,
                Keep::None => {}
            }
        }
        best
    }

    fn walk(pattern: &[String], path: &[&str]) -> Keep {
        match (pattern.first(), path.first()) {
            (None, _) => Keep::All,
            (Some(p), _) if p == "**" => {
                // `**` matches no key here, or this key and possibly more.
                let zero = Self::walk(&pattern[1..], path);
                let more = if path.is_empty() {
                    Keep::Some
                } else {
                    Self::walk(pattern, &path[1..])
                };
                zero.max_of(more)
            }
            (Some(_), None) => Keep::Some,
            (Some(p), Some(k)) if p == "*" || p == k => Self::walk(&pattern[1..], &path[1..]),
            _ => Keep::None,
        }
    }

    /// Filters a JSON value (the root is kept, possibly as `{}`).
    pub fn apply(&self, v: &Value) -> Value {
        let mut path = Vec::new();
        self.filter(v, &mut path).unwrap_or_else(|| json!({}))
    }

    fn filter<'a>(&self, v: &'a Value, path: &mut Vec<&'a str>) -> Option<Value> {
        match self.keep(path) {
            Keep::All => return Some(v.clone()),
            Keep::None => return None,
            Keep::Some => {}
        }
        match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, child) in m {
                    path.push(k.as_str());
                    if let Some(c) = self.filter(child, path) {
                        out.insert(k.clone(), c);
                    }
                    path.pop();
                }
                (!out.is_empty()).then_some(Value::Object(out))
            }
            Value::Array(a) => {
                let out: Vec<Value> = a.iter().filter_map(|c| self.filter(c, path)).collect();
                (!out.is_empty()).then_some(Value::Array(out))
            }
            _ => None,
        }
    }
}

impl Keep {
    fn max_of(self, other: Keep) -> Keep {
        match (self, other) {
            (Keep::All, _) | (_, Keep::All) => Keep::All,
            (Keep::Some, _) | (_, Keep::Some) => Keep::Some,
            _ => Keep::None,
        }
    }
}

