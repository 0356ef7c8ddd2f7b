//! Evaluation of a parsed expression at one instant, over selectors loaded once per query.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};

use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{AtModifier, Expr, LabelModifier, Offset, VectorSelector};

use crate::storage::{is_stale, Hints, Labels, MatchOp, Matcher, Storage};
use crate::{aggregate, binary, functions, Error};

pub(crate) const NAME: &str = "__name__";

/// One element of an instant vector. `drop_name` marks a result whose `__name__` goes at the end
/// of evaluation (Prometheus's delayed name removal).
#[derive(Debug, Clone)]
pub(crate) struct Elem {
    pub labels: Arc<Labels>,
    pub value: f64,
    pub drop_name: bool,
}

/// One series of a range vector: samples oldest first, borrowed from the loaded selector data
/// where possible.
#[derive(Debug, Clone)]
pub(crate) struct RSeries<'a> {
    pub labels: Arc<Labels>,
    pub samples: Cow<'a, [(i64, f64)]>,
    pub drop_name: bool,
}

/// A range vector with the window it was taken over (`(start, end]`, ms).
#[derive(Debug, Clone)]
pub(crate) struct Matrix<'a> {
    pub series: Vec<RSeries<'a>>,
    pub range_start: i64,
    pub range_end: i64,
}

#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    Scalar(f64),
    Str(String),
    Vector(Vec<Elem>),
    Matrix(Matrix<'a>),
}

impl Val<'_> {
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Scalar(_) => "scalar",
            Val::Str(_) => "string",
            Val::Vector(_) => "instant vector",
            Val::Matrix(_) => "range vector",
        }
    }
}

/// A selector's series, loaded once for the whole query.
struct Loaded {
    labels: Arc<Labels>,
    samples: Vec<(i64, f64)>,
}

/// State of one query's evaluation.
pub(crate) struct Evaluator {
    /// The query's start and end (`@ start()`, `@ end()`), ms.
    pub start: i64,
    pub end: i64,
    /// The query's step (0 for an instant query), ms.
    pub step: i64,
    pub lookback: i64,
    data: FxHashMap<usize, Vec<Loaded>>,
    deadline: Instant,
    max_samples: usize,
    /// Samples held by the step being evaluated.
    current_samples: Cell<usize>,
    pub samples_loaded: usize,
    pub warnings: RefCell<BTreeSet<String>>,
    /// String literals that are invalid UTF-8 in Prometheus (see `Query`).
    pub invalid_utf8: Vec<String>,
    /// Cache of grouping signatures per (node, label set), see [`Evaluator::signature`].
    sig_cache: RefCell<FxHashMap<(usize, usize), (Arc<Labels>, u64)>>,
    /// Cache of binary operators' result labels per (node, left, right) label sets.
    pair_cache: RefCell<PairCache>,
    /// Groups of each aggregation right over a selector, assigned once per query.
    pub group_cache: RefCell<FxHashMap<usize, std::rc::Rc<aggregate::SelectorGroups>>>,
    /// Every step's result of each aggregation right over a selector, in a range query (`None`:
    /// too many to hold, computed step by step).
    pub step_cache: RefCell<FxHashMap<usize, Option<std::rc::Rc<aggregate::StepResults>>>>,
    /// A subquery's inner results per (node, time): consecutive steps of a range query (or of
    /// an outer subquery) share most of their inner timestamps, which are aligned to the step.
    subquery_cache: RefCell<FxHashMap<(usize, i64), Step>>,
}

/// One cached evaluation of a subquery's expression.
#[derive(Clone)]
enum Step {
    Scalar(f64),
    Vector(std::rc::Rc<Vec<Elem>>),
}

type PairCache = FxHashMap<(usize, usize, usize), (Arc<Labels>, Arc<Labels>, Arc<Labels>)>;

pub(crate) fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
    }
}

/// Go's integer division (truncating toward zero), as Prometheus aligns subquery steps with it.
fn go_div(a: i64, b: i64) -> i64 {
    a / b
}

