//! The web UI in a real browser: headless Chromium loads every page from a live aggregator that
//! pulls simulated nodes and a real collector, with no console error and no failed request;
//! charts hold drawn series; clicking goes cluster → node → pod → container; changing the time
//! range queries again. Screenshots land in target/ui-screenshots/.

use crate::support::aggregator;
use std::time::Duration;

use crate::support::aggregator::{Aggregator, Collector, SimNode};
use crate::support::until;
use serde_json::Value;
use vigil_aggregator::sim::{Shape, Sim};
use crate::support::chromium::{screenshot_dir, Browser, Page};

const READY: Duration = Duration::from_secs(30);

/// A live aggregator at 1 s resolution over 3 simulated nodes and this machine's collector.
struct Cluster {
    _rt: tokio::runtime::Runtime,
    _nodes: Vec<SimNode>,
    _collector: Collector,
    agg: Aggregator,
    /// A fixed time range around the data (`range=custom&from=..&to=..`): the cluster is young,
    /// and its few seconds of data fill a good part of a one-minute chart.
    range: String,
}

fn cluster() -> Cluster {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let sim = Sim::new(Shape { nodes: 3, pods_per_node: 4, containers_per_pod: 2, namespaces: 2 });
    let nodes: Vec<SimNode> = (0..3).map(|i| rt.block_on(SimNode::start(&sim, i, "127.0.0.1", 0))).collect();
    let collector = rt.block_on(Collector::start(&[]));
    let list = nodes.iter().map(|n| n.addr.clone()).chain([collector.addr.clone()]).collect::<Vec<_>>().join(",");
    let started = now();
    let agg = Aggregator::start(&["--nodes", &list, "--metric-resolution", "1s", "--allow-short-resolution"]);
    // Enough rounds that every chart has a line (at least 8 samples per node series).
    let url = format!(
        "{}/api/v1/query?query={}",
        agg.base,
        urlencode("min(count_over_time(memory_working_set{type=\"node\"}[1m])) >= 8 and count(memory_working_set{type=\"node\"}) >= 4")
    );
    rt.block_on(until("8 rounds of 4 nodes in the query API", Duration::from_secs(60), || async {
        let v = aggregator::try_json(&url).await?;
        (!v["data"]["result"].as_array()?.is_empty()).then_some(())
    }));
    let range = format!("range=custom&from={}&to={}", started - 5, started + 55);
    Cluster { _rt: rt, _nodes: nodes, _collector: collector, agg, range }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Waits until the current route finished loading (`body[data-ready=1]`) and `cond` holds.
fn ready(page: &mut Page, what: &str, cond: &str) {
    page.wait_for(what, &format!("document.body.dataset.ready === '1' && ({cond})"), READY);
}

/// Pixels of a chart's canvas in the colours of its series (uPlot draws the lines there; the
/// dashed reference lines have other colours).
fn painted(page: &mut Page, chart: &str) -> u64 {
    let js = format!(
        r#"(() => {{
        const c = document.querySelector('.chart[data-chart="{chart}"] canvas');
        if (!c) return 0;
        const palette = [[31,119,180],[255,127,14],[44,160,44],[214,39,40],[148,103,189],[140,86,75],[227,119,194],[127,127,127],[188,189,34],[23,190,207]];
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) {{
          if (d[i+3] < 100) continue;
          if (palette.some(p => Math.abs(d[i] - p[0]) < 24 && Math.abs(d[i+1] - p[1]) < 24 && Math.abs(d[i+2] - p[2]) < 24)) n++;
        }}
        return n;
    }})()"#
    );
    page.eval(&js).as_u64().unwrap_or(0)
}

fn assert_charts_drawn(page: &mut Page, charts: &[&str]) {
    for c in charts {
        let series = page.eval(&format!("Number(document.querySelector('.chart[data-chart=\"{c}\"]')?.dataset.series || 0)"));
        assert!(series.as_u64().unwrap_or(0) >= 1, "chart {c} has no series");
        let px = painted(page, c);
        assert!(px > 20, "chart {c}: only {px} pixels of its lines are drawn");
    }
}

fn shot(page: &mut Page, name: &str) {
    page.pump(Duration::from_millis(300));
    page.screenshot(&screenshot_dir().join(format!("{name}.png")), true);
}

fn text(page: &mut Page, selector: &str) -> String {
    page.eval(&format!("document.querySelector({selector:?})?.textContent || ''")).as_str().unwrap_or("").to_string()
}

