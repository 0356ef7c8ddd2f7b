//! The e-mail receiver: SMTP with lettre (STARTTLS required by default, implicit TLS on port 465,
//! authentication), an HTML and a text part, and a PNG chart of each alert's last hour inline.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::config::{split_host_port, EmailConfig, GlobalConfig};
use super::labels::Labels;
use super::template::{Data, DataAlert};
use super::SendError;
use crate::query::Query;
use vigil_dashboards::chart::{self, Chart, Line};

/// Charts drawn per e-mail at most (the first alerts of the notification).
pub const MAX_CHARTS: usize = 3;
/// Lines drawn per chart at most.
const MAX_LINES: usize = 5;

/// One `email_configs` entry with the global defaults applied.
pub struct Email {
    pub send_resolved: bool,
    to: Mailboxes,
    from: Mailbox,
    host: String,
    port: u16,
    hello: String,
    credentials: Option<Credentials>,
    require_tls: bool,
    tls: TlsParameters,
    headers: Vec<(String, String)>,
    query: Option<Arc<dyn Query>>,
}

impl Email {
    pub fn new(cfg: &EmailConfig, g: &GlobalConfig, query: Option<Arc<dyn Query>>) -> Result<Email, String> {
        let smarthost = cfg.smarthost.clone().or(g.smtp_smarthost.clone()).unwrap_or_default();
        let (host, port) = split_host_port(&smarthost).map_err(|e| format!("smarthost: {e}"))?;
        let from_s = cfg.from.clone().or(g.smtp_from.clone()).unwrap_or_default();
        let from: Mailbox = from_s.parse().map_err(|e| format!("from {from_s:?}: {e}"))?;
        let to_s = cfg.to.clone().unwrap_or_default();
        let to: Mailboxes = to_s.parse().map_err(|e| format!("to {to_s:?}: {e}"))?;
        if cfg.auth_secret.is_some() || g.smtp_auth_secret.is_some() {
            return Err("auth_secret (CRAM-MD5) is not supported by vigil; use auth_password".into());
        }
        let username = cfg.auth_username.clone().or(g.smtp_auth_username.clone());
        let credentials = match username {
            Some(u) if !u.is_empty() => {
                let password = match (
                    cfg.auth_password.clone().or(g.smtp_auth_password.clone()),
                    cfg.auth_password_file.clone().or(g.smtp_auth_password_file.clone()),
                ) {
                    (Some(p), _) => p,
                    (None, Some(f)) => std::fs::read_to_string(&f)
                        .map(|s| s.trim().to_string())
                        .map_err(|e| format!("auth_password_file {f}: {e}"))?,
                    (None, None) => String::new(),
                };
                Some(Credentials::new(u, password))
            }
            _ => None,
        };
        let tls_cfg = &cfg.tls_config;
        let server_name = tls_cfg.server_name.clone().unwrap_or_else(|| host.clone());
        let mut tb = TlsParameters::builder(server_name);
        if let Some(ca) = &tls_cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|e| format!("tls_config.ca_file {ca}: {e}"))?;
            tb = tb.add_root_certificate(
                Certificate::from_pem(&pem).map_err(|e| format!("tls_config.ca_file {ca}: {e}"))?,
            );
        }
        if tls_cfg.cert_file.is_some() {
            return Err("tls_config.cert_file (client certificates) is not supported by vigil for e-mail".into());
        }
        if tls_cfg.insecure_skip_verify {
            tb = tb.dangerous_accept_invalid_certs(true);
        }
        let tls = tb.build_rustls().map_err(|e| format!("tls_config: {e}"))?;
        Ok(Email {
            send_resolved: cfg.send_resolved,
            to,
            from,
            host,
            port,
            hello: cfg.hello.clone().unwrap_or_else(|| g.smtp_hello.clone()),
            credentials,
            require_tls: cfg.require_tls.unwrap_or(g.smtp_require_tls),
            tls,
            headers: cfg.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            query,
        })
    }

    fn transport(&self, timeout: Duration) -> AsyncSmtpTransport<Tokio1Executor> {
        // Port 465: implicit TLS; otherwise plain TCP, and STARTTLS when required (Alertmanager
        // does not upgrade when require_tls is false).
        let tls = if self.port == 465 {
            Tls::Wrapper(self.tls.clone())
        } else if self.require_tls {
            Tls::Required(self.tls.clone())
        } else {
            Tls::None
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .hello_name(ClientId::Domain(self.hello.clone()))
            .timeout(Some(timeout));
        if let Some(c) = &self.credentials {
            b = b
                .credentials(c.clone())
                .authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        b.build()
    }

    /// Draws the charts (through the query interface) for the first alerts of `data`.
    pub async fn charts(&self, data: &Data, now: DateTime<Utc>) -> Vec<(String, Result<Vec<u8>, String>)> {
        let Some(q) = &self.query else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for a in data.alerts.iter().take(MAX_CHARTS) {
            let Some(expr) = expr_of(&a.generator_url) else {
                continue;
            };
            let (q, a2) = (q.clone(), a.clone());
            let png = tokio::task::spawn_blocking(move || chart_png(q.as_ref(), &expr, &a2, now))
                .await
                .unwrap_or_else(|e| Err(format!("chart task: {e}")));
            out.push((a.fingerprint.clone(), png));
        }
        out
    }

    /// Builds the message for `data`.
    pub fn message(&self, data: &Data, charts: &[(String, Result<Vec<u8>, String>)]) -> Result<Message, String> {
        let mut b = Message::builder().date_now();
        let mut subject = data.default_subject();
        let mut from = self.from.clone();
        let mut to_header = self.to.clone();
        for (k, v) in &self.headers {
            match k.to_ascii_lowercase().as_str() {
                "subject" => subject = v.clone(),
                "from" => from = v.parse().map_err(|e| format!("header From {v:?}: {e}"))?,
                "to" => to_header = v.parse().map_err(|e| format!("header To {v:?}: {e}"))?,
                _ => {
                    let name = HeaderName::new_from_ascii(k.clone())
                        .map_err(|e| format!("header {k:?}: {e}"))?;
                    b = b.raw_header(HeaderValue::new(name, v.clone()));
                }
            }
        }
        b = b.subject(subject).from(from);
        for m in to_header {
            b = b.to(m);
        }
        let mut related = MultiPart::related().singlepart(SinglePart::html(html_body(data, charts)));
        for (fp, png) in charts {
            if let Ok(png) = png {
                related = related.singlepart(
                    Attachment::new_inline(format!("chart-{fp}@vigil"))
                        .body(png.clone(), ContentType::parse("image/png").expect("image/png")),
                );
            }
        }
        let body = MultiPart::alternative()
            .singlepart(SinglePart::plain(text_body(data)))
            .multipart(related);
        b.multipart(body).map_err(|e| format!("building message: {e}"))
    }

    /// Sends `msg` once. SMTP permanent (5xx) rejections are not retried, the rest is.
    pub async fn send(&self, msg: Message, timeout: Duration) -> Result<(), SendError> {
        let envelope_to: Vec<lettre::Address> = self.to.iter().map(|m| m.email.clone()).collect();
        let envelope = lettre::address::Envelope::new(Some(self.from.email.clone()), envelope_to)
            .map_err(|e| SendError { retry: false, outcome: "error", msg: format!("envelope: {e}") })?;
        let raw = msg.formatted();
        let at = format!("{}:{}", self.host, self.port);
        match self.transport(timeout).send_raw(&envelope, &raw).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let permanent = e.is_permanent();
                Err(SendError {
                    retry: !permanent,
                    outcome: if permanent {
                        "rejected"
                    } else if e.is_timeout() {
                        "timeout"
                    } else if e.is_transient() {
                        "server_error"
                    } else if e.is_client() || e.is_tls() {
                        // e.g. STARTTLS required but not offered; retried as Alertmanager does.
                        "error"
                    } else {
                        "connection_error"
                    },
                    msg: format!("SMTP {at}: {}", vigil_common::error_chain(&e)),
                })
            }
        }
    }
}

