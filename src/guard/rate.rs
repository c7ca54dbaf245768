//! A token bucket: `rate` publishes per second with a burst of the same size.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate_per_sec: u32, now: Instant) -> TokenBucket {
        let rate = f64::from(rate_per_sec.max(1));
        TokenBucket { rate, tokens: rate, last: now }
    }

    /// Whether the bucket would be full at `now` (an idle client).
    pub fn is_full(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate >= self.rate
    }

    /// Takes one token; false (with the seconds until one is back) when empty.
    pub fn take(&mut self, now: Instant) -> Result<(), u64> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(((1.0 - self.tokens) / self.rate).ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn refills_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(2, t0);
        assert!(b.take(t0).is_ok() && b.take(t0).is_ok());
        assert_eq!(b.take(t0), Err(1));
        assert!(b.take(t0 + Duration::from_millis(500)).is_ok());
        assert!(b.take(t0 + Duration::from_millis(500)).is_err());
    }
}
