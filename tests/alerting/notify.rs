//! The notifier against the real Alertmanager 0.25 and amtool: configuration verdicts, the webhook
//! payload (byte for byte the same JSON as Alertmanager's for the same alerts and routes),
//! forwarding, silences managed with amtool, surviving a restart, and the notification log
//! across restarts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::support::until;
use crate::support::notify::*;
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use vigil_alerting::notify::{Forwarder, Notifier, NotifyConfig};
use vigil_alerting::{Alert, Notify};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn alert(pairs: &[(&str, &str)], starts: chrono::DateTime<Utc>, ends: chrono::DateTime<Utc>) -> Alert {
    Alert {
        labels: labels(pairs),
        annotations: labels(&[("summary", "load is high"), ("runbook", "http://runbooks/x")]),
        starts_at: starts,
        ends_at: ends,
        generator_url: "http://prometheus:9090/graph?g0.expr=node_load1+%3E+0.9&g0.tab=1".into(),
    }
}

/// (file text, vigil's expected error) for files both amtool and vigil must reject.
const BOTH_REJECT: &[(&str, &str)] = &[
    ("route: {receiver: a, colour: red}\nreceivers: [{name: a}]\n", "unknown field `colour`"),
    ("route: {receiver: a, routes: [{receiver: b}]}\nreceivers: [{name: a}]\n", "undefined receiver \"b\" used in route"),
    ("route: {receiver: a, group_by: ['...', job]}\nreceivers: [{name: a}]\n", "cannot have wildcard group_by"),
    ("route: {receiver: a, group_by: [job, job]}\nreceivers: [{name: a}]\n", "duplicated label \"job\" in group_by"),
    ("route: {receiver: a, group_by: ['0x']}\nreceivers: [{name: a}]\n", "invalid label name \"0x\""),
    ("route: {receiver: a}\nreceivers: [{name: a}, {name: a}]\n", "notification config name \"a\" is not unique"),
    ("route: {receiver: a, matchers: ['x=\"y\"']}\nreceivers: [{name: a}]\n", "root route must not have any matchers"),
    ("route: {receiver: a, continue: true}\nreceivers: [{name: a}]\n", "cannot have continue in root route"),
    ("route: {receiver: a}\nreceivers: [{name: a, webhook_configs: [{}]}]\n", "missing URL in webhook config"),
    ("route: {receiver: a}\nreceivers: [{name: a, webhook_configs: [{url: 'ftp://x/y'}]}]\n", "scheme required for webhook url"),
    ("route: {receiver: a}\nreceivers: [{name: a, email_configs: [{smarthost: 'h:25', from: a@b.c}]}]\n", "missing to address in email config"),
    ("route: {receiver: a}\nreceivers: [{name: a, email_configs: [{to: a@b.c, from: a@b.c}]}]\n", "no global SMTP smarthost set"),
    ("route: {receiver: a}\nreceivers: [{name: a, email_configs: [{to: a@b.c, smarthost: 'h:25'}]}]\n", "no global SMTP from set"),
    ("route: {receiver: a, group_wait: 5x}\nreceivers: [{name: a}]\n", "not a valid duration string"),
    ("route: {receiver: a, routes: [{group_interval: 0}]}\nreceivers: [{name: a}]\n", "group_interval cannot be zero"),
    ("route: {receiver: a, routes: [{repeat_interval: 0}]}\nreceivers: [{name: a}]\n", "repeat_interval cannot be zero"),
    ("route: {receiver: a, routes: [{matchers: ['a=~(']}]}\nreceivers: [{name: a}]\n", "error parsing regexp"),
    ("route: {receiver: a, routes: [{match_re: {a: '('}}]}\nreceivers: [{name: a}]\n", "error parsing regexp"),
    ("receivers: [{name: a}]\n", "no routes provided"),
    ("route: {group_by: [x]}\nreceivers: [{name: a}]\n", "root route must specify a default receiver"),
    ("route: {receiver: a\nreceivers: [{name: a}]\n", "did not find expected"),
    ("global: {resolve_timeout: soon}\nroute: {receiver: a}\nreceivers: [{name: a}]\n", "not a valid duration string"),
    ("route: {receiver: a}\nreceivers: [{name: a}]\ninhibit_rules: [{source_matchers: ['a=~(']}]\n", "error parsing regexp"),
];

