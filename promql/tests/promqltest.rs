//! Runs Prometheus's own engine tests (the `.test` files of `promql/promqltest/testdata`, kept
//! unchanged in `shared/fixtures/promqltest/`) against vigil's engine over the in-memory storage.
//! Native-histogram and experimental evals (as `evals.tsv` marks them) are counted as skipped.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use std::time::{SystemTime, UNIX_EPOCH};

use promql_parser::parser::{AtModifier, Expr};
use vigil_promql::testing::MemStorage;
use vigil_promql::{Engine, EngineOptions, Labels, Query, QueryResult, Sample, Value, STALE_NAN_BITS};

fn fixtures_dir() -> PathBuf {
    match std::env::var("VIGIL_SHARED_DIR") {
        Ok(d) if !d.is_empty() => PathBuf::from(d).join("fixtures/promqltest"),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/promqltest"),
    }
}

fn target_dir() -> PathBuf {
    match std::env::var("CARGO_TARGET_DIR") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// A Prometheus duration (`1h30m`, `10s`, `0`, `100ms`) in ms; a bare number is seconds.
fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return Ok((n * 1000.0).round() as i64);
    }
    let mut total = 0i64;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or(format!("bad duration {s:?}"))?;
        if digits == 0 {
            return Err(format!("bad duration {s:?}"));
        }
        let n: i64 = rest[..digits].parse().map_err(|_| format!("bad duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            u => return Err(format!("bad duration unit {u:?} in {s:?}")),
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// A float as Go's `strconv.ParseFloat` and the test parser's `parseNumber` read it.
fn parse_number(s: &str) -> Option<f64> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = match body.to_ascii_lowercase().as_str() {
        "inf" | "infinity" => f64::INFINITY,
        "nan" => f64::NAN,
        b if b.starts_with("0x") => i64::from_str_radix(&b[2..], 16).ok()? as f64,
        _ => body.parse::<f64>().ok()?,
    };
    Some(if neg { -v } else { v })
}

/// Splits `name{a="b", …} rest` into labels and the rest of the line.
fn parse_series(line: &str) -> Result<(Labels, &str), String> {
    let line = line.trim();
    let mut labels = Labels::new();
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace()).unwrap_or(line.len());
    if name_end > 0 {
        labels.insert("__name__".into(), line[..name_end].to_string());
    }
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let mut pending_name: Option<String> = None;
        let mut token = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' | '\'' | '`' => {
                    let quote = c;
                    let mut s = String::new();
                    loop {
                        let Some((_, c)) = chars.next() else {
                            return Err(format!("unterminated string in {line:?}"));
                        };
                        if c == quote {
                            break;
                        }
                        if c == '\\' && quote != '`' {
                            let Some((_, e)) = chars.next() else { break };
                            match e {
                                'n' => s.push('\n'),
                                't' => s.push('\t'),
                                '\\' => s.push('\\'),
                                '"' => s.push('"'),
                                '\'' => s.push('\''),
                                'x' => {
                                    let h: String = [chars.next().unwrap().1, chars.next().unwrap().1].iter().collect();
                                    s.push(u8::from_str_radix(&h, 16).map_err(|e| e.to_string())? as char);
                                }
                                other => {
                                    s.push('\\');
                                    s.push(other)
                                }
                            }
                        } else {
                            s.push(c);
                        }
                    }
                    match pending_name.take() {
                        Some(n) => {
                            labels.insert(n, s);
                        }
                        None => token = s,
                    }
                }
                '=' => {
                    pending_name = Some(std::mem::take(&mut token).trim().to_string());
                }
                ',' | '}' => {
                    let t = std::mem::take(&mut token);
                    if !t.trim().is_empty() {
                        // A quoted metric name alone: {"name", a="b"}.
                        labels.insert("__name__".into(), t);
                    }
                    if c == '}' {
                        end = Some(i);
                        break;
                    }
                }
                c if c.is_whitespace() => {}
                c => token.push(c),
            }
        }
        let end = end.ok_or(format!("unclosed brace in {line:?}"))?;
        rest = &inner[end + 1..];
    }
    labels.retain(|_, v| !v.is_empty());
    Ok((labels, rest.trim()))
}

