//! One subscriber connection: its request, and what its bytes mean in each
//! state (response head, body, WebSocket frames). The decoding itself is in
//! `crate::decode`; this file wires it to the subscriber's state and the
//! worker's counters.

use std::io;
use std::time::Instant;

use hdrhistogram::Histogram;
use mio::net::TcpStream;

use super::measure::Stats;
use crate::cli::{Config, Transport};
use crate::decode::lines::Lines;
use crate::decode::longpoll::Poll;
use crate::decode::ws::{self, WsEvent};
use crate::decode::{head, sse, stream, Body, Status};
use crate::parse::{self, SeqTrack};
use crate::stats::Errors;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    Idle,
    Connecting,
    Head,
    Body,
    Ws,
    Closed,
}

/// The transport's decoder state.
pub enum Decoder {
    Sse(Lines),
    Stream(Lines),
    Poll(Box<Poll>),
    Ws(ws::Reader),
}

impl Decoder {
    pub fn new(transport: Transport) -> Decoder {
        match transport {
            Transport::Sse => Decoder::Sse(Lines::default()),
            Transport::Stream => Decoder::Stream(Lines::default()),
            Transport::LongPoll => Decoder::Poll(Box::default()),
            Transport::Ws => Decoder::Ws(ws::Reader::default()),
        }
    }

    fn poll(&mut self) -> Option<&mut Poll> {
        match self {
            Decoder::Poll(p) => Some(p),
            _ => None,
        }
    }

    /// The framing of the body being read (WebSocket: none).
    fn body(&self) -> Body {
        match self {
            Decoder::Sse(l) | Decoder::Stream(l) => l.body,
            Decoder::Poll(p) => p.body,
            Decoder::Ws(_) => Body::Done,
        }
    }
}

/// One subscriber connection.
pub(super) struct Sub {
    pub(super) stream: Option<TcpStream>,
    /// The TLS session over `stream` (with `--tls-ca`).
    pub(super) tls: Option<Box<rustls::ClientConnection>>,
    pub(super) state: State,
    pub(super) connected: bool,
    pub(super) ch: u32,
    /// Global subscriber number.
    pub(super) gidx: usize,
    pub(super) started: Instant,
    pub(super) out: Vec<u8>,
    pub(super) head: Vec<u8>,
    pub(super) track: SeqTrack,
    pub(super) dec: Decoder,
    /// Long-poll: connections opened again so far.
    pub(super) reconnects: u32,
    /// HTTP/2: the id of its current stream (0: none).
    pub(super) h2_stream: u32,
}

/// Everything but the sockets, the poll and the read buffer.
pub(super) struct Ctx {
    pub(super) transport: Transport,
    pub(super) st: Stats,
    pub(super) errors: Errors,
    pub(super) connect_hist: Histogram<u64>,
    pub(super) connected: usize,
    pub(super) failed: usize,
    pub(super) pending: usize,
    pub(super) disconnected: u64,
    pub(super) last_connected: Option<Instant>,
    pub(super) ws_mask: [u8; 4],
}

