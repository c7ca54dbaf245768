//! One HTTP/2 stream = one request, served the way `HttpConn` serves an
//! HTTP/1.1 request: the same `route()`, admission and subscribe step, the
//! same delivery index (keyed by connection and stream) and transports;
//! only the framing differs (HEADERS and DATA frames, no chunking). A
//! stream's phase is an enum, one `match` per event.
//!
//! Bayeux and Pushlet requests go to their engine threads named by a
//! stream-tagged `ConnRef`; the engine's answer parts come back to the
//! stream. A WebSocket is an extended CONNECT (RFC 8441), admitted here as
//! the HTTP/1.1 upgrade is and then carried by `h2_ws.rs`.

use std::sync::Arc;
use std::time::Instant;

use super::conn::Cx;
use super::h2_conn::{H2Conn, Waiting};
use super::h2_ws::Pending;
use super::respond;
use super::route::{route, Port, Refusal, Route};
use super::subscription::Subscription;
use crate::chunk::Chunk;
use crate::fanout::Subscribed;
use crate::h2::hpack::Field;
use crate::h2::message::Refused;
use crate::h2::ErrorCode;
use crate::http::response::BodyKind;
use crate::http::Version;
use crate::hub::Message;
use crate::transport::{EndReason, StreamOptions};

pub struct H2Stream {
    /// Its stream id.
    pub id: u32,
    pub phase: Phase,
    /// DATA waiting for flow-control window, in order (with END_STREAM or not).
    pub waiting: Waiting,
    pub waiting_bytes: usize,
    /// Of those, bytes that do not count against the cap: a resume's
    /// catch-up and the response's start (bounded by history, as over HTTP/1.1).
    pub waiting_exempt: usize,
    /// When this stream's timer fires (poll timeout, heartbeat, stream end).
    pub due: Option<Instant>,
    /// `Access-Control-Allow-Origin` for its response, if CORS allows it.
    cors: Option<Arc<str>>,
}

pub enum Phase {
    /// Headers in; the body is arriving (at most `max_message_bytes`).
    Body { fields: Vec<Field>, body: Vec<u8> },
    /// The subscribe is with the hub (for a WebSocket: what it opens with).
    Subscribing { sub: Subscription, ws: Option<Box<super::h2_ws::Pending>> },
    /// A parked long-poll or JSONP poll.
    Poll { sub: Subscription, collected: Vec<Arc<Message>>, ready: bool },
    /// An open SSE, NDJSON, iframe or multipart response.
    Stream { sub: Subscription, ends_at: Instant, end_reason: EndReason },
    /// With the Bayeux or Pushlet thread; `open`: its answer has begun.
    Engine { engine: Engine, open: bool },
    /// A WebSocket (RFC 8441): the session and client bytes not yet a whole frame.
    Ws { session: Box<super::ws_session::WsSession>, input: Vec<u8> },
    /// The response is queued whole (some DATA may wait for window).
    Done,
}

#[derive(Clone, PartialEq, Eq)]
pub enum Engine {
    /// A Bayeux polling request, with its JSONP callback if callback-polling.
    Bayeux(Option<String>),
    Pushlet,
}

impl H2Stream {
    pub fn new(id: u32, fields: Vec<Field>) -> H2Stream {
        H2Stream {
            id,
            phase: Phase::Body { fields, body: Vec::new() },
            waiting: Waiting::new(),
            waiting_bytes: 0,
            waiting_exempt: 0,
            due: None,
            cors: None,
        }
    }

    /// Whether its DATA waiting for window is over `cap` (the catch-up aside).
    pub fn over(&self, cap: usize) -> bool {
        self.waiting_bytes.saturating_sub(self.waiting_exempt) > cap
    }

