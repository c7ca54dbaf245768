//! Allocation-free parsing on the receive path: chunked bodies, lines split
//! across reads, WebSocket frames, and the `s=<seq> t=<nanos>` payload fields.

use memchr::memchr_iter;

/// Wall-clock time in unix nanoseconds (what payloads carry in `t=`).
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// How a response body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Chunked(Chunk),
    Length(u64),
    /// Ends when the connection closes (HTTP/1.0 or no framing).
    Close,
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

/// Longest partial line kept between reads before the stream is given up.
pub const MAX_CARRY: usize = 1 << 20;

/// Calls `on_line` for every complete line (without CR/LF). A line split
/// across calls is kept in `carry` (its capacity is reused; nothing is
/// allocated once it has grown to the longest line).
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

fn digits(hay: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut v: u64 = 0;
    let mut i = at;
    while i < hay.len() && hay[i].is_ascii_digit() {
        v = v.checked_mul(10)?.checked_add((hay[i] - b'0') as u64)?;
        i += 1;
    }
    (i > at).then_some((v, i))
}

/// Finds every `s=<seq> t=<nanos>` in `hay` (an `s=` at the start or after a
/// space, quote, colon or brace) and calls `f(seq, t, u)`, where `u` is the
/// optional `u=<seq>` that may follow `c=<channel>` (the lowest seq of the
/// channel still unanswered when this one was published; `seq` when absent).
/// Returns how many.
pub fn extract(hay: &[u8], f: &mut impl FnMut(u64, u64, u64)) -> usize {
    let mut found = 0;
    let mut from = 0;
    while let Some(p) = memchr::memchr(b's', &hay[from..]) {
        let p = from + p;
        from = p + 1;
        if hay.get(p + 1) != Some(&b'=')
            || (p > 0 && !matches!(hay[p - 1], b' ' | b'"' | b':' | b'{' | b'\n'))
        {
            continue;
        }
        let Some((seq, mut q)) = digits(hay, p + 2) else { continue };
        while q < hay.len() && hay[q] == b' ' {
            q += 1;
        }
        if hay.get(q) != Some(&b't') || hay.get(q + 1) != Some(&b'=') {
            continue;
        }
        let Some((t, end)) = digits(hay, q + 2) else { continue };
        f(seq, t, unanswered_from(hay, end).unwrap_or(seq));
        found += 1;
        from = end;
    }
    found
}

/// Reads ` c=<channel> u=<seq>` right after the `t=` field.
fn unanswered_from(hay: &[u8], mut i: usize) -> Option<u64> {
    let skip_spaces = |mut i: usize| {
        while hay.get(i) == Some(&b' ') {
            i += 1;
        }
        i
    };
    i = skip_spaces(i);
    if hay.get(i) == Some(&b'c') && hay.get(i + 1) == Some(&b'=') {
        while i < hay.len() && !matches!(hay[i], b' ' | b'"' | b'\n') {
            i += 1;
        }
        i = skip_spaces(i);
    }
    if hay.get(i) == Some(&b'u') && hay.get(i + 1) == Some(&b'=') {
        return digits(hay, i + 2).map(|(u, _)| u);
    }
    None
}

/// Per-subscriber bookkeeping of the sequence numbers seen: every seq below
/// `base` is settled (received, or given up once 256 later ones arrived),
/// `bits` marks received ones in `base..base+256`.
#[derive(Clone, Debug, Default)]
pub struct SeqTrack {
    base: u64,
    /// Highest seq seen + 1 (0: none yet).
    top: u64,
    /// The `u` of the highest seq seen: seqs below it were answered by the
    /// server before that message was published, so they must come first.
    top_u: u64,
    bits: [u64; 4],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    New { out_of_order: bool },
    Duplicate,
}