/// Problems other than the alerting endpoints' 404 (alerting may not be built in yet; the
/// alerts page then says so, which the test checks).
fn unexpected(page: &Page) -> Vec<String> {
    page.problems
        .iter()
        .filter(|p| {
            !(["/api/v1/alerts", "/api/v1/rules", "/api/v2/silences"].iter().any(|u| p.contains(u))
                && (p.starts_with("HTTP 404") || p.contains("404")))
        })
        .cloned()
        .collect()
}

#[test]
fn ui_pages_in_chromium() {
    let c = cluster();
    let base = c.agg.base.clone();
    let browser = Browser::start();
    let mut page = browser.page();
    page.viewport(1400, 1000, false);

    // Overview.
    let range = c.range.clone();
    page.navigate(&format!("{base}/#/?{range}"));
    ready(&mut page, "overview", "document.querySelectorAll('a[href^=\"#/node/\"]').length >= 4");
    let tiles = text(&mut page, ".tiles");
    assert!(tiles.contains("4nodes"), "{tiles}");
    assert!(tiles.contains("12") || tiles.contains("pods"), "{tiles}");
    assert_charts_drawn(&mut page, &["cpu", "memory", "filesystem"]);
    let render_ms = page.eval("window.vigil.renderMs").as_f64().unwrap();
    let requests = page.eval("window.vigil.stats.requests").as_u64().unwrap();
    eprintln!("overview: ready in {render_ms:.0} ms with {requests} API requests");
    assert!(requests <= 10, "the overview issued {requests} requests");
    shot(&mut page, "overview");

    // Cluster → node (a simulated one: its pods are known).
    page.eval("document.querySelector('a[href^=\"#/node/node-\"]').click()");
    ready(&mut page, "node page", "document.querySelector('h1').textContent.startsWith('Node node-')");
    assert_charts_drawn(&mut page, &["cpu", "memory", "network", "filesystem"]);
    let status = text(&mut page, "main .note");
    assert!(status.contains("Reporting"), "{status}");
    shot(&mut page, "node");

    // Node → pod.
    page.wait_for("pods on the node", "document.querySelectorAll('a[href^=\"#/pod/\"]').length >= 4", READY);
    page.eval("document.querySelector('a[href^=\"#/pod/\"]').click()");
    ready(&mut page, "pod page", "document.querySelector('h1').textContent.startsWith('Pod ')");
    assert_charts_drawn(&mut page, &["cpu", "memory", "network"]);
    page.wait_for("containers of the pod", "document.querySelectorAll('a[href^=\"#/container/\"]').length >= 2", READY);
    shot(&mut page, "pod");

    // Pod → container.
    page.eval("document.querySelector('a[href^=\"#/container/\"]').click()");
    ready(&mut page, "container page", "document.querySelector('h1').textContent.startsWith('Container ')");
    assert_charts_drawn(&mut page, &["cpu", "memory"]);
    shot(&mut page, "container");

    // Changing the time range queries again, over the new range.
    let before = page.requests.len();
    page.eval("document.querySelector('[data-range=\"1h\"]').click()");
    ready(&mut page, "1h range", "location.hash.includes('range=1h')");
    page.pump(Duration::from_millis(200));
    let ranges: Vec<f64> = page.requests[before..]
        .iter()
        .filter(|u| u.contains("/api/v1/query_range?"))
        .map(|u| {
            let url = reqwest::Url::parse(u).unwrap();
            let p = |k: &str| url.query_pairs().find(|(n, _)| n == k).unwrap().1.parse::<f64>().unwrap();
            p("end") - p("start")
        })
        .collect();
    assert!(ranges.iter().any(|r| (3590.0..=3700.0).contains(r)), "no 1h query_range after the click: {ranges:?}");
    assert_eq!(page.eval("document.querySelector('[data-range=\"1h\"]').getAttribute('aria-pressed')"), "true");

    // Namespace page.
    page.navigate(&format!("{base}/#/namespace/ns-0?{range}"));
    ready(&mut page, "namespace page", "document.querySelector('h1').textContent === 'Namespace ns-0'");
    assert_charts_drawn(&mut page, &["cpu", "memory"]);
    shot(&mut page, "namespace");

    // Explore: graph and table views, the expression kept in the URL.
    let expr = "sum by (nodename) (cpu_usage_rate{type=\"node\"})";
    page.navigate(&format!("{base}/#/explore?{range}&expr={}", urlencode(expr)));
    ready(&mut page, "explore graph", "document.querySelector('#expr').value.length > 0");
    assert_eq!(page.eval("document.querySelector('#expr').value"), Value::from(expr));
    assert_charts_drawn(&mut page, &["explore"]);
    assert!(page.eval("Number(document.querySelector('.chart').dataset.series)").as_u64().unwrap() >= 4);
    shot(&mut page, "explore");
    page.eval("[...document.querySelectorAll('[role=tab]')].find(b => b.textContent === 'table').click()");
    ready(&mut page, "explore table", "document.querySelectorAll('[role=tabpanel] tbody tr').length >= 4");
    // A bad expression is an error on the page, not a console error.
    page.navigate(&format!("{base}/#/explore?expr={}", urlencode("sum(")));
    ready(&mut page, "explore error", "document.querySelector('.msg.err')");
    let err = text(&mut page, ".msg.err");
    assert!(err.contains("parse error") || err.contains("unexpected"), "{err}");
    page.problems.retain(|p| !(p.contains("HTTP 400") && p.contains("query_range")));
    page.problems.retain(|p| !(p.contains("status of 400")));

    // Alerts and problems pages load and say what they have.
    page.navigate(&format!("{base}/#/alerts"));
    ready(&mut page, "alerts page", "document.querySelector('h1').textContent === 'Alerts'");
    let alerts = text(&mut page, "main");
    assert!(alerts.contains("No alert is firing") || alerts.contains("has no alerting yet") || alerts.contains("firing"), "{alerts}");
    shot(&mut page, "alerts");
    page.navigate(&format!("{base}/#/problems"));
    ready(&mut page, "problems page", "document.querySelector('h1').textContent === 'Problems'");
    let problems = text(&mut page, "main");
    assert!(problems.contains("Every node reported") || problems.contains("stale since"), "{problems}");
    shot(&mut page, "problems");

    // A phone's width: one column, nothing wider than the screen.
    page.viewport(390, 844, true);
    page.navigate(&format!("{base}/#/"));
    ready(&mut page, "overview on a phone", "document.querySelectorAll('a[href^=\"#/node/\"]').length >= 4");
    let overflow = page.eval("document.documentElement.scrollWidth - window.innerWidth").as_i64().unwrap();
    assert!(overflow <= 1, "the page is {overflow}px wider than a phone");
    shot(&mut page, "overview-phone");

    page.pump(Duration::from_millis(300));
    assert_eq!(unexpected(&page), Vec::<String>::new(), "console errors or failed requests");
    drop(c);
}

