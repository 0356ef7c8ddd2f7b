//! Go-template expansion of alert labels and annotations with Prometheus's data and functions.
//!
//! Templates are parsed and run by the `gtmpl` crate (Go's text/template in Rust). Prometheus's
//! functions that need the evaluation's context (`query`, `externalURL`, `pathPrefix`) read it
//! from a thread-local set around each expansion: gtmpl functions are plain `fn` pointers, and
//! rules are expanded on their group's own thread.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gtmpl::{Context, Func, FuncError, Template, Value};

use crate::query::Query;

/// Prometheus's prefix: the variables every rule template can use.
const PREFIX: &str = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}";

/// What a template sees beyond its alert: where `query` runs, and the server's identity.
#[derive(Clone, Default)]
pub struct Env {
    pub query: Option<Arc<dyn Query>>,
    /// Evaluation time, for `query`.
    pub time_ms: i64,
    pub external_labels: BTreeMap<String, String>,
    pub external_url: String,
}

thread_local! {
    static ENV: RefCell<Env> = RefCell::new(Env::default());
}

fn functions() -> Vec<(&'static str, Func)> {
    vec![
        ("query", f_query as Func),
        ("first", f_first),
        ("label", f_label),
        ("value", f_value),
        ("strvalue", f_strvalue),
        ("args", f_args),
        ("reReplaceAll", f_re_replace_all),
        ("safeHtml", f_identity),
        ("match", f_match),
        ("title", f_title),
        ("toUpper", f_to_upper),
        ("toLower", f_to_lower),
        ("graphLink", f_graph_link),
        ("tableLink", f_table_link),
        ("sortByLabel", f_sort_by_label),
        ("stripPort", f_strip_port),
        ("stripDomain", f_strip_domain),
        ("humanize", f_humanize),
        ("humanize1024", f_humanize1024),
        ("humanizeDuration", f_humanize_duration),
        ("humanizePercentage", f_humanize_percentage),
        ("humanizeTimestamp", f_humanize_timestamp),
        ("toTime", f_to_time),
        ("pathPrefix", f_path_prefix),
        ("externalURL", f_external_url),
        ("parseDuration", f_parse_duration),
    ]
}

fn template(name: &str, text: &str) -> Result<Template, String> {
    check_actions_closed(text).map_err(|e| format!("template: {name}: {e}"))?;
    let mut t = Template::with_name(name);
    t.add_funcs(&functions());
    t.parse(format!("{PREFIX}{text}"))
        .map_err(|e| format!("template: {name}: {e}"))?;
    Ok(t)
}

/// Go's "unclosed action" check, done before gtmpl sees the text: gtmpl 0.7's lexer never
/// returns on an action left open at the end of the input.
fn check_actions_closed(text: &str) -> Result<(), String> {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(open) = text[i..].find("{{") {
        let mut j = i + open + 2;
        let mut quote: Option<u8> = None;
        loop {
            if j >= b.len() {
                let line = text[..i + open].matches('\n').count() + 1;
                return Err(format!("{line}: unclosed action"));
            }
            match quote {
                Some(q) => {
                    if b[j] == b'\\' && q != b'`' {
                        j += 1;
                    } else if b[j] == q {
                        quote = None;
                    }
                }
                None if b[j] == b'"' || b[j] == b'`' || b[j] == b'\'' => quote = Some(b[j]),
                None if b[j..].starts_with(b"}}") => break,
                None => {}
            }
            j += 1;
        }
        i = j + 2;
    }
    Ok(())
}

/// Whether `text` parses as a rule template (what `promtool check rules` checks).
pub fn check(name: &str, text: &str) -> Result<(), String> {
    template(name, text).map(|_| ())
}

/// Expands `text` for an alert with the sample's `labels` and `value`. On failure the error is
/// returned; callers put Prometheus's `<error expanding template: ...>` in its place.
pub fn expand(
    name: &str,
    text: &str,
    labels: &BTreeMap<String, String>,
    value: f64,
    env: &Env,
) -> Result<String, String> {
    if !text.contains("{{") {
        return Ok(text.to_string());
    }
    let t = template(name, text)?;
    let mut data = HashMap::new();
    data.insert("Labels".to_string(), string_map(labels));
    data.insert("ExternalLabels".to_string(), string_map(&env.external_labels));
    data.insert("ExternalURL".to_string(), Value::from(env.external_url.clone()));
    data.insert("Value".to_string(), Value::from(value));
    let previous = ENV.with(|e| std::mem::replace(&mut *e.borrow_mut(), env.clone()));
    let out = t.render(&Context::from(Value::Object(data)));
    ENV.with(|e| *e.borrow_mut() = previous);
    // Prometheus runs with `missingkey=zero`: a missing label is "", where gtmpl prints Go's
    // default "<no value>".
    out.map(|s| s.replace("<no value>", ""))
        .map_err(|e| format!("template: {name}: {e}"))
}

