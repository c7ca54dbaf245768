//! The HTTP/2 connection handler: installed by `HttpConn` when a
//! connection opens with the HTTP/2 preface (h2c with prior knowledge), or
//! at accept after ALPN `h2`. The protocol is `h2::Connection` (sans-IO);
//! this file feeds it the input, writes what it returns, keeps the send
//! windows (a stream's DATA waits for its window; one over its cap is
//! reset, like a slow consumer), and hands each stream's request to
//! `h2_stream.rs`, which serves it as `HttpConn` would over HTTP/1.1.
//!
//! Timers: the loop gives a connection one deadline; it is the nearest of
//! its streams' (poll timeouts, heartbeats, stream ends) or, with no
//! stream open, the idle timeout.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use super::conn::{Cx, Handle, Handler, Mail};
use super::h2_stream::{H2Stream, Phase};
use crate::chunk::Chunk;
use crate::h2::{self, ErrorCode, Event, H2Error};
use crate::hub::Message;
use crate::reactor::CloseReason;

/// An HTTP/2 connection with no open stream is closed (with GOAWAY) after
/// this long: browsers reopen one when a page needs it; 60 s is nginx's
/// default `keepalive_timeout` order of magnitude.
const IDLE: Duration = Duration::from_secs(60);

/// Input buffer capacity an HTTP/2 connection keeps between reads; more is
/// released once the buffer is empty (a client's frames are mostly small).
const KEEP_INPUT: usize = 4096;

pub struct H2Conn {
    pub proto: h2::Connection,
    pub streams: HashMap<u32, H2Stream>,
    /// A stream's DATA waiting for window, at most this many bytes, then
    /// it is reset: the shared frames cost reference counts, and the
    /// connection's own queue (max_outbound_bytes) bounds the socket side.
    pub stream_cap: usize,
    /// Work left from a delivery: polls to answer, streams to cut.
    pub followup: bool,
    /// GOAWAY sent at shutdown: close once every stream is done.
    pub stopping: bool,
}

/// Whether `input` is (a prefix of) the HTTP/2 connection preface.
pub fn is_preface(input: &[u8]) -> bool {
    let n = input.len().min(h2::PREFACE.len());
    n > 0 && input.get(..n) == h2::PREFACE.get(..n)
}

impl H2Conn {
    /// Takes over a connection whose input starts with the preface.
    pub fn start(cx: &mut Cx) -> Handler {
        let shared = cx.env.shared.clone();
        let limits = h2::Limits { max_header_list: 2 * shared.max_head_bytes, ..h2::Limits::default() };
        let conn = H2Conn {
            proto: h2::Connection::new(limits),
            streams: HashMap::new(),
            stream_cap: shared.max_outbound,
            followup: false,
            stopping: false,
        };
        crate::stats::inc(&cx.env.stats().h2.connections);
        cx.io.clear_deadline(cx.key);
        Box::new(conn).read(cx)
    }

    /// Reads whole frames from the input and handles their events.
    fn read(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        let now = cx.io.now();
        let Some((_, input)) = cx.io.conn_and_input(cx.key) else { return Handler::Closing };
        let result = self.proto.recv(input, now);
        let (used, events) = match result {
            Ok(ok) => ok,
            Err(e) => return self.fail(cx, e),
        };
        input.drain(..used);
        if input.is_empty() && input.capacity() > KEEP_INPUT {
            // Idle connections keep no read buffer: a burst of requests
            // (100 streams' HEADERS) must not pin 16 KiB per connection.
            *input = Vec::new();
        }
        cx.io.resume_read(cx.key);
        self.flush_control(cx);
        for event in events {
            self.on_event(cx, event);
        }
        self.settle(cx)
    }

