//! `promtool check metrics` for the exposition tests (the Debian package `prometheus`; a missing
//! promtool fails the test, it never skips it).

use std::io::Write;
use std::process::{Command, Stdio};

/// Lints `text` with `promtool check metrics`. Any finding that does not start with one of the
/// `allowed` prefixes fails, and so does any exit status other than 0, or 3 (lint findings) when
/// every finding is allowed. `allowed` names lints kept on purpose (a whole finding line, or a
/// metric name followed by a space), e.g. a released metric name.
pub fn check_metrics(text: &str, allowed: &[&str]) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let found = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let others: Vec<&str> = found
        .lines()
        .filter(|l| !l.trim().is_empty() && !allowed.iter().any(|a| l.trim().starts_with(a)))
        .collect();
    assert!(others.is_empty(), "promtool check metrics: {found}\n{text}");
    assert!(
        out.status.success() || out.status.code() == Some(3),
        "promtool check metrics exited {:?}: {found}\n{text}",
        out.status
    );
}
