//! The WebSocket handler of an HTTP/1.1 connection after its upgrade: the
//! `101` answer, then the connection's bytes are the session's
//! (`ws_session.rs`, shared with WebSockets on HTTP/2 streams), and what
//! the session sends is written as it is.

use std::sync::Arc;

use super::conn::{Cx, Handle, Handler, Mail};
use super::respond;
use super::subscription::Subscription;
use super::ws_session::{Out, WsSession};
use crate::chunk::Chunk;
use crate::hub::Message;
use crate::reactor::CloseReason;
use crate::transport::EndReason;

pub struct WsConn {
    session: WsSession,
}

impl WsConn {
    /// The 101 answer, the catch-up, then frames as they come.
    pub fn open(
        cx: &mut Cx,
        sub: Subscription,
        accept: String,
        claims: Option<crate::auth::Claims>,
        catchup: &[Arc<Message>],
    ) -> Handler {
        cx.io.send_exempt(cx.key, Chunk::Owned(respond::ws_head(&accept, sub.gap)));
        let mut out = Out::default();
        let mut session = WsSession::channels(cx, sub, claims, catchup, &mut out);
        if cx.io.shutting_down() {
            session.end(EndReason::Shutdown, &mut out);
        }
        Box::new(WsConn { session }).start(cx, out)
    }

    /// Upgrades to a WebSocket that carries Bayeux messages.
    pub fn open_bayeux(cx: &mut Cx, accept: String) -> Handler {
        cx.io.send_exempt(cx.key, Chunk::Owned(respond::ws_head(&accept, false)));
        let session = WsSession::bayeux(cx, 0);
        Box::new(WsConn { session }).start(cx, Out::default())
    }

    fn start(self: Box<Self>, cx: &mut Cx, out: Out) -> Handler {
        cx.io.set_deadline(cx.key, self.session.due(cx));
        match self.write(cx, out) {
            // Frames may have arrived with the upgrade request.
            Handler::Ws(me) => me.input(cx),
            other => other,
        }
    }

    /// The channel subscription, for the delivery index.
    pub fn channels_mut(&mut self) -> Option<&mut Subscription> {
        self.session.channels_mut()
    }

    /// Writes what the session asks for; after its last frames, closes once
    /// they are written (the peer's close frame, if it sends one, is not
    /// waited for: RFC 6455 7.1.1 lets the server close the TCP connection first).
    fn write(mut self: Box<Self>, cx: &mut Cx, out: Out) -> Handler {
        for (chunk, exempt) in out.frames {
            // A slow consumer's cut closes the connection; `closed` then leaves.
            let _queued = match exempt {
                true => cx.io.send_exempt(cx.key, chunk),
                false => cx.io.send(cx.key, chunk),
            };
        }
        if out.end {
            cx.io.close_after_flush(cx.key);
            self.session.leave(cx);
            return Handler::Closing;
        }
        Handler::Ws(self)
    }
}

impl Handle for WsConn {
    fn stay(self: Box<Self>) -> Handler {
        Handler::Ws(self)
    }

    /// Hands the input buffer to the session, which decodes every complete frame.
    fn input(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        let Some((_, input)) = cx.io.conn_and_input(cx.key) else { return Handler::Ws(self) };
        // Out of the connection while the session (which needs `cx`) reads it.
        let mut buf = std::mem::take(input);
        let mut out = Out::default();
        self.session.read(cx, &mut buf, &mut out);
        if let Some((_, input)) = cx.io.conn_and_input(cx.key) {
            *input = buf;
        }
        cx.io.resume_read(cx.key);
        self.write(cx, out)
    }

    fn mail(mut self: Box<Self>, cx: &mut Cx, mail: Mail) -> Handler {
        let mut out = Out::default();
        self.session.mail(cx, mail, &mut out);
        self.write(cx, out)
    }

    fn deadline(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        let mut out = Out::default();
        if let Some(due) = self.session.tick(cx, &mut out) {
            cx.io.set_deadline(cx.key, due);
        }
        self.write(cx, out)
    }

    fn eof(self: Box<Self>, cx: &mut Cx) -> Handler {
        cx.io.close(cx.key);
        Handler::Ws(self)
    }

    fn closed(mut self: Box<Self>, cx: &mut Cx, _reason: CloseReason) {
        self.session.leave(cx);
    }
}
