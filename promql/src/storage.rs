//! The storage interface the engine reads through: select series by label matchers over a time
//! range, and list label names and values. Any store (the aggregator's window, a test's memory)
//! implements it; the engine knows nothing else about where samples live.

use std::collections::BTreeMap;
use std::sync::Arc;

/// A series' labels, the metric name included as `__name__`.
pub type Labels = BTreeMap<String, String>;

/// The bit pattern of Prometheus's staleness marker (`value.StaleNaN`): a sample with these bits
/// ends a series for lookback purposes.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Whether `v` is a staleness marker (not any NaN: only Prometheus's exact bit pattern).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored, as Prometheus)
    Regex,
    /// `!~` (fully anchored)
    NotRegex,
}

/// One label matcher. A missing label matches as the empty string, as in Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// The anchored regex for `Regex`/`NotRegex`.
    regex: Option<regex::Regex>,
}

impl Matcher {
    /// A matcher; regexes are anchored (`^(?s:…)$`) as Prometheus anchors them.
    pub fn new(op: MatchOp, name: &str, value: &str) -> Result<Matcher, regex::Error> {
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(regex::Regex::new(&format!("^(?s:{value})$"))?)
            }
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Whether a label value (`""` when the label is missing) satisfies the matcher.
    pub fn matches(&self, v: &str) -> bool {
        match self.op {
            MatchOp::Equal => v == self.value,
            MatchOp::NotEqual => v != self.value,
            MatchOp::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    /// Whether the matcher matches the empty string (it then also selects series without the label).
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }
}

/// One series as the storage returns it: labels and samples oldest first, timestamps in ms.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// One series as [`Storage::select`] returns it: labels shared (a store may hand the same set to
/// several series when [`Hints::labels`] projects them), samples oldest first, timestamps in ms.
#[derive(Debug, Clone, PartialEq)]
pub struct Selected {
    pub labels: Arc<Labels>,
    pub samples: Vec<(i64, f64)>,
}

/// What the engine will read of a selection (as Prometheus's `SelectHints`): a store may use
/// them to do less work, and must return what a plain selection would where they do not apply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hints {
    /// Only each series' newest sample at or before `end_ms` is read (an instant selector
    /// evaluated at one time): a store may return just that sample.
    pub last_only: bool,
    /// Only these labels are read (an aggregation `by (…)` right over the selector): a store may
    /// return each series with just these of its labels. `None`: every label.
    pub labels: Option<Vec<String>>,
}

/// Errors a storage may return; the engine passes them on as execution errors.
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StorageError(pub String);

/// What the engine needs from a store.
pub trait Storage: Send + Sync {
    /// Every series whose labels satisfy all `matchers` (a conjunction), with its samples in
    /// `[start_ms, end_ms]` (both inclusive). Series with no sample in the range may be left out.
    /// Stores answer through a label index, never by scanning every series. `hints` say what
    /// the engine will read (see [`Hints`]).
    fn select(
        &self,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
        hints: &Hints,
    ) -> Result<Vec<Selected>, StorageError>;

    /// Label names of the series matched by any of `selectors` (each a conjunction of matchers;
    /// none means every series) with samples in the range, sorted and unique.
    fn label_names(
        &self,
        selectors: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError>;

    /// Values of label `name` over the series matched by any of `selectors` (none means every
    /// series) with samples in the range, sorted and unique.
    fn label_values(
        &self,
        name: &str,
        selectors: &[Vec<Matcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError>;
}
