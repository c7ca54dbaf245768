//! The chunked transfer coding (RFC 9112 §7.1): a decoder for request
//! bodies and an encoder for streamed response bodies. Both are pure.

use std::ops::Range;
use std::sync::Arc;

use super::query::hex_value;
use super::HttpError;
use crate::chunk::Chunk;

/// Longest chunk-size line accepted, counting extensions and the CRLF.
/// Extensions are ignored, so a long line can only be waste or an attack.
pub const MAX_SIZE_LINE: usize = 1024;

/// Largest trailer section accepted, counting its final CRLF.
pub const MAX_TRAILER: usize = 8 * 1024;

/// More hex digits than this cannot fit a `u64`, so they are refused
/// outright instead of being parsed with overflow checks.
const MAX_HEX_DIGITS: usize = 16;

/// The stream terminator: a zero-size chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Outcome of [`decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// The whole body is in; `consumed` bytes of the input encoded it
    /// (anything after them belongs to the next message).
    Complete { body: Vec<u8>, consumed: usize },
    /// Valid so far, but the body is not complete yet: call again with more.
    Partial,
}

/// Decodes a complete chunked body from the front of `buf`.
///
/// Grammar: `hex-size [;ext] CRLF data CRLF ... 0 [;ext] CRLF trailer* CRLF`.
/// Extensions and trailer fields are validated loosely and dropped.
///
/// Errors: bare LF/CR, a non-hex or over-long (more than 16 digits) size,
/// an over-long size line or trailer section, or data not followed by CRLF
/// is `Malformed`. A total over `limit` is `BodyTooLarge`, reported as soon
/// as the size line announcing it arrives, before its data.
///
/// The decoder is restartable from scratch: on `Partial` nothing is kept,
/// and the caller calls again with the longer buffer. Data is only copied
/// once the body is complete, so repeated partial calls just rescan lines.
pub fn decode(buf: &[u8], limit: usize) -> Result<Decoded, HttpError> {
    let too_large = || HttpError::BodyTooLarge { limit };
    // Invariant: `total` is the sum of `spans` lengths and never exceeds `limit`.
    let mut spans: Vec<Range<usize>> = Vec::new();
    let mut total: usize = 0;
    let mut pos = 0;
    loop {
        let Some((line, next)) = next_line(buf, pos, MAX_SIZE_LINE, "chunk-size line too long")? else {
            return Ok(Decoded::Partial);
        };
        let size = parse_size_line(line)?;
        let remaining = limit.saturating_sub(total);
        let size = usize::try_from(size).ok().filter(|&size| size <= remaining).ok_or_else(too_large)?;
        pos = next;
        if size == 0 {
            return Ok(match skip_trailers(buf, pos)? {
                Some(end) => Decoded::Complete { body: gather(buf, &spans, total), consumed: end },
                None => Decoded::Partial,
            });
        }
        // An end past usize::MAX could never arrive: treat it as too large.
        let data_end = pos.checked_add(size).ok_or_else(too_large)?;
        if !data_crlf_ok(buf, data_end)? {
            return Ok(Decoded::Partial);
        }
        spans.push(pos..data_end);
        total += size;
        pos = data_end + 2;
    }
}

/// Whether the CRLF that must follow chunk data at `at` is present:
/// `Ok(false)` when it (or the data before it) has not fully arrived yet.
fn data_crlf_ok(buf: &[u8], at: usize) -> Result<bool, HttpError> {
    let Some(tail) = buf.get(at..) else {
        return Ok(false);
    };
    if tail.starts_with(b"\r\n") {
        Ok(true)
    } else if b"\r\n".starts_with(tail) {
        // Only a prefix of CRLF (or nothing) so far.
        Ok(false)
    } else {
        Err(HttpError::malformed("chunk data not followed by CRLF"))
    }
}

/// Finds the CRLF-terminated line starting at `start`, looking at most `max`
/// bytes ahead (CRLF included). Returns the line without CRLF and the offset
/// just past it, or `None` if the line is still incomplete.
fn next_line<'a>(
    buf: &'a [u8],
    start: usize,
    max: usize,
    too_long: &str,
) -> Result<Option<(&'a [u8], usize)>, HttpError> {
    let rest = buf.get(start..).unwrap_or_default();
    let window = rest.get(..max).unwrap_or(rest);
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if window.len() >= max { Err(HttpError::malformed(too_long)) } else { Ok(None) };
    };
    let with_cr = window.get(..lf).unwrap_or_default();
    // Accepting a bare LF here while a front proxy does not is a classic
    // request-smuggling vector, so line endings must be exactly CRLF.
    let Some(line) = with_cr.strip_suffix(b"\r") else {
        return Err(HttpError::malformed("bare LF in chunked body"));
    };
    if line.contains(&b'\r') {
        return Err(HttpError::malformed("bare CR in chunked body"));
    }
    Ok(Some((line, start + lf + 1)))
}

