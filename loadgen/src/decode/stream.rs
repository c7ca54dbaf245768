//! NDJSON streams (halley's `?transport=stream`): one JSON object a line,
//! the payload in its `"data":"…"` member.

use super::lines::Lines;
use super::Status;
use crate::parse;

/// The request headers of an NDJSON subscriber.
pub const REQUEST_HEADERS: &[u8] = b"Accept: application/x-ndjson\r\n";

/// A stream must be a 200, and not a JSON long-poll answer (what halley
/// sends when the URL lacks `?transport=stream`).
pub fn check_head(status: u16, content_type: &[u8]) -> Result<(), String> {
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    let ct = content_type;
    if ct.len() >= 16 && ct[..16].eq_ignore_ascii_case(b"application/json") {
        return Err(format!(
            "content-type '{}' (a long-poll answer?); for halley add ?transport=stream to --sub-url",
            String::from_utf8_lossy(ct)
        ));
    }
    Ok(())
}

/// Calls `f(seq, t, u)` for the fields of one line.
pub fn line(line: &[u8], f: &mut impl FnMut(u64, u64, u64)) {
    if let Some(p) = memchr::memmem::find(line, b"\"data\":\"") {
        parse::extract(&line[p + 8..], f);
    }
}

/// Feeds body bytes of the stream.
pub fn feed(lines: &mut Lines, data: &[u8], f: &mut impl FnMut(u64, u64, u64)) -> Result<Status, String> {
    lines.feed(data, &mut |l: &[u8]| line(l, f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testutil::splits;
    use crate::decode::{Body, CHUNK_START};

    #[test]
    fn table() {
        // (framing, body, fields, status)
        type Case<'a> = (Body, &'a [u8], &'a [(u64, u64, u64)], Status);
        let cases: &[Case] = &[
            (
                Body::Close,
                b"{\"id\":\"1-0\",\"channel\":\"ch0\",\"data\":\"s=1 t=2 c=ch0\"}\n{\"id\":\"1-1\",\"data\":\"s=2 t=3 c=ch0 u=1\"}\r\n",
                &[(1, 2, 1), (2, 3, 1)],
                Status::More,
            ),
            (Body::Close, b"{\"event\":\"s=1 t=2\"}\n{}\n\n", &[], Status::More),
            (Body::Close, b"{\"data\":\"s=5 t=6\"}", &[], Status::More),
            (Body::Chunked(CHUNK_START), b"13\r\n{\"data\":\"s=5 t=6\"}\n\r\n0\r\n\r\n", &[(5, 6, 5)], Status::Ended),
        ];
        for &(body, input, fields, status) in cases {
            for pieces in splits(input) {
                let mut lines = Lines::default();
                lines.start(body);
                let mut found = Vec::new();
                let mut st = Ok(Status::More);
                for p in &pieces {
                    st = feed(&mut lines, p, &mut |s, t, u| found.push((s, t, u)));
                }
                assert_eq!(found, fields, "{pieces:?}");
                assert_eq!(st, Ok(status), "{pieces:?}");
            }
        }
    }

    #[test]
    fn heads() {
        assert_eq!(check_head(200, b"application/x-ndjson"), Ok(()));
        assert_eq!(check_head(502, b""), Err("HTTP 502".into()));
        assert!(check_head(200, b"application/json; charset=utf-8")
            .unwrap_err()
            .contains("?transport=stream"));
    }
}
