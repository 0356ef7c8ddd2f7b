//! The collector's own metrics (collection passes, errors, problem detector), encoded with prometheus-client.

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Label pairs of one series, in the order they are written.
pub type Labels = Vec<(String, String)>;

/// A family of counters by label set.
pub type CounterFamily = Family<Labels, Counter>;

/// Appends the registry's metrics to `out` in the Prometheus text format (0.0.4), the format of
/// the rest of `/metrics`. prometheus-client writes OpenMetrics, where a counter family is named
/// without its `_total` suffix (`# TYPE x counter` then `x_total 1`); the text format names the
/// family like its samples, so the HELP and TYPE lines of counters get the suffix back.
pub fn encode(registry: &Registry, out: &mut String) {
    let mut om = String::new();
    encode_registry(&mut om, registry).expect("writing to a String cannot fail");
    let lines: Vec<&str> = om.lines().collect();
    let counter_families: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    for line in lines {
        let meta = line
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match meta {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(kind);
                out.push_str(name);
                if counter_families.contains(&name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
}

/// Registers a counter with a value known now (e.g. from a snapshot); `name` without `_total`.
pub fn const_counter(registry: &mut Registry, name: &str, help: &str, value: u64) {
    registry.register(name, help, ConstCounter::new(value));
}

/// Registers a gauge with a value known now.
pub fn const_gauge(registry: &mut Registry, name: &str, help: &str, value: f64) {
    registry.register(name, help, ConstGauge::<f64>::new(value));
}

/// Registers a counter family and returns it to be filled; `name` without `_total`.
pub fn counter_family(registry: &mut Registry, name: &str, help: &str) -> CounterFamily {
    let f = CounterFamily::default();
    registry.register(name, help, f.clone());
    f
}

/// Sets one series of a counter family to `value`.
pub fn set(family: &CounterFamily, labels: &[(&str, &str)], value: u64) {
    let labels: Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    family.get_or_create(&labels).inc_by(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_in_the_text_format() {
        let mut r = Registry::default();
        const_counter(&mut r, "vigil_x_passes", "Passes", 3);
        const_gauge(&mut r, "vigil_x_seconds", "Duration", 0.25);
        let f = counter_family(&mut r, "vigil_x_errors", "Errors by kind");
        set(&f, &[("kind", "a\"b")], 2);
        let mut out = String::new();
        encode(&r, &mut out);
        assert_eq!(
            out,
            "# HELP vigil_x_passes_total Passes.\n# TYPE vigil_x_passes_total counter\nvigil_x_passes_total 3\n\
             # HELP vigil_x_seconds Duration.\n# TYPE vigil_x_seconds gauge\nvigil_x_seconds 0.25\n\
             # HELP vigil_x_errors_total Errors by kind.\n# TYPE vigil_x_errors_total counter\nvigil_x_errors_total{kind=\"a\\\"b\"} 2\n"
        );
    }
}
