//! Host comparison (`outlier:` rules): peer-group members against the group's median and MAD.
//!
//! # How it works
//!
//! The rule's expression is queried over `window` (a range query at the evaluation step). Series
//! that agree on every label except those in `by` form one peer group (`by: [nodename]` makes the
//! nodes of one metric a group; `sum by (deployment, pod) (...)` with `by: [pod]` makes the pods of
//! each deployment one). At each instant of the window with at least `min_members` values, the
//! group's centre is the median and its spread `1.4826 × MAD` (when more than half the members
//! are equal, MAD is 0 and the mean absolute deviation × 1.2533 is used; the spread is never under
//! 1 % of |median|, so members that differ by less than `deviations` % are never outliers). A
//! point is outlying when it is more than `deviations` spreads from the median on an allowed
//! side; a member is an outlier when at least `share` of its points in the window are outlying
//! (Sysdig's and Datadog's MAD algorithm). Its score is the median of its signed deviations in
//! spreads.
//!
//! A change of the whole group moves the median with it: nothing fires. One member drifting
//! away leaves median and MAD where the others are: only that member fires.
//!
//! **Small groups**: with 2 members the median sits halfway between them and each is exactly
//! 1 MAD away, so neither can be told to be the odd one out. Groups with fewer than
//! `min_members` (at least 3, the default) report no outlier and say why in
//! [`GroupVerdict::skipped`]; compare a pair with a `baseline:` rule on their difference instead.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{median, prom_duration, AnomalyError, Direction};
use crate::query::RangeSeries;

/// `outlier:` in a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierConfig {
    /// The PromQL expression returning one series per member.
    pub expr: String,
    /// Labels that name a member; series equal on all other labels are one peer group.
    pub by: Vec<String>,
    /// How far back the members are compared.
    #[serde(default = "default_window", with = "prom_duration")]
    pub window: Duration,
    /// How many group spreads (1.4826 × MAD) from the group's median a point must be.
    #[serde(default = "default_deviations")]
    pub deviations: f64,
    /// Which side fires: `above`, `below` or `both`.
    #[serde(default)]
    pub direction: Direction,
    /// Fraction of a member's points in the window that must be outlying (0 < share ≤ 1).
    #[serde(default = "default_share")]
    pub share: f64,
    /// Smallest group compared (at least 3).
    #[serde(default = "default_min_members")]
    pub min_members: usize,
    /// How long a member must stay an outlier before the alert fires (Prometheus `for`).
    #[serde(rename = "for", default, with = "prom_duration")]
    pub hold: Duration,
    /// How long the alert keeps firing after the member rejoined its peers.
    #[serde(default, with = "prom_duration")]
    pub keep_firing_for: Duration,
}

fn default_window() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_deviations() -> f64 {
    3.0
}
fn default_share() -> f64 {
    0.5
}
fn default_min_members() -> usize {
    3
}

impl OutlierConfig {
    /// The configuration with every default, comparing members named by `by`.
    pub fn new(expr: &str, by: &[&str]) -> Self {
        OutlierConfig {
            expr: expr.to_string(),
            by: by.iter().map(|s| s.to_string()).collect(),
            window: default_window(),
            deviations: default_deviations(),
            direction: Direction::default(),
            share: default_share(),
            min_members: default_min_members(),
            hold: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
        }
    }

    /// Checks the values serde cannot: each error names the key.
    pub fn validate(&self) -> Result<(), AnomalyError> {
        let bad = |key, message: String| {
            Err(AnomalyError::Config {
                rule: "outlier",
                key,
                message,
            })
        };
        if self.expr.trim().is_empty() {
            return bad("expr", "must be set".into());
        }
        if self.by.is_empty() || self.by.iter().any(|l| l.is_empty()) {
            return bad("by", "must name at least one label".into());
        }
        if self.window.is_zero() {
            return bad("window", "must be longer than 0s".into());
        }
        if !(self.deviations.is_finite() && self.deviations > 0.0) {
            return bad(
                "deviations",
                format!("must be a number > 0, got {}", self.deviations),
            );
        }
        if !(self.share > 0.0 && self.share <= 1.0) {
            return bad("share", format!("must be in (0, 1], got {}", self.share));
        }
        if self.min_members < 3 {
            return bad(
                "min_members",
                format!(
                    "must be at least 3, got {}: with 2 members neither can be told to be the odd one",
                    self.min_members
                ),
            );
        }
        Ok(())
    }
}

