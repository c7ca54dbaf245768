//! The worker: the HTTP service one event loop runs. It turns requests into
//! publishes and subscriptions, and fan-out mail into bytes on sockets.

use std::collections::{HashMap, HashSet};
use std::mem;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::conn::{Awaiting, Conn, Phase, Query, Slot, Subscription, MAX_PIPELINE};
use super::respond;
use super::route::{route, Port, Refusal, Route, RouteLimits, SubscribeRequest};
use crate::chunk::Chunk;
use crate::fanout::{Control, FanoutHandle, LoopMsg, Publish, ReplyTo, Subscribe, Subscribed};
use crate::http::response::BodyKind;
use crate::http::{parse_request, request::expects_continue, Method, Parse, Version};
use crate::hub::Message;
use crate::reactor::mailbox::Inbox;
use crate::reactor::{begin_shutdown, CloseReason, ConnKey, Io, Service};
use crate::transport::{chunk_of, longpoll, Encoding, EndReason, StreamOptions};

/// Settings every worker reads, and the one counter they share.
pub struct Shared {
    pub limits: RouteLimits,
    pub max_head_bytes: usize,
    pub max_body_bytes: usize,
    pub max_message_bytes: usize,
    pub head_timeout: Duration,
    pub heartbeat: Duration,
    pub sse_retry_ms: u64,
    pub max_outbound: usize,
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    pub max_stream_age: Duration,
    pub cors: super::cors::CorsPolicy,
    /// The publish queue's capacity, for /stats.
    pub publish_queue: usize,
    /// The demo page, with the ingest address filled in.
    pub demo_page: Vec<u8>,
    /// Open connections across all loops, for `max_connections`.
    pub connections: AtomicUsize,
    /// Auth, address rules, word filter, limits.
    pub guard: Arc<crate::guard::Guard>,
    /// Counters behind /stats and /metrics.
    pub stats: Arc<crate::stats::Stats>,
    /// Port index (as the reactor knows it) to what the port serves.
    pub ports: Vec<Port>,
}

pub struct Worker {
    pub(super) loop_id: usize,
    pub(super) shared: Arc<Shared>,
    pub(super) fanout: FanoutHandle,
    pub(super) bayeux: crate::bayeux::thread::BayeuxHandle,
    pub(super) pushlet: crate::pushlet::thread::PushletHandle,
    inbox: Inbox<LoopMsg>,
    /// Which of this loop's connections listen on which channel.
    index: HashMap<Arc<str>, HashSet<ConnKey>>,
    /// Long-polls that got messages in the batch being delivered.
    ready_polls: Vec<ConnKey>,
    latency: crate::stats::LatencyRecorder,
}

impl Worker {
    pub fn new(
        loop_id: usize,
        shared: Arc<Shared>,
        fanout: FanoutHandle,
        bayeux: crate::bayeux::thread::BayeuxHandle,
        pushlet: crate::pushlet::thread::PushletHandle,
        inbox: Inbox<LoopMsg>,
    ) -> Worker {
        Worker {
            loop_id,
            shared,
            fanout,
            bayeux,
            pushlet,
            inbox,
            index: HashMap::new(),
            ready_polls: Vec::new(),
            latency: Default::default(),
        }
    }

    fn body_limit(&self, port: Port, _method: &Method, path: &str) -> usize {
        match port {
            Port::Ingest if path == "/pub" => self.shared.max_body_bytes,
            _ => self.shared.max_message_bytes,
        }
    }

    /// Input a connection may buffer: a head and a body, with room for
    /// chunked framing. Reading pauses past it; a request still incomplete
    /// then is refused with 413.
    fn input_cap(&self, port: Port) -> usize {
        let body = match port {
            Port::Ingest => self.shared.max_body_bytes.max(self.shared.max_message_bytes),
            Port::Public | Port::Resp => self.shared.max_message_bytes,
        };
        self.shared.max_head_bytes + body * 2 + 4096
    }