/// The rule expression of an alert, from its Prometheus generator URL (`…/graph?g0.expr=…`).
pub fn expr_of(generator_url: &str) -> Option<String> {
    let u = url::Url::parse(generator_url).ok()?;
    let expr = u.query_pairs().find(|(k, _)| k == "g0.expr").map(|(_, v)| v.into_owned());
    expr.filter(|e| !e.is_empty())
}

/// Splits `lhs > 0.9` into the series to draw and the threshold; other expressions are drawn
/// whole, without a threshold.
pub fn chart_query(expr: &str) -> (String, Option<f64>) {
    use promql_parser::parser::{self, Expr};
    fn number(e: &Expr) -> Option<f64> {
        match e {
            Expr::NumberLiteral(n) => Some(n.val),
            Expr::Paren(p) => number(&p.expr),
            _ => None,
        }
    }
    let Ok(mut e) = parser::parse(expr) else {
        return (expr.to_string(), None);
    };
    while let Expr::Paren(p) = e {
        e = *p.expr;
    }
    if let Expr::Binary(b) = &e {
        if b.op.is_comparison_operator() && !b.return_bool() {
            if let Some(v) = number(&b.rhs) {
                return (b.lhs.to_string(), Some(v));
            }
            if let Some(v) = number(&b.lhs) {
                return (b.rhs.to_string(), Some(v));
            }
        }
    }
    (expr.to_string(), None)
}

