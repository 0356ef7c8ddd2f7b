//! vigil's Grafana dashboards (dashboards/grafana/*.json) as Grafana would run them: each file
//! is checked against Grafana's dashboard JSON model, its variables are resolved through the
//! data source and substituted the way Grafana does ($__rate_interval, $__interval, $__range,
//! $timeFilter, multi-value regexes), and every panel query runs against the real peers: the
//! Kubernetes dashboards against a live aggregator's PromQL API, "vigil itself" against a real
//! Prometheus scraping vigil's /metrics, the InfluxQL ones against the real InfluxDB that the
//! aggregator's influxdb sink fills. Each must return data.

use crate::support::sinks;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::aggregator::{Aggregator, Collector, SimNode};
use crate::support::{free_port, until};
use serde_json::Value;
use vigil_aggregator::sim::{Shape, Sim};

/// Metrics only the Kubernetes API source gives (requests, limits, CPU capacity): their
/// targets must run without error, but this cluster (no API server) has no samples for them.
const NEEDS_KUBE_API: &[&str] = &["cpu_request", "cpu_limit", "memory_request", "memory_limit", "cpu_node_capacity", "cpu_node_allocatable"];

/// Grafana's panel types the dashboards may use.
const PANEL_TYPES: &[&str] = &["timeseries", "stat", "table", "gauge", "bargauge", "row", "text"];

/// The time range the queries run over and Grafana's values for it.
const RANGE_S: i64 = 600;
const STEP_S: i64 = 15;
/// The data source's scrape interval (`timeInterval`, Grafana's default 15s).
const SCRAPE_S: i64 = 15;

fn dashboards() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/grafana");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn kind_of(d: &Value) -> &'static str {
    let ds = d["templating"]["list"].as_array().unwrap().iter().find(|v| v["type"] == "datasource").expect("a $datasource variable");
    match ds["query"].as_str() {
        Some("prometheus") => "prometheus",
        Some("influxdb") => "influxdb",
        other => panic!("data source variable of type {other:?}"),
    }
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        out.extend(p["panels"].as_array().into_iter().flatten());
    }
    out
}

/// Grafana's dashboard JSON model: the fields Grafana needs, sane layout, known panel types,
/// targets on the dashboard's data source, every `$variable` defined.
fn check_model(name: &str, d: &Value) {
    let sv = d["schemaVersion"].as_u64().unwrap_or_else(|| panic!("{name}: schemaVersion"));
    assert!((36..=41).contains(&sv), "{name}: schemaVersion {sv}");
    let uid = d["uid"].as_str().unwrap_or_default();
    assert!(!uid.is_empty() && uid.len() <= 40, "{name}: uid {uid:?}");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}: title");
    assert!(d["time"]["from"].is_string() && d["time"]["to"].is_string(), "{name}: time");
    let kind = kind_of(d);
    let vars: Vec<&Value> = d["templating"]["list"].as_array().unwrap().iter().collect();
    let mut names = BTreeSet::new();
    for v in &vars {
        let n = v["name"].as_str().unwrap();
        assert!(names.insert(n.to_string()), "{name}: variable {n} twice");
        assert!(["datasource", "query", "custom", "interval", "constant"].contains(&v["type"].as_str().unwrap()), "{name}: variable {n} type");
        if v["type"] == "query" {
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}: variable {n} data source");
        }
    }
    for want in ["datasource"] {
        assert!(names.contains(want), "{name}: no ${want}");
    }
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(i64, i64, i64, i64, String)> = Vec::new();
    for p in panels(d) {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        let id = p["id"].as_i64().unwrap_or_else(|| panic!("{name}: panel {title:?} without id"));
        assert!(ids.insert(id), "{name}: panel id {id} twice");
        let ty = p["type"].as_str().unwrap();
        assert!(PANEL_TYPES.contains(&ty), "{name}: panel {title:?} type {ty}");
        let g = &p["gridPos"];
        let (x, y, w, h) = (g["x"].as_i64().unwrap(), g["y"].as_i64().unwrap(), g["w"].as_i64().unwrap(), g["h"].as_i64().unwrap());
        assert!(x >= 0 && y >= 0 && (1..=24).contains(&w) && h >= 1 && x + w <= 24, "{name}: panel {title:?} gridPos {g}");
        for b in &boxes {
            let overlap = x < b.0 + b.2 && b.0 < x + w && y < b.1 + b.3 && b.1 < y + h;
            assert!(!overlap, "{name}: panels {title:?} and {:?} overlap", b.4);
        }
        boxes.push((x, y, w, h, title.clone()));
        if ty == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}: panel {title:?} data source");
        assert_eq!(p["datasource"]["type"], kind, "{name}: panel {title:?} data source type");
        let targets = p["targets"].as_array().unwrap_or_else(|| panic!("{name}: panel {title:?} without targets"));
        assert!(!targets.is_empty(), "{name}: panel {title:?} has no target");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(refs.insert(t["refId"].as_str().unwrap().to_string()), "{name}: panel {title:?} refId twice");
            let text = match kind {
                "prometheus" => t["expr"].as_str().unwrap_or_else(|| panic!("{name}: {title:?}: target without expr")),
                _ => {
                    assert_eq!(t["rawQuery"], true, "{name}: {title:?}: InfluxQL targets are raw queries");
                    t["query"].as_str().unwrap()
                }
            };
            for v in used_vars(text) {
                let global = v.starts_with("__") || v == "timeFilter" || v == "interval";
                assert!(global || names.contains(&v), "{name}: {title:?} uses ${v}, not defined");
            }
        }
    }
}

