//! Alerting inside the aggregator: the rule flags (also `--config` keys), `Query` over the in-process PromQL engine and
//! the store (or a remote API), recorded and `ALERTS` series written into the store, the
//! notifier, `/api/v1/rules`, `/api/v1/alerts`, `POST /-/reload` and SIGHUP.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use tokio::sync::watch;
use vigil_alerting::notify::{Forwarder, Notifier};
use vigil_alerting::query::{QueryError, RangeSeries, Sample};
use vigil_alerting::rules::eval::{Labels, SeriesWriter};
use vigil_alerting::rules::{EvalOptions, Manager, ManagerConfig};
use vigil_alerting::{Fanout, Notify, Query, RemoteQuery};
use vigil_common::exposition::{Format, Writer};
use vigil_promql::{Engine, EngineOptions};

use crate::config::Config;
use crate::query::QueryService;
use crate::store::Store;

/// Rule and notification flags of `vigil aggregator` (and `vigil up`). Each is also a key of
/// the same snake_case name in `--config` (see [`crate::config::Config`]); a flag wins over the
/// key, and a list flag given at least once replaces the file's list.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AlertingArgs {
    /// Prometheus rule file (path or glob; repeatable): alerting and recording rules evaluated
    /// over the store (or --rule-query-url). Reloaded on SIGHUP and `POST /-/reload`. Replaces
    /// the config file's `rule_file` list (whose relative paths are relative to the file).
    #[arg(long = "rule-file")]
    pub rule_files: Vec<String>,
    /// Alertmanager-format configuration (route, receivers, inhibit_rules): alerts go to its
    /// receivers and `/api/v2/*` (silences, alerts, status) is served.
    #[arg(long)]
    pub notify_config: Option<PathBuf>,
    /// Evaluate rules through this Prometheus-compatible API (Prometheus, VictoriaMetrics,
    /// Thanos) instead of the aggregator's own store, as vmalert's -datasource.url.
    #[arg(long)]
    pub rule_query_url: Option<String>,
    /// Interval of rule groups that set none (Prometheus's evaluation_interval) [default: 1m].
    #[arg(long, value_parser = vigil_common::duration::parse_std)]
    pub rule_evaluation_interval: Option<Duration>,
    /// Shortest `for` whose pending state is restored after a restart
    /// (Prometheus's --rules.alert.for-grace-period) [default: 10m].
    #[arg(long, value_parser = vigil_common::duration::parse_std)]
    pub rule_for_grace_period: Option<Duration>,
    /// URL this server is reached at, for alerts' generatorURL, templates' $externalURL and
    /// notifications' externalURL [default: http://<listen address>, or this machine's name and
    /// the port when listening on every address, as Prometheus and Alertmanager default].
    #[arg(long)]
    pub external_url: Option<String>,
    /// Label added to alerts sent (`name=value`, repeatable), as Prometheus's external_labels.
    /// Replaces the config file's `external_label` list.
    #[arg(long = "external-label")]
    pub external_labels: Vec<ExternalLabel>,
    /// Also send the rules' alerts to this Alertmanager (base URL, repeatable), as Prometheus's
    /// --alertmanager.url: POST /api/v2/alerts, re-sent while firing, resolved when they end.
    /// Replaces the config file's `alertmanager_url` list.
    #[arg(long = "alertmanager-url")]
    pub alertmanager_urls: Vec<String>,
}

/// One external label, `name=value` (flag `--external-label`, key `external_label`); the name
/// is a Prometheus label name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct ExternalLabel {
    pub name: String,
    pub value: String,
}

impl std::str::FromStr for ExternalLabel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not name=value"))?;
        let mut chars = name.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "{s:?}: {name:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        Ok(ExternalLabel {
            name: name.to_string(),
            value: value.to_string(),
        })
    }
}

