//! The Pushlet session engine: sessions, their subscriptions and queues, open
//! streams and held pull requests, heartbeats and leases. Pure state machine:
//! it is handed requests, hub messages and the time, and emits [`Output`]s;
//! the Pushlet thread (`thread.rs`) does the I/O.
//!
//! The protocol is Pushlet 2.0.x's (`join`, `join-listen`, `listen`, `leave`,
//! `subscribe`, `unsubscribe`, `publish`, `hb`, `refresh`, each answered by
//! its `-ack` event), with these fixes of the original's quirks:
//! - every problem is a `nack` with a `p_reason` (the original sent 400s,
//!   empty bodies or stopped the session): unknown event types, unknown or
//!   expired ids, unknown or `ser` formats, unknown modes, `refresh` before
//!   `listen` or on a stream;
//! - `poll` answers every `refresh` at once, as documented (the original
//!   waited forever on an empty queue); no mode is forced by User-Agent;
//! - a data event carries the `p_sid` and `p_label` of the receiver's own
//!   first matching subscription (the original wrote labels on the shared
//!   event, so each session saw the previous one's label);
//! - subject lists are trimmed; subscription ids are unique per session;
//! - a session lives while it has an open stream or held pull, and for
//!   `lease` after its last request otherwise (the original's separate pull
//!   liveness limit is folded into the lease);
//! - all values are escaped in every format (see `event.rs`).
//!
//! Kept from the original: plain string-prefix subject matching (`/news`
//! receives `/news/sports` and `/newsletter`), `p_seq` counted per response,
//! a bounded queue whose overflow drops the whole session, sessions that have
//! not listened receive nothing, and silent drops of unicasts to unknown ids.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::event::{clip, field, render_document, render_end, render_event, render_start, Event, Format};
use super::reply::{event, heartbeat, nack, refresh_event, refresh_url, whole, with_id, Reply};
pub use super::request::Request;
use super::request::{loose_format, Action, Command, ListenPlan, Mode, SubscriptionSpec};
use super::session::{batch, Link, Session, Subscription};
use crate::clock::unix_secs;
use crate::fanout::NewMessage;
use crate::random::Random;

mod deliver;

pub use crate::hub::ConnRef;
use crate::hub::Pattern;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// A session with no request and no open stream or held pull for this
    /// long is dropped.
    pub lease: Duration,
    /// Events a session may have waiting; over it the session is dropped (and
    /// its stream ends), as Pushlet did. Events that arrive in one
    /// [`Engine::deliver`] batch count together even for an open stream.
    pub max_queue: usize,
    /// How long a pull `refresh` is held, and the idle time after which a
    /// stream gets an `hb`.
    pub read_timeout: Duration,
    /// Tokens for channels that need one: given at join as `p_token` or
    /// `token` (the server adds an `Authorization: Bearer` token as `token`).
    pub auth: Option<crate::auth::Policy>,
    /// Range (inclusive, ms) of `p_wait` in pull mode.
    pub pull_wait_ms: (u64, u64),
    /// Range (inclusive, ms) of `p_wait` in poll mode.
    pub poll_wait_ms: (u64, u64),
    /// Subject prefixes clients may publish to; empty = publishing off.
    pub publish_allow: Vec<String>,
}

/// What the engine asks the thread to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A complete response (control answers, pull/poll answers).
    Whole { to: ConnRef, content_type: &'static str, body: Vec<u8> },
    /// Opens a streaming response with its first bytes.
    Open { to: ConnRef, content_type: &'static str, body: Vec<u8> },
    /// More bytes for an open stream.
    More { to: ConnRef, body: Vec<u8> },
    /// The last bytes of an open stream; the connection then ends.
    End { to: ConnRef, body: Vec<u8> },
}

/// Hands a client's multicast publish to the hub; `Err` is the nack reason.
/// Screens a client's publish (address rules, rates, size, the word filter,
/// which may mask the message in place) and, when the flag says so, hands it
/// to the hub; `Err` is the nack reason. Called with `false` for a `p_to`
/// unicast, which stays inside the Pushlet engine but is screened the same.
pub type PublishFn<'a> = &'a mut dyn FnMut(&mut NewMessage, bool) -> Result<(), String>;

/// Subscriptions one session may hold: each costs index entries and a scan
/// on every matching event.
const MAX_SUBSCRIPTIONS: usize = 64;
/// Random ids tried before giving up (a clash is about 1 in 10^10 each).
const ID_TRIES: usize = 16;
/// The session id is the only credential a Pushlet client holds: 20 letters
/// hold about 68 bits (Pushlet's own 10 held 34, guessable at scale).
const SESSION_ID_LEN: usize = 20;
const SID_LEN: usize = 5;
const CONSONANTS: &[u8] = b"bcdfghjklmnpqrstvwz";
const VOWELS: &[u8] = b"aeiouy";
/// The shortest stream heartbeat interval and pull hold: a zero
/// `read_timeout` would otherwise make every tick send a heartbeat.
const MIN_READ_TIMEOUT: Duration = Duration::from_millis(10);
/// Stands in for "never" when a configured duration overflows `Instant`.
const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);

