//! Aggregation operators (`sum`, `avg`, …, `topk`, `quantile`, `count_values`, `limitk`).


use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::Arc;

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier, VectorSelector};
use rustc_hash::{FxHashMap, FxHasher};

use crate::eval::{Elem, Evaluator, Val, NAME};
use crate::storage::Labels;
use crate::Error;

/// Neumaier's compensated sum step, as Prometheus's `kahanSumInc`.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// Running mean that falls back to an incremental mean when the plain sum overflows
/// (Prometheus's `avg` and `avg_over_time`).
#[derive(Default, Clone)]
pub(crate) struct Mean {
    sum: f64,
    c: f64,
    mean: f64,
    count: f64,
    incremental: bool,
}

impl Mean {
    pub fn add(&mut self, f: f64) {
        self.count += 1.0;
        if self.count == 1.0 {
            self.sum = f;
            return;
        }
        if !self.incremental {
            let (s, c) = kahan_inc(f, self.sum, self.c);
            if !s.is_infinite() {
                self.sum = s;
                self.c = c;
                return;
            }
            self.incremental = true;
            self.mean = self.sum / (self.count - 1.0);
            self.c /= self.count - 1.0;
        }
        if self.mean.is_infinite() {
            if f.is_infinite() && (self.mean > 0.0) == (f > 0.0) {
                return;
            }
            if !f.is_infinite() && !f.is_nan() {
                return;
            }
        }
        let current = self.mean + self.c;
        let (m, c) = kahan_inc(f / self.count - current / self.count, self.mean, self.c);
        self.mean = m;
        self.c = c;
    }

    pub fn value(&self) -> f64 {
        if self.incremental {
            self.mean + self.c
        } else {
            (self.sum + self.c) / self.count
        }
    }
}

/// Prometheus's `quantile` over values (sorted here; NaN sorts first).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap(),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`.
pub(crate) fn format_go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{f}")
    }
}

/// Whether `name` is a valid label name (UTF-8 names are allowed, as in Prometheus 3).
pub(crate) fn valid_label_name(name: &str) -> bool {
    !name.is_empty()
}

#[derive(Clone)]
struct Group {
    labels: Arc<Labels>,
    value: f64,
    c: f64,
    count: f64,
    mean: Mean,
    /// Welford's mean for stddev/stdvar.
    wmean: f64,
    values: Vec<f64>,
    elems: Vec<Elem>,
    drop_name: bool,
}

/// Grouping helper: the labels of a group and a hash signature of them.
pub(crate) struct Grouping<'a> {
    pub without: bool,
    pub names: Vec<&'a str>,
}

