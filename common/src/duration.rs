//! The one duration type: Prometheus's syntax (`model.ParseDuration`), for config keys, flags and rule files.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

/// Why a duration was rejected; the caller adds the key or flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration string")]
    Empty,
    /// Prometheus's own wording (promtool and amtool print it).
    #[error("not a valid duration string: {0:?}")]
    Invalid(String),
    #[error("duration out of range: {0:?}")]
    OutOfRange(String),
    #[error("{value} is {bound} ({limit})")]
    Bound {
        value: Duration,
        bound: &'static str,
        limit: Duration,
    },
}

/// A non-negative span of time written the way Prometheus writes it: units `y` (365d), `w`,
/// `d`, `h`, `m`, `s`, `ms`, each at most once, largest first, integers only (`1h30m`, `500ms`),
/// or `0`. At most what Go's `time.Duration` holds (about 292 years), as Prometheus.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Unit suffixes in the order the syntax requires, with their length in milliseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// Go's `time.Duration` counts nanoseconds in an i64: Prometheus rejects longer durations.
const MAX_MS: u64 = i64::MAX as u64 / 1_000_000;

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_secs(s: u64) -> Duration {
        Duration(std::time::Duration::from_secs(s))
    }

    pub const fn from_millis(ms: u64) -> Duration {
        Duration(std::time::Duration::from_millis(ms))
    }

    /// Parses Prometheus's syntax (see the type's documentation).
    pub fn parse(s: &str) -> Result<Duration, DurationError> {
        static RE: LazyLock<regex::Regex> = LazyLock::new(|| {
            regex::Regex::new(
                r"^(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?$",
            )
            .expect("duration regex")
        });
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        if s == "0" {
            return Ok(Duration::ZERO);
        }
        let caps = RE
            .captures(s)
            .ok_or_else(|| DurationError::Invalid(s.to_string()))?;
        let out_of_range = || DurationError::OutOfRange(s.to_string());
        let mut ms: u64 = 0;
        for (i, (_, unit_ms)) in UNITS.iter().enumerate() {
            if let Some(m) = caps.get(i + 1) {
                let n: u64 = m.as_str().parse().map_err(|_| out_of_range())?;
                ms = n
                    .checked_mul(*unit_ms)
                    .and_then(|v| v.checked_add(ms))
                    .ok_or_else(out_of_range)?;
            }
        }
        if ms > MAX_MS {
            return Err(out_of_range());
        }
        Ok(Duration::from_millis(ms))
    }

    /// Prometheus's HTTP API form (`parseDuration` in its web API): a number of seconds
    /// (`15`, `0.5`, may be negative) or a duration in the syntax above; in milliseconds.
    pub fn parse_api_millis(s: &str) -> Result<i64, DurationError> {
        if let Ok(secs) = s.parse::<f64>() {
            let ms = (secs * 1000.0).round();
            if !ms.is_finite() || ms.abs() > MAX_MS as f64 {
                return Err(DurationError::OutOfRange(s.to_string()));
            }
            return Ok(ms as i64);
        }
        Duration::parse(s).map(|d| d.0.as_millis() as i64)
    }

    /// The standard library's duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    pub fn as_millis(self) -> u64 {
        self.0.as_millis() as u64
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    /// `self` if it lies in `min..=max`, else an error saying which bound it broke.
    pub fn check_range(self, min: Duration, max: Duration) -> Result<Duration, DurationError> {
        if self < min {
            return Err(DurationError::Bound {
                value: self,
                bound: "below the minimum",
                limit: min,
            });
        }
        if self > max {
            return Err(DurationError::Bound {
                value: self,
                bound: "above the maximum",
                limit: max,
            });
        }
        Ok(self)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> std::time::Duration {
        d.0
    }
}

impl TryFrom<std::time::Duration> for Duration {
    type Error = DurationError;
    /// Whole milliseconds (Prometheus's resolution); longer than Go holds is out of range.
    fn try_from(d: std::time::Duration) -> Result<Duration, DurationError> {
        let ms = d.as_millis();
        if ms > MAX_MS as u128 {
            return Err(DurationError::OutOfRange(format!("{d:?}")));
        }
        Ok(Duration::from_millis(ms as u64))
    }
}

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Duration, DurationError> {
        Duration::parse(s)
    }
}

