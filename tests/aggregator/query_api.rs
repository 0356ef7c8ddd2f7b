//! The aggregator as a Prometheus query server, end to end: simulated nodes, the real
//! `vigil aggregator`, real clients (`promtool query`, the exact requests Grafana's Prometheus
//! data source sends), bad input, and a too-expensive query failing alone.

use std::time::{Duration, Instant};

use crate::support::free_port;
use crate::support::query::*;
use serde_json::Value;
use vigil_aggregator::sim::{self, Shape, Sim};

fn shape() -> Shape {
    Shape {
        nodes: 3,
        pods_per_node: 3,
        containers_per_pod: 2,
        namespaces: 2,
    }
}

/// Pod CPU by namespace as the simulator sets it (millicores).
fn cpu_by_namespace(sim: &Sim) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for n in 0..sim.shape.nodes {
        for p in 0..sim.shape.pods_per_node {
            let (_, ns) = sim::pod_ref(&sim.shape, n, p);
            let v: u64 = (0..sim.shape.containers_per_pod)
                .map(|c| sim::container_millicores(p, c))
                .sum();
            *out.entry(ns).or_insert(0.0) += v as f64;
        }
    }
    out
}

fn now_s() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// Metadata routes, names as the remote_write sink writes them, and every route Grafana calls
/// outside of queries; these need no engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_labels_metadata_and_grafana_resource_calls() {
    let c = Cluster::start(shape(), &[]).await;
    c.wait_for_rates().await;
    let b = c.base();

    // /api/v1/series: the sink's names and labels (no empty values, sanitized names).
    let (s, v) = get_params(
        &format!("{b}/api/v1/series"),
        &[("match[]", "memory_working_set{type=\"pod\"}")],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "success");
    let series = v["data"].as_array().unwrap();
    assert_eq!(series.len(), 9, "{v}");
    let (pod, ns) = sim::pod_ref(&c.sim.shape, 1, 2);
    let one = series
        .iter()
        .find(|l| l["pod_name"] == pod.as_str())
        .unwrap_or_else(|| panic!("no {pod}: {v}"));
    assert_eq!(one["__name__"], "memory_working_set");
    assert_eq!(one["namespace_name"], ns.as_str());
    assert_eq!(one["type"], "pod");
    assert_eq!(one["nodename"], sim::node_name(1).as_str());
    for l in series {
        for (k, val) in l.as_object().unwrap() {
            assert!(!val.as_str().unwrap().is_empty(), "empty {k}: {l}");
            assert!(
                k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "label name {k}"
            );
        }
    }
    // Counters carry _total; several match[] are merged and deduplicated.
    let (s, v) = get(&format!(
        "{b}/api/v1/series?match[]=network_rx_total{{type=%22node%22}}&match[]=network_rx_total{{type=~%22no.e%22}}"
    ))
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 3, "{v}");

    // Label names, sorted; label values of __name__ (Grafana's metric list).
    let (s, v) = get(&format!("{b}/api/v1/labels")).await;
    assert_eq!(s, 200, "{v}");
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    for want in ["__name__", "namespace_name", "nodename", "pod_name", "resource_id", "type"] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let (s, v) = get(&format!(
        "{b}/api/v1/label/__name__/values?start={}&end={}&limit=40000",
        (now_s() / 60.0).floor() * 60.0 - 3600.0,
        (now_s() / 60.0).ceil() * 60.0
    ))
    .await;
    assert_eq!(s, 200, "{v}");
    let metrics: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for want in [
        "cpu_usage_rate",
        "cpu_usage_total",
        "memory_working_set",
        "network_rx_total",
        "network_rx_rate",
        "filesystem_usage",
    ] {
        assert!(metrics.contains(&want), "{want} in {metrics:?}");
    }
    assert!(!metrics.iter().any(|m| m.contains('/')), "{metrics:?}");
    // Grafana's label names with match[] and minute-rounded times, POST (configured method)
    // and GET (its retry).
    let start = format!("{}", (now_s() / 60.0).floor() * 60.0 - 3600.0);
    let end = format!("{}", (now_s() / 60.0).ceil() * 60.0);
    let params = [
        ("match[]", "filesystem_usage{type=\"node\"}"),
        ("start", start.as_str()),
        ("end", end.as_str()),
        ("limit", "40000"),
    ];
    for got in [
        post_form(&format!("{b}/api/v1/labels"), &params).await,
        get_params(&format!("{b}/api/v1/labels"), &params).await,
    ] {
        assert_eq!(got.0, 200, "{}", got.1);
        let names = got.1["data"].as_array().unwrap();
        assert!(names.contains(&Value::from("resource_id")), "{}", got.1);
        assert!(!names.contains(&Value::from("pod_name")), "{}", got.1);
    }
    // Label values with match[], a U__-escaped name, and limit with its warning.
    let (s, v) = get(&format!(
        "{b}/api/v1/label/U__namespace__name/values?match[]=cpu_usage_rate{{type=%22pod%22}}"
    ))
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"], serde_json::json!(["ns-0", "ns-1"]));
    let (s, v) = get(&format!("{b}/api/v1/label/pod_name/values?limit=2")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["warnings"][0], "results truncated due to limit");

    // Metadata: HELP and TYPE of vigil's names, as the sink's exposition has them.
    let (s, v) = get(&format!("{b}/api/v1/metadata?limit=40000")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["network_rx_total"][0]["type"], "counter", "{v}");
    assert_eq!(v["data"]["cpu_usage_rate"][0]["type"], "gauge", "{v}");
    assert_eq!(
        v["data"]["cpu_usage_rate"][0]["help"],
        "CPU usage on all cores in millicores (Heapster cpu/usage_rate)"
    );
    let (s, v) = get(&format!("{b}/api/v1/metadata?metric=memory_working_set")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"].as_object().unwrap().len(), 1, "{v}");
    let e = assert_error(
        &get(&format!("{b}/api/v1/metadata?limit=abc")).await,
        400,
        "bad_data",
        "metadata limit",
    );
    assert_eq!(e, "limit must be a number");

    // buildinfo as Prometheus, without `features` (Grafana then treats vigil as Prometheus).
    let (s, v) = get(&format!("{b}/api/v1/status/buildinfo")).await;
    assert_eq!(s, 200, "{v}");
    for k in ["version", "revision", "branch", "buildUser", "buildDate", "goVersion"] {
        assert!(v["data"][k].is_string(), "{k}: {v}");
    }
    assert!(v["data"].get("features").is_none(), "{v}");
    // The exemplar probe of the data source's init: POST, milliseconds as start/end.
    let ms = format!("{}", (now_s() * 1000.0) as i64);
    let (s, v) = post_form(
        &format!("{b}/api/v1/query_exemplars"),
        &[("query", "test"), ("start", &ms), ("end", &ms)],
    )
    .await;
    assert_eq!((s, v.clone()), (200, serde_json::json!({"status":"success","data":[]})));
    // Rules and alerts: Prometheus's empty shapes until alerting fills them; GET only (405).
    let (s, v) = get(&format!("{b}/api/v1/rules")).await;
    assert_eq!((s, &v["data"]), (200, &serde_json::json!({"groups": []})));
    let (s, v) = get(&format!("{b}/api/v1/alerts")).await;
    assert_eq!((s, &v["data"]), (200, &serde_json::json!({"alerts": []})));
    assert_eq!(post_form(&format!("{b}/api/v1/rules"), &[]).await.0, 405);
    assert_eq!(
        post_form(&format!("{b}/api/v1/label/__name__/values"), &[]).await.0,
        405
    );
    // format_query.
    let (s, v) = get_params(&format!("{b}/api/v1/format_query"), &[("query", "foo/bar")]).await;
    assert_eq!((s, &v["data"]), (200, &Value::from("foo / bar")), "{v}");
    // promtool's series and label-values queries.
    let (ok, out, err) = promtool(&["series", "--match=cpu_usage_rate{type=\"ns\"}", b]);
    assert!(ok, "promtool series: {err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("__name__=\"cpu_usage_rate\""), "{out}");
    let (ok, out, err) = promtool(&["labels", b, "namespace_name"]);
    assert!(ok, "promtool labels: {err}");
    assert_eq!(out.split_whitespace().collect::<Vec<_>>(), vec!["ns-0", "ns-1"], "{out}");
}

