//! The publisher's answers, sans-IO: what one complete answer at the start
//! of a buffer says and how many bytes it takes (None: not complete yet). An
//! Err means the connection cannot be read on and is dropped.

use crate::decode::{head, Body, CHUNK_START};

/// One HTTP answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Http {
    pub len: usize,
    pub status: u16,
    /// The server closes the connection after it.
    pub close: bool,
}

pub fn http(buf: &[u8]) -> Result<Option<Http>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    let Some(h) = head::parse(buf, None).map_err(|e| format!("bad answer: {e}"))? else { return Ok(None) };
    let (hlen, status) = (h.len, h.status);
    let len = if (100..200).contains(&status) || status == 204 || status == 304 {
        hlen
    } else if h.chunked {
        let mut body = Body::Chunked(CHUNK_START);
        let used = body.feed(&buf[hlen..], &mut |_: &[u8]| {}).map_err(|e| format!("answer body: {e}"))?;
        if body != Body::Done {
            return Ok(None);
        }
        hlen + used
    } else if let Some(n) = h.length {
        let total = (hlen as u64).saturating_add(n);
        if (buf.len() as u64) < total {
            return Ok(None);
        }
        total as usize
    } else {
        return Err(format!("HTTP {status} answer without a length"));
    };
    Ok(Some(Http { len, status, close: h.conn_close || h.http10 }))
}

/// A RESP reply: its length and whether it reports success.
pub type Reply = (usize, Result<(), String>);

/// One RESP reply.
pub fn resp(buf: &[u8]) -> Result<Option<Reply>, String> {
    let Some(eol) = memchr::memmem::find(buf, b"\r\n") else { return Ok(None) };
    let line = &buf[..eol];
    Ok(Some(match line.first() {
        Some(b':') | Some(b'+') => (eol + 2, Ok(())),
        Some(b'-') => {
            let text = String::from_utf8_lossy(&line[1..]);
            (eol + 2, Err(format!("RESP -{}", text.split_whitespace().next().unwrap_or(""))))
        }
        Some(b'$') => {
            let n: i64 = std::str::from_utf8(&line[1..]).ok().and_then(|s| s.parse().ok()).unwrap_or(-1);
            let need = if n < 0 { eol + 2 } else { eol + 2 + n as usize + 2 };
            if buf.len() < need {
                return Ok(None);
            }
            (need, Ok(()))
        }
        _ => return Err("unexpected RESP reply".into()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testutil::splits;

    #[test]
    fn http_table() {
        let ok = |len, status, close| Ok(Some(Http { len, status, close }));
        // (buffer, answer)
        type Case<'a> = (&'a [u8], Result<Option<Http>, String>);
        let cases: &[Case] = &[
            (b"", Ok(None)),
            (b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nokNEXT", ok(46, 202, false)),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no", Ok(None)),
            (b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n", ok(46, 204, true)),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", ok(38, 200, true)),
            (b"HTTP/1.1 100 Continue\r\n\r\n", ok(25, 100, false)),
            (
                b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
                ok(65, 404, false),
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", Err("HTTP 200 answer without a length".into())),
            (b"XTTP/1.1 200 OK\r\n\r\n", Err("bad answer: invalid HTTP version".into())),
        ];
        for (buf, want) in cases {
            assert_eq!(&http(buf), want, "{}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn resp_table() {
        type Case<'a> = (&'a [u8], Result<Option<Reply>, String>);
        let cases: &[Case] = &[
            (b":1\r\n", Ok(Some((4, Ok(()))))),
            (b"+OK\r\n:2", Ok(Some((5, Ok(()))))),
            (b"-ERR no such channel\r\n", Ok(Some((22, Err("RESP -ERR".into()))))),
            (b"$3\r\nabc\r\n", Ok(Some((9, Ok(()))))),
            (b"$-1\r\n", Ok(Some((5, Ok(()))))),
            (b"$3\r\nab", Ok(None)),
            (b":1", Ok(None)),
            (b"*1\r\n", Err("unexpected RESP reply".into())),
        ];
        for (buf, want) in cases {
            assert_eq!(&resp(buf), want, "{}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn split_independence() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n\
HTTP/1.1 503 Busy\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy";
        for pieces in splits(wire) {
            let mut buf = Vec::new();
            let mut got = Vec::new();
            for p in pieces {
                buf.extend_from_slice(p);
                while let Some(a) = http(&buf).unwrap() {
                    buf.drain(..a.len);
                    got.push((a.status, a.close));
                }
            }
            assert_eq!(got, [(100, false), (200, false), (503, true)]);
            assert!(buf.is_empty());
        }
    }
}
