//! Prometheus exposition text, written one way by every vigil producer: label and HELP escaping, numbers as Prometheus writes them, family headers, samples, and the self-metric handles a subsystem keeps and renders.
//!
//! Two layers. The free functions ([`escape_label`], [`Value::write`], [`header`], [`label`],
//! [`sample`]) append to a `String` and allocate nothing: the collector's streamed `/metrics`
//! (60,000 lines at 1,000 containers) and the aggregator's `/federate` use them directly, with
//! explicit timestamps. [`Writer`] writes whole families of a subsystem's self-metrics, in the
//! text format 0.0.4 or in OpenMetrics 1.0 (where a counter family is named without `_total` and
//! the text ends with `# EOF`); [`Counter`], [`Gauge`], [`GaugeF64`], [`Histogram`] and
//! [`CounterFamily`] are the handles a subsystem registers once, in one struct, and updates
//! lock-free (a family takes a short lock per update).
//!
//! Numbers: whole numbers below 10^15 are written without a fraction (`5`, not `5.0`), other
//! finite values in the shortest form that parses back to the same `f64` (`0.25`, `1e-300`), and
//! `NaN`, `+Inf`, `-Inf` as Prometheus spells them; `-0` is written `0`, as Prometheus's Go
//! client does (`writeFloat` compares with 0 first).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// `Content-Type` of the text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `Content-Type` of OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Which exposition format a [`Writer`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4: a family is named like its samples.
    Text,
    /// OpenMetrics 1.0: a counter family is named without `_total`; the text ends with `# EOF`.
    OpenMetrics,
}

/// A metric family's type, as written on its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// The word on the `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Appends a label value escaped for the exposition: `\` → `\\`, `"` → `\"`, newline → `\n`;
/// everything else (UTF-8 included) as is.
#[inline]
pub fn escape_label(v: &str, out: &mut String) {
    escape(v, out, true);
}

/// Appends a HELP text escaped for the text format: `\` → `\\`, newline → `\n`.
pub fn escape_help(v: &str, out: &mut String) {
    escape(v, out, false);
}

#[inline]
fn escape(v: &str, out: &mut String, quote: bool) {
    let special = |b: u8| b == b'\\' || b == b'\n' || (quote && b == b'"');
    if !v.bytes().any(special) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A sample value: written as Prometheus parses it.
pub trait Value: Copy {
    /// Appends the value.
    fn write(self, out: &mut String);
}

impl Value for f64 {
    #[inline]
    fn write(self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if self > 0.0 { "+Inf" } else { "-Inf" });
        } else if self.fract() == 0.0 && self.abs() < 1e15 {
            out.push_str(itoa::Buffer::new().format(self as i64));
        } else {
            out.push_str(ryu::Buffer::new().format_finite(self));
        }
    }
}

impl Value for u64 {
    #[inline]
    fn write(self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(self));
    }
}

impl Value for i64 {
    #[inline]
    fn write(self, out: &mut String) {
        out.push_str(itoa::Buffer::new().format(self));
    }
}

/// Appends a family's `# HELP` and `# TYPE` lines (text format 0.0.4: `name` as its samples are named).
pub fn header(out: &mut String, name: &str, kind: Kind, help: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escape_help(help, out);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
}

/// Appends one `k="v"` pair, preceded by a comma unless it is the first inside the braces.
#[inline]
pub fn label(out: &mut String, first: bool, k: &str, v: &str) {
    if !first {
        out.push(',');
    }
    out.push_str(k);
    out.push_str("=\"");
    escape_label(v, out);
    out.push('"');
}

/// A sample's timestamp (milliseconds since the epoch), formatted once for the many lines that
/// carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timestamp(String);

impl Timestamp {
    pub fn from_millis(ms: i64) -> Timestamp {
        Timestamp(itoa::Buffer::new().format(ms).to_string())
    }

    /// The milliseconds as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Appends the end of a sample line after its labels: ` value`, ` timestamp` when given, newline.
#[inline]
pub fn value_line<V: Value>(out: &mut String, value: V, timestamp: Option<&Timestamp>) {
    out.push(' ');
    value.write(out);
    if let Some(ts) = timestamp {
        out.push(' ');
        out.push_str(&ts.0);
    }
    out.push('\n');
}

/// Appends one sample line: `name{k="v",…} value [timestamp]` (no braces without labels).
pub fn sample<V: Value>(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    value: V,
    timestamp: Option<&Timestamp>,
) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            label(out, i == 0, k, v);
        }
        out.push('}');
    }
    value_line(out, value, timestamp);
}

/// Writes a subsystem's self-metrics family by family, in one [`Format`], without timestamps
/// (they describe the process now). Names are given as their samples are named (`…_total` for
/// counters); HELP texts as they are to appear.
pub struct Writer<'a> {
    out: &'a mut String,
    format: Format,
}