/// Queries through the engine with real clients: Grafana's health check and panel requests,
/// promtool's instant and range queries, with the values the simulator implies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_from_grafana_and_promtool() {
    let c = Cluster::start(shape(), &[]).await;
    c.wait_for_rates().await;
    // A few rounds of rates, so a range aligned down to its step holds some.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let b = c.base();

    // "Save & test": POST /api/v1/query with body query=1%2B1&time=4.
    let (s, v) = post_form(&format!("{b}/api/v1/query"), &[("query", "1+1"), ("time", "4")]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        serde_json::json!({"status":"success","data":{"resultType":"scalar","result":[4,"2"]}})
    );

    // A panel: query_range POST with float seconds, start and end multiples of step.
    let step = 2.0;
    let end = (now_s() / step).floor() * step;
    let start = end - 20.0;
    let (s, v) = post_form(
        &format!("{b}/api/v1/query_range"),
        &[
            ("query", "sum by (namespace_name) (cpu_usage_rate{type=\"pod\"})"),
            ("start", &format!("{start}")),
            ("end", &format!("{end}")),
            ("step", &format!("{step}")),
        ],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix", "{v}");
    let want = cpu_by_namespace(&c.sim);
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), want.len(), "{v}");
    for series in result {
        let ns = series["metric"]["namespace_name"].as_str().unwrap();
        assert_eq!(series["metric"].as_object().unwrap().len(), 1, "{series}");
        let values = series["values"].as_array().unwrap();
        assert!(!values.is_empty());
        let last = values.last().unwrap();
        // Timestamps are JSON numbers on the step grid, values strings.
        let t = last[0].as_f64().unwrap();
        assert!(t <= end && ((t - start) / step).fract() == 0.0, "{last}");
        let got: f64 = last[1].as_str().unwrap().parse().unwrap();
        assert!((got - want[ns]).abs() <= 3.0 * 9.0, "{ns}: {got} vs {}", want[ns]);
    }
    // An instant panel (time = the range's unaligned end), GET as Grafana's frontend default.
    let (pod, ns) = sim::pod_ref(&c.sim.shape, 2, 1);
    let q = format!("memory_working_set{{type=\"pod\",pod_name=\"{pod}\",namespace_name=\"{ns}\"}}");
    let (s, v) = get_params(
        &format!("{b}/api/v1/query"),
        &[("query", &q), ("time", &format!("{}", now_s()))],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "vector");
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 1, "{v}");
    let want: u64 = (0..2).map(|ci| sim::container_working_set(1, ci)).sum();
    assert_eq!(value(&r[0]), want as f64, "{v}");
    assert!(r[0]["value"][0].is_number());
    // A range selector in an instant query is a matrix with the samples' own timestamps.
    let (s, v) = get_params(
        &format!("{b}/api/v1/query"),
        &[("query", &format!("{q}[5s]"))],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["resultType"], "matrix");
    assert!(!v["data"]["result"][0]["values"].as_array().unwrap().is_empty());
    // query_result() variables and the query editor: topk over rates of counters, at one
    // time: the two largest of all the pods' rates.
    let at = format!("{}", now_s() - 1.0);
    let rates = "rate(network_rx_total{type=\"pod\"}[5s])";
    let (s, v) = post_form(
        &format!("{b}/api/v1/query"),
        &[("query", &format!("topk(2, {rates})")), ("time", &at)],
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let mut top: Vec<f64> = v["data"]["result"].as_array().unwrap().iter().map(value).collect();
    top.sort_by(|a, b| b.total_cmp(a));
    let (s, all) = post_form(&format!("{b}/api/v1/query"), &[("query", rates), ("time", &at)]).await;
    assert_eq!(s, 200, "{all}");
    let mut all: Vec<f64> = all["data"]["result"].as_array().unwrap().iter().map(value).collect();
    assert_eq!(all.len(), 9);
    all.sort_by(|a, b| b.total_cmp(a));
    assert_eq!(top, all[..2].to_vec());
    assert!(top.iter().all(|r| *r > 0.0), "{top:?}");

    // promtool query instant and range.
    let (ok, out, err) = promtool(&[
        "instant",
        b,
        "sum by (namespace_name) (cpu_usage_rate{type=\"pod\"})",
    ]);
    assert!(ok, "promtool instant: {err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("{namespace_name=\"ns-0\"} =>"), "{out}");
    let (ok, out, err) = promtool(&[
        "range",
        &format!("--start={}", (now_s() - 10.0) as i64),
        &format!("--end={}", now_s() as i64),
        "--step=1s",
        b,
        "count(cpu_usage_rate{type=\"pod\"})",
    ]);
    assert!(ok, "promtool range: {err}");
    assert!(out.contains("9 @["), "{out}");
}