/// Pushlet's `Rand.randomName`: lowercase, consonants at even positions,
/// vowels at odd ones (`bafemoruki`), about 3.4 bits a letter. Fresh
/// random bits every 8 letters, so long names stay fully random.
fn random_name(random: &mut Random, len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut bits = 0;
    for i in 0..len {
        if i % 8 == 0 {
            bits = random.next_u64();
        }
        let alphabet = if i % 2 == 0 { CONSONANTS } else { VOWELS };
        let n = alphabet.len() as u64;
        out.push(alphabet.get((bits % n) as usize).copied().map_or('a', char::from));
        bits /= n;
    }
    out
}

pub struct Engine {
    config: Config,
    sessions: HashMap<String, Session>,
    /// Subject entry → sessions with a subscription listing it (and how many
    /// of their subscriptions do), so delivery looks only at candidates.
    index: HashMap<String, HashMap<String, usize>>,
    /// Invariant: `conns[c] == s` exactly when session `s`'s link is on `c`.
    conns: HashMap<ConnRef, String>,
    /// Wake-ups, earliest first. An entry may be stale (the session moved on
    /// or is gone): [`Engine::tick`] re-checks the session and re-arms. Each
    /// session's real deadline is at or after one of its entries.
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    random: Random,
    /// Subject subscriptions added (+1) or dropped (-1) since the thread
    /// last took them, for the hub (a subject is a channel-name prefix).
    hub_changes: Vec<(Pattern, i32)>,
    /// Subject subscriptions held by all sessions (for `/metrics`).
    watching: usize,
}

impl Engine {
    pub fn new(config: Config) -> Engine {
        Engine {
            config,
            sessions: HashMap::new(),
            index: HashMap::new(),
            conns: HashMap::new(),
            timers: BinaryHeap::new(),
            random: Random::new(),
            hub_changes: Vec::new(),
            watching: 0,
        }
    }

    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    fn read_timeout(&self) -> Duration {
        self.config.read_timeout.max(MIN_READ_TIMEOUT)
    }

    /// Handles one request; every request gets exactly one answer (a
    /// `Whole`, or an `Open` for a stream), now or — for a held pull — later.
    pub fn request(&mut self, req: Request, now: Instant, publish: PublishFn<'_>, out: &mut Vec<Output>) {
        let Request { from, fields, path } = req;
        // A connection carries one request at a time: if it was linked, that
        // link is over.
        self.closed(from, now);
        let kind = field(&fields, "p_event").unwrap_or_default();
        match Command::parse(kind) {
            Some(Command::Join { listen }) => self.join(from, &fields, &path, listen, now, out),
            Some(Command::OnSession(action)) => {
                self.on_session(action, from, &fields, &path, now, publish, out)
            }
            None => {
                let reason = if kind.is_empty() {
                    "no event type specified".to_string()
                } else {
                    format!("unknown event type '{}'", clip(kind))
                };
                let reply = self.reply_for(from, &fields);
                out.push(nack(&reply, &reason));
            }
        }
    }

    /// How to answer a request that may name a session: the session's format
    /// and id when it does, else the request's `p_format` if valid, else
    /// `xml-strict` (the format today's clients parse).
    fn reply_for(&self, to: ConnRef, fields: &[(String, String)]) -> Reply {
        match field(fields, "p_id").filter(|id| self.sessions.contains_key(*id)) {
            Some(id) => {
                let format = self.sessions.get(id).map_or(Format::XmlStrict, |s| s.format);
                Reply { to, format, id: Some(id.to_string()) }
            }
            None => Reply { to, format: loose_format(fields), id: None },
        }
    }

