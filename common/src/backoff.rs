//! Exponential backoff with jitter, the one way vigil waits before retrying.

use std::time::Duration;

/// Delays that double from `initial` up to `max`; each is drawn uniformly from [d/2, d]
/// ("equal jitter"), so clients that failed together do not retry in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            current: initial,
        }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        let half = d / 2;
        half + Duration::from_nanos(fastrand::u64(
            0..=half.as_nanos().min(u64::MAX as u128) as u64,
        ))
    }

    /// Back to the initial delay after a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_with_jitter_in_range() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let mut nominal = 100u64;
        for _ in 0..8 {
            let d = b.next_delay().as_millis() as u64;
            assert!(d >= nominal / 2 && d <= nominal, "{d} for {nominal}");
            nominal = (nominal * 2).min(1000);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn huge_max_saturates_instead_of_overflowing() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::MAX);
        for _ in 0..200 {
            b.next_delay();
        }
    }
}
