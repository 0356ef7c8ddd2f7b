//! Rule files in Prometheus's format: parsing and the validation `promtool check rules` does.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::template;

/// A rule file that failed to load: every problem found, each naming the file, group and rule.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .errors.join("\n"))]
pub struct FileError {
    pub file: String,
    pub errors: Vec<String>,
}

/// Why a set of rule files could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("bad rule file pattern {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
    #[error("rule file pattern {0:?} matches no file")]
    NoMatch(String),
    #[error(transparent)]
    File(#[from] FileError),
}

/// One parsed, valid rule file.
#[derive(Debug, Clone)]
pub struct RuleFile {
    pub path: String,
    pub groups: Vec<Group>,
    /// Lint findings (`promtool check rules --lint=duplicate-rules`): reported, not fatal.
    pub warnings: Vec<String>,
}

/// One rule group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub file: String,
    /// The group's own `interval:`; `None` means the global evaluation interval.
    pub interval: Option<Duration>,
    /// Most alerts (or series) a rule may produce; 0 = no limit.
    pub limit: usize,
    /// Rules evaluate at `t - query_offset` (Prometheus 2.53).
    pub query_offset: Duration,
    /// Labels added to every rule of the group (Prometheus 3.0).
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<Rule>,
}

/// One rule: its kind, expression and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub kind: RuleKind,
    pub expr: String,
    pub labels: BTreeMap<String, String>,
}

/// What a rule produces.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Alerting {
        name: String,
        hold: Duration,
        keep_firing_for: Duration,
        annotations: BTreeMap<String, String>,
        /// A `baseline:` rule: the alert fires for samples outside their series' learned band.
        baseline: Option<crate::anomaly::BaselineConfig>,
        /// An `outlier:` rule: the alert fires for members that deviate from their peer group.
        outlier: Option<crate::anomaly::OutlierConfig>,
    },
    Recording {
        name: String,
    },
}

impl Rule {
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Alerting { name, .. } | RuleKind::Recording { name } => name,
        }
    }
}