/// The timestamps a subquery evaluates its expression at, for an outer evaluation at `base`
/// (already moved by `@`): every multiple of `step` in `(base - offset - range, base - offset]`.
pub(crate) fn subquery_steps(base: i64, offset: i64, range: i64, step: i64) -> (i64, i64) {
    let lo = base - offset - range;
    let mut first = step * go_div(lo, step);
    if first <= lo {
        first += step;
    }
    (first, base - offset)
}

impl Evaluator {
    pub fn new(
        start: i64,
        end: i64,
        step: i64,
        lookback: i64,
        deadline: Instant,
        max_samples: usize,
    ) -> Evaluator {
        Evaluator {
            start,
            end,
            step,
            lookback,
            data: FxHashMap::default(),
            deadline,
            max_samples,
            current_samples: Cell::new(0),
            samples_loaded: 0,
            warnings: RefCell::new(BTreeSet::new()),
            invalid_utf8: Vec::new(),
            sig_cache: RefCell::new(FxHashMap::default()),
            pair_cache: RefCell::new(FxHashMap::default()),
            group_cache: RefCell::new(FxHashMap::default()),
            step_cache: RefCell::new(FxHashMap::default()),
            subquery_cache: RefCell::new(FxHashMap::default()),
        }
    }

    pub fn warn(&self, msg: String) {
        self.warnings.borrow_mut().insert(msg);
    }

    pub fn check_deadline(&self) -> Result<(), Error> {
        if Instant::now() > self.deadline {
            return Err(Error::Timeout);
        }
        Ok(())
    }

    /// Counts `n` more samples held by the current step; fails past the limit.
    pub fn hold(&self, n: usize) -> Result<(), Error> {
        let c = self.current_samples.get() + n;
        self.current_samples.set(c);
        if c > self.max_samples {
            return Err(Error::TooManySamples { limit: self.max_samples });
        }
        Ok(())
    }

