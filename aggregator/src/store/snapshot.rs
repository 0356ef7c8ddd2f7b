//! Store snapshots under `--data-dir`: JSON lines, one entity per line, written to a temporary
//! file and renamed so a crash never leaves a half-written snapshot behind.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::TimeZone;
use serde::{Deserialize, Serialize};

use super::{Error, Kind, Store};
use crate::batch::{Batch, LabeledMetric, MetricSet, MetricValue};

const FILE: &str = "aggregator-store.jsonl";

#[derive(Serialize, Deserialize)]
struct EntityLine {
    key: String,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    create_ms: Option<i64>,
    series: Vec<SeriesLine>,
}

#[derive(Serialize, Deserialize)]
struct SeriesLine {
    name: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    float: bool,
    /// `[timestamp_ms, value]`; non-finite floats are left out (JSON has no NaN).
    points: Vec<(i64, f64)>,
}

/// Where the snapshot of a data dir lives.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE)
}

/// Writes the whole store; returns the number of entities written.
pub fn write(store: &Store, data_dir: &Path) -> Result<usize, Error> {
    let target = path(data_dir);
    let tmp = data_dir.join(format!("{FILE}.tmp"));
    let io = |source| Error::SnapshotIo {
        path: tmp.display().to_string(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(io)?;
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut out = BufWriter::new(file);
    let mut count = 0usize;
    let mut result = Ok(());
    store.for_each_entity(|key, labels, create_ms, series| {
        if result.is_err() {
            return;
        }
        let line = EntityLine {
            key: key.to_string(),
            labels: (**labels).clone(),
            create_ms,
            series: series
                .into_iter()
                .map(|(name, labels, s)| SeriesLine {
                    name: name.to_string(),
                    labels: labels.cloned(),
                    float: s.kind() == Kind::Float,
                    points: s
                        .points()
                        .into_iter()
                        .filter(|(_, v)| v.as_f64().is_finite())
                        .map(|(t, v)| {
                            (
                                t,
                                match v {
                                    MetricValue::Int(i) => i as f64,
                                    MetricValue::Float(f) => f,
                                },
                            )
                        })
                        .collect(),
                })
                .collect(),
        };
        result = serde_json::to_writer(&mut out, &line)
            .map_err(std::io::Error::other)
            .and_then(|_| out.write_all(b"\n"));
        count += 1;
    });
    result.map_err(io)?;
    out.flush().map_err(io)?;
    out.into_inner()
        .map_err(|e| io(e.into_error()))?
        .sync_all()
        .map_err(io)?;
    std::fs::rename(&tmp, &target).map_err(|source| Error::SnapshotIo {
        path: target.display().to_string(),
        source,
    })?;
    Ok(count)
}

/// Loads a snapshot into an empty store; a missing file is an empty store. Points older than
/// the store's window (relative to `now_ms`) are skipped. Returns the number of entities.
pub fn load(store: &Store, data_dir: &Path, now_ms: i64) -> Result<usize, Error> {
    let target = path(data_dir);
    let name = target.display().to_string();
    let file = match std::fs::File::open(&target) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => return Err(Error::SnapshotIo { path: name, source }),
    };
    let cutoff = now_ms - store.retention_ms();
    // Regroup points by timestamp so they go through the normal ingest path in time order.
    let mut by_time: BTreeMap<i64, Batch> = BTreeMap::new();
    let mut entities = 0;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| Error::SnapshotIo {
            path: name.clone(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let e: EntityLine = serde_json::from_str(&line).map_err(|err| Error::SnapshotFormat {
            path: name.clone(),
            line: i + 1,
            message: err.to_string(),
        })?;
        entities += 1;
        for s in e.series {
            for (t, v) in s.points {
                if t < cutoff {
                    continue;
                }
                let batch = by_time.entry(t).or_insert_with(|| Batch {
                    timestamp: chrono::Utc
                        .timestamp_millis_opt(t)
                        .single()
                        .unwrap_or_default(),
                    sets: BTreeMap::new(),
                });
                let set = batch
                    .sets
                    .entry(e.key.clone())
                    .or_insert_with(|| MetricSet {
                        create_time: e
                            .create_ms
                            .and_then(|c| chrono::Utc.timestamp_millis_opt(c).single()),
                        labels: std::sync::Arc::new(e.labels.clone()),
                        ..MetricSet::default()
                    });
                let value = if s.float {
                    MetricValue::Float(v)
                } else {
                    MetricValue::Int(v as i64)
                };
                match &s.labels {
                    None => {
                        set.values.insert(crate::batch::intern_name(&s.name), value);
                    }
                    Some(l) => set.labeled.push(LabeledMetric {
                        name: crate::batch::intern_name(&s.name),
                        labels: std::sync::Arc::new(l.clone()),
                        value,
                    }),
                }
            }
        }
    }
    for (t, batch) in by_time {
        if let Err(e) = store.ingest_at(&batch, t, now_ms) {
            tracing::warn!(error = %e, "snapshot load");
        }
    }
    Ok(entities)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_round_trips_and_garbage_is_named() {
        let store = Store::new(600_000, 1000);
        let now = 10_000_000i64;
        for i in 0..5 {
            let t = now - 60_000 + i * 15_000;
            let mut set = MetricSet::default();
            std::sync::Arc::make_mut(&mut set.labels).insert("type".into(), "pod".into());
            set.values
                .insert("cpu/usage_rate".into(), MetricValue::Int(100 + i));
            set.values
                .insert("network/rx_rate".into(), MetricValue::Float(0.5 + i as f64));
            set.labeled.push(LabeledMetric {
                name: "filesystem/usage".into(),
                labels: crate::batch::resource_labels("/"),
                value: MetricValue::Int(7),
            });
            let batch = Batch {
                timestamp: chrono::Utc.timestamp_millis_opt(t).unwrap(),
                sets: [("namespace:a/pod:b".to_string(), set)].into(),
            };
            store.ingest(&batch).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(write(&store, dir.path()).unwrap(), 1);
        let back = Store::new(600_000, 1000);
        assert_eq!(load(&back, dir.path(), now).unwrap(), 1);
        for metric in ["cpu/usage_rate", "network/rx_rate"] {
            assert_eq!(
                store.query("namespace:a/pod:b", metric, None, 0, i64::MAX),
                back.query("namespace:a/pod:b", metric, None, 0, i64::MAX)
            );
        }
        assert_eq!(
            back.entity("namespace:a/pod:b")
                .unwrap()
                .0
                .get("type")
                .unwrap(),
            "pod"
        );
        // A missing snapshot is an empty store; a corrupt one is an error naming file and line.
        assert_eq!(
            load(&Store::new(1, 1), &dir.path().join("none"), now).unwrap(),
            0
        );
        std::fs::write(
            path(dir.path()),
            "{\"key\":\"x\",\"labels\":{},\"series\":[]}\nnot json\n",
        )
        .unwrap();
        let err = load(&Store::new(1000, 10), dir.path(), now)
            .unwrap_err()
            .to_string();
        assert!(err.contains("aggregator-store.jsonl line 2"), "{err}");
    }
}
