//! A raw WebSocket client (RFC 6455) of the tests' own: the upgrade, masked
//! client frames in any length form, and a reader of server frames that checks
//! what a server must obey. Nothing here comes from the code under test.

use std::io::Write;
use std::net::{Shutdown, SocketAddr};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;
use sha1::{Digest, Sha1};

use super::http::{header, HttpConn, Response};
use super::rng::Rng;

pub const FIN: u8 = 0x80;
pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// RFC 6455 §1.3: the GUID appended to the key before hashing.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A fixed `Sec-WebSocket-Key` (the RFC's example) for tests that need no fresh one.
pub const FIXED_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A fixed non-zero masking key for frames built outside a [`Ws`].
pub const FIXED_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The `Sec-WebSocket-Accept` a server must answer to `key`.
pub fn accept_for(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

pub fn opcode_name(op: u8) -> &'static str {
    match op {
        OP_CONTINUATION => "continuation",
        OP_TEXT => "text",
        OP_BINARY => "binary",
        OP_CLOSE => "close",
        OP_PING => "ping",
        OP_PONG => "pong",
        _ => "reserved",
    }
}

/// The upgrade request for `path` with `key`; `extra` headers are appended.
pub fn upgrade_request(path: &str, key: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
    );
    for (n, v) in extra {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// Which length form a client frame uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Len {
    /// The shortest form (what the RFC requires).
    Minimal,
    /// 126 + 16-bit length.
    Bits16,
    /// 127 + 64-bit length.
    Bits64,
}

/// Encodes one client frame. `first` is the whole first byte (FIN, RSV bits,
/// opcode), so tests can set anything; `mask` None sends the payload unmasked.
pub fn encode(first: u8, payload: &[u8], mask: Option<[u8; 4]>, len: Len) -> Vec<u8> {
    let n = payload.len();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let form = match len {
        Len::Minimal if n <= 125 => None,
        Len::Minimal if n <= 0xffff => Some(Len::Bits16),
        Len::Minimal => Some(Len::Bits64),
        other => Some(other),
    };
    let mut out = vec![first];
    match form {
        None => out.push(mask_bit | n as u8),
        Some(Len::Bits16) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&u16::try_from(n).expect("payload fits 16 bits").to_be_bytes());
        }
        Some(_) => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked frame ([`FIXED_MASK`]) in the shortest length form.
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    encode(first, payload, Some(FIXED_MASK), Len::Minimal)
}

/// A masked 64-bit-length header announcing `len` bytes, without the payload.
pub fn header_only_64(first: u8, len: u64, mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&mask);
    out
}

/// A close payload: 2-byte code and reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// One frame as it came over the wire.
#[derive(Debug)]
pub struct Frame {
    /// The whole first byte (FIN, RSV bits, opcode).
    pub first: u8,
    pub opcode: u8,
    pub masked: bool,
    /// 2, 4 or 10 (plus 4 for a mask key): tells the length form used.
    pub header_len: usize,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).unwrap_or_else(|e| panic!("server text frame is not UTF-8 ({e})"))
    }

    /// The close code (None for an empty payload) and reason.
    pub fn close(&self) -> (Option<u16>, String) {
        assert_eq!(self.opcode, OP_CLOSE);
        match self.payload.as_slice() {
            [] => (None, String::new()),
            [_] => panic!("server close frame with a 1-byte payload: {:02x?}", self.payload),
            [hi, lo, reason @ ..] => {
                let reason = std::str::from_utf8(reason)
                    .unwrap_or_else(|e| panic!("server close reason is not UTF-8 ({e}): {reason:02x?}"));
                (Some(u16::from_be_bytes([*hi, *lo])), reason.to_string())
            }
        }
    }

    pub fn describe(&self) -> String {
        match self.opcode {
            OP_CLOSE => format!("close frame {:?}", self.close()),
            OP_TEXT => format!("text frame {:?}", String::from_utf8_lossy(&self.payload)),
            op => format!("{} frame, payload {:02x?}", opcode_name(op), self.payload),
        }
    }
}

/// The next complete frame in `buf`, removed from it (None while incomplete).
pub fn take_frame(buf: &mut Vec<u8>) -> Option<Frame> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()), 10),
        126 | 127 => return None,
        n => (n as u64, 2),
    };
    let header_len = at + if masked { 4 } else { 0 };
    let end = (header_len as u64).saturating_add(len);
    if (buf.len() as u64) < end {
        return None;
    }
    let end = end as usize;
    let mut payload = buf[header_len..end].to_vec();
    if masked {
        let key = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        payload.iter_mut().zip(key.iter().cycle()).for_each(|(b, k)| *b ^= k);
    }
    let first = buf[0];
    buf.drain(..end);
    Some(Frame { first, opcode: first & 0x0f, masked, header_len, payload })
}