    /// `join` and `join-listen`: everything is checked before the session is
    /// made, so a refused request leaves nothing behind.
    fn join(
        &mut self,
        from: ConnRef,
        fields: &[(String, String)],
        path: &str,
        listen: bool,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let format = match field(fields, "p_format").map_or(Ok(Format::Js), Format::parse) {
            Ok(format) => format,
            Err(reason) => {
                return out.push(nack(&Reply { to: from, format: Format::XmlStrict, id: None }, &reason))
            }
        };
        let refuse = |reason: &str, out: &mut Vec<Output>| {
            out.push(nack(&Reply { to: from, format, id: None }, reason))
        };
        let plan = match listen.then(|| ListenPlan::read(fields)).transpose() {
            Ok(plan) => plan,
            Err(reason) => return refuse(&reason, out),
        };
        let token = field(fields, "p_token").or_else(|| field(fields, "token")).filter(|t| !t.is_empty());
        let claims = match (&self.config.auth, token) {
            (Some(policy), Some(token)) => match policy.verify(Some(token), unix_secs()) {
                Ok(claims) => Some(claims),
                Err(denied) => return refuse(&denied.reason, out),
            },
            _ => None,
        };
        let Some(id) = self.new_session_id() else {
            return refuse("could not allocate a session id; retry", out);
        };
        let session = Session {
            format,
            mode: None,
            subscriptions: Vec::new(),
            queue: VecDeque::new(),
            link: None,
            lease_until: later(now, self.config.lease),
            armed: None,
            claims,
        };
        self.sessions.insert(id.clone(), session);
        let reply = Reply { to: from, format, id: Some(id.clone()) };
        match plan {
            Some(plan) => {
                self.listen(&id, &reply, plan, path, "join-listen-ack", now, out);
                // A refused listen (it answered a nack) leaves no session.
                if self.sessions.get(&id).is_some_and(|s| s.mode.is_none()) {
                    self.sessions.remove(&id);
                }
            }
            None => {
                let mut ack = event("join-ack");
                ack.push(("p_id".into(), id.clone()));
                ack.push(("p_format".into(), format.name().into()));
                out.push(whole(&reply, &[ack]));
            }
        }
        self.arm(&id);
    }

    fn new_session_id(&mut self) -> Option<String> {
        (0..ID_TRIES)
            .map(|_| random_name(&mut self.random, SESSION_ID_LEN))
            .find(|id| !self.sessions.contains_key(id))
    }

    /// Commands on an existing session (`p_id`); each renews its lease.
    #[allow(clippy::too_many_arguments)]
    fn on_session(
        &mut self,
        action: Action,
        from: ConnRef,
        fields: &[(String, String)],
        path: &str,
        now: Instant,
        publish: PublishFn<'_>,
        out: &mut Vec<Output>,
    ) {
        let id = match field(fields, "p_id") {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => return out.push(nack(&self.reply_for(from, fields), "no id specified")),
        };
        let lease = self.config.lease;
        let Some(session) = self.sessions.get_mut(&id) else {
            let reason = format!("invalid or expired id {}", clip(&id));
            return out.push(nack(&self.reply_for(from, fields), &reason));
        };
        session.lease_until = later(now, lease);
        let reply = Reply { to: from, format: session.format, id: Some(id.clone()) };
        match action {
            Action::Listen => match ListenPlan::read(fields) {
                Ok(plan) => self.listen(&id, &reply, plan, path, "listen-ack", now, out),
                Err(reason) => out.push(nack(&reply, &reason)),
            },
            Action::Refresh => self.refresh(&id, &reply, path, now, out),
            Action::Leave => {
                out.push(whole(&reply, &[with_id(event("leave-ack"), &reply)]));
                self.drop_session(&id, out);
            }
            Action::Subscribe => self.subscribe(&id, &reply, fields, out),
            Action::Unsubscribe => self.unsubscribe(&id, &reply, fields, out),
            Action::Publish => self.publish(&id, &reply, fields, now, publish, out),
            Action::Hb => out.push(whole(&reply, &[event("hb-ack")])),
        }
        self.arm(&id);
    }