impl<'a> Grouping<'a> {
    pub fn new(m: &'a Option<LabelModifier>) -> Grouping<'a> {
        match m {
            None => Grouping { without: false, names: Vec::new() },
            Some(LabelModifier::Include(l)) => Grouping {
                without: false,
                names: l.labels.iter().map(String::as_str).collect(),
            },
            Some(LabelModifier::Exclude(l)) => Grouping {
                without: true,
                names: l.labels.iter().map(String::as_str).collect(),
            },
        }
    }

    fn keeps(&self, name: &str) -> bool {
        if self.without {
            name != NAME && !self.names.contains(&name)
        } else {
            self.names.contains(&name)
        }
    }

    /// Whether results keep `__name__` (then a member's pending name removal carries over).
    pub fn keeps_name(&self) -> bool {
        !self.without && self.names.contains(&NAME)
    }

    pub fn signature(&self, l: &Labels) -> u64 {
        let mut h = FxHasher::default();
        for (k, v) in l {
            if self.keeps(k) {
                k.hash(&mut h);
                v.hash(&mut h);
            }
        }
        h.finish()
    }

    pub fn labels(&self, l: &Labels) -> Labels {
        l.iter()
            .filter(|(k, _)| self.keeps(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The aggregations that reduce each group to one number as it streams by.
#[derive(Clone, Copy, PartialEq)]
enum Simple {
    Sum,
    Avg,
    Count,
    Min,
    Max,
    Group,
}

impl Simple {
    fn of(op: &str) -> Option<Simple> {
        Some(match op {
            "sum" => Simple::Sum,
            "avg" => Simple::Avg,
            "count" => Simple::Count,
            "min" => Simple::Min,
            "max" => Simple::Max,
            "group" => Simple::Group,
            _ => return None,
        })
    }
}

/// Groups of `op by (…) (selector)`: the group of each loaded series, and each group's labels.
pub(crate) struct SelectorGroups {
    of: Vec<u32>,
    labels: Vec<Arc<Labels>>,
}

/// A range query's results of one simple aggregation over a selector, every step at once:
/// each step's output and how many samples it read.
pub(crate) struct StepResults {
    out: Vec<Vec<Elem>>,
    samples: Vec<usize>,
}

/// Most (step, group) accumulators a range query's aggregation computes at once (~80 bytes
/// each); beyond it, steps are computed one at a time.
const MAX_STEP_CELLS: usize = 1 << 18;

/// One group's running value.
#[derive(Clone, Default)]
struct Acc {
    seen: bool,
    value: f64,
    c: f64,
    count: f64,
    mean: Mean,
}

/// Adds `f` to group `gi` of one step (`acc`, the order groups were first seen in `order`).
/// The same order of groups and of additions as the general path, so the same results.
fn fold(acc: &mut [Acc], order: &mut Vec<usize>, kind: Simple, gi: usize, f: f64) {
    let g = &mut acc[gi];
    if !g.seen {
        g.seen = true;
        order.push(gi);
        g.value = if kind == Simple::Group { 1.0 } else { f };
        g.count = 1.0;
        g.mean.add(f);
        return;
    }
    g.count += 1.0;
    match kind {
        Simple::Sum => {
            let (s, c) = kahan_inc(f, g.value, g.c);
            g.value = s;
            g.c = c;
        }
        Simple::Avg => g.mean.add(f),
        Simple::Max => {
            if g.value < f || g.value.is_nan() {
                g.value = f
            }
        }
        Simple::Min => {
            if g.value > f || g.value.is_nan() {
                g.value = f
            }
        }
        Simple::Count | Simple::Group => {}
    }
}

/// One step's output: its groups in the order they were first seen.
fn finish(acc: &[Acc], order: Vec<usize>, kind: Simple, groups: &SelectorGroups) -> Vec<Elem> {
    order
        .into_iter()
        .map(|gi| {
            let g = &acc[gi];
            let value = match kind {
                Simple::Sum => g.value + g.c,
                Simple::Avg => g.mean.value(),
                Simple::Count => g.count,
                Simple::Min | Simple::Max | Simple::Group => g.value,
            };
            Elem { labels: groups.labels[gi].clone(), value, drop_name: false }
        })
        .collect()
}

/// The groups of `op by (…) (selector)`, assigned once per query.
fn selector_groups(ev: &Evaluator, a: &AggregateExpr, vs: &VectorSelector) -> Rc<SelectorGroups> {
    let node = a as *const AggregateExpr as usize;
    if let Some(g) = ev.group_cache.borrow().get(&node) {
        return g.clone();
    }
    let grouping = Grouping::new(&a.modifier);
    let mut index: FxHashMap<u64, u32> = FxHashMap::default();
    let mut g = SelectorGroups { of: Vec::new(), labels: Vec::new() };
    for l in ev.selector_labels(vs) {
        let sig = ev.signature(node, l, |l| grouping.signature(l));
        let id = match index.get(&sig) {
            Some(&id) => id,
            None => {
                g.labels.push(Arc::new(grouping.labels(l)));
                let id = (g.labels.len() - 1) as u32;
                index.insert(sig, id);
                id
            }
        };
        g.of.push(id);
    }
    let g = Rc::new(g);
    ev.group_cache.borrow_mut().insert(node, g.clone());
    g
}

/// Every step of the range query being evaluated, series by series (see
/// [`Evaluator::each_step`]); `None` when that would hold too many accumulators.
fn all_steps(
    ev: &Evaluator,
    a: &AggregateExpr,
    kind: Simple,
    vs: &VectorSelector,
    groups: &SelectorGroups,
) -> Result<Option<Rc<StepResults>>, Error> {
    let node = a as *const AggregateExpr as usize;
    if let Some(r) = ev.step_cache.borrow().get(&node) {
        return Ok(r.clone());
    }
    let steps = ((ev.end - ev.start) / ev.step + 1) as usize;
    let n = groups.labels.len().max(1);
    let results = if steps.saturating_mul(n) > MAX_STEP_CELLS {
        None
    } else {
        let mut acc = vec![Acc::default(); steps * n];
        let mut orders = vec![Vec::new(); steps];
        let mut samples = vec![0; steps];
        ev.each_step(vs, (ev.start, ev.step), &mut samples, |i, k, f| {
            let gi = groups.of[i] as usize;
            fold(&mut acc[k * n..(k + 1) * n], &mut orders[k], kind, gi, f);
        })?;
        let out = orders
            .into_iter()
            .enumerate()
            .map(|(k, order)| finish(&acc[k * n..(k + 1) * n], order, kind, groups))
            .collect();
        Some(Rc::new(StepResults { out, samples }))
    };
    ev.step_cache.borrow_mut().insert(node, results.clone());
    Ok(results)
}

/// A simple aggregation right over a selector: groups are assigned once per query, and samples
/// are folded straight into them, without building the instant vector. In a range query, every
/// step is computed at the first one (the selector's series walked once each) and handed out
/// step by step; elsewhere (instant queries, subqueries' own steps) one step at a time.
fn over_selector<'s>(
    ev: &'s Evaluator,
    a: &AggregateExpr,
    kind: Simple,
    vs: &VectorSelector,
    t: i64,
) -> Result<Val<'s>, Error> {
    let groups = selector_groups(ev, a, vs);
    let on_grid = ev.step > 0 && t >= ev.start && t <= ev.end && (t - ev.start) % ev.step == 0;
    if on_grid {
        if let Some(r) = all_steps(ev, a, kind, vs, &groups)? {
            ev.check_deadline()?;
            let k = ((t - ev.start) / ev.step) as usize;
            ev.hold(r.samples[k])?;
            return Ok(Val::Vector(r.out[k].clone()));
        }
    }
    let mut acc = vec![Acc::default(); groups.labels.len()];
    let mut order = Vec::new();
    ev.each_instant(vs, t, |i, f| fold(&mut acc, &mut order, kind, groups.of[i] as usize, f))?;
    Ok(Val::Vector(finish(&acc, order, kind, &groups)))
}

pub(crate) fn eval<'s>(ev: &'s Evaluator, a: &AggregateExpr, t: i64) -> Result<Val<'s>, Error> {
    let op = a.op.to_string().to_lowercase();
    if let (None, Some(kind)) = (&a.param, Simple::of(&op)) {
        let mut inner: &Expr = &a.expr;
        while let Expr::Paren(p) = inner {
            inner = &p.expr;
        }
        if let Expr::VectorSelector(vs) = inner {
            return over_selector(ev, a, kind, vs, t);
        }
    }
    let param = match &a.param {
        Some(p) => Some(ev.eval(p, t)?),
        None => None,
    };
    let input = match ev.eval(&a.expr, t)? {
        Val::Vector(v) => v,
        other => {
            return Err(Error::Execution(format!(
                "expected type instant vector in aggregation expression, got {}",
                other.type_name()
            )))
        }
    };
    let scalar_param = |name: &str| -> Result<f64, Error> {
        match &param {
            Some(Val::Scalar(v)) => Ok(*v),
            _ => Err(Error::Execution(format!("{name}: expected a scalar parameter"))),
        }
    };
    let grouping = Grouping::new(&a.modifier);
    let node = a as *const AggregateExpr as usize;
    let keep_name = grouping.keeps_name();

    let count_label = if op == "count_values" {
        let l = match &param {
            Some(Val::Str(s)) => s.clone(),
            _ => return Err(Error::Execution("count_values: expected a string parameter".into())),
        };
        if !valid_label_name(&l) || ev.invalid_utf8.contains(&l) {
            return Err(Error::Execution(format!("invalid label name {l:?}")));
        }
        Some(l)
    } else {
        None
    };

    let k_param = match op.as_str() {
        "topk" | "bottomk" | "limitk" => {
            let k = scalar_param(&op)?;
            if k.is_nan() {
                return Err(Error::Execution("Parameter value is NaN".to_string()));
            }
            if k >= 9.223372036854776e18 || k < -9.223372036854776e18 {
                return Err(Error::Execution(format!("Scalar value {k} overflows int64")));
            }
            Some(k as i64)
        }
        _ => None,
    };
    let ratio = if op == "limit_ratio" {
        let r = scalar_param(&op)?;
        if r.is_nan() {
            return Err(Error::Execution("Ratio value is NaN".to_string()));
        }
        if !(-1.0..=1.0).contains(&r) {
            ev.warn(format!("PromQL warning: ratio value should be between -1 and 1, got {r}, capping to {}", r.clamp(-1.0, 1.0)));
        }
        Some(r.clamp(-1.0, 1.0))
    } else {
        None
    };
    let q_param = if op == "quantile" {
        let q = scalar_param(&op)?;
        if q.is_nan() || !(0.0..=1.0).contains(&q) {
            ev.warn(format!("PromQL warning: quantile value should be between 0 and 1, got {q}"));
        }
        Some(q)
    } else {
        None
    };

    let mut groups: Vec<Group> = Vec::new();
    let mut index: FxHashMap<u64, usize> = FxHashMap::default();
    for e in input {
        let sig = ev.signature(node, &e.labels, |l| grouping.signature(l));
        let (sig, value_label) = match &count_label {
            Some(_) => {
                let s = format_go_float(e.value);
                let mut h = FxHasher::default();
                sig.hash(&mut h);
                s.hash(&mut h);
                (h.finish(), Some(s))
            }
            None => (sig, None),
        };
        let f = e.value;
        let gi = match index.get(&sig) {
            Some(&gi) => gi,
            None => {
                let mut labels = grouping.labels(&e.labels);
                if let (Some(l), Some(v)) = (&count_label, value_label) {
                    labels.insert(l.clone(), v);
                }
                index.insert(sig, groups.len());
                groups.push(Group {
                    labels: Arc::new(labels),
                    value: f,
                    c: 0.0,
                    count: 0.0,
                    mean: Mean::default(),
                    wmean: 0.0,
                    values: Vec::new(),
                    elems: Vec::new(),
                    drop_name: keep_name && e.drop_name,
                });
                let g = groups.last_mut().unwrap();
                g.count = 1.0;
                g.mean.add(f);
                match op.as_str() {
                    "group" => g.value = 1.0,
                    "stddev" | "stdvar" => {
                        g.wmean = f;
                        g.value = if f.is_nan() || f.is_infinite() { f64::NAN } else { 0.0 };
                    }
                    "quantile" => g.values.push(f),
                    "topk" | "bottomk" | "limitk" | "limit_ratio" => g.elems.push(e),
                    _ => {}
                }
                continue;
            }
        };
        let g = &mut groups[gi];
        g.count += 1.0;
        g.drop_name |= keep_name && e.drop_name;
        match op.as_str() {
            "sum" => {
                let (s, c) = kahan_inc(f, g.value, g.c);
                g.value = s;
                g.c = c;
            }
            "avg" => g.mean.add(f),
            "max" => {
                if g.value < f || g.value.is_nan() {
                    g.value = f
                }
            }
            "min" => {
                if g.value > f || g.value.is_nan() {
                    g.value = f
                }
            }
            "count" | "group" | "count_values" => {}
            "stddev" | "stdvar" => {
                if f.is_nan() || f.is_infinite() {
                    g.value = f64::NAN;
                } else if !g.value.is_nan() {
                    let delta = f - g.wmean;
                    g.wmean += delta / g.count;
                    g.value += delta * (f - g.wmean);
                }
            }
            "quantile" => g.values.push(f),
            "topk" | "bottomk" | "limitk" | "limit_ratio" => g.elems.push(e),
            other => {
                return Err(Error::Execution(format!("aggregation {other:?} is not supported")))
            }
        }
    }

    let mut out = Vec::new();
    for mut g in groups {
        let value = match op.as_str() {
            "sum" => g.value + g.c,
            "avg" => g.mean.value(),
            "count" | "count_values" => g.count,
            "max" | "min" | "group" => g.value,
            "stdvar" => g.value / g.count,
            "stddev" => (g.value / g.count).sqrt(),
            "quantile" => quantile(q_param.unwrap(), &mut g.values),
            "topk" | "bottomk" => {
                let k = k_param.unwrap();
                if k < 1 {
                    continue;
                }
                let top = op == "topk";
                g.elems.sort_by(|a, b| {
                    use std::cmp::Ordering::*;
                    match (a.value.is_nan(), b.value.is_nan()) {
                        (true, true) => Equal,
                        (true, false) => Greater,
                        (false, true) => Less,
                        _ if top => b.value.partial_cmp(&a.value).unwrap(),
                        _ => a.value.partial_cmp(&b.value).unwrap(),
                    }
                });
                g.elems.truncate(k as usize);
                out.extend(g.elems);
                continue;
            }
            "limitk" => {
                let k = k_param.unwrap();
                if k < 1 {
                    continue;
                }
                g.elems.truncate(k as usize);
                out.extend(g.elems);
                continue;
            }
            "limit_ratio" => {
                let r = ratio.unwrap();
                for e in g.elems {
                    let mut h = FxHasher::default();
                    e.labels.hash(&mut h);
                    let offset = h.finish() as f64 / u64::MAX as f64;
                    let keep = if r >= 0.0 { offset < r } else { offset >= 1.0 + r };
                    if keep {
                        out.push(e);
                    }
                }
                continue;
            }
            other => {
                return Err(Error::Execution(format!("aggregation {other:?} is not supported")))
            }
        };
        out.push(Elem { labels: g.labels, value, drop_name: g.drop_name });
    }
    Ok(Val::Vector(out))
}
