//! One channel's state inside the fan-out thread: its history ring and who
//! listens behind which outlet (loop or engine), reading what.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::hub::{Message, MessageId};
use crate::transport::Encoding;

/// What a subscriber reads: the frames of one encoding (loops' connections),
/// or whole messages (engines, which render them per session themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    Frames(Encoding),
    Messages,
}

impl Listen {
    /// Slots in a per-outlet count: one per encoding, then whole messages.
    pub const SLOTS: usize = Encoding::COUNT + 1;

    fn slot(self) -> usize {
        match self {
            Listen::Frames(encoding) => encoding as usize,
            Listen::Messages => Encoding::COUNT,
        }
    }
}

pub struct Channel {
    /// Retained messages, oldest first, ids increasing.
    history: VecDeque<Arc<Message>>,
    /// History holds every message of this channel with an id above this.
    /// Raised when messages are dropped (size or age), and starts at the node's
    /// "forgotten" mark so that a resume from before it reports a gap.
    complete_after: MessageId,
    /// Subscribers per outlet and listen slot.
    pub per_outlet: Vec<[u32; Listen::SLOTS]>,
    pub subscribers: usize,
    pub peak_subscribers: usize,
    pub published: u64,
}

impl Channel {
    pub fn new(outlets: usize, complete_after: MessageId) -> Channel {
        Channel {
            history: VecDeque::new(),
            complete_after,
            per_outlet: vec![[0; Listen::SLOTS]; outlets],
            subscribers: 0,
            peak_subscribers: 0,
            published: 0,
        }
    }

    pub fn push(&mut self, message: Arc<Message>, max_len: usize) {
        self.history.push_back(message);
        self.published += 1;
        while self.history.len() > max_len {
            self.drop_oldest();
        }
    }