    /// `listen`: sets the mode, maybe adds a subscription, then opens the
    /// data channel. A stream answers `[ack, hb, queued..]` and stays open;
    /// pull and poll answer `[ack, refresh]`. Any earlier link of the
    /// session is ended first (a session has one data channel).
    #[allow(clippy::too_many_arguments)]
    fn listen(
        &mut self,
        id: &str,
        reply: &Reply,
        plan: ListenPlan,
        path: &str,
        ack_name: &str,
        now: Instant,
        out: &mut Vec<Output>,
    ) {
        let mut ack = with_id(event(ack_name), reply);
        ack.push(("p_mode".into(), plan.mode.name().into()));
        ack.push(("p_format".into(), reply.format.name().into()));
        if let Some(spec) = plan.subscription {
            match self.add_subscription(id, spec) {
                Ok(tag) => ack.extend(tag),
                Err(reason) => return out.push(nack(reply, &reason)),
            }
        }
        self.unlink(id, now, out);
        let read_timeout = self.read_timeout();
        let wait = self.wait_ms(plan.mode);
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        session.mode = Some(plan.mode);
        if plan.mode != Mode::Stream {
            let refresh = refresh_event(wait, &refresh_url(path, id));
            return out.push(whole(reply, &[ack, refresh]));
        }
        let mut events = vec![ack, heartbeat(1)];
        events.extend(session.drain(2));
        let seq = events.len().saturating_sub(1) as u64;
        let mut body = render_start(reply.format);
        for e in &events {
            body.extend(render_event(reply.format, e));
        }
        session.link = Some(Link::Stream { to: reply.to, seq, quiet_until: later(now, read_timeout) });
        self.conns.insert(reply.to, id.to_string());
        out.push(Output::Open { to: reply.to, content_type: reply.format.content_type(), body });
    }

    /// `refresh` (pull and poll): answered at once in poll mode or when
    /// events wait; otherwise held until events come or `read_timeout`.
    fn refresh(&mut self, id: &str, reply: &Reply, path: &str, now: Instant, out: &mut Vec<Output>) {
        let mode = match self.sessions.get(id).and_then(|s| s.mode) {
            None => {
                return out.push(nack(reply, &format!("session {id} is not listening; send listen first")))
            }
            Some(Mode::Stream) => {
                return out.push(nack(
                    reply,
                    "refresh is for pull and poll modes; this session listens in stream mode",
                ))
            }
            Some(mode) => mode,
        };
        self.unlink(id, now, out);
        let url = refresh_url(path, id);
        let until = later(now, self.read_timeout());
        let wait = self.wait_ms(mode);
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        if mode == Mode::Poll || !session.queue.is_empty() {
            let events = batch(session, false, wait, &url);
            return out.push(whole(reply, &events));
        }
        session.link = Some(Link::Held { to: reply.to, until, url });
        self.conns.insert(reply.to, id.to_string());
    }

    /// A random `p_wait` for `mode`.
    fn wait_ms(&mut self, mode: Mode) -> u64 {
        let range = if mode == Mode::Poll { self.config.poll_wait_ms } else { self.config.pull_wait_ms };
        self.random.between(range)
    }

    /// `subscribe`: `p_subject` (a list) and optional `p_label`.
    fn subscribe(&mut self, id: &str, reply: &Reply, fields: &[(String, String)], out: &mut Vec<Output>) {
        let spec = match SubscriptionSpec::read(fields) {
            None => Err("no subject provided".to_string()),
            Some(spec) => spec,
        };
        let text = spec.as_ref().map(|s| s.text.clone()).unwrap_or_default();
        match spec.and_then(|spec| self.add_subscription(id, spec)) {
            Ok(tag) => {
                let mut ack = with_id(event("subscribe-ack"), reply);
                ack.push(("p_subject".into(), text));
                ack.extend(tag);
                out.push(whole(reply, &[ack]));
            }
            Err(reason) => out.push(nack(reply, &reason)),
        }
    }

