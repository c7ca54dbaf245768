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
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::event::{
    clip, field, render_document, render_end, render_event, render_start, valid_name, Event, Format,
};
use crate::fanout::NewMessage;
use crate::hub::{validate_channel, Message};

/// Where an answer goes: a connection on an event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub loop_id: usize,
    pub conn: u64,
}

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

/// One Pushlet request.
pub struct Request {
    pub from: ConnRef,
    /// Every parameter, first value of each name.
    pub fields: Vec<(String, String)>,
    /// The request path, for `p_url`.
    pub path: String,
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
/// Subjects in one subscription's comma-separated list.
const MAX_SUBJECTS: usize = 32;
/// Length of one subscription's subject text.
const MAX_SUBJECT_BYTES: usize = 1024;
/// `p_url`'s path when the request's path is not a plain absolute path.
const DEFAULT_PATH: &str = "/pushlet/pushlet.srv";
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Stream,
    Pull,
    Poll,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "stream" => Ok(Mode::Stream),
            "pull" => Ok(Mode::Pull),
            "poll" => Ok(Mode::Poll),
            other => Err(format!("unknown mode '{}'; use stream, pull or poll", clip(other))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Stream => "stream",
            Mode::Pull => "pull",
            Mode::Poll => "poll",
        }
    }
}

/// A request's `p_event`, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// `join` (false) or `join-listen` (true): makes a new session.
    Join { listen: bool },
    /// Everything else acts on the session named by `p_id`.
    OnSession(Action),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Listen,
    Refresh,
    Leave,
    Subscribe,
    Unsubscribe,
    Publish,
    Hb,
}

impl Command {
    fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "join" => Command::Join { listen: false },
            "join-listen" => Command::Join { listen: true },
            "listen" => Command::OnSession(Action::Listen),
            "refresh" => Command::OnSession(Action::Refresh),
            "leave" => Command::OnSession(Action::Leave),
            "subscribe" => Command::OnSession(Action::Subscribe),
            "unsubscribe" => Command::OnSession(Action::Unsubscribe),
            "publish" => Command::OnSession(Action::Publish),
            "hb" => Command::OnSession(Action::Hb),
            _ => return None,
        })
    }
}

/// A subscription as requested, before it has an id.
#[derive(Debug, Clone)]
struct SubscriptionSpec {
    /// The subject text as sent, echoed in acks.
    text: String,
    /// Trimmed, non-empty entries; at least one.
    subjects: Vec<String>,
    label: Option<String>,
}

impl SubscriptionSpec {
    /// Reads `p_subject` (a comma-separated list) and `p_label`; `None` when
    /// there is no `p_subject`.
    fn read(fields: &[(String, String)]) -> Option<Result<SubscriptionSpec, String>> {
        let text = field(fields, "p_subject")?;
        let label = field(fields, "p_label").map(str::to_string);
        Some(parse_subjects(text).map(|subjects| SubscriptionSpec {
            text: text.to_string(),
            subjects,
            label,
        }))
    }
}

/// Splits a subject list on `,`, trimming entries and dropping empty ones.
fn parse_subjects(text: &str) -> Result<Vec<String>, String> {
    if text.len() > MAX_SUBJECT_BYTES {
        return Err(format!("subject list is {} bytes; the limit is {MAX_SUBJECT_BYTES}", text.len()));
    }
    let subjects: Vec<String> =
        text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    if subjects.is_empty() {
        return Err("no subject provided".into());
    }
    if subjects.len() > MAX_SUBJECTS {
        return Err(format!("{} subjects in one subscription; the limit is {MAX_SUBJECTS}", subjects.len()));
    }
    Ok(subjects)
}

struct Subscription {
    sid: String,
    spec: SubscriptionSpec,
}

impl Subscription {
    /// Pushlet's rule: a plain string prefix of the event's subject.
    fn matches(&self, subject: &str) -> bool {
        !subject.is_empty() && self.spec.subjects.iter().any(|s| subject.starts_with(s.as_str()))
    }
}

/// What `listen` (or `join-listen`) asks for, read before anything changes
/// so that a bad request changes nothing.
struct ListenPlan {
    mode: Mode,
    subscription: Option<SubscriptionSpec>,
}

impl ListenPlan {
    fn read(fields: &[(String, String)]) -> Result<ListenPlan, String> {
        let mode = Mode::parse(field(fields, "p_mode").unwrap_or("stream"))?;
        let subscription = SubscriptionSpec::read(fields).transpose()?;
        Ok(ListenPlan { mode, subscription })
    }
}

/// A data event waiting in a session's queue. The event itself is shared by
/// every receiver of one message; `tag` is the receiver's own subscription
/// (`p_sid`, `p_label`), absent on unicasts.
struct Queued {
    base: Arc<Event>,
    tag: Option<(String, Option<String>)>,
}