/// Prometheus's `Duration.String()`: largest units first, `0s` for zero (`1m30s`, `1d`, `500ms`).
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis() as u64;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, unit_ms) in UNITS {
            if ms >= unit_ms {
                write!(f, "{}{unit}", ms / unit_ms)?;
                ms %= unit_ms;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 500ms, 10s, 1m30s, 1h or 1d")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Duration, E> {
                Duration::parse(s).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Duration, E> {
                if n == 0 {
                    return Ok(Duration::ZERO);
                }
                Err(E::custom(format!(
                    "{n} has no unit: write a duration such as {n}s"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Duration, E> {
                if n >= 0 {
                    return self.visit_u64(n as u64);
                }
                Err(E::custom(format!("{n}: a duration cannot be negative")))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "{n} has no unit: write a duration such as 10s or 500ms"
                )))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// [`Duration::parse`] into the standard library's type: a clap `value_parser` for flags.
pub fn parse_std(s: &str) -> Result<std::time::Duration, DurationError> {
    Duration::parse(s).map(Duration::get)
}

/// `#[serde(with = "vigil_common::duration::serde_std")]` on a `std::time::Duration` field:
/// read and written as a [`Duration`].
pub mod serde_std {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        super::Duration::deserialize(d).map(super::Duration::get)
    }

    pub fn serialize<S: Serializer>(v: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        super::Duration::try_from(*v)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> std::time::Duration {
        Duration::parse(s).unwrap().get()
    }

    #[test]
    fn parses_prometheus_syntax() {
        assert_eq!(d("10s"), std::time::Duration::from_secs(10));
        assert_eq!(d("1m30s"), std::time::Duration::from_secs(90));
        assert_eq!(d("1h"), std::time::Duration::from_secs(3600));
        assert_eq!(d("500ms"), std::time::Duration::from_millis(500));
        assert_eq!(d("1d"), std::time::Duration::from_secs(86_400));
        assert_eq!(d("2w"), std::time::Duration::from_secs(14 * 86_400));
        assert_eq!(d("1y"), std::time::Duration::from_secs(365 * 86_400));
        assert_eq!(d("1h30m15s250ms"), std::time::Duration::from_millis(5_415_250));
        assert_eq!(d("0"), std::time::Duration::ZERO);
        assert_eq!(d("0s"), std::time::Duration::ZERO);
    }

    #[test]
    fn rejects_what_prometheus_rejects() {
        assert_eq!(Duration::parse(""), Err(DurationError::Empty));
        for bad in ["5", "1.5s", "-1s", "m5", "5x", "1m1h", "1s1s", " 1s", "1s ", "1S", "1ms1s"] {
            assert!(
                matches!(Duration::parse(bad), Err(DurationError::Invalid(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn out_of_range_is_an_error_not_a_panic() {
        for big in [
            "99999999999999999999999s",
            "99999999999999999999h",
            "293y",
            "18446744073709551615ms",
        ] {
            assert!(
                matches!(Duration::parse(big), Err(DurationError::OutOfRange(_))),
                "{big}"
            );
        }
        assert!(Duration::parse("292y").is_ok());
        assert!(Duration::parse_api_millis("1e300").is_err());
        assert!(Duration::parse_api_millis("NaN").is_err());
    }

    #[test]
    fn api_form_takes_seconds_or_a_duration() {
        assert_eq!(Duration::parse_api_millis("15"), Ok(15_000));
        assert_eq!(Duration::parse_api_millis("0.5"), Ok(500));
        assert_eq!(Duration::parse_api_millis("-2"), Ok(-2000));
        assert_eq!(Duration::parse_api_millis("1h30m"), Ok(5_400_000));
        assert!(Duration::parse_api_millis("1.5m").is_err());
    }

    #[test]
    fn displays_as_prometheus() {
        for (ms, s) in [
            (0, "0s"),
            (500, "500ms"),
            (90_000, "1m30s"),
            (86_400_000, "1d"),
            (8 * 86_400_000, "1w1d"),
            (3_600_001, "1h1ms"),
        ] {
            assert_eq!(Duration::from_millis(ms).to_string(), s);
        }
    }

    #[test]
    fn range_check_names_the_bound() {
        let min = Duration::from_secs(1);
        let max = Duration::from_secs(3600);
        assert!(Duration::from_secs(10).check_range(min, max).is_ok());
        let e = Duration::from_millis(500).check_range(min, max).unwrap_err();
        assert_eq!(e.to_string(), "500ms is below the minimum (1s)");
        let e = Duration::from_secs(7200).check_range(min, max).unwrap_err();
        assert_eq!(e.to_string(), "2h is above the maximum (1h)");
    }

    #[test]
    fn deserializes_strings_and_rejects_bare_numbers() {
        let v: Duration = serde_json::from_str("\"1m30s\"").unwrap();
        assert_eq!(v, Duration::from_secs(90));
        let v: Duration = serde_json::from_str("0").unwrap();
        assert_eq!(v, Duration::ZERO);
        let e = serde_json::from_str::<Duration>("10").unwrap_err().to_string();
        assert!(e.contains("has no unit"), "{e}");
        let e = serde_json::from_str::<Duration>("-1").unwrap_err().to_string();
        assert!(e.contains("negative"), "{e}");
        let e = serde_json::from_str::<Duration>("\"1x\"").unwrap_err().to_string();
        assert!(e.contains("not a valid duration"), "{e}");
        assert_eq!(serde_json::to_string(&Duration::from_secs(90)).unwrap(), "\"1m30s\"");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = Duration::parse(&s);
            let _ = Duration::parse_api_millis(&s);
        }

        #[test]
        fn display_round_trips(ms in 0u64..=MAX_MS) {
            let v = Duration::from_millis(ms);
            prop_assert_eq!(Duration::parse(&v.to_string()), Ok(v));
        }

        #[test]
        fn unit_strings_parse_or_fail_cleanly(parts in proptest::collection::vec((0u64..u64::MAX, 0usize..7), 1..5)) {
            let s: String = parts.iter().map(|(n, u)| format!("{n}{}", UNITS[*u].0)).collect();
            match Duration::parse(&s) {
                Ok(v) => prop_assert!(v.as_millis() <= MAX_MS),
                Err(DurationError::Invalid(_) | DurationError::OutOfRange(_)) => {}
                Err(e) => prop_assert!(false, "{s}: {e}"),
            }
        }
    }
}