impl<'a> Writer<'a> {
    /// Appends to `out`.
    pub fn new(out: &'a mut String, format: Format) -> Writer<'a> {
        Writer { out, format }
    }

    /// The family's `# HELP` and `# TYPE` lines (OpenMetrics: a counter without `_total`).
    pub fn header(&mut self, name: &str, kind: Kind, help: &str) {
        let family = match (self.format, kind) {
            (Format::OpenMetrics, Kind::Counter) => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        header(self.out, family, kind, help);
    }

    /// One sample of the current family.
    pub fn sample<V: Value>(&mut self, name: &str, labels: &[(&str, &str)], value: V) {
        sample(self.out, name, labels, value, None);
    }

    /// A counter family with one unlabelled sample.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.header(name, Kind::Counter, help);
        self.sample(name, &[], value);
    }

    /// A gauge family with one unlabelled sample.
    pub fn gauge<V: Value>(&mut self, name: &str, help: &str, value: V) {
        self.header(name, Kind::Gauge, help);
        self.sample(name, &[], value);
    }

    /// A counter family from a [`CounterFamily`], series in label-value order.
    pub fn counters(
        &mut self,
        name: &str,
        help: &str,
        label_names: &[&str],
        family: &CounterFamily,
    ) {
        self.header(name, Kind::Counter, help);
        for (values, n) in family.series() {
            let labels: Vec<(&str, &str)> = label_names
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            self.sample(name, &labels, n);
        }
    }

    /// A histogram family: cumulative `_bucket` lines up to `le="+Inf"`, then `_sum` and `_count`.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.header(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        let mut le = String::new();
        let mut cumulative = 0;
        for (bound, n) in h.bounds.iter().zip(&h.counts) {
            cumulative += n.load(Ordering::Relaxed);
            le.clear();
            bound.write(&mut le);
            self.sample(&bucket, &[("le", &le)], cumulative);
        }
        cumulative += h.overflow.load(Ordering::Relaxed);
        self.sample(&bucket, &[("le", "+Inf")], cumulative);
        self.sample(&format!("{name}_sum"), &[], h.sum());
        self.sample(&format!("{name}_count"), &[], cumulative);
    }

    /// Appends text written elsewhere (another subsystem's families) in the same format.
    pub fn raw(&mut self, text: &str) {
        self.out.push_str(text);
    }

    /// Ends the exposition: OpenMetrics' `# EOF` line; nothing in the text format.
    pub fn finish(self) {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
    }
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.inc_by(1);
    }
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A whole-number value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A fractional value that goes up and down (seconds, ratios).
#[derive(Debug, Default)]
pub struct GaugeF64(AtomicU64);

impl GaugeF64 {
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// Observations counted into fixed buckets (upper bounds), with their sum.
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    /// Observations above the last bound.
    overflow: AtomicU64,
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

impl Histogram {
    /// Buckets with these upper bounds (sorted ascending; `+Inf` is implied).
    pub fn new(bounds: impl IntoIterator<Item = f64>) -> Histogram {
        let bounds: Vec<f64> = bounds.into_iter().collect();
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must ascend");
        Histogram {
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            bounds,
            overflow: AtomicU64::new(0),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// `count` bounds from `start`, each `factor` times the previous (as Prometheus's `ExponentialBuckets`).
    pub fn exponential(start: f64, factor: f64, count: usize) -> Histogram {
        Histogram::new(std::iter::successors(Some(start), |b| Some(b * factor)).take(count))
    }

    /// Counts one observation.
    pub fn observe(&self, v: f64) {
        match self.bounds.iter().position(|b| v <= *b) {
            Some(i) => self.counts[i].fetch_add(1, Ordering::Relaxed),
            None => self.overflow.fetch_add(1, Ordering::Relaxed),
        };
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
    }

    /// The sum of all observations.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.counts
            .iter()
            .chain([&self.overflow])
            .map(|n| n.load(Ordering::Relaxed))
            .sum()
    }
}

/// Counters by label values (the label names are given when rendered), e.g. attempts per
/// receiver and outcome.
#[derive(Debug, Default)]
pub struct CounterFamily(Mutex<BTreeMap<Vec<String>, u64>>);

impl CounterFamily {
    /// Adds `n` to the series with these label values (created at 0 first).
    pub fn inc_by(&self, values: &[&str], n: u64) {
        let key: Vec<String> = values.iter().map(|s| s.to_string()).collect();
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(key).or_insert(0) += n;
    }

    /// Adds 1.
    pub fn inc(&self, values: &[&str]) {
        self.inc_by(values, 1);
    }

    /// The series' count (0 when it was never counted).
    pub fn get(&self, values: &[&str]) -> u64 {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .find(|(k, _)| k.iter().map(String::as_str).eq(values.iter().copied()))
            .map_or(0, |(_, n)| *n)
    }

    /// Every series with its count, in label-value order.
    pub fn series(&self) -> Vec<(Vec<String>, u64)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Forgets every series.
    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests;
