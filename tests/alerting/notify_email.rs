//! E-mail notifications through a real SMTP server (aiosmtpd) with STARTTLS and AUTH: the MIME
//! structure, the default subject, the text and HTML parts, and the inline PNG chart of the
//! alert's series over the last hour, decoded and checked for the drawn line and threshold, and
//! a baseline alert's band.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::until;
use crate::support::notify::*;
use chrono::Utc;
use mail_parser::{MessageParser, MimeHeaders};
use vigil_alerting::notify::Notifier;
use vigil_alerting::{Alert, Notify, Query, QueryError, RangeSeries, Sample};

/// A metrics store with two hosts' load over the last hours; records what was asked.
struct Store {
    asked: Mutex<Vec<(String, i64, i64, i64)>>,
}

impl Query for Store {
    fn instant(&self, _expr: &str, _t: i64) -> Result<Vec<Sample>, QueryError> {
        Err(QueryError("not used".into()))
    }
    fn range(&self, expr: &str, start: i64, end: i64, step: i64) -> Result<Vec<RangeSeries>, QueryError> {
        self.asked.lock().unwrap().push((expr.to_string(), start, end, step));
        if expr != "node_load1" {
            return Err(QueryError(format!("unknown series {expr}")));
        }
        let series = |instance: &str, base: f64| RangeSeries {
            labels: [("__name__", "node_load1"), ("instance", instance), ("job", "node")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            points: (0..)
                .map(|i| start + i * step)
                .take_while(|t| *t <= end)
                .map(|t| (t, base + 0.4 * ((t - start) as f64 / 600_000.0).sin() + (t - start) as f64 / 7_200_000.0))
                .collect(),
        };
        Ok(vec![series("node-2", 0.2), series("node-1", 0.6)])
    }
}

fn self_signed(dir: &std::path::Path) -> (String, String) {
    let c = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
    (cert.display().to_string(), key.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_over_starttls_with_auth_carries_the_chart_inline() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let smtp = SmtpServer::start(&["--cert", &cert, "--key", &key, "--auth", "vigil:s3cret"]);
    let text = format!(
        r#"
global:
  smtp_smarthost: '127.0.0.1:{port}'
  smtp_from: 'Vigil <vigil@example.org>'
  smtp_auth_username: vigil
  smtp_auth_password: s3cret
route: {{receiver: ops, group_by: [alertname], group_wait: 200ms}}
receivers:
  - name: ops
    email_configs:
      - to: 'ops@example.org, dba@example.org'
        headers: {{X-Team: storage}}
        tls_config: {{ca_file: '{cert}'}}
"#,
        port = smtp.port
    );
    let store = Arc::new(Store { asked: Mutex::new(Vec::new()) });
    let notifier = Notifier::new(load_config(dir.path(), &text), None, Some(store.clone())).unwrap();
    let vigil = Vigil::start(notifier).await;
    let now = Utc::now();
    let labels: BTreeMap<String, String> = [("alertname", "HighLoad"), ("instance", "node-1"), ("job", "node"), ("severity", "page")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let fp = vigil_alerting::notify::labels::fingerprint_hex(&labels);
    vigil.notifier.send(vec![Alert {
        labels,
        annotations: [("summary".to_string(), "node-1 load is above 0.9 <b>".to_string())].into(),
        starts_at: now,
        ends_at: now + chrono::Duration::hours(1),
        generator_url: "http://prometheus.test:9090/graph?g0.expr=node_load1+%3E+0.9&g0.tab=1".into(),
    }]);

    let msgs = until("the e-mail", Duration::from_secs(20), || {
        let m = smtp.messages();
        async move { (!m.is_empty()).then_some(m) }
    })
    .await;
    let (raw, envelope) = &msgs[0];
    assert_eq!(envelope["tls"], true, "STARTTLS was used: {envelope}");
    assert_eq!(envelope["auth"], "vigil", "authenticated: {envelope}");
    assert_eq!(envelope["mail_from"], "vigil@example.org");
    assert_eq!(envelope["rcpt_tos"], serde_json::json!(["ops@example.org", "dba@example.org"]));

    // The query asked for the compared series over the last hour, without the threshold.
    let asked = store.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].0, "node_load1");
    assert_eq!(asked[0].2 - asked[0].1, 3_600_000);

    let msg = MessageParser::default().parse(raw).expect("a MIME message");
    assert_eq!(msg.subject(), Some("[FIRING:1] HighLoad (node-1 node page)"));
    assert_eq!(msg.header_raw("X-Team").map(str::trim), Some("storage"));
    assert!(msg.content_type().is_some_and(|c| c.subtype() == Some("alternative")), "multipart/alternative");
    let text = msg.body_text(0).expect("a text part");
    assert!(text.contains("instance = node-1") && text.contains("summary = node-1 load is above 0.9 <b>"), "{text}");
    let html = msg.body_html(0).expect("an HTML part");
    assert!(html.contains(&format!("cid:chart-{fp}@vigil")), "{html}");
    assert!(html.contains("above 0.9 &lt;b&gt;"), "HTML-escaped: {html}");
    let png_part = msg
        .attachments()
        .find(|p| p.content_type().is_some_and(|c| c.ctype() == "image" && c.subtype() == Some("png")))
        .expect("an image/png part");
    assert_eq!(png_part.content_id(), Some(format!("chart-{fp}@vigil").as_str()));
    assert!(png_part.content_disposition().is_some_and(|d| d.ctype() == "inline"));

    // Decode the PNG and look for the drawn series (the first line colour) across the plot
    // area, and for the threshold line.
    let decoder = png::Decoder::new(std::io::Cursor::new(png_part.contents().to_vec()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    assert_eq!((w, h), (720, 300));
    let channels = info.line_size / w;
    let px = |x: usize, y: usize| {
        let i = y * info.line_size + x * channels;
        (buf[i], buf[i + 1], buf[i + 2])
    };
    let near = |a: (u8, u8, u8), b: (u8, u8, u8)| {
        (a.0 as i32 - b.0 as i32).abs() < 12 && (a.1 as i32 - b.1 as i32).abs() < 12 && (a.2 as i32 - b.2 as i32).abs() < 12
    };
    const LINE: (u8, u8, u8) = (31, 119, 180);
    const THRESHOLD: (u8, u8, u8) = (200, 0, 0);
    let (x0, x1, y0, y1) = (w / 10, w * 9 / 10, h / 8, h * 7 / 8);
    let mut line_cols = 0;
    let mut line_rows = std::collections::BTreeSet::new();
    let mut threshold_px = 0;
    for x in x0..x1 {
        let mut col = false;
        for y in y0..y1 {
            if near(px(x, y), LINE) {
                col = true;
                line_rows.insert(y);
            }
            if near(px(x, y), THRESHOLD) {
                threshold_px += 1;
            }
        }
        line_cols += col as usize;
    }
    assert!(line_cols > (x1 - x0) * 7 / 10, "the series spans the plot: {line_cols} of {} columns", x1 - x0);
    assert!(line_rows.len() > 20, "the series varies in height: {} rows", line_rows.len());
    assert!(threshold_px > (x1 - x0) / 2, "threshold line drawn: {threshold_px} pixels");
    vigil.stop().await;
}

/// A store holding a baseline rule's series `value{host}` and its bands (±2 for a, ±100 for b)
/// `Anomaly_baseline_lower/upper{host}` (as the rule engine writes them) for two hosts.
struct BandStore {
    asked: Mutex<Vec<String>>,
}

impl Query for BandStore {
    fn instant(&self, _expr: &str, _t: i64) -> Result<Vec<Sample>, QueryError> {
        Err(QueryError("not used".into()))
    }
    fn range(&self, expr: &str, start: i64, end: i64, step: i64) -> Result<Vec<RangeSeries>, QueryError> {
        self.asked.lock().unwrap().push(expr.to_string());
        let level = match expr {
            "value" => 0.0,
            "Anomaly_baseline_lower" => -1.0,
            "Anomaly_baseline_upper" => 1.0,
            _ => return Err(QueryError(format!("unknown series {expr}"))),
        };
        let series = |host: &str, width: f64| RangeSeries {
            labels: [("__name__", expr), ("host", host)].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            points: (0..)
                .map(|i| start + i * step)
                .take_while(|t| *t <= end)
                // The series wanders inside its band, then leaves it in the last ten minutes.
                .map(|t| {
                    let v = if level == 0.0 && end - t < 600_000 { 25.0 } else { 10.0 + 0.5 * ((t - start) as f64 / 300_000.0).sin() };
                    (t, v + level * width)
                })
                .collect(),
        };
        // Host b's band is far wider: drawn by mistake it would fill the plot's height.
        Ok(vec![series("b", 100.0), series("a", 2.0)])
    }
}

/// A baseline alert's e-mail chart draws the band of its own series (not another host's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_alert_email_chart_draws_the_band() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(&[]);
    let text = format!(
        "global: {{smtp_smarthost: '127.0.0.1:{}', smtp_from: 'vigil@example.org', smtp_require_tls: false}}\nroute: {{receiver: ops, group_wait: 100ms}}\nreceivers: [{{name: ops, email_configs: [{{to: ops@example.org}}]}}]\n",
        smtp.port
    );
    let store = Arc::new(BandStore { asked: Mutex::new(Vec::new()) });
    let vigil = Vigil::start(Notifier::new(load_config(dir.path(), &text), None, Some(store.clone())).unwrap()).await;
    let now = Utc::now();
    vigil.notifier.send(vec![Alert {
        labels: [("alertname", "Anomaly"), ("host", "a")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        annotations: BTreeMap::new(),
        starts_at: now,
        ends_at: now + chrono::Duration::hours(1),
        generator_url: "http://vigil.test/graph?g0.expr=value&g0.tab=1".into(),
    }]);
    let msgs = until("the e-mail", Duration::from_secs(20), || {
        let m = smtp.messages();
        async move { (!m.is_empty()).then_some(m) }
    })
    .await;
    assert_eq!(*store.asked.lock().unwrap(), ["value", "Anomaly_baseline_lower", "Anomaly_baseline_upper"]);
    let msg = MessageParser::default().parse(&msgs[0].0).expect("a MIME message");
    let png_part = msg
        .attachments()
        .find(|p| p.content_type().is_some_and(|c| c.ctype() == "image" && c.subtype() == Some("png")))
        .expect("an image/png part");
    let decoder = png::Decoder::new(std::io::Cursor::new(png_part.contents().to_vec()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = info.line_size / w;
    let px = |x: usize, y: usize| {
        let i = y * info.line_size + x * channels;
        (buf[i] as i32, buf[i + 1] as i32, buf[i + 2] as i32)
    };
    // The band: the line colour at 15 % over white, (221, 235, 244), in most columns of the
    // plot, a few rows high each (8..12 on a 0..27 axis: about a quarter of the plot's height).
    const BAND: (i32, i32, i32) = (221, 235, 244);
    let near = |a: (i32, i32, i32)| (a.0 - BAND.0).abs() < 6 && (a.1 - BAND.1).abs() < 6 && (a.2 - BAND.2).abs() < 6;
    let (x0, x1, y0, y1) = (w / 10, w * 9 / 10, h / 8, h * 7 / 8);
    let mut band_cols = 0;
    let mut tallest = 0;
    for x in x0..x1 {
        let rows = (y0..y1).filter(|&y| near(px(x, y))).count();
        band_cols += (rows > 0) as usize;
        tallest = tallest.max(rows);
    }
    assert!(band_cols > (x1 - x0) * 7 / 10, "the band spans the plot: {band_cols} of {} columns", x1 - x0);
    assert!(tallest > 10 && tallest < (y1 - y0) / 2, "the band is its own host's, not the whole plot: {tallest} rows");
    vigil.stop().await;
}