#[test]
fn render_draws_live_series_and_refuses_bad_requests() {
    let c = cluster();
    let client = reqwest::blocking::Client::new();
    let get = |q: &[(&str, &str)]| {
        let r = client.get(format!("{}/render", c.agg.base)).query(q).send().unwrap();
        let status = r.status().as_u16();
        let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (status, ctype, r.bytes().unwrap().to_vec())
    };
    let (s, ctype, png) = get(&[("query", "cpu_usage_rate{type=\"pod_container\",nodename=\"node-0000\",namespace_name=\"ns-0\"} / 1000"), ("unit", "cores"), ("title", "CPU"), ("start", &(now() - 300).to_string()), ("threshold", "0.02")]);
    assert_eq!((s, ctype.as_str()), (200, "image/png"), "{}", String::from_utf8_lossy(&png));
    std::fs::create_dir_all(screenshot_dir()).unwrap();
    std::fs::write(screenshot_dir().join("render.png"), &png).unwrap();
    // Four containers at 10, 13, 24 and 27 millicores (the simulator's figures): four lines
    // apart from each other, the first three checked by their palette colours.
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (800, 400));
    for rgb in [[31u8, 119, 180], [255, 127, 14], [44, 160, 44]] {
        let n = buf.chunks(3).filter(|p| *p == rgb).count();
        assert!(n > 50, "colour {rgb:?}: {n} pixels");
    }
    let (s, ctype, svg) = get(&[("query", "memory_working_set{type=\"node\"}"), ("format", "svg"), ("unit", "bytes"), ("width", "600"), ("height", "300")]);
    assert_eq!((s, ctype.as_str()), (200, "image/svg+xml"));
    let svg = String::from_utf8(svg).unwrap();
    assert!(svg.contains("MiB") || svg.contains("GiB"), "axis in bytes");
    for (q, status, want) in [
        (vec![("query", "sum(")], 422, "query failed"),
        (vec![("query", "up"), ("height", "0")], 400, "\"height\": 0 is out of range"),
        (vec![("query", "up"), ("step", "1ms"), ("start", "0"), ("end", "100")], 400, "exceeded maximum resolution"),
        (vec![("query", "{__name__=~\"memory_.*\"}")], 400, "at most 100 can be drawn"),
    ] {
        let (s, _, body) = get(&q);
        let body = String::from_utf8_lossy(&body).to_string();
        assert_eq!(s, status, "{q:?}: {body}");
        assert!(body.contains(want), "{q:?}: {body}");
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}