    pub fn reset_step(&self) {
        self.current_samples.set(0);
    }

    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.start),
            Some(AtModifier::End) => Some(self.end),
            Some(AtModifier::At(t)) => Some(system_time_ms(t)),
        }
    }

    /// Loads every selector of `expr` once, over the union of the times the evaluation from
    /// `start` to `end` will look at.
    pub fn load(&mut self, storage: &dyn Storage, expr: &Expr) -> Result<(), Error> {
        let mut ranges: HashMap<usize, (i64, i64, &VectorSelector, bool)> = HashMap::new();
        self.collect_ranges(expr, self.start, self.end, &mut ranges);
        let mut projected = HashMap::new();
        projections(expr, &mut projected);
        for (key, (lo, hi, vs, is_range)) in ranges {
            self.check_deadline()?;
            let hints = Hints {
                // Read at one time only: every use spans exactly one lookback window.
                last_only: !is_range && hi - lo == self.lookback,
                labels: projected.remove(&key),
            };
            let loaded = select(storage, vs, lo, hi, is_range, &hints)?;
            let n: usize = loaded.iter().map(|l| l.samples.len()).sum();
            self.samples_loaded += n;
            self.data.insert(key, loaded);
        }
        Ok(())
    }

    fn collect_ranges<'e>(
        &self,
        expr: &'e Expr,
        start: i64,
        end: i64,
        out: &mut HashMap<usize, (i64, i64, &'e VectorSelector, bool)>,
    ) {
        let mut add = |vs: &'e VectorSelector, range: Option<i64>| {
            let (s, e) = match self.at_ms(&vs.at) {
                Some(a) => (a, a),
                None => (start, end),
            };
            let off = offset_ms(&vs.offset);
            let back = range.unwrap_or(self.lookback);
            let (lo, hi) = (s - off - back, e - off);
            let key = vs as *const VectorSelector as usize;
            let entry = out.entry(key).or_insert((lo, hi, vs, range.is_some()));
            entry.0 = entry.0.min(lo);
            entry.1 = entry.1.max(hi);
        };
        match expr {
            Expr::VectorSelector(vs) => add(vs, None),
            Expr::MatrixSelector(ms) => add(&ms.vs, Some(ms.range.as_millis() as i64)),
            Expr::Subquery(sq) => {
                let (s, e) = match self.at_ms(&sq.at) {
                    Some(a) => (a, a),
                    None => (start, end),
                };
                let off = offset_ms(&sq.offset);
                let range = sq.range.as_millis() as i64;
                self.collect_ranges(&sq.expr, s - off - range, e - off, out);
            }
            Expr::Aggregate(a) => {
                self.collect_ranges(&a.expr, start, end, out);
                if let Some(p) = &a.param {
                    self.collect_ranges(p, start, end, out);
                }
            }
            Expr::Unary(u) => self.collect_ranges(&u.expr, start, end, out),
            Expr::Binary(b) => {
                self.collect_ranges(&b.lhs, start, end, out);
                self.collect_ranges(&b.rhs, start, end, out);
            }
            Expr::Paren(p) => self.collect_ranges(&p.expr, start, end, out),
            Expr::Call(c) => {
                for a in &c.args.args {
                    self.collect_ranges(a, start, end, out);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn loaded(&self, vs: &VectorSelector) -> &[Loaded] {
        self.data
            .get(&(vs as *const VectorSelector as usize))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The time a selector or subquery reads at, for an evaluation at `t`.
    pub fn ref_time(&self, at: &Option<AtModifier>, offset: &Option<Offset>, t: i64) -> i64 {
        self.at_ms(at).unwrap_or(t) - offset_ms(offset)
    }

    /// Evaluates `expr` at `t`.
    pub fn eval<'s>(&'s self, expr: &Expr, t: i64) -> Result<Val<'s>, Error> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Val::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(Val::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => match self.eval(&u.expr, t)? {
                Val::Scalar(v) => Ok(Val::Scalar(-v)),
                Val::Vector(mut v) => {
                    for e in &mut v {
                        e.value = -e.value;
                        e.drop_name = true;
                    }
                    Ok(Val::Vector(v))
                }
                other => Err(Error::Execution(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(Val::Vector(self.instant_selector(vs, t, false)?)),
            Expr::MatrixSelector(ms) => {
                let range = ms.range.as_millis() as i64;
                let end = self.ref_time(&ms.vs.at, &ms.vs.offset, t);
                let start = end - range;
                let mut series = Vec::new();
                let mut held = 0;
                for l in self.loaded(&ms.vs) {
                    let lo = l.samples.partition_point(|s| s.0 <= start);
                    let hi = l.samples.partition_point(|s| s.0 <= end);
                    if lo < hi {
                        held += hi - lo;
                        series.push(RSeries {
                            labels: l.labels.clone(),
                            samples: Cow::Borrowed(&l.samples[lo..hi]),
                            drop_name: false,
                        });
                    }
                }
                self.hold(held)?;
                Ok(Val::Matrix(Matrix { series, range_start: start, range_end: end }))
            }
            Expr::Subquery(sq) => {
                let base = self.at_ms(&sq.at).unwrap_or(t);
                let off = offset_ms(&sq.offset);
                let range = sq.range.as_millis() as i64;
                let step = match sq.step {
                    Some(s) if !s.is_zero() => s.as_millis() as i64,
                    _ => 60_000,
                };
                let (first, last) = subquery_steps(base, off, range, step);
                let series = self.eval_steps(&sq.expr, first, last, step)?;
                let held = series.iter().map(|s| s.samples.len()).sum();
                self.hold(held)?;
                Ok(Val::Matrix(Matrix {
                    series,
                    range_start: base - off - range,
                    range_end: base - off,
                }))
            }
            Expr::Aggregate(a) => aggregate::eval(self, a, t),
            Expr::Binary(b) => binary::eval(self, b, t),
            Expr::Call(c) => functions::call(self, c, t),
            Expr::Extension(_) => {
                Err(Error::Execution("extension expressions are not supported".into()))
            }
        }
    }

    /// The instant vector a selector gives at `t`; with `timestamps`, each value is the
    /// timestamp (seconds) of the sample found instead of its value.
    pub fn instant_selector(
        &self,
        vs: &VectorSelector,
        t: i64,
        timestamps: bool,
    ) -> Result<Vec<Elem>, Error> {
        self.check_deadline()?;
        let r = self.ref_time(&vs.at, &vs.offset, t);
        let mut out = Vec::new();
        for l in self.loaded(vs) {
            let i = l.samples.partition_point(|s| s.0 <= r);
            if i == 0 {
                continue;
            }
            let (st, sv) = l.samples[i - 1];
            if st <= r - self.lookback || is_stale(sv) {
                continue;
            }
            out.push(Elem {
                labels: l.labels.clone(),
                value: if timestamps { st as f64 / 1000.0 } else { sv },
                drop_name: false,
            });
        }
        self.hold(out.len())?;
        Ok(out)
    }

    /// The labels of a selector's loaded series, in the order [`Evaluator::each_instant`] visits
    /// them.
    pub fn selector_labels(&self, vs: &VectorSelector) -> impl Iterator<Item = &Arc<Labels>> {
        self.loaded(vs).iter().map(|l| &l.labels)
    }

    /// [`Evaluator::instant_selector`] without building the vector: `f(i, value)` for each loaded
    /// series `i` (see [`Evaluator::selector_labels`]) with a sample at `t`, in the same order.
    pub fn each_instant(
        &self,
        vs: &VectorSelector,
        t: i64,
        mut f: impl FnMut(usize, f64),
    ) -> Result<(), Error> {
        self.check_deadline()?;
        let r = self.ref_time(&vs.at, &vs.offset, t);
        let mut n = 0;
        for (i, l) in self.loaded(vs).iter().enumerate() {
            let j = l.samples.partition_point(|s| s.0 <= r);
            if j == 0 {
                continue;
            }
            let (st, sv) = l.samples[j - 1];
            if st <= r - self.lookback || is_stale(sv) {
                continue;
            }
            f(i, sv);
            n += 1;
        }
        self.hold(n)
    }

    /// [`Evaluator::each_instant`] at every step `first, first + step, …` at once, series
    /// by series: `f(i, k, value)` for each loaded series `i` with a sample at step `k`. Each
    /// series' samples are walked once with a cursor (no search per step), and a series is
    /// visited while its samples are in cache. `per_step[k]` (one per step) counts the series
    /// with a sample at step `k`.
    pub fn each_step(
        &self,
        vs: &VectorSelector,
        (first, step): (i64, i64),
        per_step: &mut [usize],
        mut f: impl FnMut(usize, usize, f64),
    ) -> Result<(), Error> {
        let refs: Vec<i64> = (0..per_step.len() as i64)
            .map(|k| self.ref_time(&vs.at, &vs.offset, first + k * step))
            .collect();
        for (i, l) in self.loaded(vs).iter().enumerate() {
            if i % 4096 == 0 {
                self.check_deadline()?;
            }
            let s = &l.samples;
            // `s[..j]` are the samples at or before the step's reference time (which never
            // decreases from one step to the next).
            let mut j = 0;
            for (k, &r) in refs.iter().enumerate() {
                while j < s.len() && s[j].0 <= r {
                    j += 1;
                }
                if j == 0 {
                    continue;
                }
                let (st, sv) = s[j - 1];
                if st <= r - self.lookback || is_stale(sv) {
                    continue;
                }
                per_step[k] += 1;
                f(i, k, sv);
            }
        }
        Ok(())
    }

    /// Evaluates `expr` at `first, first + step, …, last` and gathers the results by series.
    pub fn eval_steps<'s>(
        &'s self,
        expr: &Expr,
        first: i64,
        last: i64,
        step: i64,
    ) -> Result<Vec<RSeries<'s>>, Error> {
        let mut out = SeriesCollector::default();
        let node = expr as *const Expr as usize;
        let empty = Arc::new(Labels::new());
        let mut ts = first;
        while ts <= last {
            self.check_deadline()?;
            let cached = self.subquery_cache.borrow().get(&(node, ts)).cloned();
            let res = match cached {
                Some(s) => s,
                None => {
                    let s = match self.eval(expr, ts)? {
                        Val::Scalar(v) => Step::Scalar(v),
                        Val::Vector(v) => Step::Vector(std::rc::Rc::new(v)),
                        other => {
                            return Err(Error::Execution(format!(
                                "subquery is only allowed on instant vector, got {} instead",
                                other.type_name()
                            )))
                        }
                    };
                    self.subquery_cache.borrow_mut().insert((node, ts), s.clone());
                    s
                }
            };
            match res {
                Step::Scalar(v) => {
                    out.push(&empty, false, ts, v);
                }
                Step::Vector(v) => {
                    for e in v.iter() {
                        out.push(&e.labels, e.drop_name, ts, e.value);
                    }
                }
            }
            ts += step;
        }
        Ok(out
            .series
            .into_iter()
            .map(|(labels, drop_name, samples)| RSeries {
                labels,
                samples: Cow::Owned(samples),
                drop_name,
            })
            .collect())
    }

    /// A signature of `labels` for grouping or matching, cached per (node, label set) so that a
    /// range query hashes each series once.
    pub fn signature(
        &self,
        node: usize,
        labels: &Arc<Labels>,
        f: impl FnOnce(&Labels) -> u64,
    ) -> u64 {
        let key = (node, Arc::as_ptr(labels) as usize);
        if let Some((_, sig)) = self.sig_cache.borrow().get(&key) {
            return *sig;
        }
        let sig = f(labels);
        self.sig_cache.borrow_mut().insert(key, (labels.clone(), sig));
        sig
    }
}

