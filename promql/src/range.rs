//! Range-vector functions: `rate`/`increase`/`delta` with Prometheus's extrapolation,
//! `irate`/`idelta`, `deriv`/`predict_linear`, `changes`/`resets`, the `*_over_time` family,
//! `absent_over_time` and `double_exponential_smoothing`.

use std::sync::Arc;

use promql_parser::parser::Expr;

use crate::aggregate::{kahan_inc, quantile, Mean};
use crate::eval::{Elem, Evaluator, Matrix, Val, NAME};
use crate::functions::absent_labels;
use crate::Error;

pub(crate) fn is_range_function(name: &str) -> bool {
    matches!(
        name,
        "rate"
            | "increase"
            | "delta"
            | "irate"
            | "idelta"
            | "deriv"
            | "predict_linear"
            | "changes"
            | "resets"
            | "avg_over_time"
            | "sum_over_time"
            | "count_over_time"
            | "min_over_time"
            | "max_over_time"
            | "stddev_over_time"
            | "stdvar_over_time"
            | "last_over_time"
            | "first_over_time"
            | "present_over_time"
            | "quantile_over_time"
            | "mad_over_time"
            | "absent_over_time"
            | "double_exponential_smoothing"
            | "ts_of_min_over_time"
            | "ts_of_max_over_time"
            | "ts_of_first_over_time"
            | "ts_of_last_over_time"
    )
}

pub(crate) fn call<'s>(
    ev: &'s Evaluator,
    name: &str,
    args: &[&Expr],
    t: i64,
) -> Result<Val<'s>, Error> {
    // The matrix argument is the first one, except for quantile_over_time(φ, m).
    let mi = if name == "quantile_over_time" { 1 } else { 0 };
    let mut scalars = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i != mi {
            match ev.eval(a, t)? {
                Val::Scalar(v) => scalars.push(v),
                other => {
                    return Err(Error::Execution(format!(
                        "expected type scalar in call to function {name:?}, got {}",
                        other.type_name()
                    )))
                }
            }
        }
    }
    let m = match ev.eval(args[mi], t)? {
        Val::Matrix(m) => m,
        other => {
            return Err(Error::Execution(format!(
                "expected type range vector in call to function {name:?}, got {}",
                other.type_name()
            )))
        }
    };
    if name == "absent_over_time" {
        if !m.series.is_empty() {
            return Ok(Val::Vector(Vec::new()));
        }
        return Ok(Val::Vector(vec![Elem {
            labels: Arc::new(absent_labels(args[0])),
            value: 1.0,
            drop_name: false,
        }]));
    }
    match name {
        "rate" | "increase" => counter_info(ev, &m, args[0]),
        "quantile_over_time" => {
            let q = scalars[0];
            if q.is_nan() || !(0.0..=1.0).contains(&q) {
                ev.warn(format!("PromQL warning: quantile value should be between 0 and 1, got {q}"));
            }
        }
        "double_exponential_smoothing" => {
            let (sf, tf) = (scalars[0], scalars[1]);
            if sf <= 0.0 || sf >= 1.0 {
                return Err(Error::Execution(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                )));
            }
            if tf <= 0.0 || tf >= 1.0 {
                return Err(Error::Execution(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                )));
            }
        }
        _ => {}
    }
    let keep_name = matches!(name, "last_over_time" | "first_over_time");
    let mut out = Vec::with_capacity(m.series.len());
    for s in &m.series {
        let v = &s.samples[..];
        let value = match name {
            "rate" => extrapolated_rate(v, m.range_start, m.range_end, true, true),
            "increase" => extrapolated_rate(v, m.range_start, m.range_end, true, false),
            "delta" => extrapolated_rate(v, m.range_start, m.range_end, false, false),
            "irate" => instant_delta(v, true),
            "idelta" => instant_delta(v, false),
            "deriv" => {
                if v.len() < 2 {
                    None
                } else {
                    Some(linear_regression(v, v[0].0).0)
                }
            }
            "predict_linear" => {
                if v.len() < 2 {
                    None
                } else {
                    let (slope, intercept) = linear_regression(v, t);
                    Some(intercept + slope * scalars[0])
                }
            }
            "changes" => Some(
                v.windows(2)
                    .filter(|w| w[1].1 != w[0].1 && !(w[1].1.is_nan() && w[0].1.is_nan()))
                    .count() as f64,
            ),
            "resets" => Some(v.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64),
            "avg_over_time" => {
                let mut mean = Mean::default();
                for x in v {
                    mean.add(x.1);
                }
                Some(mean.value())
            }
            "sum_over_time" => {
                let (mut sum, mut c) = (0.0, 0.0);
                for x in v {
                    (sum, c) = kahan_inc(x.1, sum, c);
                }
                Some(if sum.is_infinite() { sum } else { sum + c })
            }
            "count_over_time" => Some(v.len() as f64),
            "min_over_time" => {
                let mut r = v[0].1;
                for x in v {
                    if x.1 < r || r.is_nan() {
                        r = x.1;
                    }
                }
                Some(r)
            }
            "max_over_time" => {
                let mut r = v[0].1;
                for x in v {
                    if x.1 > r || r.is_nan() {
                        r = x.1;
                    }
                }
                Some(r)
            }
            "stddev_over_time" => Some(variance(v).sqrt()),
            "stdvar_over_time" => Some(variance(v)),
            "last_over_time" => Some(v[v.len() - 1].1),
            "first_over_time" => Some(v[0].1),
            "present_over_time" => Some(1.0),
            "quantile_over_time" => {
                let mut vals: Vec<f64> = v.iter().map(|x| x.1).collect();
                Some(quantile(scalars[0], &mut vals))
            }
            "mad_over_time" => {
                let mut vals: Vec<f64> = v.iter().map(|x| x.1).collect();
                let median = quantile(0.5, &mut vals);
                let mut dev: Vec<f64> = vals.iter().map(|x| (x - median).abs()).collect();
                Some(quantile(0.5, &mut dev))
            }
            "double_exponential_smoothing" => smoothing(v, scalars[0], scalars[1]),
            "ts_of_first_over_time" => Some(v[0].0 as f64 / 1000.0),
            "ts_of_last_over_time" => Some(v[v.len() - 1].0 as f64 / 1000.0),
            "ts_of_min_over_time" | "ts_of_max_over_time" => {
                let max = name == "ts_of_max_over_time";
                let mut best = v[0];
                for x in v {
                    let better = if max { x.1 >= best.1 } else { x.1 <= best.1 };
                    if better || best.1.is_nan() {
                        best = *x;
                    }
                }
                Some(best.0 as f64 / 1000.0)
            }
            other => {
                return Err(Error::Execution(format!("function {other:?} is not supported")))
            }
        };
        if let Some(value) = value {
            out.push(Elem {
                labels: s.labels.clone(),
                value,
                drop_name: if keep_name { s.drop_name } else { true },
            });
        }
    }
    Ok(Val::Vector(out))
}

