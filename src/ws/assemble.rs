//! Message assembly (RFC 6455 §5.4): [`Assembler`] turns decoded frames into
//! messages and control events.

use super::frame::{check_control, parse_close, Frame, Opcode, WsError};

/// What the [`Assembler`] yields: a complete message or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// `code` is `None` for an empty Close payload (no code, no reason).
    Close {
        code: Option<u16>,
        reason: String,
    },
}

/// A data message whose final fragment has not arrived yet.
///
/// Invariants: `data.len() <= max_message` of its assembler; for text,
/// `data[..checked]` is valid UTF-8 ending on a character boundary.
struct OpenMessage {
    text: bool,
    data: Vec<u8>,
    checked: usize,
}

impl OpenMessage {
    /// Appends a fragment, refusing to grow past `max_message` and (for
    /// text) failing as soon as the bytes cannot be UTF-8, rather than
    /// buffering a doomed message to its end.
    fn append(&mut self, payload: Vec<u8>, max_message: usize) -> Result<(), WsError> {
        if self.data.len().saturating_add(payload.len()) > max_message {
            return Err(WsError::too_big("message", max_message));
        }
        if self.data.is_empty() {
            // The common single-frame message keeps the decoder's buffer.
            self.data = payload;
        } else {
            self.data.extend_from_slice(&payload);
        }
        if self.text {
            self.check_utf8()?;
        }
        Ok(())
    }

    /// Advances `checked` over the new bytes. A sequence cut off at the end
    /// may be completed by the next fragment, so only a definite error fails.
    fn check_utf8(&mut self) -> Result<(), WsError> {
        let unchecked = self.data.get(self.checked..).unwrap_or_default();
        match std::str::from_utf8(unchecked) {
            Ok(_) => self.checked = self.data.len(),
            Err(error) if error.error_len().is_none() => self.checked += error.valid_up_to(),
            Err(_) => return Err(WsError::invalid_utf8("text message is not UTF-8")),
        }
        Ok(())
    }

    /// The finished message; a text message still ending mid-character is 1007.
    fn finish(self) -> Result<Event, WsError> {
        if !self.text {
            return Ok(Event::Binary(self.data));
        }
        String::from_utf8(self.data)
            .map(Event::Text)
            .map_err(|_| WsError::invalid_utf8("text message is not UTF-8"))
    }
}

/// Reassembles fragmented data messages and passes control frames through
/// (they may arrive between fragments, §5.4).
///
/// Errors: a message over `max_message` bytes is 1009, a text message that
/// is not UTF-8 is 1007, a Continuation with no open message or a new
/// Text/Binary while one is open is 1002, and a bad Close payload is 1002
/// or 1007 (see [`parse_close`]). Frame-level rules are [`decode`]'s job,
/// but control frames are rechecked so hand-built frames cannot slip by.
/// After an error the open message is dropped; the connection should close.
pub struct Assembler {
    max_message: usize,
    open: Option<OpenMessage>,
}

impl Assembler {
    /// An assembler accepting messages of up to `max_message` bytes.
    pub fn new(max_message: usize) -> Assembler {
        Assembler { max_message, open: None }
    }

    /// Feeds one frame; `Some` when it completes a message or is a control frame.
    pub fn push(&mut self, frame: Frame) -> Result<Option<Event>, WsError> {
        let result = self.push_frame(frame);
        if result.is_err() {
            self.open = None;
        }
        result
    }

    fn push_frame(&mut self, frame: Frame) -> Result<Option<Event>, WsError> {
        if frame.opcode.is_control() {
            check_control(frame.fin, frame.payload.len())?;
        }
        match frame.opcode {
            Opcode::Ping => Ok(Some(Event::Ping(frame.payload))),
            Opcode::Pong => Ok(Some(Event::Pong(frame.payload))),
            Opcode::Close => {
                let (code, reason) = parse_close(&frame.payload)?;
                Ok(Some(Event::Close { code, reason }))
            }
            Opcode::Text => self.start(true, frame),
            Opcode::Binary => self.start(false, frame),
            Opcode::Continuation => self.resume(frame),
        }
    }