/// `$name` and `${name}` references in a query.
fn used_vars(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = q.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let braced = b.get(i + 1) == Some(&b'{');
            let start = i + 1 + braced as usize;
            let end = start + b[start..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
            if end > start {
                out.push(q[start..end].to_string());
            }
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Grafana's Prometheus interpolation of a variable's values: a multi-value or "All" variable
/// becomes `(a|b)` with regex characters escaped; a single value is escaped for a string literal.
fn prom_format(values: &[String], multi: bool) -> String {
    if multi {
        let esc: Vec<String> = values
            .iter()
            .map(|v| {
                let mut s = String::new();
                for c in v.chars() {
                    if "$^*{}[]'+?.()|\\".contains(c) {
                        s.push_str("\\\\");
                    }
                    s.push(c);
                }
                s
            })
            .collect();
        format!("({})", esc.join("|"))
    } else {
        values[0].replace('\\', "\\\\").replace('\'', "\\'")
    }
}

/// Grafana's InfluxDB interpolation: multi-value → `(a|b)` regex-escaped, a single value as is.
fn influx_format(values: &[String], multi: bool) -> String {
    if multi {
        let esc: Vec<String> = values.iter().map(|v| regex_escape(v)).collect();
        format!("({})", esc.join("|"))
    } else {
        values[0].clone()
    }
}

fn regex_escape(v: &str) -> String {
    v.chars().flat_map(|c| if "\\^$*+?.()|{}[]/".contains(c) { vec!['\\', c] } else { vec![c] }).collect()
}

/// Grafana's built-in variables for the test's range and step.
fn globals(kind: &str) -> Vec<(&'static str, String)> {
    let rate = (STEP_S + SCRAPE_S).max(4 * SCRAPE_S);
    let mut g = vec![
        ("$__rate_interval", format!("{rate}s")),
        ("${__rate_interval}", format!("{rate}s")),
        ("$__interval", format!("{STEP_S}s")),
        ("${__interval}", format!("{STEP_S}s")),
        ("$__range", format!("{}m", RANGE_S / 60)),
        ("${__range}", format!("{}m", RANGE_S / 60)),
        ("$interval", format!("{STEP_S}s")),
    ];
    if kind == "influxdb" {
        g.push(("$timeFilter", format!("time >= now() - {}m", RANGE_S / 60)));
    }
    g
}

fn substitute(q: &str, vars: &BTreeMap<String, String>, kind: &str) -> String {
    let mut s = q.to_string();
    for (k, v) in globals(kind) {
        s = s.replace(k, &v);
    }
    // Longest names first, so `$pod` does not eat `$podname`.
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for n in names {
        s = s.replace(&format!("${{{n}}}"), &vars[n]).replace(&format!("${n}"), &vars[n]);
    }
    s
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn prom(&self, path: &str, form: &[(&str, String)]) -> Value {
        // Grafana's data source posts forms (httpMethod POST, its backend's default).
        let r = self.client.post(format!("{}{path}", self.base)).form(form).send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert!(status.is_success() && body["status"] == "success", "POST {path} {form:?}: {status} {body}");
        body
    }

    async fn label_values(&self, query: &str) -> Vec<String> {
        // label_values(<selector>, <label>) or label_values(<label>), as Grafana's variable editor.
        let inner = query.strip_prefix("label_values(").and_then(|r| r.strip_suffix(')')).unwrap_or_else(|| panic!("variable query {query}"));
        let (selector, label) = match inner.rsplit_once(',') {
            Some((s, l)) => (Some(s.trim()), l.trim()),
            None => (None, inner.trim()),
        };
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/label/{label}/values", self.base)).unwrap();
        let end = now();
        url.query_pairs_mut().append_pair("start", &(end - RANGE_S).to_string()).append_pair("end", &end.to_string()).append_pair("limit", "40000");
        if let Some(s) = selector {
            url.query_pairs_mut().append_pair("match[]", s);
        }
        let body: Value = self.client.get(url.clone()).send().await.unwrap().json().await.unwrap();
        assert_eq!(body["status"], "success", "{url}: {body}");
        body["data"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    }

    async fn influx(&self, q: &str) -> Value {
        let r = self.client.get(format!("{}/query", self.base)).query(&[("db", "k8s"), ("q", q), ("epoch", "ms")]).send().await.unwrap();
        let body: Value = r.json().await.unwrap();
        let res = &body["results"][0];
        assert!(res.get("error").is_none() && body.get("error").is_none(), "InfluxQL {q}: {body}");
        res.clone()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Resolves the dashboard's query variables in order, as Grafana does on load: each variable's
/// query (with earlier variables substituted) lists its values; a multi-value variable takes
/// them all ("All"), a single-value one the first.
async fn resolve_vars(d: &Value, api: &Api, kind: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] != "query" {
            continue;
        }
        let name = v["name"].as_str().unwrap().to_string();
        let multi = v["multi"] == true || v["includeAll"] == true;
        let values = match kind {
            "prometheus" => {
                let q = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap();
                api.label_values(&substitute(q, &vars, kind)).await
            }
            _ => {
                let q = substitute(v["query"].as_str().unwrap(), &vars, kind);
                let res = api.influx(&q).await;
                let mut vals: Vec<String> = res["series"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| s["values"].as_array().unwrap().iter().map(|r| r[1].as_str().unwrap().to_string()))
                    .collect();
                vals.sort();
                vals.dedup();
                vals
            }
        };
        assert!(!values.is_empty(), "variable ${name} has no values");
        // A single-valued namespace should have pods: prefer a simulated one.
        let values = if multi { values } else { vec![values.iter().find(|v| v.starts_with("ns-") || v.starts_with("node-")).unwrap_or(&values[0]).clone()] };
        let formatted = if kind == "prometheus" { prom_format(&values, multi) } else { influx_format(&values, multi) };
        vars.insert(name, formatted);
    }
    vars
}

/// Runs every target of a dashboard; returns the number of targets that returned data.
async fn run_dashboard(name: &str, d: &Value, api: &Api) -> usize {
    let kind = kind_of(d);
    let vars = resolve_vars(d, api, kind).await;
    let mut with_data = 0;
    for p in panels(d) {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap();
        let mut panel_data = false;
        for t in p["targets"].as_array().unwrap() {
            let (text, has_data) = if kind == "prometheus" {
                let q = substitute(t["expr"].as_str().unwrap(), &vars, kind);
                assert!(!q.contains('$'), "{name}: {title:?}: unsubstituted variable in {q}");
                let end = now() / STEP_S * STEP_S;
                let body = if t["instant"] == true {
                    api.prom("/api/v1/query", &[("query", q.clone()), ("time", now().to_string())]).await
                } else {
                    let form = [("query", q.clone()), ("start", (end - RANGE_S).to_string()), ("end", end.to_string()), ("step", STEP_S.to_string())];
                    api.prom("/api/v1/query_range", &form).await
                };
                let n = body["data"]["result"].as_array().map_or(0, |r| r.len());
                (q, n > 0)
            } else {
                let q = substitute(t["query"].as_str().unwrap(), &vars, kind);
                assert!(used_vars(&q).is_empty(), "{name}: {title:?}: unsubstituted variable in {q}");
                let res = api.influx(&q).await;
                let n = res["series"].as_array().map_or(0, |s| {
                    s.iter().filter(|s| s["values"].as_array().is_some_and(|v| v.iter().any(|r| !r[1].is_null()))).count()
                });
                (q, n > 0)
            };
            if has_data {
                with_data += 1;
                panel_data = true;
            } else {
                let kube_only = NEEDS_KUBE_API.iter().any(|m| text.contains(m));
                assert!(kube_only, "{name}: panel {title:?}: no data for {text}");
            }
        }
        assert!(panel_data, "{name}: panel {title:?} shows nothing");
    }
    with_data
}

/// A real Prometheus scraping vigil's own /metrics every second.
struct Prometheus {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
        let conf = format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vigil\n    static_configs:\n      - targets: [{list}]\n");
        std::fs::write(dir.path().join("prometheus.yml"), conf).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (Debian package `prometheus`; scripts/test.sh installs it)");
        Prometheus { child, base: format!("http://127.0.0.1:{port}"), _dir: dir }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real log shipper tailing one pod log file, killed when dropped.
struct LogShipper {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl LogShipper {
    fn start() -> LogShipper {
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join("pods/ns-0_pod-a_uid-1/app");
        std::fs::create_dir_all(&pod).unwrap();
        let line = "2026-01-01T00:00:00.000000000Z stdout F hello from the dashboards test\n";
        std::fs::write(pod.join("0.log"), line.repeat(1000)).unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["log-shipper", "--listen", &addr])
            .arg(format!("--root={}", dir.path().join("pods").display()))
            .arg(format!("--data-dir={}", dir.path().join("state").display()))
            .arg(format!("--sink=file:{}", dir.path().join("out.ndjson").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vigil log-shipper");
        LogShipper { child, addr, _dir: dir }
    }
}

impl Drop for LogShipper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn nonempty(url: &str, q: &str) -> bool {
    let r = reqwest::Client::new().get(format!("{url}/api/v1/query")).query(&[("query", q)]).send().await;
    match r {
        Ok(r) => r.json::<Value>().await.ok().and_then(|v| v["data"]["result"].as_array().map(|a| !a.is_empty())).unwrap_or(false),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data() {
    // Every dashboard passes the model checks before any peer starts.
    let all = dashboards();
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["cluster.json", "node.json", "namespace.json", "pod.json", "vigil.json", "influxdb-cluster.json", "influxdb-pods.json"] {
        assert!(names.contains(&want), "dashboards/grafana/{want} missing: {names:?}");
    }
    for (name, d) in &all {
        check_model(name, d);
    }
    for (name, d) in &all {
        if name == "vigil.json" || kind_of(d) == "influxdb" {
            continue;
        }
        let vars: BTreeSet<&str> = d["templating"]["list"].as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
        assert!(vars.iter().any(|v| ["node", "namespace", "pod"].contains(v)), "{name}: no $node/$namespace/$pod variable");
    }

    let influx = sinks::Influx::start().await;
    let sim = Sim::new(Shape { nodes: 3, pods_per_node: 3, containers_per_pod: 2, namespaces: 2 });
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(SimNode::start(&sim, i, "127.0.0.1", 0).await);
    }
    let collector = Collector::start(&[]).await;
    let list = nodes.iter().map(|n| n.addr.clone()).chain([collector.addr.clone()]).collect::<Vec<_>>().join(",");
    let sink = format!("influxdb:{}?db=k8s", influx.url());
    let agg = Aggregator::start(&["--nodes", &list, "--metric-resolution", "1s", "--allow-short-resolution", "--sink", &sink]);
    let shipper = LogShipper::start();
    let agg_addr = agg.base.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(&[&agg_addr, &collector.addr, &shipper.addr]);

    // Data everywhere: several aggregator rounds, the sink's points, a few scrapes of each target.
    let base = agg.base.clone();
    until("aggregator rounds", Duration::from_secs(60), || {
        let base = base.clone();
        async move { nonempty(&base, "min(count_over_time(memory_working_set{type=\"node\"}[1m])) >= 16").await.then_some(()) }
    })
    .await;
    let prom_url = prom.base.clone();
    until("Prometheus scrapes of vigil", Duration::from_secs(60), || {
        let u = prom_url.clone();
        async move {
            let ok = nonempty(&u, "count_over_time(vigil_collector_collection_duration_seconds[1m]) >= 16").await
                && nonempty(&u, "vigil_log_shipper_file_lag_bytes").await
                && nonempty(&u, "rate(vigil_aggregator_round_duration_seconds_count[1m]) > 0").await
                && nonempty(&u, "vigil_collector_collection_duration_seconds").await;
            ok.then_some(())
        }
    })
    .await;
    let influx_api = Api { client: reqwest::Client::new(), base: influx.url() };
    until("InfluxDB points from the sink", Duration::from_secs(60), || async {
        let r = reqwest::Client::new()
            .get(format!("{}/query", influx.url()))
            .query(&[("db", "k8s"), ("q", "SELECT count(\"value\") FROM \"cpu/usage_rate\" WHERE time > now() - 5m")])
            .send()
            .await
            .ok()?;
        let v: Value = r.json().await.ok()?;
        (v["results"][0]["series"][0]["values"][0][1].as_u64()? >= 20).then_some(())
    })
    .await;

    // Range queries end at the last step boundary (as Grafana aligns them): wait until that
    // boundary lies after the data above began, or a rate() over the first seconds of
    // scrapes has one sample at the end step and no data (failed once under load).
    tokio::time::sleep(Duration::from_secs((STEP_S - now() % STEP_S + 1) as u64)).await;
    let agg_api = Api { client: reqwest::Client::new(), base: agg.base.clone() };
    let prom_api = Api { client: reqwest::Client::new(), base: prom.base.clone() };
    let mut total = 0;
    for (name, d) in &all {
        let api = match (kind_of(d), name.as_str()) {
            ("influxdb", _) => &influx_api,
            (_, "vigil.json") => &prom_api,
            _ => &agg_api,
        };
        let n = run_dashboard(name, d, api).await;
        eprintln!("{name}: {n} targets returned data");
        total += n;
    }
    assert!(total > 60, "{total} targets with data");
    drop((nodes, collector, shipper));
}

#[test]
fn provisioning_files_point_at_the_dashboards() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| -> serde_json::Value {
        let path: PathBuf = root.join(p);
        serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{p}: {e}"))
    };
    let ds = read("deploy/grafana/datasources.yaml");
    assert_eq!(ds["apiVersion"], serde_json::Value::from(1));
    let types: Vec<&str> = ds["datasources"].as_array().unwrap().iter().map(|d| d["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["prometheus", "influxdb"]);
    let prov = read("deploy/grafana/dashboards.yaml");
    let path = prov["providers"][0]["options"]["path"].as_str().unwrap();
    let manifest = std::fs::read_to_string(root.join("deploy/grafana/grafana.yaml")).unwrap();
    assert!(manifest.contains(&format!("mountPath: {path}")), "grafana.yaml mounts the dashboards at {path}");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&manifest).expect("grafana.yaml is YAML");
    assert!(!docs.is_empty(), "grafana.yaml has documents");
    for v in docs {
        assert!(v["kind"].is_string(), "every document has a kind");
    }
}
