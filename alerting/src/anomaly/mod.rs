//! Learned baselines (per-series online models) and host comparison (robust peer-group outliers).
//!
//! - [`baseline`]: `baseline:` rules. One [`Baseline`] per series, fed one sample per evaluation
//!   with [`Baseline::update`]; it answers a [`Verdict`] (expected value, band, anomalous, score).
//!   Its state serializes ([`Baseline::to_bytes`]) so the rule engine can persist it under
//!   `--data-dir` and a restart does not forget weeks of history.
//! - [`outlier`]: `outlier:` rules. Each member of a peer group compared with the group's median
//!   and MAD over a window ([`outlier::evaluate`]).
//!
//! Both config types deserialize from the rule file's `baseline:` / `outlier:` maps (serde,
//! unknown keys rejected, durations written as Prometheus durations such as `5m` or `1d`).

pub mod baseline;
pub mod outlier;

pub use baseline::{Baseline, BaselineConfig, Seasonality, Verdict};
pub use outlier::{GroupVerdict, MemberVerdict, OutlierConfig};

use serde::{Deserialize, Serialize};

/// Which side of the band counts as anomalous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Above,
    Below,
    #[default]
    Both,
}

impl Direction {
    /// Whether a deviation of this sign (`> 0` above the expected value) may fire.
    pub fn allows(self, deviation: f64) -> bool {
        match self {
            Direction::Above => deviation > 0.0,
            Direction::Below => deviation < 0.0,
            Direction::Both => deviation != 0.0,
        }
    }
}

/// Why a baseline or outlier configuration, sample or saved state was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnomalyError {
    #[error("{rule}: {key}: {message}")]
    Config {
        rule: &'static str,
        key: &'static str,
        message: String,
    },
    #[error("sample value {0} is not a finite number")]
    NotFinite(f64),
    #[error("sample at {t_ms} ms is not after the previous sample at {last_ms} ms")]
    OutOfOrder { t_ms: i64, last_ms: i64 },
    #[error("saved baseline state: {0}")]
    State(String),
}

/// Serde adapter for durations written as Prometheus durations (`30s`, `5m`, `1h30m`, `1d`).
pub(crate) mod prom_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        crate::rules::parse_duration(&s).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*v))
    }

    /// `90m` → `1h30m`, as Prometheus prints durations.
    pub fn format(v: Duration) -> String {
        let mut ms = v.as_millis() as u64;
        if ms == 0 {
            return "0s".into();
        }
        let mut out = String::new();
        for (unit, len) in [
            ("w", 7 * 86_400_000),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
            ("ms", 1),
        ] {
            if ms >= len {
                out.push_str(&format!("{}{unit}", ms / len));
                ms %= len;
            }
        }
        out
    }
}

/// Median of `v` (reordered in place); `v` must not be empty.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}
