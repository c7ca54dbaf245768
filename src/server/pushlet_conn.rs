//! A Pushlet request held until the Pushlet thread answers it, and the
//! Pushlet stream it may become (stream mode). The protocol lives in
//! `crate::pushlet`.

use super::conn::{Cx, Handle, Handler, Mail};
use super::http_conn::HttpConn;
use crate::chunk::Chunk;
use crate::http::chunked::body_bytes;
use crate::http::response::BodyKind;
use crate::http::{Response, Version};
use crate::hub::Part;
use crate::pushlet::thread::PushletIn;
use crate::reactor::CloseReason;

pub enum PushletConn {
    /// Waiting for the Pushlet thread's answer.
    Held(Box<HttpConn>),
    /// An open stream the Pushlet thread writes to.
    Streaming { chunked: bool },
}

pub fn pushlet_response(content_type: &str) -> Response {
    Response::new(200)
        .header("Content-Type", content_type)
        .header("Cache-Control", "no-store, no-cache, must-revalidate")
        .header("Pragma", "no-cache")
        .header("Expires", "Sat, 6 May 1995 12:00:00 GMT")
        .header("X-Accel-Buffering", "no")
}

/// Hands the request to the Pushlet thread and waits for its answer.
pub fn start(
    http: Box<HttpConn>,
    cx: &mut Cx,
    mut fields: Vec<(String, String)>,
    path: String,
    bearer: Option<String>,
) -> Handler {
    // A token in `Authorization: Bearer` counts like `token=`.
    if let Some(token) = bearer.filter(|_| !fields.iter().any(|(n, _)| n == "token" || n == "p_token")) {
        fields.push(("token".into(), token));
    }
    let remote = cx.conn().map(|c| c.ip);
    let from = cx.env.conn_ref(cx.key);
    cx.env.pushlet.send(PushletIn::Request { from, fields, path, remote });
    Handler::Pushlet(Box::new(PushletConn::Held(http)))
}

impl PushletConn {
    fn part(self, cx: &mut Cx, part: Part) -> Handler {
        match (self, part) {
            (PushletConn::Held(http), Part::Whole { content_type, body }) => {
                let answer = |v: Version, k: bool| pushlet_response(content_type).with_body(&body, v, k);
                match http.answer_with(cx, answer) {
                    Handler::Http(http) => http.input(cx),
                    other => other,
                }
            }
            (PushletConn::Held(http), Part::Open { content_type, body }) => {
                let chunked = http.version == Version::Http11;
                let kind = if chunked { BodyKind::Chunked } else { BodyKind::UntilClose };
                let mut head = pushlet_response(content_type).head(kind, http.version, chunked);
                if let Some(origin) = &http.cors {
                    super::respond::add_cors(&mut head, origin);
                }
                cx.io.send_exempt(cx.key, Chunk::Owned(head));
                cx.io.send_exempt(cx.key, Chunk::Owned(body_bytes(&body, chunked)));
                Handler::Pushlet(Box::new(PushletConn::Streaming { chunked }))
            }
            (PushletConn::Streaming { chunked }, Part::More(body)) => {
                cx.io.send(cx.key, Chunk::Owned(body_bytes(&body, chunked)));
                Handler::Pushlet(Box::new(PushletConn::Streaming { chunked }))
            }
            (PushletConn::Streaming { chunked }, Part::End(body)) => {
                cx.io.send_exempt(cx.key, Chunk::Owned(body_bytes(&body, chunked)));
                if chunked {
                    cx.io.send_exempt(cx.key, Chunk::Static(crate::http::chunked::LAST_CHUNK));
                }
                cx.io.close_after_flush(cx.key);
                // Closing: the Pushlet thread has already let go of it.
                Handler::Closing
            }
            (state, _) => Handler::Pushlet(Box::new(state)),
        }
    }
}

impl Handle for PushletConn {
    fn stay(self: Box<Self>) -> Handler {
        Handler::Pushlet(self)
    }

    fn mail(mut self: Box<Self>, cx: &mut Cx, mail: Mail) -> Handler {
        match mail {
            Mail::Engine(part) => self.part(cx, part),
            Mail::Shutdown => {
                // The Pushlet thread ends this loop's streams and held pulls.
                if let PushletConn::Held(http) = &mut *self {
                    http.keep_alive = false;
                }
                Handler::Pushlet(self)
            }
            _ => Handler::Pushlet(self),
        }
    }

    /// What is in flight is still answered; then the connection closes.
    fn eof(mut self: Box<Self>, _cx: &mut Cx) -> Handler {
        if let PushletConn::Held(http) = &mut *self {
            http.peer_done = true;
            http.keep_alive = false;
        }
        Handler::Pushlet(self)
    }

    fn closed(self: Box<Self>, cx: &mut Cx, _reason: CloseReason) {
        cx.env.pushlet.send(PushletIn::Closed(cx.env.conn_ref(cx.key)));
    }
}
