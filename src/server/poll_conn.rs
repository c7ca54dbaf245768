//! A parked long-poll (or JSONP poll): answered by the first batch that
//! brings it messages, its timeout, its token's expiry, a deleted channel or
//! shutdown; then the connection goes back to reading requests.

use std::sync::Arc;
use std::time::Duration;

use super::conn::{Cx, Handle, Handler, Mail};
use super::http_conn::HttpConn;
use super::respond;
use super::subscription::Subscription;
use crate::chunk::Chunk;
use crate::http::response::BodyKind;
use crate::hub::Message;
use crate::reactor::CloseReason;

pub struct PollConn {
    /// The request side, to answer in its version and go back to.
    http: Box<HttpConn>,
    sub: Subscription,
    /// Messages gathered for the answer.
    collected: Vec<Arc<Message>>,
}

impl PollConn {
    pub fn new(http: Box<HttpConn>, sub: Subscription, catchup: Vec<Arc<Message>>) -> Box<PollConn> {
        Box::new(PollConn { http, sub, collected: catchup })
    }

    /// Waits for messages, until the timeout or the token's expiry.
    pub fn park(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        let now = cx.io.now();
        let mut at = now + self.sub.poll_timeout;
        if let Some(expiry) = self.sub.token_expires {
            at = at.min(expiry);
        }
        self.sub.enlist(cx);
        cx.io.set_deadline(cx.key, at.max(now + Duration::ZERO));
        Handler::Poll(self)
    }

    /// Takes a delivered message; true when it is the first (answer after the batch).
    pub fn collect(&mut self, message: &Arc<Message>) -> bool {
        if message.id <= self.sub.last_id {
            return false;
        }
        self.collected.push(message.clone());
        self.collected.len() == 1
    }

    /// Answers after a batch brought messages.
    pub fn answer_collected(self, cx: &mut Cx) -> Handler {
        cx.io.clear_deadline(cx.key);
        self.answer(cx)
    }

    /// Answers with what was collected (as many as fit half the outbound cap;
    /// the rest come on the next poll) and goes back to reading requests.
    pub fn answer(self, cx: &mut Cx) -> Handler {
        let PollConn { http, mut sub, collected } = self;
        sub.leave(cx);
        let (body, len) = sub.poll_answer(collected, cx.env.shared.max_outbound / 2);
        let mut head = respond::subscriber_head(
            sub.transport,
            BodyKind::Length(len),
            sub.gap,
            http.version,
            http.keep_alive,
        );
        if let Some(origin) = &http.cors {
            respond::add_cors(&mut head, origin);
        }
        cx.io.send_exempt(cx.key, Chunk::Owned(head));
        for chunk in body {
            cx.io.send_exempt(cx.key, chunk);
        }
        match http.response_done(cx) {
            Handler::Http(http) => super::conn::Handle::input(http, cx),
            other => other,
        }
    }
}

impl Handle for PollConn {
    fn stay(self: Box<Self>) -> Handler {
        Handler::Poll(self)
    }

    fn input(self: Box<Self>, _cx: &mut Cx) -> Handler {
        // A pipelined request waits until this poll is answered.
        Handler::Poll(self)
    }

    fn mail(mut self: Box<Self>, cx: &mut Cx, mail: Mail) -> Handler {
        match mail {
            Mail::ChannelDeleted { .. } => {
                cx.io.clear_deadline(cx.key);
                self.answer(cx)
            }
            Mail::Shutdown => {
                self.http.keep_alive = false;
                self.answer(cx)
            }
            _ => Handler::Poll(self),
        }
    }

    fn deadline(self: Box<Self>, cx: &mut Cx) -> Handler {
        self.answer(cx)
    }

    fn eof(self: Box<Self>, cx: &mut Cx) -> Handler {
        // Nobody is left to answer.
        cx.io.close(cx.key);
        Handler::Poll(self)
    }

    fn closed(mut self: Box<Self>, cx: &mut Cx, _reason: CloseReason) {
        self.sub.leave(cx);
    }
}
