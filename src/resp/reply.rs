//! Reply encoding: pure functions appending one RESP2 value to `out`.
//!
//! Invariant: every function appends exactly one well-formed RESP2 value
//! (or, for [`array_header`], the header the caller then follows with `n`
//! values), whatever its arguments. Simple strings and errors cannot carry CR
//! or LF, so those are replaced with spaces rather than letting a caller's
//! text end the line early and desynchronise the client.

use std::io::Write;

const CRLF: &[u8] = b"\r\n";

/// Appends a simple string, `+<s>\r\n` (CR/LF in `s` become spaces).
pub fn simple(out: &mut Vec<u8>, s: &str) {
    out.push(b'+');
    push_line(out, s);
}

/// Appends an error, `-<s>\r\n`. The caller passes the whole text including
/// its code, e.g. `"ERR unknown command"` (CR/LF in `s` become spaces).
pub fn error(out: &mut Vec<u8>, s: &str) {
    out.push(b'-');
    push_line(out, s);
}

/// Appends an integer, `:<n>\r\n`.
pub fn integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    push_decimal(out, n);
    out.extend_from_slice(CRLF);
}

/// Appends a bulk string, `$<len>\r\n<b>\r\n`; binary safe.
pub fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    // Header and trailer together stay well under 32 bytes.
    out.reserve(b.len().saturating_add(32));
    out.push(b'$');
    push_decimal(out, b.len());
    out.extend_from_slice(CRLF);
    out.extend_from_slice(b);
    out.extend_from_slice(CRLF);
}

/// Appends the RESP2 null bulk string, `$-1\r\n`.
pub fn null_bulk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// Appends an array header, `*<n>\r\n`; the caller appends the `n` elements.
pub fn array_header(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    push_decimal(out, n);
    out.extend_from_slice(CRLF);
}

/// Appends an empty array, `*0\r\n`.
pub fn empty_array(out: &mut Vec<u8>) {
    out.extend_from_slice(b"*0\r\n");
}

/// Appends `s` with CR and LF replaced by spaces, then CRLF.
fn push_line(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.extend_from_slice(CRLF);
}

/// Appends `n` in decimal without a temporary `String`.
fn push_decimal(out: &mut Vec<u8>, n: impl std::fmt::Display) {
    // Writing into a Vec<u8> cannot fail (it only grows), so the Result
    // carries no information.
    let _ = write!(out, "{n}");
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::resp::parse::{parse_command, Limits, Parsed};

    fn encode(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    #[test]
    fn encoders_produce_exact_bytes() {
        let cases: Vec<(Vec<u8>, &[u8])> = vec![
            (encode(|o| simple(o, "OK")), b"+OK\r\n"),
            (encode(|o| simple(o, "PONG")), b"+PONG\r\n"),
            (encode(|o| simple(o, "")), b"+\r\n"),
            (encode(|o| simple(o, "a\r\nb\nc\r")), b"+a  b c \r\n"),
            (encode(|o| error(o, "ERR unknown command 'FOO'")), b"-ERR unknown command 'FOO'\r\n"),
            (encode(|o| error(o, "ERR bad\r\n+OK")), b"-ERR bad  +OK\r\n"),
            (encode(|o| integer(o, 0)), b":0\r\n"),
            (encode(|o| integer(o, 42)), b":42\r\n"),
            (encode(|o| integer(o, -7)), b":-7\r\n"),
            (encode(|o| integer(o, i64::MIN)), b":-9223372036854775808\r\n"),
            (encode(|o| integer(o, i64::MAX)), b":9223372036854775807\r\n"),
            (encode(|o| bulk(o, b"hello")), b"$5\r\nhello\r\n"),
            (encode(|o| bulk(o, b"")), b"$0\r\n\r\n"),
            (encode(|o| bulk(o, b"a\r\n\0b")), b"$5\r\na\r\n\0b\r\n"),
            (encode(null_bulk), b"$-1\r\n"),
            (encode(|o| array_header(o, 3)), b"*3\r\n"),
            (encode(|o| array_header(o, 0)), b"*0\r\n"),
            (encode(empty_array), b"*0\r\n"),
        ];
        for (got, want) in cases {
            assert_eq!(got, want, "{:?}", want.escape_ascii().to_string());
        }
    }

    #[test]
    fn encoders_append_without_clobbering() {
        let mut out = b"+OK\r\n".to_vec();
        array_header(&mut out, 3);
        bulk(&mut out, b"message");
        bulk(&mut out, b"news");
        bulk(&mut out, b"hi");
        integer(&mut out, 1);
        assert_eq!(out, b"+OK\r\n*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n:1\r\n");
    }

    #[test]
    fn encoded_array_of_bulks_parses_back() {
        // The reply encoders and the request parser agree on the array form.
        let payloads: [&[u8]; 3] = [b"PUBLISH", b"news", b"\r\n\0\xff"];
        let mut out = Vec::new();
        array_header(&mut out, payloads.len());
        for p in payloads {
            bulk(&mut out, p);
        }
        let parsed = parse_command(&out, &Limits::default()).unwrap();
        let Parsed::Complete { command, consumed } = parsed else { panic!("expected Complete") };
        assert_eq!(consumed, out.len());
        assert_eq!(command.args, payloads.map(<[u8]>::to_vec));
    }
}