    fn on_event(&mut self, cx: &mut Cx, event: Event) {
        match event {
            Event::Request { stream, fields, end_stream } => {
                crate::stats::inc(&cx.env.stats().h2.streams);
                crate::stats::inc(&cx.env.stats().requests);
                // A CONNECT is whole at its HEADERS: its DATA is the tunnel's.
                let connect = h2::message::is_connect(&fields);
                let mut s = H2Stream::new(stream, fields);
                // A body must arrive within the head timeout, as over HTTP/1.1.
                s.due = Some(cx.io.now() + cx.env.shared.head_timeout);
                self.streams.insert(stream, s);
                if connect && end_stream {
                    let why = "a CONNECT with END_STREAM opens nothing";
                    super::h2_stream::reset(self, cx, stream, ErrorCode::Protocol, why);
                } else if end_stream || connect {
                    super::h2_stream::request_complete(self, cx, stream);
                }
            }
            Event::Data { stream, data, end_stream } => {
                super::h2_stream::body(self, cx, stream, data, end_stream)
            }
            Event::Reset { stream } => {
                crate::stats::inc(&cx.env.stats().h2.client_resets);
                if let Some(mut s) = self.streams.remove(&stream) {
                    s.leave(cx);
                }
            }
            Event::WindowOpened => {
                let ids: Vec<u32> = self.streams.keys().copied().collect();
                for id in ids {
                    let chunks = self.pump(id);
                    send_all(cx, chunks, false);
                }
            }
            Event::GoAway => {}
        }
    }

    /// A connection error: GOAWAY with the reason, then close.
    fn fail(mut self: Box<Self>, cx: &mut Cx, e: H2Error) -> Handler {
        crate::log::debug(format_args!("h2: {e}"));
        if let Some(n) = cx.env.stats().h2.goaway_errors.get(e.code as usize) {
            crate::stats::inc(n);
        }
        self.proto.goaway(e.code, &e.reason);
        self.flush_control(cx);
        self.leave_all(cx);
        cx.io.close_after_flush(cx.key);
        Handler::Closing
    }

    fn leave_all(&mut self, cx: &mut Cx) {
        for (_, mut s) in self.streams.drain() {
            s.leave(cx);
        }
        crate::stats::dec(&cx.env.stats().h2.connections);
    }

    /// Writes the protocol's control frames (acks, window updates, resets).
    pub fn flush_control(&mut self, cx: &mut Cx) {
        let out = self.proto.take_output();
        if !out.is_empty() {
            cx.io.send_exempt(cx.key, Chunk::Owned(out));
        }
    }

    /// After any event: drop finished streams, close when stopping and
    /// done, arm the nearest deadline.
    fn settle(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        self.flush_control(cx);
        self.streams.retain(|_, s| !(matches!(s.phase, Phase::Done) && s.waiting.is_empty()));
        if self.stopping && self.streams.is_empty() {
            self.leave_all(cx);
            cx.io.close_after_flush(cx.key);
            return Handler::Closing;
        }
        let now = cx.io.now();
        for s in self.streams.values_mut() {
            if s.due.is_none() && !s.waiting.is_empty() {
                // A finished response whose window stays shut this long is cut.
                s.due = Some(now + IDLE);
            }
        }
        let next = self.streams.values().filter_map(|s| s.due).min();
        cx.io.set_deadline(cx.key, next.unwrap_or(now + IDLE).max(now));
        Handler::H2(self)
    }

    /// Queues a response's HEADERS for `stream`.
    pub fn send_headers(&mut self, cx: &mut Cx, stream: u32, block: &[u8], end_stream: bool) {
        let bytes = self.proto.headers(stream, block, end_stream);
        cx.io.send_exempt(cx.key, Chunk::Owned(bytes));
    }

    /// Queues DATA for `stream` behind what already waits, and sends what
    /// the windows allow. `exempt`: a head-of-response or catch-up write
    /// that does not count against the connection's slow-consumer cap.
    pub fn send_data(&mut self, cx: &mut Cx, stream: u32, chunk: Chunk, end: bool, exempt: bool) {
        let chunks = self.queue_data(stream, chunk, end, exempt);
        send_all(cx, chunks, exempt);
        if self.streams.get(&stream).is_some_and(|s| s.over(self.stream_cap)) {
            self.cut(cx, stream);
        }
    }

    /// The chunks to write for `stream` now, with `chunk` queued after its waiting DATA.
    fn queue_data(&mut self, stream: u32, chunk: Chunk, end: bool, exempt: bool) -> Vec<Chunk> {
        let max = self.proto.peer_max_frame;
        let Some(s) = self.streams.get_mut(&stream) else { return Vec::new() };
        if exempt {
            s.waiting_exempt += chunk.len();
        }
        if chunk.len() <= max {
            s.waiting_bytes += chunk.len();
            s.waiting.push_back((chunk, end, exempt));
        } else {
            // Larger than a frame: copied into frame-sized pieces (rare: a
            // message over 16 KiB to a peer with the default frame size).
            let bytes = chunk.to_vec();
            let mut pieces = bytes.chunks(max).peekable();
            while let Some(piece) = pieces.next() {
                s.waiting_bytes += piece.len();
                s.waiting.push_back((Chunk::Owned(piece.to_vec()), end && pieces.peek().is_none(), exempt));
            }
        }
        self.pump(stream)
    }

