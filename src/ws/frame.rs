//! The frame codec (RFC 6455 §5), server side: [`decode`] reads client
//! frames (which must be masked), [`encode_frame`] and friends write server
//! frames (never masked), [`parse_close`] reads a Close payload. Turning
//! frames into messages is `assemble.rs`'s job ([`Assembler`]).
//!
//! Frame layout: `FIN RSV1-3 opcode(4) | MASK len7 | [len16 | len64] |
//! [mask key(4)] | payload`. Every rule that can be checked from one frame is
//! checked by [`decode`]; rules that span frames (fragmentation, UTF-8 of a
//! whole text message, message size) and the Close payload are checked by
//! [`Assembler`].
//!
//! [`Assembler`]: super::Assembler

use std::fmt;

/// Largest client frame payload accepted by default; larger is 1009.
pub const MAX_FRAME_PAYLOAD: usize = 64 * 1024;

/// Largest control frame payload (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Close code: normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code: the peer broke the protocol.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code: a payload was inconsistent with its type (bad UTF-8).
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code: a frame or message exceeded our limit.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// Bits of the first header byte.
const FIN_BIT: u8 = 0x80;
const RSV_BITS: u8 = 0x70;
const OPCODE_BITS: u8 = 0x0f;
/// Bits of the second header byte.
pub(super) const MASK_BIT: u8 = 0x80;
const LEN7_BITS: u8 = 0x7f;
/// `len7` values announcing a 16-bit or 64-bit extended length.
const LEN7_16: u8 = 126;
const LEN7_64: u8 = 127;
/// Largest length that fits the 7-bit form.
const MAX_LEN7: usize = 125;
/// Longest server header: 2 bytes + 64-bit length, no mask key.
const MAX_SERVER_HEADER: usize = 10;
/// A close reason must leave room for the 2-byte code in 125 bytes.
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// A frame's opcode; reserved opcodes (3-7, 0xB-0xF) have no variant
/// because they are refused on decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    /// The opcode for the low 4 bits of a header byte, `None` if reserved.
    pub fn from_bits(bits: u8) -> Option<Opcode> {
        match bits {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Control frames (Close, Ping, Pong) may not be fragmented and carry at
    /// most 125 bytes (§5.5).
    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// One frame. `payload` is always unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: Opcode,
    pub payload: Vec<u8>,
}

/// Outcome of [`decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame; it was encoded by the first `consumed` bytes of the
    /// input (anything after them belongs to the next frame).
    Frame { frame: Frame, consumed: usize },
    /// Valid so far but incomplete: call again with more bytes.
    Partial,
}

/// Why the connection must close, with the close code to send.
///
/// Codes: 1002 protocol error, 1007 invalid UTF-8, 1009 too big. `reason` is
/// one short line meant for the Close frame ([`close_frame`] truncates it to
/// fit anyway) and for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsError {
    pub code: u16,
    pub reason: String,
}

impl WsError {
    /// A 1002 protocol error.
    pub fn protocol(reason: &str) -> WsError {
        WsError { code: CLOSE_PROTOCOL_ERROR, reason: reason.to_string() }
    }

    /// A 1007 invalid-payload error.
    pub fn invalid_utf8(reason: &str) -> WsError {
        WsError { code: CLOSE_INVALID_DATA, reason: reason.to_string() }
    }

    /// A 1009 error for `what` (a frame or a message) over `limit` bytes.
    pub fn too_big(what: &str, limit: usize) -> WsError {
        WsError { code: CLOSE_TOO_BIG, reason: format!("{what} exceeds the limit of {limit} bytes") }
    }

    /// The Close frame to send for this error.
    pub fn close_frame(&self) -> Vec<u8> {
        close_frame(self.code, &self.reason)
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket close {}: {}", self.code, self.reason)
    }
}

impl std::error::Error for WsError {}

/// A parsed client frame header.
///
/// Invariant: `payload_len <= max_payload` of the [`decode`] call that
/// produced it, and the header occupies exactly `len` bytes of the buffer.
struct Header {
    fin: bool,
    opcode: Opcode,
    payload_len: usize,
    mask: [u8; 4],
    len: usize,
}