/// A YAML scalar read as text, as Go's yaml.v3 reads a scalar into a string (`expr: 1` is `"1"`,
/// an empty value is `""`).
#[derive(Debug, Clone, Default)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        // serde-saphyr hands any non-null scalar to a string as its text.
        Option::<String>::deserialize(d).map(|s| Text(s.unwrap_or_default()))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileYaml {
    #[serde(default)]
    groups: Vec<GroupYaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupYaml {
    #[serde(default)]
    name: Text,
    interval: Option<Text>,
    #[serde(default)]
    limit: usize,
    query_offset: Option<Text>,
    #[serde(default)]
    labels: BTreeMap<String, Text>,
    #[serde(default)]
    rules: Vec<RuleYaml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleYaml {
    record: Option<Text>,
    alert: Option<Text>,
    expr: Option<Text>,
    #[serde(rename = "for")]
    hold: Option<Text>,
    keep_firing_for: Option<Text>,
    #[serde(default)]
    labels: BTreeMap<String, Text>,
    #[serde(default)]
    annotations: BTreeMap<String, Text>,
    // Kept as values and read per rule, so that a bad model names its group and rule.
    baseline: Option<serde_json::Value>,
    outlier: Option<serde_json::Value>,
}

/// Parses a Prometheus duration (`model.ParseDuration`): `1h30m`, `5m`, `90s`, `500ms`, `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    vigil_common::duration::parse_std(s).map_err(|e| e.to_string())
}

/// Whether `s` is a valid metric (recording rule) name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `s` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads and validates one rule file.
pub fn load_file(path: &Path) -> Result<RuleFile, FileError> {
    let file = path.display().to_string();
    let text = vigil_common::config::read_capped(path).map_err(|e| FileError {
        file: file.clone(),
        errors: vec![e.to_string()],
    })?;
    parse(&file, &text)
}

/// Parses and validates the text of a rule file named `file` (for messages).
pub fn parse(file: &str, text: &str) -> Result<RuleFile, FileError> {
    let fail = |errors: Vec<String>| FileError {
        file: file.to_string(),
        errors: errors.into_iter().map(|e| format!("{file}: {e}")).collect(),
    };
    // Depth and size first, in linear time (a YAML bomb of nested lists is an error at once,
    // reported as one); a blank file has no groups.
    vigil_common::config::check_yaml(text, Path::new(file)).map_err(|e| FileError {
        file: file.to_string(),
        errors: vec![e.to_string()],
    })?;
    let yaml: FileYaml = vigil_common::config::from_yaml(text, Path::new(file))
        .map_err(|e| fail(vec![e.detail()]))?;
    let mut errors = Vec::new();
    let mut seen = HashSet::new();
    let mut groups = Vec::new();
    for g in yaml.groups {
        let name = g.name.0;
        if name.is_empty() {
            errors.push("Groupname must not be empty".to_string());
        } else if !seen.insert(name.clone()) {
            errors.push(format!("groupname: {name:?} is repeated in the same file"));
        }
        let interval = match g.interval.map(|t| parse_duration(&t.0)).transpose() {
            Ok(i) => i,
            Err(e) => {
                errors.push(format!("group {name:?}: interval: {e}"));
                None
            }
        };
        let query_offset = match g.query_offset.map(|t| parse_duration(&t.0)).transpose() {
            Ok(o) => o.unwrap_or_default(),
            Err(e) => {
                errors.push(format!("group {name:?}: query_offset: {e}"));
                Duration::ZERO
            }
        };
        let mut labels = BTreeMap::new();
        for (k, v) in g.labels {
            if !is_label_name(&k) || k == "__name__" {
                errors.push(format!("group {name:?}: invalid label name: {k}"));
            }
            labels.insert(k, v.0);
        }
        let mut rules = Vec::new();
        for (i, r) in g.rules.into_iter().enumerate() {
            let rule_name = r
                .alert
                .as_ref()
                .or(r.record.as_ref())
                .map(|t| t.0.clone())
                .unwrap_or_default();
            match check_rule(r) {
                Ok(rule) => rules.push(rule),
                Err(errs) => errors.extend(errs.into_iter().map(|e| {
                    format!("group {name:?}, rule {}, {rule_name:?}: {e}", i + 1)
                })),
            }
        }
        groups.push(Group {
            name,
            file: file.to_string(),
            interval,
            limit: g.limit,
            query_offset,
            labels,
            rules,
        });
    }
    if !errors.is_empty() {
        return Err(fail(errors));
    }
    let warnings = duplicate_rules(&groups);
    Ok(RuleFile {
        path: file.to_string(),
        groups,
        warnings,
    })
}

/// Validates one rule as Prometheus's `RuleNode.Validate` and `testTemplateParsing` do.
fn check_rule(r: RuleYaml) -> Result<Rule, Vec<String>> {
    let mut errors = Vec::new();
    let record = r.record.map(|t| t.0).filter(|s| !s.is_empty());
    let alert = r.alert.map(|t| t.0).filter(|s| !s.is_empty());
    let expr = r.expr.map(|t| t.0).unwrap_or_default();
    match (&record, &alert) {
        (Some(_), Some(_)) => errors.push("only one of 'record' and 'alert' must be set".into()),
        (None, None) => errors.push("one of 'record' or 'alert' must be set".into()),
        _ => {}
    }
    if r.baseline.is_some() && r.outlier.is_some() {
        errors.push("only one of 'baseline' and 'outlier' may be set".into());
    }
    let had_model = r.baseline.is_some() || r.outlier.is_some();
    // Both kinds: an alerting rule with its expression, `for` and `keep_firing_for` inside the
    // map, named so that the series it writes (`<name>_baseline_*`, `<name>_outlier_score`) are valid.
    let model_rule = |kind: &str, series: &str| {
        let mut errors = Vec::new();
        if record.is_some() {
            errors.push(format!("invalid field '{kind}' in recording rule"));
        }
        if !expr.is_empty() {
            errors.push(format!(
                "a {kind} rule takes its expression from '{kind}.expr', not 'expr'"
            ));
        }
        if r.hold.is_some() || r.keep_firing_for.is_some() {
            errors.push(format!(
                "a {kind} rule sets 'for' and 'keep_firing_for' inside '{kind}:'"
            ));
        }
        if let Some(name) = &alert {
            if !is_metric_name(name) {
                errors.push(format!(
                    "{kind} rule name {name:?} must be a valid metric name: it writes the series {name}_{series}"
                ));
            }
        }
        errors
    };
    let mut baseline = None;
    if let Some(b) = r.baseline {
        errors.extend(model_rule("baseline", "baseline_lower/upper"));
        match serde_json::from_value::<crate::anomaly::BaselineConfig>(b) {
            Err(e) => errors.push(format!("baseline: {e}")),
            Ok(c) => match c.validate() {
                Err(e) => errors.push(e.to_string()),
                Ok(()) => baseline = Some(c),
            },
        }
    }
    let mut outlier = None;
    if let Some(o) = r.outlier {
        errors.extend(model_rule("outlier", "outlier_score"));
        match serde_json::from_value::<crate::anomaly::OutlierConfig>(o) {
            Err(e) => errors.push(format!("outlier: {e}")),
            Ok(c) => match c.validate() {
                Err(e) => errors.push(e.to_string()),
                Ok(()) => outlier = Some(c),
            },
        }
    }
    let expr = baseline
        .as_ref()
        .map(|b| b.expr.clone())
        .or_else(|| outlier.as_ref().map(|o| o.expr.clone()))
        .unwrap_or(expr);
    if expr.is_empty() && !had_model {
        errors.push("field 'expr' must be set in rule".into());
    } else if !expr.is_empty() {
        if let Err(e) = promql_parser::parser::parse(&expr) {
            errors.push(format!("could not parse expression: {}", e.trim()));
        }
    }
    if record.is_some() {
        if !r.annotations.is_empty() {
            errors.push("invalid field 'annotations' in recording rule".into());
        }
        if r.hold.is_some() {
            errors.push("invalid field 'for' in recording rule".into());
        }
        if r.keep_firing_for.is_some() {
            errors.push("invalid field 'keep_firing_for' in recording rule".into());
        }
        if let Some(name) = &record {
            if !is_metric_name(name) {
                errors.push(format!("invalid recording rule name: {name}"));
            }
        }
    }
    for k in r.labels.keys() {
        if !is_label_name(k) || k == "__name__" {
            errors.push(format!("invalid label name: {k}"));
        }
    }
    for k in r.annotations.keys() {
        if !is_label_name(k) {
            errors.push(format!("invalid annotation name: {k}"));
        }
    }
    let mut duration = |what: &str, t: Option<Text>| match t.map(|t| parse_duration(&t.0)) {
        None => Duration::ZERO,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            errors.push(format!("{what}: {e}"));
            Duration::ZERO
        }
    };
    let hold = duration("for", r.hold);
    let keep_firing_for = duration("keep_firing_for", r.keep_firing_for);
    let labels: BTreeMap<String, String> = r.labels.into_iter().map(|(k, v)| (k, v.0)).collect();
    let annotations: BTreeMap<String, String> =
        r.annotations.into_iter().map(|(k, v)| (k, v.0)).collect();
    if alert.is_some() {
        for (k, v) in &labels {
            if let Err(e) = template::check(k, v) {
                errors.push(format!("label {k:?}: {e}"));
            }
        }
        for (k, v) in &annotations {
            if let Err(e) = template::check(k, v) {
                errors.push(format!("annotation {k:?}: {e}"));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let kind = match (record, alert) {
        (Some(name), None) => RuleKind::Recording { name },
        (None, Some(name)) => RuleKind::Alerting {
            name,
            hold: baseline
                .as_ref()
                .map(|b| b.hold)
                .or(outlier.as_ref().map(|o| o.hold))
                .unwrap_or(hold),
            keep_firing_for: baseline
                .as_ref()
                .map(|b| b.keep_firing_for)
                .or(outlier.as_ref().map(|o| o.keep_firing_for))
                .unwrap_or(keep_firing_for),
            annotations,
            baseline,
            outlier,
        },
        _ => unreachable!("checked above"),
    };
    Ok(Rule { kind, expr, labels })
}

/// promtool's `duplicate-rules` lint: rules with the same name and labels.
fn duplicate_rules(groups: &[Group]) -> Vec<String> {
    let mut seen: HashSet<(&str, &BTreeMap<String, String>)> = HashSet::new();
    let mut dups = Vec::new();
    for g in groups {
        for r in &g.rules {
            if !seen.insert((r.name(), &r.labels)) {
                dups.push(format!("Metric: {}\nLabel(s):", r.name()));
                let last = dups.last_mut().expect("just pushed");
                for (k, v) in &r.labels {
                    last.push_str(&format!("\n\t{k}: {v}"));
                }
            }
        }
    }
    if dups.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "{} duplicate rule(s) found.\n{}\nMight cause inconsistency while recording expressions",
        dups.len(),
        dups.join("\n")
    )]
}

/// Expands `--rule-file` patterns (paths or globs) and loads every file, stopping at the first
/// that fails. A pattern that matches nothing is an error, as a typo should not silently load
/// no rules.
pub fn load_patterns(patterns: &[String]) -> Result<Vec<RuleFile>, LoadError> {
    let mut files = Vec::new();
    for p in patterns {
        let paths: Vec<PathBuf> = glob::glob(p)
            .map_err(|e| LoadError::Pattern {
                pattern: p.clone(),
                message: e.to_string(),
            })?
            .filter_map(Result::ok)
            .collect();
        if paths.is_empty() {
            return Err(LoadError::NoMatch(p.clone()));
        }
        for path in paths {
            files.push(load_file(&path)?);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse("f.yml", text).expect_err("should fail").errors
    }

    #[test]
    fn valid_file_parses() {
        let f = parse(
            "f.yml",
            r#"
groups:
  - name: g
    interval: 30s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: Down
        expr: up == 0
        for: 5m
        keep_firing_for: 1m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.instance }} down ({{ $value }})"}
"#,
        )
        .unwrap();
        assert_eq!(f.groups.len(), 1);
        let g = &f.groups[0];
        assert_eq!(g.interval, Some(Duration::from_secs(30)));
        assert_eq!(g.rules.len(), 2);
        assert!(matches!(&g.rules[1].kind, RuleKind::Alerting { hold, .. } if *hold == Duration::from_secs(300)));
    }

    #[test]
    fn errors_name_file_group_and_rule() {
        let e = errors(
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: 'up =='\n  - record: 'bad name'\n    expr: up\n",
        );
        assert!(e[0].starts_with("f.yml: group \"g\", rule 1, \"A\": could not parse expression"), "{e:?}");
        assert_eq!(e[1], "f.yml: group \"g\", rule 2, \"bad name\": invalid recording rule name: bad name");
    }

    #[test]
    fn promtool_rejections() {
        let cases = [
            ("groups:\n- name: g\n  rules:\n  - expr: up\n", "one of 'record' or 'alert' must be set"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    record: b\n    expr: up\n", "only one of 'record' and 'alert' must be set"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n", "field 'expr' must be set in rule"),
            ("groups:\n- name: g\n  rules:\n  - record: a\n    expr: up\n    for: 1m\n", "invalid field 'for' in recording rule"),
            ("groups:\n- name: g\n  rules:\n  - record: a\n    expr: up\n    annotations: {a: b}\n", "invalid field 'annotations' in recording rule"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    expr: up\n    labels: {__name__: x}\n", "invalid label name: __name__"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    expr: up\n    annotations: {'a-b': x}\n", "invalid annotation name: a-b"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    expr: up\n    annotations: {a: '{{ $labels.x '}\n", "annotation \"a\": "),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    expr: up\n    for: 5x\n", "not a valid duration string"),
            ("groups:\n- name: g\n  rules: []\n- name: g\n  rules: []\n", "groupname: \"g\" is repeated in the same file"),
            ("groups:\n- rules: []\n", "Groupname must not be empty"),
            ("groups:\n- name: g\n  rulez: []\n", "unknown field `rulez`"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    expr: up\n    baseline: {expr: up}\n", "takes its expression from 'baseline.expr'"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    baseline: {expr: up, sigma: 3}\n", "baseline: unknown field `sigma`"),
            ("groups:\n- name: g\n  rules:\n  - alert: 'a b'\n    baseline: {expr: up}\n", "must be a valid metric name"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    baseline: {expr: 'up +'}\n", "could not parse expression"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    outlier: {expr: up}\n", "outlier: missing field `by`"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    outlier: {expr: up, by: []}\n", "outlier: by: must name at least one label"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    outlier: {expr: up, by: [n], min_members: 2}\n", "outlier: min_members: must be at least 3"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    outlier: {expr: up, by: [n], window: 5x}\n", "outlier: not a valid duration string"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    outlier: {expr: up, by: [n], sigma: 3}\n", "outlier: unknown field `sigma`"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    outlier: {expr: 'up +', by: [n]}\n", "could not parse expression"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    expr: up\n    outlier: {expr: up, by: [n]}\n", "takes its expression from 'outlier.expr'"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    outlier: {expr: up, by: [n]}\n    for: 5m\n", "sets 'for' and 'keep_firing_for' inside 'outlier:'"),
            ("groups:\n- name: g\n  rules:\n  - record: a\n    outlier: {expr: up, by: [n]}\n", "invalid field 'outlier' in recording rule"),
            ("groups:\n- name: g\n  rules:\n  - alert: a\n    outlier: {expr: up, by: [n]}\n    baseline: {expr: up}\n", "only one of 'baseline' and 'outlier' may be set"),
        ];
        for (text, want) in cases {
            let e = errors(text);
            assert!(e.iter().any(|m| m.contains(want)), "{text}: {e:?} lacks {want}");
        }
    }

    #[test]
    fn durations_as_prometheus() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("1.5m").is_err());
        assert!(parse_duration("5m1h").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn duplicate_rules_are_a_lint_warning() {
        let f = parse(
            "f.yml",
            "groups:\n- name: g\n  rules:\n  - record: a\n    expr: up\n  - record: a\n    expr: up\n",
        )
        .unwrap();
        assert!(f.warnings[0].starts_with("1 duplicate rule(s) found."));
    }
}
