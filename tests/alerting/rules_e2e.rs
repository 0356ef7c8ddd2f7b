//! Rules in the real `vigil aggregator` over simulated nodes: an alert fires and is seen in
//! `/api/v1/alerts`, `/api/v1/rules`, as `ALERTS` through PromQL and by a webhook through the
//! notifier; a recording rule's series is queryable; `POST /-/reload` with a broken file keeps
//! the old rules; a restart during `pending` restores the `for` state; `--alertmanager-url`
//! forwards to a real Alertmanager; `outlier:` rules over a simulated fleet.

use crate::support::until;
use crate::support::notify;
use std::time::Duration;

use crate::support::notify::WebhookServer;
use crate::support::aggregator::{nodes_arg, try_json, Aggregator};
use vigil_aggregator::sim::{Shape, Sim};
use crate::support::query::*;
use serde_json::Value;

fn shape() -> Shape {
    Shape {
        nodes: 2,
        pods_per_node: 2,
        containers_per_pod: 1,
        namespaces: 1,
    }
}

const RULES: &str = r#"
groups:
  - name: e2e
    interval: 1s
    rules:
      - record: cluster:memory_working_set:count
        expr: count(memory_working_set)
      - alert: MemorySeen
        expr: cluster:memory_working_set:count > 0
        labels:
          severity: page
        annotations:
          summary: "{{ $value }} series of memory"
"#;

