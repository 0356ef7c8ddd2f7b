//! Rates from cumulative counters (heapster metrics/processors/rate_calculator.go): a rate needs
//! an earlier sample of the same container start, a later scrape time and a counter that did not
//! go backwards; container restarts are counted into `restart_count`.

use rustc_hash::FxHashMap;

use super::names::*;
use crate::batch::{resource_labels, set_type, Batch, LabeledMetric, MetricValue, SetLabels};

struct Prev {
    create_ns: Option<i64>,
    scrape_ns: i64,
    values: [Option<i64>; RATES.len()],
    labeled: Vec<(usize, String, i64)>,
    restarts: i64,
    seen_ms: i64,
    /// The set's labels of the previous round: an unchanged set gets this allocation back, so
    /// the newest batch, the one before it (sinks, API) and the store share one map per entity.
    labels: SetLabels,
}

/// Counters of the rate calculator.
#[derive(Debug, Default, Clone, Copy)]
pub struct RateStats {
    pub computed: u64,
    pub counter_resets: u64,
    pub restarts: u64,
    pub not_newer: u64,
}

/// The previous sample of every set.
#[derive(Default)]
pub struct Rates {
    prev: FxHashMap<String, Prev>,
    pub stats: RateStats,
}

fn ns(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn as_int(v: Option<&MetricValue>) -> Option<i64> {
    match v? {
        MetricValue::Int(i) => Some(*i),
        MetricValue::Float(f) => Some(*f as i64),
    }
}

impl Rates {
    /// Adds the rates to `batch` and remembers its counters. State of sets not seen for
    /// `forget_after_ms` is dropped.
    pub fn process(&mut self, batch: &mut Batch, forget_after_ms: i64) {
        self.add(batch);
        self.forget(batch.timestamp.timestamp_millis(), forget_after_ms);
    }

    /// Adds the rates to `batch` (a round or one node's part of it) and remembers its counters.
    pub fn add(&mut self, batch: &mut Batch) {
        let batch_ms = batch.timestamp.timestamp_millis();
        let batch_ns = ns(batch.timestamp);
        for (key, set) in batch.sets.iter_mut() {
            let create_ns = set.create_time.map(ns);
            let scrape_ns = set.scrape_time.map(ns).unwrap_or(batch_ns);
            // One pass over the set's values (names compare by length first, rarely by bytes)
            // instead of a map lookup per rate.
            let mut values = [None; RATES.len()];
            for (name, v) in &set.values {
                if let Some(i) = RATES.iter().position(|(n, _, _)| n == name) {
                    values[i] = as_int(Some(v));
                }
            }
            let mut labeled = Vec::new();
            for m in &set.labeled {
                if let Some(i) = LABELED_RATES.iter().position(|(n, _)| *n == m.name) {
                    let rid = m.labels.get(LABEL_RESOURCE_ID).cloned().unwrap_or_default();
                    labeled.push((i, rid, as_int(Some(&m.value)).unwrap_or(0)));
                }
            }
            let is_container = matches!(
                set.labels.get(LABEL_TYPE).map(|s| s.as_str()),
                Some(set_type::POD_CONTAINER | set_type::SYS_CONTAINER)
            );
            let restarts = match self.prev.get_mut(key.as_str()) {
                Some(prev) => {
                    if std::sync::Arc::ptr_eq(&prev.labels, &set.labels)
                        || *prev.labels == *set.labels
                    {
                        set.labels = prev.labels.clone();
                    } else {
                        prev.labels = set.labels.clone();
                    }
                    let mut keep_prev = false;
                    if prev.create_ns != create_ns {
                        if is_container && prev.create_ns.is_some() {
                            prev.restarts += 1;
                            self.stats.restarts += 1;
                        }
                    } else if scrape_ns <= prev.scrape_ns {
                        // A repeated (cached) sample or a clock step back: it must not replace
                        // the newer `prev`, or the next rate would use a too-long interval.
                        self.stats.not_newer += 1;
                        keep_prev = true;
                    } else {
                        let dt = (scrape_ns - prev.scrape_ns) as f64;
                        set.rate_window_ms = Some((scrape_ns - prev.scrape_ns) / 1_000_000);
                        for (i, (_, rate_name, millicores)) in RATES.iter().enumerate() {
                            let (Some(old), Some(new)) = (prev.values[i], values[i]) else {
                                continue;
                            };
                            if new < old {
                                self.stats.counter_resets += 1;
                                continue;
                            }
                            let per_ns = (new - old) as f64 / dt;
                            let v = if *millicores {
                                MetricValue::Int((per_ns * 1000.0) as i64)
                            } else {
                                MetricValue::Float(per_ns * 1e9)
                            };
                            set.values.insert(rate_name, v);
                            self.stats.computed += 1;
                        }
                        for (i, rid, new) in &labeled {
                            let Some((_, _, old)) =
                                prev.labeled.iter().find(|(j, r, _)| j == i && r == rid)
                            else {
                                continue;
                            };
                            if new < old {
                                self.stats.counter_resets += 1;
                                continue;
                            }
                            set.labeled.push(LabeledMetric {
                                name: LABELED_RATES[*i].1,
                                labels: resource_labels(rid),
                                value: MetricValue::Float((new - old) as f64 / dt * 1e9),
                            });
                            self.stats.computed += 1;
                        }
                    }
                    prev.seen_ms = batch_ms;
                    if !keep_prev {
                        prev.create_ns = create_ns;
                        prev.scrape_ns = scrape_ns;
                        prev.values = values;
                        prev.labeled = labeled;
                    }
                    prev.restarts
                }
                None => {
                    self.prev.insert(
                        key.clone(),
                        Prev {
                            create_ns,
                            scrape_ns,
                            values,
                            labeled,
                            restarts: 0,
                            seen_ms: batch_ms,
                            labels: set.labels.clone(),
                        },
                    );
                    0
                }
            };
            // Without the Kubernetes API, the restarts this aggregator saw (a changed start
            // time); with it, the enrichment already put the kubelet's restartCount here.
            if is_container {
                set.values
                    .entry(RESTART_COUNT)
                    .or_insert(MetricValue::Int(restarts));
            }
        }
    }

    /// Drops the state of sets not seen since `now_ms - forget_after_ms`.
    pub fn forget(&mut self, now_ms: i64, forget_after_ms: i64) {
        self.prev
            .retain(|_, p| p.seen_ms >= now_ms - forget_after_ms);
    }

    pub fn tracked(&self) -> usize {
        self.prev.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::MetricSet;
    use chrono::{DateTime, Duration, Utc};
    use std::collections::BTreeMap;

    fn batch(t: DateTime<Utc>, start: DateTime<Utc>, cpu: i64, rx: i64) -> Batch {
        let mut set = MetricSet {
            create_time: Some(start),
            scrape_time: Some(t),
            ..Default::default()
        };
        std::sync::Arc::make_mut(&mut set.labels).insert("type".into(), "pod_container".into());
        set.values.insert("cpu/usage", MetricValue::Int(cpu));
        set.values.insert("network/rx", MetricValue::Int(rx));
        set.labeled.push(LabeledMetric {
            name: "disk/io_read_bytes",
            labels: resource_labels("sda"),
            value: MetricValue::Int(rx * 2),
        });
        Batch {
            timestamp: t,
            sets: BTreeMap::from([("namespace:a/pod:b/container:c".to_string(), set)]),
        }
    }

    #[test]
    fn rates_follow_heapster_and_never_go_negative() {
        let t0: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
        let start = t0 - Duration::hours(1);
        let mut r = Rates::default();
        let mut b = batch(t0, start, 1_000_000_000, 1000);
        r.process(&mut b, 600_000);
        let s = &b.sets["namespace:a/pod:b/container:c"];
        assert!(
            !s.values.contains_key("cpu/usage_rate"),
            "no rate on the first batch"
        );
        assert_eq!(s.values["restart_count"], MetricValue::Int(0));

        // 15 s later, 3 core-seconds more: 200 millicores; 1500 bytes more: 100 B/s.
        let t1 = t0 + Duration::seconds(15);
        let mut b = batch(t1, start, 4_000_000_000, 2500);
        r.process(&mut b, 600_000);
        let s = &b.sets["namespace:a/pod:b/container:c"];
        assert_eq!(s.values["cpu/usage_rate"], MetricValue::Int(200));
        assert_eq!(s.values["network/rx_rate"], MetricValue::Float(100.0));
        let disk = s
            .labeled
            .iter()
            .find(|m| m.name == "disk/io_read_bytes_rate")
            .unwrap();
        assert_eq!(disk.value, MetricValue::Float(200.0));
        assert_eq!(disk.labels["resource_id"], "sda");

        // The counter goes backwards with the same start time: no rate at all.
        let t2 = t1 + Duration::seconds(15);
        let mut b = batch(t2, start, 10, 3000);
        r.process(&mut b, 600_000);
        let s = &b.sets["namespace:a/pod:b/container:c"];
        assert!(!s.values.contains_key("cpu/usage_rate"));
        assert_eq!(
            s.values["network/rx_rate"],
            MetricValue::Float(500.0 / 15.0)
        );
        assert_eq!(r.stats.counter_resets, 1);

        // The container restarts: no rate, restart counted.
        let t3 = t2 + Duration::seconds(15);
        let mut b = batch(t3, t3 - Duration::seconds(2), 5, 5);
        r.process(&mut b, 600_000);
        let s = &b.sets["namespace:a/pod:b/container:c"];
        assert!(
            !s.values.contains_key("cpu/usage_rate") && !s.values.contains_key("network/rx_rate")
        );
        assert_eq!(s.values["restart_count"], MetricValue::Int(1));

        // A scrape time that does not move gives no rate.
        let mut b = batch(t3, t3 - Duration::seconds(2), 50, 50);
        r.process(&mut b, 600_000);
        assert!(!b.sets["namespace:a/pod:b/container:c"]
            .values
            .contains_key("cpu/usage_rate"));
        assert_eq!(r.stats.not_newer, 1);

        // Next normal sample after the restart has a rate again.
        let t4 = t3 + Duration::seconds(10);
        let mut b = batch(t4, t3 - Duration::seconds(2), 1_000_000_050, 50);
        r.process(&mut b, 600_000);
        assert_eq!(
            b.sets["namespace:a/pod:b/container:c"].values["cpu/usage_rate"],
            MetricValue::Int(100)
        );
        assert_eq!(
            b.sets["namespace:a/pod:b/container:c"].values["restart_count"],
            MetricValue::Int(1)
        );

        // Forgotten after the horizon.
        let mut empty = Batch {
            timestamp: t4 + Duration::hours(1),
            sets: BTreeMap::new(),
        };
        r.process(&mut empty, 600_000);
        assert_eq!(r.tracked(), 0);
    }

    /// #18: an older (or repeated) sample never replaces `prev`; the next rate is computed
    /// against the newest sample seen, over the right interval.
    #[test]
    fn a_sample_not_newer_does_not_overwrite_prev() {
        let t0: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
        let start = t0 - Duration::hours(1);
        let key = "namespace:a/pod:b/container:c";
        let mut r = Rates::default();
        r.process(&mut batch(t0, start, 1_000_000_000, 1000), 600_000);
        let t1 = t0 + Duration::seconds(10);
        r.process(&mut batch(t1, start, 2_000_000_000, 2000), 600_000);
        // The node's clock steps back 8 s: an older scrape time with other counters.
        let mut b = batch(t1 - Duration::seconds(8), start, 1_500_000_000, 1500);
        r.process(&mut b, 600_000);
        assert!(!b.sets[key].values.contains_key("cpu/usage_rate"));
        assert_eq!(r.stats.not_newer, 1);
        // Next sample 10 s after t1: 1 core-second more than at t1 → 100 millicores, 100 B/s.
        // (Had the stepped-back sample replaced prev, dt would be 18 s and the delta wrong.)
        let t2 = t1 + Duration::seconds(10);
        let mut b = batch(t2, start, 3_000_000_000, 3000);
        r.process(&mut b, 600_000);
        assert_eq!(b.sets[key].values["cpu/usage_rate"], MetricValue::Int(100));
        assert_eq!(
            b.sets[key].values["network/rx_rate"],
            MetricValue::Float(100.0)
        );
    }
}