/// The series of `alert` over the hour before `now`, drawn as a PNG.
fn chart_png(q: &dyn Query, expr: &str, alert: &DataAlert, now: DateTime<Utc>) -> Result<Vec<u8>, String> {
    let (series_expr, threshold) = chart_query(expr);
    let end = now.timestamp_millis();
    let start = end - 3_600_000;
    let series = q
        .range(&series_expr, start, end, 15_000)
        .map_err(|e| format!("query {series_expr:?}: {e}"))?;
    // The alert's own series: every label the series has must agree with the alert's.
    let mine = |l: &Labels| {
        l.iter()
            .filter(|(k, _)| k.as_str() != "__name__")
            .all(|(k, v)| alert.labels.get(k).is_none_or(|av| av == v))
    };
    let lines: Vec<Line> = series
        .into_iter()
        .filter(|s| mine(&s.labels))
        .take(MAX_LINES)
        .map(|s| Line {
            label: series_label(&s.labels),
            points: s.points,
        })
        .collect();
    if lines.is_empty() {
        return Err(format!("query {series_expr:?}: no series of this alert in the last hour"));
    }
    let title = alert.labels.get("alertname").cloned().unwrap_or_default();
    // A baseline alert has no threshold: its band is the rule's `<alertname>_baseline_lower`
    // and `_upper` series, where the store keeps them.
    let band = match threshold {
        Some(_) => None,
        None => baseline_band(q, &title, start, end, &mine),
    };
    let c = Chart {
        title,
        lines,
        threshold,
        band,
        width: 720,
        height: 300,
        ..Chart::default()
    };
    chart::render_png(&c).map_err(|e| format!("chart: {e}"))
}

/// The baseline band of alert `name` from its `_baseline_lower/upper` series (the first pair
/// of the alert's series); `None` when the store has none (not a baseline alert, a remote store).
fn baseline_band(
    q: &dyn Query,
    name: &str,
    start: i64,
    end: i64,
    mine: &dyn Fn(&Labels) -> bool,
) -> Option<Vec<(i64, f64, f64)>> {
    if !crate::rules::file::is_metric_name(name) {
        return None;
    }
    let bound = |suffix: &str| -> Option<Vec<(i64, f64)>> {
        let expr = format!("{name}_baseline_{suffix}");
        match q.range(&expr, start, end, 15_000) {
            Ok(series) => series.into_iter().find(|s| mine(&s.labels)).map(|s| s.points),
            Err(e) => {
                tracing::debug!(query = %expr, error = %e, "no baseline band for the chart");
                None
            }
        }
    };
    let lower = bound("lower")?;
    let upper: std::collections::HashMap<i64, f64> = bound("upper")?.into_iter().collect();
    let band: Vec<(i64, f64, f64)> = lower
        .into_iter()
        .filter_map(|(t, lo)| upper.get(&t).map(|hi| (t, lo, *hi)))
        .collect();
    (!band.is_empty()).then_some(band)
}