impl Queued {
    /// The event as sent: the base's head (up to `p_subject`), then `p_seq`,
    /// `p_sid`, `p_label`, then the rest of the base.
    fn materialize(&self, seq: u64) -> Event {
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
enum Link {
    /// An open stream; `seq` is the last `p_seq` written on it.
    Stream { to: ConnRef, seq: u64, quiet_until: Instant },
    /// A held pull `refresh`, answered by events or at `until`.
    Held { to: ConnRef, until: Instant, url: String },
}

impl Link {
    fn to(&self) -> ConnRef {
        match self {
            Link::Stream { to, .. } | Link::Held { to, .. } => *to,
        }
    }
}

struct Session {
    format: Format,
    /// Set by `listen`; until then the session receives no events.
    mode: Option<Mode>,
    /// In creation order: the first match stamps a delivered event.
    subscriptions: Vec<Subscription>,
    queue: VecDeque<Queued>,
    link: Option<Link>,
    /// Dropped at this time if it has no link then.
    lease_until: Instant,
    /// The earliest timer entry this session has in the heap, if known.
    armed: Option<Instant>,
    /// The token given at join, when auth is on and one was given.
    claims: Option<crate::auth::Claims>,
}

impl Session {
    /// When the engine next has to look at this session.
    fn deadline(&self) -> Instant {
        match &self.link {
            Some(Link::Stream { quiet_until, .. }) => *quiet_until,
            Some(Link::Held { until, .. }) => *until,
            None => self.lease_until,
        }
    }

    fn first_match(&self, subject: &str) -> Option<&Subscription> {
        self.subscriptions.iter().find(|s| s.matches(subject))
    }

    /// Drains the queue as events numbered from `first_seq`.
    fn drain(&mut self, first_seq: u64) -> Vec<Event> {
        self.queue.drain(..).zip(first_seq..).map(|(q, seq)| q.materialize(seq)).collect()
    }
}

/// Randomness without a `rand` dependency: std's per-process random SipHash
/// keys fed a counter.
struct Dice {
    state: RandomState,
    counter: u64,
}

impl Dice {
    fn next(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(1);
        let mut h = self.state.build_hasher();
        h.write_u64(self.counter);
        h.finish()
    }

    /// Pushlet's `Rand.randomName`: lowercase, consonants at even positions,
    /// vowels at odd ones (`bafemoruki`), about 3.4 bits a letter. Fresh
    /// random bits every 8 letters, so long names stay fully random.
    fn name(&mut self, len: usize) -> String {
        let mut out = String::with_capacity(len);
        let mut bits = 0;
        for i in 0..len {
            if i % 8 == 0 {
                bits = self.next();
            }
            let alphabet = if i % 2 == 0 { CONSONANTS } else { VOWELS };
            let n = alphabet.len() as u64;
            out.push(alphabet.get((bits % n) as usize).copied().map_or('a', char::from));
            bits /= n;
        }
        out
    }

    /// A number in `lo..=hi` (either order).
    fn between(&mut self, (a, b): (u64, u64)) -> u64 {
        let (lo, hi) = (a.min(b), a.max(b));
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.next() % span,
            None => self.next(),
        }
    }
}

/// Where and how one request is answered.
struct Reply {
    to: ConnRef,
    format: Format,
    /// The session's id, for `p_id` on acks and nacks, when there is one.
    id: Option<String>,
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
    dice: Dice,
}

impl Engine {
    pub fn new(config: Config) -> Engine {
        Engine {
            config,
            sessions: HashMap::new(),
            index: HashMap::new(),
            conns: HashMap::new(),
            timers: BinaryHeap::new(),
            dice: Dice { state: RandomState::new(), counter: 0 },
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
            (Some(policy), Some(token)) => match policy.verify(Some(token), now_secs()) {
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
        (0..ID_TRIES).map(|_| self.dice.name(SESSION_ID_LEN)).find(|id| !self.sessions.contains_key(id))
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
        self.dice.between(range)
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
            let valid = session.claims.as_ref().is_some_and(|c| c.exp.is_none_or(|exp| now_secs() < exp));
            let protected =
                spec.subjects.iter().find(|s| policy.may_require_prefix(s.trim_start_matches('/')));
            if let (Some(subject), false) = (protected, valid) {
                return Err(format!("subject {} needs a token: give p_token at join", clip(subject)));
            }
        }
        let taken = |sid: &String| session.subscriptions.iter().any(|s| s.sid == *sid);
        let Some(sid) = (0..ID_TRIES).map(|_| self.dice.name(SID_LEN)).find(|sid| !taken(sid)) else {
            return Err("could not allocate a subscription id; retry".into());
        };
        for subject in &spec.subjects {
            *self.index.entry(subject.clone()).or_default().entry(id.to_string()).or_default() += 1;
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

    /// `publish`: to the hub (multicast) or, with `p_to`, to one session's
    /// queue. Either way only to subjects on the allow list. The event's
    /// fields are its parameters whose names are valid and not `p_`.
    fn publish(
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
    fn unicast(
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
    fn candidates(&self, subject: &str) -> Vec<String> {
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
    fn flush(&mut self, id: &str, now: Instant, out: &mut Vec<Output>) {
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
    fn answer_held(&mut self, id: &str, now: Instant, out: &mut Vec<Output>) {
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

fn unix_secs() -> u64 {
    crate::hub::id::unix_ms() / 1000
}

/// A server event: `p_event` and `p_time` (seconds).
fn event(kind: &str) -> Event {
    vec![("p_event".into(), kind.into()), ("p_time".into(), unix_secs().to_string())]
}

fn with_id(mut event: Event, reply: &Reply) -> Event {
    if let Some(id) = &reply.id {
        event.push(("p_id".into(), id.clone()));
    }
    event
}

fn heartbeat(seq: u64) -> Event {
    let mut hb = event("hb");
    hb.push(("p_seq".into(), seq.to_string()));
    hb
}

fn refresh_event(wait_ms: u64, url: &str) -> Event {
    let mut refresh = event("refresh");
    refresh.push(("p_wait".into(), wait_ms.to_string()));
    refresh.push(("p_url".into(), url.to_string()));
    refresh
}

/// `<path>?p_id=<id>&p_event=refresh`. A path that is not plain (absolute,
/// not `//`, URL-safe characters only) is replaced by the default one, so
/// `p_url` can never point the iframe at another host or a script.
fn refresh_url(path: &str, id: &str) -> String {
    let plain = path.starts_with('/')
        && !path.starts_with("//")
        && path.len() <= 256
        && path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'~'));
    format!("{}?p_id={id}&p_event=refresh", if plain { path } else { DEFAULT_PATH })
}

/// A pull/poll answer: `[refresh-ack, queued (p_seq 1..), refresh]`, with an
/// `hb` (p_seq 1) in place of events when none wait and `hb_if_empty`.
fn batch(session: &mut Session, hb_if_empty: bool, wait_ms: u64, url: &str) -> Vec<Event> {
    let mut events = vec![event("refresh-ack")];
    let queued = session.drain(1);
    if queued.is_empty() && hb_if_empty {
        events.push(heartbeat(1));
    }
    events.extend(queued);
    events.push(refresh_event(wait_ms, url));
    events
}

fn whole(reply: &Reply, events: &[Event]) -> Output {
    Output::Whole {
        to: reply.to,
        content_type: reply.format.content_type(),
        body: render_document(reply.format, events),
    }
}

fn nack(reply: &Reply, reason: &str) -> Output {
    let mut nack = with_id(event("nack"), reply);
    nack.push(("p_reason".into(), reason.to_string()));
    whole(reply, &[nack])
}

/// The format of an answer without a session: `p_format` if valid, else
/// `xml-strict`.
fn loose_format(fields: &[(String, String)]) -> Format {
    field(fields, "p_format").and_then(|f| Format::parse(f).ok()).unwrap_or(Format::XmlStrict)
}

/// A Pushlet multicast as a hub message: channel = subject without its `/`
/// (halley's channel rule applies), payload = a JSON object of the fields.
fn hub_message(subject: &str, attributes: Vec<(String, String)>) -> Result<NewMessage, String> {
    let Some(channel) = subject.strip_prefix('/') else {
        return Err(format!("subject {} must start with /", clip(subject)));
    };
    validate_channel(channel).map_err(|e| format!("subject {}: {e}", clip(subject)))?;
    let object: serde_json::Map<String, Value> =
        attributes.into_iter().map(|(name, value)| (name, Value::String(value))).collect();
    let data = serde_json::to_string(&Value::Object(object)).map_err(|e| format!("unexpected error: {e}"))?;
    Ok(NewMessage { channel: Arc::from(channel), event: None, data: data.into_boxed_str(), ext: None })
}

/// A hub message as a Pushlet `data` event (without the per-receiver
/// `p_seq`, `p_sid`, `p_label`): `p_time` from the message id's clock.
fn hub_event(message: &Message, subject: &str) -> Event {
    let mut event: Event = vec![
        ("p_event".into(), "data".into()),
        ("p_time".into(), (message.id.ms / 1000).to_string()),
        ("p_subject".into(), subject.to_string()),
        ("p_mid".into(), message.id.to_string()),
    ];
    event.extend(payload_fields(&message.data));
    event
}

/// A JSON object payload gives one field per member (strings as they are,
/// anything else as its JSON text), skipping names that are invalid or in
/// the protocol's `p_` space; any other payload is one `data` field.
fn payload_fields(data: &str) -> Vec<(String, String)> {
    match serde_json::from_str::<Value>(data) {
        Ok(Value::Object(object)) => object
            .into_iter()
            .filter(|(name, _)| valid_name(name) && !name.starts_with("p_"))
            .map(|(name, value)| match value {
                Value::String(text) => (name, text),
                other => (name, other.to_string()),
            })
            .collect(),
        _ => vec![("data".into(), data.to_string())],
    }
}

#[cfg(test)]
mod tests;

/// Whether claims (unexpired) grant a concrete hub channel.
fn grants(
    claims: Option<&crate::auth::Claims>,
    channel: &str,
    patterns: impl Fn(&crate::auth::Claims) -> &Vec<String>,
) -> bool {
    claims.is_some_and(|c| {
        c.exp.is_none_or(|exp| now_secs() < exp)
            && patterns(c).iter().any(|p| crate::auth::pattern_matches(p, channel))
    })
}

fn now_secs() -> u64 {
    crate::hub::id::unix_ms() / 1000
}
