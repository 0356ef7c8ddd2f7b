//! The per-series model of `baseline:` rules, learned online from the series itself.
//!
//! A robust level and spread, an optional seasonal profile and a memory of routine excursions.
//!
//! # How it works
//!
//! Each sample `x` at time `t` is compared with the **expected value** of the model in use:
//!
//! - **Start**: the first 8 samples set the level to their median and the spread to their MAD.
//!   No sample is anomalous before `warmup` (default `1d`) has passed since the first sample.
//! - **Level and spread** (robust, winsorized): without seasonality the expected value is
//!   `level`, which follows the residual `r = x − expected` with a 6 h time constant, each step
//!   clipped to ±3 spreads, so a spike moves it by a few percent of a band at most; the spread
//!   follows `min(|r|, 3·spread)` with a 1 d time constant. The spread is floored at 1 % of
//!   |level| and at the series' smallest step (a quantized series such as CloudWatch's CPU never
//!   gets a band narrower than one step).
//! - **Routine excursions** (heavy tails): a run of samples beyond the core band
//!   `expected ± deviations·spread` that ends by itself is a *transient excursion*; the largest
//!   one above and below is remembered (decaying with a 14 d time constant). The band widens to
//!   `max(deviations·spread, deviations/2.5 · largest excursion)`: a series that spikes to 1.5
//!   every night gets a band above its nightly spike (1.2 × the largest recent excursion at the
//!   default 3 deviations), so only a spike bigger than what it routinely does fires.
//! - **Level shifts**: the model keeps one residual per `shift_after/12` (12 over
//!   `shift_after`, default `1h`). When their median lies outside the core band the series has
//!   moved: that sample is anomalous (a shift is reported once, when it is established), and the
//!   model re-centres on the median of the residuals beyond the band (the spread becomes at
//!   least their MAD). The new normal then stops firing; the excursion in progress is forgotten
//!   instead of widening the band.
//! - **Seasonality**: a profile of hourly averages, per hour of day (`daily`, 24 values) or of
//!   week (`weekly`, 168 values, Monday 00:00 UTC first), plus a drift that follows the residual
//!   like the level does: expected = profile(hour) + drift. An hour's average is filled during
//!   the first period and then averages over about 3 periods (winsorized at the profile's own
//!   error scale); it is used once 2 periods have been seen. `auto` runs the three candidates
//!   (none, daily, weekly) side by side, tracks their mean absolute one-step-ahead errors over a
//!   week, and uses the profile whose error is ≥ 20 % lower than the simpler model's (daily after
//!   3 days, weekly after 3 weeks of data, as Datadog requires 3 seasons); it drops back when
//!   the advantage falls under 10 %. Limitation: a pattern the un-seasoned model explains by two
//!   level shifts a week (busy weekdays, idle weekends) is not recognized as weekly by `auto`
//!   (it fires at the two transitions); say `weekly` for such series.
//! - **Counters** (`counter: true`): the model works on the per-second increase; a decrease is a
//!   counter reset (the increase is then the new value, as Prometheus's `rate` counts it).
//! - **Verdict**: `score` is the signed deviation in band units (`±deviations` at the band's
//!   edges); `anomalous` when the sample is outside the band on a side allowed by `direction`,
//!   or a level shift in an allowed direction was just established.
//!
//! The rule's `for` and `keep_firing_for` (defaults `0s` and `1h`) are applied by the rule
//! engine's state machine on `anomalous`, as Prometheus applies them to a threshold rule; the
//! `1h` default makes the alerts of one incident (a burst of spikes, a shift) one alert.
//!
//! # Memory and cost
//!
//! State per series ([`Baseline::bytes`]): 512 bytes plus 4 bytes per profile value — `none`
//! 512 B, `daily` 608 B, `weekly` 1,184 B, `auto` 1,280 B. An update is a few dozen
//! floating-point operations and a median of at most 16 values (µs figures in BENCHMARKS.md).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{median, prom_duration, AnomalyError, Direction};