/// One expanded value: a number, `None` for `_`.
type Point = Option<f64>;

/// Native-histogram values (`{{…}}`, `{{…}}x3`, `{{…}}+{{…}}x2`) replaced by `stale`, one per
/// sample they stand for. vigil stores floats only; in a series mixing floats and histograms, a
/// histogram sample hides the older floats from an instant selector exactly as a staleness
/// marker does, and float functions ignore both.
fn strip_histograms(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let mut j = i;
        // A histogram item may be `{{a}}+{{b}}xN`: consume whole `{{…}}` groups joined by +/-.
        loop {
            let end = rest[j..].find("}}").map(|e| j + e + 2).unwrap_or(rest.len());
            j = end;
            if rest[j..].starts_with("+{{") || rest[j..].starts_with("-{{") {
                j += 1;
                continue;
            }
            break;
        }
        let mut n = 1;
        if let Some(r) = rest[j..].strip_prefix('x') {
            let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
            n = digits.parse::<usize>().unwrap_or(0) + 1;
            j += 1 + digits.len();
        }
        for _ in 0..n {
            out.push_str(" stale ");
        }
        rest = &rest[j..];
    }
    out.push_str(rest);
    out
}

/// Expands series values (`1 2 _ 3+1x4 stale _x2 5x3`); native-histogram values are missing
/// points. `Err(())` when the series holds nothing but histograms: it is not loaded.
fn expand_values(s: &str) -> Result<Result<Vec<Point>, ()>, String> {
    let stripped = strip_histograms(s);
    let mut out = Vec::new();
    for tok in stripped.split_whitespace() {
        let (base, times) = match tok.rfind('x') {
            Some(i) if i > 0 && tok[i + 1..].chars().all(|c| c.is_ascii_digit()) && i + 1 < tok.len() => {
                (&tok[..i], Some(tok[i + 1..].parse::<usize>().map_err(|e| e.to_string())?))
            }
            _ => (tok, None),
        };
        let single = |b: &str| -> Result<Point, String> {
            match b {
                "_" => Ok(None),
                "stale" => Ok(Some(f64::from_bits(STALE_NAN_BITS))),
                _ => parse_number(b).map(Some).ok_or(format!("bad value {b:?}")),
            }
        };
        match times {
            None => out.push(single(base)?),
            Some(n) => {
                // `a+b` / `a-b`: the sign that is not at the start and not after an exponent.
                let bytes = base.as_bytes();
                let split = (1..bytes.len()).find(|&i| {
                    (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E')
                });
                match split {
                    Some(i) => {
                        let a = parse_number(&base[..i]).ok_or(format!("bad value {base:?}"))?;
                        let d = parse_number(&base[i..]).ok_or(format!("bad value {base:?}"))?;
                        let mut cur = a;
                        out.push(Some(cur));
                        for _ in 0..n {
                            cur += d;
                            out.push(Some(cur));
                        }
                    }
                    None => {
                        let v = single(base)?;
                        if v.is_none() {
                            // `_xN`: N missing samples.
                            out.extend(std::iter::repeat_n(None, n));
                        } else {
                            out.extend(std::iter::repeat_n(v, n + 1));
                        }
                    }
                }
            }
        }
    }
    if s.contains("{{") && out.iter().all(|p| p.is_none_or(|v| v.to_bits() == STALE_NAN_BITS)) {
        return Ok(Err(()));
    }
    Ok(Ok(out))
}

fn fmt_labels(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{k}={v:?}");
    }
    s.push('}');
    s
}

