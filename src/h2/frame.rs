//! The frame codec (RFC 9113 §4 and §6): [`decode`] reads one frame from
//! the front of a buffer, the `encode_*` functions write server frames.
//!
//! Frame layout: `length(24) | type(8) | flags(8) | R(1) stream(31) |
//! payload`. Every rule that can be checked from one frame alone is checked
//! here (lengths of fixed-size frames, padding, stream 0 or not, the frame
//! size limit); rules that span frames (CONTINUATION order, stream states,
//! windows) are the connection's ([`super::conn`]).
//!
//! Split independence: `decode` looks only at `buf`; a prefix of a frame is
//! always `Partial`, so the answer never depends on how the bytes arrived.

use super::error::{ErrorCode, H2Error};

/// The frame header's length.
pub const HEADER_LEN: usize = 9;
/// The smallest SETTINGS_MAX_FRAME_SIZE a peer may announce, and the one in
/// force until it announces another (§4.2). Ours stays at it: client frames
/// are HEADERS, small DATA and control frames.
pub const DEFAULT_MAX_FRAME: usize = 16_384;
/// The largest SETTINGS_MAX_FRAME_SIZE allowed (§6.5.2).
pub const MAX_MAX_FRAME: u32 = (1 << 24) - 1;

pub const TYPE_DATA: u8 = 0x0;
pub const TYPE_HEADERS: u8 = 0x1;
pub const TYPE_PRIORITY: u8 = 0x2;
pub const TYPE_RST_STREAM: u8 = 0x3;
pub const TYPE_SETTINGS: u8 = 0x4;
pub const TYPE_PUSH_PROMISE: u8 = 0x5;
pub const TYPE_PING: u8 = 0x6;
pub const TYPE_GOAWAY: u8 = 0x7;
pub const TYPE_WINDOW_UPDATE: u8 = 0x8;
pub const TYPE_CONTINUATION: u8 = 0x9;

pub const FLAG_END_STREAM: u8 = 0x1;
pub const FLAG_ACK: u8 = 0x1;
pub const FLAG_END_HEADERS: u8 = 0x4;
pub const FLAG_PADDED: u8 = 0x8;
pub const FLAG_PRIORITY: u8 = 0x20;

/// One decoded frame; payloads borrow from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        stream: u32,
        end_stream: bool,
        data: &'a [u8],
        flow_len: u32,
    },
    Headers {
        stream: u32,
        end_stream: bool,
        end_headers: bool,
        block: &'a [u8],
    },
    Priority {
        stream: u32,
        depends_on: u32,
    },
    RstStream {
        stream: u32,
        code: u32,
    },
    Settings {
        ack: bool,
        params: Vec<(u16, u32)>,
    },
    PushPromise {
        stream: u32,
    },
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        code: u32,
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        end_headers: bool,
        block: &'a [u8],
    },
    /// An unknown type: ignored (§4.1), but its length was checked.
    Unknown {
        kind: u8,
        stream: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A whole frame; `consumed` = 9 + its length.
    Complete { frame: Frame<'a>, consumed: usize },
    /// Not a whole frame yet.
    Partial,
}

fn u24(b: [u8; 3]) -> usize {
    (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2])
}

/// The whole length (header and payload) of the frame at the front of `buf`,
/// once its header is in.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let head = buf.first_chunk::<3>()?;
    Some(HEADER_LEN + u24(*head))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

/// Reads one frame from the front of `buf`; frames longer than `max_frame`
/// (our SETTINGS_MAX_FRAME_SIZE) are a FRAME_SIZE_ERROR for the connection.
pub fn decode(buf: &[u8], max_frame: usize) -> Result<Decoded<'_>, H2Error> {
    let Some(head) = buf.first_chunk::<HEADER_LEN>() else { return Ok(Decoded::Partial) };
    let len = u24([head[0], head[1], head[2]]);
    let (kind, flags) = (head[3], head[4]);
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    if len > max_frame {
        return Err(H2Error::conn(
            ErrorCode::FrameSize,
            format!("a frame of {len} bytes is over our limit of {max_frame}"),
        ));
    }
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else { return Ok(Decoded::Partial) };
    let frame = parse(kind, flags, stream, payload)?;
    Ok(Decoded::Complete { frame, consumed: HEADER_LEN + len })
}