/// Decodes one client frame from the front of `buf`.
///
/// Errors, each reported as soon as the bytes that show it have arrived:
/// 1002 for reserved bits, a reserved opcode, an unmasked frame, a fragmented
/// or over-125-byte control frame, or a 64-bit length with its top bit set;
/// 1009 for a payload over `max_payload`, detected from the header alone so
/// an oversized payload is never buffered. Non-minimal length encodings are
/// accepted (the RFC forbids them, but they are harmless and common peers
/// are lenient too).
///
/// Restartable: on `Partial` nothing is kept; call again with a longer
/// buffer. The payload is copied (and unmasked) only once it is complete.
pub fn decode(buf: &[u8], max_payload: usize) -> Result<Decoded, WsError> {
    let Some(header) = parse_header(buf, max_payload)? else {
        return Ok(Decoded::Partial);
    };
    // Cannot overflow while max_payload is realistic, but an error beats a wrap.
    let end =
        header.len.checked_add(header.payload_len).ok_or_else(|| WsError::too_big("frame", max_payload))?;
    let Some(masked) = buf.get(header.len..end) else {
        return Ok(Decoded::Partial);
    };
    let frame = Frame { fin: header.fin, opcode: header.opcode, payload: unmask(masked, header.mask) };
    Ok(Decoded::Frame { frame, consumed: end })
}

/// Parses the header at the front of `buf`; `None` if it is incomplete.
fn parse_header(buf: &[u8], max_payload: usize) -> Result<Option<Header>, WsError> {
    let (Some(&first), Some(&second)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let (fin, opcode) = parse_first_byte(first)?;
    if second & MASK_BIT == 0 {
        return Err(WsError::protocol("client frame is not masked"));
    }
    let len7 = second & LEN7_BITS;
    if opcode.is_control() {
        check_control(fin, usize::from(len7))?;
    }
    let Some((payload_len, len_end)) = parse_length(buf, len7)? else {
        return Ok(None);
    };
    let payload_len = usize::try_from(payload_len)
        .ok()
        .filter(|&len| len <= max_payload)
        .ok_or_else(|| WsError::too_big("frame", max_payload))?;
    let Some(mask) = read_array::<4>(buf, len_end) else {
        return Ok(None);
    };
    Ok(Some(Header { fin, opcode, payload_len, mask, len: len_end + mask.len() }))
}

/// FIN and opcode from the first header byte; reserved bits are refused
/// because no extension that would define them is ever negotiated.
fn parse_first_byte(byte: u8) -> Result<(bool, Opcode), WsError> {
    if byte & RSV_BITS != 0 {
        return Err(WsError::protocol("reserved bits set without a negotiated extension"));
    }
    let opcode = Opcode::from_bits(byte & OPCODE_BITS).ok_or_else(|| WsError::protocol("reserved opcode"))?;
    Ok((byte & FIN_BIT != 0, opcode))
}

/// Control frames must be final and short (§5.5). `len` may be a `len7`
/// marker (126, 127), which is over 125 and so rightly refused.
pub(super) fn check_control(fin: bool, len: usize) -> Result<(), WsError> {
    if !fin {
        return Err(WsError::protocol("fragmented control frame"));
    }
    if len > MAX_CONTROL_PAYLOAD {
        return Err(WsError::protocol("control frame payload over 125 bytes"));
    }
    Ok(())
}

/// The payload length and the offset just past it, from `len7` and the
/// extended length bytes at offset 2; `None` if those have not all arrived.
fn parse_length(buf: &[u8], len7: u8) -> Result<Option<(u64, usize)>, WsError> {
    match len7 {
        LEN7_16 => Ok(read_array::<2>(buf, 2).map(|bytes| (u64::from(u16::from_be_bytes(bytes)), 4))),
        LEN7_64 => {
            let Some(bytes) = read_array::<8>(buf, 2) else {
                return Ok(None);
            };
            let len = u64::from_be_bytes(bytes);
            // §5.2: "the most significant bit MUST be 0".
            if len >> 63 != 0 {
                return Err(WsError::protocol("64-bit payload length with the top bit set"));
            }
            Ok(Some((len, 10)))
        }
        short => Ok(Some((u64::from(short), 2))),
    }
}

/// `N` bytes of `buf` starting at `at`, or `None` if they are not all there.
fn read_array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// XORs `data` with the repeating 4-byte mask (§5.3); its own inverse.
fn unmask(data: &[u8], mask: [u8; 4]) -> Vec<u8> {
    data.iter().zip(mask.iter().cycle()).map(|(byte, key)| byte ^ key).collect()
}

/// Encodes a server frame: FIN set, unmasked, shortest length form.
///
/// Invariant: the result is always a valid frame. A control payload over 125
/// bytes would not be, so it is cut to 125 (callers should not send one:
/// pongs echo pings, which are at most 125, and [`close_frame`] trims
/// reasons at a character boundary).
pub fn encode_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let payload = match payload.get(..MAX_CONTROL_PAYLOAD) {
        Some(short) if opcode.is_control() => short,
        _ => payload,
    };
    let mut out = Vec::with_capacity(MAX_SERVER_HEADER + payload.len());
    push_header(&mut out, opcode, payload.len());
    out.extend_from_slice(payload);
    out
}

