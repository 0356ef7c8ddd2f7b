//! InfluxDB sink: Heapster's line-protocol schema, and the v1 `/write` and v2 `/api/v2/write` transports.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use super::http::{classify, snippet, transport_error, SendError};
use super::queue::Payload;
use super::Error;
use crate::processors::names::is_cumulative;
use crate::batch::{Batch, MetricValue};

/// Set labels Heapster never writes to InfluxDB.
const BLACKLIST: [&str; 4] = ["namespace_id", "pod_id", "hostname", "host_id"];

/// Encodes batches as line protocol in Heapster's schema.
#[derive(Debug, Clone)]
pub struct LineProtocol {
    /// `withfields=true`: measurement = text before the first `/`, field = the rest.
    pub with_fields: bool,
    /// Added as the `cluster_name` tag when not empty.
    pub cluster_name: String,
    /// Leaves out cumulative metrics.
    pub disable_counter_metrics: bool,
    /// Most points per payload.
    pub batch_size: usize,
    /// Most bytes per payload (before compression).
    pub max_body_bytes: u64,
    /// Gzip each payload.
    pub gzip: bool,
}

impl LineProtocol {
    /// The encoder of a sink's write options.
    pub fn new(w: &super::config::InfluxWrite) -> Self {
        LineProtocol {
            with_fields: w.with_fields,
            cluster_name: w.cluster_name.clone(),
            disable_counter_metrics: w.disable_counter_metrics,
            batch_size: w.batch_size,
            max_body_bytes: w.max_body_bytes,
            gzip: w.gzip,
        }
    }
}

/// What encoding a batch produced.
#[derive(Debug, Default)]
pub struct Encoded {
    pub payloads: Vec<Payload>,
    /// Points left out because InfluxDB cannot store the value (NaN, ±Inf).
    pub skipped: u64,
}

fn escape_into(buf: &mut Vec<u8>, s: &str, special: &[u8]) {
    let b = s.as_bytes();
    if !b
        .iter()
        .any(|c| special.contains(c) || *c == b'\n' || *c == b'\\')
    {
        buf.extend_from_slice(b);
        return;
    }
    for &c in b {
        if c == b'\n' {
            // Line protocol cannot carry a newline in a name or tag.
            buf.extend_from_slice(b"\\ ");
            continue;
        }
        if special.contains(&c) {
            buf.push(b'\\');
        }
        buf.push(c);
    }
}

const MEASUREMENT: &[u8] = b", ";
const TAG: &[u8] = b",= ";

fn write_tags<'a>(buf: &mut Vec<u8>, tags: impl Iterator<Item = (&'a str, &'a str)>) {
    for (k, v) in tags {
        buf.push(b',');
        escape_into(buf, k, TAG);
        buf.push(b'=');
        escape_into(buf, v, TAG);
    }
}

struct Chunker<'a> {
    cfg: &'a LineProtocol,
    buf: Vec<u8>,
    points: u32,
    out: Vec<Payload>,
}

impl Chunker<'_> {
    fn flush(&mut self) {
        if self.points == 0 {
            return;
        }
        let body = if self.cfg.gzip {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(self.buf.len() / 4),
                flate2::Compression::fast(),
            );
            enc.write_all(&self.buf).expect("writing to a Vec");
            enc.finish().expect("writing to a Vec")
        } else {
            std::mem::take(&mut self.buf)
        };
        self.buf.clear();
        self.out.push(Payload {
            body: Bytes::from(body),
            points: self.points,
        });
        self.points = 0;
    }
}