/// Expands `text`, or gives Prometheus's inline error text when expansion fails.
pub fn expand_or_error(
    name: &str,
    text: &str,
    labels: &BTreeMap<String, String>,
    value: f64,
    env: &Env,
) -> String {
    expand(name, text, labels, value, env).unwrap_or_else(|e| {
        tracing::warn!(template = name, error = %e, "expanding alert template");
        format!("<error expanding template: {e}>")
    })
}

fn string_map(m: &BTreeMap<String, String>) -> Value {
    Value::Map(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect(),
    )
}

fn err(msg: impl Into<String>) -> FuncError {
    FuncError::Generic(msg.into())
}

fn arg<'a>(args: &'a [Value], i: usize, func: &str) -> Result<&'a Value, FuncError> {
    args.get(i)
        .ok_or_else(|| FuncError::AtLeastXArgs(func.into(), i + 1))
}

fn string_arg(args: &[Value], i: usize, func: &str) -> Result<String, FuncError> {
    match arg(args, i, func)? {
        Value::String(s) => Ok(s.clone()),
        other => Err(err(format!("{func}: expected a string, got {other}"))),
    }
}

/// Prometheus's `convertToFloat`: numbers, and strings that parse as floats.
fn float_arg(args: &[Value], i: usize, func: &str) -> Result<f64, FuncError> {
    match arg(args, i, func)? {
        Value::Number(n) => n
            .as_f64()
            .or_else(|| n.as_i64().map(|i| i as f64))
            .or_else(|| n.as_u64().map(|u| u as f64))
            .ok_or_else(|| err(format!("{func}: not a number"))),
        Value::String(s) => parse_go_float(s)
            .ok_or_else(|| err(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))),
        other => Err(err(format!("can't convert {other} to float"))),
    }
}

fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

fn sample(labels: &BTreeMap<String, String>, value: f64) -> Value {
    let mut m = HashMap::new();
    m.insert("Labels".to_string(), string_map(labels));
    m.insert("Value".to_string(), Value::from(value));
    Value::Object(m)
}

fn f_query(args: &[Value]) -> Result<Value, FuncError> {
    let q = string_arg(args, 0, "query")?;
    let (query, t) = ENV.with(|e| {
        let e = e.borrow();
        (e.query.clone(), e.time_ms)
    });
    let query = query.ok_or_else(|| err("query: no query engine available here"))?;
    let samples = query.instant(&q, t).map_err(|e| err(e.0))?;
    Ok(Value::Array(
        samples
            .iter()
            .map(|s| sample(&s.labels, s.value))
            .collect(),
    ))
}

fn f_first(args: &[Value]) -> Result<Value, FuncError> {
    match arg(args, 0, "first")? {
        Value::Array(v) => v
            .first()
            .cloned()
            .ok_or_else(|| err("first() called on vector with no elements")),
        _ => Err(err("first() called on a value that is not a vector")),
    }
}

fn sample_field<'a>(v: &'a Value, field: &str, func: &str) -> Result<&'a Value, FuncError> {
    match v {
        Value::Object(m) | Value::Map(m) => m
            .get(field)
            .ok_or_else(|| err(format!("{func}: not a sample"))),
        _ => Err(err(format!("{func}: not a sample"))),
    }
}

fn f_label(args: &[Value]) -> Result<Value, FuncError> {
    let name = string_arg(args, 0, "label")?;
    match sample_field(arg(args, 1, "label")?, "Labels", "label")? {
        Value::Map(m) => Ok(m.get(&name).cloned().unwrap_or_else(|| Value::from(""))),
        _ => Err(err("label: not a sample")),
    }
}

fn f_value(args: &[Value]) -> Result<Value, FuncError> {
    sample_field(arg(args, 0, "value")?, "Value", "value").cloned()
}

