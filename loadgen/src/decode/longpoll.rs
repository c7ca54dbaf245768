//! Long-poll answers. Each answer is one response; the client then polls
//! again from where it got to. Two styles of "where":
//! - halley: `?last_id=<id>`, the id read from the answer body's
//!   `"last_id":"…"` (a JSON envelope of messages);
//! - Nchan: the answer's Last-Modified and Etag, sent back as
//!   If-Modified-Since and If-None-Match (then no `last_id` is sent).

use super::{Body, Status};
use crate::parse;

/// Largest long-poll answer body kept.
pub const MAX_BODY: usize = 16 << 20;

/// A long-poller's position and the answer being read.
#[derive(Debug, Default)]
pub struct Poll {
    /// The framing of the answer being read.
    pub body: Body,
    buf: Vec<u8>,
    last_id: Vec<u8>,
    last_modified: Vec<u8>,
    etag: Vec<u8>,
    keep_alive: bool,
    status: u16,
}

fn set(v: &mut Vec<u8>, to: &[u8]) {
    v.clear();
    v.extend_from_slice(to);
}

impl Poll {
    /// The head of an answer: keeps its validators (Nchan style) and whether
    /// the connection stays open.
    pub fn on_head(
        &mut self,
        status: u16,
        keep_alive: bool,
        last_modified: Option<&[u8]>,
        etag: Option<&[u8]>,
    ) {
        if let Some(v) = last_modified {
            set(&mut self.last_modified, v);
        }
        if let Some(v) = etag {
            set(&mut self.etag, v);
        }
        self.keep_alive = keep_alive;
        self.status = status;
    }

    /// Answers a long-poll may get: messages (200), nothing new (304, 204) or
    /// a timeout (408).
    pub fn check_status(status: u16) -> Result<(), String> {
        match status {
            200 | 304 | 408 | 204 => Ok(()),
            s => Err(format!("HTTP {s}")),
        }
    }

    /// Feeds answer body bytes; Ended when the answer is complete.
    pub fn feed(&mut self, data: &[u8]) -> Result<Status, String> {
        let buf = &mut self.buf;
        self.body
            .feed(data, &mut |piece: &[u8]| buf.extend_from_slice(piece))
            .map_err(|e| format!("body: {e}"))?;
        if buf.len() > MAX_BODY {
            return Err("long-poll answer over 16 MiB".into());
        }
        Ok(if self.body == Body::Done { Status::Ended } else { Status::More })
    }

    /// The connection closed while the body was read: an answer delimited by
    /// the close is complete then (true).
    pub fn on_eof(&mut self) -> bool {
        if self.body != Body::Close {
            return false;
        }
        self.body = Body::Done;
        true
    }

    /// The answer is complete: `f` gets its messages' fields and (halley
    /// style) its `last_id` is kept. Returns whether the next poll may use
    /// the same connection.
    pub fn finish(&mut self, f: &mut impl FnMut(u64, u64, u64)) -> bool {
        if self.status == 200 {
            parse::extract(&self.buf, f);
            if self.last_modified.is_empty() && self.etag.is_empty() {
                if let Some(p) = memchr::memmem::find(&self.buf, b"\"last_id\":\"") {
                    let from = p + 11;
                    if let Some(end) = memchr::memchr(b'"', &self.buf[from..]) {
                        if end > 0 {
                            set(&mut self.last_id, &self.buf[from..from + end]);
                        }
                    }
                }
            }
        }
        self.buf.clear();
        self.keep_alive
    }

    /// Appends the query of the next poll to `path` (halley style only).
    pub fn write_query(&self, out: &mut Vec<u8>, path: &str) {
        if !self.last_id.is_empty() && self.last_modified.is_empty() && self.etag.is_empty() {
            out.push(if path.contains('?') { b'&' } else { b'?' });
            out.extend_from_slice(b"last_id=");
            out.extend_from_slice(&self.last_id);
        }
    }

