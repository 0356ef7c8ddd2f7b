//! Node problems to a webhook, end to end: a kernel-log line is written → the real collector's
//! problem detector (node-problem-detector's shipped kernel and read-only monitors) sets a
//! condition or counts an event → the aggregator pulls `/conditions` and `/problems/events` into
//! `problem_gauge` / `problem_counter` → vigil's default rules (`alerting/rules/default.yml`,
//! unchanged but for the group interval: 1 s here instead of 30 s) fire → the notifier's webhook
//! receives Alertmanager's v4 payload. Each of the three default problem rules (kernel deadlock,
//! read-only filesystem, OOM kills) is driven in turn, and each step's latency is printed
//! (`cargo test -p vigil --test problems_alerting_e2e -- --nocapture`; BENCHMARKS.md).

use crate::support::aggregator;
use std::time::{Duration, Instant};

use crate::support::notify::WebhookServer;
use crate::support::problems::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(45);

/// What one problem took to travel, from the line's write.
struct Timing {
    collector: Duration,
    aggregator: Duration,
    webhook: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_log_line_reaches_a_webhook_through_the_default_rules() {
    let dir = tempfile::tempdir().unwrap();
    let default = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/alerting/rules/default.yml")).unwrap();
    assert!(default.contains("interval: 30s"), "the default rules' interval changed: update this test");
    let rules = dir.path().join("default.yml");
    std::fs::write(&rules, default.replace("interval: 30s", "interval: 1s")).unwrap();
    let hook = WebhookServer::start().await;
    let notify = dir.path().join("notify.yml");
    std::fs::write(
        &notify,
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname, nodename]\n  group_wait: 1s\n  group_interval: 1s\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}/alerts\n",
            hook.base
        ),
    )
    .unwrap();
    let (rules_arg, notify_arg) = (rules.to_str().unwrap().to_string(), notify.to_str().unwrap().to_string());
    let node = ProblemNode::start(dir, &["--rule-file", &rules_arg, "--notify-config", &notify_arg]).await;
    let (base, collector) = (node.agg.base.clone(), node.collector_url());
    // The rules are loaded and none of the problem alerts fires before any line is written.
    let v = aggregator::get_json(&format!("{base}/api/v1/rules")).await;
    let names: Vec<&str> = v["data"]["groups"].as_array().unwrap().iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()))
        .collect();
    for want in ["NodeKernelDeadlock", "NodeReadonlyFilesystem", "NodeOOMKills"] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }

    let mut timings = Vec::new();
    for (sample, alert, at_collector, series, summary) in [
        ("docker_hung", "NodeKernelDeadlock", "KernelDeadlock", "problem_gauge{type=\"KernelDeadlock\",reason=\"DockerHung\"} == 1", "Kernel deadlock on {node} (DockerHung)"),
        ("readonly_filesystem", "NodeReadonlyFilesystem", "ReadonlyFilesystem", "problem_gauge{type=\"ReadonlyFilesystem\",reason=\"FilesystemIsReadOnly\"} == 1", "A filesystem on {node} was remounted read-only (FilesystemIsReadOnly)"),
        ("oom_kill", "NodeOOMKills", "OOMKilling", "problem_counter{reason=\"OOMKilling\"} > 0", "OOM kills on {node} in 10 minutes"),
    ] {
        assert!(hook.at("/alerts").iter().all(|r| !fired(&r.body, alert)), "{alert} fired before its line");
        append(&node.log, &kern_lines(sample));
        let t0 = Instant::now();
        // The collector: a condition True (permanent rules) or an event (temporary ones).
        let (_, t_collector) = poll(&format!("{at_collector} in the collector"), WAIT, || {
            let c = collector.clone();
            async move {
                let conds = aggregator::try_json(&format!("{c}/conditions")).await?;
                let events = aggregator::try_json(&format!("{c}/problems/events")).await?;
                let cond = conds.as_array()?.iter().any(|x| x["type"] == at_collector && x["status"] == "True");
                let event = events["events"].as_array()?.iter().any(|e| e["reason"] == at_collector);
                (cond || event).then_some(())
            }
        })
        .await;
        let (sample_v, t_aggregator) = poll(&format!("{series} in the aggregator"), WAIT, || first_result(&base, series)).await;
        assert_eq!(sample_v["metric"]["nodename"], node.nodename.as_str());
        poll(&format!("{alert} at the webhook"), WAIT, || {
            let got = hook.at("/alerts");
            async move { got.iter().any(|r| fired(&r.body, alert)).then_some(()) }
        })
        .await;
        let received = hook.at("/alerts").into_iter().find(|r| fired(&r.body, alert)).unwrap();
        let a = received.body["alerts"].as_array().unwrap().iter().find(|a| a["labels"]["alertname"] == alert).unwrap().clone();
        assert_eq!(received.body["version"], "4");
        assert_eq!(a["status"], "firing");
        assert_eq!(a["labels"]["nodename"], node.nodename.as_str(), "{a}");
        assert_eq!(a["labels"]["severity"], if alert == "NodeOOMKills" { "warning" } else { "critical" });
        let want = summary.replace("{node}", &node.nodename);
        assert!(a["annotations"]["summary"].as_str().unwrap().ends_with(&want), "{a}");
        let t = Timing {
            collector: t_collector - t0,
            aggregator: t_aggregator - t0,
            webhook: received.at.saturating_duration_since(t0),
        };
        eprintln!(
            "{alert}: line written → collector {:.0} ms → aggregator series {:.0} ms → webhook {:.0} ms",
            ms(t.collector), ms(t.aggregator), ms(t.webhook)
        );
        timings.push(t);
    }
    // The problem pull is counted on the aggregator's /metrics.
    let (_, metrics) = aggregator::get(&format!("{base}/metrics")).await;
    let ok = aggregator::sample(&metrics, "vigil_aggregator_problem_pulls_total{outcome=\"ok\"}");
    assert!(ok.is_some_and(|n| n >= 3.0), "{metrics}");
    assert!(metrics.contains("vigil_aggregator_problem_events_total"), "{metrics}");
    let worst = timings.iter().map(|t| t.webhook).max().unwrap();
    eprintln!("worst line → webhook: {:.0} ms (bound: collector poll 0.2 s + resolution 1 s + rule interval 1 s + group_wait 1 s)", ms(worst));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Whether a webhook payload carries `alert` firing.
fn fired(body: &Value, alert: &str) -> bool {
    body["alerts"].as_array().is_some_and(|a| a.iter().any(|a| a["labels"]["alertname"] == alert && a["status"] == "firing"))
}
