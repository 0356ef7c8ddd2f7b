//! Alertmanager's configuration file (0.25 format): parsing, defaults, and the checks
//! `amtool check-config` makes; what vigil does not support is an error that says so.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::labels::{parse_matchers, valid_label_name, MatchType, Matcher};

/// A value vigil only checks for presence (settings of what it does not support).
type Value = serde::de::IgnoredAny;

/// A duration written as Prometheus writes them (`30s`, `1h30m`, `1d`, `100ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl Dur {
    /// Parses Prometheus's duration syntax: `((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?` or `0`.
    pub fn parse(s: &str) -> Result<Dur, String> {
        vigil_common::duration::parse_std(s)
            .map(Dur)
            .map_err(|e| e.to_string())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Dur::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },
}

/// The whole file: Alertmanager's `alertmanager.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Defaults for the other sections (SMTP, resolve timeout, HTTP client).
    #[serde(default)]
    pub global: GlobalConfig,
    /// The routing tree's root.
    pub route: Option<RouteConfig>,
    /// Named receivers that routes send to.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// Mutes target alerts while a matching source alert fires.
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// Go notification template files: not supported by vigil (an error if given).
    #[serde(default)]
    pub templates: Vec<String>,
    /// Time intervals: not supported by vigil (an error if given).
    #[serde(default)]
    pub mute_time_intervals: Vec<Value>,
    /// Time intervals: not supported by vigil (an error if given).
    #[serde(default)]
    pub time_intervals: Vec<Value>,
    /// The URL links in notifications point to (`--web.external-url`); not part of the file.
    #[serde(skip)]
    pub external_url: String,
    /// The file's text, as `/api/v2/status` shows it.
    #[serde(skip)]
    pub original: String,
}

/// `global:` (Alertmanager's `GlobalConfig`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// An alert without `endsAt` is resolved this long after its last update.
    #[serde(default = "default_resolve_timeout")]
    pub resolve_timeout: Dur,
    /// Default HTTP client settings of webhooks.
    #[serde(default)]
    pub http_config: HttpConfig,
    /// Default e-mail sender.
    pub smtp_from: Option<String>,
    /// Default EHLO name.
    #[serde(default = "default_hello")]
    pub smtp_hello: String,
    /// Default SMTP server `host:port`.
    pub smtp_smarthost: Option<String>,
    pub smtp_auth_username: Option<String>,
    pub smtp_auth_password: Option<String>,
    pub smtp_auth_password_file: Option<String>,
    pub smtp_auth_secret: Option<String>,
    pub smtp_auth_identity: Option<String>,
    /// Whether STARTTLS is required (default true).
    #[serde(default = "yes")]
    pub smtp_require_tls: bool,
    // Settings of receiver kinds vigil does not have; accepted as Alertmanager accepts them.
    pub slack_api_url: Option<Value>,
    pub slack_api_url_file: Option<Value>,
    pub pagerduty_url: Option<Value>,
    pub opsgenie_api_url: Option<Value>,
    pub opsgenie_api_key: Option<Value>,
    pub opsgenie_api_key_file: Option<Value>,
    pub wechat_api_url: Option<Value>,
    pub wechat_api_secret: Option<Value>,
    pub wechat_api_corp_id: Option<Value>,
    pub victorops_api_url: Option<Value>,
    pub victorops_api_key: Option<Value>,
    pub victorops_api_key_file: Option<Value>,
    pub telegram_api_url: Option<Value>,
    pub webex_api_url: Option<Value>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        vigil_common::config::from_yaml("{}", Path::new("(defaults)")).expect("empty global config")
    }
}

fn default_resolve_timeout() -> Dur {
    Dur(Duration::from_secs(300))
}
fn default_hello() -> String {
    "localhost".into()
}
fn yes() -> bool {
    true
}

/// A node of the routing tree.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Receiver name (inherited when empty).
    pub receiver: Option<String>,
    /// Labels that split alerts into groups; `['...']` = all labels.
    pub group_by: Option<Vec<String>>,
    /// Legacy equality matchers.
    #[serde(default, rename = "match")]
    pub match_eq: BTreeMap<String, String>,
    /// Legacy regex matchers (anchored).
    #[serde(default)]
    pub match_re: BTreeMap<String, String>,
    /// Matchers such as `severity="page"`, `job=~"a|b"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Keep matching the siblings after this route matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    /// Child routes, tried in order.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// Wait before the first notification of a new group (default 30s).
    pub group_wait: Option<Dur>,
    /// Wait between notifications about a changed group (default 5m).
    pub group_interval: Option<Dur>,
    /// Wait before re-sending an unchanged group (default 4h).
    pub repeat_interval: Option<Dur>,
    /// Not supported by vigil (an error if given).
    #[serde(default)]
    pub mute_time_intervals: Vec<String>,
    /// Not supported by vigil (an error if given).
    #[serde(default)]
    pub active_time_intervals: Vec<String>,
}