    /// Undoes what its subscription registered (index, gauge, hub).
    pub fn leave(&mut self, cx: &mut Cx) {
        match &mut self.phase {
            Phase::Subscribing { sub, .. } | Phase::Poll { sub, .. } | Phase::Stream { sub, .. } => {
                sub.leave(cx)
            }
            Phase::Ws { session, .. } => session.leave(cx),
            // The engine lets go of a client that went away.
            Phase::Engine { engine: Engine::Bayeux(_), .. } => {
                cx.env
                    .bayeux
                    .send(crate::bayeux::thread::BayeuxIn::Closed(cx.env.stream_ref(cx.key, self.id)));
            }
            Phase::Engine { engine: Engine::Pushlet, .. } => {
                cx.env
                    .pushlet
                    .send(crate::pushlet::thread::PushletIn::Closed(cx.env.stream_ref(cx.key, self.id)));
            }
            Phase::Body { .. } | Phase::Done => {}
        }
    }
}

/// Request body bytes for `stream`.
pub fn body(conn: &mut H2Conn, cx: &mut Cx, stream: u32, data: Vec<u8>, end_stream: bool) {
    let limit = cx.env.shared.max_message_bytes;
    let Some(s) = conn.streams.get_mut(&stream) else { return };
    if matches!(s.phase, Phase::Ws { .. } | Phase::Subscribing { ws: Some(_), .. }) {
        return super::h2_ws::data(conn, cx, stream, data, end_stream);
    }
    let Phase::Body { body, .. } = &mut s.phase else { return };
    body.extend_from_slice(&data);
    if body.len() > limit {
        let refusal = Refusal::new(413, format!("request body over {limit} bytes"));
        answer(conn, cx, stream, respond::refusal(&refusal, Version::Http11, true));
        conn.proto.reset(stream, ErrorCode::NoError);
        return;
    }
    if end_stream {
        request_complete(conn, cx, stream);
    }
}

/// Resets `stream` with `code`, counted.
pub fn reset(conn: &mut H2Conn, cx: &mut Cx, stream: u32, code: ErrorCode, why: &str) {
    crate::log::debug(format_args!("h2: stream {stream} reset: {why}"));
    crate::stats::inc(&cx.env.stats().h2.streams_reset);
    conn.proto.reset(stream, code);
    conn.streams.remove(&stream);
}

/// The request on `stream` is whole: route it as HTTP/1.1 would.
pub fn request_complete(conn: &mut H2Conn, cx: &mut Cx, stream: u32) {
    let Some(s) = conn.streams.get_mut(&stream) else { return };
    let Phase::Body { fields, body } = std::mem::replace(&mut s.phase, Phase::Done) else { return };
    s.due = None;
    let request = match crate::h2::message::request(fields, body) {
        Ok(request) => request,
        Err(Refused::Malformed(why)) => return reset(conn, cx, stream, ErrorCode::Protocol, &why),
        Err(Refused::Status(status, why)) => {
            let refusal = Refusal::new(status, why);
            return answer(conn, cx, stream, respond::refusal(&refusal, Version::Http11, true));
        }
    };
    let shared = cx.env.shared.clone();
    s.cors = shared.cors.allow(request.header_str("origin"));
    if let Err(refusal) = super::admission::admit(&shared, cx, Port::Public, &request) {
        return answer(conn, cx, stream, respond::refusal(&refusal, Version::Http11, true));
    }
    let v = Version::Http11;
    let bytes = match route(&request, Port::Public, &shared.limits) {
        Err(refusal) => respond::refusal(&refusal, v, true),
        Ok(Route::Health) => respond::health(shared.stats.backplane.as_deref(), v, true),
        Ok(Route::Demo) => respond::page(&shared.demo_page, v, true),
        Ok(Route::NoContent) => crate::http::Response::new(204).head(BodyKind::Length(0), v, true),
        Ok(Route::Preflight) => respond::preflight(s.cors.as_deref(), v, true),
        Ok(Route::Stats) => {
            let body = super::report::stats_json(&shared.stats, &cx.env.fanout, shared.publish_queue);
            respond::json(200, &body, v, true)
        }
        Ok(Route::Metrics) => {
            respond::metrics(&super::report::metrics_text(&shared.stats, &cx.env.fanout), v, true)
        }
        Ok(Route::Subscribe(req)) => match subscribe_checks(&shared, &request, &req) {
            Ok(claims) => {
                let is_ws = req.ws.is_some();
                let sub = super::subscription::begin(cx, req, claims.as_ref(), stream, false);
                let ws = is_ws.then(|| Box::new(Pending { claims, input: Vec::new() }));
                s.phase = Phase::Subscribing { sub, ws };
                return;
            }
            Err(refusal) => respond::refusal(&refusal, v, true),
        },
        Ok(Route::BayeuxSocket { .. }) => match super::admission::check_websocket_origin(&shared, &request) {
            Ok(()) => return super::h2_ws::open_bayeux(conn, cx, stream),
            Err(refusal) => respond::refusal(&refusal, v, true),
        },
        Ok(Route::Bayeux { messages, jsonp }) => {
            let transport = match jsonp {
                Some(_) => crate::bayeux::engine::Transport::CallbackPolling,
                None => crate::bayeux::engine::Transport::LongPolling,
            };
            let (from, remote) = (cx.env.stream_ref(cx.key, stream), cx.conn().map(|c| c.ip));
            cx.env.bayeux.send(crate::bayeux::thread::BayeuxIn::Request {
                from,
                transport,
                messages,
                remote,
            });
            s.phase = Phase::Engine { engine: Engine::Bayeux(jsonp), open: false };
            return;
        }
        Ok(Route::Pushlet { mut fields, path }) => {
            let bearer = request.header_str("authorization").and_then(super::bearer).map(String::from);
            if let Some(token) =
                bearer.filter(|_| !fields.iter().any(|(n, _)| n == "token" || n == "p_token"))
            {
                fields.push(("token".into(), token));
            }
            let (from, remote) = (cx.env.stream_ref(cx.key, stream), cx.conn().map(|c| c.ip));
            cx.env.pushlet.send(crate::pushlet::thread::PushletIn::Request { from, fields, path, remote });
            s.phase = Phase::Engine { engine: Engine::Pushlet, open: false };
            return;
        }
        Ok(
            Route::Publish { .. }
            | Route::ChannelInfo(_)
            | Route::DeleteChannel(_)
            | Route::Dashboard
            | Route::StatsStream(_),
        ) => respond::refusal(&Refusal::new(404, "publishing and operating are on the ingest port"), v, true),
    };
    answer(conn, cx, stream, bytes);
}