    /// Parses and handles requests while the connection is ready for one.
    fn process(&mut self, io: &mut Io<Conn>, key: ConnKey) {
        loop {
            let shared = self.shared.clone();
            let stopping = io.shutting_down();
            let Some((conn, input)) = io.conn_and_input(key) else { return };
            if let Phase::Streaming(sub) = &conn.phase {
                if sub.ws.is_some() {
                    return self.ws_input(io, key);
                }
            }
            if let Phase::Resp(_) = &conn.phase {
                return self.resp_input(io, key);
            }
            let deferred = conn.pipeline.iter().any(|s| matches!(s, Slot::Deferred { .. }));
            if !matches!(conn.phase, Phase::Reading)
                || input.is_empty()
                || conn.pipeline.len() >= MAX_PIPELINE
                || deferred
            {
                return;
            }
            let port = conn.port;
            let limit = |m: &Method, p: &str| self.body_limit(port, m, p);
            match parse_request(input, shared.max_head_bytes, &limit) {
                Ok(Parse::Complete { request, consumed }) => {
                    input.drain(..consumed);
                    crate::stats::inc(&self.my_stats().requests);
                    conn.continue_sent = false;
                    conn.version = request.version;
                    conn.keep_alive = request.keep_alive && !conn.peer_done && !stopping;
                    conn.cors = match port {
                        Port::Public => shared.cors.allow(request.header_str("origin")),
                        Port::Ingest | Port::Resp => None,
                    };
                    io.clear_deadline(key);
                    io.resume_read(key);
                    self.handle(io, key, port, request);
                }
                Ok(Parse::Partial) => {
                    let full = input.len() >= self.input_cap(port);
                    let want_continue = !conn.continue_sent && expects_continue(input);
                    if full {
                        let limit = self.shared.max_message_bytes;
                        self.refuse(
                            io,
                            key,
                            &Refusal::new(413, format!("request body over {limit} bytes")),
                            false,
                        );
                    } else if want_continue {
                        conn.continue_sent = true;
                        io.send(key, Chunk::Static(respond::CONTINUE));
                    }
                    return;
                }
                Err(e) => {
                    crate::log::debug(format_args!("bad request: {e}"));
                    self.refuse(io, key, &Refusal::new(e.status(), e.reason()), false);
                    return;
                }
            }
        }
    }

    fn handle(&mut self, io: &mut Io<Conn>, key: ConnKey, port: Port, request: crate::http::Request) {
        if let Err(refusal) = self.admit(io, key, port, &request) {
            return self.refuse(io, key, &refusal, true);
        }
        match route(&request, port, &self.shared.limits) {
            Err(refusal) => self.refuse(io, key, &refusal, true),
            Ok(Route::Health) => self.answer(io, key, respond::health),
            Ok(Route::Demo) => {
                let page = self.shared.clone();
                self.answer(io, key, |v, k| respond::page(&page.demo_page, v, k));
            }
            Ok(Route::Bayeux { messages, jsonp }) => self.bayeux_request(io, key, messages, jsonp),
            Ok(Route::Pushlet { fields, path }) => {
                let bearer = request.header_str("authorization").and_then(super::bearer).map(String::from);
                self.pushlet_request(io, key, fields, path, bearer);
            }
            Ok(Route::BayeuxSocket { .. }) if !self.ws_origin_allowed(&request) => {
                let refusal = Refusal::new(403, "WebSocket from an origin that cors_origins does not list");
                self.refuse(io, key, &refusal, false);
            }
            Ok(Route::BayeuxSocket { accept }) => self.bayeux_socket(io, key, accept),
            Ok(Route::NoContent) => {
                self.answer(io, key, |v, k| crate::http::Response::new(204).head(BodyKind::Length(0), v, k));
            }
            Ok(Route::Preflight) => {
                let cors = io.conn(key).and_then(|c| c.cors.clone());
                self.answer(io, key, |v, k| respond::preflight(cors.as_deref(), v, k));
            }
            Ok(Route::Publish { mut messages, batch }) => {
                if let Err(refusal) = self.check_publish(io, key, port, &request, &mut messages) {
                    return self.refuse(io, key, &refusal, true);
                }
                let reply = Some(ReplyTo { loop_id: self.loop_id, conn: key.to_u64() });
                let awaiting = if batch { Awaiting::Batch } else { Awaiting::Publish };
                let received_at = io.now();
                match self.fanout.try_publish(Publish { messages, reply, received_at }) {
                    Ok(()) => self.await_reply(io, key, awaiting),
                    Err(_) => self.answer(io, key, respond::busy),
                }
            }
            Ok(Route::ChannelInfo(channel)) => self.query(io, key, Query::Info(channel)),
            Ok(Route::DeleteChannel(channel)) => self.query(io, key, Query::Delete(channel)),
            Ok(Route::Subscribe(req)) if req.ws_accept.is_some() && !self.ws_origin_allowed(&request) => {
                let refusal = Refusal::new(403, "WebSocket from an origin that cors_origins does not list");
                self.refuse(io, key, &refusal, false);
            }
            Ok(Route::Subscribe(req)) => match self.check_subscribe(io, &request, &req) {
                Ok(claims) => self.subscribe(io, key, req, claims),
                Err(refusal) => self.refuse(io, key, &refusal, true),
            },
            Ok(Route::Stats) => {
                let body =
                    super::report::stats_json(&self.shared.stats, &self.fanout, self.shared.publish_queue);
                self.answer(io, key, |v, k| respond::json(200, &body, v, k));
            }
            Ok(Route::Metrics) => {
                let text = super::report::metrics_text(&self.shared.stats, &self.fanout);
                self.answer(io, key, |v, k| respond::metrics(&text, v, k));
            }
        }
    }

