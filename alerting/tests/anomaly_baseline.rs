//! The baseline model on generated series: warm-up, robustness to the anomalies it finds,
//! level shifts, routine spikes, counter resets, daily and weekly seasonality, direction,
//! persisted state, memory bound, bad configs and samples.

use std::time::Duration;

use vigil_alerting::anomaly::{
    AnomalyError, Baseline, BaselineConfig, Direction, Seasonality, Verdict,
};

/// A rule file's map as vigil reads it (serde-saphyr within the config budget).
fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, vigil_common::config::LoadError> {
    vigil_common::config::from_yaml(text, std::path::Path::new("rule.yaml"))
}

const MIN_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// 2024-01-01 00:00 UTC, a Monday.
const T0: i64 = 1_704_067_200_000;

/// Deterministic noise in [-1, 1].
fn noise(i: i64) -> f64 {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    (x % 20_001) as f64 / 10_000.0 - 1.0
}

fn config() -> BaselineConfig {
    BaselineConfig::new("value")
}

/// Feeds `f(i)` at `T0 + i * step_ms` for `i` in `range`; returns the verdicts.
fn feed(
    b: &mut Baseline,
    step_ms: i64,
    range: std::ops::Range<i64>,
    f: impl Fn(i64) -> f64,
) -> Vec<Verdict> {
    range
        .map(|i| b.update(T0 + i * step_ms, f(i)).unwrap())
        .collect()
}

fn anomalous_at(v: &[Verdict], offset: i64) -> Vec<i64> {
    v.iter()
        .enumerate()
        .filter(|(_, v)| v.anomalous)
        .map(|(i, _)| i as i64 + offset)
        .collect()
}

#[test]
fn nothing_fires_during_warm_up_and_a_spike_after_it_does() {
    let mut b = Baseline::new(&config());
    // Two days of 100 ± 5 at one sample a minute, with a 300 spike after 2 h (still warming up).
    let day2 = 2 * 24 * 60;
    let v = feed(&mut b, MIN_MS, 0..day2, |i| {
        if i == 120 {
            300.0
        } else {
            100.0 + 5.0 * noise(i)
        }
    });
    assert!(
        v[..7].iter().all(|v| v.warming_up && v.expected.is_nan()),
        "first samples start the model"
    );
    assert!(v[120].warming_up && !v[120].anomalous, "{:?}", v[120]);
    // A day has passed. The warm-up spike taught the model that spikes to 300 happen (its band
    // is just above 300: routine excursions do not fire); a spike to 500 fires.
    let v = feed(&mut b, MIN_MS, day2..day2 + 2, |i| {
        if i == day2 {
            300.0
        } else {
            500.0
        }
    });
    assert!(
        !v[0].anomalous && !v[0].warming_up && v[0].upper > 300.0,
        "{:?}",
        v[0]
    );
    assert!(v[1].anomalous && v[1].score > 3.0, "{:?}", v[1]);
    assert!(
        (v[1].expected - 100.0).abs() < 3.0 && v[1].upper < 400.0,
        "{:?}",
        v[1]
    );
}

#[test]
fn an_anomaly_does_not_teach_the_model_it_is_normal() {
    let mut b = Baseline::new(&config());
    let n = 2 * 24 * 60;
    feed(&mut b, MIN_MS, 0..n, |i| 100.0 + 5.0 * noise(i));
    let before = b.update(T0 + n * MIN_MS, 100.0).unwrap();
    // 20 minutes at 1000 (shorter than shift_after: not a new level): every sample fires...
    let during = feed(&mut b, MIN_MS, n + 1..n + 21, |_| 1000.0);
    assert!(during.iter().all(|v| v.anomalous), "{during:?}");
    // ...and the expected value and band barely moved.
    assert!(
        (during[19].expected - before.expected).abs() < 5.0,
        "{:?} vs {before:?}",
        during[19]
    );
    assert!(during[19].upper < 150.0, "{:?}", during[19]);
}

