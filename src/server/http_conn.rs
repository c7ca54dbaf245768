//! The HTTP request handler: reads requests (keep-alive, pipelining, `100
//! Continue`), routes each one, answers what it can at once, keeps
//! publishes in flight in request order, and hands the connection to the
//! handler a request needs (subscriber, WebSocket, Bayeux, Pushlet).

use std::sync::Arc;

use super::conn::{Cx, Handle, Handler, Mail};
use super::pipeline::{Awaiting, Pipeline, Slot};
use super::respond;
use super::route::{route, Port, Refusal, Route};
use super::worker::Shared;
use crate::chunk::Chunk;
use crate::fanout::{Control, Publish};
use crate::http::response::BodyKind;
use crate::http::{parse_request, request::expects_continue, Method, Parse, Request, Version};
use crate::ws::Opening;

pub struct HttpConn {
    /// The current request's version and keep-alive wish, for its response.
    pub version: Version,
    pub keep_alive: bool,
    /// The peer closed its side; answer what is pending, then close.
    pub peer_done: bool,
    /// `100 Continue` was sent for the request being read.
    continue_sent: bool,
    /// `Access-Control-Allow-Origin` for the current request, if CORS allows it.
    pub cors: Option<Arc<str>>,
    /// Answers in request order while publishes are with the hub.
    pipeline: Pipeline,
    /// A request that is not a publish, read while publishes were in flight:
    /// handled once they are answered (so a channel query sees them, and a
    /// subscriber's response never overtakes an ack).
    deferred: Option<Request>,
    /// Close once the pipeline has drained (a request asked for it, or the
    /// peer has half-closed).
    close_when_drained: bool,
    /// Requests are still read: false after one that ends the conversation
    /// (the client's `Connection: close`, a refusal that closes, shutdown).
    /// A half-close alone does not stop it: what the peer sent before its
    /// FIN is still read and answered.
    reading: bool,
    /// No request was read yet: an HTTP/2 preface may still come.
    fresh: bool,
}

impl Default for HttpConn {
    fn default() -> HttpConn {
        HttpConn {
            version: Version::Http11,
            keep_alive: true,
            peer_done: false,
            continue_sent: false,
            cors: None,
            pipeline: Pipeline::default(),
            deferred: None,
            close_when_drained: false,
            reading: true,
            fresh: true,
        }
    }
}

/// Input a connection may buffer: a head and a body, with room for chunked
/// framing. Reading pauses past it; a request still incomplete then is
/// refused with 413.
pub fn input_cap(shared: &Shared, port: Port) -> usize {
    let body = match port {
        Port::Ingest => shared.max_body_bytes.max(shared.max_message_bytes),
        Port::Public | Port::Resp => shared.max_message_bytes,
    };
    shared.max_head_bytes + body * 2 + 4096
}

fn body_limit(shared: &Shared, port: Port, path: &str) -> usize {
    match port {
        Port::Ingest if path == "/pub" => shared.max_body_bytes,
        _ => shared.max_message_bytes,
    }
}