    /// Sends a complete response built for the connection's version and keep-alive.
    fn answer(&mut self, io: &mut Io<Conn>, key: ConnKey, build: impl FnOnce(Version, bool) -> Vec<u8>) {
        let Some(conn) = io.conn(key) else { return };
        let mut bytes = build(conn.version, conn.keep_alive);
        if let Some(origin) = &conn.cors {
            respond::add_cors(&mut bytes, origin);
        }
        if !conn.pipeline.is_empty() {
            // Earlier requests are still with the fan-out thread: queue behind them.
            conn.pipeline.push_back(Slot::Ready(bytes));
            if !conn.keep_alive {
                // Nothing after this request is read; close once all are answered.
                conn.close_when_drained = true;
                conn.phase = Phase::Closing;
            }
            return;
        }
        io.send_exempt(key, Chunk::Owned(bytes));
        self.response_done(io, key);
    }

    /// Sends a channel query or delete, or defers it behind publishes in flight.
    fn query(&mut self, io: &mut Io<Conn>, key: ConnKey, query: Query) {
        let Some(conn) = io.conn(key) else { return };
        if !conn.pipeline.is_empty() {
            let (version, keep_alive) = (conn.version, conn.keep_alive);
            conn.pipeline.push_back(Slot::Deferred { query, version, keep_alive });
            conn.close_when_drained |= !keep_alive;
            return;
        }
        let awaiting = self.dispatch_query(key, query);
        self.await_reply(io, key, awaiting);
    }

    fn dispatch_query(&self, key: ConnKey, query: Query) -> Awaiting {
        let reply = ReplyTo { loop_id: self.loop_id, conn: key.to_u64() };
        match query {
            Query::Info(channel) => {
                self.fanout.control(Control::ChannelInfo { reply, channel });
                Awaiting::Info
            }
            Query::Delete(channel) => {
                self.fanout.control(Control::DeleteChannel { reply, channel });
                Awaiting::Delete
            }
        }
    }

    /// A request went to the fan-out thread: its answer gets a slot, and the
    /// connection reads on (up to `MAX_PIPELINE` requests in flight).
    fn await_reply(&mut self, io: &mut Io<Conn>, key: ConnKey, awaiting: Awaiting) {
        let Some(conn) = io.conn(key) else { return };
        let slot = Slot::Waiting { awaiting, version: conn.version, keep_alive: conn.keep_alive };
        conn.pipeline.push_back(slot);
        conn.close_when_drained |= !conn.keep_alive;
        conn.phase = Phase::Reading;
        io.clear_deadline(key);
    }

    /// Fills the oldest slot waiting for `kinds` and writes every answer
    /// that is now in order.
    fn fill_slot(
        &mut self,
        io: &mut Io<Conn>,
        key: ConnKey,
        kinds: &[Awaiting],
        build: impl FnOnce(Awaiting, Version, bool) -> Vec<u8>,
    ) -> bool {
        let Some(conn) = io.conn(key) else { return false };
        let found = conn
            .pipeline
            .iter_mut()
            .find(|s| matches!(s, Slot::Waiting { awaiting, .. } if kinds.contains(awaiting)));
        let Some(slot) = found else { return false };
        if let Slot::Waiting { awaiting, version, keep_alive } = *slot {
            let mut bytes = build(awaiting, version, keep_alive);
            if let Some(origin) = &conn.cors {
                respond::add_cors(&mut bytes, origin);
            }
            *slot = Slot::Ready(bytes);
        }
        let mut out = Vec::new();
        while let Some(Slot::Ready(_)) = conn.pipeline.front() {
            if let Some(Slot::Ready(bytes)) = conn.pipeline.pop_front() {
                out.extend_from_slice(&bytes);
            }
        }
        // A deferred query whose publishes are all answered goes out now.
        if let Some(Slot::Deferred { .. }) = conn.pipeline.front() {
            if let Some(Slot::Deferred { query, version, keep_alive }) = conn.pipeline.pop_front() {
                let awaiting = self.dispatch_query(key, query);
                conn.pipeline.push_front(Slot::Waiting { awaiting, version, keep_alive });
            }
        }
        let drained = conn.pipeline.is_empty();
        let close = drained && conn.close_when_drained;
        if !out.is_empty() {
            io.send_exempt(key, Chunk::Owned(out));
        }
        if close {
            if let Some(conn) = io.conn(key) {
                conn.phase = Phase::Closing;
            }
            io.close_after_flush(key);
        } else if drained {
            let at = io.now() + self.shared.head_timeout;
            io.set_deadline(key, at);
        }
        self.process(io, key);
        true
    }