#[test]
fn a_level_shift_fires_then_becomes_the_new_normal() {
    let mut b = Baseline::new(&config());
    let n = 2 * 24 * 60;
    feed(&mut b, MIN_MS, 0..n, |i| 10.0 + noise(i));
    // From 10 to 50 and staying there.
    let v = feed(&mut b, MIN_MS, n..n + 6 * 60, |i| 50.0 + noise(i));
    let fired = anomalous_at(&v, 0);
    assert_eq!(fired.first(), Some(&0), "fires at the step");
    assert!(
        fired.iter().all(|&i| i <= 60),
        "quiet after shift_after (1h): {fired:?}"
    );
    let last = v.last().unwrap();
    assert!(
        (last.expected - 50.0).abs() < 2.0 && !last.anomalous,
        "{last:?}"
    );
}

#[test]
fn a_level_shift_is_reported_at_the_shift_when_the_band_is_wide() {
    // Spiky series (routine spikes to +40) then a sustained move of +15: under the spikes'
    // band, but a new level all the same; it is reported once, when shift_after has passed.
    let mut b = Baseline::new(&config());
    let n = 3 * 24 * 60;
    let spiky = |i: i64| 100.0 + noise(i) + if i % 180 == 0 { 40.0 } else { 0.0 };
    feed(&mut b, MIN_MS, 0..n, spiky);
    let v = feed(&mut b, MIN_MS, n..n + 3 * 60, |i| 115.0 + noise(i));
    let fired = anomalous_at(&v, 0);
    assert!(!fired.is_empty() && fired[0] <= 60, "{fired:?}");
    assert!(
        fired.len() <= 3,
        "reported once, not every sample: {fired:?}"
    );
}

#[test]
fn routine_spikes_stop_firing_and_a_bigger_one_still_fires() {
    let mut b = Baseline::new(&config());
    // 5-minute samples; every 6 hours a one-sample spike from 0.1 to 1.5 ± 0.05 (a cron job).
    let spike = |i: i64| i % 72 == 0;
    let series = |i: i64| {
        if spike(i) {
            1.5 + 0.05 * noise(i)
        } else {
            0.1 + 0.002 * noise(i)
        }
    };
    let step = 5 * MIN_MS;
    let days = 288;
    let v = feed(&mut b, step, 0..6 * days, series);
    let late = anomalous_at(&v[2 * days as usize..], 2 * days);
    assert!(late.is_empty(), "the cron spikes are learned: {late:?}");
    let v = feed(&mut b, step, 6 * days..6 * days + 1, |_| 2.5);
    assert!(v[0].anomalous, "{:?}", v[0]);
}

#[test]
fn counter_resets_are_not_anomalies_but_a_rate_change_is() {
    let mut c = config();
    c.counter = true;
    let mut b = Baseline::new(&c);
    // +600 per minute (10/s) with ±10 jitter; the process restarts (counter back near 0) twice.
    let mut total = 0.0;
    let mut v = Vec::new();
    for i in 0..3 * 24 * 60 {
        if i == 2000 || i == 3500 {
            total = 0.0;
        }
        total += 600.0 + 10.0 * noise(i);
        v.push(b.update(T0 + i * MIN_MS, total).unwrap());
    }
    assert!(
        v[0].warming_up && v[0].expected.is_nan(),
        "no rate from one sample"
    );
    assert!(anomalous_at(&v, 0).is_empty(), "{:?}", anomalous_at(&v, 0));
    assert!(
        (v.last().unwrap().expected - 10.0).abs() < 0.5,
        "{:?}",
        v.last()
    );
    // Now 50/s.
    total += 3000.0;
    let spike = b.update(T0 + 3 * DAY_MS, total).unwrap();
    assert!(spike.anomalous && spike.score > 3.0, "{spike:?}");
}

/// CPU of a web service: 20 % at night, 80 % mid-day, ± 3.
fn daily(i: i64, step_ms: i64) -> f64 {
    let hour = ((i * step_ms) % DAY_MS) as f64 / HOUR_MS as f64;
    50.0 - 30.0 * (2.0 * std::f64::consts::PI * hour / 24.0).cos() + 3.0 * noise(i)
}