/// The comparison of one peer group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupVerdict {
    /// The labels the members share (the series' labels without `by`).
    pub group: BTreeMap<String, String>,
    /// Every member, outlier or not.
    pub members: Vec<MemberVerdict>,
    /// Why the group was not compared (too few members), if it was not.
    pub skipped: Option<String>,
}

/// One member's comparison with its peers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberVerdict {
    /// The member's series labels.
    pub labels: BTreeMap<String, String>,
    /// Median of its signed deviations from the group's median, in group spreads.
    pub score: f64,
    /// Fraction of its compared points that were outlying.
    pub outlying_share: f64,
    /// Whether it is an outlier (`outlying_share >= share` and compared at all).
    pub anomalous: bool,
}

/// Compares the members of each peer group in `series` (a range query of `expr` over `window`).
pub fn evaluate(config: &OutlierConfig, series: &[RangeSeries]) -> Vec<GroupVerdict> {
    let mut groups: BTreeMap<BTreeMap<String, String>, Vec<&RangeSeries>> = BTreeMap::new();
    for s in series {
        let mut key = s.labels.clone();
        key.retain(|k, _| !config.by.contains(k));
        groups.entry(key).or_default().push(s);
    }
    groups
        .into_iter()
        .map(|(group, members)| compare(config, group, &members))
        .collect()
}

fn compare(
    config: &OutlierConfig,
    group: BTreeMap<String, String>,
    members: &[&RangeSeries],
) -> GroupVerdict {
    let verdicts = |f: &dyn Fn(usize) -> (f64, f64, bool)| {
        members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let (score, outlying_share, anomalous) = f(i);
                MemberVerdict {
                    labels: m.labels.clone(),
                    score,
                    outlying_share,
                    anomalous,
                }
            })
            .collect()
    };
    if members.len() < config.min_members {
        return GroupVerdict {
            group,
            members: verdicts(&|_| (0.0, 0.0, false)),
            skipped: Some(format!(
                "{} member(s), fewer than min_members {}",
                members.len(),
                config.min_members
            )),
        };
    }
    // Values of each instant, by member.
    let mut instants: BTreeMap<i64, Vec<(usize, f64)>> = BTreeMap::new();
    for (i, m) in members.iter().enumerate() {
        for &(t, v) in &m.points {
            if v.is_finite() {
                instants.entry(t).or_default().push((i, v));
            }
        }
    }
    let mut deviations: Vec<Vec<f64>> = vec![Vec::new(); members.len()];
    let mut values = Vec::with_capacity(members.len());
    for points in instants.values() {
        if points.len() < config.min_members {
            continue;
        }
        values.clear();
        values.extend(points.iter().map(|&(_, v)| v));
        let centre = median(&mut values);
        let spread = spread(&mut values, centre);
        for &(i, v) in points {
            deviations[i].push((v - centre) / spread);
        }
    }
    let members = verdicts(&|i| {
        let d = &deviations[i];
        if d.is_empty() {
            return (0.0, 0.0, false);
        }
        let outlying = d
            .iter()
            .filter(|&&z| z.abs() > config.deviations && config.direction.allows(z))
            .count();
        let share = outlying as f64 / d.len() as f64;
        let score = median(&mut d.clone());
        (score, share, share >= config.share)
    });
    GroupVerdict {
        group,
        members,
        skipped: None,
    }
}

/// Robust spread of `values` around `centre`: 1.4826 × MAD, or 1.2533 × the mean absolute
/// deviation when MAD is 0, at least 1 % of |centre|.
fn spread(values: &mut [f64], centre: f64) -> f64 {
    for v in values.iter_mut() {
        *v = (*v - centre).abs();
    }
    let mean_abs = values.iter().sum::<f64>() / values.len() as f64;
    let mad = median(values);
    let s = if mad > 0.0 {
        1.4826 * mad
    } else {
        1.2533 * mean_abs
    };
    s.max(0.01 * centre.abs()).max(1e-12)
}