    /// Refuses with a JSON error; `keep` says whether the connection may go on.
    fn refuse(&mut self, io: &mut Io<Conn>, key: ConnKey, refusal: &Refusal, keep: bool) {
        if let Some(conn) = io.conn(key) {
            conn.keep_alive &= keep;
        }
        self.answer(io, key, |v, k| respond::refusal(refusal, v, k));
    }

    /// After a whole response: wait for the next request, or close.
    fn response_done(&mut self, io: &mut Io<Conn>, key: ConnKey) {
        let Some(conn) = io.conn(key) else { return };
        if conn.keep_alive {
            conn.phase = Phase::Reading;
            let at = io.now() + self.shared.head_timeout;
            io.set_deadline(key, at);
        } else {
            conn.phase = Phase::Closing;
            io.close_after_flush(key);
        }
    }

    fn subscribe(
        &mut self,
        io: &mut Io<Conn>,
        key: ConnKey,
        req: SubscribeRequest,
        claims: Option<crate::auth::Claims>,
    ) {
        let token_expires = claims.as_ref().and_then(|c| c.exp).map(|exp| {
            let left_ms = exp.saturating_mul(1000).saturating_sub(crate::hub::id::unix_ms());
            io.now() + Duration::from_millis(left_ms)
        });
        let Some(conn) = io.conn(key) else { return };
        let encoding = req.transport.encoding(req.callback.as_deref());
        let sub = Subscription {
            channels: req.channels.clone(),
            transport: req.transport,
            encoding,
            chunked: conn.version == Version::Http11 && req.transport != crate::transport::Transport::Ws,
            callback: req.callback,
            poll_timeout: req.timeout,
            last_id: Default::default(),
            gap: false,
            registered: false,
            collected: Vec::new(),
            ends_at: None,
            end_reason: EndReason::MaxAge,
            token_expires,
            ws: req.ws_accept.map(|accept| {
                let mut session = super::conn::WsSession::new(accept);
                session.claims = claims;
                Box::new(session)
            }),
        };
        conn.phase = Phase::Subscribing(Box::new(sub));
        self.fanout.control(Control::Subscribe(Subscribe {
            reply: ReplyTo { loop_id: self.loop_id, conn: key.to_u64() },
            channels: req.channels,
            encoding,
            start: req.start,
            only_if_nothing_to_send: !req.transport.is_streaming(),
        }));
    }

    fn on_subscribed(&mut self, io: &mut Io<Conn>, reply: Subscribed) {
        let key = ConnKey::from_u64(reply.conn);
        let sub = match io.conn(key).map(|c| mem::replace(&mut c.phase, Phase::Reading)) {
            Some(Phase::Subscribing(sub)) => sub,
            Some(Phase::Streaming(sub)) if sub.ws.is_some() => {
                return self.ws_subscribed(io, key, sub, reply)
            }
            other => {
                // The connection left (or moved on) while the fan-out thread
                // worked: put its phase back and undo the registration.
                if let (Some(phase), Some(conn)) = (other, io.conn(key)) {
                    conn.phase = phase;
                }
                if reply.registered {
                    self.unregister(reply.channels, reply.encoding);
                }
                return;
            }
        };
        let mut sub = sub;
        sub.registered = reply.registered;
        sub.gap = reply.gap;
        sub.last_id = reply.last_id;
        let answer_now = !reply.catchup.is_empty() || reply.gap || sub.poll_timeout.is_zero();
        let peer_done = io.conn(key).is_some_and(|c| c.peer_done);
        if peer_done && (sub.transport.is_streaming() || !answer_now) {
            // The client half-closed: nothing to hold a stream or a poll open for.
            if sub.registered {
                self.unregister(sub.channels.clone(), sub.encoding);
            }
            set_phase(io, key, Phase::Closing);
            io.close(key);
            return;
        }
        if sub.transport.is_streaming() {
            self.start_stream(io, key, sub, &reply.catchup);
        } else if answer_now || io.shutting_down() {
            self.answer_poll(io, key, sub, reply.catchup);
        } else {
            // A held long-poll is answered by its token's expiry at the latest.
            let at = (io.now() + sub.poll_timeout).min(sub.token_expires.unwrap_or(far_future(io.now())));
            self.enlist(key, &sub);
            set_phase(io, key, Phase::Polling(sub));
            io.set_deadline(key, at);
        }
    }