/// A subscribe's checks, as over HTTP/1.1: a WebSocket's origin, then tokens.
fn subscribe_checks(
    shared: &super::worker::Shared,
    request: &crate::http::Request,
    req: &super::route::SubscribeRequest,
) -> Result<Option<crate::auth::Claims>, Refusal> {
    if req.ws.is_some() {
        super::admission::check_websocket_origin(shared, request)?;
    }
    super::admission::check_subscribe(shared, request, req)
}

/// Sends a whole HTTP/1.1-built response (head and body) on `stream`.
fn answer(conn: &mut H2Conn, cx: &mut Cx, stream: u32, mut bytes: Vec<u8>) {
    let Some(s) = conn.streams.get_mut(&stream) else { return };
    if let Some(origin) = &s.cors {
        respond::add_cors(&mut bytes, origin);
    }
    s.phase = Phase::Done;
    let Some((block, at)) = crate::h2::message::response(&bytes) else {
        return reset(conn, cx, stream, ErrorCode::Internal, "response head unreadable");
    };
    let body = bytes.split_off(at);
    conn.send_headers(cx, stream, &block, body.is_empty());
    if !body.is_empty() {
        conn.send_data(cx, stream, Chunk::Owned(body), true, true);
    }
}

/// Sends a subscriber's response head (built as for HTTP/1.1) on `stream`.
fn head(conn: &mut H2Conn, cx: &mut Cx, stream: u32, sub: &Subscription, body: BodyKind, end: bool) {
    let mut bytes = respond::subscriber_head(sub.transport, body, sub.gap, Version::Http11, true);
    if let Some(origin) = conn.streams.get(&stream).and_then(|s| s.cors.clone()) {
        respond::add_cors(&mut bytes, &origin);
    }
    if let Some((block, _)) = crate::h2::message::response(&bytes) {
        conn.send_headers(cx, stream, &block, end);
    }
}