pub enum Flow {
    Ok,
    /// The server ended the stream (or the WebSocket) on purpose.
    Ended(&'static str),
    /// Long-poll: open a new connection for the next poll.
    Reconnect,
    /// Long-poll: send the next poll on this connection.
    Repoll,
}

impl Sub {
    pub fn is_poll(&self) -> bool {
        matches!(self.dec, Decoder::Poll(_))
    }
}

/// Appends the subscriber's next request to its output buffer (no allocation
/// once the buffer has grown: long-pollers send one per answer).
pub fn write_request(cfg: &Config, path: &str, sub: &mut Sub) {
    let out = &mut sub.out;
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path.as_bytes());
    if let Decoder::Poll(p) = &sub.dec {
        p.write_query(out, path);
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(cfg.sub_urls[sub.gidx % cfg.sub_urls.len()].host.as_bytes());
    out.extend_from_slice(b"\r\n");
    match &sub.dec {
        Decoder::Sse(_) => out.extend_from_slice(sse::REQUEST_HEADERS),
        Decoder::Stream(_) => out.extend_from_slice(stream::REQUEST_HEADERS),
        Decoder::Poll(p) => p.write_headers(out),
        Decoder::Ws(_) => ws::write_upgrade(out, sub.gidx),
    }
    for (k, v) in &cfg.headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

pub fn flush(sub: &mut Sub) -> io::Result<()> {
    let Some(stream) = sub.stream.as_mut() else { return Ok(()) };
    super::dial::write_out(stream, sub.tls.as_deref_mut(), &mut sub.out)
}

pub fn mark_connected(sub: &mut Sub, ctx: &mut Ctx) {
    sub.connected = true;
    ctx.connected += 1;
    ctx.pending -= 1;
    let now = Instant::now();
    ctx.connect_hist.saturating_record((now - sub.started).as_micros().max(1) as u64);
    ctx.last_connected = Some(now);
}

pub fn on_eof(sub: &mut Sub, ctx: &mut Ctx) -> Result<Flow, String> {
    if sub.is_poll() && sub.connected {
        let in_body = sub.state == State::Body;
        if in_body && sub.dec.poll().is_some_and(|p| p.on_eof()) {
            // A close-delimited answer is complete.
            finish_poll(sub, ctx, parse::realtime_ns());
        }
        return Ok(Flow::Reconnect);
    }
    if sub.connected {
        Ok(Flow::Ended("server closed the connection"))
    } else {
        Err("closed before the response head".to_string())
    }
}

pub fn on_bytes(sub: &mut Sub, data: &[u8], now: u64, ctx: &mut Ctx) -> Result<Flow, String> {
    match sub.state {
        State::Head => {
            let prev = sub.head.len();
            let parsed = if prev == 0 {
                head::parse(data, sub.dec.poll())
            } else {
                sub.head.extend_from_slice(data);
                head::parse(&sub.head, sub.dec.poll())
            };
            let parsed = parsed.map_err(|e| format!("bad response head: {e}"))?;
            let Some(head) = parsed else {
                if prev == 0 {
                    sub.head.extend_from_slice(data);
                }
                if sub.head.len() > 64 * 1024 {
                    return Err("response head over 64 KiB".into());
                }
                return Ok(Flow::Ok);
            };
            sub.head.clear();
            let rest = &data[head.len - prev..];
            on_head(sub, head.status, head.content_type(), head.body(), ctx)?;
            if sub.state == State::Body && sub.dec.body() == Body::Done {
                // No body at all.
                if sub.is_poll() {
                    return Ok(finish_poll(sub, ctx, now));
                }
                return Ok(Flow::Ended("the server ended the stream"));
            }
            if rest.is_empty() {
                return Ok(Flow::Ok);
            }
            on_bytes(sub, rest, now, ctx)
        }
        State::Body => {
            let (track, ch, st) = (&mut sub.track, sub.ch, &mut ctx.st);
            let mut f = |s, t, u| st.deliver(track, ch, s, t, u, now);
            let status = match &mut sub.dec {
                Decoder::Sse(lines) => sse::feed(lines, data, &mut f)?,
                Decoder::Stream(lines) => stream::feed(lines, data, &mut f)?,
                Decoder::Poll(p) => {
                    if p.feed(data)? == Status::Ended {
                        return Ok(finish_poll(sub, ctx, now));
                    }
                    return Ok(Flow::Ok);
                }
                Decoder::Ws(_) => unreachable!("ws bodies are frames"),
            };
            Ok(match status {
                Status::Ended => Flow::Ended("the server ended the stream"),
                Status::More => Flow::Ok,
            })
        }
        State::Ws => {
            let Decoder::Ws(reader) = &mut sub.dec else { unreachable!("a ws decoder") };
            let (track, ch, st, out, mask) = (&mut sub.track, sub.ch, &mut ctx.st, &mut sub.out, ctx.ws_mask);
            let status = reader.feed(data, &mut |e: WsEvent| match e {
                WsEvent::Message(m) => {
                    parse::extract(m, &mut |s, t, u| st.deliver(track, ch, s, t, u, now));
                }
                WsEvent::Ping(p) => ws::client_frame(out, 0xA, p, mask),
                WsEvent::Close => ws::client_frame(out, 0x8, &[], mask),
            })?;
            if status == Status::Ended {
                let _ = flush(sub);
                return Ok(Flow::Ended("the server closed the WebSocket"));
            }
            Ok(Flow::Ok)
        }
        State::Idle | State::Connecting | State::Closed => Ok(Flow::Ok),
    }
}

/// A response head: checked for the transport, and the body's framing.
fn on_head(sub: &mut Sub, status: u16, ct: &[u8], body: Body, ctx: &mut Ctx) -> Result<(), String> {
    match &mut sub.dec {
        Decoder::Ws(reader) => {
            ws::check_status(status)?;
            sub.state = State::Ws;
            reader.start();
        }
        Decoder::Sse(lines) | Decoder::Stream(lines) => {
            if ctx.transport == Transport::Sse {
                sse::check_head(status, ct)?;
            } else {
                stream::check_head(status, ct)?;
            }
            sub.state = State::Body;
            lines.start(body);
        }
        Decoder::Poll(p) => {
            Poll::check_status(status)?;
            sub.state = State::Body;
            p.body = body;
            return Ok(());
        }
    }
    if !sub.connected {
        mark_connected(sub, ctx);
    }
    Ok(())
}

/// HTTP/2: a stream's response head. The body has no framing of its own
/// (DATA frames, ended by END_STREAM), so it is read as if until close; the
/// connection always stays open for the next poll.
pub fn on_h2_head(sub: &mut Sub, status: u16, ct: &[u8], ctx: &mut Ctx) -> Result<(), String> {
    if let Decoder::Poll(p) = &mut sub.dec {
        p.on_head(status, true, None, None);
    }
    on_head(sub, status, ct, Body::Close, ctx)
}

/// HTTP/2: body bytes of a stream whose head was read.
pub fn on_h2_data(sub: &mut Sub, data: &[u8], now: u64, ctx: &mut Ctx) -> Result<Flow, String> {
    if sub.state != State::Body {
        return Ok(Flow::Ok);
    }
    on_bytes(sub, data, now, ctx)
}

/// HTTP/2: END_STREAM. A long-poll answer is complete (poll again); a
/// stream that ends was ended by the server.
pub fn on_h2_end(sub: &mut Sub, now: u64, ctx: &mut Ctx) -> Flow {
    let in_body = sub.state == State::Body;
    match &mut sub.dec {
        Decoder::Poll(p) if in_body => {
            if p.on_eof() {
                finish_poll(sub, ctx, now)
            } else {
                Flow::Ended("the server ended the long-poll answer early")
            }
        }
        _ => Flow::Ended("the server ended the stream"),
    }
}

/// Counts the end of a subscriber: a failure before it connected, a
/// disconnect after (nothing if it already ended).
pub fn end_sub(sub: &mut Sub, ctx: &mut Ctx, why: &str) {
    if sub.state == State::Closed {
        return;
    }
    sub.state = State::Closed;
    if sub.connected {
        ctx.disconnected += 1;
        ctx.errors.add(&format!("after connecting: {why}"));
    } else {
        ctx.failed += 1;
        ctx.pending -= 1;
        ctx.errors.add(why);
    }
}

/// A long-poll answer is complete: count its messages, remember the position
/// and send the next poll (on this connection, or on a new one).
fn finish_poll(sub: &mut Sub, ctx: &mut Ctx, now: u64) -> Flow {
    let (track, ch, st) = (&mut sub.track, sub.ch, &mut ctx.st);
    let keep_alive = match &mut sub.dec {
        Decoder::Poll(p) => p.finish(&mut |s, t, u| st.deliver(track, ch, s, t, u, now)),
        _ => unreachable!("a long-poll decoder"),
    };
    sub.state = State::Head;
    sub.head.clear();
    if !keep_alive {
        return Flow::Reconnect;
    }
    Flow::Repoll
}