/// A named receiver: where notifications go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    #[serde(default)]
    pub webhook_configs: Vec<WebhookConfig>,
    #[serde(default)]
    pub email_configs: Vec<EmailConfig>,
    // Receiver kinds of Alertmanager that vigil does not have: an error when given.
    pub pagerduty_configs: Option<Value>,
    pub slack_configs: Option<Value>,
    pub opsgenie_configs: Option<Value>,
    pub wechat_configs: Option<Value>,
    pub pushover_configs: Option<Value>,
    pub victorops_configs: Option<Value>,
    pub sns_configs: Option<Value>,
    pub telegram_configs: Option<Value>,
    pub webex_configs: Option<Value>,
    pub discord_configs: Option<Value>,
    pub msteams_configs: Option<Value>,
}

/// `webhook_configs[]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Send a notification when alerts resolve (default true).
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Where to POST (http or https).
    pub url: Option<String>,
    /// A file holding the URL.
    pub url_file: Option<String>,
    /// At most this many alerts per payload (0 = all).
    #[serde(default)]
    pub max_alerts: u64,
    /// HTTP client settings (defaults from `global.http_config`).
    pub http_config: Option<HttpConfig>,
}

/// `email_configs[]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Send a notification when alerts resolve (default false).
    #[serde(default)]
    pub send_resolved: bool,
    /// Recipients, comma separated.
    pub to: Option<String>,
    pub from: Option<String>,
    pub hello: Option<String>,
    /// SMTP server `host:port` (port 465 = implicit TLS).
    pub smarthost: Option<String>,
    pub auth_username: Option<String>,
    pub auth_password: Option<String>,
    pub auth_password_file: Option<String>,
    pub auth_secret: Option<String>,
    pub auth_identity: Option<String>,
    /// Extra headers (literal values; `Subject` replaces the default subject).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Go templates for the body: not supported by vigil (an error if given).
    pub html: Option<String>,
    /// Go templates for the body: not supported by vigil (an error if given).
    pub text: Option<String>,
    /// Require STARTTLS (default `global.smtp_require_tls`).
    pub require_tls: Option<bool>,
    #[serde(default)]
    pub tls_config: TlsConfig,
}

/// `http_config` (prometheus/common `HTTPClientConfig`, the parts vigil supports).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<String>,
    #[serde(default)]
    pub tls_config: TlsConfig,
    /// Follow redirects (default true).
    pub follow_redirects: Option<bool>,
    pub enable_http2: Option<bool>,
    /// Not supported by vigil (an error if given).
    pub oauth2: Option<Value>,
    /// Not supported by vigil (an error if given).
    pub proxy_url: Option<Value>,
    pub no_proxy: Option<Value>,
    pub proxy_from_environment: Option<Value>,
    pub proxy_connect_header: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// The scheme (default `Bearer`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub credentials: Option<String>,
    pub credentials_file: Option<String>,
}

/// `tls_config`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate (PEM) to verify the server with.
    pub ca_file: Option<String>,
    /// Client certificate and key (PEM).
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Name to verify the server's certificate against.
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Not supported by vigil (an error if given).
    pub min_version: Option<Value>,
}

/// `inhibit_rules[]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    #[serde(default)]
    pub source_match: BTreeMap<String, String>,
    #[serde(default)]
    pub source_match_re: BTreeMap<String, String>,
    #[serde(default)]
    pub source_matchers: Vec<String>,
    #[serde(default)]
    pub target_match: BTreeMap<String, String>,
    #[serde(default)]
    pub target_match_re: BTreeMap<String, String>,
    #[serde(default)]
    pub target_matchers: Vec<String>,
    /// Labels whose values must be equal in source and target.
    #[serde(default)]
    pub equal: Vec<String>,
}

