//! What `publish-rate` writes and how it reads the answers, sans-IO. Every
//! request of a run is the same bytes (one channel, one payload), built once;
//! answers are cut and parsed by the publisher's decoders (`answer.rs`).

use std::io::Write;

use super::args::Target;
use crate::publisher::answer;

/// The bytes of one publish request.
pub fn request(target: &Target, channel: &str, payload_bytes: usize) -> Vec<u8> {
    // The payload says what it is, then 'x' padding up to the size asked for.
    let mut payload = format!("publish-rate {channel} ").into_bytes();
    payload.resize(payload_bytes, b'x');
    let mut w = Vec::with_capacity(payload.len() + 128);
    match target {
        Target::Resp(_) => {
            let _ =
                write!(w, "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{channel}\r\n${}\r\n", channel.len(), payload.len());
            w.extend_from_slice(&payload);
            w.extend_from_slice(b"\r\n");
        }
        Target::Http(u) => {
            let _ = write!(
                w,
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                u.path_for(channel),
                u.host,
                payload.len()
            );
            w.extend_from_slice(&payload);
        }
    }
    w
}

/// One complete answer at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    /// Bytes it takes.
    pub len: usize,
    /// Ok: a successful publish (HTTP 2xx, RESP `:N`); Err: why not. None:
    /// an interim HTTP 1xx answer, not the answer to a request.
    pub outcome: Option<Result<(), String>>,
    /// The server closes the connection after it.
    pub close: bool,
}

/// The answer at the start of `buf` (None: not complete yet); Err means
/// the connection cannot be read on.
pub fn answer(resp: bool, buf: &[u8]) -> Result<Option<Answer>, String> {
    if resp {
        let Some((len, ok)) = answer::resp(buf)? else { return Ok(None) };
        let outcome = match ok {
            Ok(()) if buf[0] == b':' => Ok(()),
            Ok(()) => Err(format!("RESP reply '{}' instead of :N", String::from_utf8_lossy(&buf[..len - 2]))),
            Err(e) => Err(e),
        };
        return Ok(Some(Answer { len, outcome: Some(outcome), close: false }));
    }
    let Some(a) = answer::http(buf)? else { return Ok(None) };
    let outcome = match a.status {
        100..=199 => None,
        200..=299 => Some(Ok(())),
        s => Some(Err(format!("HTTP {s}"))),
    };
    Ok(Some(Answer { len: a.len, outcome, close: a.close }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::parse_url;
    use crate::decode::testutil::splits;

    #[test]
    fn requests() {
        let http = Target::Http(parse_url("http://127.0.0.1:8081/pub/{ch}", "t").unwrap());
        let r = request(&http, "ch", 20);
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "POST /pub/ch HTTP/1.1\r\nHost: 127.0.0.1:8081\r\nContent-Type: text/plain\r\n\
Content-Length: 20\r\n\r\npublish-rate ch xxxx"
        );
        let resp = Target::Resp("127.0.0.1:6380".parse().unwrap());
        assert_eq!(request(&resp, "c", 3), b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$3\r\npub\r\n");
        assert_eq!(request(&resp, "c", 18).len(), b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$18\r\n".len() + 20);
    }

    #[test]
    fn answers() {
        let done = |len, outcome, close| Ok(Some(Answer { len, outcome, close }));
        // (RESP?, buffer, answer)
        type Case<'a> = (bool, &'a [u8], Result<Option<Answer>, String>);
        let cases: &[Case] = &[
            (true, b":0\r\n:1\r\n", done(4, Some(Ok(())), false)),
            (true, b":12", Ok(None)),
            (true, b"+OK\r\n", done(5, Some(Err("RESP reply '+OK' instead of :N".into())), false)),
            (true, b"-ERR unknown command\r\n", done(22, Some(Err("RESP -ERR".into())), false)),
            (true, b"*3\r\n", Err("unexpected RESP reply".into())),
            (false, b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok", done(46, Some(Ok(())), false)),
            (false, b"HTTP/1.1 100 Continue\r\n\r\n", done(25, None, false)),
            (false, b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", {
                done(59, Some(Err("HTTP 503".into())), true)
            }),
            (false, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", Ok(None)),
        ];
        for (resp, buf, want) in cases {
            assert_eq!(&answer(*resp, buf), want, "{}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn answers_cut_anywhere() {
        // Nchan-style answers: a 201 then a 202 with a body, pipelined.
        let wire = b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 202 Accepted\r\n\
Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        for pieces in splits(wire) {
            let (mut buf, mut ok) = (Vec::new(), 0);
            for p in pieces {
                buf.extend_from_slice(p);
                while let Some(a) = answer(false, &buf).unwrap() {
                    buf.drain(..a.len);
                    assert_eq!(a.outcome, Some(Ok(())));
                    ok += 1;
                }
            }
            assert_eq!((ok, buf.len()), (2, 0));
        }
    }
}