impl HttpConn {
    /// Parses and handles requests while the connection is ready for one.
    fn read_requests(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        let shared = cx.env.shared.clone();
        let stopping = cx.io.shutting_down();
        loop {
            let Some(port) = cx.conn().map(|c| c.port) else { return Handler::Closing };
            if self.deferred.is_some() || self.pipeline.is_full() {
                return Handler::Http(self);
            }
            let Some((_, input)) = cx.io.conn_and_input(cx.key) else { return Handler::Closing };
            if !self.reading || input.is_empty() {
                return self.idle(cx);
            }
            if self.fresh && port == Port::Public && super::h2_conn::is_preface(input) {
                // h2c with prior knowledge: wait for the whole preface, then HTTP/2.
                if input.len() < crate::h2::PREFACE.len() {
                    return Handler::Http(self);
                }
                return super::h2_conn::H2Conn::start(cx);
            }
            self.fresh = false;
            let limit = |_: &Method, p: &str| body_limit(&shared, port, p);
            match parse_request(input, shared.max_head_bytes, &limit) {
                Ok(Parse::Complete { request, consumed }) => {
                    input.drain(..consumed);
                    crate::stats::inc(&cx.env.stats().requests);
                    self.continue_sent = false;
                    self.version = request.version;
                    self.keep_alive = request.keep_alive && !self.peer_done && !stopping;
                    self.reading &= request.keep_alive && !stopping;
                    self.cors = match port {
                        Port::Public => shared.cors.allow(request.header_str("origin")),
                        Port::Ingest | Port::Resp => None,
                    };
                    cx.io.clear_deadline(cx.key);
                    cx.io.resume_read(cx.key);
                    match self.handle(cx, port, request) {
                        Handler::Http(me) => self = me,
                        other => return other,
                    }
                }
                Ok(Parse::Partial) => {
                    if input.len() >= input_cap(&shared, port) {
                        let limit = shared.max_message_bytes;
                        let refusal = Refusal::new(413, format!("request body over {limit} bytes"));
                        return self.refuse(cx, &refusal, false);
                    }
                    if self.peer_done {
                        // Cut short by the peer's end: it will never complete.
                        self.reading = false;
                        return self.idle(cx);
                    }
                    if !self.continue_sent && expects_continue(input) {
                        self.continue_sent = true;
                        cx.io.send(cx.key, Chunk::Static(respond::CONTINUE));
                    }
                    return Handler::Http(self);
                }
                Err(e) => {
                    crate::log::debug(format_args!("bad request: {e}"));
                    return self.refuse(cx, &Refusal::new(e.status(), e.reason()), false);
                }
            }
        }
    }

    fn handle(mut self: Box<Self>, cx: &mut Cx, port: Port, request: Request) -> Handler {
        let shared = cx.env.shared.clone();
        if let Err(refusal) = super::admission::admit(&shared, cx, port, &request) {
            return self.refuse(cx, &refusal, true);
        }
        let routed = route(&request, port, &shared.limits);
        if !self.pipeline.is_empty() && !matches!(routed, Ok(Route::Publish { .. }) | Err(_)) {
            self.deferred = Some(request);
            return Handler::Http(self);
        }
        match routed {
            Err(refusal) => self.refuse(cx, &refusal, true),
            Ok(Route::Health) => {
                self.answer_with(cx, |v, k| respond::health(shared.stats.backplane.as_deref(), v, k))
            }
            Ok(Route::Demo) => self.answer_with(cx, |v, k| respond::page(&shared.demo_page, v, k)),
            Ok(Route::NoContent) => {
                self.answer_with(cx, |v, k| crate::http::Response::new(204).head(BodyKind::Length(0), v, k))
            }
            Ok(Route::Preflight) => {
                let cors = self.cors.clone();
                self.answer_with(cx, |v, k| respond::preflight(cors.as_deref(), v, k))
            }
            Ok(Route::Stats) => {
                let body = super::report::stats_json(&shared.stats, &cx.env.fanout, shared.publish_queue);
                self.answer_with(cx, |v, k| respond::json(200, &body, v, k))
            }
            Ok(Route::Dashboard) => {
                self.answer_with(cx, |v, k| respond::page(crate::dashboard::PAGE.as_bytes(), v, k))
            }
            Ok(Route::StatsStream(req)) => super::subscription::start(self, cx, req, None),
            Ok(Route::Metrics) => {
                let text = super::report::metrics_text(&shared.stats, &cx.env.fanout);
                self.answer_with(cx, |v, k| respond::metrics(&text, v, k))
            }
            Ok(Route::Publish { mut messages, batch }) => {
                if let Err(refusal) =
                    super::admission::check_publish(&shared, cx, port, &request, &mut messages)
                {
                    return self.refuse(cx, &refusal, true);
                }
                let reply = Some(cx.env.conn_ref(cx.key));
                let publish = Publish { messages, reply, received_at: cx.io.now(), done: None };
                match cx.env.fanout.try_publish(publish) {
                    Ok(()) => {
                        cx.io.expect_wake(shared.hub_answer_spin);
                        self.wait_for_hub(cx, if batch { Awaiting::Batch } else { Awaiting::Publish })
                    }
                    Err(_) => self.answer_with(cx, respond::busy),
                }
            }
            Ok(Route::ChannelInfo(channel)) => {
                cx.env.fanout.control(Control::ChannelInfo { reply: cx.env.conn_ref(cx.key), channel });
                self.wait_for_hub(cx, Awaiting::Info)
            }
            Ok(Route::DeleteChannel(channel)) => {
                cx.env.fanout.control(Control::DeleteChannel { reply: cx.env.conn_ref(cx.key), channel });
                self.wait_for_hub(cx, Awaiting::Delete)
            }
            Ok(Route::Subscribe(req)) if req.ws.is_some() => {
                match super::admission::check_websocket_origin(&shared, &request) {
                    Err(refusal) => self.refuse(cx, &refusal, false),
                    Ok(()) => match super::admission::check_subscribe(&shared, &request, &req) {
                        Ok(claims) => super::subscription::start(self, cx, req, claims),
                        Err(refusal) => self.refuse(cx, &refusal, true),
                    },
                }
            }
            Ok(Route::Subscribe(req)) => match super::admission::check_subscribe(&shared, &request, &req) {
                Ok(claims) => super::subscription::start(self, cx, req, claims),
                Err(refusal) => self.refuse(cx, &refusal, true),
            },
            Ok(Route::Bayeux { messages, jsonp }) => super::bayeux_held::start(self, cx, messages, jsonp),
            Ok(Route::BayeuxSocket { opening }) => {
                match (super::admission::check_websocket_origin(&shared, &request), opening) {
                    (Err(refusal), _) => self.refuse(cx, &refusal, false),
                    (Ok(()), Opening::Upgrade { accept }) => super::ws_conn::WsConn::open_bayeux(cx, accept),
                    // Only HTTP/2 makes extended CONNECTs (a request's `protocol`).
                    (Ok(()), Opening::Connect) => {
                        self.refuse(cx, &Refusal::new(400, "an extended CONNECT is HTTP/2's"), false)
                    }
                }
            }
            Ok(Route::Pushlet { fields, path }) => {
                let bearer = request.header_str("authorization").and_then(super::bearer).map(String::from);
                super::pushlet_conn::start(self, cx, fields, path, bearer)
            }
        }
    }