/// Prometheus's info annotation for `rate`/`increase` over a metric whose name does not say
/// it is a counter.
fn counter_info(ev: &Evaluator, m: &Matrix, arg: &Expr) {
    if !matches!(arg, Expr::MatrixSelector(_)) {
        return;
    }
    for s in &m.series {
        if let Some(n) = s.labels.get(NAME) {
            if !["_total", "_sum", "_count", "_bucket"].iter().any(|x| n.ends_with(x)) {
                ev.warn(format!(
                    "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {n:?}"
                ));
            }
        }
    }
}

/// `rate`, `increase` and `delta` over samples in `(range_start, range_end]`, extrapolated to
/// the window's edges as Prometheus does.
pub(crate) fn extrapolated_rate(
    v: &[(i64, f64)],
    range_start: i64,
    range_end: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let (first_t, first_v) = v[0];
    let (last_t, last_v) = v[v.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        let mut prev = first_v;
        for x in &v[1..] {
            if x.1 < prev {
                result += prev;
            }
            prev = x.1;
        }
    }
    let mut to_start = (first_t - range_start) as f64 / 1000.0;
    let mut to_end = (range_end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    let avg = sampled / (v.len() - 1) as f64;
    let threshold = avg * 1.1;
    if to_start >= threshold {
        to_start = avg / 2.0;
    }
    if is_counter {
        let mut to_zero = to_start;
        if result > 0.0 && first_v >= 0.0 {
            to_zero = sampled * (first_v / result);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= (range_end - range_start) as f64 / 1000.0;
    }
    Some(result * factor)
}

fn instant_delta(v: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let (lt, lv) = v[v.len() - 1];
    let (pt, pv) = v[v.len() - 2];
    let mut result = if is_rate && lv < pv { lv } else { lv - pv };
    let interval = lt - pt;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares slope and intercept (at `intercept_t`), with compensated sums.
pub(crate) fn linear_regression(v: &[(i64, f64)], intercept_t: i64) -> (f64, f64) {
    let (mut n, mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = v[0].1;
    let mut const_y = true;
    for (i, &(t, y)) in v.iter().enumerate() {
        if const_y && i > 0 && y != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_t) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(y, sy, cy);
        (sxy, cxy) = kahan_inc(x * y, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    sx += cx;
    sy += cy;
    sxy += cxy;
    sx2 += cx2;
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

fn variance(v: &[(i64, f64)]) -> f64 {
    let (mut count, mut mean, mut cmean, mut aux, mut caux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, f) in v {
        count += 1.0;
        let delta = f - (mean + cmean);
        (mean, cmean) = kahan_inc(delta / count, mean, cmean);
        (aux, caux) = kahan_inc(delta * (f - (mean + cmean)), aux, caux);
    }
    (aux + caux) / count
}

fn smoothing(v: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, v[0].1);
    let mut b = v[1].1 - v[0].1;
    for (i, x) in v.iter().enumerate().skip(1) {
        let scaled = sf * x.1;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        s0 = s1;
        s1 = scaled + y;
    }
    Some(s1)
}