/// Parses `hex-size [BWS ; ext]`, returning the size.
fn parse_size_line(line: &[u8]) -> Result<u64, HttpError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(HttpError::malformed("chunk size is not a hex number"));
    }
    if digits > MAX_HEX_DIGITS {
        return Err(HttpError::malformed("chunk size too large"));
    }
    let hex = line.get(..digits).unwrap_or_default();
    // At most 16 hex digits, so the shifts below cannot overflow a u64.
    let size = hex.iter().filter_map(|&b| hex_value(b)).fold(0u64, |acc, v| acc << 4 | u64::from(v));
    let rest = line.get(digits..).unwrap_or_default();
    let rest = trim_start_ws(rest);
    let ext_ok = rest.is_empty() || (rest.starts_with(b";") && !has_control(rest));
    if ext_ok {
        Ok(size)
    } else {
        Err(HttpError::malformed("invalid chunk extension"))
    }
}

/// Skips the trailer section starting at `start`; returns the offset just
/// past its final CRLF, or `None` if it has not fully arrived.
fn skip_trailers(buf: &[u8], start: usize) -> Result<Option<usize>, HttpError> {
    let mut pos = start;
    loop {
        // Invariant: pos - start bytes of trailer consumed, at most MAX_TRAILER.
        let budget = MAX_TRAILER.saturating_sub(pos - start);
        let found = next_line(buf, pos, budget, "chunked trailer section too large")?;
        let Some((line, next)) = found else {
            return Ok(None);
        };
        if line.is_empty() {
            return Ok(Some(next));
        }
        let name_len = line.iter().position(|&b| b == b':').unwrap_or(0);
        if name_len == 0 || has_control(line) {
            return Err(HttpError::malformed("invalid chunked trailer field"));
        }
        pos = next;
    }
}

/// Whether `bytes` holds a control character other than horizontal tab.
fn has_control(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
}

fn trim_start_ws(bytes: &[u8]) -> &[u8] {
    let ws = bytes.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    bytes.get(ws..).unwrap_or_default()
}

/// Copies the data spans (all within `buf`, summing to `total`) into one body.
fn gather(buf: &[u8], spans: &[Range<usize>], total: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(total);
    for span in spans {
        body.extend_from_slice(buf.get(span.clone()).unwrap_or_default());
    }
    body
}

