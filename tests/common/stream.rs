//! Incremental SSE / NDJSON stream readers over a chunked response.

use std::net::SocketAddr;

use super::http::{format_request, header, HttpConn};

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
        header(&self.headers, name)
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
