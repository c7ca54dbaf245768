//! Minimal HTTP/1.1 over std TcpStream: one-shot requests and a connection
//! that reads responses one by one (keep-alive, pipelining, chunked bodies).
//! The same connection reads RESP replies (see `resp.rs`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};

use super::DEADLINE;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// The first header called `name` (case-insensitive).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// A TCP connection to `addr` from `src` (e.g. 127.0.0.2): bind, then connect.
/// Linux routes all of 127.0.0.0/8 over loopback, so the server sees `src`.
pub fn connect_from(src: &str, addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    let from: SocketAddr = format!("{src}:0").parse().expect("source address");
    socket.bind(&from.into()).unwrap_or_else(|e| panic!("bind {from}: {e}"));
    socket
        .connect_timeout(&addr.into(), DEADLINE)
        .unwrap_or_else(|e| panic!("connect {addr} from {src}: {e}"));
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Drops a connection with a TCP reset (SO_LINGER 0).
pub fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(std::time::Duration::ZERO));
    drop(s);
}

/// Formats a request with Host and Content-Length.
pub fn format_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One request on a fresh connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    HttpConn::new(addr).request(method, path, headers, body)
}

/// GET on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

/// A connection that reads responses one by one (keep-alive, pipelining).
pub struct HttpConn {
    pub stream: TcpStream,
    /// Bytes received and not yet consumed.
    pub buf: Vec<u8>,
    /// What this connection is, for assertion messages.
    pub what: String,
}

impl HttpConn {
    pub fn new(addr: SocketAddr) -> HttpConn {
        HttpConn::from_stream(connect(addr), format!("connection to {addr}"))
    }

    pub fn from_src(src: &str, addr: SocketAddr) -> HttpConn {
        HttpConn::from_stream(connect_from(src, addr), format!("connection {src} -> {addr}"))
    }

    pub fn from_stream(stream: TcpStream, what: String) -> HttpConn {
        HttpConn { stream, buf: Vec::new(), what }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap_or_else(|e| panic!("{}: write: {e}", self.what));
    }

