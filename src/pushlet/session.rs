//! A session's state: its subscriptions, queue and link.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::engine::ConnRef;
use super::event::{Event, Format};
use super::reply::{event, heartbeat, refresh_event};
use super::request::{Mode, SubscriptionSpec};

pub(super) struct Subscription {
    pub(super) sid: String,
    pub(super) spec: SubscriptionSpec,
}

impl Subscription {
    /// Pushlet's rule: a plain string prefix of the event's subject.
    pub(super) fn matches(&self, subject: &str) -> bool {
        !subject.is_empty() && self.spec.subjects.iter().any(|s| subject.starts_with(s.as_str()))
    }
}

/// A data event waiting in a session's queue. The event itself is shared by
/// every receiver of one message; `tag` is the receiver's own subscription
/// (`p_sid`, `p_label`), absent on unicasts.
pub(super) struct Queued {
    pub(super) base: Arc<Event>,
    pub(super) tag: Option<(String, Option<String>)>,
}

impl Queued {
    /// The event as sent: the base's head (up to `p_subject`), then `p_seq`,
    /// `p_sid`, `p_label`, then the rest of the base.
    pub(super) fn materialize(&self, seq: u64) -> Event {
        let split =
            self.base.iter().position(|(n, _)| n == "p_subject").map_or(self.base.len().min(2), |i| i + 1);
        let mut event: Event = self.base.iter().take(split).cloned().collect();
        event.push(("p_seq".into(), seq.to_string()));
        if let Some((sid, label)) = &self.tag {
            event.push(("p_sid".into(), sid.clone()));
            if let Some(label) = label {
                event.push(("p_label".into(), label.clone()));
            }
        }
        event.extend(self.base.iter().skip(split).cloned());
        event
    }
}

/// A session's one connection, if any.
pub(super) enum Link {
    /// An open stream; `seq` is the last `p_seq` written on it.
    Stream { to: ConnRef, seq: u64, quiet_until: Instant },
    /// A held pull `refresh`, answered by events or at `until`.
    Held { to: ConnRef, until: Instant, url: String },
}

impl Link {
    pub(super) fn to(&self) -> ConnRef {
        match self {
            Link::Stream { to, .. } | Link::Held { to, .. } => *to,
        }
    }
}

pub(super) struct Session {
    pub(super) format: Format,
    /// Set by `listen`; until then the session receives no events.
    pub(super) mode: Option<Mode>,
    /// In creation order: the first match stamps a delivered event.
    pub(super) subscriptions: Vec<Subscription>,
    pub(super) queue: VecDeque<Queued>,
    pub(super) link: Option<Link>,
    /// Dropped at this time if it has no link then.
    pub(super) lease_until: Instant,
    /// The earliest timer entry this session has in the heap, if known.
    pub(super) armed: Option<Instant>,
    /// The token given at join, when auth is on and one was given.
    pub(super) claims: Option<crate::auth::Claims>,
}

impl Session {
    /// When the engine next has to look at this session.
    pub(super) fn deadline(&self) -> Instant {
        match &self.link {
            Some(Link::Stream { quiet_until, .. }) => *quiet_until,
            Some(Link::Held { until, .. }) => *until,
            None => self.lease_until,
        }
    }

    pub(super) fn first_match(&self, subject: &str) -> Option<&Subscription> {
        self.subscriptions.iter().find(|s| s.matches(subject))
    }

    /// Drains the queue as events numbered from `first_seq`.
    pub(super) fn drain(&mut self, first_seq: u64) -> Vec<Event> {
        self.queue.drain(..).zip(first_seq..).map(|(q, seq)| q.materialize(seq)).collect()
    }
}

/// A pull/poll answer: `[refresh-ack, queued (p_seq 1..), refresh]`, with an
/// `hb` (p_seq 1) in place of events when none wait and `hb_if_empty`.
pub(super) fn batch(session: &mut Session, hb_if_empty: bool, wait_ms: u64, url: &str) -> Vec<Event> {
    let mut events = vec![event("refresh-ack")];
    let queued = session.drain(1);
    if queued.is_empty() && hb_if_empty {
        events.push(heartbeat(1));
    }
    events.extend(queued);
    events.push(refresh_event(wait_ms, url));
    events
}
