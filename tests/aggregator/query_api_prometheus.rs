//! vigil's PromQL against a real Prometheus (Debian's 2.42) holding the same samples: the
//! aggregator pulls simulated nodes and its `prometheus-remote-write` sink writes every series
//! into Prometheus's remote-write receiver; then a corpus of instant and range queries over
//! vigil's real metric names must give the same answers from both (1e-9 relative).
//!
//! Where Prometheus 2.x and 3.x differ, vigil follows 3.x, so the corpus stays clear of those
//! cases: evaluation times fall half a second off the samples' whole-second timestamps, so no
//! sample sits on a range or lookback boundary (3.x: left-open ranges, 2.x: left-closed); for
//! the same reason subqueries here hold no range selector (their inner steps sit on the
//! absolute whole-second grid, where a range selector's boundary meets a sample), and
//! no query uses functions 2.42 lacks or names differently (`double_exponential_smoothing`
//! = 2.x `holt_winters`, `limitk`, `limit_ratio`).

use crate::support::sinks;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::query::*;
use serde_json::Value;
use vigil_aggregator::sim::Shape;

/// A query's answer normalised for comparison: series key (labels) → points (t in ms, value).
type Answer = BTreeMap<String, Vec<(i64, f64)>>;

async fn ask(base: &str, query: &str, range: Option<(f64, f64, f64)>, t: f64) -> Result<(String, Answer), String> {
    let (s, v) = match range {
        None => get_params(&format!("{base}/api/v1/query"), &[("query", query), ("time", &format!("{t}"))]).await,
        Some((start, end, step)) => {
            get_params(
                &format!("{base}/api/v1/query_range"),
                &[
                    ("query", query),
                    ("start", &format!("{start}")),
                    ("end", &format!("{end}")),
                    ("step", &format!("{step}")),
                ],
            )
            .await
        }
    };
    if s != 200 || v["status"] != "success" {
        return Err(format!("{s} {}", v["errorType"]));
    }
    let kind = v["data"]["resultType"].as_str().unwrap_or_default().to_string();
    let mut out = Answer::new();
    let point = |p: &Value| -> (i64, f64) {
        let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
        let v = match p[1].as_str().unwrap() {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            x => x.parse().unwrap(),
        };
        (t, v)
    };
    match kind.as_str() {
        "scalar" | "string" => {
            out.insert(String::new(), vec![point(&v["data"]["result"])]);
        }
        _ => {
            for s in v["data"]["result"].as_array().unwrap() {
                let key = s["metric"].to_string();
                let pts = if let Some(p) = s.get("value") {
                    vec![point(p)]
                } else {
                    s["values"].as_array().unwrap().iter().map(point).collect()
                };
                assert!(out.insert(key, pts).is_none(), "duplicate series in {v}");
            }
        }
    }
    Ok((kind, out))
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan())
        || a == b
        || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Why two answers differ, or None. `values_only`: compare the sorted values, not which series
/// (topk/bottomk among equal values may pick either series).
fn differs(vigil: &(String, Answer), prom: &(String, Answer), values_only: bool) -> Option<String> {
    if vigil.0 != prom.0 {
        return Some(format!("resultType {} vs {}", vigil.0, prom.0));
    }
    if values_only {
        let vals = |a: &Answer| {
            let mut v: Vec<(i64, f64)> = a.values().flatten().copied().collect();
            v.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
            v
        };
        let (a, b) = (vals(&vigil.1), vals(&prom.1));
        if a.len() != b.len() || a.iter().zip(&b).any(|(x, y)| x.0 != y.0 || !same(x.1, y.1)) {
            return Some(format!("values {a:?} vs {b:?}"));
        }
        return None;
    }
    let keys = |a: &Answer| a.keys().cloned().collect::<Vec<_>>();
    if keys(&vigil.1) != keys(&prom.1) {
        return Some(format!("series {:?} vs {:?}", keys(&vigil.1), keys(&prom.1)));
    }
    for (k, a) in &vigil.1 {
        let b = &prom.1[k];
        if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.0 != y.0 || !same(x.1, y.1)) {
            return Some(format!("{k}: {a:?} vs {b:?}"));
        }
    }
    None
}