/// Builds the matchers of `match`, `match_re` and `matchers`, as Alertmanager's routes and
/// inhibition rules do.
pub fn build_matchers(
    eq: &BTreeMap<String, String>,
    re: &BTreeMap<String, String>,
    ms: &[String],
) -> Result<Vec<Matcher>, String> {
    let mut out = Vec::new();
    for (k, v) in eq {
        if !valid_label_name(k) {
            return Err(format!("invalid label name {k:?}"));
        }
        out.push(Matcher::new(MatchType::Equal, k, v)?);
    }
    for (k, v) in re {
        if !valid_label_name(k) {
            return Err(format!("invalid label name {k:?}"));
        }
        // Alertmanager keeps the compiled, anchored form (`^(?:re)$`) as the matcher's value,
        // and so in group keys.
        out.push(Matcher::new(MatchType::Regexp, k, &format!("^(?:{v})$"))?);
    }
    for m in ms {
        out.extend(parse_matchers(m).map_err(|e| format!("matchers {m:?}: {e}"))?);
    }
    Ok(out)
}

impl NotifyConfig {
    /// Reads and validates an Alertmanager configuration file.
    pub fn load(path: impl AsRef<Path>) -> Result<NotifyConfig, ConfigError> {
        let path = path.as_ref();
        let text = vigil_common::config::read_capped(path).map_err(|e| ConfigError::Invalid {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        // The depth budget first: a YAML bomb is reported as one, whatever its shape.
        vigil_common::config::check_yaml(&text, path).map_err(|e| ConfigError::Invalid {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        Self::parse(&text).map_err(|msg| ConfigError::Invalid {
            path: path.display().to_string(),
            msg,
        })
    }

    /// Parses and validates the text of a configuration file.
    pub fn parse(text: &str) -> Result<NotifyConfig, String> {
        let mut cfg: NotifyConfig =
            vigil_common::config::from_yaml(text, Path::new("")).map_err(|e| e.detail())?;
        cfg.original = text.to_string();
        cfg.validate()?;
        Ok(cfg)
    }

    /// The checks of Alertmanager's `config.Load` (as `amtool check-config` reports them),
    /// plus what vigil does not support.
    pub fn validate(&self) -> Result<(), String> {
        if !self.templates.is_empty() {
            return Err("templates: notification templates are not supported by vigil \
                        (it renders its own webhook payload and e-mail)"
                .into());
        }
        if !self.mute_time_intervals.is_empty() {
            return Err("mute_time_intervals: time intervals are not supported by vigil".into());
        }
        if !self.time_intervals.is_empty() {
            return Err("time_intervals: time intervals are not supported by vigil".into());
        }
        self.global.http_config.validate("global.http_config")?;
        let mut names = HashSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let at = format!("receivers[{i}]");
            if r.name.is_empty() {
                return Err(format!("{at}: missing name in receiver"));
            }
            if !names.insert(r.name.as_str()) {
                return Err(format!(
                    "notification config name {:?} is not unique",
                    r.name
                ));
            }
            r.validate(&format!("{at} ({:?})", r.name), &self.global)?;
        }
        let route = self.route.as_ref().ok_or("no routes provided")?;
        if route.receiver.as_deref().unwrap_or("").is_empty() {
            return Err("root route must specify a default receiver".into());
        }
        if !route.match_eq.is_empty() || !route.match_re.is_empty() || !route.matchers.is_empty()
        {
            return Err("root route must not have any matchers".into());
        }
        if route.continue_ {
            return Err("cannot have continue in root route".into());
        }
        if !route.mute_time_intervals.is_empty() {
            return Err("root route must not have any mute time intervals".into());
        }
        if !route.active_time_intervals.is_empty() {
            return Err("root route must not have any active time intervals".into());
        }
        route.validate("route", &names)?;
        for (i, r) in self.inhibit_rules.iter().enumerate() {
            let at = format!("inhibit_rules[{i}]");
            build_matchers(&r.source_match, &r.source_match_re, &r.source_matchers)
                .map_err(|e| format!("{at}: {e}"))?;
            build_matchers(&r.target_match, &r.target_match_re, &r.target_matchers)
                .map_err(|e| format!("{at}: {e}"))?;
            for l in &r.equal {
                if !valid_label_name(l) {
                    return Err(format!("{at}: invalid label name {l:?} in equal"));
                }
            }
        }
        Ok(())
    }

    /// The root route (validated: always present).
    pub fn root(&self) -> &RouteConfig {
        self.route.as_ref().expect("validated config has a route")
    }
}

impl RouteConfig {
    fn validate(&self, at: &str, receivers: &HashSet<&str>) -> Result<(), String> {
        if let Some(r) = &self.receiver {
            if !r.is_empty() && !receivers.contains(r.as_str()) {
                return Err(format!("{at}: undefined receiver {r:?} used in route"));
            }
        }
        build_matchers(&self.match_eq, &self.match_re, &self.matchers)
            .map_err(|e| format!("{at}: {e}"))?;
        if let Some(gb) = &self.group_by {
            let all = gb.iter().any(|l| l == "...");
            let mut seen = HashSet::new();
            for l in gb {
                if l == "..." {
                    continue;
                }
                if !valid_label_name(l) {
                    return Err(format!("{at}: invalid label name {l:?} in group_by list"));
                }
                if all {
                    return Err(format!(
                        "{at}: cannot have wildcard group_by (`...`) and other other labels at the same time"
                    ));
                }
                if !seen.insert(l) {
                    return Err(format!("{at}: duplicated label {l:?} in group_by"));
                }
            }
        }
        if self.group_interval.is_some_and(|d| d.0.is_zero()) {
            return Err(format!("{at}: group_interval cannot be zero"));
        }
        if self.repeat_interval.is_some_and(|d| d.0.is_zero()) {
            return Err(format!("{at}: repeat_interval cannot be zero"));
        }
        if !self.mute_time_intervals.is_empty() || !self.active_time_intervals.is_empty() {
            return Err(format!(
                "{at}: mute_time_intervals/active_time_intervals are not supported by vigil"
            ));
        }
        for (i, r) in self.routes.iter().enumerate() {
            r.validate(&format!("{at}.routes[{i}]"), receivers)?;
        }
        Ok(())
    }
}

impl ReceiverConfig {
    fn validate(&self, at: &str, global: &GlobalConfig) -> Result<(), String> {
        let unsupported = [
            ("pagerduty_configs", &self.pagerduty_configs),
            ("slack_configs", &self.slack_configs),
            ("opsgenie_configs", &self.opsgenie_configs),
            ("wechat_configs", &self.wechat_configs),
            ("pushover_configs", &self.pushover_configs),
            ("victorops_configs", &self.victorops_configs),
            ("sns_configs", &self.sns_configs),
            ("telegram_configs", &self.telegram_configs),
            ("webex_configs", &self.webex_configs),
            ("discord_configs", &self.discord_configs),
            ("msteams_configs", &self.msteams_configs),
        ];
        for (key, v) in unsupported {
            if v.is_some() {
                return Err(format!(
                    "{at}: {key} are not supported by vigil (supported: webhook_configs, email_configs)"
                ));
            }
        }
        for (i, w) in self.webhook_configs.iter().enumerate() {
            let at = format!("{at}.webhook_configs[{i}]");
            match (&w.url, &w.url_file) {
                (None, None) => return Err(format!("{at}: missing URL in webhook config")),
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{at}: at most one of url & url_file must be configured"
                    ))
                }
                (Some(u), None) => check_webhook_url(u).map_err(|e| format!("{at}: {e}"))?,
                (None, Some(_)) => {}
            }
            if let Some(h) = &w.http_config {
                h.validate(&format!("{at}.http_config"))?;
            }
        }
        for (i, e) in self.email_configs.iter().enumerate() {
            let at = format!("{at}.email_configs[{i}]");
            if e.to.as_deref().unwrap_or("").is_empty() {
                return Err(format!("{at}: missing to address in email config"));
            }
            if e.smarthost.is_none() && global.smtp_smarthost.is_none() {
                return Err(format!("{at}: no global SMTP smarthost set"));
            }
            if e.from.is_none() && global.smtp_from.is_none() {
                return Err(format!("{at}: no global SMTP from set"));
            }
            if e.html.is_some() || e.text.is_some() {
                return Err(format!(
                    "{at}: html/text templates are not supported by vigil (it writes its own HTML and text parts with the chart)"
                ));
            }
            let mut seen = HashSet::new();
            for (k, v) in &e.headers {
                if !seen.insert(k.to_ascii_lowercase()) {
                    return Err(format!("{at}: duplicate header {k:?} in email config"));
                }
                if v.contains("{{") {
                    return Err(format!(
                        "{at}: header {k:?}: templates are not supported by vigil"
                    ));
                }
            }
            let host = e
                .smarthost
                .as_deref()
                .or(global.smtp_smarthost.as_deref())
                .unwrap_or("");
            split_host_port(host).map_err(|err| format!("{at}: smarthost: {err}"))?;
            e.tls_config.validate(&format!("{at}.tls_config"))?;
        }
        Ok(())
    }
}

