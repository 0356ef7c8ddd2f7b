//! Property tests (#19, "keep it so") for the parsers that take outside input: Summary JSON
//! documents, kernel log records and lines, node-problem-detector monitor configs, PromQL
//! (parsed and evaluated), rule files, cgroup and /proc files. None may panic, and every
//! rejection is an error value. 256 cases per property keep CI fast. (YAML config files and
//! durations: `common/`; CRI and docker lines: `tests/log_shipper_hardening.rs`.)

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;
use vigil_aggregator::processors::decode::{decode_document, NodeCache};
use vigil_collector::problems::config::{parse_str, MonitorConfig};
use vigil_collector::problems::logmonitor::LogMonitor;
use vigil_collector::problems::matcher::LogLine;
use vigil_collector::problems::store::Store;
use vigil_collector::problems::watch::filelog::Translator;
use vigil_collector::problems::watch::kmsg::parse_record;
use vigil_collector::problems::watch::{LineSplitter, MAX_LINE};

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(256)
}

fn summary_fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/aggregator/testdata/kubelet-summary.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn npd_fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("collector/testdata/problems/config")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const NPD_CONFIGS: [&str; 8] = [
    "custom-plugin-monitor.json",
    "docker-monitor.json",
    "kernel-monitor-counter.json",
    "kernel-monitor-filelog.json",
    "kernel-monitor.json",
    "network-problem-monitor.json",
    "readonly-monitor.json",
    "systemd-monitor.json",
];

/// Any JSON value, small: scalars of every type (times good and bad, huge and negative
/// numbers), arrays and objects up to three levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("2024-01-01T00:00:00Z"),
            Just("2024-13-45T99:99:99Z"),
            Just("2024-01-01 00:00:00Z"),
            Just(""),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every place in a JSON tree (object keys and array elements), as paths.