/// A raw WebSocket client connection.
pub struct Ws {
    pub conn: HttpConn,
    /// The 101's headers.
    pub headers: Vec<(String, String)>,
    pub rng: Rng,
}

impl Ws {
    /// Upgrades `GET path` with a fresh key; asserts a correct 101.
    pub fn open(addr: SocketAddr, path: &str) -> Ws {
        Ws::open_with(addr, path, &[])
    }

    /// Like [`Ws::open`], with extra request headers.
    pub fn open_with(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Ws {
        Ws::try_open(addr, path, extra).unwrap_or_else(|r| {
            panic!("WebSocket {path}: want 101, got {} {:?} {}", r.status, r.headers, r.text())
        })
    }

    /// Upgrades; a correct 101 gives the socket, anything else the refusal.
    pub fn try_open(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Result<Ws, Response> {
        let mut rng = Rng::new();
        let key = rng.key();
        Ws::try_open_raw(HttpConn::new(addr), path, &upgrade_request(path, &key, extra), &key, rng)
    }

    /// Sends `request` (an upgrade with `key`, maybe followed by frames) and
    /// asserts a correct 101.
    pub fn open_raw(addr: SocketAddr, path: &str, request: &[u8], key: &str, rng: Rng) -> Ws {
        Ws::try_open_raw(HttpConn::new(addr), path, request, key, rng).unwrap_or_else(|r| {
            panic!("WebSocket {path}: want 101, got {} {:?} {}", r.status, r.headers, r.text())
        })
    }

    /// Sends `request` on `conn`; a 101 must carry Upgrade, Connection and
    /// the accept for `key`. Anything but a 101 is returned whole.
    pub fn try_open_raw(
        mut conn: HttpConn,
        path: &str,
        request: &[u8],
        key: &str,
        rng: Rng,
    ) -> Result<Ws, Response> {
        conn.what = format!("WebSocket {path}");
        conn.send(request);
        let head = conn.read_until(b"\r\n\r\n");
        let head = String::from_utf8(head)
            .unwrap_or_else(|e| panic!("{}: handshake answer head is not UTF-8: {e}", conn.what));
        let mut lines = head.trim_end().split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (n, v) =
                    l.split_once(':').unwrap_or_else(|| panic!("{}: bad header line {l:?}", conn.what));
                (n.trim().to_string(), v.trim().to_string())
            })
            .collect();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{}: bad status line {status_line:?}", conn.what));
        if status != 101 {
            let body = conn.body(status, &headers);
            return Err(Response { status, headers, body });
        }
        let what = &conn.what;
        assert!(
            status_line.starts_with("HTTP/1.1 101 "),
            "{what}: want `HTTP/1.1 101 Switching Protocols`, got {status_line:?}\nhead: {head:?}"
        );
        let upgrade = header(&headers, "upgrade").unwrap_or("");
        assert!(
            upgrade.eq_ignore_ascii_case("websocket"),
            "{what}: Upgrade header {upgrade:?}; head {head:?}"
        );
        let connection = header(&headers, "connection").unwrap_or("");
        assert!(
            connection.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")),
            "{what}: Connection header {connection:?} lacks `upgrade`; head {head:?}"
        );
        assert_eq!(
            header(&headers, "sec-websocket-accept"),
            Some(accept_for(key).as_str()),
            "{what}: Sec-WebSocket-Accept for key {key:?}; head {head:?}"
        );
        Ok(Ws { conn, headers, rng })
    }

    pub fn what(&self) -> &str {
        &self.conn.what
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.conn.send(bytes);
    }

    /// Writes `bytes`; false when the write fails (the server may close first).
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> bool {
        self.conn.stream.write_all(bytes).is_ok()
    }

    /// Sends a frame masked with a fresh key in the given first byte and length form.
    pub fn send_frame(&mut self, first: u8, payload: &[u8], len: Len) {
        let mask = self.rng.mask();
        self.send_raw(&encode(first, payload, Some(mask), len));
    }

