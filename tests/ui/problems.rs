//! The problems page and a node's page in a real browser, with node problems from a real
//! collector: node-problem-detector's kernel and read-only monitors read a kern.log fed with the
//! shared fixtures' lines (a docker hang: KernelDeadlock True with DockerHung; an OOM kill: an
//! event), the aggregator pulls them, and headless Chromium shows them with no console error
//! and no failed request. Screenshots land in target/ui-screenshots/.

use std::time::Duration;

use crate::support::problems::*;
use crate::support::chromium::{screenshot_dir, Browser, Page};

const READY: Duration = Duration::from_secs(30);

fn ready(page: &mut Page, what: &str, cond: &str) {
    page.wait_for(what, &format!("document.body.dataset.ready === '1' && ({cond})"), READY);
}

fn text(page: &mut Page, selector: &str) -> String {
    page.eval(&format!("document.querySelector({selector:?})?.textContent || ''")).as_str().unwrap_or("").to_string()
}

/// The rows of the problems table as "node|kind|type|reason" strings (the first four cells).
fn problem_rows(page: &mut Page) -> Vec<String> {
    let v = page.eval("JSON.stringify([...document.querySelectorAll('table.problems tbody tr')].map(r => [...r.cells].slice(0, 4).map(c => c.textContent).join('|')))");
    serde_json::from_str(v.as_str().unwrap_or("[]")).unwrap()
}

#[test]
fn problems_page_and_node_page_show_a_real_collectors_problems() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let node = rt.block_on(ProblemNode::start(tempfile::tempdir().unwrap(), &[]));
    let base = node.agg.base.clone();
    let browser = Browser::start();
    let mut page = browser.page();
    page.viewport(1400, 1000, false);

    // Before any problem: the detector is known and reports nothing.
    page.navigate(&format!("{base}/#/problems"));
    ready(&mut page, "problems page", "document.querySelector('h1').textContent === 'Problems'");
    page.wait_for("the empty state", "document.querySelector('main').textContent.includes('No node reports a problem condition or event')", READY);

    append(&node.log, &(kern_lines("docker_hung") + &kern_lines("oom_kill")));
    rt.block_on(poll("the deadlock and the OOM kill in the aggregator", Duration::from_secs(45), || async {
        let gauge = first_result(&base, "problem_gauge{type=\"KernelDeadlock\",reason=\"DockerHung\"} == 1").await;
        let counter = first_result(&base, "problem_counter{reason=\"OOMKilling\"} > 0").await;
        (gauge.is_some() && counter.is_some()).then_some(())
    }));

    // The problems page lists the condition and the events (reloaded: it refreshes on its own
    // only at the resolution's pace, and the test wants the rows now).
    let n = &node.nodename;
    page.navigate(&format!("{base}/#/problems?range=15m"));
    ready(&mut page, "problems page", "document.querySelector('h1').textContent === 'Problems'");
    page.wait_for("problem rows", "document.querySelectorAll('table.problems tbody tr').length >= 3", READY);
    let rows = problem_rows(&mut page);
    for want in [
        format!("{n}|condition|KernelDeadlock|DockerHung"),
        format!("{n}|events in 15m||OOMKilling"),
        format!("{n}|events in 15m||TaskHung"),
    ] {
        assert!(rows.contains(&want), "{want:?} not in {rows:?}");
    }
    page.pump(Duration::from_millis(300));
    page.screenshot(&screenshot_dir().join("problems-live.png"), true);

    // Clicking the node goes to its page, which lists its conditions (problem or not) and the
    // same rows.
    page.eval("document.querySelector('table.problems tbody a[href^=\"#/node/\"]').click()");
    ready(&mut page, "node page", &format!("document.querySelector('h1').textContent === 'Node {n}'"));
    page.wait_for("the node's conditions", "document.querySelector('p.conditions')", READY);
    let conditions = text(&mut page, "p.conditions");
    for want in ["KernelDeadlock True", "ReadonlyFilesystem False"] {
        assert!(conditions.contains(want), "{want:?} not in {conditions:?}");
    }
    let bad = page.eval("[...document.querySelectorAll('p.conditions .status-bad')].map(e => e.textContent).join(',')");
    assert_eq!(bad.as_str(), Some("KernelDeadlock True"));
    // Without the node column there.
    let rows = problem_rows(&mut page);
    assert!(rows.iter().any(|r| r.starts_with("condition|KernelDeadlock|DockerHung|")), "{rows:?}");
    page.pump(Duration::from_millis(300));
    page.screenshot(&screenshot_dir().join("node-problems.png"), true);

    // The overview's card shows it too (wait for the overview's own rows, which carry the node
    // column: the node page's rows may still be in the document right after the navigation).
    page.navigate(&format!("{base}/#/"));
    ready(
        &mut page,
        "overview",
        &format!("[...document.querySelectorAll('table.problems tbody tr')].some(r => r.cells.length === 5 && r.cells[0].textContent === '{n}')"),
    );
    assert!(problem_rows(&mut page).contains(&format!("{n}|condition|KernelDeadlock|DockerHung")));

    page.pump(Duration::from_millis(300));
    assert_eq!(page.problems, Vec::<String>::new(), "console errors or failed requests");
}