fn paths(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                at.push(Value::from(k.as_str()));
                out.push(at.clone());
                paths(child, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                at.push(Value::from(i));
                out.push(at.clone());
                paths(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

/// Replaces (or, with `None`, removes) the value at `path`.
fn set_at(root: &mut Value, path: &[Value], new: Option<Value>) {
    let (last, parents) = path.split_last().unwrap();
    let mut v = root;
    for p in parents {
        v = match p {
            Value::String(k) => &mut v[k.as_str()],
            _ => &mut v[p.as_u64().unwrap() as usize],
        };
    }
    match (last, v, new) {
        (Value::String(k), Value::Object(m), Some(n)) => {
            m.insert(k.clone(), n);
        }
        (Value::String(k), Value::Object(m), None) => {
            m.remove(k);
        }
        (i, Value::Array(a), Some(n)) => a[i.as_u64().unwrap() as usize] = n,
        (i, Value::Array(a), None) => {
            a.remove(i.as_u64().unwrap() as usize);
        }
        _ => {}
    }
}

/// Up to three structural edits of `base`: a value replaced by any JSON, or removed.
fn mutated(base: Value) -> impl Strategy<Value = Value> {
    prop::collection::vec((any::<Index>(), prop::option::weighted(0.8, json())), 1..4).prop_map(
        move |edits| {
            let mut v = base.clone();
            for (at, new) in edits {
                let mut all = Vec::new();
                paths(&v, &mut Vec::new(), &mut all);
                if all.is_empty() {
                    break;
                }
                set_at(&mut v, &all[at.index(all.len())], new);
            }
            v
        },
    )
}

/// Up to eight byte edits (overwrite, insert, delete) of `base`.
fn byte_mutated(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((any::<Index>(), any::<u8>(), 0..3u8), 1..8).prop_map(move |edits| {
        let mut b = base.clone();
        for (at, byte, op) in edits {
            if b.is_empty() {
                b.push(byte);
                continue;
            }
            let i = at.index(b.len());
            match op {
                0 => b[i] = byte,
                1 => b.insert(i, byte),
                _ => {
                    b.remove(i);
                }
            }
        }
        b
    })
}

/// A decoded document is either an error value or well formed: the node's set first, every key
/// under the node's name or a namespace.
fn check_decode(body: &[u8]) -> Result<(), TestCaseError> {
    match decode_document(body, "fallback", &mut NodeCache::default()) {
        Err(e) => prop_assert!(!e.to_string().is_empty()),
        Ok(n) => {
            prop_assert!(!n.node_name.is_empty());
            prop_assert_eq!(&n.sets[0].0, &format!("node:{}", n.node_name));
            for (k, _) in &n.sets {
                prop_assert!(
                    k.starts_with("node:") || k.starts_with("namespace:"),
                    "{}",
                    k
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Summary JSON: any bytes.
    #[test]
    fn summary_decoding_of_any_bytes_never_panics(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_decode(&body)?;
    }

    /// Summary JSON: a real document with values replaced by any JSON or removed.
    #[test]
    fn summary_decoding_of_mutated_documents_never_panics(doc in mutated(summary_fixture())) {
        check_decode(&serde_json::to_vec(&doc).unwrap())?;
    }

    /// Summary JSON: a real document with bytes overwritten, inserted or deleted.
    #[test]
    fn summary_decoding_of_corrupted_bytes_never_panics(
        body in byte_mutated(serde_json::to_vec(&summary_fixture()).unwrap())
    ) {
        check_decode(&body)?;
    }

    /// Kernel records (`pri,seq,ts,flags;message`): any text; a parsed message is one trimmed line.
    #[test]
    fn kmsg_records_never_panic(raw in "(\\PC|\n|;|,){0,80}") {
        if let Some(r) = parse_record(&raw) {
            prop_assert!(!r.message.contains('\n'));
            prop_assert_eq!(r.message.trim(), r.message.as_str());
        }
    }

    /// Kernel records with numeric-looking headers, including overflowing ones.
    #[test]
    fn kmsg_headers_parse_only_when_numeric(
        pri in "[0-9]{1,3}|-1|x", seq in "[0-9]{1,22}", ts in "[0-9]{1,22}|1e3",
        flags in "[-c+]{0,2}", msg in "\\PC{0,40}"
    ) {
        let raw = format!("{pri},{seq},{ts},{flags};{msg}\n SUBSYSTEM=x\n");
        let parsed = parse_record(&raw);
        let numeric = pri.parse::<u32>().is_ok() && seq.parse::<u64>().is_ok() && ts.parse::<u64>().is_ok();
        prop_assert_eq!(parsed.is_some(), numeric, "{:?}", raw);
    }

    /// Log lines split from any chunking of any stream equal the reference split, each cut at
    /// MAX_LINE bytes and flagged when it was longer.
    #[test]
    fn log_lines_are_split_and_capped_like_the_reference_split(
        parts in prop::collection::vec(
            prop_oneof![
                "[ab\n]{0,64}".prop_map(String::into_bytes),
                (0..3 * MAX_LINE).prop_map(|n| vec![b'x'; n]),
            ],
            0..12,
        ),
        cuts in prop::collection::vec(any::<Index>(), 0..6),
    ) {
        let stream: Vec<u8> = parts.concat();
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        at.push(0);
        at.push(stream.len());
        at.sort();
        let mut s = LineSplitter::default();
        let mut got = Vec::new();
        for w in at.windows(2) {
            got.extend(s.push(&stream[w[0]..w[1]]));
            prop_assert!(s.pending_len() <= MAX_LINE);
        }
        let mut want: Vec<&[u8]> = stream.split(|b| *b == b'\n').collect();
        want.pop();
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            prop_assert_eq!(g.truncated, w.len() > MAX_LINE);
            prop_assert_eq!(g.text.as_bytes(), &w[..w.len().min(MAX_LINE)]);
        }
    }

    /// The shipped kernel filelog translator and the kernel monitor's rules take any line.
    #[test]
    fn kernel_log_lines_never_panic_the_translator_or_the_rules(
        lines in prop::collection::vec("\\PC{0,120}", 1..8)
    ) {
        let cfg = npd_fixture("kernel-monitor-filelog.json");
        let pc = &cfg["pluginConfig"];
        let t = Translator::new(
            pc["timestamp"].as_str().unwrap(),
            pc["message"].as_str().unwrap(),
            pc["timestampFormat"].as_str().unwrap(),
        ).unwrap();
        let MonitorConfig::SystemLog(kernel) =
            parse_str(Path::new("kernel-monitor.json"), &npd_fixture("kernel-monitor.json").to_string()).unwrap()
        else { panic!("kernel-monitor.json is a system log monitor") };
        let mut m = LogMonitor::new(&kernel, 0, Arc::new(Store::default())).unwrap();
        for line in lines {
            if let Ok(l) = t.translate(&line) {
                m.process(l);
            }
            m.process(LogLine { timestamp: chrono::Utc::now(), message: line });
        }
    }

    /// NPD monitor configs: any text is parsed or refused with an error naming the file.
    #[test]
    fn npd_configs_of_any_text_never_panic(text in "\\PC{0,200}") {
        if let Err(e) = parse_str(Path::new("/etc/npd/any.json"), &text) {
            prop_assert!(e.to_string().contains("/etc/npd/any.json"), "{}", e);
        }
    }

    /// NPD monitor configs: every shipped config with values replaced or removed is parsed and
    /// validated or refused with an error naming the file; a valid one runs lines.
    #[test]
    fn npd_configs_mutated_never_panic(
        which in 0..NPD_CONFIGS.len(),
        edits in prop::collection::vec((any::<Index>(), prop::option::weighted(0.8, json())), 1..4),
        line in "\\PC{0,80}",
    ) {
        let mut v = npd_fixture(NPD_CONFIGS[which]);
        for (at, new) in edits {
            let mut all = Vec::new();
            paths(&v, &mut Vec::new(), &mut all);
            if all.is_empty() {
                break;
            }
            set_at(&mut v, &all[at.index(all.len())], new);
        }
        let file = Path::new("/etc/npd/mutated.json");
        let named = |e: &dyn std::fmt::Display| e.to_string().contains("/etc/npd/mutated.json");
        match parse_str(file, &v.to_string()) {
            Err(e) => prop_assert!(named(&e), "{}", e),
            Ok(MonitorConfig::SystemLog(c)) => match c.validate(file) {
                Err(e) => prop_assert!(named(&e), "{}", e),
                Ok(()) => {
                    if let Ok(mut m) = LogMonitor::new(&c, 0, Arc::new(Store::default())) {
                        m.process(LogLine { timestamp: chrono::Utc::now(), message: line });
                    }
                }
            },
            Ok(MonitorConfig::Custom(c)) => {
                if let Err(e) = c.validate(file, &|_| true) {
                    prop_assert!(named(&e), "{}", e);
                }
            }
        }
    }
}

// ---- PromQL, rule files, cgroup and /proc files (#19, "keep it so", as they landed) ----

/// Queries of the shapes users and Grafana send, to mutate.
const QUERIES: &[&str] = &[
    r#"sum by (namespace_name) (cpu_usage_rate{type="pod"})"#,
    r#"topk(10, rate(network_rx_total{type="pod"}[5m]))"#,
    r#"histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))"#,
    r#"memory_working_set{pod_name=~"a.*", namespace_name!="b"} offset 1m @ 100"#,
    r#"max_over_time(deriv(m[10m])[30m:1m]) > bool 3"#,
    r#"label_replace(up, "a", "$1", "job", "(.*)") or on (job) group_left vector(1)"#,
    r#"count_values("v", m) / ignoring (x) group_right m unless absent(n)"#,
    r#"quantile_over_time(0.5, m[1h]) - predict_linear(m[15m], 3600) * -1e3 ^ 2 % 7"#,
];

/// A small store the evaluated queries read from.
fn promql_storage() -> vigil_promql::testing::MemStorage {
    let mut s = vigil_promql::testing::MemStorage::new();
    for (i, name) in ["m", "up", "cpu_usage_rate", "x_bucket"].iter().enumerate() {
        for le in ["0.1", "1", "+Inf"] {
            let labels: vigil_promql::Labels = [
                ("__name__", *name),
                ("job", "j"),
                ("type", "pod"),
                ("le", le),
                ("namespace_name", "ns"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            for t in 0..40 {
                s.add(&labels, t * 15_000, (t as f64) * (i as f64 + 1.0));
            }
        }
    }
    s
}

/// `base` with a few characters inserted, removed or replaced.
fn text_mutated(base: &'static str) -> impl Strategy<Value = String> {
    let edits = prop::collection::vec((any::<Index>(), 0u8..3, "[ -~]"), 1..4);
    edits.prop_map(move |edits| {
        let mut chars: Vec<char> = base.chars().collect();
        for (at, kind, c) in edits {
            let c = c.chars().next().unwrap_or(' ');
            let i = at.index(chars.len() + 1);
            match kind {
                0 => chars.insert(i, c),
                1 if i < chars.len() => {
                    chars.remove(i);
                }
                _ if i < chars.len() => chars[i] = c,
                _ => chars.push(c),
            }
        }
        chars.into_iter().collect()
    })
}

fn check_promql(query: &str) -> Result<(), TestCaseError> {
    let engine = vigil_promql::Engine::new(vigil_promql::EngineOptions {
        timeout: std::time::Duration::from_secs(5),
        ..Default::default()
    });
    let storage = promql_storage();
    match vigil_promql::Query::parse(query) {
        Err(e) => prop_assert!(!e.to_string().is_empty()),
        Ok(_) => {
            // Evaluation may fail (types, limits), never panic.
            let _ = engine.instant(&storage, query, 300_000);
            let _ = engine.range(&storage, query, 0, 600_000, 15_000);
        }
    }
    Ok(())
}

/// A rule file users write, to mutate.
const RULE_FILE: &str = r#"groups:
  - name: g
    interval: 30s
    rules:
      - record: job:m:sum
        expr: sum by (job) (m)
      - alert: High
        expr: job:m:sum > 10
        for: 5m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.job }} is {{ $value | humanize }}"}
"#;

proptest! {
    #![proptest_config(config())]

    /// PromQL: any printable text is parsed or rejected with an error value.
    #[test]
    fn promql_of_any_text_never_panics(query in "[ -~]{0,80}") {
        check_promql(&query)?;
    }

    /// PromQL: real queries with a few characters changed parse or fail, and evaluate or fail,
    /// without a panic.
    #[test]
    fn promql_mutated_queries_never_panic(
        query in prop::sample::select(QUERIES).prop_flat_map(text_mutated)
    ) {
        check_promql(&query)?;
    }

    /// Rule files: any text, and a real file with characters changed, load or fail with an
    /// error value naming the file.
    #[test]
    fn rule_files_of_any_text_never_panic(text in "(\\PC|\n){0,200}") {
        if let Err(e) = vigil_alerting::rules::file::parse("any.yml", &text) {
            prop_assert!(e.to_string().contains("any.yml"), "{e}");
        }
    }

    #[test]
    fn rule_files_mutated_never_panic(text in text_mutated(RULE_FILE)) {
        if let Err(e) = vigil_alerting::rules::file::parse("rules.yml", &text) {
            prop_assert!(e.to_string().contains("rules.yml"), "{e}");
        }
    }

    /// cgroup files (v1 and v2 formats) and /proc files: any text is parsed or rejected.
    #[test]
    fn cgroup_and_proc_parsers_never_panic(text in "([0-9a-z_ :.=/+-]|\n){0,200}") {
        use vigil_collector::cgroup::parse;
        use vigil_collector::proc;
        let _ = parse::parse_u64(&text);
        let _ = parse::parse_limit(&text);
        for entry in parse::flat_keyed(&text).take(1000) {
            let _ = entry;
        }
        let _ = parse::parse_psi(&text);
        let _ = parse::parse_dev(&text);
        let _ = proc::parse_net_dev(&text);
        let _ = proc::parse_stat(&text, 10_000_000);
        let _ = proc::parse_meminfo(&text);
        let _ = proc::parse_diskstats(&text);
        let _ = proc::parse_cpuinfo(&text);
        let _ = vigil_collector::proc::mountinfo::mount_device(&text, Path::new("/var/lib/kubelet"), Some((8, 1)));
    }
}