    fn start_stream(
        &mut self,
        io: &mut Io<Conn>,
        key: ConnKey,
        mut sub: Box<Subscription>,
        catchup: &[Arc<Message>],
    ) {
        let Some(conn) = io.conn(key) else { return };
        let (version, keep_alive) = (conn.version, conn.keep_alive);
        let conn = &*conn;
        let body = if sub.chunked { BodyKind::Chunked } else { BodyKind::UntilClose };
        let mut head = match &sub.ws {
            Some(ws) => respond::ws_head(&ws.accept, sub.gap),
            None => respond::subscriber_head(sub.transport, body, sub.gap, version, keep_alive),
        };
        if let (Some(origin), None) = (&conn.cors, &sub.ws) {
            respond::add_cors(&mut head, origin);
        }
        io.send_exempt(key, Chunk::Owned(head));
        let options = StreamOptions { retry_ms: self.shared.sse_retry_ms, callback: sub.callback.clone() };
        io.send_exempt(key, Chunk::Owned(chunk_of(&sub.transport.preamble(&options), sub.chunked)));
        let encoding = sub.encoding;
        sub.ends_at = Some(io.now() + self.shared.max_stream_age);
        if let Some(expiry) = sub.token_expires.filter(|t| Some(*t) < sub.ends_at) {
            sub.ends_at = Some(expiry);
            sub.end_reason = EndReason::TokenExpired;
        }
        for message in catchup {
            let frame = message.frame(encoding);
            io.send_exempt(key, if sub.chunked { Chunk::framed(frame) } else { Chunk::body(frame) });
            sub.last_id = message.id;
        }
        if io.shutting_down() {
            // Subscribed while the loop drains: end at once, the client resumes elsewhere.
            self.end_stream(io, key, &sub, EndReason::Shutdown);
            if sub.registered {
                self.unregister(sub.channels.clone(), sub.encoding);
            }
            set_phase(io, key, Phase::Closing);
            return;
        }
        if sub.registered {
            self.enlist(key, &sub);
        }
        let at = (io.now() + self.shared.heartbeat).min(sub.ends_at.unwrap_or_else(|| io.now()));
        let websocket = sub.ws.is_some();
        set_phase(io, key, Phase::Streaming(sub));
        io.set_deadline(key, at);
        if websocket {
            // Frames may have arrived with the upgrade request.
            self.process(io, key);
        }
    }

    /// Answers a long-poll with `messages` (as many as fit half the outbound
    /// cap; the rest come on the next poll) and returns to reading.
    fn answer_poll(
        &mut self,
        io: &mut Io<Conn>,
        key: ConnKey,
        sub: Box<Subscription>,
        mut messages: Vec<Arc<Message>>,
    ) {
        let budget = self.shared.max_outbound / 2;
        let mut used = 0;
        let fit = messages
            .iter()
            .take_while(|m| {
                used += m.frame(sub.encoding).bytes.len() + 1;
                used <= budget
            })
            .count()
            .max(1);
        messages.truncate(fit);
        let last_id = messages.last().map_or(sub.last_id, |m| m.id);
        let body = longpoll::body(&messages, last_id, sub.gap, sub.callback.as_deref());
        let len = body.iter().map(Chunk::len).sum();
        if sub.registered {
            self.delist(key, &sub);
        }
        let Some(conn) = io.conn(key) else { return };
        let mut head = respond::subscriber_head(
            sub.transport,
            BodyKind::Length(len),
            sub.gap,
            conn.version,
            conn.keep_alive,
        );
        if let Some(origin) = &conn.cors {
            respond::add_cors(&mut head, origin);
        }
        conn.phase = Phase::Reading;
        io.send_exempt(key, Chunk::Owned(head));
        for chunk in body {
            io.send_exempt(key, chunk);
        }
        self.response_done(io, key);
        self.process(io, key);
    }

    /// Hands a batch to this loop's subscribers: one shared frame each.
    fn deliver(&mut self, io: &mut Io<Conn>, batch: &[Arc<Message>]) {
        let now = io.now();
        let mut delivered = 0u64;
        for message in batch {
            let Some(keys) = self.index.get(&message.channel) else { continue };
            self.latency.record(now.saturating_duration_since(message.received_at), keys.len() as u64);
            delivered += keys.len() as u64;
            for &key in keys {
                let Some(conn) = io.conn(key) else { continue };
                let chunk = match &mut conn.phase {
                    Phase::Streaming(sub) if message.id > sub.last_id => {
                        sub.last_id = message.id;
                        let frame = message.frame(sub.encoding);
                        if sub.chunked {
                            Chunk::framed(frame)
                        } else {
                            Chunk::body(frame)
                        }
                    }
                    Phase::Polling(sub) if message.id > sub.last_id => {
                        if sub.collected.is_empty() {
                            self.ready_polls.push(key);
                        }
                        sub.collected.push(message.clone());
                        continue;
                    }
                    _ => continue,
                };
                io.send(key, chunk);
            }
        }
        let stats = &self.shared.stats.loops[self.loop_id.min(self.shared.stats.loops.len() - 1)];
        crate::stats::add(&stats.deliveries, delivered);
        self.latency.publish(&stats.latency);
        for key in mem::take(&mut self.ready_polls) {
            let Some(conn) = io.conn(key) else { continue };
            if let Phase::Polling(mut sub) = mem::replace(&mut conn.phase, Phase::Reading) {
                let messages = mem::take(&mut sub.collected);
                io.clear_deadline(key);
                self.answer_poll(io, key, sub, messages);
            }
        }
    }