    /// DATA frames for `stream` that fit its window now.
    fn pump(&mut self, stream: u32) -> Vec<Chunk> {
        let mut out = Vec::new();
        let Some(s) = self.streams.get_mut(&stream) else { return out };
        while let Some((chunk, end, _)) = s.waiting.front() {
            let len = chunk.len();
            if len > self.proto.window(stream) {
                break;
            }
            let end = *end;
            let head = self.proto.data(stream, len, end);
            let Some((chunk, _, exempt)) = s.waiting.pop_front() else { break };
            s.waiting_bytes -= len;
            if exempt {
                s.waiting_exempt -= len;
            }
            out.push(match chunk {
                Chunk::Shared(body) => Chunk::wrapped(&head, body, b""),
                other => Chunk::Owned([&head[..], &other.to_vec()].concat()),
            });
        }
        if s.waiting.is_empty() {
            // An idle stream keeps no queue (most never wait for window).
            s.waiting = VecDeque::new();
        }
        out
    }

    /// Resets a stream whose client does not open its window: it resumes by id.
    pub fn cut(&mut self, cx: &mut Cx, stream: u32) {
        crate::log::debug(format_args!("h2: stream {stream} over its window, reset"));
        crate::stats::inc(&cx.env.stats().slow_consumers);
        crate::stats::inc(&cx.env.stats().h2.streams_reset);
        self.proto.reset(stream, ErrorCode::Cancel);
        if let Some(mut s) = self.streams.remove(&stream) {
            s.leave(cx);
        }
        self.flush_control(cx);
    }

    /// A delivery for `stream`: the chunks to write, and whether the
    /// connection needs a callback after the batch (a poll to answer, a
    /// stream over its cap to cut).
    pub fn deliver(&mut self, stream: u32, message: &Arc<Message>) -> (Vec<Chunk>, bool) {
        let none = (Vec::new(), false);
        let Some(s) = self.streams.get_mut(&stream) else { return none };
        let sub = match &mut s.phase {
            Phase::Stream { sub, .. } => sub,
            // A WebSocket's deliveries are the message's shared WebSocket frame.
            Phase::Ws { session, .. } => match session.channels_mut() {
                Some(sub) => sub,
                None => return none,
            },
            Phase::Poll { sub, collected, ready, .. } => {
                if message.id <= sub.last_id {
                    return none;
                }
                collected.push(message.clone());
                *ready = true;
                self.followup = true;
                return (Vec::new(), collected.len() == 1);
            }
            _ => return none,
        };
        let Some(sub) = sub.take(message) else { return none };
        let frame = Chunk::Shared(message.frame(sub.encoding).bytes.clone());
        let chunks = self.queue_data(stream, frame, false, false);
        let over = self.streams.get(&stream).is_some_and(|s| s.over(self.stream_cap));
        self.followup |= over;
        (chunks, over)
    }

    /// After a batch: answers polls that got messages, cuts streams over their cap.
    pub fn after_delivery(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        self.followup = false;
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            let Some(s) = self.streams.get(&id) else { continue };
            if s.over(self.stream_cap) {
                self.cut(cx, id);
            } else if matches!(s.phase, Phase::Poll { ready: true, .. }) {
                super::h2_stream::answer_poll(&mut self, cx, id);
            }
        }
        self.settle(cx)
    }

    /// A part of an engine's (Bayeux, Pushlet) answer for `stream`.
    pub fn engine(mut self: Box<Self>, cx: &mut Cx, stream: u32, part: crate::hub::Part) -> Handler {
        super::h2_stream::engine_part(&mut self, cx, stream, part);
        self.settle(cx)
    }

    /// Shutdown: every stream ends (polls answered, streams finished with
    /// their reconnect hint), GOAWAY follows; the connection closes when all are done.
    fn shutdown(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        self.stopping = true;
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            super::h2_stream::finish(&mut self, cx, id, crate::transport::EndReason::Shutdown);
        }
        // After the streams' last frames: some clients (Python's h2) stop
        // reading DATA once they have a GOAWAY, though RFC 9113 allows it.
        self.proto.goaway(ErrorCode::NoError, "shutting down");
        self.settle(cx)
    }
}

