//! A subscription on this loop, shared by the subscriber handlers (poll,
//! stream, WebSocket), and the subscribe step: the request goes to the hub,
//! which answers with the catch-up and the registration in one step, and the
//! answer installs the handler that serves it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{Cx, Handle, Handler, Mail};
use super::http_conn::HttpConn;
use super::route::SubscribeRequest;
use crate::chunk::Chunk;
use crate::fanout::{Control, Listen, Subscribe, Subscribed};
use crate::hub::{Message, MessageId};
use crate::transport::{Encoding, Transport};

pub struct Subscription {
    pub channels: Vec<Arc<str>>,
    /// The HTTP/2 stream it is served on; 0 for an HTTP/1 connection.
    pub stream: u32,
    pub transport: Transport,
    /// The shared encoding it reads (the transport's, refined by the callback).
    pub encoding: Encoding,
    /// HTTP/1.1 chunked framing (else an HTTP/1.0 close-delimited body).
    pub chunked: bool,
    pub callback: Option<String>,
    pub poll_timeout: Duration,
    /// Where this subscriber is: the id of the last message it was given.
    pub last_id: MessageId,
    pub gap: bool,
    /// The hub counts this subscription (undone when it ends).
    pub registered: bool,
    /// In this loop's delivery index and its subscriber gauge.
    pub enlisted: bool,
    /// The token's expiry, when a token admitted the subscription.
    pub token_expires: Option<Instant>,
}

impl Subscription {
    pub fn listen(&self) -> Listen {
        Listen::Frames(self.encoding)
    }

    /// Whether `message` is new to this subscriber; if so, it is now its last.
    pub fn take(&mut self, message: &Message) -> Option<&mut Subscription> {
        if message.id <= self.last_id {
            return None;
        }
        self.last_id = message.id;
        Some(self)
    }

    pub fn frame_chunk(&self, message: &Message) -> Chunk {
        super::index::frame_chunk(message, self.encoding, self.chunked)
    }

    /// A long-poll's answer body from what it collected: as many messages as
    /// fit `budget` bytes (at least one; the rest come on the next poll),
    /// with the resume point after them. Returns the body's chunks and length.
    pub fn poll_answer(
        &self,
        mut messages: Vec<Arc<Message>>,
        budget: usize,
    ) -> (Vec<crate::chunk::Chunk>, usize) {
        let mut used = 0;
        let fit = messages
            .iter()
            .take_while(|m| {
                used += m.frame(self.encoding).bytes.len() + 1;
                used <= budget
            })
            .count()
            .max(1);
        messages.truncate(fit);
        let last_id = messages.last().map_or(self.last_id, |m| m.id);
        let body = crate::transport::longpoll::body(&messages, last_id, self.gap, self.callback.as_deref());
        let len = body.iter().map(Chunk::len).sum();
        (body, len)
    }

    /// Puts it in the delivery index and counts it.
    pub fn enlist(&mut self, cx: &mut Cx) {
        if !self.enlisted {
            self.enlisted = true;
            cx.env.index.enlist(cx.key, self.stream, &self.channels);
            crate::stats::inc(&cx.env.stats().subscribers[self.transport.index()]);
        }
    }

    /// Undoes everything it registered: the index, the gauge, the hub.
    pub fn leave(&mut self, cx: &mut Cx) {
        if self.enlisted {
            self.enlisted = false;
            cx.env.index.delist(cx.key, self.stream, &self.channels);
            crate::stats::dec(&cx.env.stats().subscribers[self.transport.index()]);
        }
        if self.registered {
            self.registered = false;
            cx.env.index.unregister(self.channels.clone(), self.listen());
        }
    }
}

/// A subscribe request is with the hub; its answer installs the next handler.
pub struct SubscribingConn {
    pub http: Box<HttpConn>,
    pub sub: Subscription,
    /// For a WebSocket: `Sec-WebSocket-Accept` and the token it opened with.
    pub ws: Option<(String, Option<crate::auth::Claims>)>,
}