impl SeqTrack {
    /// Records seq `s` (published while `u..s` were unanswered). Out of order
    /// means: a higher seq arrived first although `s` had been answered
    /// before that one was published. Without `u=` (u == s) any reversal is.
    pub fn record(&mut self, s: u64, u: u64) -> Seen {
        if s < self.base {
            return Seen::Duplicate;
        }
        let out_of_order = s + 1 < self.top && s < self.top_u;
        // In order with nothing pending: the common case.
        if s == self.base && self.bits == [0; 4] {
            self.base += 1;
            if s + 1 > self.top {
                self.top = s + 1;
                self.top_u = u;
            }
            return Seen::New { out_of_order };
        }
        let mut off = s - self.base;
        if off >= 256 {
            self.shift(off - 255);
            off = 255;
        }
        let (w, b) = ((off / 64) as usize, off % 64);
        if self.bits[w] >> b & 1 == 1 {
            return Seen::Duplicate;
        }
        self.bits[w] |= 1 << b;
        loop {
            let ones = self.bits[0].trailing_ones() as u64;
            if ones == 0 {
                break;
            }
            self.shift(ones);
            if ones < 64 {
                break;
            }
        }
        if s + 1 > self.top {
            self.top = s + 1;
            self.top_u = u;
        }
        Seen::New { out_of_order }
    }

    fn shift(&mut self, n: u64) {
        self.base += n;
        if n >= 256 {
            self.bits = [0; 4];
            return;
        }
        let (words, bits) = ((n / 64) as usize, (n % 64) as u32);
        let old = self.bits;
        for i in 0..4 {
            let src = i + words;
            let lo = if src < 4 { old[src] >> bits } else { 0 };
            let hi = if bits > 0 && src + 1 < 4 { old[src + 1] << (64 - bits) } else { 0 };
            self.bits[i] = lo | hi;
        }
    }
}

/// What a WebSocket frame said.
pub enum WsEvent<'a> {
    Message(&'a [u8]),
    Ping(&'a [u8]),
    Close,
}

/// Largest server frame accepted.
const MAX_FRAME: u64 = 16 << 20;

/// Parses complete frames from `buf`; returns the bytes consumed (the rest is
/// an incomplete frame). Fragmented messages are gathered in `frag`.
pub fn ws_frames(
    buf: &[u8],
    frag: &mut Vec<u8>,
    on: &mut impl FnMut(WsEvent),
) -> Result<usize, &'static str> {
    let mut pos = 0;
    loop {
        let b = &buf[pos..];
        if b.len() < 2 {
            return Ok(pos);
        }
        let fin = b[0] & 0x80 != 0;
        let op = b[0] & 0x0f;
        if b[1] & 0x80 != 0 {
            return Err("masked frame from the server");
        }
        let (len, hlen) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as u64, 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap()), 10),
            126 | 127 => return Ok(pos),
            n => (n as u64, 2),
        };
        if len > MAX_FRAME {
            return Err("frame over 16 MiB");
        }
        if ((b.len() - hlen) as u64) < len {
            return Ok(pos);
        }
        let payload = &b[hlen..hlen + len as usize];
        pos += hlen + len as usize;
        match op {
            0x8 => {
                on(WsEvent::Close);
                return Ok(pos);
            }
            0x9 => on(WsEvent::Ping(payload)),
            0xA => {}
            0x1 | 0x2 if fin => on(WsEvent::Message(payload)),
            0x1 | 0x2 => {
                frag.clear();
                frag.extend_from_slice(payload);
            }
            0x0 => {
                frag.extend_from_slice(payload);
                if fin {
                    on(WsEvent::Message(frag));
                    frag.clear();
                }
            }
            _ => return Err("unknown opcode"),
        }
    }
}

/// Appends a masked client frame (RFC 6455 5.3) with a payload under 126 bytes.
pub fn ws_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    let payload = &payload[..payload.len().min(125)];
    out.push(0x80 | opcode);
    out.push(0x80 | payload.len() as u8);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// Standard base64 of 16 bytes (a Sec-WebSocket-Key).
pub fn base64_16(bytes: [u8; 16]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(24);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// Case-insensitive header lookup in a parsed head.
pub fn header<'a>(headers: &[httparse::Header<'a>], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