    /// Drops messages older than `ttl`.
    pub fn expire(&mut self, now: Instant, ttl: Duration) {
        while self.history.front().is_some_and(|m| now.saturating_duration_since(m.accepted_at) > ttl) {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(old) = self.history.pop_front() {
            self.complete_after = self.complete_after.max(old.id);
        }
    }

    /// Retained messages after `id`, and whether some may have been dropped.
    pub fn after(&self, id: MessageId) -> (impl Iterator<Item = &Arc<Message>>, bool) {
        let start = self.history.partition_point(|m| m.id <= id);
        (self.history.range(start..), id < self.complete_after)
    }

    /// The newest `n` retained messages.
    pub fn last(&self, n: usize) -> impl Iterator<Item = &Arc<Message>> {
        self.history.range(self.history.len().saturating_sub(n)..)
    }

    pub fn retained(&self) -> usize {
        self.history.len()
    }

    pub fn last_id(&self) -> Option<MessageId> {
        self.history.back().map(|m| m.id)
    }

    /// The highest id this channel is known to have had.
    pub fn high_water(&self) -> MessageId {
        self.last_id().unwrap_or(self.complete_after).max(self.complete_after)
    }

    /// Which encodings have subscribers anywhere.
    pub fn encodings_in_use(&self) -> [bool; Encoding::COUNT] {
        let mut used = [false; Encoding::COUNT];
        for counts in &self.per_outlet {
            for (u, c) in used.iter_mut().zip(counts) {
                *u |= *c > 0;
            }
        }
        used
    }

    /// Whether anyone listens behind `outlet`.
    pub fn reaches(&self, outlet: usize) -> bool {
        self.per_outlet.get(outlet).is_some_and(|counts| counts.iter().any(|c| *c > 0))
    }

    /// Whether connections reading frames listen behind `outlet`.
    pub fn frames_reach(&self, outlet: usize) -> bool {
        let slot = Listen::Messages.slot();
        self.per_outlet
            .get(outlet)
            .is_some_and(|counts| counts.iter().enumerate().any(|(i, c)| i != slot && *c > 0))
    }

    /// What is left of a deleted channel: no history, and only its
    /// whole-message listeners (engine sessions stay subscribed, as a
    /// stream's client would after reconnecting); `None` if it had none.
    pub fn carry_over(&self, complete_after: MessageId) -> Option<Channel> {
        let slot = Listen::Messages.slot();
        let mut fresh = Channel::new(self.per_outlet.len(), complete_after);
        for (counts, kept) in self.per_outlet.iter().zip(fresh.per_outlet.iter_mut()) {
            kept[slot] = counts[slot];
            fresh.subscribers += counts[slot] as usize;
        }
        fresh.peak_subscribers = fresh.subscribers;
        (fresh.subscribers > 0).then_some(fresh)
    }

    pub fn add_subscriber(&mut self, outlet: usize, listen: Listen) {
        if let Some(counts) = self.per_outlet.get_mut(outlet) {
            counts[listen.slot()] += 1;
            self.subscribers += 1;
            self.peak_subscribers = self.peak_subscribers.max(self.subscribers);
        }
    }

    pub fn remove_subscriber(&mut self, outlet: usize, listen: Listen) {
        if let Some(counts) = self.per_outlet.get_mut(outlet) {
            let c = &mut counts[listen.slot()];
            if *c > 0 {
                *c -= 1;
                self.subscribers -= 1;
            }
        }
    }

    /// Nothing retained and nobody listening: the record can go.
    pub fn is_idle(&self) -> bool {
        self.subscribers == 0 && self.history.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> Arc<Message> {
        Arc::new(Message::new(MessageId::new(10, seq), Arc::from("c"), None, "x".into()))
    }

    #[test]
    fn history_is_bounded_and_reports_gaps() {
        let mut ch = Channel::new(1, MessageId::new(5, 0));
        for seq in 1..=5 {
            ch.push(msg(seq), 3);
        }
        assert_eq!(ch.retained(), 3);
        let ids = |id: MessageId| {
            let (it, gap) = ch.after(id);
            (it.map(|m| m.id.seq).collect::<Vec<_>>(), gap)
        };
        assert_eq!(ids(MessageId::new(10, 2)), (vec![3, 4, 5], false));
        assert_eq!(ids(MessageId::new(10, 1)), (vec![3, 4, 5], true));
        assert_eq!(ids(MessageId::new(10, 4)), (vec![5], false));
        assert_eq!(ids(MessageId::new(10, 9)), (vec![], false));
        assert_eq!(ch.last(2).map(|m| m.id.seq).collect::<Vec<_>>(), vec![4, 5]);
        let mut fresh = Channel::new(1, MessageId::new(5, 0));
        fresh.push(msg(1), 3);
        assert!(fresh.after(MessageId::new(4, 0)).1, "resume from before the mark is a gap");
        assert!(!fresh.after(MessageId::new(5, 0)).1);
    }

    #[test]
    fn counts_subscribers_per_loop_and_encoding() {
        let mut ch = Channel::new(2, MessageId::ZERO);
        ch.add_subscriber(1, Listen::Frames(Encoding::Sse));
        ch.add_subscriber(1, Listen::Frames(Encoding::Sse));
        ch.add_subscriber(0, Listen::Frames(Encoding::Envelope));
        ch.add_subscriber(7, Listen::Frames(Encoding::Sse));
        ch.add_subscriber(0, Listen::Messages);
        assert_eq!((ch.subscribers, ch.peak_subscribers), (4, 4));
        assert_eq!(ch.encodings_in_use()[..3], [true, true, false]);
        assert!(ch.reaches(0) && ch.reaches(1));
        let kept = ch.carry_over(MessageId::new(9, 0)).expect("one whole-message listener");
        assert_eq!(kept.subscribers, 1);
        assert!(kept.reaches(0) && !kept.frames_reach(0) && !kept.reaches(1));
        assert!(ch.frames_reach(1));
        ch.remove_subscriber(1, Listen::Frames(Encoding::Sse));
        ch.remove_subscriber(1, Listen::Frames(Encoding::Stream));
        ch.remove_subscriber(0, Listen::Messages);
        assert_eq!((ch.subscribers, ch.peak_subscribers), (2, 4));
    }
}