/// Prometheus's `almost.Equal` with StaleNaN only equal to StaleNaN.
fn equal(a: f64, b: f64) -> bool {
    let (sa, sb) = (a.to_bits() == STALE_NAN_BITS, b.to_bits() == STALE_NAN_BITS);
    if sa || sb {
        return sa && sb;
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < f64::MIN_POSITIVE {
        return diff < 1e-6 * f64::MIN_POSITIVE;
    }
    diff / abs_sum.min(f64::MAX) < 1e-6
}

enum Kind {
    Instant(i64),
    Range { start: i64, end: i64, step: i64 },
}

#[derive(Default)]
struct Expect {
    fail: Option<Option<(bool, String)>>,
    ordered: bool,
    string: Option<String>,
    scalar: Option<f64>,
    range_vector: Option<(i64, i64, i64)>,
    series: Vec<(Labels, Vec<Point>)>,
}

fn check(kind: &Kind, exp: &Expect, got: Result<vigil_promql::QueryResult, vigil_promql::Error>) -> Result<(), String> {
    if let Some(f) = &exp.fail {
        return match got {
            Ok(r) => Err(format!("expected failure, got {:?}", short(&r.value))),
            Err(e) => match f {
                None => Ok(()),
                Some((false, msg)) if e.to_string().trim() == msg.trim() => Ok(()),
                Some((true, re)) if regex::Regex::new(re).map(|r| r.is_match(&e.to_string())).unwrap_or(false) => Ok(()),
                Some((_, msg)) => Err(format!("expected error {msg:?}, got {:?}", e.to_string())),
            },
        };
    }
    let got = got.map_err(|e| format!("error: {e}"))?.value;
    if let Some(s) = &exp.string {
        return match &got {
            Value::String { value, .. } if value == s => Ok(()),
            other => Err(format!("expected string {s:?}, got {}", short(other))),
        };
    }
    if let Some(x) = exp.scalar {
        return match &got {
            Value::Scalar { value, .. } if equal(*value, x) => Ok(()),
            other => Err(format!("expected scalar {x}, got {}", short(other))),
        };
    }
    match (kind, &got) {
        (Kind::Instant(_), Value::Vector(v)) if exp.range_vector.is_none() => {
            let mut want: HashMap<&Labels, f64> = HashMap::new();
            for (l, vals) in &exp.series {
                let x = vals.first().copied().flatten().ok_or("expected line without value")?;
                want.insert(l, x);
            }
            if v.len() != want.len() {
                return Err(format!("expected {} samples, got {}: {}", want.len(), v.len(), short(&got)));
            }
            for (i, s) in v.iter().enumerate() {
                match want.get(&s.labels) {
                    Some(&x) if equal(x, s.value) => {}
                    Some(&x) => return Err(format!("{}: expected {x}, got {}", fmt_labels(&s.labels), s.value)),
                    None => return Err(format!("unexpected series {} {}; got {}", fmt_labels(&s.labels), s.value, short(&got))),
                }
                if exp.ordered && exp.series[i].0 != s.labels {
                    return Err(format!("order differs at {i}: expected {}, got {}", fmt_labels(&exp.series[i].0), fmt_labels(&s.labels)));
                }
            }
            Ok(())
        }
        (_, Value::Matrix(m)) => {
            let (start, step) = match (kind, exp.range_vector) {
                (_, Some((s, _, st))) => (s, st),
                (Kind::Range { start, step, .. }, None) => (*start, *step),
                (Kind::Instant(_), None) => return Err(format!("expected a vector, got {}", short(&got))),
            };
            let mut want: BTreeMap<&Labels, Vec<(i64, f64)>> = BTreeMap::new();
            for (l, vals) in &exp.series {
                let pts: Vec<(i64, f64)> = vals
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| p.map(|v| (start + i as i64 * step, v)))
                    .collect();
                if !pts.is_empty() {
                    want.insert(l, pts);
                }
            }
            if m.len() != want.len() {
                return Err(format!("expected {} series, got {}: {}", want.len(), m.len(), short(&got)));
            }
            for s in m {
                let Some(w) = want.get(&s.labels) else {
                    return Err(format!("unexpected series {} {:?}", fmt_labels(&s.labels), s.samples));
                };
                if w.len() != s.samples.len()
                    || w.iter().zip(&s.samples).any(|(a, b)| a.0 != b.0 || !equal(a.1, b.1))
                {
                    return Err(format!("{}: expected {:?}, got {:?}", fmt_labels(&s.labels), w, s.samples));
                }
            }
            Ok(())
        }
        (_, other) => Err(format!("unexpected result {}", short(other))),
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::Scalar { value, .. } => format!("scalar {value}"),
        Value::String { value, .. } => format!("string {value:?}"),
        Value::Vector(v) => v.iter().map(|s| format!("{} {}", fmt_labels(&s.labels), s.value)).collect::<Vec<_>>().join("; "),
        Value::Matrix(m) => m.iter().map(|s| format!("{} {:?}", fmt_labels(&s.labels), s.samples)).collect::<Vec<_>>().join("; "),
    };
    if s.len() > 600 {
        format!("{}…", &s[..s.char_indices().nth(600).map(|x| x.0).unwrap_or(s.len())])
    } else {
        s
    }
}

