//! WebSocket as a transport: each envelope is one text frame, encoded once and
//! shared; the heartbeat is a ping; the end is a close frame.

use super::{envelope, Encoding, EndReason, Row, Transport};
use crate::hub::Message;
use crate::ws::{close_frame, encode_frame, Opcode};

/// A ping with no payload: browsers answer it with a pong by themselves.
pub const HEARTBEAT: &[u8] = &[0x89, 0x00];

/// "Going away" (1001): the server ends the connection; reconnect and resume.
pub const CLOSE_GOING_AWAY: u16 = 1001;

pub fn frame(message: &Message) -> Vec<u8> {
    encode_frame(Opcode::Text, &envelope::encode(message))
}

pub fn finish(reason: EndReason) -> Vec<u8> {
    close_frame(CLOSE_GOING_AWAY, reason.as_str())
}

/// The table row (see `transport::Row`). The head is the 101 upgrade answer,
/// so there is no content type.
pub const ROW: Row = Row::new(Transport::Ws, "ws", "", |_| Encoding::Ws)
    .heartbeat(HEARTBEAT)
    .finish(|reason, _| finish(reason));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_support::message;

    #[test]
    fn frames_envelopes_as_text() {
        let got = frame(&message(1, 0, "c", None, "x"));
        let json = br#"{"id":"1-0","channel":"c","data":"x"}"#;
        assert_eq!(got[0], 0x81, "FIN + text");
        assert_eq!(got[1] as usize, json.len(), "unmasked 7-bit length");
        assert_eq!(&got[2..], json);
        let end = finish(EndReason::Shutdown);
        assert_eq!(&end[..4], &[0x88, 10, 0x03, 0xe9]);
        assert_eq!(&end[4..], b"shutdown");
    }
}