    /// Sends a final, masked, minimally encoded frame.
    pub fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.send_frame(FIN | opcode, payload, Len::Minimal);
    }

    pub fn send_text(&mut self, text: &str) {
        self.send(OP_TEXT, text.as_bytes());
    }

    /// Asserts what RFC 6455 asks of a server frame (and that halley sends
    /// every message as one final frame in the shortest length form).
    fn check(&self, frame: &Frame, ctx: &str) {
        let what = format!(
            "{}: {ctx}: server frame {:#04x}, {} header bytes",
            self.conn.what, frame.first, frame.header_len
        );
        assert!(!frame.masked, "{what}: server frames must not be masked");
        assert_eq!(frame.first & 0x70, 0, "{what}: reserved bits set");
        let op = frame.opcode;
        assert!(
            matches!(op, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG),
            "{what}: reserved opcode {op:#x}"
        );
        assert!(frame.first & FIN != 0, "{what}: halley should send every message as one final frame");
        let len = frame.payload.len();
        match frame.header_len {
            4 => assert!(len > 125, "{what}: 16-bit form for {len} bytes is not minimal"),
            10 => assert!(len > 0xffff, "{what}: 64-bit form for {len} bytes is not minimal"),
            _ => {}
        }
        if op >= OP_CLOSE {
            assert!(len <= 125, "{what}: control frame of {len} bytes");
        }
    }

    /// The next server frame (checked); None when the connection ended
    /// between frames (ending inside one fails).
    pub fn try_frame(&mut self, ctx: &str) -> Option<Frame> {
        loop {
            if let Some(frame) = take_frame(&mut self.conn.buf) {
                self.check(&frame, ctx);
                return Some(frame);
            }
            if !self.conn.fill() {
                assert!(
                    self.conn.buf.is_empty(),
                    "{}: {ctx}: connection closed with an incomplete frame: {:02x?}",
                    self.conn.what,
                    &self.conn.buf[..self.conn.buf.len().min(64)]
                );
                return None;
            }
        }
    }

    /// The next server frame; the connection ending first fails.
    pub fn read_frame(&mut self, ctx: &str) -> Frame {
        self.try_frame(ctx)
            .unwrap_or_else(|| panic!("{}: {ctx}: connection closed before a frame", self.conn.what))
    }

    /// The next frame that is not a heartbeat (an empty ping).
    pub fn next_frame(&mut self, ctx: &str) -> Frame {
        loop {
            let frame = self.read_frame(ctx);
            if !(frame.opcode == OP_PING && frame.payload.is_empty()) {
                return frame;
            }
        }
    }

    /// The next frame that is not a ping or pong; None at the end.
    pub fn data_frame(&mut self, ctx: &str) -> Option<Frame> {
        loop {
            match self.try_frame(ctx) {
                Some(f) if f.opcode == OP_PING || f.opcode == OP_PONG => continue,
                other => return other,
            }
        }
    }

    /// The next text frame as JSON (heartbeats skipped; anything else fails).
    pub fn next_json(&mut self, ctx: &str) -> Value {
        let frame = self.next_frame(ctx);
        assert_eq!(
            frame.opcode,
            OP_TEXT,
            "{}: {ctx}: want a text frame, got {}",
            self.conn.what,
            frame.describe()
        );
        let text = frame.text();
        serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{}: {ctx}: text frame is not JSON ({e}): {text:?}", self.conn.what))
    }

    /// Expects the next text frame to be exactly `want` (an ack or similar).
    pub fn expect_json(&mut self, want: &Value, ctx: &str) {
        let got = self.next_json(ctx);
        assert_eq!(&got, want, "{}: {ctx}", self.conn.what);
    }

    /// Expects the next non-heartbeat frame to be a close with `code`, then
    /// nothing but the TCP close. Returns the reason.
    pub fn expect_close(&mut self, code: u16, ctx: &str) -> String {
        let frame = self.next_frame(ctx);
        assert_eq!(
            frame.opcode,
            OP_CLOSE,
            "{}: {ctx}: want a close frame with code {code}, got {}",
            self.conn.what,
            frame.describe()
        );
        let (got, reason) = frame.close();
        assert_eq!(got, Some(code), "{}: {ctx}: close code (reason {reason:?})", self.conn.what);
        self.expect_eof(ctx);
        reason
    }

    /// Expects the server to close the TCP connection with no more bytes.
    pub fn expect_eof(&mut self, ctx: &str) {
        while self.conn.fill() {}
        assert!(
            self.conn.buf.is_empty(),
            "{}: {ctx}: bytes after the server's close frame: {:02x?}",
            self.conn.what,
            &self.conn.buf[..self.conn.buf.len().min(64)]
        );
    }

    /// Drops the TCP connection without a closing handshake.
    pub fn drop_tcp(self) {
        let _ = self.conn.stream.shutdown(Shutdown::Both);
    }
}
