//! Pacing a load generator thread to a target rate: a token bucket over elapsed time, pure (the
//! caller passes the clock), so the same code is tested with synthetic time.
//!
//! The bucket holds at most `burst` records. A sender that fell behind (a slow broker, a full
//! client queue) catches up by at most `burst`, not by everything it missed: the bench measures
//! a steady offered load, not a backlog flood after each stall. Each producer thread owns its
//! own limiter with `rate / threads`.

use std::time::Duration;

/// Token bucket pacing `rate` units per second with room for `burst` units at once.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate_per_second: f64,
    burst: f64,
    tokens: f64,
    last: Duration,
}

/// Smallest burst: one unit, so any positive rate makes progress.
const MIN_BURST: f64 = 1.0;

impl RateLimiter {
    /// A limiter for `rate_per_second` (> 0) units, bursting up to `burst_window` worth of them.
    /// Starts full at time zero of the caller's clock.
    pub fn new(rate_per_second: f64, burst_window: Duration) -> RateLimiter {
        assert!(
            rate_per_second > 0.0 && rate_per_second.is_finite(),
            "rate must be positive: {rate_per_second}"
        );
        let burst = (rate_per_second * burst_window.as_secs_f64()).max(MIN_BURST);
        RateLimiter {
            rate_per_second,
            burst,
            tokens: burst,
            last: Duration::ZERO,
        }
    }

    /// Takes `units` at time `now` (time since the caller's start, non-decreasing) if available
    /// and returns `Duration::ZERO`; otherwise takes nothing and returns how long to wait before
    /// asking again.
    pub fn acquire(&mut self, now: Duration, units: f64) -> Duration {
        self.refill(now);
        if self.tokens >= units {
            self.tokens -= units;
            return Duration::ZERO;
        }
        let missing = units - self.tokens;
        Duration::from_secs_f64(missing / self.rate_per_second)
    }

    fn refill(&mut self, now: Duration) {
        if now > self.last {
            let earned = (now - self.last).as_secs_f64() * self.rate_per_second;
            self.tokens = (self.tokens + earned).min(self.burst);
            self.last = now;
        }
    }

    pub fn rate_per_second(&self) -> f64 {
        self.rate_per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives the limiter with a simulated clock that jumps by exactly the wait it asks for.
    fn simulate(limiter: &mut RateLimiter, units: u64, start: Duration) -> Duration {
        let mut now = start;
        let mut sent = 0;
        while sent < units {
            let wait = limiter.acquire(now, 1.0);
            if wait.is_zero() {
                sent += 1;
            } else {
                now += wait;
            }
        }
        now
    }

    #[test]
    fn paces_to_the_rate_after_the_initial_burst() {
        let mut limiter = RateLimiter::new(1000.0, Duration::from_millis(10));
        // 10 units of burst, then 990 more at 1000/s: 0.99 s.
        let end = simulate(&mut limiter, 1000, Duration::ZERO);
        let seconds = end.as_secs_f64();
        assert!((seconds - 0.99).abs() < 0.002, "{seconds}");
    }

    #[test]
    fn a_stall_is_caught_up_only_by_the_burst() {
        let mut limiter = RateLimiter::new(100.0, Duration::from_millis(50));
        let _ = simulate(&mut limiter, 100, Duration::ZERO);
        // Ten idle seconds later, only 5 units (the burst) are available at once.
        let later = Duration::from_secs(100);
        let mut immediate = 0;
        while limiter.acquire(later, 1.0).is_zero() {
            immediate += 1;
        }
        assert_eq!(immediate, 5);
    }

    #[test]
    fn tiny_rates_still_progress() {
        let mut limiter = RateLimiter::new(0.5, Duration::from_millis(1));
        assert!(limiter.acquire(Duration::ZERO, 1.0).is_zero());
        let wait = limiter.acquire(Duration::ZERO, 1.0);
        assert_eq!(wait, Duration::from_secs(2));
        assert!(limiter.acquire(Duration::from_secs(2), 1.0).is_zero());
    }

    #[test]
    fn time_going_backwards_earns_nothing() {
        let mut limiter = RateLimiter::new(10.0, Duration::from_millis(100));
        assert!(limiter.acquire(Duration::from_secs(1), 1.0).is_zero());
        assert!(!limiter.acquire(Duration::from_millis(500), 1.0).is_zero());
    }

    #[test]
    #[should_panic(expected = "rate must be positive")]
    fn zero_rate_is_a_programming_error() {
        let _ = RateLimiter::new(0.0, Duration::from_millis(1));
    }
}
