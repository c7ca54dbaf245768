//! Response body framing: chunked transfer coding, Content-Length, or until
//! the connection closes. Decoded in place; nothing is allocated.

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Body {
    Chunked(Chunk),
    Length(u64),
    /// Ends when the connection closes (HTTP/1.0 or no framing).
    Close,
    #[default]
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunk {
    Size { val: u64, digits: u8, ext: bool },
    Data(u64),
    DataEnd,
    Trailer { line_start: bool },
}

pub const CHUNK_START: Chunk = Chunk::Size { val: 0, digits: 0, ext: false };

impl Body {
    /// Feeds raw body bytes; `out` gets the payload pieces (slices of `data`).
    /// Returns how many bytes were consumed: fewer than `data.len()` only when
    /// the body ended.
    pub fn feed(&mut self, data: &[u8], out: &mut impl FnMut(&[u8])) -> Result<usize, &'static str> {
        match self {
            Body::Done => Ok(0),
            Body::Close => {
                out(data);
                Ok(data.len())
            }
            Body::Length(left) => {
                let n = (*left).min(data.len() as u64) as usize;
                if n > 0 {
                    out(&data[..n]);
                }
                *left -= n as u64;
                if *left == 0 {
                    *self = Body::Done;
                }
                Ok(n)
            }
            Body::Chunked(st) => {
                let (used, done) = feed_chunked(st, data, out)?;
                if done {
                    *self = Body::Done;
                }
                Ok(used)
            }
        }
    }
}

fn hexval(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u64),
        b'a'..=b'f' => Some((b - b'a' + 10) as u64),
        b'A'..=b'F' => Some((b - b'A' + 10) as u64),
        _ => None,
    }
}

/// Returns (bytes consumed, body finished).
fn feed_chunked(
    st: &mut Chunk,
    data: &[u8],
    out: &mut impl FnMut(&[u8]),
) -> Result<(usize, bool), &'static str> {
    let mut i = 0;
    while i < data.len() {
        match *st {
            Chunk::Data(left) => {
                let n = left.min((data.len() - i) as u64) as usize;
                out(&data[i..i + n]);
                i += n;
                *st = if left == n as u64 { Chunk::DataEnd } else { Chunk::Data(left - n as u64) };
            }
            Chunk::Size { val, digits, ext } => {
                let b = data[i];
                i += 1;
                *st = match b {
                    b'\n' if digits == 0 => return Err("chunk size line without digits"),
                    b'\n' if val == 0 => Chunk::Trailer { line_start: true },
                    b'\n' => Chunk::Data(val),
                    b'\r' => *st,
                    _ if ext => *st,
                    b';' | b' ' | b'\t' => Chunk::Size { val, digits, ext: true },
                    _ => {
                        let d = hexval(b).ok_or("bad chunk size")?;
                        if digits >= 15 {
                            return Err("chunk size too large");
                        }
                        Chunk::Size { val: val * 16 + d, digits: digits + 1, ext }
                    }
                };
            }
            Chunk::DataEnd => {
                let b = data[i];
                i += 1;
                match b {
                    b'\r' => {}
                    b'\n' => *st = CHUNK_START,
                    _ => return Err("chunk data not followed by CRLF"),
                }
            }
            Chunk::Trailer { line_start } => {
                let b = data[i];
                i += 1;
                match b {
                    b'\n' if line_start => return Ok((i, true)),
                    b'\n' => *st = Chunk::Trailer { line_start: true },
                    b'\r' => {}
                    _ => *st = Chunk::Trailer { line_start: false },
                }
            }
        }
    }
    Ok((i, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testutil::splits;

    /// Feeds `pieces` one after another: (payload, consumed, final state, first error).
    fn run(mut body: Body, pieces: &[&[u8]]) -> (Vec<u8>, usize, Body, Option<&'static str>) {
        let mut out = Vec::new();
        let mut used = 0;
        for p in pieces {
            match body.feed(p, &mut |b: &[u8]| out.extend_from_slice(b)) {
                Ok(n) => used += n,
                Err(e) => return (out, used, body, Some(e)),
            }
        }
        (out, used, body, None)
    }

    #[test]
    fn table() {
        let chunked = Body::Chunked(CHUNK_START);
        // (framing, input, payload, consumed, ends, error)
        type Case<'a> = (Body, &'a [u8], &'a [u8], usize, bool, Option<&'a str>);
        let cases: &[Case] = &[
            (chunked, b"5\r\nhello\r\n0\r\n\r\n", b"hello", 15, true, None),
            (chunked, b"3;name=v\r\nabc\r\n0\r\n\r\n", b"abc", 20, true, None),
            (
                chunked,
                b"A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n",
                b"0123456789abcdefghij",
                35,
                true,
                None,
            ),
            (chunked, b"2\r\nok\r\n0\r\nX-Trailer: 1\r\n\r\n", b"ok", 26, true, None),
            (chunked, b"2\nok\n0\n\n", b"ok", 8, true, None),
            (chunked, b"0\r\n\r\nNEXT", b"", 5, true, None),
            (chunked, b"5\r\nhel", b"hel", 6, false, None),
            (chunked, b"zz\r\n", b"", 0, false, Some("bad chunk size")),
            (chunked, b"\r\n", b"", 0, false, Some("chunk size line without digits")),
            (chunked, b"3\r\nabcX", b"abc", 0, false, Some("chunk data not followed by CRLF")),
            (chunked, b"1000000000000000\r\n", b"", 0, false, Some("chunk size too large")),
            (Body::Length(4), b"abcdef", b"abcd", 4, true, None),
            (Body::Length(10), b"abc", b"abc", 3, false, None),
            (Body::Close, b"anything", b"anything", 8, false, None),
            (Body::Done, b"more", b"", 0, true, None),
        ];
        for (i, &(body, input, payload, used, ends, err)) in cases.iter().enumerate() {
            let (out, n, end, e) = run(body, &[input]);
            assert_eq!(e, err, "case {i}");
            assert_eq!(out, payload, "case {i}");
            if err.is_none() {
                assert_eq!(n, used, "case {i}");
                assert_eq!(end == Body::Done, ends, "case {i}");
            }
        }
    }

    #[test]
    fn split_independence() {
        let input = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\n";
        for pieces in splits(input) {
            let (out, used, end, err) = run(Body::Chunked(CHUNK_START), &pieces);
            assert_eq!(err, None, "{pieces:?}");
            assert_eq!(out, b"helloabcdefghijklmnopqrstuvwxyz", "{pieces:?}");
            assert_eq!((used, end), (input.len(), Body::Done), "{pieces:?}");
        }
        for a in 0..input.len() {
            for b in a..input.len() {
                let (out, _, end, _) =
                    run(Body::Chunked(CHUNK_START), &[&input[..a], &input[a..b], &input[b..]]);
                assert_eq!(out, b"helloabcdefghijklmnopqrstuvwxyz", "splits {a} {b}");
                assert_eq!(end, Body::Done);
            }
        }
    }
}
