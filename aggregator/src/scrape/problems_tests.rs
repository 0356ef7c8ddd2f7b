//! Tests of the node problem pull against the collector's own problem endpoints on loopback.

use super::*;
use crate::scrape::discovery::parse_entry;
use chrono::Utc;
use std::sync::Arc;
use vigil_collector::problems::store::{self as npd, Severity, Status};

/// Serves `router` on a loopback port until the test's runtime ends.
async fn serve(router: axum::Router) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await });
    addr
}

/// The collector's own sample detector store (kernel-monitor's KernelDeadlock condition False,
/// one OOMKilling event), served through its problem endpoints.
fn collector_store() -> Arc<npd::Store> {
    npd::Store::kernel_monitor_sample(Utc::now())
}

fn deadlock(store: &npd::Store) {
    let now = Utc::now();
    store.set_conditions(
        0,
        &[npd::Condition {
            kind: "KernelDeadlock".into(),
            status: Status::True,
            last_heartbeat_time: now,
            last_transition_time: now,
            reason: "DockerHung".into(),
            message: "task docker:20744 blocked".into(),
        }],
    );
    store.push_event(
        "kernel-monitor",
        Severity::Warn,
        now,
        "TaskHung",
        "task blocked",
    );
    store.push_condition_change(
        "kernel-monitor",
        "KernelDeadlock",
        Status::True,
        "DockerHung",
        "task docker:20744 blocked",
        now,
    );
}

/// Every sample of the series named `name` with `reason`, as (t, value).
fn samples(store: &Store, name: &str, reason: &str) -> Vec<(i64, f64)> {
    use vigil_promql::{MatchOp, Matcher};
    let m = [
        Matcher::new(MatchOp::Equal, "__name__", name).unwrap(),
        Matcher::new(MatchOp::Equal, "reason", reason).unwrap(),
    ];
    let s = store
        .select_series(&m, Some((0, i64::MAX)), |_| Ok::<(), ()>(()))
        .unwrap();
    assert!(s.len() <= 1, "{s:?}");
    s.into_iter().flat_map(|s| s.samples).collect()
}

fn name_of(url: &str, name: &str) -> HashMap<String, String> {
    HashMap::from([(url.to_string(), name.to_string())])
}

#[test]
fn true_transitions_and_base_urls() {
    assert!(is_true_transition(
        "Node condition KernelDeadlock is now: True, reason: DockerHung, message: \"x\""
    ));
    assert!(!is_true_transition(
        "Node condition NTPProblem is now: False, reason: NTPIsUp, message: \"\""
    ));
    assert!(!is_true_transition("Killed process 1 is now: True,"));
    assert_eq!(
        base_url("http://h:4194/stats/summary"),
        Some("http://h:4194")
    );
    assert_eq!(
        base_url("http://h:1/node/a/stats/summary"),
        Some("http://h:1/node/a")
    );
    assert_eq!(base_url("http://h:1/custom"), None);
}

/// The collector's real endpoints → gauges and counters in the store, a reason's first
/// occurrence preceded by a 0, the previous reason of a type dropped to 0.
#[tokio::test]
async fn conditions_and_events_become_problem_series() {
    let npd_store = collector_store();
    let addr = serve(vigil_collector::problems::http::app(npd_store.clone())).await;
    let t = parse_entry(&addr.to_string()).unwrap();
    let scraper = Scraper::new(Duration::from_secs(5), 4);
    let puller = ProblemPuller::new();
    let store = Store::new(3_600_000, 10_000);
    let names = name_of(&t.url, "node-a");

    let pulled = puller.pull(&scraper, std::slice::from_ref(&t)).await;
    assert_eq!(puller.apply(pulled, &names, 1_000, &store), 2);
    assert_eq!(
        samples(&store, "problem_gauge", "KernelHasNoDeadlock"),
        [(1_000, 0.0)]
    );
    assert_eq!(
        samples(&store, "problem_counter", "OOMKilling"),
        [(1_000, 1.0)]
    );

    deadlock(&npd_store);
    let pulled = puller.pull(&scraper, std::slice::from_ref(&t)).await;
    puller.apply(pulled, &names, 2_000, &store);
    assert_eq!(
        samples(&store, "problem_gauge", "DockerHung"),
        [(2_000, 1.0)]
    );
    assert_eq!(
        samples(&store, "problem_gauge", "KernelHasNoDeadlock"),
        [(1_000, 0.0), (2_000, 0.0)]
    );
    // New reasons: 0 at the previous pull, then their count.
    assert_eq!(
        samples(&store, "problem_counter", "TaskHung"),
        [(1_000, 0.0), (2_000, 1.0)]
    );
    assert_eq!(
        samples(&store, "problem_counter", "DockerHung"),
        [(1_000, 0.0), (2_000, 1.0)]
    );
    assert_eq!(
        samples(&store, "problem_counter", "OOMKilling"),
        [(1_000, 1.0), (2_000, 1.0)]
    );
    // The labels are NPD's plus the node's name.
    use vigil_promql::{MatchOp, Matcher};
    let s = store
        .select_series(
            &[
                Matcher::new(MatchOp::Equal, "reason", "DockerHung").unwrap(),
                Matcher::new(MatchOp::Equal, "__name__", "problem_gauge").unwrap(),
            ],
            None,
            |_| Ok::<(), ()>(()),
        )
        .unwrap();
    let labels: Vec<(&str, &str)> = s[0]
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("__name__", "problem_gauge"),
            ("nodename", "node-a"),
            ("reason", "DockerHung"),
            ("type", "KernelDeadlock")
        ]
    );

    // The collector restarts: its sequence starts again; the counters keep rising.
    let restarted = collector_store();
    let addr2 = serve(vigil_collector::problems::http::app(restarted)).await;
    let t2 = Target {
        url: t.url.replace(&addr.to_string(), &addr2.to_string()),
        ..t.clone()
    };
    // Same node name, new URL: its series go on (no staleness marker in between).
    let pulled = puller.pull(&scraper, std::slice::from_ref(&t2)).await;
    puller.apply(pulled, &name_of(&t2.url, "node-a"), 3_000, &store);
    let oom = samples(&store, "problem_counter", "OOMKilling");
    assert_eq!(oom, [(1_000, 1.0), (2_000, 1.0), (3_000, 1.0)]);

    let mut m = String::new();
    puller.write_metrics(&mut m);
    assert!(
        m.contains("vigil_aggregator_problem_pulls_total{outcome=\"ok\"} 3"),
        "{m}"
    );
    assert!(m.contains("vigil_aggregator_problem_events_total 4"), "{m}");
}