#[test]
fn auto_detects_a_daily_pattern_and_uses_it() {
    let step = 5 * MIN_MS;
    let mut b = Baseline::new(&config());
    let days = 288;
    let v = feed(&mut b, step, 0..6 * days, |i| daily(i, step));
    assert_eq!(b.active_seasonality(), Seasonality::Daily);
    let late = anomalous_at(&v[4 * days as usize..], 4 * days);
    assert!(late.is_empty(), "the daily cycle is normal: {late:?}");
    // 80 % is normal at noon but not at 2 am.
    let at = |d: i64, h: i64| (6 * days + d * days) + h * 12;
    let mut probe = b.clone();
    let noon = probe.update(T0 + at(0, 12) * step, 80.0).unwrap();
    assert!(
        !noon.anomalous && (noon.expected - 80.0).abs() < 8.0,
        "{noon:?}"
    );
    let mut probe = b.clone();
    let night = probe.update(T0 + at(0, 2) * step, 80.0).unwrap();
    assert!(night.anomalous, "{night:?}");
}

#[test]
fn auto_keeps_no_profile_on_a_series_without_one() {
    let step = 5 * MIN_MS;
    let mut b = Baseline::new(&config());
    feed(&mut b, step, 0..10 * 288, |i| 50.0 + 3.0 * noise(i));
    assert_eq!(b.active_seasonality(), Seasonality::None);
}

#[test]
fn weekly_profile_learns_quiet_weekends() {
    // Weekdays 60 ± 2, weekends 10 ± 2 (2024-01-01 is a Monday).
    let step = 15 * MIN_MS;
    let per_day = 96;
    let week = |i: i64| if (i / per_day) % 7 >= 5 { 10.0 } else { 60.0 } + 2.0 * noise(i);
    // `auto` does not pick this one within 4 weeks: its un-seasoned model explains the two
    // transitions a week as level shifts almost as well (see the module doc).
    let mut c = config();
    c.seasonality = Seasonality::Weekly;
    let mut b = Baseline::new(&c);
    let v = feed(&mut b, step, 0..28 * per_day, week);
    assert_eq!(b.active_seasonality(), Seasonality::Weekly);
    let fourth_week = anomalous_at(&v[21 * per_day as usize..], 21 * per_day);
    assert!(
        fourth_week.is_empty(),
        "weekends are normal: {fourth_week:?}"
    );
    // A busy Saturday is not.
    let saturday_noon = 28 * per_day + 5 * per_day + 48;
    let v = b.update(T0 + saturday_noon * step, 60.0).unwrap();
    assert!(v.anomalous && v.expected < 20.0, "{v:?}");
}

#[test]
fn direction_above_ignores_drops() {
    let mut c = config();
    c.direction = Direction::Above;
    let mut b = Baseline::new(&c);
    let n = 2 * 24 * 60;
    feed(&mut b, MIN_MS, 0..n, |i| 100.0 + noise(i));
    let drop = feed(&mut b, MIN_MS, n..n + 120, |_| 0.0);
    assert!(
        anomalous_at(&drop, 0).is_empty(),
        "a drop (even a lasting one) is not reported"
    );
    assert!(drop[0].score < -3.0, "but scored: {:?}", drop[0]);
    c.direction = Direction::Below;
    let mut b = Baseline::new(&c);
    feed(&mut b, MIN_MS, 0..n, |i| 100.0 + noise(i));
    assert!(b.update(T0 + n * MIN_MS, 0.0).unwrap().anomalous);
    assert!(!b.update(T0 + (n + 60) * MIN_MS, 1000.0).unwrap().anomalous);
}

#[test]
fn saved_state_restores_the_same_model() {
    let c = config();
    let step = 5 * MIN_MS;
    let series = |i: i64| daily(i, step) + if i == 1500 { 200.0 } else { 0.0 };
    let mut whole = Baseline::new(&c);
    let expected = feed(&mut whole, step, 0..2000, series);
    let mut first = Baseline::new(&c);
    feed(&mut first, step, 0..1000, series);
    let bytes = first.to_bytes();
    let mut restored = Baseline::from_bytes(&c, &bytes).unwrap();
    let rest = feed(&mut restored, step, 1000..2000, series);
    assert_eq!(&expected[1000..], &rest[..]);
    assert_eq!(restored.to_bytes(), whole.to_bytes());

    let mut other = c.clone();
    other.seasonality = Seasonality::Weekly;
    let err = Baseline::from_bytes(&other, &bytes).unwrap_err();
    assert!(
        matches!(err, AnomalyError::State(_)) && err.to_string().contains("seasonality"),
        "{err}"
    );
    let err = Baseline::from_bytes(&c, b"{\"level\": 1").unwrap_err();
    assert!(
        err.to_string().starts_with("saved baseline state:"),
        "{err}"
    );
}

