//! The connection state machine (RFC 9113 §5, §6.5, §6.9), server side and
//! sans-IO: [`Connection::recv`] takes received bytes and the time, and
//! returns how many it consumed and the events for the server; control
//! frames to send (SETTINGS acks, PING acks, WINDOW_UPDATEs, RST_STREAMs,
//! GOAWAY) collect in an output buffer the server takes with
//! [`Connection::take_output`]. Response frames are written through
//! [`Connection::headers`] and [`Connection::data`], which keep the send
//! windows.
//!
//! Every limit is a [`Limits`] field, and breaking one is an [`H2Error`]
//! with a reason: a stream error resets only that stream, a connection
//! error ends with GOAWAY. The known attacks each meet a bound here:
//! rapid reset (client resets per window), CONTINUATION floods (frames and
//! bytes per header block), SETTINGS and PING floods (frames that make us
//! answer, per window), HPACK bombs (the decoded list size, in `hpack`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::error::{ErrorCode, H2Error};
use super::frame::{self, Decoded, Frame};
use super::hpack::{self, Field};

/// What a client must send first (§3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
/// RFC 8441 §3: the client may open WebSockets with an extended CONNECT.
pub const SETTINGS_ENABLE_CONNECT_PROTOCOL: u16 = 0x8;

/// The window every stream and the connection start with (§6.9.2).
pub const DEFAULT_WINDOW: i64 = 65_535;
/// The largest a window may grow (§6.9.1).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;

/// The bounds of one connection. Defaults and why:
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open streams at once: a page of live widgets needs tens; 128 is
    /// above the browsers' own wishes (Chromium asks for 100) and bounds a
    /// connection's subscriptions the way `max_connections` bounds sockets.
    pub max_streams: u32,
    /// Decoded header list size (SETTINGS_MAX_HEADER_LIST_SIZE): our
    /// HTTP/1.1 head limit, 8 KiB, doubled for HPACK's 32-byte per-field overhead.
    pub max_header_list: usize,
    /// CONTINUATION frames per header block: a real block of 16 KiB needs
    /// at most two frames at the default frame size; 16 leaves room.
    pub max_continuations: usize,
    /// Resets by the client per `flood_window` (rapid reset, CVE-2023-44487):
    /// a browser cancels a few streams when a page changes, not hundreds.
    pub max_resets: u32,
    /// SETTINGS and PING frames per `flood_window` (each makes us answer).
    pub max_pings: u32,
    pub flood_window: Duration,
    /// The receive window we give each stream: request bodies (Bayeux,
    /// Pushlet posts) are at most `max_message_bytes`, 64 KiB.
    pub stream_window: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_streams: 128,
            max_header_list: 16 * 1024,
            max_continuations: 16,
            max_resets: 100,
            max_pings: 100,
            flood_window: Duration::from_secs(10),
            stream_window: 65_535,
        }
    }
}

/// What the server hears from the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A new request's headers (validation of the fields is the server's).
    Request { stream: u32, fields: Vec<Field>, end_stream: bool },
    /// Request body bytes.
    Data { stream: u32, data: Vec<u8>, end_stream: bool },
    /// The client reset the stream, or we refused it: forget it.
    Reset { stream: u32 },
    /// A window grew: streams with data waiting may send.
    WindowOpened,
    /// The client is going away: no new streams will come.
    GoAway,
}

/// One open stream: its send window and which halves have ended. It is
/// forgotten once both have (or on a reset). Most requests end their half
/// with their HEADERS; a WebSocket's (an extended CONNECT) stays open until
/// the client's END_STREAM, which may come after ours (the close handshake).
#[derive(Debug)]
struct Stream {
    send_window: i64,
    /// We sent END_STREAM.
    local_done: bool,
    /// The client sent END_STREAM: more DATA is a stream error.
    remote_done: bool,
}

/// A count of events in a time window.
#[derive(Debug)]
struct Flood {
    count: u32,
    since: Option<Instant>,
}

impl Flood {
    /// Counts one; true while within `max` per `window`.
    fn allow(&mut self, now: Instant, window: Duration, max: u32) -> bool {
        match self.since {
            Some(since) if now.duration_since(since) < window => self.count += 1,
            _ => {
                self.since = Some(now);
                self.count = 1;
            }
        }
        self.count <= max
    }
}

