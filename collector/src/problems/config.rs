//! Monitor configs in node-problem-detector's JSON format: parsing, defaults and validation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Errors found while reading or validating one monitor config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read, is too large (`/dev/zero`) or not UTF-8; the message names it.
    #[error(transparent)]
    Read(#[from] vigil_common::config::LoadError),
    /// The file is not JSON (line and column in the message).
    #[error("{file}: invalid JSON: {source}")]
    Json {
        file: PathBuf,
        source: serde_json::Error,
    },
    /// A key has a wrong type or value, is missing or is unknown.
    #[error("{file}: key `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

/// A rule's kind, as node-problem-detector spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RuleKind {
    /// Produces an event.
    #[serde(rename = "temporary")]
    Temporary,
    /// Sets a node condition.
    #[serde(rename = "permanent")]
    Permanent,
}

/// A default node condition (`conditions[]`); it starts with status False.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultCondition {
    /// The condition type, e.g. `KernelDeadlock`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The reason while the condition is False.
    pub reason: String,
    /// The message while the condition is False.
    #[serde(default)]
    pub message: String,
}

/// The watcher keys of a system log monitor (`plugin`, `pluginConfig`, `logPath`, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemLogConfig {
    /// `kmsg`, `filelog` or `journald`.
    pub plugin: String,
    /// Plugin-specific settings (filelog: `timestamp`, `message`, `timestampFormat`; journald: `source`).
    #[serde(rename = "pluginConfig", default)]
    pub plugin_config: BTreeMap<String, String>,
    /// The log to read: a file for filelog, `/dev/kmsg` for kmsg, a journal directory for journald.
    #[serde(rename = "logPath", default)]
    pub log_path: String,
    /// How far back to read at start (Go duration; default "0").
    #[serde(default = "default_lookback")]
    pub lookback: String,
    /// How long to wait before reading a line (Go duration; default "0").
    #[serde(default = "default_lookback")]
    pub delay: String,
    /// Lines containing any of these substrings are dropped before matching.
    #[serde(rename = "skipList", default)]
    pub skip_list: Vec<String>,
    /// Lines kept for matching (default 10).
    #[serde(rename = "bufferSize", default)]
    pub buffer_size: usize,
    /// Event source (the monitor's name).
    #[serde(default)]
    pub source: String,
    /// Whether to feed problem_counter / problem_gauge (default true).
    #[serde(rename = "metricsReporting", default)]
    pub metrics_reporting: Option<bool>,
    /// Default conditions.
    #[serde(default)]
    pub conditions: Vec<DefaultCondition>,
    /// Matching rules.
    #[serde(default)]
    pub rules: Vec<LogRule>,
}

fn default_lookback() -> String {
    "0".to_string()
}

/// One rule of a system log monitor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogRule {
    /// temporary or permanent.
    #[serde(rename = "type")]
    pub kind: RuleKind,
    /// The condition type a permanent rule sets.
    #[serde(default)]
    pub condition: String,
    /// Event / condition reason.
    pub reason: String,
    /// RE2 pattern; it must match up to the newest line.
    pub pattern: String,
    /// Appended to the generated message as "<message>; <suffix>".
    #[serde(rename = "patternGeneratedMessageSuffix", default)]
    pub pattern_generated_message_suffix: String,
}

/// `pluginConfig` of a custom plugin monitor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPluginGlobal {
    /// How often every rule runs (Go duration, default 30s).
    #[serde(default = "default_invoke_interval")]
    pub invoke_interval: String,
    /// Global plugin timeout (Go duration, default 5s).
    #[serde(default = "default_timeout")]
    pub timeout: String,
    /// Plugin stdout is cut to this many bytes (default 80).
    #[serde(default = "default_max_output_length")]
    pub max_output_length: usize,
    /// Plugins run at the same time (default 3).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// A changed message of a True condition counts as a change (default false).
    #[serde(default)]
    pub enable_message_change_based_condition_update: bool,
    /// Do not report the initial (default) conditions (default false).
    #[serde(default)]
    pub skip_initial_status: bool,
}

impl Default for CustomPluginGlobal {
    fn default() -> Self {
        CustomPluginGlobal {
            invoke_interval: default_invoke_interval(),
            timeout: default_timeout(),
            max_output_length: default_max_output_length(),
            concurrency: default_concurrency(),
            enable_message_change_based_condition_update: false,
            skip_initial_status: false,
        }
    }
}

fn default_invoke_interval() -> String {
    "30s".to_string()
}
fn default_timeout() -> String {
    "5s".to_string()
}
fn default_max_output_length() -> usize {
    80
}
fn default_concurrency() -> usize {
    3
}

/// A custom plugin monitor config (`plugin: "custom"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPluginConfig {
    /// Always `custom`.
    pub plugin: String,
    /// Global plugin settings.
    #[serde(rename = "pluginConfig", default)]
    pub plugin_config: CustomPluginGlobal,
    /// Event source (the monitor's name).
    #[serde(default)]
    pub source: String,
    /// Whether to feed problem_counter / problem_gauge (default true).
    #[serde(rename = "metricsReporting", default)]
    pub metrics_reporting: Option<bool>,
    /// Default conditions.
    #[serde(default)]
    pub conditions: Vec<DefaultCondition>,
    /// Plugin rules.
    #[serde(default)]
    pub rules: Vec<CustomRule>,
}

