//! A framed body cut into lines (SSE and NDJSON streams are both made of
//! lines). A line split across reads or chunks is carried in a buffer whose
//! capacity is reused: nothing is allocated once it has grown to the longest
//! line.

use memchr::memchr_iter;

use super::{Body, Status};

/// Longest partial line kept between reads before the stream is given up.
pub const MAX_CARRY: usize = 1 << 20;

/// Calls `on_line` for every complete line (without CR/LF). A line split
/// across calls is kept in `carry`.
pub fn split_lines(
    carry: &mut Vec<u8>,
    data: &[u8],
    on_line: &mut impl FnMut(&[u8]),
) -> Result<(), &'static str> {
    let mut start = 0;
    for pos in memchr_iter(b'\n', data) {
        let piece = &data[start..pos];
        if carry.is_empty() {
            on_line(strip_cr(piece));
        } else {
            carry.extend_from_slice(piece);
            on_line(strip_cr(carry));
            carry.clear();
        }
        start = pos + 1;
    }
    if start < data.len() {
        if carry.len() + data.len() - start > MAX_CARRY {
            carry.clear();
            return Err("line longer than 1 MiB");
        }
        carry.extend_from_slice(&data[start..]);
    }
    Ok(())
}

fn strip_cr(line: &[u8]) -> &[u8] {
    match line.last() {
        Some(b'\r') => &line[..line.len() - 1],
        _ => line,
    }
}

/// The lines of one response body: its framing and the partial line.
#[derive(Debug, Default)]
pub struct Lines {
    pub body: Body,
    carry: Vec<u8>,
}

impl Lines {
    /// A new body with this framing begins (the response head was read).
    pub fn start(&mut self, body: Body) {
        self.body = body;
        self.carry.clear();
    }

    /// Feeds body bytes; `on_line` gets every complete line.
    pub fn feed(&mut self, data: &[u8], on_line: &mut impl FnMut(&[u8])) -> Result<Status, String> {
        let mut err = None;
        let carry = &mut self.carry;
        self.body
            .feed(data, &mut |piece: &[u8]| {
                if let Err(e) = split_lines(carry, piece, on_line) {
                    err = Some(e);
                }
            })
            .map_err(|e| format!("body: {e}"))?;
        if let Some(e) = err {
            return Err(e.to_string());
        }
        Ok(if self.body == Body::Done { Status::Ended } else { Status::More })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testutil::splits;

    #[test]
    fn split_independence() {
        // (input, lines)
        let cases: &[(&[u8], &[&str])] = &[
            (b"a\nbb\r\nccc\n", &["a", "bb", "ccc"]),
            (b"\n\r\n", &["", ""]),
            (b"no newline", &[]),
            (b"x\ny", &["x"]),
        ];
        for &(input, want) in cases {
            for pieces in splits(input) {
                let mut carry = Vec::new();
                let mut got: Vec<String> = Vec::new();
                for p in &pieces {
                    split_lines(&mut carry, p, &mut |l: &[u8]| got.push(String::from_utf8_lossy(l).into()))
                        .unwrap();
                }
                assert_eq!(got, want, "{pieces:?}");
            }
        }
    }

    #[test]
    fn too_long_a_line() {
        let mut carry = vec![b'x'; MAX_CARRY];
        assert_eq!(split_lines(&mut carry, b"y", &mut |_: &[u8]| {}), Err("line longer than 1 MiB"));
        assert!(carry.is_empty());
        let mut lines = Lines::default();
        lines.start(Body::Close);
        let long = vec![b'x'; MAX_CARRY + 1];
        assert_eq!(lines.feed(&long, &mut |_: &[u8]| {}), Err("line longer than 1 MiB".to_string()));
        lines.start(Body::Chunked(crate::decode::CHUNK_START));
        assert_eq!(lines.feed(b"zz\r\n", &mut |_: &[u8]| {}), Err("body: bad chunk size".to_string()));
    }
}
