//! Delivery: client publishes, hub messages, and flushing queues down links.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use super::super::event::{clip, field, render_event, valid_name};
use super::super::reply::{event, hub_event, nack, whole, Reply};
use super::super::request::{hub_message, payload_fields, Mode};
use super::super::session::{batch, Link, Queued};
use super::{later, Engine, Output, PublishFn};
use crate::clock::unix_secs;
use crate::hub::Message;

impl Engine {
    /// `publish`: to the hub (multicast) or, with `p_to`, to one session's
    /// queue. Either way only to subjects on the allow list. The event's
    /// fields are its parameters whose names are valid and not `p_`.
    pub(super) fn publish(
        &mut self,
        id: &str,
        reply: &Reply,
        fields: &[(String, String)],
        now: Instant,
        publish: PublishFn<'_>,
        out: &mut Vec<Output>,
    ) {
        let subject = field(fields, "p_subject").map(str::trim).unwrap_or_default();
        if subject.is_empty() {
            return out.push(nack(reply, "no subject provided"));
        }
        if !self.config.publish_allow.iter().any(|prefix| subject.starts_with(prefix.as_str())) {
            return out.push(nack(reply, &format!("publishing to {} is not allowed", clip(subject))));
        }
        let attributes: Vec<(String, String)> =
            fields.iter().filter(|(name, _)| valid_name(name) && !name.starts_with("p_")).cloned().collect();
        let mut message = match hub_message(subject, attributes) {
            Ok(message) => message,
            Err(reason) => return out.push(nack(reply, &reason)),
        };
        if let Some(policy) = &self.config.auth {
            let claims = self.sessions.get(id).and_then(|s| s.claims.as_ref());
            if policy.requires(&message.channel) && !grants(claims, &message.channel, |c| &c.publish) {
                let reason =
                    format!("publishing to {} needs a token (p_token at join) that grants it", clip(subject));
                return out.push(nack(reply, &reason));
            }
        }
        let sent = match field(fields, "p_to") {
            Some(to) => publish(&mut message, false).map(|()| {
                // The screened (maybe masked) payload's fields.
                let attributes = payload_fields(&message.data);
                self.unicast(id, to, subject, attributes, now, out);
            }),
            None => publish(&mut message, true),
        };
        match sent {
            Ok(()) => out.push(whole(reply, &[event("publish-ack")])),
            Err(reason) => out.push(nack(reply, &reason)),
        }
    }

    /// Queues a `p_to` event for one listening session; like Pushlet, an
    /// unknown or non-listening target drops it silently, so ids cannot be
    /// probed through publish.
    pub(super) fn unicast(
        &mut self,
        from: &str,
        to: &str,
        subject: &str,
        attributes: Vec<(String, String)>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some(target) = self.sessions.get_mut(to).filter(|s| s.mode.is_some()) else {
            return;
        };
        let mut base = event("data");
        base.push(("p_subject".into(), subject.to_string()));
        base.push(("p_from".into(), from.to_string()));
        base.push(("p_to".into(), to.to_string()));
        base.extend(attributes);
        target.queue.push_back(Queued { base: Arc::new(base), tag: None });
        self.flush(to, now, out);
    }

    /// Hub messages for Pushlet listeners: channel `a/b` is subject `/a/b`;
    /// each listening session with a matching subscription gets one copy.
    pub fn deliver(&mut self, messages: &[Arc<Message>], now: Instant, out: &mut Vec<Output>) {
        let mut touched = Vec::new();
        let mut seen = HashSet::new();
        for message in messages {
            let subject = format!("/{}", message.channel);
            let candidates = self.candidates(&subject);
            if candidates.is_empty() {
                continue;
            }
            let base = Arc::new(hub_event(message, &subject));
            for id in candidates {
                let Some(session) = self.sessions.get_mut(&id).filter(|s| s.mode.is_some()) else {
                    continue;
                };
                let Some(subscription) = session.first_match(&subject) else {
                    continue;
                };
                // A channel that needs a token reaches only sessions whose
                // token (given at join) grants it, whatever their prefixes.
                if let Some(policy) = &self.config.auth {
                    if policy.requires(&message.channel)
                        && !grants(session.claims.as_ref(), &message.channel, |c| &c.channels)
                    {
                        continue;
                    }
                }
                let tag = Some((subscription.sid.clone(), subscription.spec.label.clone()));
                session.queue.push_back(Queued { base: Arc::clone(&base), tag });
                if seen.insert(id.clone()) {
                    touched.push(id);
                }
            }
        }
        for id in touched {
            self.flush(&id, now, out);
        }
    }

    /// Sessions subscribed to some prefix of `subject`.
    pub(super) fn candidates(&self, subject: &str) -> Vec<String> {
        let mut found: HashSet<&String> = HashSet::new();
        for end in (1..=subject.len()).filter(|end| subject.is_char_boundary(*end)) {
            if let Some(sessions) = subject.get(..end).and_then(|prefix| self.index.get(prefix)) {
                found.extend(sessions.keys());
            }
        }
        found.into_iter().cloned().collect()
    }

    /// Sends what a session has queued down its link, if it has one; drops
    /// the session if the queue is over `max_queue`.
    pub(super) fn flush(&mut self, id: &str, now: Instant, out: &mut Vec<Output>) {
        let read_timeout = self.read_timeout();
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        if session.queue.len() > self.config.max_queue {
            return self.drop_session(id, out);
        }
        match &mut session.link {
            Some(Link::Stream { to, seq, quiet_until }) if !session.queue.is_empty() => {
                let events =
                    session.queue.drain(..).zip(seq.saturating_add(1)..).map(|(q, n)| q.materialize(n));
                let mut body = Vec::new();
                for e in events {
                    body.extend(render_event(session.format, &e));
                    *seq = seq.saturating_add(1);
                }
                *quiet_until = later(now, read_timeout);
                out.push(Output::More { to: *to, body });
            }
            Some(Link::Held { .. }) if !session.queue.is_empty() => self.answer_held(id, now, out),
            _ => {}
        }
    }

    /// Answers a session's held `refresh` with what is queued (an `hb` if
    /// nothing is), and unlinks it.
    pub(super) fn answer_held(&mut self, id: &str, now: Instant, out: &mut Vec<Output>) {
        let lease = self.config.lease;
        let wait = self.wait_ms(Mode::Pull);
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        let Some(Link::Held { to, url, .. }) = session.link.take() else {
            return;
        };
        self.conns.remove(&to);
        session.lease_until = later(now, lease);
        let events = batch(session, true, wait, &url);
        let reply = Reply { to, format: session.format, id: None };
        out.push(whole(&reply, &events));
    }
}

/// Whether claims (unexpired) grant a concrete hub channel.
pub(super) fn grants(
    claims: Option<&crate::auth::Claims>,
    channel: &str,
    patterns: impl Fn(&crate::auth::Claims) -> &Vec<String>,
) -> bool {
    claims.is_some_and(|c| {
        c.exp.is_none_or(|exp| unix_secs() < exp)
            && patterns(c).iter().any(|p| crate::auth::pattern_matches(p, channel))
    })
}