fn send_all(cx: &mut Cx, chunks: Vec<Chunk>, exempt: bool) {
    for chunk in chunks {
        if exempt {
            cx.io.send_exempt(cx.key, chunk);
        } else {
            cx.io.send(cx.key, chunk);
        }
    }
}

impl Handle for H2Conn {
    fn stay(self: Box<Self>) -> Handler {
        Handler::H2(self)
    }

    fn input(self: Box<Self>, cx: &mut Cx) -> Handler {
        self.read(cx)
    }

    fn mail(mut self: Box<Self>, cx: &mut Cx, mail: Mail) -> Handler {
        match mail {
            Mail::Subscribed(reply) => super::h2_stream::subscribed(&mut self, cx, reply),
            Mail::ChannelDeleted { stream } => {
                super::h2_stream::finish(&mut self, cx, stream, crate::transport::EndReason::ChannelDeleted)
            }
            Mail::Shutdown => return self.shutdown(cx),
            _ => {}
        }
        self.settle(cx)
    }

    fn deadline(mut self: Box<Self>, cx: &mut Cx) -> Handler {
        let now = cx.io.now();
        if self.streams.is_empty() {
            self.proto.goaway(ErrorCode::NoError, "idle");
            self.flush_control(cx);
            self.leave_all(cx);
            cx.io.close_after_flush(cx.key);
            return Handler::Closing;
        }
        let due: Vec<u32> =
            self.streams.iter().filter(|(_, s)| s.due.is_some_and(|d| d <= now)).map(|(&id, _)| id).collect();
        for id in due {
            super::h2_stream::timer(&mut self, cx, id, now);
        }
        self.settle(cx)
    }

    fn eof(self: Box<Self>, cx: &mut Cx) -> Handler {
        // The client's half is closed: its streams cannot go on.
        cx.io.close(cx.key);
        Handler::H2(self)
    }

    fn closed(mut self: Box<Self>, cx: &mut Cx, _reason: CloseReason) {
        self.leave_all(cx);
    }
}

/// The HTTP/2 lines of /metrics.
pub fn metrics(stats: &crate::stats::Stats, metric: &mut impl FnMut(&str, &str, &str, &[(String, u64)])) {
    let one = |v: u64| vec![(String::new(), v)];
    metric("h2_connections", "gauge", "Open HTTP/2 connections.", &one(stats.total(|l| &l.h2.connections)));
    metric(
        "h2_streams_total",
        "counter",
        "HTTP/2 streams (requests) opened.",
        &one(stats.total(|l| &l.h2.streams)),
    );
    metric(
        "h2_websockets_total",
        "counter",
        "WebSockets opened on HTTP/2 streams (RFC 8441 extended CONNECT).",
        &one(stats.total(|l| &l.h2.websockets)),
    );
    metric(
        "h2_streams_reset_total",
        "counter",
        "HTTP/2 streams reset by halley: over the concurrency limit, over their window, or malformed.",
        &one(stats.total(|l| &l.h2.streams_reset)),
    );
    metric(
        "h2_client_resets_total",
        "counter",
        "HTTP/2 streams reset by the client.",
        &one(stats.total(|l| &l.h2.client_resets)),
    );
    const CODES: [&str; 14] = [
        "no_error",
        "protocol_error",
        "internal_error",
        "flow_control_error",
        "settings_timeout",
        "stream_closed",
        "frame_size_error",
        "refused_stream",
        "cancel",
        "compression_error",
        "connect_error",
        "enhance_your_calm",
        "inadequate_security",
        "http_1_1_required",
    ];
    let by_code: Vec<(String, u64)> = CODES
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 0)
        .map(|(i, name)| (format!("{{code=\"{name}\"}}"), stats.total(|l| &l.h2.goaway_errors[i])))
        .collect();
    metric(
        "h2_connection_errors_total",
        "counter",
        "HTTP/2 connections ended with GOAWAY for an error, by code (enhance_your_calm: floods, rapid reset, oversize headers).",
        &by_code,
    );
}

/// The per-stream bookkeeping `H2Conn` keeps (see `h2_stream.rs`).
/// DATA waiting for window: the bytes, END_STREAM, and whether they are
/// exempt from the cap (see `H2Stream::waiting_exempt`).
pub type Waiting = VecDeque<(Chunk, bool, bool)>;