    /// A request went to the hub: its answer gets a slot, and the connection
    /// reads on (up to `MAX_PIPELINE` requests in flight).
    fn wait_for_hub(mut self: Box<Self>, cx: &mut Cx, awaiting: Awaiting) -> Handler {
        self.pipeline.push(Slot::Waiting { awaiting, version: self.version, keep_alive: self.keep_alive });
        self.close_when_drained |= !self.keep_alive;
        cx.io.clear_deadline(cx.key);
        Handler::Http(self)
    }

    /// Sends a complete response built for the request's version and
    /// keep-alive (behind any answers still with the hub), then reads on.
    pub fn answer_with(
        self: Box<Self>,
        cx: &mut Cx,
        build: impl FnOnce(Version, bool) -> Vec<u8>,
    ) -> Handler {
        let bytes = build(self.version, self.keep_alive);
        self.answer(cx, bytes)
    }

    /// The same with the response already built.
    pub fn answer(mut self: Box<Self>, cx: &mut Cx, mut bytes: Vec<u8>) -> Handler {
        if let Some(origin) = &self.cors {
            respond::add_cors(&mut bytes, origin);
        }
        if !self.pipeline.is_empty() {
            // Earlier requests are still with the hub: queue behind them.
            self.pipeline.push(Slot::Ready(bytes));
            self.close_when_drained |= !self.keep_alive;
            return Handler::Http(self);
        }
        cx.io.send_exempt(cx.key, Chunk::Owned(bytes));
        self.response_done(cx)
    }

    /// Refuses with a JSON error; `keep` says whether the connection may go on.
    pub fn refuse(mut self: Box<Self>, cx: &mut Cx, refusal: &Refusal, keep: bool) -> Handler {
        self.keep_alive &= keep;
        self.reading &= keep;
        self.answer_with(cx, |v, k| respond::refusal(refusal, v, k))
    }

    /// After a whole response: wait for the next request, or close.
    pub fn response_done(self: Box<Self>, cx: &mut Cx) -> Handler {
        if !self.keep_alive {
            cx.io.close_after_flush(cx.key);
            return Handler::Closing;
        }
        cx.io.set_deadline(cx.key, cx.io.now() + cx.env.shared.head_timeout);
        Handler::Http(self)
    }

