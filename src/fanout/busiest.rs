//! The busiest channels, for the dashboard. The fan-out thread is the one
//! place that knows every channel's publish count and subscribers, so it
//! ranks them in its once-a-second housekeeping, and only while someone
//! watches the stats stream: an unwatched node pays one hash lookup a
//! second for this.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::channel::Channel;
use crate::stats::{ChannelLoad, Stats};

/// Channels ranked. Ten fill a dashboard table; the ranking is a partial
/// sort of every channel that published since the last look.
pub const BUSIEST: usize = 10;

/// Publish counts seen at the last look, to turn counts into rates.
#[derive(Default)]
pub struct Busiest {
    seen: HashMap<Arc<str>, u64>,
    at: Option<Instant>,
}

impl Busiest {
    /// Publishes the watcher count and, while there are watchers, the
    /// busiest channels into `stats`. Unwatched, it forgets what it saw.
    pub fn look(&mut self, channels: &HashMap<Arc<str>, Channel>, stats: &Stats, now: Instant) {
        let watchers = channels.get(crate::dashboard::STATS_CHANNEL).map_or(0, |c| c.subscribers);
        crate::stats::set(&stats.dashboard.watchers, watchers as u64);
        if watchers == 0 {
            if self.at.is_some() {
                *self = Busiest::default();
            }
            return;
        }
        let ranked = self.rank(channels, now);
        if let Ok(mut busiest) = stats.dashboard.busiest.lock() {
            *busiest = ranked;
        }
    }

    /// Ranks channels by deliveries per second (messages times
    /// subscribers) since the last look; internal channels are left out.
    fn rank(&mut self, channels: &HashMap<Arc<str>, Channel>, now: Instant) -> Vec<ChannelLoad> {
        let secs = self.at.map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        self.at = Some(now);
        let mut seen = HashMap::with_capacity(channels.len());
        let mut loads = Vec::new();
        for (name, ch) in channels {
            seen.insert(name.clone(), ch.published);
            if crate::hub::is_internal(name) || secs <= 0.0 {
                continue;
            }
            let before = self.seen.get(name).copied().unwrap_or(0);
            let published = ch.published.saturating_sub(before);
            if published == 0 {
                continue;
            }
            let publishes_per_sec = published as f64 / secs;
            loads.push(ChannelLoad {
                channel: name.clone(),
                subscribers: ch.subscribers,
                publishes_per_sec,
                deliveries_per_sec: publishes_per_sec * ch.subscribers as f64,
            });
        }
        self.seen = seen;
        let by_load = |a: &ChannelLoad, b: &ChannelLoad| {
            b.deliveries_per_sec
                .total_cmp(&a.deliveries_per_sec)
                .then(b.publishes_per_sec.total_cmp(&a.publishes_per_sec))
        };
        if loads.len() > BUSIEST {
            loads.select_nth_unstable_by(BUSIEST - 1, by_load);
            loads.truncate(BUSIEST);
        }
        loads.sort_by(by_load);
        loads
    }
}
