//! Minimal HTTP/1.1 clients over std TcpStream: one-shot requests, long-polls,
//! and incremental SSE / NDJSON stream readers that decode chunked bodies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use super::DEADLINE;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
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
    let mut conn = HttpConn::new(addr);
    conn.send(&format_request(method, path, headers, body));
    conn.response()
}

/// GET on a fresh connection.
pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

/// A connection that reads responses one by one (keep-alive, pipelining).
pub struct HttpConn {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl HttpConn {
    pub fn new(addr: SocketAddr) -> HttpConn {
        HttpConn { stream: connect(addr), buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write request");
    }

    /// Reads more bytes; false on EOF.
    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 65536];
        match self.stream.read(&mut tmp) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(e) => panic!("read failed: {e}; have {:?}", String::from_utf8_lossy(&self.buf)),
        }
    }

    /// Reads a response head (skipping 1xx).
    pub fn head(&mut self) -> (u16, Vec<(String, String)>) {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end].to_vec()).expect("utf-8 head");
                self.buf.drain(..end + 4);
                let mut lines = head.split("\r\n");
                let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
                let headers = lines
                    .map(|l| {
                        let (n, v) = l.split_once(':').expect("header line");
                        (n.trim().to_string(), v.trim().to_string())
                    })
                    .collect();
                if (100..200).contains(&status) {
                    continue;
                }
                return (status, headers);
            }
            assert!(
                self.fill(),
                "connection closed before a response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// Reads one whole response (Content-Length, chunked, or until close).
    pub fn response(&mut self) -> Response {
        let (status, headers) = self.head();
        let get =
            |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
        let body = if status == 204 || status == 304 {
            Vec::new()
        } else if let Some(len) = get("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                assert!(self.fill(), "closed mid-body");
            }
            self.buf.drain(..len).collect()
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            while let Some(chunk) = self.chunk() {
                body.extend_from_slice(&chunk);
            }
            body
        } else {
            while self.fill() {}
            std::mem::take(&mut self.buf)
        };
        Response { status, headers, body }
    }

    /// Reads one chunk of a chunked body; None at the last chunk.
    pub fn chunk(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(line_end) = find(&self.buf, b"\r\n") {
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).to_string();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
                let need = line_end + 2 + size + 2;
                while self.buf.len() < need {
                    assert!(self.fill(), "closed mid-chunk");
                }
                let data = self.buf[line_end + 2..line_end + 2 + size].to_vec();
                assert_eq!(&self.buf[need - 2..need], b"\r\n", "chunk not followed by CRLF");
                self.buf.drain(..need);
                return if size == 0 { None } else { Some(data) };
            }
            assert!(self.fill(), "closed before chunk size");
        }
    }

    /// True when the server closed the connection (EOF) within the deadline.
    pub fn closed(&mut self) -> bool {
        let mut tmp = [0u8; 4096];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One SSE event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// A streaming subscriber (SSE or NDJSON) reading a chunked response.
pub struct StreamClient {
    pub conn: HttpConn,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    text: String,
    pub ended: bool,
}

impl StreamClient {
    /// Opens `path` with extra headers and reads the head.
    pub fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> StreamClient {
        let mut conn = HttpConn::new(addr);
        conn.send(&format_request("GET", path, headers, b""));
        let (status, headers) = conn.head();
        StreamClient { conn, status, headers, text: String::new(), ended: false }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Reads until `sep` appears in the decoded body; returns the text before it.
    fn until(&mut self, sep: &str) -> Option<String> {
        loop {
            if let Some(i) = self.text.find(sep) {
                let item = self.text[..i].to_string();
                self.text.drain(..i + sep.len());
                return Some(item);
            }
            if self.ended {
                return None;
            }
            match self.conn.chunk() {
                Some(data) => self.text.push_str(std::str::from_utf8(&data).expect("utf-8 chunk")),
                None => self.ended = true,
            }
        }
    }

    /// The next SSE event with data (comments and retry lines skipped); None at stream end.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            let block = self.until("\n\n")?;
            let mut ev = SseEvent::default();
            let mut data: Vec<&str> = Vec::new();
            for line in block.split('\n') {
                if let Some(v) = line.strip_prefix("id: ") {
                    ev.id = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("event: ") {
                    ev.event = Some(v.to_string());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v);
                }
            }
            if !data.is_empty() {
                ev.data = data.join("\n");
                return Some(ev);
            }
        }
    }

    /// The next non-empty NDJSON line as JSON; None at stream end.
    pub fn next_json(&mut self) -> Option<serde_json::Value> {
        loop {
            let line = self.until("\n")?;
            if !line.trim().is_empty() {
                return Some(
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}")),
                );
            }
        }
    }

    /// Raw decoded body text read so far and not yet consumed, after reading one more chunk.
    pub fn next_raw_chunk(&mut self) -> Option<String> {
        let data = self.conn.chunk()?;
        Some(String::from_utf8(data).expect("utf-8"))
    }
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

impl HttpConn {
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
                "closed before {:?} arrived; got {:?}",
                String::from_utf8_lossy(needle),
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// Reads until the server closes (EOF or reset); returns every byte not yet
    /// consumed. Panics if the read timeout passes first.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        let mut tmp = [0u8; 65536];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return std::mem::take(&mut self.buf),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    return std::mem::take(&mut self.buf)
                }
                Err(e) => panic!("server did not close ({e}); got {:?}", String::from_utf8_lossy(&self.buf)),
            }
        }
    }
}