/// `baseline:` in a rule: `{alert: Anomaly, baseline: {expr: value}}` runs with these defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineConfig {
    /// The PromQL expression; one model per series it returns.
    pub expr: String,
    /// Seasonal profile: `none`, `daily`, `weekly` or `auto` (detected from the data).
    #[serde(default)]
    pub seasonality: Seasonality,
    /// Band half-width in robust standard deviations (Datadog's `bounds`).
    #[serde(default = "default_deviations")]
    pub deviations: f64,
    /// Which side fires: `above`, `below` or `both`.
    #[serde(default)]
    pub direction: Direction,
    /// How long a series must stay anomalous before the alert fires (Prometheus `for`).
    #[serde(rename = "for", default, with = "prom_duration")]
    pub hold: Duration,
    /// How long the alert keeps firing after the series is back inside its band.
    #[serde(default = "default_keep_firing_for", with = "prom_duration")]
    pub keep_firing_for: Duration,
    /// No alert before the model has seen this much of the series.
    #[serde(default = "default_warmup", with = "prom_duration")]
    pub warmup: Duration,
    /// A move outside the band whose median lasts this long is a level shift: reported once,
    /// then learned as the new normal.
    #[serde(default = "default_shift_after", with = "prom_duration")]
    pub shift_after: Duration,
    /// The series is a counter: model its per-second increase, treating decreases as resets.
    #[serde(default)]
    pub counter: bool,
}

fn default_deviations() -> f64 {
    3.0
}
fn default_keep_firing_for() -> Duration {
    Duration::from_secs(3600)
}
fn default_warmup() -> Duration {
    Duration::from_secs(86_400)
}
fn default_shift_after() -> Duration {
    Duration::from_secs(3600)
}

impl BaselineConfig {
    /// The configuration a rule gets when it gives nothing but `expr`.
    pub fn new(expr: &str) -> Self {
        BaselineConfig {
            expr: expr.to_string(),
            seasonality: Seasonality::default(),
            deviations: default_deviations(),
            direction: Direction::default(),
            hold: Duration::ZERO,
            keep_firing_for: default_keep_firing_for(),
            warmup: default_warmup(),
            shift_after: default_shift_after(),
            counter: false,
        }
    }

    /// Checks the values serde cannot: each error names the key.
    pub fn validate(&self) -> Result<(), AnomalyError> {
        let bad = |key, message: &str| {
            Err(AnomalyError::Config {
                rule: "baseline",
                key,
                message: message.to_string(),
            })
        };
        if self.expr.trim().is_empty() {
            return bad("expr", "must be set");
        }
        if !(self.deviations.is_finite() && self.deviations > 0.0) {
            return bad(
                "deviations",
                &format!("must be a number > 0, got {}", self.deviations),
            );
        }
        if self.shift_after < Duration::from_secs(1) {
            return bad("shift_after", "must be at least 1s");
        }
        Ok(())
    }
}

/// The seasonal profile a baseline learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seasonality {
    None,
    Daily,
    Weekly,
    #[default]
    Auto,
}

/// What the model says about one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Verdict {
    /// The expected value (level + seasonal offset); NaN before the model has started.
    pub expected: f64,
    /// Lower edge of the band (exposed as `…_baseline_lower`).
    pub lower: f64,
    /// Upper edge of the band (exposed as `…_baseline_upper`).
    pub upper: f64,
    /// Outside the band on an allowed side, or a level shift was just established.
    pub anomalous: bool,
    /// Signed deviation in band units: `±deviations` at the band's edges, 0 at the expected value.
    pub score: f64,
    /// True until `warmup` has passed (never anomalous then).
    pub warming_up: bool,
}

