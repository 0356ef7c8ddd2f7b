//! The collector's `/metrics`: cAdvisor's metric names with the kubelet's labels and explicit timestamps, streamed in chunks (families in `metrics/containers.rs` and `metrics/node.rs`; the text is written with `vigil_common::exposition`).

mod containers;
mod node;

use crate::config::Config;
use crate::snapshot::{ContainerSample, Snapshot};
use axum::body::Bytes;
use vigil_common::exposition::{self, header, Kind, Timestamp};

/// Size of the chunks a streamed exposition is sent in.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Where the exposition is written: one String, or 64 KiB chunks sent to the HTTP response as
/// they fill (so a 1,000-container exposition never sits in memory whole).
pub struct Out {
    buf: String,
    tx: Option<tokio::sync::mpsc::Sender<Bytes>>,
    closed: bool,
}

impl std::ops::Deref for Out {
    type Target = String;
    fn deref(&self) -> &String {
        &self.buf
    }
}

impl std::ops::DerefMut for Out {
    fn deref_mut(&mut self) -> &mut String {
        &mut self.buf
    }
}

impl Out {
    /// Writes into one String.
    pub fn string(buf: String) -> Out {
        Out {
            buf,
            tx: None,
            closed: false,
        }
    }

    /// Sends chunks to `tx` (from a blocking thread).
    pub fn streaming(tx: tokio::sync::mpsc::Sender<Bytes>) -> Out {
        Out {
            buf: String::with_capacity(CHUNK_BYTES + 4096),
            tx: Some(tx),
            closed: false,
        }
    }

    fn line_done(&mut self) {
        if self.tx.is_some() && self.buf.len() >= CHUNK_BYTES {
            self.send();
        }
    }

    fn send(&mut self) {
        if self.closed {
            self.buf.clear();
            return;
        }
        let chunk = std::mem::replace(&mut self.buf, String::with_capacity(CHUNK_BYTES + 4096));
        if let Some(tx) = &self.tx {
            if tx.blocking_send(Bytes::from(chunk)).is_err() {
                // The client went away: render the rest into nothing.
                self.closed = true;
            }
        }
    }

    /// Sends what is left (streaming) or returns the whole text (string).
    pub fn finish(mut self) -> String {
        if self.tx.is_some() {
            if !self.buf.is_empty() {
                self.send();
            }
            String::new()
        } else {
            std::mem::take(&mut self.buf)
        }
    }
}

fn line_end(out: &mut Out, value: f64, ts: &Timestamp) {
    out.push('}');
    exposition::value_line(out, value, Some(ts));
    out.line_done();
}

/// One sample line: `name{labels,extra} value timestamp`; `labels` are the container's, already escaped.
fn line(
    out: &mut Out,
    name: &str,
    labels: &str,
    extra: &[(&str, &str)],
    value: f64,
    ts: &Timestamp,
) {
    out.push_str(name);
    out.push('{');
    out.push_str(labels);
    for (i, (k, v)) in extra.iter().enumerate() {
        exposition::label(out, labels.is_empty() && i == 0, k, v);
    }
    line_end(out, value, ts);
}

/// One sample line with extra labels given as parallel key and value slices.
fn line_kv(
    out: &mut Out,
    name: &str,
    labels: &str,
    keys: &[&str],
    vals: &[&str],
    value: f64,
    ts: &Timestamp,
) {
    out.push_str(name);
    out.push('{');
    out.push_str(labels);
    for (i, (k, v)) in keys.iter().zip(vals).enumerate() {
        exposition::label(out, labels.is_empty() && i == 0, k, v);
    }
    line_end(out, value, ts);
}

/// A per-container metric family: header, then one line per container the closure gives a value for.
fn family<F>(
    out: &mut Out,
    snap: &Snapshot,
    ts: &Timestamp,
    name: &str,
    kind: Kind,
    help: &str,
    mut f: F,
) where
    F: FnMut(&ContainerSample) -> Option<f64>,
{
    header(out, name, kind, help);
    for c in &snap.containers {
        if let Some(v) = f(c) {
            line(out, name, &c.label_str, &[], v, ts);
        }
    }
}

/// The sink a multi-line family's closure writes (extra label values, value) to.
type Emit<'a> = dyn FnMut(&[&str], f64) + 'a;

