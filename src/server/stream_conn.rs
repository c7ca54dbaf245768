//! An open streaming response (SSE, NDJSON stream, iframe, multipart):
//! frames arrive through the delivery index; this handler sends the head,
//! the preamble and the catch-up, heartbeats when idle, and ends the stream
//! with a reconnect hint (maximum age, token expiry, deleted channel, shutdown).

use std::sync::Arc;
use std::time::Instant;

use super::conn::{Cx, Handle, Handler, Mail};
use super::http_conn::HttpConn;
use super::respond;
use super::subscription::Subscription;
use crate::chunk::Chunk;
use crate::http::chunked::body_bytes;
use crate::http::response::BodyKind;
use crate::hub::Message;
use crate::reactor::CloseReason;
use crate::transport::{EndReason, StreamOptions};

pub struct StreamConn {
    pub sub: Subscription,
    /// When the stream ends with a reconnect hint, and why.
    ends_at: Instant,
    end_reason: EndReason,
}

impl StreamConn {
    /// Sends the head, preamble and catch-up, and starts streaming.
    pub fn open(cx: &mut Cx, http: &HttpConn, sub: Subscription, catchup: &[Arc<Message>]) -> Handler {
        let shared = cx.env.shared.clone();
        let body = if sub.chunked { BodyKind::Chunked } else { BodyKind::UntilClose };
        let mut head = respond::subscriber_head(sub.transport, body, sub.gap, http.version, http.keep_alive);
        if let Some(origin) = &http.cors {
            respond::add_cors(&mut head, origin);
        }
        cx.io.send_exempt(cx.key, Chunk::Owned(head));
        let options = StreamOptions { retry_ms: shared.sse_retry_ms, callback: sub.callback.clone() };
        cx.io.send_exempt(cx.key, Chunk::Owned(body_bytes(&sub.transport.preamble(&options), sub.chunked)));
        let (ends_at, end_reason) = ends(cx.io.now() + shared.max_stream_age, sub.token_expires);
        let mut stream = Box::new(StreamConn { sub, ends_at, end_reason });
        for message in catchup {
            cx.io.send_exempt(cx.key, stream.sub.frame_chunk(message));
            stream.sub.last_id = message.id;
        }
        if cx.io.shutting_down() {
            // Subscribed while the loop drains: end at once, the client resumes elsewhere.
            return stream.end(cx, EndReason::Shutdown);
        }
        if stream.sub.registered {
            stream.sub.enlist(cx);
        }
        cx.io.set_deadline(cx.key, (cx.io.now() + shared.heartbeat).min(stream.ends_at));
        Handler::Stream(stream)
    }

    /// Ends the stream with its last words; the client reconnects and resumes.
    fn end(&mut self, cx: &mut Cx, reason: EndReason) -> Handler {
        let (transport, encoding, chunked) = (self.sub.transport, self.sub.encoding, self.sub.chunked);
        cx.io.send_exempt(cx.key, Chunk::Owned(body_bytes(&transport.finish(reason, encoding), chunked)));
        if chunked {
            cx.io.send_exempt(cx.key, Chunk::Static(crate::http::chunked::LAST_CHUNK));
        }
        cx.io.close_after_flush(cx.key);
        self.sub.leave(cx);
        Handler::Closing
    }
}

/// The stream's end: its maximum age, or the token's expiry if sooner.
pub fn ends(max_age_at: Instant, token_expires: Option<Instant>) -> (Instant, EndReason) {
    match token_expires {
        Some(expiry) if expiry < max_age_at => (expiry, EndReason::TokenExpired),
        _ => (max_age_at, EndReason::MaxAge),
    }
}

impl Handle for StreamConn {
    fn stay(self: Box<Self>) -> Handler {
        Handler::Stream(self)
    }

    fn mail(mut self: Box<Self>, cx: &mut Cx, mail: Mail) -> Handler {
        match mail {
            Mail::ChannelDeleted { .. } => self.end(cx, EndReason::ChannelDeleted),
            Mail::Shutdown => self.end(cx, EndReason::Shutdown),
            _ => Handler::Stream(self),
        }
    }

    fn deadline(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        let now = cx.io.now();
        if now >= self.ends_at {
            let reason = self.end_reason;
            return self.end(cx, reason);
        }
        cx.io.send(cx.key, Chunk::Owned(body_bytes(self.sub.transport.heartbeat(), self.sub.chunked)));
        cx.io.set_deadline(cx.key, (now + cx.env.shared.heartbeat).min(self.ends_at));
        Handler::Stream(self)
    }

    fn eof(self: Box<Self>, cx: &mut Cx) -> Handler {
        // A half-closed client is gone: nothing to stream to.
        cx.io.close(cx.key);
        Handler::Stream(self)
    }

    fn closed(mut self: Box<Self>, cx: &mut Cx, _reason: CloseReason) {
        self.sub.leave(cx);
    }
}