    /// Writes the answers now in order; when all are in, handles the
    /// request that waited for them and reads on.
    fn flush_pipeline(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        let out = self.pipeline.take_ready();
        if !out.is_empty() {
            cx.io.send_exempt(cx.key, Chunk::Owned(out));
        }
        if !self.pipeline.is_empty() {
            return Handler::Http(self);
        }
        cx.io.set_deadline(cx.key, cx.io.now() + cx.env.shared.head_timeout);
        if let Some(request) = self.deferred.take() {
            let Some(port) = cx.conn().map(|c| c.port) else { return Handler::Closing };
            match self.handle(cx, port, request) {
                Handler::Http(me) => self = me,
                other => return other,
            }
        }
        self.read_requests(cx)
    }

    /// Nothing more to parse now: with every answer out, close if the
    /// conversation is over, else wait for the next request.
    fn idle(self: Box<Self>, cx: &mut Cx) -> Handler {
        if !self.pipeline.is_empty() || self.deferred.is_some() {
            return Handler::Http(self);
        }
        if self.close_when_drained {
            cx.io.close_after_flush(cx.key);
            return Handler::Closing;
        }
        Handler::Http(self)
    }
}

impl Handle for HttpConn {
    fn stay(self: Box<Self>) -> Handler {
        Handler::Http(self)
    }

    fn input(self: Box<Self>, cx: &mut Cx) -> Handler {
        self.read_requests(cx)
    }

    fn mail(mut self: Box<Self>, cx: &mut Cx, mail: Mail) -> Handler {
        let cors = self.cors.clone();
        let with_cors = |mut bytes: Vec<u8>| {
            if let Some(origin) = &cors {
                respond::add_cors(&mut bytes, origin);
            }
            bytes
        };
        let filled = match mail {
            Mail::Published(Ok(acks)) => {
                self.pipeline.fill(&[Awaiting::Publish, Awaiting::Batch], |a, v, k| {
                    with_cors(respond::published(&acks, a == Awaiting::Batch, v, k))
                })
            }
            Mail::Published(Err(error)) => {
                self.pipeline.fill(&[Awaiting::Publish, Awaiting::Batch], |_, v, k| {
                    with_cors(respond::unavailable(&error, v, k))
                })
            }
            Mail::Failed(error) => self.pipeline.fill(&[Awaiting::Info, Awaiting::Delete], |_, v, k| {
                with_cors(respond::unavailable(&error, v, k))
            }),
            Mail::ChannelInfo(info) => self
                .pipeline
                .fill(&[Awaiting::Info], |_, v, k| with_cors(respond::channel_info(info.as_ref(), v, k))),
            Mail::Deleted { channel, subscribers } => self.pipeline.fill(&[Awaiting::Delete], |_, v, k| {
                with_cors(respond::deleted(&channel, subscribers, v, k))
            }),
            Mail::Shutdown => {
                self.keep_alive = false;
                self.reading = false;
                self.close_when_drained = true;
                return self.idle(cx);
            }
            Mail::Subscribed(_) | Mail::Engine(_) | Mail::ChannelDeleted { .. } => false,
        };
        if filled {
            return self.flush_pipeline(cx);
        }
        Handler::Http(self)
    }

    fn deadline(self: Box<Self>, cx: &mut Cx) -> Handler {
        let Some((_, input)) = cx.io.conn_and_input(cx.key) else { return Handler::Closing };
        if !input.is_empty() {
            let timeout = cx.env.shared.head_timeout.as_secs();
            let refusal = Refusal::new(408, format!("request not received within {timeout} s"));
            return self.refuse(cx, &refusal, false);
        }
        if self.pipeline.is_empty() {
            cx.io.close(cx.key);
            return Handler::Closing;
        }
        Handler::Http(self)
    }

    /// Everything received before the half-close is still answered: what
    /// is with the hub, what waits for it, and requests not yet parsed.
    fn eof(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        self.peer_done = true;
        self.keep_alive = false;
        self.close_when_drained = true;
        self.idle(cx)
    }
}