/// A per-container family with extra labels: the closure emits one line per label set.
#[allow(clippy::too_many_arguments)]
fn family_multi<F>(
    out: &mut Out,
    snap: &Snapshot,
    ts: &Timestamp,
    name: &str,
    kind: Kind,
    help: &str,
    keys: &[&str],
    mut f: F,
) where
    F: FnMut(&ContainerSample, &mut Emit<'_>),
{
    header(out, name, kind, help);
    for c in &snap.containers {
        let labels: &str = &c.label_str;
        let mut emit = |vals: &[&str], v: f64| line_kv(out, name, labels, keys, vals, v, ts);
        f(c, &mut emit);
    }
}

/// Renders the whole exposition into `out` (cleared first).
pub fn render(snap: &Snapshot, config: &Config, out: &mut String) {
    let mut o = Out::string(std::mem::take(out));
    o.clear();
    render_to(snap, config, &mut o);
    *out = o.finish();
}

/// Renders the whole exposition into `out` (a String or a stream of chunks).
pub fn render_to(snap: &Snapshot, config: &Config, out: &mut Out) {
    let ts_ms = snap
        .time
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let ts = Timestamp::from_millis(ts_ms);
    if snap.ready {
        containers::usage(out, snap, config, &ts);
        if config.enabled("volume_stats") {
            node::volume_stats(out, snap, &ts);
        }
        containers::tasks_and_spec(out, snap, config, &ts, ts_ms);
        node::machine(out, snap, &ts);
    }
    node::self_metrics(out, snap, ts_ms);
}

/// One sample line without labels.
fn line_nolabels(out: &mut Out, name: &str, v: f64, ts: &Timestamp) {
    exposition::sample(out, name, &[], v, Some(ts));
    out.line_done();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::fs::FsInfo;

    /// v1: `scope="container"` from memory.stat's local keys, `scope="hierarchy"` from `total_*`;
    /// container_memory_failcnt with cAdvisor's name and type.
    /// The v1 cgroupfs fixture's configuration and one pass over it.
    fn v1_fixture_pass() -> (Config, Snapshot) {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let c = Config {
            cgroup_root: base.join("cgroup-v1-cgroupfs"),
            proc_root: base.join("proc-root-absent"),
            pod_log_root: base.join("logs/pods"),
            container_log_root: Some(base.join("logs/containers")),
            node_name: Some("fixture-node".into()),
            ..Default::default()
        };
        let mut col = crate::pass::Collector::new(std::sync::Arc::new(c.clone())).unwrap();
        let snap = col.pass();
        (c, snap)
    }

    #[test]
    fn v1_page_fault_scopes_and_failcnt() {
        let (c, snap) = v1_fixture_pass();
        let mut out = String::new();
        render(&snap, &c, &mut out);
        let id = "b".repeat(64);
        let value = |name: &str, extra: &str| -> String {
            out.lines()
                .find(|l| l.starts_with(name) && l.contains(&id) && l.contains(extra))
                .unwrap_or_else(|| panic!("{name} {extra} missing"))
                .rsplit(' ')
                .nth(1)
                .unwrap()
                .to_string()
        };
        let f = "container_memory_failures_total{";
        // memory.stat: pgfault 5, pgmajfault 6, total_pgfault 2000, total_pgmajfault 9.
        assert_eq!(
            value(f, "failure_type=\"pgfault\",scope=\"container\""),
            "5"
        );
        assert_eq!(
            value(f, "failure_type=\"pgmajfault\",scope=\"container\""),
            "6"
        );
        assert_eq!(
            value(f, "failure_type=\"pgfault\",scope=\"hierarchy\""),
            "2000"
        );
        assert_eq!(
            value(f, "failure_type=\"pgmajfault\",scope=\"hierarchy\""),
            "9"
        );
        // memory.failcnt 2.
        assert!(out.contains("# TYPE container_memory_failcnt counter\n"));
        assert_eq!(value("container_memory_failcnt{", ""), "2");
    }

    /// A container's writable layer is on the image filesystem: usage from the layer, limit and
    /// inodes from that filesystem, under its device; the root container has the root's.
    #[test]
    fn writable_layer_figures_are_on_the_image_filesystem() {
        let (c, mut snap) = v1_fixture_pass();
        let fs = |device: &str, capacity, inodes, inodes_free| FsInfo {
            path: "/x".into(),
            device: Some(device.into()),
            capacity,
            available: 0,
            used: 0,
            inodes,
            inodes_free,
        };
        snap.root_fs = Some(fs("/dev/root", 1000, 50, 20));
        snap.image_fs = Some(fs("/dev/images", 9000, 700, 300));
        let id = "b".repeat(64);
        let ctr = snap
            .containers
            .iter_mut()
            .find(|s| s.name.ends_with(&id))
            .unwrap();
        ctr.rootfs = Some(crate::proc::fs::Usage {
            bytes: 4096,
            inodes: 3,
        });
        let mut out = String::new();
        render(&snap, &c, &mut out);
        let value = |name: &str, which: &str| -> Option<String> {
            out.lines()
                .find(|l| {
                    l.starts_with(&format!("{name}{{"))
                        && (if which == "/" {
                            l.contains("id=\"/\"")
                        } else {
                            l.contains(which)
                        })
                })
                .map(|l| {
                    let (labels, rest) = l.split_once('}').unwrap();
                    let dev = labels
                        .rsplit("device=\"")
                        .next()
                        .unwrap()
                        .trim_end_matches('"');
                    format!("{dev} {}", rest.split_whitespace().next().unwrap())
                })
        };
        for (name, root, layer) in [
            (
                "container_fs_usage_bytes",
                "/dev/root 0",
                "/dev/images 4096",
            ),
            (
                "container_fs_limit_bytes",
                "/dev/root 1000",
                "/dev/images 9000",
            ),
            (
                "container_fs_inodes_total",
                "/dev/root 50",
                "/dev/images 700",
            ),
            (
                "container_fs_inodes_free",
                "/dev/root 20",
                "/dev/images 300",
            ),
        ] {
            assert_eq!(value(name, "/").as_deref(), Some(root), "{name} on /");
            assert_eq!(
                value(name, &id).as_deref(),
                Some(layer),
                "{name} on the layer"
            );
        }
    }

    #[test]
    fn extra_labels_are_escaped_and_joined() {
        let mut s = Out::string(String::new());
        let ts = Timestamp::from_millis(7);
        line(&mut s, "m", "id=\"/\"", &[("interface", "a\"b")], 1.0, &ts);
        assert_eq!(s.as_str(), "m{id=\"/\",interface=\"a\\\"b\"} 1 7\n");
        s.clear();
        line(&mut s, "m", "", &[("a", "1"), ("b", "2")], 1.0, &ts);
        assert_eq!(s.as_str(), "m{a=\"1\",b=\"2\"} 1 7\n");
    }
}
