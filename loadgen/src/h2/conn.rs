//! The client side of one HTTP/2 connection, sans-IO: the worker hands in
//! the bytes it read and gets back, through a callback, what happened to
//! each stream; the frames to send (SETTINGS and PING acks, WINDOW_UPDATEs,
//! requests, resets) collect in `out` for the worker to write.
//!
//! Invariants: `recv` consumes whole frames only and returns how many bytes
//! it used, so the answer does not depend on how the input was cut; no input
//! makes it panic (a protocol violation is an `Err` naming it, after which
//! the connection is useless).

use std::collections::HashMap;

use super::frame::{self, Head, FLAG_ACK, FLAG_END_HEADERS, FLAG_END_STREAM, HEADER_LEN, MAX_FRAME};
use super::hpack::{self, Response};

/// The flow-control windows loadgen gives the server. A subscriber reads
/// everything at once, so a window only has to be large enough that
/// delivery never waits for a WINDOW_UPDATE: 8 MiB per stream (tens of
/// thousands of messages) and 1 GiB for the connection (100 streams at
/// their full window); each is topped up once half of it was used.
pub const STREAM_WINDOW: u32 = 8 << 20;
pub const CONN_WINDOW: u32 = 1 << 30;
/// The spec's initial windows, before SETTINGS and WINDOW_UPDATE.
const DEFAULT_WINDOW: u32 = 65_535;
/// A response header block over this is refused (halley's are < 200 bytes).
const MAX_BLOCK: usize = 64 * 1024;