/// The header alone of a final, unmasked text frame of `len` bytes, so a
/// payload shared between many connections can be written after it without
/// copying. `len` must be the payload's real length (any slice's length is
/// under 2^63, as the 64-bit form requires).
pub fn text_header(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_SERVER_HEADER);
    push_header(&mut out, Opcode::Text, len);
    out
}

/// Appends a final, unmasked header for `len` payload bytes, using the
/// shortest of the 7/16/64-bit length forms.
fn push_header(out: &mut Vec<u8>, opcode: Opcode, len: usize) {
    out.push(FIN_BIT | opcode.bits());
    match (u8::try_from(len), u16::try_from(len)) {
        (Ok(short), _) if usize::from(short) <= MAX_LEN7 => out.push(short),
        (_, Ok(medium)) => {
            out.push(LEN7_16);
            out.extend_from_slice(&medium.to_be_bytes());
        }
        _ => {
            out.push(LEN7_64);
            // usize is at most 64 bits on every target Rust supports.
            out.extend_from_slice(&u64::try_from(len).unwrap_or(u64::MAX >> 1).to_be_bytes());
        }
    }
}

/// A Close frame with `code` and `reason`, the reason cut to fit the 125-byte
/// control limit at a character boundary so it stays valid UTF-8. `code`
/// should be one allowed on the wire (see [`is_valid_close_code`]).
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let reason = truncate_at_char(reason, MAX_CLOSE_REASON);
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    encode_frame(Opcode::Close, &payload)
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn truncate_at_char(text: &str, max: usize) -> &str {
    let end = (0..=max.min(text.len())).rev().find(|&at| text.is_char_boundary(at)).unwrap_or(0);
    text.get(..end).unwrap_or("")
}