async fn json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_fires_in_the_api_promql_and_a_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let hook = WebhookServer::start().await;
    let notify = dir.path().join("notify.yml");
    std::fs::write(
        &notify,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 1s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}/alerts\n",
            hook.base
        ),
    )
    .unwrap();
    let c = Cluster::start(
        shape(),
        &[
            "--rule-file",
            rules.to_str().unwrap(),
            "--notify-config",
            notify.to_str().unwrap(),
            "--external-url",
            "http://vigil.test",
        ],
    )
    .await;
    let b = c.base().to_string();

    let alerts = until("the alert in /api/v1/alerts", Duration::from_secs(60), || {
        let url = format!("{b}/api/v1/alerts");
        async move {
            let v = try_json(&url).await?;
            let a = v["data"]["alerts"].as_array()?.first()?.clone();
            (a["state"] == "firing").then_some(a)
        }
    })
    .await;
    assert_eq!(alerts["labels"]["alertname"], "MemorySeen");
    assert_eq!(alerts["labels"]["severity"], "page");
    assert!(alerts["annotations"]["summary"].as_str().unwrap().ends_with("series of memory"));

    let rules_json = json(&format!("{b}/api/v1/rules")).await;
    let group = &rules_json["data"]["groups"][0];
    assert_eq!(group["name"], "e2e");
    assert_eq!(group["rules"][0]["type"], "recording");
    assert_eq!(group["rules"][0]["health"], "ok", "{group}");
    assert_eq!(group["rules"][1]["state"], "firing");

    // ALERTS and the recorded series are in the store, through PromQL.
    let q = json(&format!("{b}/api/v1/query?query=ALERTS%7Balertstate%3D%22firing%22%7D")).await;
    assert_eq!(q["data"]["result"][0]["metric"]["alertname"], "MemorySeen", "{q}");
    let q = json(&format!("{b}/api/v1/query?query=cluster:memory_working_set:count")).await;
    assert!(q["data"]["result"][0]["value"][1].as_str().unwrap().parse::<f64>().unwrap() > 0.0, "{q}");

    // The notifier delivered it to the webhook with Alertmanager's v4 payload.
    let got = hook.wait("/alerts", 1, Duration::from_secs(30)).await;
    let body = &got[0].body;
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["alerts"][0]["labels"]["alertname"], "MemorySeen");
    assert!(body["alerts"][0]["generatorURL"].as_str().unwrap().starts_with("http://vigil.test/graph?g0.expr="));
    // The in-process notifier is served here too: its links point at the same URL.
    assert_eq!(body["externalURL"], "http://vigil.test");
    // ... and /api/v2/alerts is served.
    let v2 = json(&format!("{b}/api/v2/alerts")).await;
    assert_eq!(v2[0]["labels"]["alertname"], "MemorySeen", "{v2}");

    // A broken file: reload fails with the reason and the old rules keep running.
    std::fs::write(&rules, "groups:\n- name: e2e\n  rules:\n  - alert: X\n    expr: 'sum('\n").unwrap();
    let resp = reqwest::Client::new().post(format!("{b}/-/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 500);
    let text = resp.text().await.unwrap();
    assert!(text.contains("could not parse expression") && text.contains("rules.yml"), "{text}");
    let metrics = reqwest::get(format!("{b}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("vigil_rules_last_reload_successful 0"), "{metrics}");
    assert!(metrics.contains("vigil_rule_evaluation_failures_total{rule_group="));
    let still = json(&format!("{b}/api/v1/rules")).await;
    assert_eq!(still["data"]["groups"][0]["rules"].as_array().unwrap().len(), 2);
    // A good file through SIGHUP... here through the same endpoint: the new rule set runs.
    std::fs::write(&rules, RULES.replace("MemorySeen", "MemoryCounted")).unwrap();
    let resp = reqwest::Client::new().post(format!("{b}/-/reload")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let renamed = json(&format!("{b}/api/v1/rules")).await;
    assert_eq!(renamed["data"]["groups"][0]["rules"][1]["name"], "MemoryCounted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_during_pending_restores_the_for_state() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES.replace("    rules:\n      - record", "    rules:\n      - record").replace("        labels:\n          severity: page", "        for: 1h\n        labels:\n          severity: page")).unwrap();
    let data = dir.path().join("data");
    let args = [
        "--rule-file",
        rules.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--rule-for-grace-period",
        "1s",
    ];
    let pending = |b: String| async move {
        until("a pending alert", Duration::from_secs(60), || {
            let url = format!("{b}/api/v1/alerts");
            async move {
                let v = try_json(&url).await?;
                let a = v["data"]["alerts"].as_array()?.first()?.clone();
                (a["state"] == "pending").then_some(a)
            }
        })
        .await
    };
    let mut c = Cluster::start(shape(), &args).await;
    let before = pending(c.base().to_string()).await;
    let active_before = chrono::DateTime::parse_from_rfc3339(before["activeAt"].as_str().unwrap()).unwrap();
    // Let it stay pending a few seconds, then restart.
    tokio::time::sleep(Duration::from_secs(4)).await;
    c.agg.terminate();
    let down_at = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.agg = Aggregator::start(&[
        "--nodes",
        &nodes_arg(&c.nodes),
        "--metric-resolution",
        "1s",
        "--allow-short-resolution",
        args[0], args[1], args[2], args[3], args[4], args[5],
    ]);
    let b = c.base().to_string();
    // Restored after the second evaluation: activeAt moves later by the downtime only, so it
    // lies before the restart (a fresh alert's would lie after it).
    let restored = until("the restored activeAt", Duration::from_secs(60), || {
        let url = format!("{b}/api/v1/alerts");
        async move {
            let v = try_json(&url).await?;
            let a = v["data"]["alerts"].as_array()?.first()?.clone();
            let t = chrono::DateTime::parse_from_rfc3339(a["activeAt"].as_str()?).ok()?;
            (t < down_at).then_some(t)
        }
    })
    .await;
    assert!(restored > active_before, "the downtime does not count toward for");
    let held = (down_at - active_before.with_timezone(&chrono::Utc)).num_milliseconds();
    let now_pending = (chrono::Utc::now() - restored.with_timezone(&chrono::Utc)).num_milliseconds();
    assert!(now_pending >= held - 2000, "pending {now_pending} ms, had {held} ms before the restart");
}

/// `--alertmanager-url`: the rules' alerts reach a real Alertmanager (read back with `amtool
/// alert query`), and the resolved alert ends there before its `endsAt` would have expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_url_forwards_firing_and_resolved_alerts() {
    use notify::{amtool, Alertmanager};
    let am = Alertmanager::start("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n").await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    // Fires for 20 s of every 40 s; resolved alerts are sent at once (their endsAt is the
    // resolution time), firing ones say endsAt = now + 4 min.
    std::fs::write(
        &rules,
        "groups:\n  - name: fwd\n    interval: 1s\n    rules:\n      - alert: Forwarded\n        expr: vector(1) and on() (vector(time()) % 40 < 20)\n        labels: {severity: ticket}\n        annotations: {summary: 'forwarded by vigil'}\n",
    )
    .unwrap();
    let _c = Cluster::start(
        shape(),
        &[
            "--rule-file",
            rules.to_str().unwrap(),
            "--alertmanager-url",
            &am.url,
            "--external-label",
            "cluster=test",
        ],
    )
    .await;
    let query = || {
        let (ok, out, err) = amtool(&am.url, &["-o", "json", "alert", "query", "alertname=Forwarded"]);
        assert!(ok, "amtool alert query: {err}");
        serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|e| panic!("amtool output {out:?}: {e}"))
    };
    let got = until("amtool to list the forwarded alert", Duration::from_secs(60), || {
        let v = query();
        async move { v.into_iter().next() }
    })
    .await;
    assert_eq!(got["labels"]["severity"], "ticket", "{got}");
    assert_eq!(got["labels"]["cluster"], "test", "{got}");
    assert_eq!(got["annotations"]["summary"], "forwarded by vigil");
    assert_eq!(got["status"]["state"], "active");
    // Resolved within the 20 s it stops firing (plus a round), long before endsAt + 4 min.
    until("amtool to stop listing the resolved alert", Duration::from_secs(45), || {
        let v = query();
        async move { v.is_empty().then_some(()) }
    })
    .await;
}

/// Ten simulated kubelets whose node working set is the simulator's times a per-node scale the
/// test changes (`scales[i]`), each on its own loopback port.
struct Fleet {
    addrs: Vec<String>,
    scales: std::sync::Arc<std::sync::Mutex<Vec<f64>>>,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Fleet {
    async fn start(n: usize) -> Fleet {
        use axum::routing::get;
        let sim = Sim::new(Shape { nodes: n, pods_per_node: 1, containers_per_pod: 1, namespaces: 1 });
        // Peers differ a little (1.00, 1.02, ... 1.18) so the group has a spread.
        let scales = std::sync::Arc::new(std::sync::Mutex::new((0..n).map(|i| 1.0 + 0.02 * i as f64).collect::<Vec<_>>()));
        let (stop, rx) = tokio::sync::watch::channel(false);
        let mut addrs = Vec::new();
        for i in 0..n {
            let (sim, scales) = (sim.clone(), scales.clone());
            let router = axum::Router::new().route(
                "/stats/summary",
                get(move || {
                    let mut s = sim.summary(i, chrono::Utc::now());
                    let scale = scales.lock().unwrap()[i];
                    if let Some(m) = s.node.memory.as_mut() {
                        m.working_set_bytes = m.working_set_bytes.map(|w| (w as f64 * scale) as u64);
                    }
                    async move { axum::Json(s) }
                }),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(listener.local_addr().unwrap().to_string());
            tokio::spawn(Sim::serve(router, listener, rx.clone()));
        }
        Fleet { addrs, scales, _stop: stop }
    }
}

/// `outlier:` rules in the aggregator over a simulated fleet of 10 nodes: the whole fleet's
/// memory tripling fires nothing, one node's doubling fires for that node only, and every
/// member's score is a series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlier_rule_fires_for_the_drifting_node_not_for_a_fleet_shift() {
    let fleet = Fleet::start(10).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n  - name: fleet\n    interval: 1s\n    rules:\n      - alert: NodeMemoryOutlier\n        outlier:\n          expr: sum by (nodename) (memory_working_set{type=\"node\"})\n          by: [nodename]\n          window: 10s\n        labels: {severity: ticket}\n        annotations: {summary: '{{ $labels.nodename }} is {{ $value | printf \"%.0f\" }} spreads from its peers'}\n",
    )
    .unwrap();
    let agg = Aggregator::start(&[
        "--nodes",
        &fleet.addrs.join(","),
        "--metric-resolution",
        "1s",
        "--allow-short-resolution",
        "--rule-file",
        rules.to_str().unwrap(),
    ]);
    let b = agg.base.clone();
    let alerts = || {
        let url = format!("{b}/api/v1/alerts");
        async move { try_json(&url).await.and_then(|v| v["data"]["alerts"].as_array().cloned()) }
    };
    // Every member compared: ten scores.
    let scores_url = format!("{b}/api/v1/query?query=NodeMemoryOutlier_outlier_score");
    until("ten outlier scores", Duration::from_secs(60), || {
        let url = scores_url.clone();
        async move {
            let v = try_json(&url).await?;
            (v["data"]["result"].as_array()?.len() == 10).then_some(())
        }
    })
    .await;
    // A full window of the steady fleet, then the whole fleet triples: nothing fires.
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(alerts().await.unwrap(), Vec::<Value>::new());
    for s in fleet.scales.lock().unwrap().iter_mut() {
        *s *= 3.0;
    }
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let a = alerts().await.unwrap();
        assert!(a.is_empty(), "a fleet-wide shift fired: {a:?}");
    }
    let rules_json = json(&format!("{b}/api/v1/rules")).await;
    assert_eq!(rules_json["data"]["groups"][0]["rules"][0]["health"], "ok", "{rules_json}");
    let q = json(&format!("{b}/api/v1/query?query=max(NodeMemoryOutlier_outlier_score)")).await;
    let before: f64 = q["data"]["result"][0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(before < 3.0, "{q}");
    // node-0003 doubles: it alone fires, with its score as the value.
    fleet.scales.lock().unwrap()[3] *= 2.0;
    let firing = until("node-0003 firing", Duration::from_secs(60), || {
        let a = alerts();
        async move {
            let a = a.await?;
            a.iter().any(|x| x["state"] == "firing").then_some(a)
        }
    })
    .await;
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(firing[0]["labels"]["nodename"], "node-0003");
    assert_eq!(firing[0]["labels"]["alertname"], "NodeMemoryOutlier");
    assert_eq!(firing[0]["labels"]["severity"], "ticket");
    let value: f64 = firing[0]["value"].as_str().unwrap().parse().unwrap();
    assert!(value > 3.0, "{firing:?}");
    assert!(firing[0]["annotations"]["summary"].as_str().unwrap().starts_with("node-0003 is "));
    let q = json(&format!("{b}/api/v1/query?query=NodeMemoryOutlier_outlier_score%7Bnodename%3D%22node-0003%22%7D")).await;
    let score: f64 = q["data"]["result"][0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(score > 3.0, "{q}");
}