/// A header block being read: its stream, bytes so far, frames so far.
#[derive(Debug)]
struct Pending {
    stream: u32,
    end_stream: bool,
    block: Vec<u8>,
    frames: usize,
}

#[derive(Debug)]
pub struct Connection {
    limits: Limits,
    preface_done: bool,
    settings_seen: bool,
    decoder: hpack::Decoder,
    streams: HashMap<u32, Stream>,
    /// The highest stream id the client opened.
    last_stream: u32,
    conn_window: i64,
    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE.
    initial_window: i64,
    /// The peer's SETTINGS_MAX_FRAME_SIZE: our DATA frames are at most this.
    pub peer_max_frame: usize,
    pending: Option<Pending>,
    resets: Flood,
    pings: Flood,
    /// We sent GOAWAY: new streams are ignored.
    going_away: bool,
    out: Vec<u8>,
}

impl Connection {
    /// A connection that has sent its SETTINGS (in the output).
    pub fn new(limits: Limits) -> Connection {
        let out = frame::encode_settings(&[
            (SETTINGS_MAX_CONCURRENT_STREAMS, limits.max_streams),
            (SETTINGS_INITIAL_WINDOW_SIZE, limits.stream_window),
            (SETTINGS_MAX_HEADER_LIST_SIZE, limits.max_header_list as u32),
            (SETTINGS_HEADER_TABLE_SIZE, 4096),
            (SETTINGS_ENABLE_CONNECT_PROTOCOL, 1),
        ]);
        Connection {
            decoder: hpack::Decoder::new(4096),
            limits,
            preface_done: false,
            settings_seen: false,
            streams: HashMap::new(),
            last_stream: 0,
            conn_window: DEFAULT_WINDOW,
            initial_window: DEFAULT_WINDOW,
            peer_max_frame: frame::DEFAULT_MAX_FRAME,
            pending: None,
            resets: Flood { count: 0, since: None },
            pings: Flood { count: 0, since: None },
            going_away: false,
            out,
        }
    }