/// Functions whose result depends on the evaluation time itself (Prometheus's
/// `AtModifierUnsafeFunctions`): no `@` variants for expressions calling them.
const AT_UNSAFE: &[&str] = &[
    "days_in_month", "day_of_month", "day_of_week", "day_of_year", "hour", "minute", "month",
    "year", "predict_linear", "time", "timestamp", "start", "end", "range", "step",
];

/// Sets `@ at` on every selector and subquery without one, outside subqueries (as promqltest's
/// `atModifierTestCases`); true if the expression calls an `@`-unsafe function.
fn add_at(e: &mut Expr, at: SystemTime) -> bool {
    match e {
        Expr::VectorSelector(vs) => {
            vs.at.get_or_insert(AtModifier::At(at));
            false
        }
        Expr::MatrixSelector(ms) => {
            ms.vs.at.get_or_insert(AtModifier::At(at));
            false
        }
        Expr::Subquery(sq) => {
            sq.at.get_or_insert(AtModifier::At(at));
            false
        }
        Expr::Call(c) => {
            let mut unsafe_ = AT_UNSAFE.contains(&c.func.name);
            for a in c.args.args.iter_mut() {
                unsafe_ |= add_at(a, at);
            }
            unsafe_
        }
        Expr::Aggregate(a) => {
            let mut u = add_at(&mut a.expr, at);
            if let Some(p) = a.param.as_mut() {
                u |= add_at(p, at);
            }
            u
        }
        Expr::Unary(u) => add_at(&mut u.expr, at),
        Expr::Binary(b) => add_at(&mut b.lhs, at) | add_at(&mut b.rhs, at),
        Expr::Paren(p) => add_at(&mut p.expr, at),
        _ => false,
    }
}

fn time_of(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis((-ms) as u64)
    }
}