    /// Answers a waiting connection (phase already checked), then reads on.
    pub(super) fn finish_waiting(
        &mut self,
        io: &mut Io<Conn>,
        key: ConnKey,
        build: impl FnOnce(Version, bool) -> Vec<u8>,
    ) {
        self.answer(io, key, build);
        self.process(io, key);
    }

    /// Answers a connection waiting for the fan-out thread, then reads on.
    fn on_reply(
        &mut self,
        io: &mut Io<Conn>,
        conn_id: u64,
        kinds: &[Awaiting],
        build: impl FnOnce(Awaiting, Version, bool) -> Vec<u8>,
    ) {
        let key = ConnKey::from_u64(conn_id);
        self.fill_slot(io, key, kinds, build);
    }

    /// Ends the streams (and answers the polls) of this loop's subscribers of
    /// a deleted channel.
    fn on_channel_deleted(&mut self, io: &mut Io<Conn>, channel: &Arc<str>) {
        let keys: Vec<ConnKey> =
            self.index.get(channel).map(|k| k.iter().copied().collect()).unwrap_or_default();
        for key in keys {
            let Some(conn) = io.conn(key) else { continue };
            match mem::replace(&mut conn.phase, Phase::Closing) {
                Phase::Streaming(sub) => {
                    self.end_stream(io, key, &sub, EndReason::ChannelDeleted);
                    self.delist(key, &sub);
                }
                Phase::Polling(mut sub) => {
                    let messages = mem::take(&mut sub.collected);
                    io.clear_deadline(key);
                    self.answer_poll(io, key, sub, messages);
                }
                other => set_phase(io, key, other),
            }
        }
    }

    /// Adds a connection to this loop's channel index.
    fn enlist(&mut self, key: ConnKey, sub: &Subscription) {
        crate::stats::inc(&self.my_stats().subscribers[sub.transport.index()]);
        self.enlist_channels(key, &sub.channels);
    }

    /// Browsers send `Origin` with every WebSocket and apply no CORS to it, so
    /// a `cors_origins` list is enforced here; `*` or empty lets any origin in.
    fn ws_origin_allowed(&self, request: &crate::http::Request) -> bool {
        match &self.shared.cors {
            super::cors::CorsPolicy::List(_) => match request.header_str("origin") {
                Some(origin) => self.shared.cors.allow(Some(origin)).is_some(),
                None => true,
            },
            _ => true,
        }
    }

    fn is_resp(&self, io: &mut Io<Conn>, conn: u64) -> bool {
        matches!(io.conn(ConnKey::from_u64(conn)).map(|c| &c.phase), Some(Phase::Resp(_)))
    }

    /// This loop's counters.
    fn my_stats(&self) -> &crate::stats::LoopStats {
        let loops = &self.shared.stats.loops;
        &loops[self.loop_id.min(loops.len() - 1)]
    }

    /// Whether the connection was enlisted (long-polls answered at once never are).
    fn index_has(&self, key: ConnKey, sub: &Subscription) -> bool {
        sub.channels.first().and_then(|c| self.index.get(c)).is_some_and(|keys| keys.contains(&key))
            || (sub.ws.is_some() && sub.registered)
    }

    pub(super) fn enlist_channels(&mut self, key: ConnKey, channels: &[Arc<str>]) {
        for channel in channels {
            self.index.entry(channel.clone()).or_default().insert(key);
        }
    }

    /// Removes it from the index and tells the fan-out thread.
    fn delist(&mut self, key: ConnKey, sub: &Subscription) {
        if self.index_has(key, sub) {
            crate::stats::dec(&self.my_stats().subscribers[sub.transport.index()]);
        }
        self.delist_channels(key, sub.channels.clone(), sub.encoding);
    }

