//! `halley::ws::decode` and `halley::ws::Assembler` on arbitrary bytes, and
//! a masked-frame encode → decode round trip built from the input.
//!
//! Checks, besides "no panic":
//! - one frame at the front of the input: `Frame { consumed }` has the
//!   header (6, 8 or 14 bytes, mask included) plus the payload as
//!   `consumed <= len`; the payload is within the limit; a control frame is
//!   final and at most 125 bytes; decoding exactly `data[..consumed]` gives
//!   the same and one byte less is Partial; feeding the bytes as successive
//!   reads gives Partial until the first non-Partial, which equals the
//!   whole-buffer result;
//! - every frame decoded from the input in sequence is fed to
//!   `Assembler::new(65536)` (and to one with a small limit derived from the
//!   input), and each outcome (event or close code) must
//!   equal that of a small reference model of RFC 6455 §5.4/§5.5/§8.1 written
//!   here (reassembly, interleaved control frames, UTF-8, size limit, Close
//!   payloads); every error's `close_frame()` is a valid Close frame that
//!   reads back with the error's code;
//! - round trip: a client frame built here from the input (FIN, opcode, mask
//!   key, any of the three length forms, payload) decodes to exactly that
//!   frame, or to the 1002/1009 error the RFC calls for; a server frame from
//!   `encode_frame` (masked here) decodes back too, and `text_header` agrees
//!   with `encode_frame`.
#![no_main]

use halley::ws::{
    decode, encode_frame, text_header, Assembler, Decoded, Event, Frame, Opcode, WsError, MAX_FRAME_PAYLOAD,
};
use halley_fuzz::{check_exact_length, check_incremental, feed_points, Rng};
use libfuzzer_sys::fuzz_target;

const MAX_MESSAGE: usize = 65536;
const MAX_FRAMES: usize = 64;

fuzz_target!(|data: &[u8]| {
    check_first_frame(data);
    check_stream(data, MAX_MESSAGE);
    // A small message limit too, so the 1009 path is reachable.
    check_stream(data, Rng::new(data).below(256));
    round_trip(data);
});

fn check_first_frame(data: &[u8]) {
    let parse = |buf: &[u8]| decode(buf, MAX_FRAME_PAYLOAD);
    let is_partial = |r: &Result<Decoded, WsError>| matches!(r, Ok(Decoded::Partial));
    let full = parse(data);
    check_incremental(data, &feed_points(data, 8), &full, parse, is_partial);
    match &full {
        Ok(Decoded::Frame { frame, consumed }) => {
            check_exact_length(data, *consumed, &full, parse, is_partial);
            check_frame(frame);
            let header = consumed - frame.payload.len();
            assert!(matches!(header, 6 | 8 | 14), "header of {header} bytes");
        }
        Ok(Decoded::Partial) => {}
        Err(err) => {
            assert!(matches!(err.code, 1002 | 1009), "decode error with code {}", err.code);
            check_error(err);
        }
    }
}

fn check_frame(frame: &Frame) {
    assert!(frame.payload.len() <= MAX_FRAME_PAYLOAD);
    if frame.opcode.is_control() {
        assert!(frame.fin, "fragmented control frame decoded");
        assert!(frame.payload.len() <= 125, "control frame of {} bytes decoded", frame.payload.len());
    }
}

/// Decodes frames one after another and feeds them to the assembler and to
/// the reference model side by side.
fn check_stream(data: &[u8], max_message: usize) {
    let mut assembler = Assembler::new(max_message);
    let mut model = Model { max_message, open: None };
    let mut rest = data;
    for _ in 0..MAX_FRAMES {
        let Ok(Decoded::Frame { frame, consumed }) = decode(rest, MAX_FRAME_PAYLOAD) else {
            return;
        };
        rest = &rest[consumed..];
        let want = model.push(&frame);
        let got = assembler.push(frame.clone());
        if let Err(err) = &got {
            check_error(err);
        }
        let got = got.map_err(|e| e.code);
        assert_eq!(got, want, "assembler vs model for {frame:?}");
        if got.is_err() {
            return;
        }
    }
}

/// An error's Close frame (what the server sends before closing) is a valid
/// final Close frame carrying the error's code.
fn check_error(err: &WsError) {
    assert!(!err.to_string().is_empty());
    let sent = err.close_frame();
    assert!(sent.len() >= 4 && sent.len() <= 2 + 125, "close frame of {} bytes", sent.len());
    let mut client = sent[..2].to_vec();
    client[1] |= 0x80;
    client.extend_from_slice(&[0, 0, 0, 0]);
    client.extend_from_slice(&sent[2..]);
    let Ok(Decoded::Frame { frame, consumed }) = decode(&client, MAX_FRAME_PAYLOAD) else {
        panic!("the close frame for {err:?} does not decode: {sent:02x?}");
    };
    assert_eq!(consumed, client.len());
    match Assembler::new(0).push(frame) {
        Ok(Some(Event::Close { code, .. })) => assert_eq!(code, Some(err.code)),
        other => panic!("the close frame for {err:?} reads as {other:?}"),
    }
}

/// RFC 6455 message assembly, as simply as it can be written.
struct Model {
    max_message: usize,
    /// The open fragmented message: (is text, bytes so far).
    open: Option<(bool, Vec<u8>)>,
}