/// One rule of a custom plugin monitor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// temporary or permanent.
    #[serde(rename = "type")]
    pub kind: RuleKind,
    /// The condition type a permanent rule sets.
    #[serde(default)]
    pub condition: String,
    /// Event / condition reason.
    pub reason: String,
    /// The plugin executable.
    pub path: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Per-rule timeout (Go duration, at most the global timeout).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Per-rule invoke interval (Go duration; default the global one).
    #[serde(default)]
    pub invoke_interval: Option<String>,
}

/// A parsed monitor config of either kind.
#[derive(Debug, Clone)]
pub enum MonitorConfig {
    /// kmsg / filelog / journald.
    SystemLog(SystemLogConfig),
    /// custom plugins.
    Custom(CustomPluginConfig),
}

/// Parses a Go `time.ParseDuration` string ("30s", "1m30s", "300ms", "0").
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let body = s.strip_prefix('+').unwrap_or(s);
    if body.starts_with('-') {
        return Err(format!("negative duration {s:?}"));
    }
    if body.is_empty() {
        return Err("empty duration".to_string());
    }
    let mut total = 0f64;
    let mut rest = body;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        if num_len == 0 {
            return Err(format!("invalid duration {s:?}"));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid number in duration {s:?}"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?} in duration {s:?}")),
        };
        total += value * scale;
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("duration {s:?} is too large"))
}

/// The largest `bufferSize` accepted (node-problem-detector's shipped configs use 10).
pub const MAX_BUFFER_LINES: usize = 100_000;

fn invalid(file: &Path, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.to_path_buf(),
        key: key.into(),
        message: message.into(),
    }
}

/// Reads (size-capped) and parses one config file (no validation).
pub fn parse_file(file: &Path) -> Result<MonitorConfig, ConfigError> {
    let text = vigil_common::config::read_capped(file)?;
    parse_str(file, &text)
}

/// Parses a config's text; `file` is only used to name errors.
pub fn parse_str(file: &Path, text: &str) -> Result<MonitorConfig, ConfigError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|source| ConfigError::Json {
            file: file.to_path_buf(),
            source,
        })?;
    let plugin = value
        .get("plugin")
        .and_then(|p| p.as_str())
        .ok_or_else(|| {
            invalid(
                file,
                "plugin",
                "missing (expected kmsg, filelog, journald or custom)",
            )
        })?
        .to_string();
    fn de<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let key = e.path().to_string();
            invalid(file, key, e.into_inner().to_string())
        })
    }
    match plugin.as_str() {
        "custom" => Ok(MonitorConfig::Custom(de(file, text)?)),
        "kmsg" | "filelog" | "journald" => Ok(MonitorConfig::SystemLog(de(file, text)?)),
        other => Err(invalid(
            file,
            "plugin",
            format!("unknown plugin {other:?} (expected kmsg, filelog, journald or custom)"),
        )),
    }
}

fn check_default_condition(
    file: &Path,
    idx: usize,
    kind: RuleKind,
    condition: &str,
    conditions: &[DefaultCondition],
) -> Result<(), ConfigError> {
    if kind == RuleKind::Permanent {
        if condition.is_empty() {
            return Err(invalid(
                file,
                format!("rules[{idx}].condition"),
                "a permanent rule needs a condition",
            ));
        }
        if !conditions.iter().any(|c| c.kind == condition) {
            return Err(invalid(
                file,
                format!("rules[{idx}].condition"),
                format!("permanent rule's condition {condition:?} has no default in `conditions`"),
            ));
        }
    }
    Ok(())
}

