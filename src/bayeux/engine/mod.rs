//! The Bayeux session engine: handshakes, sessions and their subscriptions,
//! held `/meta/connect` requests, per-session queues, expiry. Pure state
//! machine: it is handed requests, hub messages and the time, and emits
//! [`Output`]s; the Bayeux thread (`thread.rs`) does the I/O.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use super::channel;
use super::message::{Incoming, Unreadable};
use crate::clock::unix_secs;
use crate::fanout::NewMessage;
use crate::random::Random;

pub use crate::hub::ConnRef;
use crate::hub::{MessageId, Pattern};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    LongPolling,
    CallbackPolling,
    WebSocket,
}

const SUPPORTED: [&str; 3] = ["long-polling", "callback-polling", "websocket"];

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a `/meta/connect` is held (`advice.timeout`).
    pub timeout: Duration,
    /// `advice.interval`: how long the client waits between connects.
    pub interval: Duration,
    /// A session with no `/meta/connect` for this long after its last
    /// connect answer is dropped.
    pub max_interval: Duration,
    /// Messages a session may have queued; over it the session is dropped
    /// (its client re-handshakes), as Pushlet and CometD bound theirs.
    pub max_queue: usize,
    /// Channel patterns clients may publish to (`/**` = every broadcast channel).
    pub publish_allow: Vec<String>,
    /// Add `ext.halley` to delivered messages: publish time, subscriber
    /// count and the publisher's address (the seed application's chat did).
    pub add_fields: bool,
    /// Retained messages sent to a new subscriber of a channel (0 = none).
    pub history_on_subscribe: usize,
    /// Tokens (`ext.token` in the handshake) for channels that need one.
    pub auth: Option<crate::auth::Policy>,
}

/// What the engine asks the thread to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Answer a polling request (the whole body) or send one WebSocket frame.
    Reply { to: ConnRef, messages: Vec<Value> },
    /// A session subscribed to a hub channel: subscribe one more listener at
    /// the hub, with the channel's last `backlog` messages handed back under
    /// `tag` to [`Engine::deliver_history`] (after the subscribe reply).
    Listen { channel: Arc<str>, backlog: usize, tag: u64 },
    /// A session left a hub channel: one listener fewer.
    Unlisten { channel: Arc<str> },
    /// Sessions on a wildcard: `delta` more (or fewer) at the hub.
    Watch { pattern: Pattern, delta: i32 },
}

/// Hands a client's publish (and its address) to the hub; the error is a
/// Bayeux error text (`429::…`, `503::…`) when it is refused.
pub type PublishFn<'a> = &'a mut dyn FnMut(NewMessage, Option<IpAddr>) -> Result<(), String>;

/// One HTTP request's (or WebSocket frame's) messages.
pub struct Request {
    pub from: ConnRef,
    pub transport: Transport,
    pub messages: Vec<Result<Incoming, Unreadable>>,
    pub remote: Option<IpAddr>,
}

/// A held `/meta/connect` and the replies that wait with it.
struct Hold {
    to: ConnRef,
    transport: Transport,
    deadline: Instant,
    replies: Vec<Value>,
    connect: Value,
}

struct Session {
    subscriptions: HashSet<String>,
    queue: VecDeque<Value>,
    hold: Option<Hold>,
    /// The WebSocket the client talks over, if any: deliveries go straight to it.
    socket: Option<ConnRef>,
    connected_once: bool,
    /// Dropped if no connect arrives by then (none while a connect is held).
    expires_at: Option<Instant>,
    /// Per channel, the newest id already sent as history: the same message
    /// arriving live is not sent twice. `MessageId::MAX` while the history is
    /// on its way: live messages until then are in it.
    history_upto: HashMap<String, MessageId>,
    /// The handshake's token, when one was given and verified.
    claims: Option<crate::auth::Claims>,
}

pub struct Engine {
    config: Config,
    sessions: HashMap<String, Session>,
    /// Concrete channel → sessions subscribed to exactly it.
    exact: HashMap<String, HashSet<String>>,
    /// Wildcard pattern → sessions subscribed to it.
    wildcards: HashMap<String, HashSet<String>>,
    random: Random,
    /// History asked of the hub and not yet answered: tag → (session, channel).
    history_waits: HashMap<u64, (String, String)>,
    next_tag: u64,
}