fn need_stream(stream: u32, what: &str) -> Result<(), H2Error> {
    if stream == 0 {
        return Err(H2Error::conn(ErrorCode::Protocol, format!("{what} on stream 0")));
    }
    Ok(())
}

fn need_conn(stream: u32, what: &str) -> Result<(), H2Error> {
    if stream != 0 {
        return Err(H2Error::conn(ErrorCode::Protocol, format!("{what} on stream {stream}, not 0")));
    }
    Ok(())
}

fn size_error(what: &str, len: usize) -> H2Error {
    H2Error::conn(ErrorCode::FrameSize, format!("{what} frame of {len} bytes"))
}

/// Strips padding (§6.1): the pad length byte and that many bytes at the end.
fn unpad(flags: u8, payload: &[u8]) -> Result<&[u8], H2Error> {
    if flags & FLAG_PADDED == 0 {
        return Ok(payload);
    }
    let Some((&pad, rest)) = payload.split_first() else {
        return Err(H2Error::conn(ErrorCode::FrameSize, "padded frame without a pad length"));
    };
    let keep = rest.len().checked_sub(usize::from(pad));
    keep.and_then(|k| rest.get(..k))
        .ok_or_else(|| H2Error::conn(ErrorCode::Protocol, "padding longer than the frame"))
}

fn parse(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Result<Frame<'_>, H2Error> {
    let len = payload.len();
    Ok(match kind {
        TYPE_DATA => {
            need_stream(stream, "DATA")?;
            let data = unpad(flags, payload)?;
            Frame::Data { stream, end_stream: flags & FLAG_END_STREAM != 0, data, flow_len: len as u32 }
        }
        TYPE_HEADERS => {
            need_stream(stream, "HEADERS")?;
            let mut block = unpad(flags, payload)?;
            if flags & FLAG_PRIORITY != 0 {
                let depends = u32_at(block, 0).ok_or_else(|| size_error("HEADERS", len))? & 0x7fff_ffff;
                if depends == stream {
                    return Err(H2Error::stream(stream, ErrorCode::Protocol, "a stream depends on itself"));
                }
                block = block.get(5..).ok_or_else(|| size_error("HEADERS", len))?;
            }
            Frame::Headers {
                stream,
                end_stream: flags & FLAG_END_STREAM != 0,
                end_headers: flags & FLAG_END_HEADERS != 0,
                block,
            }
        }
        TYPE_PRIORITY => {
            need_stream(stream, "PRIORITY")?;
            if len != 5 {
                return Err(H2Error::stream(
                    stream,
                    ErrorCode::FrameSize,
                    format!("PRIORITY frame of {len} bytes"),
                ));
            }
            let depends_on = u32_at(payload, 0).unwrap_or(0) & 0x7fff_ffff;
            if depends_on == stream {
                return Err(H2Error::stream(stream, ErrorCode::Protocol, "a stream depends on itself"));
            }
            Frame::Priority { stream, depends_on }
        }
        TYPE_RST_STREAM => {
            need_stream(stream, "RST_STREAM")?;
            if len != 4 {
                return Err(size_error("RST_STREAM", len));
            }
            Frame::RstStream { stream, code: u32_at(payload, 0).unwrap_or(0) }
        }
        TYPE_SETTINGS => {
            need_conn(stream, "SETTINGS")?;
            let ack = flags & FLAG_ACK != 0;
            if !len.is_multiple_of(6) || (ack && len != 0) {
                return Err(size_error("SETTINGS", len));
            }
            let params = payload
                .chunks_exact(6)
                .map(|p| {
                    (p.first_chunk::<2>().map_or(0, |id| u16::from_be_bytes(*id)), u32_at(p, 2).unwrap_or(0))
                })
                .collect();
            Frame::Settings { ack, params }
        }
        TYPE_PUSH_PROMISE => Frame::PushPromise { stream },
        TYPE_PING => {
            need_conn(stream, "PING")?;
            let data: [u8; 8] = payload.try_into().map_err(|_| size_error("PING", len))?;
            Frame::Ping { ack: flags & FLAG_ACK != 0, data }
        }
        TYPE_GOAWAY => {
            need_conn(stream, "GOAWAY")?;
            if len < 8 {
                return Err(size_error("GOAWAY", len));
            }
            let last_stream = u32_at(payload, 0).unwrap_or(0) & 0x7fff_ffff;
            Frame::GoAway { last_stream, code: u32_at(payload, 4).unwrap_or(0) }
        }
        TYPE_WINDOW_UPDATE => {
            if len != 4 {
                return Err(size_error("WINDOW_UPDATE", len));
            }
            Frame::WindowUpdate { stream, increment: u32_at(payload, 0).unwrap_or(0) & 0x7fff_ffff }
        }
        TYPE_CONTINUATION => {
            need_stream(stream, "CONTINUATION")?;
            Frame::Continuation { stream, end_headers: flags & FLAG_END_HEADERS != 0, block: payload }
        }
        kind => Frame::Unknown { kind, stream },
    })
}