/// A restarted collector is seen from its sequence numbers; the counter is not reset.
#[tokio::test]
async fn collector_restart_keeps_counters_rising() {
    let first = collector_store();
    for _ in 0..3 {
        first.push_event(
            "kernel-monitor",
            Severity::Warn,
            Utc::now(),
            "OOMKilling",
            "Killed",
        );
    }
    let app_store = Arc::new(Mutex::new(first));
    let handle = app_store.clone();
    // A front that forwards to whichever detector store is current (the "restart").
    let router = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let s = handle.lock().unwrap().clone();
        async move {
            use tower::ServiceExt;
            vigil_collector::problems::http::app(s)
                .oneshot(req)
                .await
                .unwrap()
        }
    });
    let addr = serve(router).await;
    let t = parse_entry(&addr.to_string()).unwrap();
    let (scraper, puller) = (
        Scraper::new(Duration::from_secs(5), 4),
        ProblemPuller::new(),
    );
    let store = Store::new(3_600_000, 10_000);
    let names = name_of(&t.url, "n");
    let pulled = puller.pull(&scraper, std::slice::from_ref(&t)).await;
    puller.apply(pulled, &names, 1_000, &store);
    assert_eq!(
        samples(&store, "problem_counter", "OOMKilling"),
        [(1_000, 4.0)]
    );
    *app_store.lock().unwrap() = collector_store();
    let pulled = puller.pull(&scraper, std::slice::from_ref(&t)).await;
    assert!(pulled[0].1.as_ref().unwrap().as_ref().unwrap().restarted);
    puller.apply(pulled, &names, 2_000, &store);
    assert_eq!(
        samples(&store, "problem_counter", "OOMKilling"),
        [(1_000, 4.0), (2_000, 5.0)]
    );
}

/// A node without a detector is fine (no_detector); broken, huge and hung detectors are
/// counted by reason and named; the others' series are written all the same.
#[tokio::test]
async fn bad_detectors_are_counted_and_do_not_stop_the_others() {
    use axum::routing::get;
    let good = serve(vigil_collector::problems::http::app(collector_store())).await;
    let no_detector = serve(axum::Router::new()).await;
    let malformed =
        serve(axum::Router::new().route("/conditions", get(|| async { "[{\"type\": 1}]" }))).await;
    let huge = serve(axum::Router::new().route(
        "/conditions",
        get(|| async { "[".to_string() + &" ".repeat(MAX_ANSWER_BYTES) + "]" }),
    ))
    .await;
    let hung = crate::scrape::tests::hung_server().await;
    let targets: Vec<Target> = [good, no_detector, malformed, huge, hung]
        .iter()
        .map(|a| parse_entry(&a.to_string()).unwrap())
        .collect();
    let scraper =
        Scraper::new(Duration::from_secs(30), 4).with_round_deadline(Duration::from_millis(1500));
    let puller = ProblemPuller::new();
    let store = Store::new(3_600_000, 10_000);
    let began = std::time::Instant::now();
    let pulled = puller.pull(&scraper, &targets).await;
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    let errors: HashMap<String, String> = pulled
        .iter()
        .filter_map(|(u, r)| Some((u.clone(), r.as_ref().err()?.to_string())))
        .collect();
    let err = |i: usize| errors[&targets[i].url].clone();
    assert!(
        err(2).contains("/conditions: malformed answer"),
        "{}",
        err(2)
    );
    assert!(
        err(3).contains(&format!("larger than {MAX_ANSWER_BYTES} bytes")),
        "{}",
        err(3)
    );
    assert!(err(4).contains("round's deadline"), "{}", err(4));
    puller.apply(pulled, &HashMap::new(), 1_000, &store);
    assert_eq!(
        samples(&store, "problem_counter", "OOMKilling"),
        [(1_000, 1.0)]
    );
    let mut m = String::new();
    puller.write_metrics(&mut m);
    for want in ["ok", "no_detector", "malformed", "too_large", "late"] {
        assert!(
            m.contains(&format!(
                "vigil_aggregator_problem_pulls_total{{outcome=\"{want}\"}} 1"
            )),
            "{want}: {m}"
        );
    }

    // The good node leaves the target list: its series end with staleness markers.
    puller.apply(Vec::new(), &HashMap::new(), 2_000, &store);
    let oom = samples(&store, "problem_counter", "OOMKilling");
    assert_eq!(oom.len(), 2);
    assert!(vigil_promql::is_stale(oom[1].1));
}