impl TryFrom<String> for ExternalLabel {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// Why alerting could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--{flag}: {message}")]
    Flag { flag: &'static str, message: String },
    #[error("rule files: {0}")]
    Rules(#[from] vigil_alerting::rules::LoadError),
    #[error("--notify-config {path}: {message}")]
    Notify { path: String, message: String },
    #[error("--alertmanager-url: {0}")]
    Alertmanager(String),
}

/// Prometheus's and Alertmanager's default external URL: `http://<listen address>`, or this
/// machine's name and the port when the server listens on every address.
pub fn default_external_url(listen: std::net::SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("http://{host}:{}", listen.port())
    } else {
        format!("http://{listen}")
    }
}

/// `Query` over the in-process engine and the store.
pub struct StoreQuery {
    pub store: Arc<Store>,
    pub engine: Engine,
}

impl Query for StoreQuery {
    fn instant(&self, expr: &str, time_ms: i64) -> Result<Vec<Sample>, QueryError> {
        vigil_alerting::query::engine_instant(&self.engine, &*self.store, expr, time_ms)
    }

    fn range(
        &self,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<RangeSeries>, QueryError> {
        vigil_alerting::query::engine_range(
            &self.engine,
            &*self.store,
            expr,
            start_ms,
            end_ms,
            step_ms,
        )
    }
}

/// Writes recorded and `ALERTS` series into the store.
pub struct StoreWriter(pub Arc<Store>);

impl SeriesWriter for StoreWriter {
    fn write(&self, samples: Vec<(Labels, i64, f64)>) -> Result<(), String> {
        let mut first_err = None;
        for (labels, t, v) in samples {
            if let Err(e) = self.0.append(&labels, t, v) {
                first_err.get_or_insert(e.to_string());
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Running alerting: the rule manager and the notifier, if configured.
pub struct Alerting {
    pub manager: Option<Arc<Manager>>,
    pub notifier: Option<Arc<Notifier>>,
    /// `--alertmanager-url`s' forwarder and the notifiers' metrics (`vigil_notify_*`).
    pub forwarder: Option<Arc<Forwarder>>,
}

impl Alerting {
    /// Starts what the settings (flags and `--config` keys) ask for: nothing without rule files,
    /// a notify config or an Alertmanager URL.
    pub fn start(
        cfg: &Config,
        store: Arc<Store>,
        query: &QueryService,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Alerting, Error> {
        let data_dir = cfg.data_dir.clone();
        let rule_query: Arc<dyn Query> = match &cfg.rule_query_url {
            Some(url) => Arc::new(RemoteQuery::new(url, Duration::from_secs(30)).map_err(|e| {
                Error::Flag {
                    flag: "rule-query-url",
                    message: e.0,
                }
            })?),
            None => Arc::new(StoreQuery {
                store: store.clone(),
                engine: Engine::new(EngineOptions {
                    lookback_delta_ms: query.limits.lookback_delta.as_millis() as i64,
                    timeout: query.limits.timeout,
                    max_samples: query.limits.max_samples,
                    ..EngineOptions::default()
                }),
            }),
        };
        let external_url = cfg
            .external_url
            .clone()
            .unwrap_or_else(|| default_external_url(cfg.listen));
        let notifier = match &cfg.notify_config {
            None => None,
            Some(path) => {
                let fail = |message: String| Error::Notify {
                    path: path.display().to_string(),
                    message,
                };
                let mut config = vigil_alerting::notify::NotifyConfig::load(path)
                    .map_err(|e| fail(e.to_string()))?;
                // The notifier is served here too (`/api/v2/*`): links point at this server.
                config.external_url = external_url.clone();
                let n = Notifier::new(
                    config,
                    data_dir.as_ref().map(|d| d.join("notify")),
                    Some(rule_query.clone()),
                )
                .map_err(|e| fail(e.to_string()))?;
                let n = Arc::new(n);
                tokio::spawn(n.clone().run(shutdown.clone()));
                Some(n)
            }
        };
        let forwarder = if cfg.alertmanager_url.is_empty() {
            None
        } else {
            let f = Forwarder::new(cfg.alertmanager_url.clone())
                .map_err(|e| Error::Alertmanager(e.to_string()))?;
            let f = Arc::new(f);
            tokio::spawn(f.clone().run(shutdown.clone()));
            Some(f)
        };
        if cfg.rule_file.is_empty() {
            return Ok(Alerting {
                manager: None,
                notifier,
                forwarder,
            });
        }
        let external_labels: BTreeMap<String, String> = cfg
            .external_label
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let eval = EvalOptions {
            default_interval: cfg.rule_evaluation_interval,
            for_grace_period: cfg.rule_for_grace_period,
            external_labels,
            external_url,
            ..EvalOptions::default()
        };
        let writer: Arc<dyn SeriesWriter> = if cfg.rule_query_url.is_some() {
            Arc::new(vigil_alerting::rules::eval::NoWriter)
        } else {
            Arc::new(StoreWriter(store))
        };
        let config = ManagerConfig {
            patterns: cfg.rule_file.clone(),
            eval,
            data_dir: data_dir.clone(),
        };
        let notify: Vec<Arc<dyn Notify>> = notifier
            .iter()
            .map(|n| n.clone() as Arc<dyn Notify>)
            .chain(forwarder.iter().map(|f| f.clone() as Arc<dyn Notify>))
            .collect();
        let notify = (!notify.is_empty()).then(|| Arc::new(Fanout(notify)) as Arc<dyn Notify>);
        let manager = Manager::new(config, rule_query, writer, notify)?;
        manager.start()?;
        let m = manager.clone();
        query.set_rules_hook(Arc::new(move |params| {
            m.rules_json(params)
                .unwrap_or_else(|e| serde_json::json!({"groups": [], "error": e}))
        }));
        let m = manager.clone();
        query.set_alerts_hook(Arc::new(move || m.alerts_json()));
        // SIGHUP reloads the rule files; stopping the aggregator stops the groups.
        let m = manager.clone();
        let mut stop = shutdown;
        tokio::spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::error!("cannot install the SIGHUP handler: reload with POST /-/reload");
                let _ = stop.wait_for(|s| *s).await;
                m.stop();
                return;
            };
            loop {
                tokio::select! {
                    _ = hup.recv() => {
                        let m = m.clone();
                        let _ = tokio::task::spawn_blocking(move || m.reload()).await;
                    }
                    _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
                }
            }
            m.stop();
        });
        Ok(Alerting {
            manager: Some(manager),
            notifier,
            forwarder,
        })
    }

    /// `POST /-/reload` and, with a notifier, its `/api/v2/*`.
    pub fn router(&self) -> Router {
        let mut r = Router::new();
        if let Some(m) = &self.manager {
            r = r.route("/-/reload", post(reload).with_state(m.clone()));
        }
        if let Some(n) = &self.notifier {
            r = r.merge(n.clone().router());
        }
        r
    }

    /// The rules' and notifiers' self-metrics for `/metrics`.
    pub fn write_metrics(&self, out: &mut String) {
        if let Some(m) = &self.manager {
            out.push_str(&m.metrics_text());
        }
        let mut w = Writer::new(out, Format::Text);
        if let Some(n) = &self.notifier {
            n.write_metrics(&mut w);
        }
        if let Some(f) = &self.forwarder {
            f.write_metrics(&mut w);
        }
    }
}

async fn reload(State(m): State<Arc<Manager>>) -> Response {
    match tokio::task::spawn_blocking(move || m.reload()).await {
        Ok(Ok(())) => (StatusCode::OK, "rules reloaded\n").into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload rules, the previous rules keep running: {e}\n"),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_external_url_is_where_the_server_listens() {
        use super::default_external_url;
        assert_eq!(
            default_external_url("127.0.0.1:8082".parse().unwrap()),
            "http://127.0.0.1:8082"
        );
        assert_eq!(
            default_external_url("[::1]:8082".parse().unwrap()),
            "http://[::1]:8082"
        );
        let all = default_external_url("0.0.0.0:8082".parse().unwrap());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(all, format!("http://{}:8082", host.trim()));
    }
}