/// A frame header for a payload of `len` bytes (`len` < 2^24).
pub fn header(len: usize, kind: u8, flags: u8, stream: u32) -> [u8; HEADER_LEN] {
    let l = (len as u32).to_be_bytes();
    let s = (stream & 0x7fff_ffff).to_be_bytes();
    [l[1], l[2], l[3], kind, flags, s[0], s[1], s[2], s[3]]
}

/// A whole frame in one vector.
pub fn encode(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&header(payload.len(), kind, flags, stream));
    out.extend_from_slice(payload);
    out
}

pub fn encode_settings(params: &[(u16, u32)]) -> Vec<u8> {
    let payload: Vec<u8> =
        params.iter().flat_map(|&(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes())).collect();
    encode(TYPE_SETTINGS, 0, 0, &payload)
}

pub fn encode_settings_ack() -> Vec<u8> {
    encode(TYPE_SETTINGS, FLAG_ACK, 0, &[])
}

pub fn encode_ping_ack(data: [u8; 8]) -> Vec<u8> {
    encode(TYPE_PING, FLAG_ACK, 0, &data)
}

pub fn encode_goaway(last_stream: u32, code: ErrorCode, debug: &str) -> Vec<u8> {
    let mut payload = (last_stream & 0x7fff_ffff).to_be_bytes().to_vec();
    payload.extend_from_slice(&(code as u32).to_be_bytes());
    payload.extend_from_slice(debug.as_bytes());
    encode(TYPE_GOAWAY, 0, 0, &payload)
}

pub fn encode_rst_stream(stream: u32, code: ErrorCode) -> Vec<u8> {
    encode(TYPE_RST_STREAM, 0, stream, &(code as u32).to_be_bytes())
}