fn series_label(l: &Labels) -> String {
    let name = l.get("__name__").cloned().unwrap_or_default();
    let rest: Vec<String> = l
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{name}{{{}}}", rest.join(", "))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn text_body(data: &Data) -> String {
    let mut s = String::new();
    for (title, list) in [("Firing", data.firing().collect::<Vec<_>>()), ("Resolved", data.resolved().collect())] {
        if list.is_empty() {
            continue;
        }
        s.push_str(&format!("[{}] {title}\n", list.len()));
        for a in list {
            s.push_str("Labels:\n");
            for (k, v) in &a.labels {
                s.push_str(&format!(" - {k} = {v}\n"));
            }
            s.push_str("Annotations:\n");
            for (k, v) in &a.annotations {
                s.push_str(&format!(" - {k} = {v}\n"));
            }
            s.push_str(&format!("Started: {}\n", a.starts_at.map(|t| t.to_rfc3339()).unwrap_or_default()));
            if a.status == "resolved" {
                s.push_str(&format!("Ended: {}\n", a.ends_at.map(|t| t.to_rfc3339()).unwrap_or_default()));
            }
            s.push_str(&format!("Source: {}\n\n", a.generator_url));
        }
    }
    if !data.external_url.is_empty() {
        s.push_str(&format!("Sent by vigil: {}\n", data.external_url));
    }
    s
}

fn html_body(data: &Data, charts: &[(String, Result<Vec<u8>, String>)]) -> String {
    let mut s = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"UTF-8\"><title>vigil alert</title></head>\
         <body style=\"font-family:sans-serif;color:#222\">",
    );
    let colour = if data.status == "firing" { "#d33" } else { "#393" };
    s.push_str(&format!(
        "<h2 style=\"color:{colour}\">{}</h2>",
        esc(&data.default_subject())
    ));
    for a in &data.alerts {
        s.push_str(&format!(
            "<div style=\"border-top:1px solid #ccc;padding:8px 0\"><b>{}</b> {}<br>",
            esc(&a.status.to_uppercase()),
            esc(a.labels.get("alertname").map(String::as_str).unwrap_or(""))
        ));
        for (k, v) in &a.annotations {
            s.push_str(&format!("<b>{}</b>: {}<br>", esc(k), esc(v)));
        }
        s.push_str("<table style=\"font-size:90%\">");
        for (k, v) in &a.labels {
            s.push_str(&format!("<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v)));
        }
        s.push_str("</table>");
        match charts.iter().find(|(fp, _)| *fp == a.fingerprint) {
            Some((fp, Ok(_))) => s.push_str(&format!(
                "<img src=\"cid:chart-{fp}@vigil\" alt=\"the alert's series over the last hour\" width=\"720\" height=\"300\"><br>"
            )),
            Some((_, Err(e))) => s.push_str(&format!("<i>chart unavailable: {}</i><br>", esc(e))),
            None => {}
        }
        if !a.generator_url.is_empty() {
            s.push_str(&format!("<a href=\"{}\">Source</a>", esc(&a.generator_url)));
        }
        s.push_str("</div>");
    }
    if !data.external_url.is_empty() {
        s.push_str(&format!(
            "<p style=\"font-size:80%\">Sent by <a href=\"{0}\">vigil</a></p>",
            esc(&data.external_url)
        ));
    }
    s.push_str("</body></html>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_comes_from_the_comparison() {
        assert_eq!(
            chart_query("node_load1 > 0.9"),
            ("node_load1".to_string(), Some(0.9))
        );
        assert_eq!(chart_query("(up == 0)"), ("up".to_string(), Some(0.0)));
        assert_eq!(chart_query("rate(x[5m])"), ("rate(x[5m])".to_string(), None));
        assert_eq!(
            expr_of("http://p:9090/graph?g0.expr=node_load1+%3E+0.9&g0.tab=1").as_deref(),
            Some("node_load1 > 0.9")
        );
    }
}