impl HttpConfig {
    fn validate(&self, at: &str) -> Result<(), String> {
        for (key, v) in [
            ("oauth2", &self.oauth2),
            ("proxy_url", &self.proxy_url),
            ("no_proxy", &self.no_proxy),
            ("proxy_from_environment", &self.proxy_from_environment),
            ("proxy_connect_header", &self.proxy_connect_header),
        ] {
            if v.is_some() {
                return Err(format!("{at}: {key} is not supported by vigil"));
            }
        }
        let bearer = self.bearer_token.is_some() || self.bearer_token_file.is_some();
        if (self.basic_auth.is_some() as u8 + self.authorization.is_some() as u8 + bearer as u8)
            > 1
        {
            return Err(format!(
                "{at}: at most one of basic_auth, authorization & bearer_token must be configured"
            ));
        }
        if let Some(b) = &self.basic_auth {
            if b.password.is_some() && b.password_file.is_some() {
                return Err(format!(
                    "{at}: at most one of basic_auth password & password_file must be configured"
                ));
            }
        }
        if let Some(a) = &self.authorization {
            if a.credentials.is_some() && a.credentials_file.is_some() {
                return Err(format!(
                    "{at}: at most one of authorization credentials & credentials_file must be configured"
                ));
            }
            if a.kind.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("basic")) {
                return Err(format!(
                    "{at}: authorization type cannot be set to \"basic\", use \"basic_auth\" instead"
                ));
            }
        }
        self.tls_config.validate(&format!("{at}.tls_config"))
    }
}