#[test]
fn memory_per_series_stays_under_2_kb() {
    for (s, limit) in [
        (Seasonality::None, 600),
        (Seasonality::Daily, 700),
        (Seasonality::Weekly, 1300),
        (Seasonality::Auto, 1400),
    ] {
        let mut c = config();
        c.seasonality = s;
        let mut b = Baseline::new(&c);
        feed(&mut b, 5 * MIN_MS, 0..30 * 288, |i| daily(i, 5 * MIN_MS));
        println!("{s:?}: {} bytes", b.bytes());
        assert!(b.bytes() <= limit, "{s:?}: {} bytes", b.bytes());
        assert!(b.bytes() <= 2048);
    }
}

#[test]
fn bad_samples_are_refused_and_change_nothing() {
    let mut b = Baseline::new(&config());
    feed(&mut b, MIN_MS, 0..100, |i| 5.0 + noise(i));
    let saved = b.to_bytes();
    let err = b.update(T0 + 100 * MIN_MS, f64::NAN).unwrap_err();
    assert!(
        err.to_string().contains("NaN is not a finite number"),
        "{err}"
    );
    assert!(matches!(
        b.update(T0 + 100 * MIN_MS, f64::INFINITY),
        Err(AnomalyError::NotFinite(_))
    ));
    let err = b.update(T0 + 99 * MIN_MS, 5.0).unwrap_err();
    assert_eq!(
        err,
        AnomalyError::OutOfOrder {
            t_ms: T0 + 99 * MIN_MS,
            last_ms: T0 + 99 * MIN_MS
        }
    );
    assert!(
        err.to_string().contains("is not after the previous sample"),
        "{err}"
    );
    assert_eq!(b.to_bytes(), saved);
}

#[test]
fn config_from_a_rule_file_map_with_defaults_and_bad_keys() {
    let c: BaselineConfig = parse_yaml("expr: value").unwrap();
    assert_eq!(c, config());
    assert_eq!(
        (
            c.seasonality,
            c.deviations,
            c.direction,
            c.hold,
            c.keep_firing_for,
            c.warmup,
            c.shift_after,
            c.counter
        ),
        (
            Seasonality::Auto,
            3.0,
            Direction::Both,
            Duration::ZERO,
            Duration::from_secs(3600),
            Duration::from_secs(86_400),
            Duration::from_secs(3600),
            false
        )
    );
    c.validate().unwrap();
    let c: BaselineConfig = parse_yaml(
        "{expr: 'rate(http_requests_total[5m])', seasonality: weekly, deviations: 4.5, \
          direction: above, for: 10m, keep_firing_for: 30m, warmup: 3d, shift_after: 2h, counter: false}",
    )
    .unwrap();
    assert_eq!(
        (c.seasonality, c.deviations, c.direction),
        (Seasonality::Weekly, 4.5, Direction::Above)
    );
    assert_eq!(
        (c.hold, c.warmup, c.shift_after),
        (
            Duration::from_secs(600),
            Duration::from_secs(3 * 86_400),
            Duration::from_secs(7200)
        )
    );
    // Written back as Prometheus durations.
    let yaml = serde_json::to_string(&c).unwrap();
    assert!(
        yaml.contains(r#""for":"10m""#)
            && yaml.contains(r#""warmup":"3d""#)
            && yaml.contains(r#""keep_firing_for":"30m""#),
        "{yaml}"
    );

    for (yaml, want) in [
        ("{expr: x, bounds: 3}", "unknown field `bounds`"),
        ("{expr: x, seasonality: hourly}", "unknown variant `hourly`"),
        ("{expr: x, direction: up}", "unknown variant `up`"),
        ("{expr: x, for: 5 minutes}", "not a valid duration"),
        ("{seasonality: daily}", "missing field `expr`"),
    ] {
        let err = parse_yaml::<BaselineConfig>(yaml)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{yaml}: {err}");
    }
    for (yaml, key) in [
        ("{expr: ''}", "expr"),
        ("{expr: x, deviations: 0}", "deviations"),
        ("{expr: x, shift_after: 0s}", "shift_after"),
    ] {
        let err = parse_yaml::<BaselineConfig>(yaml)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(
            matches!(err, AnomalyError::Config { rule: "baseline", key: k, .. } if k == key),
            "{yaml}: {err}"
        );
    }
}