/// Runs one eval as promqltest does: an instant eval also with `@` set on its selectors at
/// several times, and each of those as a range query around the time (its middle point).
fn run_eval(engine: &Engine, storage: &MemStorage, kind: &Kind, expr: &str, exp: &Expect) -> Result<(), String> {
    let t = match kind {
        Kind::Range { start, end, step } => {
            return check(kind, exp, engine.range(storage, expr, *start, *end, *step));
        }
        Kind::Instant(t) => *t,
    };
    let mut cases: Vec<(Result<Query, vigil_promql::Error>, i64, String)> =
        vec![(Query::parse(expr), t, "".to_string())];
    if let Ok(q) = Query::parse(expr) {
        let mut unsafe_ = false;
        let q = q.map_expr(|e| unsafe_ = add_at(e, time_of(t)));
        if !unsafe_ {
            let times = if t == 0 { vec![-1000, 0, 1000] } else { vec![-10 * t, 0, t / 5, t, 10 * t] };
            for et in times {
                let q = match &q {
                    Ok(q) => Ok(q.clone()),
                    Err(e) => Err(vigil_promql::Error::Parse(e.to_string())),
                };
                cases.push((q, et, format!(" [with @ {t}ms, evaluated at {et}ms]")));
            }
        }
    }
    let no_range = exp.ordered
        || exp.range_vector.is_some()
        || exp.string.is_some()
        || ["start()", "end()", "range()", "step()"].iter().any(|f| expr.to_lowercase().contains(f));
    for (q, at, what) in cases {
        let q = match q {
            Ok(q) => q,
            Err(e) => return check(kind, exp, Err(e)).map_err(|m| format!("{m}{what}")),
        };
        let res = engine.instant_query(storage, &q, at);
        let ok = res.is_ok();
        check(kind, exp, res).map_err(|m| format!("{m}{what}"))?;
        if !ok || no_range || exp.fail.is_some() {
            continue;
        }
        // The same as a range query from at-1m to at+1m, compared at `at`.
        let r = engine
            .range_query(storage, &q, at - 60_000, at + 60_000, 60_000)
            .map_err(|e| format!("range variant error: {e}{what}"))?;
        let Value::Matrix(m) = r.value else { return Err("range variant: no matrix".into()) };
        let mut labels: Vec<&Labels> = m.iter().map(|s| &s.labels).collect();
        if labels.windows(2).any(|w| w[0] >= w[1]) {
            labels.sort();
            return Err(format!("range variant: matrix not sorted by labels{what}"));
        }
        let vec: Vec<Sample> = m
            .iter()
            .filter_map(|s| {
                s.samples.iter().find(|p| p.0 == at).map(|p| Sample { labels: s.labels.clone(), t_ms: at, value: p.1 })
            })
            .collect();
        let value = if exp.scalar.is_some() {
            Value::Scalar { t_ms: at, value: vec.first().map(|s| s.value).unwrap_or(f64::NAN) }
        } else {
            Value::Vector(vec)
        };
        let res = QueryResult { value, warnings: Vec::new(), samples_loaded: 0 };
        check(kind, exp, Ok(res)).map_err(|m| format!("range variant: {m}{what}"))?;
    }
    Ok(())
}