impl Engine {
    pub fn new(config: Config) -> Engine {
        Engine {
            config,
            sessions: HashMap::new(),
            exact: HashMap::new(),
            wildcards: HashMap::new(),
            random: Random::new(),
            history_waits: HashMap::new(),
            next_tag: 0,
        }
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// A random client id: 64 random bits (std's per-process SipHash keys,
    /// fed a counter) and the counter, so ids never repeat in a process.
    fn new_client_id(&mut self) -> String {
        let (bits, counter) = self.random.next_counted();
        format!("{bits:016x}{counter:x}")
    }

    fn advice(&self) -> Value {
        json!({
            "reconnect": "retry",
            "interval": self.config.interval.as_millis() as u64,
            "timeout": self.config.timeout.as_millis() as u64,
        })
    }

    /// Handles one request's messages in order.
    pub fn request(&mut self, req: Request, now: Instant, publish: PublishFn<'_>, out: &mut Vec<Output>) {
        let mut replies = Vec::new();
        let mut held: Option<(String, Value)> = None;
        let from = req.from;
        let transport = req.transport;
        let remote = req.remote;
        for message in req.messages {
            let m = match message {
                Ok(m) => m,
                Err(u) => {
                    replies.push(unreadable_reply(u));
                    continue;
                }
            };
            if let (Some(cid), Transport::WebSocket) = (&m.client_id, transport) {
                if let Some(session) = self.sessions.get_mut(cid) {
                    session.socket = Some(from);
                }
            }
            match m.channel.as_str() {
                "/meta/handshake" => replies.push(self.handshake(&m, from, transport)),
                "/meta/connect" => match self.connect(&m, now, out) {
                    Connect::Now(messages) => replies.extend(messages),
                    Connect::Hold(cid, reply) => held = Some((cid, reply)),
                },
                "/meta/subscribe" => replies.push(self.subscribe(&m, out)),
                "/meta/unsubscribe" => replies.push(self.unsubscribe(&m, out)),
                "/meta/disconnect" => replies.push(self.disconnect(&m, now, out)),
                other if channel::is_meta(other) => {
                    replies.push(failure(&m, "400::unknown meta channel", None));
                }
                _ => replies.push(self.publish(m, remote, publish)),
            }
        }
        match held {
            Some((cid, connect)) => {
                let deadline = now + self.config.timeout;
                let hold = Hold { to: from, transport, deadline, replies, connect };
                self.hold(&cid, hold, now, out);
            }
            None if !replies.is_empty() => out.push(Output::Reply { to: from, messages: replies }),
            None => {}
        }
    }

    fn handshake(&mut self, m: &Incoming, from: ConnRef, transport: Transport) -> Value {
        if !m.supported_connection_types.is_empty()
            && !m.supported_connection_types.iter().any(|t| SUPPORTED.contains(&t.as_str()))
        {
            let mut reply =
                failure(m, "301::no supported connection type", Some(json!({"reconnect": "none"})));
            reply["supportedConnectionTypes"] = json!(SUPPORTED);
            reply["version"] = json!("1.0");
            return reply;
        }
        let token = m.ext.as_ref().and_then(|e| e.get("token")).and_then(Value::as_str);
        let claims = match (&self.config.auth, token) {
            (Some(policy), Some(token)) => match policy.verify(Some(token), unix_secs()) {
                Ok(claims) => Some(claims),
                Err(denied) => {
                    return failure(m, &format!("401::{}", denied.reason), Some(json!({"reconnect": "none"})))
                }
            },
            _ => None,
        };
        let cid = self.new_client_id();
        let session = Session {
            subscriptions: HashSet::new(),
            queue: VecDeque::new(),
            hold: None,
            socket: (transport == Transport::WebSocket).then_some(from),
            connected_once: false,
            expires_at: None,
            history_upto: HashMap::new(),
            claims,
        };
        self.sessions.insert(cid.clone(), session);
        let mut reply = json!({
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": SUPPORTED,
            "clientId": cid,
            "successful": true,
            "advice": self.advice(),
        });
        copy_id_ext(m, &mut reply);
        reply
    }

    fn connect(&mut self, m: &Incoming, now: Instant, out: &mut Vec<Output>) -> Connect {
        let Some(cid) = m.client_id.clone().filter(|c| self.sessions.contains_key(c)) else {
            return Connect::Now(vec![unknown_client(m)]);
        };
        let advice = self.advice();
        let mut reply =
            json!({ "channel": "/meta/connect", "clientId": cid, "successful": true, "advice": advice });
        copy_id_ext(m, &mut reply);
        let Some(session) = self.sessions.get_mut(&cid) else { return Connect::Now(vec![unknown_client(m)]) };
        // A newer connect releases an older one still held.
        if let Some(old) = session.hold.take() {
            out.push(release(old, &mut session.queue));
        }
        // The first connect after a handshake is answered at once, as CometD
        // clients expect; so is one that finds messages waiting.
        let first = !session.connected_once;
        session.connected_once = true;
        if first || !session.queue.is_empty() {
            session.expires_at = Some(now + self.config.timeout + self.config.max_interval);
            let mut messages: Vec<Value> = session.queue.drain(..).collect();
            messages.push(reply);
            return Connect::Now(messages);
        }
        Connect::Hold(cid, reply)
    }

    fn hold(&mut self, cid: &str, mut hold: Hold, now: Instant, out: &mut Vec<Output>) {
        let Some(session) = self.sessions.get_mut(cid) else {
            // The session ended in the same request (a disconnect after the
            // connect): answer everything now.
            hold.connect["advice"] = json!({ "reconnect": "none", "interval": 0 });
            out.push(release(hold, &mut VecDeque::new()));
            return;
        };
        if hold.transport == Transport::WebSocket && !hold.replies.is_empty() {
            out.push(Output::Reply { to: hold.to, messages: std::mem::take(&mut hold.replies) });
        }
        if let Some(old) = session.hold.take() {
            out.push(release(old, &mut session.queue));
        }
        session.expires_at = None;
        session.hold = Some(hold);
        let _ = now;
    }

    fn subscribe(&mut self, m: &Incoming, out: &mut Vec<Output>) -> Value {
        let Some(cid) = self.known(m) else { return unknown_client(m) };
        if let Err(e) = check_subscriptions(&m.subscription) {
            return with_subscription(failure(m, &e, None), m);
        }
        if let Err(e) = self.granted(&cid, &m.subscription, |c| &c.channels) {
            return with_subscription(failure(m, &e, None), m);
        }
        for sub in &m.subscription {
            let fresh = self.sessions.get_mut(&cid).is_some_and(|s| s.subscriptions.insert(sub.clone()));
            if !fresh {
                continue;
            }
            let index = if channel::is_wildcard(sub) { &mut self.wildcards } else { &mut self.exact };
            index.entry(sub.clone()).or_default().insert(cid.clone());
            self.listen(&cid, sub, out);
        }
        let mut reply = json!({ "channel": "/meta/subscribe", "clientId": cid, "successful": true });
        copy_id_ext(m, &mut reply);
        with_subscription(reply, m)
    }

    /// Tells the hub about a session's new subscription (asking for history
    /// where configured).
    fn listen(&mut self, cid: &str, sub: &str, out: &mut Vec<Output>) {
        if let Some(pattern) = hub_pattern(sub) {
            return out.push(Output::Watch { pattern, delta: 1 });
        }
        let Ok(hub) = channel::to_hub(sub) else { return };
        // A session whose wildcard already brings this channel gets it live
        // already: history would repeat what it has.
        let covered = self.sessions.get(cid).is_some_and(|s| {
            s.subscriptions.iter().any(|w| channel::is_wildcard(w) && channel::matches(w, sub))
        });
        let backlog = if covered { 0 } else { self.config.history_on_subscribe };
        let tag = self.next_tag;
        self.next_tag += 1;
        if backlog > 0 {
            self.history_waits.insert(tag, (cid.to_string(), sub.to_string()));
            if let Some(session) = self.sessions.get_mut(cid) {
                session.history_upto.insert(sub.to_string(), MessageId::MAX);
            }
        }
        out.push(Output::Listen { channel: Arc::from(hub), backlog, tag });
    }

    /// The hub counterpart of dropping one subscription.
    fn unlisten(sub: &str, out: &mut Vec<Output>) {
        if let Some(pattern) = hub_pattern(sub) {
            out.push(Output::Watch { pattern, delta: -1 });
        } else if let Ok(hub) = channel::to_hub(sub) {
            out.push(Output::Unlisten { channel: Arc::from(hub) });
        }
    }

    fn unsubscribe(&mut self, m: &Incoming, out: &mut Vec<Output>) -> Value {
        let Some(cid) = self.known(m) else { return unknown_client(m) };
        if let Err(e) = check_subscriptions(&m.subscription) {
            return with_subscription(failure(m, &e, None), m);
        }
        for sub in &m.subscription {
            self.forget_subscription(&cid, sub, out);
        }
        let mut reply = json!({ "channel": "/meta/unsubscribe", "clientId": cid, "successful": true });
        copy_id_ext(m, &mut reply);
        with_subscription(reply, m)
    }

    fn forget_subscription(&mut self, cid: &str, sub: &str, out: &mut Vec<Output>) {
        let had = self.sessions.get_mut(cid).is_some_and(|s| {
            s.history_upto.remove(sub);
            s.subscriptions.remove(sub)
        });
        if had {
            Self::unlisten(sub, out);
            // History still on its way for this subscription is not wanted.
            self.history_waits.retain(|_, (waiting, name)| !(waiting == cid && name == sub));
        }
        let index = if channel::is_wildcard(sub) { &mut self.wildcards } else { &mut self.exact };
        if let Some(sessions) = index.get_mut(sub) {
            sessions.remove(cid);
            if sessions.is_empty() {
                index.remove(sub);
            }
        }
    }

    fn disconnect(&mut self, m: &Incoming, _now: Instant, out: &mut Vec<Output>) -> Value {
        let Some(cid) = self.known(m) else { return unknown_client(m) };
        // A connect still held is answered as CometD's server does: successful,
        // with advice not to reconnect (not "handshake", which would make the
        // client abort its own disconnect).
        if let Some(session) = self.sessions.get_mut(&cid) {
            if let Some(mut hold) = session.hold.take() {
                hold.connect["advice"] = json!({ "reconnect": "none", "interval": 0 });
                out.push(release(hold, &mut session.queue));
            }
        }
        self.drop_session(&cid, out);
        let mut reply = json!({ "channel": "/meta/disconnect", "clientId": cid, "successful": true });
        copy_id_ext(m, &mut reply);
        reply
    }

    /// Removes a session; a held connect is answered so its request ends.
    fn drop_session(&mut self, cid: &str, out: &mut Vec<Output>) {
        let subscriptions: Vec<String> =
            self.sessions.get(cid).map(|s| s.subscriptions.iter().cloned().collect()).unwrap_or_default();
        for sub in subscriptions {
            self.forget_subscription(cid, &sub, out);
        }
        self.history_waits.retain(|_, (waiting, _)| waiting != cid);
        let Some(mut session) = self.sessions.remove(cid) else { return };
        if let Some(mut hold) = session.hold.take() {
            hold.connect["successful"] = json!(false);
            hold.connect["error"] = json!("402::Unknown client");
            hold.connect["advice"] = json!({"reconnect": "handshake", "interval": 0});
            out.push(release(hold, &mut VecDeque::new()));
        }
    }

    fn publish(&mut self, m: Incoming, remote: Option<IpAddr>, publish: PublishFn<'_>) -> Value {
        if self.known(&m).is_none() {
            return unknown_client(&m);
        }
        if let Err(e) = channel::check(&m.channel) {
            return failure(&m, &format!("400::{e}"), None);
        }
        if channel::is_wildcard(&m.channel) {
            return failure(&m, "400::cannot publish to a wildcard channel", None);
        }
        let mut reply = json!({ "channel": m.channel, "successful": true });
        copy_id_ext(&m, &mut reply);
        if channel::is_service(&m.channel) {
            // Service channels talk to the server only; nothing is broadcast.
            return reply;
        }
        if !self.config.publish_allow.iter().any(|p| channel::matches(p, &m.channel) || *p == m.channel) {
            return failure(&m, "403::publish denied", None);
        }
        let hub = match channel::to_hub(&m.channel) {
            Ok(hub) => hub,
            Err(e) => return failure(&m, &format!("400::{e}"), None),
        };
        if let Some(cid) = &m.client_id {
            if let Err(e) = self.granted(cid, std::slice::from_ref(&m.channel), |c| &c.publish) {
                return failure(&m, &e, None);
            }
        }
        let data = m.data.as_ref().map_or_else(|| "null".to_string(), Value::to_string);
        let mut ext = m.ext.clone();
        if let (true, Some(ip)) = (self.config.add_fields, remote) {
            ext.get_or_insert_with(|| json!({}))["halley"] = json!({ "publisher_ip": ip.to_string() });
        }
        let ext = ext.map(|e| e.to_string().into_boxed_str());
        if let Err(error) =
            publish(NewMessage { channel: Arc::from(hub), event: None, data: data.into(), ext }, remote)
        {
            return failure(&m, &error, None);
        }
        reply
    }

    /// Whether the session's token grants `channels` (Bayeux names, maybe
    /// wildcards) where the policy needs one; the Bayeux error text if not.
    fn granted(
        &self,
        cid: &str,
        channels: &[String],
        claim: impl Fn(&crate::auth::Claims) -> &Vec<String>,
    ) -> Result<(), String> {
        let Some(policy) = &self.config.auth else { return Ok(()) };
        let claims = self.sessions.get(cid).and_then(|s| s.claims.as_ref());
        for name in channels {
            let hub = name.strip_prefix('/').unwrap_or(name);
            if !policy.requires(hub) {
                continue;
            }
            let Some(claims) = claims else {
                return Err(format!("401::channel {name} needs a token: send ext.token in the handshake"));
            };
            if claims.exp.is_some_and(|exp| unix_secs() >= exp) {
                return Err("401::token has expired".into());
            }
            if !claim(claims).iter().any(|p| crate::auth::pattern_matches(p, hub)) {
                return Err(format!("403::the token does not grant {name}"));
            }
        }
        Ok(())
    }

    /// Whether a session's (unexpired) token grants a concrete hub channel.
    fn session_grants(&self, cid: &str, hub: &str) -> bool {
        let claims = self.sessions.get(cid).and_then(|s| s.claims.as_ref());
        claims.is_some_and(|c| {
            c.exp.is_none_or(|exp| unix_secs() < exp)
                && c.channels.iter().any(|p| crate::auth::pattern_matches(p, hub))
        })
    }

    fn known(&self, m: &Incoming) -> Option<String> {
        m.client_id.clone().filter(|c| self.sessions.contains_key(c))
    }

    /// A loop is shutting down: its held connects are answered now, so
    /// clients reconnect (to another node or after the restart) at once.
    pub fn shutdown(&mut self, loop_id: usize, out: &mut Vec<Output>) {
        for session in self.sessions.values_mut() {
            if session.hold.as_ref().is_some_and(|h| h.to.loop_id == loop_id) {
                if let Some(hold) = session.hold.take() {
                    out.push(release(hold, &mut session.queue));
                }
            }
        }
    }

    /// Answers held connects whose time is up and drops expired sessions.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        let mut expired = Vec::new();
        for (cid, session) in &mut self.sessions {
            if session.hold.as_ref().is_some_and(|h| h.deadline <= now) {
                if let Some(hold) = session.hold.take() {
                    out.push(release(hold, &mut session.queue));
                }
                session.expires_at = Some(now + self.config.max_interval);
            } else if session.hold.is_none() && session.expires_at.is_some_and(|at| at <= now) {
                expired.push(cid.clone());
            } else if session.hold.is_none() && session.expires_at.is_none() && !session.connected_once {
                // Handshaken but never connected: give it the usual grace.
                session.expires_at = Some(now + self.config.max_interval);
            }
        }
        // A session whose token has expired ends: its client gets 402 and
        // must handshake again with a fresh token.
        let secs = unix_secs();
        expired.extend(
            self.sessions
                .iter()
                .filter(|(_, s)| s.claims.as_ref().and_then(|c| c.exp).is_some_and(|exp| secs >= exp))
                .map(|(cid, _)| cid.clone()),
        );
        for cid in expired {
            self.drop_session(&cid, out);
        }
    }