/// The hub's answer to a stream's subscribe.
pub fn subscribed(conn: &mut H2Conn, cx: &mut Cx, reply: Subscribed) {
    let stream = reply.stream;
    let Some(s) = conn.streams.get_mut(&stream) else {
        // Reset meanwhile: undo the registration.
        if reply.registered {
            cx.env.index.unregister(reply.channels, reply.listen);
        }
        return;
    };
    if let Phase::Ws { .. } = s.phase {
        // A socket's `subscribe` command was answered.
        return super::h2_ws::mail(conn, cx, stream, super::conn::Mail::Subscribed(reply));
    }
    let Phase::Subscribing { mut sub, ws } = std::mem::replace(&mut s.phase, Phase::Done) else { return };
    sub.registered = reply.registered;
    sub.gap = reply.gap;
    sub.last_id = reply.last_id;
    if let Some(pending) = ws {
        return super::h2_ws::open(conn, cx, stream, sub, *pending, &reply.catchup);
    }
    if sub.transport.is_streaming() {
        return open_stream(conn, cx, stream, sub, &reply.catchup);
    }
    let answer_now = !reply.catchup.is_empty() || reply.gap || sub.poll_timeout.is_zero();
    let now = cx.io.now();
    let mut due = now + sub.poll_timeout;
    if let Some(expiry) = sub.token_expires {
        due = due.min(expiry);
    }
    s.phase = Phase::Poll { sub, collected: reply.catchup, ready: false };
    if answer_now || cx.io.shutting_down() || conn.stopping {
        return answer_poll(conn, cx, stream);
    }
    s.due = Some(due);
    if let Phase::Poll { sub, .. } = &mut s.phase {
        sub.enlist(cx);
    }
}

/// Starts a streaming response: head, preamble and catch-up, then it
/// listens (and heartbeats) until its end.
fn open_stream(conn: &mut H2Conn, cx: &mut Cx, stream: u32, mut sub: Subscription, catchup: &[Arc<Message>]) {
    let shared = cx.env.shared.clone();
    let now = cx.io.now();
    head(conn, cx, stream, &sub, BodyKind::UntilClose, false);
    let options = StreamOptions { retry_ms: shared.sse_retry_ms, callback: sub.callback.clone() };
    conn.send_data(cx, stream, Chunk::Owned(sub.transport.preamble(&options)), false, true);
    for message in catchup {
        let frame = Chunk::Shared(message.frame(sub.encoding).bytes.clone());
        conn.send_data(cx, stream, frame, false, true);
        sub.last_id = message.id;
    }
    let (ends_at, end_reason) = super::stream_conn::ends(now + shared.max_stream_age, sub.token_expires);
    // The stream may have been cut meanwhile (its client's window shut).
    let Some(s) = conn.streams.get_mut(&stream) else { return sub.leave(cx) };
    if sub.registered {
        sub.enlist(cx);
    }
    s.due = Some((now + shared.heartbeat).min(ends_at));
    s.phase = Phase::Stream { sub, ends_at, end_reason };
    if cx.io.shutting_down() || conn.stopping {
        finish(conn, cx, stream, EndReason::Shutdown);
    }
}

/// Answers a parked poll with what it collected (within half the outbound
/// cap; the rest comes on the next poll), as `PollConn::answer` does.
pub fn answer_poll(conn: &mut H2Conn, cx: &mut Cx, stream: u32) {
    let Some(s) = conn.streams.get_mut(&stream) else { return };
    let Phase::Poll { mut sub, collected, .. } = std::mem::replace(&mut s.phase, Phase::Done) else {
        return;
    };
    s.due = None;
    sub.leave(cx);
    let (body, len) = sub.poll_answer(collected, cx.env.shared.max_outbound / 2);
    head(conn, cx, stream, &sub, BodyKind::Length(len), false);
    let last = body.len().saturating_sub(1);
    for (i, chunk) in body.into_iter().enumerate() {
        conn.send_data(cx, stream, chunk, i == last, true);
    }
    if last == 0 && len == 0 {
        conn.send_data(cx, stream, Chunk::Static(b""), true, true);
    }
}