impl TlsConfig {
    fn validate(&self, at: &str) -> Result<(), String> {
        if self.min_version.is_some() {
            return Err(format!("{at}: min_version is not supported by vigil"));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(format!(
                "{at}: cert_file and key_file must be configured together"
            ));
        }
        Ok(())
    }
}

fn check_webhook_url(u: &str) -> Result<(), String> {
    let url = url::Url::parse(u).map_err(|e| format!("invalid webhook url {u:?}: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err("scheme required for webhook url".into());
    }
    Ok(())
}

/// `host:port` of a smarthost.
pub fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("address {s}: missing port in address"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("address {s}: invalid port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_prometheus() {
        assert_eq!(Dur::parse("30s").unwrap().0, Duration::from_secs(30));
        assert_eq!(Dur::parse("1h30m").unwrap().0, Duration::from_secs(5400));
        assert_eq!(Dur::parse("100ms").unwrap().0, Duration::from_millis(100));
        assert_eq!(Dur::parse("1d").unwrap().0, Duration::from_secs(86400));
        assert_eq!(Dur::parse("0").unwrap().0, Duration::ZERO);
        for bad in ["", "5", "m5", "5x", "1m1h", "1s1s", "-1s", "1.5s"] {
            assert!(Dur::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_alertmanagers() {
        let c = NotifyConfig::parse("route: {receiver: a}\nreceivers: [{name: a}]\n").unwrap();
        assert_eq!(c.global.resolve_timeout.0, Duration::from_secs(300));
        assert!(c.global.smtp_require_tls);
        assert_eq!(c.global.smtp_hello, "localhost");
    }

    #[test]
    fn errors_name_the_key() {
        let e = NotifyConfig::parse("route: {receiver: a, colour: red}\nreceivers: [{name: a}]")
            .unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = NotifyConfig::parse(
            "route: {receiver: a}\nreceivers: [{name: a, slack_configs: [{channel: x}]}]",
        )
        .unwrap_err();
        assert!(e.contains("slack_configs are not supported by vigil"), "{e}");
        let e = NotifyConfig::parse(
            "route: {receiver: a, routes: [{receiver: b}]}\nreceivers: [{name: a}]",
        )
        .unwrap_err();
        assert_eq!(e, "route.routes[0]: undefined receiver \"b\" used in route");
        let e = NotifyConfig::parse(
            "route: {receiver: a, group_by: ['...', x]}\nreceivers: [{name: a}]",
        )
        .unwrap_err();
        assert!(e.contains("cannot have wildcard group_by"), "{e}");
        let e = NotifyConfig::parse("route: {receiver: a, group_wait: 5x}\nreceivers: [{name: a}]")
            .unwrap_err();
        assert!(e.contains("not a valid duration string"), "{e}");
    }
}