fn f_strvalue(args: &[Value]) -> Result<Value, FuncError> {
    match sample_field(arg(args, 0, "strvalue")?, "Labels", "strvalue")? {
        Value::Map(m) => Ok(m.get("__value__").cloned().unwrap_or_else(|| Value::from(""))),
        _ => Err(err("strvalue: not a sample")),
    }
}

fn f_args(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::Map(
        args.iter()
            .enumerate()
            .map(|(i, v)| (format!("arg{i}"), v.clone()))
            .collect(),
    ))
}

fn f_re_replace_all(args: &[Value]) -> Result<Value, FuncError> {
    let pattern = string_arg(args, 0, "reReplaceAll")?;
    let repl = string_arg(args, 1, "reReplaceAll")?;
    let text = string_arg(args, 2, "reReplaceAll")?;
    let re = regex::Regex::new(&pattern).map_err(|e| err(e.to_string()))?;
    Ok(Value::from(re.replace_all(&text, repl.as_str()).into_owned()))
}

fn f_identity(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(string_arg(args, 0, "safeHtml")?))
}

fn f_match(args: &[Value]) -> Result<Value, FuncError> {
    let pattern = string_arg(args, 0, "match")?;
    let text = string_arg(args, 1, "match")?;
    let re = regex::Regex::new(&pattern).map_err(|e| err(e.to_string()))?;
    Ok(Value::from(re.is_match(&text)))
}

/// Go's deprecated `strings.Title`: upper-cases the first letter of each word.
fn f_title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "title")?;
    let mut out = String::with_capacity(s.len());
    let mut prev_letter = false;
    for c in s.chars() {
        if !prev_letter {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_letter = c.is_alphanumeric() || c == '_' || c == '\'';
    }
    Ok(Value::from(out))
}

fn f_to_upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(string_arg(args, 0, "toUpper")?.to_uppercase()))
}

fn f_to_lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(string_arg(args, 0, "toLower")?.to_lowercase()))
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn f_graph_link(args: &[Value]) -> Result<Value, FuncError> {
    let expr = string_arg(args, 0, "graphLink")?;
    Ok(Value::from(format!(
        "/graph?g0.expr={}&g0.tab=0",
        query_escape(&expr)
    )))
}

fn f_table_link(args: &[Value]) -> Result<Value, FuncError> {
    let expr = string_arg(args, 0, "tableLink")?;
    Ok(Value::from(format!(
        "/graph?g0.expr={}&g0.tab=1",
        query_escape(&expr)
    )))
}

fn f_sort_by_label(args: &[Value]) -> Result<Value, FuncError> {
    let name = string_arg(args, 0, "sortByLabel")?;
    let Value::Array(v) = arg(args, 1, "sortByLabel")? else {
        return Err(err("sortByLabel: not a vector"));
    };
    let key = |s: &Value| match sample_field(s, "Labels", "sortByLabel") {
        Ok(Value::Map(m)) => match m.get(&name) {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    let mut v = v.clone();
    v.sort_by_key(key);
    Ok(Value::Array(v))
}

fn f_strip_port(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "stripPort")?;
    let host = if let Some(rest) = s.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) if p.starts_with(':') || p.is_empty() => h.to_string(),
            _ => s.clone(),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if !h.contains(':') => h.to_string(),
            _ => s.clone(),
        }
    };
    Ok(Value::from(host))
}

fn f_strip_domain(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "stripDomain")?;
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), format!(":{p}")),
        _ => (s.clone(), String::new()),
    };
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(Value::from(s));
    }
    let short = host.split('.').next().unwrap_or("").to_string();
    Ok(Value::from(format!("{short}{port}")))
}

/// Go's `fmt.Sprintf("%.<prec>g", v)`.
pub fn go_g(v: f64, prec: usize) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, v);
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("integer exponent");
    if exp < -4 || exp >= prec as i32 {
        let m = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

fn with_prefixes(mut v: f64, step: f64, big: &[&str], small: &[&str]) -> String {
    if v.abs() >= 1.0 {
        let mut prefix = "";
        for p in big {
            if v.abs() < step {
                break;
            }
            prefix = p;
            v /= step;
        }
        return format!("{}{prefix}", go_g(v, 4));
    }
    let mut prefix = "";
    for p in small {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}", go_g(v, 4))
}

const SMALL: [&str; 8] = ["m", "u", "n", "p", "f", "a", "z", "y"];

/// Prometheus's `humanize`.
pub fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    with_prefixes(v, 1000.0, &["k", "M", "G", "T", "P", "E", "Z", "Y"], &SMALL)
}

