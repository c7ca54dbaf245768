//! A connection's state on the worker side. One enum phase, one `match` per event.

use std::sync::Arc;

use super::route::Port;
use crate::http::Version;
use crate::hub::{Message, MessageId};
use crate::transport::Transport;

pub struct Conn {
    pub port: Port,
    pub phase: Phase,
    /// The current request's version and keep-alive wish, for its response.
    pub version: Version,
    pub keep_alive: bool,
    /// The peer closed its side; answer what is pending, then close.
    pub peer_done: bool,
    /// `100 Continue` was sent for the request being read.
    pub continue_sent: bool,
    /// `Access-Control-Allow-Origin` for the current request, if CORS allows it.
    pub cors: Option<Arc<str>>,
    /// The JSONP callback of a pending Bayeux callback-polling request.
    pub jsonp: Option<String>,
    /// The client's address (rules, limits, Bayeux's publisher field).
    pub ip: std::net::IpAddr,
    /// Counted in the guard's per-address connection count.
    pub ip_counted: bool,
    /// Publishes per second on an ingest connection, when limited.
    pub bucket: Option<crate::guard::TokenBucket>,
    /// Responses in request order while requests are with the fan-out
    /// thread: pipelined publishes need not wait for each other's acks.
    pub pipeline: std::collections::VecDeque<Slot>,
    /// Close once the pipeline has drained (the last request asked for it).
    pub close_when_drained: bool,
}

pub enum Phase {
    /// Waiting for (the rest of) a request.
    Reading,
    /// A request is with the fan-out thread; the answer follows its reply.
    Waiting(Awaiting),
    /// A subscribe is with the fan-out thread; the answer follows its reply.
    Subscribing(Box<Subscription>),
    /// A long-poll is parked until a message arrives or it times out.
    Polling(Box<Subscription>),
    /// A streaming response is open.
    Streaming(Box<Subscription>),
    /// The last response is written; the connection is closing.
    Closing,
    /// A Redis-protocol publisher connection.
    Resp(Box<super::resp_conn::RespState>),
}

/// One response slot of a pipelined connection.
pub enum Slot {
    /// Waiting for the fan-out thread; answered in the request's version.
    Waiting { awaiting: Awaiting, version: crate::http::Version, keep_alive: bool },
    /// Built, waiting for the responses before it.
    Ready(Vec<u8>),
    /// A channel query or delete behind publishes still in flight: sent to
    /// the fan-out thread only once they are answered, so that it sees them
    /// (queries travel on the control queue, which overtakes publishes).
    Deferred { query: Query, version: crate::http::Version, keep_alive: bool },
}

/// A request on a channel that must see the publishes before it.
#[derive(Debug, Clone)]
pub enum Query {
    Info(Arc<str>),
    Delete(Arc<str>),
}

/// The most requests one connection may have with the fan-out thread at once.
/// Enough to keep batches full for a pipelining publisher (as on RESP),
/// without letting one connection take the whole publish queue.
pub const MAX_PIPELINE: usize = 64;

/// What a connection in `Phase::Waiting` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Awaiting {
    /// `POST /pub/{channel}`: answered with the one ack.
    Publish,
    /// `POST /pub` (NDJSON): answered with every id, in order.
    Batch,
    /// `GET /pub/{channel}`.
    Info,
    /// `DELETE /pub/{channel}`.
    Delete,
    /// A Bayeux request, answered by the Bayeux thread.
    Bayeux,
    /// A Pushlet request, answered by the Pushlet thread.
    Pushlet,
    /// An open Pushlet stream, written by the Pushlet thread.
    PushletStream,
}

pub struct Subscription {
    pub channels: Vec<Arc<str>>,
    pub transport: Transport,
    /// The shared encoding it reads (the transport's, refined by the callback).
    pub encoding: crate::transport::Encoding,
    /// HTTP/1.1 chunked framing (else an HTTP/1.0 close-delimited body).
    pub chunked: bool,
    pub callback: Option<String>,
    pub poll_timeout: std::time::Duration,
    /// Where this subscriber is: the id of the last message it was given.
    pub last_id: MessageId,
    pub gap: bool,
    /// The fan-out thread counts this subscription (must be undone on close).
    pub registered: bool,
    /// Long-poll: messages gathered from the current batch.
    pub collected: Vec<Arc<Message>>,
    /// Streams: when the stream ends with a reconnect hint (max stream age,
    /// or the token's expiry if sooner), and why.
    pub ends_at: Option<std::time::Instant>,
    pub end_reason: crate::transport::EndReason,
    /// The token's expiry, when a token admitted the subscription.
    pub token_expires: Option<std::time::Instant>,
    /// WebSocket connections' protocol state.
    pub ws: Option<Box<WsSession>>,
}

/// A WebSocket connection's state beyond its subscription.
pub struct WsSession {
    /// `Sec-WebSocket-Accept` for the 101 answer.
    pub accept: String,
    /// Reassembles fragmented client messages (bounded).
    pub assembler: crate::ws::Assembler,
    /// Channels asked for with `subscribe` and not yet registered.
    pub pending: Vec<Arc<str>>,
    /// Pending channels unsubscribed before their registration came back.
    pub cancelled: Vec<Arc<str>>,
    /// A close frame was sent; input is ignored from now on.
    pub closing: bool,
    /// The socket carries Bayeux messages instead of channel commands.
    pub bayeux: bool,
    /// The token that admitted the socket, for channels added later.
    pub claims: Option<crate::auth::Claims>,
}

impl WsSession {
    pub fn new(accept: String) -> WsSession {
        WsSession {
            accept,
            assembler: crate::ws::Assembler::new(crate::ws::MAX_FRAME_PAYLOAD),
            pending: Vec::new(),
            cancelled: Vec::new(),
            closing: false,
            bayeux: false,
            claims: None,
        }
    }
}

impl Conn {
    pub fn new(port: Port, ip: std::net::IpAddr) -> Conn {
        Conn {
            port,
            phase: Phase::Reading,
            version: Version::Http11,
            keep_alive: true,
            peer_done: false,
            continue_sent: false,
            cors: None,
            jsonp: None,
            ip,
            ip_counted: false,
            bucket: None,
            pipeline: Default::default(),
            close_when_drained: false,
        }
    }
}