/// Bad input of every kind: a clear Prometheus error with the right code and type, and the
/// aggregator keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_the_aggregator_keeps_serving() {
    let c = Cluster::start(shape(), &[]).await;
    c.wait_for_rates().await;
    let b = c.base();
    let q = format!("{b}/api/v1/query");
    let qr = format!("{b}/api/v1/query_range");

    let e = assert_error(&get(&q).await, 400, "bad_data", "no query");
    assert!(e.contains("invalid parameter \"query\""), "{e}");
    let e = assert_error(
        &get_params(&q, &[("query", "sum(rate(x[5m])")]).await,
        400,
        "bad_data",
        "unbalanced parenthesis",
    );
    assert!(e.starts_with("invalid parameter \"query\": 1:"), "names the position: {e}");
    let e = assert_error(
        &get_params(&q, &[("query", "no_such_function(cpu_usage_rate)")]).await,
        400,
        "bad_data",
        "unknown function",
    );
    assert!(e.contains("no_such_function"), "{e}");
    let e = assert_error(
        &get_params(&q, &[("query", "1"), ("time", "yesterday")]).await,
        400,
        "bad_data",
        "bad time",
    );
    assert_eq!(
        e,
        "invalid parameter \"time\": cannot parse \"yesterday\" to a valid timestamp"
    );
    let e = assert_error(
        &get_params(&q, &[("query", "1"), ("timeout", "soon")]).await,
        400,
        "bad_data",
        "bad timeout",
    );
    assert!(e.contains("\"timeout\""), "{e}");
    let range = |start: &str, end: &str, step: &str| {
        vec![
            ("query".to_string(), "cpu_usage_rate".to_string()),
            ("start".to_string(), start.to_string()),
            ("end".to_string(), end.to_string()),
            ("step".to_string(), step.to_string()),
        ]
    };
    for (params, want) in [
        (range("100", "50", "1"), "end timestamp must not be before start time"),
        (range("0", "100", "0"), "zero or negative query resolution step widths are not accepted"),
        (range("0", "100", "-5"), "zero or negative query resolution step widths are not accepted"),
        (range("0", "100", "soon"), "invalid parameter \"step\""),
        (range("x", "100", "1"), "invalid parameter \"start\""),
        (range("0", "2024-13-01T00:00:00Z", "1"), "invalid parameter \"end\""),
        (range("0", "100000", "1"), "exceeded maximum resolution of 11,000 points per timeseries"),
    ] {
        let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let e = assert_error(&post_form(&qr, &p).await, 400, "bad_data", want);
        assert!(e.contains(want), "{want}: {e}");
    }
    // A range query over a range vector is refused as Prometheus refuses it.
    let e = assert_error(
        &post_form(
            &qr,
            &[("query", "cpu_usage_rate[1m]"), ("start", "0"), ("end", "10"), ("step", "1")],
        )
        .await,
        400,
        "bad_data",
        "range vector in a range query",
    );
    assert!(e.contains("range vector"), "{e}");
    // series/labels: match[] required, non-empty, a selector; bounded in number and body size.
    let s = format!("{b}/api/v1/series");
    assert_eq!(
        assert_error(&get(&s).await, 400, "bad_data", "no match[]"),
        "no match[] parameter provided"
    );
    let e = assert_error(
        &get_params(&s, &[("match[]", "{pod_name=~\".*\"}")]).await,
        400,
        "bad_data",
        "empty matchers",
    );
    assert!(e.contains("at least one non-empty matcher"), "{e}");
    assert_error(
        &get_params(&s, &[("match[]", "rate(x[5m])")]).await,
        400,
        "bad_data",
        "not a selector",
    );
    assert_error(
        &get_params(&s, &[("match[]", "up{")]).await,
        400,
        "bad_data",
        "unparsable selector",
    );
    let many: Vec<(&str, String)> = (0..1001)
        .map(|i| ("match[]", format!("cpu_usage_rate{{pod_name=\"p{i}\"}}")))
        .collect();
    let many_ref: Vec<(&str, &str)> = many.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let e = assert_error(&post_form(&s, &many_ref).await, 400, "bad_data", "1001 match[]");
    assert!(e.contains("at most 1000"), "{e}");
    let huge = "x".repeat(3 << 20);
    let got = post_form(&format!("{b}/api/v1/labels"), &[("match[]", huge.as_str())]).await;
    assert_error(&got, 413, "bad_data", "3 MiB body");
    assert_error(
        &get(&format!("{b}/api/v1/label/U__zz_/values")).await,
        400,
        "bad_data",
        "bad escaped label name",
    );
    let (st, v) = read_raw(
        client()
            .post(&q)
            .header("content-type", "application/json")
            .body("{\"query\":\"1\"}")
            .send()
            .await,
    )
    .await;
    assert_error(&(st, v), 400, "bad_data", "JSON body");

    // Still serving: the Heapster API, health, and a good query.
    let (s, _) = get(&format!("{b}/healthz")).await;
    assert_eq!(s, 200);
    let (s, v) = get_params(&q, &[("query", "count(cpu_usage_rate{type=\"pod\"})")]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(value(&v["data"]["result"][0]), 9.0);
}