pub fn encode_window_update(stream: u32, increment: u32) -> Vec<u8> {
    encode(TYPE_WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

/// A header block as HEADERS plus CONTINUATION frames of at most `max_frame` bytes.
pub fn encode_headers(stream: u32, block: &[u8], end_stream: bool, max_frame: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(block.len() + HEADER_LEN * 2);
    let mut pieces = block.chunks(max_frame.max(1)).peekable();
    let mut first = true;
    if block.is_empty() {
        let flags = FLAG_END_HEADERS | if end_stream { FLAG_END_STREAM } else { 0 };
        return encode(TYPE_HEADERS, flags, stream, &[]);
    }
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        let mut flags = if last { FLAG_END_HEADERS } else { 0 };
        let kind = if first { TYPE_HEADERS } else { TYPE_CONTINUATION };
        if first && end_stream {
            flags |= FLAG_END_STREAM;
        }
        out.extend_from_slice(&header(piece.len(), kind, flags, stream));
        out.extend_from_slice(piece);
        first = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(bytes: &[u8]) -> Result<Frame<'_>, H2Error> {
        match decode(bytes, DEFAULT_MAX_FRAME)? {
            Decoded::Complete { frame, consumed } => {
                assert_eq!(consumed, bytes.len());
                Ok(frame)
            }
            Decoded::Partial => panic!("partial: {bytes:?}"),
        }
    }

    #[test]
    fn every_type_round_trips_or_reads() {
        let cases: Vec<(Vec<u8>, Frame)> = vec![
            (
                encode(TYPE_DATA, FLAG_END_STREAM, 1, b"hi"),
                Frame::Data { stream: 1, end_stream: true, data: b"hi", flow_len: 2 },
            ),
            (
                encode(TYPE_DATA, FLAG_PADDED, 3, b"\x02hi\0\0"),
                Frame::Data { stream: 3, end_stream: false, data: b"hi", flow_len: 5 },
            ),
            (
                encode_headers(5, b"abc", true, 16384),
                Frame::Headers { stream: 5, end_stream: true, end_headers: true, block: b"abc" },
            ),
            (
                encode(TYPE_HEADERS, FLAG_PRIORITY, 7, b"\0\0\0\x01\x10xy"),
                Frame::Headers { stream: 7, end_stream: false, end_headers: false, block: b"xy" },
            ),
            (encode(TYPE_PRIORITY, 0, 9, b"\0\0\0\x01\x10"), Frame::Priority { stream: 9, depends_on: 1 }),
            (encode_rst_stream(1, ErrorCode::Cancel), Frame::RstStream { stream: 1, code: 8 }),
            (
                encode_settings(&[(3, 100), (4, 65535)]),
                Frame::Settings { ack: false, params: vec![(3, 100), (4, 65535)] },
            ),
            (encode_settings_ack(), Frame::Settings { ack: true, params: vec![] }),
            (encode(TYPE_PUSH_PROMISE, 0, 1, b"\0\0\0\x02"), Frame::PushPromise { stream: 1 }),
            (encode_ping_ack(*b"12345678"), Frame::Ping { ack: true, data: *b"12345678" }),
            (encode_goaway(7, ErrorCode::NoError, "bye"), Frame::GoAway { last_stream: 7, code: 0 }),
            (encode_window_update(0, 1000), Frame::WindowUpdate { stream: 0, increment: 1000 }),
            (
                encode(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, b"z"),
                Frame::Continuation { stream: 1, end_headers: true, block: b"z" },
            ),
            (encode(0x42, 0, 0, b"whatever"), Frame::Unknown { kind: 0x42, stream: 0 }),
        ];
        for (bytes, want) in cases {
            assert_eq!(one(&bytes).unwrap(), want, "{bytes:?}");
        }
    }

    #[test]
    fn malformed_frames_are_clear_errors() {
        let cases: Vec<(Vec<u8>, ErrorCode, bool)> = vec![
            (encode(TYPE_DATA, 0, 0, b"x"), ErrorCode::Protocol, true),
            (encode(TYPE_DATA, FLAG_PADDED, 1, b"\x05ab"), ErrorCode::Protocol, true),
            (encode(TYPE_DATA, FLAG_PADDED, 1, b""), ErrorCode::FrameSize, true),
            (encode(TYPE_PRIORITY, 0, 1, b"\0\0\0"), ErrorCode::FrameSize, false),
            (encode(TYPE_PRIORITY, 0, 1, b"\0\0\0\x01\x10"), ErrorCode::Protocol, false),
            (encode(TYPE_RST_STREAM, 0, 1, b"\0\0"), ErrorCode::FrameSize, true),
            (encode(TYPE_SETTINGS, 0, 0, b"\0\x03\0"), ErrorCode::FrameSize, true),
            (encode(TYPE_SETTINGS, FLAG_ACK, 0, b"\0\x03\0\0\0\x01"), ErrorCode::FrameSize, true),
            (encode(TYPE_SETTINGS, 0, 1, b""), ErrorCode::Protocol, true),
            (encode(TYPE_PING, 0, 0, b"1234567"), ErrorCode::FrameSize, true),
            (encode(TYPE_PING, 0, 3, b"12345678"), ErrorCode::Protocol, true),
            (encode(TYPE_GOAWAY, 0, 0, b"1234"), ErrorCode::FrameSize, true),
            (encode(TYPE_WINDOW_UPDATE, 0, 0, b"123"), ErrorCode::FrameSize, true),
            (encode(TYPE_CONTINUATION, 0, 0, b""), ErrorCode::Protocol, true),
        ];
        for (bytes, code, conn) in cases {
            let err = one(&bytes).unwrap_err();
            assert_eq!((err.code, err.stream.is_none()), (code, conn), "{bytes:?}: {err}");
        }
        let big = encode(TYPE_DATA, 0, 1, &vec![0; 20_000]);
        let err = decode(&big, DEFAULT_MAX_FRAME).unwrap_err();
        assert_eq!(err.code, ErrorCode::FrameSize);
        assert!(err.to_string().contains("20000"), "{err}");
        // The limit is checked from the header alone, before the payload arrives.
        assert!(decode(&big[..9], DEFAULT_MAX_FRAME).is_err());
    }

    #[test]
    fn split_independence() {
        let mut stream = encode_settings(&[(1, 4096)]);
        stream.extend(encode_headers(1, &[7u8; 40], false, 16));
        stream.extend(encode(TYPE_DATA, FLAG_PADDED | FLAG_END_STREAM, 1, b"\x01abc\0"));
        stream.extend(encode_ping_ack(*b"abcdefgh"));
        let whole = frames_of(&stream, stream.len());
        assert_eq!(whole.len(), 6);
        for step in 1..12 {
            assert_eq!(frames_of(&stream, step), whole, "fed {step} bytes at a time");
        }
        for cut in 0..stream.len() {
            let first_len = match decode(&stream, DEFAULT_MAX_FRAME).unwrap() {
                Decoded::Complete { consumed, .. } => consumed,
                Decoded::Partial => unreachable!(),
            };
            let prefix = &stream[..cut.min(first_len - 1)];
            assert_eq!(decode(prefix, DEFAULT_MAX_FRAME).unwrap(), Decoded::Partial);
        }
    }

    /// Feeds `bytes` a few at a time into a buffer, decoding whole frames as they complete.
    fn frames_of(bytes: &[u8], step: usize) -> Vec<String> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in bytes.chunks(step) {
            buf.extend_from_slice(piece);
            while let Decoded::Complete { frame, consumed } = decode(&buf, DEFAULT_MAX_FRAME).unwrap() {
                out.push(format!("{frame:?}"));
                buf.drain(..consumed);
            }
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn headers_split_into_continuations() {
        let block: Vec<u8> = (0..50).collect();
        let bytes = encode_headers(3, &block, true, 20);
        let mut at = 0;
        let mut got = Vec::new();
        let mut kinds = Vec::new();
        while at < bytes.len() {
            let Decoded::Complete { frame, consumed } = decode(&bytes[at..], 20).unwrap() else { panic!() };
            match frame {
                Frame::Headers { block, end_stream, end_headers, .. } => {
                    assert!(end_stream && !end_headers);
                    got.extend_from_slice(block);
                    kinds.push("H");
                }
                Frame::Continuation { block, end_headers, .. } => {
                    got.extend_from_slice(block);
                    kinds.push(if end_headers { "C." } else { "C" });
                }
                other => panic!("{other:?}"),
            }
            at += consumed;
        }
        assert_eq!(got, block);
        assert_eq!(kinds, ["H", "C", "C."]);
    }
}
