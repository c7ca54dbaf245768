//! A connection as the worker holds it: what every connection has (its port,
//! address and admission state) and the handler installed for its current
//! phase. The phase *is* the handler (nginx's idea): a connection moves from
//! one handler to the next, and each handler's states mean one thing.

use std::sync::Arc;

use super::route::Port;
use super::worker::Env;
use crate::fanout::{ChannelInfo, PublishAck, Subscribed};
use crate::hub::Part;
use crate::reactor::{CloseReason, ConnKey, Io};

pub struct Conn {
    pub port: Port,
    /// The client's address (rules, limits, Bayeux's publisher field).
    pub ip: std::net::IpAddr,
    /// Counted in the guard's per-address connection count.
    pub ip_counted: bool,
    /// Publishes per second on an ingest connection, when limited.
    pub bucket: Option<crate::guard::TokenBucket>,
    /// The handler for the connection's current phase. `Handler::Busy` only
    /// while one of its callbacks runs.
    pub handler: Handler,
}

impl Conn {
    pub fn new(port: Port, ip: std::net::IpAddr, handler: Handler) -> Conn {
        Conn { port, ip, ip_counted: false, bucket: None, handler }
    }
}

/// One handler per kind of connection. Each is one file with the same
/// callbacks (see [`Handle`]).
pub enum Handler {
    /// Reading HTTP requests, answering them, pipelining publishes.
    Http(Box<super::http_conn::HttpConn>),
    /// A subscribe is with the hub; its answer installs the next handler.
    Subscribing(Box<super::subscription::SubscribingConn>),
    /// A long-poll (or JSONP poll) parked until a message or its timeout.
    Poll(Box<super::poll_conn::PollConn>),
    /// An open streaming response (SSE, NDJSON, iframe, multipart).
    Stream(Box<super::stream_conn::StreamConn>),
    /// A WebSocket: channel commands, or Bayeux messages.
    Ws(Box<super::ws_conn::WsConn>),
    /// A Bayeux polling request waiting for the Bayeux thread's answer.
    Bayeux(Box<super::bayeux_held::BayeuxHeld>),
    /// A Pushlet request waiting for its answer, or an open Pushlet stream.
    Pushlet(Box<super::pushlet_conn::PushletConn>),
    /// An HTTP/2 connection: each stream one request (h2c with prior
    /// knowledge, or ALPN `h2`).
    H2(Box<super::h2_conn::H2Conn>),
    /// A Redis-protocol publisher, installed at accept on the RESP port.
    Resp(Box<super::resp_conn::RespConn>),
    /// Its last bytes are queued; nothing more is read or written.
    Closing,
    /// Taken out of its slot while one of its callbacks runs.
    Busy,
}

/// What reaches one connection: answers from the hub or an engine, and
/// events that concern every subscriber of a channel or the whole loop.
pub enum Mail {
    Subscribed(Subscribed),
    /// A publish's acknowledgements, or why nothing of it was published.
    Published(Result<Vec<PublishAck>, String>),
    /// A channel query or delete could not be carried out.
    Failed(String),
    ChannelInfo(Option<ChannelInfo>),
    Deleted {
        channel: Arc<str>,
        subscribers: Option<usize>,
    },
    Engine(Part),
    /// A channel this connection (or its HTTP/2 `stream`) listens to was deleted.
    ChannelDeleted {
        stream: u32,
    },
    /// The loop is stopping: finish what is in flight and close.
    Shutdown,
}

/// An event for a connection's handler.
pub enum Event {
    Input,
    Mail(Mail),
    Deadline,
    Eof,
}

impl Handler {
    /// Hands `event` to the installed handler; returns the next one.
    pub fn on(self, cx: &mut Cx, event: Event) -> Handler {
        match self {
            Handler::Http(h) => apply(h, cx, event),
            Handler::Subscribing(h) => apply(h, cx, event),
            Handler::Poll(h) => apply(h, cx, event),
            Handler::Stream(h) => apply(h, cx, event),
            Handler::Ws(h) => apply(h, cx, event),
            Handler::Bayeux(h) => apply(h, cx, event),
            Handler::Pushlet(h) => apply(h, cx, event),
            Handler::Resp(h) => apply(h, cx, event),
            Handler::H2(h) => apply(h, cx, event),
            Handler::Closing => {
                if let Event::Mail(Mail::Subscribed(reply)) = event {
                    // The connection is ending: undo what the hub registered for it.
                    if reply.registered {
                        cx.env.index.unregister(reply.channels, reply.listen);
                    }
                }
                Handler::Closing
            }
            Handler::Busy => Handler::Busy,
        }
    }

    /// The connection is gone.
    pub fn closed(self, cx: &mut Cx, reason: CloseReason) {
        match self {
            Handler::Http(h) => h.closed(cx, reason),
            Handler::Subscribing(h) => h.closed(cx, reason),
            Handler::Poll(h) => h.closed(cx, reason),
            Handler::Stream(h) => h.closed(cx, reason),
            Handler::Ws(h) => h.closed(cx, reason),
            Handler::Bayeux(h) => h.closed(cx, reason),
            Handler::Pushlet(h) => h.closed(cx, reason),
            Handler::Resp(h) => h.closed(cx, reason),
            Handler::H2(h) => h.closed(cx, reason),
            Handler::Closing | Handler::Busy => {}
        }
    }
}

fn apply<H: Handle>(handler: Box<H>, cx: &mut Cx, event: Event) -> Handler {
    match event {
        Event::Input => handler.input(cx),
        Event::Mail(mail) => handler.mail(cx, mail),
        Event::Deadline => handler.deadline(cx),
        Event::Eof => handler.eof(cx),
    }
}

/// The narrow context a handler works in: the loop's connections (its own
/// among them, by `key`) and the worker's environment.
pub struct Cx<'a> {
    pub io: &'a mut Io<Conn>,
    pub key: ConnKey,
    pub env: &'a mut Env,
}

impl Cx<'_> {
    /// The shared part of this connection (the handler itself is out while it runs).
    pub fn conn(&mut self) -> Option<&mut Conn> {
        self.io.conn(self.key)
    }
}

/// The callbacks every handler has. Each takes the handler by value and
/// returns the handler to install next: itself, another, or `Closing`.
/// The defaults are a handler's "nothing to do here": stay installed.
pub trait Handle {
    /// This handler, installed (its `Handler` variant).
    fn stay(self: Box<Self>) -> Handler;
    /// New bytes are in the input buffer. Default: they wait (a pipelined
    /// request is read once the handler hands back to `HttpConn`).
    fn input(self: Box<Self>, _cx: &mut Cx) -> Handler {
        self.stay()
    }
    /// Mail for this connection.
    fn mail(self: Box<Self>, cx: &mut Cx, mail: Mail) -> Handler;
    /// The deadline the handler armed has passed. Default: it armed none.
    fn deadline(self: Box<Self>, _cx: &mut Cx) -> Handler {
        self.stay()
    }
    /// The peer will send nothing more.
    fn eof(self: Box<Self>, cx: &mut Cx) -> Handler;
    /// The connection is gone: undo what the handler registered elsewhere.
    fn closed(self: Box<Self>, _cx: &mut Cx, _reason: CloseReason) {}
}
