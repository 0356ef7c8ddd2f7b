//! Function calls: instant-vector and scalar functions, label functions, time functions,
//! `absent`, sorting and classic-bucket histograms; range-vector functions are in `range`.

use std::collections::HashMap;
use std::sync::Arc;

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{Call, Expr};

use crate::eval::{Elem, Evaluator, Val, NAME};
use crate::storage::Labels;
use crate::{range, Error};

fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

pub(crate) fn call<'s>(ev: &'s Evaluator, c: &Call, t: i64) -> Result<Val<'s>, Error> {
    let name = c.func.name;
    let args: Vec<&Expr> = c.args.args.iter().map(|a| a.as_ref()).collect();
    if range::is_range_function(name) {
        return range::call(ev, name, &args, t);
    }
    let scalar_arg = |i: usize| -> Result<f64, Error> {
        match ev.eval(args[i], t)? {
            Val::Scalar(v) => Ok(v),
            other => Err(Error::Execution(format!(
                "expected type scalar in call to function {name:?}, got {}",
                other.type_name()
            ))),
        }
    };
    let string_arg = |i: usize| -> Result<String, Error> {
        match ev.eval(args[i], t)? {
            Val::Str(s) => Ok(s),
            other => Err(Error::Execution(format!(
                "expected type string in call to function {name:?}, got {}",
                other.type_name()
            ))),
        }
    };
    let vector_arg = |i: usize| -> Result<Vec<Elem>, Error> {
        match ev.eval(args[i], t)? {
            Val::Vector(v) => Ok(v),
            other => Err(Error::Execution(format!(
                "expected type instant vector in call to function {name:?}, got {}",
                other.type_name()
            ))),
        }
    };
    let map = |f: &dyn Fn(f64) -> f64| -> Result<Val<'s>, Error> {
        let mut v = vector_arg(0)?;
        for e in &mut v {
            e.value = f(e.value);
            e.drop_name = true;
        }
        Ok(Val::Vector(v))
    };
    match name {
        "abs" => map(&f64::abs),
        "ceil" => map(&f64::ceil),
        "floor" => map(&f64::floor),
        "exp" => map(&f64::exp),
        "sqrt" => map(&f64::sqrt),
        "ln" => map(&f64::ln),
        "log2" => map(&f64::log2),
        "log10" => map(&f64::log10),
        "sgn" => map(&|v| if v < 0.0 { -1.0 } else if v > 0.0 { 1.0 } else { v }),
        "sin" => map(&f64::sin),
        "cos" => map(&f64::cos),
        "tan" => map(&f64::tan),
        "asin" => map(&f64::asin),
        "acos" => map(&f64::acos),
        "atan" => map(&f64::atan),
        "sinh" => map(&f64::sinh),
        "cosh" => map(&f64::cosh),
        "tanh" => map(&f64::tanh),
        "asinh" => map(&f64::asinh),
        "acosh" => map(&f64::acosh),
        "atanh" => map(&f64::atanh),
        "deg" => map(&|v| v * 180.0 / std::f64::consts::PI),
        "rad" => map(&|v| v * std::f64::consts::PI / 180.0),
        "round" => {
            let to = if args.len() > 1 { scalar_arg(1)? } else { 1.0 };
            let inv = 1.0 / to;
            map(&|v| (v * inv + 0.5).floor() / inv)
        }
        "clamp" => {
            let (min, max) = (scalar_arg(1)?, scalar_arg(2)?);
            if max < min {
                return Ok(Val::Vector(Vec::new()));
            }
            map(&|v| v.max(min).min(max))
        }
        "clamp_min" => {
            let min = scalar_arg(1)?;
            map(&|v| v.max(min))
        }
        "clamp_max" => {
            let max = scalar_arg(1)?;
            map(&|v| v.min(max))
        }
        "pi" => Ok(Val::Scalar(std::f64::consts::PI)),
        "time" => Ok(Val::Scalar(t as f64 / 1000.0)),
        "start" => Ok(Val::Scalar(ev.start as f64 / 1000.0)),
        "end" => Ok(Val::Scalar(ev.end as f64 / 1000.0)),
        "range" => Ok(Val::Scalar((ev.end - ev.start) as f64 / 1000.0)),
        "step" => Ok(Val::Scalar(ev.step as f64 / 1000.0)),
        "vector" => Ok(Val::Vector(vec![Elem {
            labels: Arc::new(Labels::new()),
            value: scalar_arg(0)?,
            drop_name: false,
        }])),
        "scalar" => {
            let v = vector_arg(0)?;
            Ok(Val::Scalar(if v.len() == 1 { v[0].value } else { f64::NAN }))
        }
        "timestamp" => {
            if let Expr::VectorSelector(vs) = unwrap_parens(args[0]) {
                let mut v = ev.instant_selector(vs, t, true)?;
                for e in &mut v {
                    e.drop_name = true;
                }
                return Ok(Val::Vector(v));
            }
            map(&|_| t as f64 / 1000.0)
        }
        "day_of_month" | "day_of_week" | "day_of_year" | "days_in_month" | "hour" | "minute"
        | "month" | "year" => {
            let f = |v: f64| time_part(name, v);
            if args.is_empty() {
                return Ok(Val::Vector(vec![Elem {
                    labels: Arc::new(Labels::new()),
                    value: f(t as f64 / 1000.0),
                    drop_name: false,
                }]));
            }
            map(&f)
        }
        "absent" => {
            let v = vector_arg(0)?;
            if !v.is_empty() {
                return Ok(Val::Vector(Vec::new()));
            }
            Ok(Val::Vector(vec![Elem {
                labels: Arc::new(absent_labels(args[0])),
                value: 1.0,
                drop_name: false,
            }]))
        }
        "label_replace" => {
            let mut v = vector_arg(0)?;
            let dst = string_arg(1)?;
            let repl = string_arg(2)?;
            let src = string_arg(3)?;
            let re_src = string_arg(4)?;
            let re = regex::Regex::new(&format!("^(?s:{re_src})$")).map_err(|e| {
                Error::Execution(format!("invalid regular expression in label_replace(): {re_src}: {e}"))
            })?;
            if dst.is_empty() || ev.invalid_utf8.contains(&dst) {
                return Err(Error::Execution(format!(
                    "invalid destination label name in label_replace(): {dst}"
                )));
            }
            let node = c as *const Call as usize;
            for e in &mut v {
                e.labels = ev.pair_labels(node, &e.labels, &e.labels, || {
                    let mut l = (*e.labels).clone();
                    let sv = l.get(&src).map(String::as_str).unwrap_or("");
                    if let Some(caps) = re.captures(sv) {
                        let mut out = String::new();
                        caps.expand(&repl, &mut out);
                        if out.is_empty() {
                            l.remove(&dst);
                        } else {
                            l.insert(dst.clone(), out);
                        }
                    }
                    l
                });
                if dst == NAME {
                    e.drop_name = false;
                }
            }
            Ok(Val::Vector(v))
        }
        "label_join" => {
            let mut v = vector_arg(0)?;
            let dst = string_arg(1)?;
            let sep = string_arg(2)?;
            let mut srcs = Vec::new();
            for i in 3..args.len() {
                srcs.push(string_arg(i)?);
            }
            if dst.is_empty() || ev.invalid_utf8.contains(&dst) {
                return Err(Error::Execution(format!(
                    "invalid destination label name in label_join(): {dst}"
                )));
            }
            let node = c as *const Call as usize;
            for e in &mut v {
                e.labels = ev.pair_labels(node, &e.labels, &e.labels, || {
                    let mut l = (*e.labels).clone();
                    let joined = srcs
                        .iter()
                        .map(|s| l.get(s).map(String::as_str).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(&sep);
                    if joined.is_empty() {
                        l.remove(&dst);
                    } else {
                        l.insert(dst.clone(), joined);
                    }
                    l
                });
                if dst == NAME {
                    e.drop_name = false;
                }
            }
            Ok(Val::Vector(v))
        }
        "sort" | "sort_desc" => {
            let mut v = vector_arg(0)?;
            let desc = name == "sort_desc";
            v.sort_by(|a, b| {
                use std::cmp::Ordering::*;
                match (a.value.is_nan(), b.value.is_nan()) {
                    (true, true) => Equal,
                    (true, false) => Greater,
                    (false, true) => Less,
                    _ if desc => b.value.partial_cmp(&a.value).unwrap(),
                    _ => a.value.partial_cmp(&b.value).unwrap(),
                }
            });
            Ok(Val::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = vector_arg(0)?;
            let mut names = Vec::new();
            for i in 1..args.len() {
                names.push(string_arg(i)?);
            }
            let desc = name == "sort_by_label_desc";
            v.sort_by(|a, b| {
                for n in &names {
                    let av = a.labels.get(n).map(String::as_str).unwrap_or("");
                    let bv = b.labels.get(n).map(String::as_str).unwrap_or("");
                    let o = natural_cmp(av, bv);
                    if o != std::cmp::Ordering::Equal {
                        return if desc { o.reverse() } else { o };
                    }
                }
                let o = a.labels.cmp(&b.labels);
                if desc {
                    o.reverse()
                } else {
                    o
                }
            });
            Ok(Val::Vector(v))
        }
        "histogram_quantile" => {
            let q = scalar_arg(0)?;
            let v = vector_arg(1)?;
            Ok(Val::Vector(classic_histograms(ev, v, |b| bucket_quantile(q, b))))
        }
        "histogram_fraction" => {
            let lo = scalar_arg(0)?;
            let hi = scalar_arg(1)?;
            let v = vector_arg(2)?;
            Ok(Val::Vector(classic_histograms(ev, v, |b| bucket_fraction(lo, hi, b))))
        }
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" | "histogram_quantiles" => Err(Error::Execution(format!(
            "{name}() reads native histograms, which vigil does not store (classic histograms: histogram_quantile and histogram_fraction over _bucket series with an le label)"
        ))),
        other => Err(Error::Execution(format!(
            "function {other:?} is not supported (native histograms and some experimental functions are out of scope)"
        ))),
    }
}