    /// Appends the headers of the next poll.
    pub fn write_headers(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"Accept: */*\r\n");
        for (name, value) in
            [(&b"If-Modified-Since: "[..], &self.last_modified), (b"If-None-Match: ", &self.etag)]
        {
            if !value.is_empty() {
                out.extend_from_slice(name);
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::head;
    use crate::decode::testutil::{splits, Found};

    struct Answer {
        found: Found,
        keep_alive: bool,
        query: String,
        headers: String,
    }

    /// Reads one whole answer (head and body) fed in `pieces`, then the next request's parts.
    fn answer(poll: &mut Poll, pieces: &[&[u8]]) -> Result<Answer, String> {
        let mut head_buf = Vec::new();
        let mut in_body = false;
        let mut done = false;
        for p in pieces {
            if !in_body {
                head_buf.extend_from_slice(p);
                let Some(h) = head::parse(&head_buf, Some(&mut *poll)).map_err(|e| e.to_string())? else {
                    continue;
                };
                Poll::check_status(h.status)?;
                poll.body = h.body();
                in_body = true;
                done = poll.body == Body::Done;
                let rest = head_buf[h.len..].to_vec();
                if !done && !rest.is_empty() {
                    done = poll.feed(&rest)? == Status::Ended;
                }
            } else if !done {
                done = poll.feed(p)? == Status::Ended;
            }
        }
        if !done && !poll.on_eof() {
            return Err("incomplete".into());
        }
        let mut found = Vec::new();
        let keep_alive = poll.finish(&mut |s, t, u| found.push((s, t, u)));
        let (mut q, mut hd) = (Vec::new(), Vec::new());
        poll.write_query(&mut q, "/sub/ch0");
        poll.write_headers(&mut hd);
        let text = |v: Vec<u8>| String::from_utf8(v).unwrap();
        Ok(Answer { found, keep_alive, query: text(q), headers: text(hd) })
    }

    const HALLEY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 106\r\n\r\n\
{\"messages\":[{\"id\":\"1-0\",\"data\":\"s=0 t=5 c=ch0\"},{\"id\":\"1-1\",\"data\":\"s=1 t=6 c=ch0 u=0\"}],\"last_id\":\"1-1\"}";
    const NCHAN: &[u8] = b"HTTP/1.1 200 OK\r\nLast-Modified: Tue, 01 Dec 2026 10:00:00 GMT\r\nEtag: 3\r\n\
Transfer-Encoding: chunked\r\n\r\n11\r\ns=7 t=9 c=ch0 xxx\r\n0\r\n\r\n";

    #[test]
    fn table() {
        // (answer, fields, keep-alive, next query, next headers)
        type Case<'a> = (&'a [u8], &'a [(u64, u64, u64)], bool, &'a str, &'a str);
        let cases: &[Case] = &[
            (HALLEY, &[(0, 5, 0), (1, 6, 0)], true, "?last_id=1-1", "Accept: */*\r\n"),
            (
                NCHAN,
                &[(7, 9, 7)],
                true,
                "",
                "Accept: */*\r\nIf-Modified-Since: Tue, 01 Dec 2026 10:00:00 GMT\r\nIf-None-Match: 3\r\n",
            ),
            (b"HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n", &[], false, "", "Accept: */*\r\n"),
            (b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n", &[], true, "", "Accept: */*\r\n"),
            (b"HTTP/1.0 200 OK\r\n\r\ns=3 t=4", &[(3, 4, 3)], false, "", "Accept: */*\r\n"),
        ];
        for &(input, fields, keep, query, headers) in cases {
            for pieces in splits(input) {
                let a = answer(&mut Poll::default(), &pieces).unwrap();
                assert_eq!(a.found, fields, "{pieces:?}");
                assert_eq!((a.keep_alive, a.query.as_str(), a.headers.as_str()), (keep, query, headers));
            }
        }
        assert_eq!(answer(&mut Poll::default(), &[b"HTTP/1.1 500 Oops\r\n\r\n"]).err().unwrap(), "HTTP 500");
    }

    #[test]
    fn position_kept_across_answers() {
        let mut poll = Poll::default();
        answer(&mut poll, &[HALLEY]).unwrap();
        // A 304 keeps the position of the last 200.
        let a = answer(&mut poll, &[b"HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n"]).unwrap();
        assert_eq!(a.query, "?last_id=1-1");
        let mut q = Vec::new();
        poll.write_query(&mut q, "/sub/ch0?transport=longpoll");
        assert_eq!(q, b"&last_id=1-1");
    }
}
