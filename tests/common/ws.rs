//! A raw WebSocket client (RFC 6455) of the tests' own: the upgrade, masked
//! client frames (`frame.rs`), and a reader of server frames that checks what
//! a server must obey. Nothing here comes from the code under test.

use std::io::Write;
use std::net::{Shutdown, SocketAddr};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;
use sha1::{Digest, Sha1};

use super::frame::*;
use super::http::{header, HttpConn, Response};
use super::rng::Rng;

/// RFC 6455 §1.3: the GUID appended to the key before hashing.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A fixed `Sec-WebSocket-Key` (the RFC's example) for tests that need no fresh one.
pub const FIXED_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// The `Sec-WebSocket-Accept` a server must answer to `key`.
pub fn accept_for(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
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