/// Compares strings with runs of digits compared as numbers.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.cmp(b)
}

/// The labels `absent()` gives: the selector's equality matchers, except `__name__` and names
/// matched more than once.
pub(crate) fn absent_labels(arg: &Expr) -> Labels {
    let vs = match arg {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::new(),
    };
    let mut l = Labels::new();
    let mut has = std::collections::HashSet::new();
    let ms = if vs.matchers.or_matchers.is_empty() {
        vs.matchers.matchers.clone()
    } else {
        Vec::new()
    };
    for m in &ms {
        if m.name == NAME {
            continue;
        }
        if matches!(m.op, PMatchOp::Equal) && !has.contains(&m.name) {
            l.insert(m.name.clone(), m.value.clone());
            has.insert(m.name.clone());
        } else {
            l.remove(&m.name);
        }
    }
    l
}

/// Days since 1970-01-01 to (year, month, day) (proleptic Gregorian, H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// A calendar part of Unix time `v` (seconds) in UTC, as Prometheus computes it with Go's `time`.
pub(crate) fn time_part(part: &str, v: f64) -> f64 {
    if v.is_nan() || v.is_infinite() {
        return f64::NAN;
    }
    let secs = v as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    const DIM: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let leap = is_leap(y);
    match part {
        "year" => y as f64,
        "month" => m as f64,
        "day_of_month" => d as f64,
        "day_of_year" => {
            (CUM[m as usize - 1] + d + if leap && m > 2 { 1 } else { 0 }) as f64
        }
        "day_of_week" => (days + 4).rem_euclid(7) as f64,
        "days_in_month" => (DIM[m as usize - 1] + if leap && m == 2 { 1 } else { 0 }) as f64,
        "hour" => (sod / 3600) as f64,
        "minute" => (sod % 3600 / 60) as f64,
        _ => f64::NAN,
    }
}