    /// Adds a subscription with a fresh `p_sid` (unique in the session);
    /// returns the `p_sid` and `p_label` fields for the ack.
    fn add_subscription(&mut self, id: &str, spec: SubscriptionSpec) -> Result<Event, String> {
        let Some(session) = self.sessions.get_mut(id) else {
            return Err(format!("invalid or expired id {id}"));
        };
        if session.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return Err(format!("too many subscriptions; the limit is {MAX_SUBSCRIPTIONS} per session"));
        }
        // A subject that can reach channels needing a token needs a session
        // with a valid one (given at join); which of those channels it grants
        // is checked on every delivery.
        if let Some(policy) = &self.config.auth {
            let valid = session.claims.as_ref().is_some_and(|c| c.exp.is_none_or(|exp| unix_secs() < exp));
            let protected =
                spec.subjects.iter().find(|s| policy.may_require_prefix(s.trim_start_matches('/')));
            if let (Some(subject), false) = (protected, valid) {
                return Err(format!("subject {} needs a token: give p_token at join", clip(subject)));
            }
        }
        let taken = |sid: &String| session.subscriptions.iter().any(|s| s.sid == *sid);
        let Some(sid) = (0..ID_TRIES).map(|_| random_name(&mut self.random, SID_LEN)).find(|sid| !taken(sid))
        else {
            return Err("could not allocate a subscription id; retry".into());
        };
        for subject in &spec.subjects {
            *self.index.entry(subject.clone()).or_default().entry(id.to_string()).or_default() += 1;
            if let Some(prefix) = hub_prefix(subject) {
                self.hub_changes.push((prefix, 1));
                self.watching += 1;
            }
        }
        let mut tag = vec![("p_sid".to_string(), sid.clone())];
        if let Some(label) = &spec.label {
            tag.push(("p_label".into(), label.clone()));
        }
        session.subscriptions.push(Subscription { sid, spec });
        Ok(tag)
    }

    /// Takes a subscription's subjects out of the index.
    fn unindex(&mut self, id: &str, subscription: &Subscription) {
        for subject in &subscription.spec.subjects {
            if let Some(prefix) = hub_prefix(subject) {
                self.hub_changes.push((prefix, -1));
                self.watching = self.watching.saturating_sub(1);
            }
            let Some(sessions) = self.index.get_mut(subject) else {
                continue;
            };
            if let Some(count) = sessions.get_mut(id) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    sessions.remove(id);
                }
            }
            if sessions.is_empty() {
                self.index.remove(subject);
            }
        }
    }

    /// `unsubscribe`: one subscription (`p_sid`) or, without it, all.
    fn unsubscribe(&mut self, id: &str, reply: &Reply, fields: &[(String, String)], out: &mut Vec<Output>) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        let sid = field(fields, "p_sid");
        let all = std::mem::take(&mut session.subscriptions);
        let (gone, kept): (Vec<Subscription>, Vec<Subscription>) =
            all.into_iter().partition(|s| sid.is_none_or(|sid| s.sid == sid));
        session.subscriptions = kept;
        for subscription in &gone {
            self.unindex(id, subscription);
        }
        let mut ack = with_id(event("unsubscribe-ack"), reply);
        match (sid, gone.first()) {
            (None, _) => {}
            (Some(sid), None) => {
                return out.push(nack(reply, &format!("no subscription for sid={}", clip(sid))))
            }
            (Some(_), Some(s)) => {
                ack.push(("p_sid".into(), s.sid.clone()));
                ack.push(("p_subject".into(), s.spec.text.clone()));
                if let Some(label) = &s.spec.label {
                    ack.push(("p_label".into(), label.clone()));
                }
            }
        }
        out.push(whole(reply, &[ack]));
    }

    /// Ends a session's link because another takes its place: a stream is
    /// closed, a held pull answered as if it had timed out.
    fn unlink(&mut self, id: &str, now: Instant, out: &mut Vec<Output>) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        match &session.link {
            Some(Link::Stream { to, .. }) => {
                out.push(Output::End { to: *to, body: render_end(session.format) });
                self.conns.remove(to);
                session.link = None;
            }
            Some(Link::Held { .. }) => self.answer_held(id, now, out),
            None => {}
        }
    }

    /// Drops a session: its subscriptions leave the index, an open stream
    /// ends, a held pull gets an empty document (Pushlet sent no notice).
    fn drop_session(&mut self, id: &str, out: &mut Vec<Output>) {
        let Some(session) = self.sessions.remove(id) else {
            return;
        };
        for subscription in &session.subscriptions {
            self.unindex(id, subscription);
        }
        let Some(link) = session.link else {
            return;
        };
        self.conns.remove(&link.to());
        out.push(match link {
            Link::Stream { to, .. } => Output::End { to, body: render_end(session.format) },
            Link::Held { to, .. } => Output::Whole {
                to,
                content_type: session.format.content_type(),
                body: render_document(session.format, &[]),
            },
        });
    }

    /// A loop is shutting down: end its open streams (closing their
    /// documents) and answer its held pulls now, so its clients see clean ends.
    pub fn shutdown(&mut self, loop_id: usize, now: Instant, out: &mut Vec<Output>) {
        let ids: Vec<String> =
            self.conns.iter().filter(|(conn, _)| conn.loop_id == loop_id).map(|(_, id)| id.clone()).collect();
        for id in ids {
            let Some(session) = self.sessions.get_mut(&id) else { continue };
            match session.link {
                Some(Link::Stream { to, .. }) => {
                    session.link = None;
                    self.conns.remove(&to);
                    out.push(Output::End { to, body: render_end(session.format) });
                }
                Some(Link::Held { .. }) => self.answer_held(&id, now, out),
                None => {}
            }
        }
    }

    /// Stream heartbeats, pull timeouts and lease expiry that are due.
    pub fn tick(&mut self, now: Instant, out: &mut Vec<Output>) {
        let mut due = Vec::new();
        let mut seen = HashSet::new();
        while self.timers.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            if let Some(Reverse((_, id))) = self.timers.pop() {
                if seen.insert(id.clone()) {
                    due.push(id);
                }
            }
        }
        // Re-arming happens after the loop above, so a deadline that is
        // already due again waits for the next tick instead of spinning.
        for id in due {
            self.wake(&id, now, out);
        }
    }

    /// Does whatever is due for one session, then re-arms its timer.
    fn wake(&mut self, id: &str, now: Instant, out: &mut Vec<Output>) {
        let read_timeout = self.read_timeout();
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        if session.armed.is_some_and(|at| at <= now) {
            session.armed = None;
        }
        match &mut session.link {
            Some(Link::Stream { to, seq, quiet_until }) if *quiet_until <= now => {
                *seq = seq.saturating_add(1);
                *quiet_until = later(now, read_timeout);
                out.push(Output::More { to: *to, body: render_event(session.format, &heartbeat(*seq)) });
            }
            Some(Link::Held { until, .. }) if *until <= now => self.answer_held(id, now, out),
            None if session.lease_until <= now => return self.drop_session(id, out),
            _ => {}
        }
        self.arm(id);
    }

    /// Makes sure the session's timer fires by its deadline; an entry at or
    /// before it already does (its wake re-arms).
    fn arm(&mut self, id: &str) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        let due = session.deadline();
        if session.armed.is_none_or(|at| due < at) {
            session.armed = Some(due);
            self.timers.push(Reverse((due, id.to_string())));
        }
    }

    /// An open stream's or held pull's connection went away; the session
    /// stays for its lease (queueing, so a new `listen` or `refresh` gets
    /// what came meanwhile).
    /// Subscription changes for the hub since the last call, in order.
    pub fn take_hub_changes(&mut self) -> Vec<(Pattern, i32)> {
        std::mem::take(&mut self.hub_changes)
    }

    /// Subject subscriptions held by all sessions.
    pub fn subscriptions(&self) -> usize {
        self.watching
    }

    pub fn closed(&mut self, conn: ConnRef, now: Instant) {
        let Some(id) = self.conns.remove(&conn) else {
            return;
        };
        let lease = self.config.lease;
        if let Some(session) = self.sessions.get_mut(&id) {
            if session.link.as_ref().is_some_and(|l| l.to() == conn) {
                session.link = None;
            }
            session.lease_until = later(now, lease);
        }
        self.arm(&id);
    }

    /// The earliest time [`Engine::tick`] may have something to do (possibly
    /// earlier than needed, never later).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }
}

/// `now + d`, saturating far in the future instead of overflowing.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).or_else(|| now.checked_add(FAR)).unwrap_or(now)
}

#[cfg(test)]
mod tests;

/// The hub pattern of a subject: `/news` takes in every channel whose name
/// starts with `news` (Pushlet's prefix rule; `/` takes in every channel).
/// A subject without the leading `/` matches no hub subject.
fn hub_prefix(subject: &str) -> Option<Pattern> {
    subject.strip_prefix('/').map(|prefix| Pattern::Prefix(prefix.into()))
}