    /// A WebSocket closed: its sessions go back to queueing (and expire
    /// unless the client connects again).
    /// A connection closed: a WebSocket's sessions go back to queueing, and
    /// a connect held on it is forgotten (its queue stays for the client's
    /// next connect); either way the session expires unless the client
    /// connects again.
    pub fn closed(&mut self, conn: ConnRef, now: Instant) {
        for session in self.sessions.values_mut() {
            let held_here = session.hold.as_ref().is_some_and(|h| h.to == conn);
            if session.socket == Some(conn) || held_here {
                if session.socket == Some(conn) {
                    session.socket = None;
                }
                if held_here {
                    session.hold = None;
                }
                session.expires_at = Some(now + self.config.max_interval);
            }
        }
    }
}

/// The hub pattern of a Bayeux wildcard (`/a/*`, `/a/**`), `None` for a
/// concrete channel.
fn hub_pattern(sub: &str) -> Option<Pattern> {
    let parent = |p: &str| p.strip_prefix('/').unwrap_or(p).into();
    if let Some(p) = sub.strip_suffix("/**") {
        return Some(Pattern::Descendants(parent(p)));
    }
    sub.strip_suffix("/*").map(|p| Pattern::Children(parent(p)))
}

enum Connect {
    /// Answer now: queued deliveries, then the connect reply.
    Now(Vec<Value>),
    Hold(String, Value),
}