/// True for the close codes an endpoint may put on the wire (§7.4): the
/// defined 1000-1003 and 1007-1014, and the registered/private 3000-4999.
/// 1004-1006 and 1015 are reserved or local-only; 1016-2999 are undefined.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Code and reason from a Close payload (§5.5.1): empty, or a 2-byte code
/// followed by a UTF-8 reason.
pub fn parse_close(payload: &[u8]) -> Result<(Option<u16>, String), WsError> {
    match payload {
        [] => Ok((None, String::new())),
        [_] => Err(WsError::protocol("close payload of 1 byte")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_valid_close_code(code) {
                return Err(WsError::protocol("close code not allowed on the wire"));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| WsError::invalid_utf8("close reason is not UTF-8"))?;
            Ok((Some(code), reason.to_string()))
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ws::{Assembler, Event};

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Turns an unmasked frame (as a server would send it) into the same
    /// frame as a client would send it, masked with `key`.
    fn mask(frame: &[u8], key: [u8; 4]) -> Vec<u8> {
        let header_len = match frame[1] & LEN7_BITS {
            LEN7_16 => 4,
            LEN7_64 => 10,
            _ => 2,
        };
        let mut out = frame[..header_len].to_vec();
        out[1] |= MASK_BIT;
        out.extend_from_slice(&key);
        out.extend(unmask(&frame[header_len..], key));
        out
    }

    fn frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Frame {
        Frame { fin, opcode, payload: payload.to_vec() }
    }

    /// Decodes a complete frame, checking it uses the whole buffer.
    fn decode_whole(buf: &[u8], max: usize) -> Result<Frame, WsError> {
        match decode(buf, max)? {
            Decoded::Frame { frame, consumed } => {
                assert_eq!(consumed, buf.len());
                Ok(frame)
            }
            Decoded::Partial => panic!("partial: {buf:02x?}"),
        }
    }

    fn code_of<T: fmt::Debug>(result: Result<T, WsError>) -> u16 {
        result.unwrap_err().code
    }

    /// Every valid frame below, with what it decodes to.
    fn valid_frames() -> Vec<(&'static str, Vec<u8>, Frame)> {
        let hello = b"Hello".to_vec();
        vec![
            (
                "rfc masked text Hello",
                vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
                frame(true, Opcode::Text, b"Hello"),
            ),
            (
                "rfc fragment Hel",
                mask(&[0x01, 0x03, 0x48, 0x65, 0x6c], KEY),
                frame(false, Opcode::Text, b"Hel"),
            ),
            (
                "rfc fragment lo",
                mask(&[0x80, 0x02, 0x6c, 0x6f], KEY),
                frame(true, Opcode::Continuation, b"lo"),
            ),
            (
                "rfc ping",
                mask(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], KEY),
                frame(true, Opcode::Ping, &hello),
            ),
            (
                "rfc masked pong",
                vec![0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
                frame(true, Opcode::Pong, b"Hello"),
            ),
            (
                "rfc 256 bytes",
                mask(&encode_frame(Opcode::Binary, &[7; 256]), KEY),
                frame(true, Opcode::Binary, &[7; 256]),
            ),
            (
                "rfc 64 KiB",
                mask(&encode_frame(Opcode::Binary, &[9; 65536]), KEY),
                frame(true, Opcode::Binary, &[9; 65536]),
            ),
            ("empty close", vec![0x88, 0x80, 1, 2, 3, 4], frame(true, Opcode::Close, b"")),
            (
                "16-bit form of 5",
                mask(&[0x81, 126, 0, 5, b'H', b'e', b'l', b'l', b'o'], KEY),
                frame(true, Opcode::Text, &hello),
            ),
            (
                "64-bit form of 5",
                mask(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5, b'H', b'e', b'l', b'l', b'o'], KEY),
                frame(true, Opcode::Binary, &hello),
            ),
            (
                "125-byte ping",
                mask(&encode_frame(Opcode::Ping, &[1; 125]), KEY),
                frame(true, Opcode::Ping, &[1; 125]),
            ),
        ]
    }

    #[test]
    fn rfc_examples_decode() {
        for (name, bytes, expected) in valid_frames() {
            assert_eq!(decode_whole(&bytes, MAX_FRAME_PAYLOAD), Ok(expected), "{name}");
        }
    }

    #[test]
    fn rfc_examples_encode() {
        let cases: &[(Opcode, &[u8], &[u8])] = &[
            (Opcode::Text, b"Hello", &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]),
            (Opcode::Ping, b"Hello", &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]),
            (Opcode::Pong, b"", &[0x8a, 0x00]),
        ];
        for &(opcode, payload, expected) in cases {
            assert_eq!(encode_frame(opcode, payload), expected, "{opcode:?}");
        }
        let lengths: &[(usize, &[u8])] = &[
            (125, &[0x82, 125]),
            (126, &[0x82, 0x7e, 0x00, 0x7e]),
            (256, &[0x82, 0x7e, 0x01, 0x00]),
            (65535, &[0x82, 0x7e, 0xff, 0xff]),
            (65536, &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]),
        ];
        for &(len, header) in lengths {
            let encoded = encode_frame(Opcode::Binary, &vec![3; len]);
            assert_eq!(&encoded[..header.len()], header, "{len}");
            assert_eq!(encoded.len(), header.len() + len, "{len}");
        }
    }

    #[test]
    fn each_valid_frame_decodes_one_byte_at_a_time() {
        for (name, bytes, expected) in valid_frames() {
            for end in 0..bytes.len() {
                assert_eq!(decode(&bytes[..end], MAX_FRAME_PAYLOAD), Ok(Decoded::Partial), "{name} at {end}");
            }
            let mut stream = bytes.clone();
            stream.extend_from_slice(&[0x81, 0x80]);
            let whole = Decoded::Frame { frame: expected, consumed: bytes.len() };
            assert_eq!(decode(&stream, MAX_FRAME_PAYLOAD), Ok(whole), "{name} with trailing bytes");
        }
    }

    #[test]
    fn frame_errors_have_their_codes() {
        let cases: &[(&str, &[u8], usize, u16)] = &[
            ("unmasked text", &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f], MAX_FRAME_PAYLOAD, 1002),
            ("unmasked empty", &[0x82, 0x00], MAX_FRAME_PAYLOAD, 1002),
            ("rsv1", &[0xc1, 0x80, 0, 0, 0, 0], MAX_FRAME_PAYLOAD, 1002),
            ("rsv2", &[0xa1, 0x80, 0, 0, 0, 0], MAX_FRAME_PAYLOAD, 1002),
            ("rsv3", &[0x91, 0x80, 0, 0, 0, 0], MAX_FRAME_PAYLOAD, 1002),
            ("opcode 3", &[0x83, 0x80, 0, 0, 0, 0], MAX_FRAME_PAYLOAD, 1002),
            ("opcode 7", &[0x87, 0x80, 0, 0, 0, 0], MAX_FRAME_PAYLOAD, 1002),
            ("opcode 0xb", &[0x8b, 0x80, 0, 0, 0, 0], MAX_FRAME_PAYLOAD, 1002),
            ("opcode 0xf", &[0x8f, 0x80, 0, 0, 0, 0], MAX_FRAME_PAYLOAD, 1002),
            ("fragmented ping", &[0x09, 0x80, 0, 0, 0, 0], MAX_FRAME_PAYLOAD, 1002),
            ("fragmented close", &[0x08, 0x80, 0, 0, 0, 0], MAX_FRAME_PAYLOAD, 1002),
            ("126-byte ping", &[0x89, 0xfe, 0x00, 0x7e], MAX_FRAME_PAYLOAD, 1002),
            ("ping in 64-bit form", &[0x89, 0xff], MAX_FRAME_PAYLOAD, 1002),
            ("64-bit top bit", &[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0], MAX_FRAME_PAYLOAD, 1002),
            (
                "64-bit all ones",
                &[0x82, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                MAX_FRAME_PAYLOAD,
                1002,
            ),
            ("over max, 7-bit", &[0x82, 0x86], 5, 1009),
            ("over max, 16-bit header only", &[0x82, 0xfe, 0x01, 0x00], 255, 1009),
            ("64 KiB + 1", &[0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 1], MAX_FRAME_PAYLOAD, 1009),
            ("1 TiB", &[0x82, 0xff, 0, 0, 1, 0, 0, 0, 0, 0], MAX_FRAME_PAYLOAD, 1009),
        ];
        for &(name, bytes, max, code) in cases {
            assert_eq!(code_of(decode(bytes, max)), code, "{name}");
            // Earlier prefixes are never a different error: Partial or the same one.
            for end in 0..bytes.len() {
                match decode(&bytes[..end], max) {
                    Ok(Decoded::Partial) => {}
                    Err(error) => assert_eq!(error.code, code, "{name} at {end}"),
                    Ok(other) => panic!("{name} at {end}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn payload_at_the_limit_is_accepted() {
        let bytes = mask(&encode_frame(Opcode::Binary, &[1; 100]), KEY);
        assert_eq!(decode_whole(&bytes, 100).unwrap().payload.len(), 100);
        assert_eq!(code_of(decode(&bytes, 99)), 1009);
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let opcodes = [Opcode::Text, Opcode::Binary, Opcode::Continuation];
        let lengths = [0, 1, 3, 4, 5, 125, 126, 127, 255, 256, 65535, 65536];
        let keys = [[0, 0, 0, 0], KEY, [0xff, 0x00, 0xa5, 0x5a]];
        for opcode in opcodes {
            for len in lengths {
                let payload: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
                for key in keys {
                    let bytes = mask(&encode_frame(opcode, &payload), key);
                    let expected = frame(true, opcode, &payload);
                    assert_eq!(decode_whole(&bytes, MAX_FRAME_PAYLOAD), Ok(expected), "{opcode:?} {len}");
                }
            }
        }
        for opcode in [Opcode::Ping, Opcode::Pong, Opcode::Close] {
            for len in [0, 2, 125] {
                let bytes = mask(&encode_frame(opcode, &vec![b'x'; len]), KEY);
                assert_eq!(
                    decode_whole(&bytes, MAX_FRAME_PAYLOAD),
                    Ok(frame(true, opcode, &vec![b'x'; len]))
                );
            }
        }
    }

    #[test]
    fn oversized_control_payload_is_cut_to_125() {
        let encoded = encode_frame(Opcode::Ping, &[1; 200]);
        assert_eq!(encoded.len(), 2 + 125);
        assert_eq!(encoded[1], 125);
    }

    #[test]
    fn text_header_matches_encode_frame() {
        for len in [0, 5, 125, 126, 65535, 65536, 70000] {
            let payload = vec![b'a'; len];
            let mut joined = text_header(len);
            joined.extend_from_slice(&payload);
            assert_eq!(joined, encode_frame(Opcode::Text, &payload), "{len}");
        }
    }

    #[test]
    fn close_frames() {
        let cases: &[(u16, &str, &[u8])] = &[
            (1000, "", &[0x88, 0x02, 0x03, 0xe8]),
            (1009, "big", &[0x88, 0x05, 0x03, 0xf1, b'b', b'i', b'g']),
            (4000, "ok", &[0x88, 0x04, 0x0f, 0xa0, b'o', b'k']),
        ];
        for &(code, reason, expected) in cases {
            assert_eq!(close_frame(code, reason), expected, "{code} {reason}");
        }
    }

    #[test]
    fn close_reason_is_truncated_at_a_char_boundary() {
        let cases: &[(&str, usize)] = &[
            (&"a".repeat(123), 123),
            (&"a".repeat(124), 123),
            (&"é".repeat(100), 122), // 2-byte chars: 61 fit
            (&"€".repeat(100), 123), // 3-byte chars: 41 fit exactly
            (&"😀".repeat(40), 120), // 4-byte chars: 30 fit
        ];
        for &(reason, kept) in cases {
            let encoded = close_frame(1000, reason);
            assert_eq!(encoded.len(), 2 + 2 + kept, "{reason}");
            let decoded = decode_whole(&mask(&encoded, KEY), MAX_FRAME_PAYLOAD).unwrap();
            let event = Assembler::new(1024).push(decoded).unwrap();
            let expected = Event::Close { code: Some(1000), reason: reason[..kept].to_string() };
            assert_eq!(event, Some(expected));
        }
    }

    #[test]
    fn error_close_frame_carries_the_code() {
        let error = WsError::too_big("message", 10);
        let bytes = error.close_frame();
        assert_eq!(&bytes[..4], &[0x88, bytes.len() as u8 - 2, 0x03, 0xf1]);
        assert_eq!(error.to_string(), "websocket close 1009: message exceeds the limit of 10 bytes");
    }

    #[test]
    fn close_payloads() {
        let valid: [u16; 16] =
            [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999];
        for code in valid {
            let payload = [&code.to_be_bytes()[..], b"bye"].concat();
            assert_eq!(parse_close(&payload), Ok((Some(code), "bye".to_string())), "{code}");
        }
        let invalid: [u16; 11] = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535];
        for code in invalid {
            assert_eq!(code_of(parse_close(&code.to_be_bytes())), 1002, "{code}");
        }
        assert_eq!(parse_close(&[]), Ok((None, String::new())));
        assert_eq!(code_of(parse_close(&[0x03])), 1002);
        assert_eq!(code_of(parse_close(&[0x03, 0xe8, 0xff])), 1007);
        assert_eq!(code_of(parse_close(&[0x03, 0xe8, 0xc3])), 1007);
    }

    #[test]
    fn opcode_bits_round_trip() {
        for bits in 0..16u8 {
            match Opcode::from_bits(bits) {
                Some(opcode) => assert_eq!(opcode.bits(), bits),
                None => assert!(matches!(bits, 3..=7 | 0xb..=0xf), "{bits}"),
            }
        }
    }
}