    pub(super) fn delist_channels(&mut self, key: ConnKey, channels: Vec<Arc<str>>, encoding: Encoding) {
        for channel in &channels {
            if let Some(keys) = self.index.get_mut(channel) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.index.remove(channel);
                }
            }
        }
        self.unregister(channels, encoding);
    }

    /// Tells the fan-out thread to stop counting this loop on `channels`
    /// (undoing a registration it made).
    pub(super) fn unregister(&self, channels: Vec<Arc<str>>, encoding: Encoding) {
        if !channels.is_empty() {
            self.fanout.control(Control::Unsubscribe { loop_id: self.loop_id, channels, encoding });
        }
    }

    /// Ends every stream cleanly, answers parked polls, and lets the loop drain.
    fn shutdown(&mut self, io: &mut Io<Conn>) {
        for key in io.keys() {
            let Some(conn) = io.conn(key) else { continue };
            conn.keep_alive = false;
            match mem::replace(&mut conn.phase, Phase::Closing) {
                Phase::Streaming(sub) => {
                    self.end_stream(io, key, &sub, EndReason::Shutdown);
                    self.delist(key, &sub);
                }
                Phase::Polling(mut sub) => {
                    let messages = mem::take(&mut sub.collected);
                    self.answer_poll(io, key, sub, messages);
                }
                Phase::Reading if !conn.pipeline.is_empty() => conn.close_when_drained = true,
                Phase::Reading => io.close_after_flush(key),
                Phase::Resp(mut state) => {
                    state.finish();
                    set_phase(io, key, Phase::Resp(state));
                    self.resp_flush(io, key);
                }
                other => set_phase(io, key, other),
            }
        }
        // Streams and held requests owned by the Pushlet thread end now too.
        self.pushlet.send(crate::pushlet::thread::PushletIn::Shutdown { loop_id: self.loop_id });
        self.bayeux.send(crate::bayeux::thread::BayeuxIn::Shutdown { loop_id: self.loop_id });
        begin_shutdown(io, self.shared.shutdown_grace);
    }

    fn end_stream(&mut self, io: &mut Io<Conn>, key: ConnKey, sub: &Subscription, reason: EndReason) {
        io.send_exempt(key, Chunk::Owned(chunk_of(&sub.transport.finish(reason, sub.encoding), sub.chunked)));
        if sub.chunked {
            io.send_exempt(key, Chunk::Static(crate::http::chunked::LAST_CHUNK));
        }
        io.close_after_flush(key);
    }
}

pub(super) fn set_phase(io: &mut Io<Conn>, key: ConnKey, phase: Phase) {
    if let Some(conn) = io.conn(key) {
        conn.phase = phase;
    }
}

impl Service for Worker {
    type Conn = Conn;

    fn on_accept(&mut self, io: &mut Io<Conn>, key: ConnKey, port: usize, peer: SocketAddr) -> Option<Conn> {
        let open = self.shared.connections.fetch_add(1, Ordering::Relaxed);
        crate::stats::inc(&self.my_stats().accepted);
        crate::stats::inc(&self.my_stats().connections);
        let port = self.shared.ports.get(port).copied().unwrap_or(Port::Public);
        let mut conn = Conn::new(port, peer.ip());
        conn.ip_counted = self.shared.guard.connect(peer.ip());
        if port != Port::Public && self.shared.guard.rate_per_connection > 0 {
            conn.bucket =
                Some(crate::guard::TokenBucket::new(self.shared.guard.rate_per_connection, io.now()));
        }
        io.set_input_cap(key, self.input_cap(port));
        // Over a limit: answer at once and close (the client learns why and when to retry).
        let refusal = if open >= self.shared.max_connections {
            Some((
                503,
                format!(
                    "server is at its limit of {} connections; retry shortly",
                    self.shared.max_connections
                ),
            ))
        } else if !conn.ip_counted {
            Some((429, format!("too many connections from {}; retry shortly", peer.ip())))
        } else if port == Port::Resp && !self.shared.guard.publishers.admits(peer.ip()) {
            Some((403, format!("address {} may not publish", peer.ip())))
        } else {
            None
        };
        if let Some((status, message)) = refusal {
            crate::stats::inc(&self.my_stats().refused);
            crate::log::debug(format_args!("refusing {peer}: {message}"));
            conn.phase = Phase::Closing;
            let bytes = match port {
                Port::Resp => format!("-ERR {message}\r\n").into_bytes(),
                _ => crate::http::response::json_error(
                    status,
                    &message,
                    &[("Retry-After", "1")],
                    Version::Http11,
                    false,
                ),
            };
            io.send_exempt(key, Chunk::Owned(bytes));
            io.close_after_flush(key);
            return Some(conn);
        }
        if port == Port::Resp {
            // Publishers keep RESP connections open and idle, as with Redis.
            let authed = self.shared.guard.ingest_key.is_none();
            conn.phase = Phase::Resp(Box::new(super::resp_conn::RespState::new(authed)));
            return Some(conn);
        }
        let at = io.now() + self.shared.head_timeout;
        io.set_deadline(key, at);
        Some(conn)
    }

    fn on_input(&mut self, io: &mut Io<Conn>, key: ConnKey) {
        self.process(io, key);
    }