/// Ends a hold: its waiting replies, the queued deliveries, then the connect reply.
fn release(hold: Hold, queue: &mut VecDeque<Value>) -> Output {
    let mut messages = hold.replies;
    messages.extend(queue.drain(..));
    messages.push(hold.connect);
    Output::Reply { to: hold.to, messages }
}

fn copy_id_ext(m: &Incoming, reply: &mut Value) {
    if let Some(id) = &m.id {
        reply["id"] = id.clone();
    }
    if let Some(ext) = &m.ext {
        reply["ext"] = ext.clone();
    }
}

fn with_subscription(mut reply: Value, m: &Incoming) -> Value {
    reply["subscription"] = match m.subscription.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    reply
}

fn failure(m: &Incoming, error: &str, advice: Option<Value>) -> Value {
    let mut reply = json!({ "channel": m.channel, "successful": false, "error": error });
    if let Some(cid) = &m.client_id {
        reply["clientId"] = json!(cid);
    }
    if let Some(advice) = advice {
        reply["advice"] = advice;
    }
    copy_id_ext(m, &mut reply);
    reply
}

fn unknown_client(m: &Incoming) -> Value {
    failure(m, "402::Unknown client", Some(json!({ "reconnect": "handshake", "interval": 0 })))
}

fn unreadable_reply(u: Unreadable) -> Value {
    let mut reply = Map::new();
    reply.insert("channel".into(), json!(u.channel.unwrap_or_else(|| "/meta/unknown".into())));
    reply.insert("successful".into(), json!(false));
    reply.insert("error".into(), json!(u.error));
    if let Some(id) = u.id {
        reply.insert("id".into(), id);
    }
    Value::Object(reply)
}

fn check_subscriptions(subs: &[String]) -> Result<(), String> {
    if subs.is_empty() {
        return Err("400::no subscription given".into());
    }
    for sub in subs {
        channel::check(sub).map_err(|e| format!("400::{e}"))?;
        if channel::is_meta(sub) {
            return Err(format!("403::cannot subscribe to meta channel {sub}"));
        }
    }
    Ok(())
}

mod deliver;

#[cfg(test)]
mod tests;
