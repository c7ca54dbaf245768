//! WebSocket frames (RFC 6455 §5) as the tests build and read them: client
//! frames in any length form, masked or not, and a parser of whole frames.

pub const FIN: u8 = 0x80;
pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// A fixed non-zero masking key for frames built outside a `Ws`.
pub const FIXED_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

pub fn opcode_name(op: u8) -> &'static str {
    match op {
        OP_CONTINUATION => "continuation",
        OP_TEXT => "text",
        OP_BINARY => "binary",
        OP_CLOSE => "close",
        OP_PING => "ping",
        OP_PONG => "pong",
        _ => "reserved",
    }
}

/// Which length form a client frame uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Len {
    /// The shortest form (what the RFC requires).
    Minimal,
    /// 126 + 16-bit length.
    Bits16,
    /// 127 + 64-bit length.
    Bits64,
}

/// Encodes one client frame. `first` is the whole first byte (FIN, RSV bits,
/// opcode), so tests can set anything; `mask` None sends the payload unmasked.
pub fn encode(first: u8, payload: &[u8], mask: Option<[u8; 4]>, len: Len) -> Vec<u8> {
    let n = payload.len();
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let form = match len {
        Len::Minimal if n <= 125 => None,
        Len::Minimal if n <= 0xffff => Some(Len::Bits16),
        Len::Minimal => Some(Len::Bits64),
        other => Some(other),
    };
    let mut out = vec![first];
    match form {
        None => out.push(mask_bit | n as u8),
        Some(Len::Bits16) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&u16::try_from(n).expect("payload fits 16 bits").to_be_bytes());
        }
        Some(_) => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked frame ([`FIXED_MASK`]) in the shortest length form.
pub fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
    encode(first, payload, Some(FIXED_MASK), Len::Minimal)
}

/// A masked 64-bit-length header announcing `len` bytes, without the payload.
pub fn header_only_64(first: u8, len: u64, mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&mask);
    out
}

/// A close payload: 2-byte code and reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// One frame as it came over the wire.
#[derive(Debug)]
pub struct Frame {
    /// The whole first byte (FIN, RSV bits, opcode).
    pub first: u8,
    pub opcode: u8,
    pub masked: bool,
    /// 2, 4 or 10 (plus 4 for a mask key): tells the length form used.
    pub header_len: usize,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).unwrap_or_else(|e| panic!("server text frame is not UTF-8 ({e})"))
    }

    /// The close code (None for an empty payload) and reason.
    pub fn close(&self) -> (Option<u16>, String) {
        assert_eq!(self.opcode, OP_CLOSE);
        match self.payload.as_slice() {
            [] => (None, String::new()),
            [_] => panic!("server close frame with a 1-byte payload: {:02x?}", self.payload),
            [hi, lo, reason @ ..] => {
                let reason = std::str::from_utf8(reason)
                    .unwrap_or_else(|e| panic!("server close reason is not UTF-8 ({e}): {reason:02x?}"));
                (Some(u16::from_be_bytes([*hi, *lo])), reason.to_string())
            }
        }
    }

    pub fn describe(&self) -> String {
        match self.opcode {
            OP_CLOSE => format!("close frame {:?}", self.close()),
            OP_TEXT => format!("text frame {:?}", String::from_utf8_lossy(&self.payload)),
            op => format!("{} frame, payload {:02x?}", opcode_name(op), self.payload),
        }
    }
}

/// The next complete frame in `buf`, removed from it (None while incomplete).
pub fn take_frame(buf: &mut Vec<u8>) -> Option<Frame> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let (len, at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().unwrap()), 10),
        126 | 127 => return None,
        n => (n as u64, 2),
    };
    let header_len = at + if masked { 4 } else { 0 };
    let end = (header_len as u64).saturating_add(len);
    if (buf.len() as u64) < end {
        return None;
    }
    let end = end as usize;
    let mut payload = buf[header_len..end].to_vec();
    if masked {
        let key = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        payload.iter_mut().zip(key.iter().cycle()).for_each(|(b, k)| *b ^= k);
    }
    let first = buf[0];
    buf.drain(..end);
    Some(Frame { first, opcode: first & 0x0f, masked, header_len, payload })
}