/// Prometheus's `humanize1024`.
pub fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return go_g(v, 4);
    }
    with_prefixes(
        v,
        1024.0,
        &["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"],
        &[],
    )
}

/// Prometheus's `humanizeDuration`.
pub fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return go_g(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", go_g(v, 4));
    }
    if v.abs() >= 1.0 {
        let (sign, v) = if v < 0.0 { ("-", -v) } else { ("", v) };
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
        return if days != 0 {
            format!("{sign}{days}d {h}h {m}m {s}s")
        } else if h != 0 {
            format!("{sign}{h}h {m}m {s}s")
        } else if m != 0 {
            format!("{sign}{m}m {s}s")
        } else {
            format!("{sign}{}s", go_g(v, 4))
        };
    }
    format!("{}s", with_prefixes(v, 1000.0, &[], &SMALL))
}

/// Go's `time.Time.String()` in UTC of Prometheus's `floatToTime` (millisecond precision:
/// `model.TimeFromUnixNano`), as `humanizeTimestamp` and `toTime` print it.
fn go_time_string(v: f64) -> Option<String> {
    let ns = v * 1e9;
    if ns >= i64::MAX as f64 || ns <= i64::MIN as f64 {
        return None;
    }
    let ms = (ns as i64).div_euclid(1_000_000);
    let t = chrono::DateTime::from_timestamp_millis(ms)?;
    let frac = match ms.rem_euclid(1000) {
        0 => String::new(),
        m => format!(".{}", format!("{m:03}").trim_end_matches('0')),
    };
    Some(format!("{}{frac} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S")))
}

fn f_humanize(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(humanize(float_arg(args, 0, "humanize")?)))
}

fn f_humanize1024(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(humanize1024(float_arg(args, 0, "humanize1024")?)))
}

fn f_humanize_duration(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(humanize_duration(float_arg(
        args,
        0,
        "humanizeDuration",
    )?)))
}

fn f_humanize_percentage(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg(args, 0, "humanizePercentage")?;
    Ok(Value::from(format!("{}%", go_g(v * 100.0, 4))))
}

fn f_humanize_timestamp(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg(args, 0, "humanizeTimestamp")?;
    if !v.is_finite() {
        return Ok(Value::from(go_g(v, 4)));
    }
    go_time_string(v)
        .map(Value::from)
        .ok_or_else(|| err(format!("timestamp out of range: {v}")))
}

fn f_to_time(args: &[Value]) -> Result<Value, FuncError> {
    let v = float_arg(args, 0, "toTime")?;
    if !v.is_finite() {
        return Err(err(format!("{v} is not a valid timestamp")));
    }
    go_time_string(v)
        .map(Value::from)
        .ok_or_else(|| err(format!("timestamp out of range: {v}")))
}

fn f_path_prefix(_: &[Value]) -> Result<Value, FuncError> {
    let url = ENV.with(|e| e.borrow().external_url.clone());
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
        .unwrap_or_default();
    Ok(Value::from(path))
}

fn f_external_url(_: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::from(ENV.with(|e| e.borrow().external_url.clone())))
}