/// Ends `stream` early: a poll is answered, a stream gets its last words
/// (the reconnect hint) and END_STREAM.
pub fn finish(conn: &mut H2Conn, cx: &mut Cx, stream: u32, reason: EndReason) {
    let Some(s) = conn.streams.get_mut(&stream) else { return };
    if let Phase::Ws { .. } = s.phase {
        return super::h2_ws::end(conn, cx, stream, reason);
    }
    match std::mem::replace(&mut s.phase, Phase::Done) {
        poll @ Phase::Poll { .. } => {
            s.phase = poll;
            answer_poll(conn, cx, stream);
        }
        Phase::Stream { mut sub, .. } => {
            s.due = None;
            sub.leave(cx);
            let last = sub.transport.finish(reason, sub.encoding);
            conn.send_data(cx, stream, Chunk::Owned(last), true, true);
        }
        // A subscribe with the hub is answered, then ended (`stopping`).
        other => s.phase = other,
    }
}

/// `stream`'s timer fired: a poll's timeout, a stream's heartbeat or end.
pub fn timer(conn: &mut H2Conn, cx: &mut Cx, stream: u32, now: Instant) {
    let Some(s) = conn.streams.get_mut(&stream) else { return };
    match &s.phase {
        Phase::Poll { .. } => answer_poll(conn, cx, stream),
        Phase::Stream { ends_at, end_reason, .. } if now >= *ends_at => {
            let reason = *end_reason;
            finish(conn, cx, stream, reason);
        }
        Phase::Ws { .. } => super::h2_ws::tick(conn, cx, stream),
        Phase::Stream { sub, ends_at, .. } => {
            let beat = Chunk::Static(sub.transport.heartbeat());
            s.due = Some((now + cx.env.shared.heartbeat).min(*ends_at));
            conn.send_data(cx, stream, beat, false, false);
        }
        Phase::Body { .. } => {
            let secs = cx.env.shared.head_timeout.as_secs();
            let refusal = Refusal::new(408, format!("request not received within {secs} s"));
            answer(conn, cx, stream, respond::refusal(&refusal, Version::Http11, true));
            conn.proto.reset(stream, ErrorCode::NoError);
            conn.streams.remove(&stream);
        }
        // Its window stayed shut with DATA waiting: cut, like a slow consumer.
        Phase::Done if !s.waiting.is_empty() => conn.cut(cx, stream),
        _ => s.due = None,
    }
}

/// A part of an engine's answer for `stream`.
pub fn engine_part(conn: &mut H2Conn, cx: &mut Cx, stream: u32, part: crate::hub::Part) {
    use crate::hub::Part;
    let Some(s) = conn.streams.get_mut(&stream) else { return };
    if let Phase::Ws { .. } = s.phase {
        // A Bayeux socket's reply.
        return super::h2_ws::mail(conn, cx, stream, super::conn::Mail::Engine(part));
    }
    let Phase::Engine { engine, open } = &mut s.phase else { return };
    let v = Version::Http11;
    match part {
        Part::Whole { content_type, body } if !*open => {
            let bytes = match engine {
                Engine::Bayeux(jsonp) => respond::bayeux(&body, jsonp.as_deref(), v, true),
                Engine::Pushlet => {
                    super::pushlet_conn::pushlet_response(content_type).with_body(&body, v, true)
                }
            };
            answer(conn, cx, stream, bytes);
        }
        Part::Open { content_type, body } if !*open => {
            *open = true;
            let mut head =
                super::pushlet_conn::pushlet_response(content_type).head(BodyKind::UntilClose, v, true);
            if let Some(origin) = &s.cors {
                respond::add_cors(&mut head, origin);
            }
            if let Some((block, _)) = crate::h2::message::response(&head) {
                conn.send_headers(cx, stream, &block, false);
            }
            conn.send_data(cx, stream, Chunk::Owned(body), false, true);
        }
        Part::More(body) if *open => conn.send_data(cx, stream, Chunk::Owned(body), false, false),
        Part::End(body) if *open => {
            s.phase = Phase::Done;
            conn.send_data(cx, stream, Chunk::Owned(body), true, true);
        }
        _ => {}
    }
}
