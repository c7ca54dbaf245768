//! RESP (the Redis protocol) spoken by hand: the array form every client
//! library sends, and a reader of RESP2 replies on an [`HttpConn`].

use super::http::{esc, find, HttpConn};

/// A RESP request in the array form every client library sends.
pub fn resp_cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// [`resp_cmd`] for text arguments.
pub fn resp_args(args: &[&str]) -> Vec<u8> {
    resp_cmd(&args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>())
}

pub fn publish_cmd(channel: &str, data: &str) -> Vec<u8> {
    resp_cmd(&[b"PUBLISH", channel.as_bytes(), data.as_bytes()])
}

/// The length of the first complete RESP2 reply in `buf`, if it is all there.
pub fn reply_len(buf: &[u8]) -> Option<usize> {
    let line_end = find(buf, b"\r\n")? + 2;
    let header = std::str::from_utf8(&buf[1..line_end - 2]).ok();
    match buf[0] {
        b'+' | b'-' | b':' => Some(line_end),
        b'$' => {
            let len: i64 = header?.parse().unwrap_or_else(|_| panic!("bad bulk header in {}", esc(buf)));
            if len < 0 {
                return Some(line_end);
            }
            let end = line_end + len as usize + 2;
            (buf.len() >= end).then_some(end)
        }
        b'*' => {
            let n: i64 = header?.parse().unwrap_or_else(|_| panic!("bad array header in {}", esc(buf)));
            let mut end = line_end;
            for _ in 0..n.max(0) {
                end += reply_len(&buf[end..])?;
            }
            Some(end)
        }
        other => panic!("reply starts with {:?}: {}", other as char, esc(buf)),
    }
}

/// Splits replies that are all simple lines (`+`, `-`, `:`); panics on a
/// partial line.
pub fn resp_lines(bytes: &[u8], what: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let end =
            find(rest, b"\r\n").unwrap_or_else(|| panic!("{what}: a partial reply line in {}", esc(bytes)));
        out.push(String::from_utf8_lossy(&rest[..end]).into_owned());
        rest = &rest[end + 2..];
    }
    out
}

impl HttpConn {
    /// One RESP reply line (`+…`, `-…`, `:…`), without its CRLF.
    pub fn resp_line(&mut self) -> String {
        let line = self.read_until(b"\r\n");
        String::from_utf8_lossy(&line[..line.len() - 2]).into_owned()
    }

    /// Sends a RESP command and reads its one-line reply.
    pub fn resp_call(&mut self, args: &[&str]) -> String {
        self.send(&resp_args(args));
        self.resp_line()
    }

    /// One whole RESP2 reply's bytes.
    pub fn resp_reply(&mut self) -> Vec<u8> {
        loop {
            if let Some(len) = (!self.buf.is_empty()).then(|| reply_len(&self.buf)).flatten() {
                return self.buf.drain(..len).collect();
            }
            assert!(self.fill(), "{}: closed before a whole reply; have {}", self.what, esc(&self.buf));
        }
    }

    /// Sends `request` as it is and returns the one reply.
    pub fn resp_exchange(&mut self, request: &[u8]) -> Vec<u8> {
        self.send(request);
        self.resp_reply()
    }
}