/// The corpus: (query, compare values only).
fn corpus(t: f64) -> Vec<(String, bool)> {
    let mut q: Vec<(String, bool)> = Vec::new();
    fn add(q: &mut Vec<(String, bool)>, s: String) {
        q.push((s, false));
    }
    let gauges = [
        "cpu_usage_rate",
        "memory_working_set",
        "memory_usage",
        "network_rx_rate",
        "filesystem_usage",
    ];
    for g in gauges {
        for tpl in [
            "{g}",
            "sum({g})",
            "sum by (namespace_name) ({g}{type=\"pod\"})",
            "avg by (type) ({g})",
            "max without (pod_name, pod_id) ({g}{type=\"pod\"})",
            "min by (nodename) ({g}{type=\"pod_container\"})",
            "count by (type) ({g})",
            "stddev by (namespace_name) ({g}{type=\"pod\"})",
            "stdvar({g}{type=\"node\"})",
            "quantile(0.9, {g}{type=\"pod\"})",
            "group by (namespace_name) ({g})",
            "count_values(\"v\", {g}{type=\"node\"})",
            "avg_over_time({g}{type=\"pod\"}[10s])",
            "max_over_time({g}{type=\"pod\"}[20s])",
            "min_over_time({g}{type=\"node\"}[20s])",
            "sum_over_time({g}{type=\"pod\"}[5s])",
            "count_over_time({g}[10s])",
            "stddev_over_time({g}{type=\"node\"}[10s])",
            "last_over_time({g}{type=\"pod\"}[10s])",
            "quantile_over_time(0.5, {g}{type=\"pod\"}[10s])",
            "{g}{type=\"node\"} offset 5s",
            "{g} > 1000",
            "{g}{type=\"pod\"} / 1000",
            "{g}{type=\"pod\"} > bool 50",
            "-{g}{type=\"node\"}",
            "sort_desc(sum by (nodename) ({g}{type=\"pod\"}))",
            "changes({g}{type=\"pod\"}[20s])",
            "deriv({g}{type=\"node\"}[20s])",
            "predict_linear({g}{type=\"node\"}[20s], 60)",
            "delta({g}{type=\"node\"}[10s])",
            "idelta({g}{type=\"node\"}[10s])",
        ] {
            add(&mut q, tpl.replace("{g}", g));
        }
        q.push((format!("topk(3, {g}{{type=\"pod\"}})"), true));
        q.push((format!("bottomk(2, {g}{{type=\"pod_container\"}})"), true));
        add(&mut q, format!("{g}{{type=\"node\"}} @ {}", t - 5.0));
    }
    let counters = [
        "network_rx_total",
        "network_tx_total",
        "cpu_usage_total",
        "memory_page_faults_total",
    ];
    for c in counters {
        for tpl in [
            "rate({c}[5s])",
            "rate({c}{type=\"pod\"}[10s])",
            "irate({c}{type=\"node\"}[10s])",
            "increase({c}{type=\"pod\"}[20s])",
            "resets({c}[20s])",
            "sum by (namespace_name) (rate({c}{type=\"pod\"}[10s]))",
            "rate({c}{type=\"node\"}[10s] offset 3s)",
            "sum(increase({c}{type=\"node\"}[15s]))",
        ] {
            add(&mut q, tpl.replace("{c}", c));
        }
        q.push((format!("topk(10, rate({c}{{type=\"pod\"}}[5s]))"), true));
    }
    for s in [
        "sum by (namespace_name) (memory_working_set{type=\"pod\"}) / on (namespace_name) sum by (namespace_name) (memory_usage{type=\"pod\"})",
        "memory_working_set{type=\"pod\"} / on (namespace_name, pod_name) memory_usage{type=\"pod\"}",
        "cpu_usage_rate{type=\"pod_container\"} / on (namespace_name, pod_name) group_left cpu_usage_rate{type=\"pod\"}",
        "cpu_usage_rate{type=\"node\"} and on (nodename) memory_usage{type=\"node\"} > 0",
        "cpu_usage_rate{type=\"pod\"} unless on (pod_name) topk(1, memory_usage{type=\"pod\",nodename=\"node-0001\"})",
        "max_over_time(cpu_usage_rate{type=\"pod\"}[20s:2s])",
        "avg_over_time(sum by (nodename) (memory_usage{type=\"pod\"})[10s:1s])",
        "min_over_time((cpu_usage_rate{type=\"node\"} * 2)[15s:3s])",
        "max_over_time(deriv(memory_usage{type=\"node\"}[10s] @ end())[20s:2s])",
        "cpu_usage_rate{type=\"ns\"} or memory_usage{type=\"node\"}",
        "label_replace(cpu_usage_rate{type=\"node\"}, \"n\", \"$1\", \"nodename\", \"node-(.*)\")",
        "label_join(cpu_usage_rate{type=\"pod\"}, \"id\", \"/\", \"namespace_name\", \"pod_name\")",
        "absent(no_such_metric{type=\"pod\"})",
        "absent(cpu_usage_rate)",
        "absent_over_time(cpu_usage_rate[10s])",
        "vector(1)",
        "scalar(sum(cpu_usage_rate{type=\"cluster\"}))",
        "time()",
        "sum(cpu_usage_rate{type=\"pod\"}) * on () group_left () count(cpu_usage_rate{type=\"node\"})",
        "sqrt(memory_working_set{type=\"node\"})",
        "ln(memory_usage{type=\"node\"})",
        "exp(cpu_usage_rate{type=\"node\"} / 1000)",
        "ceil(cpu_usage_rate{type=\"pod\"} / 7)",
        "floor(cpu_usage_rate{type=\"pod\"} / 7)",
        "round(memory_usage{type=\"pod\"}, 1000)",
        "clamp(cpu_usage_rate{type=\"pod\"}, 30, 80)",
        "clamp_min(cpu_usage_rate{type=\"pod\"}, 50)",
        "clamp_max(cpu_usage_rate{type=\"pod\"}, 50)",
        "sgn(cpu_usage_rate{type=\"pod\"} - 60)",
        "log2(memory_usage{type=\"node\"}) + log10(memory_usage{type=\"node\"})",
        "cpu_usage_rate{type=\"pod\"} % 7",
        "cpu_usage_rate{type=\"pod\"} ^ 2",
        "cpu_usage_rate{type=\"node\"} == bool on (nodename) cpu_usage_rate{type=\"node\"}",
        "sum by (namespace_name) (cpu_usage_rate{type=\"pod\"}) > on (namespace_name) group_left sum by (namespace_name) (cpu_usage_rate{type=\"pod\"}) * 0.5",
        "count(count by (nodename) (cpu_usage_rate))",
        "max(cpu_usage_rate{type=\"pod\"}) - min(cpu_usage_rate{type=\"pod\"})",
        "timestamp(cpu_usage_rate{type=\"node\"})",
        "minute(vector(time()))",
        "day_of_week(vector(time()))",
        "sort(cpu_usage_rate{type=\"node\"})",
        "avg(rate(cpu_usage_total{type=\"pod_container\"}[10s])) by (namespace_name) / 1e9",
        "count_over_time({__name__=~\".+\"}[40s])",
        "rate({__name__=~\"network_.x_total\",type=\"node\"}[10s])",
        "histogram_quantile(0.5, sum by (le) (label_replace(cpu_usage_rate{type=\"pod\"}, \"le\", \"$1\", \"pod_name\", \"pod-000.-00(.)\")))",
    ] {
        add(&mut q, s.to_string());
    }
    q
}

