//! Coarse timers: deadlines rounded up to a tick and kept in buckets, one entry
//! per armed connection. Re-arming leaves the old entry behind; it is ignored
//! when its bucket fires because the connection's current tick no longer matches
//! (cheaper than removal, as in nginx's and Pushpin's timer designs).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Timer resolution. Long-poll timeouts, heartbeats and head timeouts are
/// seconds long; 10 ms keeps them accurate while sharing buckets widely.
pub const TICK: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub struct Timers<K> {
    origin: Instant,
    buckets: BTreeMap<u64, Vec<K>>,
}

impl<K: Copy> Timers<K> {
    pub fn new(origin: Instant) -> Timers<K> {
        Timers { origin, buckets: BTreeMap::new() }
    }

    /// The tick a deadline falls in (rounded up, so timers never fire early).
    pub fn tick_of(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        let tick = TICK.as_nanos();
        nanos.div_ceil(tick) as u64
    }

    /// Arms `key` for `at`; returns the tick to remember for lazy cancellation.
    pub fn schedule(&mut self, key: K, at: Instant) -> u64 {
        let tick = self.tick_of(at);
        self.buckets.entry(tick).or_default().push(key);
        tick
    }

    /// When the earliest bucket is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        let (tick, _) = self.buckets.first_key_value()?;
        Some(self.origin + TICK * (*tick as u32))
    }

    /// Removes and returns every (tick, key) due at `now`.
    pub fn expire(&mut self, now: Instant, due: &mut Vec<(u64, K)>) {
        let now_tick = now.saturating_duration_since(self.origin).as_nanos() / TICK.as_nanos();
        while let Some(entry) = self.buckets.first_entry() {
            if u128::from(*entry.key()) > now_tick {
                break;
            }
            let tick = *entry.key();
            due.extend(entry.remove().into_iter().map(|k| (tick, k)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_order_and_never_early() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0);
        let a = timers.schedule('a', t0 + Duration::from_millis(25));
        timers.schedule('b', t0 + Duration::from_millis(5));
        assert!(timers.next_deadline().unwrap() >= t0 + Duration::from_millis(5));
        let mut due = Vec::new();
        timers.expire(t0 + Duration::from_millis(9), &mut due);
        assert!(due.is_empty());
        timers.expire(t0 + Duration::from_millis(10), &mut due);
        assert_eq!(due, vec![(1, 'b')]);
        due.clear();
        timers.expire(t0 + Duration::from_millis(30), &mut due);
        assert_eq!(due, vec![(a, 'a')]);
        assert!(timers.next_deadline().is_none());
    }
}