#[test]
fn promqltest() {
    let dir = fixtures_dir();
    let index = std::fs::read_to_string(dir.join("evals.tsv"))
        .unwrap_or_else(|e| panic!("{}: {e} (the promqltest fixtures are required)", dir.join("evals.tsv").display()));
    // (file, line) → skipped?
    let mut skip: HashMap<(String, usize), bool> = HashMap::new();
    for row in index.lines().skip(1) {
        let f: Vec<&str> = row.split('\t').collect();
        skip.insert((f[0].to_string(), f[1].parse().unwrap()), f[4] == "1" || f[5] == "1");
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 21, "expected the 21 .test files in {}", dir.display());

    let engine = Engine::new(EngineOptions {
        lookback_delta_ms: 5 * 60 * 1000,
        timeout: Duration::from_secs(100),
        max_samples: 10_000,
        max_points_per_series: 11_000,
    });
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mut report = String::new();
    for path in &files {
        let fname = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<String> = text
            .split('\n')
            .map(|l| {
                let l = l.trim();
                if l.starts_with('#') { String::new() } else { l.to_string() }
            })
            .collect();
        let mut storage = MemStorage::new();
        let mut i = 0;
        while i < lines.len() {
            let line = &lines[i];
            let lineno = i + 1;
            i += 1;
            if line.is_empty() {
                continue;
            }
            let word = line.split_whitespace().next().unwrap().to_lowercase();
            if word == "clear" {
                storage = MemStorage::new();
                continue;
            }
            if word.starts_with("load") {
                let interval = parse_duration(line.split_whitespace().nth(1).unwrap()).unwrap();
                while i < lines.len() && !lines[i].is_empty() {
                    let l = &lines[i];
                    i += 1;
                    let (labels, values) = parse_series(l).unwrap_or_else(|e| panic!("{fname}:{}: {e}", i));
                    let name_st = labels.get("__name__").is_some_and(|n| n.ends_with("@st"));
                    if values.starts_with('@') || name_st {
                        continue; // start timestamps (start_timestamps.test only)
                    }
                    let Ok(points) = expand_values(values).unwrap_or_else(|e| panic!("{fname}:{}: {e}", i)) else {
                        continue;
                    };
                    for (k, p) in points.iter().enumerate() {
                        if let Some(v) = p {
                            storage.add(&labels, k as i64 * interval, *v);
                        }
                    }
                }
                continue;
            }
            if !word.starts_with("eval") {
                panic!("{fname}:{lineno}: unknown command {line:?}");
            }
            // eval / eval_fail / eval_ordered
            let mut exp = Expect::default();
            if word == "eval_fail" {
                exp.fail = Some(None);
            }
            if word == "eval_ordered" {
                exp.ordered = true;
            }
            let rest = line[word.len()..].trim();
            let (kind, expr) = if let Some(r) = rest.strip_prefix("instant at ") {
                let (t, e) = r.split_once(' ').unwrap();
                (Kind::Instant(parse_duration(t).unwrap()), e.trim().to_string())
            } else if let Some(r) = rest.strip_prefix("range from ") {
                let w: Vec<&str> = r.splitn(6, ' ').collect();
                assert!(w[1] == "to" && w[3] == "step", "{fname}:{lineno}: bad range eval");
                (
                    Kind::Range {
                        start: parse_duration(w[0]).unwrap(),
                        end: parse_duration(w[2]).unwrap(),
                        step: parse_duration(w[4]).unwrap(),
                    },
                    w[5].trim().to_string(),
                )
            } else {
                panic!("{fname}:{lineno}: bad eval {line:?}");
            };
            while i < lines.len() && !lines[i].is_empty() {
                let l = lines[i].clone();
                i += 1;
                if let Some(e) = l.strip_prefix("expect ") {
                    let e = e.trim();
                    if let Some(f) = e.strip_prefix("fail") {
                        let f = f.trim();
                        exp.fail = Some(if let Some(m) = f.strip_prefix("msg:") {
                            Some((false, m.trim().to_string()))
                        } else if let Some(r) = f.strip_prefix("regex:") {
                            Some((true, r.trim().to_string()))
                        } else {
                            None
                        });
                    } else if e == "ordered" {
                        exp.ordered = true;
                    } else if let Some(s) = e.strip_prefix("string ") {
                        let s = s.trim();
                        exp.string = Some(s[1..s.len() - 1].to_string());
                    } else if let Some(r) = e.strip_prefix("range vector from ") {
                        let w: Vec<&str> = r.split_whitespace().collect();
                        exp.range_vector =
                            Some((parse_duration(w[0]).unwrap(), parse_duration(w[2]).unwrap(), parse_duration(w[4]).unwrap()));
                    }
                    // warn/info/no_warn/no_info: annotations are not compared.
                    continue;
                }
                if let Some(m) = l.strip_prefix("expected_fail_message") {
                    exp.fail = Some(Some((false, m.trim().to_string())));
                    continue;
                }
                if let Some(m) = l.strip_prefix("expected_fail_regexp") {
                    exp.fail = Some(Some((true, m.trim().to_string())));
                    continue;
                }
                if let Some(x) = parse_number(&l) {
                    exp.scalar = Some(x);
                    continue;
                }
                let (labels, values) = parse_series(&l).unwrap_or_else(|e| panic!("{fname}:{i}: {e}"));
                let pts = expand_values(values).unwrap().unwrap_or_default();
                exp.series.push((labels, pts));
            }
            if *skip.get(&(fname.clone(), lineno)).unwrap_or_else(|| panic!("{fname}:{lineno} not in evals.tsv")) {
                skipped += 1;
                continue;
            }
            match run_eval(&engine, &storage, &kind, &expr, &exp) {
                Ok(()) => passed += 1,
                Err(why) => {
                    failed += 1;
                    let _ = writeln!(report, "{fname}:{lineno}: {expr}\n    {why}");
                }
            }
        }
    }
    let out = target_dir().join("promqltest-failures.txt");
    let _ = std::fs::create_dir_all(target_dir());
    std::fs::write(&out, &report).unwrap();
    println!("promqltest: {passed} passed, {failed} failed, {skipped} skipped (native histograms / experimental)");
    let floor: usize = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/promqltest.floor"))
        .expect("promql/tests/promqltest.floor")
        .trim()
        .parse()
        .expect("promqltest.floor holds one number");
    assert!(
        passed >= floor,
        "promqltest: {passed} passed, below the recorded floor of {floor}; failures in {}",
        out.display()
    );
}