/// The range-query part of the corpus (evaluated at every step over 20 s).
fn range_corpus() -> Vec<String> {
    [
        "sum by (namespace_name) (cpu_usage_rate{type=\"pod\"})",
        "cpu_usage_rate{type=\"node\"}",
        "memory_working_set{type=\"pod\"}",
        "rate(network_rx_total{type=\"pod\"}[5s])",
        "irate(network_tx_total{type=\"node\"}[5s])",
        "increase(cpu_usage_total{type=\"node\"}[10s])",
        "sum(rate(network_rx_total{type=\"pod\"}[5s]))",
        "avg_over_time(memory_usage{type=\"node\"}[10s])",
        "max_over_time(cpu_usage_rate{type=\"pod\"}[5s])",
        "count by (type) (cpu_usage_rate)",
        "quantile(0.5, memory_working_set{type=\"pod\"})",
        "stddev(cpu_usage_rate{type=\"pod_container\"})",
        "deriv(memory_usage{type=\"node\"}[10s])",
        "cpu_usage_rate{type=\"node\"} offset 4s",
        "sum(cpu_usage_rate{type=\"pod\"}) / sum(cpu_usage_rate{type=\"node\"})",
        "memory_working_set{type=\"pod\"} / on (namespace_name, pod_name) memory_usage{type=\"pod\"}",
        "changes(cpu_usage_rate{type=\"pod\"}[10s])",
        "resets(network_rx_total{type=\"pod\"}[10s])",
        "max_over_time(sum(memory_usage{type=\"pod\"})[10s:2s])",
        "vector(time())",
        "time()",
        "absent(nope)",
        "clamp_max(cpu_usage_rate{type=\"pod\"}, 50)",
        "label_replace(memory_usage{type=\"node\"}, \"x\", \"$1\", \"nodename\", \"(.*)\")",
        "count_over_time(cpu_usage_rate{type=\"node\"}[7s])",
        "last_over_time(network_rx_rate{type=\"pod\"}[3s])",
        "predict_linear(memory_usage{type=\"node\"}[10s], 30)",
        "sum by (nodename) (filesystem_usage{type=\"node\"})",
        "cpu_usage_rate{type=\"pod\"} > 60",
        "cpu_usage_rate{type=\"pod\"} > bool 60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_answers_as_prometheus_on_the_same_samples() {
    let prom = sinks::Prometheus::start(None).await;
    let sink = format!("prometheus-remote-write:{}/api/v1/write", prom.url());
    let c = Cluster::start(
        Shape {
            nodes: 3,
            pods_per_node: 4,
            containers_per_pod: 2,
            namespaces: 3,
        },
        &["--sink", &sink],
    )
    .await;
    c.wait_for_rates().await;
    // 30 rounds of history, then evaluate 3.5 s in the past (all samples written by then).
    tokio::time::sleep(Duration::from_secs(30)).await;
    let t = (chrono::Utc::now().timestamp() - 3) as f64 + 0.5;
    let b = c.base().to_string();
    let check = "sum(count_over_time(cpu_usage_rate[40s])) + sum(count_over_time(memory_usage[40s])) + sum(count_over_time(network_rx_total[40s]))";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = ask(&b, check, None, t).await;
        let p = ask(&prom.url(), check, None, t).await;
        if let (Ok(v), Ok(p)) = (&v, &p) {
            if differs(v, p, false).is_none() {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus never held the aggregator's samples: vigil {v:?}, prometheus {p:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let mut failures = Vec::new();
    let mut total = 0;
    for (q, values_only) in corpus(t) {
        total += 1;
        let (v, p) = (ask(&b, &q, None, t).await, ask(&prom.url(), &q, None, t).await);
        match (v, p) {
            (Ok(v), Ok(p)) => {
                if let Some(d) = differs(&v, &p, values_only) {
                    failures.push(format!("instant {q}: {d}"));
                }
            }
            // The same refusal (HTTP code and errorType) counts as the same answer.
            (Err(v), Err(p)) if v == p => {}
            (v, p) => failures.push(format!("instant {q}: vigil {:?} / prometheus {:?}", v.err(), p.err())),
        }
    }
    for q in range_corpus() {
        for (span, step) in [(20.0, 2.0), (21.0, 3.0)] {
            total += 1;
            let r = Some((t - span, t, step));
            let (v, p) = (ask(&b, &q, r, t).await, ask(&prom.url(), &q, r, t).await);
            match (v, p) {
                (Ok(v), Ok(p)) => {
                    if let Some(d) = differs(&v, &p, false) {
                        failures.push(format!("range {q} step {step}: {d}"));
                    }
                }
                (Err(v), Err(p)) if v == p => {}
                (v, p) => failures.push(format!(
                    "range {q} step {step}: vigil {:?} / prometheus {:?}",
                    v.err(),
                    p.err()
                )),
            }
        }
    }
    eprintln!("prometheus comparison: {} of {total} queries equal", total - failures.len());
    assert!(total >= 150, "corpus of {total}");
    assert!(
        failures.is_empty(),
        "{} of {total} queries differ from Prometheus 2.42:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