/// Appends one chunk (`{len:x}\r\n` data `\r\n`) to `out`.
///
/// Empty `data` appends nothing: a zero-size chunk would end the stream,
/// which must only happen through [`LAST_CHUNK`].
pub fn encode_into(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// One chunk around shared bytes, without copying them: the size line
/// inline, the bytes shared, the CRLF static. This is where a shared message
/// frame gets its HTTP/1.1 framing; the frame itself carries none. Empty bytes
/// give an empty chunk (a zero-size chunk would end the stream).
pub fn frame(body: &Arc<[u8]>) -> Chunk {
    if body.is_empty() {
        return Chunk::Static(b"");
    }
    // The size line by hand: this runs once per delivery, so no formatter.
    let mut size_line = [0u8; 18];
    let digits = (usize::BITS - body.len().leading_zeros()).div_ceil(4) as usize;
    for (i, slot) in size_line.iter_mut().take(digits).enumerate() {
        let shift = 4 * (digits - 1 - i);
        *slot = HEX.get((body.len() >> shift) & 0xf).copied().unwrap_or(b'0');
    }
    for (slot, byte) in size_line.iter_mut().skip(digits).zip(b"\r\n") {
        *slot = *byte;
    }
    Chunk::wrapped(size_line.get(..digits + 2).unwrap_or(&[]), body.clone(), b"\r\n")
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Body bytes of a streamed response as the connection sends them: one
/// chunk for HTTP/1.1, or as they are for an HTTP/1.0 body that ends at close.
pub fn body_bytes(body: &[u8], chunked: bool) -> Vec<u8> {
    if !chunked {
        return body.to_vec();
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    encode_into(&mut out, body);
    out
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// (exactly one encoded body, the body it decodes to).
    const VALID: &[(&[u8], &[u8])] = &[
        (b"0\r\n\r\n", b""),
        (b"5\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", b"hello world"),
        (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (b"a\r\n0123456789\r\n0\r\n\r\n", b"0123456789"),
        (b"005\r\nhello\r\n000\r\n\r\n", b"hello"),
        (b"5;name=value\r\nhello\r\n0;x\r\n\r\n", b"hello"),
        (b"5 ;ext\r\nhello\r\n0\r\n\r\n", b"hello"),
        (b"2\r\n\r\n\r\n0\r\n\r\n", b"\r\n"),
        (b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\n", b"abc"),
    ];

    fn complete(body: &[u8], consumed: usize) -> Decoded {
        Decoded::Complete { body: body.to_vec(), consumed }
    }

    #[test]
    fn decodes_valid_bodies() {
        for &(input, body) in VALID {
            let got = decode(input, 1 << 20);
            assert_eq!(got, Ok(complete(body, input.len())), "{:?}", String::from_utf8_lossy(input));
        }
    }

    /// Bytes after the body (the next pipelined request) are not consumed.
    #[test]
    fn stops_at_end_of_body() {
        for &(input, body) in VALID {
            let wire = [input, b"GET / HTTP/1.1\r\n".as_slice()].concat();
            assert_eq!(decode(&wire, 1 << 20), Ok(complete(body, input.len())));
        }
    }

    /// Every proper prefix of a valid body is Partial; the whole is Complete.
    #[test]
    fn few_bytes_at_a_time() {
        for &(input, body) in VALID {
            for step in [1, 3] {
                let mut end = step.min(input.len());
                while end < input.len() {
                    assert_eq!(decode(&input[..end], 1 << 20), Ok(Decoded::Partial), "{end}");
                    end = (end + step).min(input.len());
                }
                assert_eq!(decode(input, 1 << 20), Ok(complete(body, input.len())));
            }
        }
    }

    #[test]
    fn rejects_malformed() {
        let long_ext = [b"1;".as_slice(), &[b'x'; MAX_SIZE_LINE]].concat();
        let mut big_trailer = b"0\r\n".to_vec();
        big_trailer.extend(std::iter::repeat_n(b"X-Pad: 0123456789abcdef\r\n".as_slice(), 400).flatten());
        let cases: Vec<(&[u8], &str)> = vec![
            (b"5\nhello\r\n0\r\n\r\n", "bare LF in chunked body"),
            (b"0\r\n\n", "bare LF in chunked body"),
            (b"0\r\nX: 1\n\r\n", "bare LF in chunked body"),
            (b"5\r\r\nhello\r\n0\r\n\r\n", "bare CR in chunked body"),
            (b"5\r\nhello\n0\r\n\r\n", "chunk data not followed by CRLF"),
            (b"5\r\nhelloXX0\r\n\r\n", "chunk data not followed by CRLF"),
            (b"5\r\nhello\rX", "chunk data not followed by CRLF"),
            (b"zz\r\n", "chunk size is not a hex number"),
            (b"\r\n", "chunk size is not a hex number"),
            (b"-1\r\n", "chunk size is not a hex number"),
            (b"0x5\r\nhello\r\n", "invalid chunk extension"),
            (b"5 5\r\n", "invalid chunk extension"),
            (b"5;a\x01b\r\n", "invalid chunk extension"),
            (b"10000000000000000\r\n", "chunk size too large"),
            (b"0\r\nno-colon\r\n\r\n", "invalid chunked trailer field"),
            (b"0\r\n: no name\r\n\r\n", "invalid chunked trailer field"),
            (&long_ext, "chunk-size line too long"),
            (&big_trailer, "chunked trailer section too large"),
        ];
        for (input, why) in cases {
            let got = decode(input, 1 << 20);
            assert_eq!(got, Err(HttpError::malformed(why)), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn enforces_limit_before_data_arrives() {
        let cases: [(&[u8], usize, bool); 6] = [
            (b"5\r\n", 4, true),
            (b"5\r\nhello\r\n5\r\n", 8, true),
            (b"5\r\nhello\r\n0\r\n\r\n", 5, false),
            (b"1\r\n", 0, true),
            (b"ffffffffffffffff\r\n", usize::MAX, true),
            (b"fffffffffffffff\r\n", usize::MAX - 1, false),
        ];
        for (input, limit, too_large) in cases {
            let got = decode(input, limit);
            if too_large {
                assert_eq!(got, Err(HttpError::BodyTooLarge { limit }), "{input:?}");
            } else {
                assert!(got.is_ok(), "{input:?} {got:?}");
            }
        }
    }

    #[test]
    fn encodes_chunks() {
        let cases: [(&[u8], &[u8]); 3] = [(b"", b""), (b"hello", b"5\r\n"), (&[b'x'; 300], b"12c\r\n")];
        for (data, prefix) in cases {
            let mut out = Vec::new();
            encode_into(&mut out, data);
            assert!(out.starts_with(prefix), "{out:?}");
            let want_len = if data.is_empty() { 0 } else { prefix.len() + data.len() + 2 };
            assert_eq!(out.len(), want_len);
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let parts: [&[u8]; 4] = [b"first", b"", b"\r\n0\r\n\r\n", &[7u8; 4096]];
        let mut wire = Vec::new();
        for part in parts {
            encode_into(&mut wire, part);
        }
        wire.extend_from_slice(LAST_CHUNK);
        assert_eq!(decode(&wire, 1 << 20), Ok(complete(&parts.concat(), wire.len())));
    }

    #[test]
    fn frames_shared_bytes_as_one_chunk() {
        let body: Arc<[u8]> = Arc::from(&b"0123456789abcdefg"[..]);
        assert_eq!(frame(&body).to_vec(), b"11\r\n0123456789abcdefg\r\n");
        for len in [1, 15, 16, 255, 256, 4096, 65535, 1 << 20] {
            let body: Arc<[u8]> = vec![b'x'; len].into();
            let mut want = Vec::new();
            encode_into(&mut want, &body);
            assert_eq!(frame(&body).to_vec(), want, "{len} bytes");
        }
        assert!(frame(&Arc::from(&b""[..])).is_empty());
        assert_eq!(body_bytes(b"ab", true), b"2\r\nab\r\n");
        assert_eq!(body_bytes(b"", true), b"");
        assert_eq!(body_bytes(b"ab", false), b"ab");
    }
}