async fn read_raw(r: reqwest::Result<reqwest::Response>) -> (u16, Value) {
    let r = r.unwrap();
    let s = r.status().as_u16();
    let t = r.text().await.unwrap();
    (s, serde_json::from_str(&t).unwrap_or(Value::String(t)))
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// A query over too many samples fails with 422, one running too long with 503; while several
/// expensive queries run (more than the concurrency limit), rounds continue and the other
/// routes answer promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expensive_query_fails_alone() {
    let c = Cluster::start(
        Shape {
            nodes: 10,
            pods_per_node: 10,
            containers_per_pod: 2,
            namespaces: 4,
        },
        &[
            "--query-max-samples",
            "5000",
            "--query-timeout",
            "3s",
            "--query-max-concurrency",
            "1",
        ],
    )
    .await;
    c.wait_for_rates().await;
    let b = c.base().to_string();
    let q = format!("{b}/api/v1/query");
    let e = assert_error(
        &get_params(&q, &[("query", "{__name__=~\".+\"}[10m]")]).await,
        422,
        "execution",
        "too many samples",
    );
    assert!(e.contains("too many samples") && e.contains("5000"), "{e}");
    // CPU-bound queries (a subquery of a subquery: 10,000 × 10,000 steps), more than the one
    // slot: each ends in 503 timeout (or 422 if it holds too many points first).
    let heavy = |i: usize| {
        let url = format!("{b}/api/v1/query");
        async move {
            let q = format!(
                "max_over_time(max_over_time(sum(cpu_usage_rate{{type=\"node\",pod_name!=\"x{i}\"}})[100s:10ms])[100s:10ms])"
            );
            post_form(&url, &[("query", q.as_str())]).await
        }
    };
    let rounds_before = metric(&get_text(&format!("{b}/metrics")).await, "vigil_aggregator_rounds_total").unwrap();
    let storm: Vec<_> = (0..4).map(|i| tokio::spawn(heavy(i))).collect();
    // Meanwhile: health and the model API answer promptly, rounds go on.
    let mut worst = Duration::ZERO;
    let mut worst_url = String::new();
    let (pod, ns) = sim::pod_ref(&c.sim.shape, 0, 0);
    for _ in 0..10 {
        for url in [
            format!("{b}/healthz"),
            format!("{b}/api/v1/model/namespaces/{ns}/pods/{pod}/metrics/cpu/usage_rate"),
            format!("{b}/api/v1/labels"),
        ] {
            let t = Instant::now();
            let (s, v) = get(&url).await;
            if t.elapsed() > worst {
                worst = t.elapsed();
                worst_url = url.clone();
            }
            assert_eq!(s, 200, "{url}: {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for h in storm {
        let (s, v) = h.await.unwrap();
        assert!(
            (s == 503 && v["errorType"] == "timeout") || (s == 422 && v["errorType"] == "execution"),
            "{s} {v}"
        );
    }
    let rounds_after = metric(&get_text(&format!("{b}/metrics")).await, "vigil_aggregator_rounds_total").unwrap();
    assert!(rounds_after >= rounds_before + 2.0, "rounds stalled: {rounds_before} → {rounds_after}");
    // Generous for a loaded 2-core CI machine; a route waiting for the queries would take
    // their 3 s timeout.
    assert!(worst < Duration::from_millis(1500), "{worst_url} slowed to {worst:?}");
    // And the next ordinary query works.
    let (s, v) = get_params(&q, &[("query", "count(cpu_usage_rate{type=\"pod\"})")]).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(value(&v["data"]["result"][0]), 100.0);
}

async fn get_text(url: &str) -> String {
    client().get(url).send().await.unwrap().text().await.unwrap()
}

/// The query API is served over TLS on --secure-listen, as the rest of the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_api_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let secure = format!("127.0.0.1:{}", free_port());
    let cert_dir = dir.path().join("certs");
    let c = Cluster::start(
        shape(),
        &["--secure-listen", &secure, "--cert-dir", cert_dir.to_str().unwrap()],
    )
    .await;
    c.wait_for_rates().await;
    let cert = std::fs::read(cert_dir.join("apiserver.crt")).unwrap();
    let tls = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let v: Value = tls
        .get(format!("https://{secure}/api/v1/label/type/values"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "success", "{v}");
    assert!(v["data"].as_array().unwrap().contains(&Value::from("pod")), "{v}");
}