/// Files Alertmanager accepts that use what vigil does not support: vigil says so.
const VIGIL_UNSUPPORTED: &[(&str, &str)] = &[
    ("route: {receiver: a}\nreceivers: [{name: a, slack_configs: [{api_url: 'http://x/y', channel: c}]}]\n", "slack_configs are not supported by vigil"),
    ("route: {receiver: a}\nreceivers: [{name: a, pagerduty_configs: [{routing_key: k}]}]\n", "pagerduty_configs are not supported by vigil"),
    ("templates: ['TEMPLATE']\nroute: {receiver: a}\nreceivers: [{name: a}]\n", "templates are not supported by vigil"),
    ("time_intervals: [{name: night, time_intervals: [{times: [{start_time: '00:00', end_time: '06:00'}]}]}]\nroute: {receiver: a, routes: [{receiver: a, mute_time_intervals: [night]}]}\nreceivers: [{name: a}]\n", "time intervals are not supported by vigil"),
    ("route: {receiver: a}\nreceivers: [{name: a, email_configs: [{to: a@b.c, from: a@b.c, smarthost: 'h:25', html: '{{ .Status }}'}]}]\n", "html/text templates are not supported by vigil"),
];

const VALID: &str = r#"
global:
  resolve_timeout: 1m
  smtp_smarthost: 'localhost:25'
  smtp_from: 'vigil@example.org'
  smtp_require_tls: false
  slack_api_url: 'http://unused.example/'
route:
  receiver: default
  group_by: [alertname, cluster]
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 3h
  routes:
    - matchers: ['severity="page"', 'team=~"db|web"']
      receiver: pager
      continue: true
    - match: {team: db}
      match_re: {service: '^(foo1|foo2|baz)$'}
      receiver: db
      group_by: ['...']
      routes:
        - matchers: [ 'owner!~"x.*"' ]
          receiver: pager
receivers:
  - name: default
    webhook_configs:
      - url: 'http://127.0.0.1:9/hook'
        max_alerts: 10
        http_config:
          basic_auth: {username: u, password: p}
  - name: pager
    email_configs:
      - to: 'ops@example.org, dba@example.org'
        headers: {X-Team: ops}
        send_resolved: true
  - name: db
    webhook_configs:
      - url: 'https://127.0.0.1:9/db'
        send_resolved: false
        http_config: {authorization: {credentials: secret}}
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [alertname, cluster]
  - source_match: {alertname: NodeDown}
    target_match_re: {alertname: '.+'}
    equal: [instance]
"#;

fn amtool_check(path: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new("amtool")
        .arg("check-config")
        .arg(path)
        .output()
        .expect("amtool must be installed (Debian package prometheus-alertmanager)");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn config_verdicts_match_amtool_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let tmpl = dir.path().join("t.tmpl");
    std::fs::write(&tmpl, "{{ define \"x\" }}x{{ end }}").unwrap();
    let file = dir.path().join("am.yml");
    std::fs::write(&file, VALID).unwrap();
    let (ok, out) = amtool_check(&file);
    assert!(ok, "amtool rejects the valid file: {out}");
    let cfg = NotifyConfig::load(&file).expect("vigil accepts what amtool accepts");
    Notifier::new(cfg, None, None).expect("notifier builds from the valid file");
    for (i, (text, want)) in BOTH_REJECT.iter().enumerate() {
        std::fs::write(&file, text).unwrap();
        let (ok, out) = amtool_check(&file);
        assert!(!ok, "case {i}: amtool accepts {text:?}: {out}");
        let e = NotifyConfig::load(&file).expect_err(&format!("case {i}: vigil accepts {text:?} (amtool: {out})"));
        let msg = e.to_string();
        assert!(msg.contains(want), "case {i}: vigil says {msg:?}, expected {want:?}; amtool: {out}");
        assert!(msg.starts_with(&file.display().to_string()), "the error names the file: {msg}");
    }
    for (i, (text, want)) in VIGIL_UNSUPPORTED.iter().enumerate() {
        let text = text.replace("TEMPLATE", &tmpl.display().to_string());
        std::fs::write(&file, &text).unwrap();
        let (ok, out) = amtool_check(&file);
        assert!(ok, "case {i}: amtool rejects {text:?}: {out}");
        let msg = NotifyConfig::load(&file).expect_err(&format!("case {i}: unsupported accepted")).to_string();
        assert!(msg.contains(want), "case {i}: vigil says {msg:?}, expected {want:?}");
    }
}