/// Sends the subscribe to the hub and waits for its answer.
pub fn start(
    http: Box<HttpConn>,
    cx: &mut Cx,
    req: SubscribeRequest,
    claims: Option<crate::auth::Claims>,
) -> Handler {
    let chunked = http.version == crate::http::Version::Http11 && req.transport != Transport::Ws;
    // Over HTTP/1.1 a WebSocket is an upgrade (extended CONNECT is HTTP/2's).
    let ws_accept = match &req.ws {
        Some(crate::ws::Opening::Upgrade { accept }) => Some(accept.clone()),
        _ => None,
    };
    let sub = begin(cx, req, claims.as_ref(), 0, chunked);
    let ws = ws_accept.map(|accept| (accept, claims));
    Handler::Subscribing(Box::new(SubscribingConn { http, sub, ws }))
}

/// The subscription for `req` (on HTTP/2 `stream`, or 0), its subscribe
/// sent to the hub; the hub's answer names the connection and the stream.
pub fn begin(
    cx: &mut Cx,
    req: SubscribeRequest,
    claims: Option<&crate::auth::Claims>,
    stream: u32,
    chunked: bool,
) -> Subscription {
    let token_expires = claims.and_then(|c| c.exp).map(|exp| {
        let left_ms = exp.saturating_mul(1000).saturating_sub(crate::clock::unix_ms());
        cx.io.now() + Duration::from_millis(left_ms)
    });
    let encoding = req.transport.encoding(req.callback.as_deref());
    let sub = Subscription {
        channels: req.channels.clone(),
        stream,
        transport: req.transport,
        encoding,
        chunked,
        callback: req.callback,
        poll_timeout: req.timeout,
        last_id: MessageId::ZERO,
        gap: false,
        registered: false,
        enlisted: false,
        token_expires,
    };
    cx.env.fanout.control(Control::Subscribe(Subscribe {
        reply: cx.env.conn_ref(cx.key),
        stream,
        channels: req.channels,
        listen: Listen::Frames(encoding),
        start: req.start,
        only_if_nothing_to_send: !req.transport.is_streaming(),
    }));
    sub
}

impl SubscribingConn {
    fn subscribed(self: Box<Self>, cx: &mut Cx, reply: Subscribed) -> Handler {
        let SubscribingConn { http, mut sub, ws } = *self;
        sub.registered = reply.registered;
        sub.gap = reply.gap;
        sub.last_id = reply.last_id;
        let answer_now = !reply.catchup.is_empty() || reply.gap || sub.poll_timeout.is_zero();
        if http.peer_done && (sub.transport.is_streaming() || !answer_now) {
            // The client half-closed: nothing to hold a stream or a poll open for.
            sub.leave(cx);
            cx.io.close(cx.key);
            return Handler::Closing;
        }
        if let Some((accept, claims)) = ws {
            return super::ws_conn::WsConn::open(cx, sub, accept, claims, &reply.catchup);
        }
        if sub.transport.is_streaming() {
            return super::stream_conn::StreamConn::open(cx, &http, sub, &reply.catchup);
        }
        let poll = super::poll_conn::PollConn::new(http, sub, reply.catchup);
        if answer_now || cx.io.shutting_down() {
            return poll.answer(cx);
        }
        poll.park(cx)
    }
}

impl Handle for SubscribingConn {
    fn stay(self: Box<Self>) -> Handler {
        Handler::Subscribing(self)
    }

    fn mail(mut self: Box<Self>, cx: &mut Cx, mail: Mail) -> Handler {
        match mail {
            Mail::Subscribed(reply) => self.subscribed(cx, reply),
            Mail::Shutdown => {
                // Answered when the hub replies: a poll at once, a stream ended.
                self.http.keep_alive = false;
                Handler::Subscribing(self)
            }
            _ => Handler::Subscribing(self),
        }
    }

    /// A subscribe in flight is answered (a `timeout=0` poll, say), then closed.
    fn eof(mut self: Box<Self>, _cx: &mut Cx) -> Handler {
        self.http.peer_done = true;
        self.http.keep_alive = false;
        Handler::Subscribing(self)
    }
}