fn f_parse_duration(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(args, 0, "parseDuration")?;
    let d = super::file::parse_duration(&s).map_err(err)?;
    Ok(Value::from(d.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{QueryError, RangeSeries, Sample};

    fn run(text: &str, labels: &[(&str, &str)], value: f64) -> String {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        expand("t", text, &labels, value, &Env::default()).unwrap()
    }

    /// Outputs from Prometheus's template/template_test.go (v2.42).
    #[test]
    fn prometheus_documented_outputs() {
        let over = |f: &str, vals: &[f64]| -> String {
            vals.iter()
                .map(|v| run(&format!("{{{{ {f} $value }}}}:"), &[], *v))
                .collect()
        };
        assert_eq!(over("humanize", &[0.0, 1.0, 1234567.0, 0.12]), "0:1:1.235M:120m:");
        assert_eq!(over("humanize", &[f64::INFINITY, f64::NEG_INFINITY, f64::NAN]), "+Inf:-Inf:NaN:");
        assert_eq!(over("humanize1024", &[0.0, 1.0, 1048576.0, 0.12]), "0:1:1Mi:0.12:");
        assert_eq!(
            over("humanizeDuration", &[0.0, 1.0, 60.0, 3600.0, 86400.0, 86400.0 + 3600.0, -(86400.0 * 2.0 + 3600.0 * 3.0 + 60.0 * 4.0 + 5.0), 899.99]),
            "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:"
        );
        assert_eq!(
            over("humanizeDuration", &[0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345]),
            "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:"
        );
        assert_eq!(over("humanizePercentage", &[0.0, 0.1234567, 1.0, 1.234567]), "0%:12.35%:100%:123.5%:");
        assert_eq!(run("{{ humanizeTimestamp $value }}", &[], 1435065584.128), "2015-06-23 13:19:44.128 +0000 UTC");
        assert_eq!(run("{{ humanize \"1234567.0\" }}", &[], 0.0), "1.235M");
        assert_eq!(run("{{ \"aa bb CC\" | title }}", &[], 0.0), "Aa Bb CC");
        assert_eq!(run("{{ \"aa bb CC\" | toUpper }}", &[], 0.0), "AA BB CC");
        assert_eq!(run("{{ \"aa bb CC\" | toLower }}", &[], 0.0), "aa bb cc");
        assert_eq!(run("{{ reReplaceAll \"(a)b\" \"x$1\" \"ab\" }}", &[], 0.0), "xa");
        assert_eq!(run("{{ match \"a+\" \"aaa\" }}", &[], 0.0), "true");
        assert_eq!(run("{{ \"foo.example.com:12345\" | stripPort }}", &[], 0.0), "foo.example.com");
        assert_eq!(run("{{ \"[2001:db8::1]:80\" | stripPort }}", &[], 0.0), "2001:db8::1");
        assert_eq!(run("{{ \"foo.example.com:12345\" | stripDomain }}", &[], 0.0), "foo:12345");
        assert_eq!(run("{{ \"192.168.0.1:12345\" | stripDomain }}", &[], 0.0), "192.168.0.1:12345");
        assert_eq!(run("{{ graphLink \"up\" }}", &[], 0.0), "/graph?g0.expr=up&g0.tab=0");
        assert_eq!(run("{{ parseDuration \"1h2m10ms\" }}", &[], 0.0), "3720.01");
    }

    #[test]
    fn labels_value_and_printf() {
        assert_eq!(
            run("{{ $labels.instance }} is {{ $value }} ({{ printf \"%.2f\" $value }})", &[("instance", "a:1")], 0.5),
            "a:1 is 0.5 (0.50)"
        );
        assert_eq!(run("[{{ $labels.missing }}]", &[], 1.0), "[]");
        assert_eq!(run("{{ if gt $value 0.4 }}high{{ end }}", &[], 0.5), "high");
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(check("a", "{{ $labels.x ").is_err());
        assert!(check("a", "{{ nosuchfunc 1 }}").is_err());
        assert!(check("a", "{{ humanize $value }}").is_ok());
        let labels = BTreeMap::new();
        let e = expand_or_error("a", "{{ query \"up\" | first }}", &labels, 1.0, &Env::default());
        assert!(e.starts_with("<error expanding template: "), "{e}");
    }

    struct Fixed;
    impl Query for Fixed {
        fn instant(&self, expr: &str, _: i64) -> Result<Vec<Sample>, QueryError> {
            match expr {
                "up" => Ok(vec![
                    Sample { labels: [("instance".to_string(), "b".to_string())].into(), value: 1.0 },
                    Sample { labels: [("instance".to_string(), "a".to_string())].into(), value: 0.0 },
                ]),
                "1.5" => Ok(vec![Sample { labels: BTreeMap::new(), value: 1.5 }]),
                _ => Ok(Vec::new()),
            }
        }
        fn range(&self, _: &str, _: i64, _: i64, _: i64) -> Result<Vec<RangeSeries>, QueryError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn query_first_label_value() {
        let env = Env { query: Some(Arc::new(Fixed)), ..Env::default() };
        let l = BTreeMap::new();
        let e = |t: &str| expand("t", t, &l, 0.0, &env).unwrap();
        assert_eq!(e("{{ query \"up\" | first | label \"instance\" }}"), "b");
        assert_eq!(e("{{ query \"1.5\" | first | value }}"), "1.5");
        assert_eq!(e("{{ range query \"up\" | sortByLabel \"instance\" }}{{ .Labels.instance }}{{ end }}"), "ab");
        assert!(expand("t", "{{ query \"none\" | first }}", &l, 0.0, &env).is_err());
    }
}