impl Model {
    fn push(&mut self, frame: &Frame) -> Result<Option<Event>, u16> {
        let result = self.step(frame);
        if result.is_err() {
            self.open = None;
        }
        result
    }

    fn step(&mut self, frame: &Frame) -> Result<Option<Event>, u16> {
        let payload = frame.payload.clone();
        match frame.opcode {
            Opcode::Ping => return Ok(Some(Event::Ping(payload))),
            Opcode::Pong => return Ok(Some(Event::Pong(payload))),
            Opcode::Close => return close(&payload).map(Some),
            Opcode::Text | Opcode::Binary if self.open.is_some() => return Err(1002),
            Opcode::Continuation if self.open.is_none() => return Err(1002),
            _ => {}
        }
        let (text, mut bytes) = self.open.take().unwrap_or((frame.opcode == Opcode::Text, Vec::new()));
        if bytes.len() + payload.len() > self.max_message {
            return Err(1009);
        }
        bytes.extend_from_slice(&payload);
        if text {
            // Fail as soon as no continuation could make it valid UTF-8.
            if let Err(e) = std::str::from_utf8(&bytes) {
                if e.error_len().is_some() || frame.fin {
                    return Err(1007);
                }
            }
        }
        if !frame.fin {
            self.open = Some((text, bytes));
            return Ok(None);
        }
        Ok(Some(if text { Event::Text(String::from_utf8(bytes).unwrap()) } else { Event::Binary(bytes) }))
    }
}

/// A Close payload (§5.5.1, §7.4): empty, or a code allowed on the wire and
/// a UTF-8 reason.
fn close(payload: &[u8]) -> Result<Event, u16> {
    if payload.is_empty() {
        return Ok(Event::Close { code: None, reason: String::new() });
    }
    if payload.len() == 1 {
        return Err(1002);
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    let allowed =
        (1000..=1003).contains(&code) || (1007..=1014).contains(&code) || (3000..=4999).contains(&code);
    if !allowed {
        return Err(1002);
    }
    let reason = std::str::from_utf8(&payload[2..]).map_err(|_| 1007u16)?;
    Ok(Event::Close { code: Some(code), reason: reason.to_string() })
}

const OPCODES: [Opcode; 6] =
    [Opcode::Continuation, Opcode::Text, Opcode::Binary, Opcode::Close, Opcode::Ping, Opcode::Pong];

/// Masks `payload` with `key` as a client does (§5.3).
fn masked(payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect()
}

/// A client frame: FIN, opcode, MASK set, the length in form `form`
/// (0 = 7-bit if it fits, 1 = 16-bit if it fits, 2 = 64-bit), the key and
/// the masked payload.
fn client_frame(fin: bool, opcode: Opcode, form: u8, key: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode.bits()];
    match form {
        0 if len <= 125 => out.push(0x80 | len as u8),
        0 | 1 if len <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(masked(payload, key));
    out
}

fn round_trip(data: &[u8]) {
    let mut rng = Rng::new(data);
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let fin = head & 0x80 != 0;
    let opcode = OPCODES[usize::from(head & 0x0f) % OPCODES.len()];
    let form = (head >> 4) & 0x03;
    let key = [rng.next_u64() as u8, rng.next_u64() as u8, rng.next_u64() as u8, rng.next_u64() as u8];
    let payload = rest;

    let mut wire = client_frame(fin, opcode, form, key, payload);
    let len7 = wire[1] & 0x7f;
    let encoded = wire.len();
    // The start of whatever comes next must not be consumed.
    wire.extend_from_slice(&data[..rng.below(data.len().min(8) + 1)]);
    let got = decode(&wire, MAX_FRAME_PAYLOAD);
    if opcode.is_control() && (!fin || len7 > 125) {
        assert_eq!(got.map_err(|e| e.code), Err(1002), "control frame fin={fin} len7={len7}");
    } else if payload.len() > MAX_FRAME_PAYLOAD {
        assert_eq!(got.map_err(|e| e.code), Err(1009));
    } else {
        let frame = Frame { fin, opcode, payload: payload.to_vec() };
        assert_eq!(got, Ok(Decoded::Frame { frame, consumed: encoded }), "client frame round trip");
    }

    // Server frames: always final and unmasked; masking one as a client
    // would must give a frame that decodes to the same payload (control
    // payloads cut to 125 bytes).
    let server = encode_frame(opcode, payload);
    let header = server.len() - payload.len().min(if opcode.is_control() { 125 } else { usize::MAX });
    let sent = &server[header..];
    let mut client = server[..header].to_vec();
    client[1] |= 0x80;
    client.extend_from_slice(&key);
    client.extend(masked(sent, key));
    if sent.len() <= MAX_FRAME_PAYLOAD {
        let frame = Frame { fin: true, opcode, payload: sent.to_vec() };
        let consumed = client.len();
        assert_eq!(
            decode(&client, MAX_FRAME_PAYLOAD),
            Ok(Decoded::Frame { frame, consumed }),
            "server frame"
        );
    }
    if opcode == Opcode::Text {
        let mut joined = text_header(payload.len());
        joined.extend_from_slice(payload);
        assert_eq!(joined, server, "text_header + payload differs from encode_frame");
    }
}