impl Evaluator {
    /// Labels derived from a pair of label sets, computed once per (node, pair) in a query.
    pub fn pair_labels(
        &self,
        node: usize,
        a: &Arc<Labels>,
        b: &Arc<Labels>,
        f: impl FnOnce() -> Labels,
    ) -> Arc<Labels> {
        let key = (node, Arc::as_ptr(a) as usize, Arc::as_ptr(b) as usize);
        if let Some((_, _, l)) = self.pair_cache.borrow().get(&key) {
            return l.clone();
        }
        let l = Arc::new(f());
        self.pair_cache.borrow_mut().insert(key, (a.clone(), b.clone(), l.clone()));
        l
    }
}

/// Gathers per-step results into series, keyed by label set (pointer first, then content).
#[derive(Default)]
pub(crate) struct SeriesCollector {
    by_ptr: FxHashMap<(usize, bool), usize>,
    by_labels: FxHashMap<(Arc<Labels>, bool), usize>,
    pub series: Vec<(Arc<Labels>, bool, Vec<(i64, f64)>)>,
}

impl SeriesCollector {
    /// Adds a point; false if the series already has a point at `t` (two series of one step
    /// with the same labels).
    pub fn push(&mut self, labels: &Arc<Labels>, drop_name: bool, t: i64, v: f64) -> bool {
        let pk = (Arc::as_ptr(labels) as usize, drop_name);
        let idx = match self.by_ptr.get(&pk) {
            Some(&i) => i,
            None => {
                let i = match self.by_labels.get(&(labels.clone(), drop_name)) {
                    Some(&i) => i,
                    None => {
                        let i = self.series.len();
                        self.series.push((labels.clone(), drop_name, Vec::new()));
                        self.by_labels.insert((labels.clone(), drop_name), i);
                        i
                    }
                };
                // The pointer is kept alive by `series` or `by_labels` only if it is the first
                // Arc seen for these labels; keep this one alive too.
                if Arc::ptr_eq(&self.series[i].0, labels) {
                    self.by_ptr.insert(pk, i);
                }
                i
            }
        };
        let samples = &mut self.series[idx].2;
        if samples.last().is_some_and(|s| s.0 == t) {
            return false;
        }
        samples.push((t, v));
        true
    }
}