    /// A Text or Binary frame: the first (maybe only) fragment of a message.
    fn start(&mut self, text: bool, frame: Frame) -> Result<Option<Event>, WsError> {
        if self.open.is_some() {
            return Err(WsError::protocol("new data frame while a fragmented message is open"));
        }
        let message = OpenMessage { text, data: Vec::new(), checked: 0 };
        self.append(message, frame)
    }

    /// A Continuation frame: the next fragment of the open message.
    fn resume(&mut self, frame: Frame) -> Result<Option<Event>, WsError> {
        let message =
            self.open.take().ok_or_else(|| WsError::protocol("continuation frame without a message"))?;
        self.append(message, frame)
    }

    /// Adds `frame` to `message`, then yields it if final or keeps it open.
    fn append(&mut self, mut message: OpenMessage, frame: Frame) -> Result<Option<Event>, WsError> {
        message.append(frame.payload, self.max_message)?;
        if frame.fin {
            return message.finish().map(Some);
        }
        self.open = Some(message);
        Ok(None)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ws::frame::{decode, Decoded, MASK_BIT, MAX_FRAME_PAYLOAD};

    fn frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Frame {
        Frame { fin, opcode, payload: payload.to_vec() }
    }

    /// Pushes `frames` in order; the events (or first error code) that came out.
    fn assemble(max: usize, frames: &[Frame]) -> Result<Vec<Event>, u16> {
        let mut assembler = Assembler::new(max);
        let mut events = Vec::new();
        for frame in frames {
            events.extend(assembler.push(frame.clone()).map_err(|error| error.code)?);
        }
        Ok(events)
    }

    /// Frame sequences and what they assemble to: the events, or the close
    /// code of the first error.
    #[test]
    fn assembler_table() {
        use Opcode::{Binary, Close, Continuation, Ping, Pong, Text};
        let text = |s: &str| Event::Text(s.to_string());
        let messages: Vec<(&str, Vec<Frame>, Vec<Event>)> = vec![
            ("single text", vec![frame(true, Text, b"Hello")], vec![text("Hello")]),
            ("empty text", vec![frame(true, Text, b"")], vec![text("")]),
            (
                "rfc Hel + lo",
                vec![frame(false, Text, b"Hel"), frame(true, Continuation, b"lo")],
                vec![text("Hello")],
            ),
            (
                "three fragments, empty middle",
                vec![
                    frame(false, Binary, b"a"),
                    frame(false, Continuation, b""),
                    frame(true, Continuation, b"b"),
                ],
                vec![Event::Binary(b"ab".to_vec())],
            ),
            (
                "controls between fragments",
                vec![
                    frame(false, Text, b"He"),
                    frame(true, Ping, b"p"),
                    frame(true, Pong, b"q"),
                    frame(true, Continuation, b"llo"),
                ],
                vec![Event::Ping(b"p".to_vec()), Event::Pong(b"q".to_vec()), text("Hello")],
            ),
            (
                "close between fragments",
                vec![frame(false, Text, b"He"), frame(true, Close, &[0x03, 0xe8])],
                vec![Event::Close { code: Some(1000), reason: String::new() }],
            ),
            (
                "utf-8 split across fragments",
                vec![
                    frame(false, Text, &[b'a', 0xc3]),
                    frame(false, Continuation, &[0xa9, 0xe2, 0x82]),
                    frame(true, Continuation, &[0xac]),
                ],
                vec![text("aé€")],
            ),
            (
                "binary need not be utf-8",
                vec![frame(true, Binary, &[0xff, 0xfe])],
                vec![Event::Binary(vec![0xff, 0xfe])],
            ),
            (
                "exactly max",
                vec![frame(false, Binary, &[0; 6]), frame(true, Continuation, &[0; 4])],
                vec![Event::Binary(vec![0; 10])],
            ),
            (
                "messages in sequence",
                vec![
                    frame(true, Text, b"a"),
                    frame(false, Binary, b"b"),
                    frame(true, Continuation, b"c"),
                    frame(true, Text, b"d"),
                ],
                vec![text("a"), Event::Binary(b"bc".to_vec()), text("d")],
            ),
        ];
        let errors: Vec<(&str, Vec<Frame>, u16)> = vec![
            ("continuation without start", vec![frame(true, Continuation, b"x")], 1002),
            ("text while text open", vec![frame(false, Text, b"a"), frame(true, Text, b"b")], 1002),
            ("binary while text open", vec![frame(false, Text, b"a"), frame(true, Binary, b"b")], 1002),
            (
                "continuation after final",
                vec![frame(true, Text, b"a"), frame(true, Continuation, b"b")],
                1002,
            ),
            ("single frame over max", vec![frame(true, Binary, &[0; 11])], 1009),
            (
                "fragments over max",
                vec![frame(false, Text, b"abcdef"), frame(true, Continuation, b"ghijk")],
                1009,
            ),
            ("invalid utf-8", vec![frame(true, Text, &[b'a', 0xff])], 1007),
            (
                "invalid utf-8 refused before fin (no final frame needed)",
                vec![frame(false, Text, b"ok"), frame(false, Continuation, &[0xc3, 0x28])],
                1007,
            ),
            ("overlong encoding", vec![frame(true, Text, &[0xc0, 0xaf])], 1007),
            ("surrogate", vec![frame(true, Text, &[0xed, 0xa0, 0x80])], 1007),
            (
                "truncated at the end",
                vec![frame(false, Text, b"a"), frame(true, Continuation, &[0xe2, 0x82])],
                1007,
            ),
            ("close of 1 byte", vec![frame(true, Close, &[0x03])], 1002),
            ("close code 1005", vec![frame(true, Close, &[0x03, 0xed])], 1002),
            ("close reason not utf-8", vec![frame(true, Close, &[0x03, 0xe8, 0x80])], 1007),
            ("hand-built fragmented ping", vec![frame(false, Ping, b"")], 1002),
            ("hand-built 126-byte ping", vec![frame(true, Ping, &[0; 126])], 1002),
        ];
        let cases = messages
            .into_iter()
            .map(|(name, frames, events)| (name, frames, Ok(events)))
            .chain(errors.into_iter().map(|(name, frames, code)| (name, frames, Err(code))));
        for (name, frames, expected) in cases {
            assert_eq!(assemble(10, &frames), expected, "{name}");
        }
    }

    #[test]
    fn assembler_forgets_the_open_message_after_an_error() {
        let mut assembler = Assembler::new(10);
        assert_eq!(assembler.push(frame(false, Opcode::Text, b"a")), Ok(None));
        assert_eq!(assembler.push(frame(true, Opcode::Text, b"b")).unwrap_err().code, 1002);
        assert_eq!(assembler.push(frame(true, Opcode::Continuation, b"c")).unwrap_err().code, 1002);
        assert_eq!(assembler.push(frame(true, Opcode::Text, b"d")), Ok(Some(Event::Text("d".to_string()))));
    }

    /// No byte string makes decode or the assembler panic (a cheap,
    /// deterministic stand-in for fuzzing).
    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut assembler = Assembler::new(64);
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(second) = bytes.get_mut(1) {
                *second |= MASK_BIT; // get past the mask check most of the time
            }
            for max in [0, 3, MAX_FRAME_PAYLOAD, usize::MAX] {
                if let Ok(Decoded::Frame { frame, consumed }) = decode(&bytes, max) {
                    assert!(consumed <= bytes.len() && frame.payload.len() <= max);
                    let _ = assembler.push(frame);
                }
            }
        }
    }
}
