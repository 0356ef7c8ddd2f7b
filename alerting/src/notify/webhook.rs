//! The webhook receiver: Alertmanager's version-4 JSON payload, `max_alerts`, and the HTTP client
//! settings (`http_config`) shared with forwarding to an Alertmanager.

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use serde::Serialize;

use super::config::{HttpConfig, WebhookConfig};
use super::template::Data;
use super::SendError;

/// The user agent of vigil's HTTP notifications.
pub const AGENT: &str = concat!("vigil/", env!("CARGO_PKG_VERSION"));

/// The body POSTed to a webhook (`webhook.Message`, version 4).
#[derive(Debug, Serialize)]
pub struct Message<'a> {
    #[serde(flatten)]
    pub data: &'a Data,
    pub version: &'static str,
    #[serde(rename = "groupKey")]
    pub group_key: &'a str,
    #[serde(rename = "truncatedAlerts")]
    pub truncated_alerts: u64,
}

/// An HTTP client configured from `http_config`, with its `Authorization` header.
#[derive(Clone)]
pub struct HttpClient {
    pub client: reqwest::Client,
    pub auth: Option<HeaderValue>,
}

fn read_secret(path: &str, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("reading {what} {path}: {e}"))
}

impl HttpClient {
    /// Builds the client (CA, client certificate, redirects, authentication).
    pub fn new(cfg: &HttpConfig) -> Result<HttpClient, String> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .use_rustls_tls();
        let tls = &cfg.tls_config;
        if let Some(ca) = &tls.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("tls_config.ca_file {ca}: {e}"))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("tls_config.ca_file {ca}: {e}"))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            let mut pem = std::fs::read(cert).map_err(|e| format!("tls_config.cert_file {cert}: {e}"))?;
            pem.extend(std::fs::read(key).map_err(|e| format!("tls_config.key_file {key}: {e}"))?);
            b = b.identity(
                reqwest::Identity::from_pem(&pem).map_err(|e| format!("tls_config.cert_file {cert}: {e}"))?,
            );
        }
        if tls.server_name.is_some() {
            return Err("http_config.tls_config.server_name is not supported by vigil".into());
        }
        if tls.insecure_skip_verify {
            b = b.danger_accept_invalid_certs(true);
        }
        if cfg.follow_redirects == Some(false) {
            b = b.redirect(reqwest::redirect::Policy::none());
        }
        let auth = if let Some(ba) = &cfg.basic_auth {
            let password = match (&ba.password, &ba.password_file) {
                (Some(p), _) => p.clone(),
                (None, Some(f)) => read_secret(f, "basic_auth.password_file")?,
                (None, None) => String::new(),
            };
            use base64::Engine;
            let token = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{password}", ba.username));
            Some(format!("Basic {token}"))
        } else if let Some(a) = &cfg.authorization {
            let creds = match (&a.credentials, &a.credentials_file) {
                (Some(c), _) => c.clone(),
                (None, Some(f)) => read_secret(f, "authorization.credentials_file")?,
                (None, None) => String::new(),
            };
            Some(format!("{} {creds}", a.kind.as_deref().unwrap_or("Bearer")))
        } else if let Some(t) = &cfg.bearer_token {
            Some(format!("Bearer {t}"))
        } else if let Some(f) = &cfg.bearer_token_file {
            Some(format!("Bearer {}", read_secret(f, "bearer_token_file")?))
        } else {
            None
        };
        let auth = auth
            .map(|a| HeaderValue::from_str(&a).map_err(|e| format!("authorization header: {e}")))
            .transpose()?;
        let client = b.build().map_err(|e| format!("http client: {e}"))?;
        Ok(HttpClient { client, auth })
    }

    /// POSTs a JSON body once: 2xx is success, 5xx and connection errors are retryable, other
    /// statuses are not.
    pub async fn post_json(&self, url: &str, body: Vec<u8>) -> Result<(), SendError> {
        let mut req = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, AGENT)
            .body(body);
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let resp = req.send().await.map_err(|e| SendError {
            retry: true,
            outcome: if e.is_timeout() { "timeout" } else { "connection_error" },
            msg: format!("POST {url}: {e}"),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let text = resp.text().await.unwrap_or_default();
        let text: String = text.chars().take(200).collect();
        Err(SendError {
            retry: status.is_server_error(),
            outcome: if status.is_server_error() { "server_error" } else { "client_error" },
            msg: format!("POST {url}: unexpected status code {}: {text}", status.as_u16()),
        })
    }
}

/// One `webhook_configs` entry.
pub struct Webhook {
    pub url: String,
    pub send_resolved: bool,
    pub max_alerts: u64,
    pub http: HttpClient,
}

impl Webhook {
    pub fn new(cfg: &WebhookConfig, global: &HttpConfig) -> Result<Webhook, String> {
        let url = match (&cfg.url, &cfg.url_file) {
            (Some(u), _) => u.clone(),
            (None, Some(f)) => read_secret(f, "url_file")?,
            (None, None) => return Err("missing URL in webhook config".into()),
        };
        Ok(Webhook {
            url,
            send_resolved: cfg.send_resolved,
            max_alerts: cfg.max_alerts,
            http: HttpClient::new(cfg.http_config.as_ref().unwrap_or(global))?,
        })
    }

    /// The JSON body for `data` (already truncated to `max_alerts`).
    pub fn body(data: &Data, group_key: &str, truncated: u64) -> Vec<u8> {
        let mut body = serde_json::to_vec(&Message {
            data,
            version: "4",
            group_key,
            truncated_alerts: truncated,
        })
        .expect("webhook message serializes");
        body.push(b'\n');
        body
    }
}