/// One classic bucket: upper bound and cumulative count.
#[derive(Clone, Copy)]
pub(crate) struct Bucket {
    pub upper: f64,
    pub count: f64,
}

/// Groups `le` series by their other labels and applies `f` to each group's buckets.
fn classic_histograms(
    ev: &Evaluator,
    v: Vec<Elem>,
    f: impl Fn(&mut Vec<Bucket>) -> f64,
) -> Vec<Elem> {
    let mut groups: Vec<(Labels, Vec<Bucket>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for e in v {
        let Some(le) = e.labels.get("le") else {
            continue;
        };
        let upper = match parse_go_float(le) {
            Some(u) => u,
            None => {
                ev.warn(format!(
                    "PromQL warning: bucket label \"le\" is missing or has a malformed value of {le:?}"
                ));
                continue;
            }
        };
        // The name stays until the end (delayed removal), so that two histograms differing
        // only by name give "vector cannot contain metrics with the same labelset".
        let mut key = (*e.labels).clone();
        key.remove("le");
        let i = *index.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(Bucket { upper, count: e.value });
    }
    groups
        .into_iter()
        .map(|(labels, mut b)| Elem { labels: Arc::new(labels), value: f(&mut b), drop_name: true })
        .collect()
}

/// Parses a float as Go's `strconv.ParseFloat` (incl. `+Inf`, `-Inf`, `NaN`, hex).
pub(crate) fn parse_go_float(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if t != s {
        return None;
    }
    let cleaned = s.replace('_', "");
    cleaned.parse::<f64>().ok()
}

fn sort_buckets(b: &mut [Bucket]) {
    b.sort_by(|x, y| x.upper.partial_cmp(&y.upper).unwrap_or(std::cmp::Ordering::Equal));
}

fn coalesce(b: &mut Vec<Bucket>) {
    let mut out: Vec<Bucket> = Vec::with_capacity(b.len());
    for x in b.iter() {
        match out.last_mut() {
            Some(l) if l.upper == x.upper => l.count += x.count,
            _ => out.push(*x),
        }
    }
    *b = out;
}

/// Prometheus's `almost.Equal`.
pub(crate) fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < eps * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

fn ensure_monotonic(b: &mut [Bucket]) {
    let mut prev = b[0].count;
    for x in b.iter_mut().skip(1) {
        let curr = x.count;
        if curr == prev {
            continue;
        }
        if almost_equal(prev, curr, 1e-12) || curr < prev {
            x.count = prev;
            continue;
        }
        prev = curr;
    }
}

/// Prometheus's `BucketQuantile` over classic buckets, with its bucket fixes.
pub(crate) fn bucket_quantile(q: f64, b: &mut Vec<Bucket>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    sort_buckets(b);
    if b.last().map(|x| x.upper) != Some(f64::INFINITY) {
        return f64::NAN;
    }
    coalesce(b);
    ensure_monotonic(b);
    if b.len() < 2 {
        return f64::NAN;
    }
    let observations = b[b.len() - 1].count;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = b.len() - 1;
    let i = b[..n].partition_point(|x| x.count < rank);
    if i == n {
        return b[n - 1].upper;
    }
    if i == 0 && b[0].upper <= 0.0 {
        return b[0].upper;
    }
    let mut start = 0.0;
    let end = b[i].upper;
    let mut count = b[i].count;
    if i > 0 {
        start = b[i - 1].upper;
        count -= b[i - 1].count;
        rank -= b[i - 1].count;
    }
    start + (end - start) * (rank / count)
}

/// Prometheus's `BucketFraction`: the share of observations between `lower` and `upper`.
pub(crate) fn bucket_fraction(lower: f64, upper: f64, b: &mut Vec<Bucket>) -> f64 {
    sort_buckets(b);
    if b.last().map(|x| x.upper) != Some(f64::INFINITY) {
        return f64::NAN;
    }
    coalesce(b);
    ensure_monotonic(b);
    let count = b[b.len() - 1].count;
    if count == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let (mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0);
    let (mut lower_set, mut upper_set) = (false, false);
    for (i, x) in b.iter().enumerate() {
        // The first bucket starts at 0 when its upper bound is positive, else at -Inf.
        let lb = if i > 0 {
            b[i - 1].upper
        } else if x.upper > 0.0 {
            0.0
        } else {
            f64::NEG_INFINITY
        };
        let ub = x.upper;
        let interp = |v: f64| {
            // No interpolation in a bucket of infinite width: it counts as a whole.
            if lb == f64::NEG_INFINITY {
                return x.count;
            }
            if ub == f64::INFINITY {
                return rank;
            }
            rank + (x.count - rank) * (v - lb) / (ub - lb)
        };
        if !lower_set && lb >= lower {
            lower_rank = rank;
            lower_set = true;
        }
        if !upper_set && lb >= upper {
            upper_rank = rank;
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        if !lower_set && lb < lower && ub > lower {
            lower_rank = interp(lower);
            lower_set = true;
        }
        if !upper_set && lb < upper && ub > upper {
            upper_rank = interp(upper);
            upper_set = true;
        }
        if lower_set && upper_set {
            break;
        }
        rank = x.count;
    }
    if !lower_set || lower_rank > count {
        lower_rank = count;
    }
    if !upper_set || upper_rank > count {
        upper_rank = count;
    }
    (upper_rank - lower_rank) / count
}