    /// Reads more bytes; false at EOF or reset; panics at the read timeout.
    pub fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 65536];
        match self.stream.read(&mut tmp) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => false,
            Err(e) => panic!(
                "{}: nothing arrived within the read timeout ({e}); have {:?}",
                self.what,
                String::from_utf8_lossy(&self.buf)
            ),
        }
    }

    /// Reads until at least `n` bytes are buffered; panics at EOF.
    pub fn need(&mut self, n: usize, ctx: &str) {
        while self.buf.len() < n {
            assert!(
                self.fill(),
                "{}: {ctx}: closed with {} of {n} bytes: {:?}",
                self.what,
                self.buf.len(),
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// A response head (status, headers), 1xx included.
    pub fn head_any(&mut self) -> (u16, Vec<(String, String)>) {
        let head = self.read_until(b"\r\n\r\n");
        let head =
            String::from_utf8(head).unwrap_or_else(|e| panic!("{}: head is not UTF-8 ({e})", self.what));
        let mut lines = head.trim_end().split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{}: bad status line {status_line:?}", self.what));
        let headers = lines
            .map(|l| {
                let (n, v) =
                    l.split_once(':').unwrap_or_else(|| panic!("{}: bad header line {l:?}", self.what));
                (n.trim().to_string(), v.trim().to_string())
            })
            .collect();
        (status, headers)
    }

    /// A response head, skipping 1xx.
    pub fn head(&mut self) -> (u16, Vec<(String, String)>) {
        loop {
            let (status, headers) = self.head_any();
            if !(100..200).contains(&status) {
                return (status, headers);
            }
        }
    }

    /// The body of a response with this head: Content-Length, chunked, or until close.
    pub fn body(&mut self, status: u16, headers: &[(String, String)]) -> Vec<u8> {
        if status == 204 || status == 304 {
            Vec::new()
        } else if let Some(len) = header(headers, "content-length") {
            let len: usize = len.parse().unwrap_or_else(|_| panic!("{}: Content-Length {len:?}", self.what));
            self.need(len, "body");
            self.buf.drain(..len).collect()
        } else if header(headers, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            while let Some(chunk) = self.chunk() {
                body.extend_from_slice(&chunk);
            }
            body
        } else {
            self.read_to_close()
        }
    }

    /// Reads one whole response (1xx skipped).
    pub fn response(&mut self) -> Response {
        let (status, headers) = self.head();
        let body = self.body(status, &headers);
        Response { status, headers, body }
    }

    /// One request and its response on this connection.
    pub fn request(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        self.send(&format_request(method, path, headers, body));
        self.response()
    }

    /// Reads one chunk of a chunked body; None at the last chunk.
    pub fn chunk(&mut self) -> Option<Vec<u8>> {
        loop {
            let mut dechunk = Dechunk::default();
            if let Some(data) = dechunk.next(&mut self.buf, &self.what) {
                return data;
            }
            assert!(self.fill(), "{}: closed inside a chunked body; have {}", self.what, esc(&self.buf));
        }
    }

    /// True when the server closed the connection (EOF) within the deadline.
    pub fn closed(&mut self) -> bool {
        let mut tmp = [0u8; 4096];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }

    /// Bytes received and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Reads until `needle` has arrived; removes and returns everything up to
    /// and including it. Panics on EOF or at the read timeout.
    pub fn read_until(&mut self, needle: &[u8]) -> Vec<u8> {
        loop {
            if let Some(i) = find(&self.buf, needle) {
                return self.buf.drain(..i + needle.len()).collect();
            }
            assert!(
                self.fill(),
                "{}: closed before {:?} arrived; got {:?}",
                self.what,
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// Reads until the server closes (EOF or reset); returns every byte not yet
    /// consumed. Panics if the read timeout passes first.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }
}

/// Decodes a chunked body incrementally from a buffer of raw bytes.
#[derive(Default)]
pub struct Dechunk {
    /// The decoded body so far.
    pub out: Vec<u8>,
    /// The last (zero-size) chunk has arrived.
    pub ended: bool,
}

impl Dechunk {
    /// Takes the next whole chunk out of `raw`: Some(Some(data)), Some(None)
    /// for the last chunk, None while it is incomplete.
    pub fn next(&mut self, raw: &mut Vec<u8>, what: &str) -> Option<Option<Vec<u8>>> {
        let line_end = find(raw, b"\r\n")?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("{what}: bad chunk size line {size_text:?}"));
        let need = line_end + 2 + size + 2;
        if raw.len() < need {
            return None;
        }
        assert_eq!(&raw[need - 2..need], b"\r\n", "{what}: chunk not followed by CRLF");
        let data = raw[line_end + 2..line_end + 2 + size].to_vec();
        raw.drain(..need);
        if size == 0 {
            self.ended = true;
            return Some(None);
        }
        Some(Some(data))
    }

    /// Decodes every whole chunk in `raw` into `out`.
    pub fn feed(&mut self, raw: &mut Vec<u8>, what: &str) {
        while !self.ended {
            match self.next(raw, what) {
                Some(Some(data)) => self.out.extend_from_slice(&data),
                Some(None) => {}
                None => return,
            }
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Bytes for an assertion message: escaped, the first 300 shown.
pub fn esc(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(300)];
    let more = if bytes.len() > 300 { format!("… ({} bytes)", bytes.len()) } else { String::new() };
    format!("\"{}\"{more}", shown.escape_ascii())
}

/// A long-poll: GET and parse the JSON (or JSONP) body.
pub fn poll(addr: SocketAddr, path: &str) -> (Response, serde_json::Value) {
    let resp = get(addr, path);
    assert_eq!(resp.status, 200, "poll {path}: {}", resp.text());
    let json = resp.json();
    (resp, json)
}

/// Time left before `start + DEADLINE`, for loops that must end.
pub fn before_deadline(start: Instant) -> bool {
    start.elapsed() < DEADLINE
}

/// Asserts `resp` is a JSON error `{"error":"..."}` with `status` whose message
/// mentions `needle` (case-insensitive); returns the message.
pub fn assert_json_error(resp: &Response, status: u16, needle: &str, what: &str) -> String {
    assert_eq!(
        resp.status,
        status,
        "{what}: want status {status}, got {} headers {:?} body {:?}",
        resp.status,
        resp.headers,
        resp.text()
    );
    let content_type = resp.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: error Content-Type is {content_type:?}, body {:?}",
        resp.text()
    );
    let json: serde_json::Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {:?}", resp.text()));
    let message = json["error"].as_str().unwrap_or_else(|| panic!("{what}: no \"error\" string in {json}"));
    assert!(!message.trim().is_empty(), "{what}: empty error message in {json}");
    assert!(
        message.to_lowercase().contains(&needle.to_lowercase()),
        "{what}: error message {message:?} does not mention {needle:?}"
    );
    message.to_string()
}