/// The routes both sides use; `HOOK` is the webhook base URL.
const ROUTES: &str = r#"
route:
  receiver: default
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  routes:
    - matchers: ['severity="page"', 'team=~"db|web"']
      receiver: team.pager
      group_by: [alertname, team]
      continue: true
    - match_re: {service: "api.*"}
      receiver: all-labels
      group_by: ['...']
receivers:
  - name: default
    webhook_configs: [{url: 'HOOK/default'}]
  - name: team.pager
    webhook_configs: [{url: 'HOOK/pager', max_alerts: 1}]
  - name: all-labels
    webhook_configs: [{url: 'HOOK/all', send_resolved: false}]
"#;

fn check_v4_schema(p: &Value) {
    for (k, kind) in [
        ("version", "string"),
        ("groupKey", "string"),
        ("truncatedAlerts", "number"),
        ("status", "string"),
        ("receiver", "string"),
        ("groupLabels", "object"),
        ("commonLabels", "object"),
        ("commonAnnotations", "object"),
        ("externalURL", "string"),
        ("alerts", "array"),
    ] {
        let v = &p[k];
        let ok = match kind {
            "string" => v.is_string(),
            "number" => v.is_u64(),
            "object" => v.is_object(),
            _ => v.is_array(),
        };
        assert!(ok, "{k} is not a {kind}: {p}");
    }
    assert_eq!(p["version"], "4");
    for a in p["alerts"].as_array().unwrap() {
        for k in ["status", "startsAt", "endsAt", "generatorURL", "fingerprint"] {
            assert!(a[k].is_string(), "alert {k}: {a}");
        }
        assert!(a["labels"].is_object() && a["annotations"].is_object());
        let fp = a["fingerprint"].as_str().unwrap();
        assert!(fp.len() == 16 && fp.chars().all(|c| c.is_ascii_hexdigit()), "{fp}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_payloads_equal_alertmanagers_and_forwarded_alerts_group_in_alertmanager() {
    let hooks = WebhookServer::start().await;
    let am = Alertmanager::start(&ROUTES.replace("HOOK", &format!("{}/am", hooks.base))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = load_config(dir.path(), &ROUTES.replace("HOOK", &format!("{}/vigil", hooks.base)));
    cfg.external_url = "http://vigil.test:9093".into();
    let vigil = Vigil::start(Notifier::new(cfg, None, None).unwrap()).await;

    let forwarder = Arc::new(Forwarder::new(vec![am.url.clone()]).unwrap());
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(forwarder.clone().run(stop_rx));

    // Sub-second start times, a quote in a label value, a receiver name with a regex meta
    // character: the details where a re-implementation differs.
    let t0 = Utc::now() - chrono::Duration::seconds(90) + chrono::Duration::milliseconds(123);
    let until_t = Utc::now() + chrono::Duration::hours(1);
    let alerts = vec![
        alert(&[("alertname", "HighCPU"), ("instance", "node-2"), ("severity", "page"), ("team", "db"), ("job", "node")], t0, until_t),
        alert(&[("alertname", "HighCPU"), ("instance", "node-1"), ("severity", "page"), ("team", "db"), ("job", "node")], t0, until_t),
        alert(&[("alertname", "DiskFull"), ("service", "api-gw"), ("instance", "node\"3")], t0, until_t),
        alert(&[("alertname", "Other"), ("instance", "x")], t0, until_t),
    ];
    forwarder.send(alerts.clone());
    vigil.notifier.send(alerts.clone());

    // Forwarded alerts are grouped by Alertmanager as its routes say.
    let groups = until("alertmanager groups", Duration::from_secs(20), || async {
        let g = am.get("/api/v2/alerts/groups").await;
        let n: usize = g.as_array()?.iter().map(|g| g["alerts"].as_array().map_or(0, |a| a.len())).sum();
        (n == 4).then_some(g)
    })
    .await;
    let pager = groups
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["receiver"]["name"] == "team.pager")
        .expect("a team.pager group");
    assert_eq!(pager["labels"], json!({"alertname": "HighCPU", "team": "db"}));
    assert_eq!(pager["alerts"].as_array().unwrap().len(), 2);
    // vigil's own API groups the same way.
    let ours: Value = reqwest::get(format!("{}/api/v2/alerts/groups", vigil.url)).await.unwrap().json().await.unwrap();
    let summary = |g: &Value| {
        let mut v: Vec<(String, String, usize)> = g
            .as_array()
            .unwrap()
            .iter()
            .map(|g| (g["labels"].to_string(), g["receiver"]["name"].to_string(), g["alerts"].as_array().unwrap().len()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(summary(&ours), summary(&groups));
    // Same fingerprints in both APIs.
    let fps = |v: &Value| {
        let mut f: Vec<String> = v.as_array().unwrap().iter().map(|a| a["fingerprint"].as_str().unwrap().to_string()).collect();
        f.sort();
        f
    };
    let am_alerts = am.get("/api/v2/alerts").await;
    let our_alerts: Value = reqwest::get(format!("{}/api/v2/alerts", vigil.url)).await.unwrap().json().await.unwrap();
    assert_eq!(fps(&our_alerts), fps(&am_alerts));

    // Each webhook gets the same payload from both.
    for path in ["default", "pager", "all"] {
        let a = hooks.wait(&format!("/am/{path}"), 1, Duration::from_secs(20)).await;
        let v = hooks.wait(&format!("/vigil/{path}"), 1, Duration::from_secs(20)).await;
        check_v4_schema(&v[0].body);
        assert_eq!(v[0].body, a[0].body, "payload on /{path}:\nvigil {}\nalertmanager {}", v[0].body, a[0].body);
        assert_eq!(v[0].headers["content-type"], "application/json");
    }
    let pager = &hooks.at("/vigil/pager")[0].body;
    assert_eq!(pager["groupKey"], "{}/{severity=\"page\",team=~\"db|web\"}:{alertname=\"HighCPU\", team=\"db\"}");
    assert_eq!(pager["receiver"], "team\\.pager");
    assert_eq!(pager["truncatedAlerts"], 1);
    assert_eq!(pager["alerts"][0]["labels"]["instance"], "node-1");
    assert_eq!(pager["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");

    // Resolve the HighCPU and DiskFull alerts: both send the same resolved notifications
    // (the `all` receiver has send_resolved: false, so nothing there).
    let ended = Utc::now() - chrono::Duration::seconds(1);
    let resolved: Vec<Alert> = alerts[..3].iter().cloned().map(|mut a| { a.ends_at = ended; a }).collect();
    forwarder.send(resolved.clone());
    vigil.notifier.send(resolved);
    let a = hooks.wait("/am/pager", 2, Duration::from_secs(20)).await;
    let v = hooks.wait("/vigil/pager", 2, Duration::from_secs(20)).await;
    assert_eq!(v[1].body["status"], "resolved");
    assert_eq!(v[1].body, a[1].body);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hooks.at("/am/all").len(), 1, "alertmanager sent a resolved-only notification to send_resolved: false");
    assert_eq!(hooks.at("/vigil/all").len(), 1, "vigil sent a resolved-only notification to send_resolved: false");
    assert_eq!(hooks.at("/vigil/default").len(), hooks.at("/am/default").len());
    vigil.stop().await;
}

fn silence_ids(out: &str) -> Vec<String> {
    out.split_whitespace().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_manages_silences_on_vigil_and_they_survive_a_restart() {
    let hooks = WebhookServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = format!(
        "route: {{receiver: hook, group_wait: 200ms, group_interval: 500ms}}\nreceivers: [{{name: hook, webhook_configs: [{{url: '{}/hook', http_config: {{basic_auth: {{username: ops, password: pw}}}}}}]}}]\n",
        hooks.base
    );
    let vigil = Vigil::start(Notifier::new(load_config(dir.path(), &text), Some(data.clone()), None).unwrap()).await;
    let url = vigil.url.clone();

    // Creation, as an operator types it.
    let (ok, out, err) = amtool(&url, &["silence", "add", "alertname=Muted", "--comment=maintenance", "--author=ops", "--duration=1h"]);
    assert!(ok, "amtool silence add: {out} {err}");
    let muted_id = out.trim().to_string();
    assert_eq!(muted_id.len(), 36, "a UUID: {out}");
    let (ok, out, err) = amtool(&url, &["silence", "add", "instance=~\"db-.*\"", "severity!=info", "--comment=db work", "--duration=2h"]);
    assert!(ok, "amtool silence add (regex): {out} {err}");
    let db_id = out.trim().to_string();
    // Bad input: amtool's own checks and vigil's.
    let (ok, _, err) = amtool(&url, &["silence", "add", "--comment=x", "alertname=~.*"]);
    assert!(!ok);
    assert!(err.contains("at least one matcher must not match the empty string"), "{err}");

    let (ok, out, _) = amtool(&url, &["silence", "query", "-q"]);
    assert!(ok);
    let mut ids = silence_ids(&out);
    ids.sort();
    let mut want = vec![muted_id.clone(), db_id.clone()];
    want.sort();
    assert_eq!(ids, want);
    let (ok, out, _) = amtool(&url, &["silence", "query", "-q", "alertname=Muted"]);
    assert!(ok);
    assert_eq!(silence_ids(&out), vec![muted_id.clone()]);
    let (ok, out, _) = amtool(&url, &["silence", "query"]);
    assert!(ok && out.contains("maintenance") && out.contains("instance=~\"db-.*\""), "{out}");

    // Silenced alerts are not notified, and the API says why.
    let now = Utc::now();
    vigil.notifier.send(vec![
        alert(&[("alertname", "Muted"), ("instance", "a")], now, now + chrono::Duration::hours(1)),
        alert(&[("alertname", "Loud"), ("instance", "db-1")], now, now + chrono::Duration::hours(1)),
        alert(&[("alertname", "Loud"), ("instance", "web-1")], now, now + chrono::Duration::hours(1)),
    ]);
    let got = hooks.wait("/hook", 1, Duration::from_secs(10)).await;
    let names: Vec<&str> = got[0].body["alerts"].as_array().unwrap().iter().map(|a| a["labels"]["instance"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["web-1"], "{}", got[0].body);
    assert_eq!(got[0].headers["authorization"], "Basic b3BzOnB3", "http_config.basic_auth");
    let all: Value = reqwest::get(format!("{url}/api/v2/alerts")).await.unwrap().json().await.unwrap();
    let muted = all.as_array().unwrap().iter().find(|a| a["labels"]["alertname"] == "Muted").unwrap();
    assert_eq!(muted["status"]["state"], "suppressed");
    assert_eq!(muted["status"]["silencedBy"], json!([muted_id]));
    let (ok, out, _) = amtool(&url, &["alert", "query", "-o", "simple"]);
    assert!(ok && out.contains("Loud") && !out.contains("Muted"), "amtool alert query: {out}");

    // Expire: hidden from the default query, shown with --expired, and the alert is notified.
    let (ok, out, err) = amtool(&url, &["silence", "expire", &muted_id]);
    assert!(ok, "amtool silence expire: {out} {err}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, out, _) = amtool(&url, &["silence", "query", "-q"]);
    assert_eq!(silence_ids(&out), vec![db_id.clone()]);
    let (_, out, _) = amtool(&url, &["silence", "query", "-q", "--expired"]);
    assert_eq!(silence_ids(&out), vec![muted_id.clone()]);
    let got = hooks.wait("/hook", 2, Duration::from_secs(10)).await;
    assert_eq!(got[1].body["alerts"].as_array().unwrap().len(), 2, "{}", got[1].body);
    let (ok, _, err) = amtool(&url, &["silence", "expire", "00000000-0000-4000-8000-000000000000"]);
    assert!(!ok, "expiring an unknown silence fails");
    assert!(err.contains("not found") || err.contains("404"), "{err}");

    // Restart: the silences are read back from the data directory.
    vigil.stop().await;
    let vigil = Vigil::start(Notifier::new(load_config(dir.path(), &text), Some(data.clone()), None).unwrap()).await;
    let url = vigil.url.clone();
    let (_, out, _) = amtool(&url, &["silence", "query", "-q"]);
    assert_eq!(silence_ids(&out), vec![db_id.clone()]);
    let (_, out, _) = amtool(&url, &["silence", "query", "-q", "--expired"]);
    assert_eq!(silence_ids(&out), vec![muted_id.clone()]);
    let s: Value = reqwest::get(format!("{url}/api/v2/silence/{db_id}")).await.unwrap().json().await.unwrap();
    assert_eq!(s["status"]["state"], "active");
    assert_eq!(s["comment"], "db work");
    let now = Utc::now();
    vigil.notifier.send(vec![alert(&[("alertname", "Again"), ("instance", "db-2")], now, now + chrono::Duration::hours(1))]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all: Value = reqwest::get(format!("{url}/api/v2/alerts")).await.unwrap().json().await.unwrap();
    assert_eq!(all[0]["status"]["silencedBy"], json!([db_id]), "the restored silence mutes: {all}");
    vigil.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_bad_input_with_clear_errors_and_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let text = "route: {receiver: r, group_wait: 100ms}\nreceivers: [{name: r}]\n";
    let vigil = Vigil::start(Notifier::new(load_config(dir.path(), text), None, None).unwrap()).await;
    let c = reqwest::Client::new();
    let post = |path: &str, body: &str| {
        c.post(format!("{}{path}", vigil.url)).header("content-type", "application/json").body(body.to_string()).send()
    };
    let r = post("/api/v2/alerts", "[{\"labels\": ").await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("parsing alerts"));
    let r = post("/api/v2/alerts", r#"[{"labels":{"0bad":"x"}},{"labels":{"alertname":"Good"}}]"#).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("invalid name \\\"0bad\\\""));
    let r = post("/api/v2/alerts", r#"[{"labels":{"a":"b"},"startsAt":"2026-01-02T00:00:00Z","endsAt":"2026-01-01T00:00:00Z"}]"#).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("start time must be before end time"));
    let end = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let start = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let r = post("/api/v2/silences", &format!(r#"{{"matchers":[{{"name":"a","value":"(","isRegex":true}}],"startsAt":"{start}","endsAt":"{end}","createdBy":"t","comment":"c"}}"#)).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("invalid label matcher 0"));
    let r = post("/api/v2/silences", &format!(r#"{{"matchers":[],"startsAt":"{start}","endsAt":"{end}","createdBy":"t","comment":"c"}}"#)).await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("at least one matcher required"));
    let r = post("/api/v2/silences", &format!(r#"{{"id":"nope","matchers":[{{"name":"a","value":"b","isRegex":false}}],"startsAt":"{start}","endsAt":"{end}","createdBy":"t","comment":"c"}}"#)).await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.get(format!("{}/api/v2/alerts?filter=%3D%3D", vigil.url)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("bad matcher format"));
    assert_eq!(c.get(format!("{}/api/v2/silence/nope", vigil.url)).send().await.unwrap().status(), 404);
    // The valid alert of the mixed batch was kept, and the API still answers.
    let all: Value = c.get(format!("{}/api/v2/alerts?filter=alertname%3D%22Good%22", vigil.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    let st: Value = c.get(format!("{}/api/v2/status", vigil.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(st["cluster"]["status"], "disabled");
    assert_eq!(st["config"]["original"], text);
    let rs: Value = c.get(format!("{}/api/v2/receivers", vigil.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(rs, json!([{"name": "r"}]));
    vigil.stop().await;
}

/// Alertmanager's notification log across restarts: a restarted notifier does not notify again
/// an alert it already notified (before `repeat_interval`), its resolution is notified once and
/// not again after another restart; without the log (a fresh data directory) it would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_log_survives_restarts() {
    let hooks = WebhookServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = format!(
        "route: {{receiver: hook, group_by: [alertname], group_wait: 200ms, group_interval: 500ms, repeat_interval: 1h}}\nreceivers: [{{name: hook, webhook_configs: [{{url: '{}/hook'}}]}}]\n",
        hooks.base
    );
    let start = |data: std::path::PathBuf| {
        let cfg = load_config(dir.path(), &text);
        async move { Vigil::start(Notifier::new(cfg, Some(data), None).unwrap()).await }
    };
    // Waits until the log differs from `before` (it is written after the receiver answered).
    let logged = |before: Vec<u8>| {
        let path = data.join("nflog.json");
        until("the notification log written", Duration::from_secs(10), move || {
            let now = std::fs::read(&path).unwrap_or_default();
            let changed = now != before;
            async move { changed.then_some(now) }
        })
    };
    let now = Utc::now();
    let firing = alert(&[("alertname", "Restarted"), ("instance", "a")], now, now + chrono::Duration::minutes(4));

    let v = start(data.clone()).await;
    v.notifier.send(vec![firing.clone()]);
    let got = hooks.wait("/hook", 1, Duration::from_secs(10)).await;
    assert_eq!(got[0].body["status"], "firing");
    let log = logged(Vec::new()).await;
    v.stop().await;

    // Restarted; the rules re-send the firing alert: nothing new before repeat_interval.
    let v = start(data.clone()).await;
    v.notifier.send(vec![firing.clone()]);
    tokio::time::sleep(Duration::from_secs(2)).await; // group_wait + 3 group_intervals
    assert_eq!(hooks.at("/hook").len(), 1, "notified again after a restart");
    // It resolves: notified once.
    let resolved = Alert { ends_at: Utc::now(), ..firing.clone() };
    v.notifier.send(vec![resolved.clone()]);
    let got = hooks.wait("/hook", 2, Duration::from_secs(10)).await;
    assert_eq!(got[1].body["status"], "resolved");
    logged(log).await;
    v.stop().await;

    // Restarted again; the rules re-send the resolved alert (they do for 15 minutes): not notified.
    let v = start(data.clone()).await;
    v.notifier.send(vec![resolved.clone()]);
    v.notifier.send(vec![resolved]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hooks.at("/hook").len(), 2, "the resolution notified twice");
    v.stop().await;

    // The control: a notifier without that log notifies the firing alert again.
    let v = start(dir.path().join("fresh")).await;
    v.notifier.send(vec![firing]);
    hooks.wait("/hook", 3, Duration::from_secs(10)).await;
    v.stop().await;
}