/// Converts a parser matcher to a storage matcher.
pub(crate) fn to_matcher(m: &promql_parser::label::Matcher) -> Result<Matcher, Error> {
    let (op, value) = match &m.op {
        PMatchOp::Equal => (MatchOp::Equal, m.value.as_str()),
        PMatchOp::NotEqual => (MatchOp::NotEqual, m.value.as_str()),
        PMatchOp::Re(_) => (MatchOp::Regex, m.value.as_str()),
        PMatchOp::NotRe(_) => (MatchOp::NotRegex, m.value.as_str()),
    };
    Matcher::new(op, &m.name, value)
        .map_err(|e| Error::Execution(format!("invalid regular expression {:?}: {e}", m.value)))
}

/// The conjunctions of matchers a selector stands for (several with `or` inside braces).
pub(crate) fn selector_matchers(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, Error> {
    let mut base = Vec::new();
    if let Some(name) = &vs.name {
        base.push(Matcher::new(MatchOp::Equal, NAME, name).expect("equality matcher"));
    }
    let mut sets = Vec::new();
    if vs.matchers.or_matchers.is_empty() {
        let mut set = base.clone();
        for m in &vs.matchers.matchers {
            set.push(to_matcher(m)?);
        }
        sets.push(set);
    } else {
        for alt in &vs.matchers.or_matchers {
            let mut set = base.clone();
            for m in alt {
                set.push(to_matcher(m)?);
            }
            sets.push(set);
        }
    }
    Ok(sets)
}

fn select(
    storage: &dyn Storage,
    vs: &VectorSelector,
    lo: i64,
    hi: i64,
    is_range: bool,
    hints: &Hints,
) -> Result<Vec<Loaded>, Error> {
    let sets = selector_matchers(vs)?;
    let mut out = Vec::new();
    let mut seen: HashMap<Arc<Labels>, ()> = HashMap::new();
    let several = sets.len() > 1;
    // Several conjunctions are merged by full label set: projecting would merge distinct series.
    let no_projection = Hints { labels: None, ..hints.clone() };
    let hints = if several { &no_projection } else { hints };
    for set in sets {
        for s in storage.select(&set, lo, hi, hints)? {
            if several && seen.insert(s.labels.clone(), ()).is_some() {
                continue;
            }
            let mut samples = s.samples;
            if is_range {
                // Range selectors never return staleness markers.
                samples.retain(|x| !is_stale(x.1));
            }
            out.push(Loaded { labels: s.labels, samples });
        }
    }
    Ok(out)
}

/// The selectors whose labels are read only through an aggregation's `by (…)` right above them
/// (`sum by (a) (x)`, `count(x)`): selector key → the labels the aggregation groups by.
fn projections(expr: &Expr, out: &mut HashMap<usize, Vec<String>>) {
    use promql_parser::parser::token;
    fn inner(mut e: &Expr) -> &Expr {
        while let Expr::Paren(p) = e {
            e = &p.expr;
        }
        e
    }
    match expr {
        Expr::Aggregate(a) => {
            let groups_only = matches!(
                a.op.id(),
                token::T_SUM
                    | token::T_AVG
                    | token::T_MIN
                    | token::T_MAX
                    | token::T_COUNT
                    | token::T_GROUP
                    | token::T_STDDEV
                    | token::T_STDVAR
                    | token::T_QUANTILE
            );
            let by = match &a.modifier {
                None => Some(Vec::new()),
                Some(LabelModifier::Include(l)) => Some(l.labels.clone()),
                Some(LabelModifier::Exclude(_)) => None,
            };
            if let (true, Some(by), Expr::VectorSelector(vs)) = (groups_only, by, inner(&a.expr)) {
                out.insert(vs as *const VectorSelector as usize, by);
            }
            projections(&a.expr, out);
            if let Some(p) = &a.param {
                projections(p, out);
            }
        }
        Expr::Unary(u) => projections(&u.expr, out),
        Expr::Binary(b) => {
            projections(&b.lhs, out);
            projections(&b.rhs, out);
        }
        Expr::Paren(p) => projections(&p.expr, out),
        Expr::Subquery(s) => projections(&s.expr, out),
        Expr::Call(c) => {
            for a in &c.args.args {
                projections(a, out);
            }
        }
        Expr::MatrixSelector(_)
        | Expr::VectorSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => {}
    }
}

/// Labels without `__name__` (and the `__type__`/`__unit__` labels that describe it).
pub(crate) fn without_name(l: &Labels) -> Labels {
    let mut l = l.clone();
    l.remove(NAME);
    l.remove("__type__");
    l.remove("__unit__");
    l
}

/// Formats a label set as Prometheus does (`{a="b", c="d"}`).
pub(crate) fn format_labels(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(k);
        s.push('=');
        s.push_str(&format!("{v:?}"));
    }
    s.push('}');
    s
}
