//! A response head: status, body framing, keep-alive and the headers the
//! subscribers and the publisher look at.

use super::longpoll::Poll;
use super::{Body, CHUNK_START};

/// What the head said (owned: the head buffer is reused).
#[derive(Debug)]
pub struct Head {
    /// Bytes the head took.
    pub len: usize,
    pub status: u16,
    pub http10: bool,
    pub chunked: bool,
    pub length: Option<u64>,
    /// `Connection` names `close` / `keep-alive`.
    pub conn_close: bool,
    pub conn_keep_alive: bool,
    /// The Content-Type, cut to 64 bytes (no allocation per answer).
    ct: [u8; 64],
    ct_len: usize,
}

impl Head {
    pub fn content_type(&self) -> &[u8] {
        &self.ct[..self.ct_len]
    }

    /// Whether the connection stays open after this response.
    pub fn keep_alive(&self) -> bool {
        if self.http10 {
            self.conn_keep_alive
        } else {
            !self.conn_close
        }
    }

    /// How the body of a response to a subscriber is delimited.
    pub fn body(&self) -> Body {
        if self.chunked {
            Body::Chunked(CHUNK_START)
        } else if let Some(n) = self.length {
            if n == 0 {
                Body::Done
            } else {
                Body::Length(n)
            }
        } else if self.status == 304 || self.status == 204 || self.status == 101 {
            Body::Done
        } else {
            Body::Close
        }
    }
}

/// Parses a response head at the start of `buf` (None: incomplete). A
/// long-poller's `poll` also takes the validators (Last-Modified, Etag).
pub fn parse(buf: &[u8], poll: Option<&mut Poll>) -> Result<Option<Head>, httparse::Error> {
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hdrs);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(e),
    };
    let h = resp.headers;
    let conn = header(h, "connection").unwrap_or(b"");
    let raw_ct = header(h, "content-type").unwrap_or(b"");
    let mut ct = [0u8; 64];
    let ct_len = raw_ct.len().min(64);
    ct[..ct_len].copy_from_slice(&raw_ct[..ct_len]);
    let head = Head {
        len,
        status: resp.code.unwrap_or(0),
        http10: resp.version == Some(0),
        chunked: header(h, "transfer-encoding").is_some_and(|v| contains_ci(v, "chunked")),
        length: header(h, "content-length")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok()),
        conn_close: contains_ci(conn, "close"),
        conn_keep_alive: contains_ci(conn, "keep-alive"),
        ct,
        ct_len,
    };
    if let Some(poll) = poll {
        poll.on_head(head.status, head.keep_alive(), header(h, "last-modified"), header(h, "etag"));
    }
    Ok(Some(head))
}

/// Case-insensitive header lookup in a parsed head.
pub fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

pub fn contains_ci(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        const SSE: &[u8] =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";
        const CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\n";
        const KEEP10: &[u8] = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\n";
        const WS: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let chunked = Body::Chunked(CHUNK_START);
        type Case<'a> = (&'a [u8], u16, Body, bool, &'a [u8]);
        // (head, status, framing, keep-alive, content-type)
        let cases: &[Case] = &[
            (SSE, 200, chunked, true, b"text/event-stream"),
            (CLOSE, 200, Body::Length(12), false, b""),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, Body::Done, true, b""),
            (b"HTTP/1.0 200 OK\r\n\r\n", 200, Body::Close, false, b""),
            (KEEP10, 200, Body::Length(1), true, b""),
            (b"HTTP/1.1 304 Not Modified\r\n\r\n", 304, Body::Done, true, b""),
            (WS, 101, Body::Done, true, b""),
        ];
        for &(input, status, body, keep, ct) in cases {
            let h = parse(input, None).unwrap().expect("complete");
            let name = String::from_utf8_lossy(input);
            assert_eq!(
                (h.len, h.status, h.body(), h.keep_alive()),
                (input.len(), status, body, keep),
                "{name}"
            );
            assert_eq!(h.content_type(), ct, "{name}");
        }
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Le", None).unwrap().is_none());
        assert!(parse(b"HTTX/1.1 200 OK\r\n\r\n", None).is_err());
    }

    #[test]
    fn split_independence() {
        let input = b"HTTP/1.1 200 OK\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\nEtag: 7\r\nContent-Length: 5\r\n\r\nhello";
        for cut in 0..input.len() {
            match parse(&input[..cut], None).unwrap() {
                None => assert!(cut < input.len() - 5, "cut {cut}"),
                Some(h) => assert_eq!((h.len, h.body()), (input.len() - 5, Body::Length(5)), "cut {cut}"),
            }
        }
    }
}