impl LineProtocol {
    /// Encodes one batch into payloads of at most `batch_size` points / about `max_body_bytes`.
    pub fn encode(&self, batch: &Batch) -> Encoded {
        let ts = batch.timestamp.timestamp_nanos_opt().unwrap_or(0);
        let mut tsb = itoa::Buffer::new();
        let ts = tsb.format(ts).as_bytes();
        let mut ch = Chunker {
            cfg: self,
            buf: Vec::with_capacity(256 * 1024),
            points: 0,
            out: Vec::new(),
        };
        let mut skipped = 0u64;
        let mut tags = Vec::with_capacity(512);
        let mut ib = itoa::Buffer::new();
        let mut fb = ryu::Buffer::new();
        let cluster = (!self.cluster_name.is_empty()).then_some(self.cluster_name.as_str());
        let mut merged: Vec<(&str, &str)> = Vec::with_capacity(16);
        for set in batch.sets.values() {
            // The set's tags, sorted, with cluster_name put in its place.
            merged.clear();
            for (k, v) in set.labels.iter() {
                if v.is_empty()
                    || BLACKLIST.contains(&k.as_str())
                    || (cluster.is_some() && k == "cluster_name")
                {
                    continue;
                }
                merged.push((k, v));
            }
            if let Some(c) = cluster {
                let at = merged.partition_point(|(k, _)| *k < "cluster_name");
                merged.insert(at, ("cluster_name", c));
            }
            tags.clear();
            write_tags(&mut tags, merged.iter().copied());
            for (name, value) in &set.values {
                if self.disable_counter_metrics && is_cumulative(name) {
                    continue;
                }
                if !self.point(&mut ch, name, &tags, *value, ts, &mut ib, &mut fb) {
                    skipped += 1;
                }
            }
            if !set.labeled.is_empty() {
                let mut ltags = Vec::with_capacity(tags.len() + 64);
                for lm in &set.labeled {
                    if self.disable_counter_metrics && is_cumulative(&lm.name) {
                        continue;
                    }
                    let mut all: Vec<(&str, &str)> = merged
                        .iter()
                        .copied()
                        .filter(|(k, _)| {
                            !lm.labels.contains_key(*k)
                                || (*k == "cluster_name" && cluster.is_some())
                        })
                        .collect();
                    for (k, v) in lm.labels.iter() {
                        if v.is_empty() || (k == "cluster_name" && cluster.is_some()) {
                            continue;
                        }
                        all.push((k, v));
                    }
                    all.sort_unstable_by(|a, b| a.0.cmp(b.0));
                    ltags.clear();
                    write_tags(&mut ltags, all.into_iter());
                    if !self.point(&mut ch, &lm.name, &ltags, lm.value, ts, &mut ib, &mut fb) {
                        skipped += 1;
                    }
                }
            }
        }
        ch.flush();
        Encoded {
            payloads: ch.out,
            skipped,
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn point(
        &self,
        ch: &mut Chunker<'_>,
        name: &str,
        tags: &[u8],
        value: MetricValue,
        ts: &[u8],
        ib: &mut itoa::Buffer,
        fb: &mut ryu::Buffer,
    ) -> bool {
        let v: &str = match value {
            MetricValue::Int(i) => ib.format(i),
            MetricValue::Float(f) if f.is_finite() => fb.format_finite(f),
            MetricValue::Float(_) => return false,
        };
        if ch.points > 0
            && ch.buf.len() as u64 + (name.len() + tags.len() + v.len() + 48) as u64
                > self.max_body_bytes
        {
            ch.flush();
        }
        let buf = &mut ch.buf;
        let (measurement, field) = if self.with_fields {
            match name.split_once('/') {
                Some((m, f)) => (m, f),
                None => (name, "value"),
            }
        } else {
            (name, "value")
        };
        escape_into(buf, measurement, MEASUREMENT);
        buf.extend_from_slice(tags);
        buf.push(b' ');
        escape_into(buf, field, TAG);
        buf.push(b'=');
        buf.extend_from_slice(v.as_bytes());
        if matches!(value, MetricValue::Int(_)) {
            buf.push(b'i');
        }
        buf.push(b' ');
        buf.extend_from_slice(ts);
        buf.push(b'\n');
        ch.points += 1;
        if ch.points as usize >= self.batch_size {
            ch.flush();
        }
        true
    }
}

/// Quotes an InfluxQL identifier.
fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// InfluxDB 1.x: `POST /write?db=&rp=&precision=ns`, creating the database on first use and
/// after "database not found", as Heapster does.
pub struct V1 {
    client: reqwest::Client,
    write_url: url::Url,
    query_url: url::Url,
    auth: Option<(String, String)>,
    create_stmt: String,
    db_ready: AtomicBool,
    gzip: bool,
    name: String,
}

fn endpoint(base: &str, path: &str) -> Result<url::Url, Error> {
    let mut u = url::Url::parse(base).map_err(|e| Error::Config {
        key: "url".into(),
        reason: format!("`{base}`: {e}"),
    })?;
    let joined = format!("{}{}", u.path().trim_end_matches('/'), path);
    u.set_path(&joined);
    u.set_query(None);
    Ok(u)
}

impl V1 {
    pub fn new(name: &str, c: &super::config::InfluxdbConfig) -> Result<V1, Error> {
        let client =
            super::http::client(c.write.delivery.timeout, c.write.insecure_ssl).map_err(|e| Error::Client {
                sink: name.into(),
                reason: e.to_string(),
            })?;
        let mut write_url = endpoint(&c.url, "/write")?;
        write_url
            .query_pairs_mut()
            .append_pair("db", &c.db)
            .append_pair("rp", &c.rp)
            .append_pair("precision", "ns");
        let query_url = endpoint(&c.url, "/query")?;
        let create_stmt = if c.retention == "0" {
            format!(
                "CREATE DATABASE {} WITH NAME {}",
                quote_ident(&c.db),
                quote_ident(&c.rp)
            )
        } else {
            format!(
                "CREATE DATABASE {} WITH DURATION {} NAME {}",
                quote_ident(&c.db),
                c.retention,
                quote_ident(&c.rp)
            )
        };
        Ok(V1 {
            client,
            write_url,
            query_url,
            auth: (!c.user.is_empty()).then(|| (c.user.clone(), c.pw.clone())),
            create_stmt,
            db_ready: AtomicBool::new(false),
            gzip: c.write.gzip,
            name: name.into(),
        })
    }

    async fn create_database(&self) -> Result<(), SendError> {
        let mut req = self
            .client
            .post(self.query_url.clone())
            .form(&[("q", self.create_stmt.as_str())]);
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.map_err(transport_error)?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(SendError::Retry(format!(
                "creating the database: HTTP {}: {}",
                status.as_u16(),
                snippet(&text)
            )));
        }
        if !status.is_success() || text.contains("\"error\"") {
            // e.g. the database exists with another retention policy: writing may still work.
            tracing::warn!(sink = %self.name, statement = %self.create_stmt, status = status.as_u16(), answer = %snippet(&text),
                "creating the database did not succeed; writing anyway");
        } else {
            tracing::info!(sink = %self.name, statement = %self.create_stmt, "database ready");
        }
        self.db_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    async fn write(&self, body: Bytes) -> Result<reqwest::Response, SendError> {
        let mut req = self
            .client
            .post(self.write_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body);
        if self.gzip {
            req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        if let Some((u, p)) = &self.auth {
            req = req.basic_auth(u, Some(p));
        }
        req.send().await.map_err(transport_error)
    }

    /// Sends one payload.
    pub async fn send(&self, body: Bytes) -> Result<(), SendError> {
        if !self.db_ready.load(Ordering::Relaxed) {
            self.create_database().await?;
        }
        let resp = self.write(body.clone()).await?;
        if resp.status().as_u16() == 404 {
            let text = resp.text().await.unwrap_or_default();
            if text.contains("database not found") {
                tracing::warn!(sink = %self.name, "database not found; creating it");
                self.create_database().await?;
                return classify(self.write(body).await?).await;
            }
            return Err(SendError::Permanent(format!(
                "HTTP 404: {}",
                snippet(&text)
            )));
        }
        classify(resp).await
    }
}

/// InfluxDB 2.x: `POST /api/v2/write?org=&bucket=&precision=ns` with `Authorization: Token`.
pub struct V2 {
    client: reqwest::Client,
    write_url: url::Url,
    auth: String,
    gzip: bool,
}

impl V2 {
    pub fn new(name: &str, c: &super::config::Influxdb2Config) -> Result<V2, Error> {
        let client =
            super::http::client(c.write.delivery.timeout, c.write.insecure_ssl).map_err(|e| Error::Client {
                sink: name.into(),
                reason: e.to_string(),
            })?;
        let token = match &c.token_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| Error::Config {
                    key: "token_file".into(),
                    reason: format!("{}: {e}", p.display()),
                })?
                .trim()
                .to_string(),
            None => std::env::var(&c.token_env).map_err(|_| Error::Config {
                key: "token_env".into(),
                reason: format!(
                    "sink {name}: no token_file given and the environment variable {} is not set",
                    c.token_env
                ),
            })?,
        };
        if token.is_empty() {
            return Err(Error::Config {
                key: "token_file".into(),
                reason: format!("sink {name}: the token is empty"),
            });
        }
        let mut write_url = endpoint(&c.url, "/api/v2/write")?;
        write_url
            .query_pairs_mut()
            .append_pair("org", &c.org)
            .append_pair("bucket", &c.bucket)
            .append_pair("precision", "ns");
        Ok(V2 {
            client,
            write_url,
            auth: format!("Token {token}"),
            gzip: c.write.gzip,
        })
    }

    /// Sends one payload.
    pub async fn send(&self, body: Bytes) -> Result<(), SendError> {
        let mut req = self
            .client
            .post(self.write_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(reqwest::header::AUTHORIZATION, &self.auth)
            .body(body);
        if self.gzip {
            req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        classify(req.send().await.map_err(transport_error)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{LabeledMetric, MetricSet};
    use std::collections::BTreeMap;

    fn lp(with_fields: bool) -> LineProtocol {
        LineProtocol {
            with_fields,
            cluster_name: "default".into(),
            disable_counter_metrics: false,
            batch_size: 10_000,
            max_body_bytes: 4 << 20,
            gzip: false,
        }
    }

    fn batch() -> Batch {
        let mut labels = BTreeMap::new();
        for (k, v) in [
            ("type", "pod_container"),
            ("nodename", "node 1"),
            ("namespace_name", "kube-system"),
            ("pod_name", "dns,1"),
            ("container_name", "dns"),
            ("container_base_image", ""),
            ("pod_id", "uid-1"),
            ("hostname", "node1"),
            ("labels", "app:dns,tier=x"),
        ] {
            labels.insert(k.to_string(), v.to_string());
        }
        let mut values = BTreeMap::new();
        values.insert("cpu/usage_rate", MetricValue::Int(12));
        values.insert("uptime", MetricValue::Int(5000));
        values.insert("network/rx_rate", MetricValue::Float(1.5));
        values.insert("memory/bad", MetricValue::Float(f64::NAN));
        let labeled = vec![LabeledMetric {
            name: "filesystem/usage".into(),
            labels: crate::batch::resource_labels("/"),
            value: MetricValue::Int(4096),
        }];
        let set = MetricSet {
            values,
            labels: std::sync::Arc::new(labels),
            labeled,
            ..Default::default()
        };
        Batch {
            timestamp: chrono::DateTime::from_timestamp(1_700_000_000, 5).unwrap(),
            sets: [(
                "namespace:kube-system/pod:dns,1/container:dns".to_string(),
                set,
            )]
            .into(),
        }
    }

    fn text(e: &Encoded) -> String {
        e.payloads
            .iter()
            .map(|p| String::from_utf8(p.body.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn heapster_schema_value_field() {
        let e = lp(false).encode(&batch());
        assert_eq!(e.skipped, 1);
        let tags = r"cluster_name=default,container_name=dns,labels=app:dns\,tier\=x,namespace_name=kube-system,nodename=node\ 1,pod_name=dns\,1,type=pod_container";
        let want = format!(
            "cpu/usage_rate,{tags} value=12i 1700000000000000005\n\
             network/rx_rate,{tags} value=1.5 1700000000000000005\n\
             uptime,{tags} value=5000i 1700000000000000005\n\
             filesystem/usage,{} value=4096i 1700000000000000005\n",
            tags.replace("pod_name=dns\\,1,", "pod_name=dns\\,1,resource_id=/,")
        );
        assert_eq!(text(&e), want);
    }

    #[test]
    fn heapster_schema_with_fields() {
        let e = lp(true).encode(&batch());
        let t = text(&e);
        assert!(t.starts_with("cpu,cluster_name=default,"), "{t}");
        assert!(t.contains(" usage_rate=12i "), "{t}");
        assert!(
            t.contains("\nuptime,") && t.contains(" value=5000i "),
            "{t}"
        );
        assert!(
            t.contains("\nfilesystem,") && t.contains(" usage=4096i "),
            "{t}"
        );
    }

    #[test]
    fn counter_metrics_can_be_left_out() {
        let mut c = lp(false);
        c.disable_counter_metrics = true;
        let t = text(&c.encode(&batch()));
        assert!(!t.contains("uptime"), "{t}");
        assert!(t.contains("cpu/usage_rate"), "{t}");
    }

    #[test]
    fn chunks_by_points_and_bytes_and_gzips() {
        let mut b = batch();
        let set = b.sets.values().next().unwrap().clone();
        for i in 0..100 {
            b.sets.insert(format!("k{i}"), set.clone());
        }
        let mut c = lp(false);
        c.batch_size = 7;
        let e = c.encode(&b);
        assert!(e.payloads.iter().all(|p| p.points <= 7));
        assert_eq!(
            e.payloads.iter().map(|p| p.points as u64).sum::<u64>(),
            101 * 4
        );
        c.batch_size = 10_000;
        c.max_body_bytes = 2048;
        let e = c.encode(&b);
        assert!(e.payloads.iter().all(|p| p.body.len() <= 2048));
        assert_eq!(
            e.payloads.iter().map(|p| p.points as u64).sum::<u64>(),
            101 * 4
        );
        c.gzip = true;
        let e = c.encode(&b);
        let mut d = flate2::read::GzDecoder::new(&e.payloads[0].body[..]);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut d, &mut s).unwrap();
        assert!(s.starts_with("cpu/usage_rate,"));
    }

    #[test]
    fn create_statement_quotes_names() {
        assert_eq!(quote_ident(r#"k"8s"#), r#""k\"8s""#);
    }
}