    /// Control frames to send, in order.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Reads whole frames from `input`: the bytes consumed and the events,
    /// or a connection error (after which only `goaway` makes sense).
    /// Stream errors are handled here: RST_STREAM goes out and the server
    /// hears `Event::Reset`.
    pub fn recv(&mut self, input: &[u8], now: Instant) -> Result<(usize, Vec<Event>), H2Error> {
        let mut at = 0;
        let mut events = Vec::new();
        if !self.preface_done {
            let have = input.len().min(PREFACE.len());
            if input.get(..have) != PREFACE.get(..have) {
                return Err(H2Error::conn(ErrorCode::Protocol, "not the HTTP/2 connection preface"));
            }
            if have < PREFACE.len() {
                return Ok((0, events));
            }
            self.preface_done = true;
            at = PREFACE.len();
        }
        while let Some(rest) = input.get(at..) {
            let (frame, consumed) = match frame::decode(rest, frame::DEFAULT_MAX_FRAME) {
                Ok(Decoded::Partial) => break,
                Ok(Decoded::Complete { frame, consumed }) => (frame, consumed),
                Err(e) if e.stream.is_some() => {
                    // A stream error in a frame we can skip whole.
                    let Some(len) = frame::frame_len(rest).filter(|&len| len <= rest.len()) else { break };
                    at += len;
                    self.stream_error(&e, now, &mut events)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            at += consumed;
            if let Err(e) = self.on_frame(frame, now, &mut events) {
                if e.stream.is_none() {
                    return Err(e);
                }
                self.stream_error(&e, now, &mut events)?;
            }
        }
        Ok((at, events))
    }

    /// Resets the stream. Each reset we send counts with the client's own
    /// resets: a client that keeps provoking them (streams over the limit,
    /// malformed frames) would otherwise make us queue RST_STREAM frames
    /// without bound if it never reads.
    fn stream_error(&mut self, e: &H2Error, now: Instant, events: &mut Vec<Event>) -> Result<(), H2Error> {
        let stream = e.stream.unwrap_or(0);
        self.out.extend(frame::encode_rst_stream(stream, e.code));
        if self.streams.remove(&stream).is_some() {
            events.push(Event::Reset { stream });
        }
        self.count_reset(now, "stream errors")
    }

    /// Counts one reset (ours or the client's) against the rapid-reset bound.
    fn count_reset(&mut self, now: Instant, kind: &str) -> Result<(), H2Error> {
        if !self.resets.allow(now, self.limits.flood_window, self.limits.max_resets) {
            return Err(H2Error::conn(
                ErrorCode::EnhanceYourCalm,
                format!(
                    "more than {} streams reset in {:?} ({kind})",
                    self.limits.max_resets, self.limits.flood_window
                ),
            ));
        }
        Ok(())
    }

    fn on_frame(&mut self, f: Frame, now: Instant, events: &mut Vec<Event>) -> Result<(), H2Error> {
        if !self.settings_seen && !matches!(f, Frame::Settings { ack: false, .. }) {
            return Err(H2Error::conn(ErrorCode::Protocol, "the first frame must be SETTINGS"));
        }
        if let Some(p) = &self.pending {
            if !matches!(f, Frame::Continuation { stream, .. } if stream == p.stream) {
                return Err(H2Error::conn(ErrorCode::Protocol, "a header block was interrupted"));
            }
        }
        match f {
            Frame::Settings { ack, params } => {
                let grew = self.on_settings(ack, &params, now)?;
                if grew {
                    events.push(Event::WindowOpened);
                }
                Ok(())
            }
            Frame::Ping { ack, data } => {
                if !ack {
                    self.flood_check(now, "PING")?;
                    self.out.extend(frame::encode_ping_ack(data));
                }
                Ok(())
            }
            Frame::Headers { stream, end_stream, end_headers, block } => {
                self.pending = Some(Pending { stream, end_stream, block: block.to_vec(), frames: 1 });
                if end_headers {
                    return self.end_block(events);
                }
                self.check_pending()
            }
            Frame::Continuation { end_headers, block, stream } => {
                let Some(p) = self.pending.as_mut() else {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        format!("CONTINUATION on stream {stream} without HEADERS"),
                    ));
                };
                p.block.extend_from_slice(block);
                p.frames += 1;
                self.check_pending()?;
                if end_headers {
                    return self.end_block(events);
                }
                Ok(())
            }
            Frame::Data { stream, end_stream, data, flow_len } => {
                self.on_data(stream, end_stream, data, flow_len, events)
            }
            Frame::RstStream { stream, .. } => {
                if stream > self.last_stream {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        format!("RST_STREAM on idle stream {stream}"),
                    ));
                }
                if self.streams.remove(&stream).is_some() {
                    events.push(Event::Reset { stream });
                    self.count_reset(now, "rapid reset")?;
                }
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => self.on_window_update(stream, increment, events),
            Frame::GoAway { .. } => {
                events.push(Event::GoAway);
                Ok(())
            }
            Frame::PushPromise { .. } => {
                Err(H2Error::conn(ErrorCode::Protocol, "a client may not send PUSH_PROMISE"))
            }
            Frame::Priority { .. } | Frame::Unknown { .. } => Ok(()),
        }
    }

    fn flood_check(&mut self, now: Instant, what: &str) -> Result<(), H2Error> {
        if !self.pings.allow(now, self.limits.flood_window, self.limits.max_pings) {
            return Err(H2Error::conn(
                ErrorCode::EnhanceYourCalm,
                format!(
                    "more than {} SETTINGS and PING frames in {:?} ({what} flood)",
                    self.limits.max_pings, self.limits.flood_window
                ),
            ));
        }
        Ok(())
    }

    /// Applies the peer's SETTINGS; true when stream windows grew.
    fn on_settings(&mut self, ack: bool, params: &[(u16, u32)], now: Instant) -> Result<bool, H2Error> {
        let mut grew = false;
        if ack {
            return Ok(grew);
        }
        if self.settings_seen {
            self.flood_check(now, "SETTINGS")?;
        }
        self.settings_seen = true;
        for &(id, value) in params {
            match id {
                SETTINGS_ENABLE_PUSH if value > 1 => {
                    return Err(H2Error::conn(
                        ErrorCode::Protocol,
                        format!("SETTINGS_ENABLE_PUSH of {value}"),
                    ));
                }
                SETTINGS_INITIAL_WINDOW_SIZE => {
                    let value = i64::from(value);
                    if value > MAX_WINDOW {
                        return Err(H2Error::conn(
                            ErrorCode::FlowControl,
                            format!("SETTINGS_INITIAL_WINDOW_SIZE of {value}"),
                        ));
                    }
                    let delta = value - self.initial_window;
                    grew |= delta > 0;
                    self.initial_window = value;
                    for s in self.streams.values_mut() {
                        s.send_window += delta;
                        if s.send_window > MAX_WINDOW {
                            return Err(H2Error::conn(ErrorCode::FlowControl, "a stream window over 2^31-1"));
                        }
                    }
                }
                SETTINGS_MAX_FRAME_SIZE => {
                    if !(frame::DEFAULT_MAX_FRAME as u32..=frame::MAX_MAX_FRAME).contains(&value) {
                        return Err(H2Error::conn(
                            ErrorCode::Protocol,
                            format!("SETTINGS_MAX_FRAME_SIZE of {value}"),
                        ));
                    }
                    self.peer_max_frame = value as usize;
                }
                // Table size (we never index), concurrency (we never push),
                // list size (our headers are small), unknown: nothing to do.
                _ => {}
            }
        }
        self.out.extend(frame::encode_settings_ack());
        Ok(grew)
    }

    fn check_pending(&self) -> Result<(), H2Error> {
        let Some(p) = &self.pending else { return Ok(()) };
        if p.frames > self.limits.max_continuations + 1 {
            return Err(H2Error::conn(
                ErrorCode::EnhanceYourCalm,
                format!("a header block of more than {} CONTINUATION frames", self.limits.max_continuations),
            ));
        }
        // Encoded, a list is never much larger than decoded (a literal adds
        // a few length bytes); so this bounds what we buffer before decoding.
        if p.block.len() > self.limits.max_header_list + 1024 {
            return Err(H2Error::conn(
                ErrorCode::EnhanceYourCalm,
                format!("a header block over {} bytes", self.limits.max_header_list),
            ));
        }
        Ok(())
    }

    fn end_block(&mut self, events: &mut Vec<Event>) -> Result<(), H2Error> {
        let Some(p) = self.pending.take() else { return Ok(()) };
        // Always decode: the table must stay in step even for refused streams.
        let fields = self.decoder.decode(&p.block, self.limits.max_header_list);
        let fields = match fields {
            Err(hpack::HpackError::TooLong) => {
                self.last_stream = self.last_stream.max(p.stream);
                return Err(H2Error::conn(
                    ErrorCode::EnhanceYourCalm,
                    format!("a header list over {} bytes", self.limits.max_header_list),
                ));
            }
            Err(e) => return Err(H2Error::conn(ErrorCode::Compression, e.to_string())),
            Ok(fields) => fields,
        };
        if self.streams.contains_key(&p.stream) {
            // Trailers: we take no request trailers.
            return Err(H2Error::stream(p.stream, ErrorCode::Protocol, "trailers are not accepted"));
        }
        if p.stream % 2 == 0 || p.stream <= self.last_stream {
            return Err(H2Error::conn(
                ErrorCode::Protocol,
                format!("HEADERS on stream {} (must be new and odd)", p.stream),
            ));
        }
        self.last_stream = p.stream;
        if self.going_away {
            return Ok(());
        }
        if self.streams.len() >= self.limits.max_streams as usize {
            self.reap_one_half_closed_local();
        }
        if self.streams.len() >= self.limits.max_streams as usize {
            return Err(H2Error::stream(
                p.stream,
                ErrorCode::RefusedStream,
                format!("over {} concurrent streams", self.limits.max_streams),
            ));
        }
        let stream =
            Stream { send_window: self.initial_window, local_done: false, remote_done: p.end_stream };
        self.streams.insert(p.stream, stream);
        events.push(Event::Request { stream: p.stream, fields, end_stream: p.end_stream });
        Ok(())
    }

    fn on_data(
        &mut self,
        stream: u32,
        end_stream: bool,
        data: &[u8],
        flow_len: u32,
        events: &mut Vec<Event>,
    ) -> Result<(), H2Error> {
        if stream > self.last_stream {
            return Err(H2Error::conn(ErrorCode::Protocol, format!("DATA on idle stream {stream}")));
        }
        // We hand the bytes on at once, so the credit comes back at once: the
        // server bounds what it keeps itself (a body to max_message_bytes, a
        // WebSocket to one partial frame, each frame decoded as it completes).
        if flow_len > 0 {
            self.out.extend(frame::encode_window_update(0, flow_len));
        }
        let Some(s) = self.streams.get_mut(&stream).filter(|s| !s.remote_done) else {
            return Err(H2Error::stream(stream, ErrorCode::StreamClosed, "DATA on a closed stream"));
        };
        if end_stream {
            s.remote_done = true;
            if s.local_done {
                self.streams.remove(&stream);
            }
        } else if flow_len > 0 {
            self.out.extend(frame::encode_window_update(stream, flow_len));
        }
        events.push(Event::Data { stream, data: data.to_vec(), end_stream });
        Ok(())
    }

    fn on_window_update(
        &mut self,
        stream: u32,
        increment: u32,
        events: &mut Vec<Event>,
    ) -> Result<(), H2Error> {
        if increment == 0 {
            let e = "WINDOW_UPDATE of 0";
            return Err(if stream == 0 {
                H2Error::conn(ErrorCode::Protocol, e)
            } else {
                H2Error::stream(stream, ErrorCode::Protocol, e)
            });
        }
        let window = if stream == 0 {
            &mut self.conn_window
        } else if let Some(s) = self.streams.get_mut(&stream) {
            &mut s.send_window
        } else {
            return Ok(());
        };
        *window += i64::from(increment);
        if *window > MAX_WINDOW {
            let e = "a window over 2^31-1";
            return Err(if stream == 0 {
                H2Error::conn(ErrorCode::FlowControl, e)
            } else {
                H2Error::stream(stream, ErrorCode::FlowControl, e)
            });
        }
        events.push(Event::WindowOpened);
        Ok(())
    }

    /// A response's HEADERS (and CONTINUATIONs) for an open stream.
    pub fn headers(&mut self, stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
        if end_stream {
            self.end_local(stream);
        }
        frame::encode_headers(stream, block, end_stream, self.peer_max_frame)
    }

    /// How many DATA bytes `stream` may send now (both windows, never negative).
    pub fn window(&self, stream: u32) -> usize {
        let s = self.streams.get(&stream).map_or(0, |s| s.send_window);
        s.min(self.conn_window).max(0) as usize
    }

    /// The header of a DATA frame of `len` bytes, charged to the windows;
    /// `len` must be within [`Connection::window`] and `peer_max_frame`.
    pub fn data(&mut self, stream: u32, len: usize, end_stream: bool) -> [u8; frame::HEADER_LEN] {
        self.conn_window -= len as i64;
        if let Some(s) = self.streams.get_mut(&stream) {
            s.send_window -= len as i64;
        }
        if end_stream {
            self.end_local(stream);
        }
        frame::header(len, frame::TYPE_DATA, if end_stream { frame::FLAG_END_STREAM } else { 0 }, stream)
    }

    /// We are done with `stream` (END_STREAM sent). It is forgotten if the
    /// client's half has ended too; else it stays half-closed (local) and
    /// still counts (RFC 9113 §5.1.2) until the client ends it or resets it.
    fn end_local(&mut self, stream: u32) {
        if let Some(s) = self.streams.get_mut(&stream) {
            s.local_done = true;
            if s.remote_done {
                self.streams.remove(&stream);
            }
        }
    }

    /// Frees a slot for a new stream at the concurrency limit: the oldest
    /// stream we have ended whose client never ended its half (a WebSocket
    /// whose client did not finish the close) is reset with NO_ERROR, which
    /// RFC 9113 §8.1 allows after a complete response. Without it, such
    /// streams would hold their slots until the connection closed.
    fn reap_one_half_closed_local(&mut self) {
        let oldest = self.streams.iter().filter(|(_, s)| s.local_done).map(|(&id, _)| id).min();
        if let Some(stream) = oldest {
            self.streams.remove(&stream);
            self.out.extend(frame::encode_rst_stream(stream, ErrorCode::NoError));
        }
    }

    /// Resets `stream` from our side (a stream over its window, say).
    pub fn reset(&mut self, stream: u32, code: ErrorCode) {
        if self.streams.remove(&stream).is_some() {
            self.out.extend(frame::encode_rst_stream(stream, code));
        }
    }

    /// Says goodbye: GOAWAY with the last stream we took; new streams are ignored.
    pub fn goaway(&mut self, code: ErrorCode, debug: &str) {
        if !self.going_away {
            self.going_away = true;
            self.out.extend(frame::encode_goaway(self.last_stream, code, debug));
        }
    }

    pub fn is_open(&self, stream: u32) -> bool {
        self.streams.get(&stream).is_some_and(|s| !s.local_done)
    }

    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
