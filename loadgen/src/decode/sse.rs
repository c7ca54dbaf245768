//! Server-Sent Events: the fields of every `data:` line (comments, `id:`,
//! `retry:` and `event:` lines carry none).

use super::lines::Lines;
use super::Status;
use crate::parse;

/// The request headers of an SSE subscriber.
pub const REQUEST_HEADERS: &[u8] = b"Accept: text/event-stream\r\nCache-Control: no-cache\r\n";

/// An SSE stream must be a 200 with Content-Type text/event-stream.
pub fn check_head(status: u16, content_type: &[u8]) -> Result<(), String> {
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    if !crate::decode::head::contains_ci(content_type, "event-stream") {
        return Err(format!(
            "content-type '{}', not text/event-stream",
            String::from_utf8_lossy(content_type)
        ));
    }
    Ok(())
}

/// Calls `f(seq, t, u)` for the fields of one line.
pub fn line(line: &[u8], f: &mut impl FnMut(u64, u64, u64)) {
    if let Some(rest) = line.strip_prefix(b"data:") {
        parse::extract(rest, f);
    }
}

/// Feeds body bytes of the stream.
pub fn feed(lines: &mut Lines, data: &[u8], f: &mut impl FnMut(u64, u64, u64)) -> Result<Status, String> {
    lines.feed(data, &mut |l: &[u8]| line(l, f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testutil::{splits, Found};
    use crate::decode::{Body, CHUNK_START};

    fn decode(body: Body, pieces: &[&[u8]]) -> (Found, Result<Status, String>) {
        let mut lines = Lines::default();
        lines.start(body);
        let mut found = Vec::new();
        let mut status = Ok(Status::More);
        for p in pieces {
            status = feed(&mut lines, p, &mut |s, t, u| found.push((s, t, u)));
            if status != Ok(Status::More) {
                break;
            }
        }
        (found, status)
    }

    #[test]
    fn table() {
        let chunked = Body::Chunked(CHUNK_START);
        // (framing, body, fields, status)
        type Case<'a> = (Body, &'a [u8], &'a [(u64, u64, u64)], Status);
        let cases: &[Case] = &[
            (
                Body::Close,
                b"retry: 2000\n\nid: 1-0\ndata: s=12 t=1700000000000000001 c=ch0 xxxx\n\n:\n\
                  data:s=13 t=1700000000000000002 c=ch0 u=12\r\n\r\n",
                &[(12, 1700000000000000001, 12), (13, 1700000000000000002, 12)],
                Status::More,
            ),
            (Body::Close, b": comment s=1 t=2\nevent: x\nid: s=1 t=2\n\n", &[], Status::More),
            (Body::Close, b"data: s=1 t=2\ndata: s=2 t=3\n\n", &[(1, 2, 1), (2, 3, 2)], Status::More),
            (Body::Close, b"data: s=1 t=2", &[], Status::More),
            (chunked, b"e\r\ndata: s=4 t=5\n\r\n1\r\n\n\r\n0\r\n\r\n", &[(4, 5, 4)], Status::Ended),
            (Body::Length(28), b"data: s=6 t=7 c=a u=5\n\ndata: s=8 t=9\n", &[(6, 7, 5)], Status::Ended),
        ];
        for &(body, input, fields, status) in cases {
            for pieces in splits(input) {
                let (found, st) = decode(body, &pieces);
                assert_eq!(found, fields, "{pieces:?}");
                assert_eq!(st, Ok(status), "{pieces:?}");
            }
        }
    }

    #[test]
    fn errors_and_heads() {
        assert_eq!(decode(Body::Chunked(CHUNK_START), &[b"x\r\n"]).1, Err("body: bad chunk size".into()));
        assert_eq!(check_head(200, b"text/event-stream; charset=utf-8"), Ok(()));
        assert_eq!(check_head(404, b"text/event-stream"), Err("HTTP 404".into()));
        assert_eq!(
            check_head(200, b"text/plain"),
            Err("content-type 'text/plain', not text/event-stream".into())
        );
    }
}