/// Samples that set the initial level and spread.
const INIT_SAMPLES: usize = 8;
/// Values kept to detect a level shift: one per `shift_after / SHIFT_SLOTS`.
const SHIFT_SLOTS: usize = 12;
const RING: usize = 16;
const LEVEL_TAU_S: f64 = 6.0 * 3600.0;
const SPREAD_TAU_S: f64 = 86_400.0;
/// Averaging time of the candidate models' errors (`auto`): a week, so that a weekly
/// pattern's transitions count.
const ERROR_TAU_S: f64 = 7.0 * 86_400.0;
/// Memory of the largest routine excursion.
const EXCURSION_TAU_S: f64 = 14.0 * 86_400.0;
/// The largest recent excursion counts as this many spreads.
const EXCURSION_SPREADS: f64 = 2.5;
/// Winsorizing: updates see residuals clipped to this many spreads.
const CLIP: f64 = 3.0;
/// Spread floor relative to |level|.
const REL_FLOOR: f64 = 0.01;
/// Seasonal offsets average over about this many periods: an hour's offset moves with a time
/// constant of `min(periods seen, SEASON_PERIODS) × VISIT_TAU_S` while its hour lasts.
const SEASON_PERIODS: f64 = 3.0;
const VISIT_TAU_S: f64 = 1800.0;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;
/// `auto` switches to a profile whose mean absolute error is under this fraction of the
/// simpler model's, and drops it above `AUTO_KEEP`.
const AUTO_GAIN: f64 = 0.8;
const AUTO_KEEP: f64 = 0.9;
/// MAD → standard deviation of a normal distribution; mean absolute deviation → std.
const MAD_TO_SD: f64 = 1.4826;
const MEAN_ABS_TO_SD: f64 = 1.2533;

/// The seasonal profile in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Active {
    None,
    Daily,
    Weekly,
}

/// The model of one series. Create with [`Baseline::new`], feed with [`Baseline::update`].
#[derive(Debug, Clone)]
pub struct Baseline {
    deviations: f64,
    direction: Direction,
    seasonality: Seasonality,
    warmup_ms: i64,
    shift_ms: i64,
    counter: bool,
    s: State,
}

/// Everything learned; what [`Baseline::to_bytes`] saves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    /// Layout check on restore: the seasonality the state was learned with.
    seasonality: Seasonality,
    counter: bool,
    first_ms: Option<i64>,
    last_ms: Option<i64>,
    /// Counter mode: the previous raw counter value.
    prev_raw: Option<f64>,
    /// The previous modelled value (smallest step detection).
    prev_x: Option<f64>,
    started: bool,
    /// Level of the model without seasonality (6 h time constant).
    level: f64,
    /// Drift of the daily and weekly candidates from their profiles (6 h time constant).
    drift_daily: f64,
    drift_weekly: f64,
    spread: f64,
    /// Smallest non-zero step seen between consecutive values (0 = none yet).
    quantum: f64,
    /// Largest recent transient excursion above / below (decaying).
    tail_up: f64,
    tail_down: f64,
    /// The excursion in progress (committed to `tail_*` when it ends by itself).
    exc_up: f64,
    exc_down: f64,
    /// Ring of (t_ms, residual) kept for level-shift detection (the first samples' values
    /// before the model starts).
    ring_t: [i64; RING],
    ring_v: [f64; RING],
    ring_len: u8,
    ring_head: u8,
    last_store_ms: i64,
    /// Hour-of-day offsets (empty unless daily or auto).
    daily: Vec<f32>,
    /// Hour-of-week offsets, Monday 00:00 UTC first (empty unless weekly or auto).
    weekly: Vec<f32>,
    /// One-step-ahead absolute errors (winsorized averages) without and with each profile.
    err_none: f64,
    err_daily: f64,
    err_weekly: f64,

    active: Active,
}

impl Baseline {
    /// A fresh model for one series.
    pub fn new(config: &BaselineConfig) -> Baseline {
        let (daily, weekly) = match config.seasonality {
            Seasonality::None => (0, 0),
            Seasonality::Daily => (24, 0),
            Seasonality::Weekly => (0, 168),
            Seasonality::Auto => (24, 168),
        };
        Baseline {
            deviations: config.deviations,
            direction: config.direction,
            seasonality: config.seasonality,
            warmup_ms: config.warmup.as_millis() as i64,
            shift_ms: (config.shift_after.as_millis() as i64).max(1000),
            counter: config.counter,
            s: State {
                seasonality: config.seasonality,
                counter: config.counter,
                first_ms: None,
                last_ms: None,
                prev_raw: None,
                prev_x: None,
                started: false,
                level: 0.0,
                drift_daily: 0.0,
                drift_weekly: 0.0,
                spread: 0.0,
                quantum: 0.0,
                tail_up: 0.0,
                tail_down: 0.0,
                exc_up: 0.0,
                exc_down: 0.0,
                ring_t: [0; RING],
                ring_v: [0.0; RING],
                ring_len: 0,
                ring_head: 0,
                last_store_ms: i64::MIN,
                daily: vec![0.0; daily],
                weekly: vec![0.0; weekly],
                err_none: 0.0,
                err_daily: 0.0,
                err_weekly: 0.0,

                active: Active::None,
            },
        }
    }

