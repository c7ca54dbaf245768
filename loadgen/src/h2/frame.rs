//! HTTP/2 frames (RFC 9113 section 4 and 6), client side: the 9-byte frame
//! header, and the few frames a subscriber sends. Pure functions over byte
//! slices; nothing here reads or writes a socket.

/// The client connection preface (RFC 9113 section 3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's default. loadgen does not raise it: a server
/// sends at most this per frame, so the frames of a broadcast stay small.
pub const MAX_FRAME: usize = 16_384;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const FLAG_END_STREAM: u8 = 0x1;
pub const FLAG_ACK: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;
pub const FLAG_PADDED: u8 = 0x8;
pub const FLAG_PRIORITY: u8 = 0x20;

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// RST_STREAM / GOAWAY error codes loadgen sends or names.
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Payload length.
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

/// The header at the start of `buf`, or None while fewer than 9 bytes are in.
pub fn head(buf: &[u8]) -> Option<Head> {
    let b: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
    Some(Head {
        len: ((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize,
        kind: b[3],
        flags: b[4],
        stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
    })
}

pub fn write_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len < 1 << 24);
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
}

pub fn write_settings(out: &mut Vec<u8>, params: &[(u16, u32)]) {
    write_head(out, params.len() * 6, SETTINGS, 0, 0);
    for &(id, value) in params {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn write_settings_ack(out: &mut Vec<u8>) {
    write_head(out, 0, SETTINGS, FLAG_ACK, 0);
}

pub fn write_ping_ack(out: &mut Vec<u8>, payload: &[u8; 8]) {
    write_head(out, 8, PING, FLAG_ACK, 0);
    out.extend_from_slice(payload);
}

/// `increment` must be 1..=2^31-1.
pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    write_head(out, 4, WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&(increment & 0x7fff_ffff).to_be_bytes());
}

pub fn write_rst_stream(out: &mut Vec<u8>, stream: u32, code: u32) {
    write_head(out, 4, RST_STREAM, 0, stream);
    out.extend_from_slice(&code.to_be_bytes());
}

/// A header block as HEADERS (END_STREAM: a GET has no body), followed by
/// CONTINUATION frames if it is over one frame.
pub fn write_headers(out: &mut Vec<u8>, stream: u32, block: &[u8]) {
    let mut pieces = block.chunks(MAX_FRAME).peekable();
    let mut kind = HEADERS;
    let mut flags = FLAG_END_STREAM;
    if pieces.peek().is_none() {
        write_head(out, 0, kind, flags | FLAG_END_HEADERS, stream);
    }
    while let Some(piece) = pieces.next() {
        let end = if pieces.peek().is_none() { FLAG_END_HEADERS } else { 0 };
        write_head(out, piece.len(), kind, flags | end, stream);
        out.extend_from_slice(piece);
        kind = CONTINUATION;
        flags = 0;
    }
}

/// The name of an error code, for error messages.
pub fn code_name(code: u32) -> String {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    match NAMES.get(code as usize) {
        Some(name) => name.to_string(),
        None => format!("error code 0x{code:x}"),
    }
}

/// The payload of a DATA or HEADERS frame without its padding (and, for
/// HEADERS, its priority fields), or None if the padding does not fit.
pub fn unpad(flags: u8, payload: &[u8], priority: bool) -> Option<&[u8]> {
    let (pad, rest) = if flags & FLAG_PADDED != 0 {
        let (&n, rest) = payload.split_first()?;
        (n as usize, rest)
    } else {
        (0, payload)
    };
    let rest = if priority && flags & FLAG_PRIORITY != 0 { rest.get(5..)? } else { rest };
    rest.get(..rest.len().checked_sub(pad)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_round_trip() {
        let mut out = Vec::new();
        write_head(&mut out, 0x012345, DATA, FLAG_END_STREAM, 0x8000_0003);
        assert_eq!(out, [0x01, 0x23, 0x45, 0, 1, 0, 0, 0, 3]);
        let h = head(&out).unwrap();
        assert_eq!(h, Head { len: 0x012345, kind: DATA, flags: 1, stream: 3 });
        for cut in 0..HEADER_LEN {
            assert_eq!(head(&out[..cut]), None, "cut {cut}");
        }
    }

    #[test]
    fn control_frames() {
        let mut out = Vec::new();
        write_settings(&mut out, &[(SETTINGS_HEADER_TABLE_SIZE, 0), (SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20)]);
        assert_eq!(out, [0, 0, 12, 4, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0, 0x10, 0, 0]);
        out.clear();
        write_window_update(&mut out, 5, 1000);
        assert_eq!(out, [0, 0, 4, 8, 0, 0, 0, 0, 5, 0, 0, 0x03, 0xe8]);
        out.clear();
        write_ping_ack(&mut out, b"12345678");
        assert_eq!(&out[..9], [0, 0, 8, 6, 1, 0, 0, 0, 0]);
        assert_eq!(&out[9..], b"12345678");
        out.clear();
        write_rst_stream(&mut out, 7, CANCEL);
        assert_eq!(out, [0, 0, 4, 3, 0, 0, 0, 0, 7, 0, 0, 0, 8]);
    }

    #[test]
    fn headers_split_into_continuations() {
        let block = vec![0x82; MAX_FRAME + 10];
        let mut out = Vec::new();
        write_headers(&mut out, 1, &block);
        let first = head(&out).unwrap();
        assert_eq!(first, Head { len: MAX_FRAME, kind: HEADERS, flags: FLAG_END_STREAM, stream: 1 });
        let second = head(&out[HEADER_LEN + MAX_FRAME..]).unwrap();
        assert_eq!(second, Head { len: 10, kind: CONTINUATION, flags: FLAG_END_HEADERS, stream: 1 });
        assert_eq!(out.len(), 2 * HEADER_LEN + block.len());
        out.clear();
        write_headers(&mut out, 3, b"\x82");
        assert_eq!(head(&out).unwrap().flags, FLAG_END_STREAM | FLAG_END_HEADERS);
    }

    #[test]
    fn padding() {
        assert_eq!(unpad(0, b"abc", false), Some(&b"abc"[..]));
        assert_eq!(unpad(FLAG_PADDED, b"\x02abcxx", false), Some(&b"abc"[..]));
        assert_eq!(unpad(FLAG_PADDED, b"\x05abc", false), None);
        assert_eq!(unpad(FLAG_PADDED, b"", false), None);
        assert_eq!(unpad(FLAG_PRIORITY, b"12345ab", true), Some(&b"ab"[..]));
        assert_eq!(unpad(FLAG_PRIORITY | FLAG_PADDED, b"\x0112345abx", true), Some(&b"ab"[..]));
        assert_eq!(unpad(FLAG_PRIORITY, b"123", true), None);
        assert_eq!(code_name(7), "REFUSED_STREAM");
        assert_eq!(code_name(0x99), "error code 0x99");
    }
}