    fn on_eof(&mut self, io: &mut Io<Conn>, key: ConnKey) {
        let Some(conn) = io.conn(key) else { return };
        conn.peer_done = true;
        match conn.phase {
            // A publish in flight is still answered; then the connection closes.
            Phase::Waiting(_) => conn.keep_alive = false,
            // Pipelined requests still with the fan-out thread are answered first.
            Phase::Reading if !conn.pipeline.is_empty() => {
                conn.keep_alive = false;
                conn.close_when_drained = true;
            }
            // A half-close after a request: its answer (already queued) still goes out.
            Phase::Reading => {
                conn.phase = Phase::Closing;
                io.close_after_flush(key);
            }
            // A subscribe in flight is answered (a `timeout=0` poll, say), then closed.
            Phase::Subscribing(_) => conn.keep_alive = false,
            // Every command received before the end is still answered (a
            // pipelining publisher may half-close right after its last write).
            Phase::Resp(ref mut state) => {
                state.finish();
                self.resp_input(io, key);
            }
            Phase::Closing => {}
            _ => io.close(key),
        }
    }

    fn on_deadline(&mut self, io: &mut Io<Conn>, key: ConnKey) {
        let Some((conn, input)) = io.conn_and_input(key) else { return };
        match mem::replace(&mut conn.phase, Phase::Closing) {
            Phase::Reading if input.is_empty() => io.close(key),
            Phase::Reading => {
                conn.phase = Phase::Reading;
                let timeout = self.shared.head_timeout.as_secs();
                let refusal = Refusal::new(408, format!("request not received within {timeout} s"));
                self.refuse(io, key, &refusal, false);
            }
            Phase::Polling(mut sub) => {
                let messages = mem::take(&mut sub.collected);
                self.answer_poll(io, key, sub, messages);
            }
            Phase::Streaming(sub) => {
                let now = io.now();
                let ends_at = sub.ends_at.unwrap_or(now);
                if now >= ends_at {
                    self.end_stream(io, key, &sub, sub.end_reason);
                    self.delist(key, &sub);
                    return;
                }
                io.send(key, Chunk::Owned(chunk_of(sub.transport.heartbeat(), sub.chunked)));
                set_phase(io, key, Phase::Streaming(sub));
                io.set_deadline(key, (now + self.shared.heartbeat).min(ends_at));
            }
            other => set_phase(io, key, other),
        }
    }

    fn on_wake(&mut self, io: &mut Io<Conn>) {
        let mut mail = Vec::new();
        self.inbox.drain(&mut mail);
        for msg in mail {
            match msg {
                LoopMsg::Batch(batch) => self.deliver(io, &batch),
                LoopMsg::Subscribed(reply) => self.on_subscribed(io, reply),
                LoopMsg::Published { conn, acks } if self.is_resp(io, conn) => {
                    self.resp_ack(io, ConnKey::from_u64(conn), &acks)
                }
                LoopMsg::Published { conn, acks } => {
                    self.on_reply(io, conn, &[Awaiting::Publish, Awaiting::Batch], |awaiting, v, k| {
                        respond::published(&acks, awaiting == Awaiting::Batch, v, k)
                    })
                }
                LoopMsg::ChannelInfo { conn, info } => {
                    self.on_reply(io, conn, &[Awaiting::Info], |_, v, k| {
                        respond::channel_info(info.as_ref(), v, k)
                    })
                }
                LoopMsg::Deleted { conn, channel, subscribers } => {
                    self.on_reply(io, conn, &[Awaiting::Delete], |_, v, k| {
                        respond::deleted(&channel, subscribers, v, k)
                    })
                }
                LoopMsg::ChannelDeleted(channel) => self.on_channel_deleted(io, &channel),
                LoopMsg::Bayeux { conn, body } => self.on_bayeux(io, conn, body),
                LoopMsg::Pushlet { conn, part } => self.on_pushlet(io, conn, part),
                LoopMsg::Shutdown => self.shutdown(io),
            }
        }
    }

    fn on_closed(&mut self, _io: &mut Io<Conn>, key: ConnKey, conn: Conn, reason: CloseReason) {
        self.shared.connections.fetch_sub(1, Ordering::Relaxed);
        crate::stats::dec(&self.my_stats().connections);
        if conn.ip_counted {
            self.shared.guard.disconnect(conn.ip);
        }
        if reason == CloseReason::SlowConsumer {
            crate::stats::inc(&self.my_stats().slow_consumers);
            crate::log::debug(format_args!("closed a slow consumer"));
        }
        match conn.phase {
            Phase::Streaming(sub) if sub.ws.as_ref().is_some_and(|w| w.bayeux) => self.bayeux_closed(key),
            Phase::Waiting(Awaiting::Pushlet | Awaiting::PushletStream) => self.pushlet_closed(key),
            Phase::Polling(sub) | Phase::Streaming(sub) if sub.registered => self.delist(key, &sub),
            _ => {}
        }
    }
}

/// A time no deadline reaches (for `min` with optional deadlines).
fn far_future(now: std::time::Instant) -> std::time::Instant {
    now + Duration::from_secs(365 * 86_400)
}
