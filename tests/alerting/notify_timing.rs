//! The notifier's timing and pipeline with short durations: group_wait, group_interval,
//! repeat_interval, dedup of re-sent alerts, resolved notifications, inhibition; and receivers that
//! hang, fail or reject, which delay no other and are counted by outcome.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::notify::*;
use chrono::Utc;
use serde_json::{json, Value};
use vigil_alerting::notify::Notifier;
use vigil_alerting::{Alert, Notify};

/// An alert ending `ends_in` from now; a resolved one (negative) started a minute earlier, as
/// Prometheus sends them.
fn alert(pairs: &[(&str, &str)], ends_in: chrono::Duration) -> Alert {
    let now = Utc::now();
    Alert {
        labels: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        annotations: BTreeMap::new(),
        starts_at: if ends_in < chrono::Duration::zero() { now - chrono::Duration::minutes(1) } else { now },
        ends_at: now + ends_in,
        generator_url: String::new(),
    }
}

fn instances(v: &Value) -> Vec<String> {
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("{}:{}", a["labels"]["instance"].as_str().unwrap_or(""), a["status"].as_str().unwrap()))
        .collect()
}

fn metrics_text(n: &Notifier) -> String {
    let mut s = String::new();
    n.write_metrics(&mut vigil_common::exposition::Writer::new(
        &mut s,
        vigil_common::exposition::Format::Text,
    ));
    s
}