/// What the server did to a stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// The response headers (informational 1xx ones are skipped).
    Response { stream: u32, head: Response },
    /// Response headers loadgen could not read: the stream was reset.
    BadResponse { stream: u32, why: String },
    /// Body bytes, padding removed.
    Data { stream: u32, data: &'a [u8] },
    /// END_STREAM: the response is complete.
    End { stream: u32 },
    /// RST_STREAM from the server.
    Reset { stream: u32, code: u32 },
    /// GOAWAY: no stream above `last_stream` was or will be processed.
    GoAway { last_stream: u32, code: u32, debug: &'a [u8] },
}

#[derive(Debug)]
struct Stream {
    /// Bytes received and not yet given back with WINDOW_UPDATE.
    unacked: u32,
    head_seen: bool,
}

/// A header block arriving in HEADERS + CONTINUATION frames.
#[derive(Debug)]
struct Block {
    stream: u32,
    end_stream: bool,
    buf: Vec<u8>,
}

#[derive(Debug)]
pub struct Client {
    /// Frames to write, in order.
    pub out: Vec<u8>,
    next_stream: u32,
    streams: HashMap<u32, Stream>,
    conn_unacked: u32,
    block: Option<Block>,
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS, once heard.
    pub max_streams: Option<u32>,
    /// A frame arrived (the first must be SETTINGS: RFC 9113 section 3.4).
    first_seen: bool,
}

impl Client {
    /// A connection whose preface, SETTINGS and connection WINDOW_UPDATE are
    /// in `out`. SETTINGS: HEADER_TABLE_SIZE 0 (loadgen keeps no HPACK
    /// table), ENABLE_PUSH 0, INITIAL_WINDOW_SIZE [`STREAM_WINDOW`].
    pub fn new() -> Client {
        let mut out = frame::PREFACE.to_vec();
        frame::write_settings(
            &mut out,
            &[
                (frame::SETTINGS_HEADER_TABLE_SIZE, 0),
                (frame::SETTINGS_ENABLE_PUSH, 0),
                (frame::SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW),
            ],
        );
        frame::write_window_update(&mut out, 0, CONN_WINDOW - DEFAULT_WINDOW);
        Client {
            out,
            next_stream: 1,
            streams: HashMap::new(),
            conn_unacked: 0,
            block: None,
            max_streams: None,
            first_seen: false,
        }
    }

    /// Queues a GET with this header block on a new stream; its id.
    pub fn request(&mut self, block: &[u8]) -> Result<u32, String> {
        let id = self.next_stream;
        if id > 0x7fff_ffff {
            return Err("HTTP/2 stream ids used up on this connection".into());
        }
        self.next_stream += 2;
        frame::write_headers(&mut self.out, id, block);
        self.streams.insert(id, Stream { unacked: 0, head_seen: false });
        Ok(id)
    }

    /// Resets an open stream (nothing if it already ended).
    pub fn reset(&mut self, stream: u32, code: u32) {
        if self.streams.remove(&stream).is_some() {
            frame::write_rst_stream(&mut self.out, stream, code);
        }
    }

    /// Streams open (requested, not ended or reset).
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Reads whole frames from `input`; `on` hears each stream event.
    /// Returns the bytes used (the rest is an incomplete frame).
    pub fn recv(&mut self, input: &[u8], on: &mut impl FnMut(Event<'_>)) -> Result<usize, String> {
        let mut at = 0;
        while let Some(h) = input.get(at..).and_then(frame::head) {
            if !self.first_seen {
                check_first(h, input)?;
                self.first_seen = true;
            }
            if h.len > MAX_FRAME {
                return Err(format!("HTTP/2 frame of {} bytes, over the {MAX_FRAME} loadgen allows", h.len));
            }
            let Some(payload) = input.get(at + HEADER_LEN..at + HEADER_LEN + h.len) else { break };
            at += HEADER_LEN + h.len;
            self.on_frame(h, payload, on)?;
        }
        Ok(at)
    }

    fn on_frame(&mut self, h: Head, payload: &[u8], on: &mut impl FnMut(Event<'_>)) -> Result<(), String> {
        if let Some(b) = &self.block {
            if h.kind != frame::CONTINUATION || h.stream != b.stream {
                return Err("HTTP/2: a header block was interrupted by another frame".into());
            }
        }
        let need_stream =
            matches!(h.kind, frame::DATA | frame::HEADERS | frame::CONTINUATION | frame::RST_STREAM);
        if need_stream && h.stream == 0 {
            return Err(format!("HTTP/2: frame type {} on stream 0", h.kind));
        }
        match h.kind {
            frame::DATA => self.on_data(h, payload, on),
            frame::HEADERS => {
                let block = frame::unpad(h.flags, payload, true).ok_or("HTTP/2: bad HEADERS padding")?;
                let end_stream = h.flags & FLAG_END_STREAM != 0;
                if h.flags & FLAG_END_HEADERS != 0 {
                    self.on_block(h.stream, block, end_stream, on);
                } else {
                    self.block = Some(Block { stream: h.stream, end_stream, buf: block.to_vec() });
                }
                Ok(())
            }
            frame::CONTINUATION => {
                let Some(mut b) = self.block.take() else {
                    return Err("HTTP/2: CONTINUATION without HEADERS".into());
                };
                b.buf.extend_from_slice(payload);
                if b.buf.len() > MAX_BLOCK {
                    return Err(format!("HTTP/2: response header block over {MAX_BLOCK} bytes"));
                }
                if h.flags & FLAG_END_HEADERS != 0 {
                    self.on_block(b.stream, &b.buf, b.end_stream, on);
                } else {
                    self.block = Some(b);
                }
                Ok(())
            }
            frame::RST_STREAM => {
                let code: [u8; 4] = payload.try_into().map_err(|_| "HTTP/2: RST_STREAM not 4 bytes")?;
                if self.streams.remove(&h.stream).is_some() {
                    on(Event::Reset { stream: h.stream, code: u32::from_be_bytes(code) });
                }
                Ok(())
            }
            frame::SETTINGS => self.on_settings(h, payload),
            frame::PUSH_PROMISE => Err("HTTP/2: PUSH_PROMISE although loadgen sent ENABLE_PUSH 0".into()),
            frame::PING => {
                let data: &[u8; 8] = payload.try_into().map_err(|_| "HTTP/2: PING not 8 bytes")?;
                if h.flags & FLAG_ACK == 0 {
                    frame::write_ping_ack(&mut self.out, data);
                }
                Ok(())
            }
            frame::GOAWAY => {
                let (ids, debug) = payload.split_at_checked(8).ok_or("HTTP/2: GOAWAY under 8 bytes")?;
                let last_stream = u32::from_be_bytes([ids[0], ids[1], ids[2], ids[3]]) & 0x7fff_ffff;
                let code = u32::from_be_bytes([ids[4], ids[5], ids[6], ids[7]]);
                on(Event::GoAway { last_stream, code, debug });
                Ok(())
            }
            // WINDOW_UPDATE (loadgen sends no DATA), PRIORITY, unknown types.
            _ => Ok(()),
        }
    }

    /// A DATA frame: handed on, and its bytes given back to the windows
    /// once half of a window is used.
    fn on_data(&mut self, h: Head, payload: &[u8], on: &mut impl FnMut(Event<'_>)) -> Result<(), String> {
        let len = h.len as u32;
        self.conn_unacked += len;
        if self.conn_unacked >= CONN_WINDOW / 2 {
            frame::write_window_update(&mut self.out, 0, self.conn_unacked);
            self.conn_unacked = 0;
        }
        let data = frame::unpad(h.flags, payload, false).ok_or("HTTP/2: bad DATA padding")?;
        let end = h.flags & FLAG_END_STREAM != 0;
        let Some(s) = self.streams.get_mut(&h.stream) else {
            return Ok(()); // a stream loadgen reset: its last frames
        };
        if !s.head_seen {
            self.reset(h.stream, frame::PROTOCOL_ERROR);
            let why = "HTTP/2: DATA before the response headers".to_string();
            on(Event::BadResponse { stream: h.stream, why });
            return Ok(());
        }
        s.unacked += len;
        if !end && s.unacked >= STREAM_WINDOW / 2 {
            frame::write_window_update(&mut self.out, h.stream, s.unacked);
            s.unacked = 0;
        }
        if !data.is_empty() {
            on(Event::Data { stream: h.stream, data });
        }
        if end {
            self.streams.remove(&h.stream);
            on(Event::End { stream: h.stream });
        }
        Ok(())
    }

    /// A complete header block: the response's head, or trailers.
    fn on_block(&mut self, stream: u32, block: &[u8], end_stream: bool, on: &mut impl FnMut(Event<'_>)) {
        let Some(s) = self.streams.get_mut(&stream) else { return };
        if !s.head_seen {
            match hpack::read_response(block) {
                Ok(head) if (100..200).contains(&head.status) => return,
                Ok(head) => {
                    s.head_seen = true;
                    on(Event::Response { stream, head });
                }
                Err(why) => {
                    self.reset(stream, frame::CANCEL);
                    on(Event::BadResponse { stream, why });
                    return;
                }
            }
        }
        if end_stream {
            self.streams.remove(&stream);
            on(Event::End { stream });
        }
    }

    fn on_settings(&mut self, h: Head, payload: &[u8]) -> Result<(), String> {
        if h.stream != 0
            || (h.flags & FLAG_ACK != 0 && !payload.is_empty())
            || !payload.len().is_multiple_of(6)
        {
            return Err("HTTP/2: malformed SETTINGS".into());
        }
        if h.flags & FLAG_ACK != 0 {
            return Ok(());
        }
        for p in payload.chunks_exact(6) {
            if u16::from_be_bytes([p[0], p[1]]) == frame::SETTINGS_MAX_CONCURRENT_STREAMS {
                self.max_streams = Some(u32::from_be_bytes([p[2], p[3], p[4], p[5]]));
            }
        }
        frame::write_settings_ack(&mut self.out);
        Ok(())
    }
}

/// The server's first frame must be SETTINGS: anything else is most likely
/// not HTTP/2 at all (an HTTP/1.1 server answering the preface), said so.
fn check_first(h: Head, input: &[u8]) -> Result<(), String> {
    if h.kind == frame::SETTINGS && h.flags & FLAG_ACK == 0 && h.stream == 0 {
        return Ok(());
    }
    let start = String::from_utf8_lossy(&input[..input.len().min(24)]).replace(['\r', '\n'], " ");
    if input.starts_with(b"HTTP/") {
        return Err(format!(
            "the server answered in HTTP/1.x ('{start}'), not HTTP/2: does it speak h2c with prior knowledge there?"
        ));
    }
    Err(format!("not an HTTP/2 server: its first frame is not SETTINGS ('{start}')"))
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