impl SystemLogConfig {
    /// Pure validation: plugin keys, durations, patterns, permanent rules' default conditions.
    pub fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        match self.plugin.as_str() {
            "filelog" => {
                for key in ["timestamp", "message", "timestampFormat"] {
                    if !self.plugin_config.contains_key(key) {
                        return Err(invalid(
                            file,
                            format!("pluginConfig.{key}"),
                            "required by the filelog plugin",
                        ));
                    }
                }
                for key in ["timestamp", "message"] {
                    let re = &self.plugin_config[key];
                    regex::Regex::new(re).map_err(|e| {
                        invalid(
                            file,
                            format!("pluginConfig.{key}"),
                            format!("invalid regex: {e}"),
                        )
                    })?;
                }
                for key in self.plugin_config.keys() {
                    if !["timestamp", "message", "timestampFormat"].contains(&key.as_str()) {
                        return Err(invalid(
                            file,
                            format!("pluginConfig.{key}"),
                            "unknown filelog plugin key",
                        ));
                    }
                }
                if self.log_path.is_empty() {
                    return Err(invalid(file, "logPath", "required by the filelog plugin"));
                }
            }
            "journald" => {
                match self.plugin_config.get("source") {
                    Some(s) if !s.is_empty() => {}
                    _ => {
                        return Err(invalid(
                            file,
                            "pluginConfig.source",
                            "required by the journald plugin",
                        ))
                    }
                }
                for key in self.plugin_config.keys() {
                    if key != "source" {
                        return Err(invalid(
                            file,
                            format!("pluginConfig.{key}"),
                            "unknown journald plugin key",
                        ));
                    }
                }
            }
            "kmsg" => {
                if let Some(key) = self.plugin_config.keys().next() {
                    return Err(invalid(
                        file,
                        format!("pluginConfig.{key}"),
                        "the kmsg plugin takes no pluginConfig",
                    ));
                }
            }
            other => return Err(invalid(file, "plugin", format!("unknown plugin {other:?}"))),
        }
        parse_go_duration(&self.lookback).map_err(|e| invalid(file, "lookback", e))?;
        parse_go_duration(&self.delay).map_err(|e| invalid(file, "delay", e))?;
        if self.buffer_size > MAX_BUFFER_LINES {
            // The matcher keeps one slot per line: an absurd size would abort on allocation.
            return Err(invalid(
                file,
                "bufferSize",
                format!(
                    "{} lines is more than the {MAX_BUFFER_LINES} vigil allows",
                    self.buffer_size
                ),
            ));
        }
        for (idx, rule) in self.rules.iter().enumerate() {
            if rule.pattern.is_empty() {
                return Err(invalid(
                    file,
                    format!("rules[{idx}].pattern"),
                    "empty pattern",
                ));
            }
            crate::problems::matcher::compile_rule_pattern(&rule.pattern).map_err(|e| {
                invalid(
                    file,
                    format!("rules[{idx}].pattern"),
                    format!("invalid regex: {e}"),
                )
            })?;
            if rule.reason.is_empty() {
                return Err(invalid(
                    file,
                    format!("rules[{idx}].reason"),
                    "empty reason",
                ));
            }
            check_default_condition(file, idx, rule.kind, &rule.condition, &self.conditions)?;
        }
        Ok(())
    }

    /// The buffer size after defaults (10 when unset or 0, as node-problem-detector).
    pub fn buffer_lines(&self) -> usize {
        if self.buffer_size == 0 {
            10
        } else {
            self.buffer_size
        }
    }
}

impl CustomPluginConfig {
    /// Validation as node-problem-detector's: intervals > 0, timeouts, concurrency, default conditions.
    /// `plugin_exists` decides whether a rule's `path` exists (relative paths are resolved by the caller).
    pub fn validate(
        &self,
        file: &Path,
        plugin_exists: &dyn Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        let g = &self.plugin_config;
        let interval = parse_go_duration(&g.invoke_interval)
            .map_err(|e| invalid(file, "pluginConfig.invoke_interval", e))?;
        if interval.is_zero() {
            return Err(invalid(
                file,
                "pluginConfig.invoke_interval",
                "must be greater than 0",
            ));
        }
        let timeout =
            parse_go_duration(&g.timeout).map_err(|e| invalid(file, "pluginConfig.timeout", e))?;
        if timeout.is_zero() {
            return Err(invalid(
                file,
                "pluginConfig.timeout",
                "must be greater than 0",
            ));
        }
        if g.max_output_length == 0 {
            return Err(invalid(
                file,
                "pluginConfig.max_output_length",
                "must be greater than 0",
            ));
        }
        if g.concurrency == 0 {
            return Err(invalid(
                file,
                "pluginConfig.concurrency",
                "must be greater than 0",
            ));
        }
        for (idx, rule) in self.rules.iter().enumerate() {
            if let Some(t) = &rule.timeout {
                let t = parse_go_duration(t)
                    .map_err(|e| invalid(file, format!("rules[{idx}].timeout"), e))?;
                if t.is_zero() {
                    return Err(invalid(
                        file,
                        format!("rules[{idx}].timeout"),
                        "must be greater than 0",
                    ));
                }
                if t > timeout {
                    return Err(invalid(
                        file,
                        format!("rules[{idx}].timeout"),
                        format!(
                            "{t:?} is greater than the global pluginConfig.timeout {timeout:?}"
                        ),
                    ));
                }
            }
            if let Some(i) = &rule.invoke_interval {
                let i = parse_go_duration(i)
                    .map_err(|e| invalid(file, format!("rules[{idx}].invoke_interval"), e))?;
                if i.is_zero() {
                    return Err(invalid(
                        file,
                        format!("rules[{idx}].invoke_interval"),
                        "must be greater than 0",
                    ));
                }
            }
            if rule.reason.is_empty() {
                return Err(invalid(
                    file,
                    format!("rules[{idx}].reason"),
                    "empty reason",
                ));
            }
            if rule.path.is_empty() {
                return Err(invalid(
                    file,
                    format!("rules[{idx}].path"),
                    "empty plugin path",
                ));
            }
            if !plugin_exists(&rule.path) {
                return Err(invalid(
                    file,
                    format!("rules[{idx}].path"),
                    format!("plugin {:?} does not exist", rule.path),
                ));
            }
            check_default_condition(file, idx, rule.kind, &rule.condition, &self.conditions)?;
        }
        Ok(())
    }
}