/// The value of the counter line that contains every one of `parts`.
fn counter(text: &str, parts: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && parts.iter().all(|p| l.contains(p)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_wait_batch_repeat_and_resolve_as_alertmanager() {
    let hooks = WebhookServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "route: {{receiver: hook, group_by: [alertname], group_wait: 600ms, group_interval: 1500ms, repeat_interval: 4s}}\n\
         receivers: [{{name: hook, webhook_configs: [{{url: '{}/hook'}}]}}]\n",
        hooks.base
    );
    let vigil = Vigil::start(Notifier::new(load_config(dir.path(), &text), None, None).unwrap()).await;
    let n = &vigil.notifier;
    let hour = chrono::Duration::hours(1);
    let t0 = Instant::now();
    n.send(vec![alert(&[("alertname", "A"), ("instance", "1")], hour)]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    n.send(vec![alert(&[("alertname", "A"), ("instance", "2")], hour)]);

    // One notification after group_wait with both alerts.
    let got = hooks.wait("/hook", 1, Duration::from_secs(5)).await;
    let first = got[0].at - t0;
    assert!(first >= Duration::from_millis(590), "notified before group_wait: {first:?}");
    assert_eq!(instances(&got[0].body), vec!["1:firing", "2:firing"]);
    assert_eq!(got[0].body["groupKey"], "{}:{alertname=\"A\"}");

    // A new alert in the group waits for the next group_interval tick.
    let t_add = Instant::now();
    n.send(vec![alert(&[("alertname", "A"), ("instance", "3")], hour)]);
    let got = hooks.wait("/hook", 2, Duration::from_secs(5)).await;
    let second = got[1].at - got[0].at;
    assert!(second >= Duration::from_millis(1400), "group_interval not kept: {second:?}");
    assert!(got[1].at - t_add < Duration::from_millis(1500) + Duration::from_millis(400));
    assert_eq!(instances(&got[1].body), vec!["1:firing", "2:firing", "3:firing"]);

    // Re-sent alerts (Prometheus re-sends every minute) change nothing: no notification until
    // repeat_interval has passed since the last one.
    n.send(vec![
        alert(&[("alertname", "A"), ("instance", "1")], hour),
        alert(&[("alertname", "A"), ("instance", "2")], hour),
    ]);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(hooks.at("/hook").len(), 2, "notified again before repeat_interval");
    let got = hooks.wait("/hook", 3, Duration::from_secs(5)).await;
    let repeat = got[2].at - got[1].at;
    assert!(repeat >= Duration::from_secs(4), "repeat_interval not kept: {repeat:?}");
    assert_eq!(instances(&got[2].body).len(), 3);

    // A resolved alert is notified at the next tick (send_resolved defaults to true), then
    // leaves the group.
    n.send(vec![alert(&[("alertname", "A"), ("instance", "2")], chrono::Duration::seconds(-1))]);
    let got = hooks.wait("/hook", 4, Duration::from_secs(5)).await;
    assert_eq!(instances(&got[3].body), vec!["1:firing", "2:resolved", "3:firing"]);
    assert_eq!(got[3].body["status"], "firing");
    let ends = got[3].body["alerts"][1]["endsAt"].as_str().unwrap();
    assert_ne!(ends, "0001-01-01T00:00:00Z");

    // Everything resolved: one "resolved" notification, and the group is gone.
    n.send(vec![
        alert(&[("alertname", "A"), ("instance", "1")], chrono::Duration::seconds(-1)),
        alert(&[("alertname", "A"), ("instance", "3")], chrono::Duration::seconds(-1)),
    ]);
    let got = hooks.wait("/hook", 5, Duration::from_secs(5)).await;
    assert_eq!(got[4].body["status"], "resolved");
    assert_eq!(instances(&got[4].body), vec!["1:resolved", "3:resolved"]);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(hooks.at("/hook").len(), 5);
    let groups: Value = reqwest::get(format!("{}/api/v2/alerts/groups", vigil.url)).await.unwrap().json().await.unwrap();
    assert_eq!(groups, json!([]));
    vigil.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inhibition_mutes_targets_while_the_source_fires() {
    let hooks = WebhookServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "route: {{receiver: hook, group_by: [instance], group_wait: 300ms, group_interval: 700ms}}\n\
         receivers: [{{name: hook, webhook_configs: [{{url: '{}/hook'}}]}}]\n\
         inhibit_rules: [{{source_matchers: ['severity=\"critical\"'], target_matchers: ['severity=\"warning\"'], equal: [instance]}}]\n",
        hooks.base
    );
    let vigil = Vigil::start(Notifier::new(load_config(dir.path(), &text), None, None).unwrap()).await;
    let hour = chrono::Duration::hours(1);
    let critical = alert(&[("alertname", "NodeDown"), ("instance", "i1"), ("severity", "critical")], hour);
    vigil.notifier.send(vec![
        critical.clone(),
        alert(&[("alertname", "HighLoad"), ("instance", "i1"), ("severity", "warning")], hour),
        alert(&[("alertname", "HighLoad"), ("instance", "i2"), ("severity", "warning")], hour),
    ]);
    let got = hooks.wait("/hook", 2, Duration::from_secs(5)).await;
    let mut bodies: Vec<Vec<String>> = got
        .iter()
        .map(|r| r.body["alerts"].as_array().unwrap().iter().map(|a| format!("{}/{}", a["labels"]["alertname"].as_str().unwrap(), a["labels"]["instance"].as_str().unwrap())).collect())
        .collect();
    bodies.sort();
    assert_eq!(bodies, vec![vec!["HighLoad/i2".to_string()], vec!["NodeDown/i1".to_string()]]);
    let all: Value = reqwest::get(format!("{}/api/v2/alerts?filter=instance%3D%22i1%22&filter=severity%3D%22warning%22", vigil.url)).await.unwrap().json().await.unwrap();
    let fp_critical = vigil_alerting::notify::labels::fingerprint_hex(&critical.labels);
    assert_eq!(all[0]["status"]["inhibitedBy"], json!([fp_critical]), "{all}");
    assert_eq!(all[0]["status"]["state"], "suppressed");
    let active: Value = reqwest::get(format!("{}/api/v2/alerts?inhibited=false", vigil.url)).await.unwrap().json().await.unwrap();
    assert_eq!(active.as_array().unwrap().len(), 2);

    // The source resolves: the target is notified at the next tick of its group.
    let mut resolved = critical;
    resolved.starts_at -= chrono::Duration::minutes(1);
    resolved.ends_at = Utc::now() - chrono::Duration::seconds(1);
    vigil.notifier.send(vec![resolved]);
    let got = hooks
        .wait("/hook", 3, Duration::from_secs(5))
        .await;
    let i1: Vec<Value> = got.iter().skip(2).map(|r| r.body.clone()).collect();
    let names: Vec<String> = i1[0]["alerts"].as_array().unwrap().iter().map(|a| format!("{}:{}", a["labels"]["alertname"].as_str().unwrap(), a["status"].as_str().unwrap())).collect();
    assert_eq!(names, vec!["HighLoad:firing", "NodeDown:resolved"]);
    vigil.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_receivers_delay_no_other_and_every_attempt_is_counted() {
    let hooks = WebhookServer::start().await;
    hooks.answer("/hang", Answer::Hang);
    hooks.answer("/500", Answer::Status(503));
    hooks.answer("/400", Answer::Status(400));
    let rejecting = SmtpServer::start(&["--reject", "550 5.7.1 relaying denied by test"]);
    let plain = SmtpServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let b = &hooks.base;
    let text = format!(
        r#"
global: {{smtp_from: 'vigil@example.org', smtp_require_tls: false}}
route:
  receiver: mixed
  group_wait: 200ms
  group_interval: 2s
  routes:
    - {{receiver: mixed, continue: true, group_by: [alertname]}}
    - {{receiver: other, group_by: [alertname]}}
receivers:
  - name: mixed
    webhook_configs:
      - url: '{b}/hang'
      - url: '{b}/500'
      - url: '{b}/400'
      - url: '{b}/ok'
    email_configs:
      - to: 'ops@example.org'
        smarthost: '127.0.0.1:{rej}'
      - to: 'ops@example.org'
        smarthost: '127.0.0.1:{plain}'
        require_tls: true
  - name: other
    webhook_configs: [{{url: '{b}/ok2'}}]
"#,
        rej = rejecting.port,
        plain = plain.port,
    );
    let vigil = Vigil::start(Notifier::new(load_config(dir.path(), &text), None, None).unwrap()).await;
    let t0 = Instant::now();
    vigil.notifier.send(vec![alert(&[("alertname", "X"), ("instance", "1")], chrono::Duration::hours(1))]);

    // The working webhooks of both receivers get it right after group_wait.
    let ok = hooks.wait("/ok", 1, Duration::from_secs(5)).await;
    let ok2 = hooks.wait("/ok2", 1, Duration::from_secs(5)).await;
    assert!(ok[0].at - t0 < Duration::from_millis(1200), "delayed by a failing receiver: {:?}", ok[0].at - t0);
    assert!(ok2[0].at - t0 < Duration::from_millis(1200));
    assert_eq!(hooks.wait("/hang", 1, Duration::from_secs(5)).await.len(), 1);

    // Within the first flush's deadline (max(group_interval, 10s)): 4xx and SMTP rejections were
    // tried once, 5xx and the missing STARTTLS are being retried.
    tokio::time::sleep((t0 + Duration::from_secs(5)).saturating_duration_since(Instant::now())).await;
    let m = metrics_text(&vigil.notifier);
    let mixed = "receiver=\"mixed\"";
    assert_eq!(counter(&m, &[mixed, "integration=\"webhook\"", "outcome=\"client_error\""]), 1.0, "4xx is not retried:\n{m}");
    assert!(counter(&m, &[mixed, "integration=\"webhook\"", "outcome=\"server_error\""]) >= 3.0, "5xx is retried:\n{m}");
    assert_eq!(hooks.at("/400").len(), 1);
    assert!(hooks.at("/500").len() >= 3);
    assert_eq!(counter(&m, &[mixed, "integration=\"email\"", "outcome=\"rejected\""]), 1.0, "a 5xx SMTP rejection is not retried:\n{m}");
    assert!(counter(&m, &[mixed, "integration=\"email\"", "outcome=\"error\""]) >= 1.0, "STARTTLS required but not offered:\n{m}");
    assert!(plain.messages().is_empty(), "sent without the required STARTTLS");
    assert!(rejecting.messages().is_empty());
    assert!(counter(&m, &[mixed, "integration=\"webhook\"", "outcome=\"success\""]) >= 1.0);
    assert_eq!(counter(&m, &["receiver=\"other\"", "outcome=\"success\""]), 1.0);
    assert_eq!(counter(&m, &["vigil_notify_alerts_received_total", "result=\"valid\""]), 1.0);
    // At the deadline the hanging webhook's attempt ends as a timeout.
    tokio::time::sleep((t0 + Duration::from_millis(11_500)).saturating_duration_since(Instant::now())).await;
    let m = metrics_text(&vigil.notifier);
    assert_eq!(counter(&m, &[mixed, "integration=\"webhook\"", "outcome=\"timeout\""]), 1.0, "the hanging webhook times out:\n{m}");

    // The notifier keeps working: a new group is notified on time.
    let t1 = Instant::now();
    vigil.notifier.send(vec![alert(&[("alertname", "Y"), ("instance", "2")], chrono::Duration::hours(1))]);
    let ok = hooks.wait("/ok2", 2, Duration::from_secs(5)).await;
    assert!(ok[1].at - t1 < Duration::from_millis(1200));
    vigil.stop().await;
}
