//! Random ids without a `rand` dependency: std's random SipHash keys (a
//! fresh pair per generator, from the OS) fed a counter. SipHash is a keyed
//! pseudo-random function, so without the keys the outputs cannot be
//! predicted, and a counter never repeats, so neither do the inputs.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// One generator; each protocol engine owns its own.
pub struct Random {
    keys: RandomState,
    /// Draws so far.
    counter: u64,
}

impl Default for Random {
    fn default() -> Random {
        Random::new()
    }
}

impl Random {
    pub fn new() -> Random {
        Random { keys: RandomState::new(), counter: 0 }
    }

    /// 64 random bits, and the number of this draw (1 for the first), which
    /// is unique for the generator's life.
    pub fn next_counted(&mut self) -> (u64, u64) {
        self.counter = self.counter.wrapping_add(1);
        let mut h = self.keys.build_hasher();
        h.write_u64(self.counter);
        (h.finish(), self.counter)
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.next_counted().0
    }

    /// A number in `lo..=hi` (either order).
    pub fn between(&mut self, (a, b): (u64, u64)) -> u64 {
        let (lo, hi) = (a.min(b), a.max(b));
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.next_u64() % span,
            None => self.next_u64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_counted_and_differ() {
        let mut random = Random::new();
        let (a, one) = random.next_counted();
        let (b, two) = random.next_counted();
        assert_eq!((one, two), (1, 2));
        assert_ne!(a, b);
        assert_ne!(Random::new().next_u64(), Random::new().next_u64());
    }

    #[test]
    fn between_stays_in_range() {
        let mut random = Random::new();
        for range in [(5, 5), (9, 2), (0, u64::MAX), (2000, 6000)] {
            for _ in 0..100 {
                let n = random.between(range);
                assert!(n >= range.0.min(range.1) && n <= range.0.max(range.1), "{n} {range:?}");
            }
        }
    }
}
