//! Delivery: hub messages to the sessions subscribed to their channels,
//! history after a subscribe, deleted channels, and handing deliveries to a
//! session's WebSocket or queue.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use super::{channel, release, Engine, Output, Transport};
use crate::hub::Message;

impl Engine {
    /// Hands hub messages to the sessions subscribed to their channels.
    pub fn deliver(&mut self, messages: &[Arc<Message>], now: Instant, out: &mut Vec<Output>) {
        let mut touched: HashMap<String, Vec<Value>> = HashMap::new();
        for message in messages {
            let name = channel::from_hub(&message.channel);
            let mut targets: HashSet<&String> = HashSet::new();
            if let Some(sessions) = self.exact.get(&name) {
                targets.extend(sessions);
            }
            for (pattern, sessions) in &self.wildcards {
                if channel::matches(pattern, &name) {
                    targets.extend(sessions);
                }
            }
            if targets.is_empty() {
                continue;
            }
            let delivery = self.delivery(message, &name, targets.len());
            let protected = self.config.auth.as_ref().is_some_and(|p| p.requires(&message.channel));
            for cid in targets {
                // A wildcard may reach channels that need a token: only a
                // session whose token grants this very channel gets it.
                if protected && !self.session_grants(cid, &message.channel) {
                    continue;
                }
                let sent_as_history = self
                    .sessions
                    .get(cid)
                    .and_then(|s| s.history_upto.get(&name))
                    .is_some_and(|upto| message.id <= *upto);
                if !sent_as_history {
                    touched.entry(cid.clone()).or_default().push(delivery.clone());
                }
            }
        }
        self.hand_over(touched, now, out);
    }

    /// The hub's answer to a `Listen` under `tag`: a new subscriber's
    /// history, delivered after its subscribe reply and before anything live.
    pub fn deliver_history(
        &mut self,
        tag: u64,
        messages: &[Arc<Message>],
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let Some((client, name)) = self.history_waits.remove(&tag) else { return };
        // Unsubscribed meanwhile: the history is no longer wanted.
        if !self.sessions.get(&client).is_some_and(|s| s.subscriptions.contains(&name)) {
            return;
        }
        let subscribers = self.exact.get(&name).map_or(0, HashSet::len);
        let deliveries: Vec<Value> = messages.iter().map(|m| self.delivery(m, &name, subscribers)).collect();
        let Some(session) = self.sessions.get_mut(&client) else { return };
        match messages.last() {
            Some(last) => session.history_upto.insert(name, last.id),
            None => session.history_upto.remove(&name),
        };
        if !deliveries.is_empty() {
            self.hand_over(HashMap::from([(client, deliveries)]), now, out);
        }
    }

    /// Subscriptions held by all sessions (for `/metrics`).
    pub fn subscriptions(&self) -> usize {
        self.sessions.values().map(|s| s.subscriptions.len()).sum()
    }

    /// Gives each session its deliveries: pushed on its WebSocket, or queued
    /// (answering a held long-poll). A queue over its bound drops the session.
    pub(super) fn hand_over(
        &mut self,
        touched: HashMap<String, Vec<Value>>,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let mut overflowed = Vec::new();
        for (cid, deliveries) in touched {
            let Some(session) = self.sessions.get_mut(&cid) else { continue };
            if let Some(socket) = session.socket {
                out.push(Output::Reply { to: socket, messages: deliveries });
                continue;
            }
            session.queue.extend(deliveries);
            if session.queue.len() > self.config.max_queue {
                overflowed.push(cid);
                continue;
            }
            let polling = session.hold.as_ref().is_some_and(|h| h.transport != Transport::WebSocket);
            if polling {
                if let Some(hold) = session.hold.take() {
                    out.push(release(hold, &mut session.queue));
                    session.expires_at = Some(now + self.config.max_interval);
                }
            }
        }
        for cid in overflowed {
            self.drop_session(&cid, out);
        }
    }

    /// One hub message as Bayeux clients see it: JSON payloads as their
    /// value, others as a string; the publisher's `ext` carried through.
    pub(super) fn delivery(&self, message: &Message, name: &str, subscribers: usize) -> Value {
        let data =
            serde_json::from_str::<Value>(&message.data).unwrap_or_else(|_| Value::from(&*message.data));
        let mut value = json!({ "channel": name, "data": data, "id": message.id.to_string() });
        let mut ext = message
            .ext
            .as_deref()
            .and_then(|t| serde_json::from_str::<Value>(t).ok())
            .filter(Value::is_object);
        if self.config.add_fields {
            let halley = &mut ext.get_or_insert_with(|| json!({}))["halley"];
            halley["published_ms"] = json!(message.id.ms);
            halley["subscribers"] = json!(subscribers);
        }
        if let Some(ext) = ext {
            value["ext"] = ext;
        }
        value
    }
}