pub fn contains_ci(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], splits: &[usize]) -> (Vec<u8>, Body) {
        let mut body = Body::Chunked(CHUNK_START);
        let mut out = Vec::new();
        let mut last = 0;
        for &s in splits.iter().chain(std::iter::once(&input.len())) {
            body.feed(&input[last..s], &mut |p: &[u8]| out.extend_from_slice(p)).unwrap();
            last = s;
        }
        (out, body)
    }

    #[test]
    fn chunked_split_anywhere() {
        let input = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\n";
        for a in 0..input.len() {
            for b in a..input.len() {
                let (out, body) = decode_all(input, &[a, b]);
                assert_eq!(out, b"helloabcdefghijklmnopqrstuvwxyz", "splits {a} {b}");
                assert_eq!(body, Body::Done);
            }
        }
        let mut body = Body::Chunked(CHUNK_START);
        let used = body.feed(b"0\r\n\r\nNEXT", &mut |_: &[u8]| {}).unwrap();
        assert_eq!((used, body), (5, Body::Done));
        assert!(Body::Chunked(CHUNK_START).feed(b"zz\r\n", &mut |_: &[u8]| {}).is_err());
    }

    #[test]
    fn lines_and_fields_split_anywhere() {
        let stream = b"retry: 2000\n\nid: 1-0\ndata: s=12 t=1700000000000000001 c=ch0 xxxx\n\n:\n\
                       data:s=13 t=1700000000000000002 c=ch0\r\n\r\n";
        for cut in 0..stream.len() {
            let mut carry = Vec::new();
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                split_lines(&mut carry, part, &mut |line: &[u8]| {
                    if let Some(rest) = line.strip_prefix(b"data:") {
                        extract(rest, &mut |s, t, _| got.push((s, t)));
                    }
                })
                .unwrap();
            }
            assert_eq!(got, [(12, 1700000000000000001), (13, 1700000000000000002)], "cut {cut}");
        }
    }

    #[test]
    fn extract_in_envelopes() {
        let body = br#"{"messages":[{"id":"1-0","channel":"ch1","data":"s=0 t=5 c=ch1 xx"},{"id":"1-1","channel":"ch1","data":"s=1 t=6 c=ch1 u=0 xxx"}],"last_id":"1-1"}"#;
        let mut got = Vec::new();
        assert_eq!(extract(body, &mut |s, t, u| got.push((s, t, u))), 2);
        assert_eq!(got, [(0, 5, 0), (1, 6, 0)]);
        assert_eq!(extract(b"xs=1 t=2 sas=3 t=", &mut |_, _, _| panic!()), 0);
    }

    #[test]
    fn seq_tracking() {
        let mut t = SeqTrack::default();
        let mut log = Vec::new();
        for s in [0, 1, 3, 2, 2, 4, 1, 600, 400, 900, 700, 5] {
            log.push(t.record(s, s));
        }
        use Seen::*;
        let n = |o| New { out_of_order: o };
        assert_eq!(
            log,
            [
                n(false),
                n(false),
                n(false),
                n(true),
                Duplicate,
                n(false),
                Duplicate,
                n(false),
                n(true),
                n(false),
                n(true),
                Duplicate
            ]
        );
        let mut t = SeqTrack::default();
        for s in 0..1000 {
            assert_eq!(t.record(s, s), n(false));
        }
        assert_eq!(t.record(999, 999), Duplicate);
        // 11 and 12 were in flight together: the server may order them either way.
        let mut t = SeqTrack::default();
        assert_eq!(t.record(10, 10), n(false));
        assert_eq!(t.record(12, 11), n(false));
        assert_eq!(t.record(11, 11), n(false));
        // 13 was answered before 14 was published: 14 first is out of order.
        assert_eq!(t.record(14, 14), n(false));
        assert_eq!(t.record(13, 12), n(true));
    }

    #[test]
    fn ws_frames_split_and_fragmented() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&[0x81, 3]);
        wire.extend_from_slice(b"abc");
        wire.extend_from_slice(&[0x89, 1, b'p']);
        wire.extend_from_slice(&[0x01, 2, b'd', b'e']);
        wire.extend_from_slice(&[0x80, 1, b'f']);
        let big = vec![b'z'; 300];
        wire.extend_from_slice(&[0x81, 126, 1, 44]);
        wire.extend_from_slice(&big);
        wire.extend_from_slice(&[0x88, 0]);
        for cut in 0..wire.len() {
            let mut frag = Vec::new();
            let mut carry = Vec::new();
            let mut got: Vec<String> = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                carry.extend_from_slice(part);
                let used = ws_frames(&carry, &mut frag, &mut |e| {
                    got.push(match e {
                        WsEvent::Message(m) => String::from_utf8_lossy(m).into_owned(),
                        WsEvent::Ping(p) => format!("ping {}", String::from_utf8_lossy(p)),
                        WsEvent::Close => "close".into(),
                    })
                })
                .unwrap();
                carry.drain(..used);
            }
            assert_eq!(got, ["abc", "ping p", "def", &"z".repeat(300), "close"], "cut {cut}");
        }
    }

    #[test]
    fn base64_key() {
        assert_eq!(base64_16(*b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }
}
