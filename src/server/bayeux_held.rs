//! A Bayeux polling request (long-polling POST, callback-polling GET) held
//! until the Bayeux thread answers it: at once, or when a held
//! `/meta/connect` is released. The protocol itself lives in `crate::bayeux`.

use super::conn::{Cx, Handle, Handler, Mail};
use super::http_conn::HttpConn;
use super::respond;
use crate::bayeux::engine::Transport;
use crate::bayeux::message::{Incoming, Unreadable};
use crate::bayeux::thread::BayeuxIn;
use crate::hub::Part;

pub struct BayeuxHeld {
    http: Box<HttpConn>,
    /// The callback of a callback-polling request.
    jsonp: Option<String>,
}

/// Hands the request to the Bayeux thread and waits for its answer.
pub fn start(
    http: Box<HttpConn>,
    cx: &mut Cx,
    messages: Vec<Result<Incoming, Unreadable>>,
    jsonp: Option<String>,
) -> Handler {
    let transport = if jsonp.is_some() { Transport::CallbackPolling } else { Transport::LongPolling };
    let remote = cx.conn().map(|c| c.ip);
    let from = cx.env.conn_ref(cx.key);
    cx.env.bayeux.send(BayeuxIn::Request { from, transport, messages, remote });
    Handler::Bayeux(Box::new(BayeuxHeld { http, jsonp }))
}

impl Handle for BayeuxHeld {
    fn stay(self: Box<Self>) -> Handler {
        Handler::Bayeux(self)
    }

    fn mail(mut self: Box<Self>, cx: &mut Cx, mail: Mail) -> Handler {
        match mail {
            Mail::Engine(Part::Whole { body, .. }) => {
                let BayeuxHeld { http, jsonp } = *self;
                match http.answer_with(cx, |v, k| respond::bayeux(&body, jsonp.as_deref(), v, k)) {
                    Handler::Http(http) => http.input(cx),
                    other => other,
                }
            }
            // The Bayeux thread answers held connects of a stopping loop.
            Mail::Shutdown => {
                self.http.keep_alive = false;
                Handler::Bayeux(self)
            }
            _ => Handler::Bayeux(self),
        }
    }

    /// The answer still goes out; then the connection closes.
    fn eof(mut self: Box<Self>, _cx: &mut Cx) -> Handler {
        self.http.peer_done = true;
        self.http.keep_alive = false;
        Handler::Bayeux(self)
    }

    /// The client went away with its connect held: the Bayeux thread keeps
    /// the session's messages queued for the next connect.
    fn closed(self: Box<Self>, cx: &mut Cx, _reason: crate::reactor::CloseReason) {
        cx.env.bayeux.send(BayeuxIn::Closed(cx.env.conn_ref(cx.key)));
    }
}
