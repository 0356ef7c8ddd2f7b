//! Tests of the exposition writer: escaping, numbers, lines, families, handles, and promtool's parser on the result.

use super::*;
use proptest::prelude::*;

fn label_of(v: &str) -> String {
    let mut s = String::new();
    escape_label(v, &mut s);
    s
}

fn num<V: Value>(v: V) -> String {
    let mut s = String::new();
    v.write(&mut s);
    s
}

/// The inverse of [`escape_label`], as Prometheus's parser reads a label value.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(c) => out.push(c),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn label_values_escape_backslash_quote_and_newline_only() {
    assert_eq!(label_of(r"C:\dir"), r"C:\\dir");
    assert_eq!(label_of(r#"a"b"#), r#"a\"b"#);
    assert_eq!(label_of("line\nnext"), r"line\nnext");
    assert_eq!(label_of("\\\"\n"), r#"\\\"\n"#);
    // Tabs, carriage returns, UTF-8 and braces are written as they are.
    assert_eq!(label_of("tab\tcr\r"), "tab\tcr\r");
    assert_eq!(
        label_of("ünïcødé ✓ 🚀 {x=\"1\"}"),
        "ünïcødé ✓ 🚀 {x=\\\"1\\\"}"
    );
    assert_eq!(label_of(""), "");
}

#[test]
fn help_keeps_quotes_and_escapes_backslash_and_newline() {
    let mut s = String::new();
    escape_help("say \"hi\"\\\nbye", &mut s);
    assert_eq!(s, "say \"hi\"\\\\\\nbye");
}

#[test]
fn numbers_are_written_as_prometheus_parses_them() {
    assert_eq!(num(5.0), "5");
    assert_eq!(num(-3.0), "-3");
    assert_eq!(num(0.0), "0");
    assert_eq!(num(-0.0), "0");
    assert_eq!(num(0.25), "0.25");
    assert_eq!(num(0.1 + 0.2), "0.30000000000000004");
    assert_eq!(num(f64::NAN), "NaN");
    assert_eq!(num(f64::INFINITY), "+Inf");
    assert_eq!(num(f64::NEG_INFINITY), "-Inf");
    assert_eq!(num(1e-300), "1e-300");
    assert_eq!(num(5e-324), "5e-324");
    assert_eq!(num(123_456_789.0), "123456789");
    assert_eq!(num(999_999_999_999_999.0), "999999999999999");
    // From 10^15 whole numbers keep ryu's shortest form (exact, and what the collector wrote).
    assert_eq!(num(1e15), "1000000000000000.0");
    assert_eq!(num(f64::MAX), "1.7976931348623157e308");
    assert_eq!(num(u64::MAX), "18446744073709551615");
    assert_eq!(num(i64::MIN), "-9223372036854775808");
}

proptest! {
    #[test]
    fn every_finite_number_reads_back_exactly(bits in any::<u64>()) {
        let v = f64::from_bits(bits);
        let s = num(v);
        let back: f64 = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
        if v.is_nan() {
            prop_assert!(back.is_nan(), "{s}");
        } else if v == 0.0 {
            prop_assert_eq!(back, 0.0);
        } else {
            prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", s);
        }
    }

    #[test]
    fn every_label_value_reads_back(v in any::<String>()) {
        let e = label_of(&v);
        prop_assert!(!e.contains('\n'));
        prop_assert_eq!(unescape(&e), v);
    }
}

#[test]
fn sample_lines_with_and_without_labels_and_timestamps() {
    let mut s = String::new();
    sample(&mut s, "up", &[], 1.0, None);
    let ts = Timestamp::from_millis(1_700_000_000_123);
    sample(
        &mut s,
        "x_total",
        &[("a", "1"), ("b", "q\"")],
        7u64,
        Some(&ts),
    );
    sample(
        &mut s,
        "neg",
        &[("le", "+Inf")],
        -2i64,
        Some(&Timestamp::from_millis(-5)),
    );
    assert_eq!(
        s,
        "up 1\nx_total{a=\"1\",b=\"q\\\"\"} 7 1700000000123\nneg{le=\"+Inf\"} -2 -5\n"
    );
}

#[test]
fn header_names_the_family_in_the_text_format() {
    let mut s = String::new();
    header(&mut s, "x_total", Kind::Counter, "Things.\nMore");
    assert_eq!(s, "# HELP x_total Things.\\nMore\n# TYPE x_total counter\n");
}

#[test]
fn writer_openmetrics_names_counter_families_without_total_and_ends_with_eof() {
    let mut om = String::new();
    let mut w = Writer::new(&mut om, Format::OpenMetrics);
    w.counter("vigil_x_lines_read_total", "Lines read", 3);
    w.gauge("vigil_x_open_files", "Files open", 2i64);
    w.finish();
    assert_eq!(
        om,
        "# HELP vigil_x_lines_read Lines read\n# TYPE vigil_x_lines_read counter\nvigil_x_lines_read_total 3\n\
         # HELP vigil_x_open_files Files open\n# TYPE vigil_x_open_files gauge\nvigil_x_open_files 2\n# EOF\n"
    );
    let mut text = String::new();
    let mut w = Writer::new(&mut text, Format::Text);
    w.counter("vigil_x_lines_read_total", "Lines read", 3);
    w.finish();
    assert_eq!(
        text,
        "# HELP vigil_x_lines_read_total Lines read\n# TYPE vigil_x_lines_read_total counter\nvigil_x_lines_read_total 3\n"
    );
}

#[test]
fn histogram_buckets_are_cumulative_and_bounds_inclusive() {
    let h = Histogram::exponential(0.05, 2.0, 3);
    for v in [0.05, 0.07, 0.3, 9.0] {
        h.observe(v);
    }
    assert_eq!(h.count(), 4);
    let mut s = String::new();
    Writer::new(&mut s, Format::Text).histogram("d_seconds", "Durations.", &h);
    assert_eq!(
        s,
        "# HELP d_seconds Durations.\n# TYPE d_seconds histogram\n\
         d_seconds_bucket{le=\"0.05\"} 1\nd_seconds_bucket{le=\"0.1\"} 2\nd_seconds_bucket{le=\"0.2\"} 2\n\
         d_seconds_bucket{le=\"+Inf\"} 4\nd_seconds_sum 9.42\nd_seconds_count 4\n"
    );
}

#[test]
fn counter_family_series_are_sorted_and_labelled() {
    let f = CounterFamily::default();
    f.inc(&["web", "success"]);
    f.inc_by(&["mail", "timeout"], 2);
    f.inc(&["web", "success"]);
    assert_eq!(f.get(&["web", "success"]), 2);
    assert_eq!(f.get(&["web", "never"]), 0);
    let mut s = String::new();
    Writer::new(&mut s, Format::Text).counters("a_total", "A.", &["receiver", "outcome"], &f);
    assert_eq!(
        s,
        "# HELP a_total A.\n# TYPE a_total counter\n\
         a_total{receiver=\"mail\",outcome=\"timeout\"} 2\na_total{receiver=\"web\",outcome=\"success\"} 2\n"
    );
    f.clear();
    assert!(f.series().is_empty());
}

#[test]
fn gauges_go_up_down_and_hold_fractions() {
    let g = Gauge::default();
    g.set(5);
    g.inc();
    g.dec();
    g.dec();
    assert_eq!(g.get(), 4);
    let f = GaugeF64::default();
    f.set(-0.125);
    assert_eq!(f.get(), -0.125);
    let c = Counter::default();
    c.inc();
    c.inc_by(41);
    assert_eq!(c.get(), 42);
}

/// The hard cases through Prometheus's own parser and linter (`promtool check metrics`, package
/// prometheus; it reads the text format 0.0.4): a text it could not parse fails here.
#[test]
fn promtool_parses_the_edge_cases() {
    let h = Histogram::new([0.5, 1.0]);
    h.observe(0.75);
    let f = CounterFamily::default();
    f.inc(&["a\\b\"c\nd ünï 🚀"]);
    let mut out = String::new();
    let mut w = Writer::new(&mut out, Format::Text);
    w.header(
        "vigil_edge_values",
        Kind::Gauge,
        "Edge values with \\ and \n in HELP.",
    );
    for (i, v) in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        1e-300,
        1e300,
        0.1,
    ]
    .into_iter()
    .enumerate()
    {
        w.sample("vigil_edge_values", &[("i", &i.to_string())], v);
    }
    w.counters("vigil_edge_labels_total", "Odd label values.", &["v"], &f);
    w.histogram("vigil_edge_seconds", "A histogram.", &h);
    w.finish();
    let (ok, stderr) = promtool_check(&out);
    assert!(ok, "{stderr}\n{out}");
    // And a broken text is refused, so the check above can fail.
    let (ok, _) = promtool_check("vigil_edge_values{i=\"1} 1\n");
    assert!(!ok);
}

/// Kills promtool if the test ends before it does.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `promtool check metrics` on `text`: (success, stderr), within 30 s.
fn promtool_check(text: &str) -> (bool, String) {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let mut child = Child(
        Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool must be installed (Debian package prometheus)"),
    );
    let mut stdin = child.0.stdin.take().expect("stdin");
    stdin.write_all(text.as_bytes()).expect("write to promtool");
    drop(stdin);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for promtool") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "promtool did not finish in 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    let _ = child
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    (status.success(), stderr)
}