    /// Restores a model saved with [`Baseline::to_bytes`]. Refused (the caller starts afresh)
    /// when the bytes are damaged or were learned with another seasonality or counter setting.
    pub fn from_bytes(config: &BaselineConfig, bytes: &[u8]) -> Result<Baseline, AnomalyError> {
        let s: State =
            serde_json::from_slice(bytes).map_err(|e| AnomalyError::State(e.to_string()))?;
        let mut b = Baseline::new(config);
        if s.seasonality != b.s.seasonality || s.counter != b.s.counter {
            return Err(AnomalyError::State(format!(
                "learned with seasonality {:?} and counter {}, the rule now says {:?} and {}",
                s.seasonality, s.counter, b.s.seasonality, b.s.counter
            )));
        }
        if s.daily.len() != b.s.daily.len()
            || s.weekly.len() != b.s.weekly.len()
            || s.ring_len as usize > RING
            || s.ring_head as usize >= RING
        {
            return Err(AnomalyError::State(
                "seasonal profile or ring of the wrong size".into(),
            ));
        }
        b.s = s;
        Ok(b)
    }

    /// The learned state, for persisting (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.s).expect("baseline state serializes")
    }

    /// Bytes this model holds in memory (the struct and its seasonal profiles).
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Baseline>()
            + (self.s.daily.capacity() + self.s.weekly.capacity()) * std::mem::size_of::<f32>()
    }

    /// The seasonal profile in use now (`auto` reports what it detected).
    pub fn active_seasonality(&self) -> Seasonality {
        match self.s.active {
            Active::None => Seasonality::None,
            Active::Daily => Seasonality::Daily,
            Active::Weekly => Seasonality::Weekly,
        }
    }

    /// Feeds one sample (`t_ms` strictly increasing) and says whether it is anomalous.
    pub fn update(&mut self, t_ms: i64, value: f64) -> Result<Verdict, AnomalyError> {
        if !value.is_finite() {
            return Err(AnomalyError::NotFinite(value));
        }
        if let Some(last) = self.s.last_ms {
            if t_ms <= last {
                return Err(AnomalyError::OutOfOrder {
                    t_ms,
                    last_ms: last,
                });
            }
        }
        let dt_s = self.s.last_ms.map_or(0.0, |l| (t_ms - l) as f64 / 1000.0);
        self.s.last_ms = Some(t_ms);
        let first = *self.s.first_ms.get_or_insert(t_ms);
        let x = if self.counter {
            let prev = self.s.prev_raw.replace(value);
            match prev {
                None => return Ok(Verdict::not_started()),
                Some(p) if value >= p => (value - p) / dt_s,
                // A reset: the counter restarted from zero.
                Some(_) => value / dt_s,
            }
        } else {
            value
        };
        if let Some(p) = self.s.prev_x.replace(x) {
            let step = (x - p).abs();
            if step > 0.0 && (self.s.quantum == 0.0 || step < self.s.quantum) {
                self.s.quantum = step;
            }
        }
        if !self.s.started {
            self.push(t_ms, x);
            if (self.s.ring_len as usize) < INIT_SAMPLES {
                return Ok(Verdict::not_started());
            }
            let values = self.ring_values(i64::MIN);
            let level = median(&mut values.clone());
            self.s.level = level;
            self.s.daily.fill(level as f32);
            self.s.weekly.fill(level as f32);
            // From now on the ring holds residuals.
            for v in &mut self.s.ring_v[..self.s.ring_len as usize] {
                *v -= level;
            }
            self.s.spread = mad(&values, level) * MAD_TO_SD;
            let err = self.s.spread / MEAN_ABS_TO_SD;
            (self.s.err_none, self.s.err_daily, self.s.err_weekly) = (err, err, err);
            self.s.started = true;
        }

        let expected = self.expected(t_ms);
        let sd = self.sd();
        let r = x - expected;
        let core = self.deviations * sd;
        let k = self.deviations / EXCURSION_SPREADS;
        let up = core.max(k * self.s.tail_up);
        let down = core.max(k * self.s.tail_down);
        let warming_up = t_ms - first < self.warmup_ms;
        let outside =
            (r > up && self.direction.allows(1.0)) || (-r > down && self.direction.allows(-1.0));
        let mut anomalous = !warming_up && outside;
        let score = if r >= 0.0 {
            self.deviations * r / up
        } else {
            self.deviations * r / down
        };

        // Routine excursions: remembered when they end by themselves.
        let decay = (-dt_s / EXCURSION_TAU_S).exp();
        self.s.tail_up *= decay;
        self.s.tail_down *= decay;
        if r > core {
            self.s.exc_up = self.s.exc_up.max(r);
        } else if self.s.exc_up > 0.0 {
            self.s.tail_up = self.s.tail_up.max(self.s.exc_up);
            self.s.exc_up = 0.0;
        }
        if -r > core {
            self.s.exc_down = self.s.exc_down.max(-r);
        } else if self.s.exc_down > 0.0 {
            self.s.tail_down = self.s.tail_down.max(self.s.exc_down);
            self.s.exc_down = 0.0;
        }

        if t_ms - self.s.last_store_ms >= self.shift_ms * 9 / (10 * SHIFT_SLOTS as i64) {
            self.push(t_ms, r);
        }
        self.track_errors(t_ms, x, dt_s, t_ms - first);
        if let Some(shift) = self.shifted_median(t_ms, core) {
            if !warming_up && self.direction.allows(shift) {
                anomalous = true;
            }
            // The new level: the recent residuals beyond the band on the side it moved to.
            let moved = |r: f64| if shift > 0.0 { r > core } else { -r > core };
            let mut recent = self.ring_values(t_ms - self.shift_ms);
            recent.retain(|&r| moved(r));
            let delta = median(&mut recent);
            self.set_level(expected + delta, t_ms);
            self.s.spread = self.s.spread.max(mad(&recent, delta) * MAD_TO_SD);
            self.s.exc_up = 0.0;
            self.s.exc_down = 0.0;
            // Forget the residuals from before the shift; the others are now relative to the
            // new level.
            self.retain_ring(moved, delta);
        } else {
            self.learn(t_ms, x, r, sd, dt_s, t_ms - first);
        }
        self.select_season(t_ms - first);

        Ok(Verdict {
            expected,
            lower: expected - down,
            upper: expected + up,
            anomalous,
            score,
            warming_up,
        })
    }

    /// The robust standard deviation with its floors.
    fn sd(&self) -> f64 {
        self.s
            .spread
            .max(REL_FLOOR * self.s.level.abs())
            .max(self.s.quantum)
            .max(1e-12)
    }

    /// Mean absolute one-step-ahead errors of the three candidate models, on every sample and
    /// not winsorized: the swings a profile predicts and level shifts count against the model
    /// that did not expect them. A profile's record starts once it has seen a whole period
    /// (it equals the un-seasoned model's until then).
    fn track_errors(&mut self, t_ms: i64, x: f64, dt_s: f64, history_ms: i64) {
        let b = 1.0 - (-dt_s / ERROR_TAU_S).exp();
        let s = &mut self.s;
        s.err_none += b * ((x - s.level).abs() - s.err_none);
        if history_ms < DAY_MS {
            s.err_daily = s.err_none;
        } else if !s.daily.is_empty() {
            let e = x - s.daily[hour_of_day(t_ms)] as f64 - s.drift_daily;
            s.err_daily += b * (e.abs() - s.err_daily);
        }
        if history_ms < WEEK_MS {
            s.err_weekly = s.err_none;
        } else if !s.weekly.is_empty() {
            let e = x - s.weekly[hour_of_week(t_ms)] as f64 - s.drift_weekly;
            s.err_weekly += b * (e.abs() - s.err_weekly);
        }
    }

    /// Winsorized updates of the three candidate models (none, daily, weekly), each from its
    /// own one-step-ahead error, and of the spread from the residual `r` of the model in use.
    fn learn(&mut self, t_ms: i64, x: f64, r: f64, sd: f64, dt_s: f64, history_ms: i64) {
        let c = CLIP * sd;
        let clip = |v: f64| v.clamp(-c, c);
        let rate = |tau_s: f64| 1.0 - (-dt_s / tau_s).exp();
        let b = rate(SPREAD_TAU_S);
        self.s.spread += b * (r.abs().min(c) * MEAN_ABS_TO_SD - self.s.spread);
        self.s.level += rate(LEVEL_TAU_S) * clip(x - self.s.level);
        // A seasonal candidate: the average of each hour in the last periods plus a drift that
        // follows the recent residual like `level`. Each hour's average moves with a time
        // constant of `min(periods seen, SEASON_PERIODS) × VISIT_TAU_S` while its hour lasts;
        // the first period fills the profile unclipped, later ones are winsorized at the
        // candidate's own error scale (its swings exceed the spread of the model in use until
        // it has learned them).
        let visits =
            |period_ms: i64| (1 + history_ms / period_ms).min(SEASON_PERIODS as i64) as f64;
        let own_clip = |err: f64, period_ms: i64| {
            if history_ms < period_ms {
                f64::INFINITY
            } else {
                CLIP * (MEAN_ABS_TO_SD * err).max(sd)
            }
        };
        let a = rate(LEVEL_TAU_S);
        if !self.s.daily.is_empty() {
            let i = hour_of_day(t_ms);
            let c = own_clip(self.s.err_daily, DAY_MS);
            let p = &mut self.s.daily[i];
            *p += (rate(visits(DAY_MS) * VISIT_TAU_S) * (x - *p as f64).clamp(-c, c)) as f32;
            let e = x - *p as f64 - self.s.drift_daily;
            self.s.drift_daily += a * e.clamp(-c, c);
        }
        if !self.s.weekly.is_empty() {
            let i = hour_of_week(t_ms);
            let c = own_clip(self.s.err_weekly, WEEK_MS);
            let p = &mut self.s.weekly[i];
            *p += (rate(visits(WEEK_MS) * VISIT_TAU_S) * (x - *p as f64).clamp(-c, c)) as f32;
            let e = x - *p as f64 - self.s.drift_weekly;
            self.s.drift_weekly += a * e.clamp(-c, c);
        }
    }

    /// Chooses the seasonal profile once enough history exists (`history_ms` since the start).
    fn select_season(&mut self, history_ms: i64) {
        let s = &self.s;
        self.s.active = match self.seasonality {
            Seasonality::None => Active::None,
            Seasonality::Daily if history_ms >= 2 * DAY_MS => Active::Daily,
            Seasonality::Weekly if history_ms >= 2 * WEEK_MS => Active::Weekly,
            Seasonality::Daily | Seasonality::Weekly => Active::None,
            Seasonality::Auto => {
                let bar = |active| {
                    if s.active == active {
                        AUTO_KEEP
                    } else {
                        AUTO_GAIN
                    }
                };
                let weekly_ok = history_ms >= 3 * WEEK_MS
                    && s.err_weekly < bar(Active::Weekly) * s.err_none
                    && s.err_weekly < bar(Active::Weekly) * s.err_daily;
                let daily_ok =
                    history_ms >= 3 * DAY_MS && s.err_daily < bar(Active::Daily) * s.err_none;
                if weekly_ok {
                    Active::Weekly
                } else if daily_ok {
                    Active::Daily
                } else {
                    Active::None
                }
            }
        };
    }

    /// The expected value at `t_ms` of the model in use.
    fn expected(&self, t_ms: i64) -> f64 {
        match self.s.active {
            Active::None => self.s.level,
            Active::Daily => self.s.drift_daily + self.s.daily[hour_of_day(t_ms)] as f64,
            Active::Weekly => self.s.drift_weekly + self.s.weekly[hour_of_week(t_ms)] as f64,
        }
    }

    /// Moves the model in use so that it expects `value` at `t_ms`. The candidates not in use
    /// keep following at their own pace: a seasonal candidate must see its season's swings as
    /// errors to learn them, not as level shifts.
    fn set_level(&mut self, value: f64, t_ms: i64) {
        match self.s.active {
            Active::None => self.s.level = value,
            Active::Daily => self.s.drift_daily = value - self.s.daily[hour_of_day(t_ms)] as f64,
            Active::Weekly => {
                self.s.drift_weekly = value - self.s.weekly[hour_of_week(t_ms)] as f64
            }
        }
    }

    /// The median of the residuals kept over the last `shift_after`, when they cover most of it
    /// and it lies outside the core band.
    fn shifted_median(&self, t_ms: i64, core: f64) -> Option<f64> {
        let since = t_ms - self.shift_ms;
        let mut oldest = t_ms;
        for i in 0..self.s.ring_len as usize {
            let t = self.s.ring_t[i];
            if t > since {
                oldest = oldest.min(t);
            }
        }
        let mut recent = self.ring_values(since);
        if recent.len() < 4 || t_ms - oldest < self.shift_ms * 3 / 4 {
            return None;
        }
        let m = median(&mut recent);
        (m.abs() > core).then_some(m)
    }

    fn push(&mut self, t_ms: i64, x: f64) {
        let i = self.s.ring_head as usize;
        self.s.ring_t[i] = t_ms;
        self.s.ring_v[i] = x;
        self.s.ring_head = ((i + 1) % RING) as u8;
        self.s.ring_len = (self.s.ring_len + 1).min(RING as u8);
        self.s.last_store_ms = t_ms;
    }

    /// Keeps only the ring's residuals for which `keep` holds, minus `delta`.
    fn retain_ring(&mut self, keep: impl Fn(f64) -> bool, delta: f64) {
        let n = self.s.ring_len as usize;
        let mut len = 0;
        for i in 0..n {
            if keep(self.s.ring_v[i]) {
                self.s.ring_t[len] = self.s.ring_t[i];
                self.s.ring_v[len] = self.s.ring_v[i] - delta;
                len += 1;
            }
        }
        if len < n {
            self.s.ring_len = len as u8;
            self.s.ring_head = len as u8;
        }
    }

    /// Values kept in the ring with a time after `since_ms`.
    fn ring_values(&self, since_ms: i64) -> Vec<f64> {
        (0..self.s.ring_len as usize)
            .filter(|&i| self.s.ring_t[i] > since_ms)
            .map(|i| self.s.ring_v[i])
            .collect()
    }
}

impl Verdict {
    fn not_started() -> Verdict {
        Verdict {
            expected: f64::NAN,
            lower: f64::NAN,
            upper: f64::NAN,
            anomalous: false,
            score: 0.0,
            warming_up: true,
        }
    }
}

fn hour_of_day(t_ms: i64) -> usize {
    t_ms.div_euclid(HOUR_MS).rem_euclid(24) as usize
}

/// Hours since Monday 00:00 UTC (1970-01-01 was a Thursday).
fn hour_of_week(t_ms: i64) -> usize {
    (t_ms.div_euclid(HOUR_MS) + 72).rem_euclid(168) as usize
}

fn mad(v: &[f64], centre: f64) -> f64 {
    let mut d: Vec<f64> = v.iter().map(|x| (x - centre).abs()).collect();
    median(&mut d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_of_week_start_on_monday() {
        // 2024-01-01 was a Monday.
        let monday = 1_704_067_200_000;
        assert_eq!(hour_of_week(monday), 0);
        assert_eq!(hour_of_week(monday + 25 * HOUR_MS), 25);
        assert_eq!(hour_of_day(monday + 25 * HOUR_MS), 1);
    }
}
